"""Training of the AI-AIF network on simulated or paired dual-sequence AIFs.

Recipe [Scannell2022, "Training details", "Data augmentation"]: Adam with
learning rate 0.001, batch size 10, 20 000 iterations, mean squared error
between predicted and reference unsaturated AIF, and the model with the best
validation loss is kept.  Every batch gets fresh independent Gaussian noise,
SD 0.02 on the (normalised) input and 0.03 on the target, and a random
window offset of 0-3 frames applied to input and target alike
(``aif.prepare_network_input(offset_frames=...)``: the window starts that
many frames earlier, so contrast arrives that much later in it).

Data
----
* **Simulator** (default): ``simulation.simulate_aif_pairs`` with both field
  strengths and the parameter ranges of a physics mix (``PHYSICS_MIXES``:
  ``standard``, the simulator's ``AIF_PAIR_RANGES``, or ``broad``, the wider
  ``BROAD_PAIR_RANGES`` with more doses, imperfect saturation, B1 errors, a
  slice profile and irregular rhythms); the training and validation
  sets come from their own seed tags (``_TRAINING_DATA_TAG``,
  ``_VALIDATION_DATA_TAG``), so neither shares a seed with the held-out test
  set of ``studies.simulated_aif_test_set`` or with each other.  Curves are
  windowed at their true arrival frame (``aif.arrival_index_from_time``) and
  simulated with the mix's frame counts (50-90 or 40-90), so the network
  also sees windows padded at the end, as in short acquisitions.
* **Paired dual-sequence AIFs** of the user: a CSV file read by
  ``read_paired_aif_csv`` (columns ``case,time_s,saturated,reference``).
  Contrast arrival is detected as at inference
  (``aif.detect_arrival_index``), and a seeded split of the cases holds
  ``validation_fraction`` of them out for validation.

The training range of the network's inputs is recorded too:
``training.json`` holds, under ``input_feature_ranges``, the 0.5th-99.5th
percentiles of the observable features of the training curves' saturated
AIFs (``training_range.input_features``: heart rate, contrast arrival,
frames after arrival, peak-to-baseline ratio; and the field strengths),
against which ``training_range.training_range_warnings`` checks every study.

Validation uses offset 0 and no added noise.  Everything random is seeded:
the data by ``seed`` and the tags above, the batches and noise by a numpy
``Generator``, the initial weights and dropout by ``torch.manual_seed`` (in a
forked torch RNG, so the caller's torch RNG is untouched); the same seed and
thread count on the same machine give the same weights file, byte for byte
(another thread count changes the rounding of the sums, hence the weights).

Measured (one run each, seed 0, default settings: 50 000 simulated pairs,
20 000 iterations; 2-core CPU, PyTorch 2.13 CPU build)
----------------------------------------------------------------------------
* Time: 19 ms per iteration with 2 threads on a quiet machine, 6.5 min for
  the whole run including data simulation and validation.  With 1 thread,
  20 ms per iteration quiet and 26 ms while other jobs load both cores
  (8.6 min); 2 threads on a loaded machine stall badly (up to ~0.6 s per
  iteration), so pass ``threads=1`` on a shared machine.
* Validation (2000 simulated pairs): best MSE 0.23 (normalised units; the
  uncorrected saturated input has 2.84), median NMSE 3.6 % (uncorrected
  49.6 %), 32 % of curves with NMSE >= 6.5 %.  On the held-out test set
  (``Testing/benchmarks/aif_network.py``, 1000 curves, detected arrival):
  median NMSE 3.6 % (IQR 5.3), 27 % >= 6.5 %; PV, TTP and FWHM not
  significantly different from the reference (p >= 0.44).
* The paper's dropout (0.2 after every block) costs accuracy here: the same
  run with ``architecture={"dropout": 0.0}`` reaches validation MSE 0.155
  and test median NMSE 2.3 %, 22 % >= 6.5 %.  Twice the widths
  (``base_channels=32``, twice the time) gives 0.198, kernel size 5 gives
  0.215.  The remaining error is mostly information the saturated curve
  lacks: curves with weak saturation (reference peak < 3.6 x the saturated
  maximum) or saturation efficiency near 1 have twice the median NMSE,
  because the pre-contrast level, which tells the network how saturated the
  peak is, also depends on the unknown saturation efficiency.
"""

import json
import os
import platform
import time

import numpy as np

from . import aif
from . import constants as K
from . import network, training_range
from .errors import AIAIFInputError
from .pipeline import json_ready
from .simulation import AIF_PAIR_RANGES, BROAD_PAIR_RANGES, simulate_aif_pairs
from .studies import _derived_seed

# --- The paper's recipe [Scannell2022] ----------------------------------------

#: Adam learning rate [Scannell2022, "Training details"].
LEARNING_RATE = 1e-3
#: Curves per batch [Scannell2022].
BATCH_SIZE = 10
#: Optimiser steps [Scannell2022].
ITERATIONS = 20000
#: SD of the Gaussian noise added to the normalised input [Scannell2022, "Data augmentation"].
INPUT_NOISE_SD = 0.02
#: SD of the Gaussian noise added to the normalised target [Scannell2022].
TARGET_NOISE_SD = 0.03
#: Largest random window offset, frames (offsets 0, 1, 2, 3) [Scannell2022].
MAX_OFFSET_FRAMES = 3

# --- Project choices -----------------------------------------------------------

#: Simulated training pairs (project choice: with 20 000 iterations of batch 10
#: the network sees 200 000 curves; 50 000 distinct pairs make that four
#: passes, each with fresh noise and offset, so the network learns the
#: simulator's wide ranges rather than individual curves.  It does not
#: overfit: the training loss, with augmentation, stays above the validation
#: loss throughout.  Simulating them takes a few seconds and ~100 MB).
DEFAULT_N_TRAIN = 50000
#: Simulated validation pairs (project choice: enough that the validation MSE
#: varies by about 1 % between draws, cheap to evaluate every
#: ``VALIDATION_INTERVAL`` iterations).
DEFAULT_N_VALIDATION = 2000
#: Iterations between validations (project choice: 80 points over 20 000
#: iterations, each costing well under a second).
VALIDATION_INTERVAL = 250
#: Share of the user's cases held out for validation (project choice, the
#: customary 80/20 split; at least one case).
VALIDATION_FRACTION = 0.2
#: Physics mixes of the simulated training data: parameter ranges and frames
#: per curve (equal shares of the training and validation sets use each
#: frame count; project choice: clinical stress series hold 50-60 beats, the
#: simulated test set 90; shorter series give windows padded at the end).
#: The shipped ensemble is ``standard`` (three seeds); ``broad``
#: (``simulation.BROAD_PAIR_RANGES``) is there to retrain with wider physics:
#: on the project's own test set its networks were worse (MODEL_CARD.md).
PHYSICS_MIXES = {
    "standard": {"ranges": AIF_PAIR_RANGES, "frame_counts": (50, 60, 75, 90)},
    "broad": {"ranges": BROAD_PAIR_RANGES, "frame_counts": (40, 50, 60, 75, 90)},
}
DEFAULT_PHYSICS = "standard"
SIMULATED_FRAME_COUNTS = PHYSICS_MIXES[DEFAULT_PHYSICS]["frame_counts"]
#: CPU threads for training (project choice: the 2-core machines the project
#: targets).
TRAINING_THREADS = 2

#: Output file names (one place for every caller).
WEIGHTS_FILE = "aiaif_unet.npz"
CHECKSUM_FILE = "aiaif_unet.sha256"
LOSS_CURVE_FILE = "loss_curve.png"
TRAINING_JSON_FILE = network.TRAINING_RECORD_FILE

#: Columns of the paired-AIF training CSV.
PAIRED_CSV_COLUMNS = ("case", "time_s", "saturated", "reference")

# Seed tags of this module (studies.py uses 0xA1F for the AIF test set and 0x9A7
# for test phantoms); each purpose gets its own stream.
_TRAINING_DATA_TAG = 0x7A1
_VALIDATION_DATA_TAG = 0x7A2
_AUGMENTATION_TAG = 0x7A3
_CASE_SPLIT_TAG = 0x7A4


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

class PairedAIFs:
    """Paired saturated / reference AIFs of several cases, each with its own frames.

    Attributes
    ----------
    case_ids : list of str
        Case names in file order.
    times_s : list of numpy.ndarray
        Frame times of each case, s (1-D, strictly increasing).
    saturated : list of numpy.ndarray
        Saturated AIF of the standard slices, signal units.
    reference : list of numpy.ndarray
        Unsaturated reference AIF on the same frames, in the saturated curve's
        signal units (the dual-sequence AIF scaled to S0 (1 + r1 T1b C)).
    source : str
        Where the data came from (file path).
    """

    def __init__(self, case_ids, times_s, saturated, reference, source=""):
        self.case_ids = list(case_ids)
        self.times_s = list(times_s)
        self.saturated = list(saturated)
        self.reference = list(reference)
        self.source = source

    def __len__(self):
        return len(self.case_ids)

    def subset(self, indices):
        """The cases at ``indices`` (in that order) as a new ``PairedAIFs``."""
        return PairedAIFs([self.case_ids[i] for i in indices], [self.times_s[i] for i in indices],
                          [self.saturated[i] for i in indices], [self.reference[i] for i in indices], self.source)


def read_paired_aif_csv(path):
    """Read paired saturated / reference AIFs for training from a CSV file.

    The file has the header ``case,time_s,saturated,reference`` and one row
    per frame; the rows of a case are together and their times (s) increase
    strictly.  ``saturated`` is the AIF of the standard (saturated) slices and
    ``reference`` the dual-sequence AIF scaled to the standard slice's signal,
    ``S0 (1 + r1 T1b C(t))``, both in the same signal units.  Each case needs
    at least ``aif.MIN_AIF_FRAMES`` frames with the pre-contrast baseline.

    Parameters
    ----------
    path : str
        CSV file.

    Returns
    -------
    PairedAIFs
        One entry per case, in file order.

    Raises
    ------
    AIAIFInputError
        Missing or unreadable file, wrong header, a row with the wrong number
        of values, an empty case name, a non-numeric or non-finite value, the
        rows of a case not together, times not increasing, a case with too
        few frames, or a case whose saturated signal is never positive.
    """
    from .evaluation import _number, _read_csv_rows  # scipy.stats: not at command-line start-up

    path = os.fspath(path)
    cases = {}
    previous = None
    for number, (case, *cells) in _read_csv_rows(path, PAIRED_CSV_COLUMNS, "paired AIF"):
        if not case:
            raise AIAIFInputError("Line {} of {} has an empty case; name the case of every row.".format(number, path))
        if case in cases and case != previous:
            raise AIAIFInputError("Line {} of {}: the rows of case '{}' are not together; sort the file by case."
                                  .format(number, path, case))
        values = [_number(text, column, number, path) for text, column in zip(cells, PAIRED_CSV_COLUMNS[1:])]
        frames = cases.setdefault(case, [])
        if frames and values[0] <= frames[-1][0]:
            raise AIAIFInputError("Line {} of {}: time {} s of case '{}' is not after the previous frame's; times "
                                  "must increase strictly within a case.".format(number, path, cells[0], case))
        frames.append(values)
        previous = case
    columns = {}
    for case, frames in cases.items():
        if len(frames) < aif.MIN_AIF_FRAMES:
            raise AIAIFInputError("Case '{}' in {} has {} frames; each case needs at least {} (the whole first pass "
                                  "with its pre-contrast beats).".format(case, path, len(frames), aif.MIN_AIF_FRAMES))
        columns[case] = np.array(frames, dtype=float).T
        if columns[case][1].max() <= 0:
            raise AIAIFInputError("Case '{}' in {} has no positive saturated signal; give magnitude signal "
                                  "intensities.".format(case, path))
    return PairedAIFs(list(columns), [c[0] for c in columns.values()], [c[1] for c in columns.values()],
                      [c[2] for c in columns.values()], source=path)


def _windows(times_s, saturated, reference, arrival_index, offsets):
    """Network inputs and targets (n_offsets, n, 64) of curves sharing their frame count."""
    inputs, targets = [], []
    for offset in offsets:
        prepared = aif.prepare_network_input(times_s, saturated, arrival_index=arrival_index, offset_frames=offset)
        inputs.append(prepared.curves)
        targets.append(aif.window_like(prepared, reference))
        arrival_index = prepared.arrival_index
    return np.stack(inputs), np.stack(targets)


def _physics_mix(physics):
    if physics not in PHYSICS_MIXES:
        raise AIAIFInputError("Unknown physics mix {!r}; use one of {}.".format(physics, ", ".join(PHYSICS_MIXES)))
    return PHYSICS_MIXES[physics]


def _simulated_groups(n, seed, tag, frame_counts, physics=DEFAULT_PHYSICS):
    """The simulated pairs of a data set, one ``AIFPairs`` per frame count (the training set's draws)."""
    ranges = _physics_mix(physics)["ranges"]
    sizes = np.diff(np.linspace(0, n, len(frame_counts) + 1).round().astype(int))
    for group, (size, n_frames) in enumerate(zip(sizes, frame_counts)):
        if size:
            yield simulate_aif_pairs(int(size), n_frames=int(n_frames), seed=_derived_seed(seed, tag, group),
                                     ranges=ranges)


def simulated_windows(n, seed, tag, offsets=(0,), frame_counts=None, physics=DEFAULT_PHYSICS):
    """Simulated pairs cut to the network window at their true arrival.

    Parameters
    ----------
    n : int
        Number of pairs, split evenly over ``frame_counts``.
    seed : int
        User seed; each frame-count group is simulated from
        ``studies._derived_seed(seed, tag, group)``.
    tag : int
        Purpose tag (training or validation) mixed into the seed.
    offsets : sequence of int, optional
        Window offsets, frames (``aif.prepare_network_input``).
    frame_counts : sequence of int, optional
        Frames per simulated curve, one group each (default: the mix's).
    physics : str, optional
        Physics mix (``PHYSICS_MIXES``).

    Returns
    -------
    inputs, targets : numpy.ndarray, float32, shape (len(offsets), n, 64)
        Normalised saturated and reference windows (dimensionless).
    field_strength_t : numpy.ndarray, shape (n,)
        Field strength of each pair, T.
    """
    inputs, targets, fields = [], [], []
    if frame_counts is None:
        frame_counts = _physics_mix(physics)["frame_counts"]
    for pairs in _simulated_groups(n, seed, tag, frame_counts, physics):
        arrival = aif.arrival_index_from_time(pairs.times_s, pairs.params["arrival_s"])
        x, y = _windows(pairs.times_s, pairs.saturated, pairs.reference, arrival, offsets)
        inputs.append(x)
        targets.append(y)
        fields.append(pairs.params["field_strength_t"])
    return (np.concatenate(inputs, axis=1).astype(np.float32), np.concatenate(targets, axis=1).astype(np.float32),
            np.concatenate(fields))


def paired_windows(data, offsets=(0,)):
    """Cases of a ``PairedAIFs`` cut to the network window at their detected arrival.

    Parameters
    ----------
    data : PairedAIFs
        Cases (any frame counts).
    offsets : sequence of int, optional
        Window offsets, frames.

    Returns
    -------
    inputs, targets : numpy.ndarray, float32, shape (len(offsets), n_cases, 64)
        Normalised saturated and reference windows (dimensionless).
    """
    inputs, targets = [], []
    for case, times, saturated, reference in zip(data.case_ids, data.times_s, data.saturated, data.reference):
        try:
            x, y = _windows(times[None, :], saturated[None, :], reference[None, :], None, offsets)
        except AIAIFInputError as error:
            raise AIAIFInputError("Case '{}' of {}: {}".format(case, data.source or "the paired AIFs",
                                                              str(error).replace("AIF curve 0", "its AIF")))
        inputs.append(x)
        targets.append(y)
    return np.concatenate(inputs, axis=1).astype(np.float32), np.concatenate(targets, axis=1).astype(np.float32)


def _simulated_input_features(pairs):
    """``training_range.input_features`` of simulated pairs, arrival detected as at inference.

    Should the detection refuse a curve (none of the shipped training set's
    50 000), that curve is measured at its true arrival frame instead, so one
    odd draw cannot stop a training run.
    """
    try:
        return training_range.input_features(pairs.times_s, pairs.saturated)
    except AIAIFInputError:
        arrival = aif.arrival_index_from_time(pairs.times_s, pairs.params["arrival_s"])
        for curve in range(len(pairs)):
            try:
                arrival[curve] = aif.detect_arrival_index(pairs.times_s[curve], pairs.saturated[curve])[0]
            except AIAIFInputError:
                pass
        return training_range.input_features(pairs.times_s, pairs.saturated, arrival_index=arrival)


def simulated_input_feature_ranges(n=DEFAULT_N_TRAIN, seed=0, tag=_TRAINING_DATA_TAG,
                                   frame_counts=None,
                                   percentiles=training_range.TRAINING_RANGE_PERCENTILES, physics=DEFAULT_PHYSICS):
    """Training range of the network's input features over a simulated training set.

    Simulates exactly the training set of ``train`` with the same ``n``,
    ``seed`` and ``frame_counts`` (the same draws as ``simulated_windows``)
    and summarises its ``training_range.input_features`` with
    ``training_range.input_feature_ranges``.  Contrast arrival is detected
    (``aif.detect_arrival_index``), as it is for a study at inference,
    although the training windows were cut at the true arrival.  The
    training augmentation (window offsets, added noise) is not applied: the
    features are those of the curves, not of one window.  The shipped
    weights' range (``n=50000, seed=0``) takes about 3 s on one core.

    Parameters
    ----------
    n : int, optional
        Training pairs (``train``'s ``n_train``).
    seed : int, optional
        Training seed (``train``'s ``seed``).
    tag : int, optional
        Seed tag of the data set (the training set's by default).
    frame_counts : sequence of int, optional
        Frames per simulated curve, one group each (default: the mix's).
    percentiles : (float, float), optional
        Percentiles (0-100) that bound the range.
    physics : str, optional
        Physics mix (``PHYSICS_MIXES``, ``train``'s ``physics``).

    Returns
    -------
    dict
        The ``input_feature_ranges`` section of ``training.json``, with the
        field strengths of the training curves (T).
    """
    n = _positive_int(n, "number of training pairs")
    if frame_counts is None:
        frame_counts = _physics_mix(physics)["frame_counts"]
    features, fields = [], []
    for pairs in _simulated_groups(n, seed, tag, frame_counts, physics):
        features.append(_simulated_input_features(pairs))
        fields.append(pairs.params["field_strength_t"])
    note = ("{}th-{}th percentiles of training_range.input_features over the {} simulated training curves "
            "(training.simulated_input_feature_ranges: simulation.simulate_aif_pairs with the training seed {} and "
            "seed tag {}, {} frames per curve in equal shares, the parameter ranges of data.parameter_ranges), "
            "contrast arrival detected as at inference; window offsets and added noise of the training "
            "augmentation not applied.".format(percentiles[0], percentiles[1], n, seed, tag,
                                                ", ".join(str(count) for count in frame_counts)))
    return training_range.input_feature_ranges(features, np.concatenate(fields), percentiles=percentiles, note=note)


def paired_input_feature_ranges(data, percentiles=training_range.TRAINING_RANGE_PERCENTILES):
    """Training range of the network's input features over a site's paired cases.

    Parameters
    ----------
    data : PairedAIFs
        The training cases; their saturated curves are measured with
        ``training_range.input_features`` (contrast arrival detected, as in
        training and at inference).
    percentiles : (float, float), optional
        Percentiles (0-100) that bound the range; with few cases they lie
        close to the smallest and largest value.

    Returns
    -------
    dict
        The ``input_feature_ranges`` section of ``training.json``; the paired
        CSV has no field strength, so ``field_strengths_t`` is None.

    Raises
    ------
    AIAIFInputError
        For a case whose saturated curve the preprocessing refuses, naming the
        case.
    """
    features = []
    for case, times, saturated in zip(data.case_ids, data.times_s, data.saturated):
        try:
            features.append(training_range.input_features(times, saturated))
        except AIAIFInputError as error:
            raise AIAIFInputError("Case '{}' of {}: {}".format(case, data.source or "the paired AIFs",
                                                              str(error).replace("AIF curve 0", "its AIF")))
    note = ("{}th-{}th percentiles of training_range.input_features over the saturated curves of the {} training cases "
            "of {} (training.paired_input_feature_ranges), contrast arrival detected; the paired CSV gives no "
            "field strength, so none is checked.".format(percentiles[0], percentiles[1], len(data),
                                                         data.source or "the paired AIFs"))
    return training_range.input_feature_ranges(features, None, percentiles=percentiles, note=note)


def split_cases(n_cases, seed, validation_fraction=VALIDATION_FRACTION):
    """Seeded split of case indices into training and validation.

    Parameters
    ----------
    n_cases : int
        Number of cases (at least 2).
    seed : int
        Split seed (mixed with the module's split tag).
    validation_fraction : float, optional
        Share of cases for validation, in (0, 1); at least one case each side.

    Returns
    -------
    training, validation : numpy.ndarray of int
        Sorted case indices.
    """
    if n_cases < 2:
        raise AIAIFInputError("Training on paired AIFs needs at least 2 cases (one to train on, one to validate), "
                              "got {}; add cases to the CSV file.".format(n_cases))
    if not 0.0 < validation_fraction < 1.0:
        raise AIAIFInputError("The validation fraction must be between 0 and 1, got {}; pass e.g. 0.2."
                              .format(validation_fraction))
    n_validation = int(np.clip(round(validation_fraction * n_cases), 1, n_cases - 1))
    order = np.random.default_rng(_derived_seed(seed, _CASE_SPLIT_TAG)).permutation(n_cases)
    return np.sort(order[n_validation:]), np.sort(order[:n_validation])


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------

def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise AIAIFInputError("The {} must be a positive integer, got {!r}; pass e.g. 1.".format(name, value))
    return int(value)


def _plot_loss_curve(path, iterations, training_loss, validation_loss, best_iteration, uncorrected_mse):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    axes.plot(iterations, training_loss, label="training (mean over interval, with augmentation)")
    axes.plot(iterations, validation_loss, label="validation")
    axes.axvline(best_iteration, color="grey", linestyle=":", label="best validation (kept)")
    axes.axhline(uncorrected_mse, color="tab:red", linestyle="--", label="validation, uncorrected saturated input")
    axes.set_yscale("log")
    axes.set_xlabel("iteration")
    axes.set_ylabel("MSE (normalised signal$^2$)")
    axes.set_title("AI-AIF U-Net training")
    axes.legend()
    try:
        figure.savefig(path, format="png", dpi=120)
    except OSError as error:
        raise AIAIFInputError("Cannot write the figure {} ({}); choose a writable output folder.".format(
            path, error.strerror or error))


#: Defaults of ``train`` that the command line shows in its help.
TRAINING_DEFAULTS = {"n_train": DEFAULT_N_TRAIN, "n_validation": DEFAULT_N_VALIDATION, "iterations": ITERATIONS,
                     "threads": TRAINING_THREADS}


def train(output_dir, data=None, n_train=DEFAULT_N_TRAIN, n_validation=DEFAULT_N_VALIDATION, iterations=ITERATIONS,
          batch_size=BATCH_SIZE, seed=0, validation_interval=VALIDATION_INTERVAL, learning_rate=LEARNING_RATE,
          validation_fraction=VALIDATION_FRACTION, threads=TRAINING_THREADS, architecture=None, progress=None,
          physics=DEFAULT_PHYSICS):
    """Train the AI-AIF U-Net and write its weights, loss curve and settings.

    The default run (20 000 iterations, 50 000 simulated pairs) takes about
    6.5 minutes on two quiet CPU cores (19 ms per iteration, 2 threads);
    see the module docstring for accuracy and for threads on a busy machine.

    Parameters
    ----------
    output_dir : str
        Folder for the outputs (created if missing; files are overwritten):
        ``aiaif_unet.npz`` (folded weights), ``aiaif_unet.sha256``,
        ``loss_curve.png`` and ``training.json``.
    data : str or PairedAIFs, optional
        Paired dual-sequence AIFs (a CSV path for ``read_paired_aif_csv`` or
        the data read); default: simulated pairs.
    n_train, n_validation : int, optional
        Simulated training and validation pairs (ignored with ``data``).
    iterations : int, optional
        Optimiser steps (20 000 in the paper).
    batch_size : int, optional
        Curves per step (10 in the paper).
    seed : int, optional
        Seed of data, split, initial weights, batches, noise and dropout.
    validation_interval : int, optional
        Iterations between validations (and the last iteration).
    learning_rate : float, optional
        Adam learning rate (0.001 in the paper).
    validation_fraction : float, optional
        Share of the user's cases held out for validation (with ``data``).
    threads : int, optional
        CPU threads for PyTorch (restored afterwards).
    architecture : dict, optional
        Keyword arguments for ``network.build_torch_unet`` (default: its
        defaults).
    progress : callable, optional
        ``progress(fraction_0_to_1, message)``, called as training advances.
    physics : str, optional
        Physics mix of simulated data (``PHYSICS_MIXES``: ``standard`` or
        ``broad``); ignored for paired data.

    Returns
    -------
    dict
        Everything written to ``training.json`` (settings, data source,
        the training range of the input features under
        ``input_feature_ranges`` (``simulated_input_feature_ranges`` or
        ``paired_input_feature_ranges``, from the training curves only),
        losses, timing, versions), plus ``output_files`` (name -> path).

    Raises
    ------
    AIAIFInputError
        Bad settings, unusable data, PyTorch missing, unwritable folder.
    """
    torch = network._import_torch()
    iterations = _positive_int(iterations, "number of iterations")
    batch_size = _positive_int(batch_size, "batch size")
    validation_interval = _positive_int(validation_interval, "validation interval")
    threads = _positive_int(threads, "number of threads")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise AIAIFInputError("The seed must be a non-negative integer, got {!r}; pass e.g. 0.".format(seed))
    seed = int(seed)
    try:
        rate = float(learning_rate)
    except (TypeError, ValueError):
        rate = float("nan")
    if not (np.isfinite(rate) and rate > 0):
        raise AIAIFInputError("The learning rate must be a positive number, got {!r}; the paper uses 0.001."
                              .format(learning_rate))
    learning_rate = rate
    report = progress or (lambda fraction, message: None)
    started = time.perf_counter()
    offsets = tuple(range(MAX_OFFSET_FRAMES + 1))

    report(0.0, "Preparing the training data")
    if data is None:
        n_train = _positive_int(n_train, "number of training pairs")
        n_validation = _positive_int(n_validation, "number of validation pairs")
        mix = _physics_mix(physics)
        train_x, train_y, train_fields = simulated_windows(n_train, seed, _TRAINING_DATA_TAG, offsets,
                                                           physics=physics)
        val_x, val_y, val_fields = simulated_windows(n_validation, seed, _VALIDATION_DATA_TAG, physics=physics)
        data_description = {
            "source": "simulator", "physics": physics, "n_train": n_train, "n_validation": n_validation,
            "frame_counts": list(mix["frame_counts"]),
            "training_seed_tag": _TRAINING_DATA_TAG, "validation_seed_tag": _VALIDATION_DATA_TAG,
            "training_pairs_3t": int(np.sum(train_fields == 3.0)),
            "training_pairs_1_5t": int(np.sum(train_fields == 1.5)),
            "arrival": "true arrival frame (aif.arrival_index_from_time)",
            "parameter_ranges": json_ready(mix["ranges"]),
        }
        feature_ranges = simulated_input_feature_ranges(n_train, seed, physics=physics)
    else:
        paired = data if isinstance(data, PairedAIFs) else read_paired_aif_csv(data)
        training_cases, validation_cases = split_cases(len(paired), seed, validation_fraction)
        train_x, train_y = paired_windows(paired.subset(training_cases), offsets)
        val_x, val_y = paired_windows(paired.subset(validation_cases))
        data_description = {
            "source": "paired AIF CSV", "path": os.path.abspath(paired.source) if paired.source else "",
            "n_cases": len(paired), "validation_fraction": validation_fraction,
            "training_cases": [paired.case_ids[i] for i in training_cases],
            "validation_cases": [paired.case_ids[i] for i in validation_cases],
            "arrival": "detected (aif.detect_arrival_index)",
        }
        feature_ranges = paired_input_feature_ranges(paired.subset(training_cases))
    val_x, val_y = val_x[0], val_y[0]
    n_pairs = train_x.shape[1]

    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as error:
        raise AIAIFInputError("Cannot create the output folder {} ({}); choose a writable path.".format(
            output_dir, error.strerror or error))

    architecture_options = dict(architecture or {})
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(_derived_seed(seed, _AUGMENTATION_TAG))
    history = {"iteration": [], "training_mse": [], "validation_mse": []}
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = network.build_torch_unet(**architecture_options)
            optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
            loss_function = torch.nn.MSELoss()
            val_inputs = torch.from_numpy(val_x[:, None, :])
            val_targets = torch.from_numpy(val_y[:, None, :])

            def validation_mse():
                model.eval()
                with torch.no_grad():
                    total = 0.0
                    for start in range(0, len(val_inputs), 1000):
                        predicted = model(val_inputs[start:start + 1000])
                        total += float(((predicted - val_targets[start:start + 1000]) ** 2).sum())
                model.train()
                return total / val_y.size

            best = {"mse": np.inf, "iteration": 0, "state": None}
            interval_losses = []
            model.train()
            loop_started = time.perf_counter()
            for iteration in range(1, iterations + 1):
                rows = rng.integers(0, n_pairs, batch_size)
                shifts = rng.integers(0, MAX_OFFSET_FRAMES + 1, batch_size)
                x = train_x[shifts, rows] + rng.normal(0.0, INPUT_NOISE_SD, (batch_size, train_x.shape[2]))
                y = train_y[shifts, rows] + rng.normal(0.0, TARGET_NOISE_SD, (batch_size, train_y.shape[2]))
                inputs = torch.from_numpy(x.astype(np.float32)[:, None, :])
                targets = torch.from_numpy(y.astype(np.float32)[:, None, :])
                optimiser.zero_grad()
                loss = loss_function(model(inputs), targets)
                loss.backward()
                optimiser.step()
                interval_losses.append(loss.item())
                if iteration % validation_interval == 0 or iteration == iterations:
                    mse = validation_mse()
                    history["iteration"].append(iteration)
                    history["training_mse"].append(float(np.mean(interval_losses)))
                    history["validation_mse"].append(mse)
                    interval_losses = []
                    if mse < best["mse"]:
                        best = {"mse": mse, "iteration": iteration,
                                "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                    report(iteration / iterations, "Iteration {} of {}: training MSE {:.2e}, validation MSE "
                           "{:.2e} (best {:.2e} at {})".format(iteration, iterations, history["training_mse"][-1],
                                                               mse, best["mse"], best["iteration"]))
            loop_seconds = time.perf_counter() - loop_started
            if best["state"] is None:
                raise AIAIFInputError("Training diverged (the validation loss is not a finite number); lower the "
                                      "learning rate or check the training data.")
            model.load_state_dict(best["state"])
            model.eval()
            n_trainable = network.count_parameters(model)
            metadata = {"seed": seed, "best_iteration": best["iteration"], "best_validation_mse": best["mse"],
                        "data_source": data_description["source"]}
            weights_path = os.path.join(output_dir, WEIGHTS_FILE)
            digest = network.export_weights(model, weights_path, metadata=metadata)
    finally:
        torch.set_num_threads(previous_threads)

    # Check the written file through the inference path and score it.
    from .evaluation import nmse_percent

    numpy_model = network.load_weights(weights_path)
    predicted = numpy_model.predict(val_x)
    nmse = nmse_percent(val_y, predicted)
    nmse_saturated = nmse_percent(val_y, val_x)
    loss_path = os.path.join(output_dir, LOSS_CURVE_FILE)
    uncorrected_mse = float(np.mean((val_x - val_y) ** 2))
    _plot_loss_curve(loss_path, history["iteration"], history["training_mse"], history["validation_mse"],
                     best["iteration"], uncorrected_mse)
    seconds = time.perf_counter() - started
    results = {
        "settings": {
            "iterations": iterations, "batch_size": batch_size, "learning_rate": learning_rate,
            "optimiser": "Adam", "loss": "MSE", "validation_interval": validation_interval, "seed": seed,
            "input_noise_sd": INPUT_NOISE_SD, "target_noise_sd": TARGET_NOISE_SD,
            "offset_frames": list(offsets), "threads": threads,
            "window_length": K.NETWORK_LENGTH, "pre_contrast_beats": K.PRE_CONTRAST_BEATS,
            "normalisation": "divided by the maximum of the saturated window",
        },
        "architecture": json_ready(numpy_model.architecture),
        "trainable_parameters": n_trainable,
        "data": data_description,
        training_range.INPUT_FEATURE_RANGES_KEY: feature_ranges,
        "history": history,
        "best_iteration": best["iteration"],
        "best_validation_mse": best["mse"],
        "final_validation_mse": history["validation_mse"][-1],
        "validation_mse_numpy": float(np.mean((predicted - val_y) ** 2)),
        "validation_mse_uncorrected": uncorrected_mse,
        "validation_nmse_percent_median": float(np.median(nmse)),
        "validation_share_nmse_at_least_6_5_percent": float(np.mean(nmse >= K.POOR_AIF_NMSE_PERCENT)),
        "validation_nmse_percent_median_uncorrected": float(np.median(nmse_saturated)),
        "weights_sha256": digest,
        "seconds_total": seconds,
        "seconds_per_iteration": loop_seconds / iterations,
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
    }
    json_path = os.path.join(output_dir, TRAINING_JSON_FILE)
    try:
        with open(json_path, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2, sort_keys=True)
            handle.write("\n")
    except OSError as error:
        raise AIAIFInputError("Cannot write {} ({}); choose a writable output folder.".format(
            json_path, error.strerror or error))
    report(1.0, "Training finished: best validation MSE {:.2e} at iteration {}".format(best["mse"],
                                                                                     best["iteration"]))
    results["output_files"] = {"weights": weights_path, "checksum": network.checksum_path_for(weights_path),
                               "loss_curve": loss_path, "training_json": json_path}
    return results

"""Simulated validation studies: the paper's comparisons built from the simulator.

The paper compares a test AIF (AI-AIF) with a reference (the dual-sequence
AIF) on curves and on MBF.  Here both come from the simulator, whose truth is
known: the reference is the unsaturated curve, the test is the network's
AI-AIF or the uncorrected saturated AIF (the baseline any correction must
beat), and MBF comes from the full pipeline on the phantoms' images.  Test sets are drawn from seeds of their own (``seed`` is mixed with a
purpose tag), so they never share draws with a training set.
"""

import numpy as np

from . import constants as K
from .aif import arrival_index_from_time, network_window
from .errors import AIAIFInputError
from .simulation import DEFAULT_TISSUE_MODEL, simulate_aif_pairs, simulate_phantom

#: Purpose tags mixed into seeds, keeping test sets disjoint from other uses.
_AIF_TEST_TAG = 0xA1F
_PHANTOM_TEST_TAG = 0x9A7


def _derived_seed(seed, tag, index=0):
    return int(np.random.SeedSequence([seed, tag, index]).generate_state(1)[0])


def simulated_aif_test_set(n_curves, seed, n_frames=90, correct=None):
    """Paired AIFs cut to the paper's window and normalised by the saturated maximum.

    The window starts four frames before the *true* arrival, so every method
    is judged on the same frames whatever its own arrival detection.

    Parameters
    ----------
    n_curves : int
        Number of pairs (both field strengths, full parameter ranges).
    seed : int
        Test-set seed.
    n_frames : int, optional
        Frames simulated before the 64-frame window is cut.
    correct : callable, optional
        ``correct(times_s, saturated) -> corrected``, both (n, n_frames) in
        signal units (e.g. ``network.correct_aifs``); applied to the whole
        saturated curves, then windowed like the others.

    Returns
    -------
    dict
        ``times_s`` (n, 64) s from the window start; ``reference``,
        ``saturated`` (and ``corrected`` with ``correct``) (n, 64) normalised
        signal; ``pairs`` the full ``AIFPairs``.
    """
    pairs = simulate_aif_pairs(n_curves, n_frames=n_frames, seed=_derived_seed(seed, _AIF_TEST_TAG))
    arrival = arrival_index_from_time(pairs.times_s, pairs.params["arrival_s"])
    curves = [pairs.saturated, pairs.reference]
    if correct is not None:
        curves.append(correct(pairs.times_s, pairs.saturated))
    times, windowed, _ = network_window(pairs.times_s, np.stack(curves), arrival)
    scale = windowed[0].max(axis=1, keepdims=True)
    test_set = {"times_s": times, "reference": windowed[1] / scale, "saturated": windowed[0] / scale, "pairs": pairs}
    if correct is not None:
        test_set["corrected"] = windowed[2] / scale
    return test_set


def segment_tissue_curves(phantom):
    """True segment-mean tissue concentration curves of a phantom.

    Parameters
    ----------
    phantom : simulation.Phantom
        A simulated study.

    Returns
    -------
    numpy.ndarray, (16, n_frames)
        Mean noise-free tissue concentration of AHA segments 1-16, mM.
    """
    truth = phantom.truth
    voxels = truth["myocardium_voxels_kji"]
    segment_of_voxel = phantom.aha_segments[voxels[:, 0], voxels[:, 1], voxels[:, 2]]
    return np.stack([truth["tissue_mM"][segment_of_voxel == s].mean(axis=0) for s in K.AHA_SEGMENTS])


def validation_phantoms(n_phantoms, seed, tissue_model=DEFAULT_TISSUE_MODEL, **storage):
    """Simulated patients of a validation study, from seeds disjoint from other uses.

    Parameters
    ----------
    n_phantoms : int
        Number of simulated patients: field strength alternating 3 T / 1.5 T,
        ischaemic territory cycling none, LAD, RCA, LCX.
    seed : int
        Study seed.
    tissue_model : str, optional
        Myocardial tissue model (``simulation.TISSUE_MODELS``).
    **storage
        How the images are stored, passed to ``simulation.simulate_phantom``
        (``apex_first``, ``mirrored``, ``mirrored_slice_axis``, ``n_frames``);
        the anatomy and flows stay those of the seed.

    Yields
    ------
    simulation.Phantom
        One phantom at a time (each is tens of MB).
    """
    territories = ("none",) + tuple(K.CORONARY_TERRITORIES)
    for index in range(n_phantoms):
        yield simulate_phantom(seed=_derived_seed(seed, _PHANTOM_TEST_TAG, index),
                               field_strength_t=K.SUPPORTED_FIELD_STRENGTHS_T[index % 2 - 1],
                               ischemic=territories[index % len(territories)], tissue_model=tissue_model,
                               **storage)


#: The built-in phantom of the demo and of Slicer's Sample Data: seed, field
#: strength (T) and ischaemic territory (project choice: a 3 T study with an
#: LAD defect that the saturated AIF hides).
DEMO_PHANTOM = {"seed": 2022, "field_strength_t": 3.0, "ischemic": "LAD"}


def demo_phantom(seed=DEMO_PHANTOM["seed"]):
    """The built-in phantom: a 3 T stress study with an ischaemic LAD territory.

    The command line's ``demo`` and the Slicer module's sample data both use
    it, so they show the same study.

    Parameters
    ----------
    seed : int, optional
        Random seed (``DEMO_PHANTOM["seed"]``, 2022, by default).

    Returns
    -------
    simulation.Phantom
        Frames, frame times (s), geometry, ROIs, RV insertion points and
        ground-truth MBF (mL/min/g).
    """
    return simulate_phantom(seed=seed, field_strength_t=DEMO_PHANTOM["field_strength_t"],
                            ischemic=DEMO_PHANTOM["ischemic"])


def phantom_study(phantom):
    """A phantom as the ``pipeline.PerfusionStudy`` the quantification takes (no files).

    Parameters
    ----------
    phantom : simulation.Phantom
        A simulated study.

    Returns
    -------
    pipeline.PerfusionStudy
        Frames, frame times (s), geometry, the LV blood-pool and myocardium
        masks and the anterior RV insertion points labelled with their level.
    """
    from .pipeline import PerfusionStudy

    return PerfusionStudy(
        frames=phantom.frames, frame_times_s=phantom.frame_times_s, ijk_to_ras=phantom.ijk_to_ras,
        blood_pool_mask=phantom.lv_blood_mask, myocardium_mask=phantom.myocardium_mask,
        rv_insertion_ras=phantom.rv_insertion_ras["anterior"],
        rv_insertion_labels=phantom.rv_insertion_labels,
        source={"phantom_seed": phantom.acquisition["seed"]})


#: AIFs the phantom quantification study compares: name -> pipeline AIF mode.
#: "true" is the phantom's unsaturated reference signal given as an external AIF.
PHANTOM_AIFS = ("true", "saturated", "ai")


def phantom_quantification(phantom, aifs=PHANTOM_AIFS, tissue_conversion="linear", **parameters):
    """Segment MBF of one phantom by the full pipeline with each AIF.

    Parameters
    ----------
    phantom : simulation.Phantom
        A simulated study.
    aifs : sequence of str, optional
        Subset of ``PHANTOM_AIFS``.
    tissue_conversion : {'linear', 'model'}, optional
        Myocardial signal-to-concentration method.
    **parameters
        Further ``pipeline.QuantificationParameters`` fields.

    Returns
    -------
    dict of numpy.ndarray, each (16,)
        ``truth`` and one entry per AIF: segment MBF (mean of the pixel map),
        mL/min/g; for ``ai`` also ``ai_low`` and ``ai_high``, the ensemble's
        band (``mbf_low``, ``mbf_high``).
    """
    from .pipeline import QuantificationParameters, quantify_study

    study = phantom_study(phantom)
    field = phantom.acquisition["field_strength_t"]
    rows = {"truth": phantom.segment_mbf_ml_min_g()}
    for name in aifs:
        options = dict(field_strength_t=field, tissue_conversion=tissue_conversion, **parameters)
        if name == "true":
            options.update(aif_mode="external", external_aif_times_s=phantom.frame_times_s,
                           external_aif_signal=phantom.truth["lv_blood_reference_signal"])
        else:
            options.update(aif_mode=name)
        result = quantify_study(study, QuantificationParameters(**options))
        rows[name] = np.asarray(result.segments["mbf_mean"], dtype=float)
        if name == "ai":
            rows["ai_low"] = np.asarray(result.segments["mbf_low"], dtype=float)
            rows["ai_high"] = np.asarray(result.segments["mbf_high"], dtype=float)
    return rows


def simulated_mbf_study(n_phantoms, seed, aifs=PHANTOM_AIFS, tissue_conversion="model"):
    """Segment MBF over simulated patients: both field strengths, healthy and each territory ischaemic.

    Each phantom is quantified from its images by the full pipeline
    (``phantom_quantification``) with each AIF.

    Parameters
    ----------
    n_phantoms : int
        Number of simulated patients (alternating 3 T / 1.5 T; ischaemic
        territory cycling none, LAD, RCA, LCX).
    seed : int
        Study seed.
    aifs : sequence of str, optional
        Subset of ``PHANTOM_AIFS``.
    tissue_conversion : {'model', 'linear'}, optional
        Myocardial signal-to-concentration method.

    Returns
    -------
    dict of numpy.ndarray, each (n_phantoms, 16)
        ``truth`` and one entry per AIF: segment MBF, mL/min/g.
    """
    rows = [phantom_quantification(phantom, aifs=aifs, tissue_conversion=tissue_conversion)
            for phantom in validation_phantoms(n_phantoms, seed)]
    return {key: np.stack([row[key] for row in rows]) for key in rows[0]}


#: Names of the simulated evaluation's test methods in tables.
SIMULATED_TEST_NAMES = {"ai": "AI-AIF", "saturated": "Saturated AIF"}


def simulated_evaluation(n_curves=500, n_phantoms=10, seed=7, test="ai"):
    """Inputs of the paper's evaluation on simulated data: a test AIF against the true AIF.

    Parameters
    ----------
    n_curves : int, optional
        AIF pairs for the curve analysis.
    n_phantoms : int, optional
        Simulated patients for the MBF analysis (model tissue conversion).
    seed : int, optional
        Seed of the test set.
    test : {'ai', 'saturated'}, optional
        The method under test: the network-corrected AIF (the paper's
        comparison) or the uncorrected saturated AIF.

    Returns
    -------
    dict
        ``aif_times_s``, ``aif_reference``, ``aif_test`` (n_curves, 64);
        ``mbf_truth``, ``mbf_reference``, ``mbf_test`` (n_phantoms, 16)
        mL/min/g; ``reference_name`` and ``test_name`` for tables.
    """
    from .network import correct_aifs, load_ensemble

    if test not in SIMULATED_TEST_NAMES:
        raise AIAIFInputError("Unknown test method {!r}; use one of {}.".format(test, ", ".join(SIMULATED_TEST_NAMES)))
    correct = None
    if test == "ai":
        model = load_ensemble()
        correct = lambda times, curves: correct_aifs(times, curves, weights=model)  # noqa: E731
    curves = simulated_aif_test_set(n_curves, seed, correct=correct)
    mbf = simulated_mbf_study(n_phantoms, seed, aifs=("true", test))
    return {
        "aif_times_s": curves["times_s"], "aif_reference": curves["reference"],
        "aif_test": curves["corrected" if test == "ai" else "saturated"],
        "mbf_truth": mbf["truth"], "mbf_reference": mbf["true"], "mbf_test": mbf[test],
        "reference_name": "True AIF", "test_name": SIMULATED_TEST_NAMES[test],
    }

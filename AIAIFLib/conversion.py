"""Signal intensity to contrast-agent concentration.

Two conversions of tissue signal, one entry point (``tissue_concentration_mM``):

``model`` (default)
    At the standard slices' 100 ms saturation time the myocardial signal is
    itself non-linear in concentration, so a linear conversion underestimates
    tissue concentration, and therefore MBF, even with a perfect AIF (by
    about 40 % on physically simulated signal).  ``model_concentration_mM``
    instead inverts the saturation-recovery FLASH signal equation
    (``sequence.py``) per pixel:

    1. The pre-contrast signal of the pixel fixes its scale (proton density x
       coil gain x sin(flip angle)) from the model at the native myocardial T1.
    2. Each frame's signal, divided by that scale, is a normalised
       magnetisation ``u = Mz / M0``, which rises monotonically with R1.  It is
       inverted to R1 by linear interpolation in a precomputed monotone table
       of ``v = -ln(1 - u)`` against R1 (nearly linear in R1, since
       ``u ~ 1 - eta * exp(-TD * R1)``), then polished by two Newton steps on
       the exact model with the table's slope, which makes the inversion exact
       to rounding error.
    3. ``C = (R1 - R1_native) / r1``.

    The model is defined for ``0 <= R1``; signals outside its range are
    clipped and flagged in the returned mask: at or above the signal of
    ``MODEL_MAX_CONCENTRATION_MM`` (which includes signals at or above the
    fully recovered limit ``u = 1``), and at or below the signal at R1 = 0.
    Signals a little below the pre-contrast level are *not* clipped: they map
    to small negative concentrations, as in the linear conversion, so baseline
    noise stays unbiased and the mask flags only genuine problems.  T2* decay
    is ignored (as in the paper's conversion; at TE = 1 ms it is a few per cent
    of the signal at the highest tissue concentrations).

    The inversion is only as good as the sequence parameters it is given, and
    the saturation efficiency matters most: with the pre-contrast signal
    close to zero after a 100 ms saturation, an efficiency of 0.9 instead of
    1.0 doubles the pre-contrast level and halves the apparent enhancement.
    Neither the paper nor a DICOM header gives it, so
    ``calibrate_sequence_on_blood`` fits it, with the effective flip angle, to
    the LV blood pool of the study itself.

``linear`` (the paper's, for reproducing it)
    Relative signal enhancement scaled by the pre-contrast LV blood-pool
    signal, ``C(t) = (S(t) - S(0)) / (r1 * T1b * S_LV(0))`` [Scannell2022,
    "Quantification"], with T1b 1.736 s at 3 T and 1.435 s at 1.5 T and
    r1 = 4.5 /s/mM.

The corrected AIF stays linear by construction (the network predicts the
unsaturated, linear curve), so ``aif_concentration_mM`` is always the paper's
linear conversion with ``S(0) = S_LV(0)``.

Every physical parameter (T1 of blood and myocardium, r1, the nominal
sequence) comes from the study's ``acquisition.Acquisition``, resolved once;
the sequence defaults and where they come from are in ``sequence.py``.
"""

import math
from dataclasses import dataclass, replace

import numpy as np

from . import constants as K
from .errors import AIAIFInputError
from .sequence import DEFAULT_LINEAR_PULSES_TO_CENTRE, SequenceParameters, _finite_float

#: Conversion methods accepted by ``tissue_concentration_mM``.
CONVERSION_METHODS = ("linear", "model")

#: Highest tissue concentration the model inversion returns, mM.  Project
#: choice: above the peak LV blood-pool concentration of a 0.075 mmol/kg bolus
#: (up to ~15 mM, shared/PHYSICS.md), so no physiological tissue value is
#: clipped; signals beyond the model's signal at this concentration are
#: clipped to it and flagged.
MODEL_MAX_CONCENTRATION_MM = 20.0
#: Shortest native T1 the anchored inversion's table covers, s (project
#: choice: below the native T1 of any tissue in the myocardium or blood).
MIN_NATIVE_T1_S = 0.2
#: Points of the monotone lookup table of the model inversion (project choice:
#: enough that the interpolated start is within ~1e-6 and two Newton steps
#: reach rounding error).
_TABLE_POINTS = 4097
#: Newton steps after the table lookup.
_NEWTON_STEPS = 2


def _positive_number(value, what, fix):
    number = _finite_float(value)
    if number is None or number <= 0:
        raise AIAIFInputError("The {} must be a positive number, got {!r}; {}.".format(what, value, fix))
    return number


def _signal_and_baseline(signal, baseline):
    signal = np.asarray(signal, dtype=float)
    baseline = np.asarray(baseline, dtype=float)
    if signal.ndim == 0:
        raise AIAIFInputError("The signal must have a time axis (last axis = frames); pass curves, not a number.")
    try:
        np.broadcast_shapes(baseline.shape, signal.shape[:-1])
    except ValueError:
        raise AIAIFInputError("The baseline has shape {} but the signal curves {}; pass one pre-contrast value "
                              "per curve.".format(baseline.shape, signal.shape[:-1]))
    if np.any(~np.isfinite(baseline)) or np.any(baseline <= 0):
        raise AIAIFInputError("The pre-contrast signal must be positive in every curve; check the ROI and the "
                              "baseline frames.")
    return signal, baseline


def baseline_signal(signal, n_baseline_frames):
    """Pre-contrast signal: mean of the first frames.

    Parameters
    ----------
    signal : array_like, shape (..., n_frames)
        Signal curves (signal units), time on the last axis.
    n_baseline_frames : int
        Number of leading frames before contrast arrival to average.

    Returns
    -------
    numpy.ndarray, shape (...)
        Baseline signal S(0).
    """
    signal = np.asarray(signal, dtype=float)
    if not 1 <= n_baseline_frames <= signal.shape[-1]:
        raise AIAIFInputError("The number of baseline frames must be between 1 and the number of frames ({}); "
                              "choose frames before contrast arrival.".format(signal.shape[-1]))
    return signal[..., :n_baseline_frames].mean(axis=-1)


def linear_concentration_mM(signal, baseline, lv_baseline, t1_blood_s, r1_per_s_per_mM=K.R1_RELAXIVITY_PER_S_PER_MM):
    """Concentration from relative signal enhancement, the paper's conversion.

    ``C(t) = (S(t) - S(0)) / (r1 * T1b * S_LV(0))`` [Scannell2022,
    "Quantification"]; for the AIF itself ``S(0) = S_LV(0)``.

    Parameters
    ----------
    signal : array_like, shape (..., n_frames)
        Signal curves (signal units).
    baseline : array_like, shape (...)
        Pre-contrast signal S(0) of each curve.
    lv_baseline : array_like
        Pre-contrast LV blood-pool signal S_LV(0).
    t1_blood_s : float
        Native T1 of blood T1b, s (1.736 s at 3 T, 1.435 s at 1.5 T).
    r1_per_s_per_mM : float, optional
        Relaxivity, 1/s/mM (4.5 for gadobutrol).

    Returns
    -------
    numpy.ndarray, shape (..., n_frames)
        Concentration, mM.
    """
    lv_baseline = np.asarray(lv_baseline, dtype=float)
    if np.any(~np.isfinite(lv_baseline)) or np.any(lv_baseline <= 0):
        raise AIAIFInputError("The pre-contrast LV blood-pool signal must be positive; check the LV blood-pool "
                              "segment and the baseline frames.")
    delta = np.asarray(signal, dtype=float) - np.asarray(baseline, dtype=float)[..., None]
    return delta / (r1_per_s_per_mM * t1_blood_s * lv_baseline[..., None])


def _inversion_table(sequence, r1_max_per_s):
    """Monotone table R1 -> v = -ln(1 - u) of the normalised signal u, with its segment slopes."""
    r1_grid = np.linspace(0.0, r1_max_per_s, _TABLE_POINTS)
    v_grid = -np.log1p(-sequence.normalised_signal(r1_grid))
    slopes = np.diff(v_grid) / np.diff(r1_grid)
    if not np.all(np.isfinite(slopes)) or np.any(slopes <= 0):
        raise AIAIFInputError("The sequence model's signal does not rise monotonically with concentration for "
                              "these sequence parameters; check the flip angle, pulses to the centre and "
                              "saturation time.")
    return r1_grid, v_grid, slopes


def r1_from_normalised_signal(u, sequence, r1_max_per_s):
    """Invert the sequence's normalised signal ``u = Mz / M0`` to R1 (table lookup, then Newton).

    Parameters
    ----------
    u : array_like
        Normalised signal (signal over M0 * coil * sin(flip angle)).
    sequence : SequenceParameters
        The readout.
    r1_max_per_s : float
        Top of the inversion table, 1/s.

    Returns
    -------
    r1_per_s : numpy.ndarray
        R1, 1/s, within [0, ``r1_max_per_s``] (NaN where ``u`` is NaN).
    below, above : numpy.ndarray of bool
        Where ``u`` lay at or below the model's signal at R1 = 0, or at or
        above its signal at ``r1_max_per_s`` (clipped to the table's ends).
    """
    u = np.asarray(u, dtype=float)
    r1_grid, v_grid, slopes = _inversion_table(sequence, r1_max_per_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        v_target = -np.log1p(-np.minimum(u, 1.0))
    below = u <= 1.0 - np.exp(-v_grid[0])
    above = v_target >= v_grid[-1]
    v_inside = np.clip(v_target, v_grid[0], v_grid[-1])
    # Table lookup, then Newton steps on the exact model with the segment slope.
    index = np.clip(np.searchsorted(v_grid, v_inside, side="right") - 1, 0, _TABLE_POINTS - 2)
    index = np.where(np.isnan(v_inside), 0, index)
    slope = slopes[index]
    r1_estimate = r1_grid[index] + (v_inside - v_grid[index]) / slope
    for _ in range(_NEWTON_STEPS):
        with np.errstate(invalid="ignore", divide="ignore"):
            v_model = -np.log1p(-sequence.normalised_signal(r1_estimate))
        r1_estimate = np.clip(r1_estimate - (v_model - v_inside) / slope, 0.0, r1_grid[-1])
    return r1_estimate, below, above


def model_concentration_mM(signal, baseline, t1_native_s, r1_per_s_per_mM=K.R1_RELAXIVITY_PER_S_PER_MM,
                           sequence=SequenceParameters()):
    """Concentration by inverting the saturation-recovery FLASH signal equation per pixel.

    The pre-contrast signal fixes each curve's scale from the model at the
    native T1; each frame's signal is then inverted to R1 (monotone table plus
    Newton polishing, exact to ~1e-11 relative) and converted with
    ``C = (R1 - 1/T1_native) / r1`` (module docstring).

    Parameters
    ----------
    signal : array_like, shape (..., n_frames)
        Signal curves (signal units), time on the last axis.
    baseline : array_like, shape (...)
        Pre-contrast signal S(0) of each curve (signal units), positive.
    t1_native_s : float or array_like, shape (...)
        Native (pre-contrast) T1 of the tissue, s; one value or one per curve
        (e.g. from a native T1 map).
    r1_per_s_per_mM : float, optional
        Relaxivity, 1/s/mM (4.5 for gadobutrol).
    sequence : SequenceParameters, optional
        Sequence of the standard slices (the paper's by default).

    Returns
    -------
    conc_mM : numpy.ndarray, shape (..., n_frames)
        Concentration, mM; between ``-1 / (r1 * T1_native)`` (R1 = 0) and
        ``MODEL_MAX_CONCENTRATION_MM``.  NaN signals give NaN.
    clipped_mask : numpy.ndarray of bool, shape (..., n_frames)
        True where the signal was outside the model's range and the
        concentration was clipped to the nearest end.

    Raises
    ------
    AIAIFInputError
        For a non-positive baseline, T1 or relaxivity, a baseline that does not
        match the curves, or a sequence whose signal is not monotone.
    """
    signal, baseline = _signal_and_baseline(signal, baseline)
    r1 = _positive_number(r1_per_s_per_mM, "relaxivity r1 (1/s/mM)", "give the contrast agent's r1")
    if not isinstance(sequence, SequenceParameters):
        raise AIAIFInputError("The sequence must be a SequenceParameters instance; build one with the scanner's "
                              "saturation time, TR, flip angle and pulses to the centre.")
    t1 = np.asarray(t1_native_s, dtype=float)
    if np.any(~np.isfinite(t1)) or np.any(t1 <= 0):
        raise AIAIFInputError("The native T1 must be positive (s); give the native tissue T1.")
    try:
        np.broadcast_shapes(t1.shape, signal.shape[:-1])
    except ValueError:
        raise AIAIFInputError("The native T1 has shape {} but the signal curves {}; give one T1 or one per "
                              "curve.".format(t1.shape, signal.shape[:-1]))
    r1_native = 1.0 / t1
    # Scale from the pre-contrast signal: u = (S / S0) * u(R1_native).
    u_native = sequence.normalised_signal(r1_native)
    r1_estimate, below, above = r1_from_normalised_signal(
        signal * (u_native / baseline)[..., None], sequence,
        float(np.max(r1_native)) + r1 * MODEL_MAX_CONCENTRATION_MM)

    r1_native_frames = np.broadcast_to(r1_native[..., None], signal.shape)
    conc = (r1_estimate - r1_native_frames) / r1
    too_high = above | (conc > MODEL_MAX_CONCENTRATION_MM)
    too_low = below & ~too_high
    conc = np.where(too_high, MODEL_MAX_CONCENTRATION_MM, conc)
    conc = np.where(too_low, -r1_native_frames / r1, conc)
    conc = np.where(np.isnan(signal), np.nan, conc)
    return conc, too_high | too_low


def anchored_concentration_mM(signal, baseline, scale, r1_per_s_per_mM, sequence):
    """Concentration from the sequence model with a signal scale given from outside (the blood-pool anchor).

    Each curve's signal divided by its ``scale`` (M0 x coil gain x
    sin(flip angle)) is a normalised signal ``u``; both ``u(t)`` and the
    pre-contrast ``u0`` are inverted to R1 (``r1_from_normalised_signal``) and
    ``C = (R1(u(t)) - R1(u0)) / r1``.  The native R1 is thus the one the
    pre-contrast signal implies, not an assumed T1, and a saturation
    efficiency error, which moves the model's pre-contrast signal a lot but
    its enhanced signal little, cancels to first order in the difference:
    for centric ordering ``R1(u) - R1(u0) = -ln((1 - u) / (1 - u0)) / TS``
    whatever the efficiency.  What remains is the scale: a 5 % error in it is
    about a 5 % error in concentration.

    Parameters
    ----------
    signal : array_like, shape (..., n_frames)
        Signal curves (signal units), time on the last axis.
    baseline : array_like, shape (...)
        Pre-contrast signal of each curve, positive.
    scale : array_like, shape (...)
        Signal scale of each curve (signal units), positive.
    r1_per_s_per_mM : float
        Relaxivity, 1/s/mM.
    sequence : SequenceParameters
        The readout (e.g. the blood-pool calibration's).

    Returns
    -------
    conc_mM : numpy.ndarray, shape (..., n_frames)
        Concentration, mM (NaN where the signal is NaN).
    clipped_mask : numpy.ndarray of bool, shape (..., n_frames)
        Frames whose normalised signal lay outside the model's range.
    native_t1_s : numpy.ndarray, shape (...)
        The native T1 each curve's pre-contrast signal implies, s (inf where
        it lies at or below the model's signal at R1 = 0).
    """
    signal, baseline = _signal_and_baseline(signal, baseline)
    r1 = _positive_number(r1_per_s_per_mM, "relaxivity r1 (1/s/mM)", "give the contrast agent's r1")
    scale = np.asarray(scale, dtype=float)
    if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
        raise AIAIFInputError("The signal scale must be positive for every curve; check the blood-pool calibration.")
    r1_max = 1.0 / MIN_NATIVE_T1_S + r1 * MODEL_MAX_CONCENTRATION_MM
    r1_frames, below, above = r1_from_normalised_signal(signal / scale[..., None], sequence, r1_max)
    r1_native, _, _ = r1_from_normalised_signal(baseline / scale, sequence, r1_max)
    conc = (r1_frames - r1_native[..., None]) / r1
    conc = np.where(np.isnan(signal), np.nan, conc)
    with np.errstate(divide="ignore"):
        native_t1 = 1.0 / r1_native
    return conc, (below | above) & ~np.isnan(signal), native_t1


def tissue_scale(baseline, slice_index, row, column, blood_scale,
                 proton_density_ratio=K.MYOCARDIUM_TO_BLOOD_PROTON_DENSITY):
    """Signal scale of each myocardial pixel from the blood pool's, for ``anchored_concentration_mM``.

    ``scale = proton_density_ratio * blood_scale * shading``: the blood's
    M0 x coil gain, the myocardium's lower proton density, and the receive
    coil's smooth shading across the heart.  The shading is a plane fitted
    to the pixels' pre-contrast signals in each slice (the myocardium's
    native T1 is the same everywhere, so its pre-contrast signal follows the
    coil), divided by its mean over every pixel: the mean coil gain over the
    myocardium is taken as that over the blood pool it surrounds.  A plane,
    not each pixel's own baseline, so that noise, partial volume and
    epicardial fat do not set a pixel's scale.

    Parameters
    ----------
    baseline : array_like, shape (n_pixels,)
        Pre-contrast signal of each pixel.
    slice_index, row, column : array_like of int, shape (n_pixels,)
        Voxel index (k, j, i) of each pixel.
    blood_scale : float
        ``BloodCalibration.blood_scale``.
    proton_density_ratio : float, optional
        Myocardium-to-blood proton density (``constants``).

    Returns
    -------
    numpy.ndarray, shape (n_pixels,)
        Signal scale of each pixel (signal units).
    """
    baseline = np.asarray(baseline, dtype=float)
    k, j, i = (np.asarray(values) for values in (slice_index, row, column))
    shading = np.ones(baseline.shape)
    for level in np.unique(k):
        members = k == level
        design = np.column_stack([np.ones(np.count_nonzero(members)), j[members], i[members]])
        usable = np.isfinite(baseline[members])
        if np.count_nonzero(usable) < 3 * design.shape[1]:
            shading[members] = np.nanmean(baseline[members])
            continue
        coefficients = np.linalg.lstsq(design[usable], baseline[members][usable], rcond=None)[0]
        shading[members] = design @ coefficients
    shading = np.maximum(shading, 1e-12 * np.nanmax(np.abs(shading)))
    return proton_density_ratio * float(blood_scale) * shading / np.mean(shading)


#: Implied over expected native myocardial T1 outside this range makes the
#: anchor check warn (project choice: on the project's phantoms the implied T1
#: lies within 5 % of the true one; a model whose pre-contrast signal differs,
#: e.g. from saturation history across heartbeats, shows 30 % and more).
ANCHOR_T1_RATIO_RANGE = (0.75, 1.33)


def anchor_check(baseline, scale, acquisition, sequence):
    """Cross-check of the blood-pool anchor: the native T1 the myocardium's pre-contrast signal implies.

    With the scale carried over from the blood pool, the sequence model maps
    each pixel's pre-contrast signal to a native T1.  It should be near the
    expected native myocardial T1; when it is not, the tissue's pre-contrast
    signal does not follow the model (e.g. saturation history across
    heartbeats, or an inflow-biased blood calibration), and the summary says
    so.  The concentrations do not use it.

    Parameters
    ----------
    baseline, scale : array_like, shape (n_pixels,)
        Pre-contrast signal and anchored scale of each pixel.
    acquisition : acquisition.Acquisition
        Gives the expected native myocardial T1 (None: no comparison).
    sequence : SequenceParameters
        The readout used.

    Returns
    -------
    dict
        ``implied_native_t1_s`` (median over pixels), ``expected_native_t1_s``,
        ``proton_density_ratio`` and ``warning`` (a sentence or None).
    """
    r1_max = 1.0 / MIN_NATIVE_T1_S
    r1_native, _, _ = r1_from_normalised_signal(np.asarray(baseline, float) / np.asarray(scale, float), sequence,
                                                r1_max)
    implied = float(1.0 / max(np.median(r1_native), 1e-12))
    expected = acquisition.t1_myocardium_s
    expected = None if expected is None or np.ndim(expected) else float(expected)
    warning = None
    if expected is not None and not ANCHOR_T1_RATIO_RANGE[0] <= implied / expected <= ANCHOR_T1_RATIO_RANGE[1]:
        warning = ("The myocardium's pre-contrast signal implies a native T1 of {:.2f} s against the expected {:.2f} s: "
                   "it does not follow the sequence model (saturation history, an imperfect saturation pulse or an "
                   "inflow-biased blood calibration), so the tissue concentrations rest on the blood-pool scale and "
                   "a myocardium-to-blood proton density of {:.2f}.".format(
                       implied, expected, K.MYOCARDIUM_TO_BLOOD_PROTON_DENSITY))
    return {"implied_native_t1_s": implied, "expected_native_t1_s": expected,
            "proton_density_ratio": K.MYOCARDIUM_TO_BLOOD_PROTON_DENSITY, "warning": warning}


def tissue_concentration_mM(signal, baseline, lv_baseline, acquisition, method="model", sequence=None,
                            scale=None):
    """Myocardial tissue concentration by the chosen conversion, the pipeline's one entry point.

    Parameters
    ----------
    signal : array_like, shape (..., n_frames)
        Tissue signal curves (signal units), time on the last axis.
    baseline : array_like, shape (...)
        Pre-contrast signal S(0) of each curve, positive.
    lv_baseline : float or None
        Pre-contrast LV blood-pool signal S_LV(0) (used by ``linear`` only;
        may be None for ``model``).
    acquisition : acquisition.Acquisition
        The study's physical parameters: T1 of blood (``linear``) or of
        myocardium (``model``), relaxivity and the nominal sequence.
    method : {'model', 'linear'}, optional
        ``model``: inversion of the sequence's signal equation with the
        native myocardial T1 (module docstring); ``linear``: the paper's
        relative-enhancement conversion with T1b.
    sequence : sequence.SequenceParameters, optional
        The readout to invert (``model``), e.g. the blood-pool calibration's;
        default ``acquisition.sequence``.
    scale : array_like, shape (...), optional
        Signal scale of each curve (``model``): the blood-pool anchor of
        ``tissue_scale``, used by ``anchored_concentration_mM``.  Without it
        the scale comes from each curve's pre-contrast signal at the native
        myocardial T1 (``model_concentration_mM``), which depends strongly on
        the saturation efficiency.

    Returns
    -------
    conc_mM : numpy.ndarray, shape (..., n_frames)
        Concentration, mM.
    clipped_mask : numpy.ndarray of bool, shape (..., n_frames)
        Frames whose signal was outside the model's range (always all False
        for ``linear``).

    Raises
    ------
    AIAIFInputError
        For an unknown method, a T1 the acquisition does not know, or
        non-positive baselines.
    """
    if method not in CONVERSION_METHODS:
        raise AIAIFInputError("Unknown conversion method {!r}; choose one of {}.".format(
            method, ", ".join(CONVERSION_METHODS)))
    signal, baseline = _signal_and_baseline(signal, baseline)
    if method == "linear":
        conc = linear_concentration_mM(signal, baseline, lv_baseline, acquisition.t1_blood(),
                                       acquisition.r1_per_s_per_mM)
        return conc, np.zeros(conc.shape, dtype=bool)
    sequence = acquisition.sequence if sequence is None else sequence
    if scale is not None:
        conc, clipped, _ = anchored_concentration_mM(signal, baseline, scale, acquisition.r1_per_s_per_mM, sequence)
        return conc, clipped
    return model_concentration_mM(signal, baseline, acquisition.t1_myocardium(), acquisition.r1_per_s_per_mM,
                                  sequence)


def aif_concentration_mM(signal, baseline, acquisition):
    """AIF concentration by the paper's linear conversion, with ``S(0) = S_LV(0)``.

    The corrected AIF is the network's estimate of the unsaturated, linear
    curve, so its conversion is linear by construction.

    Parameters
    ----------
    signal : array_like, shape (..., n_frames)
        AIF signal (signal units), time on the last axis.
    baseline : float or array_like, shape (...)
        Pre-contrast LV blood-pool signal S_LV(0), positive.
    acquisition : acquisition.Acquisition
        Gives the native blood T1 and the relaxivity.

    Returns
    -------
    numpy.ndarray, shape (..., n_frames)
        Blood concentration, mM.

    Raises
    ------
    AIAIFInputError
        For a non-positive baseline, or a blood T1 the acquisition does not know.
    """
    signal, baseline = _signal_and_baseline(signal, baseline)
    return linear_concentration_mM(signal, baseline, baseline, acquisition.t1_blood(), acquisition.r1_per_s_per_mM)


# ---------------------------------------------------------------------------
# Blood-pool calibration of the sequence
# ---------------------------------------------------------------------------

#: Bounds of the blood-pool calibration: saturation efficiency (fraction of Mz
#: destroyed; above 1 an over-flipped saturation pulse leaves negative Mz) and
#: flip angle as a multiple of the nominal one.  Project choice: wide enough
#: for imperfect saturation pulses and B1 errors of -70 % to +100 %, so that a
#: calibration that ends on a bound signals a model or AIF that does not fit
#: rather than an ordinary scanner.
CALIBRATION_EFFICIENCY_BOUNDS = (0.5, 1.1)
CALIBRATION_FLIP_ANGLE_FACTOR_BOUNDS = (0.3, 2.0)
#: Fraction of a bound's range within which a calibrated value counts as at
#: the bound.
CALIBRATION_BOUND_TOLERANCE = 1e-3

#: Frames used by the blood-pool calibration: AIF concentration at most this
#: fraction of its peak.  Project choice: myocardial R1 stays in the range of
#: the blood's lower concentrations (tissue peaks are a fraction of the blood
#: peak), while the top of the bolus is both uninformative (the saturated
#: signal is flat there) and biased by blood T2* losses the tissue does not
#: share.  On 12 phantoms (both fields, noise-free) the mean |error| of the
#: calibrated tissue peak concentration was 0.4 % with this cut, 2.1 % with
#: every frame (max 1.5 % vs 9.4 %).
CALIBRATION_MAX_AIF_FRACTION = 0.3
#: Fewest enhanced frames (above 5 % of the AIF peak) the cut must keep.
MIN_CALIBRATION_FRAMES = 5
#: RMS residual of the calibration, as a fraction of the largest signal
#: enhancement it fitted, above which the fit is reported as poor (project
#: choice: on the project's phantoms the residual is 0.2-1.5 % of it).
CALIBRATION_RESIDUAL_WARNING_FRACTION = 0.05


@dataclass(frozen=True)
class BloodCalibration:
    """Outcome of ``calibrate_sequence_on_blood``.

    Attributes
    ----------
    sequence : sequence.SequenceParameters
        The calibrated readout the tissue conversion uses.
    used : bool
        True when the fit is off every bound; False when it rests on one
        (then ``warnings`` says so).
    readout_ordering : str
        k-space ordering of the chosen fit ('centric' or 'linear').
    saturation_efficiency, flip_angle_deg : float
        Fitted values of the chosen fit.
    blood_scale : float
        The blood pool's signal scale (signal units per unit of the
        normalised signal, i.e. M0 x coil gain x sin(flip angle) of the LV
        blood): the least-squares factor between the measured blood signal
        and the calibrated model over the fitted frames, which enhanced
        frames dominate, so that it hardly depends on the saturation
        efficiency (``tissue_scale`` carries it to the myocardium).
    rms_ratio_residual : float
        RMS residual of the fitted blood signal ratio S(t)/S(0).
    relative_residual : float
        ``rms_ratio_residual`` over the largest fitted enhancement S(t)/S(0) - 1.
    at_bound : tuple of str
        Fitted parameters of the chosen fit that ended on a calibration bound.
    candidates : tuple of dict
        Every fit tried (one per ordering): ordering, values, residual, bounds.
    warnings : tuple of str
        Sentences for ``summary.json`` (a fit on a bound, a poor fit).
    """

    sequence: object
    used: bool
    readout_ordering: str
    saturation_efficiency: float
    flip_angle_deg: float
    blood_scale: float
    rms_ratio_residual: float
    relative_residual: float
    at_bound: tuple
    candidates: tuple
    warnings: tuple

    def summary(self):
        """JSON-ready record for ``summary.json``."""
        return {"used": self.used, "readout_ordering": self.readout_ordering,
                "saturation_efficiency": self.saturation_efficiency, "flip_angle_deg": self.flip_angle_deg,
                "blood_scale": self.blood_scale, "rms_ratio_residual": self.rms_ratio_residual, "relative_residual": self.relative_residual,
                "at_bound": list(self.at_bound), "candidates": [dict(c) for c in self.candidates]}


def _calibration_frames(aif, max_aif_fraction):
    use = aif <= max_aif_fraction * np.max(aif)
    if np.count_nonzero(use & (aif > 0.05 * np.max(aif))) < MIN_CALIBRATION_FRAMES:
        use = np.ones(aif.shape, dtype=bool)
    return use


def _fit_readout(ratio, r1_blood, r1_native, nominal, fit_efficiency):
    """Least-squares flip-angle factor (and saturation efficiency) for one readout; dict of the fit."""
    from scipy import optimize

    names = ("saturation_efficiency", "flip_angle_deg")
    lower = np.array([CALIBRATION_EFFICIENCY_BOUNDS[0], CALIBRATION_FLIP_ANGLE_FACTOR_BOUNDS[0]])
    upper = np.array([CALIBRATION_EFFICIENCY_BOUNDS[1], CALIBRATION_FLIP_ANGLE_FACTOR_BOUNDS[1]])
    # With centric ordering the centre is sampled by the first pulse, so the
    # flip angle does not change the normalised signal: nothing to fit.
    free = np.array([fit_efficiency, nominal.pulses_to_centre > 1])
    if not free.any():
        ratio_model = nominal.normalised_signal(r1_blood) / nominal.normalised_signal(r1_native)
        return {"readout_ordering": "centric" if nominal.pulses_to_centre == 1 else "linear",
                "pulses_to_centre": int(nominal.pulses_to_centre),
                "saturation_efficiency": float(nominal.saturation_efficiency),
                "flip_angle_deg": float(nominal.flip_angle_deg),
                "rms_ratio_residual": float(np.sqrt(np.mean((ratio_model - ratio) ** 2))), "at_bound": [],
                "_sequence": nominal}

    def with_parameters(params):
        values = np.array([nominal.saturation_efficiency, 1.0])
        values[free] = params
        return replace(nominal, flip_angle_deg=min(values[1] * nominal.flip_angle_deg, 89.9),
                       saturation_efficiency=values[0])

    def residual(params):
        model = with_parameters(params)
        return model.normalised_signal(r1_blood) / model.normalised_signal(r1_native) - ratio

    start = np.clip([min(nominal.saturation_efficiency, 0.98), 1.0], lower, upper)
    fit = optimize.least_squares(residual, start[free], bounds=(lower[free], upper[free]))
    tolerance = CALIBRATION_BOUND_TOLERANCE * (upper - lower)[free]
    near = (fit.x - lower[free] <= tolerance) | (upper[free] - fit.x <= tolerance)
    sequence = with_parameters(fit.x)
    return {"readout_ordering": "centric" if sequence.pulses_to_centre == 1 else "linear",
            "pulses_to_centre": int(sequence.pulses_to_centre),
            "saturation_efficiency": float(sequence.saturation_efficiency),
            "flip_angle_deg": float(sequence.flip_angle_deg),
            "rms_ratio_residual": float(np.sqrt(np.mean(fit.fun ** 2))),
            "at_bound": [name for name, hit in zip(np.array(names)[free], near) if hit], "_sequence": sequence}


def calibrate_sequence_on_blood(blood_signal, blood_baseline, aif_mM, acquisition,
                                max_aif_fraction=CALIBRATION_MAX_AIF_FRACTION):
    """Fit the sequence's saturation efficiency and flip angle to the LV blood pool.

    The blood-pool signal of the standard slices and the AIF concentration
    (from the network or an external, unsaturated AIF) sample the same
    sequence's signal-versus-R1 curve that the myocardium follows: same
    saturation pulse, flip angle and readout.  Fitting the ratio
    ``S_blood(t) / S_blood(0)`` with the model ``f(R1(t)) / f(R1(0))``,
    ``R1(t) = 1/T1b + r1 C_aif(t)``, therefore calibrates the ``model``
    conversion on the study itself: the saturation efficiency and the
    effective flip angle (which also absorbs B1 errors) are the two
    parameters that neither the paper nor a DICOM header gives reliably (a
    saturation efficiency given as an option is held, not fitted).
    The blood covers a wider R1 range than the myocardium, so the tissue is
    interpolated, not extrapolated.  Meaningless when the AIF itself is the
    saturated signal converted linearly (the fit would return a linear
    sequence).

    When the k-space ordering is unknown (``acquisition.readout_ordering`` is
    None) both orderings are fitted -- centric, and linear with the nominal
    pulses to the centre -- and the better fit wins: a fit with the wrong
    ordering compensates with a flip angle far from any real one.  A fit off
    the calibration bounds is preferred to one on a bound; when every fit
    ends on a bound, the bounded fit is used (the bounds constrain it to a
    plausible scanner) and ``warnings`` says which value rests on its bound.
    A fit whose residual exceeds ``CALIBRATION_RESIDUAL_WARNING_FRACTION`` of
    the fitted enhancement is used and reported as poor.  With centric
    ordering the flip angle does not change the normalised signal and is not
    fitted.

    Parameters
    ----------
    blood_signal : array_like, shape (n_frames,)
        Measured (saturated) LV blood-pool signal, signal units.
    blood_baseline : float
        Its pre-contrast level S_blood(0).
    aif_mM : array_like, shape (n_frames,)
        AIF concentration at the same frames, mM.
    acquisition : acquisition.Acquisition
        Native blood T1, relaxivity, the nominal sequence (starting point and
        fixed saturation time, TR and, when known, ordering).
    max_aif_fraction : float, optional
        Fit only frames whose AIF concentration is at most this fraction of
        its peak (``CALIBRATION_MAX_AIF_FRACTION``); every frame when fewer
        than ``MIN_CALIBRATION_FRAMES`` enhanced frames qualify.

    Returns
    -------
    BloodCalibration
        The sequence to use, the fitted values, residual, bound state and
        warnings.
    """
    nominal = acquisition.sequence
    t1_blood_s = acquisition.t1_blood()
    signal, baseline = _signal_and_baseline(blood_signal, blood_baseline)
    aif = np.asarray(aif_mM, dtype=float)
    if aif.shape != signal.shape or signal.ndim != 1 or not np.all(np.isfinite(aif)) or not np.max(aif) > 0:
        raise AIAIFInputError("The blood signal and the AIF concentration must be finite curves on the same "
                              "frames, with the AIF rising above zero; pass one value per frame for both.")
    use = _calibration_frames(aif, max_aif_fraction)
    ratio = signal[use] / baseline
    r1_blood = 1.0 / t1_blood_s + acquisition.r1_per_s_per_mM * np.maximum(aif[use], 0.0)
    readouts = [nominal]
    if acquisition.readout_ordering is None:
        other = 1 if nominal.pulses_to_centre != 1 else DEFAULT_LINEAR_PULSES_TO_CENTRE
        if (other - 1) * nominal.repetition_time_s <= nominal.saturation_time_s:
            readouts.append(replace(nominal, pulses_to_centre=other))
    fit_efficiency = acquisition.sources.get("saturation_efficiency") != "option"
    fits = sorted((_fit_readout(ratio, r1_blood, 1.0 / t1_blood_s, readout, fit_efficiency) for readout in readouts),
                  key=lambda fit: fit["rms_ratio_residual"])
    usable = [fit for fit in fits if not fit["at_bound"]]
    chosen = usable[0] if usable else fits[0]
    enhancement = max(float(np.max(ratio)) - 1.0, 1e-12)
    relative = chosen["rms_ratio_residual"] / enhancement
    warnings = []
    if not usable:
        warnings.append("The blood-pool calibration of the sequence rests on its bound ({}), so the tissue "
                        "concentration rests on that bound too; the AIF may be wrong in scale or the sequence "
                        "unlike the model: give the acquisition's flip angle and k-space ordering, or check the "
                        "AIF.".format(", ".join("{} {:.3g}".format(name.replace("_", " "), chosen[name])
                                               for name in chosen["at_bound"])))
    if relative > CALIBRATION_RESIDUAL_WARNING_FRACTION:
        warnings.append("The blood-pool calibration of the sequence fits the blood signal poorly (residual {:.0f} % "
                        "of the enhancement); the tissue conversion may be biased: check the AIF and the LV "
                        "blood-pool ROI.".format(100.0 * relative))
    candidates = tuple({key: value for key, value in fit.items() if not key.startswith("_")} for fit in fits)
    model = chosen["_sequence"].normalised_signal(r1_blood)
    blood_scale = float(np.dot(signal[use], model) / np.dot(model, model))
    return BloodCalibration(
        sequence=chosen["_sequence"], used=bool(usable),
        readout_ordering=chosen["readout_ordering"], saturation_efficiency=chosen["saturation_efficiency"],
        flip_angle_deg=chosen["flip_angle_deg"], blood_scale=blood_scale,
        rms_ratio_residual=chosen["rms_ratio_residual"],
        relative_residual=float(relative), at_bound=tuple(chosen["at_bound"]), candidates=candidates,
        warnings=tuple(warnings))

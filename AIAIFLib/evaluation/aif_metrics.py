"""The AIF-curve stage of the evaluation [Scannell2022, "Evaluation" and "Results"].

NMSE between the test and reference curve of each case, reported as median
(IQR) and as the share of curves with NMSE at or above
``constants.POOR_AIF_NMSE_PERCENT``; peak value (PV), time-to-peak (TTP) and
full width at half maximum (FWHM) of every curve, whose reference and test
distributions are compared with a two-sided Mann-Whitney U test.

Definitions chosen here (the paper does not spell them out)
------------------------------------------------------------
NMSE
    ``100 * sum_t (test(t) - reference(t))**2 / sum_t reference(t)**2``, in %,
    over all frames of the curve as given (signal curves keep their
    pre-contrast baseline, which is part of the sum).
PV, TTP
    The maximum of the curve in its own units, and the time of its first
    maximum minus the time of the curve's first frame.
FWHM
    Baseline ``b`` = mean of the first ``PRE_CONTRAST_BEATS`` frames (the
    paper's window starts four beats before contrast arrival), never
    including the peak frame; half level ``h = b + (PV - b) / 2``.  The
    rising crossing lies between the last frame before the peak at or below
    ``h`` and the frame after it; the falling crossing between the first frame
    after the peak at or below ``h`` and the frame before it; both are
    interpolated linearly in time on the actual (possibly non-uniform) frame
    times.  FWHM is the time between them, and NaN when a crossing does not
    exist (the curve starts above ``h`` or never falls back to ``h``).
"""

import math

import numpy as np

from .. import constants as K
from ..errors import AIAIFInputError
from .results import AIFResult, CurveMetrics
from .statistics import compare_distributions, summarise

#: Fewest frames a curve must have (a peak with a frame on either side).
MIN_CURVE_FRAMES = 3


def nmse_percent(reference, test):
    """Normalised mean squared error of a test curve against its reference.

    ``NMSE = 100 * sum((test - reference)**2) / sum(reference**2)`` over the
    last axis (all frames as given, baseline included).

    Parameters
    ----------
    reference, test : array_like, (..., n_frames)
        Curves in the same units (e.g. signal normalised by the saturated
        maximum), on the same frames.

    Returns
    -------
    float or numpy.ndarray
        NMSE, %, one per curve.
    """
    reference = np.asarray(reference, dtype=float)
    test = np.asarray(test, dtype=float)
    return 100.0 * np.sum((test - reference) ** 2, axis=-1) / np.sum(reference ** 2, axis=-1)


def _crossing_time(times, curve, below, above, level):
    """Time where the straight line between frames ``below`` and ``above`` meets ``level``."""
    fraction = (level - curve[below]) / (curve[above] - curve[below])
    return times[below] + fraction * (times[above] - times[below])


def curve_metrics(times_s, curve, baseline_frames=K.PRE_CONTRAST_BEATS):
    """Peak value, time-to-peak and FWHM of one AIF curve.

    Parameters
    ----------
    times_s : array_like, (n_frames,)
        Frame times, s, strictly increasing (need not be uniform).
    curve : array_like, (n_frames,)
        The curve (signal or concentration, any units).
    baseline_frames : int, optional
        Leading frames averaged as the pre-contrast baseline (at most the
        frames before the peak); 0 takes the baseline as 0 (for curves
        already baseline-subtracted).

    Returns
    -------
    CurveMetrics
        PV (curve units), TTP (s from the first frame), FWHM (s) and the
        baseline (curve units).  The FWHM is the time between the linearly
        interpolated crossings of ``baseline + (PV - baseline) / 2`` nearest
        the peak on either side, NaN if either crossing is missing or the peak
        does not rise above the baseline.
    """
    times = np.asarray(times_s, dtype=float)
    curve = np.asarray(curve, dtype=float)
    peak = int(np.argmax(curve))
    peak_value = float(curve[peak])
    n_baseline = min(int(baseline_frames), peak)
    if baseline_frames <= 0:
        baseline = 0.0
    elif n_baseline == 0:
        baseline = math.nan
    else:
        baseline = float(curve[:n_baseline].mean())
    fwhm = math.nan
    half = baseline + 0.5 * (peak_value - baseline)
    if peak_value > baseline:
        rising = np.flatnonzero(curve[:peak] <= half)
        falling = np.flatnonzero(curve[peak + 1:] <= half)
        if rising.size and falling.size:
            start = _crossing_time(times, curve, rising[-1], rising[-1] + 1, half)
            end = _crossing_time(times, curve, peak + falling[0] + 1, peak + falling[0], half)
            fwhm = float(end - start)
    return CurveMetrics(peak_value, float(times[peak] - times[0]), fwhm, baseline)


def _curve_list(name, curves):
    if isinstance(curves, np.ndarray) and curves.dtype != object and curves.ndim in (1, 2):
        return list(np.atleast_2d(curves.astype(float)))
    try:
        return [np.asarray(curve, dtype=float) for curve in curves]
    except (TypeError, ValueError):
        raise AIAIFInputError("The {} curves must be a 2-D array (curves x frames) or a list of 1-D arrays "
                              "of numbers; pass one curve per case.".format(name))


def validate_aif_pairs(times_s, reference, test):
    """Check paired AIF curves and return them as lists of 1-D arrays.

    Parameters
    ----------
    times_s : array_like
        Frame times, s: an (n, n_frames) array, a list of n 1-D arrays, or one
        1-D array shared by all curves; strictly increasing per curve.
    reference, test : array_like
        Curves: an (n, n_frames) array or a list of n 1-D arrays, each the
        length of its times (at least ``MIN_CURVE_FRAMES``), finite; every
        reference curve non-zero somewhere.

    Returns
    -------
    times, reference, test : list of numpy.ndarray
        One 1-D float array per case.

    Raises
    ------
    AIAIFInputError
        With one sentence naming the first problem found.
    """
    reference = _curve_list("reference", reference)
    test = _curve_list("test", test)
    if isinstance(times_s, np.ndarray) and times_s.ndim == 1:
        times = [np.asarray(times_s, dtype=float)] * len(reference)
    else:
        times = _curve_list("time", times_s)
    if not (len(times) == len(reference) == len(test)) or not reference:
        raise AIAIFInputError("Got {} time series, {} reference and {} test curves; pass the same positive "
                              "number of each.".format(len(times), len(reference), len(test)))
    for index, (t, r, s) in enumerate(zip(times, reference, test)):
        if not (t.ndim == r.ndim == s.ndim == 1 and t.size == r.size == s.size >= MIN_CURVE_FRAMES):
            raise AIAIFInputError("Curve {}: times, reference and test must be 1-D of one length of at least {} "
                                  "frames, got shapes {}, {}, {}.".format(index, MIN_CURVE_FRAMES, t.shape,
                                                                          r.shape, s.shape))
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(r)) and np.all(np.isfinite(s))):
            raise AIAIFInputError("Curve {} contains NaN or infinite values; pass finite times and "
                                  "curves.".format(index))
        if np.any(np.diff(t) <= 0):
            raise AIAIFInputError("Curve {}: frame times must be strictly increasing; sort the frames and "
                                  "drop repeated times.".format(index))
        if not np.any(r != 0):
            raise AIAIFInputError("Curve {}: the reference is zero at every frame, so its NMSE is undefined; "
                                  "pass the reference curve.".format(index))
    return times, reference, test


def _metric_comparisons(times, reference, test, baseline_frames):
    """PV, TTP and FWHM comparisons of reference and test curves."""
    per_curve = np.array([[[getattr(curve_metrics(t, c, baseline_frames), field)
                            for field in ("peak_value", "time_to_peak_s", "fwhm_s")]
                           for t, c in zip(times, curves)] for curves in (reference, test)])
    # per_curve: (method, curve, metric)
    return [compare_distributions(per_curve[0, :, k], per_curve[1, :, k]) for k in range(per_curve.shape[2])]


def analyse_aifs(times_s, reference, test, baseline_frames=K.PRE_CONTRAST_BEATS,
                 poor_nmse_percent=K.POOR_AIF_NMSE_PERCENT):
    """The paper's AIF-curve evaluation: NMSE, and PV, TTP, FWHM with Mann-Whitney U.

    Parameters
    ----------
    times_s : array_like
        Frame times, s (see ``validate_aif_pairs``: (n, n_frames), a list of
        1-D arrays, or one shared 1-D array).
    reference, test : array_like
        Reference and test curves on those times, same units (normalised
        signal in the paper).
    baseline_frames : int, optional
        Leading frames averaged as the baseline of the FWHM (``curve_metrics``).
    poor_nmse_percent : float, optional
        NMSE at or above which a curve counts as poor, %.

    Returns
    -------
    AIFResult
        Per-curve NMSE (%) with its median (IQR) and the poor share (%), and
        PV (curve units), TTP (s) and FWHM (s) comparisons.
    """
    times, reference, test = validate_aif_pairs(times_s, reference, test)
    nmse = np.array([nmse_percent(r, s) for r, s in zip(reference, test)])
    n_poor = int(np.count_nonzero(nmse >= poor_nmse_percent))
    peak_value, time_to_peak, fwhm = _metric_comparisons(times, reference, test, baseline_frames)
    return AIFResult(nmse, summarise(nmse), n_poor, 100.0 * n_poor / nmse.size, float(poor_nmse_percent),
                     peak_value, time_to_peak, fwhm, int(nmse.size))

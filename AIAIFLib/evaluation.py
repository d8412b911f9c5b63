"""The paper's evaluation protocol [Scannell2022, "Evaluation" and "Results"].

A test method (the AI-AIF in the paper, here whatever is passed as "test") is
compared with a reference (the dual-sequence AIF in the paper) in two stages:

AIF curves
    NMSE between the test and reference curve of each case, reported as
    median (IQR) and as the share of curves with NMSE at or above
    ``constants.POOR_AIF_NMSE_PERCENT``; peak value (PV), time-to-peak (TTP)
    and full width at half maximum (FWHM) of every curve, whose reference and
    test distributions are compared with a two-sided Mann-Whitney U test.
MBF
    Segment stress MBF with both AIFs: median (IQR), Mann-Whitney U,
    Bland-Altman bias and 95 % limits of agreement, least-squares line and
    R^2, per patient and per AHA segment; agreement of the ischaemia call at
    ``constants.ISCHAEMIA_THRESHOLD_ML_MIN_G`` for segments and for coronary
    vessels.

Definitions chosen here (the paper does not spell them out)
------------------------------------------------------------
NMSE
    ``100 * sum_t (test(t) - reference(t))**2 / sum_t reference(t)**2``, in %,
    over all frames of the curve as given (signal curves keep their
    pre-contrast baseline, which is part of the sum).
IQR
    The difference of the 75th and 25th percentiles (NumPy's linear
    interpolation), reported as one number as the paper does: "1.9 % (2.5)".
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
Per-patient MBF
    The mean of the patient's segments that are valid (finite) for both
    methods, each segment weighted equally.  The paper averages all pixels;
    with segment values only, the segment mean stands in for it.
Missing values
    A NaN segment in either array is excluded from both (pairwise), for every
    statistic, including the vessel values.
Ischaemia
    A value strictly below the threshold is ischaemic.  A vessel's value is
    the mean of the two lowest valid segments of its territory (the one valid
    segment if only one is valid; no vessel if none), each method using its
    own two lowest segments.
Bland-Altman
    Differences ``test - reference``; bias their mean; limits of agreement
    ``bias +/- 1.96 SD`` with the sample SD (``ddof=1``).
Line
    Ordinary least squares ``test = slope * reference + intercept``; R^2 the
    coefficient of determination of that fit (the squared Pearson r).

All statistics use SciPy [Scannell2022: "All statistical analysis was
performed in Python using SciPy"].
"""

import csv
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from . import constants as K
from .errors import AIAIFInputError

#: Columns of the AIF pairs CSV, in order.
AIF_CSV_COLUMNS = ("case", "time_s", "reference", "test")
#: Columns of the segment MBF CSV, in order.
MBF_CSV_COLUMNS = ("patient", "segment", "reference", "test")
#: Fewest frames a curve must have (a peak with a frame on either side).
MIN_CURVE_FRAMES = 3
#: Multiplier of the SD giving the 95 % limits of agreement.
LOA_SD_MULTIPLIER = 1.96
#: The coronary vessels in the order of the vessel arrays.
VESSELS = tuple(K.CORONARY_TERRITORIES)


# ---------------------------------------------------------------------------
# Result structures
# ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Summary:
    """Median and quartiles of the finite values of a sample.

    Attributes
    ----------
    median, q1, q3 : float
        Median, 25th and 75th percentiles, in the units of the values (NaN
        when ``n`` is 0).
    n : int
        Number of finite values summarised.
    """

    median: float
    q1: float
    q3: float
    n: int

    @property
    def iqr(self):
        """Interquartile range ``q3 - q1``, in the units of the values."""
        return self.q3 - self.q1


@dataclass(frozen=True, eq=False)
class MetricComparison:
    """Reference and test distributions of one quantity, with a Mann-Whitney U test.

    Attributes
    ----------
    reference_values, test_values : numpy.ndarray
        The values compared (NaN where undefined; NaNs are left out of the
        summaries and the test).
    reference, test : Summary
        Median (IQR) of each.
    u_statistic : float
        Mann-Whitney U of the test values against the reference values.
    p_value : float
        Two-sided P of the U test (NaN if either sample is empty).
    """

    reference_values: np.ndarray
    test_values: np.ndarray
    reference: Summary
    test: Summary
    u_statistic: float
    p_value: float


@dataclass(frozen=True, eq=False)
class CurveMetrics:
    """Shape of one AIF curve.

    Attributes
    ----------
    peak_value : float
        Maximum, in the curve's units (normalised units in the paper).
    time_to_peak_s : float
        Time of the first maximum from the curve's first frame, s.
    fwhm_s : float
        Full width at half maximum above the baseline, s (NaN if undefined).
    baseline : float
        Pre-contrast baseline used for the half maximum, curve units.
    """

    peak_value: float
    time_to_peak_s: float
    fwhm_s: float
    baseline: float


@dataclass(frozen=True, eq=False)
class AIFResult:
    """The AIF-curve stage of the evaluation.

    Attributes
    ----------
    nmse_percent : numpy.ndarray, (n_curves,)
        NMSE of each test curve against its reference, %.
    nmse : Summary
        Median (IQR) of ``nmse_percent``, %.
    n_poor : int
        Curves with NMSE >= ``poor_threshold_percent``.
    poor_percent : float
        ``100 * n_poor / n_curves``, %.
    poor_threshold_percent : float
        The NMSE counted as poor, % (``constants.POOR_AIF_NMSE_PERCENT``).
    peak_value : MetricComparison
        PV of each curve, curve units.
    time_to_peak_s : MetricComparison
        TTP of each curve, s.
    fwhm_s : MetricComparison
        FWHM of each curve, s.
    n_curves : int
        Number of curve pairs.
    """

    nmse_percent: np.ndarray
    nmse: Summary
    n_poor: int
    poor_percent: float
    poor_threshold_percent: float
    peak_value: MetricComparison
    time_to_peak_s: MetricComparison
    fwhm_s: MetricComparison
    n_curves: int


@dataclass(frozen=True, eq=False)
class LineFit:
    """Least-squares line ``test = slope * reference + intercept``.

    Attributes
    ----------
    slope : float
        Dimensionless.
    intercept : float
        In the units of the values (mL/min/g for MBF).
    r_squared : float
        Coefficient of determination (NaN with fewer than 2 distinct
        reference values).
    n : int
        Number of pairs fitted.
    """

    slope: float
    intercept: float
    r_squared: float
    n: int


@dataclass(frozen=True, eq=False)
class BlandAltman:
    """Bland-Altman agreement of test with reference.

    Attributes
    ----------
    bias : float
        Mean of ``test - reference``, units of the values.
    sd : float
        Sample SD of the differences (NaN with fewer than 2 pairs).
    lower_loa, upper_loa : float
        95 % limits of agreement ``bias -/+ 1.96 sd``.
    n : int
        Number of pairs.
    """

    bias: float
    sd: float
    lower_loa: float
    upper_loa: float
    n: int


@dataclass(frozen=True, eq=False)
class MBFLevel:
    """MBF agreement at one level (per patient or per segment).

    Attributes
    ----------
    comparison : MetricComparison
        Paired reference and test MBF (mL/min/g, missing pairs removed),
        their median (IQR) and the Mann-Whitney U test.
    line : LineFit
        Least-squares line of test on reference.
    bland_altman : BlandAltman
        Bias and limits of agreement, mL/min/g.
    """

    comparison: MetricComparison
    line: LineFit
    bland_altman: BlandAltman


@dataclass(frozen=True, eq=False)
class Agreement:
    """Agreement of the ischaemic / non-ischaemic call of two methods.

    Attributes
    ----------
    n_match : int
        Items called the same by both methods.
    n_total : int
        Items with a value from both methods.
    """

    n_match: int
    n_total: int

    @property
    def percent(self):
        """``100 * n_match / n_total``, % (NaN when there are no items)."""
        return 100.0 * self.n_match / self.n_total if self.n_total else float("nan")


@dataclass(frozen=True, eq=False)
class MBFResult:
    """The MBF stage of the evaluation.

    Attributes
    ----------
    per_patient : MBFLevel
        Patient MBF (mean of the pairwise-valid segments), mL/min/g.
    per_segment : MBFLevel
        Segment MBF, mL/min/g.
    segment_agreement : Agreement
        Segments whose ischaemia call matches.
    vessel_agreement : Agreement
        Vessels whose ischaemia call matches.
    vessel_reference, vessel_test : numpy.ndarray, (n_patients, 3)
        Vessel MBF (mean of the two lowest segments) in the order of
        ``VESSELS``, mL/min/g; NaN where a territory has no valid segment.
    threshold_ml_min_g : float
        Ischaemia threshold used, mL/min/g.
    n_patients : int
        Rows of the input arrays.
    """

    per_patient: MBFLevel
    per_segment: MBFLevel
    segment_agreement: Agreement
    vessel_agreement: Agreement
    vessel_reference: np.ndarray
    vessel_test: np.ndarray
    threshold_ml_min_g: float
    n_patients: int


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------

def _finite(values):
    values = np.asarray(values, dtype=float).ravel()
    return values[np.isfinite(values)]


def summarise(values):
    """Median and quartiles of the finite values.

    Parameters
    ----------
    values : array_like
        Any shape, any units; NaN and infinite values are ignored.

    Returns
    -------
    Summary
        Median, 25th and 75th percentile in the units of ``values``, and the
        count of finite values.
    """
    finite = _finite(values)
    if finite.size == 0:
        return Summary(math.nan, math.nan, math.nan, 0)
    q1, median, q3 = np.percentile(finite, [25.0, 50.0, 75.0])
    return Summary(float(median), float(q1), float(q3), int(finite.size))


def compare_distributions(reference_values, test_values):
    """Median (IQR) of two samples and a two-sided Mann-Whitney U test between them.

    Parameters
    ----------
    reference_values, test_values : array_like, 1-D
        The two samples in the same units; NaNs are left out (the samples need
        not be paired or of equal size).

    Returns
    -------
    MetricComparison
        Summaries, U statistic and two-sided P (NaN if a sample is empty).
    """
    reference_values = np.asarray(reference_values, dtype=float)
    test_values = np.asarray(test_values, dtype=float)
    reference, test = _finite(reference_values), _finite(test_values)
    u_statistic = p_value = math.nan
    if reference.size and test.size:
        result = stats.mannwhitneyu(test, reference, alternative="two-sided")
        u_statistic, p_value = float(result.statistic), float(result.pvalue)
    return MetricComparison(reference_values, test_values, summarise(reference), summarise(test),
                            u_statistic, p_value)


def _paired_finite(reference, test):
    reference = np.asarray(reference, dtype=float).ravel()
    test = np.asarray(test, dtype=float).ravel()
    keep = np.isfinite(reference) & np.isfinite(test)
    return reference[keep], test[keep]


def bland_altman(reference, test):
    """Bland-Altman bias and 95 % limits of agreement of test with reference.

    Parameters
    ----------
    reference, test : array_like
        Paired values of the same shape and units (mL/min/g for MBF); a pair
        with a NaN in either is left out.

    Returns
    -------
    BlandAltman
        ``bias`` = mean of ``test - reference``; ``lower_loa``/``upper_loa``
        = ``bias -/+ 1.96 * SD`` (sample SD, ``ddof=1``), in the units of the
        values.
    """
    reference, test = _paired_finite(reference, test)
    difference = test - reference
    n = int(difference.size)
    bias = float(difference.mean()) if n else math.nan
    sd = float(difference.std(ddof=1)) if n > 1 else math.nan
    return BlandAltman(bias, sd, bias - LOA_SD_MULTIPLIER * sd, bias + LOA_SD_MULTIPLIER * sd, n)


def fit_line(reference, test):
    """Least-squares line of test on reference and its R^2.

    Parameters
    ----------
    reference, test : array_like
        Paired values of the same shape and units; a pair with a NaN in either
        is left out.

    Returns
    -------
    LineFit
        ``test = slope * reference + intercept`` (intercept in the units of
        the values) and the coefficient of determination; NaN fields when
        fewer than two distinct reference values remain.
    """
    reference, test = _paired_finite(reference, test)
    n = int(reference.size)
    if n < 2 or np.ptp(reference) == 0:
        return LineFit(math.nan, math.nan, math.nan, n)
    result = stats.linregress(reference, test)
    return LineFit(float(result.slope), float(result.intercept), float(result.rvalue) ** 2, n)


def diagnosis_agreement(reference, test, threshold_ml_min_g=K.ISCHAEMIA_THRESHOLD_ML_MIN_G):
    """How many paired values fall on the same side of the ischaemia threshold.

    Parameters
    ----------
    reference, test : array_like
        Paired MBF values (segments or vessels) of the same shape, mL/min/g; a
        pair with a NaN in either is left out.
    threshold_ml_min_g : float, optional
        A value strictly below it is ischaemic, mL/min/g.

    Returns
    -------
    Agreement
        Matching calls and pairs counted.
    """
    reference, test = _paired_finite(reference, test)
    match = (reference < threshold_ml_min_g) == (test < threshold_ml_min_g)
    return Agreement(int(np.count_nonzero(match)), int(match.size))


# ---------------------------------------------------------------------------
# AIF curves
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# MBF
# ---------------------------------------------------------------------------

def _row_means(values):
    """Mean of the finite values of each row, NaN for a row without any (no warning)."""
    finite = np.isfinite(values)
    count = finite.sum(axis=-1)
    total = np.where(finite, values, 0.0).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def patient_mbf(segment_mbf):
    """Patient MBF: the mean of each patient's valid segments.

    Parameters
    ----------
    segment_mbf : array_like, (n_patients, 16)
        Segment MBF, mL/min/g, AHA segments 1-16 in order; NaN = missing.

    Returns
    -------
    numpy.ndarray, (n_patients,)
        Mean of the finite segments, each weighted equally, mL/min/g (NaN
        for a patient without any).
    """
    return _row_means(np.asarray(segment_mbf, dtype=float))


def vessel_mbf(segment_mbf):
    """Vessel MBF: the mean of the two lowest valid segments of each coronary territory.

    Parameters
    ----------
    segment_mbf : array_like, (n_patients, 16)
        Segment MBF, mL/min/g, AHA segments 1-16 in order; NaN = missing.

    Returns
    -------
    numpy.ndarray, (n_patients, 3)
        LAD, RCA, LCX (``VESSELS``) values, mL/min/g: the mean of the two
        lowest finite segments of the territory, the single finite segment if
        only one, NaN if none.
    """
    values = np.asarray(segment_mbf, dtype=float)
    columns = []
    for vessel in VESSELS:
        index = np.asarray(K.CORONARY_TERRITORIES[vessel]) - K.AHA_SEGMENTS[0]
        lowest_two = np.sort(values[:, index], axis=1)[:, :2]  # NaNs sort last
        columns.append(_row_means(lowest_two))
    return np.stack(columns, axis=1)


def _validate_mbf(reference, test):
    arrays = []
    for name, values in (("reference", reference), ("test", test)):
        try:
            array = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            raise AIAIFInputError("The {} MBF must be numbers, an array of patients x 16 segments in "
                                  "mL/min/g.".format(name))
        if array.ndim != 2 or array.shape[1] != len(K.AHA_SEGMENTS) or array.shape[0] == 0:
            raise AIAIFInputError("The {} MBF must have shape (n_patients, {}), got {}; pass one row per "
                                  "patient and one column per AHA segment.".format(
                                      name, len(K.AHA_SEGMENTS), array.shape))
        if np.any(np.isinf(array)):
            raise AIAIFInputError("The {} MBF contains infinite values; use NaN for a missing "
                                  "segment.".format(name))
        arrays.append(array)
    if arrays[0].shape != arrays[1].shape:
        raise AIAIFInputError("Reference MBF has {} patients and test MBF {}; pass the same patients in "
                              "the same order.".format(arrays[0].shape[0], arrays[1].shape[0]))
    valid = np.isfinite(arrays[0]) & np.isfinite(arrays[1])
    if not np.any(valid):
        raise AIAIFInputError("No segment has both a reference and a test MBF value; pass paired values.")
    return [np.where(valid, array, np.nan) for array in arrays]


def _mbf_level(reference, test):
    reference, test = _paired_finite(reference, test)
    return MBFLevel(compare_distributions(reference, test), fit_line(reference, test),
                    bland_altman(reference, test))


def analyse_mbf(reference, test, threshold_ml_min_g=K.ISCHAEMIA_THRESHOLD_ML_MIN_G):
    """The paper's MBF evaluation, per patient and per segment, and diagnosis agreement.

    Parameters
    ----------
    reference, test : array_like, (n_patients, 16)
        Segment stress MBF with the reference and the test AIF, mL/min/g, AHA
        segments 1-16 in order; NaN marks a missing segment, which is
        excluded from both methods.
    threshold_ml_min_g : float, optional
        Ischaemia threshold, mL/min/g (values strictly below are ischaemic).

    Returns
    -------
    MBFResult
        Per-patient and per-segment comparisons (median (IQR), Mann-Whitney
        U, line and R^2, Bland-Altman, mL/min/g), segment and vessel
        agreement, and the vessel values.

    Raises
    ------
    AIAIFInputError
        Wrong shapes, infinite values, or no segment valid in both.
    """
    reference, test = _validate_mbf(reference, test)
    vessel_reference, vessel_test = vessel_mbf(reference), vessel_mbf(test)
    return MBFResult(
        per_patient=_mbf_level(patient_mbf(reference), patient_mbf(test)),
        per_segment=_mbf_level(reference, test),
        segment_agreement=diagnosis_agreement(reference, test, threshold_ml_min_g),
        vessel_agreement=diagnosis_agreement(vessel_reference, vessel_test, threshold_ml_min_g),
        vessel_reference=vessel_reference, vessel_test=vessel_test,
        threshold_ml_min_g=float(threshold_ml_min_g), n_patients=int(reference.shape[0]))


# ---------------------------------------------------------------------------
# Results table
# ---------------------------------------------------------------------------

_LABEL_WIDTH = 30


def _fixed(value, digits=2):
    """A number with ``digits`` decimals, never "-0.00"."""
    return "{:.{d}f}".format(round(value, digits) + 0.0, d=digits)


def _median_iqr(summary, digits):
    if summary.n == 0:
        return "n/a"
    return "{} ({})".format(_fixed(summary.median, digits), _fixed(summary.iqr, digits))


def format_p_value(p_value):
    """A P value as text: two decimals, three below 0.01, "<0.001" below 0.001, "n/a" if NaN.

    Parameters
    ----------
    p_value : float
        Probability (dimensionless).

    Returns
    -------
    str
    """
    if not np.isfinite(p_value):
        return "n/a"
    if p_value < 0.001:
        return "<0.001"
    return _fixed(p_value, 2 if p_value >= 0.01 else 3)


#: Fewest pairs for which R^2 and limits of agreement are reported: two points
#: always lie on a line (R^2 = 1) and give a spread from a single difference.
MIN_PAIRS_FOR_SPREAD = 3
#: Below this many patients the table warns that its per-patient statistics
#: say little (project choice: a Mann-Whitney U test on fewer than 10 values
#: per group can hardly reach significance, and 95 % limits of agreement from
#: under 10 differences are wider than their own estimate).
SMALL_SAMPLE_PATIENTS = 10


def format_line_equation(line, r_squared_text="R^2"):
    """The fitted line as text, e.g. ``y = 0.93x + 0.28, R^2 = 0.74``.

    Parameters
    ----------
    line : LineFit
        Slope (dimensionless), intercept (units of the values), R^2.
    r_squared_text : str, optional
        How to write R^2 (e.g. ``"R$^2$"`` for matplotlib).

    Returns
    -------
    str
        Two decimals; "n/a" fields when the line is undefined, and R^2 "n/a"
        through fewer than ``MIN_PAIRS_FOR_SPREAD`` points (two points always
        give R^2 = 1).
    """
    if not np.isfinite(line.slope):
        return "y = n/a (fewer than two distinct reference values)"
    if line.n < MIN_PAIRS_FOR_SPREAD:
        return "y = {}x {} {} through {} points, {} n/a (needs {} or more)".format(
            _fixed(line.slope), "-" if _fixed(line.intercept)[0] == "-" else "+", _fixed(abs(line.intercept)),
            line.n, r_squared_text, MIN_PAIRS_FOR_SPREAD)
    return "y = {}x {} {}, {} = {}".format(_fixed(line.slope), "-" if _fixed(line.intercept)[0] == "-" else "+",
                                          _fixed(abs(line.intercept)), r_squared_text, _fixed(line.r_squared))


def format_limits_of_agreement(agreement):
    """Bland-Altman bias and limits as text, e.g. ``-0.11 (-0.80 to 0.58)``, in the units of the values.

    Parameters
    ----------
    agreement : BlandAltman

    Returns
    -------
    str
        ``bias (limits n/a: need 3 or more pairs)`` for fewer pairs than
        ``MIN_PAIRS_FOR_SPREAD``.
    """
    if agreement.n < MIN_PAIRS_FOR_SPREAD or not np.isfinite(agreement.sd):
        return "{} (limits n/a: need {} or more pairs)".format(_fixed(agreement.bias), MIN_PAIRS_FOR_SPREAD)
    return "{} ({} to {})".format(*[_fixed(value) for value in (agreement.bias, agreement.lower_loa,
                                                                 agreement.upper_loa)])


def counted(count, noun, plural=None):
    """``1 patient``, ``2 patients``: a count with its noun in the right number."""
    return "{} {}".format(count, noun if count == 1 else (plural or noun + "s"))


def _percent_of(count, total, percent):
    return "{} % ({} of {})".format(_fixed(percent, 1), count, total)


def _row(label, cells, width):
    return (label.ljust(_LABEL_WIDTH) + "".join(cell.ljust(width) for cell in cells)).rstrip()


def _comparison_row(label, comparison, digits, width):
    return _row(label, [_median_iqr(comparison.reference, digits), _median_iqr(comparison.test, digits),
                        format_p_value(comparison.p_value)], width)


def _aif_lines(result, names, width):
    lines = ["AIF curves ({})".format(counted(result.n_curves, "pair")),
             _row("", list(names) + ["P"], width),
             _row("NMSE (%), median (IQR)", ["", _median_iqr(result.nmse, 1)], width),
             _row("NMSE >= {:g} %".format(result.poor_threshold_percent),
                  ["", _percent_of(result.n_poor, result.n_curves, result.poor_percent)], width)]
    metrics = (("PV (normalised units)", result.peak_value), ("TTP (s)", result.time_to_peak_s),
               ("FWHM (s)", result.fwhm_s))
    for label, comparison in metrics:
        lines.append(_comparison_row(label, comparison, 2, width))
    for label, comparison in metrics:
        for name, summary in zip(names, (comparison.reference, comparison.test)):
            if summary.n < result.n_curves:
                lines.append("  {} undefined for {} of {} {} curves (excluded).".format(
                    label.split(" ")[0], result.n_curves - summary.n, result.n_curves, name))
    return lines


def _mbf_lines(result, names, width):
    levels = (("patient", result.per_patient), ("segment", result.per_segment))
    n_patients = result.per_patient.line.n
    lines = ["Stress MBF (mL/min/g), {}, {}".format(counted(n_patients, "patient"),
                                                   counted(result.per_segment.line.n, "segment")),
             _row("", list(names) + ["P"], width)]
    for level, values in levels:
        lines.append(_comparison_row("Per {}, median (IQR)".format(level), values.comparison, 2, width))
    lines.append("Least-squares line y = a x + b (y: {}, x: {})".format(names[1], names[0]))
    for level, values in levels:
        lines.append(_row("  Per {}".format(level), [format_line_equation(values.line)], width))
    lines.append("Bland-Altman: {} - {}, bias (95 % limits of agreement)".format(names[1], names[0]))
    for level, values in levels:
        lines.append(_row("  Per {}".format(level), [format_limits_of_agreement(values.bland_altman)], width))
    lines.append("Diagnosis agreement at {:g} mL/min/g".format(result.threshold_ml_min_g))
    for label, agreement in (("  Segments", result.segment_agreement),
                             ("  Vessels ({})".format("/".join(VESSELS)), result.vessel_agreement)):
        lines.append(_row(label, [_percent_of(agreement.n_match, agreement.n_total, agreement.percent)], width))
    if n_patients < SMALL_SAMPLE_PATIENTS:
        lines.append("Caution: with only {} the per-patient P, R^2 and limits of agreement say little; the paper's "
                     "comparison needs {} or more patients.".format(counted(n_patients, "patient"),
                                                                  SMALL_SAMPLE_PATIENTS))
    return lines


def format_results_table(aif_result, mbf_result=None, reference_name="Reference", test_name="Test"):
    """Plain-text table of the evaluation laid out like the paper's results.

    Parameters
    ----------
    aif_result : AIFResult
        From ``analyse_aifs``.
    mbf_result : MBFResult or None, optional
        From ``analyse_mbf``; ``None`` leaves the MBF part out.
    reference_name, test_name : str, optional
        Column headers for the reference and the test method.

    Returns
    -------
    str
        The table: AIF NMSE median (IQR) (%) and share >= the poor threshold;
        PV (normalised units), TTP (s), FWHM (s) median (IQR) with P; MBF
        (mL/min/g) median (IQR) with P, line and R^2, bias and limits of
        agreement per patient and per segment; diagnosis agreement % (k of n)
        for segments and vessels.  No trailing newline.
    """
    names = (str(reference_name), str(test_name))
    width = max(len(names[0]), len(names[1]), 16) + 2
    lines = _aif_lines(aif_result, names, width)
    if mbf_result is not None:
        lines += [""] + _mbf_lines(mbf_result, names, width)
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# CSV input
# ---------------------------------------------------------------------------

def _read_csv_rows(path, columns, what):
    """Rows of a CSV file after its header, as (line number, list of stripped cells)."""
    expected = ",".join(columns)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            lines = list(csv.reader(handle))
    except FileNotFoundError:
        raise AIAIFInputError("The {} file {} does not exist; pass the path of a CSV file with columns "
                              "{}.".format(what, path, expected))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise AIAIFInputError("Cannot read the {} file {} ({}); pass a UTF-8 CSV file with columns "
                              "{}.".format(what, path, error, expected))
    header = [cell.strip().lower() for cell in lines[0]] if lines else []
    if tuple(header) != tuple(columns):
        shown = ",".join(header)
        shown = shown if len(shown) <= 60 else shown[:60] + "..."  # a wrong file may have a huge first line
        raise AIAIFInputError("The {} file {} has header '{}' but must start with the header line '{}'.".format(
            what, path, shown, expected))
    rows = []
    for number, cells in enumerate(lines[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(columns):
            raise AIAIFInputError("Line {} of {} has {} values but the header has {} ({}); fix that "
                                  "row.".format(number, path, len(cells), len(columns), expected))
        rows.append((number, [cell.strip() for cell in cells]))
    if not rows:
        raise AIAIFInputError("The {} file {} has no data rows below its header; add one row per "
                              "value.".format(what, path))
    return rows


def _number(text, column, number, path, allow_missing=False):
    """One cell as a float: finite, or NaN for an empty / 'nan' cell when ``allow_missing``."""
    try:
        value = float(text) if text or not allow_missing else math.nan
    except ValueError:
        value = None
    if value is None or math.isinf(value) or (math.isnan(value) and not allow_missing):
        raise AIAIFInputError("Line {} of {}: {} value '{}' is not a finite number; fix that cell.".format(
            number, path, column, text))
    return value


def read_aif_cases_csv(path):
    """Read paired AIF curves with their case identifiers from a CSV file.

    Parameters
    ----------
    path : str
        CSV with the header ``case,time_s,reference,test``: one row per frame,
        the rows of each case together, times in s strictly increasing within
        a case; reference and test curves in the same units.

    Returns
    -------
    case_ids : list of str
        Cases in file order.
    times_s, reference, test : list of numpy.ndarray
        One 1-D array per case: frame times, s, and the two curves.

    Raises
    ------
    AIAIFInputError
        Missing or unreadable file, wrong header, wrong number of values in a
        row, a non-numeric or non-finite value, an empty case name, a case
        whose rows are split, times not strictly increasing, or a case with
        fewer than ``MIN_CURVE_FRAMES`` frames.
    """
    cases = {}
    previous_case = None
    for number, (case, *cells) in _read_csv_rows(path, AIF_CSV_COLUMNS, "AIF pairs"):
        if not case:
            raise AIAIFInputError("Line {} of {} has an empty case; name the case of every row.".format(
                number, path))
        if case in cases and case != previous_case:
            raise AIAIFInputError("Line {} of {}: the rows of case '{}' are not together; sort the file by "
                                  "case.".format(number, path, case))
        values = [_number(text, column, number, path) for text, column in zip(cells, AIF_CSV_COLUMNS[1:])]
        frames = cases.setdefault(case, [])
        if frames and values[0] <= frames[-1][0]:
            raise AIAIFInputError("Line {} of {}: time {} s of case '{}' is not after the previous frame's; "
                                  "times must increase strictly within a case.".format(number, path, cells[0],
                                                                                       case))
        frames.append(values)
        previous_case = case
    for case, frames in cases.items():
        if len(frames) < MIN_CURVE_FRAMES:
            raise AIAIFInputError("Case '{}' in {} has {} frames; each case needs at least {}.".format(
                case, path, len(frames), MIN_CURVE_FRAMES))
    columns = [np.array(frames, dtype=float).T for frames in cases.values()]
    return (list(cases), [c[0] for c in columns], [c[1] for c in columns], [c[2] for c in columns])


def read_aif_pairs_csv(path):
    """Read paired AIF curves from a CSV file (``read_aif_cases_csv`` without the case names).

    Parameters
    ----------
    path : str
        CSV with the header ``case,time_s,reference,test`` (times in s).

    Returns
    -------
    times_s, reference, test : list of numpy.ndarray
        One 1-D array per case, ready for ``analyse_aifs``.
    """
    return read_aif_cases_csv(path)[1:]


def read_segment_mbf_csv(path):
    """Read paired segment MBF from a CSV file.

    Parameters
    ----------
    path : str
        CSV with the header ``patient,segment,reference,test``: one row per
        patient and AHA segment (integer 1-16), MBF in mL/min/g (non-negative;
        an empty or ``nan`` cell marks a missing value).  Segments without a
        row are missing.

    Returns
    -------
    patient_ids : list of str
        Patients in order of first appearance.
    reference, test : numpy.ndarray, (n_patients, 16)
        Segment MBF, mL/min/g, NaN where missing.

    Raises
    ------
    AIAIFInputError
        Missing or unreadable file, wrong header, wrong number of values, an
        empty patient, a segment that is not an integer 1-16, a repeated
        patient and segment, or an MBF value that is not a non-negative number.
    """
    rows = {}
    for number, (patient, segment_text, *cells) in _read_csv_rows(path, MBF_CSV_COLUMNS, "segment MBF"):
        try:
            segment = int(segment_text)
        except ValueError:
            segment = None
        if not patient or segment not in K.AHA_SEGMENTS:
            raise AIAIFInputError("Line {} of {}: need a patient and an AHA segment from {} to {}, got '{}' and "
                                  "'{}'.".format(number, path, K.AHA_SEGMENTS[0], K.AHA_SEGMENTS[-1], patient,
                                                 segment_text))
        values = [_number(text, column, number, path, allow_missing=True)
                  for text, column in zip(cells, MBF_CSV_COLUMNS[2:])]
        if any(value < 0 for value in values):
            raise AIAIFInputError("Line {} of {}: MBF cannot be negative; give values in mL/min/g.".format(
                number, path))
        patient_rows = rows.setdefault(patient, {})
        if segment in patient_rows:
            raise AIAIFInputError("Line {} of {} repeats segment {} of patient '{}'; keep one row per patient "
                                  "and segment.".format(number, path, segment, patient))
        patient_rows[segment] = values
    reference = np.full((len(rows), len(K.AHA_SEGMENTS)), np.nan)
    test = np.full_like(reference, np.nan)
    for row, segments in enumerate(rows.values()):
        for segment, (reference_value, test_value) in segments.items():
            column = K.AHA_SEGMENTS.index(segment)
            reference[row, column], test[row, column] = reference_value, test_value
    return list(rows), reference, test


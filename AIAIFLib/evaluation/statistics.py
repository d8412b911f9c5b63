"""The statistics of the evaluation: summaries, Mann-Whitney U, Bland-Altman, line, diagnosis agreement.

Definitions chosen here (the paper does not spell them out)
------------------------------------------------------------
IQR
    The difference of the 75th and 25th percentiles (NumPy's linear
    interpolation), reported as one number as the paper does: "1.9 % (2.5)".
Bland-Altman
    Differences ``test - reference``; bias their mean; limits of agreement
    ``bias +/- 1.96 SD`` with the sample SD (``ddof=1``).
Line
    Ordinary least squares ``test = slope * reference + intercept``; R^2 the
    coefficient of determination of that fit (the squared Pearson r).

All statistics use SciPy [Scannell2022: "All statistical analysis was
performed in Python using SciPy"].
"""

import math

import numpy as np
from scipy import stats

from .. import constants as K
from .results import Agreement, BlandAltman, LineFit, MetricComparison, Summary

#: Multiplier of the SD giving the 95 % limits of agreement.
LOA_SD_MULTIPLIER = 1.96


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

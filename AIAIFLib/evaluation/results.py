"""Result structures of the evaluation: what ``analyse_aifs`` and ``analyse_mbf`` return.

Frozen dataclasses compared by identity (``eq=False``: they hold arrays).
"""

from dataclasses import dataclass

import numpy as np


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

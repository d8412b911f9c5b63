"""The MBF stage of the evaluation [Scannell2022, "Evaluation" and "Results"].

Segment stress MBF with both AIFs: median (IQR), Mann-Whitney U, Bland-Altman
bias and 95 % limits of agreement, least-squares line and R^2, per patient and
per AHA segment; agreement of the ischaemia call at
``constants.ISCHAEMIA_THRESHOLD_ML_MIN_G`` for segments and for coronary
vessels.

Definitions chosen here (the paper does not spell them out)
------------------------------------------------------------
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
"""

import numpy as np

from .. import constants as K
from ..errors import AIAIFInputError
from .results import MBFLevel, MBFResult
from .statistics import _paired_finite, bland_altman, compare_distributions, diagnosis_agreement, fit_line

#: The coronary vessels in the order of the vessel arrays.
VESSELS = tuple(K.CORONARY_TERRITORIES)


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

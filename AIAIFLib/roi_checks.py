"""Cross-checks that a study's ROIs and RV insertion points belong to its images.

A segmentation or point list saved from another study (another patient, or
another scan with the heart elsewhere) can still overlap the images in part,
and then the quantification runs and quietly gives other numbers.  Two clues
independent of how the ROIs were drawn tell such inputs apart:

* **The LV blood pool follows one curve.**  Every voxel of a true blood-pool
  ROI carries the AIF: its signal curve correlates almost perfectly with the
  mean curve of the most enhancing blood-pool voxels.  Voxels of myocardium
  (slower, delayed uptake), of the RV (earlier bolus) or of background (no
  enhancement) do not.  ``blood_pool_mismatch_fraction`` is the fraction of
  the ROI whose curve correlates less than ``BLOOD_CURVE_MIN_CORRELATION``.
* **An RV insertion point lies on the myocardium's outer edge.**
  ``rv_point_distances_mm`` is the in-plane distance from each point to the
  nearest myocardial voxel centre of its slice.

Thresholds (project choices, measured with ``Testing/benchmarks/
mismatched_rois.py`` on simulated phantoms, 3 T and 1.5 T, every ischaemic
territory): with the study's own ROI the mismatch fraction is 0.000 on every
phantom; the same ROI shifted in-plane by 2.5, 5, 10 and 15 mm gives about
0.07, 0.15, 0.30 and 0.44.  Real ROIs are drawn less exactly than a
phantom's and free-breathing series move, so a fraction above
``BLOOD_POOL_WARN_FRACTION`` (about a 5 mm misplacement) is a warning and one
above ``BLOOD_POOL_REFUSE_FRACTION`` (over a third of the ROI, about 12 mm)
is refused.  The phantom's own RV points lie 0.2-2.3 mm from the myocardium;
a point more than ``RV_POINT_WARN_MM`` away is a warning and one more than
``RV_POINT_REFUSE_MM`` away (farther than a wall thickness and a half) is
refused.
"""

import numpy as np

#: A blood-pool voxel "follows the AIF" when the Pearson correlation of its
#: signal curve with the reference blood curve is at least this (project choice).
BLOOD_CURVE_MIN_CORRELATION = 0.9
#: Share of the blood-pool ROI's most enhancing voxels whose mean curve is the
#: reference blood curve (the top quartile, as the AIF extraction uses).
BLOOD_REFERENCE_QUANTILE = 0.75
#: Frames averaged as the pre-contrast baseline for the peak enhancement.
BASELINE_FRAMES = 3
#: Mismatch fractions of the blood-pool ROI that warn and that refuse (see the module notes).
BLOOD_POOL_WARN_FRACTION = 0.15
BLOOD_POOL_REFUSE_FRACTION = 0.35
#: In-plane distances, mm, of an RV insertion point from its slice's myocardium that warn and that refuse.
RV_POINT_WARN_MM = 7.5
RV_POINT_REFUSE_MM = 15.0


def blood_pool_mismatch_fraction(frames, blood_pool_mask):
    """Fraction of the LV blood-pool ROI whose signal curve does not follow the blood's.

    Parameters
    ----------
    frames : array_like, shape (n_frames, n_slices, rows, columns)
        Signal of every frame (any units).
    blood_pool_mask : array_like of bool, shape (n_slices, rows, columns)
        The LV blood-pool ROI.

    Returns
    -------
    float
        In 0..1; 0 when every voxel's curve correlates at least
        ``BLOOD_CURVE_MIN_CORRELATION`` with the mean curve of the ROI's
        most enhancing quarter.  NaN for an empty ROI.
    """
    mask = np.asarray(blood_pool_mask, dtype=bool)
    if not mask.any():
        return float("nan")
    curves = np.asarray(frames, dtype=np.float64)[:, mask]  # (n_frames, n_voxels)
    baseline = curves[:min(BASELINE_FRAMES, curves.shape[0])].mean(axis=0)
    peak = (curves - baseline).max(axis=0)
    reference = curves[:, peak >= np.quantile(peak, BLOOD_REFERENCE_QUANTILE)].mean(axis=1)
    centred = curves - curves.mean(axis=0)
    reference = reference - reference.mean()
    denominator = np.sqrt((centred ** 2).sum(axis=0) * (reference ** 2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = (centred * reference[:, None]).sum(axis=0) / denominator
    follows = np.where(denominator > 0, correlation, 0.0) >= BLOOD_CURVE_MIN_CORRELATION
    return float(1.0 - follows.mean())


def rv_point_distances_mm(points_ras, ijk_to_ras, myocardium_mask):
    """In-plane distance from each RV insertion point to the nearest myocardial voxel of its slice, mm.

    Parameters
    ----------
    points_ras : array_like, shape (n_points, 3)
        RV insertion points, RAS mm.
    ijk_to_ras : array_like, shape (4, 4)
        Voxel index (i, j, k, 1) to RAS (mm) matrix of the mask's grid.
    myocardium_mask : array_like of bool, shape (n_slices, rows, columns)
        The myocardium ROI.

    Returns
    -------
    numpy.ndarray, shape (n_points,)
        Distances, mm, measured within the point's (nearest) slice; NaN for a
        point whose slice has no myocardium.
    """
    points = np.asarray(points_ras, dtype=float).reshape(-1, 3)
    matrix = np.asarray(ijk_to_ras, dtype=float)
    mask = np.asarray(myocardium_mask, dtype=bool)
    ijk = np.linalg.solve(matrix[:3, :3], (points - matrix[:3, 3]).T).T
    distances = np.full(points.shape[0], np.nan)
    for index, (i, j, k) in enumerate(ijk):
        k = int(np.clip(np.rint(k), 0, mask.shape[0] - 1))
        rows, columns = np.nonzero(mask[k])
        if rows.size == 0:
            continue
        offsets_ijk = np.stack([columns - i, rows - j, np.zeros(rows.size)])  # in-plane: the k offset is dropped
        distances[index] = float(np.min(np.linalg.norm(matrix[:3, :3] @ offsets_ijk, axis=0)))
    return distances

"""The phases of the contrast's passage read off the series itself: arrival, LV enhancement, settled contrast.

They delimit the groups of frames of one contrast (``groups``).  The
arrival and the settled contrast follow the brightest blood near the heart,
whose level motion barely changes; the LV's enhancement follows the LV
blood-pool ROIs.
"""

import numpy as np
from scipy import ndimage

from ..errors import AIAIFInputError

#: Contrast arrival near the heart: pixels within this distance of the ROIs, mm (project choice: reaches the
#: RV), and the brightest fraction of them whose mean curve is followed.
ARRIVAL_REGION_MM = 30.0
ARRIVAL_BRIGHT_FRACTION = 0.02
#: When the brightest pixels' level shows no pre-contrast signal, the curve followed instead is their
#: enhancement over the median of this many first frames (project choice, as ``aif``'s initial baseline).
ARRIVAL_INITIAL_FRAMES = 3
#: The late frames, once the contrast has settled after the first pass, are a group of one contrast like the
#: pre-contrast frames (``groups``), tied to the ROI frame's position by mutual information
#: (``contrast_settled_frame``).  The contrast has settled at the first frame after the ROI frame and after the peak of
#: the brightest blood's curve (the curve of ``first_enhanced_frame``) at which that curve has come down from its peak
#: by at least ``SETTLED_FALL`` of its first-pass enhancement (peak over the pre-contrast baseline), and from which it
#: changes by less than ``SETTLED_CHANGE`` of that enhancement per frame over ``SETTLED_FRAMES`` consecutive steps
#: (project choice: the first pass and the recirculation change the blood's signal by 5-30 % of its peak per heartbeat,
#: the washout by a few per cent; the fall keeps the broad top of the first pass out, a run of steps a single quiet
#: frame on the downslope).
SETTLED_FALL = 0.3
SETTLED_CHANGE = 0.05
SETTLED_FRAMES = 3
#: Before the ROI frame, the first-pass runs tied to it start at the first frame whose LV blood shows this share of
#: its enhancement at the ROI frame (``lv_enhanced_frame``; project choice, see ``groups.PHASE_FRAMES``).
PHASE_LV_SHARE = 0.5


def near_heart(frames, heart_mask, pixel_mm):
    """Every frame's pixels within ``ARRIVAL_REGION_MM`` of the ROIs, (n_frames, n_pixels)."""
    distance = ndimage.distance_transform_edt(~np.asarray(heart_mask, dtype=bool),
                                              sampling=(1e6, pixel_mm[0], pixel_mm[1]))
    return np.asarray(frames, dtype=float)[:, distance <= ARRIVAL_REGION_MM]


def brightest_mean(values):
    """Mean of the brightest ``ARRIVAL_BRIGHT_FRACTION`` of ``values`` (n_frames, n_pixels) in every frame: near the
    heart, the RV's and then the LV's blood at their peaks, barely changed by motion."""
    count = max(int(ARRIVAL_BRIGHT_FRACTION * values.shape[1]), 1)
    return np.partition(values, values.shape[1] - count, axis=1)[:, -count:].mean(axis=1)


def first_enhanced_frame(frames, times_s, heart_mask, pixel_mm):
    """First frame in which contrast may show near the heart: the RV's arrival, one frame early.

    The curve is the mean of the brightest ``ARRIVAL_BRIGHT_FRACTION`` of the
    pixels within ``ARRIVAL_REGION_MM`` of the ROIs (the RV's and then the
    LV's blood at their peaks), its arrival found as the AIF's
    (``aif.detect_arrival_index``): motion moves the heart, but barely
    changes the level of the brightest pixels.  When that curve has no
    pre-contrast level (the series starts with the bolus already in the RV,
    fading while the LV fills, or something else brighter than the blood
    fades over the first frames), the brightest pixels' enhancement over
    their first ``ARRIVAL_INITIAL_FRAMES`` frames is followed instead; when
    neither shows an arrival, 0 (no pre-contrast group).

    Parameters
    ----------
    frames : numpy.ndarray, shape (n_frames, n_slices, rows, columns)
    times_s : numpy.ndarray, shape (n_frames,)
        Frame times, s.
    heart_mask : numpy.ndarray of bool, shape (n_slices, rows, columns)
        The ROIs.
    pixel_mm : array_like, shape (2,)
        Pixel size (row, column), mm.

    Returns
    -------
    int
    """
    return first_enhanced_from_pixels(near_heart(frames, heart_mask, pixel_mm), times_s)


def first_enhanced_from_pixels(values, times_s):
    """``first_enhanced_frame`` from the pixels near the heart (``near_heart``: n_frames x n_pixels)."""
    from ..aif import detect_arrival_index

    for followed in (values, values - np.median(values[:ARRIVAL_INITIAL_FRAMES], axis=0)):
        curve = brightest_mean(followed)
        try:
            return max(int(detect_arrival_index(times_s, curve)[0]) - 1, 0)
        except AIAIFInputError:
            continue
    return 0


def contrast_settled_frame(curve, first_enhanced, roi_frame):
    """First frame after the ROI frame from which the blood's contrast has settled after the first pass.

    The curve is the brightest blood near the heart (``first_enhanced_frame``'s
    first curve, barely changed by motion).  The contrast has settled at the first
    frame after ``roi_frame`` and after the curve's peak (a ROI frame given
    before the contrast must not start the group on the pre-contrast
    frames) at which the curve lies at least
    ``SETTLED_FALL`` of the first-pass enhancement (its peak over its mean
    before ``first_enhanced``) below its peak, and from which each of the
    next ``SETTLED_FRAMES`` frame-to-frame changes is below
    ``SETTLED_CHANGE`` of that enhancement.
    From there on the frames share one slowly changing contrast, and the
    low-rank references can carry them off as a group
    (``estimate_slice_motion``).  Every study's contrast settles after the
    first pass, whenever and however the patient breathes.

    Parameters
    ----------
    curve : numpy.ndarray, shape (n_frames,)
        Mean signal of the brightest ``ARRIVAL_BRIGHT_FRACTION`` of the
        pixels within ``ARRIVAL_REGION_MM`` of the ROIs
        (``brightest_mean(near_heart(...))``), signal units.
    first_enhanced : int
        ``first_enhanced_frame``.
    roi_frame : int
        The frame the ROIs belong to.

    Returns
    -------
    int or None
        The frame, or None when the contrast does not settle before the
        series ends (or the curve shows no enhancement).
    """
    baseline = curve[:max(int(first_enhanced), 1)].mean()
    enhancement = curve.max() - baseline
    if not enhancement > 0:
        return None
    fallen = curve <= curve.max() - SETTLED_FALL * enhancement
    quiet = np.abs(np.diff(curve)) < SETTLED_CHANGE * enhancement  # quiet[t]: frame t to t + 1
    for start in range(max(int(roi_frame), int(np.argmax(curve))) + 1, curve.size - SETTLED_FRAMES):
        if fallen[start] and quiet[start:start + SETTLED_FRAMES].all():
            return start
    return None


def lv_enhanced_frame(frames, blood_pool_mask, first_enhanced, roi_frame):
    """First frame whose LV blood shows ``PHASE_LV_SHARE`` of its enhancement at the ROI frame.

    The frames before it show contrast in the RV at most, other structures
    than the ROI frame, so their runs are tied to the first frames from it
    on instead of the ROI frame (``phase_offsets``).

    Parameters
    ----------
    frames : numpy.ndarray, shape (n_frames, n_slices, rows, columns)
    blood_pool_mask : numpy.ndarray of bool, shape (n_slices, rows, columns)
        The LV blood-pool ROIs: the LV blood's level is the mean over them.
    first_enhanced : int
        ``first_enhanced_frame``: the level's mean before it is the LV
        blood's pre-contrast baseline, its enhancement the level over it.
    roi_frame : int
        The frame the ROIs belong to, whose enhancement is the reference.

    Returns
    -------
    int
        At most ``roi_frame``, which it is when the ROI frame lies before
        ``first_enhanced`` (given before the contrast) or its LV blood is not
        enhanced.
    """
    mask = np.asarray(blood_pool_mask, dtype=bool)
    if not mask.any():
        return int(roi_frame)
    curve = np.asarray(frames, dtype=float)[:, mask].mean(axis=1)
    enhancement = curve - curve[:max(int(first_enhanced), 1)].mean()
    if roi_frame < first_enhanced or not enhancement[roi_frame] > 0:
        return int(roi_frame)
    return int(np.argmax(enhancement[:roi_frame + 1] >= PHASE_LV_SHARE * enhancement[roi_frame]))

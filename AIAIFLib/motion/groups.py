"""Groups of frames of one contrast, registered to one another and tied as a whole to the ROI frame.

Low-rank references have one blind spot: frames of one contrast share
components and settle at a common position of their own.  The pre-contrast
frames, the late frames once the contrast has settled and runs of frames of
one phase of the first pass are such groups; each group's common position is
tied to the ROI frame's by the similarity of the two means
(``similarity``).
"""

import numpy as np
from scipy import ndimage

from .gauss_newton import MAX_STEP_PX, SMOOTHING_SCHEDULE_PX, gauss_newton
from .region import SEARCH_RADIUS_MM
from .similarity import mutual_information_offset, orientation_offset

#: Frames from ``first_enhanced_frame`` on that may still belong to the pre-contrast group (project choice: the
#: arrival is found one frame early, and the next frame shows only a trace of contrast); each joins the group
#: only where the references placed it with the group (``baseline_group``).
BASELINE_TRACE_FRAMES = 2
#: Gaussian smoothing (SD, pixels) of the two means the late group is registered by: linear interpolation gives
#: mutual information a cusp wherever the grids align, which pulls the optimum to whole pixels or throws the
#: optimiser out of it (project choice: the last round's smoothing, ``SMOOTHING_SCHEDULE_PX``; on our still
#: phantoms it leaves the found position independent of the start, 0.1 px off (median), 0.5 px at most).
LATE_SMOOTHING_PX = 0.7
#: Registration passes per round of the pre-contrast frames to the mean of the others (``register_to_group_mean``;
#: project choice: the mean sharpens as its frames align, and a second pass uses the sharper mean).
GROUP_MEAN_PASSES = 2
#: The pre-contrast group's tie to the ROI frame is refined by three similarity measures of the two means, each blind to
#: other differences between the contrasts (``consensus_offset``): mutual information of the intensities, mutual
#: information of the gradient magnitudes (Gaussian derivatives of SD ``GRADIENT_SMOOTHING_PX``) and normalised gradient
#: fields (Haber & Modersitzki, Methods Inf Med 2007;46:292-9: the squared cosine of the angle between the two images'
#: gradients, Gaussian derivatives of SD ``NGF_SMOOTHING_PX``, edges weighed against the image's mean squared gradient),
#: and the median of the three is kept.  Between images of no contrast in the blood and of peak contrast each measure
#: can be pulled a few tenths of a pixel off, a different way on different anatomy: measured one by one (with an earlier
#: form of the normalised gradient fields, which weighed edges against the median squared gradient), they did worst on
#: our phantoms and the gradient magnitudes' mutual information on the held-out model.  An error of 0.2 pixel in this
#: one group sets every pixel's baseline off, and moved held-out segments' MBF by up to 8 % at 1.5 T (project choice,
#: measured on 40 held-out and 20 of our moving studies, the group's error per slice, median / 90th percentile: ours
#: 0.21 / 0.37 to 0.07 / 0.16 pixel, held-out 0.09 / 0.29 to 0.09 / 0.33 pixel; with the pre-contrast frames moved by a
#: further half pixel in both axes, on 19 held-out and 20 of our studies, held-out 0.13 / 0.52 to 0.13 / 0.35 and ours
#: 0.22 / 0.40 to 0.08 / 0.18: mutual information alone is pulled to where the two means' grids align).
GRADIENT_SMOOTHING_PX = 1.0
#: Between the two groups the contrast changes from frame to frame, and runs of frames of one phase of the first
#: pass (the LV's upslope, its downslope, the recirculation) settle at common positions of their own as well, up to
#: about a pixel off, in every slice the same way.  Each run of ``PHASE_FRAMES`` consecutive frames, outward from
#: the ROI frame, is tied to it by mutual information like the groups (``phase_offsets``); before the ROI frame,
#: only the frames from the one whose LV blood shows ``PHASE_LV_SHARE`` of its enhancement at the ROI frame on
#: (``lv_enhanced_frame``).  The frames before that, with contrast in the RV alone, show other structures than the
#: ROI frame: tied to it, their runs made our phantoms' error worse (0.41 to 1.51 pixel, 95th percentile), so they
#: are tied to the first ``PHASE_FRAMES`` frames with LV contrast instead, when there are that many before the ROI
#: frame's neighbours (project choice, measured on 40 held-out and 20 of our studies, each still and moving: the
#: runs from the LV's enhancement on, error 0.54 to 0.30 pixel; the frames with contrast in the RV alone, 0.94 to
#: 0.74 pixel held-out and 0.75 to 0.59 pixel ours; tied to fewer frames, one still study of ours moved 2 pixels).
#: With fewer such frames, as when the ROI frame is the LV's first-pass peak soon after its enhancement, they are tied
#: to the pre-contrast frames, once those are tied: until the contrast reaches the LV, the LV and its wall look as they
#: did before it, and only the RV differs (project choice, measured on two samples of 20 held-out moving studies and 8
#: of ours in plane and through plane: held-out segments within 5 % of the still study 76.2 and 76.2 % to 82.5 and
#: 80.6 %, ours unchanged, 91.4 and 87.5 %, though our measured displacement's 95th percentile rose from 0.31 and 0.41
#: to 0.41 and 0.44 pixel, under the 0.75 pixel that is applied; left as the references put them, these frames were
#: 1-1.5 pixels off in a slice of held-out seeds 37 and 63; tied instead to the first ``PHASE_FRAMES`` frames with LV
#: contrast, the ROI frame among them, our seed 5 at 3 T had them 2-2.8 pixels off in every slice).
PHASE_FRAMES = 6
#: A run's correction longer than ``PHASE_CHECKED_PX`` is applied only when it improves the mutual information by at
#: least ``PHASE_MIN_GAIN`` of its value where the references put the run: a right correction of that size makes
#: the two means markedly more alike, a spurious one barely (project choice, measured on the studies above: of the
#: runs' corrections over 0.3 pixel, those with a gain under 2 % made the run's error worse in 23 of 35 cases, those
#: over 5 % in 3 of 181; with the check, our seed 32 at 1.5 T no longer has one run tied 0.4-1.1 pixel off, and the
#: errors of both models stay as they were or fall, 0.66 to 0.63 pixel (95th percentile) for the held-out model's
#: frames with contrast in the RV alone).
PHASE_MIN_GAIN = 0.02
PHASE_CHECKED_PX = 0.3
#: Each run's tie is then refined by the three measures of the pre-contrast tie (``consensus_offset``), when the
#: refinement is no longer than this, pixels: the measures refine mutual information's position within its basin, and
#: a longer refinement, which no gain check guards, would move the run, and the runs with contrast in the RV alone tied
#: to the first one, by more than the measures' precision (project choice, measured on 40 held-out moving studies, two
#: samples of 20, and 8 of our phantoms in plane and through plane: held-out segments within 5 % of the still study
#: 71.6 and 75.9 % to 74.4 and 75.9 %, the measured displacement's 95th percentile 0.38 and 0.44 to 0.35 and 0.42
#: pixel; ours unchanged, 91.4 and 87.5 %, 0.31 and 0.41 pixel; ``auto``'s margins unchanged; without the limit, a
#: refinement of 0.43 pixel on the first run of the still held-out seed 37 at 3 T left the RV frames tied to it 1.3
#: pixels off).
RUN_REFINEMENT_PX = 0.3


def baseline_group(shift, first_enhanced, roi_frame):
    """Frames that share the pre-contrast group's position: every frame before ``first_enhanced``, and each of the
    next ``BASELINE_TRACE_FRAMES`` that the references placed with the group; only frames before ``roi_frame``.

    A frame with the first trace of contrast may still follow the pre-contrast references, and with them the
    group's common offset, or already the enhanced frames after it: it joins the group when its shift lies nearer
    the group's mean shift than the shift of the first frame after the candidates.
    """
    end = min(first_enhanced + BASELINE_TRACE_FRAMES, roi_frame)
    group = shift[:first_enhanced].mean(axis=0)
    joined = [t for t in range(first_enhanced, end)
              if np.linalg.norm(shift[t] - group) <= np.linalg.norm(shift[t] - shift[end])]
    return np.array(list(range(min(first_enhanced, roi_frame))) + joined, dtype=int)


def _group_means(region, shift, members, roi_frame, anchor=None, smoothing_px=None):
    """A group of frames' mean shift (2,) and the two means its common position is registered by.

    ``moving`` is the mean of ``members``, each frame moved only by its
    difference from the group's mean shift, on the region's grid with its
    margin; ``fixed`` the registered mean of ``anchor`` (frames; by default
    the ROI frame and its neighbours) on the region's grid.  Both are
    smoothed by ``smoothing_px`` when given.
    """
    around_roi = slice(max(roi_frame - 1, 0), roi_frame + 2) if anchor is None else anchor
    group = shift[members].mean(axis=0)
    moving = np.mean([ndimage.shift(region.frames[t], -(shift[t] - group), order=1, mode="nearest")
                      for t in members], axis=0)
    fixed = region.sample(region.frames[around_roi], shift[around_roi]).mean(axis=0)
    if smoothing_px is not None:
        fixed = ndimage.gaussian_filter(fixed, smoothing_px, mode="nearest")
        moving = ndimage.gaussian_filter(moving, smoothing_px, mode="nearest")
    return group, moving, fixed


def _accepted_correction(offset, group, converged, pixel_mm):
    """``offset - group``, or zeros when the search did not converge or the correction is beyond
    ``SEARCH_RADIUS_MM``."""
    if converged and np.linalg.norm((offset - group) * pixel_mm) <= SEARCH_RADIUS_MM:
        return offset - group
    return np.zeros(2)


def group_offset(region, shift, members, roi_frame, pixel_mm, other_starts=(), smoothing_px=None, keep_starts=False,
                 anchor=None, checked=False):
    """Correction (row, column), pixels, of a group of frames' common position, by mutual information.

    Frames of one contrast (``members``: the pre-contrast frames, the late
    frames once the contrast has settled, or a run of first-pass frames,
    ``phase_offsets``) share the low-rank references' components, and with
    them a common position of their own.  The group's mean is registered to
    the registered mean of ``anchor`` (``_group_means``) by mutual
    information (``mutual_information_offset``, from the group's mean
    shift and ``other_starts``).  Zeros when the optimiser does not
    converge, the correction is beyond ``SEARCH_RADIUS_MM``, or
    (``checked``, with ``keep_starts``) it is longer than
    ``PHASE_CHECKED_PX`` and improves the metric by less than
    ``PHASE_MIN_GAIN`` of its value at the group's mean shift.
    """
    group, moving, fixed = _group_means(region, shift, members, roi_frame, anchor, smoothing_px)
    offset, converged, gain = mutual_information_offset(fixed, moving, region.weight > 0.5,
                                                        starts=(group,) + tuple(other_starts),
                                                        fixed_corner=region.margin, keep_starts=keep_starts)
    if checked and np.linalg.norm(offset - group) > PHASE_CHECKED_PX and not gain >= PHASE_MIN_GAIN:
        return np.zeros(2)
    return _accepted_correction(offset, group, converged, pixel_mm)


def consensus_offset(region, shift, members, roi_frame, pixel_mm, anchor=None):
    """Correction (row, column), pixels, of a group's position: the median of three similarity measures' ties,
    and their spread.

    The group ``members`` is registered to the ROI frame's neighbours, or
    to ``anchor`` (``_group_means``, built once), by mutual information of
    the two means and of their gradient magnitudes
    (``GRADIENT_SMOOTHING_PX``), each from the group's mean shift and from
    the ROI frame's position, and by normalised gradient fields
    (``orientation_offset``) from the former; each correction is accepted
    as in ``group_offset``, and the median is taken per axis.  ``shift`` is
    relative to the ROI frame (or the anchor), so that the mean around it is
    sampled at (nearly) whole pixels.

    The spread is the largest range of the three corrections along either
    axis, pixels: the measures err differently, so where they agree the tie
    is usually close.
    """
    group, moving, fixed = _group_means(region, shift, members, roi_frame, anchor)
    gradients = [ndimage.gaussian_gradient_magnitude(image, GRADIENT_SMOOTHING_PX, mode="nearest")
                 for image in (fixed, moving)]
    corrections = []
    for fixed_image, moving_image in ((fixed, moving), gradients):
        offset, converged, _ = mutual_information_offset(fixed_image, moving_image, region.weight > 0.5,
                                                         starts=(group, np.zeros(2)), fixed_corner=region.margin)
        corrections.append(_accepted_correction(offset, group, converged, pixel_mm))
    offset = orientation_offset(fixed, moving, region.weight, region.margin, group)
    corrections.append(_accepted_correction(offset, group, True, pixel_mm))
    return np.median(corrections, axis=0), float(np.ptp(corrections, axis=0).max())


def register_to_group_mean(region, shift, members):
    """Shifts (m, 2) and residuals (m,) of frames of one contrast registered to one another.

    Each of ``members`` is registered to the mean of the others (leave one
    out), from the members' median shift in ``shift``, coarse to fine
    (``SMOOTHING_SCHEDULE_PX``, ``GROUP_MEAN_PASSES`` per round); no model
    of the contrast is needed, as there is no change of it to model.
    """
    aligned_shift = np.repeat(np.median(shift[members], axis=0)[None, :], len(members), axis=0)
    for sigma, max_step in zip(SMOOTHING_SCHEDULE_PX, MAX_STEP_PX):
        smooth = ndimage.gaussian_filter(region.frames[members], (0.0, sigma, sigma), mode="nearest")
        for _ in range(GROUP_MEAN_PASSES):
            aligned = region.sample(smooth, aligned_shift)
            others = (aligned.sum(axis=0)[None] - aligned) / (len(members) - 1)
            aligned_shift, residual = gauss_newton(region, smooth, others, aligned_shift, max_step)
    return aligned_shift, residual


def phase_offsets(region, shift, roi_frame, pixel_mm, start, lv_enhanced, stop, baseline=None):
    """Correction (n, 2), pixels, of each run of frames of one phase of the first pass, by mutual information.

    The frames from ``lv_enhanced`` to ``stop`` (excluded), but for the ROI
    frame and its neighbours (the mean they are tied to), are cut into runs
    of ``PHASE_FRAMES`` consecutive frames outward from the ROI frame on
    either side; each run's common position is tied to the ROI frame's
    (``group_offset``, like the late group: relative to the ROI frame,
    both means smoothed by ``LATE_SMOOTHING_PX``).  The frames from
    ``start`` to ``lv_enhanced``, with contrast in the RV alone, are cut
    into runs outward from ``lv_enhanced`` too, and each is tied instead to
    the first ``PHASE_FRAMES`` frames from ``lv_enhanced`` on, once those
    are tied: their contrast differs less from the RV's than the ROI
    frame's does.  With fewer such frames before the ROI frame's neighbours
    (tied to the mean of two, the RV frames of our still seed 4 at 3 T moved
    2.0-2.5 pixels in every slice) they are tied to the pre-contrast frames
    ``baseline`` (already tied; more than one), whose LV looks as theirs
    does, and left as they are without those.  A run of one frame is left
    as it is (one noisy frame is no mean), and so is a run whose correction
    the metric barely prefers (``PHASE_MIN_GAIN``).
    Each run's tie is then refined by the median of three similarity
    measures (``consensus_offset``), as the pre-contrast frames' is, when
    that refinement is no longer than ``RUN_REFINEMENT_PX``.
    """
    correction = np.zeros_like(shift)

    def tie(outward, anchor=None):
        # ``outward``: the frames in order away from the frames they are tied to.
        reference = roi_frame if anchor is None else anchor
        relative = (shift + correction) - (shift[reference] + correction[reference]).reshape(-1, 2).mean(axis=0)
        for first in range(0, len(outward), PHASE_FRAMES):
            run = np.sort(outward[first:first + PHASE_FRAMES])
            if run.size > 1:
                found = group_offset(region, relative, run, roi_frame, pixel_mm, anchor=anchor,
                                     smoothing_px=LATE_SMOOTHING_PX, keep_starts=True, checked=True)
                # Mutual information finds the run's basin; three measures of the similarity refine it there, as
                # they do the pre-contrast frames' tie, by a few tenths of a pixel at most.
                tied = relative.copy()
                tied[run] += found
                refined = consensus_offset(region, tied, run, roi_frame, pixel_mm, anchor=anchor)[0]
                correction[run] = found + (refined if np.linalg.norm(refined) <= RUN_REFINEMENT_PX else 0.0)

    before = np.array([t for t in range(lv_enhanced, roi_frame - 1)], dtype=int)
    tie(before[::-1])
    tie(np.arange(roi_frame + 2, stop))
    rv_alone = np.arange(start, lv_enhanced)[::-1]
    if before.size >= PHASE_FRAMES:
        tie(rv_alone, anchor=before[:PHASE_FRAMES])
    elif baseline is not None and len(baseline) > 1:
        tie(rv_alone[~np.isin(rv_alone, baseline)], anchor=np.asarray(baseline))
    return correction


def late_weight(n, roi_frame, settled):
    """Share (n,) of the late group's correction given to each frame: none up to the ROI frame, all from the
    frame the contrast settled, a linear ramp between (those frames' contrast, and so their references, pass
    from the first pass's to the late frames')."""
    return np.clip((np.arange(n) - roi_frame) / float(settled - roi_frame), 0.0, 1.0)

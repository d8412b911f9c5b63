"""Motion correction of the perfusion series: every frame registered in plane to the frame of the ROIs.

A stress perfusion series moves when the breath-hold fails or the patient
breathes freely.  On unregistered frames a pixel's curve mixes blood pool,
myocardium and the fat around the heart, the AIF ROI picks up myocardium and
pixelwise MBF becomes noise.  This module registers each slice's frames, in
plane, to the position of the frame the ROIs belong to (``roi_frame``, by
default the frame of peak LV enhancement, ``aif.peak_enhancement_frame``).

The contrast changes tenfold over the series, so no frame can be compared
with the ROI frame directly.  Each frame is instead compared with a
**synthetic reference of its own contrast**: its projection on the leading
principal components of the *other* frames (``_low_rank``: the frame is left
out, so that a frame of unusual contrast, or one still misregistered, cannot
shape its own reference), refined progressively (``LOW_RANK_SCHEDULE``,
after the progressive principal-component registration of Melbourne et al.,
Phys Med Biol 2007).  Motion is not low-rank, contrast change is: the first
components carry the contrast of every frame at the series' common position,
and as the frames are aligned more components are admitted.  Per frame a
translation (and a gain and offset of the reference) is fitted by weighted
Gauss-Newton least squares inside a disc around the heart (the ROIs' extent
plus ``REGION_MARGIN_MM``), coarse to fine (``SMOOTHING_SCHEDULE_PX``), with
a halving trust region and a second start from the neighbours' median for a
frame that jumped.  All frames of a slice are solved at once, in plain numpy
(no BLAS or LAPACK in the loops, so the result does not depend on the
machine's BLAS kernel or threads).

Low-rank references have one blind spot: frames of one contrast share
components and settle at their own common position.  The frames before the
contrast are the largest such group, and their position sets every pixel's
pre-contrast baseline.  Having one contrast, they are first registered to
one another directly, each to the mean of the others
(``_register_to_group_mean``): while the patient breathes freely before the
contrast, many frames of strong edges make the breathing itself one of the
series' leading components, and the low-rank references then follow it.
Their common position is tied to the ROI frame's by **mutual
information** (SimpleITK's Mattes metric, which compares images of different
contrast) between their registered mean and the registered mean around the
ROI frame (``_mutual_information_offset``), and that tie is refined by the
median of three measures of the two means' similarity, which err
differently between the two contrasts (``_consensus_offset``: mutual
information of the intensities and of the gradient magnitudes, and
normalised gradient fields).  The frames after the first
pass, once the contrast has settled (``contrast_settled_frame``: the
brightest blood has come down from its peak and changes slowly), are the
other such group, carried off as a whole by up to about a pixel while the
patient breathes freely; their position is tied to the ROI frame's the same
way, and the frames between the ROI frame and the settled contrast are given
that correction in proportion.  In between, the first pass's phases (the
LV's upslope, its downslope, the recirculation) settle at common positions
of their own too, up to about a pixel off in every slice the same way; each
run of ``PHASE_FRAMES`` frames outward from the ROI frame is tied to it the
same way (``_phase_offsets``); the frames with contrast in the RV alone,
before the LV blood shows it (``lv_enhanced_frame``), are tied to the
first frames with LV contrast instead, whose contrast is nearer theirs.

The displacements are then made relative to the ROI frame.  Those under
``MIN_APPLIED_SHIFT_PX`` are reported but not applied: a frame that did not
move is left exactly as it was.  The others are resampled once (cubic
spline).

Translation only: respiration moves the heart in plane mostly by translation.
Through-plane motion changes the section's size and signal, which a rigid or
affine step would follow only in part; the benchmark
(``Testing/benchmarks/motion_correction.py``) measures what translation
leaves.  Known limits: one correction for the whole late group, so a drift
within it (the low-rank references' error growing with the distance from
the ROI frame) is corrected on average only; a series whose contrast has
not settled a few frames before it ends (e.g. a saturated blood signal at
3 T) keeps that blind spot.

Frames that cannot be registered (``_unregistered``: a residual far above
the series' others, a jump away from the neighbours' positions with a poor
fit, or a displacement beyond ``MAX_DISPLACEMENT_MM``) are listed, with a
warning, and left out of the fits (``pipeline.correct_study_motion``).

``mode`` (``MOTION_CORRECTION_MODES``): ``"on"`` always resamples, ``"off"``
leaves the frames as they are (and measures nothing), ``"auto"`` (default)
measures the motion and resamples only when the whole heart moved
(``_breathing_moved``; breathing moves every slice of a frame, the same
way): either at least ``AUTO_MIN_FRAMES`` frames lie more than
``AUTO_THRESHOLD_PX`` from the ROI frame in the median slice, or at least
``AUTO_MIN_STEPS`` steps from one frame to the next moved every slice by
more than ``AUTO_STEP_PX`` in the same direction.  The second clue is
breathing's own: it moves the heart back and forth from one heartbeat to
the next, in every slice together, while the registration's errors on a
still series drift slowly with the contrast or jitter in each slice apart,
so breathing of about a pixel is told from them although both reach that
far.  Otherwise the frames are returned untouched and none is left out, so
a still series gives exactly the results it gave without motion correction.

Why not SimpleITK's registration for every frame: its per-frame
registration framework took 9-14 ms per frame and round on one thread
(36 ms with its default threads on this 2-core machine), about 7-10 s for 3
slices x 60 frames x 4 rounds, over the 5 s budget; the vectorised solver
here takes a fraction of that.
"""

import time

import numpy as np
from scipy import ndimage

from .errors import AIAIFInputError
from .pipeline import MOTION_CORRECTIONS as MOTION_CORRECTION_MODES

#: Number of principal components of the synthetic references in each round of the progressive
#: registration (project choice: a baseline and the blood's contrast first, then the myocardium's and the
#: slower tissue's; more than about five would begin to model the motion itself).
LOW_RANK_SCHEDULE = (2, 3, 4, 5)
#: Steps of the subspace iteration for the leading principal components (project choice: the eigenvalues of
#: a perfusion series fall off fast, and 40 steps settle the subspace to far below the noise).
SUBSPACE_ITERATIONS = 40
#: Largest share of a frame's own term in its low-rank fit that is compensated when it is left out (project
#: choice: beyond it the other frames barely represent the frame, and rescaling would only amplify noise).
MAX_LEVERAGE = 0.9
#: Gaussian smoothing (SD, pixels) of frames and references in each round: coarse to fine (project choice:
#: the first rounds need a wide capture range, the last the precision of the unsmoothed edges).
SMOOTHING_SCHEDULE_PX = (2.0, 1.5, 1.0, 0.7)
#: Gauss-Newton iterations per round at most, and the step (pixels) below which a frame has converged.
MAX_ITERATIONS = 10
CONVERGED_STEP_PX = 0.01
#: Largest Gauss-Newton step per iteration in each round, pixels (coarse rounds move further).
MAX_STEP_PX = (1.0, 0.5, 0.25, 0.25)
#: Decimals (pixels) to which the estimated shifts are rounded, so that threaded BLAS's run-to-run rounding of
#: the last bits cannot change them (``estimate_slice_motion``).
SHIFT_GRID_DECIMALS = 6

#: A frame whose shift lies further than this, pixels, from the median of its ``NEIGHBOUR_FRAMES`` neighbours on
#: either side is fitted a second time from that median (project choice: free breathing moves the heart about
#: 1-2 pixels from one heartbeat to the next at most).
JUMP_PX = 3.0
NEIGHBOUR_FRAMES = 2
#: Such a frame is taken as not registered when its residual also exceeds the median's this many times.
JUMP_RESIDUAL_RATIO = 1.5
#: Smallest gain of a frame's reference (frame ~ gain * reference + offset) for which a Gauss-Newton step is
#: taken (project choice: a frame that does not look like its reference gives no direction to move in).
MIN_GAIN = 0.2
#: The registration region: a disc around the heart (the ROIs' extent) widened by this margin, mm, then
#: tapered to zero over ``REGION_TAPER_MM`` (project choice: includes the RV and the epicardial fat, leaves out
#: the chest wall, which moves less than the heart).
REGION_MARGIN_MM = 10.0
REGION_TAPER_MM = 10.0
#: Largest displacement searched, mm: a failed breath-hold moves the heart up to about 15-20 mm
#: (project choice, beyond the 4-8 mm of typical free breathing plus drift).
SEARCH_RADIUS_MM = 15.0
#: A frame displaced further than this from the ROI frame, mm, is taken as not registered.
MAX_DISPLACEMENT_MM = 20.0
#: A frame whose registration residual exceeds the median of the series' frames by more than this many
#: robust SDs (1.4826 MAD), and is at least ``OUTLIER_MIN_RATIO`` times the median, is taken as not registered
#: (project choice: measured residuals of registered frames stay within a few SDs; see the benchmark).
OUTLIER_RESIDUAL_SD = 8.0
OUTLIER_MIN_RATIO = 3.0
#: Contrast arrival near the heart: pixels within this distance of the ROIs, mm (project choice: reaches the
#: RV), and the brightest fraction of them whose mean curve is followed.
ARRIVAL_REGION_MM = 30.0
ARRIVAL_BRIGHT_FRACTION = 0.02
#: When the brightest pixels' level shows no pre-contrast signal, the curve followed instead is their
#: enhancement over the median of this many first frames (project choice, as ``aif``'s initial baseline).
ARRIVAL_INITIAL_FRAMES = 3
#: Fewest pre-contrast frames whose position is tied to the ROI frame's by mutual information; histogram
#: bins of that metric (project choice: few tissue classes in a short-axis slice).
MIN_BASELINE_FRAMES = 2
MUTUAL_INFORMATION_BINS = 32
#: Fewest pre-contrast frames left in the fits: frames before the contrast that could not be registered are
#: kept (with a warning) rather than leave fewer (project choice: a baseline of fewer frames is noisier than a
#: slightly misregistered one).
MIN_BASELINE_KEPT = 3
MUTUAL_INFORMATION_ITERATIONS = 200
#: Frames from ``first_enhanced_frame`` on that may still belong to the pre-contrast group (project choice: the
#: arrival is found one frame early, and the next frame shows only a trace of contrast); each joins the group
#: only where the references placed it with the group (``_baseline_group``).
BASELINE_TRACE_FRAMES = 2
#: The late frames, once the contrast has settled after the first pass, are another such group, tied to the ROI
#: frame's position by mutual information like the pre-contrast frames (``contrast_settled_frame``).  The
#: contrast has settled at the first frame after the ROI frame and after the peak of the brightest blood's curve
#: (the curve of ``first_enhanced_frame``) at which that curve has come down from its peak by at least
#: ``SETTLED_FALL`` of its first-pass enhancement (peak over the pre-contrast baseline), and from which it changes
#: by less than ``SETTLED_CHANGE`` of that enhancement per frame over ``SETTLED_FRAMES`` consecutive steps
#: (project choice: the first pass and the recirculation change the blood's signal by 5-30 % of its peak per
#: heartbeat, the washout by a few per cent; the fall keeps the broad top of the first pass out, a run of
#: steps a single quiet frame on the downslope).
SETTLED_FALL = 0.3
SETTLED_CHANGE = 0.05
SETTLED_FRAMES = 3
#: Gaussian smoothing (SD, pixels) of the two means the late group is registered by: linear interpolation gives
#: mutual information a cusp wherever the grids align, which pulls the optimum to whole pixels or throws the
#: optimiser out of it (project choice: the last round's smoothing, ``SMOOTHING_SCHEDULE_PX``; on our still
#: phantoms it leaves the found position independent of the start, 0.1 px off (median), 0.5 px at most).
LATE_SMOOTHING_PX = 0.7
#: Fewest late frames whose position is tied to the ROI frame's (project choice, like ``MIN_BASELINE_FRAMES``
#: but a few more: their mean must average out the breathing of free-breathing frames).
MIN_LATE_FRAMES = 5
#: Registration passes per round of the pre-contrast frames to the mean of the others (``_register_to_group_mean``;
#: project choice: the mean sharpens as its frames align, and a second pass uses the sharper mean).
GROUP_MEAN_PASSES = 2
#: The pre-contrast group's tie to the ROI frame is refined by three similarity measures of the two means, each blind to
#: other differences between the contrasts (``_consensus_offset``): mutual information of the intensities, mutual
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
NGF_SMOOTHING_PX = 0.7
#: Steps (pixels) of the normalised gradient fields' search: a 5 x 5 grid of each step around the best so far.
NGF_STEPS_PX = (0.5, 0.25, 0.1, 0.05, 0.025)
#: Between the two groups the contrast changes from frame to frame, and runs of frames of one phase of the first
#: pass (the LV's upslope, its downslope, the recirculation) settle at common positions of their own as well, up to
#: about a pixel off, in every slice the same way.  Each run of ``PHASE_FRAMES`` consecutive frames, outward from
#: the ROI frame, is tied to it by mutual information like the groups (``_phase_offsets``); before the ROI frame,
#: only the frames from the one whose LV blood shows ``PHASE_LV_SHARE`` of its enhancement at the ROI frame on
#: (``lv_enhanced_frame``).  The frames before that, with contrast in the RV alone, show other structures than the
#: ROI frame: tied to it, their runs made our phantoms' error worse (0.41 to 1.51 pixel, 95th percentile), so they
#: are tied to the first ``PHASE_FRAMES`` frames with LV contrast instead, when there are that many before the ROI
#: frame's neighbours (project choice, measured on 40 held-out and 20 of our studies, each still and moving: the
#: runs from the LV's enhancement on, error 0.54 to 0.30 pixel; the frames with contrast in the RV alone, 0.94 to
#: 0.74 pixel held-out and 0.75 to 0.59 pixel ours; tied to fewer frames, one still study of ours moved 2 pixels).
PHASE_FRAMES = 6
PHASE_LV_SHARE = 0.5
#: A run's correction longer than ``PHASE_CHECKED_PX`` is applied only when it improves the mutual information by at
#: least ``PHASE_MIN_GAIN`` of its value where the references put the run: a right correction of that size makes
#: the two means markedly more alike, a spurious one barely (project choice, measured on the studies above: of the
#: runs' corrections over 0.3 pixel, those with a gain under 2 % made the run's error worse in 23 of 35 cases, those
#: over 5 % in 3 of 181; with the check, our seed 32 at 1.5 T no longer has one run tied 0.4-1.1 pixel off, and the
#: errors of both models stay as they were or fall, 0.66 to 0.63 pixel (95th percentile) for the held-out model's
#: frames with contrast in the RV alone).
PHASE_MIN_GAIN = 0.02
PHASE_CHECKED_PX = 0.3
#: In ``auto`` mode the frames are resampled when at least ``AUTO_MIN_FRAMES`` of the frames the registration
#: could follow lie more than ``AUTO_THRESHOLD_PX`` from the ROI frame, as the median over the slices with ROIs
#: (project choice, measured with the benchmark: on still phantoms the estimates stay below about 1.1 pixels,
#: and where one slice's reach 1.7 pixels, on a held-out study whose ROI frame is a late one, the other slices'
#: stay under 0.5; a failed breath-hold or free breathing of 4-8 mm moves every slice of several frames by 1.5
#: pixels or more) ...
AUTO_THRESHOLD_PX = 1.5
AUTO_MIN_FRAMES = 3
#: ... or when, with two slices or more, at least ``AUTO_MIN_STEPS`` steps from one such frame to the next moved
#: every slice by more than ``AUTO_STEP_PX`` along the slices' median step: breathing with a period of 3-5
#: heartbeats moves the whole heart back and forth by most of its amplitude from one frame to the next, the same
#: way in every slice, while the registration's errors on a still series drift with the contrast or jitter
#: independently in each slice (project choice, measured on 40 held-out and 20 of our studies, each still and
#: moving, and our phantoms of seeds 1-6 still at 1.5 and 3 T: the 4th such step of a still study 0.25 pixel at
#: most (0.19 before the first-pass runs were tied), of a moving one 0.73 pixel at least, including breathing of
#: about 1 pixel that the first clue misses; the step lengths alone, median over the slices, would not separate
#: them: 0.80 pixel still, 0.79 moving).
AUTO_STEP_PX = 0.4
AUTO_MIN_STEPS = 4
#: Displacements shorter than this, pixels, are measured and reported but not applied (project choice: the
#: registration's estimates of frames that did not move reach about half a pixel, see the benchmark; a
#: sub-pixel resampling at the blood pool's edge moves enough blood signal into the myocardium's edge
#: pixels to change their MBF by several per cent).
MIN_APPLIED_SHIFT_PX = 0.75


class MotionCorrection(object):
    """What the motion step measured and did.

    Attributes
    ----------
    frames : numpy.ndarray, shape (n_frames, n_slices, rows, columns)
        The frames registered to the ROI frame (the input frames, untouched,
        when ``applied`` is False).
    shift_px : numpy.ndarray, shape (n_frames, n_slices, 2)
        Measured displacement of the anatomy in each frame relative to the
        ROI frame, (row, column) pixels; NaN when not measured (``off``).
    residual : numpy.ndarray, shape (n_frames, n_slices)
        Registration residual: RMS difference between the registered frame
        and its synthetic reference inside the heart region, over the
        series' median (1 is typical); NaN when not measured.
    excluded_frames : list of int
        Frames that could not be registered (any slice), left out of the fits.
    mode : str
        The ``MOTION_CORRECTION_MODES`` value asked for.
    applied : bool
        Whether the frames were resampled.
    roi_frame : int
        The frame the ROIs belong to, the registration's target.
    roi_frame_rule : str
        "peak LV enhancement" or "given".
    pixel_mm : numpy.ndarray, shape (2,)
        Pixel size (row, column), mm.
    frame_times_s : numpy.ndarray, shape (n_frames,)
        Frame times, s.
    baseline_offset_px : numpy.ndarray, shape (n_slices, 2)
        Per slice, the (row, column) correction the mutual-information step
        gave the pre-contrast frames (``estimate_slice_motion``), pixels.
    late_start_frame : int or None
        First frame of settled contrast after the first pass
        (``contrast_settled_frame``), the start of the late group; None when
        not measured or the contrast did not settle.
    late_offset_px : numpy.ndarray, shape (n_slices, 2)
        Per slice, the (row, column) correction the mutual-information step
        gave the late group (``estimate_slice_motion``), pixels; zeros when
        there was none.
    lv_enhanced_frame : int or None
        First frame whose LV blood shows ``PHASE_LV_SHARE`` of its
        enhancement at the ROI frame (``lv_enhanced_frame``): the runs of
        first-pass frames tied to the ROI frame start there, the runs before
        it are tied to the first frames from it on; None when not measured.
    phase_offset_px : numpy.ndarray, shape (n_frames, n_slices, 2)
        The (row, column) correction the mutual-information step gave each
        frame's run of first-pass frames (``_phase_offsets``), pixels; zeros
        outside the runs.
    warnings : list of str
        Sentences for the summary.
    seconds : float
        Time taken, s.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def applied_shift_px(self):
        """The displacements the frames were resampled by, (n_frames, n_slices, 2) pixels: ``shift_px`` without those
        under ``MIN_APPLIED_SHIFT_PX``, all zeros when the frames were not resampled."""
        if not self.applied:
            return np.zeros_like(self.shift_px)
        return _applied_shift(self.shift_px)

    def displacement_mm(self):
        """Length of each frame's in-plane displacement from the ROI frame, mm, shape (n_frames, n_slices)."""
        return np.linalg.norm(self.shift_px * self.pixel_mm, axis=-1)

    def summary(self):
        """JSON-ready record for ``summary.json``."""
        measured = bool(np.all(np.isfinite(self.shift_px)))
        length = self.displacement_mm() if measured else None
        return {
            "mode": self.mode,
            "applied": bool(self.applied),
            "roi_frame": int(self.roi_frame),
            "roi_frame_rule": self.roi_frame_rule,
            "measured": measured,
            "method": "translation per frame and slice to progressive low-rank references",
            "auto_rule": ("resample when at least {} frames lie more than {:g} pixel from the ROI frame (median "
                          "over the slices), or at least {} steps between frames move every slice more than {:g} "
                          "pixel the same way").format(
                AUTO_MIN_FRAMES, AUTO_THRESHOLD_PX, AUTO_MIN_STEPS, AUTO_STEP_PX),
            "pixel_mm": [float(v) for v in self.pixel_mm],
            "max_displacement_mm": round(float(length.max()), 3) if measured else None,
            "median_displacement_mm": round(float(np.median(length)), 3) if measured else None,
            "displacement_px": (np.round(self.shift_px, 3).tolist() if measured else None),
            "displacement_mm": (np.round(length, 3).tolist() if measured else None),
            "residual": (np.round(self.residual, 3).tolist() if measured else None),
            "pre_contrast_offset_px": (np.round(self.baseline_offset_px, 3).tolist() if measured else None),
            "late_group_start_frame": (None if self.late_start_frame is None else int(self.late_start_frame)),
            "late_group_offset_px": (np.round(self.late_offset_px, 3).tolist() if measured else None),
            "lv_enhanced_frame": (None if self.lv_enhanced_frame is None else int(self.lv_enhanced_frame)),
            "phase_offset_px": (np.round(self.phase_offset_px, 3).tolist() if measured else None),
            "excluded_frames": [int(f) for f in self.excluded_frames],
        }


def _applied_shift(shift_px):
    """``shift_px`` with the displacements shorter than ``MIN_APPLIED_SHIFT_PX`` set to zero."""
    return np.where(np.linalg.norm(shift_px, axis=-1, keepdims=True) < MIN_APPLIED_SHIFT_PX, 0.0, shift_px)


def _report(progress, fraction, message):
    if progress is not None:
        progress(float(fraction), message)


def _heart_region(heart_mask, pixel_mm):
    """Centre (row, column) of the heart ROI and its radius, mm."""
    rows, columns = np.nonzero(heart_mask)
    centre = np.array([rows.mean(), columns.mean()])
    radius = np.sqrt(((rows - centre[0]) * pixel_mm[0]) ** 2 + ((columns - centre[1]) * pixel_mm[1]) ** 2).max()
    return centre, radius


class _Region(object):
    """The registration region of one slice: a box around the heart, its taper weight, and the frames cut out
    with a margin for the largest shift searched (edges repeated)."""

    def __init__(self, frames, heart_mask, pixel_mm):
        centre, radius_mm = _heart_region(heart_mask, pixel_mm)
        outer_mm = radius_mm + REGION_MARGIN_MM + REGION_TAPER_MM
        half = (np.ceil(outer_mm / pixel_mm).astype(int) + 1)
        corner = np.floor(centre).astype(int) - half
        self.shape = tuple(2 * half + 1)
        rows, columns = np.mgrid[0:self.shape[0], 0:self.shape[1]]
        distance = np.hypot((rows + corner[0] - centre[0]) * pixel_mm[0],
                            (columns + corner[1] - centre[1]) * pixel_mm[1])
        ramp = np.clip((distance - radius_mm - REGION_MARGIN_MM) / REGION_TAPER_MM, 0.0, 1.0)
        self.weight = 0.5 * (1.0 + np.cos(np.pi * ramp))
        self.margin = int(np.ceil(SEARCH_RADIUS_MM / pixel_mm.min())) + 2
        padded = np.pad(np.asarray(frames, dtype=float), ((0, 0), (self.margin + max(-corner.min(), 0),) * 2,
                                                          (self.margin + max(-corner.min(), 0),) * 2), mode="edge")
        start = corner + self.margin + max(-corner.min(), 0) - self.margin
        extra = np.array(self.shape) + 2 * self.margin
        need = start + extra - np.array(padded.shape[1:])
        if np.any(need > 0):
            padded = np.pad(padded, ((0, 0), (0, max(need[0], 0)), (0, max(need[1], 0))), mode="edge")
        self.frames = padded[:, start[0]:start[0] + extra[0], start[1]:start[1] + extra[1]]
        self.limit = float(self.margin - 1)

    def sample(self, stack, shift):
        """Each frame of ``stack`` (a smoothed ``self.frames``) on the region's grid moved by its shift
        (n, 2), bilinear: (n, rows, columns)."""
        shift = np.clip(shift, -self.limit, self.limit)
        whole = np.floor(shift).astype(int)
        fraction = shift - whole
        height, width = self.shape
        out = np.empty((stack.shape[0],) + self.shape)
        for index in range(stack.shape[0]):
            r, c = whole[index] + self.margin
            fr, fc = fraction[index]
            block = stack[index, r:r + height + 1, c:c + width + 1]
            top = block[:-1, :-1] * (1.0 - fc) + block[:-1, 1:] * fc
            bottom = block[1:, :-1] * (1.0 - fc) + block[1:, 1:] * fc
            out[index] = top * (1.0 - fr) + bottom * fr
        return out


def _leading_eigenvectors(gram, rank):
    """The ``rank`` leading eigenvectors (n, rank) of a symmetric positive semi-definite matrix (n, n).

    Orthogonal (subspace) iteration with Gram-Schmidt, in plain numpy: the
    matrices are tiny (frames x frames), and LAPACK's threaded routines
    spend far longer waiting for their threads on a busy machine than
    computing.  Starts from the unit vectors of the largest diagonal entries;
    ``SUBSPACE_ITERATIONS`` steps (the hat matrix needs the subspace, not
    exact vectors).
    """
    n = gram.shape[0]
    rank = min(rank, n)
    basis = np.zeros((n, rank))
    basis[np.argsort(-np.diag(gram), kind="stable")[:rank], np.arange(rank)] = 1.0
    for _ in range(SUBSPACE_ITERATIONS):
        basis = np.einsum("ij,jr->ir", gram, basis)
        for r in range(rank):
            for q in range(r):
                basis[:, r] -= np.dot(basis[:, q], basis[:, r]) * basis[:, q]
            norm = np.sqrt(np.dot(basis[:, r], basis[:, r]))
            basis[:, r] = basis[:, r] / norm if norm > 0 else 0.0
    return basis


def _low_rank(images, weight, rank):
    """Each frame's synthetic reference: the series' rank-``rank`` approximation without the frame's own share.

    The rank-``rank`` approximation of the frames (n, h, w), fitted where the
    weight is positive, is ``H @ X`` with the temporal hat matrix
    ``H = U_r U_r^T`` (``U_r``: the first eigenvectors of the frames' Gram
    matrix, so one small eigen-decomposition per call).  A frame's own term
    ``H[t, t] x_t`` is taken out and the rest rescaled by ``1 / (1 - H[t, t])``
    (the leave-one-out fit of a linear smoother): a frame of unusual
    contrast, or one still misregistered, would otherwise shape its own
    reference, and the registration would stay where it is.  A frame the
    others cannot represent gets a faint reference, whose low gain stops its
    registration (``MIN_GAIN``) instead of moving it anywhere.
    """
    inside = weight > 0
    matrix = images[:, inside]
    # einsum's own loops, not BLAS or LAPACK: the same sums on every machine, and no threads to wait for.
    top = _leading_eigenvectors(np.einsum("ip,jp->ij", matrix, matrix), rank)
    hat = np.einsum("ir,jr->ij", top, top)
    own = np.clip(np.diag(hat), 0.0, MAX_LEVERAGE)
    np.fill_diagonal(hat, 0.0)
    approximation = np.zeros_like(images)
    approximation[:, inside] = np.einsum("ij,jp->ip", hat / (1.0 - own)[:, None], matrix)
    return approximation


def _solve_2x2(a11, a12, a22, b1, b2):
    """Solutions of the symmetric 2 x 2 systems [[a11, a12], [a12, a22]] x = [b1, b2], one per frame."""
    determinant = a11 * a22 - a12 * a12
    determinant = np.where(np.abs(determinant) > 1e-12 * (a11 * a22 + 1e-300), determinant, np.inf)
    return np.stack([(a22 * b1 - a12 * b2) / determinant, (a11 * b2 - a12 * b1) / determinant], axis=-1)


def _fit_gain(reference, weight, moved):
    """Weighted least-squares gain and offset of each frame's reference, (n, 2), and the residual (n, p)."""
    w = weight[None, :]
    s_w = weight.sum()
    s_r, s_m = (w * reference).sum(axis=1), (w * moved).sum(axis=1)
    coefficients = _solve_2x2((w * reference ** 2).sum(axis=1), s_r, np.full(reference.shape[0], s_w),
                              (w * reference * moved).sum(axis=1), s_m)
    return coefficients, moved - coefficients[:, :1] * reference - coefficients[:, 1:]


def _gauss_newton(region, stack, references, shift, max_step):
    """Refine each frame's shift (n, 2): frame(x + shift) ~ gain * reference(x) + offset, weighted least squares.

    Each iteration fits the gain and offset at the current shift, then takes a
    Gauss-Newton step of the shift (at most ``max_step`` pixels per
    iteration).  Returns the shifts and the weighted RMS residual of each
    frame.  Plain element-wise sums, no BLAS: the result does not depend on
    the machine's BLAS kernel or threads.
    """
    n = stack.shape[0]
    inside = region.weight > 0
    w = region.weight[inside][None, :]
    grad_rows, grad_columns = np.gradient(references, axis=(1, 2))
    reference = references[:, inside]
    g_r, g_c = grad_rows[:, inside], grad_columns[:, inside]
    # The normal matrix of the shift, up to the gain squared (the gain changes, the gradients do not).
    h_rr, h_rc, h_cc = (w * g_r * g_r).sum(axis=1), (w * g_r * g_c).sum(axis=1), (w * g_c * g_c).sum(axis=1)
    shift = shift.copy()
    active = np.arange(n)
    previous = np.full(n, np.inf)
    last_step = np.zeros((n, 2))
    for _ in range(MAX_ITERATIONS):
        moved = region.sample(stack[active], shift[active])[:, inside]
        coefficients, residual = _fit_gain(reference[active], w[0], moved)
        cost = (w * residual ** 2).sum(axis=1)
        # A step that made the fit worse is halved back (a trust region); such a frame takes no new step now.
        worse = cost > previous[active]
        shift[active[worse]] -= 0.5 * last_step[active[worse]]
        last_step[active[worse]] *= 0.5
        previous[active[~worse]] = cost[~worse]
        # The frame must look like its reference (a positive gain); otherwise the step's direction means nothing.
        gain = coefficients[:, 0]
        lost = gain < MIN_GAIN
        gain = np.where(lost, 1.0, gain)
        wr = w * residual
        b_r, b_c = -(wr * g_r[active]).sum(axis=1) / gain, -(wr * g_c[active]).sum(axis=1) / gain
        step = _solve_2x2(h_rr[active], h_rc[active], h_cc[active], b_r, b_c)
        step = np.where((worse | lost)[:, None], 0.0, np.clip(np.nan_to_num(step), -max_step, max_step))
        shift[active] += step
        last_step[active[~worse]] = step[~worse]
        moving = np.max(np.abs(np.where(worse[:, None], last_step[active], step)), axis=1) >= CONVERGED_STEP_PX
        active = active[moving]
        if active.size == 0:
            break
    moved = region.sample(stack, shift)[:, inside]
    _, residual = _fit_gain(reference, w[0], moved)
    return shift, np.sqrt((residual ** 2 * w).sum(axis=1) / w.sum())


def _mutual_information_offset(fixed, moving, mask, starts, fixed_corner=0, keep_starts=False):
    """Translation (row, column), pixels, with moving(u + offset) ~ fixed(u) by Mattes mutual information.

    ``fixed`` (with ``mask``) covers the pixels ``fixed_corner`` onwards of
    ``moving``'s grid, so that the moving image reaches beyond the fixed one
    whatever the offset.  SimpleITK's registration on two images of
    different contrast, from each of ``starts`` (row, column offsets); the start whose
    optimum has the best metric wins, as the metric has local optima between
    images of different contrast.  With ``keep_starts`` the starts themselves
    compete too: the regular-step optimiser does not check the metric, and
    from a cusp of it (linear interpolation makes one wherever the two
    grids align) its first steps can climb out of the optimum and settle
    pixels away, at a worse metric.  Every pixel is used (no random
    sampling) and one thread, so the result is reproducible.  Returns the
    offset, whether the optimiser converged, and the metric's gain: its
    relative improvement over the first start (a share of the first start's
    value; NaN without ``keep_starts``).
    """
    import SimpleITK as sitk

    fixed_image = sitk.GetImageFromArray(np.ascontiguousarray(fixed, dtype=np.float32))
    fixed_image.SetOrigin((float(fixed_corner), float(fixed_corner)))
    moving_image = sitk.GetImageFromArray(np.ascontiguousarray(moving, dtype=np.float32))
    best, first = None, np.nan
    for start in starts:
        method = sitk.ImageRegistrationMethod()
        method.SetNumberOfThreads(1)
        method.SetMetricAsMattesMutualInformation(MUTUAL_INFORMATION_BINS)
        method.SetMetricSamplingStrategy(method.NONE)
        mask_image = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.uint8))
        mask_image.CopyInformation(fixed_image)
        method.SetMetricFixedMask(mask_image)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetOptimizerAsRegularStepGradientDescent(learningRate=0.5, minStep=1e-4,
                                                        numberOfIterations=MUTUAL_INFORMATION_ITERATIONS)
        method.SetInitialTransform(sitk.TranslationTransform(2, (float(start[1]), float(start[0]))), inPlace=False)
        if keep_starts:
            value = method.MetricEvaluate(fixed_image, moving_image)
            first = value if np.isnan(first) else first
            if best is None or value < best[0]:
                best = (value, np.array([float(start[0]), float(start[1])]))
        transform = method.Execute(fixed_image, moving_image)
        value = method.GetMetricValue()  # negative mutual information: lower is better
        column, row = transform.GetParameters()
        converged = method.GetOptimizerIteration() < MUTUAL_INFORMATION_ITERATIONS
        if converged and (best is None or value < best[0]):
            best = (value, np.array([row, column]))
    if best is None:
        return np.zeros(2), False, np.nan
    return best[1], True, (first - best[0]) / abs(first) if first else np.nan


def _neighbour_median(shift):
    """Median shift of each frame's ``NEIGHBOUR_FRAMES`` neighbours on either side (the frame left out)."""
    n = shift.shape[0]
    out = np.empty_like(shift)
    for t in range(n):
        window = [u for u in range(max(t - NEIGHBOUR_FRAMES, 0), min(t + NEIGHBOUR_FRAMES + 1, n)) if u != t]
        out[t] = np.median(shift[window], axis=0)
    return out


def _second_start(region, stack, references, shift, residual, max_step):
    """Frames far from their neighbours' shifts, fitted again from the neighbours' median; the better fit is kept.

    A frame whose contrast the references do not yet follow (a sudden change
    of contrast, e.g. after a missed trigger) can slide into a false
    minimum several pixels away; breathing does not move the heart that far
    between neighbouring frames.
    """
    median = _neighbour_median(shift)
    far = np.flatnonzero(np.linalg.norm(shift - median, axis=1) > JUMP_PX)
    if far.size == 0:
        return shift, residual
    again, again_residual = _gauss_newton(region, stack[far], references[far], median[far], max_step)
    better = again_residual < residual[far]
    shift, residual = shift.copy(), residual.copy()
    shift[far[better]] = again[better]
    residual[far[better]] = again_residual[better]
    return shift, residual


def _baseline_group(shift, first_enhanced, roi_frame):
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


def estimate_slice_motion(frames, heart_mask, pixel_mm, first_enhanced=None, roi_frame=None, settled=None,
                          lv_enhanced=None):
    """Displacement of the anatomy in every frame of one slice, relative to the series' common position.

    Parameters
    ----------
    frames : numpy.ndarray, shape (n_frames, rows, columns)
        The slice's frames (signal units).
    heart_mask : numpy.ndarray of bool, shape (rows, columns)
        The heart in the ROI frame (LV blood pool and myocardium): the centre
        of the registration region.
    pixel_mm : array_like, shape (2,)
        Pixel size (row, column), mm.
    first_enhanced : int, optional
        First frame that may show contrast (``first_enhanced_frame``).  The
        frames before it share one contrast; they are registered to one
        another (``_register_to_group_mean``), and their common position is
        then tied to the ROI frame's by mutual information
        (``_mutual_information_offset``) between their registered mean and
        the registered mean around ``roi_frame``, and refined by the median
        of three similarity measures (``_consensus_offset``).
    roi_frame : int, optional
        The frame the ROIs belong to (needed with ``first_enhanced`` or
        ``settled``).  With it, the runs of first-pass frames are tied to it
        (``_phase_offsets``).
    settled : int, optional
        First frame of settled contrast after the first pass
        (``contrast_settled_frame``).  The frames from it on are another
        group; their common position is tied to the ROI frame's the same way
        (``_group_offset``), and the correction given to the frames
        between the ROI frame and ``settled`` in proportion
        (``_late_weight``).  Not done with fewer than ``MIN_LATE_FRAMES``
        such frames.
    lv_enhanced : int, optional
        ``lv_enhanced_frame``: before the ROI frame, the runs of first-pass
        frames tied to it (``_phase_offsets``) start there; the runs of the
        frames before it, after ``first_enhanced``, are tied to the first
        frames from it on.

    Returns
    -------
    shift_px : numpy.ndarray, shape (n_frames, 2)
        (row, column) displacement of each frame, pixels: frame(x + shift)
        matches the common position's image at x.
    residual : numpy.ndarray, shape (n_frames,)
        Weighted RMS difference from the frame's synthetic reference, signal
        units.
    baseline_offset_px : numpy.ndarray, shape (2,)
        The correction the mutual-information step added to the pre-contrast
        frames (zeros without it).
    late_offset_px : numpy.ndarray, shape (2,)
        The correction it added to the frames from ``settled`` on (zeros
        without it).
    phase_offset_px : numpy.ndarray, shape (n_frames, 2)
        The correction it added to each run of first-pass frames (zeros
        outside the runs).
    """
    pixel_mm = np.asarray(pixel_mm, dtype=float)
    region = _Region(frames, heart_mask, pixel_mm)
    n = region.frames.shape[0]
    shift = np.zeros((n, 2))
    residual = np.zeros(n)
    for rank, sigma, max_step in zip(LOW_RANK_SCHEDULE, SMOOTHING_SCHEDULE_PX, MAX_STEP_PX):
        smooth = ndimage.gaussian_filter(region.frames, (0.0, sigma, sigma), mode="nearest")
        references = _low_rank(region.sample(smooth, shift), region.weight, rank)
        shift, residual = _gauss_newton(region, smooth, references, shift, max_step)
        shift, residual = _second_start(region, smooth, references, shift, residual, max_step)
    baseline_offset = np.zeros(2)
    if first_enhanced is not None and first_enhanced >= MIN_BASELINE_FRAMES:
        # Frames of one contrast are registered to one another directly: with many frames of strong edges moving
        # freely before the contrast, the low-rank references come to model the breathing itself.
        members = np.arange(first_enhanced)
        shift[members], group_residual = _register_to_group_mean(region, shift, members)
        # A frame's residual is that of its better fit: frames the low-rank references could not follow (their
        # residual far above the series') are not left out when they fit their own group.
        residual[members] = np.minimum(residual[members], group_residual)
        # The frames before the contrast are the largest group; so may the first one or two with a trace of it be
        # (``_baseline_group``).  Two starts: where the low-rank references put the group, and where it would be
        # had it, on average, not moved from the ROI frame (the references can carry the whole group off by pixels).
        baseline_offset = _group_offset(region, shift, members, roi_frame, pixel_mm, other_starts=(shift[roi_frame],))
        # Mutual information finds the group's basin; three measures of the similarity refine it there.
        tied = shift.copy()
        tied[members] += baseline_offset
        baseline_offset = baseline_offset + _consensus_offset(region, tied - tied[roi_frame], members, roi_frame,
                                                              pixel_mm)
        shift[_baseline_group(shift, first_enhanced, roi_frame)] += baseline_offset
    late_offset = np.zeros(2)
    if settled is not None and roi_frame is not None and roi_frame < settled <= n - MIN_LATE_FRAMES:
        # Relative to the ROI frame, so that the mean around it is sampled at (nearly) whole pixels: bilinear
        # sampling at a fractional position blurs it, and mutual information between a blurred and a sharp image of
        # different contrast has its optimum off by tenths of a pixel, which depend on the fraction.
        late_offset = _group_offset(region, shift - shift[roi_frame], np.arange(settled, n), roi_frame, pixel_mm,
                                    smoothing_px=LATE_SMOOTHING_PX, keep_starts=True)
        shift += _late_weight(n, roi_frame, settled)[:, None] * late_offset[None, :]
    phase_offset = np.zeros((n, 2))
    if roi_frame is not None:
        start = 0 if first_enhanced is None else first_enhanced + 1
        phase_offset = _phase_offsets(region, shift, roi_frame, pixel_mm, start,
                                      start if lv_enhanced is None else max(lv_enhanced, start),
                                      settled if late_offset.any() else n)
        shift += phase_offset
    # Threaded BLAS rounds the last bits differently from run to run; a grid far finer than any displacement that
    # matters (1e-6 pixel) makes the shifts, and every decision and resampling after them, the same in every run.
    return tuple(np.round(value, SHIFT_GRID_DECIMALS)
                 for value in (shift, residual, baseline_offset, late_offset, phase_offset))


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


def _group_offset(region, shift, members, roi_frame, pixel_mm, other_starts=(), smoothing_px=None, keep_starts=False,
                  anchor=None, checked=False):
    """Correction (row, column), pixels, of a group of frames' common position, by mutual information.

    Frames of one contrast (``members``: the pre-contrast frames, the late
    frames once the contrast has settled, or a run of first-pass frames,
    ``_phase_offsets``) share the low-rank references' components, and with
    them a common position of their own.  The group's mean is registered to
    the registered mean of ``anchor`` (``_group_means``) by mutual
    information (``_mutual_information_offset``, from the group's mean
    shift and ``other_starts``).  Zeros when the optimiser does not
    converge, the correction is beyond ``SEARCH_RADIUS_MM``, or
    (``checked``, with ``keep_starts``) it is longer than
    ``PHASE_CHECKED_PX`` and improves the metric by less than
    ``PHASE_MIN_GAIN`` of its value at the group's mean shift.
    """
    group, moving, fixed = _group_means(region, shift, members, roi_frame, anchor, smoothing_px)
    offset, converged, gain = _mutual_information_offset(fixed, moving, region.weight > 0.5,
                                                         starts=(group,) + tuple(other_starts),
                                                         fixed_corner=region.margin, keep_starts=keep_starts)
    if checked and np.linalg.norm(offset - group) > PHASE_CHECKED_PX and not gain >= PHASE_MIN_GAIN:
        return np.zeros(2)
    return _accepted_correction(offset, group, converged, pixel_mm)


def _consensus_offset(region, shift, members, roi_frame, pixel_mm):
    """Correction (row, column), pixels, of a group's position: the median of three similarity measures' ties.

    The group ``members`` is registered to the ROI frame's neighbours
    (``_group_means``, built once) by mutual information of the two means
    and of their gradient magnitudes (``GRADIENT_SMOOTHING_PX``), each from
    the group's mean shift and from the ROI frame's position, and by
    normalised gradient fields (``_orientation_offset``) from the former;
    each correction is accepted as in ``_group_offset``, and the median is
    taken per axis.  ``shift`` is relative to the ROI frame, so that the
    mean around it is sampled at (nearly) whole pixels.
    """
    group, moving, fixed = _group_means(region, shift, members, roi_frame)
    gradients = [ndimage.gaussian_gradient_magnitude(image, GRADIENT_SMOOTHING_PX, mode="nearest")
                 for image in (fixed, moving)]
    corrections = []
    for fixed_image, moving_image in ((fixed, moving), gradients):
        offset, converged, _ = _mutual_information_offset(fixed_image, moving_image, region.weight > 0.5,
                                                          starts=(group, np.zeros(2)), fixed_corner=region.margin)
        corrections.append(_accepted_correction(offset, group, converged, pixel_mm))
    offset = _orientation_offset(fixed, moving, region.weight, region.margin, group)
    corrections.append(_accepted_correction(offset, group, True, pixel_mm))
    return np.median(corrections, axis=0)


def _gradient(image, sigma_px):
    """Gaussian derivatives (rows, columns) of ``image``, SD ``sigma_px`` pixels."""
    return (ndimage.gaussian_filter(image, sigma_px, order=(1, 0), mode="nearest"),
            ndimage.gaussian_filter(image, sigma_px, order=(0, 1), mode="nearest"))


def _normalised(rows, columns, edge_squared):
    """A gradient field divided by its length, edges weighed against ``edge_squared`` (the image's mean squared
    gradient): near 1 along the edges, near 0 where only noise varies."""
    length = np.sqrt(rows ** 2 + columns ** 2 + edge_squared + np.finfo(float).tiny)
    return rows / length, columns / length


def _orientation_offset(fixed, moving, weight, fixed_corner, start):
    """Translation (row, column), pixels, with moving(u + offset) ~ fixed(u) by normalised gradient fields.

    The weighted sum of the squared cosines of the angles between the two
    images' gradients is maximised over a grid of each of
    ``NGF_STEPS_PX`` around the best so far, from ``start``: it rewards
    edges where they lie, whichever side is brighter, and ignores edges
    that only one image has.  ``fixed`` (with ``weight``) covers the pixels
    ``fixed_corner`` onwards of ``moving``'s grid, as in
    ``_mutual_information_offset``.  The moving image's gradient is moved
    by Fourier shifts, which keep its noise as it is at every offset, and
    normalised after each shift: an interpolating spline smooths the noise
    at fractional offsets and not at whole ones, and so does moving the
    normalised field itself (an average of unit vectors is shorter); the
    squared cosines, which grow with the field's length, would then pull
    the search to whole pixels where only noise varies.
    """
    rows, columns = _gradient(fixed, NGF_SMOOTHING_PX)
    fixed_rows, fixed_columns = _normalised(rows, columns, np.mean(rows ** 2 + columns ** 2))
    rows, columns = _gradient(moving, NGF_SMOOTHING_PX)
    edge_squared = np.mean(rows ** 2 + columns ** 2)
    spectrum = np.fft.fft2(rows + 1j * columns)  # both (linear) derivatives moved by one transform
    inside = (slice(fixed_corner, fixed_corner + fixed.shape[0]), slice(fixed_corner, fixed_corner + fixed.shape[1]))

    def alignment(offset):
        moved = np.fft.ifft2(ndimage.fourier_shift(spectrum, -offset))[inside]
        moved_rows, moved_columns = _normalised(moved.real, moved.imag, edge_squared)
        return float((weight * (moved_rows * fixed_rows + moved_columns * fixed_columns) ** 2).sum())

    best = np.asarray(start, dtype=float)
    steps = np.array([(i, j) for i in range(-2, 3) for j in range(-2, 3)], dtype=float)
    for step in NGF_STEPS_PX:
        candidates = best + step * steps
        best = candidates[int(np.argmax([alignment(c) for c in candidates]))]
    return best


def _register_to_group_mean(region, shift, members):
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
            aligned_shift, residual = _gauss_newton(region, smooth, others, aligned_shift, max_step)
    return aligned_shift, residual


def _phase_offsets(region, shift, roi_frame, pixel_mm, start, lv_enhanced, stop):
    """Correction (n, 2), pixels, of each run of frames of one phase of the first pass, by mutual information.

    The frames from ``lv_enhanced`` to ``stop`` (excluded), but for the ROI
    frame and its neighbours (the mean they are tied to), are cut into runs
    of ``PHASE_FRAMES`` consecutive frames outward from the ROI frame on
    either side; each run's common position is tied to the ROI frame's
    (``_group_offset``, like the late group: relative to the ROI frame,
    both means smoothed by ``LATE_SMOOTHING_PX``).  The frames from
    ``start`` to ``lv_enhanced``, with contrast in the RV alone, are cut
    into runs outward from ``lv_enhanced`` too, and each is tied instead to
    the first ``PHASE_FRAMES`` frames from ``lv_enhanced`` on, once those
    are tied: their contrast differs less from the RV's than the ROI
    frame's does.  With fewer such frames before the ROI frame's neighbours
    they are left as they are: tied to the mean of two, the RV frames of
    our still seed 4 at 3 T moved 2.0-2.5 pixels in every slice.  A run of
    one frame is left as it is (one noisy frame is no mean), and so is a
    run whose correction the metric barely prefers (``PHASE_MIN_GAIN``).
    """
    correction = np.zeros_like(shift)

    def tie(outward, anchor=None):
        # ``outward``: the frames in order away from the frames they are tied to.
        reference = roi_frame if anchor is None else anchor
        relative = (shift + correction) - (shift[reference] + correction[reference]).reshape(-1, 2).mean(axis=0)
        for first in range(0, len(outward), PHASE_FRAMES):
            run = np.sort(outward[first:first + PHASE_FRAMES])
            if run.size > 1:
                correction[run] = _group_offset(region, relative, run, roi_frame, pixel_mm, anchor=anchor,
                                                smoothing_px=LATE_SMOOTHING_PX, keep_starts=True, checked=True)

    before = np.array([t for t in range(lv_enhanced, roi_frame - 1)], dtype=int)
    tie(before[::-1])
    tie(np.arange(roi_frame + 2, stop))
    if before.size >= PHASE_FRAMES:
        tie(np.arange(start, lv_enhanced)[::-1], anchor=before[:PHASE_FRAMES])
    return correction


def _late_weight(n, roi_frame, settled):
    """Share (n,) of the late group's correction given to each frame: none up to the ROI frame, all from the
    frame the contrast settled, a linear ramp between (those frames' contrast, and so their references, pass
    from the first pass's to the late frames')."""
    return np.clip((np.arange(n) - roi_frame) / float(settled - roi_frame), 0.0, 1.0)


def _near_heart(frames, heart_mask, pixel_mm):
    """Every frame's pixels within ``ARRIVAL_REGION_MM`` of the ROIs, (n_frames, n_pixels)."""
    distance = ndimage.distance_transform_edt(~np.asarray(heart_mask, dtype=bool),
                                              sampling=(1e6, pixel_mm[0], pixel_mm[1]))
    return np.asarray(frames, dtype=float)[:, distance <= ARRIVAL_REGION_MM]


def _brightest_mean(values):
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
    return _first_enhanced(_near_heart(frames, heart_mask, pixel_mm), times_s)


def _first_enhanced(values, times_s):
    """``first_enhanced_frame`` from the pixels near the heart (``_near_heart``: n_frames x n_pixels)."""
    from .aif import detect_arrival_index

    for followed in (values, values - np.median(values[:ARRIVAL_INITIAL_FRAMES], axis=0)):
        curve = _brightest_mean(followed)
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
        (``_brightest_mean(_near_heart(...))``), signal units.
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
    on instead of the ROI frame (``_phase_offsets``).

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


def resample_frames(frames, shift_px):
    """Frames moved back by their displacement: out(x) = frame(x + shift), cubic spline, edges repeated.

    Parameters
    ----------
    frames : numpy.ndarray, shape (n_frames, n_slices, rows, columns)
    shift_px : numpy.ndarray, shape (n_frames, n_slices, 2)
        (row, column) displacement of each frame and slice, pixels.

    Returns
    -------
    numpy.ndarray
        Same shape as ``frames``, float64; frames with a zero shift are copied.
    """
    out = np.array(frames, dtype=float, copy=True)
    for t in range(frames.shape[0]):
        for k in range(frames.shape[1]):
            if np.any(shift_px[t, k] != 0.0):
                out[t, k] = ndimage.shift(out[t, k], -np.asarray(shift_px[t, k], dtype=float), order=3,
                                          mode="nearest")
    return out


def _unregistered(shift_px, residual, pixel_mm, roi_frame):
    """Frames (any slice) that could not be registered.

    A frame is not registered when it lies further than
    ``MAX_DISPLACEMENT_MM`` from the ROI frame; when its residual exceeds the
    series' median by ``OUTLIER_RESIDUAL_SD`` robust SDs and
    ``OUTLIER_MIN_RATIO`` times; or when it lies more than ``JUMP_PX`` from
    its neighbours' median with a residual above ``JUMP_RESIDUAL_RATIO``
    times the median (a false minimum).
    """
    length_mm = np.linalg.norm(shift_px * pixel_mm, axis=-1)
    bad = length_mm > MAX_DISPLACEMENT_MM
    median = np.median(residual, axis=0)
    spread = 1.4826 * np.median(np.abs(residual - median), axis=0)
    bad |= (residual > median + OUTLIER_RESIDUAL_SD * spread) & (residual > OUTLIER_MIN_RATIO * median)
    for k in range(shift_px.shape[1]):
        jump = np.linalg.norm(shift_px[:, k] - _neighbour_median(shift_px[:, k]), axis=-1)
        bad[:, k] |= (jump > JUMP_PX) & (residual[:, k] > JUMP_RESIDUAL_RATIO * median[k])
    bad[roi_frame] = False
    return [int(f) for f in np.flatnonzero(bad.any(axis=1))]


def _breathing_moved(shift_px):
    """Whether ``auto`` resamples: the whole heart moved far, or back and forth.

    ``shift_px`` (frames x slices x 2, pixels) holds the frames the
    registration could follow and the slices with ROIs.  Breathing moves the
    whole heart, so every slice of a frame, and the same way; the
    registration's errors differ from slice to slice (a late ROI frame, a
    contrast its references do not follow, the jitter of dark, noisy frames
    before the contrast).  The heart moved when at least ``AUTO_MIN_FRAMES``
    frames lie more than ``AUTO_THRESHOLD_PX`` from the ROI frame in the
    median slice, or when, with two slices or more, at least
    ``AUTO_MIN_STEPS`` steps from one frame to the next moved every slice by
    more than ``AUTO_STEP_PX`` along the slices' median step.
    """
    if shift_px.size == 0:
        return False
    far = np.median(np.linalg.norm(shift_px, axis=-1), axis=1) > AUTO_THRESHOLD_PX
    if np.count_nonzero(far) >= AUTO_MIN_FRAMES:
        return True
    if shift_px.shape[1] < 2:
        return False
    step = np.diff(shift_px, axis=0)
    common = np.median(step, axis=1)
    direction = common / np.maximum(np.linalg.norm(common, axis=-1, keepdims=True), 1e-12)
    together = np.min(np.einsum("tkc,tc->tk", step, direction), axis=1)
    return bool(np.count_nonzero(together > AUTO_STEP_PX) >= AUTO_MIN_STEPS)


def correct_motion(frames, frame_times_s, blood_pool_mask, myocardium_mask, pixel_mm, roi_frame, mode="auto",
                   roi_frame_rule="given", progress=None):
    """Register every frame of each slice, in plane, to the position of the ROI frame.

    Parameters
    ----------
    frames : numpy.ndarray, shape (n_frames, n_slices, rows, columns)
        The perfusion series (signal units).
    frame_times_s : numpy.ndarray, shape (n_frames,)
        Frame times, s.
    blood_pool_mask, myocardium_mask : numpy.ndarray of bool, shape (n_slices, rows, columns)
        The ROIs, drawn on frame ``roi_frame``.
    pixel_mm : array_like, shape (2,)
        Pixel size (row, column), mm.
    roi_frame : int
        The frame the ROIs belong to.
    mode : str
        One of ``MOTION_CORRECTION_MODES``.
    roi_frame_rule : str
        How ``roi_frame`` was chosen, for the record.
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    MotionCorrection

    Raises
    ------
    AIAIFInputError
        For an unknown mode or a ROI frame outside the series.
    """
    if mode not in MOTION_CORRECTION_MODES:
        raise AIAIFInputError("Unknown motion correction {!r}; use one of {}.".format(
            mode, ", ".join(MOTION_CORRECTION_MODES)))
    frames = np.asarray(frames, dtype=float)
    n_frames, n_slices = frames.shape[:2]
    if not 0 <= int(roi_frame) < n_frames:
        raise AIAIFInputError("The ROI frame {} is outside the series' frames 0-{}; give the index of the frame "
                              "the ROIs were drawn on.".format(roi_frame, n_frames - 1))
    roi_frame = int(roi_frame)
    pixel_mm = np.asarray(pixel_mm, dtype=float)
    started = time.perf_counter()
    record = dict(mode=mode, roi_frame=roi_frame, roi_frame_rule=roi_frame_rule, pixel_mm=pixel_mm, warnings=[],
                  frame_times_s=np.asarray(frame_times_s, dtype=float))
    if mode == "off":
        return MotionCorrection(frames=frames, shift_px=np.full((n_frames, n_slices, 2), np.nan),
                                residual=np.full((n_frames, n_slices), np.nan), excluded_frames=[], applied=False,
                                baseline_offset_px=np.full((n_slices, 2), np.nan), late_start_frame=None,
                                late_offset_px=np.full((n_slices, 2), np.nan), lv_enhanced_frame=None,
                                phase_offset_px=np.full((n_frames, n_slices, 2), np.nan),
                                seconds=time.perf_counter() - started, **record)
    heart = np.asarray(blood_pool_mask, dtype=bool) | np.asarray(myocardium_mask, dtype=bool)
    shift = np.zeros((n_frames, n_slices, 2))
    residual = np.full((n_frames, n_slices), np.nan)
    baseline_offset = np.zeros((n_slices, 2))
    late_offset = np.zeros((n_slices, 2))
    phase_offset = np.zeros((n_frames, n_slices, 2))
    near_heart = _near_heart(frames, heart, pixel_mm)  # where the contrast's arrival and settling are read
    first_enhanced = _first_enhanced(near_heart, frame_times_s)
    settled = contrast_settled_frame(_brightest_mean(near_heart), first_enhanced, roi_frame)
    lv_enhanced = lv_enhanced_frame(frames, blood_pool_mask, first_enhanced, roi_frame)
    for k in range(n_slices):
        _report(progress, k / n_slices, "Measuring the motion of slice {} of {}".format(k + 1, n_slices))
        if not heart[k].any():
            continue  # no ROI in this slice: nothing to register it on
        slice_shift, slice_residual, baseline_offset[k], late_offset[k], phase_offset[:, k] = estimate_slice_motion(
            frames[:, k], heart[k], pixel_mm, first_enhanced=first_enhanced, roi_frame=roi_frame, settled=settled,
            lv_enhanced=lv_enhanced)
        shift[:, k] = slice_shift - slice_shift[roi_frame]
        residual[:, k] = slice_residual / np.median(slice_residual)
    measured = np.isfinite(residual).all(axis=0)
    unregistered = _unregistered(shift[:, measured], residual[:, measured], pixel_mm, roi_frame)
    reliable = np.ones(n_frames, bool)
    reliable[unregistered] = False
    # Whether the series moves is judged on the frames the registration could follow: a frame it could not
    # follow says nothing about motion.
    applied = mode == "on" or _breathing_moved(shift[reliable][:, measured])
    excluded = unregistered if applied else []
    warnings = record["warnings"]
    baseline_left = [f for f in range(first_enhanced) if f not in excluded]
    kept_baseline = [f for f in excluded if f < first_enhanced] if len(baseline_left) < MIN_BASELINE_KEPT else []
    if kept_baseline:
        # The pre-contrast frames set every pixel's baseline: without enough of them no curve can be converted.
        excluded = [f for f in excluded if f not in kept_baseline]
        warnings.append("Frame{} {} before the contrast could not be registered but {} kept, as the baseline needs "
                        "{} pre-contrast frames; the baseline of pixels near edges may be biased.".format(
                            "s" if len(kept_baseline) > 1 else "", ", ".join(str(f) for f in kept_baseline),
                            "are" if len(kept_baseline) > 1 else "is", MIN_BASELINE_KEPT))
    if excluded:
        warnings.append("{} frame{} could not be registered to the ROI frame and {} left out of the fits (frame{} "
                        "{}); check the series for through-plane motion or artefacts.".format(
                            len(excluded), "s" if len(excluded) > 1 else "", "are" if len(excluded) > 1 else "is",
                            "s" if len(excluded) > 1 else "", ", ".join(str(f) for f in excluded)))
    if not measured.all():
        warnings.append("Slice{} {} {} no ROI, so {} not registered.".format(
            "s" if (~measured).sum() > 1 else "", ", ".join(str(k) for k in np.flatnonzero(~measured)),
            "have" if (~measured).sum() > 1 else "has", "they were" if (~measured).sum() > 1 else "it was"))
    _report(progress, 0.9, "Registering the frames" if applied else "No motion to correct")
    # Displacements within the registration's precision are not applied: resampling a frame that did not move
    # only blurs it, and misplaces its edges by the estimate's error.
    registered = resample_frames(frames, _applied_shift(shift)) if applied else frames
    return MotionCorrection(frames=registered, shift_px=shift, residual=residual, excluded_frames=excluded,
                            baseline_offset_px=baseline_offset, late_start_frame=settled,
                            late_offset_px=late_offset, lv_enhanced_frame=lv_enhanced, phase_offset_px=phase_offset,
                            applied=applied, seconds=time.perf_counter() - started, **record)

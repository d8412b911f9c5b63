"""Motion correction of the perfusion series: every frame registered in plane to the frame of the ROIs.

A stress perfusion series moves when the breath-hold fails or the patient
breathes freely.  On unregistered frames a pixel's curve mixes blood pool,
myocardium and the fat around the heart, the AIF ROI picks up myocardium and
pixelwise MBF becomes noise.  This package registers each slice's frames, in
plane, to the position of the frame the ROIs belong to (``roi_frame``, by
default the frame of peak LV enhancement, ``aif.peak_enhancement_frame``).

The contrast changes tenfold over the series, so no frame can be compared
with the ROI frame directly.  Each frame is instead compared with a
**synthetic reference of its own contrast**: its projection on the leading
principal components of the *other* frames (``low_rank_references``: the frame is left
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
(``register_to_group_mean``): while the patient breathes freely before the
contrast, many frames of strong edges make the breathing itself one of the
series' leading components, and the low-rank references then follow it.
Their common position is tied to the ROI frame's by **mutual
information** (SimpleITK's Mattes metric, which compares images of different
contrast) between their registered mean and the registered mean around the
ROI frame (``mutual_information_offset``), and that tie is refined by the
median of three measures of the two means' similarity, which err
differently between the two contrasts (``consensus_offset``: mutual
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
same way, and refined by the same three measures by a few tenths of a pixel
at most (``phase_offsets``); the frames with contrast in the RV alone,
before the LV blood shows it (``lv_enhanced_frame``), are tied to the
first frames with LV contrast instead, whose contrast is nearer theirs.

The displacements are then made relative to the ROI frame.  In the still
run around the ROI frame (``still_frames``: the breath-hold), they are
reported but not applied: a frame that did not move is left exactly as it
was.  The run grows while the median slice stays within
``MIN_APPLIED_SHIFT_PX``, so it can take in breathing frames next to the
hold that lie near the held position; a few such end frames, displaced by
``STILL_END_PX`` or more and moved from the next frame inward, are dropped
from it again.  Only in the run's ``STILL_EDGE_FRAMES`` outermost frames is
a slice's displacement of ``MIN_APPLIED_SHIFT_PX`` or more applied: the hold
begins and ends between the slices of one heartbeat, so there one slice can
have moved while the others were held; further in, a slice that moved alone
was misregistered.  Outside the run the heart breathes, and every displacement
is applied.

The breath-hold also gives the remedy for the low-rank references' blind
spot, once the series moved: the held frames lie at the ROI frame's
position by definition, no moving frame has shaped them, and their contrast
runs from before the arrival through the first pass.  Every frame outside
the run is moved to where it lies nearest the span of the held frames (their
leading principal components and a constant; ``held_span``), within
``HELD_SPAN_MAX_CORRECTION_PX`` of where the steps above put it, or within
``HELD_SPAN_MAX_HELD_CORRECTION_PX`` where the span holds all but
``HELD_SPAN_MAX_OFF_SPAN`` of the frame's energy there; the pre-contrast
frames, registered to one another already, share the median of their
corrections.  After the hold the contrast moves on to what the held
frames never showed, and there a correction that removes less than
``HELD_SPAN_MIN_REDUCTION`` of the frame's energy off the span, or that
leaves more than ``HELD_SPAN_MAX_OFF_SPAN`` of it off the span, is not
applied: it trades one mismatch for another.  The groups' ties leave
common offsets of a tenth of a pixel or more, which move segments' MBF by
several per cent; the span removes most of them.  A series without a breath-hold of
``MIN_HELD_FRAMES`` frames (besides the run's edges) keeps the steps above
alone, with a warning, and so does one whose hold drifted further than
``HELD_SPAN_MAX_DRIFT_PX`` (``hold_drift_px``): the span has no position of
its own, and each frame outside the hold comes to lie where the hold's
frames of the nearest contrast lie, drift and all.  The frames are
resampled once, by linear phases in the Fourier domain (``resample_frames``;
a turn as three shears).

Translation is applied: respiration moves the heart in plane mostly by
translation.  It also turns it by a few degrees, and the region around the
heart is not symmetric about its centre (the RV on one side), so a
translation fitted alone is pulled towards where the turned structures went.
Against the held frames' span, whose frames lie at the ROI frame's position
and orientation, a turn about the heart's centre is therefore fitted
alongside the translation, and the turned fit is taken (turn and
translation applied, the turn reported as ``turn_deg``) only where the turn
removes at least ``HELD_SPAN_MIN_TURN_REDUCTION`` of the frame's energy off
the span: elsewhere it trades a mismatch of contrast for a false turn.  The low-rank
and group steps fit no turn: the synthetic references turn with the frames,
and there a free turn let frames of little contrast slide into false minima.
Through-plane motion changes the section's size and signal, which a rigid or
affine step would follow only in part; the benchmark
(``Testing/benchmarks/motion_correction.py``) measures what translation
leaves.  Known limits: the held frames' span holds the contrast of the
breath-hold only, so frames long after the first pass, of a contrast it
holds less well, are registered to it less precisely; a series without a
breath-hold around the ROI frame keeps the groups' ties alone, and among
them one correction for the whole late group.

Breathing moves every slice of a frame together, which cross-checks each
slice's registration against the others'.  A slice carried off alone, more
than ``ASTRAY_MM`` from the median of the frame's slices, slid into a false
minimum, and is given that median (``astray_slices``, with a warning),
unless the median itself leaves the course of the neighbouring frames (two
slices slid off together): the frame is then left out.
Frames that cannot be registered (``_unregistered``: a residual far above
the series' others in every slice, or in a slice whose displacement is in
doubt too, astray, a few mm apart from the other slices
(``OUTLIER_APART_MM``) or jumped away from the neighbours' positions unlike
them; a doubtful displacement with a poor fit; or a displacement
beyond ``MAX_DISPLACEMENT_MM``) are listed, with a warning, and left out of
the fits (``pipeline.correct_study_motion``).  A poor fit alone does not
leave a frame out: the synthetic references follow a fast change of
contrast poorly, and a frame can fit them badly in one slice though it is
registered well.

``mode`` (``MOTION_CORRECTION_MODES``): ``"on"`` always resamples, ``"off"``
leaves the frames as they are (and measures nothing), ``"auto"`` (default)
measures the motion and resamples only when the whole heart moved
(``breathing_moved``; breathing moves every slice of a frame, the same
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

The package, top to bottom: ``correction`` (the whole series: ``correct_motion``,
the frames that cannot be registered, the still run, resampling) calls
``contrast_phases`` (the arrival, LV enhancement and settled contrast read
off the series), ``slice_motion`` (one slice: ``region``, the registration
region; ``low_rank``, the synthetic references; ``gauss_newton``, the
translation solver; ``groups``, groups of frames of one contrast tied to the
ROI frame by the measures of ``similarity``), ``held_span`` (the frames
outside the breath-hold, against the held frames' span) and ``auto``
(whether the whole heart moved).
"""

from .contrast_phases import contrast_settled_frame, first_enhanced_frame, lv_enhanced_frame
from .correction import MOTION_CORRECTION_MODES, MotionCorrection, correct_motion, resample_frames
from .slice_motion import estimate_slice_motion

__all__ = ["MOTION_CORRECTION_MODES", "MotionCorrection", "contrast_settled_frame", "correct_motion",
           "estimate_slice_motion", "first_enhanced_frame", "lv_enhanced_frame", "resample_frames"]

"""Frames outside the breath-hold registered to the span of the breath-held frames.

The low-rank references have a blind spot: frames of one contrast share
components and settle at a common position of their own, and the groups'
ties to the ROI frame (``groups``) correct that position only as well as
two means of different contrast can be compared.  A common error of a tenth
of a pixel over the free-breathing frames moves a segment's MBF by several
per cent.  Once the still run around the ROI frame is known
(``correction.still_frames``: the breath-hold), a reference that no moving
frame has shaped is at hand: the held frames lie at the ROI frame's position
by definition, and their contrast runs from before the arrival (the hold
begins before the bolus) through the first pass.  Each frame outside the run
is moved to where it lies nearest the span of the held frames: the leading
principal components of the held frames and a constant, fitted by weighted
least squares inside the registration region (``region``).  The span holds
the contrast of the breath-hold: frames long after the first pass, of a
contrast it holds less well, are registered to it less precisely (on 40
held-out moving studies the late frames' median error fell in most, but rose
to 0.14-0.8 pixel in 8, which had 8 segments off by over 5 % instead of 15
all the same), and a correction longer than ``HELD_SPAN_MAX_CORRECTION_PX``
is applied only where the span holds all but ``HELD_SPAN_MAX_OFF_SPAN`` of
the frame's energy, up to ``HELD_SPAN_MAX_HELD_CORRECTION_PX``; after the
hold, no correction is applied that removes less than
``HELD_SPAN_MIN_REDUCTION`` of the frame's energy off the span or leaves more
than ``HELD_SPAN_MAX_OFF_SPAN`` of it off the span (a frame of a contrast the
span does not hold).  The span has no position of its own: a
frame outside the run comes to lie where the held frames of the nearest
contrast lie, so a hold that drifted (``hold_drift_px``) further than
``HELD_SPAN_MAX_DRIFT_PX`` is not used.

A turn about the heart's centre is fitted alongside the translation, and
taken where it explains the frame (``HELD_SPAN_MIN_TURN_REDUCTION``): the
held frames lie at the ROI frame's orientation too, so the span anchors the
turn as it does the position.  Where taken, the turn is applied with the
translation (``correction.resample_frames``) and reported.

Measured (project choice; two samples of 20 held-out moving studies, true
AIF, ``auto``): segments within 5 % of the still study went from 88.4 and
84.4 % to 95.9 and 90.3 % (ideal: 98.1 and 92.8 %), our 8 moving phantoms in
and through plane stayed at 100 %.
"""

import numpy as np
from scipy import ndimage

from .gauss_newton import CONVERGED_STEP_PX, SMOOTHING_SCHEDULE_PX, normal_matrices, pose_gradients, solve_3x3
from .low_rank import _leading_eigenvectors
from .region import Region

#: Principal components of the held frames that span the reference, besides a constant (project choice: the
#: compartments whose contrast changes independently, RV and LV blood, myocardium, the tissue around them, with
#: room for their partial volumes; on 40 held-out moving studies 8 did as well as 5 or better, 90th percentile of
#: the frames' error 0.47 to 0.27 pixel in seed 40, 0.31 to 0.18 in seed 57; 3 left some frames pixels off).
HELD_SPAN_RANK = 8
#: Fewest held frames for the span; a series without such a breath-hold keeps the low-rank registration's
#: displacements (project choice: a short hold spans little of the contrast, but what it spans is at the ROI frame's
#: position, and after the hold only the corrections that the span explains are applied, ``HELD_SPAN_MIN_REDUCTION``.
#: With that test, 5 against 8, segments within 5 % of the still study: held-out short holds (6-10 s from 0.3-1.5 s
#: before the arrival) 76.9 to 79 % and 80.0 to 83 % (seeds 31-40, 41-50), a hold that fails during the first pass
#: (5-8 s from 2-4 s before the arrival, ROIs on its brightest frame) 64 to 70 %, the default holds 95.3 and 91.2 to
#: 95.3 and 93 %, ours 100 % in and through plane, unchanged; the residual displacement's 95th percentile rose in
#: the short and failed holds, 0.30 to 0.54, 0.38 to 0.46 and 0.58 to 0.66 pixel.  Without the test, 5 held frames
#: did worse than 8 in short holds, 72.5 against 75.6 %.)
MIN_HELD_FRAMES = 5
#: Longest drift of the held frames, pixels, for which their span is used (``hold_drift_px``).  The span has no
#: position of its own: each frame outside the run comes to lie where the held frames of the nearest contrast lie,
#: the hold's first frames for the frames before it, its last for those after it, so a hold that drifts carries
#: its drift into them (project choice, measured on held-out moving studies with a drift added inside the hold:
#: the frames' error, median, 0.08-0.11 pixel without the span, 0.12-0.28 with it for a drift of 0.4 pixel, 0.2-0.7
#: for one of 1 pixel; the held frames' measured drift read 0.62-1.03 pixel for a drift of 1 pixel, and at most
#: 0.57 pixel on 40 held-out and 16 of our studies whose hold is still).  Beyond it the frames keep the steps before.
HELD_SPAN_MAX_DRIFT_PX = 0.6
#: Gauss-Newton steps of the registration to the span, at most, and the longest step, pixels.
HELD_SPAN_ITERATIONS = 15
HELD_SPAN_MAX_STEP_PX = 0.25
#: Longest correction of the low-rank registration's displacement applied to a frame of which more than
#: ``HELD_SPAN_MAX_OFF_SPAN`` of the energy lies off the span, pixels (project choice: the groups' common errors that
#: the span corrects are tenths of a pixel; a longer correction of such a frame is that of a contrast the span does
#: not hold, and the low-rank registration's displacement is kept).
HELD_SPAN_MAX_CORRECTION_PX = 1.0
#: Longest correction applied where the span holds the frame's contrast (at most ``HELD_SPAN_MAX_OFF_SPAN`` of its
#: energy off the span at the corrected position), pixels (project choice: the low-rank references can leave a frame
#: of a contrast of its own, the arrival of the contrast or the first frames of a series that starts with it, 1-2
#: pixels off in one slice, and the span, which holds that contrast when the hold began with it, places it within a
#: few tenths; breathing moves the heart by up to about 3 pixels between heartbeats, ``gauss_newton.JUMP_PX``).
#: Measured frame by frame against the true displacement: frames more than a pixel off before the hold, short holds
#: 5 to 3, failed holds 2 to 1, the default holds (seeds 31-50) 6 to 3, ours unchanged (its 5, in seed 33, lie half
#: off the span, which moves them by 0.3 pixel at most); 12 frames moved from 0.8-2.2 pixels off to under 0.15, 1
#: (short holds, 19 frames after the hold) from 0.06 to 1.05 pixels off.
HELD_SPAN_MAX_HELD_CORRECTION_PX = 3.0
#: Least share of a frame's energy off the span that its correction must remove to be applied, for the frames after
#: the hold (project choice).  A frame whose contrast the span holds is left off it mostly by its misplaced edges,
#: which the correction moves back: its off-span energy falls by a large share.  A frame of a contrast the span does
#: not hold stays far off it wherever it lies, and the fit slides it a fraction of a pixel to trade one mismatch for
#: another, for a few per cent at most.  After the hold the contrast moves on (the LV's downslope, the
#: recirculation, the washout) to what the held frames never showed; before it the pre-contrast frames show little
#: but noise, which no correction removes, so the share says little there, and the hold begins with the contrast
#: they have.  Measured frame by frame against the true displacement (``register_to_held_span``'s corrections) on
#: 10 held-out moving studies with short breath-holds (6-10 s from 0.3-1.5 s before the arrival), two samples of 10
#: with the default holds and 8 of ours in and through plane: after the hold, of the corrections that removed under
#: 5 %, 60 % made the frame worse in the short holds (median error 0.09 to 0.17 pixel), 41 and 24 % with the default
#: holds, 26 % in ours; of those that removed over 17 %, 2, 0, 1 and 14 %; frames more than 0.3 pixel off, short /
#: default / ours, 133 / 58 and 2 / 55 to 67 / 11 and 1 / 33.  Before the hold the same test left the frames' median
#: error as it was or raised it (0.075 to 0.081, 0.037 to 0.043 and 0.030 to 0.032, 0.140 to 0.144 pixel; in the
#: short hold of held-out seed 33 it left the first frame with contrast 0.29 pixel off in one slice, and a segment
#: off by 26 %).  A threshold of 10 % raised the default holds' median error from 0.04 to 0.05 pixel.
HELD_SPAN_MIN_REDUCTION = 0.05
#: Largest share of a frame's centred energy (about its weighted mean) that may lie off the span where the fit put it,
#: for a frame after the hold to take its correction (project choice).  The span holds the contrast of the held frames
#: only: a short hold, or one that failed during the first pass, spans the arrival and the upslope, and frames after
#: it of another contrast (the downslope, the recirculation, the settled contrast) lie far off it wherever they are
#: placed.  The fit then moves them to where the span's edges best mimic theirs, by up to a pixel, and still removes
#: a tenth of their energy off it, so ``HELD_SPAN_MIN_REDUCTION`` lets such corrections through.  Measured frame by
#: frame against the true displacement (the span's corrections after the hold that the test on the share removed let
#: through, with the low-rank registration's displacement kept where not applied): held-out moving studies with
#: holds that fail 1-4 s after the arrival (5-8 s from 2-4 s before it; seeds 31-40), of them where more than 20 % lay
#: off the span all 202 made the frame worse (by 0.5-0.7 pixel, median), frames more than 0.3 pixel off 298 to 102
#: (99 with no correction after the hold); short holds (6-10 s from 0.3-1.5 s before; seeds 31-40) 93 of 93 worse,
#: 156 to 67 (86 with none); with the default holds (20 studies, seeds 31-50) and in ours (8 seeds from 31, in and
#: through plane) no correction let through left more than 20 % off the span, and the frames are unchanged (11 and
#: 33 more than 0.3 pixel off); a bound of 15 % read the same but in the short holds (79).  The segments barely move
#: (within 5 % of the still study: failed holds 70 to 68 %, short holds 79 %, held-out seeds 51-70 93 %): MBF rests
#: mostly on the baseline and the first pass, and the late frames weigh little in it.
HELD_SPAN_MAX_OFF_SPAN = 0.2
#: Least share of a frame's energy off the span, at its position fitted without a turn, that a turn about the heart's
#: centre fitted alongside must remove for the turned fit to be taken (project choice).  Breathing turns the heart by
#: a few degrees, and the region is not symmetric about the heart's centre (the RV on one side), so a translation
#: fitted alone is pulled towards where the turned structures went.  Measured on a third model of the motion (our 8
#: seeds from 31 moved rigidly, the heart turning by up to 5 degrees about its centre in phase with the breathing):
#: fitted without a turn, the frames after the hold lay 0.2-0.45 pixel off in proportion to their turn (seed 38);
#: a turn removed 34-88 % of their energy off the span and left them within 0.1 pixel.  A turn that is not there
#: still removes a little where the span holds the frame's contrast only in part: before the short hold of held-out
#: seed 32, the frames with contrast in the RV alone were turned by 1.4-2.3 degrees for 1.5-2.5 % less energy off
#: the span and carried a quarter of a pixel further off (median 0.31 to 0.53 pixel).  Segments within 5 % of the still
#: study, turning by up to 5 degrees: ours 91 to 98 % (ideal 100 %), held-out (the model's ``rotation_deg`` of 5, seeds
#: 31-40) 76 to 85 % (ideal 89 %); without a turn the default holds (20 studies), short holds and ours in and
#: through plane read as before.  With the turn applied too (``correction.resample_frames``), held-out 88 to 94 %
#: (ideal with the true turn 96 %; 88 % was with the translation alone, resampled by phase ramps), the third model
#: held-out 92 to 93 %, ours 98 to 99 %; without a turn the samples read as before (one segment of 2 x 20 default
#: holds, short and failed holds moved by 0.2 %).
HELD_SPAN_MIN_TURN_REDUCTION = 0.05


def _orthonormal_span(held, weight_root, rank):
    """Orthonormal rows (k, p) spanning a constant and the ``rank`` leading principal components of ``held`` (m, p),
    in plain numpy sums (no BLAS: the same result on every machine)."""
    gram = np.einsum("ip,jp->ij", held, held)
    components = np.einsum("ir,ip->rp", _leading_eigenvectors(gram, min(rank, held.shape[0])), held)
    basis = []
    for vector in np.vstack([weight_root[None, :], components]):
        length = np.sqrt((vector * vector).sum())
        for other in basis:
            vector = vector - (other * vector).sum() * other
        norm = np.sqrt((vector * vector).sum())
        if norm > 1e-9 * length:  # not already in the span of the others
            basis.append(vector / norm)
    return np.array(basis)


def _off_span(vectors, basis):
    """The part (n, p) of each of ``vectors`` (n, p) orthogonal to the rows of ``basis`` (k, p)."""
    return vectors - np.einsum("nk,kp->np", np.einsum("np,kp->nk", vectors, basis), basis)


def _weighted(region, images):
    """``images`` (n, rows, columns) on the region's grid as vectors (n, p) over the region, each pixel weighed by
    the root of its weight (so that squared sums are the weighted least-squares costs)."""
    inside = region.weight > 0
    return images[:, inside] * np.sqrt(region.weight[inside])


def _off_span_energy(region, stack, basis, shift, angle=None):
    """Weighted energy (n,) of each frame of ``stack`` off the span at ``shift`` (n, 2) and ``angle`` (n,), and its
    centred energy (n,) (about its weighted mean: the basis' first row is the constant)."""
    vectors = _weighted(region, region.sample(stack, shift, angle))
    return (_off_span(vectors, basis) ** 2).sum(axis=1), (_off_span(vectors, basis[:1]) ** 2).sum(axis=1)


def _fit_to_span(region, stack, basis, shift, fit_angle=True):
    """Each frame of ``stack`` moved to where it lies nearest the span (weighted least squares), from ``shift``
    (n, 2), and turned about the heart's centre from no turn when ``fit_angle`` (``gauss_newton``): Gauss-Newton
    steps of at most ``HELD_SPAN_MAX_STEP_PX`` (the angle's as an arc at the region's RMS radius), a step that made
    the fit worse halved back.

    Returns the shifts (n, 2) and the angles (n,), radians (zeros without ``fit_angle``).
    """
    root = np.sqrt(region.weight[region.weight > 0])

    def off_span(images):
        turn, *shifts = pose_gradients(region, images)
        # Without a turn its gradient is left out (zeros: its row and column of the normal equations drop out).
        turn = _off_span(turn * root, basis) if fit_angle else np.zeros((images.shape[0], root.size))
        return (_off_span(_weighted(region, images), basis), turn) + tuple(
            _off_span(gradient * root, basis) for gradient in shifts)

    pose = np.concatenate([np.zeros((shift.shape[0], 1)), np.array(shift, dtype=float)], axis=1)
    previous = np.full(pose.shape[0], np.inf)
    last_step = np.zeros_like(pose)
    active = np.arange(pose.shape[0])
    for _ in range(HELD_SPAN_ITERATIONS):
        residual, *gradients = off_span(region.sample(stack[active], pose[active, 1:],
                                                      pose[active, 0] / region.radius_px))
        cost = (residual ** 2).sum(axis=1)
        worse = cost > previous[active]
        pose[active[worse]] -= 0.5 * last_step[active[worse]]
        last_step[active[worse]] *= 0.5
        previous[active[~worse]] = cost[~worse]
        normal = normal_matrices(gradients)
        if not fit_angle:
            normal[:, 0, 0] = 1.0  # the turn's equation reads "no step"
        step = -solve_3x3(normal, np.stack([(gradient * residual).sum(axis=1) for gradient in gradients], axis=1))
        step = np.where(worse[:, None], 0.0, np.clip(np.nan_to_num(step), -HELD_SPAN_MAX_STEP_PX,
                                                         HELD_SPAN_MAX_STEP_PX))
        pose[active] += step
        last_step[active[~worse]] = step[~worse]
        stepping = np.max(np.abs(np.where(worse[:, None], last_step[active], step)), axis=1) >= CONVERGED_STEP_PX
        active = active[stepping]
        if active.size == 0:
            break
    return pose[:, 1:], pose[:, 0] / region.radius_px


def hold_drift_px(shift_px, held):
    """How far the held frames drifted, pixels: the length of the straight line fitted to their displacements.

    Parameters
    ----------
    shift_px : numpy.ndarray, shape (n_frames, 2)
        Displacement of each frame relative to the ROI frame, pixels (the
        median over the slices: a hold drifts with the whole heart).
    held : numpy.ndarray of int
        The held frames (``correction.held_frames``).

    Returns
    -------
    float
        The fitted line's length from the first held frame to the last
        (least squares over the frame index); 0 for fewer than two frames.
    """
    held = np.asarray(held, dtype=int)
    if held.size < 2:
        return 0.0
    index = held - held.mean()
    values = np.asarray(shift_px, dtype=float)[held]
    slope = (index[:, None] * (values - values.mean(axis=0))).sum(axis=0) / (index * index).sum()
    return float(np.sqrt((slope * slope).sum()) * (held[-1] - held[0]))


def register_to_held_span(frames, heart_mask, pixel_mm, shift_px, still, held, one_contrast=(), return_turn=False):
    """Displacements of one slice's frames outside the still run, refined against the span of its held frames.

    Parameters
    ----------
    frames : numpy.ndarray, shape (n_frames, rows, columns)
        The slice's frames (signal units).
    heart_mask : numpy.ndarray of bool, shape (rows, columns)
        The heart in the ROI frame: the centre of the registration region.
    pixel_mm : array_like, shape (2,)
        Pixel size (row, column), mm.
    shift_px : numpy.ndarray, shape (n_frames, 2)
        Displacement of each frame relative to the ROI frame, pixels (the
        low-rank registration's and the groups' ties).
    still : numpy.ndarray of bool, shape (n_frames,)
        The still run (``correction.still_frames``).
    held : sequence of int
        The held frames, whose span is the reference (``correction.held_frames``).
    one_contrast : sequence of int, optional
        Frames of one contrast registered to one another already (the
        pre-contrast frames, ``groups.register_to_group_mean``): their
        registration to each other is more precise than any one frame's to
        the span, which has little to hold on to before the contrast, so
        those outside the run are given the median of their corrections
        (each keeps its own turn).
    return_turn : bool, optional
        Also return each frame's turn about the heart's centre.

    Returns
    -------
    numpy.ndarray, shape (n_frames, 2)
        ``shift_px`` with the frames outside the run moved to their
        position nearest the held frames' span (with a turn about the
        heart's centre fitted alongside where the turn removes at least
        ``HELD_SPAN_MIN_TURN_REDUCTION`` of the frame's energy off the span),
        where that is within
        ``HELD_SPAN_MAX_CORRECTION_PX`` (``HELD_SPAN_MAX_HELD_CORRECTION_PX``
        where at most ``HELD_SPAN_MAX_OFF_SPAN`` of the frame's energy lies
        off the span there) and, after the hold, removes at least
        ``HELD_SPAN_MIN_REDUCTION`` of the frame's energy off the span and
        leaves at most ``HELD_SPAN_MAX_OFF_SPAN`` of it there; unchanged
        without held frames.
    numpy.ndarray, shape (n_frames,)
        With ``return_turn``: the turn (radians) fitted with each frame's
        applied correction, zero where none was taken: the frame is sampled
        at ``c + R (x - c) + shift`` (``Region.sample``; c the heart's
        centre, R the rotation by the turn in (row, column) coordinates).
    """
    shift_px = np.asarray(shift_px, dtype=float)
    run = np.asarray(held, dtype=int)
    moving = np.flatnonzero(~np.asarray(still, dtype=bool))
    if run.size == 0 or moving.size == 0:
        return (shift_px.copy(), np.zeros(shift_px.shape[0])) if return_turn else shift_px.copy()
    region = Region(frames, heart_mask, np.asarray(pixel_mm, dtype=float))
    smooth = ndimage.gaussian_filter(region.frames, (0.0,) + (SMOOTHING_SCHEDULE_PX[-1],) * 2, mode="nearest")
    held = _weighted(region, region.sample(smooth[run], np.zeros((run.size, 2))))
    basis = _orthonormal_span(held, np.sqrt(region.weight[region.weight > 0]), HELD_SPAN_RANK)
    found, angle = _fit_to_span(region, smooth[moving], basis, shift_px[moving])
    # The turn is a nuisance parameter: kept only where it explains a share of the frame's mismatch with the span;
    # elsewhere it would only trade one mismatch (of contrast) for another, and pull the translation with it.
    unturned, no_turn = _fit_to_span(region, smooth[moving], basis, shift_px[moving], fit_angle=False)
    turned_off = _off_span_energy(region, smooth[moving], basis, found, angle)[0]
    unturned_off = _off_span_energy(region, smooth[moving], basis, unturned, no_turn)[0]
    plain = turned_off > (1.0 - HELD_SPAN_MIN_TURN_REDUCTION) * unturned_off
    found[plain], angle[plain] = unturned[plain], no_turn[plain]
    correction = found - shift_px[moving]
    group = np.isin(moving, np.asarray(one_contrast, dtype=int))
    if group.any():
        # Registered to one another by translation alone: each keeps its own turn.
        correction[group] = np.median(correction[group], axis=0)
    # Where the span holds the frame's contrast (all but HELD_SPAN_MAX_OFF_SPAN of its energy at the corrected
    # position), a longer correction is trusted; after the hold, only there, and only where it explains the frame.
    tiny = np.finfo(float).tiny
    off, centred = _off_span_energy(region, smooth[moving], basis, shift_px[moving] + correction, angle)
    held_well = off <= HELD_SPAN_MAX_OFF_SPAN * np.maximum(centred, tiny)
    length = np.linalg.norm(correction, axis=1)
    applied = length <= np.where(held_well, HELD_SPAN_MAX_HELD_CORRECTION_PX, HELD_SPAN_MAX_CORRECTION_PX)
    after = moving > run[-1]
    if after.any():
        started_off = _off_span_energy(region, smooth[moving[after]], basis, shift_px[moving[after]], angle[after])[0]
        removed = 1.0 - off[after] / np.maximum(started_off, tiny)
        applied[after] &= held_well[after] & (removed >= HELD_SPAN_MIN_REDUCTION)
    out = shift_px.copy()
    out[moving[applied]] += correction[applied]
    if not return_turn:
        return out
    turn = np.zeros(shift_px.shape[0])
    turn[moving[applied]] = angle[applied]
    return out, turn

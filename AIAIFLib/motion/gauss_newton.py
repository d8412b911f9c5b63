"""Translation of every frame to its reference by weighted Gauss-Newton least squares, all frames at once.

Plain element-wise sums, no BLAS or LAPACK in the loops: the shifts do not
depend on the machine's BLAS kernel or threads.
"""

import numpy as np

#: Gaussian smoothing (SD, pixels) of frames and references in each round: coarse to fine (project choice:
#: the first rounds need a wide capture range, the last the precision of the unsmoothed edges).
SMOOTHING_SCHEDULE_PX = (2.0, 1.5, 1.0, 0.7)
#: Gauss-Newton iterations per round at most, and the step (pixels) below which a frame has converged.
MAX_ITERATIONS = 10
CONVERGED_STEP_PX = 0.01
#: Largest Gauss-Newton step per iteration in each round, pixels (coarse rounds move further).
MAX_STEP_PX = (1.0, 0.5, 0.25, 0.25)
#: A frame whose shift lies further than this, pixels, from the median of its ``NEIGHBOUR_FRAMES`` neighbours on
#: either side is fitted a second time from that median (project choice: free breathing moves the heart about
#: 1-2 pixels from one heartbeat to the next at most).
JUMP_PX = 3.0
NEIGHBOUR_FRAMES = 2
#: Smallest gain of a frame's reference (frame ~ gain * reference + offset) for which a Gauss-Newton step is
#: taken (project choice: a frame that does not look like its reference gives no direction to move in).
MIN_GAIN = 0.2


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


def solve_3x3(a, b):
    """Solutions (n, 3) of the systems ``a`` (n, 3, 3) x = ``b`` (n, 3), one per frame, by Cramer's rule in plain
    numpy (no LAPACK: the same result on every machine); infinite determinants (zero solutions) where singular."""
    def determinant(m):
        return (m[:, 0, 0] * (m[:, 1, 1] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 1])
                - m[:, 0, 1] * (m[:, 1, 0] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 0])
                + m[:, 0, 2] * (m[:, 1, 0] * m[:, 2, 1] - m[:, 1, 1] * m[:, 2, 0]))
    whole = determinant(a)
    scale = np.abs(a[:, 0, 0] * a[:, 1, 1] * a[:, 2, 2])
    whole = np.where(np.abs(whole) > 1e-12 * scale + 1e-300, whole, np.inf)
    out = np.empty(b.shape)
    for column in range(3):
        replaced = a.copy()
        replaced[:, :, column] = b
        out[:, column] = determinant(replaced) / whole
    return out


def pose_gradients(region, images):
    """The change of each of ``images`` (n, rows, columns) inside the region per unit of a rigid pose (a turn about
    the heart's centre and a shift): per pixel of an arc at the region's RMS radius (``Region.radius_px``) of the
    turn, and per pixel along rows and columns; a tuple of three (n, p).  The turn in arc pixels keeps its steps
    and convergence on the shift's scale."""
    inside = region.weight > 0
    gradient_rows, gradient_columns = np.gradient(images, axis=(1, 2))
    g_r, g_c = gradient_rows[:, inside], gradient_columns[:, inside]
    u_r, u_c = region.about_centre[0][inside], region.about_centre[1][inside]
    return (g_c * u_r - g_r * u_c) / region.radius_px, g_r, g_c


def normal_matrices(gradients, weight=None):
    """The Gauss-Newton normal matrices (n, 3, 3) of the pose from ``pose_gradients`` (optionally weighted (p,))."""
    n = gradients[0].shape[0]
    out = np.empty((n, 3, 3))
    for i in range(3):
        for j in range(i, 3):
            product = gradients[i] * gradients[j]
            out[:, i, j] = out[:, j, i] = (product if weight is None else weight * product).sum(axis=1)
    return out


def gauss_newton(region, stack, references, shift, max_step):
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


def neighbour_median(shift):
    """Median shift of each frame's ``NEIGHBOUR_FRAMES`` neighbours on either side (the frame left out)."""
    n = shift.shape[0]
    out = np.empty_like(shift)
    for t in range(n):
        window = [u for u in range(max(t - NEIGHBOUR_FRAMES, 0), min(t + NEIGHBOUR_FRAMES + 1, n)) if u != t]
        out[t] = np.median(shift[window], axis=0)
    return out


def second_start(region, stack, references, shift, residual, max_step):
    """Frames far from their neighbours' shifts, fitted again from the neighbours' median; the better fit is kept.

    A frame whose contrast the references do not yet follow (a sudden change
    of contrast, e.g. after a missed trigger) can slide into a false
    minimum several pixels away; breathing does not move the heart that far
    between neighbouring frames.
    """
    median = neighbour_median(shift)
    far = np.flatnonzero(np.linalg.norm(shift - median, axis=1) > JUMP_PX)
    if far.size == 0:
        return shift, residual
    again, again_residual = gauss_newton(region, stack[far], references[far], median[far], max_step)
    better = again_residual < residual[far]
    shift, residual = shift.copy(), residual.copy()
    shift[far[better]] = again[better]
    residual[far[better]] = again_residual[better]
    return shift, residual

"""The batched fit's iteration: bounded Levenberg-Marquardt on the shape parameters of all curves at once.

``_levenberg_marquardt`` moves every curve's (tau0, ln k, delay) from its
start to the minimum of its cost, with the 3 x 3 linear algebra it needs
written out per curve in a fixed order.
"""

import numpy as np

from .batched_model import _SHAPE_LOWER, _SHAPE_SCALE, _SHAPE_UPPER, _evaluate
from .model import FERMI_LOWER_BOUNDS, FERMI_UPPER_BOUNDS

#: Stopping rules of the batched iteration, per curve, in scaled solver
#: coordinates (``_SHAPE_SCALE``).  A curve has converged when the undamped
#: Gauss-Newton step on its free parameters, the distance to the minimum of
#: its local model, is at most ``BATCHED_XTOL`` in every coordinate; when its
#: largest free gradient is at most ``BATCHED_GTOL`` of its cost (nothing
#: left to move, e.g. F = 0); or, where rounding ends the iteration first,
#: when the step taken is at most ``BATCHED_XTOL`` of the parameters or a
#: polishing step brings the minimum no closer (``_levenberg_marquardt``).
#: Project choice: the end point is then the minimum itself to ~1e-8 of the
#: scales, whichever start or path led there, so a pixel's MBF does not
#: depend on how it got there.  The rule it replaces (stop when the
#: Gauss-Newton step promises less than 1e-6 of the cost) stopped in flat
#: valleys short of the minimum, where the path happened to be: on the demo
#: phantom, changes of 1e-14 of the curves moved MBF by up to 1 % (with the
#: crawl towards k's bound, see ``_SHAPE_SCALE``) and by 2e-5 in pixels
#: with a long, flat valley.  Measured on the benchmark maps
#: (Testing/benchmarks/fermi_batched_speed.py), 1e-8 instead of 1e-10 leaves
#: the response to such changes the same and saves ~8 % of the time.
BATCHED_XTOL = 1e-8
BATCHED_GTOL = 1e-14

#: Smallest change of the cost, relative to it, that the iteration trusts
#: (project choice).  The cost, a sum of 20-60 squares, is rounded to a few
#: 1e-16 of itself, so a decrease predicted at 1e-12 of it is still measured
#: to ~1e-4 of the prediction, while at 1e-15 the measurement is noise.  Below
#: it the iteration judges its steps by gradients (``_levenberg_marquardt``).
_COST_RESOLUTION = 1e-12

#: Most polishing steps per curve (``_levenberg_marquardt``); a curve that
#: has taken them has converged: its cost is flat to rounding along the steps
#: left.  Project choice: polishing takes 1-2 steps in 95 % of the pixels of
#: the demo and benchmark maps and at most 9; only a curve whose minimum lies
#: at infinity along an exactly flat direction (e.g. a sharp roll-off after
#: the last frame it can affect) keeps taking ever shorter steps, and until
#: this limit such curves ran into ``BATCHED_MAX_EVALUATIONS`` and failed.
_MAX_POLISH_STEPS = 10

#: Most model evaluations per curve; a curve that has not met a stopping
#: rule by then is returned as not converged (NaN parameters).
BATCHED_MAX_EVALUATIONS = 200

#: Levenberg-Marquardt damping at the start, relative to the largest diagonal
#: element of the Gauss-Newton matrix (Nielsen's customary 1e-3).
_INITIAL_DAMPING = 1e-3


def _cofactors(a):
    """Cofactor matrices and determinants of many 3 x 3 matrices, (n, 3, 3) -> (n, 3, 3), (n,)."""
    cofactor = np.empty_like(a)
    for i in range(3):
        i1, i2 = (i + 1) % 3, (i + 2) % 3
        for j in range(3):
            j1, j2 = (j + 1) % 3, (j + 2) % 3
            cofactor[:, i, j] = a[:, i1, j1] * a[:, i2, j2] - a[:, i1, j2] * a[:, i2, j1]
    determinant = a[:, 0, 0] * cofactor[:, 0, 0] + a[:, 0, 1] * cofactor[:, 0, 1] + a[:, 0, 2] * cofactor[:, 0, 2]
    return cofactor, determinant


def _solve_3x3(matrices, vectors):
    """Solve many 3 x 3 systems by the adjugate: (n, 3, 3), (n, 3) -> (n, 3).

    Never raises: a singular or non-finite system gives a non-finite
    solution, which the iteration rejects like any failed trial.
    """
    cofactor, determinant = _cofactors(matrices)
    solution = (cofactor[:, 0] * vectors[:, :1] + cofactor[:, 1] * vectors[:, 1:2]) + cofactor[:, 2] * vectors[:, 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        return solution / determinant[:, None]


def _dot3(a, b):
    """Dot products of matching rows of (n, 3) arrays, summed in a fixed order."""
    return (a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]) + a[:, 2] * b[:, 2]


def _quadratic_form(matrices, vectors):
    """``v' A v`` for each row: (n, 3, 3), (n, 3) -> (n,), summed in a fixed order."""
    product = ((matrices[:, :, 0] * vectors[:, :1] + matrices[:, :, 1] * vectors[:, 1:2])
               + matrices[:, :, 2] * vectors[:, 2:])
    return _dot3(vectors, product)


def _positive_definite(matrices):
    """Whether each symmetric 3 x 3 matrix is positive definite (leading principal minors > 0)."""
    cofactor, determinant = _cofactors(matrices)
    return (matrices[:, 0, 0] > 0) & (cofactor[:, 2, 2] > 0) & (determinant > 0)


def _delay_cells(edges):
    """Breakpoints of the delay: its bounds and the lag-cell edges between them, s (sorted)."""
    lower, upper = _SHAPE_LOWER[2], _SHAPE_UPPER[2]
    return np.unique(np.r_[lower, edges[(edges > lower) & (edges < upper)], upper])


def _delay_step_box(delay, breakpoints, gradient, hessian, left_gradient, left_hessian):
    """The lag cell the delay may move in this step, and the derivatives of that side.

    A delay inside a cell moves within it.  A delay exactly on an edge moves
    into the cell above it unless the cost falls faster, or only, into the one
    below (``left_gradient``); where it falls into neither (a kink that is a
    minimum in the delay) the delay is held on the edge by the box.  Each step
    thus stays where the cost is smooth and stops exactly on an edge it
    reaches, so a minimum on a kink is found exactly, not approached by
    steps that jump across it until they are too small to count.

    Returns
    -------
    lower, upper : numpy.ndarray, shape (n,)
        Bounds of the delay for this step, s.
    gradient, hessian : numpy.ndarray, shapes (n, 3), (n, 3, 3)
        Of the side the delay moves into.
    """
    last = breakpoints.size - 1
    cell = np.searchsorted(breakpoints, delay, side="right") - 1
    on_edge = breakpoints[np.clip(cell, 0, last)] == delay
    right, left = gradient[:, 2], left_gradient[:, 2]
    up = (cell < last) & (right < 0)
    down = on_edge & (cell > 0) & (left > 0) & ~(up & (-right >= left))
    lower = breakpoints[np.clip(np.where(down, cell - 1, cell), 0, last)]
    upper = breakpoints[np.clip(np.where(down, cell, cell + 1), 0, last)]
    return (lower, upper, np.where(down[:, None], left_gradient, gradient),
            np.where(down[:, None, None], left_hessian, hessian))


def _local_model(theta, gradient, hessian, left_gradient, left_hessian, correction, breakpoints):
    """The box of this step and the quadratic model on its free parameters, per curve.

    The model's matrix is the Gauss-Newton matrix plus ``correction`` (see
    ``_levenberg_marquardt``), or the Gauss-Newton matrix alone where the sum
    is not positive definite on the free parameters.

    Returns
    -------
    lower, upper : numpy.ndarray, shape (n, 3)
        Bounds of the solver coordinates for this step (the delay within the
        lag cell it moves in, ``_delay_step_box``).
    gradient, hessian : numpy.ndarray, shapes (n, 3), (n, 3, 3)
        Of the side the delay moves into, with a held parameter's (one at a
        bound of the box whose gradient points outward) rows and columns zero.
    newton : numpy.ndarray, shape (n, 3)
        Undamped step to the minimum of the model on the free parameters,
        scaled units (non-finite where the model is singular).
    """
    n = theta.shape[0]
    delay_lower, delay_upper, g, h = _delay_step_box(theta[:, 2], breakpoints, gradient, hessian, left_gradient,
                                                     left_hessian)
    lower, upper = np.tile(_SHAPE_LOWER, (n, 1)), np.tile(_SHAPE_UPPER, (n, 1))
    lower[:, 2], upper[:, 2] = delay_lower, delay_upper
    held = ((theta <= lower) & (g > 0)) | ((theta >= upper) & (g < 0))
    g = np.where(held, 0.0, g)
    keep = (~held)[:, :, None] & (~held)[:, None, :]
    h = np.where(keep, h, 0.0)
    rows = np.flatnonzero(np.any(correction.reshape(n, 9) != 0, axis=1))
    if rows.size:
        corrected_h = np.where(keep[rows], h[rows] + correction[rows], 0.0)
        usable = _positive_definite(corrected_h + held[rows, :, None] * np.eye(3))
        h[rows[usable]] = corrected_h[usable]
    regularised = h + (1e-12 * np.max(np.abs(h).reshape(n, 9), axis=1) + 1e-300)[:, None, None] * np.eye(3)
    return lower, upper, g, h, _solve_3x3(regularised, -g)


def _secant_update(correction, rows, before, after, delay_lower, delay_upper, state_before, state_after):
    """Correct the curvature of the model along an accepted step to the one the gradients measured.

    The Gauss-Newton matrix leaves out the residual's own curvature; where
    the residual is large against the curvature of a valley of the cost, it
    overstates the curvature along the valley, and Gauss-Newton steps fall
    short by a fixed fraction each time (linear convergence, at rates up to
    0.9 on the demo phantom).  After each accepted step ``s`` the correction
    gains a rank-one term along ``s`` so that ``s' (H + correction) s`` equals
    ``s' (g_after - g_before)``, the curvature the gradients at both ends
    measured (a secant condition along the step, as quasi-Newton methods
    use), where that curvature is positive.  Gradients are taken on the side
    of the delay's step (``_delay_step_box``), so both ends see the same
    smooth piece of the cost.
    """
    if not rows.size:
        return
    step = (after - before) / _SHAPE_SCALE
    length = _dot3(step, step)
    # Both ends' derivatives on the side of the step's lag cell: from below
    # where the delay is on the cell's upper edge.
    cell = delay_upper > delay_lower
    before_gradient, _ = _sided(state_before, cell & (before[:, 2] == delay_upper))
    after_gradient, after_hessian = _sided(state_after, cell & (after[:, 2] == delay_upper))
    change = _dot3(step, after_gradient - before_gradient)
    current = _quadratic_form(after_hessian + correction[rows], step)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where((change > 0) & (length > 0), (change - current) / length ** 2, 0.0)
    weight = np.where(np.isfinite(weight), weight, 0.0)
    correction[rows] += weight[:, None, None] * step[:, :, None] * step[:, None, :]


def _sided(state, left):
    """Gradient and Gauss-Newton matrix of an evaluation (``_evaluate``), from below the delay's edge where ``left``."""
    _, gradient, hessian, _, left_gradient, left_hessian = state
    return np.where(left[:, None], left_gradient, gradient), np.where(left[:, None, None], left_hessian, hessian)


def _levenberg_marquardt(edges, operator, tissue, start, report):
    """Bounded Levenberg-Marquardt on the solver coordinates of all curves at once.

    Per-curve damping (Nielsen's update), a step on the free parameters only
    (a parameter at a bound whose gradient points outward is held), the trial
    point projected onto the box, and per-curve stopping rules
    (``BATCHED_XTOL``); converged curves leave the active set.  Every
    operation on a curve uses only that curve's values, in a fixed order, so
    its path is the same bits whatever the other curves.

    * **Delay kinks.**  A delay step shorter than a lag cell stays within the
      cell it starts in (``_delay_step_box``): the cost is smooth there, and a
      step that reaches an edge stops exactly on it, where a minimum on the
      kink is recognised and held.  Longer steps cross edges freely.
    * **Polishing.**  Once the undamped Gauss-Newton step promises less than
      ``_COST_RESOLUTION`` of the cost, a test on the decrease of the cost
      would accept or reject at random and leave the curve wherever that
      happened.  From there the iteration takes undamped steps and keeps one
      when the Gauss-Newton step from the new point is shorter, a test on
      gradients, which keep their precision; it stops when the step is
      within ``BATCHED_XTOL`` or brings the minimum no closer.
    * **Curvature correction.**  Where the Gauss-Newton model is known to be
      off, in polishing and in flat valleys (an accepted step lowered the
      cost by more than 1.5 times the model's promise), the model's matrix
      learns the curvature the gradients measured along the step
      (``_secant_update``).  Without it some pixels of the demo phantom
      needed hundreds of steps of slow linear convergence.

    Parameters
    ----------
    start : numpy.ndarray, shape (n, 3)
        Starting (tau0, ln k, delay) of each curve.

    Returns
    -------
    theta, flow, cost, converged
        Solver coordinates (n, 3), flow (1/s), cost and a converged flag per
        curve.
    """
    n = tissue.shape[0]
    theta = start.copy()
    # Distinct arrays (an evaluation may return the same array for both sides).
    state = [np.array(value) for value in _evaluate(edges, operator, theta, tissue)]
    cost, gradient, hessian, flow = state[:4]
    damping = _INITIAL_DAMPING * np.max(np.diagonal(hessian, axis1=1, axis2=2), axis=1)
    growth = np.full(n, 2.0)
    evaluations = np.ones(n, dtype=int)
    converged = np.zeros(n, dtype=bool)
    active = np.flatnonzero(np.isfinite(cost) & np.all(np.isfinite(gradient), axis=1))
    breakpoints = _delay_cells(edges)
    cell_width = edges[1] - edges[0]
    correction = np.zeros((n, 3, 3))
    polish_steps = np.zeros(n, dtype=int)

    def local_model(rows, at, values, rows_correction):
        return _local_model(at, values[1][rows], values[2][rows], values[4][rows], values[5][rows], rows_correction,
                            breakpoints)

    while active.size:
        th = theta[active]
        lower, upper, g, h, newton = local_model(active, th, state, correction[active])
        newton_length = np.max(np.abs(newton), axis=1)
        # Converged without a trial: no free parameter can lower the cost
        # (e.g. F = 0 makes the shape irrelevant), or the minimum of the
        # local model is within BATCHED_XTOL.
        stationary = (np.max(np.abs(g), axis=1) <= BATCHED_GTOL * cost[active]) | (cost[active] <= 0)
        stationary |= newton_length <= BATCHED_XTOL
        converged[active[stationary]] = True
        moving = ~stationary
        active, th, g, h, newton = active[moving], th[moving], g[moving], h[moving], newton[moving]
        lower, upper, newton_length = lower[moving], upper[moving], newton_length[moving]
        if not active.size:
            break
        # Damped normal equations on the free parameters (a held parameter
        # keeps only the damping on its diagonal and a zero right-hand side,
        # so its step is 0; the damping has a floor so that a zero
        # Gauss-Newton matrix still gives a solvable system), or the undamped
        # step where the cost can no longer judge it (polishing).
        polish = -0.5 * _dot3(g, newton) <= _COST_RESOLUTION * cost[active]
        system = h + np.where(polish, 0.0, np.maximum(damping[active], 1e-300))[:, None, None] * np.eye(3)
        step = np.where(polish[:, None], newton, _solve_3x3(system, -g))
        # A delay step of a lag cell or more crosses edges freely: the
        # minimum is far, and one cell per step would only slow the
        # iteration; shorter steps stay in their cell.
        far = np.abs(step[:, 2] * _SHAPE_SCALE[2]) >= cell_width
        lower[far, 2], upper[far, 2] = _SHAPE_LOWER[2], _SHAPE_UPPER[2]
        trial = np.clip(th + step * _SHAPE_SCALE, lower, upper)
        taken = (trial - th) / _SHAPE_SCALE
        predicted = -(_dot3(g, taken) + 0.5 * _quadratic_form(h, taken))
        trial = np.where(np.isfinite(trial), trial, th)
        trial_state = _evaluate(edges, operator, trial, tissue[active])
        evaluations[active] += 1
        finite = np.isfinite(trial_state[0]) & np.all(np.isfinite(trial_state[1]), axis=1)
        finite &= np.all(np.isfinite(taken), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(predicted > 0, (cost[active] - trial_state[0]) / predicted, -1.0)
        closer = np.zeros(active.size, dtype=bool)
        if np.any(polish):
            trial_newton = local_model(polish, trial[polish], trial_state, correction[active[polish]])[4]
            closer[polish] = np.max(np.abs(trial_newton), axis=1) < newton_length[polish]
        accept = finite & np.where(polish, closer, ratio > 1e-4)
        scaled_norm = np.sqrt(np.sum((th / _SHAPE_SCALE) ** 2, axis=1))
        small_step = np.sqrt(np.sum(taken ** 2, axis=1)) <= BATCHED_XTOL * (BATCHED_XTOL + scaled_norm)
        # The curvature along accepted steps where the Gauss-Newton model is
        # off, unless the step crossed lag-cell edges or the flow reached or
        # left a bound on the way (the cost's curvature jumps there).
        bounded_before = (flow[active] <= FERMI_LOWER_BOUNDS[0]) | (flow[active] >= FERMI_UPPER_BOUNDS[0])
        bounded_after = (trial_state[3] <= FERMI_LOWER_BOUNDS[0]) | (trial_state[3] >= FERMI_UPPER_BOUNDS[0])
        learn = accept & ~far & (polish | (ratio > 1.5)) & (bounded_before == bounded_after)
        _secant_update(correction, active[learn], th[learn], trial[learn], lower[learn, 2], upper[learn, 2],
                       [value[active[learn]] for value in state], [value[learn] for value in trial_state])
        # Accepted curves move and relax their damping (Nielsen); the others
        # stay and raise it ever faster.
        rows = active[accept]
        theta[rows] = trial[accept]
        for stored, value in zip(state, trial_state):
            stored[rows] = value[accept]
        relax = accept & ~polish
        damping[active[relax]] *= np.maximum(1.0 / 3.0, 1.0 - (2.0 * ratio[relax] - 1.0) ** 3)
        growth[rows] = 2.0
        rejected = active[~accept]
        damping[rejected] *= growth[rejected]
        growth[rejected] *= 2.0
        # A rejected polishing step means the minimum is reached to rounding.
        polish_steps[active[polish]] += 1
        done = (small_step & np.all(np.isfinite(taken), axis=1)) | (polish & ~accept)
        done |= polish_steps[active] >= _MAX_POLISH_STEPS
        converged[active[done]] = True
        failed = (evaluations[active] >= BATCHED_MAX_EVALUATIONS) | ~np.isfinite(damping[active])
        active = active[~done & ~failed]
        report(active.size)
    cost, flow = state[0], state[3]
    return theta, flow, cost, converged

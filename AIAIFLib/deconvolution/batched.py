"""The batched Fermi fit: every curve of one AIF at once (``fit_fermi_batched``).

Its parts: ``batched_model`` (unit Fermi curves with analytic derivatives,
F eliminated by variable projection), ``batched_start`` (the starting grid)
and ``batched_iteration`` (bounded Levenberg-Marquardt).  The method is
described in ``fit_fermi_batched``.
"""

import numpy as np

from ..errors import AIAIFInputError
from .batched_iteration import _levenberg_marquardt
from .batched_model import _lag_operator, _shape_parameters, _solver_coordinates, _unit_model
from .batched_start import _TIE_TOLERANCE, _starting_shapes
from .model import _validated_convolution
from .result import FermiFit, _at_bound
from .window import _window_convolution, _window_frames, first_pass_end_s

#: Lag cell width of the batched fit, s.  Project choice: the convolution's
#: error grows as ``step**2`` (3e-4 of the tissue peak at 0.2 s, 2e-5 at
#: 0.05 s) and the fit's time with the number of cells.  On the benchmark map
#: (Testing/benchmarks/fermi_batched_speed.py) 0.1 s instead of the
#: reference's 0.05 s changes MBF by 0.09 % (median; 95th percentile 0.25 %,
#: every pixel within 1 %) and halves the time.
BATCHED_STEP_S = 0.1

#: The batched fit also iterates from the best grid point of the other kind
#: of roll-off when its cost is within this fraction of the best grid
#: point's, and for every curve whose first iteration did not converge; the
#: lower cost wins.  Project choice: on a 40-frame ischaemic phantom with a
#: short first-pass window (1686 pixels), 0.02 gave 29 % of the pixels a
#: second start, rescued the 6 that had not converged and cut the fits that
#: stop in a poorer local minimum than per-pixel curve_fit from 6.2 % to 3.2 %
#: of pixels (0.05: 2.8 %); on the 60-frame benchmark maps it costs 4-10 %
#: more time.
BATCHED_SECOND_START = 0.02


def fit_fermi_batched(times_s, aif_mM, tissue_mM_2d, step_s=BATCHED_STEP_S, fit_end_s=None, progress=None):
    """Fit the Fermi model to many tissue curves of one AIF at once (fast solver).

    Minimises the same least-squares cost as ``fit_fermi_curves`` within the
    same bounds, vectorised over curves:

    * **Variable projection.**  The model is linear in F, so for given shape
      parameters (tau0, k, delay) the best F is ``<g, y> / <g, g>`` with
      ``g`` the model curve for F = 1, clipped to the flow bounds; the
      iteration runs on the three shape parameters only, with the exact
      Jacobian of the projected residual.
    * **Analytic Jacobian.**  The model is ``P @ D`` with ``P`` the closed-form
      antiderivative of the Fermi response at the lag-cell edges and ``D``
      one operator per AIF (``convolution_matrix`` by summation by parts);
      the derivatives of ``P`` by tau0, k and delay are closed-form too, so
      a curve's values and Jacobian cost one small matrix product.
    * **Global start.**  Each curve starts from the point of a grid over the
      shape bounds (``BATCHED_START_*``) with the lowest projected cost; this
      replaces the reference's several starting delays.  Where the best grid
      point with the other kind of roll-off (gradual or a distinct drop) is
      nearly as good, or the first iteration does not converge, the curve is
      fitted again from there and the lower cost wins
      (``BATCHED_SECOND_START``).
    * **Bounded Levenberg-Marquardt** on tau0, ln k and the delay
      (``_SHAPE_SCALE``), with per-curve damping (Nielsen's update) and
      stopping rules that end at the minimum itself (``BATCHED_XTOL``);
      bounds by projection: a parameter at a bound whose gradient points
      outward is held for that step, the trial point is clipped onto the box
      and the gain ratio uses the step actually taken.  Projection keeps
      solutions that lie on a bound (F = 0.2 /s with a saturated AIF, tau0 =
      0, delay 0) exact and flaggable, which a bounded reparametrisation would
      only approach.  The delay's kinks at the lag-cell edges, the rounding
      of the cost near the minimum and slow Gauss-Newton convergence in flat
      valleys are handled as ``_levenberg_marquardt`` describes.  Converged
      curves leave the active set, so late iterations only touch the few
      slow curves.

    **A curve's result depends on that curve alone**, not on which or how
    many curves are fitted with it, nor on their order or chunking.  Every
    product involving a curve is one BLAS call of a fixed shape for that
    curve (``_per_curve_products``); every sum runs over that curve's values
    in a fixed order; nothing computed over the batch (a maximum, a mean)
    decides anything for a curve; and the start grid's one large product only
    preselects candidates that are recomputed per curve
    (``_best_grid_points``).  On one machine the result is therefore the same
    bits whatever the batch.  BLAS kernels differ between CPUs and round
    differently, so across machines the arithmetic differs in its last bits;
    the fit's decisions are made robust to that: discrete choices resolve
    ties within ``_TIE_TOLERANCE`` in a fixed order, and the iteration ends
    at the minimum rather than where its path happened to be.  Changing every
    curve by 1e-14 of itself changed MBF by at most 1.4e-11 on the benchmark
    maps (``Testing/benchmarks/fermi_batched_speed.py``) and on the demo
    phantom (1808 pixels, a 24-frame window) by more than 1e-9 in 1-2
    pixels, at most by 1.1e-8; before these measures, by up to 1 %.

    The cost can have several local minima, mostly when a curve's shoulder
    or roll-off lies near or beyond the end of the window (low flow, short
    window): there the two solvers may stop in different minima.  On the
    benchmark maps 100 % of the sampled pixels agree with per-pixel
    ``curve_fit`` to 1 % in MBF, and the batched fit's cost is never higher.

    Parameters
    ----------
    times_s : array_like, shape (n_frames,)
        Frame times, s, strictly increasing (non-uniform spacing allowed).
    aif_mM : array_like, shape (n_frames,)
        Arterial input function, mM.
    tissue_mM_2d : array_like, shape (n_curves, n_frames)
        Tissue curves, mM.  Curves with a non-finite value, or all zero,
        inside the fit window are not fitted (see Returns).
    step_s : float, optional
        Lag cell width of the convolution, s (default ``BATCHED_STEP_S``).
    fit_end_s : float, optional
        Fit only the frames at or before this time, s.  None (default) uses
        ``first_pass_end_s(times_s, aif_mM)``; pass ``numpy.inf`` to fit the
        whole curves.
    progress : callable, optional
        Called as ``progress(fraction, message)`` with fraction 0-1 as the fit
        advances.

    Returns
    -------
    FermiFit
        Arrays of shape (n_curves,) and ``fitted_mM`` (n_curves, n_frames),
        the model at every frame.  ``nrmse`` is computed over the fit window;
        ``converged`` and ``at_bound`` mean what they mean for
        ``fit_fermi_curves``.  Curves that were not fitted (non-finite or
        all-zero in the window) or whose fit failed (no convergence within
        ``BATCHED_MAX_EVALUATIONS``, non-finite result) have NaN parameters,
        NaN ``nrmse`` and ``fitted_mM``, ``converged`` False and ``at_bound``
        False; they never raise.

    Raises
    ------
    AIAIFInputError
        For invalid frame times, AIF, step, fit window, or a tissue array of
        the wrong shape.
    """
    def report(fraction, message):
        if progress is not None:
            progress(float(fraction), message)

    times, aif, matrix, edges = _validated_convolution(times_s, aif_mM, step_s)
    tissue = np.asarray(tissue_mM_2d, dtype=float)
    if tissue.ndim != 2 or tissue.shape[1] != times.size:
        raise AIAIFInputError("The tissue curves must have shape (n_curves, n_frames) with {} frames like the "
                              "frame times, got shape {}; pass one row per curve.".format(times.size, tissue.shape))
    n_window = _window_frames(times, first_pass_end_s(times, aif) if fit_end_s is None else fit_end_s, aif)
    window_matrix, window_edges = _window_convolution(times, matrix, edges, n_window)
    operator = _lag_operator(window_matrix, float(step_s))
    window = tissue[:, :n_window]
    valid = np.all(np.isfinite(window), axis=1) & np.any(window != 0, axis=1)
    y = np.ascontiguousarray(window[valid])
    report(0.0, "Fermi fit: starting values")

    n_valid = y.shape[0]
    params = np.full((tissue.shape[0], 4), np.nan)
    nrmse = np.full(tissue.shape[0], np.nan)
    converged = np.zeros(tissue.shape[0], dtype=bool)
    if n_valid:
        def iteration_report(low, high, n_curves, stage):
            def callback(n_active):
                report(low + (high - low) * (1.0 - n_active / n_curves), "Fermi fit, {}: {} of {} curves done".format(
                    stage, n_curves - n_active, n_curves))
            return callback

        # A curve whose fit overflows or divides by zero fails on its own
        # (non-finite cost, rejected steps); it must not warn for the map.
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            first, second, second_cost_ratio, first_is_gradual = _starting_shapes(window_edges, operator, y)
            first, second = _solver_coordinates(first), _solver_coordinates(second)
            report(0.1, "Fermi fit: iterating")
            shape, flow, cost, ok = _levenberg_marquardt(window_edges, operator, y, first,
                                                         iteration_report(0.1, 0.8, n_valid, "first start"))
            again = np.flatnonzero((second_cost_ratio <= 1.0 + BATCHED_SECOND_START) | ~ok)
            if again.size:
                other = _levenberg_marquardt(window_edges, operator, y[again], second[again],
                                             iteration_report(0.8, 0.95, again.size, "second start"))
                # The lower cost wins; equal costs (both starts in the same
                # minimum, mostly) go to the start with the gradual roll-off,
                # whichever of the two was first.
                tie = np.abs(other[2] - cost[again]) <= _TIE_TOLERANCE * np.maximum(other[2], cost[again])
                lower = np.where(tie, ~first_is_gradual[again], other[2] < cost[again])
                better = other[3] & (~ok[again] | lower)
                rows = again[better]
                shape[rows], flow[rows], cost[rows] = other[0][better], other[1][better], other[2][better]
                ok[rows] = True
            curve_nrmse = np.sqrt(2.0 * cost / n_window) / np.sqrt(np.mean(y ** 2, axis=1))
        fitted_params = np.column_stack([flow, _shape_parameters(shape)])
        ok &= np.all(np.isfinite(fitted_params), axis=1) & np.isfinite(cost)
        rows = np.flatnonzero(valid)
        params[rows[ok]] = fitted_params[ok]
        converged[rows[ok]] = True
        nrmse[rows[ok]] = curve_nrmse[ok]
    report(0.95, "Fermi fit: model curves")
    fitted = np.full(tissue.shape, np.nan)
    if np.any(converged):
        full_operator = _lag_operator(matrix, float(step_s))
        unit, _ = _unit_model(edges, full_operator, params[converged, 1:], False)
        fitted[converged] = params[converged, :1] * unit
    at_bound = converged & _at_bound(params)
    report(1.0, "Fermi fit: done")
    return FermiFit(flow_per_s=params[:, 0], tau0_s=params[:, 1], k_per_s=params[:, 2], delay_s=params[:, 3],
                    nrmse=nrmse, converged=converged, at_bound=at_bound, fitted_mM=fitted)

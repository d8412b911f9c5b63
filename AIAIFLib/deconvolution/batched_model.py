"""The batched fit's model: unit Fermi curves at the frames, their derivatives, the flow projected out.

The model is linear in F, so the batched fit (``batched.fit_fermi_batched``)
iterates on the shape parameters only: ``_unit_model`` gives the tissue
curves for F = 1 and their analytic derivatives, from the closed-form
antiderivative of the response at the lag-cell edges
(``_unit_fermi_antiderivative``) and one operator per AIF (``_lag_operator``);
``_evaluate`` eliminates F (variable projection) and returns cost,
gradient and Gauss-Newton matrix.
"""

import numpy as np

from .model import FERMI_LOWER_BOUNDS, FERMI_PARAMETER_SCALE, FERMI_UPPER_BOUNDS

#: Curves evaluated together: keeps the working arrays (curves x cells)
#: within the CPU cache (project choice, measured on a 2-core CPU).  It sets
#: the speed only: no result depends on it (``_per_curve_products``).
BATCHED_CHUNK_CURVES = 256

#: The nonlinear parameters of the batched fit (F is eliminated) as its
#: solver moves them: tau0 (s), ln k (k in 1/s) and the delay (s); their
#: bounds and scales (steps and tolerances are measured in these units).
#: Project choice, the roll-off rate on a log scale: a Fermi roll-off much
#: sharper than the frame spacing (k of a few 1/s up to the bound 10 1/s)
#: changes the model by ~exp(-k d) at a frame d seconds from the drop, so in k
#: the cost is nearly flat there, and the iteration crawled towards the bound
#: for hundreds of steps, ending wherever it was when it stopped (on the demo
#: phantom 1.4-1.7 % of pixels reached the 200-evaluation limit, and 1e-14
#: changes of a curve moved their MBF by up to 1 %).  On a log scale the
#: same region is a few units wide: no pixel of the demo or benchmark maps
#: needs more than 64 evaluations.
_SHAPE_LOWER = np.array([FERMI_LOWER_BOUNDS[1], np.log(FERMI_LOWER_BOUNDS[2]), FERMI_LOWER_BOUNDS[3]])
_SHAPE_UPPER = np.array([FERMI_UPPER_BOUNDS[1], np.log(FERMI_UPPER_BOUNDS[2]), FERMI_UPPER_BOUNDS[3]])
_SHAPE_SCALE = np.array([FERMI_PARAMETER_SCALE[1], 1.0, FERMI_PARAMETER_SCALE[3]])


def _solver_coordinates(shape_params):
    """(tau0 s, k 1/s, delay s) -> (tau0, ln k, delay), rows of shape (n, 3)."""
    theta = np.array(shape_params, dtype=float)
    theta[:, 1] = np.log(theta[:, 1])
    return theta


def _shape_parameters(theta):
    """(tau0, ln k, delay) -> (tau0 s, k 1/s, delay s), k kept within its bounds."""
    shape = np.array(theta, dtype=float)
    shape[:, 1] = np.clip(np.exp(shape[:, 1]), FERMI_LOWER_BOUNDS[2], FERMI_UPPER_BOUNDS[2])
    return shape


def _lag_operator(matrix, step_s):
    """Operator from the response's antiderivative at the cell edges to the tissue curve.

    ``tissue = sum_j M[:, j] (P[j + 1] - P[j]) / step = sum_j D[:, j] P[j]``
    (summation by parts) with ``P`` the antiderivative at the edges; returns
    ``D.T``, shape (n_cells + 1, n_frames).
    """
    padded = np.zeros((matrix.shape[0], matrix.shape[1] + 2))
    padded[:, 1:-1] = matrix
    return np.ascontiguousarray(((padded[:, :-1] - padded[:, 1:]) / step_s).T)


def _unit_fermi_antiderivative(edges, tau0, k, delay, derivatives, out=None):
    """Antiderivative of the Fermi response with F = 1 at the lag-cell edges, and its derivatives.

    ``P(u) = A [v - (softplus(k (v - tau0)) - softplus(-k tau0)) / k]`` with
    ``v = max(u - delay, 0)`` and ``A = 1 + exp(-k tau0)`` (see
    ``fermi_residue_integral``).  With ``sigma`` the logistic function and
    ``x = k (v - tau0)``, its derivatives are::

        dP/dtau0  = A (sigma(x) - sigma(-k tau0)) - k exp(-k tau0) P / A
        dP/dk     = (A / k) [v - P / A - sigma(x) (v - tau0) - sigma(-k tau0) tau0]
                    - tau0 exp(-k tau0) P / A
        dP/ddelay = -A (1 - sigma(x))  where u > delay, else 0.

    Parameters
    ----------
    edges : numpy.ndarray, shape (n_edges,)
        Lag-cell edges, s.
    tau0, k, delay : numpy.ndarray, shape (n,)
        Shape parameters of each curve (s, 1/s, s).
    derivatives : bool
        Also return the three derivatives.
    out : numpy.ndarray, shape (4, n, n_edges), optional
        Where to write (reused between calls; the work is done in place to
        keep it in the CPU cache).

    Returns
    -------
    numpy.ndarray
        ``P`` (n, n_edges) or, with ``derivatives``, ``out`` holding ``P`` and
        its derivatives by tau0, k and delay.
    """
    tau0, k, delay = tau0[:, None], k[:, None], delay[:, None]
    inverse_k = 1.0 / k
    onset_decay = np.exp(-k * tau0)  # k tau0 >= 0
    scale = 1.0 + onset_decay
    onset_softplus = np.log1p(onset_decay)  # softplus(-k tau0)
    v = np.subtract(edges[None, :], delay)
    np.maximum(v, 0.0, out=v)
    w = v - tau0
    x = w * k
    decay = np.abs(x)
    np.negative(decay, out=decay)
    np.exp(decay, out=decay)  # exp(-|x|)
    change = np.maximum(x, 0.0)
    change += np.log1p(decay)  # softplus(x)
    change -= onset_softplus
    change *= inverse_k  # (softplus(x) - softplus(-k tau0)) / k
    inner = np.subtract(v, change)  # P / A
    if not derivatives:
        inner *= scale
        return inner
    if out is None:
        out = np.empty((4,) + inner.shape)
    np.multiply(inner, scale, out=out[0])
    # sigma(x) from exp(-|x|): sigma(-|x|) = e / (1 + e), and 1 minus it where x >= 0.
    sigma = decay + 1.0
    np.divide(decay, sigma, out=sigma)
    np.subtract(1.0, sigma, out=sigma, where=x >= 0.0)
    onset_sigma = onset_decay / scale  # sigma(-k tau0)
    d_tau0, d_k, d_delay = out[1], out[2], out[3]
    np.multiply(sigma, scale, out=d_tau0)
    d_tau0 -= scale * onset_sigma
    scratch = np.multiply(inner, k * onset_decay)
    d_tau0 -= scratch
    # dP/dk, with change = v - P / A.
    np.copyto(d_k, change)
    np.multiply(sigma, w, out=scratch)
    d_k -= scratch
    d_k -= onset_sigma * tau0
    d_k *= scale * inverse_k
    np.multiply(inner, tau0 * onset_decay, out=scratch)
    d_k -= scratch
    # dP/ddelay, 0 before the onset (where v = 0).
    np.subtract(sigma, 1.0, out=d_delay)
    d_delay *= scale
    d_delay[v <= 0.0] = 0.0
    return out


def _per_curve_products(values, operator, out):
    """``out[i] = values[i] @ operator`` for every curve ``i``: one BLAS call of a fixed shape per curve.

    Parameters
    ----------
    values : numpy.ndarray, shape (n, m, n_edges)
        Rows of each curve (any strides with a unit last stride).
    operator : numpy.ndarray, shape (n_edges, n_frames)
    out : numpy.ndarray, shape (n, m, n_frames)

    Notes
    -----
    One product for all curves, ``values.reshape(-1, n_edges) @ operator``,
    takes half the time (the products are about a third of the fit's time),
    but OpenBLAS rounds a row differently depending on where it falls in the
    blocks of its kernels (row position, remainder blocks, the small-matrix
    kernel chosen by size), so a curve's model would change in its last bits
    with the other curves of the batch, and a fit that takes a discrete
    decision on it (accept a step, stop, choose a start) could take another
    path: one pixel of the demo phantom moved by 1 % that way.  A stacked
    ``numpy.matmul`` makes one call per curve with the same shape, so a
    curve's products are the same bits whatever the batch, its size, its
    order or the chunking (on one machine; another CPU's kernel may round
    differently, which the fit's decisions are made robust to).
    """
    return np.matmul(values, operator, out=out)


def _unit_model(edges, operator, shape_params, derivatives, chunk=BATCHED_CHUNK_CURVES):
    """Tissue curves for F = 1 (n, n_frames) and, with ``derivatives``, their derivatives (3, n, n_frames).

    ``shape_params`` (n, 3) holds tau0 (s), k (1/s) and the delay (s).  The
    curves are worked on ``chunk`` at a time to keep the arrays in the CPU
    cache; every value of a curve is the same whatever the chunk and the other
    curves (``_per_curve_products``).
    """
    n = shape_params.shape[0]
    rows = 4 if derivatives else 1
    result = np.empty((n, rows, operator.shape[1]))
    work = np.empty((4, min(chunk, n), edges.size)) if derivatives else None
    for start in range(0, n, chunk):
        block = slice(start, min(start + chunk, n))
        tau0, k, delay = shape_params[block].T
        if derivatives:
            values = work[:, :block.stop - block.start]
            _unit_fermi_antiderivative(edges, tau0, k, delay, True, values)
            values = values.transpose(1, 0, 2)  # each curve's four rows: one matrix per curve
        else:
            values = _unit_fermi_antiderivative(edges, tau0, k, delay, False)[:, None, :]
        _per_curve_products(values, operator, result[block])
    # Contiguous rows for the sums over frames that follow.
    curves = np.ascontiguousarray(result[:, 0])
    return curves, (np.ascontiguousarray(result[:, 1:].transpose(1, 0, 2)) if derivatives else None)


def _projected_flow(curves, tissue):
    """Least-squares flow for each unit curve, clipped to its bounds; also the unclipped mask."""
    energy = _rowwise_dot(curves, curves)
    overlap = _rowwise_dot(curves, tissue)
    with np.errstate(divide="ignore", invalid="ignore"):
        free = np.where(energy > 0, overlap / energy, 0.0)
    flow = np.clip(free, FERMI_LOWER_BOUNDS[0], FERMI_UPPER_BOUNDS[0])
    return flow, energy, (free > FERMI_LOWER_BOUNDS[0]) & (free < FERMI_UPPER_BOUNDS[0]) & (energy > 0)


def _rowwise_dot(a, b):
    """Dot product of matching rows, (n, m) x (n, m) -> (n,)."""
    return np.einsum("ij,ij->i", a, b)


def _evaluate(edges, operator, theta, tissue):
    """Cost, gradient and Gauss-Newton matrix in scaled solver coordinates, and the flow (variable projection).

    With the flow eliminated, ``r(theta) = y - F*(theta) g(theta)`` with
    ``F* = <g, y> / <g, g>`` (clipped to its bounds).  Its exact Jacobian is
    ``-F* dg - g dF*`` where F* is free, ``-F* dg`` where it is clipped.

    The model has a kink in the delay at every lag-cell edge (a cell mean of
    the response starts to grow as the onset enters the cell).  A delay
    exactly on an edge gets the derivatives of the side above it (the edge's
    cell mean does not change when the delay grows); ``left_gradient`` and
    ``left_hessian`` are those of the side below, which differ only there:
    the unit curve's derivative by the delay gains ``-operator[edge]``.

    Returns
    -------
    cost, gradient, hessian, flow, left_gradient, left_hessian
        Shapes (n,), (n, 3), (n, 3, 3), (n,), (n, 3), (n, 3, 3).
    """
    shape = _shape_parameters(theta)
    curves, dcurves = _unit_model(edges, operator, shape, True)
    # Scale of each solver coordinate per curve; d/d(ln k) = k d/dk.
    scale = np.tile(_SHAPE_SCALE, (theta.shape[0], 1))
    scale[:, 1] *= shape[:, 1]
    flow, energy, free = _projected_flow(curves, tissue)
    residual = tissue - flow[:, None] * curves
    cost = 0.5 * _rowwise_dot(residual, residual)
    safe_energy = np.where(free, energy, 1.0)

    def flow_derivative(rows, dcurve):
        return np.where(free[rows], (_rowwise_dot(dcurve, tissue[rows])
                                     - 2.0 * flow[rows] * _rowwise_dot(dcurve, curves[rows])) / safe_energy[rows], 0.0)

    everything = slice(None)
    jacobian = np.empty((3,) + curves.shape)
    for p in range(3):
        np.multiply(dcurves[p], (-flow * scale[:, p])[:, None], out=jacobian[p])
        jacobian[p] -= curves * (flow_derivative(everything, dcurves[p]) * scale[:, p])[:, None]
    gradient = np.stack([_rowwise_dot(jacobian[p], residual) for p in range(3)], axis=1)
    hessian = np.empty((tissue.shape[0], 3, 3))
    for p in range(3):
        for q in range(p, 3):
            hessian[:, p, q] = hessian[:, q, p] = _rowwise_dot(jacobian[p], jacobian[q])
    left_gradient, left_hessian = gradient, hessian
    edge = np.minimum(np.searchsorted(edges, shape[:, 2]), edges.size - 1)
    rows = np.flatnonzero((edge > 0) & (edges[edge] == shape[:, 2]))
    if rows.size:
        left_gradient, left_hessian = gradient.copy(), hessian.copy()
        kink = operator[edge[rows]]  # minus the change of dg/ddelay from above to below the edge
        left = jacobian[2, rows] + _SHAPE_SCALE[2] * (flow[rows, None] * kink
                                                      + curves[rows] * flow_derivative(rows, kink)[:, None])
        left_gradient[rows, 2] = _rowwise_dot(left, residual[rows])
        for q in range(2):
            left_hessian[rows, 2, q] = left_hessian[rows, q, 2] = _rowwise_dot(left, jacobian[q, rows])
        left_hessian[rows, 2, 2] = _rowwise_dot(left, left)
    return cost, gradient, hessian, flow, left_gradient, left_hessian

"""Starting points of the batched fit: the best points of a grid over the shape bounds.

Each curve starts from the grid point with the lowest cost (flow
eliminated), and may start again from the best point with the other kind
of roll-off (``_starting_shapes``); the choice is the same whatever the
batch (``_best_grid_points``).
"""

import numpy as np

from .batched_model import BATCHED_CHUNK_CURVES, _rowwise_dot, _unit_model
from .model import FERMI_LOWER_BOUNDS, FERMI_UPPER_BOUNDS

#: Starting grid of the batched fit in (tau0 s, k 1/s, delay s), spanning the
#: bounds: every curve starts from the grid point with the lowest cost (flow
#: eliminated), which also plays the part of the reference's several starting
#: delays.  Project choice: tau0 from its lower bound 0 in steps growing with
#: tau0, k geometrically (ratio ~1.6) over its bounds, the delay every 0.5 s
#: (about a frame spacing at stress heart rates) over its bounds.  A grid half
#: as dense in tau0 and k was 15 % faster but left curves whose shoulder
#: outlasts the fit window in poorer local minima
#: (Testing/test_deconvolution.py, batched versus reference).
BATCHED_START_TAU0_S = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 18.0)
BATCHED_START_K_PER_S = (0.01, 0.025, 0.05, 0.1, 0.16, 0.25, 0.4, 0.63, 1.0, 1.6, 2.5, 4.0, 6.3, 10.0)
BATCHED_START_DELAY_S = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)

#: Grid points whose Fermi roll-off begins more than this many 1/k after the
#: last lag the data see are left out of the starting grid (project choice):
#: their response is flat to within exp(-3) = 5 % over the fit window, so
#: the cost has no slope in tau0 and k there and the iteration could not move
#: them; a grid point with its roll-off inside the window reaches the same
#: flat solutions if they are the best.
_FLAT_START_ROLL_OFFS = 3.0

#: A Fermi roll-off counts as gradual when its 10-90 % fall, 2 ln(9) / k =
#: 4.4 / k, is longer than the lags the data see; otherwise it is a distinct
#: drop inside the window.  With a short window the cost often has a local
#: minimum of each kind (a slow decline, or a plateau that drops), so the
#: batched fit starts from the best grid point of each kind where both are
#: plausible (``BATCHED_SECOND_START``).
_GRADUAL_ROLL_OFF = 2.0 * np.log(9.0)

#: Relative tolerance of the batched fit's discrete choices (project choice).
#: Grid points whose projection on a curve is within this fraction of the
#: curve's norm of the largest count as tied, and so do the two starts' final
#: costs within this fraction of each other; a tie goes to a fixed order (the
#: first grid point; the start with the gradual roll-off), never to the
#: rounding.  Rounding moves these values by ~1e-15 of them, so only a value
#: that falls within ~1e-15 of a tie's edge can flip a choice, where a plain
#: comparison flips on every exact tie (e.g. both starts reaching the same
#: minimum); yet 1e-9 of the cost is far below anything the fit resolves.
_TIE_TOLERANCE = 1e-9

#: Margin of the start grid's preselection, as a fraction of the curve's
#: norm: the grid points whose BLAS product with a curve is within it of the
#: largest are recomputed from that curve and grid point alone, and the choice
#: is made on these.  BLAS rounds a product by ~1e-15 of the norm depending
#: on the batch, far below this margin, so every grid point that can win or
#: tie is always among the recomputed ones, whatever the batch.
_PRESELECT_MARGIN = 1e-6

#: Most multiply-adds per matrix product of the start grid's preselection.
#: Project choice: products this small run from the CPU cache, and OpenBLAS
#: runs them on one thread; on a 2-core CPU shared with other work, the same
#: products in blocks large enough for OpenBLAS to use two threads were
#: measured 2-20 times slower (thread hand-over).
_PRODUCT_SIZE = 2 ** 19


def _blocked_matmul(a, b, out):
    """``out[:] = a @ b`` in row blocks of at most ``_PRODUCT_SIZE`` multiply-adds."""
    rows = max(1, _PRODUCT_SIZE // max(a.shape[1] * b.shape[1], 1))
    for row in range(0, a.shape[0], rows):
        np.matmul(a[row:row + rows], b, out=out[row:row + rows])
    return out


def _best_grid_points(atoms, tissue, norms):
    """Per curve, the first atom whose projection is within ``_TIE_TOLERANCE`` of the largest.

    Parameters
    ----------
    atoms : numpy.ndarray, shape (n_atoms, n_frames)
        Unit-norm model curves of the grid points.
    tissue : numpy.ndarray, shape (n, n_frames)
    norms : numpy.ndarray, shape (n,)
        Norms of the tissue curves.

    Returns
    -------
    index : numpy.ndarray of int, shape (n,)
    projection : numpy.ndarray, shape (n,)
        ``<tissue, atoms[index]>``, computed per curve in a fixed order (NaN for
        a curve whose products are not finite; its fit fails later).

    Notes
    -----
    All projections come from one BLAS product per chunk of curves (the
    grid's hundreds of points make a product per curve three times slower);
    its rounding depends on the batch, so it only preselects the candidates
    within ``_PRESELECT_MARGIN`` of the largest, which are then recomputed
    with ``_rowwise_dot`` from the curve and the atom alone.
    """
    n = tissue.shape[0]
    index = np.zeros(n, dtype=int)
    projection = np.full(n, np.nan)
    atoms_t = np.ascontiguousarray(atoms.T)
    products = np.empty((min(BATCHED_CHUNK_CURVES, n), atoms.shape[0]))
    for start in range(0, n, BATCHED_CHUNK_CURVES):
        block = slice(start, min(start + BATCHED_CHUNK_CURVES, n))
        product = _blocked_matmul(tissue[block], atoms_t, products[:block.stop - block.start])
        top = np.max(product, axis=1)
        finite = np.isfinite(top) & np.isfinite(norms[block])
        threshold = np.where(finite, top - _PRESELECT_MARGIN * norms[block], np.inf)
        rows, columns = np.divmod(np.flatnonzero(product >= threshold[:, None]), atoms.shape[0])
        if not rows.size:
            continue
        exact = _rowwise_dot(tissue[block][rows], atoms[columns])
        # Candidates come row by row, in grid order within a row.
        new_row = np.r_[True, rows[1:] != rows[:-1]]
        row_start = np.flatnonzero(new_row)
        best = np.maximum.reduceat(exact, row_start)[np.cumsum(new_row) - 1]
        tied = exact >= best - _TIE_TOLERANCE * norms[block][rows]
        first_tied = np.minimum.reduceat(np.where(tied, np.arange(rows.size), rows.size), row_start)
        index[start + rows[first_tied]] = columns[first_tied]
        projection[start + rows[first_tied]] = exact[first_tied]
    return index, projection


def _starting_shapes(edges, operator, tissue):
    """Starting shape parameters from a grid: the best of each kind of roll-off.

    Returns
    -------
    first, second : numpy.ndarray, shape (n, 3)
        The grid point whose best non-negative flow leaves the lowest cost,
        and the best grid point of the other kind of roll-off
        (``_GRADUAL_ROLL_OFF``), as (tau0 s, k 1/s, delay s).
    second_cost_ratio : numpy.ndarray, shape (n,)
        Cost at ``second`` over cost at ``first`` (inf without a second kind).
    first_is_gradual : numpy.ndarray of bool, shape (n,)
        ``first`` has the gradual roll-off.

    Every value of a curve is the same whatever the batch
    (``_best_grid_points``); within a kind, ties go to the first grid point.
    """
    grid = np.stack(np.meshgrid(BATCHED_START_TAU0_S, BATCHED_START_K_PER_S, BATCHED_START_DELAY_S,
                                indexing="ij"), axis=-1).reshape(-1, 3)
    grid = np.clip(grid, FERMI_LOWER_BOUNDS[1:], FERMI_UPPER_BOUNDS[1:])
    # Longest lag the data see: the last edge whose row of the operator is not
    # negligible (the AIF is ~0 before its arrival).
    weight = np.max(np.abs(operator), axis=1)
    last_lag = edges[np.flatnonzero(weight > 1e-3 * np.max(weight))[-1]]
    tau0, k, delay = grid.T
    grid = grid[k * (tau0 + delay - last_lag) <= _FLAT_START_ROLL_OFFS]
    atoms, _ = _unit_model(edges, operator, grid, False)
    norms = np.sqrt(_rowwise_dot(atoms, atoms))
    atoms = atoms[norms > 0] / norms[norms > 0, None]
    grid = grid[norms > 0]
    # Cost after the best flow >= 0 is |y|^2 - max(<y, g>, 0)^2 / |g|^2: the
    # largest projection wins.
    energy = _rowwise_dot(tissue, tissue)
    gradual = grid[:, 1] * last_lag < _GRADUAL_ROLL_OFF
    best, costs = [], []
    for kind in (gradual, ~gradual):
        if not np.any(kind):
            best.append(grid[np.zeros(tissue.shape[0], dtype=int)])
            costs.append(np.full(tissue.shape[0], np.inf))
            continue
        index, projection = _best_grid_points(np.ascontiguousarray(atoms[kind]), tissue, np.sqrt(energy))
        best.append(grid[kind][index])
        costs.append(energy - np.maximum(projection, 0.0) ** 2)
    first_is_gradual = costs[0] <= costs[1]
    first = np.where(first_is_gradual[:, None], best[0], best[1])
    second = np.where(first_is_gradual[:, None], best[1], best[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.maximum(costs[0], costs[1]) / np.minimum(costs[0], costs[1])
    return first, second, np.where(np.isnan(ratio), 1.0, ratio), first_is_gradual

"""The Fermi model and its convolution with the AIF on non-uniform frame times [JeroschHerold1998].

Model
-----
The tissue concentration is the arterial input function (AIF) convolved with
the tissue impulse response ``R``::

    C_tissue(t) = integral_{t0}^{t} C_aif(s) R(t - s) ds,

with ``t0`` the first frame time (no contrast before the first frame).  ``R``
is the Fermi function of Jerosch-Herold et al. (Med Phys 1998;25:73-84),
``F / (1 + exp((t - tau0 - tau_d) k))`` for ``t >= tau_d`` and 0 before, here
**normalised so that its value at onset is exactly F** (see
``fermi_residue``).  MBF is the impulse response at onset:
``MBF [mL/min/g] = 60 F / rho`` with the tissue density from
``constants.TISSUE_DENSITY_G_PER_ML``.

Discretisation on non-uniform frame times
-----------------------------------------
The AIF is known only at the (non-uniform) frame times; it is taken as the
piecewise-linear interpolant of its samples, 0 before the first frame.  The
lag axis ``u = t - s`` is cut into uniform cells of ``INTEGRATION_STEP_S``
(``lag_cell_edges``); the response enters as its **mean over each cell**
(``fermi_cell_means``, exact from the closed-form integral of the Fermi
function) and the AIF as its **exact integral over each cell**
(``convolution_matrix``).  Hence

* the convolution is exact whenever the response is constant on each cell and
  second order in the cell width otherwise (error of the order of
  ``step**2 * |C_aif'| |R'|`` per unit time);
* the delay ``tau_d`` sits inside the residue and moves its onset
  continuously: a cell mean is an integral, so the model is a continuous
  function of ``tau_d`` even where ``tau_d`` crosses a cell edge, and the
  least-squares cost has no steps (its slope in ``tau_d`` does jump there,
  so a local solver may stop with the delay on a cell edge);
* one matrix per AIF serves every pixel: tissue curves of many pixels are
  ``cell_means @ matrix.T``, which is what a batched solver needs.
"""

import numpy as np
from scipy import special

from .. import constants as K
from ..errors import AIAIFInputError

# ---------------------------------------------------------------------------
# Constants of the method (project choices)
# ---------------------------------------------------------------------------

#: Width of the lag cells on which the response is integrated, s.  Project
#: choice: against a dense (0.01 s) convolution of the same piecewise-linear
#: AIF the error is ~2e-5 of the tissue peak at 0.05 s (3e-4 at 0.2 s; see
#: Testing/test_deconvolution.py), far below the error of sampling the AIF once
#: per heartbeat, at ~20 cells per second of acquisition.
INTEGRATION_STEP_S = 0.05

#: Longest acquisition accepted, s.  A longer span almost always means frame
#: times in milliseconds; it also bounds the size of the convolution matrix.
MAX_ACQUISITION_SPAN_S = 600.0

#: Fewest frames a curve must have.
MIN_FRAMES = 3

#: Order of the Fermi parameters in parameter vectors and bounds.
FERMI_PARAMETERS = ("flow_per_s", "tau0_s", "k_per_s", "delay_s")

#: Lower bounds of the Fermi parameters, in ``FERMI_PARAMETERS`` order:
#: F >= 0 1/s; tau0 >= 0 s (shoulder of the Fermi function); k >= 0.01 1/s
#: (roll-off rate; slower is indistinguishable from a plateau over a minute);
#: delay >= 0 s (the tissue cannot enhance before the LV blood pool).
FERMI_LOWER_BOUNDS = (0.0, 0.0, 0.01, 0.0)

#: Upper bounds of the Fermi parameters, in ``FERMI_PARAMETERS`` order:
#: F <= 0.2 1/s (60 * 0.2 / 1.05 = 11.4 mL/min/g, well above stress MBF);
#: tau0 <= 20 s; k <= 10 1/s (a roll-off within a tenth of a second, finer
#: than any frame spacing); delay <= 5 s (several heartbeats).
FERMI_UPPER_BOUNDS = (0.2, 20.0, 10.0, 5.0)

#: Typical magnitude of each parameter in ``FERMI_PARAMETERS`` order, the
#: ``x_scale`` of the solvers (steps and tolerances are measured in these units).
FERMI_PARAMETER_SCALE = (0.02, 2.0, 0.5, 1.0)


# ---------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------

def flow_to_mbf(flow_per_s):
    """Convert flow per volume of tissue (1/s) to MBF in mL/min/g.

    ``MBF = 60 * F / rho`` with ``rho = constants.TISSUE_DENSITY_G_PER_ML``.

    Parameters
    ----------
    flow_per_s : array_like
        F, mL of blood per s per mL of tissue.

    Returns
    -------
    numpy.ndarray or float
        MBF, mL/min/g.
    """
    return 60.0 * np.asarray(flow_per_s, dtype=float) / K.TISSUE_DENSITY_G_PER_ML


# ---------------------------------------------------------------------------
# Fermi impulse response
# ---------------------------------------------------------------------------

def _fermi_terms(flow_per_s, tau0_s, k_per_s):
    """Broadcast parameters and the onset normalisation ``1 + exp(-k tau0)``."""
    flow = np.asarray(flow_per_s, dtype=float)
    tau0 = np.asarray(tau0_s, dtype=float)
    k = np.asarray(k_per_s, dtype=float)
    return flow * (1.0 + np.exp(-k * tau0)), tau0, k


def fermi_residue(t_s, flow_per_s, tau0_s, k_per_s, delay_s):
    """Fermi impulse response, normalised to F at its onset.

    Jerosch-Herold et al. (1998) write ``R(t) = F / (1 + exp((t - tau0 - tau_d) k))``
    for ``t >= tau_d``, 0 before; its value at onset is
    ``F / (1 + exp(-k tau0))``, which is below F unless ``k tau0 >> 1``.
    Because MBF is the impulse response at onset, this implementation uses::

        R(t) = F (1 + exp(-k tau0)) / (1 + exp((t - tau0 - tau_d) k)),  t >= tau_d,

    so that ``R(tau_d) = F`` exactly and the fitted F *is* the flow.  The shape
    is the same Fermi function; only the meaning of the scale differs.

    Parameters
    ----------
    t_s : array_like
        Time after the impulse, s.
    flow_per_s, tau0_s, k_per_s, delay_s : array_like
        F (1/s), shoulder width tau0 (s), roll-off rate k (1/s) and onset
        delay tau_d (s).  All arguments broadcast against each other.

    Returns
    -------
    numpy.ndarray
        R(t), 1/s.
    """
    scale, tau0, k = _fermi_terms(flow_per_s, tau0_s, k_per_s)
    since_onset = np.asarray(t_s, dtype=float) - np.asarray(delay_s, dtype=float)
    value = scale * special.expit(-k * (since_onset - tau0))
    return np.where(since_onset >= 0.0, value, 0.0)


def fermi_residue_integral(t_s, flow_per_s, tau0_s, k_per_s, delay_s):
    """Integral of ``fermi_residue`` from 0 to ``t_s`` (closed form).

    With ``v = max(t - tau_d, 0)`` and ``softplus(x) = log(1 + exp(x))``::

        integral = F (1 + exp(-k tau0)) [v - (softplus(k (v - tau0)) - softplus(-k tau0)) / k].

    Arguments as for ``fermi_residue``; returns a dimensionless array (1/s * s).
    """
    scale, tau0, k = _fermi_terms(flow_per_s, tau0_s, k_per_s)
    v = np.maximum(np.asarray(t_s, dtype=float) - np.asarray(delay_s, dtype=float), 0.0)
    softplus_change = np.logaddexp(0.0, k * (v - tau0)) - np.logaddexp(0.0, -k * tau0)
    return scale * (v - softplus_change / k)


def fermi_cell_means(edges_s, flow_per_s, tau0_s, k_per_s, delay_s):
    """Mean of the Fermi response over each lag cell, for ``convolution_matrix``.

    Parameters
    ----------
    edges_s : numpy.ndarray, shape (n_cells + 1,)
        Cell edges from ``lag_cell_edges``.
    flow_per_s, tau0_s, k_per_s, delay_s : array_like, shape (...)
        Fermi parameters (see ``fermi_residue``); a trailing axis is added so
        that arrays of parameters give one row of cell means each.

    Returns
    -------
    numpy.ndarray, shape (..., n_cells)
        Cell means of R, 1/s; continuous in every parameter, including the
        delay.
    """
    params = [np.asarray(p, dtype=float)[..., None] for p in (flow_per_s, tau0_s, k_per_s, delay_s)]
    integral = fermi_residue_integral(edges_s, *params)
    return np.diff(integral, axis=-1) / np.diff(edges_s)


# ---------------------------------------------------------------------------
# Convolution on the frame times
# ---------------------------------------------------------------------------

def _validate_step(step_s):
    try:
        step = float(step_s)
    except (TypeError, ValueError):
        step = np.nan
    if not (np.isfinite(step) and step > 0):
        raise AIAIFInputError("The integration step must be a positive number of seconds, got {!r}; "
                              "pass e.g. {} s.".format(step_s, INTEGRATION_STEP_S))


def _validate_times(times_s):
    times = np.asarray(times_s, dtype=float)
    if times.ndim != 1 or times.size < MIN_FRAMES:
        raise AIAIFInputError("Frame times must be a 1-D array of at least {} values, got shape {}; "
                              "pass one time per frame.".format(MIN_FRAMES, times.shape))
    if not np.all(np.isfinite(times)):
        raise AIAIFInputError("Frame times contain NaN or infinite values; pass finite times in seconds.")
    if np.any(np.diff(times) <= 0):
        raise AIAIFInputError("Frame times must be strictly increasing; sort the frames and drop "
                              "duplicated time points.")
    span = times[-1] - times[0]
    if span > MAX_ACQUISITION_SPAN_S:
        raise AIAIFInputError("Frame times span {:.0f} s, more than {:.0f} s; give the times in seconds, "
                              "not milliseconds.".format(span, MAX_ACQUISITION_SPAN_S))
    return times


def _validate_curves(name, values, n_frames, ndim):
    curves = np.asarray(values, dtype=float)
    if curves.ndim != ndim or curves.shape[-1] != n_frames:
        raise AIAIFInputError("The {} must have shape {} with {} frames like the frame times, got shape {}; "
                              "pass one value per frame.".format(
                                  name, "(n_frames,)" if ndim == 1 else "(n_curves, n_frames)",
                                  n_frames, curves.shape))
    if not np.all(np.isfinite(curves)):
        raise AIAIFInputError("The {} contains NaN or infinite values; replace or mask them before "
                              "fitting.".format(name))
    return curves


def _validate_aif(times_s, aif_mM):
    times = _validate_times(times_s)
    aif = _validate_curves("AIF", aif_mM, times.size, 1)
    if not np.any(aif != 0):
        raise AIAIFInputError("The AIF is zero at every frame; pass the arterial concentration curve in mM.")
    return times, aif


def _cell_edges(times, step_s):
    n_cells = max(int(np.ceil((times[-1] - times[0]) / step_s - 1e-9)), 1)
    return step_s * np.arange(n_cells + 1)


def lag_cell_edges(times_s, step_s=INTEGRATION_STEP_S):
    """Edges of the uniform lag cells covering 0 .. ``times_s[-1] - times_s[0]``.

    Returns
    -------
    numpy.ndarray, shape (n_cells + 1,)
        ``0, step, 2 step, ...``, s; the last edge is at or beyond the span.
    """
    _validate_step(step_s)
    return _cell_edges(_validate_times(times_s), step_s)


def convolution_matrix(times_s, aif_mM, step_s=INTEGRATION_STEP_S):
    """Matrix mapping lag-cell means of a response to tissue concentration at the frames.

    ``C_tissue[i] = sum_j M[i, j] * r[j]`` with ``r[j]`` the mean of the
    response over lag cell ``j`` (``lag_cell_edges``) and
    ``M[i, j] = integral over cell j of C_aif(t_i - u) du``, computed exactly
    for the piecewise-linear AIF (0 before the first frame).  The matrix is
    lower-triangular in the sense that frame ``i`` only sees lags up to
    ``t_i - t_0``; the frames may be spaced non-uniformly.

    Accuracy: exact for a response that is constant on each cell; otherwise
    the error per cell is ``integral (C_aif - mean)(R - mean)``, second order
    in ``step_s``.  For a gamma-variate AIF on frames 0.5-1.1 s apart and an
    exponential response, the maximum error against np.convolve on a 0.01 s
    grid of the same linearly interpolated AIF is 2e-5 of the tissue peak
    (0.05 s step), and 1e-5 for the Fermi response with a 0.7 s delay.  The
    dominant error of a real curve is the linear interpolation of the AIF
    between frames: 0.7 % of the peak against the continuous gamma-variate in
    the same test.

    Parameters
    ----------
    times_s : array_like, shape (n_frames,)
        Frame times, s, strictly increasing.
    aif_mM : array_like, shape (n_frames,)
        Arterial concentration at the frame times, mM.
    step_s : float, optional
        Lag cell width, s.

    Returns
    -------
    numpy.ndarray, shape (n_frames, n_cells)
        mM * s.
    """
    return _validated_convolution(times_s, aif_mM, step_s)[2]


def _validated_convolution(times_s, aif_mM, step_s):
    """Validate; return times, AIF, ``convolution_matrix`` and the lag cell edges."""
    times, aif = _validate_aif(times_s, aif_mM)
    _validate_step(step_s)
    edges = _cell_edges(times, step_s)
    # Antiderivative of the piecewise-linear AIF from t0, at s = t_i - edge.
    spacing = np.diff(times)
    slope = np.diff(aif) / spacing
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (aif[1:] + aif[:-1]) * spacing)])
    s = times[:, None] - edges[None, :]
    segment = np.clip(np.searchsorted(times, s, side="right") - 1, 0, times.size - 2)
    ds = s - times[segment]
    antiderivative = cumulative[segment] + ds * (aif[segment] + 0.5 * slope[segment] * ds)
    antiderivative = np.where(s > times[0], antiderivative, 0.0)
    return times, aif, antiderivative[:, :-1] - antiderivative[:, 1:], edges


def convolve_on_frames(times_s, aif_mM, response, step_s=INTEGRATION_STEP_S):
    """Tissue concentration at the frame times for response(s) given as lag-cell means.

    Parameters
    ----------
    times_s, aif_mM, step_s
        As for ``convolution_matrix``.
    response : array_like, shape (..., n_cells)
        Mean of the impulse response (1/s) over each cell of
        ``lag_cell_edges(times_s, step_s)``, e.g. from ``fermi_cell_means``.

    Returns
    -------
    numpy.ndarray, shape (..., n_frames)
        Tissue concentration, mM.
    """
    matrix = convolution_matrix(times_s, aif_mM, step_s)
    response = np.asarray(response, dtype=float)
    if response.shape[-1:] != matrix.shape[1:]:
        raise AIAIFInputError("The response must have {} lag-cell means (one per cell of lag_cell_edges), "
                              "got shape {}; compute it on lag_cell_edges(times_s, step_s).".format(
                                  matrix.shape[1], response.shape))
    return response @ matrix.T


def fermi_tissue_curves(matrix, edges_s, flow_per_s, tau0_s, k_per_s, delay_s):
    """Model tissue curves for Fermi parameters, given a precomputed convolution.

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_frames, n_cells)
        From ``convolution_matrix``.
    edges_s : numpy.ndarray, shape (n_cells + 1,)
        From ``lag_cell_edges`` with the same times and step.
    flow_per_s, tau0_s, k_per_s, delay_s : array_like, shape (...)
        Fermi parameters (see ``fermi_residue``).

    Returns
    -------
    numpy.ndarray, shape (..., n_frames)
        Tissue concentration, mM.
    """
    return fermi_cell_means(edges_s, flow_per_s, tau0_s, k_per_s, delay_s) @ matrix.T

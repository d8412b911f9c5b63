"""Fermi-constrained deconvolution of myocardial tissue curves [JeroschHerold1998].

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

Fits
----
* ``fit_fermi_batched`` fits every curve of a map at once (variable
  projection of F, analytic Jacobian, bounded Levenberg-Marquardt vectorised
  over curves); a 10 000-pixel, 60-frame map takes about 0.9 s on two shared
  cores, 150-200 times less than ``scipy.optimize.curve_fit`` per pixel, with
  the same MBF to 1 % in 98.5-100 % of pixels
  (``Testing/benchmarks/fermi_batched_speed.py``).  A curve's result depends
  on that curve alone: the same bits whatever else is in the batch.
* ``fit_fermi_curve`` and ``fit_fermi_curves`` use
  ``scipy.optimize.least_squares`` per curve: the slow reference.

Both fit the frames up to ``fit_end_s``.  The batched fit defaults to the end
of the bolus's first pass, found from the AIF by ``first_pass_end_s``: the
Fermi shape models neither the recirculation nor the slow interstitial
washout, and fitting them lowers the fitted flow.  The reference defaults to
the whole curve.
"""

from dataclasses import dataclass, replace

import numpy as np
from scipy import integrate, optimize, special

from . import constants as K
from .errors import AIAIFInputError

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

#: Fewest frames a fit window (``fit_end_s``) must hold: the four Fermi
#: parameters plus one degree of freedom for the residual (project choice).
MIN_FIT_FRAMES = 5

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

#: Starting delays, s, of the reference fit; the fit with the lowest cost
#: wins.  Several starts make the reference robust against the local minima
#: of the delay (project choice).
DELAY_STARTS_S = (0.0, 1.0, 2.5)

#: Longest time after the AIF's peak the first-pass fit window reaches, s
#: (``first_pass_end_s``, step 3).  Project choice, by measurement across
#: three tissue models with the true AIF (12 phantoms each, model
#: conversion; segment bias / SD): capillary-transit (AATH) -5.2 % / 15.5 %
#: without the limit, +2.5 / 9.7 at 5 s, -1.2 / 10.3 at 6 s, -3.2 / 12.2 at
#: 8 s; two-compartment -28.8 / 13.3 without, -23.2 / 10.1 at 5 s, -25.9 /
#: 10.9 at 6 s; the held-out distributed-parameter model
#: (Testing/heldout, 8 phantoms) -3.3 / 66 without, +8.2 / 69 at 5 s,
#: +4.0 / 66 at 6 s, +0.2 / 65 at 8 s.  6 s is the fit's largest tissue
#: delay (5 s) plus about one stress heartbeat.
FIRST_PASS_LAG_HORIZON_S = 6.0

#: Fraction of a parameter's range within which it counts as at a bound.
AT_BOUND_TOLERANCE = 1e-3

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


# ---------------------------------------------------------------------------
# Fit
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class FermiFit:
    """Result of a Fermi fit: scalars for one curve, arrays (n_curves,) for many.

    Attributes
    ----------
    flow_per_s, tau0_s, k_per_s, delay_s
        Fitted Fermi parameters (see ``fermi_residue``).
    nrmse
        RMS of the residual divided by the RMS of the tissue curve (NaN for an
        all-zero curve).
    converged
        The solver reported convergence and the parameters are finite.
    at_bound
        A parameter ended at one of its bounds (within ``AT_BOUND_TOLERANCE``
        times its range), except the delay and the shoulder tau0 at 0: no
        delay, and a response falling from onset, are ordinary, not signs of
        a failed fit.
    fitted_mM
        Model tissue curve at the frame times, shape (n_frames,) or
        (n_curves, n_frames).
    """

    flow_per_s: object
    tau0_s: object
    k_per_s: object
    delay_s: object
    nrmse: object
    converged: object
    at_bound: object
    fitted_mM: np.ndarray

    @property
    def mbf_ml_min_g(self):
        """MBF, mL/min/g (``flow_to_mbf`` of the flow)."""
        return flow_to_mbf(self.flow_per_s)


def initial_guess(times_s, aif_mM, tissue_mM):
    """Starting Fermi parameters from the curves, within the bounds.

    F from the up-slope ratio (steepest tissue up-slope over the AIF peak,
    a known under-estimate of F, good enough as a start); tau0 from the
    ratio of the areas under the tissue and AIF curves divided by F (the
    response's area over its height, i.e. roughly its width); k = 1 1/s;
    delay 0.

    Parameters
    ----------
    times_s, aif_mM : array_like, shape (n_frames,)
        Validated frame times (s) and AIF (mM).
    tissue_mM : array_like, shape (..., n_frames)
        Tissue curves, mM.

    Returns
    -------
    numpy.ndarray, shape (..., 4)
        Parameters in ``FERMI_PARAMETERS`` order.
    """
    times = np.asarray(times_s, dtype=float)
    aif = np.asarray(aif_mM, dtype=float)
    tissue = np.asarray(tissue_mM, dtype=float)
    lower, upper = np.asarray(FERMI_LOWER_BOUNDS), np.asarray(FERMI_UPPER_BOUNDS)
    upslope = np.max(np.diff(tissue, axis=-1) / np.diff(times), axis=-1)
    flow = np.clip(upslope / np.max(np.abs(aif)), 0.02 * upper[0], 0.9 * upper[0])
    area_ratio = integrate.trapezoid(tissue, times, axis=-1) / integrate.trapezoid(aif, times)
    tau0 = np.clip(area_ratio / flow, 0.5, 0.9 * upper[1])
    guess = np.stack(np.broadcast_arrays(flow, tau0, 1.0, lower[3]), axis=-1)
    return np.clip(guess, lower, upper)


def _at_bound(params):
    """``FermiFit.at_bound`` for parameters (..., 4); False where a parameter is NaN."""
    lower, upper = np.asarray(FERMI_LOWER_BOUNDS), np.asarray(FERMI_UPPER_BOUNDS)
    tolerance = AT_BOUND_TOLERANCE * (upper - lower)
    with np.errstate(invalid="ignore"):
        near_lower = np.asarray(params) - lower <= tolerance
        near_upper = upper - np.asarray(params) <= tolerance
    # No delay and no shoulder (tau0 = 0: the response falls from onset, as a
    # compartment's does) are ordinary shapes, not signs of a failed fit.
    near_lower[..., FERMI_PARAMETERS.index("delay_s")] = False
    near_lower[..., FERMI_PARAMETERS.index("tau0_s")] = False
    return np.any(near_lower, axis=-1) | np.any(near_upper, axis=-1)


def _fit_one(matrix, edges, tissue, start):
    """Least-squares fit of one curve from several starting delays."""
    lower, upper = np.asarray(FERMI_LOWER_BOUNDS), np.asarray(FERMI_UPPER_BOUNDS)

    def residual(params):
        return fermi_tissue_curves(matrix, edges, *params) - tissue

    best = None
    for delay in DELAY_STARTS_S:
        x0 = np.array(start, dtype=float)
        x0[3] = delay
        result = optimize.least_squares(residual, np.clip(x0, lower, upper), bounds=(lower, upper),
                                        x_scale=FERMI_PARAMETER_SCALE, method="trf")
        if best is None or result.cost < best.cost:
            best = result
    params = best.x
    fitted = residual(params) + tissue
    tissue_rms = np.sqrt(np.mean(tissue ** 2))
    nrmse = np.sqrt(np.mean(best.fun ** 2)) / tissue_rms if tissue_rms > 0 else np.nan
    return FermiFit(flow_per_s=float(params[0]), tau0_s=float(params[1]), k_per_s=float(params[2]),
                    delay_s=float(params[3]), nrmse=float(nrmse),
                    converged=bool(best.success and np.all(np.isfinite(params))),
                    at_bound=bool(_at_bound(params)), fitted_mM=fitted)


def _window_frames(times, fit_end_s, aif):
    """Number of leading frames at or before ``fit_end_s`` (all frames for None), validated."""
    if fit_end_s is None:
        return times.size
    try:
        end = float(fit_end_s)
    except (TypeError, ValueError):
        end = np.nan
    if np.isnan(end):
        raise AIAIFInputError("The end of the fit window must be a time in seconds (or None), got {!r}; "
                              "pass e.g. first_pass_end_s(times_s, aif_mM).".format(fit_end_s))
    n_window = int(np.searchsorted(times, end, side="right"))
    if n_window < MIN_FIT_FRAMES:
        raise AIAIFInputError("The fit window ending at {:.1f} s holds {} frames, fewer than {}; end it later "
                              "(the frames run from {:.1f} to {:.1f} s).".format(end, n_window, MIN_FIT_FRAMES,
                                                                                 times[0], times[-1]))
    if not np.any(aif[:n_window] != 0):
        raise AIAIFInputError("The AIF is zero at every frame of the fit window ending at {:.1f} s; end the "
                              "window after contrast arrival.".format(end))
    return n_window


def fit_fermi_curve(times_s, aif_mM, tissue_mM, step_s=INTEGRATION_STEP_S, fit_end_s=None):
    """Fit the Fermi model to one tissue curve (reference implementation).

    Bounded ``scipy.optimize.least_squares`` (trust-region reflective) within
    ``FERMI_LOWER_BOUNDS``/``FERMI_UPPER_BOUNDS``, started from
    ``initial_guess`` with each of ``DELAY_STARTS_S``; the lowest cost wins.

    Parameters
    ----------
    times_s : array_like, shape (n_frames,)
        Frame times, s, strictly increasing (non-uniform spacing allowed).
    aif_mM : array_like, shape (n_frames,)
        Arterial input function, mM.
    tissue_mM : array_like, shape (n_frames,)
        Tissue concentration, mM.
    step_s : float, optional
        Lag cell width of the convolution, s.
    fit_end_s : float, optional
        Fit only the frames at or before this time, s (same clock as
        ``times_s``), e.g. ``first_pass_end_s(times_s, aif_mM)``; the window
        must hold at least ``MIN_FIT_FRAMES`` frames.  None (default) fits
        the whole curve.

    Returns
    -------
    FermiFit
        Scalars; ``mbf_ml_min_g`` gives MBF.  ``nrmse`` is computed over the
        fit window; ``fitted_mM`` is the model at every frame.
    """
    times, aif, matrix, edges = _validated_convolution(times_s, aif_mM, step_s)
    tissue = _validate_curves("tissue curve", tissue_mM, times.size, 1)
    n_window = _window_frames(times, fit_end_s, aif)
    window_matrix, window_edges = _window_convolution(times, matrix, edges, n_window)
    fit = _fit_one(window_matrix, window_edges, tissue[:n_window],
                   initial_guess(times[:n_window], aif[:n_window], tissue[:n_window]))
    if n_window == times.size:
        return fit
    fitted = fermi_tissue_curves(matrix, edges, fit.flow_per_s, fit.tau0_s, fit.k_per_s, fit.delay_s)
    return replace(fit, fitted_mM=fitted)


def _window_convolution(times, matrix, edges, n_window):
    """``convolution_matrix`` and ``lag_cell_edges`` of the first ``n_window`` frames.

    Row ``i`` of the full matrix only sees lags up to ``t_i - t_0`` and only
    AIF samples up to ``t_i``, so the window's matrix is the full one cut to
    its rows and to the cells its span needs.
    """
    n_cells = _cell_edges(times[:n_window], edges[1] - edges[0]).size - 1
    return matrix[:n_window, :n_cells], edges[:n_cells + 1]


def fit_fermi_curves(times_s, aif_mM, tissue_mM_2d, step_s=INTEGRATION_STEP_S, fit_end_s=None):
    """Fit every row of ``tissue_mM_2d`` with ``fit_fermi_curve`` (slow reference).

    Parameters
    ----------
    times_s, aif_mM, step_s, fit_end_s
        As for ``fit_fermi_curve``; one AIF serves all curves.
    tissue_mM_2d : array_like, shape (n_curves, n_frames)
        Tissue curves, mM.

    Returns
    -------
    FermiFit
        Arrays of shape (n_curves,) and ``fitted_mM`` (n_curves, n_frames).
    """
    times, aif, matrix, edges = _validated_convolution(times_s, aif_mM, step_s)
    tissue = _validate_curves("tissue curves", tissue_mM_2d, times.size, 2)
    n_window = _window_frames(times, fit_end_s, aif)
    window_matrix, window_edges = _window_convolution(times, matrix, edges, n_window)
    window = tissue[:, :n_window]
    starts = initial_guess(times[:n_window], aif[:n_window], window)
    fits = [_fit_one(window_matrix, window_edges, row, start) for row, start in zip(window, starts)]
    fields = {"flow_per_s": float, "tau0_s": float, "k_per_s": float, "delay_s": float, "nrmse": float,
              "converged": bool, "at_bound": bool}
    columns = {name: np.array([getattr(fit, name) for fit in fits], dtype=dtype) for name, dtype in fields.items()}
    if n_window == times.size:
        fitted = np.array([fit.fitted_mM for fit in fits]).reshape(tissue.shape)
    else:
        fitted = fermi_tissue_curves(matrix, edges, columns["flow_per_s"], columns["tau0_s"], columns["k_per_s"],
                                     columns["delay_s"]).reshape(tissue.shape)
    return FermiFit(fitted_mM=fitted, **columns)


# ---------------------------------------------------------------------------
# First-pass fit window
# ---------------------------------------------------------------------------

def _half_maximum_crossings(times, aif, peak):
    """Interpolated times at which the AIF crosses half its peak before and after ``peak``."""
    half = 0.5 * aif[peak]
    below_before = np.flatnonzero(aif[:peak] < half)
    if below_before.size:
        i = below_before[-1]
        rise = times[i] + (half - aif[i]) * (times[i + 1] - times[i]) / (aif[i + 1] - aif[i])
    else:
        rise = times[0]
    below_after = np.flatnonzero(aif[peak:] < half)
    if not below_after.size:
        return rise, None, None
    j = peak + below_after[0]
    fall = times[j - 1] + (aif[j - 1] - half) * (times[j] - times[j - 1]) / (aif[j - 1] - aif[j])
    return rise, fall, j


def first_pass_end_s(times_s, aif_mM):
    """End of the AIF's first pass, s: where a Fermi fit should stop.

    Fermi-constrained deconvolution is fitted over the first pass of the bolus
    only, cutting the curves before the recirculation [JeroschHerold1998]: the
    Fermi shape models neither the second pass nor the slow late washout of
    contrast from the interstitium, and fitting them drags the fitted flow
    down.  The rule here reads the end of the first pass off the AIF alone:

    1. Find the AIF's peak and the times ``t_rise`` and ``t_fall`` at which it
       crosses half of its peak before and after it (linear interpolation
       between frames), so ``width = t_fall - t_rise`` is its full width at
       half maximum (FWHM).
    2. The AIF's first pass ends at its lowest frame between ``t_fall`` and
       ``t_fall + width``: the trough before the recirculation when the
       recirculation begins within that span, otherwise (the AIF still
       falling) the frame at ``t_fall + width``.
    3. The window ends at that frame, but no later than the last frame at
       most ``FIRST_PASS_LAG_HORIZON_S`` (6 s) after the AIF's peak.
    4. It ends no earlier than the first frame at least
       ``FERMI_UPPER_BOUNDS`` delay (5 s) after the AIF's peak.

    The search span of step 2 is one FWHM after the half-maximum fall: for a
    symmetric bolus, ``t_fall + FWHM`` is the peak + 1.5 FWHM (3.5 standard
    deviations of a Gaussian bolus), by which time a lone first pass has all
    but returned to baseline, so anything after it is recirculation or
    washout.  Taking the lowest frame in the span (not the first frame that
    rises) keeps the rule stable against noise on the AIF.  Step 3 limits the
    lags a broad bolus lets the fit see: the Fermi function stands for the
    intravascular transit and early extraction, while lags long after the
    bulk of the bolus are the interstitial exchange, which it cannot follow
    (it decays to zero) and which then pulls the fitted onset height down.
    Step 4 keeps the window consistent with the fit's own delay bound: a
    tissue curve lags the AIF by up to that delay, so for a narrow bolus
    whose trough comes only a beat or two after its peak, the tissue's
    response to the peak is still inside the window.  The rule uses only the
    AIF, so it applies unchanged to measured and corrected AIFs.

    With the true AIF on the noise-free segment curves of the simulator's
    phantoms (8 per tissue model, the protocol of
    ``Testing/benchmarks/fermi_vs_tissue_model.py``), the reference fit over
    this window gives fitted / true MBF of 1.04, 1.03, 0.91 below 1.4, at
    2.4-3.2 and at 3.2-4.1 mL/min/g for the capillary-transit tissue model
    (whole curves: 1.06, 0.74, 0.63) and 0.89, 0.73, 0.66 for the
    two-compartment model (whole curves: 0.79, 0.55, 0.48).  The window is
    longer for broad boluses, whose fits then read flows lower.

    Parameters
    ----------
    times_s : array_like, shape (n_frames,)
        Frame times, s, strictly increasing.
    aif_mM : array_like, shape (n_frames,)
        Arterial concentration, mM, 0 before contrast arrival.

    Returns
    -------
    float
        Time of the last frame of the first pass, s (on the clock of
        ``times_s``); the last frame time if the AIF has not fallen below half
        its peak by the end of the acquisition.

    Raises
    ------
    AIAIFInputError
        For invalid frame times or AIF (see ``convolution_matrix``), or an AIF
        whose peak is not positive.
    """
    times, aif = _validate_aif(times_s, aif_mM)
    peak = int(np.argmax(aif))
    if aif[peak] <= 0:
        raise AIAIFInputError("The AIF has no positive peak; pass the arterial concentration in mM, rising "
                              "after contrast arrival.")
    rise, fall, first_below = _half_maximum_crossings(times, aif, peak)
    horizon = times[times <= times[peak] + FIRST_PASS_LAG_HORIZON_S][-1]
    latest_response = np.flatnonzero(times >= times[peak] + FERMI_UPPER_BOUNDS[FERMI_PARAMETERS.index("delay_s")])
    earliest_end = times[latest_response[0]] if latest_response.size else times[-1]
    if fall is None:
        return float(max(horizon, earliest_end))
    search = np.flatnonzero((times >= fall) & (times <= fall + (fall - rise)))
    if not search.size:
        search = np.array([first_below])
    trough = times[search[np.argmin(aif[search])]]
    return float(max(min(trough, horizon), earliest_end))


# ---------------------------------------------------------------------------
# Batched fit: all curves of one AIF at once
# ---------------------------------------------------------------------------

#: Lag cell width of the batched fit, s.  Project choice: the convolution's
#: error grows as ``step**2`` (3e-4 of the tissue peak at 0.2 s, 2e-5 at
#: 0.05 s) and the fit's time with the number of cells.  On the benchmark map
#: (Testing/benchmarks/fermi_batched_speed.py) 0.1 s instead of the
#: reference's 0.05 s changes MBF by 0.09 % (median; 95th percentile 0.25 %,
#: every pixel within 1 %) and halves the time.
BATCHED_STEP_S = 0.1

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


#: Levenberg-Marquardt damping at the start, relative to the largest diagonal
#: element of the Gauss-Newton matrix (Nielsen's customary 1e-3).
_INITIAL_DAMPING = 1e-3


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

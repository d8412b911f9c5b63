"""The per-curve reference fit: ``scipy.optimize.least_squares`` on each curve.

The slow reference of ``fit_fermi_batched``; it fits the whole curve unless
told a window (``fit_end_s``).
"""

from dataclasses import replace

import numpy as np
from scipy import integrate, optimize

from .model import (FERMI_LOWER_BOUNDS, FERMI_PARAMETER_SCALE, FERMI_UPPER_BOUNDS, INTEGRATION_STEP_S,
                    _validate_curves, _validated_convolution, fermi_tissue_curves)
from .result import FermiFit, _at_bound
from .window import _window_convolution, _window_frames

#: Starting delays, s, of the reference fit; the fit with the lowest cost
#: wins.  Several starts make the reference robust against the local minima
#: of the delay (project choice).
DELAY_STARTS_S = (0.0, 1.0, 2.5)


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

"""Tracer kinetics of the held-out phantom: a two-region distributed-parameter myocardium and simple background tissues.

Myocardium (different from ``AIAIFLib.simulation``'s AATH / 2CXM on purpose)
---------------------------------------------------------------------------
* The tissue's own arterial input is the LV blood curve delayed and dispersed
  by an exponential kernel (Calamante F, Gadian DG, Connelly A. Magn Reson Med
  2000;44:466-473): ``C_art = C_LV(t - delay) * exp(-t / tau) / tau``.
* Two parallel capillary regions share the flow unequally (flow
  heterogeneity): a fast region takes ``flow_share`` of the flow with
  ``volume_share`` of the volumes, the slow one the rest.
* Each region is a distributed-parameter capillary (Sangren WC, Sheppard CW.
  Bull Math Biophys 1953;15:387-394), discretised into ``N_SEGMENTS`` plasma
  segments in series, each exchanging with its own interstitial segment
  through ``PS / N``; the discretised chain has plug-flow-like capillary
  transit and axial concentration gradients, unlike a well-mixed compartment.
* Impulse response: a unit of tracer entering with the blood at t = 0, of
  which ``R(t)`` is still in the tissue; ``R(0) = 1``.

Ground truth: ``C_tissue(t) = F_b * (C_art * R)(t)``.  The impulse response
of the tissue to its own arterial input, ``F_b * R(t)``, starts at ``F_b`` (mL
blood / s / mL tissue), the quantity Fermi deconvolution estimates as flow,
and ``MBF = 60 * F_b / 1.05 g/mL`` mL/min/g (``TISSUE_DENSITY_G_PER_ML``): the
same definition as ``AIAIFLib.simulation``, so results are comparable.
Relative to the LV AIF the pipeline sees ``F_b * (h_disp * R)``, whose onset is
lower and later than ``F_b``: dispersion is part of what is tested.

Background tissues (liver, skeletal muscle, fat, lung; ``BACKGROUND_KINETICS``)
take a vascular fraction plus a one-compartment leak of a delayed, dispersed
blood input (project choices; they only need to look plausible around the
heart).
"""

import numpy as np

#: Myocardial tissue density, g/mL (the customary value; the same as
#: ``AIAIFLib.constants.TISSUE_DENSITY_G_PER_ML``, restated so that this
#: package's truth does not depend on the pipeline's constants).
TISSUE_DENSITY_G_PER_ML = 1.05
#: Blood haematocrit (large-vessel value, project choice).
HAEMATOCRIT = 0.42
#: Plasma / interstitial segments of each distributed-parameter region
#: (project choice: 8 segments give a capillary transit-time CV of 0.35).
N_SEGMENTS = 8

#: Background tissue kinetics (project choices): input (``lv`` or ``rv``
#: blood), its delay and exponential dispersion (s), blood volume fraction,
#: Ktrans (1/s, plasma-referenced) and interstitial volume fraction.
BACKGROUND_KINETICS = {
    "muscle": {"input": "lv", "delay_s": 3.0, "dispersion_s": 2.0, "vb": 0.03, "ktrans_per_s": 0.003, "ve": 0.12},
    "liver": {"input": "lv", "delay_s": 6.0, "dispersion_s": 5.0, "vb": 0.15, "ktrans_per_s": 0.02, "ve": 0.25},
    "fat": {"input": "lv", "delay_s": 3.0, "dispersion_s": 2.0, "vb": 0.02, "ktrans_per_s": 0.002, "ve": 0.08},
    "lung": {"input": "rv", "delay_s": 1.0, "dispersion_s": 0.6, "vb": 0.15, "ktrans_per_s": 0.002, "ve": 0.05},
    "aorta": {"input": "lv", "delay_s": 0.4, "dispersion_s": 0.2, "vb": 1.0, "ktrans_per_s": 0.0, "ve": 0.0},
}


def mbf_ml_min_g(blood_flow_per_s):
    """MBF (mL/min/g) of a blood flow F_b (mL blood / s / mL tissue)."""
    return 60.0 * np.asarray(blood_flow_per_s) / TISSUE_DENSITY_G_PER_ML


def blood_flow_per_s(mbf):
    """Blood flow F_b (1/s) of an MBF in mL/min/g."""
    return np.asarray(mbf) * TISSUE_DENSITY_G_PER_ML / 60.0


def delayed_dispersed(grid_s, curves, delay_s, dispersion_s):
    """Curves delayed by ``delay_s`` and convolved with a unit-area exponential of time constant ``dispersion_s``.

    Parameters
    ----------
    grid_s : numpy.ndarray, (T,)
        Uniform time grid, s.
    curves : numpy.ndarray, (T,) or (n, T)
        Input curves (0 at the start of the grid).
    delay_s, dispersion_s : array_like, (n,) or scalar
        Delay and time constant, s (> 0).

    Returns
    -------
    numpy.ndarray, (n, T)
    """
    dt = grid_s[1] - grid_s[0]
    delay = np.atleast_1d(np.asarray(delay_s, dtype=float))
    tau = np.atleast_1d(np.asarray(dispersion_s, dtype=float))
    n = max(delay.size, tau.size, np.atleast_2d(curves).shape[0])
    curves = np.broadcast_to(np.atleast_2d(curves), (n, grid_s.size))
    delay, tau = np.broadcast_to(delay, (n,)), np.broadcast_to(tau, (n,))
    shifted = np.stack([np.interp(grid_s - d, grid_s, row, left=0.0) for d, row in zip(delay, curves)])
    lag = np.arange(grid_s.size) * dt
    # Exact average of the exponential kernel over each step (unit area on the grid).
    kernel = np.exp(-lag[None, :] / tau[:, None]) * (-np.expm1(-dt / tau[:, None])) / dt
    size = 2 * grid_s.size
    out = np.fft.irfft(np.fft.rfft(shifted, size, axis=1) * np.fft.rfft(kernel, size, axis=1), size, axis=1)
    return out[:, :grid_s.size] * dt


def _chain_matrices(flow_per_s, vb, ve, ps_per_s, flow_share, volume_share):
    """State matrices of the discretised capillary chains, (n, 2, 2N, 2N): amounts in [plasma..., interstitium...]."""
    n = flow_per_s.size
    size = 2 * N_SEGMENTS
    matrices = np.zeros((n, 2, size, size))
    for region, (f_share, v_share) in enumerate(((flow_share, volume_share), (1.0 - flow_share, 1.0 - volume_share))):
        plasma_flow = flow_per_s * f_share * (1.0 - HAEMATOCRIT)
        vp = vb * v_share * (1.0 - HAEMATOCRIT) / N_SEGMENTS
        vi = ve * v_share / N_SEGMENTS
        ps = ps_per_s * v_share / N_SEGMENTS
        for i in range(N_SEGMENTS):
            p, e = i, N_SEGMENTS + i
            matrices[:, region, p, p] = -(plasma_flow + ps) / vp
            matrices[:, region, p, e] = ps / vi
            matrices[:, region, e, p] = ps / vp
            matrices[:, region, e, e] = -ps / vi
            if i > 0:
                matrices[:, region, p, p - 1] = plasma_flow / vp
    return matrices


def _expm_stack(matrices):
    """Matrix exponential of a stack of small matrices (scaling and squaring, Taylor order 12)."""
    norm = np.max(np.sum(np.abs(matrices), axis=-1))
    squarings = max(0, int(np.ceil(np.log2(max(norm, 1e-12) / 0.25))))
    scaled = matrices / 2.0 ** squarings
    identity = np.broadcast_to(np.eye(matrices.shape[-1]), matrices.shape)
    result, term = identity.copy(), identity.copy()
    for order in range(1, 13):
        term = term @ scaled / order
        result = result + term
    for _ in range(squarings):
        result = result @ result
    return result


def two_region_residue(step_s, n_steps, flow_per_s, vb, ve, ps_per_s, flow_share, volume_share):
    """Impulse residue R(t) of the two-region distributed-parameter myocardium.

    Parameters
    ----------
    step_s : float
        Time step of the output, s.
    n_steps : int
        Samples (t = 0, step, ...).
    flow_per_s, vb, ve, ps_per_s, flow_share, volume_share : numpy.ndarray, (n,)
        Blood flow F_b (1/s), blood and interstitial volume fractions,
        permeability-surface product (1/s), and the fast region's share of
        the flow and of the volumes.

    Returns
    -------
    numpy.ndarray, (n, n_steps)
        R(t), 1 at t = 0, non-increasing.
    """
    arrays = [np.asarray(a, dtype=float).reshape(-1) for a in (flow_per_s, vb, ve, ps_per_s, flow_share, volume_share)]
    flow, vb, ve, ps, f_share, v_share = np.broadcast_arrays(*arrays)
    matrices = _chain_matrices(flow, vb, ve, ps, f_share, v_share)
    propagators = _expm_stack(matrices * step_s)  # (n, 2, 2N, 2N)
    state = np.zeros(matrices.shape[:3])
    state[:, :, 0] = 1.0  # the unit of tracer enters the first plasma segment
    weights = np.stack([f_share, 1.0 - f_share], axis=1)  # share of the tracer each region receives
    residue = np.empty((flow.size, n_steps))
    for step in range(n_steps):
        residue[:, step] = np.sum(weights * state.sum(axis=2), axis=1)
        state = np.einsum("nrij,nrj->nri", propagators, state)
    return residue


def convolve_residue(grid_s, arterial_mM, residue, flow_per_s):
    """``F_b * (C_art * R)(t)`` on a uniform grid (trapezoid rule), mM.

    Parameters
    ----------
    grid_s : numpy.ndarray, (T,)
        Uniform time grid, s.
    arterial_mM : numpy.ndarray, (n, T)
        Each tissue's own arterial input, mM (0 at the start of the grid).
    residue : numpy.ndarray, (n, T)
        R on the same step, R[:, 0] = 1.
    flow_per_s : numpy.ndarray, (n,)
        F_b, 1/s.
    """
    dt = grid_s[1] - grid_s[0]
    size = 2 * grid_s.size
    conv = np.fft.irfft(np.fft.rfft(arterial_mM, size, axis=1) * np.fft.rfft(residue, size, axis=1), size,
                        axis=1)[:, :grid_s.size] * dt
    conv -= 0.5 * dt * (arterial_mM * residue[:, :1] + arterial_mM[:, :1] * residue)
    return np.asarray(flow_per_s, dtype=float)[:, None] * conv


def background_concentration(grid_s, lv_mM, rv_mM, kind):
    """Concentration of a background tissue (``BACKGROUND_KINETICS[kind]``), mM, shape (T,)."""
    k = BACKGROUND_KINETICS[kind]
    blood = delayed_dispersed(grid_s, lv_mM if k["input"] == "lv" else rv_mM, k["delay_s"], k["dispersion_s"])[0]
    if k["ktrans_per_s"] == 0.0:
        return k["vb"] * blood
    dt = grid_s[1] - grid_s[0]
    kep = k["ktrans_per_s"] / k["ve"]
    plasma = blood / (1.0 - HAEMATOCRIT)
    kernel = np.exp(-kep * np.arange(grid_s.size) * dt)
    size = 2 * grid_s.size
    leak = np.fft.irfft(np.fft.rfft(plasma, size) * np.fft.rfft(kernel, size), size)[:grid_s.size] * dt
    return k["vb"] * blood + k["ktrans_per_s"] * leak

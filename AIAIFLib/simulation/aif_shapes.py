"""AIF shape families: LV blood-pool concentration up to a scale, evaluated at any times.

The families, in the order of their integer codes (``parameters.AIF_FAMILIES``):
a gamma-variate first pass with recirculation, the population AIF form of
Parker et al. (MRM 2006) and a circulation model, each with a systemic
plateau.  ``aif_concentration_mM`` scales each curve to its drawn peak.
"""

import numpy as np
from scipy import special


def gamma_variate(times_s, arrival_s, peak_time_s, shape):
    """Gamma-variate bolus normalised to a peak of 1 at ``peak_time_s``.

    ``g(t) = (x / (a b))**a * exp(a - x / b)`` for ``x = t - arrival >= 0``,
    0 before, with shape ``a`` and ``b = (peak - arrival) / a``.

    Parameters
    ----------
    times_s, arrival_s, peak_time_s, shape : array_like
        Times, arrival time and peak time (s) and the dimensionless shape;
        broadcast against each other.

    Returns
    -------
    numpy.ndarray
        Dimensionless curve, 0-1.
    """
    x = np.maximum(np.asarray(times_s, dtype=float) - arrival_s, 0.0)
    x_peak = np.asarray(peak_time_s) - np.asarray(arrival_s)
    ratio = x / x_peak
    with np.errstate(divide="ignore"):
        log_g = np.asarray(shape) * (np.log(ratio) + 1.0 - ratio)
    return np.where(x > 0, np.exp(log_g), 0.0)


def _systemic_plateau(times_s, onset_s, level, washout_rate_per_s, mixing_rate_per_s):
    """Systemic plateau: 0 before ``onset_s``, then mixing up to ``level`` and slow washout."""
    x = np.maximum(np.asarray(times_s, dtype=float) - onset_s, 0.0)
    return level * (1.0 - np.exp(-mixing_rate_per_s * x)) * np.exp(-washout_rate_per_s * x)


def _family_gamma_recirculation(t, p):
    first = gamma_variate(t, p["arrival_s"], p["arrival_s"] + p["rise_time_s"], p["dispersion_shape"])
    recirculation_peak = p["arrival_s"] + p["rise_time_s"] + p["recirculation_delay_s"]
    recirculation_rise = 2.0 * p["rise_time_s"]
    second = gamma_variate(t, recirculation_peak - recirculation_rise, recirculation_peak,
                           0.6 * p["dispersion_shape"] + 1.0)
    plateau = _systemic_plateau(t, p["arrival_s"] + p["rise_time_s"], p["plateau_fraction"],
                                p["washout_rate_per_s"], 0.15)
    return first + p["recirculation_fraction"] * second + plateau


def _family_population(t, p):
    # The two Gaussians of Parker et al. 2006 (their logistic-modulated
    # exponential replaced by the causal plateau shared by all families).  The
    # first Gaussian peaks at arrival + rise time with an SD of a third of the
    # rise time; the curve is cut to 0 before arrival (1 % of the peak).
    peak = p["arrival_s"] + p["rise_time_s"]
    sd1 = p["rise_time_s"] / 3.0
    sd2 = sd1 * (1.2 + 0.25 * p["dispersion_shape"])
    second_peak = peak + p["recirculation_delay_s"]
    first = np.exp(-0.5 * ((t - peak) / sd1) ** 2)
    second = np.exp(-0.5 * ((t - second_peak) / sd2) ** 2)
    plateau = _systemic_plateau(t, peak, p["plateau_fraction"], p["washout_rate_per_s"], 0.2)
    return np.where(t >= p["arrival_s"], first + p["recirculation_fraction"] * second + plateau, 0.0)


def _family_circulation(t, p):
    # Rectangular injection (duration D) dispersed by a gamma transit density
    # with shape a and scale b; recirculation pass k adds k systemic transits:
    # gamma densities of equal scale compose by adding shapes, so every pass
    # stays analytic: box * gamma(a_k, b) = [P(a_k, x/b) - P(a_k, (x-D)/b)] / D.
    a = p["dispersion_shape"]
    d = p["injection_duration_s"]
    b = np.maximum(p["rise_time_s"] - 0.5 * d, 0.3) / np.maximum(a - 1.0, 0.5)
    total = np.zeros(np.broadcast(t, a).shape)
    for k in range(4):
        shape_k = a + k * p["systemic_shape"]
        x = np.asarray(t) - p["arrival_s"] - k * p["recirculation_delay_s"]
        box = special.gammainc(shape_k, np.maximum(x, 0.0) / b) - special.gammainc(
            shape_k, np.maximum(x - d, 0.0) / b)
        total = total + (p["recirculation_fraction"] * 1.5) ** k * box
    # First-pass height estimated at the mode of box * gamma (independent of
    # the times evaluated, so the curve is the same on any grid).
    x_mode = (a - 1.0) * b + 0.5 * d
    first_pass_height = (special.gammainc(a, x_mode / b) - special.gammainc(a, np.maximum(x_mode - d, 0.0) / b))
    plateau = _systemic_plateau(t, p["arrival_s"] + p["recirculation_delay_s"],
                                p["plateau_fraction"] * first_pass_height, p["washout_rate_per_s"], 0.15)
    return total + plateau


_FAMILY_FUNCTIONS = (_family_gamma_recirculation, _family_population, _family_circulation)


def aif_concentration_mM(times_s, params):
    """LV blood-pool contrast concentration of simulated AIFs.

    Parameters
    ----------
    times_s : array_like, shape (n, m)
        Times at which to evaluate each curve, s.
    params : dict of numpy.ndarray, each shape (n,)
        Parameters as drawn by ``draw_aif_parameters`` (the keys ``family``
        and ``peak_conc_mM`` select the shape family and the scale).

    Returns
    -------
    numpy.ndarray, shape (n, m)
        Concentration, mM.  The first-pass peak equals ``peak_conc_mM`` (to
        0.1 %, the resolution of the normalisation grid).
    """
    t = np.asarray(times_s, dtype=float)
    out = np.empty(t.shape)
    families = np.asarray(params["family"])
    for code, function in enumerate(_FAMILY_FUNCTIONS):
        rows = np.flatnonzero(families == code)
        if rows.size == 0:
            continue
        sub = {key: np.asarray(value)[rows][:, None] for key, value in params.items()}
        # Normalise on a fine grid spanning the first pass so that the peak of
        # the continuous curve (not of its frame samples) is peak_conc_mM.
        fine = sub["arrival_s"] + np.linspace(0.0, 3.0, 301)[None, :] * (
            sub["rise_time_s"] + sub["injection_duration_s"])
        peak = np.max(function(fine, sub), axis=1, keepdims=True)
        out[rows] = sub["peak_conc_mM"] * function(t[rows], sub) / peak
    return out

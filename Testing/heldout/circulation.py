"""Heart rhythm, ECG-triggered frame times and the held-out AIF family.

Rhythm
------
Stress RR intervals with respiratory sinus arrhythmia (a sinusoidal
modulation at the breathing period), a slow linear drift, beat-to-beat jitter,
premature (ectopic) beats followed by a compensatory pause, and missed ECG
triggers.  The scanner starts one saturation-readout block per accepted
trigger; a trigger that arrives while the previous block is still running is
ignored (as scanners do), so frames after a premature beat can skip a beat.

AIF family (different from ``AIAIFLib.simulation``'s on purpose)
-----------------------------------------------------------------
* First pass: an indicator-dilution transit-time density -- the local-density
  random walk (LDRW) ``p(u) = sqrt(lam / (2 pi u)) exp(-lam (u - 1)**2 / (2 u))``
  with ``u = t / mu``, or the lagged normal (a Gaussian convolved with an
  exponential; Bassingthwaighte JB, Ackerman FH, Wood EH, Circ Res 1966;18:
  398-415) -- convolved with the rectangular injection.
* Recirculation as a closed loop: the first pass returns through a fast
  systemic loop (a delayed, dispersed copy: a lagged normal of mean 7-14 s) and
  a slow whole-body loop (a delayed exponential of 20-60 s, the washout tail),
  ``C = FP / (1 - g_fast G_fast - g_slow G_slow)`` in the frequency domain.
  The loop gains sum to well below 1: the rest leaves to the interstitium and
  the kidneys.
* The RV curve: a less dispersed first pass with the same area (the same dose
  over the same cardiac output) through the same loop, earlier by the
  pulmonary transit.
* Scaled to the drawn LV first-pass peak (mM) and shifted so that the LV
  curve reaches 2 % of its peak at the drawn arrival time.
"""

import numpy as np
from scipy import special

from .ranges import draw

#: Uniform time step of the fine grid of every concentration curve, s
#: (first passes are seconds wide; tissue kinetics use the same grid).
FINE_STEP_S = 0.1
#: Start of the fine grid relative to the first frame, s (room for the RV
#: curve and tissue delays before the first frame).
GRID_START_S = -20.0
#: Fraction of the LV peak that defines contrast arrival.
ARRIVAL_FRACTION = 0.02
#: Share of its peak below which a first pass is cut to 0 before it rises
#: (the lagged normal's Gaussian foot has no start; project choice).
FRONT_FRACTION = 5e-3
#: Exponential damping of the recirculation loop's FFT (suppresses the
#: circular wrap-around by exp(-LOOP_DAMPING)).
LOOP_DAMPING = 20.0
#: RV first-pass width relative to the LV's (project choice: the RV sees the
#: bolus before the pulmonary dispersion).
RV_WIDTH_FACTOR = 0.55


# ---------------------------------------------------------------------------
# Rhythm and frame times
# ---------------------------------------------------------------------------

def draw_rhythm(rng):
    """Heart-rhythm parameters of one subject (``RANGES`` entries)."""
    return {key: draw(rng, key) for key in ("heart_rate_bpm", "rr_sinus_amplitude", "rr_sinus_period_s", "rr_jitter",
                                            "rr_drift", "ectopic_probability", "missed_trigger_probability")}


def rr_intervals(rng, rhythm, n_beats):
    """R-R intervals of ``n_beats`` consecutive beats, s.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    rhythm : dict
        From ``draw_rhythm``.
    n_beats : int
        Beats.

    Returns
    -------
    numpy.ndarray, (n_beats,)
        Intervals, s; premature beats are 60-75 % of the running RR and are
        followed by a compensatory pause (the two sum to two RR); a missed
        trigger merges two beats.
    """
    rr0 = 60.0 / rhythm["heart_rate_bpm"]
    beat = np.arange(n_beats)
    t_approx = beat * rr0
    sinus = 1.0 + rhythm["rr_sinus_amplitude"] * np.sin(
        2.0 * np.pi * t_approx / rhythm["rr_sinus_period_s"] + rng.uniform(0.0, 2.0 * np.pi))
    drift = 1.0 + rhythm["rr_drift"] * beat / max(n_beats - 1, 1)
    jitter = 1.0 + rhythm["rr_jitter"] * np.clip(rng.standard_normal(n_beats), -3.0, 3.0)
    rr = rr0 * sinus * drift * jitter
    ectopic = rng.random(n_beats) < rhythm["ectopic_probability"]
    prematurity = rng.uniform(0.60, 0.75, n_beats)
    for i in np.flatnonzero(ectopic[:-1]):
        if i > 0 and ectopic[i - 1]:
            continue
        total = rr[i] + rr[i + 1]
        rr[i] = prematurity[i] * total / 2.0
        rr[i + 1] = total - rr[i]
    missed = rng.random(n_beats) < rhythm["missed_trigger_probability"]
    keep = ~np.roll(missed, 1)
    keep[0] = True
    merged = rr.copy()
    for i in np.flatnonzero(missed[:-1]):
        merged[i] = rr[i] + rr[i + 1]
    return merged[keep]


def frame_triggers(rng, rhythm, n_frames, block_s):
    """Trigger times of the acquired frames, s from the first.

    A trigger arriving less than ``block_s`` after the last accepted one (the
    scanner is still acquiring) is ignored.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    rhythm : dict
        From ``draw_rhythm``.
    n_frames : int
        Frames to acquire.
    block_s : float
        Duration of one frame's saturation-readout blocks, s.

    Returns
    -------
    times : numpy.ndarray, (n_frames,)
        Trigger time of each frame, s, starting at 0.
    skipped : int
        Triggers ignored because a block was still running.
    """
    n_beats = 2 * n_frames + 20
    while True:
        waves = np.concatenate([[0.0], np.cumsum(rr_intervals(rng, rhythm, n_beats))])
        accepted, last, skipped = [], -np.inf, 0
        for wave in waves:
            if wave >= last + block_s:
                accepted.append(wave)
                last = wave
                if len(accepted) == n_frames:
                    return np.asarray(accepted), skipped
            else:
                skipped += 1
        n_beats *= 2


# ---------------------------------------------------------------------------
# AIF family
# ---------------------------------------------------------------------------

def draw_aif(rng, peak_conc_mM=None, family=None):
    """AIF shape parameters of one subject (``RANGES`` entries).

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    peak_conc_mM : float, optional
        Fix the LV first-pass peak, mM (drawn log-uniformly otherwise).
    family : {'ldrw', 'lagged_normal'}, optional
        Fix the first-pass family.
    """
    p = {key: draw(rng, key) for key in (
        "peak_conc_mM", "arrival_s", "aif_family", "injection_duration_s", "first_pass_width_s", "ldrw_skew",
        "lagged_normal_tail_fraction", "rv_lead_s", "recirculation_gain", "recirculation_delay_s",
        "recirculation_spread", "washout_gain", "washout_time_s")}
    if peak_conc_mM is not None:
        p["peak_conc_mM"] = float(peak_conc_mM)
    if family is not None:
        p["aif_family"] = family
    return p


def _lagged_normal(t, mean_s, sd_s, tail_s):
    """Unit-area Gaussian (mean, SD) convolved with an exponential (time constant), evaluated at ``t``.

    ``exp(s**2 / (2 tau**2) - (t - m) / tau) erfc(z) / (2 tau)`` with
    ``z = (s / tau - (t - m) / s) / sqrt(2)``, evaluated through ``erfcx`` where
    ``z > 0`` so that neither branch overflows.
    """
    x = (np.asarray(t, dtype=float) - mean_s) / sd_s
    ratio = np.broadcast_to(sd_s / tail_s, x.shape)
    z = (ratio - x) / np.sqrt(2.0)
    positive = z > 0
    early = np.exp(-0.5 * x * x) * special.erfcx(np.where(positive, z, 0.0))
    late = np.exp(np.where(positive, 0.0, 0.5 * ratio * ratio - ratio * x)) * special.erfc(np.where(positive, 0.0, z))
    return np.where(positive, early, late) / (2.0 * tail_s)


def _ldrw(t, width_s, skew):
    """Unit-area LDRW transit-time density with SD ``width_s`` and skew parameter lambda."""
    mu = width_s / np.sqrt(1.0 / skew + 2.0 / skew ** 2)
    u = np.maximum(np.asarray(t), 1e-9) / mu
    density = np.sqrt(skew / (2.0 * np.pi * u)) * np.exp(-skew * (u - 1.0) ** 2 / (2.0 * u)) / mu
    return np.where(np.asarray(t) > 0, density, 0.0)


def _first_pass(tau, family, width_s, p):
    """Unit-area first-pass density on the injection-relative grid ``tau`` (rows: curves)."""
    ldrw = _ldrw(tau, width_s, p["ldrw_skew"])
    sd = width_s / np.sqrt(1.0 + p["lagged_normal_tail_fraction"] ** 2)
    lagged = _lagged_normal(tau, 4.0 * sd + 2.0, sd, p["lagged_normal_tail_fraction"] * sd)
    return np.where(family == "ldrw", ldrw, lagged)


def _columns(params, keys):
    return {key: np.asarray([p[key] for p in params])[:, None] for key in keys}


def blood_curves(params, duration_s):
    """LV and RV blood concentration of each subject on a uniform fine grid.

    Parameters
    ----------
    params : list of dict
        AIF parameters (``draw_aif``), one per subject.
    duration_s : float
        Time after the first frame to cover, s.

    Returns
    -------
    grid_s : numpy.ndarray, (T,)
        Times relative to the first frame, s (from ``GRID_START_S``, step
        ``FINE_STEP_S``).
    lv_mM, rv_mM : numpy.ndarray, (n, T)
        Concentrations, mM; LV first-pass peak and arrival as drawn.
    """
    n = len(params)
    dt = FINE_STEP_S
    p = _columns(params, ("peak_conc_mM", "arrival_s", "injection_duration_s", "first_pass_width_s", "ldrw_skew",
                          "lagged_normal_tail_fraction", "rv_lead_s", "recirculation_gain", "recirculation_delay_s",
                          "recirculation_spread", "washout_gain", "washout_time_s"))
    family = np.asarray([q["aif_family"] for q in params])[:, None]
    span = duration_s - GRID_START_S + 60.0
    n_tau = int(np.ceil(span / dt))
    tau = np.arange(n_tau)[None, :] * dt
    size = 1 << int(np.ceil(np.log2(2 * n_tau)))
    freq_tau = np.arange(size)[None, :] * dt
    # The loop's response never ends, so a plain FFT would wrap its tail onto the start.  Exponential
    # damping before the transforms (undone after) suppresses the wrapped part by exp(-LOOP_DAMPING).
    sigma = LOOP_DAMPING / (size * dt)
    damp = np.exp(-sigma * freq_tau)

    box = (freq_tau < p["injection_duration_s"]).astype(float)
    box /= box.sum(axis=1, keepdims=True) * dt
    box_hat = np.fft.rfft(box * damp, axis=1) * dt
    fast_sd = p["recirculation_spread"] * p["recirculation_delay_s"] / np.sqrt(1.25)
    fast = _lagged_normal(freq_tau, p["recirculation_delay_s"] - 0.5 * fast_sd, fast_sd, 0.5 * fast_sd)
    slow = np.where(freq_tau >= p["recirculation_delay_s"],
                    np.exp(-(freq_tau - p["recirculation_delay_s"]) / p["washout_time_s"]) / p["washout_time_s"], 0.0)
    loop_hat = 1.0 / (1.0 - p["recirculation_gain"] * np.fft.rfft(fast * damp, axis=1) * dt
                      - p["washout_gain"] * np.fft.rfft(slow * damp, axis=1) * dt)

    def through_loop(first_pass):
        first_pass = _clean_front(first_pass)
        spectrum = np.fft.rfft(first_pass * damp[:, :n_tau], size, axis=1) * dt * box_hat * loop_hat
        out = np.fft.irfft(spectrum, size, axis=1)[:, :n_tau] / dt / damp[:, :n_tau]
        front = np.argmax(first_pass > 0, axis=1)
        return np.where(np.arange(n_tau)[None, :] < front[:, None], 0.0, out)  # causal: nothing before the front

    lv = through_loop(_first_pass(tau, family, p["first_pass_width_s"], p))
    rv = through_loop(_first_pass(tau, family, RV_WIDTH_FACTOR * p["first_pass_width_s"], p))
    scale = p["peak_conc_mM"] / lv.max(axis=1, keepdims=True)
    lv, rv = lv * scale, rv * scale

    grid = GRID_START_S + np.arange(int(np.ceil((duration_s - GRID_START_S) / dt)) + 1) * dt
    lv_out = np.empty((n, grid.size))
    rv_out = np.empty((n, grid.size))
    for row in range(n):
        lv_on = _crossing(tau[0], lv[row], ARRIVAL_FRACTION * lv[row].max())
        rv_on = _crossing(tau[0], rv[row], ARRIVAL_FRACTION * lv[row].max())
        lv_out[row] = np.interp(grid - p["arrival_s"][row, 0] + lv_on, tau[0], lv[row], left=0.0)
        rv_shift = p["arrival_s"][row, 0] - p["rv_lead_s"][row, 0]
        rv_out[row] = np.interp(grid - rv_shift + rv_on, tau[0], rv[row], left=0.0)
    return grid, lv_out, rv_out


def _clean_front(first_pass):
    """First passes set to 0 before they first reach ``FRONT_FRACTION`` of their peak (a bolus has a front)."""
    out = first_pass.copy()
    peak = np.argmax(out, axis=1)
    for row in range(out.shape[0]):
        below = np.flatnonzero(out[row, :peak[row]] < FRONT_FRACTION * out[row, peak[row]])
        if below.size:
            out[row, :below[-1] + 1] = 0.0
    return out


def _crossing(times, curve, level):
    """First time ``curve`` reaches ``level`` (linear interpolation)."""
    above = int(np.argmax(curve >= level))
    if above == 0:
        return float(times[0])
    fraction = (level - curve[above - 1]) / (curve[above] - curve[above - 1])
    return float(times[above - 1] + fraction * (times[above] - times[above - 1]))

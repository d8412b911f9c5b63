"""Physics-based simulator: paired saturated / unsaturated AIFs and a 4D perfusion phantom.

No patient data exist for this project, so the network is trained and the
pipeline validated on curves and images whose ground truth is known.  Every
randomised quantity is drawn from a documented range (``AIF_PAIR_RANGES``,
``PHANTOM_RANGES``); every draw comes from one ``numpy.random.Generator``
seeded by the caller, so results are reproducible.

Physics
-------
* Contrast-agent concentration in the LV blood pool, ``C(t)`` in mM, from one
  of three shape families (``AIF_FAMILIES``): a gamma-variate first pass with
  recirculation and a systemic plateau; the population AIF form of Parker et
  al. (MRM 2006) with randomised amplitudes and time scale; and a circulation
  model (a rectangular injection dispersed by gamma-distributed cardiopulmonary
  transit, with recirculation passes through the systemic circulation).
* Frame times from a heart-rate model with beat-to-beat variation, a slow drift
  and occasional missed ECG triggers (one frame per heartbeat).
* Signal of the standard saturation-recovery FLASH slices from
  ``sequence.saturation_recovery_flash_signal`` (saturation time ~100 ms, the
  saturated AIF) and the linear reference ``S0 * (1 + r1 * T1 * C)`` with the
  same baseline ``S0`` (``sequence.linear_reference_signal``).
* Myocardium: a capillary-transit model driven by the blood AIF, not the
  Fermi function, so that a Fermi fit is tested as the approximation it is:
  the adiabatic approximation to the tissue-homogeneity model (St Lawrence &
  Lee, J Cereb Blood Flow Metab 1998) with gamma-distributed capillary
  transit times (Schabel, Magn Reson Med 2012), see
  ``capillary_transit_residue``.  The two-compartment exchange model (2CXM;
  Sourbron & Buckley, Phys Med Biol 2012) is available as an alternative
  (``TISSUE_MODELS``) to test a fit against a second, differently shaped
  truth.

Flow and ground-truth MBF
-------------------------
Every tissue model here is written as ``C_tissue(t) = F_b * (C_blood * R)(t)``
with the blood concentration ``C_blood`` as input and a residue ``R`` that is
1 at ``t = 0``: the impulse response ``F_b * R(t)`` starts at the blood flow
``F_b`` (mL blood / s / mL tissue).  That onset height is what Fermi-constrained
deconvolution estimates as flow [JeroschHerold1998], and the ground-truth MBF
is ``60 * F_b / 1.05 g/mL`` mL/min/g (``constants.TISSUE_DENSITY_G_PER_ML``).
How closely a Fermi fit recovers ``F_b`` depends on the shape of ``R`` and on
the frames fitted.  The capillary-transit residue stays near 1 for the
capillary transit time, as the Fermi shoulder assumes; the 2CXM residue falls
at once, which a fit on one frame per heartbeat cannot resolve, so it reads a
lower flow.  Measured with the per-curve reference fit
(``deconvolution.fit_fermi_curves``) on the noise-free segment-mean curves of
8 phantoms with the true AIF (``Testing/benchmarks/fermi_vs_tissue_model.py``):
fitting the whole ~60-beat curve, the fitted / true flow ratio falls with
flow (median 1.06 below 1.4 mL/min/g, 0.74 at 2.4-3.2, 0.63 at 3.2-4.1)
because the Fermi roll-off also has to follow the slow interstitial washout;
fitting the first pass only (frames up to 6 s after the AIF peak) gives
ratios 1.04, 1.05, 0.94 and a segment bias of -0.03 mL/min/g (SD 0.26).  The
2CXM gives 0.91, 0.73, 0.67 with the same window.  The pipeline's window is
read off the AIF instead (``deconvolution.first_pass_end_s``: the trough
before recirculation, at least 5 s after the peak), which gives 1.04, 1.03,
0.91 (2CXM 0.89, 0.73, 0.66) without a number tuned to this simulator.
"""

import numpy as np
from scipy import special

from . import constants as K
from . import phantom_motion
from .sequence import linear_reference_signal, relaxation_rate_per_s, saturation_recovery_flash_signal

# ---------------------------------------------------------------------------
# Parameter ranges
# ---------------------------------------------------------------------------

#: Ranges of the paired-AIF simulator.  (low, high) pairs are drawn uniformly.
#: Sources: the paper's acquisition (shared/PHYSICS.md) for the sequence, the
#: stress protocol for heart rate and dose; the rest are project choices made
#: wide on purpose so that the network generalises beyond one scanner.
AIF_PAIR_RANGES = {
    # Field strength, T: both centres of the paper (3 T and 1.5 T), p = 0.5 each.
    "field_strength_t": (1.5, 3.0),
    # Native blood T1 relative to the paper's T1b (haematocrit, oxygenation).
    "t1_blood_factor": (0.93, 1.07),
    # Stress heart rate, beats per minute (adenosine stress).
    "heart_rate_bpm": (55.0, 120.0),
    # Beat-to-beat RR variation (standard deviation, fraction of the RR interval).
    "rr_variation": (0.01, 0.08),
    # Linear drift of the RR interval over the acquisition (fraction), e.g.
    # heart rate still rising under adenosine or settling after the breath-hold.
    "rr_drift": (-0.10, 0.10),
    # Probability per frame that an ECG trigger is missed (interval doubles).
    "missed_trigger_probability": 0.01,
    # Peak LV blood-pool concentration, mM (0.075 mmol/kg gadobutrol; the
    # higher the peak, the stronger the saturation).
    "peak_conc_mM": (3.0, 15.0),
    # Time of first contrast arrival in the LV after the first frame, s.
    "arrival_s": (4.0, 16.0),
    # Time from arrival to the first-pass peak, s (bolus width).
    "rise_time_s": (1.5, 5.0),
    # Shape (dispersion) of the first pass: gamma-variate shape, > 1.
    "dispersion_shape": (1.5, 6.0),
    # Recirculation: size of the second pass relative to the first pass peak.
    "recirculation_fraction": (0.08, 0.40),
    # Delay of the recirculation peak after the first-pass peak, s.
    "recirculation_delay_s": (6.0, 16.0),
    # Systemic plateau relative to the first-pass peak.
    "plateau_fraction": (0.05, 0.25),
    # Saturation pulse efficiency (fraction of Mz destroyed).
    "saturation_efficiency": (0.90, 1.00),
    # Saturation time to the k-space centre, s (the paper's 100 ms, +-10 %).
    "saturation_time_s": (0.090, 0.110),
    # Readout repetition time, s (the paper's 2.2 ms and other vendors').
    "repetition_time_s": (0.0020, 0.0030),
    # Echo time, s.
    "echo_time_s": (0.0009, 0.0015),
    # Nominal flip angle, degrees (the paper's 15 degrees and common variants).
    "flip_angle_deg": (10.0, 20.0),
    # Actual / nominal flip angle (B1 error, +-15 %).
    "flip_angle_factor": (0.85, 1.15),
    # Probability of centric k-space ordering (centre at pulse 1); otherwise
    # linear ordering with the centre at the given pulse number.
    "centric_probability": 0.3,
    "linear_pulses_to_centre": (15, 45),
    # Blood R2* relaxivity, 1/s/mM, at 1.5 T and at 3 T (project choice:
    # susceptibility effects in the LV at bolus peak are small at TE ~1 ms but
    # not zero; the discussion of the paper names T2* as a residual effect).
    "r2star_per_s_per_mM": {1.5: (2.0, 8.0), 3.0: (4.0, 16.0)},
    # Native blood R2*, 1/s.
    "r2star_blood_native_per_s": (5.0, 30.0),
    # Noise SD of the AIF (a mean over many pixels) relative to the saturated
    # peak signal; drawn log-uniformly.
    "relative_noise_sd": (0.002, 0.03),
    # Equilibrium signal scale M0 (arbitrary scanner units).
    "signal_scale": (500.0, 5000.0),
}

#: Ranges of the "broad" physics mix of the network's training pairs
#: (``training.PHYSICS_MIXES``): ``AIF_PAIR_RANGES`` made wider on purpose, so
#: that part of the ensemble sees more physics than one scanner's and does not
#: learn a dose from a narrow prior (issue 13).  Project
#: choices: peaks from a quarter dose at rest to a double dose at stress,
#: drawn log-uniformly (dose is a scale); imperfect saturation down to 0.8
#: (simple pulses, B1 inhomogeneity, and the residual magnetisation a
#: multi-slice acquisition carries between slices, lumped into one
#: efficiency); saturation time 80-125 ms; B1 errors of +-30 %; longer echo
#: times and larger blood R2* relaxivities; irregular rhythms; a slice
#: profile (part of the slice sees a lower flip angle and a weaker saturation,
#: ``slice_edge_fraction``).  The simulated test set and the phantoms keep
#: ``AIF_PAIR_RANGES``, so the model card's own test set is unchanged.
BROAD_PAIR_RANGES = dict(
    AIF_PAIR_RANGES,
    t1_blood_factor=(0.88, 1.12),
    rr_variation=(0.01, 0.12),
    missed_trigger_probability=0.02,
    peak_conc_mM=(1.0, 25.0),
    rise_time_s=(1.5, 6.0),
    saturation_efficiency=(0.80, 1.00),
    saturation_time_s=(0.080, 0.125),
    repetition_time_s=(0.0019, 0.0033),
    echo_time_s=(0.0009, 0.0018),
    flip_angle_factor=(0.70, 1.30),
    centric_probability=0.4,
    linear_pulses_to_centre=(10, 50),
    r2star_per_s_per_mM={1.5: (2.0, 20.0), 3.0: (4.0, 40.0)},
    slice_edge_fraction=(0.0, 0.5),
    log_uniform=("peak_conc_mM",),
)

#: Flip angle and saturation efficiency at the slice edge relative to the
#: slice centre (``slice_edge_fraction`` of the signal comes from there).
#: Project choice: a typical excitation profile of a short readout pulse.
SLICE_EDGE_FLIP_FACTOR = 0.6
SLICE_EDGE_EFFICIENCY_FACTOR = 0.9

#: The AIF shape families, in the order of the integer codes used in parameters.
AIF_FAMILIES = ("gamma_recirculation", "population", "circulation")


# ---------------------------------------------------------------------------
# Heart-rate model
# ---------------------------------------------------------------------------

def simulate_frame_times(rng, n_curves, n_frames, heart_rate_bpm, rr_variation, rr_drift,
                         missed_trigger_probability=0.0):
    """Frame times of an ECG-triggered acquisition with one frame per heartbeat.

    The RR interval of beat ``i`` is ``RR * (1 + drift * i / n) * (1 + e_i)``
    with ``e_i`` a first-order autoregressive series (correlation 0.5) of
    standard deviation ``rr_variation``; a missed trigger doubles an interval.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    n_curves, n_frames : int
        Number of acquisitions and frames per acquisition.
    heart_rate_bpm, rr_variation, rr_drift : array_like, shape (n_curves,)
        Mean heart rate (beats/min), beat-to-beat SD (fraction) and total
        linear drift of the RR interval over the acquisition (fraction).
    missed_trigger_probability : float
        Probability per frame of a missed trigger.

    Returns
    -------
    numpy.ndarray, shape (n_curves, n_frames)
        Frame times in s, starting at 0, strictly increasing.
    """
    rr_s = 60.0 / np.asarray(heart_rate_bpm, dtype=float)[:, None]
    innovations = rng.standard_normal((n_curves, n_frames - 1))
    ar = np.empty_like(innovations)
    ar[:, 0] = innovations[:, 0]
    rho = 0.5
    for i in range(1, n_frames - 1):
        ar[:, i] = rho * ar[:, i - 1] + np.sqrt(1.0 - rho ** 2) * innovations[:, i]
    fraction = np.arange(n_frames - 1)[None, :] / max(n_frames - 1, 1)
    intervals = rr_s * (1.0 + np.asarray(rr_drift)[:, None] * fraction)
    intervals = intervals * np.clip(1.0 + np.asarray(rr_variation)[:, None] * ar, 0.6, 1.6)
    missed = rng.random((n_curves, n_frames - 1)) < missed_trigger_probability
    intervals = np.where(missed, 2.0 * intervals, intervals)
    times = np.zeros((n_curves, n_frames))
    times[:, 1:] = np.cumsum(intervals, axis=1)
    return times


# ---------------------------------------------------------------------------
# AIF shape families (concentration up to a scale; evaluated at any times)
# ---------------------------------------------------------------------------

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


def draw_aif_parameters(rng, n, field_strength_t=None, ranges=None):
    """Draw AIF, physiology and sequence parameters for ``n`` simulated curves.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    n : int
        Number of curves.
    field_strength_t : {None, 1.5, 3.0}
        Fix the field strength (T); ``None`` draws 1.5 T or 3 T with p = 0.5.
    ranges : dict, optional
        ``AIF_PAIR_RANGES`` (default) or ``BROAD_PAIR_RANGES``; a name in
        ``log_uniform`` is drawn log-uniformly.

    Returns
    -------
    dict of numpy.ndarray, each shape (n,)
        Parameter name -> values; units in the names (see ``AIF_PAIR_RANGES``).
    """
    r = AIF_PAIR_RANGES if ranges is None else ranges

    def uniform(key):
        low, high = r[key]
        if key in r.get("log_uniform", ()):
            return np.exp(rng.uniform(np.log(low), np.log(high), n))
        return rng.uniform(low, high, n)

    if field_strength_t is None:
        field = np.where(rng.random(n) < 0.5, 1.5, 3.0)
    else:
        field = np.full(n, float(field_strength_t))
    p = {"family": rng.integers(0, len(AIF_FAMILIES), n), "field_strength_t": field}
    for key in ("t1_blood_factor", "heart_rate_bpm", "rr_variation", "rr_drift", "peak_conc_mM",
                "arrival_s", "rise_time_s", "dispersion_shape", "recirculation_fraction",
                "recirculation_delay_s", "plateau_fraction", "saturation_efficiency", "saturation_time_s",
                "repetition_time_s", "echo_time_s", "flip_angle_deg", "flip_angle_factor",
                "r2star_blood_native_per_s", "signal_scale"):
        p[key] = uniform(key)
    t1_nominal = np.where(field == 3.0, K.T1_BLOOD_S[3.0], K.T1_BLOOD_S[1.5])
    p["t1_blood_s"] = t1_nominal * p["t1_blood_factor"]
    # Shapes that only some families use, drawn for all to keep one table.
    p["injection_duration_s"] = rng.uniform(0.75, 3.0, n)  # 3.75-9 mL gadobutrol at 3-5 mL/s
    p["systemic_shape"] = rng.uniform(2.0, 8.0, n)
    p["washout_rate_per_s"] = rng.uniform(0.002, 0.02, n)
    centric = rng.random(n) < r["centric_probability"]
    low, high = r["linear_pulses_to_centre"]
    linear = rng.integers(low, high + 1, n)
    # Keep at least 5 ms of free recovery before the readout starts.
    max_pulses = np.floor((p["saturation_time_s"] - 0.005) / p["repetition_time_s"]) + 1
    p["pulses_to_centre"] = np.where(centric, 1, np.minimum(linear, max_pulses)).astype(int)
    p["r2star_per_s_per_mM"] = np.where(
        field == 3.0,
        rng.uniform(*r["r2star_per_s_per_mM"][3.0], n),
        rng.uniform(*r["r2star_per_s_per_mM"][1.5], n),
    )
    low, high = r["relative_noise_sd"]
    p["relative_noise_sd"] = np.exp(rng.uniform(np.log(low), np.log(high), n))
    # Drawn last, and only when the ranges have it, so that the default draws stay as they were.
    p["slice_edge_fraction"] = uniform("slice_edge_fraction") if "slice_edge_fraction" in r else np.zeros(n)
    return p


def acquisition_signal(conc_mM, t1_native_s, r2star_native_per_s, params):
    """Signal of a tissue on the standard slices, for a batch of acquisitions.

    Parameters
    ----------
    conc_mM : array_like, shape (n, m)
        Contrast concentration, mM.
    t1_native_s, r2star_native_per_s : array_like, shape (n,) or scalar
        Native T1 (s) and native R2* (1/s) of the tissue.
    params : dict of numpy.ndarray, each shape (n,)
        Sequence parameters and R2* relaxivity (``draw_aif_parameters``);
        ``signal_scale`` is the equilibrium magnetisation (equal proton density
        for all tissues, the assumption behind the paper's linear conversion).

    Returns
    -------
    numpy.ndarray, shape (n, m)
        Noise-free signal in scanner units.
    """
    col = {key: np.asarray(params[key], dtype=float)[:, None] for key in (
        "r2star_per_s_per_mM", "saturation_time_s", "repetition_time_s", "flip_angle_deg",
        "flip_angle_factor", "pulses_to_centre", "saturation_efficiency", "echo_time_s", "signal_scale")}
    t1 = np.reshape(np.asarray(t1_native_s, dtype=float), (-1, 1))
    r2star_native = np.reshape(np.asarray(r2star_native_per_s, dtype=float), (-1, 1))
    r1 = relaxation_rate_per_s(1.0 / t1, K.R1_RELAXIVITY_PER_S_PER_MM, conc_mM)
    r2star = relaxation_rate_per_s(r2star_native, col["r2star_per_s_per_mM"], conc_mM)

    def signal(flip_factor, efficiency_factor):
        return saturation_recovery_flash_signal(
            r1,
            saturation_time_s=col["saturation_time_s"],
            repetition_time_s=col["repetition_time_s"],
            flip_angle_deg=col["flip_angle_deg"] * col["flip_angle_factor"] * flip_factor,
            pulses_to_centre=col["pulses_to_centre"],
            saturation_efficiency=col["saturation_efficiency"] * efficiency_factor,
            echo_time_s=col["echo_time_s"],
            r2star_per_s=r2star,
            proton_density=col["signal_scale"],
        )

    centre = signal(1.0, 1.0)
    edge_fraction = params.get("slice_edge_fraction")
    if edge_fraction is None or not np.any(edge_fraction):
        return centre
    edge_fraction = np.asarray(edge_fraction, dtype=float)[:, None]
    edge = signal(SLICE_EDGE_FLIP_FACTOR, SLICE_EDGE_EFFICIENCY_FACTOR)
    return (1.0 - edge_fraction) * centre + edge_fraction * edge


def blood_signal(conc_mM, params):
    """Saturated signal of the LV blood pool on the standard slices.

    Parameters
    ----------
    conc_mM : array_like, shape (n, m)
        Blood concentration, mM.
    params : dict of numpy.ndarray, each shape (n,)
        Sequence and relaxation parameters (``draw_aif_parameters``).

    Returns
    -------
    numpy.ndarray, shape (n, m)
        Noise-free signal in scanner units.
    """
    return acquisition_signal(conc_mM, params["t1_blood_s"], params["r2star_blood_native_per_s"], params)


class AIFPairs(object):
    """Paired saturated and reference AIFs with their ground truth.

    Attributes
    ----------
    times_s : numpy.ndarray, (n, n_frames)
        Frame times, s.
    conc_mM : numpy.ndarray, (n, n_frames)
        True blood concentration at the frame times, mM.
    saturated : numpy.ndarray, (n, n_frames)
        Saturated AIF as the standard slices record it, with noise (signal units).
    saturated_noiseless : numpy.ndarray, (n, n_frames)
        The same without noise.
    reference : numpy.ndarray, (n, n_frames)
        Unsaturated reference ``S0 * (1 + r1 * T1 * C)`` (noise-free), the
        network's target.
    baseline_signal : numpy.ndarray, (n,)
        Pre-contrast signal S0 shared by both curves.
    params : dict of numpy.ndarray, each (n,)
        Every parameter drawn (``draw_aif_parameters``).
    """

    def __init__(self, times_s, conc_mM, saturated, saturated_noiseless, reference, baseline_signal, params):
        self.times_s = times_s
        self.conc_mM = conc_mM
        self.saturated = saturated
        self.saturated_noiseless = saturated_noiseless
        self.reference = reference
        self.baseline_signal = baseline_signal
        self.params = params

    def __len__(self):
        return self.times_s.shape[0]


def simulate_aif_pairs(n, n_frames=70, seed=0, field_strength_t=None, chunk_size=20000, ranges=None):
    """Simulate ``n`` paired saturated / unsaturated AIFs.

    Parameters
    ----------
    n : int
        Number of pairs.
    n_frames : int, optional
        Frames (heartbeats) per curve.
    seed : int or numpy.random.Generator, optional
        Seed for reproducibility (the same seed gives identical pairs).
    field_strength_t : {None, 1.5, 3.0}, optional
        Fix the field strength, T; ``None`` draws both.
    chunk_size : int, optional
        Curves simulated at a time (bounds memory; does not change results).
    ranges : dict, optional
        Parameter ranges: ``AIF_PAIR_RANGES`` (default) or ``BROAD_PAIR_RANGES``.

    Returns
    -------
    AIFPairs
        Curves on the frame times of a heart-rate model; see ``AIFPairs``.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ranges = AIF_PAIR_RANGES if ranges is None else ranges
    params = draw_aif_parameters(rng, n, field_strength_t, ranges)
    times = simulate_frame_times(rng, n, n_frames, params["heart_rate_bpm"], params["rr_variation"],
                                 params["rr_drift"], ranges["missed_trigger_probability"])
    noise = rng.standard_normal((n, n_frames))
    conc = np.empty((n, n_frames))
    sat = np.empty((n, n_frames))
    for start in range(0, n, chunk_size):
        rows = slice(start, min(start + chunk_size, n))
        sub = {key: value[rows] for key, value in params.items()}
        conc[rows] = aif_concentration_mM(times[rows], sub)
        sat[rows] = blood_signal(conc[rows], sub)
    baseline = blood_signal(np.zeros((n, 1)), params)[:, 0]
    reference = linear_reference_signal(baseline[:, None], conc, params["t1_blood_s"][:, None],
                                        K.R1_RELAXIVITY_PER_S_PER_MM)
    noise_sd = params["relative_noise_sd"] * sat.max(axis=1)
    noisy = sat + noise_sd[:, None] * noise
    return AIFPairs(times, conc, noisy, sat, reference, baseline, params)


# ---------------------------------------------------------------------------
# Myocardial tissue models (residues normalised to 1 at t = 0)
# ---------------------------------------------------------------------------

def capillary_transit_residue(times_s, blood_flow_per_s, permeability_surface_per_s, blood_volume_fraction,
                              interstitial_volume_fraction, capillary_transit_cv, haematocrit=K.HAEMATOCRIT):
    """Residue of the tissue-homogeneity model with gamma-distributed capillary transit times.

    Each capillary is the adiabatic approximation to the tissue-homogeneity
    model (AATH) [St Lawrence & Lee 1998]: tracer stays intravascular
    (``R = 1``) for the capillary transit time ``Tc``, then the extracted
    fraction ``E = 1 - exp(-PS / Fp)`` washes out of the interstitium at
    ``k_ep = E * Fp / ve``.  Transit times vary between capillaries; averaging
    the AATH over a gamma distribution of ``Tc`` with mean ``vb / Fb`` and
    coefficient of variation ``cv`` (shape ``a = 1 / cv**2``, scale
    ``theta = vb / (Fb a)``) gives the closed form of Schabel (MRM 2012)::

        R(t) = Q(a, t / theta) + E exp(-k_ep t) (1 - k_ep theta)**(-a) P(a, t (1 / theta - k_ep))

    with ``P`` and ``Q`` the regularised lower and upper incomplete gamma
    functions.  ``R(0) = 1``, so the impulse response ``Fb * R`` starts at the
    blood flow, and ``cv -> 0`` gives the plain AATH.  The closed form needs
    ``k_ep * theta < 1``; here ``k_ep theta = E vp / (ve a) < vp / ve``,
    below 1 for any tissue with more interstitial than plasma volume.

    Parameters
    ----------
    times_s : array_like
        Times after the impulse, s (>= 0).
    blood_flow_per_s : array_like
        Blood flow Fb, mL blood per s per mL tissue (1/s).
    permeability_surface_per_s : array_like
        Permeability-surface area product PS, 1/s.
    blood_volume_fraction, interstitial_volume_fraction : array_like
        ``vb`` and ``ve``, mL per mL tissue.
    capillary_transit_cv : array_like
        Coefficient of variation of the capillary transit times (> 0).
    haematocrit : float, optional
        Blood haematocrit (plasma flow ``Fp = Fb (1 - Hct)``).

    Returns
    -------
    numpy.ndarray
        R(t), dimensionless, broadcast shape of the inputs.

    Raises
    ------
    ValueError
        If ``k_ep * theta >= 1`` somewhere (interstitial volume too small for
        the closed form).
    """
    t = np.asarray(times_s, dtype=float)
    fb = np.asarray(blood_flow_per_s, dtype=float)
    fp = fb * (1.0 - haematocrit)
    extraction = -np.expm1(-np.asarray(permeability_surface_per_s) / fp)
    k_ep = extraction * fp / np.asarray(interstitial_volume_fraction)
    shape = 1.0 / np.asarray(capillary_transit_cv, dtype=float) ** 2
    scale_s = np.asarray(blood_volume_fraction) / fb / shape
    if np.any(k_ep * scale_s >= 1.0):
        raise ValueError("the capillary-transit residue needs k_ep * theta < 1 (ve larger than vp)")
    intravascular = special.gammaincc(shape, t / scale_s)
    extravascular = extraction * np.exp(-k_ep * t - shape * np.log1p(-k_ep * scale_s)) * special.gammainc(
        shape, t * (1.0 / scale_s - k_ep))
    return intravascular + extravascular


def two_compartment_residue(times_s, blood_flow_per_s, permeability_surface_per_s, blood_volume_fraction,
                            interstitial_volume_fraction, haematocrit=K.HAEMATOCRIT):
    """Residue function of the two-compartment exchange model, normalised to 1 at t = 0.

    Plasma compartment (volume ``vp = vb (1 - Hct)``) fed by plasma flow
    ``Fp = Fb (1 - Hct)``, exchanging with the interstitium (``ve``) through
    ``PS`` [Sourbron2011].  With the blood concentration as input the tissue
    concentration is ``Fb * (C_blood * R)(t)``, so the impulse response
    ``Fb * R(t)`` starts at the blood flow ``Fb``: the quantity Fermi
    deconvolution estimates as MBF.

    Parameters
    ----------
    times_s : array_like
        Times after the impulse, s (>= 0).
    blood_flow_per_s : array_like
        Blood flow Fb, mL blood per s per mL tissue (1/s).
    permeability_surface_per_s : array_like
        Permeability-surface area product PS, 1/s.
    blood_volume_fraction, interstitial_volume_fraction : array_like
        ``vb`` and ``ve``, mL per mL tissue.
    haematocrit : float, optional
        Blood haematocrit.

    Returns
    -------
    numpy.ndarray
        R(t), dimensionless, broadcast shape of the inputs.
    """
    t = np.asarray(times_s, dtype=float)
    fp = np.asarray(blood_flow_per_s) * (1.0 - haematocrit)
    vp = np.asarray(blood_volume_fraction) * (1.0 - haematocrit)
    ve = np.asarray(interstitial_volume_fraction)
    ps = np.asarray(permeability_surface_per_s)
    # d/dt [cp, ce] = A [cp, ce] with R(t) = [vp, ve] expm(A t) [1/vp, 0].
    a11 = -(fp + ps) / vp
    a12 = ps / vp
    a21 = ps / ve
    a22 = -ps / ve
    half_trace = 0.5 * (a11 + a22)
    root = np.sqrt(half_trace ** 2 - (a11 * a22 - a12 * a21))
    lam_plus, lam_minus = half_trace + root, half_trace - root
    e_plus, e_minus = np.exp(lam_plus * t), np.exp(lam_minus * t)
    p0 = (lam_plus * e_minus - lam_minus * e_plus) / (lam_plus - lam_minus)
    p1 = (e_plus - e_minus) / (lam_plus - lam_minus)
    return (p0 + p1 * a11) + (ve / vp) * (p1 * a21)


#: Tissue models of the phantom: name -> residue function (1 at t = 0).  The
#: residue's keyword arguments are the keys of ``response_params`` in
#: ``tissue_concentration_mM``.
TISSUE_MODELS = {"capillary-transit": capillary_transit_residue, "two-compartment": two_compartment_residue}
#: Parameters each tissue model takes after the blood flow, in the order of
#: its residue function's arguments (also the per-segment draws it uses).
TISSUE_MODEL_PARAMETERS = {
    "capillary-transit": ("permeability_surface_per_s", "blood_volume_fraction", "interstitial_volume_fraction",
                          "capillary_transit_cv"),
    "two-compartment": ("permeability_surface_per_s", "blood_volume_fraction", "interstitial_volume_fraction"),
}
#: One line on each tissue model, for the ground-truth description.
TISSUE_MODEL_DESCRIPTIONS = {
    "capillary-transit": "tissue homogeneity (AATH) with gamma-distributed capillary transit times (Schabel 2012)",
    "two-compartment": "two-compartment exchange model (2CXM, Sourbron & Buckley 2012)",
}
#: The myocardial model of the phantom unless chosen otherwise.
DEFAULT_TISSUE_MODEL = "capillary-transit"


def tissue_concentration_mM(aif_times_s, aif_mM, response_params, delay_s, output_times_s,
                            tissue_model=DEFAULT_TISSUE_MODEL):
    """Tissue concentration ``Fb * (C_blood(t - delay) * R)(t)`` at the frame times.

    The convolution is evaluated on the uniform fine grid of the AIF (trapezoid
    rule, by FFT) and sampled at ``output_times_s`` by linear interpolation.

    Parameters
    ----------
    aif_times_s : numpy.ndarray, shape (m,)
        Uniform fine time grid starting at 0, s.
    aif_mM : numpy.ndarray, shape (m,)
        Blood concentration on that grid, mM (0 before arrival).
    response_params : dict of numpy.ndarray, each (n_pixels,)
        Keyword arguments of the model's residue function: for both models
        ``blood_flow_per_s``, ``permeability_surface_per_s``,
        ``blood_volume_fraction``, ``interstitial_volume_fraction``; for the
        capillary-transit model also ``capillary_transit_cv``.
    delay_s : numpy.ndarray, shape (n_pixels,)
        Transit delay from the LV to the tissue, s.
    output_times_s : numpy.ndarray, shape (n_frames,)
        Frame times, s.
    tissue_model : str, optional
        A key of ``TISSUE_MODELS``.

    Returns
    -------
    numpy.ndarray, shape (n_pixels, n_frames)
        Tissue concentration, mM (mmol per L of tissue).
    """
    dt = aif_times_s[1] - aif_times_s[0]
    m = aif_times_s.size
    residue = TISSUE_MODELS[tissue_model](aif_times_s[None, :], **{k: np.asarray(v)[:, None]
                                                                  for k, v in response_params.items()})
    flow = np.asarray(response_params["blood_flow_per_s"])[:, None]
    shifted = np.interp(aif_times_s[None, :] - np.asarray(delay_s)[:, None], aif_times_s, aif_mM, left=0.0)
    size = 2 * m
    conv = np.fft.irfft(np.fft.rfft(shifted, size) * np.fft.rfft(residue, size), size)[:, :m] * dt
    # Trapezoid end-point correction (the AIF is 0 at t = 0, R(0) = 1).
    conv -= 0.5 * dt * shifted * residue[:, :1]
    conc_fine = flow * conv
    return np.stack([np.interp(output_times_s, aif_times_s, row) for row in conc_fine])


# ---------------------------------------------------------------------------
# 4D perfusion phantom
# ---------------------------------------------------------------------------

#: Ranges of the phantom (project choices from typical stress perfusion CMR).
PHANTOM_RANGES = {
    # Healthy stress MBF per AHA segment, mL/min/g.
    "healthy_mbf_ml_min_g": (2.5, 4.0),
    # Ischaemic territory stress MBF, mL/min/g.
    "ischaemic_mbf_ml_min_g": (0.6, 1.3),
    # Ischaemic subendocardium / subepicardium flow ratio when the gradient is on.
    "ischaemic_endo_epi_ratio": (0.55, 0.8),
    # Tissue parameters per segment (both tissue models).
    "blood_volume_fraction": (0.09, 0.13),
    "permeability_surface_per_s": (0.012, 0.025),
    "interstitial_volume_fraction": (0.15, 0.25),
    # Coefficient of variation of capillary transit times (capillary-transit
    # model): heterogeneity of microvascular flow and path length, relative
    # dispersions of 0.3-0.7 (project choice).
    "capillary_transit_cv": (0.3, 0.7),
    # Delay between the LV AIF and the myocardium, s.
    "tissue_delay_s": (0.3, 1.2),
    # LV cavity radius (mm) per slice level and wall thickness (mm).
    "lv_radius_mm": {"basal": (22.0, 27.0), "mid": (19.0, 23.0), "apical": (12.0, 16.0)},
    "wall_thickness_mm": {"basal": (8.5, 11.0), "mid": (9.0, 11.5), "apical": (7.0, 9.0)},
    # Anterior RV insertion angle from the anterior direction towards the septum
    # (degrees) and angular span of the RV attachment.
    "rv_insertion_deg": (20.0, 40.0),
    "rv_span_deg": (105.0, 135.0),
    # Baseline SNR of a myocardial pixel (pre-contrast signal / noise SD).
    "myocardial_baseline_snr": (8.0, 14.0),
    # Proton density of myocardium relative to blood: tissue water contents
    # give 0.95 +- 0.04 (constants.MYOCARDIUM_TO_BLOOD_PROTON_DENSITY); drawn
    # per phantom so that the conversion's assumed value is right only on
    # average.  Drawn from its own stream of the seed (_PROTON_DENSITY_TAG),
    # so the other draws of a seed are those of earlier versions.
    "myocardium_to_blood_proton_density": (0.91, 0.99),
}

#: Geometry of the default phantom: matrix, in-plane pixel size (mm), distance
#: between the basal, mid and apical slice centres (mm).
PHANTOM_MATRIX = 128
PHANTOM_PIXEL_MM = 1.6
PHANTOM_SLICE_GAP_MM = 18.0
#: Direction of the LV long axis (base to apex) in RAS: towards the patient's
#: left, anterior and inferior, as in a typical heart.
LONG_AXIS_RAS = np.array([-0.55, 0.50, -0.67])

_SEGMENT_START = {"basal": 1, "mid": 7}


def aha_segment_from_angle(angle_deg, level):
    """AHA segment (1-16) from the angle around the LV centre.

    Parameters
    ----------
    angle_deg : array_like
        Angle from the anterior RV insertion point, positive towards the septum,
        degrees (any range; reduced modulo 360).
    level : {'basal', 'mid', 'apical'}
        Slice level.

    Returns
    -------
    numpy.ndarray of int
        Basal/mid: 60-degree sectors, anteroseptal first (2|8 at 0-60, 3|9,
        4|10, 5|11, 6|12, then 1|7 at 300-360).  Apical: 90-degree sectors
        centred on septal (60), inferior (150), lateral (240) and anterior
        (330) directions: 14 at 15-105, 15 at 105-195, 16 at 195-285,
        13 at 285-15 (shared/PHYSICS.md).
    """
    angle = np.mod(np.asarray(angle_deg, dtype=float), 360.0)
    if level == "apical":
        sector = np.floor(np.mod(angle - 15.0, 360.0) / 90.0).astype(int)  # 0 septal .. 3 anterior
        return np.array([14, 15, 16, 13])[sector]
    sector = np.floor(angle / 60.0).astype(int)  # 0 anteroseptal .. 5 anterior
    return _SEGMENT_START[level] + np.array([1, 2, 3, 4, 5, 0])[sector]


def heart_axes_ras(long_axis_ras=LONG_AXIS_RAS):
    """Unit vectors of the heart frame in patient (RAS) coordinates.

    The anterior direction is the patient's anterior (+A) projected onto the
    short-axis plane; the septal direction is the patient's right (+R, where
    the RV lies) projected onto the plane and made orthogonal to both.  No
    clockwise convention is assumed: image orientation follows from these.

    Returns
    -------
    tuple of numpy.ndarray
        ``(long_axis, anterior, septal)``, each shape (3,).
    """
    long_axis = np.asarray(long_axis_ras, dtype=float)
    long_axis = long_axis / np.linalg.norm(long_axis)

    def in_plane(vector, *against):
        v = np.asarray(vector, dtype=float)
        for axis in against:
            v = v - np.dot(v, axis) * axis
        return v / np.linalg.norm(v)

    anterior = in_plane([0.0, 1.0, 0.0], long_axis)
    septal = in_plane([1.0, 0.0, 0.0], long_axis, anterior)
    return long_axis, anterior, septal


def phantom_geometry(matrix=PHANTOM_MATRIX, pixel_mm=PHANTOM_PIXEL_MM, slice_gap_mm=PHANTOM_SLICE_GAP_MM,
                     apex_first=False, mirrored=False):
    """IJK-to-RAS matrix of a short-axis stack and the LV axis point of each slice.

    The default image is displayed as short-axis views usually are: RV (septum)
    on the left, anterior wall at the top, basal slice first.  ``apex_first``
    stores the slices apex to base and ``mirrored`` flips the image columns;
    both only change the geometry, which says so, never the anatomy.

    Parameters
    ----------
    matrix : int
        Rows and columns per slice.
    pixel_mm, slice_gap_mm : float
        In-plane pixel size and distance between slice centres, mm.
    apex_first, mirrored : bool
        Storage order of the slices; in-plane column flip.

    Returns
    -------
    ijk_to_ras : numpy.ndarray, (4, 4)
        Voxel (i, j, k) to RAS (mm).
    lv_centres_ras : numpy.ndarray, (3, 3)
        RAS point of the LV axis in each stored slice (mm).
    levels : tuple of str
        Slice level of each stored slice ('basal', 'mid', 'apical').
    """
    long_axis, anterior, septal = heart_axes_ras()
    column_dir = septal if mirrored else -septal        # +i: towards the lateral wall (screen right)
    row_dir = -anterior                                 # +j: towards the inferior wall (screen down)
    slice_dir = -long_axis if apex_first else long_axis
    levels = K.SLICE_LEVELS[::-1] if apex_first else K.SLICE_LEVELS
    # The LV axis passes through image position (0.56, 0.50) of the matrix so
    # that the RV, on the septal side, fits in the field of view.
    base_centre_ras = np.array([20.0, -10.0, 40.0])
    first_centre = base_centre_ras + (2 * slice_gap_mm * long_axis if apex_first else 0.0)
    centre_i = (1.0 - 0.56 if mirrored else 0.56) * (matrix - 1)
    centre_j = 0.50 * (matrix - 1)
    origin = first_centre - centre_i * pixel_mm * column_dir - centre_j * pixel_mm * row_dir
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, 0] = pixel_mm * column_dir
    ijk_to_ras[:3, 1] = pixel_mm * row_dir
    ijk_to_ras[:3, 2] = slice_gap_mm * slice_dir
    ijk_to_ras[:3, 3] = origin
    lv_centres = np.array([first_centre + k * slice_gap_mm * slice_dir for k in range(3)])
    return ijk_to_ras, lv_centres, levels


#: Labels of the phantom's tissue classes.
TISSUE_LABELS = {"air": 0, "other tissue": 1, "lv blood": 2, "myocardium": 3, "rv blood": 4}
#: Native T1 (s) and R2* (1/s) of the non-blood tissue around the heart
#: (skeletal muscle and liver-like values; project choice).
OTHER_TISSUE_T1_S = {3.0: 1.40, 1.5: 1.00}
TISSUE_R2STAR_NATIVE_PER_S = 30.0
#: Fine time step of the convolution, s.
FINE_STEP_S = 0.02
#: Tag of the random stream of a phantom's myocardium-to-blood proton density.
_PROTON_DENSITY_TAG = 0x9D


class Phantom(object):
    """A simulated 4D perfusion study with its ground truth.

    Attributes
    ----------
    frames : numpy.ndarray, (n_frames, 3, n_rows, n_cols), float32
        Magnitude images (scanner units), slice k, row j, column i.
    frame_times_s : numpy.ndarray, (n_frames,)
        Acquisition time of each frame, s.
    ijk_to_ras : numpy.ndarray, (4, 4)
        Voxel to patient (RAS, mm) matrix.
    levels : tuple of str
        Slice level of each stored slice.
    labels : numpy.ndarray, (3, n_rows, n_cols), uint8
        Tissue class (``TISSUE_LABELS``).
    aha_segments : numpy.ndarray, (3, n_rows, n_cols), uint8
        AHA segment 1-16 in the myocardium, 0 elsewhere.
    mbf_ml_min_g : numpy.ndarray, (3, n_rows, n_cols)
        True stress MBF, mL/min/g, NaN outside the myocardium.
    rv_insertion_ras : dict
        ``{'anterior': (3, 3), 'inferior': (3, 3)}`` RAS points (mm), one per stored slice.
    truth : dict of numpy.ndarray
        Curves and parameters (see ``write_phantom``'s ground-truth file).
    acquisition : dict
        Every acquisition and relaxation parameter used (JSON-serialisable).
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    @property
    def lv_blood_mask(self):
        """LV blood pool, bool (3, n_rows, n_cols)."""
        return self.labels == TISSUE_LABELS["lv blood"]

    @property
    def myocardium_mask(self):
        """LV myocardium, bool (3, n_rows, n_cols)."""
        return self.labels == TISSUE_LABELS["myocardium"]

    @property
    def rv_insertion_labels(self):
        """Label of each slice's anterior RV insertion point, naming its level (tuple of str)."""
        return tuple("RV insertion anterior {}".format(level) for level in self.levels)

    def segment_mbf_ml_min_g(self):
        """True MBF per AHA segment (mean over its pixels), mL/min/g, array of 16."""
        return np.array([np.mean(self.mbf_ml_min_g[self.aha_segments == s]) for s in K.AHA_SEGMENTS])


def _draw_segment_mbf(rng, ischemic):
    r = PHANTOM_RANGES
    mbf = rng.uniform(*r["healthy_mbf_ml_min_g"], 16)
    ischaemic_segments = np.zeros(16, bool)
    if ischemic != "none":
        members = np.array(K.CORONARY_TERRITORIES[ischemic]) - 1
        mbf[members] = rng.uniform(*r["ischaemic_mbf_ml_min_g"], members.size)
        ischaemic_segments[members] = True
    return mbf, ischaemic_segments


def _draw_slice_geometry(rng, level):
    r = PHANTOM_RANGES
    radius = rng.uniform(*r["lv_radius_mm"][level])
    return {"level": level, "lv_radius_mm": radius,
            "epicardial_radius_mm": radius + rng.uniform(*r["wall_thickness_mm"][level]),
            "rv_insertion_deg": rng.uniform(*r["rv_insertion_deg"]), "rv_span_deg": rng.uniform(*r["rv_span_deg"])}


def _slice_anatomy(geometry, x_ant, x_sep):
    """Masks, AHA segments and transmural position of one slice in heart coordinates (mm)."""
    level, radius, epi = geometry["level"], geometry["lv_radius_mm"], geometry["epicardial_radius_mm"]
    insertion, span = geometry["rv_insertion_deg"], geometry["rv_span_deg"]
    dist = np.hypot(x_ant, x_sep)
    angle = np.degrees(np.arctan2(x_sep, x_ant))
    # RV: a circle through the two insertion points on the epicardium, centred
    # on the bisector of the attachment, 0.95 epicardial radii from the LV axis.
    middle = np.radians(insertion + 0.5 * span)
    centre = 0.95 * epi * np.array([np.cos(middle), np.sin(middle)])
    rv_radius = np.hypot(epi * np.sin(np.radians(0.5 * span)), epi * np.cos(np.radians(0.5 * span)) - 0.95 * epi)
    rv_dist = np.hypot(x_ant - centre[0], x_sep - centre[1])
    labels = np.full(x_ant.shape, TISSUE_LABELS["other tissue"], np.uint8)
    labels[(rv_dist < rv_radius + 3.0) & (dist >= epi)] = TISSUE_LABELS["other tissue"]  # RV free wall
    labels[(rv_dist < rv_radius) & (dist >= epi + 1.0)] = TISSUE_LABELS["rv blood"]
    labels[(dist >= radius) & (dist < epi)] = TISSUE_LABELS["myocardium"]
    labels[dist < radius] = TISSUE_LABELS["lv blood"]
    segments = np.where(labels == TISSUE_LABELS["myocardium"], aha_segment_from_angle(angle - insertion, level), 0)
    transmural = np.clip((dist - radius) / (epi - radius), 0.0, 1.0)
    points = {name: epi * np.array([np.cos(np.radians(a)), np.sin(np.radians(a))])
              for name, a in (("anterior", insertion), ("inferior", insertion + span))}
    return labels, segments.astype(np.uint8), transmural, points


def _reversed_slice_axis(ijk_to_ras, points_ras):
    """``ijk_to_ras`` with its slice axis reversed, and points moved with it (same voxel positions)."""
    stored = np.array(ijk_to_ras, dtype=float)
    stored[:3, 2] *= -1.0
    moved = {}
    for name, points in points_ras.items():
        ijk = np.linalg.solve(ijk_to_ras[:3, :3], (np.asarray(points) - ijk_to_ras[:3, 3]).T)
        moved[name] = (stored[:3, :3] @ ijk).T + stored[:3, 3]
    return stored, moved


#: Tag of the random stream of a phantom's respiratory motion.
_MOTION_TAG = 0xB4E


def _moved_signal(signal, kind, seed, rng, times, ijk_to_ras, lv_centres, rv_params, aif, labels, other_signal):
    """The noise-free signal moved by respiration (``phantom_motion``), and the motion drawn.

    The motion has its own random stream of the seed (``_MOTION_TAG``), so the
    other draws, the noise included, are those of the still phantom.
    """
    own_stream = ([_MOTION_TAG, int(seed)] if isinstance(seed, (int, np.integer))
                  else rng.bit_generator.seed_seq.spawn(1)[0])
    long_axis, _, _ = heart_axes_ras()
    centres_ijk = np.linalg.solve(ijk_to_ras[:3, :3], (lv_centres - ijk_to_ras[:3, 3]).T).T
    moved = phantom_motion.draw_motion(
        np.random.default_rng(own_stream), kind, times, ijk_to_ras, long_axis,
        rv_arrival_s=float(np.asarray(rv_params["arrival_s"]).ravel()[0]), lv_peak_s=float(times[np.argmax(aif)]),
        n_slices=labels.shape[0])
    body = labels != TISSUE_LABELS["air"]
    signal = phantom_motion.move_frames(signal, body, other_signal, centres_ijk[:, [1, 0]], moved)
    return signal, moved


def simulate_phantom(seed=0, field_strength_t=3.0, ischemic="none", subendocardial_gradient=True, n_frames=60,
                     matrix=PHANTOM_MATRIX, pixel_mm=PHANTOM_PIXEL_MM, apex_first=False, mirrored=False,
                     tissue_model=DEFAULT_TISSUE_MODEL, mirrored_slice_axis=False, motion="none"):
    """Simulate a three-slice short-axis stress perfusion study with known MBF.

    Parameters
    ----------
    seed : int, optional
        Seed; the same seed and options give an identical phantom.
    field_strength_t : {3.0, 1.5}, optional
        Field strength, T (sets native T1 values and R2* relaxivity range).
    ischemic : {'none', 'LAD', 'RCA', 'LCX'}, optional
        Territory given ischaemic stress MBF (0.6-1.3 mL/min/g).
    subendocardial_gradient : bool, optional
        Make ischaemic segments' flow lower in the subendocardium than in the
        subepicardium (the segment mean stays near the drawn value).
    n_frames : int, optional
        Heartbeats (one frame each).
    matrix : int, optional
        Rows and columns per slice.
    pixel_mm : float, optional
        In-plane pixel size, mm.
    apex_first, mirrored : bool, optional
        Store slices apex first / flip the columns; the geometry records it.
    tissue_model : str, optional
        Myocardial tissue model, a key of ``TISSUE_MODELS``.  The same seed
        gives the same anatomy, flows and tissue parameters with either model.
    mirrored_slice_axis : bool, optional
        The "mirrored geometry" variant: the same images, masks and truth
        labels, stored with the slice axis of ``ijk_to_ras`` reversed (a
        common conversion accident), so that in patient coordinates the heart
        is mirrored and its base-to-apex axis points away from a normal
        heart's; the RV insertion points move with the geometry (same voxel
        positions).  Unlike ``apex_first`` and ``mirrored``, the geometry no
        longer tells the truth about the anatomy: only the images do.
    motion : {'none', 'in-plane', 'through-plane'} or bool, optional
        Respiratory motion (``phantom_motion``): free breathing before and
        after a breath-held first pass, in-plane, or in-plane with a
        through-plane component (``True`` means "in-plane").  The truth
        (masks, MBF map, RV points) stays at the breath-held position; the
        displacement of every frame and slice is in ``truth``
        (``motion_shift_px``, ``motion_shift_ras_mm``,
        ``motion_through_plane_mm``, ``motion_breath_hold_s``).  The motion
        is drawn from the seed's own stream, so the same seed with and
        without motion gives the same study and the same noise, only moved.

    Returns
    -------
    Phantom
        Images, geometry, ground truth and acquisition parameters.
    """
    if field_strength_t not in K.SUPPORTED_FIELD_STRENGTHS_T:
        raise ValueError("field_strength_t must be 1.5 or 3.0")
    if ischemic not in ("none",) + tuple(K.CORONARY_TERRITORIES):
        raise ValueError("ischemic must be 'none', 'LAD', 'RCA' or 'LCX'")
    if tissue_model not in TISSUE_MODELS:
        raise ValueError("tissue_model must be one of {}".format(", ".join(sorted(TISSUE_MODELS))))
    motion = {True: "in-plane", False: "none", None: "none"}.get(motion, motion)
    if motion not in phantom_motion.MOTION_KINDS:
        raise ValueError("motion must be one of {}".format(", ".join(phantom_motion.MOTION_KINDS)))
    rng = np.random.default_rng(seed)
    field = float(field_strength_t)
    params = draw_aif_parameters(rng, 1, field)
    # The phantom uses the paper's T1 values exactly (no T1 mismatch that a
    # user could not know) and an arrival late enough for the earlier RV.
    params["t1_blood_factor"][:] = 1.0
    params["t1_blood_s"][:] = K.T1_BLOOD_S[field]
    params["arrival_s"][:] = rng.uniform(7.0, 13.0)
    times = simulate_frame_times(rng, 1, n_frames, params["heart_rate_bpm"], params["rr_variation"],
                                 params["rr_drift"], AIF_PAIR_RANGES["missed_trigger_probability"])[0]
    fine_t = np.arange(0.0, times[-1] + 1.0, FINE_STEP_S)
    aif_fine = aif_concentration_mM(fine_t[None, :], params)[0]
    aif = np.interp(times, fine_t, aif_fine)
    rv_params = dict(params)
    rv_params["arrival_s"] = params["arrival_s"] - rng.uniform(2.5, 4.5)
    rv_params["rise_time_s"] = 0.7 * params["rise_time_s"]
    rv_params["peak_conc_mM"] = 1.2 * params["peak_conc_mM"]
    rv = aif_concentration_mM(times[None, :], rv_params)[0]

    # Geometry and anatomy, computed in heart coordinates from each pixel's RAS position.
    ijk_to_ras, lv_centres, levels = phantom_geometry(matrix, pixel_mm, apex_first=apex_first, mirrored=mirrored)
    _, anterior, septal = heart_axes_ras()
    jj, ii = np.mgrid[0:matrix, 0:matrix]
    labels = np.zeros((3, matrix, matrix), np.uint8)
    segments = np.zeros((3, matrix, matrix), np.uint8)
    transmural = np.zeros((3, matrix, matrix))
    insertion = {"anterior": np.zeros((3, 3)), "inferior": np.zeros((3, 3))}
    # Drawn base to apex whatever the storage order, so storage never changes the anatomy.
    drawn = {level: _draw_slice_geometry(rng, level) for level in K.SLICE_LEVELS}
    slice_geometry = [drawn[level] for level in levels]
    body = ((ii - 0.5 * matrix) / (0.47 * matrix)) ** 2 + ((jj - 0.5 * matrix) / (0.40 * matrix)) ** 2 < 1.0
    for k in range(3):
        ras = (ijk_to_ras @ np.stack([ii.ravel(), jj.ravel(), np.full(ii.size, k), np.ones(ii.size)]))[:3].T
        rel = ras - lv_centres[k]
        x_ant = (rel @ anterior).reshape(ii.shape)
        x_sep = (rel @ septal).reshape(ii.shape)
        lab, seg, trans, points = _slice_anatomy(slice_geometry[k], x_ant, x_sep)
        lab[~body & (lab == TISSUE_LABELS["other tissue"])] = TISSUE_LABELS["air"]
        labels[k], segments[k], transmural[k] = lab, seg, trans
        for name, (a, s) in points.items():
            insertion[name][k] = lv_centres[k] + a * anterior + s * septal

    # Flow and tissue parameters.
    r = PHANTOM_RANGES
    segment_mbf, ischaemic_segments = _draw_segment_mbf(rng, ischemic)
    seg_params = {key: rng.uniform(*r[key], 16) for key in (
        "blood_volume_fraction", "permeability_surface_per_s", "interstitial_volume_fraction", "tissue_delay_s",
        "capillary_transit_cv")}
    endo_epi = rng.uniform(*r["ischaemic_endo_epi_ratio"])
    gradient = 2.0 * (1.0 - endo_epi) / (1.0 + endo_epi)
    myo = labels == TISSUE_LABELS["myocardium"]
    pix_seg = segments[myo].astype(int) - 1
    pix_mbf = segment_mbf[pix_seg]
    if subendocardial_gradient:
        steep = ischaemic_segments[pix_seg]
        pix_mbf = np.where(steep, pix_mbf * (1.0 + gradient * (transmural[myo] - 0.5)), pix_mbf)
    flow = pix_mbf * K.TISSUE_DENSITY_G_PER_ML / 60.0
    pix_params = {"blood_flow_per_s": flow}
    pix_params.update({key: seg_params[key][pix_seg] for key in TISSUE_MODEL_PARAMETERS[tissue_model]})
    pix_delay = seg_params["tissue_delay_s"][pix_seg]
    tissue = tissue_concentration_mM(fine_t, aif_fine, pix_params, pix_delay, times, tissue_model)
    # Skeletal muscle and other tissue around the heart: slow, compartmental uptake.
    other_params = {"blood_flow_per_s": np.array([0.006]), "permeability_surface_per_s": np.array([0.005]),
                    "blood_volume_fraction": np.array([0.05]), "interstitial_volume_fraction": np.array([0.15])}
    other = tissue_concentration_mM(fine_t, aif_fine, other_params, np.array([2.0]), times, "two-compartment")[0]

    # Signals (noise-free), then complex Gaussian noise -> magnitude (Rician).
    t1_myo = K.T1_MYOCARDIUM_S[field]
    signal = np.zeros((n_frames, 3, matrix, matrix))
    curves = {
        "lv blood": blood_signal(aif[None, :], params)[0],
        "rv blood": blood_signal(rv[None, :], params)[0],
        "other tissue": acquisition_signal(other[None, :], OTHER_TISSUE_T1_S[field], TISSUE_R2STAR_NATIVE_PER_S,
                                           params)[0],
    }
    for name, curve in curves.items():
        signal[:, labels == TISSUE_LABELS[name]] = curve[:, None]
    own_stream = ([_PROTON_DENSITY_TAG, int(seed)] if isinstance(seed, (int, np.integer))
                  else rng.bit_generator.seed_seq.spawn(1)[0])
    proton_density = np.random.default_rng(own_stream).uniform(*r["myocardium_to_blood_proton_density"])
    myo_signal = proton_density * acquisition_signal(tissue, t1_myo, TISSUE_R2STAR_NATIVE_PER_S, params)
    signal[:, myo] = myo_signal.T
    myo_baseline = proton_density * float(acquisition_signal(np.zeros((1, 1)), t1_myo, TISSUE_R2STAR_NATIVE_PER_S,
                                                             params)[0, 0])
    snr = rng.uniform(*r["myocardial_baseline_snr"])
    moved = None
    if motion != "none":
        signal, moved = _moved_signal(signal, motion, seed, rng, times, ijk_to_ras, lv_centres, rv_params, aif,
                                      labels, curves["other tissue"])
    noise_sd = myo_baseline / snr
    noise = noise_sd * (rng.standard_normal(signal.shape) + 1j * rng.standard_normal(signal.shape))
    frames = np.abs(signal + noise).astype(np.float32)

    mbf_map = np.full(labels.shape, np.nan)
    mbf_map[myo] = pix_mbf
    if mirrored_slice_axis:
        ijk_to_ras, insertion = _reversed_slice_axis(ijk_to_ras, insertion)
    scalar = {key: (value.item() if np.ndim(value) else value) for key, value in params.items()}
    acquisition = {
        "field_strength_t": field,
        "saturation_time_s": scalar["saturation_time_s"],
        "repetition_time_s": scalar["repetition_time_s"],
        "echo_time_s": scalar["echo_time_s"],
        "flip_angle_nominal_deg": scalar["flip_angle_deg"],
        "flip_angle_factor": scalar["flip_angle_factor"],
        "flip_angle_actual_deg": scalar["flip_angle_deg"] * scalar["flip_angle_factor"],
        "kspace_ordering": "centric" if scalar["pulses_to_centre"] == 1 else "linear",
        "pulses_to_centre": int(scalar["pulses_to_centre"]),
        "saturation_efficiency": scalar["saturation_efficiency"],
        "t1_blood_s": scalar["t1_blood_s"],
        "t1_myocardium_s": t1_myo,
        "t1_other_tissue_s": OTHER_TISSUE_T1_S[field],
        "r1_per_s_per_mM": K.R1_RELAXIVITY_PER_S_PER_MM,
        "r2star_per_s_per_mM": scalar["r2star_per_s_per_mM"],
        "r2star_blood_native_per_s": scalar["r2star_blood_native_per_s"],
        "r2star_tissue_native_per_s": TISSUE_R2STAR_NATIVE_PER_S,
        "signal_scale": scalar["signal_scale"],
        "noise_sd": noise_sd,
        "myocardial_baseline_snr": snr,
        "myocardium_to_blood_proton_density": proton_density,
        "heart_rate_bpm": scalar["heart_rate_bpm"],
        "rr_variation": scalar["rr_variation"],
        "rr_drift": scalar["rr_drift"],
        "aif_family": AIF_FAMILIES[int(scalar["family"])],
        "aif_parameters": {key: scalar[key] for key in (
            "peak_conc_mM", "arrival_s", "rise_time_s", "dispersion_shape", "recirculation_fraction",
            "recirculation_delay_s", "plateau_fraction", "injection_duration_s", "systemic_shape",
            "washout_rate_per_s")},
        "tissue_model": tissue_model,
        "tissue_model_description": "{}; impulse response Fb * R(t) with R(0) = 1; MBF = 60 * Fb / {} g/mL".format(
            TISSUE_MODEL_DESCRIPTIONS[tissue_model], K.TISSUE_DENSITY_G_PER_ML),
        "haematocrit": K.HAEMATOCRIT,
        "tissue_density_g_per_ml": K.TISSUE_DENSITY_G_PER_ML,
        "ischemic_territory": ischemic,
        "subendocardial_gradient": bool(subendocardial_gradient),
        "ischaemic_endo_epi_ratio": endo_epi if subendocardial_gradient and ischemic != "none" else 1.0,
        "slice_levels": list(levels),
        "slices": slice_geometry,
        "seed": seed if isinstance(seed, int) else None,
        "apex_first": bool(apex_first),
        "mirrored": bool(mirrored),
        "mirrored_slice_axis": bool(mirrored_slice_axis),
        "motion": {"kind": "none"} if moved is None else moved["parameters"],
    }
    truth = {
        "frame_times_s": times,
        "aif_mM": aif,
        "aif_fine_times_s": fine_t,
        "aif_fine_mM": aif_fine,
        "rv_blood_mM": rv,
        "lv_blood_signal_noiseless": curves["lv blood"],
        "lv_blood_reference_signal": linear_reference_signal(curves["lv blood"][0], aif, params["t1_blood_s"][0],
                                                             K.R1_RELAXIVITY_PER_S_PER_MM),
        "myocardium_voxels_kji": np.argwhere(myo),
        "tissue_mM": tissue,
        "tissue_signal_noiseless": myo_signal,
        "tissue_delay_s": pix_delay,
        "segment_mbf_drawn_ml_min_g": segment_mbf,
        "ischaemic_segments": ischaemic_segments,
    }
    truth.update({"tissue_" + key: value for key, value in pix_params.items()})
    if moved is not None:
        truth.update({"motion_" + key: moved[key] for key in ("shift_px", "shift_ras_mm", "through_plane_mm",
                                                               "breath_hold_s")})
    return Phantom(frames=frames, frame_times_s=times, ijk_to_ras=ijk_to_ras, levels=levels, labels=labels,
                   aha_segments=segments, mbf_ml_min_g=mbf_map, rv_insertion_ras=insertion, truth=truth,
                   acquisition=acquisition)


#: Files ``write_phantom`` creates in its output directory.
PHANTOM_FILES = {
    "perfusion": "perfusion.seq.nrrd",
    "segmentation": "segmentation.seg.nrrd",
    "rv_insertion": "rv_insertion.mrk.json",
    "truth_arrays": "ground_truth.npz",
    "truth_description": "ground_truth.json",
}

#: Name of the phantom's RV insertion point list in Slicer.
RV_INSERTION_NODE_NAME = "RV insertion points"

#: Segment colours (RGB 0-1) of the phantom's segmentation.
SEGMENT_COLOURS = {K.LV_BLOOD_POOL_SEGMENT_NAME: (0.85, 0.25, 0.25), K.MYOCARDIUM_SEGMENT_NAME: (0.95, 0.85, 0.35)}


def write_phantom(phantom, output_dir):
    """Write a phantom as 3D Slicer files plus its ground truth.

    Files (names in ``PHANTOM_FILES``):

    * ``perfusion.seq.nrrd`` -- volume sequence, one 3-slice volume per frame,
      frame times in seconds as the sequence index values;
    * ``segmentation.seg.nrrd`` -- segments ``LV blood pool`` and ``Myocardium``;
    * ``rv_insertion.mrk.json`` -- anterior RV insertion point of each slice
      (point labels name the slice level);
    * ``ground_truth.npz`` -- arrays: MBF map (mL/min/g), AHA segment labels,
      tissue classes, AIF concentration (mM) at the frame times and on the fine
      grid, tissue concentration curves (mM) and tissue-model parameters of every
      myocardial voxel, both RV insertion points, noise-free signals;
    * ``ground_truth.json`` -- acquisition and model parameters, per-segment
      true MBF and territory, units.

    Parameters
    ----------
    phantom : Phantom
        As returned by ``simulate_phantom``.
    output_dir : str or pathlib.Path
        Existing directory to write into.
    """
    import json
    import os

    from . import slicer_files

    path = {key: os.path.join(str(output_dir), name) for key, name in PHANTOM_FILES.items()}
    slicer_files.write_volume_sequence(path["perfusion"], phantom.frames, phantom.frame_times_s, phantom.ijk_to_ras)
    slicer_files.write_segmentation(
        path["segmentation"],
        [(K.LV_BLOOD_POOL_SEGMENT_NAME, phantom.lv_blood_mask, SEGMENT_COLOURS[K.LV_BLOOD_POOL_SEGMENT_NAME]),
         (K.MYOCARDIUM_SEGMENT_NAME, phantom.myocardium_mask, SEGMENT_COLOURS[K.MYOCARDIUM_SEGMENT_NAME])],
        phantom.ijk_to_ras)
    slicer_files.write_markups_points(
        path["rv_insertion"], phantom.rv_insertion_ras["anterior"],
        list(phantom.rv_insertion_labels), name=RV_INSERTION_NODE_NAME)
    arrays = dict(phantom.truth)
    arrays.update(mbf_ml_min_g=phantom.mbf_ml_min_g, aha_segments=phantom.aha_segments, tissue_labels=phantom.labels,
                  ijk_to_ras=phantom.ijk_to_ras, rv_insertion_anterior_ras=phantom.rv_insertion_ras["anterior"],
                  rv_insertion_inferior_ras=phantom.rv_insertion_ras["inferior"])
    np.savez_compressed(path["truth_arrays"], **arrays)
    segment_mbf = phantom.segment_mbf_ml_min_g()
    description = {
        "units": {"mbf": "mL/min/g", "concentration": "mM", "time": "s", "length": "mm (RAS)",
                  "signal": "scanner units"},
        "files": PHANTOM_FILES,
        "slice_levels": list(phantom.levels),
        "segments": [{"segment": s, "name": K.AHA_SEGMENT_NAMES[s], "territory": K.territory_of_segment(s),
                      "mbf_true_ml_min_g": float(segment_mbf[s - 1]),
                      "n_pixels": int(np.sum(phantom.aha_segments == s))} for s in K.AHA_SEGMENTS],
        "rv_insertion_ras": {name: points.tolist() for name, points in phantom.rv_insertion_ras.items()},
        "tissue_labels": TISSUE_LABELS,
        "acquisition": phantom.acquisition,
    }
    with open(path["truth_description"], "w") as handle:
        json.dump(description, handle, indent=2)
    return path

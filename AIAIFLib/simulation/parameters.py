"""Parameter ranges of the paired-AIF simulator and the draw of one parameter table.

``AIF_PAIR_RANGES`` (the paper's acquisition, physiology made wide on
purpose), ``BROAD_PAIR_RANGES`` (the broad physics mix of the training
pairs) and ``draw_aif_parameters``, which draws AIF, physiology and sequence
parameters from them in a fixed order of generator calls.  The phantom's own
ranges are ``phantom.PHANTOM_RANGES``.
"""

import numpy as np

from .. import constants as K

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

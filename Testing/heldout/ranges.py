"""Every number of the held-out forward model: literature values with their source, drawn ranges with the reason.

The held-out model is written independently of ``AIAIFLib.simulation`` /
``AIAIFLib.sequence`` and uses its own literature values, which differ a
little from ``AIAIFLib.constants`` on purpose: a real patient's blood T1 or
relaxivity is not the value the pipeline assumes either.

Relaxation values are per field strength (tesla -> value).  Ranges are
``(low, high)`` drawn uniformly unless the entry says otherwise; ``RANGES``
holds every drawn quantity of ``aif_pairs`` and ``phantom`` with the reason for
its range.  Values marked "project choice" are not taken from a publication.

References
----------
[Sharma2006]  Sharma P, Socolow J, Patel S, Pettigrew RI, Oshinski JN. Effect
    of Gd-DTPA-BMA on blood and myocardial T1 at 1.5T and 3T in humans.
    J Magn Reson Imaging 2006;23:323-330.  In vivo, ten volunteers, pre-contrast
    blood 1.58 +- 0.13 s (1.5 T) and 1.66 +- 0.06 s (3 T), myocardium
    1.07 +- 0.03 s and 1.22 +- 0.07 s.
[deBazelaire2004]  de Bazelaire CMJ, Duhamel GD, Rofsky NM, Alsop DC. MR
    imaging relaxation times of abdominal and pelvic tissues measured in vivo
    at 3.0 T: preliminary results. Radiology 2004;230:652-659.  At 3 T: liver
    T1 809 ms / T2 34 ms, paravertebral muscle 898 / 29 ms, subcutaneous fat
    382 / 68 ms; T1 at 3 T on average 21 % longer than at 1.5 T.
[Stanisz2005]  Stanisz GJ, et al. T1, T2 relaxation and magnetization
    transfer in tissue at 3T. Magn Reson Med 2005;54:507-512 (T2 of blood
    290 / 275 ms and of heart muscle 40 / 47 ms at 1.5 / 3 T).
[Szomolanyi2019]  Szomolanyi P, et al. Comparison of the relaxivities of
    macrocyclic gadolinium-based contrast agents in human plasma at 1.5, 3,
    and 7 T, and blood at 3 T. Invest Radiol 2019;54:559-564 (gadobutrol r1
    in plasma 4.78 / 4.97 /s/mM at 1.5 / 3 T, in blood 3.47 at 3 T).
[Kellman2006]  Kellman P, Aletras AH, Hsu LY, McVeigh ER, Arai AE. T2*
    measurement during first-pass contrast-enhanced cardiac perfusion imaging.
    Magn Reson Med 2006;56:1132-1134 (LV blood T2* about 9 ms at the peak of a
    0.1 mmol/kg bolus, 1.5 T).
[Kellman2017]  Kellman P, et al. Myocardial perfusion cardiovascular magnetic
    resonance: optimized dual sequence and reconstruction for quantification.
    J Cardiovasc Magn Reson 2017;19:43 (LV T2* about 10 ms at the AIF peak).
[Lung1999]  Magnetic resonance T2* measurements of the normal human lung in
    vivo with ultra-short echo times. Magn Reson Imaging 1999 (PMID 10463650):
    lung T2* 0.9-1.1 ms at 1.5 T.
[Zur1991]  Zur Y, Wood ML, Neuringer LJ. Spoiling of transverse magnetization
    in steady-state sequences. Magn Reson Med 1991;21:251-263 (RF spoiling by
    a quadratic phase increment, 117 degrees).
"""

import numpy as np

# ---------------------------------------------------------------------------
# Literature values (tesla -> value)
# ---------------------------------------------------------------------------

#: Native T1 (s): mean and the between-subject SD drawn around it (uniform
#: within mean +- SD).  Blood and myocardium [Sharma2006]; liver, skeletal
#: muscle and fat at 3 T [deBazelaire2004], at 1.5 T the 3 T value divided by
#: their average 3 T / 1.5 T ratio of 1.21 (project choice); lung project
#: choice (about 1.2-1.4 s; lung gives little signal either way: see its
#: proton density and R2* below).
T1_S = {
    "blood": {1.5: (1.58, 0.13), 3.0: (1.66, 0.06)},
    "myocardium": {1.5: (1.07, 0.03), 3.0: (1.22, 0.07)},
    "liver": {1.5: (0.809 / 1.21, 0.05), 3.0: (0.809, 0.07)},
    "muscle": {1.5: (0.898 / 1.21, 0.03), 3.0: (0.898, 0.03)},
    "fat": {1.5: (0.382 / 1.21, 0.015), 3.0: (0.382, 0.013)},
    "lung": {1.5: (1.25, 0.08), 3.0: (1.35, 0.08)},
}

#: Native T2 (s).  Blood and myocardium [Stanisz2005]; liver, muscle, fat
#: [deBazelaire2004] at 3 T, used at both fields (project choice: T2 matters
#: only through the residual transverse coherence of the spoiled readout);
#: lung project choice.
T2_S = {
    "blood": {1.5: 0.290, 3.0: 0.275},
    "myocardium": {1.5: 0.040, 3.0: 0.047},
    "liver": {1.5: 0.034, 3.0: 0.034},
    "muscle": {1.5: 0.029, 3.0: 0.029},
    "fat": {1.5: 0.068, 3.0: 0.068},
    "lung": {1.5: 0.030, 3.0: 0.030},
}

#: Native R2* (1/s), the transverse decay during TE.  Lung from [Lung1999]
#: (T2* ~1 ms at 1.5 T), halved T2* at 3 T (susceptibility scales with B0;
#: project choice); the other tissues project choices (T2* 25-60 ms).
R2STAR_NATIVE_PER_S = {
    "blood": {1.5: 15.0, 3.0: 25.0},
    "myocardium": {1.5: 30.0, 3.0: 40.0},
    "liver": {1.5: 40.0, 3.0: 60.0},
    "muscle": {1.5: 30.0, 3.0: 40.0},
    "fat": {1.5: 25.0, 3.0: 35.0},
    "lung": {1.5: 1000.0, 3.0: 2000.0},
}

#: Equilibrium magnetisation relative to pure water (project choice from
#: water content: myocardium ~79 %, whole blood ~83 %, liver ~70 %; fat
#: protons ~90 %; inflated lung ~25 %).  Unequal on purpose: the paper's
#: linear conversion assumes the myocardium's is the blood's.
PROTON_DENSITY = {"blood": 0.83, "myocardium": 0.79, "liver": 0.70, "muscle": 0.76, "fat": 0.90, "lung": 0.25}

#: Fat resonance offset from water, ppm (single-peak model of the methylene
#: line, textbook value); gives fat its phase at TE (India-ink rims at
#: fat/tissue borders).
FAT_SHIFT_PPM = -3.4
#: Proton gyromagnetic ratio / 2 pi, Hz per tesla.
GAMMA_HZ_PER_T = 42.577e6

#: Apparent diffusion coefficient of the static tissues, mm^2/s (project
#: choice, water ADC of soft tissue ~1-2e-3; fat ~1e-5).  It damps the higher
#: EPG dephasing orders; flowing blood's is drawn (``RANGES``).
DIFFUSION_MM2_PER_S = {"myocardium": 1.5e-3, "liver": 1.2e-3, "muscle": 1.5e-3, "fat": 1.0e-5, "lung": 1.5e-3}

#: Tissue kinds the signal tables are built for.
TISSUE_KINDS = tuple(T1_S)

# ---------------------------------------------------------------------------
# Drawn ranges: one place, with the reason for each
# ---------------------------------------------------------------------------

#: Each entry: ``"range"`` (low, high) uniform (a dict by field strength where
#: it depends on it), or ``"choices"`` with ``"p"``; ``"log"`` draws
#: log-uniformly, ``"integer"`` draws integers low..high; ``"why"`` the reason.
RANGES = {
    # --- contrast agent -----------------------------------------------------
    "r1_per_s_per_mM": {"range": (4.05, 4.95), "why": (
        "r1 of gadobutrol 4.5 +- 10 %: the project's 4.5 bracketed; [Szomolanyi2019] measured 4.78-4.97 in "
        "plasma and 3.47 in blood at 3 T, so the true value of a patient is uncertain by at least this much")},
    "r2_per_s_per_mM": {"range": (4.5, 7.0), "why": "T2 relaxivity of gadobutrol, a little above r1 (project choice)"},
    "r2star_blood_per_s_per_mM": {"range": {1.5: (8.0, 25.0), 3.0: (16.0, 50.0)}, "why": (
        "blood T2* of ~9-10 ms at first-pass peaks of a few mM at 1.5 T [Kellman2006, Kellman2017] means "
        "r2* ~10-25 /s/mM; doubled at 3 T (static dephasing scales with B0; project choice)")},
    # --- sequence -------------------------------------------------------------
    "saturation_time_s": {"range": (0.090, 0.110), "why": "saturation pulse to k-space centre, 100 ms +- 10 %"},
    "saturation_efficiency": {"range": (0.85, 1.0), "why": (
        "fraction of Mz a saturation pulse destroys; B1-insensitive pulse trains reach 0.95-1, simpler pulses "
        "and 3 T B1 inhomogeneity less (project choice)")},
    "b1_factor": {"range": (0.8, 1.2), "why": "actual / nominal flip angle at the heart (transmit field)"},
    "flip_angle_deg": {"range": (10.0, 20.0), "why": "nominal readout flip angle of vendors' perfusion sequences"},
    "repetition_time_s": {"range": (0.0020, 0.0032), "why": "spoiled gradient-echo TR of perfusion readouts"},
    "echo_time_s": {"range": (0.0010, 0.0016), "why": "TE, the T2* loss at the bolus peak grows with it"},
    "rf_spoiling_increment_deg": {"choices": (50.0, 117.0), "p": (0.5, 0.5), "why": (
        "quadratic RF-spoiling phase increment: 117 degrees [Zur1991] or 50 degrees (another common choice); "
        "spoiling is imperfect either way, which the EPG keeps")},
    "spoiler_cycles_per_pixel": {"range": (1.0, 4.0), "why": (
        "dephasing across one pixel per TR (readout and spoiler gradients): with diffusion it sets how fast the "
        "higher EPG orders die")},
    "blood_flow_dephasing_mm2_per_s": {"range": (0.02, 0.2), "why": (
        "apparent diffusion of flowing blood (intravoxel incoherent motion): flow destroys its transverse "
        "coherence much faster than diffusion does in tissue (project choice)")},
    "ordering": {"choices": ("centric", "linear"), "p": (0.4, 0.6), "why": "k-space line order"},
    "dummy_pulses": {"choices": (0, 2, 4), "p": (0.4, 0.3, 0.3), "why": (
        "readout pulses before the first line (steady-state preparation of some vendors)")},
    "matrix": {"choices": (128, 144, 160, 176, 192), "p": (0.2, 0.2, 0.2, 0.2, 0.2), "why": "reconstructed matrix"},
    "phase_resolution": {"choices": (0.75, 0.875, 1.0), "p": (0.3, 0.3, 0.4), "why": (
        "acquired phase-encoding extent / matrix (k-space zero-filled to the matrix)")},
    "acceleration": {"choices": (1, 2, 3), "p": (0.2, 0.5, 0.3), "why": "parallel-imaging factor (SENSE 1.8 in the "
                                                                        "paper; 2-3 common)"},
    "partial_fourier": {"choices": (0.625, 0.75, 0.875, 1.0), "p": (0.2, 0.3, 0.2, 0.3), "why": (
        "acquired fraction of k-space along phase; the missing lines are zero-filled")},
    "slice_thickness_mm": {"range": (8.0, 10.0), "why": "perfusion slice thickness"},
    "rf_time_bandwidth": {"range": (2.0, 4.0), "why": "windowed-sinc excitation: sets the slice-profile transition"},
    "slots_per_rr": {"choices": (3, 4), "p": (0.6, 0.4), "why": (
        "saturation-readout blocks per heartbeat (3 slices, or a fourth slice that is acquired but not returned)")},
    "trigger_delay_s": {"range": (0.005, 0.040), "why": "ECG trigger to the first saturation pulse"},
    "inflow_fraction_lv": {"range": (0.0, 0.06), "why": (
        "share of LV blood in the slice at readout that was outside the saturated slab at the saturation pulse "
        "(through-plane flow), fully relaxed; with it the pre-contrast blood pool reads 0.8-1.6 times the "
        "myocardium instead of 0.8 times (project choice)")},
    "inflow_fraction_rv": {"range": (0.0, 0.10), "why": "as for the LV; the RV fills from outside the slab"},
    "myocardial_baseline_snr": {"range": {1.5: (6.0, 14.0), 3.0: (9.0, 20.0)}, "why": (
        "pre-contrast myocardial signal / noise SD of one pixel, lower at 1.5 T (project choice)")},
    "blood_pixel_snr": {"range": {1.5: (5.0, 12.0), 3.0: (7.0, 18.0)}, "why": (
        "pre-contrast LV blood signal / noise SD of one pixel in the AIF pairs (blood is darker than myocardium "
        "before contrast at a 100 ms saturation time; project choice)")},
    "aif_roi_pixels": {"range": (20, 120), "integer": True, "why": (
        "pixels averaged into the AIF: the brightest quarter of one slice's LV pool")},
    "lv_diameter_mm": {"range": (35.0, 55.0), "why": "LV cavity diameter of the AIF slice (AIF pairs)"},
    "coil_shading_amplitude": {"range": (0.0, 0.35), "why": (
        "peak-to-centre variation of a smooth static receive-coil sensitivity over the field of view")},
    "signal_scale": {"range": (500.0, 4000.0), "why": "equilibrium signal of pure water, scanner units"},
    # --- physiology -----------------------------------------------------------
    "field_strength_t": {"choices": (1.5, 3.0), "p": (0.5, 0.5), "why": "both clinical field strengths"},
    "heart_rate_bpm": {"range": (55.0, 115.0), "why": "adenosine stress heart rate"},
    "rr_sinus_amplitude": {"range": (0.0, 0.06), "why": "respiratory sinus arrhythmia, fraction of RR"},
    "rr_sinus_period_s": {"range": (3.0, 6.0), "why": "breathing period"},
    "rr_jitter": {"range": (0.005, 0.035), "why": "beat-to-beat RR noise, fraction of RR"},
    "rr_drift": {"range": (-0.15, 0.10), "why": "total RR change over the acquisition (heart rate rising under "
                                                "adenosine, or settling)"},
    "ectopic_probability": {"range": (0.0, 0.03), "why": (
        "premature beats per beat: a short interval (60-75 % of RR) with a compensatory pause")},
    "missed_trigger_probability": {"range": (0.0, 0.02), "why": "missed ECG triggers per beat (interval doubled)"},
    "n_frames": {"range": (40, 90), "integer": True, "why": (
        "dynamics of a first-pass acquisition; raised where needed so that the frames cover arrival + "
        "``MIN_FRAMES_AFTER_ARRIVAL_S`` (an operator acquires the whole first pass)")},
    # --- AIF family -------------------------------------------------------------
    "peak_conc_mM": {"range": (1.0, 25.0), "log": True, "why": (
        "first-pass peak of LV blood: log-uniform so that low doses (weakly saturated curves) are as well "
        "represented as high ones")},
    "arrival_s": {"range": (3.0, 18.0), "why": "first LV enhancement (2 % of the peak) after the first frame"},
    "aif_family": {"choices": ("ldrw", "lagged_normal"), "p": (0.5, 0.5), "why": (
        "first-pass shape: local-density random walk or lagged normal (Bassingthwaighte) indicator-dilution curves")},
    "injection_duration_s": {"range": (1.0, 3.0), "why": "bolus of 4-8 mL at 3-6 mL/s with its saline flush"},
    "first_pass_width_s": {"range": (1.5, 4.0), "why": (
        "SD of the LV first-pass transit-time distribution: first passes are narrow under stress (high cardiac "
        "output), a half-maximum width of about 4-10 s with the injection")},
    "ldrw_skew": {"range": (3.0, 15.0), "why": "LDRW lambda: small values give long right tails"},
    "lagged_normal_tail_fraction": {"range": (0.3, 1.2), "why": "lagged-normal exponential time constant / "
                                                                "Gaussian SD"},
    "rv_lead_s": {"range": (2.5, 5.5), "why": "pulmonary transit: RV peak before the LV peak"},
    "recirculation_gain": {"range": (0.20, 0.40), "why": "share of the tracer returning through the fast systemic "
                                                         "loop"},
    "recirculation_delay_s": {"range": (7.0, 14.0), "why": "mean transit of the fast systemic loop"},
    "recirculation_spread": {"range": (0.10, 0.25), "why": "SD of the fast loop transit / its mean"},
    "washout_gain": {"range": (0.20, 0.40), "why": "share returning through the slow (whole-body) loop"},
    "washout_time_s": {"range": (25.0, 70.0), "why": "time constant of the slow loop: the washout tail"},
    # --- myocardium -----------------------------------------------------------------
    "healthy_mbf_ml_min_g": {"range": (2.0, 4.5), "why": "healthy stress MBF"},
    "ischaemic_mbf_ml_min_g": {"range": (0.5, 1.3), "why": "ischaemic territory stress MBF (territory mean)"},
    "ischaemic_endo_epi_ratio": {"range": (0.5, 0.85), "why": "subendocardium hit first in ischaemia"},
    "healthy_endo_epi_ratio": {"range": (0.95, 1.15), "why": "mild transmural gradient of healthy stress flow"},
    "mbf_angular_variation": {"range": (0.0, 0.10), "why": "smooth regional variation of healthy flow"},
    "territory_shift_deg": {"range": (-15.0, 15.0), "why": "coronary territories do not follow AHA borders"},
    "territory_width_factor": {"range": (0.8, 1.2), "why": "territory size varies between patients"},
    "blood_volume_fraction": {"range": (0.08, 0.14), "why": "myocardial blood volume at stress, mL/mL"},
    "interstitial_volume_fraction": {"range": (0.16, 0.28), "why": "extracellular extravascular volume, mL/mL"},
    "permeability_surface_per_s": {"range": (0.010, 0.025), "why": "PS of gadobutrol, 0.6-1.5 mL/min/mL"},
    "fast_region_flow_share": {"range": (0.55, 0.80), "why": "two-region model: flow through the fast region"},
    "fast_region_volume_share": {"range": (0.35, 0.55), "why": "two-region model: its share of the volumes"},
    "arterial_delay_s": {"range": (0.3, 1.5), "why": "LV to myocardium transit delay (healthy)"},
    "arterial_dispersion_s": {"range": (0.1, 0.5), "why": (
        "exponential dispersion of the myocardium's own arterial input (healthy vessels)")},
    "ischaemic_extra_delay_s": {"range": (0.2, 1.0), "why": "extra delay behind a stenosis / via collaterals"},
    "ischaemic_extra_dispersion_s": {"range": (0.2, 1.0), "why": "extra dispersion behind a stenosis"},
    # --- anatomy ---------------------------------------------------------------------
    "pixel_mm": {"range": (1.4, 2.2), "why": "in-plane pixel size"},
    "fov_mm": {"range": (280.0, 380.0), "why": "field of view (pixel size clipped to its range)"},
    "lv_length_mm": {"range": (70.0, 95.0), "why": "base-to-apex length of the LV"},
    "lv_basal_radius_mm": {"range": (20.0, 27.0), "why": "LV cavity radius at the base"},
    "lv_ellipticity": {"range": (0.8, 1.0), "why": "minor / major axis of the cavity cross-section"},
    "wall_thickness_mm": {"range": (8.0, 12.0), "why": "LV wall thickness at mid level"},
    "wall_thickness_variation": {"range": (0.0, 0.25), "why": "angular variation of wall thickness"},
    "rv_depth_mm": {"range": (14.0, 28.0), "why": "RV cavity depth at the base (crescent thickness)"},
    "rv_anterior_insertion_deg": {"range": (10.0, 40.0), "why": "from the anterior direction towards the septum"},
    "rv_span_deg": {"range": (100.0, 140.0), "why": "angle between the anterior and inferior RV insertions"},
    "epicardial_fat_mm": {"range": (1.0, 6.0), "why": "epicardial fat thickness (largest in the grooves)"},
    "long_axis_tilt_deg": {"range": (0.0, 20.0), "why": "heart long axis away from the typical direction"},
    "slice_tilt_deg": {"range": (0.0, 8.0), "why": "planned short-axis plane versus the true long axis"},
    "inplane_rotation_deg": {"range": (-25.0, 25.0), "why": "image axes versus the usual short-axis display"},
}


#: Time the frames cover after contrast arrival at least, s (project choice).
MIN_FRAMES_AFTER_ARRIVAL_S = 25.0


def draw(rng, name, field_strength_t=None, size=None):
    """Draw quantity ``name`` of ``RANGES``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    name : str
        Key of ``RANGES``.
    field_strength_t : float, optional
        Field strength (T) for entries whose range depends on it.
    size : int or tuple, optional
        Shape of the draw (a scalar when omitted).

    Returns
    -------
    float, str or numpy.ndarray
        The drawn value(s).
    """
    entry = RANGES[name]
    if "choices" in entry:
        choices = np.asarray(entry["choices"])
        index = rng.choice(len(choices), size=size, p=np.asarray(entry["p"], dtype=float))
        value = choices[index]
        return value.item() if np.ndim(value) == 0 else value
    low, high = entry["range"][field_strength_t] if isinstance(entry["range"], dict) else entry["range"]
    if entry.get("integer"):
        value = rng.integers(int(low), int(high) + 1, size)
        return int(value) if size is None else value
    if entry.get("log"):
        value = np.exp(rng.uniform(np.log(low), np.log(high), size))
    else:
        value = rng.uniform(low, high, size)
    return float(value) if size is None else value


def draw_relaxation(rng, field_strength_t):
    """Native relaxation of every tissue kind for one subject at ``field_strength_t``.

    Returns
    -------
    dict
        ``kind -> {"t1_s", "t2_s", "r2star_native_per_s", "proton_density"}``;
        T1 drawn uniformly within the literature mean +- SD (``T1_S``).
    """
    field = float(field_strength_t)
    out = {}
    for kind in TISSUE_KINDS:
        mean, sd = T1_S[kind][field]
        out[kind] = {"t1_s": float(rng.uniform(mean - sd, mean + sd)), "t2_s": T2_S[kind][field],
                     "r2star_native_per_s": R2STAR_NATIVE_PER_S[kind][field],
                     "proton_density": PROTON_DENSITY[kind]}
    return out

"""The 4D perfusion phantom: a three-slice short-axis stress perfusion study with known MBF.

``simulate_phantom`` draws the AIF, anatomy, flows, tissue parameters, noise
and, optionally, respiratory motion (``phantom_motion``) from the ranges of
``PHANTOM_RANGES`` and ``parameters.AIF_PAIR_RANGES``; ``Phantom`` holds the
images with their ground truth.
"""

import numpy as np

from .. import constants as K
from .. import phantom_motion
from ..sequence import linear_reference_signal
from .aif_shapes import aif_concentration_mM
from .anatomy import (PHANTOM_MATRIX, PHANTOM_PIXEL_MM, TISSUE_LABELS, _reversed_slice_axis, _slice_anatomy,
                      heart_axes_ras, phantom_geometry)
from .heart_rate import simulate_frame_times
from .parameters import AIF_FAMILIES, AIF_PAIR_RANGES, draw_aif_parameters
from .signals import acquisition_signal, blood_signal
from .tissue import (DEFAULT_TISSUE_MODEL, TISSUE_MODEL_DESCRIPTIONS, TISSUE_MODEL_PARAMETERS, TISSUE_MODELS,
                     tissue_concentration_mM)

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
    motion : {'none', 'in-plane', 'through-plane', 'turning'} or bool, optional
        Respiratory motion (``phantom_motion``): free breathing before and
        after a breath-held first pass, in-plane, or in-plane with a
        through-plane component or with a turn about the LV axis (``True``
        means "in-plane").  The truth (masks, MBF map, RV points) stays at
        the breath-held position; the displacement of every frame and slice
        is in ``truth`` (``motion_shift_px``, ``motion_shift_ras_mm``,
        ``motion_through_plane_mm``, ``motion_turn_deg``,
        ``motion_breath_hold_s``).  The motion
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
                                                               "turn_deg", "breath_hold_s")})
    return Phantom(frames=frames, frame_times_s=times, ijk_to_ras=ijk_to_ras, levels=levels, labels=labels,
                   aha_segments=segments, mbf_ml_min_g=mbf_map, rv_insertion_ras=insertion, truth=truth,
                   acquisition=acquisition)

"""Simulator: paired AIFs, tissue model and the 4D phantom's ground truth."""

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.linalg import expm

from AIAIFLib import constants as K
from AIAIFLib import simulation as sim


@pytest.fixture(scope="module")
def pairs():
    return sim.simulate_aif_pairs(3000, n_frames=70, seed=11)


@pytest.fixture(scope="module")
def phantom():
    return sim.simulate_phantom(seed=5, field_strength_t=3.0, ischemic="RCA")


# --- paired AIFs -----------------------------------------------------------------

def test_same_seed_same_pairs_and_other_seed_differs():
    a = sim.simulate_aif_pairs(200, seed=3)
    b = sim.simulate_aif_pairs(200, seed=3)
    c = sim.simulate_aif_pairs(200, seed=4)
    np.testing.assert_array_equal(a.saturated, b.saturated)
    np.testing.assert_array_equal(a.times_s, b.times_s)
    assert not np.allclose(a.saturated, c.saturated)


def test_chunking_does_not_change_results():
    a = sim.simulate_aif_pairs(300, seed=9, chunk_size=1000)
    b = sim.simulate_aif_pairs(300, seed=9, chunk_size=7)
    np.testing.assert_array_equal(a.reference, b.reference)


def test_parameters_cover_the_documented_ranges(pairs):
    p = pairs.params
    ranges = sim.AIF_PAIR_RANGES
    for key in ("heart_rate_bpm", "peak_conc_mM", "flip_angle_factor", "saturation_efficiency", "arrival_s"):
        low, high = ranges[key]
        assert p[key].min() >= low and p[key].max() <= high
        assert p[key].min() < low + 0.05 * (high - low) and p[key].max() > high - 0.05 * (high - low)
    assert set(np.unique(p["field_strength_t"])) == {1.5, 3.0}
    assert set(np.unique(p["family"])) == set(range(len(sim.AIF_FAMILIES)))
    assert np.any(p["pulses_to_centre"] == 1) and np.any(p["pulses_to_centre"] > 10)


def test_the_broad_ranges_draw_wider_physics_and_leave_the_default_draws_alone():
    default = sim.draw_aif_parameters(np.random.default_rng(4), 4000)
    again = sim.draw_aif_parameters(np.random.default_rng(4), 4000, ranges=sim.AIF_PAIR_RANGES)
    for key in default:
        np.testing.assert_array_equal(default[key], again[key])
    assert not np.any(default["slice_edge_fraction"])
    broad = sim.draw_aif_parameters(np.random.default_rng(4), 4000, ranges=sim.BROAD_PAIR_RANGES)
    for key in ("peak_conc_mM", "saturation_efficiency", "saturation_time_s", "flip_angle_factor",
                "slice_edge_fraction"):
        low, high = sim.BROAD_PAIR_RANGES[key]
        assert low <= broad[key].min() < low + 0.05 * (high - low) and high - 0.05 * (high - low) < broad[key].max() <= high
    # The dose is drawn log-uniformly: as many peaks below 5 mM (the geometric middle of 1-25) as above.
    assert abs(np.mean(broad["peak_conc_mM"] < 5.0) - 0.5) < 0.03
    assert np.mean(broad["pulses_to_centre"] == 1) == pytest.approx(sim.BROAD_PAIR_RANGES["centric_probability"], abs=0.03)


def test_the_slice_edge_mixes_a_weaker_flip_angle_and_saturation_into_the_signal():
    params = sim.draw_aif_parameters(np.random.default_rng(6), 3, ranges=sim.BROAD_PAIR_RANGES)
    conc = np.linspace(0.0, 12.0, 25)[None, :].repeat(3, axis=0)
    mixed = sim.blood_signal(conc, params)
    centre = sim.blood_signal(conc, dict(params, slice_edge_fraction=np.zeros(3)))
    edge_params = dict(params, slice_edge_fraction=np.zeros(3),
                       flip_angle_factor=params["flip_angle_factor"] * sim.SLICE_EDGE_FLIP_FACTOR,
                       saturation_efficiency=params["saturation_efficiency"] * sim.SLICE_EDGE_EFFICIENCY_FACTOR)
    edge = sim.blood_signal(conc, edge_params)
    weight = params["slice_edge_fraction"][:, None]
    np.testing.assert_allclose(mixed, (1.0 - weight) * centre + weight * edge, rtol=1e-12)
    assert np.all(weight > 0) and not np.allclose(mixed, centre)


def test_frame_times_follow_the_heart_rate(pairs):
    intervals = np.diff(pairs.times_s, axis=1)
    assert np.all(intervals > 0)
    median_rr = np.median(intervals, axis=1)
    expected_rr = 60.0 / pairs.params["heart_rate_bpm"]
    np.testing.assert_allclose(median_rr, expected_rr, rtol=0.15)
    assert np.std(intervals / median_rr[:, None]) > 0.01  # beat-to-beat variation exists


def test_peak_concentration_is_the_drawn_peak():
    p = sim.draw_aif_parameters(np.random.default_rng(1), 60)
    fine = p["arrival_s"][:, None] + np.linspace(0.0, 40.0, 8001)[None, :]
    conc = sim.aif_concentration_mM(fine, p)
    np.testing.assert_allclose(conc.max(axis=1), p["peak_conc_mM"], rtol=1e-3)
    before = sim.aif_concentration_mM(p["arrival_s"][:, None] - np.array([[3.0]]), p)
    assert np.all(before < 0.05 * p["peak_conc_mM"][:, None])


def test_reference_is_linear_in_concentration_with_shared_baseline(pairs):
    r1t1 = K.R1_RELAXIVITY_PER_S_PER_MM * pairs.params["t1_blood_s"][:, None]
    np.testing.assert_allclose(pairs.reference / pairs.baseline_signal[:, None] - 1.0, r1t1 * pairs.conc_mM,
                               rtol=1e-10, atol=1e-10)
    pre = pairs.times_s < pairs.params["arrival_s"][:, None] - 1.0
    np.testing.assert_allclose(pairs.saturated_noiseless[pre], np.broadcast_to(
        pairs.baseline_signal[:, None], pre.shape)[pre], rtol=0.02)


def test_saturated_curve_underestimates_the_peak_more_at_high_concentration(pairs):
    ratio = pairs.reference.max(axis=1) / pairs.saturated_noiseless.max(axis=1)
    assert np.all(ratio > 1.2)
    peak = pairs.conc_mM.max(axis=1)
    high, low = ratio[peak > 12], ratio[peak < 5]
    assert np.median(high) > 1.5 * np.median(low)


def test_noise_level_is_as_drawn(pairs):
    residual = pairs.saturated - pairs.saturated_noiseless
    expected_sd = pairs.params["relative_noise_sd"] * pairs.saturated_noiseless.max(axis=1)
    ratio = residual.std(axis=1) / expected_sd
    assert 0.9 < np.median(ratio) < 1.1


# --- tissue model --------------------------------------------------------------------

def test_two_compartment_residue_matches_matrix_exponential():
    fb, ps, vb, ve, hct = 0.05, 0.02, 0.11, 0.2, K.HAEMATOCRIT
    fp, vp = fb * (1 - hct), vb * (1 - hct)
    system = np.array([[-(fp + ps) / vp, ps / vp], [ps / ve, -ps / ve]])
    for t in (0.0, 0.3, 2.0, 15.0):
        expected = np.array([vp, ve]) @ expm(system * t) @ np.array([1.0 / vp, 0.0])
        assert sim.two_compartment_residue(t, fb, ps, vb, ve) == pytest.approx(expected, rel=1e-10)


def aath_averaged_over_transit_times(t, fb, ps, vb, ve, cv, n_capillaries=4000):
    """Independent route to the capillary-transit residue: AATH capillaries at gamma quantiles of Tc."""
    fp = fb * (1.0 - K.HAEMATOCRIT)
    extraction = 1.0 - np.exp(-ps / fp)
    k_ep = extraction * fp / ve
    shape = 1.0 / cv ** 2
    transit = stats.gamma.ppf((np.arange(n_capillaries) + 0.5) / n_capillaries, shape, scale=vb / fb / shape)
    t = np.asarray(t, dtype=float)[..., None]
    capillaries = np.where(t < transit, 1.0, extraction * np.exp(-k_ep * np.maximum(t - transit, 0.0)))
    return capillaries.mean(axis=-1)


@pytest.mark.parametrize("fb, ps, vb, ve, cv", [(0.055, 0.018, 0.11, 0.20, 0.4), (0.0105, 0.025, 0.13, 0.15, 0.3),
                                                (0.07, 0.012, 0.09, 0.25, 0.7)])
def test_capillary_transit_residue_is_the_aath_averaged_over_gamma_transit_times(fb, ps, vb, ve, cv):
    t = np.linspace(0.0, 60.0, 241)
    closed_form = sim.capillary_transit_residue(t, fb, ps, vb, ve, cv)
    assert closed_form[0] == 1.0
    np.testing.assert_allclose(closed_form, aath_averaged_over_transit_times(t, fb, ps, vb, ve, cv), atol=3e-4)


def test_capillary_transit_residue_keeps_a_shoulder_where_the_compartment_model_falls():
    fb, ps, vb, ve = 0.055, 0.018, 0.11, 0.2
    mean_transit_s = vb / fb
    shoulder = sim.capillary_transit_residue(0.3 * mean_transit_s, fb, ps, vb, ve, 0.3)
    compartment = sim.two_compartment_residue(0.3 * mean_transit_s, fb, ps, vb, ve)
    assert shoulder > 0.99 and compartment < 0.9
    # Once every capillary has been passed, what is left is the extracted
    # fraction washing out of the interstitium at k_ep = E Fp / ve.
    fp = fb * (1.0 - K.HAEMATOCRIT)
    extraction = 1.0 - np.exp(-ps / fp)
    late = sim.capillary_transit_residue(np.array([20.0, 40.0]), fb, ps, vb, ve, 0.3)
    assert np.all(late < extraction)
    assert late[1] / late[0] == pytest.approx(np.exp(-extraction * fp / ve * 20.0), rel=1e-6)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("tissue_model", sorted(sim.TISSUE_MODELS))
def test_truth_aif_convolved_with_truth_response_gives_tissue_curves(tissue_model):
    """Independent check: adaptive quadrature of Fb * C(s - delay) * R(t - s)."""
    phantom = sim.simulate_phantom(seed=5, field_strength_t=3.0, ischemic="RCA", matrix=64, pixel_mm=3.2,
                                   tissue_model=tissue_model)
    assert phantom.acquisition["tissue_model"] == tissue_model
    truth = phantom.truth
    residue = sim.TISSUE_MODELS[tissue_model]
    names = sim.TISSUE_MODEL_PARAMETERS[tissue_model]
    fine_t, fine_c = truth["aif_fine_times_s"], truth["aif_fine_mM"]
    times = phantom.frame_times_s
    rng = np.random.default_rng(0)
    for pixel in rng.choice(truth["tissue_mM"].shape[0], 4, replace=False):
        fb = truth["tissue_blood_flow_per_s"][pixel]
        args = [truth["tissue_" + name][pixel] for name in names]
        delay = truth["tissue_delay_s"][pixel]
        for frame in (10, 25, 40, 59):
            t = times[frame]

            def integrand(s):
                return np.interp(s - delay, fine_t, fine_c, left=0.0) * residue(t - s, fb, *args)

            value, _ = integrate.quad(integrand, 0.0, t, limit=400, points=[delay + truth["aif_fine_times_s"][
                np.argmax(fine_c)]])
            assert truth["tissue_mM"][pixel, frame] == pytest.approx(fb * value, rel=5e-3, abs=1e-4)


# --- phantom -------------------------------------------------------------------------

def test_phantom_shapes_and_classes(phantom):
    n_frames = phantom.frame_times_s.size
    assert phantom.frames.shape == (n_frames, 3, sim.PHANTOM_MATRIX, sim.PHANTOM_MATRIX)
    assert phantom.frames.dtype == np.float32 and np.all(np.isfinite(phantom.frames))
    assert 55 <= n_frames <= 65
    for k in range(3):
        assert phantom.lv_blood_mask[k].sum() > 100 and phantom.myocardium_mask[k].sum() > 200
    assert np.all(np.isnan(phantom.mbf_ml_min_g[~phantom.myocardium_mask]))
    assert np.all(phantom.aha_segments[~phantom.myocardium_mask] == 0)


def test_every_aha_segment_present_on_its_level(phantom):
    expected = {"basal": set(range(1, 7)), "mid": set(range(7, 13)), "apical": set(range(13, 17))}
    for k, level in enumerate(phantom.levels):
        assert set(np.unique(phantom.aha_segments[k])) - {0} == expected[level]


def test_wall_thickness_is_realistic(phantom):
    for geometry in phantom.acquisition["slices"]:
        thickness = geometry["epicardial_radius_mm"] - geometry["lv_radius_mm"]
        assert 6.0 <= thickness <= 12.0


def test_ischaemic_territory_and_healthy_ranges(phantom):
    segment_mbf = phantom.segment_mbf_ml_min_g()
    for territory, segments in K.CORONARY_TERRITORIES.items():
        values = segment_mbf[np.array(segments) - 1]
        if territory == "RCA":
            assert np.all((values > 0.5) & (values < 1.4))
        else:
            assert np.all((values >= 2.5) & (values <= 4.0))


def test_subendocardial_gradient_lowers_inner_layer_flow(phantom):
    truth = phantom.truth
    myo = phantom.myocardium_mask
    inner = np.zeros_like(myo)
    for k in range(3):
        lv = phantom.lv_blood_mask[k]
        grown = lv.copy()
        for _ in range(2):  # two-pixel band next to the blood pool
            grown = grown | np.roll(grown, 1, 0) | np.roll(grown, -1, 0) | np.roll(grown, 1, 1) | np.roll(grown, -1, 1)
        inner[k] = grown & myo[k]
    ischaemic = np.isin(phantom.aha_segments, K.CORONARY_TERRITORIES["RCA"])
    mbf = phantom.mbf_ml_min_g
    assert np.mean(mbf[inner & ischaemic]) < 0.95 * np.mean(mbf[~inner & myo & ischaemic])
    assert truth["ischaemic_segments"].sum() == len(K.CORONARY_TERRITORIES["RCA"])


def test_rv_enhances_before_lv_and_lies_on_the_septal_side(phantom):
    truth = phantom.truth
    times = phantom.frame_times_s
    rv_onset = times[np.argmax(truth["rv_blood_mM"] > 0.1)]
    lv_onset = times[np.argmax(truth["aif_mM"] > 0.1)]
    assert rv_onset < lv_onset
    _, anterior, septal = sim.heart_axes_ras()
    rv = phantom.labels == sim.TISSUE_LABELS["rv blood"]
    _, lv_centres, _ = sim.phantom_geometry()
    for k in range(3):
        ji = np.argwhere(rv[k])
        ras = (phantom.ijk_to_ras @ np.c_[ji[:, 1], ji[:, 0], np.full(len(ji), k), np.ones(len(ji))].T)[:3].T
        assert np.mean((ras - lv_centres[k]) @ septal) > 10.0


def test_rv_insertion_points_lie_on_the_epicardium(phantom):
    _, lv_centres, _ = sim.phantom_geometry()
    long_axis = sim.heart_axes_ras()[0]
    for k, geometry in enumerate(phantom.acquisition["slices"]):
        for name in ("anterior", "inferior"):
            offset = phantom.rv_insertion_ras[name][k] - lv_centres[k]
            assert abs(offset @ long_axis) < 1e-9
            assert np.linalg.norm(offset) == pytest.approx(geometry["epicardial_radius_mm"])


def test_apex_first_and_mirrored_storage_keep_the_anatomy():
    base = sim.simulate_phantom(seed=2, ischemic="LAD", n_frames=30, matrix=64, pixel_mm=3.0)
    flipped = sim.simulate_phantom(seed=2, ischemic="LAD", n_frames=30, matrix=64, pixel_mm=3.0, apex_first=True,
                                   mirrored=True)
    assert flipped.levels == ("apical", "mid", "basal")
    assert np.linalg.det(flipped.ijk_to_ras[:3, :3]) * np.linalg.det(base.ijk_to_ras[:3, :3]) > 0
    # The same anatomy stored differently: reverse the slices and flip the columns back.
    np.testing.assert_array_equal(flipped.aha_segments[::-1, :, ::-1], base.aha_segments)
    # The mirrored geometry maps the flipped voxel to the same RAS point.
    voxel = np.array([10, 20, 0, 1.0])
    mirrored_voxel = np.array([63 - 10, 20, 2, 1.0])
    np.testing.assert_allclose(base.ijk_to_ras @ voxel, flipped.ijk_to_ras @ mirrored_voxel, atol=1e-9)


def test_mirrored_slice_axis_keeps_images_and_truth_and_mirrors_the_geometry():
    base = sim.simulate_phantom(seed=2, ischemic="LAD", n_frames=30, matrix=64, pixel_mm=3.0)
    mirrored = sim.simulate_phantom(seed=2, ischemic="LAD", n_frames=30, matrix=64, pixel_mm=3.0,
                                    mirrored_slice_axis=True)
    for name in ("frames", "labels", "aha_segments", "mbf_ml_min_g"):
        np.testing.assert_array_equal(getattr(mirrored, name), getattr(base, name))
    assert mirrored.levels == base.levels and mirrored.acquisition["mirrored_slice_axis"]
    np.testing.assert_array_equal(mirrored.ijk_to_ras[:, :2], base.ijk_to_ras[:, :2])
    np.testing.assert_array_equal(mirrored.ijk_to_ras[:3, 2], -base.ijk_to_ras[:3, 2])
    # The RV points keep their voxel positions ...
    for name in ("anterior", "inferior"):
        voxels = [np.linalg.solve(m[:3, :3], (points - m[:3, 3]).T) for m, points in (
            (base.ijk_to_ras, base.rv_insertion_ras[name]), (mirrored.ijk_to_ras, mirrored.rv_insertion_ras[name]))]
        np.testing.assert_allclose(voxels[0], voxels[1], atol=1e-9)
    # ... and the basal-to-apical direction of the stored stack now points away from the heart's long axis.
    long_axis = sim.heart_axes_ras()[0]
    assert mirrored.ijk_to_ras[:3, 2] @ long_axis < 0 < base.ijk_to_ras[:3, 2] @ long_axis


def test_phantom_is_reproducible_and_seed_dependent():
    a = sim.simulate_phantom(seed=8, n_frames=20, matrix=48, pixel_mm=4.0)
    b = sim.simulate_phantom(seed=8, n_frames=20, matrix=48, pixel_mm=4.0)
    c = sim.simulate_phantom(seed=9, n_frames=20, matrix=48, pixel_mm=4.0)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)


def test_phantom_records_every_acquisition_parameter(phantom):
    required = {"saturation_time_s", "repetition_time_s", "echo_time_s", "flip_angle_nominal_deg",
                "flip_angle_factor", "kspace_ordering", "pulses_to_centre", "t1_blood_s", "t1_myocardium_s",
                "saturation_efficiency", "field_strength_t", "noise_sd"}
    assert required <= set(phantom.acquisition)
    assert phantom.acquisition["t1_blood_s"] == K.T1_BLOOD_S[3.0]


def test_phantom_blood_signal_is_the_sequence_model_of_the_truth_aif(phantom):
    lv = phantom.frames[:, phantom.lv_blood_mask].mean(axis=1)
    np.testing.assert_allclose(lv, phantom.truth["lv_blood_signal_noiseless"], rtol=0.03)


@pytest.fixture(scope="module")
def moving_phantom():
    return sim.simulate_phantom(seed=4, motion="in-plane")


def test_motion_moves_only_the_free_breathing_frames_and_keeps_the_truth(moving_phantom):
    """The same seed with and without motion: the same study, noise included, moved outside the breath-hold."""
    still = sim.simulate_phantom(seed=4)
    shift = moving_phantom.truth["motion_shift_px"]
    held = np.all(shift == 0.0, axis=(1, 2))
    start, end = moving_phantom.truth["motion_breath_hold_s"]
    times = moving_phantom.frame_times_s
    last_slice_s = 2 * sim.phantom_motion.SLICE_INTERVAL_S  # the slices of a beat are acquired one after another
    assert held[(times >= start) & (times + last_slice_s <= end)].all() and not held.all()
    peak = np.argmax(moving_phantom.truth["aif_mM"])
    assert held[peak]  # the frame the ROIs are drawn on is breath-held
    np.testing.assert_array_equal(moving_phantom.frames[held], still.frames[held])
    assert not np.array_equal(moving_phantom.frames[~held], still.frames[~held])
    for name in ("labels", "mbf_ml_min_g", "aha_segments"):
        np.testing.assert_array_equal(getattr(moving_phantom, name), getattr(still, name))
    np.testing.assert_array_equal(moving_phantom.rv_insertion_ras["anterior"], still.rv_insertion_ras["anterior"])
    assert still.acquisition["motion"] == {"kind": "none"} and "motion_shift_px" not in still.truth


def test_motion_stays_within_its_documented_ranges(moving_phantom):
    ranges = sim.phantom_motion.MOTION_RANGES
    shift_mm = moving_phantom.truth["motion_shift_ras_mm"]
    amplitude = moving_phantom.acquisition["motion"]["in_plane_amplitude_mm"]
    assert ranges["in_plane_amplitude_mm"][0] <= amplitude <= ranges["in_plane_amplitude_mm"][1]
    largest = amplitude * ranges["slice_amplitude_factor"][1] + ranges["drift_mm"][1]
    assert 1.0 < np.linalg.norm(shift_mm, axis=-1).max() <= largest
    normal = np.cross(moving_phantom.ijk_to_ras[:3, 0], moving_phantom.ijk_to_ras[:3, 1])
    normal /= np.linalg.norm(normal)
    np.testing.assert_allclose(shift_mm @ normal, 0.0, atol=1e-9)  # in plane
    pixels = moving_phantom.truth["motion_shift_px"]
    np.testing.assert_allclose(np.linalg.norm(pixels, axis=-1) * sim.PHANTOM_PIXEL_MM,
                               np.linalg.norm(shift_mm, axis=-1), rtol=1e-9, atol=1e-12)
    # Small per-slice differences: the slices move together, not identically.
    per_slice = np.linalg.norm(shift_mm, axis=-1)
    assert np.corrcoef(per_slice[:, 0], per_slice[:, 2])[0, 1] > 0.7
    assert not np.allclose(per_slice[:, 0], per_slice[:, 2])
    assert np.all(moving_phantom.truth["motion_through_plane_mm"] == 0.0)


def test_through_plane_motion_changes_the_section_and_is_recorded():
    phantom = sim.simulate_phantom(seed=4, motion="through-plane")
    through = phantom.truth["motion_through_plane_mm"]
    assert np.abs(through).max() > 1.0
    held = np.all(phantom.truth["motion_shift_px"] == 0.0, axis=(1, 2))
    assert np.all(through[held] == 0.0)
    assert phantom.acquisition["motion"]["kind"] == "through-plane"


def test_a_turning_heart_turns_about_the_lv_axis_with_the_same_breathing():
    # The turn is drawn after the other parameters: the same seed breathes the same way in plane, and only turns.
    plain = sim.simulate_phantom(seed=4, motion="in-plane")
    turning = sim.simulate_phantom(seed=4, motion="turning")
    np.testing.assert_array_equal(turning.truth["motion_shift_px"], plain.truth["motion_shift_px"])
    assert np.all(plain.truth["motion_turn_deg"] == 0.0)
    turn = turning.truth["motion_turn_deg"]
    held = np.all(turning.truth["motion_shift_px"] == 0.0, axis=(1, 2))
    assert np.all(turn[held] == 0.0) and 1.0 < np.abs(turn).max() <= sim.phantom_motion.MOTION_RANGES["turn_deg"][1]
    assert turning.acquisition["motion"]["kind"] == "turning"
    np.testing.assert_array_equal(turning.frames[held], plain.frames[held])
    # Outside the hold the turned frames differ from the plain ones, most of all away from the LV axis.
    moved = np.flatnonzero(np.abs(turn).max(axis=1) > 1.0)
    assert not np.array_equal(turning.frames[moved], plain.frames[moved])


def test_motion_must_be_a_known_kind():
    with pytest.raises(ValueError, match="motion must be one of"):
        sim.simulate_phantom(seed=1, motion="sideways")


def test_write_phantom_keeps_the_displacement_in_the_ground_truth(moving_phantom, tmp_path):
    import json

    paths = sim.write_phantom(moving_phantom, tmp_path)
    arrays = np.load(paths["truth_arrays"])
    np.testing.assert_array_equal(arrays["motion_shift_px"], moving_phantom.truth["motion_shift_px"])
    assert json.load(open(paths["truth_description"]))["acquisition"]["motion"]["kind"] == "in-plane"

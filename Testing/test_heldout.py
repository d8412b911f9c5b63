"""The held-out forward model (``Testing/heldout``): physics sanity, reproducibility, variants and truth."""

import os
import re

import numpy as np
import pytest

import heldout
from heldout import anatomy, circulation, epg, kspace, tissue
from heldout.readout import (Relaxation, design_readout, other_slot_events, readout_start_mz, signal_tables,
                             windowed_sinc_profile)

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDEAL = dict(ordering="centric", ideal_spoiling=True, slice_profile=False, saturation_efficiency=1.0, dummy_pulses=0)
BLOOD = Relaxation(t1_s=1.6, t2_s=0.25, r2star_native_per_s=20.0, r1_per_s_per_mM=4.5, r2_per_s_per_mM=5.5,
                   r2star_per_s_per_mM=20.0, diffusion_mm2_per_s=0.05)


@pytest.fixture(scope="module")
def study():
    return heldout.phantom(11, 3.0, "LAD", n_frames=40)


@pytest.fixture(scope="module")
def pairs():
    return heldout.aif_pairs(40, seed=5)


def _readout(seed=0, **fixed):
    return design_readout(np.random.default_rng(seed), 3.0, 0.8, 1.8, 160, **fixed)


# --- the held-out model stays out of the shipped code --------------------------------------

def _python_files(folder):
    for root, _, names in os.walk(os.path.join(REPOSITORY, folder)):
        for name in names:
            if name.endswith(".py"):
                yield os.path.join(root, name)


def test_nothing_shipped_imports_the_heldout_package():
    offenders = [path for folder in ("AIAIFLib", "AIAIF") for path in _python_files(folder)
                 if re.search(r"^\s*(from|import)\s+[\w.]*heldout", open(path).read(), re.MULTILINE)]
    assert offenders == []


def test_heldout_package_does_not_use_the_project_simulator():
    imports = re.compile(r"^\s*(from|import)\s+AIAIFLib\b.*\b(simulation|sequence)\b", re.MULTILINE)
    offenders = [path for path in _python_files(os.path.join("Testing", "heldout")) if imports.search(open(path).read())]
    assert offenders == []
    assert imports.search("from AIAIFLib import simulation") and imports.search("import AIAIFLib.sequence as s")
    # The simulator is a package: its modules count too.
    assert imports.search("from AIAIFLib.simulation.tissue import TISSUE_MODELS")
    assert imports.search("import AIAIFLib.simulation.aif_shapes as shapes")


# --- EPG readout -----------------------------------------------------------------------------

def test_epg_with_ideal_spoiling_is_the_textbook_flash_recursion():
    alpha, r1, tr = np.deg2rad(15.0), 1.0 / 1.3, 0.0025
    signal, final_z = epg.spoiled_readout([alpha], [r1], [1.0 / 0.05], [tr], [np.deg2rad(117.0)], [80], [0.2], [1.0],
                                          ideal_spoiling=True)
    z, expected = 0.2, []
    for _ in range(80):
        expected.append(np.sin(alpha) * z)
        z = z * np.cos(alpha) * np.exp(-tr * r1) + 1.0 - np.exp(-tr * r1)
    np.testing.assert_allclose(signal[0].real, expected, rtol=1e-5)
    np.testing.assert_allclose(final_z[0], z, rtol=1e-5)


def test_rf_spoiling_leaves_residual_coherence_that_ideal_spoiling_removes():
    args = ([np.deg2rad(15.0)], [1.0], [1.0 / 0.045], [0.0025], [np.deg2rad(117.0)], [400], [1.0], [1.0])
    rf, _ = epg.spoiled_readout(*args)
    ideal, _ = epg.spoiled_readout(*args, ideal_spoiling=True)
    ratio = rf[0, -1].real / ideal[0, -1].real
    assert 0.85 < ratio < 1.15 and abs(ratio - 1.0) > 0.01


def test_epg_column_does_not_depend_on_the_rest_of_the_batch():
    short = epg.spoiled_readout([0.3], [2.0], [30.0], [0.003], [0.9], [30], [0.1], [1.0], [0.002])
    both = epg.spoiled_readout([0.3, 0.2], [2.0, 0.7], [30.0, 5.0], [0.003, 0.002], [0.9, 2.0], [30, 90],
                               [0.1, 0.5], [1.0, 0.0], [0.002, 0.0])
    np.testing.assert_array_equal(short[0][0], both[0][0, :30])
    assert short[1][0] == both[1][0]


def test_ideal_readout_matches_the_closed_form_saturation_recovery():
    readout = _readout(**IDEAL)
    table, = signal_tables([(readout, BLOOD, 10.0)])
    conc = 10.0 * np.linspace(0.0, 1.0, table.offset.shape[0]) ** 2
    r1 = 1.0 / BLOOD.t1_s + BLOOD.r1_per_s_per_mM * conc
    r2 = 1.0 / BLOOD.t2_s + BLOOD.r2_per_s_per_mM * conc
    r2star = np.maximum(BLOOD.r2star_native_per_s + BLOOD.r2star_per_s_per_mM * conc, r2)
    mz = 1.0 - np.exp(-r1 * readout.saturation_time_s)  # centric: the centre is the first pulse, TD = TS
    closed = np.sin(np.deg2rad(readout.flip_angle_deg * readout.b1_factor)) * mz * np.exp(-readout.echo_time_s * r2star)
    # The model's own route: perfect saturation makes the start of the readout independent of the history.
    frames = 6
    start = readout_start_mz(np.tile(r1[:, None], (1, frames)), np.tile(table.end_offset[:, None], (1, frames, 1)),
                             np.tile(table.end_slope[:, None], (1, frames, 1)), np.full(r1.size, readout.first_pulse_s),
                             np.full(r1.size, readout.readout_end_s), np.zeros((r1.size, frames, 0)),
                             np.full((r1.size, frames), 0.8), np.ones((r1.size, 1)), np.zeros(r1.size))
    centre = table.offset[:, 0, readout.centre_index] + table.slope[:, 0, readout.centre_index] * start[:, -1, 0]
    np.testing.assert_allclose(centre.real, closed, rtol=1e-5)


def test_signal_tables_interpolate_the_epg_between_grid_points():
    readout = _readout(6, ordering="linear")
    table, = signal_tables([(readout, BLOOD, 20.0)])
    conc = np.array([0.05, 0.7, 3.3, 11.0])
    direct = signal_tables([(readout, BLOOD, c) for c in conc], n_grid=2)
    for c, exact in zip(conc, direct):
        u = table.u_of(c)
        for start in (0.05, 0.6):
            value = table.spline(table.offset)(u) + table.spline(table.slope)(u) * start
            truth = exact.offset[-1] + exact.slope[-1] * start
            assert np.abs(value - truth).max() < 3e-3 * np.abs(truth).max()


def test_signal_rises_monotonically_with_r1():
    relax = Relaxation(1.2, 0.05, 0.0, 4.5, 0.0, 0.0, 1.5e-3)  # no T2 / T2* change with contrast
    for ordering in ("centric", "linear"):
        readout = _readout(1, ordering=ordering)
        table, = signal_tables([(readout, relax, 8.0)])
        weights = kspace.pixel_line_weights(readout, np.ones(readout.matrix), [readout.matrix // 2])[0]
        profile_weight = readout.profile()[1]
        start = 1.0 - np.exp(-(1.0 / relax.t1_s + relax.r1_per_s_per_mM * 8.0 * np.linspace(0, 1, 16) ** 2)[:, None]
                             * readout.first_pulse_s)
        value = np.sum(profile_weight * ((table.offset + table.slope * start[..., None]) @ weights), axis=1)
        assert np.all(np.diff(np.abs(value)) > 0)


def test_linear_ordering_and_partial_fourier_change_the_contrast_as_expected():
    baseline = {}
    contrast = {}
    for name, fixed in (("centric", dict(ordering="centric")),
                        ("linear, partial Fourier", dict(ordering="linear", partial_fourier=0.625, acceleration=2)),
                        ("linear, full", dict(ordering="linear", partial_fourier=1.0, acceleration=2))):
        readout = _readout(2, dummy_pulses=0, slice_profile=False, **fixed)
        table, = signal_tables([(readout, BLOOD, 6.0)])
        r1 = 1.0 / BLOOD.t1_s + BLOOD.r1_per_s_per_mM * np.array([0.0, 6.0])
        start = 1.0 - np.exp(-r1 * readout.first_pulse_s)
        centre = (table.offset[[0, -1], 0, readout.centre_index] + table.slope[[0, -1], 0, readout.centre_index]
                  * start).real
        baseline[name], contrast[name] = centre[0], centre[1] / centre[0]
    # More pulses before the k-space centre hold Mz below its free recovery before contrast.
    assert baseline["centric"] > baseline["linear, partial Fourier"] > baseline["linear, full"]
    assert abs(contrast["linear, full"] / contrast["centric"] - 1.0) > 0.02


def test_inflow_raises_the_blood_signal_at_peak():
    readout = _readout(3, saturation_efficiency=0.9)
    table, = signal_tables([(readout, BLOOD, 8.0)])
    frames = 5
    conc = np.array([0.0, 8.0])
    r1 = np.tile((1.0 / BLOOD.t1_s + BLOOD.r1_per_s_per_mM * conc)[:, None], (1, frames))
    u = table.u_of(conc)
    end_offset = np.tile(table.spline(table.end_offset)(u)[:, None], (1, frames, 1))
    end_slope = np.tile(table.spline(table.end_slope)(u)[:, None], (1, frames, 1))
    events = np.stack([other_slot_events(0, 3, readout.slot_s, np.full(frames, 0.8))] * 2)
    peak = {}
    for inflow in (0.0, 0.05):
        start = readout_start_mz(r1, end_offset, end_slope, np.full(2, readout.first_pulse_s),
                                 np.full(2, readout.readout_end_s), events, np.full((2, frames), 0.8),
                                 np.full((2, 3), 0.9), np.full(2, inflow))
        line = table.spline(table.offset[:, :, readout.centre_index])(u) + table.spline(
            table.slope[:, :, readout.centre_index])(u) * start[:, -1]
        peak[inflow] = np.sum(readout.profile()[1] * line[1].real)
    assert peak[0.05] > peak[0.0]


def test_imperfect_saturation_carries_mz_over_from_the_previous_beats():
    readout = _readout(4)
    table, = signal_tables([(readout, BLOOD, 1.0)])
    frames = 8
    r1 = np.full((1, frames), 1.0 / BLOOD.t1_s)
    args = (r1, np.tile(table.end_offset[:1, None], (1, frames, 1)), np.tile(table.end_slope[:1, None], (1, frames, 1)),
            np.array([readout.first_pulse_s]), np.array([readout.readout_end_s]))
    events = other_slot_events(1, 3, readout.slot_s, np.full(frames, 0.7))[None]
    short = readout_start_mz(*args, events, np.full((1, frames), 0.7), np.full((1, 3), 0.85), np.zeros(1))
    events_long = other_slot_events(1, 3, readout.slot_s, np.full(frames, 1.2))[None]
    long = readout_start_mz(*args, events_long, np.full((1, frames), 1.2), np.full((1, 3), 0.85), np.zeros(1))
    perfect = readout_start_mz(*args, events, np.full((1, frames), 0.7), np.ones((1, 3)), np.zeros(1))
    assert np.all(long > short) and np.all(short > perfect)
    np.testing.assert_allclose(perfect, 1.0 - np.exp(-r1[0, 0] * readout.first_pulse_s))


def test_slice_profile_is_full_at_the_centre_and_falls_off():
    relative, weight = windowed_sinc_profile(3.0)
    assert 0.9 < relative[0] <= 1.0 and np.all(np.diff(relative) < 0) and relative[-1] < 0.2
    assert 1.0 < weight.sum() < 2.5


def test_kspace_weights_give_the_object_where_kspace_is_complete():
    readout = _readout(5, ordering="linear", partial_fourier=1.0, phase_resolution=1.0, acceleration=1)
    profile = np.zeros(readout.matrix)
    profile[60:100] = 1.0
    weights = kspace.pixel_line_weights(readout, profile, [70, 80, 90])
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)  # the same signal on every line


# --- AIF family and rhythm --------------------------------------------------------------------

def test_aif_curves_reach_the_drawn_peak_and_arrive_on_time():
    rng = np.random.default_rng(8)
    params = [circulation.draw_aif(rng) for _ in range(20)]
    grid, lv, rv = circulation.blood_curves(params, 100.0)
    peaks = np.array([p["peak_conc_mM"] for p in params])
    np.testing.assert_allclose(lv.max(axis=1), peaks, rtol=0.01)
    onset = np.array([grid[np.argmax(row >= 0.02 * row.max())] for row in lv])
    np.testing.assert_allclose(onset, [p["arrival_s"] for p in params], atol=0.11)
    assert np.all(grid[np.argmax(rv, axis=1)] < grid[np.argmax(lv, axis=1)])
    assert np.all(lv[:, -1] > 0.01 * peaks)  # a washout tail, not a return to zero


def test_triggers_during_a_running_block_are_skipped():
    rng = np.random.default_rng(3)
    rhythm = dict(circulation.draw_rhythm(rng), ectopic_probability=0.2, missed_trigger_probability=0.05)
    block = 0.85 * 60.0 / rhythm["heart_rate_bpm"]  # longer than a premature beat
    times, skipped = circulation.frame_triggers(rng, rhythm, 80, block_s=block)
    assert np.all(np.diff(times) >= block) and skipped > 0


# --- tissue kinetics --------------------------------------------------------------------------

def test_residue_starts_at_one_falls_and_holds_the_volume_of_distribution():
    flow = tissue.blood_flow_per_s(np.array([0.8, 2.5, 4.0]))
    residue = tissue.two_region_residue(0.1, 3000, flow, 0.11, 0.22, 0.018, 0.65, 0.45)
    np.testing.assert_allclose(residue[:, 0], 1.0)
    assert np.all(np.diff(residue, axis=1) <= 1e-12)
    area = flow * 0.1 * (residue.sum(axis=1) - 0.5 * residue[:, 0])
    np.testing.assert_allclose(area, 0.11 + 0.22 / (1.0 - tissue.HAEMATOCRIT), rtol=0.02)


def test_dispersion_delays_and_keeps_the_area():
    grid = np.arange(0.0, 60.0, 0.1)
    curve = np.exp(-0.5 * ((grid - 15.0) / 2.0) ** 2)
    out = tissue.delayed_dispersed(grid, curve, 1.0, 0.8)[0]
    np.testing.assert_allclose(out.sum(), curve.sum(), rtol=1e-3)
    assert grid[np.argmax(out)] > 16.0 and out.max() < curve.max()


# --- paired AIFs ------------------------------------------------------------------------------

def test_pairs_are_reproducible_and_do_not_depend_on_the_batch(pairs):
    again = heldout.aif_pairs(3, seed=5, chunk_size=2)
    for index in range(3):
        np.testing.assert_array_equal(again.curve(index)["saturated"], pairs.curve(index)["saturated"])
    other = heldout.aif_pairs(3, seed=6)
    assert not np.allclose(other.curve(0)["reference"][:20], pairs.curve(0)["reference"][:20])


def test_pairs_cover_the_documented_ranges(pairs):
    p = pairs.params
    assert np.all((p["peak_conc_mM"] >= 1.0) & (p["peak_conc_mM"] <= 25.0))
    assert np.all((pairs.n_frames >= 40) & (pairs.n_frames <= 90))
    assert np.all((p["arrival_s"] >= 3.0) & (p["arrival_s"] <= 18.0))
    assert set(p["field_strength_t"]) == {1.5, 3.0} and set(p["ordering"]) == {"centric", "linear"}
    for index in range(len(pairs)):
        curve = pairs.curve(index)
        assert np.all(np.diff(curve["times_s"]) > 0) and np.all(np.isfinite(curve["saturated"]))
    intervals = np.diff(pairs.times_s, axis=1)
    assert np.nanmax(np.nanstd(intervals, axis=1) / np.nanmean(intervals, axis=1)) > 0.02


def test_pair_reference_is_the_linear_target_with_the_saturated_baseline(pairs):
    p = pairs.params
    for index in range(5):
        curve = pairs.curve(index)
        expected = pairs.baseline_signal[index] * (1.0 + p["r1_per_s_per_mM"][index] * p["t1_blood_s"][index]
                                                   * curve["conc_mM"])
        np.testing.assert_allclose(curve["reference"], expected)
        before = curve["conc_mM"] == 0.0
        assert 0 < before.sum() and np.all(before[:before.sum()])  # pre-contrast frames, then the bolus
        np.testing.assert_allclose(curve["saturated_noiseless"][before].mean(), pairs.baseline_signal[index])
        assert curve["reference"].max() > 1.1 * curve["saturated_noiseless"].max()  # saturated at the peak


# --- phantom ----------------------------------------------------------------------------------

def test_phantom_is_reproducible_by_seed(study):
    again = heldout.phantom(11, 3.0, "LAD", n_frames=40)
    np.testing.assert_array_equal(again.frames, study.frames)
    np.testing.assert_array_equal(again.truth["mbf_ml_min_g"], study.truth["mbf_ml_min_g"])


def test_ischaemia_changes_the_flow_and_nothing_else(study):
    healthy = heldout.phantom(11, 3.0, "none", n_frames=40)
    np.testing.assert_array_equal(healthy.myocardium_mask, study.myocardium_mask)
    np.testing.assert_array_equal(healthy.truth["aha_labels"], study.truth["aha_labels"])
    np.testing.assert_array_equal(healthy.frame_times_s, study.frame_times_s)
    assert np.all(healthy.truth["segment_mbf_ml_min_g"] > 1.35)
    segment = study.truth["segment_mbf_ml_min_g"]
    lad = np.array([1, 2, 7, 8, 13, 14]) - 1
    others = np.setdiff1d(np.arange(16), lad)
    assert segment[lad].mean() < 0.6 * segment[others].mean()


def test_truth_is_consistent(study):
    labels, mbf = study.truth["aha_labels"], study.truth["mbf_ml_min_g"]
    assert set(np.unique(labels[study.myocardium_mask])) == set(range(1, 17))
    np.testing.assert_array_equal(labels > 0, study.myocardium_mask)
    np.testing.assert_array_equal(np.isfinite(mbf), study.myocardium_mask)
    expected = [mbf[labels == s].mean() for s in range(1, 17)]
    np.testing.assert_allclose(study.truth["segment_mbf_ml_min_g"], expected)
    assert not np.any(study.myocardium_mask & study.lv_blood_mask)
    enhancement = study.truth["aif_reference_signal"] / study.truth["aif_baseline_signal"] - 1.0
    blood = study.acquisition["relaxation"]["blood"]
    np.testing.assert_allclose(enhancement, blood["r1_per_s_per_mM"] * blood["t1_s"] * study.truth["aif_mM"], atol=1e-9)


def test_septal_segments_face_the_rv(study):
    points = study.rv_insertion_ras
    to_ijk = np.linalg.inv(study.ijk_to_ras)
    for k in (0, 1):
        middle = 0.5 * (points["anterior"][k] + points["inferior"][k])
        middle_ij = (to_ijk @ np.r_[middle, 1.0])[:2]
        offset = 6 * k

        def distance(segment):
            jj, ii = np.nonzero(study.truth["aha_labels"][k] == segment + offset)
            return np.hypot(ii.mean() - middle_ij[0], jj.mean() - middle_ij[1])

        assert max(distance(2), distance(3)) < min(distance(5), distance(6))


def test_pixels_are_rician_noise_outside_the_body(study):
    air = study.truth["noiseless_frames"][0] < 1e-6 * study.truth["noiseless_frames"][0].max()
    sigma = study.acquisition["noise_sd"]
    assert air.sum() > 200
    np.testing.assert_allclose(study.frames[0][air].mean(), sigma * np.sqrt(np.pi / 2.0), rtol=0.1)


def test_mirrored_geometry_keeps_pixels_masks_and_truth(study):
    mirrored = heldout.apply_variant(heldout.apply_variant(study, "base-first"), "mirrored-geometry")
    np.testing.assert_array_equal(mirrored.frames, study.frames)
    np.testing.assert_array_equal(mirrored.myocardium_mask, study.myocardium_mask)
    np.testing.assert_array_equal(mirrored.truth["aha_labels"], study.truth["aha_labels"])
    np.testing.assert_array_equal(mirrored.ijk_to_ras[:3, 2], -study.ijk_to_ras[:3, 2])
    long_axis = np.asarray(study.acquisition["heart"]["long_axis"])
    assert np.dot(mirrored.ijk_to_ras[:3, 2], long_axis) < 0 < np.dot(study.ijk_to_ras[:3, 2], long_axis)
    for name in ("anterior", "inferior"):
        np.testing.assert_allclose(np.linalg.inv(mirrored.ijk_to_ras) @ np.c_[mirrored.rv_insertion_ras[name],
                                                                               np.ones(3)].T,
                                   np.linalg.inv(study.ijk_to_ras) @ np.c_[study.rv_insertion_ras[name], np.ones(3)].T,
                                   atol=1e-9)


def test_apex_first_is_base_first_reversed_at_the_same_positions(study):
    apex = heldout.apply_variant(study, "apex-first")
    np.testing.assert_array_equal(apex.frames, study.frames[:, ::-1])
    np.testing.assert_array_equal(apex.truth["aha_labels"], study.truth["aha_labels"][::-1])
    assert apex.slice_levels == ("apical", "mid", "basal")
    for k in range(3):
        np.testing.assert_allclose(apex.ijk_to_ras @ np.array([5.0, 7.0, k, 1.0]),
                                   study.ijk_to_ras @ np.array([5.0, 7.0, 2 - k, 1.0]))
    np.testing.assert_allclose(apex.rv_insertion_ras["anterior"], study.rv_insertion_ras["anterior"][::-1])
    assert heldout.apply_variant(study, "no-points").rv_insertion_ras is None


def test_rv_points_lie_on_their_slices_and_the_pipeline_reads_the_true_labels(study):
    from AIAIFLib import segments

    for variant in ("base-first", "apex-first"):
        case = heldout.apply_variant(study, variant)
        k_of_points = (np.linalg.inv(case.ijk_to_ras) @ np.c_[case.rv_insertion_ras["anterior"], np.ones(3)].T)[2]
        np.testing.assert_allclose(k_of_points, np.arange(3), atol=1e-9)
        labelling = segments.aha_segment_map(case.myocardium_mask, case.lv_blood_mask, case.ijk_to_ras,
                                             case.rv_insertion_ras["anterior"], case.rv_insertion_labels)
        agreement = np.mean(labelling.labels[case.myocardium_mask] == case.truth["aha_labels"][case.myocardium_mask])
        assert agreement > 0.9


def test_write_study_files_for_the_command_line(study, tmp_path):
    from AIAIFLib.aif import read_aif_csv

    paths = heldout.write_study(study, str(tmp_path))
    assert set(os.listdir(str(tmp_path))) == set(heldout.STUDY_FILES.values())
    times, names, curves = read_aif_csv(paths["true_aif"])
    assert names == ["signal"]
    np.testing.assert_allclose(times, study.frame_times_s)
    np.testing.assert_allclose(curves[0], study.truth["aif_reference_signal"])
    no_points = heldout.apply_variant(study, "no-points")
    other = tmp_path / "no_points"
    other.mkdir()
    heldout.write_study(no_points, str(other))
    assert "rv_insertion.mrk.json" not in os.listdir(str(other))


def test_anatomy_classes_cover_the_heart_and_its_surroundings(study):
    fractions = study.truth["myocardium_fraction"]
    assert np.all(fractions >= 0) and np.all(fractions <= 1)
    assert 0.0 < np.mean((fractions > 0) & (fractions < 1)) < 0.05  # partial volume at the borders
    assert anatomy.aha_segment(np.array([10.0, 70.0, 130.0, 190.0, 250.0, 310.0]), "basal").tolist() == [2, 3, 4, 5,
                                                                                                        6, 1]
    assert anatomy.aha_segment(np.array([20.0, 110.0, 200.0, 290.0, 10.0]), "apical").tolist() == [14, 15, 16, 13,
                                                                                                 13]


def test_true_tissue_curves_follow_the_voxels_in_every_variant(study):
    apex = heldout.apply_variant(study, "apex-first")
    for case in (study, apex):
        voxels = case.truth["myocardium_voxels_kji"]
        np.testing.assert_array_equal(voxels, np.argwhere(case.myocardium_mask))
        assert case.truth["myocardium_voxel_conc_mM"].shape == (len(voxels), case.frames.shape[0])
    first = study.truth["myocardium_voxels_kji"][0]
    row = np.flatnonzero((apex.truth["myocardium_voxels_kji"] == [2 - first[0], first[1], first[2]]).all(axis=1))[0]
    np.testing.assert_array_equal(apex.truth["myocardium_voxel_conc_mM"][row], study.truth["myocardium_voxel_conc_mM"][0])
    peak = study.truth["myocardium_voxel_conc_mM"].max(axis=1)
    assert np.all(peak > 0) and np.all(peak < study.truth["aif_mM"].max())


def test_motion_moves_the_free_breathing_frames_of_the_same_study(study):
    moving = heldout.phantom(11, 3.0, "LAD", n_frames=40, motion=True)
    shift = moving.truth["motion_shift_px"]
    held = np.all(shift == 0.0, axis=(1, 2))
    assert shift.shape == (40, 3, 2) and held.any() and not held.all()
    assert held[np.argmax(moving.truth["aif_mM"])]  # the peak, where the ROIs are drawn, is breath-held
    np.testing.assert_array_equal(moving.frames[held], study.frames[held])  # the same noise, the same study
    assert not np.array_equal(moving.frames[~held], study.frames[~held])
    np.testing.assert_array_equal(moving.myocardium_mask, study.myocardium_mask)
    assert np.abs(shift).max() * moving.acquisition["pixel_mm"] <= 0.5 * heldout.phantoms.MOTION["amplitude_mm"][1] + \
        heldout.phantoms.MOTION["drift_mm"][1]


def test_free_breathing_has_no_hold_and_meets_the_truth_only_at_the_peak(study, monkeypatch):
    monkeypatch.setitem(heldout.phantoms.MOTION, "free_breathing", True)
    moving = heldout.phantom(11, 3.0, "LAD", n_frames=40, motion=True)
    shift = moving.truth["motion_shift_px"]
    at_truth = np.flatnonzero(np.all(shift == 0.0, axis=(1, 2)))
    peak = np.argmax(moving.truth["aif_mM"])  # the ROI frame
    assert at_truth.tolist() == [peak]
    assert np.all(np.isnan(moving.truth["motion_breath_hold_s"]))
    np.testing.assert_array_equal(moving.frames[peak], study.frames[peak])
    assert np.all(np.linalg.norm(shift, axis=-1)[np.arange(40) != peak].max(axis=1) > 0.0)


def test_the_heart_turns_with_the_breathing_only_when_asked(study, monkeypatch):
    still_turn = heldout.phantom(11, 3.0, "LAD", n_frames=40, motion=True)
    assert np.all(still_turn.truth["motion_rotation_deg"] == 0.0)
    monkeypatch.setitem(heldout.phantoms.MOTION, "rotation_deg", 4.0)
    turning = heldout.phantom(11, 3.0, "LAD", n_frames=40, motion=True)
    turn, shift = turning.truth["motion_rotation_deg"], turning.truth["motion_shift_px"]
    held = np.all(shift == 0.0, axis=(1, 2))
    np.testing.assert_array_equal(shift, still_turn.truth["motion_shift_px"])  # the same breathing
    assert np.all(turn[held] == 0.0) and 2.0 < np.abs(turn).max() <= 4.0
    np.testing.assert_array_equal(turning.frames[held], study.frames[held])
    # Beyond the moving disc around the heart the chest wall stays, turned or not.
    corner = (slice(None), slice(None), slice(0, 8), slice(0, 8))
    np.testing.assert_array_equal(turning.frames[corner], still_turn.frames[corner])
    assert not np.array_equal(turning.frames[~held], still_turn.frames[~held])

"""The quantification of one study (pipeline.quantify_study) on phantoms with known MBF."""

import dataclasses
import json

import numpy as np
import pytest

from AIAIFLib import constants as K
from AIAIFLib import deconvolution, network, pipeline, studies, training_range
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.simulation import simulate_phantom

N_FRAMES = 40


@pytest.fixture(scope="module")
def phantom():
    return simulate_phantom(seed=5, ischemic="LAD", n_frames=N_FRAMES)


@pytest.fixture(scope="module")
def true_aif_result(phantom):
    parameters = pipeline.QuantificationParameters(
        aif_mode="external", external_aif_times_s=phantom.frame_times_s,
        external_aif_signal=phantom.truth["lv_blood_reference_signal"], tissue_conversion="model")
    return pipeline.quantify_study(studies.phantom_study(phantom), parameters)


@pytest.fixture(scope="module")
def saturated_result(phantom):
    return pipeline.quantify_study(studies.phantom_study(phantom),
                                   pipeline.QuantificationParameters(aif_mode="saturated"))


def test_mbf_map_covers_the_myocardium_only(phantom, true_aif_result):
    mbf = true_aif_result.mbf_ml_min_g
    assert mbf.shape == phantom.myocardium_mask.shape
    assert np.all(np.isnan(mbf[~phantom.myocardium_mask]))
    assert np.mean(np.isfinite(mbf[phantom.myocardium_mask])) > 0.99
    assert set(np.unique(true_aif_result.aha_labels[phantom.myocardium_mask])) == set(K.AHA_SEGMENTS)
    assert np.all(true_aif_result.aha_labels[~phantom.myocardium_mask] == 0)


def test_true_aif_recovers_segment_mbf_and_finds_the_ischaemic_territory(phantom, true_aif_result):
    truth = phantom.segment_mbf_ml_min_g()
    measured = np.asarray(true_aif_result.segments["mbf_mean"])
    # One noisy phantom: single studies can be off by ~20 % as a whole (the benchmark's limits of agreement are
    # about +-0.9 mL/min/g); the bias over many phantoms is measured in Testing/benchmarks.
    assert np.median(np.abs(measured / truth - 1.0)) < 0.3
    assert np.corrcoef(measured, truth)[0, 1] > 0.95
    territories = dict(zip(true_aif_result.territories["territory"], true_aif_result.territories["ischemic"]))
    assert territories == {"LAD": True, "RCA": False, "LCX": False}
    assert true_aif_result.summary["results"]["ischemic_territories"] == ["LAD"]


def test_saturated_aif_overestimates_mbf(phantom, true_aif_result, saturated_result):
    true_aif = np.asarray(true_aif_result.segments["mbf_mean"])
    saturated = np.asarray(saturated_result.segments["mbf_mean"])
    assert np.all(saturated > true_aif)
    assert np.median(saturated / phantom.segment_mbf_ml_min_g()) > 1.5


def test_saturated_runs_always_warn_and_bound_flows_are_flagged(saturated_result):
    warnings = saturated_result.summary["warnings"]
    assert any("saturated blood-pool signal" in text for text in warnings)
    table = saturated_result.segments
    upper = deconvolution.flow_to_mbf(deconvolution.FERMI_UPPER_BOUNDS[0])
    for row, segment in enumerate(table["segment"]):
        in_segment = saturated_result.aha_labels == segment
        at_bound = saturated_result.flow_at_bound[in_segment]
        assert table["n_at_bound"][row] == int(np.count_nonzero(at_bound))
        assert table["mbf_is_bound"][row] == bool(np.count_nonzero(at_bound) > 0.5 * table["n_pixels"][row])
    np.testing.assert_allclose(saturated_result.mbf_ml_min_g[saturated_result.flow_at_bound], upper, rtol=1e-3)
    bound_segments = [s for s, flag in zip(table["segment"], table["mbf_is_bound"]) if flag]
    if bound_segments:
        assert any("is a bound, not a measurement" in text and str(bound_segments[0]) in text for text in warnings)
    quality = saturated_result.summary["fit_quality"]
    assert quality["n_flow_at_bound"] == int(np.count_nonzero(saturated_result.flow_at_bound))


def test_segment_means_leave_out_upper_bound_pixels_unless_they_are_most_of_the_segment(saturated_result):
    # The saturated AIF drives many pixels to the upper flow bound: some segments have a few, some mostly those.
    table = saturated_result.segments
    upper = deconvolution.flow_to_mbf(deconvolution.FERMI_UPPER_BOUNDS[0])
    mbf = saturated_result.mbf_ml_min_g
    at_upper = saturated_result.flow_at_bound & (mbf > 0.5 * upper)
    kinds = set()
    for row, segment in enumerate(table["segment"]):
        finite = (saturated_result.aha_labels == segment) & np.isfinite(mbf)
        n_upper = int(np.count_nonzero(at_upper & finite))
        left_out = 0 < n_upper <= 0.5 * np.count_nonzero(finite)
        kinds.add(left_out)
        used = mbf[finite & ~at_upper] if left_out else mbf[finite]
        assert table["n_left_out"][row] == (n_upper if left_out else 0)
        assert table["mbf_mean"][row] == pytest.approx(used.mean(), rel=1e-12)
        assert table["mbf_median"][row] == pytest.approx(np.median(used), rel=1e-12)
    assert kinds == {True, False}
    assert saturated_result.summary["results"]["segments"][0]["n_left_out"] == table["n_left_out"][0]


def test_the_report_title_says_what_the_result_rests_on(true_aif_result, saturated_result):
    assert pipeline.report_subtitle(true_aif_result.summary) == (
        "AIF: external AIF | 3 T | sequence-model conversion")
    assert pipeline.report_subtitle(saturated_result.summary).startswith("AIF: saturated (uncorrected) | 3 T")


def test_segment_table_columns_are_consistent(phantom, true_aif_result):
    table = true_aif_result.segments
    assert table["segment"] == list(K.AHA_SEGMENTS)
    counts = [int(np.count_nonzero(true_aif_result.aha_labels == s)) for s in K.AHA_SEGMENTS]
    assert table["n_pixels"] == counts
    for row, segment in enumerate(K.AHA_SEGMENTS):
        values = true_aif_result.mbf_ml_min_g[true_aif_result.aha_labels == segment]
        assert table["mbf_mean"][row] == pytest.approx(np.nanmean(values))
        assert table["territory"][row] == K.territory_of_segment(segment)
        assert table["ischemic"][row] == (table["mbf_mean"][row] < K.ISCHAEMIA_THRESHOLD_ML_MIN_G)
    # The fit of the segment-mean curve agrees with the mean of the pixel map.
    np.testing.assert_allclose(table["mbf_curve_fit"], table["mbf_mean"], rtol=0.25)


def test_result_does_not_depend_on_storage_order(phantom, true_aif_result):
    # The same images stored apex first with the columns flipped; the geometry says so.
    study = studies.phantom_study(phantom)
    n_slices, n_columns = study.frames.shape[1], study.frames.shape[3]
    matrix = study.ijk_to_ras.copy()
    matrix[:3, 3] += (n_slices - 1) * matrix[:3, 2] + (n_columns - 1) * matrix[:3, 0]
    matrix[:3, 2] *= -1.0
    matrix[:3, 0] *= -1.0
    reordered = dataclasses.replace(
        study, frames=study.frames[:, ::-1, :, ::-1], ijk_to_ras=matrix,
        blood_pool_mask=study.blood_pool_mask[::-1, :, ::-1], myocardium_mask=study.myocardium_mask[::-1, :, ::-1])
    parameters = pipeline.QuantificationParameters(
        aif_mode="external", external_aif_times_s=phantom.frame_times_s,
        external_aif_signal=phantom.truth["lv_blood_reference_signal"], tissue_conversion="model")
    result = pipeline.quantify_study(reordered, parameters)
    np.testing.assert_array_equal(result.aha_labels, true_aif_result.aha_labels[::-1, :, ::-1])
    np.testing.assert_allclose(result.segments["mbf_mean"], true_aif_result.segments["mbf_mean"], rtol=1e-6)


def test_summary_is_strict_json_with_counts_and_timings(true_aif_result):
    summary = json.loads(json.dumps(pipeline.json_ready(true_aif_result.summary), allow_nan=False))
    quality = summary["fit_quality"]
    assert quality["n_pixels"] == summary["inputs"]["n_myocardium_pixels"]
    assert quality["n_converged"] + quality["n_failed"] <= quality["n_pixels"] + quality["n_converged"]
    calibration = summary["parameters"]["calibration"]
    assert calibration["used"] and calibration["at_bound"] == [] and calibration["relative_residual"] < 0.05
    assert 0.8 <= calibration["saturation_efficiency"] <= 1.05
    acquisition = summary["parameters"]["acquisition"]
    assert acquisition["saturation_efficiency"] == {"value": calibration["saturation_efficiency"],
                                                    "source": "calibrated"}
    assert acquisition["t1_myocardium_s"] == {"value": K.T1_MYOCARDIUM_S[3.0], "source": "default"}
    assert summary["timings_s"]["total_s"] > 0
    assert [row["territory"] for row in summary["results"]["territories"]] == ["LAD", "RCA", "LCX"]


def test_header_values_are_used_unless_an_option_overrides_them(phantom):
    study = studies.phantom_study(phantom)
    study.header = {"field_strength_t": 1.5, "flip_angle_deg": 12.0}
    from_header = pipeline.quantify_study(study, pipeline.QuantificationParameters(aif_mode="saturated"))
    acquisition = from_header.summary["parameters"]["acquisition"]
    assert from_header.summary["parameters"]["field_strength_t"] == 1.5
    assert acquisition["field_strength_t"]["source"] == "header"
    assert acquisition["t1_blood_s"]["value"] == K.T1_BLOOD_S[1.5]
    assert acquisition["flip_angle_deg"] == {"value": 12.0, "source": "header"}
    overridden = pipeline.quantify_study(study, pipeline.QuantificationParameters(
        aif_mode="saturated", field_strength_t=3.0, flip_angle_deg=20.0))
    acquisition = overridden.summary["parameters"]["acquisition"]
    assert acquisition["field_strength_t"] == {"value": 3.0, "source": "option"}
    assert acquisition["flip_angle_deg"] == {"value": 20.0, "source": "option"}


def test_progress_runs_from_zero_to_one(phantom):
    calls = []
    pipeline.quantify_study(studies.phantom_study(phantom), pipeline.QuantificationParameters(aif_mode="saturated"),
                            progress=lambda fraction, message: calls.append(fraction))
    assert calls[0] == 0.0 and calls[-1] == 1.0
    assert all(later >= earlier for earlier, later in zip(calls, calls[1:]))


def test_write_result_files(tmp_path, true_aif_result):
    pipeline.write_result_files(true_aif_result, str(tmp_path), study_name="phantom")
    names = {pipeline.OUTPUT_FILES[key] for key in ("segments", "aif", "summary", "report")}
    assert names <= {path.name for path in tmp_path.iterdir()}
    header = (tmp_path / "segments.csv").read_text().splitlines()[0].split(",")
    assert {"segment", "mbf_mean", "mbf_median", "n_pixels", "territory", "ischemic"} <= set(header)
    assert (tmp_path / "aif.csv").read_text().splitlines()[0].startswith("time_s,saturated,corrected")
    json.loads((tmp_path / "summary.json").read_text())


def _broken(phantom, **changes):
    study = studies.phantom_study(phantom)
    for name, value in changes.items():
        setattr(study, name, value)
    return study


@pytest.mark.parametrize("change, phrase", [
    (lambda p: {"frames": p.frames[:12], "frame_times_s": p.frame_times_s[:12]}, "at least 20"),
    (lambda p: {"frames": np.where(np.arange(N_FRAMES)[:, None, None, None] == 3, np.nan, p.frames)}, "Frame 3"),
    (lambda p: {"frame_times_s": p.frame_times_s[::-1].copy()}, "increase"),
    (lambda p: {"myocardium_mask": np.zeros_like(p.myocardium_mask)}, "myocardium segment is empty"),
    (lambda p: {"blood_pool_mask": p.lv_blood_mask[:2]}, "resample"),
])
def test_bad_studies_raise_one_sentence(phantom, change, phrase):
    with pytest.raises(AIAIFInputError, match=phrase):
        pipeline.quantify_study(_broken(phantom, **change(phantom)),
                                pipeline.QuantificationParameters(aif_mode="saturated"))


@pytest.mark.parametrize("parameters, phrase", [
    (dict(aif_mode="dual"), "Unknown AIF mode"),
    (dict(aif_mode="external"), "external AIF mode needs"),
    (dict(aif_mode="saturated", tissue_conversion="exact"), "Unknown tissue conversion"),
    (dict(aif_mode="saturated", field_strength_t=7.0), "T1"),
])
def test_bad_parameters_raise_one_sentence(phantom, parameters, phrase):
    with pytest.raises(AIAIFInputError, match=phrase):
        pipeline.quantify_study(studies.phantom_study(phantom), pipeline.QuantificationParameters(**parameters))


def test_external_aif_that_does_not_overlap_is_refused(phantom):
    parameters = pipeline.QuantificationParameters(
        aif_mode="external", external_aif_times_s=phantom.frame_times_s + 1000.0,
        external_aif_signal=phantom.truth["lv_blood_reference_signal"])
    with pytest.raises(AIAIFInputError, match="does not overlap"):
        pipeline.quantify_study(studies.phantom_study(phantom), parameters)


# --- AI-AIF training range -------------------------------------------------------------

def _training_range_warnings(summary):
    return [warning for warning in summary["warnings"] if "training range" in warning]


def test_demo_phantom_lies_inside_the_networks_training_range():
    phantom = studies.demo_phantom()
    result = pipeline.quantify_study(studies.phantom_study(phantom), pipeline.QuantificationParameters(
        field_strength_t=studies.DEMO_PHANTOM["field_strength_t"], aif_mode="ai"))
    assert _training_range_warnings(result.summary) == []
    # the same check run directly gives the same (empty) answer
    saturated = result.aif["saturated"]
    assert training_range.training_range_warnings(phantom.frame_times_s, saturated, 3.0) == []


def test_short_series_gets_the_training_range_warning_in_ai_mode_only(phantom, saturated_result):
    # N_FRAMES = 40 leaves fewer frames after contrast arrival than any but the shortest training curves had
    result = pipeline.quantify_study(studies.phantom_study(phantom), pipeline.QuantificationParameters(aif_mode="ai"))
    times, saturated = result.aif["time_s"], result.aif["saturated"]
    expected = training_range.training_range_warnings(times, saturated, 3.0,
                                                      arrival_index=result.summary["aif"]["arrival_frame"])
    assert len(expected) == 1
    assert expected[0].startswith("The number of frames from contrast arrival on in the network's 64-frame window")
    assert _training_range_warnings(result.summary) == expected
    assert result.summary["warnings"][0] == expected[0]  # AIF warnings come first
    assert _training_range_warnings(saturated_result.summary) == []


def test_the_ai_aif_carries_the_ensembles_band_to_the_segments(phantom, tmp_path):
    result = pipeline.quantify_study(studies.phantom_study(phantom), pipeline.QuantificationParameters(aif_mode="ai"))
    uncertainty = result.summary["aif_uncertainty"]
    ensemble = uncertainty["ensemble"]
    assert ensemble["n_members"] == len(network.DEFAULT_ENSEMBLE_PATHS)
    peaks = np.array(ensemble["member_peak_mM"])
    assert peaks.min() <= result.summary["aif"]["peak_mM"] <= peaks.max()
    assert ensemble["peak_spread"] == pytest.approx((peaks.max() - peaks.min()) / result.summary["aif"]["peak_mM"])
    low, high = result.aif["used_mM_low"], result.aif["used_mM_high"]
    assert np.all(low <= result.aif["used_mM"] + 1e-9) and np.all(result.aif["used_mM"] <= high + 1e-9)
    assert np.max(high - low) > 0
    table = result.segments
    mean, band_low, band_high = (np.array(table[key], dtype=float) for key in ("mbf_mean", "mbf_low", "mbf_high"))
    assert np.all(band_low <= mean + 1e-12) and np.all(mean <= band_high + 1e-12)
    assert np.any(band_high > band_low)
    straddling = [int(s) for s, lo, hi in zip(table["segment"], band_low, band_high) if lo < 1.35 <= hi]
    assert ensemble["segments_straddling_threshold"] == straddling
    assert any("straddles" in w for w in result.summary["warnings"]) == bool(straddling)
    consistency = uncertainty["blood_signal_consistency"]
    assert consistency["n_frames"] > 0 and consistency["relative_residual"] >= 0
    pipeline.write_result_files(result, str(tmp_path))
    header = (tmp_path / "aif.csv").read_text().splitlines()[0].split(",")
    assert header[3:6] == ["concentration_mM", "concentration_mM_low", "concentration_mM_high"]
    assert {"mbf_low", "mbf_high"} <= set((tmp_path / "segments.csv").read_text().splitlines()[0].split(","))


def test_without_an_ensemble_the_band_is_the_value(true_aif_result):
    assert true_aif_result.summary["aif_uncertainty"] == {"ensemble": None, "blood_signal_consistency": None}
    assert true_aif_result.segments["mbf_low"] == true_aif_result.segments["mbf_mean"]
    np.testing.assert_array_equal(true_aif_result.aif["used_mM_high"], true_aif_result.aif["used_mM"])


def test_custom_weights_without_training_record_warn_that_the_range_is_unknown(phantom, tmp_path):
    weights = tmp_path / "site_unet.npz"
    weights.write_bytes(open(network.DEFAULT_WEIGHTS_PATH, "rb").read())
    (tmp_path / "site_unet.sha256").write_text(open(network.DEFAULT_CHECKSUM_PATH).read())
    result = pipeline.quantify_study(studies.phantom_study(phantom), pipeline.QuantificationParameters(
        aif_mode="ai", weights_path=str(weights)))
    unknown = [warning for warning in result.summary["warnings"] if "training range is unknown" in warning]
    assert len(unknown) == 1 and str(tmp_path) in unknown[0]
    assert _training_range_warnings(result.summary) == unknown
    json.dumps(pipeline.json_ready(result.summary), allow_nan=False)


# --- orientation of the segments ------------------------------------------------------------

def _territory_calls(result):
    return dict(zip(result.territories["territory"], result.territories["ischemic"]))


def test_without_rv_points_the_images_orient_the_segments(phantom, saturated_result):
    study = studies.phantom_study(phantom)
    study.rv_insertion_ras = study.rv_insertion_labels = None
    result = pipeline.quantify_study(study, pipeline.QuantificationParameters(aif_mode="saturated"))
    myocardium = phantom.myocardium_mask
    assert np.mean(result.aha_labels[myocardium] == phantom.aha_segments[myocardium]) > 0.95
    assert _territory_calls(result) == _territory_calls(saturated_result)
    segmentation = json.loads(json.dumps(pipeline.json_ready(result.summary)))["segmentation"]
    assert segmentation["rules_used"]["septum_side"]["rule"] == "image RV"
    for record in segmentation["rules_used"]["slices"]:
        assert record["insertion_point"]["rule"] == "image RV"
        assert record["septum_side"] == segmentation["rules_used"]["septum_side"]
        assert 0.8 <= record["insertion_point"]["confidence"] <= 1.0
        assert record["image_rv"]["found"] and set(record["image_rv"]["scores"]) == {
            "size", "contrast", "timing", "contact"}
    assert result.summary["inputs"]["n_rv_insertion_points"] == 0
    assert "orientation_s" in result.summary["timings_s"]


def test_a_mirrored_geometry_keeps_the_territory_calls_and_warns(phantom, saturated_result):
    mirrored = simulate_phantom(seed=5, ischemic="LAD", n_frames=N_FRAMES, mirrored_slice_axis=True)
    result = pipeline.quantify_study(studies.phantom_study(mirrored),
                                     pipeline.QuantificationParameters(aif_mode="saturated"))
    np.testing.assert_array_equal(result.aha_labels, saturated_result.aha_labels)
    assert _territory_calls(result) == _territory_calls(saturated_result)
    np.testing.assert_array_equal(result.segments["mbf_mean"], saturated_result.segments["mbf_mean"])
    assert any("the images are followed" in warning for warning in result.summary["warnings"])
    orientation_warnings = result.summary["segmentation"]["rules_used"]["warnings"]
    assert result.summary["warnings"][-len(orientation_warnings):] == orientation_warnings
    assert set(result.summary["warnings"]) - set(orientation_warnings) == set(saturated_result.summary["warnings"])
    assert not any("the images are followed" in warning for warning in saturated_result.summary["warnings"])


@pytest.fixture(scope="module")
def moving_phantom():
    return simulate_phantom(seed=5, ischemic="LAD", n_frames=N_FRAMES, motion="in-plane")


def _true_aif(phantom, **options):
    return pipeline.QuantificationParameters(
        aif_mode="external", external_aif_times_s=phantom.frame_times_s,
        external_aif_signal=phantom.truth["lv_blood_reference_signal"], tissue_conversion="model", **options)


def test_motion_correction_brings_a_moving_study_back_to_the_still_one(phantom, moving_phantom, true_aif_result):
    moved = pipeline.quantify_study(studies.phantom_study(moving_phantom), _true_aif(moving_phantom))
    record = moved.summary["motion"]
    assert record["applied"] and record["mode"] == "auto" and record["roi_frame_rule"] == "peak LV enhancement"
    assert record["frames_used"] == [f for f in range(N_FRAMES) if f not in record["excluded_frames"]]
    assert np.array(record["displacement_mm"]).shape == (N_FRAMES, 3)
    still = np.asarray(true_aif_result.segments["mbf_mean"])
    corrected = np.asarray(moved.segments["mbf_mean"])
    assert np.max(np.abs(corrected / still - 1.0)) < 0.05
    assert moved.motion.correction.frames.shape == moving_phantom.frames.shape
    json.dumps(pipeline.json_ready(moved.summary), allow_nan=False)


def test_auto_on_a_still_study_changes_nothing(phantom, true_aif_result):
    off = pipeline.quantify_study(studies.phantom_study(phantom), _true_aif(phantom, motion_correction="off"))
    np.testing.assert_array_equal(off.mbf_ml_min_g, true_aif_result.mbf_ml_min_g)
    assert not true_aif_result.summary["motion"]["applied"]
    assert true_aif_result.summary["motion"]["measured"] and not off.summary["motion"]["measured"]


def test_the_roi_frame_can_be_named(phantom):
    step = pipeline.correct_study_motion(studies.phantom_study(phantom), _true_aif(phantom, roi_frame=3))
    assert step.correction.roi_frame == 3 and step.correction.roi_frame_rule == "given"
    with pytest.raises(AIAIFInputError, match="beyond the series' last frame"):
        pipeline.correct_study_motion(studies.phantom_study(phantom), _true_aif(phantom, roi_frame=N_FRAMES))


@pytest.mark.parametrize("options, phrase", [({"motion_correction": "maybe"}, "Unknown motion correction"),
                                             ({"roi_frame": -2}, "ROI frame must be a frame index"),
                                             ({"roi_frame": 1.5}, "ROI frame must be a frame index")])
def test_bad_motion_parameters_raise_one_sentence(phantom, options, phrase):
    with pytest.raises(AIAIFInputError, match=phrase):
        pipeline.quantify_study(studies.phantom_study(phantom), _true_aif(phantom, **options))


def test_the_report_shows_the_displacement(tmp_path, moving_phantom):
    result = pipeline.quantify_study(studies.phantom_study(moving_phantom),
                                     pipeline.QuantificationParameters(aif_mode="saturated"))
    pipeline.write_result_files(result, str(tmp_path))
    from matplotlib import image

    height = image.imread(str(tmp_path / "report.png")).shape[0]
    still = tmp_path / "still"
    still.mkdir()
    result.motion.correction.shift_px[:] = np.nan  # as when the motion was not measured
    pipeline.write_result_files(result, str(still))
    assert height > image.imread(str(still / "report.png")).shape[0]  # the extra row of the displacement plot

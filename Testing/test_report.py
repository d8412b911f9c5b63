"""Tests of AIAIFLib.report: every figure is written as a real, non-blank PNG, without pyplot."""

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from AIAIFLib import evaluation, report
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.simulation import simulate_aif_pairs


def assert_png(path):
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200 and image.shape[2] in (3, 4)
    rgb = image[..., :3]
    assert np.mean(np.any(rgb < 0.9, axis=-1)) > 0.01  # something is drawn on the white background
    assert rgb.std() > 0.05


@pytest.fixture(scope="module")
def curves():
    times = np.tile(np.arange(0.0, 40.0, 0.8), (6, 1))
    reference = 0.1 + np.exp(-0.5 * ((times - 10.0) / np.linspace(1.5, 3.0, 6)[:, None]) ** 2)
    test = np.minimum(reference, np.linspace(0.5, 1.0, 6)[:, None])
    return times, reference, test


def test_plot_saturation_examples(tmp_path):
    pairs = {field: simulate_aif_pairs(3, n_frames=40, seed=1, field_strength_t=field) for field in (1.5, 3.0)}
    path = str(tmp_path / "saturation.png")
    report.plot_saturation_examples(path, pairs)
    assert_png(path)


def test_plot_example_aifs_with_arrays_and_lists(tmp_path, curves):
    times, reference, test = curves
    path = str(tmp_path / "examples.png")
    report.plot_example_aifs(path, times, reference, test)
    assert_png(path)
    ragged = str(tmp_path / "ragged.png")
    report.plot_example_aifs(ragged, [times[0], times[1][:30]], [reference[0], reference[1][:30]],
                             [test[0], test[1][:30]], "Reference", "Test")
    assert_png(ragged)


def test_plot_aif_metric_boxplots(tmp_path, curves):
    path = str(tmp_path / "boxplots.png")
    report.plot_aif_metric_boxplots(path, evaluation.analyse_aifs(*curves), "True AIF", "Saturated AIF")
    assert_png(path)


def test_plot_mbf_agreement(tmp_path):
    rng = np.random.default_rng(3)
    reference = rng.uniform(0.8, 3.5, (6, 16))
    test = 0.9 * reference + 0.3 + rng.normal(0.0, 0.2, reference.shape)
    path = str(tmp_path / "mbf.png")
    report.plot_mbf_agreement(path, evaluation.analyse_mbf(reference, test), "True AIF", "Saturated AIF")
    assert_png(path)


def test_unwritable_path_is_an_input_error(tmp_path, curves):
    with pytest.raises(AIAIFInputError, match="Cannot write"):
        report.plot_example_aifs(str(tmp_path / "no" / "such" / "dir.png"), *curves)


def test_report_does_not_import_pyplot():
    code = "import sys, AIAIFLib.report; print('matplotlib.pyplot' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"


# --- Quantification report and bullseye --------------------------------------------------------

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from AIAIFLib import constants as K  # noqa: E402


def bullseye_axes():
    figure = Figure(figsize=(4, 4))
    FigureCanvasAgg(figure)
    return figure.add_subplot(1, 1, 1)


def ring_map(n_slices=3, size=48):
    """A synthetic MBF map: one myocardial ring per slice, MBF rising with the angle."""
    jj, ii = np.mgrid[0:size, 0:size]
    radius = np.hypot(jj - 20.0, ii - 26.0)
    ring = (radius > 8.0) & (radius < 12.0)
    mask = np.repeat(ring[None], n_slices, axis=0)
    angle = np.degrees(np.arctan2(jj - 20.0, ii - 26.0)) % 360.0
    mbf = np.where(mask, 0.5 + angle[None] / 90.0, np.nan)
    return mbf, mask


def test_bullseye_places_segments_in_the_aha_orientation():
    ax = bullseye_axes()
    geometry = report.plot_bullseye(ax, np.linspace(0.5, 4.0, 16))
    angle = dict(zip(geometry.segments, geometry.centre_angle_deg))
    assert angle[1] == pytest.approx(90.0) and angle[7] == pytest.approx(90.0) and angle[13] == pytest.approx(90.0)
    # Septum on the left: anteroseptal upper left, inferoseptal lower left, apical septal due left.
    assert angle[2] == pytest.approx(150.0) and angle[3] == pytest.approx(210.0) and angle[14] == pytest.approx(180.0)
    assert angle[4] == pytest.approx(270.0) and angle[10] == pytest.approx(270.0) and angle[15] == pytest.approx(270.0)
    assert angle[6] == pytest.approx(30.0) and angle[16] == pytest.approx(0.0)
    # Rings: basal outside, apical inside; the wedges of a ring tile the full circle.
    assert geometry.inner_radius[:6].min() >= geometry.outer_radius[6:12].max() - 1e-12
    assert geometry.inner_radius[6:12].min() >= geometry.outer_radius[12:].max() - 1e-12
    for ring in (slice(0, 6), slice(6, 12), slice(12, 16)):
        assert geometry.span_deg[ring].sum() == pytest.approx(360.0)
    for patch, centre, span in zip(geometry.patches, geometry.centre_angle_deg, geometry.span_deg):
        assert (patch.theta1 + patch.theta2) / 2.0 % 360.0 == pytest.approx(centre)
        assert patch.theta2 - patch.theta1 == pytest.approx(span)


def test_bullseye_colours_missing_and_ischaemic_segments():
    values = np.full(16, 3.0)
    values[[0, 9]] = np.nan
    values[[4, 13]] = [1.0, 1.34]
    geometry = report.plot_bullseye(bullseye_axes(), values, threshold_ml_min_g=1.35)
    np.testing.assert_array_equal(np.flatnonzero(geometry.ischaemic) + 1, [5, 14])
    grey = to_rgba(report.MISSING_SEGMENT_COLOUR)
    for segment in (1, 10):
        assert geometry.patches[segment - 1].get_facecolor() == pytest.approx(grey)
    expected = geometry.mappable.to_rgba(3.0)
    assert geometry.patches[2].get_facecolor() == pytest.approx(expected)
    assert geometry.patches[4].get_facecolor() != pytest.approx(expected)


def test_bullseye_rejects_a_wrong_segment_array():
    with pytest.raises(AIAIFInputError, match="16 numbers"):
        report.plot_bullseye(bullseye_axes(), np.ones(17))
    with pytest.raises(AIAIFInputError, match="infinite"):
        report.plot_bullseye(bullseye_axes(), np.r_[np.inf, np.ones(15)])


def test_territory_rows_accept_the_segments_table_records_numbers_and_none():
    segment_mbf = np.full(16, 3.0)
    segment_mbf[[0, 1]] = [1.0, 1.2]  # LAD: the two lowest average to 1.1
    table = {"territory": ["LAD", "RCA", "LCX"], "mbf_ml_min_g": [1.1, 3.0, None], "ischemic": [True, False, None]}
    rows = report._territory_rows(table, segment_mbf, 1.35)
    assert [row[0] for row in rows] == ["LAD", "RCA", "LCX"]
    assert rows[0][1:] == (1.1, True) and rows[1][1:] == (3.0, False)
    assert np.isnan(rows[2][1]) and rows[2][2] is False
    computed = report._territory_rows(None, segment_mbf, 1.35)
    assert computed[0] == ("LAD", pytest.approx(1.1), True) and computed[1][2] is False
    assert report._territory_rows({"RCA": 1.2, "LCX": {"mbf_ml_min_g": 2.0}}, segment_mbf, 1.35) == [
        ("RCA", 1.2, True), ("LCX", 2.0, False)]
    with pytest.raises(AIAIFInputError, match="no MBF value"):
        report._territory_rows({"LAD": {"flow": 2.0}}, segment_mbf, 1.35)


def test_plot_quantification_report(tmp_path):
    mbf, mask = ring_map()
    segment_mbf = np.linspace(0.8, 4.2, 16)
    segment_mbf[[3, 15]] = np.nan
    times = np.arange(40) * 0.9
    aif = 5.0 * np.exp(-0.5 * ((times - 12.0) / 2.5) ** 2)
    path = str(tmp_path / "report.png")
    report.plot_quantification_report(path, times, {"saturated": np.minimum(aif, 2.5), "corrected": aif}, mbf, mask,
                                      segment_mbf, ("basal", "mid", "apical"),
                                      {"territory": ["LAD", "RCA", "LCX"], "mbf_ml_min_g": [0.9, 2.0, 3.0],
                                       "ischemic": [True, False, False]}, title="Synthetic study")
    assert_png(path)
    image = imread(path)
    assert image.shape[1] > image.shape[0] > 400  # a landscape page of several panels
    one_slice = str(tmp_path / "one_slice.png")
    report.plot_quantification_report(one_slice, times, {"corrected": aif}, mbf[:1], mask[:1], np.full(16, np.nan),
                                      ("mid",), aif_units="signal (a.u.)")
    assert_png(one_slice)


@pytest.mark.parametrize("change, message", [
    ({"aif_curves": {"corrected": np.ones(5)}}, "one value per frame"),
    ({"aif_curves": {}}, "No AIF curves"),
    ({"myocardium_mask": np.zeros((3, 48, 48), bool)}, "myocardium mask is empty"),
    ({"myocardium_mask": np.ones((2, 48, 48), bool)}, "shape"),
    ({"slice_levels": ("basal", "mid")}, "one level per slice"),
    ({"segment_mbf": np.ones(12)}, "16 numbers"),
])
def test_quantification_report_input_errors(tmp_path, change, message):
    mbf, mask = ring_map()
    times = np.arange(10.0)
    arguments = {"aif_curves": {"corrected": np.ones(10)}, "myocardium_mask": mask, "slice_levels": K.SLICE_LEVELS,
                 "segment_mbf": np.ones(16)}
    arguments.update(change)
    with pytest.raises(AIAIFInputError, match=message):
        report.plot_quantification_report(str(tmp_path / "bad.png"), times, arguments["aif_curves"], mbf,
                                          arguments["myocardium_mask"], arguments["segment_mbf"],
                                          arguments["slice_levels"])


@pytest.mark.parametrize("n_patients", [2, 6])
def test_bland_altman_legend_leaves_the_limits_of_agreement_visible(n_patients):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rng = np.random.default_rng(4)
    reference = rng.uniform(0.8, 3.5, (n_patients, 16))
    result = evaluation.analyse_mbf(reference, reference + rng.normal(0.0, 0.3, reference.shape))
    figure = Figure(figsize=(4.6, 3.8), layout="constrained")
    canvas = FigureCanvasAgg(figure)
    ax = figure.subplots()
    report._bland_altman_panel(ax, result.per_segment, "Reference", "Test", "Per segment")
    canvas.draw()
    renderer = canvas.get_renderer()
    legend, axes_box = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert legend.y1 <= axes_box.y0  # below the plot: it covers no line and no point
    limits = [line for line in ax.get_lines() if line.get_linestyle() == "--" and len(line.get_ydata())]
    assert len(limits) == 2


@pytest.mark.parametrize("turned", [False, True])
def test_the_motion_panel_draws_the_turns_on_a_second_axis_only_when_there_are_any(turned):
    from matplotlib.figure import Figure

    times = np.arange(10.0)
    turn = np.zeros((10, 3))
    if turned:
        turn[6:, 1] = [2.0, -1.5, 3.0, 0.5]
    figure = Figure()
    ax = figure.add_subplot(111)
    report._plot_displacement(ax, {"times_s": times, "displacement_mm": np.ones((10, 3)), "turn_deg": turn,
                                   "excluded_frames": [], "roi_frame": 2, "applied": True}, ["basal", "mid", "apical"])
    assert len(figure.axes) == (2 if turned else 1)
    if turned:
        right = figure.axes[1]
        assert right.get_ylabel().startswith("Turn (degrees")
        np.testing.assert_array_equal(right.lines[1].get_ydata(), turn[:, 1])
        assert right.lines[1].get_color() == ax.lines[1].get_color()  # the slice's colour


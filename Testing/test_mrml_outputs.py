"""quantify_nodes, the one path of the command line and the Slicer module, with Slicer's real MRML (slicer-core).

Covers the published output nodes and their reuse, the scene transaction (a
failure or a cancel while publishing leaves the scene exactly as it was),
several single-slice sequences stacked into one study, the phantom built as
nodes without files, and the input errors that name the node to fix.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import slicer
import vtk
from vtk.util import numpy_support

from AIAIFLib import constants as K
from AIAIFLib import mrml, pipeline, segments
from AIAIFLib.errors import AIAIFCancelled, AIAIFInputError
from AIAIFLib.simulation import simulate_phantom, write_phantom

from scene_helpers import (column_values, move_by_transform, per_slice_sequences, scene_state, vector_sequence,
                           volume_sequence)

SATURATED = pipeline.QuantificationParameters(aif_mode="saturated")  # needs no network


def _small_phantom(**options):
    return simulate_phantom(seed=5, ischemic="RCA", n_frames=25, matrix=48, pixel_mm=3.5, **options)


@pytest.fixture(scope="module")
def phantom():
    return _small_phantom()


def _true_aif_parameters(phantom):
    return pipeline.QuantificationParameters(aif_mode="external", external_aif_times_s=phantom.frame_times_s,
                                             external_aif_signal=phantom.truth["lv_blood_reference_signal"])


@pytest.fixture(scope="module")
def quantified(phantom):
    """A scene with the phantom's nodes, quantified once (fit quality included)."""
    scene = slicer.vtkMRMLScene()
    nodes = mrml.phantom_nodes(scene, phantom)
    return scene, nodes, mrml.quantify_nodes(scene, *nodes, parameters=SATURATED, fit_quality=True)


# --- helpers ---------------------------------------------------------------------------------------

def _node_ids(scene):
    return [scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())]


def _grid_ras_bounds(ijk_to_ras, shape_kji):
    """Lowest and highest RAS coordinate of a voxel grid, voxel edges included, mm."""
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, shape_kji[2] - 0.5) for j in (-0.5, shape_kji[1] - 0.5)
                        for k in (-0.5, shape_kji[0] - 0.5)]) @ np.asarray(ijk_to_ras).T
    return corners[:, :3].min(axis=0), corners[:, :3].max(axis=0)


def _expected_bullseye(segment_mbf):
    return segments.bullseye_image(np.asarray(segment_mbf, dtype=float))[None].astype(np.float32)


def _assert_names_node_in_one_sentence(error, node_name):
    message = str(error.value)
    assert message.endswith(".") and ";" in message and message.count(". ") == 0, message
    assert repr(node_name) in message, message


def _segmentation(scene, masks, ijk_to_ras, name="segmentation"):
    """A segmentation in memory with one binary-labelmap segment per (name, mask)."""
    mrml.segmentation._ensure_segmentation_converters()
    node = slicer.vtkMRMLSegmentationNode()
    node.SetName(name)
    scene.AddNode(node)
    for segment_name, mask in masks:
        segment_id = node.GetSegmentation().AddEmptySegment("", segment_name, [1.0, 0.0, 0.0])
        if mask.any():
            assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                mrml.phantom._oriented_labelmap(mask, ijk_to_ras), node, segment_id)
    return node


def _points(scene, positions, name="RV points"):
    node = slicer.vtkMRMLMarkupsFiducialNode()
    node.SetName(name)
    scene.AddNode(node)
    for n, position in enumerate(positions):
        node.AddControlPoint(vtk.vtkVector3d(*position), "point {}".format(n))
    return node


# --- the phantom as nodes --------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"mirrored": True}], ids=["left-handed", "right-handed"])
def test_phantom_nodes_give_the_study_of_the_written_files(options, tmp_path):
    phantom = _small_phantom(**options)
    from_nodes = mrml.study_from_nodes(*mrml.phantom_nodes(slicer.vtkMRMLScene(), phantom))
    paths = write_phantom(phantom, tmp_path)
    from_files = mrml.study_from_nodes(*mrml.load_study_files(slicer.vtkMRMLScene(), paths["perfusion"],
                                                              paths["segmentation"], paths["rv_insertion"]))
    np.testing.assert_array_equal(from_nodes.frames, from_files.frames)
    np.testing.assert_array_equal(from_nodes.frame_times_s, from_files.frame_times_s)
    np.testing.assert_allclose(from_nodes.ijk_to_ras, from_files.ijk_to_ras, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(from_nodes.blood_pool_mask, from_files.blood_pool_mask)
    np.testing.assert_array_equal(from_nodes.myocardium_mask, from_files.myocardium_mask)
    np.testing.assert_allclose(from_nodes.rv_insertion_ras, from_files.rv_insertion_ras, rtol=0, atol=1e-9)
    assert from_nodes.rv_insertion_labels == from_files.rv_insertion_labels == phantom.rv_insertion_labels
    assert np.linalg.det(from_nodes.ijk_to_ras[:3, :3]) > 0
    assert from_nodes.myocardium_mask.sum() == phantom.myocardium_mask.sum()


def test_phantom_nodes_give_the_mbf_of_the_written_files(phantom, quantified, tmp_path):
    os.mkdir(tmp_path / "phantom")
    os.mkdir(tmp_path / "out")
    paths = write_phantom(phantom, tmp_path / "phantom")
    from_files = mrml.quantify_files(paths["perfusion"], paths["segmentation"], tmp_path / "out", SATURATED,
                                     rv_insertion_path=paths["rv_insertion"])
    from_nodes = quantified[2].result.mbf_ml_min_g
    assert np.isfinite(from_nodes).sum() > 0.8 * phantom.myocardium_mask.sum()
    np.testing.assert_allclose(from_nodes, from_files.mbf_ml_min_g, rtol=1e-6, atol=1e-9, equal_nan=True)


def test_phantom_nodes_are_a_browsable_sequence_a_segmentation_and_labelled_points(phantom):
    scene = slicer.vtkMRMLScene()
    nodes = mrml.phantom_nodes(scene, phantom, name="Demo")
    sequence = nodes.sequence
    assert (sequence.GetName(), sequence.GetIndexName(), sequence.GetIndexUnit()) == ("Demo", "time", "s")
    assert sequence.GetNumberOfDataNodes() == phantom.frames.shape[0]
    np.testing.assert_array_equal([float(sequence.GetNthIndexValue(n)) for n in range(25)], phantom.frame_times_s)
    browser = mrml.sequence_browser_node(sequence)
    assert browser is not None and browser.GetName() == "Demo browser"
    proxy = browser.GetProxyNode(sequence)
    assert proxy.IsA("vtkMRMLScalarVolumeNode") and proxy.GetScene() is scene
    np.testing.assert_array_equal(mrml.volume_node_array(proxy)[0], phantom.frames[0, ::-1])  # left-handed: reversed
    segmentation = nodes.segmentation.GetSegmentation()
    assert [segmentation.GetNthSegment(n).GetName() for n in range(2)] == [K.LV_BLOOD_POOL_SEGMENT_NAME,
                                                                           K.MYOCARDIUM_SEGMENT_NAME]
    assert nodes.segmentation.GetDisplayNode() is not None
    reference = segmentation.GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    assert reference and reference.endswith("0;47;0;47;0;2;")  # the frame grid: 48 x 48 x 3
    points = nodes.rv_insertion
    labels = [points.GetNthControlPointLabel(n) for n in range(points.GetNumberOfControlPoints())]
    assert tuple(labels) == phantom.rv_insertion_labels
    assert mrml.sequence_browser_node(volume_sequence("alone", phantom.frames[:1], [0.0], np.eye(4))) is None


def test_phantom_nodes_need_neither_pynrrd_nor_matplotlib_nor_torch():
    code = ("import sys, slicer\n"
            "from AIAIFLib import mrml\n"
            "from AIAIFLib.simulation import simulate_phantom\n"
            "nodes = mrml.phantom_nodes(slicer.vtkMRMLScene(), simulate_phantom(seed=1, n_frames=22, matrix=32))\n"
            "mrml.study_from_nodes(*nodes)\n"
            "print(sorted(m for m in ('nrrd', 'matplotlib', 'torch') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_phantom_nodes_failure_removes_what_was_added(phantom, monkeypatch):
    scene = slicer.vtkMRMLScene()
    mrml.phantom_nodes(scene, phantom)
    state = scene_state(scene)

    def broken(*args):
        raise RuntimeError("injected")

    monkeypatch.setattr(mrml.phantom, "_oriented_labelmap", broken)
    with pytest.raises(RuntimeError, match="injected"):
        mrml.phantom_nodes(scene, phantom, name="second")
    assert scene_state(scene) == state


# --- the published nodes -----------------------------------------------------------------------------

def test_quantify_nodes_publishes_the_map_tables_chart_and_fit_quality(phantom, quantified):
    scene, nodes, q = quantified
    result, study = q.result, q.study
    prefix = nodes.sequence.GetName()
    for node, role in ((q.mbf_volume, "mbf"), (q.segments_table, "segments"), (q.aif_table, "aif_table"),
                       (q.aif_chart, "aif_chart"), (q.fit_quality_volume, "fit_quality"),
                       (q.bullseye_volume, "bullseye")):
        assert node.GetScene() is scene and node.IsA(mrml.OUTPUT_ROLE_CLASSES[role])
        assert node.GetName() == "{} {}".format(prefix, mrml.OUTPUT_NAME_SUFFIXES[role])
        assert node.GetAttribute(mrml.OUTPUT_ROLE_ATTRIBUTE) == role
        assert node.GetAttribute(mrml.PERFUSION_NODE_ATTRIBUTE) == nodes.sequence.GetID()
        assert mrml.find_output_node(scene, nodes.sequence, role) is node

    values, matrix = mrml.volume_node_array(q.mbf_volume)
    np.testing.assert_array_equal(values, result.mbf_ml_min_g.astype(np.float32))
    np.testing.assert_allclose(matrix, study.ijk_to_ras, rtol=0, atol=1e-12)
    display = q.mbf_volume.GetDisplayNode()
    assert display.GetColorNodeID() == mrml.mbf_color_table_node(scene).GetID()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == mrml.MBF_DISPLAY_RANGE_ML_MIN_G

    # The bullseye of the segment means: one slice of 1 mm pixels, shown exactly like the MBF map ...
    bullseye, bullseye_matrix = mrml.volume_node_array(q.bullseye_volume)
    assert q.bullseye_volume.GetName() == prefix + " MBF bullseye"
    np.testing.assert_array_equal(bullseye, _expected_bullseye(result.segments["mbf_mean"]))
    labels = segments.bullseye_labels()
    for segment in K.AHA_SEGMENTS:
        assert np.all(bullseye[0][labels == segment] == np.float32(result.segments["mbf_mean"][segment - 1]))
    np.testing.assert_array_equal(np.abs(np.diag(bullseye_matrix[:3, :3])), [mrml.BULLSEYE_PIXEL_MM] * 3)
    bullseye_display = q.bullseye_volume.GetDisplayNode()
    assert bullseye_display is not display
    for getter in ("GetColorNodeID", "GetWindowLevelMin", "GetWindowLevelMax", "GetLowerThreshold",
                   "GetApplyThreshold", "GetAutoWindowLevel"):
        assert getattr(bullseye_display, getter)() == getattr(display, getter)(), getter
    # ... and clear of the patient images: its plane lies above the study's grid.
    low, high = _grid_ras_bounds(study.ijk_to_ras, study.myocardium_mask.shape)
    bullseye_low, _ = _grid_ras_bounds(bullseye_matrix, bullseye.shape)
    assert bullseye_low[2] > high[2] + 0.5 * mrml.BULLSEYE_CLEARANCE_MM

    nrmse, _ = mrml.volume_node_array(q.fit_quality_volume)
    np.testing.assert_array_equal(nrmse, result.fit_nrmse.astype(np.float32))
    assert np.all(np.isnan(nrmse[~study.myocardium_mask])) and np.isfinite(nrmse[study.myocardium_mask]).mean() > 0.8
    assert 0 < np.nanmedian(nrmse) < 1

    table = q.segments_table
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == list(result.segments)
    np.testing.assert_array_equal(column_values(table, "segment"), K.AHA_SEGMENTS)
    np.testing.assert_allclose(column_values(table, "mbf_mean"), result.segments["mbf_mean"], rtol=1e-12)
    assert column_values(table, "territory") == result.segments["territory"]
    assert table.GetColumnUnitLabel("mbf_mean") == "mL/min/g"
    ischemic = column_values(table, "ischemic")
    assert [bool(flag) for flag in ischemic] == [bool(flag) for flag in result.segments["ischemic"]]

    aif = q.aif_table
    assert [aif.GetColumnName(c) for c in range(aif.GetNumberOfColumns())] == [
        "time_s", "saturated_mM", "used_mM", "used_mM_low", "used_mM_high", "myocardium_mM"]
    for column, key in (("time_s", "time_s"), ("saturated_mM", "saturated_mM"), ("used_mM", "used_mM"),
                        ("used_mM_low", "used_mM_low"), ("used_mM_high", "used_mM_high"),
                        ("myocardium_mM", "myocardium_mM")):
        np.testing.assert_allclose(column_values(aif, column), result.aif[key], rtol=1e-12)
    assert aif.GetColumnUnitLabel("time_s") == "s" and aif.GetColumnUnitLabel("used_mM") == "mM"
    assert aif.GetColumnTitle("used_mM") == "AIF used: " + pipeline.AIF_MODE_LABELS["saturated"]

    chart = q.aif_chart
    assert (chart.GetXAxisTitle(), chart.GetYAxisTitle()) == ("Time (s)", "Concentration (mM)")
    series = [chart.GetNthPlotSeriesNode(s) for s in range(chart.GetNumberOfPlotSeriesNodes())]
    assert [node.GetYColumnName() for node in series] == ["saturated_mM", "used_mM", "used_mM_low", "used_mM_high",
                                                          "myocardium_mM"]
    for node in series:
        assert node.GetTableNode() is aif and node.GetXColumnName() == "time_s"
        assert node.GetPlotType() == slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter
        assert node.GetName() == aif.GetColumnTitle(node.GetYColumnName())


def test_rerun_updates_every_output_and_adds_nothing(phantom):
    scene = slicer.vtkMRMLScene()
    nodes = mrml.phantom_nodes(scene, phantom)
    first = mrml.quantify_nodes(scene, *nodes, parameters=SATURATED)
    ids = _node_ids(scene)
    mbf_before = mrml.volume_node_array(first.mbf_volume)[0]
    second = mrml.quantify_nodes(scene, *nodes, parameters=_true_aif_parameters(phantom))
    assert _node_ids(scene) == ids  # series, colour table and display nodes included
    for role in ("mbf_volume", "segments_table", "aif_table", "aif_chart", "bullseye_volume"):
        assert getattr(second, role) is getattr(first, role)
    mbf_after = mrml.volume_node_array(second.mbf_volume)[0]
    assert np.nanmedian(mbf_after) < 0.8 * np.nanmedian(mbf_before)  # the saturated AIF overestimates MBF
    np.testing.assert_array_equal(mbf_after, second.result.mbf_ml_min_g.astype(np.float32))
    assert second.aif_chart.GetNumberOfPlotSeriesNodes() == len(mrml.AIF_CURVES)
    assert second.aif_chart.GetNthPlotSeriesNode(1).GetName() == "AIF used: external AIF"
    # The fit-quality map, asked for later, is added once and then reused as well.
    third = mrml.quantify_nodes(scene, *nodes, parameters=SATURATED, fit_quality=True)
    assert len(_node_ids(scene)) == len(ids) + 2  # the volume and its display node
    fourth = mrml.quantify_nodes(scene, *nodes, parameters=SATURATED, fit_quality=True)
    assert fourth.fit_quality_volume is third.fit_quality_volume and len(_node_ids(scene)) == len(ids) + 2
    # Another perfusion input gets its own outputs.
    other = mrml.phantom_nodes(scene, phantom, name="other")
    separate = mrml.quantify_nodes(scene, *other, parameters=SATURATED)
    assert separate.mbf_volume is not first.mbf_volume and separate.mbf_volume.GetName() == "other MBF"


def test_rerun_with_other_mbf_updates_the_bullseye_values(phantom):
    scene = slicer.vtkMRMLScene()
    nodes = mrml.phantom_nodes(scene, phantom)
    first = mrml.quantify_nodes(scene, *nodes, parameters=SATURATED)
    before, matrix_before = mrml.volume_node_array(first.bullseye_volume)
    ids = _node_ids(scene)
    second = mrml.quantify_nodes(scene, *nodes, parameters=_true_aif_parameters(phantom))
    assert second.bullseye_volume is first.bullseye_volume and _node_ids(scene) == ids
    after, matrix_after = mrml.volume_node_array(second.bullseye_volume)
    np.testing.assert_array_equal(after, _expected_bullseye(second.result.segments["mbf_mean"]))
    np.testing.assert_array_equal(matrix_after, matrix_before)  # same place, new values
    means_before = np.asarray(first.result.segments["mbf_mean"])
    means_after = np.asarray(second.result.segments["mbf_mean"])
    assert np.all(np.abs(means_after - means_before) > 0.1)  # the saturated AIF overestimates every segment
    assert np.nanmedian(after) < 0.8 * np.nanmedian(before)
    labels = segments.bullseye_labels()
    for segment in K.AHA_SEGMENTS:
        assert np.all(after[0][labels == segment] == np.float32(means_after[segment - 1]))
    np.testing.assert_array_equal(np.isnan(after), np.isnan(before))


def test_the_bullseye_shows_segment_1_at_the_top_of_slicers_axial_view():
    """Slicer's own slice logic reslices the bullseye into an unrotated axial view, as the Red view shows it."""
    scene = slicer.vtkMRMLScene()
    values = np.arange(1.0, 17.0) / 4.0  # each segment its own value
    node = mrml.bullseye_volume_node(scene, values, centre_ras=(12.0, -30.0, 250.0))
    application = slicer.vtkMRMLApplicationLogic()
    application.SetMRMLScene(scene)
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLScene(scene)
    view = logic.AddSliceNode("Red")
    view.SetOrientation("Axial")
    logic.GetSliceCompositeNode().SetBackgroundVolumeID(node.GetID())
    size = segments.BULLSEYE_SIZE_PX
    view.SetDimensions(size, size, 1)
    logic.FitSliceToAll()
    reslice = logic.GetBackgroundLayer().GetReslice()
    reslice.Update()
    output = reslice.GetOutput()
    assert output.GetDimensions()[:2] == (size, size)
    shown = numpy_support.vtk_to_numpy(output.GetPointData().GetScalars()).reshape(size, size)[::-1]  # row 0 on top
    centre, step = (size - 1) // 2, size // 10

    def segment_at_ends(line):
        finite = np.flatnonzero(np.isfinite(line))
        return int(round(4 * line[finite[0]])), int(round(4 * line[finite[-1]]))

    assert segment_at_ends(shown[:, centre]) == (1, 4)  # anterior at the top, inferior at the bottom
    assert segment_at_ends(shown[centre - step]) == (2, 6)  # septum on the left, lateral wall on the right
    assert segment_at_ends(shown[centre + step]) == (3, 5)
    printed = segments.bullseye_image(values)  # and the view shows the image as printed (row 0 at the top)
    both = np.isfinite(shown) & np.isfinite(printed)
    assert both.sum() > 0.9 * np.isfinite(printed).sum()
    np.testing.assert_array_equal(shown[both], printed[both].astype(np.float32))


def test_bullseye_geometry_and_bad_input():
    matrix = mrml.bullseye_ijk_to_ras((5.0, -7.0, 100.0), size_px=11, pixel_mm=2.0)
    np.testing.assert_allclose(matrix @ [5.0, 5.0, 0.0, 1.0], [5.0, -7.0, 100.0, 1.0])  # centre pixel
    np.testing.assert_allclose(matrix[:3, :3], np.diag([-2.0, -2.0, 2.0]))  # i to the left, j posterior
    assert np.linalg.det(matrix[:3, :3]) > 0
    grid = np.diag([2.0, 2.0, 8.0, 1.0])
    grid[:3, 3] = (-40.0, 10.0, -20.0)
    centre = mrml.bullseye_centre_beside(grid, (3, 20, 30), clearance_mm=50.0)
    np.testing.assert_allclose(centre, [-40.0 + 29.0, 10.0 + 19.0, -20.0 + 2.5 * 8.0 + 50.0])

    scene = slicer.vtkMRMLScene()
    for call, phrase in (
            (lambda: mrml.bullseye_volume_node(scene, np.ones(15)), "must hold 16 values"),
            (lambda: mrml.bullseye_volume_node(scene, np.ones(16), centre_ras=(0.0, np.nan, 0.0)), "centre"),
            (lambda: mrml.bullseye_volume_node(scene, np.ones(16), size_px=8), "at least"),
            (lambda: mrml.bullseye_volume_node(scene, np.ones(16), node=slicer.vtkMRMLTableNode()),
             "MBF bullseye volume must be a vtkMRMLScalarVolumeNode")):
        with pytest.raises(AIAIFInputError, match=phrase):
            call()
    assert scene.GetNumberOfNodes() == 0


def test_given_output_nodes_are_filled_and_a_name_prefix_names_new_ones(phantom):
    scene = slicer.vtkMRMLScene()
    nodes = mrml.phantom_nodes(scene, phantom)
    volume = slicer.vtkMRMLScalarVolumeNode()
    volume.SetName("my map")
    scene.AddNode(volume)
    table = slicer.vtkMRMLTableNode()  # not yet in a scene: added
    bullseye = slicer.vtkMRMLScalarVolumeNode()
    bullseye.SetName("my bullseye")
    q = mrml.quantify_nodes(scene, nodes.sequence, nodes.segmentation, nodes.rv_insertion, SATURATED,
                            outputs={"mbf": volume, "aif_table": table, "segments": None, "bullseye": bullseye},
                            name_prefix="Stress")
    assert q.mbf_volume is volume and volume.GetName() == "my map"
    assert q.bullseye_volume is bullseye and bullseye.GetScene() is scene and bullseye.GetName() == "my bullseye"
    np.testing.assert_array_equal(mrml.volume_node_array(bullseye)[0],
                                  _expected_bullseye(q.result.segments["mbf_mean"]))
    assert bullseye.GetAttribute(mrml.OUTPUT_ROLE_ATTRIBUTE) == "bullseye"
    assert q.aif_table is table and table.GetScene() is scene and table.GetNumberOfColumns() == 1 + len(mrml.AIF_CURVES)
    assert q.segments_table.GetName() == "Stress MBF per segment" and q.fit_quality_volume is None
    np.testing.assert_array_equal(mrml.volume_node_array(volume)[0], q.result.mbf_ml_min_g.astype(np.float32))
    assert volume.GetAttribute(mrml.OUTPUT_ROLE_ATTRIBUTE) == "mbf"
    fit = slicer.vtkMRMLScalarVolumeNode()
    scene.AddNode(fit)
    assert mrml.quantify_nodes(scene, *nodes, parameters=SATURATED,
                               outputs={"fit_quality": fit}).fit_quality_volume is fit


# --- failures and cancels leave the scene as it was -----------------------------------------------------

def _fail_after_the_map(monkeypatch, name, seen):
    """Make the builder ``name`` raise, recording the MBF volume's voxels at that moment."""
    original = getattr(mrml.quantify, name)

    def broken(scene, *args, **kwargs):
        volumes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
        seen.extend(mrml.volume_node_array(volumes.GetItemAsObject(n))[0].copy()
                    for n in range(volumes.GetNumberOfItems())
                    if volumes.GetItemAsObject(n).GetAttribute(mrml.OUTPUT_ROLE_ATTRIBUTE) == "mbf")
        raise RuntimeError("injected failure in " + name)

    monkeypatch.setattr(mrml.quantify, name, broken)  # the name as quantify_nodes looks it up
    return original


@pytest.mark.parametrize("builder", ["bullseye_volume_node", "segments_table_node", "_aif_chart",
                                     "fit_quality_volume_node"])
def test_a_failure_while_publishing_restores_every_node(phantom, monkeypatch, builder):
    scene = slicer.vtkMRMLScene()
    nodes = mrml.phantom_nodes(scene, phantom)
    first = mrml.quantify_nodes(scene, *nodes, parameters=SATURATED, fit_quality=True)
    first.mbf_volume.GetDisplayNode().SetWindowLevelMinMax(1.0, 2.0)  # a user's own window is kept too
    state = scene_state(scene)
    mbf_before = mrml.volume_node_array(first.mbf_volume)[0]
    seen = []
    _fail_after_the_map(monkeypatch, builder, seen)
    with pytest.raises(RuntimeError, match="injected"):
        mrml.quantify_nodes(scene, *nodes, parameters=_true_aif_parameters(phantom), fit_quality=True)
    assert seen and not np.array_equal(seen[0], mbf_before, equal_nan=True)  # the map had been rewritten ...
    assert scene_state(scene) == state  # ... and is restored, with everything else


def test_a_failure_on_a_fresh_scene_removes_every_added_node(phantom, monkeypatch):
    scene = slicer.vtkMRMLScene()
    nodes = mrml.phantom_nodes(scene, phantom)
    given = slicer.vtkMRMLTableNode()
    given.SetName("given")
    state = scene_state(scene)
    _fail_after_the_map(monkeypatch, "_aif_chart", [])
    with pytest.raises(RuntimeError, match="injected"):
        mrml.quantify_nodes(scene, *nodes, parameters=SATURATED, outputs={"segments": given})
    assert scene_state(scene) == state
    assert scene.GetNodesByClassByName("vtkMRMLColorTableNode", mrml.MBF_COLOR_TABLE_NAME).GetNumberOfItems() == 0
    assert given.GetScene() is None and given.GetNumberOfColumns() == 0 and given.GetAttribute(
        mrml.OUTPUT_ROLE_ATTRIBUTE) is None


@pytest.mark.parametrize("when", ["Reading frame", "Fermi fit", "Showing the MBF bullseye", "Showing the AIF",
                                  "Done"])
def test_a_cancel_from_the_progress_callback_propagates_and_changes_nothing(phantom, quantified, when):
    scene, nodes, _ = quantified
    state = scene_state(scene)
    calls = []

    def progress(fraction, message):
        calls.append((fraction, message))
        if when.lower() in message.lower():
            raise AIAIFCancelled("cancelled by the user")

    with pytest.raises(AIAIFCancelled):
        mrml.quantify_nodes(scene, *nodes, parameters=_true_aif_parameters(phantom), fit_quality=True,
                            progress=progress)
    assert scene_state(scene) == state
    assert all(later >= earlier for (earlier, _), (later, _) in zip(calls, calls[1:]))


def test_progress_runs_from_zero_to_one_and_reports_during_the_fit(phantom):
    scene = slicer.vtkMRMLScene()
    nodes = mrml.phantom_nodes(scene, phantom)
    calls = []
    mrml.quantify_nodes(scene, *nodes, parameters=SATURATED, progress=lambda f, m: calls.append((f, m)))
    fractions = [fraction for fraction, _ in calls]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions.count(1.0) == 1
    assert all(later >= earlier for earlier, later in zip(fractions, fractions[1:]))
    assert sum("Fermi fit," in message for _, message in calls) >= 5  # a cancel is seen during the fit


# --- several single-slice sequences ----------------------------------------------------------------------

def test_single_slice_sequences_stack_into_the_same_study(phantom, quantified):
    scene, nodes, q = quantified
    study = q.study
    sequences = per_slice_sequences(scene, study.frames, study.frame_times_s, study.ijk_to_ras, order=[2, 0, 1])  # list order is not slice order
    stacked = mrml.study_from_nodes(sequences, nodes.segmentation, nodes.rv_insertion)
    np.testing.assert_array_equal(stacked.frames, study.frames)
    np.testing.assert_allclose(stacked.frame_times_s, study.frame_times_s, rtol=1e-15, atol=0)
    np.testing.assert_allclose(stacked.ijk_to_ras, study.ijk_to_ras, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(stacked.blood_pool_mask, study.blood_pool_mask)
    np.testing.assert_array_equal(stacked.myocardium_mask, study.myocardium_mask)
    assert stacked.source["sequence_nodes"] == ["slice 0", "slice 1", "slice 2"]
    assert stacked.source["frame_times_max_difference_s"] == 0.0 and "slice_spacing_note" not in stacked.source
    result = mrml.quantify_nodes(scene, sequences, nodes.segmentation, nodes.rv_insertion, SATURATED)
    np.testing.assert_allclose(result.result.mbf_ml_min_g, q.result.mbf_ml_min_g, rtol=1e-6, equal_nan=True)
    assert result.mbf_volume is not q.mbf_volume  # outputs of another perfusion input
    assert result.mbf_volume.GetAttribute(mrml.PERFUSION_NODE_ATTRIBUTE) == sequences[0].GetID()
    # One multi-slice sequence in a list is that sequence.
    alone = mrml.study_from_nodes([nodes.sequence], nodes.segmentation)
    np.testing.assert_array_equal(alone.frames, study.frames)


def test_per_slice_frame_times_are_averaged_and_their_spread_recorded(quantified):
    scene, nodes, q = quantified
    study = q.study
    shifts = np.array([0.0, 0.12, 0.3])  # slices acquired one after another in each heartbeat
    times = [study.frame_times_s + shift for shift in shifts]
    stacked = mrml.study_from_nodes(per_slice_sequences(scene, study.frames, study.frame_times_s, study.ijk_to_ras, times), nodes.segmentation)
    np.testing.assert_allclose(stacked.frame_times_s, study.frame_times_s + shifts.mean(), rtol=0, atol=1e-12)
    assert stacked.source["frame_times_max_difference_s"] == pytest.approx(0.3, abs=1e-12)
    assert "per-frame mean over 3" in stacked.source["frame_times_from"]


GRID = np.array([[1.5, 0, 0, -6.0], [0, 1.5, 0, 4.0], [0, 0, 1.0, 4.0], [0, 0, 0, 1]])  # fine segmentation grid
SLICE_S_MM = (10.0, 16.0, 28.0)  # steps 6 and 12 mm: uneven


def _cone_masks():
    """Blood pool and myocardium on a fine grid (1 mm along S), wider with S, so that every slice differs."""
    kk, jj, ii = np.indices((31, 12, 14))
    radius = 1.0 + kk / 6.0
    distance = np.hypot(ii - 7.0, jj - 6.0)
    return distance <= radius, (distance > radius) & (distance <= radius + 1.5)


def _slice_matrix(s_mm):
    matrix = GRID.copy()
    matrix[2, 2], matrix[2, 3] = 8.0, s_mm  # 8 mm thick slices
    return matrix


def test_uneven_slices_get_exact_masks_on_their_own_geometry():
    scene = slicer.vtkMRMLScene()
    blood, myocardium = _cone_masks()
    segmentation = _segmentation(scene, [("LV blood pool", blood), ("Myocardium", myocardium)], GRID)
    rng = np.random.default_rng(3)
    times = 0.8 * np.arange(mrml.MIN_FRAMES)
    sequences = [volume_sequence("S {:g}".format(s), rng.uniform(50, 150, (len(times), 1, 12, 14)), times,
                           _slice_matrix(s), scene) for s in SLICE_S_MM[::-1]]
    ids = _node_ids(scene)
    study = mrml.study_from_nodes(sequences, segmentation)
    assert _node_ids(scene) == ids
    assert study.source["sequence_nodes"] == ["S 10", "S 16", "S 28"]
    assert "uneven slice spacing" in study.source["slice_spacing_note"]
    np.testing.assert_allclose(study.ijk_to_ras[:3, 2], [0.0, 0.0, 9.0])  # the mean step
    np.testing.assert_allclose(study.ijk_to_ras[:3, 3], [-6.0, 4.0, 10.0])
    ids_of = [segmentation.GetSegmentation().GetNthSegmentID(n) for n in range(2)]
    for k, s_mm in enumerate(SLICE_S_MM):
        expected = mrml.segment_masks(segmentation, ids_of, _slice_matrix(s_mm), (1, 12, 14))
        np.testing.assert_array_equal(study.blood_pool_mask[k], expected[0][0])
        np.testing.assert_array_equal(study.myocardium_mask[k], expected[1][0])
        np.testing.assert_array_equal(study.blood_pool_mask[k], blood[int(s_mm - 4.0)])  # the fine slice there
    on_mean_grid = mrml.segment_masks(segmentation, ids_of[:1], study.ijk_to_ras, (3, 12, 14))[0]
    assert not np.array_equal(on_mean_grid[1], study.blood_pool_mask[1])  # the regular grid would be wrong


def _stack_case(case):
    """A scene, segmentation and a list of single-slice sequences with one thing wrong; and the name to blame."""
    scene = slicer.vtkMRMLScene()
    blood, myocardium = _cone_masks()
    segmentation = _segmentation(scene, [("LV blood pool", blood), ("Myocardium", myocardium)], GRID)
    times = 0.8 * np.arange(mrml.MIN_FRAMES)
    frames = np.ones((len(times), 1, 12, 14))
    sequences = [volume_sequence("S {:g}".format(s), frames, times, _slice_matrix(s), scene) for s in SLICE_S_MM]
    blame = "S 16"
    if case == "frame count":
        sequences[1] = volume_sequence(blame, frames[:-1], times[:-1], _slice_matrix(16.0), scene)
    elif case == "pixel grid":
        sequences[1] = volume_sequence(blame, np.ones((len(times), 1, 12, 13)), times, _slice_matrix(16.0), scene)
    elif case == "orientation":
        turned = _slice_matrix(16.0)
        turned[:3, :2] = [[0, 1.5], [1.5, 0], [0, 0]]
        sequences[1] = volume_sequence(blame, frames, times, turned, scene)
    elif case == "shifted":
        shifted = _slice_matrix(16.0)
        shifted[0, 3] += 1.0
        sequences[1] = volume_sequence(blame, frames, times, shifted, scene)
    elif case == "same position":
        sequences[1] = volume_sequence(blame, frames, times, _slice_matrix(10.0), scene)
    elif case == "multi-slice":
        sequences[1] = volume_sequence(blame, np.ones((len(times), 2, 12, 14)), times, _slice_matrix(16.0), scene)
    elif case == "twice":
        sequences[2] = sequences[1]
    return scene, segmentation, sequences, blame


@pytest.mark.parametrize("case, phrase", [
    ("frame count", "has 19 frames"), ("pixel grid", "pixels per slice"), ("orientation", "in-plane pixel axes"),
    ("shifted", "shifted in-plane"), ("same position", "same slice position"), ("multi-slice", "2 slices per frame"),
    ("twice", "given twice")])
def test_single_slice_sequences_that_do_not_stack_are_refused_by_name(case, phrase):
    scene, segmentation, sequences, blame = _stack_case(case)
    ids = _node_ids(scene)
    with pytest.raises(AIAIFInputError, match=phrase) as error:
        mrml.quantify_nodes(scene, sequences, segmentation, parameters=SATURATED)
    _assert_names_node_in_one_sentence(error, blame)
    assert _node_ids(scene) == ids


# --- bad input: one sentence naming the node, the scene unchanged -------------------------------------------

SMALL_MATRIX = np.array([[1.5, 0, 0, -6.0], [0, 1.5, 0, 4.0], [0, 0, 6.0, 10.0], [0, 0, 0, 1]])
SMALL_TIMES = 0.9 * np.arange(mrml.MIN_FRAMES)


def _small_scene():
    scene = slicer.vtkMRMLScene()
    blood = np.zeros((2, 8, 9), bool)
    blood[:, 3:5, 3:6] = True
    myocardium = np.zeros((2, 8, 9), bool)
    myocardium[:, 2:6, 2:7] = True
    segmentation = _segmentation(scene, [("LV blood pool", blood), ("Myocardium", myocardium & ~blood),
                                         ("Scar", np.zeros_like(blood))], SMALL_MATRIX, name="my segments")
    frames = np.random.default_rng(2).uniform(50, 150, (len(SMALL_TIMES), 2, 8, 9))
    return scene, volume_sequence("perfusion", frames, SMALL_TIMES, SMALL_MATRIX, scene), segmentation


def test_an_anterior_and_an_inferior_point_per_slice_are_accepted():
    scene, sequence, segmentation = _small_scene()
    points = _points(scene, [(0, 8, 10), (3, 8, 11), (0, 8, 16), (3, 8, 16)])
    points.SetNthControlPointLabel(1, "RV insertion inferior")
    points.SetNthControlPointLabel(3, "Inferior RV insertion point")
    study = mrml.study_from_nodes(sequence, segmentation, points)
    mrml.check_rv_insertion_points(study, points)
    points.SetNthControlPointLabel(3, "anterior")
    points.SetNthControlPointLabel(0, "inferior too")
    with pytest.raises(AIAIFInputError, match="Points 1 and 2 of the point list 'RV points' are both inferior points "
                                              "of slice 0"):
        mrml.check_rv_insertion_points(mrml.study_from_nodes(sequence, segmentation, points), points)


def _table_sequence(scene):
    sequence = slicer.vtkMRMLSequenceNode()
    sequence.SetName("measurements")
    for n in range(mrml.MIN_FRAMES):
        sequence.SetDataNodeAtValue(slicer.vtkMRMLTableNode(), str(n))
    scene.AddNode(sequence)
    return sequence


BAD_INPUTS = {
    # case: (build(scene, sequence, segmentation) -> (arguments, keyword arguments), name to blame, phrase)
    "vector volumes": (lambda scene, seq, seg: ((vector_sequence(scene, "colour cine", mrml.MIN_FRAMES, (9, 8, 2)), seg), {}), "colour cine",
                       "3 components per voxel"),
    "sequence of tables": (lambda scene, seq, seg: ((_table_sequence(scene), seg), {}), "measurements",
                           "vtkMRMLTableNode items"),
    "a single frame": (lambda scene, seq, seg: ((volume_sequence("one frame", np.ones((1, 2, 8, 9)), [0.0], SMALL_MATRIX,
                                                           scene), seg), {}), "one frame", "has 1 frame but"),
    "a volume, not a sequence": (lambda scene, seq, seg: ((_named(seq.GetNthDataNode(0), "frame 0"), seg), {}),
                                 "frame 0", "must be a vtkMRMLSequenceNode"),
    "missing segment": (lambda scene, seq, seg: ((seq, seg), {"myocardium_segment_id": "no such ID"}), "my segments",
                        "no segment with ID"),
    "missing segment name": (lambda scene, seq, seg: (
        (seq, seg), {"myocardium_segment_id": seg.GetSegmentation().GetSegmentIdBySegmentName("Scar")}),
        "my segments", "is empty"),
    "segmentation elsewhere": (lambda scene, seq, seg: ((move_by_transform(scene, seg, 500.0), (seq, seg))[1], {}),
                               "my segments", "lies outside the perfusion images"),
    "more points than myocardial slices": (
        lambda scene, seq, seg: ((seq, seg, _points(scene, [(0, 8, 10), (0, 8, 16), (1, 8, 11)])), {}),
        "RV points", "3 placed anterior points but only 2 slices"),
    "two points in one slice": (lambda scene, seq, seg: ((seq, seg, _points(scene, [(0, 8, 10), (3, 8, 11)])), {}),
                                "RV points", "both anterior points of slice 0"),
    "a point outside every slice": (lambda scene, seq, seg: ((seq, seg, _points(scene, [(0, 8, 100)])), {}),
                                    "RV points", "outside every slice"),
    "wrong output class": (lambda scene, seq, seg: ((seq, seg), {"outputs": {"mbf": _named_table(scene)}}),
                           "results", "mbf output node must be a vtkMRMLScalarVolumeNode"),
    "output of another scene": (lambda scene, seq, seg: ((seq, seg), {"outputs": {
        "aif_table": _named_table(_OTHER_SCENE)}}), "results", "belongs to another scene"),
}

_OTHER_SCENE = slicer.vtkMRMLScene()  # kept alive: a node's scene is a weak reference


def _named(node, name):
    node.SetName(name)
    return node


def _named_table(scene):
    table = slicer.vtkMRMLTableNode()
    table.SetName("results")
    scene.AddNode(table)
    return table


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_the_node_and_leaves_the_scene(case):
    build, blame, phrase = BAD_INPUTS[case]
    scene, sequence, segmentation = _small_scene()
    arguments, keywords = build(scene, sequence, segmentation)
    state = scene_state(scene)
    with pytest.raises(AIAIFInputError, match=phrase) as error:
        mrml.quantify_nodes(scene, *arguments, parameters=SATURATED, **keywords)
    _assert_names_node_in_one_sentence(error, blame)
    assert scene_state(scene) == state


def test_unknown_output_roles_and_arguments_are_refused():
    scene, sequence, segmentation = _small_scene()
    for outputs, phrase in (({"map": None}, "Unknown output role 'map'"), (["mbf"], "outputs must be a dict")):
        with pytest.raises(AIAIFInputError, match=phrase):
            mrml.quantify_nodes(scene, sequence, segmentation, outputs=outputs)
    table = _named_table(scene)
    with pytest.raises(AIAIFInputError, match="'results' is given for both the segments and the aif_table output"):
        mrml.quantify_nodes(scene, sequence, segmentation, outputs={"segments": table, "aif_table": table})
    with pytest.raises(AIAIFInputError, match="vtkMRMLScene"):
        mrml.quantify_nodes(None, sequence, segmentation)
    with pytest.raises(AIAIFInputError, match="Unknown output role"):
        mrml.find_output_node(scene, sequence, "chart")
    with pytest.raises(AIAIFInputError, match="list of perfusion sequences is empty"):
        mrml.quantify_nodes(scene, [], segmentation)
    browser = slicer.vtkMRMLSequenceBrowserNode()
    browser.SetName("empty browser")
    scene.AddNode(browser)
    with pytest.raises(AIAIFInputError, match="'empty browser' has no master sequence"):
        mrml.quantify_nodes(scene, browser, segmentation)


# --- the mean myocardial curve ----------------------------------------------------------------------------

def test_mean_curve_ignores_nan_and_is_nan_only_without_values():
    curves = np.array([[1.0, np.nan, 3.0, np.nan], [3.0, 4.0, np.nan, np.nan]])
    np.testing.assert_array_equal(pipeline._mean_curve(curves), [2.0, 4.0, 3.0, np.nan])


def test_myocardium_curve_follows_the_true_tissue_concentration(phantom, tmp_path):
    parameters = _true_aif_parameters(phantom)
    parameters.tissue_conversion = "model"
    scene = slicer.vtkMRMLScene()
    q = mrml.quantify_nodes(scene, *mrml.phantom_nodes(scene, phantom), parameters=parameters)
    measured = q.result.aif["myocardium_mM"]
    truth = phantom.truth["tissue_mM"].mean(axis=0)
    assert measured.shape == truth.shape
    assert np.corrcoef(measured, truth)[0, 1] > 0.98
    # One noisy 25-frame phantom with the model conversion: the scale within 25 % (blood-pool or signal-unit
    # curves would be off by a factor of ten or more).
    assert abs(measured.max() / truth.max() - 1.0) < 0.25
    pipeline.write_result_files(q.result, str(tmp_path))
    header, *rows = (tmp_path / pipeline.OUTPUT_FILES["aif"]).read_text().splitlines()
    names = header.split(",")
    assert names == ["time_s", "saturated", "corrected", "concentration_mM", "concentration_mM_low",
                     "concentration_mM_high", "myocardium_mM"]
    np.testing.assert_allclose([float(row.split(",")[-1]) for row in rows], measured, rtol=1e-5)


# --- external AIF from a table node ---------------------------------------------------------

def _aif_table(columns):
    table = slicer.vtkMRMLTableNode()
    table.SetName("dual-sequence AIF")
    for name, values in columns.items():
        if all(isinstance(value, str) for value in values):
            column = vtk.vtkStringArray()
            for value in values:
                column.InsertNextValue(value)
        else:
            column = numpy_support.numpy_to_vtk(np.asarray(values, dtype=float), deep=True)
        column.SetName(name)
        table.AddColumn(column)
    return table


def test_external_aif_is_read_from_numeric_or_text_columns():
    times, signal = np.arange(5.0), np.array([1.0, 1.0, 3.0, 2.0, 1.5])
    read = mrml.external_aif_from_table(_aif_table({"time_s": times, "AIF": signal}))
    np.testing.assert_array_equal(read, (times, signal))
    as_text = _aif_table({"Time_s": [str(float(t)) for t in times], "other": ["x"] * 5,
                          "signal": [str(float(v)) for v in signal]})
    np.testing.assert_array_equal(mrml.external_aif_from_table(as_text), (times, signal))


@pytest.mark.parametrize("columns, phrase", [
    ({"t": [0.0, 1.0], "signal": [1.0, 2.0]}, "no column 'time_s'"),
    ({"time_s": [0.0, 1.0], "a": [1.0, 2.0], "b": [1.0, 2.0]}, "name it 'signal'"),
    ({"time_s": ["0", "1"], "signal": ["1", "high"]}, "'high', not a number"),
])
def test_external_aif_table_problems_name_the_table(columns, phrase):
    with pytest.raises(AIAIFInputError) as raised:
        mrml.external_aif_from_table(_aif_table(columns))
    assert phrase in str(raised.value) and "'dual-sequence AIF'" in str(raised.value)
    _assert_names_node_in_one_sentence(raised, "dual-sequence AIF")

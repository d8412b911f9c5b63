"""The MRML adapter with Slicer's real MRML library (``slicer-core``, a test dependency).

Loaded images are compared with the phantom's ground truth by RAS position:
Slicer reverses the slice order of the phantom's left-handed grid on loading,
so voxel indices differ from the file's while every voxel keeps its place.
"""

import os
import re

import nrrd
import numpy as np
import pytest
import slicer
import vtk
from vtk.util import numpy_support

from AIAIFLib import constants as K
from AIAIFLib import mrml
from AIAIFLib import slicer_files as sf
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.pipeline import PerfusionStudy
from AIAIFLib.simulation import RV_INSERTION_NODE_NAME, simulate_phantom, write_phantom

GEOMETRIES = {"standard (left-handed)": {}, "mirrored (right-handed)": {"mirrored": True}}


@pytest.fixture(scope="module", params=sorted(GEOMETRIES))
def phantom_files(request, tmp_path_factory):
    phantom = simulate_phantom(seed=5, ischemic="RCA", n_frames=25, matrix=48, pixel_mm=3.5,
                               **GEOMETRIES[request.param])
    return phantom, write_phantom(phantom, tmp_path_factory.mktemp("phantom"))


@pytest.fixture(scope="module")
def standard_files(tmp_path_factory):
    phantom = simulate_phantom(seed=5, ischemic="RCA", n_frames=25, matrix=48, pixel_mm=3.5)
    return phantom, write_phantom(phantom, tmp_path_factory.mktemp("standard"))


def _load(paths, with_points=True):
    scene = slicer.vtkMRMLScene()
    nodes = mrml.load_study_files(scene, paths["perfusion"], paths["segmentation"],
                                  paths["rv_insertion"] if with_points else None)
    return scene, nodes


def _to_grid(values_kji, ijk_to_ras, grid_ijk_to_ras):
    """Put values (leading axes free, last three [k, j, i]) onto another grid with the same voxel centres."""
    to_grid = np.linalg.inv(grid_ijk_to_ras) @ ijk_to_ras
    np.testing.assert_allclose(to_grid, np.round(to_grid), atol=1e-6)
    shape = values_kji.shape[-3:]
    k, j, i = np.indices(shape).reshape(3, -1)
    gi, gj, gk, _ = np.round(to_grid @ np.stack([i, j, k, np.ones_like(i)])).astype(int)
    placed = np.zeros_like(values_kji)
    placed[..., gk, gj, gi] = values_kji.reshape(values_kji.shape[:-3] + (-1,))
    return placed


def _node_ids(scene):
    return [scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())]


def _representations(segmentation_node):
    segmentation = segmentation_node.GetSegmentation()
    return tuple(name for name in ("Binary labelmap", "Closed surface", "Fractional labelmap", "Planar contour")
                 if segmentation.ContainsRepresentation(name))


def _assert_one_sentence_with_fix(error):
    message = str(error.value)
    assert message.endswith(".") and ";" in message, message


# --- loading the phantom ---------------------------------------------------------------

def test_loaded_phantom_matches_the_ground_truth_by_ras_position(phantom_files):
    phantom, paths = phantom_files
    _, nodes = _load(paths)
    study = mrml.study_from_nodes(*nodes)
    assert isinstance(study, PerfusionStudy)
    n_frames = phantom.frames.shape[0]
    assert study.frames.shape == phantom.frames.shape and study.frames.dtype == np.float32
    np.testing.assert_array_equal(study.frame_times_s, phantom.frame_times_s)
    assert np.linalg.det(study.ijk_to_ras[:3, :3]) > 0  # Slicer makes every loaded grid right-handed
    if np.linalg.det(phantom.ijk_to_ras[:3, :3]) < 0:  # ... by reversing the slices: indices no longer match
        assert not np.array_equal(study.frames, phantom.frames)
        np.testing.assert_array_equal(study.frames, phantom.frames[:, ::-1])
    np.testing.assert_array_equal(_to_grid(study.frames, study.ijk_to_ras, phantom.ijk_to_ras), phantom.frames)
    for mask, truth in ((study.blood_pool_mask, phantom.lv_blood_mask),
                        (study.myocardium_mask, phantom.myocardium_mask)):
        assert mask.dtype == bool and mask.shape == truth.shape
        np.testing.assert_array_equal(_to_grid(mask, study.ijk_to_ras, phantom.ijk_to_ras), truth)
    np.testing.assert_allclose(study.rv_insertion_ras, phantom.rv_insertion_ras["anterior"], rtol=0, atol=1e-9)
    assert study.rv_insertion_labels == tuple("RV insertion anterior {}".format(level) for level in phantom.levels)
    assert study.source["frame_times_from"].startswith("sequence index")
    assert study.source["perfusion_file"] == paths["perfusion"]
    assert (study.source["blood_pool_segment"], study.source["myocardium_segment"]) == (
        K.LV_BLOOD_POOL_SEGMENT_NAME, K.MYOCARDIUM_SEGMENT_NAME)
    assert n_frames >= mrml.MIN_FRAMES


def test_load_adds_named_nodes_that_keep_their_storage_nodes(standard_files):
    _, paths = standard_files
    scene, nodes = _load(paths)
    assert nodes.sequence.GetName() == "perfusion"
    assert nodes.segmentation.GetName() == "segmentation"
    assert nodes.rv_insertion.GetName() == RV_INSERTION_NODE_NAME  # the point list file names itself
    for node, storage_class, key in ((nodes.sequence, "vtkMRMLVolumeSequenceStorageNode", "perfusion"),
                                     (nodes.segmentation, "vtkMRMLSegmentationStorageNode", "segmentation"),
                                     (nodes.rv_insertion, "vtkMRMLMarkupsJsonStorageNode", "rv_insertion")):
        assert node.GetScene() is scene
        assert node.GetStorageNode().IsA(storage_class)
        assert node.GetStorageNode().GetFileName() == paths[key]
    _, without_points = _load(paths, with_points=False)
    assert without_points.rv_insertion is None
    assert mrml.study_from_nodes(*without_points).rv_insertion_ras is None


def test_progress_runs_from_zero_to_one(standard_files):
    _, paths = standard_files
    reports = []
    scene = slicer.vtkMRMLScene()
    nodes = mrml.load_study_files(scene, paths["perfusion"], paths["segmentation"],
                                  progress=lambda f, m: reports.append((f, m)))
    mrml.study_from_nodes(nodes.sequence, nodes.segmentation, progress=lambda f, m: reports.append((f, m)))
    fractions = [f for f, _ in reports]
    assert all(0.0 <= f <= 1.0 for f in fractions) and fractions.count(1.0) == 2
    assert all(isinstance(m, str) and m for _, m in reports)


# --- the scene and the segmentation are left as they were ---------------------------------

def test_reading_the_study_changes_neither_the_scene_nor_the_segmentation(standard_files):
    _, paths = standard_files
    scene, nodes = _load(paths)
    ids = _node_ids(scene)
    representations = _representations(nodes.segmentation)
    labelmap = nodes.segmentation.GetSegmentation().GetNthSegment(0).GetRepresentation("Binary labelmap")
    voxels = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).copy()
    mrml.study_from_nodes(*nodes)
    with pytest.raises(AIAIFInputError):
        mrml.study_from_nodes(nodes.sequence, nodes.segmentation, myocardium_segment_id="no such segment")
    with pytest.raises(AIAIFInputError):
        mrml.study_from_nodes(nodes.sequence, nodes.segmentation, frame_interval_s=0.8)
    assert _node_ids(scene) == ids
    assert _representations(nodes.segmentation) == representations == ("Binary labelmap",)
    labelmap = nodes.segmentation.GetSegmentation().GetNthSegment(0).GetRepresentation("Binary labelmap")
    np.testing.assert_array_equal(numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()), voxels)


def test_closed_surface_segmentation_is_converted_on_a_copy_only(standard_files):
    phantom, paths = standard_files
    scene, nodes = _load(paths)
    segmentation = nodes.segmentation.GetSegmentation()
    segmentation.SetConversionParameter("Smoothing factor", "0")  # keep the thin myocardial ring intact
    assert segmentation.CreateRepresentation("Closed surface")
    segmentation.SetSourceRepresentationName("Closed surface")
    segmentation.RemoveRepresentation("Binary labelmap")
    ids = _node_ids(scene)
    study = mrml.study_from_nodes(*nodes)
    assert _representations(nodes.segmentation) == ("Closed surface",)
    assert _node_ids(scene) == ids
    for mask, truth in ((study.blood_pool_mask, phantom.lv_blood_mask),
                        (study.myocardium_mask, phantom.myocardium_mask)):
        placed = _to_grid(mask, study.ijk_to_ras, phantom.ijk_to_ras)
        dice = 2 * np.sum(placed & truth) / (placed.sum() + truth.sum())
        assert dice > 0.9  # a surface through the voxel edges does not give back every voxel


def _translation(scene, node, offset_ras):
    transform = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(transform)
    matrix = vtk.vtkMatrix4x4()
    for axis in range(3):
        matrix.SetElement(axis, 3, float(offset_ras[axis]))
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())


def test_parent_transforms_of_segmentation_and_points_are_applied(standard_files):
    _, paths = standard_files
    scene, nodes = _load(paths)
    before = mrml.study_from_nodes(*nodes)
    one_column = before.ijk_to_ras[:3, 0]  # RAS step of one voxel along i
    _translation(scene, nodes.segmentation, one_column)
    _translation(scene, nodes.rv_insertion, [0.0, 0.0, 5.0])
    representations = _representations(nodes.segmentation)
    after = mrml.study_from_nodes(*nodes)
    for moved, original in ((after.myocardium_mask, before.myocardium_mask),
                            (after.blood_pool_mask, before.blood_pool_mask)):
        assert not original[..., -1].any()
        np.testing.assert_array_equal(moved[..., 1:], original[..., :-1])
    np.testing.assert_allclose(after.rv_insertion_ras, before.rv_insertion_ras + [0.0, 0.0, 5.0], atol=1e-9)
    assert _representations(nodes.segmentation) == representations
    transformed = [nodes.segmentation.GetTransformNodeID(), nodes.rv_insertion.GetTransformNodeID()]
    assert all(transformed)  # the user's nodes keep their (unhardened) transforms

    _translation(scene, nodes.segmentation, [1000.0, 0.0, 0.0])
    with pytest.raises(AIAIFInputError, match="lies outside the perfusion images") as error:
        mrml.study_from_nodes(*nodes)
    _assert_one_sentence_with_fix(error)


# --- frame times -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def frame_numbered_file(standard_files, tmp_path_factory):
    """The phantom's sequence written without index values, as a plain 4-D NRRD: indexed by frame number."""
    phantom, paths = standard_files
    data, header = nrrd.read(paths["perfusion"], index_order="C")
    for key in [key for key in header if key.startswith("axis ") or key in ("labels", "units")]:
        del header[key]
    path = str(tmp_path_factory.mktemp("frames") / "numbered.seq.nrrd")
    nrrd.write(path, data, header, index_order="C")
    return phantom, path, paths["segmentation"]


def _load_numbered(frame_numbered_file):
    _, path, segmentation = frame_numbered_file
    return mrml.load_study_files(slicer.vtkMRMLScene(), path, segmentation)


def test_frame_numbered_sequence_needs_and_uses_a_frame_interval(frame_numbered_file):
    phantom = frame_numbered_file[0]
    nodes = _load_numbered(frame_numbered_file)
    assert (nodes.sequence.GetIndexName(), nodes.sequence.GetIndexUnit()) == ("frame", "")  # as Slicer loads it
    with pytest.raises(AIAIFInputError, match="--frame-interval") as error:
        mrml.study_from_nodes(*nodes)
    _assert_one_sentence_with_fix(error)
    study = mrml.study_from_nodes(*nodes, frame_interval_s=0.85)
    np.testing.assert_allclose(study.frame_times_s, 0.85 * np.arange(phantom.frames.shape[0]), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(_to_grid(study.frames, study.ijk_to_ras, phantom.ijk_to_ras), phantom.frames)
    assert "frame interval" in study.source["frame_times_from"]
    for bad in (0.0, -1.0, np.nan, "fast"):
        with pytest.raises(AIAIFInputError, match="frame interval"):
            mrml.frame_times_s(nodes.sequence, bad)


@pytest.mark.parametrize("on", ["sequence", "first frame"])
@pytest.mark.parametrize("unit, scale", [(None, 1e-3), ("ms", 1e-3), ("s", 1.0)])
def test_multivolume_frame_labels_give_the_times(frame_numbered_file, on, unit, scale):
    phantom = frame_numbered_file[0]
    nodes = _load_numbered(frame_numbered_file)
    node = nodes.sequence if on == "sequence" else nodes.sequence.GetNthDataNode(0)
    labels = phantom.frame_times_s / scale
    node.SetAttribute(mrml.FRAME_LABELS_ATTRIBUTE, ",".join(repr(float(value)) for value in labels))
    if unit is not None:
        node.SetAttribute(mrml.FRAME_LABELS_UNIT_ATTRIBUTE, unit)
    times = mrml.frame_times_s(nodes.sequence)
    np.testing.assert_allclose(times, phantom.frame_times_s, rtol=1e-12, atol=1e-12)
    # An explicit frame interval wins over the labels.
    np.testing.assert_allclose(mrml.frame_times_s(nodes.sequence, 1.0), np.arange(labels.size), atol=0)


def test_bad_frame_labels_are_refused(frame_numbered_file):
    nodes = _load_numbered(frame_numbered_file)
    n_frames = nodes.sequence.GetNumberOfDataNodes()
    cases = {
        "not increasing": ",".join(["0", "800", "800"] + [str(1000 * n) for n in range(3, n_frames)]),
        "too few": "0,800,1600",
        "not numbers": ",".join(["a"] * n_frames),
    }
    messages = {"not increasing": "do not increase strictly", "too few": "labels for", "not numbers": "not a comma"}
    for case, text in cases.items():
        nodes.sequence.SetAttribute(mrml.FRAME_LABELS_ATTRIBUTE, text)
        with pytest.raises(AIAIFInputError, match=messages[case]) as error:
            mrml.study_from_nodes(*nodes)
        _assert_one_sentence_with_fix(error)


# --- small synthetic studies for the remaining cases ----------------------------------------

SMALL_SHAPE = (2, 8, 9)
SMALL_IJK_TO_RAS = np.array([[1.5, 0, 0, -6.0], [0, 1.5, 0, 4.0], [0, 0, 6.0, 10.0], [0, 0, 0, 1]])


def _small_masks():
    blood = np.zeros(SMALL_SHAPE, dtype=bool)
    blood[:, 3:5, 3:6] = True
    myocardium = np.zeros(SMALL_SHAPE, dtype=bool)
    myocardium[:, 2:6, 2:7] = True
    return blood, myocardium & ~blood


def _small_sequence(values, index_name="time", unit="s", frames=None, text_index=False):
    """A volume sequence built in memory, one frame per index value."""
    rng = np.random.default_rng(1)
    if frames is None:
        frames = rng.uniform(50, 150, (len(values),) + SMALL_SHAPE).astype(np.float32)
    sequence = slicer.vtkMRMLSequenceNode()
    sequence.SetName("small")
    sequence.SetIndexName(index_name)
    sequence.SetIndexUnit(unit)
    if text_index:
        sequence.SetIndexType(slicer.vtkMRMLSequenceNode.TextIndex)
    for frame, value in zip(frames, values):
        volume = slicer.vtkMRMLScalarVolumeNode()
        volume.SetIJKToRASMatrix(mrml.nodes._vtk_matrix(SMALL_IJK_TO_RAS))
        volume.SetAndObserveImageData(mrml.nodes._image_from_array(frame, vtk.VTK_FLOAT))
        sequence.SetDataNodeAtValue(volume, str(value))
    return sequence, frames


@pytest.fixture(scope="module")
def small_segmentation_file(tmp_path_factory):
    blood, myocardium = _small_masks()
    folder = tmp_path_factory.mktemp("small")
    return sf.write_segmentation(folder / "small.seg.nrrd",
                                 [("lv BLOOD pool ", blood, (1, 0, 0)), ("Myocardium", myocardium, (0, 1, 0)),
                                  ("Right ventricle", np.zeros(SMALL_SHAPE, bool), (0, 0, 1))], SMALL_IJK_TO_RAS)


def _small_segmentation(path, scene=None):
    scene = scene if scene is not None else slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    return node


TIMES = 0.1 + 0.9 * np.arange(mrml.MIN_FRAMES)


def test_small_study_reads_exactly_and_finds_segments_by_name_case_insensitively(small_segmentation_file):
    sequence, frames = _small_sequence(TIMES)
    segmentation = _small_segmentation(small_segmentation_file)
    study = mrml.study_from_nodes(sequence, segmentation)
    np.testing.assert_array_equal(study.frames, frames)
    np.testing.assert_allclose(study.frame_times_s, TIMES, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(study.ijk_to_ras, SMALL_IJK_TO_RAS)
    blood, myocardium = _small_masks()
    np.testing.assert_array_equal(study.blood_pool_mask, blood)
    np.testing.assert_array_equal(study.myocardium_mask, myocardium)
    assert mrml.find_segment_id(segmentation, "LV Blood Pool") == segmentation.GetSegmentation() \
        .GetSegmentIdBySegmentName("lv BLOOD pool ")
    # Explicit IDs choose other segments.
    swapped = mrml.study_from_nodes(
        sequence, segmentation, blood_pool_segment_id=mrml.find_segment_id(segmentation, "myocardium"),
        myocardium_segment_id=mrml.find_segment_id(segmentation, K.LV_BLOOD_POOL_SEGMENT_NAME))
    np.testing.assert_array_equal(swapped.blood_pool_mask, myocardium)


def test_millisecond_and_unitless_time_indices_are_converted():
    sequence, _ = _small_sequence(1000 * TIMES, unit="ms")
    np.testing.assert_allclose(mrml.frame_times_s(sequence), TIMES, rtol=1e-12)
    sequence, _ = _small_sequence(TIMES, unit="")  # index "time" without a unit, not frame numbers: seconds
    np.testing.assert_allclose(mrml.frame_times_s(sequence), TIMES, rtol=1e-12)
    sequence, _ = _small_sequence(np.arange(1, 21), index_name="frame", unit="frame")
    np.testing.assert_allclose(mrml.frame_times_s(sequence, 0.5), 0.5 * np.arange(20), rtol=0)


def test_missing_segment_error_lists_the_segments_that_exist(small_segmentation_file):
    segmentation = _small_segmentation(small_segmentation_file)
    with pytest.raises(AIAIFInputError) as error:
        mrml.find_segment_id(segmentation, "Scar")
    _assert_one_sentence_with_fix(error)
    for name in ("'lv BLOOD pool '", "'Myocardium'", "'Right ventricle'"):
        assert name in str(error.value)
    segmentation.GetSegmentation().GetNthSegment(1).SetName("Myo")
    sequence, _ = _small_sequence(TIMES)
    with pytest.raises(AIAIFInputError, match="no segment named 'Myocardium'.*'Myo'"):
        mrml.study_from_nodes(sequence, segmentation)
    with pytest.raises(AIAIFInputError, match="no segment with ID 'Segment_9'.*Segment_1"):
        mrml.study_from_nodes(sequence, segmentation, myocardium_segment_id="Segment_9")


def _with_nan_frame():
    sequence, _ = _small_sequence(TIMES)
    image = sequence.GetNthDataNode(7).GetImageData()
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[5] = np.nan
    return sequence


def _with_moved_frame():
    sequence, _ = _small_sequence(TIMES)
    moved = SMALL_IJK_TO_RAS.copy()
    moved[0, 3] += 1.0
    sequence.GetNthDataNode(4).SetIJKToRASMatrix(mrml.nodes._vtk_matrix(moved))
    return sequence


BAD_STUDIES = {
    "fewer than 20 frames": (lambda: _small_sequence(TIMES[:-1])[0], {}, "at least 20"),
    "NaN frame": (_with_nan_frame, {}, "Frame 7 .* NaN"),
    "frames on another grid": (_with_moved_frame, {}, "Frame 4 .* another voxel grid"),
    "times not increasing": (lambda: _small_sequence(TIMES[[0, 1, 2, 3, 5, 4] + list(range(6, 20))],
                                                     text_index=True)[0], {}, "do not increase strictly"),
    "index not numeric": (lambda: _small_sequence(["t{}".format(n) for n in range(20)], text_index=True)[0],
                          {}, "not all finite numbers"),
    "index not time": (lambda: _small_sequence(TIMES, index_name="position", unit="mm")[0], {}, "is not time"),
    "interval for a timed sequence": (lambda: _small_sequence(TIMES)[0], {"frame_interval_s": 1.0},
                                      "already has frame times"),
    "frame numbers without interval": (lambda: _small_sequence(range(20), index_name="frame", unit="")[0], {},
                                       "--frame-interval"),
    "neither times nor frame numbers": (lambda: _small_sequence(range(3, 23), index_name="frame", unit="")[0], {},
                                        "neither times nor frame numbers"),
    "empty myocardium": (lambda: _small_sequence(TIMES)[0], {"myocardium_segment_id": "Segment_3"}, "is empty"),
    "one segment for both": (lambda: _small_sequence(TIMES)[0],
                             {"blood_pool_segment_id": "Segment_2", "myocardium_segment_id": "Segment_2"},
                             "two different segments"),
    "not a sequence": (lambda: slicer.vtkMRMLScalarVolumeNode(), {}, "must be a vtkMRMLSequenceNode"),
}


@pytest.mark.parametrize("case", sorted(BAD_STUDIES))
def test_bad_study_raises_one_sentence_and_leaves_the_scene(case, small_segmentation_file):
    make_sequence, arguments, pattern = BAD_STUDIES[case]
    scene = slicer.vtkMRMLScene()
    segmentation = _small_segmentation(small_segmentation_file, scene)
    ids, representations = _node_ids(scene), _representations(segmentation)
    with pytest.raises(AIAIFInputError, match=pattern) as error:
        mrml.study_from_nodes(make_sequence(), segmentation, **arguments)
    _assert_one_sentence_with_fix(error)
    assert _node_ids(scene) == ids
    assert _representations(segmentation) == representations


def test_a_sequence_browser_stands_for_its_master_sequence(small_segmentation_file):
    scene = slicer.vtkMRMLScene()
    sequence, frames = _small_sequence(TIMES)
    scene.AddNode(sequence)
    browser = slicer.vtkMRMLSequenceBrowserNode()
    scene.AddNode(browser)
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    study = mrml.study_from_nodes(browser, _small_segmentation(small_segmentation_file, scene))
    np.testing.assert_array_equal(study.frames, frames)
    assert study.source["sequence_node"] == "small"


def test_legacy_fcsv_point_list_loads(standard_files, tmp_path):
    phantom, paths = standard_files
    points = slicer.vtkMRMLMarkupsFiducialNode()
    for n, position in enumerate(phantom.rv_insertion_ras["anterior"]):
        points.AddControlPoint(*position, "RV {}".format(n))
    storage = slicer.vtkMRMLMarkupsFiducialStorageNode()
    storage.SetFileName(str(tmp_path / "rv.fcsv"))
    with mrml.nodes._vtk_messages_silenced():  # Slicer warns that .fcsv is deprecated
        assert storage.WriteData(points) == 1
    scene = slicer.vtkMRMLScene()
    nodes = mrml.load_study_files(scene, paths["perfusion"], paths["segmentation"], tmp_path / "rv.fcsv")
    assert nodes.rv_insertion.GetStorageNode().IsA("vtkMRMLMarkupsFiducialStorageNode")
    ras, labels = mrml.rv_insertion_points(nodes.rv_insertion)
    np.testing.assert_allclose(ras, phantom.rv_insertion_ras["anterior"], rtol=0, atol=1e-4)  # fcsv is text
    assert labels == ("RV 0", "RV 1", "RV 2")


def test_point_list_without_placed_points_is_refused(small_segmentation_file):
    sequence, _ = _small_sequence(TIMES)
    points = slicer.vtkMRMLMarkupsFiducialNode()
    with pytest.raises(AIAIFInputError, match="no placed points") as error:
        mrml.study_from_nodes(sequence, _small_segmentation(small_segmentation_file), points)
    _assert_one_sentence_with_fix(error)
    points.AddControlPoint(1.0, 2.0, 3.0, "anterior")
    study = mrml.study_from_nodes(sequence, _small_segmentation(small_segmentation_file), points)
    np.testing.assert_array_equal(study.rv_insertion_ras, [[1.0, 2.0, 3.0]])
    assert study.rv_insertion_labels == ("anterior",)


# --- loading failures ------------------------------------------------------------------------

def _garbage(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not a Slicer file\n")
    return str(path)


def test_missing_or_unreadable_files_raise_and_leave_the_scene_as_it_was(standard_files, tmp_path):
    _, paths = standard_files
    scene = slicer.vtkMRMLScene()
    kept = mrml.load_volume_file(scene, mrml.save_volume_node(
        mrml.mbf_volume_node(slicer.vtkMRMLScene(), np.ones((2, 3, 4)), np.eye(4)), str(tmp_path / "kept.nrrd")))
    ids = _node_ids(scene)
    cases = {
        "missing sequence": ((str(tmp_path / "none.seq.nrrd"), paths["segmentation"], None), "does not exist"),
        "unreadable sequence": ((_garbage(tmp_path, "bad.seq.nrrd"), paths["segmentation"], None),
                                "perfusion file .* is not a NRRD file"),
        "missing segmentation": ((paths["perfusion"], str(tmp_path / "none.seg.nrrd"), None), "does not exist"),
        "unreadable segmentation": ((paths["perfusion"], _garbage(tmp_path, "bad.seg.nrrd"), None),
                                    "segmentation file .* is not a NRRD file"),
        "unreadable points": ((paths["perfusion"], paths["segmentation"], _garbage(tmp_path, "bad.mrk.json")),
                              "could not read the RV insertion"),
        "points of unknown type": ((paths["perfusion"], paths["segmentation"], _garbage(tmp_path, "p.txt")),
                                   "neither a .mrk.json nor a .fcsv"),
        "no segmentation given": ((paths["perfusion"], None, None), "No segmentation file"),
    }
    for case, (arguments, pattern) in cases.items():
        with pytest.raises(AIAIFInputError, match=pattern) as error:
            mrml.load_study_files(scene, *arguments)
        _assert_one_sentence_with_fix(error)
        assert _node_ids(scene) == ids, case
    assert kept.GetScene() is scene
    with pytest.raises(AIAIFInputError, match="volume file .* is not a NRRD file"):
        mrml.load_volume_file(scene, _garbage(tmp_path, "bad.nrrd"))
    assert _node_ids(scene) == ids


# --- outputs -------------------------------------------------------------------------------------

def test_mbf_volume_saved_and_read_back_keeps_values_and_ras_geometry(standard_files, tmp_path):
    phantom, _ = standard_files
    scene = slicer.vtkMRMLScene()
    node = mrml.mbf_volume_node(scene, phantom.mbf_ml_min_g, phantom.ijk_to_ras, name="MBF test")
    values, ijk_to_ras = mrml.volume_node_array(node)
    assert values.dtype == np.float32 and node.GetName() == "MBF test"
    np.testing.assert_array_equal(values, phantom.mbf_ml_min_g.astype(np.float32))
    np.testing.assert_allclose(ijk_to_ras, phantom.ijk_to_ras, rtol=0, atol=1e-12)
    ids = _node_ids(scene)
    path = mrml.save_volume_node(node, tmp_path / "mbf.nrrd")
    assert _node_ids(scene) == ids and node.GetStorageNode() is None

    data, header = nrrd.read(path, index_order="C")  # read without Slicer
    assert header["space"] == "left-posterior-superior" and data.dtype == np.float32
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    file_matrix = np.eye(4)
    file_matrix[:3, :3] = lps_to_ras @ np.array(header["space directions"]).T
    file_matrix[:3, 3] = lps_to_ras @ np.array(header["space origin"])
    placed = _to_grid(data, file_matrix, phantom.ijk_to_ras)
    np.testing.assert_array_equal(np.isnan(placed), np.isnan(phantom.mbf_ml_min_g))
    np.testing.assert_array_equal(placed, phantom.mbf_ml_min_g.astype(np.float32))

    loaded = mrml.load_volume_file(scene, path)  # and with Slicer's reader
    values, loaded_matrix = mrml.volume_node_array(loaded)
    np.testing.assert_array_equal(_to_grid(values, loaded_matrix, phantom.ijk_to_ras),
                                  phantom.mbf_ml_min_g.astype(np.float32))


def test_mbf_volume_display_uses_one_shared_colour_table_and_the_mbf_window():
    scene = slicer.vtkMRMLScene()
    mbf = np.full((2, 3, 4), np.nan)
    mbf[0, 1, 1:3] = [0.5, 7.0]
    first = mrml.mbf_volume_node(scene, mbf, SMALL_IJK_TO_RAS)
    second = mrml.mbf_volume_node(scene, np.ones((2, 3, 4)), SMALL_IJK_TO_RAS, myocardium_mask=mbf > 1)
    tables = scene.GetNodesByClassByName("vtkMRMLColorTableNode", mrml.MBF_COLOR_TABLE_NAME)
    assert tables.GetNumberOfItems() == 1
    for node in (first, second):
        display = node.GetDisplayNode()
        assert display.GetColorNodeID() == tables.GetItemAsObject(0).GetID()
        assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == mrml.MBF_DISPLAY_RANGE_ML_MIN_G
        assert not display.GetAutoWindowLevel() and display.GetApplyThreshold()
        values = mrml.volume_node_array(node)[0]
        finite = values[np.isfinite(values)]
        assert display.GetLowerThreshold() <= finite.min() and finite.max() <= display.GetUpperThreshold()
    assert first.GetDisplayNode().GetUpperThreshold() >= 7.0
    np.testing.assert_array_equal(np.isnan(mrml.volume_node_array(second)[0]), ~(mbf > 1))
    assert tables.GetItemAsObject(0).GetNumberOfColors() == mrml.MBF_COLOR_TABLE_SIZE


def test_updating_output_nodes_creates_no_duplicates():
    scene = slicer.vtkMRMLScene()
    node = mrml.mbf_volume_node(scene, np.zeros((2, 3, 4)), SMALL_IJK_TO_RAS)
    table = mrml.segments_table_node(scene, {"Segment": [1, 2], "MBF": [2.0, 3.0]})
    ids = _node_ids(scene)
    moved = SMALL_IJK_TO_RAS.copy()
    moved[:3, 3] += 5.0
    updated = mrml.mbf_volume_node(scene, np.full((3, 4, 5), 2.5), moved, node=node)
    refilled = mrml.segments_table_node(scene, {"Territory": ["LAD"]}, node=table)
    assert updated is node and refilled is table
    assert _node_ids(scene) == ids
    values, ijk_to_ras = mrml.volume_node_array(node)
    assert values.shape == (3, 4, 5) and np.all(values == 2.5)
    np.testing.assert_array_equal(ijk_to_ras, moved)
    assert (table.GetNumberOfColumns(), table.GetNumberOfRows(), table.GetColumnName(0)) == (1, 1, "Territory")
    with pytest.raises(AIAIFInputError, match="another scene"):
        mrml.mbf_volume_node(slicer.vtkMRMLScene(), np.zeros((2, 3, 4)), SMALL_IJK_TO_RAS, node=node)
    with pytest.raises(AIAIFInputError, match="must be a vtkMRMLTableNode"):
        mrml.segments_table_node(scene, {"a": [1]}, node=node)


def test_segments_table_keeps_column_types_values_and_units():
    scene = slicer.vtkMRMLScene()
    columns = {"Segment": [1, 2, 3], "Name": ["basal anterior", "basal anteroseptal", "basal inferoseptal"],
               "MBF": [1.25, np.nan, 3.5], "Ischaemic": [True, False, False]}
    table = mrml.segments_table_node(scene, columns, name="Segments", units={"MBF": "mL/min/g"})
    vtk_table = table.GetTable()
    assert [vtk_table.GetColumn(n).GetName() for n in range(4)] == list(columns)
    assert vtk_table.GetColumnByName("Segment").IsA("vtkDataArray")
    assert vtk_table.GetColumnByName("Name").IsA("vtkStringArray")
    assert vtk_table.GetColumnByName("Ischaemic").IsA("vtkBitArray")
    mbf = numpy_support.vtk_to_numpy(vtk_table.GetColumnByName("MBF"))
    np.testing.assert_array_equal(mbf, columns["MBF"])
    assert [vtk_table.GetColumnByName("Segment").GetValue(n) for n in range(3)] == [1, 2, 3]
    assert [vtk_table.GetColumnByName("Ischaemic").GetValue(n) for n in range(3)] == [1, 0, 0]
    assert table.GetCellText(2, 1) == "basal inferoseptal"
    assert table.GetColumnUnitLabel("MBF") == "mL/min/g"
    for bad, pattern in (({}, "non-empty dict"), ({"a": [1, 2], "b": [1]}, "different lengths"),
                         ({"a": [[1, 2]]}, "flat list")):
        with pytest.raises(AIAIFInputError, match=pattern) as error:
            mrml.segments_table_node(scene, bad)
        _assert_one_sentence_with_fix(error)
    with pytest.raises(AIAIFInputError, match="do not exist"):
        mrml.segments_table_node(scene, {"a": [1]}, units={"b": "s"})


def test_bad_output_arguments_raise(tmp_path):
    scene = slicer.vtkMRMLScene()
    node = mrml.mbf_volume_node(scene, np.zeros((2, 3, 4)), SMALL_IJK_TO_RAS)
    calls = {
        "map 2-D": (lambda: mrml.mbf_volume_node(scene, np.zeros((3, 4)), SMALL_IJK_TO_RAS), "3-D array"),
        "map text": (lambda: mrml.mbf_volume_node(scene, [[["a"]]], SMALL_IJK_TO_RAS), "3-D array"),
        "mask shape": (lambda: mrml.mbf_volume_node(scene, np.zeros((2, 3, 4)), SMALL_IJK_TO_RAS,
                                                    myocardium_mask=np.ones((2, 3), bool)), "mask has shape"),
        "singular matrix": (lambda: mrml.mbf_volume_node(scene, np.zeros((2, 3, 4)), np.zeros((4, 4))),
                            "invertible"),
        "not a scene": (lambda: mrml.mbf_volume_node(None, np.zeros((2, 3, 4)), SMALL_IJK_TO_RAS), "vtkMRMLScene"),
        "file name": (lambda: mrml.save_volume_node(node, tmp_path / "mbf.nii"), "must end in .nrrd"),
        "directory": (lambda: mrml.save_volume_node(node, tmp_path / "missing" / "mbf.nrrd"), "does not exist"),
        "empty volume": (lambda: mrml.save_volume_node(slicer.vtkMRMLScalarVolumeNode(), tmp_path / "e.nrrd"),
                         "no image data"),
    }
    ids = _node_ids(scene)
    for case, (call, pattern) in calls.items():
        with pytest.raises(AIAIFInputError, match=pattern) as error:
            call()
        _assert_one_sentence_with_fix(error)
    assert _node_ids(scene) == ids
    assert os.listdir(tmp_path) == []


# --- the MBF colour scale ----------------------------------------------------------------------

def test_colour_conversion_known_values_and_round_trip():
    np.testing.assert_allclose(mrml.colors._lab_to_srgb([100.0, 0.0, 0.0]), [1.0, 1.0, 1.0], atol=1e-3)
    np.testing.assert_allclose(mrml.colors._lab_to_srgb([0.0, 0.0, 0.0]), [0.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(mrml.colors._srgb_to_lab([1.0, 0.0, 0.0]), [53.24, 80.09, 67.20], atol=0.05)  # sRGB red
    np.testing.assert_allclose(mrml.colors._srgb_to_lab([0.0, 0.0, 1.0]), [32.30, 79.19, -107.86], atol=0.05)  # blue
    rgb = np.random.default_rng(0).uniform(0, 1, (200, 3))
    np.testing.assert_allclose(mrml.colors._lab_to_srgb(mrml.colors._srgb_to_lab(rgb)), rgb, atol=1e-9)


def test_mbf_colour_scale_is_in_gamut_with_linearly_rising_lightness():
    colours = mrml.mbf_colors(256)
    assert colours.shape == (256, 3) and colours.min() >= 0.0 and colours.max() <= 1.0
    lab = mrml.colors._srgb_to_lab(colours)
    np.testing.assert_allclose(lab[:, 0], np.linspace(*mrml.MBF_COLOR_LIGHTNESS, 256), atol=0.05)
    assert np.all(np.diff(lab[:, 0]) > 0)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    assert chroma.min() > 20  # coloured throughout, not a grey ramp
    hue = np.degrees(np.arctan2(lab[:, 2], lab[:, 1])) % 360
    assert abs(hue[0] - mrml.MBF_COLOR_HUE_DEG[0]) < 2 and abs(hue[-1] - mrml.MBF_COLOR_HUE_DEG[1]) < 2
    with pytest.raises(AIAIFInputError):
        mrml.mbf_colors(1)


def test_importing_the_package_does_not_import_slicer():
    import subprocess
    import sys
    code = "import sys, AIAIFLib, AIAIFLib.pipeline; print('slicer' in sys.modules or 'vtk' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- files in, files out -----------------------------------------------------------------------

def test_quantify_files_writes_the_mbf_map_on_the_loaded_frame_grid(standard_files, tmp_path):
    from AIAIFLib import pipeline

    phantom, paths = standard_files
    parameters = pipeline.QuantificationParameters(aif_mode="saturated")  # needs no network weights
    reports = []
    result = mrml.quantify_files(paths["perfusion"], paths["segmentation"], tmp_path, parameters,
                                 rv_insertion_path=paths["rv_insertion"], myocardium_segment_name="MYOCARDIUM",
                                 progress=lambda f, m: reports.append(f))
    written = list(pipeline.ALWAYS_WRITTEN_FILES)  # a still study
    assert sorted(os.listdir(tmp_path)) == sorted(written)
    assert reports[-1] == 1.0 and all(b >= a for a, b in zip(reports, reports[1:]))
    scene = slicer.vtkMRMLScene()
    values, ijk_to_ras = mrml.volume_node_array(
        mrml.load_volume_file(scene, tmp_path / pipeline.OUTPUT_FILES["mbf"]))
    study = mrml.study_from_nodes(*_load(paths)[1])
    np.testing.assert_allclose(ijk_to_ras, study.ijk_to_ras, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(values, result.mbf_ml_min_g.astype(np.float32))
    on_phantom_grid = _to_grid(values, ijk_to_ras, phantom.ijk_to_ras)
    finite = np.isfinite(on_phantom_grid)
    assert finite.any() and not np.any(finite & ~phantom.myocardium_mask)  # values in the myocardium only


# --- ROIs of another study; long lists in messages --------------------------------------------------

def _moved_in_plane(scene, node, study, mm):
    """Put ``node`` under a linear transform moving it ``mm`` along the image rows (in the slices' plane)."""
    step = study.ijk_to_ras[:3, 0] / np.linalg.norm(study.ijk_to_ras[:3, 0])
    transform = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(transform)
    matrix = vtk.vtkMatrix4x4()
    for axis in range(3):
        matrix.SetElement(axis, 3, float(mm * step[axis]))
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())


def test_rois_of_another_study_warn_when_slightly_off_and_are_refused_when_far_off(standard_files):
    from AIAIFLib import pipeline
    from scene_helpers import scene_state

    _, paths = standard_files
    parameters = pipeline.QuantificationParameters(aif_mode="saturated")
    scene, nodes = _load(paths)
    study = mrml.study_from_nodes(*nodes)
    assert not any("enhance like blood" in text
                   for text in mrml.quantify_nodes(scene, *nodes, parameters=parameters).result.summary["warnings"])
    scene, nodes = _load(paths)
    _moved_in_plane(scene, nodes.segmentation, study, 7.0)  # two pixels: drawn on a slightly different position
    warnings = mrml.quantify_nodes(scene, *nodes, parameters=parameters).result.summary["warnings"]
    assert any(re.search(r"\d+ % of the voxels of the segment 'LV blood pool' .* do not enhance like blood", text)
               for text in warnings)
    for role, mm, message in (("segmentation", 25.0, r"do not enhance like blood, so it does not fit these "
                                                     r"images \(a segmentation of another study\?\)"),
                              ("rv_insertion", -40.0, r"Point \d of the point list .* mm from the myocardium")):
        scene, nodes = _load(paths)
        _moved_in_plane(scene, getattr(nodes, role), study, mm)
        before = scene_state(scene)
        with pytest.raises(AIAIFInputError, match=message) as error:
            mrml.quantify_nodes(scene, *nodes, parameters=parameters)
        _assert_one_sentence_with_fix(error)
        assert scene_state(scene) == before


def test_a_long_list_of_segments_is_cut_to_a_few_names_and_a_count():
    segmentation = slicer.vtkMRMLSegmentationNode()
    slicer.vtkMRMLScene().AddNode(segmentation)
    for number in range(30):
        segmentation.GetSegmentation().AddEmptySegment("", "Structure {}".format(number))
    with pytest.raises(AIAIFInputError) as error:
        mrml.find_segment_id(segmentation, "Myocardium")
    assert "'Structure 0', 'Structure 1', 'Structure 2', 'Structure 3' and 26 more" in str(error.value)
    assert "Structure 4" not in str(error.value)

"""Slicer files written by ``AIAIFLib.slicer_files``, read back with Slicer's own storage nodes.

``slicer-core`` gives Slicer's real MRML library (storage nodes, segmentation
logic) without the application, so every file is loaded exactly as Slicer
loads it.  Geometry is checked by where voxels land in RAS, not only by the
header: recent Slicer reverses the slice order of a left-handed voxel grid
when it loads a volume (``ForceRightHandedIJKCoordinateSystem``), and the
phantom's grids are left-handed.
"""

import json
import os

import nrrd
import numpy as np
import pytest
import slicer
import vtk
from vtk.util import numpy_support

from AIAIFLib import constants as K
from AIAIFLib import slicer_files as sf
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.simulation import RV_INSERTION_NODE_NAME, SEGMENT_COLOURS, simulate_phantom, write_phantom

GEOMETRIES = {"standard": {}, "apex first, mirrored": {"apex_first": True, "mirrored": True}}
SEGMENT_MASKS = {K.LV_BLOOD_POOL_SEGMENT_NAME: "lv_blood_mask", K.MYOCARDIUM_SEGMENT_NAME: "myocardium_mask"}


@pytest.fixture(scope="module", params=sorted(GEOMETRIES))
def written(request, tmp_path_factory):
    phantom = simulate_phantom(seed=3, ischemic="LAD", n_frames=25, matrix=64, pixel_mm=3.0,
                               **GEOMETRIES[request.param])
    paths = write_phantom(phantom, tmp_path_factory.mktemp("phantom"))
    return phantom, paths


# --- reading with Slicer ------------------------------------------------------------

def _load(storage_class, node_class, path, **settings):
    """Read ``path`` into a new node of a new scene with Slicer's ``storage_class``; returns (scene, node)."""
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass(node_class)
    storage = getattr(slicer, storage_class)()  # the markups JSON storage node cannot be made by class name
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    for name, value in settings.items():
        getattr(storage, "Set" + name)(value)
    assert storage.ReadData(node) == 1, "Slicer could not read {}".format(path)
    return scene, node


def _matrix(getter):
    matrix = vtk.vtkMatrix4x4()
    getter(matrix)
    return np.array([[matrix.GetElement(row, col) for col in range(4)] for row in range(4)])


def _voxels(image):
    """Voxel array of a vtkImageData, indexed [k, j, i]."""
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(image.GetDimensions()[::-1])


def _on_grid(values_kji, extent, ijk_to_ras, grid_ijk_to_ras, grid_shape):
    """Place voxel values (first voxel at ``extent`` start) on another grid, voxel centre on voxel centre.

    Asserts that every voxel sits exactly on a voxel of the target grid, so the
    result says where Slicer puts the values in RAS.
    """
    to_grid = np.linalg.inv(grid_ijk_to_ras) @ ijk_to_ras
    np.testing.assert_allclose(to_grid, np.round(to_grid), atol=1e-6)
    k, j, i = np.indices(values_kji.shape).reshape(3, -1)
    ijk = np.stack([i + extent[0], j + extent[2], k + extent[4], np.ones_like(i)])
    gi, gj, gk, _ = np.round(to_grid @ ijk).astype(int)
    inside = (gi >= 0) & (gi < grid_shape[2]) & (gj >= 0) & (gj < grid_shape[1]) & (gk >= 0) & (gk < grid_shape[0])
    placed = np.zeros(grid_shape, dtype=values_kji.dtype)
    placed[gk[inside], gj[inside], gi[inside]] = values_kji.ravel()[inside]
    assert not np.any(values_kji.ravel()[~inside]), "non-zero voxels outside the image grid"
    return placed


def _segment_mask(segment, grid_ijk_to_ras, grid_shape):
    """Binary mask of a loaded segment on the image grid, from its own labelmap geometry."""
    labelmap = segment.GetRepresentation(sf.BINARY_LABELMAP_REPRESENTATION)
    values = _voxels(labelmap) == segment.GetLabelValue()
    return _on_grid(values, labelmap.GetExtent(), _matrix(labelmap.GetImageToWorldMatrix),
                    grid_ijk_to_ras, grid_shape)


# --- volume sequence ---------------------------------------------------------------

def test_volume_sequence_loads_as_time_indexed_frames_with_the_file_geometry(written):
    phantom, paths = written
    _, sequence = _load("vtkMRMLVolumeSequenceStorageNode", "vtkMRMLSequenceNode", paths["perfusion"],
                        ForceRightHandedIJKCoordinateSystem=False)
    n_frames = phantom.frames.shape[0]
    assert sequence.GetNumberOfDataNodes() == n_frames
    index = (sequence.GetIndexName(), sequence.GetIndexUnit(), sequence.GetIndexTypeAsString())
    assert index == ("time", "s", "numeric")
    times = [float(sequence.GetNthIndexValue(n)) for n in range(n_frames)]
    assert times == phantom.frame_times_s.tolist()  # exactly: written with full precision
    for n in range(n_frames):
        volume = sequence.GetNthDataNode(n)
        assert volume.IsA("vtkMRMLScalarVolumeNode")
        np.testing.assert_allclose(_matrix(volume.GetIJKToRASMatrix), phantom.ijk_to_ras, rtol=0, atol=1e-9)
        voxels = _voxels(volume.GetImageData())
        assert voxels.dtype == np.float32
        np.testing.assert_array_equal(voxels, phantom.frames[n])


def test_slicer_default_loading_keeps_every_voxel_at_its_ras_point(written):
    phantom, paths = written
    _, sequence = _load("vtkMRMLVolumeSequenceStorageNode", "vtkMRMLSequenceNode", paths["perfusion"])
    for n in (0, phantom.frames.shape[0] // 2):
        volume = sequence.GetNthDataNode(n)
        ijk_to_ras = _matrix(volume.GetIJKToRASMatrix)
        voxels = _voxels(volume.GetImageData())
        placed = _on_grid(voxels, volume.GetImageData().GetExtent(), ijk_to_ras, phantom.ijk_to_ras,
                          phantom.frames.shape[1:])
        np.testing.assert_array_equal(placed, phantom.frames[n])


def test_volume_sequence_header_is_slicers(written):
    phantom, paths = written
    header = nrrd.read_header(paths["perfusion"])
    assert header["kinds"] == ["domain", "domain", "domain", "list"]
    assert header["space"] == "left-posterior-superior"
    lps = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_array_equal(header["space directions"][:3], (lps @ phantom.ijk_to_ras[:3, :3]).T)
    assert np.all(np.isnan(header["space directions"][3]))
    np.testing.assert_array_equal(header["space origin"], lps @ phantom.ijk_to_ras[:3, 3])
    assert header["DataNodeClassName"] == "vtkMRMLScalarVolumeNode"


def test_unusual_times_and_integer_voxels_round_trip(tmp_path):
    times = [-0.25, 1e-05, 0.1 + 0.2, 123456.789]
    frames = np.arange(4 * 2 * 3 * 5, dtype=np.int16).reshape(4, 2, 3, 5)
    ijk_to_ras = np.array([[0.5, 0, 0, -1.5], [0, 0.75, 0, 2.0], [0, 0, 4.0, 7.25], [0, 0, 0, 1]])
    path = sf.write_volume_sequence(tmp_path / "small.seq.nrrd", frames, times, ijk_to_ras)
    _, sequence = _load("vtkMRMLVolumeSequenceStorageNode", "vtkMRMLSequenceNode", path)
    assert [float(sequence.GetNthIndexValue(n)) for n in range(4)] == times
    for n in range(4):
        volume = sequence.GetNthDataNode(n)
        np.testing.assert_array_equal(_voxels(volume.GetImageData()), frames[n])
        np.testing.assert_allclose(_matrix(volume.GetIJKToRASMatrix), ijk_to_ras, rtol=0, atol=1e-12)


# --- segmentation ------------------------------------------------------------------

def test_segmentation_loads_named_coloured_segments_on_the_image_voxels(written):
    phantom, paths = written
    _, segmentation_node = _load("vtkMRMLSegmentationStorageNode", "vtkMRMLSegmentationNode", paths["segmentation"])
    segmentation = segmentation_node.GetSegmentation()
    names = [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]
    assert names == [K.LV_BLOOD_POOL_SEGMENT_NAME, K.MYOCARDIUM_SEGMENT_NAME]
    assert segmentation.GetNumberOfLayers() == 1  # blood pool and myocardium do not overlap
    grid_shape = phantom.frames.shape[1:]
    for name, attribute in SEGMENT_MASKS.items():
        segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(name))
        np.testing.assert_allclose(segment.GetColor(), SEGMENT_COLOURS[name], rtol=0, atol=1e-12)
        labelmap = segment.GetRepresentation(sf.BINARY_LABELMAP_REPRESENTATION)
        np.testing.assert_allclose(_matrix(labelmap.GetImageToWorldMatrix), phantom.ijk_to_ras, rtol=0, atol=1e-9)
        mask = _segment_mask(segment, phantom.ijk_to_ras, grid_shape)
        assert mask.any()
        np.testing.assert_array_equal(mask, getattr(phantom, attribute))


def test_segments_exported_by_slicer_onto_a_loaded_frame_match_the_masks(written):
    phantom, paths = written
    scene, sequence = _load("vtkMRMLVolumeSequenceStorageNode", "vtkMRMLSequenceNode", paths["perfusion"])
    frame = sequence.GetNthDataNode(0)
    reference = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    reference.Copy(frame)
    reference.SetAndObserveImageData(frame.GetImageData())
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(paths["segmentation"])
    assert storage.ReadData(segmentation_node) == 1
    segmentation = segmentation_node.GetSegmentation()
    for name, attribute in SEGMENT_MASKS.items():
        labelmap_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        segment_ids = vtk.vtkStringArray()
        segment_ids.InsertNextValue(segmentation.GetSegmentIdBySegmentName(name))
        assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, segment_ids, labelmap_node, reference, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        image = labelmap_node.GetImageData()
        placed = _on_grid(_voxels(image) > 0, image.GetExtent(), _matrix(labelmap_node.GetIJKToRASMatrix),
                          phantom.ijk_to_ras, phantom.frames.shape[1:])
        np.testing.assert_array_equal(placed, getattr(phantom, attribute))


def _three_masks():
    shape = (2, 6, 7)
    first = np.zeros(shape, dtype=bool)
    first[0, 1:4, 1:4] = True
    second = np.zeros(shape, dtype=bool)
    second[:, 2:5, 2:6] = True  # overlaps the first
    third = np.zeros(shape, dtype=bool)
    third[1, 5, 0] = True  # touches neither
    return [first, second, third]


def test_segment_layers_share_a_layer_only_without_overlap():
    first, second, third = _three_masks()
    assert sf.segment_layers([first, third]) == [0, 0]
    assert sf.segment_layers([first, second, third]) == [0, 1, 0]
    assert sf.segment_layers([first, first, first]) == [0, 1, 2]
    assert sf.segment_layers([np.zeros_like(first), first]) == [0, 0]


def test_overlapping_and_empty_segments_load_voxel_for_voxel(tmp_path):
    masks = _three_masks() + [np.zeros((2, 6, 7), dtype=bool)]
    names = ["first", "second", "third", "empty"]
    colours = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0.5)]
    ijk_to_ras = np.array([[-1.0, 0, 0, 10], [0, 0, 2.0, -4], [0, -1.5, 0, 3], [0, 0, 0, 1]])
    path = sf.write_segmentation(tmp_path / "overlap.seg.nrrd", list(zip(names, masks, colours)), ijk_to_ras)
    _, segmentation_node = _load("vtkMRMLSegmentationStorageNode", "vtkMRMLSegmentationNode", path)
    segmentation = segmentation_node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 4
    assert segmentation.GetNumberOfLayers() == 2
    for name, mask, colour in zip(names, masks, colours):
        segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(name))
        assert segment.GetColor() == pytest.approx(colour)
        np.testing.assert_array_equal(_segment_mask(segment, ijk_to_ras, mask.shape), mask)


# --- markups -----------------------------------------------------------------------

def test_markups_point_list_loads_with_ras_positions_and_labels(written):
    phantom, paths = written
    _, points = _load("vtkMRMLMarkupsJsonStorageNode", "vtkMRMLMarkupsFiducialNode", paths["rv_insertion"])
    expected = phantom.rv_insertion_ras["anterior"]
    assert points.GetNumberOfControlPoints() == len(expected) == len(phantom.levels)
    assert points.GetName() == RV_INSERTION_NODE_NAME
    for n, (position, level) in enumerate(zip(expected, phantom.levels)):
        loaded = [0.0, 0.0, 0.0]
        points.GetNthControlPointPositionWorld(n, loaded)
        np.testing.assert_allclose(loaded, position, rtol=0, atol=1e-9)
        assert points.GetNthControlPointLabel(n) == "RV insertion anterior {}".format(level)
    with open(paths["rv_insertion"]) as handle:
        markup = json.load(handle)["markups"][0]
    assert (markup["type"], markup["coordinateSystem"]) == ("Fiducial", "LPS")
    np.testing.assert_array_equal(markup["controlPoints"][0]["position"], expected[0] * [-1, -1, 1])


def test_markups_name_is_the_node_name(tmp_path):
    path = sf.write_markups_points(tmp_path / "p.mrk.json", [[1.0, 2.0, 3.0]], ["apex"], name="Landmarks")
    _, points = _load("vtkMRMLMarkupsJsonStorageNode", "vtkMRMLMarkupsFiducialNode", path)
    assert points.GetName() == "Landmarks"
    assert points.GetNthControlPointLabel(0) == "apex"


# --- invalid arguments -------------------------------------------------------------

GOOD_FRAMES = np.zeros((3, 2, 4, 5), dtype=np.float32)
GOOD_TIMES = [0.0, 1.0, 2.0]
GOOD_MASK = np.zeros((2, 4, 5), dtype=bool)


def _sequence(name="v.seq.nrrd", frames=GOOD_FRAMES, times=GOOD_TIMES, ijk_to_ras=np.eye(4)):
    return lambda folder: sf.write_volume_sequence(os.path.join(folder, name), frames, times, ijk_to_ras)


def _segmentation(segments, name="s.seg.nrrd", ijk_to_ras=np.eye(4)):
    return lambda folder: sf.write_segmentation(os.path.join(folder, name), segments, ijk_to_ras)


def _markups(points, labels, name="p.mrk.json"):
    return lambda folder: sf.write_markups_points(os.path.join(folder, name), points, labels)


BAD_CALLS = {
    "frames not 4-D": _sequence(frames=GOOD_FRAMES[0]),
    "complex frames": _sequence(frames=GOOD_FRAMES.astype(complex)),
    "one time too few": _sequence(times=GOOD_TIMES[:2]),
    "times not increasing": _sequence(times=[0.0, 2.0, 1.0]),
    "repeated time": _sequence(times=[0.0, 1.0, 1.0]),
    "time NaN": _sequence(times=[0.0, np.nan, 2.0]),
    "times closer than Slicer's tolerance": _sequence(times=[0.0, 0.0005, 1.0]),
    "ijk_to_ras 3x3": _sequence(ijk_to_ras=np.eye(3)),
    "ijk_to_ras singular": _sequence(ijk_to_ras=np.diag([1.0, 1.0, 0.0, 1.0])),
    "ijk_to_ras not affine": _sequence(ijk_to_ras=np.ones((4, 4))),
    "sequence file name": _sequence(name="v.nrrd"),
    "missing directory": _sequence(name=os.path.join("no such folder", "v.seq.nrrd")),
    "no segments": _segmentation([]),
    "empty segment name": _segmentation([("", GOOD_MASK, (1, 0, 0))]),
    "blank segment name": _segmentation([("  ", GOOD_MASK, (1, 0, 0))]),
    "duplicate segment names": _segmentation([("a", GOOD_MASK, (1, 0, 0)), ("a", GOOD_MASK, (0, 1, 0))]),
    "non-ASCII segment name": _segmentation([("Myokard\u00e4", GOOD_MASK, (1, 0, 0))]),
    "segment name not text": _segmentation([(3, GOOD_MASK, (1, 0, 0))]),
    "segment not a triple": _segmentation([("a", GOOD_MASK)]),
    "mask shapes differ": _segmentation([("a", GOOD_MASK, (1, 0, 0)), ("b", GOOD_MASK[:1], (0, 1, 0))]),
    "mask 2-D": _segmentation([("a", GOOD_MASK[0], (1, 0, 0))]),
    "mask not binary": _segmentation([("a", GOOD_MASK + 2, (1, 0, 0))]),
    "colour above 1": _segmentation([("a", GOOD_MASK, (255, 0, 0))]),
    "colour of two values": _segmentation([("a", GOOD_MASK, (1, 0))]),
    "segmentation ijk_to_ras": _segmentation([("a", GOOD_MASK, (1, 0, 0))], ijk_to_ras=np.zeros((4, 4))),
    "segmentation file name": _segmentation([("a", GOOD_MASK, (1, 0, 0))], name="s.nrrd"),
    "more labels than points": _markups(np.zeros((2, 3)), ["a", "b", "c"]),
    "fewer labels than points": _markups(np.zeros((2, 3)), ["a"]),
    "labels one string": _markups(np.zeros((2, 3)), "ab"),
    "label not text": _markups(np.zeros((1, 3)), [1]),
    "points of two coordinates": _markups(np.zeros((2, 2)), ["a", "b"]),
    "point NaN": _markups([[0.0, np.nan, 1.0]], ["a"]),
    "markups file name": _markups(np.zeros((1, 3)), ["a"], name="p.json"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_invalid_arguments_raise_and_leave_no_file(case, tmp_path):
    with pytest.raises(AIAIFInputError) as error:
        BAD_CALLS[case](str(tmp_path))
    message = str(error.value)
    assert message.endswith(".") and ";" in message  # what is wrong; what to do
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "v.seq.nrrd"
    sf.write_volume_sequence(path, GOOD_FRAMES, GOOD_TIMES, np.eye(4))
    before = path.read_bytes()

    def broken_write(handle, *args, **kwargs):
        handle.write(b"NRRD0005\ntype: flo")
        raise OSError("disk full")

    monkeypatch.setattr(sf.nrrd, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        sf.write_volume_sequence(path, GOOD_FRAMES + 1, GOOD_TIMES, np.eye(4))
    assert os.listdir(tmp_path) == ["v.seq.nrrd"]
    assert path.read_bytes() == before

"""Slicer MRML nodes <-> numpy: the one place where AI-AIF meets Slicer's scene.

This adapter loads a perfusion study (volume sequence, segmentation, RV
insertion points) into a ``vtkMRMLScene`` with Slicer's own storage nodes,
turns the nodes into a ``pipeline.PerfusionStudy`` and turns results back into
nodes (MBF volume with its colour table, segment table) and files.  It uses
only MRML-level classes and module logics, never the Slicer application
(``slicer.app``, ``slicer.util``, Qt), so the same code runs

* headless from the ``slicer-core`` package (``scene = slicer.vtkMRMLScene()``),
  as the command line and the test suite do, and
* inside the Slicer application, called by the AI-AIF module's Logic with
  ``slicer.mrmlScene``.

It is the only module of ``AIAIFLib`` that imports ``slicer`` and ``vtk``;
``import AIAIFLib`` does not import it.

Geometry.  Arrays are indexed ``[k, j, i]`` and ``ijk_to_ras`` maps the voxel
index ``(i, j, k, 1)`` to RAS millimetres, as in the rest of the package.  The
frames keep the geometry Slicer gives the loaded volumes: a left-handed file
grid is loaded with its slice order reversed (the storage node's
``ForceRightHandedIJKCoordinateSystem``), and the segments are resampled onto
that loaded frame grid, so image, masks and points agree by RAS position.

Scene hygiene.  Reading nodes never modifies them: segments are resampled from
a copy held in a private scratch scene, so the user's segmentation gains no
representation and the user's scene no temporary node.  A load that fails
removes every node it added.
"""

import contextlib
import os
from typing import NamedTuple, Optional

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from . import constants as K
from .aif import MIN_AIF_FRAMES
from .errors import AIAIFInputError
from .pipeline import PerfusionStudy

# ---------------------------------------------------------------------------
# Constants of this module
# ---------------------------------------------------------------------------

#: Fewest frames a study may have: the AIF's minimum (``aif.MIN_AIF_FRAMES``,
#: 20), checked here already so that a short series fails before it is read.
MIN_FRAMES = MIN_AIF_FRAMES

#: Sequence index units read as times, with their factor to seconds.
TIME_UNIT_TO_S = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
                  "ms": 1e-3, "msec": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3}

#: Sequence index units that mean "the index counts frames" (a 4-D NRRD without
#: index values loads with index name ``frame`` and an empty unit).
FRAME_NUMBER_UNITS = ("", "frame", "frames")

#: Attributes Slicer's DICOM multi-volume import writes: the frame labels
#: (comma-separated, usually trigger times in ms) and their unit.
FRAME_LABELS_ATTRIBUTE = "MultiVolume.FrameLabels"
FRAME_LABELS_UNIT_ATTRIBUTE = "MultiVolume.FrameIdentifyingDICOMTagUnits"
#: Unit assumed for frame labels without a unit attribute (Slicer's multi-volume
#: import labels frames by trigger time in ms).
DEFAULT_FRAME_LABELS_UNIT = "ms"

#: Display range of MBF maps, mL/min/g.  Project choice: covers stress MBF from
#: severe ischaemia to the highest healthy values (the paper's median stress
#: MBF is 2.8 mL/min/g; the ischaemia threshold 1.35 sits near the lower third).
MBF_DISPLAY_RANGE_ML_MIN_G = (0.0, 5.0)

#: Name of the MBF colour table node (created once per scene, then reused).
MBF_COLOR_TABLE_NAME = "AI-AIF MBF"
#: Number of entries of the MBF colour table.
MBF_COLOR_TABLE_SIZE = 256
#: Lightness (CIE L*) at the low and high end of the MBF colour table.  Project
#: choice: dark but not black at zero flow, light but not white at the top, with
#: L* rising linearly so that equal MBF steps look like equal steps.
MBF_COLOR_LIGHTNESS = (15.0, 92.0)
#: Hue (CIE LCh, degrees) at the low and high end: violet through blue, teal
#: and green to yellow (project choice, a blue-to-yellow scale readable with
#: the common colour-vision deficiencies).
MBF_COLOR_HUE_DEG = (295.0, 95.0)
#: Chroma (CIE LCh) aimed for at the low and high end, reduced where sRGB cannot
#: show it at the given lightness (project choice).
MBF_COLOR_CHROMA = (45.0, 85.0)

#: Name of Slicer's binary labelmap segment representation.
BINARY_LABELMAP = "Binary labelmap"

#: Storage node class of each point list file ending.
_MARKUPS_STORAGE_CLASSES = ((".mrk.json", "vtkMRMLMarkupsJsonStorageNode"),
                            (".json", "vtkMRMLMarkupsJsonStorageNode"),
                            (".fcsv", "vtkMRMLMarkupsFiducialStorageNode"))

#: File name endings stripped to name loaded nodes, longest first.
_FILE_ENDINGS = (".seq.nrrd", ".seg.nrrd", ".mrk.json", ".nrrd", ".nhdr", ".json", ".fcsv")


class StudyNodes(NamedTuple):
    """The nodes of one loaded study.

    Attributes
    ----------
    sequence : vtkMRMLSequenceNode
        Volume sequence of the perfusion frames.
    segmentation : vtkMRMLSegmentationNode
        Segmentation with the LV blood pool and myocardium.
    rv_insertion : vtkMRMLMarkupsFiducialNode or None
        RV insertion points, if a file was given.
    """

    sequence: object
    segmentation: object
    rv_insertion: Optional[object] = None


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def _report(progress, fraction, message):
    if progress is not None:
        progress(float(fraction), message)


@contextlib.contextmanager
def _vtk_messages_silenced():
    """Hide VTK warnings and errors (the caller turns failures into one sentence)."""
    previous = vtk.vtkObject.GetGlobalWarningDisplay()
    vtk.vtkObject.GlobalWarningDisplayOff()
    try:
        yield
    finally:
        vtk.vtkObject.SetGlobalWarningDisplay(previous)


def _numpy_matrix(vtk_matrix):
    return np.array([[vtk_matrix.GetElement(row, col) for col in range(4)] for row in range(4)])


def _vtk_matrix(matrix):
    result = vtk.vtkMatrix4x4()
    for row in range(4):
        for col in range(4):
            result.SetElement(row, col, float(matrix[row, col]))
    return result


def _ijk_to_ras_of(volume_node):
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return _numpy_matrix(matrix)


def _voxels(image):
    """Voxel array of a single-component vtkImageData, indexed [k, j, i] (a view, not a copy)."""
    scalars = image.GetPointData().GetScalars()
    shape = image.GetDimensions()[::-1]
    if scalars is None:
        return np.zeros(shape)
    return numpy_support.vtk_to_numpy(scalars).reshape(shape)


def _node_name(node):
    return node.GetName() if node.GetName() else node.GetID() or node.GetClassName()


def _name_from_path(path):
    base = os.path.basename(path)
    for ending in _FILE_ENDINGS:
        if base.lower().endswith(ending):
            return base[:-len(ending)] or base
    return base


def _validated_ijk_to_ras(ijk_to_ras):
    try:
        matrix = np.array(ijk_to_ras, dtype=float)
    except (TypeError, ValueError):
        matrix = np.full(1, np.nan)
    if (matrix.shape != (4, 4) or not np.all(np.isfinite(matrix))
            or not np.array_equal(matrix[3], [0.0, 0.0, 0.0, 1.0]) or abs(np.linalg.det(matrix[:3, :3])) < 1e-12):
        raise AIAIFInputError("ijk_to_ras must be a finite, invertible 4x4 affine matrix (last row 0 0 0 1); "
                              "pass the ijk_to_ras of the perfusion study.")
    return matrix


def _require_node(node, class_name, what, fix):
    if node is None or not hasattr(node, "IsA") or not node.IsA(class_name):
        got = "nothing" if node is None else (node.GetClassName() if hasattr(node, "GetClassName")
                                              else type(node).__name__)
        raise AIAIFInputError("The {} must be a {} node, got {}; {}.".format(what, class_name, got, fix))
    return node


def _scene_node_ids(scene):
    return {scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())}


def _remove_nodes_added_since(scene, node_ids_before):
    added = [scene.GetNthNode(n) for n in range(scene.GetNumberOfNodes())]
    for node in reversed(added):
        if node is not None and node.GetID() not in node_ids_before and node.GetScene() is scene:
            scene.RemoveNode(node)


def _existing_file(path, what, fix):
    if path is None:
        raise AIAIFInputError("No {} file was given; {}.".format(what, fix))
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AIAIFInputError("The {} file {} does not exist; {}.".format(what, path, fix))
    return path


def _read_into_new_node(scene, node_class, storage_class, path, what, fix):
    """Add a node and its storage node to ``scene`` and read ``path`` into it; error if Slicer cannot."""
    node = getattr(slicer, node_class)()
    node.SetName(scene.GenerateUniqueName(_name_from_path(path)))
    scene.AddNode(node)
    storage = getattr(slicer, storage_class)()  # some storage nodes cannot be made by class name
    scene.AddNode(storage)
    storage.SetFileName(path)
    node.SetAndObserveStorageNodeID(storage.GetID())
    with _vtk_messages_silenced():
        read = storage.ReadData(node)
    if read != 1:
        raise AIAIFInputError("Slicer could not read the {} file {}; {}.".format(what, path, fix))
    if hasattr(node, "CreateDefaultDisplayNodes"):  # shown in Slicer's views, as Slicer's own loaders do
        node.CreateDefaultDisplayNodes()
    return node


# ---------------------------------------------------------------------------
# Loading files
# ---------------------------------------------------------------------------

def load_study_files(scene, perfusion_path, segmentation_path, rv_insertion_path=None, progress=None):
    """Load a perfusion study's files into ``scene`` with Slicer's storage nodes.

    Each file is read by the storage node Slicer itself uses, which is attached
    to the new node (so Slicer can save it again):

    * the volume sequence (``.seq.nrrd``) by ``vtkMRMLVolumeSequenceStorageNode``
      with Slicer's default settings (a left-handed grid is loaded with its
      slice order reversed; RAS positions are kept);
    * the segmentation (``.seg.nrrd``) by ``vtkMRMLSegmentationStorageNode``;
    * the point list (``.mrk.json``, or legacy ``.fcsv``) by
      ``vtkMRMLMarkupsJsonStorageNode`` (``vtkMRMLMarkupsFiducialStorageNode``).

    Nodes are named after their files (``perfusion.seq.nrrd`` -> ``perfusion``),
    or as the point list file names itself.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to add the nodes to (``slicer.mrmlScene`` in Slicer).
    perfusion_path : str or os.PathLike
        Volume sequence of the perfusion frames.
    segmentation_path : str or os.PathLike
        Segmentation with the LV blood pool and myocardium segments.
    rv_insertion_path : str or os.PathLike, optional
        Point list with the anterior RV insertion point of each slice.
    progress : callable, optional
        ``progress(fraction_0_to_1, message)``, called as each file is read.

    Returns
    -------
    StudyNodes
        The sequence, segmentation and (or None) point list node.

    Raises
    ------
    AIAIFInputError
        For a missing file or one Slicer cannot read.  Every node added to
        ``scene`` until then is removed again.
    """
    if scene is None or not hasattr(scene, "IsA") or not scene.IsA("vtkMRMLScene"):
        raise AIAIFInputError("scene must be a vtkMRMLScene; pass slicer.mrmlScene in Slicer or "
                              "slicer.vtkMRMLScene() outside it.")
    perfusion_path = _existing_file(perfusion_path, "perfusion volume sequence",
                                    "pass the perfusion series as a .seq.nrrd file")
    segmentation_path = _existing_file(segmentation_path, "segmentation",
                                       "pass the segmentation as a .seg.nrrd file")
    markups_storage = None
    if rv_insertion_path is not None:
        rv_insertion_path = _existing_file(rv_insertion_path, "RV insertion point list",
                                           "pass the point list as a .mrk.json file or leave it out")
        lower = rv_insertion_path.lower()
        markups_storage = next((storage for ending, storage in _MARKUPS_STORAGE_CLASSES if lower.endswith(ending)),
                               None)
        if markups_storage is None:
            raise AIAIFInputError("The RV insertion point list {} is neither a .mrk.json nor a .fcsv file; "
                                  "save the points from Slicer as a .mrk.json file.".format(rv_insertion_path))

    _ensure_segmentation_converters()  # so that the segmentation gets Slicer's conversion parameters
    before = _scene_node_ids(scene)
    try:
        _report(progress, 0.0, "Reading the perfusion sequence")
        sequence = _read_into_new_node(scene, "vtkMRMLSequenceNode", "vtkMRMLVolumeSequenceStorageNode",
                                       perfusion_path, "perfusion volume sequence",
                                       "check that it is a 4-D NRRD volume sequence saved by Slicer")
        if sequence.GetNumberOfDataNodes() == 0:
            raise AIAIFInputError("The perfusion volume sequence {} holds no frames; pass a 4-D NRRD volume "
                                  "sequence.".format(perfusion_path))
        _report(progress, 0.6, "Reading the segmentation")
        segmentation = _read_into_new_node(scene, "vtkMRMLSegmentationNode", "vtkMRMLSegmentationStorageNode",
                                           segmentation_path, "segmentation",
                                           "check that it is a .seg.nrrd segmentation saved by Slicer")
        points = None
        if rv_insertion_path is not None:
            _report(progress, 0.9, "Reading the RV insertion points")
            points = _read_into_new_node(scene, "vtkMRMLMarkupsFiducialNode", markups_storage, rv_insertion_path,
                                         "RV insertion point list",
                                         "check that it is a point list saved by Slicer")
    except BaseException:
        _remove_nodes_added_since(scene, before)
        raise
    _report(progress, 1.0, "Study files loaded")
    return StudyNodes(sequence, segmentation, points)


# ---------------------------------------------------------------------------
# Frame times
# ---------------------------------------------------------------------------

def _looks_like_frame_numbers(values):
    """True if ``values`` are 0, 1, ..., n-1 or 1, 2, ..., n."""
    count = np.arange(values.size, dtype=float)
    return bool(np.array_equal(values, count) or np.array_equal(values, count + 1.0))


def _frame_labels(sequence_node):
    """(text, unit text, where) of the multi-volume frame labels on the sequence or its first frame, or None."""
    candidates = [(sequence_node, "the sequence")]
    if sequence_node.GetNumberOfDataNodes() > 0:
        candidates.append((sequence_node.GetNthDataNode(0), "its first frame"))
    for node, where in candidates:
        text = node.GetAttribute(FRAME_LABELS_ATTRIBUTE) if node is not None else None
        if text:
            unit = node.GetAttribute(FRAME_LABELS_UNIT_ATTRIBUTE) or DEFAULT_FRAME_LABELS_UNIT
            return text, unit, where
    return None


def _times_from_frame_labels(sequence_node, labels, n_frames):
    text, unit, where = labels
    name = _node_name(sequence_node)
    scale = TIME_UNIT_TO_S.get(unit.strip().lower())
    if scale is None:
        raise AIAIFInputError("The {} frame labels of sequence {!r} are in {!r}, not a time unit; pass the frame "
                              "interval (--frame-interval) instead.".format(FRAME_LABELS_ATTRIBUTE, name, unit))
    try:
        values = np.array([float(item) for item in text.replace(";", ",").split(",") if item.strip()])
    except ValueError:
        raise AIAIFInputError("The {} attribute of {} of sequence {!r} is not a comma-separated list of numbers; "
                              "pass the frame interval (--frame-interval) instead."
                              .format(FRAME_LABELS_ATTRIBUTE, where, name)) from None
    if values.size != n_frames:
        raise AIAIFInputError("The {} attribute of sequence {!r} has {} labels for {} frames; pass the frame "
                              "interval (--frame-interval) instead.".format(FRAME_LABELS_ATTRIBUTE, name,
                                                                           values.size, n_frames))
    return values * scale, "{} ({})".format(FRAME_LABELS_ATTRIBUTE, unit)


def _times_from_interval(frame_interval_s, n_frames):
    try:
        interval = float(frame_interval_s)
    except (TypeError, ValueError):
        interval = np.nan
    if not np.isfinite(interval) or interval <= 0:
        raise AIAIFInputError("The frame interval must be a positive number of seconds, got {!r}; pass the time "
                              "between frames, e.g. 0.8.".format(frame_interval_s))
    return np.arange(n_frames) * interval, "frame interval {!r} s".format(interval)


def _frame_times_and_origin(sequence_node, frame_interval_s=None):
    """Frame times (s) and a phrase saying where they came from."""
    name = _node_name(sequence_node)
    n_frames = sequence_node.GetNumberOfDataNodes()
    index_name = (sequence_node.GetIndexName() or "").strip()
    unit = (sequence_node.GetIndexUnit() or "").strip()
    try:
        values = np.array([float(sequence_node.GetNthIndexValue(n)) for n in range(n_frames)])
    except (TypeError, ValueError):
        values = None
    if values is None or not np.all(np.isfinite(values)):
        raise AIAIFInputError("The index values of sequence {!r} are not all finite numbers; give the sequence "
                              "numeric frame times in s or pass a frame interval (--frame-interval)."
                              .format(name))

    scale = TIME_UNIT_TO_S.get(unit.lower())
    if scale is None and unit.lower() not in FRAME_NUMBER_UNITS:
        raise AIAIFInputError("The index of sequence {!r} ({!r}, unit {!r}) is not time; load a sequence indexed "
                              "by time in s or by frame number.".format(name, index_name, unit))
    frame_numbers = _looks_like_frame_numbers(values)
    if scale is None and index_name.lower() == "time" and not frame_numbers:
        scale = 1.0  # a unitless "time" index that does not count frames: read as seconds

    if scale is not None and not (frame_numbers and frame_interval_s is not None):
        if frame_interval_s is not None:
            raise AIAIFInputError("Sequence {!r} already has frame times (index {!r} in {}); leave out the frame "
                                  "interval (--frame-interval).".format(name, index_name, unit or "s"))
        return values * scale, "sequence index {!r} ({})".format(index_name, unit or "s")

    if not frame_numbers:
        raise AIAIFInputError("The index values of sequence {!r} (unit {!r}) are neither times nor frame numbers "
                              "0..n-1 or 1..n; give the sequence frame times in s.".format(name, unit))
    if frame_interval_s is not None:
        return _times_from_interval(frame_interval_s, n_frames)
    labels = _frame_labels(sequence_node)
    if labels is not None:
        return _times_from_frame_labels(sequence_node, labels, n_frames)
    raise AIAIFInputError("Sequence {!r} is indexed by frame number and has no frame times; pass the frame "
                          "interval in s (--frame-interval).".format(name))


def frame_times_s(sequence_node, frame_interval_s=None):
    """Acquisition time of each frame of a volume sequence, s.

    The times are taken, in this order, from

    1. the sequence index values, when the index unit is a time (``s`` or
       ``ms``, converted to s) or the index is named ``time`` without a unit
       (read as s) -- as ``AIAIFLib.slicer_files`` and Slicer write them;
    2. ``frame_interval_s``, when the index counts frames (unit empty or
       ``frame``, values 0..n-1 or 1..n; also a time index whose values are
       exactly such frame numbers): frame n is at ``n * frame_interval_s``;
    3. the ``MultiVolume.FrameLabels`` attribute of the sequence or of its first
       frame (comma-separated, in ``MultiVolume.FrameIdentifyingDICOMTagUnits``,
       ms if that is missing), as Slicer's DICOM multi-volume import writes it.

    Parameters
    ----------
    sequence_node : vtkMRMLSequenceNode
        Volume sequence of the perfusion frames.
    frame_interval_s : float, optional
        Time between frames, s, for sequences indexed by frame number.

    Returns
    -------
    numpy.ndarray, shape (n_frames,)
        Frame times, s; finite and strictly increasing.

    Raises
    ------
    AIAIFInputError
        If the index is not a time or a frame number, a frame-numbered
        sequence has neither a frame interval nor frame labels, a frame interval
        is given for a sequence that has its own times, or the times are not
        finite and strictly increasing.
    """
    sequence_node = _require_node(sequence_node, "vtkMRMLSequenceNode", "perfusion series",
                                  "load the perfusion frames as a volume sequence")
    return _checked_frame_times(sequence_node, frame_interval_s)[0]


def _checked_frame_times(sequence_node, frame_interval_s):
    """Frame times (s), checked finite and strictly increasing, and where they came from."""
    times, origin = _frame_times_and_origin(sequence_node, frame_interval_s)
    name = _node_name(sequence_node)
    if not np.all(np.isfinite(times)):
        raise AIAIFInputError("The frame times of sequence {!r} ({}) are not all finite; give every frame a time "
                              "in s.".format(name, origin))
    steps = np.diff(times)
    if np.any(steps <= 0):
        first = int(np.argmax(steps <= 0))
        raise AIAIFInputError("The frame times of sequence {!r} ({}) do not increase strictly (frame {} at {:g} s, "
                              "frame {} at {:g} s); order the frames by acquisition time."
                              .format(name, origin, first, times[first], first + 1, times[first + 1]))
    return times, origin


# ---------------------------------------------------------------------------
# Segments
# ---------------------------------------------------------------------------

def _segment_names(segmentation):
    return [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]


def _segment_list_text(segmentation):
    names = _segment_names(segmentation)
    return ", ".join(repr(name) for name in names) if names else "none"


def find_segment_id(segmentation_node, name):
    """ID of the segment called ``name`` (case and surrounding spaces ignored).

    Parameters
    ----------
    segmentation_node : vtkMRMLSegmentationNode
        Segmentation to search.
    name : str
        Segment name, e.g. ``"Myocardium"``.

    Returns
    -------
    str
        The segment ID.

    Raises
    ------
    AIAIFInputError
        If no segment, or more than one, has that name; the message lists the
        segments that exist.
    """
    segmentation_node = _require_node(segmentation_node, "vtkMRMLSegmentationNode", "segmentation",
                                      "load or draw the segments as a segmentation")
    segmentation = segmentation_node.GetSegmentation()
    wanted = str(name).strip().lower()
    matches = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())
               if segmentation.GetNthSegment(n).GetName().strip().lower() == wanted]
    if not matches:
        raise AIAIFInputError("Segmentation {!r} has no segment named {!r} (its segments: {}); rename the segment "
                              "or choose it explicitly.".format(_node_name(segmentation_node), name,
                                                                _segment_list_text(segmentation)))
    if len(matches) > 1:
        raise AIAIFInputError("Segmentation {!r} has {} segments named {!r}; rename all but one of them."
                              .format(_node_name(segmentation_node), len(matches), name))
    return matches[0]


def _checked_segment_id(segmentation_node, segment_id, default_name):
    if segment_id is None:
        return find_segment_id(segmentation_node, default_name)
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetSegment(str(segment_id)) is None:
        ids = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
        listed = ", ".join("{!r} ({})".format(i, segmentation.GetSegment(i).GetName()) for i in ids) or "none"
        raise AIAIFInputError("Segmentation {!r} has no segment with ID {!r} (its segments: {}); pass one of "
                              "these IDs.".format(_node_name(segmentation_node), segment_id, listed))
    return str(segment_id)


def _ensure_segmentation_converters():
    """Register Slicer's labelmap <-> surface conversion rules if nobody has.

    The Slicer application registers them at start-up; ``slicer-core`` does not,
    and without them a segmentation can neither be copied nor converted.
    """
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if factory.ConstructRepresentationObjectByRepresentation(BINARY_LABELMAP) is not None:
        return
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())


def _world_matrix_of(node, what):
    """Node-to-world matrix of a transformable node, None without a parent transform."""
    parent = node.GetParentTransformNode()
    if parent is None:
        return None
    if not parent.IsTransformToWorldLinear():
        raise AIAIFInputError("The {} {!r} is under a non-linear transform; harden the transform (Transforms "
                              "module) before quantifying.".format(what, _node_name(node)))
    matrix = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(matrix)
    return matrix


def _segment_voxel_count(segmentation, segment_id):
    segment = segmentation.GetSegment(segment_id)
    labelmap = segment.GetRepresentation(BINARY_LABELMAP)
    if labelmap is None or labelmap.GetPointData().GetScalars() is None:
        return 0
    return int(np.count_nonzero(_voxels(labelmap) == segment.GetLabelValue()))


def segment_masks(segmentation_node, segment_ids, ijk_to_ras, shape_kji):
    """Binary masks of segments resampled onto an image grid.

    The segmentation is copied into a private scratch scene, its parent
    transform (if any, linear only) is hardened on the copy, a binary labelmap
    is made on the copy if the segmentation has none (e.g. only closed
    surfaces), and each segment is exported with
    ``vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode`` onto the
    reference grid (nearest voxel).  ``segmentation_node`` and its scene are
    not modified.

    Parameters
    ----------
    segmentation_node : vtkMRMLSegmentationNode
        Segmentation holding the segments.
    segment_ids : sequence of str
        IDs of the segments to export.
    ijk_to_ras : array_like, shape (4, 4)
        Voxel index (i, j, k, 1) to RAS (mm) matrix of the target grid.
    shape_kji : tuple of int
        (n_slices, n_rows, n_cols) of the target grid.

    Returns
    -------
    list of numpy.ndarray of bool, each shape ``shape_kji``
        One mask per segment ID.

    Raises
    ------
    AIAIFInputError
        If a segment is empty, lies entirely outside the grid, or the
        segmentation is under a non-linear transform or cannot be converted
        to a binary labelmap.
    """
    segmentation_node = _require_node(segmentation_node, "vtkMRMLSegmentationNode", "segmentation",
                                      "load or draw the segments as a segmentation")
    matrix = _vtk_matrix(_validated_ijk_to_ras(ijk_to_ras))
    shape_kji = tuple(int(n) for n in shape_kji)
    name = _node_name(segmentation_node)
    world = _world_matrix_of(segmentation_node, "segmentation")
    _ensure_segmentation_converters()

    scratch = slicer.vtkMRMLScene()
    masks = []
    with _vtk_messages_silenced():
        copy = slicer.vtkMRMLSegmentationNode()
        scratch.AddNode(copy)
        copy.GetSegmentation().DeepCopy(segmentation_node.GetSegmentation())
        # A segmentation made before the conversion rules were registered lacks
        # their parameters: start from the rules' defaults, then restore its own.
        segmentation = copy.GetSegmentation()
        own_parameters = segmentation.SerializeAllConversionParameters()
        segmentation.DeserializeConversionParameters(slicer.vtkSegmentation().SerializeAllConversionParameters())
        segmentation.DeserializeConversionParameters(own_parameters)
        if world is not None:
            copy.ApplyTransformMatrix(world)
        extent = (0, shape_kji[2] - 1, 0, shape_kji[1] - 1, 0, shape_kji[0] - 1)
        if not segmentation.ContainsRepresentation(BINARY_LABELMAP):
            segmentation.SetConversionParameter(
                slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
                slicer.vtkSegmentationConverter.SerializeImageGeometry(matrix, extent))
            if not segmentation.CreateRepresentation(BINARY_LABELMAP):
                raise AIAIFInputError("Segmentation {!r} cannot be converted to a binary labelmap; convert it in "
                                      "the Segmentations module (Representations) and try again.".format(name))

        reference = slicer.vtkMRMLScalarVolumeNode()
        scratch.AddNode(reference)
        reference.SetIJKToRASMatrix(matrix)
        grid = vtk.vtkImageData()
        grid.SetExtent(*extent)
        grid.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        reference.SetAndObserveImageData(grid)

        for segment_id in segment_ids:
            segment_name = segmentation.GetSegment(segment_id).GetName()
            if _segment_voxel_count(segmentation, segment_id) == 0:
                raise AIAIFInputError("The segment {!r} of segmentation {!r} is empty; draw it on the perfusion "
                                      "images.".format(segment_name, name))
            labelmap = slicer.vtkMRMLLabelMapVolumeNode()
            scratch.AddNode(labelmap)
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(segment_id)
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                    copy, ids, labelmap, reference, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
                raise AIAIFInputError("Slicer could not resample the segment {!r} of segmentation {!r} onto the "
                                      "perfusion images; check the segmentation in the Segmentations module."
                                      .format(segment_name, name))
            image = labelmap.GetImageData()
            if (image is None or tuple(image.GetDimensions()[::-1]) != shape_kji
                    or not np.allclose(_ijk_to_ras_of(labelmap), _numpy_matrix(matrix), rtol=0, atol=1e-6)):
                raise RuntimeError("Slicer exported segment {!r} on a grid other than the reference grid."
                                   .format(segment_id))
            mask = _voxels(image) > 0
            if not mask.any():
                raise AIAIFInputError("The segment {!r} of segmentation {!r} lies outside the perfusion images; "
                                      "draw the segments on this perfusion series.".format(segment_name, name))
            masks.append(mask.copy())
    return masks


# ---------------------------------------------------------------------------
# Points
# ---------------------------------------------------------------------------

def rv_insertion_points(markups_node):
    """World (RAS) positions and labels of the placed control points of a point list.

    Parent transforms are applied (``GetNthControlPointPositionWorld``); points
    whose position is not defined (not yet placed) are left out.

    Parameters
    ----------
    markups_node : vtkMRMLMarkupsNode
        Point list, e.g. the anterior RV insertion point of each slice.

    Returns
    -------
    points_ras : numpy.ndarray, shape (n_points, 3)
        Positions, RAS mm.
    labels : tuple of str
        Label of each point.

    Raises
    ------
    AIAIFInputError
        If the node is not a markups node or has no placed point.
    """
    markups_node = _require_node(markups_node, "vtkMRMLMarkupsNode", "RV insertion point list",
                                 "place the points with the Markups module")
    points, labels = [], []
    for n in range(markups_node.GetNumberOfControlPoints()):
        if markups_node.GetNthControlPointPositionStatus(n) != slicer.vtkMRMLMarkupsNode.PositionDefined:
            continue
        position = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(n, position)
        points.append(position)
        labels.append(markups_node.GetNthControlPointLabel(n))
    if not points:
        raise AIAIFInputError("The point list {!r} has no placed points; place the anterior RV insertion point "
                              "on each slice or leave the point list out.".format(_node_name(markups_node)))
    return np.array(points, dtype=float), tuple(labels)


# ---------------------------------------------------------------------------
# Nodes -> PerfusionStudy
# ---------------------------------------------------------------------------

def _frames_of(sequence_node, progress):
    """(frames [n, k, j, i], ijk_to_ras) of a volume sequence; every frame must share the grid."""
    name = _node_name(sequence_node)
    n_frames = sequence_node.GetNumberOfDataNodes()
    frames, ijk_to_ras, shape = None, None, None
    for n in range(n_frames):
        volume = sequence_node.GetNthDataNode(n)
        if volume is None or not volume.IsA("vtkMRMLScalarVolumeNode") or volume.GetImageData() is None:
            raise AIAIFInputError("Frame {} of sequence {!r} is not a scalar volume with an image; load the "
                                  "perfusion series as a sequence of scalar volumes.".format(n, name))
        image = volume.GetImageData()
        if image.GetNumberOfScalarComponents() != 1:
            raise AIAIFInputError("Frame {} of sequence {!r} has {} components per voxel; convert the series to "
                                  "grey-scale (one value per voxel).".format(n, name,
                                                                             image.GetNumberOfScalarComponents()))
        voxels = _voxels(image)
        matrix = _ijk_to_ras_of(volume)
        if frames is None:
            ijk_to_ras, shape = matrix, voxels.shape
            if voxels.ndim != 3 or 0 in shape:
                raise AIAIFInputError("The frames of sequence {!r} are empty; load a non-empty perfusion series."
                                      .format(name))
            frames = np.empty((n_frames,) + shape, dtype=np.promote_types(voxels.dtype, np.float32))
        elif voxels.shape != shape or not np.allclose(matrix, ijk_to_ras, rtol=0, atol=1e-6):
            raise AIAIFInputError("Frame {} of sequence {!r} has another voxel grid (size or position) than frame "
                                  "0; resample all frames onto one grid (e.g. motion-correct the series)."
                                  .format(n, name))
        frames[n] = voxels
        if progress is not None and (n % 10 == 0 or n == n_frames - 1):
            _report(progress, 0.1 + 0.6 * (n + 1) / n_frames, "Reading frame {} of {}".format(n + 1, n_frames))
    bad = ~np.isfinite(frames)
    if bad.any():
        first = int(np.argmax(bad.reshape(n_frames, -1).any(axis=1)))
        raise AIAIFInputError("Frame {} of sequence {!r} contains NaN or infinite voxel values; replace them (e.g. "
                              "by 0) before quantifying.".format(first, name))
    return frames, ijk_to_ras


def study_from_nodes(sequence_node, segmentation_node, rv_insertion_node=None, blood_pool_segment_id=None,
                     myocardium_segment_id=None, frame_interval_s=None, progress=None):
    """Turn a study's MRML nodes into a ``PerfusionStudy``.

    Parameters
    ----------
    sequence_node : vtkMRMLSequenceNode or vtkMRMLSequenceBrowserNode
        Volume sequence of the perfusion frames (a browser node stands for its
        master sequence).  All frames must share one voxel grid.
    segmentation_node : vtkMRMLSegmentationNode
        Segmentation with the LV blood pool and myocardium; resampled onto the
        frame grid (see ``segment_masks``) and not modified.
    rv_insertion_node : vtkMRMLMarkupsNode, optional
        Anterior RV insertion points (world RAS positions and labels are used).
    blood_pool_segment_id, myocardium_segment_id : str, optional
        Segment IDs; by default the segments named ``LV blood pool`` and
        ``Myocardium`` (case-insensitive).
    frame_interval_s : float, optional
        Time between frames, s, for sequences indexed by frame number (see
        ``frame_times_s``).
    progress : callable, optional
        ``progress(fraction_0_to_1, message)``.

    Returns
    -------
    PerfusionStudy
        ``frames`` (n_frames, k, j, i) as floats (at least float32),
        ``frame_times_s`` in s, ``ijk_to_ras`` of the first frame, boolean
        masks on the frame grid, RV points in RAS mm, and ``source`` naming the
        nodes, segments, files and where the frame times came from.

    Raises
    ------
    AIAIFInputError
        For fewer than ``MIN_FRAMES`` frames, frames on differing grids or with
        NaN values, unusable frame times (see ``frame_times_s``), a missing,
        empty or out-of-image segment, the same segment for both ROIs, or a
        point list without placed points.
    """
    if sequence_node is not None and hasattr(sequence_node, "IsA") and sequence_node.IsA("vtkMRMLSequenceBrowserNode"):
        sequence_node = sequence_node.GetMasterSequenceNode()
    sequence_node = _require_node(sequence_node, "vtkMRMLSequenceNode", "perfusion series",
                                  "load the perfusion frames as a volume sequence")
    segmentation_node = _require_node(segmentation_node, "vtkMRMLSegmentationNode", "segmentation",
                                      "load or draw the segments as a segmentation")
    name = _node_name(sequence_node)
    n_frames = sequence_node.GetNumberOfDataNodes()
    if n_frames < MIN_FRAMES:
        raise AIAIFInputError("Sequence {!r} has {} frames but quantification needs at least {}; load the whole "
                              "perfusion series (one frame per heartbeat).".format(name, n_frames, MIN_FRAMES))
    _report(progress, 0.0, "Reading frame times")
    times, times_origin = _checked_frame_times(sequence_node, frame_interval_s)

    blood_pool_id = _checked_segment_id(segmentation_node, blood_pool_segment_id, K.LV_BLOOD_POOL_SEGMENT_NAME)
    myocardium_id = _checked_segment_id(segmentation_node, myocardium_segment_id, K.MYOCARDIUM_SEGMENT_NAME)
    if blood_pool_id == myocardium_id:
        raise AIAIFInputError("The same segment {!r} was chosen for the LV blood pool and the myocardium; choose "
                              "two different segments.".format(blood_pool_id))

    frames, ijk_to_ras = _frames_of(sequence_node, progress)
    _report(progress, 0.75, "Resampling the segments onto the frames")
    blood_pool_mask, myocardium_mask = segment_masks(segmentation_node, [blood_pool_id, myocardium_id],
                                                     ijk_to_ras, frames.shape[1:])
    points = labels = None
    if rv_insertion_node is not None:
        points, labels = rv_insertion_points(rv_insertion_node)

    segmentation = segmentation_node.GetSegmentation()
    source = {
        "sequence_node": name,
        "segmentation_node": _node_name(segmentation_node),
        "blood_pool_segment": segmentation.GetSegment(blood_pool_id).GetName(),
        "myocardium_segment": segmentation.GetSegment(myocardium_id).GetName(),
        "frame_times_from": times_origin,
    }
    for key, node in (("perfusion_file", sequence_node), ("segmentation_file", segmentation_node),
                      ("rv_insertion_file", rv_insertion_node)):
        storage = node.GetStorageNode() if node is not None else None
        if storage is not None and storage.GetFileName():
            source[key] = storage.GetFileName()
    if rv_insertion_node is not None:
        source["rv_insertion_node"] = _node_name(rv_insertion_node)
    _report(progress, 1.0, "Study ready")
    return PerfusionStudy(frames=frames, frame_times_s=times, ijk_to_ras=ijk_to_ras, blood_pool_mask=blood_pool_mask,
                          myocardium_mask=myocardium_mask, rv_insertion_ras=points, rv_insertion_labels=labels,
                          source=source)


# ---------------------------------------------------------------------------
# MBF colour table
# ---------------------------------------------------------------------------

#: CIE D65 reference white (X, Y, Z) and the XYZ -> linear sRGB matrix (IEC 61966-2-1).
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_XYZ_TO_LINEAR_SRGB = np.array([[3.2406, -1.5372, -0.4986],
                                [-0.9689, 1.8758, 0.0415],
                                [0.0557, -0.2040, 1.0570]])
_LAB_EPSILON = 6.0 / 29.0


def _lab_to_srgb(lab):
    """CIE L*a*b* (D65) -> sRGB in 0..1 (not clipped: out-of-gamut colours fall outside 0..1)."""
    lab = np.asarray(lab, dtype=float)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > _LAB_EPSILON, f ** 3, 3 * _LAB_EPSILON ** 2 * (f - 4.0 / 29.0)) * _D65_WHITE
    linear = xyz @ _XYZ_TO_LINEAR_SRGB.T
    magnitude = np.abs(linear)
    encoded = np.where(magnitude <= 0.0031308, 12.92 * magnitude, 1.055 * magnitude ** (1 / 2.4) - 0.055)
    return np.sign(linear) * encoded


def _srgb_to_lab(rgb):
    """sRGB in 0..1 -> CIE L*a*b* (D65)."""
    rgb = np.asarray(rgb, dtype=float)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.linalg.inv(_XYZ_TO_LINEAR_SRGB).T / _D65_WHITE
    f = np.where(xyz > _LAB_EPSILON ** 3, np.cbrt(xyz), xyz / (3 * _LAB_EPSILON ** 2) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])],
                    axis=-1)


def mbf_colors(n_colors=MBF_COLOR_TABLE_SIZE):
    """The MBF colour scale: sRGB colours with lightness rising linearly from low to high flow.

    Colours are placed in CIE LCh: lightness (L*) rises linearly over
    ``MBF_COLOR_LIGHTNESS``, hue turns from violet to yellow
    (``MBF_COLOR_HUE_DEG``) and chroma grows over ``MBF_COLOR_CHROMA``; where
    sRGB cannot show a colour, its chroma is reduced (bisection) at the same
    lightness and hue, so lightness stays exactly linear.

    Parameters
    ----------
    n_colors : int, optional
        Number of colours (>= 2).

    Returns
    -------
    numpy.ndarray, shape (n_colors, 3)
        Red, green, blue in 0..1, from the lowest to the highest MBF.
    """
    n_colors = int(n_colors)
    if n_colors < 2:
        raise AIAIFInputError("A colour scale needs at least 2 colours, got {}; pass e.g. 256.".format(n_colors))
    fraction = np.linspace(0.0, 1.0, n_colors)
    lightness = np.interp(fraction, [0, 1], MBF_COLOR_LIGHTNESS)
    hue = np.radians(np.interp(fraction, [0, 1], MBF_COLOR_HUE_DEG))
    chroma = np.interp(fraction, [0, 1], MBF_COLOR_CHROMA)

    def rgb_at(scale):
        c = chroma * scale
        return _lab_to_srgb(np.stack([lightness, c * np.cos(hue), c * np.sin(hue)], axis=-1))

    def in_gamut(rgb):
        return np.all((rgb >= -1e-9) & (rgb <= 1 + 1e-9), axis=-1)

    low, high = np.zeros(n_colors), np.ones(n_colors)
    full = in_gamut(rgb_at(high))
    for _ in range(40):
        middle = 0.5 * (low + high)
        ok = in_gamut(rgb_at(middle))
        low = np.where(ok, middle, low)
        high = np.where(ok, high, middle)
    scale = np.where(full, 1.0, low)
    return np.clip(rgb_at(scale), 0.0, 1.0)


def mbf_color_table_node(scene):
    """The MBF colour table node of ``scene``, created on first use and reused (by name) afterwards.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to look in and add to.

    Returns
    -------
    vtkMRMLColorTableNode
        Node named ``MBF_COLOR_TABLE_NAME`` with ``mbf_colors()``.
    """
    nodes = scene.GetNodesByClassByName("vtkMRMLColorTableNode", MBF_COLOR_TABLE_NAME)
    if nodes.GetNumberOfItems() > 0:
        return nodes.GetItemAsObject(0)
    colors = mbf_colors(MBF_COLOR_TABLE_SIZE)
    table = slicer.vtkMRMLColorTableNode()
    table.SetName(MBF_COLOR_TABLE_NAME)
    table.SetTypeToUser()
    table.SetNumberOfColors(len(colors))
    low, high = MBF_DISPLAY_RANGE_ML_MIN_G
    for n, (red, green, blue) in enumerate(colors):
        value = low + (high - low) * n / (len(colors) - 1)
        table.SetColor(n, "{:.2f} mL/min/g".format(value), float(red), float(green), float(blue), 1.0)
    table.SetDescription("AI-AIF stress MBF, {:g}-{:g} mL/min/g, lightness rising linearly with flow."
                         .format(low, high))
    table.SetAttribute("Category", "AI-AIF")
    scene.AddNode(table)
    return table


# ---------------------------------------------------------------------------
# Output nodes
# ---------------------------------------------------------------------------

def _image_from_array(values_kji, vtk_type):
    image = vtk.vtkImageData()
    image.SetDimensions(values_kji.shape[2], values_kji.shape[1], values_kji.shape[0])
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(values_kji).ravel(), deep=True, array_type=vtk_type)
    image.GetPointData().SetScalars(scalars)
    return image


def _output_node(scene, node, class_name, name, what):
    """``node`` checked (and added to ``scene`` if in none), or a new node of ``class_name`` named ``name``."""
    if scene is None or not hasattr(scene, "IsA") or not scene.IsA("vtkMRMLScene"):
        raise AIAIFInputError("scene must be a vtkMRMLScene; pass slicer.mrmlScene in Slicer or "
                              "slicer.vtkMRMLScene() outside it.")
    if node is None:
        node = getattr(slicer, class_name)()
        node.SetName(name)
        scene.AddNode(node)
        return node
    _require_node(node, class_name, what, "pass None to create a new node")
    if node.GetScene() is None:
        scene.AddNode(node)
    elif node.GetScene() is not scene:
        raise AIAIFInputError("The {} {!r} belongs to another scene; pass a node of this scene or None."
                              .format(what, _node_name(node)))
    return node


def mbf_volume_node(scene, mbf_map_kji, ijk_to_ras, name="MBF", node=None, myocardium_mask=None):
    """Show an MBF map as a scalar volume with the MBF colour scale.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene of the study.
    mbf_map_kji : array_like, shape (n_slices, rows, columns)
        MBF, mL/min/g, on the frame grid; NaN where there is no value
        (outside the myocardium).  Stored as float32.
    ijk_to_ras : array_like, shape (4, 4)
        Voxel index (i, j, k, 1) to RAS (mm) matrix of the frame grid.
    name : str, optional
        Name of a new node.
    node : vtkMRMLScalarVolumeNode, optional
        Existing node to update in place (no new node is made).
    myocardium_mask : array_like of bool, optional
        If given, voxels outside it are set to NaN.

    Returns
    -------
    vtkMRMLScalarVolumeNode
        The node, with a display node using ``mbf_color_table_node(scene)``,
        window ``MBF_DISPLAY_RANGE_ML_MIN_G`` (0-5 mL/min/g) and a threshold
        that makes NaN voxels transparent.

    Raises
    ------
    AIAIFInputError
        For a map that is not 3-D numeric, a mask of another shape, an invalid
        ``ijk_to_ras``, or a ``node`` of another class or scene.
    """
    try:
        values = np.array(mbf_map_kji, dtype=np.float32)
    except (TypeError, ValueError):
        values = np.zeros(0, dtype=np.float32)
    if values.ndim != 3 or 0 in values.shape:
        raise AIAIFInputError("The MBF map must be a non-empty 3-D array (n_slices, rows, columns) of numbers; "
                              "pass the map on the frame grid.")
    if myocardium_mask is not None:
        mask = np.asarray(myocardium_mask, dtype=bool)
        if mask.shape != values.shape:
            raise AIAIFInputError("The myocardium mask has shape {} but the MBF map {}; pass the mask of the same "
                                  "study.".format(mask.shape, values.shape))
        values[~mask] = np.nan
    matrix = _validated_ijk_to_ras(ijk_to_ras)
    node = _output_node(scene, node, "vtkMRMLScalarVolumeNode", name, "MBF volume")

    disabled = node.StartModify()
    node.SetIJKToRASMatrix(_vtk_matrix(matrix))
    node.SetAndObserveImageData(_image_from_array(values, vtk.VTK_FLOAT))
    node.EndModify(disabled)

    display = node.GetDisplayNode()
    if display is None:
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
    low, high = MBF_DISPLAY_RANGE_ML_MIN_G
    finite = values[np.isfinite(values)]
    disabled = display.StartModify()
    display.SetAndObserveColorNodeID(mbf_color_table_node(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(low, high)
    # NaN fails every threshold comparison, so thresholding on the whole finite
    # range hides exactly the voxels without a value.
    display.AutoThresholdOff()
    display.SetThreshold(min(low, float(finite.min())) if finite.size else low,
                         max(high, float(finite.max())) if finite.size else high)
    display.ApplyThresholdOn()
    display.EndModify(disabled)
    return node


def _vtk_column(name, values):
    array = np.asarray(values)
    if array.ndim != 1:
        raise AIAIFInputError("Table column {!r} must be a flat list of values, got shape {}; pass one value per "
                              "row.".format(name, array.shape))
    if array.dtype.kind == "b":
        column = vtk.vtkBitArray()
        column.SetNumberOfTuples(array.size)
        for row, value in enumerate(array):
            column.SetValue(row, int(value))
    elif array.dtype.kind in "iu":
        column = numpy_support.numpy_to_vtk(array.astype(np.int64), deep=True, array_type=vtk.VTK_LONG_LONG)
    elif array.dtype.kind == "f":
        column = numpy_support.numpy_to_vtk(array.astype(np.float64), deep=True, array_type=vtk.VTK_DOUBLE)
    elif array.dtype.kind in "USO":
        column = vtk.vtkStringArray()
        column.SetNumberOfValues(array.size)
        for row, value in enumerate(array):
            column.SetValue(row, "" if value is None else str(value))
    else:
        raise AIAIFInputError("Table column {!r} holds values of type {}; pass numbers, booleans or text."
                              .format(name, array.dtype))
    column.SetName(name)
    return column


def segments_table_node(scene, columns, name="MBF per segment", node=None, units=None):
    """Show per-segment results as a table node.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene of the study.
    columns : dict of str -> sequence
        Column name -> values (one per row; numbers, booleans or text), in
        display order; all columns the same length.
    name : str, optional
        Name of a new node.
    node : vtkMRMLTableNode, optional
        Existing table to refill in place (its old columns are removed).
    units : dict of str -> str, optional
        Unit label of some columns, e.g. ``{"MBF": "mL/min/g"}``.

    Returns
    -------
    vtkMRMLTableNode
        The table, with the column names as headers.

    Raises
    ------
    AIAIFInputError
        For no columns, columns of different lengths or unsupported types,
        a unit for a column that does not exist, or a ``node`` of another
        class or scene.
    """
    if not isinstance(columns, dict) or not columns:
        raise AIAIFInputError("columns must be a non-empty dict of column name -> values; pass e.g. "
                              "{'Segment': [1, 2], 'MBF': [2.1, 2.4]}.")
    vtk_columns = [_vtk_column(str(key), values) for key, values in columns.items()]
    lengths = {column.GetName(): column.GetNumberOfTuples() for column in vtk_columns}
    if len(set(lengths.values())) > 1:
        raise AIAIFInputError("The table columns have different lengths ({}); give every column one value per row."
                              .format(", ".join("{} {}".format(k, v) for k, v in lengths.items())))
    units = dict(units or {})
    unknown = sorted(set(units) - set(lengths))
    if unknown:
        raise AIAIFInputError("Units were given for columns that do not exist ({}); name existing columns."
                              .format(", ".join(unknown)))
    node = _output_node(scene, node, "vtkMRMLTableNode", name, "segment table")
    disabled = node.StartModify()
    node.RemoveAllColumns()
    for column in vtk_columns:
        node.AddColumn(column)
    if hasattr(node, "SetUseColumnTitleAsColumnHeader"):  # Slicer >= 5.4 (the name variant is deprecated)
        node.SetUseColumnTitleAsColumnHeader(True)
    else:
        node.SetUseColumnNameAsColumnHeader(True)
    for column_name, unit in units.items():
        node.SetColumnUnitLabel(column_name, str(unit))
    node.Modified()
    node.EndModify(disabled)
    return node


# ---------------------------------------------------------------------------
# Volume files
# ---------------------------------------------------------------------------

def _nrrd_path(path, what):
    path = os.fspath(path)
    if not path.lower().endswith(".nrrd"):
        raise AIAIFInputError("The {} file name {!r} must end in .nrrd; rename it.".format(what,
                                                                                          os.path.basename(path)))
    return path


def save_volume_node(node, path):
    """Write a volume node to a ``.nrrd`` file with Slicer's ``vtkMRMLVolumeArchetypeStorageNode``.

    The file keeps the node's voxel values (float32 MBF stays float32, NaN
    included) and geometry (IJK-to-RAS, stored as LPS as Slicer does), gzip
    compressed.  The node gets no storage node and the scene is not changed.

    Parameters
    ----------
    node : vtkMRMLVolumeNode
        Volume with image data.
    path : str or os.PathLike
        Destination ending in ``.nrrd`` in an existing directory; an existing
        file is replaced.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    AIAIFInputError
        For a node without image data, a wrong file name, a missing directory
        or a failed write.
    """
    node = _require_node(node, "vtkMRMLVolumeNode", "volume to save", "pass a volume node")
    if node.GetImageData() is None:
        raise AIAIFInputError("The volume {!r} has no image data; compute it before saving.".format(_node_name(node)))
    path = _nrrd_path(path, "volume")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise AIAIFInputError("The output directory {} does not exist; create it before saving the volume."
                              .format(directory))
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(path)
    storage.SetUseCompression(1)
    with _vtk_messages_silenced():
        written = storage.WriteData(node)
    if written != 1:
        raise AIAIFInputError("Slicer could not write the volume {!r} to {}; check that the directory is writable "
                              "and has free space.".format(_node_name(node), path))
    return path


def load_volume_file(scene, path, name=None):
    """Read a volume file into a new scalar volume node of ``scene`` (``vtkMRMLVolumeArchetypeStorageNode``).

    Slicer's default loading is used, so a left-handed grid comes back with
    its slice order reversed; every voxel keeps its RAS position.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to add the node and its storage node to.
    path : str or os.PathLike
        Volume file (``.nrrd`` or any format Slicer's volume reader knows).
    name : str, optional
        Node name; by default the file name without its ending.

    Returns
    -------
    vtkMRMLScalarVolumeNode
        The loaded volume.

    Raises
    ------
    AIAIFInputError
        For a missing or unreadable file (the scene is left as it was).
    """
    path = _existing_file(path, "volume", "pass an existing .nrrd file")
    before = _scene_node_ids(scene)
    try:
        node = _read_into_new_node(scene, "vtkMRMLScalarVolumeNode", "vtkMRMLVolumeArchetypeStorageNode", path,
                                   "volume", "check that it is a 3-D image such as a .nrrd volume")
        if name is not None:
            node.SetName(str(name))
    except BaseException:
        _remove_nodes_added_since(scene, before)
        raise
    return node


def volume_node_array(node):
    """Voxel values and geometry of a volume node.

    Parameters
    ----------
    node : vtkMRMLVolumeNode
        Volume with single-component image data.

    Returns
    -------
    values_kji : numpy.ndarray, shape (n_slices, rows, columns)
        A copy of the voxel values, indexed ``[k, j, i]``.
    ijk_to_ras : numpy.ndarray, shape (4, 4)
        Voxel index (i, j, k, 1) to RAS (mm) matrix.
    """
    node = _require_node(node, "vtkMRMLVolumeNode", "volume", "pass a volume node")
    if node.GetImageData() is None:
        raise AIAIFInputError("The volume {!r} has no image data; load or compute it first.".format(_node_name(node)))
    return _voxels(node.GetImageData()).copy(), _ijk_to_ras_of(node)


# ---------------------------------------------------------------------------
# Files in, files out (the command line's ``quantify``)
# ---------------------------------------------------------------------------

def _scaled_progress(progress, start, end):
    """A progress callback mapping 0..1 onto ``start``..``end`` of ``progress`` (None stays None)."""
    if progress is None:
        return None
    return lambda fraction, message: progress(start + (end - start) * float(fraction), message)


def quantify_files(perfusion_path, segmentation_path, output_dir, parameters=None, rv_insertion_path=None,
                   frame_interval_s=None, blood_pool_segment_name=None, myocardium_segment_name=None,
                   progress=None):
    """Quantify a study from its Slicer files and write the result files.

    The files are loaded into a private scene (``load_study_files``), turned
    into a ``PerfusionStudy`` (``study_from_nodes``), quantified by
    ``pipeline.quantify_study``; the MBF map is written as
    ``pipeline.OUTPUT_FILES["mbf"]`` by Slicer's volume storage node (on the
    frame grid as Slicer loaded it) and the other files by
    ``pipeline.write_result_files``.

    Parameters
    ----------
    perfusion_path, segmentation_path : str or os.PathLike
        Volume sequence (``.seq.nrrd``) and segmentation (``.seg.nrrd``).
    output_dir : str or os.PathLike
        Existing directory to write into.
    parameters : pipeline.QuantificationParameters, optional
        Choices of the quantification; the paper's defaults when omitted.
    rv_insertion_path : str or os.PathLike, optional
        Point list (``.mrk.json``) with the anterior RV insertion points.
    frame_interval_s : float, optional
        Time between frames, s, for sequences indexed by frame number.
    blood_pool_segment_name, myocardium_segment_name : str, optional
        Segment names (case-insensitive); ``LV blood pool`` and ``Myocardium``
        by default.
    progress : callable, optional
        ``progress(fraction_0_to_1, message)``.

    Returns
    -------
    pipeline.QuantificationResult
        The result whose files were written.

    Raises
    ------
    AIAIFInputError
        For any problem with the files, segments, frame times or parameters.
    """
    from . import pipeline

    output_dir = os.fspath(output_dir)
    if not os.path.isdir(output_dir):
        raise AIAIFInputError("The output directory {} does not exist; create it first.".format(output_dir))
    scene = slicer.vtkMRMLScene()
    nodes = load_study_files(scene, perfusion_path, segmentation_path, rv_insertion_path,
                             progress=_scaled_progress(progress, 0.0, 0.05))
    blood_pool_id = find_segment_id(nodes.segmentation, blood_pool_segment_name or K.LV_BLOOD_POOL_SEGMENT_NAME)
    myocardium_id = find_segment_id(nodes.segmentation, myocardium_segment_name or K.MYOCARDIUM_SEGMENT_NAME)
    study = study_from_nodes(nodes.sequence, nodes.segmentation, nodes.rv_insertion, blood_pool_id, myocardium_id,
                             frame_interval_s, progress=_scaled_progress(progress, 0.05, 0.15))
    result = pipeline.quantify_study(study, parameters, progress=_scaled_progress(progress, 0.15, 0.95))
    _report(progress, 0.95, "Writing the results")
    mbf_node = mbf_volume_node(scene, result.mbf_ml_min_g, study.ijk_to_ras)
    save_volume_node(mbf_node, os.path.join(output_dir, pipeline.OUTPUT_FILES["mbf"]))
    pipeline.write_result_files(result, output_dir, study_name=nodes.sequence.GetName())
    _report(progress, 1.0, "Done")
    return result

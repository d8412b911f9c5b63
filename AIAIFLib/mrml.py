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

One path for every caller.  ``quantify_nodes`` is the whole quantification on
nodes: it builds the study (``study_from_nodes``), runs
``pipeline.quantify_study`` and only then publishes the output nodes (MBF map,
MBF bullseye, segment table, AIF table and chart, optionally the fit-quality
map) as one
transaction: if anything fails or the progress callback raises (a cancel),
every node added is removed and every node updated is restored, so the
scene is exactly as it was.  Output nodes are tagged with the attributes
``OUTPUT_ROLE_ATTRIBUTE`` and ``PERFUSION_NODE_ATTRIBUTE``, and a later run on
the same perfusion input updates them instead of adding new ones.  The
command line's ``quantify_files`` and the Slicer module's Logic both call it.

Several single-slice sequences.  Perfusion DICOM often loads as one sequence
per slice; ``study_from_nodes`` stacks a list of them by their position along
the slice normal (not by list order) and resamples the segments onto each
slice's own exact geometry.
"""

import contextlib
import os
from typing import NamedTuple, Optional

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from . import constants as K
from . import pipeline
from . import segments
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

#: Output roles of ``quantify_nodes`` and the node class each is published as.
OUTPUT_ROLE_CLASSES = {
    "mbf": "vtkMRMLScalarVolumeNode",
    "bullseye": "vtkMRMLScalarVolumeNode",
    "segments": "vtkMRMLTableNode",
    "aif_table": "vtkMRMLTableNode",
    "aif_chart": "vtkMRMLPlotChartNode",
    "fit_quality": "vtkMRMLScalarVolumeNode",
}
#: What follows the name prefix in the name of a new output node of each role.
OUTPUT_NAME_SUFFIXES = {"mbf": "MBF", "bullseye": "MBF bullseye", "segments": "MBF per segment", "aif_table": "AIF",
                        "aif_chart": "AIF chart", "fit_quality": "fit NRMSE"}
#: Node attribute naming the output role of a node ``quantify_nodes`` made.
OUTPUT_ROLE_ATTRIBUTE = "AIAIF.OutputRole"
#: Node attribute holding the ID of the (first) perfusion sequence an output was computed from.
PERFUSION_NODE_ATTRIBUTE = "AIAIF.PerfusionNodeID"
#: Node attribute naming the curve (AIF table column) a plot series shows.
CURVE_ATTRIBUTE = "AIAIF.Curve"
#: Output role of the plot series of the AIF chart (tagged, not an ``outputs`` key).
AIF_SERIES_ROLE = "aif_series"

#: Curves of the AIF table and chart: (column name, ``result.aif`` key, column
#: title, plot colour RGB 0-1, dashed line).  Colours are a project choice:
#: grey for the uncorrected input, red for the AIF the fit used, blue for the
#: myocardium.  The title of ``used_mM`` is completed with the AIF mode's label.
AIF_CURVES = (
    ("saturated_mM", "saturated_mM", "Saturated AIF", (0.45, 0.45, 0.45), True),
    ("used_mM", "used_mM", "AIF used: {}", (0.84, 0.15, 0.16), False),
    ("myocardium_mM", "myocardium_mM", "Myocardium (mean)", (0.12, 0.47, 0.71), False),
)
#: Name of the time column of the AIF table (s).
AIF_TIME_COLUMN = "time_s"
#: Columns of the segment table shown in mL/min/g.
MBF_COLUMNS = ("mbf_mean", "mbf_median", "mbf_curve_fit")

#: Display range of fit-quality maps (fit NRMSE, a fraction of the tissue
#: curve's RMS).  Project choice: good pixel fits lie well below 0.2 and fits
#: above 0.5 are poor, so the window spans both.
FIT_NRMSE_DISPLAY_RANGE = (0.0, 0.5)

#: Pixel size of the MBF bullseye volume, mm (project choice: 1 mm, so that a
#: bullseye of ``segments.BULLSEYE_SIZE_PX`` = 257 pixels is about as wide as a
#: chest field of view and fills a slice view at the same zoom as the images).
BULLSEYE_PIXEL_MM = 1.0
#: Distance from the top (largest S) of the perfusion grid to the bullseye's
#: plane, mm (project choice: the bullseye is viewed on its own, so it is kept
#: clear of the patient images, yet near enough to find in the 3-D view).
BULLSEYE_CLEARANCE_MM = 100.0
#: RAS directions of the bullseye volume's voxel axes i (column), j (row) and k,
#: one per row.  Slicer's axial view shows the patient's left (-R) to the right
#: and anterior (+A) at the top, so i towards -R and j towards -A show the image
#: as ``segments.bullseye_image`` draws it (row 0 at the top): segment 1 at the
#: top, the septum on the left, without reorienting the view.  k points +S,
#: keeping the matrix right-handed (determinant +1, like an LPS grid).
BULLSEYE_IJK_DIRECTIONS_RAS = np.array([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])

#: Stacking single-slice sequences (project choices).  In-plane axes may
#: differ by this fraction of the smallest pixel size (rounding in DICOM
#: orientations), slice centres may be offset in-plane by this fraction of a
#: pixel, and slices closer than this fraction of a pixel count as one position.
STACK_AXIS_TOLERANCE = 1e-3
STACK_IN_PLANE_OFFSET_TOLERANCE = 0.1
STACK_SAME_POSITION_TOLERANCE = 0.1
#: Slice spacing counted as uneven when a step between slice centres differs
#: from the mean step by more than this fraction of it (the study is still
#: built; ``study.source`` records it).
UNEVEN_SLICE_SPACING_FRACTION = 0.10

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


def _described(node):
    """``vtkMRMLTableNode 'Results'``: class and name of a node (or the type of anything else)."""
    if node is None:
        return "nothing"
    if not hasattr(node, "GetClassName"):
        return type(node).__name__
    name = node.GetName() if hasattr(node, "GetName") else None
    return "{} {!r}".format(node.GetClassName(), name) if name else node.GetClassName()


def _require_node(node, class_name, what, fix):
    if node is None or not hasattr(node, "IsA") or not node.IsA(class_name):
        raise AIAIFInputError("The {} must be a {} node, got {}; {}.".format(what, class_name, _described(node), fix))
    return node


def _require_scene(scene):
    if scene is None or not hasattr(scene, "IsA") or not scene.IsA("vtkMRMLScene"):
        raise AIAIFInputError("scene must be a vtkMRMLScene; pass slicer.mrmlScene in Slicer or "
                              "slicer.vtkMRMLScene() outside it.")
    return scene


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
        Point list with the RV insertion points (anterior; 'inferior' in a label for inferior ones).
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
    _require_scene(scene)
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
# The phantom as nodes (no files: Slicer's Sample Data has no pynrrd)
# ---------------------------------------------------------------------------

def _right_handed(ijk_to_ras, arrays_kji):
    """The grid made right-handed as Slicer loads it: a left-handed grid gets its slice order reversed.

    Returns the new matrix and the arrays with their slice axis (third from
    last) reversed accordingly; every voxel keeps its RAS position.
    """
    matrix = np.array(ijk_to_ras, dtype=float)
    if np.linalg.det(matrix[:3, :3]) > 0:
        return matrix, list(arrays_kji)
    n_slices = np.shape(arrays_kji[0])[-3]
    flipped = matrix.copy()
    flipped[:3, 3] = matrix[:3, 3] + (n_slices - 1) * matrix[:3, 2]
    flipped[:3, 2] = -matrix[:3, 2]
    return flipped, [np.flip(np.asarray(array), axis=-3) for array in arrays_kji]


def _oriented_labelmap(mask_kji, ijk_to_ras):
    """A binary ``vtkOrientedImageData`` (0/1, unsigned char) of a mask on the grid of ``ijk_to_ras``."""
    mask = np.asarray(mask_kji, dtype=np.uint8)
    image = slicer.vtkOrientedImageData()
    image.SetExtent(0, mask.shape[2] - 1, 0, mask.shape[1] - 1, 0, mask.shape[0] - 1)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    _voxels(image)[...] = mask
    image.SetImageToWorldMatrix(_vtk_matrix(ijk_to_ras))
    return image


def _sequences_logic(scene):
    """(logic, private): the Slicer application's Sequences logic for its scene, else a private one on ``scene``."""
    modules = getattr(slicer, "modules", None)
    if modules is not None and scene is getattr(slicer, "mrmlScene", None) and hasattr(modules, "sequences"):
        return modules.sequences.logic(), False
    logic = slicer.vtkSlicerSequencesLogic()
    logic.SetMRMLScene(scene)
    return logic, True


def sequence_browser_node(sequence_node):
    """The first sequence browser in the sequence's scene whose master sequence it is, or None.

    Parameters
    ----------
    sequence_node : vtkMRMLSequenceNode
        A sequence in a scene.

    Returns
    -------
    vtkMRMLSequenceBrowserNode or None
        Its browser; ``browser.GetProxyNode(sequence_node)`` is the volume the
        views show.
    """
    sequence_node = _require_node(sequence_node, "vtkMRMLSequenceNode", "sequence", "pass a sequence node")
    scene = sequence_node.GetScene()
    if scene is None:
        return None
    browsers = scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")
    for n in range(browsers.GetNumberOfItems()):
        browser = browsers.GetItemAsObject(n)
        if browser.GetMasterSequenceNode() is sequence_node:
            return browser
    return None


def phantom_nodes(scene, phantom, name="AI-AIF phantom"):
    """Put a simulated phantom into ``scene`` as the nodes Slicer would load from its files, without files.

    Made directly in memory (no pynrrd, matplotlib or torch), with the same
    geometry as loading ``simulation.write_phantom``'s files
    (``load_study_files``): a left-handed phantom grid gets its slice order
    reversed, every voxel keeping its RAS position, so ``study_from_nodes`` on
    these nodes gives the same study.  Added to ``scene``:

    * a ``vtkMRMLSequenceNode`` named ``name`` of ``vtkMRMLScalarVolumeNode``
      frames, index name ``time``, unit ``s``, index values the frame times;
    * a ``vtkMRMLSequenceBrowserNode`` (``name + " browser"``) with it as
      master sequence and its proxy volume node (made by Slicer's Sequences
      logic), so the frames show in the views (``sequence_browser_node``);
    * a ``vtkMRMLSegmentationNode`` (``name + " segmentation"``) with the
      segments ``LV blood pool`` and ``Myocardium`` (binary labelmaps on the
      frame grid, which is also its reference geometry);
    * a ``vtkMRMLMarkupsFiducialNode`` (``name + " RV insertion points"``)
      with the anterior RV insertion point of each slice, labelled with its
      level.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to add the nodes to.
    phantom : simulation.Phantom
        From ``simulation.simulate_phantom`` (e.g. ``studies.demo_phantom()``,
        the command line demo's phantom).
    name : str, optional
        Name of the sequence and prefix of the other nodes' names.

    Returns
    -------
    StudyNodes
        The sequence, segmentation and point list; pass them to
        ``quantify_nodes``.

    Raises
    ------
    AIAIFInputError
        For a scene that is not a ``vtkMRMLScene``.  If anything fails, every
        node added is removed again.
    """
    _require_scene(scene)
    name = str(name)
    ijk_to_ras, (frames, blood_pool, myocardium) = _right_handed(
        phantom.ijk_to_ras, [phantom.frames, phantom.lv_blood_mask, phantom.myocardium_mask])
    matrix = _vtk_matrix(ijk_to_ras)
    _ensure_segmentation_converters()
    before = _scene_node_ids(scene)
    try:
        sequence = slicer.vtkMRMLSequenceNode()
        sequence.SetName(name)
        sequence.SetIndexName("time")
        sequence.SetIndexUnit("s")
        sequence.SetIndexType(slicer.vtkMRMLSequenceNode.NumericIndex)
        frame = slicer.vtkMRMLScalarVolumeNode()
        frame.SetIJKToRASMatrix(matrix)
        for time_s, values in zip(np.asarray(phantom.frame_times_s, dtype=float), frames):
            frame.SetAndObserveImageData(_image_from_array(np.asarray(values, dtype=np.float32), vtk.VTK_FLOAT))
            sequence.SetDataNodeAtValue(frame, repr(float(time_s)))  # copied; repr reads back exactly
        scene.AddNode(sequence)
        proxy = show_sequence_frame(sequence, 0)  # its browser (name + " browser") and proxy volume

        segmentation = roi_segmentation_node(scene, proxy, name + " segmentation")
        segment_ids = ensure_roi_segments(segmentation)
        for segment_id, mask in zip(segment_ids, (blood_pool, myocardium)):
            if not slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                    _oriented_labelmap(mask, ijk_to_ras), segmentation, segment_id):
                raise RuntimeError("Slicer could not set the phantom's {} segment.".format(
                    segmentation.GetSegmentation().GetSegment(segment_id).GetName()))

        points = slicer.vtkMRMLMarkupsFiducialNode()
        points.SetName(name + " RV insertion points")
        scene.AddNode(points)
        points.CreateDefaultDisplayNodes()
        for position, label in zip(np.asarray(phantom.rv_insertion_ras["anterior"], dtype=float),
                                   phantom.rv_insertion_labels):
            points.AddControlPoint(vtk.vtkVector3d(*position), label)
    except BaseException:
        _remove_nodes_added_since(scene, before)
        raise
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
    return _segment_masks_on_grids(segmentation_node, segment_ids, [(ijk_to_ras, shape_kji)])[0]


def _segment_masks_on_grids(segmentation_node, segment_ids, grids):
    """Masks of segments on each of several grids: ``result[grid][segment]`` (see ``segment_masks``).

    The segmentation is copied once; a segment must be non-empty and must
    cover a voxel of at least one grid.
    """
    grids = [(_vtk_matrix(_validated_ijk_to_ras(matrix)), tuple(int(n) for n in shape)) for matrix, shape in grids]
    name = _node_name(segmentation_node)
    world = _world_matrix_of(segmentation_node, "segmentation")
    _ensure_segmentation_converters()

    scratch = slicer.vtkMRMLScene()
    masks = [[] for _ in grids]
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
        if not segmentation.ContainsRepresentation(BINARY_LABELMAP):
            matrix, shape_kji = grids[0]
            extent = (0, shape_kji[2] - 1, 0, shape_kji[1] - 1, 0, shape_kji[0] - 1)
            segmentation.SetConversionParameter(
                slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
                slicer.vtkSegmentationConverter.SerializeImageGeometry(matrix, extent))
            if not segmentation.CreateRepresentation(BINARY_LABELMAP):
                raise AIAIFInputError("Segmentation {!r} cannot be converted to a binary labelmap; convert it in "
                                      "the Segmentations module (Representations) and try again.".format(name))
        for segment_id in segment_ids:
            if _segment_voxel_count(segmentation, segment_id) == 0:
                raise AIAIFInputError("The segment {!r} of segmentation {!r} is empty; draw it on the perfusion "
                                      "images.".format(segmentation.GetSegment(segment_id).GetName(), name))

        for grid_masks, (matrix, shape_kji) in zip(masks, grids):
            extent = (0, shape_kji[2] - 1, 0, shape_kji[1] - 1, 0, shape_kji[0] - 1)
            reference = slicer.vtkMRMLScalarVolumeNode()
            scratch.AddNode(reference)
            reference.SetIJKToRASMatrix(matrix)
            grid = vtk.vtkImageData()
            grid.SetExtent(*extent)
            grid.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
            reference.SetAndObserveImageData(grid)
            for segment_id in segment_ids:
                grid_masks.append(_exported_mask(scratch, copy, segment_id, reference, matrix, shape_kji, name))
    for index, segment_id in enumerate(segment_ids):
        if not any(grid_masks[index].any() for grid_masks in masks):
            raise AIAIFInputError("The segment {!r} of segmentation {!r} lies outside the perfusion images; draw the "
                                  "segments on this perfusion series.".format(
                                      segmentation_node.GetSegmentation().GetSegment(segment_id).GetName(), name))
    return masks


def _exported_mask(scratch, copy, segment_id, reference, matrix, shape_kji, name):
    """One segment of the scratch copy exported onto the reference volume's grid (nearest voxel), as bool."""
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    scratch.AddNode(labelmap)
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            copy, ids, labelmap, reference, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
        raise AIAIFInputError("Slicer could not resample the segment {!r} of segmentation {!r} onto the perfusion "
                              "images; check the segmentation in the Segmentations module."
                              .format(copy.GetSegmentation().GetSegment(segment_id).GetName(), name))
    image = labelmap.GetImageData()
    if (image is None or tuple(image.GetDimensions()[::-1]) != shape_kji
            or not np.allclose(_ijk_to_ras_of(labelmap), _numpy_matrix(matrix), rtol=0, atol=1e-6)):
        raise RuntimeError("Slicer exported segment {!r} on a grid other than the reference grid.".format(segment_id))
    mask = _voxels(image) > 0
    scratch.RemoveNode(labelmap)
    return mask.copy()


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


def external_aif_from_table(table_node):
    """An external AIF (e.g. from a dual-sequence acquisition) read from a table node.

    The table has a ``time_s`` column (s; the name as in ``aif.csv``,
    case-insensitive) and the AIF signal: the only other column, or the one
    named ``signal`` when there are several.  Text columns (a table loaded
    from CSV) are read as numbers.

    Parameters
    ----------
    table_node : vtkMRMLTableNode
        The table; not modified.

    Returns
    -------
    times_s : numpy.ndarray, shape (n_samples,)
        Sample times, s.
    signal : numpy.ndarray, shape (n_samples,)
        AIF signal (any units, with a pre-contrast baseline); checked further
        by the quantification (``pipeline.quantify_study``).

    Raises
    ------
    AIAIFInputError
        For a missing node, no ``time_s`` column, no unambiguous signal
        column, or a cell that is not a number; the message names the table.
    """
    from .aif import TIME_COLUMN

    table_node = _require_node(table_node, "vtkMRMLTableNode", "external AIF table",
                               "choose a table with the columns time_s and signal")
    name = _node_name(table_node)
    table = table_node.GetTable()
    columns = [table.GetColumn(c).GetName() or "" for c in range(table.GetNumberOfColumns())]
    lowered = [column.strip().lower() for column in columns]
    if TIME_COLUMN not in lowered:
        raise AIAIFInputError("The external AIF table {!r} has no column {!r} (it has {}); name the time column "
                              "{} (seconds).".format(name, TIME_COLUMN, ", ".join(map(repr, columns)) or "none",
                                                     TIME_COLUMN))
    time_index = lowered.index(TIME_COLUMN)
    others = [c for c in range(len(columns)) if c != time_index]
    if len(others) != 1:
        others = [c for c in others if lowered[c] == "signal"]
    if len(others) != 1:
        raise AIAIFInputError("The external AIF table {!r} has {} columns besides {}; keep only the AIF signal or "
                              "name it 'signal'.".format(name, len(columns) - 1, TIME_COLUMN))

    def numbers(column):
        values = np.empty(table.GetNumberOfRows())
        for row in range(values.size):
            text = table.GetValue(row, column).ToString().strip()
            try:
                values[row] = float(text)
            except ValueError:
                raise AIAIFInputError("Row {} of column {!r} in the external AIF table {!r} is {!r}, not a number; "
                                      "correct the table.".format(row + 1, columns[column], name, text))
        return values

    return numbers(time_index), numbers(others[0])


# ---------------------------------------------------------------------------
# Nodes -> PerfusionStudy
# ---------------------------------------------------------------------------

def _perfusion_sequences(perfusion_nodes):
    """The perfusion input as a list of sequence nodes (a browser node stands for its master sequence)."""
    if isinstance(perfusion_nodes, (list, tuple)):
        given = list(perfusion_nodes)
        if not given:
            raise AIAIFInputError("The list of perfusion sequences is empty; pass a volume sequence or one "
                                  "single-slice sequence per slice.")
    else:
        given = [perfusion_nodes]
    sequences = []
    for node in given:
        if node is not None and hasattr(node, "IsA") and node.IsA("vtkMRMLSequenceBrowserNode"):
            master = node.GetMasterSequenceNode()
            if master is None:
                raise AIAIFInputError("The sequence browser {!r} has no master sequence; choose the perfusion "
                                      "sequence in the Sequences module.".format(_node_name(node)))
            node = master
        node = _require_node(node, "vtkMRMLSequenceNode", "perfusion series",
                             "load the perfusion frames as a volume sequence")
        if any(node is other for other in sequences):
            raise AIAIFInputError("Sequence {!r} is given twice; pass each slice's sequence once."
                                  .format(_node_name(node)))
        sequences.append(node)
    return sequences


def _check_sequence_items(sequence_node):
    """Error naming the sequence if it holds no scalar volumes or fewer than ``MIN_FRAMES`` frames."""
    name = _node_name(sequence_node)
    n_frames = sequence_node.GetNumberOfDataNodes()
    first = sequence_node.GetNthDataNode(0) if n_frames else None
    if first is not None and not first.IsA("vtkMRMLScalarVolumeNode"):
        raise AIAIFInputError("Sequence {!r} holds {} items, not scalar volumes; choose the sequence of the "
                              "perfusion images.".format(name, first.GetClassName()))
    if first is not None and first.IsA("vtkMRMLLabelMapVolumeNode"):
        raise AIAIFInputError("Sequence {!r} holds labelmap volumes, not images; choose the sequence of the "
                              "perfusion images.".format(name))
    if n_frames < MIN_FRAMES:
        raise AIAIFInputError("Sequence {!r} has {} frame{} but quantification needs at least {}; load the whole "
                              "perfusion series (one frame per heartbeat).".format(
                                  name, n_frames, "" if n_frames == 1 else "s", MIN_FRAMES))


def _frames_of(sequence_node, progress, start=0.1, end=0.7):
    """(frames [n, k, j, i], ijk_to_ras) of a volume sequence; every frame must share the grid.

    Progress runs from ``start`` to ``end`` as the frames are read.
    """
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
            _report(progress, start + (end - start) * (n + 1) / n_frames,
                    "Reading frame {} of {} of {}".format(n + 1, n_frames, name))
    bad = ~np.isfinite(frames)
    if bad.any():
        first = int(np.argmax(bad.reshape(n_frames, -1).any(axis=1)))
        raise AIAIFInputError("Frame {} of sequence {!r} contains NaN or infinite voxel values; replace them (e.g. "
                              "by 0) before quantifying.".format(first, name))
    return frames, ijk_to_ras


class _SliceStack(NamedTuple):
    """Single-slice sequences put in order along the slice normal.

    ``order`` indexes the given sequences in slice order; ``ijk_to_ras`` is the
    study grid (the first slice's in-plane axes, the mean step along the
    normal); ``positions_mm`` are the slice centres along the normal from the
    first one, mm; ``uneven`` says whether a step differs from the mean by more
    than ``UNEVEN_SLICE_SPACING_FRACTION``.
    """

    order: list
    ijk_to_ras: np.ndarray
    positions_mm: np.ndarray
    uneven: bool


def _slice_stack(sequences, matrices, shapes):
    """Order single-slice grids along their common normal and build the study grid; error naming a misfit."""
    names = [_node_name(sequence) for sequence in sequences]
    for name, shape in zip(names, shapes):
        if shape[0] != 1:
            raise AIAIFInputError("Sequence {!r} holds {} slices per frame; pass one multi-slice sequence on its "
                                  "own, or one single-slice sequence per slice.".format(name, shape[0]))
    axes = matrices[0][:3, :2]
    pixel_mm = float(np.min(np.linalg.norm(axes, axis=0)))
    normal = np.cross(axes[:, 0], axes[:, 1])
    normal /= np.linalg.norm(normal)
    for name, shape, matrix in zip(names[1:], shapes[1:], matrices[1:]):
        if shape[1:] != shapes[0][1:]:
            raise AIAIFInputError("Sequence {!r} has {} x {} pixels per slice but sequence {!r} has {} x {}; pass "
                                  "slices of one short-axis stack.".format(name, shape[1], shape[2], names[0],
                                                                           shapes[0][1], shapes[0][2]))
        if not np.allclose(matrix[:3, :2], axes, rtol=0, atol=STACK_AXIS_TOLERANCE * pixel_mm):
            raise AIAIFInputError("Sequence {!r} has other in-plane pixel axes or pixel size than sequence {!r}; "
                                  "pass slices of one short-axis stack (same orientation and pixel size)."
                                  .format(name, names[0]))
    offsets = np.array([matrix[:3, 3] - matrices[0][:3, 3] for matrix in matrices])
    positions = offsets @ normal
    in_plane = np.linalg.norm(offsets - positions[:, None] * normal, axis=1)
    worst = int(np.argmax(in_plane))
    if in_plane[worst] > STACK_IN_PLANE_OFFSET_TOLERANCE * pixel_mm:
        raise AIAIFInputError("Sequence {!r} is shifted in-plane by {:.2f} mm against sequence {!r}; pass slices "
                              "of one short-axis stack (same field of view).".format(names[worst], in_plane[worst],
                                                                                    names[0]))
    order = [int(n) for n in np.argsort(positions, kind="stable")]
    positions = positions[order] - positions[order[0]]
    steps = np.diff(positions)
    if np.any(steps < STACK_SAME_POSITION_TOLERANCE * pixel_mm):
        same = int(np.argmax(steps < STACK_SAME_POSITION_TOLERANCE * pixel_mm))
        raise AIAIFInputError("Sequences {!r} and {!r} lie at the same slice position; pass each slice once."
                              .format(names[order[same]], names[order[same + 1]]))
    mean_step = float(positions[-1] / (len(order) - 1))
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :2] = matrices[order[0]][:3, :2]
    ijk_to_ras[:3, 2] = mean_step * normal
    ijk_to_ras[:3, 3] = matrices[order[0]][:3, 3]
    uneven = bool(np.max(np.abs(steps - mean_step)) > UNEVEN_SLICE_SPACING_FRACTION * mean_step)
    return _SliceStack(order=order, ijk_to_ras=ijk_to_ras, positions_mm=positions, uneven=uneven)


def study_from_nodes(sequence_node, segmentation_node, rv_insertion_node=None, blood_pool_segment_id=None,
                     myocardium_segment_id=None, frame_interval_s=None, progress=None):
    """Turn a study's MRML nodes into a ``PerfusionStudy``.

    Parameters
    ----------
    sequence_node : vtkMRMLSequenceNode or vtkMRMLSequenceBrowserNode, or a list of them
        Volume sequence of the perfusion frames (a browser node stands for its
        master sequence); all frames must share one voxel grid.  Or a list or
        tuple of single-slice sequences, one per slice (as perfusion DICOM
        often loads), which are stacked:

        * every sequence needs the same number of frames and the same in-plane
          grid (rows, columns, pixel axes and size, field of view);
        * slices are ordered along the slice normal by their position, not by
          list order; the study grid has the first slice's in-plane axes and
          the mean step between slice centres (right-handed);
        * each segment is resampled onto every slice's own exact geometry, so
          the masks are exact also when the slice spacing is uneven (a step
          more than ``UNEVEN_SLICE_SPACING_FRACTION`` from the mean is
          accepted and noted in ``source["slice_spacing_note"]``);
        * frame times come from each sequence (see ``frame_times_s``); the
          study uses their per-frame mean and records the largest difference
          between slices, s, in ``source["frame_times_max_difference_s"]``.

        A list holding one sequence is the same as that sequence.
    segmentation_node : vtkMRMLSegmentationNode
        Segmentation with the LV blood pool and myocardium; resampled onto the
        frame grid (see ``segment_masks``) and not modified.
    rv_insertion_node : vtkMRMLMarkupsNode, optional
        RV insertion points, anterior or inferior by label (world RAS positions and labels are used).
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
        ``frame_times_s`` in s, ``ijk_to_ras`` of the first frame (or of the
        stack), boolean masks on the frame grid, RV points in RAS mm, and
        ``source`` naming the nodes, segments, files and where the frame times
        came from.

    Raises
    ------
    AIAIFInputError
        Naming the node: fewer than ``MIN_FRAMES`` frames, items that are not
        scalar volumes, frames on differing grids or with NaN values, unusable
        frame times (see ``frame_times_s``), single-slice sequences that do not
        form one stack, a missing, empty or out-of-image segment, the same
        segment for both ROIs, or a point list without placed points.
    """
    sequences = _perfusion_sequences(sequence_node)
    segmentation_node = _require_node(segmentation_node, "vtkMRMLSegmentationNode", "segmentation",
                                      "load or draw the segments as a segmentation")
    for sequence in sequences:
        _check_sequence_items(sequence)
    counts = [sequence.GetNumberOfDataNodes() for sequence in sequences]
    if len(set(counts)) > 1:
        other = int(np.argmax(np.array(counts) != counts[0]))
        raise AIAIFInputError("Sequence {!r} has {} frames but sequence {!r} has {}; pass single-slice sequences of "
                              "one acquisition (the same number of frames).".format(
                                  _node_name(sequences[other]), counts[other], _node_name(sequences[0]), counts[0]))
    _report(progress, 0.0, "Reading frame times")
    timed = [_checked_frame_times(sequence, frame_interval_s) for sequence in sequences]

    blood_pool_id = _checked_segment_id(segmentation_node, blood_pool_segment_id, K.LV_BLOOD_POOL_SEGMENT_NAME)
    myocardium_id = _checked_segment_id(segmentation_node, myocardium_segment_id, K.MYOCARDIUM_SEGMENT_NAME)
    if blood_pool_id == myocardium_id:
        raise AIAIFInputError("The same segment {!r} was chosen for the LV blood pool and the myocardium; choose "
                              "two different segments.".format(blood_pool_id))

    read = []
    for index, sequence in enumerate(sequences):
        start = 0.1 + 0.6 * index / len(sequences)
        read.append(_frames_of(sequence, progress, start, start + 0.6 / len(sequences)))
    notes = {}
    if len(sequences) == 1:
        frames, ijk_to_ras = read[0]
        times, times_origin = timed[0]
        grids = [(ijk_to_ras, frames.shape[1:])]
    else:
        stack = _slice_stack(sequences, [matrix for _, matrix in read], [values.shape[1:] for values, _ in read])
        sequences = [sequences[n] for n in stack.order]
        frames = np.concatenate([read[n][0] for n in stack.order], axis=1)
        ijk_to_ras = stack.ijk_to_ras
        grids = [(read[n][1], read[n][0].shape[1:]) for n in stack.order]
        all_times = np.stack([timed[n][0] for n in stack.order])
        times = all_times.mean(axis=0)
        spread = float(np.max(all_times.max(axis=0) - all_times.min(axis=0)))
        times_origin = "{}; per-frame mean over {} single-slice sequences (largest difference {:.3g} s)".format(
            timed[stack.order[0]][1], len(sequences), spread)
        notes = {"sequence_nodes": [_node_name(sequence) for sequence in sequences],
                 "slice_positions_mm": [round(float(p), 4) for p in stack.positions_mm],
                 "frame_times_max_difference_s": spread}
        if stack.uneven:
            notes["slice_spacing_note"] = (
                "uneven slice spacing (steps {} mm, mean {:.3g} mm): the study grid's slice positions are "
                "approximate; segment masks were resampled on each slice's own geometry".format(
                    ", ".join("{:.3g}".format(step) for step in np.diff(stack.positions_mm)),
                    float(np.linalg.norm(ijk_to_ras[:3, 2]))))
    _report(progress, 0.75, "Resampling the segments onto the frames")
    per_grid = _segment_masks_on_grids(segmentation_node, [blood_pool_id, myocardium_id], grids)
    blood_pool_mask = np.concatenate([masks[0] for masks in per_grid], axis=0)
    myocardium_mask = np.concatenate([masks[1] for masks in per_grid], axis=0)
    points = labels = None
    if rv_insertion_node is not None:
        points, labels = rv_insertion_points(rv_insertion_node)

    segmentation = segmentation_node.GetSegmentation()
    source = {
        "sequence_node": ", ".join(_node_name(sequence) for sequence in sequences),
        "segmentation_node": _node_name(segmentation_node),
        "blood_pool_segment": segmentation.GetSegment(blood_pool_id).GetName(),
        "myocardium_segment": segmentation.GetSegment(myocardium_id).GetName(),
        "frame_times_from": times_origin,
    }
    source.update(notes)
    perfusion_files = [sequence.GetStorageNode().GetFileName() for sequence in sequences
                       if sequence.GetStorageNode() is not None and sequence.GetStorageNode().GetFileName()]
    if len(perfusion_files) == 1 and len(sequences) == 1:
        source["perfusion_file"] = perfusion_files[0]
    elif perfusion_files:
        source["perfusion_files"] = perfusion_files
    for key, node in (("segmentation_file", segmentation_node), ("rv_insertion_file", rv_insertion_node)):
        storage = node.GetStorageNode() if node is not None else None
        if storage is not None and storage.GetFileName():
            source[key] = storage.GetFileName()
    if rv_insertion_node is not None:
        source["rv_insertion_node"] = _node_name(rv_insertion_node)
    _report(progress, 1.0, "Study ready")
    return PerfusionStudy(frames=frames, frame_times_s=times, ijk_to_ras=ijk_to_ras, blood_pool_mask=blood_pool_mask,
                          myocardium_mask=myocardium_mask, rv_insertion_ras=points, rv_insertion_labels=labels,
                          source=source)


def check_rv_insertion_points(study, rv_insertion_node):
    """Check the RV insertion points of a study against its slices, naming the point list.

    The points are optional; ``segments.aha_segment_map`` takes per slice
    with myocardium at most one anterior and one inferior point (a label
    containing "inferior" marks the inferior one, ``segments.rv_point_kinds``),
    each inside a slice.  This says so before the quantification runs, with
    the point list's name in the message.

    Parameters
    ----------
    study : PerfusionStudy
        From ``study_from_nodes`` with ``rv_insertion_node``.
    rv_insertion_node : vtkMRMLMarkupsNode or None
        The point list the study's points came from (None: nothing to check).

    Raises
    ------
    AIAIFInputError
        For a point outside every slice, more anterior or inferior points
        than slices with myocardium, or two of one kind in one slice.
    """
    if rv_insertion_node is None or study.rv_insertion_ras is None:
        return
    name = _node_name(rv_insertion_node)
    points = np.asarray(study.rv_insertion_ras, dtype=float).reshape(-1, 3)
    kinds = np.array(segments.rv_point_kinds(study.rv_insertion_labels, points.shape[0]))
    matrix = np.asarray(study.ijk_to_ras, dtype=float)
    n_slices = study.myocardium_mask.shape[0]
    k = np.linalg.solve(matrix[:3, :3], (points - matrix[:3, 3]).T)[2]
    normal = np.cross(matrix[:3, 0], matrix[:3, 1])
    spacing_mm = abs(float(np.dot(normal / np.linalg.norm(normal), matrix[:3, 2])))
    tolerance = 1e-6
    outside = (k < -0.5 - tolerance) | (k > n_slices - 0.5 + tolerance)
    if outside.any():
        index = int(np.argmax(outside))
        distance = min(abs(k[index]), abs(k[index] - (n_slices - 1))) * spacing_mm
        raise AIAIFInputError("Point {} of the point list {!r} lies {:.1f} mm from the nearest slice, outside every "
                              "slice; move it into the short-axis slice it belongs to.".format(index + 1, name,
                                                                                            distance))
    n_myocardial = int(np.count_nonzero(np.asarray(study.myocardium_mask).any(axis=(1, 2))))
    for kind in ("anterior", "inferior"):
        count = int(np.count_nonzero(kinds == kind))
        if count > n_myocardial:
            raise AIAIFInputError("The point list {!r} has {} placed {} points but only {} slice{} myocardium; keep "
                                  "one anterior and at most one inferior RV insertion point (labelled "
                                  "'inferior') per segmented slice.".format(
                                      name, count, kind, n_myocardial, " has" if n_myocardial == 1 else "s have"))
    slice_of_point = np.clip(np.rint(k).astype(int), 0, n_slices - 1)
    for index in range(1, points.shape[0]):
        earlier = np.flatnonzero((slice_of_point[:index] == slice_of_point[index]) & (kinds[:index] == kinds[index]))
        if earlier.size:
            raise AIAIFInputError("Points {} and {} of the point list {!r} are both {} points of slice {}; keep one "
                                  "anterior and at most one inferior RV insertion point (labelled 'inferior') per "
                                  "slice.".format(int(earlier[0]) + 1, index + 1, name, kinds[index],
                                                  int(slice_of_point[index])))


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
    _require_scene(scene)
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
    values = _map_values(mbf_map_kji, "MBF map", myocardium_mask)
    matrix = _validated_ijk_to_ras(ijk_to_ras)
    node = _output_node(scene, node, "vtkMRMLScalarVolumeNode", name, "MBF volume")
    _show_map(node, values, matrix, MBF_DISPLAY_RANGE_ML_MIN_G, mbf_color_table_node(scene).GetID())
    return node


def bullseye_ijk_to_ras(centre_ras, size_px=segments.BULLSEYE_SIZE_PX, pixel_mm=BULLSEYE_PIXEL_MM):
    """Voxel-to-RAS matrix of a one-slice bullseye volume centred on a point.

    Column i runs towards the patient's left and row j posterior
    (``BULLSEYE_IJK_DIRECTIONS_RAS``), so Slicer's axial view, unrotated,
    shows the image as printed: segment 1 at the top, septum on the left.

    Parameters
    ----------
    centre_ras : array_like, shape (3,)
        RAS position of the bullseye's centre pixel, mm.
    size_px : int, optional
        Width and height of the bullseye image, pixels.
    pixel_mm : float, optional
        Pixel size (and slice thickness), mm.

    Returns
    -------
    numpy.ndarray, shape (4, 4)
        Maps the voxel index (i, j, k, 1) to RAS mm; voxel
        ``((size_px - 1) / 2, (size_px - 1) / 2, 0)`` lands on ``centre_ras``.

    Raises
    ------
    AIAIFInputError
        For a centre that is not 3 finite numbers or a pixel size that is not
        a positive number.
    """
    try:
        centre = np.array(centre_ras, dtype=float)
        pixel, size = float(pixel_mm), float(size_px)
    except (TypeError, ValueError):
        centre, pixel, size = np.full(1, np.nan), float("nan"), float("nan")
    if (centre.shape != (3,) or not np.all(np.isfinite(centre)) or not (np.isfinite(pixel) and pixel > 0)
            or not (np.isfinite(size) and size >= 1)):
        raise AIAIFInputError("The bullseye needs its centre as 3 finite RAS numbers (mm), a positive pixel size in "
                              "mm and a size of at least 1 pixel, got {!r}, {!r} and {!r}; pass e.g. "
                              "centre_ras=(0, 0, 0).".format(centre_ras, pixel_mm, size_px))
    matrix = np.eye(4)
    matrix[:3, :3] = pixel * BULLSEYE_IJK_DIRECTIONS_RAS.T  # columns: the RAS steps of i, j and k
    middle = 0.5 * (size - 1.0)
    matrix[:3, 3] = centre - matrix[:3, :3] @ np.array([middle, middle, 0.0])
    return matrix


def bullseye_centre_beside(ijk_to_ras, shape_kji, clearance_mm=BULLSEYE_CLEARANCE_MM):
    """Where to centre a bullseye so that it stays clear of a study's images.

    Parameters
    ----------
    ijk_to_ras : array_like, shape (4, 4)
        Voxel index (i, j, k, 1) to RAS (mm) matrix of the study's grid.
    shape_kji : tuple of int
        Grid shape ``(n_slices, rows, columns)``.
    clearance_mm : float, optional
        Distance above the grid's highest point, mm.

    Returns
    -------
    numpy.ndarray, shape (3,)
        RAS mm: the R and A centre of the grid's bounding box (voxel edges
        included), and S ``clearance_mm`` above its top, so that the axial
        bullseye plane cuts no voxel of the study.
    """
    matrix = _validated_ijk_to_ras(ijk_to_ras)
    n_k, n_j, n_i = (int(n) for n in shape_kji)
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, n_i - 0.5) for j in (-0.5, n_j - 0.5)
                        for k in (-0.5, n_k - 0.5)])
    ras = (corners @ matrix.T)[:, :3]
    low, high = ras.min(axis=0), ras.max(axis=0)
    return np.array([0.5 * (low[0] + high[0]), 0.5 * (low[1] + high[1]), high[2] + float(clearance_mm)])


def bullseye_volume_node(scene, segment_mbf_ml_min_g, centre_ras=(0.0, 0.0, 0.0), name="MBF bullseye", node=None,
                         size_px=segments.BULLSEYE_SIZE_PX, gap_px=segments.BULLSEYE_GAP_PX):
    """Show the AHA 16-segment bullseye of segment MBF as a one-slice scalar volume.

    The image is ``segments.bullseye_image`` (segment 1 at the top, septum on
    the left; NaN outside the rings, in the gaps and for segments without a
    value), one slice of ``BULLSEYE_PIXEL_MM`` pixels whose voxel axes
    (``bullseye_ijk_to_ras``) make Slicer's axial view show it upright.  It is
    displayed exactly as the MBF map (``mbf_volume_node``: the MBF colour
    table, window 0-5 mL/min/g, NaN transparent), so one colour means one MBF.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to publish into.
    segment_mbf_ml_min_g : array_like, shape (16,)
        MBF of AHA segments 1-16 in order, mL/min/g; NaN = no value.
    centre_ras : array_like, shape (3,), optional
        RAS position of the bullseye's centre, mm; keep it clear of the
        patient images (``bullseye_centre_beside``).
    name : str, optional
        Name of a new node.
    node : vtkMRMLScalarVolumeNode, optional
        Existing node to update in place.
    size_px : int, optional
        Width and height of the image, pixels (= mm).
    gap_px : float, optional
        Width of the empty border between segments, pixels.

    Returns
    -------
    vtkMRMLScalarVolumeNode
        The node, its voxels (1, size_px, size_px) in mL/min/g.

    Raises
    ------
    AIAIFInputError
        For anything but 16 segment values, a bad size, gap or centre, or a
        ``node`` of another class or scene.
    """
    image = segments.bullseye_image(segment_mbf_ml_min_g, size_px, gap_px)
    matrix = bullseye_ijk_to_ras(centre_ras, image.shape[0])
    node = _output_node(scene, node, "vtkMRMLScalarVolumeNode", name, "MBF bullseye volume")
    return mbf_volume_node(scene, image[None], matrix, node=node)


def _map_values(map_kji, what, mask=None):
    """A 3-D map as float32 (a copy), NaN outside ``mask``; error for anything else."""
    try:
        values = np.array(map_kji, dtype=np.float32)
    except (TypeError, ValueError):
        values = np.zeros(0, dtype=np.float32)
    if values.ndim != 3 or 0 in values.shape:
        raise AIAIFInputError("The {} must be a non-empty 3-D array (n_slices, rows, columns) of numbers; "
                              "pass the map on the frame grid.".format(what))
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != values.shape:
            raise AIAIFInputError("The myocardium mask has shape {} but the {} {}; pass the mask of the same "
                                  "study.".format(mask.shape, what, values.shape))
        values[~mask] = np.nan
    return values


def _show_map(node, values, matrix, display_range, color_node_id=None):
    """Put a float32 map into a scalar volume node, windowed to ``display_range`` with NaN voxels transparent."""
    disabled = node.StartModify()
    node.SetIJKToRASMatrix(_vtk_matrix(matrix))
    node.SetAndObserveImageData(_image_from_array(values, vtk.VTK_FLOAT))
    node.EndModify(disabled)

    display = node.GetDisplayNode()
    if display is None:
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
    low, high = display_range
    finite = values[np.isfinite(values)]
    disabled = display.StartModify()
    if color_node_id is not None:
        display.SetAndObserveColorNodeID(color_node_id)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(low, high)
    # NaN fails every threshold comparison, so thresholding on the whole finite
    # range hides exactly the voxels without a value.
    display.AutoThresholdOff()
    display.SetThreshold(min(low, float(finite.min())) if finite.size else low,
                         max(high, float(finite.max())) if finite.size else high)
    display.ApplyThresholdOn()
    display.EndModify(disabled)


def fit_quality_volume_node(scene, nrmse_kji, ijk_to_ras, name="fit NRMSE", node=None):
    """Show the per-pixel fit NRMSE as a scalar volume.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene of the study.
    nrmse_kji : array_like, shape (n_slices, rows, columns)
        Residual RMS over tissue-curve RMS of each pixel's fit (a fraction,
        ``QuantificationResult.fit_nrmse``); NaN outside the myocardium and
        where the fit failed.  Stored as float32.
    ijk_to_ras : array_like, shape (4, 4)
        Voxel index (i, j, k, 1) to RAS (mm) matrix of the frame grid.
    name : str, optional
        Name of a new node.
    node : vtkMRMLScalarVolumeNode, optional
        Existing node to update in place.

    Returns
    -------
    vtkMRMLScalarVolumeNode
        The node, windowed to ``FIT_NRMSE_DISPLAY_RANGE`` with NaN voxels
        transparent (the display's default colour table).

    Raises
    ------
    AIAIFInputError
        For a map that is not 3-D numeric, an invalid ``ijk_to_ras``, or a
        ``node`` of another class or scene.
    """
    values = _map_values(nrmse_kji, "fit NRMSE map")
    matrix = _validated_ijk_to_ras(ijk_to_ras)
    node = _output_node(scene, node, "vtkMRMLScalarVolumeNode", name, "fit-quality volume")
    _show_map(node, values, matrix, FIT_NRMSE_DISPLAY_RANGE)
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


def segments_table_node(scene, columns, name="MBF per segment", node=None, units=None, titles=None):
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
    titles : dict of str -> str, optional
        Header shown instead of the column name for some columns.

    Returns
    -------
    vtkMRMLTableNode
        The table, with the column titles (by default the names) as headers.

    Raises
    ------
    AIAIFInputError
        For no columns, columns of different lengths or unsupported types,
        a unit or title for a column that does not exist, or a ``node`` of
        another class or scene.
    """
    if not isinstance(columns, dict) or not columns:
        raise AIAIFInputError("columns must be a non-empty dict of column name -> values; pass e.g. "
                              "{'Segment': [1, 2], 'MBF': [2.1, 2.4]}.")
    vtk_columns = [_vtk_column(str(key), values) for key, values in columns.items()]
    lengths = {column.GetName(): column.GetNumberOfTuples() for column in vtk_columns}
    if len(set(lengths.values())) > 1:
        raise AIAIFInputError("The table columns have different lengths ({}); give every column one value per row."
                              .format(", ".join("{} {}".format(k, v) for k, v in lengths.items())))
    units, titles = dict(units or {}), dict(titles or {})
    for given, what in ((units, "Units"), (titles, "Titles")):
        unknown = sorted(set(given) - set(lengths))
        if unknown:
            raise AIAIFInputError("{} were given for columns that do not exist ({}); name existing columns."
                                  .format(what, ", ".join(unknown)))
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
    for column_name, title in titles.items():
        node.SetColumnTitle(column_name, str(title))
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
# Quantifying nodes: the one path of the command line and the Slicer module
# ---------------------------------------------------------------------------

class QuantifiedNodes(NamedTuple):
    """What ``quantify_nodes`` computed and the nodes it published.

    Attributes
    ----------
    result : pipeline.QuantificationResult
        Arrays, tables and summary of the quantification.
    study : pipeline.PerfusionStudy
        The study it was computed from (frames, times, geometry, masks).
    mbf_volume : vtkMRMLScalarVolumeNode
        MBF map, mL/min/g, with the MBF colour table (``mbf_volume_node``).
    segments_table : vtkMRMLTableNode
        ``result.segments``: one row per AHA segment 1-16.
    aif_table : vtkMRMLTableNode
        One row per frame: ``time_s`` (s), ``saturated_mM``, ``used_mM`` and
        ``myocardium_mM`` (mM), see ``AIF_CURVES``.
    aif_chart : vtkMRMLPlotChartNode
        One plot series per curve of ``aif_table`` against time.
    fit_quality_volume : vtkMRMLScalarVolumeNode or None
        Per-pixel fit NRMSE (fraction), if asked for.
    bullseye_volume : vtkMRMLScalarVolumeNode
        AHA bullseye of the segment MBF means (``result.segments["mbf_mean"]``),
        mL/min/g, one slice shown like the MBF map (``bullseye_volume_node``),
        placed above the study's images (``bullseye_centre_beside``).
    """

    result: pipeline.QuantificationResult
    study: PerfusionStudy
    mbf_volume: object
    segments_table: object
    aif_table: object
    aif_chart: object
    fit_quality_volume: Optional[object]
    bullseye_volume: object


class _SceneUndo(object):
    """What one publishing step changed in a scene, and how to undo it.

    Nodes present before are copied (``CreateNodeInstance`` + ``Copy``, which
    copies content such as image data and table columns, name, attributes and
    node references) before they are first modified; ``undo`` copies them
    back and removes every node added since.
    """

    def __init__(self, scene):
        self.scene = scene
        self.ids_before = _scene_node_ids(scene)
        self.saved = []

    def keep(self, node):
        """Remember ``node`` as it is now (once; nodes added in this step need nothing)."""
        if node is None or any(node is kept for kept, _ in self.saved):
            return
        if node.GetScene() is self.scene and node.GetID() not in self.ids_before:
            return
        copy = node.CreateNodeInstance()
        copy.Copy(node)
        self.saved.append((node, copy))

    def keep_with_display(self, node):
        self.keep(node)
        if hasattr(node, "GetNumberOfDisplayNodes"):
            for n in range(node.GetNumberOfDisplayNodes()):
                self.keep(node.GetNthDisplayNode(n))

    def undo(self):
        for node, copy in reversed(self.saved):
            node.Copy(copy)
        _remove_nodes_added_since(self.scene, self.ids_before)


@contextlib.contextmanager
def _scene_transaction(scene):
    """Batch-process ``scene``; if the block raises, undo every change it made (``_SceneUndo``) and re-raise."""
    undo = _SceneUndo(scene)
    scene.StartState(scene.BatchProcessState)
    try:
        yield undo
    except BaseException:
        with _vtk_messages_silenced():
            undo.undo()
        raise
    finally:
        scene.EndState(scene.BatchProcessState)


def _perfusion_key(sequences):
    """ID of the (first) perfusion sequence, which tags the outputs computed from it (None outside a scene)."""
    return sequences[0].GetID() if sequences else None


def _tag(node, role, perfusion_key):
    node.SetAttribute(OUTPUT_ROLE_ATTRIBUTE, role)
    node.SetAttribute(PERFUSION_NODE_ATTRIBUTE, perfusion_key or "")


def _tagged_nodes(scene, class_name, role, perfusion_key):
    if not perfusion_key:
        return []
    collection = scene.GetNodesByClass(class_name)
    nodes = [collection.GetItemAsObject(n) for n in range(collection.GetNumberOfItems())]
    return [node for node in nodes if node.GetAttribute(OUTPUT_ROLE_ATTRIBUTE) == role
            and node.GetAttribute(PERFUSION_NODE_ATTRIBUTE) == perfusion_key]


def find_output_node(scene, perfusion_nodes, role):
    """The output node an earlier ``quantify_nodes`` run on the same perfusion input published, or None.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to search.
    perfusion_nodes : vtkMRMLSequenceNode, vtkMRMLSequenceBrowserNode, or a list of them
        The perfusion input as given to ``quantify_nodes``; its first sequence
        identifies the outputs.
    role : str
        One of ``OUTPUT_ROLE_CLASSES``: ``"mbf"``, ``"bullseye"``, ``"segments"``,
        ``"aif_table"``, ``"aif_chart"`` or ``"fit_quality"``.

    Returns
    -------
    vtkMRMLNode or None
        The node tagged with that role (``OUTPUT_ROLE_ATTRIBUTE``) and
        sequence ID (``PERFUSION_NODE_ATTRIBUTE``).
    """
    _require_scene(scene)
    if role not in OUTPUT_ROLE_CLASSES:
        raise AIAIFInputError("Unknown output role {!r}; use one of {}.".format(role, ", ".join(OUTPUT_ROLE_CLASSES)))
    found = _tagged_nodes(scene, OUTPUT_ROLE_CLASSES[role], role, _perfusion_key(_perfusion_sequences(perfusion_nodes)))
    return found[0] if found else None


def _checked_outputs(scene, outputs):
    """``outputs`` as {role: node}, each node of its role's class and of ``scene`` (or of none yet)."""
    if outputs is None:
        return {}
    if not isinstance(outputs, dict):
        raise AIAIFInputError("outputs must be a dict of role -> node (roles {}); pass e.g. {{'mbf': volume_node}} "
                              "or None.".format(", ".join(OUTPUT_ROLE_CLASSES)))
    checked = {}
    for role, node in outputs.items():
        if role not in OUTPUT_ROLE_CLASSES:
            raise AIAIFInputError("Unknown output role {!r}; use one of {}.".format(
                role, ", ".join(OUTPUT_ROLE_CLASSES)))
        if node is None:
            continue
        class_name = OUTPUT_ROLE_CLASSES[role]
        if (not hasattr(node, "IsA") or not node.IsA(class_name) or node.IsA("vtkMRMLLabelMapVolumeNode")):
            raise AIAIFInputError("The {} output node must be a {}, got {}; choose a node of that class or leave "
                                  "the output to be created.".format(role, class_name, _described(node)))
        if node.GetScene() is not None and node.GetScene() is not scene:
            raise AIAIFInputError("The {} output node {} belongs to another scene; choose a node of this scene or "
                                  "leave the output to be created.".format(role, _described(node)))
        twice = [other for other, given in checked.items() if given is node]
        if twice:
            raise AIAIFInputError("The node {} is given for both the {} and the {} output; give each output its own "
                                  "node.".format(_described(node), twice[0], role))
        checked[role] = node
    return checked


def _output_for_role(scene, undo, role, given, perfusion_key, name_prefix):
    """The node of one output role: the one given, else the one tagged by an earlier run, else a new one.

    ``given`` maps every role to the node given for it (if any); a node given
    for another role is not reused for this one.
    """
    class_name = OUTPUT_ROLE_CLASSES[role]
    node = given.get(role)
    if node is None:
        taken = [other for other in given.values() if other is not None]
        found = [candidate for candidate in _tagged_nodes(scene, class_name, role, perfusion_key)
                 if not any(candidate is other for other in taken)]
        node = found[0] if found else None
    if node is None:
        node = getattr(slicer, class_name)()
        node.SetName("{} {}".format(name_prefix, OUTPUT_NAME_SUFFIXES[role]))
        scene.AddNode(node)
    else:
        undo.keep_with_display(node)
        if node.GetScene() is None:
            scene.AddNode(node)
    _tag(node, role, perfusion_key)
    return node


def _table_columns(columns):
    """Table columns ready for ``segments_table_node``: a column of flags with gaps (None) becomes text."""
    ready = {}
    for name, values in columns.items():
        values = list(values)
        present = [value for value in values if value is not None]
        if len(present) < len(values):
            if all(isinstance(value, (bool, np.bool_)) for value in present):
                values = ["" if value is None else ("true" if value else "false") for value in values]
            elif all(isinstance(value, (int, float, np.integer, np.floating)) for value in present):
                values = [np.nan if value is None else float(value) for value in values]
            else:
                values = ["" if value is None else str(value) for value in values]
        ready[name] = values
    return ready


def _aif_table(scene, result, node):
    """Fill the AIF table: time (s) and the curves of ``AIF_CURVES`` (mM)."""
    mode = result.summary["parameters"]["aif_mode"]
    columns = {AIF_TIME_COLUMN: np.asarray(result.aif["time_s"], dtype=float)}
    titles = {AIF_TIME_COLUMN: "Time"}
    for column, key, title, _, _ in AIF_CURVES:
        columns[column] = np.asarray(result.aif[key], dtype=float)
        titles[column] = title.format(pipeline.AIF_MODE_LABELS[mode])
    units = dict.fromkeys(columns, "mM")
    units[AIF_TIME_COLUMN] = "s"
    return segments_table_node(scene, columns, node=node, units=units, titles=titles)


def _aif_chart(scene, undo, chart, table, perfusion_key):
    """Point one tagged plot series per curve of the AIF table at it and show them all in ``chart``."""
    titles = {column: table.GetColumnTitle(column) for column, _, _, _, _ in AIF_CURVES}
    disabled = chart.StartModify()
    chart.SetTitle("AIF and myocardium")
    chart.SetXAxisTitle("Time (s)")
    chart.SetYAxisTitle("Concentration (mM)")
    chart.SetLegendVisibility(True)
    series_nodes = []
    for column, _, _, colour, dashed in AIF_CURVES:
        found = [node for node in _tagged_nodes(scene, "vtkMRMLPlotSeriesNode", AIF_SERIES_ROLE, perfusion_key)
                 if node.GetAttribute(CURVE_ATTRIBUTE) == column]
        if found:
            series = found[0]
            undo.keep(series)
        else:
            series = slicer.vtkMRMLPlotSeriesNode()
            scene.AddNode(series)
        _tag(series, AIF_SERIES_ROLE, perfusion_key)
        series.SetAttribute(CURVE_ATTRIBUTE, column)
        series.SetName(titles[column])
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(AIF_TIME_COLUMN)
        series.SetYColumnName(column)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
        series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleDash if dashed
                            else slicer.vtkMRMLPlotSeriesNode.LineStyleSolid)
        series.SetColor(*colour)
        series_nodes.append(series)
    referenced = {chart.GetNthPlotSeriesNodeID(n) for n in range(chart.GetNumberOfPlotSeriesNodes())}
    for series in series_nodes:
        if series.GetID() not in referenced:
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.EndModify(disabled)
    return chart


def quantify_nodes(scene, perfusion_nodes, segmentation_node, rv_insertion_node=None, parameters=None,
                   blood_pool_segment_id=None, myocardium_segment_id=None, frame_interval_s=None,
                   outputs=None, fit_quality=False, name_prefix=None, progress=None):
    """Quantify a study from its nodes and publish the results as nodes: the one path of every caller.

    Steps: the study is built (``study_from_nodes``) and its RV insertion
    points checked against its slices (``check_rv_insertion_points``);
    ``pipeline.quantify_study`` runs; only then are the output nodes published,
    as one transaction: if anything raises before or during publishing, or
    the progress callback raises (a cancel), the scene is exactly as it was
    (nodes added are removed, nodes updated are restored) and the exception
    propagates unchanged.

    Each output node is, in this order: the node given for its role in
    ``outputs``; else the node an earlier run on the same perfusion input
    published (tagged with ``OUTPUT_ROLE_ATTRIBUTE`` = role and
    ``PERFUSION_NODE_ATTRIBUTE`` = ID of the first perfusion sequence); else a
    new node named ``"<name_prefix> <suffix>"`` (``OUTPUT_NAME_SUFFIXES``).  So
    re-running updates the nodes (also the plot series and the MBF colour
    table) and never duplicates them.  Every output node is tagged.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to publish into (``slicer.mrmlScene`` in Slicer).
    perfusion_nodes : vtkMRMLSequenceNode or vtkMRMLSequenceBrowserNode, or a list of them
        The perfusion volume sequence, or one single-slice sequence per slice
        (see ``study_from_nodes``).
    segmentation_node : vtkMRMLSegmentationNode
        Segmentation with the LV blood pool and myocardium (not modified).
    rv_insertion_node : vtkMRMLMarkupsNode, optional
        RV insertion points (optional; ``check_rv_insertion_points``).
    parameters : pipeline.QuantificationParameters, optional
        Choices of the quantification; the paper's defaults when omitted.
    blood_pool_segment_id, myocardium_segment_id : str, optional
        Segment IDs; by default the segments named ``LV blood pool`` and
        ``Myocardium`` (case-insensitive).
    frame_interval_s : float, optional
        Time between frames, s, for sequences indexed by frame number.
    outputs : dict of str -> vtkMRMLNode, optional
        Existing nodes to update, by role: ``"mbf"``, ``"bullseye"`` and
        ``"fit_quality"`` (vtkMRMLScalarVolumeNode), ``"segments"`` and ``"aif_table"``
        (vtkMRMLTableNode), ``"aif_chart"`` (vtkMRMLPlotChartNode).  A role
        left out or None is found or created as above.
    fit_quality : bool, optional
        Also publish the per-pixel fit NRMSE map (also done when ``outputs``
        names a ``"fit_quality"`` node).
    name_prefix : str, optional
        Prefix of the names of new nodes; the (first) sequence's name by default.
    progress : callable, optional
        ``progress(fraction_0_to_1, message)``: 0-0.1 building the study,
        0.1-0.95 the quantification (the fit reports after every iteration),
        0.95-1 publishing; 1.0 is reported last, once everything is published.
        If it raises (e.g. ``errors.AIAIFCancelled``), the run stops there.

    Returns
    -------
    QuantifiedNodes
        The result, the study and the published nodes.

    Raises
    ------
    AIAIFInputError
        For unusable input nodes (naming the node: see ``study_from_nodes``
        and ``check_rv_insertion_points``), parameters, or an ``outputs`` node
        of the wrong class or of another scene.  The scene is unchanged.
    """
    _require_scene(scene)
    sequences = _perfusion_sequences(perfusion_nodes)
    given = _checked_outputs(scene, outputs)
    with_fit_quality = bool(fit_quality) or "fit_quality" in given
    study = study_from_nodes(sequences if len(sequences) > 1 else sequences[0], segmentation_node,
                             rv_insertion_node, blood_pool_segment_id, myocardium_segment_id, frame_interval_s,
                             progress=_scaled_progress(progress, 0.0, 0.1))
    check_rv_insertion_points(study, rv_insertion_node)
    result = pipeline.quantify_study(study, parameters, progress=_scaled_progress(progress, 0.1, 0.95))

    key = _perfusion_key(sequences)
    prefix = str(name_prefix) if name_prefix else _node_name(sequences[0])
    roles = [role for role in OUTPUT_ROLE_CLASSES if role != "fit_quality" or with_fit_quality]
    with _scene_transaction(scene) as undo:
        _report(progress, 0.95, "Showing the results")
        nodes = {role: _output_for_role(scene, undo, role, given, key, prefix) for role in roles}
        mbf_volume_node(scene, result.mbf_ml_min_g, study.ijk_to_ras, node=nodes["mbf"])
        _report(progress, 0.955, "Showing the MBF bullseye")
        bullseye_volume_node(scene, result.segments["mbf_mean"],
                             bullseye_centre_beside(study.ijk_to_ras, study.myocardium_mask.shape),
                             node=nodes["bullseye"])
        _report(progress, 0.96, "Showing the segment table")
        segments_table_node(scene, _table_columns(result.segments), node=nodes["segments"],
                            units={column: "mL/min/g" for column in MBF_COLUMNS if column in result.segments})
        _report(progress, 0.97, "Showing the AIF")
        _aif_table(scene, result, nodes["aif_table"])
        _aif_chart(scene, undo, nodes["aif_chart"], nodes["aif_table"], key)
        if with_fit_quality:
            _report(progress, 0.98, "Showing the fit quality")
            fit_quality_volume_node(scene, result.fit_nrmse, study.ijk_to_ras, node=nodes["fit_quality"])
        _report(progress, 1.0, "Done")
    return QuantifiedNodes(result=result, study=study, mbf_volume=nodes["mbf"], segments_table=nodes["segments"],
                           aif_table=nodes["aif_table"], aif_chart=nodes["aif_chart"],
                           fit_quality_volume=nodes.get("fit_quality"), bullseye_volume=nodes["bullseye"])


# ---------------------------------------------------------------------------
# The panel's ROI tools: frames, the frame shown, the ROI segments
# ---------------------------------------------------------------------------

def sequence_frames(sequence_node):
    """Voxel values of every frame of a volume sequence.

    Parameters
    ----------
    sequence_node : vtkMRMLSequenceNode or vtkMRMLSequenceBrowserNode
        Sequence of scalar volumes on one grid (a browser stands for its
        master sequence).

    Returns
    -------
    frames : numpy.ndarray, shape (n_frames, n_slices, rows, columns)
        Signal of every frame (at least float32).
    ijk_to_ras : numpy.ndarray, shape (4, 4)
        Voxel index (i, j, k, 1) to RAS (mm) matrix of the frames.

    Raises
    ------
    AIAIFInputError
        For a sequence that is not one of scalar volumes on one grid
        (naming the sequence).
    """
    (sequence_node,) = _perfusion_sequences(sequence_node)
    return _frames_of(sequence_node, None)


def show_sequence_frame(sequence_node, index):
    """Show one frame of a sequence in the views: select it in the sequence's browser and return the proxy volume.

    A browser (with its proxy node, made by Slicer's Sequences logic) is
    created when the sequence has none, as loading a sequence file does.

    Parameters
    ----------
    sequence_node : vtkMRMLSequenceNode
        A volume sequence in a scene.
    index : int
        Frame index, 0-based.

    Returns
    -------
    vtkMRMLScalarVolumeNode
        The browser's proxy volume, now holding frame ``index``.

    Raises
    ------
    AIAIFInputError
        For a sequence outside a scene or an index outside its frames.
    """
    sequence_node = _require_node(sequence_node, "vtkMRMLSequenceNode", "perfusion series",
                                  "load the perfusion frames as a volume sequence")
    scene = sequence_node.GetScene()
    n_frames = sequence_node.GetNumberOfDataNodes()
    if scene is None or not 0 <= int(index) < n_frames:
        raise AIAIFInputError("Frame {} of sequence {!r} cannot be shown (it has {} frames and must be in a scene); "
                              "choose a frame of a loaded sequence.".format(index, _node_name(sequence_node), n_frames))
    browser = sequence_browser_node(sequence_node)
    if browser is None:
        browser = slicer.vtkMRMLSequenceBrowserNode()
        browser.SetName(_node_name(sequence_node) + " browser")
        scene.AddNode(browser)
        browser.SetAndObserveMasterSequenceNodeID(sequence_node.GetID())
    browser.SetSelectedItemNumber(int(index))
    logic, private_logic = _sequences_logic(scene)
    try:
        logic.UpdateProxyNodesFromSequences(browser)
    finally:
        if private_logic:  # a logic made for this call must not keep observing the scene
            logic.SetMRMLScene(None)
    proxy = browser.GetProxyNode(sequence_node)
    if proxy is None:
        raise RuntimeError("Slicer's Sequences logic made no proxy node for sequence {!r}.".format(
            _node_name(sequence_node)))
    return proxy


def roi_segmentation_node(scene, reference_volume_node, name="ROIs"):
    """A new, empty segmentation for drawing the ROIs on a reference volume's grid.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to add it to.
    reference_volume_node : vtkMRMLScalarVolumeNode
        Volume whose geometry the segments' labelmaps take (the peak frame).
    name : str, optional
        Node name.

    Returns
    -------
    vtkMRMLSegmentationNode
        With display nodes; its segments are added by ``ensure_roi_segments``.
    """
    _require_scene(scene)
    reference_volume_node = _require_node(reference_volume_node, "vtkMRMLScalarVolumeNode", "reference volume",
                                          "show a frame of the perfusion series first")
    segmentation = slicer.vtkMRMLSegmentationNode()
    segmentation.SetName(name)
    scene.AddNode(segmentation)
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    return segmentation


def ensure_roi_segments(segmentation_node, blood_pool_segment_id="", myocardium_segment_id=""):
    """The IDs of the two ROI segments, adding an empty segment for each one missing.

    A segment is found by the ID given (if it exists), else by its name
    (``LV blood pool``, ``Myocardium``, case-insensitive), else it is added
    empty with its name and colour (``simulation.SEGMENT_COLOURS``) for the
    user to draw.

    Parameters
    ----------
    segmentation_node : vtkMRMLSegmentationNode
        Segmentation to complete (modified only by adding missing segments).
    blood_pool_segment_id, myocardium_segment_id : str, optional
        IDs chosen so far ("" for none).

    Returns
    -------
    tuple of str
        (blood-pool segment ID, myocardium segment ID).
    """
    from .simulation import SEGMENT_COLOURS

    segmentation_node = _require_node(segmentation_node, "vtkMRMLSegmentationNode", "segmentation",
                                      "choose or create a segmentation")
    segmentation = segmentation_node.GetSegmentation()
    ids = []
    for given, name in ((blood_pool_segment_id, K.LV_BLOOD_POOL_SEGMENT_NAME),
                        (myocardium_segment_id, K.MYOCARDIUM_SEGMENT_NAME)):
        if given and segmentation.GetSegment(given) is not None:
            ids.append(given)
            continue
        named = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())
                 if segmentation.GetNthSegment(n).GetName().strip().lower() == name.lower()]
        ids.append(named[0] if named else segmentation.AddEmptySegment("", name, list(SEGMENT_COLOURS[name])))
    return tuple(ids)


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

    The files are loaded into a private scene (``load_study_files``) and
    quantified there by ``quantify_nodes``, the same path the Slicer module
    takes; the MBF volume node it publishes is written as
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
        Point list (``.mrk.json``) with the RV insertion points (optional).
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
    output_dir = os.fspath(output_dir)
    if not os.path.isdir(output_dir):
        raise AIAIFInputError("The output directory {} does not exist; create it first.".format(output_dir))
    scene = slicer.vtkMRMLScene()
    nodes = load_study_files(scene, perfusion_path, segmentation_path, rv_insertion_path,
                             progress=_scaled_progress(progress, 0.0, 0.05))
    blood_pool_id = find_segment_id(nodes.segmentation, blood_pool_segment_name or K.LV_BLOOD_POOL_SEGMENT_NAME)
    myocardium_id = find_segment_id(nodes.segmentation, myocardium_segment_name or K.MYOCARDIUM_SEGMENT_NAME)
    quantified = quantify_nodes(scene, nodes.sequence, nodes.segmentation, nodes.rv_insertion, parameters,
                                blood_pool_id, myocardium_id, frame_interval_s,
                                progress=_scaled_progress(progress, 0.05, 0.95))
    _report(progress, 0.95, "Writing the results")
    save_volume_node(quantified.mbf_volume, os.path.join(output_dir, pipeline.OUTPUT_FILES["mbf"]))
    pipeline.write_result_files(quantified.result, output_dir, study_name=nodes.sequence.GetName())
    _report(progress, 1.0, "Done")
    return quantified.result

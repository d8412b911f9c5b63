"""The panel's helpers: the frame shown in the views (sequence browser) and the ROI segmentation to draw."""

import slicer

from .. import constants as K
from ..errors import AIAIFInputError
from .nodes import _node_name, _require_node, _require_scene


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
    from ..simulation import SEGMENT_COLOURS

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

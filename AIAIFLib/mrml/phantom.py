"""The phantom as nodes, made in memory without files (Slicer's Sample Data has no pynrrd)."""

import numpy as np
import slicer
import vtk

from .display import ensure_roi_segments, roi_segmentation_node, show_sequence_frame
from .files import StudyNodes
from .nodes import (_fill_volume_sequence, _remove_nodes_added_since, _require_scene, _scene_node_ids, _vtk_matrix,
                    _voxels)
from .segmentation import _ensure_segmentation_converters


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
    _ensure_segmentation_converters()
    before = _scene_node_ids(scene)
    try:
        sequence = slicer.vtkMRMLSequenceNode()
        sequence.SetName(name)
        _fill_volume_sequence(sequence, frames, phantom.frame_times_s, ijk_to_ras)
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

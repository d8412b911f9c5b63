"""Slicer files in and out: a study's files read into nodes by Slicer's storage nodes, volumes saved.

Each file is read by the storage node Slicer itself uses, attached to the new
node so that Slicer can save it again.  A load that fails removes every node
it added.
"""

import os
from typing import NamedTuple, Optional

import slicer

from ..errors import AIAIFInputError
from ..file_checks import (PERFUSION_FILE, RV_INSERTION_FILE, SEGMENTATION_FILE, check_study_files,
                           check_volume_file, existing_file, is_dicom_file, is_dicom_folder)
from .nodes import (_node_name, _remove_nodes_added_since, _report, _require_node, _require_scene, _scaled_progress,
                    _scene_node_ids, _vtk_messages_silenced)
from .segmentation import _ensure_segmentation_converters


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
    sequence : vtkMRMLSequenceNode or list of vtkMRMLSequenceNode
        Volume sequence of the perfusion frames; from a DICOM folder, one
        single-slice sequence per slice (``mrml.dicom``).
    segmentation : vtkMRMLSegmentationNode
        Segmentation with the LV blood pool and myocardium.
    rv_insertion : vtkMRMLMarkupsFiducialNode or None
        RV insertion points, if a file was given.
    """

    sequence: object
    segmentation: object
    rv_insertion: Optional[object] = None


def _name_from_path(path):
    base = os.path.basename(path)
    for ending in _FILE_ENDINGS:
        if base.lower().endswith(ending):
            return base[:-len(ending)] or base
    return base


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


def load_study_files(scene, perfusion_path, segmentation_path, rv_insertion_path=None, progress=None):
    """Load a perfusion study's files into ``scene`` with Slicer's storage nodes.

    Each file is read by the storage node Slicer itself uses, which is attached
    to the new node (so Slicer can save it again):

    * the volume sequence (``.seq.nrrd``) by ``vtkMRMLVolumeSequenceStorageNode``
      with Slicer's default settings (a left-handed grid is loaded with its
      slice order reversed; RAS positions are kept);
    * or a DICOM folder of the perfusion series, by pydicom, as one
      single-slice sequence per slice (``mrml.dicom.load_dicom_study``;
      these nodes have no storage node);
    * the segmentation (``.seg.nrrd``) by ``vtkMRMLSegmentationStorageNode``,
      or a DICOM SEG by highdicom (``mrml.dicom.load_dicom_segmentation``);
    * the point list (``.mrk.json``, or legacy ``.fcsv``) by
      ``vtkMRMLMarkupsJsonStorageNode`` (``vtkMRMLMarkupsFiducialStorageNode``).

    Nodes are named after their files (``perfusion.seq.nrrd`` -> ``perfusion``),
    or as the point list file names itself.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to add the nodes to (``slicer.mrmlScene`` in Slicer).
    perfusion_path : str or os.PathLike
        Volume sequence of the perfusion frames, or a folder of its DICOM images.
    segmentation_path : str or os.PathLike
        Segmentation with the LV blood pool and myocardium segments (``.seg.nrrd`` or DICOM SEG).
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
        For a missing, empty or damaged file, one of the wrong kind, a
        sequence whose frame times do not increase strictly, or one Slicer
        cannot read.  The files are checked before Slicer's readers see them
        (``file_checks``).  Every node added to ``scene`` until then is
        removed again.
    """
    _require_scene(scene)
    dicom_perfusion = is_dicom_folder(perfusion_path)
    perfusion_path = os.fspath(perfusion_path) if dicom_perfusion else existing_file(perfusion_path, *PERFUSION_FILE)
    segmentation_path = existing_file(segmentation_path, *SEGMENTATION_FILE)
    dicom_segmentation = is_dicom_file(segmentation_path)
    markups_storage = None
    if rv_insertion_path is not None:
        rv_insertion_path = existing_file(rv_insertion_path, *RV_INSERTION_FILE)
        lower = rv_insertion_path.lower()
        markups_storage = next((storage for ending, storage in _MARKUPS_STORAGE_CLASSES if lower.endswith(ending)),
                               None)
        if markups_storage is None:
            raise AIAIFInputError("The RV insertion point list {} is neither a .mrk.json nor a .fcsv file; "
                                  "save the points from Slicer as a .mrk.json file.".format(rv_insertion_path))
    # Slicer's readers are C++ and some abort the process on a damaged file: check each one first.
    check_study_files(perfusion_path, segmentation_path, rv_insertion_path)

    _ensure_segmentation_converters()  # so that the segmentation gets Slicer's conversion parameters
    before = _scene_node_ids(scene)
    try:
        _report(progress, 0.0, "Reading the perfusion sequence")
        if dicom_perfusion:
            from .dicom import load_dicom_study
            sequence = load_dicom_study(scene, perfusion_path, progress=_scaled_progress(progress, 0.0, 0.6))
        else:
            sequence = _read_into_new_node(scene, "vtkMRMLSequenceNode", "vtkMRMLVolumeSequenceStorageNode",
                                           perfusion_path, "perfusion volume sequence",
                                           "check that it is a 4-D NRRD volume sequence saved by Slicer")
            if sequence.GetNumberOfDataNodes() == 0:
                raise AIAIFInputError("The perfusion volume sequence {} holds no frames; pass a 4-D NRRD volume "
                                      "sequence.".format(perfusion_path))
        _report(progress, 0.6, "Reading the segmentation")
        if dicom_segmentation:
            from .dicom import load_dicom_segmentation
            segmentation = load_dicom_segmentation(scene, segmentation_path)
        else:
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


def _nrrd_path(path, what):
    path = os.fspath(path)
    if not path.lower().endswith(".nrrd"):
        raise AIAIFInputError("The {} file name {!r} must end in .nrrd; rename it.".format(what,
                                                                                          os.path.basename(path)))
    return path


def _write_node(node, storage, path, what):
    """Write ``node`` to ``path`` (``.nrrd``, gzip) with ``storage``, a Slicer storage node; the scene is unchanged."""
    path = _nrrd_path(path, what)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise AIAIFInputError("The output directory {} does not exist; create it before saving the {}."
                              .format(directory, what))
    storage.SetFileName(path)
    storage.SetUseCompression(1)
    with _vtk_messages_silenced():
        written = storage.WriteData(node)
    if written != 1:
        raise AIAIFInputError("Slicer could not write the {} {!r} to {}; check that the directory is writable and "
                              "has free space.".format(what, _node_name(node), path))
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
    return _write_node(node, slicer.vtkMRMLVolumeArchetypeStorageNode(), path, "volume")


def save_sequence_node(node, path):
    """Write a volume sequence node to a ``.seq.nrrd`` file with Slicer's ``vtkMRMLVolumeSequenceStorageNode``.

    Parameters
    ----------
    node : vtkMRMLSequenceNode
        Sequence of scalar volumes on one grid.
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
        For a node without volumes, a wrong file name, a missing directory or
        a failed write.
    """
    node = _require_node(node, "vtkMRMLSequenceNode", "sequence to save", "pass a volume sequence node")
    if node.GetNumberOfDataNodes() == 0:
        raise AIAIFInputError("The sequence {!r} has no volumes; fill it before saving.".format(_node_name(node)))
    return _write_node(node, slicer.vtkMRMLVolumeSequenceStorageNode(), path, "sequence")


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
        For a missing, damaged (``file_checks.check_volume_file``) or
        unreadable file (the scene is left as it was).
    """
    path = existing_file(path, "volume", "pass an existing .nrrd file")
    check_volume_file(path)
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

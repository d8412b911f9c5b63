"""DICOM studies as nodes: a perfusion folder as single-slice sequences, a DICOM SEG as a segmentation.

The command line reads DICOM with ``dicom_io`` (pydicom; highdicom for SEG)
and puts it into the scene as the nodes Slicer's own DICOM loading gives:
one volume sequence per slice, indexed by acquisition time in s, which
``study_from_nodes`` stacks by slice position.  What the header says
travels with the nodes as attributes (``DICOM_ATTRIBUTES``), so the study
built from them carries it:

* the acquisition values (``PerfusionStudy.header``), which
  ``acquisition.resolve_acquisition`` uses unless an option is given;
* how many leading frames the header marks as proton-density frames;
* the reader's notes and the image of each slice a DICOM output refers to.

Inside Slicer the module keeps using Slicer's own DICOM loading; those nodes
carry no such attributes, and the study then has the images' clues only.
"""

import json

import numpy as np
import slicer
import vtk

from ..errors import AIAIFInputError
from .nodes import _image_from_array, _remove_nodes_added_since, _report, _require_scene, _scene_node_ids, _vtk_matrix
from .segmentation import _ensure_segmentation_converters

#: Attributes the DICOM reader sets on each slice's sequence node.
HEADER_ATTRIBUTE = "AIAIF.AcquisitionHeader"
PROTON_DENSITY_ATTRIBUTE = "AIAIF.HeaderProtonDensityFrames"
NOTES_ATTRIBUTE = "AIAIF.DicomNotes"
REFERENCE_IMAGE_ATTRIBUTE = "AIAIF.DicomReferenceImage"
DICOM_ATTRIBUTES = (HEADER_ATTRIBUTE, PROTON_DENSITY_ATTRIBUTE, NOTES_ATTRIBUTE, REFERENCE_IMAGE_ATTRIBUTE)

#: Segment colours of a DICOM SEG's segments by name (Slicer's defaults otherwise).
_SEGMENT_COLOURS = {"lv blood pool": (0.85, 0.25, 0.25), "myocardium": (0.95, 0.85, 0.35)}


def dicom_perfusion_nodes(scene, perfusion, name="perfusion", progress=None):
    """Add one volume sequence per slice of a DICOM perfusion study to ``scene``.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to add the sequences to.
    perfusion : dicom_io.series.DicomPerfusion
        From ``dicom_io.series.read_perfusion_folder``.
    name : str, optional
        Prefix of the sequences' names (``"<name> slice 1"``, ...).
    progress : callable, optional
        ``progress(fraction_0_to_1, message)``.

    Returns
    -------
    list of vtkMRMLSequenceNode
        One per slice, in order along the slice normal; index ``time`` in s;
        the frames float32 on the slice's own geometry.  If anything fails,
        every node added is removed.
    """
    _require_scene(scene)
    header = json.dumps(perfusion.header, sort_keys=True)
    notes = json.dumps(perfusion.notes, sort_keys=True)
    before = _scene_node_ids(scene)
    sequences = []
    try:
        for number, item in enumerate(perfusion.slices):
            _report(progress, number / len(perfusion.slices), "Building slice {} of {}".format(
                number + 1, len(perfusion.slices)))
            sequence = slicer.vtkMRMLSequenceNode()
            sequence.SetName(scene.GenerateUniqueName("{} slice {}".format(name, number + 1)))
            sequence.SetIndexName("time")
            sequence.SetIndexUnit("s")
            sequence.SetIndexType(slicer.vtkMRMLSequenceNode.NumericIndex)
            frame = slicer.vtkMRMLScalarVolumeNode()
            frame.SetIJKToRASMatrix(_vtk_matrix(item.ijk_to_ras))
            for time_s, values in zip(item.times_s, item.frames):
                frame.SetAndObserveImageData(_image_from_array(values[None].astype(np.float32), vtk.VTK_FLOAT))
                sequence.SetDataNodeAtValue(frame, repr(float(time_s)))  # copied; repr reads back exactly
            flags = list(item.header_proton_density) + [False]
            first_saturated = flags.index(False) if flags.index(False) < len(item.paths) else 0
            for attribute, value in ((HEADER_ATTRIBUTE, header), (NOTES_ATTRIBUTE, notes),
                                     (PROTON_DENSITY_ATTRIBUTE, str(perfusion.header_proton_density_frames)),
                                     (REFERENCE_IMAGE_ATTRIBUTE, item.paths[first_saturated])):
                sequence.SetAttribute(attribute, value)
            scene.AddNode(sequence)
            sequences.append(sequence)
    except BaseException:
        _remove_nodes_added_since(scene, before)
        raise
    _report(progress, 1.0, "Slices built")
    return sequences


def dicom_attributes(sequences):
    """What the DICOM reader attached to a study's sequences (``DICOM_ATTRIBUTES``), for the study.

    Parameters
    ----------
    sequences : list of vtkMRMLSequenceNode
        The study's sequences, in stack order.

    Returns
    -------
    header : dict
        Acquisition values (empty without DICOM attributes).
    proton_density_frames : int or None
        Leading frames the header marks as proton-density frames (the least
        over the sequences); None without a header clue.
    notes : dict or None
        The reader's notes, with ``reference_images`` (one per sequence), or None.
    """
    header, counts, notes, references = {}, [], None, []
    for sequence in sequences:
        text = sequence.GetAttribute(HEADER_ATTRIBUTE)
        if text and not header:
            header = json.loads(text)
        count = sequence.GetAttribute(PROTON_DENSITY_ATTRIBUTE)
        if count:
            counts.append(int(count))
        text = sequence.GetAttribute(NOTES_ATTRIBUTE)
        if text and notes is None:
            notes = json.loads(text)
        references.append(sequence.GetAttribute(REFERENCE_IMAGE_ATTRIBUTE))
    if notes is not None and all(references):
        notes["reference_images"] = references
    return header, (min(counts) if counts else None), notes


def segmentation_node_from_masks(scene, segments, ijk_to_ras, name="segmentation"):
    """A segmentation node holding masks as binary labelmap segments on the grid of ``ijk_to_ras``.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to add it to.
    segments : list of (str, numpy.ndarray of bool, shape (k, j, i))
        Segment name and mask.
    ijk_to_ras : numpy.ndarray, shape (4, 4)
        Voxel (i, j, k, 1) to RAS mm of the masks.
    name : str, optional
        Node name.

    Returns
    -------
    vtkMRMLSegmentationNode
    """
    from .phantom import _oriented_labelmap, _right_handed

    _require_scene(scene)
    _ensure_segmentation_converters()
    before = _scene_node_ids(scene)
    try:
        node = slicer.vtkMRMLSegmentationNode()
        node.SetName(scene.GenerateUniqueName(name))
        scene.AddNode(node)
        node.CreateDefaultDisplayNodes()
        matrix, masks = _right_handed(ijk_to_ras, [mask for _, mask in segments])
        for (label, _), mask in zip(segments, masks):
            segment_id = node.GetSegmentation().AddEmptySegment("", label,
                                                                _SEGMENT_COLOURS.get(label.strip().lower(),
                                                                                     (0.5, 0.5, 0.5)))
            if not slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                    _oriented_labelmap(mask, matrix), node, segment_id):
                raise AIAIFInputError("Slicer could not make the segment {!r} of segmentation {!r}; check the "
                                      "segmentation file.".format(label, name))
    except BaseException:
        _remove_nodes_added_since(scene, before)
        raise
    return node


def load_dicom_study(scene, folder, progress=None):
    """Read a DICOM perfusion folder into single-slice sequences of ``scene`` (``dicom_perfusion_nodes``).

    Raises
    ------
    AIAIFInputError
        For anything ``dicom_io.series.read_perfusion_folder`` refuses.
    """
    import os

    from ..dicom_io.series import read_perfusion_folder

    _report(progress, 0.0, "Reading the DICOM perfusion series")
    perfusion = read_perfusion_folder(folder)
    name = os.path.basename(os.path.normpath(os.fspath(folder))) or "perfusion"
    return dicom_perfusion_nodes(scene, perfusion, name=name, progress=progress)


def load_dicom_segmentation(scene, path):
    """Read a DICOM SEG (highdicom) into a new segmentation node of ``scene``, named after the file."""
    import os

    from ..dicom_io.seg import read_roi_segmentation

    segments, ijk_to_ras = read_roi_segmentation(path)
    if not segments:
        raise AIAIFInputError("The DICOM segmentation {} holds no segments; export it with the LV blood pool and "
                              "myocardium segments.".format(path))
    name = os.path.basename(os.fspath(path))
    return segmentation_node_from_masks(scene, segments, ijk_to_ras, name=name.rsplit(".", 1)[0] or name)

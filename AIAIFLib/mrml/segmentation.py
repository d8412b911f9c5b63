"""Segments of a segmentation node as boolean masks on the frame grid, found by name or ID.

Reading never modifies the user's segmentation: segments are resampled from a
copy held in a private scratch scene, so the segmentation gains no
representation and the user's scene no temporary node.
"""

import numpy as np
import slicer
import vtk

from ..errors import AIAIFInputError
from .nodes import (_ijk_to_ras_of, _node_name, _numpy_matrix, _require_node, _validated_ijk_to_ras,
                    _vtk_matrix, _vtk_messages_silenced, _voxels, short_list)


#: Name of Slicer's binary labelmap segment representation.
BINARY_LABELMAP = "Binary labelmap"


def _segment_names(segmentation):
    return [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]


def _segment_list_text(segmentation):
    return short_list(_segment_names(segmentation))


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
        listed = short_list(["{} ({})".format(i, segmentation.GetSegment(i).GetName()) for i in ids])
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

"""Helpers the MRML tests share: a scene snapshot and builders of input nodes in memory (real MRML, slicer-core)."""

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from AIAIFLib import mrml


def column_values(table_node, name):
    """Values of one table column: a numpy array for numbers, a list of strings for text."""
    column = table_node.GetTable().GetColumnByName(name)
    assert column is not None, name
    if column.IsA("vtkDataArray"):
        return numpy_support.vtk_to_numpy(column).copy()
    return [column.GetValue(row) for row in range(column.GetNumberOfValues())]


def _node_state(node):
    """Everything a user could see of one node, as comparable values."""
    entry = [node.GetID(), node.GetClassName(), node.GetName(),
             tuple((name, node.GetAttribute(name)) for name in sorted(node.GetAttributeNames() or ()))]
    roles = []
    node.GetNodeReferenceRoles(roles)
    entry.append(tuple((role, tuple(node.GetNthNodeReferenceID(role, n)
                                    for n in range(node.GetNumberOfNodeReferences(role)))) for role in roles))
    if node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is not None:
        values, matrix = mrml.volume_node_array(node)
        entry += [values.shape, values.tobytes(), matrix.tobytes()]
    if node.IsA("vtkMRMLScalarVolumeDisplayNode"):
        entry += [node.GetColorNodeID(), node.GetWindow(), node.GetLevel(), node.GetLowerThreshold(),
                  node.GetUpperThreshold(), node.GetApplyThreshold()]
    if node.IsA("vtkMRMLTableNode"):
        table = node.GetTable()
        for c in range(table.GetNumberOfColumns()):
            name = table.GetColumnName(c)
            values = column_values(node, name)
            entry.append((name, node.GetColumnTitle(name), node.GetColumnUnitLabel(name),
                          values.tobytes() if isinstance(values, np.ndarray) else tuple(values)))
    if node.IsA("vtkMRMLPlotChartNode"):
        entry += [node.GetTitle(), node.GetXAxisTitle(), node.GetYAxisTitle()]
    if node.IsA("vtkMRMLPlotSeriesNode"):
        entry += [node.GetXColumnName(), node.GetYColumnName(), tuple(node.GetColor())]
    if node.IsA("vtkMRMLColorTableNode"):
        entry.append(node.GetNumberOfColors())
    if node.IsA("vtkMRMLSegmentationNode"):
        segmentation = node.GetSegmentation()
        entry.append(tuple((segmentation.GetNthSegmentID(n), segmentation.GetNthSegment(n).GetName())
                           for n in range(segmentation.GetNumberOfSegments())))
    if node.IsA("vtkMRMLSequenceNode"):
        for n in range(node.GetNumberOfDataNodes()):
            item = node.GetNthDataNode(n)
            image = item.GetImageData() if item.IsA("vtkMRMLVolumeNode") else None
            scalars = image.GetPointData().GetScalars() if image is not None else None
            entry.append((node.GetNthIndexValue(n), None if scalars is None
                          else numpy_support.vtk_to_numpy(scalars).tobytes()))
    if node.IsA("vtkMRMLMarkupsNode"):
        entry.append(tuple(tuple(node.GetNthControlPointPosition(n)) for n in range(node.GetNumberOfControlPoints())))
    return tuple(entry)


def scene_state(scene):
    """Every node of ``scene`` in order with what a user could see of it: IDs, names, attributes, node
    references (display nodes, plot series, tables), voxels and geometry, display settings, table cells,
    chart and series settings, segments, sequence items and control points."""
    return [_node_state(scene.GetNthNode(n)) for n in range(scene.GetNumberOfNodes())]


def volume_sequence(name, frames, times, ijk_to_ras, scene=None):
    """A volume sequence in memory: one scalar volume per frame (frames [n, k, j, i]), indexed by time in s."""
    sequence = slicer.vtkMRMLSequenceNode()
    sequence.SetName(name)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("s")
    for values, time_s in zip(frames, times):
        volume = slicer.vtkMRMLScalarVolumeNode()
        volume.SetIJKToRASMatrix(mrml.nodes._vtk_matrix(ijk_to_ras))
        volume.SetAndObserveImageData(mrml.nodes._image_from_array(np.asarray(values, np.float32), vtk.VTK_FLOAT))
        sequence.SetDataNodeAtValue(volume, repr(float(time_s)))
    if scene is not None:
        scene.AddNode(sequence)
    return sequence


def per_slice_sequences(scene, frames, frame_times_s, ijk_to_ras, times_by_slice=None, order=None):
    """A series (frames [n, k, j, i] on ``ijk_to_ras``) as one single-slice sequence per slice, named
    ``slice <k>`` and added to ``scene`` in ``order`` (slice order by default), as perfusion DICOM often loads."""
    frames = np.asarray(frames)
    ijk_to_ras = np.asarray(ijk_to_ras, dtype=float)
    sequences = []
    for k in (range(frames.shape[1]) if order is None else order):
        matrix = ijk_to_ras.copy()
        matrix[:3, 3] = ijk_to_ras[:3, 3] + k * ijk_to_ras[:3, 2]
        times = frame_times_s if times_by_slice is None else times_by_slice[k]
        sequences.append(volume_sequence("slice {}".format(k), frames[:, k:k + 1], times, matrix, scene))
    return sequences


def vector_sequence(scene, name, n_frames, dimensions_ijk):
    """A sequence of 3-component (colour) volumes: not a perfusion series."""
    sequence = slicer.vtkMRMLSequenceNode()
    sequence.SetName(name)
    for n in range(n_frames):
        volume = slicer.vtkMRMLVectorVolumeNode()
        image = vtk.vtkImageData()
        image.SetDimensions(*dimensions_ijk)
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 3)
        volume.SetAndObserveImageData(image)
        sequence.SetDataNodeAtValue(volume, str(n))
    scene.AddNode(sequence)
    return sequence


def move_by_transform(scene, node, right_mm, name=None):
    """Put ``node`` under a new linear transform that moves it ``right_mm`` to the right (R)."""
    transform = slicer.vtkMRMLLinearTransformNode()
    if name is not None:
        transform.SetName(name)
    scene.AddNode(transform)
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, float(right_mm))
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())
    return node

"""Small helpers every part of the MRML adapter shares: node checks, matrices, voxel arrays, progress.

Arrays are indexed ``[k, j, i]`` and ``ijk_to_ras`` maps the voxel index
``(i, j, k, 1)`` to RAS millimetres, as in the rest of the package.
"""

import contextlib

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from ..errors import AIAIFInputError


def _report(progress, fraction, message):
    if progress is not None:
        progress(float(fraction), message)


#: The message of the last progress report of a whole run; a stage inside a
#: run reports its own end as ``STAGE_DONE_MESSAGE`` instead.
DONE_MESSAGE = "Done"
STAGE_DONE_MESSAGE = "Finishing"


def _scaled_progress(progress, start, end, message_at=None):
    """A progress callback mapping a stage's 0..1 onto ``start``..``end`` of ``progress`` (None stays None).

    The stage runs inside a larger run, so its own ``"Done"`` becomes
    ``STAGE_DONE_MESSAGE``: only the run says Done, at its end.  If given,
    ``message_at(fraction, message)`` replaces each message of the stage.
    """
    if progress is None:
        return None

    def scaled(fraction, message):
        if message_at is not None:
            message = message_at(float(fraction), message)
        if message == DONE_MESSAGE:
            message = STAGE_DONE_MESSAGE
        return progress(start + (end - start) * float(fraction), message)

    return scaled


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


def _image_from_array(values_kji, vtk_type):
    image = vtk.vtkImageData()
    image.SetDimensions(values_kji.shape[2], values_kji.shape[1], values_kji.shape[0])
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(values_kji).ravel(), deep=True, array_type=vtk_type)
    image.GetPointData().SetScalars(scalars)
    return image


def _fill_volume_sequence(sequence, frames_tkji, frame_times_s, ijk_to_ras):
    """Make ``sequence`` (a ``vtkMRMLSequenceNode``) hold one float32 scalar volume per frame.

    Index name ``time``, unit ``s``, numeric index values the frame times;
    every frame on the grid of ``ijk_to_ras``.  Items it held are removed.
    """
    sequence.RemoveAllDataNodes()
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("s")
    sequence.SetIndexType(slicer.vtkMRMLSequenceNode.NumericIndex)
    frame = slicer.vtkMRMLScalarVolumeNode()
    frame.SetIJKToRASMatrix(_vtk_matrix(ijk_to_ras))
    for time_s, values in zip(np.asarray(frame_times_s, dtype=float), frames_tkji):
        frame.SetAndObserveImageData(_image_from_array(np.asarray(values, dtype=np.float32), vtk.VTK_FLOAT))
        sequence.SetDataNodeAtValue(frame, repr(float(time_s)))  # copied; repr reads back exactly
    return sequence


def _node_name(node):
    return node.GetName() if node.GetName() else node.GetID() or node.GetClassName()


def short_list(names, shown=4):
    """``'a', 'b', 'c', 'd' and 96 more``: at most ``shown`` names of a long list, then the count of the rest.

    Parameters
    ----------
    names : sequence of str
        Names in order.
    shown : int, optional
        How many to show.

    Returns
    -------
    str
        The names quoted and joined with commas, ``none`` for an empty list.
    """
    names = list(names)
    if not names:
        return "none"
    text = ", ".join(repr(name) for name in names[:shown])
    if len(names) > shown:
        text += " and {} more".format(len(names) - shown)
    return text


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

"""RV insertion points: read from a point list node and checked against the study's slices."""

import numpy as np
import slicer

from .. import segments
from ..errors import AIAIFInputError
from .nodes import _node_name, _require_node


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

"""The perfusion series as arrays: the frames of volume sequences, their times, a stack of single slices.

Perfusion DICOM often loads as one sequence per slice; ``_slice_stack``
orders a list of them by their position along the slice normal (not by list
order).  Frame times come from the sequence index, a frame interval, or the
frame labels of Slicer's DICOM multi-volume import (``frame_times_s``).
"""

from typing import NamedTuple

import numpy as np

from ..aif import MIN_AIF_FRAMES
from ..errors import AIAIFInputError
from .nodes import _ijk_to_ras_of, _node_name, _report, _require_node, _voxels


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

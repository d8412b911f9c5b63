"""MRML nodes -> ``pipeline.PerfusionStudy``: frames, frame times, masks and points of one study.

Also the external AIF read from a table node.  Several single-slice
sequences are stacked by their position along the slice normal, and the
segments are resampled onto each slice's own exact geometry.  Leading
proton-density frames are left out, and what a DICOM reader attached to the
sequences (``mrml.dicom``) becomes the study's header and notes.
"""

import numpy as np

from .. import constants as K
from .. import roi_checks
from ..errors import AIAIFInputError
from ..pipeline import PerfusionStudy
from ..proton_density import leading_proton_density_frames
from .dicom import dicom_attributes
from .nodes import _node_name, _report, _require_node, short_list
from .points import rv_insertion_points
from .segmentation import _checked_segment_id, _segment_masks_on_grids
from .sequences import _check_sequence_items, _checked_frame_times, _frames_of, _perfusion_sequences, _slice_stack


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

    Leading proton-density frames (``proton_density``: brighter tissue, or
    marked by the DICOM header that ``mrml.dicom`` attached to the
    sequences) are left out, the frame times then counted from the first
    frame kept; ``source["proton_density_frames"]`` records the decision.
    The acquisition values the DICOM reader attached become ``header``, and
    its notes ``source["dicom"]``.

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
    header, header_pd_frames, dicom_notes = dicom_attributes(sequences)
    proton_density = leading_proton_density_frames(frames, header_pd_frames)
    if proton_density.count:
        # Left out, and the times counted from the first saturation-recovery frame.
        frames = frames[proton_density.count:]
        times = times[proton_density.count:] - times[proton_density.count]
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
    source["proton_density_frames"] = proton_density.summary()
    if proton_density.warning:
        source["proton_density_frames"]["warning"] = proton_density.warning
    if dicom_notes is not None:
        source["dicom"] = dicom_notes
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
                          source=source, header=header)


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
    from ..aif import TIME_COLUMN

    table_node = _require_node(table_node, "vtkMRMLTableNode", "external AIF table",
                               "choose a table with the columns time_s and signal")
    name = _node_name(table_node)
    table = table_node.GetTable()
    columns = [table.GetColumn(c).GetName() or "" for c in range(table.GetNumberOfColumns())]
    lowered = [column.strip().lower() for column in columns]
    if TIME_COLUMN not in lowered:
        raise AIAIFInputError("The external AIF table {!r} has no column {!r} (it has {}); name the time column "
                              "{} (seconds).".format(name, TIME_COLUMN, short_list(columns),
                                                     TIME_COLUMN))
    time_index = lowered.index(TIME_COLUMN)
    others = [c for c in range(len(columns)) if c != time_index]
    if not others:
        raise AIAIFInputError("The external AIF table {!r} has only the column {} and no AIF signal; add a column "
                              "with the signal (e.g. named 'signal').".format(name, columns[time_index]))
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


def check_rois_match_images(study, segmentation_node, rv_insertion_node=None):
    """Check that the ROIs and RV insertion points belong to the study's images (``roi_checks``).

    A segmentation or point list from another study may overlap the images
    in part; the quantification would then run on the wrong voxels.

    Parameters
    ----------
    study : PerfusionStudy
        From ``study_from_nodes``.
    segmentation_node : vtkMRMLSegmentationNode
        The segmentation the masks came from (named in the messages).
    rv_insertion_node : vtkMRMLMarkupsNode, optional
        The point list the study's points came from.

    Returns
    -------
    list of str
        Warnings for the summary: an ROI or point that fits the images only
        loosely.

    Raises
    ------
    AIAIFInputError
        When over ``roi_checks.BLOOD_POOL_REFUSE_FRACTION`` of the blood-pool
        ROI does not follow the blood's curve, or a point lies more than
        ``roi_checks.RV_POINT_REFUSE_MM`` from its slice's myocardium.
    """
    warnings = []
    fraction = roi_checks.blood_pool_mismatch_fraction(study.frames, study.blood_pool_mask)
    segment = study.source.get("blood_pool_segment", K.LV_BLOOD_POOL_SEGMENT_NAME)
    where = "segment {!r} of segmentation {!r}".format(segment, _node_name(segmentation_node))
    if fraction > roi_checks.BLOOD_POOL_REFUSE_FRACTION:
        raise AIAIFInputError("{:.0f} % of the voxels of the {} do not enhance like blood, so it does not fit "
                              "these images (a segmentation of another study?); draw the LV blood pool on this "
                              "perfusion series.".format(100 * fraction, where))
    if fraction > roi_checks.BLOOD_POOL_WARN_FRACTION:
        warnings.append("{:.0f} % of the voxels of the {} do not enhance like blood; check that the ROIs were "
                        "drawn on this perfusion series.".format(100 * fraction, where))
    if rv_insertion_node is None or study.rv_insertion_ras is None:
        return warnings
    distances = roi_checks.rv_point_distances_mm(study.rv_insertion_ras, study.ijk_to_ras, study.myocardium_mask)
    name = _node_name(rv_insertion_node)
    worst = int(np.nanargmax(distances)) if np.any(np.isfinite(distances)) else None
    if worst is not None and distances[worst] > roi_checks.RV_POINT_REFUSE_MM:
        raise AIAIFInputError("Point {} of the point list {!r} lies {:.0f} mm from the myocardium of its slice, so it "
                              "is no RV insertion point of this study (a point list of another study?); place the "
                              "points on this perfusion series or leave the point list out.".format(
                                  worst + 1, name, distances[worst]))
    if worst is not None and distances[worst] > roi_checks.RV_POINT_WARN_MM:
        warnings.append("Point {} of the point list {!r} lies {:.0f} mm from the myocardium of its slice; an RV "
                        "insertion point lies on the myocardium's outer edge.".format(worst + 1, name,
                                                                                      distances[worst]))
    return warnings

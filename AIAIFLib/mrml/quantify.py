"""Quantifying nodes, the one path of the command line and the Slicer module, and files in, files out."""

import os
from typing import NamedTuple, Optional

import slicer

from .. import constants as K
from .. import pipeline
from ..errors import AIAIFInputError
from ..file_checks import is_dicom_folder
from ..pipeline import PerfusionStudy
from .files import load_study_files, save_sequence_node, save_volume_node
from .nodes import DONE_MESSAGE, _node_name, _report, _require_scene, _scaled_progress
from .outputs import (bullseye_centre_beside, bullseye_volume_node, fit_quality_volume_node, mbf_volume_node,
                      registered_sequence_node, segments_table_node)
from .points import check_rv_insertion_points
from .publish import (MBF_COLUMNS, OUTPUT_ROLE_CLASSES, _aif_chart, _aif_table, _checked_outputs, _output_for_role,
                      _perfusion_key, _scene_transaction, _table_columns)
from .segmentation import find_segment_id
from .sequences import _perfusion_sequences
from .study import check_rois_match_images, study_from_nodes


#: Fraction of ``quantify_nodes``'s progress from which it publishes the output nodes.
PUBLISH_FRACTION = 0.95


def _without_panel_steps(fraction, message):
    """The messages of ``quantify_nodes`` for a run without Slicer's views: its publishing steps are one step."""
    return "Preparing the result files" if fraction >= PUBLISH_FRACTION else message


class QuantifiedNodes(NamedTuple):
    """What ``quantify_nodes`` computed and the nodes it published.

    Attributes
    ----------
    result : pipeline.QuantificationResult
        Arrays, tables and summary of the quantification.
    study : pipeline.PerfusionStudy
        The study it was computed from (frames, times, geometry, masks).
    mbf_volume : vtkMRMLScalarVolumeNode
        MBF map, mL/min/g, with the MBF colour table (``mbf_volume_node``).
    segments_table : vtkMRMLTableNode
        ``result.segments``: one row per AHA segment 1-16.
    aif_table : vtkMRMLTableNode
        One row per frame: ``time_s`` (s), ``saturated_mM``, ``used_mM``, the
        AI-AIF ensemble's band ``used_mM_low`` and ``used_mM_high``, and
        ``myocardium_mM`` (mM), see ``AIF_CURVES``.
    aif_chart : vtkMRMLPlotChartNode
        One plot series per curve of ``aif_table`` against time.
    fit_quality_volume : vtkMRMLScalarVolumeNode or None
        Per-pixel fit NRMSE (fraction), if asked for.
    registered_sequence : vtkMRMLSequenceNode or None
        The frames registered to the ROI frame (``registered_sequence_node``),
        when the motion step moved them (or a node was given for it).
    bullseye_volume : vtkMRMLScalarVolumeNode
        AHA bullseye of the segment MBF means (``result.segments["mbf_mean"]``),
        mL/min/g, one slice shown like the MBF map (``bullseye_volume_node``),
        placed above the study's images (``bullseye_centre_beside``).
    """

    result: pipeline.QuantificationResult
    study: PerfusionStudy
    mbf_volume: object
    segments_table: object
    aif_table: object
    aif_chart: object
    fit_quality_volume: Optional[object]
    bullseye_volume: object
    registered_sequence: Optional[object] = None


def quantify_nodes(scene, perfusion_nodes, segmentation_node, rv_insertion_node=None, parameters=None,
                   blood_pool_segment_id=None, myocardium_segment_id=None, frame_interval_s=None,
                   outputs=None, fit_quality=False, name_prefix=None, progress=None):
    """Quantify a study from its nodes and publish the results as nodes: the one path of every caller.

    Steps: the study is built (``study_from_nodes``), its RV insertion
    points checked against its slices (``check_rv_insertion_points``), its
    frames registered to the ROI frame (``pipeline.correct_study_motion``)
    and its ROIs and points checked against the registered images (``check_rois_match_images``:
    ROIs of another study are refused, loosely fitting ones give a warning
    in ``result.summary["warnings"]``);
    ``pipeline.quantify_study`` runs; only then are the output nodes published,
    as one transaction: if anything raises before or during publishing, or
    the progress callback raises (a cancel), the scene is exactly as it was
    (nodes added are removed, nodes updated are restored) and the exception
    propagates unchanged.

    Each output node is, in this order: the node given for its role in
    ``outputs``; else the node an earlier run on the same perfusion input
    published (tagged with ``OUTPUT_ROLE_ATTRIBUTE`` = role and
    ``PERFUSION_NODE_ATTRIBUTE`` = ID of the first perfusion sequence); else a
    new node named ``"<name_prefix> <suffix>"`` (``OUTPUT_NAME_SUFFIXES``).  So
    re-running updates the nodes (also the plot series and the MBF colour
    table) and never duplicates them.  Every output node is tagged.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to publish into (``slicer.mrmlScene`` in Slicer).
    perfusion_nodes : vtkMRMLSequenceNode or vtkMRMLSequenceBrowserNode, or a list of them
        The perfusion volume sequence, or one single-slice sequence per slice
        (see ``study_from_nodes``).
    segmentation_node : vtkMRMLSegmentationNode
        Segmentation with the LV blood pool and myocardium (not modified).
    rv_insertion_node : vtkMRMLMarkupsNode, optional
        RV insertion points (optional; ``check_rv_insertion_points``).
    parameters : pipeline.QuantificationParameters, optional
        Choices of the quantification; the paper's defaults when omitted.
    blood_pool_segment_id, myocardium_segment_id : str, optional
        Segment IDs; by default the segments named ``LV blood pool`` and
        ``Myocardium`` (case-insensitive).
    frame_interval_s : float, optional
        Time between frames, s, for sequences indexed by frame number.
    outputs : dict of str -> vtkMRMLNode, optional
        Existing nodes to update, by role: ``"mbf"``, ``"bullseye"`` and
        ``"fit_quality"`` (vtkMRMLScalarVolumeNode), ``"segments"`` and ``"aif_table"``
        (vtkMRMLTableNode), ``"aif_chart"`` (vtkMRMLPlotChartNode),
        ``"registered"`` (vtkMRMLSequenceNode: the motion-corrected frames,
        published when the motion step moved frames or this node is given).  A role
        left out or None is found or created as above.
    fit_quality : bool, optional
        Also publish the per-pixel fit NRMSE map (also done when ``outputs``
        names a ``"fit_quality"`` node).
    name_prefix : str, optional
        Prefix of the names of new nodes; the (first) sequence's name by default.
    progress : callable, optional
        ``progress(fraction_0_to_1, message)``: 0-0.1 building the study,
        0.1-0.95 the quantification (the fit reports after every iteration),
        0.95-1 publishing; 1.0 is reported last, once everything is published.
        If it raises (e.g. ``errors.AIAIFCancelled``), the run stops there.

    Returns
    -------
    QuantifiedNodes
        The result, the study and the published nodes.

    Raises
    ------
    AIAIFInputError
        For unusable input nodes (naming the node: see ``study_from_nodes``,
        ``check_rv_insertion_points`` and ``check_rois_match_images``),
        parameters, or an ``outputs`` node
        of the wrong class or of another scene.  The scene is unchanged.
    """
    _require_scene(scene)
    sequences = _perfusion_sequences(perfusion_nodes)
    given = _checked_outputs(scene, outputs)
    with_fit_quality = bool(fit_quality) or "fit_quality" in given
    study = study_from_nodes(sequences if len(sequences) > 1 else sequences[0], segmentation_node,
                             rv_insertion_node, blood_pool_segment_id, myocardium_segment_id, frame_interval_s,
                             progress=_scaled_progress(progress, 0.0, 0.1))
    check_rv_insertion_points(study, rv_insertion_node)
    # The motion step first, so that the ROIs are checked against the registered frames they belong to.
    motion = pipeline.correct_study_motion(study, parameters, progress=_scaled_progress(progress, 0.1, 0.2))
    roi_warnings = check_rois_match_images(motion.study, segmentation_node, rv_insertion_node)
    result = pipeline.quantify_study(study, parameters, progress=_scaled_progress(progress, 0.2, PUBLISH_FRACTION),
                                     motion=motion)
    result.summary["warnings"].extend(roi_warnings)
    pd_warning = study.source.get("proton_density_frames", {}).get("warning")
    if pd_warning:
        result.summary["warnings"].append(pd_warning)
    with_registered = motion.correction.applied or "registered" in given

    key = _perfusion_key(sequences)
    prefix = str(name_prefix) if name_prefix else _node_name(sequences[0])
    roles = [role for role in OUTPUT_ROLE_CLASSES
             if (role != "fit_quality" or with_fit_quality) and (role != "registered" or with_registered)]
    with _scene_transaction(scene) as undo:
        _report(progress, PUBLISH_FRACTION, "Showing the results")
        nodes = {role: _output_for_role(scene, undo, role, given, key, prefix) for role in roles}
        mbf_volume_node(scene, result.mbf_ml_min_g, study.ijk_to_ras, node=nodes["mbf"])
        _report(progress, 0.955, "Showing the MBF bullseye")
        bullseye_volume_node(scene, result.segments["mbf_mean"],
                             bullseye_centre_beside(study.ijk_to_ras, study.myocardium_mask.shape),
                             node=nodes["bullseye"])
        _report(progress, 0.96, "Showing the segment table")
        segments_table_node(scene, _table_columns(result.segments), node=nodes["segments"],
                            units={column: "mL/min/g" for column in MBF_COLUMNS if column in result.segments})
        _report(progress, 0.97, "Showing the AIF")
        _aif_table(scene, result, nodes["aif_table"])
        _aif_chart(scene, undo, nodes["aif_chart"], nodes["aif_table"], key)
        if with_fit_quality:
            _report(progress, 0.98, "Showing the fit quality")
            fit_quality_volume_node(scene, result.fit_nrmse, study.ijk_to_ras, node=nodes["fit_quality"])
        if with_registered:
            _report(progress, 0.99, "Showing the registered frames")
            registered_sequence_node(scene, motion.correction.frames, study.frame_times_s, study.ijk_to_ras,
                                     node=nodes["registered"])
        _report(progress, 1.0, DONE_MESSAGE)
    return QuantifiedNodes(result=result, study=study, mbf_volume=nodes["mbf"], segments_table=nodes["segments"],
                           aif_table=nodes["aif_table"], aif_chart=nodes["aif_chart"],
                           fit_quality_volume=nodes.get("fit_quality"), bullseye_volume=nodes["bullseye"],
                           registered_sequence=nodes.get("registered"))


def quantify_files(perfusion_path, segmentation_path, output_dir, parameters=None, rv_insertion_path=None,
                   frame_interval_s=None, blood_pool_segment_name=None, myocardium_segment_name=None,
                   dicom_output=False, progress=None):
    """Quantify a study from its Slicer files and write the result files.

    The files are loaded into a private scene (``load_study_files``) and
    quantified there by ``quantify_nodes``, the same path the Slicer module
    takes; the MBF volume node it publishes is written as
    ``pipeline.OUTPUT_FILES["mbf"]`` by Slicer's volume storage node (on the
    frame grid as Slicer loaded it) and the other files by
    ``pipeline.write_result_files``.  With ``dicom_output`` the map is also
    written as a DICOM Parametric Map (``dicom_io.parametric_map``,
    ``PARAMETRIC_MAP_FILE``) that references the source images.

    Parameters
    ----------
    perfusion_path, segmentation_path : str or os.PathLike
        Volume sequence (``.seq.nrrd``) or folder of DICOM images, and
        segmentation (``.seg.nrrd`` or DICOM SEG).
    output_dir : str or os.PathLike
        Existing directory to write into.
    parameters : pipeline.QuantificationParameters, optional
        Choices of the quantification; the paper's defaults when omitted.
    rv_insertion_path : str or os.PathLike, optional
        Point list (``.mrk.json``) with the RV insertion points (optional).
    frame_interval_s : float, optional
        Time between frames, s, for sequences indexed by frame number.
    blood_pool_segment_name, myocardium_segment_name : str, optional
        Segment names (case-insensitive); ``LV blood pool`` and ``Myocardium``
        by default.
    dicom_output : bool, optional
        Also write the DICOM Parametric Map (needs a DICOM perfusion folder).
    progress : callable, optional
        ``progress(fraction_0_to_1, message)``.

    Returns
    -------
    pipeline.QuantificationResult
        The result whose files were written.

    Raises
    ------
    AIAIFInputError
        For any problem with the files, segments, frame times or parameters.
    """
    output_dir = os.fspath(output_dir)
    if not os.path.isdir(output_dir):
        raise AIAIFInputError("The output directory {} does not exist; create it first.".format(output_dir))
    if dicom_output and not is_dicom_folder(perfusion_path):
        raise AIAIFInputError("A DICOM output refers to the source DICOM images, but the perfusion series {} is not a "
                              "DICOM folder; pass the DICOM folder or leave out --dicom-output.".format(
                                  perfusion_path))
    scene = slicer.vtkMRMLScene()
    nodes = load_study_files(scene, perfusion_path, segmentation_path, rv_insertion_path,
                             progress=_scaled_progress(progress, 0.0, 0.05))
    blood_pool_id = find_segment_id(nodes.segmentation, blood_pool_segment_name or K.LV_BLOOD_POOL_SEGMENT_NAME)
    myocardium_id = find_segment_id(nodes.segmentation, myocardium_segment_name or K.MYOCARDIUM_SEGMENT_NAME)
    quantified = quantify_nodes(scene, nodes.sequence, nodes.segmentation, nodes.rv_insertion, parameters,
                                blood_pool_id, myocardium_id, frame_interval_s,
                                progress=_scaled_progress(progress, 0.05, 0.9, _without_panel_steps))
    _report(progress, 0.9, "Writing the results")
    save_volume_node(quantified.mbf_volume, os.path.join(output_dir, pipeline.OUTPUT_FILES["mbf"]))
    if quantified.registered_sequence is not None:
        save_sequence_node(quantified.registered_sequence, os.path.join(output_dir,
                                                                        pipeline.OUTPUT_FILES["registered"]))
    sequences = nodes.sequence if isinstance(nodes.sequence, (list, tuple)) else [nodes.sequence]
    study_name = sequences[0].GetName() if len(sequences) == 1 else os.path.basename(
        os.path.normpath(os.fspath(perfusion_path)))
    pipeline.write_result_files(quantified.result, output_dir, study_name=study_name)
    if dicom_output:
        from ..dicom_io.parametric_map import PARAMETRIC_MAP_FILE, write_mbf_parametric_map

        _report(progress, 0.97, "Writing the DICOM parametric map")
        write_mbf_parametric_map(os.path.join(output_dir, PARAMETRIC_MAP_FILE), quantified.result.mbf_ml_min_g,
                                 quantified.study.ijk_to_ras, quantified.study.source["dicom"]["reference_images"])
    _report(progress, 1.0, DONE_MESSAGE)
    return quantified.result

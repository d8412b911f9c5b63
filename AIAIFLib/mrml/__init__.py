"""Slicer MRML nodes <-> numpy: the one place where AI-AIF meets Slicer's scene.

This adapter loads a perfusion study (volume sequence, segmentation, RV
insertion points) into a ``vtkMRMLScene`` with Slicer's own storage nodes,
turns the nodes into a ``pipeline.PerfusionStudy`` and turns results back into
nodes (MBF volume with its colour table, segment table) and files.  It uses
only MRML-level classes and module logics, never the Slicer application
(``slicer.app``, ``slicer.util``, Qt), so the same code runs

* headless from the ``slicer-core`` package (``scene = slicer.vtkMRMLScene()``),
  as the command line and the test suite do, and
* inside the Slicer application, called by the AI-AIF module's Logic with
  ``slicer.mrmlScene``.

It is the only package of ``AIAIFLib`` that imports ``slicer`` and ``vtk``;
``import AIAIFLib`` does not import it.  Its modules, one concept each:

* ``files`` -- a study's files read into nodes by Slicer's storage nodes
  (``load_study_files``), volumes saved and loaded;
* ``sequences`` -- frames and frame times of volume sequences, single-slice
  stacks (``frame_times_s``, ``sequence_frames``);
* ``segmentation`` -- segments as masks on the frame grid (``segment_masks``,
  ``find_segment_id``);
* ``points`` -- RV insertion points (``rv_insertion_points``,
  ``check_rv_insertion_points``);
* ``dicom`` -- a DICOM perfusion folder as single-slice sequences that carry
  the header's acquisition values (``load_dicom_study``,
  ``dicom_attributes``), a DICOM SEG as a segmentation
  (``load_dicom_segmentation``);
* ``study`` -- nodes -> ``PerfusionStudy`` (``study_from_nodes``; leading
  proton-density frames are left out) and the external AIF table
  (``external_aif_from_table``);
* ``colors`` -- the MBF colour scale and its colour table node;
* ``outputs`` -- output nodes: MBF map, bullseye, fit quality, tables, the
  registered frames;
* ``publish`` -- output roles and tags, the AIF chart, the scene transaction;
* ``quantify`` -- ``quantify_nodes`` (every caller's path) and
  ``quantify_files`` (the command line's);
* ``display`` -- the panel's frame display and ROI segmentation;
* ``phantom`` -- the phantom as nodes (``phantom_nodes``);
* ``nodes`` -- small helpers they share.

Every public name is importable from the package (``AIAIFLib.mrml.<name>``).

Geometry.  Arrays are indexed ``[k, j, i]`` and ``ijk_to_ras`` maps the voxel
index ``(i, j, k, 1)`` to RAS millimetres, as in the rest of the package.  The
frames keep the geometry Slicer gives the loaded volumes: a left-handed file
grid is loaded with its slice order reversed (the storage node's
``ForceRightHandedIJKCoordinateSystem``), and the segments are resampled onto
that loaded frame grid, so image, masks and points agree by RAS position.

Scene hygiene.  Reading nodes never modifies them: segments are resampled from
a copy held in a private scratch scene, so the user's segmentation gains no
representation and the user's scene no temporary node.  A load that fails
removes every node it added.

One path for every caller.  ``quantify_nodes`` is the whole quantification on
nodes: it builds the study (``study_from_nodes``), runs
``pipeline.quantify_study`` and only then publishes the output nodes (MBF map,
MBF bullseye, segment table, AIF table and chart, optionally the fit-quality
map) as one transaction: if anything fails or the progress callback raises (a
cancel), every node added is removed and every node updated is restored, so
the scene is exactly as it was.  Output nodes are tagged with the attributes
``OUTPUT_ROLE_ATTRIBUTE`` and ``PERFUSION_NODE_ATTRIBUTE``, and a later run on
the same perfusion input updates them instead of adding new ones.  The
command line's ``quantify_files`` and the Slicer module's Logic both call it.

Several single-slice sequences.  Perfusion DICOM often loads as one sequence
per slice; ``study_from_nodes`` stacks a list of them by their position along
the slice normal (not by list order) and resamples the segments onto each
slice's own exact geometry.
"""

from .colors import (MBF_COLOR_CHROMA, MBF_COLOR_HUE_DEG, MBF_COLOR_LIGHTNESS, MBF_COLOR_TABLE_NAME,
                     MBF_COLOR_TABLE_SIZE, MBF_DISPLAY_RANGE_ML_MIN_G, mbf_color_table_node, mbf_colors)
from .dicom import (DICOM_ATTRIBUTES, HEADER_ATTRIBUTE, NOTES_ATTRIBUTE, PROTON_DENSITY_ATTRIBUTE,
                    REFERENCE_IMAGE_ATTRIBUTE, dicom_attributes, dicom_perfusion_nodes, load_dicom_segmentation,
                    load_dicom_study, segmentation_node_from_masks)
from .display import ensure_roi_segments, roi_segmentation_node, sequence_browser_node, show_sequence_frame
from .files import StudyNodes, load_study_files, load_volume_file, save_sequence_node, save_volume_node
from .nodes import volume_node_array
from .outputs import (BULLSEYE_CLEARANCE_MM, BULLSEYE_IJK_DIRECTIONS_RAS, BULLSEYE_PIXEL_MM, FIT_NRMSE_DISPLAY_RANGE,
                      bullseye_centre_beside, bullseye_ijk_to_ras, bullseye_volume_node, fit_quality_volume_node,
                      mbf_volume_node, registered_sequence_node, segments_table_node)
from .phantom import phantom_nodes
from .points import check_rv_insertion_points, rv_insertion_points
from .publish import (AIF_CURVES, AIF_SERIES_ROLE, AIF_TIME_COLUMN, CURVE_ATTRIBUTE, MBF_COLUMNS,
                      OUTPUT_NAME_SUFFIXES, OUTPUT_ROLE_ATTRIBUTE, OUTPUT_ROLE_CLASSES, PERFUSION_NODE_ATTRIBUTE,
                      find_output_node)
from .quantify import QuantifiedNodes, quantify_files, quantify_nodes
from .segmentation import BINARY_LABELMAP, find_segment_id, segment_masks
from .sequences import (DEFAULT_FRAME_LABELS_UNIT, FRAME_LABELS_ATTRIBUTE, FRAME_LABELS_UNIT_ATTRIBUTE,
                        FRAME_NUMBER_UNITS, MIN_FRAMES, STACK_AXIS_TOLERANCE, STACK_IN_PLANE_OFFSET_TOLERANCE,
                        STACK_SAME_POSITION_TOLERANCE, TIME_UNIT_TO_S, UNEVEN_SLICE_SPACING_FRACTION, frame_times_s,
                        sequence_frames)
from .study import external_aif_from_table, study_from_nodes

__all__ = [
    "AIF_CURVES", "AIF_SERIES_ROLE", "AIF_TIME_COLUMN", "BINARY_LABELMAP", "BULLSEYE_CLEARANCE_MM",
    "BULLSEYE_IJK_DIRECTIONS_RAS", "BULLSEYE_PIXEL_MM", "CURVE_ATTRIBUTE", "DEFAULT_FRAME_LABELS_UNIT",
    "DICOM_ATTRIBUTES", "HEADER_ATTRIBUTE", "NOTES_ATTRIBUTE", "PROTON_DENSITY_ATTRIBUTE", "REFERENCE_IMAGE_ATTRIBUTE",
    "dicom_attributes", "dicom_perfusion_nodes", "load_dicom_segmentation", "load_dicom_study",
    "segmentation_node_from_masks",
    "FIT_NRMSE_DISPLAY_RANGE", "FRAME_LABELS_ATTRIBUTE", "FRAME_LABELS_UNIT_ATTRIBUTE", "FRAME_NUMBER_UNITS",
    "MBF_COLOR_CHROMA", "MBF_COLOR_HUE_DEG", "MBF_COLOR_LIGHTNESS", "MBF_COLOR_TABLE_NAME", "MBF_COLOR_TABLE_SIZE",
    "MBF_COLUMNS", "MBF_DISPLAY_RANGE_ML_MIN_G", "MIN_FRAMES", "OUTPUT_NAME_SUFFIXES", "OUTPUT_ROLE_ATTRIBUTE",
    "OUTPUT_ROLE_CLASSES", "PERFUSION_NODE_ATTRIBUTE", "QuantifiedNodes", "STACK_AXIS_TOLERANCE",
    "STACK_IN_PLANE_OFFSET_TOLERANCE", "STACK_SAME_POSITION_TOLERANCE", "StudyNodes", "TIME_UNIT_TO_S",
    "UNEVEN_SLICE_SPACING_FRACTION", "bullseye_centre_beside", "bullseye_ijk_to_ras", "bullseye_volume_node",
    "check_rv_insertion_points", "ensure_roi_segments", "external_aif_from_table", "find_output_node",
    "find_segment_id", "fit_quality_volume_node", "frame_times_s", "load_study_files", "load_volume_file",
    "mbf_color_table_node", "mbf_colors", "mbf_volume_node", "phantom_nodes", "quantify_files", "quantify_nodes",
    "registered_sequence_node", "roi_segmentation_node", "rv_insertion_points", "save_sequence_node",
    "save_volume_node", "segment_masks", "segments_table_node", "sequence_browser_node", "sequence_frames",
    "show_sequence_frame", "study_from_nodes", "volume_node_array",
]

"""Output nodes: the MBF map and its bullseye, the fit-quality map and tables, each made or updated in place."""

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .. import segments
from ..errors import AIAIFInputError
from .colors import MBF_DISPLAY_RANGE_ML_MIN_G, mbf_color_table_node
from .nodes import (_fill_volume_sequence, _image_from_array, _node_name, _require_node, _require_scene,
                    _validated_ijk_to_ras, _vtk_matrix)


#: Display range of fit-quality maps (fit NRMSE, a fraction of the tissue
#: curve's RMS).  Project choice: good pixel fits lie well below 0.2 and fits
#: above 0.5 are poor, so the window spans both.
FIT_NRMSE_DISPLAY_RANGE = (0.0, 0.5)
#: Pixel size of the MBF bullseye volume, mm (project choice: 1 mm, so that a
#: bullseye of ``segments.BULLSEYE_SIZE_PX`` = 257 pixels is about as wide as a
#: chest field of view and fills a slice view at the same zoom as the images).
BULLSEYE_PIXEL_MM = 1.0
#: Distance from the top (largest S) of the perfusion grid to the bullseye's
#: plane, mm (project choice: the bullseye is viewed on its own, so it is kept
#: clear of the patient images, yet near enough to find in the 3-D view).
BULLSEYE_CLEARANCE_MM = 100.0
#: RAS directions of the bullseye volume's voxel axes i (column), j (row) and k,
#: one per row.  Slicer's axial view shows the patient's left (-R) to the right
#: and anterior (+A) at the top, so i towards -R and j towards -A show the image
#: as ``segments.bullseye_image`` draws it (row 0 at the top): segment 1 at the
#: top, the septum on the left, without reorienting the view.  k points +S,
#: keeping the matrix right-handed (determinant +1, like an LPS grid).
BULLSEYE_IJK_DIRECTIONS_RAS = np.array([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])


def _output_node(scene, node, class_name, name, what):
    """``node`` checked (and added to ``scene`` if in none), or a new node of ``class_name`` named ``name``."""
    _require_scene(scene)
    if node is None:
        node = getattr(slicer, class_name)()
        node.SetName(name)
        scene.AddNode(node)
        return node
    _require_node(node, class_name, what, "pass None to create a new node")
    if node.GetScene() is None:
        scene.AddNode(node)
    elif node.GetScene() is not scene:
        raise AIAIFInputError("The {} {!r} belongs to another scene; pass a node of this scene or None."
                              .format(what, _node_name(node)))
    return node


def mbf_volume_node(scene, mbf_map_kji, ijk_to_ras, name="MBF", node=None, myocardium_mask=None):
    """Show an MBF map as a scalar volume with the MBF colour scale.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene of the study.
    mbf_map_kji : array_like, shape (n_slices, rows, columns)
        MBF, mL/min/g, on the frame grid; NaN where there is no value
        (outside the myocardium).  Stored as float32.
    ijk_to_ras : array_like, shape (4, 4)
        Voxel index (i, j, k, 1) to RAS (mm) matrix of the frame grid.
    name : str, optional
        Name of a new node.
    node : vtkMRMLScalarVolumeNode, optional
        Existing node to update in place (no new node is made).
    myocardium_mask : array_like of bool, optional
        If given, voxels outside it are set to NaN.

    Returns
    -------
    vtkMRMLScalarVolumeNode
        The node, with a display node using ``mbf_color_table_node(scene)``,
        window ``MBF_DISPLAY_RANGE_ML_MIN_G`` (0-5 mL/min/g) and a threshold
        that makes NaN voxels transparent.

    Raises
    ------
    AIAIFInputError
        For a map that is not 3-D numeric, a mask of another shape, an invalid
        ``ijk_to_ras``, or a ``node`` of another class or scene.
    """
    values = _map_values(mbf_map_kji, "MBF map", myocardium_mask)
    matrix = _validated_ijk_to_ras(ijk_to_ras)
    node = _output_node(scene, node, "vtkMRMLScalarVolumeNode", name, "MBF volume")
    _show_map(node, values, matrix, MBF_DISPLAY_RANGE_ML_MIN_G, mbf_color_table_node(scene).GetID())
    return node


def bullseye_ijk_to_ras(centre_ras, size_px=segments.BULLSEYE_SIZE_PX, pixel_mm=BULLSEYE_PIXEL_MM):
    """Voxel-to-RAS matrix of a one-slice bullseye volume centred on a point.

    Column i runs towards the patient's left and row j posterior
    (``BULLSEYE_IJK_DIRECTIONS_RAS``), so Slicer's axial view, unrotated,
    shows the image as printed: segment 1 at the top, septum on the left.

    Parameters
    ----------
    centre_ras : array_like, shape (3,)
        RAS position of the bullseye's centre pixel, mm.
    size_px : int, optional
        Width and height of the bullseye image, pixels.
    pixel_mm : float, optional
        Pixel size (and slice thickness), mm.

    Returns
    -------
    numpy.ndarray, shape (4, 4)
        Maps the voxel index (i, j, k, 1) to RAS mm; voxel
        ``((size_px - 1) / 2, (size_px - 1) / 2, 0)`` lands on ``centre_ras``.

    Raises
    ------
    AIAIFInputError
        For a centre that is not 3 finite numbers or a pixel size that is not
        a positive number.
    """
    try:
        centre = np.array(centre_ras, dtype=float)
        pixel, size = float(pixel_mm), float(size_px)
    except (TypeError, ValueError):
        centre, pixel, size = np.full(1, np.nan), float("nan"), float("nan")
    if (centre.shape != (3,) or not np.all(np.isfinite(centre)) or not (np.isfinite(pixel) and pixel > 0)
            or not (np.isfinite(size) and size >= 1)):
        raise AIAIFInputError("The bullseye needs its centre as 3 finite RAS numbers (mm), a positive pixel size in "
                              "mm and a size of at least 1 pixel, got {!r}, {!r} and {!r}; pass e.g. "
                              "centre_ras=(0, 0, 0).".format(centre_ras, pixel_mm, size_px))
    matrix = np.eye(4)
    matrix[:3, :3] = pixel * BULLSEYE_IJK_DIRECTIONS_RAS.T  # columns: the RAS steps of i, j and k
    middle = 0.5 * (size - 1.0)
    matrix[:3, 3] = centre - matrix[:3, :3] @ np.array([middle, middle, 0.0])
    return matrix


def bullseye_centre_beside(ijk_to_ras, shape_kji, clearance_mm=BULLSEYE_CLEARANCE_MM):
    """Where to centre a bullseye so that it stays clear of a study's images.

    Parameters
    ----------
    ijk_to_ras : array_like, shape (4, 4)
        Voxel index (i, j, k, 1) to RAS (mm) matrix of the study's grid.
    shape_kji : tuple of int
        Grid shape ``(n_slices, rows, columns)``.
    clearance_mm : float, optional
        Distance above the grid's highest point, mm.

    Returns
    -------
    numpy.ndarray, shape (3,)
        RAS mm: the R and A centre of the grid's bounding box (voxel edges
        included), and S ``clearance_mm`` above its top, so that the axial
        bullseye plane cuts no voxel of the study.
    """
    matrix = _validated_ijk_to_ras(ijk_to_ras)
    n_k, n_j, n_i = (int(n) for n in shape_kji)
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, n_i - 0.5) for j in (-0.5, n_j - 0.5)
                        for k in (-0.5, n_k - 0.5)])
    ras = (corners @ matrix.T)[:, :3]
    low, high = ras.min(axis=0), ras.max(axis=0)
    return np.array([0.5 * (low[0] + high[0]), 0.5 * (low[1] + high[1]), high[2] + float(clearance_mm)])


def bullseye_volume_node(scene, segment_mbf_ml_min_g, centre_ras=(0.0, 0.0, 0.0), name="MBF bullseye", node=None,
                         size_px=segments.BULLSEYE_SIZE_PX, gap_px=segments.BULLSEYE_GAP_PX):
    """Show the AHA 16-segment bullseye of segment MBF as a one-slice scalar volume.

    The image is ``segments.bullseye_image`` (segment 1 at the top, septum on
    the left; NaN outside the rings, in the gaps and for segments without a
    value), one slice of ``BULLSEYE_PIXEL_MM`` pixels whose voxel axes
    (``bullseye_ijk_to_ras``) make Slicer's axial view show it upright.  It is
    displayed exactly as the MBF map (``mbf_volume_node``: the MBF colour
    table, window 0-5 mL/min/g, NaN transparent), so one colour means one MBF.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to publish into.
    segment_mbf_ml_min_g : array_like, shape (16,)
        MBF of AHA segments 1-16 in order, mL/min/g; NaN = no value.
    centre_ras : array_like, shape (3,), optional
        RAS position of the bullseye's centre, mm; keep it clear of the
        patient images (``bullseye_centre_beside``).
    name : str, optional
        Name of a new node.
    node : vtkMRMLScalarVolumeNode, optional
        Existing node to update in place.
    size_px : int, optional
        Width and height of the image, pixels (= mm).
    gap_px : float, optional
        Width of the empty border between segments, pixels.

    Returns
    -------
    vtkMRMLScalarVolumeNode
        The node, its voxels (1, size_px, size_px) in mL/min/g.

    Raises
    ------
    AIAIFInputError
        For anything but 16 segment values, a bad size, gap or centre, or a
        ``node`` of another class or scene.
    """
    image = segments.bullseye_image(segment_mbf_ml_min_g, size_px, gap_px)
    matrix = bullseye_ijk_to_ras(centre_ras, image.shape[0])
    node = _output_node(scene, node, "vtkMRMLScalarVolumeNode", name, "MBF bullseye volume")
    return mbf_volume_node(scene, image[None], matrix, node=node)


def _map_values(map_kji, what, mask=None):
    """A 3-D map as float32 (a copy), NaN outside ``mask``; error for anything else."""
    try:
        values = np.array(map_kji, dtype=np.float32)
    except (TypeError, ValueError):
        values = np.zeros(0, dtype=np.float32)
    if values.ndim != 3 or 0 in values.shape:
        raise AIAIFInputError("The {} must be a non-empty 3-D array (n_slices, rows, columns) of numbers; "
                              "pass the map on the frame grid.".format(what))
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != values.shape:
            raise AIAIFInputError("The myocardium mask has shape {} but the {} {}; pass the mask of the same "
                                  "study.".format(mask.shape, what, values.shape))
        values[~mask] = np.nan
    return values


def _show_map(node, values, matrix, display_range, color_node_id=None):
    """Put a float32 map into a scalar volume node, windowed to ``display_range`` with NaN voxels transparent."""
    disabled = node.StartModify()
    node.SetIJKToRASMatrix(_vtk_matrix(matrix))
    node.SetAndObserveImageData(_image_from_array(values, vtk.VTK_FLOAT))
    node.EndModify(disabled)

    display = node.GetDisplayNode()
    if display is None:
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
    low, high = display_range
    finite = values[np.isfinite(values)]
    disabled = display.StartModify()
    if color_node_id is not None:
        display.SetAndObserveColorNodeID(color_node_id)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(low, high)
    # NaN fails every threshold comparison, so thresholding on the whole finite
    # range hides exactly the voxels without a value.
    display.AutoThresholdOff()
    display.SetThreshold(min(low, float(finite.min())) if finite.size else low,
                         max(high, float(finite.max())) if finite.size else high)
    display.ApplyThresholdOn()
    display.EndModify(disabled)


def fit_quality_volume_node(scene, nrmse_kji, ijk_to_ras, name="fit NRMSE", node=None):
    """Show the per-pixel fit NRMSE as a scalar volume.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene of the study.
    nrmse_kji : array_like, shape (n_slices, rows, columns)
        Residual RMS over tissue-curve RMS of each pixel's fit (a fraction,
        ``QuantificationResult.fit_nrmse``); NaN outside the myocardium and
        where the fit failed.  Stored as float32.
    ijk_to_ras : array_like, shape (4, 4)
        Voxel index (i, j, k, 1) to RAS (mm) matrix of the frame grid.
    name : str, optional
        Name of a new node.
    node : vtkMRMLScalarVolumeNode, optional
        Existing node to update in place.

    Returns
    -------
    vtkMRMLScalarVolumeNode
        The node, windowed to ``FIT_NRMSE_DISPLAY_RANGE`` with NaN voxels
        transparent (the display's default colour table).

    Raises
    ------
    AIAIFInputError
        For a map that is not 3-D numeric, an invalid ``ijk_to_ras``, or a
        ``node`` of another class or scene.
    """
    values = _map_values(nrmse_kji, "fit NRMSE map")
    matrix = _validated_ijk_to_ras(ijk_to_ras)
    node = _output_node(scene, node, "vtkMRMLScalarVolumeNode", name, "fit-quality volume")
    _show_map(node, values, matrix, FIT_NRMSE_DISPLAY_RANGE)
    return node


def _vtk_column(name, values):
    array = np.asarray(values)
    if array.ndim != 1:
        raise AIAIFInputError("Table column {!r} must be a flat list of values, got shape {}; pass one value per "
                              "row.".format(name, array.shape))
    if array.dtype.kind == "b":
        column = vtk.vtkBitArray()
        column.SetNumberOfTuples(array.size)
        for row, value in enumerate(array):
            column.SetValue(row, int(value))
    elif array.dtype.kind in "iu":
        column = numpy_support.numpy_to_vtk(array.astype(np.int64), deep=True, array_type=vtk.VTK_LONG_LONG)
    elif array.dtype.kind == "f":
        column = numpy_support.numpy_to_vtk(array.astype(np.float64), deep=True, array_type=vtk.VTK_DOUBLE)
    elif array.dtype.kind in "USO":
        column = vtk.vtkStringArray()
        column.SetNumberOfValues(array.size)
        for row, value in enumerate(array):
            column.SetValue(row, "" if value is None else str(value))
    else:
        raise AIAIFInputError("Table column {!r} holds values of type {}; pass numbers, booleans or text."
                              .format(name, array.dtype))
    column.SetName(name)
    return column


def segments_table_node(scene, columns, name="MBF per segment", node=None, units=None, titles=None):
    """Show per-segment results as a table node.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene of the study.
    columns : dict of str -> sequence
        Column name -> values (one per row; numbers, booleans or text), in
        display order; all columns the same length.
    name : str, optional
        Name of a new node.
    node : vtkMRMLTableNode, optional
        Existing table to refill in place (its old columns are removed).
    units : dict of str -> str, optional
        Unit label of some columns, e.g. ``{"MBF": "mL/min/g"}``.
    titles : dict of str -> str, optional
        Header shown instead of the column name for some columns.

    Returns
    -------
    vtkMRMLTableNode
        The table, with the column titles (by default the names) as headers.

    Raises
    ------
    AIAIFInputError
        For no columns, columns of different lengths or unsupported types,
        a unit or title for a column that does not exist, or a ``node`` of
        another class or scene.
    """
    if not isinstance(columns, dict) or not columns:
        raise AIAIFInputError("columns must be a non-empty dict of column name -> values; pass e.g. "
                              "{'Segment': [1, 2], 'MBF': [2.1, 2.4]}.")
    vtk_columns = [_vtk_column(str(key), values) for key, values in columns.items()]
    lengths = {column.GetName(): column.GetNumberOfTuples() for column in vtk_columns}
    if len(set(lengths.values())) > 1:
        raise AIAIFInputError("The table columns have different lengths ({}); give every column one value per row."
                              .format(", ".join("{} {}".format(k, v) for k, v in lengths.items())))
    units, titles = dict(units or {}), dict(titles or {})
    for given, what in ((units, "Units"), (titles, "Titles")):
        unknown = sorted(set(given) - set(lengths))
        if unknown:
            raise AIAIFInputError("{} were given for columns that do not exist ({}); name existing columns."
                                  .format(what, ", ".join(unknown)))
    node = _output_node(scene, node, "vtkMRMLTableNode", name, "segment table")
    disabled = node.StartModify()
    node.RemoveAllColumns()
    for column in vtk_columns:
        node.AddColumn(column)
    if hasattr(node, "SetUseColumnTitleAsColumnHeader"):  # Slicer >= 5.4 (the name variant is deprecated)
        node.SetUseColumnTitleAsColumnHeader(True)
    else:
        node.SetUseColumnNameAsColumnHeader(True)
    for column_name, unit in units.items():
        node.SetColumnUnitLabel(column_name, str(unit))
    for column_name, title in titles.items():
        node.SetColumnTitle(column_name, str(title))
    node.Modified()
    node.EndModify(disabled)
    return node


def registered_sequence_node(scene, frames_tkji, frame_times_s, ijk_to_ras, name="registered", node=None):
    """Show the motion-corrected frames as a volume sequence (``motion``: every frame at the ROI frame's position).

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene of the study.
    frames_tkji : array_like, shape (n_frames, n_slices, rows, columns)
        The registered frames (signal units), on the study's frame grid.
    frame_times_s : array_like, shape (n_frames,)
        Frame times, s: the sequence's index values.
    ijk_to_ras : array_like, shape (4, 4)
        Voxel index (i, j, k, 1) to RAS (mm) of every frame.
    name : str, optional
        Name of a new node.
    node : vtkMRMLSequenceNode, optional
        Node to fill (its items are replaced); a new one when omitted.

    Returns
    -------
    vtkMRMLSequenceNode
    """
    frames = np.asarray(frames_tkji, dtype=float)
    if frames.ndim != 4 or frames.shape[0] != np.size(frame_times_s):
        raise AIAIFInputError("The registered frames must be an array (frame, slice, row, column) with one time per "
                              "frame, got shape {}; pass the motion step's frames.".format(frames.shape))
    node = _output_node(scene, node, "vtkMRMLSequenceNode", name, "registered sequence")
    return _fill_volume_sequence(node, frames, frame_times_s, _validated_ijk_to_ras(ijk_to_ras))

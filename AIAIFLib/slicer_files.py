"""Writers of 3D Slicer files: volume sequences, segmentations and point lists.

The files are the ones 3D Slicer itself reads and writes, made with numpy,
``json`` and ``pynrrd`` only, so the science package can produce them without
Slicer:

* ``.seq.nrrd`` -- a volume sequence, read by ``vtkMRMLVolumeSequenceStorageNode``
  into a sequence node of scalar volumes;
* ``.seg.nrrd`` -- a labelmap segmentation, read by ``vtkMRMLSegmentationStorageNode``;
* ``.mrk.json`` -- a markups point list (``Fiducial``), read by
  ``vtkMRMLMarkupsJsonStorageNode``.

Coordinates.  Every argument is in RAS millimetres (right, anterior, superior),
the world frame of Slicer's scene.  The files store LPS (left, posterior,
superior), which is what Slicer writes: the NRRD ``space`` is
``left-posterior-superior`` and the markups ``coordinateSystem`` is ``LPS``.
RAS and LPS differ by the sign of the first two coordinates, so the conversion
is exact and a file read back in Slicer gives the RAS values that were passed.

Voxel order.  Arrays are indexed ``[k, j, i]`` (slice, row, column), the order
``numpy`` gets from Slicer's ``arrayFromVolume``; ``ijk_to_ras`` maps the
voxel index ``(i, j, k, 1)`` to RAS millimetres.  The voxel grid is written as
given, left-handed or not.  Recent Slicer versions reverse the slice order of a
left-handed grid when they load a volume (the storage node's
``ForceRightHandedIJKCoordinateSystem``, on by default): the loaded IJK-to-RAS
matrix and array then differ from the file's, but every voxel keeps its RAS
position, so image, segments and points still coincide.

Each file is written under a temporary name in its destination directory and
renamed into place only once it is complete, so a failure leaves no partial
file behind.
"""

import json
import os
import uuid

import nrrd
import numpy as np

from .errors import AIAIFInputError

#: NRRD ``space`` of the written images (Slicer writes LPS).
NRRD_SPACE = "left-posterior-superior"

#: RAS <-> LPS: the same diagonal matrix converts both ways.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])

#: File-name endings Slicer uses to choose the reader of each file.
SEQUENCE_SUFFIX = ".seq.nrrd"
SEGMENTATION_SUFFIX = ".seg.nrrd"
MARKUPS_SUFFIX = ".mrk.json"

#: Sequence index written with every volume sequence: frame times in seconds.
SEQUENCE_INDEX_NAME = "time"
SEQUENCE_INDEX_UNIT = "s"
SEQUENCE_INDEX_TYPE = "numeric"

#: Slicer's sequence node treats numeric index values closer than this as the
#: same item (``vtkMRMLSequenceNode`` default tolerance), seconds.
SEQUENCE_INDEX_TOLERANCE_S = 0.001

#: Name of Slicer's binary labelmap segment representation.
BINARY_LABELMAP_REPRESENTATION = "Binary labelmap"

#: ``@schema`` identifier Slicer writes in markups JSON files (only a string;
#: nothing is downloaded).
MARKUPS_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                  "Resources/Schema/markups-schema-v1.0.3.json#")

_SEGMENTATION_FIELD = "Segmentation_{}"
_SEGMENT_FIELD = "Segment{}_{}"


# ---------------------------------------------------------------------------
# Shared checks and file handling
# ---------------------------------------------------------------------------

def _number_text(value):
    """Shortest text that reads back as exactly the same float."""
    return repr(float(value))


def _header_text(what, text):
    """Check that ``text`` can stand in a NRRD header line (ASCII, one line)."""
    if not isinstance(text, str):
        raise AIAIFInputError("The {} must be a string, got {!r}; pass text.".format(what, text))
    try:
        text.encode("ascii")
    except UnicodeEncodeError:
        raise AIAIFInputError("The {} {!r} has non-ASCII characters, which a NRRD header cannot hold; "
                              "use plain ASCII letters.".format(what, text)) from None
    if "\n" in text or "\r" in text:
        raise AIAIFInputError("The {} {!r} spans several lines; give it on one line.".format(what, text))
    return text


def _output_path(path, suffix, what):
    """Validated destination of a file ending in ``suffix``."""
    path = os.fspath(path)
    if not str(path).lower().endswith(suffix):
        raise AIAIFInputError("The {} file name {!r} must end in {} so that Slicer reads it as a {}; "
                              "rename it.".format(what, os.path.basename(path), suffix, what))
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise AIAIFInputError("The output directory {} does not exist; create it before writing the {}."
                              .format(directory, what))
    return path


def _write_atomically(path, suffix, write):
    """Call ``write(handle)`` on a temporary binary file, then move it to ``path``.

    The temporary file lives in the destination directory (so the final rename
    is atomic) and is removed if writing fails.
    """
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, ".{}.{}.partial{}".format(
        os.path.basename(path), uuid.uuid4().hex[:12], suffix))
    try:
        with open(temporary, "xb") as handle:
            write(handle)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _validated_ijk_to_ras(ijk_to_ras):
    """4x4 float array of an invertible affine voxel-to-RAS map."""
    try:
        matrix = np.array(ijk_to_ras, dtype=float)
    except (TypeError, ValueError):
        matrix = np.full(1, np.nan)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise AIAIFInputError("ijk_to_ras must be a finite 4x4 matrix (voxel i, j, k to RAS mm), got shape {}; "
                              "pass the volume's IJK-to-RAS matrix.".format(matrix.shape))
    if not np.array_equal(matrix[3], [0.0, 0.0, 0.0, 1.0]):
        raise AIAIFInputError("The last row of ijk_to_ras must be [0, 0, 0, 1], got {}; pass an affine "
                              "voxel-to-RAS matrix.".format(matrix[3].tolist()))
    if np.linalg.matrix_rank(matrix[:3, :3]) < 3:
        raise AIAIFInputError("The voxel axes of ijk_to_ras are degenerate (zero spacing or parallel axes); "
                              "pass a matrix whose first three columns are the i, j, k voxel steps in mm.")
    return matrix


def _nrrd_space_fields(ijk_to_ras, list_axis):
    """NRRD geometry fields (LPS) for ``ijk_to_ras``.

    ``list_axis`` is ``"first"``, ``"last"`` or ``None``: where a non-spatial
    list axis stands among the NRRD axes (fastest axis first).
    """
    directions = (_RAS_TO_LPS @ ijk_to_ras[:3, :3]).T  # row n: step of NRRD axis n (i, j, k) in LPS mm
    kinds = ["domain"] * 3
    none_row = np.full((1, 3), np.nan)
    if list_axis == "first":
        directions = np.vstack([none_row, directions])
        kinds = ["list"] + kinds
    elif list_axis == "last":
        directions = np.vstack([directions, none_row])
        kinds = kinds + ["list"]
    return {
        "space": NRRD_SPACE,
        "space directions": directions,
        "kinds": kinds,
        "space origin": _RAS_TO_LPS @ ijk_to_ras[:3, 3],
        "encoding": "gzip",
    }


def _write_nrrd(path, suffix, data, header):
    """Write ``data`` atomically as an attached-header NRRD; numpy's last axis is NRRD's first (fastest)."""
    _write_atomically(path, suffix, lambda handle: nrrd.write(handle, data, header, index_order="C"))


# ---------------------------------------------------------------------------
# Volume sequence (.seq.nrrd)
# ---------------------------------------------------------------------------

def _validated_frames(frames):
    array = np.asarray(frames)
    if array.ndim != 4 or min(array.shape) < 1:
        raise AIAIFInputError("frames must be a 4-D array (n_frames, n_slices, n_rows, n_cols) with no empty "
                              "axis, got shape {}; stack one 3-D volume per frame.".format(array.shape))
    if array.dtype.kind not in "fiu":
        raise AIAIFInputError("frames must hold real numbers, got dtype {}; convert them, e.g. with "
                              "frames.astype(numpy.float32).".format(array.dtype))
    if array.dtype.kind == "f" and array.dtype.itemsize not in (4, 8):
        array = array.astype(np.float32 if array.dtype.itemsize < 4 else np.float64)  # NRRD has float and double
    return array


def _validated_frame_times(frame_times_s, n_frames):
    try:
        times = np.array(frame_times_s, dtype=float)
    except (TypeError, ValueError):
        raise AIAIFInputError("frame_times_s must be numbers (seconds), got {!r}; pass one time per frame."
                              .format(frame_times_s)) from None
    if times.shape != (n_frames,):
        raise AIAIFInputError("frame_times_s must have one value per frame, {} in all, got shape {}; "
                              "pass the acquisition time of every frame.".format(n_frames, times.shape))
    if not np.all(np.isfinite(times)):
        raise AIAIFInputError("frame_times_s contains NaN or infinite values; pass finite times in seconds.")
    gaps = np.diff(times)
    if np.any(gaps <= 0):
        raise AIAIFInputError("frame_times_s must be strictly increasing; sort the frames by time and drop "
                              "repeated time points.")
    if np.any(gaps <= SEQUENCE_INDEX_TOLERANCE_S):
        raise AIAIFInputError("Consecutive frame times must differ by more than {} s, or Slicer merges the "
                              "frames into one; give the times in seconds.".format(SEQUENCE_INDEX_TOLERANCE_S))
    return times


def write_volume_sequence(path, frames, frame_times_s, ijk_to_ras):
    """Write a 4-D acquisition as a Slicer volume sequence (``.seq.nrrd``).

    The file is a 4-D NRRD whose axes are column i, row j, slice k and the
    sequence ("list" kind) axis, as ``vtkMRMLVolumeSequenceStorageNode``
    writes it.  Slicer loads it as a sequence node of scalar volumes whose
    index is named ``time`` in unit ``s``, numeric, with the frame times as
    index values (written with full precision, so they read back exactly).

    Parameters
    ----------
    path : str or os.PathLike
        Destination ending in ``.seq.nrrd``, in an existing directory;
        an existing file is replaced.
    frames : array_like, shape (n_frames, n_slices, n_rows, n_cols)
        Voxel values (scanner units), indexed ``[frame, k, j, i]``.  Written
        with their own numeric type (float32 stays float32).
    frame_times_s : array_like, shape (n_frames,)
        Acquisition time of each frame, s; finite and strictly increasing
        by more than ``SEQUENCE_INDEX_TOLERANCE_S`` (0.001 s) per frame.
    ijk_to_ras : array_like, shape (4, 4)
        Affine map from voxel index (i, j, k, 1) to RAS, mm; shared by all
        frames.  A left-handed grid is written as it is (see the module
        notes on how Slicer loads it).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    AIAIFInputError
        For a wrong file name or directory, wrongly shaped or non-numeric
        frames, frame times that do not match the frames, are not finite or
        not increasing, or an invalid ``ijk_to_ras``.
    """
    path = _output_path(path, SEQUENCE_SUFFIX, "volume sequence")
    data = _validated_frames(frames)
    times = _validated_frame_times(frame_times_s, data.shape[0])
    matrix = _validated_ijk_to_ras(ijk_to_ras)

    header = _nrrd_space_fields(matrix, list_axis="last")
    sequence_axis = 3  # NRRD axes: i, j, k, frame
    header.update({
        "labels": ["", "", "", SEQUENCE_INDEX_NAME],
        "units": ["", "", "", SEQUENCE_INDEX_UNIT],
        "DataNodeClassName": "vtkMRMLScalarVolumeNode",
        "axis {} index type".format(sequence_axis): SEQUENCE_INDEX_TYPE,
        "axis {} index values".format(sequence_axis): " ".join(_number_text(t) for t in times),
    })
    # C order [frame, k, j, i] makes i the fastest NRRD axis and the frame the slowest.
    _write_nrrd(path, SEQUENCE_SUFFIX, data, header)
    return path


# ---------------------------------------------------------------------------
# Segmentation (.seg.nrrd)
# ---------------------------------------------------------------------------

def _validated_colour(name, colour):
    try:
        rgb = np.array(colour, dtype=float)
    except (TypeError, ValueError):
        rgb = np.full(1, np.nan)
    if rgb.shape != (3,) or not np.all(np.isfinite(rgb)) or np.any(rgb < 0) or np.any(rgb > 1):
        raise AIAIFInputError("The colour of segment {!r} must be three numbers (red, green, blue) from 0 to 1, "
                              "got {!r}; pass e.g. (0.9, 0.3, 0.3).".format(name, colour))
    return rgb


def _validated_mask(name, mask, shape):
    array = np.asarray(mask)
    if array.ndim != 3:
        raise AIAIFInputError("The mask of segment {!r} must be a 3-D array (n_slices, n_rows, n_cols), got "
                              "shape {}; pass one boolean per voxel.".format(name, array.shape))
    if shape is not None and array.shape != shape:
        raise AIAIFInputError("The mask of segment {!r} has shape {} but the first mask has shape {}; "
                              "draw all segments on the same voxel grid.".format(name, array.shape, shape))
    if array.dtype != bool:
        if array.dtype.kind not in "biuf" or not np.all((array == 0) | (array == 1)):
            raise AIAIFInputError("The mask of segment {!r} must be boolean (or 0/1), got values other than 0 "
                                  "and 1; pass mask > 0 or a thresholded array.".format(name))
        array = array.astype(bool)
    return array


def _validated_segments(segments):
    """List of (name, bool mask, rgb) with consistent shapes and unique names."""
    try:
        items = list(segments)
    except TypeError:
        items = None
    if not items:
        raise AIAIFInputError("segments must be a non-empty list of (name, mask, colour) tuples; "
                              "pass at least one segment.")
    checked, shape = [], None
    for item in items:
        try:
            name, mask, colour = item
        except (TypeError, ValueError):
            raise AIAIFInputError("Each segment must be a (name, mask, colour) tuple, got {!r}; "
                                  "pass three items per segment.".format(type(item).__name__)) from None
        _header_text("segment name", name)
        if not name.strip():
            raise AIAIFInputError("A segment name is empty; give every segment a name, "
                                  "e.g. 'Myocardium'.")
        if any(name == other for other, _, _ in checked):
            raise AIAIFInputError("The segment name {!r} is given twice; give every segment its own name."
                                  .format(name))
        mask = _validated_mask(name, mask, shape)
        shape = mask.shape
        checked.append((name, mask, _validated_colour(name, colour)))
    return checked


def segment_layers(masks):
    """Assign segments to labelmap layers so that no voxel is claimed twice in a layer.

    Segments are placed in order, each in the first layer it does not overlap;
    masks that do not overlap at all therefore share a single layer.  This is
    how Slicer keeps overlapping segments: one 3-D labelmap per layer.

    Parameters
    ----------
    masks : sequence of numpy.ndarray of bool, each shape (n_slices, n_rows, n_cols)
        Segment masks on one voxel grid.

    Returns
    -------
    list of int
        Layer index (0-based) of each segment, in the order given.
    """
    occupied, layers = [], []
    for mask in masks:
        mask = np.asarray(mask, dtype=bool)
        for index, taken in enumerate(occupied):
            if not np.any(taken & mask):
                taken |= mask
                layers.append(index)
                break
        else:
            occupied.append(mask.copy())
            layers.append(len(occupied) - 1)
    return layers


def _extent_text(mask):
    """Slicer extent "i0 i1 j0 j1 k0 k1" of the mask's voxels (empty: "0 -1 0 -1 0 -1")."""
    if not mask.any():
        return "0 -1 0 -1 0 -1"
    k, j, i = np.nonzero(mask)
    return " ".join(str(int(v)) for v in (i.min(), i.max(), j.min(), j.max(), k.min(), k.max()))


def _reference_geometry_text(matrix, shape_kji):
    """Slicer's serialized image geometry: 16 IJK-to-RAS elements, then the extent, ';'-separated."""
    extent = (0, shape_kji[2] - 1, 0, shape_kji[1] - 1, 0, shape_kji[0] - 1)
    return "".join(_number_text(v) + ";" for v in matrix.ravel()) + "".join("{};".format(e) for e in extent)


def write_segmentation(path, segments, ijk_to_ras):
    """Write binary masks as a Slicer segmentation (``.seg.nrrd``).

    The labelmap has the voxel grid and geometry of the image the masks were
    drawn on, so every segment voxel sits on the same RAS point as the image
    voxel with the same (i, j, k).  Segments that do not overlap share one
    labelmap layer (a 3-D NRRD); overlapping segments are not refused but put
    in further layers (see ``segment_layers``), stored along a first NRRD axis
    of kind ``list`` as Slicer does.  Within a layer, segment n (0-based,
    in the order given) has label value n + 1.

    Header fields are Slicer's: ``Segmentation_MasterRepresentation``,
    ``Segmentation_ContainedRepresentationNames``,
    ``Segmentation_ReferenceImageExtentOffset`` ("0 0 0": the file covers the
    whole image), ``Segmentation_ConversionParameters`` (the image as the
    reference geometry) and per segment ``SegmentN_ID``, ``_Name``, ``_Color``,
    ``_ColorAutoGenerated``, ``_NameAutoGenerated``, ``_Extent`` (bounding
    box of the segment's voxels), ``_LabelValue`` and ``_Layer``.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ending in ``.seg.nrrd``, in an existing directory;
        an existing file is replaced.
    segments : sequence of (str, array_like, sequence of float)
        ``(name, mask, colour)`` per segment: a unique, non-empty ASCII name;
        a boolean (or 0/1) mask of shape (n_slices, n_rows, n_cols) indexed
        ``[k, j, i]``, the same shape for all segments; red, green and blue
        from 0 to 1.
    ijk_to_ras : array_like, shape (4, 4)
        Affine map from voxel index (i, j, k, 1) to RAS, mm -- the matrix of
        the image the masks belong to.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    AIAIFInputError
        For a wrong file name or directory, no segments, an empty, non-ASCII
        or repeated name, masks of differing or non-3-D shape or with values
        other than 0 and 1, colours outside 0..1, or an invalid ``ijk_to_ras``.
    """
    path = _output_path(path, SEGMENTATION_SUFFIX, "segmentation")
    checked = _validated_segments(segments)
    matrix = _validated_ijk_to_ras(ijk_to_ras)
    shape = checked[0][1].shape
    layers = segment_layers([mask for _, mask, _ in checked])
    n_layers = max(layers) + 1

    label_values, next_label = [], [1] * n_layers
    for layer in layers:
        label_values.append(next_label[layer])
        next_label[layer] += 1
    dtype = np.uint8 if max(label_values) <= np.iinfo(np.uint8).max else np.uint16
    labelmap = np.zeros(shape + (n_layers,), dtype=dtype)
    for (_, mask, _), layer, value in zip(checked, layers, label_values):
        labelmap[..., layer][mask] = value

    header = _nrrd_space_fields(matrix, list_axis="first" if n_layers > 1 else None)
    header.update({
        _SEGMENTATION_FIELD.format("MasterRepresentation"): BINARY_LABELMAP_REPRESENTATION,
        _SEGMENTATION_FIELD.format("ContainedRepresentationNames"): BINARY_LABELMAP_REPRESENTATION + "|",
        _SEGMENTATION_FIELD.format("ReferenceImageExtentOffset"): "0 0 0",
        _SEGMENTATION_FIELD.format("ConversionParameters"): "Reference image geometry|{}|{}&".format(
            _reference_geometry_text(matrix, shape),
            "IJK-to-RAS matrix and extent of the image the segments were drawn on."),
    })
    for index, ((name, mask, rgb), layer, value) in enumerate(zip(checked, layers, label_values)):
        fields = {
            "ID": "Segment_{}".format(index + 1),
            "Name": name,
            "Color": " ".join(_number_text(c) for c in rgb),
            "ColorAutoGenerated": "0",
            "NameAutoGenerated": "0",
            "Extent": _extent_text(mask),
            "LabelValue": str(value),
            "Layer": str(layer),
        }
        header.update({_SEGMENT_FIELD.format(index, key): text for key, text in fields.items()})

    # C order [k, j, i, layer]: the layer is the fastest NRRD axis, as Slicer writes it.
    _write_nrrd(path, SEGMENTATION_SUFFIX, labelmap if n_layers > 1 else labelmap[..., 0], header)
    return path


# ---------------------------------------------------------------------------
# Markups point list (.mrk.json)
# ---------------------------------------------------------------------------

def write_markups_points(path, points_ras, labels, name=None):
    """Write points as a Slicer markups point list (``.mrk.json``, type ``Fiducial``).

    The file follows Slicer's markups schema v1.0.3.  Positions are stored in
    LPS (``"coordinateSystem": "LPS"``, ``"coordinateUnits": "mm"``), converted
    from the RAS input; Slicer converts them back to RAS on loading.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ending in ``.mrk.json``, in an existing directory;
        an existing file is replaced.
    points_ras : array_like, shape (n_points, 3)
        Point positions, RAS mm; finite.
    labels : sequence of str
        One label per point, shown next to it in Slicer.
    name : str, optional
        Name of the point list node in Slicer; without it Slicer names the
        node after the file.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    AIAIFInputError
        For a wrong file name or directory, points not of shape (n, 3) or not
        finite, a number of labels different from the number of points, or a
        label or name that is not a string.
    """
    path = _output_path(path, MARKUPS_SUFFIX, "markups point list")
    try:
        points = np.array(points_ras, dtype=float)
    except (TypeError, ValueError):
        points = np.full(1, np.nan)
    if points.ndim != 2 or points.shape[1] != 3:
        raise AIAIFInputError("points_ras must be an (n_points, 3) array of RAS positions in mm, got shape {}; "
                              "pass one row (R, A, S) per point.".format(points.shape))
    if not np.all(np.isfinite(points)):
        raise AIAIFInputError("points_ras contains NaN or infinite values; pass finite RAS positions in mm.")
    if isinstance(labels, str) or not hasattr(labels, "__len__"):
        raise AIAIFInputError("labels must be a list of strings, one per point, got {!r}; wrap a single label "
                              "in a list.".format(labels))
    labels = list(labels)
    if len(labels) != len(points):
        raise AIAIFInputError("There are {} points but {} labels; pass exactly one label per point."
                              .format(len(points), len(labels)))
    if not all(isinstance(label, str) for label in labels):
        raise AIAIFInputError("Every point label must be a string; convert the labels with str().")
    if name is not None and not isinstance(name, str):
        raise AIAIFInputError("The point list name must be a string, got {!r}; pass text or None."
                              .format(name))

    control_points = [{
        "id": str(index + 1),
        "label": label,
        "description": "",
        "associatedNodeID": "",
        "position": (_RAS_TO_LPS @ point).tolist(),
        "selected": True,
        "locked": False,
        "visibility": True,
        "positionStatus": "defined",
    } for index, (point, label) in enumerate(zip(points, labels))]
    markup = {"type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": False,
              "fixedNumberOfControlPoints": False, "labelFormat": "%N-%d",
              "lastUsedControlPointNumber": len(control_points), "controlPoints": control_points}
    if name is not None:
        markup = dict({"name": name}, **markup)
    text = json.dumps({"@schema": MARKUPS_SCHEMA, "markups": [markup]}, indent=4, ensure_ascii=False)
    _write_atomically(path, MARKUPS_SUFFIX, lambda handle: handle.write((text + "\n").encode("utf-8")))
    return path

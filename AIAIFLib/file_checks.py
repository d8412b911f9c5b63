"""Checks of a study's files before any ITK or VTK reader sees them (plain Python, no Slicer).

Slicer's readers are C++: a truncated or inconsistent NRRD file can abort the
whole process (ITK's NRRD reader does, for a segmentation cut short), which
Python cannot catch.  So the command line's files are read here first, in
plain Python, and refused with one sentence when

* the file is no NRRD file, or its header is cut short or lacks a field the
  size of the data depends on (``type``, ``dimension``, ``sizes``,
  ``encoding``);
* the data hold fewer bytes than the header promises (raw data by the file
  size; gzip and bzip2 data by decompressing them as a stream, never holding
  more than one block in memory);
* the file is the wrong kind for its role: a segmentation with non-integer
  voxels (e.g. the perfusion series given as the segmentation), a perfusion
  series that is not 4-D;
* a perfusion sequence's frame times (``axis N index values``) do not
  increase strictly.  Slicer's sequence node would silently merge equal
  times and re-sort swapped ones, so this can only be seen in the file.

The NRRD header parser is deliberately small (stock Slicer has no pynrrd): it
reads only the fields the checks need, as the NRRD format defines them
(http://teem.sourceforge.net/nrrd/format.html).
"""

import bz2
import os
import re
import zlib
from typing import NamedTuple, Optional

import numpy as np

from .errors import AIAIFInputError

#: Slicer's sequence node treats numeric index values closer than this as one
#: item (``vtkMRMLSequenceNode``'s tolerance, as ``slicer_files`` writes
#: sequences), in the unit of the index.
SEQUENCE_INDEX_TOLERANCE = 0.001

#: Largest NRRD header read, bytes (project choice: a Slicer header with a few
#: hundred segments or frames is tens of kilobytes; anything longer without
#: the blank line that ends a header is not a NRRD header).
MAX_HEADER_BYTES = 4 * 1024 * 1024

#: Bytes per value of each NRRD type, by every spelling the format allows.
_TYPE_BYTES = {}
for _names, _size in (
        (("signed char", "int8", "int8_t"), 1),
        (("uchar", "unsigned char", "uint8", "uint8_t"), 1),
        (("short", "short int", "signed short", "signed short int", "int16", "int16_t"), 2),
        (("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
        (("int", "signed int", "int32", "int32_t"), 4),
        (("uint", "unsigned int", "uint32", "uint32_t"), 4),
        (("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
          "int64_t"), 8),
        (("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"), 8),
        (("float",), 4),
        (("double",), 8),
        (("block",), None)):
    _TYPE_BYTES.update(dict.fromkeys(_names, _size))
#: NRRD types of floating-point voxels (never a segmentation's labels).
FLOAT_TYPES = ("float", "double")

#: Encodings by the family whose data size can be checked.
_ENCODINGS = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2",
              "ascii": "text", "text": "text", "txt": "text", "hex": "hex"}

#: Every byte that is not a hex digit (deleted before counting hex data).
_NOT_HEX = bytes(byte for byte in range(256) if chr(byte) not in "0123456789abcdefABCDEF")

#: File endings of segmentations stored as closed surfaces (VTK XML), not NRRD.
SURFACE_SEGMENTATION_ENDINGS = (".seg.vtm", ".vtm", ".vtp")

#: Block read at a time when checking compressed data, bytes.
_CHUNK_BYTES = 1 << 20


#: (what, fix) of each file of a study, for the messages.
PERFUSION_FILE = ("perfusion volume sequence", "pass the perfusion series as a .seq.nrrd file or a DICOM folder")
SEGMENTATION_FILE = ("segmentation", "pass the segmentation as a .seg.nrrd file or a DICOM SEG")
RV_INSERTION_FILE = ("RV insertion point list", "pass the point list as a .mrk.json file or leave it out")


class NrrdHeader(NamedTuple):
    """The fields of a NRRD header that the checks need.

    Attributes
    ----------
    fields : dict of str -> str
        Field name (lower case) -> value text, e.g. ``{"type": "float"}``.
    key_values : dict of str -> str
        ``key:=value`` pairs, e.g. ``{"axis 3 index values": "0 1.2 ..."}``.
    header_bytes : int
        Bytes up to and including the blank line that ends the header.
    sizes : tuple of int
        The ``sizes`` field.
    value_bytes : int or None
        Bytes per value of the ``type`` field (None for ``block``).
    encoding : str
        ``raw``, ``gzip``, ``bzip2``, ``text`` or ``hex``.
    """

    fields: dict
    key_values: dict
    header_bytes: int
    sizes: tuple
    value_bytes: Optional[int]
    encoding: str


def existing_file(path, what, fix):
    """``path`` as a string if it names a readable, non-empty file; else an error naming the problem.

    Parameters
    ----------
    path : str or os.PathLike or None
        The path given.
    what, fix : str
        What the file is and what the user should do, for the message.

    Raises
    ------
    AIAIFInputError
        For no path, a folder, a missing, unreadable or empty file.
    """
    if path is None:
        raise AIAIFInputError("No {} file was given; {}.".format(what, fix))
    path = os.fspath(path)
    if os.path.isdir(path):
        raise AIAIFInputError("The {} path {} is a folder, not a file; {}.".format(what, path, fix))
    if not os.path.isfile(path):
        raise AIAIFInputError("The {} file {} does not exist; {}.".format(what, path, fix))
    if not os.access(path, os.R_OK):
        raise AIAIFInputError("The {} file {} cannot be read (no permission); {}.".format(what, path, fix))
    if os.path.getsize(path) == 0:
        raise AIAIFInputError("The {} file {} is empty; {}.".format(what, path, fix))
    return path


def _refuse(path, what, problem, fix):
    raise AIAIFInputError("The {} file {} {}; {}.".format(what, path, problem, fix))


def read_nrrd_header(path, what, fix):
    """Parse the header of a NRRD file without reading its data.

    Parameters
    ----------
    path : str
        An existing file.
    what : str
        What the file is, for the messages (e.g. ``"segmentation"``).
    fix : str
        What the user should do, ending the message of any error.

    Returns
    -------
    NrrdHeader

    Raises
    ------
    AIAIFInputError
        For a file that does not start like a NRRD file, a header that is cut
        short or too long, or a missing or unusable ``type``, ``dimension``,
        ``sizes`` or ``encoding``.
    """
    with open(path, "rb") as handle:
        head = handle.read(MAX_HEADER_BYTES)
    if not head.startswith(b"NRRD000"):
        _refuse(path, what, "is not a NRRD file (it does not start with NRRD000)", fix)
    ends = [index for index in (head.find(b"\n\n"), head.find(b"\r\n\r\n")) if index >= 0]
    detached = False
    if ends:
        end = min(ends)
        header_bytes = end + (2 if head[end:end + 2] == b"\n\n" else 4)
    else:  # a detached header (.nhdr) may end with the file instead of a blank line
        end = header_bytes = len(head)
        detached = True
    fields, key_values = {}, {}
    for raw_line in head[:end].decode("latin-1").splitlines()[1:]:
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if ":=" in line:
            key, value = line.split(":=", 1)
            key_values[key.strip()] = value.strip()
        elif ": " in line or line.endswith(":"):
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        else:
            _refuse(path, what, "has a damaged NRRD header (line {!r})".format(line[:40]), fix)
    if detached and "data file" not in fields and "datafile" not in fields:
        _refuse(path, what, "ends inside its NRRD header (the file is cut short)", fix)
    missing = [name for name in ("type", "dimension", "sizes", "encoding") if name not in fields]
    if missing:
        _refuse(path, what, "has a NRRD header without {} (the file is cut short or damaged)".format(
            " and ".join(repr(name) for name in missing)), fix)
    value_bytes = _TYPE_BYTES.get(fields["type"].lower(), -1)
    encoding = _ENCODINGS.get(fields["encoding"].lower())
    try:
        dimension = int(fields["dimension"])
        sizes = tuple(int(size) for size in fields["sizes"].split())
    except ValueError:
        dimension, sizes = -1, ()
    if value_bytes == -1 or encoding is None or dimension < 1 or len(sizes) != dimension or min(sizes) < 1:
        _refuse(path, what, "has an unusable NRRD header (type {!r}, encoding {!r}, dimension {!r}, sizes {!r})".format(
            fields["type"], fields["encoding"], fields["dimension"], fields["sizes"]), fix)
    return NrrdHeader(fields, key_values, header_bytes, sizes, value_bytes, encoding)


def _decompressed_bytes(handle, decompressor, needed):
    """Bytes a gzip or bzip2 stream yields (at most a little more than ``needed``) and whether it ended cleanly."""
    count = 0
    while count <= needed:
        block = handle.read(_CHUNK_BYTES)
        if not block:
            return count, False
        try:
            count += len(decompressor.decompress(block))
        except (zlib.error, OSError, EOFError, ValueError):
            return count, False
        if decompressor.eof:
            return count, True
    return count, True


def _text_values(handle, hex_digits):
    """Number of values in ASCII data (whitespace-separated), or of bytes in hex data (two digits a byte)."""
    count, partial = 0, b""
    while True:
        block = handle.read(_CHUNK_BYTES)
        if not block:
            break
        if hex_digits:
            count += len(block.translate(None, _NOT_HEX))
            continue
        words = (partial + block).split()
        partial = words.pop() if words and not block[-1:].isspace() else b""
        count += len(words)
    return count // 2 if hex_digits else count + (1 if partial else 0)


def check_nrrd_data(path, what, header, fix):
    """Refuse a NRRD file whose data are shorter than its header says.

    Parameters
    ----------
    path : str
        The file (an attached header) or its detached header.
    what : str
        What the file is, for the messages.
    header : NrrdHeader
        From ``read_nrrd_header``.
    fix : str
        What the user should do, ending the message.

    Raises
    ------
    AIAIFInputError
        For missing data, data cut short, or a detached data file that does
        not exist.
    """
    if header.value_bytes is None:
        return  # "block" data: the size is in "block size"; Slicer never writes it
    n_values = int(np.prod(np.array(header.sizes, dtype=np.int64), dtype=np.int64))
    needed = n_values * header.value_bytes
    data_path, offset = path, header.header_bytes
    data_file = header.fields.get("data file", header.fields.get("datafile"))
    if data_file is not None:
        if data_file.split()[0].upper() == "LIST" or len(data_file.split()) > 1:
            return  # several data files: left to the reader
        data_path = os.path.join(os.path.dirname(os.path.abspath(path)), data_file)
        offset = 0
        if not os.path.isfile(data_path):
            _refuse(path, what, "names the data file {}, which does not exist".format(data_file), fix)
    try:
        skip = max(int(header.fields.get("byte skip", "0")), 0)  # -1 (data at the end) counts as 0 here
    except ValueError:
        skip = 0
    unit = "bytes of data"
    with open(data_path, "rb") as handle:
        handle.seek(offset + skip)
        if header.encoding == "raw":
            available = os.path.getsize(data_path) - offset - skip
            complete = available >= needed
        elif header.encoding in ("gzip", "bzip2"):
            decompressor = (zlib.decompressobj(16 + zlib.MAX_WBITS) if header.encoding == "gzip"
                            else bz2.BZ2Decompressor())
            available, ended = _decompressed_bytes(handle, decompressor, needed)
            complete = ended and available >= needed
        elif header.encoding == "hex":
            available = _text_values(handle, hex_digits=True)
            complete = available >= needed
        else:
            available, needed, unit = _text_values(handle, hex_digits=False), n_values, "values"
            complete = available >= needed
    if not complete:
        _refuse(path, what, "holds {} of the {} {} its header announces (the file is cut short or damaged)".format(
            max(min(available, needed), 0), needed, unit), fix)


def _list_axis(header):
    """Index of the sequence ("list") axis of a 4-D NRRD: the axis of kind list, else the last one."""
    kinds = header.fields.get("kinds", "").lower().split()
    if len(kinds) == len(header.sizes) and kinds.count("list") == 1:
        return kinds.index("list")
    return len(header.sizes) - 1


def check_frame_times(path, what, header, fix_order):
    """Refuse a volume sequence file whose frame times (index values) do not increase strictly.

    Slicer's sequence node merges index values closer than
    ``SEQUENCE_INDEX_TOLERANCE`` and sorts the others, so
    repeated or swapped frame times would change the series without a word.

    Parameters
    ----------
    path : str
        The ``.seq.nrrd`` file.
    what : str
        What the file is, for the messages.
    header : NrrdHeader
        Its header (``read_nrrd_header``).
    fix_order : str
        What the user should do, ending the message.

    Raises
    ------
    AIAIFInputError
        Naming the first two frames out of order.
    """
    axis = _list_axis(header)
    text = header.key_values.get("axis {} index values".format(axis))
    if text is None or header.key_values.get("axis {} index type".format(axis), "numeric").lower() != "numeric":
        return  # frame numbers or text: checked after loading (frame_times_s)
    try:
        values = np.array([float(item) for item in text.split()])
    except ValueError:
        _refuse(path, what, "has index values that are not all numbers (axis {} index values)".format(axis), fix_order)
    if values.size != header.sizes[axis]:
        _refuse(path, what, "has {} index values for {} frames".format(values.size, header.sizes[axis]), fix_order)
    if not np.all(np.isfinite(values)):
        _refuse(path, what, "has frame times that are not finite numbers", fix_order)
    units = re.findall(r'"([^"]*)"', header.fields.get("units", ""))
    unit = units[axis] if len(units) == len(header.sizes) else ""
    tolerance = SEQUENCE_INDEX_TOLERANCE
    steps = np.diff(values)
    if np.any(steps <= tolerance):
        first = int(np.argmax(steps <= tolerance))
        relation = "the same time" if abs(steps[first]) <= tolerance else "times out of order"
        _refuse(path, what, "has {} at frames {} and {} ({:g} and {:g}{}), so Slicer would {} them".format(
            relation, first, first + 1, values[first], values[first + 1], " " + unit if unit else "",
            "merge" if relation == "the same time" else "re-sort"), fix_order)


def check_perfusion_file(path):
    """Check a ``.seq.nrrd`` perfusion file before Slicer reads it (see the module notes).

    Raises
    ------
    AIAIFInputError
        For a file that is not a complete 4-D NRRD volume sequence, or whose
        frame times do not increase strictly.
    """
    what, fix = "perfusion", "pass the perfusion series as a 4-D .seq.nrrd volume sequence saved by Slicer"
    header = read_nrrd_header(path, what, fix)
    if len(header.sizes) != 4:
        _refuse(path, what, "is a {}-D image, not a volume sequence (4-D: the frames of each slice)".format(
            len(header.sizes)), fix)
    check_nrrd_data(path, what, header, fix)
    check_frame_times(path, what, header, "give every frame its own acquisition time, in the order acquired")
    return header


def check_segmentation_file(path):
    """Check a ``.seg.nrrd`` segmentation file before Slicer reads it (see the module notes).

    Raises
    ------
    AIAIFInputError
        For a file that is not a complete NRRD labelmap of 3 or 4 (layered)
        dimensions with integer labels (a closed-surface segmentation,
        ``SURFACE_SEGMENTATION_ENDINGS``, is left to Slicer).
    """
    what, fix = "segmentation", "pass the segmentation as a .seg.nrrd file saved by Slicer"
    if path.lower().endswith(SURFACE_SEGMENTATION_ENDINGS):
        return None  # closed surfaces, read by VTK's XML readers, which report errors instead of aborting
    header = read_nrrd_header(path, what, fix)
    if header.fields["type"].lower() in FLOAT_TYPES:
        _refuse(path, what, "holds {} voxel values, so it is an image, not a segmentation (labels are integers)".format(
            header.fields["type"]), fix)
    if len(header.sizes) not in (3, 4):
        _refuse(path, what, "is a {}-D image, not a segmentation (3-D, or 4-D with layers)".format(len(header.sizes)),
                fix)
    check_nrrd_data(path, what, header, fix)
    return header


def check_volume_file(path):
    """Check a NRRD volume (named ``.nrrd`` or ``.nhdr``, or starting like one) before ITK reads it.

    Other formats are left to Slicer's reader.

    Raises
    ------
    AIAIFInputError
        For a NRRD file that is cut short or damaged.
    """
    what, fix = "volume", "pass a complete .nrrd volume"
    with open(path, "rb") as handle:
        magic = handle.read(7)
    if path.lower().endswith((".nrrd", ".nhdr")) or magic == b"NRRD000":
        check_nrrd_data(path, what, read_nrrd_header(path, what, fix), fix)


def check_fcsv_file(path):
    """Check a legacy ``.fcsv`` point list: every row that is not a comment holds id, x, y, z.

    Slicer's reader turns any text into points (a line ``a,b,c`` becomes a
    point at the origin), so a wrong file would give wrong points silently.

    Raises
    ------
    AIAIFInputError
        Naming the first row without three numeric coordinates.
    """
    what, fix = "RV insertion point list", "save the points from Slicer as a .mrk.json point list"
    with open(path, "rb") as handle:
        text = handle.read(MAX_HEADER_BYTES).decode("latin-1")
    rows = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for number, line in enumerate(rows, start=1):
        cells = line.split(",")
        try:
            coordinates = [float(cell) for cell in cells[1:4]]
        except ValueError:
            coordinates = []
        if len(coordinates) != 3 or not np.all(np.isfinite(coordinates)):
            _refuse(path, what, "has a point row without three numeric coordinates (row {}: {!r})".format(
                number, line[:40]), fix)
    if not rows:
        _refuse(path, what, "holds no points", fix)


def is_dicom_file(path):
    """True if ``path`` is a file that starts like a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    try:
        with open(os.fspath(path), "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def is_dicom_folder(path):
    """True if ``path`` names a folder: a DICOM perfusion series, read by pydicom (``dicom_io.series``)."""
    return path is not None and os.path.isdir(os.fspath(path))


def check_study_files(perfusion_path, segmentation_path, rv_insertion_path=None):
    """Check the files of a study before Slicer's readers see them.

    A perfusion folder (DICOM) and a DICOM SEG are read in Python by pydicom
    and highdicom, which raise errors instead of aborting, so they are only
    checked for existence here.

    Raises
    ------
    AIAIFInputError
        For a missing, empty or unreadable file (``existing_file``), or a
        damaged one or one of the wrong kind (``check_perfusion_file``,
        ``check_segmentation_file``, ``check_fcsv_file``).
    """
    if not is_dicom_folder(perfusion_path):
        check_perfusion_file(existing_file(perfusion_path, *PERFUSION_FILE))
    segmentation_path = existing_file(segmentation_path, *SEGMENTATION_FILE)
    if not is_dicom_file(segmentation_path):
        check_segmentation_file(segmentation_path)
    if rv_insertion_path is not None:
        rv_insertion_path = existing_file(rv_insertion_path, *RV_INSERTION_FILE)
        if rv_insertion_path.lower().endswith(".fcsv"):
            check_fcsv_file(rv_insertion_path)

"""The checks of a study's files before Slicer's readers: the small NRRD header parser and the data size."""

import bz2
import gzip
import os

import nrrd
import numpy as np
import pytest

from AIAIFLib import file_checks as fc
from AIAIFLib import slicer_files as sf
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.simulation import simulate_phantom, write_phantom


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory):
    phantom = simulate_phantom(seed=2, n_frames=20, matrix=32, pixel_mm=4.0)
    return phantom, write_phantom(phantom, tmp_path_factory.mktemp("files"))


def _write(path, data):
    with open(path, "wb") as handle:
        handle.write(data)
    return str(path)


def _nrrd(path, array, encoding, **header):
    nrrd.write(str(path), array, dict(encoding=encoding, **header))
    return str(path)


def test_header_fields_key_values_and_size_of_a_written_sequence(phantom_files):
    phantom, paths = phantom_files
    header = fc.read_nrrd_header(paths["perfusion"], "perfusion", "fix it")
    assert header.sizes == (32, 32, 3, 20) and header.value_bytes == 4 and header.encoding == "gzip"
    assert header.fields["kinds"].split() == ["domain", "domain", "domain", "list"]
    values = np.array(header.key_values["axis 3 index values"].split(), dtype=float)
    np.testing.assert_array_equal(values, phantom.frame_times_s)
    with open(paths["perfusion"], "rb") as handle:
        assert handle.read(header.header_bytes).endswith(b"\n\n")
    assert fc.check_perfusion_file(paths["perfusion"]).sizes == header.sizes
    assert fc.check_segmentation_file(paths["segmentation"]).fields["type"] == "uint8"


@pytest.mark.parametrize("encoding", ["raw", "gzip", "bzip2", "ascii", "hex"])
def test_complete_data_pass_and_data_cut_short_are_refused_for_every_encoding(tmp_path, encoding):
    array = np.arange(2 * 3 * 50, dtype=np.int16).reshape(2, 3, 50)
    if encoding == "hex":  # pynrrd writes no hex: two digits a byte, any white space between
        path = _write(tmp_path / "v.nrrd", b"NRRD0004\ntype: short\ndimension: 3\nsizes: 50 3 2\nendian: little\n"
                                           b"encoding: hex\n\n" + array.astype("<i2").tobytes().hex(" ", 4).encode())
    else:
        path = _nrrd(tmp_path / "v.nrrd", array, encoding)
    header = fc.read_nrrd_header(path, "volume", "fix it")
    fc.check_nrrd_data(path, "volume", header, "fix it")
    data = open(path, "rb").read()
    cut = _write(tmp_path / "cut.nrrd", data[:header.header_bytes + (len(data) - header.header_bytes) // 2])
    with pytest.raises(AIAIFInputError, match=r"The volume file .*cut\.nrrd holds \d+ of the (600|300) "):
        fc.check_nrrd_data(cut, "volume", fc.read_nrrd_header(cut, "volume", "fix it"), "fix it")


def test_a_header_promising_more_data_than_a_gzip_stream_holds_is_refused_without_reading_it_all(tmp_path):
    body = gzip.compress(b"\0" * 1000)
    path = _write(tmp_path / "big.nrrd", b"NRRD0004\ntype: float\ndimension: 3\nsizes: 100000 100000 100\n"
                                         b"encoding: gzip\n\n" + body)
    with pytest.raises(AIAIFInputError, match=r"holds 1000 of the 4000000000000 bytes"):
        fc.check_nrrd_data(path, "volume", fc.read_nrrd_header(path, "volume", "fix"), "fix")


def test_detached_header_checks_its_data_file(tmp_path):
    _write(tmp_path / "v.raw", bz2.compress(b"\1" * 64))
    header_text = b"NRRD0004\ntype: uchar\ndimension: 2\nsizes: 8 8\nencoding: bzip2\ndata file: v.raw\n"
    path = _write(tmp_path / "v.nhdr", header_text)  # a detached header may end without a blank line
    fc.check_nrrd_data(path, "volume", fc.read_nrrd_header(path, "volume", "fix"), "fix")
    missing = _write(tmp_path / "w.nhdr", header_text.replace(b"v.raw", b"gone.raw"))
    with pytest.raises(AIAIFInputError, match="names the data file gone.raw, which does not exist"):
        fc.check_nrrd_data(missing, "volume", fc.read_nrrd_header(missing, "volume", "fix"), "fix")


@pytest.mark.parametrize("content, problem", [
    (b"", "does not start with NRRD000"),
    (b"P5\n3 3\n255\n", "does not start with NRRD000"),
    (b"NRRD0004\ntype: float\ndimension: 3\nsizes: 2 2", "ends inside its NRRD header"),
    (b"NRRD0004\ntype: float\ndimension: 3\n\n", "without 'sizes' and 'encoding'"),
    (b"NRRD0004\ntype: float\ndimension: 3\nsizes: 2 2\nencoding: raw\n\n", "unusable NRRD header"),
    (b"NRRD0004\ntype: quaternion\ndimension: 1\nsizes: 2\nencoding: raw\n\n", "unusable NRRD header"),
    (b"NRRD0004\ntype: float\ndimension: 1\nsizes: 2\nencoding: zip\n\n", "unusable NRRD header"),
    (b"NRRD0004\ntype: float\ndimension: 1\nsizes: 2\nthis line is no field\nencoding: raw\n\n", "damaged NRRD header"),
])
def test_damaged_headers_are_refused_with_the_file_and_the_fix(tmp_path, content, problem):
    path = _write(tmp_path / "x.seg.nrrd", content)
    with pytest.raises(AIAIFInputError, match=problem) as error:
        fc.read_nrrd_header(path, "segmentation", "pass the .seg.nrrd file")
    assert str(error.value).startswith("The segmentation file " + path) and str(error.value).endswith(
        "; pass the .seg.nrrd file.")


def test_files_of_the_wrong_kind_are_refused(phantom_files, tmp_path):
    phantom, paths = phantom_files
    with pytest.raises(AIAIFInputError, match="float voxel values, so it is an image, not a segmentation"):
        fc.check_segmentation_file(paths["perfusion"])
    with pytest.raises(AIAIFInputError, match="is a 3-D image, not a volume sequence"):
        fc.check_perfusion_file(paths["segmentation"])
    flat = _nrrd(tmp_path / "flat.seg.nrrd", np.zeros((4, 4), np.uint8), "raw")
    with pytest.raises(AIAIFInputError, match="is a 2-D image, not a segmentation"):
        fc.check_segmentation_file(flat)
    assert fc.check_segmentation_file(str(tmp_path / "surfaces.seg.vtm")) is None  # left to Slicer's XML reader


def _with_index_values(source, destination, values, unit="s"):
    data = open(source, "rb").read()
    end = data.index(b"\n\n") + 2
    lines = [line for line in data[:end].decode().splitlines() if line and not line.startswith(("axis 3", "units"))]
    lines += ['units: "" "" "" "{}"'.format(unit), "axis 3 index type:=numeric",
              "axis 3 index values:=" + " ".join(values)]
    return _write(destination, ("\n".join(lines) + "\n\n").encode() + data[end:])


@pytest.mark.parametrize("edit, message", [
    (lambda v: v.__setitem__(3, v[2]), r"the same time at frames 2 and 3 .* so Slicer would merge them"),
    (lambda v: v.__setitem__(3, repr(float(v[2]) + 0.0005)), r"the same time at frames 2 and 3"),
    (lambda v: v.__setitem__(slice(3, 5), v[4:2:-1]), r"times out of order at frames 3 and 4 .* re-sort"),
    (lambda v: v.__setitem__(0, "nan"), r"not finite"),
    (lambda v: v.__setitem__(0, "first"), r"not all numbers"),
    (lambda v: v.pop(), r"19 index values for 20 frames"),
])
def test_frame_times_must_increase_strictly_as_slicer_keeps_them(phantom_files, tmp_path, edit, message):
    phantom, paths = phantom_files
    values = [repr(float(t)) for t in phantom.frame_times_s]
    edit(values)
    path = _with_index_values(paths["perfusion"], tmp_path / "p.seq.nrrd", values)
    with pytest.raises(AIAIFInputError, match=message):
        fc.check_perfusion_file(path)


def test_frame_times_in_milliseconds_and_frame_numbers_pass(phantom_files, tmp_path):
    phantom, paths = phantom_files
    in_ms = [repr(1000 * float(t)) for t in phantom.frame_times_s]
    fc.check_perfusion_file(_with_index_values(paths["perfusion"], tmp_path / "ms.seq.nrrd", in_ms, unit="ms"))
    numbers = [str(n) for n in range(20)]
    fc.check_perfusion_file(_with_index_values(paths["perfusion"], tmp_path / "n.seq.nrrd", numbers, unit=""))


def test_existing_file_names_folders_missing_and_empty_files(tmp_path):
    what = ("segmentation", "pass the .seg.nrrd file")
    with pytest.raises(AIAIFInputError, match="No segmentation file was given"):
        fc.existing_file(None, *what)
    with pytest.raises(AIAIFInputError, match="is a folder, not a file"):
        fc.existing_file(tmp_path, *what)
    with pytest.raises(AIAIFInputError, match="does not exist"):
        fc.existing_file(tmp_path / "none.seg.nrrd", *what)
    with pytest.raises(AIAIFInputError, match="is empty"):
        fc.existing_file(_write(tmp_path / "e.seg.nrrd", b""), *what)
    assert fc.existing_file(_write(tmp_path / "s.seg.nrrd", b"x"), *what) == str(tmp_path / "s.seg.nrrd")


def test_legacy_point_lists_need_numeric_coordinates(tmp_path):
    good = _write(tmp_path / "good.fcsv", b"# Markups fiducial file version = 4.11\n# columns = id,x,y,z\n"
                                          b"p1,1.5,-2,3e1,0,0,0,1,1,1,0,F-1,,\n")
    fc.check_fcsv_file(good)
    for name, content, problem in (("text.fcsv", b"not,a,point\n", r"row 1: 'not,a,point'"),
                                   ("short.fcsv", b"p1,1,2\n", "three numeric coordinates"),
                                   ("none.fcsv", b"# only a comment\n", "holds no points")):
        with pytest.raises(AIAIFInputError, match=problem):
            fc.check_fcsv_file(_write(tmp_path / name, content))


def test_study_files_are_checked_before_slicer_sees_them(phantom_files, tmp_path):
    _, paths = phantom_files
    fc.check_study_files(paths["perfusion"], paths["segmentation"], paths["rv_insertion"])
    cut = _write(tmp_path / "cut.seg.nrrd", open(paths["segmentation"], "rb").read()[:-40])
    with pytest.raises(AIAIFInputError, match="The segmentation file .* cut short"):
        fc.check_study_files(paths["perfusion"], cut)
    # A folder is a DICOM series and a DICOM file a SEG: pydicom reads them later, in Python (no C++ abort).
    assert fc.is_dicom_folder(str(tmp_path)) and not fc.is_dicom_folder(paths["perfusion"])
    fc.check_study_files(str(tmp_path), paths["segmentation"])
    dicom = _write(tmp_path / "seg.dcm", b"\0" * 128 + b"DICM" + b"\0" * 64)
    assert fc.is_dicom_file(dicom) and not fc.is_dicom_file(paths["segmentation"])
    fc.check_study_files(paths["perfusion"], dicom)
    with pytest.raises(AIAIFInputError, match="segmentation file .* does not exist; pass the segmentation as a "
                                              r"\.seg\.nrrd file or a DICOM SEG"):
        fc.check_study_files(str(tmp_path), str(tmp_path / "none.seg.nrrd"))


def test_volume_files_are_checked_when_they_are_nrrd(phantom_files, tmp_path):
    phantom, _ = phantom_files
    path = sf.write_volume_sequence(tmp_path / "v.seq.nrrd", phantom.frames, phantom.frame_times_s,
                                    phantom.ijk_to_ras)
    fc.check_volume_file(path)
    with pytest.raises(AIAIFInputError, match="volume file .* cut short"):
        fc.check_volume_file(_write(tmp_path / "cut.nrrd", open(path, "rb").read()[:os.path.getsize(path) // 3]))
    fc.check_volume_file(_write(tmp_path / "image.mha", b"ObjectType = Image\n"))  # other formats: Slicer's reader

"""DICOM in and out (``AIAIFLib.dicom_io``): the phantom as DICOM and read back, bad folders, SEG, Parametric Map.

The phantom is written in both layouts by ``dicom_io.phantom`` and read back
by ``dicom_io.series``; the bad folders are copies of it with one header
edited by pydicom, each as a scanner or a careless export would make it.
"""

import os
import shutil

import numpy as np
import pydicom
import pytest

from AIAIFLib import constants as K
from AIAIFLib.dicom_io import parametric_map, phantom as dicom_phantom, seg, series
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.simulation import simulate_phantom
from dicom_helpers import edit_images, second_series_copy, strip_acquisition_times

N_FRAMES = 24
N_PD = dicom_phantom.DEFAULT_PROTON_DENSITY_FRAMES


@pytest.fixture(scope="module")
def phantom():
    return simulate_phantom(seed=4, ischemic="LAD", n_frames=N_FRAMES, matrix=48, pixel_mm=3.5)


@pytest.fixture(scope="module", params=dicom_phantom.DICOM_LAYOUTS)
def written(request, phantom, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    return request.param, dicom_phantom.write_phantom_dicom(phantom, str(folder), layout=request.param)


@pytest.fixture(scope="module")
def per_slice_original(phantom, tmp_path_factory):
    return dicom_phantom.write_phantom_dicom(phantom, str(tmp_path_factory.mktemp("original") / "study"),
                                             layout="per-slice")


@pytest.fixture
def per_slice_copy(per_slice_original, tmp_path):
    """A fresh per-slice DICOM copy of the phantom to damage, and its image files by slice and frame."""
    source = os.path.dirname(per_slice_original["perfusion"])
    shutil.copytree(source, str(tmp_path / "study"))

    def moved(path):
        return os.path.join(str(tmp_path / "study"), os.path.relpath(path, source))

    return {"perfusion": moved(per_slice_original["perfusion"]),
            "segmentation": moved(per_slice_original["segmentation"]),
            "images": [[moved(path) for path in files] for files in per_slice_original["images"]]}


def _ras_centre(ijk_to_ras):
    return ijk_to_ras[:3, 3]


def _phantom_slice_of(phantom, ijk_to_ras):
    """Index k of the phantom slice whose plane holds the read slice's first voxel."""
    ijk = np.linalg.solve(phantom.ijk_to_ras[:3, :3], _ras_centre(ijk_to_ras) - phantom.ijk_to_ras[:3, 3])
    np.testing.assert_allclose(ijk, np.round(ijk), atol=1e-4)
    return int(round(ijk[2]))


def test_both_layouts_read_back_the_stored_frames_times_geometry_and_header(phantom, written):
    layout, paths = written
    study = series.read_perfusion_folder(paths["perfusion"])
    stored = dicom_phantom.stored_phantom(phantom)
    assert len(study.slices) == 3
    assert study.notes["layout"] == layout
    assert len(study.notes["series_instance_uids"]) == (3 if layout == "per-slice" else 1)
    positions = [item.position_mm for item in study.slices]
    assert positions == sorted(positions)
    for item in study.slices:
        k = _phantom_slice_of(phantom, item.ijk_to_ras)
        assert item.frames.shape == (N_FRAMES + N_PD, 48, 48)
        np.testing.assert_array_equal(item.frames[N_PD:], stored.frames[:, k])
        np.testing.assert_allclose(item.ijk_to_ras[:3, :2], phantom.ijk_to_ras[:3, :2], atol=1e-6)
        times = item.times_s[N_PD:] - item.times_s[N_PD]
        np.testing.assert_allclose(times, phantom.frame_times_s - phantom.frame_times_s[0], atol=2e-6)
        assert item.header_proton_density == (True,) * N_PD + (False,) * N_FRAMES
    assert study.header_proton_density_frames == N_PD
    acquisition = phantom.acquisition
    assert study.header["field_strength_t"] == acquisition["field_strength_t"]
    assert study.header["repetition_time_s"] == pytest.approx(acquisition["repetition_time_s"], rel=1e-8)
    assert study.header["flip_angle_deg"] == pytest.approx(acquisition["flip_angle_nominal_deg"], rel=1e-8)
    assert study.header["saturation_time_s"] == pytest.approx(acquisition["saturation_time_s"], rel=1e-8)
    assert study.notes["echo_time_s"] == pytest.approx(acquisition["echo_time_s"], rel=1e-8)
    assert study.notes["frame_times_from_dicom"] == "AcquisitionDate+AcquisitionTime"


def test_proton_density_frames_are_brighter_than_the_saturated_baseline(phantom, written):
    _, paths = written
    study = series.read_perfusion_folder(paths["perfusion"])
    level = study.slices[0].frames.mean(axis=(1, 2))
    assert np.all(level[:N_PD] > 2.0 * np.median(level[N_PD:N_PD + 5]))


def test_frames_are_ordered_by_acquisition_time_not_by_file_name(phantom, per_slice_copy, tmp_path):
    reference = series.read_perfusion_folder(per_slice_copy["perfusion"])
    files = per_slice_copy["images"][0]
    for n, path in enumerate(files):  # reverse the file names of slice 1
        os.rename(path, path + ".tmp{}".format(n))
    for n, path in enumerate(files):
        os.rename(path + ".tmp{}".format(n), files[-1 - n])
    shuffled = series.read_perfusion_folder(per_slice_copy["perfusion"])
    np.testing.assert_array_equal(shuffled.slices[0].frames, reference.slices[0].frames)
    np.testing.assert_array_equal(shuffled.slices[0].times_s, reference.slices[0].times_s)


def test_cumulative_trigger_times_are_used_when_there_is_no_acquisition_time(per_slice_copy):
    def cumulative(dataset, k, n):
        del dataset.AcquisitionTime, dataset.AcquisitionDate
        dataset.TriggerTime = "{:.3f}".format(1000.0 * (n * 0.8) + 50.0 * k)

    edit_images(per_slice_copy, cumulative)
    study = series.read_perfusion_folder(per_slice_copy["perfusion"])
    assert study.notes["frame_times_from_dicom"] == "TriggerTime"
    for item in study.slices:  # each slice keeps its own delay within the heartbeat
        np.testing.assert_allclose(item.times_s - item.times_s[0], 0.8 * np.arange(N_FRAMES + N_PD), atol=1e-9)
    assert min(item.times_s[0] for item in study.slices) == 0.0
    assert max(item.times_s[0] for item in study.slices) == pytest.approx(0.1)


def test_a_trigger_delay_that_repeats_every_beat_is_no_frame_time(per_slice_copy):
    edit_images(per_slice_copy, strip_acquisition_times)
    with pytest.raises(AIAIFInputError, match=r"no usable frame times: .* has no acquisition time .*TriggerTime does "
                                              r"not increase"):
        series.read_perfusion_folder(per_slice_copy["perfusion"])


def test_a_repetition_time_that_is_no_readout_tr_is_left_out_with_a_note(per_slice_copy):
    edit_images(per_slice_copy, lambda dataset, k, n: setattr(dataset, "RepetitionTime", "850"))
    study = series.read_perfusion_folder(per_slice_copy["perfusion"])
    assert "repetition_time_s" not in study.header
    assert "850 ms is no FLASH readout TR" in study.notes["repetition_time_note"]


def test_a_field_strength_in_gauss_is_converted(per_slice_copy):
    edit_images(per_slice_copy, lambda dataset, k, n: setattr(dataset, "MagneticFieldStrength", "15000"))
    study = series.read_perfusion_folder(per_slice_copy["perfusion"])
    assert study.header["field_strength_t"] == 1.5


BAD_FOLDERS = {
    "rest and stress of one slice (mixed series)": (
        lambda paths: second_series_copy(paths, 1, os.path.join(paths["perfusion"], "rest")),
        r"mixes series: .* both image the slice at"),
    "a slice of another study (mixed series)": (
        lambda paths: second_series_copy(paths, 1, os.path.join(paths["perfusion"], "other"), new_study=True),
        r"mixes two studies \(StudyInstanceUID\)"),
    "one image with another pixel size (inconsistent geometry)": (
        lambda paths: edit_images(paths, lambda d, k, n: setattr(d, "PixelSpacing", ["3.2", "3.2"]),
                            lambda k, n: (k, n) == (1, 5)),
        r"inconsistent geometry: .* different pixel sizes"),
    "one image tilted (inconsistent geometry)": (
        lambda paths: edit_images(paths, lambda d, k, n: setattr(d, "ImageOrientationPatient",
                                                            ["1", "0", "0", "0", "1", "0"]),
                            lambda k, n: (k, n) == (2, 3)),
        r"inconsistent geometry: .* oriented differently"),
    "one slice shifted in-plane (inconsistent geometry)": (
        lambda paths: edit_images(paths, lambda d, k, n: setattr(d, "ImagePositionPatient", [
            "{:.6f}".format(float(v) + 10.0 * float(d.ImageOrientationPatient[i])) for i, v in
            enumerate(d.ImagePositionPatient)]), lambda k, n: k == 0),
        r"inconsistent geometry: .* shifted 10\.00 mm in-plane"),
    "a segmentation in the image folder (non-MR object)": (
        lambda paths: shutil.copy(paths["segmentation"], os.path.join(paths["perfusion"], "seg.dcm")),
        r"holds a SEG object that is not an MR image \(Segmentation Storage\)"),
    "no acquisition time in one image (missing timing)": (
        lambda paths: edit_images(paths, strip_acquisition_times, lambda k, n: (k, n) == (0, 7)),
        r"no usable frame times: IM_0008\.dcm has no acquisition time"),
    "a frame missing in one slice": (
        lambda paths: os.remove(paths["images"][2][9]),
        r"mixes series: the slice at .* has {} frames but the slice at .* has {}".format(N_FRAMES + N_PD - 1,
                                                                                       N_FRAMES + N_PD)),
    "the same image twice": (
        lambda paths: shutil.copy(paths["images"][0][3], os.path.join(paths["perfusion"], "again.dcm")),
        r"holds the same image twice"),
    "two images of a slice at one time": (
        lambda paths: edit_images(paths, lambda d, k, n: setattr(d, "AcquisitionTime", pydicom.dcmread(
            paths["images"][0][3]).AcquisitionTime), lambda k, n: (k, n) == (0, 4)),
        r"Two images of the slice at .* have the same AcquisitionDate\+AcquisitionTime"),
}


@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_bad_folders_are_refused_with_one_sentence(case, per_slice_copy):
    damage, pattern = BAD_FOLDERS[case]
    damage(per_slice_copy)
    with pytest.raises(AIAIFInputError, match=pattern) as error:
        series.read_perfusion_folder(per_slice_copy["perfusion"])
    message = str(error.value)
    assert message.endswith(".") and "; " in message and "\n" not in message and len(message) < 600


def test_a_folder_without_mr_images_is_refused_and_other_files_are_skipped(per_slice_copy, tmp_path):
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "README.txt").write_text("not an image\n")
    with pytest.raises(AIAIFInputError, match=r"holds no DICOM MR images \(1 other files\)"):
        series.read_perfusion_folder(str(empty))
    (tmp_path / "study" / "perfusion" / "README.txt").write_text("exported by the scanner\n")
    study = series.read_perfusion_folder(per_slice_copy["perfusion"])
    assert study.notes["non_dicom_files_skipped"] == 1


def test_time_values_of_dicom_are_parsed():
    assert series.seconds_of_day("101502.250000") == pytest.approx(36902.25)
    assert series.seconds_of_day("10:15:02") == pytest.approx(36902.0)
    assert series.seconds_of_day("1015") == pytest.approx(36900.0)
    assert series.seconds_of_day("25") is None and series.seconds_of_day("") is None
    assert series.date_time_s("20220301101502.5+0100") - series.date_time_s("20220301101500") == pytest.approx(2.5)
    assert series.date_time_s("20220302000000") - series.date_time_s("20220301235959") == pytest.approx(1.0)


def test_the_segmentation_reads_back_as_the_phantom_masks(phantom, written):
    _, paths = written
    segments, ijk_to_ras = seg.read_roi_segmentation(paths["segmentation"])
    assert [name for name, _ in segments] == [K.LV_BLOOD_POOL_SEGMENT_NAME, K.MYOCARDIUM_SEGMENT_NAME]
    # The same voxels by RAS position: map the read grid onto the phantom's.
    to_phantom = np.linalg.inv(phantom.ijk_to_ras) @ ijk_to_ras
    np.testing.assert_allclose(to_phantom, np.round(to_phantom), atol=1e-5)
    for (_, mask), truth in zip(segments, (phantom.lv_blood_mask, phantom.myocardium_mask)):
        k, j, i = np.nonzero(mask)
        pk = np.round(to_phantom @ np.stack([i, j, k, np.ones_like(i)]))[2].astype(int)
        placed = np.zeros_like(truth)
        placed[pk, j, i] = True
        np.testing.assert_array_equal(placed, truth)


def test_an_mr_image_given_as_segmentation_is_refused(written):
    _, paths = written
    with pytest.raises(AIAIFInputError, match=r"is a MR object, not a segmentation"):
        seg.read_roi_segmentation(paths["images"][0][0])


@pytest.fixture(scope="module")
def mbf_map(phantom):
    """A map on the phantom grid: the true MBF, NaN outside the myocardium."""
    return np.asarray(phantom.mbf_ml_min_g, dtype=np.float32)


def test_parametric_map_validates_references_every_series_and_reads_back(phantom, written, mbf_map, tmp_path):
    import highdicom as hd

    layout, paths = written
    study = series.read_perfusion_folder(paths["perfusion"])
    references = [item.paths[N_PD] for item in study.slices]
    path = parametric_map.write_mbf_parametric_map(str(tmp_path / "mbf.dcm"), mbf_map, phantom.ijk_to_ras,
                                                   references)
    dataset = pydicom.dcmread(path)
    parsed = hd.pm.ParametricMap.from_dataset(dataset)  # highdicom's own parsing and checks
    assert parsed.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    assert {item.SeriesInstanceUID for item in dataset.ReferencedSeriesSequence} == set(
        study.notes["series_instance_uids"])
    values, positions, unit = parametric_map.read_mbf_parametric_map(path)
    assert unit == "mL/min/g"
    mapping = dataset.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.MeasurementUnitsCodeSequence[0].CodingSchemeDesignator == "UCUM"
    for frame, position in zip(values, positions):
        centre_ras = position * np.array([-1.0, -1.0, 1.0])
        k = _phantom_slice_of(phantom, np.c_[np.eye(4)[:, :3], np.r_[centre_ras, 1.0]])
        np.testing.assert_array_equal(np.isnan(frame), np.isnan(mbf_map[k]))
        np.testing.assert_array_equal(frame[~np.isnan(frame)], mbf_map[k][~np.isnan(mbf_map[k])])


def test_parametric_map_refuses_a_map_off_the_source_planes(phantom, written, mbf_map, tmp_path):
    _, paths = written
    study = series.read_perfusion_folder(paths["perfusion"])
    shifted = np.array(phantom.ijk_to_ras)
    shifted[:3, 3] += 0.5 * shifted[:3, 2]
    with pytest.raises(ValueError, match="lies on no source image's plane"):
        parametric_map.write_mbf_parametric_map(str(tmp_path / "x.dcm"), mbf_map, shifted,
                                                [item.paths[N_PD] for item in study.slices])


def test_enhanced_mr_multiframe_images_read_like_the_classic_ones(per_slice_original, tmp_path):
    from dicom_helpers import enhanced_copy

    enhanced_copy(per_slice_original, str(tmp_path / "enhanced"))
    classic = series.read_perfusion_folder(per_slice_original["perfusion"])
    enhanced = series.read_perfusion_folder(str(tmp_path / "enhanced"))
    assert enhanced.notes["frame_times_from_dicom"] == "FrameAcquisitionDateTime"
    assert enhanced.header == classic.header
    assert enhanced.header_proton_density_frames == N_PD
    assert enhanced.notes["echo_time_s"] == pytest.approx(classic.notes["echo_time_s"])
    for a, b in zip(enhanced.slices, classic.slices):
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_allclose(a.times_s, b.times_s, atol=1e-6)
        np.testing.assert_allclose(a.ijk_to_ras, b.ijk_to_ras, atol=1e-9)
        assert a.frame_numbers == tuple(range(N_FRAMES + N_PD))

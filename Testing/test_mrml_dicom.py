"""DICOM studies through the MRML adapter (``AIAIFLib.mrml.dicom``) and ``quantify_files``, with Slicer's MRML.

The same phantom is written as a ``.seq.nrrd`` of exactly the values its
DICOM images store (``dicom_io.phantom.stored_phantom``) and as DICOM in
both layouts, with proton-density frames leading each slice.
"""

import json
import os

import numpy as np
import pytest
import slicer

from AIAIFLib import mrml
from AIAIFLib.dicom_io import phantom as dicom_phantom
from AIAIFLib.dicom_io.series import read_perfusion_folder
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.mrml import dicom as mrml_dicom
from AIAIFLib.pipeline import QuantificationParameters
from AIAIFLib.simulation import simulate_phantom, write_phantom

N_FRAMES = 24


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """The phantom as Slicer files (stored values) and as DICOM in both layouts."""
    root = tmp_path_factory.mktemp("copies")
    phantom = simulate_phantom(seed=6, ischemic="RCA", n_frames=N_FRAMES, matrix=48, pixel_mm=3.5)
    (root / "nrrd").mkdir()
    paths = {"nrrd": write_phantom(dicom_phantom.stored_phantom(phantom), str(root / "nrrd"))}
    for layout in dicom_phantom.DICOM_LAYOUTS:
        paths[layout] = dicom_phantom.write_phantom_dicom(phantom, str(root / layout), layout=layout)
    return phantom, paths


def _quantify(tmp_path, name, perfusion, segmentation, points, **options):
    out = tmp_path / name
    out.mkdir()
    dicom_output = options.pop("dicom_output", False)
    result = mrml.quantify_files(perfusion, segmentation, str(out), QuantificationParameters(**options),
                                 rv_insertion_path=points, dicom_output=dicom_output)
    return result, out


def test_dicom_and_nrrd_copies_give_the_same_mbf(copies, tmp_path):
    phantom, paths = copies
    header = read_perfusion_folder(paths["per-slice"]["perfusion"]).header
    points = paths["nrrd"]["rv_insertion"]
    nrrd, _ = _quantify(tmp_path, "nrrd", paths["nrrd"]["perfusion"], paths["nrrd"]["segmentation"], points,
                        **header)  # the same acquisition, given as options
    reference = np.asarray(nrrd.segments["mbf_mean"], dtype=float)
    for layout in dicom_phantom.DICOM_LAYOUTS:
        result, out = _quantify(tmp_path, layout, paths[layout]["perfusion"], paths[layout]["segmentation"], points,
                                dicom_output=True)
        np.testing.assert_allclose(result.segments["mbf_mean"], reference, rtol=1e-3)
        assert sorted(os.listdir(out)) == ["aif.csv", "mbf.dcm", "mbf.nrrd", "report.png", "segments.csv",
                                           "summary.json"]
        summary = json.load(open(out / "summary.json"))
        acquisition = summary["parameters"]["acquisition"]
        assert acquisition["field_strength_t"] == {"value": header["field_strength_t"], "source": "header"}
        assert {acquisition[name]["source"] for name in header} <= {"header", "calibrated"}  # readout: calibrated
        assert nrrd.summary["parameters"]["acquisition"]["field_strength_t"]["source"] == "option"
        assert summary["inputs"]["dicom"]["layout"] == layout
        assert summary["inputs"]["n_frames"] == N_FRAMES


def test_proton_density_frames_are_left_out_and_noted_in_the_summary(copies, tmp_path):
    phantom, paths = copies
    result, _ = _quantify(tmp_path, "pd", paths["single-series"]["perfusion"],
                          paths["single-series"]["segmentation"], paths["nrrd"]["rv_insertion"], aif_mode="saturated")
    acquisition = result.summary["parameters"]["acquisition"]  # no blood-pool calibration with this AIF
    header = read_perfusion_folder(paths["single-series"]["perfusion"]).header
    for name in header:
        assert acquisition[name] == {"value": pytest.approx(header[name]), "source": "header"}
    record = result.summary["inputs"]["proton_density_frames"]
    assert record["n_left_out"] == dicom_phantom.DEFAULT_PROTON_DENSITY_FRAMES
    assert record["decided_by"] == "header and images agree" and "warning" not in record
    assert min(record["signal_ratios"][:2]) > 2.0
    times = result.summary["inputs"]["frame_times_s"]
    np.testing.assert_allclose(times, phantom.frame_times_s - phantom.frame_times_s[0], atol=1e-4)  # rounded


def test_an_explicit_option_wins_over_the_header(copies, tmp_path):
    _, paths = copies
    result, _ = _quantify(tmp_path, "option", paths["per-slice"]["perfusion"], paths["per-slice"]["segmentation"],
                          None, aif_mode="saturated", field_strength_t=1.5, flip_angle_deg=20.0)
    acquisition = result.summary["parameters"]["acquisition"]
    assert acquisition["field_strength_t"] == {"value": 1.5, "source": "option"}
    assert acquisition["t1_blood_s"]["value"] == pytest.approx(1.435)
    assert acquisition["flip_angle_deg"]["source"] in ("option", "calibrated")
    assert acquisition["repetition_time_s"]["source"] in ("header", "calibrated")


def test_the_dicom_seg_gives_the_masks_of_the_seg_nrrd(copies):
    _, paths = copies
    masks = []
    for segmentation in (paths["per-slice"]["segmentation"], paths["nrrd"]["segmentation"]):
        scene = slicer.vtkMRMLScene()
        nodes = mrml.load_study_files(scene, paths["per-slice"]["perfusion"], segmentation)
        study = mrml.study_from_nodes(nodes.sequence, nodes.segmentation)
        masks.append((study.blood_pool_mask, study.myocardium_mask))
    for dicom_mask, nrrd_mask in zip(*masks):
        assert dicom_mask.any()
        np.testing.assert_array_equal(dicom_mask, nrrd_mask)


def test_the_header_travels_with_the_slice_sequences(copies):
    _, paths = copies
    scene = slicer.vtkMRMLScene()
    sequences = mrml_dicom.load_dicom_study(scene, paths["per-slice"]["perfusion"])
    assert len(sequences) == 3 and all(s.GetNumberOfDataNodes() == N_FRAMES + 2 for s in sequences)
    header, count, notes = mrml_dicom.dicom_attributes(sequences)
    assert header == read_perfusion_folder(paths["per-slice"]["perfusion"]).header
    assert count == dicom_phantom.DEFAULT_PROTON_DENSITY_FRAMES
    assert len(notes["reference_images"]) == 3 and all(os.path.isfile(p) for p in notes["reference_images"])
    assert mrml_dicom.dicom_attributes([slicer.vtkMRMLSequenceNode()]) == ({}, None, None)


def test_a_dicom_output_needs_a_dicom_series(copies, tmp_path):
    _, paths = copies
    with pytest.raises(AIAIFInputError, match=r"is not a DICOM folder; pass the DICOM folder or leave out "
                                              r"--dicom-output"):
        _quantify(tmp_path, "refused", paths["nrrd"]["perfusion"], paths["nrrd"]["segmentation"], None,
                  dicom_output=True)
    assert os.listdir(tmp_path / "refused") == []

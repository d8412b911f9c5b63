"""Tests of AIAIFLib.report: every figure is written as a real, non-blank PNG, without pyplot."""

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from AIAIFLib import evaluation, report
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.simulation import simulate_aif_pairs


def assert_png(path):
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200 and image.shape[2] in (3, 4)
    rgb = image[..., :3]
    assert np.mean(np.any(rgb < 0.9, axis=-1)) > 0.01  # something is drawn on the white background
    assert rgb.std() > 0.05


@pytest.fixture(scope="module")
def curves():
    times = np.tile(np.arange(0.0, 40.0, 0.8), (6, 1))
    reference = 0.1 + np.exp(-0.5 * ((times - 10.0) / np.linspace(1.5, 3.0, 6)[:, None]) ** 2)
    test = np.minimum(reference, np.linspace(0.5, 1.0, 6)[:, None])
    return times, reference, test


def test_plot_saturation_examples(tmp_path):
    pairs = {field: simulate_aif_pairs(3, n_frames=40, seed=1, field_strength_t=field) for field in (1.5, 3.0)}
    path = str(tmp_path / "saturation.png")
    report.plot_saturation_examples(path, pairs)
    assert_png(path)


def test_plot_example_aifs_with_arrays_and_lists(tmp_path, curves):
    times, reference, test = curves
    path = str(tmp_path / "examples.png")
    report.plot_example_aifs(path, times, reference, test)
    assert_png(path)
    ragged = str(tmp_path / "ragged.png")
    report.plot_example_aifs(ragged, [times[0], times[1][:30]], [reference[0], reference[1][:30]],
                             [test[0], test[1][:30]], "Reference", "Test")
    assert_png(ragged)


def test_plot_aif_metric_boxplots(tmp_path, curves):
    path = str(tmp_path / "boxplots.png")
    report.plot_aif_metric_boxplots(path, evaluation.analyse_aifs(*curves), "True AIF", "Saturated AIF")
    assert_png(path)


def test_plot_mbf_agreement(tmp_path):
    rng = np.random.default_rng(3)
    reference = rng.uniform(0.8, 3.5, (6, 16))
    test = 0.9 * reference + 0.3 + rng.normal(0.0, 0.2, reference.shape)
    path = str(tmp_path / "mbf.png")
    report.plot_mbf_agreement(path, evaluation.analyse_mbf(reference, test), "True AIF", "Saturated AIF")
    assert_png(path)


def test_unwritable_path_is_an_input_error(tmp_path, curves):
    with pytest.raises(AIAIFInputError, match="Cannot write"):
        report.plot_example_aifs(str(tmp_path / "no" / "such" / "dir.png"), *curves)


def test_report_does_not_import_pyplot():
    code = "import sys, AIAIFLib.report; print('matplotlib.pyplot' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"

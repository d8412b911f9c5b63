"""Proton-density frames at the start of a series (``AIAIFLib.proton_density``)."""

import numpy as np
import pytest

from AIAIFLib import proton_density as pd
from AIAIFLib.simulation import simulate_phantom


@pytest.fixture(scope="module")
def frames():
    return simulate_phantom(seed=2, n_frames=24, matrix=48, pixel_mm=3.5).frames


def _with_leading(frames, n, factor):
    return np.concatenate([np.repeat(frames[:1] * factor, n, axis=0), frames])


def test_a_series_without_proton_density_frames_keeps_every_frame(frames):
    found = pd.leading_proton_density_frames(frames)
    assert found.count == 0 and found.image_count == 0 and found.warning is None
    assert max(found.signal_ratios) < 1.1  # the baseline frames differ by noise only
    assert found.summary()["decided_by"] == "none found"


@pytest.mark.parametrize("n", [1, 2, 3])
def test_brighter_leading_frames_are_found_by_the_images(frames, n):
    found = pd.leading_proton_density_frames(_with_leading(frames, n, 4.0))
    assert found.count == n == found.image_count
    assert found.summary()["decided_by"] == "images" and found.summary()["n_left_out"] == n


def test_a_frame_only_slightly_brighter_is_no_proton_density_frame(frames):
    assert pd.leading_proton_density_frames(_with_leading(frames, 1, 1.3)).count == 0


def test_the_header_decides_and_a_disagreement_warns(frames):
    agree = pd.leading_proton_density_frames(_with_leading(frames, 2, 4.0), header_count=2)
    assert agree.count == 2 and agree.warning is None and agree.summary()["decided_by"] == "header and images agree"
    # A vendor that stores PD frames at the flip angle of the others: the header sees none, the images two.
    images_only = pd.leading_proton_density_frames(_with_leading(frames, 2, 4.0), header_count=0)
    assert images_only.count == 2 and "header marks 0 leading frames" in images_only.warning
    # A PD frame that is not brighter (e.g. a dark coil setting): the header still decides.
    header_only = pd.leading_proton_density_frames(_with_leading(frames, 1, 1.0), header_count=1)
    assert header_only.count == 1 and "the images 0" in header_only.warning


def test_short_series_examine_no_more_than_they_have():
    flat = np.ones((4, 2, 3, 3))
    found = pd.leading_proton_density_frames(flat)
    assert found.count == 0 and found.signal_ratios == []


def test_a_uniform_image_is_all_tissue():
    flat = np.ones((12, 2, 3, 3))
    flat[0] *= 3.0
    assert pd.leading_proton_density_frames(flat).count == 1


def test_air_does_not_dilute_the_ratio(frames):
    # Air keeps its noise in a PD frame; only tissue brightens.  Most of a large field of view is air.
    padded = np.pad(frames, ((0, 0), (0, 0), (60, 60), (60, 60)), constant_values=1.0)
    leading = padded[:1].copy()
    leading[:, :, 60:-60, 60:-60] *= 3.0
    found = pd.leading_proton_density_frames(np.concatenate([leading, padded]))
    assert found.count == 1 and found.signal_ratios[0] > 2.0

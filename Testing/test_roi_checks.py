"""Cross-checks that ROIs and RV insertion points belong to the study's images."""

import numpy as np
import pytest

from AIAIFLib import roi_checks as rc
from AIAIFLib.simulation import simulate_phantom


@pytest.fixture(scope="module", params=[(3.0, "none"), (1.5, "LCX")], ids=["3T", "1.5T-ischaemic"])
def phantom(request):
    field, ischemic = request.param
    return simulate_phantom(seed=7, field_strength_t=field, ischemic=ischemic, n_frames=40, matrix=64, pixel_mm=3.0)


def _shifted(mask, pixels):
    return np.roll(mask, pixels, axis=2)


def test_the_study_own_blood_pool_follows_the_blood_curve(phantom):
    assert rc.blood_pool_mismatch_fraction(phantom.frames, phantom.lv_blood_mask) == 0.0


def test_a_blood_pool_roi_moved_off_the_cavity_is_caught_in_proportion_to_the_shift(phantom):
    fractions = [rc.blood_pool_mismatch_fraction(phantom.frames, _shifted(phantom.lv_blood_mask, pixels))
                 for pixels in (1, 2, 4, 8)]  # 3, 6, 12 and 24 mm
    assert np.all(np.diff(fractions) > 0)
    assert fractions[0] < rc.BLOOD_POOL_WARN_FRACTION < fractions[1]
    assert fractions[3] > rc.BLOOD_POOL_REFUSE_FRACTION


def test_background_and_empty_rois():
    frames = np.random.default_rng(0).normal(100.0, 1.0, size=(30, 1, 8, 8))
    frames[:, 0, :4] += 50 * np.sin(np.linspace(0, 3, 30))[:, None, None]  # half enhances, half is noise
    mask = np.ones((1, 8, 8), dtype=bool)
    assert rc.blood_pool_mismatch_fraction(frames, mask) == pytest.approx(0.5)
    assert np.isnan(rc.blood_pool_mismatch_fraction(frames, np.zeros_like(mask)))


def test_rv_points_on_the_myocardium_edge_and_moved_away(phantom):
    points = np.asarray(phantom.rv_insertion_ras["anterior"], dtype=float)
    distances = rc.rv_point_distances_mm(points, phantom.ijk_to_ras, phantom.myocardium_mask)
    assert np.all(distances < 3.5)  # within about a pixel of the myocardium
    column_mm = phantom.ijk_to_ras[:3, 0]
    along_slice = rc.rv_point_distances_mm(points + 2 * phantom.ijk_to_ras[:3, 2] / 5, phantom.ijk_to_ras,
                                           phantom.myocardium_mask)
    np.testing.assert_allclose(along_slice, distances)  # measured in the slice's plane
    far = rc.rv_point_distances_mm(points + 60 * column_mm / np.linalg.norm(column_mm), phantom.ijk_to_ras,
                                   phantom.myocardium_mask)
    assert np.all(far > rc.RV_POINT_REFUSE_MM)
    empty = phantom.myocardium_mask.copy()
    empty[:] = False
    assert np.all(np.isnan(rc.rv_point_distances_mm(points, phantom.ijk_to_ras, empty)))

"""The RV and the septum from the images (orientation.find_rv) and the decision between the clues."""

import json

import numpy as np
import pytest

from AIAIFLib import aif
from AIAIFLib import orientation as O
from AIAIFLib import simulation as sim
from AIAIFLib.errors import AIAIFInputError

#: RV label of the phantom's tissue classes.
RV = sim.TISSUE_LABELS["rv blood"]


@pytest.fixture(scope="module")
def phantom():
    return sim.simulate_phantom(seed=3, n_frames=40)


def find(p, frames=None, ijk_to_ras=None):
    frames = p.frames if frames is None else frames
    return O.find_rv(frames, p.frame_times_s, p.lv_blood_mask, p.myocardium_mask,
                     p.ijk_to_ras if ijk_to_ras is None else ijk_to_ras,
                     lv_signal=aif.extract_aif_signal(frames, p.lv_blood_mask))


@pytest.fixture(scope="module")
def found(phantom):
    return find(phantom)


def centre_of(p, k):
    jj, ii = np.nonzero(p.lv_blood_mask[k])
    return p.ijk_to_ras[:3, :3] @ [ii.mean(), jj.mean(), k] + p.ijk_to_ras[:3, 3]


def end_errors_deg(p, result):
    """Angle (deg) from each true insertion point to the image's end nearer to it, per slice: (anterior, inferior)."""
    errors = []
    for k, rv in enumerate(result.slices):
        centre = centre_of(p, k)
        row = []
        for name in ("anterior", "inferior"):
            turns = [O.turn_deg(p.rv_insertion_ras[name][k] - centre, end - centre, result.normal_ras)
                     for end in rv.arc_ends_ras]
            row.append(min(turns, key=abs))
        errors.append(row)
    return np.array(errors)


# --- part 1: the RV in the images ------------------------------------------------------------

def test_rv_is_found_in_every_slice_of_the_phantom(phantom, found):
    truth = phantom.labels == RV
    for k, rv in enumerate(found.slices):
        assert rv.found, rv.reason
        assert rv.confidence >= 0.8 and set(rv.scores) == {"size", "contrast", "timing", "contact"}
        # The phantom's RV fills 2.5-4.5 s before the LV; it touches 105-135 degrees of the epicardium.
        assert 1.5 < rv.lead_s < 6.0
        assert 90.0 < rv.contact_arc_deg < 140.0
        overlap = np.count_nonzero(found.rv_mask[k] & truth[k])
        assert overlap / np.count_nonzero(truth[k]) > 0.95
        assert overlap / np.count_nonzero(found.rv_mask[k]) > 0.95
    assert np.median(found.rv_fraction[truth]) == pytest.approx(1.0, abs=0.1)
    assert abs(np.median(found.rv_fraction[phantom.myocardium_mask])) < 0.1
    json.dumps([rv.summary() for rv in found.slices])


def test_insertion_points_lie_near_the_true_ones(phantom, found):
    errors = np.abs(end_errors_deg(phantom, found))
    # Below a pixel: a pixel at the epicardium subtends 3-5 degrees here (this phantom is one of the harder ones;
    # Testing/benchmarks/orientation_accuracy.py measures many).
    assert np.mean(errors) < 3.0
    assert np.max(errors) < 6.0
    for rv in found.slices:
        assert all(0 < sd < 3.0 for sd in rv.arc_ends_sd_deg)


def test_anterior_end_follows_the_patient_anterior_direction(phantom, found):
    for k, rv in enumerate(found.slices):
        centre = centre_of(phantom, k)
        anterior = rv.arc_ends_ras[0 if rv.anterior_sense > 0 else 1]
        assert abs(O.turn_deg(phantom.rv_insertion_ras["anterior"][k] - centre, anterior - centre,
                              found.normal_ras)) < 5.0


def test_storage_order_does_not_change_what_is_found(phantom, found):
    other = sim.simulate_phantom(seed=3, n_frames=40, apex_first=True, mirrored=True)
    result = find(other)
    order = [other.levels.index(level) for level in phantom.levels]
    for k, j in enumerate(order):
        # The same anatomy; only the noise differs (it is drawn in storage order): within a third of a pixel.
        np.testing.assert_allclose(np.sort(result.slices[j].arc_ends_ras, axis=0),
                                   np.sort(found.slices[k].arc_ends_ras, axis=0), atol=0.5)


def test_reversed_slice_axis_keeps_the_rv_where_the_images_show_it(phantom, found):
    mirrored = sim.simulate_phantom(seed=3, n_frames=40, mirrored_slice_axis=True)
    result = find(mirrored)
    for k in range(3):
        # Same pixels, so the same in-plane answer: slice 0 keeps its place in RAS.
        assert result.slices[k].anterior_sense == found.slices[k].anterior_sense
    np.testing.assert_allclose(result.slices[0].arc_ends_ras, found.slices[0].arc_ends_ras, atol=1e-6)


def test_a_slice_without_enhancing_rv_is_not_found(phantom):
    frames = phantom.frames.copy()
    rv = phantom.labels == RV
    frames[:, rv] = frames[0][rv]  # the RV keeps its pre-contrast signal
    result = find(phantom, frames)
    assert not any(s.found for s in result.slices)
    assert all("touches the LV" in s.reason for s in result.slices)
    assert not result.rv_mask.any()


def test_a_late_enhancing_neighbour_is_not_the_rv(phantom):
    frames = phantom.frames.copy()
    rv = phantom.labels == RV
    lv = phantom.lv_blood_mask
    frames[:, rv] = frames[:, lv].mean(axis=1)[:, None]  # fills with the LV, like the aorta or the LA
    result = find(phantom, frames)
    assert not any(s.found for s in result.slices)


def test_a_small_rv_lowers_the_confidence(phantom, found):
    frames = phantom.frames.copy()
    rv = phantom.labels == RV
    keep = np.zeros_like(rv)
    keep[2] = rv[2]
    frames[:, rv & ~keep] = frames[0][rv & ~keep]
    result = find(phantom, frames)
    assert [s.found for s in result.slices] == [False, False, True]
    assert result.slices[2].confidence == pytest.approx(found.slices[2].confidence)


def _turned_in_plane(matrix, degrees):
    """The header turned about the slice normal, the pixels kept: the heart turns in RAS."""
    normal = np.cross(matrix[:3, 0], matrix[:3, 1])
    normal /= np.linalg.norm(normal)
    angle = np.radians(degrees)
    cross = np.array([[0.0, -normal[2], normal[1]], [normal[2], 0.0, -normal[0]], [-normal[1], normal[0], 0.0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * cross @ cross
    turned = matrix.copy()
    turned[:3, :2] = rotation @ matrix[:3, :2]
    return turned


def test_rv_behind_the_lv_is_reported_as_a_flipped_geometry(phantom, found):
    # The phantom's RV lies beside the septum (near the left-right line); turned a quarter either way in the
    # header it lies in front of or behind the LV.
    elevations = {}
    for degrees in (90.0, -90.0):
        matrix = _turned_in_plane(phantom.ijk_to_ras, degrees)
        result = find(phantom, ijk_to_ras=matrix)
        elevations[degrees] = [s.rv_anterior_deg for s in result.slices]
        warned = any("image geometry may be flipped" in w for w in decide(result, phantom, matrix).warnings)
        assert warned == (np.median(elevations[degrees]) < 0)
    assert sorted(np.sign(np.median(values)) for values in elevations.values()) == [-1, 1]
    assert all(abs(value) > 45.0 for values in elevations.values() for value in values)
    assert all(abs(s.rv_anterior_deg) < O.RV_POSTERIOR_WARNING_DEG for s in found.slices)
    assert not any("flipped" in w for w in decide(found, phantom, phantom.ijk_to_ras).warnings)


# --- part 2: deciding -------------------------------------------------------------------------

def decide(result, p, ijk_to_ras, anterior=None, inferior=None, **options):
    plane = O._Plane(ijk_to_ras)
    centres = np.array([plane.matrix[:3, :3] @ [*np.argwhere(p.lv_blood_mask[k])[:, ::-1].mean(axis=0), k]
                        + plane.matrix[:3, 3] for k in range(3)])
    return O.decide_orientation(plane.normal, centres, [0, 1, 2], anterior, inferior, result, **options)


def points_of(p, name, slices=(0, 1, 2), index_offset=0):
    return {k: (k + index_offset, p.rv_insertion_ras[name][k]) for k in slices}


HANDEDNESS = {"sign": -1, "cosine": 0.99, "rule": "levels"}  # the phantom's: anterior -> septum turns -1


def test_images_decide_the_side_and_give_every_origin(phantom, found):
    decided = decide(found, phantom, phantom.ijk_to_ras, handedness=HANDEDNESS)
    assert decided.side["rule"] == "image RV" and decided.side["confidence"] > 0.8
    assert decided.septum_sign == -1 and decided.warnings == []
    assert [s["insertion_point"]["rule"] for s in decided.slices] == ["image RV"] * 3
    for k in range(3):
        centre = decided.origins_ras[k] - 0.0
        assert abs(O.turn_deg(phantom.rv_insertion_ras["anterior"][k] - centre_of(phantom, k),
                              centre - centre_of(phantom, k), found.normal_ras)) < 4.0
    json.dumps(decided.slices)


def test_images_win_over_the_handedness_rule_with_a_warning(phantom, found):
    decided = decide(found, phantom, phantom.ijk_to_ras, handedness=dict(HANDEDNESS, sign=1))
    assert decided.septum_sign == -1 and decided.side["rule"] == "image RV"
    assert any("the images are followed" in w for w in decided.warnings)


def test_user_points_set_the_origin_and_the_images_the_side(phantom, found):
    decided = decide(found, phantom, phantom.ijk_to_ras, anterior=points_of(phantom, "anterior"),
                     handedness=HANDEDNESS)
    assert decided.side["rule"] == "image RV" and decided.septum_sign == -1
    for k, record in enumerate(decided.slices):
        assert record["insertion_point"] == {"rule": "user point", "confidence": 1.0}
        np.testing.assert_array_equal(decided.origins_ras[k], phantom.rv_insertion_ras["anterior"][k])
        assert abs(record["user_vs_image_deg"]) < 4.0
    assert decided.origin_points == {0: 0, 1: 1, 2: 2}


def test_a_user_point_far_from_the_image_estimate_is_followed_and_reported(phantom, found):
    anterior = points_of(phantom, "anterior")
    centre = centre_of(phantom, 1)
    turned = sim.heart_axes_ras()[0]  # rotate slice 1's point 45 degrees about the long axis
    offset = anterior[1][1] - centre
    cos, sin = np.cos(np.radians(45.0)), np.sin(np.radians(45.0))
    rotated = offset * cos + np.cross(turned, offset) * sin + turned * np.dot(turned, offset) * (1 - cos)
    anterior[1] = (1, centre + rotated)
    decided = decide(found, phantom, phantom.ijk_to_ras, anterior=anterior, handedness=HANDEDNESS)
    np.testing.assert_allclose(decided.origins_ras[1], centre + rotated)
    assert any("slice 1" in w and "check the point" in w for w in decided.warnings)


def test_inferior_points_decide_the_side(phantom, found):
    anterior, inferior = points_of(phantom, "anterior"), points_of(phantom, "inferior", index_offset=3)
    # Without the images, against a (wrong) handedness rule: the points win, the rule is reported.
    decided = decide(None, phantom, phantom.ijk_to_ras, anterior=anterior, inferior=inferior,
                     handedness=dict(HANDEDNESS, sign=1))
    assert decided.side == {"rule": "user points", "confidence": 1.0,
                            "sentence": decided.side["sentence"]} and decided.septum_sign == -1
    assert any("base-to-apex rule" in w for w in decided.warnings)
    # An inferior point alone, with the images' arc, also tells the side.
    alone = decide(found, phantom, phantom.ijk_to_ras, inferior=points_of(phantom, "inferior", (1,)))
    assert alone.side["rule"] == "user points" and alone.septum_sign == -1


def test_override_decides_and_disagreeing_clues_are_reported(phantom, found):
    decided = decide(found, phantom, phantom.ijk_to_ras, override_sign=1, handedness=HANDEDNESS)
    assert decided.septum_sign == 1 and decided.side["rule"] == "override"
    assert any("RV found in the images" in w for w in decided.warnings)
    # The arc's other end is now the anterior one.
    for k in range(3):
        np.testing.assert_array_equal(decided.origins_ras[k], found.slices[k].arc_ends_ras[0])


def test_a_slice_without_origin_borrows_the_nearest_one_with_a_warning(phantom):
    frames = phantom.frames.copy()
    rv = phantom.labels == RV
    frames[:, 2][:, rv[2]] = frames[0, 2][rv[2]]
    result = find(phantom, frames)
    decided = decide(result, phantom, phantom.ijk_to_ras, handedness=HANDEDNESS)
    assert decided.slices[2]["insertion_point"]["rule"] == "nearest slice"
    assert decided.slices[2]["insertion_point"]["from_slice"] == 1
    assert decided.slices[2]["image_rv"]["found"] is False
    assert any("slice 2 uses the direction of slice 1" in w for w in decided.warnings)


def test_without_rv_in_the_images_user_points_and_handedness_decide_with_a_warning(phantom):
    frames = phantom.frames.copy()
    rv = phantom.labels == RV
    frames[:, rv] = frames[0][rv]
    result = find(phantom, frames)
    decided = decide(result, phantom, phantom.ijk_to_ras, anterior=points_of(phantom, "anterior"),
                     handedness=HANDEDNESS)
    assert decided.side["rule"] == "handedness" and decided.side["confidence"] == pytest.approx(0.495)
    assert any("No RV was found in the images" in w for w in decided.warnings)
    with pytest.raises(AIAIFInputError, match="place the anterior RV insertion point"):
        decide(result, phantom, phantom.ijk_to_ras, handedness=HANDEDNESS)


def test_nothing_to_decide_the_side_is_an_error(phantom):
    with pytest.raises(AIAIFInputError, match="place the anterior and inferior RV insertion points, or pass "
                                              "septum_direction"):
        decide(None, phantom, phantom.ijk_to_ras, anterior=points_of(phantom, "anterior"))


def test_majority_of_slices_decides_and_dissent_is_reported(phantom, found):
    anterior = points_of(phantom, "anterior")
    inferior = points_of(phantom, "inferior", index_offset=3)
    inferior[0], anterior[0] = (3, anterior[0][1]), (0, inferior[0][1])  # slice 0's points swapped
    decided = decide(None, phantom, phantom.ijk_to_ras, anterior=anterior, inferior=inferior)
    assert decided.septum_sign == -1 and decided.side["confidence"] == pytest.approx(1.0 / 3.0, abs=1e-3)
    assert any("slice 0 disagrees" in w for w in decided.warnings)


@pytest.mark.parametrize("flags, expected", [
    ([False, False], (0, 0)), ([True] * 4, (0, 4)), ([True, False, True, True], (2, 3)),
    ([False, True, True, False, True], (1, 2))])
def test_longest_circular_run(flags, expected):
    assert O._longest_circular_run(flags) == expected

"""AHA segments, slice levels, septum side, territories and the ischaemia call."""

import json

import numpy as np
import pytest

from AIAIFLib import constants as K
from AIAIFLib import evaluation
from AIAIFLib import segments as S
from AIAIFLib import simulation as sim
from AIAIFLib.errors import AIAIFInputError

#: Share of myocardial voxels whose segment must match the phantom's ground truth.
MIN_AGREEMENT = 0.97

VARIANTS = [(False, False), (True, False), (False, True), (True, True)]  # (apex_first, mirrored)


@pytest.fixture(scope="module")
def phantoms():
    return {variant: sim.simulate_phantom(seed=3, n_frames=25, apex_first=variant[0], mirrored=variant[1])
            for variant in VARIANTS}


@pytest.fixture(scope="module")
def phantom(phantoms):
    return phantoms[(False, False)]


def segment(p, **options):
    return S.aha_segment_map(p.myocardium_mask, p.lv_blood_mask, p.ijk_to_ras, p.rv_insertion_ras["anterior"],
                             **options)


def agreement(labels, p):
    myocardium = p.myocardium_mask
    return float(np.mean(labels[myocardium] == p.aha_segments[myocardium]))


def level_labels(levels):
    return ["RV insertion anterior {}".format(level) for level in levels]


# --- sectors -----------------------------------------------------------------------

@pytest.mark.parametrize("level, expected", [
    ("basal", {0.0: 2, 59.9: 2, 60.0: 3, 119.9: 3, 120.0: 4, 180.0: 5, 240.0: 6, 300.0: 1, 359.9: 1, -1.0: 1,
               420.0: 3}),
    ("mid", {0.0: 8, 60.0: 9, 120.0: 10, 180.0: 11, 240.0: 12, 300.0: 7, 359.9: 7}),
    ("apical", {0.0: 13, 14.9: 13, 15.0: 14, 104.9: 14, 105.0: 15, 195.0: 16, 285.0: 13, 359.9: 13}),
])
def test_sectors_follow_the_documented_convention(level, expected):
    angles = np.array(list(expected))
    np.testing.assert_array_equal(S.aha_segment_from_angle(angles, level), list(expected.values()))


def test_apical_septal_sector_is_centred_on_mid_septum():
    assert S.APICAL_SECTOR_START_DEG + 0.5 * S.APICAL_SECTOR_DEG == pytest.approx(0.5 * S.SEPTUM_SPAN_DEG)


# --- the phantom in every storage order ------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS, ids=["default", "apex_first", "mirrored", "apex_first+mirrored"])
def test_phantom_segments_agree_with_ground_truth(phantoms, variant):
    p = phantoms[variant]
    result = segment(p)
    assert agreement(result.labels, p) >= MIN_AGREEMENT
    assert result.slice_levels == tuple(p.levels)
    assert np.all((result.labels > 0) == p.myocardium_mask)
    # The default display is radiological (RV on the left, anterior at the
    # top), where anterior -> septum turns counter-clockwise; mirroring flips it.
    assert result.septum_direction == ("clockwise" if variant[1] else "counterclockwise")
    long_axis, _, _ = sim.heart_axes_ras()
    np.testing.assert_allclose(result.base_to_apex_ras, long_axis, atol=1e-9)
    assert result.rules_used["warnings"] == []
    json.dumps(result.rules_used)


def test_segment_counts_and_angles_are_consistent(phantom):
    result = segment(phantom)
    myocardium = phantom.myocardium_mask
    assert np.all(np.isfinite(result.angle_deg[myocardium])) and np.all(np.isnan(result.angle_deg[~myocardium]))
    assert np.all((result.angle_deg[myocardium] >= 0) & (result.angle_deg[myocardium] < 360))
    for k, level in enumerate(result.slice_levels):
        on_slice = myocardium[k]
        np.testing.assert_array_equal(result.labels[k][on_slice],
                                      S.aha_segment_from_angle(result.angle_deg[k][on_slice], level))
    assert set(np.unique(result.labels[myocardium])) == set(K.AHA_SEGMENTS)


# --- slice levels ------------------------------------------------------------------------

@pytest.mark.parametrize("variant", [(False, False), (True, True)], ids=["default", "apex_first+mirrored"])
def test_levels_from_labels(phantoms, variant):
    p = phantoms[variant]
    result = segment(p, rv_insertion_labels=level_labels(p.levels))
    assert result.slice_levels == tuple(p.levels)
    assert "labels" in result.rules_used["slice_levels"]
    assert agreement(result.labels, p) >= MIN_AGREEMENT


def test_labels_decide_over_cavity_size(phantom):
    reversed_levels = tuple(phantom.levels[::-1])
    result = segment(phantom, rv_insertion_labels=level_labels(reversed_levels))
    assert result.slice_levels == reversed_levels
    # Base-to-apex now points away from the apex, which is flagged.
    assert result.rules_used["warnings"]
    assert result.septum_direction == "clockwise"


@pytest.mark.parametrize("labels", [None, ["P-1", "P-2", "P-3"], ["basal", "mid", "P-3"], ["a", "base apex", "c"]])
def test_levels_from_cavity_size_without_level_labels(phantoms, labels):
    p = phantoms[(True, False)]
    result = segment(p, rv_insertion_labels=labels)
    assert result.slice_levels == tuple(p.levels)
    assert "LV blood-pool area" in result.rules_used["slice_levels"]


def test_label_words_are_case_insensitive_and_accept_synonyms(phantom):
    labels = ["BASE anterior", "Mid-ventricular", "RV insertion (Apex)"]
    result = segment(phantom, rv_insertion_labels=labels)
    assert result.slice_levels == ("basal", "mid", "apical")
    assert "labels" in result.rules_used["slice_levels"]


def test_explicit_levels_override_labels(phantom):
    result = segment(phantom, rv_insertion_labels=level_labels(phantom.levels[::-1]),
                     slice_levels=("Basal", "mid", "APICAL"))
    assert result.slice_levels == ("basal", "mid", "apical")
    assert "caller" in result.rules_used["slice_levels"]
    assert agreement(result.labels, phantom) >= MIN_AGREEMENT


def test_infer_slice_levels_matches_the_segment_map(phantoms):
    p = phantoms[(True, True)]
    assert S.infer_slice_levels(p.myocardium_mask, p.lv_blood_mask, p.ijk_to_ras) == tuple(p.levels)
    assert S.infer_slice_levels(p.myocardium_mask, p.lv_blood_mask, p.ijk_to_ras, p.rv_insertion_ras["anterior"],
                                ["x apical", "x mid", "x basal"]) == ("apical", "mid", "basal")
    assert S.infer_slice_levels(p.myocardium_mask, p.lv_blood_mask, p.ijk_to_ras,
                                slice_levels=["mid", "mid", "mid"]) == ("mid", "mid", "mid")


@pytest.mark.parametrize("levels, message", [
    (("basal", "mid"), "one level per stored slice"),
    ("basal", "one level per stored slice"),
    (("basal", "middle", "apical"), "not a level"),
    (("basal", "apical", "mid"), "not base-to-apex order"),
])
def test_bad_slice_levels_are_refused(phantom, levels, message):
    with pytest.raises(AIAIFInputError, match=message):
        segment(phantom, slice_levels=levels)


def test_non_monotone_label_levels_are_refused(phantom):
    with pytest.raises(AIAIFInputError, match="RV insertion point labels"):
        segment(phantom, rv_insertion_labels=level_labels(("mid", "basal", "apical")))


def _stack(radii_mm, pixel_mm=1.5, matrix=64, gap_mm=10.0, rotation=None):
    """Synthetic stack of rings (blood-pool radius r, wall 8 mm), one RV point per slice at mid-wall towards -j."""
    jj, ii = np.mgrid[0:matrix, 0:matrix]
    centre_i, centre_j = 30.3, 32.6
    distance = np.hypot(ii - centre_i, jj - centre_j) * pixel_mm
    blood = np.stack([distance < r for r in radii_mm])
    myocardium = np.stack([(distance >= r) & (distance < r + 8.0) for r in radii_mm])
    rotation = np.eye(3) if rotation is None else rotation
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = rotation @ np.diag([pixel_mm, pixel_mm, gap_mm])
    ijk_to_ras[:3, 3] = [5.0, -7.0, 11.0]
    points = np.array([ijk_to_ras[:3, :3] @ [centre_i, centre_j - (r + 4.0) / pixel_mm, k] + ijk_to_ras[:3, 3]
                       for k, r in enumerate(radii_mm)])
    return myocardium, blood, ijk_to_ras, points


def test_more_than_three_slices_split_into_thirds_by_rank():
    myocardium, blood, matrix, points = _stack([25.0, 22.0, 19.0, 15.0, 11.0])
    result = S.aha_segment_map(myocardium, blood, matrix, points)
    assert result.slice_levels == ("basal", "basal", "mid", "apical", "apical")
    # The rings stored the other way round on the same grid: the large cavity
    # is now at the far end, so the order flips (each point keeps its plane).
    reversed_result = S.aha_segment_map(myocardium[::-1], blood[::-1], matrix, points)
    assert reversed_result.slice_levels == ("apical", "apical", "mid", "basal", "basal")
    myocardium, blood, matrix, points = _stack([25.0, 22.0, 15.0, 11.0])
    assert S.aha_segment_map(myocardium, blood, matrix, points).slice_levels == ("basal", "mid", "mid", "apical")


def test_two_slices_without_levels_are_ambiguous():
    myocardium, blood, matrix, points = _stack([25.0, 15.0])
    with pytest.raises(AIAIFInputError, match="Two segmented slices"):
        S.aha_segment_map(myocardium, blood, matrix, points)
    result = S.aha_segment_map(myocardium, blood, matrix, points, slice_levels=("mid", "apical"))
    assert result.slice_levels == ("mid", "apical")


def test_equal_cavities_are_ambiguous():
    myocardium, blood, matrix, points = _stack([20.0, 20.0, 20.0])
    with pytest.raises(AIAIFInputError, match="too little to tell base from apex"):
        S.aha_segment_map(myocardium, blood, matrix, points)


def test_slice_without_myocardium_is_left_out(phantom):
    myocardium = phantom.myocardium_mask.copy()
    myocardium[2] = False
    result = S.aha_segment_map(myocardium, phantom.lv_blood_mask, phantom.ijk_to_ras,
                               phantom.rv_insertion_ras["anterior"], level_labels(phantom.levels))
    assert result.slice_levels == ("basal", "mid", None)
    assert result.rv_point_used == (0, 1, None)
    assert not result.labels[2].any() and np.all(np.isnan(result.lv_centres_ras[2]))
    np.testing.assert_array_equal(result.labels[:2], segment(phantom).labels[:2])


# --- single slices: the apex side from anatomy ----------------------------------------

@pytest.mark.parametrize("mirrored", [False, True])
@pytest.mark.parametrize("k", [0, 1])
def test_single_slice_uses_patient_anatomy(phantoms, mirrored, k):
    p = phantoms[(False, mirrored)]
    matrix = p.ijk_to_ras.copy()
    matrix[:3, 3] += k * matrix[:3, 2]
    myocardium, blood = p.myocardium_mask[k:k + 1], p.lv_blood_mask[k:k + 1]
    point = p.rv_insertion_ras["anterior"][k:k + 1]
    options = {} if k == 1 else {"slice_levels": ("basal",)}
    result = S.aha_segment_map(myocardium, blood, matrix, point, **options)
    assert result.slice_levels == (p.levels[k],)
    if k == 1:
        assert "one segmented slice" in result.rules_used["slice_levels"]
    assert "patient's left, anterior and inferior" in result.rules_used["septum_direction"]
    truth = p.aha_segments[k:k + 1][myocardium]
    assert np.mean(result.labels[myocardium] == truth) >= MIN_AGREEMENT


def test_single_slice_too_oblique_for_anatomy_needs_a_direction():
    # A slice whose normal is perpendicular to the typical apex direction.
    normal = np.cross(S.TYPICAL_APEX_DIRECTION_RAS, [0.0, 0.0, 1.0])
    normal /= np.linalg.norm(normal)
    first = S.TYPICAL_APEX_DIRECTION_RAS
    second = np.cross(normal, first)
    rotation = np.stack([first, second, normal], axis=1)
    myocardium, blood, matrix, points = _stack([20.0], rotation=rotation)
    with pytest.raises(AIAIFInputError, match="pass septum_direction"):
        S.aha_segment_map(myocardium, blood, matrix, points)
    result = S.aha_segment_map(myocardium, blood, matrix, points, septum_direction="clockwise")
    assert result.septum_direction == "clockwise"


# --- septum side override -------------------------------------------------------------

def test_septum_direction_override(phantom):
    automatic = segment(phantom)
    same = segment(phantom, septum_direction="Counter-Clockwise")
    np.testing.assert_array_equal(same.labels, automatic.labels)
    assert "caller" in same.rules_used["septum_direction"]
    opposite = segment(phantom, septum_direction="clockwise")
    assert opposite.septum_direction == "clockwise"
    myocardium = phantom.myocardium_mask
    # Turning the other way mirrors every angle about the insertion point ...
    np.testing.assert_allclose(np.mod(360.0 - automatic.angle_deg[myocardium], 360.0),
                               opposite.angle_deg[myocardium], atol=1e-9)
    # ... so away from sector borders, 1<->2, 3<->6, 4<->5 (basal) and 7<->8, 9<->12, 10<->11 (mid).
    swap = {1: 2, 2: 1, 3: 6, 6: 3, 4: 5, 5: 4, 7: 8, 8: 7, 9: 12, 12: 9, 10: 11, 11: 10}
    angle = automatic.angle_deg
    clear = myocardium[:2] & (np.abs(np.mod(angle[:2] + 1.0, 60.0) - 1.0) > 1e-6)
    mirrored_labels = np.vectorize(swap.get)(automatic.labels[:2][clear])
    np.testing.assert_array_equal(opposite.labels[:2][clear], mirrored_labels)


def test_bad_septum_direction_is_refused(phantom):
    with pytest.raises(AIAIFInputError, match="septum_direction must be"):
        segment(phantom, septum_direction="left")


# --- geometry: the answer lives in RAS ---------------------------------------------------

def _flip(arrays, matrix, points, array_axis, column):
    size = arrays[0].shape[array_axis]
    new = matrix.copy()
    new[:3, column] = -matrix[:3, column]
    new[:3, 3] = matrix[:3, 3] + (size - 1) * matrix[:3, column]
    return [np.flip(a, axis=array_axis) for a in arrays], new, points


def _swap_in_plane(arrays, matrix, points):
    new = matrix.copy()
    new[:, [0, 1]] = matrix[:, [1, 0]]
    return [np.swapaxes(a, 1, 2) for a in arrays], new, points


@pytest.mark.parametrize("transform, undo", [
    (lambda a, m, p: _flip(a, m, p, 2, 0), lambda x: np.flip(x, 2)),
    (lambda a, m, p: _flip(a, m, p, 1, 1), lambda x: np.flip(x, 1)),
    (lambda a, m, p: _flip(a, m, p, 0, 2), lambda x: np.flip(x, 0)),
    (_swap_in_plane, lambda x: np.swapaxes(x, 1, 2)),
    (lambda a, m, p: _swap_in_plane(*_flip(a, m, p, 1, 1)), lambda x: np.flip(np.swapaxes(x, 1, 2), 1)),
], ids=["flip i", "flip j", "flip k", "swap i/j", "flip j then swap i/j"])
def test_regridding_does_not_change_segments_in_ras(phantom, transform, undo):
    original = segment(phantom)
    (myocardium, blood), matrix, points = transform(
        [phantom.myocardium_mask, phantom.lv_blood_mask], phantom.ijk_to_ras, phantom.rv_insertion_ras["anterior"])
    moved = S.aha_segment_map(myocardium, blood, matrix, points)
    np.testing.assert_array_equal(undo(moved.labels), original.labels)
    np.testing.assert_allclose(moved.base_to_apex_ras, original.base_to_apex_ras, atol=1e-12)
    np.testing.assert_allclose(np.sort(moved.lv_centres_ras, axis=0), np.sort(original.lv_centres_ras, axis=0),
                               atol=1e-9)


# --- RV insertion points -------------------------------------------------------------------

def test_slice_without_point_uses_nearest_slice_direction(phantom):
    points = phantom.rv_insertion_ras["anterior"]
    borrowed = S.aha_segment_map(phantom.myocardium_mask, phantom.lv_blood_mask, phantom.ijk_to_ras, points[:2])
    assert borrowed.rv_point_used == (0, 1, 1)
    assert "slice 2 uses the direction of slice 1" in borrowed.rules_used["rv_insertion"]
    centres = borrowed.lv_centres_ras
    # An explicit apical point in the mid slice's direction gives the same answer.
    explicit = np.vstack([points[:2], centres[2] + (points[1] - centres[1])])
    direct = S.aha_segment_map(phantom.myocardium_mask, phantom.lv_blood_mask, phantom.ijk_to_ras, explicit)
    np.testing.assert_array_equal(borrowed.labels, direct.labels)
    np.testing.assert_array_equal(borrowed.labels[:2], segment(phantom).labels[:2])


def test_point_outside_every_slice_is_refused(phantom):
    points = phantom.rv_insertion_ras["anterior"].copy()
    long_axis, _, _ = sim.heart_axes_ras()
    points[2] += 0.6 * sim.PHANTOM_SLICE_GAP_MM * long_axis  # beyond the apical slice
    with pytest.raises(AIAIFInputError, match="RV insertion point 3 .* outside every slice"):
        S.aha_segment_map(phantom.myocardium_mask, phantom.lv_blood_mask, phantom.ijk_to_ras, points)
    points[2] -= 0.2 * sim.PHANTOM_SLICE_GAP_MM * long_axis  # 0.4 slice spacings off the plane: still inside
    result = S.aha_segment_map(phantom.myocardium_mask, phantom.lv_blood_mask, phantom.ijk_to_ras, points)
    assert result.rv_point_used == (0, 1, 2)
    # Only the point's projection onto its slice plane counts.
    np.testing.assert_array_equal(result.labels, segment(phantom).labels)


@pytest.mark.parametrize("points", [None, np.zeros((0, 3))])
def test_missing_points_are_refused(phantom, points):
    with pytest.raises(AIAIFInputError, match="No RV insertion point"):
        S.aha_segment_map(phantom.myocardium_mask, phantom.lv_blood_mask, phantom.ijk_to_ras, points)


def test_two_points_of_one_kind_in_one_slice_are_refused(phantom):
    points = np.vstack([phantom.rv_insertion_ras["anterior"], phantom.rv_insertion_ras["inferior"][1]])
    with pytest.raises(AIAIFInputError, match="points 2 and 4 are both anterior points of slice 1"):
        S.aha_segment_map(phantom.myocardium_mask, phantom.lv_blood_mask, phantom.ijk_to_ras, points)
    labels = level_labels(phantom.levels) + ["RV insertion INFERIOR mid"]
    result = S.aha_segment_map(phantom.myocardium_mask, phantom.lv_blood_mask, phantom.ijk_to_ras, points, labels)
    assert result.rv_point_used == (0, 1, 2) and result.rules_used["septum_side"]["rule"] == "user points"
    points = np.vstack([points, phantom.rv_insertion_ras["inferior"][1]])
    with pytest.raises(AIAIFInputError, match="points 4 and 5 are both inferior points of slice 1"):
        S.aha_segment_map(phantom.myocardium_mask, phantom.lv_blood_mask, phantom.ijk_to_ras, points,
                          labels + ["inferior"])


def test_point_kinds_come_from_the_labels():
    assert S.rv_point_kinds(None, 2) == ("anterior", "anterior")
    assert S.rv_point_kinds(["RV insertion inferior basal", "Inferior RVIP", "anterior", "P-1", ""], 5) == (
        "inferior", "inferior", "anterior", "anterior", "anterior")


def test_points_only_in_empty_slices_are_refused(phantom):
    myocardium = phantom.myocardium_mask.copy()
    myocardium[0] = False
    with pytest.raises(AIAIFInputError, match="No RV insertion point lies in a slice with myocardium"):
        S.aha_segment_map(myocardium, phantom.lv_blood_mask, phantom.ijk_to_ras,
                          phantom.rv_insertion_ras["anterior"][:1])


@pytest.mark.parametrize("points, labels, message", [
    (np.zeros((3, 2)), None, r"shape \(n_points, 3\)"),
    (np.full((1, 3), np.nan), None, "non-finite"),
    ("anterior", None, "must be numbers"),
    (None, ["a", "b"], "2 RV insertion labels for 3 points"),
])
def test_bad_points_and_labels_are_refused(phantom, points, labels, message):
    points = phantom.rv_insertion_ras["anterior"] if points is None else points
    with pytest.raises(AIAIFInputError, match=message):
        S.aha_segment_map(phantom.myocardium_mask, phantom.lv_blood_mask, phantom.ijk_to_ras, points, labels)


def test_point_on_the_lv_centre_is_refused(phantom):
    centres = segment(phantom).lv_centres_ras
    with pytest.raises(AIAIFInputError, match="lies on the LV blood-pool centre of slice 0"):
        S.aha_segment_map(phantom.myocardium_mask, phantom.lv_blood_mask, phantom.ijk_to_ras, centres)


# --- masks and matrix -------------------------------------------------------------------------

def test_empty_myocardium_is_refused(phantom):
    with pytest.raises(AIAIFInputError, match="myocardium mask is empty"):
        S.aha_segment_map(np.zeros_like(phantom.myocardium_mask), phantom.lv_blood_mask, phantom.ijk_to_ras,
                          phantom.rv_insertion_ras["anterior"])


def test_slice_with_myocardium_but_no_blood_pool_is_refused(phantom):
    blood = phantom.lv_blood_mask.copy()
    blood[1] = False
    with pytest.raises(AIAIFInputError, match="Slice 1 has myocardium but no LV blood pool"):
        S.aha_segment_map(phantom.myocardium_mask, blood, phantom.ijk_to_ras, phantom.rv_insertion_ras["anterior"])


@pytest.mark.parametrize("blood_slice, message", [
    (np.s_[:, :-1], "differ in shape"),
    (np.s_[0], "must be 3D"),
])
def test_mask_shape_mismatch_is_refused(phantom, blood_slice, message):
    with pytest.raises(AIAIFInputError, match=message):
        S.aha_segment_map(phantom.myocardium_mask, phantom.lv_blood_mask[blood_slice], phantom.ijk_to_ras,
                          phantom.rv_insertion_ras["anterior"])


@pytest.mark.parametrize("matrix, message", [(np.eye(3), "4x4"), (np.diag([1.0, 1.0, 0.0, 1.0]), "zero determinant"),
                                             ("identity", "4x4 matrix of numbers")])
def test_bad_matrix_is_refused(phantom, matrix, message):
    with pytest.raises(AIAIFInputError, match=message):
        S.aha_segment_map(phantom.myocardium_mask, phantom.lv_blood_mask, matrix,
                          phantom.rv_insertion_ras["anterior"])


# --- segment statistics -----------------------------------------------------------------------

def test_segment_statistics_known_answers():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 17, size=(3, 20, 20))
    mbf = rng.uniform(0.5, 4.0, size=labels.shape)
    mbf[rng.random(labels.shape) < 0.1] = np.nan
    mbf[labels == 5] = np.inf
    labels[labels == 16] = 0  # segment 16 empty
    result = S.segment_statistics(mbf, labels)
    np.testing.assert_array_equal(result["segment"], K.AHA_SEGMENTS)
    for row, s in enumerate(K.AHA_SEGMENTS):
        values = mbf[labels == s]
        finite = values[np.isfinite(values)]
        assert result["n_pixels"][row] == finite.size
        assert result["n_failed"][row] == values.size - finite.size
        if finite.size:
            assert result["mbf_mean"][row] == pytest.approx(finite.mean(), rel=1e-12)
            assert result["mbf_median"][row] == pytest.approx(np.median(finite), rel=1e-12)
        else:
            assert np.isnan(result["mbf_mean"][row]) and np.isnan(result["mbf_median"][row])
    assert result["n_pixels"][4] == 0 and result["n_failed"][4] == np.sum(labels == 5)
    assert result["n_pixels"][15] == 0 and result["n_failed"][15] == 0


def test_pixels_that_are_not_measurements_are_left_out_unless_they_are_most_of_a_segment():
    upper = 11.43
    # Segment 1: four low-flow pixels and one at the upper bound; segment 2: three of four at the bound;
    # segment 3: a NaN, two measurements and one at the bound (left out: 1 of 3 finite values).
    mbf = np.array([0.7, 0.8, 0.6, 0.7, upper, 2.0, upper, upper, upper, np.nan, 1.0, 3.0, upper])
    labels = np.array([1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])
    flagged = mbf == upper
    result = S.segment_statistics(mbf, labels, not_measured=flagged)
    assert result["mbf_mean"][0] == pytest.approx(0.7) and result["mbf_median"][0] == pytest.approx(0.7)
    assert result["n_pixels"][0] == 5 and result["n_left_out"][0] == 1
    # Most of segment 2 sits at the bound: every value counts, and the mean is set by the bound.
    assert result["mbf_mean"][1] == pytest.approx((2.0 + 3 * upper) / 4) and result["n_left_out"][1] == 0
    assert result["mbf_mean"][2] == pytest.approx(2.0) and result["n_failed"][2] == 1
    assert result["n_pixels"][2] == 3 and result["n_left_out"][2] == 1
    # Without the map (or with nothing flagged) every finite value counts, as before.
    plain = S.segment_statistics(mbf, labels)
    assert plain["mbf_mean"][0] == pytest.approx((0.7 + 0.8 + 0.6 + 0.7 + upper) / 5)
    np.testing.assert_array_equal(plain["n_left_out"], 0)
    none_flagged = S.segment_statistics(mbf, labels, not_measured=np.zeros(mbf.shape, bool))
    np.testing.assert_array_equal(none_flagged["mbf_mean"], plain["mbf_mean"])
    # A stricter share keeps the bound pixels of segment 3 (1 of 3 > 0.25).
    strict = S.segment_statistics(mbf, labels, not_measured=flagged, max_not_measured_fraction=0.25)
    assert strict["mbf_mean"][2] == pytest.approx((1.0 + 3.0 + upper) / 3) and strict["n_left_out"][0] == 1
    with pytest.raises(AIAIFInputError, match="not measurements .* differs in shape"):
        S.segment_statistics(mbf, labels, not_measured=flagged[:-1])


def test_segment_statistics_of_the_phantom_truth(phantom):
    result = S.segment_statistics(phantom.mbf_ml_min_g, phantom.aha_segments)
    np.testing.assert_allclose(result["mbf_mean"], phantom.segment_mbf_ml_min_g(), rtol=1e-12)
    assert result["n_pixels"].sum() == phantom.myocardium_mask.sum() and result["n_failed"].sum() == 0


@pytest.mark.parametrize("labels, message", [
    (np.zeros((2, 3)), "differ in shape"),
    (np.full((2, 2), 17), "whole numbers 0-16"),
    (np.full((2, 2), 1.5), "whole numbers 0-16"),
    (np.full((2, 2), -1), "whole numbers 0-16"),
])
def test_segment_statistics_bad_input(labels, message):
    with pytest.raises(AIAIFInputError, match=message):
        S.segment_statistics(np.ones((2, 2)), labels)


# --- territories and diagnosis ------------------------------------------------------------------

def test_territory_results_known_answers():
    mbf = np.full(16, 3.0)
    mbf[[7 - 1, 13 - 1, 2 - 1]] = [1.0, 1.4, 1.45]      # LAD: two lowest 7 and 13 -> 1.2, ischaemic
    mbf[[3 - 1, 4 - 1, 9 - 1, 10 - 1]] = np.nan          # RCA: only 15 valid -> 3.0
    mbf[15 - 1] = 1.35                                   # exactly at the threshold: not ischaemic
    mbf[[5 - 1, 11 - 1]] = [1.2, 1.6]                    # LCX: (1.2 + 1.6) / 2 = 1.4, not ischaemic
    result = S.territory_results(mbf)
    assert result["territory"] == ("LAD", "RCA", "LCX")
    np.testing.assert_allclose(result["mbf_ml_min_g"], [1.2, 1.35, 1.4])
    assert result["lowest_segments"] == ((7, 13), (15,), (5, 11))
    assert result["ischemic"] == [True, False, False]
    expected = [None if np.isnan(v) else bool(v < K.ISCHAEMIA_THRESHOLD_ML_MIN_G) for v in mbf]
    assert result["segment_ischemic"] == expected
    assert result["segment_ischemic"][7 - 1] is True and result["segment_ischemic"][3 - 1] is None
    stricter = S.territory_results(mbf, threshold_ml_min_g=1.5)
    assert stricter["ischemic"] == [True, True, True]
    np.testing.assert_allclose(result["mbf_ml_min_g"], evaluation.vessel_mbf(mbf[None, :])[0])


def test_territory_without_valid_segments():
    mbf = np.full(16, 2.0)
    mbf[np.array(K.CORONARY_TERRITORIES["LCX"]) - 1] = np.nan
    result = S.territory_results(mbf)
    assert np.isnan(result["mbf_ml_min_g"][2]) and result["ischemic"][2] is None
    assert result["lowest_segments"][2] == ()
    json.dumps({k: v for k, v in result.items() if k in ("territory", "ischemic", "segment_ischemic")})


@pytest.mark.parametrize("mbf, threshold, message", [
    (np.ones(15), 1.35, "must hold 16 values"),
    (np.full(16, np.inf), 1.35, "infinite"),
    (np.ones(16), 0.0, "positive number"),
    (np.ones(16), "high", "positive number"),
    (["a"] * 16, 1.35, "16 numbers"),
])
def test_territory_results_bad_input(mbf, threshold, message):
    with pytest.raises(AIAIFInputError, match=message):
        S.territory_results(mbf, threshold_ml_min_g=threshold)


def test_phantom_ischaemic_territory_is_found():
    p = sim.simulate_phantom(seed=8, n_frames=25, ischemic="RCA", apex_first=True, mirrored=True)
    labelling = S.aha_segment_map(p.myocardium_mask, p.lv_blood_mask, p.ijk_to_ras, p.rv_insertion_ras["anterior"])
    statistics = S.segment_statistics(p.mbf_ml_min_g, labelling.labels)
    result = S.territory_results(statistics["mbf_mean"])
    assert result["ischemic"] == [False, True, False]
    rca = np.array(K.CORONARY_TERRITORIES["RCA"]) - 1
    assert all(result["segment_ischemic"][i] for i in rca)


# --- bullseye image ----------------------------------------------------------------------

#: The standard AHA polar map [Cerqueira2002]: centre angle of each segment, degrees counter-clockwise from the
#: right (90 = top): anterior at the top, septum on the left, inferior at the bottom, lateral on the right.
AHA_BULLSEYE_CENTRE_DEG = {1: 90, 2: 150, 3: 210, 4: 270, 5: 330, 6: 30, 7: 90, 8: 150, 9: 210, 10: 270, 11: 330,
                           12: 30, 13: 90, 14: 180, 15: 270, 16: 0}
#: Left-right and top-bottom mirror images of each segment in that map.
MIRRORED_LEFT_RIGHT = {1: 1, 2: 6, 3: 5, 4: 4, 5: 3, 6: 2, 7: 7, 8: 12, 9: 11, 10: 10, 11: 9, 12: 8, 13: 13, 14: 16,
                       15: 15, 16: 14}
MIRRORED_TOP_BOTTOM = {1: 4, 2: 3, 3: 2, 4: 1, 5: 6, 6: 5, 7: 10, 8: 9, 9: 8, 10: 7, 11: 12, 12: 11, 13: 15, 14: 14,
                       15: 13, 16: 16}


def _ring_of(segment):
    return 2 if segment <= 6 else (1 if segment <= 12 else 0)  # index into BULLSEYE_RING_RADII


def _pixel_at(size, radius_fraction, angle_deg):
    """(row, column) of the pixel at a radius (fraction of the outer radius) and angle (counter-clockwise, 90 = up)."""
    centre, outer = 0.5 * (size - 1), 0.5 * size - 1.0
    angle = np.radians(angle_deg)
    return (int(round(centre - radius_fraction * outer * np.sin(angle))),
            int(round(centre + radius_fraction * outer * np.cos(angle))))


@pytest.mark.parametrize("size", [S.BULLSEYE_SIZE_PX, 64, 101])
def test_bullseye_segments_sit_at_their_standard_angles(size):
    labels = S.bullseye_labels(size)
    for segment, centre_deg in AHA_BULLSEYE_CENTRE_DEG.items():
        inner, outer = S.BULLSEYE_RING_RADII[_ring_of(segment)]
        for offset in (-0.3, 0.0, 0.3):  # the middle of the wedge and either side of it
            span = 90.0 if segment >= 13 else 60.0
            assert labels[_pixel_at(size, 0.5 * (inner + outer), centre_deg + offset * span)] == segment, segment
    # Segment 1 is at the top centre, the septum (2, 3) on the left, the lateral wall (5, 6) on the right.
    centre = (size - 1) // 2
    column = labels[:, centre]
    assert column[np.flatnonzero(column)[0]] == 1 and column[np.flatnonzero(column)[-1]] == 4
    step = size // 10  # rows a little above and below the centre (the centre row runs along the 2|3 border)
    for row, (left, right) in ((labels[centre - step], (2, 6)), (labels[centre + step], (3, 5))):
        assert (row[np.flatnonzero(row)[0]], row[np.flatnonzero(row)[-1]]) == (left, right)
    assert set(np.unique(labels[:centre, :centre])) >= {1, 2, 7, 8, 13, 14}
    assert set(np.unique(labels[centre + 1:, centre + 1:])) >= {4, 5, 10, 11, 15, 16}


def test_bullseye_labels_cover_16_segments_in_rings_of_the_right_area():
    size = S.BULLSEYE_SIZE_PX
    labels = S.bullseye_labels(size, gap_px=0.0)
    np.testing.assert_array_equal(np.unique(labels), np.arange(17))
    assert labels.dtype == np.uint8 and labels.shape == (size, size)
    outer_px = 0.5 * size - 1.0
    area = np.bincount(labels.ravel(), minlength=17)[1:].astype(float)
    for segment in K.AHA_SEGMENTS:
        inner, outer = S.BULLSEYE_RING_RADII[_ring_of(segment)]
        n_in_ring = 4 if segment >= 13 else 6
        expected = np.pi * (outer ** 2 - inner ** 2) * outer_px ** 2 / n_in_ring
        assert area[segment - 1] == pytest.approx(expected, rel=0.02), segment
    # Nothing outside the outer ring or inside the inner one (no segment 17).
    jj, ii = np.indices(labels.shape)
    radius = np.hypot(ii - 0.5 * (size - 1), jj - 0.5 * (size - 1)) / outer_px
    assert np.all(labels[radius >= 1.0] == 0) and np.all(labels[radius < S.BULLSEYE_RING_RADII[0][0]] == 0)
    assert np.all(labels[(radius >= S.BULLSEYE_RING_RADII[0][0]) & (radius < 1.0)] > 0)  # no gap asked for


def test_bullseye_is_mirror_symmetric_in_the_aha_layout():
    labels = S.bullseye_labels(S.BULLSEYE_SIZE_PX)  # the gaps take the pixels on the borders
    for flipped, partner in ((labels[:, ::-1], MIRRORED_LEFT_RIGHT), (labels[::-1, :], MIRRORED_TOP_BOTTOM)):
        lookup = np.zeros(17, np.uint8)
        lookup[list(partner)] = list(partner.values())
        np.testing.assert_array_equal(lookup[flipped], labels)


def test_bullseye_gaps_separate_neighbouring_segments():
    size = 129
    without = S.bullseye_labels(size, gap_px=0.0)
    for gap in (1.0, 3.0):
        labels = S.bullseye_labels(size, gap_px=gap)
        assert np.all((labels == without) | (labels == 0))  # a gap only removes pixels
        assert set(np.unique(labels)) == set(range(17))
        # No two 4-neighbours belong to different segments.
        for a, b in ((labels[1:], labels[:-1]), (labels[:, 1:], labels[:, :-1])):
            assert not np.any((a > 0) & (b > 0) & (a != b))
    # The gap grows with gap_px.
    assert (S.bullseye_labels(size, gap_px=3.0) == 0).sum() > (S.bullseye_labels(size, gap_px=1.0) == 0).sum()
    # Without a gap, neighbouring segments touch.
    assert np.any((without[1:] > 0) & (without[:-1] > 0) & (without[1:] != without[:-1]))


def test_bullseye_image_pixels_carry_their_segment_value():
    values = np.linspace(0.4, 4.2, 16)[::-1]
    values[9] = np.nan  # a segment without a value stays empty
    image = S.bullseye_image(values)
    labels = S.bullseye_labels()
    assert image.shape == labels.shape and image.dtype == float
    for segment in K.AHA_SEGMENTS:
        pixels = image[labels == segment]
        assert pixels.size > 100
        if segment == 10:
            assert np.all(np.isnan(pixels))
        else:
            assert np.all(pixels == values[segment - 1]), segment
    assert np.all(np.isnan(image[labels == 0]))
    assert np.isnan(image[0, 0]) and np.isnan(image[-1, -1]) and np.all(np.isnan(image[0]))
    centre = (S.BULLSEYE_SIZE_PX - 1) // 2
    assert np.isnan(image[centre, centre])  # no apical cap
    small = S.bullseye_image(np.arange(1.0, 17.0), size_px=40, gap_px=0.0)
    np.testing.assert_array_equal(np.where(np.isnan(small), 0, small), S.bullseye_labels(40, 0.0))


def test_bullseye_matches_the_report_bullseye():
    report = pytest.importorskip("AIAIFLib.report")  # needs matplotlib
    assert S.BULLSEYE_RING_RADII == report.BULLSEYE_RING_RADII
    size = S.BULLSEYE_SIZE_PX
    labels = S.bullseye_labels(size, gap_px=0.0)
    jj, ii = np.indices(labels.shape)
    x, y = ii - 0.5 * (size - 1), 0.5 * (size - 1) - jj
    radius = np.hypot(x, y) / (0.5 * size - 1.0)
    angle = np.degrees(np.arctan2(y, x))
    for segment in K.AHA_SEGMENTS:
        centre, span, inner, outer = report.bullseye_wedge(segment)
        assert centre == pytest.approx(AHA_BULLSEYE_CENTRE_DEG[segment] % 360)
        mine = labels == segment
        off_centre = np.abs((angle[mine] - centre + 180.0) % 360.0 - 180.0)
        assert off_centre.max() <= 0.5 * span + 1e-9
        assert radius[mine].min() >= inner and radius[mine].max() < outer


@pytest.mark.parametrize("values, message", [
    (np.ones(15), "must hold 16 values"),
    (np.ones(17), "must hold 16 values"),
    (np.ones((4, 4)), "must hold 16 values"),
    (np.r_[np.inf, np.ones(15)], "infinite"),
    (["a"] * 16, "16 numbers"),
])
def test_bullseye_image_refuses_anything_but_16_values(values, message):
    with pytest.raises(AIAIFInputError, match=message):
        S.bullseye_image(values)


@pytest.mark.parametrize("size, gap, message", [
    (20, 1.0, "at least 32"), (64.5, 1.0, "whole number"), ("big", 1.0, "whole number"), (None, 1.0, "whole number"),
    (64, -1.0, "gap"), (64, 5.0, "half a ring"), (64, np.nan, "gap"), (64, "wide", "gap"),
])
def test_bullseye_refuses_a_bad_size_or_gap(size, gap, message):
    for call in (lambda: S.bullseye_labels(size, gap), lambda: S.bullseye_image(np.ones(16), size, gap)):
        with pytest.raises(AIAIFInputError, match=message):
            call()


# --- orientation from the images -------------------------------------------------------------

#: Share of myocardial voxels that must match the truth with the user's anterior points (their exact position;
#: the LV centre is the blood-pool centroid) and with the insertion points found in the images.
MIN_AGREEMENT_WITH_POINTS = 0.99
MIN_AGREEMENT_FROM_IMAGES = 0.95

#: Storage of the four variants: base first, apex first, mirrored geometry (slice axis reversed), no RV points.
IMAGE_VARIANTS = {"base-first": {}, "apex-first": {"apex_first": True},
                  "mirrored geometry": {"mirrored_slice_axis": True}, "no points": {}}


@pytest.fixture(scope="module")
def stored():
    return {name: sim.simulate_phantom(seed=3, n_frames=40, **options) for name, options in IMAGE_VARIANTS.items()
            if name != "no points"}


def image_rv_of(p):
    from AIAIFLib import aif, orientation
    return orientation.find_rv(p.frames, p.frame_times_s, p.lv_blood_mask, p.myocardium_mask, p.ijk_to_ras,
                               lv_signal=aif.extract_aif_signal(p.frames, p.lv_blood_mask))


@pytest.mark.parametrize("variant", sorted(IMAGE_VARIANTS))
def test_every_variant_agrees_with_ground_truth_using_the_images(stored, variant):
    p = stored.get(variant, stored["base-first"])
    with_points = variant != "no points"
    result = S.aha_segment_map(p.myocardium_mask, p.lv_blood_mask, p.ijk_to_ras,
                               p.rv_insertion_ras["anterior"] if with_points else None,
                               p.rv_insertion_labels if with_points else None, image_rv=image_rv_of(p))
    assert agreement(result.labels, p) >= (MIN_AGREEMENT_WITH_POINTS if with_points else MIN_AGREEMENT_FROM_IMAGES)
    assert result.rules_used["septum_side"]["rule"] == "image RV"
    assert result.rules_used["septum_side"]["confidence"] > 0.8
    rules = [record["insertion_point"]["rule"] for record in result.rules_used["slices"]]
    assert rules == ["user point" if with_points else "image RV"] * 3
    assert [record["level"] for record in result.rules_used["slices"]] == list(p.levels)
    mirrored = variant == "mirrored geometry"
    assert bool(result.rules_used["warnings"]) == mirrored
    json.dumps(result.rules_used)


def test_images_win_over_the_handedness_rule_of_a_mirrored_geometry(stored):
    normal, mirrored = stored["base-first"], stored["mirrored geometry"]
    np.testing.assert_array_equal(mirrored.frames, normal.frames)
    # The handedness rule alone labels the mirrored geometry mirrored about the insertion point ...
    blind = segment(mirrored)
    assert agreement(blind.labels, mirrored) < 0.1
    assert blind.rules_used["septum_side"]["rule"] == "handedness"
    assert any("unlike a normally placed heart" in w for w in blind.rules_used["warnings"])
    # ... the images put the septum where the RV is, and say that the rule disagrees.
    seen = segment(mirrored, image_rv=image_rv_of(mirrored))
    np.testing.assert_array_equal(seen.labels, segment(normal, image_rv=image_rv_of(normal)).labels)
    assert seen.rules_used["warnings"] == [
        "The RV in the images puts the septum on the other side than the base-to-apex axis of the slice levels "
        "would; the images are followed (the slice axis of the geometry may be reversed, or the heart mirrored)."]


def test_inferior_points_orient_a_mirrored_geometry_without_the_images(stored):
    p = stored["mirrored geometry"]
    points = np.vstack([p.rv_insertion_ras["anterior"], p.rv_insertion_ras["inferior"]])
    labels = list(p.rv_insertion_labels) + ["RV insertion inferior {}".format(level) for level in p.levels]
    result = S.aha_segment_map(p.myocardium_mask, p.lv_blood_mask, p.ijk_to_ras, points, labels)
    assert agreement(result.labels, p) >= MIN_AGREEMENT_WITH_POINTS
    assert result.rules_used["septum_side"] == {"rule": "user points", "confidence": 1.0}
    assert any("base-to-apex rule" in w for w in result.rules_used["warnings"])
    # The angle origin stays the anterior point.
    np.testing.assert_array_equal(result.labels, S.aha_segment_map(
        p.myocardium_mask, p.lv_blood_mask, p.ijk_to_ras, p.rv_insertion_ras["anterior"], p.rv_insertion_labels,
        image_rv=image_rv_of(p)).labels)


def test_no_points_and_no_rv_in_the_images_is_an_error(stored):
    p = stored["base-first"]
    frames = p.frames.copy()
    rv = p.labels == sim.TISSUE_LABELS["rv blood"]
    frames[:, rv] = frames[0][rv]
    from AIAIFLib import aif, orientation
    nothing = orientation.find_rv(frames, p.frame_times_s, p.lv_blood_mask, p.myocardium_mask, p.ijk_to_ras,
                                  lv_signal=aif.extract_aif_signal(frames, p.lv_blood_mask))
    with pytest.raises(AIAIFInputError, match="no RV was found in the images; place the anterior RV insertion "
                                              "point in each segmented short-axis slice"):
        S.aha_segment_map(p.myocardium_mask, p.lv_blood_mask, p.ijk_to_ras, image_rv=nothing)
    # With the points, the handedness rule decides, and the summary says the images could not check it.
    result = segment(p, image_rv=nothing)
    assert result.rules_used["septum_side"]["rule"] == "handedness"
    assert any("No RV was found in the images" in w for w in result.rules_used["warnings"])
    np.testing.assert_array_equal(result.labels, segment(p).labels)

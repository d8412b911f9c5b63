"""AHA segments, coronary territories and the ischaemia call of a short-axis stack.

Every myocardial voxel of a short-axis stack (masks indexed ``[k, j, i]``)
gets an AHA segment 1-16 [Cerqueira2002] from the myocardium and LV
blood-pool masks, the voxel-to-RAS matrix and the orientation of each slice:
where the anterior RV insertion point is and on which side of it the septum
lies.  The orientation comes from the user's RV insertion points, the RV
found in the images (``orientation.find_rv``) and the slice levels, combined
by ``orientation.decide_orientation``.  All geometry is done in patient
coordinates (RAS, mm: +x towards the patient's right, +y anterior, +z
superior), so neither the storage order of the slices nor a flipped or
permuted image axis changes the answer, as long as ``ijk_to_ras`` records it.

Rules
-----
Slices
    A slice is *segmented* when it holds myocardium; the rules below apply
    to the segmented slices only, and the others keep label 0 and level None.
Slice level (basal, mid, apical), first rule that applies:

    1. ``slice_levels``: one level per stored slice, given by the caller.
    2. RV point labels: when the labels of the RV points in every segmented
       slice name exactly one level (case-insensitive words ``basal``/``base``,
       ``mid``/``middle``/``midventricular``, ``apical``/``apex``), that level.
    3. LV cavity size and position: the segmented slices are ordered by their
       position along the slice normal; the end of the stack towards which the
       LV blood-pool area grows (least-squares slope of area against position)
       is basal.  Three slices are basal, mid, apical in that spatial order;
       one slice is ``mid``; more than three are split by rank into thirds
       (rank ``r`` of ``n`` from the base: basal if ``3 r < n - 1``, apical if
       ``3 r > 2 (n - 1)``, else mid).  Two slices, or an area change across the
       stack below ``MIN_CAVITY_AREA_CHANGE`` of the mean area, are ambiguous
       and raise an error asking for rule 1 or 2.

    Levels from rules 1 and 2 must be monotone in space (no ``mid`` beyond the
    ``apical`` slice), otherwise an error is raised.
RV insertion points (optional)
    A point whose label contains "inferior" (case-insensitive) is an inferior
    RV insertion point, any other an anterior one (``rv_point_kinds``).  Each
    point belongs to the stored slice whose plane is nearest, if it lies
    within half a slice spacing of it (continuous slice index in
    ``[-0.5, n_slices - 0.5]``); a point outside every slice, or two points of
    one kind in one slice, is an error.  Points in slices without myocardium
    are ignored.
Orientation (``orientation.decide_orientation``; its docstring has the details)
    The septum side, one for the stack, first rule that applies: the
    caller's ``septum_direction``; the inferior RV insertion points (the
    short turn from the anterior to the inferior point); the RV found in the
    images (``image_rv``: the septum faces it); the handedness rule below.
    The rules after the deciding one are cross-checks, reported in
    ``rules_used["warnings"]`` when they disagree.  The insertion point of a
    slice: the user's anterior point; else the end of the RV's contact arc
    found in that slice's images; else the in-plane direction of the nearest
    slice that has one (the insertion angle taken as constant along the
    stack).  Which rule decided, with a 0-1 confidence, is recorded per slice
    in ``rules_used``.
Angle
    For each slice, the angle of every myocardial voxel centre around the
    centroid of that slice's LV blood pool, in the slice plane, measured from
    the direction of the anterior RV insertion point, positive towards the
    septum, degrees in [0, 360).
Handedness rule (the septum side from the geometry)
    AHA segments run anterior -> septal -> inferior -> lateral
    counter-clockwise when viewed from the apex [Cerqueira2002], i.e. as a
    right-handed rotation about the base-to-apex axis.  That axis is taken
    from the slice levels (the slice normal oriented from the basal towards
    the apical slices) or, when all segmented slices share one level (e.g. a
    single slice), from patient anatomy: the slice normal oriented towards
    the patient's left, anterior and inferior
    (``TYPICAL_APEX_DIRECTION_RAS``), where the apex of a normally placed
    heart points; it cannot speak when the slice normal is too oblique to
    that direction (``MIN_APEX_PRIOR_COSINE``).  A reversed slice axis in the
    stored geometry, or a mirrored heart (dextrocardia), turns it the wrong
    way, which the RV in the images catches; a base-to-apex axis pointing
    away from the typical apex direction is noted in the warnings.
Sectors (shared/PHYSICS.md, after [Cerqueira2002])
    The angle origin is the anterior insertion point, also when an inferior
    point is given (it decides the septum side); the septum spans
    ``SEPTUM_SPAN_DEG`` = 120 degrees from it.  Basal and mid slices: six
    60-degree sectors starting at the anterior insertion point: 2|8
    anteroseptal [0, 60), 3|9 inferoseptal [60, 120), 4|10 inferior
    [120, 180), 5|11 inferolateral [180, 240), 6|12 anterolateral
    [240, 300), 1|7 anterior [300, 360).  Apical slice:
    four 90-degree sectors with the septal one centred on mid-septum (60
    degrees), i.e. starting 15 degrees past the insertion point: 14 septal
    [15, 105), 15 inferior [105, 195), 16 lateral [195, 285), 13 anterior
    [285, 15).  (Software differs by a few tens of degrees at the apex; some
    rotate the apical sectors 45 degrees relative to the insertion point.)
Territories and diagnosis
    LAD 1, 2, 7, 8, 13, 14; RCA 3, 4, 9, 10, 15; LCX 5, 6, 11, 12, 16
    (``constants.CORONARY_TERRITORIES``).  A vessel's MBF is the mean of the two
    lowest valid segments of its territory (``evaluation.vessel_mbf``); a value
    strictly below the threshold (default 1.35 mL/min/g) is ischaemic.
Bullseye (polar map) image
    ``bullseye_labels`` / ``bullseye_image`` draw the 16 segments as a square
    image in the standard AHA orientation [Cerqueira2002], the same as
    ``report.plot_bullseye``: rings basal (outer), mid, apical (inner) with
    the centre (segment 17, the apical cap) empty; segment 1 at the top, the
    septum (2, 3; 8, 9; 14) on the left, the lateral wall (5, 6; 11, 12; 16)
    on the right.  A bullseye angle is the anatomical angle above turned so
    that the centre of segment 1 (330 degrees, mid-way through the anterior
    sector) points up, counter-clockwise as seen (towards the septum), so
    every pixel's segment comes from ``aha_segment_from_angle``.

References: see ``constants`` ([Cerqueira2002], [Scannell2022], [Hsu2018]).
"""

import re
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from . import constants as K
from . import evaluation, orientation
from .errors import AIAIFInputError

#: Angular span of the septum from the anterior RV insertion point, degrees:
#: the anteroseptal and inferoseptal segments, 60 degrees each [Cerqueira2002]
#: (shared/PHYSICS.md; with one insertion point the inferior one is not known).
SEPTUM_SPAN_DEG = 120.0
#: Width of the basal and mid sectors, degrees [Cerqueira2002].
BASAL_MID_SECTOR_DEG = 60.0
#: Width of the apical sectors, degrees [Cerqueira2002].
APICAL_SECTOR_DEG = 90.0
#: Where the apical septal sector starts, degrees from the anterior insertion
#: point: centred on mid-septum (project choice, shared/PHYSICS.md).
APICAL_SECTOR_START_DEG = 0.5 * SEPTUM_SPAN_DEG - 0.5 * APICAL_SECTOR_DEG

#: Segments of the sectors, in angular order from the anterior insertion point.
_BASAL_SECTORS = (2, 3, 4, 5, 6, 1)
_MID_SECTORS = (8, 9, 10, 11, 12, 7)
_APICAL_SECTORS = (14, 15, 16, 13)
#: Anatomical angle of the centre of segment 1 (mid-way through the anterior
#: sector, 330 degrees); segments 7 and 13 are centred there as well.
_ANTERIOR_CENTRE_DEG = (_BASAL_SECTORS.index(1) + 0.5) * BASAL_MID_SECTOR_DEG
#: Slice level of each bullseye ring, in the order of ``BULLSEYE_RING_RADII``.
_BULLSEYE_RING_LEVELS = ("apical", "mid", "basal")

#: Direction (RAS) in which the apex of a normally placed heart points from
#: the base: towards the patient's left, anterior and inferior (project
#: choice; the LV long axis lies within a few tens of degrees of it).
TYPICAL_APEX_DIRECTION_RAS = np.array([-1.0, 1.0, -1.0]) / np.sqrt(3.0)
#: Smallest |cosine| between the slice normal and the typical apex direction
#: for which the apex side is taken from anatomy alone (project choice: the
#: normal must lie within about 70 degrees of that direction).
MIN_APEX_PRIOR_COSINE = 0.35
#: Smallest change of LV blood-pool area across the stack, as a fraction of
#: the mean area, for which the cavity size decides base from apex (project
#: choice; basal cavities are typically two to four times the apical ones).
MIN_CAVITY_AREA_CHANGE = 0.10

#: Radii of the bullseye rings (apical, mid, basal), inner to outer, in units
#: of the outer radius; the centre (segment 17, the apical cap, not covered by
#: three short-axis slices) stays empty.  Project choice, equal ring widths,
#: the same as ``report.BULLSEYE_RING_RADII`` so that the image matches the
#: report's bullseye (report imports matplotlib, so it is not imported here).
BULLSEYE_RING_RADII = ((0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
#: Where the centre of segment 1 (anterior) points in the bullseye: the top,
#: degrees counter-clockwise from the +x (right) direction [Cerqueira2002].
BULLSEYE_ANTERIOR_DEG = 90.0
#: Default width and height of a bullseye image, pixels.  Project choice: odd,
#: so that one pixel sits on the centre; at 1 mm pixels about the size of a
#: chest field of view, with rings 32 pixels wide.
BULLSEYE_SIZE_PX = 257
#: Smallest bullseye image, pixels (project choice: rings at least 3.5 pixels
#: wide, so that every segment keeps pixels next to a one-pixel gap).
MIN_BULLSEYE_SIZE_PX = 32
#: Default width of the empty border between neighbouring bullseye segments,
#: pixels (project choice: one pixel, enough to show the borders).
BULLSEYE_GAP_PX = 1.0

_LEVEL_RANK = {level: rank for rank, level in enumerate(K.SLICE_LEVELS)}
_LEVEL_WORDS = {"basal": "basal", "base": "basal", "mid": "mid", "middle": "mid", "midventricular": "mid",
                "apical": "apical", "apex": "apical"}
_SEPTUM_DIRECTIONS = {"clockwise": "clockwise", "counterclockwise": "counterclockwise",
                      "anticlockwise": "counterclockwise"}


@dataclass
class AHASegmentation:
    """AHA segments of a short-axis stack and how they were decided.

    Attributes
    ----------
    labels : numpy.ndarray of uint8, shape (n_slices, rows, columns)
        AHA segment 1-16 of every myocardial voxel, 0 elsewhere.
    angle_deg : numpy.ndarray of float, shape (n_slices, rows, columns)
        Angle of each myocardial voxel from the anterior RV insertion point,
        positive towards the septum, degrees in [0, 360); NaN elsewhere.
    slice_levels : tuple
        'basal', 'mid' or 'apical' per stored slice; None for a slice without
        myocardium.
    septum_direction : str
        'clockwise' or 'counterclockwise': the turn from the anterior RV
        insertion point through the septum as the stored slices are displayed
        with column i to the right and row j downwards.
    base_to_apex_ras : numpy.ndarray, shape (3,)
        Unit slice normal about which anterior to septum is a right-handed
        turn (RAS): from base to apex in a normally placed heart (for a
        mirrored one, or a geometry with a reversed slice axis, it points
        from apex to base).
    lv_centres_ras : numpy.ndarray, shape (n_slices, 3)
        Centroid of each slice's LV blood pool, RAS mm (NaN without myocardium).
    rv_point_used : tuple
        Index of the RV insertion point each slice's angles start from (its
        own, or the nearest slice's); None for a slice without myocardium or
        one whose origin the images gave.
    insertion_ras : numpy.ndarray, shape (n_slices, 3)
        The anterior RV insertion point each slice's angles start from,
        projected into the slice plane, RAS mm (NaN without myocardium).
    rules_used : dict
        JSON-ready account: ``"slice_levels"``, ``"septum_direction"`` and
        ``"rv_insertion"`` (one sentence each); ``"septum_side"`` (``rule``
        and ``confidence``); ``"slices"``, per segmented slice the rule and
        confidence of its insertion point, its level and the RV found in its
        images (``orientation.Orientation.slices``); ``"warnings"`` (list of
        str).
    """

    labels: np.ndarray
    angle_deg: np.ndarray
    slice_levels: Tuple[Optional[str], ...]
    septum_direction: str
    base_to_apex_ras: np.ndarray
    lv_centres_ras: np.ndarray
    rv_point_used: Tuple[Optional[int], ...]
    insertion_ras: np.ndarray = None
    rules_used: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Sectors
# ---------------------------------------------------------------------------

def aha_segment_from_angle(angle_deg, level):
    """AHA segment of each angle around the LV centre.

    Parameters
    ----------
    angle_deg : array_like
        Angle from the anterior RV insertion point, positive towards the
        septum, degrees (any range; taken modulo 360).
    level : {'basal', 'mid', 'apical'}
        Slice level.

    Returns
    -------
    numpy.ndarray of int
        AHA segment 1-16 (sectors as in the module docstring).
    """
    angle = np.mod(np.asarray(angle_deg, dtype=float), 360.0)
    if level == "apical":
        offset = np.mod(angle - APICAL_SECTOR_START_DEG, 360.0)
        sector = np.minimum((offset // APICAL_SECTOR_DEG).astype(int), len(_APICAL_SECTORS) - 1)
        return np.asarray(_APICAL_SECTORS)[sector]
    if level not in ("basal", "mid"):
        raise AIAIFInputError("The slice level must be one of {}, got {!r}; use one of those names.".format(
            ", ".join(K.SLICE_LEVELS), level))
    sectors = _BASAL_SECTORS if level == "basal" else _MID_SECTORS
    sector = np.minimum((angle // BASAL_MID_SECTOR_DEG).astype(int), len(sectors) - 1)
    return np.asarray(sectors)[sector]


# ---------------------------------------------------------------------------
# Bullseye (polar map) image
# ---------------------------------------------------------------------------

def _checked_bullseye_size(size_px, gap_px):
    """``size_px`` as an int and ``gap_px`` as a float, or an error naming the bad one."""
    try:
        size = float(size_px)
    except (TypeError, ValueError):
        size = float("nan")
    if not (np.isfinite(size) and size == round(size) and size >= MIN_BULLSEYE_SIZE_PX):
        raise AIAIFInputError("The bullseye size must be a whole number of pixels of at least {}, got {!r}; pass "
                              "e.g. size_px={}.".format(MIN_BULLSEYE_SIZE_PX, size_px, BULLSEYE_SIZE_PX))
    size = int(round(size))
    ring_width_px = (BULLSEYE_RING_RADII[0][1] - BULLSEYE_RING_RADII[0][0]) * _bullseye_outer_radius_px(size)
    try:
        gap = float(gap_px)
    except (TypeError, ValueError):
        gap = float("nan")
    if not (np.isfinite(gap) and 0.0 <= gap < 0.5 * ring_width_px):
        raise AIAIFInputError("The gap between bullseye segments must be 0 or more pixels and less than half a "
                              "ring's width ({:.1f} pixels at size {}), got {!r}; pass e.g. gap_px={:g}.".format(
                                  0.5 * ring_width_px, size, gap_px, BULLSEYE_GAP_PX))
    return size, gap


def _bullseye_outer_radius_px(size):
    """Outer radius of the basal ring in an image ``size`` pixels wide: the edge pixels stay outside."""
    return 0.5 * size - 1.0


def bullseye_labels(size_px=BULLSEYE_SIZE_PX, gap_px=BULLSEYE_GAP_PX):
    """AHA segment number of every pixel of the 16-segment bullseye (polar map).

    Standard orientation [Cerqueira2002], as ``report.plot_bullseye``: basal
    segments 1-6 in the outer ring, mid 7-12 in the middle ring, apical
    13-16 in the inner ring, no apical cap (segment 17: the centre is empty);
    segment 1 (anterior) at the top, the septum on the left (2 and 3 upper
    and lower left, 14 left), inferior at the bottom, lateral on the right
    (5 and 6 lower and upper right, 16 right).  Displayed with row 0 at the
    top and column 0 on the left (``matplotlib.pyplot.imshow``).

    Parameters
    ----------
    size_px : int, optional
        Width and height of the image, pixels (at least
        ``MIN_BULLSEYE_SIZE_PX``).  The basal ring's outer edge lies one pixel
        inside the image edge, radius ``size_px / 2 - 1`` pixels; the rings
        are ``BULLSEYE_RING_RADII`` of it.
    gap_px : float, optional
        Width of the border left unlabelled (0) between neighbouring segments,
        pixels: pixels whose centre lies within ``gap_px / 2`` of a border
        between two segments (a sector line or the circle between two rings)
        get 0.  0 for no gap.

    Returns
    -------
    numpy.ndarray of uint8, shape (size_px, size_px)
        AHA segment 1-16 of each pixel ``[row, column]``, 0 outside the rings,
        in the centre and in the gaps.

    Raises
    ------
    AIAIFInputError
        For a size below ``MIN_BULLSEYE_SIZE_PX`` or not whole, or a gap that
        is negative or at least half a ring's width.
    """
    size, gap = _checked_bullseye_size(size_px, gap_px)
    centre = 0.5 * (size - 1)
    outer_px = _bullseye_outer_radius_px(size)
    x = (np.arange(size) - centre)[None, :]  # to the right
    y = (centre - np.arange(size))[:, None]  # upwards
    radius_px = np.hypot(x, y)
    radius = radius_px / outer_px
    # Anatomical angle (from the anterior RV insertion point, towards the
    # septum): counter-clockwise as seen, segment 1's centre at the top.
    anatomical_deg = np.mod(np.degrees(np.arctan2(y, x)) - BULLSEYE_ANTERIOR_DEG + _ANTERIOR_CENTRE_DEG, 360.0)
    labels = np.zeros((size, size), np.uint8)
    for level, (inner, outer) in zip(_BULLSEYE_RING_LEVELS, BULLSEYE_RING_RADII):
        in_ring = (radius >= inner) & (radius < outer)
        labels[in_ring] = aha_segment_from_angle(anatomical_deg[in_ring], level)
        if gap > 0:
            span, start = ((APICAL_SECTOR_DEG, APICAL_SECTOR_START_DEG) if level == "apical"
                           else (BASAL_MID_SECTOR_DEG, 0.0))
            into_sector = np.mod(anatomical_deg - start, span)
            to_line_deg = np.minimum(into_sector, span - into_sector)  # at most 45 degrees
            near_line = radius_px * np.sin(np.radians(to_line_deg)) < 0.5 * gap
            labels[in_ring & near_line] = 0
    if gap > 0:
        for boundary in sorted({outer for _, outer in BULLSEYE_RING_RADII[:-1]}):
            labels[np.abs(radius_px - boundary * outer_px) < 0.5 * gap] = 0
    return labels


def bullseye_image(segment_values, size_px=BULLSEYE_SIZE_PX, gap_px=BULLSEYE_GAP_PX):
    """The 16-segment bullseye (polar map) as an image of segment values.

    Parameters
    ----------
    segment_values : array_like, shape (16,)
        One value per AHA segment 1-16 in order, e.g. the segment MBF in
        mL/min/g (the image keeps the unit); NaN for a segment without a value.
    size_px : int, optional
        Width and height of the image, pixels (see ``bullseye_labels``).
    gap_px : float, optional
        Width of the NaN border between neighbouring segments, pixels; 0 for
        none (see ``bullseye_labels``).

    Returns
    -------
    numpy.ndarray of float, shape (size_px, size_px)
        Each pixel ``[row, column]`` holds the value of its segment
        (``bullseye_labels(size_px, gap_px)``); NaN outside the rings, in the
        centre, in the gaps and in segments whose value is NaN.  Row 0 is the
        top: segment 1 at the top, septum on the left.

    Raises
    ------
    AIAIFInputError
        For anything but 16 numbers, an infinite value, or a bad size or gap.
    """
    values = _checked_segment_values(segment_values, "segment values", "")
    lookup = np.concatenate([[np.nan], values])
    return lookup[bullseye_labels(size_px, gap_px)]


def _checked_segment_values(segment_values, what, unit_text):
    """16 values (segments 1-16) as floats, NaN allowed, or an error naming ``what``."""
    try:
        values = np.asarray(segment_values, dtype=float)
    except (TypeError, ValueError):
        raise AIAIFInputError("The {} must be 16 numbers{}, AHA segments 1-16 in order.".format(what, unit_text))
    if values.shape != (len(K.AHA_SEGMENTS),):
        raise AIAIFInputError("The {} must hold {} values, AHA segments 1-16 in order, got shape {}; use "
                              "NaN for a missing segment.".format(what, len(K.AHA_SEGMENTS), values.shape))
    if np.any(np.isinf(values)):
        raise AIAIFInputError("The {} contain{} infinite values; use NaN for a missing segment.".format(
            what, "" if what.endswith("s") else "s"))
    return values


# ---------------------------------------------------------------------------
# Input checks and geometry
# ---------------------------------------------------------------------------

def _check_masks(myocardium_mask, blood_pool_mask):
    masks = []
    for name, mask in (("myocardium", myocardium_mask), ("LV blood-pool", blood_pool_mask)):
        array = np.asarray(mask)
        if array.ndim != 3:
            raise AIAIFInputError("The {} mask must be 3D, indexed [slice k, row j, column i], got shape {}; "
                                  "pass one 2D mask per short-axis slice stacked on the first axis.".format(
                                      name, array.shape))
        masks.append(array != 0)
    if masks[0].shape != masks[1].shape:
        raise AIAIFInputError("The myocardium mask {} and the LV blood-pool mask {} differ in shape; put both on "
                              "the same voxel grid.".format(masks[0].shape, masks[1].shape))
    if not masks[0].any():
        raise AIAIFInputError("The myocardium mask is empty; segment the LV myocardium before assigning AHA "
                              "segments.")
    return masks


def _check_matrix(ijk_to_ras):
    try:
        matrix = np.asarray(ijk_to_ras, dtype=float)
    except (TypeError, ValueError):
        raise AIAIFInputError("ijk_to_ras must be a 4x4 matrix of numbers; pass the volume's IJK-to-RAS matrix.")
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise AIAIFInputError("ijk_to_ras must be a finite 4x4 matrix, got shape {}; pass the volume's IJK-to-RAS "
                              "matrix.".format(matrix.shape))
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-9:
        raise AIAIFInputError("ijk_to_ras maps the voxel grid onto a plane or line (zero determinant); pass the "
                              "volume's IJK-to-RAS matrix with non-zero spacings.")
    return matrix


def _check_points(rv_insertion_ras, rv_insertion_labels):
    """Points (n, 3) and labels (tuple or None); no points gives shape (0, 3)."""
    if rv_insertion_ras is None or np.size(rv_insertion_ras) == 0:
        return np.zeros((0, 3)), None
    try:
        points = np.asarray(rv_insertion_ras, dtype=float)
    except (TypeError, ValueError):
        raise AIAIFInputError("The RV insertion points must be numbers, an array of shape (n_points, 3) in RAS mm.")
    if points.ndim > 2 or points.shape[-1] != 3:
        raise AIAIFInputError("The RV insertion points must have shape (n_points, 3) in RAS mm, got {}; pass one "
                              "row (R, A, S) per point.".format(points.shape))
    points = points.reshape(-1, 3)
    if not np.all(np.isfinite(points)):
        raise AIAIFInputError("An RV insertion point has a non-finite coordinate; place every point in the image.")
    labels = None
    if rv_insertion_labels is not None:
        labels = tuple("" if label is None else str(label) for label in rv_insertion_labels)
        if len(labels) != points.shape[0]:
            raise AIAIFInputError("There are {} RV insertion labels for {} points; give one label per point or "
                                  "none.".format(len(labels), points.shape[0]))
    return points, labels


def rv_point_kinds(labels, n_points):
    """Kind of each RV insertion point: 'inferior' when its label contains "inferior", else 'anterior'.

    Parameters
    ----------
    labels : sequence of str or None
        Point labels (case-insensitive), e.g. "RV insertion inferior basal";
        None: every point is anterior.
    n_points : int
        Number of points.

    Returns
    -------
    tuple of str
    """
    if labels is None:
        return ("anterior",) * int(n_points)
    return tuple("inferior" if "inferior" in str(label).lower() else "anterior" for label in labels)


class _Grid(object):
    """Geometry of the stack: in-plane axes, slice normal, spacing, slice positions."""

    def __init__(self, matrix, n_slices):
        self.matrix = matrix
        self.linear = matrix[:3, :3]
        self.offset = matrix[:3, 3]
        normal = np.cross(self.linear[:, 0], self.linear[:, 1])
        self.pixel_area_mm2 = float(np.linalg.norm(normal))
        # Right-handed about the normal: turning from +i towards +j, clockwise
        # on a display with i to the right and j downwards.
        self.normal = normal / self.pixel_area_mm2
        self.slice_spacing_mm = abs(float(np.dot(self.normal, self.linear[:, 2])))
        self.position_mm = np.arange(n_slices) * float(np.dot(self.normal, self.linear[:, 2]))

    def to_ras(self, i, j, k):
        return (self.linear @ np.stack([np.asarray(i, float), np.asarray(j, float), np.asarray(k, float)])).T \
            + self.offset

    def continuous_index(self, points_ras):
        return np.linalg.solve(self.linear, (points_ras - self.offset).T).T


def _assign_points(grid, points, n_slices, kinds):
    """Stored slice of each RV point by kind (``{'anterior': {k: index}, 'inferior': {k: index}}``).

    Error for a point outside every slice or two points of one kind in one slice.
    """
    k_continuous = grid.continuous_index(points)[:, 2] if len(points) else np.zeros(0)
    tolerance = 1e-6
    for index, (k_value, point) in enumerate(zip(k_continuous, points)):
        if k_value < -0.5 - tolerance or k_value > n_slices - 0.5 + tolerance:
            distance = min(abs(k_value), abs(k_value - (n_slices - 1))) * grid.slice_spacing_mm
            raise AIAIFInputError(
                "RV insertion point {} at RAS ({:.1f}, {:.1f}, {:.1f}) mm lies {:.1f} mm from the nearest slice, "
                "outside every slice; place it in the short-axis slice it belongs to.".format(
                    index + 1, point[0], point[1], point[2], distance))
    slice_of_point = np.clip(np.rint(k_continuous).astype(int), 0, n_slices - 1)
    assigned = {"anterior": {}, "inferior": {}}
    for index, (k, kind) in enumerate(zip(slice_of_point, kinds)):
        of_kind = assigned[kind]
        if k in of_kind:
            raise AIAIFInputError("RV insertion points {} and {} are both {} points of slice {}; keep one anterior "
                                  "and at most one inferior point per slice (a label containing 'inferior' marks "
                                  "the inferior one).".format(of_kind[k] + 1, index + 1, kind, k))
        of_kind[int(k)] = index
    return assigned


def _points_by_slice(assigned):
    """Indices of every RV point in each slice, whatever its kind."""
    by_slice = {}
    for of_kind in assigned.values():
        for k, index in of_kind.items():
            by_slice.setdefault(k, []).append(index)
    return by_slice


def _level_of_labels(labels):
    """The one level named by the labels of a slice's points, or None (none named, or several)."""
    levels = {_LEVEL_WORDS[word] for label in labels for word in re.findall(r"[a-z]+", label.lower())
              if word in _LEVEL_WORDS}
    return levels.pop() if len(levels) == 1 else None


# ---------------------------------------------------------------------------
# Slice levels
# ---------------------------------------------------------------------------

def _check_monotone(levels, order, source):
    ranks = [_LEVEL_RANK[levels[k]] for k in order]
    steps = np.diff(ranks)
    if np.any(steps > 0) and np.any(steps < 0):
        raise AIAIFInputError("The {} give the levels {} in spatial order along the stack, which is not "
                              "base-to-apex order; correct them so that basal, mid and apical slices follow one "
                              "another.".format(source, ", ".join(levels[k] for k in order)))


def _levels_from_override(slice_levels, n_slices, segmented, order):
    if not isinstance(slice_levels, str):
        slice_levels = tuple(slice_levels)
    if isinstance(slice_levels, str) or len(slice_levels) != n_slices:
        raise AIAIFInputError("slice_levels must name one level per stored slice ({} slices), got {!r}; pass e.g. "
                              "('basal', 'mid', 'apical') in storage order.".format(n_slices, slice_levels))
    levels = []
    for value in slice_levels:
        level = str(value).strip().lower()
        if level not in _LEVEL_RANK:
            raise AIAIFInputError("slice_levels entry {!r} is not a level; use 'basal', 'mid' or "
                                  "'apical'.".format(value))
        levels.append(level)
    _check_monotone(levels, order, "given slice_levels")
    return [level if seg else None for level, seg in zip(levels, segmented)]


def _levels_from_cavity(grid, blood_pool, segmented_slices):
    """Levels by cavity size and position (rule 3); None with the reason when ambiguous."""
    n = len(segmented_slices)
    if n == 1:
        return {segmented_slices[0]: "mid"}, "one segmented slice, taken as mid"
    if n == 2:
        raise AIAIFInputError("Two segmented slices cannot be told apart as basal, mid or apical from the cavity "
                              "size; pass slice_levels or name the level in each RV insertion point's label.")
    positions = grid.position_mm[segmented_slices]
    areas = blood_pool[segmented_slices].sum(axis=(1, 2)) * grid.pixel_area_mm2
    centred = positions - positions.mean()
    slope = float(np.dot(centred, areas - areas.mean()) / np.dot(centred, centred))
    change = abs(slope) * (positions.max() - positions.min())
    if change < MIN_CAVITY_AREA_CHANGE * areas.mean():
        raise AIAIFInputError("The LV blood-pool area changes by only {:.0f} % across the stack, too little to tell "
                              "base from apex; pass slice_levels or name the level in each RV insertion point's "
                              "label.".format(100.0 * change / areas.mean()))
    # From the base (largest cavity end) towards the apex.
    order = np.argsort(-positions if slope > 0 else positions, kind="stable")
    levels = {}
    for rank, index in enumerate(order):
        if 3 * rank < n - 1:
            level = "basal"
        elif 3 * rank > 2 * (n - 1):
            level = "apical"
        else:
            level = "mid"
        levels[segmented_slices[index]] = level
    areas_text = ", ".join("{:.0f}".format(a) for a in areas)
    return levels, ("LV blood-pool area (mm^2: {} in storage order) and position along the slice normal: the end "
                    "with the larger cavity is basal".format(areas_text))


def _slice_levels_and_rule(grid, myocardium, blood_pool, points_of_slice, labels, slice_levels):
    n_slices = myocardium.shape[0]
    segmented = myocardium.any(axis=(1, 2))
    segmented_slices = np.flatnonzero(segmented)
    order = segmented_slices[np.argsort(grid.position_mm[segmented_slices], kind="stable")]
    if slice_levels is not None:
        return _levels_from_override(slice_levels, n_slices, segmented, order), "given by the caller (slice_levels)"
    reason = "the RV insertion points have no labels"
    if labels is not None:
        named = {k: _level_of_labels([labels[index] for index in points_of_slice.get(k, ())])
                 for k in segmented_slices}
        if all(level is not None for level in named.values()):
            levels = [named.get(k) for k in range(n_slices)]
            _check_monotone(levels, order, "RV insertion point labels")
            return levels, "named in the RV insertion point labels"
        reason = "not every segmented slice has an RV insertion point whose label names its level"
    by_slice, rule = _levels_from_cavity(grid, blood_pool, segmented_slices)
    return [by_slice.get(k) for k in range(n_slices)], "{} ({})".format(rule, reason)


def infer_slice_levels(myocardium_mask, blood_pool_mask, ijk_to_ras, rv_insertion_ras=None,
                       rv_insertion_labels=None, slice_levels=None):
    """Level ('basal', 'mid', 'apical') of each stored slice.

    Parameters
    ----------
    myocardium_mask, blood_pool_mask : array_like of bool, shape (n_slices, rows, columns)
        Myocardium and LV blood pool, indexed ``[k, j, i]``.
    ijk_to_ras : array_like, shape (4, 4)
        Voxel index ``(i, j, k, 1)`` to RAS position, mm.
    rv_insertion_ras : array_like, shape (n_points, 3), optional
        Anterior RV insertion points, RAS mm; needed only for the label rule.
    rv_insertion_labels : sequence of str, optional
        Label of each point; may name the level (e.g. "RV insertion anterior basal").
    slice_levels : sequence of str, optional
        Explicit level per stored slice; validated and returned.

    Returns
    -------
    tuple
        Level per stored slice, None for a slice without myocardium (rules in
        the module docstring).

    Raises
    ------
    AIAIFInputError
        Bad masks or matrix, a point outside every slice, non-monotone levels,
        or a stack whose levels are ambiguous.
    """
    myocardium, blood_pool = _check_masks(myocardium_mask, blood_pool_mask)
    grid = _Grid(_check_matrix(ijk_to_ras), myocardium.shape[0])
    points, labels = _check_points(rv_insertion_ras, rv_insertion_labels)
    assigned = _assign_points(grid, points, myocardium.shape[0], rv_point_kinds(labels, len(points)))
    levels, _ = _slice_levels_and_rule(grid, myocardium, blood_pool, _points_by_slice(assigned), labels,
                                       slice_levels)
    return tuple(levels)


# ---------------------------------------------------------------------------
# Segment map
# ---------------------------------------------------------------------------

def _override_sign(septum_direction):
    """+1 (clockwise as displayed), -1 or None from the caller's ``septum_direction``."""
    if septum_direction is None:
        return None
    key = re.sub(r"[\s_-]", "", str(septum_direction).lower())
    if key not in _SEPTUM_DIRECTIONS:
        raise AIAIFInputError("septum_direction must be 'clockwise' or 'counterclockwise' (as the stored slice "
                              "is displayed with i to the right and j downwards), got {!r}.".format(septum_direction))
    return 1 if _SEPTUM_DIRECTIONS[key] == "clockwise" else -1


def _handedness(grid, levels):
    """The base-to-apex rule for ``orientation.decide_orientation``, or None when it cannot speak.

    ``sign`` +1 when the base-to-apex axis is the slice normal (anterior ->
    septum then turns clockwise as displayed), ``cosine`` with the typical
    apex direction, ``rule`` a sentence.
    """
    ranks = np.array([_LEVEL_RANK[level] for level in levels if level is not None], dtype=float)
    positions = np.array([p for p, level in zip(grid.position_mm, levels) if level is not None])
    prior = float(np.dot(grid.normal, TYPICAL_APEX_DIRECTION_RAS))
    trend = float(np.dot(ranks - ranks.mean(), positions - positions.mean()))
    if trend != 0.0:
        sign = int(np.sign(trend))
        return {"sign": sign, "cosine": sign * prior,
                "rule": "AHA counter-clockwise viewed from the apex, with the base-to-apex axis from the slice "
                        "levels and slice positions"}
    if abs(prior) < MIN_APEX_PRIOR_COSINE:
        return None
    return {"sign": int(np.sign(prior)), "cosine": abs(prior),
            "rule": "AHA counter-clockwise viewed from the apex, with the apex taken towards the patient's left, "
                    "anterior and inferior (one slice level only)"}


def aha_segment_map(myocardium_mask, blood_pool_mask, ijk_to_ras, rv_insertion_ras=None, rv_insertion_labels=None,
                    slice_levels=None, septum_direction=None, image_rv=None):
    """Assign an AHA segment 1-16 to every myocardial voxel of a short-axis stack.

    Parameters
    ----------
    myocardium_mask, blood_pool_mask : array_like of bool, shape (n_slices, rows, columns)
        LV myocardium and LV blood pool, indexed ``[k, j, i]`` (non-zero = inside).
    ijk_to_ras : array_like, shape (4, 4)
        Voxel index ``(i, j, k, 1)`` to patient RAS position, mm.  Flipped,
        permuted or left-handed grids are fine.
    rv_insertion_ras : array_like, shape (n_points, 3), optional
        RV insertion points, RAS mm: per slice at most one anterior and one
        inferior point (``rv_point_kinds``).
    rv_insertion_labels : sequence of str, optional
        Label of each point: "inferior" in it marks an inferior point; the
        slice levels are taken from the labels when every segmented slice's
        points name one.
    slice_levels : sequence of str, optional
        'basal', 'mid' or 'apical' per stored slice, overriding the automatic
        rules.
    septum_direction : {'clockwise', 'counterclockwise'}, optional
        Turn from the anterior insertion point through the septum as the stored
        slices are displayed with column i to the right and row j downwards,
        overriding the automatic rules.
    image_rv : orientation.ImageRV, optional
        The RV found in the study's images (``orientation.find_rv``): the
        septum side, and the insertion point of slices without a user point.

    Returns
    -------
    AHASegmentation
        Labels, angles, levels, septum side and the rules that decided them.

    Raises
    ------
    AIAIFInputError
        Empty myocardium, a segmented slice without LV blood pool, masks of
        different shapes, a point outside every slice or two of one kind in
        one slice, bad overrides, levels that cannot be decided, or an
        orientation that nothing decides (no point and no RV in the images;
        no side from points, images or slice levels).

    Notes
    -----
    The rules are stated in the module docstring.
    """
    myocardium, blood_pool = _check_masks(myocardium_mask, blood_pool_mask)
    n_slices = myocardium.shape[0]
    grid = _Grid(_check_matrix(ijk_to_ras), n_slices)
    points, labels = _check_points(rv_insertion_ras, rv_insertion_labels)
    assigned = _assign_points(grid, points, n_slices, rv_point_kinds(labels, len(points)))
    segmented_slices = np.flatnonzero(myocardium.any(axis=(1, 2)))
    for k in segmented_slices:
        if not blood_pool[k].any():
            raise AIAIFInputError("Slice {} has myocardium but no LV blood pool; segment the LV blood pool in every "
                                  "slice with myocardium.".format(k))
    if image_rv is None and not set(assigned["anterior"]) & set(segmented_slices.tolist()):
        raise AIAIFInputError("No RV insertion point lies in a slice with myocardium; place the anterior RV "
                              "insertion point in each segmented short-axis slice, or pass image_rv from "
                              "orientation.find_rv.")

    levels, level_rule = _slice_levels_and_rule(grid, myocardium, blood_pool, _points_by_slice(assigned), labels,
                                                slice_levels)
    handedness = _handedness(grid, levels)
    centres = np.full((n_slices, 3), np.nan)
    for k in segmented_slices:
        jj, ii = np.nonzero(blood_pool[k])
        centres[k] = grid.to_ras(ii.mean(), jj.mean(), k)
    segmented = set(segmented_slices.tolist())
    by_kind = {kind: {k: (index, points[index]) for k, index in of_kind.items() if k in segmented}
               for kind, of_kind in assigned.items()}
    decided = orientation.decide_orientation(
        grid.normal, centres, segmented_slices, by_kind["anterior"], by_kind["inferior"], image_rv,
        _override_sign(septum_direction), handedness)
    axis = decided.septum_sign * grid.normal
    warnings = list(decided.warnings)
    if handedness is not None and handedness["cosine"] < 0 and handedness["sign"] == decided.septum_sign:
        warnings.append("The base-to-apex axis from the slice levels points towards the patient's right, "
                        "posterior or superior, unlike a normally placed heart; check the slice levels.")

    labels_map = np.zeros(myocardium.shape, np.uint8)
    angle_map = np.full(myocardium.shape, np.nan)
    insertion = np.full((n_slices, 3), np.nan)
    point_used = [None] * n_slices
    for k in segmented_slices:
        offset = decided.origins_ras[k] - centres[k]
        in_plane = offset - np.dot(offset, grid.normal) * grid.normal
        length = np.linalg.norm(in_plane)
        if length < 1e-6 * np.sqrt(grid.pixel_area_mm2):
            raise AIAIFInputError("RV insertion point {} lies on the LV blood-pool centre of slice {}; place it "
                                  "where the RV wall joins the septum anteriorly.".format(
                                      (decided.origin_points[k] or 0) + 1, k))
        first = in_plane / length
        insertion[k] = centres[k] + in_plane
        point_used[k] = decided.origin_points[k]
        second = np.cross(axis, first)
        jj, ii = np.nonzero(myocardium[k])
        relative = grid.to_ras(ii, jj, np.full(ii.shape, k)) - centres[k]
        angle = np.mod(np.degrees(np.arctan2(relative @ second, relative @ first)), 360.0)
        angle_map[k, jj, ii] = angle
        labels_map[k, jj, ii] = aha_segment_from_angle(angle, levels[k])

    records = decided.slices
    for record in records:
        record["level"] = levels[record["slice"]]
    side = decided.side
    direction_rule = ("given by the caller (septum_direction={!r})".format(septum_direction)
                      if side["rule"] == "override" else side["sentence"])
    return AHASegmentation(
        labels=labels_map, angle_deg=angle_map, slice_levels=tuple(levels),
        septum_direction="clockwise" if decided.septum_sign > 0 else "counterclockwise",
        base_to_apex_ras=axis, lv_centres_ras=centres, rv_point_used=tuple(point_used), insertion_ras=insertion,
        rules_used={"slice_levels": level_rule, "septum_direction": direction_rule,
                    "septum_side": {"rule": side["rule"], "confidence": side["confidence"]},
                    "rv_insertion": _insertion_rule(records), "slices": records, "warnings": warnings})


def _insertion_rule(records):
    """One sentence: where each slice's angle origin came from."""
    if all(record["insertion_point"]["rule"] == "user point" for record in records):
        return "one anterior RV insertion point per segmented slice"
    parts = []
    for record in records:
        source = record["insertion_point"]
        if source["rule"] == "nearest slice":
            parts.append("slice {} uses the direction of slice {}".format(record["slice"], source["from_slice"]))
        else:
            parts.append("slice {}: {}".format(record["slice"], "the anterior RV insertion point" if source["rule"]
                                               == "user point" else "the RV found in the images"))
    return "; ".join(parts)


# ---------------------------------------------------------------------------
# Statistics, territories and diagnosis
# ---------------------------------------------------------------------------

def segment_statistics(mbf_ml_min_g, labels, not_measured=None, max_not_measured_fraction=0.5):
    """MBF statistics of each AHA segment.

    Parameters
    ----------
    mbf_ml_min_g : array_like of float
        MBF map, mL/min/g; NaN (or inf) where the value is missing, e.g. a
        failed fit.
    labels : array_like of int, same shape
        AHA segment 1-16 per voxel, 0 outside the myocardium.
    not_measured : array_like of bool, same shape, optional
        Voxels whose finite value is not a measurement (the pipeline passes
        the pixels at the upper flow bound, 11.4 mL/min/g).  They are left
        out of a segment's mean and median, so that a few of them cannot
        carry it (four such pixels among forty raise a 0.7 mL/min/g mean by
        about 1.1 mL/min/g) -- unless they are more than
        ``max_not_measured_fraction`` of the segment's finite values: then
        its statistics use every value and are set by the bound, which the
        caller flags (``pipeline``: ``mbf_is_bound``).
    max_not_measured_fraction : float, optional
        See ``not_measured`` (0-1).

    Returns
    -------
    dict
        Arrays of 16, one entry per segment 1-16 in order: ``"segment"``;
        ``"mbf_mean"`` and ``"mbf_median"`` over the segment's measured
        values, mL/min/g (NaN when it has none); ``"n_pixels"`` the finite
        values; ``"n_failed"`` the segment's non-finite values, left out;
        ``"n_left_out"`` the finite values left out as not measured.
    """
    try:
        values = np.asarray(mbf_ml_min_g, dtype=float)
        segment_of = np.asarray(labels)
    except (TypeError, ValueError):
        raise AIAIFInputError("The MBF map must be numbers in mL/min/g.")
    if values.shape != segment_of.shape:
        raise AIAIFInputError("The MBF map {} and the AHA labels {} differ in shape; compute both on the same voxel "
                              "grid.".format(values.shape, segment_of.shape))
    if segment_of.size and (not np.issubdtype(segment_of.dtype, np.number) or np.any(segment_of != np.round(
            segment_of)) or segment_of.min() < 0 or segment_of.max() > len(K.AHA_SEGMENTS)):
        raise AIAIFInputError("The AHA labels must be whole numbers 0-16 (0 outside the myocardium); pass the labels "
                              "of aha_segment_map.")
    if not_measured is None:
        not_measured = np.zeros(values.shape, dtype=bool)
    else:
        not_measured = np.asarray(not_measured, dtype=bool)
        if not_measured.shape != values.shape:
            raise AIAIFInputError("The map of values that are not measurements {} differs in shape from the MBF map "
                                  "{}; compute both on the same voxel grid.".format(not_measured.shape, values.shape))
    segment_of = segment_of.astype(int).ravel()
    values = values.ravel()
    finite = np.isfinite(values)
    n_bins = len(K.AHA_SEGMENTS) + 1
    n_pixels = np.bincount(segment_of[finite], minlength=n_bins)
    n_failed = np.bincount(segment_of[~finite], minlength=n_bins)[1:]
    unmeasured = finite & not_measured.ravel()
    n_unmeasured = np.bincount(segment_of[unmeasured], minlength=n_bins)
    leave_out = n_unmeasured <= max_not_measured_fraction * n_pixels
    used = finite & ~(unmeasured & leave_out[segment_of])
    n_used = np.bincount(segment_of[used], minlength=n_bins)[1:]
    total = np.bincount(segment_of[used], weights=values[used], minlength=n_bins)[1:]
    mean = np.where(n_used > 0, total / np.maximum(n_used, 1), np.nan)
    median = np.full(len(K.AHA_SEGMENTS), np.nan)
    order = np.argsort(segment_of[used], kind="stable")
    sorted_values = values[used][order]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(segment_of[used], minlength=n_bins))])
    for row, segment in enumerate(K.AHA_SEGMENTS):
        members = sorted_values[bounds[segment]:bounds[segment + 1]]
        if members.size:
            median[row] = np.median(members)
    return {"segment": np.array(K.AHA_SEGMENTS), "mbf_mean": mean, "mbf_median": median,
            "n_pixels": n_pixels[1:], "n_failed": n_failed, "n_left_out": n_pixels[1:] - n_used}


def territory_results(segment_mbf_ml_min_g, threshold_ml_min_g=K.ISCHAEMIA_THRESHOLD_ML_MIN_G):
    """Vessel MBF and the ischaemia call of each coronary territory and segment.

    Parameters
    ----------
    segment_mbf_ml_min_g : array_like, shape (16,)
        MBF of AHA segments 1-16 in order, mL/min/g; NaN = missing.
    threshold_ml_min_g : float, optional
        A value strictly below it is ischaemic, mL/min/g.

    Returns
    -------
    dict
        Per territory (``"territory"``: LAD, RCA, LCX): ``"mbf_ml_min_g"``
        the mean of its two lowest valid segments (the one valid segment if
        only one; NaN if none), ``"lowest_segments"`` the segments averaged,
        ``"ischemic"`` bool (None without a value).  Per segment 1-16
        (``"segment"``): ``"segment_ischemic"`` bool (None for NaN).
    """
    values = _checked_segment_values(segment_mbf_ml_min_g, "segment MBF", " in mL/min/g")
    try:
        threshold = float(threshold_ml_min_g)
    except (TypeError, ValueError):
        threshold = float("nan")
    if not (np.isfinite(threshold) and threshold > 0):
        raise AIAIFInputError("The ischaemia threshold must be a positive number in mL/min/g, got {!r}.".format(
            threshold_ml_min_g))

    def call(value):
        return bool(value < threshold) if np.isfinite(value) else None

    territories = tuple(K.CORONARY_TERRITORIES)
    vessel = evaluation.vessel_mbf(values[None, :])[0]
    lowest = []
    for name in territories:
        members = np.array(K.CORONARY_TERRITORIES[name])
        member_values = values[members - 1]
        valid = np.isfinite(member_values)
        ranked = members[valid][np.argsort(member_values[valid], kind="stable")]
        lowest.append(tuple(int(s) for s in ranked[:2]))
    return {"territory": territories, "mbf_ml_min_g": vessel, "lowest_segments": tuple(lowest),
            "ischemic": [call(v) for v in vessel], "segment": np.array(K.AHA_SEGMENTS),
            "segment_ischemic": [call(v) for v in values]}

"""Where the RV and the septum are: the orientation of the short-axis slices.

The AHA segments (``segments``) start at the anterior RV insertion point and
turn towards the septum.  This module decides, for every slice with
myocardium, that starting point and which way the septum lies, from every
clue there is, and records which clue decided and how sure it is.

Part 1 -- the RV from the images (``find_rv``)
----------------------------------------------
During the first pass contrast reaches the RV before the LV: the RV blood
pool is the cavity beside the LV that enhances strongly and early.

1. *Reference*: the LV blood-pool curve (the AIF signal, or the mean of the
   mask), its pre-contrast level, peak enhancement and half-rise time
   (linear interpolation between frames).
2. *Candidates*: pixels outside the LV blood-pool and myocardium masks whose
   peak enhancement over the mean of the first ``INITIAL_BASELINE_FRAMES``
   frames (at most the LV's pre-contrast frames) is at least
   ``RV_MIN_PEAK_FRACTION`` of the LV's, and whose half-rise comes at least
   ``RV_MIN_LEAD_S`` before the LV's.
3. *RV*: per slice, of the 4-connected candidate regions the one with most
   pixels within ``CONTACT_DISTANCE_MM`` outside the myocardium mask (at
   least ``MIN_CONTACT_PIXELS`` there and ``MIN_RV_AREA_MM2`` in all).
4. *RV fraction map*: the mean curve of all slices' RV pixels gives the RV
   arrival, so the pre-contrast frames of every pixel.  Each frame is
   weighted by how much more the RV than the LV has enhanced in it (both
   relative to their peaks; negative weights set to 0), and a pixel's
   weighted enhancement over the RV's is its RV fraction: about 1 in RV
   blood, about 0 in tissue that enhances later (myocardium, chest wall,
   fat), in between where a pixel holds both (partial volume).
5. *Contact arc*: around the LV blood-pool centroid, along ``N_RAYS`` rays,
   the epicardial radius (the outer 0.5 crossing of the myocardium mask,
   bilinear, smoothed by a Fourier series of order
   ``EPICARDIUM_FOURIER_ORDER``) and the RV fraction (Gaussian-smoothed by
   ``RV_SMOOTHING_MM``) on contours parallel to it, ``SHELL_STEP_MM`` apart.
   The RV touches the LV along the longest run of rays whose RV fraction
   reaches 0.5 within ``CONTACT_DISTANCE_MM`` of the epicardium: the contact
   arc, at least ``MIN_CONTACT_ARC_DEG``.  The RV's inner edge is where its
   fraction first reaches 0.5 beyond the epicardium (median over the middle
   half of the arc).
6. *Insertion points*: near each end of the arc, the RV's depth beyond the
   epicardium along each ray (where the fraction falls below 0.5 again) is
   fitted, over the ``DEPTH_SPAN_DEG`` next to the end and where the depth
   exceeds the inner edge by ``DEPTH_MIN_MM``, by a power law of the angle
   from the insertion (``TIP_POWERS``: from a free wall that meets the
   epicardium at an angle to a rounded crescent tip).  Where it reaches zero
   depth -- the RV's free wall extended to the epicardial contour -- is the
   insertion point, to a fraction of a pixel (at most
   ``MAX_EXTRAPOLATION_DEG`` beyond the arc's end; otherwise the arc's end
   itself).  Its standard error follows from the fit.
7. *Anterior end*: the end lying further along the patient's anterior
   direction projected into the slice plane (``anterior_sense``); the
   slices vote in ``decide_orientation``.  How far the RV's centroid lies
   anterior of the LV centre (as an angle above the patient's left-right
   line in the slice plane) is kept for the flipped-geometry cross-check: a
   normal heart has its RV anterior and to the right of the LV.

Confidence of a slice's RV (0-1): the smallest of four scores, each 0-1 --
``size`` (RV area over ``RV_FULL_CONFIDENCE_AREA_MM2``), ``contrast`` (the
RV's weighted enhancement over its noise, from ``MIN_RV_CNR`` to
``RV_FULL_CONFIDENCE_CNR``), ``timing`` (the RV's half-rise lead over the
LV's, over ``RV_FULL_CONFIDENCE_LEAD_S``) and ``contact`` (the arc over
``RV_FULL_CONFIDENCE_ARC_DEG``).  Below ``MIN_RV_CONFIDENCE`` the slice
counts as "RV not found".

Part 2 -- deciding (``decide_orientation``)
-------------------------------------------
The *septum side* is one for the stack (its slices share their in-plane
axes).  First rule that applies:

1. ``override``: the caller's ``septum_direction``.
2. ``user points``: in slices with an inferior RV insertion point, the short
   turn from the anterior point (the user's, or else the end of the image's
   contact arc away from the inferior point) to the inferior point.
3. ``image RV``: the RV lies on the septum side of the anterior insertion
   point -- the user's point, or else the arc end further along the
   patient's anterior direction; the slices vote, weighted by confidence.
4. ``handedness``: AHA runs counter-clockwise viewed from the apex about the
   base-to-apex axis given by the caller (``segments``, from the slice
   levels).

Each rule after the deciding one that can speak is a cross-check: when it
disagrees, ``warnings`` says so.  In particular, when the images and the
handedness rule disagree the images are followed (the slice axis of the
stored geometry may be reversed, or the heart mirrored).  When no rule
applies, ``AIAIFInputError`` asks for the RV insertion points or
``septum_direction``.  An RV lying on the far side of the LV from the
patient's anterior direction (more than ``RV_POSTERIOR_WARNING_DEG`` behind
the left-right line) in most slices is reported too: the in-plane image
geometry may be flipped.

The *insertion point* (angle origin) of each segmented slice:

1. ``user point``: the user's anterior RV insertion point in that slice;
2. ``image RV``: the end of that slice's contact arc from which the decided
   septum side turns into the arc;
3. ``nearest slice``: the in-plane direction of the nearest slice that has
   one of the above (a warning says so).

Confidence of the side: ``override`` 1; ``user points`` the share of their
slices that agree; ``image RV`` the summed confidence of the agreeing slices
minus that of the disagreeing ones, over the slices that voted;
``handedness`` ``HANDEDNESS_MAX_CONFIDENCE`` times the cosine between the
base-to-apex axis and the typical apex direction (0 when it points away), at
most 0.5 because a reversed slice axis in the geometry cannot be seen from
the geometry alone.  Confidence of an insertion point: 1 for a user point,
the slice's RV confidence for an image estimate, the source's for a borrowed
one.

Geometry is in patient coordinates (RAS, mm), in the slice plane, around the
LV blood-pool centroid of each slice.  A "right-handed turn about the slice
normal" (sign +1) goes from the column direction +i towards the row
direction +j: clockwise as the stored slice is displayed with i to the right
and j downwards.
"""

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from .errors import AIAIFInputError

#: Frames (from the first) whose mean is the provisional pre-contrast signal
#: of every pixel, at most the LV's pre-contrast frames (project choice: the
#: RV enhances a few seconds, several frames, after the first frame).
INITIAL_BASELINE_FRAMES = 2
#: Smallest peak enhancement of an RV pixel, as a fraction of the LV blood
#: pool's (project choice: RV and LV blood reach similar first-pass
#: concentrations; myocardium stays near 0.1-0.3 of the LV).
RV_MIN_PEAK_FRACTION = 0.3
#: Smallest lead of an RV pixel's half-rise before the LV's, s (project
#: choice: the pulmonary transit takes about 3-8 s, at stress still over
#: 2 s; structures that fill just before the LV, such as the left atrium,
#: are meant to fail it).
RV_MIN_LEAD_S = 1.0
#: Distance outside the myocardium mask within which RV blood counts as
#: touching the LV, mm (project choice: a few pixels of partial volume and
#: mask tolerance at the septum's RV surface).
CONTACT_DISTANCE_MM = 5.0
#: Fewest RV pixels within ``CONTACT_DISTANCE_MM`` for an RV (project choice).
MIN_CONTACT_PIXELS = 4
#: Smallest RV area in a slice, mm^2 (project choice: about ten 1.6 mm pixels).
MIN_RV_AREA_MM2 = 25.0
#: Smallest arc of contact between the RV and the LV epicardium, degrees
#: (project choice; the RV typically covers 100-150 degrees of the LV).
MIN_CONTACT_ARC_DEG = 20.0
#: RV area (mm^2), contrast-to-noise, half-rise lead (s) and contact arc
#: (degrees) at which the respective confidence score reaches 1 (project
#: choices: a small apical RV of 2 cm^2; a contrast an eye trusts; a lead of
#: clearly more than one frame; half of a typical septal contact).
RV_FULL_CONFIDENCE_AREA_MM2 = 200.0
RV_FULL_CONFIDENCE_CNR = 20.0
RV_FULL_CONFIDENCE_LEAD_S = 2.0
RV_FULL_CONFIDENCE_ARC_DEG = 60.0
#: RV contrast-to-noise at and below which the contrast score is 0 (project choice).
MIN_RV_CNR = 5.0
#: Slices whose RV confidence is below this count as "RV not found" (project choice).
MIN_RV_CONFIDENCE = 0.25
#: Rays around the LV centre (0.5 degrees apart).
N_RAYS = 720
#: Order of the Fourier series that smooths the epicardial radius (project
#: choice: the epicardium is smooth over tens of degrees; order 8 follows an
#: elliptical or dented LV and averages the mask's pixel steps).
EPICARDIUM_FOURIER_ORDER = 8
#: Gaussian smoothing of the RV fraction before its edges are traced, mm
#: (project choice: half a typical 1.6 mm pixel, enough to turn the steps of
#: a hard-edged RV into a sub-pixel edge without rounding its tips much).
RV_SMOOTHING_MM = 0.8
#: Step between the contours parallel to the epicardium, and the outermost
#: one, mm beyond the epicardium.
SHELL_STEP_MM = 0.25
SHELL_MAX_MM = 15.0
#: Insertion points from the RV depth profile: span of rays next to each arc
#: end (degrees), the depth beyond the RV's inner edge from which a ray is
#: used (mm; nearer the tip the pixels no longer resolve the RV), and how far
#: beyond the arc's end the insertion may lie (degrees).  Project choices.
DEPTH_SPAN_DEG = 30.0
DEPTH_MIN_MM = 1.0
MAX_EXTRAPOLATION_DEG = 15.0
#: Powers of the RV tip model ``depth = a (angle - insertion)^p``: 1 where the
#: free wall meets the epicardium at an angle, 1/2 for a rounded crescent tip
#: whose depth grows as the square root of the angle (project choice: the
#: range between and a little beyond).
TIP_POWERS = np.round(np.arange(0.4, 1.0001, 0.05), 2)
#: Largest confidence of the handedness rule (project choice: a reversed
#: slice axis in the stored geometry mirrors it without a trace).
HANDEDNESS_MAX_CONFIDENCE = 0.5
#: Patient anterior direction, RAS.
ANTERIOR_RAS = np.array([0.0, 1.0, 0.0])
#: An RV centroid more than this far behind the patient's left-right line
#: through the LV centre (in the slice plane) counts as posterior of the LV,
#: degrees (project choice: a normal RV lies anterior, its centroid well in
#: front of that line; some margin for RVs that sit beside the septum).
RV_POSTERIOR_WARNING_DEG = 30.0
#: Smallest in-plane length of a projected unit direction for it to count
#: (project choice: the plane within about 80 degrees of containing it).
MIN_IN_PLANE_LENGTH = 0.17
#: Smallest difference between the two arc ends' anterior components (unit
#: directions from the LV centre) for a slice to vote by the anterior
#: direction (project choice).
MIN_ANTERIOR_SEPARATION = 0.2
#: Largest angle between a user's anterior point and the image's estimate
#: before a warning, degrees (project choice).
USER_IMAGE_TOLERANCE_DEG = 30.0

#: Names of the rules, as recorded in ``rules_used``.
SIDE_RULES = ("override", "user points", "image RV", "handedness")
_RULE_NAMES = {"override": "septum_direction given", "user points": "inferior RV insertion points",
               "image RV": "RV found in the images", "handedness": "base-to-apex rule of the slice levels"}
ORIGIN_RULES = ("user point", "image RV", "nearest slice")


# ---------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------

class _Plane(object):
    """In-plane coordinates (mm): x along +i, y completing a right-handed frame about the slice normal."""

    def __init__(self, ijk_to_ras):
        matrix = np.asarray(ijk_to_ras, dtype=float)
        self.matrix = matrix
        columns, rows = matrix[:3, 0], matrix[:3, 1]
        normal = np.cross(columns, rows)
        self.normal = normal / np.linalg.norm(normal)
        self.e1 = columns / np.linalg.norm(columns)
        self.e2 = np.cross(self.normal, self.e1)
        self.to_xy = np.array([[self.e1 @ columns, self.e1 @ rows], [self.e2 @ columns, self.e2 @ rows]])
        self.to_ij = np.linalg.inv(self.to_xy)
        self.spacing_mm = np.array([np.linalg.norm(rows), np.linalg.norm(columns)])  # (row j, column i)

    def xy_to_ras(self, xy, k):
        i, j = self.to_ij @ np.asarray(xy, dtype=float)
        return self.matrix[:3, :3] @ np.array([i, j, float(k)]) + self.matrix[:3, 3]

    def in_plane(self, vector_ras):
        return np.array([self.e1 @ vector_ras, self.e2 @ vector_ras])


def turn_deg(from_ras, to_ras, normal_ras):
    """Signed in-plane angle from one direction to another, right-handed about ``normal_ras``, degrees."""
    normal = np.asarray(normal_ras, dtype=float)
    a = np.asarray(from_ras, dtype=float) - np.dot(from_ras, normal) * normal
    b = np.asarray(to_ras, dtype=float) - np.dot(to_ras, normal) * normal
    return float(np.degrees(np.arctan2(np.cross(a, b) @ normal, a @ b)))


def _rounded(value, digits):
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


# ---------------------------------------------------------------------------
# Results of part 1
# ---------------------------------------------------------------------------

@dataclass
class RVSlice:
    """The RV found in one slice's images (``find_rv``).

    Attributes
    ----------
    found : bool
        An RV with confidence of at least ``MIN_RV_CONFIDENCE`` and both
        insertion points.
    reason : str
        Why not, when not found.
    confidence : float
        0-1, the smallest of ``scores``.
    scores : dict
        ``size``, ``contrast``, ``timing``, ``contact``, each 0-1.
    area_mm2, cnr, lead_s, contact_arc_deg : float
        RV area (mm^2), contrast-to-noise of its weighted enhancement,
        half-rise lead over the LV (s), contact arc with the LV (degrees).
    arc_ends_ras : numpy.ndarray, shape (2, 3), or None
        Insertion points at both ends of the contact arc, RAS mm; turning
        right-handed about the slice normal from the first through the RV
        reaches the second.
    arc_ends_sd_deg : tuple of float
        Standard error of each end's angle, degrees (NaN: the arc's end was
        used as it is).
    anterior_sense : int
        +1 when the first arc end lies further along the patient's anterior
        direction, -1 when the second does, 0 when that cannot tell
        (``anterior_separation`` below ``MIN_ANTERIOR_SEPARATION``).
    anterior_separation : float
        Difference of the two ends' anterior components (unit directions).
    rv_anterior_deg : float
        Direction from the LV centre to the RV centroid, degrees above the
        patient's left-right line in the slice plane (positive: anterior);
        NaN when the anterior direction is nearly normal to the slice.
    """

    found: bool = False
    reason: str = ""
    confidence: float = 0.0
    scores: dict = field(default_factory=dict)
    area_mm2: float = 0.0
    cnr: float = float("nan")
    lead_s: float = float("nan")
    contact_arc_deg: float = 0.0
    arc_ends_ras: Optional[np.ndarray] = None
    arc_ends_sd_deg: Tuple[float, float] = (float("nan"), float("nan"))
    anterior_sense: int = 0
    anterior_separation: float = 0.0
    rv_anterior_deg: float = float("nan")

    def summary(self):
        """JSON-ready account of this slice's RV."""
        if not self.scores:
            return {"found": False, "reason": self.reason}
        return {"found": bool(self.found), "reason": self.reason, "confidence": round(float(self.confidence), 3),
                "scores": {key: round(float(value), 3) for key, value in self.scores.items()},
                "area_mm2": round(float(self.area_mm2), 1), "cnr": _rounded(self.cnr, 1),
                "lead_s": _rounded(self.lead_s, 2), "contact_arc_deg": round(float(self.contact_arc_deg), 1),
                "insertion_sd_deg": [_rounded(value, 2) for value in self.arc_ends_sd_deg],
                "rv_anterior_deg": _rounded(self.rv_anterior_deg, 1)}


@dataclass
class ImageRV:
    """The RV of a short-axis stack found in its dynamic series (``find_rv``).

    Attributes
    ----------
    slices : tuple of RVSlice
        One per stored slice.
    normal_ras : numpy.ndarray, shape (3,)
        Slice normal (column direction x row direction), unit.
    rv_mask : numpy.ndarray of bool, shape (n_slices, rows, columns)
        RV blood-pool pixels found.
    rv_fraction : numpy.ndarray, shape (n_slices, rows, columns)
        RV fraction map (about 1 in RV blood, 0 in later-enhancing tissue).
    """

    slices: Tuple[RVSlice, ...]
    normal_ras: np.ndarray
    rv_mask: np.ndarray
    rv_fraction: np.ndarray


# ---------------------------------------------------------------------------
# Part 1: the RV from the images
# ---------------------------------------------------------------------------

def _half_rise_s(times_s, enhancement):
    """Time (s) at which each row of ``enhancement`` first reaches half its maximum (interpolated); NaN if never."""
    enhancement = np.atleast_2d(enhancement)
    half = 0.5 * enhancement.max(axis=1)
    above = enhancement >= half[:, None]
    first = np.argmax(above, axis=1)
    rows = np.arange(enhancement.shape[0])
    before = np.maximum(first - 1, 0)
    e0, e1 = enhancement[rows, before], enhancement[rows, first]
    with np.errstate(divide="ignore", invalid="ignore"):
        part = np.where(first > 0, (half - e0) / (e1 - e0), 0.0)
    times = np.asarray(times_s, dtype=float)
    result = times[before] + np.clip(np.nan_to_num(part), 0.0, 1.0) * (times[first] - times[before])
    return np.where(half > 0, result, np.nan)


def _noise_sd(curves):
    """Noise SD (signal units) pooled over curves (n, n_frames): temporal second differences, median deviation."""
    second = np.diff(curves, n=2, axis=-1).ravel()
    if second.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(second - np.median(second))) / np.sqrt(6.0))


def find_rv(frames, times_s, blood_pool_mask, myocardium_mask, ijk_to_ras, lv_signal=None, lv_arrival_index=None):
    """Find the RV blood pool and the RV insertion points in a dynamic short-axis stack.

    Parameters
    ----------
    frames : array_like, shape (n_frames, n_slices, rows, columns)
        Signal of every frame (signal units), indexed ``[frame, k, j, i]``.
    times_s : array_like, shape (n_frames,)
        Frame times, s, increasing.
    blood_pool_mask, myocardium_mask : array_like of bool, shape (n_slices, rows, columns)
        LV blood pool and myocardium on the frame grid.
    ijk_to_ras : array_like, shape (4, 4)
        Voxel index ``(i, j, k, 1)`` to RAS, mm.
    lv_signal : array_like, shape (n_frames,), optional
        LV blood-pool signal, e.g. the AIF signal; the mean of the mask by default.
    lv_arrival_index : int, optional
        First enhanced frame of ``lv_signal``; ``aif.detect_arrival_index``
        by default.

    Returns
    -------
    ImageRV
        Per slice the RV, its contact arc with the LV and the insertion points
        at the arc's ends, with confidence (rules in the module docstring).
        Slices without myocardium, or without an RV, are "not found" with the
        reason; nothing is raised for an RV that is not there.
    """
    from scipy import ndimage

    from .aif import detect_arrival_index

    frames = np.asarray(frames, dtype=float)
    times = np.asarray(times_s, dtype=float)
    blood_pool = np.asarray(blood_pool_mask, dtype=bool)
    myocardium = np.asarray(myocardium_mask, dtype=bool)
    plane = _Plane(ijk_to_ras)
    n_slices = frames.shape[1]
    pixel_area_mm2 = float(np.prod(plane.spacing_mm))
    reasons = ["no myocardium" if not myocardium[k].any() else "" for k in range(n_slices)]

    def result(slices, rv_mask=None, fraction=None):
        return ImageRV(slices=tuple(slices), normal_ras=plane.normal,
                       rv_mask=np.zeros(blood_pool.shape, bool) if rv_mask is None else rv_mask,
                       rv_fraction=np.zeros(blood_pool.shape) if fraction is None else fraction)

    def nothing(reason):
        return result(RVSlice(reason=reasons[k] or reason) for k in range(n_slices))

    lv = frames[:, blood_pool].mean(axis=1) if lv_signal is None else np.asarray(lv_signal, dtype=float)
    try:
        lv_arrival = int(detect_arrival_index(times, lv)[0]) if lv_arrival_index is None else int(lv_arrival_index)
    except AIAIFInputError:
        return nothing("no contrast arrival in the LV blood pool")
    lv_arrival = max(lv_arrival, 1)
    lv_enhancement = lv - lv[:lv_arrival].mean()
    lv_peak = float(lv_enhancement.max())
    lv_half_s = float(_half_rise_s(times, lv_enhancement)[0])
    if not (lv_peak > 0 and np.isfinite(lv_half_s)):
        return nothing("the LV blood pool does not enhance")

    # Candidates: strongly and early enhancing pixels outside the LV masks.
    outside = ~(blood_pool | myocardium)
    enhancement = frames[:, outside] - frames[:min(INITIAL_BASELINE_FRAMES, lv_arrival)][:, outside].mean(axis=0)
    strong = enhancement.max(axis=0) >= RV_MIN_PEAK_FRACTION * lv_peak
    early = np.zeros(strong.shape, bool)
    early[strong] = _half_rise_s(times, enhancement[:, strong].T) <= lv_half_s - RV_MIN_LEAD_S
    candidates = np.zeros(blood_pool.shape, bool)
    candidates[outside] = early

    # Per slice, the candidate region that touches the LV most.
    distance_mm = np.stack([ndimage.distance_transform_edt(~myocardium[k], sampling=plane.spacing_mm)
                            if myocardium[k].any() else np.full(myocardium.shape[1:], np.inf)
                            for k in range(n_slices)])
    in_contact = outside & (distance_mm <= CONTACT_DISTANCE_MM)
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    regions, n_regions = ndimage.label(candidates, structure=structure)
    rv_mask = np.zeros(blood_pool.shape, bool)
    index = np.arange(1, n_regions + 1)
    contact = np.bincount(regions[in_contact], minlength=n_regions + 1)[1:]
    size = np.bincount(regions.ravel(), minlength=n_regions + 1)[1:]
    slice_of = np.zeros(n_regions, int)
    slice_of[regions[regions > 0] - 1] = np.nonzero(regions)[0]
    for k in range(n_slices):
        if reasons[k]:
            continue
        mine = index[(slice_of == k) & (contact >= MIN_CONTACT_PIXELS)]
        if not mine.size:
            reasons[k] = "no early, strongly enhancing region touches the LV"
            continue
        best = mine[np.argmax(contact[mine - 1])]
        if size[best - 1] * pixel_area_mm2 < MIN_RV_AREA_MM2:
            reasons[k] = "the early-enhancing region beside the LV is only {:.0f} mm^2".format(
                size[best - 1] * pixel_area_mm2)
            continue
        rv_mask[k] = regions[k] == best
    if not rv_mask.any():
        return nothing("")

    # RV fraction map, from the frames in which the RV leads the LV.
    rv_curve = frames[:, rv_mask].mean(axis=1)
    try:
        rv_arrival = int(detect_arrival_index(times, rv_curve)[0])
    except AIAIFInputError:
        rv_arrival = INITIAL_BASELINE_FRAMES
    rv_arrival = int(np.clip(rv_arrival, 1, lv_arrival))
    baseline = frames[:rv_arrival].mean(axis=0)
    rv_enhancement = rv_curve - rv_curve[:rv_arrival].mean()
    weights = np.clip(rv_enhancement / rv_enhancement.max() - lv_enhancement / lv_peak, 0.0, None)
    norm = float(weights @ rv_enhancement)
    if not norm > 0:
        return nothing("the RV does not enhance before the LV")
    fraction = (np.tensordot(weights, frames, axes=(0, 0)) - weights.sum() * baseline) / norm
    noise_sd = _noise_sd(frames[:, outside & (distance_mm <= 3 * CONTACT_DISTANCE_MM)].T)
    fraction_sd = noise_sd * float(np.sqrt(weights @ weights)) / norm

    slices = []
    for k in range(n_slices):
        if not rv_mask[k].any():
            slices.append(RVSlice(reason=reasons[k]))
            continue
        curve = frames[:, k][:, rv_mask[k]].mean(axis=1)
        lead_s = lv_half_s - float(_half_rise_s(times, curve - curve[:rv_arrival].mean())[0])
        cnr = float(fraction[k][rv_mask[k]].mean() / fraction_sd) if fraction_sd > 0 else float("inf")
        slices.append(_slice_rv(plane, k, fraction[k], rv_mask[k], myocardium[k], blood_pool[k],
                                float(rv_mask[k].sum()) * pixel_area_mm2, lead_s, cnr))
    return result(slices, rv_mask, fraction)


def _scores(area_mm2, cnr, lead_s, arc_deg):
    """The four confidence scores of a slice's RV (module docstring)."""
    return {
        "size": float(np.clip(area_mm2 / RV_FULL_CONFIDENCE_AREA_MM2, 0.0, 1.0)),
        "contrast": float(np.clip((cnr - MIN_RV_CNR) / (RV_FULL_CONFIDENCE_CNR - MIN_RV_CNR), 0.0, 1.0)),
        "timing": float(np.clip(lead_s / RV_FULL_CONFIDENCE_LEAD_S, 0.0, 1.0)) if np.isfinite(lead_s) else 0.0,
        "contact": float(np.clip(arc_deg / RV_FULL_CONFIDENCE_ARC_DEG, 0.0, 1.0)),
    }


def _slice_rv(plane, k, fraction, rv_mask, myocardium, blood_pool, area_mm2, lead_s, cnr):
    """Contact arc, insertion points and confidence of one slice's RV (steps 5-7 of the module docstring)."""
    from scipy import ndimage

    def sample(image, x, y):
        i, j = np.tensordot(plane.to_ij, np.stack([x, y]), axes=(1, 0))
        return ndimage.map_coordinates(image, [j.ravel(), i.ravel()], order=1, mode="nearest").reshape(x.shape)

    def pixel_xy(mask):
        jj, ii = np.nonzero(mask)
        return plane.to_xy @ np.stack([ii, jj]).astype(float)

    centre = pixel_xy(blood_pool).mean(axis=1)
    rv_offset = pixel_xy(rv_mask).mean(axis=1) - centre
    anterior = plane.in_plane(ANTERIOR_RAS)
    found = RVSlice(area_mm2=area_mm2, cnr=cnr, lead_s=lead_s)
    if np.linalg.norm(anterior) >= MIN_IN_PLANE_LENGTH and np.linalg.norm(rv_offset) > 0:
        found.rv_anterior_deg = float(np.degrees(np.arcsin(np.clip(
            rv_offset @ anterior / (np.linalg.norm(rv_offset) * np.linalg.norm(anterior)), -1.0, 1.0))))

    # Epicardial radius along each ray: outer 0.5 crossing of the myocardium mask, Fourier-smoothed.
    theta = np.arange(N_RAYS) * 2.0 * np.pi / N_RAYS
    direction = np.stack([np.cos(theta), np.sin(theta)])
    step = 0.2 * float(plane.spacing_mm.min())
    reach = float(np.max(np.linalg.norm(pixel_xy(myocardium) - centre[:, None], axis=0))) \
        + 2.0 * float(plane.spacing_mm.max())
    radii = np.arange(0.0, reach, step)
    inside = sample(myocardium.astype(float), centre[0] + radii[:, None] * direction[0],
                    centre[1] + radii[:, None] * direction[1])
    last = len(radii) - 1 - np.argmax(inside[::-1] >= 0.5, axis=0)
    rays = np.arange(N_RAYS)
    has_wall = (inside >= 0.5).any(axis=0) & (last < len(radii) - 1)
    v0, v1 = inside[last, rays], inside[np.minimum(last + 1, len(radii) - 1), rays]
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = radii[last] + np.clip(np.nan_to_num((v0 - 0.5) / (v0 - v1)), 0.0, 1.0) * step
    epi = _fourier_smooth(theta[has_wall], raw[has_wall], theta, EPICARDIUM_FOURIER_ORDER)

    # RV fraction on contours parallel to the epicardium; the contact arc.
    smooth = ndimage.gaussian_filter(fraction, RV_SMOOTHING_MM / plane.spacing_mm, mode="nearest")
    offsets = np.arange(0.0, SHELL_MAX_MM + 0.5 * SHELL_STEP_MM, SHELL_STEP_MM)
    shell_radius = epi[None, :] + offsets[:, None]
    shell_values = sample(smooth, centre[0] + shell_radius * direction[0], centre[1] + shell_radius * direction[1])
    shells = shell_values >= 0.5
    start, length = _longest_circular_run(shells[offsets <= CONTACT_DISTANCE_MM].any(axis=0))
    found.contact_arc_deg = length * 360.0 / N_RAYS
    found.scores = _scores(area_mm2, cnr, lead_s, found.contact_arc_deg)
    found.confidence = min(found.scores.values())
    if length == 0 or length == N_RAYS or found.contact_arc_deg < MIN_CONTACT_ARC_DEG:
        found.reason = ("the RV surrounds the LV" if length == N_RAYS else
                        "the RV touches {:.0f} degrees of the LV epicardium, less than {:.0f}".format(
                            found.contact_arc_deg, MIN_CONTACT_ARC_DEG))
        return found
    middle = (start + length // 4 + np.arange(max(length // 2, 1))) % N_RAYS
    reached = shells[:, middle]
    inner = float(np.median(offsets[np.argmax(reached, axis=0)[reached.any(axis=0)]]))

    # Insertion points: the RV depth profile extrapolated to the epicardium at each end.
    depth = _depth_profile(shell_values, offsets)
    ends, sds = [], []
    for end in (0, 1):
        angle, sd = _arc_end(depth, inner, theta, start, length, end)
        ends.append(plane.xy_to_ras(centre + np.interp(angle, theta, epi, period=2 * np.pi)
                                    * np.array([np.cos(angle), np.sin(angle)]), k))
        sds.append(sd)
    found.arc_ends_ras = np.array(ends)
    found.arc_ends_sd_deg = tuple(sds)
    if np.linalg.norm(anterior) >= MIN_IN_PLANE_LENGTH:
        centre_ras = plane.xy_to_ras(centre, k)
        components = [float(plane.in_plane(end - centre_ras) @ anterior
                            / (np.linalg.norm(plane.in_plane(end - centre_ras)) * np.linalg.norm(anterior)))
                      for end in ends]
        found.anterior_separation = components[0] - components[1]
        if abs(found.anterior_separation) >= MIN_ANTERIOR_SEPARATION:
            found.anterior_sense = 1 if found.anterior_separation > 0 else -1
    found.found = found.confidence >= MIN_RV_CONFIDENCE
    if not found.found:
        found.reason = "RV confidence {:.2f} is below {}".format(found.confidence, MIN_RV_CONFIDENCE)
    return found


def _fourier_smooth(angles, values, at, order):
    """Least-squares Fourier series of ``values`` sampled at ``angles`` (rad), evaluated at ``at``."""
    def basis(a):
        columns = [np.ones_like(a)]
        for n in range(1, order + 1):
            columns += [np.cos(n * a), np.sin(n * a)]
        return np.stack(columns, axis=1)

    order = min(order, max((len(angles) - 1) // 2, 0))
    coefficients = np.linalg.lstsq(basis(angles), values, rcond=None)[0]
    return basis(at) @ coefficients


def _longest_circular_run(flags):
    """Start index and length of the longest circular run of True (length n when all True, 0 when none)."""
    flags = np.asarray(flags, dtype=bool)
    n = flags.size
    if flags.all() or not flags.any():
        return 0, n if flags.all() else 0
    shift = int(np.argmin(flags))  # scan from a False
    padded = np.concatenate([[0], np.roll(flags, -shift).astype(int), [0]])
    edges = np.diff(padded)
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    best = int(np.argmax(stops - starts))
    return int((starts[best] + shift) % n), int(stops[best] - starts[best])


def _depth_profile(shell_values, offsets):
    """Per ray, the RV's outer edge beyond the epicardium (mm): where its fraction falls below 0.5 after reaching it.

    NaN where the RV is not reached or reaches past the last contour.
    """
    reached = shell_values >= 0.5
    first_in = np.argmax(reached, axis=0)
    beyond = reached | (np.arange(len(offsets))[:, None] < first_in[None, :])
    out = np.argmax(~beyond, axis=0)
    valid = reached.any(axis=0) & (~beyond).any(axis=0)
    rays = np.arange(shell_values.shape[1])
    f0, f1 = shell_values[np.maximum(out - 1, 0), rays], shell_values[out, rays]
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = offsets[np.maximum(out - 1, 0)] + (f0 - 0.5) / (f0 - f1) * (offsets[1] - offsets[0])
    return np.where(valid, depth, np.nan)


def _arc_end(depth, inner, theta, start, length, end):
    """Angle (rad) of one end of the contact arc and its standard error (degrees; NaN: the arc's end as it is).

    The rays within ``DEPTH_SPAN_DEG`` of the end whose RV depth exceeds the
    RV's inner edge by ``DEPTH_MIN_MM`` are fitted by ``depth = a (x - x0)^p``
    (``x`` the angle into the arc, ``p`` one of ``TIP_POWERS``: the power whose
    fit leaves the smallest squared depth residual); ``x0``, where the depth
    reaches the epicardial contour, within ``MAX_EXTRAPOLATION_DEG`` beyond
    the end, is the insertion angle.
    """
    n = len(theta)
    step_deg = 360.0 / n
    steps = np.arange(min(int(round(DEPTH_SPAN_DEG / step_deg)), length // 2))
    index = (start + steps) % n if end == 0 else (start + length - 1 - steps) % n
    edge = float(theta[index[0]])
    profile = depth[index]
    use = np.isfinite(profile) & (profile >= inner + DEPTH_MIN_MM)
    x, y = steps[use] * step_deg, profile[use]  # degrees into the arc, mm
    if x.size < 5:
        return edge, float("nan")
    # One straight line in x per power, z = y^(1/p) (closed-form least squares, all powers at once).
    z = y[None, :] ** (1.0 / TIP_POWERS[:, None])
    dx = x - x.mean()
    slope = (z - z.mean(axis=1, keepdims=True)) @ dx / (dx @ dx)
    intercept = z.mean(axis=1) - slope * x.mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        root = -intercept / slope
        fitted = np.clip(slope[:, None] * (x[None, :] - root[:, None]), 0.0, None) ** TIP_POWERS[:, None]
    cost = np.where(slope > 0, np.sum((fitted - y[None, :]) ** 2, axis=1), np.inf)
    best = int(np.argmin(cost))
    if not (np.isfinite(cost[best]) and -MAX_EXTRAPOLATION_DEG <= root[best] < x.min()):
        return edge, float("nan")
    # Standard error of the root from the line's residuals (delta method).
    residual = z[best] - (slope[best] * x + intercept[best])
    variance = (residual @ residual) / max(x.size - 2, 1)
    root_sd = np.sqrt(variance * (1.0 / x.size + (root[best] - x.mean()) ** 2 / (dx @ dx))) / slope[best]
    sign = 1.0 if end == 0 else -1.0  # from the end into the arc
    return edge + sign * float(np.radians(root[best])), float(root_sd)


# ---------------------------------------------------------------------------
# Part 2: deciding
# ---------------------------------------------------------------------------

@dataclass
class Orientation:
    """The decided orientation of a short-axis stack (``decide_orientation``).

    Attributes
    ----------
    septum_sign : int
        +1: anterior insertion point -> septum is a right-handed turn about
        the slice normal (clockwise as the stored slice is displayed with i
        to the right and j downwards); -1 the other way.
    origins_ras : dict of int -> numpy.ndarray
        Per segmented slice, a point whose in-plane direction from the LV
        centre is the angle origin (the anterior RV insertion point), RAS mm.
    origin_points : dict of int -> int or None
        Index of the user's point each slice's origin comes from (its own or
        the nearest slice's); None for an image estimate.
    side : dict
        ``rule`` (one of ``SIDE_RULES``), ``confidence`` (0-1) and
        ``sentence``.
    slices : list of dict
        Per segmented slice: ``slice``, ``insertion_point`` (``rule`` in
        ``ORIGIN_RULES``, ``confidence``, ``from_slice`` when borrowed),
        ``septum_side`` (the stack's ``rule`` and ``confidence``),
        ``image_rv`` (``RVSlice.summary``) and ``user_vs_image_deg`` (the
        turn from the user's anterior point to the image's, degrees) when
        there are both.
    warnings : list of str
    """

    septum_sign: int
    origins_ras: dict
    origin_points: dict
    side: dict
    slices: list
    warnings: list = field(default_factory=list)


def _vote(evidence):
    """Sign, confidence and dissenting slices of weighted votes ``[(slice, sign, weight), ...]``."""
    total = sum(sign * weight for _, sign, weight in evidence)
    sign = int(np.sign(total))
    if sign == 0:
        return 0, 0.0, []
    confidence = float(np.clip(total * sign / len(evidence), 0.0, 1.0))
    return sign, confidence, [k for k, s, _ in evidence if s == -sign]


def _slice_list(slices):
    return "slice{} {}".format("s" if len(slices) > 1 else "", ", ".join(str(k) for k in slices))


def decide_orientation(normal_ras, centres_ras, segmented_slices, anterior_points=None, inferior_points=None,
                       image_rv=None, override_sign=None, handedness=None):
    """Decide the septum side and the angle origin of every segmented slice.

    Parameters
    ----------
    normal_ras : array_like, shape (3,)
        Unit slice normal: column direction x row direction.
    centres_ras : array_like, shape (n_slices, 3)
        LV blood-pool centroid of each slice, RAS mm.
    segmented_slices : sequence of int
        Slices with myocardium.
    anterior_points, inferior_points : dict of int -> (int, array_like), optional
        The user's anterior / inferior RV insertion points by slice: the
        point's index and its RAS position (mm).
    image_rv : ImageRV, optional
        The RV found in the images (``find_rv``).
    override_sign : int, optional
        The caller's septum side (+1 or -1, as ``Orientation.septum_sign``).
    handedness : dict, optional
        The base-to-apex rule when it can speak: ``sign`` (+1 or -1),
        ``cosine`` (between the base-to-apex axis and the typical apex
        direction) and ``rule`` (a sentence).

    Returns
    -------
    Orientation
        Rules in the module docstring.

    Raises
    ------
    AIAIFInputError
        When no rule decides the septum side, or no slice has an origin.
    """
    normal = np.asarray(normal_ras, dtype=float)
    centres = np.asarray(centres_ras, dtype=float)
    segmented = [int(k) for k in segmented_slices]
    anterior = dict(anterior_points or {})
    inferior = dict(inferior_points or {})
    image = {k: image_rv.slices[k] for k in segmented if image_rv.slices[k].found} if image_rv is not None else {}
    warnings = []

    def nearer_end(k, point):
        """0 or 1: the arc end of slice k nearer (in angle) to a point."""
        ends = image[k].arc_ends_ras
        gaps = [abs(turn_deg(point - centres[k], end - centres[k], normal)) for end in ends]
        return int(np.argmin(gaps))

    # Evidence for the septum side.
    user_votes = []
    for k, (_, point) in sorted(inferior.items()):
        if k in anterior:
            turn = turn_deg(anterior[k][1] - centres[k], point - centres[k], normal)
            if turn != 0.0:
                user_votes.append((k, int(np.sign(turn)), 1.0))
        elif k in image:
            # The inferior point marks one end; the septum lies towards the RV from the other.
            user_votes.append((k, 1 if nearer_end(k, point) == 1 else -1, 1.0))
    image_votes, user_vs_image = [], {}
    for k, rv in sorted(image.items()):
        if k in anterior:
            end = nearer_end(k, anterior[k][1])
            user_vs_image[k] = turn_deg(anterior[k][1] - centres[k], rv.arc_ends_ras[end] - centres[k], normal)
            if abs(user_vs_image[k]) > USER_IMAGE_TOLERANCE_DEG:
                warnings.append("In slice {} the anterior RV insertion point lies {:.0f} degrees from the end of "
                                "the RV found in the images; check the point.".format(k, abs(user_vs_image[k])))
            image_votes.append((k, 1 if end == 0 else -1, rv.confidence))
        elif rv.anterior_sense:
            image_votes.append((k, rv.anterior_sense, rv.confidence))
    if image_rv is not None and not image:
        warnings.append("No RV was found in the images ({}), so they could not check the orientation of the "
                        "segments.".format(image_rv.slices[segmented[0]].reason if segmented else "no myocardium"))
    elevations = [rv.rv_anterior_deg for rv in image.values() if np.isfinite(rv.rv_anterior_deg)]
    if elevations and 2 * sum(e < -RV_POSTERIOR_WARNING_DEG for e in elevations) > len(elevations):
        warnings.append("The RV found in the images lies posterior of the LV in the geometry's anterior "
                        "direction, unlike a normal heart; the image geometry may be flipped.")

    candidates = []
    if override_sign is not None:
        candidates.append(("override", int(override_sign), 1.0, [], "given by the caller (septum_direction)"))
    for rule, votes, sentence in (
            ("user points", user_votes, "the short turn from the anterior to the inferior RV insertion point"),
            ("image RV", image_votes, "the RV found in the images lies on the septum side of the anterior "
                                      "insertion point")):
        sign, confidence, dissent = _vote(votes)
        if sign:
            candidates.append((rule, sign, confidence, dissent, sentence))
            if dissent:
                warnings.append("By the {}, {} disagree{} with the other slices about the septum side; the "
                                "majority is followed.".format(_RULE_NAMES[rule], _slice_list(dissent),
                                                                "" if len(dissent) > 1 else "s"))
    if handedness is not None:
        candidates.append(("handedness", int(handedness["sign"]),
                           HANDEDNESS_MAX_CONFIDENCE * max(0.0, float(handedness["cosine"])), [],
                           handedness["rule"]))
    if not candidates:
        raise AIAIFInputError("The septum side cannot be decided: no RV was found in the images, no inferior RV "
                              "insertion point was given and the slice levels give no base-to-apex axis; place "
                              "the anterior and inferior RV insertion points, or pass septum_direction.")
    rule, sign, confidence, _, sentence = candidates[0]
    for other, other_sign, _, _, _ in candidates[1:]:
        if other_sign != sign:
            if rule == "image RV" and other == "handedness":
                warnings.append("The RV in the images puts the septum on the other side than the base-to-apex "
                                "axis of the slice levels would; the images are followed (the slice axis of the "
                                "geometry may be reversed, or the heart mirrored).")
            else:
                warnings.append("The {} puts the septum on the other side than the {}, which is followed.".format(
                    _RULE_NAMES[other], _RULE_NAMES[rule]))

    origins, origin_points, records = _origins(segmented, centres, anterior, image, sign, warnings)
    for record in records:
        k = record["slice"]
        record["septum_side"] = {"rule": rule, "confidence": round(confidence, 3)}
        record["image_rv"] = image_rv.slices[k].summary() if image_rv is not None else None
        if k in user_vs_image:
            record["user_vs_image_deg"] = round(user_vs_image[k], 2)
    return Orientation(septum_sign=sign, origins_ras=origins, origin_points=origin_points,
                       side={"rule": rule, "confidence": round(confidence, 3), "sentence": sentence},
                       slices=records, warnings=warnings)


def _origins(segmented, centres, anterior, image, sign, warnings):
    """Angle origin of each segmented slice: the user's point, the image's estimate, or the nearest slice's."""
    origins, points, records = {}, {}, {}
    for k in segmented:
        if k in anterior:
            origins[k], points[k] = np.asarray(anterior[k][1], dtype=float), anterior[k][0]
            records[k] = {"rule": "user point", "confidence": 1.0}
        elif k in image:
            origins[k], points[k] = image[k].arc_ends_ras[0 if sign > 0 else 1], None
            records[k] = {"rule": "image RV", "confidence": round(float(image[k].confidence), 3)}
    if not origins:
        raise AIAIFInputError("No RV insertion point lies in a slice with myocardium and no RV was found in the "
                              "images; place the anterior RV insertion point in each segmented short-axis slice.")
    own = np.array(sorted(origins))
    borrowed = []
    for k in segmented:
        if k in origins:
            continue
        source = int(own[np.argmin(np.abs(own - k))])
        origins[k] = centres[k] + (origins[source] - centres[source])
        points[k] = points[source]
        records[k] = {"rule": "nearest slice", "from_slice": source, "confidence": records[source]["confidence"]}
        borrowed.append("slice {} uses the direction of slice {}".format(k, source))
    if borrowed:
        warnings.append("Without an RV insertion point or an RV found in its images, {}.".format("; ".join(borrowed)))
    return origins, points, [{"slice": k, "insertion_point": records[k]} for k in segmented]

"""Geometry and anatomy of the phantom: heart frame, short-axis stack, AHA segments, tissue classes.

Nothing here is random: the phantom draws each slice's sizes
(``phantom.PHANTOM_RANGES``) and passes them in.
"""

import numpy as np

from .. import constants as K

#: Geometry of the default phantom: matrix, in-plane pixel size (mm), distance
#: between the basal, mid and apical slice centres (mm).
PHANTOM_MATRIX = 128
PHANTOM_PIXEL_MM = 1.6
PHANTOM_SLICE_GAP_MM = 18.0
#: Direction of the LV long axis (base to apex) in RAS: towards the patient's
#: left, anterior and inferior, as in a typical heart.
LONG_AXIS_RAS = np.array([-0.55, 0.50, -0.67])

_SEGMENT_START = {"basal": 1, "mid": 7}


def aha_segment_from_angle(angle_deg, level):
    """AHA segment (1-16) from the angle around the LV centre.

    Parameters
    ----------
    angle_deg : array_like
        Angle from the anterior RV insertion point, positive towards the septum,
        degrees (any range; reduced modulo 360).
    level : {'basal', 'mid', 'apical'}
        Slice level.

    Returns
    -------
    numpy.ndarray of int
        Basal/mid: 60-degree sectors, anteroseptal first (2|8 at 0-60, 3|9,
        4|10, 5|11, 6|12, then 1|7 at 300-360).  Apical: 90-degree sectors
        centred on septal (60), inferior (150), lateral (240) and anterior
        (330) directions: 14 at 15-105, 15 at 105-195, 16 at 195-285,
        13 at 285-15 (shared/PHYSICS.md).
    """
    angle = np.mod(np.asarray(angle_deg, dtype=float), 360.0)
    if level == "apical":
        sector = np.floor(np.mod(angle - 15.0, 360.0) / 90.0).astype(int)  # 0 septal .. 3 anterior
        return np.array([14, 15, 16, 13])[sector]
    sector = np.floor(angle / 60.0).astype(int)  # 0 anteroseptal .. 5 anterior
    return _SEGMENT_START[level] + np.array([1, 2, 3, 4, 5, 0])[sector]


def heart_axes_ras(long_axis_ras=LONG_AXIS_RAS):
    """Unit vectors of the heart frame in patient (RAS) coordinates.

    The anterior direction is the patient's anterior (+A) projected onto the
    short-axis plane; the septal direction is the patient's right (+R, where
    the RV lies) projected onto the plane and made orthogonal to both.  No
    clockwise convention is assumed: image orientation follows from these.

    Returns
    -------
    tuple of numpy.ndarray
        ``(long_axis, anterior, septal)``, each shape (3,).
    """
    long_axis = np.asarray(long_axis_ras, dtype=float)
    long_axis = long_axis / np.linalg.norm(long_axis)

    def in_plane(vector, *against):
        v = np.asarray(vector, dtype=float)
        for axis in against:
            v = v - np.dot(v, axis) * axis
        return v / np.linalg.norm(v)

    anterior = in_plane([0.0, 1.0, 0.0], long_axis)
    septal = in_plane([1.0, 0.0, 0.0], long_axis, anterior)
    return long_axis, anterior, septal


def phantom_geometry(matrix=PHANTOM_MATRIX, pixel_mm=PHANTOM_PIXEL_MM, slice_gap_mm=PHANTOM_SLICE_GAP_MM,
                     apex_first=False, mirrored=False):
    """IJK-to-RAS matrix of a short-axis stack and the LV axis point of each slice.

    The default image is displayed as short-axis views usually are: RV (septum)
    on the left, anterior wall at the top, basal slice first.  ``apex_first``
    stores the slices apex to base and ``mirrored`` flips the image columns;
    both only change the geometry, which says so, never the anatomy.

    Parameters
    ----------
    matrix : int
        Rows and columns per slice.
    pixel_mm, slice_gap_mm : float
        In-plane pixel size and distance between slice centres, mm.
    apex_first, mirrored : bool
        Storage order of the slices; in-plane column flip.

    Returns
    -------
    ijk_to_ras : numpy.ndarray, (4, 4)
        Voxel (i, j, k) to RAS (mm).
    lv_centres_ras : numpy.ndarray, (3, 3)
        RAS point of the LV axis in each stored slice (mm).
    levels : tuple of str
        Slice level of each stored slice ('basal', 'mid', 'apical').
    """
    long_axis, anterior, septal = heart_axes_ras()
    column_dir = septal if mirrored else -septal        # +i: towards the lateral wall (screen right)
    row_dir = -anterior                                 # +j: towards the inferior wall (screen down)
    slice_dir = -long_axis if apex_first else long_axis
    levels = K.SLICE_LEVELS[::-1] if apex_first else K.SLICE_LEVELS
    # The LV axis passes through image position (0.56, 0.50) of the matrix so
    # that the RV, on the septal side, fits in the field of view.
    base_centre_ras = np.array([20.0, -10.0, 40.0])
    first_centre = base_centre_ras + (2 * slice_gap_mm * long_axis if apex_first else 0.0)
    centre_i = (1.0 - 0.56 if mirrored else 0.56) * (matrix - 1)
    centre_j = 0.50 * (matrix - 1)
    origin = first_centre - centre_i * pixel_mm * column_dir - centre_j * pixel_mm * row_dir
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, 0] = pixel_mm * column_dir
    ijk_to_ras[:3, 1] = pixel_mm * row_dir
    ijk_to_ras[:3, 2] = slice_gap_mm * slice_dir
    ijk_to_ras[:3, 3] = origin
    lv_centres = np.array([first_centre + k * slice_gap_mm * slice_dir for k in range(3)])
    return ijk_to_ras, lv_centres, levels


#: Labels of the phantom's tissue classes.
TISSUE_LABELS = {"air": 0, "other tissue": 1, "lv blood": 2, "myocardium": 3, "rv blood": 4}


def _slice_anatomy(geometry, x_ant, x_sep):
    """Masks, AHA segments and transmural position of one slice in heart coordinates (mm)."""
    level, radius, epi = geometry["level"], geometry["lv_radius_mm"], geometry["epicardial_radius_mm"]
    insertion, span = geometry["rv_insertion_deg"], geometry["rv_span_deg"]
    dist = np.hypot(x_ant, x_sep)
    angle = np.degrees(np.arctan2(x_sep, x_ant))
    # RV: a circle through the two insertion points on the epicardium, centred
    # on the bisector of the attachment, 0.95 epicardial radii from the LV axis.
    middle = np.radians(insertion + 0.5 * span)
    centre = 0.95 * epi * np.array([np.cos(middle), np.sin(middle)])
    rv_radius = np.hypot(epi * np.sin(np.radians(0.5 * span)), epi * np.cos(np.radians(0.5 * span)) - 0.95 * epi)
    rv_dist = np.hypot(x_ant - centre[0], x_sep - centre[1])
    labels = np.full(x_ant.shape, TISSUE_LABELS["other tissue"], np.uint8)
    labels[(rv_dist < rv_radius + 3.0) & (dist >= epi)] = TISSUE_LABELS["other tissue"]  # RV free wall
    labels[(rv_dist < rv_radius) & (dist >= epi + 1.0)] = TISSUE_LABELS["rv blood"]
    labels[(dist >= radius) & (dist < epi)] = TISSUE_LABELS["myocardium"]
    labels[dist < radius] = TISSUE_LABELS["lv blood"]
    segments = np.where(labels == TISSUE_LABELS["myocardium"], aha_segment_from_angle(angle - insertion, level), 0)
    transmural = np.clip((dist - radius) / (epi - radius), 0.0, 1.0)
    points = {name: epi * np.array([np.cos(np.radians(a)), np.sin(np.radians(a))])
              for name, a in (("anterior", insertion), ("inferior", insertion + span))}
    return labels, segments.astype(np.uint8), transmural, points


def _reversed_slice_axis(ijk_to_ras, points_ras):
    """``ijk_to_ras`` with its slice axis reversed, and points moved with it (same voxel positions)."""
    stored = np.array(ijk_to_ras, dtype=float)
    stored[:3, 2] *= -1.0
    moved = {}
    for name, points in points_ras.items():
        ijk = np.linalg.solve(ijk_to_ras[:3, :3], (np.asarray(points) - ijk_to_ras[:3, 3]).T)
        moved[name] = (stored[:3, :3] @ ijk).T + stored[:3, 3]
    return stored, moved

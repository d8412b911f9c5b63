"""Anatomy of the held-out phantom: heart and torso in patient coordinates, oblique short-axis slices.

Everything is defined in patient RAS millimetres (+x right, +y anterior, +z
superior) and sampled where the slices cut it, so storage order and image
orientation never change the anatomy.

Heart (its own frame: ``long_axis`` base to apex, ``anterior``, ``septal``
towards the RV; angle theta from anterior, positive towards the septum, the
AHA direction)
    * LV cavity: elliptical cross-section (major axis at a random angle)
      tapering to the apex like an ellipsoid; the wall thickness varies with
      angle and thins towards the apex, where an ellipsoidal cap closes it.
    * RV: a crescent wrapping the septum between the anterior and inferior
      insertion points (deepest midway, vanishing at the insertions), with a
      thin free wall; shallower towards the apex; the insertion angles twist
      a little from base to apex.
    * Epicardial fat: a layer over the whole epicardium, thickest in the
      interventricular and atrioventricular grooves.
Torso
    An elliptical body with subcutaneous fat and a muscle layer, two lungs
    beside the heart, the liver under the right hemidiaphragm and the
    descending aorta behind the heart.
Slices
    Three parallel short-axis planes (basal, mid, apical) whose normal is the
    long axis tilted by a few degrees (planning error), with image axes
    rotated from the usual display (RV on the left, anterior up) by up to
    +-25 degrees.  Voxels are supersampled 3 x 3 in-plane and 3 through the
    slice for partial volume.
AHA labels (shared/PHYSICS.md, Cerqueira et al. Circulation 2002)
    From the true anatomy: the angle of each voxel centre around the long
    axis, measured from the anterior RV insertion of its level, positive
    towards the septum; basal/mid 60-degree sectors from the insertion
    (2|8, 3|9, 4|10, 5|11, 6|12, 1|7), apical 90-degree sectors with the
    septal one centred 60 degrees from it (14 at 15-105, 15, 16, 13).
"""

from dataclasses import dataclass

import numpy as np

from .ranges import draw

#: Tissue classes of the phantom (supersampled labels).
CLASSES = ("air", "body", "muscle", "subcutaneous fat", "epicardial fat", "lung", "liver", "aorta", "rv blood",
           "rv wall", "lv blood", "myocardium")
CLASS = {name: code for code, name in enumerate(CLASSES)}
#: Signal tissue kind (``ranges.TISSUE_KINDS``) of each class; air has none.
CLASS_KIND = {"body": "muscle", "muscle": "muscle", "subcutaneous fat": "fat", "epicardial fat": "fat",
              "lung": "lung", "liver": "liver", "aorta": "blood", "rv blood": "blood", "rv wall": "myocardium",
              "lv blood": "blood", "myocardium": "myocardium"}
#: Slice levels, base to apex.
LEVELS = ("basal", "mid", "apical")
#: Typical base-to-apex direction in RAS before the drawn tilt (towards the
#: patient's left, anterior and inferior; project choice).
TYPICAL_LONG_AXIS_RAS = np.array([-0.60, 0.45, -0.66])
#: Supersampling per voxel: in-plane per axis and through the slice.
SUPERSAMPLING = 3
#: RV free-wall thickness, mm (project choice).
RV_WALL_MM = 3.5
#: Myocardial flow bins: angular sectors (of 360 degrees) and transmural layers.
ANGLE_BINS = 24
LAYERS = 3


def _unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _rotate(vector, axis, angle_deg):
    """Rodrigues rotation of ``vector`` about unit ``axis``."""
    a = np.radians(angle_deg)
    return (vector * np.cos(a) + np.cross(axis, vector) * np.sin(a)
            + axis * np.dot(axis, vector) * (1.0 - np.cos(a)))


def _tilted(axis, rng, max_deg):
    """``axis`` tilted by a random angle up to ``max_deg`` in a random direction."""
    other = _unit(np.cross(axis, rng.standard_normal(3)))
    return _unit(_rotate(axis, other, max_deg))


def angle_difference(a_deg, b_deg):
    """``a - b`` wrapped to [-180, 180) degrees."""
    return np.mod(np.asarray(a_deg) - b_deg + 180.0, 360.0) - 180.0


@dataclass
class Heart:
    """Drawn heart geometry (mm, degrees; vectors in RAS)."""

    base_centre_ras: np.ndarray
    long_axis: np.ndarray
    anterior: np.ndarray
    septal: np.ndarray
    length_mm: float
    basal_radius_mm: float
    ellipticity: float
    ellipse_angle_deg: float
    wall_mm: float
    wall_variation: float
    wall_peak_deg: float
    rv_depth_mm: float
    rv_anterior_deg: float
    rv_span_deg: float
    insertion_twist_deg: float
    epicardial_fat_mm: float

    def coordinates(self, points_ras):
        """Level along the long axis, angle (degrees, from anterior towards septum) and radius (mm)."""
        rel = np.asarray(points_ras, dtype=float) - self.base_centre_ras
        level = rel @ self.long_axis
        a, s = rel @ self.anterior, rel @ self.septal
        return level, np.degrees(np.arctan2(s, a)), np.hypot(a, s)

    def position(self, level_mm, angle_deg, radius_mm):
        """RAS point at heart coordinates."""
        t = np.radians(angle_deg)
        return (self.base_centre_ras + np.multiply.outer(level_mm, self.long_axis)
                + np.multiply.outer(radius_mm * np.cos(t), self.anterior)
                + np.multiply.outer(radius_mm * np.sin(t), self.septal))

    @property
    def cavity_length_mm(self):
        return self.length_mm - 0.8 * self.wall_mm

    def endocardial_radius(self, angle_deg, level_mm):
        """LV cavity radius, mm (0 beyond the cavity's apex)."""
        level = np.clip(level_mm, 0.0, None)
        taper = np.sqrt(np.clip(1.0 - (level / self.cavity_length_mm) ** 2, 0.0, None))
        d = np.radians(np.asarray(angle_deg) - self.ellipse_angle_deg)
        shape = self.ellipticity / np.sqrt((self.ellipticity * np.cos(d)) ** 2 + np.sin(d) ** 2)
        return self.basal_radius_mm * taper * shape / np.sqrt(self.ellipticity)

    def epicardial_radius(self, angle_deg, level_mm):
        """LV epicardial radius, mm (closes at the apex)."""
        level = np.clip(level_mm, 0.0, None)
        endo = self.endocardial_radius(angle_deg, level_mm)
        wall = self.wall_mm * (1.0 + self.wall_variation * np.cos(np.radians(angle_deg - self.wall_peak_deg))) \
            * (1.0 - 0.3 * (level / self.length_mm) ** 2)
        outer = (self.basal_radius_mm + 1.1 * self.wall_mm) * np.sqrt(
            np.clip(1.0 - (level / self.length_mm) ** 2, 0.0, None))
        return np.maximum(np.minimum(endo + wall, outer), endo)

    def insertion_deg(self, level_mm):
        """Anterior RV insertion angle at a level, degrees (twists linearly from base to apex)."""
        return self.rv_anterior_deg + self.insertion_twist_deg * (np.asarray(level_mm) / self.length_mm - 0.45)

    def rv_depth(self, angle_deg, level_mm):
        """RV cavity depth outside the epicardium, mm (0 outside the insertions)."""
        offset = np.mod(np.asarray(angle_deg) - self.insertion_deg(level_mm), 360.0)
        inside = offset < self.rv_span_deg
        shape = np.sqrt(np.clip(np.sin(np.pi * np.minimum(offset, self.rv_span_deg) / self.rv_span_deg), 0.0, None))
        level = np.clip(level_mm, 0.0, self.length_mm)
        return np.where(inside, self.rv_depth_mm * (1.0 - 0.55 * level / self.length_mm) * shape, 0.0)

    def fat_thickness(self, angle_deg, level_mm):
        """Epicardial fat thickness, mm: thickest over the grooves and at the base."""
        ant = self.insertion_deg(level_mm)

        def bump(centre, width):
            return np.exp(-(angle_difference(angle_deg, centre) / width) ** 2)

        grooves = np.maximum.reduce([bump(ant, 30.0), bump(ant + self.rv_span_deg, 30.0),
                                     0.6 * bump(ant + 180.0 + 0.5 * self.rv_span_deg, 45.0)
                                     * (1.0 - np.clip(level_mm / self.length_mm, 0.0, 1.0))])
        return self.epicardial_fat_mm * (0.35 + 0.65 * grooves) * (1.25 - 0.6 * np.clip(
            level_mm / self.length_mm, 0.0, 1.0))


def draw_heart(rng):
    """Draw a heart (``ranges.RANGES`` for the sizes; position and axes project choices)."""
    long_axis = _tilted(_unit(TYPICAL_LONG_AXIS_RAS), rng, draw(rng, "long_axis_tilt_deg"))
    anterior = _unit(np.array([0.0, 1.0, 0.0]) - long_axis[1] * long_axis)
    anterior = _unit(_rotate(anterior, long_axis, rng.uniform(-10.0, 10.0)))
    septal = _unit(np.cross(long_axis, anterior))
    if septal[0] < 0:  # the septum faces the RV, on the patient's right
        septal = -septal
    return Heart(
        base_centre_ras=np.array([-15.0, 15.0, 10.0]) + rng.normal(0.0, 6.0, 3),
        long_axis=long_axis, anterior=anterior, septal=septal,
        length_mm=draw(rng, "lv_length_mm"), basal_radius_mm=draw(rng, "lv_basal_radius_mm"),
        ellipticity=draw(rng, "lv_ellipticity"), ellipse_angle_deg=rng.uniform(0.0, 180.0),
        wall_mm=draw(rng, "wall_thickness_mm"), wall_variation=draw(rng, "wall_thickness_variation"),
        wall_peak_deg=rng.uniform(0.0, 360.0), rv_depth_mm=draw(rng, "rv_depth_mm"),
        rv_anterior_deg=draw(rng, "rv_anterior_insertion_deg"), rv_span_deg=draw(rng, "rv_span_deg"),
        insertion_twist_deg=rng.uniform(-10.0, 10.0), epicardial_fat_mm=draw(rng, "epicardial_fat_mm"))


@dataclass
class Torso:
    """Body outline and organs around the heart (RAS mm; project choices)."""

    centre_y_mm: float
    half_width_mm: float
    half_depth_mm: float
    subcutaneous_fat_mm: float
    muscle_mm: float
    right_dome_z_mm: float
    left_dome_z_mm: float
    aorta_xy_mm: np.ndarray
    aorta_radius_mm: float


def draw_torso(rng, heart):
    """Draw a torso around ``heart``."""
    base_z = heart.base_centre_ras[2]
    return Torso(centre_y_mm=rng.uniform(-25.0, -10.0), half_width_mm=rng.uniform(150.0, 180.0),
                 half_depth_mm=rng.uniform(100.0, 125.0), subcutaneous_fat_mm=rng.uniform(6.0, 20.0),
                 muscle_mm=rng.uniform(8.0, 15.0), right_dome_z_mm=base_z - rng.uniform(15.0, 35.0),
                 left_dome_z_mm=base_z - rng.uniform(55.0, 70.0),
                 aorta_xy_mm=np.array([-25.0, -70.0]) + rng.normal(0.0, 5.0, 2),
                 aorta_radius_mm=rng.uniform(10.0, 13.0))


def classify(heart, torso, points_ras):
    """Tissue class of each point, with heart coordinates for the myocardium.

    Parameters
    ----------
    heart : Heart
    torso : Torso
    points_ras : numpy.ndarray, (N, 3)

    Returns
    -------
    classes : numpy.ndarray of uint8, (N,)
        Codes of ``CLASS``.
    level_mm, angle_deg, transmural : numpy.ndarray, (N,)
        Heart level and angle of every point, and the transmural position
        (0 endocardium .. 1 epicardium) in the LV myocardium (NaN elsewhere).
    """
    x, y, z = points_ras[:, 0], points_ras[:, 1], points_ras[:, 2]
    rho = np.sqrt((x / torso.half_width_mm) ** 2 + ((y - torso.centre_y_mm) / torso.half_depth_mm) ** 2)
    depth = (1.0 - rho) * min(torso.half_width_mm, torso.half_depth_mm)
    classes = np.full(x.shape, CLASS["air"], np.uint8)
    classes[rho < 1.0] = CLASS["body"]
    inner = depth >= torso.subcutaneous_fat_mm + torso.muscle_mm
    classes[(rho < 1.0) & (depth < torso.subcutaneous_fat_mm + torso.muscle_mm)] = CLASS["muscle"]
    classes[(rho < 1.0) & (depth < torso.subcutaneous_fat_mm)] = CLASS["subcutaneous fat"]

    dome_right = torso.right_dome_z_mm - ((x - 60.0) ** 2 + (y + 10.0) ** 2) / 300.0
    dome_left = torso.left_dome_z_mm - ((x + 60.0) ** 2 + (y + 10.0) ** 2) / 300.0
    diaphragm = np.maximum(dome_right, dome_left)
    classes[inner & (z < dome_right) & (x > -50.0)] = CLASS["liver"]
    level, angle, radius = heart.coordinates(points_ras)
    for centre, radii in (((-95.0, -20.0, 30.0), (60.0, 85.0, 160.0)), ((90.0, -20.0, 40.0), (65.0, 90.0, 160.0))):
        e = ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((z - centre[2]) / radii[2]) ** 2
        classes[inner & (e < 1.0) & (z > diaphragm + 5.0)] = CLASS["lung"]
    aorta = np.hypot(x - torso.aorta_xy_mm[0], y - torso.aorta_xy_mm[1]) < torso.aorta_radius_mm
    classes[inner & aorta] = CLASS["aorta"]

    endo = heart.endocardial_radius(angle, level)
    epi = heart.epicardial_radius(angle, level)
    rv = heart.rv_depth(angle, level)
    rv_outer = np.where(rv > 0, epi + rv + RV_WALL_MM, epi)
    fat_outer = rv_outer + heart.fat_thickness(angle, level)
    in_heart = (level > -15.0) & (level < heart.length_mm + 2.0) & (radius < fat_outer)
    # The pericardial fat pad pushes the lungs away from the heart.
    classes[in_heart | ((classes == CLASS["lung"]) & (radius < fat_outer + 6.0) & (level > -15.0))] = \
        CLASS["epicardial fat"]
    classes[in_heart & (radius < rv_outer) & (rv > 0)] = CLASS["rv wall"]
    classes[in_heart & (radius < epi + rv) & (rv > 0) & (radius >= epi)] = CLASS["rv blood"]
    myocardium = in_heart & (radius < epi) & (radius >= endo)
    classes[myocardium] = CLASS["myocardium"]
    classes[in_heart & (radius < endo)] = CLASS["lv blood"]
    transmural = np.full(x.shape, np.nan)
    thickness = np.maximum(epi - endo, 1e-6)
    transmural[myocardium] = np.clip((radius[myocardium] - endo[myocardium]) / thickness[myocardium], 0.0, 1.0)
    return classes, level, angle, transmural


def aha_segment(angle_from_insertion_deg, level):
    """AHA segment 1-16 from the angle to the anterior RV insertion (positive towards the septum)."""
    angle = np.mod(np.asarray(angle_from_insertion_deg, dtype=float), 360.0)
    if level == "apical":
        return np.array([14, 15, 16, 13])[(np.mod(angle - 15.0, 360.0) // 90.0).astype(int)]
    first = {"basal": 0, "mid": 6}[level]
    return first + np.array([2, 3, 4, 5, 6, 1])[(angle // 60.0).astype(int)]


@dataclass
class SliceStack:
    """Geometry of the three short-axis slices (stored base first)."""

    ijk_to_ras: np.ndarray
    levels_mm: np.ndarray
    normal: np.ndarray
    thickness_mm: float
    matrix: int
    pixel_mm: float

    def voxel_centres(self, k):
        """RAS centres of slice ``k``'s voxels, (rows * cols, 3) in C order of ``[j, i]``."""
        jj, ii = np.mgrid[0:self.matrix, 0:self.matrix]
        ijk = np.stack([ii.ravel(), jj.ravel(), np.full(ii.size, k), np.ones(ii.size)])
        return (self.ijk_to_ras @ ijk)[:3].T

    def subsamples(self, k):
        """Supersampled points of slice ``k``: (rows * cols, n_sub, 3) RAS."""
        centres = self.voxel_centres(k)
        offsets = (np.arange(SUPERSAMPLING) - (SUPERSAMPLING - 1) / 2.0) / SUPERSAMPLING
        di, dj, dk = np.meshgrid(offsets, offsets, offsets, indexing="ij")
        col, row = self.ijk_to_ras[:3, 0], self.ijk_to_ras[:3, 1]
        shift = (np.multiply.outer(di.ravel(), col) + np.multiply.outer(dj.ravel(), row)
                 + np.multiply.outer(dk.ravel() * self.thickness_mm, self.normal))
        return centres[:, None, :] + shift[None, :, :]


def slice_stack(rng, heart, matrix, pixel_mm, thickness_mm):
    """Draw the short-axis stack through ``heart``: levels, tilt, in-plane rotation, field of view."""
    basal = rng.uniform(0.16, 0.22) * heart.length_mm
    spacing = rng.uniform(0.25, 0.28) * heart.length_mm
    levels = basal + spacing * np.arange(3)
    normal = _tilted(heart.long_axis, rng, draw(rng, "slice_tilt_deg"))
    lateral = _unit(-heart.septal - np.dot(-heart.septal, normal) * normal)
    lateral = _unit(_rotate(lateral, normal, draw(rng, "inplane_rotation_deg")))
    down = np.cross(normal, lateral)
    if np.dot(down, heart.anterior) > 0:
        down = -down
    mid_centre = heart.base_centre_ras + levels[1] * heart.long_axis
    target = np.array([0.5 + rng.uniform(-0.05, 0.05), 0.42 + rng.uniform(-0.05, 0.05)]) * (matrix - 1)
    step = levels[1] - levels[0]
    origin = mid_centre - target[0] * pixel_mm * lateral - target[1] * pixel_mm * down - step * np.dot(
        heart.long_axis, normal) * normal
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, 0] = pixel_mm * lateral
    ijk_to_ras[:3, 1] = pixel_mm * down
    ijk_to_ras[:3, 2] = step * np.dot(heart.long_axis, normal) * normal
    ijk_to_ras[:3, 3] = origin
    return SliceStack(ijk_to_ras=ijk_to_ras, levels_mm=levels, normal=normal, thickness_mm=thickness_mm,
                      matrix=int(matrix), pixel_mm=float(pixel_mm))


def insertion_points(heart, stack):
    """Anterior and inferior RV insertion points of each slice, RAS mm, on the slice planes.

    Returns
    -------
    dict
        ``{"anterior": (3, 3), "inferior": (3, 3)}`` (stored slice order, base first).
    """
    out = {"anterior": np.zeros((3, 3)), "inferior": np.zeros((3, 3))}
    for k, level in enumerate(stack.levels_mm):
        for name, angle in (("anterior", heart.insertion_deg(level)),
                            ("inferior", heart.insertion_deg(level) + heart.rv_span_deg)):
            point = heart.position(level, angle, heart.epicardial_radius(angle, level))
            plane_point = stack.ijk_to_ras[:3, 3] + k * stack.ijk_to_ras[:3, 2]
            out[name][k] = point - np.dot(point - plane_point, stack.normal) * stack.normal
    return out

"""Held-out phantom studies: three short-axis slices over the first pass, with their ground truth.

``phantom(seed, field_strength_t, ischemic, variant=...)`` draws a subject
(``subject``), an anatomy (``anatomy``), a readout (``readout``) and heartbeats
(``circulation``); computes every tissue's concentration (``tissue``: the
two-region distributed-parameter myocardium in 24 angular x 3 transmural bins
per slice, blood pools, fat, liver, muscle, lung, aorta); carries the Mz of
every tissue and slice-profile band across the heartbeats; and forms each
frame's image from the modulated k-space of the supersampled anatomy
(``kspace``), with a static receive-coil shading and Rician noise.

Ground truth
------------
* MBF = the blood flow F_b of the tissue model in mL/min/g with a tissue
  density of 1.05 g/mL, i.e. the height of the impulse response at onset
  relative to the tissue's own arterial input (``tissue``), the same definition
  as ``AIAIFLib.simulation``.  A voxel's value is the mean over the myocardial
  bins in it, weighted by their partial volumes.
* ``myocardium_mask`` / ``lv_blood_mask``: voxels at least half LV myocardium
  / LV blood (partial volume by supersampling).
* AHA labels 1-16 of the myocardium-mask voxels from the true anatomy
  (``anatomy.aha_segment``); segment MBF = mean of the MBF map over a label.
* ``myocardium_voxel_conc_mM``: the true tissue concentration (mM) of every
  myocardium-mask voxel (``myocardium_voxels_kji`` order, C order of the
  mask) at its own slice's acquisition times.
* The AIF: LV blood concentration at the frame times (mM) and its linear
  reference signal ``S0 * (1 + r1 * T1b * C)`` with the subject's own r1 and
  blood T1 and S0 the noise-free pre-contrast LV signal.
* Frame times are those of the first slot's k-space centre; the other slices
  are acquired later in each heartbeat (``acquisition["slice_delay_s"]``).

Variants (same seed -> same anatomy and the same pixel data)
-------------------------------------------------------------
``base-first``: slices stored base to apex.  ``apex-first``: the same slices
stored apex to base, the geometry says so.  ``mirrored-geometry``: the
base-first images and masks unchanged, but the slice axis of ``ijk_to_ras``
reversed so that base-to-apex points right/posterior/superior (as if stored
wrongly, or a dextrocardia); the truth labels stay those of the images and
the RV points move with the geometry so that they sit on the same voxels.
``no-points``: base-first without RV insertion points.
"""

import json
import os
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, sparse

from . import anatomy, circulation, kspace, ranges, tissue
from .pairs import _pre_contrast_level
from .readout import design_readout, other_slot_events, readout_start_mz, signal_tables
from .subject import draw_subject

#: Phantom variants (see the module docstring).
VARIANTS = ("base-first", "apex-first", "mirrored-geometry", "no-points")
#: Dose classes: LV first-pass peak ranges (mM) for benchmarks that need low
#: and high doses; ``None`` draws from the full log-uniform range.
DOSES = {"low": (1.5, 4.0), "standard": (4.0, 10.0), "high": (10.0, 25.0)}
#: Purpose tag of the phantoms' seeds.
_PHANTOM_TAG = 0x5A17
#: Inflow of the descending aorta (strong through-plane flow; project choice).
AORTA_INFLOW = 0.5
#: Energy of the per-line signal tables the k-space basis keeps (project
#: choice: 6-8 basis functions; the images then differ from a 12-function
#: basis by < 0.2 % of the myocardial signal).
BASIS_ENERGY = 1.0 - 1e-6
#: Frames synthesised at a time (memory only).
_FRAME_CHUNK = 12
#: Territory centre and half-width (degrees from the anterior RV insertion,
#: towards the septum) by level: LAD 1|2, 7|8, 13|14; RCA 3|4, 9|10, 15;
#: LCX 5|6, 11|12, 16 (shared/PHYSICS.md).
TERRITORY_SECTORS = {
    "basal": {"LAD": (0.0, 60.0), "RCA": (120.0, 60.0), "LCX": (240.0, 60.0)},
    "mid": {"LAD": (0.0, 60.0), "RCA": (120.0, 60.0), "LCX": (240.0, 60.0)},
    "apical": {"LAD": (15.0, 90.0), "RCA": (150.0, 45.0), "LCX": (240.0, 45.0)},
}
#: Width of the territory border, degrees (logistic edge; project choice).
TERRITORY_EDGE_DEG = 6.0


@dataclass
class HeldoutStudy:
    """A held-out phantom study (arrays indexed ``[frame, k, j, i]``).

    Attributes
    ----------
    frames : numpy.ndarray of float32, (n_frames, 3, rows, cols)
        Magnitude images, scanner units.
    frame_times_s : numpy.ndarray, (n_frames,)
        Frame times, s (the first slot's k-space centre).
    ijk_to_ras : numpy.ndarray, (4, 4)
        Voxel to RAS (mm).
    lv_blood_mask, myocardium_mask : numpy.ndarray of bool, (3, rows, cols)
    rv_insertion_ras : dict or None
        ``{"anterior": (3, 3), "inferior": (3, 3)}`` RAS points per stored slice;
        None for the ``no-points`` variant.
    slice_levels : tuple of str
        Level of each stored slice.
    variant : str
    truth : dict
        ``mbf_ml_min_g`` and ``aha_labels`` maps, ``segment_mbf_ml_min_g`` (16),
        ``aif_mM`` and ``aif_reference_signal`` at the frame times, and more
        (see ``phantom``).
    acquisition : dict
        Every drawn parameter (JSON-ready).
    """

    frames: np.ndarray
    frame_times_s: np.ndarray
    ijk_to_ras: np.ndarray
    lv_blood_mask: np.ndarray
    myocardium_mask: np.ndarray
    rv_insertion_ras: object
    slice_levels: tuple
    variant: str
    truth: dict = field(default_factory=dict)
    acquisition: dict = field(default_factory=dict)

    @property
    def rv_insertion_labels(self):
        """Label of each stored slice's anterior RV insertion point, e.g. ``"RV insertion anterior basal"``."""
        return tuple("RV insertion anterior {}".format(level) for level in self.slice_levels)

    def perfusion_study(self, with_points=True):
        """This study as the pipeline's ``AIAIFLib.pipeline.PerfusionStudy`` (anterior points, if any)."""
        from AIAIFLib.pipeline import PerfusionStudy

        points = self.rv_insertion_ras if with_points else None
        return PerfusionStudy(
            frames=self.frames, frame_times_s=self.frame_times_s, ijk_to_ras=self.ijk_to_ras,
            blood_pool_mask=self.lv_blood_mask, myocardium_mask=self.myocardium_mask,
            rv_insertion_ras=None if points is None else points["anterior"],
            rv_insertion_labels=None if points is None else self.rv_insertion_labels,
            source={"heldout_seed": self.acquisition.get("seed"), "heldout_variant": self.variant})


def _stream(seed, purpose):
    return np.random.default_rng(np.random.SeedSequence([int(seed), _PHANTOM_TAG, purpose]))


# ---------------------------------------------------------------------------
# Myocardial flow and kinetics
# ---------------------------------------------------------------------------

def _territory_membership(angle_rel_deg, level, territory, shift_deg, width_factor):
    centre, half_width = TERRITORY_SECTORS[level][territory]
    distance = np.abs(anatomy.angle_difference(angle_rel_deg, centre + shift_deg))
    return 1.0 / (1.0 + np.exp(-(half_width * width_factor - distance) / TERRITORY_EDGE_DEG))


def _myocardial_bins(rng, heart, stack, ischemic):
    """Flow and kinetic parameters of every (slice, angle, layer) bin and of the RV wall."""
    draw = ranges.draw
    k, b, layer = np.meshgrid(np.arange(3), np.arange(anatomy.ANGLE_BINS), np.arange(anatomy.LAYERS), indexing="ij")
    k, b, layer = k.ravel(), b.ravel(), layer.ravel()
    angle = (b + 0.5) * 360.0 / anatomy.ANGLE_BINS
    transmural = (layer + 0.5) / anatomy.LAYERS
    level_mm = stack.levels_mm[k]
    rel = anatomy.angle_difference(angle, heart.insertion_deg(level_mm)) % 360.0

    healthy = draw(rng, "healthy_mbf_ml_min_g")
    variation = draw(rng, "mbf_angular_variation")
    phase = rng.uniform(0.0, 360.0)
    endo_epi = draw(rng, "healthy_endo_epi_ratio")
    gradient = 2.0 * (endo_epi - 1.0) / (endo_epi + 1.0)
    per_level = 1.0 + rng.uniform(-0.05, 0.05, 3)
    mbf = healthy * (1.0 + variation * np.cos(np.radians(angle - phase))) * (1.0 + gradient * (0.5 - transmural)) \
        * per_level[k]
    membership = np.zeros(k.size)
    draws = {"healthy_mbf_ml_min_g": healthy, "mbf_angular_variation": variation,
             "healthy_endo_epi_ratio": endo_epi}
    if ischemic != "none":
        shift, width = draw(rng, "territory_shift_deg"), draw(rng, "territory_width_factor")
        level_names = np.array(anatomy.LEVELS)[k]
        membership = np.array([_territory_membership(r, lv, ischemic, shift, width)
                               for r, lv in zip(rel, level_names)])
        value = draw(rng, "ischaemic_mbf_ml_min_g")
        ratio = draw(rng, "ischaemic_endo_epi_ratio")
        steep = 2.0 * (1.0 - ratio) / (1.0 + ratio)
        ischaemic_mbf = value * (1.0 + steep * (transmural - 0.5))
        mbf = mbf * (1.0 - membership) + ischaemic_mbf * membership
        draws.update(ischaemic_mbf_ml_min_g=value, ischaemic_endo_epi_ratio=ratio, territory_shift_deg=shift,
                     territory_width_factor=width)
    means = {key: draw(rng, key) for key in ("blood_volume_fraction", "interstitial_volume_fraction",
                                             "permeability_surface_per_s", "fast_region_flow_share",
                                             "fast_region_volume_share", "arterial_delay_s",
                                             "arterial_dispersion_s", "ischaemic_extra_delay_s",
                                             "ischaemic_extra_dispersion_s")}
    draws.update(means)
    n = k.size + 1  # the last bin is the RV free wall (mean healthy flow)
    jitter = lambda: rng.uniform(0.9, 1.1, n)  # noqa: E731
    bins = {
        "slice": np.append(k, -1), "angle_bin": np.append(b, -1), "layer": np.append(layer, -1),
        "mbf_ml_min_g": np.append(mbf, healthy),
        "membership": np.append(membership, 0.0),
        "vb": means["blood_volume_fraction"] * jitter(),
        "ve": means["interstitial_volume_fraction"] * jitter(),
        "ps_per_s": means["permeability_surface_per_s"] * jitter(),
        "flow_share": np.clip(means["fast_region_flow_share"] * jitter(), 0.5, 0.9),
        "volume_share": np.clip(means["fast_region_volume_share"] * jitter(), 0.3, 0.6),
    }
    bins["delay_s"] = means["arterial_delay_s"] * jitter() + bins["membership"] * means["ischaemic_extra_delay_s"]
    bins["dispersion_s"] = means["arterial_dispersion_s"] * jitter() + bins["membership"] * means[
        "ischaemic_extra_dispersion_s"]
    return bins, draws


def _tissue_curves(grid, lv, bins):
    """Myocardial concentration of every bin on the fine grid, mM."""
    flow = tissue.blood_flow_per_s(bins["mbf_ml_min_g"])
    residue = tissue.two_region_residue(grid[1] - grid[0], grid.size, flow, bins["vb"], bins["ve"], bins["ps_per_s"],
                                        bins["flow_share"], bins["volume_share"])
    arterial = tissue.delayed_dispersed(grid, lv, bins["delay_s"], bins["dispersion_s"])
    return tissue.convolve_residue(grid, arterial, residue, flow)


# ---------------------------------------------------------------------------
# Image formation
# ---------------------------------------------------------------------------

def _units_of_slice(stack, heart, torso, k):
    """Supersampled classes of slice ``k`` turned into unit fractions per voxel.

    Units: the non-air classes except the myocardium, then one per
    myocardial bin (angle x layer).  Returns the sparse fractions (voxels x
    units), the class fractions, and the per-voxel myocardial MBF weights.
    """
    points = stack.subsamples(k)
    n_vox, n_sub = points.shape[:2]
    classes, level, angle, transmural = anatomy.classify(heart, torso, points.reshape(-1, 3))
    plain = [c for c in anatomy.CLASSES if c not in ("air", "myocardium")]
    unit = np.full(classes.shape, -1)
    for index, name in enumerate(plain):
        unit[classes == anatomy.CLASS[name]] = index
    myo = classes == anatomy.CLASS["myocardium"]
    angle_bin = (np.mod(angle[myo], 360.0) // (360.0 / anatomy.ANGLE_BINS)).astype(int)
    layer = np.minimum((transmural[myo] * anatomy.LAYERS).astype(int), anatomy.LAYERS - 1)
    unit[myo] = len(plain) + angle_bin * anatomy.LAYERS + layer
    n_units = len(plain) + anatomy.ANGLE_BINS * anatomy.LAYERS
    voxel = np.repeat(np.arange(n_vox), n_sub)
    keep = unit >= 0
    counts = sparse.coo_matrix((np.ones(np.count_nonzero(keep)), (voxel[keep], unit[keep])),
                               shape=(n_vox, n_units)).tocsr()
    counts.sum_duplicates()
    fractions = counts / float(n_sub)
    class_fraction = {name: np.bincount(voxel[classes == anatomy.CLASS[name]], minlength=n_vox) / n_sub
                      for name in ("lv blood", "myocardium")}
    return fractions.tocsr(), plain, class_fraction


def _basis(tables, profile_weight, max_rank=12):
    """Orthonormal per-line basis (r, L) spanning every table's line signals.

    The principal directions of all tables' line signals (offsets and
    slopes, weighted by the slice-profile bands), from the eigenvectors of
    their Gram matrix, keeping ``BASIS_ENERGY`` of the energy.
    """
    rows = []
    for table in tables.values():
        for values in (table.offset, table.slope):
            rows.append((values * profile_weight[None, :, None]).reshape(-1, values.shape[-1]))
    stacked = np.concatenate(rows)
    gram = np.einsum("ri,rj->ij", stacked.conj(), stacked)
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    energy = np.cumsum(np.clip(eigenvalues, 0.0, None)) / np.sum(np.clip(eigenvalues, 0.0, None))
    rank = min(int(np.searchsorted(energy, BASIS_ENERGY)) + 1, max_rank, eigenvalues.size)
    return eigenvectors[:, :rank].conj().T


def _coil_shading(stack, k, torso, amplitude):
    """Static receive sensitivity of slice ``k``'s voxels, 1 at the heart (a coil over the anterior chest)."""
    centres = stack.voxel_centres(k)
    coil = np.array([-30.0, torso.centre_y_mm + torso.half_depth_mm + 20.0, 0.0])
    distance_sq = np.sum((centres - coil) ** 2, axis=1)
    gain = (1.0 - amplitude) + amplitude * np.exp(-distance_sq / (2.0 * 140.0 ** 2))
    middle = stack.ijk_to_ras[:3, 3] + k * stack.ijk_to_ras[:3, 2] + 0.5 * (stack.matrix - 1) * (
        stack.ijk_to_ras[:3, 0] + stack.ijk_to_ras[:3, 1])
    reference = (1.0 - amplitude) + amplitude * np.exp(-np.sum((middle - coil) ** 2) / (2.0 * 140.0 ** 2))
    return gain / reference


def _slice_images(readout, subject, units, slot, cycle_s, projected, basis_rows, shading):
    """Noise-free complex images of one slice, (n_frames, rows, cols).

    ``units``: the slice's sparse unit fractions per voxel (``fractions``),
    each unit's concentration at the slice's acquisition times (``conc``,
    mM), tissue kind and inflow fraction; ``projected``: per kind, splines of
    the per-line signal tables projected on the k-space basis.
    """
    fractions, unit_conc = units["fractions"], units["conc"]
    unit_kind, unit_inflow = units["kinds"], units["inflow"]
    n_units, n_frames = unit_conc.shape
    matrix = int(round(np.sqrt(fractions.shape[0])))
    profile_weight = readout.profile()[1]
    n_profile = profile_weight.size
    rank = basis_rows.shape[0]
    r1 = np.empty((n_units, n_frames))
    end_offset = np.empty((n_units, n_frames, n_profile))
    end_slope = np.empty((n_units, n_frames, n_profile))
    offset = np.empty((n_units, n_frames, n_profile, rank), complex)
    slope = np.empty((n_units, n_frames, n_profile, rank), complex)
    scale = np.empty(n_units, complex)
    fat_phase = np.exp(2j * np.pi * ranges.FAT_SHIFT_PPM * 1e-6 * ranges.GAMMA_HZ_PER_T * subject["field_strength_t"]
                       * readout.echo_time_s)
    for kind, splines in projected.items():
        members = np.flatnonzero(unit_kind == kind)
        if members.size == 0:
            continue
        u = splines["table"].u_of(unit_conc[members])
        end_offset[members] = splines["end_offset"](u)
        end_slope[members] = splines["end_slope"](u)
        offset[members] = splines["offset"](u)
        slope[members] = splines["slope"](u)
        relax = subject["relaxation"][kind]
        r1[members] = 1.0 / relax.t1_s + relax.r1_per_s_per_mM * unit_conc[members]
        scale[members] = subject["proton_density"][kind] * (fat_phase if kind == "fat" else 1.0)
    events = other_slot_events(slot, readout.slots_per_rr, readout.slot_s, cycle_s)
    start = readout_start_mz(
        r1, end_offset, end_slope, np.full(n_units, readout.first_pulse_s), np.full(n_units, readout.readout_end_s),
        np.broadcast_to(events, (n_units,) + events.shape), np.broadcast_to(cycle_s, (n_units, n_frames)),
        np.full((n_units, events.shape[1] + 1), readout.saturation_efficiency), unit_inflow)
    phi = np.sum(profile_weight[None, None, :, None] * (offset + slope * start[..., None]), axis=2)
    phi *= scale[:, None, None]  # (U, F, r), units of the equilibrium signal of water
    images = np.empty((n_frames, matrix, matrix), complex)
    for first in range(0, n_frames, _FRAME_CHUNK):
        chunk = slice(first, min(first + _FRAME_CHUNK, n_frames))
        width = chunk.stop - chunk.start
        maps = fractions @ phi[:, chunk].reshape(n_units, width * rank)
        maps = maps.reshape(matrix, matrix, width, rank).transpose(2, 3, 0, 1)
        images[chunk] = kspace.synthesise(maps, basis_rows) * shading.reshape(matrix, matrix)
    return images


# ---------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------

def _draw_frames(rng, subject, n_frames):
    rr = 60.0 / subject["rhythm"]["heart_rate_bpm"]
    if n_frames is not None:
        return int(n_frames)
    drawn = int(ranges.draw(rng, "n_frames"))
    needed = int(np.ceil((subject["aif"]["arrival_s"] + ranges.MIN_FRAMES_AFTER_ARRIVAL_S) / rr))
    return int(np.clip(needed, drawn, ranges.RANGES["n_frames"]["range"][1]))


def _class_curves(grid, lv, rv, myo_curves):
    """Concentration of every non-myocardial class on the fine grid, mM."""
    background = {kind: tissue.background_concentration(grid, lv, rv, kind)
                  for kind in ("muscle", "liver", "fat", "lung", "aorta")}
    return {"body": background["muscle"], "muscle": background["muscle"], "subcutaneous fat": background["fat"],
            "epicardial fat": background["fat"], "lung": background["lung"], "liver": background["liver"],
            "aorta": background["aorta"], "rv blood": rv, "rv wall": myo_curves[-1], "lv blood": lv}


def _record(value):
    """JSON-ready copy: dataclasses as dicts, then ``AIAIFLib.pipeline.json_ready`` (arrays, numpy scalars, NaN)."""
    from dataclasses import asdict, is_dataclass

    from AIAIFLib.pipeline import json_ready

    if is_dataclass(value):
        return _record(asdict(value))
    if isinstance(value, dict):
        return json_ready({key: _record(item) for key, item in value.items()})
    return json_ready(value)


def _slice_units(stack, heart, torso, k, bins, myo_curves, class_curves, grid, times_s, inflow_fraction):
    """Units of slice ``k`` (the plain classes, then the slice's myocardial bins) with their concentrations."""
    fractions, plain, class_fraction = _units_of_slice(stack, heart, torso, k)
    members = np.flatnonzero(bins["slice"] == k)
    curves = np.vstack([np.stack([class_curves[name] for name in plain]), myo_curves[members]])
    inflow = {"lv blood": inflow_fraction["lv"], "rv blood": inflow_fraction["rv"], "aorta": AORTA_INFLOW}
    mbf_units = np.append(np.zeros(len(plain)), bins["mbf_ml_min_g"][members])
    return {"fractions": fractions, "class_fraction": class_fraction,
            "conc": np.stack([np.interp(times_s, grid, row) for row in curves]),
            "kinds": np.array([anatomy.CLASS_KIND[name] for name in plain] + ["myocardium"] * members.size),
            "inflow": np.array([inflow.get(name, 0.0) for name in plain] + [0.0] * members.size),
            "mbf_units": mbf_units, "is_bin": mbf_units > 0}


def _projected_tables(readout, subject, per_slice, matrix):
    """Signal tables of every tissue kind present, projected on one k-space basis.

    Returns the per-kind splines (``_slice_images``), the basis on the
    reconstructed k-space rows and its rank.
    """
    kinds = sorted({kind for units in per_slice for kind in units["kinds"]})
    c_max = {kind: 1.02 * max(units["conc"][units["kinds"] == kind].max() for units in per_slice) for kind in kinds}
    tables = dict(zip(kinds, signal_tables([(readout, subject["relaxation"][kind], c_max[kind]) for kind in kinds])))
    basis = _basis(tables, readout.profile()[1])
    projection = basis.conj().T
    projected = {kind: {"table": table, "offset": table.spline(table.offset @ projection),
                        "slope": table.spline(table.slope @ projection), "end_offset": table.spline(table.end_offset),
                        "end_slope": table.spline(table.end_slope)} for kind, table in tables.items()}
    return projected, kspace.rows_modulation(readout, matrix, basis), int(basis.shape[0])


def _true_maps(per_slice, myo_mask, heart, stack):
    """True MBF map, AHA labels and the concentration curve of every myocardium-mask voxel (C order)."""
    mbf_map = np.full(myo_mask.shape, np.nan)
    labels = np.zeros(myo_mask.shape, np.uint8)
    voxel_conc = []
    for k, units in enumerate(per_slice):
        weight = units["fractions"] @ units["is_bin"].astype(float)
        inside = myo_mask[k].ravel()
        flat = np.full(inside.size, np.nan)
        flat[inside] = (units["fractions"] @ units["mbf_units"])[inside] / weight[inside]
        mbf_map[k] = flat.reshape(myo_mask.shape[1:])
        bin_conc = units["fractions"][inside] @ (units["conc"] * units["is_bin"][:, None])
        voxel_conc.append(bin_conc / weight[inside][:, None])
        level_mm, angle, _ = heart.coordinates(stack.voxel_centres(k)[inside])
        flat_labels = np.zeros(inside.size, np.uint8)
        flat_labels[inside] = anatomy.aha_segment(angle - heart.insertion_deg(level_mm), anatomy.LEVELS[k])
        labels[k] = flat_labels.reshape(myo_mask.shape[1:])
    return mbf_map, labels, np.concatenate(voxel_conc)


#: Respiratory motion of ``phantom(..., motion=True)`` (testing only; its own model, unlike the project's):
#: a sinusoidal breathing of 3-10 mm peak to peak with a 3-6 s period along a random in-plane direction, a
#: linear drift of up to 2 mm, a breath-hold from 3-8 s before the LV's contrast arrival lasting 12-25 s (at
#: least until 2 s after the LV peak) with abrupt starts and ends, applied as a k-space phase ramp to the heart
#: and its surroundings (a disc 35 mm beyond the LV's blood pool, tapered over 15 mm); the chest wall stays.  With
#: ``free_breathing`` there is no breath-hold, and the breathing is offset so that the heart lies at the truth's
#: position, in every slice, in the frame of the LV's peak concentration alone.  With ``rotation_deg`` the heart
#: also turns about the LV's centre, in phase with the breathing, by up to that many degrees either way at the
#: breathing's extremes (the drift does not turn it; the truth's displacement stays the LV centre's).
MOTION = {"amplitude_mm": (3.0, 10.0), "period_s": (3.0, 6.0), "drift_mm": (0.0, 2.0),
          "hold_before_arrival_s": (3.0, 8.0), "hold_s": (12.0, 25.0), "hold_after_peak_s": 2.0,
          "margin_mm": 35.0, "taper_mm": 15.0, "free_breathing": False, "rotation_deg": 0.0}


def _turned(image, centre, angle_rad):
    """A complex image turned by ``angle_rad`` about ``centre`` (row, column), cubic spline, edges repeated."""
    cos, sin = np.cos(angle_rad), np.sin(angle_rad)
    turn = np.array([[cos, -sin], [sin, cos]])  # output (row, column) -> input, about the centre
    offset = centre - turn @ centre
    return (ndimage.affine_transform(image.real, turn, offset=offset, order=3, mode="nearest")
            + 1j * ndimage.affine_transform(image.imag, turn, offset=offset, order=3, mode="nearest"))


def _moved(clean, lv_mask, pixel_mm, slice_times, aif_mM, frame_times, rng):
    """The complex images with the heart moved by breathing outside a breath-hold, the shift (pixels), the hold
    (s) and the rotation (degrees)."""
    n_frames, n_slices, rows, columns = clean.shape
    amplitude = rng.uniform(*MOTION["amplitude_mm"]) / pixel_mm
    period = rng.uniform(*MOTION["period_s"])
    angle, drift_angle = rng.uniform(0.0, 2.0 * np.pi, 2)
    drift = rng.uniform(*MOTION["drift_mm"]) / pixel_mm
    phase0 = rng.uniform(0.0, 2.0 * np.pi)
    arrival = frame_times[np.argmax(aif_mM > 0.05 * aif_mM.max())]
    start = arrival - rng.uniform(*MOTION["hold_before_arrival_s"])
    end = max(start + rng.uniform(*MOTION["hold_s"]), frame_times[np.argmax(aif_mM)] + MOTION["hold_after_peak_s"])
    t = slice_times.T  # (n_frames, n_slices)
    breathing = 0.5 * amplitude * np.sin(2.0 * np.pi * t / period + phase0)
    slow = drift * (t - t.min()) / max(np.ptp(t), 1e-9)
    shift = (breathing[..., None] * np.array([np.sin(angle), np.cos(angle)])
             + slow[..., None] * np.array([np.sin(drift_angle), np.cos(drift_angle)]))
    turn_deg = MOTION["rotation_deg"] * breathing / max(0.5 * amplitude, 1e-9)
    if MOTION["free_breathing"]:
        # No breath-hold: the heart lies at the truth's position in every slice only at the frame of the LV's peak
        # concentration, where the ROIs are drawn.
        shift = shift - shift[int(np.argmax(aif_mM))]
        turn_deg = turn_deg - turn_deg[int(np.argmax(aif_mM))]
        start = end = float("nan")
    else:
        shift[(t >= start) & (t <= end)] = 0.0
        turn_deg[(t >= start) & (t <= end)] = 0.0
    frequencies = np.stack(np.meshgrid(np.fft.fftfreq(rows), np.fft.fftfreq(columns), indexing="ij"))
    yy, xx = np.mgrid[0:rows, 0:columns]
    out = clean.copy()
    for k in range(n_slices):
        cy, cx = np.argwhere(lv_mask[k]).mean(axis=0)
        radius = np.sqrt(lv_mask[k].sum() / np.pi) * pixel_mm
        distance = np.hypot(yy - cy, xx - cx) * pixel_mm - radius - MOTION["margin_mm"]
        blend = 0.5 * (1.0 + np.cos(np.pi * np.clip(distance / MOTION["taper_mm"], 0.0, 1.0)))
        for f in range(n_frames):
            if not np.any(shift[f, k]) and not turn_deg[f, k]:
                continue
            turned = _turned(clean[f, k], np.array([cy, cx]), np.deg2rad(turn_deg[f, k])) if turn_deg[f, k] else \
                clean[f, k]
            ramp = np.exp(-2j * np.pi * (frequencies[0] * shift[f, k, 0] + frequencies[1] * shift[f, k, 1]))
            moved = np.fft.ifft2(np.fft.fft2(turned) * ramp)
            out[f, k] = blend * moved + (1.0 - blend) * clean[f, k]
    return out, shift, [float(start), float(end)], turn_deg


def phantom(seed, field_strength_t=3.0, ischemic="none", variant="base-first", n_frames=None, dose=None,
            inflow=True, readout_overrides=None, motion=False):
    """Simulate one held-out stress perfusion study with its ground truth.

    Parameters
    ----------
    seed : int
        Seed.  Anatomy, subject, readout, flow and noise come from separate
        streams of it, so the ischaemic territory, the dose class or the
        variant change nothing else.
    field_strength_t : {3.0, 1.5}, optional
        Field strength, T.
    ischemic : {'none', 'LAD', 'RCA', 'LCX'}, optional
        Territory with ischaemic stress flow (0.5-1.3 mL/min/g, transmural
        gradient), on the true anatomy (it does not follow the AHA borders).
    variant : str, optional
        One of ``VARIANTS``.
    n_frames : int, optional
        Frames (drawn 40-90 otherwise, covering the first pass).
    dose : {None, 'low', 'standard', 'high'}, optional
        LV first-pass peak class (``DOSES``); None draws 1-25 mM log-uniformly.
    inflow : bool, optional
        Let unsaturated blood flow into the LV and RV pools (False: none,
        for tests that need the idealised physics).
    readout_overrides : dict, optional
        ``readout.Readout`` fields to fix (e.g. ``{"ordering": "linear"}``).
    motion : bool, optional
        Breathing outside a breath-held first pass (``MOTION``), from its own
        stream of the seed: the same study otherwise, noise included.  The
        truth stays at the held position; ``truth["motion_shift_px"]`` (n_frames,
        3, 2) is the (row, column) displacement of the heart in every frame,
        ``truth["motion_breath_hold_s"]`` the hold's start and end, s (NaN
        with ``MOTION["free_breathing"]``: breathing throughout),
        ``truth["motion_rotation_deg"]`` (n_frames, 3) the heart's turn about
        the LV's centre, degrees (zeros unless ``MOTION["rotation_deg"]``).

    Returns
    -------
    HeldoutStudy
    """
    if variant not in VARIANTS:
        raise ValueError("variant must be one of {}".format(", ".join(VARIANTS)))
    if ischemic not in ("none", "LAD", "RCA", "LCX"):
        raise ValueError("ischemic must be 'none', 'LAD', 'RCA' or 'LCX'")
    if dose is not None and dose not in DOSES:
        raise ValueError("dose must be None or one of {}".format(", ".join(DOSES)))
    field = float(field_strength_t)
    rng_anatomy, rng_sequence, rng_flow, rng_noise = (_stream(seed, purpose) for purpose in (2, 3, 4, 5))
    peak = None if dose is None else _stream(seed, 6).uniform(*DOSES[dose])
    subject = draw_subject(_stream(seed, 1), field, peak)
    heart = anatomy.draw_heart(rng_anatomy)
    torso = anatomy.draw_torso(rng_anatomy, heart)
    fov = ranges.draw(rng_anatomy, "fov_mm")
    matrix = int(ranges.draw(rng_anatomy, "matrix"))
    pixel = float(np.clip(fov / matrix, *ranges.RANGES["pixel_mm"]["range"]))
    rr = 60.0 / subject["rhythm"]["heart_rate_bpm"]
    readout = design_readout(rng_sequence, field, rr, pixel, matrix, **(readout_overrides or {}))
    stack = anatomy.slice_stack(rng_anatomy, heart, matrix, pixel, readout.slice_thickness_mm)
    frames_count = _draw_frames(rng_sequence, subject, n_frames)
    triggers, skipped = circulation.frame_triggers(rng_sequence, subject["rhythm"], frames_count, readout.block_s)
    acquisition_order = "base to apex" if rng_sequence.random() < 0.5 else "apex to base"
    slots = np.arange(3) if acquisition_order == "base to apex" else np.arange(3)[::-1]
    inflow_fraction = {"lv": ranges.draw(rng_sequence, "inflow_fraction_lv"),
                       "rv": ranges.draw(rng_sequence, "inflow_fraction_rv")}
    if not inflow:
        inflow_fraction = {"lv": 0.0, "rv": 0.0}
    snr = ranges.draw(rng_noise, "myocardial_baseline_snr", field)
    shading_amplitude = ranges.draw(rng_noise, "coil_shading_amplitude")
    signal_scale = ranges.draw(rng_noise, "signal_scale")

    frame_times = triggers - triggers[0]
    slice_times = frame_times[None, :] + slots[:, None] * readout.slot_s
    cycle = np.append(np.diff(triggers), np.diff(triggers)[-1])
    grid, lv, rv = circulation.blood_curves([subject["aif"]], slice_times.max() + 5.0)
    lv, rv = lv[0], rv[0]
    bins, flow_draws = _myocardial_bins(rng_flow, heart, stack, ischemic)
    myo_curves = _tissue_curves(grid, lv, bins)
    class_curves = _class_curves(grid, lv, rv, myo_curves)

    per_slice = [_slice_units(stack, heart, torso, k, bins, myo_curves, class_curves, grid, slice_times[k],
                              inflow_fraction) for k in range(3)]
    projected, basis_rows, rank = _projected_tables(readout, subject, per_slice, stack.matrix)

    clean = np.empty((frames_count, 3, stack.matrix, stack.matrix), complex)
    for k, units in enumerate(per_slice):
        shading = signal_scale * _coil_shading(stack, k, torso, shading_amplitude)
        clean[:, k] = _slice_images(readout, subject, units, slots[k], cycle, projected, basis_rows, shading)

    shape = (3, stack.matrix, stack.matrix)
    lv_fraction = np.stack([s["class_fraction"]["lv blood"] for s in per_slice]).reshape(shape)
    myo_fraction = np.stack([s["class_fraction"]["myocardium"] for s in per_slice]).reshape(shape)
    lv_mask, myo_mask = lv_fraction >= 0.5, myo_fraction >= 0.5
    still_magnitude = np.abs(clean)
    motion_truth = {}
    if motion:
        clean, shift, hold, turn = _moved(clean, lv_mask, pixel, slice_times, np.interp(frame_times, grid, lv),
                                          frame_times, _stream(seed, 7))
        motion_truth = {"motion_shift_px": shift, "motion_breath_hold_s": np.array(hold), "motion_rotation_deg": turn}
    magnitude = np.abs(clean)
    noise_sd = float(np.median(still_magnitude[0][myo_mask]) / snr)
    noise = rng_noise.standard_normal((2,) + clean.shape) * noise_sd
    frames = np.abs(clean + noise[0] + 1j * noise[1]).astype(np.float32)

    mbf_map, labels, voxel_conc = _true_maps(per_slice, myo_mask, heart, stack)
    segment_mbf = np.array([np.mean(mbf_map[labels == s]) if np.any(labels == s) else np.nan for s in range(1, 17)])

    pure_blood = lv_fraction >= 0.99
    lv_clean = np.array([still_magnitude[f][pure_blood].mean() for f in range(frames_count)])
    blood = subject["relaxation"]["blood"]
    aif_mM = np.interp(frame_times, grid, lv)
    baseline = _pre_contrast_level(lv_clean, aif_mM)
    truth = {
        "mbf_ml_min_g": mbf_map, "aha_labels": labels, "segment_mbf_ml_min_g": segment_mbf,
        "aif_mM": aif_mM, "aif_reference_signal": baseline * (1.0 + blood.r1_per_s_per_mM * blood.t1_s * aif_mM),
        "aif_saturated_noiseless": lv_clean, "aif_baseline_signal": baseline, "slice_times_s": slice_times,
        "lv_blood_fraction": lv_fraction, "myocardium_fraction": myo_fraction, "fine_times_s": grid,
        "fine_lv_mM": lv, "fine_rv_mM": rv, "bin_mbf_ml_min_g": bins["mbf_ml_min_g"],
        "bin_territory_membership": bins["membership"], "noiseless_frames": magnitude.astype(np.float32),
        "ischemic_territory": ischemic,
        "myocardium_voxels_kji": np.argwhere(myo_mask),
        "myocardium_voxel_conc_mM": voxel_conc,
    }
    truth.update(motion_truth)
    acquisition = _record({
        "seed": int(seed), "field_strength_t": field, "ischemic_territory": ischemic, "dose": dose,
        "motion": bool(motion),
        "readout": readout.as_record(), "acquisition_order": acquisition_order, "slot_of_slice": slots,
        "slice_delay_s": slots * readout.slot_s, "skipped_triggers": skipped, "inflow_fraction": inflow_fraction,
        "aorta_inflow_fraction": AORTA_INFLOW, "myocardial_baseline_snr": snr, "noise_sd": noise_sd,
        "coil_shading_amplitude": shading_amplitude, "signal_scale": signal_scale, "n_frames": frames_count,
        "relaxation": subject["relaxation"], "proton_density": subject["proton_density"],
        "rhythm": subject["rhythm"], "aif": subject["aif"], "flow": flow_draws, "heart": heart, "torso": torso,
        "slice_levels_mm": stack.levels_mm, "slice_normal_ras": stack.normal, "pixel_mm": pixel,
        "matrix": stack.matrix, "basis_rank": rank,
        "mbf_definition": "F_b of the two-region distributed-parameter model, 60 * F_b / {} g/mL; onset height of "
                          "the impulse response to the tissue's own (delayed, dispersed) arterial input".format(
                              tissue.TISSUE_DENSITY_G_PER_ML),
    })
    base = HeldoutStudy(frames=frames, frame_times_s=frame_times, ijk_to_ras=stack.ijk_to_ras, lv_blood_mask=lv_mask,
                        myocardium_mask=myo_mask, rv_insertion_ras=anatomy.insertion_points(heart, stack),
                        slice_levels=anatomy.LEVELS, variant="base-first", truth=truth, acquisition=acquisition)
    return apply_variant(base, variant)


def apply_variant(study, variant):
    """A base-first study as another variant (same pixel data; see the module docstring)."""
    if study.variant != "base-first":
        raise ValueError("apply_variant needs a base-first study")
    acquisition = dict(study.acquisition, variant=variant)
    if variant == "base-first":
        return HeldoutStudy(**dict(study.__dict__, acquisition=acquisition))
    if variant == "no-points":
        return HeldoutStudy(**dict(study.__dict__, rv_insertion_ras=None, variant=variant, acquisition=acquisition))
    matrix = study.ijk_to_ras.copy()
    if variant == "mirrored-geometry":
        matrix[:3, 2] = -matrix[:3, 2]
        old_to_ijk = np.linalg.inv(study.ijk_to_ras)
        points = {name: (matrix @ old_to_ijk @ np.c_[p, np.ones(len(p))].T)[:3].T
                  for name, p in study.rv_insertion_ras.items()}
        return HeldoutStudy(**dict(study.__dict__, ijk_to_ras=matrix, rv_insertion_ras=points, variant=variant,
                                   acquisition=acquisition))
    # apex-first: the slices in reverse order, the geometry following them.
    n = study.frames.shape[1]
    matrix[:3, 3] = study.ijk_to_ras[:3, 3] + (n - 1) * study.ijk_to_ras[:3, 2]
    matrix[:3, 2] = -study.ijk_to_ras[:3, 2]
    truth = {key: (value[::-1] if isinstance(value, np.ndarray) and value.shape[:1] == (n,) and key not in (
        "segment_mbf_ml_min_g",) and value.ndim >= 3 else value) for key, value in study.truth.items()}
    truth["slice_times_s"] = study.truth["slice_times_s"][::-1]
    truth["noiseless_frames"] = study.truth["noiseless_frames"][:, ::-1]
    if "motion_shift_px" in study.truth:
        truth["motion_shift_px"] = study.truth["motion_shift_px"][:, ::-1]
        truth["motion_rotation_deg"] = study.truth["motion_rotation_deg"][:, ::-1]
    voxels = np.argwhere(study.myocardium_mask[::-1])
    shape = study.myocardium_mask.shape
    original = np.ravel_multi_index((n - 1 - voxels[:, 0], voxels[:, 1], voxels[:, 2]), shape)
    order = np.searchsorted(np.ravel_multi_index(study.truth["myocardium_voxels_kji"].T, shape), original)
    truth["myocardium_voxels_kji"] = voxels
    truth["myocardium_voxel_conc_mM"] = study.truth["myocardium_voxel_conc_mM"][order]
    return HeldoutStudy(frames=study.frames[:, ::-1], frame_times_s=study.frame_times_s, ijk_to_ras=matrix,
                        lv_blood_mask=study.lv_blood_mask[::-1], myocardium_mask=study.myocardium_mask[::-1],
                        rv_insertion_ras={name: p[::-1] for name, p in study.rv_insertion_ras.items()},
                        slice_levels=tuple(study.slice_levels[::-1]), variant=variant, truth=truth,
                        acquisition=acquisition)


#: Files ``write_study`` creates.
STUDY_FILES = {
    "perfusion": "perfusion.seq.nrrd",
    "segmentation": "segmentation.seg.nrrd",
    "rv_insertion": "rv_insertion.mrk.json",
    "true_aif": "true_aif.csv",
    "truth_arrays": "ground_truth.npz",
    "truth_description": "ground_truth.json",
}


def write_study(study, directory):
    """Write a study as 3D Slicer files, its true AIF as a CSV file and its ground truth.

    Files (``STUDY_FILES``): ``perfusion.seq.nrrd`` (frame times in s as the
    index values), ``segmentation.seg.nrrd`` (segments ``LV blood pool`` and
    ``Myocardium``), ``rv_insertion.mrk.json`` (the anterior RV insertion point
    of each slice labelled ``RV insertion anterior basal`` etc.; not written for
    the ``no-points`` variant), ``true_aif.csv`` (columns ``time_s,signal``: the
    linear reference signal of the true AIF, for ``--aif``),
    ``ground_truth.npz`` (the truth arrays) and ``ground_truth.json``
    (segment MBF, acquisition record).  The command line then runs as
    ``python -m AIAIFLib quantify perfusion.seq.nrrd segmentation.seg.nrrd
    --rv-insertion rv_insertion.mrk.json --aif true_aif.csv --field-strength F
    --output-dir D``.

    Parameters
    ----------
    study : HeldoutStudy
    directory : str
        Existing directory.

    Returns
    -------
    dict
        File key -> path of the files written.
    """
    from AIAIFLib import constants as K
    from AIAIFLib import slicer_files

    path = {key: os.path.join(str(directory), name) for key, name in STUDY_FILES.items()}
    slicer_files.write_volume_sequence(path["perfusion"], study.frames, study.frame_times_s, study.ijk_to_ras)
    slicer_files.write_segmentation(path["segmentation"], [
        (K.LV_BLOOD_POOL_SEGMENT_NAME, study.lv_blood_mask, (0.85, 0.25, 0.25)),
        (K.MYOCARDIUM_SEGMENT_NAME, study.myocardium_mask, (0.95, 0.85, 0.35))], study.ijk_to_ras)
    if study.rv_insertion_ras is not None:
        slicer_files.write_markups_points(path["rv_insertion"], study.rv_insertion_ras["anterior"],
                                          list(study.rv_insertion_labels), name="RV insertion points")
    else:
        del path["rv_insertion"]
    with open(path["true_aif"], "w") as handle:
        handle.write("time_s,signal\n")
        for time_s, value in zip(study.frame_times_s, study.truth["aif_reference_signal"]):
            handle.write("{!r},{!r}\n".format(float(time_s), float(value)))
    arrays = {key: value for key, value in study.truth.items() if isinstance(value, np.ndarray)}
    arrays.update(frame_times_s=study.frame_times_s, ijk_to_ras=study.ijk_to_ras)
    if study.rv_insertion_ras is not None:
        arrays.update({"rv_insertion_{}_ras".format(name): p for name, p in study.rv_insertion_ras.items()})
    np.savez_compressed(path["truth_arrays"], **arrays)
    segment_mbf = study.truth["segment_mbf_ml_min_g"]
    description = {
        "units": {"mbf": "mL/min/g", "concentration": "mM", "time": "s", "length": "mm (RAS)"},
        "variant": study.variant, "slice_levels": list(study.slice_levels),
        "segments": [{"segment": s, "mbf_true_ml_min_g": float(segment_mbf[s - 1]),
                      "n_voxels": int(np.sum(study.truth["aha_labels"] == s))} for s in range(1, 17)],
        "rv_insertion_ras": None if study.rv_insertion_ras is None else {
            name: p.tolist() for name, p in study.rv_insertion_ras.items()},
        "acquisition": study.acquisition,
    }
    with open(path["truth_description"], "w") as handle:
        json.dump(description, handle, indent=2)
    return path

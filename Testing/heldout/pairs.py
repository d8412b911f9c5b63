"""Paired held-out AIFs: the saturated LV signal of the standard slices and its linear reference.

Each curve is its own subject and acquisition (``subject.draw_subject``,
``readout.design_readout``): irregular heartbeats with skipped triggers, a
multi-slice saturation-recovery readout simulated pulse by pulse (EPG) with a
slice profile, imperfect saturation with the Mz history carried across
heartbeats and across the other slices' saturation pulses, inflow of
unsaturated blood, T2* decay, the image value of the LV pool's central pixels
from the modulated k-space of a disc of the LV's diameter, Rician noise on
each pixel and the mean over the AIF pixels.

The reference is the project's target definition: ``S0 * (1 + r1 * T1b *
C(t))`` with the saturated curve's noise-free pre-contrast level ``S0`` (its
mean over the frames before any contrast) and
the subject's own r1 and blood T1 (the relative enhancement a perfectly
linear sequence would give this blood).  The pipeline converts with its own
r1 and T1b, which differ from the subject's as a real patient's do.
"""

from dataclasses import dataclass

import numpy as np

from . import circulation, kspace, ranges
from .readout import design_readout, other_slot_events, readout_start_mz, signal_tables
from .subject import draw_subject

#: Purpose tag of the pairs' seeds (keeps them apart from the phantoms').
_PAIRS_TAG = 0x4E1D
#: Longest time any curve can need after its first frame, s (90 frames at
#: 55 bpm with skipped beats fit; fixed so that a curve never depends on the
#: others in its chunk).
_DURATION_S = 240.0
#: Pixel positions across the LV pool's centre whose values form the AIF.
_POOL_POSITIONS = 5
#: Largest number of event slots (other slots per heartbeat).
_MAX_EVENTS = 3


@dataclass
class HeldoutAIFPairs:
    """Paired curves, padded with NaN after each curve's own ``n_frames``.

    Attributes
    ----------
    times_s : numpy.ndarray, (n, F)
        Frame times, s from the first frame.
    saturated : numpy.ndarray, (n, F)
        Saturated AIF signal with noise (mean of the AIF pixels' magnitudes).
    saturated_noiseless : numpy.ndarray, (n, F)
        The same without noise.
    reference : numpy.ndarray, (n, F)
        Linear reference ``S0 * (1 + r1 * T1b * C)``.
    conc_mM : numpy.ndarray, (n, F)
        True LV blood concentration at the frame times, mM.
    n_frames : numpy.ndarray of int, (n,)
        Frames of each curve (40-90).
    baseline_signal : numpy.ndarray, (n,)
        S0.
    params : dict of numpy.ndarray, each (n,)
        Everything drawn, for subgroup analysis (``field_strength_t``,
        ``peak_conc_mM``, ``aif_family``, ``ordering``, ``n_frames``, ...).
    """

    times_s: np.ndarray
    saturated: np.ndarray
    saturated_noiseless: np.ndarray
    reference: np.ndarray
    conc_mM: np.ndarray
    n_frames: np.ndarray
    baseline_signal: np.ndarray
    params: dict

    def __len__(self):
        return int(self.n_frames.size)

    def curve(self, index):
        """Curve ``index`` without padding: dict of ``times_s``, ``saturated``, ``reference``, ``conc_mM``, ..."""
        frames = int(self.n_frames[index])
        return {name: getattr(self, name)[index, :frames] for name in (
            "times_s", "saturated", "saturated_noiseless", "reference", "conc_mM")}


def _curve_rng(seed, index):
    return np.random.default_rng(np.random.SeedSequence([int(seed), _PAIRS_TAG, int(index)]))


def _draw_curve(rng, field_strength_t, n_frames, peak_conc_mM, readout_overrides):
    """All draws of one curve (subject, acquisition, noise stream)."""
    subject = draw_subject(rng, field_strength_t, peak_conc_mM)
    rr = 60.0 / subject["rhythm"]["heart_rate_bpm"]
    frames = int(ranges.draw(rng, "n_frames") if n_frames is None else n_frames)
    if n_frames is None:
        needed = int(np.ceil((subject["aif"]["arrival_s"] + ranges.MIN_FRAMES_AFTER_ARRIVAL_S) / rr))
        frames = int(np.clip(needed, frames, ranges.RANGES["n_frames"]["range"][1]))
    fov = ranges.draw(rng, "fov_mm")
    matrix = int(ranges.draw(rng, "matrix"))
    pixel = float(np.clip(fov / matrix, *ranges.RANGES["pixel_mm"]["range"]))
    readout = design_readout(rng, subject["field_strength_t"], rr, pixel, matrix, **(readout_overrides or {}))
    triggers, skipped = circulation.frame_triggers(rng, subject["rhythm"], frames, readout.block_s)
    field = subject["field_strength_t"]
    draws = {
        "slot": int(rng.integers(0, readout.slots_per_rr)),
        "inflow_fraction": ranges.draw(rng, "inflow_fraction_lv"),
        "snr": ranges.draw(rng, "blood_pixel_snr", field),
        "roi_pixels": int(ranges.draw(rng, "aif_roi_pixels")),
        "lv_diameter_mm": ranges.draw(rng, "lv_diameter_mm"),
        "signal_scale": ranges.draw(rng, "signal_scale"),
        "coil_gain": 1.0 + ranges.draw(rng, "coil_shading_amplitude") * rng.uniform(-1.0, 1.0),
    }
    return {"subject": subject, "readout": readout, "triggers": triggers, "skipped": skipped, "n_frames": frames,
            "draws": draws, "noise_rng": np.random.default_rng(rng.integers(0, 2 ** 63))}


def _pool_weights(readout, diameter_mm):
    """Line weights of the pixels across the centre of an LV pool of the given diameter (n_pos, n_lines)."""
    n_rows = readout.matrix
    centre = n_rows // 2
    y = (np.arange(n_rows) - centre) * readout.pixel_mm
    edges = np.clip((0.5 * diameter_mm - np.abs(y)) / readout.pixel_mm + 0.5, 0.0, 1.0)
    reach = max(int(0.25 * diameter_mm / readout.pixel_mm), 0)
    pixels = centre + np.round(np.linspace(-reach, reach, _POOL_POSITIONS)).astype(int)
    return kspace.pixel_line_weights(readout, edges, pixels)


#: Concentration below which a frame counts as pre-contrast, mM.
PRE_CONTRAST_MM = 1e-6


def _pre_contrast_level(signal, conc_mM):
    """Mean of ``signal`` over the frames before any contrast (the first frame if none)."""
    before = conc_mM < PRE_CONTRAST_MM
    return float(signal[before].mean() if before.any() else signal[0])


def _simulate_chunk(curves, grid, lv_mM):
    """Noise-free and noisy saturated AIFs and references of a chunk of drawn curves."""
    n = len(curves)
    frames_max = max(c["n_frames"] for c in curves)
    acq = np.empty((n, frames_max))
    cycle = np.empty((n, frames_max))
    for row, c in enumerate(curves):
        r = c["readout"]
        t = c["triggers"] + r.trigger_delay_s + c["draws"]["slot"] * r.slot_s + r.saturation_time_s
        t = t - t[0]
        acq[row, :t.size] = t
        acq[row, t.size:] = t[-1]
        step = np.diff(c["triggers"])
        cycle[row, :step.size] = step
        cycle[row, step.size:] = step[-1]
    conc = np.stack([np.interp(acq[row], grid, lv_mM[row]) for row in range(n)])
    jobs = [(c["readout"], c["subject"]["relaxation"]["blood"], 1.02 * lv_mM[row].max()) for row, c in enumerate(curves)]
    tables = signal_tables(jobs)

    n_profile = max(c["readout"].profile()[0].size for c in curves)
    r1 = np.empty((n, frames_max))
    end_offset = np.zeros((n, frames_max, n_profile))
    end_slope = np.zeros((n, frames_max, n_profile))
    pixel_offset = np.zeros((n, frames_max, n_profile, _POOL_POSITIONS), complex)
    pixel_slope = np.zeros((n, frames_max, n_profile, _POOL_POSITIONS), complex)
    profile_weight = np.zeros((n, n_profile))
    events = np.empty((n, frames_max, _MAX_EVENTS))
    efficiency = np.zeros((n, _MAX_EVENTS + 1))
    for row, (c, table) in enumerate(zip(curves, tables)):
        r = c["readout"]
        relax = c["subject"]["relaxation"]["blood"]
        weights = _pool_weights(r, c["draws"]["lv_diameter_mm"])  # (n_pos, L)
        p = table.offset.shape[1]
        u = table.u_of(conc[row])
        pixel_offset[row, :, :p] = table.spline(table.offset @ weights.T)(u)
        pixel_slope[row, :, :p] = table.spline(table.slope @ weights.T)(u)
        end_offset[row, :, :p] = table.spline(table.end_offset)(u)
        end_slope[row, :, :p] = table.spline(table.end_slope)(u)
        profile_weight[row, :p] = r.profile()[1]
        r1[row] = 1.0 / relax.t1_s + relax.r1_per_s_per_mM * conc[row]
        own = other_slot_events(c["draws"]["slot"], r.slots_per_rr, r.slot_s, cycle[row])
        events[row] = cycle[row][:, None]
        events[row, :, :own.shape[1]] = own
        efficiency[row, :own.shape[1] + 1] = r.saturation_efficiency

    first = np.array([c["readout"].first_pulse_s for c in curves])
    end = np.array([c["readout"].readout_end_s for c in curves])
    inflow = np.array([c["draws"]["inflow_fraction"] for c in curves])
    start_mz = readout_start_mz(r1, end_offset, end_slope, first, end, events, cycle, efficiency, inflow)
    values = np.sum(profile_weight[:, None, :, None] * (pixel_offset + pixel_slope * start_mz[..., None]), axis=2)
    scale = np.array([c["draws"]["signal_scale"] * c["subject"]["proton_density"]["blood"] * c["draws"]["coil_gain"]
                      for c in curves])
    values = values * scale[:, None, None]  # (n, F, n_pos) complex pixel values

    out = {key: np.full((n, frames_max), np.nan) for key in ("saturated", "saturated_noiseless", "reference")}
    out["times"] = acq
    out["conc"] = conc
    out["baseline"] = np.empty(n)
    for row, c in enumerate(curves):
        frames = c["n_frames"]
        clean = np.abs(values[row, :frames]).mean(axis=1)
        baseline = _pre_contrast_level(clean, conc[row, :frames])
        pixels = c["draws"]["roi_pixels"]
        position = np.arange(pixels) % _POOL_POSITIONS
        sigma = baseline / c["draws"]["snr"]
        noise = c["noise_rng"].standard_normal((2, frames, pixels)) * sigma
        noisy = np.abs(values[row, :frames][:, position] + noise[0] + 1j * noise[1]).mean(axis=1)
        relax = c["subject"]["relaxation"]["blood"]
        out["saturated"][row, :frames] = noisy
        out["saturated_noiseless"][row, :frames] = clean
        out["reference"][row, :frames] = baseline * (1.0 + relax.r1_per_s_per_mM * relax.t1_s * conc[row, :frames])
        out["baseline"][row] = baseline
        out["times"][row, frames:] = np.nan
        out["conc"][row, frames:] = np.nan
    return out


def _params_row(c):
    s, r, d = c["subject"], c["readout"], c["draws"]
    blood = s["relaxation"]["blood"]
    row = {
        "field_strength_t": s["field_strength_t"], "peak_conc_mM": s["aif"]["peak_conc_mM"],
        "arrival_s": s["aif"]["arrival_s"], "aif_family": s["aif"]["aif_family"], "n_frames": c["n_frames"],
        "heart_rate_bpm": s["rhythm"]["heart_rate_bpm"], "skipped_triggers": c["skipped"],
        "t1_blood_s": blood.t1_s, "r1_per_s_per_mM": blood.r1_per_s_per_mM,
        "r2star_blood_per_s_per_mM": blood.r2star_per_s_per_mM, "slot": d["slot"],
        "inflow_fraction": d["inflow_fraction"], "pixel_snr": d["snr"], "roi_pixels": d["roi_pixels"],
        "lv_diameter_mm": d["lv_diameter_mm"],
    }
    for key in ("ordering", "saturation_time_s", "saturation_efficiency", "repetition_time_s", "echo_time_s",
                "flip_angle_deg", "b1_factor", "spoiling_increment_deg", "matrix", "phase_resolution", "acceleration",
                "partial_fourier", "dummy_pulses", "slots_per_rr", "rf_time_bandwidth"):
        row[key] = getattr(r, key)
    row["n_lines"] = r.n_lines
    row["centre_pulse"] = r.dummy_pulses + r.centre_index + 1
    return row


def aif_pairs(n, seed, field_strength_t=None, n_frames=None, peak_conc_mM=None, chunk_size=128,
              readout_overrides=None):
    """Simulate ``n`` held-out pairs of saturated AIF and linear reference.

    Parameters
    ----------
    n : int
        Number of curves.
    seed : int
        Seed; curve ``i`` draws from its own stream ``(seed, i)``, so a curve
        does not depend on ``n`` or ``chunk_size``.
    field_strength_t : {None, 1.5, 3.0}, optional
        Fix the field strength (T).
    n_frames : int, optional
        Fix the frame count (40-90 drawn otherwise).
    peak_conc_mM : float, optional
        Fix the LV first-pass peak (mM).
    chunk_size : int, optional
        Curves simulated together (memory only).
    readout_overrides : dict, optional
        ``readout.Readout`` fields to fix (e.g. ``{"ordering": "centric"}``).

    Returns
    -------
    HeldoutAIFPairs
    """
    n = int(n)
    curves = [_draw_curve(_curve_rng(seed, i), field_strength_t, n_frames, peak_conc_mM, readout_overrides)
              for i in range(n)]
    frames_max = max(c["n_frames"] for c in curves)
    padded = {key: np.full((n, frames_max), np.nan) for key in ("times", "saturated", "saturated_noiseless",
                                                                 "reference", "conc")}
    baseline = np.empty(n)
    for start in range(0, n, chunk_size):
        chunk = curves[start:start + chunk_size]
        grid, lv, _ = circulation.blood_curves([c["subject"]["aif"] for c in chunk], _DURATION_S)
        out = _simulate_chunk(chunk, grid, lv)
        width = out["times"].shape[1]
        for key in padded:
            padded[key][start:start + len(chunk), :width] = out[key]
        baseline[start:start + len(chunk)] = out["baseline"]
    rows = [_params_row(c) for c in curves]
    params = {key: np.array([row[key] for row in rows]) for key in rows[0]}
    return HeldoutAIFPairs(times_s=padded["times"], saturated=padded["saturated"],
                           saturated_noiseless=padded["saturated_noiseless"], reference=padded["reference"],
                           conc_mM=padded["conc"], n_frames=params["n_frames"].astype(int),
                           baseline_signal=baseline, params=params)

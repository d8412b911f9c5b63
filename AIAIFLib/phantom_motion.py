"""Respiratory motion of the simulated phantom: free breathing around a breath-held first pass.

Stress perfusion series move: under adenosine the breath-hold often fails
part-way, and many patients breathe freely before and after it.  This module
moves a still phantom (``simulation.simulate_phantom(motion=...)``) the way
the heart moves then, so that motion correction (``motion``) can be tested
against a known displacement:

* **Breath-hold.** The patient holds the breath from shortly before the
  contrast reaches the RV until after the LV peak; during the hold the heart
  is exactly at the position of the phantom's ground truth (masks, MBF map,
  RV points), which is also the position of the frame the ROIs are drawn on.
* **Free breathing** before and after: an in-plane translation along the
  slice-plane projection of the patient's superior direction (the
  diaphragm's), a breathing cycle of ``period_s`` with cycle-to-cycle
  variation, an asymmetric waveform that dwells at end-expiration, the hold
  somewhere within the breathing range, a slow drift, and smooth transitions
  into and out of the hold.
* **Per slice**: the slices of one heartbeat are acquired one after another
  (``SLICE_INTERVAL_S`` apart), each with a slightly different amplitude and
  direction of its motion.
* **Through-plane** (optional, ``kind="through-plane"``): the heart also moves
  along its long axis, so each slice cuts it at another level.  The section
  grows or shrinks about the LV axis (the LV tapers towards the apex) and its
  signal changes a little (partial volume with the neighbouring tissue).
* **Turning** (optional, ``kind="turning"``): the heart also turns about the
  LV axis in phase with the breathing, by up to ``turn_deg`` either way from
  its held orientation (breathing turns the heart by a few degrees; a
  registration that fits translation alone is pulled by the turned RV).

Only the heart and the tissue around it move; the body outline (air outside)
stays still, as the chest wall does much more than the heart.  A frame is the
still phantom's noise-free image resampled at the moved position (bilinear:
for a translation this is exactly the pixel-area average of the still
phantom's piecewise-constant pixels), before the noise is added.

Every number of ``MOTION_RANGES`` is a project choice: the in-plane amplitude
(4-8 mm), the breathing period (3.5-5 s), the slow drift and the small
per-slice differences are those issue 15 asks for; the others are chosen to
give plausible breath-holds under stress.
"""

import numpy as np
from scipy import ndimage

#: Kinds of motion ``simulate_phantom`` accepts: none, in-plane translation only, in-plane plus a
#: through-plane component seen as a change of the section's size and signal, or in-plane plus a turn about the
#: LV axis.
MOTION_KINDS = ("none", "in-plane", "through-plane", "turning")

#: Ranges of the motion model; (low, high) pairs are drawn uniformly (project choices, see the module notes).
MOTION_RANGES = {
    # Peak-to-peak in-plane displacement of free breathing, mm.
    "in_plane_amplitude_mm": (4.0, 8.0),
    # Breathing period, s, and the cycle-to-cycle SD of the breathing rate (fraction).
    "period_s": (3.5, 5.0),
    "period_variation": (0.05, 0.15),
    # Direction of the motion about the slice-plane projection of the superior direction, degrees.
    "direction_jitter_deg": (-25.0, 25.0),
    # Where in the breathing range (0 end-expiration, 1 end-inspiration) the breath is held.
    "hold_level": (0.0, 1.0),
    # Slow drift of the free-breathing position over the whole series, mm (random in-plane direction).
    "drift_mm": (0.5, 2.5),
    # Per-slice factor on the amplitude and turn of the direction, degrees.
    "slice_amplitude_factor": (0.85, 1.15),
    "slice_direction_deg": (-10.0, 10.0),
    # Start of the hold before the contrast reaches the RV, s, and the hold's length, s.
    "hold_start_before_rv_s": (0.0, 4.0),
    "hold_duration_s": (14.0, 22.0),
    # Time the heart takes to reach the held position and to leave it, s.
    "transition_s": (1.0, 2.0),
    # Through-plane over in-plane amplitude (kind "through-plane").
    "through_plane_ratio": (0.6, 1.0),
    # Largest turn about the LV axis, degrees either way of the held orientation (kind "turning").
    "turn_deg": (3.0, 5.0),
}
#: Time between the acquisitions of neighbouring slices within one heartbeat, s (project choice: a
#: saturation-recovery slice takes about 130 ms to acquire at TR 2-3 ms).
SLICE_INTERVAL_S = 0.13
#: The hold lasts at least this long after the LV's peak, s (project choice: the frame the ROIs are drawn
#: on, the peak, is then breath-held, and so is the position of the ground truth).
HOLD_AFTER_PEAK_S = 3.0
#: Relative change of the section's size per mm of through-plane motion towards the apex (project choice:
#: the phantom's LV narrows by about 10 mm in radius over the 36 mm from base to apex, about 1 % of the
#: epicardial radius per mm).
SECTION_SCALE_PER_MM = 0.01
#: Relative change of the moving tissue's signal per mm of through-plane motion (project choice: partial
#: volume with the neighbouring level).
SIGNAL_CHANGE_PER_MM = 0.01
#: Superior direction of the patient, RAS.
SUPERIOR_RAS = np.array([0.0, 0.0, 1.0])


def _draw(rng, key, size=None):
    return rng.uniform(*MOTION_RANGES[key], size)


def _in_plane_unit_vectors(ijk_to_ras):
    """Unit vectors of the image columns (+i) and rows (+j) in RAS, and the slice normal."""
    columns = np.asarray(ijk_to_ras, dtype=float)[:3, 0]
    rows = np.asarray(ijk_to_ras, dtype=float)[:3, 1]
    columns, rows = columns / np.linalg.norm(columns), rows / np.linalg.norm(rows)
    return columns, rows, np.cross(columns, rows)


def _breathing_phase(rng, times_s, period_s, variation):
    """Breathing phase (radians) at ``times_s`` with a slowly varying breathing rate."""
    fine = np.arange(times_s.min() - 1.0, times_s.max() + 1.0, 0.05)
    # A breathing rate that wanders: smoothed white noise, SD ``variation`` of the mean rate.
    wander = ndimage.gaussian_filter1d(rng.standard_normal(fine.size), sigma=period_s / 0.05)
    wander = wander / max(np.std(wander), 1e-12) * variation
    rate = (1.0 + wander) / period_s
    phase = 2.0 * np.pi * (np.cumsum(rate) * 0.05 + rng.uniform())
    return np.interp(times_s, fine, phase)


def _waveform(phase):
    """Breathing position 0 (end-expiration) to 1 (end-inspiration); it dwells at end-expiration."""
    return (0.5 * (1.0 - np.cos(phase))) ** 1.5


def _hold_envelope(times_s, start_s, end_s, transition_s):
    """0 during the hold, 1 in free breathing, with cosine ramps of ``transition_s`` outside the hold."""
    before = np.clip((start_s - times_s) / transition_s, 0.0, 1.0)
    after = np.clip((times_s - end_s) / transition_s, 0.0, 1.0)
    ramp = np.maximum(before, after)
    return 0.5 * (1.0 - np.cos(np.pi * ramp))


def draw_motion(rng, kind, frame_times_s, ijk_to_ras, long_axis_ras, rv_arrival_s, lv_peak_s, n_slices):
    """Displacement of the heart in every frame and slice.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source (the phantom's own stream for motion).
    kind : str
        One of ``MOTION_KINDS`` other than "none".
    frame_times_s : numpy.ndarray, shape (n_frames,)
        Frame times, s.
    ijk_to_ras : numpy.ndarray, shape (4, 4)
        The phantom's voxel-to-RAS matrix (mm).
    long_axis_ras : numpy.ndarray, shape (3,)
        LV long axis (base to apex), RAS.
    rv_arrival_s, lv_peak_s : float
        Contrast arrival in the RV and the LV's peak, s: the hold starts before
        the first and ends at least ``HOLD_AFTER_PEAK_S`` after the second.
    n_slices : int
        Slices per frame.

    Returns
    -------
    dict
        ``shift_px`` (n_frames, n_slices, 2): displacement of the anatomy in
        (row, column) pixels; ``shift_ras_mm`` (n_frames, n_slices, 3): the
        same in RAS mm; ``through_plane_mm`` (n_frames, n_slices): along the
        long axis towards the apex, mm (0 unless "through-plane");
        ``turn_deg`` (n_frames, n_slices): the turn about the LV axis,
        degrees (0 unless "turning"); ``breath_hold_s``:
        start and end of the hold, s; ``parameters``: the drawn values
        (JSON-ready).
    """
    if kind not in MOTION_KINDS[1:]:
        raise ValueError("motion must be one of {}".format(", ".join(MOTION_KINDS)))
    times = np.asarray(frame_times_s, dtype=float)
    columns, rows, normal = _in_plane_unit_vectors(ijk_to_ras)
    pixel_mm = np.linalg.norm(np.asarray(ijk_to_ras, dtype=float)[:3, :2], axis=0)  # (column, row)
    superior = SUPERIOR_RAS - np.dot(SUPERIOR_RAS, normal) * normal
    superior_angle = np.arctan2(np.dot(superior, rows), np.dot(superior, columns))

    amplitude = _draw(rng, "in_plane_amplitude_mm")
    period = _draw(rng, "period_s")
    variation = _draw(rng, "period_variation")
    direction = superior_angle + np.radians(_draw(rng, "direction_jitter_deg"))
    hold_level = _draw(rng, "hold_level")
    drift = _draw(rng, "drift_mm")
    drift_angle = rng.uniform(0.0, 2.0 * np.pi)
    slice_factor = _draw(rng, "slice_amplitude_factor", n_slices)
    slice_turn = np.radians(_draw(rng, "slice_direction_deg", n_slices))
    start = rv_arrival_s - _draw(rng, "hold_start_before_rv_s")
    end = max(start + _draw(rng, "hold_duration_s"), lv_peak_s + HOLD_AFTER_PEAK_S)
    transition = _draw(rng, "transition_s")
    ratio = _draw(rng, "through_plane_ratio") if kind == "through-plane" else 0.0

    shift_ras = np.zeros((times.size, n_slices, 3))
    through = np.zeros((times.size, n_slices))
    turn = np.zeros((times.size, n_slices))
    span = max(times[-1] - times[0], 1e-6)
    drift_vector = drift * (np.cos(drift_angle) * columns + np.sin(drift_angle) * rows)
    phase_times = times[:, None] + SLICE_INTERVAL_S * np.arange(n_slices)[None, :]
    phase = _breathing_phase(rng, phase_times.ravel(), period, variation).reshape(phase_times.shape)
    largest_turn = _draw(rng, "turn_deg") if kind == "turning" else 0.0  # drawn last: the other kinds' draws stay
    for k in range(n_slices):
        t = phase_times[:, k]
        envelope = _hold_envelope(t, start, end, transition)
        breathing = _waveform(phase[:, k]) - hold_level
        angle = direction + slice_turn[k]
        unit = np.cos(angle) * columns + np.sin(angle) * rows
        in_plane = envelope[:, None] * (amplitude * slice_factor[k] * breathing[:, None] * unit[None, :]
                                        + ((t - times[0]) / span - 0.5)[:, None] * drift_vector[None, :])
        shift_ras[:, k] = in_plane
        through[:, k] = envelope * ratio * amplitude * slice_factor[k] * breathing
        turn[:, k] = envelope * largest_turn * breathing
    shift_px = np.stack([shift_ras @ rows / pixel_mm[1], shift_ras @ columns / pixel_mm[0]], axis=-1)
    parameters = {"kind": kind, "in_plane_amplitude_mm": amplitude, "period_s": period,
                  "period_variation": variation, "direction_deg_from_columns": float(np.degrees(direction)),
                  "hold_level": hold_level, "drift_mm": drift, "slice_amplitude_factor": slice_factor.tolist(),
                  "slice_direction_deg": np.degrees(slice_turn).tolist(), "breath_hold_s": [start, end],
                  "transition_s": transition, "through_plane_ratio": ratio, "turn_deg": largest_turn,
                  "slice_interval_s": SLICE_INTERVAL_S}
    return {"shift_px": shift_px, "shift_ras_mm": shift_ras, "through_plane_mm": through, "turn_deg": turn,
            "breath_hold_s": np.array([start, end]), "parameters": parameters,
            "long_axis_ras": np.asarray(long_axis_ras, dtype=float)}


def move_frames(signal, moving, fill_signal, centres_px, motion):
    """Noise-free frames with the heart moved: the still phantom resampled at each frame's position.

    Parameters
    ----------
    signal : numpy.ndarray, shape (n_frames, n_slices, rows, columns)
        Noise-free signal of the still phantom.  Pixels outside ``moving``
        (air) are kept as they are.
    moving : numpy.ndarray of bool, shape (n_slices, rows, columns)
        The body, which moves with the heart inside a still outline.
    fill_signal : numpy.ndarray, shape (n_frames,)
        Signal of the tissue around the heart, which continues past the body
        outline as the heart moves.
    centres_px : numpy.ndarray, shape (n_slices, 2)
        (row, column) of the LV axis in each slice: the section grows or
        shrinks about it with through-plane motion, and turns about it.
    motion : dict
        From ``draw_motion``.

    Returns
    -------
    numpy.ndarray
        Moved signal, same shape and dtype as ``signal``.
    """
    out = np.array(signal, copy=True)
    n_frames, n_slices = signal.shape[:2]
    for k in range(n_slices):
        body = moving[k]
        for t in range(n_frames):
            shift = motion["shift_px"][t, k]
            z = motion["through_plane_mm"][t, k]
            turn = np.radians(motion["turn_deg"][t, k]) if "turn_deg" in motion else 0.0
            if not np.any(shift) and z == 0.0 and turn == 0.0:
                continue
            scale = 1.0 - SECTION_SCALE_PER_MM * z
            image = np.where(body, signal[t, k], fill_signal[t])
            centre = np.asarray(centres_px[k], dtype=float)
            # out(x) = image(c + R^T (x - c - shift) / scale): the section scaled and turned about the LV axis, moved.
            if turn == 0.0:  # the diagonal form: the other kinds' resampling, exactly
                back = np.full(2, 1.0 / scale)
                offset = centre - (centre + shift) / scale
            else:
                back = np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]]) / scale
                offset = centre - back @ (centre + shift)
            moved = ndimage.affine_transform(image, back, offset=offset, order=1, mode="nearest")
            out[t, k] = np.where(body, moved * (1.0 - SIGNAL_CHANGE_PER_MM * abs(z)), signal[t, k])
    return out

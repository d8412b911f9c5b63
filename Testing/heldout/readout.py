"""The held-out saturation-recovery readout: sequence design, per-line signal tables and the Mz history.

Sequence (one study)
--------------------
Each heartbeat holds ``slots_per_rr`` saturation-readout blocks ("slots"), one
per slice.  A slot starts with a saturation pulse over a slab that covers all
slices, which leaves ``(1 - efficiency)`` of Mz; after the recovery delay the
spoiled gradient-echo readout plays ``dummy_pulses`` then one pulse per
acquired k-space line, one TR apart.  The saturation time TS runs from the
saturation pulse to the k-space centre line, so the recovery delay before the
first pulse is ``TS - (dummy_pulses + centre_index) * TR``.

* k-space: ``phase_lines = matrix * phase_resolution`` lines, of which
  partial Fourier keeps the last ``partial_fourier`` fraction (the early,
  negative lines are missing and zero-filled) and parallel imaging every
  ``acceleration``-th; linear ordering sweeps them from the most negative,
  centric ordering goes outwards from the centre.  A line that parallel
  imaging skips takes the modulation of the nearest acquired line.
* Slice profile: a Hann-windowed sinc excitation of time-bandwidth product
  ``rf_time_bandwidth``; in the small-tip approximation its flip angle across
  the slice is the Fourier transform of the pulse envelope.  The signal is
  integrated over ``PROFILE_POSITIONS`` bands of the half profile (it is
  symmetric); each band has its own flip angle and its own Mz history.
* Every pulse is simulated by the extended phase graph (``epg``), with
  imperfect RF spoiling and diffusion damping.

Signal tables
-------------
For one tissue the readout is affine in the Mz it starts from, so the EPG is
run once from Mz = 0 (with recovery: the offset) and once from Mz = 1 (no
recovery: the slope) on a grid of concentrations ``C = c_max * u**2`` (dense
at low C, where the signal bends most), and interpolated by a cubic spline in
``u``.  Each line's signal includes ``exp(-TE * R2*)``.  The relaxation rates
are ``R1 = 1/T1 + r1 C``, ``R2 = 1/T2 + r2 C``, ``R2* = R2*_0 + r2* C`` (at
least R2).

Mz history
----------
Mz is carried from beat to beat for every slice and every slice-profile band:
own saturation pulse (with inflow of unsaturated blood for the blood pools),
recovery, the readout (offset + slope * Mz), recovery, the saturation pulses
of the other slots (which reach this slice as well), recovery to the next
own saturation pulse one frame interval later.  The first frame starts from
the steady state of this cycle without contrast.
"""

from dataclasses import dataclass, asdict
from functools import lru_cache

import numpy as np
from scipy.interpolate import CubicSpline

from . import ranges
from .epg import spoiled_readout

#: Free recovery kept between the saturation pulse and the first readout pulse
#: at least, s (project choice: the saturation pulse's crusher).
MIN_RECOVERY_S = 0.005
#: Dead time after each readout before the next slot's saturation pulse, s.
SLOT_GAP_S = 0.003
#: Share of the RR interval the saturation-readout blocks may fill
#: (project choice: the rest absorbs RR variation).
MAX_BLOCK_FRACTION = 0.9
#: Bands of the half slice profile (project choice; 4 bands change the
#: profile-averaged signal by < 0.5 % against 16).
PROFILE_POSITIONS = 4
#: Concentration grid points of the signal tables (project choice: the cubic
#: spline in u = sqrt(C / c_max) stays within 0.3 % of the largest line signal
#: of the direct EPG; checked in the tests).
TABLE_POINTS = 16


@dataclass
class Readout:
    """The saturation-recovery readout of one study (times in s, angles in degrees)."""

    field_strength_t: float
    saturation_time_s: float
    saturation_efficiency: float
    repetition_time_s: float
    echo_time_s: float
    flip_angle_deg: float
    b1_factor: float
    spoiling_increment_deg: float
    spoiler_cycles_per_pixel: float
    pixel_mm: float
    ordering: str
    matrix: int
    phase_resolution: float
    acceleration: int
    partial_fourier: float
    dummy_pulses: int
    slice_thickness_mm: float
    rf_time_bandwidth: float
    slots_per_rr: int
    trigger_delay_s: float
    ideal_spoiling: bool = False
    slice_profile: bool = True

    @property
    def phase_lines(self):
        """Phase-encoding lines of full k-space (even)."""
        return int(2 * round(0.5 * self.matrix * self.phase_resolution))

    @property
    def line_k(self):
        """k-space index (0 = centre) of each acquired line, in acquisition order."""
        n = self.phase_lines
        first = -int(round((self.partial_fourier - 0.5) * n))
        k = np.arange(first, n // 2)
        k = k[k % self.acceleration == 0]
        if self.ordering == "centric":
            return k[np.lexsort((k, np.abs(k)))]
        return np.sort(k)

    @property
    def n_lines(self):
        return int(self.line_k.size)

    @property
    def centre_index(self):
        """0-based position of the k-space centre among the acquired lines."""
        return int(np.flatnonzero(self.line_k == 0)[0])

    @property
    def n_pulses(self):
        return int(self.dummy_pulses + self.n_lines)

    @property
    def first_pulse_s(self):
        """Saturation pulse to the first readout pulse, s."""
        return self.saturation_time_s - (self.dummy_pulses + self.centre_index) * self.repetition_time_s

    @property
    def readout_end_s(self):
        """Saturation pulse to one TR after the last readout pulse, s."""
        return self.first_pulse_s + self.n_pulses * self.repetition_time_s

    @property
    def slot_s(self):
        """One saturation-readout block, s."""
        return self.readout_end_s + SLOT_GAP_S

    @property
    def block_s(self):
        """Trigger to the end of the last slot of a heartbeat, s."""
        return self.trigger_delay_s + self.slots_per_rr * self.slot_s

    def profile(self):
        """Relative flip angle and weight of each slice-profile band (half profile, symmetric)."""
        if not self.slice_profile:
            return np.ones(1), np.ones(1)
        return windowed_sinc_profile(self.rf_time_bandwidth)

    def kspace_modulation_index(self, n_rows):
        """Acquired line whose signal each reconstructed k-space row carries, -1 where zero-filled.

        Rows are in ``numpy.fft`` order (row q is k = q for q < n/2, q - n
        otherwise).  A row inside the acquired extent takes the nearest
        acquired line (parallel imaging); rows outside it (partial Fourier,
        phase resolution) are zero.
        """
        k_rows = np.rint(np.fft.fftfreq(n_rows) * n_rows).astype(int)
        acquired = self.line_k
        order = np.argsort(acquired)
        sorted_k = acquired[order]
        position = np.clip(np.searchsorted(sorted_k, k_rows), 1, sorted_k.size - 1)
        left, right = sorted_k[position - 1], sorted_k[position]
        nearest = np.where(np.abs(k_rows - left) <= np.abs(right - k_rows), position - 1, position)
        half = self.phase_lines // 2
        first = -int(round((self.partial_fourier - 0.5) * self.phase_lines))
        inside = (k_rows >= first) & (k_rows < half)
        return np.where(inside, order[nearest], -1)

    def as_record(self):
        """JSON-ready description, with the derived timing and k-space figures."""
        record = asdict(self)
        record.update(phase_lines=self.phase_lines, n_lines=self.n_lines, centre_pulse=self.dummy_pulses
                      + self.centre_index + 1, first_pulse_s=self.first_pulse_s, readout_end_s=self.readout_end_s,
                      slot_s=self.slot_s, block_s=self.block_s)
        return record


@lru_cache(maxsize=4096)
def _profile_of(time_bandwidth, n_positions):
    t = np.linspace(-0.5, 0.5, 161)
    envelope = np.sinc(time_bandwidth * t) * (0.5 + 0.5 * np.cos(2.0 * np.pi * t))
    position = np.linspace(0.0, 1.5, 241)  # in slice thicknesses
    response = np.abs(np.cos(2.0 * np.pi * np.outer(position * time_bandwidth, t)) @ envelope)
    response /= response[0]
    extent = position[np.argmax(response < 0.02)]
    band = extent / n_positions
    centres = (np.arange(n_positions) + 0.5) * band
    return tuple(np.interp(centres, position, response)), tuple(np.full(n_positions, 2.0 * band))


def windowed_sinc_profile(time_bandwidth, n_positions=PROFILE_POSITIONS):
    """Flip-angle profile of a Hann-windowed sinc pulse, sampled in bands of the half slice.

    Small-tip approximation: the profile is the Fourier transform of the
    envelope ``sinc(TBW t) (0.5 + 0.5 cos(2 pi t))``, ``|t| <= 1/2``; the
    nominal slice (FWHM) spans frequencies ``+-TBW / 2``.

    Returns
    -------
    relative_flip : numpy.ndarray, (n_positions,)
        Flip angle at the band centre / flip at the slice centre.
    weight : numpy.ndarray, (n_positions,)
        Band width in units of the nominal slice thickness, both halves
        counted (sums to the profile's extent, a little over 1).
    """
    relative, weight = _profile_of(float(time_bandwidth), int(n_positions))
    return np.array(relative), np.array(weight)


def _feasible(readout, rr_s):
    return (readout.first_pulse_s >= MIN_RECOVERY_S) and (readout.block_s <= MAX_BLOCK_FRACTION * rr_s)


def design_readout(rng, field_strength_t, rr_s, pixel_mm, matrix, **fixed):
    """Draw the readout of one study, keeping it feasible at the study's heart rate.

    The sequence parameters are drawn from ``ranges.RANGES``; then the drawn
    (acceleration, partial Fourier) pair, or else the first of the other pairs
    in a random order, that fits the saturation time and the RR interval is
    kept.  If none fits, the fastest pair with 3 slots is used and the
    scanner will skip triggers (``circulation.frame_triggers``).

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    field_strength_t : float
        Field strength, T.
    rr_s : float
        Typical RR interval, s.
    pixel_mm : float
        In-plane pixel size, mm.
    matrix : int
        Reconstructed matrix (phase direction).
    **fixed
        ``Readout`` fields to set instead of drawing them.

    Returns
    -------
    Readout
    """
    draw = ranges.draw
    values = {
        "field_strength_t": float(field_strength_t),
        "saturation_time_s": draw(rng, "saturation_time_s"),
        "saturation_efficiency": draw(rng, "saturation_efficiency"),
        "repetition_time_s": draw(rng, "repetition_time_s"),
        "echo_time_s": draw(rng, "echo_time_s"),
        "flip_angle_deg": draw(rng, "flip_angle_deg"),
        "b1_factor": draw(rng, "b1_factor"),
        "spoiling_increment_deg": float(draw(rng, "rf_spoiling_increment_deg")),
        "spoiler_cycles_per_pixel": draw(rng, "spoiler_cycles_per_pixel"),
        "pixel_mm": float(pixel_mm),
        "ordering": str(draw(rng, "ordering")),
        "matrix": int(matrix),
        "phase_resolution": float(draw(rng, "phase_resolution")),
        "acceleration": int(draw(rng, "acceleration")),
        "partial_fourier": float(draw(rng, "partial_fourier")),
        "dummy_pulses": int(draw(rng, "dummy_pulses")),
        "slice_thickness_mm": draw(rng, "slice_thickness_mm"),
        "rf_time_bandwidth": draw(rng, "rf_time_bandwidth"),
        "slots_per_rr": int(draw(rng, "slots_per_rr")),
        "trigger_delay_s": draw(rng, "trigger_delay_s"),
    }
    values["echo_time_s"] = min(values["echo_time_s"], 0.8 * values["repetition_time_s"])
    values.update(fixed)
    readout = Readout(**values)
    if _feasible(readout, rr_s) or {"acceleration", "partial_fourier"} <= set(fixed):
        return readout
    pairs = [(r, pf) for r in ranges.RANGES["acceleration"]["choices"]
             for pf in ranges.RANGES["partial_fourier"]["choices"]]
    for index in rng.permutation(len(pairs)):
        for slots in sorted({values["slots_per_rr"], 3}, reverse=True):
            candidate = Readout(**dict(values, acceleration=pairs[index][0], partial_fourier=pairs[index][1],
                                       slots_per_rr=fixed.get("slots_per_rr", slots)))
            if _feasible(candidate, rr_s):
                return candidate
    fastest = dict(values, acceleration=max(ranges.RANGES["acceleration"]["choices"]),
                   partial_fourier=min(ranges.RANGES["partial_fourier"]["choices"]),
                   slots_per_rr=fixed.get("slots_per_rr", 3))
    return Readout(**fastest)


# ---------------------------------------------------------------------------
# Signal tables
# ---------------------------------------------------------------------------

@dataclass
class Relaxation:
    """Relaxation of one tissue for one subject (s, 1/s, 1/s/mM, mm^2/s)."""

    t1_s: float
    t2_s: float
    r2star_native_per_s: float
    r1_per_s_per_mM: float
    r2_per_s_per_mM: float
    r2star_per_s_per_mM: float
    diffusion_mm2_per_s: float


class SignalTable(object):
    """Per-line readout signal of one tissue and readout as a function of concentration.

    Attributes
    ----------
    c_max_mM : float
        Top of the concentration grid, mM.
    offset, slope : numpy.ndarray, complex, (G, P, L)
        Signal of each line (units of M0) for Mz = 0 and per unit of starting
        Mz, on the grid points (G), profile bands (P) and lines (L).
    end_offset, end_slope : numpy.ndarray, (G, P)
        Mz one TR after the last pulse, affine in the starting Mz likewise.
    """

    def __init__(self, c_max_mM, offset, slope, end_offset, end_slope):
        self.c_max_mM = float(c_max_mM)
        self.offset, self.slope = offset, slope
        self.end_offset, self.end_slope = end_offset, end_slope
        self._u = np.linspace(0.0, 1.0, offset.shape[0])

    def spline(self, values):
        """Cubic spline over ``u = sqrt(C / c_max)`` of per-grid-point ``values`` (G, ...)."""
        return CubicSpline(self._u, values, axis=0)

    def u_of(self, conc_mM):
        """Spline coordinate of concentrations (clipped to the grid), array like ``conc_mM``."""
        return np.sqrt(np.clip(np.asarray(conc_mM, dtype=float) / self.c_max_mM, 0.0, 1.0))


#: Largest EPG batch (columns) of one call (project choice: bounds memory;
#: jobs are grouped by pulse count, which does not change any result).
MAX_BATCH_COLUMNS = 16384


def _grid_concentrations(c_max, n_grid):
    return max(float(c_max), 1e-3) * np.linspace(0.0, 1.0, n_grid) ** 2


def _job_columns(readout, relax, c_max, n_grid):
    """EPG columns of one job: every grid point x profile band x (offset run, slope run)."""
    relative, _ = readout.profile()
    conc = _grid_concentrations(c_max, n_grid)
    g, p, run = (a.ravel() for a in np.meshgrid(np.arange(n_grid), np.arange(relative.size), np.arange(2),
                                                indexing="ij"))
    dk_per_mm = 2.0 * np.pi * readout.spoiler_cycles_per_pixel / readout.pixel_mm
    return {
        "flip": np.deg2rad(readout.flip_angle_deg * readout.b1_factor) * relative[p],
        "r1": (1.0 / relax.t1_s + relax.r1_per_s_per_mM * conc)[g],
        "r2": (1.0 / relax.t2_s + relax.r2_per_s_per_mM * conc)[g],
        "tr": np.full(g.size, readout.repetition_time_s),
        "increment": np.full(g.size, np.deg2rad(readout.spoiling_increment_deg)),
        "pulses": np.full(g.size, readout.n_pulses),
        "z0": run.astype(float),
        "recovery": 1.0 - run,
        "diffusion": np.full(g.size, relax.diffusion_mm2_per_s * dk_per_mm ** 2 * readout.repetition_time_s),
    }


def _table_of_job(readout, relax, c_max, n_grid, signal, final_z):
    """``SignalTable`` from one job's EPG output (columns in ``_job_columns`` order)."""
    n_profile = readout.profile()[0].size
    conc = _grid_concentrations(c_max, n_grid)
    r2 = 1.0 / relax.t2_s + relax.r2_per_s_per_mM * conc
    r2star = np.maximum(relax.r2star_native_per_s + relax.r2star_per_s_per_mM * conc, r2)
    lines = signal[:, readout.dummy_pulses:readout.n_pulses].reshape(n_grid, n_profile, 2, readout.n_lines)
    lines = lines * np.exp(-readout.echo_time_s * r2star)[:, None, None, None]
    ends = final_z.reshape(n_grid, n_profile, 2)
    return SignalTable(conc[-1], lines[:, :, 0], lines[:, :, 1], ends[:, :, 0], ends[:, :, 1])


def signal_tables(jobs, n_grid=TABLE_POINTS):
    """Per-line signal tables of several (readout, relaxation, c_max) jobs.

    The EPG runs in batches of jobs with similar pulse counts (each column is
    independent, so the grouping changes no result).

    Parameters
    ----------
    jobs : list of (Readout, Relaxation, float)
        Readout, tissue relaxation and the highest concentration needed (mM).
    n_grid : int, optional
        Concentration grid points per table.

    Returns
    -------
    list of SignalTable
        One per job, in the order given.
    """
    ideal = {readout.ideal_spoiling for readout, _, _ in jobs}
    if len(ideal) > 1:
        raise ValueError("jobs of one signal_tables call must share ideal_spoiling")
    tables = [None] * len(jobs)
    order = sorted(range(len(jobs)), key=lambda index: jobs[index][0].n_pulses)
    while order:
        group, size = [], 0
        while order:
            columns = _job_columns(*jobs[order[0]], n_grid)
            if group and size + columns["z0"].size > MAX_BATCH_COLUMNS:
                break
            group.append((order.pop(0), columns))
            size += columns["z0"].size
        batch = {key: np.concatenate([columns[key] for _, columns in group]) for key in group[0][1]}
        signal, final_z = spoiled_readout(batch["flip"], batch["r1"], batch["r2"], batch["tr"], batch["increment"],
                                          batch["pulses"], batch["z0"], batch["recovery"], batch["diffusion"],
                                          ideal_spoiling=ideal.pop() if len(ideal) == 1 else False)
        ideal = {readout.ideal_spoiling for readout, _, _ in jobs}
        start = 0
        for index, columns in group:
            rows = slice(start, start + columns["z0"].size)
            start = rows.stop
            tables[index] = _table_of_job(*jobs[index], n_grid, signal[rows], final_z[rows])
    return tables


# ---------------------------------------------------------------------------
# Mz history across heartbeats
# ---------------------------------------------------------------------------

def other_slot_events(slot, slots_per_rr, slot_s, cycle_s):
    """Times (s after this slot's own saturation pulse) of the other slots' saturation pulses.

    Parameters
    ----------
    slot : int
        This slice's slot in the heartbeat.
    slots_per_rr : int
        Slots per heartbeat.
    slot_s : float
        Slot duration, s.
    cycle_s : numpy.ndarray, (F,)
        Time from each frame's own saturation pulse to the next frame's, s.

    Returns
    -------
    numpy.ndarray, (F, slots_per_rr - 1)
        Later slots of the same beat, then the earlier slots of the next beat.
    """
    cycle_s = np.asarray(cycle_s, dtype=float)
    later = [np.full(cycle_s.shape, (other - slot) * slot_s) for other in range(slot + 1, slots_per_rr)]
    earlier = [cycle_s - (slot - other) * slot_s for other in range(slot)]
    events = later + earlier
    if not events:
        return np.zeros((cycle_s.size, 0))
    return np.stack(events, axis=1)


def readout_start_mz(r1_per_s, end_offset, end_slope, first_pulse_s, readout_end_s, events_s, cycle_s,
                     efficiency, inflow_fraction):
    """Mz at the first readout pulse of every frame, for every slice-profile band.

    Parameters
    ----------
    r1_per_s : numpy.ndarray, (U, F)
        R1 of each unit during each frame's heartbeat, 1/s.
    end_offset, end_slope : numpy.ndarray, (U, F, P)
        Mz after the readout, affine in the Mz at its start (from the tables at
        each frame's concentration).
    first_pulse_s, readout_end_s : numpy.ndarray, (U,)
        Own saturation pulse to the first readout pulse / to the end of the
        readout, s.
    events_s : numpy.ndarray, (U, F, E)
        Other slots' saturation pulses, s after the own one (non-decreasing,
        all within the cycle; pad with ``cycle_s`` and zero efficiency).
    cycle_s : numpy.ndarray, (U, F)
        Own saturation pulse to the next frame's, s.
    efficiency : numpy.ndarray, (U, E + 1)
        Efficiency of the own saturation pulse, then of each event.
    inflow_fraction : numpy.ndarray, (U,)
        Share of the unit replaced by unsaturated blood (fully relaxed, Mz = 1)
        between its own saturation pulse and the readout (0 for tissue).

    Returns
    -------
    numpy.ndarray, (U, F, P)
        Mz (units of M0) at the first readout pulse.
    """
    n_units, n_frames, n_profile = end_offset.shape
    own = efficiency[:, :1]
    inflow = inflow_fraction[:, None]

    def cycle(m, frame):
        r1 = r1_per_s[:, frame][:, None]
        after_sat = (1.0 - inflow) * (1.0 - own) * m + inflow
        start = 1.0 - (1.0 - after_sat) * np.exp(-r1 * first_pulse_s[:, None])
        z = end_offset[:, frame] + end_slope[:, frame] * start
        t = readout_end_s[:, None]
        for event in range(events_s.shape[2]):
            when = events_s[:, frame, event][:, None]
            z = (1.0 - (1.0 - z) * np.exp(-r1 * (when - t))) * (1.0 - efficiency[:, event + 1][:, None])
            t = when
        return start, 1.0 - (1.0 - z) * np.exp(-r1 * (cycle_s[:, frame][:, None] - t))

    # Steady state of the first frame's cycle (pre-contrast): the cycle is affine in m.
    _, at_zero = cycle(np.zeros((n_units, n_profile)), 0)
    _, at_one = cycle(np.ones((n_units, n_profile)), 0)
    m = at_zero / (1.0 - (at_one - at_zero))
    starts = np.empty((n_units, n_frames, n_profile))
    for frame in range(n_frames):
        starts[:, frame], m = cycle(m, frame)
    return starts

"""The fit window: the frames a Fermi fit sees.

Both fits take the frames up to ``fit_end_s``.  ``first_pass_end_s`` reads the
end of the bolus's first pass off the AIF, the batched fit's default window:
the Fermi shape models neither the recirculation nor the slow interstitial
washout, and fitting them lowers the fitted flow.
"""

import numpy as np

from ..errors import AIAIFInputError
from .model import FERMI_PARAMETERS, FERMI_UPPER_BOUNDS, _cell_edges, _validate_aif

#: Fewest frames a fit window (``fit_end_s``) must hold: the four Fermi
#: parameters plus one degree of freedom for the residual (project choice).
MIN_FIT_FRAMES = 5

#: Longest time after the AIF's peak the first-pass fit window reaches, s
#: (``first_pass_end_s``, step 3).  Project choice, by measurement across
#: three tissue models with the true AIF (12 phantoms each, model
#: conversion; segment bias / SD): capillary-transit (AATH) -5.2 % / 15.5 %
#: without the limit, +2.5 / 9.7 at 5 s, -1.2 / 10.3 at 6 s, -3.2 / 12.2 at
#: 8 s; two-compartment -28.8 / 13.3 without, -23.2 / 10.1 at 5 s, -25.9 /
#: 10.9 at 6 s; the held-out distributed-parameter model
#: (Testing/heldout, 8 phantoms) -3.3 / 66 without, +8.2 / 69 at 5 s,
#: +4.0 / 66 at 6 s, +0.2 / 65 at 8 s.  6 s is the fit's largest tissue
#: delay (5 s) plus about one stress heartbeat.
FIRST_PASS_LAG_HORIZON_S = 6.0


def _half_maximum_crossings(times, aif, peak):
    """Interpolated times at which the AIF crosses half its peak before and after ``peak``."""
    half = 0.5 * aif[peak]
    below_before = np.flatnonzero(aif[:peak] < half)
    if below_before.size:
        i = below_before[-1]
        rise = times[i] + (half - aif[i]) * (times[i + 1] - times[i]) / (aif[i + 1] - aif[i])
    else:
        rise = times[0]
    below_after = np.flatnonzero(aif[peak:] < half)
    if not below_after.size:
        return rise, None, None
    j = peak + below_after[0]
    fall = times[j - 1] + (aif[j - 1] - half) * (times[j] - times[j - 1]) / (aif[j - 1] - aif[j])
    return rise, fall, j


def first_pass_end_s(times_s, aif_mM):
    """End of the AIF's first pass, s: where a Fermi fit should stop.

    Fermi-constrained deconvolution is fitted over the first pass of the bolus
    only, cutting the curves before the recirculation [JeroschHerold1998]: the
    Fermi shape models neither the second pass nor the slow late washout of
    contrast from the interstitium, and fitting them drags the fitted flow
    down.  The rule here reads the end of the first pass off the AIF alone:

    1. Find the AIF's peak and the times ``t_rise`` and ``t_fall`` at which it
       crosses half of its peak before and after it (linear interpolation
       between frames), so ``width = t_fall - t_rise`` is its full width at
       half maximum (FWHM).
    2. The AIF's first pass ends at its lowest frame between ``t_fall`` and
       ``t_fall + width``: the trough before the recirculation when the
       recirculation begins within that span, otherwise (the AIF still
       falling) the frame at ``t_fall + width``.
    3. The window ends at that frame, but no later than the last frame at
       most ``FIRST_PASS_LAG_HORIZON_S`` (6 s) after the AIF's peak.
    4. It ends no earlier than the first frame at least
       ``FERMI_UPPER_BOUNDS`` delay (5 s) after the AIF's peak.

    The search span of step 2 is one FWHM after the half-maximum fall: for a
    symmetric bolus, ``t_fall + FWHM`` is the peak + 1.5 FWHM (3.5 standard
    deviations of a Gaussian bolus), by which time a lone first pass has all
    but returned to baseline, so anything after it is recirculation or
    washout.  Taking the lowest frame in the span (not the first frame that
    rises) keeps the rule stable against noise on the AIF.  Step 3 limits the
    lags a broad bolus lets the fit see: the Fermi function stands for the
    intravascular transit and early extraction, while lags long after the
    bulk of the bolus are the interstitial exchange, which it cannot follow
    (it decays to zero) and which then pulls the fitted onset height down.
    Step 4 keeps the window consistent with the fit's own delay bound: a
    tissue curve lags the AIF by up to that delay, so for a narrow bolus
    whose trough comes only a beat or two after its peak, the tissue's
    response to the peak is still inside the window.  The rule uses only the
    AIF, so it applies unchanged to measured and corrected AIFs.

    With the true AIF on the noise-free segment curves of the simulator's
    phantoms (8 per tissue model, the protocol of
    ``Testing/benchmarks/fermi_vs_tissue_model.py``), the reference fit over
    this window gives fitted / true MBF of 1.04, 1.03, 0.91 below 1.4, at
    2.4-3.2 and at 3.2-4.1 mL/min/g for the capillary-transit tissue model
    (whole curves: 1.06, 0.74, 0.63) and 0.89, 0.73, 0.66 for the
    two-compartment model (whole curves: 0.79, 0.55, 0.48).  The window is
    longer for broad boluses, whose fits then read flows lower.

    Parameters
    ----------
    times_s : array_like, shape (n_frames,)
        Frame times, s, strictly increasing.
    aif_mM : array_like, shape (n_frames,)
        Arterial concentration, mM, 0 before contrast arrival.

    Returns
    -------
    float
        Time of the last frame of the first pass, s (on the clock of
        ``times_s``); the last frame time if the AIF has not fallen below half
        its peak by the end of the acquisition.

    Raises
    ------
    AIAIFInputError
        For invalid frame times or AIF (see ``convolution_matrix``), or an AIF
        whose peak is not positive.
    """
    times, aif = _validate_aif(times_s, aif_mM)
    peak = int(np.argmax(aif))
    if aif[peak] <= 0:
        raise AIAIFInputError("The AIF has no positive peak; pass the arterial concentration in mM, rising "
                              "after contrast arrival.")
    rise, fall, first_below = _half_maximum_crossings(times, aif, peak)
    horizon = times[times <= times[peak] + FIRST_PASS_LAG_HORIZON_S][-1]
    latest_response = np.flatnonzero(times >= times[peak] + FERMI_UPPER_BOUNDS[FERMI_PARAMETERS.index("delay_s")])
    earliest_end = times[latest_response[0]] if latest_response.size else times[-1]
    if fall is None:
        return float(max(horizon, earliest_end))
    search = np.flatnonzero((times >= fall) & (times <= fall + (fall - rise)))
    if not search.size:
        search = np.array([first_below])
    trough = times[search[np.argmin(aif[search])]]
    return float(max(min(trough, horizon), earliest_end))


def _window_frames(times, fit_end_s, aif):
    """Number of leading frames at or before ``fit_end_s`` (all frames for None), validated."""
    if fit_end_s is None:
        return times.size
    try:
        end = float(fit_end_s)
    except (TypeError, ValueError):
        end = np.nan
    if np.isnan(end):
        raise AIAIFInputError("The end of the fit window must be a time in seconds (or None), got {!r}; "
                              "pass e.g. first_pass_end_s(times_s, aif_mM).".format(fit_end_s))
    n_window = int(np.searchsorted(times, end, side="right"))
    if n_window < MIN_FIT_FRAMES:
        raise AIAIFInputError("The fit window ending at {:.1f} s holds {} frames, fewer than {}; end it later "
                              "(the frames run from {:.1f} to {:.1f} s).".format(end, n_window, MIN_FIT_FRAMES,
                                                                                 times[0], times[-1]))
    if not np.any(aif[:n_window] != 0):
        raise AIAIFInputError("The AIF is zero at every frame of the fit window ending at {:.1f} s; end the "
                              "window after contrast arrival.".format(end))
    return n_window


def _window_convolution(times, matrix, edges, n_window):
    """``convolution_matrix`` and ``lag_cell_edges`` of the first ``n_window`` frames.

    Row ``i`` of the full matrix only sees lags up to ``t_i - t_0`` and only
    AIF samples up to ``t_i``, so the window's matrix is the full one cut to
    its rows and to the cells its span needs.
    """
    n_cells = _cell_edges(times[:n_window], edges[1] - edges[0]).size - 1
    return matrix[:n_window, :n_cells], edges[:n_cells + 1]

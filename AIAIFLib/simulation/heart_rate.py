"""Heart-rate model: frame times of an ECG-triggered acquisition, one frame per heartbeat."""

import numpy as np


def simulate_frame_times(rng, n_curves, n_frames, heart_rate_bpm, rr_variation, rr_drift,
                         missed_trigger_probability=0.0):
    """Frame times of an ECG-triggered acquisition with one frame per heartbeat.

    The RR interval of beat ``i`` is ``RR * (1 + drift * i / n) * (1 + e_i)``
    with ``e_i`` a first-order autoregressive series (correlation 0.5) of
    standard deviation ``rr_variation``; a missed trigger doubles an interval.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    n_curves, n_frames : int
        Number of acquisitions and frames per acquisition.
    heart_rate_bpm, rr_variation, rr_drift : array_like, shape (n_curves,)
        Mean heart rate (beats/min), beat-to-beat SD (fraction) and total
        linear drift of the RR interval over the acquisition (fraction).
    missed_trigger_probability : float
        Probability per frame of a missed trigger.

    Returns
    -------
    numpy.ndarray, shape (n_curves, n_frames)
        Frame times in s, starting at 0, strictly increasing.
    """
    rr_s = 60.0 / np.asarray(heart_rate_bpm, dtype=float)[:, None]
    innovations = rng.standard_normal((n_curves, n_frames - 1))
    ar = np.empty_like(innovations)
    ar[:, 0] = innovations[:, 0]
    rho = 0.5
    for i in range(1, n_frames - 1):
        ar[:, i] = rho * ar[:, i - 1] + np.sqrt(1.0 - rho ** 2) * innovations[:, i]
    fraction = np.arange(n_frames - 1)[None, :] / max(n_frames - 1, 1)
    intervals = rr_s * (1.0 + np.asarray(rr_drift)[:, None] * fraction)
    intervals = intervals * np.clip(1.0 + np.asarray(rr_variation)[:, None] * ar, 0.6, 1.6)
    missed = rng.random((n_curves, n_frames - 1)) < missed_trigger_probability
    intervals = np.where(missed, 2.0 * intervals, intervals)
    times = np.zeros((n_curves, n_frames))
    times[:, 1:] = np.cumsum(intervals, axis=1)
    return times

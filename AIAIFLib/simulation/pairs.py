"""Paired saturated / unsaturated AIFs with their ground truth: the network's training and test curves.

``simulate_aif_pairs`` draws the parameters (``parameters.draw_aif_parameters``),
the frame times (``heart_rate``) and the noise from one seeded generator, in
that order, and evaluates the curves in chunks.
"""

import numpy as np

from .. import constants as K
from ..sequence import linear_reference_signal
from .aif_shapes import aif_concentration_mM
from .heart_rate import simulate_frame_times
from .parameters import AIF_PAIR_RANGES, draw_aif_parameters
from .signals import blood_signal


class AIFPairs(object):
    """Paired saturated and reference AIFs with their ground truth.

    Attributes
    ----------
    times_s : numpy.ndarray, (n, n_frames)
        Frame times, s.
    conc_mM : numpy.ndarray, (n, n_frames)
        True blood concentration at the frame times, mM.
    saturated : numpy.ndarray, (n, n_frames)
        Saturated AIF as the standard slices record it, with noise (signal units).
    saturated_noiseless : numpy.ndarray, (n, n_frames)
        The same without noise.
    reference : numpy.ndarray, (n, n_frames)
        Unsaturated reference ``S0 * (1 + r1 * T1 * C)`` (noise-free), the
        network's target.
    baseline_signal : numpy.ndarray, (n,)
        Pre-contrast signal S0 shared by both curves.
    params : dict of numpy.ndarray, each (n,)
        Every parameter drawn (``draw_aif_parameters``).
    """

    def __init__(self, times_s, conc_mM, saturated, saturated_noiseless, reference, baseline_signal, params):
        self.times_s = times_s
        self.conc_mM = conc_mM
        self.saturated = saturated
        self.saturated_noiseless = saturated_noiseless
        self.reference = reference
        self.baseline_signal = baseline_signal
        self.params = params

    def __len__(self):
        return self.times_s.shape[0]


def simulate_aif_pairs(n, n_frames=70, seed=0, field_strength_t=None, chunk_size=20000, ranges=None):
    """Simulate ``n`` paired saturated / unsaturated AIFs.

    Parameters
    ----------
    n : int
        Number of pairs.
    n_frames : int, optional
        Frames (heartbeats) per curve.
    seed : int or numpy.random.Generator, optional
        Seed for reproducibility (the same seed gives identical pairs).
    field_strength_t : {None, 1.5, 3.0}, optional
        Fix the field strength, T; ``None`` draws both.
    chunk_size : int, optional
        Curves simulated at a time (bounds memory; does not change results).
    ranges : dict, optional
        Parameter ranges: ``AIF_PAIR_RANGES`` (default) or ``BROAD_PAIR_RANGES``.

    Returns
    -------
    AIFPairs
        Curves on the frame times of a heart-rate model; see ``AIFPairs``.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ranges = AIF_PAIR_RANGES if ranges is None else ranges
    params = draw_aif_parameters(rng, n, field_strength_t, ranges)
    times = simulate_frame_times(rng, n, n_frames, params["heart_rate_bpm"], params["rr_variation"],
                                 params["rr_drift"], ranges["missed_trigger_probability"])
    noise = rng.standard_normal((n, n_frames))
    conc = np.empty((n, n_frames))
    sat = np.empty((n, n_frames))
    for start in range(0, n, chunk_size):
        rows = slice(start, min(start + chunk_size, n))
        sub = {key: value[rows] for key, value in params.items()}
        conc[rows] = aif_concentration_mM(times[rows], sub)
        sat[rows] = blood_signal(conc[rows], sub)
    baseline = blood_signal(np.zeros((n, 1)), params)[:, 0]
    reference = linear_reference_signal(baseline[:, None], conc, params["t1_blood_s"][:, None],
                                        K.R1_RELAXIVITY_PER_S_PER_MM)
    noise_sd = params["relative_noise_sd"] * sat.max(axis=1)
    noisy = sat + noise_sd[:, None] * noise
    return AIFPairs(times, conc, noisy, sat, reference, baseline, params)

"""Signal intensity to contrast-agent concentration."""

import numpy as np

from . import constants as K
from .errors import AIAIFInputError


def baseline_signal(signal, n_baseline_frames):
    """Pre-contrast signal: mean of the first frames.

    Parameters
    ----------
    signal : array_like, shape (..., n_frames)
        Signal curves (signal units), time on the last axis.
    n_baseline_frames : int
        Number of leading frames before contrast arrival to average.

    Returns
    -------
    numpy.ndarray, shape (...)
        Baseline signal S(0).
    """
    signal = np.asarray(signal, dtype=float)
    if not 1 <= n_baseline_frames <= signal.shape[-1]:
        raise AIAIFInputError("The number of baseline frames must be between 1 and the number of frames ({}); "
                              "choose frames before contrast arrival.".format(signal.shape[-1]))
    return signal[..., :n_baseline_frames].mean(axis=-1)


def linear_concentration_mM(signal, baseline, lv_baseline, t1_blood_s, r1_per_s_per_mM=K.R1_RELAXIVITY_PER_S_PER_MM):
    """Concentration from relative signal enhancement, the paper's conversion.

    ``C(t) = (S(t) - S(0)) / (r1 * T1b * S_LV(0))`` [Scannell2022,
    "Quantification"]; for the AIF itself ``S(0) = S_LV(0)``.

    Parameters
    ----------
    signal : array_like, shape (..., n_frames)
        Signal curves (signal units).
    baseline : array_like, shape (...)
        Pre-contrast signal S(0) of each curve.
    lv_baseline : array_like
        Pre-contrast LV blood-pool signal S_LV(0).
    t1_blood_s : float
        Native T1 of blood T1b, s (1.736 s at 3 T, 1.435 s at 1.5 T).
    r1_per_s_per_mM : float, optional
        Relaxivity, 1/s/mM (4.5 for gadobutrol).

    Returns
    -------
    numpy.ndarray, shape (..., n_frames)
        Concentration, mM.
    """
    lv_baseline = np.asarray(lv_baseline, dtype=float)
    if np.any(~np.isfinite(lv_baseline)) or np.any(lv_baseline <= 0):
        raise AIAIFInputError("The pre-contrast LV blood-pool signal must be positive; check the LV blood-pool "
                              "segment and the baseline frames.")
    delta = np.asarray(signal, dtype=float) - np.asarray(baseline, dtype=float)[..., None]
    return delta / (r1_per_s_per_mM * t1_blood_s * lv_baseline[..., None])

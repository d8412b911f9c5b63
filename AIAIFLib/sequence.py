"""Signal model of the saturation-recovery spoiled gradient-echo perfusion sequence.

The signal equation is shared by the simulator (forward model) and by the
sequence-aware signal-to-concentration conversion (its inverse), so it lives in
one module of its own.

Model (shared/PHYSICS.md, "Signal model"):

1. A saturation pulse of efficiency ``eta`` leaves ``Mz = (1 - eta) * M0``.
2. Free recovery for the delay ``TD`` before the first readout pulse:
   ``Mz = M0 - (M0 - Mz) * exp(-TD * R1)``.
3. Spoiled FLASH readout, one pulse every ``TR``:
   ``Mz <- Mz * cos(alpha) * exp(-TR * R1) + M0 * (1 - exp(-TR * R1))``.
   The image contrast is set by the pulse that samples the k-space centre,
   pulse number ``n_c`` (1 for centric ordering, tens for linear ordering).
4. ``S = rho * sin(alpha) * Mz(before pulse n_c) * exp(-TE * R2*)``.

The saturation time ``TS`` is taken, as usual for perfusion sequences, as the
time from the saturation pulse to the k-space centre, so
``TD = TS - (n_c - 1) * TR``.  After ``n`` pulses the recursion has the closed
form ``Mz_n = Mss + (Mz_0 - Mss) * a**n`` with ``a = cos(alpha) exp(-TR R1)``
and the steady state ``Mss = M0 (1 - exp(-TR R1)) / (1 - a)``, so the model is
evaluated without a loop and broadcasts over any array of relaxation rates.

Relaxation with contrast agent (fast water exchange):
``R1 = 1 / T1_0 + r1 * C`` and ``R2* = R2*_0 + r2* * C`` with ``C`` in mM.
"""

import numpy as np

from .constants import (
    ECHO_TIME_S,
    FLIP_ANGLE_DEG,
    REPETITION_TIME_S,
    SATURATION_TIME_S,
)
from .errors import AIAIFInputError


def relaxation_rate_per_s(native_rate_per_s, relaxivity_per_s_per_mM, conc_mM):
    """Relaxation rate with contrast agent, 1/s.

    Parameters
    ----------
    native_rate_per_s : array_like
        Rate without contrast agent (1/T1_0 or R2*_0), 1/s.
    relaxivity_per_s_per_mM : array_like
        Relaxivity of the agent, 1/s/mM.
    conc_mM : array_like
        Concentration, mM.

    Returns
    -------
    numpy.ndarray
        ``native + relaxivity * conc``, 1/s (broadcast shape).
    """
    return np.asarray(native_rate_per_s) + np.asarray(relaxivity_per_s_per_mM) * np.asarray(conc_mM)


def saturation_recovery_flash_signal(
    r1_per_s,
    saturation_time_s=SATURATION_TIME_S,
    repetition_time_s=REPETITION_TIME_S,
    flip_angle_deg=FLIP_ANGLE_DEG,
    pulses_to_centre=1,
    saturation_efficiency=1.0,
    echo_time_s=ECHO_TIME_S,
    r2star_per_s=0.0,
    proton_density=1.0,
):
    """Signal of a saturation-recovery spoiled gradient-echo readout.

    All arguments broadcast against each other, so one call evaluates a whole
    batch of curves (e.g. ``r1_per_s`` of shape (n_curves, n_frames) with
    per-curve parameters of shape (n_curves, 1)).

    Parameters
    ----------
    r1_per_s : array_like
        Longitudinal relaxation rate R1, 1/s.
    saturation_time_s : array_like, optional
        Time from the saturation pulse to the k-space centre, s (default 0.1 s,
        the paper's standard slices).
    repetition_time_s : array_like, optional
        Readout repetition time TR, s.
    flip_angle_deg : array_like, optional
        Actual (not nominal) excitation flip angle, degrees.
    pulses_to_centre : array_like of int, optional
        Index (1-based) of the readout pulse that samples the k-space centre:
        1 for centric ordering, about half the phase-encoding lines for linear.
    saturation_efficiency : array_like, optional
        Fraction of Mz destroyed by the saturation pulse, 0-1.
    echo_time_s : array_like, optional
        Echo time TE, s.
    r2star_per_s : array_like, optional
        Transverse relaxation rate R2*, 1/s (0 ignores T2* loss).
    proton_density : array_like, optional
        Equilibrium magnetisation scale M0 (arbitrary signal units).

    Returns
    -------
    numpy.ndarray
        Signal in the units of ``proton_density``.

    Raises
    ------
    AIAIFInputError
        If the readout before the k-space centre is longer than the saturation
        time (negative recovery delay).
    """
    r1 = np.asarray(r1_per_s, dtype=float)
    n_c = np.asarray(pulses_to_centre, dtype=float)
    delay_s = np.asarray(saturation_time_s, dtype=float) - (n_c - 1.0) * np.asarray(repetition_time_s, dtype=float)
    if np.any(delay_s < 0):
        raise AIAIFInputError(
            "The readout before the k-space centre is longer than the saturation time; "
            "reduce the number of pulses to the centre or increase the saturation time."
        )
    alpha = np.deg2rad(flip_angle_deg)
    e1 = np.exp(-np.asarray(repetition_time_s) * r1)
    mz_first = 1.0 - np.asarray(saturation_efficiency) * np.exp(-delay_s * r1)
    a = np.cos(alpha) * e1
    mz_steady = (1.0 - e1) / (1.0 - a)
    mz_centre = mz_steady + (mz_first - mz_steady) * a ** (n_c - 1.0)
    t2star_loss = np.exp(-np.asarray(echo_time_s) * np.asarray(r2star_per_s))
    return np.asarray(proton_density) * np.sin(alpha) * mz_centre * t2star_loss


def linear_reference_signal(baseline_signal, conc_mM, t1_native_s, relaxivity_per_s_per_mM):
    """The unsaturated reference curve the AI-AIF network is trained to recover.

    ``S_ref(t) = S0 * (1 + r1 * T1 * C(t))``: the signal of a perfectly linear
    sequence with the same pre-contrast signal ``S0`` as the saturated one, so
    that its relative enhancement is exactly ``r1 * T1 * C`` (shared/PHYSICS.md).

    Parameters
    ----------
    baseline_signal : array_like
        Pre-contrast signal S0 (signal units).
    conc_mM : array_like
        Concentration, mM.
    t1_native_s : array_like
        Native T1 of the tissue (blood for the AIF), s.
    relaxivity_per_s_per_mM : array_like
        r1, 1/s/mM.

    Returns
    -------
    numpy.ndarray
        Reference signal in the units of ``baseline_signal``.
    """
    enhancement = np.asarray(relaxivity_per_s_per_mM) * np.asarray(t1_native_s) * np.asarray(conc_mM)
    return np.asarray(baseline_signal) * (1.0 + enhancement)

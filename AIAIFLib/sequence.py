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

import math
from dataclasses import dataclass

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


# ---------------------------------------------------------------------------
# Sequence parameters of the standard slices
# ---------------------------------------------------------------------------
# Defaults (``SequenceParameters``) and where they come from:
#
# * saturation time 100 ms, TR 2.2 ms, flip angle 15 deg -- the paper's
#   standard high-resolution slices [Scannell2022, "Image acquisition"]
#   (``constants``);
# * pulses to the k-space centre 21 -- the paper gives SENSE 1.8 but neither
#   the matrix nor the partial-Fourier factor nor the profile order.  Project
#   choice: linear profile order with an assumed acquired matrix of
#   ``ASSUMED_PHASE_ENCODING_LINES`` = 144 phase-encoding lines and partial
#   Fourier ``ASSUMED_PARTIAL_FOURIER`` = 0.75, which places the centre after
#   144 * (0.75 - 0.5) / 1.8 = 20 pulses, i.e. at pulse 21
#   (``linear_ordering_pulses_to_centre``; use it with your own protocol);
# * saturation efficiency 1.0 -- project choice (an ideal saturation pulse;
#   the paper does not state one).  The blood-pool calibration of
#   ``conversion`` fits it per study.

#: k-space orderings of the readout: the centre sampled by the first pulse
#: (centric) or after the lines before it (linear).
READOUT_ORDERINGS = ("centric", "linear")

#: SENSE acceleration of the paper's perfusion images [Scannell2022, "Image acquisition"].
PAPER_SENSE_FACTOR = 1.8
#: Acquired phase-encoding lines assumed for the default number of pulses to the
#: k-space centre.  Project choice: the paper does not give its matrix; 144 lines
#: is a typical high-resolution perfusion matrix (about 2.2 mm over 320 mm).
ASSUMED_PHASE_ENCODING_LINES = 144
#: Partial-Fourier (half-scan) factor assumed for the default pulses to the
#: centre.  Project choice: the paper does not give one; 0.75 is a common setting.
ASSUMED_PARTIAL_FOURIER = 0.75
#: Saturation-pulse efficiency assumed by default (fraction of Mz destroyed).
#: Project choice: an ideal pulse; the paper does not state one.
DEFAULT_SATURATION_EFFICIENCY = 1.0
#: Largest saturation efficiency accepted: above 1 an over-flipped saturation
#: pulse leaves a small negative Mz (project choice: a B1 error of +25 % on a
#: single 90-degree pulse gives 1.38; composite and adiabatic pulses keep it
#: within a few per cent of 1).
MAX_SATURATION_EFFICIENCY = 1.2


def linear_ordering_pulses_to_centre(phase_encoding_lines, acceleration=1.0, partial_fourier=1.0):
    """Readout pulse that samples the k-space centre for linear profile ordering.

    With linear ordering the lines run from the partial-Fourier edge of
    k-space to the far edge; the centre is preceded by
    ``lines * (partial_fourier - 0.5) / acceleration`` pulses.

    Parameters
    ----------
    phase_encoding_lines : int
        Phase-encoding matrix before acceleration and partial Fourier.
    acceleration : float, optional
        Parallel-imaging (SENSE/GRAPPA) acceleration factor, >= 1.
    partial_fourier : float, optional
        Partial-Fourier (half-scan) factor, 0.5-1 (1 = full k-space).

    Returns
    -------
    int
        1-based index of the centre pulse (``pulses_to_centre`` of
        ``SequenceParameters``); 1 means the centre is sampled first.

    Raises
    ------
    AIAIFInputError
        If an argument is outside its range.
    """
    if not (np.isfinite(phase_encoding_lines) and phase_encoding_lines >= 1):
        raise AIAIFInputError("The number of phase-encoding lines must be at least 1; give the acquired matrix.")
    if not (np.isfinite(acceleration) and acceleration >= 1.0):
        raise AIAIFInputError("The acceleration factor must be at least 1; give the SENSE/GRAPPA factor.")
    if not (np.isfinite(partial_fourier) and 0.5 <= partial_fourier <= 1.0):
        raise AIAIFInputError("The partial-Fourier factor must be between 0.5 and 1; give 1 for full k-space.")
    return 1 + int(round(phase_encoding_lines * (partial_fourier - 0.5) / acceleration))


#: Default pulses to the k-space centre with linear ordering (see the comment
#: at the top of this section).
DEFAULT_LINEAR_PULSES_TO_CENTRE = linear_ordering_pulses_to_centre(
    ASSUMED_PHASE_ENCODING_LINES, PAPER_SENSE_FACTOR, ASSUMED_PARTIAL_FOURIER)


@dataclass(frozen=True)
class SequenceParameters:
    """Sequence parameters of the standard slices for the model-based conversion.

    Every field has a documented default (comment above) and can be
    overridden, e.g. ``SequenceParameters(flip_angle_deg=12.0)``.

    Attributes
    ----------
    saturation_time_s : float
        Time from the saturation pulse to the k-space centre, s (0.1 s, the paper's).
    repetition_time_s : float
        Readout repetition time TR, s (2.2 ms, the paper's).
    flip_angle_deg : float
        Excitation flip angle, degrees (15, the paper's).
    pulses_to_centre : int
        1-based readout pulse that samples the k-space centre (1 = centric;
        default 21, a project choice for linear ordering).
    saturation_efficiency : float
        Fraction of Mz destroyed by the saturation pulse, above 0 and at most
        ``MAX_SATURATION_EFFICIENCY`` (1.0, project choice).

    Raises
    ------
    AIAIFInputError
        On construction, if a value is outside its range or the readout
        before the k-space centre does not fit in the saturation time.
    """

    saturation_time_s: float = SATURATION_TIME_S
    repetition_time_s: float = REPETITION_TIME_S
    flip_angle_deg: float = FLIP_ANGLE_DEG
    pulses_to_centre: int = DEFAULT_LINEAR_PULSES_TO_CENTRE
    saturation_efficiency: float = DEFAULT_SATURATION_EFFICIENCY

    def __post_init__(self):
        checks = (
            (self.saturation_time_s, 0.0, None, "The saturation time must be positive (s)"),
            (self.repetition_time_s, 0.0, None, "The repetition time must be positive (s)"),
            (self.flip_angle_deg, 0.0, 90.0, "The flip angle must be between 0 and 90 degrees"),
            (self.saturation_efficiency, 0.0, MAX_SATURATION_EFFICIENCY,
             "The saturation efficiency must be above 0 and at most {:g}".format(MAX_SATURATION_EFFICIENCY)),
        )
        for value, low, high, problem in checks:
            number = _finite_float(value)
            if number is None or number <= low or (high is not None and number > high):
                raise AIAIFInputError("{}, got {!r}; correct the sequence parameter.".format(problem, value))
        pulses = _finite_float(self.pulses_to_centre)
        if isinstance(self.pulses_to_centre, bool) or pulses is None or not pulses.is_integer() or pulses < 1:
            raise AIAIFInputError("The pulses to the k-space centre must be a whole number of at least 1 "
                                  "(1 for centric ordering), got {!r}.".format(pulses))
        if (pulses - 1) * self.repetition_time_s > self.saturation_time_s:
            raise AIAIFInputError(
                "The {} readout pulses before the k-space centre take longer than the {:g} s saturation time; "
                "reduce the pulses to the centre or increase the saturation time.".format(
                    pulses - 1, self.saturation_time_s))

    def normalised_signal(self, r1_per_s):
        """Signal per unit M0 * sin(flip angle), i.e. Mz / M0 at the k-space centre.

        Parameters
        ----------
        r1_per_s : array_like
            Longitudinal relaxation rate R1, 1/s.

        Returns
        -------
        numpy.ndarray
            Normalised longitudinal magnetisation before the centre pulse,
            dimensionless (below 1, rising with R1).
        """
        signal = saturation_recovery_flash_signal(
            r1_per_s, saturation_time_s=self.saturation_time_s, repetition_time_s=self.repetition_time_s,
            flip_angle_deg=self.flip_angle_deg, pulses_to_centre=int(self.pulses_to_centre),
            saturation_efficiency=self.saturation_efficiency, echo_time_s=0.0)
        return signal / math.sin(math.radians(self.flip_angle_deg))


def _finite_float(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None

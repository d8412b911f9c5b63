"""Physics sanity of the saturation-recovery FLASH signal model."""

import numpy as np
import pytest

from AIAIFLib import constants as K
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.sequence import (
    MAX_SATURATION_EFFICIENCY,
    SequenceParameters,
    linear_ordering_pulses_to_centre,
    linear_reference_signal,
    saturation_recovery_flash_signal,
)

R1 = K.R1_RELAXIVITY_PER_S_PER_MM
T1B = K.T1_BLOOD_S[3.0]
CONC = np.linspace(0.0, 15.0, 61)


def relative_enhancement(conc_mM, **sequence):
    signal = saturation_recovery_flash_signal(1.0 / T1B + R1 * conc_mM, **sequence)
    return signal / signal[0] - 1.0


def test_short_saturation_time_is_nearly_linear():
    # TS -> 0: Mz ~ TS * R1, so RE -> r1 * T1b * C exactly.
    enhancement = relative_enhancement(CONC, saturation_time_s=0.001, pulses_to_centre=1, flip_angle_deg=5.0)
    np.testing.assert_allclose(enhancement[1:], (R1 * T1B * CONC)[1:], rtol=0.06)


def test_dual_sequence_slice_saturates_less_than_standard_slice():
    linear = R1 * T1B * CONC[-1]
    aif_slice = relative_enhancement(CONC, saturation_time_s=K.DUAL_SEQUENCE_SATURATION_TIME_S)[-1]
    standard = relative_enhancement(CONC, saturation_time_s=K.SATURATION_TIME_S)[-1]
    assert standard < aif_slice < linear


def test_saturation_grows_with_concentration():
    enhancement = relative_enhancement(CONC, saturation_time_s=K.SATURATION_TIME_S)
    ratio = enhancement[1:] / (R1 * T1B * CONC[1:])
    assert np.all(np.diff(enhancement) > 0), "signal must still rise with concentration"
    assert np.all(np.diff(ratio) < 0), "the fraction of the linear enhancement must fall with concentration"
    assert ratio[-1] < 0.25  # at 15 mM the standard slice records under a quarter of the linear enhancement


def test_reference_curve_has_linear_enhancement_and_same_baseline():
    baseline = 37.0
    reference = linear_reference_signal(baseline, CONC, T1B, R1)
    assert reference[0] == baseline
    np.testing.assert_allclose(reference / baseline - 1.0, R1 * T1B * CONC)


def test_centric_full_recovery_matches_closed_form():
    # Centric ordering, perfect saturation: S = sin(a) * (1 - exp(-TS R1)).
    r1 = np.array([0.5, 2.0, 20.0])
    signal = saturation_recovery_flash_signal(r1, saturation_time_s=0.1, flip_angle_deg=15.0, pulses_to_centre=1,
                                              echo_time_s=0.0)
    np.testing.assert_allclose(signal, np.sin(np.radians(15.0)) * (1.0 - np.exp(-0.1 * r1)))


def test_linear_ordering_matches_pulse_by_pulse_recursion():
    r1, tr, alpha, n_c, ts, eta = 3.0, 0.0025, 12.0, 20, 0.1, 0.95
    mz = 1.0 - eta * np.exp(-(ts - (n_c - 1) * tr) * r1)
    for _ in range(n_c - 1):
        mz = mz * np.cos(np.radians(alpha)) * np.exp(-tr * r1) + (1.0 - np.exp(-tr * r1))
    expected = np.sin(np.radians(alpha)) * mz
    got = saturation_recovery_flash_signal(r1, saturation_time_s=ts, repetition_time_s=tr, flip_angle_deg=alpha,
                                           pulses_to_centre=n_c, saturation_efficiency=eta, echo_time_s=0.0)
    assert got == pytest.approx(expected, rel=1e-12)


def test_t2star_loss_reduces_signal():
    base = saturation_recovery_flash_signal(5.0, echo_time_s=0.001, r2star_per_s=0.0)
    lossy = saturation_recovery_flash_signal(5.0, echo_time_s=0.001, r2star_per_s=200.0)
    assert lossy == pytest.approx(base * np.exp(-0.2))


def test_readout_longer_than_saturation_time_is_rejected():
    with pytest.raises(AIAIFInputError, match="pulses to the centre"):
        saturation_recovery_flash_signal(1.0, saturation_time_s=0.02, repetition_time_s=0.0025, pulses_to_centre=20)


# --- sequence parameters ---------------------------------------------------------------------------


def test_pulses_to_centre_from_matrix_acceleration_and_partial_fourier():
    assert linear_ordering_pulses_to_centre(128) == 65  # full k-space: the centre line is the 65th
    assert linear_ordering_pulses_to_centre(144, 1.8, 0.75) == 21  # 144 * 0.25 / 1.8 = 20 lines before it
    assert linear_ordering_pulses_to_centre(160, 2.0, 0.5) == 1  # half k-space starts at the centre
    assert SequenceParameters().pulses_to_centre == linear_ordering_pulses_to_centre(144, 1.8, 0.75)
    for bad in ({"phase_encoding_lines": 0}, {"phase_encoding_lines": 128, "acceleration": 0.5},
                {"phase_encoding_lines": 128, "partial_fourier": 0.4}):
        with pytest.raises(AIAIFInputError):
            linear_ordering_pulses_to_centre(**bad)


def test_sequence_defaults_are_the_papers_acquisition():
    sequence = SequenceParameters()
    assert (sequence.saturation_time_s, sequence.repetition_time_s, sequence.flip_angle_deg) == (0.1, 0.0022, 15.0)
    assert sequence.saturation_efficiency == 1.0


@pytest.mark.parametrize("overrides, message", [
    ({"flip_angle_deg": 0.0}, "flip angle"),
    ({"saturation_time_s": -0.1}, "saturation time must be positive"),
    ({"repetition_time_s": float("nan")}, "repetition time"),
    ({"saturation_efficiency": MAX_SATURATION_EFFICIENCY + 0.01}, "saturation efficiency"),
    ({"saturation_efficiency": 0.0}, "saturation efficiency"),
    ({"pulses_to_centre": 2.5}, "whole number"),
    ({"pulses_to_centre": 0}, "whole number"),
    ({"pulses_to_centre": 60}, "take longer than"),
])
def test_bad_sequence_parameters_are_rejected(overrides, message):
    with pytest.raises(AIAIFInputError, match=message):
        SequenceParameters(**overrides)

"""Signal-to-concentration conversion: the paper's linear one and the sequence-model inversion."""

import numpy as np
import pytest

from AIAIFLib import constants as K
from AIAIFLib import conversion
from AIAIFLib.acquisition import resolve_acquisition
from AIAIFLib.conversion import (
    MODEL_MAX_CONCENTRATION_MM,
    aif_concentration_mM,
    baseline_signal,
    linear_concentration_mM,
    model_concentration_mM,
    tissue_concentration_mM,
)
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.sequence import SequenceParameters, linear_reference_signal, saturation_recovery_flash_signal

R1 = K.R1_RELAXIVITY_PER_S_PER_MM
TISSUE_CONC = np.linspace(0.0, 3.0, 121)


def acquisition(field=3.0, **options):
    """The acquisition record of a study at ``field`` T with ``options``."""
    return resolve_acquisition(field_strength_t=field, **options)


def sequence_signal(conc_mM, t1_native_s, sequence, proton_density=1000.0):
    """Noise-free signal of the forward model (sequence.py), independent of the inversion's code."""
    return saturation_recovery_flash_signal(
        1.0 / np.asarray(t1_native_s) + R1 * np.asarray(conc_mM),
        saturation_time_s=sequence.saturation_time_s, repetition_time_s=sequence.repetition_time_s,
        flip_angle_deg=sequence.flip_angle_deg, pulses_to_centre=sequence.pulses_to_centre,
        saturation_efficiency=sequence.saturation_efficiency, echo_time_s=0.0, proton_density=proton_density)


def test_linear_conversion_inverts_the_reference_curve():
    conc = np.array([0.0, 0.0, 1.0, 8.0, 3.0])
    t1b = K.T1_BLOOD_S[1.5]
    signal = linear_reference_signal(50.0, conc, t1b, K.R1_RELAXIVITY_PER_S_PER_MM)
    base = baseline_signal(signal, 2)
    assert base == 50.0
    np.testing.assert_allclose(linear_concentration_mM(signal, base, base, t1b), conc, atol=1e-12)


def test_tissue_uses_its_own_baseline_and_the_lv_scale():
    tissue = np.array([[20.0, 20.0, 29.0]])
    conc = linear_concentration_mM(tissue, baseline_signal(tissue, 1), 40.0, 2.0, r1_per_s_per_mM=4.5)
    np.testing.assert_allclose(conc, [[0.0, 0.0, 9.0 / (4.5 * 2.0 * 40.0)]])


def test_bad_baseline_inputs_are_rejected():
    with pytest.raises(AIAIFInputError, match="baseline frames"):
        baseline_signal(np.ones(5), 0)
    with pytest.raises(AIAIFInputError, match="LV blood-pool signal must be positive"):
        linear_concentration_mM(np.ones(5), 1.0, 0.0, 1.7)


# --- model inversion ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", K.SUPPORTED_FIELD_STRENGTHS_T)
@pytest.mark.parametrize("sequence", [
    SequenceParameters(),
    SequenceParameters(pulses_to_centre=1, saturation_efficiency=0.93, flip_angle_deg=12.0),
    SequenceParameters(saturation_time_s=0.09, repetition_time_s=0.0027, pulses_to_centre=32, flip_angle_deg=19.0),
])
def test_model_inversion_round_trip(field, sequence):
    t1 = K.T1_MYOCARDIUM_S[field]
    signal = sequence_signal(TISSUE_CONC, t1, sequence, proton_density=731.0)
    conc, clipped = tissue_concentration_mM(signal[None, :], signal[0], None, acquisition(field), sequence=sequence)
    np.testing.assert_allclose(conc[0], TISSUE_CONC, rtol=1e-6, atol=1e-9)
    assert not clipped.any()


def test_model_inversion_is_exact_up_to_the_concentration_ceiling():
    t1 = K.T1_MYOCARDIUM_S[3.0]
    conc_true = np.array([0.0, 5.0, 10.0, 15.0, 19.5])
    signal = sequence_signal(conc_true, t1, SequenceParameters())
    conc, clipped = model_concentration_mM(signal, signal[0], t1)
    np.testing.assert_allclose(conc, conc_true, rtol=1e-6, atol=1e-9)
    assert not clipped.any()


def test_model_inversion_per_curve_t1_matches_separate_calls():
    t1_map = np.array([[0.9, 1.1], [1.3, 1.6]])
    conc_true = np.linspace(0.0, 2.0, 9) * np.array([1.0, 0.5, 1.5, 0.8])[:, None]
    signal = sequence_signal(conc_true, t1_map.reshape(-1, 1), SequenceParameters()).reshape(2, 2, -1) * 3.0
    conc, _ = model_concentration_mM(signal, signal[..., 0], t1_map)
    np.testing.assert_allclose(conc.reshape(4, -1), conc_true, rtol=1e-6, atol=1e-9)
    single, _ = model_concentration_mM(signal[1, 0], signal[1, 0, 0], 1.3)
    np.testing.assert_allclose(conc[1, 0], single, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("field", K.SUPPORTED_FIELD_STRENGTHS_T)
def test_linear_underestimates_high_tissue_concentration_and_model_does_not(field):
    # Equal proton density in blood and myocardium, the assumption behind the paper's conversion.
    sequence = SequenceParameters()
    tissue = sequence_signal(TISSUE_CONC, K.T1_MYOCARDIUM_S[field], sequence)
    lv_baseline = sequence_signal(0.0, K.T1_BLOOD_S[field], sequence)
    linear, _ = tissue_concentration_mM(tissue, tissue[0], lv_baseline, acquisition(field), "linear")
    model, _ = tissue_concentration_mM(tissue, tissue[0], lv_baseline, acquisition(field), "model")
    fraction = linear[1:] / TISSUE_CONC[1:]
    assert np.all(np.diff(fraction) < 0), "the linear conversion's shortfall must grow with concentration"
    assert fraction[-1] < 0.75
    np.testing.assert_allclose(model, TISSUE_CONC, rtol=1e-6, atol=1e-9)


def test_signals_outside_the_model_range_are_clipped_and_flagged():
    t1 = K.T1_MYOCARDIUM_S[3.0]
    sequence = SequenceParameters()
    base = sequence_signal(0.0, t1, sequence)
    fully_recovered = 1000.0 * np.sin(np.radians(sequence.flip_angle_deg))
    signal = np.array([base, 0.97 * base, 1.01 * fully_recovered, 5.0 * fully_recovered, 0.0, -3.0, np.nan])
    conc, clipped = model_concentration_mM(signal, base, t1, sequence=sequence)
    np.testing.assert_array_equal(clipped, [False, False, True, True, True, True, False])
    assert conc[0] == pytest.approx(0.0, abs=1e-12)
    assert -0.1 < conc[1] < 0.0, "a signal a little below baseline is noise: small negative value, not clipped"
    np.testing.assert_allclose(conc[2:4], MODEL_MAX_CONCENTRATION_MM)
    np.testing.assert_allclose(conc[4:6], -1.0 / (t1 * R1))  # R1 = 0, the model's lower end
    assert np.isnan(conc[6])
    _, linear_clipped = tissue_concentration_mM(signal[None, :6], base, base, acquisition(), "linear")
    assert linear_clipped.shape == (1, 6) and not linear_clipped.any()


# --- entry points and their errors ----------------------------------------------------------------


def test_tissue_linear_entry_point_uses_the_papers_t1b_and_overrides():
    tissue = np.array([[20.0, 20.0, 29.0], [10.0, 12.0, 11.0]])
    for field in K.SUPPORTED_FIELD_STRENGTHS_T:
        conc, _ = tissue_concentration_mM(tissue, tissue[:, 0], 40.0, acquisition(field), "linear")
        np.testing.assert_allclose(conc, linear_concentration_mM(tissue, tissue[:, 0], 40.0, K.T1_BLOOD_S[field]))
    conc, _ = tissue_concentration_mM(tissue, tissue[:, 0], 40.0, acquisition(7.0, t1_blood_s=2.0,
                                                                               r1_per_s_per_mM=5.0), "linear")
    np.testing.assert_allclose(conc[0], [0.0, 0.0, 9.0 / (5.0 * 2.0 * 40.0)])


def test_the_model_conversion_is_the_default():
    sequence = SequenceParameters()
    tissue = sequence_signal(TISSUE_CONC, K.T1_MYOCARDIUM_S[3.0], sequence)
    default, _ = tissue_concentration_mM(tissue, tissue[0], None, acquisition())
    np.testing.assert_allclose(default, TISSUE_CONC, rtol=1e-6, atol=1e-9)


def test_aif_conversion_is_linear_with_its_own_baseline():
    conc_true = np.array([0.0, 0.0, 2.0, 12.0, 4.0])
    for field in K.SUPPORTED_FIELD_STRENGTHS_T:
        signal = linear_reference_signal(80.0, conc_true, K.T1_BLOOD_S[field], R1)
        np.testing.assert_allclose(aif_concentration_mM(signal, 80.0, acquisition(field)), conc_true, atol=1e-12)
    signal = linear_reference_signal(80.0, conc_true, 2.1, 5.2)
    np.testing.assert_allclose(aif_concentration_mM(signal, 80.0, acquisition(7.0, t1_blood_s=2.1,
                                                                              r1_per_s_per_mM=5.2)),
                               conc_true, atol=1e-12)


def test_unknown_method_is_rejected():
    with pytest.raises(AIAIFInputError, match="Unknown conversion method 'pixelwise'"):
        tissue_concentration_mM(np.ones((2, 5)), np.ones(2), 1.0, acquisition(), method="pixelwise")


def test_unknown_field_strength_needs_explicit_t1():
    with pytest.raises(AIAIFInputError, match="no default native T1 of blood at 7 T.*--t1-blood-s on the command"):
        tissue_concentration_mM(np.ones((2, 5)), np.ones(2), 1.0, acquisition(7.0), "linear")
    with pytest.raises(AIAIFInputError, match="no default native T1 of myocardium at 7 T.*--t1-myocardium-s"):
        tissue_concentration_mM(np.ones((2, 5)), np.ones(2), None, acquisition(7.0))
    with pytest.raises(AIAIFInputError, match="--t1-blood-s"):
        aif_concentration_mM(np.ones(5), 1.0, acquisition(7.0))
    conc, _ = tissue_concentration_mM(np.ones((2, 5)), np.ones(2), None, acquisition(7.0, t1_myocardium_s=1.5))
    np.testing.assert_allclose(conc, 0.0, atol=1e-12)


@pytest.mark.parametrize("method", ["linear", "model"])
def test_non_positive_baselines_are_rejected(method):
    with pytest.raises(AIAIFInputError, match="pre-contrast signal must be positive"):
        tissue_concentration_mM(np.ones((2, 5)), np.array([1.0, 0.0]), 1.0, acquisition(), method=method)
    with pytest.raises(AIAIFInputError, match="one pre-contrast value per curve"):
        tissue_concentration_mM(np.ones((2, 5)), np.ones(3), 1.0, acquisition(), method=method)
    with pytest.raises(AIAIFInputError, match="pre-contrast signal must be positive"):
        aif_concentration_mM(np.ones(5), -1.0, acquisition())


def test_linear_needs_a_positive_lv_baseline():
    with pytest.raises(AIAIFInputError, match="LV blood-pool signal must be positive"):
        tissue_concentration_mM(np.ones((2, 5)), np.ones(2), 0.0, acquisition(), "linear")


def test_bad_model_parameters_are_rejected():
    with pytest.raises(AIAIFInputError, match="relaxivity"):
        model_concentration_mM(np.ones((2, 5)), np.ones(2), 1.2, r1_per_s_per_mM=0.0)
    with pytest.raises(AIAIFInputError, match="native T1 must be positive"):
        model_concentration_mM(np.ones((2, 5)), np.ones(2), np.array([1.2, 0.0]))
    with pytest.raises(AIAIFInputError, match="SequenceParameters"):
        model_concentration_mM(np.ones((2, 5)), np.ones(2), 1.2, sequence={"flip_angle_deg": 15.0})


# --- calibration of the sequence model on the blood pool ---------------------------------

T1_BLOOD = K.T1_BLOOD_S[3.0]
CAL_AIF = np.concatenate([np.zeros(5), 6.0 * np.exp(-0.5 * ((np.arange(40) - 10.0) / 3.0) ** 2) + 0.5])
CAL_TISSUE_MM = np.concatenate([np.zeros(5), np.linspace(0.0, 1.2, 40)])


def blood_and_tissue(sequence):
    """Blood and tissue signals of one readout (different scales and native T1)."""
    blood = 700.0 * sequence.normalised_signal(1.0 / T1_BLOOD + R1 * CAL_AIF)
    tissue = 300.0 * sequence.normalised_signal(1.0 / 1.2 + R1 * CAL_TISSUE_MM)
    return blood, tissue


def test_blood_pool_calibration_recovers_an_unknown_saturation_and_flip_angle():
    true_sequence = SequenceParameters(saturation_efficiency=0.93, flip_angle_deg=11.0)
    blood, tissue = blood_and_tissue(true_sequence)
    study = acquisition(readout_ordering="linear", t1_myocardium_s=1.2)
    calibration = conversion.calibrate_sequence_on_blood(blood, blood[0], CAL_AIF, study)
    assert calibration.used and calibration.warnings == () and calibration.rms_ratio_residual < 1e-6
    assert calibration.saturation_efficiency == pytest.approx(0.93, abs=1e-4)
    assert calibration.flip_angle_deg == pytest.approx(11.0, abs=1e-2)
    # The myocardium (another native T1, lower concentrations) is then converted exactly.
    default, _ = tissue_concentration_mM(tissue, tissue[0], None, study)
    calibrated, _ = tissue_concentration_mM(tissue, tissue[0], None, study, sequence=calibration.sequence)
    np.testing.assert_allclose(calibrated, CAL_TISSUE_MM, atol=2e-3)
    assert np.max(np.abs(default - CAL_TISSUE_MM)) > 0.1  # the uncalibrated default was visibly wrong


def test_unknown_ordering_tries_both_and_centric_fits_no_flip_angle():
    true_sequence = SequenceParameters(pulses_to_centre=1, saturation_efficiency=0.9, flip_angle_deg=18.0)
    blood, tissue = blood_and_tissue(true_sequence)
    study = acquisition(t1_myocardium_s=1.2)
    assert study.readout_ordering is None
    calibration = conversion.calibrate_sequence_on_blood(blood, blood[0], CAL_AIF, study)
    assert {c["readout_ordering"] for c in calibration.candidates} == {"centric", "linear"}
    assert calibration.readout_ordering == "centric" and calibration.used
    assert calibration.saturation_efficiency == pytest.approx(0.9, abs=1e-4)
    # With the centre sampled first the flip angle has no effect, so it keeps its nominal value.
    assert calibration.flip_angle_deg == study.sequence.flip_angle_deg
    calibrated, _ = tissue_concentration_mM(tissue, tissue[0], None, study, sequence=calibration.sequence)
    np.testing.assert_allclose(calibrated, CAL_TISSUE_MM, atol=2e-3)


def test_a_calibration_on_its_bound_is_used_constrained_and_warned():
    # An AIF 40 % too low asks for a readout no plausible flip angle gives.
    blood, _ = blood_and_tissue(SequenceParameters(flip_angle_deg=15.0))
    study = acquisition(readout_ordering="linear", saturation_efficiency=1.0)
    calibration = conversion.calibrate_sequence_on_blood(blood, blood[0], 0.6 * CAL_AIF, study)
    assert not calibration.used and calibration.at_bound == ("flip_angle_deg",)
    bound_angles = 15.0 * np.array(conversion.CALIBRATION_FLIP_ANGLE_FACTOR_BOUNDS)
    assert np.min(np.abs(calibration.sequence.flip_angle_deg - bound_angles)) < 1e-3 * 15.0
    assert len(calibration.warnings) >= 1 and "rests on its bound (flip angle" in calibration.warnings[0]
    summary = calibration.summary()
    assert summary["used"] is False and summary["at_bound"] == ["flip_angle_deg"]


def test_a_given_saturation_efficiency_is_held():
    blood, _ = blood_and_tissue(SequenceParameters(saturation_efficiency=0.93, flip_angle_deg=11.0))
    study = acquisition(readout_ordering="linear", saturation_efficiency=0.97)
    calibration = conversion.calibrate_sequence_on_blood(blood, blood[0], CAL_AIF, study)
    assert calibration.saturation_efficiency == 0.97
    assert calibration.relative_residual > conversion.CALIBRATION_RESIDUAL_WARNING_FRACTION
    assert any("fits the blood signal poorly" in text for text in calibration.warnings)


def test_blood_pool_calibration_rejects_mismatched_curves():
    with pytest.raises(AIAIFInputError, match="same frames"):
        conversion.calibrate_sequence_on_blood(np.ones(10), 1.0, np.zeros(9), acquisition())


# --- the blood-pool anchor --------------------------------------------------------------------------

def test_the_anchored_conversion_is_exact_and_ignores_the_saturation_efficiency():
    true_sequence = SequenceParameters(pulses_to_centre=1, saturation_efficiency=0.99)
    t1 = 1.25
    signal = 420.0 * true_sequence.normalised_signal(1.0 / t1 + R1 * TISSUE_CONC)
    conc, clipped, native_t1 = conversion.anchored_concentration_mM(signal, signal[0], 420.0, R1, true_sequence)
    np.testing.assert_allclose(conc, TISSUE_CONC, atol=1e-9)
    assert native_t1 == pytest.approx(t1, rel=1e-9) and not clipped.any()
    # A blood calibration 0.04 off in efficiency: the anchored conversion barely moves, the baseline-anchored one
    # (scale from the pre-contrast signal at the native T1) is far off.
    wrong = SequenceParameters(pulses_to_centre=1, saturation_efficiency=0.95)
    anchored, _, _ = conversion.anchored_concentration_mM(signal, signal[0], 420.0, R1, wrong)
    baseline_anchored, _ = model_concentration_mM(signal, signal[0], t1, R1, wrong)
    peak = TISSUE_CONC.argmax()
    assert abs(anchored[peak] / TISSUE_CONC[peak] - 1.0) < 0.01
    assert abs(baseline_anchored[peak] / TISSUE_CONC[peak] - 1.0) > 0.5


def test_the_anchored_scale_error_is_about_the_concentration_error():
    sequence = SequenceParameters()
    signal = 300.0 * sequence.normalised_signal(1.0 / 1.2 + R1 * TISSUE_CONC)
    conc, _, _ = conversion.anchored_concentration_mM(signal, signal[0], 300.0 / 1.05, R1, sequence)
    ratio = conc[1:] / TISSUE_CONC[1:]
    assert np.all((ratio > 1.04) & (ratio < 1.12))


def test_the_tissue_scale_follows_a_smooth_coil_shading_and_the_proton_density():
    rng = np.random.default_rng(4)
    k = np.repeat([0, 1], 200)
    j, i = rng.uniform(20, 60, 400), rng.uniform(20, 60, 400)
    coil = 1.0 + 0.004 * (j - 40.0) - 0.002 * (i - 40.0) + 0.05 * k
    baseline = 80.0 * coil * rng.normal(1.0, 0.05, 400)  # noisy pixels, smooth field
    scale = conversion.tissue_scale(baseline, k, j, i, blood_scale=1000.0, proton_density_ratio=0.9)
    np.testing.assert_allclose(scale / (900.0 * coil / coil.mean()), 1.0, atol=0.02)
    assert np.mean(scale) == pytest.approx(900.0)


def test_the_anchor_check_warns_when_the_pre_contrast_signal_does_not_follow_the_model():
    sequence = SequenceParameters(pulses_to_centre=1, saturation_efficiency=0.97)
    study = acquisition(t1_myocardium_s=1.2)
    consistent = 300.0 * sequence.normalised_signal(1.0 / 1.2)
    check = conversion.anchor_check(np.full(5, consistent), np.full(5, 300.0), study, sequence)
    assert check["implied_native_t1_s"] == pytest.approx(1.2, rel=1e-6) and check["warning"] is None
    # A baseline lowered by saturation history the model does not have: the implied T1 is far too long.
    check = conversion.anchor_check(np.full(5, 0.6 * consistent), np.full(5, 300.0), study, sequence)
    assert check["implied_native_t1_s"] > 1.33 * 1.2 and "does not follow the sequence model" in check["warning"]
    assert conversion.anchor_check(np.full(5, consistent), np.full(5, 300.0), acquisition(7.0), sequence)[
        "warning"] is None


def test_the_calibration_gives_the_blood_signal_scale():
    true_sequence = SequenceParameters(saturation_efficiency=0.93, flip_angle_deg=11.0)
    blood, _ = blood_and_tissue(true_sequence)
    calibration = conversion.calibrate_sequence_on_blood(blood, blood[0], CAL_AIF, acquisition(readout_ordering="linear"))
    assert calibration.blood_scale == pytest.approx(700.0, rel=1e-4)
    assert calibration.summary()["blood_scale"] == calibration.blood_scale

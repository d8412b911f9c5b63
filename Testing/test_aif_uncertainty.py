"""The AI-AIF's ensemble band on segment MBF and the blood-signal consistency check."""

from dataclasses import replace

import numpy as np
import pytest

from AIAIFLib import aif_uncertainty, deconvolution
from AIAIFLib.acquisition import resolve_acquisition
from AIAIFLib.simulation import gamma_variate

TIMES = np.arange(60) * 0.8
AIF = 6.0 * gamma_variate(TIMES, 8.0, 12.0, 3.0) + 0.6 * gamma_variate(TIMES, 18.0, 24.0, 3.0)
MBF = np.array([0.8, 1.3, 2.4, 3.1])


def _tissue(aif_mM, mbf_ml_min_g):
    """Segment curves of a Fermi response with the given MBF (tau0 3 s, k 1/s, no delay)."""
    flow = np.asarray(mbf_ml_min_g) / deconvolution.flow_to_mbf(1.0)
    edges = deconvolution.lag_cell_edges(TIMES)
    matrix = deconvolution.convolution_matrix(TIMES, aif_mM)
    return deconvolution.fermi_tissue_curves(matrix, edges, flow, np.full(flow.shape, 3.0), np.ones(flow.shape),
                                             np.zeros(flow.shape))


@pytest.fixture(scope="module")
def central_fit():
    curves = _tissue(AIF, MBF)
    end = deconvolution.first_pass_end_s(TIMES, AIF)
    return curves, deconvolution.fit_fermi_batched(TIMES, AIF, curves, fit_end_s=end).mbf_ml_min_g, end


def test_members_equal_to_the_aif_give_no_band(central_fit):
    curves, fitted, end = central_fit
    low, high = aif_uncertainty.segment_mbf_band(TIMES, np.stack([AIF, AIF]), curves, MBF, fitted, end)
    np.testing.assert_allclose(low, MBF, rtol=1e-9)
    np.testing.assert_allclose(high, MBF, rtol=1e-9)


def test_a_member_with_a_larger_aif_lowers_the_band_by_its_scale(central_fit):
    curves, fitted, end = central_fit
    # MBF from a deconvolution scales as 1 / AIF scale: a 25 % larger AIF reads 20 % lower MBF.
    low, high = aif_uncertainty.segment_mbf_band(TIMES, np.stack([AIF, 1.25 * AIF]), curves, MBF, fitted, end)
    np.testing.assert_allclose(high, MBF, rtol=1e-9)
    np.testing.assert_allclose(low, MBF / 1.25, rtol=0.02)
    low, high = aif_uncertainty.segment_mbf_band(TIMES, np.stack([0.8 * AIF, 1.25 * AIF]), curves, MBF, fitted, end)
    np.testing.assert_allclose(high, MBF / 0.8, rtol=0.02)
    assert np.all(low < MBF) and np.all(MBF < high)


def test_an_empty_segment_has_no_band(central_fit):
    curves, fitted, end = central_fit
    curves = curves.copy()
    curves[1] = np.nan
    mbf = MBF.copy()
    mbf[1] = np.nan
    low, high = aif_uncertainty.segment_mbf_band(TIMES, np.stack([AIF, 1.1 * AIF]), curves, mbf, fitted, end)
    assert np.isnan(low[1]) and np.isnan(high[1])
    assert np.all(np.isfinite(np.delete(low, 1)))


def test_the_ensemble_summary_warns_on_a_wide_spread_and_a_band_across_the_threshold():
    members = np.stack([AIF, 1.05 * AIF])
    record, warnings = aif_uncertainty.ensemble_summary(members, 1.025 * AIF, [1, 2], np.array([1.5, 2.0]),
                                                        np.array([1.6, 2.2]), 1.35)
    assert record["n_members"] == 2 and record["peak_spread"] == pytest.approx(0.05 / 1.025)
    assert record["segments_straddling_threshold"] == [] and warnings == []
    members = np.stack([AIF, 1.5 * AIF])
    record, warnings = aif_uncertainty.ensemble_summary(members, 1.25 * AIF, [1, 2], np.array([1.2, 2.0]),
                                                        np.array([1.6, 2.2]), 1.35)
    assert record["segments_straddling_threshold"] == [1]
    assert len(warnings) == 2
    assert "members' peaks span" in warnings[0] and "40 %" in warnings[0]
    assert "straddles the 1.35 mL/min/g threshold in segment 1," in warnings[1]


@pytest.fixture(scope="module")
def acquisition():
    return resolve_acquisition(field_strength_t=3.0)


def _blood_signal(aif_mM, acquisition, baseline=800.0):
    """The LV signal the acquisition's own sequence gives for ``aif_mM`` (no T2*, no noise)."""
    r1_native = 1.0 / acquisition.t1_blood()
    model = acquisition.sequence.normalised_signal(r1_native + acquisition.r1_per_s_per_mM * aif_mM)
    return baseline * model / acquisition.sequence.normalised_signal(r1_native)


def test_the_aif_that_made_the_blood_signal_is_consistent_with_it(acquisition):
    record, warnings = aif_uncertainty.blood_signal_consistency(_blood_signal(AIF, acquisition), 800.0, AIF,
                                                                acquisition)
    assert record["relative_residual"] < 1e-9 and abs(record["peak_residual"]) < 1e-9
    assert record["n_frames"] == np.count_nonzero(AIF > 0.3 * AIF.max())
    assert warnings == []


def test_an_aif_too_low_at_its_peak_cannot_reproduce_the_blood_signal(acquisition):
    # The sequence model of another study, with a better saturation: its signal is far above what half the AIF gives.
    signal = _blood_signal(AIF, acquisition)
    record, warnings = aif_uncertainty.blood_signal_consistency(signal, 800.0, 0.3 * AIF, acquisition)
    assert record["peak_residual"] > aif_uncertainty.BLOOD_CONSISTENCY_WARNING
    assert record["excess_residual"] == pytest.approx(record["relative_residual"])
    assert len(warnings) == 1 and "higher than the corrected AIF can explain" in warnings[0]
    assert "probably too low there and MBF too high" in warnings[0]


def test_a_signal_below_the_model_is_reported_but_not_warned_about(acquisition):
    # T2* at the bolus peak lowers the measured signal below the model, as an AIF too high would.
    signal = _blood_signal(AIF, acquisition) * np.exp(-0.0012 * 16.0 * AIF)
    record, warnings = aif_uncertainty.blood_signal_consistency(signal, 800.0, AIF, acquisition)
    assert record["peak_residual"] < -aif_uncertainty.BLOOD_CONSISTENCY_WARNING
    assert record["relative_residual"] > aif_uncertainty.BLOOD_CONSISTENCY_WARNING
    assert record["excess_residual"] == 0.0 and warnings == []


def test_the_check_uses_the_sequence_it_is_given(acquisition):
    centric = acquisition.with_sequence(replace(acquisition.sequence, pulses_to_centre=1), "option")
    signal = _blood_signal(AIF, centric)
    assert aif_uncertainty.blood_signal_consistency(signal, 800.0, AIF, centric)[0]["relative_residual"] < 1e-9
    assert aif_uncertainty.blood_signal_consistency(signal, 800.0, AIF, acquisition)[0]["relative_residual"] > 1e-3

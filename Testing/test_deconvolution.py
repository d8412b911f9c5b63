"""Tests of AIAIFLib.deconvolution: Fermi residue, convolution on non-uniform frames, reference fit."""

import numpy as np
import pytest

from AIAIFLib import deconvolution as D
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.simulation import gamma_variate

#: Step of the dense reference grid, s; frame times are put on this grid.
DENSE_STEP_S = 0.01


def frame_times(seed=3, n_frames=60):
    """Non-uniform frame times 0.5-1.1 s apart, on the dense reference grid."""
    spacing = np.round(np.random.default_rng(seed).uniform(0.5, 1.1, n_frames - 1) / DENSE_STEP_S)
    return DENSE_STEP_S * np.concatenate([[0.0], np.cumsum(spacing)])


def aif_curve(times_s):
    """Gamma-variate first pass (peak 6 mM) with a recirculation, mM."""
    return 6.0 * gamma_variate(times_s, 5.0, 8.0, 3.0) + 1.0 * gamma_variate(times_s, 14.0, 18.0, 3.0)


def dense_convolution(times_s, aif_dense, response_dense):
    """Trapezoid-rule convolution on the dense grid (np.convolve), sampled at the frame times."""
    full = np.convolve(aif_dense, response_dense)[:aif_dense.size] * DENSE_STEP_S
    full -= 0.5 * DENSE_STEP_S * (aif_dense[0] * response_dense + aif_dense * response_dense[0])
    return full[np.round(times_s / DENSE_STEP_S).astype(int)]


def dense_grid(times_s):
    return DENSE_STEP_S * np.arange(int(round(times_s[-1] / DENSE_STEP_S)) + 1)


def fermi_tissue_dense(times_s, aif_mM, params):
    """Tissue curve of the Fermi model by dense convolution with the linearly interpolated AIF.

    Independent of the lag-cell scheme: the residue is sampled point-wise and
    its jump at the delay (on the dense grid) gets the trapezoid's half weight.
    """
    grid = dense_grid(times_s)
    response = D.fermi_residue(grid, *params)
    onset = np.isclose(grid, params[3], atol=1e-9)
    response[onset] *= 0.5
    return dense_convolution(times_s, np.interp(grid, times_s, aif_mM), response)


TIMES = frame_times()
AIF = aif_curve(TIMES)
#: A stress-like truth: F 0.045 1/s (2.57 mL/min/g), tau0 4 s, k 0.6 1/s, delay 0.7 s.
TRUTH = (0.045, 4.0, 0.6, 0.7)


# ---------------------------------------------------------------------------
# Units and residue
# ---------------------------------------------------------------------------

def test_flow_to_mbf_known_answer():
    assert D.flow_to_mbf(0.05) == pytest.approx(60 * 0.05 / 1.05)
    assert D.flow_to_mbf(0.05) == pytest.approx(2.857, abs=5e-4)


def test_fermi_residue_is_flow_at_onset_zero_before_and_broadcasts():
    flow = np.array([0.02, 0.05])[:, None]
    t = np.array([0.0, 0.69, 0.7, 3.0, 30.0])
    r = D.fermi_residue(t, flow, 0.5, 2.0, 0.7)
    assert r.shape == (2, 5)
    np.testing.assert_array_equal(r[:, :2], 0.0)
    np.testing.assert_allclose(r[:, 2], flow[:, 0], rtol=1e-12)
    assert np.all(np.diff(r[:, 2:], axis=1) < 0)
    # Jerosch-Herold's shape up to the onset normalisation 1 + exp(-k tau0).
    expected = 0.05 * (1 + np.exp(-2.0 * 0.5)) / (1 + np.exp((3.0 - 0.5 - 0.7) * 2.0))
    assert r[1, 3] == pytest.approx(expected, rel=1e-12)


def test_cell_means_match_numerical_averages_and_are_continuous_in_delay():
    edges = D.lag_cell_edges(TIMES)[:201]  # the first 10 s, where the shape is
    params = TRUTH[:3] + (0.72,)  # onset inside a cell
    means = D.fermi_cell_means(edges, *params)
    fine = np.linspace(0, 1, 20001)
    points = edges[:-1, None] + fine[None, :] * np.diff(edges)[:, None]
    values = D.fermi_residue(points, *params)
    numerical = 0.5 * (values[:, 1:] + values[:, :-1]).mean(axis=1)
    assert means[14] == pytest.approx(0.6 * params[0], rel=0.02)  # 60 % of the cell after the onset
    np.testing.assert_allclose(means, numerical, atol=1e-4 * params[0])
    # The model moves continuously as the delay sweeps across cell edges and
    # centres (point samples of the residue would jump by ~2 % of the peak).
    matrix = D.convolution_matrix(TIMES, AIF)
    edges = D.lag_cell_edges(TIMES)
    delays = np.linspace(0.6, 0.8, 401)
    curves = D.fermi_tissue_curves(matrix, edges, TRUTH[0], TRUTH[1], TRUTH[2], delays)
    assert np.max(np.abs(np.diff(curves, axis=0))) < 1e-3 * np.max(curves)


# ---------------------------------------------------------------------------
# Convolution on non-uniform frame times
# ---------------------------------------------------------------------------

def exponential_case(step_s):
    flow, mean_transit_s = 0.04, 4.0
    edges = D.lag_cell_edges(TIMES, step_s)
    decay = np.exp(-edges / mean_transit_s)
    cell_means = flow * mean_transit_s * (decay[:-1] - decay[1:]) / step_s
    grid = dense_grid(TIMES)
    return cell_means, grid, flow * np.exp(-grid / mean_transit_s)


def test_convolution_matrix_matches_dense_convolution_of_interpolated_aif():
    """The integration itself: < 1e-4 of the peak against np.convolve on 0.01 s."""
    cell_means, grid, response = exponential_case(D.INTEGRATION_STEP_S)
    tissue = D.convolve_on_frames(TIMES, AIF, cell_means)
    reference = dense_convolution(TIMES, np.interp(grid, TIMES, AIF), response)
    assert np.max(np.abs(tissue - reference)) < 1e-4 * np.max(reference)


def test_convolution_matrix_matches_dense_convolution_of_true_aif():
    """With the continuous gamma-variate AIF: < 1.5 % of the peak (AIF sampled 0.5-1.1 s apart)."""
    cell_means, grid, response = exponential_case(D.INTEGRATION_STEP_S)
    tissue = D.convolve_on_frames(TIMES, AIF, cell_means)
    reference = dense_convolution(TIMES, aif_curve(grid), response)
    assert np.max(np.abs(tissue - reference)) < 0.015 * np.max(reference)


def test_convolution_matrix_is_lower_triangular_on_lags():
    matrix = D.convolution_matrix(TIMES, AIF)
    edges = D.lag_cell_edges(TIMES)
    assert matrix.shape == (TIMES.size, edges.size - 1)
    beyond = edges[None, :-1] >= (TIMES - TIMES[0])[:, None]
    np.testing.assert_array_equal(matrix[beyond], 0.0)
    # Each row integrates the AIF from t0 to t_i (trapezoid of the linear AIF).
    np.testing.assert_allclose(matrix.sum(axis=1),
                               np.concatenate([[0.0], np.cumsum(0.5 * (AIF[1:] + AIF[:-1]) * np.diff(TIMES))]),
                               rtol=1e-12, atol=1e-12)


def test_convolution_depends_only_on_times_since_first_frame():
    np.testing.assert_allclose(D.convolution_matrix(TIMES + 37.0, AIF), D.convolution_matrix(TIMES, AIF),
                               rtol=1e-9, atol=1e-12)


def test_fermi_model_matches_dense_convolution():
    matrix = D.convolution_matrix(TIMES, AIF)
    model = D.fermi_tissue_curves(matrix, D.lag_cell_edges(TIMES), *TRUTH)
    reference = fermi_tissue_dense(TIMES, AIF, TRUTH)
    assert np.max(np.abs(model - reference)) < 2e-4 * np.max(reference)


# ---------------------------------------------------------------------------
# Fit
# ---------------------------------------------------------------------------

def test_fit_recovers_noiseless_fermi_parameters():
    tissue = fermi_tissue_dense(TIMES, AIF, TRUTH)
    fit = D.fit_fermi_curve(TIMES, AIF, tissue)
    assert fit.converged and not fit.at_bound
    assert fit.mbf_ml_min_g == pytest.approx(D.flow_to_mbf(TRUTH[0]), rel=0.02)
    assert fit.delay_s == pytest.approx(TRUTH[3], abs=0.05)
    assert fit.nrmse < 1e-3
    np.testing.assert_allclose(fit.fitted_mM, tissue, atol=1e-3 * np.max(tissue))


def test_fit_with_noise_recovers_mbf_within_ten_percent():
    tissue = fermi_tissue_dense(TIMES, AIF, TRUTH)
    rng = np.random.default_rng(0)
    noisy = tissue + rng.normal(0.0, 0.02 * np.max(tissue), (12, TIMES.size))
    fits = D.fit_fermi_curves(TIMES, AIF, noisy)
    errors = fits.mbf_ml_min_g / D.flow_to_mbf(TRUTH[0]) - 1
    assert np.median(np.abs(errors)) < 0.10
    assert abs(np.mean(errors)) < 0.05
    assert np.all(fits.converged)
    # NRMSE ~ noise SD over the RMS of the curve (a little less: 4 fitted parameters).
    expected_nrmse = 0.02 * np.max(tissue) / np.sqrt(np.mean(tissue ** 2))
    assert np.all((fits.nrmse > 0.6 * expected_nrmse) & (fits.nrmse < 1.2 * expected_nrmse))


def test_fit_curves_matches_single_fits():
    tissue = np.stack([fermi_tissue_dense(TIMES, AIF, TRUTH), fermi_tissue_dense(TIMES, AIF, (0.02, 6.0, 0.3, 0.0))])
    fits = D.fit_fermi_curves(TIMES, AIF, tissue)
    assert fits.flow_per_s.shape == (2,) and fits.fitted_mM.shape == tissue.shape
    assert fits.converged.dtype == bool and fits.at_bound.dtype == bool
    single = D.fit_fermi_curve(TIMES, AIF, tissue[1])
    assert fits.flow_per_s[1] == pytest.approx(single.flow_per_s, rel=1e-9)
    assert fits.mbf_ml_min_g[1] == pytest.approx(D.flow_to_mbf(0.02), rel=0.02)
    # A delay of 0 is ordinary, not flagged as a bound.
    assert not fits.at_bound[1]


def test_fit_curves_tolerates_an_all_zero_curve():
    fits = D.fit_fermi_curves(TIMES, AIF, np.zeros((1, TIMES.size)))
    assert np.isnan(fits.nrmse[0]) and fits.at_bound[0]
    assert fits.flow_per_s[0] == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("truth", [(0.3, 3.0, 1.0, 0.5), (0.04, 3.0, 0.8, 7.0)], ids=["flow", "delay"])
def test_fit_flags_truth_outside_bounds(truth):
    tissue = fermi_tissue_dense(TIMES, AIF, truth)
    fit = D.fit_fermi_curve(TIMES, AIF, tissue)
    assert fit.at_bound


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

TISSUE = fermi_tissue_dense(TIMES, AIF, TRUTH)


@pytest.mark.parametrize("times, aif, tissue, message", [
    (TIMES[::-1], AIF, TISSUE, "strictly increasing"),
    (np.where(np.arange(TIMES.size) == 5, TIMES[4], TIMES), AIF, TISSUE, "strictly increasing"),
    (TIMES[:2], AIF[:2], TISSUE[:2], "at least 3"),
    (TIMES[:, None], AIF, TISSUE, "1-D"),
    (np.where(np.arange(TIMES.size) == 5, np.nan, TIMES), AIF, TISSUE, "NaN"),
    (TIMES * 1000, AIF, TISSUE, "milliseconds"),
    (TIMES, AIF[:-1], TISSUE, "AIF must have shape"),
    (TIMES, np.where(np.arange(TIMES.size) == 5, np.inf, AIF), TISSUE, "AIF contains NaN"),
    (TIMES, np.zeros_like(AIF), TISSUE, "AIF is zero"),
    (TIMES, AIF, TISSUE[:-1], "tissue curve must have shape"),
    (TIMES, AIF, np.where(np.arange(TIMES.size) == 5, np.nan, TISSUE), "tissue curve contains NaN"),
])
def test_fit_fermi_curve_rejects_bad_input(times, aif, tissue, message):
    with pytest.raises(AIAIFInputError, match=message):
        D.fit_fermi_curve(times, aif, tissue)


def test_other_validation_errors():
    with pytest.raises(AIAIFInputError, match="tissue curves must have shape"):
        D.fit_fermi_curves(TIMES, AIF, TISSUE)
    with pytest.raises(AIAIFInputError, match="integration step"):
        D.convolution_matrix(TIMES, AIF, step_s=0.0)
    with pytest.raises(AIAIFInputError, match="integration step"):
        D.lag_cell_edges(TIMES, step_s="fine")
    with pytest.raises(AIAIFInputError, match="lag-cell means"):
        D.convolve_on_frames(TIMES, AIF, np.ones(7))

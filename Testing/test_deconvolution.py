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


# ---------------------------------------------------------------------------
# Reference fit on a window
# ---------------------------------------------------------------------------

def test_window_convolution_is_the_full_matrix_cut_to_the_window():
    """The matrix of the first n frames equals the full matrix's rows and cells for them."""
    n_window = 25
    full = D.convolution_matrix(TIMES, AIF)
    window = D.convolution_matrix(TIMES[:n_window], AIF[:n_window])
    np.testing.assert_array_equal(full[:n_window, window.shape[1]:], 0.0)
    np.testing.assert_allclose(full[:n_window, :window.shape[1]], window, rtol=1e-12, atol=1e-14)


def test_reference_fit_on_a_window_fits_only_the_window_and_models_every_frame():
    end = TIMES[30]
    tissue = fermi_tissue_dense(TIMES, AIF, TRUTH)
    # Frames after the window are ruined: a window fit must not see them.
    ruined = np.where(TIMES > end, 10.0 * tissue, tissue)
    fit = D.fit_fermi_curve(TIMES, AIF, ruined, fit_end_s=end)
    truncated = D.fit_fermi_curve(TIMES[:31], AIF[:31], ruined[:31])
    assert fit.flow_per_s == pytest.approx(truncated.flow_per_s, rel=1e-9)
    assert fit.mbf_ml_min_g == pytest.approx(D.flow_to_mbf(TRUTH[0]), rel=0.02)
    assert fit.fitted_mM.shape == TIMES.shape
    np.testing.assert_allclose(fit.fitted_mM, tissue, atol=2e-3 * np.max(tissue))
    whole = D.fit_fermi_curve(TIMES, AIF, ruined)
    assert abs(whole.mbf_ml_min_g / D.flow_to_mbf(TRUTH[0]) - 1) > 0.05
    curves = D.fit_fermi_curves(TIMES, AIF, np.stack([ruined, tissue]), fit_end_s=end)
    assert curves.fitted_mM.shape == (2, TIMES.size)
    assert curves.flow_per_s[0] == pytest.approx(fit.flow_per_s, rel=1e-9)


# ---------------------------------------------------------------------------
# First-pass window
# ---------------------------------------------------------------------------

UNIFORM_TIMES = 0.5 * np.arange(80)


def triangle_aif(times_s, arrival_s, peak_s, back_s, recirculation_slope=0.0):
    """Triangular first pass (peak 6 mM), 0 at ``back_s``, then a linear rise (mM/s) or nothing."""
    rise = 6.0 * (times_s - arrival_s) / (peak_s - arrival_s)
    fall = 6.0 * (back_s - times_s) / (back_s - peak_s)
    bolus = np.clip(np.minimum(rise, fall), 0.0, None)
    return bolus + recirculation_slope * np.clip(times_s - back_s, 0.0, None)


def test_first_pass_ends_at_the_trough_before_recirculation():
    # Half maximum at 11 s and 14.75 s (FWHM 3.75 s); the trough at 17.5 s is inside 14.75-18.5 s.
    aif = triangle_aif(UNIFORM_TIMES, 10.0, 12.0, 17.5, recirculation_slope=0.2)
    assert D.first_pass_end_s(UNIFORM_TIMES, aif) == pytest.approx(17.5)
    # Clock offset and non-uniform frames: the lowest frame, now 17.7 s after the start.
    times = UNIFORM_TIMES + np.where(np.arange(80) % 4 == 0, 0.0, 0.2) + 100.0
    assert D.first_pass_end_s(times, triangle_aif(times - 100.0, 10.0, 12.0, 17.5, 0.2)) == pytest.approx(117.7)


def test_first_pass_end_is_stable_against_noise_on_the_aif():
    aif = triangle_aif(UNIFORM_TIMES, 10.0, 12.0, 17.5, recirculation_slope=0.2)
    rng = np.random.default_rng(1)
    ends = [D.first_pass_end_s(UNIFORM_TIMES, aif + rng.normal(0.0, 0.06, aif.size)) for _ in range(20)]
    assert np.all(np.abs(np.array(ends) - 17.5) <= 1.0)


def test_first_pass_ends_one_fwhm_after_the_half_maximum_fall_without_recirculation():
    # Half maximum at 11 s on the way up, 12 + 3.5 ln 2 = 14.43 s on an exponential
    # way down that never turns: the window ends at the last frame before
    # 14.43 + 3.43 = 17.85 s.
    aif = np.where(UNIFORM_TIMES <= 12.0, triangle_aif(UNIFORM_TIMES, 10.0, 12.0, 14.0),
                   6.0 * np.exp(-(UNIFORM_TIMES - 12.0) / 3.5))
    assert D.first_pass_end_s(UNIFORM_TIMES, aif) == pytest.approx(17.5)


def test_the_first_pass_of_a_broad_bolus_ends_at_the_lag_horizon():
    # Trough at 22 s, but the fit sees no lags beyond the horizon after the 14 s peak.
    aif = triangle_aif(UNIFORM_TIMES, 10.0, 14.0, 22.0, recirculation_slope=0.2)
    assert D.first_pass_end_s(UNIFORM_TIMES, aif) == pytest.approx(14.0 + D.FIRST_PASS_LAG_HORIZON_S)
    slow = np.where(UNIFORM_TIMES <= 14.0, triangle_aif(UNIFORM_TIMES, 10.0, 14.0, 18.0),
                    6.0 * np.exp(-(UNIFORM_TIMES - 14.0) / 4.0))
    assert D.first_pass_end_s(UNIFORM_TIMES, slow) == pytest.approx(14.0 + D.FIRST_PASS_LAG_HORIZON_S)


def test_first_pass_lasts_at_least_the_longest_tissue_delay_after_the_peak():
    # Narrow bolus: trough at 12 s, but the window must reach peak + 5 s.
    aif = triangle_aif(UNIFORM_TIMES, 10.0, 11.0, 12.0, recirculation_slope=0.2)
    delay_bound = D.FERMI_UPPER_BOUNDS[D.FERMI_PARAMETERS.index("delay_s")]
    assert D.first_pass_end_s(UNIFORM_TIMES, aif) == pytest.approx(11.0 + delay_bound)


def test_first_pass_of_an_aif_that_never_falls_is_the_whole_curve():
    aif = np.clip(UNIFORM_TIMES - 10.0, 0.0, None)
    assert D.first_pass_end_s(UNIFORM_TIMES, aif) == UNIFORM_TIMES[-1]


def test_first_pass_end_rejects_an_aif_without_a_positive_peak():
    with pytest.raises(AIAIFInputError, match="no positive peak"):
        D.first_pass_end_s(TIMES, -AIF)


# ---------------------------------------------------------------------------
# Batched fit
# ---------------------------------------------------------------------------

#: Fermi truths of the batched tests: stress, rest-like, ischaemic with a long
#: shoulder, no delay, and a shoulder at its bound tau0 = 0.
BATCH_TRUTHS = ((0.045, 4.0, 0.6, 0.7), (0.02, 6.0, 0.3, 0.0), (0.015, 8.0, 1.5, 1.8), (0.06, 2.0, 1.0, 0.3),
                (0.035, 0.0, 0.4, 1.2))


def batch_curves(truths, n_each=1, noise=0.0, seed=0):
    clean = np.repeat(np.stack([fermi_tissue_dense(TIMES, AIF, truth) for truth in truths]), n_each, axis=0)
    rng = np.random.default_rng(seed)
    return clean + rng.normal(0.0, noise * np.max(clean), clean.shape), np.repeat(np.array(truths), n_each, axis=0)


def test_batched_model_derivatives_match_finite_differences():
    """The batched solver's analytic Jacobian (of the F = 1 antiderivative at the cell edges)."""
    edges = D.lag_cell_edges(TIMES, D.BATCHED_STEP_S)
    # Delays off the cell edges: the derivative by the delay jumps where an edge crosses the onset.
    shapes = np.array([[0.0, 0.01, 0.0], [4.0, 0.6, 0.73], [12.0, 5.0, 3.33], [1.3, 9.0, 4.87]])
    values = D._unit_fermi_antiderivative(edges, *shapes.T, derivatives=True)
    np.testing.assert_allclose(values[0], D.fermi_residue_integral(edges, 1.0, *[p[:, None] for p in shapes.T]),
                               rtol=1e-12, atol=1e-12)
    for index in range(3):
        step = 1e-6 * np.maximum(1.0, shapes[:, index])
        up, down = shapes.copy(), shapes.copy()
        up[:, index] += step
        down[:, index] = np.maximum(down[:, index] - step, 0.0)  # one-sided at the bound 0
        difference = (D._unit_fermi_antiderivative(edges, *up.T, derivatives=False)
                      - D._unit_fermi_antiderivative(edges, *down.T, derivatives=False)) / (up - down)[:, index, None]
        scale = np.max(np.abs(values[index + 1]), axis=1, keepdims=True)
        assert np.all(np.abs(values[index + 1] - difference) <= 1e-4 * scale), D.FERMI_PARAMETERS[index + 1]


def test_batched_fit_matches_the_reference_on_noisy_curves():
    tissue, _ = batch_curves(BATCH_TRUTHS, n_each=3, noise=0.03)
    end = D.first_pass_end_s(TIMES, AIF)
    batched = D.fit_fermi_batched(TIMES, AIF, tissue, step_s=D.INTEGRATION_STEP_S, fit_end_s=end)
    reference = D.fit_fermi_curves(TIMES, AIF, tissue, step_s=D.INTEGRATION_STEP_S, fit_end_s=end)
    assert np.all(batched.converged)
    np.testing.assert_allclose(batched.mbf_ml_min_g, reference.mbf_ml_min_g, rtol=0.01)
    np.testing.assert_allclose(batched.nrmse, reference.nrmse, rtol=1e-3)
    # Same minimum: the least-squares costs over the window agree (a curve whose
    # shoulder outlasts the window has a flat valley in tau0 and k, where the
    # two solvers may stop 0.2 % apart in cost).
    n_window = int(np.searchsorted(TIMES, end, side="right"))
    costs = [np.sum((fit.fitted_mM[:, :n_window] - tissue[:, :n_window]) ** 2, axis=1) for fit in (batched, reference)]
    assert np.all(costs[0] <= costs[1] * (1 + 2e-3))
    assert np.median(np.abs(costs[0] / costs[1] - 1)) < 1e-6


def test_batched_fit_matches_the_reference_on_whole_curves():
    tissue, _ = batch_curves(BATCH_TRUTHS[:3], n_each=2, noise=0.02, seed=5)
    batched = D.fit_fermi_batched(TIMES, AIF, tissue, step_s=D.INTEGRATION_STEP_S, fit_end_s=np.inf)
    reference = D.fit_fermi_curves(TIMES, AIF, tissue)
    np.testing.assert_allclose(batched.mbf_ml_min_g, reference.mbf_ml_min_g, rtol=0.01)


def test_batched_fit_recovers_noise_free_parameters_with_delays_on_non_uniform_frames():
    tissue, truths = batch_curves(BATCH_TRUTHS)
    fit = D.fit_fermi_batched(TIMES, AIF, tissue)
    assert np.all(fit.converged)
    np.testing.assert_allclose(fit.flow_per_s, truths[:, 0], rtol=0.02)
    np.testing.assert_allclose(fit.delay_s, truths[:, 3], atol=0.05)
    assert np.all(fit.nrmse < 2e-3)
    n_window = int(np.searchsorted(TIMES, D.first_pass_end_s(TIMES, AIF), side="right"))
    np.testing.assert_allclose(fit.fitted_mM[:, :n_window], tissue[:, :n_window], atol=2e-3 * np.max(tissue))
    # Whole curves also pin down the shape after the first pass.
    whole = D.fit_fermi_batched(TIMES, AIF, tissue, fit_end_s=np.inf)
    params = np.column_stack([whole.flow_per_s, whole.tau0_s, whole.k_per_s, whole.delay_s])
    np.testing.assert_allclose(params, truths, rtol=0.03, atol=0.05)
    np.testing.assert_allclose(whole.fitted_mM, tissue, atol=2e-3 * np.max(tissue))
    # None lies on a flagged bound: a delay of 0 and a shoulder tau0 = 0 are ordinary shapes.
    assert np.any(truths[:, 1] == 0.0) and not np.any(whole.at_bound)


def test_batched_fitted_curves_are_the_model_at_every_frame():
    tissue, _ = batch_curves(BATCH_TRUTHS[:2], noise=0.02)
    fit = D.fit_fermi_batched(TIMES, AIF, tissue)
    model = D.fermi_tissue_curves(D.convolution_matrix(TIMES, AIF, D.BATCHED_STEP_S),
                                  D.lag_cell_edges(TIMES, D.BATCHED_STEP_S),
                                  fit.flow_per_s, fit.tau0_s, fit.k_per_s, fit.delay_s)
    np.testing.assert_allclose(fit.fitted_mM, model, rtol=1e-9, atol=1e-12)
    n_window = int(np.searchsorted(TIMES, D.first_pass_end_s(TIMES, AIF), side="right"))
    residual = fit.fitted_mM[:, :n_window] - tissue[:, :n_window]
    expected = np.sqrt(np.mean(residual ** 2, axis=1) / np.mean(tissue[:, :n_window] ** 2, axis=1))
    np.testing.assert_allclose(fit.nrmse, expected, rtol=1e-6)


def test_batched_default_lag_step_changes_mbf_by_far_less_than_one_percent():
    tissue, truths = batch_curves(BATCH_TRUTHS)
    coarse = D.fit_fermi_batched(TIMES, AIF, tissue)
    fine = D.fit_fermi_batched(TIMES, AIF, tissue, step_s=D.INTEGRATION_STEP_S)
    np.testing.assert_allclose(coarse.mbf_ml_min_g, fine.mbf_ml_min_g, rtol=3e-3)


def test_batched_fit_stays_within_bounds_and_flags_them():
    outside = ((0.3, 3.0, 1.0, 0.5), (0.04, 3.0, 0.8, 7.0))
    clean, _ = batch_curves(outside)
    fit = D.fit_fermi_batched(TIMES, AIF, clean)
    assert np.all(fit.converged) and np.all(fit.at_bound)
    assert fit.flow_per_s[0] == D.FERMI_UPPER_BOUNDS[0]
    assert fit.delay_s[1] == D.FERMI_UPPER_BOUNDS[3]
    tissue, _ = batch_curves(outside + BATCH_TRUTHS, n_each=4, noise=0.08, seed=3)
    fit = D.fit_fermi_batched(TIMES, AIF, tissue)
    params = np.column_stack([fit.flow_per_s, fit.tau0_s, fit.k_per_s, fit.delay_s])
    assert np.all(fit.converged)
    assert np.all((params >= D.FERMI_LOWER_BOUNDS) & (params <= D.FERMI_UPPER_BOUNDS))
    assert np.all(fit.flow_per_s[:4] == D.FERMI_UPPER_BOUNDS[0]) and np.all(fit.at_bound[:4])


def test_batched_fit_turns_unusable_pixels_into_nan_without_raising():
    tissue, _ = batch_curves(BATCH_TRUTHS[:1], n_each=6, noise=0.02)
    tissue[1] = 0.0
    tissue[2, 10] = np.nan
    tissue[3, 5] = np.inf
    tissue[4] *= 1e300  # overflows the cost: the fit fails
    tissue[5, -1] = np.nan  # outside the first-pass window: still fitted
    fit = D.fit_fermi_batched(TIMES, AIF, tissue)
    failed = np.array([False, True, True, True, True, False])
    for name in ("flow_per_s", "tau0_s", "k_per_s", "delay_s", "nrmse"):
        values = getattr(fit, name)
        assert np.all(np.isnan(values[failed])) and np.all(np.isfinite(values[~failed])), name
    assert np.all(np.isnan(fit.fitted_mM[failed]))
    np.testing.assert_array_equal(fit.converged, ~failed)
    assert not np.any(fit.at_bound[failed])
    assert fit.flow_per_s[5] == pytest.approx(fit.flow_per_s[0], rel=0.1)


def test_batched_fit_reports_no_convergence_as_nan(monkeypatch):
    monkeypatch.setattr(D.batched_iteration, "BATCHED_MAX_EVALUATIONS", 2)
    tissue, _ = batch_curves(BATCH_TRUTHS, noise=0.02)
    fit = D.fit_fermi_batched(TIMES, AIF, tissue)
    assert not np.any(fit.converged)
    assert np.all(np.isnan(fit.flow_per_s)) and np.all(np.isnan(fit.mbf_ml_min_g))


def test_batched_fit_reports_progress():
    calls = []
    tissue, _ = batch_curves(BATCH_TRUTHS, noise=0.02)
    D.fit_fermi_batched(TIMES, AIF, tissue, progress=lambda fraction, message: calls.append((fraction, message)))
    fractions = [fraction for fraction, _ in calls]
    assert len(calls) >= 4
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert np.all(np.diff(fractions) >= 0) and all(0.0 <= f <= 1.0 for f in fractions)
    assert all(isinstance(message, str) and message for _, message in calls)


def test_batched_fit_of_no_usable_curve_returns_empty_results():
    fit = D.fit_fermi_batched(TIMES, AIF, np.zeros((2, TIMES.size)))
    assert not np.any(fit.converged) and np.all(np.isnan(fit.flow_per_s))
    empty = D.fit_fermi_batched(TIMES, AIF, np.zeros((0, TIMES.size)))
    assert empty.flow_per_s.shape == (0,) and empty.fitted_mM.shape == (0, TIMES.size)


@pytest.mark.parametrize("kwargs, message", [
    ({"tissue_mM_2d": TISSUE}, "tissue curves must have shape"),
    ({"tissue_mM_2d": TISSUE[None, :-1]}, "tissue curves must have shape"),
    ({"fit_end_s": TIMES[2]}, "fit window"),
    ({"fit_end_s": np.nan}, "end of the fit window"),
    ({"fit_end_s": "late"}, "end of the fit window"),
    ({"step_s": -0.1}, "integration step"),
    ({"aif_mM": np.zeros_like(AIF)}, "AIF is zero"),
    ({"times_s": TIMES[::-1]}, "strictly increasing"),
])
def test_batched_fit_rejects_bad_input(kwargs, message):
    arguments = {"times_s": TIMES, "aif_mM": AIF, "tissue_mM_2d": TISSUE[None, :]}
    arguments.update(kwargs)
    with pytest.raises(AIAIFInputError, match=message):
        D.fit_fermi_batched(**arguments)


def test_reference_fit_rejects_a_window_too_short():
    with pytest.raises(AIAIFInputError, match="fit window"):
        D.fit_fermi_curve(TIMES, AIF, TISSUE, fit_end_s=TIMES[1])


def test_fits_reject_a_window_before_contrast_arrival():
    late_aif = np.where(TIMES < 20.0, 0.0, AIF)
    with pytest.raises(AIAIFInputError, match="zero at every frame of the fit window"):
        D.fit_fermi_batched(TIMES, late_aif, TISSUE[None, :], fit_end_s=15.0)
    with pytest.raises(AIAIFInputError, match="zero at every frame of the fit window"):
        D.fit_fermi_curves(TIMES, late_aif, TISSUE[None, :], fit_end_s=15.0)


def test_batched_second_start_only_ever_lowers_the_cost(monkeypatch):
    """With the shoulder outlasting the first-pass window the cost has several minima."""
    tissue, _ = batch_curves([(0.015, 8.0, 1.5, 1.8)], n_each=30, noise=0.05, seed=11)
    n_window = int(np.searchsorted(TIMES, D.first_pass_end_s(TIMES, AIF), side="right"))
    costs = {}
    for name, threshold in (("first start only", -1.0), ("both starts", np.inf)):
        monkeypatch.setattr(D.batched, "BATCHED_SECOND_START", threshold)
        fit = D.fit_fermi_batched(TIMES, AIF, tissue)
        assert np.all(fit.converged)
        costs[name] = np.sum((fit.fitted_mM[:, :n_window] - tissue[:, :n_window]) ** 2, axis=1)
    assert np.all(costs["both starts"] <= costs["first start only"] * (1 + 1e-12))
    assert np.any(costs["both starts"] < costs["first start only"] * (1 - 1e-3))


# ---------------------------------------------------------------------------
# Batched fit: a curve's result depends on that curve alone
# ---------------------------------------------------------------------------

#: The batch truths and curves whose Fermi roll-off is sharp or lies at or
#: beyond the end of the first-pass window, where the cost has long flat
#: valleys and several local minima: the curves on which a fit's path and
#: its stopping point are most easily changed.
HARD_TRUTHS = BATCH_TRUTHS + ((0.012, 12.0, 10.0, 0.8), (0.01, 9.0, 3.0, 0.4), (0.02, 0.0, 0.05, 0.7),
                              (0.015, 8.0, 1.5, 1.8))


def hard_curves(seed):
    return batch_curves(HARD_TRUTHS, n_each=6, noise=0.05, seed=seed)[0]


FIT_FIELDS = ("flow_per_s", "tau0_s", "k_per_s", "delay_s", "nrmse", "converged", "at_bound", "fitted_mM")


def assert_same_fits(fit, reference, rows):
    """Every field of ``fit`` equals, bit for bit, the rows ``rows`` of ``reference``."""
    for name in FIT_FIELDS:
        np.testing.assert_array_equal(getattr(fit, name), getattr(reference, name)[rows], err_msg=name)


def fit_in_order(tissue, order):
    """Fit the curves in ``order`` and return the fit rearranged to the original order."""
    fit = D.fit_fermi_batched(TIMES, AIF, tissue[order])
    inverse = np.argsort(order)
    return D.FermiFit(**{name: getattr(fit, name)[inverse] for name in FIT_FIELDS})


def test_batched_fit_of_a_curve_is_the_same_bits_whatever_its_batch():
    """Alone, reversed, permuted, in chunks, beside unusable curves: the very same result.

    Identical, not close: each curve's products are one BLAS call of a fixed
    shape and its sums run in a fixed order, so no operation on a curve sees
    another curve, on any machine.
    """
    tissue = hard_curves(seed=6)
    whole = D.fit_fermi_batched(TIMES, AIF, tissue)
    assert np.all(whole.converged)
    rows = np.arange(tissue.shape[0])
    for row in rows[::5]:
        assert_same_fits(D.fit_fermi_batched(TIMES, AIF, tissue[row:row + 1]), whole, [row])
    assert_same_fits(fit_in_order(tissue, rows[::-1]), whole, rows)
    for seed in range(2):
        assert_same_fits(fit_in_order(tissue, np.random.default_rng(seed).permutation(rows)), whole, rows)
    for size in (3, 7, 16):
        for start in range(0, rows.size, size):
            assert_same_fits(D.fit_fermi_batched(TIMES, AIF, tissue[start:start + size]), whole, rows[start:start + size])
    unusable = np.zeros((4, TIMES.size))
    unusable[1, 10] = np.nan
    unusable[2] = 1e300 * tissue[0]
    unusable[3] = 1e6 * tissue[1]  # usable, but a million times the others
    mixed = np.insert(tissue, [0, 9, 20, rows.size], unusable, axis=0)
    fit = D.fit_fermi_batched(TIMES, AIF, mixed)
    kept = np.ones(mixed.shape[0], dtype=bool)
    kept[[0, 10, 22, mixed.shape[0] - 1]] = False
    assert_same_fits(D.FermiFit(**{name: getattr(fit, name)[kept] for name in FIT_FIELDS}), whole, rows)


@pytest.mark.parametrize("seed", [5, 6])
def test_batched_fit_moves_mbf_by_far_less_than_a_tiny_change_of_the_curves(seed):
    """Curves changed by 1e-14 of themselves (far below any noise, the size of
    another CPU's rounding): MBF changes by less than 1e-8 of itself.

    Every decision of the fit (start, step, stop, choice of start) either
    resolves ties by a fixed order or does not change where it ends: at the
    minimum, not where the path happened to be when a tolerance was met.
    """
    tissue = hard_curves(seed)
    mbf = D.fit_fermi_batched(TIMES, AIF, tissue).mbf_ml_min_g
    for draw in range(3):
        changed = tissue * (1.0 + 1e-14 * np.random.default_rng(draw).standard_normal(tissue.shape))
        np.testing.assert_allclose(D.fit_fermi_batched(TIMES, AIF, changed).mbf_ml_min_g, mbf, rtol=1e-8)


def test_batched_fit_finds_a_minimum_on_a_lag_cell_edge_exactly():
    """The model has a kink in the delay at every lag-cell edge; a minimum there is held on the edge."""
    matrix = D.convolution_matrix(TIMES, AIF, D.BATCHED_STEP_S)
    edges = D.lag_cell_edges(TIMES, D.BATCHED_STEP_S)
    truth = (0.035, 0.0, 0.4, edges[5])
    clean = D.fermi_tissue_curves(matrix, edges, *truth)
    noisy = clean + np.random.default_rng(1).normal(0.0, 0.01 * np.max(clean), (4, clean.size))
    fit = D.fit_fermi_batched(TIMES, AIF, noisy)
    near_edge = np.min(np.abs(fit.delay_s[:, None] - edges[None, :]), axis=1) < 1e-4
    assert np.any(near_edge)
    assert np.all(np.isin(fit.delay_s[near_edge], edges))

"""Pixelwise MBF map: Fermi shape from the neighbourhood, flow from the pixel."""

import numpy as np
import pytest

from AIAIFLib import deconvolution, mbf_map
from AIAIFLib.errors import AIAIFInputError

TIMES = np.cumsum(np.full(45, 0.85)) - 0.85


def gamma_aif(times, arrival=5.0, peak_mM=6.0, rise=3.0):
    t = np.clip(times - arrival, 0.0, None)
    shape = 3.0
    curve = (t / rise) ** shape * np.exp(shape * (1.0 - t / rise))
    return peak_mM * curve + 0.08 * peak_mM * (1.0 - np.exp(-t / 10.0))


def ring_mask(size=40, inner=8.0, outer=14.0):
    jj, ii = np.mgrid[0:size, 0:size] - size / 2.0
    radius = np.hypot(ii, jj)
    return ((radius >= inner) & (radius < outer))[None]


def test_neighbourhood_means_stay_inside_the_mask_and_skip_missing_curves():
    mask = np.zeros((2, 9, 9), dtype=bool)
    mask[0, 2:7, 2:7] = True
    mask[1, 4, 4] = True
    curves = np.ones((np.count_nonzero(mask), 3))
    curves[-1] = 50.0  # the other slice's only pixel must not leak into slice 0
    curves[3] = np.nan  # a missing curve is left out, not averaged as zero
    smoothed = mbf_map.neighbourhood_curves(curves, mask, (1.0, 1.0), sigma_mm=1.5)
    np.testing.assert_allclose(smoothed[:-1], 1.0)
    np.testing.assert_allclose(smoothed[-1], 50.0)


def test_neighbourhood_width_is_in_millimetres():
    mask = np.ones((1, 1, 41), dtype=bool)
    curves = np.zeros((41, 1))
    curves[20] = 1.0
    fine = mbf_map.neighbourhood_curves(curves, mask, (1.0, 1.0), sigma_mm=2.0)[:, 0]
    coarse = mbf_map.neighbourhood_curves(curves, mask, (1.0, 2.0), sigma_mm=2.0)[:, 0]
    assert np.count_nonzero(fine > 1e-3) > np.count_nonzero(coarse > 1e-3)


@pytest.mark.parametrize("curves, spacing, message", [
    (np.ones((5, 3)), (1.0, 1.0), "one curve per masked pixel"),
    (np.ones((9, 3)), (1.0, -1.0), "pixel spacing"),
])
def test_bad_neighbourhood_inputs(curves, spacing, message):
    with pytest.raises(AIAIFInputError, match=message):
        mbf_map.neighbourhood_curves(curves, np.ones((1, 3, 3), dtype=bool), spacing)


def test_noisy_low_flow_map_is_unbiased_and_keeps_pixel_flow():
    rng = np.random.default_rng(3)
    aif = gamma_aif(TIMES)
    mask = ring_mask()
    n = np.count_nonzero(mask)
    # A slowly filling (ischaemic-like) response, flow varying from pixel to pixel around 0.9 mL/min/g.
    flow = rng.uniform(0.012, 0.019, n)
    matrix = deconvolution.convolution_matrix(TIMES, aif, deconvolution.BATCHED_STEP_S)
    edges = deconvolution.lag_cell_edges(TIMES, deconvolution.BATCHED_STEP_S)
    clean = deconvolution.fermi_tissue_curves(matrix, edges, flow, 7.0, 1.5, 0.6)
    noisy = clean + rng.normal(0.0, 0.12 * clean.max(), clean.shape)
    end = deconvolution.first_pass_end_s(TIMES, aif)
    fit = mbf_map.fit_mbf_map(TIMES, aif, noisy, mask, (1.6, 1.6), fit_end_s=end)
    truth = deconvolution.flow_to_mbf(flow)
    assert fit.converged.all()
    assert np.mean(fit.mbf_ml_min_g) == pytest.approx(np.mean(truth), rel=0.05)
    assert np.median(fit.mbf_ml_min_g / truth) == pytest.approx(1.0, abs=0.05)
    # The pixel's own flow is kept: the map follows the drawn pixel flows, not the neighbourhood's mean.
    assert np.corrcoef(fit.mbf_ml_min_g, truth)[0, 1] > 0.5
    assert not fit.flow_at_bound.any()
    assert fit.fitted_mM.shape == noisy.shape and np.all(np.isfinite(fit.nrmse))


def test_flows_on_a_bound_are_flagged():
    aif = gamma_aif(TIMES, peak_mM=0.3)  # a grossly underestimated AIF: tissue far above what any flow explains
    mask = ring_mask(size=20, inner=4.0, outer=7.0)
    n = np.count_nonzero(mask)
    matrix = deconvolution.convolution_matrix(TIMES, gamma_aif(TIMES), deconvolution.BATCHED_STEP_S)
    edges = deconvolution.lag_cell_edges(TIMES, deconvolution.BATCHED_STEP_S)
    tissue = deconvolution.fermi_tissue_curves(matrix, edges, np.full(n, 0.05), 2.0, 1.0, 0.5)
    fit = mbf_map.fit_mbf_map(TIMES, aif, tissue, mask, (1.6, 1.6))
    assert fit.flow_at_bound.all() and fit.at_bound.all()
    np.testing.assert_allclose(fit.flow_per_s, deconvolution.FERMI_UPPER_BOUNDS[0])


def test_lv_blood_in_border_pixels_is_not_read_as_flow():
    rng = np.random.default_rng(8)
    aif = gamma_aif(TIMES)
    mask = ring_mask()
    n = np.count_nonzero(mask)
    matrix = deconvolution.convolution_matrix(TIMES, aif, deconvolution.BATCHED_STEP_S)
    edges = deconvolution.lag_cell_edges(TIMES, deconvolution.BATCHED_STEP_S)
    flow = np.full(n, 0.015)  # ischaemic-like
    clean = deconvolution.fermi_tissue_curves(matrix, edges, flow, 7.0, 1.5, 0.6)
    jj, ii = np.nonzero(mask[0])
    border = np.hypot(ii - 20.0, jj - 20.0) < 9.0  # the inner ring touches the blood pool
    blood = np.where(border, 0.08, 0.0)
    curves = clean + blood[:, None] * aif[None, :] + rng.normal(0.0, 0.02 * clean.max(), clean.shape)
    pool = np.zeros_like(mask)
    pool[0] = np.hypot(*(np.mgrid[0:40, 0:40] - 20.0)) < 8.0
    near = mbf_map.near_blood_pool(mask, pool, (1.6, 1.6))
    assert near[border].all() and 0 < np.count_nonzero(near) < n
    fit = mbf_map.fit_mbf_map(TIMES, aif, curves, mask, (1.6, 1.6), near_blood=near)
    plain = mbf_map.fit_mbf_map(TIMES, aif, curves, mask, (1.6, 1.6))
    truth = deconvolution.flow_to_mbf(0.015)
    assert np.median(fit.blood_fraction[border]) > 0.03
    assert np.all(fit.blood_fraction[~near] == 0.0)
    np.testing.assert_allclose(np.median(fit.mbf_ml_min_g[~near]), truth, rtol=0.05)
    assert np.all(np.isfinite(fit.fitted_mM))
    # Without the blood term the border pixels read their blood as flow; with it, less than half that error
    # remains (their neighbourhood shapes still hold some blood).
    plain_error = np.median(plain.mbf_ml_min_g[border]) - truth
    assert plain_error > 0.5 * truth
    assert abs(np.median(fit.mbf_ml_min_g[border]) - truth) < 0.5 * plain_error

"""Simulated validation studies: disjoint seeds, the saturation effect on MBF."""

import numpy as np
import pytest

from AIAIFLib import studies
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.simulation import simulate_aif_pairs, simulate_phantom


def test_aif_test_set_is_windowed_normalised_and_disjoint_from_plain_seeds():
    test_set = studies.simulated_aif_test_set(40, seed=7)
    assert test_set["times_s"].shape == (40, 64)
    np.testing.assert_allclose(test_set["saturated"].max(axis=1), 1.0)
    assert np.all(test_set["reference"].max(axis=1) > 1.2)
    # A training set drawn with the same integer seed shares no curve with the test set.
    training = simulate_aif_pairs(40, n_frames=90, seed=7)
    assert not np.any(np.isin(np.round(test_set["pairs"].params["peak_conc_mM"], 12),
                              np.round(training.params["peak_conc_mM"], 12)))


@pytest.fixture(scope="module")
def comparison():
    return studies.phantom_quantification(simulate_phantom(seed=4, ischemic="LCX", n_frames=50),
                                          aifs=("true", "saturated"), tissue_conversion="model")


def test_saturated_aif_overestimates_mbf(comparison):
    assert np.all(comparison["saturated"] > 1.5 * comparison["true"])


def test_true_aif_mbf_ranks_ischaemic_segments_lowest(comparison):
    lcx = np.array([5, 6, 11, 12, 16]) - 1
    others = np.setdiff1d(np.arange(16), lcx)
    assert comparison["true"][lcx].max() < comparison["true"][others].min()
    assert np.corrcoef(comparison["truth"], comparison["true"])[0, 1] > 0.9


def test_phantom_study_carries_the_phantom_arrays():
    phantom = simulate_phantom(seed=2, n_frames=22)
    study = studies.phantom_study(phantom)
    assert study.frames is phantom.frames and np.array_equal(study.myocardium_mask, phantom.myocardium_mask)
    assert study.rv_insertion_labels == tuple("RV insertion anterior {}".format(level) for level in phantom.levels)


def test_simulated_evaluation_rejects_an_unknown_test_method():
    with pytest.raises(AIAIFInputError, match="Unknown test method"):
        studies.simulated_evaluation(n_curves=5, n_phantoms=1, test="dual")

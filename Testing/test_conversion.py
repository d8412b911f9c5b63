"""The paper's linear signal-to-concentration conversion."""

import numpy as np
import pytest

from AIAIFLib import constants as K
from AIAIFLib.conversion import baseline_signal, linear_concentration_mM
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.sequence import linear_reference_signal


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

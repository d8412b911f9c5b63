"""The paper's AIF window: 4 beats before arrival, 64 frames, padding."""

import numpy as np
import pytest

from AIAIFLib.aif import arrival_index_from_time, network_window
from AIAIFLib.errors import AIAIFInputError


def test_window_starts_four_beats_before_arrival_and_keeps_curves_aligned():
    times = np.cumsum(np.full((2, 100), 0.8), axis=1) - 0.8
    curves = np.arange(200.0).reshape(2, 100)
    window_times, (first, second), start = network_window(times, np.stack([curves, -curves]), [10, 3])
    np.testing.assert_array_equal(start, [6, 0])
    assert first.shape == (2, 64)
    np.testing.assert_array_equal(first[0], curves[0, 6:70])
    np.testing.assert_array_equal(second, -first)
    np.testing.assert_allclose(window_times[0], np.arange(64) * 0.8)


def test_short_curves_are_padded_with_the_last_frame_and_continued_times():
    times = np.array([[0.0, 1.0, 2.5, 3.0, 4.0, 5.0]])
    curves = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    window_times, window, start = network_window(times, curves, [5], length=8, pre_contrast_beats=2)
    np.testing.assert_array_equal(window[0], [4.0, 5.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0])
    np.testing.assert_allclose(window_times[0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    assert start[0] == 3


def test_mismatched_shapes_are_rejected():
    with pytest.raises(AIAIFInputError, match="shape of the frame times"):
        network_window(np.zeros((2, 10)), np.zeros((2, 9)), [1, 1])


def test_arrival_index_is_first_frame_at_or_after_arrival():
    times = np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 0.5, 1.0, 1.5]])
    np.testing.assert_array_equal(arrival_index_from_time(times, [2.0, 0.6]), [2, 2])

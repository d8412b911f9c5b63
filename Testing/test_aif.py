"""AIF handling: validation, extraction, arrival, the network's 64-frame window and its inverse."""

import numpy as np
import pytest

from AIAIFLib.aif import (MIN_AIF_FRAMES, NetworkInput, arrival_index_from_time, detect_arrival_index,
                          extract_aif_signal, network_window, prepare_network_input, restore_network_output,
                          validate_aif_curves, window_like)
from AIAIFLib.aif import read_aif_csv, write_aif_csv
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.simulation import simulate_aif_pairs


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


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

def _bolus(n_frames=70, arrival=12, baseline=100.0, peak=400.0, rise=4, rr=0.8):
    """A noise-free AIF-like curve: flat, a rise over ``rise`` frames, decay to a plateau.

    Frame ``arrival`` is the first enhanced one (the convention of the module).
    """
    times = np.arange(n_frames) * rr
    x = np.arange(n_frames) - (arrival - 1)
    up = np.clip(x / rise, 0.0, 1.0)
    down = np.where(x > rise, 0.25 + 0.75 * np.exp(-(x - rise) / 5.0), 1.0)
    return times, baseline + (peak - baseline) * up * down


def test_validation_accepts_shared_times_and_a_single_curve():
    times, signal = _bolus(30)
    t, s = validate_aif_curves(times, signal)
    assert t.shape == s.shape == (1, 30)
    t, s = validate_aif_curves(times, np.stack([signal, 2 * signal, 3 * signal]))
    assert t.shape == s.shape == (3, 30)
    np.testing.assert_array_equal(t[2], times)
    np.testing.assert_array_equal(s[1], 2 * signal)
    s[0, 0] = -1.0  # a copy, the caller's array is untouched
    assert signal[0] == 100.0


@pytest.mark.parametrize("times, signals, message", [
    (np.arange(30.0), "abc", "must be numbers"),
    (np.arange(30.0), np.ones((2, 3, 30)), "one curve"),
    (np.arange(30.0), np.ones((0, 30)), "No AIF curve"),
    (np.arange(29.0), np.ones(30), "give one time per frame"),
    (np.ones((3, 30)), np.ones((2, 30)), "give one time per frame"),
    (np.arange(float(MIN_AIF_FRAMES - 1)), np.ones(MIN_AIF_FRAMES - 1), "at least 20 are needed"),
])
def test_validation_rejects_bad_shapes(times, signals, message):
    with pytest.raises(AIAIFInputError, match=message):
        validate_aif_curves(times, signals)


def test_validation_names_the_curve_and_frame_of_non_finite_values():
    signals = np.ones((3, 30))
    signals[2, 7] = np.nan
    with pytest.raises(AIAIFInputError, match="signal of AIF curve 2 is NaN or infinite at frame 7"):
        validate_aif_curves(np.arange(30.0), signals)
    times = np.tile(np.arange(30.0), (3, 1))
    times[1, 4] = np.inf
    with pytest.raises(AIAIFInputError, match="frame times of AIF curve 1 is NaN or infinite at frame 4"):
        validate_aif_curves(times, np.ones((3, 30)))


def test_validation_rejects_non_increasing_times():
    times = np.tile(np.arange(30.0), (2, 1))
    times[1, 10] = times[1, 9]
    with pytest.raises(AIAIFInputError, match="AIF curve 1 do not increase at frame 10"):
        validate_aif_curves(times, np.ones((2, 30)))


# ---------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------

def _synthetic_blood_pool():
    """Frames (n_frames, 2, 10, 10): 64 blood pixels with gains 1..64 on one bolus, brighter tissue outside.

    Before contrast the ranking of the blood pixels is reversed (low-gain
    pixels brighter), so a percentile taken on a pre-contrast frame would
    pick the wrong pixels.
    """
    _, bolus = _bolus(30, arrival=8, baseline=0.0, peak=1.0)
    mask = np.zeros((2, 10, 10), dtype=bool)
    mask[0, 1:9, 1:9] = True
    gains = np.arange(1.0, 65.0)
    frames = np.full((30, 2, 10, 10), 5000.0)  # tissue outside the mask, brighter than any blood pixel
    frames[:, mask] = 100.0 + (64.0 - gains)[None, :] + 10.0 * gains[None, :] * bolus[:, None]
    expected = 100.0 + (64.0 - gains[48:]).mean() + 10.0 * gains[48:].mean() * bolus
    return frames, mask, expected


def test_extraction_averages_the_top_quarter_of_blood_pixels_at_peak_enhancement():
    frames, mask, expected = _synthetic_blood_pool()
    np.testing.assert_allclose(extract_aif_signal(frames, mask), expected, rtol=1e-12)
    # percentile 0 keeps all but the darkest pixel at peak
    gains = np.arange(2.0, 65.0)
    _, bolus = _bolus(30, arrival=8, baseline=0.0, peak=1.0)
    np.testing.assert_allclose(extract_aif_signal(frames, mask.astype(int), percentile=0.0),
                               100.0 + (64.0 - gains).mean() + 10.0 * gains.mean() * bolus, rtol=1e-12)


def test_extraction_of_a_uniform_blood_pool_uses_all_its_pixels():
    frames = np.ones((25, 4, 4)) * np.linspace(1.0, 3.0, 25)[:, None, None]
    mask = np.zeros((4, 4), dtype=bool)
    mask[1:3, 1:3] = True
    np.testing.assert_allclose(extract_aif_signal(frames, mask), np.linspace(1.0, 3.0, 25))


def test_extraction_errors():
    frames, mask, _ = _synthetic_blood_pool()
    with pytest.raises(AIAIFInputError, match="mask has shape"):
        extract_aif_signal(frames, mask[0])
    with pytest.raises(AIAIFInputError, match="mask is empty"):
        extract_aif_signal(frames, np.zeros_like(mask))
    with pytest.raises(AIAIFInputError, match="percentile must be in"):
        extract_aif_signal(frames, mask, percentile=100.0)
    with pytest.raises(AIAIFInputError, match="at least one spatial axis"):
        extract_aif_signal(np.ones(30), np.ones(30, dtype=bool))
    bad = frames.copy()
    bad[3, 0, 2, 2] = np.nan
    with pytest.raises(AIAIFInputError, match="Frame 3 has NaN"):
        extract_aif_signal(bad, mask)
    bad = frames.copy()
    bad[3, 1, 2, 2] = np.nan  # outside the blood pool: ignored
    np.testing.assert_array_equal(extract_aif_signal(bad, mask), extract_aif_signal(frames, mask))


def test_extraction_and_arrival_on_a_simulated_study():
    from AIAIFLib.simulation import simulate_phantom

    phantom = simulate_phantom(seed=0, n_frames=30)
    aif = extract_aif_signal(phantom.frames, phantom.lv_blood_mask)
    noise_free = phantom.truth["lv_blood_signal_noiseless"]
    assert np.max(np.abs(aif - noise_free)) < 0.03 * noise_free.max()
    first_enhanced = int(np.argmax(phantom.truth["aif_mM"] > 0))
    assert 0 <= detect_arrival_index(phantom.frame_times_s, aif)[0] - first_enhanced <= 1


# ---------------------------------------------------------------------------
# Contrast arrival
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("arrival", [1, 2, 5, 12, 30])
def test_arrival_of_a_noise_free_curve_is_its_first_enhanced_frame(arrival):
    times, signal = _bolus(60, arrival=arrival)
    assert signal[arrival - 1] == signal[0] < signal[arrival]
    np.testing.assert_array_equal(detect_arrival_index(times, signal), [arrival])


def test_arrival_ignores_baseline_spikes_and_noise():
    rng = np.random.default_rng(3)
    times, signal = _bolus(60, arrival=15)
    curves = signal + rng.normal(0.0, 3.0, (50, 60))  # noise 1 % of the enhancement
    curves[:, 6] += 120.0  # a spike of 40 % of the enhancement in the baseline
    found = detect_arrival_index(times, curves)
    assert found.shape == (50,)
    assert np.all(np.abs(found - 15) <= 1)
    assert np.mean(found == 15) > 0.8


@pytest.mark.parametrize("field_strength_t", [1.5, 3.0])
def test_arrival_on_noisy_simulated_curves_is_within_one_frame(field_strength_t):
    # Heart rate 55-120 bpm with beat-to-beat variation and drift, noise 0.2-3 % of the peak.
    pairs = simulate_aif_pairs(1000, n_frames=60, seed=41, field_strength_t=field_strength_t)
    truth = arrival_index_from_time(pairs.times_s, pairs.params["arrival_s"])
    error = detect_arrival_index(pairs.times_s, pairs.saturated) - truth
    # Measured (5000 curves per field strength): -1: 6 %, 0: 66 %, +1: 26 %, +2: 1.5 %, +3: < 0.1 %.
    assert np.mean(error == 0) > 0.55
    assert np.mean(np.abs(error) <= 1) > 0.95
    assert np.max(np.abs(error)) <= 3
    assert -0.2 < error.mean() < 0.5


def test_arrival_errors():
    times = np.arange(40.0)
    with pytest.raises(AIAIFInputError, match="curve 1 shows no contrast arrival"):
        detect_arrival_index(times, np.stack([_bolus(40)[1], np.full(40, 100.0)]))
    noise = 100.0 + np.random.default_rng(0).normal(0.0, 1.0, 40)
    with pytest.raises(AIAIFInputError, match="curve 0 shows no contrast arrival"):
        detect_arrival_index(times, noise)
    _, late = _bolus(60, arrival=12)
    for first in (13, 14, 15, 20):  # series starting on the upslope, at the peak, on the downslope
        with pytest.raises(AIAIFInputError, match="curve 0 is already enhanced at the first frame"):
            detect_arrival_index(times, late[first:first + 40])
    with pytest.raises(AIAIFInputError, match="at least 20 are needed"):
        detect_arrival_index(times[:10], late[:10])


# ---------------------------------------------------------------------------
# The network's window and its inverse
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pairs():
    return simulate_aif_pairs(12, n_frames=100, seed=5)


def _truth(pairs):
    return arrival_index_from_time(pairs.times_s, pairs.params["arrival_s"])


def test_window_starts_before_arrival_is_normalised_and_padded(pairs):
    arrival = _truth(pairs)
    prepared = prepare_network_input(pairs.times_s[:, :40], pairs.saturated[:, :40], arrival_index=arrival)
    assert isinstance(prepared, NetworkInput)
    assert prepared.curves.shape == (12, 64)
    np.testing.assert_array_equal(prepared.start_index, np.maximum(arrival - 4, 0))
    np.testing.assert_array_equal(prepared.n_valid, 40 - prepared.start_index)
    np.testing.assert_allclose(prepared.curves.max(axis=1), 1.0)
    for i in range(12):
        start, n_valid = prepared.start_index[i], prepared.n_valid[i]
        real = pairs.saturated[i, start:40]
        np.testing.assert_allclose(prepared.scale[i], real.max())
        np.testing.assert_allclose(prepared.curves[i, :n_valid] * prepared.scale[i], real)
        np.testing.assert_array_equal(prepared.curves[i, n_valid:], prepared.curves[i, n_valid - 1])
        np.testing.assert_allclose(prepared.baseline[i], pairs.saturated[i, :arrival[i]].mean())


def test_detected_arrival_is_used_when_none_is_given(pairs):
    prepared = prepare_network_input(pairs.times_s, pairs.saturated)
    np.testing.assert_array_equal(prepared.arrival_index, detect_arrival_index(pairs.times_s, pairs.saturated))


@pytest.mark.parametrize("n_frames", [30, 64, 100])
def test_restoring_the_input_window_gives_back_the_input(pairs, n_frames):
    # n_frames < 64 (padding dropped), = 64, > 64 (continuation after the window)
    prepared = prepare_network_input(pairs.times_s[:, :n_frames], pairs.saturated[:, :n_frames],
                                     arrival_index=_truth(pairs))
    restored = restore_network_output(prepared, prepared.curves)
    assert restored.shape == (12, n_frames)
    np.testing.assert_allclose(restored, pairs.saturated[:, :n_frames], rtol=1e-12)
    if n_frames == 100:
        assert np.all(prepared.start_index + prepared.n_valid < n_frames)


def test_round_trip_with_arrival_at_the_first_frames():
    times, signal = _bolus(40, arrival=12)
    noisy = signal + np.random.default_rng(1).normal(0.0, 2.0, 40)
    for first in (10, 11):  # crop so that arrival is frame 1 or 2
        prepared = prepare_network_input(times[first:] - times[first], noisy[first:])
        assert prepared.arrival_index[0] == 12 - first
        assert prepared.start_index[0] == 0 and prepared.n_valid[0] == 40 - first
        np.testing.assert_allclose(restore_network_output(prepared, prepared.curves[0]), noisy[None, first:],
                                   rtol=1e-12)


def test_restored_window_is_the_prediction_times_scale_plus_one_shift(pairs):
    prepared = prepare_network_input(pairs.times_s, pairs.saturated, arrival_index=_truth(pairs))
    prediction = np.random.default_rng(2).uniform(0.0, 3.0, prepared.curves.shape)
    restored = restore_network_output(prepared, prediction)
    for i in range(12):
        frames = slice(prepared.start_index[i], prepared.start_index[i] + prepared.n_valid[i])
        difference = restored[i, frames] - prediction[i, :prepared.n_valid[i]] * prepared.scale[i]
        np.testing.assert_allclose(difference, difference[0], atol=1e-9 * prepared.scale[i])
        # frames before the window keep the input
        np.testing.assert_array_equal(restored[i, :prepared.start_index[i]],
                                      pairs.saturated[i, :prepared.start_index[i]])


def test_restored_curve_has_the_input_baseline(pairs):
    prepared = prepare_network_input(pairs.times_s, pairs.saturated, arrival_index=_truth(pairs), offset_frames=2)
    target = window_like(prepared, pairs.reference)
    restored = restore_network_output(prepared, target + 0.05)  # a network with a baseline error
    before = np.arange(100)[None, :] < prepared.arrival_index[:, None]
    baseline = np.where(before, restored, 0.0).sum(axis=1) / prepared.arrival_index
    np.testing.assert_allclose(baseline, prepared.baseline, rtol=1e-12)
    # the shift removed the error: the window matches the reference to the input's pre-contrast noise
    enhancement = (pairs.reference - pairs.baseline_signal[:, None]).max(axis=1)
    error = np.abs(restored - pairs.reference).max(axis=1)
    assert np.all(error < 0.05 * enhancement)


def test_continuation_after_the_window_applies_the_late_enhancement_gain(pairs):
    # noise-free curves, so that the window's pre-contrast frames sit exactly at the baseline
    prepared = prepare_network_input(pairs.times_s, pairs.saturated_noiseless, arrival_index=_truth(pairs))
    base = prepared.baseline[:, None]
    np.testing.assert_allclose(base[:, 0], pairs.baseline_signal, rtol=1e-12)
    after = np.arange(100)[None, :] >= (prepared.start_index + prepared.n_valid)[:, None]
    for gain, expected_gain in ((2.0, 2.0), (0.5, 1.0)):  # saturation never raises enhancement: gain >= 1
        prediction = window_like(prepared, base + gain * (pairs.saturated_noiseless - base))
        restored = restore_network_output(prepared, prediction)
        np.testing.assert_allclose(restored[after], (base + expected_gain * (pairs.saturated_noiseless - base))[after],
                                   rtol=1e-9)
    # the gain is at most the peak gain: a prediction whose late part is enhanced 3x but its peak only 1.5x
    window_enhancement = prepared.curves * prepared.scale[:, None] - base
    late_heavy = window_like(prepared, base + 3.0 * (pairs.saturated_noiseless - base))
    late_heavy = np.minimum(late_heavy, (base + 1.5 * window_enhancement.max(axis=1, keepdims=True))
                            / prepared.scale[:, None])
    restored = restore_network_output(prepared, late_heavy)
    np.testing.assert_allclose(restored[after], (base + 1.5 * (pairs.saturated_noiseless - base))[after], rtol=1e-9)
    prepared = prepare_network_input(pairs.times_s, pairs.saturated, arrival_index=_truth(pairs))
    # with the true unsaturated curve as prediction, the continuation beats the saturated input
    restored = restore_network_output(prepared, window_like(prepared, pairs.reference))
    after = np.arange(100)[None, :] >= (prepared.start_index + prepared.n_valid)[:, None]
    assert (np.abs(restored - pairs.reference)[after].mean()
            < 0.3 * np.abs(pairs.saturated - pairs.reference)[after].mean())


def test_window_like_uses_the_same_window_and_scale(pairs):
    prepared = prepare_network_input(pairs.times_s[:, :50], pairs.saturated[:, :50], arrival_index=_truth(pairs),
                                     offset_frames=np.arange(12) % 4)
    np.testing.assert_allclose(window_like(prepared, pairs.saturated[:, :50]), prepared.curves)
    other = window_like(prepared, pairs.reference[:, :50])
    for i in range(12):
        start, n_valid = prepared.start_index[i], prepared.n_valid[i]
        np.testing.assert_allclose(other[i, :n_valid], pairs.reference[i, start:start + n_valid] / prepared.scale[i])
        np.testing.assert_array_equal(other[i, n_valid:], other[i, n_valid - 1])
    assert np.all(other.max(axis=1) > 1.0)  # the unsaturated curve exceeds the saturated maximum
    with pytest.raises(AIAIFInputError, match="curves to window have shape"):
        window_like(prepared, pairs.reference)
    bad = pairs.reference[:, :50].copy()
    bad[4, 9] = np.inf
    with pytest.raises(AIAIFInputError, match="curve 4 is NaN or infinite"):
        window_like(prepared, bad)


def test_offset_frames_shift_the_window_earlier(pairs):
    arrival = _truth(pairs)
    plain = prepare_network_input(pairs.times_s, pairs.saturated, arrival_index=arrival)
    offsets = np.array([0, 1, 2, 3] * 3)
    shifted = prepare_network_input(pairs.times_s, pairs.saturated, arrival_index=arrival, offset_frames=offsets)
    np.testing.assert_array_equal(shifted.start_index, np.maximum(arrival - 4 - offsets, 0))
    for i in range(12):
        lost = plain.start_index[i] - shifted.start_index[i]
        np.testing.assert_allclose(shifted.curves[i, lost:] * shifted.scale[i],
                                   plain.curves[i, :64 - lost] * plain.scale[i])
    np.testing.assert_allclose(restore_network_output(shifted, shifted.curves), pairs.saturated, rtol=1e-12)
    # a scalar offset applies to every curve; clipping at frame 0
    early = prepare_network_input(pairs.times_s, pairs.saturated, arrival_index=np.full(12, 2), offset_frames=3)
    np.testing.assert_array_equal(early.start_index, 0)


@pytest.mark.parametrize("kwargs, message", [
    ({"arrival_index": 0}, "arrival index of AIF curve 0 is 0"),
    ({"arrival_index": 30}, "must be between 1 and 29"),
    ({"arrival_index": [5, 6]}, "arrival index must be one integer or one per curve"),
    ({"arrival_index": 5.5}, "whole numbers"),
    ({"offset_frames": -1}, "offset frames must be between 0 and 59"),
    ({"offset_frames": 60}, "offset frames must be between 0 and 59"),
    ({"length": 0}, "window length must be a positive integer"),
    ({"length": 64.0}, "window length must be a positive integer"),
    ({"pre_contrast_beats": 64}, "must be fewer than the window length"),
])
def test_prepare_errors(kwargs, message):
    times, signal = _bolus(30, arrival=10)
    with pytest.raises(AIAIFInputError, match=message):
        prepare_network_input(times, signal, **kwargs)


def test_prepare_rejects_negative_signal_and_restore_rejects_bad_predictions():
    times, signal = _bolus(30, arrival=10)
    with pytest.raises(AIAIFInputError, match="no positive signal"):
        prepare_network_input(times, signal - 1000.0, arrival_index=10)
    prepared = prepare_network_input(times, signal)
    assert prepared.arrival_index[0] == 10
    with pytest.raises(AIAIFInputError, match="network predictions have shape"):
        restore_network_output(prepared, np.ones((1, 32)))
    with pytest.raises(AIAIFInputError, match="NaN or infinite at sample 3"):
        restore_network_output(prepared, np.where(np.arange(64) == 3, np.nan, 1.0))


# --- peak enhancement frame ----------------------------------------------------------------------------------

def test_peak_enhancement_frame_follows_the_blood_pool_with_or_without_a_mask():
    from AIAIFLib.aif import peak_enhancement_frame
    from AIAIFLib.studies import demo_phantom

    phantom = demo_phantom()
    blood = phantom.frames[:, phantom.lv_blood_mask].mean(axis=1)
    with_mask = peak_enhancement_frame(phantom.frames, phantom.lv_blood_mask)
    assert with_mask <= int(np.argmax(extract_aif_signal(phantom.frames, phantom.lv_blood_mask)))
    assert blood[with_mask] > 0.95 * blood.max()
    rv_peak = int(np.argmax(phantom.frames[:, :, :, :].reshape(len(blood), -1).max(axis=1)))
    assert rv_peak < with_mask - 2  # the RV is brightest first
    without_mask = peak_enhancement_frame(phantom.frames)
    assert abs(without_mask - int(np.argmax(blood))) <= 1  # no ROI yet: the later, LV peak is found


def test_peak_enhancement_frame_is_the_first_pass_peak_when_the_recirculation_is_brighter():
    # A 3 T blood curve that dips at peak concentration (T2* and saturation) and rises again as the
    # concentration falls: the recirculation outshines the first pass, when the patient may breathe again.
    from AIAIFLib.aif import peak_enhancement_frame

    first_pass = np.concatenate([np.full(15, 30.0), [37, 75, 144, 200, 211, 197, 179, 164, 155, 150]])
    curve = np.concatenate([first_pass, np.linspace(152.0, 238.0, 32), np.full(14, 236.0)])
    blood = np.zeros((8, 8), bool)
    blood[2:6, 2:6] = True
    rng = np.random.default_rng(3)
    frames = curve[:, None, None] * np.ones((1, 8, 8)) + rng.normal(0.0, 2.0, (curve.size, 8, 8))
    assert int(np.argmax(curve)) > 40
    assert peak_enhancement_frame(frames, blood) == 19


def test_peak_enhancement_frame_refuses_empty_or_non_finite_frames():
    from AIAIFLib.aif import peak_enhancement_frame

    with pytest.raises(AIAIFInputError):
        peak_enhancement_frame(np.zeros((0, 4, 4)))
    frames = np.ones((5, 4, 4))
    frames[2, 1, 1] = np.nan
    with pytest.raises(AIAIFInputError):
        peak_enhancement_frame(frames)


# --- the AIF CSV reader ------------------------------------------------------------------

def _csv(tmp_path, text, name="aif.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def test_aif_csv_round_trip_with_a_spreadsheet_byte_order_mark(tmp_path):
    times = np.arange(25.0)
    curves = 100.0 + 50.0 * np.exp(-((times - 10.0) / 3.0) ** 2)[None]
    path = str(tmp_path / "written.csv")
    write_aif_csv(path, times, ["signal"], curves)
    with_bom = _csv(tmp_path, "\ufeff" + open(path).read(), "bom.csv")
    for source in (path, with_bom):
        read_times, names, read_curves = read_aif_csv(source)
        np.testing.assert_array_equal(read_times, times)
        assert names == ["signal"]
        np.testing.assert_array_equal(read_curves, curves)


@pytest.mark.parametrize("text, message", [
    ("time_s\n0\n1\n", r"has only the column time_s and no AIF signal; add a column with the signal"),
    ("t,signal\n0,1\n", r"must start with a header 'time_s,<curve name>,...' \(got 't,signal'\)"),
    ("time_s;" + "x" * 200 + "\n0\n", r"\(got 'time_s;x{33}\.\.\.'\)"),
    ("time_s,signal\n0,high\n", r"Line 2 of .* holds a cell that is not a number \('high'\)"),
])
def test_aif_csv_errors_name_the_problem_once(tmp_path, text, message):
    with pytest.raises(AIAIFInputError, match=message) as error:
        read_aif_csv(_csv(tmp_path, text))
    assert len(str(error.value)) < 300


def test_aif_csv_that_is_a_folder_says_so(tmp_path):
    with pytest.raises(AIAIFInputError, match="is a folder, not a file"):
        read_aif_csv(str(tmp_path))

"""Training of the AI-AIF network: outputs, reproducibility, data handling, CSV errors."""

import json
import os

import numpy as np
import pytest

from AIAIFLib import network, studies, training, training_range
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.simulation import simulate_aif_pairs

#: A run small enough for the fast suite (one torch thread: no stalls on a busy machine).
TINY = dict(n_train=40, n_validation=16, iterations=24, validation_interval=8, threads=1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    pytest.importorskip("torch")
    output = tmp_path_factory.mktemp("tiny")
    calls = []
    results = training.train(str(output), seed=3, progress=lambda fraction, message: calls.append((fraction, message)),
                             **TINY)
    return output, results, calls


def test_tiny_run_writes_every_file_and_the_weights_load(tiny_run):
    output, results, _ = tiny_run
    for name in ("aiaif_unet.npz", "aiaif_unet.sha256", "loss_curve.png", "training.json"):
        assert os.path.getsize(str(output / name)) > 0
    with open(str(output / "loss_curve.png"), "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    model = network.load_weights(str(output / "aiaif_unet.npz"))
    assert model.predict(np.zeros((2, 64))).shape == (2, 64)
    with open(str(output / "aiaif_unet.sha256")) as handle:
        assert handle.read().strip() == results["weights_sha256"]
    assert results["output_files"]["weights"] == str(output / "aiaif_unet.npz")


def test_training_json_records_settings_data_and_losses(tiny_run):
    output, results, _ = tiny_run
    with open(str(output / "training.json")) as handle:
        saved = json.load(handle)
    assert saved["settings"]["seed"] == 3
    assert saved["settings"]["iterations"] == TINY["iterations"]
    assert saved["settings"]["batch_size"] == 10
    assert saved["settings"]["learning_rate"] == pytest.approx(1e-3)
    assert saved["settings"]["input_noise_sd"] == pytest.approx(0.02)
    assert saved["settings"]["target_noise_sd"] == pytest.approx(0.03)
    assert saved["settings"]["offset_frames"] == [0, 1, 2, 3]
    assert saved["data"]["source"] == "simulator" and saved["data"]["physics"] == "standard"
    assert saved["data"]["n_train"] == TINY["n_train"]
    assert saved["data"]["parameter_ranges"]["peak_conc_mM"] == [3.0, 15.0]
    assert saved["data"]["training_pairs_3t"] + saved["data"]["training_pairs_1_5t"] == TINY["n_train"]
    assert saved["history"]["iteration"] == [8, 16, 24]
    best = int(np.argmin(saved["history"]["validation_mse"]))
    assert saved["best_validation_mse"] == pytest.approx(saved["history"]["validation_mse"][best])
    assert saved["best_iteration"] == saved["history"]["iteration"][best]
    assert saved["final_validation_mse"] == pytest.approx(saved["history"]["validation_mse"][-1])
    # the written (folded, float32) network reproduces the best checkpoint's validation loss
    assert saved["validation_mse_numpy"] == pytest.approx(saved["best_validation_mse"], rel=1e-3)
    assert saved["versions"]["torch"].startswith("2.13")
    assert saved["seconds_per_iteration"] > 0
    assert saved["weights_sha256"] == results["weights_sha256"]


def test_training_json_records_the_training_range_of_the_inputs(tiny_run):
    output, results, _ = tiny_run
    with open(str(output / "training.json")) as handle:
        saved = json.load(handle)
    section = saved[training_range.INPUT_FEATURE_RANGES_KEY]
    assert section == results[training_range.INPUT_FEATURE_RANGES_KEY]
    # computed from exactly the training curves: the same draws as training.simulated_input_feature_ranges
    assert section == json.loads(json.dumps(training.simulated_input_feature_ranges(TINY["n_train"], seed=3)))
    assert section["n_curves"] == TINY["n_train"]
    assert set(section["field_strengths_t"]) <= {1.5, 3.0}
    assert set(section["features"]) == set(training_range.INPUT_FEATURES)
    assert "training seed 3" in section["note"]
    # the trained weights are checked against this record (training.json beside them)
    times = np.arange(60) * 0.75
    flat_then_bolus = np.where(times < 9.3, 100.0, 100.0 + 900.0 * np.exp(-np.abs(times - 14.0) / 3.0))
    warnings = training_range.training_range_warnings(times, flat_then_bolus, 7.0,
                                                      weights_path=str(output / "aiaif_unet.npz"))
    assert warnings and warnings[-1].startswith("The field strength is 7 T")


def test_the_broad_physics_mix_simulates_its_own_ranges_and_frame_counts():
    groups = list(training._simulated_groups(50, 5, training._TRAINING_DATA_TAG,
                                             training.PHYSICS_MIXES["broad"]["frame_counts"], physics="broad"))
    assert [group.times_s.shape[1] for group in groups] == [40, 50, 60, 75, 90]
    peaks = np.concatenate([group.params["peak_conc_mM"] for group in groups])
    assert peaks.min() < 3.0 or peaks.max() > 15.0  # outside the standard mix's 3-15 mM
    x, y, _ = training.simulated_windows(50, seed=5, tag=training._TRAINING_DATA_TAG, physics="broad")
    standard = training.simulated_windows(50, seed=5, tag=training._TRAINING_DATA_TAG)[0]
    assert x.shape == standard.shape == (1, 50, 64) and not np.array_equal(x, standard)
    with pytest.raises(AIAIFInputError, match="Unknown physics mix 'wide'; use one of standard, broad."):
        training.simulated_windows(10, seed=5, tag=training._TRAINING_DATA_TAG, physics="wide")


def test_simulated_feature_ranges_measure_the_training_curves():
    fields_of_windows = training.simulated_windows(48, seed=5, tag=training._TRAINING_DATA_TAG)[2]
    section = training.simulated_input_feature_ranges(48, seed=5)
    assert section["field_strengths_t"] == sorted(set(fields_of_windows.tolist()))
    pairs = list(training._simulated_groups(48, 5, training._TRAINING_DATA_TAG, training.SIMULATED_FRAME_COUNTS))
    features = [training_range.input_features(group.times_s, group.saturated) for group in pairs]
    for name, entry in section["features"].items():
        values = np.concatenate([part[name] for part in features])
        assert (entry["min"], entry["max"]) == (values.min(), values.max())
    assert section["features"]["frames_after_arrival"]["min"] <= 50 - 4  # the 50-frame curves are the shortest
    with pytest.raises(AIAIFInputError, match="number of training pairs"):
        training.simulated_input_feature_ranges(0)


def test_shipped_training_range_is_reproduced_from_the_simulator():
    """About 3 s: the shipped record's range is that of the 50 000 training curves of its seed and frame counts."""
    with open(network.DEFAULT_TRAINING_RECORD_PATH, encoding="utf-8") as handle:
        record = json.load(handle)
    stored = record[training_range.INPUT_FEATURE_RANGES_KEY]
    data = record["data"]
    recomputed = training.simulated_input_feature_ranges(
        data["n_train"], seed=record["settings"]["seed"], tag=data["training_seed_tag"],
        frame_counts=data["frame_counts"], percentiles=stored["percentiles"])
    assert recomputed["n_curves"] == stored["n_curves"] == 50000
    assert recomputed["field_strengths_t"] == stored["field_strengths_t"]
    assert recomputed["note"] == stored["note"]
    for name, entry in stored["features"].items():
        for key in ("low", "high", "min", "median", "max"):
            assert recomputed["features"][name][key] == pytest.approx(entry[key], rel=1e-9), (name, key)


def test_a_curve_the_arrival_detection_refuses_is_measured_at_its_true_arrival():
    pairs = simulate_aif_pairs(3, n_frames=50, seed=8)
    pairs.saturated[1] = 100.0 + 0.01 * (-1.0) ** np.arange(50)  # no visible bolus
    features = training._simulated_input_features(pairs)
    true_arrival = np.argmax(pairs.times_s[1] >= pairs.params["arrival_s"][1])
    assert features["arrival_time_s"][1] == pytest.approx(pairs.times_s[1, true_arrival])
    detected = training_range.input_features(pairs.times_s[[0, 2]], pairs.saturated[[0, 2]])
    np.testing.assert_array_equal(features["arrival_time_s"][[0, 2]], detected["arrival_time_s"])


def test_progress_reaches_one_in_order(tiny_run):
    _, _, calls = tiny_run
    fractions = [fraction for fraction, _ in calls]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    assert all(isinstance(message, str) and message for _, message in calls)


def test_training_reduces_the_validation_loss(tmp_path):
    pytest.importorskip("torch")
    results = training.train(str(tmp_path), seed=1, n_train=200, n_validation=50, iterations=60,
                             validation_interval=20, threads=1)
    history = results["history"]["validation_mse"]
    assert min(history[1:]) < history[0]


def test_same_seed_gives_identical_weights_and_another_seed_does_not(tiny_run, tmp_path):
    _, results, _ = tiny_run
    again = training.train(str(tmp_path / "again"), seed=3, **TINY)
    assert again["weights_sha256"] == results["weights_sha256"]
    other = training.train(str(tmp_path / "other"), seed=4, **TINY)
    assert other["weights_sha256"] != results["weights_sha256"]


def test_training_leaves_the_callers_torch_state_alone(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(123)
    expected = torch.rand(3)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    training.train(str(tmp_path), seed=0, n_train=8, n_validation=4, iterations=2, validation_interval=1, threads=1)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("options, message", [
    ({"iterations": 0}, "number of iterations must be a positive integer"),
    ({"batch_size": 2.5}, "batch size must be a positive integer"),
    ({"validation_interval": -1}, "validation interval"),
    ({"learning_rate": 0.0}, "learning rate must be a positive number"),
    ({"learning_rate": "fast"}, "learning rate must be a positive number, got .fast."),
    ({"n_train": 0}, "number of training pairs"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"threads": 0}, "number of threads"),
])
def test_bad_settings_are_rejected(tmp_path, options, message):
    pytest.importorskip("torch")
    settings = dict(n_train=8, n_validation=4, iterations=2, threads=1)
    settings.update(options)
    with pytest.raises(AIAIFInputError, match=message):
        training.train(str(tmp_path), **settings)


# --- Simulated data --------------------------------------------------------------------

def test_simulated_windows_are_normalised_pairs_with_offsets():
    inputs, targets, fields = training.simulated_windows(24, seed=0, tag=1, offsets=(0, 2))
    assert inputs.shape == targets.shape == (2, 24, 64)
    assert inputs.dtype == np.float32
    np.testing.assert_allclose(inputs.max(axis=2), 1.0, rtol=1e-6)
    # the unsaturated reference rises above the saturated curve it was normalised with
    assert np.all(targets.max(axis=2) > 1.2)
    assert set(np.unique(fields)) <= {1.5, 3.0}
    # an offset of 2 starts the window 2 frames earlier: the curve moves 2 samples later
    shifted = np.all(np.isclose(inputs[1][:, 2:40], inputs[0][:, :38], atol=1e-6), axis=1)
    assert shifted.mean() > 0.8


def test_training_validation_and_test_sets_share_no_curve():
    train_x = training.simulated_windows(40, seed=7, tag=training._TRAINING_DATA_TAG)[0][0]
    val_x = training.simulated_windows(40, seed=7, tag=training._VALIDATION_DATA_TAG)[0][0]
    test_x = studies.simulated_aif_test_set(40, seed=7)["saturated"]
    for a, b in ((train_x, val_x), (train_x, test_x), (val_x, test_x)):
        distance = np.abs(a[:, None, :] - b[None, :, :].astype(np.float32)).max(axis=2)
        assert distance.min() > 1e-3


# --- Paired dual-sequence data -----------------------------------------------------------

def _write_paired_csv(path, n_cases=5, seed=21, n_frames=40):
    pairs = simulate_aif_pairs(n_cases, n_frames=n_frames, seed=seed)
    lines = ["case,time_s,saturated,reference"]
    for case in range(n_cases):
        for t, s, r in zip(pairs.times_s[case], pairs.saturated[case], pairs.reference[case]):
            lines.append("P{:02d},{!r},{!r},{!r}".format(case, float(t), float(s), float(r)))
    path.write_text("\n".join(lines) + "\n")
    return pairs


def test_paired_csv_round_trip(tmp_path):
    path = tmp_path / "pairs.csv"
    pairs = _write_paired_csv(path)
    data = training.read_paired_aif_csv(str(path))
    assert data.case_ids == ["P00", "P01", "P02", "P03", "P04"]
    assert len(data) == 5
    np.testing.assert_array_equal(data.times_s[3], pairs.times_s[3])
    np.testing.assert_array_equal(data.saturated[3], pairs.saturated[3])
    np.testing.assert_array_equal(data.reference[3], pairs.reference[3])
    sub = data.subset([4, 1])
    assert sub.case_ids == ["P04", "P01"]


def _bad_csv(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return str(path)


def _rows(case, n, start=0.0, saturated=100.0):
    return "".join("{},{:g},{:g},{:g}\n".format(case, start + k, saturated + k, 2 * (saturated + k)) for k in range(n))


@pytest.mark.parametrize("text, message", [
    ("case,time_s,reference,test\n" + _rows("A", 25), "must start with the header line 'case,time_s,saturated"),
    ("case,time_s,saturated,reference\n", "no data rows"),
    ("case,time_s,saturated,reference\nA,0,1\n", "has 3 values but the header has 4"),
    ("case,time_s,saturated,reference\n" + _rows("A", 25).replace("A,3,103", "A,3,abc"), "is not a finite number"),
    ("case,time_s,saturated,reference\n" + _rows("A", 25).replace("A,3,103", "A,3,inf"), "is not a finite number"),
    ("case,time_s,saturated,reference\n" + _rows("", 25), "empty case"),
    ("case,time_s,saturated,reference\n" + _rows("A", 20) + _rows("B", 20) + _rows("A", 2, start=50),
     "rows of case 'A' are not together"),
    ("case,time_s,saturated,reference\n" + _rows("A", 25).replace("A,5,", "A,3.5,"), "is not after the previous"),
    ("case,time_s,saturated,reference\n" + _rows("A", 10), "has 10 frames; each case needs at least 20"),
    ("case,time_s,saturated,reference\n" + _rows("A", 25, saturated=-100.0), "no positive saturated signal"),
])
def test_paired_csv_errors(tmp_path, text, message):
    with pytest.raises(AIAIFInputError, match=message):
        training.read_paired_aif_csv(_bad_csv(tmp_path, text))


def test_missing_paired_csv_is_reported(tmp_path):
    with pytest.raises(AIAIFInputError, match="does not exist"):
        training.read_paired_aif_csv(str(tmp_path / "missing.csv"))


def test_case_split_is_seeded_disjoint_and_complete():
    train_cases, validation_cases = training.split_cases(10, seed=5)
    assert len(validation_cases) == 2
    assert sorted(np.concatenate([train_cases, validation_cases]).tolist()) == list(range(10))
    again = training.split_cases(10, seed=5)
    np.testing.assert_array_equal(again[1], validation_cases)
    splits = {tuple(training.split_cases(10, seed=s)[1]) for s in range(8)}
    assert len(splits) > 1
    assert len(training.split_cases(2, seed=0)[1]) == 1
    with pytest.raises(AIAIFInputError, match="at least 2 cases"):
        training.split_cases(1, seed=0)
    with pytest.raises(AIAIFInputError, match="validation fraction"):
        training.split_cases(5, seed=0, validation_fraction=1.0)


def test_training_on_paired_csv(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "pairs.csv"
    _write_paired_csv(path, n_cases=6)
    results = training.train(str(tmp_path / "out"), data=str(path), seed=2, iterations=6, validation_interval=3,
                             threads=1)
    described = results["data"]
    assert described["source"] == "paired AIF CSV"
    assert described["n_cases"] == 6
    assert not set(described["training_cases"]) & set(described["validation_cases"])
    assert sorted(described["training_cases"] + described["validation_cases"]) == ["P0{}".format(k) for k in range(6)]
    assert len(described["validation_cases"]) == 1
    network.load_weights(results["output_files"]["weights"])
    # the training range comes from the training cases' saturated curves; the CSV has no field strength
    section = results[training_range.INPUT_FEATURE_RANGES_KEY]
    data = training.read_paired_aif_csv(str(path))
    cases = [data.case_ids.index(case) for case in described["training_cases"]]
    assert section["n_curves"] == len(cases) == 5
    assert section["field_strengths_t"] is None
    ratios = [training_range.input_features(data.times_s[i], data.saturated[i])["enhancement_ratio"][0] for i in cases]
    ratio_range = section["features"]["enhancement_ratio"]
    assert (ratio_range["low"], ratio_range["high"]) == (min(ratios), max(ratios))
    # every training case lies inside its own training range; any field strength passes
    weights = results["output_files"]["weights"]
    for i in cases:
        assert training_range.training_range_warnings(data.times_s[i], data.saturated[i], 7.0,
                                                      weights_path=weights) == []


def test_training_on_a_case_without_contrast_names_the_case(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "flat.csv"
    flat = "".join("F,{},{},{}\n".format(k, 100.0 + 0.01 * (-1) ** k, 100.0) for k in range(30))
    path.write_text("case,time_s,saturated,reference\n" + _rows("A", 30) + flat)
    with pytest.raises(AIAIFInputError, match="Case '.*' of .*flat.csv"):
        training.train(str(tmp_path / "out"), data=str(path), seed=0, iterations=2, threads=1,
                       validation_fraction=0.5)


def test_diverging_training_is_reported(tmp_path):
    pytest.importorskip("torch")
    with pytest.raises(AIAIFInputError, match="Training diverged"):
        training.train(str(tmp_path), n_train=8, n_validation=4, iterations=4, validation_interval=1, threads=1,
                       learning_rate=1e30)


@pytest.mark.slow
def test_short_training_corrects_held_out_simulated_aifs(tmp_path):
    """About a minute: 1500 iterations already remove most of the saturation error on the held-out test set."""
    pytest.importorskip("torch")
    results = training.train(str(tmp_path), seed=0, n_train=5000, n_validation=500, iterations=1500, threads=1)
    model = network.load_weights(results["output_files"]["weights"])
    test_set = studies.simulated_aif_test_set(
        300, seed=7, correct=lambda times, curves: network.correct_aifs(times, curves, weights=model))
    from AIAIFLib.evaluation import nmse_percent
    corrected = np.median(nmse_percent(test_set["reference"], test_set["corrected"]))
    uncorrected = np.median(nmse_percent(test_set["reference"], test_set["saturated"]))
    assert corrected < uncorrected / 3

"""The AI-AIF U-Net: torch definition, folded numpy forward pass, weight files, correction."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from AIAIFLib import aif, network, training_range
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.simulation import simulate_aif_pairs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One torch thread: small tensors gain nothing from two, and it avoids stalls on a busy machine."""
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _randomised_model(torch, seed=0, **architecture):
    """A He-initialised U-Net with non-trivial batch-norm scales, shifts and running statistics."""
    torch.manual_seed(seed)
    model = network.build_torch_unet(**architecture)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
            if isinstance(module, torch.nn.ConvTranspose1d) or module is model.head:
                module.bias.uniform_(-0.1, 0.1)
        model.train()
        for _ in range(4):
            model(1.5 * torch.randn(16, 1, model.architecture["input_length"]) + 0.5)
    model.eval()
    return model


def _simulated_network_curves(n=30, seed=3):
    pairs = simulate_aif_pairs(n, n_frames=70, seed=seed)
    arrival = aif.arrival_index_from_time(pairs.times_s, pairs.params["arrival_s"])
    return aif.prepare_network_input(pairs.times_s, pairs.saturated, arrival_index=arrival).curves


def _identity_network(architecture=None):
    """A U-Net whose folded arrays make it the identity on curves above -10 (path through level 0 only)."""
    arch = dict(network.DEFAULT_ARCHITECTURE, **(architecture or {}))
    checked = network._checked_architecture(arch["levels"], arch["base_channels"], arch["kernel_size"],
                                            arch["dropout"], arch["input_length"])
    arrays = {name: np.zeros(shape) for name, shape in network._array_shapes(checked).items()}
    centre = checked["kernel_size"] // 2
    arrays["encoder0_block0_weight"][0, 0, centre] = 1.0
    arrays["encoder0_block0_bias"][0] = 10.0
    arrays["encoder0_block1_weight"][0, 0, centre] = 1.0
    arrays["decoder0_block0_weight"][0, 0, centre] = 1.0
    arrays["decoder0_block1_weight"][0, 0, centre] = 1.0
    arrays["head_weight"][0, 0, 0] = 1.0
    arrays["head_bias"][0] = -10.0
    return network.NumpyUNet(arrays, checked)


# --- Architecture --------------------------------------------------------------

def test_unet_has_the_papers_structure_and_he_initialisation():
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    model = network.build_torch_unet()
    assert model(torch.zeros(3, 1, 64)).shape == (3, 1, 64)
    blocks = [m for m in model.modules() if isinstance(m, torch.nn.Sequential) and len(m) == 4]
    # five steps down and four back up, two blocks each, each Conv -> BN -> ReLU -> Dropout(0.2)
    assert len(blocks) == 2 * (5 + 4)
    for block in blocks:
        assert [type(layer) for layer in block] == [torch.nn.Conv1d, torch.nn.BatchNorm1d, torch.nn.ReLU,
                                                    torch.nn.Dropout]
        assert block[3].p == pytest.approx(0.2)
    assert len([m for m in model.modules() if isinstance(m, torch.nn.ConvTranspose1d)]) == 4
    assert len([m for m in model.modules() if isinstance(m, torch.nn.MaxPool1d)]) >= 1
    # He normal: weight SD = sqrt(2 / fan_in) on the widest convolution
    widest = model.encoder[4][1][0].weight
    fan_in = widest.shape[1] * widest.shape[2]
    assert float(widest.detach().std()) == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.02)
    # parameter count from the stated widths 16 * 2**level, kernel 3
    channels = [16 * 2 ** level for level in range(5)]
    conv = lambda c_in, c_out: c_in * c_out * 3 + 2 * c_out  # no conv bias; BN scale and shift
    expected = sum(conv(c_in, c) + conv(c, c) for c_in, c in zip([1] + channels[:-1], channels))
    expected += sum(channels[l + 1] * channels[l] * 2 + channels[l] + conv(2 * channels[l], channels[l])
                    + conv(channels[l], channels[l]) for l in range(4))
    expected += channels[0] + 1
    assert network.count_parameters(model) == expected
    assert "{:,}".format(expected).replace(",", " ") in network.__doc__


def test_module_imports_and_predicts_without_torch(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np\n"
            "from AIAIFLib import network\n"
            "from AIAIFLib.errors import AIAIFInputError\n"
            "try:\n    network.build_torch_unet()\nexcept AIAIFInputError as e:\n    print('needs torch:', e)\n"
            "print(network.NumpyUNet.__name__)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "needs torch: This step needs PyTorch" in result.stdout


@pytest.mark.parametrize("options, message", [
    ({"levels": 0}, "levels must be a positive integer"),
    ({"kernel_size": 4}, "kernel_size must be odd"),
    ({"input_length": 60}, "cannot be halved 4 times"),
    ({"dropout": 1.0}, "dropout probability"),
])
def test_bad_architecture_is_rejected(options, message):
    pytest.importorskip("torch")
    with pytest.raises(AIAIFInputError, match=message):
        network.build_torch_unet(**options)


# --- Numpy forward pass ------------------------------------------------------------

def test_numpy_forward_matches_torch_eval_float64():
    """Max abs difference below 1e-5 with both networks in float64 (batch norm folded vs. not)."""
    torch = pytest.importorskip("torch")
    model = _randomised_model(torch).double()
    numpy_model = network.NumpyUNet.from_torch(model)
    rng = np.random.default_rng(0)
    for curves in (rng.normal(0.3, 0.6, (25, 64)), _simulated_network_curves()):
        with torch.no_grad():
            expected = model(torch.from_numpy(curves)[:, None, :]).numpy()[:, 0]
        predicted = numpy_model.predict(curves)
        assert np.abs(expected).max() > 0.1  # a non-trivial output
        assert np.abs(predicted - expected).max() < 1e-5


def test_numpy_forward_matches_torch_for_other_architectures():
    torch = pytest.importorskip("torch")
    model = _randomised_model(torch, seed=5, levels=3, base_channels=4, kernel_size=5, input_length=32).double()
    curves = np.random.default_rng(1).normal(size=(7, 32))
    with torch.no_grad():
        expected = model(torch.from_numpy(curves)[:, None, :]).numpy()[:, 0]
    assert np.abs(network.NumpyUNet.from_torch(model).predict(curves) - expected).max() < 1e-5


def test_prediction_is_per_curve_and_accepts_one_curve():
    torch = pytest.importorskip("torch")
    numpy_model = network.NumpyUNet.from_torch(_randomised_model(torch, seed=2))
    curves = _simulated_network_curves(12)
    batch = numpy_model.predict(curves)
    for row in (0, 5, 11):
        np.testing.assert_allclose(numpy_model.predict(curves[row]), batch[row], rtol=0, atol=1e-12)
    reordered = numpy_model.predict(curves[::-1])
    np.testing.assert_allclose(reordered[::-1], batch, rtol=0, atol=1e-12)


def test_identity_network_returns_its_input():
    curves = np.random.default_rng(3).normal(0.5, 0.5, (5, 64))
    np.testing.assert_allclose(_identity_network().predict(curves), curves, atol=1e-12)


@pytest.mark.parametrize("curves, message", [
    (np.zeros((3, 60)), "curves of 64 frames"),
    (np.zeros((2, 3, 64)), "curves of 64 frames"),
    (np.array([[np.nan] + [0.0] * 63]), "NaN or infinite"),
])
def test_bad_curves_are_rejected(curves, message):
    with pytest.raises(AIAIFInputError, match=message):
        _identity_network().predict(curves)


# --- Weight files --------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch = pytest.importorskip("torch")
    model = _randomised_model(torch, seed=7)
    path = str(tmp_path_factory.mktemp("weights") / "aiaif_unet.npz")
    digest = network.export_weights(model, path, metadata={"note": "test"})
    return model, path, digest


def test_export_load_round_trip(exported):
    torch = pytest.importorskip("torch")
    model, path, digest = exported
    with open(path, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == digest
    with open(network.checksum_path_for(path)) as handle:
        assert handle.read().strip() == digest
    assert network.checksum_path_for(path).endswith("aiaif_unet.sha256")
    loaded = network.load_weights(path)
    assert loaded.architecture["metadata"] == {"note": "test"}
    assert loaded.architecture["batch_norm_folded"] is True
    curves = _simulated_network_curves()
    with torch.no_grad():
        expected = model(torch.from_numpy(curves.astype(np.float32))[:, None, :]).numpy()[:, 0]
    # float32 storage and float32 torch: agreement to float32 rounding
    assert np.abs(loaded.predict(curves) - expected).max() < 1e-4
    np.testing.assert_allclose(loaded.predict(curves), network.NumpyUNet.from_torch(model).predict(curves),
                               atol=1e-4)
    assert network.load_weights(path, sha256=digest.upper()).n_parameters == loaded.n_parameters


def test_torch_model_from_weights_reproduces_the_numpy_network(exported):
    torch = pytest.importorskip("torch")
    _, path, _ = exported
    loaded = network.load_weights(path)
    rebuilt = network.torch_model_from_weights(loaded)
    assert not rebuilt.training
    curves = _simulated_network_curves()
    with torch.no_grad():
        predicted = rebuilt(torch.from_numpy(curves.astype(np.float32))[:, None, :]).numpy()[:, 0]
    assert np.abs(predicted - loaded.predict(curves)).max() < 1e-4
    # and back: folding the rebuilt model gives the stored arrays again
    refolded = network.NumpyUNet.from_torch(rebuilt).arrays
    for name, value in loaded.arrays.items():
        np.testing.assert_allclose(refolded[name], value, rtol=1e-6, atol=1e-6)


def test_export_is_byte_for_byte_reproducible(exported, tmp_path):
    model, path, digest = exported
    again = str(tmp_path / "again.npz")
    assert network.export_weights(model, again, metadata={"note": "test"}) == digest
    with open(path, "rb") as first, open(again, "rb") as second:
        assert first.read() == second.read()


def test_default_paths_are_in_resources_models():
    models = os.path.join(REPO, "Resources", "Models")
    assert network.DEFAULT_WEIGHTS_PATH == os.path.join(models, "aiaif_unet.npz")
    assert network.DEFAULT_CHECKSUM_PATH == os.path.join(models, "aiaif_unet.sha256")
    assert network.checksum_path_for(network.DEFAULT_WEIGHTS_PATH) == network.DEFAULT_CHECKSUM_PATH


def test_missing_weights_file_is_reported(tmp_path, monkeypatch):
    with pytest.raises(AIAIFInputError, match="weights file .* is missing; reinstall the extension or retrain"):
        network.load_weights(str(tmp_path / "nothing.npz"))
    monkeypatch.setattr(network, "DEFAULT_WEIGHTS_PATH", str(tmp_path / "shipped.npz"))
    with pytest.raises(AIAIFInputError, match="shipped.npz is missing"):
        network.load_weights()


def test_checksum_mismatch_is_reported(exported, tmp_path):
    _, path, digest = exported
    with pytest.raises(AIAIFInputError, match="SHA-256 .* was expected"):
        network.load_weights(path, sha256="0" * 64)
    damaged = tmp_path / "aiaif_unet.npz"
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (tmp_path / "aiaif_unet.sha256").write_text(digest + "\n")
    with pytest.raises(AIAIFInputError, match="damaged or not the matching file"):
        network.load_weights(str(damaged))


def test_missing_or_malformed_checksum_is_reported(exported, tmp_path):
    _, path, _ = exported
    copy = tmp_path / "copy.npz"
    copy.write_bytes(open(path, "rb").read())
    with pytest.raises(AIAIFInputError, match="checksum file .*copy.sha256 .* is missing"):
        network.load_weights(str(copy))
    with pytest.raises(AIAIFInputError, match="not 64 hexadecimal digits"):
        network.load_weights(str(copy), sha256="abc")


def _write_with_checksum(path, data):
    path.write_bytes(data)
    network_checksum = hashlib.sha256(data).hexdigest()
    (path.parent / (path.stem + ".sha256")).write_text(network_checksum + "  " + path.name + "\n")


def test_corrupt_or_foreign_files_with_matching_checksum_are_reported(exported, tmp_path):
    _, path, _ = exported
    garbage = tmp_path / "garbage.npz"
    _write_with_checksum(garbage, b"this is not a zip archive")
    with pytest.raises(AIAIFInputError, match="not a readable AI-AIF weights file"):
        network.load_weights(str(garbage))
    truncated = tmp_path / "truncated.npz"
    _write_with_checksum(truncated, open(path, "rb").read()[:5000])
    with pytest.raises(AIAIFInputError, match="not a readable AI-AIF weights file"):
        network.load_weights(str(truncated))
    foreign = tmp_path / "foreign.npz"
    np.savez(str(foreign), something=np.zeros(3), architecture_json=np.array('{"format": "other"}'))
    _write_with_checksum(foreign, foreign.read_bytes())
    with pytest.raises(AIAIFInputError, match="not an AI-AIF weights file"):
        network.load_weights(str(foreign))
    lacking = tmp_path / "lacking.npz"
    arrays = {name: value for name, value in _identity_network().arrays.items() if name != "head_bias"}
    arrays["architecture_json"] = np.array(
        '{"format": "aiaif-unet-folded-npz", "format_version": 1, "levels": 5, "base_channels": 16, '
        '"kernel_size": 3, "input_length": 64}')
    np.savez(str(lacking), **arrays)
    _write_with_checksum(lacking, lacking.read_bytes())
    with pytest.raises(AIAIFInputError, match="lack the array 'head_bias'"):
        network.load_weights(str(lacking))


# --- Correction of measured AIFs ---------------------------------------------------------

def test_correct_aifs_with_identity_network_returns_the_input():
    pairs = simulate_aif_pairs(6, n_frames=60, seed=11)
    corrected = network.correct_aifs(pairs.times_s, pairs.saturated, weights=_identity_network())
    assert corrected.shape == pairs.saturated.shape
    np.testing.assert_allclose(corrected, pairs.saturated, rtol=1e-9, atol=1e-9 * pairs.saturated.max())
    one = network.correct_aifs(pairs.times_s[2], pairs.saturated[2], weights=_identity_network())
    assert one.shape == (60,)
    np.testing.assert_allclose(one, pairs.saturated[2], rtol=1e-9)
    shared = network.correct_aifs(pairs.times_s[2], pairs.saturated[2:4], weights=_identity_network())
    np.testing.assert_allclose(shared, pairs.saturated[2:4], rtol=1e-9)


def test_correct_aifs_puts_the_prediction_back_in_signal_units():
    class Doubling(network.NumpyUNet):
        def predict(self, curves):
            return 2.0 * np.asarray(curves)

    identity = _identity_network()
    doubling = Doubling(identity.arrays, identity.architecture)
    pairs = simulate_aif_pairs(4, n_frames=90, seed=12)
    arrival = aif.arrival_index_from_time(pairs.times_s, pairs.params["arrival_s"])
    corrected = network.correct_aifs(pairs.times_s, pairs.saturated, weights=doubling, arrival_index=arrival)
    prepared = aif.prepare_network_input(pairs.times_s, pairs.saturated, arrival_index=arrival)
    np.testing.assert_allclose(corrected, aif.restore_network_output(prepared, 2.0 * prepared.curves))
    assert np.all(corrected.max(axis=1) > 1.5 * pairs.saturated.max(axis=1))


def test_correct_aifs_loads_weights_by_path_and_by_default(exported, monkeypatch):
    _, path, _ = exported
    pairs = simulate_aif_pairs(3, n_frames=60, seed=13)
    by_path = network.correct_aifs(pairs.times_s, pairs.saturated, weights=path)
    by_model = network.correct_aifs(pairs.times_s, pairs.saturated, weights=network.load_weights(path))
    np.testing.assert_array_equal(by_path, by_model)
    monkeypatch.setattr(network, "DEFAULT_ENSEMBLE_PATHS", (path,))
    np.testing.assert_array_equal(network.correct_aifs(pairs.times_s, pairs.saturated), by_model)


class _Scaled(network.NumpyUNet):
    """The identity network times a fixed factor (an ensemble member with a known answer)."""

    def __init__(self, factor):
        identity = _identity_network()
        super().__init__(identity.arrays, identity.architecture)
        self.factor = factor

    def predict(self, curves):
        return self.factor * np.asarray(curves)


def test_the_ensemble_corrects_with_its_mean_and_keeps_each_members_curve():
    pairs = simulate_aif_pairs(4, n_frames=70, seed=14)
    arrival = aif.arrival_index_from_time(pairs.times_s, pairs.params["arrival_s"])
    ensemble = network.Ensemble([_Scaled(1.5), _Scaled(2.5), _Scaled(2.0)])
    assert len(ensemble) == 3
    corrected, members = network.correct_aifs_with_members(pairs.times_s, pairs.saturated, weights=ensemble,
                                                           arrival_index=arrival)
    alone = [network.correct_aifs(pairs.times_s, pairs.saturated, weights=_Scaled(f), arrival_index=arrival)
             for f in (1.5, 2.5, 2.0)]
    np.testing.assert_allclose(members, np.stack(alone))
    # The mean prediction is the factor-2 member's, so the correction is that member's curve.
    np.testing.assert_allclose(corrected, alone[2])
    np.testing.assert_allclose(network.correct_aifs(pairs.times_s, pairs.saturated, weights=ensemble,
                                                    arrival_index=arrival), corrected)
    assert np.all(members[0].max(axis=1) < corrected.max(axis=1)) and np.all(corrected.max(axis=1) < members[1].max(axis=1))


def test_an_ensemble_needs_members_of_one_window_length():
    with pytest.raises(AIAIFInputError, match="at least one network"):
        network.Ensemble([])
    with pytest.raises(AIAIFInputError, match="different lengths"):
        network.Ensemble([_identity_network(), _identity_network({"input_length": 32})])


def test_the_shipped_ensemble_loads_every_member_with_its_checksum():
    ensemble = network.load_ensemble()
    assert len(ensemble) == len(network.DEFAULT_ENSEMBLE_PATHS) >= 3
    assert network.DEFAULT_ENSEMBLE_PATHS[0] == network.DEFAULT_WEIGHTS_PATH
    for path in network.DEFAULT_ENSEMBLE_PATHS:
        assert os.path.isfile(network.checksum_path_for(path))
        assert os.path.isfile(training_range.training_record_path(path))
    curves = _simulated_network_curves(n=5)
    predictions = ensemble.predict_members(curves)
    assert predictions.shape == (len(ensemble),) + curves.shape
    # Members trained from other seeds disagree somewhat, but not wildly, on curves like their training data.
    spread = np.abs(predictions - predictions.mean(axis=0)).max()
    assert 1e-4 < spread < 0.5 * np.abs(predictions).max()


def test_one_weights_file_is_an_ensemble_of_one(exported):
    _, path, _ = exported
    assert len(network.load_ensemble(path)) == 1


def test_correct_aifs_reports_bad_curves():
    with pytest.raises(AIAIFInputError):
        network.correct_aifs(np.arange(30.0), np.full(30, np.nan), weights=_identity_network())


# --- Training range of the inputs ------------------------------------------------------------

def _synthetic_aif(heart_rate_bpm=80.0, arrival_s=9.3, n_frames=60, ratio=10.0, noise=0.002, seed=0):
    """A saturated-looking AIF with chosen heart rate, arrival (s), length and peak-to-baseline ratio."""
    times = np.arange(n_frames) * 60.0 / heart_rate_bpm
    lag = np.clip(times - arrival_s, 0.0, None)
    enhancement = (lag / 3.0) ** 2 * np.exp(2.0 * (1.0 - lag / 3.0)) + 0.15 * (1.0 - np.exp(-lag / 4.0))
    signal = 100.0 * (1.0 + (ratio - 1.0) * enhancement / enhancement.max())
    signal += noise * 100.0 * ratio * np.random.default_rng(seed).standard_normal(n_frames)
    return times, signal


@pytest.fixture(scope="module")
def shipped_record():
    with open(network.DEFAULT_TRAINING_RECORD_PATH, encoding="utf-8") as handle:
        return json.load(handle)


def _narrow_record(**ranges):
    """A training record whose features all have the given (low, high) ranges."""
    features = {name: {"low": low, "high": high} for name, (low, high) in ranges.items()}
    return {training_range.INPUT_FEATURE_RANGES_KEY: {"features": features, "field_strengths_t": [1.5, 3.0]}}


def test_input_features_known_answers():
    times, signal = _synthetic_aif(heart_rate_bpm=75.0, arrival_s=9.3, n_frames=50, ratio=8.0, noise=0.0)
    features = training_range.input_features(times, signal, arrival_index=12)
    assert features["heart_rate_bpm"] == pytest.approx([75.0])
    assert features["arrival_time_s"] == pytest.approx([12 * 0.8])
    assert features["frames_after_arrival"] == pytest.approx([50 - 12])  # series shorter than the window
    assert features["enhancement_ratio"] == pytest.approx([8.0])  # noise-free: peak 800 over baseline 100
    long_times, long_signal = _synthetic_aif(n_frames=120, noise=0.0)
    capped = training_range.input_features(long_times, long_signal, arrival_index=13)
    assert capped["frames_after_arrival"] == pytest.approx([64 - 4])
    early = training_range.input_features(long_times, long_signal, arrival_index=2)  # window clipped at frame 0
    assert early["frames_after_arrival"] == pytest.approx([64 - 2])
    # default: arrival detected as at inference (first frame after 9.3 s is frame 13 at 80 bpm)
    detected = training_range.input_features(long_times, long_signal)
    assert detected["arrival_time_s"] == pytest.approx([13 * 0.75])
    # vectorised over curves, with one shared time row
    pair = training_range.input_features(long_times, np.stack([long_signal, 2.0 * long_signal]), arrival_index=13)
    assert pair["enhancement_ratio"] == pytest.approx([capped["enhancement_ratio"][0]] * 2)
    with pytest.raises(AIAIFInputError, match="arrival index"):
        training_range.input_features(times, signal, arrival_index=0)


def test_input_feature_ranges_summarise_percentiles_and_field_strengths():
    rng = np.random.default_rng(4)
    parts = [{name: rng.uniform(10.0, 20.0, size) for name in training_range.INPUT_FEATURES} for size in (300, 700)]
    fields = np.where(rng.random(1000) < 0.5, 1.5, 3.0)
    section = training_range.input_feature_ranges(parts, fields, note="test")
    assert section["n_curves"] == 1000 and section["percentiles"] == [0.5, 99.5] and section["note"] == "test"
    assert section["field_strengths_t"] == [1.5, 3.0]
    for name, entry in section["features"].items():
        values = np.concatenate([part[name] for part in parts])
        assert entry["min"] == values.min() and entry["max"] == values.max()
        assert entry["min"] < entry["low"] < entry["median"] < entry["high"] < entry["max"]
        inside = np.mean((values >= entry["low"]) & (values <= entry["high"]))
        assert 0.985 <= inside <= 0.995
        assert entry["unit"] == training_range.INPUT_FEATURES[name]["unit"]
    joined = {name: np.concatenate([part[name] for part in parts]) for name in training_range.INPUT_FEATURES}
    assert training_range.input_feature_ranges(joined, fields, note="test") == section
    assert training_range.input_feature_ranges(joined, None)["field_strengths_t"] is None
    widest = training_range.input_feature_ranges(joined, percentiles=(0, 100))["features"]["heart_rate_bpm"]
    assert (widest["low"], widest["high"]) == (widest["min"], widest["max"])
    # bounds are values of training curves, rounded outwards: a few cases keep their smallest and largest
    few = training_range.input_feature_ranges({name: values[:7] for name, values in joined.items()})
    for name, entry in few["features"].items():
        assert (entry["low"], entry["high"]) == (joined[name][:7].min(), joined[name][:7].max())
    json.dumps(section, allow_nan=False)


@pytest.mark.parametrize("change, message", [
    (dict(percentiles=(99.5, 0.5)), "percentiles must increase"),
    (dict(percentiles=(-1, 50)), "percentiles must increase"),
    (dict(drop="enhancement_ratio"), "'enhancement_ratio' is missing"),
    (dict(short="arrival_time_s"), "different numbers of curves"),
    (dict(field_strength_t=[3.0]), "one field strength per training curve"),
    (dict(all_nan="heart_rate_bpm"), "no finite value"),
])
def test_input_feature_ranges_refuse_bad_input(change, message):
    features = {name: np.linspace(1.0, 2.0, 10) for name in training_range.INPUT_FEATURES}
    if "drop" in change:
        del features[change["drop"]]
    if "short" in change:
        features[change["short"]] = features[change["short"]][:5]
    if "all_nan" in change:
        features[change["all_nan"]] = np.full(10, np.nan)
    options = {key: value for key, value in change.items() if key in ("percentiles", "field_strength_t")}
    with pytest.raises(AIAIFInputError, match=message):
        training_range.input_feature_ranges(features, **options)


def test_shipped_record_holds_the_training_range_of_the_shipped_weights(shipped_record):
    assert network.DEFAULT_TRAINING_RECORD_PATH == os.path.join(REPO, "Resources", "Models", "training.json")
    assert training_range.training_record_path() == network.DEFAULT_TRAINING_RECORD_PATH
    with open(network.DEFAULT_CHECKSUM_PATH) as handle:
        assert shipped_record["weights_sha256"] == handle.read().split()[0]
    section = shipped_record[training_range.INPUT_FEATURE_RANGES_KEY]
    assert section["n_curves"] == shipped_record["data"]["n_train"]
    assert section["percentiles"] == list(training_range.TRAINING_RANGE_PERCENTILES)
    assert section["field_strengths_t"] == [1.5, 3.0]
    assert set(section["features"]) == set(training_range.INPUT_FEATURES)
    ranges = shipped_record["data"]["parameter_ranges"]
    heart_rate = section["features"]["heart_rate_bpm"]
    # the simulator's mean heart rates, widened a little by beat-to-beat variation and drift
    assert ranges["heart_rate_bpm"][0] - 5 < heart_rate["low"] < ranges["heart_rate_bpm"][0] + 5
    assert ranges["heart_rate_bpm"][1] - 5 < heart_rate["high"] < ranges["heart_rate_bpm"][1] + 5
    arrival = section["features"]["arrival_time_s"]
    assert ranges["arrival_s"][0] - 1 < arrival["low"] and arrival["high"] < ranges["arrival_s"][1] + 2
    assert section["features"]["frames_after_arrival"]["high"] == 64 - 4


def test_curves_from_the_training_distribution_give_no_warning(shipped_record):
    pairs = simulate_aif_pairs(150, n_frames=75, seed=21)
    ranges = shipped_record[training_range.INPUT_FEATURE_RANGES_KEY]["features"]
    features = training_range.input_features(pairs.times_s, pairs.saturated)
    outside = np.zeros(len(pairs), bool)
    for name, entry in ranges.items():
        outside |= (features[name] < entry["low"]) | (features[name] > entry["high"])
    flagged = []
    for curve in range(len(pairs)):
        warnings = training_range.training_range_warnings(pairs.times_s[curve], pairs.saturated[curve],
                                                          pairs.params["field_strength_t"][curve])
        assert bool(warnings) == outside[curve]
        flagged.append(bool(warnings))
    # four features at the 0.5th-99.5th percentiles: a few per cent of training-like curves lie at an edge
    assert np.mean(flagged) <= 0.06
    times, signal = _synthetic_aif()
    assert training_range.training_range_warnings(times, signal, 3.0) == []
    assert training_range.training_range_warnings(times, signal, 1.5) == []
    assert training_range.training_range_warnings(times, signal, 2.89) == []  # a 3 T scanner's exact field


@pytest.mark.parametrize("aif_options, field_strength_t, feature, value, unit", [
    (dict(heart_rate_bpm=40.0), 3.0, "heart_rate_bpm", 40.0, " bpm"),
    (dict(arrival_s=30.3, n_frames=90), 3.0, "arrival_time_s", 41 * 0.75, " s"),  # first frame after 30.3 s
    (dict(ratio=60.0), 3.0, "enhancement_ratio", 60.0, ""),
    (dict(ratio=2.5), 1.5, "enhancement_ratio", 2.5, ""),
    (dict(n_frames=28), 3.0, "frames_after_arrival", 28 - 13, " frames"),  # arrival at frame 13
])
def test_a_feature_outside_the_training_range_gives_exactly_its_warning(shipped_record, aif_options,
                                                                        field_strength_t, feature, value, unit):
    times, signal = _synthetic_aif(**aif_options)
    warnings = training_range.training_range_warnings(times, signal, field_strength_t)
    assert len(warnings) == 1
    entry = shipped_record[training_range.INPUT_FEATURE_RANGES_KEY]["features"][feature]
    description = training_range.INPUT_FEATURES[feature]
    warning = warnings[0]
    prefix = "The " + description["label"] + " is "
    assert warning.startswith(prefix)
    value_text = warning[len(prefix):].split(",")[0]
    assert value_text.endswith(unit)
    assert float(value_text[:len(value_text) - len(unit)]) == pytest.approx(value, rel=0.02, abs=0.05)
    expected_range = "{} to {}{}".format(description["format"].format(entry["low"]),
                                         description["format"].format(entry["high"]), unit)
    assert "outside the AI-AIF network's training range ({})".format(expected_range) in warning
    assert "the AI-AIF correction is an extrapolation; check it against" in warning
    assert warning.endswith(".") and warning.count(". ") == 0  # one sentence


def test_field_strength_outside_training_gives_its_warning():
    times, signal = _synthetic_aif()
    warnings = training_range.training_range_warnings(times, signal, 7.0)
    assert len(warnings) == 1
    assert warnings[0].startswith("The field strength is 7 T, but the AI-AIF network was trained at 1.5 and 3 T")
    assert training_range.training_range_warnings(times, signal, None) == []
    record = _narrow_record(heart_rate_bpm=(0.0, 1000.0))
    record[training_range.INPUT_FEATURE_RANGES_KEY]["field_strengths_t"] = None  # a site's paired data: not known
    assert training_range.training_range_warnings(times, signal, 7.0, record=record) == []


def test_several_features_outside_give_one_warning_each():
    times, signal = _synthetic_aif(heart_rate_bpm=40.0, ratio=60.0)
    warnings = training_range.training_range_warnings(times, signal, 7.0)
    assert [w.split(" is ")[0] for w in warnings] == [
        "The heart rate (from the median frame interval)", "The saturated peak-to-baseline signal ratio",
        "The field strength"]


def test_record_default_path_and_dict_agree(shipped_record, tmp_path):
    times, signal = _synthetic_aif(heart_rate_bpm=40.0)
    by_default = training_range.training_range_warnings(times, signal, 3.0)
    assert training_range.training_range_warnings(times, signal, 3.0, record=shipped_record) == by_default
    assert training_range.training_range_warnings(times, signal, 3.0, record=network.DEFAULT_TRAINING_RECORD_PATH) \
        == by_default
    assert training_range.training_range_warnings(times, signal, 3.0, weights_path=network.DEFAULT_WEIGHTS_PATH) \
        == by_default
    narrow = _narrow_record(heart_rate_bpm=(10.0, 20.0))
    path = tmp_path / "record.json"
    path.write_text(json.dumps(narrow))
    warnings = training_range.training_range_warnings(times, signal, 3.0, record=str(path))
    assert len(warnings) == 1 and "(10.0 to 20.0 bpm)" in warnings[0]
    # the given arrival index is used instead of the detected one
    late = training_range.training_range_warnings(times, signal, 3.0, arrival_index=50,
                                                  record=_narrow_record(arrival_time_s=(0.0, 20.0)))
    assert len(late) == 1 and "is 75.0 s" in late[0]  # frame 50 at 1.5 s per beat


def test_older_record_without_ranges_gives_no_feature_warning(shipped_record):
    older = {key: value for key, value in shipped_record.items() if key != training_range.INPUT_FEATURE_RANGES_KEY}
    times, signal = _synthetic_aif(heart_rate_bpm=40.0, ratio=60.0)
    assert training_range.training_range_warnings(times, signal, 7.0, record=older) == []


def _copy_shipped_weights(folder):
    folder.mkdir(exist_ok=True)
    weights = folder / "site_unet.npz"
    weights.write_bytes(open(network.DEFAULT_WEIGHTS_PATH, "rb").read())
    (folder / "site_unet.sha256").write_text(open(network.DEFAULT_CHECKSUM_PATH).read())
    return str(weights)


def test_custom_weights_use_the_record_beside_them(shipped_record, tmp_path):
    times, signal = _synthetic_aif()  # inside the shipped range
    weights = _copy_shipped_weights(tmp_path / "site")
    assert training_range.training_record_path(weights) == str(tmp_path / "site" / "training.json")
    unknown = training_range.training_range_warnings(times, signal, 3.0, weights_path=weights)
    assert len(unknown) == 1
    assert unknown[0].startswith("The AI-AIF network's training range is unknown (no training.json in the folder "
                                 "of the weights, {}".format(tmp_path / "site"))
    assert "python -m AIAIFLib train" in unknown[0]
    narrow = dict(_narrow_record(heart_rate_bpm=(100.0, 110.0)), weights_sha256=shipped_record["weights_sha256"])
    (tmp_path / "site" / "training.json").write_text(json.dumps(narrow))
    used = training_range.training_range_warnings(times, signal, 3.0, weights_path=weights)
    assert len(used) == 1 and "(100.0 to 110.0 bpm)" in used[0]
    narrow["weights_sha256"] = "0" * 64  # the record of another training run
    (tmp_path / "site" / "training.json").write_text(json.dumps(narrow))
    other = training_range.training_range_warnings(times, signal, 3.0, weights_path=weights)
    assert len(other) == 1 and "unknown" in other[0] and "describes other weights than site_unet.npz" in other[0]
    # an explicitly given record is used as it is
    assert len(training_range.training_range_warnings(times, signal, 3.0, record=narrow, weights_path=weights)) == 1


@pytest.mark.parametrize("content, reason", [
    ("{not json", "cannot be read"),
    ("[1, 2]", "is not a training record"),
    (json.dumps({"input_feature_ranges": {"features": {"heart_rate_bpm": {"low": "fast"}}}}), "malformed"),
    (json.dumps({"input_feature_ranges": {"features": {"heart_rate_bpm": {"low": 90, "high": 60}}}}),
     "malformed"),
    (json.dumps({"input_feature_ranges": {"features": {}, "field_strengths_t": "3T"}}), "malformed"),
    (json.dumps({"input_feature_ranges": []}), "malformed"),
])
def test_unreadable_or_malformed_record_makes_the_range_unknown(tmp_path, content, reason):
    times, signal = _synthetic_aif()
    path = tmp_path / "training.json"
    path.write_text(content)
    warnings = training_range.training_range_warnings(times, signal, 3.0, record=str(path))
    assert len(warnings) == 1 and warnings[0].startswith("The AI-AIF network's training range is unknown")
    assert reason in warnings[0]
    missing = training_range.training_range_warnings(times, signal, 3.0, record=str(tmp_path / "none.json"))
    assert len(missing) == 1 and "there is no training record" in missing[0]


def test_training_range_is_checked_for_one_curve_at_a_time():
    times, signal = _synthetic_aif()
    with pytest.raises(AIAIFInputError, match="one AIF at a time"):
        training_range.training_range_warnings(times, np.stack([signal, signal]), 3.0)
    assert training_range.training_range_warnings(times, signal[None, :], 3.0) == []
    with pytest.raises(AIAIFInputError, match="no contrast arrival"):
        training_range.training_range_warnings(times, np.full(times.size, 100.0), 3.0)

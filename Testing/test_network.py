"""The AI-AIF U-Net: torch definition, folded numpy forward pass, weight files, correction."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from AIAIFLib import aif, network
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
    monkeypatch.setattr(network, "DEFAULT_WEIGHTS_PATH", path)
    np.testing.assert_array_equal(network.correct_aifs(pairs.times_s, pairs.saturated), by_model)


def test_correct_aifs_reports_bad_curves():
    with pytest.raises(AIAIFInputError):
        network.correct_aifs(np.arange(30.0), np.full(30, np.nan), weights=_identity_network())

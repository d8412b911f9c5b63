"""The AI-AIF network: a 1D U-Net that maps a saturated AIF to the unsaturated curve.

Architecture [Scannell2022, "Model architecture"]
--------------------------------------------------
Five resolution steps (``levels``); each has two convolution blocks
``Conv1d -> BatchNorm1d -> ReLU -> Dropout(0.2)``.  Max-pooling (2) goes down
one step, a transposed convolution (kernel 2, stride 2) goes up, and the
encoder's output at each step is concatenated with the upsampled decoder
input (skip connection, ``[skip, upsampled]`` along channels).  A final 1x1
convolution maps to one channel.  All convolution weights are He-normal
(``kaiming_normal_``); biases start at zero.  Input and output are
``(batch, 1, 64)``: the normalised 64-frame window of ``aif.py``.

The paper gives neither kernel size nor widths; the project's choices are
kernel size 3 (``same`` zero padding) and ``16 * 2**level`` channels
(16, 32, 64, 128, 256), which gives 678 577 trainable parameters
(``DEFAULT_ARCHITECTURE``; the convolutions before batch norm have no bias).
That trains 20 000 iterations of batch 10 in about 6.5 minutes on two CPU
cores (``training.py``, which also gives the accuracy reached).

Run time without PyTorch
------------------------
Training needs PyTorch; using the network does not.  ``export_weights`` folds
every batch norm (eval mode: running mean and variance) into the convolution
before it and writes all arrays to one ``.npz`` file with the architecture as
a JSON string entry (``ARCHITECTURE_KEY``); the zip entries carry a fixed
timestamp, so the same weights always give the same file and SHA-256.
``load_weights`` checks that SHA-256 against a ``.sha256`` text file next to
the weights and returns a ``NumpyUNet``, whose ``predict`` is a pure-numpy
forward pass in float64, vectorised over curves (each convolution is
``kernel_size`` matrix products over the whole batch): about 1.2 ms for one
curve and 0.5 ms per curve in a batch of 200 on the project's 2-core CPU
(``Testing/benchmarks/aif_network.py``).  It agrees with the PyTorch model in
eval mode to 1e-5 (tested in float64).  Dropout is the identity at
inference.  PyTorch is imported only inside the functions that
need it, so this module imports without it.

Whether a study lies inside the training range of the network's inputs is
checked by ``training_range.py``, from the training record
(``TRAINING_RECORD_FILE``) beside the weights.
"""

import hashlib
import io
import json
import os
import zipfile

import numpy as np

from . import aif
from . import constants as K
from .errors import AIAIFInputError

#: Folder of the shipped weights: ``Resources/Models`` beside the package.
MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources", "Models")
#: The shipped weights (written by ``python -m AIAIFLib train``).
DEFAULT_WEIGHTS_PATH = os.path.join(MODELS_DIR, "aiaif_unet.npz")
#: Text file holding the hex SHA-256 of ``DEFAULT_WEIGHTS_PATH``.
DEFAULT_CHECKSUM_PATH = os.path.join(MODELS_DIR, "aiaif_unet.sha256")
#: Further members of the shipped ensemble, each the output folder of
#: ``python -m AIAIFLib train --physics MIX --seed N --output-dir
#: Resources/Models/members/MIX_seedN`` (weights, checksum, training record).
#: Member 0 is ``DEFAULT_WEIGHTS_PATH`` (standard physics, seed 0).  Chosen on
#: the project's own simulated test set (MODEL_CARD.md): three seeds of the
#: standard physics; members of the broad physics mix made the mean worse
#: there (and on the held-out physics) and are not shipped.
MEMBERS_DIR = os.path.join(MODELS_DIR, "members")
DEFAULT_MEMBERS = (("standard", 1), ("standard", 2))
DEFAULT_ENSEMBLE_PATHS = (DEFAULT_WEIGHTS_PATH,) + tuple(
    os.path.join(MEMBERS_DIR, "{}_seed{}".format(mix, seed), "aiaif_unet.npz") for mix, seed in DEFAULT_MEMBERS)
#: Name of the training record that ``training.train`` writes beside the weights.
TRAINING_RECORD_FILE = "training.json"
#: The training record of the shipped weights.
DEFAULT_TRAINING_RECORD_PATH = os.path.join(MODELS_DIR, TRAINING_RECORD_FILE)

#: Name of the entry of the weights file that holds the architecture as JSON.
ARCHITECTURE_KEY = "architecture_json"
#: Identifies the weights-file layout (bump when the array names change).
WEIGHTS_FORMAT = "aiaif-unet-folded-npz"
WEIGHTS_FORMAT_VERSION = 1

#: The project's architecture (kernel size and widths are project choices, see
#: the module docstring; levels and dropout are the paper's).
DEFAULT_ARCHITECTURE = {
    "levels": 5,
    "base_channels": 16,
    "kernel_size": 3,
    "dropout": 0.2,
    "input_length": K.NETWORK_LENGTH,
}

#: Batch-norm epsilon (PyTorch's default), needed to fold the running variance.
BATCH_NORM_EPS = 1e-5

#: Hint appended to every weights-file error.
_WEIGHTS_FIX = "reinstall the extension or retrain with `python -m AIAIFLib train`"


# ---------------------------------------------------------------------------
# Architecture description shared by the torch and numpy networks
# ---------------------------------------------------------------------------

def _checked_architecture(levels, base_channels, kernel_size, dropout, input_length):
    """Validate the architecture numbers and return them as a dict with the widths."""
    integers = {"levels": levels, "base_channels": base_channels, "kernel_size": kernel_size,
                "input_length": input_length}
    for name, value in integers.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise AIAIFInputError("The U-Net's {} must be a positive integer, got {!r}; pass e.g. {}.".format(
                name, value, DEFAULT_ARCHITECTURE[name]))
    if kernel_size % 2 == 0:
        raise AIAIFInputError("The U-Net's kernel_size must be odd for 'same' padding, got {}; pass e.g. 3."
                              .format(kernel_size))
    if input_length % 2 ** (levels - 1):
        raise AIAIFInputError("The input length {} cannot be halved {} times; choose a length divisible by {}."
                              .format(input_length, levels - 1, 2 ** (levels - 1)))
    if not 0.0 <= float(dropout) < 1.0:
        raise AIAIFInputError("The dropout probability must be in [0, 1), got {}; pass e.g. 0.2.".format(dropout))
    return {"levels": int(levels), "base_channels": int(base_channels), "kernel_size": int(kernel_size),
            "dropout": float(dropout), "input_length": int(input_length),
            "channels": [int(base_channels) * 2 ** level for level in range(levels)]}


def _array_shapes(architecture):
    """Names and shapes of every array of the folded network, in forward order."""
    channels = architecture["channels"]
    k = architecture["kernel_size"]
    shapes = {}
    in_channels = 1
    for level, width in enumerate(channels):
        for block, block_in in enumerate((in_channels, width)):
            shapes["encoder{}_block{}_weight".format(level, block)] = (width, block_in, k)
            shapes["encoder{}_block{}_bias".format(level, block)] = (width,)
        in_channels = width
    for level in reversed(range(len(channels) - 1)):
        width = channels[level]
        shapes["up{}_weight".format(level)] = (channels[level + 1], width, 2)
        shapes["up{}_bias".format(level)] = (width,)
        for block, block_in in enumerate((2 * width, width)):
            shapes["decoder{}_block{}_weight".format(level, block)] = (width, block_in, k)
            shapes["decoder{}_block{}_bias".format(level, block)] = (width,)
    shapes["head_weight"] = (1, channels[0], 1)
    shapes["head_bias"] = (1,)
    return shapes


# ---------------------------------------------------------------------------
# PyTorch model (training only)
# ---------------------------------------------------------------------------

def _import_torch():
    try:
        import torch
    except ImportError:
        raise AIAIFInputError("This step needs PyTorch, which is not installed; install it with "
                              "`pip install torch==2.13.0` (or `pip install aiaif[train]`).")
    return torch


def build_torch_unet(levels=DEFAULT_ARCHITECTURE["levels"], base_channels=DEFAULT_ARCHITECTURE["base_channels"],
                     kernel_size=DEFAULT_ARCHITECTURE["kernel_size"], dropout=DEFAULT_ARCHITECTURE["dropout"],
                     input_length=DEFAULT_ARCHITECTURE["input_length"]):
    """The paper's 1D U-Net as a PyTorch module, He-normal initialised.

    Draws its initial weights from PyTorch's global generator: call
    ``torch.manual_seed`` first for a reproducible model.

    Parameters
    ----------
    levels : int, optional
        Resolution steps (5 in the paper); the curve is halved ``levels - 1`` times.
    base_channels : int, optional
        Channels of the first step; step ``l`` has ``base_channels * 2**l``.
    kernel_size : int, optional
        Odd convolution kernel length, frames.
    dropout : float, optional
        Dropout probability after every convolution block (0.2 in the paper).
    input_length : int, optional
        Curve length, frames (64); must be divisible by ``2**(levels - 1)``.

    Returns
    -------
    torch.nn.Module
        Maps ``(batch, 1, input_length)`` normalised saturated curves
        (dimensionless, saturated maximum = 1) to the unsaturated curve on the
        same scale.  Its ``architecture`` attribute is the dict that
        ``export_weights`` stores.
    """
    torch = _import_torch()
    nn = torch.nn
    architecture = _checked_architecture(levels, base_channels, kernel_size, dropout, input_length)

    def conv_block(in_channels, out_channels):
        return nn.Sequential(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm1d(out_channels, eps=BATCH_NORM_EPS),
            nn.ReLU(),
            nn.Dropout(dropout),
        )

    class UNet1D(nn.Module):
        def __init__(self):
            super().__init__()
            self.architecture = architecture
            channels = architecture["channels"]
            inputs = [1] + channels[:-1]
            self.encoder = nn.ModuleList(nn.Sequential(conv_block(c_in, c), conv_block(c, c))
                                         for c_in, c in zip(inputs, channels))
            self.pool = nn.MaxPool1d(2)
            # up[l] and decoder[l] bring step l + 1 back to step l.
            self.up = nn.ModuleList(nn.ConvTranspose1d(channels[l + 1], channels[l], 2, stride=2)
                                    for l in range(levels - 1))
            self.decoder = nn.ModuleList(nn.Sequential(conv_block(2 * channels[l], channels[l]),
                                                       conv_block(channels[l], channels[l]))
                                         for l in range(levels - 1))
            self.head = nn.Conv1d(channels[0], 1, 1)

        def forward(self, x):
            skips = []
            for level, block in enumerate(self.encoder):
                if level:
                    x = self.pool(x)
                x = block(x)
                skips.append(x)
            for level in reversed(range(len(self.up))):
                x = self.decoder[level](torch.cat([skips[level], self.up[level](x)], dim=1))
            return self.head(x)

    model = UNet1D()
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def count_parameters(torch_model):
    """Number of trainable parameters of a PyTorch model (batch-norm scales and shifts included)."""
    return int(sum(p.numel() for p in torch_model.parameters() if p.requires_grad))


def _folded_block(block):
    """Conv weight and bias of ``Conv1d -> BatchNorm1d`` with the batch norm folded in (float64)."""
    conv, norm = block[0], block[1]
    weight = conv.weight.detach().cpu().double().numpy()
    bias = (conv.bias.detach().cpu().double().numpy() if conv.bias is not None
            else np.zeros(weight.shape[0]))
    scale = norm.weight.detach().cpu().double().numpy() / np.sqrt(
        norm.running_var.detach().cpu().double().numpy() + norm.eps)
    shift = norm.bias.detach().cpu().double().numpy() - norm.running_mean.detach().cpu().double().numpy() * scale
    return weight * scale[:, None, None], bias * scale + shift


def _folded_arrays(torch_model):
    """Every array of the eval-mode network with batch norm folded, by the names of ``_array_shapes``."""
    arrays = {}

    def plain(tensor):
        return tensor.detach().cpu().double().numpy()

    for level, stage in enumerate(torch_model.encoder):
        for block in range(2):
            weight, bias = _folded_block(stage[block])
            arrays["encoder{}_block{}_weight".format(level, block)] = weight
            arrays["encoder{}_block{}_bias".format(level, block)] = bias
    for level, (up, stage) in enumerate(zip(torch_model.up, torch_model.decoder)):
        arrays["up{}_weight".format(level)] = plain(up.weight)
        arrays["up{}_bias".format(level)] = plain(up.bias)
        for block in range(2):
            weight, bias = _folded_block(stage[block])
            arrays["decoder{}_block{}_weight".format(level, block)] = weight
            arrays["decoder{}_block{}_bias".format(level, block)] = bias
    arrays["head_weight"] = plain(torch_model.head.weight)
    arrays["head_bias"] = plain(torch_model.head.bias)
    return arrays


def torch_model_from_weights(numpy_model):
    """A PyTorch model in eval mode that computes what a ``NumpyUNet`` computes (e.g. to time torch).

    Each folded convolution goes into the conv of its block, and the block's
    batch norm becomes the identity plus the folded bias (scale 1, running
    mean 0, running variance ``1 - eps``).

    Parameters
    ----------
    numpy_model : NumpyUNet
        Loaded weights (``load_weights``).

    Returns
    -------
    torch.nn.Module
        ``build_torch_unet`` model (float32, eval mode) with those weights.
    """
    torch = _import_torch()
    arch = numpy_model.architecture
    model = build_torch_unet(arch["levels"], arch["base_channels"], arch["kernel_size"], arch["dropout"],
                             arch["input_length"])
    arrays = numpy_model.arrays

    def put(parameter, name):
        parameter.copy_(torch.as_tensor(arrays[name], dtype=parameter.dtype))

    def put_block(block, prefix):
        conv, norm = block[0], block[1]
        put(conv.weight, prefix + "_weight")
        put(norm.bias, prefix + "_bias")
        norm.weight.fill_(1.0)
        norm.running_mean.zero_()
        norm.running_var.fill_(1.0 - norm.eps)

    with torch.no_grad():
        for level, stage in enumerate(model.encoder):
            for block in range(2):
                put_block(stage[block], "encoder{}_block{}".format(level, block))
        for level, (up, stage) in enumerate(zip(model.up, model.decoder)):
            put(up.weight, "up{}_weight".format(level))
            put(up.bias, "up{}_bias".format(level))
            for block in range(2):
                put_block(stage[block], "decoder{}_block{}".format(level, block))
        put(model.head.weight, "head_weight")
        put(model.head.bias, "head_bias")
    return model.eval()


# ---------------------------------------------------------------------------
# NumPy forward pass
# ---------------------------------------------------------------------------

def _conv_same(x, weight, bias):
    """'same' 1-D cross-correlation, channels last: x (n, L, C_in), weight (C_out, C_in, k) -> (n, L, C_out)."""
    k = weight.shape[2]
    length = x.shape[1]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (0, 0))) if pad else x
    out = padded[:, 0:length, :] @ weight[:, :, 0].T
    for tap in range(1, k):
        out += padded[:, tap:tap + length, :] @ weight[:, :, tap].T
    out += bias
    return out


def _transposed_conv_2(x, weight, bias):
    """Transposed convolution, kernel 2 and stride 2, channels last: (n, L, C_in) -> (n, 2L, C_out)."""
    n, length, _ = x.shape
    c_out = weight.shape[1]
    # weight (C_in, C_out, 2) -> (C_in, 2 * C_out) ordered (tap, out channel).
    out = x @ weight.transpose(0, 2, 1).reshape(weight.shape[0], 2 * c_out)
    out = out.reshape(n, 2 * length, c_out)
    out += bias
    return out


def _max_pool_2(x):
    n, length, channels = x.shape
    return x.reshape(n, length // 2, 2, channels).max(axis=2)


class NumpyUNet:
    """The trained U-Net as plain arrays (batch norm folded), evaluated with numpy.

    Parameters
    ----------
    arrays : dict of str -> numpy.ndarray
        Folded weights and biases named as ``export_weights`` writes them.
    architecture : dict
        ``levels``, ``base_channels``, ``kernel_size``, ``dropout``,
        ``input_length`` (and optional extra entries, kept as metadata).

    Attributes
    ----------
    architecture : dict
        The architecture with its per-step ``channels``.
    input_length : int
        Frames per curve (64).
    """

    def __init__(self, arrays, architecture):
        try:
            checked = _checked_architecture(architecture["levels"], architecture["base_channels"],
                                            architecture["kernel_size"], architecture.get("dropout", 0.0),
                                            architecture["input_length"])
        except (KeyError, TypeError):
            raise AIAIFInputError("The network architecture lacks levels, base_channels, kernel_size or "
                                  "input_length; {}.".format(_WEIGHTS_FIX))
        self.architecture = dict(architecture, **checked)
        self.input_length = checked["input_length"]
        self._arrays = {}
        for name, shape in _array_shapes(checked).items():
            if name not in arrays:
                raise AIAIFInputError("The network weights lack the array '{}'; {}.".format(name, _WEIGHTS_FIX))
            value = np.asarray(arrays[name], dtype=np.float64)
            if value.shape != tuple(shape) or not np.all(np.isfinite(value)):
                raise AIAIFInputError("The network weight array '{}' has shape {} or non-finite values where "
                                      "{} finite values are expected; {}.".format(name, value.shape, tuple(shape),
                                                                                 _WEIGHTS_FIX))
            self._arrays[name] = value

    @classmethod
    def from_torch(cls, torch_model):
        """Fold a PyTorch ``build_torch_unet`` model (its batch-norm running statistics) into a ``NumpyUNet``."""
        return cls(_folded_arrays(torch_model), torch_model.architecture)

    @property
    def arrays(self):
        """Copy of the folded arrays (float64), by name."""
        return {name: value.copy() for name, value in self._arrays.items()}

    @property
    def n_parameters(self):
        """Number of stored numbers (batch norm folded, so fewer than the trainable model's)."""
        return int(sum(value.size for value in self._arrays.values()))

    def predict(self, curves):
        """Predict normalised unsaturated AIFs from normalised saturated ones.

        Parameters
        ----------
        curves : array_like, shape (n, input_length) or (input_length,)
            Saturated AIF windows divided by their maximum (dimensionless),
            as ``aif.prepare_network_input(...).curves``.

        Returns
        -------
        numpy.ndarray, float64, shape of ``curves``
            Predicted unsaturated AIF on the same (normalised) scale.

        Raises
        ------
        AIAIFInputError
            Wrong curve length or non-finite values.
        """
        x = np.asarray(curves, dtype=np.float64)
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.input_length:
            raise AIAIFInputError("The network takes curves of {} frames, shape (n, {}), got shape {}; window them "
                                  "with aif.prepare_network_input first.".format(self.input_length,
                                                                                self.input_length, np.shape(curves)))
        if not np.all(np.isfinite(x)):
            raise AIAIFInputError("The curves passed to the network contain NaN or infinite values; remove or "
                                  "repair those frames first.")
        a = self._arrays
        levels = self.architecture["levels"]
        h = x[:, :, None]
        skips = []
        for level in range(levels):
            if level:
                h = _max_pool_2(h)
            for block in range(2):
                h = _conv_same(h, a["encoder{}_block{}_weight".format(level, block)],
                               a["encoder{}_block{}_bias".format(level, block)])
                np.maximum(h, 0.0, out=h)
            skips.append(h)
        for level in reversed(range(levels - 1)):
            up = _transposed_conv_2(h, a["up{}_weight".format(level)], a["up{}_bias".format(level)])
            h = np.concatenate([skips[level], up], axis=2)
            for block in range(2):
                h = _conv_same(h, a["decoder{}_block{}_weight".format(level, block)],
                               a["decoder{}_block{}_bias".format(level, block)])
                np.maximum(h, 0.0, out=h)
        out = _conv_same(h, a["head_weight"], a["head_bias"])[:, :, 0]
        return out[0] if single else out


# ---------------------------------------------------------------------------
# Weight files
# ---------------------------------------------------------------------------

def checksum_path_for(weights_path):
    """The ``.sha256`` file that belongs to a weights file (same folder and stem)."""
    return os.path.splitext(weights_path)[0] + ".sha256"


def _sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def _npz_bytes(arrays):
    """An ``np.load``-readable .npz archive with fixed zip timestamps (same arrays -> same bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def export_weights(torch_model, path, metadata=None, dtype=np.float32):
    """Write a trained model as a folded ``.npz`` weights file and its ``.sha256`` file.

    Parameters
    ----------
    torch_model : torch.nn.Module
        A ``build_torch_unet`` model; its batch-norm running statistics are
        folded into the convolutions (the eval-mode network).
    path : str
        Weights file to write (``.npz``).  The hex SHA-256 goes to
        ``checksum_path_for(path)`` (``aiaif_unet.sha256`` for
        ``aiaif_unet.npz``).
    metadata : dict, optional
        JSON-serialisable facts stored with the architecture under ``metadata``
        (e.g. training seed and data source).
    dtype : numpy dtype, optional
        Storage type of the arrays (float32 keeps the file small; the
        forward pass is computed in float64 either way).

    Returns
    -------
    str
        Hex SHA-256 of the written weights file.
    """
    arrays = {name: value.astype(dtype) for name, value in _folded_arrays(torch_model).items()}
    architecture = dict(torch_model.architecture, format=WEIGHTS_FORMAT, format_version=WEIGHTS_FORMAT_VERSION,
                        batch_norm_folded=True, metadata=metadata or {})
    arrays[ARCHITECTURE_KEY] = np.array(json.dumps(architecture, sort_keys=True))
    data = _npz_bytes(arrays)
    digest = _sha256_hex(data)
    try:
        with open(path, "wb") as handle:
            handle.write(data)
        with open(checksum_path_for(path), "w", encoding="ascii") as handle:
            handle.write(digest + "\n")
    except OSError as error:
        raise AIAIFInputError("Cannot write the weights file {} ({}); choose a writable folder.".format(
            path, error.strerror or error))
    return digest


def _expected_checksum(path, sha256):
    if sha256 is None:
        checksum_path = checksum_path_for(path)
        try:
            with open(checksum_path, encoding="ascii") as handle:
                text = handle.read()
        except FileNotFoundError:
            raise AIAIFInputError("The checksum file {} of the network weights is missing; {}.".format(
                checksum_path, _WEIGHTS_FIX))
        except (OSError, UnicodeDecodeError) as error:
            raise AIAIFInputError("Cannot read the checksum file {} ({}); {}.".format(checksum_path, error,
                                                                                     _WEIGHTS_FIX))
        tokens = text.split()
        sha256 = tokens[0] if tokens else ""
    expected = str(sha256).strip().lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise AIAIFInputError("The expected SHA-256 of the network weights, '{}', is not 64 hexadecimal digits; "
                              "{}.".format(sha256, _WEIGHTS_FIX))
    return expected


def load_weights(path=None, sha256=None):
    """Load and verify network weights written by ``export_weights``.

    Parameters
    ----------
    path : str, optional
        Weights file (``.npz``); default ``DEFAULT_WEIGHTS_PATH``, the shipped
        weights in ``Resources/Models``.
    sha256 : str, optional
        Expected hex SHA-256 of the file; default: the first word of
        ``checksum_path_for(path)``.

    Returns
    -------
    NumpyUNet
        The network, ready for ``predict``.

    Raises
    ------
    AIAIFInputError
        Missing weights or checksum file, checksum mismatch, or a file that
        is not a valid weights file.
    """
    path = DEFAULT_WEIGHTS_PATH if path is None else os.fspath(path)
    if not os.path.isfile(path):
        raise AIAIFInputError("The network weights file {} is missing; {}.".format(path, _WEIGHTS_FIX))
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise AIAIFInputError("Cannot read the network weights file {} ({}); {}.".format(
            path, error.strerror or error, _WEIGHTS_FIX))
    expected = _expected_checksum(path, sha256)
    actual = _sha256_hex(data)
    if actual != expected:
        raise AIAIFInputError("The network weights file {} has SHA-256 {} but {} was expected, so it is damaged or "
                              "not the matching file; {}.".format(path, actual, expected, _WEIGHTS_FIX))
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        architecture = json.loads(str(arrays.pop(ARCHITECTURE_KEY)))
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile, TypeError) as error:
        raise AIAIFInputError("The network weights file {} is not a readable AI-AIF weights file ({}); {}.".format(
            path, type(error).__name__, _WEIGHTS_FIX))
    if not isinstance(architecture, dict) or architecture.get("format") != WEIGHTS_FORMAT:
        raise AIAIFInputError("The file {} is not an AI-AIF weights file; {}.".format(path, _WEIGHTS_FIX))
    if architecture.get("format_version") != WEIGHTS_FORMAT_VERSION:
        raise AIAIFInputError("The weights file {} has format version {} but this AI-AIF reads version {}; "
                              "{}.".format(path, architecture.get("format_version"), WEIGHTS_FORMAT_VERSION,
                                           _WEIGHTS_FIX))
    return NumpyUNet(arrays, architecture)


# ---------------------------------------------------------------------------
# Correction of measured AIFs
# ---------------------------------------------------------------------------

class Ensemble:
    """Networks trained alike from different seeds, evaluated together.

    Their mean prediction is the correction; their spread is a band on it
    (the disagreement of equally good networks, a lower bound on the error
    on physics none of them was trained on).

    Parameters
    ----------
    members : sequence of NumpyUNet
        One or more loaded networks with the same input length.
    """

    def __init__(self, members):
        self.members = tuple(members)
        if not self.members:
            raise AIAIFInputError("An ensemble needs at least one network; pass a weights file.")
        lengths = {member.input_length for member in self.members}
        if len(lengths) != 1:
            raise AIAIFInputError("The ensemble's networks take windows of different lengths ({}); use weights "
                                  "trained alike.".format(sorted(lengths)))
        self.input_length = lengths.pop()

    def __len__(self):
        return len(self.members)

    def predict_members(self, curves):
        """Every member's prediction, shape (n_members,) + ``curves.shape`` (dimensionless)."""
        return np.stack([member.predict(curves) for member in self.members])

    def predict(self, curves):
        """The members' mean prediction, shape of ``curves`` (dimensionless)."""
        return self.predict_members(curves).mean(axis=0)


def load_ensemble(path=None):
    """Load the shipped ensemble, or one weights file as an ensemble of one.

    Parameters
    ----------
    path : str, optional
        A weights file (``.npz``); default: every file of
        ``DEFAULT_ENSEMBLE_PATHS``.

    Returns
    -------
    Ensemble

    Raises
    ------
    AIAIFInputError
        For a member that ``load_weights`` refuses.
    """
    paths = DEFAULT_ENSEMBLE_PATHS if path is None else (path,)
    return Ensemble([load_weights(member) for member in paths])


def _as_ensemble(weights):
    if isinstance(weights, Ensemble):
        return weights
    if isinstance(weights, NumpyUNet):
        return Ensemble([weights])
    return load_ensemble(weights)


def correct_aifs_with_members(times_s, signals, weights=None, arrival_index=None):
    """Correct saturated AIFs with the ensemble, keeping each member's curve.

    Parameters
    ----------
    times_s, signals, arrival_index
        As for ``correct_aifs``; ``signals`` of shape (n, n_frames).
    weights : Ensemble, NumpyUNet or str, optional
        Default: the shipped ensemble (``load_ensemble``).

    Returns
    -------
    corrected : numpy.ndarray, shape (n, n_frames)
        The correction with the members' mean prediction (signal units).
    members : numpy.ndarray, shape (n_members, n, n_frames)
        The correction with each member's prediction alone (signal units).
    """
    ensemble = _as_ensemble(weights)
    prepared = aif.prepare_network_input(times_s, signals, arrival_index=arrival_index)
    predictions = ensemble.predict_members(prepared.curves)
    members = np.stack([aif.restore_network_output(prepared, prediction) for prediction in predictions])
    corrected = aif.restore_network_output(prepared, predictions.mean(axis=0))
    return corrected, members


def correct_aifs(times_s, signals, weights=None, arrival_index=None):
    """Correct saturated AIFs with the AI-AIF network.

    Windows and normalises each curve (``aif.prepare_network_input``), runs
    the network (the mean of the ensemble's members) and puts the
    prediction back on the frames and signal scale of the input
    (``aif.restore_network_output``).

    Parameters
    ----------
    times_s : array_like, shape (n, n_frames) or (n_frames,)
        Frame times, s: one row per curve, or one row shared by all curves.
    signals : array_like, shape (n, n_frames) or (n_frames,)
        Saturated LV blood-pool signal (scanner units, baseline included);
        a 1-D curve gives a 1-D result.
    weights : Ensemble, NumpyUNet or str, optional
        A loaded ensemble or network, or the path of one weights file;
        default: the shipped ensemble (``DEFAULT_ENSEMBLE_PATHS``).
    arrival_index : array_like of int, shape (n,), optional
        Frame of contrast arrival of each curve; default: detected by
        ``aif.prepare_network_input``.

    Returns
    -------
    numpy.ndarray, shape of ``signals``
        Corrected (unsaturated) AIF signal, same units as ``signals``.

    Raises
    ------
    AIAIFInputError
        Bad curves (from the preprocessing) or unusable weights.
    """
    ensemble = _as_ensemble(weights)
    single = np.ndim(signals) == 1
    prepared = aif.prepare_network_input(times_s, signals, arrival_index=arrival_index)
    corrected = aif.restore_network_output(prepared, ensemble.predict(prepared.curves))
    return corrected[0] if single else corrected

"""Training range of the AI-AIF network's inputs: when the correction is an extrapolation.

A network only interpolates what it was trained on.  ``input_features``
measures, on a saturated AIF, the observable quantities that its input
window depends on (heart rate, contrast arrival, frames after arrival, the
saturated peak-to-baseline ratio); ``input_feature_ranges`` summarises them
over the training curves, and ``training.train`` stores that summary in
``training.json`` under ``input_feature_ranges``.  ``training_range_warnings``
compares a study with the record beside the weights used and says when the
correction is an extrapolation.

The record belongs to a weights file by its folder (``training_record_path``:
``network.TRAINING_RECORD_FILE`` beside the weights; the shipped weights'
record is ``network.DEFAULT_TRAINING_RECORD_PATH``).  Like ``network``, this
module needs numpy only.

See Also
--------
network : the weights whose training range is checked, and ``correct_aifs``.
training : ``train`` writes the record with ``input_feature_ranges``.
pipeline : ``quantify_study`` adds the warnings to ``summary.json``.
"""

import json
import os

import numpy as np

from . import aif
from . import constants as K
from .errors import AIAIFInputError
from .network import DEFAULT_WEIGHTS_PATH, TRAINING_RECORD_FILE, checksum_path_for

#: Key of the training record that holds the training range of the input features.
INPUT_FEATURE_RANGES_KEY = "input_feature_ranges"

#: Percentiles of the training curves' input features that bound the training
#: range (project choice: the central 99 % of the training curves, so that a
#: few extreme draws do not stretch the range, while a study just inside the
#: simulator's parameter limits is not flagged).
TRAINING_RANGE_PERCENTILES = (0.5, 99.5)
#: Field strengths closer than this count as the same, T (project choice:
#: nominal field strengths are 1.5 and 3 T; scanners report e.g. 2.89 T).
FIELD_STRENGTH_TOLERANCE_T = 0.15

#: The input features of ``input_features``: unit, format of values in
#: warnings, and how each is measured on the saturated AIF.
INPUT_FEATURES = {
    "heart_rate_bpm": {
        "label": "heart rate (from the median frame interval)", "unit": "bpm", "format": "{:.1f}",
        "definition": "60 / median frame interval (one frame per heartbeat)"},
    "arrival_time_s": {
        "label": "contrast arrival time after the first frame", "unit": "s", "format": "{:.1f}",
        "definition": "time of the first enhanced frame (aif.detect_arrival_index) minus the time of the first "
                      "frame"},
    "frames_after_arrival": {
        "label": "number of frames from contrast arrival on in the network's {}-frame window".format(
            K.NETWORK_LENGTH), "unit": "frames", "format": "{:.0f}",
        "definition": "real (not padded) frames of the network window from the first enhanced frame on; at most "
                      "{} (the window less the pre-contrast beats) unless fewer frames precede arrival".format(
                          K.NETWORK_LENGTH - K.PRE_CONTRAST_BEATS)},
    "enhancement_ratio": {
        "label": "saturated peak-to-baseline signal ratio", "unit": "", "format": "{:.1f}",
        "definition": "maximum of the saturated signal over the network window / mean pre-contrast signal "
                      "(the inverse of the pre-contrast level of the normalised network input)"},
}


def input_features(times_s, saturated_signal, arrival_index=None):
    """Observable features of saturated AIFs that the network's input depends on.

    Each is measured with the preprocessing of ``network.correct_aifs``
    (``aif.prepare_network_input``: the same arrival, window and
    normalisation), so the features of a study and of the training curves are
    measured alike.  Definitions: ``INPUT_FEATURES``.

    Parameters
    ----------
    times_s : array_like, shape (n, n_frames) or (n_frames,)
        Frame times, s: one row per curve, or one row shared by all curves.
    saturated_signal : array_like, shape (n, n_frames) or (n_frames,)
        Saturated LV blood-pool signal (signal units, baseline included).
    arrival_index : int or array_like of int, shape (n,), optional
        Frame of contrast arrival (first enhanced frame); default: detected
        by ``aif.detect_arrival_index``, as at inference.

    Returns
    -------
    dict of str -> numpy.ndarray, each shape (n,)
        ``heart_rate_bpm`` (beats/min), ``arrival_time_s`` (s),
        ``frames_after_arrival`` (frames, float) and ``enhancement_ratio``
        (dimensionless; infinite when the pre-contrast signal is not
        positive).

    Raises
    ------
    AIAIFInputError
        For curves the preprocessing refuses (see
        ``aif.prepare_network_input``).
    """
    prepared = aif.prepare_network_input(times_s, saturated_signal, arrival_index=arrival_index)
    times = prepared.times_s
    rows = np.arange(times.shape[0])
    arrival = prepared.arrival_index
    baseline = prepared.baseline
    positive = baseline > 0
    ratio = np.where(positive, prepared.scale / np.where(positive, baseline, 1.0), np.inf)
    return {
        "heart_rate_bpm": 60.0 / np.median(np.diff(times, axis=1), axis=1),
        "arrival_time_s": times[rows, arrival] - times[:, 0],
        "frames_after_arrival": (prepared.n_valid - (arrival - prepared.start_index)).astype(float),
        "enhancement_ratio": ratio,
    }


def input_feature_ranges(features, field_strength_t=None, percentiles=TRAINING_RANGE_PERCENTILES, note=""):
    """The training range of the input features: the record section ``input_feature_ranges``.

    Parameters
    ----------
    features : dict of str -> array_like, or a sequence of such dicts
        ``input_features`` of the training curves (several dicts, e.g. one
        per frame count, are concatenated).
    field_strength_t : array_like of float, optional
        Field strength of each training curve, T; ``None`` when unknown
        (e.g. a site's paired data): the record then holds no field strengths
        and studies are not checked for them.
    percentiles : (float, float), optional
        Lower and upper percentile (0-100) that bound the range.
    note : str, optional
        How the training curves were obtained, stored with the ranges.

    Returns
    -------
    dict
        JSON-ready: ``percentiles``, ``n_curves``, ``features`` (name ->
        ``low``, ``high``, ``min``, ``median``, ``max``, ``unit``,
        ``definition``), ``field_strengths_t`` (sorted distinct values, or
        None) and ``note``.  ``low`` and ``high`` are the percentiles taken
        as order statistics rounded outwards (numpy's "lower" and "higher"
        methods), so they are values of training curves: with a few curves,
        e.g. a site's paired cases, the smallest and the largest.

    Raises
    ------
    AIAIFInputError
        For percentiles outside 0-100 or not increasing, a feature missing,
        features of different lengths or no finite value of a feature.
    """
    parts = [features] if isinstance(features, dict) else list(features)
    low_percentile, high_percentile = (float(value) for value in percentiles)
    if not 0.0 <= low_percentile < high_percentile <= 100.0:
        raise AIAIFInputError("The range percentiles must increase within 0-100, got {!r}; pass e.g. (0.5, 99.5)."
                              .format(percentiles))
    section = {"percentiles": [low_percentile, high_percentile], "features": {}}
    n_curves = None
    for name, description in INPUT_FEATURES.items():
        try:
            values = np.concatenate([np.asarray(part[name], dtype=float).ravel() for part in parts])
        except (KeyError, ValueError):
            raise AIAIFInputError("The input feature '{}' is missing; compute the features with "
                                  "training_range.input_features.".format(name))
        if n_curves is not None and values.size != n_curves:
            raise AIAIFInputError("The input features have different numbers of curves; compute them together "
                                  "with training_range.input_features.")
        n_curves = values.size
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            raise AIAIFInputError("The input feature '{}' has no finite value; check the training curves."
                                  .format(name))
        ordered = np.sort(finite)
        last = ordered.size - 1
        low = ordered[int(np.floor(low_percentile / 100.0 * last))]
        high = ordered[int(np.ceil(high_percentile / 100.0 * last))]
        section["features"][name] = {
            "low": float(low), "high": float(high), "min": float(finite.min()),
            "median": float(np.median(finite)), "max": float(finite.max()),
            "unit": description["unit"], "definition": description["definition"]}
    section["n_curves"] = int(n_curves)
    if field_strength_t is None:
        section["field_strengths_t"] = None
    else:
        fields = np.asarray(field_strength_t, dtype=float).ravel()
        if fields.size != n_curves:
            raise AIAIFInputError("Give one field strength per training curve ({}), got {}.".format(
                n_curves, fields.size))
        section["field_strengths_t"] = [float(value) for value in np.unique(fields)]
    section["note"] = str(note)
    return section


def training_record_path(weights_path=None):
    """The training record (``training.json``) that belongs to a weights file: the one in its folder.

    Parameters
    ----------
    weights_path : str, optional
        Weights file; default ``DEFAULT_WEIGHTS_PATH``.

    Returns
    -------
    str
        Path of ``training.json`` beside the weights (it may not exist).
    """
    path = DEFAULT_WEIGHTS_PATH if weights_path is None else os.fspath(weights_path)
    return os.path.join(os.path.dirname(os.path.abspath(path)), TRAINING_RECORD_FILE)


#: End of every training-range warning: what to do about it.
_EXTRAPOLATION_ADVICE = ("so the AI-AIF correction is an extrapolation; check it against a quantification with the "
                         "saturated AIF (which overestimates MBF) or a dual-bolus or dual-sequence AIF")


def _unknown_range_warning(reason):
    return ("The AI-AIF network's training range is unknown ({}), so it cannot be checked whether the AI-AIF "
            "correction is an extrapolation; keep the training.json that `python -m AIAIFLib train` writes beside "
            "the weights.".format(reason))


def _checked_feature_ranges(section):
    """Feature name -> (low, high) and the field strengths of a record section; ValueError if malformed."""
    if not isinstance(section, dict) or not isinstance(section.get("features"), dict):
        raise ValueError("no 'features' table")
    ranges = {}
    for name, entry in section["features"].items():
        if name not in INPUT_FEATURES:
            continue  # a feature of a later version: not measured here
        try:
            low, high = float(entry["low"]), float(entry["high"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("feature '{}' lacks numeric 'low' and 'high'".format(name))
        if not (np.isfinite(low) and np.isfinite(high) and low <= high):
            raise ValueError("feature '{}' has the range {} to {}".format(name, low, high))
        ranges[name] = (low, high)
    fields = section.get("field_strengths_t")
    if fields is not None:
        try:
            fields = [float(value) for value in fields]
        except (TypeError, ValueError):
            raise ValueError("'field_strengths_t' is not a list of numbers")
    return ranges, fields


def _format_value(name, value):
    if not np.isfinite(value):
        return "undefined (pre-contrast signal not positive)" if name == "enhancement_ratio" else str(value)
    description = INPUT_FEATURES[name]
    text = description["format"].format(value)
    return text + (" " + description["unit"] if description["unit"] else "")


def _format_range(name, low, high):
    description = INPUT_FEATURES[name]
    text = "{} to {}".format(description["format"].format(low), description["format"].format(high))
    return text + (" " + description["unit"] if description["unit"] else "")


def training_range_warnings(times_s, saturated_signal, field_strength_t, arrival_index=None, record=None,
                            weights_path=None):
    """Warnings when a study's saturated AIF lies outside the network's training range.

    The study's ``input_features`` and field strength are compared with the
    ``input_feature_ranges`` section of the training record of the weights
    used; every feature outside its range gives one warning.

    Parameters
    ----------
    times_s : array_like, shape (n_frames,)
        Frame times of the study, s.
    saturated_signal : array_like, shape (n_frames,)
        Saturated AIF of the study (signal units, baseline included).
    field_strength_t : float or None
        Field strength of the study, T (``None``: not checked).
    arrival_index : int, optional
        Frame of contrast arrival (first enhanced frame); default: detected
        by ``aif.detect_arrival_index``, as ``network.correct_aifs`` does.
    record : dict or str, optional
        The training record (``training.json`` loaded as a dict) or its path;
        default: ``training.json`` beside ``weights_path``.
    weights_path : str, optional
        Weights the correction used; default: the shipped weights, whose
        record is ``network.DEFAULT_TRAINING_RECORD_PATH``.  A record found beside the
        weights must name their SHA-256 (``weights_sha256``) when the weights
        have a ``.sha256`` file.

    Returns
    -------
    list of str
        One sentence per feature outside its range (empty when all are
        inside, or when the record predates ``input_feature_ranges``); a
        single sentence saying the range is unknown when no readable record
        belongs to the weights.

    Raises
    ------
    AIAIFInputError
        For more than one curve, and for curves the preprocessing refuses
        (see ``aif.prepare_network_input``).
    """
    if np.ndim(saturated_signal) > 2 or (np.ndim(saturated_signal) == 2 and np.shape(saturated_signal)[0] != 1):
        raise AIAIFInputError("The training range is checked for one AIF at a time, got shape {}; pass one "
                              "curve (n_frames,).".format(np.shape(saturated_signal)))
    if not isinstance(record, dict):
        if record is not None:
            path = os.fspath(record)
        else:
            try:
                path = training_record_path(weights_path)
            except TypeError:
                return [_unknown_range_warning("the weights were not given as a file")]
        if not os.path.isfile(path):
            return [_unknown_range_warning("there is no training record {}".format(path) if record is not None
                                           else "no {} in the folder of the weights, {}".format(
                                               TRAINING_RECORD_FILE, os.path.dirname(path)))]
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
        except (OSError, ValueError) as error:
            return [_unknown_range_warning("{} cannot be read: {}".format(path, error))]
        if not isinstance(loaded, dict):
            return [_unknown_range_warning("{} is not a training record".format(path))]
        if record is None:
            mismatch = _record_of_other_weights(loaded, weights_path)
            if mismatch:
                return [_unknown_range_warning("{} describes other weights than {}".format(path, mismatch))]
        record = loaded
    section = record.get(INPUT_FEATURE_RANGES_KEY)
    if section is None:
        return []
    try:
        ranges, fields = _checked_feature_ranges(section)
    except ValueError as error:
        return [_unknown_range_warning("the training record's {} is malformed: {}".format(
            INPUT_FEATURE_RANGES_KEY, error))]
    features = input_features(times_s, saturated_signal, arrival_index=arrival_index)
    warnings = []
    for name in INPUT_FEATURES:
        if name not in ranges:
            continue
        low, high = ranges[name]
        value = float(features[name][0])
        if low <= value <= high:
            continue
        label = INPUT_FEATURES[name]["label"]
        warnings.append("The {} is {}, outside the AI-AIF network's training range ({}), {}.".format(
            label, _format_value(name, value), _format_range(name, low, high), _EXTRAPOLATION_ADVICE))
    if fields and field_strength_t is not None:
        field = float(field_strength_t)
        if not any(abs(field - trained) <= FIELD_STRENGTH_TOLERANCE_T for trained in fields):
            warnings.append("The field strength is {:g} T, but the AI-AIF network was trained at {} T only, {}."
                            .format(field, " and ".join("{:g}".format(value) for value in fields),
                                    _EXTRAPOLATION_ADVICE))
    return warnings


def _record_of_other_weights(record, weights_path):
    """The weights file a record beside it does not describe (SHA-256 mismatch), else ''."""
    weights = DEFAULT_WEIGHTS_PATH if weights_path is None else os.fspath(weights_path)
    recorded = record.get("weights_sha256")
    try:
        with open(checksum_path_for(weights), encoding="ascii") as handle:
            tokens = handle.read().split()
    except (OSError, UnicodeDecodeError):
        return ""
    if recorded is None or not tokens or str(recorded).strip().lower() == tokens[0].strip().lower():
        return ""
    return os.path.basename(weights)

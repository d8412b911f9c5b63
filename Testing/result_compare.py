"""Two quantification folders compared: a batch's study folder against a ``quantify`` run (tests, benchmarks)."""

import json
import os

import numpy as np


def flat_json(value, prefix=""):
    """A nested JSON value as ``{path: leaf}``, for comparing floats with a tolerance."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat = {}
    for key, item in items:
        flat.update(flat_json(item, "{}/{}".format(prefix, key)))
    return flat


def result_difference(folder_a, folder_b):
    """How two result folders differ.

    Returns
    -------
    identical_files : bool
        ``segments.csv`` and ``aif.csv`` byte for byte, and the ``mbf.nrrd``
        voxels (NaN included), are the same.
    summary_difference : float
        Largest relative difference of a float in ``summary.json`` (timings
        left out); ``inf`` when a key or a non-float value differs.
    """
    import nrrd

    def read(folder, name):
        with open(os.path.join(folder, name), "rb") as handle:
            return handle.read()

    identical = all(read(folder_a, name) == read(folder_b, name) for name in ("segments.csv", "aif.csv"))
    identical = identical and np.array_equal(nrrd.read(os.path.join(folder_a, "mbf.nrrd"))[0],
                                             nrrd.read(os.path.join(folder_b, "mbf.nrrd"))[0], equal_nan=True)
    summaries = []
    for folder in (folder_a, folder_b):
        summary = json.loads(read(folder, "summary.json"))
        summary.pop("timings_s")
        summaries.append(flat_json(summary))
    if summaries[0].keys() != summaries[1].keys():
        return identical, float("inf")
    worst = 0.0
    for key, value in summaries[0].items():
        other = summaries[1][key]
        if isinstance(value, float) and isinstance(other, float):
            worst = max(worst, abs(value - other) / max(abs(other), 1e-300))
        elif value != other:
            return identical, float("inf")
    return identical, worst

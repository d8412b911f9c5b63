"""Benchmark: the shipped AI-AIF network on held-out physics (``Testing/heldout``), corrected and uncorrected side by side.

Run: ``python Testing/benchmarks/heldout_aif_network.py [--n-curves 1000] [--seed 7] [--weights PATH]``.

The curves come from the held-out forward model (``heldout.aif_pairs``):
physics the network was never trained on (EPG readout with imperfect
spoiling, slice profile, k-space weighting, multi-slice Mz history, inflow,
T2*, LDRW / lagged-normal AIFs, 40-90 frames).  The network corrects each
whole saturated curve through the same path as ``python -m AIAIFLib correct``
(``network.correct_aifs``: arrival detection, window, normalisation, numpy
forward pass, inverse).  Then, as ``AIAIFLib.studies.simulated_aif_test_set``
does, every curve is cut to the paper's 64-frame window starting four frames
before the TRUE arrival (``aif.arrival_index_from_time``, ``aif.network_window``),
normalised by the saturated window maximum and compared with the reference by
the project's NMSE (``evaluation.nmse_percent``) and the paper's protocol
(``evaluation.analyse_aifs``).

Printed side by side for the uncorrected (saturated) and the AI-AIF curves:
NMSE median (IQR), share of curves with NMSE >= 6.5 %, median peak error
(window maximum against the reference's, %), overall and by subgroup (LV peak
band and dose tertile, field strength, k-space ordering, AIF family, frame
count).  The held-out data are for testing only: never train or select
models on them.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import heldout  # noqa: E402
from AIAIFLib import constants as K  # noqa: E402
from AIAIFLib import evaluation, network  # noqa: E402
from AIAIFLib.aif import arrival_index_from_time, network_window  # noqa: E402


def windowed_test_set(pairs, corrected):
    """Every curve cut to the 64-frame window at its true arrival and normalised by its saturated maximum."""
    out = {name: np.empty((len(pairs), K.NETWORK_LENGTH)) for name in ("times_s", "reference", "saturated",
                                                                      "corrected")}
    for frames in np.unique(pairs.n_frames):
        rows = np.flatnonzero(pairs.n_frames == frames)
        times = pairs.times_s[rows, :frames]
        arrival = arrival_index_from_time(times, pairs.params["arrival_s"][rows])
        curves = np.stack([pairs.saturated[rows, :frames], pairs.reference[rows, :frames], corrected[rows, :frames]])
        window_times, windowed, _ = network_window(times, curves, arrival)
        scale = windowed[0].max(axis=1, keepdims=True)
        out["times_s"][rows] = window_times
        out["saturated"][rows] = windowed[0] / scale
        out["reference"][rows] = windowed[1] / scale
        out["corrected"][rows] = windowed[2] / scale
    return out


def correct_all(pairs, model):
    """``network.correct_aifs`` on every curve (grouped by frame count), NaN-padded like the pairs."""
    corrected = np.full(pairs.saturated.shape, np.nan)
    for frames in np.unique(pairs.n_frames):
        rows = np.flatnonzero(pairs.n_frames == frames)
        corrected[rows, :frames] = network.correct_aifs(pairs.times_s[rows, :frames], pairs.saturated[rows, :frames],
                                                        weights=model)
    return corrected


def summary_cells(nmse, peak_error):
    """'median (IQR)', share >= 6.5 %, median peak error."""
    q1, median, q3 = np.percentile(nmse, [25, 50, 75])
    return ["{:.1f} ({:.1f})".format(median, q3 - q1), "{:.0f} %".format(100.0 * np.mean(nmse >= K.POOR_AIF_NMSE_PERCENT)),
            "{:+.0f} %".format(np.median(peak_error))]


def subgroups(params):
    """Name -> boolean mask of every subgroup reported."""
    peak = params["peak_conc_mM"]
    tertiles = np.percentile(peak, [100.0 / 3.0, 200.0 / 3.0])
    frames = params["n_frames"]
    groups = {"all": np.ones(peak.size, bool)}
    for low, high in ((1.0, 4.0), (4.0, 7.0), (7.0, 12.0), (12.0, 25.0)):
        groups["peak {:g}-{:g} mM".format(low, high)] = (peak >= low) & (peak < high if high < 25.0 else peak <= high)
    groups["dose tertile 1 (< {:.1f} mM)".format(tertiles[0])] = peak < tertiles[0]
    groups["dose tertile 2"] = (peak >= tertiles[0]) & (peak < tertiles[1])
    groups["dose tertile 3 (>= {:.1f} mM)".format(tertiles[1])] = peak >= tertiles[1]
    for field in (1.5, 3.0):
        groups["{:g} T".format(field)] = params["field_strength_t"] == field
    for ordering in ("centric", "linear"):
        groups["{} ordering".format(ordering)] = params["ordering"] == ordering
    for family in ("ldrw", "lagged_normal"):
        groups["AIF {}".format(family)] = params["aif_family"] == family
    for low, high in ((40, 59), (60, 74), (75, 90)):
        groups["{}-{} frames".format(low, high)] = (frames >= low) & (frames <= high)
    return groups


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-curves", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--weights", default=None, help="weights file (default: the shipped model)")
    args = parser.parse_args()

    started = time.perf_counter()
    pairs = heldout.aif_pairs(args.n_curves, seed=args.seed)
    simulated = time.perf_counter() - started
    model = network.load_ensemble(args.weights)
    started = time.perf_counter()
    corrected = correct_all(pairs, model)
    correcting = time.perf_counter() - started
    test_set = windowed_test_set(pairs, corrected)
    params = pairs.params
    print("Held-out AIF pairs: {} curves (seed {}; {} at 1.5 T, {} at 3 T; peaks {:.1f}-{:.1f} mM, {}-{} frames); "
          "simulated in {:.1f} s, corrected in {:.1f} s".format(
              len(pairs), args.seed, int(np.sum(params["field_strength_t"] == 1.5)),
              int(np.sum(params["field_strength_t"] == 3.0)), params["peak_conc_mM"].min(), params["peak_conc_mM"].max(),
              pairs.n_frames.min(), pairs.n_frames.max(), simulated, correcting))
    reference_peak = test_set["reference"].max(axis=1)
    metrics = {}
    for name in ("saturated", "corrected"):
        nmse = evaluation.nmse_percent(test_set["reference"], test_set[name])
        peak_error = 100.0 * (test_set[name].max(axis=1) / reference_peak - 1.0)
        metrics[name] = (nmse, peak_error)
    ratio = reference_peak  # the reference peak in units of the saturated maximum
    print("Reference peak / saturated maximum: median {:.2f} (IQR {:.2f}-{:.2f})\n".format(
        *np.percentile(ratio, [50, 25, 75])))

    header = "{:<30} {:>5} | {:>14} {:>7} {:>8} | {:>14} {:>7} {:>8}".format(
        "subgroup", "n", "NMSE % med(IQR)", ">=6.5%", "peak err", "NMSE % med(IQR)", ">=6.5%", "peak err")
    print("{:<37}   {:^32}   {:^32}".format("", "uncorrected (saturated)", "AI-AIF"))
    print(header)
    print("-" * len(header))
    for label, mask in subgroups(params).items():
        if not mask.any():
            continue
        cells = [summary_cells(metrics[name][0][mask], metrics[name][1][mask]) for name in ("saturated", "corrected")]
        print("{:<30} {:>5} | {:>14} {:>7} {:>8} | {:>14} {:>7} {:>8}".format(label, int(mask.sum()), *cells[0],
                                                                             *cells[1]))

    print("\nThe paper's protocol on the same windows (AI-AIF against the reference):")
    result = evaluation.analyse_aifs(test_set["times_s"], test_set["reference"], test_set["corrected"])
    print(evaluation.format_results_table(result, reference_name="Reference", test_name="AI-AIF"))


if __name__ == "__main__":
    main()

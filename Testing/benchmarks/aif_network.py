"""Benchmark: the AI-AIF ensemble on two test sets from two forward models, with subgroups.

Run: ``python Testing/benchmarks/aif_network.py [--n-curves 1000] [--seed 7] [--figures DIR] [--weights PATH]``.

1. **Own simulator** (``studies.simulated_aif_test_set``): both field
   strengths and the simulator's test ranges, from a seed tag no training
   set uses (90 frames each).
2. **Held-out forward model** (``Testing/heldout``, ``heldout.aif_pairs``):
   physics written independently and never used for training or model
   selection (EPG readout, slice profile, multi-slice Mz history, inflow,
   other AIF families, 40-90 frames).

Every curve is corrected through the path of ``python -m AIAIFLib correct``
(arrival detection, window, normalisation, numpy forward pass, inverse),
then cut to the paper's 64-frame window at the TRUE arrival, normalised by
the saturated maximum and compared with the reference.  Side by side, per
subgroup (dose tertile, field, ordering, AIF family, frame count): the
uncorrected curve, the ensemble's first member alone and the ensemble (the
members' mean), as NMSE median (IQR), share of curves with NMSE >= 6.5 % and
median peak error, and the ensemble's own spread (median relative spread of
the members' peaks).  Then the paper's protocol on the own test set, and the
numpy inference time per curve (ensemble, end to end).

Targets [issue 13]: held-out NMSE median < 3 %, under 20 % of curves >= 6.5 %,
no subgroup median above 6 %; own test set no worse than the single network
before; under 20 ms per curve including the ensemble.
"""

import argparse
import os
import time

import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import heldout  # noqa: E402
from heldout_aif_network import windowed_test_set  # noqa: E402
from AIAIFLib import evaluation, network, studies  # noqa: E402
from AIAIFLib.simulation import AIF_FAMILIES  # noqa: E402


def subgroups(peak_mM, field_t, ordering, family, n_frames):
    """Name -> boolean mask: all, dose tertiles, fields, orderings, AIF families, frame counts."""
    tertiles = np.percentile(peak_mM, [100.0 / 3.0, 200.0 / 3.0])
    groups = {"all": np.ones(peak_mM.size, bool),
              "dose tertile 1 (< {:.1f} mM)".format(tertiles[0]): peak_mM < tertiles[0],
              "dose tertile 2": (peak_mM >= tertiles[0]) & (peak_mM < tertiles[1]),
              "dose tertile 3 (>= {:.1f} mM)".format(tertiles[1]): peak_mM >= tertiles[1]}
    for field in (1.5, 3.0):
        groups["{:g} T".format(field)] = field_t == field
    for name in ("centric", "linear"):
        groups["{} ordering".format(name)] = ordering == name
    for name in np.unique(family):
        groups["AIF {}".format(name)] = family == name
    for low, high in ((40, 59), (60, 74), (75, 90)):
        groups["{}-{} frames".format(low, high)] = (n_frames >= low) & (n_frames <= high)
    return groups


def _cells(reference, curves, mask):
    nmse = evaluation.nmse_percent(reference[mask], curves[mask])
    q1, median, q3 = np.percentile(nmse, [25, 50, 75])
    peak = 100.0 * (curves[mask].max(axis=1) / reference[mask].max(axis=1) - 1.0)
    return "{:5.1f} ({:4.1f}) {:4.0f}% {:+5.0f}%".format(median, q3 - q1, 100.0 * np.mean(nmse >= 6.5),
                                                      np.median(peak))


def print_subgroup_table(title, reference, methods, groups, spread):
    """One row per subgroup: NMSE median (IQR), share >= 6.5 %, peak error for each method; ensemble spread."""
    print("\n== {} ==".format(title))
    names = list(methods)
    print("{:<28} {:>5} | ".format("subgroup", "n") + " | ".join("{:^27}".format(n) for n in names)
          + " | spread")
    print("{:<28} {:>5} | ".format("", "") + " | ".join("{:^27}".format("NMSE% (IQR) >=6.5 peak") for _ in names)
          + " |")
    for label, mask in groups.items():
        if mask.any():
            print("{:<28} {:>5} | ".format(label, int(mask.sum()))
                  + " | ".join(_cells(reference, methods[n], mask) for n in names)
                  + " | {:5.1f}%".format(np.median(spread[mask])))


def _member_curves(times, saturated, ensemble):
    """Ensemble and per-member corrections of NaN-padded curves, grouped by frame count."""
    n_frames = np.sum(np.isfinite(saturated), axis=1)
    corrected = np.full(saturated.shape, np.nan)
    members = np.full((len(ensemble),) + saturated.shape, np.nan)
    for frames in np.unique(n_frames):
        rows = np.flatnonzero(n_frames == frames)
        corrected[rows, :frames], members[:, rows, :frames] = network.correct_aifs_with_members(
            times[rows, :frames], saturated[rows, :frames], weights=ensemble)
    return corrected, members


def _peak_spread(members, corrected):
    peaks = np.nanmax(members, axis=2)
    baseline = np.nanmin(corrected, axis=1)
    enhancement = np.nanmax(corrected, axis=1) - baseline
    return 100.0 * (peaks.max(axis=0) - peaks.min(axis=0)) / enhancement


def _time_per_curve(function, curves, repeats=3):
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function(curves)
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best / len(curves)


def windowed_test_set_like(test_set, pairs, corrected):
    """Another correction of the own test set's curves, cut and normalised like ``test_set``."""
    from AIAIFLib.aif import arrival_index_from_time, network_window

    arrival = arrival_index_from_time(pairs.times_s, pairs.params["arrival_s"])
    _, windowed, _ = network_window(pairs.times_s, np.stack([pairs.saturated, corrected]), arrival)
    return windowed[1] / windowed[0].max(axis=1, keepdims=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-curves", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--weights", default=None, help="one weights file (default: the shipped ensemble)")
    parser.add_argument("--figures", default=None, help="directory for the evaluation figures")
    args = parser.parse_args()

    model = network.load_ensemble(args.weights)
    print("Ensemble of {} member(s)".format(len(model)))
    started = time.perf_counter()
    own = {}

    def correct_own(times, curves):
        own["corrected"], own["members"] = network.correct_aifs_with_members(times, curves, weights=model)
        return own["corrected"]

    test_set = studies.simulated_aif_test_set(args.n_curves, args.seed, correct=correct_own)
    elapsed = time.perf_counter() - started
    pairs = test_set["pairs"]
    params = pairs.params
    fields = params["field_strength_t"]
    print("Own simulator: {} curves (seed {}; {} at 1.5 T, {} at 3 T), built and corrected in {:.1f} s".format(
        args.n_curves, args.seed, int(np.sum(fields == 1.5)), int(np.sum(fields == 3.0)), elapsed))
    first = windowed_test_set_like(test_set, pairs, own["members"][0])
    groups = subgroups(params["peak_conc_mM"], fields, np.where(params["pulses_to_centre"] == 1, "centric", "linear"),
                       np.array(AIF_FAMILIES)[params["family"]], np.full(fields.size, pairs.times_s.shape[1]))
    print_subgroup_table("Own simulator (first forward model)", test_set["reference"],
                         {"uncorrected": test_set["saturated"], "member 0 alone": first,
                          "ensemble": test_set["corrected"]}, groups, _peak_spread(own["members"], own["corrected"]))

    started = time.perf_counter()
    held = heldout.aif_pairs(args.n_curves, seed=args.seed)
    corrected, members = _member_curves(held.times_s, held.saturated, model)
    windowed = windowed_test_set(held, corrected)
    first_held = windowed_test_set(held, members[0])["corrected"]
    print("\nHeld-out forward model: {} curves (seed {}), simulated and corrected in {:.1f} s".format(
        len(held), args.seed, time.perf_counter() - started))
    hp = held.params
    groups = subgroups(hp["peak_conc_mM"], hp["field_strength_t"], hp["ordering"], hp["aif_family"], held.n_frames)
    print_subgroup_table("Held-out forward model (second, testing only)", windowed["reference"],
                         {"uncorrected": windowed["saturated"], "member 0 alone": first_held,
                          "ensemble": windowed["corrected"]}, groups, _peak_spread(members, corrected))

    results = {}
    for name in ("saturated", "corrected"):
        results[name] = evaluation.analyse_aifs(test_set["times_s"], test_set["reference"], test_set[name])
        title = {"saturated": "Uncorrected (saturated) AIF", "corrected": "AI-AIF"}[name]
        print("\n== Own simulator, the paper's protocol: {} vs reference ==".format(title))
        print(evaluation.format_results_table(results[name], reference_name="Reference", test_name=title))

    curves = test_set["pairs"].saturated[:200]
    times = test_set["pairs"].times_s[:200]
    from AIAIFLib.aif import prepare_network_input
    prepared = prepare_network_input(times, curves).curves
    single = _time_per_curve(lambda batch: [network.correct_aifs(times[0], row, weights=model) for row in batch],
                             curves[:50])
    batched = _time_per_curve(model.predict, prepared)
    end_to_end = _time_per_curve(lambda rows: network.correct_aifs(times[:len(rows)], rows, weights=model), curves)
    print("\nNumpy inference per curve, ensemble of {}: {:.2f} ms one curve at a time end to end (detect, window, "
          "predict, restore), {:.3f} ms forward pass in a batch of {}, {:.2f} ms end to end in a batch of {}".format(
              len(model), single, batched, len(prepared), end_to_end, len(curves)))
    try:
        import torch
    except ImportError:
        print("torch not installed: torch timing skipped")
    else:
        torch_model = network.torch_model_from_weights(model.members[0])
        with torch.no_grad():
            tensor = torch.as_tensor(prepared[:, None, :], dtype=torch.float32)
            torch_ms = _time_per_curve(lambda batch: torch_model(batch), tensor)
        print("Torch (CPU) forward per curve of one member in the same batch: {:.3f} ms; numpy ensemble / torch "
              "member = {:.2f}".format(torch_ms, batched / torch_ms))

    if args.figures:
        from AIAIFLib import report
        os.makedirs(args.figures, exist_ok=True)
        report.plot_example_aifs(os.path.join(args.figures, "example_aifs.png"), test_set["times_s"],
                                 test_set["reference"], test_set["corrected"], "Reference", "AI-AIF")
        report.plot_aif_metric_boxplots(os.path.join(args.figures, "aif_metrics.png"), results["corrected"],
                                        "Reference", "AI-AIF")
        print("Figures written to {}".format(args.figures))


if __name__ == "__main__":
    main()

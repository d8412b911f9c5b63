"""Benchmark: the AI-AIF network on a held-out simulated test set, corrected and uncorrected side by side.

Run: ``python Testing/benchmarks/aif_network.py [--n-curves 1000] [--seed 7] [--figures DIR] [--weights PATH]``.

The test set comes from ``studies.simulated_aif_test_set``: both field
strengths and the simulator's full parameter ranges, from a seed tag no
training set uses.  The network corrects the whole saturated curves through
the same path as ``python -m AIAIFLib correct`` (arrival detection, window,
normalisation, numpy forward pass, inverse); all curves are then cut to the
paper's 64-frame window at the true arrival and normalised by the saturated
maximum, and compared with the reference by the paper's protocol
(``evaluation.analyse_aifs``).  Also times the numpy inference per curve
(one curve at a time, and in one batch), and the torch forward pass beside it
when torch is installed.

Targets [issue 4]: median NMSE < 1.0 %, fewer than 5 % of curves with
NMSE >= 6.5 %; PV, TTP and FWHM not significantly different from the
reference (Mann-Whitney p > 0.05); numpy inference < 20 ms per curve.
"""

import argparse
import os
import time

import numpy as np

from AIAIFLib import evaluation, network, studies


def _time_per_curve(function, curves, repeats=3):
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function(curves)
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best / len(curves)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-curves", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--weights", default=None, help="weights file (default: the shipped model)")
    parser.add_argument("--figures", default=None, help="directory for the evaluation figures")
    args = parser.parse_args()

    model = network.load_weights(args.weights)
    started = time.perf_counter()
    test_set = studies.simulated_aif_test_set(
        args.n_curves, args.seed, correct=lambda times, curves: network.correct_aifs(times, curves, weights=model))
    elapsed = time.perf_counter() - started
    fields = test_set["pairs"].params["field_strength_t"]
    print("Held-out simulated test set: {} curves (seed {}; {} at 1.5 T, {} at 3 T), built and corrected in "
          "{:.1f} s".format(args.n_curves, args.seed, int(np.sum(fields == 1.5)), int(np.sum(fields == 3.0)),
                            elapsed))
    results = {}
    for name in ("saturated", "corrected"):
        results[name] = evaluation.analyse_aifs(test_set["times_s"], test_set["reference"], test_set[name])
        title = {"saturated": "Uncorrected (saturated) AIF", "corrected": "AI-AIF"}[name]
        print("\n== {} vs reference ==".format(title))
        print(evaluation.format_results_table(results[name], reference_name="Reference", test_name=title))
    print("\nBy field strength (AI-AIF): median NMSE %, share >= 6.5 %")
    nmse = results["corrected"].nmse_percent
    for field in (1.5, 3.0):
        chosen = nmse[fields == field]
        print("  {} T: {:.2f} %, {:.1f} % of {} curves".format(field, np.median(chosen),
                                                              100.0 * np.mean(chosen >= 6.5), chosen.size))

    curves = test_set["pairs"].saturated[:200]
    times = test_set["pairs"].times_s[:200]
    from AIAIFLib.aif import prepare_network_input
    prepared = prepare_network_input(times, curves).curves
    single = _time_per_curve(lambda batch: [model.predict(row[None, :]) for row in batch], prepared[:50])
    batched = _time_per_curve(model.predict, prepared)
    end_to_end = _time_per_curve(lambda rows: network.correct_aifs(times[:len(rows)], rows, weights=model), curves)
    print("\nNumpy inference per curve: {:.2f} ms one at a time, {:.3f} ms in a batch of {}, {:.2f} ms end to end "
          "(detect, window, predict, restore; batch of {})".format(single, batched, len(prepared), end_to_end,
                                                                  len(curves)))
    try:
        import torch
    except ImportError:
        print("torch not installed: torch timing skipped")
    else:
        torch_model = network.torch_model_from_weights(model)
        with torch.no_grad():
            tensor = torch.as_tensor(prepared[:, None, :], dtype=torch.float32)
            torch_ms = _time_per_curve(lambda batch: torch_model(batch), tensor)
        print("Torch (CPU) forward per curve in the same batch: {:.3f} ms; numpy / torch = {:.2f}".format(
            torch_ms, batched / torch_ms))

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

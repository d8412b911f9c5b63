"""Benchmark: how closely a Fermi fit with the true AIF recovers the phantom's ground-truth MBF.

Run: ``python Testing/benchmarks/fermi_vs_tissue_model.py [--phantoms 8] [--seed 7]``.

For each tissue model of the simulator and two fit windows (the whole
acquisition; the first pass, frames up to ``--first-pass-s`` after the AIF
peak), fits the noise-free segment-mean tissue curves with the true AIF using
the per-curve reference fit, and prints the fitted / true MBF ratio in three
flow bands and the segment bias (SD) in mL/min/g.  Phantoms cycle through
3 T / 1.5 T and no / LAD / RCA / LCX ischaemia, from seeds disjoint from other
uses (``studies.validation_phantoms``).  The figures quoted in
``simulation.tissue``'s docstring come from the default run.
"""

import argparse
import time

import numpy as np

from AIAIFLib import studies
from AIAIFLib.deconvolution import fit_fermi_curves
from AIAIFLib.simulation import TISSUE_MODELS

#: Ground-truth MBF bands in which ratios are reported, mL/min/g.
FLOW_BANDS = ((0.0, 1.4), (2.4, 3.2), (3.2, 4.1))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phantoms", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--first-pass-s", type=float, default=6.0,
                        help="end of the first-pass window after the AIF peak, s (default 6)")
    args = parser.parse_args()
    print("Fermi fit with the true AIF vs ground-truth segment MBF ({} phantoms per model)".format(args.phantoms))
    print("{:<18} {:<12} {:>22} {:>22} {:>8}".format("tissue model", "window", "fitted/true by band",
                                                       "bias (SD) mL/min/g", "time s"))
    for model in sorted(TISSUE_MODELS):
        phantoms = [(phantom, studies.segment_tissue_curves(phantom))
                    for phantom in studies.validation_phantoms(args.phantoms, args.seed, model)]
        for window in ("whole curve", "first pass"):
            start = time.perf_counter()
            truth, fitted = [], []
            for phantom, tissue in phantoms:
                times, aif = phantom.frame_times_s, phantom.truth["aif_mM"]
                n = times.size
                if window == "first pass":
                    n = int(np.searchsorted(times, times[np.argmax(aif)] + args.first_pass_s))
                fitted.append(fit_fermi_curves(times[:n], aif[:n], tissue[:, :n]).mbf_ml_min_g)
                truth.append(phantom.segment_mbf_ml_min_g())
            truth, fitted = np.concatenate(truth), np.concatenate(fitted)
            ratios = []
            for low, high in FLOW_BANDS:
                band = (truth >= low) & (truth < high)
                ratios.append("{:.2f}".format(np.median(fitted[band] / truth[band])) if band.any() else "-")
            difference = fitted - truth
            print("{:<18} {:<12} {:>22} {:>22} {:>8.1f}".format(
                model, window, " ".join(ratios), "{:+.2f} ({:.2f})".format(difference.mean(), difference.std()),
                time.perf_counter() - start))
    print("Ratio bands (true MBF, mL/min/g): " + ", ".join("{:g}-{:g}".format(*band) for band in FLOW_BANDS))


if __name__ == "__main__":
    main()

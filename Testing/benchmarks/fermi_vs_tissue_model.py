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

A second table takes the held-out
forward model's myocardium (two capillary regions sharing the flow unequally,
distributed-parameter capillaries, an arterial input delayed and dispersed
after the LV): its residues at the middle of each held-out parameter range,
driven by one held-out study's true AIF at its own frame times and fitted
with the pipeline's first-pass window (``deconvolution.first_pass_end_s``),
at six flows, then with one property changed at a time.  It shows which
property of a tissue model, not of the fit, the Fermi onset reads low on.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import heldout  # noqa: E402
from heldout import ranges, tissue  # noqa: E402
from AIAIFLib import studies  # noqa: E402
from AIAIFLib.deconvolution import first_pass_end_s, fit_fermi_curves  # noqa: E402
from AIAIFLib.simulation import TISSUE_MODELS  # noqa: E402

#: True MBF of the held-out mechanism table, mL/min/g.
MECHANISM_MBF = (0.7, 1.0, 1.5, 2.5, 3.5, 4.5)
#: Fine time grid of the held-out tissue curves, s.
MECHANISM_GRID_S = 0.02
#: Held-out tissue properties and their ``heldout.ranges.RANGES`` entries; the
#: table starts from the middle of each range.
MECHANISM_RANGES = {"vb": "blood_volume_fraction", "ve": "interstitial_volume_fraction",
                    "ps_per_s": "permeability_surface_per_s", "flow_share": "fast_region_flow_share",
                    "volume_share": "fast_region_volume_share", "delay_s": "arterial_delay_s",
                    "dispersion_s": "arterial_dispersion_s"}
#: Rows of the mechanism table: label and the properties changed from the middle.
MECHANISM_ROWS = (
    ("middle of every range", {}),
    ("no delay, no dispersion", {"delay_s": 0.0, "dispersion_s": 1e-3}),
    ("one region (flow share = volume share)", {"flow_share": "volume_share"}),
    ("one region, no delay, no dispersion", {"flow_share": "volume_share", "delay_s": 0.0, "dispersion_s": 1e-3}),
    ("most heterogeneous (0.80 / 0.35)", {"flow_share": 0.80, "volume_share": 0.35}),
    ("ischaemic-like dispersion 0.9 s", {"dispersion_s": 0.9}),
    ("blood volume 0.08", {"vb": 0.08}),
    ("blood volume 0.14", {"vb": 0.14}),
)

#: Ground-truth MBF bands in which ratios are reported, mL/min/g.
FLOW_BANDS = ((0.0, 1.4), (2.4, 3.2), (3.2, 4.1))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phantoms", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--first-pass-s", type=float, default=6.0,
                        help="end of the first-pass window after the AIF peak, s (default 6)")
    parser.add_argument("--heldout-seed", type=int, default=11, help="held-out study whose AIF drives its table")
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
    heldout_mechanisms(args.heldout_seed)


def heldout_mechanisms(seed):
    """Print fitted / true MBF of the held-out myocardium per flow, one property changed per row."""
    study = heldout.phantom(seed, field_strength_t=3.0, ischemic="none")
    times, aif = study.frame_times_s, study.truth["aif_mM"]
    end = first_pass_end_s(times, aif)
    grid = np.arange(0.0, times.max() + 5.0, MECHANISM_GRID_S)
    lv = np.interp(grid, times, aif, left=0.0)
    mbf = np.asarray(MECHANISM_MBF)
    flow = tissue.blood_flow_per_s(mbf)
    middle = {key: float(np.mean(ranges.RANGES[name]["range"])) for key, name in MECHANISM_RANGES.items()}
    print("\nHeld-out myocardium (Testing/heldout, seed {}: {:.0f} frames {:.2f} s apart; first pass fitted to "
          "{:.1f} s, {:.1f} s after the AIF peak)".format(seed, times.size, np.median(np.diff(times)), end,
                                                          end - times[np.argmax(aif)]))
    print("{:<42} {}".format("fitted / true MBF at true MBF", " ".join("{:>5g}".format(v) for v in mbf)))
    for label, changes in MECHANISM_ROWS:
        p = dict(middle)
        p.update({key: p[value] if isinstance(value, str) else value for key, value in changes.items()})
        residue = tissue.two_region_residue(MECHANISM_GRID_S, grid.size, flow, *[np.full(mbf.size, p[key]) for key in (
            "vb", "ve", "ps_per_s", "flow_share", "volume_share")])
        arterial = tissue.delayed_dispersed(grid, lv, np.full(mbf.size, p["delay_s"]),
                                            np.full(mbf.size, p["dispersion_s"]))
        curves = tissue.convolve_residue(grid, arterial, residue, flow)
        sampled = np.stack([np.interp(times, grid, row) for row in curves])
        ratio = fit_fermi_curves(times, aif, sampled, fit_end_s=end).mbf_ml_min_g / mbf
        print("{:<42} {}".format(label, " ".join("{:5.2f}".format(r) for r in ratio)))


if __name__ == "__main__":
    main()

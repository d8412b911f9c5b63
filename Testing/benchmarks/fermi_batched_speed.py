"""Benchmark: the batched Fermi fit against per-pixel scipy.optimize.curve_fit on a full phantom map.

Run: ``python Testing/benchmarks/fermi_batched_speed.py [--seed 11] [--subset 200] [--repeats 3]
[--baseline PATH]``.

The map is one simulated 3-slice study (``simulation.simulate_phantom``, 60
frames) on a 320 x 320 grid of 0.64 mm pixels: the default phantom's field of
view (128 x 1.6 mm) at 2.5 times the resolution, so that the myocardium holds
more than 10 000 pixels (the default grid has about 1 700).  The AIF is the
phantom's true concentration (``phantom.truth["aif_mM"]``).  Two sets of
tissue curves are fitted, each over the first pass
(``deconvolution.first_pass_end_s``):

* **converted** - every myocardial pixel's noisy (Rician) signal converted to
  concentration with the paper's linear formula
  (``conversion.linear_concentration_mM``), as the pipeline will do;
* **truth + noise** - the phantom's noise-free tissue concentration of every
  pixel plus Gaussian noise with the same SD as the converted curves'
  baseline, so that the flows span the phantom's range.

For each set the batched solver fits the whole map (timed ``--repeats`` times
in this process; the median is reported) and ``curve_fit`` (bounded, trust
region reflective, the same model, window, lag step and bounds; started like
the reference ``fit_fermi_curves`` from ``initial_guess`` with each of
``DELAY_STARTS_S``, keeping the lowest cost) fits a random subset of pixels.
The curve_fit time per pixel is extrapolated to the full map, which the
output says.  MBF of the two solvers is compared on the subset.  The
batched fit of the full map is then compared with the same curves fitted in
other batches (reversed, randomly permuted, in chunks of 7 and 1000 curves,
one at a time for the subset, and beside pathological curves: all zero, NaN,
1e300 times a curve) and with the curves changed by 1e-14 of themselves (two
random draws): a pixel's MBF must not depend on its batch, and must not jump
with changes far below the rounding of any kernel.  Finally the batched fit
at its default lag step is compared with the same fit at the reference's
0.05 s step on the full map.

``--baseline PATH`` times another version of the deconvolution on the same
map, alternating with this one run by run, and prints the ratio of their CPU
times and how far apart their MBF maps are: timings on a shared machine are
only comparable side by side.  PATH is a copy of the package folder (e.g.
``git archive main AIAIFLib/deconvolution | tar -x -C /tmp/baseline``, then
``--baseline /tmp/baseline/AIAIFLib/deconvolution``) or, for a version
before the package was split, its single module
(``git show REV:AIAIFLib/deconvolution.py > /tmp/baseline.py``).
"""

import argparse
import importlib.util
import os
import sys
import time
import warnings

import numpy as np
from scipy import optimize

from AIAIFLib import constants as K
from AIAIFLib import deconvolution as D
from AIAIFLib.conversion import baseline_signal, linear_concentration_mM
from AIAIFLib.simulation import simulate_phantom

#: Grid of the benchmark phantom: the default field of view at 2.5 x the resolution.
MATRIX, PIXEL_MM = 320, 0.64


def phantom_curves(seed):
    """Frame times, true AIF, converted and truth + noise tissue curves of the benchmark phantom."""
    phantom = simulate_phantom(seed=seed, n_frames=60, matrix=MATRIX, pixel_mm=PIXEL_MM)
    times = phantom.frame_times_s
    n_baseline = max(int(np.sum(times < phantom.acquisition["aif_parameters"]["arrival_s"] - 1.0)), 1)
    signal = phantom.frames[:, phantom.myocardium_mask].T.astype(float)
    lv_baseline = baseline_signal(phantom.frames[:, phantom.lv_blood_mask].mean(axis=1), n_baseline)
    t1_blood = K.T1_BLOOD_S[phantom.acquisition["field_strength_t"]]
    converted = linear_concentration_mM(signal, baseline_signal(signal, n_baseline), lv_baseline, t1_blood)
    noise_sd = float(np.std(converted[:, :n_baseline]))
    rng = np.random.default_rng(seed)
    truth_noise = phantom.truth["tissue_mM"] + rng.normal(0.0, noise_sd, phantom.truth["tissue_mM"].shape)
    return phantom, times, phantom.truth["aif_mM"], {"converted": converted, "truth + noise": truth_noise}, noise_sd


def curve_fit_pixels(times, aif, tissue, fit_end_s, step_s):
    """Per-pixel curve_fit, best of the reference's starting delays; parameters (n, 4) and costs (n,)."""
    n_window = int(np.searchsorted(times, fit_end_s, side="right"))
    matrix = D.convolution_matrix(times[:n_window], aif[:n_window], step_s)
    edges = D.lag_cell_edges(times[:n_window], step_s)

    def model(_, flow, tau0, k, delay):
        return D.fermi_tissue_curves(matrix, edges, flow, tau0, k, delay)

    window = tissue[:, :n_window]
    starts = D.initial_guess(times[:n_window], aif[:n_window], window)
    params, costs = np.full((len(window), 4), np.nan), np.full(len(window), np.nan)
    for row, (curve, start) in enumerate(zip(window, starts)):
        for delay in D.DELAY_STARTS_S:
            p0 = np.clip(np.r_[start[:3], delay], D.FERMI_LOWER_BOUNDS, D.FERMI_UPPER_BOUNDS)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fitted, _ = optimize.curve_fit(model, None, curve, p0=p0,
                                                   bounds=(D.FERMI_LOWER_BOUNDS, D.FERMI_UPPER_BOUNDS),
                                                   x_scale=D.FERMI_PARAMETER_SCALE)
            except RuntimeError:
                continue
            cost = np.sum((model(None, *fitted) - curve) ** 2)
            if not cost >= costs[row]:
                params[row], costs[row] = fitted, cost
    return params, costs


def bound_breakdown(fit):
    """Share of fits with each parameter at each bound, e.g. 'tau0_s low 98%'."""
    params = np.column_stack([fit.flow_per_s, fit.tau0_s, fit.k_per_s, fit.delay_s])
    lower, upper = np.asarray(D.FERMI_LOWER_BOUNDS), np.asarray(D.FERMI_UPPER_BOUNDS)
    tolerance = D.AT_BOUND_TOLERANCE * (upper - lower)
    parts = []
    for index, name in enumerate(D.FERMI_PARAMETERS):
        for side, near in (("low", params[:, index] - lower[index] <= tolerance[index]),
                           ("high", upper[index] - params[:, index] <= tolerance[index])):
            if np.any(near):
                parts.append("{} {} {:.1%}".format(name, side, np.mean(near)))
    return ", ".join(parts) or "none"


def window_costs(fit, tissue, times, fit_end_s):
    n_window = int(np.searchsorted(times, fit_end_s, side="right"))
    return np.sum((fit.fitted_mM[:, :n_window] - tissue[:, :n_window]) ** 2, axis=1)


def compare(name, times, aif, tissue, args):
    fit_end = D.first_pass_end_s(times, aif)
    n_window = int(np.searchsorted(times, fit_end, side="right"))
    print("\n== tissue curves: {} ({} pixels x {} frames; first-pass window {} frames, to {:.1f} s) ==".format(
        name, tissue.shape[0], tissue.shape[1], n_window, fit_end))
    durations, cpu, baseline_cpu = [], [], []
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fit = D.fit_fermi_batched(times, aif, tissue, step_s=args.step)
        durations.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        if args.baseline_module is not None:
            start_cpu = time.process_time()
            baseline = args.baseline_module.fit_fermi_batched(times, aif, tissue, step_s=args.step)
            baseline_cpu.append(time.process_time() - start_cpu)
    batched_s = float(np.median(durations))
    print("batched, full map:        {:.3f} s (median of {}; runs {}; CPU time {:.3f} s)".format(
        batched_s, args.repeats, ", ".join("{:.3f}".format(d) for d in durations), float(np.median(cpu))))
    if args.baseline_module is not None:
        change = relative_change(fit.mbf_ml_min_g, baseline.mbf_ml_min_g)
        print("  baseline {}: CPU time {:.3f} s, this fit takes {:.2f} times as long; |dMBF| / MBF median {:.1e}, "
              "above 1 % in {} pixels".format(args.baseline, float(np.median(baseline_cpu)),
                                              float(np.median(cpu) / np.median(baseline_cpu)),
                                              np.median(change), np.sum(change > 0.01)))
    print("  converged {:.2%}, at a bound {:.2%} ({}), MBF median {:.2f} mL/min/g".format(
        fit.converged.mean(), fit.at_bound.mean(), bound_breakdown(fit), np.nanmedian(fit.mbf_ml_min_g)))

    subset = np.sort(np.random.default_rng(args.seed).choice(tissue.shape[0], args.subset, replace=False))
    start = time.perf_counter()
    params, reference_costs = curve_fit_pixels(times, aif, tissue[subset], fit_end, args.step)
    per_pixel_s = (time.perf_counter() - start) / subset.size
    full_map_s = per_pixel_s * tissue.shape[0]
    print("curve_fit, {} random pixels timed, {} starts each: {:.1f} ms per pixel; EXTRAPOLATED to the full "
          "map: {:.1f} s".format(subset.size, len(D.DELAY_STARTS_S), 1e3 * per_pixel_s, full_map_s))
    print("speed ratio (curve_fit extrapolated / batched): {:.0f}x".format(full_map_s / batched_s))

    mbf_reference = D.flow_to_mbf(params[:, 0])
    mbf_batched = fit.mbf_ml_min_g[subset]
    relative = np.abs(mbf_batched - mbf_reference) / mbf_reference
    relative = np.where(np.isfinite(relative), relative, np.inf)
    print("MBF agreement on the subset: |batched - curve_fit| / curve_fit <= 1 % for {:.1%} of pixels; "
          "median {:.2e}, 95th percentile {:.2e}, max {:.2e}".format(
              np.mean(relative <= 0.01), np.median(relative), np.percentile(relative, 95), np.max(relative)))
    batched_costs = window_costs(fit, tissue, times, fit_end)[subset]
    print("  batched cost <= curve_fit cost (+1e-6 relative) for {:.1%} of the subset".format(
        np.mean(batched_costs <= reference_costs * (1 + 1e-6))))
    print("the same pixels in other batches, against the full map:")
    batch_invariance(times, aif, tissue, fit, subset, args.seed, args.step)
    return fit, fit_end


def relative_change(mbf, reference):
    """|mbf / reference - 1| per pixel; 0 where both are NaN, inf where only one is."""
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.abs(mbf / reference - 1.0)
    both_nan = np.isnan(mbf) & np.isnan(reference)
    return np.where(both_nan, 0.0, np.where(np.isfinite(change), change, np.inf))


def batch_invariance(times, aif, tissue, fit, subset, seed, step_s):
    """Refit the map in other batches and with 1e-14 changes; print the largest relative change of MBF."""
    rng = np.random.default_rng(seed)
    mbf = fit.mbf_ml_min_g

    def refit(curves):
        return D.fit_fermi_batched(times, aif, curves, step_s=step_s).mbf_ml_min_g

    def in_order(order):
        result = np.empty(order.size)
        result[order] = refit(tissue[order])
        return result

    def in_chunks(size, rows):
        return np.concatenate([refit(tissue[rows[start:start + size]]) for start in range(0, rows.size, size)])

    everything = np.arange(tissue.shape[0])
    pathological = np.zeros((3, tissue.shape[1]))
    pathological[1, 3] = np.nan
    pathological[2] = 1e300 * tissue[0]
    splits = {"reversed": (in_order(everything[::-1]), everything),
              "random order": (in_order(rng.permutation(everything)), everything),
              "chunks of 7": (in_chunks(7, everything), everything),
              "chunks of 1000": (in_chunks(1000, everything), everything),
              "one at a time ({} pixels)".format(subset.size): (in_chunks(1, subset), subset),
              "beside pathological curves": (refit(np.vstack([pathological, tissue]))[3:], everything)}
    for draw in range(2):
        changed = tissue * (1.0 + 1e-14 * rng.standard_normal(tissue.shape))
        splits["curves changed by 1e-14 (draw {})".format(draw + 1)] = (refit(changed), everything)
    for name, (other, rows) in splits.items():
        change = relative_change(other, mbf[rows])
        print("  {:<36} max |dMBF| / MBF {:.1e}; pixels above 1e-12: {}, 1e-9: {}, 1e-8: {}, 1e-6: {}".format(
            name, np.max(change), np.sum(change > 1e-12), np.sum(change > 1e-9), np.sum(change > 1e-8),
            np.sum(change > 1e-6)))


def load_baseline(path):
    """Import another version of the deconvolution, a package folder or a single module, beside this one."""
    name = "AIAIFLib.baseline_deconvolution"
    if os.path.isdir(path):
        spec = importlib.util.spec_from_file_location(name, os.path.join(path, "__init__.py"),
                                                      submodule_search_locations=[path])
    else:
        spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # a package's modules import each other through it
    spec.loader.exec_module(module)
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--subset", type=int, default=200, help="pixels timed with curve_fit (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the batched fit (default 3)")
    parser.add_argument("--step", type=float, default=D.BATCHED_STEP_S,
                        help="lag step of both solvers, s (default {})".format(D.BATCHED_STEP_S))
    parser.add_argument("--baseline", help="another deconvolution package folder (or deconvolution.py) to time "
                                           "side by side with this one")
    args = parser.parse_args()
    args.baseline_module = None
    if args.baseline:
        args.baseline_module = load_baseline(args.baseline)
    print("CPU cores: {}; load average before: {}; OPENBLAS_NUM_THREADS={}".format(
        os.cpu_count(), ", ".join("{:.2f}".format(x) for x in os.getloadavg()),
        os.environ.get("OPENBLAS_NUM_THREADS", "unset")))
    phantom, times, aif, curves, noise_sd = phantom_curves(args.seed)
    print("phantom seed {}: {} x {} grid at {} mm, {} myocardial pixels, {} frames, {} T, AIF family {}; "
          "tissue noise SD {:.4f} mM".format(args.seed, MATRIX, MATRIX, PIXEL_MM, int(phantom.myocardium_mask.sum()),
                                             times.size, phantom.acquisition["field_strength_t"],
                                             phantom.acquisition["aif_family"], noise_sd))
    for name, tissue in curves.items():
        fit, fit_end = compare(name, times, aif, tissue, args)
        if name != "truth + noise":
            continue
        truth = phantom.mbf_ml_min_g[phantom.myocardium_mask]
        print("  fitted / true MBF, median: {:.3f}".format(np.nanmedian(fit.mbf_ml_min_g / truth)))
        start = time.perf_counter()
        fine = D.fit_fermi_batched(times, aif, tissue, step_s=0.05)
        fine_s = time.perf_counter() - start
        relative = np.abs(fit.mbf_ml_min_g / fine.mbf_ml_min_g - 1)
        print("lag step {} s vs 0.05 s (batched, full map, 0.05 s took {:.3f} s): |dMBF| / MBF median {:.2e}, "
              "95th percentile {:.2e}, <= 1 % for {:.1%}".format(args.step, fine_s, np.nanmedian(relative),
                                                                 np.nanpercentile(relative, 95),
                                                                 np.mean(relative <= 0.01)))
    print("\nload average after: {}".format(", ".join("{:.2f}".format(x) for x in os.getloadavg())))


if __name__ == "__main__":
    main()

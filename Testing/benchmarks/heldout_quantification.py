"""Benchmark: segment MBF and AHA labels of the pipeline on held-out phantoms (``Testing/heldout``).

Run: ``python Testing/benchmarks/heldout_quantification.py [--phantoms 12] [--seed 7] [--aifs true,ai,saturated]
[--conversions linear,model] [--oracle-relaxation] [--no-inflow] [--via-cli] [--weights PATH]``.

Each phantom (``heldout.phantom``: 3 T / 1.5 T alternating; no, LAD, RCA, LCX
ischaemia cycling; dose classes standard, low, high cycling) is quantified from
its noisy images by ``pipeline.quantify_study`` (the fast path) with each AIF
-- ``true`` (the phantom's true AIF given as an external AIF, its linear
reference signal), ``ai`` (the shipped network), ``saturated`` -- and each
tissue conversion.  Segment MBF (mean of the pixel map) is compared with the
truth (mean of the true MBF map over the true AHA labels): relative bias
(median of est / true - 1) over all, healthy (true >= 1.35 mL/min/g) and
ischaemic (true < 1.35) segments, Bland-Altman bias and 95 % limits of
agreement, and segment and vessel diagnosis agreement at 1.35 mL/min/g
(``evaluation.analyse_mbf``).  The row ``true AIF + true tissue curves``
fits the Fermi model (``deconvolution.fit_fermi_batched`` over the pipeline's
first-pass window) to the noise-free true segment concentration curves with
the true AIF concentration: what the deconvolution alone reads on this tissue
model.  For the true AIF, the spread of the relative segment error (SD and
largest) is printed twice: with the pipeline's segment mean, which leaves out
pixels at the upper flow bound, and with the mean of every finite pixel.

AHA labels: the share of myocardial voxels whose pipeline label equals the
true label, for every variant with and without RV insertion points (a
refusal is reported as such).

``--oracle-relaxation`` passes each phantom's true blood and myocardial T1
and r1 to the pipeline (``t1_blood_s``, ``t1_myocardium_s``, ``r1``), which
separates the literature-value mismatch from the rest; ``--no-inflow`` simulates
the phantoms without inflow of unsaturated blood into the blood pools (the
same phantoms otherwise), which separates that effect.  ``--via-cli`` also
writes every phantom as Slicer files (``heldout.write_study``) and runs the
public command line ``python -m AIAIFLib quantify`` on it for each AIF and
conversion, printing the same table from its ``segments.csv`` and the largest
difference from the fast path.  The held-out data are for testing only.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import heldout  # noqa: E402
from AIAIFLib import constants as K  # noqa: E402
from AIAIFLib import deconvolution, evaluation  # noqa: E402
from AIAIFLib.errors import AIAIFInputError  # noqa: E402
from AIAIFLib.pipeline import QuantificationParameters, quantify_study  # noqa: E402
from AIAIFLib.segments import segment_statistics  # noqa: E402

TERRITORIES = ("none", "LAD", "RCA", "LCX")
DOSE_CLASSES = ("standard", "low", "high")
LABEL_VARIANTS = ("base-first", "apex-first", "mirrored-geometry")


def phantom_plan(n_phantoms, seed):
    """(seed, field strength, ischaemic territory, dose class) of every phantom."""
    plan = []
    for index in range(n_phantoms):
        phantom_seed = int(np.random.SeedSequence([seed, 0xBE7C, index]).generate_state(1)[0])
        plan.append((phantom_seed, (3.0, 1.5)[index % 2], TERRITORIES[index % 4], DOSE_CLASSES[index % 3]))
    return plan


def relaxation_overrides(study):
    relax = study.acquisition["relaxation"]
    return {"t1_blood_s": relax["blood"]["t1_s"], "t1_myocardium_s": relax["myocardium"]["t1_s"],
            "r1_per_s_per_mM": relax["blood"]["r1_per_s_per_mM"]}


def fast_path(study, aif, conversion, oracle, weights=None):
    """Segment MBF (16) of ``quantify_study`` with one AIF and tissue conversion, its band (2 x 16), and the
    segment means over every finite pixel (16; the default leaves out pixels at the upper flow bound)."""
    options = dict(field_strength_t=study.acquisition["field_strength_t"], tissue_conversion=conversion,
                   weights_path=weights)
    if oracle:
        options.update(relaxation_overrides(study))
    if aif == "true":
        options.update(aif_mode="external", external_aif_times_s=study.frame_times_s,
                       external_aif_signal=study.truth["aif_reference_signal"])
    else:
        options.update(aif_mode=aif)
    result = quantify_study(study.perfusion_study(), QuantificationParameters(**options))
    return (np.asarray(result.segments["mbf_mean"], dtype=float),
            np.array([result.segments["mbf_low"], result.segments["mbf_high"]], dtype=float),
            segment_statistics(result.mbf_ml_min_g, result.aha_labels)["mbf_mean"])


def fermi_on_true_curves(study):
    """Segment MBF of the Fermi fit to the noise-free true segment curves with the true AIF (mL/min/g, 16)."""
    voxels = study.truth["myocardium_voxels_kji"]
    labels = study.truth["aha_labels"][voxels[:, 0], voxels[:, 1], voxels[:, 2]]
    curves = np.stack([study.truth["myocardium_voxel_conc_mM"][labels == s].mean(axis=0) for s in K.AHA_SEGMENTS])
    times, aif = study.frame_times_s, study.truth["aif_mM"]
    fit = deconvolution.fit_fermi_batched(times, aif, curves, fit_end_s=deconvolution.first_pass_end_s(times, aif))
    return np.asarray(fit.mbf_ml_min_g, dtype=float)


def label_agreement(study):
    """Variant -> (with points, without points): share of voxels with the true label, or the refusal."""
    out = {}
    for variant in LABEL_VARIANTS:
        case = heldout.apply_variant(study, variant)
        cells = []
        for with_points in (True, False):
            try:
                result = quantify_study(case.perfusion_study(with_points=with_points), QuantificationParameters(
                    field_strength_t=case.acquisition["field_strength_t"], aif_mode="saturated"))
            except AIAIFInputError as error:
                cells.append("refused: " + str(error))
                continue
            mask = case.myocardium_mask
            cells.append(float(np.mean(result.aha_labels[mask] == case.truth["aha_labels"][mask])))
        out[variant] = cells
    return out


def via_cli(study, directory, aif, conversion, oracle, weights=None):
    """Segment MBF (16) from the public command line on the study's Slicer files."""
    output = os.path.join(directory, "out_{}_{}".format(aif, conversion))
    command = [sys.executable, "-m", "AIAIFLib", "quantify", os.path.join(directory, "perfusion.seq.nrrd"),
               os.path.join(directory, "segmentation.seg.nrrd"), "--rv-insertion",
               os.path.join(directory, "rv_insertion.mrk.json"), "--aif",
               os.path.join(directory, "true_aif.csv") if aif == "true" else aif, "--field-strength",
               "{:g}".format(study.acquisition["field_strength_t"]), "--tissue-conversion", conversion,
               "--output-dir", output, "--quiet"]
    if oracle:
        values = relaxation_overrides(study)
        command += ["--t1-blood-s", repr(values["t1_blood_s"]), "--t1-myocardium-s", repr(values["t1_myocardium_s"]),
                    "--r1", repr(values["r1_per_s_per_mM"])]
    if weights:
        command += ["--weights", weights]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(output, "segments.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    return np.array([float(row["mbf_mean"]) if row["mbf_mean"] else np.nan for row in rows])


def relative_bias(truth, values, mask):
    ratio = values[mask] / truth[mask] - 1.0
    ratio = ratio[np.isfinite(ratio)]
    return "{:+.0f} %".format(100.0 * np.median(ratio)) if ratio.size else "-"


def error_spread(truth, values):
    """SD and largest absolute value of the relative segment error, %."""
    ratio = values / truth - 1.0
    ratio = ratio[np.isfinite(ratio)]
    return 100.0 * np.std(ratio), 100.0 * np.max(np.abs(ratio))


def print_table(truth, rows, title):
    print("\n{} ({} phantoms x 16 segments; true segment MBF median {:.2f} mL/min/g, {} segments < {} "
          "mL/min/g)".format(title, truth.shape[0], np.median(truth), int(np.sum(truth < K.ISCHAEMIA_THRESHOLD_ML_MIN_G)),
                             K.ISCHAEMIA_THRESHOLD_ML_MIN_G))
    header = "{:<30} {:>8} {:>8} {:>8} | {:>7} {:>16} | {:>7} {:>7}".format(
        "AIF / tissue conversion", "rel all", "healthy", "ischaem", "bias", "95% LoA", "seg agr", "vsl agr")
    print(header)
    print("-" * len(header))
    healthy = truth >= K.ISCHAEMIA_THRESHOLD_ML_MIN_G
    for name, values in rows.items():
        result = evaluation.analyse_mbf(truth, values)
        agreement = result.per_segment.bland_altman
        print("{:<30} {:>8} {:>8} {:>8} | {:>+7.2f} {:>7.2f} to {:>5.2f} | {:>6.0f}% {:>6.0f}%".format(
            name, relative_bias(truth, values, np.ones_like(healthy)), relative_bias(truth, values, healthy),
            relative_bias(truth, values, ~healthy), agreement.bias, agreement.lower_loa, agreement.upper_loa,
            result.segment_agreement.percent, result.vessel_agreement.percent))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phantoms", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--aifs", default="true,ai,saturated", help="comma-separated subset of true,ai,saturated")
    parser.add_argument("--conversions", default="linear,model", help="comma-separated subset of linear,model")
    parser.add_argument("--oracle-relaxation", action="store_true",
                        help="give the pipeline each phantom's true blood / myocardial T1 and r1")
    parser.add_argument("--no-inflow", action="store_true", help="phantoms without inflow into the blood pools")
    parser.add_argument("--via-cli", action="store_true", help="also run the public command line on Slicer files")
    parser.add_argument("--weights", default=None, help="one weights file for the AI-AIF (default: the ensemble)")
    args = parser.parse_args()
    aifs, conversions = args.aifs.split(","), args.conversions.split(",")
    combos = [(aif, conversion) for aif in aifs for conversion in conversions]

    truth, fast, cli, fermi, labels, details = [], {c: [] for c in combos}, {c: [] for c in combos}, [], [], []
    bands, every_pixel = {c: [] for c in combos}, {c: [] for c in combos}
    timings = {"phantom": 0.0, "fast path": 0.0, "cli": 0.0}
    for seed, field, territory, dose in phantom_plan(args.phantoms, args.seed):
        started = time.perf_counter()
        study = heldout.phantom(seed, field, territory, dose=dose, inflow=not args.no_inflow)
        timings["phantom"] += time.perf_counter() - started
        truth.append(study.truth["segment_mbf_ml_min_g"])
        details.append((field, territory, dose, study.acquisition["aif"]["peak_conc_mM"],
                        study.acquisition["readout"]["ordering"]))
        started = time.perf_counter()
        for combo in combos:
            mbf, band, every_pixel_mbf = fast_path(study, *combo, args.oracle_relaxation, args.weights)
            fast[combo].append(mbf)
            bands[combo].append(band)
            every_pixel[combo].append(every_pixel_mbf)
        timings["fast path"] += time.perf_counter() - started
        fermi.append(fermi_on_true_curves(study))
        labels.append(label_agreement(study))
        if args.via_cli:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as directory:
                heldout.write_study(study, directory)
                for combo in combos:
                    cli[combo].append(via_cli(study, directory, *combo, args.oracle_relaxation, args.weights))
            timings["cli"] += time.perf_counter() - started

    truth = np.array(truth)
    print("Held-out phantoms: seed {}, {} phantoms{}{}; phantoms {:.0f} s, fast path {:.0f} s{}".format(
        args.seed, args.phantoms, ", oracle relaxation" if args.oracle_relaxation else "",
        ", no inflow" if args.no_inflow else "", timings["phantom"],
        timings["fast path"], ", command line {:.0f} s".format(timings["cli"]) if args.via_cli else ""))
    for index, (field, territory, dose, peak, ordering) in enumerate(details):
        print("  phantom {:>2}: {:g} T, ischaemic {:<4}, dose {:<8} (LV peak {:4.1f} mM), {} ordering".format(
            index, field, territory, dose, peak, ordering))
    rows = {"{} AIF / {}".format(*combo): np.array(fast[combo]) for combo in combos}
    rows["true AIF + true tissue curves"] = np.array(fermi)
    print_table(truth, rows, "Segment MBF, pipeline.quantify_study")
    for combo in combos:
        if combo[0] == "true":
            spread = ["{}: SD {:.1f} %, largest |error| {:.0f} %".format(name, *error_spread(truth, np.array(values)))
                      for name, values in (("upper-bound pixels left out (default)", fast[combo]),
                                           ("every finite pixel", every_pixel[combo]))]
            print("  true AIF / {}, relative error of the segment mean: {}".format(combo[1], "; ".join(spread)))
    if args.via_cli:
        cli_rows = {"{} AIF / {}".format(*combo): np.array(cli[combo]) for combo in combos}
        print_table(truth, cli_rows, "Segment MBF, python -m AIAIFLib quantify")
        for combo in combos:
            difference = np.nanmax(np.abs(np.array(cli[combo]) - np.array(fast[combo])))
            print("  {} AIF / {}: largest |command line - fast path| {:.3g} mL/min/g".format(*combo, difference))

    for name, dose in (("low dose", "low"), ("standard dose", "standard"), ("high dose", "high"), ("1.5 T", 1.5),
                       ("3 T", 3.0)):
        chosen = np.array([dose in (d[2], d[0]) for d in details])
        if not chosen.any():
            continue
        cells = ["{} {}".format(label, relative_bias(truth[chosen].ravel(), values[chosen].ravel(),
                                                     np.ones(truth[chosen].size, bool)))
                 for label, values in rows.items() if label.endswith("model") or label.startswith("true AIF +")]
        print("  {:<14} median relative bias: {}".format(name, "; ".join(cells)))

    for conversion in conversions:
        if ("ai", conversion) in fast and ("true", conversion) in fast:
            ai, true = np.array(fast[("ai", conversion)]), np.array(fast[("true", conversion)])
            relative = ai / true - 1.0
            same = (ai < K.ISCHAEMIA_THRESHOLD_ML_MIN_G) == (true < K.ISCHAEMIA_THRESHOLD_ML_MIN_G)
            band = np.array(bands[("ai", conversion)])
            inside = (band[:, 0] <= true) & (true <= band[:, 1])
            print("  AI-AIF vs true AIF ({}): mean {:+.1f} %, SD {:.1f} %, diagnosis agreement {:.1f} % of segments; "
                  "true-AIF MBF inside the ensemble band in {:.0f} % of segments; per phantom {} [issue 13: +-5 %, "
                  "< 12 %, >= 95 %]".format(
                      conversion, 100 * np.nanmean(relative), 100 * np.nanstd(relative), 100 * np.mean(same),
                      100 * np.mean(inside), " ".join("{:+.0f}".format(v) for v in 100 * np.nanmean(relative, axis=1))))

    print("\nAHA labels: share of myocardial voxels with the true label (pipeline.quantify_study)")
    print("{:<20} {:>22} {:>22}".format("variant", "with RV points", "without RV points"))
    for variant in LABEL_VARIANTS:
        cells = []
        for column in (0, 1):
            values = [entry[variant][column] for entry in labels]
            refused = [v for v in values if isinstance(v, str)]
            shares = np.array([v for v in values if not isinstance(v, str)])
            text = "{:.1f} % (min {:.1f} %)".format(100 * shares.mean(), 100 * shares.min()) if shares.size else ""
            if refused:
                text = (text + "; " if text else "") + "{} refused".format(len(refused))
            cells.append(text)
        print("{:<20} {:>22} {:>22}".format(variant, *cells))
    refusals = sorted({v for entry in labels for cells in entry.values() for v in cells if isinstance(v, str)})
    for text in refusals[:3]:
        print("  " + text)


if __name__ == "__main__":
    main()

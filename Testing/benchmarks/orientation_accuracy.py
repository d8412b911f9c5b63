"""Benchmark: AHA orientation per storage variant, with and without RV insertion points.

Run: ``python Testing/benchmarks/orientation_accuracy.py [--phantoms 8] [--seed 11] [--heldout 4]
[--no-territories]``.

Each validation phantom (``studies.validation_phantoms``: 3 T / 1.5 T
alternating, no / LAD / RCA / LCX ischaemia) is labelled in four variants:

* ``base-first``: as simulated, with the anterior RV insertion points;
* ``apex-first``: the slices stored apex to base, the geometry following;
* ``mirrored geometry``: the same images stored with the slice axis of
  ``ijk_to_ras`` reversed (the points move with the geometry), which mirrors
  the heart in patient coordinates;
* ``no points``: base-first without RV insertion points.

For each it prints, side by side: the share of myocardial voxels whose AHA
segment matches the truth; the insertion-angle error (degrees, mean and
largest over the slices) of the origin the segments used and of the image's
own estimate (the anterior end of the RV contact arc, ``orientation``); the
rule that decided the septum side with its confidence; where the origins
came from; and the territory calls of the full pipeline with the true AIF
and the model conversion (``pipeline.quantify_study``), which must not
change between variants.  A summary per variant follows.

The studies of ``Testing/heldout`` (the independent second forward model:
elliptical LV, crescent RV, partial volume, epicardial fat) run through the
same table (``--heldout N`` studies, its own variants).

Target [issue 12]: >= 99 % voxel agreement in every variant, and territory
calls that do not change between variants.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import heldout  # noqa: E402
from AIAIFLib import aif, orientation, pipeline, segments, studies  # noqa: E402

#: Our variants: name -> (simulate_phantom storage options, with RV points).
VARIANTS = {"base-first": ({}, True), "apex-first": ({"apex_first": True}, True),
            "mirrored geometry": ({"mirrored_slice_axis": True}, True), "no points": ({}, False)}


def _centre(study, k):
    jj, ii = np.nonzero(study["blood_pool"][k])
    matrix = study["ijk_to_ras"]
    return matrix[:3, :3] @ [ii.mean(), jj.mean(), k] + matrix[:3, 3]


def _angle_errors(study, points, normal):
    """Turn (deg) from the true anterior insertion point to ``points`` (n_slices, 3) around each LV centre."""
    return np.array([orientation.turn_deg(study["anterior"][k] - _centre(study, k), points[k] - _centre(study, k),
                                          normal) for k in range(len(points))])


def measure(study, with_points, territories):
    """One study in one variant: agreement, angle errors, rules and territory calls."""
    points = labels = None
    if with_points:
        points, labels = study["anterior"], ["RV insertion anterior {}".format(level) for level in study["levels"]]
    lv_signal = aif.extract_aif_signal(study["frames"], study["blood_pool"])
    image_rv = orientation.find_rv(study["frames"], study["times_s"], study["blood_pool"], study["myocardium"],
                                   study["ijk_to_ras"], lv_signal=lv_signal)
    started = time.perf_counter()
    result = segments.aha_segment_map(study["myocardium"], study["blood_pool"], study["ijk_to_ras"], points, labels,
                                      image_rv=image_rv)
    myocardium = study["myocardium"]
    rules = result.rules_used
    sign = 1 if result.septum_direction == "clockwise" else -1
    image_ends = np.array([rv.arc_ends_ras[0 if sign > 0 else 1] if rv.found else np.full(3, np.nan)
                           for rv in image_rv.slices])
    row = {
        "agreement": float(np.mean(result.labels[myocardium] == study["truth_labels"][myocardium])),
        "origin_error": _angle_errors(study, result.insertion_ras, image_rv.normal_ras),
        "image_error": _angle_errors(study, image_ends, image_rv.normal_ras),
        "side": "{} {:.2f}".format(rules["septum_side"]["rule"], rules["septum_side"]["confidence"]),
        "origins": ",".join({"user point": "U", "image RV": "I", "nearest slice": "N"}[r["insertion_point"]["rule"]]
                            for r in rules["slices"]),
        "warnings": len(rules["warnings"]), "seconds": time.perf_counter() - started, "calls": "",
    }
    if territories:
        quantified = pipeline.quantify_study(pipeline.PerfusionStudy(
            frames=study["frames"], frame_times_s=study["times_s"], ijk_to_ras=study["ijk_to_ras"],
            blood_pool_mask=study["blood_pool"], myocardium_mask=myocardium, rv_insertion_ras=points,
            rv_insertion_labels=labels), pipeline.QuantificationParameters(
                field_strength_t=study["field_strength_t"], aif_mode="external", tissue_conversion="model",
                external_aif_times_s=study["times_s"], external_aif_signal=study["true_aif_signal"]))
        row["calls"] = " ".join("{}{}".format(name, "+" if flag else "-") for name, flag in zip(
            quantified.territories["territory"], quantified.territories["ischemic"]))
    return row


def _our_studies(n_phantoms, seed):
    """(phantom index, variant, study dict, with points) of our validation phantoms in every variant."""
    for variant, (storage, with_points) in VARIANTS.items():
        for index, phantom in enumerate(studies.validation_phantoms(n_phantoms, seed, **storage)):
            yield index, variant, {
                "frames": phantom.frames, "times_s": phantom.frame_times_s, "ijk_to_ras": phantom.ijk_to_ras,
                "blood_pool": phantom.lv_blood_mask, "myocardium": phantom.myocardium_mask,
                "anterior": phantom.rv_insertion_ras["anterior"], "levels": phantom.levels,
                "truth_labels": phantom.aha_segments, "field_strength_t": phantom.acquisition["field_strength_t"],
                "true_aif_signal": phantom.truth["lv_blood_reference_signal"],
                "name": "{:.1f} T {}".format(phantom.acquisition["field_strength_t"],
                                             phantom.acquisition["ischemic_territory"])}, with_points


def _heldout_studies(n_studies, seed):
    """The held-out forward model's studies in its own variants (anterior points from its base-first study)."""
    fields, territories = (3.0, 1.5), ("none", "LAD", "RCA", "LCX")
    for index in range(n_studies):
        field, ischemic = fields[index % 2], territories[index % len(territories)]
        for variant in heldout.VARIANTS:
            study = heldout.phantom(seed + index, field_strength_t=field, ischemic=ischemic, variant=variant)
            points = study.rv_insertion_ras
            if points is None:  # the no-points variant: its truth points come from the base-first study
                points = heldout.phantom(seed + index, field_strength_t=field, ischemic=ischemic).rv_insertion_ras
            yield index, variant, {
                "frames": study.frames, "times_s": study.frame_times_s, "ijk_to_ras": study.ijk_to_ras,
                "blood_pool": study.lv_blood_mask, "myocardium": study.myocardium_mask,
                "anterior": np.asarray(points["anterior"]), "levels": study.slice_levels,
                "truth_labels": study.truth["aha_labels"], "field_strength_t": field,
                "true_aif_signal": study.truth["aif_reference_signal"],
                "name": "{:.1f} T {}".format(field, ischemic)}, study.rv_insertion_ras is not None


def run(title, rows_by_study, territories):
    """Measure and print one model's studies; returns the rows."""
    print(title)
    print("{:<3} {:<12} {:<18} {:>8} {:>13} {:>13} {:<16} {:<7} {:>4} {}".format(
        "#", "study", "variant", "agree %", "origin err", "image err", "septum side", "origins", "warn",
        "territory calls" if territories else ""))
    rows = []
    for index, variant, study, with_points in rows_by_study:
        row = measure(study, with_points, territories)
        row.update(index=index, variant=variant)
        rows.append(row)

        def errors(values):
            values = np.abs(values[np.isfinite(values)])
            return "{:5.2f} / {:5.2f}".format(values.mean(), values.max()) if values.size else "-"

        print("{:<3} {:<12} {:<18} {:>8.2f} {:>13} {:>13} {:<16} {:<7} {:>4} {}".format(
            index, study["name"], variant, 100.0 * row["agreement"], errors(row["origin_error"]),
            errors(row["image_error"]), row["side"], row["origins"], row["warnings"], row["calls"]))
    print("\nper variant: voxel agreement mean / lowest (%), image insertion error mean |deg|, studies whose "
          "territory calls differ from base-first")
    base_calls = {row["index"]: row["calls"] for row in rows if row["variant"] == rows[0]["variant"]}
    for variant in dict.fromkeys(row["variant"] for row in rows):
        mine = [row for row in rows if row["variant"] == variant]
        agreement = np.array([row["agreement"] for row in mine])
        image = np.concatenate([row["image_error"] for row in mine])
        changed = sum(row["calls"] != base_calls[row["index"]] for row in mine) if territories else "-"
        print("  {:<18} {:6.2f} / {:6.2f}   {:5.2f}   {}".format(
            variant, 100.0 * agreement.mean(), 100.0 * agreement.min(), np.nanmean(np.abs(image)), changed))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phantoms", type=int, default=8)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--heldout", type=int, default=4, help="studies of the held-out forward model")
    parser.add_argument("--no-territories", dest="territories", action="store_false",
                        help="skip the full quantification behind the territory calls")
    args = parser.parse_args()
    started = time.perf_counter()
    run("Our phantoms ({} x 4 variants; origins: U user point, I image RV, N nearest slice; errors mean / largest "
        "|deg| over the slices)".format(args.phantoms), _our_studies(args.phantoms, args.seed), args.territories)
    if args.heldout > 0:
        print()
        run("Held-out forward model ({} studies x {} variants)".format(args.heldout, len(heldout.VARIANTS)),
            _heldout_studies(args.heldout, args.seed), args.territories)
    print("\n{:.0f} s".format(time.perf_counter() - started))


if __name__ == "__main__":
    main()

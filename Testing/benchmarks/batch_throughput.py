"""Benchmark: studies per minute of ``batch`` on Dask (1 and 2 workers) against a loop of ``quantify`` processes.

Run: ``python Testing/benchmarks/batch_throughput.py [--studies 24] [--frames 50] [--matrix 128] [--work DIR]
[--throughput-only]``.

It simulates the studies (seeds 100, 101, ...; 3 T and 1.5 T; every
ischaemic territory), half written as Slicer files (``.seq.nrrd``) and half
as DICOM, alternately one series per slice and one series, with two
proton-density frames leading each slice.  The Slicer copies hold exactly
the values the DICOM images store (``dicom_io.phantom.stored_phantom``) and
get their acquisition (field strength, TR, flip angle, saturation time) as
manifest columns, as the DICOM copies get it from their headers.  One
manifest lists them all.  Then, in one run, side by side:

1. a loop of ``python -m AIAIFLib quantify`` processes over the studies, one
   after the other, as a shell loop would run them;
2. ``python -m AIAIFLib batch`` with ``--workers 1``;
3. ``python -m AIAIFLib batch`` with ``--workers 2``;

each timed as the wall time of the whole command(s), cluster start-up
included.  It then checks that every study of the batch equals its single
``quantify`` run (``segments.csv`` and ``aif.csv`` byte for byte, the
``mbf.nrrd`` voxels exactly, ``summary.json`` to 1e-12), quantifies the
Slicer copies of the DICOM studies and compares their segment MBF, and runs
the manifest with one broken study added under ``batch --workers 2``,
killed (SIGKILL to the whole process group) once a third of the studies are
done and run again: the second run must quantify only the rest and exit 3
for the broken study.
"""

import argparse
import csv
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from AIAIFLib.dicom_io.phantom import DICOM_LAYOUTS, stored_phantom, write_phantom_dicom
from AIAIFLib.dicom_io.series import read_perfusion_folder
from AIAIFLib.simulation import simulate_phantom, write_phantom

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from result_compare import result_difference  # noqa: E402

TERRITORIES = ("none", "LAD", "RCA", "LCX")
HEADER = ("study", "perfusion", "segmentation", "rv_insertion", "field_strength", "repetition_time_s",
          "flip_angle_deg", "saturation_time_s")


def _make_studies(root, n_studies, n_frames, matrix):
    """Write the phantoms; return the manifest rows and, per DICOM study, (its name, the row of its Slicer copy)."""
    rows, copies = [], []
    for index in range(n_studies):
        seed = 100 + index
        phantom = simulate_phantom(seed=seed, field_strength_t=(3.0, 1.5)[index % 2],
                                   ischemic=TERRITORIES[index % 4], n_frames=n_frames, matrix=matrix,
                                   pixel_mm=1.6 * 128 / matrix)
        folder = os.path.join(root, "studies", "p{:03d}".format(seed))
        os.makedirs(folder)
        paths = write_phantom(stored_phantom(phantom), folder)
        name = "p{:03d}".format(seed)
        if index < n_studies // 2:
            acquisition = phantom.acquisition
            options = [acquisition["field_strength_t"]] + ["{:.10g}".format(acquisition[key]) for key in (
                "repetition_time_s", "flip_angle_nominal_deg", "saturation_time_s")]
            rows.append([name + "-nrrd", paths["perfusion"], paths["segmentation"], paths["rv_insertion"]] + options)
            continue
        layout = DICOM_LAYOUTS[index % 2]
        dicom = write_phantom_dicom(phantom, folder, layout=layout)
        rows.append([name + "-" + layout, dicom["perfusion"], dicom["segmentation"], paths["rv_insertion"]]
                    + [""] * 4)
        header = read_perfusion_folder(dicom["perfusion"]).header
        copies.append((rows[-1][0], [name + "-nrrd-copy", paths["perfusion"], paths["segmentation"],
                                     paths["rv_insertion"]] + [header[key] for key in (
                                         "field_strength_t", "repetition_time_s", "flip_angle_deg",
                                         "saturation_time_s")]))
    return rows, copies


def _write_manifest(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def _command(*arguments):
    return [sys.executable, "-m", "AIAIFLib"] + list(arguments)


def _children_cpu_s():
    """CPU seconds (user + system) of every finished child process so far, workers of a batch included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(run):
    """(wall s, CPU s of the child processes, result) of ``run()``."""
    cpu, started = _children_cpu_s(), time.perf_counter()
    result = run()
    return time.perf_counter() - started, _children_cpu_s() - cpu, result


def _quantify_loop(rows, output_dir):
    for row in rows:
        argv = ["quantify", row[1], row[2], "--output-dir", os.path.join(output_dir, row[0]), "--quiet",
                "--rv-insertion", row[3]]
        for option, value in zip(("--field-strength", "--repetition-time-s", "--flip-angle-deg",
                                  "--saturation-time-s"), row[4:]):
            if value != "":
                argv += [option, str(value)]
        subprocess.run(_command(*argv), check=True, capture_output=True)


def _batch(manifest, output_dir, workers):
    started = time.perf_counter()
    completed = subprocess.run(_command("batch", manifest, "--output-dir", output_dir, "--workers", str(workers),
                                        "--quiet"), capture_output=True, text=True)
    return time.perf_counter() - started, completed


def _studies_table(output_dir):
    with open(os.path.join(output_dir, "cohort_studies.csv")) as handle:
        return {row["study"]: row for row in csv.DictReader(handle)}


def _segment_mbf(folder):
    with open(os.path.join(folder, "segments.csv")) as handle:
        return np.array([float(row["mbf_mean"]) if row["mbf_mean"] else np.nan for row in csv.DictReader(handle)])


def _killed_and_resumed(manifest, output_dir, n_rows):
    process = subprocess.Popen(_command("batch", manifest, "--output-dir", output_dir, "--workers", "2", "--quiet"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    target = max(1, n_rows // 3)
    while process.poll() is None:
        table = os.path.join(output_dir, "cohort_studies.csv")
        if os.path.exists(table) and sum(row["status"] == "done" for row in _studies_table(output_dir).values()) \
                >= target:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = sorted(name for name in os.listdir(output_dir) if not name.startswith(".")
                      and os.path.isdir(os.path.join(output_dir, name)))
    staging = [name for name in os.listdir(output_dir) if ".partial-" in name]
    seconds, completed = _batch(manifest, output_dir, 2)
    return finished, staging, completed, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=24)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--matrix", type=int, default=128)
    parser.add_argument("--work", help="folder to work in (default: a temporary folder, removed at the end)")
    parser.add_argument("--throughput-only", action="store_true",
                        help="time the three runs and compare them with the loop; skip the copies and the resume")
    args = parser.parse_args()
    root = args.work or tempfile.mkdtemp(prefix="batch_throughput-")
    os.makedirs(root, exist_ok=True)
    try:
        started = time.perf_counter()
        rows, copies = _make_studies(root, args.studies, args.frames, args.matrix)
        manifest = _write_manifest(os.path.join(root, "manifest.csv"), rows)
        print("{} studies ({} as .seq.nrrd, {} as DICOM: per-slice and single-series), {} frames, {}x{} pixels, "
              "3 slices; written in {:.0f} s.".format(len(rows), len(rows) - len(copies), len(copies), args.frames,
                                                      args.matrix, args.matrix, time.perf_counter() - started))
        wall, cpu, _ = _timed(lambda: _quantify_loop(rows, os.path.join(root, "loop")))
        measured = {"quantify loop": (wall, cpu, 1)}
        for workers in (1, 2):
            wall, cpu, completed = _timed(lambda: _batch(manifest, os.path.join(root, "batch{}".format(workers)),
                                                         workers)[1])
            if completed.returncode != 0:
                raise SystemExit("batch --workers {} failed: {}".format(workers, completed.stderr[-2000:]))
            measured["batch, {} worker{}".format(workers, "s" if workers > 1 else "")] = (wall, cpu, workers)
        print("\nThroughput (wall time of the whole command(s), in one run; load average {:.1f} on {} cores):".format(
            os.getloadavg()[0], os.cpu_count()))
        loop = len(rows) / measured["quantify loop"][0] * 60
        one = len(rows) / measured["batch, 1 worker"][0] * 60
        for name, (wall, cpu, processes) in measured.items():
            rate = len(rows) / wall * 60
            print("  {:<16} {:7.1f} s  {:6.1f} studies/min  {:4.2f}x the loop  {:4.2f}x 1 worker  CPU {:5.2f} s per "
                  "study".format(name, wall, rate, rate / loop, rate / one, cpu / len(rows)))
        print("CPU seconds per study are what the machine's load does not change: the loop pays Python's start and "
              "the imports for every study, a worker once.")

        identical, worst = 0, 0.0
        for row in rows:
            same, difference = result_difference(os.path.join(root, "batch2", row[0]), os.path.join(root, "loop", row[0]))
            identical += same
            worst = max(worst, difference)
        print("\nbatch (2 workers) vs single quantify runs: {} of {} studies with identical segments.csv, aif.csv "
              "and mbf.nrrd voxels; summary.json floats differ by at most {:.1e} (relative).".format(
                  identical, len(rows), worst))

        if args.throughput_only:
            return
        copies_manifest = _write_manifest(os.path.join(root, "copies.csv"), [row for _, row in copies])
        _batch(copies_manifest, os.path.join(root, "copies"), 2)
        differences = []
        for dicom_name, row in copies:
            dicom = _segment_mbf(os.path.join(root, "batch2", dicom_name))
            nrrd_copy = _segment_mbf(os.path.join(root, "copies", row[0]))
            differences.append(np.nanmax(np.abs(dicom / nrrd_copy - 1.0)))
        print("DICOM vs .seq.nrrd copies of {} phantoms: segment MBF differs by at most {:.4f} % (median over "
              "phantoms of the largest segment difference {:.4f} %).".format(
                  len(copies), 100 * max(differences), 100 * float(np.median(differences))))

        broken = os.path.join(root, "broken.seq.nrrd")
        data = open(rows[0][1], "rb").read()
        open(broken, "wb").write(data[:len(data) // 2])
        resume_manifest = _write_manifest(os.path.join(root, "resume.csv"),
                                          rows + [["broken", broken] + rows[0][2:]])
        finished, staging, completed, elapsed = _killed_and_resumed(resume_manifest, os.path.join(root, "resume"),
                                                                    len(rows) + 1)
        table = _studies_table(os.path.join(root, "resume"))
        statuses = {status: sum(row["status"] == status for row in table.values())
                    for status in ("done", "skipped", "failed")}
        print("\nKilled midway with {} of {} study folders complete (staging folders left: {}); the second run "
              "({:.0f} s) exited {}: {} done, {} skipped, {} failed ({}).".format(
                  len(finished), len(rows) + 1, len(staging), elapsed, completed.returncode, statuses["done"],
                  statuses["skipped"], statuses["failed"], table["broken"]["error"][:90]))
        skipped = sorted(name for name, row in table.items() if row["status"] == "skipped")
        print("The skipped studies are exactly those complete before: {}.".format(skipped == finished))
    finally:
        if not args.work:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

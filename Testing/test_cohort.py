"""Cohorts (``AIAIFLib.cohort``): the manifest, one study's task, resume, the cohort tables, and ``batch`` on Dask.

The manifest checks and a study's task run in this process; the end-to-end
runs start ``python -m AIAIFLib batch`` with a local Dask cluster of two
worker processes on tiny phantoms.  The run that is killed midway and
resumed is ``slow``.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from AIAIFLib import cohort
from AIAIFLib.dicom_io import phantom as dicom_phantom
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.pipeline import ALWAYS_WRITTEN_FILES
from AIAIFLib.simulation import simulate_phantom, write_phantom
from result_compare import result_difference


def _phantom_files(root, seed, layout=None):
    """A tiny phantom's files: Slicer files, or (``layout``) a DICOM perfusion folder and SEG."""
    phantom = simulate_phantom(seed=seed, n_frames=30, matrix=40, pixel_mm=4.0)
    folder = os.path.join(str(root), "p{}{}".format(seed, "-" + layout if layout else ""))
    os.makedirs(folder)
    paths = write_phantom(dicom_phantom.stored_phantom(phantom), folder)
    if layout:
        dicom = dicom_phantom.write_phantom_dicom(phantom, folder, layout=layout)
        paths.update(perfusion=dicom["perfusion"], segmentation=dicom["segmentation"])
    return paths


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    files = {"nrrd": _phantom_files(root, 1), "dicom": _phantom_files(root, 2, "per-slice")}
    broken = os.path.join(str(root), "broken.seq.nrrd")
    data = open(files["nrrd"]["perfusion"], "rb").read()
    open(broken, "wb").write(data[:len(data) // 2])
    files["broken"] = broken
    return root, files


def _write_manifest(path, rows, header=("study", "perfusion", "segmentation", "rv_insertion", "aif",
                                        "dicom_output")):
    with open(str(path), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _rows(root, files):
    """The manifest rows, with paths relative to the manifest's folder ``root``."""
    def rel(path):
        return os.path.relpath(path, str(root))

    return [("nrrd study", rel(files["nrrd"]["perfusion"]), rel(files["nrrd"]["segmentation"]),
             rel(files["nrrd"]["rv_insertion"]), "saturated", ""),
            ("dicom", rel(files["dicom"]["perfusion"]), rel(files["dicom"]["segmentation"]),
             rel(files["dicom"]["rv_insertion"]), "saturated", "yes"),
            ("broken", rel(files["broken"]), rel(files["nrrd"]["segmentation"]), "", "saturated", "false")]


def test_the_manifest_is_read_with_paths_from_its_folder_and_quantify_options(cohort_files):
    root, files = cohort_files
    studies = cohort.read_manifest(_write_manifest(root / "manifest.csv", _rows(root, files)))
    assert [study.name for study in studies] == ["nrrd study", "dicom", "broken"]
    assert [study.row for study in studies] == [2, 3, 4]
    first = studies[0]
    assert first.argv == (files["nrrd"]["perfusion"], files["nrrd"]["segmentation"], "--rv-insertion",
                          files["nrrd"]["rv_insertion"], "--aif", "saturated")
    assert studies[1].dicom_output and "--dicom-output" in studies[1].argv
    assert not studies[2].dicom_output and "--rv-insertion" not in studies[2].argv
    assert cohort.expected_files(studies[1]) == sorted(list(ALWAYS_WRITTEN_FILES) + ["mbf.dcm"])


BAD_MANIFESTS = {
    "missing column": (("study", "perfusion"), [("a", "x")], r"has no column segmentation"),
    "duplicate study": (None, "duplicate", r"names the study 'nrrd study' twice \(rows 2 and 3\)"),
    "missing file": (None, "missing", r"names the perfusion .*nowhere\.seq\.nrrd in row 2, which does not exist"),
    "unknown column": (("study", "perfusion", "segmentation", "fieldstrength"), "unknown",
                       r"has the unknown column 'fieldstrength'; name optional columns after quantify's options"),
    "invalid option value": (("study", "perfusion", "segmentation", "field_strength"), "value",
                             r"has an invalid option in row 2 \(Argument --field-strength: expected a positive "
                             r"number, got 'three'"),
    "bad switch value": (None, "switch", r"has 'maybe' in column dicom_output of row 2; write true or false"),
    "study name with a slash": (None, "slash", r"has the study name 'a/b' in row 2, which cannot name a folder"),
    "output options in the manifest": (("study", "perfusion", "segmentation", "output_dir"), "output",
                                       r"has the unknown column 'output_dir'"),
    "no study rows": (("study", "perfusion", "segmentation"), [], r"has no study rows"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifests_are_refused_before_anything_runs(case, cohort_files, tmp_path):
    root, files = cohort_files
    header, rows, pattern = BAD_MANIFESTS[case]
    good = list(_rows(root, files)[0])
    good[1:4] = [os.path.join(str(root), path) for path in good[1:4]]
    if rows == "duplicate":
        rows = [good, good]
    elif rows == "missing":
        rows = [["a", "nowhere.seq.nrrd"] + good[2:]]
    elif rows in ("unknown", "value", "output"):
        rows = [good[:3] + [{"unknown": "3", "value": "three", "output": "x"}[rows]]]
    elif rows == "switch":
        rows = [good[:5] + ["maybe"]]
    elif rows == "slash":
        rows = [["a/b"] + good[1:]]
    path = _write_manifest(tmp_path / "manifest.csv", rows, header or ("study", "perfusion", "segmentation",
                                                                       "rv_insertion", "aif", "dicom_output"))
    with pytest.raises(AIAIFInputError, match=pattern) as error:
        cohort.read_manifest(path)
    assert str(error.value).endswith(".") and "\n" not in str(error.value)


def test_a_study_task_writes_a_complete_folder_or_records_its_sentence(cohort_files, tmp_path):
    root, files = cohort_files
    studies = cohort.read_manifest(_write_manifest(root / "manifest_task.csv", _rows(root, files)))
    done = cohort.quantify_study(studies[0], str(tmp_path))
    assert done.status == "done" and done.error == "" and done.wall_time_s > 0
    assert cohort.is_complete(str(tmp_path), studies[0])
    assert sorted(os.listdir(tmp_path / "nrrd study")) == sorted(ALWAYS_WRITTEN_FILES)
    failed = cohort.quantify_study(studies[2], str(tmp_path))
    assert failed.status == "failed" and "cut short" in failed.error and failed.error.endswith(".")
    assert sorted(os.listdir(tmp_path)) == ["nrrd study"]  # no folder, no staging left for the failed study
    # A folder that is not a complete result is never replaced without overwrite.
    (tmp_path / "broken").mkdir()
    assert "is not a complete result" in cohort.quantify_study(studies[0]._replace(name="broken"),
                                                              str(tmp_path)).error
    before = os.path.getmtime(tmp_path / "nrrd study" / "summary.json")
    again = cohort.quantify_study(studies[0], str(tmp_path), overwrite=True)
    assert again.status == "done" and os.path.getmtime(tmp_path / "nrrd study" / "summary.json") >= before
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]
    cohort.write_cohort_tables(str(tmp_path), studies, {"nrrd study": done, "broken": failed})
    table = list(csv.DictReader(open(tmp_path / cohort.STUDIES_TABLE)))
    assert [row["status"] for row in table] == ["done", "pending", "failed"]
    summary = json.load(open(tmp_path / "nrrd study" / "summary.json"))
    assert float(table[0]["global_mbf_ml_min_g"]) == pytest.approx(summary["results"]["global_mbf_ml_min_g"]["median"],
                                                                   rel=1e-5)
    assert table[0]["n_warnings"] == str(len(summary["warnings"]))
    segments = list(csv.reader(open(tmp_path / cohort.SEGMENTS_TABLE)))
    own = list(csv.reader(open(tmp_path / "nrrd study" / "segments.csv")))
    assert segments[0] == ["study"] + own[0] and [row[1:] for row in segments[1:]] == own[1:]


def test_stale_staging_folders_of_a_killed_run_are_removed(tmp_path):
    (tmp_path / ".a.partial-x1").mkdir()
    (tmp_path / ".a.replaced-x2").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / ".keep").mkdir()
    assert cohort.remove_stale_staging(str(tmp_path)) == 2
    assert sorted(os.listdir(tmp_path)) == [".keep", "a"]


def _batch(manifest, output_dir, *options, **kwargs):
    return subprocess.run([sys.executable, "-m", "AIAIFLib", "batch", manifest, "--output-dir", str(output_dir),
                           "--workers", "2"] + list(options), capture_output=True, text=True, timeout=600, **kwargs)


def _table(output_dir):
    return {row["study"]: row for row in csv.DictReader(open(os.path.join(str(output_dir), cohort.STUDIES_TABLE)))}


def test_batch_on_dask_records_a_failure_exits_3_and_equals_single_quantify_runs(cohort_files, tmp_path):
    root, files = cohort_files
    manifest = _write_manifest(root / "manifest_e2e.csv", _rows(root, files))
    out = tmp_path / "cohort"
    completed = _batch(manifest, out)
    assert completed.returncode == 3, completed.stderr
    assert "Traceback" not in completed.stderr + completed.stdout
    assert "3 studies: 2 done, 0 skipped (complete before), 1 failed." in completed.stdout
    table = _table(out)
    assert [table[name]["status"] for name in ("nrrd study", "dicom", "broken")] == ["done", "done", "failed"]
    assert "cut short" in table["broken"]["error"] and table["broken"]["wall_time_s"]
    assert sorted(os.listdir(out)) == sorted([".aiaif-batch.lock", "cohort_segments.csv", "cohort_studies.csv",
                                              "dicom", "nrrd study"])
    assert "mbf.dcm" in os.listdir(out / "dicom")
    segments = list(csv.DictReader(open(out / cohort.SEGMENTS_TABLE)))
    assert len(segments) == 32 and {row["study"] for row in segments} == {"nrrd study", "dicom"}

    # The same study quantified alone gives the same numbers.
    single = tmp_path / "single"
    alone = subprocess.run([sys.executable, "-m", "AIAIFLib", "quantify", files["nrrd"]["perfusion"],
                            files["nrrd"]["segmentation"], "--rv-insertion", files["nrrd"]["rv_insertion"], "--aif",
                            "saturated", "--output-dir", str(single), "--quiet"], capture_output=True, text=True,
                           timeout=300)
    assert alone.returncode == 0, alone.stderr
    identical, summary_difference = result_difference(str(single), str(out / "nrrd study"))
    # Float64 values in the summary may differ in their last bits (summation order of SIMD kernels); the files'
    # values are identical.
    assert identical and summary_difference < 1e-12

    # Run again: the complete studies are skipped, the failed one is tried again.
    again = _batch(manifest, out)
    assert again.returncode == 3 and "3 studies: 0 done, 2 skipped (complete before), 1 failed." in again.stdout
    assert [row["status"] for row in _table(out).values()] == ["skipped", "skipped", "failed"]


def test_local_workers_start_with_one_blas_thread_and_glibcs_own_malloc_trimming(monkeypatch):
    # distributed's default pre-spawn environment sets MALLOC_TRIM_THRESHOLD_=65536, which made every study about
    # 1.5x slower in a worker (freed numpy temporaries returned to the system and faulted in again).
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    saved = dict(os.environ)  # the nanny writes the pre-spawn environment into this process's environment too
    client, cluster = cohort._client(1, None)
    try:
        seen = client.run(lambda: {name: os.environ.get(name) for name in
                                   ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    finally:
        client.close()
        cluster.close()
        os.environ.clear()
        os.environ.update(saved)
    (worker_environment,) = seen.values()
    assert worker_environment == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@pytest.mark.slow
def test_a_batch_killed_midway_finishes_only_the_rest_when_run_again(tmp_path):
    files = [_phantom_files(tmp_path / "studies", seed) for seed in range(10, 18)]
    rows = [("s{}".format(n), paths["perfusion"], paths["segmentation"], paths["rv_insertion"], "saturated", "")
            for n, paths in enumerate(files)]
    manifest = _write_manifest(tmp_path / "manifest.csv", rows)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "AIAIFLib", "batch", manifest, "--output-dir", str(out),
                                "--workers", "2", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        table = _table(out) if (out / cohort.STUDIES_TABLE).exists() else {}
        if sum(row["status"] == "done" for row in table.values()) >= 3:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the whole run, workers included, as a crash or a lost session would
    process.wait(timeout=60)
    finished = sorted(name for name in os.listdir(out) if not name.startswith(".") and not name.endswith(".csv"))
    assert 3 <= len(finished) < len(rows)
    for name in finished:  # every study folder there is complete
        assert sorted(os.listdir(out / name)) == sorted(ALWAYS_WRITTEN_FILES)
    again = _batch(manifest, out)
    assert again.returncode == 0, again.stderr
    assert "{} done, {} skipped".format(len(rows) - len(finished), len(finished)) in again.stdout
    table = _table(out)
    assert sorted(name for name, row in table.items() if row["status"] == "skipped") == finished
    assert not [name for name in os.listdir(out) if ".partial-" in name or ".replaced-" in name]


def test_an_unreachable_scheduler_is_one_sentence(cohort_files, tmp_path):
    root, files = cohort_files
    manifest = _write_manifest(root / "manifest_scheduler.csv", _rows(root, files)[:1])
    started = time.monotonic()
    with pytest.raises(AIAIFInputError, match=r"Cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9 \(OSError\); "
                                              r"check the address or leave out --scheduler\."):
        cohort.run_batch(manifest, str(tmp_path / "out"), scheduler="tcp://127.0.0.1:9")
    assert time.monotonic() - started < 60
    assert sorted(os.listdir(tmp_path / "out")) == [".aiaif-batch.lock", "cohort_segments.csv", "cohort_studies.csv"]
    assert [row["status"] for row in _table(tmp_path / "out").values()] == ["pending"]


def test_a_second_run_into_the_same_folder_is_refused(cohort_files, tmp_path):
    root, files = cohort_files
    manifest = _write_manifest(root / "manifest_lock.csv", _rows(root, files)[:1])
    (tmp_path / "out").mkdir()
    held = cohort._lock(str(tmp_path / "out"))
    try:
        with pytest.raises(AIAIFInputError, match=r"Another batch run is writing into"):
            cohort.run_batch(manifest, str(tmp_path / "out"))
    finally:
        held.close()

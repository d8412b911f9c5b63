"""A corpus of bad inputs: each one runs the real command line in a subprocess and must end cleanly.

Every case is built here from a small simulated phantom and run as
``python -m AIAIFLib ...``.  Each must end with exit code 2 (130 for Ctrl-C),
at most three lines on standard error naming the problem, no traceback, no
output file or staging folder left behind, the user's files byte for byte as
they were, and within a time bound.  The cases cover every row of issue 14
(marked ``row N``); the rows whose input is valid but was mishandled (external
AIF times rounded, the demo's summary, the progress bar, ``evaluate`` with one
or two patients) have tests of their own below, as do the same bad nodes given
to the Slicer module's Logic (``AIAIFInputError``, scene unchanged).

The cases run two at a time (the machine has two cores), once per session.
"""

import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from AIAIFLib import slicer_files as sf
from AIAIFLib.dicom_io.phantom import write_phantom_dicom
from AIAIFLib.simulation import PHANTOM_FILES, RV_INSERTION_NODE_NAME, simulate_phantom, write_phantom
from dicom_helpers import edit_images, second_series_copy, strip_acquisition_times

#: Wall-clock bound of one bad-input run, s.  Generous for two busy cores: the runs take 1-4 s alone.
TIME_BOUND_S = 45.0
#: Most lines a bad input may print on standard error.
MAX_STDERR_LINES = 3
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------
# The study the corpus is made from, and the bad files derived from it
# ---------------------------------------------------------------------------

def _nrrd_parts(path):
    data = open(path, "rb").read()
    end = data.index(b"\n\n") + 2
    return data[:end].decode("ascii"), data[end:]


def _edit_nrrd_header(source, destination, edit):
    header, body = _nrrd_parts(source)
    with open(destination, "wb") as handle:
        handle.write(edit(header).encode("ascii") + body)


def _edit_index_values(values_edit):
    def edit(header):
        match = re.search(r"axis 3 index values:=(.*)\n", header)
        values = match.group(1).split()
        values_edit(values)
        return header.replace(match.group(0), "axis 3 index values:=" + " ".join(values) + "\n")
    return edit


def _repeat_frame_time(values):
    values[5] = values[4]


def _swap_frame_times(values):
    values[5], values[6] = values[6], values[5]


def _shift_origin_mm(shift_mm):
    """A header edit moving the grid ``shift_mm`` along its first (column) axis."""
    def edit(header):
        directions = re.search(r"space directions: \(([^)]*)\)", header).group(1)
        step = np.array([float(v) for v in directions.split(",")])
        match = re.search(r"space origin: \(([^)]*)\)", header)
        origin = np.array([float(v) for v in match.group(1).split(",")]) + shift_mm * step / np.linalg.norm(step)
        return header.replace(match.group(0), "space origin: ({})".format(",".join(repr(float(v)) for v in origin)))
    return edit


def _write_text(path, text):
    with open(path, "w") as handle:
        handle.write(text)
    return str(path)


def _aif_text(times_s, signal, header="time_s,signal", digits=None):
    rows = [header] + ["{},{}".format(round(t, digits) if digits else repr(float(t)), repr(float(s)))
                       for t, s in zip(times_s, signal)]
    return "\n".join(rows) + "\n"


def _mbf_text(n_patients, segment=None):
    rng = np.random.default_rng(1)
    rows = ["patient,segment,reference,test"]
    for patient in range(n_patients):
        for number in range(1, 17):
            reference = rng.uniform(0.8, 3.5)
            rows.append("p{},{},{:.3f},{:.3f}".format(patient, segment or number, reference,
                                                       reference + rng.normal(0, 0.3)))
    return "\n".join(rows) + "\n"


def _aif_pairs_text(n_cases=2):
    times = np.arange(40.0)
    rows = ["case,time_s,reference,test"]
    for case in range(n_cases):
        reference = 100 + 400 * np.exp(-((times - 15 - case) / 4) ** 2)
        rows += ["c{},{},{},{}".format(case, t, r, 0.7 * r + 30) for t, r in zip(times, reference)]
    return "\n".join(rows) + "\n"


def _points_moved_in_plane(phantom, distance_mm):
    """The phantom's RV insertion points moved along the image rows; 100 mm is beyond any myocardium."""
    step = phantom.ijk_to_ras[:3, 0] / np.linalg.norm(phantom.ijk_to_ras[:3, 0])
    return np.asarray(phantom.rv_insertion_ras["anterior"], dtype=float) + distance_mm * step


def _dicom_copy(phantom, folder):
    return write_phantom_dicom(phantom, str(folder), layout="per-slice")


def _dicom_variants(phantom, root, files):
    """DICOM copies of the phantom, each with one fault of issue 16's list."""
    dicom = root / "dicom"
    files.dicom = _dicom_copy(phantom, dicom / "good")
    mixed = _dicom_copy(phantom, dicom / "mixed")
    second_series_copy(mixed, 1, os.path.join(mixed["perfusion"], "rest"))
    untimed = _dicom_copy(phantom, dicom / "untimed")
    edit_images(untimed, strip_acquisition_times)
    tilted = _dicom_copy(phantom, dicom / "tilted")
    edit_images(tilted, lambda d, k, n: setattr(d, "PixelSpacing", ["3.5", "3.5"]), lambda k, n: (k, n) == (1, 4))
    with_seg = _dicom_copy(phantom, dicom / "with_seg")
    shutil.copy(with_seg["segmentation"], os.path.join(with_seg["perfusion"], "seg.dcm"))
    files.dicom_bad = {"mixed": mixed["perfusion"], "untimed": untimed["perfusion"], "tilted": tilted["perfusion"],
                       "with_seg": with_seg["perfusion"]}


def _manifests(files):
    """Bad manifests of a batch: missing columns, duplicate studies, missing files."""
    good = "{},{},{},{}".format(files.perfusion, files.segmentation, files.rv_insertion, "saturated")
    header = "study,perfusion,segmentation,rv_insertion,aif\n"
    _write_text(files.bad / "no_segmentation_column.csv", "study,perfusion\na,{}\n".format(files.perfusion))
    _write_text(files.bad / "duplicate_study.csv", header + "a,{}\nb,{}\na,{}\n".format(good, good, good))
    _write_text(files.bad / "missing_file.csv", header + "a,{}\nb,nowhere.seq.nrrd,{}\n".format(
        good, good.split(",", 1)[1]))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A small phantom as Slicer files, with the bad files of the corpus beside it."""
    root = tmp_path_factory.mktemp("bad_inputs")
    phantom = simulate_phantom(seed=3, n_frames=40, matrix=64, pixel_mm=3.0)
    good = root / "study"
    good.mkdir()
    paths = write_phantom(phantom, good)
    files = SimpleNamespace(root=root, phantom=phantom, **{key: str(value) for key, value in paths.items()})
    bad = root / "bad"
    bad.mkdir()
    files.bad = bad

    segmentation = open(files.segmentation, "rb").read()
    perfusion = open(files.perfusion, "rb").read()
    for size in (1000, 1900):
        (bad / "cut{}.seg.nrrd".format(size)).write_bytes(segmentation[:min(size, len(segmentation) - 64)])
    (bad / "cut.seq.nrrd").write_bytes(perfusion[:len(perfusion) // 2])
    (bad / "empty.seg.nrrd").write_bytes(b"")
    (bad / "noise.seg.nrrd").write_bytes(np.random.default_rng(0).bytes(5000))
    _edit_nrrd_header(files.perfusion, bad / "repeated_time.seq.nrrd", _edit_index_values(_repeat_frame_time))
    _edit_nrrd_header(files.perfusion, bad / "swapped_times.seq.nrrd", _edit_index_values(_swap_frame_times))
    _edit_nrrd_header(files.segmentation, bad / "shifted.seg.nrrd", _shift_origin_mm(24.0))
    _edit_nrrd_header(files.perfusion, bad / "huge.seq.nrrd",
                      lambda header: re.sub(r"sizes: .*\n", "sizes: 100000 100000 3 40\n", header))
    sf.write_volume_sequence(bad / "short.seq.nrrd", phantom.frames[:5], phantom.frame_times_s[:5],
                             phantom.ijk_to_ras)
    many = [("LV blood pool", phantom.lv_blood_mask, (0.8, 0.2, 0.2)),
            ("Myocardium", phantom.myocardium_mask, (0.8, 0.6, 0.4))]
    free = np.argwhere(~(phantom.lv_blood_mask | phantom.myocardium_mask))[:150]
    for number, (k, j, i) in enumerate(free):
        mask = np.zeros(phantom.myocardium_mask.shape, dtype=bool)
        mask[k, j, i] = True
        many.append(("Structure {}".format(number), mask, (0.5, 0.5, 0.5)))
    sf.write_segmentation(bad / "many_segments.seg.nrrd", many, phantom.ijk_to_ras)
    sf.write_markups_points(bad / "far_points.mrk.json", _points_moved_in_plane(phantom, 100.0),
                            phantom.rv_insertion_labels, name=RV_INSERTION_NODE_NAME)
    _write_text(bad / "points.fcsv", "# Markups fiducial file version = 4.11\nnot,a,point\n")
    (bad / "cut.mrk.json").write_bytes(open(files.rv_insertion, "rb").read()[:300])

    times = phantom.frame_times_s
    signal = 100 + 50 * np.exp(-((times - 10) / 3) ** 2)
    _write_text(bad / "time_only.csv", "time_s\n" + "\n".join(repr(float(t)) for t in times) + "\n")
    _write_text(bad / "text_cell.csv", _aif_text(times, signal).replace(repr(float(signal[3])), "high", 1))
    _write_text(bad / "nan.csv", _aif_text(times, signal).replace(repr(float(signal[3])), "nan", 1))
    _write_text(bad / "two_curves.csv", "time_s,a,b\n" + "\n".join("{},{},{}".format(t, s, s) for t, s in
                                                                    zip(times, signal)) + "\n")
    _write_text(bad / "unsorted.csv", _aif_text(times[::-1], signal))
    _write_text(bad / "aif_pairs.csv", _aif_pairs_text())
    _write_text(bad / "aif_pairs_header.csv", _aif_pairs_text().replace("case,", "patient,", 1))
    _write_text(bad / "mbf_segment17.csv", _mbf_text(3, segment=17))
    weights = bad / "damaged.npz"
    from AIAIFLib.network import DEFAULT_WEIGHTS_PATH
    shutil.copy(DEFAULT_WEIGHTS_PATH, weights)
    with open(weights, "r+b") as handle:
        handle.seek(os.path.getsize(weights) // 2)
        handle.write(b"\x00" * 16)
    (bad / "a folder.seg.nrrd").mkdir()
    _dicom_variants(phantom, root, files)
    _manifests(files)
    (bad / "existing").mkdir()
    _write_text(bad / "existing" / "keep.txt", "the user's own file\n")
    _write_text(bad / "exists.csv", "already here\n")
    return files


# ---------------------------------------------------------------------------
# The corpus: (id, arguments, exit code, what standard error must say)
# ---------------------------------------------------------------------------

def _quantify(files, perfusion=None, segmentation=None, *options):
    return ["quantify", perfusion or files.perfusion, segmentation or files.segmentation, "--output-dir", "{out}",
            "--quiet", "--aif", "saturated", "--rv-insertion", files.rv_insertion] + list(options)


def _bad(files, name):
    return str(files.bad / name)


CASES = [
    # phantom
    ("phantom-frames-100000 (row 4)", lambda f: ["phantom", "--output-dir", "{out}", "--frames", "100000"],
     2, r"--frames: expected 20 to 200 frames"),
    ("phantom-frames-3 (row 5)", lambda f: ["phantom", "--output-dir", "{out}", "--frames", "3"],
     2, r"quantify needs at least 20"),
    ("phantom-frames-text", lambda f: ["phantom", "--output-dir", "{out}", "--frames", "many"], 2, r"--frames"),
    ("phantom-field-strength-7", lambda f: ["phantom", "--output-dir", "{out}", "--field-strength", "7"],
     2, r"field strength must be 3 or 1\.5"),
    ("phantom-negative-seed", lambda f: ["phantom", "--output-dir", "{out}", "--seed", "-1"], 2, r"--seed"),
    ("phantom-output-is-a-file", lambda f: ["phantom", "--output-dir", _bad(f, "exists.csv"), "--frames", "20"],
     2, r"is a file, not a directory"),
    ("phantom-output-not-empty", lambda f: ["phantom", "--output-dir", _bad(f, "existing"), "--frames", "20"],
     2, r"not empty.*--overwrite"),
    # quantify: damaged and wrong files
    ("segmentation-cut-at-1000-bytes (row 1)", lambda f: _quantify(f, None, _bad(f, "cut1000.seg.nrrd")),
     2, r"segmentation file .*cut short"),
    ("segmentation-cut-at-1900-bytes (row 1)", lambda f: _quantify(f, None, _bad(f, "cut1900.seg.nrrd")),
     2, r"segmentation file .*cut short"),
    ("perfusion-cut-in-half", lambda f: _quantify(f, _bad(f, "cut.seq.nrrd")), 2, r"perfusion file .*cut short"),
    ("perfusion-header-claims-huge-size", lambda f: _quantify(f, _bad(f, "huge.seq.nrrd")),
     2, r"perfusion file .*bytes of data"),
    ("segmentation-random-bytes", lambda f: _quantify(f, None, _bad(f, "noise.seg.nrrd")), 2, r"not a NRRD file"),
    ("segmentation-empty-file", lambda f: _quantify(f, None, _bad(f, "empty.seg.nrrd")), 2, r"is empty"),
    ("frame-times-repeated (row 2)", lambda f: _quantify(f, _bad(f, "repeated_time.seq.nrrd")),
     2, r"the same time at frames 4 and 5"),
    ("frame-times-swapped (row 3)", lambda f: _quantify(f, _bad(f, "swapped_times.seq.nrrd")),
     2, r"times out of order at frames 5 and 6"),
    ("perfusion-given-as-segmentation (row 6)", lambda f: _quantify(f, None, f.perfusion),
     2, r"float voxel values, so it is an image, not a segmentation"),
    ("segmentation-given-as-perfusion", lambda f: _quantify(f, f.segmentation), 2, r"not a volume sequence"),
    ("perfusion-folder-without-dicom-images (row 7)", lambda f: _quantify(f, str(f.bad)),
     2, r"holds no DICOM MR images \(\d+ other files\); pass the folder of the perfusion series or a \.seq\.nrrd"),
    ("segmentation-is-a-folder (row 7)", lambda f: _quantify(f, None, _bad(f, "a folder.seg.nrrd")),
     2, r"is a folder, not a file"),
    ("perfusion-missing", lambda f: _quantify(f, _bad(f, "nowhere.seq.nrrd")), 2, r"does not exist"),
    ("too-few-frames", lambda f: _quantify(f, _bad(f, "short.seq.nrrd")), 2, r"5 frames but quantification needs"),
    ("field-strength-7 (row 8)",
     lambda f: _quantify(f, None, None, "--field-strength", "7", "--tissue-conversion", "linear"),
     2, r"--field-strength 7 has no T1 defaults .* pass --t1-blood-s or"),
    ("field-strength-7-model-conversion (row 8)",
     lambda f: _quantify(f, None, None, "--field-strength", "7", "--tissue-conversion", "model", "--t1-blood-s", "2"),
     2, r"pass --t1-myocardium-s or"),
    ("aif-csv-time-column-only (row 9)", lambda f: _quantify(f, None, None, "--aif", _bad(f, "time_only.csv")),
     2, r"has only the column time_s and no AIF signal"),
    ("aif-csv-is-a-folder (row 7)", lambda f: _quantify(f, None, None, "--aif", str(f.bad)),
     2, r"is a folder, not a file"),
    ("aif-csv-text-cell", lambda f: _quantify(f, None, None, "--aif", _bad(f, "text_cell.csv")),
     2, r"not a number \('high'\)"),
    ("aif-csv-two-curves", lambda f: _quantify(f, None, None, "--aif", _bad(f, "two_curves.csv")),
     2, r"2 signal columns"),
    ("aif-csv-times-decrease", lambda f: _quantify(f, None, None, "--aif", _bad(f, "unsorted.csv")),
     2, r"increas"),
    ("segmentation-of-another-study (row 13)", lambda f: _quantify(f, None, _bad(f, "shifted.seg.nrrd")),
     2, r"do not enhance like blood.*another study"),
    ("rv-points-of-another-study (row 13)",
     lambda f: _quantify(f)[:-1] + [_bad(f, "far_points.mrk.json")], 2, r"mm from the myocardium.*another study"),
    ("rv-points-garbage-fcsv", lambda f: _quantify(f)[:-1] + [_bad(f, "points.fcsv")], 2, r"numeric coordinates"),
    ("rv-points-cut-json", lambda f: _quantify(f)[:-1] + [_bad(f, "cut.mrk.json")], 2, r"could not read"),
    ("missing-segment-among-many", lambda f: _quantify(f, None, _bad(f, "many_segments.seg.nrrd"),
                                                       "--lv-segment", "LV cavity"),
     2, r"no segment named 'LV cavity' .*and 148 more"),
    ("frame-interval-for-timed-series", lambda f: _quantify(f, None, None, "--frame-interval", "0.8"),
     2, r"already has frame times"),
    ("threshold-negative", lambda f: _quantify(f, None, None, "--threshold", "-1"), 2, r"--threshold"),
    ("slice-levels-unknown", lambda f: _quantify(f, None, None, "--slice-levels", "top,middle"),
     2, r"--slice-levels"),
    ("output-is-a-file", lambda f: _quantify(f)[:4] + [_bad(f, "exists.csv")] + _quantify(f)[5:],
     2, r"is a file, not a directory"),
    # quantify: DICOM (issue 16)
    ("dicom-mixed-series", lambda f: _quantify(f, f.dicom_bad["mixed"], f.dicom["segmentation"]),
     2, r"mixes series: .* both image the slice at"),
    ("dicom-missing-timing", lambda f: _quantify(f, f.dicom_bad["untimed"], f.dicom["segmentation"]),
     2, r"no usable frame times"),
    ("dicom-inconsistent-geometry", lambda f: _quantify(f, f.dicom_bad["tilted"], f.dicom["segmentation"]),
     2, r"inconsistent geometry: .* different pixel sizes"),
    ("dicom-non-mr-object", lambda f: _quantify(f, f.dicom_bad["with_seg"], f.dicom["segmentation"]),
     2, r"holds a SEG object that is not an MR image"),
    ("dicom-image-given-as-segmentation", lambda f: _quantify(f, f.dicom["perfusion"], f.dicom["images"][0][0]),
     2, r"is a MR object, not a segmentation"),
    ("dicom-output-of-a-nrrd-series", lambda f: _quantify(f, None, None, "--dicom-output"),
     2, r"is not a DICOM folder; pass the DICOM folder or leave out --dicom-output"),
    # batch: bad manifests, refused before anything runs (issue 16)
    ("batch-manifest-missing-column", lambda f: ["batch", _bad(f, "no_segmentation_column.csv"), "--output-dir",
                                                 "{out}"], 2, r"has no column segmentation"),
    ("batch-manifest-duplicate-study", lambda f: ["batch", _bad(f, "duplicate_study.csv"), "--output-dir", "{out}"],
     2, r"names the study 'a' twice \(rows 2 and 4\)"),
    ("batch-manifest-missing-file", lambda f: ["batch", _bad(f, "missing_file.csv"), "--output-dir", "{out}"],
     2, r"names the perfusion .*nowhere\.seq\.nrrd in row 3, which does not exist"),
    ("batch-manifest-missing", lambda f: ["batch", _bad(f, "none.csv"), "--output-dir", "{out}"],
     2, r"manifest .*none\.csv does not exist"),
    # correct
    ("correct-time-column-only (row 9)",
     lambda f: ["correct", _bad(f, "time_only.csv"), "--output", "{out}.csv"], 2, r"has only the column time_s"),
    ("correct-input-is-a-folder (row 7)", lambda f: ["correct", str(f.bad), "--output", "{out}.csv"],
     2, r"is a folder, not a file"),
    ("correct-nan", lambda f: ["correct", _bad(f, "nan.csv"), "--output", "{out}.csv"], 2, r"NaN|finite"),
    ("correct-output-is-input", lambda f: ["correct", _bad(f, "text_cell.csv"), "--output",
                                           _bad(f, "text_cell.csv"), "--overwrite"], 2, r"output file is the input"),
    ("correct-output-exists", lambda f: ["correct", _bad(f, "two_curves.csv"), "--output", _bad(f, "exists.csv")],
     2, r"already exists"),
    ("correct-damaged-weights", lambda f: ["correct", _bad(f, "two_curves.csv"), "--output", "{out}.csv",
                                           "--weights", _bad(f, "damaged.npz")], 2, r"SHA-256|damaged|checksum"),
    # evaluate
    ("evaluate-wrong-header", lambda f: ["evaluate", "--aif-csv", _bad(f, "aif_pairs_header.csv"),
                                         "--output-dir", "{out}"], 2, r"header"),
    ("evaluate-segment-17", lambda f: ["evaluate", "--aif-csv", _bad(f, "aif_pairs.csv"), "--mbf-csv",
                                       _bad(f, "mbf_segment17.csv"), "--output-dir", "{out}"], 2, r"segment"),
    ("evaluate-csv-is-a-folder (row 7)", lambda f: ["evaluate", "--aif-csv", str(f.bad), "--output-dir", "{out}"],
     2, r"folder|directory"),
    ("evaluate-simulated-with-mbf-csv", lambda f: ["evaluate", "--simulated", "--mbf-csv",
                                                   _bad(f, "mbf_segment17.csv"), "--output-dir", "{out}"],
     2, r"--mbf-csv cannot be combined with --simulated"),
]


def _tree_hashes(*folders):
    """SHA-256 of every file under the folders, by path."""
    hashes = {}
    for folder in folders:
        for directory, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(directory, name)
                with open(path, "rb") as handle:
                    hashes[path] = hashlib.sha256(handle.read()).hexdigest()
    return hashes


def _command(arguments):
    return [sys.executable, "-m", "AIAIFLib"] + arguments


def _run_case(case, files):
    name, build, _, _ = case
    work = files.root / "runs" / re.sub(r"[^A-Za-z0-9]+", "_", name)
    work.mkdir(parents=True)
    arguments = [argument.replace("{out}", str(work / "out")) for argument in build(files)]
    started = time.monotonic()
    completed = subprocess.run(_command(arguments), capture_output=True, text=True, cwd=str(work),
                               timeout=4 * TIME_BOUND_S)
    return SimpleNamespace(code=completed.returncode, stdout=completed.stdout, stderr=completed.stderr,
                           seconds=time.monotonic() - started, left=sorted(os.listdir(work)), work=work)


@pytest.fixture(scope="module")
def outcomes(study):
    """Every case run once, two at a time; the user's files hashed before and after all runs."""
    before = _tree_hashes(study.root / "study", study.bad, study.root / "dicom")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip([case[0] for case in CASES], pool.map(lambda case: _run_case(case, study), CASES)))
    return results, before, _tree_hashes(study.root / "study", study.bad, study.root / "dicom")


def assert_clean_refusal(outcome, code, pattern):
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert outcome.code == code, (outcome.code, outcome.stderr[-2000:])
    assert 1 <= len(lines) <= MAX_STDERR_LINES, outcome.stderr[-2000:]
    assert "Traceback" not in outcome.stderr + outcome.stdout
    assert len(outcome.stderr) < 600, outcome.stderr[:2000]  # one sentence, never a dump of the input
    assert re.search(pattern, outcome.stderr), outcome.stderr
    assert outcome.seconds < TIME_BOUND_S


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input_ends_with_one_sentence_and_leaves_nothing(case, outcomes):
    results, before, after = outcomes
    outcome = results[case[0]]
    assert_clean_refusal(outcome, case[2], case[3])
    assert outcome.left == [], outcome.left  # no output, no staging folder, no partial file
    assert after == before  # the user's files are untouched


def test_the_corpus_covers_every_command_and_row_of_the_issue():
    names = " ".join(case[0] for case in CASES)
    assert len(CASES) >= 30
    for command in ("phantom-", "correct-", "evaluate-", "segmentation-", "perfusion-", "aif-csv-", "dicom-",
                    "batch-"):
        assert command in names
    rows = {int(number) for number in re.findall(r"\(row (\d+)\)", names)}
    assert rows == {1, 2, 3, 4, 5, 6, 7, 8, 9, 13}  # 10, 11, 12, 14 and 15 are tested below


# ---------------------------------------------------------------------------
# Rows whose input is valid but was mishandled
# ---------------------------------------------------------------------------

def _wait_for(condition, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_ctrl_c_during_quantify_prints_one_line_and_leaves_nothing(study, tmp_path):
    # row 12
    before = _tree_hashes(study.root / "study")
    arguments = [argument.replace("{out}", str(tmp_path / "out")) for argument in _quantify(study)]
    process = subprocess.Popen(_command(arguments), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=str(tmp_path))
    try:
        assert _wait_for(lambda: any(".partial-" in name for name in os.listdir(tmp_path)), 60)
        time.sleep(0.3)  # into reading the files or the fit
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    outcome = SimpleNamespace(code=process.returncode, stdout=stdout, stderr=stderr, seconds=0.0)
    assert_clean_refusal(outcome, 130, r"^quantify: interrupted; nothing was written\.$")
    assert os.listdir(tmp_path) == []
    assert _tree_hashes(study.root / "study") == before


def _run(arguments, cwd):
    return subprocess.run(_command(arguments), capture_output=True, text=True, cwd=str(cwd), timeout=300)


def test_external_aif_with_times_rounded_to_a_tenth_of_a_millisecond_does_not_warn(study, tmp_path):
    # row 10: the AIF's first and last times differ from the frames' by at most 0.05 ms
    phantom = study.phantom
    signal = phantom.frames[:, phantom.lv_blood_mask].mean(axis=1)  # the saturated blood signal of the images
    aif = _write_text(tmp_path / "aif.csv", _aif_text(phantom.frame_times_s, signal, digits=4))
    arguments = [a.replace("{out}", str(tmp_path / "out")) for a in _quantify(study)]
    arguments[arguments.index("saturated")] = aif
    completed = _run(arguments, tmp_path)
    assert completed.returncode == 0, completed.stderr
    summary = json.load(open(tmp_path / "out" / "summary.json"))
    assert not any("outside the external AIF's time range" in text for text in summary["warnings"])


def test_progress_bar_says_done_only_at_the_end_and_shows_no_panel_steps(study, tmp_path):
    # row 14: the bar is drawn only on a terminal, so standard error is a pseudo-terminal here
    import pty

    leader, follower = pty.openpty()
    arguments = [a.replace("{out}", str(tmp_path / "out")) for a in _quantify(study) if a != "--quiet"]
    process = subprocess.Popen(_command(arguments), stdout=subprocess.PIPE, stderr=follower, cwd=str(tmp_path))
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pseudo-terminal closes when the process ends
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=120)
    os.close(leader)
    assert process.returncode == 0
    states = [part.strip() for part in b"".join(chunks).decode().replace("\n", "\r").split("\r") if part.strip()]
    percents = [float(re.search(r"\]\s+(\d+)%", state).group(1)) for state in states]
    assert percents == sorted(percents) and percents[-1] == 100
    assert [state for state in states if state.endswith("Done")] == [states[-1]]
    assert not any("Showing" in state for state in states)


@pytest.mark.parametrize("n_patients", [1, 2])
def test_evaluate_with_one_or_two_patients_reports_no_spread_and_a_caveat(study, tmp_path, n_patients):
    # row 15
    mbf = _write_text(tmp_path / "mbf.csv", _mbf_text(n_patients))
    completed = _run(["evaluate", "--aif-csv", _bad(study, "aif_pairs.csv"), "--mbf-csv", mbf, "--output-dir",
                      str(tmp_path / "out")], tmp_path)
    assert completed.returncode == 0, completed.stderr
    text = completed.stdout
    assert "{} patient{},".format(n_patients, "" if n_patients == 1 else "s") in text
    assert "AIF curves (2 pairs)" in text
    assert "nan" not in text.lower()
    assert "R^2 = 1.00" not in text
    assert "limits n/a" in text and "Caution: with only {} patient".format(n_patients) in text


@pytest.mark.slow
def test_demo_summary_names_the_files_where_they_end_up(tmp_path):
    # row 11 (slow: the demo quantifies the full-size phantom twice)
    completed = _run(["demo", "--output-dir", str(tmp_path / "demo")], tmp_path)
    assert completed.returncode == 0, completed.stderr
    for folder in ("quantification_ai", "quantification_saturated"):
        text = open(tmp_path / "demo" / folder / "summary.json").read()
        assert ".partial-" not in text
        assert str(tmp_path / "demo" / "phantom" / PHANTOM_FILES["perfusion"]) in text


# ---------------------------------------------------------------------------
# The same bad nodes for the Slicer module's Logic: AIAIFInputError, scene unchanged
# ---------------------------------------------------------------------------

@pytest.fixture
def logic(monkeypatch):
    """The Slicer module's Logic, imported under slicer-core with a fresh ``slicer.mrmlScene``."""
    import slicer
    import slicer_doubles

    monkeypatch.setattr(slicer, "mrmlScene", slicer.vtkMRMLScene(), raising=False)
    return slicer_doubles.import_module_file(monkeypatch, os.path.join(REPOSITORY, "AIAIF")).AIAIFLogic()


def _table_node(columns):
    import slicer
    import vtk

    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "external AIF")
    for name, values in columns.items():
        column = vtk.vtkDoubleArray()
        column.SetName(name)
        for value in values:
            column.InsertNextValue(float(value))
        table.AddColumn(column)
    return table


LOGIC_CASES = {
    "segmentation of another study (row 13)": (
        {"segmentation": "shifted.seg.nrrd"}, {}, r"do not enhance like blood"),
    "RV points of another study (row 13)": ({"rv_insertion": "far_points.mrk.json"}, {}, r"mm from the myocardium"),
    "too few frames": ({"perfusion": "short.seq.nrrd"}, {}, r"5 frames but quantification needs"),
    "missing segment among many": ({"segmentation": "many_segments.seg.nrrd"}, {"bloodPoolSegmentId": "LV cavity"},
                                   r"no segment with ID 'LV cavity' .*and 148 more"),
    "frame interval for a timed series": ({}, {"frameInterval": 0.8}, r"already has frame times"),
    "external AIF table with a time column only (row 9)": ({}, {"aifMode": "external", "external": {"time_s": [0, 1]}},
                                                           r"only the column time_s and no AIF signal"),
    "sequence given as the segmentation (row 6)": ({}, {"segmentation_node": "sequence"},
                                                   r"must be a vtkMRMLSegmentationNode"),
}


@pytest.mark.parametrize("case", sorted(LOGIC_CASES))
def test_bad_nodes_raise_one_sentence_and_leave_the_scene_as_it_was(case, study, logic):
    import slicer
    from AIAIFLib import mrml
    from AIAIFLib.errors import AIAIFInputError
    from scene_helpers import scene_state

    files, options, pattern = LOGIC_CASES[case]
    paths = {key: str(study.bad / files[key]) if key in files else getattr(study, key)
             for key in ("perfusion", "segmentation", "rv_insertion")}
    nodes = mrml.load_study_files(slicer.mrmlScene, paths["perfusion"], paths["segmentation"], paths["rv_insertion"])
    options = dict(options)
    if "external" in options:
        options["externalAifTableNode"] = _table_node(options.pop("external"))
    segmentation = nodes.sequence if options.pop("segmentation_node", None) == "sequence" else nodes.segmentation
    before = scene_state(slicer.mrmlScene)
    with pytest.raises(AIAIFInputError, match=pattern) as error:
        logic.process(nodes.sequence, segmentation, nodes.rv_insertion, aifMode=options.pop("aifMode", "saturated"),
                      **options)
    message = str(error.value)
    assert message.endswith(".") and ";" in message and "\n" not in message and len(message) < 600
    assert scene_state(slicer.mrmlScene) == before

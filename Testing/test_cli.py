"""Command line: what each command writes, and how bad input ends (exit 2, one sentence, nothing left behind)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from AIAIFLib import cli
from AIAIFLib.simulation import PHANTOM_FILES

#: A small phantom keeps the command tests fast; the full-size one runs in the demo.
SMALL_PHANTOM = ["--frames", "22"]


def run(argv, capsys):
    """Run ``python -m AIAIFLib`` in-process; return (exit code, stdout, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse exits on bad arguments
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def leftovers(parent):
    """Staging directories the command may have left in ``parent``."""
    return [name for name in os.listdir(parent) if ".partial-" in name]


def assert_one_sentence_error(code, err):
    assert code == cli.EXIT_USAGE
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error:" in lines[0] and "Traceback" not in err


# --- phantom ---------------------------------------------------------------------------

def test_phantom_writes_the_slicer_files_and_the_ground_truth(tmp_path, capsys):
    out = tmp_path / "study"
    code, stdout, _ = run(["phantom", "--output-dir", str(out), "--seed", "4", "--field-strength", "1.5",
                           "--ischemic", "RCA"] + SMALL_PHANTOM, capsys)
    assert code == 0
    assert sorted(os.listdir(out)) == sorted(PHANTOM_FILES.values())
    assert "1.5 T" in stdout and "RCA" in stdout
    with open(out / PHANTOM_FILES["truth_description"]) as handle:
        description = json.load(handle)
    assert description["acquisition"]["field_strength_t"] == 1.5
    assert description["acquisition"]["ischemic_territory"] == "RCA"
    assert description["acquisition"]["seed"] == 4
    assert description["acquisition"]["tissue_model"] == "capillary-transit"
    assert "tissue_capillary_transit_cv" in np.load(out / PHANTOM_FILES["truth_arrays"]).files
    rca = [row["mbf_true_ml_min_g"] for row in description["segments"] if row["territory"] == "RCA"]
    others = [row["mbf_true_ml_min_g"] for row in description["segments"] if row["territory"] != "RCA"]
    assert max(rca) < 1.4 < min(others)
    assert leftovers(tmp_path) == []


def test_phantom_tissue_model_can_be_chosen(tmp_path, capsys):
    out = tmp_path / "study"
    assert run(["phantom", "--output-dir", str(out), "--tissue-model", "two-compartment"] + SMALL_PHANTOM,
               capsys)[0] == 0
    description = json.loads((out / PHANTOM_FILES["truth_description"]).read_text())
    assert description["acquisition"]["tissue_model"] == "two-compartment"
    assert "tissue_capillary_transit_cv" not in np.load(out / PHANTOM_FILES["truth_arrays"]).files
    code, _, err = run(["phantom", "--output-dir", str(tmp_path / "x"), "--tissue-model", "fermi"], capsys)
    assert_one_sentence_error(code, err)


def test_phantom_is_reproducible_from_the_seed(tmp_path, capsys):
    truths = []
    for name, seed in (("a", "9"), ("b", "9"), ("c", "10")):
        assert run(["phantom", "--output-dir", str(tmp_path / name), "--seed", seed] + SMALL_PHANTOM, capsys)[0] == 0
        truths.append(np.load(tmp_path / name / PHANTOM_FILES["truth_arrays"]))
    np.testing.assert_array_equal(truths[0]["tissue_mM"], truths[1]["tissue_mM"])
    assert not np.array_equal(truths[0]["aif_mM"], truths[2]["aif_mM"])


@pytest.mark.parametrize("arguments, phrase", [
    (["--field-strength", "2"], "field strength must be 3 or 1.5"),
    (["--seed", "-1"], "non-negative integer"),
    (["--ischemic", "LM"], "invalid choice"),
    (["--frames", "0"], "expected 20 to 200 frames"),
])
def test_phantom_rejects_bad_arguments_without_creating_anything(tmp_path, capsys, arguments, phrase):
    out = tmp_path / "new" / "study"
    code, _, err = run(["phantom", "--output-dir", str(out)] + arguments, capsys)
    assert_one_sentence_error(code, err)
    assert phrase in err
    assert os.listdir(tmp_path) == []


def test_phantom_refuses_a_non_empty_directory_and_keeps_its_files(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run(["phantom", "--output-dir", str(out)] + SMALL_PHANTOM, capsys)
    assert_one_sentence_error(code, err)
    assert "--overwrite" in err
    assert os.listdir(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert leftovers(tmp_path) == []


def test_overwrite_replaces_written_files_and_keeps_the_others(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / PHANTOM_FILES["truth_description"]).write_text("stale")
    assert run(["phantom", "--output-dir", str(out), "--overwrite"] + SMALL_PHANTOM, capsys)[0] == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / PHANTOM_FILES["truth_description"]).read_text())["files"] == PHANTOM_FILES


def test_output_path_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "study"
    target.write_text("a file")
    code, _, err = run(["phantom", "--output-dir", str(target)] + SMALL_PHANTOM, capsys)
    assert_one_sentence_error(code, err)
    assert "is a file" in err and target.read_text() == "a file"


# --- demo ----------------------------------------------------------------------------------

def test_demo_writes_the_phantom_and_the_saturation_figure(tmp_path, capsys):
    import matplotlib.image

    out = tmp_path / "demo_output"
    code, stdout, _ = run(["demo", "--output-dir", str(out)], capsys)
    assert code == 0
    assert sorted(os.listdir(out)) == ["aif_saturation.png", "phantom", "quantification_ai",
                                       "quantification_saturated"]
    for folder in ("quantification_ai", "quantification_saturated"):
        assert sorted(os.listdir(out / folder)) == ["aif.csv", "mbf.nrrd", "report.png", "segments.csv",
                                                    "summary.json"]
    assert sorted(os.listdir(out / "phantom")) == sorted(PHANTOM_FILES.values())
    image = matplotlib.image.imread(str(out / "aif_saturation.png"))
    assert image.shape[0] > 300 and image.std() > 0.01
    for territory in ("LAD", "RCA", "LCX"):
        assert territory in stdout
    # The README runs the demo with --overwrite so that it can be repeated.
    assert run(["demo", "--output-dir", str(out), "--overwrite"], capsys)[0] == 0


# --- failure inside a command ----------------------------------------------------------------

def test_a_failing_command_leaves_no_partial_output_directory(tmp_path, capsys):
    out = tmp_path / "deep" / "results"
    code, _, err = run(["evaluate", "--aif-csv", str(tmp_path / "missing.csv"), "--output-dir", str(out)], capsys)
    assert_one_sentence_error(code, err)
    assert "missing.csv" in err
    assert os.listdir(tmp_path) == []  # neither the directory nor its new parent, nor a staging folder


def test_evaluate_with_mbf_csv_and_simulated_is_refused(tmp_path, capsys):
    code, _, err = run(["evaluate", "--simulated", "--mbf-csv", "x.csv", "--output-dir", str(tmp_path / "e")],
                       capsys)
    assert_one_sentence_error(code, err)
    assert not (tmp_path / "e").exists()


def test_unknown_command_and_missing_output_dir(tmp_path, capsys):
    code, _, err = run(["quantise"], capsys)
    assert_one_sentence_error(code, err)
    code, _, err = run(["phantom"], capsys)
    assert_one_sentence_error(code, err)
    assert "--output-dir" in err


# --- evaluate ------------------------------------------------------------------------------

def test_evaluate_on_simulated_data_writes_the_table_and_figures(tmp_path, capsys):
    out = tmp_path / "evaluation"
    code, stdout, _ = run(["evaluate", "--simulated", "--n-curves", "30", "--n-phantoms", "2", "--seed", "3",
                           "--output-dir", str(out)], capsys)
    assert code == 0
    assert sorted(os.listdir(out)) == ["aif_metrics.png", "example_aifs.png", "mbf_agreement.png", "results.txt"]
    table = (out / "results.txt").read_text()
    assert table.strip() in stdout
    for phrase in ("NMSE", "FWHM", "Bland", "True AIF", "AI-AIF"):
        assert phrase in table
    code, stdout, _ = run(["evaluate", "--simulated", "--test", "saturated", "--n-curves", "30", "--n-phantoms", "1",
                           "--output-dir", str(tmp_path / "saturated")], capsys)
    assert code == 0 and "Saturated AIF" in stdout


def test_evaluate_reads_user_csv_files(tmp_path, capsys):
    times = np.arange(40) * 0.9
    rows = ["case,time_s,reference,test"]
    for case in range(6):
        reference = np.exp(-0.5 * ((times - 10.0 - case) / 2.5) ** 2) + 0.1
        test = reference * (1.0 + 0.02 * np.sin(times + case))
        rows += ["{},{!r},{!r},{!r}".format(case, float(t), float(r), float(s))
                 for t, r, s in zip(times, reference, test)]
    (tmp_path / "aif.csv").write_text("\n".join(rows) + "\n")
    rows = ["patient,segment,reference,test"]
    rng = np.random.default_rng(1)
    for patient in range(4):
        for segment in range(1, 17):
            value = rng.uniform(0.8, 3.5)
            rows.append("P{},{},{:.4f},{:.4f}".format(patient, segment, value, value + rng.normal(0.0, 0.1)))
    (tmp_path / "mbf.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "results"
    code, stdout, _ = run(["evaluate", "--aif-csv", str(tmp_path / "aif.csv"), "--mbf-csv", str(tmp_path / "mbf.csv"),
                           "--output-dir", str(out)], capsys)
    assert code == 0
    assert "Reference" in stdout and "NMSE" in stdout
    assert (out / "mbf_agreement.png").stat().st_size > 0


# --- the real entry point --------------------------------------------------------------------

def test_python_dash_m_exits_2_with_one_sentence_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "AIAIFLib", "phantom", "--output-dir", str(tmp_path / "x"),
                             "--field-strength", "7"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "field strength must be 3 or 1.5" in result.stderr
    assert not (tmp_path / "x").exists()


def test_output_directory_gets_ordinary_permissions(tmp_path, capsys):
    out = tmp_path / "study"
    assert run(["phantom", "--output-dir", str(out)] + SMALL_PHANTOM, capsys)[0] == 0
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~umask


# --- quantify -------------------------------------------------------------------------------

QUANTIFY_FRAMES = 36


@pytest.fixture(scope="module")
def quantify_phantom(tmp_path_factory):
    """A small LAD-ischaemic phantom written as Slicer files, with its object."""
    from AIAIFLib.simulation import simulate_phantom, write_phantom

    phantom = simulate_phantom(seed=11, ischemic="LAD", n_frames=QUANTIFY_FRAMES)
    directory = tmp_path_factory.mktemp("quantify_phantom")
    write_phantom(phantom, str(directory))
    return phantom, directory


def quantify_arguments(directory, out, *extra):
    return (["quantify", str(directory / PHANTOM_FILES["perfusion"]), str(directory / PHANTOM_FILES["segmentation"]),
             "--output-dir", str(out), "--rv-insertion", str(directory / PHANTOM_FILES["rv_insertion"])]
            + list(extra))


def test_quantify_writes_the_map_tables_summary_and_report(tmp_path, capsys, quantify_phantom):
    import nrrd

    phantom, directory = quantify_phantom
    out = tmp_path / "q"
    code, stdout, _ = run(quantify_arguments(directory, out, "--aif", "saturated"), capsys)
    assert code == 0, stdout
    assert sorted(os.listdir(out)) == ["aif.csv", "mbf.nrrd", "report.png", "segments.csv", "summary.json"]
    mbf, header = nrrd.read(str(out / "mbf.nrrd"))
    n_myocardium = phantom.myocardium_mask.sum()
    assert 0.99 * n_myocardium <= np.isfinite(mbf).sum() <= n_myocardium  # failed fits are NaN, the rest too
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"]["aif_mode"] == "saturated"
    assert summary["inputs"]["perfusion_file"].endswith(PHANTOM_FILES["perfusion"])
    for territory in ("LAD", "RCA", "LCX"):
        assert territory in stdout
    assert leftovers(tmp_path) == []


def test_quantify_with_an_external_aif_file_finds_the_ischaemic_territory(tmp_path, capsys, quantify_phantom):
    from AIAIFLib.aif import write_aif_csv

    phantom, directory = quantify_phantom
    aif_path = tmp_path / "true_aif.csv"
    write_aif_csv(str(aif_path), phantom.frame_times_s, ["signal"], phantom.truth["lv_blood_reference_signal"][None])
    out = tmp_path / "q"
    code, stdout, _ = run(quantify_arguments(directory, out, "--aif", str(aif_path), "--tissue-conversion", "model"),
                          capsys)
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"]["ischemic_territories"] == ["LAD"]
    assert summary["parameters"]["tissue_conversion"] == "model"


def test_quantify_without_rv_points_orients_the_segments_from_the_images(tmp_path, capsys, quantify_phantom):
    phantom, directory = quantify_phantom
    out = tmp_path / "q"
    arguments = quantify_arguments(directory, out, "--aif", "saturated")
    arguments = arguments[:arguments.index("--rv-insertion")] + arguments[arguments.index("--rv-insertion") + 2:]
    code, stdout, err = run(arguments, capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    rules = summary["segmentation"]["rules_used"]
    assert rules["septum_side"]["rule"] == "image RV"
    assert [record["insertion_point"]["rule"] for record in rules["slices"]] == ["image RV"] * 3
    assert summary["inputs"]["n_rv_insertion_points"] == 0 and "rv_insertion_file" not in summary["inputs"]


def _write_variant(tmp_path, phantom, segments=None, frames=None, times=None, rv_points=None):
    """Phantom files with one thing changed; returns the directory."""
    from AIAIFLib import slicer_files

    directory = tmp_path / "variant"
    directory.mkdir()
    frames = phantom.frames if frames is None else frames
    times = phantom.frame_times_s if times is None else times
    slicer_files.write_volume_sequence(str(directory / PHANTOM_FILES["perfusion"]), frames, times, phantom.ijk_to_ras)
    if segments is None:
        segments = [("LV blood pool", phantom.lv_blood_mask, (1, 0, 0)),
                    ("Myocardium", phantom.myocardium_mask, (1, 1, 0))]
    slicer_files.write_segmentation(str(directory / PHANTOM_FILES["segmentation"]), segments, phantom.ijk_to_ras)
    points = phantom.rv_insertion_ras["anterior"] if rv_points is None else rv_points
    slicer_files.write_markups_points(str(directory / PHANTOM_FILES["rv_insertion"]), points,
                                      list(phantom.rv_insertion_labels))
    return directory


@pytest.mark.parametrize("variant, extra, phrase", [
    (lambda p: dict(segments=[("LV cavity", p.lv_blood_mask, (1, 0, 0)), ("Myocardium", p.myocardium_mask, (1, 1, 0))]),
     [], "LV cavity"),
    (lambda p: dict(frames=p.frames[:15], times=p.frame_times_s[:15]), [], "20"),
    (lambda p: dict(rv_points=p.rv_insertion_ras["anterior"] + np.array([0.0, 0.0, 500.0])), [], "outside"),
    (lambda p: {}, ["--field-strength", "7"], "T1"),
    (lambda p: {}, ["--slice-levels", "basal,mid"], "slice"),
])
def test_quantify_bad_input_is_one_sentence_and_leaves_nothing(tmp_path, capsys, quantify_phantom, variant, extra,
                                                                phrase):
    phantom, _ = quantify_phantom
    directory = _write_variant(tmp_path, phantom, **variant(phantom))
    out = tmp_path / "q"
    code, _, err = run(quantify_arguments(directory, out, "--aif", "saturated", *extra), capsys)
    assert_one_sentence_error(code, err)
    assert phrase in err
    assert not out.exists() and leftovers(tmp_path) == []


# --- correct --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saturated_aif_csv(tmp_path_factory):
    """Three simulated saturated AIFs (70 frames) in the correct command's CSV format, with their references."""
    from AIAIFLib.aif import write_aif_csv
    from AIAIFLib.simulation import simulate_aif_pairs

    pairs = simulate_aif_pairs(3, n_frames=70, seed=31, field_strength_t=3.0)
    times = pairs.times_s[0]
    # One shared time column: resample curves 2 and 3 onto curve 1's frame times.
    curves = np.array([np.interp(times, t, s) for t, s in zip(pairs.times_s, pairs.saturated)])
    path = tmp_path_factory.mktemp("correct") / "saturated.csv"
    write_aif_csv(str(path), times, ["case a", "case b", "case c"], curves)
    return path, times, curves


def test_correct_replaces_each_curve_by_the_unsaturated_aif(tmp_path, capsys, saturated_aif_csv):
    from AIAIFLib.aif import detect_arrival_index, read_aif_csv

    path, times, curves = saturated_aif_csv
    out = tmp_path / "corrected.csv"
    code, stdout, _ = run(["correct", str(path), "--output", str(out)], capsys)
    assert code == 0 and "3 AIF curves" in stdout
    assert out.read_text().splitlines()[0] == path.read_text().splitlines()[0]
    out_times, names, corrected = read_aif_csv(str(out))
    np.testing.assert_array_equal(out_times, times)
    assert names == ["case a", "case b", "case c"]
    # The input's pre-contrast level (frames before arrival) is kept.
    arrival = detect_arrival_index(times, curves)
    baseline = np.array([curve[:n].mean() for curve, n in zip(curves, arrival)])
    np.testing.assert_allclose([curve[:n].mean() for curve, n in zip(corrected, arrival)], baseline, rtol=1e-9)
    # Correction undoes saturation: the enhancement at the peak grows well beyond the saturated one.
    assert np.all((corrected.max(axis=1) - baseline) > 1.5 * (curves.max(axis=1) - baseline))
    assert oct(os.stat(out).st_mode & 0o777) != oct(0o600)


def _corrupted_weights(tmp_path):
    from AIAIFLib import network

    weights = tmp_path / "weights.npz"
    data = bytearray(open(network.DEFAULT_WEIGHTS_PATH, "rb").read())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    (tmp_path / "weights.sha256").write_text(open(network.DEFAULT_CHECKSUM_PATH).read())
    return weights


@pytest.mark.parametrize("content, extra, phrase", [
    ("time_s,a\n" + "".join("{},{}\n".format(t, "nan" if t == 5 else 1 + (t > 8)) for t in range(30)), [], "NaN"),
    ("time_s,a\n" + "".join("{},{}\n".format(t, 1 + (t > 4)) for t in range(12)), [], "20"),
    ("time_s,a\n" + "".join("{},{}\n".format(29 - t, 1 + (t > 4)) for t in range(30)), [], "increas"),
    ("time_s,a\n" + "".join("{},1.0\n".format(t) for t in range(30)), [], "arrival"),
    ("seconds,a\n" + "".join("{},{}\n".format(t, 1 + (t > 4)) for t in range(30)), [], "time_s"),
    (None, ["--weights", "missing.npz"], "missing.npz"),
    (None, ["--weights", "CORRUPT"], "damaged"),
])
def test_correct_bad_input_is_one_sentence_and_writes_nothing(tmp_path, capsys, saturated_aif_csv, content, extra,
                                                              phrase):
    path = saturated_aif_csv[0]
    if content is not None:
        path = tmp_path / "input.csv"
        path.write_text(content)
    extra = [str(_corrupted_weights(tmp_path)) if item == "CORRUPT" else
             str(tmp_path / item) if item.endswith(".npz") else item for item in extra]
    out = tmp_path / "out.csv"
    code, _, err = run(["correct", str(path), "--output", str(out)] + extra, capsys)
    assert_one_sentence_error(code, err)
    assert phrase.lower() in err.lower()
    assert not out.exists() and [name for name in os.listdir(tmp_path) if "partial" in name] == []


def test_correct_keeps_an_existing_output_unless_overwrite(tmp_path, capsys, saturated_aif_csv):
    out = tmp_path / "out.csv"
    out.write_text("mine")
    code, _, err = run(["correct", str(saturated_aif_csv[0]), "--output", str(out)], capsys)
    assert_one_sentence_error(code, err)
    assert out.read_text() == "mine"
    assert run(["correct", str(saturated_aif_csv[0]), "--output", str(out), "--overwrite"], capsys)[0] == 0
    assert out.read_text().startswith("time_s,")


# --- options as the parser spells them; what Ctrl-C and the demo leave --------------------------------

def test_field_strength_help_and_behaviour_agree(tmp_path, capsys, quantify_phantom):
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["quantify"].format_help()
    assert "{3.0,1.5}" not in help_text and "--t1-blood-s" in help_text and "--t1-myocardium-s" in help_text
    _, directory = quantify_phantom
    code, _, err = run(quantify_arguments(directory, tmp_path / "a", "--field-strength", "7"), capsys)
    assert_one_sentence_error(code, err)
    assert "pass --t1-blood-s or use --field-strength 3 or 1.5" in err
    options = [option for action in cli.build_parser()._subparsers._group_actions[0].choices["quantify"]._actions
               for option in action.option_strings]
    assert all(name in options for name in re.findall(r"--[a-z0-9-]+", err))
    code, _, err = run(quantify_arguments(directory, tmp_path / "b", "--field-strength", "2.9", "--t1-blood-s",
                                          "1.7", "--aif", "saturated", "--quiet"), capsys)
    assert code == 0, err
    assert json.load(open(tmp_path / "b" / "summary.json"))["parameters"]["field_strength_t"] == 2.9


def test_every_option_a_library_message_names_exists(capsys):
    parser = cli.build_parser()
    options = {option for command in parser._subparsers._group_actions[0].choices.values()
               for action in command._actions for option in action.option_strings}
    library = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__))), "AIAIFLib")
    named = set()
    for directory, _, names in os.walk(library):
        for name in names:
            if name.endswith(".py"):
                named.update(re.findall(r"[(\s'`](--[a-z][a-z0-9-]+)", open(os.path.join(directory, name)).read()))
    assert named and named - {"--help"} <= options, sorted(named - options)


def test_an_empty_output_dir_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kept.txt").write_text("x")
    code, _, err = run(["phantom", "--output-dir", " "] + SMALL_PHANTOM, capsys)
    assert_one_sentence_error(code, err)
    assert "empty name" in err and os.listdir(tmp_path) == ["kept.txt"]


def test_demo_summary_paths_are_moved_with_the_staging_folder(tmp_path):
    staging, target = str(tmp_path / ".out.partial-x"), str(tmp_path / "out")
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"inputs": {"perfusion_file": staging + "/phantom/p.seq.nrrd", "note": staging + "x",
                                           "files": [staging + "/a"]}, "n": 3}))
    cli._retarget_summary_paths(str(path), staging, target)
    moved = json.load(open(path))
    assert moved == {"inputs": {"perfusion_file": target + "/phantom/p.seq.nrrd", "note": staging + "x",
                                "files": [target + "/a"]}, "n": 3}


def test_interrupt_guard_waits_for_a_library_to_load():
    guard = cli._InterruptGuard()
    previous = signal.signal(signal.SIGINT, guard.handle)
    try:
        with pytest.raises(KeyboardInterrupt):
            with guard.loading():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                loaded = True  # reached: the stop waited for the end of the block
        assert loaded and signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # a second Ctrl-C cannot cut the clean-up
    finally:
        signal.signal(signal.SIGINT, previous)


# --- DICOM (issue 16) --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["per-slice", "single-series"])
def test_phantom_as_dicom_quantifies_with_the_header_and_writes_a_parametric_map(tmp_path, capsys, layout):
    phantom_dir = tmp_path / "phantom"
    code, stdout, err = run(["phantom", "--output-dir", str(phantom_dir), "--format", "dicom", "--dicom-layout",
                             layout, "--seed", "11", "--frames", str(QUANTIFY_FRAMES)], capsys)
    assert code == 0, err
    assert "DICOM, {} layout".format(layout) in stdout
    assert sorted(os.listdir(phantom_dir)) == sorted(
        ["perfusion", "segmentation.dcm"] + [name for key, name in PHANTOM_FILES.items() if key != "perfusion"])
    n_series = len([name for name in os.listdir(phantom_dir / "perfusion") if name.startswith("series_")])
    assert n_series == (3 if layout == "per-slice" else 0)
    out = tmp_path / "q"
    code, stdout, err = run(["quantify", str(phantom_dir / "perfusion"), str(phantom_dir / "segmentation.dcm"),
                             "--output-dir", str(out), "--aif", "saturated", "--dicom-output", "--quiet",
                             "--rv-insertion", str(phantom_dir / PHANTOM_FILES["rv_insertion"])], capsys)
    assert code == 0, err
    assert "mbf.dcm" in stdout and sorted(os.listdir(out)) == ["aif.csv", "mbf.dcm", "mbf.nrrd", "report.png",
                                                              "segments.csv", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    truth = json.loads((phantom_dir / PHANTOM_FILES["truth_description"]).read_text())["acquisition"]
    assert summary["parameters"]["acquisition"]["field_strength_t"] == {"value": truth["field_strength_t"],
                                                                        "source": "header"}
    assert summary["inputs"]["n_frames"] == QUANTIFY_FRAMES
    assert summary["inputs"]["proton_density_frames"]["n_left_out"] == 2
    code, _, err = run(["quantify", str(phantom_dir / "perfusion"), str(phantom_dir / "segmentation.dcm"),
                        "--output-dir", str(tmp_path / "q15"), "--aif", "saturated", "--quiet",
                        "--field-strength", "1.5"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "q15" / "summary.json").read_text())
    assert summary["parameters"]["acquisition"]["field_strength_t"] == {"value": 1.5, "source": "option"}


def test_batch_help_documents_the_exit_codes(capsys):
    text = cli.build_parser()._subparsers._group_actions[0].choices["batch"].format_help()
    assert "Exit code 0 when every study is done, 3 when some failed" in re.sub(r"\s+", " ", text)
    assert cli.EXIT_SOME_FAILED == 3
    assert set(cli.quantify_options()) >= {"rv_insertion", "field_strength", "aif", "tissue_conversion",
                                            "dicom_output"}


def test_phantom_motion_writes_the_displacement_of_every_frame(tmp_path, capsys):
    out = tmp_path / "moving"
    code, stdout, _ = run(["phantom", "--output-dir", str(out), "--seed", "3", "--frames", "30", "--motion"], capsys)
    assert code == 0 and "in-plane respiratory motion" in stdout
    truth = np.load(str(out / PHANTOM_FILES["truth_arrays"]))
    assert truth["motion_shift_px"].shape == (30, 3, 2) and np.abs(truth["motion_shift_px"]).max() > 1.0
    code, _, err = run(["phantom", "--output-dir", str(tmp_path / "bad"), "--motion", "sideways"], capsys)
    assert_one_sentence_error(code, err)


def test_quantify_registers_a_moving_study_and_writes_the_registered_series(tmp_path, capsys):
    from AIAIFLib.simulation import simulate_phantom, write_phantom

    phantom = simulate_phantom(seed=11, ischemic="LAD", n_frames=QUANTIFY_FRAMES, motion="in-plane")
    directory = tmp_path / "moving"
    directory.mkdir()
    write_phantom(phantom, str(directory))
    out = tmp_path / "q"
    code, stdout, _ = run(quantify_arguments(directory, out, "--aif", "saturated"), capsys)
    assert code == 0, stdout
    assert pipeline_files() | {"registered.seq.nrrd"} == set(os.listdir(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["motion"]["applied"] and summary["parameters"]["motion_correction"] == "auto"
    import nrrd

    registered, header = nrrd.read(str(out / "registered.seq.nrrd"), index_order="C")
    assert registered.shape == (QUANTIFY_FRAMES,) + phantom.frames.shape[1:]  # one volume per frame
    off = tmp_path / "off"
    code, _, _ = run(quantify_arguments(directory, off, "--aif", "saturated", "--motion-correction", "off"), capsys)
    assert code == 0 and "registered.seq.nrrd" not in os.listdir(off)
    assert json.loads((off / "summary.json").read_text())["motion"]["measured"] is False


def pipeline_files():
    from AIAIFLib.pipeline import ALWAYS_WRITTEN_FILES

    return set(ALWAYS_WRITTEN_FILES)


def test_quantify_roi_frame_beyond_the_series_is_one_sentence(tmp_path, capsys, quantify_phantom):
    _, directory = quantify_phantom
    code, _, err = run(quantify_arguments(directory, tmp_path / "q", "--roi-frame", str(QUANTIFY_FRAMES)), capsys)
    assert_one_sentence_error(code, err)
    assert "ROI frame" in err and leftovers(tmp_path) == []

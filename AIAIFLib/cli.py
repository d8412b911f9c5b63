"""Command line: ``python -m AIAIFLib <command> ...``.

This module only parses arguments, stages output directories and calls the
library.  Errors a user can fix end the program with one sentence on standard
error and exit code 2; no traceback, and no partial output directory.
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading

import numpy as np

from . import constants as K
from .aif import MIN_AIF_FRAMES
from .dicom_io.phantom import DEFAULT_PROTON_DENSITY_FRAMES, DICOM_LAYOUTS
from .errors import AIAIFInputError
from .phantom_motion import MOTION_KINDS
from .pipeline import MOTION_CORRECTIONS, TISSUE_CONVERSIONS
from .sequence import READOUT_ORDERINGS
from .simulation import DEFAULT_TISSUE_MODEL, TISSUE_MODELS
from .training import DEFAULT_PHYSICS, PHYSICS_MIXES, TRAINING_DEFAULTS

EXIT_USAGE = 2
#: Exit code of ``batch`` when some studies failed (the others are done; see cohort_studies.csv).
EXIT_SOME_FAILED = 3
#: Exit code after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

#: Most frames ``phantom --frames`` simulates.  Project choice: 200 heartbeats
#: are over three minutes at stress heart rates, three times a clinical
#: first-pass series, and the simulator holds about 4.5 MB per frame at once
#: (measured: 0.31 GB at 60 frames, 1.4 GB at 300), so 200 frames stay under
#: 1 GB; more would only exhaust memory.
PHANTOM_MAX_FRAMES = 200
#: Formats ``phantom`` writes the perfusion series in.
PHANTOM_FORMATS = ("slicer", "dicom")


class _Parser(argparse.ArgumentParser):
    """Argument parser whose errors are one sentence and exit code 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, "{}: error: {}; run '{} --help' for the options.\n".format(
            self.prog, message, self.prog))


class _InterruptGuard(object):
    """What Ctrl-C does during a run.

    The first Ctrl-C stops the run (``KeyboardInterrupt``, which ``main``
    turns into one line and exit code 130); later ones are ignored so that
    the clean-up (removing the staging folder) can finish.  Inside
    ``loading()`` -- imports of compiled libraries such as Slicer's, which
    crash or fail with an ``ImportError`` when cut off -- the stop waits
    until the block ends.
    """

    def __init__(self):
        self.depth = 0
        self.pending = False

    def handle(self, signum, frame):
        if self.depth:
            self.pending = True
            return
        self.stop()

    @staticmethod
    def stop():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def loading(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.pending:
            self.stop()


_INTERRUPTS = _InterruptGuard()


def _give_ordinary_permissions(path, mode):
    """Set ``mode`` less the process umask on a file or folder made private by ``tempfile``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextlib.contextmanager
def staged_output_dir(output_dir, overwrite=False):
    """Yield a temporary directory whose files become ``output_dir`` on success.

    The work is written beside the target and moved into place only when the
    block finishes without error, so a failure never leaves a partial output
    directory.  An existing non-empty ``output_dir`` is refused unless
    ``overwrite``; then only the files written this time are replaced.

    Parameters
    ----------
    output_dir : str
        Final directory.
    overwrite : bool
        Allow writing into an existing non-empty directory.
    """
    if not str(output_dir).strip():
        raise AIAIFInputError("The output directory is an empty name; give --output-dir a directory path.")
    target = os.path.abspath(output_dir)
    if os.path.exists(target) and not os.path.isdir(target):
        raise AIAIFInputError("Output path {} is a file, not a directory; choose a directory path.".format(target))
    if os.path.isdir(target) and os.listdir(target) and not overwrite:
        raise AIAIFInputError("Output directory {} already exists and is not empty; choose a new directory or "
                              "pass --overwrite.".format(target))
    parent = os.path.dirname(target)
    created = []
    probe = parent
    while not os.path.exists(probe):
        created.append(probe)
        probe = os.path.dirname(probe)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as error:
        raise AIAIFInputError("Cannot create {} ({}); choose a writable output directory.".format(
            parent, error.strerror))
    staging = tempfile.mkdtemp(prefix="." + os.path.basename(target) + ".partial-", dir=parent)
    _give_ordinary_permissions(staging, 0o777)  # mkdtemp's private 0700 would carry over to the results
    try:
        yield staging
        if not os.path.isdir(target):
            os.rename(staging, target)
            return
        for name in os.listdir(staging):
            destination = os.path.join(target, name)
            if os.path.isdir(destination):
                shutil.rmtree(destination)
            os.replace(os.path.join(staging, name), destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not os.path.isdir(target):
            for directory in created:
                shutil.rmtree(directory, ignore_errors=True)


def _add_output_options(parser):
    parser.add_argument("--output-dir", required=True, help="directory to create for the results")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an existing non-empty directory, replacing files of the same name")


def _field_strength(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value not in K.SUPPORTED_FIELD_STRENGTHS_T:
        raise argparse.ArgumentTypeError("field strength must be 3 or 1.5 (tesla), got {!r}".format(text))
    return value


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError("expected a non-negative integer, got {!r}".format(text))
    return value


def _positive_int(text):
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a positive integer, got {!r}".format(text))
    return value


def _phantom_frames(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not MIN_AIF_FRAMES <= value <= PHANTOM_MAX_FRAMES:
        raise argparse.ArgumentTypeError("expected {} to {} frames (quantify needs at least {}; more than {} is "
                                         "longer than any first-pass series), got {!r}".format(
                                             MIN_AIF_FRAMES, PHANTOM_MAX_FRAMES, MIN_AIF_FRAMES, PHANTOM_MAX_FRAMES,
                                             text))
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("expected a positive number, got {!r}".format(text))
    return value


def _slice_levels(text):
    levels = tuple(part.strip().lower() for part in text.split(","))
    if any(level not in K.SLICE_LEVELS for level in levels):
        raise argparse.ArgumentTypeError("slice levels must be a comma-separated list of {}, got {!r}".format(
            ", ".join(K.SLICE_LEVELS), text))
    return levels


#: Description of the ``quantify`` command (also the ``batch`` command's per-study work).
QUANTIFY_DESCRIPTION = (
    "Quantify pixelwise stress myocardial blood flow (mL/min/g) by Fermi-constrained deconvolution, per AHA segment "
    "and coronary territory, from a Slicer volume sequence or a DICOM perfusion folder and a segmentation. Writes "
    "mbf.nrrd, segments.csv, aif.csv, summary.json and report.png (and mbf.dcm with --dicom-output).")


def _add_quantify_parser(commands):
    quantify = commands.add_parser("quantify", help="pixelwise stress MBF of a perfusion study",
                                   description=QUANTIFY_DESCRIPTION)
    _add_output_options(quantify)
    _add_quantify_arguments(quantify)


def _add_quantify_arguments(quantify):
    """The study and the options of ``quantify`` (without the output options)."""
    quantify.add_argument("perfusion", metavar="PERFUSION",
                          help="the perfusion series: a Slicer volume sequence (.seq.nrrd; index values = frame times "
                               "in s) or a folder of its DICOM images (one series per slice or one series)")
    quantify.add_argument("segmentation", metavar="SEGMENTATION",
                          help="segmentation with segments 'LV blood pool' and 'Myocardium': a Slicer .seg.nrrd or "
                               "a DICOM SEG")
    quantify.add_argument("--field-strength", type=_positive_float, default=None, metavar="T",
                          help="field strength in tesla (default: the DICOM header's MagneticFieldStrength, else 3); "
                               "3 or 1.5, any other value only with --t1-blood-s (and --t1-myocardium-s for "
                               "--tissue-conversion model with --aif saturated), which replace the field strength's "
                               "T1 defaults")
    quantify.add_argument("--aif", default="ai", metavar="{ai,saturated,PATH.csv}",
                          help="AIF: 'ai' (network-corrected, default), 'saturated' (uncorrected) or a CSV file "
                               "with columns time_s,signal (e.g. a dual-sequence AIF)")
    quantify.add_argument("--rv-insertion", metavar="PATH.mrk.json",
                          help="optional Slicer point list of RV insertion points: per slice the anterior one (the "
                               "AHA segments start there) and, labelled 'inferior', the inferior one (it decides "
                               "the septum side). Without points the RV is found in the images (the early-"
                               "enhancing cavity beside the LV); summary.json says which rule decided")
    quantify.add_argument("--tissue-conversion", choices=TISSUE_CONVERSIONS, default=TISSUE_CONVERSIONS[0],
                          help="myocardial signal to concentration: 'model' (default: inverts the "
                               "saturation-recovery signal equation, calibrated on the LV blood pool) or 'linear' "
                               "(the paper's relative enhancement, for reproducing it)")
    quantify.add_argument("--t1-blood-s", type=_positive_float, metavar="S",
                          help="native T1 of blood in s (default by field strength: 1.736 s at 3 T, 1.435 s "
                               "at 1.5 T)")
    quantify.add_argument("--t1-myocardium-s", type=_positive_float, metavar="S",
                          help="native T1 of myocardium in s (default by field strength); the model conversion "
                               "checks the myocardium's pre-contrast signal against it, and uses it only with "
                               "--aif saturated")
    quantify.add_argument("--r1", type=_positive_float, metavar="PER_S_PER_MM",
                          help="relaxivity in 1/s/mM (default {})".format(K.R1_RELAXIVITY_PER_S_PER_MM))
    quantify.add_argument("--saturation-time-s", type=_positive_float, metavar="S",
                          help="saturation time to the k-space centre in s, when known (default: the DICOM "
                               "header's InversionTime, else {:g})".format(K.SATURATION_TIME_S))
    quantify.add_argument("--repetition-time-s", type=_positive_float, metavar="S",
                          help="readout repetition time TR in s, when known (default: the DICOM header's, else "
                               "{:g})".format(K.REPETITION_TIME_S))
    quantify.add_argument("--flip-angle-deg", type=_positive_float, metavar="DEG",
                          help="nominal readout flip angle in degrees, when known (default: the DICOM header's, "
                               "else {:g})".format(K.FLIP_ANGLE_DEG))
    quantify.add_argument("--readout-ordering", choices=READOUT_ORDERINGS,
                          help="k-space ordering, when known (default: unknown; the blood-pool calibration tries "
                               "both)")
    quantify.add_argument("--pulses-to-centre", type=_positive_int, metavar="N",
                          help="readout pulse that samples the k-space centre, when known (1 for centric)")
    quantify.add_argument("--saturation-efficiency", type=_positive_float, metavar="FRACTION",
                          help="fraction of Mz the saturation pulse destroys, when known (default: fitted to the "
                               "LV blood pool)")
    quantify.add_argument("--frame-interval", type=_positive_float, metavar="S",
                          help="time between frames in s, when the sequence index values are frame numbers")
    quantify.add_argument("--threshold", type=_positive_float, default=K.ISCHAEMIA_THRESHOLD_ML_MIN_G,
                          metavar="ML_MIN_G", help="ischaemia threshold in mL/min/g (default {})".format(
                              K.ISCHAEMIA_THRESHOLD_ML_MIN_G))
    quantify.add_argument("--slice-levels", type=_slice_levels, metavar="LEVELS",
                          help="level of each stored slice, e.g. 'apical,mid,basal' (default: from the RV point "
                               "labels or the LV cavity size)")
    quantify.add_argument("--lv-segment", default=K.LV_BLOOD_POOL_SEGMENT_NAME, metavar="NAME",
                          help="name of the LV blood-pool segment (default {!r})".format(
                              K.LV_BLOOD_POOL_SEGMENT_NAME))
    quantify.add_argument("--myocardium-segment", default=K.MYOCARDIUM_SEGMENT_NAME, metavar="NAME",
                          help="name of the myocardium segment (default {!r})".format(K.MYOCARDIUM_SEGMENT_NAME))
    quantify.add_argument("--motion-correction", choices=MOTION_CORRECTIONS, default=MOTION_CORRECTIONS[0],
                          help="register every frame, in plane, to the frame the ROIs were drawn on: 'auto' "
                               "(default: measure the motion and correct it when frames moved), 'on' or 'off'; "
                               "writes registered.seq.nrrd when frames were moved, and the displacement of every "
                               "frame to summary.json and report.png")
    quantify.add_argument("--roi-frame", type=_non_negative_int, metavar="N",
                          help="index (from 0) of the frame the ROIs were drawn on (default: the frame of peak LV "
                               "enhancement)")
    quantify.add_argument("--weights", metavar="PATH.npz", help="network weights (default: the shipped model)")
    quantify.add_argument("--dicom-output", action="store_true",
                          help="also write the MBF map as a DICOM Parametric Map (mbf.dcm, mL/min/g) referencing "
                               "the source images; needs a DICOM perfusion folder")
    quantify.add_argument("--quiet", action="store_true", help="no progress bar")


class _RaisingParser(_Parser):
    """A parser whose errors raise ``AIAIFInputError`` (for arguments that come from a file, not a terminal)."""

    def error(self, message):
        raise AIAIFInputError(message[:1].upper() + message[1:] + "; correct it.")


def _quantify_only_parser():
    parser = _RaisingParser(prog="quantify", add_help=False)
    _add_quantify_arguments(parser)
    return parser


def quantify_options():
    """``quantify``'s options by destination name: ``{dest: (option string, takes a value)}``.

    The ``batch`` manifest names its optional columns after them.
    """
    return {action.dest: (action.option_strings[0], action.nargs != 0)
            for action in _quantify_only_parser()._actions if action.option_strings}


def quantify_arguments(argv):
    """Parse ``quantify``'s arguments (study and options, no output options); errors raise ``AIAIFInputError``."""
    return _quantify_only_parser().parse_args(argv)


def build_parser():
    """The argument parser of ``python -m AIAIFLib``."""
    parser = _Parser(prog="python -m AIAIFLib", description=(
        "AI-AIF: simulate stress perfusion CMR with known ground truth, correct AIF saturation and quantify "
        "myocardial blood flow (Scannell et al., Eur Heart J Digit Health 2022)."))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    phantom = commands.add_parser("phantom", help="write a simulated 4D perfusion study with ground truth",
                                  description="Write a three-slice stress perfusion phantom as 3D Slicer files "
                                              "(.seq.nrrd, .seg.nrrd, .mrk.json) with its ground truth.")
    _add_output_options(phantom)
    phantom.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default 0)")
    phantom.add_argument("--field-strength", type=_field_strength, default=3.0, metavar="{3,1.5}",
                         help="field strength in tesla (default 3)")
    phantom.add_argument("--ischemic", choices=("LAD", "RCA", "LCX", "none"), default="none",
                         help="coronary territory with ischaemic stress MBF (default none)")
    phantom.add_argument("--frames", type=_phantom_frames, default=60,
                         help="heartbeats / frames, {} to {} (default 60)".format(MIN_AIF_FRAMES, PHANTOM_MAX_FRAMES))
    phantom.add_argument("--tissue-model", choices=sorted(TISSUE_MODELS), default=DEFAULT_TISSUE_MODEL,
                         help="myocardial tissue model (default {})".format(DEFAULT_TISSUE_MODEL))
    phantom.add_argument("--format", choices=PHANTOM_FORMATS, default=PHANTOM_FORMATS[0],
                         help="'slicer' (default): perfusion.seq.nrrd; 'dicom': the perfusion frames as DICOM MR "
                              "images in perfusion/ and the ROIs also as a DICOM SEG (segmentation.dcm)")
    phantom.add_argument("--dicom-layout", choices=DICOM_LAYOUTS, default=DICOM_LAYOUTS[0],
                         help="with --format dicom: one series per slice (default) or every slice in one series")
    phantom.add_argument("--proton-density-frames", type=_non_negative_int, default=DEFAULT_PROTON_DENSITY_FRAMES,
                         metavar="N", help="with --format dicom: proton-density frames before the perfusion frames "
                                           "of each slice (default {}; quantify leaves them out)".format(
                                               DEFAULT_PROTON_DENSITY_FRAMES))
    phantom.add_argument("--motion", nargs="?", choices=MOTION_KINDS, const=MOTION_KINDS[1], default=MOTION_KINDS[0],
                         help="respiratory motion: free breathing before and after a breath-held first pass, "
                              "'in-plane' (the default of a bare --motion), 'through-plane' (in-plane plus a change "
                              "of the section) or 'turning' (in-plane plus a turn about the LV axis); the truth stays at "
                              "the breath-held position and the displacement of "
                              "every frame is in ground_truth.npz (default none)")

    demo = commands.add_parser("demo", help="the main job on the built-in phantom",
                               description="Write the built-in phantom and a figure of saturated versus "
                                           "reference AIFs at 1.5 T and 3 T.")
    _add_output_options(demo)
    demo.add_argument("--seed", type=_non_negative_int, default=None,
                      help="random seed (default: the built-in phantom's, as in Slicer's sample data)")

    evaluate = commands.add_parser("evaluate", help="the paper's evaluation protocol",
                                   description="Compare test AIFs and MBF with a reference as the paper does: "
                                               "NMSE, PV/TTP/FWHM, Mann-Whitney U, Bland-Altman, diagnosis "
                                               "agreement at {} mL/min/g.".format(K.ISCHAEMIA_THRESHOLD_ML_MIN_G))
    _add_output_options(evaluate)
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--simulated", action="store_true",
                        help="evaluate on a simulated test set: the AI-AIF (or --test saturated) against the true AIF")
    source.add_argument("--aif-csv", metavar="PATH", help="AIF pairs, columns case,time_s,reference,test")
    evaluate.add_argument("--mbf-csv", metavar="PATH",
                          help="segment MBF pairs, columns patient,segment,reference,test (mL/min/g)")
    evaluate.add_argument("--n-curves", type=_positive_int, default=500,
                          help="simulated AIF pairs (default 500)")
    evaluate.add_argument("--n-phantoms", type=_positive_int, default=10,
                          help="simulated patients for the MBF analysis (default 10)")
    evaluate.add_argument("--seed", type=_non_negative_int, default=7,
                          help="seed of the simulated test set (default 7)")
    evaluate.add_argument("--test", choices=("ai", "saturated"), default="ai",
                          help="method under test with --simulated: the network's AI-AIF (default) or the "
                               "uncorrected saturated AIF")
    _add_quantify_parser(commands)

    batch = commands.add_parser(
        "batch", help="quantify a cohort listed in a manifest, on Dask",
        description="Quantify every study of a manifest (CSV: study, perfusion, segmentation and optional columns "
                    "named after quantify's options, e.g. rv_insertion, field_strength, aif, dicom_output; relative "
                    "paths from the manifest's folder) on a Dask cluster. Each study's folder in the output "
                    "directory gets what quantify writes; cohort_studies.csv and cohort_segments.csv summarise "
                    "the cohort. A study whose folder is complete is skipped unless --overwrite, so running the "
                    "same command again finishes an interrupted run. Exit code 0 when every study is done, 3 when "
                    "some failed (their sentence is in cohort_studies.csv), 2 for a bad manifest (nothing runs).")
    batch.add_argument("manifest", metavar="MANIFEST.csv", help="one row per study")
    batch.add_argument("--output-dir", required=True, help="directory of the study folders and cohort tables")
    batch.add_argument("--overwrite", action="store_true", help="quantify again the studies already complete")
    batch.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                       help="local worker processes, one thread and one BLAS thread each (default: one per core)")
    batch.add_argument("--scheduler", metavar="ADDRESS",
                       help="address of an existing Dask scheduler (e.g. tcp://host:8786) instead of a local "
                            "cluster; its workers must see the same paths")
    batch.add_argument("--quiet", action="store_true", help="no progress bar or per-study lines")

    correct = commands.add_parser(
        "correct", help="correct saturated AIFs with the network",
        description="Replace each saturated AIF signal curve of a CSV file by the network's unsaturated AIF, in "
                    "the same signal units and with the input's pre-contrast baseline, so that "
                    "(S - S0) / S0 / (r1 T1b) is the AIF concentration.")
    correct.add_argument("input", metavar="INPUT.csv",
                         help="header row; first column time_s (s), each further column one saturated AIF signal")
    correct.add_argument("--output", required=True, metavar="OUTPUT.csv",
                         help="file to write: same header and rows, each curve corrected")
    correct.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    correct.add_argument("--weights", metavar="PATH.npz", help="network weights (default: the shipped model)")

    train = commands.add_parser(
        "train", help="train the AI-AIF network (needs PyTorch: pip install torch==2.13.0)",
        description="Train the 1D U-Net with the paper's recipe (Adam 0.001, batch 10, 20 000 iterations, MSE, "
                    "best-validation checkpoint, noise 0.02/0.03, random 0-3 frame offset) on simulated pairs or "
                    "on your own paired dual-sequence AIFs. Writes aiaif_unet.npz, aiaif_unet.sha256, "
                    "loss_curve.png and training.json.")
    _add_output_options(train)
    train.add_argument("--data", metavar="PAIRS.csv",
                       help="paired AIFs, columns case,time_s,saturated,reference (signal units); default: "
                            "simulated pairs")
    train.add_argument("--n-train", type=_positive_int, default=None,
                       help="simulated training pairs (default {})".format(TRAINING_DEFAULTS["n_train"]))
    train.add_argument("--n-validation", type=_positive_int, default=None,
                       help="simulated validation pairs (default {})".format(TRAINING_DEFAULTS["n_validation"]))
    train.add_argument("--iterations", type=_positive_int, default=None,
                       help="optimiser steps (default {})".format(TRAINING_DEFAULTS["iterations"]))
    train.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default 0)")
    train.add_argument("--physics", choices=sorted(PHYSICS_MIXES), default=DEFAULT_PHYSICS,
                       help="physics mix of the simulated pairs: the simulator's standard ranges or broader ones "
                            "(default {}; the shipped ensemble holds both)".format(DEFAULT_PHYSICS))
    train.add_argument("--threads", type=_positive_int, default=None,
                       help="CPU threads for PyTorch (default {})".format(TRAINING_DEFAULTS["threads"]))
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _run_phantom(args, out):
    with _INTERRUPTS.loading():
        from .simulation import simulate_phantom, write_phantom

    phantom = simulate_phantom(seed=args.seed, field_strength_t=args.field_strength, ischemic=args.ischemic,
                               n_frames=args.frames, tissue_model=args.tissue_model, motion=args.motion)
    if args.format == "dicom":
        from .dicom_io.phantom import stored_phantom, write_phantom_dicom

        # The ROIs, points and truth as for Slicer; the perfusion series only as DICOM.
        paths = write_phantom(stored_phantom(phantom, args.proton_density_frames), out)
        os.remove(paths["perfusion"])
        write_phantom_dicom(phantom, out, layout=args.dicom_layout, proton_density_frames=args.proton_density_frames)
    else:
        write_phantom(phantom, out)
    return "Wrote a {} T phantom (seed {}, ischaemic territory: {}{}{}) to {}.".format(
        args.field_strength, args.seed, args.ischemic,
        "" if args.motion == "none" else ", {} respiratory motion".format(args.motion),
        "; DICOM, {} layout".format(args.dicom_layout) if args.format == "dicom" else "",
        os.path.abspath(args.output_dir))


#: AIFs the demo quantifies the phantom with: (pipeline AIF mode, output folder, column title).
DEMO_AIFS = (("ai", "quantification_ai", "AI-corrected"), ("saturated", "quantification_saturated", "saturated"))


def _run_demo(args, out):
    with _INTERRUPTS.loading():
        from . import evaluation, mrml, report
        from .pipeline import QuantificationParameters
        from .simulation import PHANTOM_FILES, simulate_aif_pairs, write_phantom
        from .studies import DEMO_PHANTOM, demo_phantom

    phantom_dir = os.path.join(out, "phantom")
    os.mkdir(phantom_dir)
    seed = DEMO_PHANTOM["seed"] if args.seed is None else args.seed
    phantom = demo_phantom(seed=seed)
    write_phantom(phantom, phantom_dir)
    pairs = {field: simulate_aif_pairs(3, seed=seed, field_strength_t=field) for field in (1.5, 3.0)}
    report.plot_saturation_examples(os.path.join(out, "aif_saturation.png"), pairs)
    files = {key: os.path.join(phantom_dir, PHANTOM_FILES[key]) for key in ("perfusion", "segmentation",
                                                                          "rv_insertion")}
    vessels = {"truth": evaluation.vessel_mbf(phantom.segment_mbf_ml_min_g()[None])[0]}
    for mode, folder, _ in DEMO_AIFS:
        directory = os.path.join(out, folder)
        os.mkdir(directory)
        parameters = QuantificationParameters(field_strength_t=3.0, aif_mode=mode, tissue_conversion="model")
        result = mrml.quantify_files(files["perfusion"], files["segmentation"], directory, parameters,
                                     rv_insertion_path=files["rv_insertion"])
        _retarget_summary_paths(os.path.join(directory, "summary.json"), out, os.path.abspath(args.output_dir))
        vessels[mode] = np.asarray(result.territories["mbf_ml_min_g"], dtype=float)
    lines = ["Wrote the demo to {}:".format(os.path.abspath(args.output_dir)),
             "  phantom/  3 T phantom with an ischaemic LAD territory (Slicer files and ground truth)",
             "  aif_saturation.png  saturated vs reference AIFs at 1.5 T and 3 T"]
    lines.extend("  {}/  quantify with the {} AIF (model tissue conversion): mbf.nrrd, segments.csv, aif.csv, "
                 "summary.json, report.png".format(folder, title) for _, folder, title in DEMO_AIFS)
    lines.append("Stress MBF per coronary territory (mean of its two lowest segments), mL/min/g; ischaemic below "
                 "{}:".format(K.ISCHAEMIA_THRESHOLD_ML_MIN_G))
    lines.append("  {:<9}{:>8}".format("territory", "true") + "".join("{:>14}".format(t) for _, _, t in DEMO_AIFS))
    for index, territory in enumerate(K.CORONARY_TERRITORIES):
        lines.append("  {:<9}{:>8.2f}".format(territory, vessels["truth"][index]) + "".join(
            "{:>14.2f}".format(vessels[mode][index]) for mode, _, _ in DEMO_AIFS))
    return "\n".join(lines)


def _retarget_summary_paths(summary_path, staging, target):
    """Rewrite the paths under ``staging`` in a ``summary.json`` to where they are once the staging is moved."""
    def moved(value):
        if isinstance(value, str) and (value == staging or value.startswith(staging + os.sep)):
            return target + value[len(staging):]
        if isinstance(value, dict):
            return {key: moved(item) for key, item in value.items()}
        if isinstance(value, list):
            return [moved(item) for item in value]
        return value

    with open(summary_path) as handle:
        summary = json.load(handle)
    with open(summary_path, "w") as handle:
        json.dump(moved(summary), handle, indent=2, allow_nan=False)


def _run_evaluate(args, out):
    with _INTERRUPTS.loading():
        from . import evaluation, studies

    if args.simulated:
        if args.mbf_csv:
            raise AIAIFInputError("--mbf-csv cannot be combined with --simulated; use one source of data.")
        data = studies.simulated_evaluation(n_curves=args.n_curves, n_phantoms=args.n_phantoms, seed=args.seed,
                                            test=args.test)
        names = (data["reference_name"], data["test_name"])
        aif = (data["aif_times_s"], data["aif_reference"], data["aif_test"])
        mbf = (data["mbf_reference"], data["mbf_test"])
    else:
        names = ("Reference", "Test")
        aif = evaluation.read_aif_pairs_csv(args.aif_csv)
        mbf = evaluation.read_segment_mbf_csv(args.mbf_csv)[1:] if args.mbf_csv else None
    aif_result = evaluation.analyse_aifs(*aif)
    mbf_result = evaluation.analyse_mbf(*mbf) if mbf is not None else None
    table = evaluation.format_results_table(aif_result, mbf_result, reference_name=names[0], test_name=names[1])
    with _INTERRUPTS.loading():
        from . import report
    with open(os.path.join(out, "results.txt"), "w") as handle:
        handle.write(table + "\n")
    report.plot_example_aifs(os.path.join(out, "example_aifs.png"), aif[0], aif[1], aif[2], *names)
    report.plot_aif_metric_boxplots(os.path.join(out, "aif_metrics.png"), aif_result, *names)
    if mbf_result is not None:
        report.plot_mbf_agreement(os.path.join(out, "mbf_agreement.png"), mbf_result, *names)
    return table + "\nWrote results.txt and figures to {}.".format(os.path.abspath(args.output_dir))


class TerminalProgress(object):
    """A one-line progress bar on standard error: ``progress(fraction, message)``."""

    WIDTH = 30

    def __init__(self, stream=None, enabled=True):
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = enabled and bool(isatty and isatty())  # no carriage-return clutter in logs
        self._last = None

    def __call__(self, fraction, message=""):
        if not self.enabled:
            return
        filled = int(round(self.WIDTH * min(max(fraction, 0.0), 1.0)))
        line = "[{}{}] {:3.0f}% {}".format("#" * filled, "." * (self.WIDTH - filled), 100 * fraction, message)
        if line != self._last:
            self.stream.write("\r" + line[:100].ljust(100))
            self.stream.flush()
            self._last = line

    def close(self):
        if self.enabled and self._last is not None:
            self.stream.write("\n")
            self.stream.flush()


def quantification_parameters(args):
    """``pipeline.QuantificationParameters`` from the ``quantify`` arguments."""
    from .acquisition import has_defaults
    from .aif import read_aif_csv
    from .pipeline import QuantificationParameters

    if args.field_strength is not None and not has_defaults(args.field_strength):
        missing = ["--t1-blood-s"] if args.t1_blood_s is None else []
        # The model conversion anchors the myocardium on the blood pool and needs no native myocardial T1, except
        # with the saturated AIF, where there is no blood-pool calibration (conversion.tissue_concentration_mM).
        if args.tissue_conversion == "model" and args.aif == "saturated" and args.t1_myocardium_s is None:
            missing.append("--t1-myocardium-s")
        if missing:
            raise AIAIFInputError("--field-strength {:g} has no T1 defaults (they exist for 3 and 1.5 T); pass {} "
                                  "or use --field-strength 3 or 1.5.".format(args.field_strength,
                                                                             " and ".join(missing)))
    aif_mode, ext_times, ext_signal = args.aif, None, None
    if args.aif not in ("ai", "saturated"):
        ext_times, names, curves = read_aif_csv(args.aif)
        if len(names) != 1:
            raise AIAIFInputError("The AIF file {} has {} signal columns but --aif needs exactly one (time_s, "
                                  "signal); keep one AIF per file.".format(args.aif, len(names)))
        aif_mode, ext_signal = "external", curves[0]
    return QuantificationParameters(
        field_strength_t=args.field_strength, aif_mode=aif_mode, external_aif_times_s=ext_times,
        external_aif_signal=ext_signal, tissue_conversion=args.tissue_conversion, t1_blood_s=args.t1_blood_s,
        t1_myocardium_s=args.t1_myocardium_s, r1_per_s_per_mM=args.r1, slice_levels=args.slice_levels,
        threshold_ml_min_g=args.threshold, weights_path=args.weights, saturation_time_s=args.saturation_time_s,
        repetition_time_s=args.repetition_time_s, flip_angle_deg=args.flip_angle_deg,
        readout_ordering=args.readout_ordering, pulses_to_centre=args.pulses_to_centre,
        saturation_efficiency=args.saturation_efficiency, motion_correction=args.motion_correction,
        roi_frame=args.roi_frame)


def quantify_into(args, out, progress=None):
    """Run ``quantify`` on parsed arguments into the existing directory ``out``; the one path of ``batch`` too.

    Returns
    -------
    pipeline.QuantificationResult
    """
    from .file_checks import check_study_files

    parameters = quantification_parameters(args)
    check_study_files(args.perfusion, args.segmentation, args.rv_insertion)  # before Slicer's library loads
    with _INTERRUPTS.loading():
        from . import mrml

    return mrml.quantify_files(args.perfusion, args.segmentation, out, parameters,
                               rv_insertion_path=args.rv_insertion, frame_interval_s=args.frame_interval,
                               blood_pool_segment_name=args.lv_segment,
                               myocardium_segment_name=args.myocardium_segment, dicom_output=args.dicom_output,
                               progress=progress)


def _run_quantify(args, out):
    progress = TerminalProgress(enabled=not args.quiet)
    try:
        result = quantify_into(args, out, progress)
    finally:
        progress.close()
    results = result.summary["results"]
    lines = ["Global stress MBF {:.2f} mL/min/g (median of {} pixels).".format(
        results["global_mbf_ml_min_g"]["median"], results["global_mbf_ml_min_g"]["n"])]
    for row in results["territories"]:
        lines.append("  {}  {:.2f} mL/min/g{}".format(row["territory"], row["mbf_ml_min_g"],
                                                      "  ischaemic" if row["ischemic"] else ""))
    lines.extend("Warning: " + text for text in result.summary["warnings"])
    lines.append("Wrote {} to {}.".format(", ".join(sorted(os.listdir(out))), os.path.abspath(args.output_dir)))
    return "\n".join(lines)


def _run_train(args, out):
    with _INTERRUPTS.loading():
        from . import training

    options = {name: getattr(args, name) for name in ("n_train", "n_validation", "iterations", "threads")
               if getattr(args, name) is not None}
    progress = TerminalProgress(enabled=not args.quiet)
    try:
        result = training.train(out, data=args.data, seed=args.seed, progress=progress, physics=args.physics,
                                **options)
    finally:
        progress.close()
    return ("Trained for {} iterations in {:.0f} s; best validation MSE {:.4g} at iteration {} (uncorrected "
            "{:.4g}).\nWrote {} to {}.".format(
                result["settings"]["iterations"], result["seconds_total"], result["best_validation_mse"],
                result["best_iteration"], result["validation_mse_uncorrected"], ", ".join(sorted(os.listdir(out))),
                os.path.abspath(args.output_dir)))


_COMMANDS = {"phantom": _run_phantom, "demo": _run_demo, "evaluate": _run_evaluate, "quantify": _run_quantify,
             "train": _run_train}


def _run_batch(args):
    """Run ``batch``; returns (message, exit code)."""
    with _INTERRUPTS.loading():
        from . import cohort

    bar = TerminalProgress(enabled=not args.quiet)

    def on_study(outcome):
        if not bar.enabled and not args.quiet:
            sys.stderr.write("batch: {} {}{}\n".format(outcome.name, outcome.status,
                                                       ": " + outcome.error if outcome.error else ""))
            sys.stderr.flush()

    try:
        result = cohort.run_batch(args.manifest, args.output_dir, workers=args.workers, scheduler=args.scheduler,
                                  overwrite=args.overwrite, progress=bar, on_study=on_study)
    finally:
        bar.close()
    output_dir = os.path.abspath(args.output_dir)
    lines = ["{} studies: {} done, {} skipped (complete before), {} failed.".format(
        len(result.outcomes), result.n_done, result.n_skipped, result.n_failed)]
    lines.extend("  failed: {}: {}".format(outcome.name, outcome.error) for outcome in result.outcomes
                 if outcome.status == "failed")
    lines.append("Wrote {} and {} to {}.".format(cohort.STUDIES_TABLE, cohort.SEGMENTS_TABLE, output_dir))
    return "\n".join(lines), (EXIT_SOME_FAILED if result.n_failed else 0)


def _run_correct(args):
    with _INTERRUPTS.loading():
        from .aif import read_aif_csv, write_aif_csv
        from .network import correct_aifs

    target = os.path.abspath(args.output)
    if os.path.isdir(target):
        raise AIAIFInputError("Output path {} is a directory; give a file name such as corrected.csv.".format(target))
    if os.path.exists(target) and not args.overwrite:
        raise AIAIFInputError("Output file {} already exists; choose a new name or pass --overwrite.".format(target))
    if os.path.exists(target) and os.path.samefile(target, args.input):
        raise AIAIFInputError("The output file is the input file; choose another output name so the input is kept.")
    times, names, curves = read_aif_csv(args.input)
    corrected = correct_aifs(times, curves, weights=args.weights)
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise AIAIFInputError("The folder {} does not exist; create it or choose another output path.".format(parent))
    handle, staging = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".partial-", dir=parent)
    os.close(handle)
    try:
        write_aif_csv(staging, times, names, corrected)
        _give_ordinary_permissions(staging, 0o666)  # mkstemp's private 0600 would carry over to the result
        os.replace(staging, target)
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    return "Corrected {} AIF curve{} of {} frames; wrote {}.".format(
        len(names), "" if len(names) == 1 else "s", times.size, target)


def main(argv=None):
    """Run the command line; returns the exit code (0 success, 2 bad input, 3 some studies of a batch failed,
    130 interrupted by Ctrl-C)."""
    args = build_parser().parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():  # only there can Python handle signals
        _INTERRUPTS.pending = False
        previous = signal.signal(signal.SIGINT, _INTERRUPTS.handle)
    code = 0
    try:
        if args.command == "correct":
            message = _run_correct(args)
        elif args.command == "batch":  # writes in place, study by study: resumable, no staging of the whole
            message, code = _run_batch(args)
        else:
            with staged_output_dir(args.output_dir, args.overwrite) as out:
                message = _COMMANDS[args.command](args, out)
    except AIAIFInputError as error:
        sys.stderr.write("{}: error: {}\n".format(args.command, error))
        return EXIT_USAGE
    except KeyboardInterrupt:
        if args.command == "batch":
            sys.stderr.write("batch: interrupted; the finished studies are kept, run the same command again to "
                             "finish the rest.\n")
        else:
            sys.stderr.write("{}: interrupted; nothing was written.\n".format(args.command))
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    print(message)
    return code

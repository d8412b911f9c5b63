"""Command line: ``python -m AIAIFLib <command> ...``.

This module only parses arguments, stages output directories and calls the
library.  Errors a user can fix end the program with one sentence on standard
error and exit code 2; no traceback, and no partial output directory.
"""

import argparse
import contextlib
import os
import shutil
import sys
import tempfile

from . import constants as K
from .errors import AIAIFInputError
from .simulation import DEFAULT_TISSUE_MODEL, TISSUE_MODELS

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """Argument parser whose errors are one sentence and exit code 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, "{}: error: {}; run '{} --help' for the options.\n".format(
            self.prog, message, self.prog))


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
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's private 0700 would carry over to the results
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
    phantom.add_argument("--frames", type=_positive_int, default=60, help="heartbeats / frames (default 60)")
    phantom.add_argument("--tissue-model", choices=sorted(TISSUE_MODELS), default=DEFAULT_TISSUE_MODEL,
                         help="myocardial tissue model (default {})".format(DEFAULT_TISSUE_MODEL))

    demo = commands.add_parser("demo", help="the main job on the built-in phantom",
                               description="Write the built-in phantom and a figure of saturated versus "
                                           "reference AIFs at 1.5 T and 3 T.")
    _add_output_options(demo)
    demo.add_argument("--seed", type=_non_negative_int, default=2022, help="random seed (default 2022)")

    evaluate = commands.add_parser("evaluate", help="the paper's evaluation protocol",
                                   description="Compare test AIFs and MBF with a reference as the paper does: "
                                               "NMSE, PV/TTP/FWHM, Mann-Whitney U, Bland-Altman, diagnosis "
                                               "agreement at {} mL/min/g.".format(K.ISCHAEMIA_THRESHOLD_ML_MIN_G))
    _add_output_options(evaluate)
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--simulated", action="store_true",
                        help="evaluate on a simulated test set: the saturated AIF against the reference")
    source.add_argument("--aif-csv", metavar="PATH", help="AIF pairs, columns case,time_s,reference,test")
    evaluate.add_argument("--mbf-csv", metavar="PATH",
                          help="segment MBF pairs, columns patient,segment,reference,test (mL/min/g)")
    evaluate.add_argument("--n-curves", type=_positive_int, default=500,
                          help="simulated AIF pairs (default 500)")
    evaluate.add_argument("--n-phantoms", type=_positive_int, default=10,
                          help="simulated patients for the MBF analysis (default 10)")
    evaluate.add_argument("--seed", type=_non_negative_int, default=7,
                          help="seed of the simulated test set (default 7)")
    return parser


def _run_phantom(args, out):
    from .simulation import simulate_phantom, write_phantom

    phantom = simulate_phantom(seed=args.seed, field_strength_t=args.field_strength, ischemic=args.ischemic,
                               n_frames=args.frames, tissue_model=args.tissue_model)
    write_phantom(phantom, out)
    return "Wrote a {} T phantom (seed {}, ischaemic territory: {}) to {}.".format(
        args.field_strength, args.seed, args.ischemic, os.path.abspath(args.output_dir))


def _run_demo(args, out):
    from . import report
    from .simulation import simulate_aif_pairs, simulate_phantom, write_phantom

    phantom_dir = os.path.join(out, "phantom")
    os.mkdir(phantom_dir)
    phantom = simulate_phantom(seed=args.seed, field_strength_t=3.0, ischemic="LAD")
    write_phantom(phantom, phantom_dir)
    pairs = {field: simulate_aif_pairs(3, seed=args.seed, field_strength_t=field) for field in (1.5, 3.0)}
    report.plot_saturation_examples(os.path.join(out, "aif_saturation.png"), pairs)
    lines = ["Wrote the demo to {}:".format(os.path.abspath(args.output_dir)),
             "  phantom/  3 T phantom with an ischaemic LAD territory (Slicer files and ground truth)",
             "  aif_saturation.png  saturated vs reference AIFs at 1.5 T and 3 T",
             "True stress MBF per AHA segment (mL/min/g):"]
    segment_mbf = phantom.segment_mbf_ml_min_g()
    for territory, segments in K.CORONARY_TERRITORIES.items():
        values = ", ".join("{}: {:.2f}".format(s, segment_mbf[s - 1]) for s in segments)
        lines.append("  {}  {}".format(territory, values))
    return "\n".join(lines)


def _run_evaluate(args, out):
    from . import evaluation, report, studies

    if args.simulated:
        if args.mbf_csv:
            raise AIAIFInputError("--mbf-csv cannot be combined with --simulated; use one source of data.")
        data = studies.simulated_evaluation(n_curves=args.n_curves, n_phantoms=args.n_phantoms, seed=args.seed)
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
    with open(os.path.join(out, "results.txt"), "w") as handle:
        handle.write(table + "\n")
    report.plot_example_aifs(os.path.join(out, "example_aifs.png"), aif[0], aif[1], aif[2], *names)
    report.plot_aif_metric_boxplots(os.path.join(out, "aif_metrics.png"), aif_result, *names)
    if mbf_result is not None:
        report.plot_mbf_agreement(os.path.join(out, "mbf_agreement.png"), mbf_result, *names)
    return table + "\nWrote results.txt and figures to {}.".format(os.path.abspath(args.output_dir))


_COMMANDS = {"phantom": _run_phantom, "demo": _run_demo, "evaluate": _run_evaluate}


def main(argv=None):
    """Run the command line; returns the exit code (0 success, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        with staged_output_dir(args.output_dir, args.overwrite) as out:
            message = _COMMANDS[args.command](args, out)
    except AIAIFInputError as error:
        sys.stderr.write("{}: error: {}\n".format(args.command, error))
        return EXIT_USAGE
    print(message)
    return 0

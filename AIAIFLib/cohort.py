"""Cohorts: the ``batch`` command's manifest, its studies run on Dask, resume, and the cohort tables.

A manifest is a CSV file with one row per study:

* ``study`` -- a unique name, which names the study's folder in the output
  directory;
* ``perfusion`` -- a ``.seq.nrrd`` volume sequence or a DICOM folder;
* ``segmentation`` -- a ``.seg.nrrd`` or a DICOM SEG;
* optional columns named after ``quantify``'s options, with ``_`` for ``-``
  (``rv_insertion``, ``field_strength``, ``aif``, ``tissue_conversion``,
  ``dicom_output`` ...; ``cli.quantify_options``).  An empty cell leaves the
  option out; a switch such as ``dicom_output`` is on for ``true``, ``yes``
  or ``1``.

Relative paths are resolved from the manifest's folder.  The manifest is
checked whole before anything runs (``read_manifest``): missing columns,
unknown columns, duplicate or unusable study names, missing files and
invalid option values are errors.

Each study runs in a Dask task as ``quantify`` would (``cli.quantify_into``,
the same ``mrml.quantify_files`` path), into a staging folder beside its
final folder that is renamed into place only when complete; so an
interrupted run leaves no half-written study folder, and the next run skips
every study whose folder is complete (unless ``overwrite``).  A failing
study is recorded with its one-sentence error and never stops the others.
After each study the cohort tables are rewritten (``STUDIES_TABLE``,
``SEGMENTS_TABLE``), so they describe the run even if it is killed.

By default the studies run on a ``distributed.LocalCluster`` of worker
processes, one per core and one thread each, with one BLAS thread each and
glibc's own malloc trimming (``WORKER_ENVIRONMENT``); ``scheduler`` connects
to an existing Dask cluster instead, whose workers must see the same file
paths.
"""

import csv
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from typing import NamedTuple, Optional

from .errors import AIAIFInputError

#: The cohort tables written into the output directory.
STUDIES_TABLE = "cohort_studies.csv"
SEGMENTS_TABLE = "cohort_segments.csv"
STUDIES_COLUMNS = ("study", "status", "error", "global_mbf_ml_min_g", "ischemic_territories", "n_warnings",
                   "wall_time_s")
#: Status of a study in ``STUDIES_TABLE``.
STATUSES = ("done", "failed", "skipped", "pending")
#: Required manifest columns; the rest are ``quantify``'s options.
REQUIRED_COLUMNS = ("study", "perfusion", "segmentation")
#: ``quantify`` options a manifest may not set (the batch decides them).
BATCH_DECIDED = ("output_dir", "overwrite", "quiet")
#: Manifest columns that name files or folders (resolved from the manifest's folder, must exist).
PATH_COLUMNS = ("perfusion", "segmentation", "rv_insertion", "weights")
#: Cell values that switch a flag option on, and off.
TRUE_TEXTS = ("true", "yes", "1", "on")
FALSE_TEXTS = ("false", "no", "0", "off", "")
#: Environment of each local worker process: one BLAS/OpenMP thread, so that
#: n workers use n cores and results do not depend on a threaded kernel's
#: summation order.  It replaces distributed's own pre-spawn environment
#: (``distributed.nanny.pre-spawn-environ``), whose ``MALLOC_TRIM_THRESHOLD_``
#: of 64 KiB makes glibc hand every freed numpy temporary back to the system
#: and fault fresh zeroed pages in for the next.  Measured with 1 worker on
#: 8 copies of one DICOM study: 9.5 s of system time instead of 1.9 s, 2.9 s
#: per study instead of 2.0 s; ``Testing/benchmarks/batch_throughput.py``: 2
#: workers at 3.95 times a loop of ``quantify`` processes instead of 2.32.
WORKER_ENVIRONMENT = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                      "VECLIB_MAXIMUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}
#: A study name: no path separators, not hidden, printable, at most 128 characters.
_STUDY_NAME = re.compile(r"^[^./\\\x00-\x1f][^/\\\x00-\x1f]{0,127}$")
#: Prefixes of the hidden staging and replaced folders inside the output directory.
_STAGING_MARK = ".partial-"
_REPLACED_MARK = ".replaced-"
#: The lock that keeps two batch runs out of one output directory.
LOCK_FILE = ".aiaif-batch.lock"


class Study(NamedTuple):
    """One manifest row, checked.

    Attributes
    ----------
    name : str
        The study's name (its folder).
    row : int
        Row number in the manifest (the header is row 1).
    argv : tuple of str
        ``quantify``'s arguments for it (study and options, no output options).
    dicom_output : bool
        The study also writes the DICOM Parametric Map.
    """

    name: str
    row: int
    argv: tuple
    dicom_output: bool


class StudyOutcome(NamedTuple):
    """What happened to one study in a run."""

    name: str
    status: str
    error: str = ""
    wall_time_s: Optional[float] = None


def _manifest_error(path, problem, fix):
    raise AIAIFInputError("The manifest {} {}; {}.".format(path, problem, fix))


def _flag(path, row, column, text):
    value = text.strip().lower()
    if value in TRUE_TEXTS:
        return True
    if value in FALSE_TEXTS:
        return False
    _manifest_error(path, "has {!r} in column {} of row {}".format(text, column, row),
                    "write true or false")


def read_manifest(path):
    """Read and check a manifest (see the module notes) before anything runs.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file.

    Returns
    -------
    list of Study
        In manifest order.

    Raises
    ------
    AIAIFInputError
        For a missing or unreadable file, no rows, missing or unknown
        columns, an empty, unusable or duplicate study name, a missing file
        or folder, or an option value ``quantify`` would refuse; the message
        names the row.
    """
    from .cli import quantify_arguments, quantify_options

    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        _manifest_error(path, "does not exist" if not os.path.exists(path) else "is not a file",
                        "pass a CSV file with columns study, perfusion and segmentation")
    base = os.path.dirname(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        _manifest_error(path, "cannot be read as CSV text ({})".format(type(error).__name__),
                        "save it as a UTF-8 CSV file")
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        _manifest_error(path, "is empty", "write a header row study,perfusion,segmentation and one row per study")
    header = [cell.strip() for cell in rows[0]]
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        _manifest_error(path, "has no column {}".format(" or ".join(missing)),
                        "name the columns study, perfusion and segmentation in the header row")
    options = quantify_options()
    known = set(REQUIRED_COLUMNS) | (set(options) - set(BATCH_DECIDED))
    unknown = [column for column in header if column not in known]
    if unknown:
        _manifest_error(path, "has the unknown column {!r}".format(unknown[0]),
                        "name optional columns after quantify's options ({})".format(
                            ", ".join(sorted(set(options) - set(BATCH_DECIDED)))))
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated:
        _manifest_error(path, "has the column {!r} twice".format(repeated[0]), "keep one")
    if len(rows) == 1:
        _manifest_error(path, "has no study rows", "add one row per study")
    studies, seen = [], {}
    for number, cells in enumerate(rows[1:], start=2):
        if len(cells) > len(header):
            _manifest_error(path, "has {} cells in row {} but {} columns".format(len(cells), number, len(header)),
                            "quote cells that contain commas")
        values = {column: (cells[index].strip() if index < len(cells) else "") for index, column in enumerate(header)}
        name = values["study"]
        if not _STUDY_NAME.match(name) or name in ("cohort_studies.csv", "cohort_segments.csv"):
            _manifest_error(path, "has the study name {!r} in row {}, which cannot name a folder".format(name, number),
                            "use a non-empty name without slashes that does not start with a dot")
        if name.lower() in seen:
            _manifest_error(path, "names the study {!r} twice (rows {} and {})".format(name, seen[name.lower()],
                                                                                    number),
                            "give every study a unique name")
        seen[name.lower()] = number
        for column in PATH_COLUMNS:
            if values.get(column):
                values[column] = os.path.normpath(os.path.join(base, os.path.expanduser(values[column])))
                if not os.path.exists(values[column]):
                    _manifest_error(path, "names the {} {} in row {}, which does not exist".format(
                        column, values[column], number), "correct the path (relative paths start at the manifest's "
                                                         "folder)")
        for column in ("perfusion", "segmentation"):
            if not values[column]:
                _manifest_error(path, "has no {} in row {}".format(column, number), "fill in the path")
        aif = values.get("aif", "")
        if aif and aif not in ("ai", "saturated"):
            values["aif"] = os.path.normpath(os.path.join(base, os.path.expanduser(aif)))
            if not os.path.isfile(values["aif"]):
                _manifest_error(path, "names the AIF file {} in row {}, which does not exist".format(values["aif"],
                                                                                                   number),
                                "correct the path, or write ai or saturated")
        argv = [values["perfusion"], values["segmentation"]]
        dicom_output = False
        for column in header:
            if column in REQUIRED_COLUMNS or not values[column].strip():
                continue
            option, takes_value = options[column]
            if takes_value:
                argv += [option, values[column]]
            elif _flag(path, number, column, values[column]):
                argv.append(option)
                dicom_output = dicom_output or column == "dicom_output"
        try:
            quantify_arguments(argv)
        except AIAIFInputError as error:
            _manifest_error(path, "has an invalid option in row {} ({})".format(number, str(error).rstrip(".")),
                            "correct that cell")
        studies.append(Study(name=name, row=number, argv=tuple(argv), dicom_output=dicom_output))
    return studies


def expected_files(study):
    """The files a complete result folder of ``study`` holds (``pipeline.ALWAYS_WRITTEN_FILES``, the DICOM map if asked)."""
    from .dicom_io.parametric_map import PARAMETRIC_MAP_FILE
    from .pipeline import ALWAYS_WRITTEN_FILES

    return sorted(list(ALWAYS_WRITTEN_FILES) + ([PARAMETRIC_MAP_FILE] if study.dicom_output else []))


def is_complete(output_dir, study):
    """True if ``output_dir/<study>`` holds every file of a finished result."""
    folder = os.path.join(output_dir, study.name)
    return os.path.isdir(folder) and all(os.path.isfile(os.path.join(folder, name)) for name in expected_files(study))


def quantify_study(study, output_dir, overwrite=False):
    """Quantify one study into ``output_dir/<study.name>`` (a Dask task; also callable directly).

    The result is written into a hidden staging folder in ``output_dir`` and
    renamed into place when complete, replacing an older result only with
    ``overwrite``.

    Returns
    -------
    StudyOutcome
        ``done``, or ``failed`` with the one-sentence error; never raises for
        a problem of the study.
    """
    from .cli import _give_ordinary_permissions, quantify_arguments, quantify_into

    started = time.perf_counter()
    staging = None
    try:
        target = os.path.join(output_dir, study.name)
        if os.path.exists(target) and not overwrite:
            raise AIAIFInputError("The folder {} exists but is not a complete result; remove it or pass "
                                  "--overwrite.".format(target))
        staging = tempfile.mkdtemp(prefix="." + study.name + _STAGING_MARK, dir=output_dir)
        _give_ordinary_permissions(staging, 0o777)  # mkdtemp's private 0700 would carry over to the results
        quantify_into(quantify_arguments(list(study.argv)), staging)
        if os.path.exists(target):
            replaced = tempfile.mkdtemp(prefix="." + study.name + _REPLACED_MARK, dir=output_dir)
            os.rename(target, os.path.join(replaced, "old"))
            os.rename(staging, target)
            shutil.rmtree(replaced, ignore_errors=True)
        else:
            os.rename(staging, target)
        staging = None
        return StudyOutcome(study.name, "done", "", round(time.perf_counter() - started, 3))
    except AIAIFInputError as error:
        message = str(error)
    except Exception as error:  # a bug or an unforeseen failure: recorded, never stops the cohort
        text = str(error).splitlines()[0] if str(error) else ""
        message = "Internal error ({}{}); please report it with this study.".format(
            type(error).__name__, ": " + text[:200] if text else "")
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return StudyOutcome(study.name, "failed", message, round(time.perf_counter() - started, 3))


def remove_stale_staging(output_dir):
    """Remove the staging and replaced folders an interrupted run left in ``output_dir``; their count."""
    removed = 0
    for name in os.listdir(output_dir):
        if name.startswith(".") and (_STAGING_MARK in name or _REPLACED_MARK in name):
            shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
            removed += 1
    return removed


def _result_row(output_dir, outcome):
    """The ``STUDIES_TABLE`` row of a study, with the results read from its folder when it has one."""
    row = {"study": outcome.name, "status": outcome.status, "error": outcome.error, "global_mbf_ml_min_g": "",
           "ischemic_territories": "", "n_warnings": "",
           "wall_time_s": "" if outcome.wall_time_s is None else "{:.3f}".format(outcome.wall_time_s)}
    if outcome.status in ("done", "skipped"):
        from .pipeline import OUTPUT_FILES

        with open(os.path.join(output_dir, outcome.name, OUTPUT_FILES["summary"])) as handle:
            summary = json.load(handle)
        median = summary["results"]["global_mbf_ml_min_g"]["median"]
        row.update(global_mbf_ml_min_g="" if median is None else "{:.6g}".format(median),
                   ischemic_territories=";".join(summary["results"]["ischemic_territories"]),
                   n_warnings=str(len(summary["warnings"])))
    return row


def _replace_file(path, write):
    """Write a file through ``write(stream)`` into a staging file that then replaces ``path`` whole."""
    from .cli import _give_ordinary_permissions

    directory = os.path.dirname(path)
    handle, staging = tempfile.mkstemp(prefix="." + os.path.basename(path) + _STAGING_MARK, dir=directory)
    try:
        with os.fdopen(handle, "w", newline="") as stream:
            write(stream)
        _give_ordinary_permissions(staging, 0o666)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)


def write_cohort_tables(output_dir, studies, outcomes):
    """Write ``STUDIES_TABLE`` and ``SEGMENTS_TABLE`` (each replaced whole, never half-written).

    Parameters
    ----------
    output_dir : str
        The batch's output directory.
    studies : list of Study
        Manifest order.
    outcomes : dict of str -> StudyOutcome
        By study name; a study without one is ``pending``.
    """
    from .pipeline import OUTPUT_FILES

    rows = [_result_row(output_dir, outcomes.get(study.name, StudyOutcome(study.name, "pending")))
            for study in studies]

    def studies_table(stream):
        writer = csv.DictWriter(stream, fieldnames=STUDIES_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)

    def segments_table(stream):
        writer = None
        for row in rows:
            if row["status"] not in ("done", "skipped"):
                continue
            with open(os.path.join(output_dir, row["study"], OUTPUT_FILES["segments"]), newline="") as handle:
                table = list(csv.reader(handle))
            if writer is None:
                writer = csv.writer(stream)
                writer.writerow(["study"] + table[0])
            writer.writerows([row["study"]] + cells for cells in table[1:])
        if writer is None:
            csv.writer(stream).writerow(["study"])

    _replace_file(os.path.join(output_dir, STUDIES_TABLE), studies_table)
    _replace_file(os.path.join(output_dir, SEGMENTS_TABLE), segments_table)


class BatchResult(NamedTuple):
    """The counts of a batch run and every study's outcome (manifest order)."""

    outcomes: list
    n_done: int
    n_failed: int
    n_skipped: int


def _progress_text(counts, total):
    return "done {}, failed {}, skipped {}, remaining {} of {}".format(
        counts["done"], counts["failed"], counts["skipped"],
        total - counts["done"] - counts["failed"] - counts["skipped"], total)


def _lock(output_dir):
    """An exclusive lock on the output directory for this run (a second run refuses); None where unsupported."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock
        return None
    handle = open(os.path.join(output_dir, LOCK_FILE), "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise AIAIFInputError("Another batch run is writing into {}; wait for it to finish or choose another output "
                              "directory.".format(output_dir))
    return handle


def _client(workers, scheduler):
    """A Dask client: on an existing scheduler, or on a new local cluster of ``workers`` processes."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    # The workers' whole environment comes from the pre-spawn environment: only it is in place before they start
    # (glibc reads its malloc settings once), and ours leaves out distributed's malloc trim threshold.
    dask.config.set({"distributed.scheduler.allowed-failures": 0, "distributed.admin.tick.limit": "60s",
                     "distributed.nanny.pre-spawn-environ": dict(WORKER_ENVIRONMENT)})
    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as error:
            raise AIAIFInputError("Cannot reach the Dask scheduler at {} ({}); check the address or leave out "
                                  "--scheduler.".format(scheduler, type(error).__name__))
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    return Client(cluster), cluster


def default_workers():
    """Local workers by default: one per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_batch(manifest_path, output_dir, workers=None, scheduler=None, overwrite=False, progress=None,
              on_study=None):
    """Quantify every study of a manifest on Dask; resumable.

    Parameters
    ----------
    manifest_path : str
        The manifest (checked whole first, ``read_manifest``).
    output_dir : str
        Directory of the study folders and the cohort tables (created if missing).
    workers : int, optional
        Local worker processes (default ``default_workers``); ignored with ``scheduler``.
    scheduler : str, optional
        Address of an existing Dask scheduler (e.g. ``tcp://host:8786``).
    overwrite : bool
        Quantify again the studies whose result is already complete.
    progress : callable, optional
        ``progress(fraction_0_to_1, message)`` after each study, the message
        counting studies done, failed, skipped and remaining.
    on_study : callable, optional
        ``on_study(outcome)`` after each study.

    Returns
    -------
    BatchResult

    Raises
    ------
    AIAIFInputError
        For a bad manifest or output directory, before any study runs.
    """
    studies = read_manifest(manifest_path)
    output_dir = os.path.abspath(os.fspath(output_dir))
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise AIAIFInputError("Output path {} is a file, not a directory; choose a directory path.".format(output_dir))
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as error:
        raise AIAIFInputError("Cannot create {} ({}); choose a writable output directory.".format(
            output_dir, error.strerror))
    lock = _lock(output_dir)
    try:
        return _run_locked(studies, output_dir, workers, scheduler, overwrite, progress, on_study)
    finally:
        if lock is not None:
            lock.close()


def _run_locked(studies, output_dir, workers, scheduler, overwrite, progress, on_study):
    remove_stale_staging(output_dir)
    outcomes = {}
    counts = {"done": 0, "failed": 0, "skipped": 0}
    to_run = []
    for study in studies:
        if is_complete(output_dir, study) and not overwrite:
            outcomes[study.name] = StudyOutcome(study.name, "skipped")
            counts["skipped"] += 1
        else:
            to_run.append(study)
    total = len(studies)

    def record(outcome):
        outcomes[outcome.name] = outcome
        counts[outcome.status] += 1
        write_cohort_tables(output_dir, studies, outcomes)
        if on_study is not None:
            on_study(outcome)
        if progress is not None:
            progress(sum(counts.values()) / total, _progress_text(counts, total))

    write_cohort_tables(output_dir, studies, outcomes)
    if progress is not None:
        progress(sum(counts.values()) / total, _progress_text(counts, total))
    if to_run:
        _run_on_dask(to_run, output_dir, workers or default_workers(), scheduler, overwrite, record)
    ordered = [outcomes[study.name] for study in studies]
    return BatchResult(outcomes=ordered, n_done=counts["done"], n_failed=counts["failed"],
                       n_skipped=counts["skipped"])


def _run_on_dask(studies, output_dir, workers, scheduler, overwrite, record):
    from distributed import as_completed

    client, cluster = _client(workers, scheduler)
    try:
        run = uuid.uuid4().hex[:8]  # keys unique to this run, also on a shared scheduler
        futures = {client.submit(quantify_study, study, output_dir, overwrite, key="quantify-{}-{}".format(
            run, index)): study for index, study in enumerate(studies)}
        for future in as_completed(futures):
            study = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # the worker process died (KilledWorker) or the task could not run
                outcome = StudyOutcome(study.name, "failed", "The worker process quantifying this study stopped "
                                                             "({}); run the study alone with quantify to see "
                                                             "why.".format(type(error).__name__))
            record(outcome)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

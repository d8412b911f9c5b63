"""The evaluation's CSV input: paired AIF curves and paired segment MBF.

``_read_csv_rows`` and ``_number`` also read the paired-AIF CSV of training
(``training.read_paired_aif_csv``).
"""

import csv
import math

import numpy as np

from .. import constants as K
from ..errors import AIAIFInputError
from .aif_metrics import MIN_CURVE_FRAMES

#: Columns of the AIF pairs CSV, in order.
AIF_CSV_COLUMNS = ("case", "time_s", "reference", "test")
#: Columns of the segment MBF CSV, in order.
MBF_CSV_COLUMNS = ("patient", "segment", "reference", "test")


def _read_csv_rows(path, columns, what):
    """Rows of a CSV file after its header, as (line number, list of stripped cells)."""
    expected = ",".join(columns)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            lines = list(csv.reader(handle))
    except FileNotFoundError:
        raise AIAIFInputError("The {} file {} does not exist; pass the path of a CSV file with columns "
                              "{}.".format(what, path, expected))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise AIAIFInputError("Cannot read the {} file {} ({}); pass a UTF-8 CSV file with columns "
                              "{}.".format(what, path, error, expected))
    header = [cell.strip().lower() for cell in lines[0]] if lines else []
    if tuple(header) != tuple(columns):
        shown = ",".join(header)
        shown = shown if len(shown) <= 60 else shown[:60] + "..."  # a wrong file may have a huge first line
        raise AIAIFInputError("The {} file {} has header '{}' but must start with the header line '{}'.".format(
            what, path, shown, expected))
    rows = []
    for number, cells in enumerate(lines[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(columns):
            raise AIAIFInputError("Line {} of {} has {} values but the header has {} ({}); fix that "
                                  "row.".format(number, path, len(cells), len(columns), expected))
        rows.append((number, [cell.strip() for cell in cells]))
    if not rows:
        raise AIAIFInputError("The {} file {} has no data rows below its header; add one row per "
                              "value.".format(what, path))
    return rows


def _number(text, column, number, path, allow_missing=False):
    """One cell as a float: finite, or NaN for an empty / 'nan' cell when ``allow_missing``."""
    try:
        value = float(text) if text or not allow_missing else math.nan
    except ValueError:
        value = None
    if value is None or math.isinf(value) or (math.isnan(value) and not allow_missing):
        raise AIAIFInputError("Line {} of {}: {} value '{}' is not a finite number; fix that cell.".format(
            number, path, column, text))
    return value


def read_aif_cases_csv(path):
    """Read paired AIF curves with their case identifiers from a CSV file.

    Parameters
    ----------
    path : str
        CSV with the header ``case,time_s,reference,test``: one row per frame,
        the rows of each case together, times in s strictly increasing within
        a case; reference and test curves in the same units.

    Returns
    -------
    case_ids : list of str
        Cases in file order.
    times_s, reference, test : list of numpy.ndarray
        One 1-D array per case: frame times, s, and the two curves.

    Raises
    ------
    AIAIFInputError
        Missing or unreadable file, wrong header, wrong number of values in a
        row, a non-numeric or non-finite value, an empty case name, a case
        whose rows are split, times not strictly increasing, or a case with
        fewer than ``MIN_CURVE_FRAMES`` frames.
    """
    cases = {}
    previous_case = None
    for number, (case, *cells) in _read_csv_rows(path, AIF_CSV_COLUMNS, "AIF pairs"):
        if not case:
            raise AIAIFInputError("Line {} of {} has an empty case; name the case of every row.".format(
                number, path))
        if case in cases and case != previous_case:
            raise AIAIFInputError("Line {} of {}: the rows of case '{}' are not together; sort the file by "
                                  "case.".format(number, path, case))
        values = [_number(text, column, number, path) for text, column in zip(cells, AIF_CSV_COLUMNS[1:])]
        frames = cases.setdefault(case, [])
        if frames and values[0] <= frames[-1][0]:
            raise AIAIFInputError("Line {} of {}: time {} s of case '{}' is not after the previous frame's; "
                                  "times must increase strictly within a case.".format(number, path, cells[0],
                                                                                       case))
        frames.append(values)
        previous_case = case
    for case, frames in cases.items():
        if len(frames) < MIN_CURVE_FRAMES:
            raise AIAIFInputError("Case '{}' in {} has {} frames; each case needs at least {}.".format(
                case, path, len(frames), MIN_CURVE_FRAMES))
    columns = [np.array(frames, dtype=float).T for frames in cases.values()]
    return (list(cases), [c[0] for c in columns], [c[1] for c in columns], [c[2] for c in columns])


def read_aif_pairs_csv(path):
    """Read paired AIF curves from a CSV file (``read_aif_cases_csv`` without the case names).

    Parameters
    ----------
    path : str
        CSV with the header ``case,time_s,reference,test`` (times in s).

    Returns
    -------
    times_s, reference, test : list of numpy.ndarray
        One 1-D array per case, ready for ``analyse_aifs``.
    """
    return read_aif_cases_csv(path)[1:]


def read_segment_mbf_csv(path):
    """Read paired segment MBF from a CSV file.

    Parameters
    ----------
    path : str
        CSV with the header ``patient,segment,reference,test``: one row per
        patient and AHA segment (integer 1-16), MBF in mL/min/g (non-negative;
        an empty or ``nan`` cell marks a missing value).  Segments without a
        row are missing.

    Returns
    -------
    patient_ids : list of str
        Patients in order of first appearance.
    reference, test : numpy.ndarray, (n_patients, 16)
        Segment MBF, mL/min/g, NaN where missing.

    Raises
    ------
    AIAIFInputError
        Missing or unreadable file, wrong header, wrong number of values, an
        empty patient, a segment that is not an integer 1-16, a repeated
        patient and segment, or an MBF value that is not a non-negative number.
    """
    rows = {}
    for number, (patient, segment_text, *cells) in _read_csv_rows(path, MBF_CSV_COLUMNS, "segment MBF"):
        try:
            segment = int(segment_text)
        except ValueError:
            segment = None
        if not patient or segment not in K.AHA_SEGMENTS:
            raise AIAIFInputError("Line {} of {}: need a patient and an AHA segment from {} to {}, got '{}' and "
                                  "'{}'.".format(number, path, K.AHA_SEGMENTS[0], K.AHA_SEGMENTS[-1], patient,
                                                 segment_text))
        values = [_number(text, column, number, path, allow_missing=True)
                  for text, column in zip(cells, MBF_CSV_COLUMNS[2:])]
        if any(value < 0 for value in values):
            raise AIAIFInputError("Line {} of {}: MBF cannot be negative; give values in mL/min/g.".format(
                number, path))
        patient_rows = rows.setdefault(patient, {})
        if segment in patient_rows:
            raise AIAIFInputError("Line {} of {} repeats segment {} of patient '{}'; keep one row per patient "
                                  "and segment.".format(number, path, segment, patient))
        patient_rows[segment] = values
    reference = np.full((len(rows), len(K.AHA_SEGMENTS)), np.nan)
    test = np.full_like(reference, np.nan)
    for row, segments in enumerate(rows.values()):
        for segment, (reference_value, test_value) in segments.items():
            column = K.AHA_SEGMENTS.index(segment)
            reference[row, column], test[row, column] = reference_value, test_value
    return list(rows), reference, test

"""The evaluation as a plain-text table laid out like the paper's results (``format_results_table``).

Also the text of a P value, a fitted line and Bland-Altman limits, which the
figures (``report``) share.
"""

import numpy as np

from .mbf import VESSELS


_LABEL_WIDTH = 30


def _fixed(value, digits=2):
    """A number with ``digits`` decimals, never "-0.00"."""
    return "{:.{d}f}".format(round(value, digits) + 0.0, d=digits)


def _median_iqr(summary, digits):
    if summary.n == 0:
        return "n/a"
    return "{} ({})".format(_fixed(summary.median, digits), _fixed(summary.iqr, digits))


def format_p_value(p_value):
    """A P value as text: two decimals, three below 0.01, "<0.001" below 0.001, "n/a" if NaN.

    Parameters
    ----------
    p_value : float
        Probability (dimensionless).

    Returns
    -------
    str
    """
    if not np.isfinite(p_value):
        return "n/a"
    if p_value < 0.001:
        return "<0.001"
    return _fixed(p_value, 2 if p_value >= 0.01 else 3)


#: Fewest pairs for which R^2 and limits of agreement are reported: two points
#: always lie on a line (R^2 = 1) and give a spread from a single difference.
MIN_PAIRS_FOR_SPREAD = 3
#: Below this many patients the table warns that its per-patient statistics
#: say little (project choice: a Mann-Whitney U test on fewer than 10 values
#: per group can hardly reach significance, and 95 % limits of agreement from
#: under 10 differences are wider than their own estimate).
SMALL_SAMPLE_PATIENTS = 10


def format_line_equation(line, r_squared_text="R^2"):
    """The fitted line as text, e.g. ``y = 0.93x + 0.28, R^2 = 0.74``.

    Parameters
    ----------
    line : LineFit
        Slope (dimensionless), intercept (units of the values), R^2.
    r_squared_text : str, optional
        How to write R^2 (e.g. ``"R$^2$"`` for matplotlib).

    Returns
    -------
    str
        Two decimals; "n/a" fields when the line is undefined, and R^2 "n/a"
        through fewer than ``MIN_PAIRS_FOR_SPREAD`` points (two points always
        give R^2 = 1).
    """
    if not np.isfinite(line.slope):
        return "y = n/a (fewer than two distinct reference values)"
    if line.n < MIN_PAIRS_FOR_SPREAD:
        return "y = {}x {} {} through {} points, {} n/a (needs {} or more)".format(
            _fixed(line.slope), "-" if _fixed(line.intercept)[0] == "-" else "+", _fixed(abs(line.intercept)),
            line.n, r_squared_text, MIN_PAIRS_FOR_SPREAD)
    return "y = {}x {} {}, {} = {}".format(_fixed(line.slope), "-" if _fixed(line.intercept)[0] == "-" else "+",
                                          _fixed(abs(line.intercept)), r_squared_text, _fixed(line.r_squared))


def format_limits_of_agreement(agreement):
    """Bland-Altman bias and limits as text, e.g. ``-0.11 (-0.80 to 0.58)``, in the units of the values.

    Parameters
    ----------
    agreement : BlandAltman

    Returns
    -------
    str
        ``bias (limits n/a: need 3 or more pairs)`` for fewer pairs than
        ``MIN_PAIRS_FOR_SPREAD``.
    """
    if agreement.n < MIN_PAIRS_FOR_SPREAD or not np.isfinite(agreement.sd):
        return "{} (limits n/a: need {} or more pairs)".format(_fixed(agreement.bias), MIN_PAIRS_FOR_SPREAD)
    return "{} ({} to {})".format(*[_fixed(value) for value in (agreement.bias, agreement.lower_loa,
                                                                 agreement.upper_loa)])


def counted(count, noun, plural=None):
    """``1 patient``, ``2 patients``: a count with its noun in the right number."""
    return "{} {}".format(count, noun if count == 1 else (plural or noun + "s"))


def _percent_of(count, total, percent):
    return "{} % ({} of {})".format(_fixed(percent, 1), count, total)


def _row(label, cells, width):
    return (label.ljust(_LABEL_WIDTH) + "".join(cell.ljust(width) for cell in cells)).rstrip()


def _comparison_row(label, comparison, digits, width):
    return _row(label, [_median_iqr(comparison.reference, digits), _median_iqr(comparison.test, digits),
                        format_p_value(comparison.p_value)], width)


def _aif_lines(result, names, width):
    lines = ["AIF curves ({})".format(counted(result.n_curves, "pair")),
             _row("", list(names) + ["P"], width),
             _row("NMSE (%), median (IQR)", ["", _median_iqr(result.nmse, 1)], width),
             _row("NMSE >= {:g} %".format(result.poor_threshold_percent),
                  ["", _percent_of(result.n_poor, result.n_curves, result.poor_percent)], width)]
    metrics = (("PV (normalised units)", result.peak_value), ("TTP (s)", result.time_to_peak_s),
               ("FWHM (s)", result.fwhm_s))
    for label, comparison in metrics:
        lines.append(_comparison_row(label, comparison, 2, width))
    for label, comparison in metrics:
        for name, summary in zip(names, (comparison.reference, comparison.test)):
            if summary.n < result.n_curves:
                lines.append("  {} undefined for {} of {} {} curves (excluded).".format(
                    label.split(" ")[0], result.n_curves - summary.n, result.n_curves, name))
    return lines


def _mbf_lines(result, names, width):
    levels = (("patient", result.per_patient), ("segment", result.per_segment))
    n_patients = result.per_patient.line.n
    lines = ["Stress MBF (mL/min/g), {}, {}".format(counted(n_patients, "patient"),
                                                   counted(result.per_segment.line.n, "segment")),
             _row("", list(names) + ["P"], width)]
    for level, values in levels:
        lines.append(_comparison_row("Per {}, median (IQR)".format(level), values.comparison, 2, width))
    lines.append("Least-squares line y = a x + b (y: {}, x: {})".format(names[1], names[0]))
    for level, values in levels:
        lines.append(_row("  Per {}".format(level), [format_line_equation(values.line)], width))
    lines.append("Bland-Altman: {} - {}, bias (95 % limits of agreement)".format(names[1], names[0]))
    for level, values in levels:
        lines.append(_row("  Per {}".format(level), [format_limits_of_agreement(values.bland_altman)], width))
    lines.append("Diagnosis agreement at {:g} mL/min/g".format(result.threshold_ml_min_g))
    for label, agreement in (("  Segments", result.segment_agreement),
                             ("  Vessels ({})".format("/".join(VESSELS)), result.vessel_agreement)):
        lines.append(_row(label, [_percent_of(agreement.n_match, agreement.n_total, agreement.percent)], width))
    if n_patients < SMALL_SAMPLE_PATIENTS:
        lines.append("Caution: with only {} the per-patient P, R^2 and limits of agreement say little; the paper's "
                     "comparison needs {} or more patients.".format(counted(n_patients, "patient"),
                                                                  SMALL_SAMPLE_PATIENTS))
    return lines


def format_results_table(aif_result, mbf_result=None, reference_name="Reference", test_name="Test"):
    """Plain-text table of the evaluation laid out like the paper's results.

    Parameters
    ----------
    aif_result : AIFResult
        From ``analyse_aifs``.
    mbf_result : MBFResult or None, optional
        From ``analyse_mbf``; ``None`` leaves the MBF part out.
    reference_name, test_name : str, optional
        Column headers for the reference and the test method.

    Returns
    -------
    str
        The table: AIF NMSE median (IQR) (%) and share >= the poor threshold;
        PV (normalised units), TTP (s), FWHM (s) median (IQR) with P; MBF
        (mL/min/g) median (IQR) with P, line and R^2, bias and limits of
        agreement per patient and per segment; diagnosis agreement % (k of n)
        for segments and vessels.  No trailing newline.
    """
    names = (str(reference_name), str(test_name))
    width = max(len(names[0]), len(names[1]), 16) + 2
    lines = _aif_lines(aif_result, names, width)
    if mbf_result is not None:
        lines += [""] + _mbf_lines(mbf_result, names, width)
    return "\n".join(lines)

"""The paper's evaluation protocol [Scannell2022, "Evaluation" and "Results"].

A test method (the AI-AIF in the paper, here whatever is passed as "test") is
compared with a reference (the dual-sequence AIF in the paper) in two stages:

AIF curves
    NMSE between the test and reference curve of each case, reported as
    median (IQR) and as the share of curves with NMSE at or above
    ``constants.POOR_AIF_NMSE_PERCENT``; peak value (PV), time-to-peak (TTP)
    and full width at half maximum (FWHM) of every curve, whose reference and
    test distributions are compared with a two-sided Mann-Whitney U test.
MBF
    Segment stress MBF with both AIFs: median (IQR), Mann-Whitney U,
    Bland-Altman bias and 95 % limits of agreement, least-squares line and
    R^2, per patient and per AHA segment; agreement of the ischaemia call at
    ``constants.ISCHAEMIA_THRESHOLD_ML_MIN_G`` for segments and for coronary
    vessels.

Modules, one concept each:

* ``results`` -- the result structures (``AIFResult``, ``MBFResult`` and
  their parts: ``Summary``, ``MetricComparison``, ``CurveMetrics``,
  ``LineFit``, ``BlandAltman``, ``MBFLevel``, ``Agreement``);
* ``statistics`` -- median (IQR), Mann-Whitney U, Bland-Altman, least-squares
  line, agreement of the ischaemia call (``summarise``,
  ``compare_distributions``, ``bland_altman``, ``fit_line``,
  ``diagnosis_agreement``);
* ``aif_metrics`` -- the AIF-curve stage (``nmse_percent``,
  ``curve_metrics``, ``validate_aif_pairs``, ``analyse_aifs``);
* ``mbf`` -- the MBF stage (``patient_mbf``, ``vessel_mbf``, ``analyse_mbf``,
  ``VESSELS``);
* ``table`` -- the results as a plain-text table (``format_results_table``)
  and the text of P values, lines and limits of agreement;
* ``csv_input`` -- paired AIF curves and segment MBF from CSV files
  (``read_aif_cases_csv``, ``read_aif_pairs_csv``, ``read_segment_mbf_csv``).

The definitions the paper does not spell out are stated in the module
that applies them: NMSE, PV, TTP and FWHM in ``aif_metrics``; IQR,
Bland-Altman and the line in ``statistics``; per-patient MBF, missing values
and ischaemia in ``mbf``.  All statistics use SciPy [Scannell2022: "All
statistical analysis was performed in Python using SciPy"].

Every public name is importable from the package
(``AIAIFLib.evaluation.<name>``), and so are ``_read_csv_rows`` and
``_number``, with which ``training`` reads its paired-AIF CSV.  A constant is
read through its own name by each module that uses it: to change one at run
time (a test's ``monkeypatch``), set it on those modules, not on the package
(``MIN_CURVE_FRAMES``: ``aif_metrics`` and ``csv_input``; ``VESSELS``:
``mbf`` and ``table``).
"""

from .aif_metrics import MIN_CURVE_FRAMES, analyse_aifs, curve_metrics, nmse_percent, validate_aif_pairs
from .csv_input import (AIF_CSV_COLUMNS, MBF_CSV_COLUMNS, _number, _read_csv_rows,  # noqa: F401 (training uses them)
                        read_aif_cases_csv, read_aif_pairs_csv, read_segment_mbf_csv)
from .mbf import VESSELS, analyse_mbf, patient_mbf, vessel_mbf
from .results import (AIFResult, Agreement, BlandAltman, CurveMetrics, LineFit, MBFLevel, MBFResult, MetricComparison,
                      Summary)
from .statistics import (LOA_SD_MULTIPLIER, bland_altman, compare_distributions, diagnosis_agreement, fit_line,
                         summarise)
from .table import (MIN_PAIRS_FOR_SPREAD, SMALL_SAMPLE_PATIENTS, counted, format_limits_of_agreement,
                    format_line_equation, format_p_value, format_results_table)

__all__ = [
    "AIFResult", "AIF_CSV_COLUMNS", "Agreement", "BlandAltman", "CurveMetrics", "LOA_SD_MULTIPLIER", "LineFit",
    "MBFLevel", "MBFResult", "MBF_CSV_COLUMNS", "MIN_CURVE_FRAMES", "MIN_PAIRS_FOR_SPREAD", "MetricComparison",
    "SMALL_SAMPLE_PATIENTS", "Summary", "VESSELS", "analyse_aifs", "analyse_mbf", "bland_altman",
    "compare_distributions", "counted", "curve_metrics", "diagnosis_agreement", "fit_line",
    "format_limits_of_agreement", "format_line_equation", "format_p_value", "format_results_table",
    "nmse_percent", "patient_mbf", "read_aif_cases_csv", "read_aif_pairs_csv", "read_segment_mbf_csv",
    "summarise", "validate_aif_pairs", "vessel_mbf",
]

"""Figures of the evaluation, written as PNG files.

Uses ``matplotlib.figure.Figure`` with the Agg canvas directly: no pyplot, no
global backend, no display needed, so it is safe inside 3D Slicer and on
headless machines.  Layouts follow the paper [Scannell2022]: example curves
(its Figure 2), box plots of PV, TTP and FWHM (Figure 3) and MBF agreement
(Figure 5).
"""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from . import evaluation
from .errors import AIAIFInputError

#: Resolution of the PNG files, dots per inch.
DPI = 120
#: Example curves drawn per field strength in ``plot_saturation_examples``.
MAX_SATURATION_EXAMPLES = 3
#: Line colours of the reference and the test method.
REFERENCE_COLOUR = "tab:blue"
TEST_COLOUR = "tab:red"


def _figure(n_rows, n_columns, panel_size_in=(4.2, 3.3)):
    figure = Figure(figsize=(panel_size_in[0] * n_columns, panel_size_in[1] * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_columns, squeeze=False)
    return figure, axes


def _save(figure, path):
    try:
        figure.savefig(path, format="png", dpi=DPI)
    except OSError as error:
        raise AIAIFInputError("Cannot write the figure {} ({}); choose a writable path.".format(
            path, error.strerror or error))


def plot_saturation_examples(path, pairs_by_field):
    """Saturated versus reference AIFs, and the true concentration, per field strength.

    Parameters
    ----------
    path : str
        PNG file to write.
    pairs_by_field : dict of float -> simulation.AIFPairs
        Field strength (T) to simulated pairs; the first
        ``MAX_SATURATION_EXAMPLES`` pairs of each are drawn.  Signals are
        shown relative to the pre-contrast signal S0 (dimensionless),
        concentrations in mM, against time in s.
    """
    if not pairs_by_field:
        raise AIAIFInputError("No AIF pairs to plot; pass at least one field strength.")
    figure, axes = _figure(len(pairs_by_field), 2)
    colours = ["C{}".format(k) for k in range(MAX_SATURATION_EXAMPLES)]
    for (signal_axes, conc_axes), field in zip(axes, sorted(pairs_by_field)):
        pairs = pairs_by_field[field]
        for k in range(min(len(pairs), MAX_SATURATION_EXAMPLES)):
            times, s0 = pairs.times_s[k], pairs.baseline_signal[k]
            signal_axes.plot(times, pairs.reference[k] / s0, color=colours[k], linestyle="-")
            signal_axes.plot(times, pairs.saturated[k] / s0, color=colours[k], linestyle="--")
            conc_axes.plot(times, pairs.conc_mM[k], color=colours[k])
        signal_axes.set_title("{:g} T: signal, saturated vs reference".format(field))
        signal_axes.set_ylabel("Signal / pre-contrast signal S0")
        conc_axes.set_title("{:g} T: true blood concentration".format(field))
        conc_axes.set_ylabel("Gd concentration (mM)")
        signal_axes.legend([Line2D([], [], color="k", linestyle="-"), Line2D([], [], color="k", linestyle="--")],
                           ["reference (unsaturated)", "saturated"], fontsize="small")
    for ax in axes.ravel():
        ax.set_xlabel("Time (s)")
    _save(figure, path)


def plot_example_aifs(path, times_s, reference, test, reference_name="Reference", test_name="Test"):
    """Example reference and test curves with the lowest, median and highest NMSE (the paper's Figure 2).

    Parameters
    ----------
    path : str
        PNG file to write.
    times_s, reference, test : array_like
        As ``evaluation.analyse_aifs``: frame times (s) and curves, an
        (n, n_frames) array or lists of 1-D arrays.
    reference_name, test_name : str, optional
        Legend labels.
    """
    times, reference, test = evaluation.validate_aif_pairs(times_s, reference, test)
    nmse = np.array([evaluation.nmse_percent(r, s) for r, s in zip(reference, test)])
    order = np.argsort(nmse, kind="stable")
    picks = [("lowest NMSE", order[0]), ("median NMSE", order[(order.size - 1) // 2]),
             ("highest NMSE", order[-1])][:order.size]
    figure, axes = _figure(1, len(picks))
    for ax, (label, index) in zip(axes[0], picks):
        t = times[index] - times[index][0]
        ax.plot(t, reference[index], color=REFERENCE_COLOUR, marker=".", label=reference_name)
        ax.plot(t, test[index], color=TEST_COLOUR, marker=".", linestyle="--", label=test_name)
        ax.set_title("Curve {}: {}, NMSE {:.1f} %".format(index, label, nmse[index]))
        ax.set_xlabel("Time from first frame (s)")
        ax.set_ylabel("AIF (normalised units)")
        ax.legend(fontsize="small")
    _save(figure, path)


def plot_aif_metric_boxplots(path, aif_result, reference_name="Reference", test_name="Test"):
    """Box plots of PV, TTP and FWHM of reference and test AIFs (the paper's Figure 3).

    Parameters
    ----------
    path : str
        PNG file to write.
    aif_result : evaluation.AIFResult
        From ``evaluation.analyse_aifs``.
    reference_name, test_name : str, optional
        Box labels.
    """
    panels = (("Peak value", "PV (normalised units)", aif_result.peak_value),
              ("Time to peak", "TTP (s)", aif_result.time_to_peak_s),
              ("Full width at half maximum", "FWHM (s)", aif_result.fwhm_s))
    figure, axes = _figure(1, len(panels), panel_size_in=(3.4, 3.6))
    for ax, (title, label, comparison) in zip(axes[0], panels):
        samples = [values[np.isfinite(values)] for values in (comparison.reference_values, comparison.test_values)]
        ax.boxplot(samples)
        ax.set_xticks([1, 2])
        ax.set_xticklabels([reference_name, test_name])
        p_text = evaluation.format_p_value(comparison.p_value)
        ax.set_title("{}\nP {}{}".format(title, "" if p_text.startswith("<") else "= ", p_text))
        ax.set_ylabel(label)
    _save(figure, path)


def _scatter_panel(ax, level, reference_name, test_name, what):
    reference, test = level.comparison.reference_values, level.comparison.test_values
    line = level.line
    ax.scatter(reference, test, s=14, alpha=0.7)
    common = np.array([min(reference.min(), test.min()), max(reference.max(), test.max())])
    ax.plot(common, common, color="grey", linestyle=":", label="identity")
    if np.isfinite(line.slope):
        span = np.array([reference.min(), reference.max()])
        ax.plot(span, line.slope * span + line.intercept, color="k",
                label=evaluation.format_line_equation(line, r_squared_text="R$^2$"))
    ax.set_title("{}: {} vs {}".format(what, test_name, reference_name))
    ax.set_xlabel("{} stress MBF (mL/min/g)".format(reference_name))
    ax.set_ylabel("{} stress MBF (mL/min/g)".format(test_name))
    ax.legend(fontsize="small")


def _bland_altman_panel(ax, level, reference_name, test_name, what):
    reference, test = level.comparison.reference_values, level.comparison.test_values
    agreement = level.bland_altman
    ax.scatter(0.5 * (reference + test), test - reference, s=14, alpha=0.7)
    ax.axhline(agreement.bias, color="k", label="bias (LoA): " + evaluation.format_limits_of_agreement(agreement))
    if np.isfinite(agreement.sd):
        for limit in (agreement.lower_loa, agreement.upper_loa):
            ax.axhline(limit, color="k", linestyle="--")
        ax.plot([], [], color="k", linestyle="--", label="95 % limits of agreement")
    ax.set_title("{}: Bland-Altman".format(what))
    ax.set_xlabel("Mean of both stress MBF (mL/min/g)")
    ax.set_ylabel("{} - {} (mL/min/g)".format(test_name, reference_name))
    ax.legend(fontsize="small")


def plot_mbf_agreement(path, mbf_result, reference_name="Reference", test_name="Test"):
    """Scatter with the least-squares line and Bland-Altman plots, per patient and per segment (Figure 5).

    Parameters
    ----------
    path : str
        PNG file to write.
    mbf_result : evaluation.MBFResult
        From ``evaluation.analyse_mbf`` (MBF in mL/min/g).
    reference_name, test_name : str, optional
        Axis labels.
    """
    figure, axes = _figure(2, 2, panel_size_in=(4.6, 3.8))
    levels = (("Per patient", mbf_result.per_patient), ("Per segment", mbf_result.per_segment))
    for column, (what, level) in enumerate(levels):
        _scatter_panel(axes[0, column], level, reference_name, test_name, what)
        _bland_altman_panel(axes[1, column], level, reference_name, test_name, what)
    _save(figure, path)

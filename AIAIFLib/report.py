"""Figures of the evaluation, written as PNG files.

Uses ``matplotlib.figure.Figure`` with the Agg canvas directly: no pyplot, no
global backend, no display needed, so it is safe inside 3D Slicer and on
headless machines.  Layouts follow the paper [Scannell2022]: example curves
(its Figure 2), box plots of PV, TTP and FWHM (Figure 3) and MBF agreement
(Figure 5).
"""

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Wedge

from . import constants as K
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
    if np.isfinite(agreement.sd) and agreement.n >= evaluation.MIN_PAIRS_FOR_SPREAD:
        for limit in (agreement.lower_loa, agreement.upper_loa):
            ax.axhline(limit, color="k", linestyle="--")
        ax.plot([], [], color="k", linestyle="--", label="95 % limits of agreement")
    ax.set_title("{}: Bland-Altman".format(what))
    ax.set_xlabel("Mean of both stress MBF (mL/min/g)")
    ax.set_ylabel("{} - {} (mL/min/g)".format(test_name, reference_name))
    # Below the axes: inside them the legend would hide the upper limit of agreement or points.
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)


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


# --- Quantification report ----------------------------------------------------------------------

#: Colour scale of MBF maps and the bullseye, mL/min/g.  Project choice: stress
#: MBF of healthy myocardium lies around 2-4 mL/min/g; 5 leaves headroom and
#: keeps the 1.35 mL/min/g threshold in the lower third of the scale.
MBF_COLOUR_RANGE_ML_MIN_G = (0.0, 5.0)
#: Perceptually uniform colour map of MBF maps and the bullseye.
MBF_COLOURMAP = "viridis"
#: Face colour of segments without a value (NaN).
MISSING_SEGMENT_COLOUR = "0.8"
#: Colour of MBF above the top of the colour scale (maps, bullseye), shown on
#: the colour bars as an arrow: no value is clipped into the scale's top
#: colour unseen (project choice: magenta is not in viridis).
OVERFLOW_COLOUR = "magenta"
#: Outline and hatch colour of ischaemic segments (MBF below the threshold).
ISCHAEMIC_COLOUR = "tab:red"
#: Radii of the bullseye rings (apical, mid, basal), inner to outer, in units
#: of the outer radius; the centre (segment 17, the apical cap, not covered by
#: three short-axis slices) stays empty.
BULLSEYE_RING_RADII = ((0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
#: Pixels of margin kept around the myocardium when cropping the MBF maps
#: (at least; a quarter of the myocardium's extent if larger).
MAP_CROP_MARGIN_PIXELS = 6


class BullseyeGeometry(object):
    """Where ``plot_bullseye`` drew each AHA segment.

    Attributes
    ----------
    segments : numpy.ndarray of int, (16,)
        AHA segment numbers 1-16.
    centre_angle_deg : numpy.ndarray, (16,)
        Angle of each wedge's centre, degrees counter-clockwise from the
        axes' +x direction (90 = top, 180 = left), in [0, 360).
    span_deg : numpy.ndarray, (16,)
        Angular width of each wedge, degrees (60 basal/mid, 90 apical).
    inner_radius, outer_radius : numpy.ndarray, (16,)
        Radii of each wedge (outer edge of the bullseye = 1).
    ischaemic : numpy.ndarray of bool, (16,)
        Segments marked ischaemic (finite MBF below the threshold).
    patches : list of matplotlib.patches.Wedge
        The coloured wedges, segment 1 first.
    mappable : matplotlib.cm.ScalarMappable
        Colour scale of the wedges, for a colour bar.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)


def _ring_of_segment(segment):
    """Ring index (0 apical, 1 mid, 2 basal), first segment of the ring and segments in it."""
    if segment >= 13:
        return 0, 13, 4
    if segment >= 7:
        return 1, 7, 6
    return 2, 1, 6


def bullseye_wedge(segment):
    """Centre angle, angular span and radii of an AHA segment in the standard polar map.

    Standard AHA orientation [Cerqueira2002]: basal segments in the outer ring,
    apical in the inner ring; anterior (1, 7, 13) at the top, septum on the
    left, inferior at the bottom, lateral on the right, so the segments of
    each ring run counter-clockwise: 1 top, 2 upper left, 3 lower left,
    4 bottom, 5 lower right, 6 upper right; 13 top, 14 left, 15 bottom,
    16 right.

    Parameters
    ----------
    segment : int
        AHA segment 1-16.

    Returns
    -------
    tuple of float
        ``(centre_angle_deg, span_deg, inner_radius, outer_radius)``; angles
        counter-clockwise from +x (90 = top), radii with the outer edge at 1.
    """
    if segment not in K.AHA_SEGMENTS:
        raise AIAIFInputError("AHA segments are numbered 1-16, got {!r}.".format(segment))
    ring, first, count = _ring_of_segment(segment)
    span = 360.0 / count
    centre = (90.0 + span * (segment - first)) % 360.0
    inner, outer = BULLSEYE_RING_RADII[ring]
    return centre, span, inner, outer


def _segment_at_angle(ring, angle_deg):
    """AHA segment of a bullseye ring (0 apical, 1 mid, 2 basal) at the given angles (vectorised)."""
    first, count = ((13, 4), (7, 6), (1, 6))[ring]
    span = 360.0 / count
    return first + np.floor(((np.asarray(angle_deg) - 90.0 + 0.5 * span) % 360.0) / span).astype(int)


def _territory_index(segments):
    lookup = np.zeros(max(K.AHA_SEGMENTS) + 1, int)
    for index, members in enumerate(K.CORONARY_TERRITORIES.values()):
        lookup[list(members)] = index
    return lookup[segments]


def _colourmap(cmap):
    base = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    return base.with_extremes(bad="white", over=OVERFLOW_COLOUR)


def _text_colour(rgba):
    luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
    return "black" if luminance > 0.5 else "white"


def _segment_values(segment_mbf):
    try:
        values = np.asarray(segment_mbf, dtype=float)
    except (TypeError, ValueError):
        values = None
    if values is None or values.shape != (len(K.AHA_SEGMENTS),):
        raise AIAIFInputError("Segment MBF must be 16 numbers, AHA segments 1-16 in order in mL/min/g (NaN for a "
                              "missing segment).")
    if np.any(np.isinf(values)):
        raise AIAIFInputError("Segment MBF contains infinite values; use NaN for a missing segment.")
    return values


def plot_bullseye(ax, segment_mbf, threshold_ml_min_g=K.ISCHAEMIA_THRESHOLD_ML_MIN_G,
                  colour_range_ml_min_g=MBF_COLOUR_RANGE_ML_MIN_G, cmap=MBF_COLOURMAP, show_values=True,
                  title="Stress MBF per AHA segment (mL/min/g)", bound_segments=()):
    """Draw the AHA 16-segment polar map (bullseye) coloured by segment MBF.

    Segments are placed as in ``bullseye_wedge`` (segment 1 at the top, septum
    on the left).  Each wedge is coloured on the MBF scale and labelled with
    its number and value; segments without a value are grey ("n/a");
    ischaemic segments (MBF below the threshold) are hatched with a bold
    outline; borders between coronary territories (LAD, RCA, LCX) are drawn
    thicker.  Values above the colour scale take ``OVERFLOW_COLOUR``;
    segments whose MBF is a fit bound, not a measurement, are labelled
    "bound".

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes to draw into (its aspect is set to equal and its frame hidden).
    segment_mbf : array_like, (16,)
        Stress MBF of AHA segments 1-16, mL/min/g; NaN = no value.
    threshold_ml_min_g : float, optional
        Ischaemia threshold, mL/min/g (1.35 [Hsu2018]).
    colour_range_ml_min_g : tuple of float, optional
        MBF at the bottom and top of the colour scale, mL/min/g.
    cmap : str or matplotlib.colors.Colormap, optional
        Colour map (perceptually uniform by default).
    show_values : bool, optional
        Print segment numbers and values.
    title : str or None, optional
        Axes title.
    bound_segments : sequence of int, optional
        Segments whose MBF is a fit bound (``segments.csv``'s
        ``mbf_is_bound``).

    Returns
    -------
    BullseyeGeometry
        Wedge angles, radii, ischaemic flags, patches and the colour scale.
    """
    values = _segment_values(segment_mbf)
    colourmap = _colourmap(cmap)
    norm = Normalize(*colour_range_ml_min_g)
    segments = np.array(K.AHA_SEGMENTS)
    geometry = np.array([bullseye_wedge(segment) for segment in segments])
    ischaemic = np.isfinite(values) & (values < threshold_ml_min_g)
    patches = []
    for segment, value, (centre, span, inner, outer), low in zip(segments, values, geometry, ischaemic):
        face = colourmap(norm(value)) if np.isfinite(value) else MISSING_SEGMENT_COLOUR
        wedge = Wedge((0.0, 0.0), outer, centre - 0.5 * span, centre + 0.5 * span, width=outer - inner,
                      facecolor=face, edgecolor="white", linewidth=0.8, zorder=1)
        ax.add_patch(wedge)
        patches.append(wedge)
        if low:
            ax.add_patch(Wedge((0.0, 0.0), outer, centre - 0.5 * span, centre + 0.5 * span, width=outer - inner,
                               facecolor="none", edgecolor=ISCHAEMIC_COLOUR, hatch="///", linewidth=2.2, zorder=2))
        if show_values:
            radius = 0.5 * (inner + outer)
            x, y = radius * np.cos(np.radians(centre)), radius * np.sin(np.radians(centre))
            text = "{}\n{}".format(segment, "{:.2f}".format(value) if np.isfinite(value) else "n/a")
            if segment in bound_segments:
                text += "\nbound"
            colour = _text_colour(wedge.get_facecolor())
            box = dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.75) if low else None
            ax.text(x, y, text, ha="center", va="center", fontsize="small", fontweight="bold" if low else "normal",
                    color="black" if low else colour, bbox=box, zorder=4)
    _draw_territory_borders(ax)
    for radius in (BULLSEYE_RING_RADII[0][0], BULLSEYE_RING_RADII[-1][1]):
        ax.add_patch(Circle((0.0, 0.0), radius, facecolor="none", edgecolor="black", linewidth=0.8, zorder=3))
    ax.set_xlim(-1.12, 1.05)
    ax.set_ylim(-1.05, 1.14)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.text(-1.03, 0.0, "septal", rotation=90, ha="right", va="center", fontsize="x-small", color="0.3")
    ax.text(0.0, 1.03, "anterior", ha="center", va="bottom", fontsize="x-small", color="0.3")
    if title:
        ax.set_title(title)
    mappable = ScalarMappable(norm=norm, cmap=colourmap)
    mappable.set_array(np.array([]))
    return BullseyeGeometry(segments=segments, centre_angle_deg=geometry[:, 0], span_deg=geometry[:, 1],
                            inner_radius=geometry[:, 2], outer_radius=geometry[:, 3], ischaemic=ischaemic,
                            patches=patches, mappable=mappable)


def _draw_territory_borders(ax, linewidth=3.0, samples=1440):
    """Thick lines wherever two neighbouring bullseye segments belong to different coronary territories."""
    angles = np.arange(samples) * (360.0 / samples)
    # Radial borders inside each ring.
    for ring, (inner, outer) in enumerate(BULLSEYE_RING_RADII):
        first, count = ((13, 4), (7, 6), (1, 6))[ring]
        span = 360.0 / count
        for k in range(count):
            border = 90.0 + span * (k + 0.5)
            sides = _segment_at_angle(ring, [border - 1.0, border + 1.0])
            if _territory_index(sides[0]) != _territory_index(sides[1]):
                c, s = np.cos(np.radians(border)), np.sin(np.radians(border))
                ax.plot([inner * c, outer * c], [inner * s, outer * s], color="black", linewidth=linewidth,
                        solid_capstyle="butt", zorder=3)
    # Circular borders between rings.
    for ring in range(len(BULLSEYE_RING_RADII) - 1):
        radius = BULLSEYE_RING_RADII[ring][1]
        differ = _territory_index(_segment_at_angle(ring, angles)) != _territory_index(
            _segment_at_angle(ring + 1, angles))
        if not np.any(differ):
            continue
        theta = np.radians(np.append(angles, 360.0))
        x, y = radius * np.cos(theta), radius * np.sin(theta)
        keep = np.append(differ, differ[0])
        # Keep each run's end point so the arcs meet the radial borders.
        keep = keep | np.roll(keep, 1)
        ax.plot(np.where(keep, x, np.nan), np.where(keep, y, np.nan), color="black", linewidth=linewidth,
                solid_capstyle="butt", zorder=3)


def _territory_rows(territory_results, segment_mbf, threshold_ml_min_g):
    """(territory, MBF, ischaemic) rows from the accepted forms of ``territory_results``."""
    if territory_results is None:
        vessels = evaluation.vessel_mbf(segment_mbf[None, :])[0]
        return [(name, value, bool(value < threshold_ml_min_g)) for name, value in zip(evaluation.VESSELS, vessels)]
    if hasattr(territory_results, "keys") and "territory" in territory_results:
        # Column table (``segments.territory_results``): "territory", "mbf_ml_min_g", "ischemic" lists.
        names = list(territory_results["territory"])
        flags = territory_results.get("ischemic", territory_results.get("ischaemic", [None] * len(names)))
        values = territory_results.get("mbf_ml_min_g", [None] * len(names))
        territory_results = {name: {"mbf_ml_min_g": float("nan") if value is None else value, "ischaemic": flag}
                             for name, value, flag in zip(names, values, flags)}
    try:
        items = list(territory_results.items())
    except AttributeError:
        raise AIAIFInputError("Territory results must map each territory name to its MBF (mL/min/g) or to a "
                              "record with 'mbf_ml_min_g' and 'ischaemic'.")
    rows = []
    for name, entry in items:
        value, flag = entry, None
        if isinstance(entry, dict) or hasattr(entry, "__dict__"):
            fields = entry if isinstance(entry, dict) else vars(entry)
            value = next((fields[key] for key in ("mbf_ml_min_g", "vessel_mbf_ml_min_g", "mbf") if key in fields),
                         None)
            flag = next((fields[key] for key in ("ischaemic", "ischemic") if key in fields), None)
        number = _float_or_none(value)
        if number is None:
            raise AIAIFInputError("The territory result of {} has no MBF value; give 'mbf_ml_min_g' in "
                                  "mL/min/g.".format(name))
        computed = bool(number < threshold_ml_min_g)  # False for NaN: no value, no call
        rows.append((str(name), number, computed if flag is None else bool(flag)))
    return rows


def _float_or_none(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _crop_box(myocardium_mask):
    rows = np.flatnonzero(myocardium_mask.any(axis=(0, 2)))
    columns = np.flatnonzero(myocardium_mask.any(axis=(0, 1)))
    margin_j = max(MAP_CROP_MARGIN_PIXELS, int(0.25 * (rows[-1] - rows[0] + 1)))
    margin_i = max(MAP_CROP_MARGIN_PIXELS, int(0.25 * (columns[-1] - columns[0] + 1)))
    n_rows, n_columns = myocardium_mask.shape[1:]
    return (slice(max(rows[0] - margin_j, 0), min(rows[-1] + margin_j + 1, n_rows)),
            slice(max(columns[0] - margin_i, 0), min(columns[-1] + margin_i + 1, n_columns)))


def _validate_report_inputs(aif_times_s, aif_curves, mbf_map, myocardium_mask, slice_levels):
    times = np.asarray(aif_times_s, dtype=float)
    if times.ndim != 1 or times.size < 2:
        raise AIAIFInputError("The AIF frame times must be a 1-D array of at least two times in s.")
    if not aif_curves:
        raise AIAIFInputError("No AIF curves to plot; pass at least one, e.g. {'corrected': curve}.")
    curves = {}
    for name, curve in aif_curves.items():
        curve = np.asarray(curve, dtype=float)
        if curve.shape != times.shape:
            raise AIAIFInputError("The AIF curve {!r} has shape {} but there are {} frame times; pass one value "
                                  "per frame.".format(name, curve.shape, times.size))
        curves[str(name)] = curve
    mbf = np.asarray(mbf_map, dtype=float)
    mask = np.asarray(myocardium_mask, dtype=bool)
    if mbf.ndim != 3 or mask.shape != mbf.shape:
        raise AIAIFInputError("The MBF map and the myocardium mask must both have shape (slices, rows, columns); "
                              "got {} and {}.".format(mbf.shape, mask.shape))
    if not mask.any():
        raise AIAIFInputError("The myocardium mask is empty; check the Myocardium segment.")
    levels = tuple(str(level) for level in slice_levels)
    if len(levels) != mbf.shape[0]:
        raise AIAIFInputError("There are {} slice levels for {} slices; give one level per slice.".format(
            len(levels), mbf.shape[0]))
    return times, curves, mbf, mask, levels


def _plot_displacement(ax, motion, levels):
    """Each slice's in-plane displacement from the ROI frame against time, excluded frames marked; the turns the
    frames were turned back by, if any (``turn_deg``, degrees), dashed on a second axis."""
    times = np.asarray(motion["times_s"], dtype=float)
    length = np.asarray(motion["displacement_mm"], dtype=float)
    lines = [ax.plot(times, length[:, k], marker=".", label="{} (slice {})".format(
        levels[k] if k < len(levels) else "", k))[0] for k in range(length.shape[1])]
    turn = motion.get("turn_deg")
    if turn is not None and np.any(np.asarray(turn, dtype=float)):
        right = ax.twinx()
        for k, line in enumerate(lines):
            right.plot(times, np.asarray(turn, dtype=float)[:, k], linestyle="--", linewidth=0.8,
                       color=line.get_color())
        right.set_ylabel("Turn (degrees, dashed)")
    excluded = [int(f) for f in motion.get("excluded_frames", [])]
    if excluded:
        ax.plot(times[excluded], np.nanmax(length[excluded], axis=1), "x", color="black", markersize=9,
                label="not registered, left out")
    roi = motion.get("roi_frame")
    if roi is not None:
        ax.axvline(times[int(roi)], color="grey", linestyle=":", label="ROI frame")
    ax.set_xlabel("Time (s)")
    ax.set_ylabel("Displacement (mm)")
    ax.set_title("Motion: in-plane displacement from the ROI frame ({})".format(
        "frames registered" if motion.get("applied") else "frames left as they were"))
    ax.legend(fontsize="small", ncol=5)


def plot_quantification_report(path, aif_times_s, aif_curves, mbf_map, myocardium_mask, segment_mbf, slice_levels,
                               territory_results=None, threshold_ml_min_g=K.ISCHAEMIA_THRESHOLD_ML_MIN_G, title=None,
                               aif_units="mM", subtitle=None, bound_segments=(), motion=None, aif_band=None):
    """One-page summary of a quantified study: AIFs, MBF maps, bullseye and territories.

    Panels: the AIF curves against time; the per-territory MBF with ischaemic
    flags; the AHA bullseye (``plot_bullseye``); one MBF map per slice,
    labelled with its level and cropped around the myocardium (all slices the
    same crop), on the bullseye's colour scale (0-5 mL/min/g, perceptually
    uniform colour map; higher values in ``OVERFLOW_COLOUR``, marked by the
    arrow at the top of the colour bars).

    Parameters
    ----------
    path : str
        PNG file to write.
    aif_times_s : array_like, (n_frames,)
        Frame times of the AIF, s.
    aif_curves : dict of str -> array_like (n_frames,)
        Curves to draw, e.g. ``{"saturated": ..., "corrected": ...}``, in
        ``aif_units``.
    mbf_map : array_like, (n_slices, rows, columns)
        Pixelwise stress MBF, mL/min/g, NaN outside the myocardium, indexed
        ``[k, j, i]`` and drawn as stored (row j downwards).
    myocardium_mask : array_like of bool, (n_slices, rows, columns)
        Myocardium, for the crop.
    segment_mbf : array_like, (16,)
        Stress MBF of AHA segments 1-16, mL/min/g; NaN = no value.
    slice_levels : sequence of str, (n_slices,)
        Level of each stored slice ("basal", "mid", "apical").
    territory_results : dict, optional
        Territory name -> vessel MBF (mL/min/g), or -> a dict or object with
        ``mbf_ml_min_g`` (also ``vessel_mbf_ml_min_g`` or ``mbf``) and
        optionally ``ischaemic``.  Missing flags are computed against the
        threshold; ``None`` computes the vessel MBF from ``segment_mbf`` (mean
        of the two lowest segments, ``evaluation.vessel_mbf``).
    threshold_ml_min_g : float, optional
        Ischaemia threshold, mL/min/g (1.35 [Hsu2018]).
    title : str, optional
        Figure title (default: "Stress perfusion quantification").
    aif_units : str, optional
        Unit label of the AIF curves (e.g. "mM" or "signal, a.u.").
    subtitle : str, optional
        Second title line, e.g. the AIF, field strength and conversion used.
    bound_segments : sequence of int, optional
        Segments whose MBF is a fit bound, labelled "bound" in the bullseye.
    motion : dict, optional
        The motion step, drawn as a third row: ``times_s`` (n_frames,) the
        frame times, s; ``displacement_mm`` (n_frames, n_slices) each frame's
        in-plane displacement from the ROI frame, mm; ``excluded_frames``
        (frames left out of the fits, marked); ``roi_frame``; ``applied``
        (whether the frames were registered).
    aif_band : tuple of (str, array_like, array_like), optional
        ``(label, low, high)``: a band drawn shaded behind the AIF curves
        (the AI-AIF ensemble's spread), in ``aif_units``.

    Raises
    ------
    AIAIFInputError
        For inconsistent shapes, an empty myocardium, a bad segment array or
        territory result, or an unwritable path.
    """
    times, curves, mbf, mask, levels = _validate_report_inputs(aif_times_s, aif_curves, mbf_map, myocardium_mask,
                                                               slice_levels)
    values = _segment_values(segment_mbf)
    rows = _territory_rows(territory_results, values, threshold_ml_min_g)
    n_slices = mbf.shape[0]
    n_columns = max(n_slices, 3)
    figure = Figure(figsize=(3.6 * n_columns, 7.6 if motion is None else 10.2), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2 if motion is None else 3, n_columns,
                               height_ratios=None if motion is None else (1.0, 1.0, 0.7))
    aif_axes = figure.add_subplot(grid[0, :n_columns - 2])
    bullseye_axes = figure.add_subplot(grid[0, n_columns - 2])
    text_axes = figure.add_subplot(grid[0, n_columns - 1])
    map_axes = [figure.add_subplot(grid[1, k]) for k in range(n_slices)]

    if aif_band is not None:
        label, low, high = aif_band
        aif_axes.fill_between(times, np.asarray(low, dtype=float), np.asarray(high, dtype=float), color="tab:orange",
                              alpha=0.3, linewidth=0, label=label)
    for name, curve in curves.items():
        aif_axes.plot(times, curve, marker=".", label=name)
    aif_axes.set_xlabel("Time (s)")
    aif_axes.set_ylabel("AIF ({})".format(aif_units))
    aif_axes.set_title("Arterial input function")
    aif_axes.legend(fontsize="small")

    geometry = plot_bullseye(bullseye_axes, values, threshold_ml_min_g, title="AHA segments (mL/min/g)",
                             bound_segments=tuple(bound_segments))
    figure.colorbar(geometry.mappable, ax=bullseye_axes, shrink=0.8, label="Stress MBF (mL/min/g)", extend="max")

    text_axes.set_axis_off()
    lines = ["Coronary territories", "(mean of the two lowest segments)", ""]
    for name, value, low in rows:
        shown = "{:.2f}".format(value) if np.isfinite(value) else "n/a"
        call = "ISCHAEMIC" if low else ("normal" if np.isfinite(value) else "no value")
        lines.append("{:<4} {:>5} mL/min/g  {}".format(name, shown, call))
    lines += ["", "Ischaemic: MBF < {:g} mL/min/g".format(threshold_ml_min_g),
              "{}: MBF above {:g} mL/min/g".format(OVERFLOW_COLOUR.capitalize(), MBF_COLOUR_RANGE_ML_MIN_G[1]),
              "Ischaemic segments: {}".format(", ".join(str(s) for s in geometry.segments[geometry.ischaemic])
                                              or "none")]
    text_axes.text(0.0, 1.0, "\n".join(lines), ha="left", va="top", family="monospace", fontsize="small",
                   transform=text_axes.transAxes)

    crop = _crop_box(mask)
    colourmap = geometry.mappable.get_cmap()
    low, high = MBF_COLOUR_RANGE_ML_MIN_G
    image = None
    for k, ax in enumerate(map_axes):
        shown = np.where(mask[k], mbf[k], np.nan)[crop]
        image = ax.imshow(shown, cmap=colourmap, vmin=low, vmax=high, interpolation="nearest")
        finite = shown[np.isfinite(shown)]
        summary = "mean {:.2f} mL/min/g".format(finite.mean()) if finite.size else "no myocardium"
        ax.set_title("{} (slice {}): {}".format(levels[k], k, summary), fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    figure.colorbar(image, ax=map_axes, shrink=0.9, extend="max", label="Stress MBF (mL/min/g)")
    if motion is not None:
        _plot_displacement(figure.add_subplot(grid[2, :]), motion, levels)

    ischaemic_names = [name for name, _, low in rows if low]
    heading = "{} -- ischaemic territories: {}".format(title or "Stress perfusion quantification",
                                                        ", ".join(ischaemic_names) or "none")
    figure.suptitle(heading if not subtitle else heading + "\n" + subtitle)
    _save(figure, path)

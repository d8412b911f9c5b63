"""Render the README's picture of the results in Slicer, ``results_view.png`` (1600 x 1000 pixels).

There is no Slicer window on the build machine, so this is drawn with
matplotlib from the built-in phantom's real results (``studies.demo_phantom``
quantified with the AI-corrected AIF and the default parameters, as the
module's Apply does), laid out as Slicer shows them after Apply:

* on the left, the module panel as ``Resources/UI/AIAIF.ui`` builds it: its
  sections, labels and widgets are read from the .ui file, and each widget
  shows what it holds after this run (the node names ``mrml.quantify_nodes``
  gives the outputs, the AIF label of ``AifMode.label``, the status line of
  ``AIAIFLogic.statusText``; those two are read from the module's source,
  because the module itself needs Slicer's Qt);
* the views of the module's results layout (``RESULTS_LAYOUT_XML`` of the
  module, split sizes and view colours included): the Red slice view with the
  MBF map over the frame of peak blood-pool enhancement, the Yellow slice view
  with the MBF bullseye volume (``segments.bullseye_image`` with the MBF colour
  table, NaN transparent), the plot view with the AIF chart and the table view
  with the segment table.

What Slicer would not show is drawn as a marked figure annotation (segment
numbers and values on the bullseye, the colour key) or said in the caption,
which also says that the picture is rendered, not a screen capture.  Run from
the repository root after changing the pipeline, the panel or the look, with
the project's environment (the MBF colour table comes from ``AIAIFLib.mrml``,
which needs ``slicer-core``):
``.venv/bin/python Resources/Screenshots/render_results_view.py`` (about 5 s).
The PNG is also the extension catalog's screenshot: keep it under
``MAX_FILE_BYTES``.
"""

import ast
import enum
import os
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import FancyBboxPatch, Polygon, Rectangle
from matplotlib import patheffects
from PIL import Image

REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, REPOSITORY)

from AIAIFLib import constants as K  # noqa: E402
from AIAIFLib.mrml import AIF_CURVES, MBF_DISPLAY_RANGE_ML_MIN_G, OUTPUT_NAME_SUFFIXES, mbf_colors  # noqa: E402
from AIAIFLib.pipeline import AIF_MODE_LABELS, QuantificationParameters, json_ready, quantify_study  # noqa: E402
from AIAIFLib.segments import BULLSEYE_GAP_PX, BULLSEYE_SIZE_PX, bullseye_image, bullseye_labels  # noqa: E402
from AIAIFLib.studies import demo_phantom, phantom_study  # noqa: E402

SCREENSHOT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results_view.png")
MODULE_FILE = os.path.join(REPOSITORY, "AIAIF", "AIAIF.py")
UI_FILE = os.path.join(REPOSITORY, "Resources", "UI", "AIAIF.ui")

#: Size of the picture, pixels (width, height), and its resolution.
SIZE_PX = (1600, 1000)
DPI = 100
#: Largest file size, bytes (project choice: the picture is also the extension
#: catalog's screenshot, which should stay small).
MAX_FILE_BYTES = 300000

#: Colours of the dark Slicer-like style (project choice, approximating
#: Slicer's dark theme): window, panel, section header, field, disabled text,
#: view backgrounds, text, grid.
WINDOW_COLOUR = "#2b2b2b"
PANEL_COLOUR = "#353535"
SECTION_COLOUR = "#454545"
BUTTON_COLOUR = "#4a4a4a"
FIELD_COLOUR = "#262626"
VIEW_COLOUR = "#1e1e1e"
TEXT_COLOUR = "#e6e6e6"
DIM_TEXT_COLOUR = "#a8a8a8"
DISABLED_TEXT_COLOUR = "#6f6f6f"
GRID_COLOUR = "#474747"
#: View-bar colour of the plot and table views (Slicer's are grey).
NEUTRAL_VIEW_BAR_COLOUR = "#9a9a9a"
#: Colour of the figure's own annotations (not shown by Slicer), so that they stand apart from the views' content.
ANNOTATION_COLOUR = "#ffffff"
ANNOTATION_FRAME_COLOUR = "#bdbdbd"

#: Height of a view's controller bar, pixels (about Slicer's at 100 % scaling).
VIEW_BAR_PX = 26
#: Gap between views, pixels.
VIEW_GAP_PX = 4
#: Height of the caption strip at the bottom, pixels.
CAPTION_PX = 24

#: Module panel metrics, pixels (project choice, about Slicer's Qt style at
#: 100 % scaling): a row of a form, a section header, the spacing between
#: items, the height of a field, the margins.
PANEL_ROW_PX = 29
PANEL_HEADER_PX = 27
PANEL_SPACING_PX = 7
PANEL_FIELD_PX = 23
PANEL_MARGIN_PX = 9
PANEL_FONT_PT = 8.6
#: Width of a combo box's or spin box's arrow area, pixels.
PANEL_ARROW_PX = 17

#: Field of view around the heart in the Red view, times the myocardium's
#: extent: the view is shown zoomed in on the heart (Slicer's Apply fits the
#: whole image; the caption says so).
SLICE_VIEW_ZOOM_EXTENT = 2.1
#: Top of the grey window as a fraction of the slice's 99.5th percentile (the
#: blood pool at peak): project choice, so that myocardium and surroundings are
#: not black next to the bright blood pool (as a user would set the window).
SLICE_WINDOW_TOP_FRACTION = 0.45
#: Corner annotation font of Slicer's slice views (DataProbe's default: Times, 14 px).
CORNER_FONT = {"family": "serif", "size": 14 * 72.0 / DPI}

#: Columns of the segment table drawn (the node has ten; these fit the view).
TABLE_COLUMNS = ("segment", "name", "territory", "mbf_mean", "ischemic")
#: Relative widths of those columns.
TABLE_COLUMN_WIDTHS = (0.15, 0.34, 0.16, 0.18, 0.17)

#: Node names ``mrml.phantom_nodes`` gives the sample's inputs, after the
#: sequence's name (its docstring: ``name``, ``name + " segmentation"``,
#: ``name + " RV insertion points"``).
INPUT_NODE_SUFFIXES = {"perfusionSequence": "", "segmentation": " segmentation",
                       "rvInsertionPoints": " RV insertion points"}
#: Output parameters of the module's parameter node and their ``mrml.OUTPUT_NAME_SUFFIXES`` role.
OUTPUT_PARAMETER_ROLES = {"mbfVolume": "mbf", "segmentsTable": "segments", "aifChart": "aif_chart",
                          "bullseyeVolume": "bullseye", "fitQualityVolume": "fit_quality"}
#: Segment each segment-ID parameter selects (the segments the sample's segmentation holds).
SEGMENT_NAMES = {"bloodPoolSegmentId": K.LV_BLOOD_POOL_SEGMENT_NAME,
                 "myocardiumSegmentId": K.MYOCARDIUM_SEGMENT_NAME}


# ---------------------------------------------------------------------------
# What the module and its .ui file define
# ---------------------------------------------------------------------------

def _untranslated(text):
    """Stands in for the module's ``_`` (translation) when its code is run here: English as written."""
    return text


def module_definitions(path=MODULE_FILE):
    """What the figure takes from the module file, read from its source.

    The module imports Slicer's Qt, so it is not imported: its constants are
    read with ``ast.literal_eval`` and ``AifMode`` and the static
    ``AIAIFLogic.statusText`` are compiled alone (they need only ``enum``
    and the translation function ``_``).

    Parameters
    ----------
    path : str, optional
        The module file, ``AIAIF/AIAIF.py``.

    Returns
    -------
    dict
        ``title`` (the module's title), ``sample_name``
        (``SAMPLE_PHANTOM_NAME``), ``segment_parameters``
        (``SEGMENT_PARAMETERS``), ``layout_xml`` (``RESULTS_LAYOUT_XML``),
        ``overlay_opacity`` (``MBF_OVERLAY_OPACITY``), ``AifMode`` (the enum)
        and ``statusText`` (the function).
    """
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    constants = {"SAMPLE_PHANTOM_NAME": "sample_name", "SEGMENT_PARAMETERS": "segment_parameters",
                 "RESULTS_LAYOUT_XML": "layout_xml", "MBF_OVERLAY_OPACITY": "overlay_opacity"}
    found = {}
    namespace = {"enum": enum, "_": _untranslated}

    def run(node):
        exec(compile(ast.Module(body=[node], type_ignores=[]), path, "exec"), namespace)

    for node in tree.body:
        target = getattr(node.targets[0], "id", None) if isinstance(node, ast.Assign) else None
        if target in constants:
            found[constants[target]] = ast.literal_eval(node.value)
        elif isinstance(node, ast.ClassDef) and node.name == "AifMode":
            run(node)
            found["AifMode"] = namespace["AifMode"]
        elif isinstance(node, ast.ClassDef) and node.name == "AIAIFLogic":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "statusText":
                    item.decorator_list = []  # a static method: as a plain function
                    run(item)
                    found["statusText"] = namespace["statusText"]
        elif isinstance(node, ast.ClassDef) and node.name == "AIAIF":
            for item in ast.walk(node):  # self.parent.title = _("...")
                if (isinstance(item, ast.Assign) and isinstance(item.targets[0], ast.Attribute)
                        and item.targets[0].attr == "title" and isinstance(item.value, ast.Call)):
                    found["title"] = ast.literal_eval(item.value.args[0])
    missing = {"title", "AifMode", "statusText"}.union(constants.values()) - set(found)
    if missing:
        raise RuntimeError("{} no longer defines {}; update this script.".format(path, ", ".join(sorted(missing))))
    return found


def _property_value(element):
    """Value of a Qt Designer ``<property>``: str, bool, float or int (None for other kinds)."""
    value = element[0]
    if value.tag == "string":
        return value.text or ""
    if value.tag == "bool":
        return value.text == "true"
    if value.tag == "double":
        return float(value.text)
    if value.tag == "number":
        return int(value.text)
    return None


def _widget(element):
    """A ``<widget>`` as a dict: class, name, properties."""
    return {"class": element.get("class"), "name": element.get("name"),
            "properties": {prop.get("name"): _property_value(prop) for prop in element.findall("property")}}


def _form_rows(layout):
    """Rows of a QFormLayout: (label text or None, widget dict), in row order."""
    rows = {}
    for item in layout.findall("item"):
        element = item.find("widget")
        if element is None:
            continue
        row = rows.setdefault(int(item.get("row")), [None, None])
        if item.get("colspan") == "2" or item.get("column") == "1":
            row[1] = _widget(element)
        else:
            row[0] = _widget(element)["properties"].get("text", "")
    return [tuple(rows[index]) for index in sorted(rows)]


def panel_items(path=UI_FILE):
    """The module panel's top-level items, in order, read from the Qt Designer file.

    Parameters
    ----------
    path : str, optional
        ``Resources/UI/AIAIF.ui``.

    Returns
    -------
    width_px : int
        The panel's design width, pixels.
    items : list of dict
        ``{"kind": "section", "title", "collapsed", "rows"}`` for a
        collapsible section (``rows`` as ``_form_rows``), ``{"kind": "row",
        "widgets"}`` for a horizontal row of widgets (Apply, Cancel) and
        ``{"kind": "widget", "widget"}`` for a widget on its own.
    """
    root = ElementTree.parse(path).getroot()
    top = root.find("widget")
    width_px = int(top.find("property[@name='geometry']/rect/width").text)
    items = []
    for item in top.find("layout").findall("item"):
        widget, layout = item.find("widget"), item.find("layout")
        if widget is not None and widget.get("class") == "ctkCollapsibleButton":
            properties = _widget(widget)["properties"]
            items.append({"kind": "section", "title": properties.get("text", ""),
                          "collapsed": bool(properties.get("collapsed", False)),
                          "rows": _form_rows(widget.find("layout"))})
        elif widget is not None:
            items.append({"kind": "widget", "widget": _widget(widget)})
        elif layout is not None:
            items.append({"kind": "row", "widgets": [_widget(w) for w in layout.findall("item/widget")]})
    return width_px, items


def layout_views(layout_xml, rect):
    """Rectangles of the views of a Slicer layout description, split as its ``splitSize`` values say.

    Parameters
    ----------
    layout_xml : str
        A layout description (``<layout type="horizontal|vertical">`` of
        ``<item splitSize=...>`` holding ``<view>`` or nested layouts).
    rect : tuple
        (left, bottom, width, height) of the whole layout, figure fractions.

    Returns
    -------
    dict
        ``singletontag`` -> {"rect", "class", "label" (viewlabel), "colour" (viewcolor or None)}.
    """
    views = {}

    def place(layout, left, bottom, width, height):
        items = layout.findall("item")
        sizes = np.array([float(item.get("splitSize", 0)) for item in items])
        sizes = sizes / sizes.sum() if sizes.sum() > 0 else np.full(len(items), 1.0 / len(items))
        horizontal = layout.get("type") == "horizontal"
        position = left if horizontal else bottom + height
        for item, share in zip(items, sizes):
            if horizontal:
                box = (position, bottom, width * share, height)
                position += width * share
            else:
                position -= height * share
                box = (left, position, width, height * share)
            child = item[0]
            if child.tag == "layout":
                place(child, *box)
            else:
                properties = {prop.get("name"): prop.text for prop in child.findall("property")}
                views[child.get("singletontag")] = {"rect": box, "class": child.get("class"),
                                                    "label": properties.get("viewlabel", ""),
                                                    "colour": properties.get("viewcolor")}

    place(ElementTree.fromstring(layout_xml.strip()), *rect)
    gap_x, gap_y = 0.5 * VIEW_GAP_PX / SIZE_PX[0], 0.5 * VIEW_GAP_PX / SIZE_PX[1]
    for view in views.values():  # a thin gap between neighbouring views, as Slicer's splitters
        left, bottom, width, height = view["rect"]
        view["rect"] = (left + gap_x, bottom + gap_y, width - 2 * gap_x, height - 2 * gap_y)
    return views


# ---------------------------------------------------------------------------
# The results
# ---------------------------------------------------------------------------

def _quantified_phantom():
    """The demo phantom and its quantification with the AI-corrected AIF and default parameters."""
    phantom = demo_phantom()
    parameters = QuantificationParameters(field_strength_t=phantom.acquisition["field_strength_t"], aif_mode="ai")
    return phantom, quantify_study(phantom_study(phantom), parameters), parameters


def _panel_state(parameters, module, compute_fit_quality=False):
    """What each panel widget shows after this run, by widget name: (text, enabled).

    Values follow the parameter node after ``processParameterNode`` (inputs
    of the sample, parameters of the run, the output nodes the run created);
    enabled states follow ``AIAIFWidget._onParameterNodeModified`` and
    ``_setRunning(False)`` after a finished run.
    """
    sample = module["sample_name"]
    by_parameter = {name: sample + suffix for name, suffix in INPUT_NODE_SUFFIXES.items()}
    by_parameter.update({
        "fieldStrength": str(float(parameters.field_strength_t)),  # the Choice's item text, e.g. "3.0"
        "aifMode": module["AifMode"](parameters.aif_mode).label(),
        "externalAifTable": None,
        "tissueConversion": parameters.tissue_conversion,
        "threshold": parameters.threshold_ml_min_g,
        "computeFitQuality": compute_fit_quality,
    })
    for name, role in OUTPUT_PARAMETER_ROLES.items():
        created = role != "fit_quality" or compute_fit_quality
        by_parameter[name] = "{} {}".format(sample, OUTPUT_NAME_SUFFIXES[role]) if created else None
    by_widget = {widget: SEGMENT_NAMES[name] for name, widget in module["segment_parameters"].items()}
    enabled = {"externalAifTableSelector": parameters.aif_mode == "external",
               "fitQualityVolumeSelector": compute_fit_quality,
               "applyButton": True, "cancelButton": False}
    return by_parameter, by_widget, enabled


# ---------------------------------------------------------------------------
# Drawing helpers
# ---------------------------------------------------------------------------

def _bare_axes(figure, rect, facecolor, **kwargs):
    """Axes without ticks or spines, data coordinates = pixels from its bottom left."""
    axes = figure.add_axes(rect, **kwargs)
    axes.set_facecolor(facecolor)
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)
    axes.set_xlim(0, rect[2] * SIZE_PX[0])
    axes.set_ylim(0, rect[3] * SIZE_PX[1])
    return axes


class _TextMeasure:
    """Width of text in pixels, as the figure will draw it (for elision and word wrap)."""

    def __init__(self, figure):
        self.renderer = figure.canvas.get_renderer()

    def width(self, text, size=PANEL_FONT_PT, weight="normal"):
        width, _, _ = self.renderer.get_text_width_height_descent(
            text, FontProperties(size=size, weight=weight), ismath=False)
        return width

    def elided(self, text, width_px, size=PANEL_FONT_PT):
        """The text, cut with an ellipsis at the end if wider than ``width_px`` (as Qt elides)."""
        if self.width(text, size) <= width_px:
            return text
        while text and self.width(text + "\u2026", size) > width_px:
            text = text[:-1]
        return text.rstrip() + "\u2026"

    def wrapped(self, text, width_px, size=PANEL_FONT_PT):
        """Lines of the text, word-wrapped to ``width_px`` (as a word-wrapping QLabel)."""
        lines, line = [], ""
        for word in text.split():
            candidate = (line + " " + word).strip()
            if line and self.width(candidate, size) > width_px:
                lines.append(line)
                line = word
            else:
                line = candidate
        return lines + ([line] if line else [])


def _view(figure, rect, bar_colour, label, name, detail="", background=VIEW_COLOUR):
    """A Slicer-like view: a coloured controller bar (view label, view name, detail) over a content axes."""
    left, bottom, width, height = rect
    bar_height = VIEW_BAR_PX / SIZE_PX[1]
    bar = _bare_axes(figure, (left, bottom + height - bar_height, width, bar_height), bar_colour)
    dark_bar = np.mean([int(bar_colour[i:i + 2], 16) for i in (1, 3, 5)]) < 140  # Red's bar: white text
    ink = "white" if dark_bar else "#1a1a1a"
    bar.text(0.006, 0.5, "{}   {}".format(label, name) if label else name, transform=bar.transAxes, ha="left",
             va="center", fontsize=10, fontweight="bold", color=ink)
    if detail:
        bar.text(0.994, 0.5, detail, transform=bar.transAxes, ha="right", va="center", fontsize=9, color=ink)
    content = _bare_axes(figure, (left, bottom, width, height - bar_height), background)
    return content


def _outlined(colour=ANNOTATION_COLOUR):
    """Text effect of the figure's annotations: a dark outline, readable on any MBF colour."""
    return {"color": colour, "path_effects": [patheffects.withStroke(linewidth=2.2, foreground="black")]}


# ---------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------

def _slice_view(figure, view, phantom, result, colourmap, module):
    """The Red slice view: mid slice at peak blood-pool enhancement, the MBF map over it; returns the frame index."""
    levels = list(result.summary["segmentation"]["slice_levels"])
    mid = levels.index("mid")
    blood = phantom.lv_blood_mask[mid]
    peak_frame = int(np.argmax(phantom.frames[:, mid][:, blood].mean(axis=1)))
    image = phantom.frames[peak_frame, mid]
    content = _view(figure, view["rect"], view["colour"] or NEUTRAL_VIEW_BAR_COLOUR, view["label"], "Red",
                    background="black")
    left, bottom, width, height = content.get_position().bounds
    aspect = (width * SIZE_PX[0]) / (height * SIZE_PX[1])
    # Zoomed in on the heart, the field of view has the view's shape (as a zoomed slice view).
    rows, columns = np.nonzero(phantom.myocardium_mask[mid])
    half_rows = 0.5 * SLICE_VIEW_ZOOM_EXTENT * max(np.ptp(rows), np.ptp(columns))
    half_columns = half_rows * aspect
    centre = (rows.mean(), columns.mean())
    low, high = np.percentile(image, [1.0, 99.5]) * np.array([1.0, SLICE_WINDOW_TOP_FRACTION])
    axes = figure.add_axes((left, bottom, width, height))
    axes.set_axis_off()
    extent = (-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5)
    axes.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest", extent=extent)
    axes.imshow(np.ma.masked_invalid(result.mbf_ml_min_g[mid]), cmap=colourmap,
                norm=Normalize(*MBF_DISPLAY_RANGE_ML_MIN_G), alpha=module["overlay_opacity"],
                interpolation="nearest", extent=extent)
    axes.set_xlim(centre[1] - half_columns, centre[1] + half_columns)
    axes.set_ylim(centre[0] + half_rows, centre[0] - half_rows)
    axes.set_facecolor("black")
    # Slicer's corner annotation (DataProbe): foreground with its opacity, then background.
    corner = "F: {} {} ({:d}%)\nB: {}".format(module["sample_name"], OUTPUT_NAME_SUFFIXES["mbf"],
                                               int(round(100 * module["overlay_opacity"])), module["sample_name"])
    figure.text(left + 0.005, bottom + 0.007, corner, ha="left", va="bottom", color="white", linespacing=1.25,
                **CORNER_FONT)
    return peak_frame


def _yellow_view(figure, view, result, colourmap, module):
    """The Yellow slice view: the MBF bullseye volume as Slicer shows it, plus marked figure annotations."""
    content = _view(figure, view["rect"], view["colour"] or NEUTRAL_VIEW_BAR_COLOUR, view["label"], "Yellow",
                    background="black")
    left, bottom, width, height = content.get_position().bounds
    values = np.asarray(result.segments["mbf_mean"], dtype=float)
    image = bullseye_image(values)  # what the bullseye volume holds (mrml.bullseye_volume_node)
    # Fitted to the view (Slicer's FitSliceToAll): the image's height fills the view's height.
    height_px = height * SIZE_PX[1]
    side = height_px / SIZE_PX[0]
    axes = figure.add_axes((left + 0.5 * (width - side), bottom, side, height))
    axes.set_axis_off()
    axes.imshow(np.ma.masked_invalid(image), cmap=colourmap, norm=Normalize(*MBF_DISPLAY_RANGE_ML_MIN_G),
                interpolation="nearest")
    axes.set_facecolor("black")
    figure.text(left + 0.005, bottom + 0.007, "B: {} {}".format(module["sample_name"],
                                                                OUTPUT_NAME_SUFFIXES["bullseye"]),
                ha="left", va="bottom", color="white", **CORNER_FONT)

    # Figure annotation: segment number and mean MBF at each segment's centroid.
    labels = bullseye_labels(BULLSEYE_SIZE_PX, BULLSEYE_GAP_PX)
    for segment, value in zip(result.segments["segment"], values):
        rows, columns = np.nonzero(labels == segment)
        if rows.size and np.isfinite(value):
            axes.text(columns.mean(), rows.mean(), "{}\n{:.2f}".format(segment, value), ha="center", va="center",
                      fontsize=7.2, linespacing=1.05, **_outlined())
    # ... explained, with the colour key, in a dashed frame in the black space right of the bullseye.
    box_left_px = (left + 0.5 * (width + side)) * SIZE_PX[0] + 24
    box_width_px = min(230.0, (left + width) * SIZE_PX[0] - box_left_px - 12)
    box_height_px = 128.0
    box_bottom_px = bottom * SIZE_PX[1] + 16
    box = _bare_axes(figure, (box_left_px / SIZE_PX[0], box_bottom_px / SIZE_PX[1], box_width_px / SIZE_PX[0],
                              box_height_px / SIZE_PX[1]), "black")
    box.add_patch(Rectangle((1, 1), box_width_px - 2, box_height_px - 2, fill=False,
                            edgecolor=ANNOTATION_FRAME_COLOUR, linestyle=(0, (3, 2)), linewidth=0.8))
    box.text(9, box_height_px - 8, "Figure annotation\n(not shown by Slicer)", ha="left", va="top", fontsize=8.2,
             style="italic", color=ANNOTATION_FRAME_COLOUR, linespacing=1.2)
    box.text(9, box_height_px - 44, "Numbers: AHA segment and\nmean MBF (mL/min/g)", ha="left", va="top",
             fontsize=8.2, linespacing=1.2, **_outlined())
    box.text(9, 34, "MBF colours (mL/min/g):", ha="left", va="bottom", fontsize=8.2, **_outlined())
    key = figure.add_axes(((box_left_px + 10) / SIZE_PX[0], (box_bottom_px + 22) / SIZE_PX[1],
                           (box_width_px - 22) / SIZE_PX[0], 9 / SIZE_PX[1]))
    key.imshow(np.linspace(0.0, 1.0, 256)[None, :], cmap=colourmap, aspect="auto",
               extent=(MBF_DISPLAY_RANGE_ML_MIN_G[0], MBF_DISPLAY_RANGE_ML_MIN_G[1], 0, 1))
    key.set_yticks([])
    key.set_xticks(np.arange(MBF_DISPLAY_RANGE_ML_MIN_G[0], MBF_DISPLAY_RANGE_ML_MIN_G[1] + 0.5, 1.0))
    key.tick_params(colors=ANNOTATION_FRAME_COLOUR, labelsize=7.5, length=2, pad=1)
    for spine in key.spines.values():
        spine.set_edgecolor(ANNOTATION_FRAME_COLOUR)
        spine.set_linewidth(0.6)


def _plot_view(figure, view, result, sample_name):
    """The plot view: the AIF chart (saturated AIF, AIF used, mean myocardium) in mM against time."""
    name = "{} {}".format(sample_name, OUTPUT_NAME_SUFFIXES["aif_chart"])
    content = _view(figure, view["rect"], view["colour"] or NEUTRAL_VIEW_BAR_COLOUR, view["label"], name)
    left, bottom, width, height = content.get_position().bounds
    axes = figure.add_axes((left + 62 / SIZE_PX[0], bottom + 50 / SIZE_PX[1], width - 78 / SIZE_PX[0],
                            height - 88 / SIZE_PX[1]))
    axes.set_facecolor(VIEW_COLOUR)
    mode_label = AIF_MODE_LABELS[result.summary["parameters"]["aif_mode"]]
    times = result.aif["time_s"]
    for _, key, title, colour, dashed in AIF_CURVES:
        axes.plot(times, result.aif[key], color=colour, linestyle="--" if dashed else "-", linewidth=1.5,
                  marker="o", markersize=2.8, label=title.format(mode_label))
    axes.set_title("AIF and myocardium", color=TEXT_COLOUR, fontsize=10.5)
    axes.set_xlabel("Time (s)", color=TEXT_COLOUR, fontsize=9.5)
    axes.set_ylabel("Concentration (mM)", color=TEXT_COLOUR, fontsize=9.5)
    axes.tick_params(colors=TEXT_COLOUR, labelsize=8.5)
    axes.grid(color=GRID_COLOUR, linewidth=0.6)
    for spine in axes.spines.values():
        spine.set_color(GRID_COLOUR)
    legend = axes.legend(fontsize=8.5, facecolor=FIELD_COLOUR, edgecolor=GRID_COLOUR, labelcolor=TEXT_COLOUR,
                         loc="upper right")
    legend.get_frame().set_alpha(0.95)


def _checkbox(axes, x, y, checked, enabled=True, size_px=12):
    """A checkbox centred at (x, y) in the axes' pixel coordinates (Slicer shows boolean columns this way)."""
    half = 0.5 * size_px
    axes.add_patch(Rectangle((x - half, y - half), size_px, size_px, facecolor=FIELD_COLOUR,
                             edgecolor=DIM_TEXT_COLOUR if enabled else DISABLED_TEXT_COLOUR, linewidth=0.8))
    if checked:
        axes.plot([x - 0.6 * half, x - 0.1 * half, x + 0.65 * half], [y + 0.05 * half, y - 0.55 * half, y + 0.6 * half],
                  color=TEXT_COLOUR, linewidth=1.6, solid_capstyle="round", solid_joinstyle="round")


def _table_view(figure, view, result, sample_name):
    """The table view: the segment table's first columns, 16 rows, row numbers in the vertical header."""
    name = "{} {}".format(sample_name, OUTPUT_NAME_SUFFIXES["segments"])
    axes = _view(figure, view["rect"], view["colour"] or NEUTRAL_VIEW_BAR_COLOUR, view["label"], name)
    width_px, height_px = axes.get_xlim()[1], axes.get_ylim()[1]
    n_rows = len(result.segments["segment"])
    top, right = height_px - 4, width_px - 6
    row_height = (height_px - 26) / (n_rows + 1)
    header_width = 30
    edges = header_width + np.concatenate([[0.0], np.cumsum(TABLE_COLUMN_WIDTHS)]) * (right - header_width) / sum(
        TABLE_COLUMN_WIDTHS)
    axes.add_patch(Rectangle((0, top - row_height), right, row_height, color=SECTION_COLOUR))
    axes.add_patch(Rectangle((0, top - (n_rows + 1) * row_height), header_width, n_rows * row_height,
                             color=SECTION_COLOUR))
    for index, column in enumerate(TABLE_COLUMNS):
        axes.text(edges[index] + 6, top - 0.5 * row_height, column, ha="left", va="center", fontsize=8.8,
                  fontweight="bold", color=TEXT_COLOUR)
    for row in range(n_rows):
        y = top - (row + 1.5) * row_height
        axes.text(0.5 * header_width, y, str(row + 1), ha="center", va="center", fontsize=8.3, color=TEXT_COLOUR)
        for index, column in enumerate(TABLE_COLUMNS):
            value = result.segments[column][row]
            if column == "ischemic":
                _checkbox(axes, edges[index] + 20, y, bool(value))
                continue
            # As a Slicer table shows a double column: up to six significant digits.
            text = "{:.6g}".format(value) if isinstance(value, (float, np.floating)) else str(value)
            axes.text(edges[index] + 6, y, text, ha="left", va="center", fontsize=8.3, color=TEXT_COLOUR)
    for row in range(n_rows + 2):
        y = top - row * row_height
        axes.plot([0, right], [y, y], color=GRID_COLOUR, linewidth=0.6)
    for x in edges:
        axes.plot([x, x], [top, top - (n_rows + 1) * row_height], color=GRID_COLOUR, linewidth=0.6)
    axes.text(right, 4, "{} of the table's {} columns shown".format(len(TABLE_COLUMNS), len(result.segments)),
              ha="right", va="bottom", fontsize=7.5, color=DIM_TEXT_COLOUR, style="italic")


# ---------------------------------------------------------------------------
# Module panel
# ---------------------------------------------------------------------------

def _field(axes, measure, x, y, width, text, enabled=True, kind="combo"):
    """A field centred on row y: combo box (arrow), spin box (up/down arrows) or plain, text elided."""
    ink = TEXT_COLOUR if enabled else DISABLED_TEXT_COLOUR
    half = 0.5 * PANEL_FIELD_PX
    axes.add_patch(FancyBboxPatch((x, y - half), width, PANEL_FIELD_PX, boxstyle="round,pad=0,rounding_size=3",
                                  facecolor=FIELD_COLOUR if enabled else PANEL_COLOUR, edgecolor=GRID_COLOUR,
                                  linewidth=0.8))
    arrow_left = x + width - PANEL_ARROW_PX
    if kind in ("combo", "spin"):
        axes.plot([arrow_left, arrow_left], [y - half + 4, y + half - 4], color=GRID_COLOUR, linewidth=0.8)
        centre = arrow_left + 0.5 * PANEL_ARROW_PX
        # (direction, centre offset, half height, half width) of each arrow; direction -1 points down.
        arrows = [(-1, 0.0, 2.5, 4.0)] if kind == "combo" else [(1, 4.0, 1.8, 3.5), (-1, -4.0, 1.8, 3.5)]
        for direction, offset, half_height, half_width in arrows:
            tip = y + offset + direction * half_height
            base = y + offset - direction * half_height
            axes.add_patch(Polygon([(centre - half_width, base), (centre + half_width, base), (centre, tip)],
                                   closed=True,
                                   facecolor=ink if enabled else DISABLED_TEXT_COLOUR, edgecolor="none"))
    text_width = (arrow_left if kind in ("combo", "spin") else x + width) - x - 12
    axes.text(x + 6, y, measure.elided(text, text_width), ha="left", va="center", fontsize=PANEL_FONT_PT,
              color=ink)


def _button(axes, x, y, width, text, enabled=True):
    """A push button centred on row y."""
    half = 0.5 * (PANEL_FIELD_PX + 2)
    axes.add_patch(FancyBboxPatch((x, y - half), width, 2 * half, boxstyle="round,pad=0,rounding_size=3",
                                  facecolor=BUTTON_COLOUR if enabled else PANEL_COLOUR, edgecolor=GRID_COLOUR,
                                  linewidth=0.8))
    axes.text(x + 0.5 * width, y, text, ha="center", va="center", fontsize=PANEL_FONT_PT,
              color=TEXT_COLOUR if enabled else DISABLED_TEXT_COLOUR)


def _widget_text(widget, by_parameter, by_widget):
    """What a widget shows: (text, kind of field)."""
    properties = widget["properties"]
    parameter = properties.get("SlicerParameterName")
    value = by_widget.get(widget["name"], by_parameter.get(parameter))
    kind = widget["class"]
    if kind in ("qMRMLNodeComboBox", "qMRMLSegmentSelectorWidget", "QComboBox"):
        return (properties.get("noneDisplay", "None") if value is None else str(value)), "combo"
    if kind in ("QDoubleSpinBox", "QSpinBox"):
        if value == properties.get("minimum") and properties.get("specialValueText"):
            return properties["specialValueText"], "spin"
        text = "{:.{}f}".format(value, properties.get("decimals", 2)) if kind == "QDoubleSpinBox" else str(value)
        return properties.get("prefix", "") + text + properties.get("suffix", ""), "spin"
    return str(value if value is not None else properties.get("text", "")), "plain"


def _module_panel(figure, rect, items, module, state, status_text):
    """The module panel as the .ui lays it out, showing this run's values, Apply/Cancel and the status line."""
    by_parameter, by_widget, enabled = state
    axes = _bare_axes(figure, rect, PANEL_COLOUR)
    width_px, height_px = axes.get_xlim()[1], axes.get_ylim()[1]
    measure = _TextMeasure(figure)
    inner_left, inner_right = PANEL_MARGIN_PX, width_px - PANEL_MARGIN_PX
    y = height_px - PANEL_MARGIN_PX

    # Above the module's widget Slicer shows the module selector (toolbar) and the collapsed help section.
    y -= 0.5 * PANEL_HEADER_PX
    axes.text(inner_left, y, module["title"], ha="left", va="center", fontsize=11.5, fontweight="bold",
              color=TEXT_COLOUR)
    y -= PANEL_HEADER_PX

    def header(title, collapsed, y):
        axes.add_patch(FancyBboxPatch((inner_left - 3, y - 0.5 * PANEL_HEADER_PX), inner_right - inner_left + 6,
                                      PANEL_HEADER_PX, boxstyle="round,pad=0,rounding_size=3",
                                      facecolor=SECTION_COLOUR, edgecolor=GRID_COLOUR, linewidth=0.8))
        axes.text(inner_left + 6, y, ("\u25b8  " if collapsed else "\u25be  ") + title, ha="left", va="center",
                  fontsize=9.2, color=TEXT_COLOUR)

    header("Help & Acknowledgement", True, y)
    y -= 0.5 * PANEL_HEADER_PX + PANEL_SPACING_PX

    for item in items:
        if item["kind"] == "section":
            y -= 0.5 * PANEL_HEADER_PX
            header(item["title"], item["collapsed"], y)
            y -= 0.5 * PANEL_HEADER_PX + PANEL_SPACING_PX
            if item["collapsed"]:
                continue
            form_left = inner_left + 8
            form_right = inner_right - 4
            labels = [label for label, _ in item["rows"] if label]
            # QFormLayout: one label column as wide as the widest label of this form.
            field_left = form_left + (max(measure.width(label) for label in labels) + 10 if labels else 0)
            for label, widget in item["rows"]:
                name = widget["name"]
                is_enabled = enabled.get(name, widget["properties"].get("enabled", True))
                if widget["class"] == "QLabel":  # a word-wrapped hint across both columns
                    lines = measure.wrapped(widget["properties"].get("text", ""), form_right - form_left)
                    line_px = 15
                    axes.text(form_left, y + 0.5 * PANEL_ROW_PX - 6, "\n".join(lines), ha="left", va="top",
                              fontsize=PANEL_FONT_PT - 0.4, color=TEXT_COLOUR, linespacing=1.3)
                    y -= len(lines) * line_px + 6
                    continue
                y_row = y
                if label:
                    axes.text(form_left, y_row, label, ha="left", va="center", fontsize=PANEL_FONT_PT,
                              color=TEXT_COLOUR)
                left = field_left if label else form_left
                if widget["class"] == "QPushButton":
                    _button(axes, left, y_row, form_right - left, widget["properties"].get("text", ""),
                            is_enabled)
                elif widget["class"] == "QCheckBox":
                    _checkbox(axes, left + 7, y_row, bool(by_parameter.get(
                        widget["properties"].get("SlicerParameterName"))), is_enabled, size_px=13)
                else:
                    text, kind = _widget_text(widget, by_parameter, by_widget)
                    _field(axes, measure, left, y_row, form_right - left, text, is_enabled, kind)
                y -= PANEL_ROW_PX
            y -= PANEL_SPACING_PX - 2
        elif item["kind"] == "row":  # Apply and Cancel side by side
            y -= 0.5 * PANEL_ROW_PX
            widgets = item["widgets"]
            share = (inner_right - inner_left - 6 * (len(widgets) - 1)) / len(widgets)
            for index, widget in enumerate(widgets):
                _button(axes, inner_left + index * (share + 6), y, share, widget["properties"].get("text", ""),
                        enabled.get(widget["name"], widget["properties"].get("enabled", True)))
            y -= 0.5 * PANEL_ROW_PX + PANEL_SPACING_PX
        elif item["kind"] == "widget" and item["widget"]["name"] == "statusLabel":
            lines = measure.wrapped(status_text, inner_right - inner_left)
            axes.text(inner_left, y, "\n".join(lines), ha="left", va="top", fontsize=PANEL_FONT_PT,
                      color=TEXT_COLOUR, linespacing=1.35)
        # The progress bar is hidden when no run is going on; spacers draw nothing.


# ---------------------------------------------------------------------------
# The picture
# ---------------------------------------------------------------------------

def render(path=SCREENSHOT_PATH):
    """Quantify the demo phantom and draw the results view as a PNG.

    Parameters
    ----------
    path : str, optional
        Output file (default: ``results_view.png`` beside this script).

    Returns
    -------
    str
        The path written.
    """
    module = module_definitions()
    panel_width_px, items = panel_items()
    phantom, result, parameters = _quantified_phantom()
    colourmap = ListedColormap(mbf_colors(), name="AI-AIF MBF")

    figure = Figure(figsize=(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI), dpi=DPI, facecolor=WINDOW_COLOUR)
    FigureCanvasAgg(figure)
    caption_height = CAPTION_PX / SIZE_PX[1]
    top = 1.0 - 2.0 / SIZE_PX[1]
    panel_width = panel_width_px / SIZE_PX[0]
    # The status line is worded by the module's own statusText from the summary the Logic returns.
    status_text = module["statusText"](json_ready(result.summary))
    _module_panel(figure, (0.0, caption_height, panel_width, top - caption_height), items, module,
                  _panel_state(parameters, module), status_text)

    views_left = panel_width + VIEW_GAP_PX / SIZE_PX[0]
    views = layout_views(module["layout_xml"], (views_left, caption_height, 1.0 - views_left, top - caption_height))
    by_class = {}
    for tag, view in views.items():
        by_class.setdefault(view["class"], {})[tag] = view
    slices = by_class["vtkMRMLSliceNode"]
    peak_frame = _slice_view(figure, slices["Red"], phantom, result, colourmap, module)
    _yellow_view(figure, slices["Yellow"], result, colourmap, module)
    _plot_view(figure, next(iter(by_class["vtkMRMLPlotViewNode"].values())), result, module["sample_name"])
    _table_view(figure, next(iter(by_class["vtkMRMLTableViewNode"].values())), result, module["sample_name"])

    figure.text(4 / SIZE_PX[0], 0.5 * caption_height,
                "Rendered with matplotlib from the built-in phantom's results (AI-corrected AIF, default parameters), "
                "laid out as 3D Slicer shows them after Apply -- not a screen capture.  Red view zoomed to the heart: "
                "MBF over frame {} of {} (t = {:.1f} s, peak blood-pool enhancement).".format(
                    peak_frame + 1, phantom.frames.shape[0], phantom.frame_times_s[peak_frame]),
                ha="left", va="center", fontsize=8, color=DIM_TEXT_COLOUR, style="italic")
    # Saved through Pillow (matplotlib's own dependency) as opaque RGB, optimised: a third smaller than RGBA.
    canvas = figure.canvas
    canvas.draw()
    Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]).save(path, format="png", optimize=True)
    return path


if __name__ == "__main__":
    written = render()
    size = os.path.getsize(written)
    print("{} ({} bytes{})".format(written, size, "" if size <= MAX_FILE_BYTES else
                                   ", MORE than the {} allowed: make the picture simpler".format(MAX_FILE_BYTES)))

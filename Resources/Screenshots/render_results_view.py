"""Render the README's drawing of the results layout after Apply, ``results_view.png``.

Not a screen capture: no Slicer runs here.  The module's panel clicks Apply on
the sample phantom, on the test doubles and slicer-core's real MRML scene (as
``render_panel.py`` does), and everything drawn is read from the scene it
leaves:

* the views are placed as the module's ``RESULTS_LAYOUT_XML`` splits them;
* the Red and Yellow slice views show the images Slicer's own slice logic
  (``vtkMRMLSliceLogic``) computes from the layers the module set (peak frame
  under the MBF map at its opacity; the bullseye), at the view's size in
  pixels, over a black background as a slice view shows them;
* the plot and table views are drawn with matplotlib from the AIF chart's
  series and the segment table node (Slicer's own views look different).

Run from the repository root with the test environment (slicer-core, PyQt5):
``.venv/bin/python Resources/Screenshots/render_results_view.py`` (about 10 s).  The PNG is also the extension catalog's screenshot: keep it
under ``MAX_FILE_BYTES``.
"""

import os
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from vtk.util import numpy_support

SCREENSHOTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCREENSHOTS)

import render_panel  # noqa: E402  (puts the repository and Testing on sys.path)
import pytest  # noqa: E402
import slicer  # noqa: E402

SCREENSHOT_PATH = os.path.join(SCREENSHOTS, "results_view.png")
#: Size of the picture, pixels (width, height), and its resolution.
SIZE_PX = (1400, 860)
DPI = 100
#: Largest file size, bytes (project choice: the catalog's screenshots should stay small).
MAX_FILE_BYTES = 300000
#: Height of a view's bar and of the caption strip; gap between views (pixels).
VIEW_BAR_PX = 24
CAPTION_PX = 34
VIEW_GAP_PX = 4
#: Colours: window, view background, text, grid, neutral view bar (project choice, a dark style).
WINDOW_COLOUR, VIEW_COLOUR, TEXT_COLOUR, GRID_COLOUR, BAR_COLOUR = "#2b2b2b", "#1e1e1e", "#e6e6e6", "#474747", "#9a9a9a"
#: Segment table columns drawn (the node has more), with their widths.
TABLE_COLUMNS = ("segment", "name", "territory", "mbf_mean", "ischemic")
TABLE_COLUMN_WIDTHS = (0.13, 0.36, 0.16, 0.2, 0.15)


def layout_views(layout_xml, rect):
    """Rectangles (figure fractions) of the views of a Slicer layout description, split by ``splitSize``.

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
                box, position = (position, bottom, width * share, height), position + width * share
            else:
                position -= height * share
                box = (left, position, width, height * share)
            child = item[0]
            if child.tag == "layout":
                place(child, *box)
                continue
            properties = {prop.get("name"): prop.text for prop in child.findall("property")}
            gap_x, gap_y = 0.5 * VIEW_GAP_PX / SIZE_PX[0], 0.5 * VIEW_GAP_PX / SIZE_PX[1]
            views[child.get("singletontag")] = {
                "rect": (box[0] + gap_x, box[1] + gap_y, box[2] - 2 * gap_x, box[3] - 2 * gap_y),
                "class": child.get("class"), "label": properties.get("viewlabel", ""),
                "colour": properties.get("viewcolor")}

    place(ElementTree.fromstring(layout_xml.strip()), *rect)
    return views


def _view(figure, view, name):
    """A view: a coloured bar (view label and name) over a content axes without ticks; returns the content."""
    left, bottom, width, height = view["rect"]
    bar_height = VIEW_BAR_PX / SIZE_PX[1]
    bar = figure.add_axes((left, bottom + height - bar_height, width, bar_height))
    bar.set_facecolor(view["colour"] or BAR_COLOUR)
    bar.text(0.006, 0.5, "{}   {}".format(view["label"], name), transform=bar.transAxes, va="center",
             fontsize=10, fontweight="bold", color="white" if view["colour"] == "#F34A33" else "#1a1a1a")
    content = figure.add_axes((left, bottom, width, height - bar_height))
    content.set_facecolor(VIEW_COLOUR)
    for axes in (bar, content):
        axes.set_xticks([])
        axes.set_yticks([])
    return content


def _slice_view(figure, view, layout_manager, name):
    """A slice view: the RGBA image the view's slice logic computes at the view's size, over black."""
    content = _view(figure, view, name)
    left, bottom, width, height = content.get_position().bounds
    size = (int(round(width * SIZE_PX[0])), int(round(height * SIZE_PX[1])))
    logic = layout_manager.sliceWidget(name).sliceLogic()
    logic.GetSliceNode().SetDimensions(size[0], size[1], 1)  # what the slice view widget does when it is sized
    logic.FitSliceToAll()
    producer = logic.GetImageDataConnection().GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(0)
    columns, rows, _ = image.GetDimensions()
    rgba = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(rows, columns, 4) / 255.0
    content.imshow(np.flipud(rgba[..., :3] * rgba[..., 3:]), interpolation="nearest", aspect="auto")
    composite = logic.GetSliceCompositeNode()
    corner = []
    for kind, node_id in (("F", composite.GetForegroundVolumeID()), ("B", composite.GetBackgroundVolumeID())):
        if node_id:
            opacity = " ({:d}%)".format(int(round(100 * composite.GetForegroundOpacity()))) if kind == "F" else ""
            corner.append("{}: {}{}".format(kind, slicer.mrmlScene.GetNodeByID(node_id).GetName(), opacity))
    content.text(0.01, 0.015, "\n".join(corner), transform=content.transAxes, va="bottom", color="white",
                 family="serif", fontsize=10)


def _column(table_node, name):
    """A table node column: numbers as an array, text as a list."""
    array = table_node.GetTable().GetColumnByName(name)
    if array.IsNumeric():
        return numpy_support.vtk_to_numpy(array)
    return [array.GetValue(n) for n in range(array.GetNumberOfValues())]


def _cell(name, value):
    """A table cell as text: a tick for the ischaemic flag, six significant digits for a number."""
    if name == "ischemic":
        return "\u2713" if int(value) else ""
    return "{:.6g}".format(value) if isinstance(value, (float, np.floating)) else str(value)


def _plot_view(figure, view, chart):
    """The AIF chart, drawn from its plot series (table columns, colour, line style)."""
    content = _view(figure, view, chart.GetName())
    content.set_axis_off()
    left, bottom, width, height = content.get_position().bounds
    axes = figure.add_axes((left + 60 / SIZE_PX[0], bottom + 46 / SIZE_PX[1], width - 74 / SIZE_PX[0],
                            height - 80 / SIZE_PX[1]))
    axes.set_facecolor(VIEW_COLOUR)
    for n in range(chart.GetNumberOfPlotSeriesNodes()):
        series = chart.GetNthPlotSeriesNode(n)
        table = series.GetTableNode()
        dashed = series.GetLineStyle() == slicer.vtkMRMLPlotSeriesNode.LineStyleDash
        axes.plot(_column(table, series.GetXColumnName()), _column(table, series.GetYColumnName()),
                  color=series.GetColor(), linestyle="--" if dashed else "-", marker="o", markersize=2.5,
                  linewidth=1.4, label=series.GetName())
    axes.set_title(chart.GetTitle(), color=TEXT_COLOUR, fontsize=10.5)
    axes.set_xlabel(chart.GetXAxisTitle(), color=TEXT_COLOUR, fontsize=9.5)
    axes.set_ylabel(chart.GetYAxisTitle(), color=TEXT_COLOUR, fontsize=9.5)
    axes.tick_params(colors=TEXT_COLOUR, labelsize=8.5)
    axes.grid(color=GRID_COLOUR, linewidth=0.6)
    for spine in axes.spines.values():
        spine.set_color(GRID_COLOUR)
    axes.legend(fontsize=8.5, facecolor=VIEW_COLOUR, edgecolor=GRID_COLOUR, labelcolor=TEXT_COLOUR)


def _table_view(figure, view, table_node):
    """The segment table's first columns, drawn as a grid."""
    content = _view(figure, view, table_node.GetName())
    content.set_axis_off()
    values = {name: _column(table_node, name) for name in TABLE_COLUMNS}
    cells = [[_cell(name, values[name][row]) for name in TABLE_COLUMNS] for row in range(table_node.GetNumberOfRows())]
    table = content.table(cellText=cells, colLabels=TABLE_COLUMNS, colWidths=TABLE_COLUMN_WIDTHS,
                          cellLoc="left", bbox=(0.0, 0.02, 1.0, 0.98))
    table.auto_set_font_size(False)
    for (row, _), cell in table.get_celld().items():
        cell.set_facecolor("#454545" if row == 0 else VIEW_COLOUR)
        cell.set_edgecolor(GRID_COLOUR)
        cell.get_text().set_color(TEXT_COLOUR)
        cell.get_text().set_fontsize(8.4)


def render(path=SCREENSHOT_PATH):
    """Apply on the sample phantom through the module's panel, then draw the results layout; returns the path."""
    patch = pytest.MonkeyPatch()
    try:
        with tempfile.TemporaryDirectory() as cache:
            module, panel, parameters = render_panel.run_module_panel(patch, cache)
            layout_manager = slicer.app.layoutManager()
            assert layout_manager.layout == module.RESULTS_LAYOUT_ID, "Apply did not show the results layout"
            figure = Figure(figsize=(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI), dpi=DPI, facecolor=WINDOW_COLOUR)
            FigureCanvasAgg(figure)
            caption = CAPTION_PX / SIZE_PX[1]
            views = layout_views(module.RESULTS_LAYOUT_XML, (0.0, caption, 1.0, 1.0 - caption))
            for tag, view in views.items():
                if view["class"] == "vtkMRMLSliceNode":
                    _slice_view(figure, view, layout_manager, tag)
                elif view["class"] == "vtkMRMLPlotViewNode":
                    plot_view = slicer.mrmlScene.GetSingletonNode(tag, "vtkMRMLPlotViewNode")
                    _plot_view(figure, view, plot_view.GetPlotChartNode())
                else:
                    table_view = slicer.mrmlScene.GetSingletonNode(tag, "vtkMRMLTableViewNode")
                    _table_view(figure, view, table_view.GetTableNode())
            figure.text(0.004, 0.5 * caption, "A drawing, not a screen capture: the results layout after Apply on "
                        "the sample phantom. Slice views: the images Slicer's slice logic computes from the layers "
                        "the module set (slicer-core).\nChart and table: drawn with matplotlib from their nodes; "
                        "Slicer's plot and table views look different.", va="center", fontsize=8.5,
                        color="#a8a8a8", style="italic", linespacing=1.4)
            figure.canvas.draw()
            rgb = np.asarray(figure.canvas.buffer_rgba())[..., :3]
            # A 256-colour palette: a third of the size of RGB, no visible loss on these flat colours.
            Image.fromarray(rgb).quantize(colors=256).save(path, format="png", optimize=True)
    finally:
        patch.undo()
    return path


if __name__ == "__main__":
    written = render()
    size = os.path.getsize(written)
    print("{} ({} bytes{})".format(written, size, "" if size <= MAX_FILE_BYTES else
                                   ", MORE than the {} allowed: make the picture simpler".format(MAX_FILE_BYTES)))

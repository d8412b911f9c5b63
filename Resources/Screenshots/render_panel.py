"""Render the module panel with real Qt, ``panel.png``: Resources/UI/AIAIF.ui after Apply on the sample phantom.

No Slicer runs here, so the picture is made this way:

* the .ui file is built by PyQt5's Designer-file loader, with plain Qt
  stand-ins for Slicer's and CTK's widget classes
  (``Testing/slicer_doubles/pyqt_widgets.py``), offscreen;
* what each widget shows comes from the module's own code: the sample phantom
  is loaded and quantified through the panel (``AIAIFWidget``, Apply clicked)
  on the test doubles and slicer-core's real MRML scene
  (``Testing/slicer_doubles``); then every widget of the Qt panel takes the
  state the module gave its double (enabled, shown, text, selected segment),
  and the parameter-bound widgets take the parameter node's values, as
  Slicer's ``connectGui`` would show them.

Run from the repository root with the test environment (PyQt5, slicer-core):
``.venv/bin/python Resources/Screenshots/render_panel.py`` (about 10 s).
"""

import enum
import os
import sys
import tempfile

REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path[:0] = [REPOSITORY, os.path.join(REPOSITORY, "Testing")]

import pytest  # noqa: E402  (its MonkeyPatch undoes the doubles)
import slicer  # noqa: E402

import slicer_doubles  # noqa: E402
from slicer_doubles import pyqt_widgets  # noqa: E402
from slicer_doubles.pyqt_widgets import QtWidgets  # noqa: E402

PANEL_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "panel.png")
UI_FILE = os.path.join(REPOSITORY, "Resources", "UI", "AIAIF.ui")
#: Width of the module panel, pixels (about Slicer's module panel at 100 % scaling), and its font size, points.
PANEL_WIDTH_PX = 420
FONT_POINT_SIZE = 9


def run_module_panel(patch, cache_directory):
    """The module's panel (on the doubles) after the sample phantom was loaded and Apply clicked.

    Returns
    -------
    tuple
        (module, its panel widget object, the parameter node).
    """
    slicer.mrmlScene = slicer.vtkMRMLScene()
    module = slicer_doubles.import_module_file(patch, os.path.join(REPOSITORY, "AIAIF"))
    slicer_doubles.start_application(patch, module, cache_directory)
    panel = slicer_doubles.build_panel(module)
    logic = module.AIAIFLogic()
    sequence, segmentation, points = logic.loadSamplePhantom()
    panel.enter()  # picks the first sequence and segmentation, as on entering the module
    parameters = logic.getParameterNode()
    parameters.rvInsertionPoints = points
    panel.ui.applyButton.click()
    return module, panel, parameters


def _show_parameter(widget, parameters, name):
    """Show a parameter's value in its widget, as the parameter node wrapper's GUI connectors do."""
    value = getattr(parameters, name)
    field = parameters.allParameters[name]
    if isinstance(widget, pyqt_widgets.STAND_INS["qMRMLNodeComboBox"]):
        widget.setCurrentNode(value)
    elif isinstance(widget, QtWidgets.QComboBox):
        # Items: an enum's label() of each member, a Choice's str() of each choice (guiConnectors.py).
        if isinstance(field.type, type) and issubclass(field.type, enum.Enum):
            members = list(field.type)
            labels = [getattr(member, "label", lambda: member.name)() for member in members]
        else:
            members = next(v for v in field.validators if type(v).__name__ == "Choice").choices
            labels = [str(member) for member in members]
        widget.clear()
        widget.addItems(labels)
        widget.setCurrentIndex(members.index(value))
    elif isinstance(widget, QtWidgets.QDoubleSpinBox):
        widget.setValue(value)
    elif isinstance(widget, QtWidgets.QCheckBox):
        widget.setChecked(bool(value))


def show_state(qt_panel, panel, parameters):
    """Give every widget of the Qt panel what the module's code set on its double, and the parameters' values."""
    qt_panel.setMRMLScene(slicer.mrmlScene)
    for name, double in vars(panel.ui).items():
        widget = qt_panel.findChild(QtWidgets.QWidget, name)
        widget.setEnabled(double.enabled)
        widget.setVisible(double.visible)
        widget.setToolTip(double.toolTip)
        if isinstance(widget, QtWidgets.QLabel) and hasattr(double, "text"):
            widget.setText(double.text)
        if isinstance(widget, pyqt_widgets.STAND_INS["qMRMLSegmentSelectorWidget"]):
            widget.setCurrentNode(double.currentNode())
            widget.setCurrentSegmentID(double.currentSegmentID())
        parameter = widget.property("SlicerParameterName")
        if parameter:
            _show_parameter(widget, parameters, parameter)


def render(path=PANEL_PATH):
    """Render the panel after Apply on the sample phantom; returns the PNG's (width, height) in pixels."""
    application = pyqt_widgets.application()
    application.setStyle("Fusion")
    font = application.font()
    font.setPointSize(FONT_POINT_SIZE)
    application.setFont(font)
    patch = pytest.MonkeyPatch()
    try:
        with tempfile.TemporaryDirectory() as cache:
            module, panel, parameters = run_module_panel(patch, cache)
            qt_panel = pyqt_widgets.load_panel(UI_FILE)
            show_state(qt_panel, panel, parameters)
            qt_panel.setFixedWidth(PANEL_WIDTH_PX)
            return pyqt_widgets.grab_png(qt_panel, path)
    finally:
        patch.undo()


if __name__ == "__main__":
    size = render()
    print("{} ({} x {} pixels, {} bytes)".format(PANEL_PATH, size[0], size[1], os.path.getsize(PANEL_PATH)))

"""The module panel: Resources/UI/AIAIF.ui, its binding to the parameter node, the hand-offs, the ROI helpers.

Three levels, none of which needs Slicer: the .ui file and the widget's
source, read statically; the real ``AIAIFWidget`` set up on PythonQt-style
widget doubles and Slicer's real MRML logics (``slicer_doubles``), with Apply
clicked; and the .ui file loaded by PyQt5's loader in real Qt, offscreen.
Inside Slicer, ``AIAIFTest.test_Panel`` clicks through the panel.
"""

import ast
import os
import re
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
import slicer

import slicer_doubles
from AIAIFLib import constants as K
from AIAIFLib import mrml
from AIAIFLib.studies import demo_phantom
from module_source import module_source as read_module_source

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE_FILE = os.path.join(REPOSITORY, "AIAIF", "AIAIF.py")
UI_FILE = os.path.join(REPOSITORY, "Resources", "UI", "AIAIF.ui")

#: Segment Editor names deprecated since the "source volume" rename; they still exist but only warn.
DEPRECATED = ("setMasterVolumeNode", "setMasterVolumeNodeID", "masterVolumeNode")


@pytest.fixture(scope="module")
def ui_tree():
    return ElementTree.parse(UI_FILE)


@pytest.fixture(scope="module")
def module_source():
    """The module file and its subpackage's files, one after the other."""
    return read_module_source()


@pytest.fixture
def AIAIF(monkeypatch):
    monkeypatch.setattr(slicer, "mrmlScene", slicer.vtkMRMLScene(), raising=False)
    return slicer_doubles.import_module_file(monkeypatch, os.path.dirname(MODULE_FILE))


def _widgets(ui_tree):
    return {widget.get("name"): widget for widget in ui_tree.iter("widget")}


def _property(widget, name):
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            value = prop[0]
            if value.tag == "stringlist":
                return [item.text for item in value]
            return value.text
    return None


def _class_source(module_source, class_name):
    tree = ast.parse(module_source)
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    return ast.get_source_segment(module_source, node), node


# --- the .ui file -----------------------------------------------------------------------------------------

def test_ui_file_is_a_designer_form_with_collapsible_sections(ui_tree):
    root = ui_tree.getroot()
    assert root.tag == "ui" and root.find("widget").get("class") == "qMRMLWidget"
    sections = [w.get("name") for w in ui_tree.iter("widget") if w.get("class") == "ctkCollapsibleButton"]
    assert sections == ["inputsCollapsibleButton", "roiToolsCollapsibleButton", "parametersCollapsibleButton",
                        "advancedCollapsibleButton", "outputsCollapsibleButton"]
    names = [w.get("name") for w in ui_tree.iter("widget")]
    assert len(names) == len(set(names)), "widget names must be unique"
    declared = {c.find("class").text for c in ui_tree.iter("customwidget")}
    used = {w.get("class") for w in ui_tree.iter("widget") if not w.get("class").startswith("Q")}
    assert used <= declared


def test_every_widget_the_code_uses_exists_in_the_ui(ui_tree, module_source):
    used = set(re.findall(r"\bui\.(\w+)", module_source))
    used |= set(re.findall(r"\"(\w+(?:Selector|Button|Label|SpinBox|ComboBox|CheckBox))\"", module_source))
    assert used, "the widget uses no .ui names?"
    missing = used - set(_widgets(ui_tree))
    assert not missing, missing


def test_every_parameter_has_a_bound_widget_of_a_fitting_kind(AIAIF, ui_tree):
    import enum

    widgets = _widgets(ui_tree)
    bound = {_property(w, "SlicerParameterName"): w for w in widgets.values() if _property(w, "SlicerParameterName")}
    fields = AIAIF.AIAIFParameterNode.allParameters
    assert set(bound) | set(AIAIF.SEGMENT_PARAMETERS) == set(fields)
    assert not set(bound) & set(AIAIF.SEGMENT_PARAMETERS)
    for name, widget_name in AIAIF.SEGMENT_PARAMETERS.items():
        assert widgets[widget_name].get("class") == "qMRMLSegmentSelectorWidget"
    for name, widget in bound.items():
        field = fields[name]
        kind = widget.get("class")
        if field.node_classes:
            assert kind == "qMRMLNodeComboBox", name
            assert _property(widget, "nodeTypes") == [c.__name__ for c in field.node_classes], name
            assert _property(widget, "noneEnabled") == "true", name  # "create new" / nothing selected yet
        elif isinstance(field.type, type) and issubclass(field.type, enum.Enum) or any(
                type(v).__name__ == "Choice" for v in field.validators):
            assert kind == "QComboBox", name
        elif field.type is bool:
            assert kind == "QCheckBox", name
        else:
            assert kind == ("QSpinBox" if field.type is int else "QDoubleSpinBox"), name  # Slicer's int/float connectors
            ranges = [v for v in field.validators if type(v).__name__ == "WithinRange"]
            assert ranges and float(_property(widget, "minimum")) == ranges[0].minimum, name
            assert float(_property(widget, "maximum")) == ranges[0].maximum, name


def test_outputs_default_to_create_new(ui_tree):
    widgets = _widgets(ui_tree)
    for name in ("mbfVolumeSelector", "segmentsTableSelector", "aifChartSelector", "bullseyeVolumeSelector"):
        assert _property(widgets[name], "noneDisplay") == "Create new on Apply"


# --- the widget's source: thin, current API names only ------------------------------------------------------

def _called_methods(function_node, receiver_names):
    calls = set()
    for node in ast.walk(function_node):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = node.func.value
            name = receiver.id if isinstance(receiver, ast.Name) else getattr(receiver, "attr", None)
            if name in receiver_names:
                calls.add(node.func.attr)
    return calls


def test_hand_offs_call_only_current_slicer_api(module_source):
    from test_slicer_api import listed_names

    assert not any(name in module_source for name in DEPRECATED)
    _, widget = _class_source(module_source, "AIAIFWidget")
    methods = {f.name: f for f in widget.body if isinstance(f, ast.FunctionDef)}
    editor_calls = _called_methods(methods["onDrawRoisButton"], {"editor"})
    assert editor_calls == {"setSegmentationNode", "setSourceVolumeNode"}
    listed = listed_names()  # Testing/SLICER_API.md, checked in Slicer's source
    for name, receivers in (("onPlaceRvPointsButton", {"markupsLogic"}), ("showResults", {"layoutNode", "selection"}),
                            ("_onParameterNodeModified", {"selector"})):
        assert _called_methods(methods[name], receivers) <= listed, name


def test_the_widget_computes_nothing(module_source):
    source, widget = _class_source(module_source, "AIAIFWidget")
    imported = {alias.name for node in ast.walk(widget) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    modules = {node.module for node in ast.walk(widget) if isinstance(node, ast.ImportFrom)}
    assert modules <= {"AIAIFLib.errors"} and imported <= {"AIAIFCancelled", "AIAIFInputError"}
    assert "numpy" not in source and "np." not in source


def test_results_layout_has_the_four_views(AIAIF):
    layout = ElementTree.fromstring(AIAIF.RESULTS_LAYOUT_XML)
    views = {(view.get("class"), view.get("singletontag")) for view in layout.iter("view")}
    assert views == {("vtkMRMLSliceNode", "Red"), ("vtkMRMLSliceNode", "Yellow"),
                     ("vtkMRMLPlotViewNode", "PlotView1"), ("vtkMRMLTableViewNode", "TableView1")}


# --- the Logic behind the ROI tools (real MRML) -----------------------------------------------------------------

def _segment_names(segmentation):
    seg = segmentation.GetSegmentation()
    return [seg.GetNthSegment(n).GetName() for n in range(seg.GetNumberOfSegments())]


def test_roi_drawing_shows_the_peak_frame_and_creates_the_two_segments_once(AIAIF):
    logic = AIAIF.AIAIFLogic()
    phantom = demo_phantom()
    nodes = mrml.phantom_nodes(slicer.mrmlScene, phantom, name="study")
    segmentation_of_phantom = nodes.segmentation
    slicer.mrmlScene.RemoveNode(segmentation_of_phantom)  # the user has not drawn anything yet
    parameters = logic.getParameterNode()
    parameters.perfusionSequence = nodes.sequence

    segmentation, source = logic.prepareRoiDrawing(parameters)
    assert parameters.segmentation is segmentation
    assert _segment_names(segmentation) == [K.LV_BLOOD_POOL_SEGMENT_NAME, K.MYOCARDIUM_SEGMENT_NAME]
    assert segmentation.GetSegmentation().GetSegment(parameters.bloodPoolSegmentId).GetName() == \
        K.LV_BLOOD_POOL_SEGMENT_NAME
    browser = mrml.sequence_browser_node(nodes.sequence)
    assert source is browser.GetProxyNode(nodes.sequence)
    blood = phantom.frames[:, phantom.lv_blood_mask].mean(axis=1)
    assert blood[browser.GetSelectedItemNumber()] > 0.95 * blood.max()  # the LV peak, not the RV's
    assert parameters.roiFrameIndex == browser.GetSelectedItemNumber()  # named: the ROIs are drawn on it

    count = slicer.mrmlScene.GetNumberOfNodes()
    again, _ = logic.prepareRoiDrawing(parameters)
    assert again is segmentation and slicer.mrmlScene.GetNumberOfNodes() == count
    assert len(_segment_names(segmentation)) == 2


def test_roi_drawing_shows_the_named_roi_frame(AIAIF):
    from AIAIFLib.errors import AIAIFInputError

    logic = AIAIF.AIAIFLogic()
    nodes = mrml.phantom_nodes(slicer.mrmlScene, demo_phantom(), name="study")
    parameters = logic.getParameterNode()
    parameters.perfusionSequence, parameters.segmentation = nodes.sequence, nodes.segmentation
    parameters.roiFrameIndex = 7
    _, source = logic.prepareRoiDrawing(parameters)
    assert mrml.sequence_browser_node(nodes.sequence).GetSelectedItemNumber() == 7
    assert parameters.roiFrameIndex == 7
    np.testing.assert_array_equal(mrml.volume_node_array(source)[0],
                                  mrml.volume_node_array(nodes.sequence.GetNthDataNode(7))[0])
    parameters.roiFrameIndex = nodes.sequence.GetNumberOfDataNodes()
    with pytest.raises(AIAIFInputError, match="beyond the series' last frame"):
        logic.prepareRoiDrawing(parameters)


def test_roi_drawing_completes_an_existing_segmentation_by_name(AIAIF):
    logic = AIAIF.AIAIFLogic()
    nodes = mrml.phantom_nodes(slicer.mrmlScene, demo_phantom(), name="study")
    segmentation = nodes.segmentation
    seg = segmentation.GetSegmentation()
    seg.RemoveSegment(seg.GetSegmentIdBySegmentName(K.MYOCARDIUM_SEGMENT_NAME))
    blood_id = seg.GetSegmentIdBySegmentName(K.LV_BLOOD_POOL_SEGMENT_NAME)
    parameters = logic.getParameterNode()
    parameters.perfusionSequence, parameters.segmentation = nodes.sequence, segmentation
    logic.prepareRoiDrawing(parameters)
    assert parameters.bloodPoolSegmentId == blood_id  # the drawn segment is kept
    assert _segment_names(segmentation) == [K.LV_BLOOD_POOL_SEGMENT_NAME, K.MYOCARDIUM_SEGMENT_NAME]


def test_roi_drawing_without_a_sequence_says_what_to_select(AIAIF):
    from AIAIFLib.errors import AIAIFInputError

    logic = AIAIF.AIAIFLogic()
    with pytest.raises(AIAIFInputError, match="select it first"):
        logic.prepareRoiDrawing(logic.getParameterNode())


def test_rv_point_list_is_made_once(AIAIF):
    logic = AIAIF.AIAIFLogic()
    parameters = logic.getParameterNode()
    points = logic.prepareRvInsertionPoints(parameters)
    assert points.IsA("vtkMRMLMarkupsFiducialNode") and parameters.rvInsertionPoints is points
    assert logic.prepareRvInsertionPoints(parameters) is points


def test_peak_frame_of_a_result_is_its_roi_frame(AIAIF):
    logic = AIAIF.AIAIFLogic()
    sequence, segmentation, points = logic.loadSamplePhantom()
    result = logic.process(sequence, segmentation, points, aifMode="saturated", roiFrameIndex=9)
    proxy = logic.showPeakFrame(sequence, result)
    index = mrml.sequence_browser_node(sequence).GetSelectedItemNumber()
    assert index == 9 == result.quantification.summary["motion"]["roi_frame"]  # the frame the map lies on
    np.testing.assert_array_equal(mrml.volume_node_array(proxy)[0],
                                  mrml.volume_node_array(sequence.GetNthDataNode(index))[0])
    result = logic.process(sequence, segmentation, points, aifMode="saturated")
    logic.showPeakFrame(sequence, result)
    index = mrml.sequence_browser_node(sequence).GetSelectedItemNumber()
    saturated = result.quantification.aif["saturated"]
    assert saturated[index] > 0.95 * np.max(saturated)  # by default the frame of peak LV enhancement


# --- errors reach the user as sentences, never as tracebacks -----------------------------------------------------

@pytest.mark.parametrize("error, expected", [
    ("input", "Segmentation 'x' has no segment named 'Myocardium'; draw it."),
    ("defect", "Apply failed: division by zero (details are in the application log)."),
])
def test_panel_errors_show_their_sentence_and_no_traceback(AIAIF, monkeypatch, error, expected):
    import types

    from AIAIFLib.errors import AIAIFInputError

    shown = []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kwargs: shown.append(text))
    widget = object.__new__(AIAIF.AIAIFWidget)  # the Qt parts are not needed for the error path
    widget.ui = types.SimpleNamespace(statusLabel=types.SimpleNamespace(text=""))
    with widget._errorsShown("Apply failed"):
        if error == "input":
            raise AIAIFInputError("Segmentation 'x' has no segment named 'Myocardium'; draw it.")
        1 / 0
    assert shown == [expected] and widget.ui.statusLabel.text == expected
    assert "Traceback" not in shown[0]


def test_every_panel_action_runs_inside_the_error_display(module_source):
    _, widget = _class_source(module_source, "AIAIFWidget")
    methods = {f.name: f for f in widget.body if isinstance(f, ast.FunctionDef)}
    for name in ("onDrawRoisButton", "onPlaceRvPointsButton", "onApplyButton"):
        withs = [node for node in ast.walk(methods[name]) if isinstance(node, ast.With)]
        assert any("_errorsShown" in ast.dump(w.items[0].context_expr) for w in withs), name
    assert "tryWithErrorDisplay" not in ast.get_source_segment(module_source, widget)


# --- the panel itself, on widget doubles and Slicer's real MRML logics ------------------------------------------

@pytest.fixture
def panel(AIAIF, monkeypatch, tmp_path):
    """The module's panel after Slicer's start-up, set up from Resources/UI/AIAIF.ui (``slicer_doubles``)."""
    slicer_doubles.start_application(monkeypatch, AIAIF, tmp_path / "cache")
    panel = slicer_doubles.build_panel(AIAIF)
    yield panel
    panel.cleanup()  # as when Slicer unloads the module: its scene observers go


def _segmentation_with_new_ids(segmentation, prefix):
    """A copy of a segmentation whose segments have other IDs (as one drawn anew would)."""
    copy = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", prefix)
    source = segmentation.GetSegmentation()
    for n in range(source.GetNumberOfSegments()):
        segment = slicer.vtkSegment()
        segment.DeepCopy(source.GetNthSegment(n))
        copy.GetSegmentation().AddSegment(segment, "{}_{}".format(prefix, n))
    return copy


def test_apply_shows_the_results_layout_with_chart_and_table(AIAIF, panel):
    """What AIAIFTest.test_Panel asserts after Apply, on Slicer's own layout and Plots logics."""
    logic = AIAIF.AIAIFLogic()
    sequence, segmentation, points = logic.loadSamplePhantom()
    panel.enter()  # the first sequence and segmentation are picked
    parameters = logic.getParameterNode()
    assert parameters.perfusionSequence is sequence and parameters.segmentation is segmentation
    parameters.rvInsertionPoints = points
    assert panel.ui.applyButton.enabled, panel.ui.applyButton.toolTip

    panel.ui.applyButton.click()
    assert parameters.mbfVolume is not None and parameters.bullseyeVolume is not None
    assert "LAD" in panel.ui.statusLabel.text
    layoutManager = slicer.app.layoutManager()
    assert layoutManager.layout == AIAIF.RESULTS_LAYOUT_ID
    red = layoutManager.sliceWidget("Red").sliceLogic().GetSliceCompositeNode()
    assert red.GetForegroundVolumeID() == parameters.mbfVolume.GetID()
    yellow = layoutManager.sliceWidget("Yellow").sliceLogic().GetSliceCompositeNode()
    assert yellow.GetBackgroundVolumeID() == parameters.bullseyeVolume.GetID()
    plotView = slicer.mrmlScene.GetSingletonNode("PlotView1", "vtkMRMLPlotViewNode")
    assert plotView.GetPlotChartNodeID() == parameters.aifChart.GetID()
    tableView = slicer.mrmlScene.GetSingletonNode("TableView1", "vtkMRMLTableViewNode")
    assert tableView.GetTableNodeID() == parameters.segmentsTable.GetID()
    assert not panel.ui.progressBar.visible and not panel.ui.cancelButton.enabled


def test_segment_selectors_show_what_the_parameters_hold_after_the_segmentation_changes(AIAIF, panel):
    """An ID of the previous segmentation is not left in a parameter behind a selector showing another segment."""
    logic = AIAIF.AIAIFLogic()
    sequence, first, points = logic.loadSamplePhantom()
    parameters = logic.getParameterNode()
    parameters.perfusionSequence, parameters.segmentation = sequence, first
    parameters.rvInsertionPoints = points
    seg = first.GetSegmentation()
    parameters.bloodPoolSegmentId = seg.GetSegmentIdBySegmentName(K.LV_BLOOD_POOL_SEGMENT_NAME)
    parameters.myocardiumSegmentId = seg.GetSegmentIdBySegmentName(K.MYOCARDIUM_SEGMENT_NAME)
    selectors = {name: getattr(panel.ui, widget) for name, widget in AIAIF.SEGMENT_PARAMETERS.items()}
    for name, selector in selectors.items():
        assert selector.currentSegmentID() == getattr(parameters, name) != ""

    parameters.segmentation = _segmentation_with_new_ids(first, "redrawn")
    for name, selector in selectors.items():
        assert selector.currentSegmentID() == getattr(parameters, name), name  # what is shown is what Apply uses
    result = logic.processParameterNode(parameters)  # the segments named so are used
    assert result.summary["results"]["ischemic_territories"] == ["LAD"]


def test_segment_ids_of_another_segmentation_are_reset_but_not_while_importing(AIAIF):
    logic = AIAIF.AIAIFLogic()
    sequence, segmentation, points = logic.loadSamplePhantom()
    parameters = logic.getParameterNode()
    parameters.segmentation = segmentation
    blood = segmentation.GetSegmentation().GetSegmentIdBySegmentName(K.LV_BLOOD_POOL_SEGMENT_NAME)
    parameters.bloodPoolSegmentId, parameters.myocardiumSegmentId = blood, "gone"
    slicer.mrmlScene.StartState(slicer.vtkMRMLScene.ImportState)  # segments are read after the parameter node
    assert logic.clearUnknownSegmentIds(parameters) == [] and parameters.myocardiumSegmentId == "gone"
    slicer.mrmlScene.EndState(slicer.vtkMRMLScene.ImportState)
    assert logic.clearUnknownSegmentIds(parameters) == ["myocardiumSegmentId"]
    assert (parameters.bloodPoolSegmentId, parameters.myocardiumSegmentId) == (blood, "")
    parameters.segmentation = None
    parameters.bloodPoolSegmentId = "kept until a segmentation is chosen"
    assert logic.clearUnknownSegmentIds(parameters) == []


def test_the_roi_frame_of_another_series_is_forgotten_but_not_while_importing(AIAIF):
    logic = AIAIF.AIAIFLogic()
    first, _, _ = logic.loadSamplePhantom()
    second = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "another series")
    parameters = logic.getParameterNode()
    parameters.perfusionSequence, parameters.roiFrameIndex = first, 12
    assert not logic.forgetRoiFrameOfAnotherSeries(parameters, None)  # nothing was selected before
    assert not logic.forgetRoiFrameOfAnotherSeries(parameters, first.GetID()) and parameters.roiFrameIndex == 12
    parameters.perfusionSequence = second
    slicer.mrmlScene.StartState(slicer.vtkMRMLScene.ImportState)  # a loaded scene sets its series after the node
    assert not logic.forgetRoiFrameOfAnotherSeries(parameters, first.GetID()) and parameters.roiFrameIndex == 12
    slicer.mrmlScene.EndState(slicer.vtkMRMLScene.ImportState)
    assert logic.forgetRoiFrameOfAnotherSeries(parameters, first.GetID()) and parameters.roiFrameIndex == -1
    parameters.roiFrameIndex = 12
    parameters.perfusionSequence = None
    assert logic.forgetRoiFrameOfAnotherSeries(parameters, second.GetID()) and parameters.roiFrameIndex == -1


def test_the_panel_forgets_the_roi_frame_when_another_series_is_selected(AIAIF, panel):
    """The ROI frame Draw ROIs named belongs to its series: after switching series the motion correction would
    register every frame of the new one to a frame of the old one."""
    logic = AIAIF.AIAIFLogic()
    first, _, _ = logic.loadSamplePhantom()
    panel.enter()
    parameters = logic.getParameterNode()
    assert parameters.perfusionSequence is first
    parameters.roiFrameIndex = 12  # as Draw ROIs sets it
    parameters.roiFrameIndex = 14  # or the user, on the same series
    assert parameters.roiFrameIndex == 14
    parameters.perfusionSequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "another series")
    assert parameters.roiFrameIndex == -1


# --- the .ui file in real Qt (PyQt5's loader, offscreen) ----------------------------------------------------------

@pytest.fixture(scope="module")
def qt_panel():
    from slicer_doubles import pyqt_widgets

    return pyqt_widgets.load_panel(UI_FILE)


def test_ui_file_loads_in_real_qt_with_every_widget_and_property(ui_tree, qt_panel):
    from slicer_doubles.pyqt_widgets import STAND_INS, QtWidgets

    for name, element in _widgets(ui_tree).items():
        widget = qt_panel if name == qt_panel.objectName() else qt_panel.findChild(QtWidgets.QWidget, name)
        assert widget is not None, name
        expected = element.get("class")
        actual = type(widget).__name__ if expected in STAND_INS else widget.metaObject().className()
        assert actual == expected, name
        parameter = _property(element, "SlicerParameterName")
        assert widget.property("SlicerParameterName") == parameter, name  # Qt dynamic property, as connectGui reads
        if expected == "qMRMLNodeComboBox":
            assert widget.nodeTypes() == _property(element, "nodeTypes")
            assert widget.noneEnabled() and widget.itemText(0) == _property(element, "noneDisplay")
    assert qt_panel.findChild(QtWidgets.QWidget, "advancedCollapsibleButton").collapsed()
    spin = qt_panel.findChild(QtWidgets.QDoubleSpinBox, "thresholdSpinBox")
    assert (spin.minimum(), spin.maximum(), spin.suffix()) == (0.1, 10.0, " mL/min/g")


def test_ui_connections_hand_the_scene_to_every_mrml_widget_in_real_qt(ui_tree, qt_panel):
    from slicer_doubles.pyqt_widgets import QtWidgets

    scene = slicer.vtkMRMLScene()
    qt_panel.setMRMLScene(scene)
    mrml_widgets = [name for name, w in _widgets(ui_tree).items()
                    if w.get("class") in ("qMRMLNodeComboBox", "qMRMLSegmentSelectorWidget")]
    assert mrml_widgets and all(qt_panel.findChild(QtWidgets.QWidget, name).mrmlScene() is scene
                                for name in mrml_widgets)


def test_a_property_the_real_class_lacks_fails_the_real_qt_load(tmp_path):
    from slicer_doubles import pyqt_widgets

    text = open(UI_FILE).read().replace('<property name="noneEnabled"><bool>true</bool></property>',
                                        '<property name="noneEnabled"><bool>true</bool></property>'
                                        '<property name="noSuchProperty"><bool>true</bool></property>', 1)
    broken = tmp_path / "broken.ui"
    broken.write_text(text)
    with pytest.raises(AttributeError, match="setNoSuchProperty"):
        pyqt_widgets.load_panel(str(broken))


def test_qt_panel_renders_to_a_picture(qt_panel, tmp_path):
    from slicer_doubles import pyqt_widgets

    width, height = pyqt_widgets.grab_png(qt_panel, str(tmp_path / "panel.png"))
    assert width > 200 and height > 400 and (tmp_path / "panel.png").stat().st_size > 5000


def test_readme_panel_image_is_the_qt_rendering():
    with open(os.path.join(REPOSITORY, "README.md")) as handle:
        readme = handle.read()
    assert "](Resources/Screenshots/panel.png)" in readme
    script = open(os.path.join(REPOSITORY, "Resources", "Screenshots", "render_panel.py")).read()
    assert '"panel.png"' in script and "load_panel(UI_FILE)" in script


@pytest.mark.slow
def test_render_panel_script_fills_the_panel_from_the_module(tmp_path):
    """The README's picture: the panel after Apply on the sample (about 10 s)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "render_panel", os.path.join(REPOSITORY, "Resources", "Screenshots", "render_panel.py"))
    render_panel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render_panel)
    width, height = render_panel.render(str(tmp_path / "panel.png"))
    assert width == render_panel.PANEL_WIDTH_PX and height > 400

"""The doubles of Testing/slicer_doubles keep the Slicer rules the module depends on.

Each rule is the one its double's docstring cites from Slicer's source; these
tests pin them, so that a double does not drift into accepting what Slicer
refuses.
"""

import sys

import pytest
import slicer

import slicer_doubles
from slicer_doubles import SampleData, application, widgets


@pytest.fixture
def scene(monkeypatch):
    scene = slicer.vtkMRMLScene()
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    return scene


# --- start-up order -------------------------------------------------------------------------------------------

def test_on_5_8_the_markups_classes_arrive_only_when_markups_is_loaded(monkeypatch):
    fiducial = slicer.vtkMRMLMarkupsFiducialNode
    held_back = slicer_doubles.install(monkeypatch, "5.8")
    assert not hasattr(slicer, "vtkMRMLMarkupsFiducialNode") and not hasattr(slicer, "vtkSlicerMarkupsLogic")
    with pytest.raises(ImportError):
        from slicer import vtkMRMLMarkupsFiducialNode  # noqa: F401
    from vtkSlicerMarkupsModuleMRMLPython import vtkMRMLMarkupsFiducialNode
    assert vtkMRMLMarkupsFiducialNode is fiducial
    slicer_doubles.load_markups(monkeypatch, held_back)
    assert slicer.vtkMRMLMarkupsFiducialNode is fiducial and hasattr(slicer, "vtkSlicerMarkupsLogic")


def test_on_5_10_the_point_list_class_is_mrml_core(monkeypatch):
    slicer_doubles.install(monkeypatch, "5.10")
    assert hasattr(slicer, "vtkMRMLMarkupsFiducialNode")  # Libs/MRML/Core since v5.10.0
    assert not hasattr(slicer, "vtkMRMLMarkupsJsonStorageNode") and not hasattr(slicer, "vtkSlicerMarkupsLogic")
    assert not hasattr(sys.modules["vtkSlicerMarkupsModuleMRMLPython"], "vtkMRMLMarkupsFiducialNode")


# --- application: real layout and Plots logics ------------------------------------------------------------------

CUSTOM_LAYOUT = 987654
CUSTOM_LAYOUT_XML = '<layout type="horizontal"><item><view class="vtkMRMLTableViewNode" singletontag="T"/></item></layout>'


def test_show_chart_in_layout_switches_an_unknown_layout_to_four_up_plot(scene):
    app = application.Application(scene)
    layout_manager = app.layoutManager()
    layout_manager.layoutLogic().GetLayoutNode().AddLayoutDescription(CUSTOM_LAYOUT, CUSTOM_LAYOUT_XML)
    layout_manager.setLayout(CUSTOM_LAYOUT)
    assert layout_manager.layout == CUSTOM_LAYOUT
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode")
    application.modules(app).plots.logic().ShowChartInLayout(chart)
    assert layout_manager.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotView


def test_set_layout_without_a_description_falls_back_to_conventional(scene):
    layout_manager = application.Application(scene).layoutManager()
    layout_manager.setLayout(CUSTOM_LAYOUT)
    assert layout_manager.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView


# --- widgets ----------------------------------------------------------------------------------------------------

def test_slots_get_no_more_signal_arguments_than_they_take():
    button, calls = widgets.Widget("QPushButton"), []
    button.connect("clicked(bool)", lambda: calls.append("none"))
    button.connect("clicked(bool)", lambda checked: calls.append(checked))
    button.connect("clicked(bool)", lambda *all: calls.append(all))
    button.click()
    assert calls == ["none", False, (False,)]
    button.enabled = False
    button.click()
    assert len(calls) == 3


def _segmentation(scene, ids):
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()  # registered by Slicer's Segmentations module
    if factory.ConstructRepresentationObjectByRepresentation("Binary labelmap") is None:
        factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    for segment_id in ids:
        node.GetSegmentation().AddEmptySegment(segment_id, segment_id.upper())
    return node


def _selector():
    selector, emitted = widgets.SegmentSelector(properties={"noneEnabled": True}), []
    selector.connect("currentSegmentChanged(QString)", emitted.append)
    return selector, emitted


def test_segment_selector_ignores_an_unknown_id(scene):
    selector, emitted = _selector()
    selector.setCurrentNode(_segmentation(scene, ["a", "b"]))
    selector.setCurrentSegmentID("b")
    selector.setCurrentSegmentID("unknown")
    assert selector.currentSegmentID() == "b" and selector.currentSegmentText() == "B" and emitted == ["b"]
    selector.setCurrentSegmentID("")
    assert selector.currentSegmentText() == widgets.NONE_DISPLAY and emitted == ["b", ""]


def test_segment_selector_moves_to_the_first_segment_silently_when_blocked(scene):
    selector, emitted = _selector()
    selector.setCurrentNode(_segmentation(scene, ["a", "b"]))
    selector.setCurrentSegmentID("b")
    selector.blockSignals(True)
    selector.setCurrentNode(_segmentation(scene, ["c", "d"]))
    selector.blockSignals(False)
    assert selector.currentSegmentID() == "c" and emitted == ["b"]  # no signal told anyone


def test_segment_selector_repopulates_when_its_segment_is_removed(scene):
    selector, emitted = _selector()
    segmentation = _segmentation(scene, ["a", "b"])
    selector.setCurrentNode(segmentation)
    selector.setCurrentSegmentID("b")
    segmentation.GetSegmentation().RemoveSegment("b")
    assert selector.currentSegmentID() == "a" and emitted == ["b", "a"]


def test_ui_file_becomes_named_widgets_with_the_scene_connections():
    import os

    ui_file = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources", "UI", "AIAIF.ui")
    top = widgets.load_ui(ui_file)
    ui = widgets.child_widget_variables(top)
    assert isinstance(ui.bloodPoolSegmentSelector, widgets.SegmentSelector) and ui.bloodPoolSegmentSelector.noneEnabled
    assert ui.applyButton.enabled is False and ui.applyButton.text == "Apply"
    scene = object()
    top.setMRMLScene(scene)
    assert ui.perfusionSequenceSelector.mrmlScene is scene and ui.applyButton.mrmlScene is None


# --- SampleData -------------------------------------------------------------------------------------------------

def test_download_sample_never_calls_a_custom_downloader(monkeypatch):
    monkeypatch.setattr(slicer, "modules", type("Modules", (), {})(), raising=False)
    called = []
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="Test", sampleName="Generated", uris=[], fileNames=[], nodeNames=[],
        customDownloader=lambda source: called.append(source.sampleName) or ["node"])
    with pytest.raises(IndexError):
        SampleData.downloadSample("Generated")  # no URI: nothing is loaded
    assert called == []
    assert SampleData.clickSampleButton("Generated") == ["node"] and called == ["Generated"]


# --- parameter node GUI binding ---------------------------------------------------------------------------------

def test_connect_gui_binds_node_selectors_both_ways_and_shows_the_other_parameters(scene):
    import types

    from slicer_doubles.parameterNodeWrapper import parameterNodeWrapper

    @parameterNodeWrapper
    class Parameters:
        volume: slicer.vtkMRMLScalarVolumeNode
        threshold: float = 1.5

    parameters = Parameters(scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
    gui = types.SimpleNamespace(
        selector=widgets.NodeComboBox(properties={"SlicerParameterName": "volume"}),
        spin=widgets.Widget("QDoubleSpinBox", properties={"SlicerParameterName": "threshold"}),
        label=widgets.Widget("QLabel"))
    tag = parameters.connectGui(gui)
    assert gui.selector.nodeTypes == ["vtkMRMLScalarVolumeNode"] and gui.spin.value == 1.5
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    gui.selector.setCurrentNode(volume)
    assert parameters.volume is volume
    parameters.threshold = 2.0
    parameters.volume = None
    assert gui.spin.value == 2.0 and gui.selector.currentNode() is None
    parameters.disconnectGui(tag)
    gui.selector.setCurrentNode(volume)
    assert parameters.volume is None

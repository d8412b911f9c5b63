"""``AIAIFWidget``, the module panel, and the layout it shows the results in."""

import contextlib
import logging

import vtk

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from .i18n import _
from .logic import AIAIFLogic
from .parameter_node import SEGMENT_PARAMETERS, AifMode
from .paths import resourcePath

#: Custom view layout of the results: slice view (MBF over the peak frame) and bullseye on the left,
#: AIF chart and segment table on the right.
RESULTS_LAYOUT_ID = 52601
RESULTS_LAYOUT_XML = """
<layout type="horizontal" split="true">
 <item splitSize="600">
  <layout type="vertical" split="true">
   <item splitSize="650">
    <view class="vtkMRMLSliceNode" singletontag="Red">
     <property name="orientation" action="default">Axial</property>
     <property name="viewlabel" action="default">R</property>
     <property name="viewcolor" action="default">#F34A33</property>
    </view>
   </item>
   <item splitSize="350">
    <view class="vtkMRMLSliceNode" singletontag="Yellow">
     <property name="orientation" action="default">Axial</property>
     <property name="viewlabel" action="default">Y</property>
     <property name="viewcolor" action="default">#EDD54C</property>
    </view>
   </item>
  </layout>
 </item>
 <item splitSize="400">
  <layout type="vertical" split="true">
   <item>
    <view class="vtkMRMLPlotViewNode" singletontag="PlotView1">
     <property name="viewlabel" action="default">P</property>
    </view>
   </item>
   <item>
    <view class="vtkMRMLTableViewNode" singletontag="TableView1">
     <property name="viewlabel" action="default">T</property>
    </view>
   </item>
  </layout>
 </item>
</layout>
"""

#: Opacity of the MBF map over the peak frame in the results view.
MBF_OVERLAY_OPACITY = 0.8


class AIAIFWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: binds the GUI (Resources/UI/AIAIF.ui) to the parameter node and calls ``AIAIFLogic``.

    It computes nothing: every action is one Logic call (tested on real MRML
    nodes) followed by application-level display (module switch, layout,
    views, message boxes).
    """

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.ui = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._running = False
        self._shownSequenceId = None  # ID of the perfusion series the parameter node held when last shown

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(resourcePath("UI/AIAIF.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AIAIFLogic()
        self.ui.progressBar.hide()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self.ui.bloodPoolSegmentSelector.connect("currentSegmentChanged(QString)",
                                                 lambda segmentId: self._setSegmentParameter("bloodPoolSegmentId",
                                                                                             segmentId))
        self.ui.myocardiumSegmentSelector.connect("currentSegmentChanged(QString)",
                                                  lambda segmentId: self._setSegmentParameter("myocardiumSegmentId",
                                                                                              segmentId))
        self.ui.drawRoisButton.connect("clicked(bool)", self.onDrawRoisButton)
        self.ui.placeRvPointsButton.connect("clicked(bool)", self.onPlaceRvPointsButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onSceneEndImport(self, caller, event):
        if self._parameterNode:  # the segments are read now: check the segment IDs again
            self._onParameterNodeModified()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        self.logic.selectDefaultInputs(self._parameterNode)

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        self._shownSequenceId = None
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    # -- parameter node -> GUI (the parts the wrapper does not bind) ------------------------------------------

    def _onParameterNodeModified(self, caller=None, event=None):
        parameters = self._parameterNode
        # qMRMLSegmentSelectorWidget shows an ID its segmentation lacks as another segment, silently
        # (populateSegmentCombobox, Libs/MRML/Widgets/qMRMLSegmentSelectorWidget.cxx, v5.8.1 to the
        # development head): such an ID is cleared first.  Clearing modifies the parameter node, which
        # runs this method again, nested; the rest below is idempotent.
        self.logic.clearUnknownSegmentIds(parameters)
        # The ROI frame belongs to the series the ROIs were drawn on (nested as above).
        sequence = parameters.perfusionSequence
        previousSequenceId, self._shownSequenceId = self._shownSequenceId, sequence.GetID() if sequence else None
        self.logic.forgetRoiFrameOfAnotherSeries(parameters, previousSequenceId)
        for name, selectorName in SEGMENT_PARAMETERS.items():
            selector = getattr(self.ui, selectorName)
            wasBlocked = selector.blockSignals(True)
            selector.setCurrentNode(parameters.segmentation)
            selector.setCurrentSegmentID(getattr(parameters, name))
            selector.blockSignals(wasBlocked)
        self.ui.externalAifTableSelector.enabled = parameters.aifMode == AifMode.EXTERNAL
        self.ui.fitQualityVolumeSelector.enabled = parameters.computeFitQuality
        self.ui.placeRvPointsButton.enabled = parameters.perfusionSequence is not None
        self.ui.drawRoisButton.enabled = parameters.perfusionSequence is not None
        missing = self.logic.missingInputs(parameters)
        self.ui.applyButton.enabled = not missing and not self._running
        self.ui.applyButton.toolTip = (_("Quantify stress MBF") if not missing
                                       else _("Missing: {missing}").format(missing=", ".join(missing)))

    def _setSegmentParameter(self, name, segmentId):
        if self._parameterNode:
            setattr(self._parameterNode, name, segmentId or "")

    # -- ROI tools ------------------------------------------------------------------------------------------------

    def onDrawRoisButton(self):
        with self._errorsShown(_("Cannot open the Segment Editor")):
            segmentation, sourceVolume = self.logic.prepareRoiDrawing(self._parameterNode)
            slicer.util.setSliceViewerLayers(background=sourceVolume, foreground=None, fit=True)
            slicer.util.selectModule("SegmentEditor")
            editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
            editor.setSegmentationNode(segmentation)
            editor.setSourceVolumeNode(sourceVolume)
            slicer.util.showStatusMessage(_("Draw 'LV blood pool' and 'Myocardium' on the peak frame, then return to "
                                            "AI-AIF with the module toolbar's back arrow."), 10000)

    def onPlaceRvPointsButton(self):
        with self._errorsShown(_("Cannot start placing the RV insertion points")):
            points = self.logic.prepareRvInsertionPoints(self._parameterNode)
            markupsLogic = slicer.modules.markups.logic()
            markupsLogic.SetActiveList(points)
            markupsLogic.StartPlaceMode(True)

    # -- Apply -----------------------------------------------------------------------------------------------------

    def onApplyButton(self):
        from AIAIFLib.errors import AIAIFCancelled

        self._setRunning(True)
        try:
            with self._errorsShown(_("AI-AIF could not quantify this study")):
                try:
                    result = self.logic.processParameterNode(self._parameterNode, progressCallback=self._onProgress)
                except AIAIFCancelled:
                    self.ui.statusLabel.text = _("Cancelled; the scene is as it was before Apply.")
                    return
                self.ui.statusLabel.text = self.logic.statusText(result.summary)
                self.showResults(result)
        finally:
            self._setRunning(False)

    @contextlib.contextmanager
    def _errorsShown(self, failure):
        """Show an error of the block as its sentence in a message box and the status line, never a traceback.

        Input errors (``AIAIFInputError``) already say what to fix; anything
        else is a defect: its message is shown and its traceback goes to the
        application log only.
        """
        from AIAIFLib.errors import AIAIFInputError

        try:
            yield
        except AIAIFInputError as error:
            text = str(error)
        except Exception as error:
            logging.exception("%s", failure)
            text = _("{failure}: {error} (details are in the application log).").format(failure=failure, error=error)
        else:
            return
        self.ui.statusLabel.text = text
        slicer.util.errorDisplay(text, windowTitle=_("AI-AIF"))

    def onCancelButton(self):
        self.logic.requestCancel()

    def _setRunning(self, running):
        self._running = running
        self.ui.cancelButton.enabled = running
        self.ui.progressBar.setVisible(running)
        self.ui.progressBar.value = 0
        self._onParameterNodeModified()

    def _onProgress(self, fraction, message):
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.progressBar.format = "{} (%p%)".format(message)
        slicer.app.processEvents()  # paints the bar and lets Cancel be clicked

    # -- results view ----------------------------------------------------------------------------------------------

    def showResults(self, result):
        """Results layout: MBF over the ROI frame, bullseye, AIF chart and segment table."""
        layoutManager = slicer.app.layoutManager()
        layoutNode = layoutManager.layoutLogic().GetLayoutNode()
        if not layoutNode.IsLayoutDescription(RESULTS_LAYOUT_ID):
            layoutNode.AddLayoutDescription(RESULTS_LAYOUT_ID, RESULTS_LAYOUT_XML)
        layoutManager.setLayout(RESULTS_LAYOUT_ID)

        peakFrame = self.logic.showPeakFrame(self._parameterNode.perfusionSequence, result)
        red = layoutManager.sliceWidget("Red").sliceLogic().GetSliceCompositeNode()
        red.SetBackgroundVolumeID(peakFrame.GetID() if peakFrame is not None else None)
        red.SetForegroundVolumeID(result.mbfVolumeNode.GetID())
        red.SetForegroundOpacity(MBF_OVERLAY_OPACITY)
        yellow = layoutManager.sliceWidget("Yellow").sliceLogic().GetSliceCompositeNode()
        yellow.SetBackgroundVolumeID(result.bullseyeVolumeNode.GetID() if result.bullseyeVolumeNode else None)
        yellow.SetForegroundVolumeID(None)
        for viewName in ("Red", "Yellow"):
            layoutManager.sliceWidget(viewName).sliceController().rotateSliceToLowestVolumeAxes()
            layoutManager.sliceWidget(viewName).sliceLogic().FitSliceToAll()

        # Selecting the chart and the table shows them in the layout's plot and table views.  Not
        # vtkSlicerPlotsLogic::ShowChartInLayout: it switches every layout it does not know, this one
        # included, to Four-Up Plot (GetLayoutWithPlot, Modules/Loadable/Plots/Logic/vtkSlicerPlotsLogic.cxx,
        # v5.8.1 to the development head), which has no table view.
        applicationLogic = slicer.app.applicationLogic()
        selection = applicationLogic.GetSelectionNode()
        selection.SetActivePlotChartID(result.aifChartNode.GetID())
        selection.SetActiveTableID(result.segmentsTableNode.GetID())
        applicationLogic.PropagatePlotChartSelection()
        applicationLogic.PropagateTableSelection()

"""AI-AIF: quantitative stress perfusion CMR in 3D Slicer.

The module shape is the current Slicer scripted-module template's: ``AIAIF``
(metadata), ``AIAIFParameterNode`` (every input, parameter and output of a
run, saved with the scene), ``AIAIFWidget`` (the panel: binds the GUI to the
parameter node and calls the Logic, nothing else), ``AIAIFLogic`` (the
console API) and ``AIAIFTest``.

All science lives in the ``AIAIFLib`` package beside this module; the Logic
only calls its Qt-free MRML adapter (``AIAIFLib.mrml.quantify_nodes``), which
the command line (``python -m AIAIFLib quantify``) calls as well, so panel,
console and command line share one code path.  Nothing here needs PyTorch,
matplotlib or pynrrd: stock Slicer's numpy, scipy and VTK are enough.
"""

import contextlib
import enum
import hashlib
import json
import logging
import os
import pathlib
import sys
from typing import Annotated

import vtk

import slicer
from slicer import (
    vtkMRMLPlotChartNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLSequenceNode,
    vtkMRMLTableNode,
)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # Slicer releases before translations (and slicer-core) have no slicer.i18n
    def _(text):
        return text

    def translate(context, text):
        return text


# ---------------------------------------------------------------------------
# Where the library and the resources are
# ---------------------------------------------------------------------------

#: Folder of this file: ``<repository>/AIAIF`` in a source checkout, Slicer's
#: ``qt-scripted-modules`` folder once built or installed.
MODULE_DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def _packageRoot():
    """Folder holding ``AIAIFLib`` and ``Resources``: beside the module once installed, one up in a source checkout."""
    for candidate in (MODULE_DIRECTORY, os.path.dirname(MODULE_DIRECTORY)):
        if os.path.isdir(os.path.join(candidate, "AIAIFLib")) and os.path.isdir(os.path.join(candidate, "Resources")):
            return candidate
    raise ImportError("AI-AIF cannot find its AIAIFLib package and Resources folder next to {} or one folder up; "
                      "reinstall the extension or add the module from a complete source checkout."
                      .format(MODULE_DIRECTORY))


PACKAGE_ROOT = _packageRoot()
if PACKAGE_ROOT not in sys.path:  # a source checkout: Slicer only put the module folder on sys.path
    sys.path.insert(0, PACKAGE_ROOT)

from AIAIFLib import constants as AIAIFConstants  # noqa: E402  (light: no numpy work at Slicer start-up)
from AIAIFLib.pipeline import MOTION_CORRECTIONS, TISSUE_CONVERSIONS  # noqa: E402  (numpy only, loaded already)


def _markupsFiducialNodeClass():
    """``vtkMRMLMarkupsFiducialNode`` on every supported Slicer (5.8 and later), while this file is imported.

    Since Slicer 5.10 the class is in MRML core (``Libs/MRML/Core/vtkMRMLMarkupsFiducialNode.h``,
    v5.10.0 and the development head), so ``slicer`` holds it from the start.  In Slicer 5.8 it
    belongs to the Markups module's MRML library (``Modules/Loadable/Markups/MRML/``, v5.8.1),
    whose classes reach ``slicer`` only when the Markups module is instantiated
    (``qSlicerScriptedUtils::importModulePythonExtensions``, ``Base/QTCore/qSlicerScriptedUtils.cxx``).
    Modules are instantiated in the sorted order of their names
    (``qSlicerAbstractModuleFactoryManager::instantiateModules``, a ``QMap`` walk), and instantiating
    a scripted module runs its file, so "AIAIF" comes before "Markups".  The library's own Python
    module is importable all along (the launcher puts ``qt-loadable-modules`` on ``PYTHONPATH``,
    ``CMake/SlicerBlockCTKAppLauncherSettings.cmake``) and holds the very class object Slicer
    copies into ``slicer`` later.
    """
    try:
        return slicer.vtkMRMLMarkupsFiducialNode
    except AttributeError:
        pass
    try:
        from vtkSlicerMarkupsModuleMRMLPython import vtkMRMLMarkupsFiducialNode
    except ImportError:
        raise ImportError("AI-AIF cannot find vtkMRMLMarkupsFiducialNode in slicer or in the Markups module's "
                          "vtkSlicerMarkupsModuleMRMLPython; use Slicer 5.8 or later.")
    return vtkMRMLMarkupsFiducialNode


vtkMRMLMarkupsFiducialNode = _markupsFiducialNodeClass()


def resourcePath(relativePath):
    """Absolute path of a file under the extension's ``Resources`` folder (source checkout or installed).

    Parameters
    ----------
    relativePath : str
        Path below ``Resources``, e.g. ``"Icons/AIAIF.png"``.

    Returns
    -------
    str
    """
    return os.path.join(PACKAGE_ROOT, "Resources", relativePath)


#: Name of the sample data set (Sample Data module) and of its nodes.
SAMPLE_PHANTOM_NAME = "AIAIFPhantom"
#: The sample's recipe, below ``Resources``: the one file Sample Data fetches; ``AIAIFFileReader`` reads it.
SAMPLE_RECIPE = "SampleData/AIAIFPhantom.aiaif.json"
SAMPLE_RECIPE_SUFFIX = ".aiaif.json"
#: File type of the recipe in Slicer's IO manager.
SAMPLE_FILE_TYPE = "AIAIFSamplePhantomFile"


#
# AIAIF
#


class AIAIF(ScriptedLoadableModule):
    """Module metadata; see ``AIAIFLogic`` for the console API."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("AI-AIF Perfusion")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Cardiac")]
        self.parent.dependencies = ["Sequences", "Segmentations", "Markups", "Plots", "Tables"]
        self.parent.contributors = ["AI-AIF developers"]
        self.parent.helpText = _("""
Quantitative stress myocardial blood flow (MBF, mL/min/g) from a standard single-bolus, single-sequence
first-pass perfusion CMR scan.
<ol>
<li>The arterial input function (AIF) is read from the LV blood pool. At the bolus peak it is saturated, so
uncorrected it underestimates the AIF and overestimates MBF.</li>
<li>A 1D U-Net maps the saturated AIF to the unsaturated one (AI-AIF).</li>
<li>Pixelwise MBF follows by Fermi-constrained deconvolution of the myocardial curves, reported per AHA segment
and coronary territory against the 1.35 mL/min/g ischaemia threshold.</li>
</ol>
Inputs: the 4D perfusion sequence, a segmentation with the segments "LV blood pool" and "Myocardium", and
optionally the RV insertion points (without them the RV is found in the images). Sample data: Sample Data
module, "AI-AIF" category.
The network was trained on the project's physics simulator; read Resources/Models/MODEL_CARD.md before clinical
research use. Not for diagnostic use.
""")
        self.parent.acknowledgementText = _("""
Method: Scannell CM, et al. AI-AIF: artificial intelligence-based arterial input function for quantitative stress
perfusion cardiac magnetic resonance. Eur Heart J Digit Health 2022 (CC BY 4.0). Fermi deconvolution:
Jerosch-Herold M, et al. Med Phys 1998;25:73-84. AHA segments: Cerqueira MD, et al. Circulation 2002;105:539-42.
""")
        icon = resourcePath("Icons/AIAIF.png")
        if os.path.isfile(icon):  # the base class only looks beside the module, which misses a source checkout
            import qt

            self.parent.icon = qt.QIcon(icon)

        # Sample data are registered once the Sample Data module exists.
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Sample data
#


def registerSampleData():
    """Offer the built-in phantom in the Sample Data module (generated on this computer; nothing is downloaded).

    The sample's one file is its recipe (``SAMPLE_RECIPE``, a few bytes shipped with the extension),
    which Sample Data copies into its cache and loads with ``AIAIFFileReader``; the reader generates
    the phantom.  So the Sample Data button and ``SampleData.downloadSample("AIAIFPhantom")`` share
    Sample Data's own path, ``SampleDataLogic.downloadFromSource``.  (A ``customDownloader`` would
    serve the button only: ``downloadFromSource`` never calls it, Modules/Scripted/SampleData/SampleData.py
    at v5.8.1, v5.10.0 and the development head.)
    """
    import SampleData

    recipe = resourcePath(SAMPLE_RECIPE)
    with open(recipe, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    if hasattr(SampleData.SampleDataLogic, "registerCustomSampleDataCategory"):  # Slicer 5.12 and later
        SampleData.SampleDataLogic.registerCustomSampleDataCategory("AI-AIF", title=_("AI-AIF"))
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="AI-AIF",
        sampleName=SAMPLE_PHANTOM_NAME,
        thumbnailFileName=resourcePath("Icons/AIAIFPhantom.png"),
        uris=[pathlib.Path(recipe).as_uri()],
        fileNames=[os.path.basename(recipe)],
        nodeNames=[SAMPLE_PHANTOM_NAME],
        loadFileTypes=[SAMPLE_FILE_TYPE],
        # The recipe's own checksum: a copy left in the cache by another version of the extension is replaced.
        checksums=["SHA256:" + digest],
    )


def isSampleRecipe(filePath):
    """Whether a file is the sample phantom's recipe (``SAMPLE_RECIPE``).

    Parameters
    ----------
    filePath : str

    Returns
    -------
    bool
    """
    if not filePath.endswith(SAMPLE_RECIPE_SUFFIX):
        return False
    try:
        with open(filePath) as handle:
            recipe = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(recipe, dict) and recipe.get("sample") == SAMPLE_PHANTOM_NAME


class AIAIFFileReader:
    """Loads the sample phantom's recipe by generating the phantom.

    Slicer registers the class named ``<module name>FileReader`` of a scripted
    module's file as a file reader (``qSlicerScriptedLoadableModule::registerIO``
    in Base/QTGUI/qSlicerScriptedLoadableModule.cxx, v5.8.1 to the development
    head); ``parent`` is that ``qSlicerScriptedFileReader`` (Base/QTCore).
    """

    def __init__(self, parent):
        self.parent = parent

    def description(self):
        return _("AI-AIF sample phantom")

    def fileType(self):
        return SAMPLE_FILE_TYPE

    def extensions(self):
        return [_("AI-AIF sample phantom") + " (*" + SAMPLE_RECIPE_SUFFIX + ")"]

    def canLoadFile(self, filePath):
        return isSampleRecipe(filePath)

    def load(self, properties):
        if not isSampleRecipe(properties["fileName"]):
            logging.error("%s is not the AI-AIF sample phantom's recipe; load it through the Sample Data module.",
                          properties["fileName"])
            return False
        try:
            nodes = AIAIFLogic().loadSamplePhantom()
        except Exception:
            logging.exception("AI-AIF could not generate the sample phantom")
            return False
        self.parent.loadedNodes = [node.GetID() for node in nodes]
        return True


#
# AIAIFParameterNode
#


class AifMode(enum.Enum):
    """Which AIF the quantification uses (values: ``AIAIFLib.pipeline.AIF_MODES``)."""

    AI = "ai"
    SATURATED = "saturated"
    EXTERNAL = "external"

    def label(self):
        """Text of the panel's AIF choice."""
        return {"ai": _("AI-corrected (AI-AIF)"), "saturated": _("Saturated (uncorrected)"),
                "external": _("External table")}[self.value]


@parameterNodeWrapper
class AIAIFParameterNode:
    """Every input, parameter and output reference of one AI-AIF run (saved with the scene).

    perfusionSequence - 4D perfusion series (sequence of scalar volumes).
    segmentation - segmentation holding the LV blood pool and myocardium.
    bloodPoolSegmentId, myocardiumSegmentId - segment IDs; empty: the segments named "LV blood pool", "Myocardium".
    rvInsertionPoints - optional RV insertion points: anterior per slice, and inferior ones labelled "inferior".
    fieldStrength - 1.5 or 3.0 T (native T1 of blood and myocardium).
    t1Blood, r1 - optional overrides (s, 1/s/mM); 0 means "from the field strength".
    aifMode - AI-corrected, saturated (uncorrected) or external (externalAifTable).
    externalAifTable - table with columns time_s and the AIF signal.
    tissueConversion - "model" (SR-FLASH inversion calibrated on the blood pool, default) or "linear" (the
    paper's, for reproducing it).
    threshold - ischaemia threshold, mL/min/g.
    frameInterval - time between frames, s, for series indexed by frame number; 0: from the series.
    computeFitQuality - also make the fit-quality (NRMSE) volume.
    motionCorrection - "auto" (register the frames to the ROI frame when they moved, default), "on" or "off".
    roiFrameIndex - the frame the ROIs were drawn on; -1: the frame of peak LV enhancement (Draw ROIs names the one
                    it shows).
    mbfVolume, segmentsTable, aifChart, bullseyeVolume, fitQualityVolume, registeredSequence - outputs: created on
    the first run (None: "create new on Apply") and updated after; the registered sequence only when frames moved.
    """

    perfusionSequence: vtkMRMLSequenceNode
    segmentation: vtkMRMLSegmentationNode
    bloodPoolSegmentId: str = ""
    myocardiumSegmentId: str = ""
    rvInsertionPoints: vtkMRMLMarkupsFiducialNode
    fieldStrength: Annotated[float, Choice([1.5, 3.0])] = 3.0
    t1Blood: Annotated[float, WithinRange(0.0, 5.0)] = 0.0
    r1: Annotated[float, WithinRange(0.0, 50.0)] = 0.0
    aifMode: AifMode = AifMode.AI
    externalAifTable: vtkMRMLTableNode
    tissueConversion: Annotated[str, Choice(list(TISSUE_CONVERSIONS))] = TISSUE_CONVERSIONS[0]
    threshold: Annotated[float, WithinRange(0.1, 10.0)] = AIAIFConstants.ISCHAEMIA_THRESHOLD_ML_MIN_G
    frameInterval: Annotated[float, WithinRange(0.0, 10.0)] = 0.0
    computeFitQuality: bool = False
    motionCorrection: Annotated[str, Choice(list(MOTION_CORRECTIONS))] = MOTION_CORRECTIONS[0]
    roiFrameIndex: Annotated[int, WithinRange(-1, 10000)] = -1
    mbfVolume: vtkMRMLScalarVolumeNode
    segmentsTable: vtkMRMLTableNode
    aifChart: vtkMRMLPlotChartNode
    bullseyeVolume: vtkMRMLScalarVolumeNode
    fitQualityVolume: vtkMRMLScalarVolumeNode
    registeredSequence: vtkMRMLSequenceNode


#: Parameters the panel binds by hand: the wrapper has no connector for segment selectors.
SEGMENT_PARAMETERS = {"bloodPoolSegmentId": "bloodPoolSegmentSelector",
                      "myocardiumSegmentId": "myocardiumSegmentSelector"}

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


#
# AIAIFWidget
#


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


#
# AIAIFLogic
#


class AIAIFResult:
    """What ``AIAIFLogic.process`` returns.

    Attributes
    ----------
    mbfVolumeNode : vtkMRMLScalarVolumeNode
        Pixelwise stress MBF, mL/min/g, with the MBF colour table, window 0-5.
    segmentsTableNode : vtkMRMLTableNode
        AHA segments 1-16: MBF, pixels, territory, ischaemic.
    aifChartNode : vtkMRMLPlotChartNode
        Saturated and used AIF and the mean myocardial curve, mM.
    aifTableNode : vtkMRMLTableNode
        The curves of the chart.
    bullseyeVolumeNode : vtkMRMLScalarVolumeNode
        AHA bullseye of the segment MBF, mL/min/g (a single-slice image).
    fitQualityVolumeNode : vtkMRMLScalarVolumeNode or None
        Fit NRMSE per pixel (when asked for).
    registeredSequenceNode : vtkMRMLSequenceNode or None
        The frames registered to the ROI frame, when the motion correction
        moved frames (``summary["motion"]`` has the displacement of each).
    summary : dict
        The content of the command line's ``summary.json``.
    quantification : AIAIFLib.pipeline.QuantificationResult
        The arrays behind the nodes.
    """

    def __init__(self, nodes, summary):
        self.mbfVolumeNode = nodes.mbf_volume
        self.segmentsTableNode = nodes.segments_table
        self.aifChartNode = nodes.aif_chart
        self.aifTableNode = nodes.aif_table
        self.bullseyeVolumeNode = nodes.bullseye_volume
        self.fitQualityVolumeNode = nodes.fit_quality_volume
        self.registeredSequenceNode = nodes.registered_sequence
        self.summary = summary
        self.quantification = nodes.result

    def __repr__(self):
        return "AIAIFResult(mbfVolumeNode={!r}: {})".format(self.mbfVolumeNode.GetName(),
                                                           AIAIFLogic.statusText(self.summary))


class AIAIFLogic(ScriptedLoadableModuleLogic):
    """Quantify stress MBF on MRML nodes: the module's console API.

    Example (Slicer's Python console)::

        import AIAIF
        logic = AIAIF.AIAIFLogic()
        sequence, segmentation, points = logic.loadSamplePhantom()
        result = logic.process(sequence, segmentation, points, fieldStrength=3.0, aifMode="ai")
        print(result.summary["territories"])

    Everything is computed by ``AIAIFLib`` (the same adapter the command line
    uses); this class only maps its arguments and keeps no state between
    runs except a cancel request.
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._cancelRequested = False

    def getParameterNode(self):
        return AIAIFParameterNode(super().getParameterNode())

    # -- console API ---------------------------------------------------------

    def process(self, perfusionSequenceNode, segmentationNode, rvInsertionNode=None, fieldStrength=3.0,
                aifMode="ai", progressCallback=None, bloodPoolSegmentId=None, myocardiumSegmentId=None,
                externalAifTableNode=None, t1Blood=None, t1Myocardium=None, r1=None,
                threshold=AIAIFConstants.ISCHAEMIA_THRESHOLD_ML_MIN_G, frameInterval=None,
                tissueConversion=TISSUE_CONVERSIONS[0], sliceLevels=None, septumDirection=None, weightsPath=None,
                mbfVolumeNode=None, segmentsTableNode=None, aifChartNode=None, bullseyeVolumeNode=None,
                fitQualityVolumeNode=None, computeFitQuality=False, saturationTime=None, repetitionTime=None,
                flipAngle=None, readoutOrdering=None, pulsesToCentre=None, saturationEfficiency=None,
                motionCorrection=MOTION_CORRECTIONS[0], roiFrameIndex=None, registeredSequenceNode=None):
        """Quantify pixelwise stress MBF and put the results into the scene.

        Parameters
        ----------
        perfusionSequenceNode : vtkMRMLSequenceNode or list of them
            The 4D perfusion series (a sequence of scalar volumes; a browser
            node stands for its master sequence), or one single-slice
            sequence per slice.  Frame times come from the index values (s or
            ms), else the ``MultiVolume.FrameLabels`` attribute (ms), else
            ``frameInterval``.
        segmentationNode : vtkMRMLSegmentationNode
            Holds the LV blood pool and myocardium segments; not modified.
        rvInsertionNode : vtkMRMLMarkupsFiducialNode, optional
            RV insertion points: the anterior one of a slice is its AHA
            segment origin; one labelled "inferior" decides the septum side.
            Without them the RV is found in the images; ``summary`` records
            which rule decided each slice.
        fieldStrength : float
            1.5 or 3.0, T.
        aifMode : str
            ``"ai"`` (AI-corrected), ``"saturated"`` (uncorrected) or
            ``"external"`` (``externalAifTableNode``).
        progressCallback : callable, optional
            ``progressCallback(fraction_0_to_1, message)``; returning
            ``False`` cancels (as does ``requestCancel()``).
        bloodPoolSegmentId, myocardiumSegmentId : str, optional
            Segment IDs; by default the segments named ``LV blood pool`` and
            ``Myocardium``.
        externalAifTableNode : vtkMRMLTableNode, optional
            External AIF: a ``time_s`` column (s) and one signal column.
        t1Blood, t1Myocardium : float, optional
            Native T1 overrides, s.
        r1 : float, optional
            Relaxivity override, 1/s/mM.
        threshold : float
            Ischaemia threshold, mL/min/g (1.35 by default).
        frameInterval : float, optional
            Time between frames, s, for series indexed by frame number.
        tissueConversion : str
            ``"model"`` (default: the sequence's signal equation, calibrated
            on the blood pool) or ``"linear"`` (the paper's).
        sliceLevels : sequence of str, optional
            Level ('basal', 'mid', 'apical') of each stored slice.
        septumDirection : str, optional
            Septum side override (see ``AIAIFLib.segments.aha_segment_map``).
        weightsPath : str, optional
            Network weights (``.npz``); the shipped ones by default.
        mbfVolumeNode, segmentsTableNode, aifChartNode, bullseyeVolumeNode, fitQualityVolumeNode : optional
            Output nodes to update.  When omitted, the nodes an earlier run on
            the same perfusion series made are updated, or new ones created.
        computeFitQuality : bool
            Also make the fit-quality volume.
        saturationTime, repetitionTime, flipAngle : float, optional
            The acquisition's saturation time to the k-space centre (s),
            readout TR (s) and nominal flip angle (degrees), when known.
        readoutOrdering : str, optional
            ``"centric"`` or ``"linear"`` k-space ordering, when known.
        pulsesToCentre : int, optional
            Readout pulse that samples the k-space centre, when known.
        saturationEfficiency : float, optional
            Fraction of Mz the saturation pulse destroys, when known.
        motionCorrection : str
            ``"auto"`` (default: measure the motion and register every frame,
            in plane, to the ROI frame when frames moved), ``"on"`` or
            ``"off"``.  Frames that cannot be registered are left out of the
            fits, with a warning.
        roiFrameIndex : int, optional
            The frame the ROIs were drawn on (from 0); None or -1: the frame
            of peak LV enhancement with the blood-pool ROI
            (``AIAIFLib.aif.peak_enhancement_frame``).  ``prepareRoiDrawing``
            names the frame it shows in the parameter node.
        registeredSequenceNode : vtkMRMLSequenceNode, optional
            Output node for the registered frames.

        Returns
        -------
        AIAIFResult

        Raises
        ------
        AIAIFLib.errors.AIAIFInputError
            For unusable inputs, with a sentence naming the node and the fix.
        AIAIFLib.errors.AIAIFCancelled
            When cancelled.  In both cases the scene is left exactly as it
            was.
        """
        from AIAIFLib import mrml, pipeline

        aifMode = getattr(aifMode, "value", aifMode)  # AifMode or its value
        externalTimes = externalSignal = None
        if aifMode == "external":
            externalTimes, externalSignal = mrml.external_aif_from_table(externalAifTableNode)
        parameters = pipeline.QuantificationParameters(
            field_strength_t=fieldStrength, aif_mode=aifMode, external_aif_times_s=externalTimes,
            external_aif_signal=externalSignal, tissue_conversion=tissueConversion, t1_blood_s=t1Blood,
            t1_myocardium_s=t1Myocardium, r1_per_s_per_mM=r1, threshold_ml_min_g=threshold,
            slice_levels=tuple(sliceLevels) if sliceLevels is not None else None,
            septum_direction=septumDirection, weights_path=weightsPath, saturation_time_s=saturationTime,
            repetition_time_s=repetitionTime, flip_angle_deg=flipAngle, readout_ordering=readoutOrdering,
            pulses_to_centre=pulsesToCentre, saturation_efficiency=saturationEfficiency,
            motion_correction=motionCorrection,
            roi_frame=None if roiFrameIndex is None or roiFrameIndex < 0 else int(roiFrameIndex))
        outputs = {"mbf": mbfVolumeNode, "segments": segmentsTableNode, "aif_chart": aifChartNode,
                   "bullseye": bullseyeVolumeNode, "fit_quality": fitQualityVolumeNode,
                   "registered": registeredSequenceNode}
        self._cancelRequested = False
        nodes = mrml.quantify_nodes(
            slicer.mrmlScene, perfusionSequenceNode, segmentationNode, rvInsertionNode, parameters,
            blood_pool_segment_id=bloodPoolSegmentId or None, myocardium_segment_id=myocardiumSegmentId or None,
            frame_interval_s=frameInterval or None,
            outputs={role: node for role, node in outputs.items() if node is not None},
            fit_quality=computeFitQuality or fitQualityVolumeNode is not None,
            progress=self._progressReporter(progressCallback))
        result = AIAIFResult(nodes, pipeline.json_ready(nodes.result.summary))
        logging.info("AI-AIF: %s", self.statusText(result.summary))
        return result

    def processParameterNode(self, parameterNode, progressCallback=None):
        """Run ``process`` with the inputs of a parameter node and store the outputs in it.

        Parameters
        ----------
        parameterNode : AIAIFParameterNode
        progressCallback : callable, optional
            As for ``process``.

        Returns
        -------
        AIAIFResult
        """
        p = parameterNode
        result = self.process(
            p.perfusionSequence, p.segmentation, p.rvInsertionPoints, fieldStrength=p.fieldStrength,
            aifMode=p.aifMode.value, progressCallback=progressCallback, bloodPoolSegmentId=p.bloodPoolSegmentId,
            myocardiumSegmentId=p.myocardiumSegmentId, externalAifTableNode=p.externalAifTable,
            t1Blood=p.t1Blood or None, r1=p.r1 or None, threshold=p.threshold, frameInterval=p.frameInterval or None,
            tissueConversion=p.tissueConversion, mbfVolumeNode=p.mbfVolume, segmentsTableNode=p.segmentsTable,
            aifChartNode=p.aifChart, bullseyeVolumeNode=p.bullseyeVolume, fitQualityVolumeNode=p.fitQualityVolume,
            computeFitQuality=p.computeFitQuality, motionCorrection=p.motionCorrection, roiFrameIndex=p.roiFrameIndex,
            registeredSequenceNode=p.registeredSequence)
        p.mbfVolume = result.mbfVolumeNode
        p.segmentsTable = result.segmentsTableNode
        p.aifChart = result.aifChartNode
        p.bullseyeVolume = result.bullseyeVolumeNode
        if result.fitQualityVolumeNode is not None:
            p.fitQualityVolume = result.fitQualityVolumeNode
        if result.registeredSequenceNode is not None:
            p.registeredSequence = result.registeredSequenceNode
        return result

    def requestCancel(self):
        """Ask a running ``process`` to stop at its next progress report (the scene stays as it was)."""
        self._cancelRequested = True

    def _progressReporter(self, progressCallback):
        from AIAIFLib.errors import AIAIFCancelled

        def report(fraction, message):
            if progressCallback is not None and progressCallback(fraction, message) is False:
                self._cancelRequested = True
            if self._cancelRequested:
                raise AIAIFCancelled("AI-AIF was cancelled; the scene is as it was before Apply.")

        return report

    # -- helpers for the panel -------------------------------------------------

    def missingInputs(self, parameterNode):
        """Names of the inputs a run still needs (empty when it can start).

        Parameters
        ----------
        parameterNode : AIAIFParameterNode

        Returns
        -------
        list of str
        """
        missing = []
        if parameterNode.perfusionSequence is None:
            missing.append(_("perfusion sequence"))
        if parameterNode.segmentation is None:
            missing.append(_("segmentation"))
        if parameterNode.aifMode == AifMode.EXTERNAL and parameterNode.externalAifTable is None:
            missing.append(_("external AIF table"))
        return missing

    def clearUnknownSegmentIds(self, parameterNode):
        """Reset the segment IDs that name no segment of the selected segmentation.

        After the segmentation changes, a stored ID may belong to the previous
        one.  It is reset to "", which means the segment named
        ``LV blood pool`` (``Myocardium``).  Nothing is reset without a
        segmentation, nor while the scene is importing: its segments are read
        after the parameter node.

        Parameters
        ----------
        parameterNode : AIAIFParameterNode

        Returns
        -------
        list of str
            Names of the parameters reset.
        """
        segmentationNode = parameterNode.segmentation
        if segmentationNode is None or segmentationNode.GetScene() is None or segmentationNode.GetScene().IsImporting():
            return []
        segmentation = segmentationNode.GetSegmentation()
        unknown = [name for name in SEGMENT_PARAMETERS
                   if getattr(parameterNode, name) and segmentation.GetSegment(getattr(parameterNode, name)) is None]
        for name in unknown:
            setattr(parameterNode, name, "")
        return unknown

    def selectDefaultInputs(self, parameterNode):
        """Pick the scene's first perfusion sequence and segmentation when none is selected yet."""
        scene = parameterNode.parameterNode.GetScene()
        if parameterNode.perfusionSequence is None:
            sequences = [scene.GetNthNodeByClass(n, "vtkMRMLSequenceNode")
                         for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode"))]
            volumes = [s for s in sequences if s.GetDataNodeClassName() == "vtkMRMLScalarVolumeNode"]
            if volumes:
                parameterNode.perfusionSequence = volumes[0]
        if parameterNode.segmentation is None:
            segmentation = scene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
            if segmentation is not None:
                parameterNode.segmentation = segmentation

    def showPeakFrame(self, perfusionSequenceNode, result=None):
        """Show a result's ROI frame, or a perfusion sequence's frame of peak LV blood-pool enhancement (its browser's
        proxy volume).

        Parameters
        ----------
        perfusionSequenceNode : vtkMRMLSequenceNode
            The perfusion series; a browser is created if it has none.
        result : AIAIFResult, optional
            A result of this series: its ROI frame is shown, the frame every
            other frame was registered to and so the one its MBF map lies on;
            otherwise the peak is found in the images
            (``AIAIFLib.aif.peak_enhancement_frame``).

        Returns
        -------
        vtkMRMLScalarVolumeNode
            The proxy volume, now showing that frame.
        """
        from AIAIFLib import mrml

        return mrml.show_sequence_frame(perfusionSequenceNode, self.peakFrameIndex(perfusionSequenceNode, result))

    @staticmethod
    def peakFrameIndex(perfusionSequenceNode, result=None):
        """The frame ``showPeakFrame`` shows: a result's ROI frame, or the series' frame of peak LV enhancement.

        Parameters
        ----------
        perfusionSequenceNode : vtkMRMLSequenceNode
            The perfusion series.
        result : AIAIFResult, optional
            A result of this series (its ROI frame is taken when it has a
            motion step, as every result of ``process`` has).

        Returns
        -------
        int
            Frame index, 0-based.
        """
        from AIAIFLib import aif, mrml

        motion = None if result is None else result.quantification.motion
        if motion is not None:
            return int(motion.correction.roi_frame)
        return int(aif.peak_enhancement_frame(mrml.sequence_frames(perfusionSequenceNode)[0]))

    def prepareRoiDrawing(self, parameterNode):
        """Get the segmentation ready for drawing the ROIs on the ROI frame.

        Shows the ROI frame: the one the parameter node names
        (``roiFrameIndex``), else the frame of peak blood-pool enhancement,
        which it then names, so that the motion correction registers every
        frame to the one the ROIs are drawn on.  Creates the segmentation (on
        that frame's geometry) if none is selected, and adds the segments
        ``LV blood pool`` and ``Myocardium`` (with their colours) unless the
        parameter node or the segment names already point to them.  The
        segment IDs are stored in the parameter node.

        Parameters
        ----------
        parameterNode : AIAIFParameterNode

        Returns
        -------
        tuple
            (segmentation node, source volume node for the Segment Editor).
        """
        from AIAIFLib import mrml
        from AIAIFLib.errors import AIAIFInputError

        sequence = parameterNode.perfusionSequence
        if sequence is None:
            raise AIAIFInputError(_("No perfusion sequence is selected; select it first, the ROIs are drawn on its "
                                    "peak frame."))
        index = self.peakFrameIndex(sequence) if parameterNode.roiFrameIndex < 0 else parameterNode.roiFrameIndex
        if index >= sequence.GetNumberOfDataNodes():
            raise AIAIFInputError(_("The ROI frame {index} is beyond the series' last frame {last}; set the ROI frame "
                                    "(Advanced) to -1 to draw on the peak frame.").format(
                                        index=index, last=sequence.GetNumberOfDataNodes() - 1))
        sourceVolume = mrml.show_sequence_frame(sequence, index)
        parameterNode.roiFrameIndex = index
        segmentation = parameterNode.segmentation
        if segmentation is None:
            segmentation = mrml.roi_segmentation_node(slicer.mrmlScene, sourceVolume,
                                                      name=_("{sequence} ROIs").format(sequence=sequence.GetName()))
            parameterNode.segmentation = segmentation
        bloodPoolId, myocardiumId = mrml.ensure_roi_segments(
            segmentation, parameterNode.bloodPoolSegmentId, parameterNode.myocardiumSegmentId)
        parameterNode.bloodPoolSegmentId = bloodPoolId
        parameterNode.myocardiumSegmentId = myocardiumId
        return segmentation, sourceVolume

    def prepareRvInsertionPoints(self, parameterNode):
        """The point list for the anterior RV insertion points: the selected one, or a new empty one.

        Parameters
        ----------
        parameterNode : AIAIFParameterNode

        Returns
        -------
        vtkMRMLMarkupsFiducialNode
            Stored in the parameter node.
        """
        points = parameterNode.rvInsertionPoints
        if points is None:
            points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", _("RV insertion points"))
            points.CreateDefaultDisplayNodes()
            parameterNode.rvInsertionPoints = points
        return points

    @staticmethod
    def statusText(summary):
        """One line for the status bar: global MBF, ischaemic territories and warnings.

        Parameters
        ----------
        summary : dict
            ``AIAIFResult.summary``.

        Returns
        -------
        str
        """
        results = summary["results"]
        globalMbf = results["global_mbf_ml_min_g"]["median"]
        text = _("Median stress MBF {mbf} mL/min/g; ischaemic territories: {territories}.").format(
            mbf="-" if globalMbf is None else "{:.2f}".format(globalMbf),
            territories=", ".join(results["ischemic_territories"]) or _("none"))
        warnings = summary.get("warnings") or []
        if warnings:
            text += " " + _("Warnings: {warnings}").format(warnings=" ".join(warnings))
        return text

    # -- sample data -------------------------------------------------------------

    def loadSamplePhantom(self):
        """Generate the built-in phantom (the command line demo's study) as nodes in the scene.

        A simulated 3 T stress study with an ischaemic LAD territory: a
        perfusion sequence with its browser, a segmentation with
        ``LV blood pool`` and ``Myocardium``, and the RV insertion points.
        Made on this computer in a few seconds; nothing is downloaded.

        Returns
        -------
        tuple
            (sequence node, segmentation node, point list node).
        """
        from AIAIFLib import mrml, studies

        nodes = mrml.phantom_nodes(slicer.mrmlScene, studies.demo_phantom(), name=SAMPLE_PHANTOM_NAME)
        return nodes.sequence, nodes.segmentation, nodes.rv_insertion


#
# AIAIFTest
#


class AIAIFTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (Reload and Test, or the ctest of the build); the CI runs it on slicer-core too."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ProcessSamplePhantom()
        self.setUp()
        self.test_BadInputLeavesSceneUnchanged()
        if hasattr(slicer, "app"):  # the panel needs the application (not available under slicer-core)
            self.setUp()
            self.test_Panel()

    def test_ProcessSamplePhantom(self):
        from AIAIFLib import studies

        self.delayDisplay("Generating the sample phantom")
        logic = AIAIFLogic()
        sequence, segmentation, points = logic.loadSamplePhantom()
        self.assertGreaterEqual(sequence.GetNumberOfDataNodes(), 20)

        self.delayDisplay("Quantifying with the AI-corrected AIF")
        progress = []
        result = logic.process(sequence, segmentation, points, fieldStrength=3.0, aifMode="ai",
                               progressCallback=lambda fraction, message: progress.append(fraction))
        self.assertTrue(progress and progress[-1] == 1.0)
        self.assertEqual(result.mbfVolumeNode.GetImageData().GetDimensions(),
                         sequence.GetNthDataNode(0).GetImageData().GetDimensions())
        self.assertEqual(result.segmentsTableNode.GetNumberOfRows(), 16)
        self.assertGreaterEqual(result.aifChartNode.GetNumberOfPlotSeriesNodes(), 3)
        truth = studies.demo_phantom().segment_mbf_ml_min_g()
        measured = [float(v) for v in result.quantification.segments["mbf_mean"]]
        errors = [abs(m - t) for m, t in zip(measured, truth)]
        self.assertLess(sum(errors) / len(errors), 1.0)  # mL/min/g; the saturated AIF is off by several
        self.assertIn("LAD", result.summary["results"]["ischemic_territories"])

        self.delayDisplay("Re-running updates the same nodes")
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        again = logic.process(sequence, segmentation, points, fieldStrength=3.0, aifMode="saturated")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        self.assertEqual(again.mbfVolumeNode.GetID(), result.mbfVolumeNode.GetID())
        self.delayDisplay("Test passed")

    def test_BadInputLeavesSceneUnchanged(self):
        from AIAIFLib.errors import AIAIFInputError

        logic = AIAIFLogic()
        sequence, segmentation, points = logic.loadSamplePhantom()
        segmentation.GetSegmentation().RemoveSegment(
            segmentation.GetSegmentation().GetSegmentIdBySegmentName(AIAIFConstants.MYOCARDIUM_SEGMENT_NAME))
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(AIAIFInputError) as raised:
            logic.process(sequence, segmentation, points)
        self.assertIn(segmentation.GetName(), str(raised.exception))
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        self.delayDisplay("Test passed")

    def test_Panel(self):
        """Drive the panel as a user would: select the sample nodes, Apply, read the results."""
        logic = AIAIFLogic()
        sequence, segmentation, points = logic.loadSamplePhantom()
        slicer.util.selectModule("AIAIF")
        widget = slicer.modules.aiaif.widgetRepresentation().self()
        widget.ui.perfusionSequenceSelector.setCurrentNode(sequence)
        widget.ui.segmentationSelector.setCurrentNode(segmentation)
        widget.ui.rvInsertionSelector.setCurrentNode(points)
        self.assertTrue(widget.ui.applyButton.enabled, widget.ui.applyButton.toolTip)
        self.assertEqual(widget.ui.bloodPoolSegmentSelector.currentNode(), segmentation)

        self.delayDisplay("Apply")
        widget.ui.applyButton.click()
        parameters = logic.getParameterNode()
        self.assertIsNotNone(parameters.mbfVolume)
        self.assertIsNotNone(parameters.bullseyeVolume)
        self.assertIn("LAD", widget.ui.statusLabel.text)
        layoutManager = slicer.app.layoutManager()
        self.assertEqual(layoutManager.layout, RESULTS_LAYOUT_ID)
        red = layoutManager.sliceWidget("Red").sliceLogic().GetSliceCompositeNode()
        self.assertEqual(red.GetForegroundVolumeID(), parameters.mbfVolume.GetID())

        self.delayDisplay("Missing input disables Apply")
        widget.ui.segmentationSelector.setCurrentNode(None)
        self.assertFalse(widget.ui.applyButton.enabled)
        self.assertIn("segmentation", widget.ui.applyButton.toolTip)
        self.delayDisplay("Test passed")

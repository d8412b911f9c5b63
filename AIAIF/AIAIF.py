"""AI-AIF: quantitative stress perfusion CMR in 3D Slicer.

The module shape is the current Slicer scripted-module template's: ``AIAIF``
(metadata), ``AIAIFParameterNode`` (every input, parameter and output of a
run, saved with the scene), ``AIAIFWidget`` (the panel: binds the GUI to the
parameter node and calls the Logic, nothing else), ``AIAIFLogic`` (the
console API) and ``AIAIFTest``.

This file holds the module class and the self-test (ctest runs this file).
The other parts are in the ``AIAIFModuleLib`` subpackage beside it, one a
file, and are imported here: Slicer looks up ``AIAIFWidget``, ``AIAIFLogic``,
``AIAIFTest`` and ``AIAIFFileReader`` in the module's file, and the console
uses ``AIAIF.AIAIFLogic()``.

All science lives in the ``AIAIFLib`` package beside this module; the Logic
only calls its Qt-free MRML adapter (``AIAIFLib.mrml.quantify_nodes``), which
the command line (``python -m AIAIFLib quantify``) calls as well, so panel,
console and command line share one code path.  Nothing here needs PyTorch,
matplotlib or pynrrd: stock Slicer's numpy, scipy and VTK are enough.
"""

import os
import sys

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

# ---------------------------------------------------------------------------
# The module's subpackage, and through it the library and the resources
# ---------------------------------------------------------------------------

#: The subpackage beside this file that holds the parameter node, Logic, sample data and panel.
MODULE_SUBPACKAGE = "AIAIFModuleLib"


def _importSubpackage():
    """Import ``MODULE_SUBPACKAGE`` afresh from the folder of this file.

    Slicer's Reload (developer mode) runs this file again, but would find the
    subpackage imported already: it is dropped first, so that every run of
    this file runs the subpackage afresh too, as when they were one file.
    Importing it puts ``AIAIFLib`` on ``sys.path`` in a source checkout
    (``AIAIFModuleLib.paths``).
    """
    for name in [name for name in sys.modules if name.split(".")[0] == MODULE_SUBPACKAGE]:
        del sys.modules[name]
    folder = os.path.dirname(os.path.abspath(__file__))
    if folder not in sys.path:  # Slicer puts the module folder on sys.path; a file loaded by its path has none
        sys.path.insert(0, folder)
    try:
        __import__(MODULE_SUBPACKAGE)
    except ModuleNotFoundError as error:
        if error.name != MODULE_SUBPACKAGE:
            raise
        raise ImportError("AI-AIF cannot find its {} package next to {}; reinstall the extension or add the module "
                          "from a complete source checkout.".format(MODULE_SUBPACKAGE, folder)) from None


_importSubpackage()

# Re-exported: Slicer, the console and the tests find every part of the module in this file.
from AIAIFLib import constants as AIAIFConstants  # noqa: E402
from AIAIFModuleLib.i18n import _, translate  # noqa: E402
from AIAIFModuleLib.logic import AIAIFLogic, AIAIFResult  # noqa: E402, F401
from AIAIFModuleLib.parameter_node import (  # noqa: E402, F401
    SEGMENT_PARAMETERS,
    AIAIFParameterNode,
    AifMode,
    _markupsFiducialNodeClass,
    vtkMRMLMarkupsFiducialNode,
)
from AIAIFModuleLib.paths import MODULE_DIRECTORY, PACKAGE_ROOT, _packageRoot, resourcePath  # noqa: E402, F401
from AIAIFModuleLib.sample_data import (  # noqa: E402, F401
    SAMPLE_FILE_TYPE,
    SAMPLE_PHANTOM_NAME,
    SAMPLE_RECIPE,
    SAMPLE_RECIPE_SUFFIX,
    AIAIFFileReader,
    isSampleRecipe,
    registerSampleData,
)
from AIAIFModuleLib.widget import (  # noqa: E402, F401
    MBF_OVERLAY_OPACITY,
    RESULTS_LAYOUT_ID,
    RESULTS_LAYOUT_XML,
    AIAIFWidget,
)


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

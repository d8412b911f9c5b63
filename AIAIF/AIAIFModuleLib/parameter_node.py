"""``AIAIFParameterNode``: every input, parameter and output of a run, saved with the scene; ``AifMode``."""

import enum
from typing import Annotated

import slicer
from slicer import (
    vtkMRMLPlotChartNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLSequenceNode,
    vtkMRMLTableNode,
)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

from AIAIFLib import constants as AIAIFConstants  # light: no numpy work at Slicer start-up
from AIAIFLib.pipeline import MOTION_CORRECTIONS, TISSUE_CONVERSIONS  # numpy only, loaded already

from .i18n import _


def _markupsFiducialNodeClass():
    """``vtkMRMLMarkupsFiducialNode`` on every supported Slicer (5.8 and later), while the module file is imported.

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
                    it shows; the panel sets it back to -1 when another perfusion series is selected).
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

"""``AIAIFLogic``, the module's console API, and ``AIAIFResult``, what it returns.  Free of Qt."""

import logging

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from AIAIFLib import constants as AIAIFConstants  # light: no numpy work at Slicer start-up
from AIAIFLib.pipeline import MOTION_CORRECTIONS, TISSUE_CONVERSIONS  # numpy only, loaded already

from .i18n import _
from .parameter_node import SEGMENT_PARAMETERS, AIAIFParameterNode, AifMode
from .sample_data import SAMPLE_PHANTOM_NAME


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

    def forgetRoiFrameOfAnotherSeries(self, parameterNode, previousSequenceId):
        """Reset the ROI frame to -1 (the new series' peak frame) when the perfusion series changed.

        ``roiFrameIndex`` names a frame of the series the ROIs were drawn on;
        after another series is selected it would name a frame of that one,
        and the motion correction would register every frame to it.  Nothing
        is reset when no series was selected before, when the ROI frame is
        -1 already, or while the scene is importing (a loaded scene sets the
        series after the parameter node).

        Parameters
        ----------
        parameterNode : AIAIFParameterNode
        previousSequenceId : str or None
            ID of the series selected before this change.

        Returns
        -------
        bool
            Whether the ROI frame was reset.
        """
        sequence = parameterNode.perfusionSequence
        if not previousSequenceId or parameterNode.roiFrameIndex < 0 or (
                sequence is not None and sequence.GetID() == previousSequenceId):
            return False
        scene = parameterNode.parameterNode.GetScene()
        if scene is not None and scene.IsImporting():
            return False
        parameterNode.roiFrameIndex = -1
        return True

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

"""One perfusion study: arrays and parameters in, MBF map, segments and summary out.

Every caller (the command line, the Slicer module's Logic, the Python
console) reaches the science through ``quantify_study``; the MRML adapter
(``mrml``) turns Slicer nodes into a ``PerfusionStudy`` and the result back
into nodes.
"""

import time
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from . import constants as K
from .errors import AIAIFInputError


@dataclass
class PerfusionStudy:
    """A short-axis stress perfusion study as numpy arrays.

    Attributes
    ----------
    frames : numpy.ndarray, shape (n_frames, n_slices, rows, columns)
        Signal of every frame (arbitrary signal units), indexed
        ``[frame, k, j, i]`` on the voxel grid of ``ijk_to_ras``.
    frame_times_s : numpy.ndarray, shape (n_frames,)
        Acquisition time of each frame, s, strictly increasing.
    ijk_to_ras : numpy.ndarray, shape (4, 4)
        Voxel index ``(i, j, k, 1)`` to patient RAS position (mm) of one frame.
    blood_pool_mask : numpy.ndarray of bool, shape (n_slices, rows, columns)
        LV blood-pool ROI on the frame grid.
    myocardium_mask : numpy.ndarray of bool, shape (n_slices, rows, columns)
        Myocardium ROI on the frame grid.
    rv_insertion_ras : numpy.ndarray, shape (n_points, 3), optional
        RV insertion points, RAS mm: per slice at most one anterior and one
        inferior point.  Without them the orientation comes from the RV in
        the images (``segments``, ``orientation``).
    rv_insertion_labels : tuple of str, optional
        Label of each RV insertion point: "inferior" in it marks an inferior
        point; it may name the slice level, e.g.
        ``"RV insertion anterior basal"``.
    source : dict
        Where the data came from (file paths, node names), for the summary.
    header : dict
        Acquisition values the reader found in the image header, keyed as the
        arguments of ``acquisition.resolve_acquisition`` (e.g.
        ``field_strength_t``, ``flip_angle_deg``); options override them.
    """

    frames: np.ndarray
    frame_times_s: np.ndarray
    ijk_to_ras: np.ndarray
    blood_pool_mask: np.ndarray
    myocardium_mask: np.ndarray
    rv_insertion_ras: Optional[np.ndarray] = None
    rv_insertion_labels: Optional[Tuple[str, ...]] = None
    source: dict = field(default_factory=dict)
    header: dict = field(default_factory=dict)

    @property
    def pixel_spacing_mm(self):
        """In-plane pixel spacing (row j, column i), mm, from ``ijk_to_ras``: numpy.ndarray, shape (2,)."""
        return np.linalg.norm(np.asarray(self.ijk_to_ras, dtype=float)[:3, :2], axis=0)[::-1]


#: AIF modes: the network-corrected AIF, the uncorrected saturated AIF, or an
#: AIF the user supplies (e.g. from a dual-sequence acquisition).
AIF_MODES = ("ai", "saturated", "external")

#: How each AIF mode is named in figures and tables.
AIF_MODE_LABELS = {"ai": "AI-corrected", "saturated": "saturated (uncorrected)", "external": "external AIF"}

#: Signal-to-concentration methods for the myocardium (see ``conversion``):
#: the sequence-model inversion (default) and the paper's linear conversion.
TISSUE_CONVERSIONS = ("model", "linear")

#: Motion correction of the frames (see ``motion``): measure the motion and register the frames when they
#: moved (default), always register them, never.
MOTION_CORRECTIONS = ("auto", "on", "off")

#: Share of myocardial pixels whose fit failed above which the summary warns.
FAILED_FIT_WARNING_FRACTION = 0.05
#: Share of a segment's pixels whose flow sits at a fit bound above which the
#: segment's MBF is flagged as a bound rather than a measurement (project
#: choice: then the segment mean and median are themselves set by the bound).
#: Up to this share, pixels at the upper bound are left out of the segment's
#: mean and median instead (``segments.segment_statistics``).
SEGMENT_AT_BOUND_FRACTION = 0.5
#: Share of all myocardial pixels at a flow bound above which the summary
#: warns even when no segment is dominated by them (project choice).
MAP_AT_BOUND_WARNING_FRACTION = 0.05


@dataclass
class QuantificationParameters:
    """Every choice of one quantification, with the documented defaults.

    The physical parameters (field strength, T1s, r1 and the readout) are
    options: each left at None comes from the study's image header or the
    default for the field strength, resolved once by ``acquisition``.

    Attributes
    ----------
    field_strength_t : float, optional
        Field strength, T (None: the header's, else 3 T); selects the native
        T1 of blood and myocardium unless they are given.
    aif_mode : str
        One of ``AIF_MODES``.
    external_aif_times_s, external_aif_signal : numpy.ndarray, optional
        The external AIF (``aif_mode="external"``): times (s) and signal (any
        units, with a pre-contrast baseline; converted linearly).
    tissue_conversion : str
        One of ``TISSUE_CONVERSIONS``: ``"model"`` (default) or the paper's
        ``"linear"``.
    t1_blood_s, t1_myocardium_s : float, optional
        Native T1, s.
    r1_per_s_per_mM : float, optional
        Relaxivity, 1/s/mM.
    saturation_time_s, repetition_time_s, flip_angle_deg : float, optional
        Readout of the standard slices: saturation time to the k-space centre
        (s), TR (s), nominal flip angle (degrees).
    readout_ordering : {'centric', 'linear'}, optional
        k-space ordering (None: unknown; the calibration tries both).
    pulses_to_centre : int, optional
        Readout pulse that samples the k-space centre.
    saturation_efficiency : float, optional
        Fraction of Mz the saturation pulse destroys; held in the calibration
        when given.
    calibrate_sequence : bool
        With the ``model`` conversion and an AIF that is not the saturated
        signal itself (``ai``, ``external``), fit the saturation efficiency
        and flip angle to the blood pool
        (``conversion.calibrate_sequence_on_blood``); otherwise the nominal
        sequence is used.
    slice_levels : tuple of str, optional
        Level of each stored slice ('basal', 'mid', 'apical'), overriding the
        automatic rules of ``segments``.
    septum_direction : str, optional
        Override of the septum side (see ``segments.aha_segment_map``).
    threshold_ml_min_g : float
        Ischaemia threshold, mL/min/g.
    weights_path : str, optional
        Network weights (``aif_mode="ai"``); the shipped weights by default.
    motion_correction : str
        One of ``MOTION_CORRECTIONS``: ``"auto"`` (default:
        measure the motion, register the frames when they move), ``"on"``,
        ``"off"``.
    roi_frame : int, optional
        The frame the ROIs were drawn on, the registration's target; None:
        the frame of peak LV enhancement (``aif.peak_enhancement_frame``),
        the one the module's panel shows for drawing.
    """

    field_strength_t: Optional[float] = None
    aif_mode: str = "ai"
    external_aif_times_s: Optional[np.ndarray] = None
    external_aif_signal: Optional[np.ndarray] = None
    tissue_conversion: str = TISSUE_CONVERSIONS[0]
    t1_blood_s: Optional[float] = None
    t1_myocardium_s: Optional[float] = None
    r1_per_s_per_mM: Optional[float] = None
    saturation_time_s: Optional[float] = None
    repetition_time_s: Optional[float] = None
    flip_angle_deg: Optional[float] = None
    readout_ordering: Optional[str] = None
    pulses_to_centre: Optional[int] = None
    saturation_efficiency: Optional[float] = None
    calibrate_sequence: bool = True
    slice_levels: Optional[Tuple[str, ...]] = None
    septum_direction: Optional[str] = None
    threshold_ml_min_g: float = K.ISCHAEMIA_THRESHOLD_ML_MIN_G
    weights_path: Optional[str] = None
    motion_correction: str = "auto"
    roi_frame: Optional[int] = None

    def acquisition(self, header=None):
        """The study's ``acquisition.Acquisition``: these options, else ``header``, else the defaults."""
        from .acquisition import resolve_acquisition

        return resolve_acquisition(
            field_strength_t=self.field_strength_t, t1_blood_s=self.t1_blood_s,
            t1_myocardium_s=self.t1_myocardium_s, r1_per_s_per_mM=self.r1_per_s_per_mM,
            saturation_time_s=self.saturation_time_s, repetition_time_s=self.repetition_time_s,
            flip_angle_deg=self.flip_angle_deg, readout_ordering=self.readout_ordering,
            pulses_to_centre=self.pulses_to_centre, saturation_efficiency=self.saturation_efficiency,
            header=header)


@dataclass
class QuantificationResult:
    """Everything one quantification produces.

    Attributes
    ----------
    mbf_ml_min_g : numpy.ndarray, shape (n_slices, rows, columns)
        Pixelwise stress MBF, mL/min/g; NaN outside the myocardium and where
        the fit failed.
    fit_nrmse, fit_converged, fit_at_bound, flow_at_bound, conversion_clipped : numpy.ndarray
        Per-pixel fit quality on the same grid (NaN / False outside the
        myocardium): residual RMS over tissue RMS, solver convergence, a
        parameter at its bound, the flow itself at its bound (the pixel's MBF
        is a bound, not a measurement), a signal clipped by the ``model``
        conversion.
    aha_labels : numpy.ndarray of int, shape (n_slices, rows, columns)
        AHA segment 1-16 of each myocardial pixel, 0 elsewhere.
    segments : dict of str -> list
        Table of AHA segments 1-16 (column name -> 16 values).
    territories : dict of str -> list
        Table of the coronary territories LAD, RCA, LCX.
    aif : dict of str -> numpy.ndarray
        Curves at the frame times, each shape (n_frames,): ``time_s`` (s);
        ``saturated`` and ``corrected`` signal (signal units);
        ``saturated_mM`` the saturated AIF converted linearly, ``used_mM`` the
        AIF concentration the fit used, ``used_mM_low`` / ``used_mM_high``
        the AI-AIF ensemble's band on it (``used_mM`` itself without an
        ensemble) and ``myocardium_mM`` the mean tissue concentration over
        all myocardial pixels (NaN-safe), mM.
    summary : dict
        JSON-ready account of inputs, parameters, results, quality, timings.
    motion : motion.MotionCorrection, optional
        The motion step: the registered frames (all of them, the excluded
        ones included), the displacement of every frame and slice, the
        frames left out of the fits.
    """

    mbf_ml_min_g: np.ndarray
    fit_nrmse: np.ndarray
    fit_converged: np.ndarray
    fit_at_bound: np.ndarray
    flow_at_bound: np.ndarray
    conversion_clipped: np.ndarray
    aha_labels: np.ndarray
    segments: dict
    territories: dict
    aif: dict
    summary: dict
    motion: Optional[object] = None


def _report(progress, fraction, message):
    if progress is not None:
        progress(float(fraction), message)


def validate_study(study):
    """Check a ``PerfusionStudy`` and return it with float frames and bool masks.

    Raises ``AIAIFInputError`` for mismatched shapes, fewer than
    ``aif.MIN_AIF_FRAMES`` frames, non-finite frames, non-increasing frame
    times, an empty myocardium or LV blood pool.
    """
    from .aif import MIN_AIF_FRAMES

    frames = np.asarray(study.frames, dtype=float)
    if frames.ndim != 4:
        raise AIAIFInputError("The perfusion frames must be a 4D array (frame, slice, row, column), got {} "
                              "dimensions; pass a sequence of short-axis volumes.".format(frames.ndim))
    n_frames = frames.shape[0]
    if n_frames < MIN_AIF_FRAMES:
        raise AIAIFInputError("The perfusion series has {} frames but at least {} are needed; load the whole "
                              "first-pass acquisition.".format(n_frames, MIN_AIF_FRAMES))
    bad = ~np.isfinite(frames).reshape(n_frames, -1).all(axis=1)
    if bad.any():
        raise AIAIFInputError("Frame {} of the perfusion series contains NaN or infinite values; remove or "
                              "repair that frame.".format(int(np.argmax(bad))))
    times = np.asarray(study.frame_times_s, dtype=float)
    if times.shape != (n_frames,) or not np.all(np.isfinite(times)):
        raise AIAIFInputError("Give one finite frame time per frame ({} frames, got shape {}); check the "
                              "sequence index values.".format(n_frames, times.shape))
    if np.any(np.diff(times) <= 0):
        raise AIAIFInputError("The frame times must increase strictly (frame {} is not after the one before); "
                              "check the sequence index values or the frame interval.".format(
                                  int(np.argmax(np.diff(times) <= 0)) + 1))
    masks = []
    for name, mask in (("LV blood pool", study.blood_pool_mask), ("myocardium", study.myocardium_mask)):
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != frames.shape[1:]:
            raise AIAIFInputError("The {} mask has shape {} but the frames have {}; resample the segmentation "
                                  "onto the perfusion frames.".format(name, mask.shape, frames.shape[1:]))
        if not mask.any():
            raise AIAIFInputError("The {} segment is empty on the perfusion frames; draw it on the images (or "
                                  "check that the segmentation overlaps them).".format(name))
        masks.append(mask)
    return PerfusionStudy(frames=frames, frame_times_s=times, ijk_to_ras=np.asarray(study.ijk_to_ras, dtype=float),
                          blood_pool_mask=masks[0], myocardium_mask=masks[1],
                          rv_insertion_ras=study.rv_insertion_ras, rv_insertion_labels=study.rv_insertion_labels,
                          source=dict(study.source), header=dict(study.header))


def validate_parameters(parameters):
    """Check ``QuantificationParameters``; raise ``AIAIFInputError`` naming the fix."""
    if parameters.aif_mode not in AIF_MODES:
        raise AIAIFInputError("Unknown AIF mode {!r}; use one of {}.".format(parameters.aif_mode,
                                                                            ", ".join(AIF_MODES)))
    if parameters.tissue_conversion not in TISSUE_CONVERSIONS:
        raise AIAIFInputError("Unknown tissue conversion {!r}; use one of {}.".format(
            parameters.tissue_conversion, ", ".join(TISSUE_CONVERSIONS)))
    if parameters.aif_mode == "external" and (parameters.external_aif_times_s is None
                                              or parameters.external_aif_signal is None):
        raise AIAIFInputError("The external AIF mode needs the AIF's times and signal; give an AIF file or "
                              "table, or choose the AI or saturated AIF.")
    if parameters.motion_correction not in MOTION_CORRECTIONS:
        raise AIAIFInputError("Unknown motion correction {!r}; use one of {}.".format(
            parameters.motion_correction, ", ".join(MOTION_CORRECTIONS)))
    if parameters.roi_frame is not None and (isinstance(parameters.roi_frame, bool)
                                             or int(parameters.roi_frame) != parameters.roi_frame
                                             or parameters.roi_frame < 0):
        raise AIAIFInputError("The ROI frame must be a frame index 0, 1, 2, ..., got {!r}; give the frame the ROIs "
                              "were drawn on.".format(parameters.roi_frame))
    if not (np.isfinite(parameters.threshold_ml_min_g) and parameters.threshold_ml_min_g > 0):
        raise AIAIFInputError("The ischaemia threshold must be a positive number of mL/min/g, got {!r}.".format(
            parameters.threshold_ml_min_g))


#: A frame this close to the external AIF's first or last sample time, s, counts as inside its time range
#: (project choice: 1 ms, the precision of Slicer's sequence index values, within which an AIF does not change;
#: times rounded to 0.1 ms in a CSV file must not warn).
EXTERNAL_AIF_TIME_TOLERANCE_S = 1e-3


def _external_aif_mM(parameters, times_s, acquisition):
    """The user's AIF converted linearly and sampled at the frame times (mM), and a note for the summary."""
    from .aif import detect_arrival_index, validate_aif_curves
    from .conversion import aif_concentration_mM

    ext_times, ext_signal = validate_aif_curves(parameters.external_aif_times_s, parameters.external_aif_signal)
    ext_times, ext_signal = ext_times[0], ext_signal[0]
    if ext_times[-1] < times_s[0] or ext_times[0] > times_s[-1]:
        raise AIAIFInputError("The external AIF ({:.1f}-{:.1f} s) does not overlap the perfusion frames "
                              "({:.1f}-{:.1f} s); give its times on the same clock.".format(
                                  ext_times[0], ext_times[-1], times_s[0], times_s[-1]))
    # Frames outside the AIF's time range take its first or last value (np.interp); the summary counts them,
    # but not a frame within EXTERNAL_AIF_TIME_TOLERANCE_S of the range (times rounded in a CSV file).
    outside = int(np.count_nonzero((times_s < ext_times[0] - EXTERNAL_AIF_TIME_TOLERANCE_S)
                                   | (times_s > ext_times[-1] + EXTERNAL_AIF_TIME_TOLERANCE_S)))
    arrival = int(detect_arrival_index(ext_times, ext_signal)[0])
    baseline = ext_signal[:max(arrival, 1)].mean()
    conc = aif_concentration_mM(ext_signal, baseline, acquisition)
    return np.interp(times_s, ext_times, conc), {"n_samples": int(ext_times.size), "arrival_index": arrival,
                                                 "time_range_s": [float(ext_times[0]), float(ext_times[-1])],
                                                 "frames_outside_time_range": outside}


class MotionStep(object):
    """The study registered to its ROI frame, ready for the quantification (``correct_study_motion``).

    Attributes
    ----------
    study : PerfusionStudy
        The frames registered to the ROI frame, without the frames that could
        not be registered (and their times).
    correction : motion.MotionCorrection
        What the motion step measured and did; ``correction.frames`` holds
        every registered frame.
    frames_used : numpy.ndarray of int
        Indices of the input frames in ``study``.
    """

    def __init__(self, study, correction, frames_used):
        self.study = study
        self.correction = correction
        self.frames_used = frames_used


def correct_study_motion(study, parameters=None, progress=None):
    """The first step of ``quantify_study``: register the frames to the frame the ROIs belong to.

    The ROI frame is ``parameters.roi_frame``, else the frame of peak LV
    enhancement (``aif.peak_enhancement_frame`` with the blood-pool ROI).
    Frames that could not be registered are left out of the returned study,
    unless fewer than ``aif.MIN_AIF_FRAMES`` would remain (then they stay, and
    a warning says so).  Callers that check the ROIs against the images
    (``mrml.quantify_nodes``) do so on the registered study, then pass this
    step to ``quantify_study(..., motion=...)`` so it is not done twice.

    Parameters
    ----------
    study : PerfusionStudy
    parameters : QuantificationParameters, optional
        ``motion_correction`` and ``roi_frame`` are used.
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    MotionStep
    """
    from . import motion
    from .aif import MIN_AIF_FRAMES, peak_enhancement_frame

    parameters = parameters or QuantificationParameters()
    validate_parameters(parameters)
    study = validate_study(study)
    n_frames = study.frames.shape[0]
    if parameters.roi_frame is None:
        roi_frame, rule = peak_enhancement_frame(study.frames, study.blood_pool_mask), "peak LV enhancement"
    elif parameters.roi_frame >= n_frames:
        raise AIAIFInputError("The ROI frame {} is beyond the series' last frame {}; give the index (from 0) of the "
                              "frame the ROIs were drawn on.".format(parameters.roi_frame, n_frames - 1))
    else:
        roi_frame, rule = int(parameters.roi_frame), "given"
    correction = motion.correct_motion(study.frames, study.frame_times_s, study.blood_pool_mask,
                                       study.myocardium_mask, study.pixel_spacing_mm, roi_frame,
                                       mode=parameters.motion_correction, roi_frame_rule=rule, progress=progress)
    used = np.setdiff1d(np.arange(n_frames), correction.excluded_frames)
    if used.size < MIN_AIF_FRAMES:
        correction.warnings.append("Only {} frames could be registered, fewer than the {} a fit needs, so the {} "
                                   "others are kept although they may be misregistered.".format(
                                       used.size, MIN_AIF_FRAMES, n_frames - used.size))
        correction.excluded_frames = []
        used = np.arange(n_frames)
    registered = PerfusionStudy(
        frames=correction.frames[used], frame_times_s=study.frame_times_s[used], ijk_to_ras=study.ijk_to_ras,
        blood_pool_mask=study.blood_pool_mask, myocardium_mask=study.myocardium_mask,
        rv_insertion_ras=study.rv_insertion_ras, rv_insertion_labels=study.rv_insertion_labels,
        source=study.source, header=study.header)
    return MotionStep(registered, correction, used)


def quantify_study(study, parameters=None, progress=None, motion=None):
    """Quantify pixelwise stress MBF of one study.

    Steps: motion correction (``correct_study_motion``: every frame
    registered in plane to the frame the ROIs belong to; frames that could
    not be registered are left out); AIF from the LV blood pool (mean of its brightest quarter of
    pixels, ``aif.extract_aif_signal``); contrast arrival and the pre-contrast
    frames; the RV in the images (``orientation.find_rv``) and the AHA
    segments (``segments.aha_segment_map``: the RV insertion points are
    optional); AIF correction by the network (``aif_mode="ai"``), none
    (``"saturated"``) or the user's AIF (``"external"``); AIF to mM by the
    paper's linear conversion; myocardium to mM (``tissue_conversion``);
    batched Fermi deconvolution over the first pass; segment MBF,
    territories and diagnosis at the threshold.

    Parameters
    ----------
    study : PerfusionStudy
        Frames, frame times (s), geometry, masks and RV insertion points.
    parameters : QuantificationParameters, optional
        Choices; the paper's defaults when omitted.
    progress : callable, optional
        ``progress(fraction, message)`` with fraction 0-1.
    motion : MotionStep, optional
        The motion step already done on this study with these parameters
        (``correct_study_motion``); done here when omitted.

    Returns
    -------
    QuantificationResult
        MBF map (mL/min/g), fit quality, AHA labels, segment and territory
        tables, AIF curves and the mean myocardial curve (mM), and a summary.
        With ``aif_mode="ai"`` the summary's ``warnings`` say when the
        study's AIF lies outside the network's training range
        (``training_range.training_range_warnings``, with the ``training.json``
        beside the weights used).
    """
    from . import aif as aif_module
    from . import conversion, deconvolution, mbf_map, orientation, segments

    parameters = parameters or QuantificationParameters()
    validate_parameters(parameters)
    timings = {}
    started = clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    _report(progress, 0.0, "Checking inputs")
    if motion is None:
        motion = correct_study_motion(study, parameters, progress=lambda fraction, message: _report(
            progress, 0.02 * fraction, message))
    lap("motion_s")
    study = motion.study
    times = study.frame_times_s
    acquisition = parameters.acquisition(study.header)
    _report(progress, 0.02, "Extracting the AIF")
    saturated = aif_module.extract_aif_signal(study.frames, study.blood_pool_mask)
    arrival = int(aif_module.detect_arrival_index(times, saturated)[0])
    if arrival < 1:
        raise AIAIFInputError("Contrast arrives in the first frame, so there is no pre-contrast signal; include "
                              "the frames before the bolus.")
    _report(progress, 0.03, "Finding the RV and the septum")
    image_rv = orientation.find_rv(study.frames, times, study.blood_pool_mask, study.myocardium_mask,
                                   study.ijk_to_ras, lv_signal=saturated, lv_arrival_index=arrival)
    lap("orientation_s")
    labelling = segments.aha_segment_map(study.myocardium_mask, study.blood_pool_mask, study.ijk_to_ras,
                                         study.rv_insertion_ras, study.rv_insertion_labels,
                                         slice_levels=parameters.slice_levels,
                                         septum_direction=parameters.septum_direction, image_rv=image_rv)
    lap("segments_s")

    _report(progress, 0.05, "Correcting the AIF")
    lv_baseline = saturated[:arrival].mean()
    saturated_mM = conversion.aif_concentration_mM(saturated, lv_baseline, acquisition)
    external = None
    aif_warnings = []
    member_aifs_mM = None
    if parameters.aif_mode == "ai":
        from .network import correct_aifs_with_members
        from .training_range import training_range_warnings
        corrected, members = correct_aifs_with_members(times, saturated[None, :], weights=parameters.weights_path)
        corrected = corrected[0]
        # The study's AIF against the training range of the weights used (training.json beside them).
        aif_warnings = training_range_warnings(times, saturated, acquisition.field_strength_t,
                                               arrival_index=arrival, weights_path=parameters.weights_path)
        aif_mM = conversion.aif_concentration_mM(corrected, lv_baseline, acquisition)
        member_aifs_mM = conversion.aif_concentration_mM(members[:, 0], lv_baseline, acquisition)
    elif parameters.aif_mode == "saturated":
        corrected, aif_mM = saturated.copy(), saturated_mM
    else:
        aif_mM, external = _external_aif_mM(parameters, times, acquisition)
        # In the saturated AIF's signal units, so that aif.csv reads the same way in every mode.
        corrected = lv_baseline * (1.0 + acquisition.r1_per_s_per_mM * acquisition.t1_blood() * aif_mM)
    lap("aif_s")

    _report(progress, 0.1, "Converting the myocardium to concentration")
    calibration = None
    if parameters.tissue_conversion == "model" and parameters.calibrate_sequence and parameters.aif_mode != "saturated":
        calibration = conversion.calibrate_sequence_on_blood(saturated, lv_baseline, aif_mM, acquisition)
        acquisition = acquisition.with_sequence(calibration.sequence, "calibrated")
    myocardium = study.myocardium_mask
    pixel_signal = np.moveaxis(study.frames[:, myocardium], 0, -1)  # (n_pixels, n_frames)
    pixel_baseline = pixel_signal[:, :arrival].mean(axis=1)
    scale = anchor = None
    if calibration is not None:
        # The myocardium's signal scale from the blood pool's (blood-pool anchor, see conversion).
        scale = conversion.tissue_scale(pixel_baseline, *np.nonzero(myocardium), calibration.blood_scale)
        anchor = conversion.anchor_check(pixel_baseline, scale, acquisition, acquisition.sequence)
    tissue_mM, clipped = conversion.tissue_concentration_mM(pixel_signal, pixel_baseline, lv_baseline, acquisition,
                                                            method=parameters.tissue_conversion, scale=scale)
    lap("conversion_s")

    fit_end_s = deconvolution.first_pass_end_s(times, aif_mM)

    def fit_progress(fraction, message):
        _report(progress, 0.15 + 0.75 * fraction, message)

    spacing_mm = study.pixel_spacing_mm
    near_blood = mbf_map.near_blood_pool(myocardium, study.blood_pool_mask, spacing_mm)
    fit = mbf_map.fit_mbf_map(times, aif_mM, tissue_mM, myocardium, spacing_mm, fit_end_s=fit_end_s,
                              near_blood=near_blood, progress=fit_progress)
    lap("fit_s")

    _report(progress, 0.9, "Segments and territories")
    mbf = _on_grid(fit.mbf_ml_min_g, myocardium, np.nan)
    nrmse = _on_grid(fit.nrmse, myocardium, np.nan)
    converged = _on_grid(fit.converged, myocardium, False)
    at_bound = _on_grid(fit.at_bound, myocardium, False)
    flow_at_bound = _on_grid(fit.flow_at_bound, myocardium, False)
    clipped_pixels = _on_grid(np.any(clipped, axis=-1), myocardium, False)
    labels = labelling.labels
    # A pixel at the upper flow bound holds no measured MBF: left out of its segment's mean and median unless such
    # pixels are most of the segment (then its MBF is the bound, and mbf_is_bound says so).
    statistics = segments.segment_statistics(mbf, labels, not_measured=_on_grid(fit.flow_at_upper_bound, myocardium,
                                                                                False),
                                             max_not_measured_fraction=SEGMENT_AT_BOUND_FRACTION)
    segment_curves = _segment_mean_curves(tissue_mM, labels[myocardium])
    curve_fit = deconvolution.fit_fermi_batched(times, aif_mM, segment_curves, fit_end_s=fit_end_s)
    segment_table = _segment_table(statistics, curve_fit.mbf_ml_min_g, parameters.threshold_ml_min_g,
                                   _segment_counts(flow_at_bound & np.isfinite(mbf), labels))
    uncertainty, uncertainty_warnings = _aif_uncertainty(times, saturated, lv_baseline, aif_mM, member_aifs_mM,
                                                         segment_curves, curve_fit.mbf_ml_min_g, fit_end_s,
                                                         segment_table, acquisition, calibration, parameters)
    territories = segments.territory_results(np.asarray(segment_table["mbf_mean"], dtype=float),
                                             threshold_ml_min_g=parameters.threshold_ml_min_g)
    lap("segments_table_s")
    timings["total_s"] = round(time.perf_counter() - started, 4)

    no_band = member_aifs_mM is None or len(member_aifs_mM) < 2
    aif_curves = {"time_s": times, "saturated": saturated, "corrected": corrected, "saturated_mM": saturated_mM,
                  "used_mM": aif_mM, "myocardium_mM": _mean_curve(tissue_mM),
                  "used_mM_low": aif_mM if no_band else member_aifs_mM.min(axis=0),
                  "used_mM_high": aif_mM if no_band else member_aifs_mM.max(axis=0)}
    summary = _summary(study, parameters, labelling, arrival, lv_baseline, aif_mM, fit_end_s, fit, near_blood, clipped,
                       segment_table, territories, mbf, timings, acquisition, external, calibration, anchor,
                       list(motion.correction.warnings) + list(aif_warnings) + uncertainty_warnings)
    summary["aif_uncertainty"] = uncertainty
    summary["motion"] = dict(motion.correction.summary(), frames_used=[int(f) for f in motion.frames_used])
    summary["parameters"]["motion_correction"] = parameters.motion_correction
    summary["parameters"]["roi_frame"] = parameters.roi_frame
    _report(progress, 1.0, "Done")
    return QuantificationResult(mbf_ml_min_g=mbf, fit_nrmse=nrmse, fit_converged=converged, fit_at_bound=at_bound,
                                flow_at_bound=flow_at_bound, conversion_clipped=clipped_pixels, aha_labels=labels, segments=segment_table,
                                territories=territories, aif=aif_curves, summary=summary, motion=motion)


def _aif_uncertainty(times, saturated, lv_baseline, aif_mM, member_aifs_mM, segment_curves, curve_fit_mbf,
                     fit_end_s, segment_table, acquisition, calibration, parameters):
    """The AI-AIF's ensemble band (added to ``segment_table`` as ``mbf_low`` / ``mbf_high``) and blood-signal check.

    Returns the ``aif_uncertainty`` record of ``summary.json`` and its
    warnings (``aif_uncertainty``); without an ensemble of at least two
    members the band is the reported value and ``ensemble`` is None, and
    without a blood-pool calibration the consistency check is None.
    """
    from . import aif_uncertainty

    mbf = np.asarray(segment_table["mbf_mean"], dtype=float)
    low = high = mbf
    record = {"ensemble": None, "blood_signal_consistency": None}
    warnings = []
    if member_aifs_mM is not None and len(member_aifs_mM) > 1:
        low, high = aif_uncertainty.segment_mbf_band(times, member_aifs_mM, segment_curves, mbf, curve_fit_mbf,
                                                     fit_end_s)
        record["ensemble"], found = aif_uncertainty.ensemble_summary(
            member_aifs_mM, aif_mM, segment_table["segment"], low, high, parameters.threshold_ml_min_g)
        warnings.extend(found)
    segment_table["mbf_low"] = [float(v) for v in low]
    segment_table["mbf_high"] = [float(v) for v in high]
    if calibration is not None and parameters.aif_mode == "ai":
        record["blood_signal_consistency"], found = aif_uncertainty.blood_signal_consistency(
            saturated, lv_baseline, aif_mM, acquisition)
        warnings.extend(found)
    return record, warnings


def _mean_curve(curves):
    """Mean over the rows of ``curves`` (n_curves, n_frames), ignoring NaN; NaN where a frame has no value."""
    curves = np.asarray(curves, dtype=float)
    finite = np.isfinite(curves)
    counts = np.count_nonzero(finite, axis=0)
    sums = np.where(finite, curves, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _on_grid(values, mask, fill):
    values = np.asarray(values)
    grid = np.full(mask.shape, fill, dtype=np.result_type(values.dtype, np.asarray(fill).dtype))
    grid[mask] = values
    return grid


def _segment_mean_curves(tissue_mM, pixel_labels):
    """Mean tissue curve of each AHA segment 1-16 (NaN rows for empty segments), mM."""
    curves = np.full((len(K.AHA_SEGMENTS), tissue_mM.shape[-1]), np.nan)
    for row, segment in enumerate(K.AHA_SEGMENTS):
        members = pixel_labels == segment
        if members.any():
            curves[row] = tissue_mM[members].mean(axis=0)
    return curves


def _segment_counts(flags, labels):
    """Number of flagged pixels in each AHA segment 1-16."""
    return np.bincount(np.asarray(labels)[flags].astype(int), minlength=len(K.AHA_SEGMENTS) + 1)[1:]


def _segment_table(statistics, curve_fit_mbf, threshold_ml_min_g, n_at_bound):
    """Columns of ``segments.csv``: one row per AHA segment 1-16.

    ``n_at_bound`` counts the pixels whose flow sits at a fit bound;
    ``mbf_is_bound`` marks segments where they are more than
    ``SEGMENT_AT_BOUND_FRACTION`` of the pixels with a value, so that the
    segment's MBF is a bound, not a measurement.  ``n_left_out`` counts the
    pixels at the upper flow bound that the mean and median leave out
    (``segments.segment_statistics``).
    """
    mean = np.asarray(statistics["mbf_mean"], dtype=float)
    n_pixels = np.asarray(statistics["n_pixels"])
    level_of = {segment: K.AHA_SEGMENT_NAMES[segment].split()[0] for segment in K.AHA_SEGMENTS}
    return {
        "segment": list(K.AHA_SEGMENTS),
        "name": [K.AHA_SEGMENT_NAMES[s] for s in K.AHA_SEGMENTS],
        "level": [level_of[s] for s in K.AHA_SEGMENTS],
        "territory": [K.territory_of_segment(s) for s in K.AHA_SEGMENTS],
        "mbf_mean": [float(v) for v in mean],
        "mbf_median": [float(v) for v in statistics["mbf_median"]],
        "mbf_curve_fit": [float(v) for v in curve_fit_mbf],
        # The AI-AIF ensemble's band, filled in by ``_aif_uncertainty``.
        "mbf_low": [float(v) for v in mean],
        "mbf_high": [float(v) for v in mean],
        "n_pixels": [int(v) for v in statistics["n_pixels"]],
        "n_failed": [int(v) for v in statistics["n_failed"]],
        "n_at_bound": [int(v) for v in n_at_bound],
        "n_left_out": [int(v) for v in statistics["n_left_out"]],
        "mbf_is_bound": [bool(count > SEGMENT_AT_BOUND_FRACTION * total) if total else None
                         for count, total in zip(n_at_bound, n_pixels)],
        "ischemic": [bool(v < threshold_ml_min_g) if np.isfinite(v) else None for v in mean],
    }


def _finite_stats(values):
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"mean": None, "median": None, "n": 0}
    return {"mean": float(values.mean()), "median": float(np.median(values)), "n": int(values.size)}


def _bound_warnings(fit, segment_table):
    """Sentences for the pixels and segments whose MBF is a fit bound, not a measurement."""
    from .deconvolution import FERMI_UPPER_BOUNDS, flow_to_mbf

    bound_segments = [segment for segment, flag in zip(segment_table["segment"], segment_table["mbf_is_bound"])
                      if flag]
    n_pixels = int(np.size(fit.flow_at_bound))
    n_bound = int(np.count_nonzero(fit.flow_at_bound))
    upper = float(flow_to_mbf(FERMI_UPPER_BOUNDS[0]))
    if bound_segments:
        return ["In segment{} {} most pixels sit at a bound of the flow fit (0 or {:.2f} mL/min/g), so {} MBF is a "
                "bound, not a measurement; check the AIF (a saturated AIF drives flows to the upper bound) and the "
                "ROIs.".format("s" if len(bound_segments) > 1 else "", ", ".join(str(s) for s in bound_segments),
                               upper, "their" if len(bound_segments) > 1 else "its")]
    if n_pixels and n_bound > MAP_AT_BOUND_WARNING_FRACTION * n_pixels:
        return ["{} of {} myocardial pixels ({:.0f} %) sit at a bound of the flow fit (0 or {:.2f} mL/min/g); their "
                "MBF is a bound, not a measurement.".format(n_bound, n_pixels, 100.0 * n_bound / n_pixels, upper)]
    return []


def _summary(study, parameters, labelling, arrival, lv_baseline, aif_mM, fit_end_s, fit, near_blood, clipped,
             segment_table,
             territories, mbf, timings, acquisition, external, calibration, anchor, aif_warnings=()):
    """The JSON-ready account of one quantification (``summary.json``).

    ``warnings`` holds ``aif_warnings`` (``quantify_study`` passes the
    motion step's warnings, then the AI-AIF training-range warnings of
    ``training_range.training_range_warnings``) first, then those of the
    blood-pool calibration, its anchor check and of the fit, then those of
    the orientation of the segments (``rules_used``).
    ``parameters.acquisition`` gives every physical parameter with its source
    (option, header, default or calibrated); ``parameters.calibration`` the
    blood-pool calibration's fitted values, signal scale, residual and bound
    state, and ``parameters.tissue_anchor`` the native myocardial T1 the
    anchored scale implies against the expected one (both None when the
    calibration did not run).
    """
    from . import __version__

    n_pixels = int(np.size(fit.converged))
    failed = ~np.isfinite(np.asarray(fit.mbf_ml_min_g, dtype=float))
    n_failed = int(np.count_nonzero(failed))
    warnings = list(aif_warnings)
    if calibration is not None:
        warnings.extend(calibration.warnings)
    if anchor is not None and anchor["warning"]:
        warnings.append(anchor["warning"])
    if parameters.aif_mode == "saturated":
        warnings.append("The AIF is the uncorrected, saturated blood-pool signal, which underestimates the "
                        "arterial concentration and so overestimates MBF; use these results for comparison only.")
    if n_pixels and n_failed > FAILED_FIT_WARNING_FRACTION * n_pixels:
        warnings.append("{} of {} myocardial pixel fits failed ({:.0f} %); check the ROIs and the AIF.".format(
            n_failed, n_pixels, 100.0 * n_failed / n_pixels))
    warnings.extend(_bound_warnings(fit, segment_table))
    if external and external["frames_outside_time_range"]:
        warnings.append("{} perfusion frames lie outside the external AIF's time range and use its first or last "
                        "value; check that both share one clock.".format(external["frames_outside_time_range"]))
    warnings.extend(labelling.rules_used["warnings"])
    ischaemic = [name for name, flag in zip(territories["territory"], territories["ischemic"]) if flag]
    return {
        "software": {"name": "AI-AIF", "version": __version__},
        "inputs": dict(study.source, n_frames=int(study.frames.shape[0]),
                       grid_kji=[int(n) for n in study.frames.shape[1:]],
                       frame_times_s=[round(float(t), 4) for t in study.frame_times_s],
                       n_blood_pool_pixels=int(study.blood_pool_mask.sum()),
                       n_myocardium_pixels=int(study.myocardium_mask.sum()),
                       n_rv_insertion_points=0 if study.rv_insertion_ras is None else int(
                           np.asarray(study.rv_insertion_ras).reshape(-1, 3).shape[0])),
        "parameters": {
            "field_strength_t": acquisition.field_strength_t,
            "aif_mode": parameters.aif_mode,
            "tissue_conversion": parameters.tissue_conversion,
            "threshold_ml_min_g": parameters.threshold_ml_min_g,
            "tissue_density_g_per_ml": K.TISSUE_DENSITY_G_PER_ML,
            "slice_levels_override": None if parameters.slice_levels is None else list(parameters.slice_levels),
            "septum_direction_override": parameters.septum_direction,
            "weights_path": parameters.weights_path,
            "acquisition": acquisition.summary(),
            "calibration": None if calibration is None else calibration.summary(),
            "tissue_anchor": None if anchor is None else {key: value for key, value in anchor.items()
                                                          if key != "warning"},
        },
        "aif": {
            "arrival_frame": arrival,
            "arrival_s": float(study.frame_times_s[arrival]),
            "n_baseline_frames": arrival,
            "lv_baseline_signal": float(lv_baseline),
            "peak_mM": float(np.max(aif_mM)),
            "fit_end_s": float(fit_end_s),
            "external": external,
        },
        "segmentation": {
            "slice_levels": list(labelling.slice_levels),
            "septum_direction": labelling.septum_direction,
            "rules_used": labelling.rules_used,
        },
        "results": {
            "global_mbf_ml_min_g": _finite_stats(mbf),
            "territories": [
                {"territory": name, "mbf_ml_min_g": None if not np.isfinite(value) else float(value),
                 "ischemic": flag}
                for name, value, flag in zip(territories["territory"], territories["mbf_ml_min_g"],
                                             territories["ischemic"])],
            "ischemic_territories": ischaemic,
            "segments": [{key: segment_table[key][row] for key in ("segment", "mbf_mean", "mbf_median",
                                                                   "mbf_curve_fit", "mbf_low", "mbf_high",
                                                                   "n_pixels", "n_at_bound", "n_left_out",
                                                                   "mbf_is_bound", "ischemic")}
                         for row in range(len(segment_table["segment"]))],
        },
        "fit_quality": {
            "n_pixels": n_pixels,
            "n_converged": int(np.count_nonzero(fit.converged)),
            "n_at_bound": int(np.count_nonzero(fit.at_bound)),
            "n_flow_at_bound": int(np.count_nonzero(fit.flow_at_bound)),
            "n_pixels_with_blood_term": int(np.count_nonzero(near_blood)),
            "median_blood_fraction_near_blood_pool": _finite_stats(fit.blood_fraction[near_blood])["median"],
            "n_failed": n_failed,
            "n_conversion_clipped": int(np.count_nonzero(np.any(clipped, axis=-1))),
            "median_nrmse": _finite_stats(fit.nrmse)["median"],
        },
        "warnings": warnings,
        "timings_s": timings,
    }


#: Files of a quantification's output directory (one place for their names).
OUTPUT_FILES = {
    "mbf": "mbf.nrrd",
    "segments": "segments.csv",
    "aif": "aif.csv",
    "summary": "summary.json",
    "report": "report.png",
    "registered": "registered.seq.nrrd",
}
#: The files every quantification writes; ``registered.seq.nrrd`` only when
#: the motion step moved frames.
ALWAYS_WRITTEN_FILES = tuple(name for key, name in OUTPUT_FILES.items() if key != "registered")


def json_ready(value):
    """Replace NaN/inf by None and numpy scalars/arrays by Python values, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    return value


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else "{:.6g}".format(value)
    return str(value)


def write_table_csv(path, columns):
    """Write a dict of equal-length columns as CSV (empty cell for NaN/None).

    Parameters
    ----------
    path : str
        File to write.
    columns : dict of str -> sequence
        Column name -> values, in output order.
    """
    import csv

    names = list(columns)
    rows = zip(*(columns[name] for name in names))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for row in rows:
            writer.writerow([_csv_cell(value) for value in row])


def write_result_files(result, directory, study_name=None):
    """Write ``segments.csv``, ``aif.csv``, ``summary.json`` and ``report.png`` into ``directory``.

    ``mbf.nrrd`` is written by the MRML adapter (a Slicer storage node), not
    here.  ``aif.csv`` has one row per frame with the columns ``time_s`` (s),
    ``saturated`` and ``corrected`` (AIF signal, signal units),
    ``concentration_mM`` (the AIF the fit used, mM), ``concentration_mM_low``
    and ``concentration_mM_high`` (the AI-AIF ensemble's band on it, mM; the
    AIF itself when there is no ensemble) and ``myocardium_mM`` (mean
    myocardial tissue concentration, mM).

    Parameters
    ----------
    result : QuantificationResult
        From ``quantify_study``.
    directory : str
        Existing directory.
    study_name : str, optional
        Title of the report figure.
    """
    import json
    import os

    from . import report

    write_table_csv(os.path.join(directory, OUTPUT_FILES["segments"]), result.segments)
    write_table_csv(os.path.join(directory, OUTPUT_FILES["aif"]), {
        "time_s": result.aif["time_s"], "saturated": result.aif["saturated"],
        "corrected": result.aif["corrected"], "concentration_mM": result.aif["used_mM"],
        "concentration_mM_low": result.aif["used_mM_low"], "concentration_mM_high": result.aif["used_mM_high"],
        "myocardium_mM": result.aif["myocardium_mM"]})
    with open(os.path.join(directory, OUTPUT_FILES["summary"]), "w") as handle:
        json.dump(json_ready(result.summary), handle, indent=2, allow_nan=False)
        handle.write("\n")
    curves = {"saturated (uncorrected)": result.aif["saturated_mM"]}
    mode = result.summary["parameters"]["aif_mode"]
    if mode != "saturated":
        curves[AIF_MODE_LABELS[mode]] = result.aif["used_mM"]
    report.plot_quantification_report(
        os.path.join(directory, OUTPUT_FILES["report"]), result.aif["time_s"], curves,
        result.mbf_ml_min_g, np.isfinite(result.mbf_ml_min_g) | (result.aha_labels > 0),
        np.asarray(result.segments["mbf_mean"], dtype=float), result.summary["segmentation"]["slice_levels"],
        result.territories, threshold_ml_min_g=result.summary["parameters"]["threshold_ml_min_g"],
        title=study_name, subtitle=report_subtitle(result.summary),
        bound_segments=[segment for segment, flag in zip(result.segments["segment"], result.segments["mbf_is_bound"])
                        if flag], motion=_report_motion(result), aif_band=_report_aif_band(result))


def _report_aif_band(result):
    """The AI-AIF ensemble's band for the report's AIF panel (None without an ensemble)."""
    if not (result.summary.get("aif_uncertainty") or {}).get("ensemble"):
        return None
    return "AI-AIF ensemble band", result.aif["used_mM_low"], result.aif["used_mM_high"]


def _report_motion(result):
    """The motion panel's data for ``report.plot_quantification_report`` (None when the motion was not measured)."""
    correction = None if result.motion is None else result.motion.correction
    if correction is None or not np.all(np.isfinite(correction.shift_px)):
        return None
    return {"times_s": correction.frame_times_s, "displacement_mm": correction.displacement_mm(),
            "turn_deg": correction.applied_turn_deg(), "excluded_frames": correction.excluded_frames,
            "roi_frame": correction.roi_frame, "applied": correction.applied}


def report_subtitle(summary):
    """What a result rests on, in one line: the AIF, the field strength and the tissue conversion."""
    parameters = summary["parameters"]
    conversion = {"model": "sequence-model conversion", "linear": "linear conversion (the paper's)"}
    return "AIF: {} | {:g} T | {}".format(AIF_MODE_LABELS[parameters["aif_mode"]], parameters["field_strength_t"],
                                          conversion.get(parameters["tissue_conversion"],
                                                         parameters["tissue_conversion"]))

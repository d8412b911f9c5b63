"""A simulated phantom written as DICOM: MR images with realistic headers, and its ROIs as a DICOM SEG.

``write_phantom_dicom`` writes the phantom's frames as classic MR Image
Storage objects (pydicom), in one of ``DICOM_LAYOUTS``: one series per slice
(as Siemens often exports perfusion) or all slices in one series.  The
headers carry what a scanner writes and the reader uses: field strength,
TR, TE, flip angle, the saturation delay (as ``InversionTime``, as Siemens
stores it), acquisition date and time of every frame, the R-wave trigger
delay, geometry, and the rescale of the stored integers.  A few
proton-density frames (no saturation, a low flip angle) can lead each
slice, as many perfusion protocols acquire them; the reader leaves them out.

Pixel values are stored as 16-bit integers with a ``RescaleSlope`` chosen
so that the brightest voxel uses most of the range: the rescaled values
differ from the simulated floats by at most half a slope, far below the
noise.

UIDs are derived from the phantom's seed and the layout, so writing the same
phantom again gives the same files.
"""

import datetime
import math
import os

import numpy as np

from .. import __version__
from .. import constants as K

#: Layouts of ``write_phantom_dicom``.
DICOM_LAYOUTS = ("per-slice", "single-series")
#: Folder (inside the output directory) of the perfusion images, and file of the DICOM SEG.
PERFUSION_FOLDER = "perfusion"
SEGMENTATION_FILE = "segmentation.dcm"
#: Proton-density frames written before the saturation-recovery frames by default.
DEFAULT_PROTON_DENSITY_FRAMES = 2
#: Flip angle of the proton-density frames, degrees (a typical protocol value; project choice).
PROTON_DENSITY_FLIP_ANGLE_DEG = 5.0
#: Slice thickness written to the headers, mm (the phantom's slices are 2-D; a typical perfusion value).
SLICE_THICKNESS_MM = 8.0
#: Largest stored integer (of 65535): headroom above the brightest simulated voxel.
STORED_MAXIMUM = 60000
#: When the simulated study starts (date and time of the first saturation-recovery frame).
STUDY_START = datetime.datetime(2022, 3, 1, 10, 0, 0)
#: Trigger delay after the R wave of the first slice, and between slices, ms (project choice).
TRIGGER_DELAY_MS = 60.0
TRIGGER_DELAY_STEP_MS = 150.0
#: Gyromagnetic ratio of 1H, MHz/T (for ImagingFrequency).
PROTON_GYROMAGNETIC_MHZ_PER_T = 42.577478

_UID_ROOT = "AI-AIF phantom"


def _uid(phantom, layout, *parts):
    from pydicom.uid import generate_uid

    seed = phantom.acquisition.get("seed")
    return generate_uid(entropy_srcs=[_UID_ROOT, str(seed), layout] + [str(part) for part in parts])


def _decimal(value, digits=10):
    """A number as a DICOM decimal string (at most 16 characters)."""
    text = "{:.{}g}".format(float(value), digits)
    while len(text) > 16:
        digits -= 1
        text = "{:.{}g}".format(float(value), digits)
    return text


def _lps(vector):
    return np.asarray(vector, dtype=float) * np.array([-1.0, -1.0, 1.0])


def _proton_density_ratio(phantom):
    """Per voxel (k, j, i): proton-density frame signal over the pre-contrast saturation-recovery signal.

    The proton-density frame reads fully relaxed magnetisation at
    ``PROTON_DENSITY_FLIP_ANGLE_DEG``; the saturation-recovery frames read
    the recovered magnetisation of each tissue's native T1 (``sequence``).
    The approach to the steady state during the readout is ignored.
    """
    from ..sequence import SequenceParameters
    from ..simulation import OTHER_TISSUE_T1_S, TISSUE_LABELS

    acquisition = phantom.acquisition
    flip = acquisition["flip_angle_actual_deg"]
    readout = SequenceParameters(saturation_time_s=acquisition["saturation_time_s"],
                                 repetition_time_s=acquisition["repetition_time_s"], flip_angle_deg=flip,
                                 pulses_to_centre=acquisition["pulses_to_centre"],
                                 saturation_efficiency=acquisition["saturation_efficiency"])
    t1 = {"lv blood": acquisition["t1_blood_s"], "rv blood": acquisition["t1_blood_s"],
          "myocardium": acquisition["t1_myocardium_s"],
          "other tissue": OTHER_TISSUE_T1_S[acquisition["field_strength_t"]]}
    pd_flip = math.radians(PROTON_DENSITY_FLIP_ANGLE_DEG * acquisition["flip_angle_factor"])
    ratio = np.ones(phantom.labels.shape)
    for name, t1_s in t1.items():
        recovered = float(readout.normalised_signal(np.array([1.0 / t1_s]))[0])
        ratio[phantom.labels == TISSUE_LABELS[name]] = math.sin(pd_flip) / (math.sin(math.radians(flip)) * recovered)
    return ratio


def _all_frames(phantom, n_proton_density):
    """Frames (n, k, j, i), times (s) and a proton-density flag per frame, proton-density frames first."""
    frames = np.asarray(phantom.frames, dtype=np.float32)
    times = np.asarray(phantom.frame_times_s, dtype=float)
    if not n_proton_density:
        return frames, times, np.zeros(times.size, bool)
    baseline = frames[:3].mean(axis=0)
    leading = np.repeat((baseline * _proton_density_ratio(phantom))[None].astype(np.float32), n_proton_density,
                        axis=0)
    interval = float(np.median(np.diff(times)))
    leading_times = times[0] - interval * np.arange(n_proton_density, 0, -1)
    flags = np.r_[np.ones(n_proton_density, bool), np.zeros(times.size, bool)]
    return np.concatenate([leading, frames]), np.r_[leading_times, times], flags


def _slice_geometry(phantom):
    """Per stored slice: (ImagePositionPatient, ImageOrientationPatient, PixelSpacing), LPS mm."""
    matrix = np.asarray(phantom.ijk_to_ras, dtype=float)
    column_step, row_step = matrix[:3, 0], matrix[:3, 1]  # along a row (i), down a column (j)
    orientation = np.r_[_lps(column_step) / np.linalg.norm(column_step), _lps(row_step) / np.linalg.norm(row_step)]
    spacing = [float(np.linalg.norm(row_step)), float(np.linalg.norm(column_step))]
    positions = [_lps(matrix[:3, 3] + k * matrix[:3, 2]) for k in range(phantom.frames.shape[1])]
    return positions, orientation, spacing


def _stored_series(phantom, proton_density_frames):
    """Every frame as the headers store it: (uint16 frames, RescaleSlope, times in microseconds, proton-density flags).

    The slope is chosen once for the series, so that its brightest voxel
    (often in a proton-density frame) is stored as ``STORED_MAXIMUM``.  The
    times are whole microseconds from the first saturation-recovery frame,
    the resolution of DICOM's acquisition time.
    """
    frames, times, proton_density = _all_frames(phantom, int(proton_density_frames))
    slope = float(_decimal(max(float(np.max(frames)), 1e-6) / STORED_MAXIMUM, 8))
    stored = np.clip(np.rint(frames / slope), 0, 65535).astype(np.uint16)
    microseconds = np.rint((times - times[~proton_density][0]) * 1e6).astype(np.int64)
    return stored, slope, microseconds, proton_density


def stored_phantom(phantom, proton_density_frames=DEFAULT_PROTON_DENSITY_FRAMES):
    """A copy of ``phantom`` with the frames and times its DICOM images store.

    The frames become the 16-bit integers times the slope, and the frame
    times whole microseconds from the first frame.  Write it with
    ``simulation.write_phantom`` to get a ``.seq.nrrd`` copy that holds,
    pixel for pixel, what ``write_phantom_dicom`` stores with the same
    ``proton_density_frames`` (the proton-density frames themselves left
    out), so that the two copies differ only by their format.
    """
    from ..simulation import Phantom

    stored, slope, microseconds, proton_density = _stored_series(phantom, proton_density_frames)
    fields = dict(phantom.__dict__)
    fields["frames"] = stored[~proton_density].astype(np.float32) * np.float32(slope)
    fields["frame_times_s"] = microseconds[~proton_density] / 1e6
    return Phantom(**fields)


def _base_dataset(phantom, layout):
    """The attributes every image of the phantom shares (patient, study, equipment, sequence)."""
    from pydicom.dataset import Dataset

    acquisition = phantom.acquisition
    seed = acquisition.get("seed")
    ds = Dataset()
    ds.PatientName = "AIAIF^Phantom{}".format(seed)
    ds.PatientID = "AIAIF-PHANTOM-{}".format(seed)
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = _uid(phantom, layout, "study")
    ds.StudyDate = STUDY_START.strftime("%Y%m%d")
    ds.StudyTime = STUDY_START.strftime("%H%M%S")
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Stress perfusion CMR (simulated, AI-AIF phantom)"
    ds.FrameOfReferenceUID = _uid(phantom, layout, "frame of reference")
    ds.PositionReferenceIndicator = ""
    ds.Modality = "MR"
    ds.Manufacturer = "AI-AIF"
    ds.ManufacturerModelName = "AI-AIF phantom simulator"
    ds.SoftwareVersions = __version__
    ds.DeviceSerialNumber = "0"
    ds.InstitutionName = "Simulated"
    ds.BodyPartExamined = "HEART"
    ds.PatientPosition = "HFS"
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = ["SP", "MP"]  # spoiled, magnetisation prepared (saturation recovery)
    ds.ScanOptions = ["SAT"]
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = "tfl2d1_sr"
    ds.SliceThickness = _decimal(SLICE_THICKNESS_MM)
    ds.RepetitionTime = _decimal(1000.0 * acquisition["repetition_time_s"])
    ds.EchoTime = _decimal(1000.0 * acquisition["echo_time_s"])
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = _decimal(PROTON_GYROMAGNETIC_MHZ_PER_T * acquisition["field_strength_t"])
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = _decimal(acquisition["field_strength_t"])
    ds.EchoTrainLength = "1"
    ds.HeartRate = str(int(round(acquisition["heart_rate_bpm"])))
    ds.CardiacNumberOfImages = "1"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    return ds


def _file_meta(sop_instance_uid):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from .series import MR_IMAGE_STORAGE

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def write_phantom_dicom(phantom, output_dir, layout="per-slice", proton_density_frames=DEFAULT_PROTON_DENSITY_FRAMES):
    """Write a phantom's frames as DICOM MR images and its ROIs as a DICOM SEG.

    Parameters
    ----------
    phantom : simulation.Phantom
        From ``simulation.simulate_phantom``.
    output_dir : str or os.PathLike
        Existing directory; receives ``PERFUSION_FOLDER`` (the images; with
        ``per-slice`` one sub-folder per series) and ``SEGMENTATION_FILE``.
    layout : {'per-slice', 'single-series'}
        One series per slice, or every slice in one series.
    proton_density_frames : int
        Proton-density frames before the saturation-recovery frames of each
        slice (0 for none).

    Returns
    -------
    dict
        ``{"perfusion": folder, "segmentation": SEG file, "images": [[path per frame] per slice]}``.
    """
    import copy

    from pydicom.dataset import FileDataset

    from .series import MR_IMAGE_STORAGE

    if layout not in DICOM_LAYOUTS:
        raise ValueError("layout must be one of {}".format(", ".join(DICOM_LAYOUTS)))
    output_dir = os.fspath(output_dir)
    stored, slope, microseconds, proton_density = _stored_series(phantom, proton_density_frames)
    positions, orientation, spacing = _slice_geometry(phantom)
    normal = np.cross(orientation[:3], orientation[3:])
    base = _base_dataset(phantom, layout)
    acquisition = phantom.acquisition
    folder = os.path.join(output_dir, PERFUSION_FOLDER)
    os.makedirs(folder)
    n_frames, n_slices = stored.shape[:2]
    paths = [[None] * n_frames for _ in range(n_slices)]
    datasets = [[None] * n_frames for _ in range(n_slices)]
    for k in range(n_slices):
        series_key = k if layout == "per-slice" else 0
        series_folder = os.path.join(folder, "series_{:02d}".format(k + 1)) if layout == "per-slice" else folder
        os.makedirs(series_folder, exist_ok=True)
        for n in range(n_frames):
            instance = n + 1 if layout == "per-slice" else n * n_slices + k + 1
            sop_uid = _uid(phantom, layout, "image", k, n)
            ds = FileDataset(None, copy.deepcopy(base), file_meta=_file_meta(sop_uid), preamble=b"\0" * 128)
            ds.SOPClassUID = MR_IMAGE_STORAGE
            ds.SOPInstanceUID = sop_uid
            ds.SeriesInstanceUID = _uid(phantom, layout, "series", series_key)
            ds.SeriesNumber = str(1001 + series_key)
            ds.SeriesDescription = ("perfusion stress slice {}".format(k + 1) if layout == "per-slice"
                                    else "perfusion stress")
            ds.AcquisitionNumber = "1"
            ds.InstanceNumber = str(instance)
            ds.TemporalPositionIdentifier = str(n + 1)
            ds.NumberOfTemporalPositions = str(n_frames)
            moment = STUDY_START + datetime.timedelta(microseconds=int(microseconds[n]))
            ds.AcquisitionDate = ds.ContentDate = moment.strftime("%Y%m%d")
            ds.AcquisitionTime = ds.ContentTime = moment.strftime("%H%M%S.%f")
            ds.SeriesDate = STUDY_START.strftime("%Y%m%d")
            ds.SeriesTime = STUDY_START.strftime("%H%M%S")
            ds.TriggerTime = _decimal(TRIGGER_DELAY_MS + TRIGGER_DELAY_STEP_MS * k)
            if proton_density[n]:
                ds.FlipAngle = _decimal(PROTON_DENSITY_FLIP_ANGLE_DEG)
                ds.SequenceVariant = ["SP"]
                ds.ScanOptions = ""
                ds.ImageComments = "proton density"
            else:
                ds.FlipAngle = _decimal(acquisition["flip_angle_nominal_deg"])
                ds.InversionTime = _decimal(1000.0 * acquisition["saturation_time_s"])
            ds.ImagePositionPatient = [_decimal(v) for v in positions[k]]
            ds.ImageOrientationPatient = [_decimal(v) for v in orientation]
            ds.SliceLocation = _decimal(float(np.dot(positions[k], normal)))
            ds.PixelSpacing = [_decimal(v) for v in spacing]
            ds.Rows, ds.Columns = int(stored.shape[2]), int(stored.shape[3])
            ds.RescaleSlope = _decimal(slope, 8)
            ds.RescaleIntercept = "0"
            ds.RescaleType = "US"
            ds.WindowCenter = _decimal(0.5 * STORED_MAXIMUM * slope)
            ds.WindowWidth = _decimal(STORED_MAXIMUM * slope)
            ds.PixelData = stored[n, k].tobytes()
            path = os.path.join(series_folder, "IM_{:04d}.dcm".format(instance))
            ds.save_as(path, enforce_file_format=True)
            paths[k][n] = path
            del ds.PixelData
            datasets[k][n] = ds
    segmentation = os.path.join(output_dir, SEGMENTATION_FILE)
    first_saturated = int(np.argmax(~proton_density))
    from .seg import write_roi_segmentation

    write_roi_segmentation(segmentation, [datasets[k][first_saturated] for k in range(n_slices)],
                           [(K.LV_BLOOD_POOL_SEGMENT_NAME, phantom.lv_blood_mask),
                            (K.MYOCARDIUM_SEGMENT_NAME, phantom.myocardium_mask)],
                           series_uid=_uid(phantom, layout, "segmentation series"),
                           sop_uid=_uid(phantom, layout, "segmentation"))
    return {"perfusion": folder, "segmentation": segmentation, "images": paths}

"""A folder of DICOM MR images read as one perfusion study (pydicom only; runs inside Slicer too).

What the reader does, in order:

1. Every file under the folder is read with pydicom.  Files that are not
   DICOM (a README, a ``DICOMDIR`` index) are skipped and counted; a DICOM
   object that is not an MR image (a CT, a segmentation, a report) is an
   error, as is a folder without any MR image.
2. Each image becomes one frame record: a classic MR image is one frame, an
   enhanced (multi-frame) MR image gives one record per frame from its
   functional groups.
3. The records must come from one study and one frame of reference, share
   one orientation, pixel grid and field strength, and not repeat an image.
4. Frames are grouped into slices by their position along the slice normal,
   within each series.  Both layouts are accepted: one series per slice (as
   Siemens often exports perfusion) or all slices in one series.  A slice
   position held by two series, or slices with different numbers of frames,
   mean the folder mixes series (e.g. rest and stress).
5. Within a slice, frames are ordered by acquisition time
   (``FRAME_TIME_SOURCES``).  ``TriggerTime`` is the delay after the R wave,
   which repeats every heartbeat, so it is used only when it increases
   strictly over a slice's frames (a cumulative time, as some vendors store
   it); otherwise, with no acquisition time either, the timing is missing.
6. The acquisition values come from the header of the saturation-recovery
   frames (``acquisition_header``), and the leading frames that the header
   marks as proton-density frames are counted (``header_proton_density_frames``);
   ``proton_density`` decides with the images which frames to leave out.

Geometry.  DICOM positions are LPS millimetres; the reader returns RAS, with
``ijk_to_ras`` mapping ``(column i, row j, slice k, 1)`` as in the rest of
the package.  A single slice's third axis is its normal scaled by the slice
thickness (``SpacingBetweenSlices`` or ``SliceThickness``).
"""

import datetime
import os
from collections import Counter
from typing import NamedTuple, Optional

import numpy as np

from ..errors import AIAIFInputError

#: SOP classes read as perfusion images.
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
MR_SOP_CLASSES = (MR_IMAGE_STORAGE, ENHANCED_MR_IMAGE_STORAGE)

#: Where frame times come from, first that every frame has.
FRAME_TIME_SOURCES = ("FrameAcquisitionDateTime", "AcquisitionDateTime", "AcquisitionDate+AcquisitionTime",
                      "AcquisitionTime", "TriggerTime")

#: Tolerances of the geometry checks (project choices).  Direction cosines
#: may differ by this much (rounding of the decimal strings DICOM stores);
#: pixel sizes by this fraction; frames closer than this fraction of a pixel
#: along the slice normal are one slice position, and slices may be offset
#: in-plane by this fraction of a pixel.
ORIENTATION_TOLERANCE = 1e-3
SPACING_TOLERANCE = 1e-3
SAME_POSITION_PIXEL_FRACTION = 0.1
IN_PLANE_OFFSET_PIXEL_FRACTION = 0.1

#: Plausible range of a FLASH readout's repetition time, ms (project choice:
#: perfusion readouts use 1.5-5 ms; some vendors store the time per slice
#: or per heartbeat as RepetitionTime, which is not the readout TR and is
#: then left out with a note).
READOUT_TR_RANGE_MS = (1.0, 20.0)
#: Plausible range of a saturation delay stored as InversionTime, ms
#: (project choice: perfusion saturation times are 20-300 ms).
SATURATION_DELAY_RANGE_MS = (10.0, 400.0)
#: A MagneticFieldStrength above this is taken as gauss, not tesla (some
#: old headers store 15000 for 1.5 T).
FIELD_STRENGTH_GAUSS_ABOVE = 100.0

#: Seconds in a day: frame times given without a date that run past
#: midnight are unwrapped.
_DAY_S = 86400.0
#: Dates are counted from 2000-01-01, so that seconds keep microseconds in a float.
_DATE_ORIGIN = datetime.date(2000, 1, 1).toordinal()


class SliceFrames(NamedTuple):
    """The frames of one slice position, ordered by acquisition time.

    Attributes
    ----------
    frames : numpy.ndarray, shape (n_frames, rows, columns), float32
        Pixel values after the modality rescale (RescaleSlope/Intercept).
    times_s : numpy.ndarray, shape (n_frames,)
        Acquisition time of each frame, s, from the study's earliest frame.
    ijk_to_ras : numpy.ndarray, shape (4, 4)
        Voxel (column i, row j, slice k, 1) to RAS mm; k is the slice normal
        times the slice thickness.
    position_mm : float
        Position along the stack's slice normal, mm.
    series_uid : str
        SeriesInstanceUID the slice came from.
    paths : tuple of str
        File of each frame.
    frame_numbers : tuple of int or None
        Frame of each record in a multi-frame file (None for single frames).
    header_proton_density : tuple of bool
        Per frame: the header marks it as a proton-density frame (another
        flip angle, or no saturation delay where the others have one).
    """

    frames: np.ndarray
    times_s: np.ndarray
    ijk_to_ras: np.ndarray
    position_mm: float
    series_uid: str
    paths: tuple
    frame_numbers: tuple
    header_proton_density: tuple


class DicomPerfusion(NamedTuple):
    """A perfusion study read from DICOM.

    Attributes
    ----------
    slices : list of SliceFrames
        One per slice position, ordered along the slice normal.
    header : dict
        Acquisition values for ``acquisition.resolve_acquisition`` (keys
        ``field_strength_t``, ``repetition_time_s``, ``flip_angle_deg``,
        ``saturation_time_s``), only those the header holds.
    notes : dict
        JSON-ready account for ``summary.json``: folder, layout, series,
        frame-time source, values read but not used and why.
    """

    slices: list
    header: dict
    notes: dict

    @property
    def header_proton_density_frames(self):
        """Leading frames the header marks as proton-density frames (the same in every slice, else the least)."""
        counts = []
        for item in self.slices:
            flags = list(item.header_proton_density) + [False]
            counts.append(flags.index(False))
        return min(counts) if counts else 0


class _Frame(NamedTuple):
    """One image frame and the header values the reader needs."""

    path: str
    frame_number: Optional[int]
    dataset: object
    sop_uid: str
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    rows: int
    columns: int
    orientation: tuple
    position_lps: tuple
    spacing: tuple
    thickness_mm: Optional[float]
    times: dict
    field_strength_t: Optional[float]
    repetition_time_ms: Optional[float]
    echo_time_ms: Optional[float]
    flip_angle_deg: Optional[float]
    inversion_time_ms: Optional[float]
    order: tuple


def _refuse(problem, fix):
    raise AIAIFInputError("{}; {}.".format(problem, fix))


def _number(value):
    """A DICOM number (DS, IS, FL or a one-value list) as float, None when absent or not finite."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        if len(value) == 0:
            return None
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _numbers(value, count):
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and np.all(np.isfinite(numbers)) else None


def seconds_of_day(text):
    """A DICOM TM value (``HHMMSS.FFFFFF``, also ``HH:MM:SS``) as seconds since midnight; None if unreadable."""
    text = str(text or "").strip().replace(":", "")
    if not text:
        return None
    whole, _, fraction = text.partition(".")
    if not whole.isdigit() or len(whole) not in (2, 4, 6) or (fraction and not fraction.isdigit()):
        return None
    hours, minutes, seconds = int(whole[0:2]), int(whole[2:4] or 0), int(whole[4:6] or 0)
    if hours > 23 or minutes > 59 or seconds > 60:
        return None
    return hours * 3600.0 + minutes * 60.0 + seconds + (float("0." + fraction) if fraction else 0.0)


def _day_s(date_text):
    """Seconds from ``_DATE_ORIGIN`` to the start of a DICOM DA date (``YYYYMMDD``); None if unreadable."""
    text = str(date_text or "").strip().replace(".", "")
    try:
        return (datetime.date(int(text[0:4]), int(text[4:6]), int(text[6:8])).toordinal() - _DATE_ORIGIN) * _DAY_S
    except (ValueError, IndexError):
        return None


def date_time_s(text):
    """A DICOM DT value (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``) as seconds from ``_DATE_ORIGIN``; None if unreadable.

    A time-zone offset is ignored: every frame of one study shares it.
    """
    text = str(text or "").strip()
    for sign in "+-":
        if sign in text[8:]:
            text = text[:8] + text[8:].split(sign)[0]
    day = _day_s(text[:8])
    if day is None:
        return None
    clock = text[8:]
    seconds = seconds_of_day(clock) if clock else 0.0
    return None if seconds is None else day + seconds


def _item(sequence):
    """The first item of a DICOM sequence, or None."""
    if sequence is None:
        return None
    try:
        return sequence[0] if len(sequence) else None
    except TypeError:
        return None


def _functional(dataset, frame_number, sequence_keyword, attribute):
    """An attribute of an enhanced image's frame: per-frame functional group first, then the shared one."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame_number), ("SharedFunctionalGroupsSequence", 0)):
        container = getattr(dataset, groups, None)
        if container is None or index >= len(container):
            continue
        item = _item(getattr(container[index], sequence_keyword, None))
        if item is not None and attribute in item:
            return item.get(attribute)
    return None


def _classic_frame(path, dataset):
    times = {"AcquisitionDateTime": date_time_s(dataset.get("AcquisitionDateTime")),
             "AcquisitionTime": seconds_of_day(dataset.get("AcquisitionTime")),
             "TriggerTime": _number(dataset.get("TriggerTime"))}
    date = _day_s(dataset.get("AcquisitionDate"))
    if date is not None and times["AcquisitionTime"] is not None:
        times["AcquisitionDate+AcquisitionTime"] = date + times["AcquisitionTime"]
    return _Frame(
        path=path, frame_number=None, dataset=dataset, sop_uid=str(dataset.get("SOPInstanceUID", "")),
        series_uid=str(dataset.get("SeriesInstanceUID", "")), study_uid=str(dataset.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(dataset.get("FrameOfReferenceUID", "")), rows=int(dataset.get("Rows", 0)),
        columns=int(dataset.get("Columns", 0)),
        orientation=_numbers(dataset.get("ImageOrientationPatient", ()), 6),
        position_lps=_numbers(dataset.get("ImagePositionPatient", ()), 3),
        spacing=_numbers(dataset.get("PixelSpacing", ()), 2),
        thickness_mm=_number(dataset.get("SpacingBetweenSlices")) or _number(dataset.get("SliceThickness")),
        times=times, field_strength_t=_number(dataset.get("MagneticFieldStrength")),
        repetition_time_ms=_number(dataset.get("RepetitionTime")), echo_time_ms=_number(dataset.get("EchoTime")),
        flip_angle_deg=_number(dataset.get("FlipAngle")), inversion_time_ms=_number(dataset.get("InversionTime")),
        order=(_number(dataset.get("TemporalPositionIdentifier")) or 0, _number(dataset.get("InstanceNumber")) or 0))


def _enhanced_frames(path, dataset):
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    frames = []
    for number in range(count):
        def value(sequence, attribute, n=number):
            return _functional(dataset, n, sequence, attribute)

        acquired = value("FrameContentSequence", "FrameAcquisitionDateTime")
        times = {"FrameAcquisitionDateTime": date_time_s(acquired) if acquired else None,
                 "TriggerTime": _number(value("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"))}
        flip = value("MRTimingAndRelatedParametersSequence", "FlipAngle")
        inversion = value("MRModifierSequence", "InversionTimes")
        frames.append(_Frame(
            path=path, frame_number=number, dataset=dataset, sop_uid="{}#{}".format(dataset.get("SOPInstanceUID", ""),
                                                                                   number),
            series_uid=str(dataset.get("SeriesInstanceUID", "")), study_uid=str(dataset.get("StudyInstanceUID", "")),
            frame_of_reference_uid=str(dataset.get("FrameOfReferenceUID", "")), rows=int(dataset.get("Rows", 0)),
            columns=int(dataset.get("Columns", 0)),
            orientation=_numbers(value("PlaneOrientationSequence", "ImageOrientationPatient") or (), 6),
            position_lps=_numbers(value("PlanePositionSequence", "ImagePositionPatient") or (), 3),
            spacing=_numbers(value("PixelMeasuresSequence", "PixelSpacing") or (), 2),
            thickness_mm=(_number(value("PixelMeasuresSequence", "SpacingBetweenSlices"))
                          or _number(value("PixelMeasuresSequence", "SliceThickness"))),
            times=times, field_strength_t=_number(dataset.get("MagneticFieldStrength")),
            repetition_time_ms=_number(value("MRTimingAndRelatedParametersSequence", "RepetitionTime")),
            echo_time_ms=_number(value("MREchoSequence", "EffectiveEchoTime")),
            flip_angle_deg=_number(flip), inversion_time_ms=_number(inversion),
            order=(_number(value("FrameContentSequence", "TemporalPositionIndex")) or 0, number)))
    return frames


def _read_frames(folder):
    """Frame records of every MR image under ``folder``; the number of non-DICOM files skipped."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    records, skipped = [], 0
    paths = []
    for directory, subdirectories, names in os.walk(folder):
        subdirectories.sort()
        paths.extend(os.path.join(directory, name) for name in sorted(names) if not name.startswith("."))
    for path in paths:
        try:
            dataset = pydicom.dcmread(path)
        except (InvalidDicomError, EOFError, OSError):
            skipped += 1
            continue
        except Exception as error:  # a damaged DICOM file: pydicom raises assorted errors
            _refuse("The DICOM file {} cannot be read ({})".format(path, str(error).splitlines()[0][:80] if str(error)
                                                                    else type(error).__name__),
                    "remove or replace the damaged file")
        sop_class = str(dataset.get("SOPClassUID", ""))
        if sop_class == "1.2.840.10008.1.3.10" or "DirectoryRecordSequence" in dataset:
            skipped += 1  # a DICOMDIR index
            continue
        if sop_class not in MR_SOP_CLASSES:
            modality = str(dataset.get("Modality", "")) or "unknown"
            name = getattr(getattr(dataset.get("SOPClassUID"), "name", None), "__str__", lambda: sop_class)()
            _refuse("The perfusion folder holds a {} object that is not an MR image ({}): {}".format(
                modality, name or "no SOP class", path),
                "keep only the MR images of the perfusion series in the folder")
        if "PixelData" not in dataset:
            _refuse("The MR file {} holds no pixel data".format(path), "export the images with their pixels")
        if sop_class == ENHANCED_MR_IMAGE_STORAGE:
            records.extend(_enhanced_frames(path, dataset))
        else:
            records.append(_classic_frame(path, dataset))
    return records, skipped


def _check_one(records, attribute, what, fix):
    values = {getattr(record, attribute) for record in records}
    if len(values) > 1:
        first = records[0]
        other = next(record for record in records if getattr(record, attribute) != getattr(first, attribute))
        _refuse("The perfusion folder mixes {}: {} and {} differ".format(what, _where(first), _where(other)), fix)


def _where(record):
    return os.path.basename(record.path) + ("" if record.frame_number is None else
                                            " (frame {})".format(record.frame_number + 1))


def _check_geometry(records):
    """Every frame on one orientation and pixel grid; returns (row direction, column direction, normal) in LPS."""
    for record in records:
        if record.orientation is None or record.position_lps is None or record.spacing is None:
            missing = ("ImageOrientationPatient" if record.orientation is None else
                       "ImagePositionPatient" if record.position_lps is None else "PixelSpacing")
            _refuse("The MR image {} has no {}, so its position in the patient is unknown".format(
                record.path, missing), "export the images with their geometry (the scanner's DICOM export)")
        if record.rows < 2 or record.columns < 2:
            _refuse("The MR image {} has {} x {} pixels".format(record.path, record.rows, record.columns),
                    "keep only the perfusion images in the folder")
    first = records[0]
    fix = "keep only the images of one perfusion acquisition in the folder"
    for record in records[1:]:
        if (record.rows, record.columns) != (first.rows, first.columns):
            _refuse("The perfusion images have inconsistent geometry: {} has {} x {} pixels but {} has {} x {}".format(
                _where(record), record.rows, record.columns, _where(first), first.rows, first.columns), fix)
        if np.max(np.abs(np.subtract(record.orientation, first.orientation))) > ORIENTATION_TOLERANCE:
            _refuse("The perfusion images have inconsistent geometry: {} and {} are oriented differently "
                    "(ImageOrientationPatient)".format(_where(first), _where(record)), fix)
        if np.max(np.abs(np.subtract(record.spacing, first.spacing))) > SPACING_TOLERANCE * min(first.spacing):
            _refuse("The perfusion images have inconsistent geometry: {} and {} have different pixel sizes".format(
                _where(first), _where(record)), fix)
    row = np.array(first.orientation[:3])
    column = np.array(first.orientation[3:])
    row /= np.linalg.norm(row)
    column /= np.linalg.norm(column)
    return row, column, np.cross(row, column)


def _slice_positions(records, row, column, normal, spacing):
    """Group frame indices by series and position along ``normal``; check in-plane offsets."""
    pixel = min(spacing)
    along = np.array([np.dot(record.position_lps, normal) for record in records])
    first = np.array(records[0].position_lps)
    for record in records:
        offset = np.subtract(record.position_lps, first)
        in_plane = offset - np.dot(offset, normal) * normal
        if np.linalg.norm(in_plane) > IN_PLANE_OFFSET_PIXEL_FRACTION * pixel:
            _refuse("The perfusion images have inconsistent geometry: {} is shifted {:.2f} mm in-plane from {}".format(
                _where(record), float(np.linalg.norm(in_plane)), _where(records[0])),
                "keep only the images of one short-axis stack in the folder")
    groups = {}
    for index, (record, position) in enumerate(zip(records, along)):
        key = None
        for series, centre in groups:
            if series == record.series_uid and abs(centre - position) <= SAME_POSITION_PIXEL_FRACTION * pixel:
                key = (series, centre)
                break
        groups.setdefault(key or (record.series_uid, float(position)), []).append(index)
    ordered = sorted(groups.items(), key=lambda item: item[0][1])
    for (series, position), (other_series, other_position) in zip([key for key, _ in ordered][:-1],
                                                                  [key for key, _ in ordered][1:]):
        if abs(other_position - position) <= SAME_POSITION_PIXEL_FRACTION * pixel:
            a, b = records[groups[(series, position)][0]], records[groups[(other_series, other_position)][0]]
            _refuse("The perfusion folder mixes series: {} and {} both image the slice at {:.1f} mm (series {} and "
                    "{})".format(_where(a), _where(b), position, _short_uid(series), _short_uid(other_series)),
                    "keep one perfusion series (e.g. only the stress acquisition) in the folder")
    return ordered


def _short_uid(uid):
    return "..." + uid[-8:] if len(uid) > 12 else uid


def _frame_times(records, slices):
    """(times per slice, source name): the first source in ``FRAME_TIME_SOURCES`` every frame has."""
    for source in FRAME_TIME_SOURCES:
        if not all(records[i].times.get(source) is not None for _, indices in slices for i in indices):
            continue
        times = [np.array([records[i].times[source] for i in indices], dtype=float) for _, indices in slices]
        if source == "TriggerTime":
            ordered = [np.array([records[i].times[source] for i in sorted(indices, key=lambda i: records[i].order)])
                       for _, indices in slices]
            if not all(np.all(np.diff(values) > 0) for values in ordered):
                continue  # a delay after each R wave, not a time of the series
            times = [values / 1000.0 for values in times]
        if source == "AcquisitionTime":
            everything = np.concatenate(times)
            if everything.max() - everything.min() > _DAY_S / 2:  # past midnight, without a date
                times = [np.where(values < _DAY_S / 2, values + _DAY_S, values) for values in times]
        return times, source
    record = next((records[i] for _, indices in slices for i in indices
                   if all(records[i].times.get(source) is None for source in FRAME_TIME_SOURCES[:-1])), records[0])
    _refuse("The perfusion images have no usable frame times: {} has no acquisition time (AcquisitionTime, "
            "AcquisitionDateTime or the enhanced frame content) and TriggerTime does not increase over the "
            "frames".format(_where(record)),
            "export the series with its acquisition times, or convert it to a .seq.nrrd with frame times")


def _majority(values):
    """The most common value (grouped to 6 decimals), as given; None when there is none."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    key = Counter(round(v, 6) for v in values).most_common(1)[0][0]
    return next(v for v in values if round(v, 6) == key)


def _header_proton_density(records, indices):
    """Per frame of one slice (time order): the header marks it as a proton-density frame."""
    flips = [records[i].flip_angle_deg for i in indices]
    delays = [records[i].inversion_time_ms for i in indices]
    usual_flip = _majority(flips)
    usual_delay_present = sum(d is not None for d in delays) > len(delays) / 2
    flags = []
    for flip, delay in zip(flips, delays):
        other_flip = flip is not None and usual_flip is not None and abs(flip - usual_flip) > 0.5
        no_delay = usual_delay_present and delay is None
        flags.append(bool(other_flip or no_delay))
    return tuple(flags)


def acquisition_header(records, notes):
    """Acquisition values of the saturation-recovery frames, for ``acquisition.resolve_acquisition``.

    ``notes`` receives values read but not used, and why.
    """
    header = {}
    field = _majority([r.field_strength_t for r in records])
    if field is not None and field > 0:
        if field > FIELD_STRENGTH_GAUSS_ABOVE:
            notes["field_strength_note"] = "MagneticFieldStrength {:g} read as gauss".format(field)
            field /= 10000.0
        header["field_strength_t"] = field
    tr = _majority([r.repetition_time_ms for r in records])
    if tr is not None:
        if READOUT_TR_RANGE_MS[0] <= tr <= READOUT_TR_RANGE_MS[1]:
            header["repetition_time_s"] = tr / 1000.0
        else:
            notes["repetition_time_note"] = (
                "RepetitionTime {:g} ms is no FLASH readout TR ({:g}-{:g} ms; a time per slice or heartbeat?), so "
                "it was not used".format(tr, *READOUT_TR_RANGE_MS))
    flip = _majority([r.flip_angle_deg for r in records])
    if flip is not None and 0 < flip <= 90:
        header["flip_angle_deg"] = flip
    delay = _majority([r.inversion_time_ms for r in records])
    if delay is not None:
        if SATURATION_DELAY_RANGE_MS[0] <= delay <= SATURATION_DELAY_RANGE_MS[1]:
            header["saturation_time_s"] = delay / 1000.0
            notes["saturation_time_from"] = "InversionTime (the saturation delay)"
        else:
            notes["saturation_time_note"] = ("InversionTime {:g} ms is outside the saturation times of perfusion "
                                             "({:g}-{:g} ms), so it was not used".format(
                                                 delay, *SATURATION_DELAY_RANGE_MS))
    echo = _majority([r.echo_time_ms for r in records])
    if echo is not None:
        notes["echo_time_s"] = echo / 1000.0
        notes["echo_time_note"] = "read, not used: the signal model treats T2* decay as part of the signal scale"
    return header


def _pixels(record):
    """Pixel values of one frame after the modality rescale, float32 (rows, columns)."""
    dataset = record.dataset
    try:
        values = dataset.pixel_array
    except Exception as error:  # pydicom raises assorted errors for damaged or undecodable pixel data
        _refuse("The pixel data of {} cannot be decoded ({})".format(record.path, type(error).__name__),
                "export the images uncompressed or install the decoder for their transfer syntax")
    if record.frame_number is not None:
        values = values[record.frame_number] if values.ndim == 3 else values
        slope = _number(_functional(dataset, record.frame_number, "PixelValueTransformationSequence",
                                    "RescaleSlope"))
        intercept = _number(_functional(dataset, record.frame_number, "PixelValueTransformationSequence",
                                        "RescaleIntercept"))
    else:
        slope, intercept = _number(dataset.get("RescaleSlope")), _number(dataset.get("RescaleIntercept"))
    if values.shape != (record.rows, record.columns):
        _refuse("The pixel data of {} do not match its {} x {} pixels".format(record.path, record.rows,
                                                                              record.columns),
                "remove or replace the damaged file")
    values = values.astype(np.float32)
    if slope is not None and slope != 1.0:
        values *= np.float32(slope)
    if intercept:
        values += np.float32(intercept)
    return values


def _ijk_to_ras(record, row, column, normal):
    """Voxel (i, j, k) to RAS of one slice: columns along the row direction, rows along the column direction."""
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    spacing_row, spacing_column = record.spacing  # DICOM: between rows, then between columns
    thickness = record.thickness_mm if record.thickness_mm and record.thickness_mm > 0 else min(record.spacing)
    matrix = np.eye(4)
    matrix[:3, 0] = lps_to_ras @ row * spacing_column
    matrix[:3, 1] = lps_to_ras @ column * spacing_row
    matrix[:3, 2] = lps_to_ras @ normal * thickness
    matrix[:3, 3] = lps_to_ras @ np.asarray(record.position_lps)
    return matrix


def read_perfusion_folder(folder):
    """Read a folder of DICOM MR images as one perfusion study.

    Parameters
    ----------
    folder : str or os.PathLike
        Folder (searched recursively) holding the perfusion series: one series
        per slice, or one series with every slice.

    Returns
    -------
    DicomPerfusion
        The slices in order along their normal, each with its frames in time
        order, the acquisition header and notes for the summary.

    Raises
    ------
    AIAIFInputError
        For a folder without MR images, a non-MR object or a damaged file in
        it, images of two studies or frames of reference (mixed series), a
        slice imaged by two series, slices with different numbers of frames,
        inconsistent geometry (orientation, pixel grid, in-plane position),
        two images of a slice at one time, or missing frame times.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        _refuse("The DICOM folder {} does not exist".format(folder), "pass the folder of the perfusion series")
    records, skipped = _read_frames(folder)
    if not records:
        _refuse("The perfusion folder {} holds no DICOM MR images{}".format(
            folder, " ({} other files)".format(skipped) if skipped else ""),
            "pass the folder of the perfusion series or a .seq.nrrd volume sequence")
    fix = "keep only the images of one perfusion acquisition in the folder"
    _check_one(records, "study_uid", "two studies (StudyInstanceUID)", fix)
    _check_one(records, "frame_of_reference_uid", "two frames of reference (FrameOfReferenceUID)", fix)
    seen = {}
    for record in records:
        if record.sop_uid and record.sop_uid in seen:
            _refuse("The perfusion folder holds the same image twice: {} and {}".format(
                _where(seen[record.sop_uid]), _where(record)), "remove the copy")
        seen[record.sop_uid] = record
    fields = {round(r.field_strength_t, 3) for r in records if r.field_strength_t is not None}
    if len(fields) > 1:
        _refuse("The perfusion folder mixes series of different field strengths ({} T)".format(
            " and ".join("{:g}".format(f) for f in sorted(fields))), fix)
    row, column, normal = _check_geometry(records)
    slices = _slice_positions(records, row, column, normal, records[0].spacing)
    counts = [len(indices) for _, indices in slices]
    if len(set(counts)) > 1:
        small = int(np.argmin(counts))
        large = int(np.argmax(counts))
        _refuse("The perfusion folder mixes series: the slice at {:.1f} mm has {} frames but the slice at {:.1f} mm "
                "has {}".format(slices[small][0][1], counts[small], slices[large][0][1], counts[large]), fix)
    times, time_source = _frame_times(records, slices)
    origin = min(float(values.min()) for values in times)
    result = []
    for ((series, position), indices), values in zip(slices, times):
        order = sorted(range(len(indices)), key=lambda n: (values[n], records[indices[n]].order))
        indices = [indices[n] for n in order]
        values = values[order]
        repeated = np.flatnonzero(np.diff(values) <= 0)
        if repeated.size:
            a, b = records[indices[repeated[0]]], records[indices[repeated[0] + 1]]
            _refuse("Two images of the slice at {:.1f} mm have the same {} ({} and {}), so the folder mixes "
                    "series or repeats frames".format(position, time_source, _where(a), _where(b)), fix)
        reference = records[indices[0]]
        result.append(SliceFrames(
            frames=np.stack([_pixels(records[i]) for i in indices]),
            times_s=values - origin,
            ijk_to_ras=_ijk_to_ras(reference, row, column, normal),
            position_mm=float(position),
            series_uid=series,
            paths=tuple(records[i].path for i in indices),
            frame_numbers=tuple(records[i].frame_number for i in indices),
            header_proton_density=_header_proton_density(records, indices)))
    series_uids = sorted({item.series_uid for item in result})
    notes = {
        "dicom_folder": os.path.abspath(folder),
        "layout": ("single-series" if len(series_uids) == 1 and len(result) > 1 else
                   "per-slice" if len(series_uids) == len(result) and len(result) > 1 else
                   "one slice" if len(result) == 1 else "{} series".format(len(series_uids))),
        "series_instance_uids": series_uids,
        "n_images": len(records),
        "frame_times_from_dicom": time_source,
    }
    if skipped:
        notes["non_dicom_files_skipped"] = skipped
    lookup = {(record.path, record.frame_number): record for record in records}
    saturation_recovery = [lookup[(path, number)] for item in result
                           for path, number, flag in zip(item.paths, item.frame_numbers, item.header_proton_density)
                           if not flag]
    header = acquisition_header(saturation_recovery or records, notes)
    return DicomPerfusion(slices=result, header=header, notes=notes)

"""The ROIs as a DICOM Segmentation (highdicom): written for the phantom, read back as masks with geometry.

A DICOM SEG stores each segment's mask per image plane, with the plane's
position and orientation.  ``read_roi_segmentation`` returns the masks on a
regular grid of those planes (RAS, ``ijk_to_ras``), which the MRML adapter
turns into a segmentation node and resamples onto the perfusion frames like
any ``.seg.nrrd``.  highdicom is imported here only (stock Slicer has none);
inside Slicer a SEG is loaded by Slicer's own DICOM plugins.
"""

import os

import numpy as np

from .. import __version__
from .. import constants as K
from ..errors import AIAIFInputError

#: Planes of a SEG may be spaced unevenly by this fraction of the mean step
#: and still form one grid (project choice, as for the perfusion stack).
UNEVEN_PLANE_FRACTION = 0.1


def _segment_codes(name):
    """(category, type, anatomic regions) codes of an ROI segment."""
    from pydicom.sr.codedict import codes

    if name == K.MYOCARDIUM_SEGMENT_NAME:
        return codes.SCT.AnatomicalStructure, codes.SCT.LeftVentricleMyocardium, None
    return codes.SCT.AnatomicalStructure, codes.SCT.Blood, [codes.SCT.LeftVentricle]


def write_roi_segmentation(path, source_datasets, segments, series_uid, sop_uid):
    """Write masks on the planes of ``source_datasets`` as a binary DICOM SEG.

    Parameters
    ----------
    path : str
        File to write.
    source_datasets : list of pydicom.Dataset
        One MR image per slice (pixel data not needed), in the order of the
        masks' slice axis; they may come from several series (one per slice).
    segments : list of (str, numpy.ndarray of bool, shape (n_slices, rows, columns))
        Segment label and mask.
    series_uid, sop_uid : str
        UIDs of the new series and object.
    """
    import highdicom as hd

    plane_positions = [hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT,
                                                [float(v) for v in ds.ImagePositionPatient])
                       for ds in source_datasets]
    first = source_datasets[0]
    orientation = hd.PlaneOrientationSequence(hd.CoordinateSystemNames.PATIENT,
                                              [float(v) for v in first.ImageOrientationPatient])
    measures = hd.PixelMeasuresSequence([float(v) for v in first.PixelSpacing], float(first.SliceThickness))
    descriptions = []
    for number, (label, _) in enumerate(segments, start=1):
        category, kind, regions = _segment_codes(label)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=label, segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            anatomic_regions=regions))
    pixels = np.stack([np.asarray(mask, dtype=bool) for _, mask in segments], axis=-1)
    same_series = [ds for ds in source_datasets if ds.SeriesInstanceUID == first.SeriesInstanceUID]
    others = [ds for ds in source_datasets if ds.SeriesInstanceUID != first.SeriesInstanceUID]
    seg = hd.seg.Segmentation(
        source_images=same_series, further_source_images=others or None, pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=series_uid, series_number=2001, sop_instance_uid=sop_uid, instance_number=1,
        manufacturer="AI-AIF", manufacturer_model_name="AI-AIF", software_versions=__version__,
        device_serial_number="0", plane_positions=plane_positions, plane_orientation=orientation,
        pixel_measures=measures, omit_empty_frames=False, content_label="ROIS",
        series_description="AI-AIF ROIs")
    seg.save_as(path)
    return path


def _refuse(path, problem, fix):
    raise AIAIFInputError("The DICOM segmentation {} {}; {}.".format(path, problem, fix))


def read_roi_segmentation(path):
    """Masks of a DICOM SEG on the regular grid of its planes.

    Parameters
    ----------
    path : str or os.PathLike
        A DICOM Segmentation file (binary or fractional; fractional masks
        are thresholded at half their maximum).

    Returns
    -------
    segments : list of (str, numpy.ndarray of bool, shape (n_planes, rows, columns))
        Segment label and mask, planes ordered along their normal.
    ijk_to_ras : numpy.ndarray, shape (4, 4)
        Voxel (column i, row j, plane k, 1) to RAS mm of the masks.

    Raises
    ------
    AIAIFInputError
        For a file that is not a DICOM SEG, one without plane positions, or
        planes that are not parallel or not evenly spaced.
    """
    import highdicom as hd
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = os.fspath(path)
    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError) as error:
        _refuse(path, "is not a DICOM file ({})".format(type(error).__name__),
                "pass a DICOM SEG or a .seg.nrrd segmentation")
    if str(dataset.get("SOPClassUID", "")) not in hd.seg.SOP_CLASS_UIDS:
        _refuse(path, "is a {} object, not a segmentation".format(dataset.get("Modality", "non-SEG")),
                "pass a DICOM SEG or a .seg.nrrd segmentation")
    try:
        hd.seg.Segmentation.from_dataset(dataset, copy=False)  # highdicom's checks of the SEG's structure
        pixels = np.asarray(dataset.pixel_array)
    except Exception as error:  # highdicom and pydicom raise assorted errors for damaged objects
        _refuse(path, "cannot be read ({})".format(str(error).splitlines()[0][:80] if str(error) else
                                                   type(error).__name__), "export the segmentation again")
    if pixels.ndim == 2:
        pixels = pixels[None]
    shared = dataset.get("SharedFunctionalGroupsSequence", [None])[0]
    frames = dataset.get("PerFrameFunctionalGroupsSequence", [])
    if len(frames) != pixels.shape[0]:
        _refuse(path, "has {} frames but {} frame descriptions".format(pixels.shape[0], len(frames)),
                "export the segmentation again")

    def group(frame, keyword):
        for container in (frame, shared):
            if container is not None and keyword in container:
                return container[keyword].value[0]
        return None

    records = []
    for frame, plane in zip(frames, pixels):
        position = group(frame, "PlanePositionSequence")
        orientation = group(frame, "PlaneOrientationSequence")
        measures = group(frame, "PixelMeasuresSequence")
        segment = group(frame, "SegmentIdentificationSequence")
        if position is None or orientation is None or measures is None or segment is None:
            _refuse(path, "has a frame without plane position, orientation, pixel size or segment number",
                    "export the segmentation with its geometry")
        records.append((int(segment.ReferencedSegmentNumber), np.array(position.ImagePositionPatient, float),
                        np.array(orientation.ImageOrientationPatient, float),
                        np.array(measures.PixelSpacing, float), plane))
    orientation, spacing = records[0][2], records[0][3]
    if any(np.max(np.abs(r[2] - orientation)) > 1e-3 for r in records):
        _refuse(path, "has planes of different orientations", "segment the short-axis slices of the perfusion series")
    row, column = orientation[:3] / np.linalg.norm(orientation[:3]), orientation[3:] / np.linalg.norm(orientation[3:])
    normal = np.cross(row, column)
    along = sorted({round(float(np.dot(r[1], normal)), 3) for r in records})
    steps = np.diff(along)
    if steps.size and np.max(np.abs(steps - steps.mean())) > UNEVEN_PLANE_FRACTION * steps.mean():
        _refuse(path, "has unevenly spaced planes ({} mm)".format(", ".join("{:.1f}".format(s) for s in steps)),
                "export the segmentation on evenly spaced slices, or save it from Slicer as a .seg.nrrd file")
    fractional = str(dataset.get("SegmentationType", "BINARY")).upper() == "FRACTIONAL"
    threshold = 0.5 * float(dataset.get("MaximumFractionalValue", 1)) if fractional else 0.5
    names = {int(item.SegmentNumber): str(item.SegmentLabel) for item in dataset.SegmentSequence}
    masks = {number: np.zeros((len(along), int(dataset.Rows), int(dataset.Columns)), bool) for number in names}
    lowest = None
    for number, position, _, _, plane in records:
        k = int(np.argmin(np.abs(np.array(along) - float(np.dot(position, normal)))))
        if number in masks:
            masks[number][k] |= plane > threshold
        if k == 0:
            lowest = position
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    step = float(steps.mean()) if steps.size else float(group(frames[0], "PixelMeasuresSequence").get(
        "SliceThickness", min(spacing)) or min(spacing))
    matrix = np.eye(4)
    matrix[:3, 0] = lps_to_ras @ row * spacing[1]
    matrix[:3, 1] = lps_to_ras @ column * spacing[0]
    matrix[:3, 2] = lps_to_ras @ normal * step
    matrix[:3, 3] = lps_to_ras @ lowest
    return [(names[number], masks[number]) for number in sorted(names)], matrix

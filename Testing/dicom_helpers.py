"""Helpers that damage a DICOM copy of a phantom as scanners and careless exports do (tests only)."""

import os

import pydicom


def edit_images(paths, edit, which=None):
    """Apply ``edit(dataset, slice, frame)`` to the image files of ``write_phantom_dicom``'s ``paths``.

    Only the files ``which(slice, frame)`` picks, or all; a file is saved
    again unless ``edit`` returns False.
    """
    for k, files in enumerate(paths["images"]):
        for n, path in enumerate(files):
            if which is None or which(k, n):
                dataset = pydicom.dcmread(path)
                if edit(dataset, k, n) is not False:
                    dataset.save_as(path)


def second_series_copy(paths, slice_index, destination, new_study=False):
    """Copy one slice's images as another series (new UIDs), as a folder holding rest and stress would."""
    from pydicom.uid import generate_uid

    series_uid, study_uid = generate_uid(), generate_uid()
    os.makedirs(destination)
    for n, path in enumerate(paths["images"][slice_index]):
        dataset = pydicom.dcmread(path)
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        if new_study:
            dataset.StudyInstanceUID = study_uid
        dataset.save_as(os.path.join(destination, "COPY_{:04d}.dcm".format(n)))


def strip_acquisition_times(dataset, k, n):
    """Leave an image without any acquisition time (its TriggerTime repeats every heartbeat)."""
    for keyword in ("AcquisitionTime", "AcquisitionDate", "AcquisitionDateTime"):
        if keyword in dataset:
            delattr(dataset, keyword)


def enhanced_copy(paths, destination):
    """Each slice's classic images as one Enhanced MR Image (multi-frame, functional groups), in ``destination``.

    Frame times go into the frame content (FrameAcquisitionDateTime), the
    geometry into the plane position and orientation, the flip angle and TR
    into the MR timing group and the rescale into the pixel value
    transformation, as scanners write enhanced MR.
    """
    import numpy as np
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from AIAIFLib.dicom_io.series import ENHANCED_MR_IMAGE_STORAGE

    os.makedirs(destination)
    for k, files in enumerate(paths["images"]):
        images = [pydicom.dcmread(path) for path in files]
        first = images[0]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ENHANCED_MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, Dataset(), file_meta=meta, preamble=b"\0" * 128)
        for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID", "Modality",
                        "MagneticFieldStrength", "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
                        "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
            setattr(ds, keyword, getattr(first, keyword))
        ds.SOPClassUID = ENHANCED_MR_IMAGE_STORAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = generate_uid()
        ds.NumberOfFrames = len(images)

        def item(**values):
            entry = Dataset()
            for name, value in values.items():
                setattr(entry, name, value)
            return Sequence([entry])

        shared = Dataset()
        shared.PlaneOrientationSequence = item(ImageOrientationPatient=first.ImageOrientationPatient)
        shared.PixelMeasuresSequence = item(PixelSpacing=first.PixelSpacing, SliceThickness=first.SliceThickness)
        shared.PixelValueTransformationSequence = item(RescaleSlope=first.RescaleSlope,
                                                       RescaleIntercept=first.RescaleIntercept, RescaleType="US")
        shared.MREchoSequence = item(EffectiveEchoTime=float(first.EchoTime))
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        frames = []
        for image in images:
            group = Dataset()
            group.FrameContentSequence = item(FrameAcquisitionDateTime=image.AcquisitionDate + image.AcquisitionTime)
            group.PlanePositionSequence = item(ImagePositionPatient=image.ImagePositionPatient)
            group.MRTimingAndRelatedParametersSequence = item(RepetitionTime=float(image.RepetitionTime),
                                                              FlipAngle=float(image.FlipAngle))
            if "InversionTime" in image:
                group.MRModifierSequence = item(InversionTimes=[float(image.InversionTime)])
            frames.append(group)
        ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
        ds.PixelData = np.stack([image.pixel_array for image in images]).astype(np.uint16).tobytes()
        ds.save_as(os.path.join(destination, "slice_{}.dcm".format(k + 1)), enforce_file_format=True)

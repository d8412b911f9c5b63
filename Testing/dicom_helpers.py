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

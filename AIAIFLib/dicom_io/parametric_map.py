"""The MBF map as a DICOM Parametric Map (highdicom), so that it opens in a PACS or OHIF.

The map is stored as 32-bit floats (``FloatPixelData``) in mL/min/g, with a
real-world value mapping (slope 1, intercept 0, unit UCUM ``mL/min/g``,
quantity "Absolute Regional Blood Flow"), one frame per short-axis slice on
the plane of the source slice it was computed from.  It references the
source images of every slice (one per slice: the first saturation-recovery
frame), also when each slice is its own series.  Pixels without a value (outside
the myocardium, failed fits) are NaN, as in ``mbf.nrrd``.

highdicom is imported inside these functions: it is a command-line
dependency, not bundled with Slicer.
"""

import numpy as np

from .. import __version__

#: File name of the Parametric Map in a quantification's output directory.
PARAMETRIC_MAP_FILE = "mbf.dcm"
#: UCUM code of the map's unit.
MBF_UNIT_UCUM = "mL/min/g"
#: Display window of the map, mL/min/g (project choice: 0-5 spans stress MBF).
WINDOW_ML_MIN_G = (0.0, 5.0)
#: A study slice and a source image are the same plane when their positions
#: along the normal differ by less than this, mm (decimal strings in DICOM).
SAME_PLANE_MM = 0.05


def _lps(vector):
    return np.asarray(vector, dtype=float) * np.array([-1.0, -1.0, 1.0])


def _source_for_each_slice(ijk_to_ras, n_slices, sources):
    """For each slice k of the map, the source image on its plane; checks the in-plane axes agree."""
    row = np.array([float(v) for v in sources[0].ImageOrientationPatient[:3]])
    column = np.array([float(v) for v in sources[0].ImageOrientationPatient[3:]])
    normal = np.cross(row, column)
    i_axis = _lps(ijk_to_ras[:3, 0])
    j_axis = _lps(ijk_to_ras[:3, 1])
    if (np.linalg.norm(i_axis / np.linalg.norm(i_axis) - row) > 1e-3
            or np.linalg.norm(j_axis / np.linalg.norm(j_axis) - column) > 1e-3):
        raise ValueError("the map's in-plane axes are not those of the source images")
    along = np.array([np.dot([float(v) for v in ds.ImagePositionPatient], normal) for ds in sources])
    chosen = []
    for k in range(n_slices):
        centre = _lps(ijk_to_ras[:3, 3] + k * ijk_to_ras[:3, 2])
        distances = np.abs(along - np.dot(centre, normal))
        nearest = int(np.argmin(distances))
        if distances[nearest] > SAME_PLANE_MM:
            raise ValueError("slice {} of the map lies on no source image's plane".format(k))
        chosen.append(sources[nearest])
    return chosen


def build_mbf_parametric_map(mbf_ml_min_g, ijk_to_ras, reference_images):
    """The MBF map as a highdicom ``ParametricMap`` dataset.

    Parameters
    ----------
    mbf_ml_min_g : numpy.ndarray, shape (n_slices, rows, columns)
        MBF map, mL/min/g, NaN where there is no value; indexed ``[k, j, i]``.
    ijk_to_ras : numpy.ndarray, shape (4, 4)
        Voxel (i, j, k, 1) to RAS mm of the map; each slice must lie on the
        plane of a reference image, with its rows and columns.
    reference_images : list of pydicom.Dataset
        One source MR image per slice (pixel data not needed), any order;
        they may come from several series of one study.

    Returns
    -------
    highdicom.pm.ParametricMap
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    values = np.asarray(mbf_ml_min_g, dtype=np.float32)
    sources = _source_for_each_slice(np.asarray(ijk_to_ras, dtype=float), values.shape[0], list(reference_images))
    first = sources[0]
    plane_positions = [hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT,
                                                [float(v) for v in ds.ImagePositionPatient]) for ds in sources]
    orientation = hd.PlaneOrientationSequence(hd.CoordinateSystemNames.PATIENT,
                                              [float(v) for v in first.ImageOrientationPatient])
    thickness = float(first.get("SliceThickness", 0) or 0) or float(np.linalg.norm(ijk_to_ras[:3, 2]))
    measures = hd.PixelMeasuresSequence([float(v) for v in first.PixelSpacing], thickness)
    finite = values[np.isfinite(values)]
    value_range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="MBF", lut_explanation="Stress myocardial blood flow",
        unit=hd.sr.CodedConcept(value=MBF_UNIT_UCUM, scheme_designator="UCUM",
                                meaning="milliliter per minute per gram"),
        value_range=value_range, slope=1.0, intercept=0.0, quantity_definition=codes.DCM.AbsoluteRegionalBloodFlow)
    same_series = [ds for ds in sources if ds.SeriesInstanceUID == first.SeriesInstanceUID]
    unique = {ds.SOPInstanceUID: ds for ds in same_series}
    others = {ds.SOPInstanceUID: ds for ds in sources if ds.SeriesInstanceUID != first.SeriesInstanceUID}
    low, high = WINDOW_ML_MIN_G
    return hd.pm.ParametricMap(
        source_images=list(unique.values()), further_source_images=list(others.values()) or None,
        pixel_array=values, series_instance_uid=generate_uid(), series_number=3001, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer="AI-AIF", manufacturer_model_name="AI-AIF", software_versions=__version__,
        device_serial_number="0", contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5 * (low + high), window_width=high - low)],
        plane_positions=plane_positions,
        plane_orientation=orientation, pixel_measures=measures, content_label="MBF",
        content_description="Stress MBF (mL/min/g), Fermi-constrained deconvolution, AI-AIF",
        series_description="AI-AIF stress MBF")


def write_mbf_parametric_map(path, mbf_ml_min_g, ijk_to_ras, reference_image_paths):
    """Write the MBF map as a DICOM Parametric Map file (``build_mbf_parametric_map``).

    Parameters
    ----------
    path : str
        File to write.
    mbf_ml_min_g, ijk_to_ras
        As for ``build_mbf_parametric_map``.
    reference_image_paths : list of str
        DICOM files of the source images, one per slice.

    Returns
    -------
    str
        ``path``.
    """
    import pydicom

    references = [pydicom.dcmread(name, stop_before_pixels=True) for name in reference_image_paths]
    build_mbf_parametric_map(mbf_ml_min_g, ijk_to_ras, references).save_as(path)
    return path


def read_mbf_parametric_map(path):
    """The values of a Parametric Map written by ``write_mbf_parametric_map``, read back with pydicom.

    Parameters
    ----------
    path : str
        The file.

    Returns
    -------
    mbf_ml_min_g : numpy.ndarray, shape (n_frames, rows, columns)
        Stored values through the real-world value mapping, mL/min/g.
    positions_lps : numpy.ndarray, shape (n_frames, 3)
        ImagePositionPatient of each frame, mm.
    unit : str
        The mapping's UCUM unit.
    """
    import pydicom

    dataset = pydicom.dcmread(path)
    values = np.asarray(dataset.pixel_array, dtype=np.float64)
    if values.ndim == 2:
        values = values[None]
    shared = dataset.SharedFunctionalGroupsSequence[0]
    mapping = shared.RealWorldValueMappingSequence[0]
    values = values * float(mapping.RealWorldValueSlope) + float(mapping.RealWorldValueIntercept)
    positions = np.array([[float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
                          for frame in dataset.PerFrameFunctionalGroupsSequence])
    return values, positions, str(mapping.MeasurementUnitsCodeSequence[0].CodeValue)

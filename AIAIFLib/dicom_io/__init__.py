"""DICOM in and out, with pydicom (bundled with Slicer) and, on command-line paths only, highdicom.

Modules, one concept each:

* ``series`` -- a folder of MR images read as a perfusion study: files
  grouped by series and slice position, frames ordered by acquisition time,
  geometry, and the acquisition values of the header (``read_perfusion_folder``);
* ``phantom`` -- a simulated phantom written as DICOM MR images with
  realistic headers, in one of two layouts (``write_phantom_dicom``);
* ``seg`` -- DICOM Segmentation objects written and read back as masks on
  their own geometry (highdicom);
* ``parametric_map`` -- the MBF map as a DICOM Parametric Map (highdicom)
  referencing the source images, in mL/min/g.

Nothing here imports Slicer.  highdicom is imported inside the functions
that need it, so ``series`` runs inside Slicer, which bundles pydicom but not
highdicom.
"""

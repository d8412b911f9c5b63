"""AI-AIF: the science of the 3D Slicer extension, importable without Slicer.

Modules (numpy in, numpy out; none imports ``slicer``, ``vtk`` or ``qt``):

* ``constants`` -- literature values with citations, AHA segments, territories.
* ``sequence`` -- saturation-recovery FLASH signal model.
* ``simulation`` -- paired AIF simulator and 4D perfusion phantom with ground truth.
* ``slicer_files`` -- 3D Slicer file formats (.seq.nrrd, .seg.nrrd, .mrk.json).
* ``deconvolution`` -- Fermi-constrained deconvolution.
* ``evaluation`` -- the paper's evaluation statistics.
* ``studies`` -- simulated validation studies built from the simulator.
* ``report`` -- figures (matplotlib, imported only when a figure is drawn).
* ``proton_density`` -- proton-density frames at the start of a series.
* ``dicom_io`` -- DICOM perfusion folders in, the phantom, SEG and the MBF
  Parametric Map out (pydicom; highdicom on command-line paths).
* ``cohort`` -- the ``batch`` command: manifest, Dask tasks, resume, tables.
* ``cli`` -- ``python -m AIAIFLib``.
"""

__version__ = "0.1.0"

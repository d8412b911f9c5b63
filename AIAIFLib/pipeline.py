"""One perfusion study: arrays and parameters in, MBF map, segments and summary out.

Every caller (the command line, the Slicer module's Logic, the Python
console) reaches the science through ``quantify_study``; the MRML adapter
(``mrml.py``) turns Slicer nodes into a ``PerfusionStudy`` and the result back
into nodes.
"""

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np


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
        Anterior RV insertion points, RAS mm (one per slice).
    rv_insertion_labels : tuple of str, optional
        Label of each RV insertion point (may name the slice level, e.g.
        ``"RV insertion anterior basal"``).
    source : dict
        Where the data came from (file paths, node names), for the summary.
    """

    frames: np.ndarray
    frame_times_s: np.ndarray
    ijk_to_ras: np.ndarray
    blood_pool_mask: np.ndarray
    myocardium_mask: np.ndarray
    rv_insertion_ras: Optional[np.ndarray] = None
    rv_insertion_labels: Optional[Tuple[str, ...]] = None
    source: dict = field(default_factory=dict)

"""The phantom written as 3D Slicer files plus its ground truth (``write_phantom``)."""

import numpy as np

from .. import constants as K
from .anatomy import TISSUE_LABELS

#: Files ``write_phantom`` creates in its output directory.
PHANTOM_FILES = {
    "perfusion": "perfusion.seq.nrrd",
    "segmentation": "segmentation.seg.nrrd",
    "rv_insertion": "rv_insertion.mrk.json",
    "truth_arrays": "ground_truth.npz",
    "truth_description": "ground_truth.json",
}

#: Name of the phantom's RV insertion point list in Slicer.
RV_INSERTION_NODE_NAME = "RV insertion points"

#: Segment colours (RGB 0-1) of the phantom's segmentation.
SEGMENT_COLOURS = {K.LV_BLOOD_POOL_SEGMENT_NAME: (0.85, 0.25, 0.25), K.MYOCARDIUM_SEGMENT_NAME: (0.95, 0.85, 0.35)}


def write_phantom(phantom, output_dir):
    """Write a phantom as 3D Slicer files plus its ground truth.

    Files (names in ``PHANTOM_FILES``):

    * ``perfusion.seq.nrrd`` -- volume sequence, one 3-slice volume per frame,
      frame times in seconds as the sequence index values;
    * ``segmentation.seg.nrrd`` -- segments ``LV blood pool`` and ``Myocardium``;
    * ``rv_insertion.mrk.json`` -- anterior RV insertion point of each slice
      (point labels name the slice level);
    * ``ground_truth.npz`` -- arrays: MBF map (mL/min/g), AHA segment labels,
      tissue classes, AIF concentration (mM) at the frame times and on the fine
      grid, tissue concentration curves (mM) and tissue-model parameters of every
      myocardial voxel, both RV insertion points, noise-free signals;
    * ``ground_truth.json`` -- acquisition and model parameters, per-segment
      true MBF and territory, units.

    Parameters
    ----------
    phantom : Phantom
        As returned by ``simulate_phantom``.
    output_dir : str or pathlib.Path
        Existing directory to write into.
    """
    import json
    import os

    from .. import slicer_files

    path = {key: os.path.join(str(output_dir), name) for key, name in PHANTOM_FILES.items()}
    slicer_files.write_volume_sequence(path["perfusion"], phantom.frames, phantom.frame_times_s, phantom.ijk_to_ras)
    slicer_files.write_segmentation(
        path["segmentation"],
        [(K.LV_BLOOD_POOL_SEGMENT_NAME, phantom.lv_blood_mask, SEGMENT_COLOURS[K.LV_BLOOD_POOL_SEGMENT_NAME]),
         (K.MYOCARDIUM_SEGMENT_NAME, phantom.myocardium_mask, SEGMENT_COLOURS[K.MYOCARDIUM_SEGMENT_NAME])],
        phantom.ijk_to_ras)
    slicer_files.write_markups_points(
        path["rv_insertion"], phantom.rv_insertion_ras["anterior"],
        list(phantom.rv_insertion_labels), name=RV_INSERTION_NODE_NAME)
    arrays = dict(phantom.truth)
    arrays.update(mbf_ml_min_g=phantom.mbf_ml_min_g, aha_segments=phantom.aha_segments, tissue_labels=phantom.labels,
                  ijk_to_ras=phantom.ijk_to_ras, rv_insertion_anterior_ras=phantom.rv_insertion_ras["anterior"],
                  rv_insertion_inferior_ras=phantom.rv_insertion_ras["inferior"])
    np.savez_compressed(path["truth_arrays"], **arrays)
    segment_mbf = phantom.segment_mbf_ml_min_g()
    description = {
        "units": {"mbf": "mL/min/g", "concentration": "mM", "time": "s", "length": "mm (RAS)",
                  "signal": "scanner units"},
        "files": PHANTOM_FILES,
        "slice_levels": list(phantom.levels),
        "segments": [{"segment": s, "name": K.AHA_SEGMENT_NAMES[s], "territory": K.territory_of_segment(s),
                      "mbf_true_ml_min_g": float(segment_mbf[s - 1]),
                      "n_pixels": int(np.sum(phantom.aha_segments == s))} for s in K.AHA_SEGMENTS],
        "rv_insertion_ras": {name: points.tolist() for name, points in phantom.rv_insertion_ras.items()},
        "tissue_labels": TISSUE_LABELS,
        "acquisition": phantom.acquisition,
    }
    with open(path["truth_description"], "w") as handle:
        json.dump(description, handle, indent=2)
    return path

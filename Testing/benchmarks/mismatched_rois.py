"""Benchmark: how far the ROI cross-checks tell a study's own ROIs from ROIs of another study.

Run: ``python Testing/benchmarks/mismatched_rois.py [--phantoms N]``.
For simulated phantoms (3 T and 1.5 T, every ischaemic territory) it prints
the share of the LV blood-pool ROI whose curve does not follow the blood
(``roi_checks.blood_pool_mismatch_fraction``) for the phantom's own ROI, for
the ROI of another phantom (another cavity size on the same grid) and for
the own ROI shifted in-plane by 2.5 to 20 mm (the smallest over four
directions), and the distance of the RV insertion points from the
myocardium, own and moved away from the LV by 10 and 20 mm.  These figures
set the thresholds in ``AIAIFLib/roi_checks.py``.
"""

import argparse

import numpy as np

from AIAIFLib import roi_checks as rc
from AIAIFLib.simulation import simulate_phantom

PIXEL_MM = 2.5
SHIFTS_MM = (2.5, 5.0, 7.5, 10.0, 15.0, 20.0)


def _shifted(mask, rows, columns):
    return np.roll(np.roll(mask, rows, axis=1), columns, axis=2)


def _points_moved(phantom, distance_mm):
    points = np.asarray(phantom.rv_insertion_ras["anterior"], dtype=float)
    matrix = phantom.ijk_to_ras
    moved = []
    for point in points:
        k = int(round(np.linalg.solve(matrix[:3, :3], point - matrix[:3, 3])[2]))
        rows, columns = np.nonzero(phantom.lv_blood_mask[k])
        centre = matrix[:3, :3] @ np.array([columns.mean(), rows.mean(), k]) + matrix[:3, 3]
        moved.append(point + distance_mm * (point - centre) / np.linalg.norm(point - centre))
    return np.array(moved)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phantoms", type=int, default=8)
    args = parser.parse_args()
    print("Blood-pool ROI share not following the blood curve (warn > {}, refuse > {}):".format(
        rc.BLOOD_POOL_WARN_FRACTION, rc.BLOOD_POOL_REFUSE_FRACTION))
    print("seed field ischaemic   own  other " + " ".join("{:>5g}mm".format(mm) for mm in SHIFTS_MM))
    distances = {0: [], 10: [], 20: []}
    for seed in range(args.phantoms):
        field, territory = (3.0, 1.5)[seed % 2], ("none", "LAD", "RCA", "LCX")[seed % 4]
        phantom = simulate_phantom(seed=seed, field_strength_t=field, ischemic=territory, n_frames=40, matrix=96,
                                   pixel_mm=PIXEL_MM)
        other = simulate_phantom(seed=seed + 100, n_frames=20, matrix=96, pixel_mm=PIXEL_MM)
        own = rc.blood_pool_mismatch_fraction(phantom.frames, phantom.lv_blood_mask)
        foreign = rc.blood_pool_mismatch_fraction(phantom.frames, other.lv_blood_mask)
        shifted = []
        for mm in SHIFTS_MM:
            step = int(round(mm / PIXEL_MM))
            shifted.append(min(rc.blood_pool_mismatch_fraction(phantom.frames, _shifted(phantom.lv_blood_mask, *d))
                               for d in ((step, 0), (-step, 0), (0, step), (0, -step))))
        print("{:4d} {:4.1f}T {:>9} {:5.3f} {:6.3f} ".format(seed, field, territory, own, foreign)
              + " ".join("{:7.3f}".format(value) for value in shifted))
        for moved in distances:
            points = _points_moved(phantom, moved) if moved else phantom.rv_insertion_ras["anterior"]
            distances[moved].extend(rc.rv_point_distances_mm(points, phantom.ijk_to_ras, phantom.myocardium_mask))
    print("RV insertion point distance from its slice's myocardium, mm (warn > {}, refuse > {}):".format(
        rc.RV_POINT_WARN_MM, rc.RV_POINT_REFUSE_MM))
    for moved, values in distances.items():
        print("  {:>14}: {:.1f} to {:.1f}".format("own points" if not moved else "moved {} mm".format(moved),
                                                    np.nanmin(values), np.nanmax(values)))


if __name__ == "__main__":
    main()

"""The registration region of one slice: a tapered disc around the heart, and the frames cut out around it."""

import numpy as np

#: The registration region: a disc around the heart (the ROIs' extent) widened by this margin, mm, then
#: tapered to zero over ``REGION_TAPER_MM`` (project choice: includes the RV and the epicardial fat, leaves out
#: the chest wall, which moves less than the heart).
REGION_MARGIN_MM = 10.0
REGION_TAPER_MM = 10.0
#: Largest displacement searched, mm: a failed breath-hold moves the heart up to about 15-20 mm
#: (project choice, beyond the 4-8 mm of typical free breathing plus drift).
SEARCH_RADIUS_MM = 15.0


def _heart_region(heart_mask, pixel_mm):
    """Centre (row, column) of the heart ROI and its radius, mm."""
    rows, columns = np.nonzero(heart_mask)
    centre = np.array([rows.mean(), columns.mean()])
    radius = np.sqrt(((rows - centre[0]) * pixel_mm[0]) ** 2 + ((columns - centre[1]) * pixel_mm[1]) ** 2).max()
    return centre, radius


class Region(object):
    """The registration region of one slice: a box around the heart, its taper weight, and the frames cut out
    with a margin for the largest shift searched (edges repeated)."""

    def __init__(self, frames, heart_mask, pixel_mm):
        centre, radius_mm = _heart_region(heart_mask, pixel_mm)
        outer_mm = radius_mm + REGION_MARGIN_MM + REGION_TAPER_MM
        half = (np.ceil(outer_mm / pixel_mm).astype(int) + 1)
        corner = np.floor(centre).astype(int) - half
        self.shape = tuple(2 * half + 1)
        rows, columns = np.mgrid[0:self.shape[0], 0:self.shape[1]]
        distance = np.hypot((rows + corner[0] - centre[0]) * pixel_mm[0],
                            (columns + corner[1] - centre[1]) * pixel_mm[1])
        ramp = np.clip((distance - radius_mm - REGION_MARGIN_MM) / REGION_TAPER_MM, 0.0, 1.0)
        self.weight = 0.5 * (1.0 + np.cos(np.pi * ramp))
        self.margin = int(np.ceil(SEARCH_RADIUS_MM / pixel_mm.min())) + 2
        padded = np.pad(np.asarray(frames, dtype=float), ((0, 0), (self.margin + max(-corner.min(), 0),) * 2,
                                                          (self.margin + max(-corner.min(), 0),) * 2), mode="edge")
        start = corner + self.margin + max(-corner.min(), 0) - self.margin
        extra = np.array(self.shape) + 2 * self.margin
        need = start + extra - np.array(padded.shape[1:])
        if np.any(need > 0):
            padded = np.pad(padded, ((0, 0), (0, max(need[0], 0)), (0, max(need[1], 0))), mode="edge")
        self.frames = padded[:, start[0]:start[0] + extra[0], start[1]:start[1] + extra[1]]
        self.limit = float(self.margin - 1)

    def sample(self, stack, shift):
        """Each frame of ``stack`` (a smoothed ``self.frames``) on the region's grid moved by its shift
        (n, 2), bilinear: (n, rows, columns)."""
        shift = np.clip(shift, -self.limit, self.limit)
        whole = np.floor(shift).astype(int)
        fraction = shift - whole
        height, width = self.shape
        out = np.empty((stack.shape[0],) + self.shape)
        for index in range(stack.shape[0]):
            r, c = whole[index] + self.margin
            fr, fc = fraction[index]
            block = stack[index, r:r + height + 1, c:c + width + 1]
            top = block[:-1, :-1] * (1.0 - fc) + block[:-1, 1:] * fc
            bottom = block[1:, :-1] * (1.0 - fc) + block[1:, 1:] * fc
            out[index] = top * (1.0 - fr) + bottom * fr
        return out

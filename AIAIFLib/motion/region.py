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


def heart_centre_px(heart_mask):
    """Centre (row, column) of the heart ROI, pixels: the registration region's centre, and the centre of its turn."""
    rows, columns = np.nonzero(heart_mask)
    return np.array([rows.mean(), columns.mean()])


def _heart_region(heart_mask, pixel_mm):
    """Centre (row, column) of the heart ROI and its radius, mm."""
    rows, columns = np.nonzero(heart_mask)
    centre = heart_centre_px(heart_mask)
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
        #: The heart's centre on the region's grid (row, column): the centre of rotation.
        self.centre = centre - corner
        rows, columns = np.mgrid[0:self.shape[0], 0:self.shape[1]].astype(float)
        #: Each grid point's position (row, column) about the heart's centre, pixels.
        self.about_centre = (rows - self.centre[0], columns - self.centre[1])
        #: The region's weighted RMS distance from the heart's centre, pixels: a rotation of one radian moves the
        #: region's pixels this far on average, so rotation steps are measured as arcs at this radius.
        self.radius_px = float(np.sqrt((self.weight * (self.about_centre[0] ** 2 + self.about_centre[1] ** 2)).sum()
                                       / self.weight.sum()))

    def sample(self, stack, shift, angle=None):
        """Each frame of ``stack`` (a smoothed ``self.frames``) on the region's grid moved by its shift
        (n, 2), and rotated by its angle (n,), radians, about the heart's centre when given, bilinear:
        (n, rows, columns)."""
        shift = np.clip(shift, -self.limit, self.limit)
        if angle is not None and np.any(angle):
            return self._sample_rotated(stack, shift, np.asarray(angle, dtype=float))
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

    def _sample_rotated(self, stack, shift, angle):
        """``sample`` with rotation: the grid point x is taken from c + R(angle) (x - c) + shift (c the heart's
        centre), bilinear, every frame at once."""
        u_r, u_c = self.about_centre
        cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
        at_r = self.centre[0] + self.margin + shift[:, :1, None] + cos * u_r[None] - sin * u_c[None]
        at_c = self.centre[1] + self.margin + shift[:, 1:, None] + sin * u_r[None] + cos * u_c[None]
        at_r = np.clip(at_r, 0.0, stack.shape[1] - 1.000001)
        at_c = np.clip(at_c, 0.0, stack.shape[2] - 1.000001)
        r0, c0 = np.floor(at_r).astype(np.intp), np.floor(at_c).astype(np.intp)
        fr, fc = at_r - r0, at_c - c0
        height, width = stack.shape[1:]
        index = (np.arange(stack.shape[0], dtype=np.intp)[:, None, None] * height + r0) * width + c0
        flat = np.ascontiguousarray(stack).reshape(-1)
        top = np.take(flat, index) * (1.0 - fc) + np.take(flat, index + 1) * fc
        bottom = np.take(flat, index + width) * (1.0 - fc) + np.take(flat, index + width + 1) * fc
        return top * (1.0 - fr) + bottom * fr

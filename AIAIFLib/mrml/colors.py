"""The MBF colour scale (lightness rising linearly with flow) and its colour table node."""

import numpy as np
import slicer

from ..errors import AIAIFInputError


#: Display range of MBF maps, mL/min/g.  Project choice: covers stress MBF from
#: severe ischaemia to the highest healthy values (the paper's median stress
#: MBF is 2.8 mL/min/g; the ischaemia threshold 1.35 sits near the lower third).
MBF_DISPLAY_RANGE_ML_MIN_G = (0.0, 5.0)
#: Name of the MBF colour table node (created once per scene, then reused).
MBF_COLOR_TABLE_NAME = "AI-AIF MBF"
#: Number of entries of the MBF colour table.
MBF_COLOR_TABLE_SIZE = 256
#: Lightness (CIE L*) at the low and high end of the MBF colour table.  Project
#: choice: dark but not black at zero flow, light but not white at the top, with
#: L* rising linearly so that equal MBF steps look like equal steps.
MBF_COLOR_LIGHTNESS = (15.0, 92.0)
#: Hue (CIE LCh, degrees) at the low and high end: violet through blue, teal
#: and green to yellow (project choice, a blue-to-yellow scale readable with
#: the common colour-vision deficiencies).
MBF_COLOR_HUE_DEG = (295.0, 95.0)
#: Chroma (CIE LCh) aimed for at the low and high end, reduced where sRGB cannot
#: show it at the given lightness (project choice).
MBF_COLOR_CHROMA = (45.0, 85.0)
#: CIE D65 reference white (X, Y, Z) and the XYZ -> linear sRGB matrix (IEC 61966-2-1).
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_XYZ_TO_LINEAR_SRGB = np.array([[3.2406, -1.5372, -0.4986],
                                [-0.9689, 1.8758, 0.0415],
                                [0.0557, -0.2040, 1.0570]])
_LAB_EPSILON = 6.0 / 29.0


def _lab_to_srgb(lab):
    """CIE L*a*b* (D65) -> sRGB in 0..1 (not clipped: out-of-gamut colours fall outside 0..1)."""
    lab = np.asarray(lab, dtype=float)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > _LAB_EPSILON, f ** 3, 3 * _LAB_EPSILON ** 2 * (f - 4.0 / 29.0)) * _D65_WHITE
    linear = xyz @ _XYZ_TO_LINEAR_SRGB.T
    magnitude = np.abs(linear)
    encoded = np.where(magnitude <= 0.0031308, 12.92 * magnitude, 1.055 * magnitude ** (1 / 2.4) - 0.055)
    return np.sign(linear) * encoded


def _srgb_to_lab(rgb):
    """sRGB in 0..1 -> CIE L*a*b* (D65)."""
    rgb = np.asarray(rgb, dtype=float)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.linalg.inv(_XYZ_TO_LINEAR_SRGB).T / _D65_WHITE
    f = np.where(xyz > _LAB_EPSILON ** 3, np.cbrt(xyz), xyz / (3 * _LAB_EPSILON ** 2) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])],
                    axis=-1)


def mbf_colors(n_colors=MBF_COLOR_TABLE_SIZE):
    """The MBF colour scale: sRGB colours with lightness rising linearly from low to high flow.

    Colours are placed in CIE LCh: lightness (L*) rises linearly over
    ``MBF_COLOR_LIGHTNESS``, hue turns from violet to yellow
    (``MBF_COLOR_HUE_DEG``) and chroma grows over ``MBF_COLOR_CHROMA``; where
    sRGB cannot show a colour, its chroma is reduced (bisection) at the same
    lightness and hue, so lightness stays exactly linear.

    Parameters
    ----------
    n_colors : int, optional
        Number of colours (>= 2).

    Returns
    -------
    numpy.ndarray, shape (n_colors, 3)
        Red, green, blue in 0..1, from the lowest to the highest MBF.
    """
    n_colors = int(n_colors)
    if n_colors < 2:
        raise AIAIFInputError("A colour scale needs at least 2 colours, got {}; pass e.g. 256.".format(n_colors))
    fraction = np.linspace(0.0, 1.0, n_colors)
    lightness = np.interp(fraction, [0, 1], MBF_COLOR_LIGHTNESS)
    hue = np.radians(np.interp(fraction, [0, 1], MBF_COLOR_HUE_DEG))
    chroma = np.interp(fraction, [0, 1], MBF_COLOR_CHROMA)

    def rgb_at(scale):
        c = chroma * scale
        return _lab_to_srgb(np.stack([lightness, c * np.cos(hue), c * np.sin(hue)], axis=-1))

    def in_gamut(rgb):
        return np.all((rgb >= -1e-9) & (rgb <= 1 + 1e-9), axis=-1)

    low, high = np.zeros(n_colors), np.ones(n_colors)
    full = in_gamut(rgb_at(high))
    for _ in range(40):
        middle = 0.5 * (low + high)
        ok = in_gamut(rgb_at(middle))
        low = np.where(ok, middle, low)
        high = np.where(ok, high, middle)
    scale = np.where(full, 1.0, low)
    return np.clip(rgb_at(scale), 0.0, 1.0)


def mbf_color_table_node(scene):
    """The MBF colour table node of ``scene``, created on first use and reused (by name) afterwards.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to look in and add to.

    Returns
    -------
    vtkMRMLColorTableNode
        Node named ``MBF_COLOR_TABLE_NAME`` with ``mbf_colors()``.
    """
    nodes = scene.GetNodesByClassByName("vtkMRMLColorTableNode", MBF_COLOR_TABLE_NAME)
    if nodes.GetNumberOfItems() > 0:
        return nodes.GetItemAsObject(0)
    colors = mbf_colors(MBF_COLOR_TABLE_SIZE)
    table = slicer.vtkMRMLColorTableNode()
    table.SetName(MBF_COLOR_TABLE_NAME)
    table.SetTypeToUser()
    table.SetNumberOfColors(len(colors))
    low, high = MBF_DISPLAY_RANGE_ML_MIN_G
    for n, (red, green, blue) in enumerate(colors):
        value = low + (high - low) * n / (len(colors) - 1)
        table.SetColor(n, "{:.2f} mL/min/g".format(value), float(red), float(green), float(blue), 1.0)
    table.SetDescription("AI-AIF stress MBF, {:g}-{:g} mL/min/g, lightness rising linearly with flow."
                         .format(low, high))
    table.SetAttribute("Category", "AI-AIF")
    scene.AddNode(table)
    return table

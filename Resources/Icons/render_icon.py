"""Render the module and extension icon, ``AIAIF.png`` (128 x 128 pixels).

An AHA bullseye in a perfusion colour scale (one territory hypoperfused) with
a saturated and a corrected AIF drawn across it: the method in one picture.
Run from the repository root after changing the design:
``python Resources/Icons/render_icon.py``.
"""

import os

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Wedge

ICON_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "AIAIF.png")
SIZE_PX = 128


def render(path=ICON_PATH):
    """Draw the icon and save it as a transparent PNG.

    Parameters
    ----------
    path : str, optional
        Output file (default: ``AIAIF.png`` beside this script).

    Returns
    -------
    str
        The path written.
    """
    figure = Figure(figsize=(1.0, 1.0), dpi=SIZE_PX)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axes.set_xlim(-1.0, 1.0)
    axes.set_ylim(-1.0, 1.0)
    axes.set_aspect("equal")
    axes.axis("off")
    cmap = matplotlib.colormaps["jet"]
    # Rings (outer to inner): basal and mid with six 60-degree sectors, apical with four.
    rings = ((0.98, 0.70, 6, 60.0), (0.70, 0.44, 6, 60.0), (0.44, 0.20, 4, 45.0))
    flow = np.array([0.8, 0.8, 0.75, 0.7, 0.35, 0.3, 0.85, 0.8, 0.8, 0.7, 0.3, 0.35, 0.8, 0.85, 0.75, 0.3])
    index = 0
    for outer, inner, n, start in rings:
        for sector in range(n):
            theta1 = start + 360.0 / n * sector
            axes.add_patch(Wedge((0.0, 0.0), outer, theta1, theta1 + 360.0 / n, width=outer - inner,
                                 facecolor=cmap(flow[index]), edgecolor="white", linewidth=1.2))
            index += 1
    axes.add_patch(Wedge((0.0, 0.0), 0.20, 0.0, 360.0, facecolor="white", edgecolor="white"))
    t = np.linspace(-0.9, 0.9, 200)
    corrected = -0.55 + 1.35 * np.exp(-0.5 * ((t + 0.25) / 0.16) ** 2) + 0.12 * (t > -0.25)
    saturated = -0.55 + (corrected + 0.55) / (1.0 + 0.9 * (corrected + 0.55))
    for curve, colour in ((saturated, "dimgray"), (corrected, "black")):
        axes.plot(t, curve, color="white", linewidth=4.5)
        axes.plot(t, curve, color=colour, linewidth=2.4)
    figure.savefig(path, dpi=SIZE_PX, transparent=True)
    return path


if __name__ == "__main__":
    print(render())

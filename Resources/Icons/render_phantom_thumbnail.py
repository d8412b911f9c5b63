"""Render the Sample Data thumbnail of the built-in phantom, ``AIAIFPhantom.png`` (260 x 280 pixels).

The mid-ventricular slice of the demo phantom (``AIAIFLib.studies.demo_phantom``)
at peak myocardial enhancement, around the heart, grey scale, with the sample's name below: what
the user gets after clicking it.  Run from the repository root after changing
the phantom: ``python Resources/Icons/render_phantom_thumbnail.py``.
"""

import os
import sys

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from AIAIFLib.studies import demo_phantom  # noqa: E402

THUMBNAIL_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "AIAIFPhantom.png")

#: Size Slicer's Sample Data module expects for thumbnails (its template: about 260 x 280 pixels).
SIZE_PX = (260, 280)


def render(path=THUMBNAIL_PATH):
    """Draw the thumbnail and save it as a PNG.

    Parameters
    ----------
    path : str, optional
        Output file (default: ``AIAIFPhantom.png`` beside this script).

    Returns
    -------
    str
        The path written.
    """
    phantom = demo_phantom()
    mid = phantom.frames.shape[1] // 2
    myocardium = phantom.myocardium_mask[mid]
    curve = phantom.frames[:, mid][:, myocardium].mean(axis=1)
    image = phantom.frames[int(np.argmax(curve)), mid]
    rows, columns = np.nonzero(myocardium)
    half = int(1.6 * max(np.ptp(rows), np.ptp(columns)) / 2) + 1  # the heart with its surroundings
    centre = (int(rows.mean()), int(columns.mean()))
    image = image[max(centre[0] - half, 0):centre[0] + half, max(centre[1] - half, 0):centre[1] + half]
    low, high = np.percentile(image, [1.0, 99.5])

    dpi = 100
    figure = Figure(figsize=(SIZE_PX[0] / dpi, SIZE_PX[1] / dpi), dpi=dpi, facecolor="black")
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.0, 0.14, 1.0, 0.86))
    axes.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="bilinear")
    axes.axis("off")
    figure.text(0.5, 0.05, "AI-AIF stress perfusion phantom", color="white", ha="center", va="center",
                fontsize=10)
    figure.savefig(path, dpi=dpi, facecolor="black")
    return path


if __name__ == "__main__":
    print(render())

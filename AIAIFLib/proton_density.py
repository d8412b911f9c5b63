"""Proton-density frames at the start of a perfusion series: found, so that they can be left out.

Many perfusion protocols acquire one to a few proton-density (PD) frames
before the saturation-recovery frames: the same readout without the
saturation pulse, usually at a lower flip angle.  They are meant for a
surface-coil or conversion correction, not for the first pass, and they
would be taken for the pre-contrast baseline.

Two independent clues say a leading frame is a PD frame:

* the images: without saturation every tissue reads its fully relaxed
  magnetisation.  After a saturation pulse, 100 ms of recovery leave
  ``1 - exp(-0.1 / T1)``, about 8 % at 3 T, so even read at a third of the
  flip angle's sine a PD frame is several times brighter than the
  saturation-recovery baseline.  Here a leading frame whose mean signal
  over the tissue (the brighter half of the voxels of the frames that
  follow: air, whose noise does not depend on the magnetisation, would
  dilute the ratio) is more than ``PD_SIGNAL_RATIO`` times the median of
  those frames' counts as a PD frame;
* the header (DICOM only): a flip angle other than the series', or no
  saturation delay where the other frames have one.

The header decides when it marks frames; otherwise the images do.  When the
two disagree the summary warns.  Using the PD frames for the signal
conversion is a later step; for now they are only left out.
"""

from typing import NamedTuple, Optional

import numpy as np

#: A leading frame brighter than this times the following frames' median
#: signal is a PD frame (project choice: saturation recovery at the 50-300 ms
#: saturation times of perfusion leaves at most about a third of the relaxed
#: magnetisation in myocardium and blood (T1 >= 0.95 s), so PD frames are
#: 2-10 times brighter even at a lower flip angle, while frame-to-frame
#: changes of the whole image's mean before contrast are a few percent).
PD_SIGNAL_RATIO = 1.5
#: Most leading frames examined (project choice: protocols acquire 1-3).
MAX_PD_FRAMES = 5
#: Frames after the candidates whose median signal is the reference.
REFERENCE_FRAMES = 5


class ProtonDensityFrames(NamedTuple):
    """Which leading frames are PD frames, and why.

    Attributes
    ----------
    count : int
        Leading frames to leave out.
    image_count : int
        Leading frames the images mark (``PD_SIGNAL_RATIO``).
    header_count : int or None
        Leading frames the header marks; None when there is no header clue.
    signal_ratios : list of float
        Mean signal of each examined leading frame over the reference.
    warning : str or None
        A sentence when the clues disagree.
    """

    count: int
    image_count: int
    header_count: Optional[int]
    signal_ratios: list
    warning: Optional[str]

    def summary(self):
        """JSON-ready record for ``summary.json``."""
        decided = ("none found" if not self.count else
                   "header and images agree" if self.header_count == self.image_count else
                   "header" if self.header_count else "images")
        return {"n_left_out": self.count, "n_by_images": self.image_count, "n_by_header": self.header_count,
                "signal_ratios": [round(r, 3) for r in self.signal_ratios], "decided_by": decided,
                "note": "proton-density frames are left out; using them for the conversion is not implemented"}


def leading_proton_density_frames(frames, header_count=None):
    """Find the proton-density frames at the start of a series.

    Parameters
    ----------
    frames : numpy.ndarray, shape (n_frames, ...)
        Signal of every frame (any units).
    header_count : int, optional
        Leading frames the header marks as PD frames (None: no header clue).

    Returns
    -------
    ProtonDensityFrames
        The count to leave out and the evidence.
    """
    frames = np.asarray(frames)
    n_frames = frames.shape[0]
    flat = frames.reshape(n_frames, -1)
    examined = min(MAX_PD_FRAMES, max(n_frames - REFERENCE_FRAMES, 0))
    ratios = []
    if examined:
        following = np.median(flat[examined:examined + REFERENCE_FRAMES], axis=0)
        tissue = following > np.median(following)
        if not tissue.any():  # a uniform image: every voxel
            tissue[:] = True
        level = flat[:examined + REFERENCE_FRAMES, tissue].mean(axis=1, dtype=float)
        reference = float(np.median(level[examined:]))
        ratios = [float(level[n] / reference) if reference > 0 else float("nan") for n in range(examined)]
    image_count = 0
    while image_count < examined and ratios[image_count] > PD_SIGNAL_RATIO:
        image_count += 1
    count = image_count
    warning = None
    if header_count is not None:
        header_count = int(header_count)
        if header_count:
            count = min(header_count, MAX_PD_FRAMES)
        if header_count != image_count:
            warning = ("The header marks {} leading frame{} as proton-density frames but the images {}; {} {} left "
                       "out, check the start of the series.".format(
                           header_count, "" if header_count == 1 else "s", image_count, count,
                           "was" if count == 1 else "were"))
    return ProtonDensityFrames(count=count, image_count=image_count, header_count=header_count,
                               signal_ratios=ratios, warning=warning)

"""Arterial input function handling: the paper's fixed-length curve window.

[Scannell2022, "Training data"]: the pre-contrast part of the AIF is cropped
to begin four beats before contrast arrival in the LV, the curves are
normalised by the maximum of the saturated AIF, and cropped or padded to 64
time points.
"""

import numpy as np

from . import constants as K
from .errors import AIAIFInputError


def network_window(times_s, curves, arrival_index, length=K.NETWORK_LENGTH, pre_contrast_beats=K.PRE_CONTRAST_BEATS):
    """Cut each curve to the paper's window: ``pre_contrast_beats`` before arrival, ``length`` frames.

    Curves shorter than the window after the crop are padded at the end by
    repeating their last frame, and the padded times continue with the
    curve's median frame interval.

    Parameters
    ----------
    times_s : array_like, shape (n, n_frames)
        Frame times, s.
    curves : array_like, shape (n, n_frames) or (k, n, n_frames)
        Curves to cut with the same window (e.g. saturated and reference).
    arrival_index : array_like of int, shape (n,)
        Frame of contrast arrival of each curve.
    length : int, optional
        Window length, frames (64 in the paper).
    pre_contrast_beats : int, optional
        Frames kept before arrival (4 in the paper).

    Returns
    -------
    window_times_s : numpy.ndarray, shape (n, length)
        Times relative to the first frame of the window, s.
    window_curves : numpy.ndarray, shape of ``curves`` with ``length`` frames
        The cut curves.
    start_index : numpy.ndarray of int, shape (n,)
        First frame of each window in the original curve.
    """
    times = np.asarray(times_s, dtype=float)
    curves = np.asarray(curves, dtype=float)
    n, n_frames = times.shape
    if curves.shape[-2:] != (n, n_frames):
        raise AIAIFInputError("The curves must have the shape of the frame times ({} x {}); pass matching arrays."
                              .format(n, n_frames))
    start = np.clip(np.asarray(arrival_index, dtype=int) - pre_contrast_beats, 0, n_frames - 1)
    offsets = np.arange(length)[None, :]
    index = start[:, None] + offsets
    inside = index < n_frames
    clipped = np.minimum(index, n_frames - 1)
    rows = np.arange(n)[:, None]
    step = np.median(np.diff(times, axis=1), axis=1)[:, None]
    last_time = times[rows, clipped]
    window_times = np.where(inside, last_time, last_time + (index - (n_frames - 1)) * step)
    window_times = window_times - window_times[:, :1]
    return window_times, curves[..., rows, clipped], start


def arrival_index_from_time(times_s, arrival_s):
    """First frame acquired at or after a known arrival time (simulated data).

    Parameters
    ----------
    times_s : array_like, shape (n, n_frames)
        Frame times, s.
    arrival_s : array_like, shape (n,)
        Contrast arrival time, s.

    Returns
    -------
    numpy.ndarray of int, shape (n,)
        Frame index of arrival.
    """
    times = np.asarray(times_s, dtype=float)
    return np.argmax(times >= np.asarray(arrival_s, dtype=float)[:, None], axis=1)

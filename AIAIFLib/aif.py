"""Arterial input function handling: extraction, contrast arrival and the network's window.

The AI-AIF network corrects a saturated AIF given as a fixed-length curve
[Scannell2022, "Training data"]: the pre-contrast part of the AIF is cropped
to begin four beats before contrast arrival in the LV, the curves are
normalised by the maximum of the saturated AIF, and cropped or padded to 64
time points.  Its output, in the same normalised units, is mapped back to
signal units on the original frame times.

The steps, each a function of numpy arrays:

``extract_aif_signal``
    The AIF of one study: mean of the LV blood-pool pixels above the 75th
    intensity percentile [Scannell2022, "Image analysis"].
``validate_aif_curves``
    The checks every AIF curve passes (finite, enough frames, increasing
    frame times).
``detect_arrival_index``
    The frame of contrast arrival of each curve.
``prepare_network_input`` / ``window_like``
    The network's window and normalisation, kept in a ``NetworkInput`` so
    that ``restore_network_output`` can invert them exactly.

Conventions
-----------
*Arrival index* is the first frame acquired at or after contrast arrival,
i.e. the first enhanced frame (the convention of ``arrival_index_from_time``,
which labels simulated training data).  The window starts
``pre_contrast_beats`` frames before it, so those frames are all
pre-contrast, and the pre-contrast signal S0 is the mean of the frames
before the arrival index.
"""

import os
from dataclasses import dataclass

import numpy as np

from . import constants as K
from .errors import AIAIFInputError

#: Fewest frames an AIF curve may have (project choice: four pre-contrast
#: beats, a first pass of about ten beats at stress heart rates and a few
#: beats of recirculation; shorter series cannot hold a usable first pass).
MIN_AIF_FRAMES = 20

#: Arrival detection, noise standard deviations above the baseline that every
#: frame of the rise from arrival to half the peak must exceed (project
#: choice: a one-sided 3 SD test puts a baseline frame above it with
#: probability 0.13 %).
ARRIVAL_RISE_THRESHOLD_SD = 3.0
#: Arrival detection, noise SDs above the baseline that the frame just before
#: the significant rise must exceed to count as the first enhanced frame
#: (project choice: tuned on simulated curves, where the first frame after
#: the true arrival carries a median 6 % of the peak enhancement and a
#: quarter of them less than 1 %; 1 SD trades 5 % one-frame-early errors for
#: fewer late ones, and early windows lie within the training augmentation).
ARRIVAL_FOOT_THRESHOLD_SD = 1.0
#: A curve whose peak rises fewer noise SDs than this above its baseline has
#: no detectable contrast arrival (project choice: the simulator's noisiest
#: AIFs, noise 3 % of the peak, still have about 25 estimated noise SDs).
MIN_PEAK_ENHANCEMENT_SD = 10.0
#: Frames from the start of a curve that seed the baseline of the arrival
#: detection before it is refined (project choice; contrast arrives later).
_INITIAL_BASELINE_FRAMES = 3
#: Refinements of the baseline from the frames found before the rise, in the
#: arrival detection (project choice; the result stops changing after two).
_BASELINE_ITERATIONS = 3
#: Last window frames from which the enhancement gain of the continuation
#: after the window is estimated (project choice: about 5-8 s of the late,
#: slowly varying curve, enough to average the noise of single frames).
CONTINUATION_FRAMES = 8


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


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

def _float_array(values, what):
    try:
        return np.array(values, dtype=float)
    except (TypeError, ValueError):
        raise AIAIFInputError("The {} must be numbers; pass a numeric array.".format(what)) from None


def validate_aif_curves(times_s, signals):
    """Check AIF curves and return them as two float arrays of one shape.

    Parameters
    ----------
    times_s : array_like, shape (n_frames,) or (n, n_frames)
        Frame times, s; one row shared by all curves or one row per curve.
    signals : array_like, shape (n_frames,) or (n, n_frames)
        AIF signal (signal units): one curve or a stack of curves.

    Returns
    -------
    times_s : numpy.ndarray, shape (n, n_frames)
        Frame times, s (a copy).
    signals : numpy.ndarray, shape (n, n_frames)
        Signals (a copy).

    Raises
    ------
    AIAIFInputError
        For non-numeric values, arrays that are not 1D or 2D, times that do
        not match the signals, no curve, fewer than ``MIN_AIF_FRAMES`` frames,
        NaN or infinite values (naming the curve and frame) and frame times
        that do not increase strictly (naming the curve and frame).
    """
    times = _float_array(times_s, "AIF frame times")
    values = _float_array(signals, "AIF signals")
    if values.ndim not in (1, 2):
        raise AIAIFInputError("The AIF signals must be one curve (n_frames,) or a stack (n, n_frames), got shape "
                              "{}; pass one row per curve.".format(values.shape))
    if values.ndim == 1:
        values = values[None, :]
    n, n_frames = values.shape
    if n == 0:
        raise AIAIFInputError("No AIF curve was given; pass at least one curve.")
    if times.ndim == 1 and times.shape[0] == n_frames:
        times = np.repeat(times[None, :], n, axis=0)
    elif times.shape != (n, n_frames):
        raise AIAIFInputError("The frame times have shape {} but the AIF signals {}; give one time per frame, "
                              "shared (n_frames,) or per curve (n, n_frames).".format(times.shape, values.shape))
    if n_frames < MIN_AIF_FRAMES:
        raise AIAIFInputError("The AIF has {} frames but at least {} are needed; give the whole first-pass "
                              "acquisition, one frame per heartbeat.".format(n_frames, MIN_AIF_FRAMES))
    for array, what in ((values, "signal"), (times, "frame times")):
        bad = ~np.isfinite(array)
        if bad.any():
            curve, frame = np.argwhere(bad)[0]
            raise AIAIFInputError("The {} of AIF curve {} is NaN or infinite at frame {}; repair or remove that "
                                  "frame.".format(what, curve, frame))
    not_increasing = np.diff(times, axis=1) <= 0
    if not_increasing.any():
        curve, frame = np.argwhere(not_increasing)[0]
        raise AIAIFInputError("The frame times of AIF curve {} do not increase at frame {} ({:g} s after {:g} s); "
                              "sort the frames or fix their times.".format(curve, frame + 1, times[curve, frame + 1],
                                                                         times[curve, frame]))
    return times, values


# ---------------------------------------------------------------------------
# Extraction from the images
# ---------------------------------------------------------------------------

def extract_aif_signal(frames, blood_pool_mask, percentile=75.0):
    """AIF of a study: mean of the brightest LV blood-pool pixels in every frame.

    [Scannell2022, "Image analysis"]: "the average of pixels over an ROI
    chosen to comprise the pixels greater than the 75th percentile of
    intensity values within the subendocardial border", i.e. in the LV blood
    pool.  The paper does not say on which frame the percentile is taken.
    Here it is the peak-enhancement frame, the frame with the highest mean
    blood-pool signal: there blood is brightest against the myocardium,
    papillary muscles and partial-volume edge pixels, so the percentile picks
    pure blood.  (Before contrast, blood and myocardium look alike and the
    ranking would be noise.)  The ROI is then fixed and averaged in every
    frame.

    Parameters
    ----------
    frames : array_like, shape (n_frames, ...)
        Image series (signal units), time first, any spatial shape.
    blood_pool_mask : array_like of bool, shape (...)
        LV blood pool (inside the subendocardial border); non-zero is inside.
    percentile : float, optional
        Intensity percentile (0-100) above which pixels are averaged.  When
        no pixel is strictly above it (equal intensities), the pixels at it
        are used.

    Returns
    -------
    numpy.ndarray, shape (n_frames,)
        AIF signal (signal units).

    Raises
    ------
    AIAIFInputError
        For frames without a spatial axis, a mask of another shape, an empty
        mask, a percentile outside 0-100, or NaN or infinite values in the
        blood pool.
    """
    frames = _float_array(frames, "perfusion frames")
    mask = np.asarray(blood_pool_mask)
    if frames.ndim < 2:
        raise AIAIFInputError("The perfusion frames must have a time axis first and at least one spatial axis, "
                              "got shape {}; pass (n_frames, ...) images.".format(frames.shape))
    if mask.shape != frames.shape[1:]:
        raise AIAIFInputError("The LV blood-pool mask has shape {} but the frames have {}; resample the mask onto "
                              "the perfusion frames.".format(mask.shape, frames.shape[1:]))
    mask = mask.astype(bool)
    if not mask.any():
        raise AIAIFInputError("The LV blood-pool mask is empty; draw the blood pool on the perfusion frames.")
    if not (np.isfinite(percentile) and 0.0 <= percentile < 100.0):
        raise AIAIFInputError("The AIF percentile must be in [0, 100), got {!r}; the paper uses 75."
                              .format(percentile))
    pixels = frames[:, mask]
    bad = ~np.isfinite(pixels)
    if bad.any():
        raise AIAIFInputError("Frame {} has NaN or infinite values in the LV blood pool; repair or remove that "
                              "frame.".format(int(np.argwhere(bad)[0, 0])))
    peak_frame = int(np.argmax(pixels.mean(axis=1)))
    at_peak = pixels[peak_frame]
    level = np.percentile(at_peak, percentile)
    region = at_peak > level
    if not region.any():
        region = at_peak >= level
    return pixels[:, region].mean(axis=1)


# ---------------------------------------------------------------------------
# Contrast arrival
# ---------------------------------------------------------------------------

#: Percentile of a frame's voxels that follows the bright blood pools when no ROI exists yet
#: (project choice: at the bolus peak the blood pools are the brightest structures and cover a
#: few per cent of a short-axis field of view).
PEAK_FRAME_PERCENTILE = 99.0

#: Share of the enhancement range (min to max of that percentile curve) a later peak must reach
#: to be taken for the LV's (project choice: the RV's and the LV's first-pass peaks reach about
#: the same brightness, recirculation stays well below).
PEAK_FRAME_LEVEL = 0.9

#: With a blood-pool ROI, the frame of peak LV enhancement is the LV's first-pass peak: the first frame that
#: reaches this share of the LV curve's enhancement range (its minimum to its maximum) and is not exceeded by the
#: ``FIRST_PASS_WINDOW_FRAMES`` frames after it.  Not the curve's maximum: where the blood signal dips at peak
#: concentration (T2* and saturation, strongest at 3 T), the recirculation can be brighter than the first pass,
#: and by then the patient often breathes again (project choice, measured on 40 held-out and 40 of our moving
#: studies, seeds 31-70: every first-pass peak so found lies in the breath-hold, while the maximum of held-out
#: seed 37 at 3 T lies 1.7 pixels away, after it; the upslope rises for several frames, so noise does not stall
#: it for three).
FIRST_PASS_LEVEL = 0.5
FIRST_PASS_WINDOW_FRAMES = 3


def first_pass_peak(curve):
    """Index of the first-pass peak of a blood curve (``FIRST_PASS_LEVEL``, ``FIRST_PASS_WINDOW_FRAMES``).

    Parameters
    ----------
    curve : numpy.ndarray, shape (n_frames,)
        Blood-pool signal of every frame (signal units).

    Returns
    -------
    int
        The first frame that reaches ``FIRST_PASS_LEVEL`` of the curve's
        range, is no lower than the frame before it and is not exceeded by
        the ``FIRST_PASS_WINDOW_FRAMES`` frames after it; the curve's
        maximum when none does.
    """
    curve = np.asarray(curve, dtype=float)
    level = curve.min() + FIRST_PASS_LEVEL * (curve.max() - curve.min())
    for t in range(1, curve.size):
        after = curve[t + 1:t + 1 + FIRST_PASS_WINDOW_FRAMES]
        if curve[t] >= level and curve[t] >= curve[t - 1] and (after.size == 0 or curve[t] >= after.max()):
            return t
    return int(np.argmax(curve))


def peak_enhancement_frame(frames, blood_pool_mask=None):
    """Index of the frame of peak LV blood-pool enhancement, where the ROIs are easiest to draw.

    With a blood-pool mask the frame is the first-pass peak of the AIF
    signal (``extract_aif_signal``, ``first_pass_peak``), which the
    recirculation can outshine at 3 T.  Without one (before any ROI is drawn) the
    ``PEAK_FRAME_PERCENTILE``-th percentile of each frame's voxels follows the
    brightest blood, first the RV's and then, after the pulmonary transit,
    the LV's: the frame is the last local maximum of that curve that reaches
    ``PEAK_FRAME_LEVEL`` of its enhancement range.

    Parameters
    ----------
    frames : array_like, shape (n_frames, ...)
        Signal of every frame (signal units).
    blood_pool_mask : array_like of bool, optional
        LV blood-pool ROI on the frame grid (``frames.shape[1:]``).

    Returns
    -------
    int
        Frame index.

    Raises
    ------
    AIAIFInputError
        For no frames, NaN or infinite values, or a mask of another shape.
    """
    frames = np.asarray(frames, dtype=float)
    if frames.ndim < 2 or frames.shape[0] == 0 or frames[0].size == 0:
        raise AIAIFInputError("The frames must be a non-empty array (n_frames, ...); pass the perfusion series.")
    if blood_pool_mask is not None and np.any(blood_pool_mask):
        return first_pass_peak(extract_aif_signal(frames, blood_pool_mask))
    if not np.all(np.isfinite(frames)):
        raise AIAIFInputError("The frames contain NaN or infinite values; replace them (e.g. by 0) first.")
    bright = np.percentile(frames.reshape(frames.shape[0], -1), PEAK_FRAME_PERCENTILE, axis=1)
    level = bright.min() + PEAK_FRAME_LEVEL * (bright.max() - bright.min())
    padded = np.concatenate(([-np.inf], bright, [-np.inf]))
    peaks = np.flatnonzero((bright >= level) & (bright >= padded[:-2]) & (bright >= padded[2:]))
    return int(peaks[-1])


def _robust_noise_sd(signals):
    """Noise SD of each curve from its second differences (MAD), signal units.

    A second difference of white noise has variance 6 sigma**2; the smooth
    curve adds little except on the upslope, which the median ignores.  On
    simulated curves this overestimates sigma by a median factor of 1.3.
    """
    second = np.diff(signals, n=2, axis=1)
    deviation = np.abs(second - np.median(second, axis=1, keepdims=True))
    return 1.4826 * np.median(deviation, axis=1) / np.sqrt(6.0)


def detect_arrival_index(times_s, signals):
    """Frame of contrast arrival of each saturated AIF: the first enhanced frame.

    The rise is found from the top down, so that noise in the baseline cannot
    trigger it:

    1. noise SD ``sigma`` from the second differences (median absolute
       deviation, robust to the upslope); peak level = second-largest value
       (robust to one spike);
    2. baseline ``b``: median of the frames before arrival, seeded with the
       first three frames and refined three times;
    3. the first frame at or above half the peak enhancement lies on the
       first-pass upslope; walking back from it, the sustained rise is the
       run of frames above ``b + 3 sigma``, and its first frame is the first
       significantly enhanced frame;
    4. the frame before that run counts as enhanced, too, when it lies above
       ``b + 1 sigma`` (the foot of the bolus, often below 3 sigma).

    The result follows the convention of ``arrival_index_from_time`` (the
    first frame at or after the arrival time).  On simulated curves
    (``simulate_aif_pairs``, both field strengths, heart rates 55-120 bpm
    with beat-to-beat variation, noise 0.2-3 % of the peak) the error is
    0 frames for about two thirds of curves, within +-1 frame for more than
    98 % and at most 3 frames; late by one frame when the first frame after
    arrival carries less enhancement than the noise.

    Parameters
    ----------
    times_s : array_like, shape (n_frames,) or (n, n_frames)
        Frame times, s (validated; the detection itself works on frames).
    signals : array_like, shape (n_frames,) or (n, n_frames)
        Saturated AIF signal (signal units).

    Returns
    -------
    numpy.ndarray of int, shape (n,)
        Arrival index of each curve, at least 1.

    Raises
    ------
    AIAIFInputError
        For invalid curves (``validate_aif_curves``), a flat curve (its
        range, without the largest value, below ``MIN_PEAK_ENHANCEMENT_SD``
        noise SDs) and a curve already enhanced at its first frame: the peak
        is less than ``MIN_PEAK_ENHANCEMENT_SD`` noise SDs above the
        baseline, no frame before the rise lies near the baseline, or the
        curve later falls below the supposed baseline by more than half the
        peak enhancement (blood signal stays above its native level while
        contrast is present, so such a "baseline" was on the bolus).
    """
    _, signals = validate_aif_curves(times_s, signals)
    n, n_frames = signals.shape
    rows = np.arange(n)
    frame = np.arange(n_frames)[None, :]
    sigma = _robust_noise_sd(signals)
    peak = np.sort(signals, axis=1)[:, -2]
    baseline = np.median(signals[:, :_INITIAL_BASELINE_FRAMES], axis=1)
    for iteration in range(_BASELINE_ITERATIONS + 1):
        half_index = np.argmax(signals >= (baseline + 0.5 * (peak - baseline))[:, None], axis=1)
        quiet = (signals <= (baseline + ARRIVAL_RISE_THRESHOLD_SD * sigma)[:, None]) & (frame < half_index[:, None])
        last_quiet = np.where(quiet.any(axis=1), n_frames - 1 - np.argmax(quiet[:, ::-1], axis=1), -1)
        found = last_quiet >= 0
        if iteration == _BASELINE_ITERATIONS or not found.any():
            break
        before = np.where(frame <= last_quiet[:, None], signals, np.nan)[found]
        baseline[found] = np.nanmedian(before, axis=1)
    enhancement = peak - baseline
    detectable = MIN_PEAK_ENHANCEMENT_SD * sigma + 1e-9 * np.abs(signals).max(axis=1)
    flat = peak - signals.min(axis=1) <= detectable
    if flat.any():
        curve = int(np.argmax(flat))
        raise AIAIFInputError("AIF curve {} shows no contrast arrival (it varies by less than {:g} noise SDs); check "
                              "the LV blood-pool region and that the frames cover the first pass."
                              .format(curve, MIN_PEAK_ENHANCEMENT_SD))
    # A pre-contrast level that the curve later falls far below was not pre-contrast (a series that starts
    # on the bolus): blood signal stays above its native level while contrast is present.  So was one
    # that the peak hardly exceeds (a series that starts at the peak).
    after_rise = np.where(frame >= half_index[:, None], signals, np.inf)
    falls_below = np.sort(after_rise, axis=1)[:, 1] < baseline - 0.5 * np.maximum(enhancement, 0.0)
    enhanced_at_start = ~found | falls_below | (enhancement <= detectable)
    if enhanced_at_start.any():
        raise AIAIFInputError("AIF curve {} is already enhanced at the first frame, so it has no pre-contrast "
                              "signal; include the frames before the bolus arrives."
                              .format(int(np.argmax(enhanced_at_start))))
    foot = np.maximum(last_quiet, 0)
    foot_enhanced = (last_quiet >= 1) & (signals[rows, foot] > baseline + ARRIVAL_FOOT_THRESHOLD_SD * sigma)
    return np.where(foot_enhanced, last_quiet, last_quiet + 1).astype(int)


# ---------------------------------------------------------------------------
# The network's window and its inverse
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class NetworkInput:
    """Curves in the network's window, with what is needed to undo the window.

    Attributes
    ----------
    curves : numpy.ndarray, shape (n, length)
        Saturated signal in the window divided by ``scale`` (dimensionless);
        padded by repeating the last real frame.
    scale : numpy.ndarray, shape (n,)
        Normalisation: maximum of the saturated signal over the window's real
        frames (signal units).
    start_index : numpy.ndarray of int, shape (n,)
        First original frame of the window (0 when clipped).
    arrival_index : numpy.ndarray of int, shape (n,)
        Frame of contrast arrival (first enhanced frame).
    baseline : numpy.ndarray, shape (n,)
        Pre-contrast signal S0: mean of the frames before ``arrival_index``
        (signal units).
    n_valid : numpy.ndarray of int, shape (n,)
        Window samples that are real frames; the rest is padding.
    times_s : numpy.ndarray, shape (n, n_frames)
        Original frame times, s.
    signals : numpy.ndarray, shape (n, n_frames)
        Original saturated signals (signal units).
    """

    curves: np.ndarray
    scale: np.ndarray
    start_index: np.ndarray
    arrival_index: np.ndarray
    baseline: np.ndarray
    n_valid: np.ndarray
    times_s: np.ndarray
    signals: np.ndarray


def _integer_per_curve(values, n, what):
    array = np.asarray(values)
    if array.ndim == 0:
        array = np.full(n, array)
    if array.shape != (n,):
        raise AIAIFInputError("The {} must be one integer or one per curve ({}), got shape {}; pass one value per "
                              "curve.".format(what, n, array.shape))
    if array.dtype.kind not in "iu":
        try:
            as_float = array.astype(float)
        except (TypeError, ValueError):
            as_float = np.array([np.nan])
        if not (np.all(np.isfinite(as_float)) and np.all(as_float == np.round(as_float))):
            raise AIAIFInputError("The {} must be whole numbers of frames; round them to integers.".format(what))
        array = as_float
    return array.astype(int)


def _positive_integer(value, what):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise AIAIFInputError("The {} must be a positive integer number of frames, got {!r}.".format(what, value))
    return int(value)


def _cut_window(curves, start_index, n_valid, length):
    """Window frames ``start .. start + n_valid - 1``, padded with the last of them."""
    rows = np.arange(curves.shape[0])[:, None]
    index = np.minimum(start_index[:, None] + np.arange(length)[None, :], (start_index + n_valid - 1)[:, None])
    return curves[rows, index]


def prepare_network_input(times_s, signals, arrival_index=None, offset_frames=0, length=K.NETWORK_LENGTH,
                          pre_contrast_beats=K.PRE_CONTRAST_BEATS):
    """Cut, normalise and pad saturated AIFs to the network's input window.

    [Scannell2022, "Training data"]: the window starts ``pre_contrast_beats +
    offset_frames`` frames before the arrival index (clipped at frame 0) and
    holds ``length`` frames; curves are divided by the maximum of the
    saturated signal over the window's real frames (so each window peaks at
    exactly 1).  A window that runs past the last frame is padded by
    repeating the last real value (a flat late curve, as close to the data as
    padding gets, with no step the network could mistake for signal);
    ``n_valid`` records where the padding starts.

    Parameters
    ----------
    times_s : array_like, shape (n_frames,) or (n, n_frames)
        Frame times, s.
    signals : array_like, shape (n_frames,) or (n, n_frames)
        Saturated AIF signal (signal units).
    arrival_index : int or array_like of int, shape (n,), optional
        Frame of contrast arrival (first enhanced frame, 1 to n_frames - 1);
        detected with ``detect_arrival_index`` when omitted.
    offset_frames : int or array_like of int, shape (n,), optional
        Extra pre-contrast frames at the start of the window, >= 0 (the
        paper's training augmentation draws 0-3).
    length : int, optional
        Window length, frames (64 in the paper).
    pre_contrast_beats : int, optional
        Frames kept before arrival, >= 1 (4 in the paper).

    Returns
    -------
    NetworkInput
        The window (``curves``) and everything ``restore_network_output``
        and ``window_like`` need.

    Raises
    ------
    AIAIFInputError
        For invalid curves, an arrival index outside 1 to n_frames - 1, an
        offset that leaves no post-arrival frame in the window, a bad length
        or pre-contrast count, and a window whose maximum is not positive.
    """
    times, values = validate_aif_curves(times_s, signals)
    n, n_frames = values.shape
    length = _positive_integer(length, "window length")
    pre_contrast_beats = _positive_integer(pre_contrast_beats, "number of pre-contrast beats")
    if pre_contrast_beats >= length:
        raise AIAIFInputError("The pre-contrast beats ({}) must be fewer than the window length ({}); keep the "
                              "paper's 4 and 64.".format(pre_contrast_beats, length))
    if arrival_index is None:
        arrival = detect_arrival_index(times, values)
    else:
        arrival = _integer_per_curve(arrival_index, n, "arrival index")
        bad = (arrival < 1) | (arrival > n_frames - 1)
        if bad.any():
            curve = int(np.argmax(bad))
            raise AIAIFInputError("The arrival index of AIF curve {} is {} but must be between 1 and {} (at least one "
                                  "pre-contrast frame); check the arrival frames.".format(curve, arrival[curve],
                                                                                         n_frames - 1))
    offsets = _integer_per_curve(offset_frames, n, "offset frames")
    bad = (offsets < 0) | (offsets > length - pre_contrast_beats - 1)
    if bad.any():
        raise AIAIFInputError("The offset frames must be between 0 and {} (window length minus pre-contrast beats "
                              "minus 1), got {}; the paper uses 0-3.".format(length - pre_contrast_beats - 1,
                                                                           offsets[int(np.argmax(bad))]))
    start = np.maximum(arrival - pre_contrast_beats - offsets, 0)
    n_valid = np.minimum(length, n_frames - start)
    window = _cut_window(values, start, n_valid, length)
    scale = window.max(axis=1)
    if np.any(scale <= 0):
        raise AIAIFInputError("AIF curve {} has no positive signal in its window; pass magnitude signal "
                              "intensities.".format(int(np.argmax(scale <= 0))))
    before = np.arange(n_frames)[None, :] < arrival[:, None]
    baseline = np.where(before, values, 0.0).sum(axis=1) / arrival
    return NetworkInput(curves=window / scale[:, None], scale=scale, start_index=start, arrival_index=arrival,
                        baseline=baseline, n_valid=n_valid, times_s=times, signals=values)


def _check_like_prepared(prepared, values, expected_shape, what):
    array = _float_array(values, what)
    if array.ndim == 1 and prepared.signals.shape[0] == 1:
        array = array[None, :]
    if array.shape != expected_shape:
        raise AIAIFInputError("The {} have shape {} but {} is needed; pass one row per prepared curve."
                              .format(what, array.shape, expected_shape))
    bad = ~np.isfinite(array)
    if bad.any():
        curve, sample = np.argwhere(bad)[0]
        raise AIAIFInputError("The {} of curve {} is NaN or infinite at sample {}; check where they come from."
                              .format(what, curve, sample))
    return array


def window_like(prepared, other_signals):
    """Cut and normalise other curves with exactly the window and scale of ``prepared``.

    Used for the reference (target) of a training pair, so that input and
    target share frames, padding and normalisation by the *saturated* maximum.

    Parameters
    ----------
    prepared : NetworkInput
        Output of ``prepare_network_input``.
    other_signals : array_like, shape (n, n_frames)
        Curves on the same frames as ``prepared.signals`` (signal units).

    Returns
    -------
    numpy.ndarray, shape (n, length)
        The curves in the window divided by ``prepared.scale``, padded by
        repeating their last real frame.

    Raises
    ------
    AIAIFInputError
        For another shape than ``prepared.signals`` or non-finite values.
    """
    values = _check_like_prepared(prepared, other_signals, prepared.signals.shape, "curves to window")
    length = prepared.curves.shape[1]
    return _cut_window(values, prepared.start_index, prepared.n_valid, length) / prepared.scale[:, None]


def restore_network_output(prepared, prediction):
    """Map the network's normalised output back to signal units on the original frames.

    * **Window** (original frames ``start_index`` to ``start_index + n_valid
      - 1``): sample ``m`` goes back to frame ``start_index + m``, multiplied
      by ``scale``; padding is dropped.  Then the window is **shifted** by
      one constant per curve: the mean difference between the input and the
      restored prediction over the window's pre-contrast frames (before
      ``arrival_index``).  The restored curve therefore has the input's
      pre-contrast level: its mean over all frames before arrival equals
      ``prepared.baseline`` (the ``correct`` contract), and linear
      conversion with the input's S0 gives zero concentration before
      arrival.
    * **Before the window** (pre-contrast frames, zero concentration, where
      saturated and unsaturated signals coincide): the input values are kept,
      real measurements with their own noise rather than an invented level.
    * **After the window** (acquisitions longer than ``length`` frames from
      the window start): the input's late enhancement is multiplied by a gain,
      ``S0 + g (S_input(t) - S0)``.  Saturation acts as a gain below 1 on the
      enhancement that varies slowly with the (low, slowly varying) late
      concentration, so ``g`` is the least-squares ratio of the restored to
      the input enhancement over the last ``CONTINUATION_FRAMES`` window
      frames; the continuation thus joins the prediction at the window end
      without a step beyond the noise.  ``g`` is limited to [1, peak gain]:
      saturation never increases enhancement, and it is strongest at the
      peak concentration, so the late gain cannot exceed the ratio of the
      restored to the input peak enhancement.

    When ``prediction == prepared.curves`` the result is the input curve
    (to rounding) on every frame.

    Parameters
    ----------
    prepared : NetworkInput
        Output of ``prepare_network_input``.
    prediction : array_like, shape (n, length)
        Network output, normalised like ``prepared.curves`` (dimensionless).

    Returns
    -------
    numpy.ndarray, shape (n, n_frames)
        Corrected (unsaturated) AIF signal (signal units) at
        ``prepared.times_s``.

    Raises
    ------
    AIAIFInputError
        For a prediction of another shape than ``prepared.curves`` or with
        non-finite values.
    """
    prediction = _check_like_prepared(prepared, prediction, prepared.curves.shape, "network predictions")
    n, length = prediction.shape
    n_frames = prepared.signals.shape[1]
    rows = np.arange(n)[:, None]
    sample = np.arange(length)[None, :]
    start, n_valid, baseline = prepared.start_index, prepared.n_valid, prepared.baseline

    restored_window = prediction * prepared.scale[:, None]
    input_window = _cut_window(prepared.signals, start, n_valid, length)
    n_pre = np.minimum(prepared.arrival_index - start, n_valid)
    pre = sample < n_pre[:, None]
    shift = np.where(pre, input_window - restored_window, 0.0).sum(axis=1) / n_pre
    restored_window = restored_window + shift[:, None]

    restored = prepared.signals.copy()
    valid = sample < n_valid[:, None]
    target = np.broadcast_to(start[:, None] + sample, (n, length))
    restored[np.broadcast_to(rows, (n, length))[valid], target[valid]] = restored_window[valid]

    window_end = start + n_valid
    if np.any(window_end < n_frames):
        input_enhancement = input_window - baseline[:, None]
        restored_enhancement = restored_window - baseline[:, None]
        last = valid & (sample >= (n_valid - CONTINUATION_FRAMES)[:, None])
        numerator = np.where(last, input_enhancement * restored_enhancement, 0.0).sum(axis=1)
        denominator = np.where(last, input_enhancement ** 2, 0.0).sum(axis=1)
        gain = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), 1.0)
        input_peak = np.where(valid, input_enhancement, -np.inf).max(axis=1)
        restored_peak = np.where(valid, restored_enhancement, -np.inf).max(axis=1)
        peak_gain = np.where(input_peak > 0, restored_peak / np.where(input_peak > 0, input_peak, 1.0), 1.0)
        gain = np.clip(gain, 1.0, np.maximum(peak_gain, 1.0))
        after = np.arange(n_frames)[None, :] >= window_end[:, None]
        continuation = baseline[:, None] + gain[:, None] * (prepared.signals - baseline[:, None])
        restored = np.where(after, continuation, restored)
    return restored


# ---------------------------------------------------------------------------
# AIF files (the ``correct`` command's contract, and external AIFs)
# ---------------------------------------------------------------------------

#: Name of the time column of AIF CSV files, s.
TIME_COLUMN = "time_s"


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _cut(text, length=40):
    """``text`` quoted, cut to ``length`` characters (a message quotes a cell or header, never a whole file)."""
    return repr(text if len(text) <= length else text[:length] + "...")


def read_aif_csv(path):
    """Read AIF signal curves from CSV: first column ``time_s``, one column per curve.

    Parameters
    ----------
    path : str
        CSV file with a header row; first column ``time_s`` (s), each further
        column one AIF signal curve (signal units).

    Returns
    -------
    times_s : numpy.ndarray, shape (n_frames,)
        Frame times, s.
    names : list of str
        Column names of the curves.
    curves : numpy.ndarray, shape (n_curves, n_frames)
        Signals, validated by ``validate_aif_curves``.
    """
    import csv

    if os.path.isdir(path):
        raise AIAIFInputError("The AIF file {} is a folder, not a file; give the path of a CSV file.".format(path))
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a spreadsheet's byte-order mark
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except OSError as error:
        raise AIAIFInputError("Cannot read the AIF file {} ({}); check the path.".format(
            path, error.strerror or error))
    except (UnicodeDecodeError, csv.Error):
        raise AIAIFInputError("The AIF file {} is not a readable CSV text file; save it as CSV.".format(path))
    if not rows:
        raise AIAIFInputError("The AIF file {} is empty; give a header row and one row per frame.".format(path))
    header = [cell.strip() for cell in rows[0]]
    if header[0].lower() != TIME_COLUMN:
        raise AIAIFInputError("The AIF file {} must start with a header '{},<curve name>,...' (got {}); name "
                              "the first column {} (seconds).".format(path, TIME_COLUMN, _cut(",".join(header)),
                                                                      TIME_COLUMN))
    if len(header) < 2:
        raise AIAIFInputError("The AIF file {} has only the column {} and no AIF signal; add a column with the "
                              "signal, e.g. header '{},signal'.".format(path, header[0], TIME_COLUMN))
    if len(set(header)) != len(header) or any(not name for name in header):
        raise AIAIFInputError("The AIF file {} has empty or repeated column names; give each curve a unique "
                              "name.".format(path))
    values = np.empty((len(rows) - 1, len(header)))
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise AIAIFInputError("Line {} of {} has {} cells but the header has {}; give every row one value per "
                                  "column.".format(number, path, len(row), len(header)))
        try:
            values[number - 2] = [float(cell) for cell in row]
        except ValueError:
            raise AIAIFInputError("Line {} of {} holds a cell that is not a number ({}); use plain decimal "
                                  "numbers.".format(number, path, _cut(next(cell for cell in row if not _is_number(
                                      cell))))) from None
    times, curves = validate_aif_curves(values[:, 0], values[:, 1:].T)
    return times[0], header[1:], curves


def write_aif_csv(path, times_s, names, curves):
    """Write AIF curves in the format ``read_aif_csv`` reads.

    Parameters
    ----------
    path : str
        File to write.
    times_s : array_like, shape (n_frames,)
        Frame times, s.
    names : sequence of str
        Curve column names.
    curves : array_like, shape (n_curves, n_frames)
        Signals.
    """
    import csv

    curves = np.asarray(curves, dtype=float).reshape(len(names), -1)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([TIME_COLUMN] + list(names))
        for frame, time_s in enumerate(np.asarray(times_s, dtype=float)):
            writer.writerow([repr(float(time_s))] + [repr(float(value)) for value in curves[:, frame]])

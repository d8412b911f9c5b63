"""``auto`` mode's decision: whether the whole heart moved."""

import numpy as np

#: In ``auto`` mode the frames are resampled when at least ``AUTO_MIN_FRAMES`` of the frames the registration
#: could follow lie more than ``AUTO_THRESHOLD_PX`` from the ROI frame, as the median over the slices with ROIs
#: (project choice, measured with the benchmark: on still phantoms the estimates stay below about 1.1 pixels,
#: and where one slice's reach 1.7 pixels, on a held-out study whose ROI frame is a late one, the other slices'
#: stay under 0.5; a failed breath-hold or free breathing of 4-8 mm moves every slice of several frames by 1.5
#: pixels or more) ...
AUTO_THRESHOLD_PX = 1.5
AUTO_MIN_FRAMES = 3
#: ... or when, with two slices or more, at least ``AUTO_MIN_STEPS`` steps from one such frame to the next moved
#: every slice by more than ``AUTO_STEP_PX`` along the slices' median step: breathing with a period of 3-5
#: heartbeats moves the whole heart back and forth by most of its amplitude from one frame to the next, the same
#: way in every slice, while the registration's errors on a still series drift with the contrast or jitter
#: independently in each slice (project choice, measured on 40 held-out and 20 of our studies, each still and
#: moving, and our phantoms of seeds 1-6 still at 1.5 and 3 T: the 4th such step of a still study 0.25 pixel at
#: most (0.19 before the first-pass runs were tied), of a moving one 0.73 pixel at least, including breathing of
#: about 1 pixel that the first clue misses; the step lengths alone, median over the slices, would not separate
#: them: 0.80 pixel still, 0.79 moving).
AUTO_STEP_PX = 0.4
AUTO_MIN_STEPS = 4


def breathing_moved(shift_px):
    """Whether ``auto`` resamples: the whole heart moved far, or back and forth.

    ``shift_px`` (frames x slices x 2, pixels) holds the frames the
    registration could follow and the slices with ROIs.  Breathing moves the
    whole heart, so every slice of a frame, and the same way; the
    registration's errors differ from slice to slice (a late ROI frame, a
    contrast its references do not follow, the jitter of dark, noisy frames
    before the contrast).  The heart moved when at least ``AUTO_MIN_FRAMES``
    frames lie more than ``AUTO_THRESHOLD_PX`` from the ROI frame in the
    median slice, or when, with two slices or more, at least
    ``AUTO_MIN_STEPS`` steps from one frame to the next moved every slice by
    more than ``AUTO_STEP_PX`` along the slices' median step.
    """
    if shift_px.size == 0:
        return False
    far = np.median(np.linalg.norm(shift_px, axis=-1), axis=1) > AUTO_THRESHOLD_PX
    if np.count_nonzero(far) >= AUTO_MIN_FRAMES:
        return True
    if shift_px.shape[1] < 2:
        return False
    step = np.diff(shift_px, axis=0)
    common = np.median(step, axis=1)
    direction = common / np.maximum(np.linalg.norm(common, axis=-1, keepdims=True), 1e-12)
    together = np.min(np.einsum("tkc,tc->tk", step, direction), axis=1)
    return bool(np.count_nonzero(together > AUTO_STEP_PX) >= AUTO_MIN_STEPS)

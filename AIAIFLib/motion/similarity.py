"""Similarity measures between two images of different contrast, and the translation that maximises each.

Mutual information (SimpleITK's Mattes metric) and normalised gradient
fields (Haber & Modersitzki, Methods Inf Med 2007;46:292-9).
"""

import numpy as np
from scipy import ndimage

#: Histogram bins of the mutual information (project choice: few tissue classes in a short-axis slice), and the
#: optimiser's iterations at most (one that has not converged by then gives no answer).
MUTUAL_INFORMATION_BINS = 32
MUTUAL_INFORMATION_ITERATIONS = 200
#: Gaussian derivatives of the normalised gradient fields, SD, pixels (project choice, measured with the pre-contrast
#: group's tie, ``groups.GRADIENT_SMOOTHING_PX``).
NGF_SMOOTHING_PX = 0.7
#: Steps (pixels) of the normalised gradient fields' search: a 5 x 5 grid of each step around the best so far.
NGF_STEPS_PX = (0.5, 0.25, 0.1, 0.05, 0.025)


def mutual_information_offset(fixed, moving, mask, starts, fixed_corner=0, keep_starts=False):
    """Translation (row, column), pixels, with moving(u + offset) ~ fixed(u) by Mattes mutual information.

    ``fixed`` (with ``mask``) covers the pixels ``fixed_corner`` onwards of
    ``moving``'s grid, so that the moving image reaches beyond the fixed one
    whatever the offset.  SimpleITK's registration on two images of
    different contrast, from each of ``starts`` (row, column offsets); the start whose
    optimum has the best metric wins, as the metric has local optima between
    images of different contrast.  With ``keep_starts`` the starts themselves
    compete too: the regular-step optimiser does not check the metric, and
    from a cusp of it (linear interpolation makes one wherever the two
    grids align) its first steps can climb out of the optimum and settle
    pixels away, at a worse metric.  Every pixel is used (no random
    sampling) and one thread, so the result is reproducible.  Returns the
    offset, whether the optimiser converged, and the metric's gain: its
    relative improvement over the first start (a share of the first start's
    value; NaN without ``keep_starts``).
    """
    import SimpleITK as sitk

    fixed_image = sitk.GetImageFromArray(np.ascontiguousarray(fixed, dtype=np.float32))
    fixed_image.SetOrigin((float(fixed_corner), float(fixed_corner)))
    moving_image = sitk.GetImageFromArray(np.ascontiguousarray(moving, dtype=np.float32))
    best, first = None, np.nan
    for start in starts:
        method = sitk.ImageRegistrationMethod()
        method.SetNumberOfThreads(1)
        method.SetMetricAsMattesMutualInformation(MUTUAL_INFORMATION_BINS)
        method.SetMetricSamplingStrategy(method.NONE)
        mask_image = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.uint8))
        mask_image.CopyInformation(fixed_image)
        method.SetMetricFixedMask(mask_image)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetOptimizerAsRegularStepGradientDescent(learningRate=0.5, minStep=1e-4,
                                                        numberOfIterations=MUTUAL_INFORMATION_ITERATIONS)
        method.SetInitialTransform(sitk.TranslationTransform(2, (float(start[1]), float(start[0]))), inPlace=False)
        if keep_starts:
            value = method.MetricEvaluate(fixed_image, moving_image)
            first = value if np.isnan(first) else first
            if best is None or value < best[0]:
                best = (value, np.array([float(start[0]), float(start[1])]))
        transform = method.Execute(fixed_image, moving_image)
        value = method.GetMetricValue()  # negative mutual information: lower is better
        column, row = transform.GetParameters()
        converged = method.GetOptimizerIteration() < MUTUAL_INFORMATION_ITERATIONS
        if converged and (best is None or value < best[0]):
            best = (value, np.array([row, column]))
    if best is None:
        return np.zeros(2), False, np.nan
    return best[1], True, (first - best[0]) / abs(first) if first else np.nan


def _gradient(image, sigma_px):
    """Gaussian derivatives (rows, columns) of ``image``, SD ``sigma_px`` pixels."""
    return (ndimage.gaussian_filter(image, sigma_px, order=(1, 0), mode="nearest"),
            ndimage.gaussian_filter(image, sigma_px, order=(0, 1), mode="nearest"))


def _normalised(rows, columns, edge_squared):
    """A gradient field divided by its length, edges weighed against ``edge_squared`` (the image's mean squared
    gradient): near 1 along the edges, near 0 where only noise varies."""
    length = np.sqrt(rows ** 2 + columns ** 2 + edge_squared + np.finfo(float).tiny)
    return rows / length, columns / length


def _phases(size, offsets):
    """Phase ramps (len(offsets), size) that move a spectrum of length ``size`` by each of ``offsets``, pixels:
    the spectrum times a ramp, transformed back, is the signal at u + offset (FFT frequency order)."""
    return np.exp(2j * np.pi * np.outer(offsets, np.fft.fftfreq(size)))


def moved_fields(spectrum, corner, shape, row_offsets, column_offsets):
    """The signal whose 2-D spectrum is ``spectrum`` at u + (row offset, column offset), on the ``shape`` pixels
    from ``corner`` on, for every pair of ``row_offsets`` and ``column_offsets`` (pixels, fractional allowed):
    complex, (len(row_offsets), len(column_offsets)) + ``shape``.

    ``numpy.fft.ifft2(scipy.ndimage.fourier_shift(spectrum, -offset))`` cut
    to those pixels, for all pairs in one batch of transforms: a Fourier
    shift is separable, so each pair's phase ramp is the product of a row
    ramp and a column ramp (``_phases``).  No BLAS: the same result on every
    machine.
    """
    rows = _phases(spectrum.shape[0], row_offsets)[:, None, :, None]
    columns = _phases(spectrum.shape[1], column_offsets)[None, :, None, :]
    moved = np.fft.ifft2(spectrum * rows * columns)
    return moved[..., corner:corner + shape[0], corner:corner + shape[1]]


def orientation_offset(fixed, moving, weight, fixed_corner, start):
    """Translation (row, column), pixels, with moving(u + offset) ~ fixed(u) by normalised gradient fields.

    The weighted sum of the squared cosines of the angles between the two
    images' gradients is maximised over a grid of each of
    ``NGF_STEPS_PX`` around the best so far, from ``start``: it rewards
    edges where they lie, whichever side is brighter, and ignores edges
    that only one image has.  ``fixed`` (with ``weight``) covers the pixels
    ``fixed_corner`` onwards of ``moving``'s grid, as in
    ``mutual_information_offset``.  The moving image's gradient is moved
    by Fourier shifts (``moved_fields``, each grid's 5 x 5 candidates at
    once), which keep its noise as it is at every offset, and
    normalised after each shift: an interpolating spline smooths the noise
    at fractional offsets and not at whole ones, and so does moving the
    normalised field itself (an average of unit vectors is shorter); the
    squared cosines, which grow with the field's length, would then pull
    the search to whole pixels where only noise varies.
    """
    rows, columns = _gradient(fixed, NGF_SMOOTHING_PX)
    fixed_rows, fixed_columns = _normalised(rows, columns, np.mean(rows ** 2 + columns ** 2))
    rows, columns = _gradient(moving, NGF_SMOOTHING_PX)
    edge_squared = np.mean(rows ** 2 + columns ** 2)
    spectrum = np.fft.fft2(rows + 1j * columns)  # both (linear) derivatives moved by one transform
    steps = np.arange(-2, 3, dtype=float)
    best = np.asarray(start, dtype=float)
    for step in NGF_STEPS_PX:
        row_offsets, column_offsets = best[0] + step * steps, best[1] + step * steps
        moved = moved_fields(spectrum, fixed_corner, fixed.shape, row_offsets, column_offsets)
        moved_rows, moved_columns = _normalised(moved.real, moved.imag, edge_squared)
        alignment = (weight * (moved_rows * fixed_rows + moved_columns * fixed_columns) ** 2).sum(axis=(2, 3))
        row, column = np.unravel_index(int(np.argmax(alignment)), alignment.shape)
        best = np.array([row_offsets[row], column_offsets[column]])
    return best

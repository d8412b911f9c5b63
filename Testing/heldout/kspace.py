"""Image formation from k-space: each phase-encoding line carries the signal of the pulse that acquired it.

The readout modulates k-space line by line (the signal changes from pulse to
pulse as Mz evolves during the readout), so the image is not the k-space
centre's contrast: it is the object's k-space multiplied by the line
modulation, zero-filled where lines are missing (partial Fourier, reduced
phase resolution), and transformed back.  Large structures take their
contrast from the lines near the centre, small and thin ones (the myocardial
wall) from a wider band; edges ring and blur.  Rows (axis -2 of a slice) are
the phase-encoding direction; the frequency-encoding direction is sampled
within one TR, so it is not modulated.
"""

import numpy as np


def rows_modulation(readout, n_rows, line_values):
    """Per-row k-space modulation from per-line values.

    Parameters
    ----------
    readout : readout.Readout
        The acquisition (line order, k-space extent).
    n_rows : int
        Reconstructed rows (phase-encoding direction).
    line_values : numpy.ndarray, (..., n_lines)
        A value per acquired line (e.g. a signal basis vector).

    Returns
    -------
    numpy.ndarray, (..., n_rows)
        The value of the line each row takes, in ``numpy.fft`` order; 0 for
        zero-filled rows.
    """
    source = readout.kspace_modulation_index(n_rows)
    values = np.asarray(line_values)[..., np.maximum(source, 0)]
    return np.where(source >= 0, values, 0.0)


def pixel_line_weights(readout, profile, pixels):
    """Weights turning per-line signals into the reconstructed value of chosen pixels of a 1-D object.

    For an object with profile ``profile`` (signal 1 where it is, along the
    phase-encoding direction, the same signal per line everywhere in it), the
    complex value reconstructed at pixel ``y`` is ``sum_l w[y, l] * s_l`` for
    line signals ``s_l``; a constant ``s`` on every line gives ``s * profile``
    where k-space is complete.

    Parameters
    ----------
    readout : readout.Readout
        The acquisition.
    profile : numpy.ndarray, (n_rows,)
        Object profile on the reconstructed rows (partial volume allowed).
    pixels : array_like of int
        Rows whose values are wanted.

    Returns
    -------
    numpy.ndarray of complex, (len(pixels), n_lines)
    """
    n_rows = profile.size
    spectrum = np.fft.fft(profile)
    source = readout.kspace_modulation_index(n_rows)
    phase = np.exp(2j * np.pi * np.outer(np.asarray(pixels), np.arange(n_rows)) / n_rows)
    contribution = phase * spectrum[None, :] / n_rows
    weights = np.zeros((contribution.shape[0], readout.n_lines), complex)
    for line in range(readout.n_lines):
        weights[:, line] = contribution[:, source == line].sum(axis=1)
    return weights


def synthesise(coefficients, row_basis):
    """Complex images from coefficient maps of a per-line signal basis.

    Parameters
    ----------
    coefficients : numpy.ndarray, complex, (..., r, n_rows, n_cols)
        Map of each basis function's coefficient (the object's signal
        expressed in the basis, partial volume included).
    row_basis : numpy.ndarray, complex, (r, n_rows)
        Basis functions on the k-space rows (``rows_modulation``).

    Returns
    -------
    numpy.ndarray, complex, (..., n_rows, n_cols)
    """
    spectrum = np.fft.fft(coefficients, axis=-2)
    modulated = np.sum(spectrum * row_basis[:, :, None], axis=-3)
    return np.fft.ifft(modulated, axis=-2)

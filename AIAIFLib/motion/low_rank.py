"""Synthetic references of each frame's own contrast: the series' low-rank approximation, the frame left out.

Motion is not low-rank, contrast change is: the first principal components of
a slice's frames carry the contrast of every frame at the series' common
position (progressive principal-component registration, Melbourne et al.,
Phys Med Biol 2007).
"""

import numpy as np

#: Number of principal components of the synthetic references in each round of the progressive
#: registration (project choice: a baseline and the blood's contrast first, then the myocardium's and the
#: slower tissue's; more than about five would begin to model the motion itself).
LOW_RANK_SCHEDULE = (2, 3, 4, 5)
#: Steps of the subspace iteration for the leading principal components (project choice: the eigenvalues of
#: a perfusion series fall off fast, and 40 steps settle the subspace to far below the noise).
SUBSPACE_ITERATIONS = 40
#: Largest share of a frame's own term in its low-rank fit that is compensated when it is left out (project
#: choice: beyond it the other frames barely represent the frame, and rescaling would only amplify noise).
MAX_LEVERAGE = 0.9


def _leading_eigenvectors(gram, rank):
    """The ``rank`` leading eigenvectors (n, rank) of a symmetric positive semi-definite matrix (n, n).

    Orthogonal (subspace) iteration with Gram-Schmidt, in plain numpy: the
    matrices are tiny (frames x frames), and LAPACK's threaded routines
    spend far longer waiting for their threads on a busy machine than
    computing.  Starts from the unit vectors of the largest diagonal entries;
    ``SUBSPACE_ITERATIONS`` steps (the hat matrix needs the subspace, not
    exact vectors).
    """
    n = gram.shape[0]
    rank = min(rank, n)
    basis = np.zeros((n, rank))
    basis[np.argsort(-np.diag(gram), kind="stable")[:rank], np.arange(rank)] = 1.0
    for _ in range(SUBSPACE_ITERATIONS):
        basis = np.einsum("ij,jr->ir", gram, basis)
        for r in range(rank):
            for q in range(r):
                basis[:, r] -= np.dot(basis[:, q], basis[:, r]) * basis[:, q]
            norm = np.sqrt(np.dot(basis[:, r], basis[:, r]))
            basis[:, r] = basis[:, r] / norm if norm > 0 else 0.0
    return basis


def low_rank_references(images, weight, rank):
    """Each frame's synthetic reference: the series' rank-``rank`` approximation without the frame's own share.

    The rank-``rank`` approximation of the frames (n, h, w), fitted where the
    weight is positive, is ``H @ X`` with the temporal hat matrix
    ``H = U_r U_r^T`` (``U_r``: the first eigenvectors of the frames' Gram
    matrix, so one small eigen-decomposition per call).  A frame's own term
    ``H[t, t] x_t`` is taken out and the rest rescaled by ``1 / (1 - H[t, t])``
    (the leave-one-out fit of a linear smoother): a frame of unusual
    contrast, or one still misregistered, would otherwise shape its own
    reference, and the registration would stay where it is.  A frame the
    others cannot represent gets a faint reference, whose low gain stops its
    registration (``MIN_GAIN``) instead of moving it anywhere.
    """
    inside = weight > 0
    matrix = images[:, inside]
    # einsum's own loops, not BLAS or LAPACK: the same sums on every machine, and no threads to wait for.
    top = _leading_eigenvectors(np.einsum("ip,jp->ij", matrix, matrix), rank)
    hat = np.einsum("ir,jr->ij", top, top)
    own = np.clip(np.diag(hat), 0.0, MAX_LEVERAGE)
    np.fill_diagonal(hat, 0.0)
    approximation = np.zeros_like(images)
    approximation[:, inside] = np.einsum("ij,jp->ip", hat / (1.0 - own)[:, None], matrix)
    return approximation

"""The result of a Fermi fit, the same for the reference and the batched fit."""

from dataclasses import dataclass

import numpy as np

from .model import FERMI_LOWER_BOUNDS, FERMI_PARAMETERS, FERMI_UPPER_BOUNDS, flow_to_mbf

#: Fraction of a parameter's range within which it counts as at a bound.
AT_BOUND_TOLERANCE = 1e-3


@dataclass(frozen=True)
class FermiFit:
    """Result of a Fermi fit: scalars for one curve, arrays (n_curves,) for many.

    Attributes
    ----------
    flow_per_s, tau0_s, k_per_s, delay_s
        Fitted Fermi parameters (see ``fermi_residue``).
    nrmse
        RMS of the residual divided by the RMS of the tissue curve (NaN for an
        all-zero curve).
    converged
        The solver reported convergence and the parameters are finite.
    at_bound
        A parameter ended at one of its bounds (within ``AT_BOUND_TOLERANCE``
        times its range), except the delay and the shoulder tau0 at 0: no
        delay, and a response falling from onset, are ordinary, not signs of
        a failed fit.
    fitted_mM
        Model tissue curve at the frame times, shape (n_frames,) or
        (n_curves, n_frames).
    """

    flow_per_s: object
    tau0_s: object
    k_per_s: object
    delay_s: object
    nrmse: object
    converged: object
    at_bound: object
    fitted_mM: np.ndarray

    @property
    def mbf_ml_min_g(self):
        """MBF, mL/min/g (``flow_to_mbf`` of the flow)."""
        return flow_to_mbf(self.flow_per_s)


def _at_bound(params):
    """``FermiFit.at_bound`` for parameters (..., 4); False where a parameter is NaN."""
    lower, upper = np.asarray(FERMI_LOWER_BOUNDS), np.asarray(FERMI_UPPER_BOUNDS)
    tolerance = AT_BOUND_TOLERANCE * (upper - lower)
    with np.errstate(invalid="ignore"):
        near_lower = np.asarray(params) - lower <= tolerance
        near_upper = upper - np.asarray(params) <= tolerance
    # No delay and no shoulder (tau0 = 0: the response falls from onset, as a
    # compartment's does) are ordinary shapes, not signs of a failed fit.
    near_lower[..., FERMI_PARAMETERS.index("delay_s")] = False
    near_lower[..., FERMI_PARAMETERS.index("tau0_s")] = False
    return np.any(near_lower, axis=-1) | np.any(near_upper, axis=-1)

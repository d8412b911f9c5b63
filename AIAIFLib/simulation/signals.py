"""Signal of the standard saturation-recovery FLASH slices, for a batch of acquisitions.

``acquisition_signal`` gives a tissue's signal from its concentration and
native relaxation (``sequence.saturation_recovery_flash_signal``), with the
slice profile of ``slice_edge_fraction``; ``blood_signal`` is that of the LV
blood pool.
"""

import numpy as np

from .. import constants as K
from ..sequence import relaxation_rate_per_s, saturation_recovery_flash_signal
from .parameters import SLICE_EDGE_EFFICIENCY_FACTOR, SLICE_EDGE_FLIP_FACTOR


def acquisition_signal(conc_mM, t1_native_s, r2star_native_per_s, params):
    """Signal of a tissue on the standard slices, for a batch of acquisitions.

    Parameters
    ----------
    conc_mM : array_like, shape (n, m)
        Contrast concentration, mM.
    t1_native_s, r2star_native_per_s : array_like, shape (n,) or scalar
        Native T1 (s) and native R2* (1/s) of the tissue.
    params : dict of numpy.ndarray, each shape (n,)
        Sequence parameters and R2* relaxivity (``draw_aif_parameters``);
        ``signal_scale`` is the equilibrium magnetisation (equal proton density
        for all tissues, the assumption behind the paper's linear conversion).

    Returns
    -------
    numpy.ndarray, shape (n, m)
        Noise-free signal in scanner units.
    """
    col = {key: np.asarray(params[key], dtype=float)[:, None] for key in (
        "r2star_per_s_per_mM", "saturation_time_s", "repetition_time_s", "flip_angle_deg",
        "flip_angle_factor", "pulses_to_centre", "saturation_efficiency", "echo_time_s", "signal_scale")}
    t1 = np.reshape(np.asarray(t1_native_s, dtype=float), (-1, 1))
    r2star_native = np.reshape(np.asarray(r2star_native_per_s, dtype=float), (-1, 1))
    r1 = relaxation_rate_per_s(1.0 / t1, K.R1_RELAXIVITY_PER_S_PER_MM, conc_mM)
    r2star = relaxation_rate_per_s(r2star_native, col["r2star_per_s_per_mM"], conc_mM)

    def signal(flip_factor, efficiency_factor):
        return saturation_recovery_flash_signal(
            r1,
            saturation_time_s=col["saturation_time_s"],
            repetition_time_s=col["repetition_time_s"],
            flip_angle_deg=col["flip_angle_deg"] * col["flip_angle_factor"] * flip_factor,
            pulses_to_centre=col["pulses_to_centre"],
            saturation_efficiency=col["saturation_efficiency"] * efficiency_factor,
            echo_time_s=col["echo_time_s"],
            r2star_per_s=r2star,
            proton_density=col["signal_scale"],
        )

    centre = signal(1.0, 1.0)
    edge_fraction = params.get("slice_edge_fraction")
    if edge_fraction is None or not np.any(edge_fraction):
        return centre
    edge_fraction = np.asarray(edge_fraction, dtype=float)[:, None]
    edge = signal(SLICE_EDGE_FLIP_FACTOR, SLICE_EDGE_EFFICIENCY_FACTOR)
    return (1.0 - edge_fraction) * centre + edge_fraction * edge


def blood_signal(conc_mM, params):
    """Saturated signal of the LV blood pool on the standard slices.

    Parameters
    ----------
    conc_mM : array_like, shape (n, m)
        Blood concentration, mM.
    params : dict of numpy.ndarray, each shape (n,)
        Sequence and relaxation parameters (``draw_aif_parameters``).

    Returns
    -------
    numpy.ndarray, shape (n, m)
        Noise-free signal in scanner units.
    """
    return acquisition_signal(conc_mM, params["t1_blood_s"], params["r2star_blood_native_per_s"], params)

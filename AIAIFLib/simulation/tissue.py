"""Myocardial tissue models: residues normalised to 1 at t = 0, and the tissue concentration they give.

The capillary-transit model (``capillary_transit_residue``) is the phantom's
default; the two-compartment exchange model (``two_compartment_residue``) is
the alternative (``TISSUE_MODELS``).

Flow and ground-truth MBF
-------------------------
Every tissue model here is written as ``C_tissue(t) = F_b * (C_blood * R)(t)``
with the blood concentration ``C_blood`` as input and a residue ``R`` that is
1 at ``t = 0``: the impulse response ``F_b * R(t)`` starts at the blood flow
``F_b`` (mL blood / s / mL tissue).  That onset height is what Fermi-constrained
deconvolution estimates as flow [JeroschHerold1998], and the ground-truth MBF
is ``60 * F_b / 1.05 g/mL`` mL/min/g (``constants.TISSUE_DENSITY_G_PER_ML``).
How closely a Fermi fit recovers ``F_b`` depends on the shape of ``R`` and on
the frames fitted.  The capillary-transit residue stays near 1 for the
capillary transit time, as the Fermi shoulder assumes; the 2CXM residue falls
at once, which a fit on one frame per heartbeat cannot resolve, so it reads a
lower flow.  Measured with the per-curve reference fit
(``deconvolution.fit_fermi_curves``) on the noise-free segment-mean curves of
8 phantoms with the true AIF (``Testing/benchmarks/fermi_vs_tissue_model.py``):
fitting the whole ~60-beat curve, the fitted / true flow ratio falls with
flow (median 1.06 below 1.4 mL/min/g, 0.74 at 2.4-3.2, 0.63 at 3.2-4.1)
because the Fermi roll-off also has to follow the slow interstitial washout;
fitting the first pass only (frames up to 6 s after the AIF peak) gives
ratios 1.04, 1.05, 0.94 and a segment bias of -0.03 mL/min/g (SD 0.26).  The
2CXM gives 0.91, 0.73, 0.67 with the same window.  The pipeline's window is
read off the AIF instead (``deconvolution.first_pass_end_s``: the trough
before recirculation, at least 5 s after the peak), which gives 1.04, 1.03,
0.91 (2CXM 0.89, 0.73, 0.66) without a number tuned to this simulator.
"""

import numpy as np
from scipy import special

from .. import constants as K


def capillary_transit_residue(times_s, blood_flow_per_s, permeability_surface_per_s, blood_volume_fraction,
                              interstitial_volume_fraction, capillary_transit_cv, haematocrit=K.HAEMATOCRIT):
    """Residue of the tissue-homogeneity model with gamma-distributed capillary transit times.

    Each capillary is the adiabatic approximation to the tissue-homogeneity
    model (AATH) [St Lawrence & Lee 1998]: tracer stays intravascular
    (``R = 1``) for the capillary transit time ``Tc``, then the extracted
    fraction ``E = 1 - exp(-PS / Fp)`` washes out of the interstitium at
    ``k_ep = E * Fp / ve``.  Transit times vary between capillaries; averaging
    the AATH over a gamma distribution of ``Tc`` with mean ``vb / Fb`` and
    coefficient of variation ``cv`` (shape ``a = 1 / cv**2``, scale
    ``theta = vb / (Fb a)``) gives the closed form of Schabel (MRM 2012)::

        R(t) = Q(a, t / theta) + E exp(-k_ep t) (1 - k_ep theta)**(-a) P(a, t (1 / theta - k_ep))

    with ``P`` and ``Q`` the regularised lower and upper incomplete gamma
    functions.  ``R(0) = 1``, so the impulse response ``Fb * R`` starts at the
    blood flow, and ``cv -> 0`` gives the plain AATH.  The closed form needs
    ``k_ep * theta < 1``; here ``k_ep theta = E vp / (ve a) < vp / ve``,
    below 1 for any tissue with more interstitial than plasma volume.

    Parameters
    ----------
    times_s : array_like
        Times after the impulse, s (>= 0).
    blood_flow_per_s : array_like
        Blood flow Fb, mL blood per s per mL tissue (1/s).
    permeability_surface_per_s : array_like
        Permeability-surface area product PS, 1/s.
    blood_volume_fraction, interstitial_volume_fraction : array_like
        ``vb`` and ``ve``, mL per mL tissue.
    capillary_transit_cv : array_like
        Coefficient of variation of the capillary transit times (> 0).
    haematocrit : float, optional
        Blood haematocrit (plasma flow ``Fp = Fb (1 - Hct)``).

    Returns
    -------
    numpy.ndarray
        R(t), dimensionless, broadcast shape of the inputs.

    Raises
    ------
    ValueError
        If ``k_ep * theta >= 1`` somewhere (interstitial volume too small for
        the closed form).
    """
    t = np.asarray(times_s, dtype=float)
    fb = np.asarray(blood_flow_per_s, dtype=float)
    fp = fb * (1.0 - haematocrit)
    extraction = -np.expm1(-np.asarray(permeability_surface_per_s) / fp)
    k_ep = extraction * fp / np.asarray(interstitial_volume_fraction)
    shape = 1.0 / np.asarray(capillary_transit_cv, dtype=float) ** 2
    scale_s = np.asarray(blood_volume_fraction) / fb / shape
    if np.any(k_ep * scale_s >= 1.0):
        raise ValueError("the capillary-transit residue needs k_ep * theta < 1 (ve larger than vp)")
    intravascular = special.gammaincc(shape, t / scale_s)
    extravascular = extraction * np.exp(-k_ep * t - shape * np.log1p(-k_ep * scale_s)) * special.gammainc(
        shape, t * (1.0 / scale_s - k_ep))
    return intravascular + extravascular


def two_compartment_residue(times_s, blood_flow_per_s, permeability_surface_per_s, blood_volume_fraction,
                            interstitial_volume_fraction, haematocrit=K.HAEMATOCRIT):
    """Residue function of the two-compartment exchange model, normalised to 1 at t = 0.

    Plasma compartment (volume ``vp = vb (1 - Hct)``) fed by plasma flow
    ``Fp = Fb (1 - Hct)``, exchanging with the interstitium (``ve``) through
    ``PS`` [Sourbron2011].  With the blood concentration as input the tissue
    concentration is ``Fb * (C_blood * R)(t)``, so the impulse response
    ``Fb * R(t)`` starts at the blood flow ``Fb``: the quantity Fermi
    deconvolution estimates as MBF.

    Parameters
    ----------
    times_s : array_like
        Times after the impulse, s (>= 0).
    blood_flow_per_s : array_like
        Blood flow Fb, mL blood per s per mL tissue (1/s).
    permeability_surface_per_s : array_like
        Permeability-surface area product PS, 1/s.
    blood_volume_fraction, interstitial_volume_fraction : array_like
        ``vb`` and ``ve``, mL per mL tissue.
    haematocrit : float, optional
        Blood haematocrit.

    Returns
    -------
    numpy.ndarray
        R(t), dimensionless, broadcast shape of the inputs.
    """
    t = np.asarray(times_s, dtype=float)
    fp = np.asarray(blood_flow_per_s) * (1.0 - haematocrit)
    vp = np.asarray(blood_volume_fraction) * (1.0 - haematocrit)
    ve = np.asarray(interstitial_volume_fraction)
    ps = np.asarray(permeability_surface_per_s)
    # d/dt [cp, ce] = A [cp, ce] with R(t) = [vp, ve] expm(A t) [1/vp, 0].
    a11 = -(fp + ps) / vp
    a12 = ps / vp
    a21 = ps / ve
    a22 = -ps / ve
    half_trace = 0.5 * (a11 + a22)
    root = np.sqrt(half_trace ** 2 - (a11 * a22 - a12 * a21))
    lam_plus, lam_minus = half_trace + root, half_trace - root
    e_plus, e_minus = np.exp(lam_plus * t), np.exp(lam_minus * t)
    p0 = (lam_plus * e_minus - lam_minus * e_plus) / (lam_plus - lam_minus)
    p1 = (e_plus - e_minus) / (lam_plus - lam_minus)
    return (p0 + p1 * a11) + (ve / vp) * (p1 * a21)


#: Tissue models of the phantom: name -> residue function (1 at t = 0).  The
#: residue's keyword arguments are the keys of ``response_params`` in
#: ``tissue_concentration_mM``.
TISSUE_MODELS = {"capillary-transit": capillary_transit_residue, "two-compartment": two_compartment_residue}
#: Parameters each tissue model takes after the blood flow, in the order of
#: its residue function's arguments (also the per-segment draws it uses).
TISSUE_MODEL_PARAMETERS = {
    "capillary-transit": ("permeability_surface_per_s", "blood_volume_fraction", "interstitial_volume_fraction",
                          "capillary_transit_cv"),
    "two-compartment": ("permeability_surface_per_s", "blood_volume_fraction", "interstitial_volume_fraction"),
}
#: One line on each tissue model, for the ground-truth description.
TISSUE_MODEL_DESCRIPTIONS = {
    "capillary-transit": "tissue homogeneity (AATH) with gamma-distributed capillary transit times (Schabel 2012)",
    "two-compartment": "two-compartment exchange model (2CXM, Sourbron & Buckley 2012)",
}
#: The myocardial model of the phantom unless chosen otherwise.
DEFAULT_TISSUE_MODEL = "capillary-transit"


def tissue_concentration_mM(aif_times_s, aif_mM, response_params, delay_s, output_times_s,
                            tissue_model=DEFAULT_TISSUE_MODEL):
    """Tissue concentration ``Fb * (C_blood(t - delay) * R)(t)`` at the frame times.

    The convolution is evaluated on the uniform fine grid of the AIF (trapezoid
    rule, by FFT) and sampled at ``output_times_s`` by linear interpolation.

    Parameters
    ----------
    aif_times_s : numpy.ndarray, shape (m,)
        Uniform fine time grid starting at 0, s.
    aif_mM : numpy.ndarray, shape (m,)
        Blood concentration on that grid, mM (0 before arrival).
    response_params : dict of numpy.ndarray, each (n_pixels,)
        Keyword arguments of the model's residue function: for both models
        ``blood_flow_per_s``, ``permeability_surface_per_s``,
        ``blood_volume_fraction``, ``interstitial_volume_fraction``; for the
        capillary-transit model also ``capillary_transit_cv``.
    delay_s : numpy.ndarray, shape (n_pixels,)
        Transit delay from the LV to the tissue, s.
    output_times_s : numpy.ndarray, shape (n_frames,)
        Frame times, s.
    tissue_model : str, optional
        A key of ``TISSUE_MODELS``.

    Returns
    -------
    numpy.ndarray, shape (n_pixels, n_frames)
        Tissue concentration, mM (mmol per L of tissue).
    """
    dt = aif_times_s[1] - aif_times_s[0]
    m = aif_times_s.size
    residue = TISSUE_MODELS[tissue_model](aif_times_s[None, :], **{k: np.asarray(v)[:, None]
                                                                  for k, v in response_params.items()})
    flow = np.asarray(response_params["blood_flow_per_s"])[:, None]
    shifted = np.interp(aif_times_s[None, :] - np.asarray(delay_s)[:, None], aif_times_s, aif_mM, left=0.0)
    size = 2 * m
    conv = np.fft.irfft(np.fft.rfft(shifted, size) * np.fft.rfft(residue, size), size)[:, :m] * dt
    # Trapezoid end-point correction (the AIF is 0 at t = 0, R(0) = 1).
    conv -= 0.5 * dt * shifted * residue[:, :1]
    conc_fine = flow * conv
    return np.stack([np.interp(output_times_s, aif_times_s, row) for row in conc_fine])

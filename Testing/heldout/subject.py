"""One simulated subject: field strength, relaxation of every tissue, heart rhythm and AIF shape."""

from . import ranges
from .circulation import draw_aif, draw_rhythm
from .readout import Relaxation


def draw_subject(rng, field_strength_t=None, peak_conc_mM=None, aif_family=None):
    """Draw the subject-level quantities shared by the AIF pairs and the phantoms.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    field_strength_t : {None, 1.5, 3.0}, optional
        Fix the field strength (T); drawn otherwise.
    peak_conc_mM : float, optional
        Fix the LV first-pass peak (mM).
    aif_family : {'ldrw', 'lagged_normal'}, optional
        Fix the AIF family.

    Returns
    -------
    dict
        ``field_strength_t``; ``relaxation`` (tissue kind -> ``readout.Relaxation``);
        ``proton_density`` (kind -> relative M0); ``rhythm`` and ``aif``
        parameter dicts.
    """
    field = float(ranges.draw(rng, "field_strength_t") if field_strength_t is None else field_strength_t)
    if field not in (1.5, 3.0):
        raise ValueError("field_strength_t must be 1.5 or 3.0")
    native = ranges.draw_relaxation(rng, field)
    r1 = ranges.draw(rng, "r1_per_s_per_mM")
    r2 = ranges.draw(rng, "r2_per_s_per_mM")
    r2star_blood = ranges.draw(rng, "r2star_blood_per_s_per_mM", field)
    blood_dephasing = ranges.draw(rng, "blood_flow_dephasing_mm2_per_s")
    relaxation = {}
    for kind, values in native.items():
        blood = kind == "blood"
        relaxation[kind] = Relaxation(
            t1_s=values["t1_s"], t2_s=values["t2_s"], r2star_native_per_s=values["r2star_native_per_s"],
            r1_per_s_per_mM=r1, r2_per_s_per_mM=r2, r2star_per_s_per_mM=r2star_blood if blood else r2,
            diffusion_mm2_per_s=blood_dephasing if blood else ranges.DIFFUSION_MM2_PER_S[kind])
    return {
        "field_strength_t": field,
        "relaxation": relaxation,
        "proton_density": {kind: values["proton_density"] for kind, values in native.items()},
        "rhythm": draw_rhythm(rng),
        "aif": draw_aif(rng, peak_conc_mM=peak_conc_mM, family=aif_family),
    }

"""A second, independently written forward model of stress perfusion CMR, for TESTING AND BENCHMARKS ONLY.

This package lives under ``Testing/`` so that no shipped or training code can
import it (``Testing/test_heldout.py`` checks that nothing in ``AIAIFLib/``
does).  It was written without ``AIAIFLib.simulation`` / ``AIAIFLib.sequence``
and differs from them on purpose: it is the held-out physics the pipeline and
the AI-AIF network are tested on.  Never train on it or select models with it.

Public names
------------
``aif_pairs(n, seed, ...)`` -> ``HeldoutAIFPairs``
    Saturated LV AIF signals of the standard slices with their linear
    reference ``S0 * (1 + r1 * T1b * C)``, true concentrations and every drawn
    parameter, curve by curve (40-90 frames, padded with NaN).
``phantom(seed, field_strength_t, ischemic, variant=...)`` -> ``HeldoutStudy``
    A three-slice short-axis study with masks, RV insertion points and ground
    truth (MBF map, AHA labels, segment MBF, true AIF); ``VARIANTS``:
    base-first, apex-first, mirrored-geometry, no-points.
``write_study(study, directory)``
    Slicer files + ``true_aif.csv`` + ground truth, for the public command line.
``RANGES``
    Every drawn quantity with its range and the reason (``ranges``).

Physics (module by module)
--------------------------
``epg``          extended phase graphs of the RF-spoiled readout (imperfect spoiling, diffusion damping)
``readout``      sequence design (k-space order, partial Fourier, acceleration, slice profile,
                 timing), per-line signal tables, Mz history across slices and heartbeats
``kspace``       images from line-modulated k-space (partial volume, blurring, ringing)
``circulation``  irregular heart rhythm and triggers; LDRW / lagged-normal AIFs with a recirculation loop
``tissue``       two-region distributed-parameter myocardium with arterial dispersion; background tissues
``anatomy``      heart (elliptical LV, crescent RV, epicardial fat) and torso; oblique slices; AHA truth
``subject``      per-subject relaxation (literature T1s, ``ranges``), rhythm and AIF draws
``pairs``        the paired AIFs
``phantoms``     the studies, their variants and their files
"""

from .pairs import HeldoutAIFPairs, aif_pairs
from .phantoms import DOSES, STUDY_FILES, VARIANTS, HeldoutStudy, apply_variant, phantom, write_study
from .ranges import RANGES

__all__ = ["aif_pairs", "HeldoutAIFPairs", "phantom", "HeldoutStudy", "apply_variant", "write_study", "VARIANTS",
           "DOSES", "STUDY_FILES", "RANGES"]

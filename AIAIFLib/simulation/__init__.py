"""Physics-based simulator: paired saturated / unsaturated AIFs and a 4D perfusion phantom.

No patient data exist for this project, so the network is trained and the
pipeline validated on curves and images whose ground truth is known.  Every
randomised quantity is drawn from a documented range (``AIF_PAIR_RANGES``,
``PHANTOM_RANGES``); every draw comes from one ``numpy.random.Generator``
seeded by the caller, so results are reproducible.

Physics
-------
* Contrast-agent concentration in the LV blood pool, ``C(t)`` in mM, from one
  of three shape families (``AIF_FAMILIES``): a gamma-variate first pass with
  recirculation and a systemic plateau; the population AIF form of Parker et
  al. (MRM 2006) with randomised amplitudes and time scale; and a circulation
  model (a rectangular injection dispersed by gamma-distributed cardiopulmonary
  transit, with recirculation passes through the systemic circulation).
* Frame times from a heart-rate model with beat-to-beat variation, a slow drift
  and occasional missed ECG triggers (one frame per heartbeat).
* Signal of the standard saturation-recovery FLASH slices from
  ``sequence.saturation_recovery_flash_signal`` (saturation time ~100 ms, the
  saturated AIF) and the linear reference ``S0 * (1 + r1 * T1 * C)`` with the
  same baseline ``S0`` (``sequence.linear_reference_signal``).
* Myocardium: a capillary-transit model driven by the blood AIF, not the
  Fermi function, so that a Fermi fit is tested as the approximation it is:
  the adiabatic approximation to the tissue-homogeneity model (St Lawrence &
  Lee, J Cereb Blood Flow Metab 1998) with gamma-distributed capillary
  transit times (Schabel, Magn Reson Med 2012), see
  ``capillary_transit_residue``.  The two-compartment exchange model (2CXM;
  Sourbron & Buckley, Phys Med Biol 2012) is available as an alternative
  (``TISSUE_MODELS``) to test a fit against a second, differently shaped
  truth.

How every tissue model defines the ground-truth MBF, and how closely a Fermi
fit recovers it, is in ``tissue``.

Modules, one concept each:

* ``parameters`` -- ranges of the paired-AIF simulator (``AIF_PAIR_RANGES``,
  ``BROAD_PAIR_RANGES``) and their draw (``draw_aif_parameters``);
* ``heart_rate`` -- frame times of one frame per heartbeat
  (``simulate_frame_times``);
* ``aif_shapes`` -- the AIF shape families (``gamma_variate``,
  ``aif_concentration_mM``);
* ``signals`` -- signal of the standard slices (``acquisition_signal``,
  ``blood_signal``);
* ``pairs`` -- paired saturated / reference AIFs (``simulate_aif_pairs``,
  ``AIFPairs``);
* ``tissue`` -- myocardial tissue models (``TISSUE_MODELS``,
  ``tissue_concentration_mM``) and the ground-truth MBF;
* ``anatomy`` -- heart frame, short-axis geometry, AHA segments and tissue
  classes of the phantom (``phantom_geometry``, ``TISSUE_LABELS``);
* ``phantom`` -- the 4D perfusion phantom (``simulate_phantom``,
  ``Phantom``, ``PHANTOM_RANGES``);
* ``phantom_files`` -- the phantom as 3D Slicer files plus its ground truth
  (``write_phantom``).

Every public name is importable from the package
(``AIAIFLib.simulation.<name>``), as is ``phantom_motion``.
"""

from .. import phantom_motion
from .aif_shapes import aif_concentration_mM, gamma_variate
from .anatomy import (LONG_AXIS_RAS, PHANTOM_MATRIX, PHANTOM_PIXEL_MM, PHANTOM_SLICE_GAP_MM, TISSUE_LABELS,
                      aha_segment_from_angle, heart_axes_ras, phantom_geometry)
from .heart_rate import simulate_frame_times
from .pairs import AIFPairs, simulate_aif_pairs
from .parameters import (AIF_FAMILIES, AIF_PAIR_RANGES, BROAD_PAIR_RANGES, SLICE_EDGE_EFFICIENCY_FACTOR,
                         SLICE_EDGE_FLIP_FACTOR, draw_aif_parameters)
from .phantom import (FINE_STEP_S, OTHER_TISSUE_T1_S, PHANTOM_RANGES, TISSUE_R2STAR_NATIVE_PER_S, Phantom,
                      simulate_phantom)
from .phantom_files import PHANTOM_FILES, RV_INSERTION_NODE_NAME, SEGMENT_COLOURS, write_phantom
from .signals import acquisition_signal, blood_signal
from .tissue import (DEFAULT_TISSUE_MODEL, TISSUE_MODEL_DESCRIPTIONS, TISSUE_MODEL_PARAMETERS, TISSUE_MODELS,
                     capillary_transit_residue, tissue_concentration_mM, two_compartment_residue)

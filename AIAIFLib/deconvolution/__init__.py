"""Fermi-constrained deconvolution of myocardial tissue curves [JeroschHerold1998].

The tissue concentration is the arterial input function (AIF) convolved with
the tissue impulse response, the Fermi function of Jerosch-Herold et al.
(Med Phys 1998;25:73-84) with an onset delay, normalised so that its value at
onset is exactly F; MBF is the impulse response at onset,
``MBF [mL/min/g] = 60 F / rho``.  The AIF is known only at the (non-uniform)
frame times and is taken as their piecewise-linear interpolant; the model and
its discretisation are described in ``model``.

Modules, one concept each:

* ``model`` -- the Fermi impulse response, its closed-form integral and
  lag-cell means, the convolution of the AIF on non-uniform frame times
  (``convolution_matrix``, ``convolve_on_frames``, ``fermi_tissue_curves``),
  the parameters' bounds and ``flow_to_mbf``;
* ``window`` -- the fit window: the end of the AIF's first pass
  (``first_pass_end_s``) and the frames and convolution of a window;
* ``result`` -- ``FermiFit``, the result of either fit;
* ``reference`` -- the per-curve reference fit (``fit_fermi_curve``,
  ``fit_fermi_curves``, ``initial_guess``);
* ``batched`` -- the batched fit (``fit_fermi_batched``), built on
  ``batched_model`` (unit Fermi curves with analytic derivatives, F
  eliminated by variable projection), ``batched_start`` (the starting grid)
  and ``batched_iteration`` (bounded Levenberg-Marquardt).

Every public name is importable from the package
(``AIAIFLib.deconvolution.<name>``), and so is ``_unit_fermi_antiderivative``,
which the tests check against finite differences.  A constant is read by the
module that defines it: to change one at run time (a test's ``monkeypatch``),
set it on that module (e.g. ``deconvolution.batched``), not on the package.

Fits
----
* ``fit_fermi_batched`` fits every curve of a map at once (variable
  projection of F, analytic Jacobian, bounded Levenberg-Marquardt vectorised
  over curves); a 10 000-pixel, 60-frame map takes about 0.9 s on two shared
  cores, 150-200 times less than ``scipy.optimize.curve_fit`` per pixel, with
  the same MBF to 1 % in 98.5-100 % of pixels
  (``Testing/benchmarks/fermi_batched_speed.py``).  A curve's result depends
  on that curve alone: the same bits whatever else is in the batch.
* ``fit_fermi_curve`` and ``fit_fermi_curves`` use
  ``scipy.optimize.least_squares`` per curve: the slow reference.

Both fit the frames up to ``fit_end_s``.  The batched fit defaults to the end
of the bolus's first pass, found from the AIF by ``first_pass_end_s``: the
Fermi shape models neither the recirculation nor the slow interstitial
washout, and fitting them lowers the fitted flow.  The reference defaults to
the whole curve.
"""

from .batched import BATCHED_SECOND_START, BATCHED_STEP_S, fit_fermi_batched
from .batched_iteration import BATCHED_GTOL, BATCHED_MAX_EVALUATIONS, BATCHED_XTOL
from .batched_model import BATCHED_CHUNK_CURVES, _unit_fermi_antiderivative  # noqa: F401 (the tests use it)
from .batched_start import BATCHED_START_DELAY_S, BATCHED_START_K_PER_S, BATCHED_START_TAU0_S
from .model import (FERMI_LOWER_BOUNDS, FERMI_PARAMETER_SCALE, FERMI_PARAMETERS, FERMI_UPPER_BOUNDS,
                    INTEGRATION_STEP_S, MAX_ACQUISITION_SPAN_S, MIN_FRAMES, convolution_matrix, convolve_on_frames,
                    fermi_cell_means, fermi_residue, fermi_residue_integral, fermi_tissue_curves, flow_to_mbf,
                    lag_cell_edges)
from .reference import DELAY_STARTS_S, fit_fermi_curve, fit_fermi_curves, initial_guess
from .result import AT_BOUND_TOLERANCE, FermiFit
from .window import FIRST_PASS_LAG_HORIZON_S, MIN_FIT_FRAMES, first_pass_end_s

__all__ = [
    "AT_BOUND_TOLERANCE", "BATCHED_CHUNK_CURVES", "BATCHED_GTOL", "BATCHED_MAX_EVALUATIONS", "BATCHED_SECOND_START",
    "BATCHED_START_DELAY_S", "BATCHED_START_K_PER_S", "BATCHED_START_TAU0_S", "BATCHED_STEP_S", "BATCHED_XTOL",
    "DELAY_STARTS_S", "FERMI_LOWER_BOUNDS", "FERMI_PARAMETERS", "FERMI_PARAMETER_SCALE", "FERMI_UPPER_BOUNDS",
    "FIRST_PASS_LAG_HORIZON_S", "FermiFit", "INTEGRATION_STEP_S", "MAX_ACQUISITION_SPAN_S", "MIN_FIT_FRAMES",
    "MIN_FRAMES", "convolution_matrix", "convolve_on_frames", "fermi_cell_means", "fermi_residue",
    "fermi_residue_integral", "fermi_tissue_curves", "first_pass_end_s", "fit_fermi_batched", "fit_fermi_curve",
    "fit_fermi_curves", "flow_to_mbf", "initial_guess", "lag_cell_edges",
]

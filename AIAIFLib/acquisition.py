"""The acquisition record: every physical parameter of one study, resolved once.

Field strength, the native T1 of blood and myocardium, the relaxivity and the
saturation-recovery readout (saturation time, TR, flip angle, k-space
ordering, saturation efficiency) each come, first that applies, from

1. an explicit option (command line, Slicer Logic argument, console);
2. the image header (e.g. DICOM MagneticFieldStrength, RepetitionTime,
   FlipAngle), when the reader found it;
3. the documented default (``constants`` for the literature values,
   ``sequence`` for the readout).

``resolve_acquisition`` does this once per study.  The pipeline passes the
resulting ``Acquisition`` to every step that needs a physical parameter (AIF
and tissue conversion, blood-pool calibration, the AI-AIF's blood-signal
consistency check in ``aif_uncertainty``), and
``summary.json`` records each value with its source, so no module re-derives
a default of its own.

A missing value without a default (e.g. the T1 of blood at 7 T) is kept as
None: the study fails only if a step that needs it runs, and its error names
the option to give.
"""

import math
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from . import constants as K
from .errors import AIAIFInputError
from .sequence import DEFAULT_LINEAR_PULSES_TO_CENTRE, READOUT_ORDERINGS, SequenceParameters

#: Where a value came from, in order of precedence.
SOURCES = ("option", "header", "default")

#: Field strengths within this distance (T) of a tabulated one use its
#: defaults (project choice: scanners report e.g. 2.89 T or 1.494 T).
FIELD_STRENGTH_TOLERANCE_T = 0.15

#: Default field strength when neither an option nor a header gives one, T
#: (project choice: the paper's first centre, and the more common field of
#: stress perfusion research scanners).
DEFAULT_FIELD_STRENGTH_T = 3.0

#: How each parameter is named to the user: command-line option and Slicer
#: Logic argument, for error messages.
PARAMETER_OPTIONS = {
    "field_strength_t": ("--field-strength", "fieldStrength"),
    "t1_blood_s": ("--t1-blood-s", "t1Blood"),
    "t1_myocardium_s": ("--t1-myocardium-s", "t1Myocardium"),
    "r1_per_s_per_mM": ("--r1", "r1"),
    "saturation_time_s": ("--saturation-time-s", "saturationTime"),
    "repetition_time_s": ("--repetition-time-s", "repetitionTime"),
    "flip_angle_deg": ("--flip-angle-deg", "flipAngle"),
    "readout_ordering": ("--readout-ordering", "readoutOrdering"),
    "pulses_to_centre": ("--pulses-to-centre", "pulsesToCentre"),
    "saturation_efficiency": ("--saturation-efficiency", "saturationEfficiency"),
}

#: The readout fields of ``SequenceParameters`` an option or header may set.
_SEQUENCE_FIELDS = ("saturation_time_s", "repetition_time_s", "flip_angle_deg", "pulses_to_centre",
                    "saturation_efficiency")
#: The real-valued readout fields: what they are and their unit, for messages.
_READOUT_QUANTITIES = {"saturation_time_s": ("saturation time", "s"), "repetition_time_s": ("repetition time", "s"),
                       "flip_angle_deg": ("flip angle", "degrees"),
                       "saturation_efficiency": ("saturation efficiency", "fractions of Mz")}


def option_names(name):
    """How parameter ``name`` is given: "--option (command line) or argument (Slicer)"."""
    cli, logic = PARAMETER_OPTIONS[name]
    return "{} on the command line or {} in Slicer".format(cli, logic)


@dataclass(frozen=True)
class Acquisition:
    """Physical parameters of one study, each resolved once with its source.

    Attributes
    ----------
    field_strength_t : float
        Field strength, T.
    t1_blood_s : float or None
        Native (pre-contrast) T1 of blood, s; None when there is no default
        for the field strength and none was given.
    t1_myocardium_s : float, numpy.ndarray or None
        Native T1 of myocardium, s (one value, or one per myocardial pixel
        from a T1 map); None as for blood.
    r1_per_s_per_mM : float
        Longitudinal relaxivity of the contrast agent, 1/s/mM.
    sequence : sequence.SequenceParameters
        The nominal saturation-recovery readout of the standard slices.
    readout_ordering : str or None
        'centric' or 'linear' when known (option or header); None when the
        ordering is unknown, so that the blood-pool calibration tries both.
    sources : dict of str -> str
        Source of each value (``SOURCES``), keyed by parameter name.
    """

    field_strength_t: float
    t1_blood_s: Optional[float]
    t1_myocardium_s: object
    r1_per_s_per_mM: float
    sequence: SequenceParameters
    readout_ordering: Optional[str] = None
    sources: dict = field(default_factory=dict)

    def t1_blood(self):
        """Native blood T1, s; an error naming the option when it is unknown."""
        return self._required("t1_blood_s", "native T1 of blood")

    def t1_myocardium(self):
        """Native myocardial T1, s (float or array); an error naming the option when it is unknown."""
        return self._required("t1_myocardium_s", "native T1 of myocardium")

    def _required(self, name, what):
        value = getattr(self, name)
        if value is None:
            raise AIAIFInputError("There is no default {} at {:g} T (defaults exist for {} T); give it with "
                                  "{}.".format(what, self.field_strength_t, _tabulated_fields_text(),
                                               option_names(name)))
        return value

    def with_sequence(self, sequence, source):
        """A copy with another readout (e.g. the blood-pool calibration's), its fields marked ``source``."""
        sources = dict(self.sources)
        sources.update({name: source for name in _SEQUENCE_FIELDS})
        return replace(self, sequence=sequence, sources=sources)

    def summary(self):
        """JSON-ready ``{parameter: {"value": ..., "source": ...}}`` for ``summary.json``."""
        values = {"field_strength_t": self.field_strength_t, "t1_blood_s": self.t1_blood_s,
                  "t1_myocardium_s": self.t1_myocardium_s, "r1_per_s_per_mM": self.r1_per_s_per_mM,
                  "readout_ordering": self.readout_ordering}
        values.update({name: getattr(self.sequence, name) for name in _SEQUENCE_FIELDS})
        record = {}
        for name, value in values.items():
            if value is not None and not isinstance(value, (int, float, str)):
                value = "per pixel"  # a T1 map
            record[name] = {"value": value, "source": self.sources.get(name, "default")}
        return record


def _tabulated_fields_text():
    return " and ".join("{:g}".format(f) for f in sorted(K.T1_BLOOD_S))


def _finite_positive(value, name, what, unit):
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (math.isfinite(number) and number > 0):
        raise AIAIFInputError("The {} must be a positive number in {}, got {!r}; correct {}.".format(
            what, unit, value, option_names(name)))
    return number


def _tabulated(table, field_strength_t):
    for tabulated, value in table.items():
        if abs(field_strength_t - tabulated) <= FIELD_STRENGTH_TOLERANCE_T:
            return value
    return None


def has_defaults(field_strength_t):
    """True when the project has default native T1 values at this field strength (1.5 or 3 T)."""
    return _tabulated(K.T1_BLOOD_S, float(field_strength_t)) is not None


def _t1_myocardium(value):
    """An explicit myocardial T1: one positive number, or a positive array (a T1 map), s."""
    t1 = np.asarray(value, dtype=float)
    if t1.ndim == 0:
        return _finite_positive(value, "t1_myocardium_s", "native T1 of myocardium", "s")
    if t1.size == 0 or not np.all(np.isfinite(t1)) or np.any(t1 <= 0):
        raise AIAIFInputError("The native myocardial T1 map must be positive everywhere (s); check the map given "
                              "with {}.".format(option_names("t1_myocardium_s")))
    return t1


def resolve_acquisition(field_strength_t=None, t1_blood_s=None, t1_myocardium_s=None, r1_per_s_per_mM=None,
                        saturation_time_s=None, repetition_time_s=None, flip_angle_deg=None, readout_ordering=None,
                        pulses_to_centre=None, saturation_efficiency=None, header=None):
    """Resolve every physical parameter of one study, once: option, else header, else default.

    Parameters
    ----------
    field_strength_t : float, optional
        Field strength, T (default: the header's, else 3 T).
    t1_blood_s, t1_myocardium_s : float, optional
        Native T1 of blood and myocardium, s (myocardium may be an array, a
        T1 map); default by field strength (``constants``), None at a field
        strength without defaults.
    r1_per_s_per_mM : float, optional
        Relaxivity, 1/s/mM (default ``constants.R1_RELAXIVITY_PER_S_PER_MM``).
    saturation_time_s, repetition_time_s, flip_angle_deg : float, optional
        Saturation time to the k-space centre (s), readout TR (s) and nominal
        flip angle (degrees) of the standard slices.
    readout_ordering : {'centric', 'linear'}, optional
        k-space ordering; None when unknown.
    pulses_to_centre : int, optional
        Readout pulse that samples the k-space centre (1 for centric); with
        linear ordering the default is ``sequence.DEFAULT_LINEAR_PULSES_TO_CENTRE``.
    saturation_efficiency : float, optional
        Fraction of Mz destroyed by the saturation pulse, 0-1.1.
    header : dict, optional
        Values read from the image header, with the same keys as the
        arguments; used where no option is given.

    Returns
    -------
    Acquisition
        The record, with the source of every value.

    Raises
    ------
    AIAIFInputError
        For a value that is not a positive number, an unknown ordering, or a
        readout that does not fit in the saturation time; the message names
        the option.
    """
    header = dict(header or {})
    given = {"field_strength_t": field_strength_t, "t1_blood_s": t1_blood_s, "t1_myocardium_s": t1_myocardium_s,
             "r1_per_s_per_mM": r1_per_s_per_mM, "saturation_time_s": saturation_time_s,
             "repetition_time_s": repetition_time_s, "flip_angle_deg": flip_angle_deg,
             "readout_ordering": readout_ordering, "pulses_to_centre": pulses_to_centre,
             "saturation_efficiency": saturation_efficiency}
    unknown = sorted(set(header) - set(given))
    if unknown:
        raise ValueError("unknown header keys: {}".format(", ".join(unknown)))
    values, sources = {}, {}
    for name, value in given.items():
        if value is not None:
            values[name], sources[name] = value, "option"
        elif header.get(name) is not None:
            values[name], sources[name] = header[name], "header"

    field_t = _finite_positive(values.get("field_strength_t", DEFAULT_FIELD_STRENGTH_T), "field_strength_t",
                               "field strength", "T")
    sources.setdefault("field_strength_t", "default")
    if "t1_blood_s" in values:
        t1_blood = _finite_positive(values["t1_blood_s"], "t1_blood_s", "native T1 of blood", "s")
    else:
        t1_blood, sources["t1_blood_s"] = _tabulated(K.T1_BLOOD_S, field_t), "default"
    if "t1_myocardium_s" in values:
        t1_myocardium = _t1_myocardium(values["t1_myocardium_s"])
    else:
        t1_myocardium, sources["t1_myocardium_s"] = _tabulated(K.T1_MYOCARDIUM_S, field_t), "default"
    r1 = _finite_positive(values.get("r1_per_s_per_mM", K.R1_RELAXIVITY_PER_S_PER_MM), "r1_per_s_per_mM",
                          "relaxivity r1", "1/s/mM")
    sources.setdefault("r1_per_s_per_mM", "default")

    ordering = values.get("readout_ordering")
    if ordering is not None:
        ordering = str(ordering).strip().lower()
        if ordering not in READOUT_ORDERINGS:
            raise AIAIFInputError("Unknown k-space ordering {!r}; give {} as {}.".format(
                values["readout_ordering"], " or ".join(READOUT_ORDERINGS), option_names("readout_ordering")))
    readout = {name: _finite_positive(values[name], name, what, unit)
               for name, (what, unit) in _READOUT_QUANTITIES.items() if name in values}
    pulses = values.get("pulses_to_centre")
    if ordering == "centric":
        if pulses is not None and pulses != 1:
            raise AIAIFInputError("Centric ordering samples the k-space centre with the first pulse, but {!r} pulses "
                                  "to the centre were given; give only one of {} and {}.".format(
                                      pulses, PARAMETER_OPTIONS["readout_ordering"][0],
                                      PARAMETER_OPTIONS["pulses_to_centre"][0]))
        pulses, sources["pulses_to_centre"] = 1, sources["readout_ordering"]
    elif pulses is None:
        pulses = DEFAULT_LINEAR_PULSES_TO_CENTRE
    elif ordering is None:
        ordering = "centric" if pulses == 1 else "linear"
        sources["readout_ordering"] = sources["pulses_to_centre"]
    readout["pulses_to_centre"] = pulses
    for name in _SEQUENCE_FIELDS + ("readout_ordering",):
        sources.setdefault(name, "default")
    try:
        sequence = SequenceParameters(**readout)
    except AIAIFInputError as error:
        raise AIAIFInputError("{} ({}).".format(str(error).rstrip("."), ", ".join(
            option_names(name) for name in readout if sources.get(name) == "option") or "the image header"))
    return Acquisition(field_strength_t=field_t, t1_blood_s=t1_blood, t1_myocardium_s=t1_myocardium,
                       r1_per_s_per_mM=r1, sequence=sequence, readout_ordering=ordering, sources=sources)

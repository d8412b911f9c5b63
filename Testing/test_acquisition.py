"""The acquisition record: every physical parameter resolved once, with its source."""

import json

import numpy as np
import pytest

from AIAIFLib import constants as K
from AIAIFLib.acquisition import resolve_acquisition
from AIAIFLib.errors import AIAIFInputError
from AIAIFLib.sequence import DEFAULT_LINEAR_PULSES_TO_CENTRE, SequenceParameters


@pytest.mark.parametrize("field", K.SUPPORTED_FIELD_STRENGTHS_T)
def test_defaults_by_field_strength(field):
    record = resolve_acquisition(field_strength_t=field)
    assert (record.t1_blood_s, record.t1_myocardium_s) == (K.T1_BLOOD_S[field], K.T1_MYOCARDIUM_S[field])
    assert record.r1_per_s_per_mM == K.R1_RELAXIVITY_PER_S_PER_MM
    assert record.sequence == SequenceParameters() and record.readout_ordering is None
    assert record.sources["field_strength_t"] == "option"
    assert {record.sources[name] for name in ("t1_blood_s", "flip_angle_deg", "readout_ordering")} == {"default"}


def test_a_scanner_rounded_field_strength_uses_the_nearest_defaults():
    assert resolve_acquisition(field_strength_t=2.89).t1_blood_s == K.T1_BLOOD_S[3.0]
    assert resolve_acquisition(field_strength_t=1.494).t1_myocardium_s == K.T1_MYOCARDIUM_S[1.5]


def test_an_option_wins_over_the_header_which_wins_over_the_default():
    header = {"field_strength_t": 1.5, "flip_angle_deg": 12.0, "repetition_time_s": 0.0025}
    record = resolve_acquisition(flip_angle_deg=18.0, header=header)
    assert record.field_strength_t == 1.5 and record.sources["field_strength_t"] == "header"
    assert record.t1_blood_s == K.T1_BLOOD_S[1.5]
    assert record.sequence.flip_angle_deg == 18.0 and record.sources["flip_angle_deg"] == "option"
    assert record.sequence.repetition_time_s == 0.0025 and record.sources["repetition_time_s"] == "header"
    assert record.sources["saturation_time_s"] == "default"
    assert resolve_acquisition().field_strength_t == 3.0


def test_the_ordering_and_the_pulses_to_the_centre_agree():
    assert resolve_acquisition(readout_ordering="centric").sequence.pulses_to_centre == 1
    linear = resolve_acquisition(readout_ordering="Linear")
    assert linear.readout_ordering == "linear" and linear.sequence.pulses_to_centre == DEFAULT_LINEAR_PULSES_TO_CENTRE
    assert resolve_acquisition(pulses_to_centre=1).readout_ordering == "centric"
    assert resolve_acquisition(pulses_to_centre=30).readout_ordering == "linear"
    with pytest.raises(AIAIFInputError, match="give only one of --readout-ordering and --pulses-to-centre"):
        resolve_acquisition(readout_ordering="centric", pulses_to_centre=30)
    with pytest.raises(AIAIFInputError, match="Unknown k-space ordering 'radial'.*--readout-ordering"):
        resolve_acquisition(readout_ordering="radial")


def test_a_field_strength_without_defaults_defers_the_error_to_the_step_that_needs_it():
    record = resolve_acquisition(field_strength_t=7.0, t1_myocardium_s=1.9)
    assert record.t1_blood_s is None and record.t1_myocardium() == 1.9
    with pytest.raises(AIAIFInputError, match="native T1 of blood at 7 T.*--t1-blood-s on the command line or "
                                              "t1Blood in Slicer"):
        record.t1_blood()


@pytest.mark.parametrize("options, message", [
    ({"field_strength_t": -3.0}, "field strength must be a positive number in T.*--field-strength"),
    ({"t1_blood_s": 0.0}, "native T1 of blood.*--t1-blood-s"),
    ({"r1_per_s_per_mM": "fast"}, "relaxivity r1.*--r1"),
    ({"flip_angle_deg": float("nan")}, "flip angle.*--flip-angle-deg"),
    ({"t1_myocardium_s": np.array([1.2, -1.0])}, "T1 map must be positive.*--t1-myocardium-s"),
    ({"saturation_time_s": 0.01, "pulses_to_centre": 30}, "take longer than the 0.01 s saturation time"),
])
def test_bad_values_name_the_option(options, message):
    with pytest.raises(AIAIFInputError, match=message):
        resolve_acquisition(**options)


def test_a_t1_map_is_kept_per_pixel():
    t1_map = np.array([1.1, 1.2, 1.3])
    record = resolve_acquisition(t1_myocardium_s=t1_map)
    np.testing.assert_array_equal(record.t1_myocardium(), t1_map)
    assert record.summary()["t1_myocardium_s"] == {"value": "per pixel", "source": "option"}


def test_the_summary_is_json_and_a_calibrated_sequence_says_so():
    record = resolve_acquisition(field_strength_t=1.5)
    calibrated = record.with_sequence(SequenceParameters(flip_angle_deg=13.0, saturation_efficiency=0.95),
                                      "calibrated")
    summary = json.loads(json.dumps(calibrated.summary()))
    assert summary["flip_angle_deg"] == {"value": 13.0, "source": "calibrated"}
    assert summary["saturation_efficiency"]["source"] == "calibrated"
    assert summary["t1_blood_s"] == {"value": K.T1_BLOOD_S[1.5], "source": "default"}
    assert record.sequence.flip_angle_deg == 15.0  # the record itself is unchanged

"""Known-answer tests of AIAIFLib.evaluation: AIF metrics, MBF statistics, agreement, CSV input, table."""

import numpy as np
import pytest

from AIAIFLib import constants as K
from AIAIFLib import evaluation as E
from AIAIFLib.errors import AIAIFInputError

#: FWHM of a Gaussian in units of its sigma: 2 sqrt(2 ln 2).
GAUSSIAN_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def gaussian(times_s, centre_s, sigma_s, height=1.0, offset=0.0):
    return offset + height * np.exp(-0.5 * ((times_s - centre_s) / sigma_s) ** 2)


# ---------------------------------------------------------------------------
# AIF curve metrics
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [0.0, 5.0])
def test_fwhm_of_gaussian_on_uniform_times(offset):
    times = np.arange(0.0, 40.0, 0.05)
    metrics = E.curve_metrics(times, gaussian(times, 15.0, 2.0, offset=offset))
    assert metrics.fwhm_s == pytest.approx(GAUSSIAN_FWHM_PER_SIGMA * 2.0, rel=2e-4)
    assert metrics.baseline == pytest.approx(offset, abs=1e-12)


@pytest.mark.parametrize("offset", [0.0, 3.0])
def test_fwhm_of_gaussian_on_non_uniform_times(offset):
    spacing = np.random.default_rng(1).uniform(0.02, 0.08, 800)
    times = 2.0 + np.concatenate([[0.0], np.cumsum(spacing)])
    metrics = E.curve_metrics(times, gaussian(times, 20.0, 3.0, height=4.0, offset=offset))
    assert metrics.fwhm_s == pytest.approx(GAUSSIAN_FWHM_PER_SIGMA * 3.0, rel=2e-4)


def test_fwhm_interpolates_linearly_between_non_uniform_frames_above_the_baseline():
    # A triangle on a baseline of 2: rises from t = 3 to a peak of 6 at t = 5, back to 2 at t = 9.
    # Half level 2 + (6 - 2) / 2 = 4 is crossed at t = 4 and t = 7 exactly; the frames around the
    # crossings (3.7-5 and 6.9-8.2) are unevenly spaced.  Ignoring the baseline would give 4.5 s.
    times = np.array([0.0, 1.0, 2.0, 3.0, 3.7, 5.0, 5.5, 6.9, 8.2, 9.0, 10.0, 12.0])
    curve = np.interp(times, [0.0, 3.0, 5.0, 9.0, 12.0], [2.0, 2.0, 6.0, 2.0, 2.0])
    metrics = E.curve_metrics(times, curve)
    assert metrics.baseline == pytest.approx(2.0)
    assert metrics.fwhm_s == pytest.approx(3.0, abs=1e-12)
    # With the baseline taken as 0 the half level is 3: crossings at 3.5 s and 8 s.
    assert E.curve_metrics(times, curve, baseline_frames=0).fwhm_s == pytest.approx(4.5, abs=1e-12)


def test_fwhm_is_nan_when_the_curve_never_falls_to_half_maximum():
    times = np.arange(20.0)
    curve = np.concatenate([np.zeros(5), [1.0, 2.0], np.full(13, 1.5)])
    assert np.isnan(E.curve_metrics(times, curve).fwhm_s)
    # A peak at the first frame has no rising crossing.
    assert np.isnan(E.curve_metrics(times, np.linspace(1.0, 0.0, 20)).fwhm_s)


def test_peak_value_and_time_to_peak_from_the_first_frame():
    times = np.array([10.0, 10.8, 11.9, 12.5, 13.6, 14.2, 15.0])
    curve = np.array([0.1, 0.1, 0.9, 2.5, 2.5, 1.0, 0.4])
    metrics = E.curve_metrics(times, curve)
    assert metrics.peak_value == 2.5
    assert metrics.time_to_peak_s == pytest.approx(2.5)  # first of the two maxima, 12.5 s - 10 s


def test_nmse_on_constructed_curves():
    reference = np.array([1.0, 2.0, 3.0, 4.0])
    test = reference + np.array([1.0, 0.0, 0.0, -1.0])
    assert E.nmse_percent(reference, test) == pytest.approx(100.0 * 2.0 / 30.0)
    assert E.nmse_percent(reference, reference) == 0.0
    # One value per curve on a 2-D stack.
    np.testing.assert_allclose(E.nmse_percent(np.stack([reference, reference]), np.stack([test, 2 * reference])),
                               [100.0 * 2.0 / 30.0, 100.0])


def scaled_curve_set():
    """Five reference Gaussians and tests scaled by 1.1 ... 1.5: NMSE 1, 4, 9, 16, 25 %."""
    times = np.arange(0.0, 30.0, 0.5)
    reference = np.stack([gaussian(times, 10.0, 1.5 + 0.1 * k, offset=0.1) for k in range(5)])
    factors = 1.0 + 0.1 * np.arange(1, 6)
    return np.tile(times, (5, 1)), reference, reference * factors[:, None]


def test_analyse_aifs_nmse_summary_and_poor_share():
    times, reference, test = scaled_curve_set()
    result = E.analyse_aifs(times, reference, test)
    np.testing.assert_allclose(result.nmse_percent, [1.0, 4.0, 9.0, 16.0, 25.0])
    assert result.nmse.median == pytest.approx(9.0)
    assert result.nmse.iqr == pytest.approx(12.0)
    assert (result.n_poor, result.poor_percent) == (3, pytest.approx(60.0))
    assert result.poor_threshold_percent == K.POOR_AIF_NMSE_PERCENT
    # Scaling changes PV but neither TTP nor FWHM (the baseline scales too).
    np.testing.assert_allclose(result.peak_value.test_values, 1.1 * (1.0 + 0.1 * np.arange(1, 6)))
    np.testing.assert_allclose(result.time_to_peak_s.test_values, result.time_to_peak_s.reference_values)
    np.testing.assert_allclose(result.fwhm_s.test_values, result.fwhm_s.reference_values)


def test_analyse_aifs_accepts_curves_of_different_lengths_and_shared_times():
    times, reference, test = scaled_curve_set()
    ragged = E.analyse_aifs([times[0], times[1][:40]], [reference[0], reference[1][:40]],
                            [test[0], test[1][:40]])
    assert ragged.n_curves == 2
    shared = E.analyse_aifs(times[0], reference, test)
    np.testing.assert_allclose(shared.nmse_percent, [1.0, 4.0, 9.0, 16.0, 25.0])


@pytest.mark.parametrize("change, message", [
    (lambda t, r, s: (t, r[:3], s), "same positive number"),
    (lambda t, r, s: (t[:, ::-1], r, s), "strictly increasing"),
    (lambda t, r, s: (t, r, s[:, :10]), "one length"),
    (lambda t, r, s: (t, np.zeros_like(r), s), "zero at every frame"),
    (lambda t, r, s: (t, r, np.where(s > 1.0, np.nan, s)), "NaN"),
])
def test_analyse_aifs_rejects_bad_curves(change, message):
    with pytest.raises(AIAIFInputError, match=message):
        E.analyse_aifs(*change(*scaled_curve_set()))


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------

def test_summary_median_and_iqr():
    summary = E.summarise([4.0, 1.0, np.nan, 3.0, 2.0, 5.0])
    assert (summary.median, summary.q1, summary.q3, summary.iqr, summary.n) == (3.0, 2.0, 4.0, 2.0, 5)
    assert np.isnan(E.summarise([np.nan]).median)


def test_mann_whitney_identical_and_shifted_distributions():
    sample = np.random.default_rng(0).normal(2.5, 0.5, 60)
    assert E.compare_distributions(sample, sample.copy()).p_value > 0.9
    assert E.compare_distributions(sample, sample + 2.0).p_value < 1e-10
    assert np.isnan(E.compare_distributions([], sample).p_value)


def test_bland_altman_on_constructed_differences():
    reference = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    test = reference + np.array([0.1, 0.3, 0.1, 0.3, np.nan])  # the NaN pair is left out
    result = E.bland_altman(reference, test)
    sd = np.sqrt(4 * 0.1 ** 2 / 3)
    assert (result.n, result.bias, result.sd) == (4, pytest.approx(0.2), pytest.approx(sd))
    assert result.lower_loa == pytest.approx(0.2 - 1.96 * sd)
    assert result.upper_loa == pytest.approx(0.2 + 1.96 * sd)


def test_line_fit_on_exact_and_known_data():
    reference = np.array([0.5, 1.0, 2.0, 3.5, 4.0])
    line = E.fit_line(reference, 0.9 * reference + 0.3)
    assert (line.slope, line.intercept, line.r_squared) == (pytest.approx(0.9), pytest.approx(0.3),
                                                            pytest.approx(1.0))
    # x = 0..3, y = 0,1,1,2: Sxy = 3, Sxx = 5, Syy = 2 -> slope 0.6, intercept 0.1, R^2 = 9/10.
    line = E.fit_line([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 1.0, 2.0])
    assert (line.slope, line.intercept, line.r_squared) == (pytest.approx(0.6), pytest.approx(0.1),
                                                            pytest.approx(0.9))
    assert np.isnan(E.fit_line([1.0, 1.0], [1.0, 2.0]).slope)


# ---------------------------------------------------------------------------
# Diagnosis agreement and MBF
# ---------------------------------------------------------------------------

def hand_built_mbf():
    """Three patients, everything 3.0 mL/min/g except:

    patient 0: segment 1 1.0 / 1.0, segment 2 1.8 / 1.6 (segments agree; LAD two-lowest 1.4 vs
               1.3 disagree, whereas the lowest segment alone or the territory mean would agree);
               segment 3 1.2 / 1.5 (segment disagrees; RCA two-lowest 2.1 / 2.25 agree).
    patient 1: segment 5 0.5 / NaN (excluded from both; otherwise LCX would be 0.75 vs 2.0),
               segment 6 1.0 / 1.0, segment 13 NaN / 3.0 (excluded).
    patient 2: test LCX all NaN (no LCX vessel).
    """
    reference = np.full((3, 16), 3.0)
    test = np.full((3, 16), 3.0)
    reference[0, [0, 1, 2]] = [1.0, 1.8, 1.2]
    test[0, [0, 1, 2]] = [1.0, 1.6, 1.5]
    reference[1, [4, 5, 12]] = [0.5, 1.0, np.nan]
    test[1, [4, 5]] = [np.nan, 1.0]
    test[2, np.array(K.CORONARY_TERRITORIES["LCX"]) - 1] = np.nan
    return reference, test


def test_segment_and_vessel_agreement_on_a_hand_built_case():
    result = E.analyse_mbf(*hand_built_mbf())
    assert (result.segment_agreement.n_match, result.segment_agreement.n_total) == (40, 41)
    assert (result.vessel_agreement.n_match, result.vessel_agreement.n_total) == (7, 8)
    assert result.vessel_agreement.percent == pytest.approx(87.5)
    np.testing.assert_allclose(result.vessel_reference[0], [1.4, 2.1, 3.0])
    np.testing.assert_allclose(result.vessel_test[0], [1.3, 2.25, 3.0])
    np.testing.assert_allclose(result.vessel_reference[1], [3.0, 3.0, 2.0])
    assert np.isnan(result.vessel_test[2, 2]) and np.isnan(result.vessel_reference[2, 2])
    assert result.threshold_ml_min_g == K.ISCHAEMIA_THRESHOLD_ML_MIN_G


def test_vessel_mbf_uses_available_segments():
    segments = np.full((1, 16), np.nan)
    segments[0, 0] = 2.0  # LAD: one valid segment; RCA, LCX: none
    np.testing.assert_allclose(E.vessel_mbf(segments), [[2.0, np.nan, np.nan]])


def test_threshold_value_itself_is_not_ischaemic():
    threshold = K.ISCHAEMIA_THRESHOLD_ML_MIN_G
    assert E.diagnosis_agreement([threshold], [threshold - 0.01]).n_match == 0
    assert E.diagnosis_agreement([threshold], [threshold + 0.5]).n_match == 1


def test_patient_mbf_is_the_mean_of_pairwise_valid_segments():
    reference, test = hand_built_mbf()
    result = E.analyse_mbf(reference, test)
    valid = np.isfinite(reference[1]) & np.isfinite(test[1])
    assert result.per_patient.comparison.reference_values[1] == pytest.approx(reference[1][valid].mean())
    assert result.per_patient.comparison.test_values[1] == pytest.approx(test[1][valid].mean())
    assert result.per_segment.comparison.reference_values.size == 41
    assert result.per_patient.line.n == 3


def test_analyse_mbf_line_and_bland_altman_on_an_exact_relation():
    reference = 1.0 + np.arange(64.0).reshape(4, 16) / 20.0
    result = E.analyse_mbf(reference, 0.9 * reference + 0.3)
    for level in (result.per_patient, result.per_segment):
        assert (level.line.slope, level.line.intercept, level.line.r_squared) == (
            pytest.approx(0.9), pytest.approx(0.3), pytest.approx(1.0))
    assert result.per_segment.bland_altman.bias == pytest.approx(np.mean(0.3 - 0.1 * reference))


@pytest.mark.parametrize("reference, test, message", [
    (np.ones((2, 15)), np.ones((2, 15)), "shape"),
    (np.ones((2, 16)), np.ones((3, 16)), "same patients"),
    (np.full((2, 16), np.nan), np.ones((2, 16)), "No segment"),
    (np.full((2, 16), np.inf), np.ones((2, 16)), "infinite"),
])
def test_analyse_mbf_rejects_bad_arrays(reference, test, message):
    with pytest.raises(AIAIFInputError, match=message):
        E.analyse_mbf(reference, test)


# ---------------------------------------------------------------------------
# Results table
# ---------------------------------------------------------------------------

def test_table_contains_the_expected_numbers():
    aif = E.analyse_aifs(*scaled_curve_set())
    reference = 1.0 + np.arange(64.0).reshape(4, 16) / 20.0
    mbf = E.analyse_mbf(reference, 0.9 * reference + 0.3)
    table = E.format_results_table(aif, mbf, reference_name="DS-AIF", test_name="AI-AIF")
    header = [line for line in table.splitlines() if "DS-AIF" in line and "AI-AIF" in line and "P" in line]
    assert len(header) == 2  # AIF and MBF blocks
    assert "9.0 (12.0)" in table
    assert "60.0 % (3 of 5)" in table
    assert table.count("y = 0.90x + 0.30, R^2 = 1.00") == 2
    ttp = E.summarise(aif.time_to_peak_s.reference_values)
    assert "{:.2f} ({:.2f})".format(ttp.median, ttp.iqr) in table
    segment_median = E.summarise(reference)
    assert "{:.2f} ({:.2f})".format(segment_median.median, segment_median.iqr) in table
    agreement = mbf.segment_agreement
    assert "{:.1f} % ({} of 64)".format(agreement.percent, agreement.n_match) in table
    assert "({} of 12)".format(mbf.vessel_agreement.n_match) in table
    assert "Stress MBF" not in E.format_results_table(aif, None)


def test_p_value_line_and_limits_text():
    assert [E.format_p_value(p) for p in (0.94, 0.0042, 1e-6, np.nan)] == ["0.94", "0.004", "<0.001", "n/a"]
    assert E.format_line_equation(E.LineFit(0.93, -0.284, 0.7412, 10)) == "y = 0.93x - 0.28, R^2 = 0.74"
    assert E.format_line_equation(E.LineFit(1.0, -0.001, 1.0, 10)) == "y = 1.00x + 0.00, R^2 = 1.00"
    assert E.format_limits_of_agreement(E.BlandAltman(-0.004, 0.3, -0.6, 0.59, 10)) == "0.00 (-0.60 to 0.59)"


# ---------------------------------------------------------------------------
# CSV readers
# ---------------------------------------------------------------------------

GOOD_AIF_CSV = """case,time_s,reference,test
a,0.0,1.0,1.0
a,0.8,3.0,2.0
a,1.7,2.0,1.5
b,0.0,1.0,1.0
b,1.0,4.0,2.5
b,2.1,2.0,1.9
b,3.0,1.1,1.0
"""


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_read_aif_pairs_csv(tmp_path):
    path = write(tmp_path, GOOD_AIF_CSV)
    case_ids, times, reference, test = E.read_aif_cases_csv(path)
    assert case_ids == ["a", "b"]
    np.testing.assert_allclose(times[1], [0.0, 1.0, 2.1, 3.0])
    np.testing.assert_allclose(reference[0], [1.0, 3.0, 2.0])
    np.testing.assert_allclose(test[1], [1.0, 2.5, 1.9, 1.0])
    times, reference, test = E.read_aif_pairs_csv(path)
    assert E.analyse_aifs(times, reference, test).n_curves == 2


@pytest.mark.parametrize("text, message", [
    ("case,time,reference,test\na,0,1,1\n", "header"),
    ("", "header"),
    ("case,time_s,reference,test\n", "no data rows"),
    (GOOD_AIF_CSV.replace("a,0.8,3.0,2.0", "a,0.8,three,2.0"), "reference value 'three' is not a finite"),
    (GOOD_AIF_CSV.replace("a,0.8,3.0,2.0", "a,0.8,3.0,inf"), "not a finite number"),
    (GOOD_AIF_CSV.replace("a,0.8,3.0,2.0", "a,0.8,3.0"), "Line 3 .* has 3 values"),
    (GOOD_AIF_CSV.replace("a,1.7", "a,0.5"), "Line 4 .* not after"),
    (GOOD_AIF_CSV.replace("a,1.7", "a,0.8"), "not after"),
    (GOOD_AIF_CSV + "a,2.5,1.0,1.0\n", "not together"),
    (GOOD_AIF_CSV + "c,0.0,1.0,1.0\n", "Case 'c' .* 1 frames"),
    (GOOD_AIF_CSV.replace("b,0.0,1.0,1.0", ",0.0,1.0,1.0"), "empty case"),
])
def test_read_aif_pairs_csv_rejects_bad_input(tmp_path, text, message):
    with pytest.raises(AIAIFInputError, match=message):
        E.read_aif_pairs_csv(write(tmp_path, text))


def test_read_csv_missing_file(tmp_path):
    with pytest.raises(AIAIFInputError, match="does not exist"):
        E.read_aif_pairs_csv(str(tmp_path / "missing.csv"))
    with pytest.raises(AIAIFInputError, match="does not exist"):
        E.read_segment_mbf_csv(str(tmp_path / "missing.csv"))


GOOD_MBF_CSV = """patient,segment,reference,test
p1,1,2.5,2.4
p1,2,1.2,1.5
p2,16,3.0,
p1,16,0.9,1.0
p2,1,2.0,2.2
"""


def test_read_segment_mbf_csv(tmp_path):
    patients, reference, test = E.read_segment_mbf_csv(write(tmp_path, GOOD_MBF_CSV))
    assert patients == ["p1", "p2"]
    assert reference.shape == test.shape == (2, 16)
    assert (reference[0, 0], test[0, 1], reference[0, 15], reference[1, 15]) == (2.5, 1.5, 0.9, 3.0)
    assert np.isnan(test[1, 15]) and np.isnan(reference[0, 5])
    assert np.count_nonzero(np.isfinite(reference)) == 5


@pytest.mark.parametrize("text, message", [
    ("patient,segment,mbf_reference,test\np1,1,2,2\n", "header"),
    (GOOD_MBF_CSV.replace("p1,2,", "p1,17,"), "AHA segment from 1 to 16"),
    (GOOD_MBF_CSV.replace("p1,2,", "p1,0,"), "AHA segment"),
    (GOOD_MBF_CSV.replace("p1,2,", "p1,two,"), "AHA segment"),
    (GOOD_MBF_CSV + "p1,2,1.0,1.0\n", "repeats segment 2 of patient 'p1'"),
    (GOOD_MBF_CSV.replace("1.2,1.5", "1.2,fast"), "test value 'fast'"),
    (GOOD_MBF_CSV.replace("1.2,1.5", "-1.2,1.5"), "negative"),
    (GOOD_MBF_CSV.replace("1.2,1.5", "1.2,1.5,7"), "has 5 values"),
])
def test_read_segment_mbf_csv_rejects_bad_input(tmp_path, text, message):
    with pytest.raises(AIAIFInputError, match=message):
        E.read_segment_mbf_csv(write(tmp_path, text))


def test_one_or_two_patients_give_no_spread_and_a_caution():
    aif = E.analyse_aifs(*scaled_curve_set())
    reference = 1.0 + np.arange(32.0).reshape(2, 16) / 20.0
    for n_patients in (1, 2):
        mbf = E.analyse_mbf(reference[:n_patients], 0.9 * reference[:n_patients] + 0.3)
        table = E.format_results_table(aif, mbf)
        assert "Stress MBF (mL/min/g), {}, {} segments".format(E.counted(n_patients, "patient"), 16 * n_patients) in table
        assert "nan" not in table.lower() and table.count("R^2 = 1.00") == 1  # the segments' line only
        assert "Per patient                 {} (limits n/a: need 3 or more pairs)".format(
            E.format_limits_of_agreement(mbf.per_patient.bland_altman).split(" ")[0]) in table
        assert table.splitlines()[-1].startswith("Caution: with only {}".format(E.counted(n_patients, "patient")))
    many = E.analyse_mbf(np.tile(reference, (5, 1)), np.tile(reference, (5, 1)) + 0.1)
    assert "Caution" not in E.format_results_table(aif, many)


def test_counted_nouns_and_short_sample_lines():
    assert [E.counted(n, "patient") for n in (0, 1, 2)] == ["0 patients", "1 patient", "2 patients"]
    assert E.format_line_equation(E.LineFit(1.5, -1.2, 1.0, 2)) == (
        "y = 1.50x - 1.20 through 2 points, R^2 n/a (needs 3 or more)")
    assert E.format_limits_of_agreement(E.BlandAltman(0.1, 0.2, -0.3, 0.5, 2)) == (
        "0.10 (limits n/a: need 3 or more pairs)")

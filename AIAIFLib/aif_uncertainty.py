"""How far the AI-AIF and the MBF that rests on it can be trusted.

Two independent checks, both reported in ``summary.json`` under
``aif_uncertainty`` and turned into warnings when they fail:

* **Ensemble band.**  The shipped network is an ensemble of members trained
  alike from different seeds (``network.Ensemble``).  Their spread is a band
  on the corrected AIF; refitting each AHA segment's mean tissue curve with
  every member's AIF (16 fits per member, cheap) carries it to segment MBF.
  The band measures how much equally good networks disagree, so it is a
  lower bound on the error on physics none of them saw: a wide band always
  means the correction is uncertain, a narrow one does not prove it right.
* **Consistency with the measured blood signal.**  The corrected AIF,
  pushed back through the blood-pool-calibrated signal model
  (``conversion.calibrate_sequence_on_blood``, fitted on the low
  concentrations only), must reproduce the measured saturated LV signal at
  the high concentrations too.  A measured signal above the model means
  that the corrected AIF is too low there (the model cannot reach the
  signal) or that the sequence is unlike the model; that is warned about.
  A measured signal below the model is reported only: T2* decay, which the
  model leaves out, does the same at the bolus peak.  Near full saturation
  the signal no longer changes with concentration, so an AIF too high at
  its peak passes this check: it is necessary, not sufficient.
"""

import numpy as np

from . import conversion

#: Relative spread of the ensemble members' AIF peaks ((max - min) over the
#: ensemble's peak) above which a warning is given.  Project choice from
#: ``Testing/benchmarks/aif_network.py`` (1 000 curves each, seed 7): the
#: spread's median is 9 % on the own simulator and 12 % on the held-out
#: physics; 4 % and 14 % of the curves exceed 20 %.
AIF_PEAK_SPREAD_WARNING = 0.20

#: Residual of the blood-signal check, as a fraction of the largest measured
#: enhancement S/S0 - 1, above which a warning is given.  Project choice:
#: several times the residual of the calibration on the project's phantoms
#: (0.2-1.5 %, see ``conversion.CALIBRATION_RESIDUAL_WARNING_FRACTION``).
BLOOD_CONSISTENCY_WARNING = 0.08


def segment_mbf_band(times_s, member_aifs_mM, segment_curves_mM, segment_mbf, central_curve_fit_mbf, fit_end_s):
    """Band on segment MBF from refitting each segment's mean curve with every member's AIF.

    Each member's curve-fit MBF, relative to the curve fit with the
    ensemble's mean AIF, scales the segment's reported (pixel-mean) MBF; the
    band runs from the smallest to the largest scaled value (the reported
    value always lies inside it).

    Parameters
    ----------
    times_s : numpy.ndarray, shape (n_frames,)
        Frame times, s.
    member_aifs_mM : numpy.ndarray, shape (n_members, n_frames)
        AIF concentration with each member's correction, mM.
    segment_curves_mM : numpy.ndarray, shape (n_segments, n_frames)
        Mean tissue concentration of each segment, mM (NaN rows for empty ones).
    segment_mbf : array_like, shape (n_segments,)
        Reported segment MBF, mL/min/g.
    central_curve_fit_mbf : array_like, shape (n_segments,)
        Curve-fit MBF of each segment with the ensemble's mean AIF, mL/min/g.
    fit_end_s : float
        End of the fitted first pass, s (as for the central fit).

    Returns
    -------
    low, high : numpy.ndarray, shape (n_segments,)
        Band on segment MBF, mL/min/g (NaN where a fit failed).
    """
    from .deconvolution import fit_fermi_batched

    central = np.asarray(central_curve_fit_mbf, dtype=float)
    mbf = np.asarray(segment_mbf, dtype=float)
    ratios = [np.ones_like(central)]
    valid = np.all(np.isfinite(segment_curves_mM), axis=1)
    for member_aif in np.asarray(member_aifs_mM, dtype=float):
        member = np.full(central.shape, np.nan)
        if valid.any():
            member[valid] = fit_fermi_batched(times_s, member_aif, segment_curves_mM[valid],
                                              fit_end_s=fit_end_s).mbf_ml_min_g
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios.append(np.where(central > 0, member / central, np.nan))
    ratios = np.array(ratios)
    with np.errstate(invalid="ignore"):
        scaled = mbf[None, :] * ratios
    finite = np.all(np.isfinite(scaled), axis=0)
    low = np.where(finite, np.min(np.where(finite, scaled, 0.0), axis=0), np.nan)
    high = np.where(finite, np.max(np.where(finite, scaled, 0.0), axis=0), np.nan)
    return low, high


def ensemble_summary(member_aifs_mM, aif_mM, segments, band_low, band_high, threshold_ml_min_g):
    """The ensemble part of ``summary.json`` and its warnings.

    Parameters
    ----------
    member_aifs_mM : numpy.ndarray, shape (n_members, n_frames)
        AIF with each member's correction, mM.
    aif_mM : numpy.ndarray, shape (n_frames,)
        The AIF used (the members' mean correction), mM.
    segments : sequence of int
        Segment numbers of the band's rows.
    band_low, band_high : numpy.ndarray, shape (n_segments,)
        ``segment_mbf_band``, mL/min/g.
    threshold_ml_min_g : float
        Ischaemia threshold, mL/min/g.

    Returns
    -------
    record : dict
        ``n_members``, ``member_peak_mM``, ``peak_spread`` ((max - min) /
        mean of the members' peaks), ``segments_straddling_threshold``.
    warnings : list of str
    """
    peaks = np.max(np.asarray(member_aifs_mM, dtype=float), axis=1)
    peak = float(np.max(aif_mM))
    spread = float((peaks.max() - peaks.min()) / peak) if peak > 0 else None
    straddle = [int(segment) for segment, low, high in zip(segments, band_low, band_high)
                if np.isfinite(low) and np.isfinite(high) and low < threshold_ml_min_g <= high]
    warnings = []
    if spread is not None and spread > AIF_PEAK_SPREAD_WARNING:
        warnings.append("The AI-AIF ensemble disagrees on this AIF: its members' peaks span {:.1f}-{:.1f} mM ({:.0f} "
                        "% of the peak), so the correction is uncertain; see the band in aif.csv and segments.csv "
                        "and compare with a dual-sequence or external AIF if there is one.".format(
                            peaks.min(), peaks.max(), 100.0 * spread))
    if straddle:
        warnings.append("The AI-AIF ensemble's band on MBF straddles the {:.2f} mL/min/g threshold in segment{} {}, "
                        "so {} diagnosis rests on the AIF correction; read {} with care.".format(
                            threshold_ml_min_g, "s" if len(straddle) > 1 else "",
                            ", ".join(str(s) for s in straddle), "their" if len(straddle) > 1 else "its",
                            "them" if len(straddle) > 1 else "it"))
    record = {"n_members": int(peaks.size), "member_peak_mM": [float(v) for v in peaks], "peak_spread": spread,
              "segments_straddling_threshold": straddle}
    return record, warnings


def blood_signal_consistency(blood_signal, blood_baseline, aif_mM, acquisition):
    """Residual of the measured LV signal against the AIF pushed through the signal model.

    Parameters
    ----------
    blood_signal : numpy.ndarray, shape (n_frames,)
        Measured (saturated) LV blood-pool signal, signal units.
    blood_baseline : float
        Its pre-contrast level, signal units.
    aif_mM : numpy.ndarray, shape (n_frames,)
        The corrected AIF, mM.
    acquisition : acquisition.Acquisition
        With the blood-pool-calibrated sequence (native blood T1, r1).

    Returns
    -------
    record : dict
        ``relative_residual``: RMS of the measured minus the modelled signal
        ratio S/S0 over the frames the calibration did not fit (AIF above
        ``conversion.CALIBRATION_MAX_AIF_FRACTION`` of its peak), over the
        largest measured enhancement; ``excess_residual``: the same for the
        positive part only (the measured signal higher than the AIF can
        explain); ``peak_residual``: the residual at the AIF's peak frame;
        ``n_frames`` checked.
    warnings : list of str
        A warning when ``excess_residual`` exceeds
        ``BLOOD_CONSISTENCY_WARNING``.  A measured signal *below* the model
        is not warned about: the model leaves out T2* decay, which lowers
        the blood signal at the bolus peak by up to about 20 % at 3 T, so it
        cannot tell an AIF too high from T2* loss.
    """
    aif = np.asarray(aif_mM, dtype=float)
    ratio = np.asarray(blood_signal, dtype=float) / float(blood_baseline)
    sequence = acquisition.sequence
    r1_native = 1.0 / acquisition.t1_blood()
    r1 = r1_native + acquisition.r1_per_s_per_mM * np.maximum(aif, 0.0)
    model = sequence.normalised_signal(r1) / sequence.normalised_signal(r1_native)
    checked = aif > conversion.CALIBRATION_MAX_AIF_FRACTION * np.max(aif)
    enhancement = max(float(np.max(ratio)) - 1.0, 1e-12)
    difference = (ratio - model) / enhancement
    relative = excess = None
    if checked.any():
        relative = float(np.sqrt(np.mean(difference[checked] ** 2)))
        excess = float(np.sqrt(np.mean(np.maximum(difference[checked], 0.0) ** 2)))
    peak = float(difference[int(np.argmax(aif))])
    warnings = []
    if excess is not None and excess > BLOOD_CONSISTENCY_WARNING:
        warnings.append("The measured blood-pool signal is higher than the corrected AIF can explain through the "
                        "calibrated signal model (by {:.0f} % of the enhancement at the high concentrations, {:+.0f} "
                        "% at the AIF peak), so the corrected AIF is probably too low there and MBF too high: check "
                        "the LV blood-pool ROI and compare with the saturated-AIF run.".format(
                            100.0 * excess, 100.0 * peak))
    return ({"relative_residual": relative, "excess_residual": excess, "peak_residual": peak,
             "n_frames": int(np.count_nonzero(checked))}, warnings)

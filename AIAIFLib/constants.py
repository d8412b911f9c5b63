"""Numbers from the literature, each in one place with its source.

Units are in the names: ``_s`` seconds, ``_mM`` mmol/L, ``_per_s_per_mM``
relaxivity, ``_ml_min_g`` mL/min/g.  Values the project chose itself (not
taken from a publication) are marked "project choice" with the reason.

References
----------
[Scannell2022]  Scannell CM, et al. AI-AIF: artificial intelligence-based
    arterial input function for quantitative stress perfusion cardiac magnetic
    resonance. Eur Heart J Digit Health 2022.  (``shared/paper``)
[JeroschHerold1998]  Jerosch-Herold M, Wilke N, Stillman AE. Magnetic
    resonance quantification of the myocardial perfusion reserve with a Fermi
    function model for constrained deconvolution. Med Phys 1998;25:73-84.
[Hsu2018]  Hsu LY, et al. Diagnostic performance of fully automated pixel-wise
    quantitative myocardial perfusion imaging by cardiovascular magnetic
    resonance. JACC Cardiovasc Imaging 2018 (stress MBF threshold 1.35 mL/min/g,
    as used by [Scannell2022]).
[Cerqueira2002]  Cerqueira MD, et al. Standardized myocardial segmentation and
    nomenclature for tomographic imaging of the heart (AHA 17-segment model).
    Circulation 2002;105:539-542.
[Parker2006]  Parker GJM, et al. Experimentally-derived functional form for a
    population-averaged high-temporal-resolution arterial input function for
    dynamic contrast-enhanced MRI. Magn Reson Med 2006;56:993-1000.
[Sourbron2011]  Sourbron SP, Buckley DL. Tracer kinetic modelling in MRI:
    estimating perfusion and capillary permeability. Phys Med Biol 2012;57:R1-33.
"""

# --- Contrast agent and blood -------------------------------------------------

#: Longitudinal relaxivity of gadobutrol used for quantification, 1/s/mM
#: [Scannell2022, "Quantification"].
R1_RELAXIVITY_PER_S_PER_MM = 4.5

#: Native T1 of blood by field strength (tesla -> seconds) [Scannell2022].
T1_BLOOD_S = {3.0: 1.736, 1.5: 1.435}

#: Native T1 of myocardium by field strength (tesla -> seconds).  Project
#: choice from typical native-T1 mapping values (about 1.2 s at 3 T and 0.95 s
#: at 1.5 T; see shared/PHYSICS.md).
T1_MYOCARDIUM_S = {3.0: 1.20, 1.5: 0.95}

#: Field strengths the project has defaults for, tesla.
SUPPORTED_FIELD_STRENGTHS_T = (1.5, 3.0)

# --- Acquisition of the paper's standard (high-resolution) slices ---------------
# [Scannell2022, "Image acquisition"]: saturation-recovery spoiled gradient echo.

#: Saturation time of the standard high-resolution slices, s.
SATURATION_TIME_S = 0.100
#: Saturation time of the low-resolution dual-sequence AIF slice, s.
DUAL_SEQUENCE_SATURATION_TIME_S = 0.0235
#: Repetition time, s.
REPETITION_TIME_S = 0.0022
#: Echo time, s.
ECHO_TIME_S = 0.0010
#: Nominal excitation flip angle, degrees.
FLIP_ANGLE_DEG = 15.0

# --- Tracer kinetics -----------------------------------------------------------

#: Myocardial tissue density, g/mL, converting flow per mL of tissue into flow
#: per gram (MBF [mL/min/g] = 60 * F [1/s] / density).  The customary value
#: for myocardium in MR perfusion quantification (shared/PHYSICS.md).
TISSUE_DENSITY_G_PER_ML = 1.05

#: Blood haematocrit used to convert blood to plasma quantities in the tissue
#: model (project choice, a typical adult value).
HAEMATOCRIT = 0.42

#: MR-visible proton density of myocardium relative to blood (water per
#: volume).  Project estimate from tissue water contents: myocardium about
#: 0.78-0.80 g/g at 1.05 g/mL, whole blood about 0.80-0.84 g/g at 1.06 g/mL
#: (haematocrit 0.40-0.45), i.e. 0.95 +- 0.04.  It carries the blood pool's
#: signal scale over to the myocardium in the ``model`` tissue conversion.
MYOCARDIUM_TO_BLOOD_PROTON_DENSITY = 0.95

# --- Diagnosis -------------------------------------------------------------------

#: Stress MBF below which a segment is called ischaemic, mL/min/g [Hsu2018],
#: as used by [Scannell2022].
ISCHAEMIA_THRESHOLD_ML_MIN_G = 1.35

#: NMSE (%) at or above which the paper counts an AIF prediction as poor
#: [Scannell2022, "Results": "NMSE >= 6.5 %"].
POOR_AIF_NMSE_PERCENT = 6.5

#: The AIF network's input length (frames) [Scannell2022, "Training data"].
NETWORK_LENGTH = 64
#: Pre-contrast beats kept before contrast arrival [Scannell2022].
PRE_CONTRAST_BEATS = 4

# --- AHA segments [Cerqueira2002] ------------------------------------------------

#: AHA segments 1-16 (segment 17, the apical cap, is not in three short-axis slices).
AHA_SEGMENTS = tuple(range(1, 17))
#: Segment names [Cerqueira2002].
AHA_SEGMENT_NAMES = {
    1: "basal anterior", 2: "basal anteroseptal", 3: "basal inferoseptal",
    4: "basal inferior", 5: "basal inferolateral", 6: "basal anterolateral",
    7: "mid anterior", 8: "mid anteroseptal", 9: "mid inferoseptal",
    10: "mid inferior", 11: "mid inferolateral", 12: "mid anterolateral",
    13: "apical anterior", 14: "apical septal", 15: "apical inferior",
    16: "apical lateral",
}
#: Coronary territory of each segment [Cerqueira2002].
CORONARY_TERRITORIES = {
    "LAD": (1, 2, 7, 8, 13, 14),
    "RCA": (3, 4, 9, 10, 15),
    "LCX": (5, 6, 11, 12, 16),
}
#: Slice levels of the three short-axis slices, base to apex.
SLICE_LEVELS = ("basal", "mid", "apical")

# --- Names shared with Slicer files ----------------------------------------------

#: Segment names the pipeline looks for (case-insensitive).
LV_BLOOD_POOL_SEGMENT_NAME = "LV blood pool"
MYOCARDIUM_SEGMENT_NAME = "Myocardium"


def territory_of_segment(segment):
    """Return the coronary territory ('LAD', 'RCA' or 'LCX') of AHA segment 1-16."""
    for territory, segments in CORONARY_TERRITORIES.items():
        if segment in segments:
            return territory
    raise ValueError("AHA segment must be 1-16, got {!r}".format(segment))

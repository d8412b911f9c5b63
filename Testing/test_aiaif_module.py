"""The Slicer module AIAIF/AIAIF.py on real MRML nodes (slicer-core).

``slicer_doubles`` stands in for the four imports slicer-core lacks
(``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper``, ``qt``,
``ctk``); everything MRML is real: the phantom's files are read by Slicer's
own storage nodes into a ``vtkMRMLScene`` set as ``slicer.mrmlScene``, and the
Logic's output nodes are checked in that scene.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import slicer
from vtk.util import numpy_support

import slicer_doubles
from AIAIFLib import cli, mrml
from AIAIFLib import constants as K
from AIAIFLib.errors import AIAIFCancelled, AIAIFInputError
from AIAIFLib.simulation import PHANTOM_FILES, write_phantom
from AIAIFLib.studies import demo_phantom
from scene_helpers import move_by_transform, per_slice_sequences, scene_state, vector_sequence

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE_DIRECTORY = os.path.join(REPOSITORY, "AIAIF")


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def phantom():
    return demo_phantom()


@pytest.fixture(scope="module")
def phantom_files(phantom, tmp_path_factory):
    directory = tmp_path_factory.mktemp("phantom")
    write_phantom(phantom, str(directory))
    return {key: str(directory / PHANTOM_FILES[key]) for key in ("perfusion", "segmentation", "rv_insertion")}


@pytest.fixture(scope="module")
def cli_output(phantom_files, tmp_path_factory):
    """What ``python -m AIAIFLib quantify`` writes for the phantom (AI-corrected AIF, 3 T as the Logic gets it)."""
    directory = tmp_path_factory.mktemp("cli") / "out"
    code = cli.main(["quantify", phantom_files["perfusion"], phantom_files["segmentation"],
                     "--rv-insertion", phantom_files["rv_insertion"], "--output-dir", str(directory),
                     "--field-strength", "3"])
    assert code == 0
    return directory


@pytest.fixture
def AIAIF(monkeypatch):
    """The module file imported under slicer-core with a fresh ``slicer.mrmlScene``."""
    monkeypatch.setattr(slicer, "mrmlScene", slicer.vtkMRMLScene(), raising=False)
    return slicer_doubles.import_module_file(monkeypatch, MODULE_DIRECTORY)


def _load(files, scene=None):
    return mrml.load_study_files(scene or slicer.mrmlScene, files["perfusion"], files["segmentation"],
                                 files["rv_insertion"])


def _mbf_array(node):
    return mrml.volume_node_array(node)[0]


# ---------------------------------------------------------------------------
# Module file: imports, resources, metadata, sample data
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("folder", ["AIAIF", "AIAIFLib"])
def test_code_for_slicers_python_parses_as_python_3_9(folder):
    """Older Slicer releases bundle Python 3.9: no match statements, no parenthesised context managers there,
    in any file of the folder's packages."""
    import ast

    checked = 0
    for directory, subfolders, names in os.walk(os.path.join(REPOSITORY, folder)):
        subfolders[:] = sorted(name for name in subfolders if name != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                with open(path) as handle:
                    ast.parse(handle.read(), filename=path, feature_version=(3, 9))
                checked += 1
    assert checked >= (8 if folder == "AIAIF" else 40)  # the subpackages were walked


def test_module_finds_its_library_and_resources_from_a_source_checkout(AIAIF):
    assert os.path.samefile(AIAIF.PACKAGE_ROOT, REPOSITORY)
    assert os.path.isfile(AIAIF.resourcePath("Icons/AIAIF.png"))
    assert os.path.isfile(AIAIF.resourcePath("Icons/AIAIFPhantom.png"))
    assert os.path.isfile(AIAIF.resourcePath("Models/aiaif_unet.npz"))


def _copy_module_folder(destination):
    """The module file and its subpackages (``AIAIF/`` but for the CMake list), as installed into ``destination``."""
    shutil.copytree(MODULE_DIRECTORY, destination, ignore=shutil.ignore_patterns("__pycache__", "CMakeLists.txt"))


def test_module_finds_resources_beside_itself_when_installed(tmp_path, monkeypatch):
    """The installed layout: AIAIF.py, AIAIFModuleLib/, AIAIFLib/ and Resources/ side by side in qt-scripted-modules."""
    installed = tmp_path / "qt-scripted-modules"
    _copy_module_folder(installed)
    (installed / "AIAIFLib").symlink_to(os.path.join(REPOSITORY, "AIAIFLib"))
    (installed / "Resources").symlink_to(os.path.join(REPOSITORY, "Resources"))
    module = slicer_doubles.import_module_file(monkeypatch, installed)
    assert module.PACKAGE_ROOT == str(installed)
    assert module.resourcePath("Icons/AIAIF.png") == str(installed / "Resources" / "Icons" / "AIAIF.png")


def test_module_without_library_beside_it_says_how_to_fix(tmp_path, monkeypatch):
    lonely = tmp_path / "lonely"
    _copy_module_folder(lonely)
    with pytest.raises(ImportError, match="reinstall the extension"):
        slicer_doubles.import_module_file(monkeypatch, lonely)


def test_module_without_its_subpackage_beside_it_says_how_to_fix(tmp_path, monkeypatch):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(os.path.join(MODULE_DIRECTORY, "AIAIF.py"), lonely)
    with pytest.raises(ImportError, match="cannot find its AIAIFModuleLib package .*reinstall the extension"):
        slicer_doubles.import_module_file(monkeypatch, lonely)


def test_module_metadata_cites_the_paper_and_registers_sample_data_at_start_up(AIAIF, monkeypatch):
    connections = []
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(connect=lambda signal, slot: connections.append(
        (signal, slot))), raising=False)
    parent = types.SimpleNamespace(path=os.path.join(MODULE_DIRECTORY, "AIAIF.py"))
    AIAIF.AIAIF(parent)
    assert parent.title and parent.categories == ["Cardiac"]
    assert "Scannell" in parent.acknowledgementText and "Eur Heart J Digit Health 2022" in parent.acknowledgementText
    for words in ("saturated", "U-Net", "Fermi", "AHA", "1.35 mL/min/g"):
        assert words in parent.helpText
    assert parent.icon.path == AIAIF.resourcePath("Icons/AIAIF.png")
    assert connections == [("startupCompleted()", AIAIF.registerSampleData)]


@pytest.mark.parametrize("release", slicer_doubles.RELEASES)
def test_module_file_imports_before_the_markups_module_is_loaded(release, monkeypatch):
    """Slicer runs AIAIF.py before it instantiates Markups; on 5.8 the point-list class is not in slicer yet."""
    monkeypatch.setattr(slicer, "mrmlScene", slicer.vtkMRMLScene(), raising=False)
    module = slicer_doubles.import_module_file(monkeypatch, MODULE_DIRECTORY, release=release)
    assert module.vtkMRMLMarkupsFiducialNode is slicer.vtkMRMLMarkupsFiducialNode  # the class Markups brings later
    parameters = module.AIAIFLogic().getParameterNode()
    points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "RV points")
    parameters.rvInsertionPoints = points
    assert parameters.rvInsertionPoints is points


def test_without_any_point_list_class_the_module_names_the_supported_slicer(AIAIF, monkeypatch):
    monkeypatch.delattr(slicer, "vtkMRMLMarkupsFiducialNode")
    monkeypatch.setitem(sys.modules, "vtkSlicerMarkupsModuleMRMLPython", None)  # its import raises ImportError
    with pytest.raises(ImportError, match="use Slicer 5.8 or later"):
        AIAIF._markupsFiducialNodeClass()


@pytest.fixture
def application(AIAIF, monkeypatch, tmp_path):
    """Slicer's start-up completed around the module: ``slicer.app``, the module's reader, its sample data."""
    return slicer_doubles.start_application(monkeypatch, AIAIF, tmp_path / "cache")


def _check_sample_phantom_nodes(sequence):
    assert sequence.IsA("vtkMRMLSequenceNode") and sequence.GetNumberOfDataNodes() == demo_phantom().frames.shape[0]
    (segmentation,) = [slicer.mrmlScene.GetNthNodeByClass(n, "vtkMRMLSegmentationNode")
                       for n in range(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]
    names = {segmentation.GetSegmentation().GetNthSegment(n).GetName()
             for n in range(segmentation.GetSegmentation().GetNumberOfSegments())}
    assert names == {K.LV_BLOOD_POOL_SEGMENT_NAME, K.MYOCARDIUM_SEGMENT_NAME}
    points = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLMarkupsFiducialNode")
    assert points.GetNumberOfControlPoints() == demo_phantom().frames.shape[1]


@pytest.mark.parametrize("how", ["SampleData.downloadSample", "Sample Data button"])
def test_sample_phantom_loads_from_the_console_and_from_its_button(AIAIF, application, how):
    """Both go through Sample Data's download-and-load path; the console one never calls a customDownloader."""
    import SampleData

    if how == "SampleData.downloadSample":
        first = SampleData.downloadSample(AIAIF.SAMPLE_PHANTOM_NAME)
    else:
        first = SampleData.clickSampleButton(AIAIF.SAMPLE_PHANTOM_NAME)[0]
    _check_sample_phantom_nodes(first)


def test_sample_phantom_downloads_only_its_recipe_from_the_extension(AIAIF, application):
    (source,) = slicer.modules.sampleDataSources["AI-AIF"]
    assert source.customDownloader is None and source.loadFileTypes == [AIAIF.SAMPLE_FILE_TYPE]
    (uri,) = source.uris
    recipe = AIAIF.resourcePath(AIAIF.SAMPLE_RECIPE)
    assert uri == Path(recipe).as_uri() and os.path.getsize(recipe) < 1000  # a recipe, not image data
    assert os.path.isfile(source.thumbnailFileName)
    assert AIAIF.isSampleRecipe(recipe) and not AIAIF.isSampleRecipe(AIAIF.resourcePath("UI/AIAIF.ui"))


def test_file_reader_refuses_another_file_and_loads_nothing(AIAIF, application, tmp_path):
    import vtk

    other = tmp_path / "other.aiaif.json"
    other.write_text(json.dumps({"sample": "something else"}))
    before = slicer.mrmlScene.GetNumberOfNodes()
    loaded = vtk.vtkCollection()
    assert not slicer.app.coreIOManager().loadNodes(AIAIF.SAMPLE_FILE_TYPE, {"fileName": str(other)}, loaded)
    assert loaded.GetNumberOfItems() == 0 and slicer.mrmlScene.GetNumberOfNodes() == before


# ---------------------------------------------------------------------------
# process: outputs, equality with the command line, truth
# ---------------------------------------------------------------------------

def test_process_gives_the_command_lines_map_and_summary(AIAIF, phantom_files, cli_output):
    sequence, segmentation, points = _load(phantom_files)
    result = AIAIF.AIAIFLogic().process(sequence, segmentation, points, fieldStrength=3.0, aifMode="ai")

    written = mrml.load_volume_file(slicer.vtkMRMLScene(), str(cli_output / "mbf.nrrd"))
    values, ijk_to_ras = mrml.volume_node_array(result.mbfVolumeNode)
    written_values, written_ijk_to_ras = mrml.volume_node_array(written)
    np.testing.assert_array_equal(values, written_values)
    np.testing.assert_allclose(ijk_to_ras, written_ijk_to_ras, atol=1e-9)
    with open(str(cli_output / "summary.json")) as handle:
        summary = json.load(handle)
    for part in (result.summary, summary):
        part.pop("timings_s")
    for key in set(result.summary["motion"]) | set(summary["motion"]):
        assert result.summary["motion"].get(key) == summary["motion"].get(key), key
    assert result.summary == summary


def test_process_outputs_are_complete_scene_nodes(AIAIF, phantom_files, phantom):
    sequence, segmentation, points = _load(phantom_files)
    progress = []
    result = AIAIF.AIAIFLogic().process(sequence, segmentation, points, computeFitQuality=True,
                                        progressCallback=lambda fraction, message: progress.append(fraction))
    assert progress[0] == 0.0 and progress[-1] == 1.0 and np.all(np.diff(progress) >= 0)

    mbf = result.mbfVolumeNode
    assert mbf.GetScene() is slicer.mrmlScene and mbf.IsA("vtkMRMLScalarVolumeNode")
    display = mbf.GetDisplayNode()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 5.0)
    assert display.GetColorNode().GetName() == mrml.MBF_COLOR_TABLE_NAME

    table = result.segmentsTableNode
    assert table.GetNumberOfRows() == 16
    columns = {table.GetTable().GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())}
    assert {"segment", "mbf_mean", "n_pixels", "territory", "ischemic"} <= columns

    chart = result.aifChartNode
    assert chart.IsA("vtkMRMLPlotChartNode") and chart.GetNumberOfPlotSeriesNodes() == len(mrml.AIF_CURVES) == 5
    for n in range(chart.GetNumberOfPlotSeriesNodes()):
        assert chart.GetNthPlotSeriesNode(n).GetTableNode() is result.aifTableNode
    assert result.aifTableNode.GetNumberOfRows() == sequence.GetNumberOfDataNodes()

    quality = _mbf_array(result.fitQualityVolumeNode)
    mbf_values = _mbf_array(mbf)
    assert np.array_equal(np.isfinite(quality), np.isfinite(mbf_values))
    assert np.nanmedian(quality) < 0.2

    truth = phantom.segment_mbf_ml_min_g()
    measured = np.asarray(result.quantification.segments["mbf_mean"], dtype=float)
    assert np.mean(np.abs(measured - truth)) < 1.0  # mL/min/g; the saturated AIF is off by several
    assert result.summary["results"]["ischemic_territories"] == ["LAD"]
    assert "LAD" in AIAIF.AIAIFLogic.statusText(result.summary)


def test_process_without_rv_points_orients_from_the_images_and_shows_orientation_warnings(AIAIF, phantom_files):
    sequence, segmentation, _ = _load(phantom_files)
    result = AIAIF.AIAIFLogic().process(sequence, segmentation, aifMode="saturated")
    rules = result.summary["segmentation"]["rules_used"]
    assert rules["septum_side"]["rule"] == "image RV"
    assert [record["insertion_point"]["rule"] for record in rules["slices"]] == ["image RV"] * 3
    summary = dict(result.summary, warnings=["The RV in the images puts the septum on the other side."])
    assert AIAIF.AIAIFLogic.statusText(summary).endswith("Warnings: The RV in the images puts the septum on the "
                                                         "other side.")


def test_rerun_updates_the_same_nodes_instead_of_adding_new_ones(AIAIF, phantom_files):
    sequence, segmentation, points = _load(phantom_files)
    logic = AIAIF.AIAIFLogic()
    first = logic.process(sequence, segmentation, points, aifMode="ai")
    ai_map = _mbf_array(first.mbfVolumeNode)
    ids_after_first = [node[0] for node in scene_state(slicer.mrmlScene)]
    second = logic.process(sequence, segmentation, points, aifMode="saturated")
    assert [node[0] for node in scene_state(slicer.mrmlScene)] == ids_after_first
    for name in ("mbfVolumeNode", "segmentsTableNode", "aifChartNode", "aifTableNode"):
        assert getattr(second, name).GetID() == getattr(first, name).GetID()
    saturated_map = _mbf_array(second.mbfVolumeNode)
    assert np.nanmedian(saturated_map) > 2 * np.nanmedian(ai_map)  # the node now holds the saturated result


def test_explicit_output_nodes_are_filled(AIAIF, phantom_files):
    sequence, segmentation, points = _load(phantom_files)
    mine = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my MBF")
    result = AIAIF.AIAIFLogic().process(sequence, segmentation, points, mbfVolumeNode=mine)
    assert result.mbfVolumeNode is mine and mine.GetImageData() is not None


def test_parameter_node_holds_inputs_and_receives_outputs(AIAIF, phantom_files):
    sequence, segmentation, points = _load(phantom_files)
    logic = AIAIF.AIAIFLogic()
    parameters = logic.getParameterNode()
    assert parameters.fieldStrength == 3.0 and parameters.aifMode == AIAIF.AifMode.AI
    assert parameters.threshold == K.ISCHAEMIA_THRESHOLD_ML_MIN_G
    assert set(logic.missingInputs(parameters)) == {"perfusion sequence", "segmentation"}
    logic.selectDefaultInputs(parameters)
    assert parameters.perfusionSequence is sequence and parameters.segmentation is segmentation
    parameters.rvInsertionPoints = points
    assert logic.missingInputs(parameters) == []
    parameters.aifMode = AIAIF.AifMode.EXTERNAL
    assert logic.missingInputs(parameters) == ["external AIF table"]
    parameters.aifMode = AIAIF.AifMode.SATURATED

    result = logic.processParameterNode(parameters)
    assert parameters.mbfVolume is result.mbfVolumeNode
    assert parameters.segmentsTable is result.segmentsTableNode and parameters.aifChart is result.aifChartNode
    assert parameters.bullseyeVolume is result.bullseyeVolumeNode
    assert result.summary["parameters"]["aif_mode"] == "saturated"
    # the same parameter node is found again (one per scene), with the outputs
    assert logic.getParameterNode().mbfVolume is result.mbfVolumeNode


def test_several_single_slice_sequences_give_the_same_map(AIAIF, phantom_files):
    sequence, segmentation, points = _load(phantom_files)
    logic = AIAIF.AIAIFLogic()
    whole = _mbf_array(logic.process(sequence, segmentation, points).mbfVolumeNode)
    frames, ijk_to_ras = mrml.sequence_frames(sequence)
    times = mrml.frame_times_s(sequence)
    slices = per_slice_sequences(slicer.mrmlScene, frames, times, ijk_to_ras)[::-1]  # the order does not matter
    split = _mbf_array(logic.process(slices, segmentation, points, mbfVolumeNode=slicer.mrmlScene.AddNewNodeByClass(
        "vtkMRMLScalarVolumeNode")).mbfVolumeNode)
    np.testing.assert_allclose(split, whole, rtol=1e-5, equal_nan=True)


def test_external_aif_from_a_table_node(AIAIF, phantom_files, phantom):
    sequence, segmentation, points = _load(phantom_files)
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "reference AIF")
    for name, values in (("time_s", phantom.frame_times_s), ("signal", phantom.truth["lv_blood_reference_signal"])):
        column = numpy_support.numpy_to_vtk(np.asarray(values, dtype=float), deep=True)
        column.SetName(name)
        table.AddColumn(column)
    result = AIAIF.AIAIFLogic().process(sequence, segmentation, points, aifMode="external",
                                        externalAifTableNode=table)
    assert result.summary["parameters"]["aif_mode"] == "external"
    assert result.summary["results"]["ischemic_territories"] == ["LAD"]


# ---------------------------------------------------------------------------
# Bad input, cancel, failure: the scene stays exactly as it was
# ---------------------------------------------------------------------------

def _single_frame(scene, sequence):
    single = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "one frame")
    single.SetDataNodeAtValue(sequence.GetNthDataNode(0), "0")
    return single


def _without_segment(scene, segmentation, name):
    copy = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "without " + name)
    copy.GetSegmentation().DeepCopy(segmentation.GetSegmentation())
    copy.GetSegmentation().RemoveSegment(copy.GetSegmentation().GetSegmentIdBySegmentName(name))
    return copy


def _with_empty_myocardium(scene, segmentation):
    copy = _without_segment(scene, segmentation, K.MYOCARDIUM_SEGMENT_NAME)
    copy.GetSegmentation().AddEmptySegment("", K.MYOCARDIUM_SEGMENT_NAME)
    return copy


def _moved_away(scene, segmentation):
    copy = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "elsewhere")
    copy.GetSegmentation().DeepCopy(segmentation.GetSegmentation())
    return move_by_transform(scene, copy, 500.0, name="500 mm right")


def _too_many_points(scene, points):
    extra = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "four points")
    for n in range(points.GetNumberOfControlPoints()):
        extra.AddControlPoint(points.GetNthControlPointPosition(n), points.GetNthControlPointLabel(n))
    extra.AddControlPoint(points.GetNthControlPointPosition(0), "one more")
    return extra


BAD_INPUTS = {
    # case: (build the bad argument, which argument it replaces, words the message must contain)
    "vector volumes": (lambda s, seq, seg, pts: vector_sequence(s, "colour frames", seq.GetNumberOfDataNodes(),
                                                                (4, 4, 1)), "sequence", "colour frames"),
    "single frame": (lambda s, seq, seg, pts: _single_frame(s, seq), "sequence", "one frame"),
    "missing segment": (lambda s, seq, seg, pts: _without_segment(s, seg, K.MYOCARDIUM_SEGMENT_NAME),
                        "segmentation", "without Myocardium"),
    "empty segment": (lambda s, seq, seg, pts: _with_empty_myocardium(s, seg), "segmentation", "without Myocardium"),
    "not overlapping": (lambda s, seq, seg, pts: _moved_away(s, seg), "segmentation", "elsewhere"),
    "too many points": (lambda s, seq, seg, pts: _too_many_points(s, pts), "points", "four points"),
    "volume as segmentation": (lambda s, seq, seg, pts: s.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "a volume"),
                               "segmentation", "a volume"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_the_node_and_leaves_the_scene_unchanged(AIAIF, phantom_files, case):
    build, replaces, words = BAD_INPUTS[case]
    arguments = dict(zip(("sequence", "segmentation", "points"), _load(phantom_files)))
    arguments[replaces] = build(slicer.mrmlScene, *arguments.values())
    logic = AIAIF.AIAIFLogic()
    logic.process(*_load(phantom_files))  # earlier outputs exist: they must survive unchanged too
    before = scene_state(slicer.mrmlScene)
    with pytest.raises(AIAIFInputError) as raised:
        logic.process(arguments["sequence"], arguments["segmentation"], arguments["points"])
    message = str(raised.value)
    assert words in message and message.endswith(".") and ";" in message, message  # the problem; the fix
    assert scene_state(slicer.mrmlScene) == before


def test_bad_parameters_are_refused_before_anything_changes(AIAIF, phantom_files):
    sequence, segmentation, points = _load(phantom_files)
    before = scene_state(slicer.mrmlScene)
    logic = AIAIF.AIAIFLogic()
    for keywords in ({"fieldStrength": 7.0}, {"aifMode": "magic"}, {"aifMode": "external"}, {"threshold": -1.0}):
        with pytest.raises(AIAIFInputError):
            logic.process(sequence, segmentation, points, **keywords)
    assert scene_state(slicer.mrmlScene) == before


@pytest.mark.parametrize("how", ["callback returns False", "requestCancel"])
def test_cancel_stops_and_leaves_the_scene_as_it_was(AIAIF, phantom_files, how):
    sequence, segmentation, points = _load(phantom_files)
    logic = AIAIF.AIAIFLogic()
    logic.process(sequence, segmentation, points)
    before = scene_state(slicer.mrmlScene)
    calls = []

    def progress(fraction, message):
        calls.append(fraction)
        if fraction > 0.5:
            if how == "requestCancel":
                logic.requestCancel()
            else:
                return False
        return True

    with pytest.raises(AIAIFCancelled):
        logic.process(sequence, segmentation, points, aifMode="saturated", progressCallback=progress)
    assert max(calls) < 1.0
    assert scene_state(slicer.mrmlScene) == before
    logic.process(sequence, segmentation, points)  # a cancel does not stick to the next run


def test_failure_while_publishing_restores_the_updated_nodes(AIAIF, phantom_files, monkeypatch):
    sequence, segmentation, points = _load(phantom_files)
    logic = AIAIF.AIAIFLogic()
    logic.process(sequence, segmentation, points)
    before = scene_state(slicer.mrmlScene)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mrml.quantify, "segments_table_node", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        logic.process(sequence, segmentation, points, aifMode="saturated")
    assert scene_state(slicer.mrmlScene) == before


# ---------------------------------------------------------------------------
# Stock Slicer: no torch, matplotlib or pynrrd; the in-Slicer test
# ---------------------------------------------------------------------------

def test_module_runs_its_main_job_without_torch_matplotlib_or_pynrrd():
    script = textwrap.dedent("""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "matplotlib", "nrrd"):
                    raise ImportError("stock Slicer has no " + name)

        sys.meta_path.insert(0, Block())
        sys.path[:0] = [{testing!r}, {module!r}]
        import pytest, slicer, slicer_doubles
        patch = pytest.MonkeyPatch()
        slicer.mrmlScene = slicer.vtkMRMLScene()
        AIAIF = slicer_doubles.import_module_file(patch, {module!r})
        logic = AIAIF.AIAIFLogic()
        result = logic.process(*logic.loadSamplePhantom())
        print(sorted(result.summary["results"]["ischemic_territories"]))
    """).format(testing=os.path.join(REPOSITORY, "Testing"), module=MODULE_DIRECTORY)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['LAD']"


def test_the_readme_console_snippet_runs(AIAIF, capsys):
    with open(os.path.join(REPOSITORY, "README.md")) as handle:
        readme = handle.read()
    section = readme[readme.index("### From the Python console"):]
    snippet = section[section.index("```python") + len("```python"):section.index("```", section.index("```python") + 3)]
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "ischaemic territories: LAD" in printed and "'territory': 'RCA'" in printed


def test_the_in_slicer_self_test_passes_on_slicer_core(AIAIF):
    AIAIF.AIAIFTest().runTest()


def test_the_in_slicer_self_test_with_its_panel_passes_on_the_doubles(AIAIF, application):
    """With ``slicer.app`` the self-test also runs test_Panel: it clicks Apply and checks the results layout."""
    assert hasattr(slicer, "app")
    AIAIF.AIAIFTest().runTest()
    assert slicer.app.layoutManager().layout == AIAIF.RESULTS_LAYOUT_ID


def test_motion_correction_publishes_the_registered_frames_and_reruns_update_them(AIAIF, tmp_path):
    from AIAIFLib.simulation import simulate_phantom

    moving = simulate_phantom(seed=2, ischemic="LAD", n_frames=36, motion="in-plane")
    sequence, segmentation, points = mrml.phantom_nodes(slicer.mrmlScene, moving, name="moving")
    logic = AIAIF.AIAIFLogic()
    parameters = logic.getParameterNode()
    assert parameters.motionCorrection == "auto" and parameters.roiFrameIndex == -1
    parameters.perfusionSequence, parameters.segmentation, parameters.rvInsertionPoints = sequence, segmentation, points
    parameters.aifMode = AIAIF.AifMode.SATURATED
    parameters.motionCorrection = "on"
    first = logic.processParameterNode(parameters)
    registered = first.registeredSequenceNode
    assert registered is not None and parameters.registeredSequence is registered
    assert registered.GetNumberOfDataNodes() == 36 and first.summary["motion"]["applied"]
    ids = [node[0] for node in scene_state(slicer.mrmlScene)]
    parameters.roiFrameIndex = 3
    second = logic.processParameterNode(parameters)
    assert second.registeredSequenceNode is registered and [node[0] for node in scene_state(slicer.mrmlScene)] == ids
    assert second.summary["motion"]["roi_frame"] == 3 and second.summary["motion"]["roi_frame_rule"] == "given"
    off = logic.process(sequence, segmentation, points, aifMode="saturated", motionCorrection="off")
    assert off.summary["motion"]["mode"] == "off" and not off.summary["motion"]["applied"]

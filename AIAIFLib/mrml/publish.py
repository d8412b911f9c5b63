"""Publishing results into a scene: output roles and their tags, the AIF table and chart, the undo.

Output nodes are tagged with ``OUTPUT_ROLE_ATTRIBUTE`` and
``PERFUSION_NODE_ATTRIBUTE``, so a later run on the same perfusion input
updates them instead of adding new ones.  Publishing is one transaction
(``_scene_transaction``): if it fails, every node added is removed and every
node updated is restored.
"""

import contextlib

import numpy as np
import slicer

from .. import pipeline
from ..errors import AIAIFInputError
from .nodes import _described, _remove_nodes_added_since, _require_scene, _scene_node_ids, _vtk_messages_silenced
from .outputs import segments_table_node
from .sequences import _perfusion_sequences


#: Output roles of ``quantify_nodes`` and the node class each is published as.
OUTPUT_ROLE_CLASSES = {
    "mbf": "vtkMRMLScalarVolumeNode",
    "bullseye": "vtkMRMLScalarVolumeNode",
    "segments": "vtkMRMLTableNode",
    "aif_table": "vtkMRMLTableNode",
    "aif_chart": "vtkMRMLPlotChartNode",
    "fit_quality": "vtkMRMLScalarVolumeNode",
    "registered": "vtkMRMLSequenceNode",
}
#: What follows the name prefix in the name of a new output node of each role.
OUTPUT_NAME_SUFFIXES = {"mbf": "MBF", "bullseye": "MBF bullseye", "segments": "MBF per segment", "aif_table": "AIF",
                        "aif_chart": "AIF chart", "fit_quality": "fit NRMSE", "registered": "registered"}
#: Node attribute naming the output role of a node ``quantify_nodes`` made.
OUTPUT_ROLE_ATTRIBUTE = "AIAIF.OutputRole"
#: Node attribute holding the ID of the (first) perfusion sequence an output was computed from.
PERFUSION_NODE_ATTRIBUTE = "AIAIF.PerfusionNodeID"
#: Node attribute naming the curve (AIF table column) a plot series shows.
CURVE_ATTRIBUTE = "AIAIF.Curve"
#: Output role of the plot series of the AIF chart (tagged, not an ``outputs`` key).
AIF_SERIES_ROLE = "aif_series"
#: Curves of the AIF table and chart: (column name, ``result.aif`` key, column
#: title, plot colour RGB 0-1, dashed line).  Colours are a project choice:
#: grey for the uncorrected input, red for the AIF the fit used, blue for the
#: myocardium, light red for the AI-AIF ensemble's band (equal to the AIF used
#: without an ensemble).  The title of ``used_mM`` is completed with the AIF
#: mode's label.
AIF_CURVES = (
    ("saturated_mM", "saturated_mM", "Saturated AIF", (0.45, 0.45, 0.45), True),
    ("used_mM", "used_mM", "AIF used: {}", (0.84, 0.15, 0.16), False),
    ("used_mM_low", "used_mM_low", "AI-AIF ensemble band, low", (0.96, 0.62, 0.62), True),
    ("used_mM_high", "used_mM_high", "AI-AIF ensemble band, high", (0.96, 0.62, 0.62), True),
    ("myocardium_mM", "myocardium_mM", "Myocardium (mean)", (0.12, 0.47, 0.71), False),
)
#: Name of the time column of the AIF table (s).
AIF_TIME_COLUMN = "time_s"
#: Columns of the segment table shown in mL/min/g.
MBF_COLUMNS = ("mbf_mean", "mbf_median", "mbf_curve_fit", "mbf_low", "mbf_high")


class _SceneUndo(object):
    """What one publishing step changed in a scene, and how to undo it.

    Nodes present before are copied (``CreateNodeInstance`` + ``Copy``, which
    copies content such as image data and table columns, name, attributes and
    node references) before they are first modified; ``undo`` copies them
    back and removes every node added since.
    """

    def __init__(self, scene):
        self.scene = scene
        self.ids_before = _scene_node_ids(scene)
        self.saved = []

    def keep(self, node):
        """Remember ``node`` as it is now (once; nodes added in this step need nothing)."""
        if node is None or any(node is kept for kept, _ in self.saved):
            return
        if node.GetScene() is self.scene and node.GetID() not in self.ids_before:
            return
        copy = node.CreateNodeInstance()
        copy.Copy(node)
        self.saved.append((node, copy))

    def keep_with_display(self, node):
        self.keep(node)
        if hasattr(node, "GetNumberOfDisplayNodes"):
            for n in range(node.GetNumberOfDisplayNodes()):
                self.keep(node.GetNthDisplayNode(n))

    def undo(self):
        for node, copy in reversed(self.saved):
            node.Copy(copy)
        _remove_nodes_added_since(self.scene, self.ids_before)


@contextlib.contextmanager
def _scene_transaction(scene):
    """Batch-process ``scene``; if the block raises, undo every change it made (``_SceneUndo``) and re-raise."""
    undo = _SceneUndo(scene)
    scene.StartState(scene.BatchProcessState)
    try:
        yield undo
    except BaseException:
        with _vtk_messages_silenced():
            undo.undo()
        raise
    finally:
        scene.EndState(scene.BatchProcessState)


def _perfusion_key(sequences):
    """ID of the (first) perfusion sequence, which tags the outputs computed from it (None outside a scene)."""
    return sequences[0].GetID() if sequences else None


def _tag(node, role, perfusion_key):
    node.SetAttribute(OUTPUT_ROLE_ATTRIBUTE, role)
    node.SetAttribute(PERFUSION_NODE_ATTRIBUTE, perfusion_key or "")


def _tagged_nodes(scene, class_name, role, perfusion_key):
    if not perfusion_key:
        return []
    collection = scene.GetNodesByClass(class_name)
    nodes = [collection.GetItemAsObject(n) for n in range(collection.GetNumberOfItems())]
    return [node for node in nodes if node.GetAttribute(OUTPUT_ROLE_ATTRIBUTE) == role
            and node.GetAttribute(PERFUSION_NODE_ATTRIBUTE) == perfusion_key]


def find_output_node(scene, perfusion_nodes, role):
    """The output node an earlier ``quantify_nodes`` run on the same perfusion input published, or None.

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to search.
    perfusion_nodes : vtkMRMLSequenceNode, vtkMRMLSequenceBrowserNode, or a list of them
        The perfusion input as given to ``quantify_nodes``; its first sequence
        identifies the outputs.
    role : str
        One of ``OUTPUT_ROLE_CLASSES``: ``"mbf"``, ``"bullseye"``, ``"segments"``,
        ``"aif_table"``, ``"aif_chart"`` or ``"fit_quality"``.

    Returns
    -------
    vtkMRMLNode or None
        The node tagged with that role (``OUTPUT_ROLE_ATTRIBUTE``) and
        sequence ID (``PERFUSION_NODE_ATTRIBUTE``).
    """
    _require_scene(scene)
    if role not in OUTPUT_ROLE_CLASSES:
        raise AIAIFInputError("Unknown output role {!r}; use one of {}.".format(role, ", ".join(OUTPUT_ROLE_CLASSES)))
    found = _tagged_nodes(scene, OUTPUT_ROLE_CLASSES[role], role, _perfusion_key(_perfusion_sequences(perfusion_nodes)))
    return found[0] if found else None


def _checked_outputs(scene, outputs):
    """``outputs`` as {role: node}, each node of its role's class and of ``scene`` (or of none yet)."""
    if outputs is None:
        return {}
    if not isinstance(outputs, dict):
        raise AIAIFInputError("outputs must be a dict of role -> node (roles {}); pass e.g. {{'mbf': volume_node}} "
                              "or None.".format(", ".join(OUTPUT_ROLE_CLASSES)))
    checked = {}
    for role, node in outputs.items():
        if role not in OUTPUT_ROLE_CLASSES:
            raise AIAIFInputError("Unknown output role {!r}; use one of {}.".format(
                role, ", ".join(OUTPUT_ROLE_CLASSES)))
        if node is None:
            continue
        class_name = OUTPUT_ROLE_CLASSES[role]
        if (not hasattr(node, "IsA") or not node.IsA(class_name) or node.IsA("vtkMRMLLabelMapVolumeNode")):
            raise AIAIFInputError("The {} output node must be a {}, got {}; choose a node of that class or leave "
                                  "the output to be created.".format(role, class_name, _described(node)))
        if node.GetScene() is not None and node.GetScene() is not scene:
            raise AIAIFInputError("The {} output node {} belongs to another scene; choose a node of this scene or "
                                  "leave the output to be created.".format(role, _described(node)))
        twice = [other for other, given in checked.items() if given is node]
        if twice:
            raise AIAIFInputError("The node {} is given for both the {} and the {} output; give each output its own "
                                  "node.".format(_described(node), twice[0], role))
        checked[role] = node
    return checked


def _output_for_role(scene, undo, role, given, perfusion_key, name_prefix):
    """The node of one output role: the one given, else the one tagged by an earlier run, else a new one.

    ``given`` maps every role to the node given for it (if any); a node given
    for another role is not reused for this one.
    """
    class_name = OUTPUT_ROLE_CLASSES[role]
    node = given.get(role)
    if node is None:
        taken = [other for other in given.values() if other is not None]
        found = [candidate for candidate in _tagged_nodes(scene, class_name, role, perfusion_key)
                 if not any(candidate is other for other in taken)]
        node = found[0] if found else None
    if node is None:
        node = getattr(slicer, class_name)()
        node.SetName("{} {}".format(name_prefix, OUTPUT_NAME_SUFFIXES[role]))
        scene.AddNode(node)
    else:
        undo.keep_with_display(node)
        if node.GetScene() is None:
            scene.AddNode(node)
    _tag(node, role, perfusion_key)
    return node


def _table_columns(columns):
    """Table columns ready for ``segments_table_node``: a column of flags with gaps (None) becomes text."""
    ready = {}
    for name, values in columns.items():
        values = list(values)
        present = [value for value in values if value is not None]
        if len(present) < len(values):
            if all(isinstance(value, (bool, np.bool_)) for value in present):
                values = ["" if value is None else ("true" if value else "false") for value in values]
            elif all(isinstance(value, (int, float, np.integer, np.floating)) for value in present):
                values = [np.nan if value is None else float(value) for value in values]
            else:
                values = ["" if value is None else str(value) for value in values]
        ready[name] = values
    return ready


def _aif_table(scene, result, node):
    """Fill the AIF table: time (s) and the curves of ``AIF_CURVES`` (mM)."""
    mode = result.summary["parameters"]["aif_mode"]
    columns = {AIF_TIME_COLUMN: np.asarray(result.aif["time_s"], dtype=float)}
    titles = {AIF_TIME_COLUMN: "Time"}
    for column, key, title, _, _ in AIF_CURVES:
        columns[column] = np.asarray(result.aif[key], dtype=float)
        titles[column] = title.format(pipeline.AIF_MODE_LABELS[mode])
    units = dict.fromkeys(columns, "mM")
    units[AIF_TIME_COLUMN] = "s"
    return segments_table_node(scene, columns, node=node, units=units, titles=titles)


def _aif_chart(scene, undo, chart, table, perfusion_key):
    """Point one tagged plot series per curve of the AIF table at it and show them all in ``chart``."""
    titles = {column: table.GetColumnTitle(column) for column, _, _, _, _ in AIF_CURVES}
    disabled = chart.StartModify()
    chart.SetTitle("AIF and myocardium")
    chart.SetXAxisTitle("Time (s)")
    chart.SetYAxisTitle("Concentration (mM)")
    chart.SetLegendVisibility(True)
    series_nodes = []
    for column, _, _, colour, dashed in AIF_CURVES:
        found = [node for node in _tagged_nodes(scene, "vtkMRMLPlotSeriesNode", AIF_SERIES_ROLE, perfusion_key)
                 if node.GetAttribute(CURVE_ATTRIBUTE) == column]
        if found:
            series = found[0]
            undo.keep(series)
        else:
            series = slicer.vtkMRMLPlotSeriesNode()
            scene.AddNode(series)
        _tag(series, AIF_SERIES_ROLE, perfusion_key)
        series.SetAttribute(CURVE_ATTRIBUTE, column)
        series.SetName(titles[column])
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(AIF_TIME_COLUMN)
        series.SetYColumnName(column)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
        series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleDash if dashed
                            else slicer.vtkMRMLPlotSeriesNode.LineStyleSolid)
        series.SetColor(*colour)
        series_nodes.append(series)
    referenced = {chart.GetNthPlotSeriesNodeID(n) for n in range(chart.GetNumberOfPlotSeriesNodes())}
    for series in series_nodes:
        if series.GetID() not in referenced:
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.EndModify(disabled)
    return chart

"""Double of ``slicer.app`` and ``slicer.modules``: the application around the real MRML logics.

What the Qt application does for a module is doubled here; what it delegates
to MRML is real.  The application logic (``vtkSlicerApplicationLogic``), the
layout logic and node (``vtkMRMLLayoutLogic``), the slice logics and the Plots
module's logic (``vtkSlicerPlotsLogic``) are slicer-core's own classes, wired
to the scene as Slicer wires them, so ``ShowChartInLayout`` switches a layout
it does not know to Four-Up Plot here exactly as in Slicer
(``vtkSlicerPlotsLogic::GetLayoutWithPlot``,
Modules/Loadable/Plots/Logic/vtkSlicerPlotsLogic.cxx, v5.8.1 to the
development head).

Doubled, each after the Slicer source named in its docstring:

* ``LayoutManager``: ``layout``, ``setLayout``, ``layoutLogic``,
  ``sliceWidget(name).sliceLogic()`` / ``.sliceController()``;
* ``IOManager``: ``registerIO`` and ``loadNodes`` with scripted file readers;
* ``Application``: ``connect``/``emit`` of application signals,
  ``applicationLogic``, ``layoutManager``, ``coreIOManager``,
  ``moduleManager``, ``processEvents``, ``testingEnabled`` (true: message
  boxes are only logged, as when Slicer runs its tests).
"""

import types

import slicer


class SliceController:
    """``qMRMLSliceControllerWidget``: only ``rotateSliceToLowestVolumeAxes``.

    Libs/MRML/Widgets/qMRMLSliceControllerWidget.cxx (v5.8.1 to the development
    head) brackets ``vtkMRMLSliceLogic::RotateSliceToLowestVolumeAxes`` with the
    slice node's interaction flags; so does this.
    """

    def __init__(self, slice_logic):
        self._slice_logic = slice_logic

    def rotateSliceToLowestVolumeAxes(self):
        flag = slicer.vtkMRMLSliceNode.RotateToBackgroundVolumePlaneFlag
        self._slice_logic.StartSliceNodeInteraction(flag)
        self._slice_logic.RotateSliceToLowestVolumeAxes()
        self._slice_logic.EndSliceNodeInteraction()


class SliceWidget:
    """``qMRMLSliceWidget``: its slice logic (real) and controller."""

    def __init__(self, slice_logic):
        self._slice_logic = slice_logic

    def sliceLogic(self):
        return self._slice_logic

    def sliceController(self):
        return SliceController(self._slice_logic)


class LayoutManager:
    """``qSlicerLayoutManager`` over the scene's real layout logic and layout node.

    As Libs/MRML/Widgets/qMRMLLayoutManager.cxx (v5.8.1 to the development
    head): ``layout`` is the layout node's view arrangement; ``setLayout`` of a
    layout the node has no description of selects Conventional instead.  The
    layout logic creates the view nodes of the arrangement; a slice widget's
    logic is made for the slice node of that name, as the layout manager does
    when it creates the view.
    """

    def __init__(self, scene, application_logic):
        self._scene = scene
        self._application_logic = application_logic
        self._layout_logic = slicer.vtkMRMLLayoutLogic()
        self._layout_logic.SetMRMLScene(scene)
        self._slice_logics = {}

    @property
    def layout(self):
        node = self._layout_logic.GetLayoutNode()
        return node.GetViewArrangement() if node is not None else slicer.vtkMRMLLayoutNode.SlicerLayoutNone

    def setLayout(self, layout):
        if layout == self.layout:
            return
        node = self._layout_logic.GetLayoutNode()
        if not node.IsLayoutDescription(layout):
            layout = slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView
        node.SetViewArrangement(layout)

    def layoutLogic(self):
        return self._layout_logic

    def sliceWidget(self, name):
        slice_node = self._scene.GetSingletonNode(name, "vtkMRMLSliceNode")
        if slice_node is None:
            return None  # no such view in the current layout
        if name not in self._slice_logics:
            logic = slicer.vtkMRMLSliceLogic()
            logic.SetMRMLApplicationLogic(self._application_logic)
            logic.SetMRMLScene(self._scene)
            logic.SetSliceNode(slice_node)
            self._slice_logics[name] = logic
        return SliceWidget(self._slice_logics[name])


class ScriptedFileReader:
    """``qSlicerScriptedFileReader``: the parent of a module's ``<name>FileReader`` (its ``loadedNodes``)."""

    def __init__(self):
        self.loadedNodes = []


class IOManager:
    """``qSlicerCoreIOManager``: readers by file type, ``loadNodes``.

    ``loadNodes(fileType, properties, loadedNodes)`` follows
    Base/QTCore/qSlicerCoreIOManager.cxx (v5.8.1): each reader of that file type
    that can load the file (``canLoadFile``) is asked in turn; the first that
    loads it wins, and the nodes it reports (by ID) go into the collection.
    """

    def __init__(self, scene):
        self._scene = scene
        self._readers = []

    def registerIO(self, reader):
        self._readers.append(reader)

    def loadNodes(self, file_type, properties, loaded_nodes=None):
        for reader in self._readers:
            if reader.fileType() != file_type or not reader.canLoadFile(properties["fileName"]):
                continue
            if not reader.load(dict(properties)):
                continue
            if loaded_nodes is not None:
                for node_id in reader.parent.loadedNodes:
                    loaded_nodes.AddItem(self._scene.GetNodeByID(node_id))
            return True
        return False


class ScriptedModule:
    """``qSlicerScriptedLoadableModule``: the parent of a module class (metadata) and its panel.

    ``widgetRepresentation()`` makes the panel on first use and sets it up
    (``qSlicerAbstractCoreModule::widgetRepresentation``); its ``self()`` is
    the Python panel object (``qSlicerScriptedLoadableModuleWidget``).
    """

    def __init__(self, module_file, make_panel):
        self.path = module_file
        self._make_panel = make_panel
        self._representation = None

    def widgetRepresentation(self):
        if self._representation is None:
            panel = self._make_panel()
            panel.setup()
            self._representation = types.SimpleNamespace(self=lambda: panel)
        return self._representation


def select_module(name):
    """``slicer.util.selectModule``: the panel is made if needed, then entered (its parent ``isEntered``).

    As ``qSlicerAbstractModuleWidget::enter`` (Base/QTGUI) then the Python
    ``enter``; the module shown before is left (``exit``).
    """
    panel = getattr(slicer.modules, name.lower()).widgetRepresentation().self()
    previous = getattr(slicer.modules, "_selectedPanel", None)
    if previous is panel:
        return
    if previous is not None:
        previous.parent.isEntered = False
        previous.exit()
    slicer.modules._selectedPanel = panel
    panel.parent.isEntered = True
    panel.enter()


def register_scripted_io(io_manager, module):
    """What ``qSlicerScriptedLoadableModule::registerIO`` does for a module file (Base/QTGUI, v5.8.1).

    The class named ``<module name>FileReader``, if the file has one, is made
    with a ``qSlicerScriptedFileReader`` as parent and registered.
    """
    reader_class = getattr(module, module.__name__ + "FileReader", None)
    if reader_class is not None:
        io_manager.registerIO(reader_class(ScriptedFileReader()))


class Application:
    """``slicer.app`` around one scene."""

    def __init__(self, scene):
        self._scene = scene
        self._slots = {}
        self._application_logic = slicer.vtkSlicerApplicationLogic()
        self._application_logic.SetMRMLScene(scene)
        self._layout_manager = LayoutManager(scene, self._application_logic)
        self._io_manager = IOManager(scene)
        self._module_manager = types.SimpleNamespace(connect=lambda signal, slot: True)
        self.processedEvents = 0

    def connect(self, signal, slot):
        self._slots.setdefault(signal, []).append(slot)
        return True

    def connections(self, signal):
        """Slots connected to an application signal (test helper)."""
        return list(self._slots.get(signal, ()))

    def emit(self, signal, *arguments):
        """Emit an application signal, e.g. ``"startupCompleted()"`` (test helper)."""
        for slot in self.connections(signal):
            slot(*arguments)

    def applicationLogic(self):
        return self._application_logic

    def layoutManager(self):
        return self._layout_manager

    def coreIOManager(self):
        return self._io_manager

    def moduleManager(self):
        return self._module_manager

    def processEvents(self, *flags):
        self.processedEvents += 1

    #: Slicer's self-tests run in testing mode: ``slicer.util`` message boxes only log.
    applicationName = "Slicer"

    def testingEnabled(self):
        return True


def modules(application):
    """``slicer.modules`` with the logics of the modules the panel relies on (real MRML logics).

    The Colors module's logic adds Slicer's default colour tables to the scene,
    as at Slicer's start-up, so that volumes get their grey display.

    Parameters
    ----------
    application : Application

    Returns
    -------
    types.SimpleNamespace
        ``colors``, ``plots`` and ``markups``, each with ``logic()``.
    """
    scene = application._scene
    colors = slicer.vtkSlicerColorLogic()  # the Colors module: default colour tables (Grey...) in the scene
    colors.SetMRMLApplicationLogic(application.applicationLogic())
    colors.SetMRMLScene(scene)
    plots = slicer.vtkSlicerPlotsLogic()
    plots.SetMRMLApplicationLogic(application.applicationLogic())
    plots.SetMRMLScene(scene)
    markups = slicer.vtkSlicerMarkupsLogic()
    markups.SetMRMLApplicationLogic(application.applicationLogic())
    markups.SetMRMLScene(scene)
    return types.SimpleNamespace(colors=types.SimpleNamespace(logic=lambda: colors),
                                 plots=types.SimpleNamespace(logic=lambda: plots),
                                 markups=types.SimpleNamespace(logic=lambda: markups))

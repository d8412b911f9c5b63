"""Test doubles for what a scripted module meets in Slicer beyond the MRML library.

``slicer-core`` (PyPI) provides Slicer's real MRML library (and its logics) but
not the parts of Slicer that need the application: ``slicer.ScriptedLoadableModule``,
``slicer.parameterNodeWrapper``, ``qt``, ``ctk``, the ``SampleData`` module,
``slicer.app`` and the panel's widgets.  These doubles stand in for them, so
that ``AIAIF/AIAIF.py`` imports under ``slicer-core``, its Logic runs against a
real ``vtkMRMLScene`` set as ``slicer.mrmlScene``, and its panel runs on
PythonQt-style widget doubles.  Nothing MRML is faked.

The doubles are as strict as Slicer where the module depends on it, and each
rule cites the Slicer source it follows:

* start-up order: the module file is imported while ``slicer`` holds none of
  the Markups module's classes (``install``), which arrive when the Markups
  module is instantiated (``load_markups``);
* ``slicer.app`` (``application``): the real application, layout, slice,
  colour and Plots logics wired to the scene, so ``ShowChartInLayout`` changes the layout
  as it does in Slicer;
* the segment selectors (``widgets.SegmentSelector``) choose their current
  segment as ``qMRMLSegmentSelectorWidget`` does;
* ``SampleData`` downloads and loads a sample as Slicer's module does, and
  calls a ``customDownloader`` only from the sample's button.

``pyqt_widgets`` holds the PyQt5 stand-ins for Slicer's and CTK's widget
classes, with which the .ui file loads in real Qt.

``import_module_file(monkeypatch, directory)`` imports the module file the way
Slicer starts it; ``start_application`` and ``build_panel`` add the
application and the panel.  Everything is undone by ``monkeypatch`` after the
test.
"""

import importlib
import sys
import types

DOUBLED_MODULES = {
    "slicer.ScriptedLoadableModule": "slicer_doubles.ScriptedLoadableModule",
    "slicer.parameterNodeWrapper": "slicer_doubles.parameterNodeWrapper",
    "qt": "slicer_doubles.qt",
    "ctk": "slicer_doubles.ctk",
    "SampleData": "slicer_doubles.SampleData",
}

#: Classes of the Markups module's MRML library, by release: the headers of
#: Modules/Loadable/Markups/MRML/ at v5.8.1, and at v5.10.0 (unchanged at the
#: development head, commit 583e9b37d5), where all but the JSON storage classes
#: had moved into MRML core (Libs/MRML/Core/).
MARKUPS_MRML_CLASSES = {
    "5.8": ("vtkCurveMeasurementsCalculator", "vtkMRMLMarkupsAngleNode", "vtkMRMLMarkupsClosedCurveNode",
            "vtkMRMLMarkupsCurveNode", "vtkMRMLMarkupsDisplayNode", "vtkMRMLMarkupsFiducialDisplayNode",
            "vtkMRMLMarkupsFiducialNode", "vtkMRMLMarkupsFiducialStorageNode", "vtkMRMLMarkupsJsonElement",
            "vtkMRMLMarkupsJsonStorageNode", "vtkMRMLMarkupsLineNode", "vtkMRMLMarkupsNode",
            "vtkMRMLMarkupsPlaneDisplayNode", "vtkMRMLMarkupsPlaneJsonStorageNode", "vtkMRMLMarkupsPlaneNode",
            "vtkMRMLMarkupsROIDisplayNode", "vtkMRMLMarkupsROIJsonStorageNode", "vtkMRMLMarkupsROINode",
            "vtkMRMLMeasurementAngle", "vtkMRMLMeasurementArea", "vtkMRMLMeasurementLength",
            "vtkMRMLMeasurementVolume", "vtkProjectMarkupsCurvePointsFilter"),
    "5.10": ("vtkMRMLMarkupsJsonElement", "vtkMRMLMarkupsJsonStorageNode", "vtkMRMLMarkupsPlaneJsonStorageNode",
             "vtkMRMLMarkupsROIJsonStorageNode"),
}
RELEASES = tuple(MARKUPS_MRML_CLASSES)

#: slicer-core's Python modules of the Markups module's other libraries (Logic, displayable manager, VTK
#: widgets): their classes, too, reach ``slicer`` only when Markups is instantiated, in every release.
_MARKUPS_LIBRARY_MODULE_PREFIX = "slicer_core.vtkSlicerMarkupsModule"


def _markups_module_classes(release):
    """Names and objects of ``slicer`` that the Markups module brings in ``release``."""
    import slicer

    names = set(MARKUPS_MRML_CLASSES[release])
    for name in dir(slicer):
        if name.startswith("vtkSlicerMarkupsModule") or getattr(
                getattr(slicer, name), "__module__", "").startswith(_MARKUPS_LIBRARY_MODULE_PREFIX):
            names.add(name)
    return {name: getattr(slicer, name) for name in sorted(names) if hasattr(slicer, name)}


def install(monkeypatch, release="5.8"):
    """Register the doubles, in the state of Slicer ``release`` while it instantiates the modules.

    Slicer instantiates modules in the sorted order of their names
    (``qSlicerAbstractModuleFactoryManager::instantiateModules`` walks a
    ``QMap``, Base/QTCore/qSlicerAbstractModuleFactoryManager.cxx) and a
    scripted module's file runs when it is instantiated
    (``ctkFactoryScriptedItem::instanciator``, Base/QTGUI/qSlicerScriptedLoadableModuleFactory.cxx),
    so "AIAIF" runs before "Markups".  A loadable module's classes reach
    ``slicer`` when it is instantiated
    (``qSlicerScriptedUtils::importModulePythonExtensions``, Base/QTCore/qSlicerScriptedUtils.cxx,
    v5.8.1 to the development head).  So ``slicer`` here holds none of the
    Markups module's classes; its MRML library's own Python module,
    ``vtkSlicerMarkupsModuleMRMLPython``, is importable (the launcher puts
    ``qt-loadable-modules`` on ``PYTHONPATH``,
    CMake/SlicerBlockCTKAppLauncherSettings.cmake) and holds that release's
    classes.  ``load_markups`` completes the start-up.

    Parameters
    ----------
    monkeypatch : pytest.MonkeyPatch
        Records every change so that it is undone after the test.
    release : {"5.8", "5.10"}
        "5.10" also stands for the development head.

    Returns
    -------
    dict
        The Markups module's classes held back from ``slicer``, by name.
    """
    import slicer

    for name, double_name in DOUBLED_MODULES.items():
        double = importlib.import_module(double_name)
        monkeypatch.setitem(sys.modules, name, double)
        if name.startswith("slicer."):
            monkeypatch.setattr(slicer, name.split(".", 1)[1], double, raising=False)
    held_back = _markups_module_classes(release)
    library = types.ModuleType("vtkSlicerMarkupsModuleMRMLPython")
    for name in MARKUPS_MRML_CLASSES[release]:
        if name in held_back:
            setattr(library, name, held_back[name])
    monkeypatch.setitem(sys.modules, library.__name__, library)
    for name in held_back:
        monkeypatch.delattr(slicer, name)
    return held_back


def load_markups(monkeypatch, held_back):
    """Instantiate the Markups module: its classes enter ``slicer`` (``importModulePythonExtensions``).

    Parameters
    ----------
    monkeypatch : pytest.MonkeyPatch
    held_back : dict
        What ``install`` returned.
    """
    import slicer

    for name, value in held_back.items():
        monkeypatch.setattr(slicer, name, value, raising=False)


def import_module_file(monkeypatch, directory, name="AIAIF", release="5.8"):
    """Import the scripted module ``<directory>/<name>.py`` afresh, the way Slicer ``release`` starts it.

    The file is imported in the start-up state of ``install``, then the
    Markups module is loaded, as Slicer does before any panel or test runs.

    Parameters
    ----------
    monkeypatch : pytest.MonkeyPatch
        Undoes the doubles, the ``sys.path`` entry and the module import after the test.
    directory : str or os.PathLike
        Folder of the module file (a source checkout's ``AIAIF/`` or an installed layout).
    name : str, optional
        Module name.
    release : {"5.8", "5.10"}, optional
        Slicer release whose start-up order is followed.

    Returns
    -------
    module
    """
    held_back = install(monkeypatch, release)
    monkeypatch.syspath_prepend(str(directory))
    # setitem records what was there (or that nothing was), so the import is undone after the test.
    monkeypatch.setitem(sys.modules, name, None)
    del sys.modules[name]
    module = importlib.import_module(name)
    load_markups(monkeypatch, held_back)
    return module


def start_application(monkeypatch, module, cache_directory):
    """Finish Slicer's start-up around an imported module file: ``slicer.app``, the module, its IO, start-up signal.

    As the application does: ``slicer.app`` and ``slicer.modules`` (with the
    Colors, Plots and Markups logics) exist; the module class is instantiated
    with its ``qSlicerScriptedLoadableModule`` parent, which is
    ``slicer.modules.<lower-case name>``; the file's ``<name>FileReader`` is
    registered (``qSlicerScriptedLoadableModule::registerIO``); then
    ``startupCompleted()`` is emitted.  ``slicer.util.selectModule``,
    ``loadUI`` and ``childWidgetVariables`` work on the widget doubles, built
    from the module's .ui file (``widgets.load_ui``).

    Parameters
    ----------
    monkeypatch : pytest.MonkeyPatch
    module : module
        The module file, from ``import_module_file``.
    cache_directory : str or os.PathLike
        Sample Data's download cache.

    Returns
    -------
    application.Application
        ``slicer.app``.
    """
    import os

    import slicer

    from . import SampleData, application, widgets

    app = application.Application(slicer.mrmlScene)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    monkeypatch.setattr(slicer, "modules", application.modules(app), raising=False)
    monkeypatch.setattr(SampleData, "cacheDirectory", str(cache_directory))
    monkeypatch.setattr(slicer.util, "loadUI", widgets.load_ui)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", widgets.child_widget_variables)
    monkeypatch.setattr(slicer.util, "selectModule", application.select_module)
    name = module.__name__
    parent = application.ScriptedModule(os.path.abspath(module.__file__),
                                        lambda: getattr(module, name + "Widget")(widgets.ModulePanel()))
    setattr(slicer.modules, name.lower(), parent)
    getattr(module, name)(parent)
    application.register_scripted_io(app.coreIOManager(), module)
    app.emit("startupCompleted()")
    return app


def build_panel(module):
    """The module's panel, made and set up as when Slicer first shows it (needs ``start_application``).

    Returns
    -------
    The module's widget object (``<name>Widget``), after ``setup()``.
    """
    import slicer

    return getattr(slicer.modules, module.__name__.lower()).widgetRepresentation().self()

"""Test doubles for the four imports of a scripted module that ``slicer-core`` lacks.

``slicer-core`` (PyPI) provides Slicer's real MRML library but not the parts
of Slicer that need the application: ``slicer.ScriptedLoadableModule``,
``slicer.parameterNodeWrapper``, ``qt`` and ``ctk``.  These doubles stand in
for exactly those four, so that ``AIAIF/AIAIF.py`` imports under
``slicer-core`` and ``AIAIFLogic`` runs against a real ``vtkMRMLScene`` set as
``slicer.mrmlScene``.  Nothing MRML is faked.

``install(monkeypatch)`` puts the doubles into ``sys.modules`` for one test
(or test module) and restores everything afterwards;
``import_module_file(monkeypatch, directory)`` also imports the module file.
"""

import importlib
import sys

DOUBLED_MODULES = {
    "slicer.ScriptedLoadableModule": "slicer_doubles.ScriptedLoadableModule",
    "slicer.parameterNodeWrapper": "slicer_doubles.parameterNodeWrapper",
    "qt": "slicer_doubles.qt",
    "ctk": "slicer_doubles.ctk",
}


def install(monkeypatch):
    """Register the four doubles in ``sys.modules`` (undone by ``monkeypatch``).

    Parameters
    ----------
    monkeypatch : pytest.MonkeyPatch
        Records every change so that it is undone after the test.
    """
    import slicer

    for name, double_name in DOUBLED_MODULES.items():
        double = importlib.import_module(double_name)
        monkeypatch.setitem(sys.modules, name, double)
        if name.startswith("slicer."):
            monkeypatch.setattr(slicer, name.split(".", 1)[1], double, raising=False)


def import_module_file(monkeypatch, directory, name="AIAIF"):
    """Import the scripted module ``<directory>/<name>.py`` afresh with the doubles installed.

    Parameters
    ----------
    monkeypatch : pytest.MonkeyPatch
        Undoes the doubles, the ``sys.path`` entry and the module import after the test.
    directory : str or os.PathLike
        Folder of the module file (a source checkout's ``AIAIF/`` or an installed layout).
    name : str, optional
        Module name.

    Returns
    -------
    module
    """
    install(monkeypatch)
    monkeypatch.syspath_prepend(str(directory))
    # setitem records what was there (or that nothing was), so the import is undone after the test.
    monkeypatch.setitem(sys.modules, name, None)
    del sys.modules[name]
    return importlib.import_module(name)

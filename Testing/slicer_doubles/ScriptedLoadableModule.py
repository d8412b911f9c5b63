"""Double of ``slicer.ScriptedLoadableModule`` (Base/Python/slicer/ScriptedLoadableModule.py in Slicer).

The real base classes need the application (``slicer.app``, Qt).  These keep
the parts a module's Logic and Test rely on, with the same behaviour:

* ``ScriptedLoadableModule`` fills the parent's metadata defaults, finds the
  icon at ``<module dir>/Resources/Icons/<name>.png`` and offers
  ``resourcePath`` and ``runTest``;
* ``ScriptedLoadableModuleLogic.getParameterNode`` returns the scene's
  singleton ``vtkMRMLScriptedModuleNode`` of the module (tagged with the
  module name), creating it on first use -- on the real
  ``slicer.mrmlScene``;
* ``ScriptedLoadableModuleTest`` is a ``unittest.TestCase`` whose
  ``delayDisplay`` logs instead of showing a message box;
* ``ScriptedLoadableModuleWidget`` holds the panel's parent and layout (see
  ``slicer_doubles.build_panel``).
"""

import importlib
import logging
import os
import unittest

import slicer

__all__ = ["ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
           "ScriptedLoadableModuleTest"]


class ScriptedLoadableModule:
    """Module metadata holder; ``parent`` is any object taking attributes (a ``qSlicerScriptedLoadableModule``)."""

    def __init__(self, parent):
        import qt

        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""
        icon = os.path.join(os.path.dirname(parent.path), "Resources", "Icons", self.moduleName + ".png")
        if os.path.isfile(icon):
            parent.icon = qt.QIcon(icon)
        if not hasattr(slicer, "selfTests"):
            slicer.selfTests = {}
        slicer.selfTests[self.moduleName] = self.runTest

    def resourcePath(self, filename):
        return os.path.join(os.path.dirname(self.parent.path), "Resources", filename)

    def runTest(self, msec=100, **kwargs):
        module = importlib.import_module(self.__module__)
        test_case = getattr(module, self.moduleName + "Test")()
        test_case.messageDelay = msec
        test_case.runTest(**kwargs)


class ScriptedLoadableModuleWidget:
    """The base of a module panel, as in Slicer (the same at v5.8.1, v5.10.0 and the development head).

    ``__init__`` keeps the parent panel and its layout and connects to the
    module manager; ``setup`` adds the developer section only in developer
    mode, which is off here, so it adds nothing.  The real class makes a
    top-level parent when given none; the double needs one
    (``widgets.ModulePanel``).
    """

    def __init__(self, parent=None):
        super().__init__()
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Widget"):
            self.moduleName = self.moduleName[:-len("Widget")]
        self.developerMode = False
        if parent is None:
            raise RuntimeError("The ScriptedLoadableModuleWidget double needs a parent (slicer_doubles.widgets.ModulePanel).")
        self.parent = parent
        self.layout = self.parent.layout()
        slicer.app.moduleManager().connect("moduleAboutToBeUnloaded(QString)", self._onModuleAboutToBeUnloaded)

    def _onModuleAboutToBeUnloaded(self, moduleName):
        if moduleName == self.moduleName:
            self.cleanup()

    def setup(self):
        pass

    def cleanup(self):
        pass


class ScriptedLoadableModuleLogic:
    """Parameter-node access as in Slicer: one ``vtkMRMLScriptedModuleNode`` per module in ``slicer.mrmlScene``."""

    def __init__(self, parent=None):
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Logic"):
            self.moduleName = self.moduleName[:-len("Logic")]
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is not None:
            return node
        return slicer.mrmlScene.AddNode(self.createParameterNode())

    def createParameterNode(self):
        node = slicer.vtkMRMLScriptedModuleNode()
        node.SetSingletonTag(self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)
        node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    """A TestCase whose ``delayDisplay`` logs the message."""

    def delayDisplay(self, message, requestedDelay=None, msec=None):
        logging.info(message)

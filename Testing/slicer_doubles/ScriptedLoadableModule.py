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
  ``delayDisplay`` logs instead of showing a message box.

``ScriptedLoadableModuleWidget`` exists so the module file imports; it is
never instantiated here.
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
    """Placeholder: a widget needs the application."""

    def __init__(self, parent=None):
        raise RuntimeError("ScriptedLoadableModuleWidget needs the Slicer application; it cannot be built in tests.")


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

"""The module uses no Slicer, CTK or PythonQt name that Testing/SLICER_API.md does not list.

SLICER_API.md lists each name with the Slicer (or CTK, PythonQt, Qt) source
that defines it, checked at the releases it names.  These tests read the
module's Python files (``AIAIF/AIAIF.py`` and the subpackage beside it, which
Slicer runs as part of it) and ``Resources/UI/AIAIF.ui`` and fail when

* the module reaches a name that is neither listed nor explained otherwise
  (defined by the module itself or by ``AIAIFLib``, or a name of the Python
  standard library or of VTK), so that the next new call is looked up in
  Slicer's source before it lands;
* the list names something the module no longer uses.

What counts as a name of the module: every attribute it reaches
(``a.b``), every name it imports from ``slicer``, ``qt``, ``ctk``, ``vtk``
or Slicer's modules, the C++ signal signatures it connects to
(``"clicked(bool)"``), the MRML class and module names it spells out in
strings, and, in the .ui file, the Slicer and CTK widget classes, the
properties set on them and the signals and slots connected.  A Slicer name
that is spelt like a name explained otherwise (``text``, ``format``,
``setup``) escapes the first check; such names are listed anyway.
"""

import ast
import builtins
import contextlib
import enum
import hashlib
import json
import logging
import os
import pathlib
import re
import sys
import typing
import unittest
import xml.etree.ElementTree as ElementTree

import pytest
import vtk

from module_source import module_source, module_tree

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UI_FILE = os.path.join(REPOSITORY, "Resources", "UI", "AIAIF.ui")
API_FILE = os.path.join(REPOSITORY, "Testing", "SLICER_API.md")
LIBRARY = os.path.join(REPOSITORY, "AIAIFLib")

#: Modules whose imported names are Slicer's (or CTK's, PythonQt's).
SLICER_MODULES = ("slicer", "qt", "ctk", "SampleData", "vtkSlicerMarkupsModuleMRMLPython")
SIGNATURE = re.compile(r"^\w+\([\w*, ]*\)$")
CLASS_NAME = re.compile(r"^(vtkMRML|vtkSlicer|qMRML|qSlicer|ctk)\w+$")


def _parse(path):
    with open(path) as handle:
        return ast.parse(handle.read(), filename=path)


def _defined_names(tree):
    """Names a Python file defines: classes, functions, parameters, assigned names and attributes, fields."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and isinstance(
                node.value, ast.Name) and node.value.id in ("self", "cls"):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _library_names():
    names = set()
    for directory, _, files in os.walk(LIBRARY):  # the package and its subpackages (AIAIFLib/mrml/)
        names.add(os.path.basename(directory))
        for name in files:
            if name.endswith(".py"):
                names |= _defined_names(_parse(os.path.join(directory, name)))
                names.add(name[:-3])
    return names


def _standard_names():
    """Attributes of what the module uses from Python and VTK (not Slicer's to list)."""
    names = set(dir(builtins))
    for thing in (contextlib, enum, enum.Enum, hashlib, hashlib.sha256(), json, logging, os, os.path, pathlib,
                  pathlib.Path, sys, typing, unittest.TestCase, str, dict, list, tuple, set, object, vtk,
                  vtk.vtkCommand, vtk.vtkObject, vtk.vtkImageData):
        names |= set(dir(thing))
    return names


def module_names(tree=None):
    """Every name the module's files reach, as described in this file's docstring."""
    tree = tree or module_tree()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)  # hooks Slicer calls (setup, <module>FileReader.load...) are listed too
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in SLICER_MODULES:
            names.add(node.module)
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.split(".")[0] in SLICER_MODULES}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                SIGNATURE.match(node.value) or CLASS_NAME.match(node.value)):
            names.add(node.value)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "selectModule":
            names |= {arg.value for arg in node.args if isinstance(arg, ast.Constant)}
        elif isinstance(node, ast.Assign) and any(getattr(t, "attr", None) == "dependencies" for t in node.targets):
            names |= {element.value for element in node.value.elts}
    return names


def ui_names(path=UI_FILE):
    """Slicer and CTK widget classes of the .ui file, their properties, and the connected signals and slots."""
    root = ElementTree.parse(path).getroot()
    custom = {element.findtext("class") for element in root.iter("customwidget")}
    names = set(custom)
    for widget in root.iter("widget"):
        for prop in widget.findall("property"):
            if widget.get("class") in custom or prop.get("stdset") == "0":  # stdset 0: a dynamic property
                names.add(prop.get("name"))
    for connection in root.iter("connection"):
        names |= {connection.findtext("signal"), connection.findtext("slot")}
    return names


def listed_names(path=API_FILE):
    """The first-column names of every table in SLICER_API.md (in backticks)."""
    names = set()
    with open(path) as handle:
        for line in handle:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if line.startswith("|") and len(cells) >= 3 and cells[0].startswith("`"):
                names |= set(re.findall(r"`([^`]+)`", cells[0]))
    return names


def _ui_widget_names(path=UI_FILE):
    return {widget.get("name") for widget in ElementTree.parse(path).getroot().iter("widget")}


def unexplained_names():
    """Names of the module that are not defined by it, its .ui file, AIAIFLib, Python or VTK."""
    tree = module_tree()
    explained = _defined_names(tree) | _ui_widget_names() | _library_names() | _standard_names()
    return (module_names(tree) - explained) | ui_names()


@pytest.fixture(scope="module")
def listed():
    return listed_names()


def test_every_slicer_name_the_module_uses_is_listed(listed):
    missing = unexplained_names() - listed
    assert not missing, "Look these up in Slicer's source and list them in Testing/SLICER_API.md: {}".format(
        sorted(missing))


def test_every_listed_name_is_used(listed):
    used = module_names() | ui_names()
    assert not listed - used, "No longer used; remove from Testing/SLICER_API.md: {}".format(sorted(listed - used))


def test_each_listed_name_says_where_it_is_defined():
    with open(API_FILE) as handle:
        rows = [line for line in handle if line.startswith("| `")]
    assert rows
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) == 3 and cells[2], row  # name | use | defined in


def test_the_check_catches_a_new_call():
    source = module_source() + "\nslicer.util.someNewHelper()\nslicer.app.connect('aboutToQuit()', print)\n"
    tree = ast.parse(source)
    names = module_names(tree) - _defined_names(tree) - _library_names() - _standard_names()
    assert {"someNewHelper", "aboutToQuit()"} <= names - listed_names()

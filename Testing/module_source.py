"""The scripted module's Python files, for the tests that read its source rather than run it.

The module is ``AIAIF/AIAIF.py`` and the subpackage beside it, which the file
imports (Slicer runs the file; the file runs the subpackage).  A check of
what the module calls or which widgets it uses reads them all.
"""

import ast
import os

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE_DIRECTORY = os.path.join(REPOSITORY, "AIAIF")
MODULE_FILE = os.path.join(MODULE_DIRECTORY, "AIAIF.py")


def module_files():
    """The module file, then every Python file of the subpackages beside it.

    Returns
    -------
    list of str
        Absolute paths, the subpackages' in sorted order.
    """
    files = []
    for directory, folders, names in os.walk(MODULE_DIRECTORY):
        folders[:] = sorted(folder for folder in folders if folder != "__pycache__")
        files.extend(os.path.join(directory, name) for name in sorted(names) if name.endswith(".py"))
    return [MODULE_FILE] + [path for path in files if path != MODULE_FILE]


def module_source():
    """The text of every module file (``module_files``), one after the other, as one Python source.

    Returns
    -------
    str
    """
    texts = []
    for path in module_files():
        with open(path) as handle:
            texts.append(handle.read())
    return "\n".join(texts)


def module_tree():
    """The module's files parsed as one tree: what one file defines is defined for all.

    Returns
    -------
    ast.Module
    """
    return ast.parse(module_source())

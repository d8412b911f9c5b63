"""Where the library and the resources are: ``AIAIFLib`` importable, ``resourcePath``.

Imported first by the package (``__init__``), so that ``AIAIFLib`` is on
``sys.path`` before any file here imports it.
"""

import os
import sys

#: Folder of the module file ``AIAIF.py``, which holds this subpackage: ``<repository>/AIAIF`` in a
#: source checkout, Slicer's ``qt-scripted-modules`` folder once built or installed.
MODULE_DIRECTORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _packageRoot():
    """Folder holding ``AIAIFLib`` and ``Resources``: beside the module once installed, one up in a source checkout."""
    for candidate in (MODULE_DIRECTORY, os.path.dirname(MODULE_DIRECTORY)):
        if os.path.isdir(os.path.join(candidate, "AIAIFLib")) and os.path.isdir(os.path.join(candidate, "Resources")):
            return candidate
    raise ImportError("AI-AIF cannot find its AIAIFLib package and Resources folder next to {} or one folder up; "
                      "reinstall the extension or add the module from a complete source checkout."
                      .format(MODULE_DIRECTORY))


PACKAGE_ROOT = _packageRoot()
if PACKAGE_ROOT not in sys.path:  # a source checkout: Slicer only put the module folder on sys.path
    sys.path.insert(0, PACKAGE_ROOT)


def resourcePath(relativePath):
    """Absolute path of a file under the extension's ``Resources`` folder (source checkout or installed).

    Parameters
    ----------
    relativePath : str
        Path below ``Resources``, e.g. ``"Icons/AIAIF.png"``.

    Returns
    -------
    str
    """
    return os.path.join(PACKAGE_ROOT, "Resources", relativePath)

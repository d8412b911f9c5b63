"""The Slicer side of AI-AIF: everything of the scripted module but its class and its self-test.

``AIAIF.py`` (the file Slicer scans and runs) imports these files and exposes
their names, since Slicer looks up ``AIAIFWidget``, ``AIAIFLogic``,
``AIAIFTest`` and ``AIAIFFileReader`` in it.  Slicer registers a scripted
module for every ``*.py`` file of its folder, so the helpers live in this
subpackage beside it (as ``DICOMLib`` beside ``DICOM.py`` in Slicer).

One concept a file:

* ``paths``: where ``AIAIFLib`` and ``Resources`` are (``resourcePath``);
* ``i18n``: the translation functions, with a fallback for slicer-core;
* ``parameter_node``: ``AIAIFParameterNode`` and ``AifMode``;
* ``logic``: ``AIAIFLogic`` (the console API) and its ``AIAIFResult``;
* ``sample_data``: the Sample Data entry and ``AIAIFFileReader``;
* ``widget``: ``AIAIFWidget`` (the panel) and the results layout.

The science is in ``AIAIFLib``, a separate top-level package.
"""

# First: puts AIAIFLib on sys.path in a source checkout, before any file here imports it.
from . import paths  # noqa: F401

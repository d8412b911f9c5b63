"""The sample phantom: its Sample Data entry and ``AIAIFFileReader``, which loads it."""

import hashlib
import json
import logging
import os
import pathlib

from .i18n import _
from .paths import resourcePath

#: Name of the sample data set (Sample Data module) and of its nodes.
SAMPLE_PHANTOM_NAME = "AIAIFPhantom"
#: The sample's recipe, below ``Resources``: the one file Sample Data fetches; ``AIAIFFileReader`` reads it.
SAMPLE_RECIPE = "SampleData/AIAIFPhantom.aiaif.json"
SAMPLE_RECIPE_SUFFIX = ".aiaif.json"
#: File type of the recipe in Slicer's IO manager.
SAMPLE_FILE_TYPE = "AIAIFSamplePhantomFile"


def registerSampleData():
    """Offer the built-in phantom in the Sample Data module (generated on this computer; nothing is downloaded).

    The sample's one file is its recipe (``SAMPLE_RECIPE``, a few bytes shipped with the extension),
    which Sample Data copies into its cache and loads with ``AIAIFFileReader``; the reader generates
    the phantom.  So the Sample Data button and ``SampleData.downloadSample("AIAIFPhantom")`` share
    Sample Data's own path, ``SampleDataLogic.downloadFromSource``.  (A ``customDownloader`` would
    serve the button only: ``downloadFromSource`` never calls it, Modules/Scripted/SampleData/SampleData.py
    at v5.8.1, v5.10.0 and the development head.)
    """
    import SampleData

    recipe = resourcePath(SAMPLE_RECIPE)
    with open(recipe, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    if hasattr(SampleData.SampleDataLogic, "registerCustomSampleDataCategory"):  # Slicer 5.12 and later
        SampleData.SampleDataLogic.registerCustomSampleDataCategory("AI-AIF", title=_("AI-AIF"))
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="AI-AIF",
        sampleName=SAMPLE_PHANTOM_NAME,
        thumbnailFileName=resourcePath("Icons/AIAIFPhantom.png"),
        uris=[pathlib.Path(recipe).as_uri()],
        fileNames=[os.path.basename(recipe)],
        nodeNames=[SAMPLE_PHANTOM_NAME],
        loadFileTypes=[SAMPLE_FILE_TYPE],
        # The recipe's own checksum: a copy left in the cache by another version of the extension is replaced.
        checksums=["SHA256:" + digest],
    )


def isSampleRecipe(filePath):
    """Whether a file is the sample phantom's recipe (``SAMPLE_RECIPE``).

    Parameters
    ----------
    filePath : str

    Returns
    -------
    bool
    """
    if not filePath.endswith(SAMPLE_RECIPE_SUFFIX):
        return False
    try:
        with open(filePath) as handle:
            recipe = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(recipe, dict) and recipe.get("sample") == SAMPLE_PHANTOM_NAME


class AIAIFFileReader:
    """Loads the sample phantom's recipe by generating the phantom.

    Slicer registers the class named ``<module name>FileReader`` of a scripted
    module's file as a file reader (``qSlicerScriptedLoadableModule::registerIO``
    in Base/QTGUI/qSlicerScriptedLoadableModule.cxx, v5.8.1 to the development
    head); ``parent`` is that ``qSlicerScriptedFileReader`` (Base/QTCore).
    """

    def __init__(self, parent):
        self.parent = parent

    def description(self):
        return _("AI-AIF sample phantom")

    def fileType(self):
        return SAMPLE_FILE_TYPE

    def extensions(self):
        return [_("AI-AIF sample phantom") + " (*" + SAMPLE_RECIPE_SUFFIX + ")"]

    def canLoadFile(self, filePath):
        return isSampleRecipe(filePath)

    def load(self, properties):
        if not isSampleRecipe(properties["fileName"]):
            logging.error("%s is not the AI-AIF sample phantom's recipe; load it through the Sample Data module.",
                          properties["fileName"])
            return False
        from .logic import AIAIFLogic  # here, not above: logic.py imports this file's SAMPLE_PHANTOM_NAME

        try:
            nodes = AIAIFLogic().loadSamplePhantom()
        except Exception:
            logging.exception("AI-AIF could not generate the sample phantom")
            return False
        self.parent.loadedNodes = [node.GetID() for node in nodes]
        return True

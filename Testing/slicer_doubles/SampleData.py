"""Double of Slicer's ``SampleData`` module (Modules/Scripted/SampleData/SampleData.py).

The parts a module's sample data go through, with the behaviour they have at
v5.8.1, v5.10.0 and the development head (commit 583e9b37d5):

* ``SampleDataLogic.registerCustomSampleDataSource`` stores a
  ``SampleDataSource`` in ``slicer.modules.sampleDataSources[category]``;
  ``registerCustomSampleDataCategory`` exists from v5.12.0 only (commit
  c8fecf22b5), so the double, like v5.8 and v5.10, has none;
* ``downloadSample(name)`` and ``downloadSamples(name)`` (module functions and
  logic methods) find the source by name and call ``downloadFromSource``,
  which downloads each of the source's URIs into the cache and loads it with
  its node name and file type through ``slicer.app.coreIOManager().loadNodes``.
  It never calls ``customDownloader``: a source with no URIs loads nothing,
  and ``downloadSample`` then fails on the empty list;
* ``clickSampleButton(name)`` is what the sample's button in the module panel
  does (``SampleDataWidget.setCategoriesFromSampleDataSources``): ``customDownloader(source)`` if
  the source has one, else ``downloadFromSource(source)``.

Downloading is ``urllib.request.urlretrieve`` into ``cacheDirectory`` (set by
the test; Slicer uses the scene's cache folder), skipped when the file is
already there with the right checksum, as ``downloadFile`` does.  Zip files and
scenes, retries and download progress are left out.
"""

import hashlib
import os
import urllib.request

import slicer
import vtk

#: Folder standing in for ``slicer.mrmlScene.GetCacheManager().GetRemoteCacheDirectory()``.
cacheDirectory = None


class SampleDataSource:
    """One sample: URIs, file names, node names, checksums, load flags and file types, one per file."""

    def __init__(self, sampleName=None, sampleDescription=None, uris=None, fileNames=None, nodeNames=None,
                 checksums=None, loadFiles=None, customDownloader=None, thumbnailFileName=None,
                 loadFileTypes=None, loadFileProperties=None):
        self.sampleName = sampleName
        self.sampleDescription = sampleName if sampleDescription is None else sampleDescription
        if isinstance(uris, (list, tuple)):
            if isinstance(loadFileTypes, str) or loadFileTypes is None:
                loadFileTypes = [loadFileTypes] * len(uris)
            nodeNames = [None] * len(uris) if nodeNames is None else nodeNames
            loadFiles = [None] * len(uris) if loadFiles is None else loadFiles
            checksums = [None] * len(uris) if checksums is None else checksums
        elif isinstance(uris, str):
            uris, fileNames, nodeNames = [uris], [fileNames], [nodeNames]
            loadFiles, loadFileTypes, checksums = [loadFiles], [loadFileTypes], [checksums]
        self.uris = uris
        self.fileNames = fileNames
        self.nodeNames = nodeNames
        self.loadFiles = loadFiles
        self.customDownloader = customDownloader
        self.thumbnailFileName = thumbnailFileName
        self.loadFileTypes = loadFileTypes
        self.loadFileProperties = loadFileProperties or {}
        self.checksums = checksums
        if not len(uris) == len(fileNames) == len(nodeNames) == len(loadFiles) == len(loadFileTypes) == len(checksums):
            raise ValueError("All fields of sample data source must have the same length")


def _checksum_matches(path, checksum):
    if checksum is None:
        return True
    algorithm, digest = checksum.split(":", 1)
    with open(path, "rb") as handle:
        return hashlib.new(algorithm.lower(), handle.read()).hexdigest() == digest.lower()


class SampleDataLogic:
    """Registration, look-up, download into the cache and loading of samples."""

    @staticmethod
    def registerCustomSampleDataSource(category="Custom", sampleName=None, uris=None, fileNames=None,
                                       nodeNames=None, customDownloader=None, thumbnailFileName=None,
                                       loadFileTypes=None, loadFiles=None, loadFileProperties={}, checksums=None):
        if not hasattr(slicer.modules, "sampleDataSources"):
            slicer.modules.sampleDataSources = {}
        source = SampleDataSource(sampleName=sampleName, uris=uris, fileNames=fileNames, nodeNames=nodeNames,
                                  thumbnailFileName=thumbnailFileName, loadFileTypes=loadFileTypes,
                                  loadFiles=loadFiles, loadFileProperties=loadFileProperties, checksums=checksums,
                                  customDownloader=customDownloader)
        slicer.modules.sampleDataSources.setdefault(category, []).append(source)

    def sourceForSampleName(self, sampleName):
        for sources in getattr(slicer.modules, "sampleDataSources", {}).values():
            for source in sources:
                if source.sampleName == sampleName:
                    return source
        return None

    def downloadSample(self, sampleName):
        return self.downloadSamples(sampleName)[0]

    def downloadSamples(self, sampleName):
        source = self.sourceForSampleName(sampleName)
        return self.downloadFromSource(source) if source else []

    def downloadFileIntoCache(self, uri, name, checksum=None):
        os.makedirs(cacheDirectory, exist_ok=True)
        path = os.path.join(cacheDirectory, name)
        if os.path.exists(path) and os.stat(path).st_size > 0 and _checksum_matches(path, checksum):
            return path
        urllib.request.urlretrieve(uri, path)
        if not _checksum_matches(path, checksum):
            os.remove(path)
            raise ValueError("Checksum verification failed for {}".format(uri))
        return path

    def loadNode(self, uri, name, fileType=None, fileProperties={}):
        properties = dict(fileProperties, fileName=uri)
        if name:
            properties["name"] = name
        loaded = vtk.vtkCollection()
        if not slicer.app.coreIOManager().loadNodes(fileType, properties, loaded) and loaded.GetNumberOfItems() < 1:
            return None
        return loaded.GetItemAsObject(0)

    def downloadFromSource(self, source):
        nodes, paths = [], []
        for uri, fileName, nodeName, checksum, loadFile, loadFileType in zip(
                source.uris, source.fileNames, source.nodeNames, source.checksums, source.loadFiles,
                source.loadFileTypes):
            filePath = self.downloadFileIntoCache(uri, fileName, checksum)
            if nodeName and loadFile is not False:
                node = self.loadNode(filePath, nodeName, loadFileType, dict(source.loadFileProperties))
                if node is not None:
                    nodes.append(node)
            elif nodeName:
                nodes.append(filePath)
            else:
                paths.append(filePath)
        return nodes if nodes else paths


def downloadSample(sampleName):
    """The first node loaded for a sample (``SampleData.downloadSample``)."""
    return SampleDataLogic().downloadSamples(sampleName)[0]


def downloadSamples(sampleName):
    """Every node loaded for a sample (``SampleData.downloadSamples``)."""
    return SampleDataLogic().downloadSamples(sampleName)


def clickSampleButton(sampleName):
    """What the sample's button in the Sample Data panel does (``SampleDataWidget``)."""
    source = SampleDataLogic().sourceForSampleName(sampleName)
    if source.customDownloader:
        return source.customDownloader(source)
    return SampleDataLogic().downloadFromSource(source)

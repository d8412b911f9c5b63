"""Plain Qt (PyQt5) stand-ins for the Slicer and CTK widgets of the module's .ui file, and its loader.

``load_panel(path)`` builds ``Resources/UI/AIAIF.ui`` with PyQt5's own
Designer-file loader (``PyQt5.uic``), as Slicer builds it with Qt's
(``slicer.util.loadUI``): every widget, layout, property and signal-slot
connection of the file goes through real Qt.  The file's ``<customwidgets>``
(``qMRMLWidget``, ``qMRMLNodeComboBox``, ``qMRMLSegmentSelectorWidget``,
``ctkCollapsibleButton``) are Slicer's and CTK's C++ classes; the loader
imports each from a module named after its header, so the stand-ins below are
registered under those names while the file loads.

The loader sets a property by calling ``set<Name>`` on the widget, so a
stand-in takes exactly the properties of the real class that the file uses
(Testing/SLICER_API.md, where each is checked in the class's header): a
property the stand-in lacks fails the load, and the stand-in gets it only
after its header has been read.  The stand-ins draw themselves plainly, close
to Slicer's look, so that the panel can be rendered
(``Resources/Screenshots/render_panel.py``): node selectors list the nodes of
their types in a real MRML scene, segment selectors the segments of their
segmentation.

Qt needs a display; with ``QT_QPA_PLATFORM=offscreen`` (set here when no
platform is chosen) it renders into memory.
"""

import contextlib
import os
import sys
import types

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt5 import QtCore, QtWidgets, uic  # noqa: E402


_APPLICATION = []


def application():
    """The process's ``QApplication``, made on first use (offscreen unless a platform was chosen) and kept."""
    if QtWidgets.QApplication.instance() is None:
        _APPLICATION.append(QtWidgets.QApplication([sys.argv[0]]))
    return QtWidgets.QApplication.instance()


class qMRMLWidget(QtWidgets.QWidget):
    """``qMRMLWidget`` (Libs/MRML/Widgets/qMRMLWidget.h): a widget that hands its scene on.

    ``mrmlSceneChanged(vtkMRMLScene*)`` cannot be declared in PyQt (no such
    C++ type), so the signature the .ui connects maps to a signal of ``object``.
    """

    _sceneChanged = QtCore.pyqtSignal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    @property
    def mrmlSceneChanged(self):
        return {"vtkMRMLScene*": self._sceneChanged}

    def setMRMLScene(self, scene):
        self._scene = scene
        self._sceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class ctkCollapsibleButton(QtWidgets.QAbstractButton):
    """``ctkCollapsibleButton`` (CTK Libs/Widgets/ctkCollapsibleButton.h): a header button over its contents.

    Properties used: ``text`` (``QAbstractButton``), ``collapsed``.  Collapsed,
    the contents are hidden and only the header shows, as in CTK.
    """

    HEADER_MARGIN_PX = 8

    def __init__(self, parent=None):
        super().__init__(parent)
        self._collapsed = False
        self.setContentsMargins(0, self._header_height(), 0, 0)
        self.setSizePolicy(QtWidgets.QSizePolicy.Preferred, QtWidgets.QSizePolicy.Preferred)

    def _header_height(self):
        return self.fontMetrics().height() + self.HEADER_MARGIN_PX

    def collapsed(self):
        return self._collapsed

    def setCollapsed(self, collapsed):
        self._collapsed = bool(collapsed)
        self._show_contents()

    def _show_contents(self):
        for child in self.findChildren(QtWidgets.QWidget, options=QtCore.Qt.FindDirectChildrenOnly):
            child.setVisible(not self._collapsed)
        if self._collapsed:
            self.setFixedHeight(self._header_height())
        else:
            self.setMinimumHeight(0)
            self.setMaximumHeight(16777215)

    def showEvent(self, event):
        self._show_contents()  # the loader adds the contents after it set ``collapsed``
        super().showEvent(event)

    def sizeHint(self):
        hint = super().sizeHint()
        layout = self.layout()
        if layout is not None and not self._collapsed:
            hint = layout.sizeHint() + QtCore.QSize(0, self._header_height())
        return QtCore.QSize(hint.width(), max(hint.height(), self._header_height()))

    def paintEvent(self, event):
        painter = QtWidgets.QStylePainter(self)
        option = QtWidgets.QStyleOptionButton()
        option.initFrom(self)
        option.rect = QtCore.QRect(0, 0, self.width(), self._header_height())
        painter.drawControl(QtWidgets.QStyle.CE_PushButtonBevel, option)
        arrow = QtWidgets.QStyleOption()
        arrow.initFrom(self)
        size = self._header_height() // 2
        arrow.rect = QtCore.QRect(6, (self._header_height() - size) // 2, size, size)
        painter.drawPrimitive(QtWidgets.QStyle.PE_IndicatorArrowRight if self._collapsed
                              else QtWidgets.QStyle.PE_IndicatorArrowDown, arrow)
        text_rect = QtCore.QRect(10 + size, 0, self.width() - 16 - size, self._header_height())
        painter.drawText(text_rect, QtCore.Qt.AlignVCenter | QtCore.Qt.AlignLeft, self.text())


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    """``qMRMLNodeComboBox`` (Libs/MRML/Widgets/qMRMLNodeComboBox.h): the nodes of some types in the scene.

    Properties used: ``nodeTypes``, ``noneEnabled``, ``addEnabled``,
    ``removeEnabled``, ``renameEnabled``, ``showChildNodeTypes``,
    ``noneDisplay``.  It lists the scene's nodes of its types (of exactly
    those classes unless ``showChildNodeTypes``; hidden nodes never), after a
    "None" item with ``noneEnabled`` that reads ``noneDisplay``.
    """

    currentNodeChanged = QtCore.pyqtSignal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._node_types = []
        self._none_enabled = False
        self._none_display = "None"
        self._show_child_node_types = True
        self._editing = {"addEnabled": True, "removeEnabled": True, "renameEnabled": False}
        self._scene = None
        self._nodes = []

    def nodeTypes(self):
        return list(self._node_types)

    def setNodeTypes(self, node_types):
        self._node_types = list(node_types)
        self._populate()

    def noneEnabled(self):
        return self._none_enabled

    def setNoneEnabled(self, enabled):
        self._none_enabled = bool(enabled)
        self._populate()

    def noneDisplay(self):
        return self._none_display

    def setNoneDisplay(self, text):
        self._none_display = text
        self._populate()

    def setShowChildNodeTypes(self, show):
        self._show_child_node_types = bool(show)
        self._populate()

    def setAddEnabled(self, enabled):
        self._editing["addEnabled"] = bool(enabled)

    def setRemoveEnabled(self, enabled):
        self._editing["removeEnabled"] = bool(enabled)

    def setRenameEnabled(self, enabled):
        self._editing["renameEnabled"] = bool(enabled)

    def setMRMLScene(self, scene):
        self._scene = scene
        self._populate()

    def mrmlScene(self):
        return self._scene

    def _listed(self, node):
        if node.GetHideFromEditors():
            return False
        if self._show_child_node_types:
            return any(node.IsA(node_type) for node_type in self._node_types)
        return node.GetClassName() in self._node_types

    def _populate(self):
        current = self.currentNode()
        self._nodes = []
        if self._scene is not None:
            for node_type in self._node_types:
                for index in range(self._scene.GetNumberOfNodesByClass(node_type)):
                    node = self._scene.GetNthNodeByClass(index, node_type)
                    if self._listed(node) and node not in self._nodes:
                        self._nodes.append(node)
        self.blockSignals(True)
        self.clear()
        if self._none_enabled:
            self.addItem(self._none_display)
        for node in self._nodes:
            self.addItem(node.GetName())
        self.blockSignals(False)
        self.setCurrentNode(current)

    def currentNode(self):
        index = self.currentIndex() - (1 if self._none_enabled else 0)
        return self._nodes[index] if 0 <= index < len(self._nodes) else None

    def setCurrentNode(self, node):
        if node in self._nodes:
            self.setCurrentIndex(self._nodes.index(node) + (1 if self._none_enabled else 0))
        elif self._none_enabled or not self._nodes:
            self.setCurrentIndex(0 if self._none_enabled else -1)
        self.currentNodeChanged.emit(self.currentNode())


class qMRMLSegmentSelectorWidget(qMRMLWidget):
    """``qMRMLSegmentSelectorWidget`` (Libs/MRML/Widgets/qMRMLSegmentSelectorWidget.h) in single selection.

    Properties used: ``segmentationNodeSelectorVisible``, ``noneEnabled``,
    ``editEnabled``.  As its own .ui (Libs/MRML/Widgets/Resources/UI/): a
    segmentation selector over a "Segment:" label and the segment combo box,
    or a message when there is no segmentation.
    """

    currentSegmentChanged = QtCore.pyqtSignal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._segmentation_node = None
        self._none_enabled = False
        self._edit_enabled = False
        self._segmentation_selector = qMRMLNodeComboBox(self)
        self._segmentation_selector.setNodeTypes(["vtkMRMLSegmentationNode"])
        self._label = QtWidgets.QLabel("Segment: ", self)
        self._segments = QtWidgets.QComboBox(self)
        self._message = QtWidgets.QLabel("No node is selected", self)
        layout = QtWidgets.QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._segmentation_selector, 0, 0, 1, 2)
        layout.addWidget(self._label, 1, 0)
        layout.addWidget(self._segments, 1, 1)
        layout.addWidget(self._message, 2, 0, 1, 2)
        layout.setColumnStretch(1, 1)
        self._populate()

    def setSegmentationNodeSelectorVisible(self, visible):
        self._segmentation_selector.setVisible(bool(visible))

    def segmentationNodeSelectorVisible(self):
        return self._segmentation_selector.isVisibleTo(self)

    def setNoneEnabled(self, enabled):
        self._none_enabled = bool(enabled)
        self._segmentation_selector.setNoneEnabled(enabled)
        self._populate()

    def noneEnabled(self):
        return self._none_enabled

    def setEditEnabled(self, enabled):
        self._edit_enabled = bool(enabled)

    def setMRMLScene(self, scene):
        super().setMRMLScene(scene)
        self._segmentation_selector.setMRMLScene(scene)

    def setCurrentNode(self, node):
        self._segmentation_node = node
        self._segmentation_selector.setCurrentNode(node)
        self._populate()

    def currentNode(self):
        return self._segmentation_node

    def _populate(self):
        self._segments.clear()
        segmentation = self._segmentation_node.GetSegmentation() if self._segmentation_node else None
        count = segmentation.GetNumberOfSegments() if segmentation is not None else 0
        self._label.setVisible(count > 0)
        self._segments.setVisible(count > 0)
        self._message.setVisible(count == 0)
        self._message.setText("No segments in segmentation" if self._segmentation_node else "No node is selected")
        if self._none_enabled and count:
            self._segments.addItem("None", "")
        for index in range(count):
            self._segments.addItem(segmentation.GetNthSegment(index).GetName(), segmentation.GetNthSegmentID(index))

    def setCurrentSegmentID(self, segment_id):
        index = self._segments.findData(segment_id or "")
        if index >= 0:
            self._segments.setCurrentIndex(index)
            self.currentSegmentChanged.emit(segment_id or "")

    def currentSegmentID(self):
        return self._segments.currentData() or ""


#: The stand-ins, by the class name the .ui file gives them (its header's name without ``.h``).
STAND_INS = {cls.__name__: cls for cls in (qMRMLWidget, ctkCollapsibleButton, qMRMLNodeComboBox,
                                           qMRMLSegmentSelectorWidget)}


@contextlib.contextmanager
def registered_stand_ins():
    """Make each stand-in importable under its header's module name, for the time of a load."""
    saved = {name: sys.modules.get(name) for name in STAND_INS}
    try:
        for name, cls in STAND_INS.items():
            module = types.ModuleType(name)
            setattr(module, name, cls)
            sys.modules[name] = module
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def load_panel(path):
    """Build a Designer file with PyQt5's loader and the stand-ins: the top-level widget.

    Parameters
    ----------
    path : str
        ``Resources/UI/AIAIF.ui``.

    Returns
    -------
    QtWidgets.QWidget
        The panel (a ``qMRMLWidget`` stand-in); its named children are found
        with ``findChild``.
    """
    application()
    with registered_stand_ins():
        return uic.loadUi(path)


def grab_png(widget, path):
    """Render a widget (laid out at its size hint's height) to a PNG file; returns the image's (width, height)."""
    widget.adjustSize()
    image = widget.grab().toImage()
    if not image.save(path, "PNG"):
        raise OSError("Qt could not write {}".format(path))
    return image.width(), image.height()


__all__ = ["application", "load_panel", "grab_png", "registered_stand_ins", "STAND_INS", "QtCore",
           "QtWidgets"]

"""PythonQt-style doubles of the panel's widgets, built from the module's Designer file.

Inside Slicer the panel's widgets reach Python through PythonQt: Qt properties
are read and written as attributes (``button.enabled = False``), signals are
connected by their C++ signature (``button.connect("clicked(bool)", slot)``)
and ``blockSignals(True)`` returns the previous state.  ``Widget`` keeps
exactly that, for every class of the .ui file.  ``NodeComboBox`` keeps the
current node of a ``qMRMLNodeComboBox``; ``SegmentSelector`` also keeps the
rules by which ``qMRMLSegmentSelectorWidget`` chooses its current segment,
because the panel depends on them (see its docstring).

``load_ui(path)`` builds the widget tree of a .ui file with its properties and
signal-slot connections (as ``slicer.util.loadUI`` does with Qt's loader);
``child_widget_variables(widget)`` names the children as
``slicer.util.childWidgetVariables`` does (Base/Python/slicer/util.py: one
attribute per ``objectName``).
"""

import types
import xml.etree.ElementTree as ElementTree

import slicer

__all__ = ["Widget", "NodeComboBox", "SegmentSelector", "ModulePanel", "load_ui", "child_widget_variables"]


def _call_slot(slot, arguments):
    """Call a Python slot as PythonQt does: with no more of the signal's arguments than it takes.

    ``PythonQtSignalTarget::call`` (src/PythonQtSignalReceiver.cpp of
    commontk/PythonQt, the fork Slicer builds) counts the callable's
    positional parameters (``co_argcount``, less ``self`` for a method) and
    drops the signal's extra arguments.
    """
    function = getattr(slot, "__func__", slot)
    code = getattr(function, "__code__", None)
    if code is not None and not code.co_flags & 0x04:  # 0x04: CO_VARARGS, which takes them all
        arguments = arguments[:code.co_argcount - (1 if hasattr(slot, "__self__") else 0)]
    return slot(*arguments)


class Widget:
    """A PythonQt view of a Qt widget: properties as attributes, signals by signature."""

    def __init__(self, class_name, name="", properties=None):
        self.className = class_name
        self.objectName = name
        self.enabled = True
        self.visible = True
        self.toolTip = ""
        self.children = []
        self.mrmlScene = None
        self._slots = {}
        self._signals_blocked = False
        for key, value in (properties or {}).items():
            setattr(self, key, value)

    # -- signals ----------------------------------------------------------------------------------------

    def connect(self, signature, slot):
        """Connect ``slot`` to the signal of this C++ signature, e.g. ``"clicked(bool)"``."""
        self._slots.setdefault(signature, []).append(slot)
        return True

    def blockSignals(self, block):
        """Block (or unblock) this widget's signals; returns the previous state (QObject::blockSignals)."""
        previous = self._signals_blocked
        self._signals_blocked = bool(block)
        return previous

    def signalsBlocked(self):
        return self._signals_blocked

    def emit(self, signature, *arguments):
        """Emit a signal: every slot connected to its signature is called, unless signals are blocked."""
        if self._signals_blocked:
            return
        for slot in list(self._slots.get(signature, ())):
            _call_slot(slot, arguments)

    # -- QWidget / QAbstractButton / qMRMLWidget ------------------------------------------------------------

    def setVisible(self, visible):
        self.visible = bool(visible)

    def hide(self):
        self.setVisible(False)

    def show(self):
        self.setVisible(True)

    def click(self):
        """QAbstractButton::click: does nothing on a disabled button, else emits ``clicked()``/``clicked(bool)``."""
        if not self.enabled:
            return
        self.emit("clicked()")
        self.emit("clicked(bool)", False)

    def setMRMLScene(self, scene):
        """qMRMLWidget::setMRMLScene: stores the scene and emits ``mrmlSceneChanged(vtkMRMLScene*)``."""
        self.mrmlScene = scene
        self.emit("mrmlSceneChanged(vtkMRMLScene*)", scene)

    def property(self, name):
        """QObject::property: a property of the .ui file (dynamic ones too), None if not set."""
        return getattr(self, name, None)


class NodeComboBox(Widget):
    """``qMRMLNodeComboBox``: its current node (Libs/MRML/Widgets/qMRMLNodeComboBox.h).

    ``setCurrentNode`` emits ``currentNodeChanged(vtkMRMLNode*)`` and
    ``currentNodeChanged(bool)`` only when the node changes (the combo box's
    index changes).
    """

    def __init__(self, class_name="qMRMLNodeComboBox", name="", properties=None):
        self.noneEnabled = False
        self.nodeTypes = []
        super().__init__(class_name, name, properties)
        self._node = None

    def currentNode(self):
        return self._node

    def setCurrentNode(self, node):
        if node is self._node:
            return
        self._node = node
        self.emit("currentNodeChanged(vtkMRMLNode*)", node)
        self.emit("currentNodeChanged(bool)", node is not None)


#: Text and item data of the "None" entry of a segment selector (``NONE_DISPLAY`` in
#: Libs/MRML/Widgets/qMRMLSegmentSelectorWidget.cxx).
NONE_DISPLAY = "None"


class SegmentSelector(Widget):
    """``qMRMLSegmentSelectorWidget`` in single selection, as it chooses its current segment.

    Follows ``Libs/MRML/Widgets/qMRMLSegmentSelectorWidget.cxx``, which behaves
    the same at v5.8.1, v5.10.0 and the development head (commit 583e9b37d5):

    * the segment combo box lists "None" (with ``noneEnabled``) and every
      segment, its item data the segment ID; filling it leaves its index at 0,
      as ``QComboBox::addItem`` does on an empty box;
    * ``populateSegmentCombobox`` runs when the segmentation changes
      (``onCurrentNodeChanged``) and when one of its segments is added, removed
      or modified (``qvtkReconnect`` to ``vtkSegmentation::SegmentAdded`` ...).
      It keeps the stored segment ID if the segmentation has it (or if it is
      empty with "None" enabled), without a signal; otherwise it selects the
      first segment, which stores that segment's ID and emits
      ``currentSegmentChanged(QString)`` -- unless the selector's signals are
      blocked, when the change is silent;
    * ``setCurrentSegmentID(id)`` selects "None" for an empty ID (with
      ``noneEnabled``); an ID that is not in the box is ignored: the selector
      keeps showing what it showed;
    * the stored ID changes only through the box's ``currentIndexChanged``
      (``onCurrentSegmentChanged``), i.e. only when the index changes.
    """

    def __init__(self, class_name="qMRMLSegmentSelectorWidget", name="", properties=None):
        self.noneEnabled = False
        super().__init__(class_name, name, properties)
        self._segmentation_node = None
        self._observations = []
        self._current_segment_id = ""
        self._items = []  # (text, data) of the segment combo box
        self._index = -1
        self._box_signals_blocked = False

    # -- public API (qMRMLSegmentSelectorWidget.h) --------------------------------------------------------

    def setCurrentNode(self, node):
        if node is self._segmentation_node:
            return  # qMRMLNodeComboBox emits currentNodeChanged only for a new node
        self.emit("currentNodeChanged(vtkMRMLNode*)", node)
        self._on_current_node_changed(node)

    def currentNode(self):
        return self._segmentation_node

    def currentSegmentID(self):
        return self._current_segment_id

    def setCurrentSegmentID(self, segment_id):
        segment_id = segment_id or ""
        if not segment_id and self.noneEnabled:
            self._set_box_index(0)
            return
        index = self._find_data(segment_id)
        if index != -1 and index != self._index:
            self._set_box_index(index)

    def currentSegmentText(self):
        """Text the selector shows (the current item of its segment combo box); None when hidden."""
        return self._items[self._index][0] if 0 <= self._index < len(self._items) else None

    # -- private slots --------------------------------------------------------------------------------------

    def _on_current_node_changed(self, node):
        for observed, tag in self._observations:
            observed.RemoveObserver(tag)
        self._observations = []
        if node is not None:
            for event in (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
                          slicer.vtkSegmentation.SegmentModified):
                self._observations.append((node, node.AddObserver(event, lambda caller, name: self._populate())))
        self._segmentation_node = node
        self._populate()

    def _populate(self):
        self._items, self._index = [], -1
        node = self._segmentation_node
        if node is None or node.GetSegmentation() is None or node.GetSegmentation().GetNumberOfSegments() == 0:
            return  # the box is hidden; the stored ID stays
        segmentation = node.GetSegmentation()
        segment_ids = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
        was_blocked, self._box_signals_blocked = self._box_signals_blocked, True
        if self.noneEnabled:
            self._add_item(NONE_DISPLAY, NONE_DISPLAY)
        for segment_id in segment_ids:
            self._add_item(segmentation.GetSegment(segment_id).GetName(), segment_id)
        self._box_signals_blocked = was_blocked
        current = self._current_segment_id
        if (self.noneEnabled and not current) or (current and current in segment_ids):
            was_blocked, self._box_signals_blocked = self._box_signals_blocked, True
            self.setCurrentSegmentID(current)
            self._box_signals_blocked = was_blocked
        else:
            was_blocked, self._box_signals_blocked = self._box_signals_blocked, True
            self._set_box_index(-1)
            self._box_signals_blocked = was_blocked
            self._set_box_index(1 if self.noneEnabled else 0)

    def _on_current_segment_changed(self, index):
        if self._segmentation_node is None:
            return
        data = self._items[index][1] if 0 <= index < len(self._items) else ""
        self._current_segment_id = "" if data == NONE_DISPLAY else data
        self.emit("currentSegmentChanged(QString)", self._current_segment_id)

    # -- the segment combo box (QComboBox) ------------------------------------------------------------------

    def _add_item(self, text, data):
        self._items.append((text, data))
        if self._index == -1:
            self._set_box_index(0)

    def _find_data(self, data):
        for index, (_, item_data) in enumerate(self._items):
            if item_data == data:
                return index
        return -1

    def _set_box_index(self, index):
        if index == self._index:
            return  # QComboBox::setCurrentIndex emits currentIndexChanged only for a new index
        self._index = index
        if not self._box_signals_blocked:
            self._on_current_segment_changed(index)


class ModulePanel(Widget):
    """``qSlicerScriptedLoadableModuleWidget``: the parent of a module's panel, with its layout and ``isEntered``."""

    def __init__(self):
        super().__init__("qSlicerScriptedLoadableModuleWidget")
        self.isEntered = False
        self._layout = types.SimpleNamespace(addWidget=self.children.append)

    def layout(self):
        return self._layout


# ---------------------------------------------------------------------------
# A .ui file
# ---------------------------------------------------------------------------

#: Widget classes whose doubles are not plain ``Widget``.
WIDGET_DOUBLES = {"qMRMLSegmentSelectorWidget": SegmentSelector, "qMRMLNodeComboBox": NodeComboBox}


def _property_value(element):
    value = element[0]
    if value.tag == "bool":
        return value.text == "true"
    if value.tag in ("double",):
        return float(value.text)
    if value.tag == "number":
        return int(value.text)
    if value.tag == "stringlist":
        return [item.text for item in value]
    if value.tag in ("string", "enum", "set", "cstring"):
        return value.text or ""
    return None  # geometry, size...: not read by the module


def load_ui(path):
    """The widget tree of a Designer file, with its properties and connections (``slicer.util.loadUI``).

    Parameters
    ----------
    path : str
        A ``.ui`` file.

    Returns
    -------
    Widget
        The top-level widget; ``children`` holds every named descendant.
    """
    root = ElementTree.parse(path).getroot()
    top_element = root.find("widget")
    widgets = {}

    def build(element):
        properties = {prop.get("name"): _property_value(prop) for prop in element.findall("property")}
        cls = WIDGET_DOUBLES.get(element.get("class"), Widget)
        widget = cls(element.get("class"), element.get("name"), properties)
        widgets[widget.objectName] = widget
        return widget

    top = build(top_element)
    for element in top_element.iter("widget"):
        if element is not top_element:
            top.children.append(build(element))
    for connection in root.iter("connection"):
        sender = widgets[connection.findtext("sender")]
        receiver = widgets[connection.findtext("receiver")]
        slot_name = connection.findtext("slot").split("(")[0]
        sender.connect(connection.findtext("signal"), getattr(receiver, slot_name))
    return top


def child_widget_variables(widget):
    """Every named child of ``widget`` as an attribute (``slicer.util.childWidgetVariables``)."""
    return types.SimpleNamespace(**{child.objectName: child for child in widget.children if child.objectName})

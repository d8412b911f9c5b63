"""Double of ``slicer.parameterNodeWrapper`` (Base/Python/slicer/parameterNodeWrapper in Slicer).

``@parameterNodeWrapper`` turns a class of annotated fields into a typed view of
a ``vtkMRMLScriptedModuleNode``, as the real decorator does for the types a
module's parameter node uses here:

* MRML node types (and ``Optional``/``Union`` of them) are node references
  whose role is the field name (``SetNodeReferenceID``);
* ``str``, ``float``, ``int``, ``bool`` and ``enum.Enum`` subclasses are
  parameters stored as text (an enum by its member name);
* ``Annotated[..., WithinRange(a, b)]``, ``Choice([...])``, ``Minimum``,
  ``Maximum`` validate on assignment (``ValueError`` otherwise);
* defaults come from the class body, a ``Default(...)`` annotation, or the
  type (``""``, ``0.0``, ``0``, ``False``, ``None``) and are written into the
  node when it lacks the parameter.

``connectGui(gui)`` binds the widgets of a panel (``slicer_doubles.widgets``)
that name a parameter in their ``SlicerParameterName`` property, as
``_connectGui`` in wrapper.py does (v5.8.1 to the development head): each
shows its parameter's value at once and whenever the node is modified; a node
selector also writes the node the user picks into the parameter
(``qMRMLNodeComboBoxToNodeConnector``, guiConnectors.py).  The other widgets
only show their parameter (the tests do not edit them).
``disconnectGui(tag)`` undoes it.  ``StartModify``, ``EndModify``,
``AddObserver`` and ``RemoveObserver`` go to the node, as the real wrapper's do.
"""

import enum
import typing

import slicer
import vtk

__all__ = ["parameterNodeWrapper", "WithinRange", "Choice", "Minimum", "Maximum", "Default"]


class Default:
    def __init__(self, value=None):
        self.value = value


class _Validator:
    def validate(self, value):
        raise NotImplementedError


class WithinRange(_Validator):
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError("Value {} is not within [{}, {}]".format(value, self.minimum, self.maximum))


class Minimum(_Validator):
    def __init__(self, minimum):
        self.minimum = minimum

    def validate(self, value):
        if value < self.minimum:
            raise ValueError("Value {} is below {}".format(value, self.minimum))


class Maximum(_Validator):
    def __init__(self, maximum):
        self.maximum = maximum

    def validate(self, value):
        if value > self.maximum:
            raise ValueError("Value {} is above {}".format(value, self.maximum))


class Choice(_Validator):
    def __init__(self, choices):
        self.choices = list(choices)

    def validate(self, value):
        if value not in self.choices:
            raise ValueError("Value {!r} is not one of {}".format(value, self.choices))


def _node_classes(field_type):
    """The MRML node classes a field holds, or () for a plain value type."""
    candidates = typing.get_args(field_type) if typing.get_origin(field_type) is typing.Union else (field_type,)
    classes = tuple(c for c in candidates if isinstance(c, type) and issubclass(c, slicer.vtkMRMLNode))
    return classes


class _Field:
    def __init__(self, name, annotation, class_default):
        metadata = ()
        if typing.get_origin(annotation) is typing.Annotated:
            annotation, *metadata = typing.get_args(annotation)
        self.name = name
        self.type = annotation
        self.node_classes = _node_classes(annotation)
        self.validators = [m for m in metadata if isinstance(m, _Validator)]
        defaults = [m.value for m in metadata if isinstance(m, Default)]
        if class_default is not _MISSING:
            self.default = class_default
        elif defaults:
            self.default = defaults[0]
        elif self.node_classes:
            self.default = None
        else:
            self.default = annotation()

    def read(self, node):
        if self.node_classes:
            return node.GetNodeReference(self.name)
        text = node.GetParameter(self.name)
        if self.type is bool:
            return text == "true"
        if issubclass(self.type, enum.Enum):
            return self.type[text]
        return self.type(text)

    def write(self, node, value):
        if self.node_classes:
            if value is not None and not isinstance(value, self.node_classes):
                raise TypeError("{} must be one of {}, got {}".format(self.name, self.node_classes, type(value)))
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
            return
        if not isinstance(value, self.type) and not (self.type is float and isinstance(value, int)):
            raise TypeError("{} must be {}, got {!r}".format(self.name, self.type.__name__, value))
        if issubclass(self.type, enum.Enum):
            node.SetParameter(self.name, value.name)
            return
        value = self.type(value)
        for validator in self.validators:
            validator.validate(value)
        node.SetParameter(self.name, ("true" if value else "false") if self.type is bool else str(value))

    def is_in(self, node):
        if self.node_classes:
            return node.GetNodeReferenceID(self.name) is not None or self.name in _reference_roles(node)
        return node.GetParameter(self.name) != ""


_MISSING = object()


def _show(widget, field, value):
    """Show a parameter's value in a widget double, as the GUI connector of its kind writes it."""
    if field.node_classes:
        widget.setCurrentNode(value)
    elif isinstance(value, enum.Enum):
        widget.currentText = getattr(value, "label", lambda: value.name)()
    elif isinstance(value, bool):
        widget.checked = value
    elif widget.className == "QComboBox":
        widget.currentText = str(value)
    else:
        widget.value = value


def _reference_roles(node):
    roles = []
    node.GetNodeReferenceRoles(roles)
    return roles


def parameterNodeWrapper(classtype):
    """Make ``classtype(parameterNode)`` a typed view of ``parameterNode`` (a ``vtkMRMLScriptedModuleNode``)."""
    hints = typing.get_type_hints(classtype, include_extras=True)
    fields = {name: _Field(name, annotation, classtype.__dict__.get(name, _MISSING))
              for name, annotation in hints.items()}

    def __init__(self, parameterNode):
        object.__setattr__(self, "parameterNode", parameterNode)
        for field in fields.values():
            if not field.is_in(parameterNode) and field.default is not None:
                field.write(parameterNode, field.default)

    def __getattr__(self, name):
        if name in fields:
            return fields[name].read(self.parameterNode)
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name not in fields:
            raise AttributeError("{} has no parameter {!r}".format(classtype.__name__, name))
        fields[name].write(self.parameterNode, value)

    def getValue(self, name):
        return getattr(self, name)

    def setValue(self, name, value):
        setattr(self, name, value)

    def default(self, name):
        return Default(fields[name].default)

    def connectGui(self, gui):
        widgets = {widget.property("SlicerParameterName"): widget for widget in vars(gui).values()
                   if widget.property("SlicerParameterName")}
        state = {"updating": False}

        def show_parameters(caller=None, event=None):
            if state["updating"]:
                return
            state["updating"] = True
            try:
                for name, widget in widgets.items():
                    _show(widget, fields[name], getattr(self, name))
            finally:
                state["updating"] = False

        def picked(name, widget):
            def write(*ignored):
                if not state["updating"]:
                    setattr(self, name, widget.currentNode())
            return write

        for name, widget in widgets.items():
            if name not in fields:
                raise ValueError("Cannot find a param with the given name: {}".format(name))
            if fields[name].node_classes:
                widget.nodeTypes = [cls.__name__ for cls in fields[name].node_classes]
                widget.connect("currentNodeChanged(vtkMRMLNode*)", picked(name, widget))
        show_parameters()
        tag = self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, show_parameters)
        return (tag, list(widgets.values()))

    def disconnectGui(self, tag):
        if tag is None:
            return
        observer, widgets = tag
        self.parameterNode.RemoveObserver(observer)
        for widget in widgets:
            widget._slots.pop("currentNodeChanged(vtkMRMLNode*)", None)

    # The wrapper forwards these to its node (_processClass in wrapper.py, v5.8.1 to the development head).
    def StartModify(self):
        return self.parameterNode.StartModify()

    def EndModify(self, wasModified):
        return self.parameterNode.EndModify(wasModified)

    def AddObserver(self, event, callback, priority=0.0):
        return self.parameterNode.AddObserver(event, callback, priority)

    def RemoveObserver(self, tag):
        return self.parameterNode.RemoveObserver(tag)

    namespace = {"__init__": __init__, "__getattr__": __getattr__, "__setattr__": __setattr__,
                 "getValue": getValue, "setValue": setValue, "default": default, "connectGui": connectGui,
                 "disconnectGui": disconnectGui, "StartModify": StartModify, "EndModify": EndModify,
                 "AddObserver": AddObserver, "RemoveObserver": RemoveObserver, "allParameters": dict(fields), "__doc__": classtype.__doc__,
                 "__module__": classtype.__module__}
    return type(classtype.__name__, (), namespace)

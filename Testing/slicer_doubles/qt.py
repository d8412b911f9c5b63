"""Double of PythonQt's ``qt`` module: only what AIAIF.py and the ``slicer.util`` helpers it calls touch.

The module class sets its icon with ``qt.QIcon(path)``; ``slicer.util.errorDisplay``
reads the ``QMessageBox`` button and icon values before it logs the message
(in testing mode it shows no box: ``slicer.util._messageDisplay``).
"""


class QIcon:
    """Remembers the file it was made from."""

    def __init__(self, path=""):
        self.path = path


class QMessageBox:
    """The enum values ``slicer.util.errorDisplay`` passes on (QMessageBox::StandardButton, ::Icon)."""

    Ok = 0x00000400
    Critical = 3

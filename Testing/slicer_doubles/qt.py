"""Double of PythonQt's ``qt`` module: only what AIAIF.py touches outside a running GUI.

The module class sets its icon with ``qt.QIcon(path)``; the widget is never
built in these tests (it needs the application), so nothing else is needed.
"""


class QIcon:
    """Remembers the file it was made from."""

    def __init__(self, path=""):
        self.path = path

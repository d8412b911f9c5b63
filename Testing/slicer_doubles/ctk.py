"""Double of the ``ctk`` module: empty, because no CTK widget is built without the application."""

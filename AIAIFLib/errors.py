"""The project's exceptions: problems a user can cause and fix, and a cancelled run."""


class AIAIFInputError(ValueError):
    """Invalid input or argument, with a one-sentence message saying what to fix.

    The command line turns it into exit code 2 without a traceback; the Slicer
    module shows the message and leaves the scene unchanged.
    """


class AIAIFCancelled(Exception):
    """The user cancelled a running quantification.

    Raised from a ``progress(fraction, message)`` callback (e.g. the Slicer
    module's Cancel button) and propagated unchanged by every caller; the
    scene is left as it was.  It is not an ``AIAIFInputError``: nothing in the
    input needs fixing.
    """

"""The one exception type for problems a user can cause and fix."""


class AIAIFInputError(ValueError):
    """Invalid input or argument, with a one-sentence message saying what to fix.

    The command line turns it into exit code 2 without a traceback; the Slicer
    module shows the message and leaves the scene unchanged.
    """

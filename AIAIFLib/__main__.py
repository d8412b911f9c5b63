"""``python -m AIAIFLib``: see ``AIAIFLib.cli``."""

import signal
import sys

# Ctrl-C while the libraries load would cut off the import of compiled code (a crash or a traceback): it is
# noted here and honoured once they have loaded; during a run, ``cli.main`` handles it.
_interrupted = []
signal.signal(signal.SIGINT, lambda signum, frame: _interrupted.append(signum))

from .cli import EXIT_INTERRUPTED, main  # noqa: E402  (after the handler, on purpose)

if _interrupted:
    sys.stderr.write("python -m AIAIFLib: interrupted; nothing was written.\n")
    sys.exit(EXIT_INTERRUPTED)
sys.exit(main())

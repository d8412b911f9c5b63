"""``python -m AIAIFLib``: see ``AIAIFLib.cli``."""

import sys

from .cli import main

sys.exit(main())

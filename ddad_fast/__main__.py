"""``python -m ddad_fast`` is the ``ddad`` command."""

import sys

from .cli import main

sys.exit(main())

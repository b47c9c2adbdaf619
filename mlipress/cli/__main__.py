"""``python -m mlipress.cli``: the same as the ``mlipress`` command."""

import sys

from mlipress.cli import main

sys.exit(main())

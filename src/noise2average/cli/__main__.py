"""``python -m noise2average.cli``: the ``n2a`` command."""

import sys

from . import main

sys.exit(main())

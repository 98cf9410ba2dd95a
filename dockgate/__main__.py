"""``python -m dockgate``: the same as the ``dockgate`` command."""

import sys

from dockgate.cli import main

sys.exit(main())

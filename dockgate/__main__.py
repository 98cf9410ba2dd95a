"""``python -m dockgate``: the same as the ``dockgate`` command."""

import sys

from dockgate.cli.main import main

sys.exit(main())

"""Makes ``twistd dockgate`` available.

Kept to the ServiceMaker alone: Twisted imports every plugin file to list
plugins, and ``ServiceMaker`` imports ``dockgate.tap`` only when the
``dockgate`` subcommand is actually used.  This directory must have no
``__init__.py`` (``twisted.plugins`` is Twisted's package), and the file must
not be called ``dockgate.py``, which would shadow the ``dockgate`` package.
"""

from twisted.application.service import ServiceMaker

dockgate = ServiceMaker(  # type: ignore[no-untyped-call]
    "dockgate",
    "dockgate.tap",
    "Docker Engine API proxy that validates, decides and audits every request.",
    "dockgate",
)

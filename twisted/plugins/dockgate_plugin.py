"""Makes ``twistd dockgate`` and ``twistd --reactor=dockgate`` available.

Kept to two lazy declarations: Twisted imports every plugin file to list
plugins, and ``ServiceMaker`` imports ``dockgate.service.tap`` (``Reactor``,
``dockgate.fastio.reactor``) only when it is actually used.  This directory must have
no ``__init__.py`` (``twisted.plugins`` is Twisted's package), and the file
must not be called ``dockgate.py``, which would shadow the ``dockgate``
package.
"""

from twisted.application.reactors import Reactor
from twisted.application.service import ServiceMaker

dockgate = ServiceMaker(  # type: ignore[no-untyped-call]
    "dockgate",
    "dockgate.service.tap",
    "Docker Engine API proxy that validates, decides and audits every request.",
    "dockgate",
)

dockgate_reactor = Reactor(
    "dockgate",
    "dockgate.fastio.reactor",
    "epoll without a logging context per event (what dockgate serve runs; Linux)",
)

"""The floor: a bare Twisted byte pump between a unix socket and the daemon's.

    python benchmarks/_floor.py LISTEN_PATH DAEMON_PATH

Each accepted connection gets its own connection to the daemon and bytes are
copied both ways as they come: no parsing, no decision, no audit.  run.py
measures the request-rate workloads through it next to dockgate, so the
table shows what any Twisted proxy can reach on the same machine in the same
run (the event loop, the socket calls and the extra hop), and how much of the
gap to direct is dockgate's own work.  Not a product: it checks nothing.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import protocol, reactor


class _ToDaemon(protocol.Protocol):
    def __init__(self, client: _FromClient) -> None:
        self.client = client

    def connectionMade(self) -> None:
        self.client.connected_to(self)

    def dataReceived(self, data: bytes) -> None:
        assert self.client.transport is not None
        self.client.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.client.transport is not None:
            self.client.transport.loseConnection()


class _FromClient(protocol.Protocol):
    daemon_path = ""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.daemon: _ToDaemon | None = None

    def connectionMade(self) -> None:
        factory = protocol.ClientFactory()
        factory.buildProtocol = lambda _addr: _ToDaemon(self)  # type: ignore[method-assign]
        reactor.connectUNIX(self.daemon_path, factory)  # type: ignore[attr-defined]

    def connected_to(self, daemon: _ToDaemon) -> None:
        self.daemon = daemon
        assert daemon.transport is not None
        for data in self.pending:
            daemon.transport.write(data)
        self.pending = []

    def dataReceived(self, data: bytes) -> None:
        if self.daemon is None or self.daemon.transport is None:
            self.pending.append(data)
        else:
            self.daemon.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.daemon is not None and self.daemon.transport is not None:
            self.daemon.transport.loseConnection()


def main() -> None:
    listen, daemon = sys.argv[1], sys.argv[2]
    _FromClient.daemon_path = daemon
    if os.path.exists(listen):
        os.unlink(listen)
    factory = protocol.ServerFactory()
    factory.protocol = _FromClient
    reactor.listenUNIX(listen, factory)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()

"""dockgate's reactor (``dockgate.reactor``): Twisted's epoll reactor without a
logging context per event, and the end-of-turn hook the audit log uses."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.abstract import FileDescriptor
from twisted.logger import globalLogPublisher

from dockgate.reactor import DockgateReactor


class Reader(FileDescriptor):
    """Records what each doRead got, in a shared order list."""

    def __init__(self, reactor: Any, sock: socket.socket, name: str, order: list[str]) -> None:
        super().__init__(reactor)
        self.sock, self.name, self.order = sock, name, order

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        self.order.append(f"{self.name}:{self.sock.recv(100).decode()}")


@pytest.fixture
def reactor() -> Iterator[DockgateReactor]:
    r = DockgateReactor()
    yield r
    r._poller.close()


def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    return a, b


def test_ready_reads_are_handled_then_the_turn_end(reactor: DockgateReactor) -> None:
    """In one reactor turn every ready reader is handled before the turn-end hook, which runs once
    per registration."""
    order: list[str] = []
    (a, a_peer), (b, b_peer) = pair(), pair()
    for sock, name in ((a, "a"), (b, "b")):
        reactor.addReader(Reader(reactor, sock, name, order))
    reactor.at_turn_end(lambda: order.append("end"))
    a_peer.send(b"x")
    b_peer.send(b"y")
    reactor.doPoll(1.0)
    assert sorted(order[:2]) == ["a:x", "b:y"] and order[2:] == ["end"]
    # The hook runs once: the next turn has nothing to end.
    a_peer.send(b"z")
    reactor.doPoll(1.0)
    assert order[3:] == ["a:z"]
    reactor.removeAll()
    for s in (a, a_peer, b, b_peer):
        s.close()


def test_an_escaping_error_is_logged_and_the_turn_goes_on(reactor: DockgateReactor) -> None:
    """What callWithLogger did: log, and still handle the other ready descriptors."""
    order: list[str] = []
    (a, a_peer), (b, b_peer) = pair(), pair()
    bad, good = Reader(reactor, a, "a", order), Reader(reactor, b, "b", order)
    reactor.addReader(bad)
    reactor.addReader(good)
    handle = reactor._doReadOrWrite

    def failing(selectable: Any, fd: int, event: int) -> None:
        if selectable is bad:
            raise RuntimeError("connectionLost raised")
        handle(selectable, fd, event)

    reactor._doReadOrWrite = failing  # type: ignore[method-assign]
    logged: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        a_peer.send(b"x")
        b_peer.send(b"y")
        reactor.at_turn_end(lambda: order.append("end"))
        reactor.doPoll(1.0)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert order == ["b:y", "end"]
    assert any(e.get("log_failure") is not None
               and isinstance(e["log_failure"].value, RuntimeError) for e in logged)
    reactor.removeAll()
    for s in (a, a_peer, b, b_peer):
        s.close()

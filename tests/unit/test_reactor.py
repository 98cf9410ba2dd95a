"""dockgate's reactor (``dockgate.fastio.reactor``): Twisted's epoll reactor without a
logging context per event, and the end-of-turn hook the audit log uses."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import main
from twisted.internet.abstract import FileDescriptor
from twisted.logger import globalLogPublisher

from dockgate.fastio.reactor import DockgateReactor


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


class Closing(Reader):
    """Reports its connection done on the first read; its connectionLost raises."""

    def doRead(self) -> object:
        self.order.append(f"{self.name}:done")
        return main.CONNECTION_DONE

    def connectionLost(self, reason: Any) -> None:
        raise RuntimeError("connectionLost raised")


class Raising(Reader):
    """Its doRead raises; records the reason its connection was lost with."""

    def doRead(self) -> None:
        raise ValueError("doRead raised")

    def connectionLost(self, reason: Any) -> None:
        self.order.append(f"{self.name}:lost:{type(reason.value).__name__}")


def _turn_with(reactor: DockgateReactor, bad_class: type[Reader]) -> tuple[list[str], list[Any]]:
    """One turn with a misbehaving reader ``a`` and a plain one ``b``: the order of
    what happened, and the failures logged."""
    order: list[str] = []
    (a, a_peer), (b, b_peer) = pair(), pair()
    reactor.addReader(bad_class(reactor, a, "a", order))
    reactor.addReader(Reader(reactor, b, "b", order))
    logged: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        a_peer.send(b"x")
        b_peer.send(b"y")
        reactor.at_turn_end(lambda: order.append("end"))
        reactor.doPoll(1.0)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    reactor.removeAll()
    for s in (a, a_peer, b, b_peer):
        s.close()
    return order, [e["log_failure"].value for e in logged if e.get("log_failure") is not None]


def test_an_escaping_error_is_logged_and_the_turn_goes_on(reactor: DockgateReactor) -> None:
    """What callWithLogger did: an error escaping the handling of one ready
    descriptor (here its connectionLost) is logged, and the other ready
    descriptors and the turn's end are still handled."""
    order, failures = _turn_with(reactor, Closing)
    assert sorted(order[:2]) == ["a:done", "b:y"] and order[2:] == ["end"]
    assert any(isinstance(f, RuntimeError) for f in failures)


def test_an_error_in_a_read_is_logged_and_disconnects_the_selectable(
    reactor: DockgateReactor,
) -> None:
    """As Twisted's ``_doReadOrWrite`` does for a readable descriptor (dockgate's
    reactor reads those directly): a ``doRead`` that raises is logged and its
    selectable loses its connection with that error; the turn goes on."""
    order, failures = _turn_with(reactor, Raising)
    assert sorted(order[:2]) == ["a:lost:ValueError", "b:y"] and order[2:] == ["end"]
    assert any(isinstance(f, ValueError) for f in failures)


def test_a_turn_end_asked_for_outside_a_turn_does_not_wait_for_the_next_event(
    reactor: DockgateReactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A function asked for in a timer or a thread's callback (between turns) runs after the next
    poll, and that poll does not wait: requests waiting for their audit records never stall until
    some other descriptor becomes ready."""
    timeouts: list[float] = []
    real_poll = reactor._poller.poll

    def poll(timeout: float, maxevents: int) -> Any:
        timeouts.append(timeout)
        return real_poll(0, maxevents)

    monkeypatch.setattr(reactor, "_poller", type("P", (), {"poll": staticmethod(poll),
                                                           "close": real_poll.__self__.close}))
    ran: list[str] = []
    reactor.doPoll(None)
    reactor.at_turn_end(lambda: ran.append("end"))
    reactor.doPoll(None)
    assert timeouts == [-1, 0] and ran == ["end"]

"""dockgate's reactor (``dockgate.fastio.reactor``): Twisted's epoll reactor without a
logging context per event, and the end-of-turn hook the audit log uses."""

from __future__ import annotations

import signal
import socket
import threading
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


def _run(reactor: DockgateReactor, seconds: float = 5.0) -> None:
    """Run ``reactor`` (its real main loop, without signal handlers); stop it after
    ``seconds`` at the latest (an interval timer signal, which needs no working
    timer in the loop), so a loop that misses its timers fails instead of hanging."""
    expired: list[bool] = []

    def expire(*_: object) -> None:
        expired.append(True)
        reactor.stop()
        reactor.wakeUp()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        reactor.run(installSignalHandlers=False)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not expired, "the main loop ran into its guard"


def test_the_main_loop_runs_timers_in_order_at_their_time(reactor: DockgateReactor) -> None:
    """Timers added before and while the loop runs fire in time order and not
    before their time, also after a socket woke the loop with none due (then the
    loop's own timeout, not Twisted's ``timeout``, decides how long the poll
    waits); a cancelled one never fires; then stop ends the loop and fires the
    shutdown triggers."""
    fired: list[tuple[str, float]] = []
    order: list[str] = []
    sock, peer = pair()
    reactor.addReader(Reader(reactor, sock, "s", order))
    peer.send(b"x")  # readable at once: a wake-up with no timer due
    start = reactor.seconds()

    def note(name: str) -> None:
        fired.append((name, reactor.seconds() - start))

    reactor.callLater(0.05, note, "b")
    reactor.callLater(0.01, note, "a")
    reactor.callLater(0.02, lambda: reactor.callLater(0.06, note, "c"))
    reactor.callLater(0.03, note, "never").cancel()
    reactor.callLater(0.12, reactor.stop)
    shutdown: list[str] = []
    reactor.addSystemEventTrigger("during", "shutdown", shutdown.append, "down")
    _run(reactor)
    reactor.removeAll()
    sock.close()
    peer.close()
    assert order == ["s:x"]
    assert [name for name, _ in fired] == ["a", "b", "c"]
    for (name, at), due in zip(fired, (0.01, 0.05, 0.08), strict=True):
        assert at >= due - 0.001, (name, at)
    assert shutdown == ["down"]


def test_the_main_loop_takes_a_call_from_a_thread_with_no_timer_due(
    reactor: DockgateReactor,
) -> None:
    """A call from another thread wakes and runs in a loop that has no timer at all
    (nothing else would make it run ``runUntilCurrent``)."""
    got: list[str] = []

    def from_thread() -> None:
        got.append("thread")
        reactor.stop()

    reactor.callWhenRunning(lambda: threading.Thread(
        target=reactor.callFromThread, args=(from_thread,)).start())
    _run(reactor)
    assert got == ["thread"]


def test_a_timer_reset_later_fires_at_its_new_time(reactor: DockgateReactor) -> None:
    """A timer reset to later (Twisted's lazy ``delayed_time``: its heap entry keeps
    the old time) fires at its new time, not the old."""
    got: list[float] = []
    start = reactor.seconds()
    later = reactor.callLater(0.02, lambda: got.append(reactor.seconds() - start))
    later.reset(0.15)
    reactor.callLater(0.2, reactor.stop)
    _run(reactor)
    assert len(got) == 1 and got[0] >= 0.149


def test_an_error_escaping_a_timer_is_logged_and_the_loop_goes_on(
    reactor: DockgateReactor,
) -> None:
    """An exception out of a timed call is logged (as Twisted logs it) and the
    loop keeps running the next timers."""
    logged: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(logged.append)
    ran: list[str] = []
    try:
        reactor.callLater(0.01, lambda: 1 / 0)
        reactor.callLater(0.02, ran.append, "after")
        reactor.callLater(0.03, reactor.stop)
        _run(reactor)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert ran == ["after"]
    assert any(isinstance(e.get("log_failure") and e["log_failure"].value, ZeroDivisionError)
               for e in logged)

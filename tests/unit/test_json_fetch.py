"""dockgate's side requests to the daemon end, answered or not."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from dockgate.http1.client import Head
from dockgate.http1.server import Body, End
from dockgate.proxy.upstream import TIMED_OUT, JsonFetch


class _Conn:
    """An upstream connection that records what happens to it."""

    def __init__(self) -> None:
        self.delegate: Any = None
        self.sent: list[tuple[str, bytes]] = []
        self.aborted = False

    def request(self, method: str, target: bytes, headers: Any, body: Any) -> None:
        self.sent.append((method, target))

    def abort(self) -> None:
        self.aborted = True


class _Pool:
    def __init__(self, conn: Deferred[_Conn] | None = None,
                 answer_timeout: float | None = None) -> None:
        self.reactor = Clock()
        self.answer_timeout = answer_timeout
        self.conn = _Conn()
        self._pending = conn
        self.released: list[_Conn] = []

    def acquire(self) -> Deferred[_Conn]:
        return self._pending if self._pending is not None else succeed(self.conn)

    def release(self, conn: _Conn) -> None:
        self.released.append(conn)


def _result(d: Deferred[object]) -> list[object]:
    out: list[object] = []
    d.addCallback(out.append)
    return out


def test_a_daemon_that_never_answers_fails_the_fetch_at_the_timeout() -> None:
    """A side request the daemon never answers fails at the answer timeout with TIMED_OUT, aborting
    its connection rather than returning it to the pool."""
    pool = _Pool(answer_timeout=30)
    fetch = JsonFetch(pool, "/volumes/data")  # type: ignore[arg-type]
    out = _result(fetch.start())
    assert pool.conn.sent == [("GET", b"/volumes/data")] and out == []
    pool.reactor.advance(29)
    assert out == [] and not pool.conn.aborted
    pool.reactor.advance(1)
    assert out == [None] and fetch.status == TIMED_OUT and pool.conn.aborted
    assert pool.released == []  # a connection with an answer in flight is never reused


def test_an_answer_in_time_cancels_the_timer() -> None:
    """An answer in time yields the decoded JSON, releases the connection to the pool and cancels
    the timer."""
    pool = _Pool(answer_timeout=30)
    fetch = JsonFetch(pool, "/volumes/data")  # type: ignore[arg-type]
    out = _result(fetch.start())
    head = Head(200, b"OK", ((b"content-type", b"application/json"),))
    for event in (head, Body(b'{"Name": "data"}'), End()):
        fetch.upstream_event(event)
    assert out == [{"Name": "data"}] and pool.released == [pool.conn]
    assert pool.reactor.getDelayedCalls() == []


def test_a_connection_that_arrives_after_the_timeout_is_dropped() -> None:
    """A connection that arrives after the fetch timed out is aborted without sending anything."""
    pending: Deferred[_Conn] = Deferred()
    pool = _Pool(pending, answer_timeout=5)
    out = _result(JsonFetch(pool, "/_ping").start())  # type: ignore[arg-type]
    pool.reactor.advance(5)
    assert out == [None]
    late = _Conn()
    pending.callback(late)
    assert late.aborted and late.sent == []


def test_without_a_timeout_no_timer_is_set() -> None:
    """With no answer timeout configured no timer is set."""
    pool = _Pool()
    JsonFetch(pool, "/_ping").start()  # type: ignore[arg-type]
    assert pool.reactor.getDelayedCalls() == []

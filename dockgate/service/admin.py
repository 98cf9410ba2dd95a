"""The admin listener: ``/metrics``, ``/healthz`` and ``/readyz`` on their own endpoint.

Kept off the proxy listeners on purpose: those speak only the Docker API and
every request on them is decided and audited, while a scraper or a health
check is neither a Docker client nor worth an audit record.  Being a separate
endpoint, it is also refused anywhere but loopback or a unix socket (the
metrics name endpoints and listeners; nobody off the host needs them).

``/healthz`` answers 200 while the process serves at all.  ``/readyz`` asks
the daemon ``GET /_ping`` (within a short timeout) each time it is called, so
a load balancer or systemd watchdog can tell "dockgate is up but the daemon
behind it is not".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.server import Request

from dockgate.service.listener_spec import parse_admin_listener
from dockgate.service.metrics import CONTENT_TYPE, Metrics

__all__ = ["AdminRoot", "parse_admin_listener", "ping_daemon"]

log = Logger()

READY_TIMEOUT = 3.0
_PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"


class _PingProtocol(Protocol):
    """Sends ``GET /_ping`` and fires with whether the status line says 200."""

    def __init__(self, done: defer.Deferred[bool]) -> None:
        self.done = done
        self.buffer = b""

    def connectionMade(self) -> None:
        """Ask."""
        assert self.transport is not None
        self.transport.write(_PING)

    def dataReceived(self, data: bytes) -> None:
        """Wait for the status line, then judge it and hang up."""
        self.buffer += data
        if b"\r\n" in self.buffer or len(self.buffer) > 1024:
            line = self.buffer.split(b"\r\n", 1)[0]
            parts = line.split(b" ", 2)
            ok = len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1] == b"200"
            if not self.done.called:
                self.done.callback(ok)
            assert self.transport is not None
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """A daemon that hung up without a status line is not ready."""
        if not self.done.called:
            self.done.callback(False)


def ping_daemon(
    endpoint: IStreamClientEndpoint, reactor: Any, timeout: float = READY_TIMEOUT
) -> defer.Deferred[bool]:
    """Fire with True if the daemon answers ``GET /_ping`` with 200 within ``timeout``."""
    done: defer.Deferred[bool] = defer.Deferred()
    factory = Factory.forProtocol(lambda: _PingProtocol(done))
    connecting = endpoint.connect(factory)

    def failed(reason: Failure) -> None:
        if not done.called:
            done.callback(False)

    connecting.addErrback(failed)

    def expire() -> None:
        if not done.called:
            done.callback(False)
        connecting.cancel()

    call = reactor.callLater(timeout, expire)

    def settle(ok: bool) -> bool:
        if call.active():
            call.cancel()
        return ok

    return done.addCallback(settle)


class _Text(resource.Resource):
    """A fixed answer."""

    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.body = body

    def render_GET(self, request: Request) -> bytes:
        """Say it."""
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")  # type: ignore[no-untyped-call]
        return self.body


class _Metrics(resource.Resource):
    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        """The Prometheus text exposition."""
        request.setHeader(b"content-type", CONTENT_TYPE.encode())  # type: ignore[no-untyped-call]
        return self.metrics.exposition()


Checks = Callable[[], list[str]]
"""Why requests cannot be served now (an empty list: they can)."""


class _Ready(resource.Resource):
    isLeaf = True

    def __init__(self, upstream: IStreamClientEndpoint, reactor: Any,
                 checks: Checks | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.upstream = upstream
        self.reactor = reactor
        self.checks = checks

    def render_GET(self, request: Request) -> Any:
        """200 if the daemon answers its ping now, else 503."""
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")  # type: ignore[no-untyped-call]

        def answer(ok: bool) -> None:
            if request.finished or request.channel is None:
                return
            problems = self.checks() if self.checks is not None else []
            if not ok:
                problems.append("upstream daemon not answering /_ping")
            request.setResponseCode(503 if problems else 200)
            request.write("".join(f"{p}\n" for p in problems or ["ok"]).encode())  # type: ignore[no-untyped-call]
            request.finish()  # type: ignore[no-untyped-call]

        ping_daemon(self.upstream, self.reactor).addCallback(answer).addErrback(
            lambda f: log.failure("readiness check failed", f)
        )
        return server.NOT_DONE_YET


class AdminRoot(resource.Resource):
    """``/metrics``, ``/healthz``, ``/readyz``; anything else is 404."""

    def __init__(self, metrics: Metrics, upstream: IStreamClientEndpoint, reactor: Any,
                 checks: Checks | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.putChild(b"metrics", _Metrics(metrics))
        self.putChild(b"healthz", _Text(b"ok\n"))
        self.putChild(b"readyz", _Ready(upstream, reactor, checks))


def admin_site(metrics: Metrics, upstream: IStreamClientEndpoint, reactor: Any,
               checks: Checks | None = None) -> server.Site:
    """The ``Site`` served on the admin listener (no access log: scrapes are noise).

    ``/readyz`` answers 200 only when the daemon answers its ping and
    ``checks`` finds nothing in the way (a failing fail-closed audit log).
    """
    site = server.Site(AdminRoot(metrics, upstream, reactor, checks))  # type: ignore[no-untyped-call]
    site.log = lambda request: None  # type: ignore[method-assign]
    return site

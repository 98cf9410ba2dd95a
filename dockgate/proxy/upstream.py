"""Connections to the daemon: an HTTP/1.1 client per connection (``http1``), and
a pool of idle keep-alive connections.

A connection belongs to one exchange at a time (its ``delegate``).  It goes
back to the pool only when the request was sent whole, the response was read
whole and the daemon kept the connection alive; a connection that was spliced, failed, or was
abandoned by its client is closed, never reused, so that no half-read
response can leak into another client's exchange.
"""

from __future__ import annotations

from typing import Any, Final
from typing import Protocol as TypingProtocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    ILoggingContext,
    IProtocol,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import classImplements

from dockgate.fastio import sockio, writethrough
from dockgate.http1.client import (
    LAST_CHUNK,
    ProtocolError,
    ResponseReader,
    chunk,
    request_head,
)
from dockgate.proxy.gate import NativeProtocol, ReadGate, drop_producer, half_close

log: Final = Logger()


class UpstreamDelegate(TypingProtocol):
    """What an upstream connection reports to the exchange that holds it."""

    def upstream_event(self, event: object) -> None:
        """An ``http1`` event from the daemon (response head, 1xx, body, end)."""

    def upstream_raw(self, data: bytes) -> None:
        """Raw bytes from the daemon after the connection was spliced."""

    def upstream_read_closed(self) -> None:
        """The daemon closed its sending side (spliced connections only)."""

    def upstream_lost(self, reason: Failure) -> None:
        """The connection failed or closed."""

    def upstream_paused(self, paused: bool) -> None:
        """The daemon's socket buffer filled (True) or drained (False)."""

    def upstream_batch(self, begin: bool) -> None:
        """Events of one read from the daemon begin (True) or ended (False)."""


class UpstreamConnection(NativeProtocol):
    """One connection to the daemon, speaking HTTP/1.1 until spliced (a native
    class, see ``gate.NativeProtocol``)."""

    def __init__(self, pool: UpstreamPool) -> None:
        super().__init__()
        self.pool = pool
        self.reader = ResponseReader()
        self._chunked = False
        self._sent_end = True
        self.delegate: UpstreamDelegate | None = None
        self.raw = False
        self.connected_ = False
        self.gate: ReadGate | None = None

    # Twisted interfaces

    def connectionMade(self) -> None:
        """Register as the producer for our own transport, for back-pressure."""
        self.connected_ = True
        assert self.transport is not None
        if writethrough.enable(self.transport):
            # The endpoint wrapped this protocol to fire its connection's
            # Deferred (fired as this returns); afterwards the wrapper only
            # passes each read and loss on, an interpreted frame per read of
            # the daemon's socket.  A plain socket transport calls this
            # protocol directly instead (IHalfCloseableProtocol is declared
            # here as the wrapper copied it).
            transport: Any = self.transport
            if getattr(transport.protocol, "_wrappedProtocol", None) is self:
                transport.protocol = self
        self.gate = ReadGate(self.transport)  # type: ignore[arg-type]
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        """Read the response (or pass raw bytes once spliced)."""
        if self.gate is not None:
            self.gate.arrived()
        if self.raw:
            if self.delegate is not None:
                self.delegate.upstream_raw(data)
            return
        if self.delegate is None:
            # An idle pooled connection must never speak: discard it.
            log.warn("the daemon sent {n} bytes on an idle connection; dropping it", n=len(data))
            self.abort()
            return
        delegate = self.delegate
        delegate.upstream_batch(True)
        try:
            try:
                self.reader.feed(data)
            except ProtocolError as e:
                self.abort_with(Failure(e))  # type: ignore[no-untyped-call]
                return
            self.pump()
        finally:
            delegate.upstream_batch(False)

    def readConnectionLost(self) -> None:
        """The daemon half-closed: pass it on when spliced, else it is the end."""
        if self.raw and self.delegate is not None:
            self.delegate.upstream_read_closed()
            return
        if self.delegate is not None:
            self.pump()
            try:
                end = self.reader.eof()
            except ProtocolError as e:
                self.abort_with(Failure(e))  # type: ignore[no-untyped-call]
                return
            if end is not None and self.delegate is not None:
                self.delegate.upstream_event(end)
        self.close()

    def writeConnectionLost(self) -> None:
        """Our half-close went out; nothing to do."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Tell the holder, and forget this connection in the pool."""
        self.connected_ = False
        self.pool.forget(self)
        delegate, self.delegate = self.delegate, None
        if delegate is not None:
            delegate.upstream_lost(reason)

    def pauseProducing(self) -> None:
        """The daemon's socket is full: the holder should stop reading its client."""
        if self.delegate is not None:
            self.delegate.upstream_paused(True)

    def resumeProducing(self) -> None:
        """The daemon's socket drained."""
        if self.delegate is not None:
            self.delegate.upstream_paused(False)

    def stopProducing(self) -> None:
        """The transport is going away; connectionLost follows."""

    # Used by the exchange

    def pump(self) -> None:
        """Deliver response events to the delegate until more bytes are needed."""
        while self.delegate is not None and not self.raw:
            try:
                event = self.reader.next_event()
            except ProtocolError as e:
                self.abort_with(Failure(e))  # type: ignore[no-untyped-call]
                return
            if event is None:
                return
            self.delegate.upstream_event(event)

    def request(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None = None,
        *,
        stream: str | None = None,
    ) -> None:
        """Send a request head, with its whole ``body`` or, for ``stream`` ("chunked"
        or "length"), with the body to follow through ``send_data`` and ``send_end``.

        Raises:
            ValueError: a header would not survive serialisation (see ``http1``).
        """
        self.send(method, request_head(method, target, headers), body, stream=stream)

    def send(
        self, method: str, head: bytes, body: bytes | None = None, *, stream: str | None = None
    ) -> None:
        """``request`` with the head already serialised (``http1.request_head``).

        Raises:
            ProtocolError: the connection is still reading a response.
        """
        assert self.transport is not None
        self.reader.expect(method)
        self._chunked = stream == "chunked"
        self._sent_end = stream is None
        sockio.write(self.transport, head + body if body else head)

    def send_data(self, data: bytes) -> None:
        """Send part of a streamed request body."""
        assert self.transport is not None
        if data and not self._sent_end:
            self.transport.write(chunk(data) if self._chunked else data)

    def send_end(self) -> None:
        """End a streamed request body."""
        assert self.transport is not None
        if not self._sent_end:
            self._sent_end = True
            if self._chunked:
                self.transport.write(LAST_CHUNK)

    def write_raw(self, data: bytes) -> None:
        """Write spliced bytes to the daemon."""
        assert self.transport is not None
        self.transport.write(data)

    def go_raw(self) -> bytes:
        """Stop speaking HTTP; return bytes received past the response head."""
        self.raw = True
        return self.reader.go_raw()

    @property
    def reusable(self) -> bool:
        """Whether the exchange finished on both sides and the daemon keeps it alive."""
        return self.connected_ and not self.raw and self._sent_end and self.reader.reusable

    def pause_reading(self, reason: str) -> None:
        """Stop reading from the daemon for ``reason``."""
        if self.gate is not None:
            self.gate.hold(reason)

    def resume_reading(self, reason: str) -> None:
        """Stop holding reading paused for ``reason``."""
        if self.gate is not None:
            self.gate.release(reason)

    def half_close(self) -> None:
        """Send EOF to the daemon (spliced stdin ended)."""
        if self.transport is not None and self.connected_:
            half_close(self.transport)

    def close(self) -> None:
        """Close gracefully, flushing what was written."""
        if self.transport is not None and self.connected_:
            drop_producer(self.transport)
            self.transport.loseConnection()

    def abort(self) -> None:
        """Drop the connection at once: its state can no longer be trusted."""
        self.delegate = None
        if self.transport is not None and self.connected_:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def abort_with(self, reason: Failure) -> None:
        """Report ``reason`` to the holder, then drop the connection."""
        delegate, self.delegate = self.delegate, None
        self.abort()
        if delegate is not None:
            delegate.upstream_lost(reason)


# Declared after the class, as ProxyServerProtocol's interfaces are (see there).
classImplements(UpstreamConnection, IProtocol, ILoggingContext, IHalfCloseableProtocol,
                IPushProducer)


class UpstreamPool:
    """Idle keep-alive connections to one daemon endpoint, and new ones on demand."""

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        reactor: IReactorTime,
        *,
        size: int = 16,
        connect_timeout: float = 10.0,
    ) -> None:
        self._endpoint = endpoint
        self.reactor = reactor
        self._size = size
        self._connect_timeout = connect_timeout
        self._idle: list[UpstreamConnection] = []
        self.open_connections = 0

    def take_idle(self) -> UpstreamConnection | None:
        """An idle connection ready for its next exchange, if there is one."""
        while self._idle:
            conn = self._idle.pop()
            if conn.connected_:
                return conn
        return None

    def acquire(self) -> Deferred[UpstreamConnection]:
        """Return an idle connection, or connect a new one (with a timeout)."""
        idle = self.take_idle()
        if idle is not None:
            return succeed(idle)
        conn = UpstreamConnection(self)
        d = self._endpoint.connect(_Quiet(conn))
        d.addTimeout(self._connect_timeout, self.reactor)
        return d.addCallback(lambda _: conn)

    def release(self, conn: UpstreamConnection) -> None:
        """Take a connection back after an exchange, or close it if it cannot be reused."""
        conn.delegate = None
        if conn.reusable and len(self._idle) < self._size:
            self._idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: UpstreamConnection) -> None:
        """A connection closed: make sure it is not handed out again."""
        if conn in self._idle:
            self._idle.remove(conn)

    def close_idle(self) -> None:
        """Close every idle connection (at shutdown)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _Quiet(Factory):
    """Hands the endpoint one prepared connection, without a log line per connection."""

    noisy = False

    def __init__(self, proto: UpstreamConnection) -> None:
        self._proto = proto

    def buildProtocol(self, addr: object) -> UpstreamConnection:  # type: ignore[override]
        """The prepared connection (an ``IProtocol`` provider; Twisted's stubs want a
        ``Protocol`` subclass)."""
        return self._proto

"""Pausing a transport's reading for several independent reasons at once.

A client connection may have to stop reading because its request is being
decided, because the daemon's socket is full, or because the request reader
already holds a pipelined request; the upstream connection because the client reads slowly.
Each reason comes and goes on its own, and reading resumes only when none is
left.  Calling ``pauseProducing`` / ``resumeProducing`` directly from each
place would let one reason's resume undo another's pause.

The pause is lazy: ``hold`` only notes the reason, and the transport is
paused when bytes actually arrive while a reason is held (``arrived``, called
first thing in ``dataReceived``).  Most holds (a request being decided and
forwarded, a response being passed on) begin and end before the peer sends
anything more, and pausing and resuming the socket for each would cost two
``epoll_ctl`` calls per request for nothing.  What can arrive between the
hold and the pause is one read's worth of bytes, which the protocol buffers
as it always did while paused.

``NativeProtocol`` is the part of Twisted's ``Protocol`` that both of
dockgate's connection protocols need, for them to derive from it instead.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IPushProducer, ITransport


class NativeProtocol:
    """``makeConnection``, ``logPrefix`` and the ``transport``, as ``Protocol`` has them.

    A class that derives from Twisted's ``Protocol`` compiles (``setup.py``) to a
    class whose attributes live in an instance dictionary, so every ``self.x``
    of the request path was a generic attribute lookup.  Deriving from this
    one instead, the client's and the daemon's connection protocols compile
    to classes whose attributes are fields of a C struct.  Each declares
    ``IProtocol`` and its other interfaces with ``classImplements``.
    """

    def __init__(self) -> None:
        self.transport: ITransport | None = None
        self.connected = 0

    def makeConnection(self, transport: ITransport) -> None:
        """The transport connected: keep it, then ``connectionMade``."""
        self.connected = 1
        self.transport = transport
        self.connectionMade()

    def connectionMade(self) -> None:
        """Called once connected (override)."""

    def logPrefix(self) -> str:
        """What Twisted prefixes the connection's log lines with."""
        return type(self).__name__


class ReadGate:
    """Holds a transport's reading paused while any reason is held."""

    def __init__(self, transport: IPushProducer) -> None:
        self._transport = transport
        self._reasons: set[str] = set()
        self._paused = False

    def hold(self, reason: str) -> None:
        """Pause reading for ``reason`` (idempotent per reason), from the next arrival on."""
        self._reasons.add(reason)

    def arrived(self) -> None:
        """Bytes arrived: if any reason is held, stop reading more."""
        if self._reasons and not self._paused:
            self._paused = True
            self._transport.pauseProducing()

    def release(self, reason: str) -> None:
        """Drop ``reason``; resume reading if it was the last one."""
        if reason in self._reasons:
            self._reasons.discard(reason)
            if not self._reasons and self._paused:
                self._paused = False
                self._transport.resumeProducing()

    @property
    def held(self) -> frozenset[str]:
        """The reasons currently holding reading paused."""
        return frozenset(self._reasons)


def half_close(transport: Any) -> None:
    """Send EOF on ``transport`` once what it queued has left, whatever its producer does.

    Twisted's ``FileDescriptor.doWrite``, when its queue drains, resumes a
    paused streaming producer *instead of* acting on a pending
    ``loseWriteConnection``; as nothing more is written, the half-close never
    happens.  That is the case of a spliced session whose stdin ends while the
    daemon's socket is full (the peer's EOF is read before the lazy read gate
    pauses anything): the container never sees EOF and the session hangs.  Nothing is
    written after a half-close, so the back-pressure producer is unregistered
    first; the reading it may still hold paused has nothing left to read.
    """
    drop_producer(transport)
    transport.loseWriteConnection()


def drop_producer(transport: Any) -> None:
    """Unregister ``transport``'s producer, if it still has one (a closing connection
    needs no back-pressure; some transports refuse a second unregistering)."""
    if getattr(transport, "producer", True) is not None:
        transport.unregisterProducer()

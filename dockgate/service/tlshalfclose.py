"""TLS with half-close, for hijacked sessions over a TLS listener.

A docker client that finished sending stdin closes its sending side; over TLS
that is a ``close_notify`` alert.  Twisted's TLS layer takes any
``close_notify`` as the end of the whole connection, so output the process
writes after its stdin ended would never reach the client.  TLS itself (1.3
explicitly, 1.2 in practice with OpenSSL) lets the other direction go on.

``HalfCloseTLSProtocol`` keeps it going when the application protocol can
handle half-close (``IHalfCloseableProtocol``): the peer's ``close_notify``
becomes ``readConnectionLost``, our reply waits until we close, and
``loseWriteConnection`` sends our own ``close_notify`` while still reading.
"""

from __future__ import annotations

import contextlib
from typing import Any

from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer


class _PeerEndedSending(Exception):
    """Unwinds Twisted's receive loop when the peer's close_notify arrived."""


class HalfCloseTLSProtocol(TLSMemoryBIOProtocol):
    """A TLS server connection on which each side can end its sending alone."""

    _peer_done = False
    _closing = False
    _receiving = False

    def _half_closeable(self) -> bool:
        return IHalfCloseableProtocol.providedBy(self.wrappedProtocol)

    def _peer_sent_close_notify(self) -> bool:
        connection = self._tlsConnection
        return bool(connection is not None and connection.get_shutdown() & SSL.RECEIVED_SHUTDOWN)

    def _keeps_writing(self) -> bool:
        """Whether a close_notify just received ends only the peer's direction."""
        return (
            self._receiving
            and not self._closing
            and not self._peer_done
            and self._half_closeable()
            and self._peer_sent_close_notify()
        )

    def dataReceived(self, data: bytes) -> None:
        """Feed TLS; a close_notify from the peer becomes ``readConnectionLost``."""
        if self._peer_done:
            return  # nothing may follow the peer's close_notify
        self._receiving = True
        try:
            super().dataReceived(data)  # type: ignore[no-untyped-call]
        except _PeerEndedSending:
            self._peer_done = True
            self._flushSendBIO()  # type: ignore[no-untyped-call]
            IHalfCloseableProtocol(self.wrappedProtocol).readConnectionLost()
        finally:
            self._receiving = False

    def _shutdownTLS(self) -> None:
        if self._keeps_writing():
            return  # our own close_notify waits until we close
        super()._shutdownTLS()  # type: ignore[no-untyped-call]

    def _tlsShutdownFinished(self, reason: Any) -> None:
        if reason is None and self._keeps_writing():
            raise _PeerEndedSending()
        super()._tlsShutdownFinished(reason)  # type: ignore[no-untyped-call]

    def loseWriteConnection(self) -> None:
        """Send our ``close_notify`` and keep reading what the peer still sends."""
        if self._peer_done:
            self.loseConnection()
            return
        with contextlib.suppress(SSL.Error):
            self._tlsConnection.shutdown()
        self._flushSendBIO()  # type: ignore[no-untyped-call]

    def loseConnection(self) -> None:
        """Close both directions (replying to the peer's ``close_notify`` if it came)."""
        self._closing = True
        super().loseConnection()  # type: ignore[no-untyped-call]


class HalfCloseTLSFactory(TLSMemoryBIOFactory):
    """Wraps server connections in ``HalfCloseTLSProtocol``."""

    protocol = HalfCloseTLSProtocol
    noisy = False


@implementer(IStreamServerEndpoint)
class HalfCloseTLSEndpoint:
    """A TCP server endpoint whose connections speak TLS with half-close."""

    def __init__(self, reactor: Any, port: int, options: Any, *, backlog: int, interface: str):
        self._tcp = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
            reactor, port, backlog=backlog, interface=interface
        )
        self._options = options

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen, wrapping ``factory``'s protocols in TLS."""
        wrapped = HalfCloseTLSFactory(self._options, False, factory)
        listening: Deferred[IListeningPort] = self._tcp.listen(wrapped)  # type: ignore[no-untyped-call]
        return listening

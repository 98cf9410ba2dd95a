"""``gate.half_close`` on Twisted's own unix transport over a real socket pair:
the EOF goes out after the queued bytes even when the transport's streaming
producer was paused at the moment of the half-close (Twisted's ``doWrite``
would resume the producer and forget the half-close)."""

from __future__ import annotations

import socket

import pytest
from twisted.internet import protocol, unix
from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import MemoryReactor
from zope.interface import implementer

from dockgate.fastio import writethrough
from dockgate.proxy.gate import half_close


@implementer(IPushProducer)
class _Producer(protocol.Protocol):
    """A protocol that is its transport's streaming producer and counts pauses."""

    def __init__(self) -> None:
        self.paused = 0
        self.resumed = 0

    def pauseProducing(self) -> None:
        self.paused += 1

    def resumeProducing(self) -> None:
        self.resumed += 1

    def stopProducing(self) -> None:
        """Nothing to stop."""


class _Port:
    """What ``unix.Server`` reads of its listening port."""

    port = "test"
    _realPortNumber = 0


def _read_all(sock: socket.socket) -> tuple[int, bool]:
    """Read what ``sock`` holds now: (bytes read, whether EOF was seen)."""
    total = 0
    while True:
        try:
            chunk = sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return total, False
        if not chunk:
            return total, True
        total += len(chunk)


@pytest.mark.parametrize("fast", [False, True], ids=["stock", "writethrough"])
def test_half_close_with_a_paused_producer_sends_eof(fast: bool) -> None:
    """With the producer paused by a full queue, ``half_close`` still ends with EOF at
    the peer once every queued byte was read; plain ``loseWriteConnection`` does not."""
    for use_helper in (True, False):
        ours, theirs = socket.socketpair()
        reactor = MemoryReactor()
        proto = _Producer()
        transport = unix.Server(ours, proto, None, _Port(), 0, reactor)
        proto.makeConnection(transport)
        if fast:
            assert writethrough.enable(transport)
        transport.registerProducer(proto, True)
        payload = b"x" * (4 << 20)
        transport.write(payload)
        assert proto.paused == 1  # the queue is over bufferSize
        if use_helper:
            half_close(transport)
        else:
            transport.loseWriteConnection()
        got, eof = 0, False
        while True:  # the reactor's part: write while registered, the peer reads
            n, eof = _read_all(theirs)
            got += n
            if eof or transport not in reactor.getWriters():
                break
            transport.doWrite()
        got += _read_all(theirs)[0]
        assert got == len(payload)
        assert eof is use_helper, (use_helper, eof)
        theirs.close()
        ours.close()

"""The reads and writes of write-through transports, compiled (``setup.py``).

``writethrough`` gives dockgate's plain socket transports a subclass that
reads with one ``recv`` and sends at once what nothing is queued before; its
docstring says why.  The work itself is here, apart from that subclass,
because the subclass is made at run time from Twisted's own classes and so
stays interpreted, while these functions compile: a proxied request reads
twice and writes twice, and each of those went through three to five
interpreted frames (``write``, ``writeSomeData`` and the checks around
them), each reading the transport's state attribute by attribute through its
class's method resolution order.  The proxy's two
protocols and the reactor call these functions directly; the subclass's
methods delegate to them, so Twisted and other callers see the same
behaviour.

``FAST`` holds the write-through classes (``writethrough.enable`` adds them).
For any other transport (TLS, a test's ``StringTransport``) ``write`` and
``write_parts`` call its own ``write`` and ``writeSequence``.

(A response's pieces from one read of the daemon's socket are joined into one
write by the proxy's protocol itself, ``upstream_batch``, not by holding
writes in the transport: each held write read half a dozen of Twisted's
attributes.)
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any, Final

from twisted.internet import main

FAST: Final[set[type]] = set()
"""The write-through transport classes (``writethrough.enable`` adds each it makes)."""

_LOST: Final = main.CONNECTION_LOST
_DONE: Final = main.CONNECTION_DONE


def read(t: Any) -> object:
    """One ``recv`` of up to ``bufferSize`` bytes, straight to the protocol (``doRead``).

    Nothing is read once an abort is under way: Twisted's ``abortConnection``
    replaces the instance's ``doRead`` with a no-op until ``connectionLost``,
    which the reactor's direct call here would otherwise bypass (a producer's
    ``resumeProducing`` restarts reading while the transport is still connected).
    """
    if t._aborting:
        return None
    try:
        data: bytes = t.socket.recv(t.bufferSize)
    except BlockingIOError:
        return None
    except OSError:
        return _LOST
    if not data:
        return _DONE
    t.protocol.dataReceived(data)
    return None


def send(t: Any, data: bytes | memoryview) -> object:
    """One ``send``: the count sent, 0 when the socket is full, or the loss (``writeSomeData``)."""
    try:
        sent: int = t.socket.send(data)
    except BlockingIOError:
        return 0
    except OSError as e:
        if e.errno == errno.ENOBUFS:
            return 0
        return _LOST
    return sent


def write_through(t: Any, data: Any) -> None:
    """``write`` on a write-through transport: send it at once if nothing is
    queued, and queue what the kernel did not take as Twisted would
    (``_dg_queue``, the stock ``write``, which also refuses what is not ``bytes``
    as Twisted does)."""
    if type(data) is bytes and data and _clear(t):
        _send_first(t, data)
    else:
        t._dg_queue(data)


def _clear(t: Any) -> bool:
    """Whether ``t`` may send now: nothing queued, no abort under way, and the
    transport still connected and writing (what Twisted's own ``write`` and
    ``doWrite`` would check before the bytes reach the socket)."""
    return (
        not t._tempDataLen
        and t.offset == len(t.dataBuffer)
        and not t._aborting
        and t.connected
        and not t.disconnecting
        and not t._writeDisconnecting
        and not t._writeDisconnected
    )


def _send_first(t: Any, data: bytes) -> None:
    """``write_through`` of non-empty ``data`` once the transport is clear to send:
    send it at once, queue what the kernel did not take (or all of it) as Twisted
    would (``_dg_queue``)."""
    sent = send(t, data)
    if isinstance(sent, int) and sent >= 0:
        if sent == len(data):
            return
        data = data[sent:]
    # On an error the bytes are queued as usual and the next doWrite
    # reports the lost connection the way Twisted always does.
    t._dg_queue(data)


def write(t: Any, data: bytes) -> None:
    """Write ``data`` to any transport: through ``write_through`` where it can."""
    if type(t) in FAST:
        write_through(t, data)
    else:
        t.write(data)


def write_parts(t: Any, parts: Sequence[bytes | memoryview]) -> None:
    """Write ``parts`` to any transport in one write (``writeSequence``).

    Small writes are joined and sent as one.  From ``GATHER`` bytes on, the
    parts go to the socket in one ``sendmsg`` as they are: joining them would
    copy a large relayed body once more (``ResponseReader`` hands such pieces
    on as views of the buffer they were read into).  A ``memoryview`` part is
    copied only where the kernel did not take it (into Twisted's queue, which
    holds ``bytes``), or for a transport that is not write-through."""
    if type(t) not in FAST:
        t.writeSequence([p if type(p) is bytes else bytes(p) for p in parts])
        return
    if len(parts) == 1:
        data = parts[0]
        if type(data) is bytes:
            write_through(t, data)
        else:
            _write_parts(t, parts, len(data))
        return
    total = 0
    for p in parts:
        total += len(p)
    if total < GATHER or len(parts) > _MAX_PARTS:
        write_through(t, b"".join(parts))
    else:
        _write_parts(t, parts, total)


GATHER: Final = 16384
"""From this many bytes on, ``write_parts`` sends parts without joining them."""

_MAX_PARTS: Final = 64
"""More parts than this are joined first (well under any system's ``IOV_MAX``)."""


def _write_parts(t: Any, parts: Sequence[bytes | memoryview], total: int) -> None:
    """``total`` bytes of ``parts`` sent in one ``sendmsg`` when the transport
    is clear to send (``_clear``), and what the kernel did not take queued as
    ``bytes`` as Twisted would."""
    sent = 0
    if _clear(t):
        try:
            sent = t.socket.sendmsg(parts)
        except OSError:
            # Full (BlockingIOError, ENOBUFS) or failed: queued as usual, and
            # on a failure the next doWrite reports the loss as Twisted does.
            sent = 0
        if sent >= total:
            return
    rest: list[bytes | memoryview] = []
    for p in parts:
        n = len(p)
        if sent >= n:
            sent -= n
        else:
            rest.append(p[sent:] if sent else p)
            sent = 0
    t._dg_queue(b"".join(rest))

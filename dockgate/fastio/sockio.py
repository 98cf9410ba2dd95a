"""The reads and writes of write-through transports, compiled (``setup.py``).

``writethrough`` gives dockgate's plain socket transports a subclass that
reads with one ``recv`` and sends at once what nothing is queued before; its
docstring says why.  The work itself is here, apart from that subclass,
because the subclass is made at run time from Twisted's own classes and so
stays interpreted, while these functions compile: a proxied request reads
twice and writes twice, and each of those went through three to five
interpreted frames (``write``, ``_held``, ``writeSomeData``, ``cork``,
``uncork``, ``flush``), each reading the transport's state attribute by
attribute through its class's method resolution order.  The proxy's two
protocols and the reactor call these functions directly; the subclass's
methods delegate to them, so Twisted and other callers see the same
behaviour.

``FAST`` holds the write-through classes (``writethrough.enable`` adds them).
For any other transport (TLS, a test's ``StringTransport``) ``write`` and
``write_parts`` call its own ``write`` and ``writeSequence``, and ``cork``,
``uncork`` and ``flush`` do nothing.
"""

from __future__ import annotations

import errno
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


def held(t: Any, data: Any) -> bool:
    """While corked, queue ``data`` without registering for writability (uncork sends)."""
    if not (t._dg_corked and t.connected and not t._writeDisconnected):
        return False
    if data:
        t._tempDataBuffer.append(data)
        t._tempDataLen += len(data)
    return True


def write_through(t: Any, data: Any) -> None:
    """``write`` on a write-through transport: hold it while corked, else send it at
    once if nothing is queued, and queue what the kernel did not take as Twisted
    would (``_dg_queue``, the stock ``write``, which also refuses what is not
    ``bytes`` as Twisted does)."""
    if held(t, data):
        return
    if not t._tempDataLen and t.offset == len(t.dataBuffer) and not t._aborting:
        _send_first(t, data)
    else:
        t._dg_queue(data)


def _send_first(t: Any, data: Any) -> None:
    """``write_through`` once nothing is queued or held and no abort is under way: send
    ``data`` at once if the transport still writes, queue what the kernel did not
    take (or all of it) as Twisted would (``_dg_queue``)."""
    if (
        type(data) is bytes
        and data
        and t.connected
        and not t.disconnecting
        and not t._writeDisconnecting
        and not t._writeDisconnected
    ):
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


def write_parts(t: Any, parts: tuple[bytes, ...] | list[bytes]) -> None:
    """Write ``parts`` to any transport in one write (``writeSequence``); while
    corked they are held apart and joined once, when uncorked."""
    if type(t) not in FAST:
        t.writeSequence(parts)
    elif t._dg_corked:
        for data in parts:
            write_through(t, data)
    elif len(parts) == 1:
        write_through(t, parts[0])
    else:
        write_through(t, b"".join(parts))


def cork(transport: Any) -> None:
    """Hold writes to ``transport`` until ``uncork``, to send them in one system call.

    A response's head, body and end arrive as separate events from one read
    of the daemon's socket; corked, they leave in one ``send``.  Nothing else
    changes: bytes held are in Twisted's own queue, so a ``loseConnection``
    meanwhile still flushes them and an ``abortConnection`` drops them.
    (``proxy.protocol`` now holds a read's writes in a list of its own instead,
    ``upstream_batch``: a corked write reads half a dozen of the transport's
    attributes.)
    """
    if type(transport) in FAST:
        transport._dg_corked += 1


def uncork(transport: Any) -> None:
    """Undo one ``cork``; at the last one, send what was held."""
    if type(transport) in FAST:
        corked: int = transport._dg_corked - 1
        transport._dg_corked = corked
        if not corked:
            flush(transport)


def flush(transport: Any) -> None:
    """Send what ``cork`` held now (for a caller about to hand the socket elsewhere)."""
    if type(transport) not in FAST:
        return
    t = transport
    if not t._tempDataLen or t._aborting:
        return
    if t.offset == len(t.dataBuffer):
        pieces: list[bytes] = t._tempDataBuffer
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        t._tempDataBuffer = []
        t._tempDataLen = 0
        # What ``write_through`` would check again is known here (nothing queued,
        # no abort), and its corked test is passed by: held bytes go out first.
        _send_first(t, data)
    else:
        t._maybePauseProducer()
        t.startWriting()

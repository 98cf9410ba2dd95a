"""Sending at once when nothing is queued, instead of on the next reactor turn.

Twisted's socket transports only queue what ``write`` is given: the bytes
leave on a later reactor turn, after the socket was registered for
writability (``epoll_ctl``), reported writable (``epoll_wait``) and
unregistered again (``epoll_ctl``).  A proxy writes at least four times per
exchange (request head and body upstream, response head and body to the
client), so on small requests those extra system calls and loop turns cost
more CPU than the HTTP parsing.  Here a write on a socket with nothing queued
is sent straight away; whatever the kernel does not take is queued exactly as
Twisted would queue it, so ordering, back-pressure (the producer is paused
when the queue is over ``bufferSize``) and closing are Twisted's own.

The same subclass also reads and sends with plain ``recv`` and ``send``.
Twisted's unix transports use ``recvmsg``/``sendmsg`` on every read and write
so that file descriptors can pass, through several layers of Python per
call; dockgate never passes descriptors, and with ``recv`` any a client sends
are discarded by the kernel instead of being received into dockgate.  Per
exchange that is four socket calls, each a few microseconds cheaper.

The reads and writes themselves are in ``sockio``, compiled, which the
proxy's protocols and the reactor call directly; the subclass's methods
delegate to it for Twisted and every other caller.

Only Twisted's plain TCP and unix socket transports are changed, by giving
the instance a subclass; TLS connections (whose protocol sees a TLS
transport, not the socket) keep the stock behaviour.

This reads and writes Twisted's private transport state, which no release
promises to keep.  ``probe`` checks at import that the state and methods
used here are where this module expects them; ``enable`` does nothing unless
the probe passed and ``dockgate.fastio.configure`` (``--no-fast-io``) left
it on, so a Twisted that changed runs with its stock transports.
"""

from __future__ import annotations

import fcntl
import struct
import termios
from collections.abc import Iterable
from typing import Any

from twisted.internet import abstract, tcp, unix

from dockgate.fastio import sockio

__all__ = ["ENABLED", "PROBLEM", "enable", "probe", "unread"]

_BASES: tuple[type, ...] = (tcp.Server, tcp.Client, unix.Server, unix.Client)
_SUBCLASSES: dict[type, type] = {}

_METHODS = ("write", "writeSequence", "doRead", "writeSomeData", "_maybePauseProducer",
            "startWriting", "stopWriting", "fileno")
"""What ``_WriteThrough`` overrides or calls on the transport."""

_STATE = ("dataBuffer", "offset", "_tempDataBuffer", "_tempDataLen", "connected",
          "disconnecting", "_writeDisconnecting", "_writeDisconnected", "bufferSize")
"""The transport state ``_WriteThrough`` reads: Twisted's write queue and flags."""


class _NoReactor:
    """Stands in for the reactor of the descriptor ``probe`` builds (never called)."""


def probe() -> str | None:
    """Why Twisted's transports are not as this module expects, or None if they are.

    Checks that each socket transport class has the methods used here and that
    a ``FileDescriptor``, once built, holds the queue and flags read here.
    """
    for base in _BASES:
        missing = [m for m in _METHODS if not callable(getattr(base, m, None))]
        if missing:
            return f"{base.__module__}.{base.__qualname__} has no {', '.join(missing)}"
        if not issubclass(base, abstract.FileDescriptor):
            return f"{base.__module__}.{base.__qualname__} is not a FileDescriptor"
    try:
        fd = abstract.FileDescriptor(reactor=_NoReactor())  # type: ignore[arg-type]
    except Exception as e:  # a changed constructor
        return f"FileDescriptor() failed: {e!r}"
    missing = [name for name in _STATE if not hasattr(fd, name)]
    if missing:
        return f"FileDescriptor has no {', '.join(missing)}"
    if not (isinstance(fd._tempDataBuffer, list) and fd._tempDataLen == 0 and fd.offset == 0):
        return "FileDescriptor's write queue is not a list with a length and an offset"
    return None


PROBLEM: str | None = probe()
"""What ``probe`` found at import (None: Twisted's transports are as expected)."""

ENABLED = PROBLEM is None
"""Whether ``enable`` changes transports (``dockgate.fastio.configure`` sets it)."""


class _WriteThrough:
    """Mixed in before the transport's own class; see the module docstring.

    Each method hands the work to ``sockio``, compiled, which the proxy's
    protocols and the reactor call directly on the request path.
    """

    _aborting = False

    def _dg_queue(self, data: bytes) -> None:
        """Twisted's own ``write``: queue ``data`` for the next writable turn."""
        super().write(data)  # type: ignore[misc]

    def write(self, data: bytes) -> None:
        sockio.write_through(self, data)

    def doRead(self) -> object:
        """One ``recv`` of up to ``bufferSize`` bytes, straight to the protocol."""
        return sockio.read(self)

    def writeSomeData(self, data: bytes) -> object:
        """One ``send``: the count sent, 0 when the socket is full, or the loss."""
        return sockio.send(self, data)

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        sockio.write_parts(self, list(iovec))


def unread(transport: object) -> int:
    """Bytes written to ``transport`` that its peer has not read yet, as far as
    this host knows: Twisted's own queue plus the socket's send queue
    (``SIOCOUTQ``: on a unix socket, what the reader has not consumed; on TCP,
    what the peer has not acknowledged).  0 where the socket cannot tell."""
    t: Any = transport
    queued = int(getattr(t, "_tempDataLen", 0)) + len(getattr(t, "dataBuffer", b"")) - int(
        getattr(t, "offset", 0))
    try:
        raw = fcntl.ioctl(t.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (AttributeError, OSError, ValueError):
        return max(queued, 0)
    return max(queued, 0) + int(struct.unpack("i", raw)[0])


def enable(transport: object) -> bool:
    """Give ``transport`` write-through sends if it is a plain socket and fast
    I/O is on (``ENABLED``); report whether."""
    if isinstance(transport, _WriteThrough):
        return True
    if not ENABLED:
        return False
    cls = type(transport)
    if cls not in _BASES:
        return False
    sub = _SUBCLASSES.get(cls)
    if sub is None:
        sub = type(f"WriteThrough{cls.__name__}", (_WriteThrough, cls), {})
        _SUBCLASSES[cls] = sub
        sockio.FAST.add(sub)
    transport.__class__ = sub
    return True

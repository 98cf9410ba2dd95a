"""Moving a spliced session's bytes inside the kernel (Linux ``splice(2)``).

A hijacked attach or exec session carries raw bytes that dockgate neither
parses nor records (unless the audit policy asks for a recording).  Copying
them through Python costs as much CPU per megabyte as the daemon spends
producing them, which halves throughput on a small machine.  ``splice(2)``
moves them socket → pipe → socket without entering user space.

Each direction is a ``Pipe``: it watches its source socket for reading and,
when the destination is full, its destination for writing.  It goes on
reading while the pipe has room (up to 1 MiB), so the pipe is an elastic
buffer between a daemon that writes in bursts and a reader that is not
always scheduled; with a full pipe it stops reading, so back-pressure is
the kernel's own and never more than a pipe's worth is in flight.  EOF
and half-close are handed back to ``splice.Splice`` once the pipe is empty, so
the session ends exactly as it does on the Python path.

Only plain sockets qualify (not TLS), and only once Twisted has flushed what
it still buffered for either socket, so no byte can overtake another.  That
check reads Twisted's private write queue and flags; ``probe`` checks at
import that they are where ``eligible`` looks, and ``ENABLED`` (set by
``dockgate.fastio.configure``, off with ``--no-fast-io``) is what
``splice.Splice`` asks before moving a session here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from zope.interface import implementer

_CHUNK = 1 << 20
_PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_DEFAULT_PIPE = 1 << 16
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)

AVAILABLE = hasattr(os, "splice")
"""Whether this Python and platform have ``splice(2)`` (Linux, Python 3.10+)."""

_STATE = ("dataBuffer", "_tempDataBuffer", "disconnecting", "_writeDisconnecting",
          "_writeDisconnected")
"""The transport state ``eligible`` reads."""


class _NoReactor:
    """Stands in for the reactor of the descriptor ``probe`` builds (never called)."""


def probe() -> str | None:
    """Why kernel splicing cannot be used here, or None if it can."""
    if not AVAILABLE:
        return "os.splice is not available (Linux and Python 3.10+ only)"
    try:
        fd = FileDescriptor(reactor=_NoReactor())  # type: ignore[arg-type]
    except Exception as e:  # a changed constructor
        return f"FileDescriptor() failed: {e!r}"
    missing = [name for name in _STATE if not hasattr(fd, name)]
    if missing:
        return f"FileDescriptor has no {', '.join(missing)}"
    for name in ("stopReading", "stopWriting", "fileno"):
        if not callable(getattr(FileDescriptor, name, None)):
            return f"FileDescriptor has no {name}"
    return None


PROBLEM: str | None = probe()
"""What ``probe`` found at import (None: splicing can be used)."""

ENABLED = PROBLEM is None
"""Whether ``splice.Splice`` moves sessions here (``dockgate.fastio.configure`` sets it)."""


def eligible(transport: Any) -> bool:
    """Whether ``transport`` is a plain socket whose Twisted buffers are empty."""
    if not ENABLED or not isinstance(transport, FileDescriptor):
        return False
    if getattr(transport, "TLS", False) or transport.disconnecting:
        return False
    if getattr(transport, "_writeDisconnecting", False) and not getattr(
        transport, "_writeDisconnected", False
    ):
        return False  # a half-close Twisted has yet to carry out
    return not transport.dataBuffer and not transport._tempDataBuffer


@implementer(IReadDescriptor, IWriteDescriptor)
class _Socket:
    """One socket as the reactor sees it while spliced in the kernel.

    The reactor keeps one object per descriptor, so reading (for the pipe
    that takes from this socket) and writing (for the pipe that gives to it)
    go through the same object.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.reads_for: Pipe | None = None
        self.writes_for: Pipe | None = None

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> None:
        if self.reads_for is not None:
            self.reads_for.readable()

    def doWrite(self) -> None:
        if self.writes_for is not None:
            self.writes_for.writable()

    def connectionLost(self, reason: Any) -> None:
        """The reactor is shutting down; the transports handle that."""

    def logPrefix(self) -> str:
        return "kernelsplice"


class Pipe:
    """One direction of a session, source socket to destination socket."""

    def __init__(
        self,
        reactor: Any,
        src: _Socket,
        dst: _Socket,
        *,
        on_bytes: Callable[[int], None],
        on_eof: Callable[[], None],
        on_error: Callable[[], None],
    ) -> None:
        self._reactor = reactor
        self._src = src
        self._dst = dst
        src.reads_for = self
        dst.writes_for = self
        self._on_bytes = on_bytes
        self._on_eof = on_eof
        self._on_error = on_error
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._capacity = _DEFAULT_PIPE
        with contextlib.suppress(OSError):  # the default size works, with more wake-ups
            self._capacity = fcntl.fcntl(self._w, _F_SETPIPE_SZ, _PIPE_SIZE)
        self._pending = 0
        self._eof = False
        self.stopped = False

    def start(self) -> None:
        """Begin by delivering whatever the source already has."""
        self._reactor.addReader(self._src)
        self.readable()

    def readable(self) -> None:
        """Move what the source has into the pipe, then on to the destination."""
        if self.stopped or self._eof:
            return
        room = self._capacity - self._pending
        if room <= 0:
            self._reactor.removeReader(self._src)
            return
        try:
            n = os.splice(self._src.fd, self._w, min(_CHUNK, room), flags=_FLAGS)
        except BlockingIOError:
            n = -1
        except OSError:
            self._fail()
            return
        if n == 0:
            self._eof = True
            self._reactor.removeReader(self._src)
        elif n > 0:
            self._pending += n
        self._flush()

    def writable(self) -> None:
        """The destination drained: deliver what waits in the pipe."""
        if not self.stopped:
            self._flush()

    def _flush(self) -> None:
        while self._pending:
            try:
                m = os.splice(self._r, self._dst.fd, self._pending, flags=_FLAGS)
            except BlockingIOError:
                break
            except OSError:
                self._fail()
                return
            if m <= 0:
                break
            self._pending -= m
            self._on_bytes(m)
        if self._pending:
            # The destination is full: wait until it drains, and meanwhile
            # keep reading while the pipe has room, so that the pipe absorbs
            # the reader's scheduling delays instead of the daemon stalling.
            self._reactor.addWriter(self._dst)
            if self._pending >= self._capacity or self._eof:
                self._reactor.removeReader(self._src)
            else:
                self._reactor.addReader(self._src)
            return
        self._reactor.removeWriter(self._dst)
        if self._eof:
            self.stop()
            with contextlib.suppress(OSError):
                socket.socket(fileno=os.dup(self._dst.fd)).shutdown(socket.SHUT_WR)
            self._on_eof()
        else:
            self._reactor.addReader(self._src)

    def _fail(self) -> None:
        self.stop()
        self._on_error()

    def stop(self) -> None:
        """Stop watching and release the pipe (idempotent)."""
        if self.stopped:
            return
        self.stopped = True
        self._reactor.removeReader(self._src)
        self._reactor.removeWriter(self._dst)
        self._src.reads_for = None
        self._dst.writes_for = None
        os.close(self._r)
        os.close(self._w)


class KernelSplice:
    """Both directions of a session, spliced in the kernel.

    Args:
        reactor: the reactor.
        client, upstream: the two transports; their reading and writing must
            be stopped, their buffers empty (see ``eligible``).
        on_in, on_out: byte counts client→daemon and daemon→client.
        on_client_eof, on_upstream_eof: a direction ended and its EOF was
            passed on (the other socket's sending side was shut).
        up, down: which directions are still open (the other already ended).
        on_error: either socket failed; both pipes are stopped.
    """

    def __init__(
        self,
        reactor: Any,
        client: FileDescriptor,
        upstream: FileDescriptor,
        *,
        on_in: Callable[[int], None],
        on_out: Callable[[int], None],
        on_client_eof: Callable[[], None],
        on_upstream_eof: Callable[[], None],
        on_error: Callable[[], None],
        up: bool = True,
        down: bool = True,
    ) -> None:
        a = _Socket(client.fileno())  # type: ignore[no-untyped-call]
        b = _Socket(upstream.fileno())  # type: ignore[no-untyped-call]
        self._pipes: list[Pipe] = []
        if up:
            self._pipes.append(
                Pipe(reactor, a, b, on_bytes=on_in, on_eof=on_client_eof, on_error=self._failed)
            )
        if down:
            self._pipes.append(
                Pipe(reactor, b, a, on_bytes=on_out, on_eof=on_upstream_eof, on_error=self._failed)
            )
        self._on_error = on_error

    def start(self) -> None:
        """Start the directions still open."""
        for pipe in self._pipes:
            pipe.start()

    def _failed(self) -> None:
        self.stop()
        self._on_error()

    def stop(self) -> None:
        """Stop both directions (idempotent)."""
        for pipe in self._pipes:
            pipe.stop()

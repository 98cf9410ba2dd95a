"""Byte-for-byte splicing of a hijacked connection, with half-close.

After the daemon switches protocols (101) or answers a hijack route with its
legacy raw-stream 200, the connection no longer carries HTTP: it carries a
container's stdin one way and its output the other.  Two rules matter:

* Half-close must travel: when the client closes its sending side (stdin
  EOF), the daemon must see EOF too, yet output written after that must still
  reach the client.  So each side's read EOF becomes a ``loseWriteConnection``
  on the other, and the pair is only closed once both directions are done.
* A spliced connection never goes back to HTTP, on either side: it never
  carries another request and never returns to the upstream pool.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from dockgate.fastio import kernelsplice
from dockgate.fastio.kernelsplice import KernelSplice
from dockgate.proxy.gate import drop_producer, half_close

log = Logger()

if TYPE_CHECKING:
    from twisted.internet.interfaces import ITransport

    from dockgate.proxy.upstream import UpstreamConnection


class ClientSide(typing.Protocol):
    """What a splice needs of the client's protocol: its transport."""

    transport: ITransport | None


class Splice:
    """Joins a client connection and a daemon connection until both directions end.

    The client side is any protocol with a transport; ``on_client_closing``
    is called just before the splice closes or aborts the client's transport,
    so the protocol (which owns its own state) stops handling the connection.

    Attributes:
        bytes_in: bytes passed from the client to the daemon.
        bytes_out: bytes passed from the daemon to the client.
    """

    def __init__(
        self,
        client: ClientSide,
        upstream: UpstreamConnection,
        on_done: Callable[[Splice], None],
        record: Callable[[str, bytes], None] | None = None,
        *,
        on_client_closing: Callable[[], None],
    ) -> None:
        self._client = client
        self._on_client_closing = on_client_closing
        self._record = record
        self._upstream = upstream
        self._on_done: Callable[[Splice], None] | None = on_done
        self.bytes_in = 0
        self.bytes_out = 0
        self._client_eof = False
        self._upstream_eof = False
        self._kernel: KernelSplice | None = None
        self._kernel_tries = 0

    # -- moving to the kernel ---------------------------------------------

    def offload(self, reactor: Any) -> None:
        """Move the session into the kernel (``kernelsplice``) once that is safe.

        Not for recorded sessions (the bytes must pass through the recorder)
        nor TLS; and only once Twisted has flushed what it still holds for
        either socket (the response head, early bytes), tried for up to a
        second after the switch.
        """
        if self._record is not None or not kernelsplice.ENABLED or self._on_done is None:
            return
        client = self._client.transport
        upstream = self._upstream.transport
        if (self._client_eof and self._upstream_eof) or client is None or upstream is None:
            return
        if not (kernelsplice.eligible(client) and kernelsplice.eligible(upstream)):
            self._kernel_tries += 1
            if self._kernel_tries == 100:
                log.debug("session stays in user space: {c!r} {u!r}", c=client, u=upstream)
            if self._kernel_tries < 100:
                reactor.callLater(0.01, self.offload, reactor)
            return
        for transport in (client, upstream):
            transport.stopReading()  # type: ignore[attr-defined]
            transport.stopWriting()  # type: ignore[attr-defined]
        self._kernel = KernelSplice(
            reactor,
            client,  # type: ignore[arg-type]
            upstream,  # type: ignore[arg-type]
            on_in=self._count_in,
            on_out=self._count_out,
            on_client_eof=self._kernel_client_eof,
            on_upstream_eof=self._kernel_upstream_eof,
            on_error=self._kernel_failed,
            up=not self._client_eof,
            down=not self._upstream_eof,
        )
        self._kernel.start()
        log.debug("session moved to kernel splice after {tries} tries", tries=self._kernel_tries)

    def _count_in(self, n: int) -> None:
        self.bytes_in += n

    def _count_out(self, n: int) -> None:
        self.bytes_out += n

    def _kernel_client_eof(self) -> None:
        self._client_eof = True
        self._kernel_maybe_done()

    def _kernel_upstream_eof(self) -> None:
        self._upstream_eof = True
        self._kernel_maybe_done()

    def _kernel_maybe_done(self) -> None:
        if self._client_eof and self._upstream_eof:
            self._leave_kernel()
            self._upstream.close()
            self._client_close()
            self._done()

    def _kernel_failed(self) -> None:
        self._leave_kernel()
        self._abort_both()

    def _abort_both(self) -> None:
        """Drop both connections at once: the session cannot go on as it should."""
        self._client_eof = self._upstream_eof = True
        self._upstream.abort()
        transport = self._client.transport
        if transport is not None:
            self._on_client_closing()
            transport.abortConnection()  # type: ignore[attr-defined]
        self._done()

    def _leave_kernel(self) -> None:
        kernel, self._kernel = self._kernel, None
        if kernel is not None:
            kernel.stop()

    def from_client(self, data: bytes) -> None:
        """Client to daemon (stdin)."""
        if self._client_eof:
            return
        self.bytes_in += len(data)
        if not self._recorded("in", data):
            return
        self._upstream.write_raw(data)

    def from_upstream(self, data: bytes) -> None:
        """Daemon to client (output)."""
        self.bytes_out += len(data)
        if not self._recorded("out", data):
            return
        transport = self._client.transport
        if transport is not None:
            transport.write(data)

    def _recorded(self, direction: str, data: bytes) -> bool:
        """Record session bytes; a session that cannot be recorded is ended at once.

        Recording is on when the audit policy asks for it, and then a gap in
        the recording must not be possible: rather than pass bytes that were
        not recorded, both connections are dropped.
        """
        if self._record is None:
            return True
        try:
            self._record(direction, data)
        except Exception:
            log.failure("session recording failed; ending the session")
            self._record = None
            self._abort_both()
            return False
        return True

    def client_read_closed(self) -> None:
        """stdin ended: pass the EOF on to the daemon."""
        if not self._client_eof:
            self._client_eof = True
            self._upstream.half_close()
            self._maybe_done()

    def upstream_read_closed(self) -> None:
        """The daemon finished its output: pass the EOF on to the client."""
        if not self._upstream_eof:
            self._upstream_eof = True
            transport = self._client.transport
            if transport is not None:
                half_close(transport)
            self._maybe_done()

    def client_write_closed(self) -> None:
        """Our EOF reached the client; nothing more to do."""

    def client_lost(self) -> None:
        """The client connection is gone: close the daemon side too."""
        self._leave_kernel()
        self._client_eof = self._upstream_eof = True
        self._upstream.close()
        self._done()

    def upstream_lost(self) -> None:
        """The daemon connection is gone: flush and close the client side."""
        self._leave_kernel()
        self._client_eof = self._upstream_eof = True
        self._client_close()
        self._done()

    def pause_upstream(self, paused: bool) -> None:
        """The client reads slowly (True) or caught up (False)."""
        if self._kernel is not None:
            return  # the kernel pipe applies back-pressure itself
        if paused:
            self._upstream.pause_reading("client-full")
        else:
            self._upstream.resume_reading("client-full")

    def _maybe_done(self) -> None:
        if self._client_eof and self._upstream_eof:
            self._upstream.close()
            self._client_close()
            self._done()

    def _client_close(self) -> None:
        transport = self._client.transport
        if transport is not None:
            self._on_client_closing()
            drop_producer(transport)
            transport.loseConnection()

    def _done(self) -> None:
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done(self)

"""dockgate's fast I/O on real socket pairs: ``writethrough`` (plain recv/send,
immediate sends), ``kernelsplice`` (splice(2) pipes) and the start-up
switch ``fastio.configure`` with the probes behind it.

The transports are Twisted's own ``unix.Server`` over ``socket.socketpair``;
the reactor is a ``MemoryReactor``, so the tests see exactly which sockets are
registered for reading and writing and drive ``doRead``/``doWrite`` themselves.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.internet import main, protocol, unix
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import _WrappingProtocol
from twisted.internet.testing import MemoryReactor, StringTransport

from dockgate import fastio
from dockgate.fastio import kernelsplice, sockio, writethrough
from dockgate.fastio.reactor import DockgateReactor
from dockgate.proxy.upstream import UpstreamConnection, UpstreamPool


class _Collect(protocol.Protocol):
    """Keeps what the transport delivers."""

    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class _Port:
    """What ``unix.Server`` reads of its listening port."""

    port = "test"
    _realPortNumber = 0


def _server(sock: socket.socket, reactor: MemoryReactor) -> unix.Server:
    proto = _Collect()
    transport = unix.Server(sock, proto, None, _Port(), 0, reactor)
    proto.makeConnection(transport)
    return transport


def _drain(sock: socket.socket) -> bytes:
    """Everything ``sock`` can read now without blocking."""
    out = b""
    while True:
        try:
            chunk = sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def _fill(sock: socket.socket) -> int:
    """Write to ``sock`` until the kernel takes no more; return how much it took."""
    sent = 0
    sock.setblocking(False)
    try:
        while True:
            sent += sock.send(b"f" * 65536)
    except BlockingIOError:
        return sent


def _deliver(transport: unix.Server, theirs: socket.socket, reactor: MemoryReactor) -> bytes:
    """What the peer reads while ``doWrite`` empties the transport's queue."""
    got = b""
    for _ in range(100_000):
        got += _drain(theirs)
        if transport.doWrite() is not None or transport not in reactor.getWriters():
            break
    return got + _drain(theirs)


@pytest.fixture
def reactor() -> MemoryReactor:
    return MemoryReactor()


@pytest.fixture
def pair(reactor: MemoryReactor) -> Iterator[tuple[unix.Server, socket.socket]]:
    """A write-through transport on one end of a socket pair, the plain socket on the other."""
    ours, theirs = socket.socketpair()
    transport = _server(ours, reactor)
    assert writethrough.enable(transport)
    yield transport, theirs
    theirs.close()
    ours.close()


@pytest.fixture(autouse=True)
def _fast_io_on() -> Iterator[None]:
    """Each test starts with both devices on and leaves them as it found them."""
    saved = writethrough.ENABLED, kernelsplice.ENABLED
    writethrough.ENABLED = kernelsplice.ENABLED = True
    yield
    writethrough.ENABLED, kernelsplice.ENABLED = saved


# -- writethrough --------------------------------------------------------------


def test_probe_finds_the_installed_twisted_as_expected() -> None:
    """On the Twisted the suite runs on, both probes pass; if Twisted changes
    its transports' internals, this is the first test to say so."""
    assert writethrough.probe() is None
    assert kernelsplice.probe() is None


def test_probe_names_a_missing_method(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transport method writethrough relies on that Twisted no longer has is
    named in the probe's answer, with the class that lacks it."""
    monkeypatch.setattr(writethrough, "_METHODS", (*writethrough._METHODS, "_noSuchMethod"))
    problem = writethrough.probe()
    assert problem is not None
    assert "tcp.Server has no _noSuchMethod" in problem


def test_probe_names_missing_transport_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Write-queue state that a FileDescriptor no longer holds is named, by
    both probes (writethrough reads it to send, kernelsplice to judge safety)."""
    monkeypatch.setattr(writethrough, "_STATE", (*writethrough._STATE, "_noSuchQueue"))
    monkeypatch.setattr(kernelsplice, "_STATE", (*kernelsplice._STATE, "_noSuchQueue"))
    assert writethrough.probe() == "FileDescriptor has no _noSuchQueue"
    assert kernelsplice.probe() == "FileDescriptor has no _noSuchQueue"


def test_kernelsplice_probe_without_splice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the platform has no splice(2), the kernel-splice probe says so."""
    monkeypatch.setattr(kernelsplice, "AVAILABLE", False)
    assert "os.splice is not available" in (kernelsplice.probe() or "")


def test_enable_gives_a_socket_transport_the_subclass(reactor: MemoryReactor) -> None:
    """A plain unix socket transport becomes write-through (once: enabling it
    again keeps the same class); a transport that is no socket is left alone."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        transport = _server(ours, reactor)
        assert writethrough.enable(transport)
        cls = type(transport)
        assert isinstance(transport, writethrough._WriteThrough)
        assert isinstance(transport, unix.Server)
        assert writethrough.enable(transport)
        assert type(transport) is cls
    assert not writethrough.enable(StringTransport())


def test_enable_does_nothing_while_fast_io_is_off(reactor: MemoryReactor) -> None:
    """With fast I/O off the transport keeps Twisted's own class, and a write
    takes Twisted's own path: queued for the reactor's next writable turn."""
    writethrough.ENABLED = False
    ours, theirs = socket.socketpair()
    with ours, theirs:
        transport = _server(ours, reactor)
        assert not writethrough.enable(transport)
        assert type(transport) is unix.Server
        transport.write(b"stock")
        assert transport._tempDataBuffer == [b"stock"]
        assert transport in reactor.getWriters()


def test_write_with_nothing_queued_is_sent_at_once(
    pair: tuple[unix.Server, socket.socket], reactor: MemoryReactor
) -> None:
    """A write on an idle socket reaches the peer before any reactor turn and
    never registers the socket for writability."""
    transport, theirs = pair
    transport.write(b"GET /_ping HTTP/1.1\r\n\r\n")
    assert _drain(theirs) == b"GET /_ping HTTP/1.1\r\n\r\n"
    assert transport not in reactor.getWriters()
    assert transport._tempDataLen == 0


def test_what_the_kernel_does_not_take_is_queued_in_order(
    pair: tuple[unix.Server, socket.socket], reactor: MemoryReactor
) -> None:
    """When the socket is full the rest is queued as Twisted queues it; a
    later write goes behind it, and doWrite delivers everything in order."""
    transport, theirs = pair
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = bytes(range(256)) * 4096
    transport.write(big)
    transport.write(b"tail")
    assert transport._tempDataLen > 0
    assert transport in reactor.getWriters()
    assert _deliver(transport, theirs, reactor) == big + b"tail"


def test_write_after_loss_is_queued_and_reported_by_twisted(
    pair: tuple[unix.Server, socket.socket],
) -> None:
    """A send on a socket whose peer is gone is not an exception: the bytes
    are queued and Twisted's next doWrite reports the connection lost."""
    transport, theirs = pair
    theirs.close()
    transport.write(b"x")
    assert transport._tempDataLen == 1
    assert transport.doWrite() == main.CONNECTION_LOST


def test_do_read_delivers_one_recv_and_reports_eof(
    pair: tuple[unix.Server, socket.socket],
) -> None:
    """doRead hands what one recv returns to the protocol; with nothing to
    read it returns None, and at the peer's EOF it reports a clean close."""
    transport, theirs = pair
    assert transport.doRead() is None
    theirs.sendall(b"hello")
    assert transport.doRead() is None
    assert transport.protocol.received == b"hello"  # type: ignore[attr-defined]
    theirs.shutdown(socket.SHUT_WR)
    assert transport.doRead() == main.CONNECTION_DONE


def test_do_read_reports_a_failed_recv_as_loss(
    pair: tuple[unix.Server, socket.socket],
) -> None:
    """A recv that fails (here on a socket already shut down by us) is a lost
    connection, not an exception out of the reactor."""
    transport, _ = pair
    transport.socket.close()
    assert transport.doRead() == main.CONNECTION_LOST


def test_write_sequence_is_one_send(
    pair: tuple[unix.Server, socket.socket],
) -> None:
    """writeSequence joins its pieces and sends them at once."""
    transport, theirs = pair
    transport.writeSequence([b"a", b"b", b"c"])
    assert _drain(theirs) == b"abc"


class _SendmsgSpy:
    """A socket that records the buffers each ``sendmsg`` was given."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.calls: list[list[type]] = []

    def sendmsg(self, buffers: list[bytes | memoryview]) -> int:
        self.calls.append([type(b) for b in buffers])
        return self._sock.sendmsg(buffers)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


def test_large_parts_go_out_in_one_sendmsg_as_they_are(
    pair: tuple[unix.Server, socket.socket], reactor: MemoryReactor
) -> None:
    """From GATHER bytes on, write_parts hands the parts, a memoryview among
    them, to one sendmsg unjoined; the peer reads them in order and nothing is
    queued.  Below GATHER the parts are joined into one send instead."""
    transport, theirs = pair
    spy = _SendmsgSpy(transport.socket)
    transport.socket = spy  # type: ignore[assignment]
    big = bytes(range(256)) * 200
    sockio.write_parts(transport, [b"head;", memoryview(big)[7:]])
    assert spy.calls == [[bytes, memoryview]]
    assert _drain(theirs) == b"head;" + big[7:]
    assert transport._tempDataLen == 0 and transport not in reactor.getWriters()
    sockio.write_parts(transport, [b"a", b"b" * 100])
    assert len(spy.calls) == 1 and _drain(theirs) == b"a" + b"b" * 100
    sockio.write_parts(transport, [memoryview(big)[: sockio.GATHER]])
    assert len(spy.calls) == 2 and _drain(theirs) == big[: sockio.GATHER]


def test_what_sendmsg_leaves_is_queued_as_bytes_in_order(
    pair: tuple[unix.Server, socket.socket], reactor: MemoryReactor
) -> None:
    """When the kernel takes only part of a gathered write, the rest (from the
    middle of a part on) is queued as bytes, as Twisted's queue requires; a
    later write goes behind it and a write made while the queue is not empty
    is queued whole, so the peer reads everything once, in order."""
    transport, theirs = pair
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = bytes(range(256)) * 4096
    sockio.write_parts(transport, [b"<", memoryview(big)[1:], b">"])
    assert transport._tempDataLen > 0
    assert all(type(b) is bytes for b in transport._tempDataBuffer)
    sockio.write_parts(transport, [memoryview(big)[:30_000], b"!"])
    transport.write(b"tail")
    assert _deliver(transport, theirs, reactor) == (
        b"<" + big[1:] + b">" + big[:30_000] + b"!" + b"tail")


def test_large_parts_after_loss_are_queued_and_reported_by_twisted(
    pair: tuple[unix.Server, socket.socket],
) -> None:
    """A failed sendmsg is not an exception: everything is queued and
    Twisted's next doWrite reports the connection lost."""
    transport, theirs = pair
    theirs.close()
    sockio.write_parts(transport, [b"x", memoryview(b"y" * sockio.GATHER)])
    assert transport._tempDataLen == 1 + sockio.GATHER
    assert transport.doWrite() == main.CONNECTION_LOST


def test_parts_to_other_transports_are_bytes() -> None:
    """A transport that is not write-through (TLS, a test's StringTransport)
    gets writeSequence of bytes only: memoryview parts are copied for it."""
    seen: list[list[type]] = []

    class _Strict(StringTransport):
        def writeSequence(self, data: list[bytes]) -> None:  # type: ignore[override]
            seen.append([type(b) for b in data])
            super().writeSequence(data)

    t = _Strict()
    sockio.write_parts(t, [b"a", memoryview(b"bcd")[1:]])
    assert seen == [[bytes, bytes]] and t.value() == b"acd"


def test_writes_while_half_closed_or_aborting_are_not_sent(
    pair: tuple[unix.Server, socket.socket],
) -> None:
    """After loseWriteConnection, and while an abort is under way, a write
    takes Twisted's path: nothing is sent straight away."""
    transport, theirs = pair
    transport._aborting = True  # type: ignore[attr-defined]
    transport.write(b"late")
    assert _drain(theirs) == b""


def test_unread_counts_queued_and_unconsumed_bytes(
    pair: tuple[unix.Server, socket.socket],
) -> None:
    """unread is what the peer has not read yet: the socket's send queue (as
    the kernel accounts it, which on a unix socket is more than the payload)
    plus Twisted's own queue byte for byte; 0 once the peer read everything,
    and 0 for a transport without a socket."""
    transport, theirs = pair
    assert writethrough.unread(transport) == 0
    transport.write(b"12345")
    in_kernel = writethrough.unread(transport)
    assert in_kernel >= 5
    transport._dg_queue(b"678")  # type: ignore[attr-defined]  # Twisted's own queue
    assert writethrough.unread(transport) == in_kernel + 3
    transport.doWrite()
    assert _drain(theirs) == b"12345678"
    assert writethrough.unread(transport) == 0
    assert writethrough.unread(StringTransport()) == 0


# -- kernelsplice --------------------------------------------------------------


class _Events:
    """What a KernelSplice reports through its callbacks."""

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0
        self.client_eof = False
        self.upstream_eof = False
        self.errors = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_in": self._in, "on_out": self._out, "on_client_eof": self._client_eof,
            "on_upstream_eof": self._upstream_eof, "on_error": self._error,
        }

    def _in(self, n: int) -> None:
        self.bytes_in += n

    def _out(self, n: int) -> None:
        self.bytes_out += n

    def _client_eof(self) -> None:
        self.client_eof = True

    def _upstream_eof(self) -> None:
        self.upstream_eof = True

    def _error(self) -> None:
        self.errors += 1


@pytest.fixture
def session(reactor: MemoryReactor) -> Iterator[dict[str, object]]:
    """A client socket pair and a daemon socket pair, the proxy's ends as
    stopped Twisted transports: what Splice.offload hands to KernelSplice."""
    client_app, client_ours = socket.socketpair()
    daemon_ours, daemon_app = socket.socketpair()
    client = _server(client_ours, reactor)
    daemon = _server(daemon_ours, reactor)
    for t in (client, daemon):
        t.stopReading()
        t.stopWriting()
    yield {"client_app": client_app, "daemon_app": daemon_app, "client": client,
           "daemon": daemon}
    for s in (client_app, client_ours, daemon_ours, daemon_app):
        s.close()


def _splice(reactor: MemoryReactor, s: dict[str, object], events: _Events,
            **kw: bool) -> kernelsplice.KernelSplice:
    ks = kernelsplice.KernelSplice(reactor, s["client"], s["daemon"],  # type: ignore[arg-type]
                                   **events.callbacks(), **kw)  # type: ignore[arg-type]
    ks.start()
    return ks


def _readers(reactor: MemoryReactor) -> list[object]:
    return [r for r in reactor.getReaders() if isinstance(r, kernelsplice._Socket)]


def _writers(reactor: MemoryReactor) -> list[object]:
    return [w for w in reactor.getWriters() if isinstance(w, kernelsplice._Socket)]


def test_eligible_only_for_stock_socket_transports_with_empty_buffers(
    session: dict[str, object],
) -> None:
    """A plain socket transport with nothing buffered may be spliced; one with
    queued bytes, one that is disconnecting, a non-socket transport, and any
    transport while fast I/O is off may not."""
    client = session["client"]
    assert kernelsplice.eligible(client)
    assert not kernelsplice.eligible(StringTransport())
    client._tempDataBuffer.append(b"x")  # type: ignore[attr-defined]
    assert not kernelsplice.eligible(client)
    client._tempDataBuffer.clear()  # type: ignore[attr-defined]
    client.disconnecting = True  # type: ignore[attr-defined]
    assert not kernelsplice.eligible(client)
    client.disconnecting = False  # type: ignore[attr-defined]
    client._writeDisconnecting = True  # type: ignore[attr-defined]
    assert not kernelsplice.eligible(client)
    client._writeDisconnecting = False  # type: ignore[attr-defined]
    kernelsplice.ENABLED = False
    assert not kernelsplice.eligible(client)


def test_bytes_move_both_ways_and_are_counted(
    reactor: MemoryReactor, session: dict[str, object]
) -> None:
    """Bytes sent before the splice started and after it arrive on the far
    side unchanged, in each direction, and the counts report them."""
    client_app, daemon_app = session["client_app"], session["daemon_app"]
    assert isinstance(client_app, socket.socket) and isinstance(daemon_app, socket.socket)
    client_app.sendall(b"stdin before ")
    events = _Events()
    ks = _splice(reactor, session, events)
    assert _drain(daemon_app) == b"stdin before "
    client_app.sendall(b"and after")
    for r in _readers(reactor):
        r.doRead()  # type: ignore[attr-defined]
    assert _drain(daemon_app) == b"and after"
    daemon_app.sendall(b"output")
    for r in _readers(reactor):
        r.doRead()  # type: ignore[attr-defined]
    assert _drain(client_app) == b"output"
    assert (events.bytes_in, events.bytes_out) == (len(b"stdin before and after"), 6)
    ks.stop()
    ks.stop()  # idempotent
    assert _readers(reactor) == [] and _writers(reactor) == []


def test_eof_is_passed_on_as_a_half_close(
    reactor: MemoryReactor, session: dict[str, object]
) -> None:
    """The client's EOF (stdin closed) shuts the daemon socket's sending side
    once the pipe is empty, and is reported; the other direction keeps going."""
    client_app, daemon_app = session["client_app"], session["daemon_app"]
    assert isinstance(client_app, socket.socket) and isinstance(daemon_app, socket.socket)
    events = _Events()
    ks = _splice(reactor, session, events)
    client_app.sendall(b"last")
    client_app.shutdown(socket.SHUT_WR)
    for _ in range(3):
        for r in _readers(reactor):
            r.doRead()  # type: ignore[attr-defined]
    assert events.client_eof and not events.upstream_eof
    daemon_app.settimeout(5)
    assert daemon_app.recv(100) == b"last"
    assert daemon_app.recv(100) == b""  # EOF arrived
    daemon_app.sendall(b"still flowing")
    for r in _readers(reactor):
        r.doRead()  # type: ignore[attr-defined]
    assert _drain(client_app) == b"still flowing"
    ks.stop()


def test_a_full_destination_waits_for_writability(
    reactor: MemoryReactor, session: dict[str, object]
) -> None:
    """When the reader is slow the pipe holds the bytes and the destination is
    watched for writability; once it drains, doWrite delivers the rest."""
    client_app, daemon_app = session["client_app"], session["daemon_app"]
    assert isinstance(client_app, socket.socket) and isinstance(daemon_app, socket.socket)
    client_app.setblocking(False)
    filled = _fill(daemon_app)  # the client does not read: its socket is full
    events = _Events()
    ks = _splice(reactor, session, events, up=False)
    daemon_app.setblocking(True)
    daemon_app.sendall(b"z" * 100_000)
    for r in _readers(reactor):
        r.doRead()  # type: ignore[attr-defined]
    assert _writers(reactor), "the full client socket is watched for writability"
    got = 0
    for _ in range(10_000):
        got += len(_drain(client_app))
        for w in _writers(reactor):
            w.doWrite()  # type: ignore[attr-defined]
        for r in _readers(reactor):
            r.doRead()  # type: ignore[attr-defined]
        if got >= filled + 100_000:
            break
    assert got == filled + 100_000
    assert events.bytes_out == filled + 100_000
    assert _writers(reactor) == []
    ks.stop()


def test_a_failed_socket_stops_both_directions_and_reports(
    reactor: MemoryReactor, session: dict[str, object]
) -> None:
    """When splicing into a socket fails (its peer is gone), both pipes stop,
    nothing stays registered with the reactor, and the error is reported once."""
    client_app, daemon_app = session["client_app"], session["daemon_app"]
    assert isinstance(client_app, socket.socket) and isinstance(daemon_app, socket.socket)
    events = _Events()
    _splice(reactor, session, events)
    daemon_app.close()
    client_app.sendall(b"to nobody")
    for r in _readers(reactor):
        r.doRead()  # type: ignore[attr-defined]
    assert events.errors == 1
    assert _readers(reactor) == [] and _writers(reactor) == []


def test_one_direction_only_when_the_other_already_ended(
    reactor: MemoryReactor, session: dict[str, object]
) -> None:
    """A session moved after the client's EOF splices only daemon → client:
    the client socket is not read."""
    events = _Events()
    ks = _splice(reactor, session, events, up=False)
    readers = _readers(reactor)
    assert len(readers) == 1
    assert readers[0].fileno() == session["daemon"].fileno()  # type: ignore[attr-defined]
    ks.stop()


# -- fastio.configure ------------------------------------------------------------


def test_configure_on_off_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """configure turns both devices on where their probes passed, off with
    --no-fast-io, and a failed probe keeps its device off and is named in the
    start-up phrase with the Twisted version."""
    assert fastio.configure(True) == "fast I/O on"
    assert writethrough.ENABLED and kernelsplice.ENABLED
    assert fastio.configure(False) == "fast I/O off (--no-fast-io)"
    assert not writethrough.ENABLED and not kernelsplice.ENABLED
    monkeypatch.setattr(writethrough, "PROBLEM", "tcp.Server has no writeSomeData")
    phrase = fastio.configure(True)
    assert not writethrough.ENABLED and kernelsplice.ENABLED
    assert "write-through off (tcp.Server has no writeSomeData)" in phrase
    assert "stock Twisted transports instead" in phrase


# -- the daemon's connection without the endpoint's wrapper ----------------------


class _Delegate:
    """Records what an ``UpstreamConnection`` hands its holder."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.read_closed = False

    def upstream_event(self, event: object) -> None:
        self.events.append(event)

    def upstream_raw(self, data: bytes) -> None:
        self.events.append(data)

    def upstream_read_closed(self) -> None:
        self.read_closed = True

    def upstream_lost(self, reason: object) -> None:
        """Not expected here."""

    def upstream_paused(self, paused: bool) -> None:
        """Not expected here."""

    def upstream_batch(self, begin: bool) -> None:
        """Corking is tested above."""


@pytest.mark.parametrize("fast", [True, False], ids=["writethrough", "stock"])
def test_upstream_connection_is_read_without_the_endpoint_wrapper(
    reactor: MemoryReactor, fast: bool
) -> None:
    """Connected as an endpoint connects it (inside Twisted's wrapper, which fires
    the connection's Deferred), a write-through transport then calls the
    ``UpstreamConnection`` itself: the daemon's answer read off a real socket
    reaches it as events, and the daemon's half-close reaches it once spliced.
    With fast I/O off the wrapper stays, as Twisted made it."""
    writethrough.ENABLED = fast
    ours, theirs = socket.socketpair()
    conn = UpstreamConnection(UpstreamPool(None, reactor))  # type: ignore[arg-type]
    connected: Deferred[object] = Deferred()
    wrapper = _WrappingProtocol(connected, conn)
    transport = unix.Server(ours, wrapper, None, _Port(), 0, reactor)
    wrapper.makeConnection(transport)
    try:
        assert connected.called
        assert (transport.protocol is conn) is fast
        assert (transport.protocol is wrapper) is not fast
        delegate = _Delegate()
        conn.delegate = delegate  # type: ignore[assignment]
        conn.send("GET", b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        if fast:
            assert _drain(theirs).startswith(b"GET /_ping ")
        theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
        assert transport.doRead() is None
        assert [type(e).__name__ for e in delegate.events] == ["Head", "Body", "End"]
        conn.raw = True
        theirs.shutdown(socket.SHUT_WR)
        assert transport.doRead() == main.CONNECTION_DONE
        transport.readConnectionLost(main.CONNECTION_DONE)
        assert delegate.read_closed
    finally:
        theirs.close()
        ours.close()


@pytest.mark.parametrize("fast", [True, False])
def test_an_aborted_connection_delivers_nothing_more_even_if_read_again(fast: bool) -> None:
    """After ``abortConnection`` a transport's protocol gets no more bytes, as with
    Twisted's own transports (whose abort replaces ``doRead`` with a no-op until
    ``connectionLost`` runs), even when something resumes reading it meanwhile
    (``resumeProducing`` restarts reading while the transport is still
    connected): dockgate's reactor, which reads a write-through socket with the
    compiled ``sockio.read`` directly, must not hand the protocol what the peer
    sent after the abort."""
    real = DockgateReactor()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    transport = _server(ours, real)  # type: ignore[arg-type]
    if fast:
        assert writethrough.enable(transport)
    transport.startReading()
    try:
        transport.abortConnection()
        transport.resumeProducing()  # still connected: reading starts again
        theirs.sendall(b"GET /after-the-abort HTTP/1.1\r\n\r\n")
        real.doPoll(1.0)
        assert transport.protocol.received == b""  # type: ignore[attr-defined]
    finally:
        transport.stopReading()
        transport.stopWriting()
        real._poller.close()
        theirs.close()
        ours.close()

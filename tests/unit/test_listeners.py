"""Listener and upstream endpoint strings: parsing, the 0660 default, stale sockets."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP6ServerEndpoint, UNIXClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.selectreactor import SelectReactor
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.python.systemd import ListenFDs

from dockgate.service.listeners import (
    CannotListen,
    DelegatedListenerSpec,
    InheritedUnixListener,
    UnixListener,
    UnixListenerSpec,
    UpstreamSpec,
    listener_endpoint,
    parse_description,
    parse_listener,
    parse_upstream,
    upstream_endpoint,
)


def result_of(d: Deferred[Any]) -> Any:
    """The result a fired Deferred holds; raise what a failed one holds."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def memory_reactor() -> Any:
    return MemoryReactorClock()  # type: ignore[no-untyped-call]


class RecordingReactor(MemoryReactorClock):
    """A memory reactor that also records the umask in force during each listenUNIX."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.umasks: list[int] = []

    def listenUNIX(self, address: Any, factory: Any, backlog: Any = 50, mode: Any = 0o666,
                   wantPID: Any = 0) -> Any:
        umask = os.umask(0)
        os.umask(umask)
        self.umasks.append(umask)
        return super().listenUNIX(address, factory, backlog, mode, wantPID)  # type: ignore[no-untyped-call]


FACTORY = Factory.forProtocol(Protocol)


# --- parse_description -------------------------------------------------------


def test_description_fields() -> None:
    """Fields split on colons; a field with '=' is an option, split at its first '='."""
    assert parse_description("UNIX:/a/b:mode=660:x=y=z") == (
        "unix", ["/a/b"], {"mode": "660", "x": "y=z"}
    )


def test_description_escapes() -> None:
    """A backslash makes the next character literal, so paths may hold colons."""
    assert parse_description(r"unix:/a\:b\\c") == ("unix", ["/a:b\\c"], {})


def test_description_repeated_option() -> None:
    """An option given twice is an error, not last-wins."""
    with pytest.raises(ValueError, match="more than once"):
        parse_description("unix:/a:mode=600:mode=666")


def test_description_lone_backslash() -> None:
    """A trailing backslash is an error."""
    with pytest.raises(ValueError, match="backslash"):
        parse_description("unix:/a\\")


@pytest.mark.parametrize("text", ["", ":/a", "mode=1:/a"])
def test_description_needs_type(text: str) -> None:
    """A string must start with a type."""
    with pytest.raises(ValueError, match="type"):
        parse_description(text)


# --- parse_listener ----------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["unix:/run/d.sock", "unix:path=/run/d.sock", "unix:address=/run/d.sock"]
)
def test_unix_forms(text: str) -> None:
    """unix:/p, unix:path=/p and Twisted's unix:address=/p mean the same listener."""
    assert parse_listener(text) == UnixListenerSpec("/run/d.sock")


def test_unix_default_mode() -> None:
    """Without mode=, a unix listener is 0660, never Twisted's 0666."""
    spec = parse_listener("unix:/run/d.sock")
    assert isinstance(spec, UnixListenerSpec)
    assert spec.mode == 0o660


def test_unix_options() -> None:
    """mode (octal), backlog, lockfile and group are read."""
    assert parse_listener("unix:/s:mode=600:backlog=7:lockfile=1:group=docker") == (
        UnixListenerSpec("/s", mode=0o600, backlog=7, lockfile=True, group="docker")
    )


@pytest.mark.parametrize(
    "text",
    [
        "unix:/s:mode=8",
        "unix:/s:mode=1777",
        "unix:/s:mode=-1",
        "unix:/s:wantPID=1",
        "unix:/s:lockfile=yes",
        "unix:",
        "unix:mode=600",
        "unix:/a:path=/b",
    ],
)
def test_unix_rejects(text: str) -> None:
    """Bad modes, unknown options and zero or two paths are errors."""
    with pytest.raises(ValueError):
        parse_listener(text)


def test_tcp_defaults_to_loopback() -> None:
    """A tcp: listener without interface= binds loopback, not every interface."""
    assert parse_listener("tcp:2375") == DelegatedListenerSpec("tcp:2375:interface=127.0.0.1")
    assert parse_listener("tcp:2375:interface=0.0.0.0") == DelegatedListenerSpec(
        "tcp:2375:interface=0.0.0.0"
    )


def test_tcp6_loopback_is_escaped() -> None:
    """The injected IPv6 loopback survives Twisted's parser (its colons are escaped)."""
    endpoint = listener_endpoint(memory_reactor(), parse_listener("tcp6:2375"))
    assert isinstance(endpoint, TCP6ServerEndpoint)
    assert endpoint._interface == "::1"


def test_systemd_passes_through() -> None:
    """systemd: strings go to Twisted unchanged (systemd owns the socket's mode)."""
    text = "systemd:domain=UNIX:name=dockgate"
    assert parse_listener(text) == DelegatedListenerSpec(text)


@pytest.mark.parametrize("text", ["ssl:443", "haproxy:unix:/s", "npipe:x"])
def test_other_listener_types_rejected(text: str) -> None:
    """Types dockgate does not vet (ssl:, haproxy:, ...) are refused."""
    with pytest.raises(ValueError, match="not supported"):
        parse_listener(text)


# --- UnixListener --------------------------------------------------------------


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "d.sock")


@pytest.fixture
def real_reactor() -> Iterator[SelectReactor]:
    """A private, never-run reactor: ports bind for real; closing them needs a turn."""
    reactor = SelectReactor()
    yield reactor
    reactor.runUntilCurrent()


def listen(reactor: Any, spec: UnixListenerSpec) -> Any:
    return result_of(UnixListener(reactor, spec).listen(FACTORY))


def test_binds_under_restrictive_umask(sock_path: str) -> None:
    """The socket is bound with the configured mode under umask 0177, and the
    umask is restored afterwards."""
    reactor = RecordingReactor()
    before = os.umask(0o022)
    try:
        listen(reactor, UnixListenerSpec(sock_path))
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
    [(_, _, _, mode, want_pid)] = reactor.unixServers
    assert mode == 0o660
    assert reactor.umasks == [0o177]
    assert not want_pid


@pytest.mark.parametrize(("options", "mode"), [("", 0o660), (":mode=600", 0o600)])
def test_real_socket_mode(
    real_reactor: SelectReactor, sock_path: str, options: str, mode: int
) -> None:
    """A real socket from a default spec has mode 0660; mode=600 gives 0600; closing
    the port removes the file."""
    spec = parse_listener(f"unix:{sock_path}{options}")
    assert isinstance(spec, UnixListenerSpec)
    port = listen(real_reactor, spec)
    st = os.stat(sock_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == mode
    port.stopListening()
    real_reactor.runUntilCurrent()
    assert not os.path.exists(sock_path)


def test_group(real_reactor: SelectReactor, sock_path: str) -> None:
    """group= hands the socket to that group (here the process's own, by number)."""
    port = listen(real_reactor, UnixListenerSpec(sock_path, group=str(os.getgid())))
    assert os.stat(sock_path).st_gid == os.getgid()
    port.stopListening()


def test_unknown_group_closes_port(real_reactor: SelectReactor, sock_path: str) -> None:
    """An unknown group fails the listen and closes the port that was opened."""
    with pytest.raises(CannotListen, match="no such group"):
        listen(real_reactor, UnixListenerSpec(sock_path, group="no-such-group-dg"))
    real_reactor.runUntilCurrent()
    assert not os.path.exists(sock_path)


def test_stale_socket_removed(sock_path: str) -> None:
    """A socket file nobody listens on is removed before binding."""
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)
    dead.close()
    reactor = RecordingReactor()
    listen(reactor, UnixListenerSpec(sock_path))
    assert not os.path.exists(sock_path)
    assert len(reactor.unixServers) == 1


def test_live_socket_kept(sock_path: str) -> None:
    """A socket something listens on is left alone, and the listen fails."""
    reactor = RecordingReactor()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(sock_path)
        live.listen(1)
        with pytest.raises(CannotListen, match="another process"):
            listen(reactor, UnixListenerSpec(sock_path))
        assert os.path.exists(sock_path)
    assert reactor.unixServers == []


def test_non_socket_kept(sock_path: str) -> None:
    """A regular file at the path is never removed."""
    Path(sock_path).write_text("data")
    with pytest.raises(CannotListen, match="not a socket"):
        listen(RecordingReactor(), UnixListenerSpec(sock_path))
    assert Path(sock_path).read_text() == "data"


# --- upstream ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["unix:/var/run/docker.sock", "unix:path=/var/run/docker.sock"])
def test_upstream_unix_forms(text: str) -> None:
    """unix:/p and unix:path=/p name the same upstream."""
    assert parse_upstream(text) == UpstreamSpec("unix", "/var/run/docker.sock")


@pytest.mark.parametrize(
    "text",
    ["tcp:docker.internal:2375", "tcp:host=docker.internal:port=2375",
     "tcp:docker.internal:port=2375"],
)
def test_upstream_tcp_forms(text: str) -> None:
    """tcp:host:port, with the host= and port= spellings."""
    assert parse_upstream(text) == UpstreamSpec("tcp", "docker.internal", 2375)


def test_upstream_timeout() -> None:
    """A timeout= in the string is read as seconds."""
    assert parse_upstream("tcp:h:1:timeout=2.5").timeout == 2.5


@pytest.mark.parametrize(
    "text",
    ["tcp:h", "tcp:h:0", "tcp:h:70000", "tcp:h:x", "unix:/s:timeout=0", "unix:/s:bogus=1",
     "ssl:h:1", "unix:"],
)
def test_upstream_rejects(text: str) -> None:
    """Missing parts, bad ports and timeouts, unknown options and types are errors."""
    with pytest.raises(ValueError):
        parse_upstream(text)


@pytest.mark.parametrize(("text", "timeout"), [("unix:/d.sock", 7.0),
                                               ("unix:/d.sock:timeout=2", 2.0)])
def test_upstream_unix_connect_timeout(text: str, timeout: float) -> None:
    """The unix upstream connects to its path with the configured connect timeout,
    unless the string sets its own."""
    reactor = memory_reactor()
    endpoint = upstream_endpoint(reactor, parse_upstream(text), 7.0)
    assert isinstance(endpoint, UNIXClientEndpoint)
    endpoint.connect(FACTORY)  # type: ignore[no-untyped-call]
    [(path, _, used_timeout, _)] = reactor.unixClients
    assert (path, used_timeout) == ("/d.sock", timeout)


def test_upstream_tcp_connect_timeout() -> None:
    """The tcp upstream uses a HostnameEndpoint with the connect timeout."""
    reactor = memory_reactor()
    endpoint = upstream_endpoint(reactor, parse_upstream("tcp:127.0.0.1:2375"), 4.0)
    assert isinstance(endpoint, HostnameEndpoint)
    endpoint.connect(FACTORY)
    reactor.advance(0.1)
    [(host, port, _, timeout, _)] = reactor.tcpClients
    assert (host, port, timeout) == ("127.0.0.1", 2375, 4.0)


# --- inherited (systemd) unix sockets ------------------------------------------------


def bound_socket(path: str, mode: int) -> int:
    """A listening unix socket at ``path`` with ``mode``, as systemd passes it: a bare fd."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen(4)
        return os.dup(sock.fileno())


def test_inherited_socket_keeps_mode_and_file(
    real_reactor: SelectReactor, sock_path: str
) -> None:
    """An inherited unix socket keeps systemd's mode (not Twisted's 0666) and its file
    survives the port closing, for the next start to adopt."""
    fd = bound_socket(sock_path, 0o660)
    port = result_of(InheritedUnixListener(real_reactor, fd).listen(FACTORY))
    assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(sock_path)
    port.stopListening()
    real_reactor.runUntilCurrent()
    assert stat.S_ISSOCK(os.stat(sock_path).st_mode)
    with pytest.raises(OSError):
        os.fstat(fd)


def test_systemd_unix_listener_is_adopted_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """A systemd: listener naming a UNIX socket is built as an InheritedUnixListener on the
    descriptor systemd passed; INET ones stay Twisted's adopted endpoint."""
    passed = ListenFDs([3, 4], ("dockgate", "web"))
    monkeypatch.setattr(endpoints._SystemdParser, "_sddaemon", passed)
    unix_endpoint = listener_endpoint(
        memory_reactor(), parse_listener("systemd:domain=UNIX:name=dockgate")
    )
    assert isinstance(unix_endpoint, InheritedUnixListener)
    assert unix_endpoint.fileno == 3
    inet_endpoint = listener_endpoint(
        memory_reactor(), parse_listener("systemd:domain=INET:name=web")
    )
    assert isinstance(inet_endpoint, endpoints.AdoptedStreamServerEndpoint)

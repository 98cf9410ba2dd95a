"""Listener and upstream endpoint descriptions: parsing and building.

dockgate takes Twisted-style endpoint strings (``unix:/path:mode=660``,
``tcp:2375:interface=127.0.0.1``) but does not hand listener strings straight
to ``serverFromString``, for three reasons:

* Twisted's ``unix:`` server parser defaults to mode 0666, which would let
  every local user drive the Docker daemon through dockgate.  dockgate's
  default is 0660, and a socket is bound under a restrictive umask so it is
  never more open than that, not even between ``bind`` and ``chmod``.
* Twisted's ``tcp:`` server parser binds every interface when none is named.
  An unauthenticated Docker API on the network is a root shell for anyone who
  reaches it, so dockgate binds loopback unless an interface is named.
* Twisted spells the unix path ``address=`` on the server side and ``path=``
  on the client side; dockgate accepts ``path=`` on both.
* Twisted's unix port ``chmod``s an inherited (``systemd:``) unix socket to
  0666 when it starts listening and unlinks its file when it stops, undoing
  the unit's ``SocketMode=0660`` and leaving a restarted service with a
  socket nobody can reach by path.  dockgate adopts such sockets as they are.

* ``tls:`` listeners require client certificates signed by the given CA
  (mutual TLS, TLS 1.2 or newer), as ``dockerd --tlsverify`` does: the
  certificate is the caller's identity for tenants (``dockgate.peer``).

Parsing is pure (it returns frozen specs and raises ``ValueError``), so option
parsing can reject a bad string before anything is bound; building endpoints
from specs is the only part that needs a reactor.
"""

from __future__ import annotations

import errno
import grp
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass
from typing import Literal, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL, crypto
from twisted.internet import defer, ssl, tcp, unix
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    HostnameEndpoint,
    UNIXClientEndpoint,
    serverFromString,
)
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from zope.interface import implementer

from dockgate.tlshalfclose import HalfCloseTLSEndpoint

__all__ = [
    "DEFAULT_UNIX_MODE",
    "OPEN_TCP",
    "CannotListen",
    "DelegatedListenerSpec",
    "InheritedUnixListener",
    "TLSListenerSpec",
    "UnixListener",
    "UnixListenerSpec",
    "UpstreamSpec",
    "describe_bind_error",
    "listener_endpoint",
    "parse_description",
    "parse_listener",
    "parse_upstream",
    "plain_tcp_loopback",
    "tls_options",
    "upstream_endpoint",
]

log = Logger()

DEFAULT_UNIX_MODE = 0o660
"""Owner and group may connect; nobody else.  Docker's own socket is 0660 too."""

_BIND_UMASK = 0o177
"""Umask held while binding, so the socket starts at 0600 and only widens to its mode."""

_LOOPBACK = {"tcp": "127.0.0.1", "tcp6": "::1"}


class CannotListen(Exception):
    """A unix listener cannot be set up: the path is taken, or the group is unknown."""


class _Port(Protocol):
    def stopListening(self) -> object: ...


class _UnixReactor(Protocol):
    """The part of C{IReactorUNIX} dockgate uses, typed (the zope interface is not, to mypy)."""

    def listenUNIX(
        self, address: str, factory: IProtocolFactory, backlog: int, mode: int, wantPID: bool
    ) -> _Port: ...


def parse_description(text: str) -> tuple[str, list[str], dict[str, str]]:
    """Split an endpoint string into its type, positional fields and options.

    The syntax is Twisted's: fields are separated by ``:``, a field with ``=``
    is an option (only its first ``=`` separates), and a backslash makes the
    next character literal.  Unlike Twisted, an option given twice is an
    error rather than last-wins, so a string cannot say two things.

    Raises:
        ValueError: the string is empty, ends in a backslash, or repeats an option.
    """
    fields: list[list[str]] = [[""]]
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise ValueError(f"endpoint {text!r} ends with a lone backslash")
            fields[-1][-1] += escaped
        elif ch == ":":
            fields.append([""])
        elif ch == "=" and len(fields[-1]) == 1:
            fields[-1].append("")
        else:
            fields[-1][-1] += ch
    kind, *rest = fields
    if len(kind) != 1 or not kind[0]:
        raise ValueError(f"endpoint {text!r} does not start with a type such as unix: or tcp:")
    positional: list[str] = []
    options: dict[str, str] = {}
    for field in rest:
        if len(field) == 1:
            positional.append(field[0])
        elif field[0] in options:
            raise ValueError(f"endpoint {text!r} gives {field[0]}= more than once")
        else:
            options[field[0]] = field[1]
    return kind[0].lower(), positional, options


def _quote(value: str) -> str:
    """Escape a value for use inside an endpoint string."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _one_path(text: str, positional: list[str], options: dict[str, str]) -> str:
    """Return the unix path, given either positionally or as ``path=``/``address=``."""
    given = positional + [options.pop(k) for k in ("path", "address") if k in options]
    if len(given) != 1 or not given[0]:
        raise ValueError(f"endpoint {text!r} must name exactly one socket path")
    return given[0]


def _reject_unknown(text: str, options: dict[str, str]) -> None:
    """Fail on options dockgate does not understand instead of ignoring them."""
    if options:
        raise ValueError(f"endpoint {text!r}: unknown option(s) {', '.join(sorted(options))}")


def _parse_flag(text: str, name: str, value: str) -> bool:
    if value not in ("0", "1"):
        raise ValueError(f"endpoint {text!r}: {name} must be 0 or 1")
    return value == "1"


def _parse_number(text: str, name: str, value: str, base: int = 10) -> int:
    try:
        number = int(value, base)
    except ValueError:
        raise ValueError(f"endpoint {text!r}: {name}={value!r} is not a number") from None
    if number < 0:
        raise ValueError(f"endpoint {text!r}: {name} must not be negative")
    return number


def _parse_timeout(text: str, value: str) -> float:
    try:
        timeout = float(value)
    except ValueError:
        raise ValueError(f"endpoint {text!r}: timeout={value!r} is not a number") from None
    if not timeout > 0:
        raise ValueError(f"endpoint {text!r}: timeout must be positive")
    return timeout


@dataclass(frozen=True, slots=True)
class UnixListenerSpec:
    """A unix socket listener.

    Attributes:
        path: filesystem path of the socket.
        mode: permission bits set on the socket (0660 unless configured).
        backlog: listen queue length.
        lockfile: also take Twisted's ``<path>.lock`` pid lock.
        group: group name or number the socket is handed to, or None to keep
            the process's group.
    """

    path: str
    mode: int = DEFAULT_UNIX_MODE
    backlog: int = 50
    lockfile: bool = False
    group: str | None = None


@dataclass(frozen=True, slots=True)
class DelegatedListenerSpec:
    """A listener Twisted's ``serverFromString`` builds, from a vetted description."""

    description: str


@dataclass(frozen=True, slots=True)
class TLSListenerSpec:
    """A TCP listener with mutual TLS.

    Attributes:
        port: TCP port.
        interface: address to bind (loopback unless configured).
        cert: PEM file with the server certificate (then any intermediates).
        key: PEM file with the server's private key (unencrypted).
        ca: PEM file with the CA certificate(s) client certificates must chain to.
        backlog: listen queue length.
    """

    port: int
    interface: str
    cert: str
    key: str
    ca: str
    backlog: int = 50


ListenerSpec = UnixListenerSpec | DelegatedListenerSpec | TLSListenerSpec


def _parse_tls(text: str, positional: list[str], options: dict[str, str]) -> TLSListenerSpec:
    given = positional + ([options.pop("port")] if "port" in options else [])
    if len(given) != 1 or not given[0]:
        raise ValueError(f"endpoint {text!r} must name exactly one port")
    port = _parse_number(text, "port", given[0])
    if not 0 < port < 65536:
        raise ValueError(f"endpoint {text!r}: port must be between 1 and 65535")
    files: dict[str, str] = {}
    for name in ("cert", "key", "ca"):
        value = options.pop(name, "")
        if not value:
            raise ValueError(f"endpoint {text!r}: tls: needs {name}=FILE "
                             "(server certificate, its key, and the clients' CA)")
        files[name] = value
    spec = TLSListenerSpec(
        port=port,
        interface=options.pop("interface", "") or _LOOPBACK["tcp"],
        backlog=_parse_number(text, "backlog", options.pop("backlog", "50")),
        **files,
    )
    _reject_unknown(text, options)
    return spec


def _check_tcp(text: str, positional: list[str], options: dict[str, str]) -> None:
    """What Twisted's ``tcp:`` parser would fail on only when binding, checked now."""
    given = positional + ([options["port"]] if "port" in options else [])
    if len(given) != 1 or not given[0]:
        raise ValueError(f"endpoint {text!r} must name exactly one port, as in tcp:2375")
    port = _parse_number(text, "port", given[0])
    if not 0 < port < 65536:
        raise ValueError(f"endpoint {text!r}: port must be between 1 and 65535")
    _parse_number(text, "backlog", options.get("backlog", "50"))
    _reject_unknown(text, {k: v for k, v in options.items()
                           if k not in ("port", "interface", "backlog")})


OPEN_TCP = ("plain TCP on an interface other than loopback lets anyone who can reach it "
            "drive the Docker daemon; use tls:, a unix socket or loopback")
"""Why a plain TCP listener off loopback is refused unless the operator says they mean it."""


def plain_tcp_loopback(spec: DelegatedListenerSpec) -> bool | None:
    """For a ``tcp:``/``tcp6:`` listener, whether it binds loopback only; None for others."""
    kind, _, options = parse_description(spec.description)
    if kind not in _LOOPBACK:
        return None
    interface = options.get("interface", "")
    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


def parse_listener(text: str) -> ListenerSpec:
    """Parse a ``--listen`` string.

    Accepted types are ``unix:`` (``unix:/path`` or ``unix:path=/path``, with
    ``mode``, ``backlog``, ``lockfile`` and ``group`` options), ``tcp:`` and
    ``tcp6:`` (loopback unless ``interface=`` is given), ``tls:`` (``tls:PORT``
    with ``cert``, ``key`` and ``ca`` files, all required, and ``interface``
    (loopback by default) and ``backlog``) and ``systemd:`` (socket
    activation; systemd sets the socket's mode and group).

    Raises:
        ValueError: with a message fit for the command line.
    """
    kind, positional, options = parse_description(text)
    if kind == "unix":
        path = _one_path(text, positional, options)
        spec = UnixListenerSpec(
            path=path,
            mode=_parse_number(text, "mode", options.pop("mode", "660"), 8),
            backlog=_parse_number(text, "backlog", options.pop("backlog", "50")),
            lockfile=_parse_flag(text, "lockfile", options.pop("lockfile", "0")),
            group=options.pop("group", None) or None,
        )
        _reject_unknown(text, options)
        if spec.mode > 0o777:
            raise ValueError(f"endpoint {text!r}: mode must be at most 777")
        return spec
    if kind in _LOOPBACK:
        _check_tcp(text, positional, options)
        if "interface" not in options:
            text = f"{text}:interface={_quote(_LOOPBACK[kind])}"
        return DelegatedListenerSpec(text)
    if kind == "tls":
        return _parse_tls(text, positional, options)
    if kind == "systemd":
        return DelegatedListenerSpec(text)
    raise ValueError(f"endpoint {text!r}: listener type {kind!r} is not supported "
                     "(use unix:, tcp:, tcp6:, tls: or systemd:)")


def _clear_stale_socket(path: str) -> None:
    """Remove a socket file left by a dead process, and only that.

    A connection attempt tells a live listener (refuse to start: two proxies
    on one path would each think they own it) from a leftover file (remove
    it).  Anything that is not a socket is left alone.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise CannotListen(f"{path} exists and is not a socket; move it away or choose another "
                           "path (dockgate removes only stale sockets)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        log.info("Removed stale socket {path}", path=path)
        return
    except FileNotFoundError:
        return
    except OSError as e:
        raise CannotListen(f"cannot tell whether {path} is in use: {e}") from e
    finally:
        probe.close()
    raise CannotListen(f"another process is listening on {path}; stop it or choose another path")


def describe_bind_error(error: BaseException) -> str:
    """One line for why a listener could not bind, with what to do about it."""
    if isinstance(error, CannotListen):
        return str(error)
    if isinstance(error, CannotListenError):
        where = f"{error.interface or '*'}:{error.port}"
        why = getattr(error.socketError, "strerror", None) or str(error.socketError)
        if getattr(error.socketError, "errno", None) == errno.EADDRINUSE:
            return f"{where} is already in use; stop what listens there or choose another port"
        if getattr(error.socketError, "errno", None) == errno.EACCES:
            return f"cannot bind {where}: {why}; ports below 1024 need privileges"
        return f"cannot bind {where}: {why}"
    if isinstance(error, OSError):
        return f"{error.filename + ': ' if error.filename else ''}{error.strerror or error}"
    return f"{type(error).__name__}: {error}"


def _group_id(group: str) -> int:
    """Resolve a group name or number."""
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise CannotListen(f"no such group {group!r}") from None


@implementer(IStreamServerEndpoint)
class _ImmediateListener:
    """An endpoint whose ``listen`` binds (or fails) before it returns."""

    def listen(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        """Listen now; see L{IStreamServerEndpoint.listen}."""
        return defer.execute(self._listen, protocolFactory)

    def _listen(self, factory: IProtocolFactory) -> IListeningPort:
        raise NotImplementedError


class UnixListener(_ImmediateListener):
    """A unix socket server endpoint whose socket is never more open than its mode.

    Twisted binds first and ``chmod``s after; binding under a 0177 umask makes
    the socket 0600 in that window.  A group handover, if configured, happens
    before the first ``accept``, and a failure closes the port again.
    """

    def __init__(self, reactor: _UnixReactor, spec: UnixListenerSpec) -> None:
        self._reactor = reactor
        self.spec = spec

    def _listen(self, factory: IProtocolFactory) -> IListeningPort:
        spec = self.spec
        _clear_stale_socket(spec.path)
        previous = os.umask(_BIND_UMASK)
        try:
            port = self._reactor.listenUNIX(
                spec.path, factory, backlog=spec.backlog, mode=spec.mode, wantPID=spec.lockfile
            )
        finally:
            os.umask(previous)
        if spec.group is not None:
            try:
                os.chown(spec.path, -1, _group_id(spec.group))
            except BaseException:
                port.stopListening()
                raise
        return IListeningPort(port)


class _InheritedUnixPort(unix.Port):
    """A listening unix socket whose file belongs to whoever passed it (systemd).

    The socket keeps the mode it was given (``SocketMode=``) instead of the
    port's default 0666, and its file stays when the port closes, so that the
    next start of the service adopts a socket clients can still reach.
    """

    def startListening(self) -> None:
        path = self._bindPath
        if path[:1] not in (b"\0", "\0"):  # not Linux's abstract namespace: a file
            self.mode = stat.S_IMODE(os.stat(path).st_mode)
        super().startListening()  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: object) -> None:
        tcp.Port.connectionLost(self, reason)  # type: ignore[no-untyped-call]


class InheritedUnixListener(_ImmediateListener):
    """Listens on a unix socket inherited as file descriptor ``fileno``, as it is."""

    def __init__(self, reactor: object, fileno: int) -> None:
        self._reactor = reactor
        self.fileno = fileno

    def _listen(self, factory: IProtocolFactory) -> IListeningPort:
        os.set_blocking(self.fileno, False)
        port = _InheritedUnixPort._fromListeningDescriptor(  # type: ignore[no-untyped-call]
            self._reactor, self.fileno, factory
        )
        port.startListening()
        os.close(self.fileno)  # the port holds its own duplicate
        return IListeningPort(port)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CannotListen(f"cannot read TLS {what} {path}: {e.strerror or e}") from None


def tls_options(spec: TLSListenerSpec) -> ssl.CertificateOptions:
    """The server TLS options for ``spec``: its certificate and key, client
    certificates required and verified against ``spec.ca``, TLS 1.2 or newer.

    Raises:
        CannotListen: a file is unreadable or not PEM, or the key does not
            match the certificate.
    """
    try:
        chain = x509.load_pem_x509_certificates(_read(spec.cert, "certificate"))
        key = serialization.load_pem_private_key(_read(spec.key, "key"), password=None)
        cas = x509.load_pem_x509_certificates(_read(spec.ca, "CA"))
    except (ValueError, TypeError) as e:
        raise CannotListen(f"TLS listener on port {spec.port}: {e}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise CannotListen(f"TLS listener on port {spec.port}: {spec.key} must hold an RSA "
                           "or EC private key")
    if not chain or not cas:
        raise CannotListen(f"TLS listener on port {spec.port}: no certificate in "
                           f"{spec.cert if not chain else spec.ca}")
    try:
        options = ssl.CertificateOptions(
            privateKey=crypto.PKey.from_cryptography_key(key),  # type: ignore[arg-type]
            certificate=crypto.X509.from_cryptography(chain[0]),
            extraCertChain=[crypto.X509.from_cryptography(c) for c in chain[1:]],
            verify=True,
            requireCertificate=True,
            caCerts=[crypto.X509.from_cryptography(c) for c in cas],
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
            # Clients offer ALPN (the docker CLI on attach and exec, docker-py on
            # everything); without a protocol of our own to select, OpenSSL
            # here fails those handshakes with internal_error.
            acceptableProtocols=[b"http/1.1"],
        )
        options.getContext()  # loads and cross-checks key and certificate now
    except (crypto.Error, SSL.Error, ValueError, TypeError) as e:
        raise CannotListen(f"TLS listener on port {spec.port}: certificate and key do not "
                           f"work together: {e}") from None
    return options


def listener_endpoint(reactor: _UnixReactor, spec: ListenerSpec) -> IStreamServerEndpoint:
    """Build the server endpoint for a parsed listener."""
    if isinstance(spec, UnixListenerSpec):
        return IStreamServerEndpoint(UnixListener(reactor, spec))
    if isinstance(spec, TLSListenerSpec):
        # Not SSL4ServerEndpoint: its TLS layer ends the whole connection on
        # the client's close_notify, which loses output after stdin EOF.
        tls = HalfCloseTLSEndpoint(
            reactor, spec.port, tls_options(spec), backlog=spec.backlog,
            interface=spec.interface,
        )
        return IStreamServerEndpoint(tls)
    endpoint = serverFromString(reactor, spec.description)  # type: ignore[no-untyped-call]
    if isinstance(endpoint, AdoptedStreamServerEndpoint) and (
        endpoint.addressFamily == socket.AF_UNIX
    ):
        return IStreamServerEndpoint(InheritedUnixListener(reactor, endpoint.fileno))
    return IStreamServerEndpoint(endpoint)


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    """Where the Docker daemon listens.

    Attributes:
        kind: ``unix`` or ``tcp``.
        address: the socket path, or the host name or address.
        port: the TCP port (0 for unix).
        timeout: connect timeout from the string, or None to use the
            configured connect timeout.
    """

    kind: Literal["unix", "tcp"]
    address: str
    port: int = 0
    timeout: float | None = None


def parse_upstream(text: str) -> UpstreamSpec:
    """Parse an ``--upstream`` string: ``unix:/path``, ``unix:path=/path`` or ``tcp:host:port``.

    Raises:
        ValueError: with a message fit for the command line.
    """
    kind, positional, options = parse_description(text)
    timeout = _parse_timeout(text, options.pop("timeout")) if "timeout" in options else None
    if kind == "unix":
        path = _one_path(text, positional, options)
        _reject_unknown(text, options)
        return UpstreamSpec("unix", path, timeout=timeout)
    if kind == "tcp":
        host = [options.pop("host")] if "host" in options else []
        port = [options.pop("port")] if "port" in options else []
        given = host + positional + port
        _reject_unknown(text, options)
        if len(given) != 2 or not given[0]:
            raise ValueError(f"endpoint {text!r} must name a host and a port")
        number = _parse_number(text, "port", given[1])
        if not 0 < number < 65536:
            raise ValueError(f"endpoint {text!r}: port must be between 1 and 65535")
        return UpstreamSpec("tcp", given[0], number, timeout=timeout)
    raise ValueError(f"endpoint {text!r}: upstream type {kind!r} is not supported "
                     "(use unix: or tcp:)")


def upstream_endpoint(
    reactor: _UnixReactor, spec: UpstreamSpec, connect_timeout: float
) -> IStreamClientEndpoint:
    """Build the client endpoint for the daemon, with a connect timeout.

    ``tcp:`` uses a ``HostnameEndpoint`` so that host names and IPv6
    addresses work, which Twisted's ``tcp:`` client string (IPv4 only) does not.
    """
    timeout = spec.timeout if spec.timeout is not None else connect_timeout
    if spec.kind == "unix":
        return IStreamClientEndpoint(
            UNIXClientEndpoint(reactor, spec.address, timeout=timeout)  # type: ignore[no-untyped-call]
        )
    endpoint = HostnameEndpoint(reactor, spec.address, spec.port, timeout=timeout)
    return IStreamClientEndpoint(endpoint)

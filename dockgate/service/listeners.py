"""Listener and upstream endpoints, built from the specs ``dockgate.service.listener_spec`` parses.

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
  certificate is the caller's identity for tenants (``dockgate.proxy.peer``).

Parsing is pure (it returns frozen specs and raises ``ValueError``) and lives
in ``dockgate.service.listener_spec``, so option parsing can reject a bad string
before anything is bound and without loading Twisted; building endpoints
from specs, here, is the only part that needs a reactor.  The parsing names
are re-exported here for the callers that build too.
"""

from __future__ import annotations

import errno
import grp
import os
import socket
import stat
from typing import Protocol

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

from dockgate.service.listener_spec import (
    DEFAULT_UNIX_MODE,
    OPEN_TCP,
    DelegatedListenerSpec,
    ListenerSpec,
    TLSListenerSpec,
    UnixListenerSpec,
    UpstreamSpec,
    parse_description,
    parse_listener,
    parse_upstream,
    plain_tcp_loopback,
)
from dockgate.service.tlshalfclose import HalfCloseTLSEndpoint

__all__ = [
    "DEFAULT_UNIX_MODE",
    "OPEN_TCP",
    "CannotListen",
    "DelegatedListenerSpec",
    "InheritedUnixListener",
    "ListenerSpec",
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

_BIND_UMASK = 0o177
"""Umask held while binding, so the socket starts at 0600 and only widens to its mode."""

class CannotListen(Exception):
    """A unix listener cannot be set up: the path is taken, or the group is unknown."""


class _Port(Protocol):
    def stopListening(self) -> object: ...


class _UnixReactor(Protocol):
    """The part of C{IReactorUNIX} dockgate uses, typed (the zope interface is not, to mypy)."""

    def listenUNIX(
        self, address: str, factory: IProtocolFactory, backlog: int, mode: int, wantPID: bool
    ) -> _Port: ...


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

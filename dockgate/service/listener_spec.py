"""Listener and upstream endpoint descriptions, parsed into frozen specs.

dockgate takes Twisted-style endpoint strings (``unix:/path:mode=660``,
``tcp:2375:interface=127.0.0.1``); ``dockgate.service.listeners`` says why it does not
hand them straight to Twisted and builds the endpoints.  Parsing lives here,
apart from endpoint building, because it is pure: option and config-file
parsing (``dockgate.service.config``) reject a bad string before anything is bound,
without loading Twisted or pyOpenSSL (``tests/unit/test_core_fence.py``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

DEFAULT_UNIX_MODE = 0o660
"""Owner and group may connect; nobody else.  Docker's own socket is 0660 too."""

_LOOPBACK = {"tcp": "127.0.0.1", "tcp6": "::1"}


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


def parse_admin_listener(text: str) -> ListenerSpec:
    """Parse ``--admin-listen``: a unix socket, or TCP on a loopback address only.

    Raises:
        ValueError: anything else (TLS, a non-loopback interface).
    """
    spec = parse_listener(text)
    if isinstance(spec, UnixListenerSpec):
        return spec
    if isinstance(spec, DelegatedListenerSpec):
        if plain_tcp_loopback(spec) is not False:  # loopback, or systemd's
            return spec
        interface = parse_description(spec.description)[2].get("interface", "")
        raise ValueError(f"admin endpoint {text!r} must be on loopback or a unix socket "
                         f"(interface {interface!r} is not loopback)")
    raise ValueError(f"admin endpoint {text!r} must be unix: or tcp: on loopback")

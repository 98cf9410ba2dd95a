"""Registries as a control: which registry hosts a client may make the daemon contact.

Several requests make dockerd, as root and from the host's network, open a
connection to a host the client names: ``GET /distribution/{name}/json``,
pulls (``POST /images/create?fromImage=``), pushes, plugin pulls, upgrades,
pushes and privilege queries, image search, ``POST /auth``, a build's
``FROM`` and ``cachefrom``, and two plain URL fetches: a build's ``remote``
(git or HTTP) and an import's ``fromSrc``.  Left open, a read-only consumer can make the
daemon probe any loopback port (it tries TLS, then plain HTTP) or any service
on the host's private networks.

The registry is read from a reference exactly as the daemon reads it
(``distribution/reference.ParseNormalizedNamed``): the first ``/``-separated
component is a registry when it contains ``.`` or ``:`` or is ``localhost``;
otherwise the registry is ``docker.io``.  Image search splits its term the
same way (moby ``registry.splitReposSearchTerm``), and ``/auth`` strips a
scheme and path from ``serveraddress`` (``registry.ConvertToHostname``).

Names cannot be pinned: dockgate does not resolve them, because the daemon
resolves them again when it connects, and a name may answer differently then
(DNS rebinding).  So the control is an allowlist of hosts, and:

* a host that is an address (any spelling a resolver might take for one:
  dotted quads, ``127.1``, ``0x7f.1``, decimal integers, IPv6 literals),
  ``localhost`` or a name under ``.localhost`` is a *local* host: it passes
  only when an entry names it exactly (no glob), whatever address it is;
* a name passes when an entry names it exactly or a glob entry matches it;
  a glob trusts every name under it, so list zones you control;
* a host the reference grammar would not accept is refused.

URLs are read as the daemon reads them (moby ``builder/remotecontext/detect.go``
and ``urlutil``; ``postImagesCreate`` for ``fromSrc``, which takes a value
without a scheme as ``http://`` plus the value); an authority Go and Python
could split differently (userinfo, backslashes, percent signs) is refused.

``registry_allowed(policy, ref)`` answers the same question for a reference
found elsewhere (a Dockerfile's ``FROM``), for callers outside the control.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from dockgate.model import CanonicalRequest, Peer
from dockgate.policy import spelling

DEFAULT_ALLOW = ("docker.io",)
"""Registries allowed when a ``registries`` rule lists none."""

_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$")
"""``reference.DomainRegexp``: dot-separated labels or a bracketed IPv6 address, then a port."""
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)$")


def split_host(domain: str) -> tuple[str, str | None]:
    """``host[:port]`` → (lower-case host without brackets, port or None)."""
    host, port = domain, None
    if host.startswith("["):
        end = host.find("]")
        host, rest = host[1:end], host[end + 1 :]
        port = rest[1:] if rest.startswith(":") else None
    elif ":" in host:
        host, port = host.rsplit(":", 1)
    return host.lower(), port


def local_kind(host: str) -> str | None:
    """Why ``host`` (lower case, no port) is a local host, or None for a DNS name.

    Anything a resolver could read as an address counts as an address, since
    inet_aton-style spellings (``127.1``, ``0x7f.0.0.1``, ``2130706433``) reach
    loopback on some resolvers and a name whose last label is numeric is no
    DNS name anyway.
    """
    if host == "localhost" or host.endswith(".localhost"):
        return "localhost"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        last = host.rsplit(".", 1)[-1]
        return "an address" if _NUMERIC_LABEL.match(last) else None
    if addr.is_loopback:
        return "a loopback address"
    if addr.is_link_local:
        return "a link-local address"
    if addr.is_private or not addr.is_global:
        return "a private address"
    return "an address"


def registry_of(ref: str) -> str:
    """The registry host (``host[:port]``) the daemon contacts for image reference ``ref``.

    Raises:
        ValueError: ``ref`` is not a reference the daemon would accept.
    """
    return spelling.image_ref(ref).name.split("/", 1)[0]


def search_registry(term: str) -> str:
    """The registry an image search term names (``registry.splitReposSearchTerm``)."""
    first, sep, _ = term.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def auth_registry(address: str) -> str:
    """The registry ``POST /auth`` logs in to (``registry.ConvertToHostname``).

    An empty address is Docker Hub.
    """
    s = address
    for scheme in ("http://", "https://"):
        if s.startswith(scheme):
            s = s[len(scheme) :]
    s = s.split("/", 1)[0]
    if s in ("", "index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    return s


_AUTHORITY = re.compile(r"^(?:[A-Za-z0-9._~!$&'()*+,;=:-]*@)?([^@/?#\\%]*)$")


def url_host(url: str) -> str:
    """The ``host[:port]`` a URL the daemon fetches names (build ``remote``, ``fromSrc``).

    ``github.com/x`` and ``git@host:path`` are git forms; a value without a
    scheme is a host (``fromSrc``).  Raises ValueError for an authority that
    parsers could read differently.
    """
    if url.startswith("git@"):
        return url[4:].split(":", 1)[0]
    if url.startswith("github.com/"):
        return "github.com"
    scheme, sep, rest = url.partition("://")
    if not sep:
        rest = url
    elif not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise ValueError(f"invalid URL {url[:80]!r}")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    m = _AUTHORITY.match(authority)
    if m is None or not m.group(1):
        raise ValueError(f"URL {url[:80]!r} has a host the daemon might read differently")
    return m.group(1)


def _query(req: CanonicalRequest, name: str) -> list[str]:
    return [v for k, v in req.query if k == name]


def _body_value(req: CanonicalRequest, name: str) -> Any:
    body = req.body
    if not isinstance(body, Mapping):
        return None
    for k, v in body.items():
        if isinstance(k, str) and k.lower() == name:
            return v
    return None


def references(req: CanonicalRequest) -> list[tuple[str, str, str]]:
    """``(field, kind, value)`` for every registry the request makes the daemon contact.

    ``kind`` is ``ref`` (an image or plugin reference), ``search``, ``auth`` or
    ``url``.
    """
    eid = req.endpoint.id
    out: list[tuple[str, str, str]] = []
    if eid in ("distribution.inspect", "image.push", "plugin.push"):
        out.append(("path.name", "ref", req.params.get("name", "")))
    elif eid == "image.create":
        # The daemon pulls whenever fromImage is set, even beside fromSrc.
        out.extend(("query.fromImage", "ref", v) for v in _query(req, "fromImage") if v)
        if not any(_query(req, "fromImage")):
            out.extend(("query.fromSrc", "url", v) for v in _query(req, "fromSrc") if v != "-")
    elif eid in ("plugin.pull", "plugin.privileges", "plugin.upgrade"):
        out.extend(("query.remote", "ref", v) for v in _query(req, "remote"))
    elif eid == "image.build":
        out.extend(("query.cachefrom", "ref", v) for v in _cache_from(req))
        out.extend(
            ("query.remote", "url", v)
            for v in _query(req, "remote")
            if v not in ("", "client-session")
        )
    elif eid == "image.search":
        out.extend(("query.term", "search", v) for v in _query(req, "term"))
    elif eid == "system.auth":
        address = _body_value(req, "serveraddress")
        out.append(("serveraddress", "auth", address if isinstance(address, str) else ""))
    elif eid in ("service.create", "service.update"):
        spec = _body_value(req, "tasktemplate")
        cs = spec.get("ContainerSpec") if isinstance(spec, Mapping) else None
        image = cs.get("Image") if isinstance(cs, Mapping) else None
        if isinstance(image, str):
            out.append(("TaskTemplate.ContainerSpec.Image", "ref", image))
    return out


def _cache_from(req: CanonicalRequest) -> list[str]:
    """Build's ``cachefrom``: a JSON array of references (BuildKit may pull from them)."""
    found: list[str] = []
    for raw in _query(req, "cachefrom"):
        try:
            value = json.loads(raw)
        except ValueError:
            found.append(raw)
            continue
        if isinstance(value, list):
            found.extend(str(v) for v in value)
        else:
            found.append(str(value))
    return found


class RegistryAllowlist:
    """A compiled ``registries`` rule: exact entries and glob entries."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        entries = [str(e).lower() for e in cfg.get("allow", DEFAULT_ALLOW)]
        self.exact = frozenset(e for e in entries if "*" not in e)
        self.globs = tuple(spelling.name_pattern(e) for e in entries if "*" in e)

    def refusal(self, registry: str, noun: str = "registry") -> str | None:
        """Why the daemon may not contact ``registry`` (``host[:port]``), or None.

        ``noun`` names it in the message (``registry``, or ``host`` for a URL).
        """
        if registry == "index.docker.io":
            registry = "docker.io"
        if not _DOMAIN.match(registry):
            return f"host {registry!r} is not a host name the daemon accepts"
        host, port = split_host(registry)
        shown = f"[{host}]" if registry.startswith("[") else host
        key = shown if port is None else f"{shown}:{port}"
        if key in self.exact:
            return None
        kind = local_kind(host)
        if kind is not None:
            return (
                f"{noun} {key} is {kind}; it is allowed only when the policy's "
                "registries list names it exactly"
            )
        if any(p.match(key) for p in self.globs):
            return None
        return f"{noun} {key} is not in the allowed registries"

    def ref_refusal(self, kind: str, value: str) -> str | None:
        """Why a reference (``kind`` as in ``references``) may not be used, or None."""
        if kind == "search":
            return self.refusal(search_registry(value))
        if kind == "auth":
            return self.refusal(auth_registry(value))
        if kind == "url":
            try:
                return self.refusal(url_host(value), "URL host")
            except ValueError as e:
                return str(e)
        try:
            registry = registry_of(value)
        except ValueError as e:
            return f"reference {value!r} is invalid: {e}"
        return self.refusal(registry)

    def refusals(self, req: CanonicalRequest) -> list[tuple[str, str]]:
        """``(field, why)`` for every registry ``req`` names that is not allowed."""
        return [
            (f, why)
            for f, kind, value in references(req)
            if (why := self.ref_refusal(kind, value)) is not None
        ]


class _RuleLike(Protocol):
    mode: str

    @property
    def check(self) -> object: ...

    def applies_to(self, endpoint_id: str) -> bool: ...

    def exempts(self, peer: Peer) -> bool: ...


class _PolicyLike(Protocol):
    @property
    def rules(self) -> Sequence[_RuleLike]: ...


def allowlists(
    rules: Iterable[_RuleLike], endpoint_id: str, peer: Peer | None = None
) -> list[RegistryAllowlist]:
    """The enforcing ``registries`` rules that apply to ``endpoint_id`` (and ``peer``)."""
    found: list[RegistryAllowlist] = []
    for rule in rules:
        allowlist = getattr(rule.check, "allowlist", None)
        if (
            isinstance(allowlist, RegistryAllowlist)
            and rule.mode == "enforce"
            and rule.applies_to(endpoint_id)
            and (peer is None or not rule.exempts(peer))
        ):
            found.append(allowlist)
    return found


def registry_allowed(
    policy: _PolicyLike,
    image_ref: str,
    endpoint_id: str = "image.build",
    peer: Peer | None = None,
) -> str | None:
    """Why ``policy`` refuses the registry of ``image_ref``, or None when every
    enforcing ``registries`` rule that applies to ``endpoint_id`` allows it
    (rules that exempt ``peer`` are skipped when a peer is given).

    For references dockgate finds outside the request's fields (a Dockerfile's
    ``FROM``): ``scratch`` and references to an earlier build stage never
    reach a registry and are the caller's to skip.
    """
    for allowlist in allowlists(policy.rules, endpoint_id, peer):
        why = allowlist.ref_refusal("ref", image_ref)
        if why is not None:
            return why
    return None

"""Turns a parsed request head (and, for JSON endpoints, its body) into a
CanonicalRequest, or refuses it.

PROVISIONAL: a minimal stand-in so the I/O core can run end to end; the full
route table, version handling and strict canonicalisation replace it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlsplit

from dockgate.errors import BadRequest
from dockgate.model import CanonicalRequest, Endpoint

_HOP = {
    "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "host", "expect",
}

_ROUTES: list[tuple[str, re.Pattern[str], Endpoint]] = [
    ("POST", re.compile(r"^/containers/[^/]+/attach$"),
     Endpoint("container.attach", "POST", "/containers/{id}/attach", "none", hijack=True)),
    ("GET", re.compile(r"^/containers/[^/]+/attach/ws$"),
     Endpoint("container.attach.ws", "GET", "/containers/{id}/attach/ws", "none", hijack=True)),
    ("POST", re.compile(r"^/exec/[^/]+/start$"),
     Endpoint("exec.start", "POST", "/exec/{id}/start", "json", hijack=True)),
    ("POST", re.compile(r"^/session$"),
     Endpoint("session", "POST", "/session", "none", hijack=True)),
    ("POST", re.compile(r"^/grpc$"), Endpoint("grpc", "POST", "/grpc", "none", hijack=True)),
    ("POST", re.compile(r"^/containers/create$"),
     Endpoint("container.create", "POST", "/containers/create", "json")),
]


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What admission needs to know about the deployment.

    Attributes:
        daemon_version: API version used when a request names none.
        max_json_body: cap on a JSON body that must be buffered (413 above).
    """

    daemon_version: str = "1.41"
    max_json_body: int = 1 << 20


def admit_head(
    method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]], ctx: ApiContext
) -> CanonicalRequest:
    """Route and canonicalise a request head; raise a DockgateError to refuse it."""
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("request target is not ASCII") from None
    parts = urlsplit(text)
    path = parts.path
    version = None
    m = re.match(r"^/v(\d+\.\d+)(/.*)$", path)
    if m:
        version, path = m.group(1), m.group(2)
    endpoint = Endpoint("unknown", method, path, "stream")
    for meth, pattern, ep in _ROUTES:
        if meth == method and pattern.match(path):
            endpoint = ep
    kept = tuple(
        (n.decode("latin-1").lower(), v.decode("latin-1"))
        for n, v in headers
        if n.decode("latin-1").lower() not in _HOP
    )
    return CanonicalRequest(
        method=method,
        endpoint=endpoint,
        path=path,
        version=version,
        query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
        headers=kept,
    )


def admit_body(request: CanonicalRequest, body: bytes, ctx: ApiContext) -> CanonicalRequest:
    """Decode and canonicalise a JSON body; raise a DockgateError to refuse it."""
    import json

    if not body:
        return request
    try:
        value = json.loads(body)
    except ValueError as e:
        raise BadRequest(f"invalid JSON body: {e}") from None
    return replace(request, body=value, body_bytes=json.dumps(value).encode())

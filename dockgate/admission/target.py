"""Canonicalisation of the request-target, mirroring how the daemon reads it.

The daemon (Go net/http + gorilla/mux, see moby ``daemon/server/server.go``)
reads a target like this:

* ``net/http`` accepts origin-form and absolute-form; ``URL.Path`` is the
  percent-decoded path (``%2F`` becomes ``/``), and mux matches on that decoded
  path.  A ``#`` is not special in a request-target and stays in the path.
* mux "cleans" the path first: a path with ``.``/``..`` segments or ``//``
  gets a 301 redirect to the cleaned one, which clients then re-request
  (Go's client re-sends GET/HEAD; other methods turn into GET).
* every route exists twice, as ``/v{version:[0-9.]+}<path>`` and as
  ``<path>``; the version is compared as dot-separated integers, so ``1.041``,
  ``1.41.0`` and ``1.41`` are the same version to the daemon.

dockgate accepts only targets that have exactly one reading, and rewrites them
to one canonical spelling; anything the daemon could read differently from a
policy (dot segments, ``//``, ``%2F``, an absolute-form target, a fragment,
control characters, non-canonical version spellings) is refused with 400
saying what was ambiguous, never "fixed".  The canonical path is the decoded
path re-escaped the way Go's ``url.URL.EscapedPath`` escapes it, so the
forwarded bytes decode to exactly the path the decision saw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockgate.errors import BadRequest

_VERSION_PREFIX = re.compile(r"/v([0-9.]+)(?=/|$)")
"""The daemon's ``/v{version:[0-9.]+}`` matcher (mux anchors it to a segment)."""

_CANONICAL_VERSION = re.compile(r"(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})")

# RFC 3986 pchar plus "/" and "?" boundary handled separately; raw bytes we let
# through unescaped in a received target.
_RAW_OK = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/%"
)

# Characters Go's EscapedPath leaves unescaped in a path (shouldEscape, encodePath).
_GO_PATH_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~$&+,/:;=@"
)

_HEX = "0123456789ABCDEF"
_CTL = re.compile("[\x00-\x1f\x7f]")
_CTL_OR_SPACE = re.compile("[\x00-\x20\x7f]")


@dataclass(frozen=True, slots=True)
class ParsedTarget:
    """A request-target split the way the daemon splits it.

    Attributes:
        version: the ``X.Y`` from a ``/vX.Y`` prefix, or None.
        path: the decoded path without the version prefix.
        raw_query: the query string as received (without ``?``), or "".
    """

    version: str | None
    path: str
    raw_query: str


def escape_path(path: str) -> str:
    """Escape a decoded path exactly as Go's ``url.URL.EscapedPath`` would."""
    out: list[str] = []
    for ch in path:
        if ch in _GO_PATH_SAFE:
            out.append(ch)
        else:
            for b in ch.encode("utf-8"):
                out.append("%" + _HEX[b >> 4] + _HEX[b & 15])
    return "".join(out)


def percent_decode(raw: str, what: str, plus_is_space: bool = False) -> str:
    """Strict percent-decoding to UTF-8, as Go's ``url.PathUnescape`` (or, with
    ``plus_is_space``, ``url.QueryUnescape``) does: a malformed escape is an
    error, and so is a result that is not UTF-8 (Go would keep raw bytes that a
    Python reader cannot represent the same way)."""
    if "%" not in raw and not (plus_is_space and "+" in raw):
        return raw
    buf = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == "%":
            h = raw[i + 1:i + 3]
            if len(h) != 2 or not all(x in "0123456789abcdefABCDEF" for x in h):
                raise BadRequest(f"malformed percent-escape in {what}: {raw[i:i + 3]!r}")
            buf.append(int(h, 16))
            i += 3
        else:
            buf.extend(b" " if plus_is_space and c == "+" else c.encode("utf-8"))
            i += 1
    try:
        return buf.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"percent-escapes in {what} are not valid UTF-8") from None


def parse_target(target: bytes) -> ParsedTarget:
    """Split and canonicalise a raw origin-form request-target; raise BadRequest."""
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("request target contains non-ASCII bytes") from None
    if not text.startswith("/"):
        if text == "*":
            raise BadRequest("asterisk-form request target is not supported")
        raise BadRequest("request target must be origin-form (start with '/'); "
                         "absolute-form targets are refused")
    raw_path, sep, raw_query = text.partition("?")
    if "#" in text:
        raise BadRequest("request target contains '#' (a fragment is never sent)")
    bad = set(raw_path) - _RAW_OK
    if bad:
        raise BadRequest(f"request path contains characters that must be escaped: "
                         f"{''.join(sorted(bad))!r}")
    if _CTL_OR_SPACE.search(raw_query):
        raise BadRequest("query string contains control characters or spaces")
    if re.search(r"%2[fF]", raw_path):
        raise BadRequest("request path contains an escaped '/' (%2F); the daemon decodes "
                         "it to a path separator")
    if "%5C" in raw_path.upper() or "\\" in raw_path:
        raise BadRequest("request path contains a backslash")
    path = percent_decode(raw_path, "request path")
    if _CTL.search(path):
        raise BadRequest("request path contains control characters")
    if "//" in path:
        raise BadRequest("request path contains an empty segment ('//'); the daemon "
                         "would redirect to a cleaned path")
    segments = path.split("/")[1:]
    if any(s in (".", "..") for s in segments):
        raise BadRequest("request path contains a '.' or '..' segment; the daemon would "
                         "redirect to a cleaned path")
    version: str | None = None
    m = _VERSION_PREFIX.match(path)
    if m is not None:
        spelled = m.group(1)
        if _CANONICAL_VERSION.fullmatch(spelled) is None:
            raise BadRequest(f"API version {spelled!r} in the path is not spelled as "
                             "<major>.<minor> without leading zeros; the daemon would "
                             "read it as another version")
        version = spelled
        path = path[m.end():]
        if path == "":
            path = "/"
    return ParsedTarget(version, path, raw_query if sep else "")

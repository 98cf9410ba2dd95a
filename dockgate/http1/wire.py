"""Wire-level rules for HTTP/1.1 heads, applied to the raw bytes before parsing.

Parsers differ in what they forgive: repeated identical ``Content-Length``
headers merged, bare-LF line endings, ``Transfer-Encoding`` winning over
``Content-Length``, folded lines.  Any of these is a place where two parsers
(dockgate's and the daemon's, or a front proxy's) can disagree about where a
request ends (request smuggling), so the raw head is checked here before
``http1.server`` reads it, and any doubt is a 400.

The module also knows which headers are hop-by-hop, so that the heads dockgate
serialises itself carry only end-to-end headers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

from dockgate.errors import BadRequest, HeadTooLarge

HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
"""Headers that describe one connection, never the message (RFC 9110 7.6.1)."""

HEAD_END: Final = re.compile(rb"\r?\n\r?\n")
"""The end of a head, bare LF included (a head found that way is then refused);
``find_head_end`` finds its first match without the regular expression."""

TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An RFC 9110 token (header names, methods); use with ``fullmatch``."""
FIELD_VALUE: Final = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")
"""A header value once trimmed: no control character but HTAB; use with ``fullmatch``."""
_BARE_LF: Final = re.compile(rb"(?<!\r)\n")


MAX_HEADERS: Final = 256
"""Header fields a request may have (431 beyond).  Engine 20.10 has no count
limit of its own (only Go's 1 MB head) and 28.5 answers 431 above about 500
fields (measured), but every field is parsed, checked
and copied upstream, so a head of thousands of tiny fields is work for
nothing.  Real clients send far fewer: the docker CLI and docker-py about
ten, a BuildKit session head one per gRPC method it exposes (a few dozen)."""


def find_head_end(buffer: bytes | bytearray) -> int:
    """Return the offset just past the blank line ending a head, or -1.

    Where ``HEAD_END`` first matches: the first LF followed by CRLF or LF.
    Two substring searches, the second bounded by the first's hit (the
    expression tried a match at every offset: 2.3 against 0.5 µs per head).
    """
    crlf = buffer.find(b"\n\r\n")
    lf = buffer.find(b"\n\n", 0, crlf + 2) if crlf >= 0 else buffer.find(b"\n\n")
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


def check_request_head(head: bytes) -> None:
    """Refuse a raw request head whose framing two parsers could read differently.

    Args:
        head: the bytes of the request line and header lines, up to and
            including the blank line.

    Raises:
        BadRequest: on bare LF line endings, leading blank lines, folded
            headers, repeated Content-Length, Content-Length together with
            Transfer-Encoding, repeated Transfer-Encoding, or any
            Transfer-Encoding other than exactly ``chunked``.
        HeadTooLarge: more than ``MAX_HEADERS`` header fields.
    """
    if head[:1] in (b"\r", b"\n"):
        raise BadRequest("request head starts with a blank line")
    fields = head.count(b"\n") - 2  # less the request line and the blank line
    if fields > MAX_HEADERS:
        raise HeadTooLarge(f"request has {fields} header fields; dockgate accepts at most "
                           f"{MAX_HEADERS}")
    if _BARE_LF.search(head):
        raise BadRequest("request head uses a bare LF line ending; CRLF is required")
    lines = head.split(b"\r\n")
    content_length: list[bytes] = []
    transfer_encoding: list[bytes] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise BadRequest("folded (obs-fold) header lines are not accepted")
        name, sep, value = line.partition(b":")
        if not sep or not TOKEN.fullmatch(name):
            raise BadRequest(f"malformed header line {line[:64]!r}")
        lname = name.lower()
        if lname == b"content-length":
            content_length.append(value.strip(b" \t"))
        elif lname == b"transfer-encoding":
            transfer_encoding.append(value.strip(b" \t"))
    if len(content_length) > 1:
        raise BadRequest("duplicate Content-Length headers")
    if content_length and not content_length[0].isdigit():
        raise BadRequest(f"invalid Content-Length {content_length[0][:32]!r}")
    if transfer_encoding:
        if content_length:
            raise BadRequest("both Content-Length and Transfer-Encoding are present")
        if len(transfer_encoding) > 1:
            raise BadRequest("repeated Transfer-Encoding headers")
        if transfer_encoding[0].lower() != b"chunked":
            raise BadRequest(
                f"unsupported Transfer-Encoding {transfer_encoding[0][:32]!r}; only chunked"
            )


def tokens(value: bytes) -> frozenset[bytes]:
    """The lower-cased members of a comma-separated header value (``Connection``,
    ``Transfer-Encoding``), optional whitespace stripped and empty members dropped
    (RFC 9110 5.6.1): the one reading of a token list, for both roles."""
    return frozenset(t for t in (m.strip(b" \t").lower() for m in value.split(b",")) if t)


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The lower-cased header names listed in any Connection header."""
    names: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            names.update(tokens(value))
    return frozenset(names)


def end_to_end(
    headers: Sequence[tuple[bytes, bytes]], keep_length: bool = False
) -> list[tuple[bytes, bytes]]:
    """Drop hop-by-hop headers, the ones named in Connection, and framing.

    Content-Length is dropped too unless ``keep_length`` (kept in its place
    for a body passed on unchanged): whoever serialises the message decides
    its framing from the body it actually sends.  Names keep their spelling.
    """
    named = connection_tokens(headers)
    return [
        (n, v)
        for n, v in headers
        if (ln := n.lower()) not in HOP_BY_HOP and ln not in named
        and (keep_length or ln != b"content-length")
    ]


def upgrade_headers(
    headers: Sequence[tuple[bytes, bytes]], proto: bytes
) -> list[tuple[bytes, bytes]]:
    """A 101's headers for the client: the end-to-end ones, and ``Connection:
    Upgrade`` and ``Upgrade`` where and as the daemon wrote them (``proto`` and
    Go's spelling where it wrote none)."""
    named = connection_tokens(headers) - {b"upgrade"}
    out: list[tuple[bytes, bytes]] = []
    seen: set[bytes] = set()
    for n, v in headers:
        ln = n.lower()
        if ln in (b"connection", b"upgrade"):
            if ln not in seen:
                seen.add(ln)
                out.append((n, b"Upgrade" if ln == b"connection" else v))
        elif ln not in HOP_BY_HOP and ln not in named and ln != b"content-length":
            out.append((n, v))
    if b"connection" not in seen:
        out.append((b"Connection", b"Upgrade"))
    if b"upgrade" not in seen:
        out.append((b"Upgrade", proto))
    return out


def serialise_response_head(
    status: int, reason: bytes, headers: Iterable[tuple[bytes, bytes]], http10: bool = False
) -> bytes:
    """Serialise a response head.

    Used for every response to a client (``http1.server.ResponseWriter``
    adds the framing headers) and for hijacked ones (101, or Docker's legacy
    raw-stream 200), which are followed by raw bytes, not an HTTP body.
    ``http10``: the status line says ``HTTP/1.0``, as Go's server answers a
    request made in HTTP/1.0.
    """
    out = [b"HTTP/1.%d %d %s\r\n" % (0 if http10 else 1, status, reason)]
    out += [b"%s: %s\r\n" % pair for pair in headers]
    out.append(b"\r\n")
    head = b"".join(out)
    # Every CR and LF must be one of the line ends written above: a name,
    # value or reason holding one would split the head.
    if head.count(b"\n") != len(out) or head.count(b"\r") != len(out):
        raise ValueError("header contains a line break")
    return head

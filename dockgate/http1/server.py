"""The client side of HTTP/1.1: requests read strictly, responses framed by dockgate.

This replaces h11 on the client connection for the same reason ``http1``
replaces it on the daemon's: per request, h11's generic event objects and
its re-validation of every header on every send cost more CPU than all of
dockgate's own checks.  The strictness stays where it belongs: the raw head
goes through ``wire.check_request_head`` (no bare LF, no obs-fold, exactly
one framing, only ``chunked``) before it is parsed, the request line and
every field are matched against RFC 9112's grammar, and the body is read
exactly as its one framing says.  Anything else is a ``BadRequest`` (400) or
``HeadTooLarge`` (431) to answer before closing, never a guess.

Requests are read one at a time: after a request's end, ``next_event``
returns ``PAUSED`` until ``next_cycle``, and the bytes that arrived meanwhile
(a pipelined request, or a hijacked session's first bytes) stay buffered
(``trailing``).  ``ResponseWriter`` frames the response: the daemon's
Content-Length when it gave one, else chunked for HTTP/1.1 clients, else the
end of the connection.  HTTP/1.0 is answered as the daemon's Go server
answers it: in an ``HTTP/1.0`` status line; the connection is kept only for
a request that asked (``Connection: keep-alive``) and a response that is
delimited, which then says ``Connection: keep-alive``; otherwise no
Connection field is added and the connection ends.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from dockgate.errors import BadRequest, BodyTooLarge, HeadTooLarge
from dockgate.http1 import wire
from dockgate.http1.client import (
    LAST_CHUNK,
    ST_CHUNK_DATA,
    ST_CHUNK_LINE,
    ST_DONE,
    ST_ENDING,
    ST_HEAD,
    ST_LENGTH,
    ST_TRAILER,
    Body,
    End,
    Framed,
)
from dockgate.memo import SMALL, Memo

__all__ = ["PAUSED", "Body", "End", "KnownHead", "Request", "RequestReader", "ResponseWriter"]

_REQUEST_LINE: Final = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e\x80-\xff]+) HTTP/1\.([01])"
)
_HOST: Final = re.compile(rb"[0-9A-Za-z!$%&'()*+,\-.:;=\[\]_~]*")
"""A Host value the daemon takes: the bytes of a URI host and port (Go's
``httpguts.ValidHostHeader``); with any other byte it answers 400."""


class _Paused:
    """The request is complete; the next waits until ``next_cycle``."""

    def __repr__(self) -> str:
        return "PAUSED"


PAUSED: Final = _Paused()

FREE_CHUNKS: Final = 128
"""Chunks a request body may use before their sizes are looked at.  Small, because
every chunk up to the bound is parsed before it can trip: at 1024, refusing a
body of 1-byte chunks cost 1.5 ms of CPU, and four clients doing it again and
again kept dockgate busy enough to hold a ``/_ping`` behind a turn of their
refusals (p50 5 ms); at 128 a refusal costs 0.4 ms (benchmarks/bench_chunks.py)."""
MIN_CHUNK_AVERAGE: Final = 64
"""Beyond ``FREE_CHUNKS``, each further chunk must bring this many payload bytes
on average.  Every chunk costs dockgate a size line to parse and an event to
handle whatever it carries, so without this a body sent as 1-byte chunks costs
per byte what a whole request does (issue 21: a 1 MB JSON body as 1-byte chunks
took 3 s of CPU).  With it, the chunks a request body can have are bounded by
its size: ``FREE_CHUNKS + payload / MIN_CHUNK_AVERAGE``.  Real clients stay far
inside: Go's client writes a chunk per write of its copy loop (a tar stream
of 1-byte files is a 512-byte header, a 1-byte data and a 511-byte padding
chunk each, 341 bytes on average), docker-py and the CLI send JSON with a
Content-Length."""


@dataclass(frozen=True, slots=True)
class Request:
    """A request head: method, target, fields (names lowercased, values trimmed).

    Immutable: one parsed head is shared by every repetition of its bytes
    (see ``RequestReader.lookup``).
    """

    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    http10: bool
    length: int | None = None
    """The Content-Length, if the request has one."""
    chunked: bool = False
    """Whether the body is chunked (``Transfer-Encoding: chunked``)."""
    size: int = 0
    """The length of the raw head, in bytes."""



def _parse(head: bytes) -> tuple[Request, bool, bool]:
    """The request, whether it keeps the connection, and whether it expects 100."""
    lines = head.split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise BadRequest(f"malformed HTTP request: bad request line {lines[0][:80]!r}")
    headers: list[tuple[bytes, bytes]] = []
    hosts = 0
    http10 = match.group(3) == b"0"
    close = False
    http10_keep_alive = False
    expectation: bytes | None = None
    length = None
    chunked = False
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")  # wire.check_request_head checked the shape
        name = name.lower()
        value = value.strip(b" \t")
        if wire.FIELD_VALUE.fullmatch(value) is None:
            raise BadRequest(f"malformed HTTP request: control character in {name[:40]!r}")
        if name == b"host":
            hosts += 1
            if _HOST.fullmatch(value) is None:
                raise BadRequest(f"malformed HTTP request: malformed Host header {value[:64]!r}")
        elif name == b"connection":
            tokens = wire.tokens(value)
            if b"close" in tokens:
                close = True
            elif b"keep-alive" in tokens:
                http10_keep_alive = True
        elif name == b"expect":
            if expectation is None:
                expectation = value  # the first, as Go reads it (Header.Get)
        elif name == b"trailer":
            # dockgate refuses trailer fields, so a request announcing them is
            # refused too (the daemon refuses some, Trailer: Content-Length).
            raise BadRequest("malformed HTTP request: request trailers are not supported")
        elif name == b"content-length":
            length = int(value)  # digits only, and only one: checked by wire
        elif name == b"transfer-encoding":
            chunked = True  # exactly "chunked": checked by wire
        headers.append((name, value))
    # HTTP/1.0 keeps the connection only when asked to (Go's wantsHttp10KeepAlive);
    # whether it then stays open depends on the response's framing (``_plan``).
    keep_alive = not close and (not http10 or http10_keep_alive)
    if not http10 and hosts != 1:
        raise BadRequest("malformed HTTP request: exactly one Host header is required")
    if http10 and chunked:
        # Go ignores Transfer-Encoding on HTTP/1.0: for the daemon the body is
        # empty and the chunks are the next request.
        raise BadRequest("malformed HTTP request: Transfer-Encoding on an HTTP/1.0 request")
    # Go answers 100 Continue only to an HTTP/1.1 request with a body whose Expect
    # names 100-continue, and 417 to any other non-empty Expect.
    expect = False
    if expectation:
        if b"100-continue" in wire.tokens(expectation) and not http10 and (chunked or length):
            expect = True
        else:
            raise BadRequest(f"Expect {expectation[:40]!r} cannot be met", status=417)
    request = Request(
        match.group(1), match.group(2), tuple(headers), http10, length, chunked, len(head) + 4
    )
    return request, keep_alive, expect


class KnownHead(Protocol):
    """What a reader's ``lookup`` finds for a head seen before (``proxy.fastpath.Known``)."""

    parsed: tuple[Request, bool, bool]
    """The head as ``_parse`` read it the first time."""


class RequestReader(Framed):
    """Reads a client's requests, one at a time (see the module docstring)."""

    def __init__(self, max_head: int) -> None:
        super().__init__()
        self._state = ST_HEAD
        self.max_head = max_head
        self._eof = False
        self.keep_alive = True
        self.expects_continue = False
        """The client sent ``Expect: 100-continue`` and no body byte yet."""
        self._chunks = 0
        self._payload = 0
        self.lookup: Callable[[bytes], KnownHead | None] | None = None
        """Finds what a head seen before is known as (``proxy.fastpath``), if set:
        its parse is taken from there instead of checking and parsing it again."""
        self.head = b""
        """The raw bytes of the current request's head, blank line included."""
        self.parsed: tuple[Request, bool, bool] | None = None
        """The current head parsed: the request, keep-alive, expects 100."""
        self.known: KnownHead | None = None
        """What ``lookup`` found for the current head, or None."""

    def _error(self, message: str) -> Exception:
        return BadRequest(f"malformed HTTP request: {message}")

    @property
    def done(self) -> bool:
        """Whether the current request was read to its end."""
        return self._state == ST_DONE

    @property
    def closed(self) -> bool:
        """Whether the client closed its sending side."""
        return self._eof

    def feed(self, data: bytes) -> None:
        """Take bytes from the client."""
        if data:
            self._append(data)

    def eof(self) -> None:
        """The client closed its sending side."""
        self._eof = True

    def trailing(self) -> bytes:
        """Everything after the current request (for a session that hijacks)."""
        return self._take_all()

    def next_cycle(self) -> None:
        """The response went out: read the next request."""
        self._state = ST_HEAD
        self.expects_continue = False

    def next_event(self) -> Request | Body | End | _Paused | None:
        """The next event, ``PAUSED`` after a request's end, or None for more bytes.

        Raises:
            BadRequest, HeadTooLarge: the bytes cannot be one request; answer
                with the error's status and close.
        """
        while True:
            state = self._state
            if state == ST_LENGTH:
                body = self._body()
                if body is None:
                    self._need()
                else:
                    self.expects_continue = False
                return body
            if state == ST_ENDING:
                self._state = ST_DONE
                return End()
            if state == ST_DONE:
                return PAUSED
            if state == ST_HEAD:
                return self._head()
            pieces = self._chunk_pieces()
            if pieces:
                self.expects_continue = False
                return Body(pieces[0] if len(pieces) == 1 else b"".join(pieces))
            if self._state != ST_ENDING:
                self._need()
                return None

    def _chunk_pieces(self) -> list[bytes]:
        """The data of every chunk the buffered bytes complete, in order.

        One event for all of them, however many chunks a read holds, so the
        work per event does not grow with the number of chunks; the size lines
        are counted against the body's size (``MIN_CHUNK_AVERAGE``).

        Raises:
            BodyTooLarge: too many chunks for the payload they carry.
        """
        pieces: list[bytes] = []
        while True:
            state = self._state
            if state == ST_CHUNK_DATA:
                body = self._body()
                if body is None:
                    return pieces
                pieces.append(body.data)
                continue
            if state == ST_ENDING or not self._chunked_step():
                return pieces
            if state == ST_CHUNK_LINE and self._state != ST_TRAILER:
                self._chunks += 1
                self._payload += self._left
                extra = self._chunks - FREE_CHUNKS
                if extra > 0 and extra * MIN_CHUNK_AVERAGE > self._payload:
                    raise BodyTooLarge(
                        f"request body sent in {self._chunks} chunks for {self._payload} "
                        f"bytes; chunks beyond the first {FREE_CHUNKS} must average "
                        f"{MIN_CHUNK_AVERAGE} bytes"
                    )

    def _need(self) -> None:
        """More bytes are needed; if none can come, the request is truncated."""
        if self._eof:
            raise self._error("the client closed the connection before the end of its body")

    def _head(self) -> Request | None:
        buf = self._take_all()
        if not buf:  # asked again once a request was read: nothing to search
            self._buf = buf
            return None
        end = wire.find_head_end(buf)
        if end < 0:
            self._buf = buf
            if len(buf) > self.max_head:
                raise HeadTooLarge(f"request head larger than {self.max_head} bytes")
            if self._eof and buf:
                raise self._error("the client closed the connection in the middle of a head")
            return None
        if end > self.max_head:
            raise HeadTooLarge(f"request head larger than {self.max_head} bytes")
        head = buf[:end]
        known = self.lookup(head) if self.lookup is not None else None
        if known is None:
            wire.check_request_head(head)
            parsed = _parse(head[:-4])
        else:  # the very bytes were checked and parsed before: the same result
            parsed = known.parsed
        self.head, self.parsed, self.known = head, parsed, known
        request, self.keep_alive, self.expects_continue = parsed
        self._buf, self._pos = buf, end
        self._frame(request)
        return request

    def _frame(self, request: Request) -> None:
        self._chunks = self._payload = 0
        if request.chunked:
            self._state = ST_CHUNK_LINE
            return
        self._left = request.length or 0
        self._state = ST_LENGTH if self._left else ST_ENDING


_Plan = tuple[bytes, bool, bool, "int | None", bool]
"""A response head's bytes and framing: keep-alive, chunked, length left, has a body."""


def _plan(key: tuple[int, bytes, Sequence[tuple[bytes, bytes]], bytes | str, bool, bool]) -> _Plan:
    """How ``ResponseWriter.head`` frames a response (pure; see ``_PLANS``).

    ``key`` is the head's arguments: status, reason, headers, method, whether
    the request was HTTP/1.0, and whether the connection is to be kept alive.
    """
    status, reason, headers, method, http10, keep_alive = key
    length = None
    for name, value in headers:
        if name.lower() == b"content-length":
            if not value.isdigit():
                raise ValueError("invalid Content-Length")
            length = int(value)
    out = list(headers)
    chunked = False
    left = None
    body = not (method in ("HEAD", b"HEAD") or status in (204, 304))
    if not body:
        pass
    elif length is not None:
        left = length
    elif http10:
        keep_alive = False
    else:
        chunked = True
        out.append((b"Transfer-Encoding", b"chunked"))
    if http10:
        # As Go's server answers HTTP/1.0: "Connection: keep-alive" on a response
        # it keeps the connection for (asked for, and delimited), else no
        # Connection field at all (closing is HTTP/1.0's default).
        if keep_alive:
            out.append((b"Connection", b"keep-alive"))
    elif not keep_alive:
        out.append((b"Connection", b"close"))
    return (wire.serialise_response_head(status, reason, out, http10), keep_alive, chunked,
            left, body)


_PLANS: Final[Memo[tuple[object, ...], tuple[object, _Plan]]] = Memo(256)
"""Response heads by everything they are made of, for the daemon's repeated
answers, whose header tuples ``protocol`` shares (see ``memo``): by the header
tuple's identity, kept with the plan so that its ``id`` is not reused while the
entry lives (hashing the tuple of pairs cost more than the rest of a hit)."""


class ResponseWriter:
    """Frames one response at a time for the client (see the module docstring)."""

    def __init__(self) -> None:
        self.started = False
        self.done = False
        self.keep_alive = True
        self._chunked = False
        self._left: int | None = None
        self._body = True

    def next_cycle(self) -> None:
        """Ready for the next response."""
        self.started = self.done = False

    def informational(self, status: int) -> bytes:
        """A 1xx interim response (100 Continue)."""
        return b"HTTP/1.1 %d %s\r\n\r\n" % (status, b"Continue" if status == 100 else b"Info")

    def head(
        self,
        status: int,
        reason: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        *,
        method: bytes | str,
        http10: bool,
        keep_alive: bool,
    ) -> bytes:
        """The response head; ``headers`` may carry Content-Length, no other framing.

        Raises:
            ValueError: a header would split the head, or a framing is invalid.
        """
        if self.started:
            raise ValueError("a response was already started")
        self.started = True
        if type(headers) is tuple:
            key: tuple[object, ...] = (status, reason, id(headers), method, http10, keep_alive)
            entry = _PLANS.get(key)
            if entry is not None and entry[0] is headers:
                plan = entry[1]
            else:
                plan = _plan((status, reason, headers, method, http10, keep_alive))
                if len(plan[0]) <= SMALL:
                    _PLANS.put(key, (headers, plan))
        else:
            plan = _plan((status, reason, headers, method, http10, keep_alive))
        head, self.keep_alive, self._chunked, self._left, self._body = plan
        return head

    def relays(self, framing: str, length: int) -> bool:
        """Whether a body the daemon framed as ``framing`` (``length`` bytes left
        under a Content-Length) reaches this client in the very same framing, so
        its bytes can be passed on as they came; if so, from here the body is
        the caller's business and ``end`` adds nothing."""
        if not self._body:
            return False
        same = (self._chunked if framing == "chunked" else
                framing == "length" and not self._chunked and self._left == length)
        if same:
            self._body = False
            self._left = None
            self._chunked = False
        return same

    def data(self, data: bytes) -> list[bytes]:
        """Body bytes, framed, as pieces to write in sequence (``data`` is not copied).

        Raises:
            ValueError: more than the declared Content-Length, or a body where
                the response has none.
        """
        if not data:
            return []
        if not self._body:
            raise ValueError("this response has no body")
        if self._chunked:
            return [b"%x\r\n" % len(data), data, b"\r\n"]
        if self._left is not None:
            if len(data) > self._left:
                raise ValueError("more body than the declared Content-Length")
            self._left -= len(data)
        return [data]

    def end(self) -> bytes:
        """The end of the body.

        Raises:
            ValueError: fewer bytes than the declared Content-Length were sent.
        """
        self.done = True
        if self._body and self._left:
            raise ValueError("less body than the declared Content-Length")
        return LAST_CHUNK if self._body and self._chunked else b""

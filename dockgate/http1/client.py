"""The daemon side of HTTP/1.1: requests written by dockgate, responses read strictly.

Why not h11: dockgate writes every request itself and reads one response per
request, and h11, which builds an object and validates every header again
for every event, cost more CPU per small request than everything else
dockgate does.  This module does only what that side needs, with the
strictness where it matters (framing): a response is read exactly as RFC
9112 section 6.3 frames it, and anything that could be read two ways is an
error, never a guess, so no byte of one response can be taken for part of
the next.  ``Framed`` (buffered bytes, Content-Length and chunked bodies) is
shared with the client side (``http1.server``).

``ResponseReader`` is pure (bytes in, events out); ``request_head`` and
``chunk`` produce the bytes dockgate sends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from dockgate.http1.wire import FIELD_VALUE, TOKEN, tokens
from dockgate.memo import SMALL, Memo

__all__ = [
    "Body",
    "End",
    "Framing",
    "Head",
    "ProtocolError",
    "ResponseReader",
    "chunk",
    "request_head",
]

MAX_HEAD: Final = 64 * 1024
"""Largest response head (status line and headers) accepted from the daemon."""
_MAX_CHUNK_LINE: Final = 4000
"""Longest chunk-size line read (without its CRLF), however it arrives: Go's
reader refuses a line of 4096 bytes with its CRLF, so whatever dockgate reads
as a size line, the daemon would read as one too."""
_MAX_CHUNK_EXCESS: Final = 16 * 1024
"""How far a body's chunk-size lines may run ahead of the data they carry (see
``Framed._chunk_excess``): the bound Go's reader has had since Go 1.22, which
refuses ``too much non-data`` beyond it."""
_STATUS: Final = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_CHUNK_SIZE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*|;[^\r\n]*)")
"""A chunk-size line: the size, then blanks or an extension (no blank between
the size and ``;``: Go trims blanks only at the line's end before it cuts the
extension off, so ``2b ;e`` is no size to it)."""
LAST_CHUNK: Final = b"0\r\n\r\n"

VIEW_FROM: Final = 16 * 1024
"""A relayed piece this large is a view of the buffer read, not a copy (``Framing``)."""


class ProtocolError(Exception):
    """The daemon's bytes are not a well-framed HTTP/1.1 response."""


@dataclass(frozen=True, slots=True)
class Head:
    """A response head: final (``status`` >= 200) or informational (1xx).

    Immutable: one parsed head is shared by every repetition of its bytes.
    """

    status: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    """Names lowercased, values without surrounding whitespace, in order."""
    http10: bool = False
    spelled: tuple[tuple[bytes, bytes], ...] = ()
    """The same headers with their names as the daemon spelled them (what the
    client is sent: dockgate forwards names in the daemon's case); empty when
    the head was not read off the wire (then ``headers`` stands for both)."""


# The events made per read write their ``__init__`` out: mypyc compiles a
# method written in the class, while a dataclass's generated one stays
# interpreted (``setup.py``).


@dataclass(slots=True, init=False)
class Body:
    """Some bytes of the response body (framing removed)."""

    data: bytes

    def __init__(self, data: bytes) -> None:
        self.data = data


@dataclass(slots=True, init=False)
class Framing:
    """Some bytes of a relayed response body as the daemon sent them, framing and
    all (``ResponseReader.relay``); ``size`` of them are body bytes.  ``data`` is
    a ``memoryview`` of the bytes read for a piece of ``VIEW_FROM`` bytes or
    more that is not the whole buffer: the writer sends it as it is."""

    data: bytes | memoryview
    size: int

    def __init__(self, data: bytes | memoryview, size: int) -> None:
        self.data = data
        self.size = size


@dataclass(slots=True, init=False)
class End:
    """The response body is complete."""

    def __init__(self) -> None:
        pass


Event = Head | Body | Framing | End

# Where a reader is in a message; shared with ``http1.server``, whose reader has
# the same body framings.  Final: compiled, each comparison is of two machine
# integers, not a lookup in the module's namespace and a generic comparison.
ST_IDLE: Final = 0
ST_HEAD: Final = 1
ST_LENGTH: Final = 2
ST_CHUNK_LINE: Final = 3
ST_CHUNK_DATA: Final = 4
ST_CHUNK_END: Final = 5
ST_TRAILER: Final = 6
ST_CLOSE: Final = 7
ST_ENDING: Final = 8
ST_DONE: Final = 9
ST_RAW: Final = 10


def request_head(method: str, target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Serialise a request head; refuse names or values that could split it.

    Raises:
        ValueError: a header name is not a token, or a value (or the target)
            holds CR, LF or NUL.
    """
    lines = [b"%s %s HTTP/1.1\r\n" % (method.encode("ascii"), target)]
    if b"\r" in target or b"\n" in target or b" " in target or b"\0" in target:
        raise ValueError("request target holds whitespace or control characters")
    for name, value in headers:
        if TOKEN.fullmatch(name) is None:
            raise ValueError(f"header name {name!r} is not a token")
        if b"\r" in value or b"\n" in value or b"\0" in value:
            raise ValueError(f"header {name.decode('latin-1')} holds CR, LF or NUL")
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"\r\n")
    return b"".join(lines)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked request body (never the last, empty one)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _parse_head(block: bytes) -> Head:
    lines = block.split(b"\r\n")
    match = _STATUS.fullmatch(lines[0])
    if match is None:
        raise ProtocolError(f"malformed status line {lines[0][:80]!r}")
    headers: list[tuple[bytes, bytes]] = []
    spelled: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or TOKEN.fullmatch(name) is None:
            raise ProtocolError(f"malformed header line {line[:80]!r}")
        value = value.strip(b" \t")
        if FIELD_VALUE.fullmatch(value) is None:
            raise ProtocolError(f"control character in header {name[:40]!r}")
        headers.append((name.lower(), value))
        spelled.append((name, value))
    return Head(int(match.group(2)), match.group(3) or b"", tuple(headers),
                match.group(1) == b"0", tuple(spelled))


_Framing = tuple[int, int, bool]
"""A body framing chosen by ``ResponseReader._frame``: state, length left, keep-alive."""
_HEADS: Final[Memo[tuple[bytes, bool], tuple[Head, _Framing | None]]] = Memo(256)
"""Parsed response heads and their framing, by raw bytes and whether the
request was HEAD (see ``memo``).  The daemon's heads differ from one
response of a kind to the next only in ``Date``, so a head of each kind is
parsed once a second."""


class Framed:
    """Unread bytes and the body framings, shared by the readers of both directions.

    Unread bytes are ``_buf[_pos:]``: pieces are sliced out by position, so a
    read holding many small chunks is not copied once per chunk.  Subclasses
    say how a framing error is reported (``_error``).
    """

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._state = ST_IDLE
        self._left = 0
        self._chunk_excess = 0
        """The bytes of this body's chunk-size lines not yet covered by the
        allowance each chunk brings (16 bytes plus twice its size): the budget
        Go's reader keeps, so that dockgate refuses what it refuses."""

    def _error(self, message: str) -> Exception:
        return ProtocolError(message)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events."""
        return len(self._buf) - self._pos

    def _append(self, data: bytes) -> None:
        if self._pos == len(self._buf):
            self._buf, self._pos = data, 0
        else:
            self._buf = self._buf[self._pos:] + data
            self._pos = 0

    def _take_all(self) -> bytes:
        data = self._buf[self._pos:]
        self._buf, self._pos = b"", 0
        return data

    def _body(self) -> Body | None:
        """Body bytes under the current framing (length, chunk data, or until close)."""
        buf, pos = self._buf, self._pos
        have = len(buf) - pos
        if not have:
            return None
        if self._state == ST_CLOSE:
            n = have
        else:
            n = min(have, self._left)
            self._left -= n
            if not self._left:
                self._state = ST_ENDING if self._state == ST_LENGTH else ST_CHUNK_END
        if pos == 0 and n == len(buf):
            self._buf, self._pos = b"", 0
            return Body(buf)
        self._pos = pos + n
        return Body(buf[pos:pos + n])

    def _count_excess(self, line: int, size: int) -> None:
        """Count a chunk-size line of ``line`` bytes (without its CRLF) for a chunk
        of ``size`` bytes against ``_MAX_CHUNK_EXCESS``."""
        excess = self._chunk_excess + line + 2 - 16 - 2 * size
        if excess > _MAX_CHUNK_EXCESS:
            raise self._error("chunk size lines too long for the data they carry")
        self._chunk_excess = excess if excess > 0 else 0

    def _chunked_step(self) -> bool:
        """One step of chunk framing (size line, CRLF after data, trailer line).

        Returns False when more bytes are needed.
        """
        buf, pos, state = self._buf, self._pos, self._state
        have = len(buf) - pos
        if state == ST_CHUNK_END:
            if have < 2:
                return False
            if buf[pos] != 13 or buf[pos + 1] != 10:
                raise self._error("chunk data not followed by CRLF")
            self._pos += 2
            self._state = ST_CHUNK_LINE
            return True
        if state == ST_CHUNK_LINE:
            # The usual line, hex digits and CRLF, read byte by byte: compiled,
            # that costs less than the find, match and int calls below, which
            # take every other line (extensions, blanks, errors).
            i, stop, size = pos, pos + min(have, 16), 0
            while i < stop:
                c = buf[i]
                if 48 <= c <= 57:
                    size = size * 16 + c - 48
                elif 97 <= c <= 102:
                    size = size * 16 + c - 87
                elif 65 <= c <= 70:
                    size = size * 16 + c - 55
                else:
                    break
                i += 1
            if i > pos and i + 1 < len(buf) and buf[i] == 13 and buf[i + 1] == 10:
                if self._chunk_excess:  # (from nothing, a line this short stays far below)
                    self._count_excess(i - pos, size)
                self._left = size
                self._pos = i + 2
                self._state = ST_CHUNK_DATA if size else ST_TRAILER
                return True
        elif have >= 2 and buf[pos] == 13 and buf[pos + 1] == 10:
            # ST_TRAILER with no trailer field: the body's end.
            self._pos = pos + 2
            self._state = ST_ENDING
            self._chunk_excess = 0
            return True
        elif have:
            # A trailer field.  Go reads a trailer section with its header
            # reader (bare LF ends a line there, and its end is where the next
            # request begins); dockgate would forward none of it anyway, so
            # none is read: the body ends at the first CRLF after the last chunk.
            if buf[pos] != 13:
                raise self._error("trailer fields after a chunked body are not supported")
            if have == 1:
                return False
            raise self._error("malformed end of a chunked body")
        else:
            return False
        end = buf.find(b"\r\n", pos)
        if end < 0:
            if len(buf) - pos > _MAX_CHUNK_LINE + 1:  # (+1: a CR whose LF is yet to come)
                raise self._error("chunk size line too long")
            return False
        if end - pos > _MAX_CHUNK_LINE:
            raise self._error("chunk size line too long")
        match = _CHUNK_SIZE.fullmatch(buf, pos, end)
        if match is None:
            raise self._error(f"malformed chunk size line {buf[pos:min(end, pos + 40)]!r}")
        size = int(match.group(1), 16)
        self._count_excess(end - pos, size)
        self._left = size
        self._pos = end + 2
        self._state = ST_CHUNK_DATA if size else ST_TRAILER
        return True


class ResponseReader(Framed):
    """Reads the daemon's responses, one per request, from the bytes it sends.

    Call ``expect`` once per request sent, ``feed`` with what arrives, then
    ``next_event`` until it returns None; ``eof`` when the daemon closes.
    After a ``101`` the reader stops; ``go_raw`` hands over the bytes that
    followed (they are not HTTP).
    """

    def __init__(self) -> None:
        super().__init__()
        self._head_request = False
        self._relay = False
        self.keep_alive = False
        # The connection's last response head (raw, whether to a HEAD, parsed): a
        # poller's next answer mostly repeats it byte for byte, and comparing the
        # bytes costs less than hashing them for ``_HEADS``.
        self._last_raw = b""
        self._last_head_request = False
        self._last: tuple[Head, _Framing | None] | None = None

    @property
    def reusable(self) -> bool:
        """Whether the connection can carry another request: a complete,
        delimited response that kept the connection alive, nothing extra sent."""
        return self._state == ST_DONE and self.keep_alive and self._pos == len(self._buf)

    def expect(self, method: str) -> None:
        """A request was sent: read its response next."""
        if self._state not in (ST_IDLE, ST_DONE) or self._pos != len(self._buf):
            raise ProtocolError("a response is still outstanding")
        self._buf, self._pos = b"", 0
        self._state = ST_HEAD
        self._relay = False
        self._head_request = method == "HEAD"
        self.keep_alive = False

    @property
    def body_left(self) -> int:
        """Bytes left of a Content-Length body (0 under any other framing)."""
        return self._left if self._state == ST_LENGTH else 0

    @property
    def framing(self) -> str:
        """How the current response's body is framed: ``length``, ``chunked``,
        ``close``, or ``none`` (no body, or not known yet)."""
        state = self._state
        if state == ST_LENGTH:
            return "length"
        if state in (ST_CHUNK_LINE, ST_CHUNK_DATA, ST_CHUNK_END, ST_TRAILER):
            return "chunked"
        return "close" if state == ST_CLOSE else "none"

    def relay(self) -> None:
        """Pass the current body on as it came: from here ``next_event`` gives
        ``Framing`` events (the bytes as received, their framing checked and
        scanned, not taken apart) and then ``End``.  For a body the client gets
        in the same framing (a Content-Length body of the same length, or
        chunked to chunked), so that relaying costs a scan per read instead of
        a slice and a re-frame per chunk.  A trailer section is refused then
        (dockgate never forwards trailers; the daemon sends none)."""
        if self._state in (ST_LENGTH, ST_CHUNK_LINE, ST_CHUNK_DATA, ST_CHUNK_END):
            self._relay = True

    def _scan(self) -> Framing | None:
        """The buffered bytes that complete framing units of the relayed body."""
        buf, start = self._buf, self._pos
        end = len(buf)
        size = 0
        while True:
            state = self._state
            if state in (ST_LENGTH, ST_CHUNK_DATA):
                n = min(end - self._pos, self._left)
                if not n:
                    break
                self._pos += n
                size += n
                self._left -= n
                if not self._left:
                    self._state = ST_ENDING if state == ST_LENGTH else ST_CHUNK_END
            elif state == ST_TRAILER:
                at = self._pos
                if end - at >= 2:
                    if buf[at] != 13 or buf[at + 1] != 10:
                        raise ProtocolError("the daemon sent a trailer section")
                    self._pos = at + 2
                    self._state = ST_ENDING
                break
            elif state not in (ST_CHUNK_LINE, ST_CHUNK_END) or not self._chunked_step():
                break
        pos = self._pos
        if pos == start:
            return None
        if start == 0 and pos == end:
            self._buf, self._pos = b"", 0
            return Framing(buf, size)
        if pos - start >= VIEW_FROM:
            # Most of a read (the rest of it after a head): a copy would cost
            # more than the view, which the buffer's next replacement leaves intact.
            return Framing(memoryview(buf)[start:pos], size)
        return Framing(buf[start:pos], size)

    def go_raw(self) -> bytes:
        """Stop reading HTTP; return the bytes received past the last event."""
        self._state = ST_RAW
        return self._take_all()

    def feed(self, data: bytes) -> None:
        """Take ``data``; ``next_event`` then returns what it completes."""
        if not data:
            return
        if self._state in (ST_IDLE, ST_DONE):
            raise ProtocolError("the daemon sent bytes without a request outstanding")
        self._append(data)

    def eof(self) -> Event | None:
        """The daemon closed its side: the end of a close-delimited body, else an error.

        Call it once ``next_event`` returned None (all buffered bytes taken).
        """
        if self._state == ST_CLOSE:
            self._state = ST_DONE
            self.keep_alive = False
            return End()
        if self._state in (ST_IDLE, ST_DONE, ST_RAW):
            return None
        raise ProtocolError("the daemon closed the connection in the middle of a response")

    def next_event(self) -> Event | None:
        """The next complete event, or None until more bytes arrive.

        One at a time, so that a caller who decides to stop reading HTTP
        (``go_raw``) after a head gets every byte that followed it.
        """
        while True:
            state = self._state
            if state == ST_ENDING:
                self._state = ST_DONE
                return End()
            if self._relay:
                return self._scan()
            if state in (ST_LENGTH, ST_CHUNK_DATA, ST_CLOSE):
                return self._body()
            if state == ST_HEAD:
                return self._read_head()
            if state not in (ST_CHUNK_LINE, ST_CHUNK_END, ST_TRAILER) or not self._chunked_step():
                return None

    def _read_head(self) -> Head | None:
        buf, pos = self._buf, self._pos
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            if len(buf) - pos > MAX_HEAD:
                raise ProtocolError(f"response head larger than {MAX_HEAD} bytes")
            return None
        if end - pos > MAX_HEAD:
            raise ProtocolError(f"response head larger than {MAX_HEAD} bytes")
        raw = buf[pos:end]
        head_request = self._head_request
        last = self._last
        if last is not None and head_request == self._last_head_request \
                and raw == self._last_raw:
            head, framing = last
        else:
            key = (raw, head_request)
            small = end - pos <= SMALL
            known = _HEADS.get(key)
            if known is None:
                head = _parse_head(raw)
                framing = None if head.status < 200 else self._frame(head)
                known = (head, framing)
                if small:
                    _HEADS.put(key, known)
            else:
                head, framing = known
            if small:
                self._last_raw, self._last_head_request, self._last = raw, head_request, known
        self._pos = end + 4
        if framing is None:
            if head.status == 101:
                self._state = ST_RAW
            return head  # else (100 Continue) the final head follows
        self._state, self._left, self.keep_alive = framing
        return head

    def _frame(self, head: Head) -> _Framing:
        """Choose the body's framing (RFC 9112 section 6.3); refuse ambiguity."""
        lengths: list[bytes] = []
        encodings: list[bytes] = []
        close = head.http10
        for name, value in head.headers:
            if name == b"content-length":
                lengths += [v.strip(b" \t") for v in value.split(b",")]
            elif name == b"transfer-encoding":
                encodings += [v.strip(b" \t").lower() for v in value.split(b",")]
            elif name == b"connection" and b"close" in tokens(value):
                close = True
        keep_alive = not close
        if self._head_request or head.status in (204, 304):
            return ST_ENDING, 0, keep_alive
        if encodings:
            if lengths:
                raise ProtocolError("response has both Content-Length and Transfer-Encoding")
            if encodings != [b"chunked"]:
                raise ProtocolError(f"unsupported Transfer-Encoding {b', '.join(encodings)!r}")
            return ST_CHUNK_LINE, 0, keep_alive
        if lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 18:
                raise ProtocolError("invalid or conflicting Content-Length")
            left = int(lengths[0])
            return (ST_LENGTH if left else ST_ENDING), left, keep_alive
        return ST_CLOSE, 0, False

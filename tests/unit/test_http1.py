"""The daemon-side HTTP/1.1 codec: responses framed exactly as RFC 9112 says, or refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.chunklines import accepted_size, size_lines

from dockgate.http1.client import (
    LAST_CHUNK,
    VIEW_FROM,
    Body,
    End,
    Framing,
    Head,
    ProtocolError,
    ResponseReader,
    chunk,
    request_head,
)


def read(method: str, data: bytes, step: int | None = None) -> tuple[ResponseReader, list[object]]:
    """Feed ``data`` (in pieces of ``step`` bytes) and collect every event."""
    reader = ResponseReader()
    reader.expect(method)
    events: list[object] = []
    pieces = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        reader.feed(piece)
        while (event := reader.next_event()) is not None:
            events.append(event)
    return reader, events


def shape(events: list[object]) -> list[object]:
    """Heads as their status, bodies joined, End as "end"."""
    out: list[object] = []
    for event in events:
        if isinstance(event, Body):
            if out and isinstance(out[-1], bytes):
                out[-1] += event.data
            else:
                out.append(event.data)
        elif isinstance(event, Head):
            out.append(event.status)
        elif isinstance(event, End):
            out.append("end")
    return out


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"
)


@pytest.mark.parametrize("step", [None, 1, 2, 3, 5, 8, 13])
def test_chunked_body_in_any_split(step: int | None) -> None:
    """A chunked response decodes to the same head, body and end however its bytes are split across
    reads, and leaves the connection reusable."""
    reader, events = read("GET", CHUNKED, step)
    assert shape(events) == [200, b"helloabc", "end"]
    assert reader.reusable


def test_head_fields_are_lowercased_and_trimmed() -> None:
    """Response header names are lowercased and values trimmed of surrounding whitespace; the reason
    phrase is kept."""
    _, events = read("GET", b"HTTP/1.1 200 OK\r\nApi-Version:  1.51 \r\nContent-Length: 0\r\n\r\n")
    head = events[0]
    assert isinstance(head, Head)
    assert head.headers == ((b"api-version", b"1.51"), (b"content-length", b"0"))
    assert head.reason == b"OK"


def test_content_length_body_and_reuse() -> None:
    """A Content-Length body ends after exactly that many bytes, and the connection then carries a
    second response."""
    reader, events = read("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    assert shape(events) == [200, b"OK", "end"]
    assert reader.reusable
    reader.expect("GET")
    reader.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(reader.next_event(), Head)
    assert isinstance(reader.next_event(), End)


def test_bodiless_responses() -> None:
    """Responses to HEAD and 204/304 responses have no body whatever their Content-Length, and the
    connection stays reusable."""
    for method, data in (
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"),
    ):
        reader, events = read(method, data)
        assert shape(events)[1:] == ["end"]
        assert reader.reusable


def test_close_delimited_body_ends_at_eof_and_is_not_reused() -> None:
    """A response without framing runs until EOF, which ends it, and the connection is not reused.
    """
    reader, events = read("GET", b"HTTP/1.1 200 OK\r\n\r\nabc")
    assert shape(events) == [200, b"abc"]
    assert isinstance(reader.eof(), End)
    assert not reader.reusable


def test_connection_close_and_http10_are_not_reused() -> None:
    """A response with Connection: close, or in HTTP/1.0, is not reused even when delimited."""
    for data in (
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    ):
        reader, events = read("GET", data)
        assert shape(events)[1:] == ["end"]
        assert not reader.reusable


def test_extra_bytes_after_a_response_make_the_connection_unusable() -> None:
    """Bytes beyond the end of a response make the connection unusable: it is not reused and
    expecting another response is an error."""
    reader, _ = read("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nXjunk")
    assert not reader.reusable
    with pytest.raises(ProtocolError):
        reader.expect("GET")


def test_bytes_with_no_request_outstanding_are_an_error() -> None:
    """Bytes from the daemon when no request is outstanding are a protocol error."""
    reader, _ = read("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ProtocolError):
        reader.feed(b"HTTP/1.1 200 OK\r\n")


def test_interim_100_then_final() -> None:
    """An interim 100 Continue is passed on before the final response, its body and end."""
    _, events = read(
        "POST", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}"
    )
    assert shape(events) == [100, 201, b"{}", "end"]


def test_101_stops_and_hands_over_what_followed() -> None:
    """After a 101 the reader stops parsing and go_raw hands over the raw bytes that followed the
    head."""
    reader = ResponseReader()
    reader.expect("POST")
    reader.feed(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n\x01\x00raw")
    head = reader.next_event()
    assert isinstance(head, Head) and head.status == 101
    assert reader.next_event() is None
    assert reader.go_raw() == b"\x01\x00raw"


def test_legacy_raw_stream_bytes_stay_for_go_raw() -> None:
    """A 200 without framing on a hijack route: the caller switches after the head."""
    reader = ResponseReader()
    reader.expect("POST")
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\nRAW")
    assert isinstance(reader.next_event(), Head)
    assert reader.go_raw() == b"RAW"


def test_eof_mid_response_is_an_error() -> None:
    """EOF before a Content-Length body, a head or a chunked body is complete is a protocol error.
    """
    for data in (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", b"HTTP/1.1 200", CHUNKED[:90]):
        reader, _ = read("GET", data)
        with pytest.raises(ProtocolError):
            reader.eof()


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n Folded: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 O\x01K\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rX",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 ;e\r\na\r\n0\r\n\r\n",
    ],
)
def test_ambiguous_or_malformed_responses_are_refused(data: bytes) -> None:
    """Responses that two parsers could frame differently or that break the grammar (CL with TE,
    repeated or odd CL, non-chunked TE, folding, bad names and bytes, bare LF, other versions, bad
    chunks and trailers) are refused."""
    with pytest.raises(ProtocolError):
        read("GET", data)


def test_oversized_head_and_chunk_line_are_refused() -> None:
    """An oversized response head and an oversized chunk-size line are refused instead of buffered.
    """
    with pytest.raises(ProtocolError):
        read("GET", b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000)
    with pytest.raises(ProtocolError):
        read("GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 5000)


def test_many_small_chunks_in_one_read() -> None:
    """Two thousand small chunks arriving in one read decode to the concatenated body."""
    body = b"".join(chunk(b"%04d" % i) for i in range(2000)) + LAST_CHUNK
    _, events = read("GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert shape(events) == [200, b"".join(b"%04d" % i for i in range(2000)), "end"]


def test_request_head_is_serialised_and_checked() -> None:
    """request_head writes the exact request head and refuses targets or headers with spaces, CR/LF
    injection, bad names or NUL."""
    head = request_head("GET", b"/v1.51/_ping", [(b"host", b"docker"), (b"x-a", b"1")])
    assert head == b"GET /v1.51/_ping HTTP/1.1\r\nhost: docker\r\nx-a: 1\r\n\r\n"
    for target, headers in (
        (b"/a b", []),
        (b"/a\r\nX: y", []),
        (b"/", [(b"x", b"a\r\nInjected: 1")]),
        (b"/", [(b"bad name", b"1")]),
        (b"/", [(b"x", b"a\x00")]),
    ):
        with pytest.raises(ValueError):
            request_head("GET", target, headers)


def test_chunk_encoding() -> None:
    """chunk frames data as hex size, CRLF, data, CRLF, and LAST_CHUNK is the zero chunk."""
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"


def test_repeated_head_is_parsed_once_and_framed_for_its_request() -> None:
    """The same head bytes give the same Head; the framing still follows the request."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
    _, first = read("GET", head + b"hello")
    _, again = read("GET", head + b"hello")
    assert first[0] is again[0]
    assert shape(again) == [200, b"hello", "end"]
    # A HEAD request's response has no body, whatever its Content-Length.
    reader, heads = read("HEAD", head)
    assert shape(heads) == [200, "end"] and reader.reusable
    _, after = read("GET", head + b"hello")
    assert shape(after) == [200, b"hello", "end"]


def test_one_connections_repeated_head_is_framed_for_each_request() -> None:
    """On one connection, a head repeating the last one byte for byte is framed for the
    request it answers (HEAD: no body, whatever its Content-Length), and a head that
    differs in one byte is read as itself."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
    other = head.replace(b"Length: 5", b"Length: 3")
    reader = ResponseReader()
    seen = []
    for method, data in (("GET", head + b"hello"), ("HEAD", head), ("GET", head + b"hello"),
                         ("GET", other + b"abc"), ("GET", head + b"hello")):
        reader.expect(method)
        reader.feed(data)
        events: list[object] = []
        while (event := reader.next_event()) is not None:
            events.append(event)
        seen.append(shape(events))
        assert reader.reusable, method
    assert seen == [[200, b"hello", "end"], [200, "end"], [200, b"hello", "end"],
                    [200, b"abc", "end"], [200, b"hello", "end"]]


def test_refused_response_head_is_refused_every_time() -> None:
    """A refused response head is refused again on a fresh reader (the head memo does not remember
    it as good)."""
    bad = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
    for _ in range(2):
        reader = ResponseReader()
        reader.expect("GET")
        reader.feed(bad)
        with pytest.raises(ProtocolError):
            reader.next_event()


def _relayed(head: bytes, body: bytes, step: int
             ) -> tuple[ResponseReader, bytes, int, list[object]]:
    """Feed a response in ``step``-byte pieces, relaying its body after the head."""
    reader = ResponseReader()
    reader.expect("GET")
    data = head + body
    raw, size, rest = b"", 0, []
    for i in range(0, len(data), step):
        reader.feed(data[i:i + step])
        while (event := reader.next_event()) is not None:
            if isinstance(event, Head):
                reader.relay()
            elif isinstance(event, Framing):
                raw += event.data
                size += event.size
            else:
                rest.append(event)
    return reader, raw, size, rest


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_a_relayed_chunked_body_comes_out_as_it_came_in(step: int) -> None:
    """relay(): the chunked body's bytes, framing included, come out unchanged
    whatever the reads' sizes, the body bytes are counted, then End; the
    connection stays reusable."""
    body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    reader, raw, size, rest = _relayed(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", body, step)
    assert raw == body and size == 11 and len(rest) == 1 and isinstance(rest[0], End)
    assert reader.reusable


@pytest.mark.parametrize("step", [1, 4, 1000])
def test_a_relayed_length_body_stops_at_its_length(step: int) -> None:
    """relay() under Content-Length passes exactly the declared bytes on."""
    _, raw, size, rest = _relayed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
                                       b"0123456789", step)
    assert raw == b"0123456789" and size == 10 and isinstance(rest[0], End)


@pytest.mark.parametrize("step", [VIEW_FROM // 3, VIEW_FROM + 5, 1 << 20])
def test_a_large_relayed_piece_is_a_view_of_the_read_not_a_copy(step: int) -> None:
    """A relayed piece of VIEW_FROM bytes or more that is not the whole buffer
    (the rest of a read after its head) is a memoryview of the bytes read;
    smaller pieces are bytes.  Either way the pieces joined are the body as it
    came, framing included."""
    chunk = b"1000\r\n" + b"x" * 0x1000 + b"\r\n"
    body = chunk * 20 + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    reader = ResponseReader()
    reader.expect("GET")
    data = head + body
    pieces: list[bytes | memoryview] = []
    for i in range(0, len(data), step):
        read = data[i:i + step]
        reader.feed(read)
        while (event := reader.next_event()) is not None:
            if isinstance(event, Head):
                reader.relay()
            elif isinstance(event, Framing):
                pieces.append(event.data)
                if len(event.data) < VIEW_FROM:
                    assert type(event.data) is bytes
    assert b"".join(pieces) == body
    if step > len(head) + VIEW_FROM:
        assert isinstance(pieces[0], memoryview)


def test_a_relayed_body_with_a_trailer_or_bad_framing_is_refused() -> None:
    """Relaying scans the framing as strictly as reading it: a trailer section
    (never forwarded) or a malformed chunk line is a ProtocolError."""
    with pytest.raises(ProtocolError):
        _relayed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                 b"1\r\na\r\n0\r\nX-T: 1\r\n\r\n", 1000)
    with pytest.raises(ProtocolError):
        _relayed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"zz\r\n", 1000)


@settings(max_examples=400, deadline=None)
@given(line=size_lines(), step=st.sampled_from([1, 2, 5, 1000]), relay=st.booleans())
def test_chunk_size_lines_are_read_as_the_grammar_says(line: bytes, step: int, relay: bool) -> None:
    """A chunk-size line, leading zeros, hex digits in either case and any tail of
    digits, blanks, extensions or stray bytes, is accepted with the size its digits
    say exactly when the grammar accepts it (1-16 digits, blanks, ``;`` extension),
    whether the body is read or relayed and however the bytes are split; anything
    else is a ProtocolError."""
    want = accepted_size(line)
    got = want or 0
    body = line + b"\r\n" + (b"x" * got + b"\r\n" + LAST_CHUNK if got else b"\r\n")
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    step = max(step, got // 64)  # a tail of digits can make a chunk of megabytes
    if want is None:
        with pytest.raises(ProtocolError):
            if relay:
                _relayed(head, body, step)
            else:
                read("GET", head + body, step)
        return
    if relay:
        reader, raw, counted, rest = _relayed(head, body, step)
        assert (raw, counted) == (body, got) and isinstance(rest[-1], End)
    else:
        reader, events = read("GET", head + body, step)
        assert shape(events)[1:] == ([b"x" * got] if got else []) + ["end"]
    assert reader.reusable

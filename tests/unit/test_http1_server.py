"""The client-side HTTP/1.1 codec: requests read one at a time and strictly, responses framed."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.chunklines import accepted_size, size_lines

from dockgate.errors import BadRequest, DockgateError, HeadTooLarge
from dockgate.http1.server import (
    FREE_CHUNKS,
    MIN_CHUNK_AVERAGE,
    PAUSED,
    Body,
    End,
    Request,
    RequestReader,
    ResponseWriter,
)


def events(data: bytes, step: int | None = None, eof: bool = False) -> tuple[RequestReader, list[object]]:
    reader = RequestReader(8192)
    out: list[object] = []
    pieces = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        reader.feed(piece)
        while (event := reader.next_event()) is not None and event is not PAUSED:
            out.append(event)
    if eof:
        reader.eof()
        while (event := reader.next_event()) is not None and event is not PAUSED:
            out.append(event)
    return reader, out


def shape(items: list[object]) -> list[object]:
    out: list[object] = []
    for item in items:
        if isinstance(item, Body):
            if out and isinstance(out[-1], bytes):
                out[-1] += item.data
            else:
                out.append(item.data)
        elif isinstance(item, Request):
            out.append(item.method.decode() + " " + item.target.decode())
        elif isinstance(item, End):
            out.append("end")
    return out


POST = (
    b"POST /v1.51/images/load HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Type: application/x-tar\r\n\r\n4;a=b\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n"
)


@pytest.mark.parametrize("step", [None, 1, 2, 5, 9])
def test_chunked_request_in_any_split(step: int | None) -> None:
    """A chunked request body decodes to the same request, body and end however its bytes are split,
    and the connection stays alive."""
    reader, got = events(POST, step)
    assert shape(got) == ["POST /v1.51/images/load", b"abcdef", "end"]
    assert reader.done and reader.keep_alive


def test_fields_are_lowercased_and_trimmed() -> None:
    """Request header names are lowercased and values trimmed; an HTTP/1.1 request is not marked
    HTTP/1.0."""
    _, got = events(b"GET /_ping HTTP/1.1\r\nHost: d\r\nUser-Agent:  x y \r\n\r\n")
    request = got[0]
    assert isinstance(request, Request)
    assert request.headers == ((b"host", b"d"), (b"user-agent", b"x y"))
    assert not request.http10


def test_one_request_at_a_time_and_pipelining() -> None:
    """A pipelined second request waits (PAUSED, buffered) until the first exchange's cycle ends,
    then is read."""
    reader = RequestReader(8192)
    reader.feed(b"GET /a HTTP/1.1\r\nHost: d\r\n\r\nGET /b HTTP/1.1\r\nHost: d\r\n\r\n")
    first = reader.next_event()
    assert isinstance(first, Request) and first.target == b"/a"
    assert isinstance(reader.next_event(), End)
    assert reader.next_event() is PAUSED
    assert reader.next_event() is PAUSED
    assert reader.buffered == len(b"GET /b HTTP/1.1\r\nHost: d\r\n\r\n")
    reader.next_cycle()
    second = reader.next_event()
    assert isinstance(second, Request) and second.target == b"/b"


def test_bytes_after_a_request_stay_for_a_hijacked_session() -> None:
    """Bytes after an exec start's body are kept, not parsed, and handed over as the session's first
    stdin."""
    reader = RequestReader(8192)
    reader.feed(b"POST /exec/x/start HTTP/1.1\r\nHost: d\r\nContent-Length: 2\r\n\r\n{}stdin")
    assert isinstance(reader.next_event(), Request)
    assert shape([reader.next_event(), reader.next_event()]) == [b"{}", "end"]
    assert reader.next_event() is PAUSED
    assert reader.trailing() == b"stdin"


def test_connection_close_and_http10_do_not_keep_alive() -> None:
    """Connection: close and HTTP/1.0 requests end keep-alive."""
    reader, _ = events(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert not reader.keep_alive
    reader, got = events(b"GET /_ping HTTP/1.0\r\n\r\n")
    assert not reader.keep_alive
    assert isinstance(got[0], Request) and got[0].http10


@pytest.mark.parametrize(("connection", "kept"), [
    (b"keep-alive", True), (b"Keep-Alive", True), (b"foo, keep-alive", True),
    (b"close", False), (b"keep-alive, close", False), (b"upgrade", False),
])
def test_http10_keeps_alive_only_when_asked(connection: bytes, kept: bool) -> None:
    """An HTTP/1.0 request keeps the connection when its Connection field has the
    keep-alive token (Go's wantsHttp10KeepAlive) and no close token."""
    reader, got = events(b"GET /_ping HTTP/1.0\r\nConnection: %s\r\n\r\n" % connection)
    assert isinstance(got[0], Request) and got[0].http10
    assert reader.keep_alive is kept


def test_http10_keep_alive_responses_as_go_frames_them() -> None:
    """To an HTTP/1.0 client that asked for keep-alive, a delimited response says
    ``Connection: keep-alive`` and keeps the connection (a HEAD, a 204 and a
    Content-Length body alike); an undelimited one is close-delimited with no
    Connection field; every status line says HTTP/1.0, as the daemon's Go
    server answers."""
    for status, method, headers in [(200, "GET", [(b"Content-Length", b"2")]),
                                    (200, "HEAD", [(b"Content-Type", b"text/plain")]),
                                    (204, "DELETE", [])]:
        w = ResponseWriter()
        head = w.head(status, b"X", headers, method=method, http10=True, keep_alive=True)
        assert head.startswith(b"HTTP/1.0 ") and head.endswith(b"\r\nConnection: keep-alive\r\n\r\n") and w.keep_alive
    w = ResponseWriter()
    head = w.head(200, b"OK", [(b"Content-Type", b"application/json")], method="GET",
                  http10=True, keep_alive=True)
    assert head == b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
    assert not w.keep_alive and b"".join(w.data(b"[]")) == b"[]" and w.end() == b""


def test_expect_100_continue_until_the_body_starts() -> None:
    """expects_continue holds from an Expect: 100-continue head until the body's first bytes arrive.
    """
    reader = RequestReader(8192)
    reader.feed(b"POST /build HTTP/1.1\r\nHost: d\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert isinstance(reader.next_event(), Request)
    assert reader.expects_continue
    reader.feed(b"abc")
    assert isinstance(reader.next_event(), Body)
    assert not reader.expects_continue


@pytest.mark.parametrize(
    "data",
    [
        b"GET /_ping HTTP/1.1\r\n\r\n",  # no Host
        b"GET /_ping HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /_ping HTTP/2.0\r\nHost: a\r\n\r\n",
        b"GET  /_ping HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /_p ing HTTP/1.1\r\nHost: a\r\n\r\n",
        b"G(T /_ping HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /_ping HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
        b"GET /_ping HTTP/1.1\nHost: a\r\n\r\n",
        b"GET /_ping HTTP/1.1\r\nHost: a\r\n Folded: x\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
    ],
)
def test_malformed_requests_are_400(data: bytes) -> None:
    """Requests a server could read differently or that break the grammar (no or two Hosts, other
    versions, bad spacing, tokens or bytes, bare LF, folding, conflicting or doubled framing, bad
    chunks and trailers) are 400."""
    with pytest.raises(BadRequest):
        events(data)


def test_head_over_the_limit_is_431() -> None:
    """A request head over the limit is 431, whether or not it has ended."""
    with pytest.raises(HeadTooLarge):
        events(b"GET /_ping HTTP/1.1\r\nHost: d\r\nX: " + b"a" * 9000)
    with pytest.raises(HeadTooLarge):
        events(b"GET /_ping HTTP/1.1\r\nHost: d\r\nX: " + b"a" * 9000 + b"\r\n\r\n")


def test_truncated_body_or_head_at_eof_is_400() -> None:
    """EOF in the middle of a head, a Content-Length body or a chunked body is a 400."""
    for data in (
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"GET /_ping HTTP/1.1\r\nHo",
    ):
        with pytest.raises(DockgateError) as info:
            events(data, eof=True)
        assert info.value.status == 400


# -- where Go's net/http (the daemon) reads a request otherwise -----------------

_CHUNKED_HEAD = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("step", [None, 1, 7])
@pytest.mark.parametrize(
    "tail",
    [
        b"0\r\nX-T: 1\r\n\r\n",
        b"0\r\nX: a\n\nPOST /y HTTP/1.1\nHost: a\nContent-Length: 0\n\n\r\n\r\n",
        b"0\r\nX: a\x00b\r\n\r\n",
        b"0\r\n\rX",
    ],
    ids=["field", "request-behind-bare-lf", "nul", "cr-then-junk"],
)
def test_trailer_fields_are_refused(tail: bytes, step: int | None) -> None:
    """A chunked body ends at the CRLF right after its last chunk: any trailer
    field is a 400, however split.  Go reads a trailer with its header reader (a
    bare LF ends a line there, and a request may follow the section's end); a
    field dockgate would only drop is still a second reading of the bytes."""
    with pytest.raises(BadRequest):
        events(_CHUNKED_HEAD + b"1\r\na\r\n" + tail, step)


def test_a_trailer_header_is_refused() -> None:
    """A request announcing trailer fields (``Trailer``) is 400: none are read."""
    with pytest.raises(BadRequest):
        events(b"POST /x HTTP/1.1\r\nHost: a\r\nTrailer: Content-Length\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")


def test_chunked_on_http10_is_refused() -> None:
    """Transfer-Encoding on an HTTP/1.0 request is 400: Go ignores it there (the
    body is empty to the daemon and the chunks are its next request)."""
    with pytest.raises(BadRequest):
        events(b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n")


@pytest.mark.parametrize("line", [b"1 ;e", b"1\t;e", b"1 \t;"])
def test_a_blank_before_a_chunk_extension_is_refused(line: bytes) -> None:
    """``1 ;e`` is 400 (Go trims blanks only at a line's end, then cuts the
    extension: ``1 `` is no size to it); blanks before the CRLF are read."""
    with pytest.raises(BadRequest):
        events(_CHUNKED_HEAD + line + b"\r\na\r\n0\r\n\r\n")
    _, got = events(_CHUNKED_HEAD + b"1 \t\r\na\r\n1;e\t\r\nb\r\n0\r\n\r\n")
    assert shape(got) == ["POST /x", b"ab", "end"]


@pytest.mark.parametrize("step", [None, 1000, 3999, 4001])
def test_the_chunk_line_limit_holds_however_the_line_arrives(step: int | None) -> None:
    """A chunk-size line of up to 4000 bytes (without its CRLF) is read and a
    longer one is 400, whether its CRLF came in the same read or later (Go
    refuses a line of 4096 bytes with its CRLF)."""
    longest = b"1;" + b"e" * 3998
    _, got = events(_CHUNKED_HEAD + longest + b"\r\na\r\n0\r\n\r\n", step)
    assert shape(got) == ["POST /x", b"a", "end"]
    with pytest.raises(BadRequest):
        events(_CHUNKED_HEAD + longest + b"e\r\na\r\n0\r\n\r\n", step)


def test_chunk_lines_may_not_run_far_ahead_of_their_data() -> None:
    """Size lines count against the data they bring as Go counts them since Go
    1.22 (each chunk allows 16 bytes plus twice its size; 16 KiB over is too
    much non-data): four 1-byte chunks with 3,990-byte extensions are read,
    five are 400; forty 4-KiB chunks pay for the same extensions."""
    ext = b";" + b"e" * 3990

    def body(chunks: int, size: int) -> bytes:
        return _CHUNKED_HEAD + (b"%x%s\r\n%s\r\n" % (size, ext, b"a" * size)) * chunks + b"0\r\n\r\n"

    _, got = events(body(4, 1))
    assert shape(got)[-1] == "end"
    with pytest.raises(BadRequest):
        events(body(5, 1))
    _, got = events(body(40, 4096))
    assert shape(got)[-1] == "end"


@pytest.mark.parametrize(
    ("expect", "framing", "continues"),
    [
        (b"100-continue", b"Content-Length: 1", True),
        (b"100-Continue", b"Transfer-Encoding: chunked", True),
        (b"foo, 100-continue", b"Content-Length: 1", True),
        (b"", b"Content-Length: 1", False),
    ],
)
def test_expect_100_continue_as_go_reads_it(expect: bytes, framing: bytes, continues: bool) -> None:
    """An HTTP/1.1 request with a body whose (first) Expect lists 100-continue
    expects it, as Go's hasToken reads it; an empty Expect is no expectation."""
    reader = RequestReader(8192)
    reader.feed(b"POST /x HTTP/1.1\r\nHost: a\r\nExpect: " + expect + b"\r\n" + framing + b"\r\n\r\n")
    assert isinstance(reader.next_event(), Request)
    assert reader.expects_continue is continues


@pytest.mark.parametrize(
    "data",
    [
        b"POST /x HTTP/1.1\r\nHost: a\r\nExpect: foo\r\nContent-Length: 1\r\n\r\na",
        b"GET /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        b"POST /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\na",
        b"POST /x HTTP/1.1\r\nHost: a\r\nExpect: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 1\r\n\r\na",
    ],
    ids=["unknown", "no-body", "http10", "first-unknown"],
)
def test_other_expectations_are_417(data: bytes) -> None:
    """Go answers 417 to an Expect it will not meet (anything but 100-continue,
    or 100-continue without a body or on HTTP/1.0); so does dockgate."""
    with pytest.raises(BadRequest) as info:
        events(data)
    assert info.value.status == 417


@pytest.mark.parametrize("host", [b"a b", b"a/b", b"a\x80", b'a"b', b"a@b"])
def test_a_malformed_host_is_400(host: bytes) -> None:
    """A Host with a byte outside a URI host and port is 400, as the daemon answers."""
    with pytest.raises(BadRequest):
        events(b"GET /_ping HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")


@pytest.mark.parametrize(
    "host",
    [b"docker", b"api.moby.localhost", b"127.0.0.1:2375", b"[::1]:2375", b"%2Fvar%2Frun%2Fd.sock", b""],
)
def test_hosts_clients_send_are_read(host: bytes) -> None:
    """The Host values real clients send (names, addresses with ports, bracketed
    IPv6, a percent-encoded socket path, empty) are read."""
    _, got = events(b"GET /_ping HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert shape(got) == ["GET /_ping", "end"]


def test_writer_frames_by_length_chunked_or_close() -> None:
    """The response writer keeps a declared length, chunks an undelimited HTTP/1.1 body, and closes
    the connection to delimit one for HTTP/1.0; a second head in one cycle is an error."""
    w = ResponseWriter()
    head = w.head(200, b"OK", [(b"content-length", b"2")], method="GET", http10=False,
                  keep_alive=True)
    assert head == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
    assert b"".join(w.data(b"OK")) == b"OK" and w.end() == b"" and w.done and w.keep_alive
    with pytest.raises(ValueError):
        w.head(200, b"OK", [], method="GET", http10=False, keep_alive=True)
    w.next_cycle()
    head = w.head(200, b"OK", [(b"content-type", b"application/json")], method="GET",
                  http10=False, keep_alive=True)
    assert head.endswith(b"Transfer-Encoding: chunked\r\n\r\n")
    assert b"".join(w.data(b"abc")) == b"3\r\nabc\r\n" and w.end() == b"0\r\n\r\n"
    w.next_cycle()
    head = w.head(200, b"OK", [], method="GET", http10=True, keep_alive=False)
    assert head == b"HTTP/1.0 200 OK\r\n\r\n"  # HTTP/1.0 closes without saying so
    assert b"".join(w.data(b"abc")) == b"abc" and w.end() == b"" and not w.keep_alive


def test_writer_keeps_the_declared_length_and_bodiless_responses() -> None:
    """The writer refuses bytes beyond or short of the declared length, and any body on a HEAD
    response; 100 Continue is written as an interim head."""
    w = ResponseWriter()
    w.head(200, b"OK", [(b"content-length", b"2")], method="GET", http10=False, keep_alive=True)
    with pytest.raises(ValueError):
        w.data(b"abc")
    w = ResponseWriter()
    w.head(200, b"OK", [(b"content-length", b"2")], method="GET", http10=False, keep_alive=True)
    w.data(b"a")
    with pytest.raises(ValueError):
        w.end()
    w = ResponseWriter()
    w.head(200, b"OK", [(b"content-length", b"9")], method="HEAD", http10=False, keep_alive=True)
    assert w.end() == b""
    with pytest.raises(ValueError):
        w.data(b"x")
    assert ResponseWriter().informational(100) == b"HTTP/1.1 100 Continue\r\n\r\n"


# -- h11 as an independent reference ------------------------------------------

VALID = [
    b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n",
    b"GET /v1.51/containers/json?all=1&filters=%7B%7D HTTP/1.1\r\nHost: d\r\nUser-Agent: x\r\n\r\n",
    POST,
    b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
    b"Content-Length: 13\r\n\r\n{\"Image\":\"a\"}",
    b"HEAD /_ping HTTP/1.1\r\nHost: d\r\nX-Empty:\r\nX-Tab: a\tb\r\n\r\n",
    b"GET /_ping HTTP/1.0\r\n\r\n",
]


@pytest.mark.parametrize("data", VALID)
def test_requests_read_as_h11_reads_them(data: bytes) -> None:
    """For valid requests the reader and h11 agree on method, target, fields and body."""
    ref = h11.Connection(h11.SERVER)
    ref.receive_data(data)
    want: list[object] = []
    while True:
        event = ref.next_event()
        if isinstance(event, h11.Request):
            want.append((event.method, event.target, [(n, v) for n, v in event.headers]))
        elif isinstance(event, h11.Data):
            want.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            want.append("end")
            break
    _, got = events(data, step=3)
    mine: list[object] = []
    for item in got:
        if isinstance(item, Request):
            mine.append((item.method, item.target, list(item.headers)))
        elif isinstance(item, Body):
            mine.append(item.data)
        elif isinstance(item, End):
            mine.append("end")
    body = lambda items: b"".join(i for i in items if isinstance(i, bytes))  # noqa: E731
    assert mine[0] == want[0] and mine[-1] == want[-1] and body(mine) == body(want)


@pytest.mark.parametrize("http10", [False, True])
@pytest.mark.parametrize("length", [None, 5])
def test_responses_parse_with_h11(http10: bool, length: int | None) -> None:
    """What the writer frames, h11 as a client reads back unchanged."""
    w = ResponseWriter()
    headers = [(b"content-type", b"text/plain")]
    if length is not None:
        headers.append((b"content-length", b"%d" % length))
    wire = w.head(200, b"OK", headers, method="GET", http10=http10, keep_alive=not http10)
    wire += b"".join(w.data(b"he")) + b"".join(w.data(b"llo")) + w.end()
    ref = h11.Connection(h11.CLIENT)
    ref.send(h11.Request(method="GET", target="/", headers=[("host", "d")]))
    ref.send(h11.EndOfMessage())
    ref.receive_data(wire)
    if http10 and length is None:
        ref.receive_data(b"")  # close-delimited
    got = b""
    while True:
        event = ref.next_event()
        if isinstance(event, h11.Response):
            assert event.status_code == 200
        elif isinstance(event, h11.Data):
            got += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
    assert got == b"hello"


def test_repeated_response_heads_are_framed_for_each_request() -> None:
    """A remembered head (tuple headers, as protocol passes the daemon's) is still
    framed for its own method, HTTP version and keep-alive."""
    headers = ((b"content-type", b"application/json"),)
    cases = [
        (dict(method="GET", http10=False, keep_alive=True), b"Transfer-Encoding: chunked", True),
        (dict(method="HEAD", http10=False, keep_alive=True), None, False),
        (dict(method="GET", http10=True, keep_alive=True), None, True),
        (dict(method="GET", http10=False, keep_alive=False), b"Connection: close", True),
    ]
    for _ in range(2):  # the second round is answered from memory
        for kw, line, has_body in cases:
            writer = ResponseWriter()
            head = writer.head(200, b"OK", headers, **kw)  # type: ignore[arg-type]
            status_line = b"HTTP/1.0 200 OK\r\n" if kw["http10"] else b"HTTP/1.1 200 OK\r\n"
            assert head.startswith(status_line + b"content-type: application/json\r\n")
            if line is None:
                assert b"transfer-encoding" not in head and b"connection" not in head
            else:
                assert line in head
            if has_body:
                assert b"".join(writer.data(b"x")) in (b"x", b"1\r\nx\r\n")
            else:
                with pytest.raises(ValueError):
                    writer.data(b"x")
            # HTTP/1.0 keeps alive only with a length (HEAD has none to send)
            assert writer.keep_alive == (kw["keep_alive"] and (not kw["http10"] or not has_body))


CHUNKED_HEAD = b"POST /containers/create HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def test_one_byte_chunks_are_refused_early_with_413() -> None:
    """A 1 MB body sent as 1-byte chunks is refused (413) after a bounded number of
    chunks, long before the body is read: the chunks a body may use grow with its size."""
    reader = RequestReader(8192)
    reader.feed(CHUNKED_HEAD)
    assert isinstance(reader.next_event(), Request)
    one = b"1\r\nx\r\n"
    fed = 0
    with pytest.raises(DockgateError) as caught:
        for _ in range(1 << 20):
            reader.feed(one * 64)
            fed += 64
            while (event := reader.next_event()) is not None:
                assert isinstance(event, Body)
    assert caught.value.status == 413
    assert "chunks" in str(caught.value)
    limit = FREE_CHUNKS + FREE_CHUNKS // (MIN_CHUNK_AVERAGE - 1) + 64
    assert fed <= limit + 64


def test_many_chunks_of_ordinary_size_are_read() -> None:
    """A stream of 20000 chunks of 100 bytes (tar headers, small writes) passes whole."""
    data = [bytes([65 + i % 26]) * 100 for i in range(20000)]
    _, out = events(CHUNKED_HEAD + chunked(data), step=65536)
    assert shape(out) == ["POST /containers/create", b"".join(data), "end"]


def test_a_tar_stream_of_tiny_files_in_gos_chunks_is_read() -> None:
    """Go's client makes a chunk of each write to its body pipe: a tar of 5000 one-byte
    files is header, data and padding chunks (512, 1, 511 bytes) and passes whole."""
    data = [piece for i in range(5000)
            for piece in (bytes([65 + i % 26]) * 512, b"x", bytes(511))]
    _, out = events(CHUNKED_HEAD + chunked(data), step=65536)
    assert shape(out) == ["POST /containers/create", b"".join(data), "end"]


def test_chunks_in_one_read_are_one_event() -> None:
    """However many chunks one read holds, the reader makes one body event of them."""
    data = [b"ab" * 32] * 1000
    _, out = events(CHUNKED_HEAD + chunked(data))
    bodies = [e for e in out if isinstance(e, Body)]
    assert len(bodies) == 1 and bodies[0].data == b"ab" * 32000
    assert isinstance(out[-1], End)


@settings(max_examples=300, deadline=None)
@given(line=size_lines(), step=st.sampled_from([1, 2, 5, 1000]))
def test_request_chunk_size_lines_are_read_as_the_grammar_says(line: bytes, step: int) -> None:
    """A client's chunk-size line (leading zeros, either case, any tail of digits,
    blanks, extensions or stray bytes) gives a body of the size its digits say
    exactly when the grammar accepts it (1-16 hex digits, blanks, a ``;``
    extension), however the bytes are split; anything else is refused: the
    request's framing is read one way only."""
    want = accepted_size(line)
    got = want or 0
    head = b"POST /v1.51/images/load HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n"
    data = head + line + b"\r\n" + (b"x" * got + b"\r\n0\r\n\r\n" if got else b"\r\n")
    step = max(step, got // 64)
    if want is None:
        with pytest.raises(DockgateError):
            events(data, step)
        return
    reader, out = events(data, step)
    assert shape(out) == ["POST /v1.51/images/load"] + ([b"x" * got] if got else []) + ["end"]
    assert reader.keep_alive

"""Unit tests for dockgate.http1.wire: raw head checks and hop-by-hop handling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockgate.errors import BadRequest, HeadTooLarge
from dockgate.http1 import wire

OK_HEADS = [
    b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n",
    b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 2\r\n\r\n",
    b"POST /build HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /build HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: Chunked\r\n\r\n",
]

BAD_HEADS = [
    (
        b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
        "duplicate Content-Length",
    ),
    (
        b"POST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 3\r\n\r\n",
        "duplicate Content-Length",
    ),
    (b"POST / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", "both"),
    (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "repeated",
    ),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "unsupported"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", "unsupported"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding:\tchunked ,\r\n\r\n", "unsupported"),
    (b"POST / HTTP/1.1\r\nContent-Length: +2\r\n\r\n", "invalid Content-Length"),
    (b"POST / HTTP/1.1\r\nContent-Length: 0x2\r\n\r\n", "invalid Content-Length"),
    (b"GET / HTTP/1.1\nHost: d\n\n", "bare LF"),
    (b"GET / HTTP/1.1\r\nHost: d\n\r\n", "bare LF"),
    (b"\r\nGET / HTTP/1.1\r\n\r\n", "blank line"),
    (b"GET / HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n", "folded"),
    (b"GET / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", "malformed header"),
    (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", "malformed header"),
]


@pytest.mark.parametrize("head", OK_HEADS)
def test_accepts_plain_heads(head: bytes) -> None:
    """Ordinary framing passes the raw check."""
    wire.check_request_head(head)


@pytest.mark.parametrize(("head", "why"), BAD_HEADS)
def test_refuses_ambiguous_framing(head: bytes, why: str) -> None:
    """Every framing that two parsers could read differently is a 400 naming the problem."""
    with pytest.raises(BadRequest) as info:
        wire.check_request_head(head)
    assert why in info.value.message
    assert info.value.status == 400


def test_find_head_end() -> None:
    """The head ends after the first blank line, CRLF or (to be refused later) bare LF."""
    assert wire.find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nBODY") == len(
        b"GET / HTTP/1.1\r\nA: b\r\n\r\n"
    )
    assert wire.find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n") == -1
    assert wire.find_head_end(b"GET / HTTP/1.1\n\nX") == len(b"GET / HTTP/1.1\n\n")


def test_end_to_end_drops_hop_by_hop_and_connection_named() -> None:
    """Hop-by-hop headers, those named in Connection, and Content-Length are dropped."""
    headers = [
        (b"connection", b"keep-alive, X-Secret"),
        (b"x-secret", b"1"),
        (b"keep-alive", b"timeout=5"),
        (b"upgrade", b"tcp"),
        (b"te", b"trailers"),
        (b"content-length", b"5"),
        (b"content-type", b"application/json"),
        (b"x-registry-auth", b"abc"),
    ]
    assert wire.end_to_end(headers) == [
        (b"content-type", b"application/json"),
        (b"x-registry-auth", b"abc"),
    ]


def test_serialise_response_head_refuses_line_breaks() -> None:
    """A header value with CR or LF can never be written into a raw head."""
    assert (
        wire.serialise_response_head(101, b"UPGRADED", [(b"upgrade", b"tcp")])
        == b"HTTP/1.1 101 UPGRADED\r\nupgrade: tcp\r\n\r\n"
    )
    with pytest.raises(ValueError):
        wire.serialise_response_head(200, b"OK", [(b"x", b"a\r\nb: c")])


def test_header_count_is_capped_with_431() -> None:
    """A head within the size limit but with more than MAX_HEADERS fields is refused
    with 431; MAX_HEADERS fields pass."""
    def head(n: int) -> bytes:
        return b"GET /_ping HTTP/1.1\r\nHost: d\r\n" + b"".join(
            b"X-%d: 1\r\n" % i for i in range(n - 1)) + b"\r\n"
    wire.check_request_head(head(wire.MAX_HEADERS))
    with pytest.raises(HeadTooLarge) as exc:
        wire.check_request_head(head(wire.MAX_HEADERS + 1))
    assert exc.value.status == 431 and str(wire.MAX_HEADERS) in exc.value.message


def test_one_token_list_reading_for_both_roles() -> None:
    """``wire.tokens`` lower-cases, strips optional whitespace and drops empty
    members; ``connection_tokens`` and both codecs' ``close`` checks read through it,
    and admission never forwards a header a Connection header names."""
    assert wire.tokens(b" Keep-Alive ,, \tX-Foo,close") == {b"keep-alive", b"x-foo", b"close"}
    assert wire.tokens(b", ,") == frozenset()
    assert wire.connection_tokens([(b"Connection", b"x-a"), (b"connection", b"X-B, ")]) == {
        b"x-a", b"x-b"}


@given(st.lists(st.sampled_from([b"\r", b"\n", b"a", b":", b" "]), max_size=40).map(b"".join))
def test_find_head_end_is_the_expressions_first_match(data: bytes) -> None:
    """``find_head_end`` ends where ``HEAD_END`` (CRLF or bare LF blank line) first
    matches, over strings made of CR, LF and a few other bytes."""
    match = wire.HEAD_END.search(data)
    assert wire.find_head_end(data) == (-1 if match is None else match.end())

"""Chunked request framing the daemon reads differently from dockgate.

The rule: where dockgate and the daemon (Go's net/http) could read a request's
framing differently, dockgate answers 400 and forwards nothing.

A trailer hides a request.  Go reads a trailer section with textproto, which
takes a bare LF as a line end, and after a POST skips the CR/LF bytes that
lead the next request: ``0\\r\\nX: a\\n\\n`` ends the body for Go, and what
follows (a head in bare-LF lines, its body, then ``\\r\\n\\r\\n``) is a
request of its own.  The bare daemon creates the privileged container hidden
there.  dockgate reads the bytes up to the first CRLF as one trailer field
(``X``, its value unchecked) and drops it.  That is safe here, because dockgate
forwards its own framing and never the trailer, but it is a second reading
of the same bytes, so it must be refused.

HTTP/1.0 with ``Transfer-Encoding: chunked``.  Go ignores Transfer-Encoding
on an HTTP/1.0 request (issue 12785): the body is empty (no Content-Length)
and the chunks are the next request.  The bare daemon refuses the create for
its empty body; dockgate reads the chunks as the body and creates the
container.

Chunk lines the daemon refuses.  Go cuts a chunk extension after trimming
trailing whitespace, so ``2b ;e`` (BWS before ``;``) is not a size to it.
Go refuses a chunk line of 4096 bytes or more.  dockgate accepted both (its
4096-byte limit applied only while no CRLF had arrived, so a longer line that
arrived with its CRLF, in one read or several, was accepted).

Heads the daemon refuses: ``Expect: foo`` (417), ``Trailer: Content-Length``
and ``Host: a b`` (400).  dockgate dropped or replaced those fields and
forwarded the create; now it answers as the daemon does.

Found by an attack round with the daemons as oracle (session 16); dockgate
always forwarded its own framing, so none of these reached the daemon as sent,
but each was a second reading of the client's bytes.
"""

from __future__ import annotations

import json
import re

import pytest
from support import unixhttp as http
from support.engines import IMAGE, Engine, unique
from support.policygate import POLICY_NAMES, PolicyGate, policy_audit_guard, policy_gates
from support.unixhttp import talk

pytestmark = [pytest.mark.engine, pytest.mark.allow_refusals]
_ = (policy_gates, policy_audit_guard)  # fixtures for pytest

PRIVILEGED = json.dumps({"Image": IMAGE, "Cmd": ["true"],
                         "HostConfig": {"Privileged": True, "NetworkMode": "none"}}).encode()
PLAIN = json.dumps({"Image": IMAGE, "Cmd": ["true"],
                    "HostConfig": {"NetworkMode": "none"}}).encode()
PING_CLOSE = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"


def _chunked_head(name: str, version: bytes = b"1.1", *fields: bytes) -> bytes:
    return (b"POST /v1.41/containers/create?name=%s HTTP/%s\r\nHost: docker\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            % (name.encode(), version)) + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


def _statuses(answer: bytes) -> list[bytes]:
    """The status codes of the answers, in order (a JSON body ends in a bare LF)."""
    return re.findall(rb"(?:^|\n)HTTP/1\.[01] ([0-9]{3}) ", answer)


def _refused_400(answer: bytes) -> None:
    assert _statuses(answer)[:1] == [b"400"], answer
    assert b'"message": "dockgate: ' in answer, answer


def _hidden_in_trailer(outer: str, hidden: str) -> bytes:
    """A chunked create of ``outer`` whose trailer section holds, for Go, a privileged
    create of ``hidden`` in bare-LF lines; then a ping that closes."""
    smuggled = (b"POST /v1.41/containers/create?name=%s HTTP/1.1\nHost: docker\n"
                b"Content-Type: application/json\nConnection: close\n"
                b"Content-Length: %d\n\n" % (hidden.encode(), len(PRIVILEGED))) + PRIVILEGED
    assert b"\r" not in smuggled
    return (_chunked_head(outer) + b"%x\r\n%s\r\n" % (len(PLAIN), PLAIN)
            + b"0\r\nX: a\n\n" + smuggled + b"\r\n\r\n" + PING_CLOSE)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_a_request_hidden_in_a_chunked_trailer_is_refused(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], policy: str
) -> None:
    """The bare daemon reads a trailer ending ``X: a\\n\\n`` as the body's end and the
    bare-LF request after it as a request: it creates both containers, the hidden one
    privileged.  Through baseline and restricted the request is refused 400 and
    neither container exists."""
    outer, hidden = unique("frame-outer"), unique("frame-hidden")
    answer = talk(engine.daemon_socket, _hidden_in_trailer(outer, hidden))
    assert _statuses(answer)[:2] == [b"201", b"201"], answer
    assert http.host_config(engine.daemon_socket, outer) is not None
    config = http.host_config(engine.daemon_socket, hidden)
    assert config is not None and config["Privileged"] is True

    outer, hidden = unique("frame-outer"), unique("frame-hidden")
    answer = talk(policy_gates[(engine.name, policy)].socket, _hidden_in_trailer(outer, hidden))
    _refused_400(answer)
    assert http.host_config(engine.daemon_socket, outer) is None
    assert http.host_config(engine.daemon_socket, hidden) is None


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_chunked_on_http10_is_refused(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], policy: str
) -> None:
    """``Transfer-Encoding: chunked`` on an HTTP/1.0 request: the bare daemon ignores
    it, reads an empty body and creates nothing (28.5 400, 20.10 500).  Through
    baseline and restricted it is refused 400 and no container exists."""
    def wire(name: str) -> bytes:
        return _chunked_head(name, b"1.0") + b"%x\r\n%s\r\n0\r\n\r\n" % (len(PLAIN), PLAIN)

    direct = unique("frame-h10")
    answer = talk(engine.daemon_socket, wire(direct), timeout=10)
    assert _statuses(answer)[:1] in ([b"400"], [b"500"]), answer
    assert http.host_config(engine.daemon_socket, direct) is None

    proxied = unique("frame-h10")
    answer = talk(policy_gates[(engine.name, policy)].socket, wire(proxied), timeout=10)
    _refused_400(answer)
    assert http.host_config(engine.daemon_socket, proxied) is None


CHUNK_LINES = {
    "bws-before-extension": b"%x ;e\r\n",
    "tab-before-extension": b"%x\t;e\r\n",
    "4500-byte-line": b"%x;" + b"e" * 4500 + b"\r\n",
}


@pytest.mark.parametrize("line", list(CHUNK_LINES.values()), ids=list(CHUNK_LINES))
def test_chunk_lines_the_daemon_refuses_are_refused(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], line: bytes
) -> None:
    """A chunk-size line Go does not read as one (BWS before ``;``, 4096 bytes or
    more): the bare daemon refuses the create (28.5 400, 20.10 500) and creates
    nothing; through baseline it is refused 400 and no container exists."""
    def wire(name: str) -> bytes:
        return (_chunked_head(name) + line % len(PLAIN) + PLAIN + b"\r\n0\r\n\r\n"
                + PING_CLOSE)

    direct = unique("frame-line")
    answer = talk(engine.daemon_socket, wire(direct), timeout=10)
    assert _statuses(answer)[:1] in ([b"400"], [b"500"]), answer
    assert http.host_config(engine.daemon_socket, direct) is None

    proxied = unique("frame-line")
    answer = talk(policy_gates[(engine.name, "baseline")].socket, wire(proxied), timeout=10)
    _refused_400(answer)
    assert http.host_config(engine.daemon_socket, proxied) is None


HEADS = {
    "expect-unknown": (b"Expect: foo\r\n", b"417"),
    "trailer-content-length": (b"Trailer: Content-Length\r\n", b"400"),
    "host-with-space": (b"X-Host: _\r\n", b"400"),
}


@pytest.mark.parametrize("case", list(HEADS), ids=list(HEADS))
def test_heads_the_daemon_refuses_are_refused_alike(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], case: str
) -> None:
    """A create whose head the daemon refuses (an Expect it will not meet: 417; a
    chunked body announcing a Content-Length trailer, a Host with a space: 400)
    creates nothing on
    the bare daemon; through baseline it gets the same status from dockgate and
    nothing is created."""
    field, status = HEADS[case]

    def wire(name: str) -> bytes:
        if case == "trailer-content-length":  # (Go checks Trailer on chunked bodies)
            return _chunked_head(name, b"1.1", field[:-2]) + b"%x\r\n%s\r\n0\r\n\r\n" % (
                len(PLAIN), PLAIN)
        head = (b"POST /v1.41/containers/create?name=%s HTTP/1.1\r\nHost: docker\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
                % (name.encode(), len(PLAIN), field))
        if case == "host-with-space":
            head = head.replace(b"Host: docker", b"Host: a b").replace(field, b"")
        return head + PLAIN

    direct = unique("frame-head")
    answer = talk(engine.daemon_socket, wire(direct), timeout=10)
    assert _statuses(answer)[:1] == [status], answer
    assert http.host_config(engine.daemon_socket, direct) is None

    proxied = unique("frame-head")
    answer = talk(policy_gates[(engine.name, "baseline")].socket, wire(proxied), timeout=10)
    assert _statuses(answer)[:1] == [status], answer
    assert b'"message": "dockgate: ' in answer, answer
    assert http.host_config(engine.daemon_socket, proxied) is None

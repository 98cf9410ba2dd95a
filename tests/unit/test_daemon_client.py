"""dockgate's own questions to the daemon (``proxy.daemon_client``), over a real unix
socket to a small stand-in daemon.

The stand-in answers each path in a scripted way, including faults a real
daemon cannot be made to show on demand: no answer at all, an answer over the
size limit, a non-JSON 200, an answer cut short.  A private epoll reactor is
iterated until the answer comes, so the tests need no installed reactor.
"""

from __future__ import annotations

import json
import os
import random
import socket
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hyperlink import EncodedURL
from support.loopback import serving
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.epollreactor import EPollReactor

from dockgate.errors import TIMED_OUT
from dockgate.proxy.daemon_client import Answer, DaemonClient, _sent_as_it_is
from dockgate.service.listener_spec import parse_upstream
from dockgate.service.listeners import upstream_endpoint


def _response(status: str, body: bytes, content_type: bytes = b"application/json",
              length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (status.encode(), content_type, size, body))


class _Daemon(socketserver.ThreadingUnixStreamServer):
    """A stand-in daemon: answers by path, counts connections, keeps request heads."""

    daemon_threads = True

    def __init__(self, address: Any) -> None:
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.accepted = 0
        self.ended = threading.Event()  # a kept-alive connection saw the client's EOF
        self.dropped = threading.Event()  # the client closed a connection mid-answer
        super().__init__(address, _Handler)


class _TcpDaemon(_Daemon):
    """The stand-in daemon on a TCP port (``--upstream tcp:host:port``)."""

    address_family = socket.AF_INET


class _Handler(socketserver.BaseRequestHandler):
    server: _Daemon

    def handle(self) -> None:
        self.server.accepted += 1
        sock: socket.socket = self.request
        buffered = b""
        while True:
            while b"\r\n\r\n" not in buffered:
                data = sock.recv(65536)
                if not data:
                    self.server.ended.set()
                    return
                buffered += data
            head, _, buffered = buffered.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffered) < length:
                buffered += sock.recv(65536)
            self.server.heads.append(head)
            self.server.bodies.append(buffered[:length])
            buffered = buffered[length:]
            path = head.split(b" ")[1]
            try:
                if not self._answer(sock, path):
                    return
            except OSError:  # the client closed while the answer was being sent
                self.server.dropped.set()
                return

    def _answer(self, sock: socket.socket, path: bytes) -> bool:
        """Answer ``path``; False when the connection must end."""
        if path in (b"/silent", b"/stall"):
            if path == b"/stall":
                sock.sendall(_response("200 OK", b'{"Name": "da', length=40))
            sock.settimeout(30)
            if sock.recv(1) == b"":  # no answer, or half of one: wait for the client to go
                self.server.dropped.set()
            return False
        if path == b"/big":
            sock.sendall(_response("200 OK", b"", length=5 << 20))
            sock.sendall(b"[" + b" " * (5 << 20))
            return False
        if path == b"/cut":
            sock.sendall(_response("200 OK", b'{"Name": "da', length=40))
            return False
        if path == b"/text":
            sock.sendall(_response("200 OK", b"OK", b"text/plain"))
        elif path == b"/missing":
            sock.sendall(_response("404 Not Found", b'{"message":"no such volume"}'))
        else:
            sock.sendall(_response("200 OK", json.dumps({"Path": path.decode()}).encode()))
        return True


@pytest.fixture
def daemon() -> Iterator[_Daemon]:
    with tempfile.TemporaryDirectory() as tmp, \
            serving(_Daemon(os.path.join(tmp, "docker.sock"))) as server:
        yield server


def _client(path: str, timeout: float | None = 30.0) -> tuple[EPollReactor, DaemonClient]:
    reactor = EPollReactor()  # type: ignore[no-untyped-call]
    return reactor, DaemonClient(reactor, UNIXClientEndpoint(reactor, path),
                                 answer_timeout=timeout)


def _wait(reactor: EPollReactor, d: Deferred[Any]) -> Any:
    """Iterate ``reactor`` until ``d`` fires; its result."""
    out: list[Any] = []
    d.addBoth(out.append)
    for _ in range(10000):
        if out:
            return out[0]
        reactor.iterate(0.01)  # type: ignore[no-untyped-call]
    raise AssertionError("no answer")


def _dropped(reactor: EPollReactor, daemon: _Daemon) -> bool:
    """Whether the daemon saw the client close a connection mid-answer (the reactor turning,
    since a connection is closed in one of its turns)."""
    for _ in range(1000):
        if daemon.dropped.is_set():
            return True
        reactor.iterate(0.01)  # type: ignore[no-untyped-call]
    return False


def _ask(reactor: EPollReactor, client: DaemonClient, target: str, **kw: Any) -> Answer:
    answer = _wait(reactor, client.ask("GET" if "method" not in kw else kw.pop("method"),
                                       target, **kw))
    assert isinstance(answer, Answer)
    return answer


def test_answers_are_decoded_and_the_connection_is_kept_alive(daemon: _Daemon) -> None:
    """A 2xx JSON answer is decoded; requests say Host: docker and User-Agent: dockgate; the next
    question reuses the kept-alive connection, and ``close`` ends it."""
    reactor, client = _client(daemon.server_address)  # type: ignore[arg-type]
    first = _ask(reactor, client, "/volumes/data")
    second = _ask(reactor, client, "/containers/c1/json")
    assert first.status == 200 and first.value == {"Path": "/volumes/data"}
    assert second.value == {"Path": "/containers/c1/json"}
    assert daemon.accepted == 1
    head = daemon.heads[0].lower()
    assert head.startswith(b"get /volumes/data http/1.1\r\n")
    assert b"\r\nhost: docker" in head and b"\r\nuser-agent: dockgate" in head
    _wait(reactor, client.close())
    assert daemon.ended.wait(10), "the kept-alive connection was not closed"


def test_a_daemon_that_never_answers_is_timed_out_and_dropped(daemon: _Daemon) -> None:
    """No answer within the answer timeout: status TIMED_OUT, no value, and the connection is
    dropped (the next question opens a new one)."""
    reactor, client = _client(daemon.server_address, timeout=0.3)  # type: ignore[arg-type]
    answer = _ask(reactor, client, "/silent")
    assert (answer.status, answer.value, answer.raw) == (TIMED_OUT, None, b"")
    assert _dropped(reactor, daemon), "the connection was not dropped"
    assert _ask(reactor, client, "/_ping").value == {"Path": "/_ping"}
    assert daemon.accepted == 2


def test_an_answer_that_stalls_mid_body_is_timed_out_and_dropped(daemon: _Daemon) -> None:
    """The answer timeout covers the whole body, not only the head: an answer that stops halfway
    is TIMED_OUT with no value and no partial body, and its connection is not reused."""
    reactor, client = _client(daemon.server_address, timeout=0.3)  # type: ignore[arg-type]
    answer = _ask(reactor, client, "/stall")
    assert (answer.status, answer.value, answer.raw) == (TIMED_OUT, None, b"")
    assert _dropped(reactor, daemon), "the connection was not dropped"
    assert _ask(reactor, client, "/_ping").status == 200
    assert daemon.accepted == 2


def test_an_answer_over_the_limit_is_not_read_and_its_connection_dropped(daemon: _Daemon) -> None:
    """An answer past 4 MiB yields no value and no body, and its connection is not reused."""
    reactor, client = _client(daemon.server_address)  # type: ignore[arg-type]
    answer = _ask(reactor, client, "/big")
    assert (answer.status, answer.value, answer.raw) == (0, None, b"")
    assert _dropped(reactor, daemon), "the rest of the answer was still read"
    assert _ask(reactor, client, "/_ping").status == 200
    assert daemon.accepted == 2


def test_non_json_and_error_answers_have_no_value_but_keep_their_body(daemon: _Daemon) -> None:
    """A non-JSON 200 and a 404 have no value; the 404's status, content type and body are kept
    for replaying to the client."""
    reactor, client = _client(daemon.server_address)  # type: ignore[arg-type]
    text = _ask(reactor, client, "/text")
    assert (text.status, text.value, text.raw) == (200, None, b"OK")
    missing = _ask(reactor, client, "/missing")
    assert (missing.status, missing.value) == (404, None)
    assert missing.content_type == b"application/json"
    assert missing.raw == b'{"message":"no such volume"}'


def test_a_replayed_request_keeps_its_body_and_headers_but_not_framing_or_host(
        daemon: _Daemon) -> None:
    """A replay sends its payload as JSON with the caller's headers, except those the side request
    sets itself (Host, User-Agent, Content-Type, Content-Length)."""
    reactor, client = _client(daemon.server_address)  # type: ignore[arg-type]
    headers = (("host", "evil"), ("user-agent", "x"), ("content-length", "99"),
               ("x-registry-auth", "e30="))
    answer = _ask(reactor, client, "/images/create?fromImage=x", method="POST",
                  payload=b'{"a": 1}', headers=headers)
    assert answer.status == 200
    head = daemon.heads[0].lower()
    assert b"\r\nx-registry-auth: e30=" in head and b"evil" not in head
    assert b"\r\nuser-agent: x" not in head and b"content-length: 8" in head
    assert b"content-type: application/json" in head and daemon.bodies[0] == b'{"a": 1}'


def test_a_daemon_gone_mid_answer_or_absent_gives_no_value(daemon: _Daemon) -> None:
    """An answer cut short, and a daemon whose socket refuses, both yield status 0 and no value."""
    reactor, client = _client(daemon.server_address)  # type: ignore[arg-type]
    cut = _ask(reactor, client, "/cut")
    assert (cut.status, cut.value, cut.raw) == (0, None, b"")
    reactor, absent = _client(daemon.server_address + ".none")  # type: ignore[operator]
    assert _ask(reactor, absent, "/_ping") == Answer(0)


def test_a_target_treq_would_rewrite_is_not_sent(daemon: _Daemon) -> None:
    """A target that would not go out byte for byte as dockgate built it (here non-ASCII, which the
    URL library would percent-encode) is not sent at all: no value, and the daemon saw nothing."""
    reactor, client = _client(daemon.server_address)  # type: ignore[arg-type]
    assert _ask(reactor, client, "/volumes/dat\u00e9") == Answer(0)
    assert _ask(reactor, client, "/volumes/data%2Fx?filters=%7B%7D").status == 200
    assert [h.split(b" ")[1] for h in daemon.heads] == [b"/volumes/data%2Fx?filters=%7B%7D"]


def test_the_fast_target_check_agrees_with_the_url_library() -> None:
    """``_sent_as_it_is`` skips hyperlink only for targets hyperlink leaves byte for byte: on
    every target over the URI alphabet (random, with a fixed seed) and the awkward cases
    (empty query, brackets, quotes, non-ASCII) the quick answer equals the slow one, and the
    awkward ones are refused, a fragment too (the Agent would leave it off the request line)."""
    alphabet = "Aa0-._~!$&'()*+,;=:@/?%"
    rng = random.Random(7)  # noqa: S311 (a reproducible sample, not a secret)
    targets = ["/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
               for _ in range(5000)]
    awkward = ["/x?", "/x?a=[1]", '/x?q="', "/x#frag", "/volumes/dat\u00e9", "/x y"]
    for target in targets + awkward:
        url = "http://docker" + target
        slow = EncodedURL.from_text(url).to_uri().to_text() == url and "#" not in target
        assert _sent_as_it_is(target) == slow
    assert not any(_sent_as_it_is(t) for t in awkward)


def test_a_tcp_upstream_is_asked_over_the_same_endpoint_the_proxy_uses() -> None:
    """With ``--upstream tcp:host:port`` the questions go over the endpoint built for the proxy
    (``listeners.upstream_endpoint``), still with Host: docker."""
    server = _TcpDaemon(("127.0.0.1", 0))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        reactor = EPollReactor()  # type: ignore[no-untyped-call]
        reactor.startRunning()  # type: ignore[no-untyped-call]  # host names resolve in its threads
        spec = parse_upstream(f"tcp:127.0.0.1:{server.server_address[1]}")
        client = DaemonClient(reactor, upstream_endpoint(reactor, spec, 5.0),  # type: ignore[arg-type]
                              answer_timeout=30.0)
        assert _ask(reactor, client, "/version").value == {"Path": "/version"}
        assert b"\r\nhost: docker" in server.heads[0].lower()
        _wait(reactor, client.close())
        reactor.stop()  # type: ignore[no-untyped-call]
        reactor.iterate(0)  # type: ignore[no-untyped-call]  # its thread pool stops
    finally:
        server.shutdown()
        server.server_close()

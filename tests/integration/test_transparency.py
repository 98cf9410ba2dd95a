"""What a real client observes through dockgate is what it observes direct.

Each test runs the client's operation against the daemon's own socket first
(it works there), then through dockgate (privileged profile), and asks the
daemon what happened: legacy links removed by their ``<parent>/<alias>``
name, a Dockerfile from outside the build context (docker-py sends its text,
with newlines, in the query), ``attach(stream=False, logs=True)`` (the 101
head and the first frame must not arrive in one segment), and the daemon's
spelling of response header names, HTTP/1.0 keep-alive.  Also the cap on a
request's header count.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from support.engines import IMAGE, Engine, unique

pytestmark = pytest.mark.engine


@pytest.fixture
def clients(engine: Engine) -> Any:
    """(direct docker-py client, docker-py client through dockgate)."""
    direct, gated = engine.direct_client(), engine.client()
    yield direct, gated
    direct.close()
    gated.close()


def _linked_pair(api: Any) -> tuple[str, str]:
    """Create c1 and c2 with a legacy link c1 -> alias ``mylink``; return their names."""
    c1, c2 = unique("dglink1"), unique("dglink2")
    api.create_container(IMAGE, ["true"], name=c1,
                         host_config=api.create_host_config(network_mode="none"))
    api.create_container(IMAGE, ["true"], name=c2, host_config=api.create_host_config(
        network_mode="none", links={c1: "mylink"}))
    return c1, c2


def test_remove_legacy_link_by_parent_slash_alias(clients: Any) -> None:
    """``remove_container('c2/mylink', link=True)`` (DELETE /containers/c2/mylink?link=1,
    the daemon's route takes a slashed name) removes the link, not a container,
    through dockgate as direct."""
    direct, gated = clients
    made = []
    try:
        for client in (direct, gated):
            c1, c2 = _linked_pair(direct.api)
            made += [c2, c1]
            assert direct.api.inspect_container(c2)["HostConfig"]["Links"] == [
                f"/{c1}:/{c2}/mylink"]
            client.api.remove_container(f"{c2}/mylink", link=True)
            # The daemon's own record: the link is gone, both containers remain.
            assert not direct.api.inspect_container(c2)["HostConfig"]["Links"]
            assert direct.api.inspect_container(c1)["Name"] == f"/{c1}"
    finally:
        for name in made:
            direct.api.remove_container(name, force=True)


def test_build_with_dockerfile_outside_the_context(clients: Any, tmp_path: Path) -> None:
    """docker-py sends a Dockerfile from outside the context as dockerfile=<name>&
    dockerfile=<its text, %0A-escaped>: the daemon reads the first value and builds;
    through dockgate the build succeeds too and the image carries the label."""
    direct, gated = clients
    context, elsewhere = tmp_path / "ctx", tmp_path / "elsewhere"
    context.mkdir()
    elsewhere.mkdir()
    (context / "a.txt").write_text("a\n")
    for side, client in (("direct", direct), ("dockgate", gated)):
        tag = f"{unique('dgoutctx')}:latest"
        dockerfile = elsewhere / f"Dockerfile.{side}"
        dockerfile.write_text(f"FROM {IMAGE}\nLABEL dgside={side}\n")
        try:
            client.images.build(path=str(context), dockerfile=str(dockerfile), tag=tag,
                                rm=True, network_mode="none")
            assert direct.api.inspect_image(tag)["Config"]["Labels"]["dgside"] == side
        finally:
            direct.api.remove_image(tag, force=True)


def test_attach_logs_without_stream_returns_the_output(clients: Any, engine: Engine) -> None:
    """``attach(stream=False, logs=True)`` reads the 101 head with a buffered reader,
    then the socket itself: a frame that arrived with the head is lost.  Through
    dockgate the frames follow the head only once the client has read it, so docker-py
    gets the output every time (direct it races the daemon's two writes, and on a busy
    machine mostly loses), and a raw reader gets exactly the daemon's bytes."""
    direct, gated = clients
    ident = direct.api.create_container(IMAGE, ["echo", "hello"], host_config=(
        direct.api.create_host_config(network_mode="none")))["Id"]
    try:
        direct.api.start(ident)
        assert direct.api.wait(ident, timeout=60)["StatusCode"] == 0
        got = [gated.api.attach(ident, stream=False, logs=True) for _ in range(20)]
        assert got == [b"hello\n"] * 20
        request = (b"POST /containers/%s/attach?logs=1&stdout=1 HTTP/1.1\r\nHost: docker\r\n"
                   b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n" % ident.encode())
        for _ in range(5):
            after = [_raw_exchange(sock, request, to_end=True)[1]
                     for sock in (engine.daemon_socket, engine.proxy_socket)]
            assert after[0].endswith(b"hello\n") and after[1] == after[0]
    finally:
        direct.api.remove_container(ident, force=True)


def _raw_exchange(path: str, request: bytes, to_end: bool = False) -> tuple[bytes, bytes]:
    """Send ``request`` on a fresh unix connection; return (head, what followed it:
    what came with the head, or with ``to_end`` all until the server closes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before a head: {data!r}"
            data += chunk
        while to_end and (chunk := sock.recv(65536)):
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest


def _header_names(head: bytes) -> list[bytes]:
    return sorted(line.partition(b":")[0] for line in head.split(b"\r\n")[1:])


@pytest.mark.parametrize("target", [b"/_ping", b"/containers/json?all=1", b"/version",
                                    b"/info"])
def test_response_header_names_keep_the_daemons_spelling(engine: Engine, target: bytes) -> None:
    """The header names a client reads (raw socket) are those the daemon spelled
    (``Content-Type``, ``Api-Version``, ``Ostype``...), direct and through dockgate,
    including for a body dockgate rewrites (/version)."""
    request = b"GET %s HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n" % target
    direct, _ = _raw_exchange(engine.daemon_socket, request)
    gated, _ = _raw_exchange(engine.proxy_socket, request)
    assert any(n == b"Content-Type" for n in _header_names(direct))
    assert _header_names(gated) == _header_names(direct)


def test_attach_head_names_and_values_as_the_daemon_wrote_them(clients: Any,
                                                               engine: Engine) -> None:
    """The 101 head of an attach reaches the client with the daemon's header names
    and order (raw sockets, direct and through dockgate)."""
    direct, _ = clients
    ident = direct.api.create_container(IMAGE, ["echo", "hi"], host_config=(
        direct.api.create_host_config(network_mode="none")))["Id"]
    try:
        request = (b"POST /containers/%s/attach?logs=1&stdout=1 HTTP/1.1\r\nHost: docker\r\n"
                   b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n" % ident.encode())
        heads = [_raw_exchange(sock, request)[0]
                 for sock in (engine.daemon_socket, engine.proxy_socket)]
        lines = [[line.partition(b":")[0] for line in h.split(b"\r\n")] for h in heads]
        assert heads[0].startswith(b"HTTP/1.1 101 ")
        assert lines[1] == lines[0]
    finally:
        direct.api.remove_container(ident, force=True)


def _exchange_until_quiet(path: str, request: bytes, quiet: float = 1.0) -> tuple[bytes, bool]:
    """Send ``request`` on a fresh unix connection; return everything that came back
    until the server closed or went ``quiet`` seconds without a byte, and whether it
    closed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(request)
        sock.settimeout(quiet)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return data, False
            if not chunk:
                return data, True
            data += chunk


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] [0-9]{3} [^\r]*")


def _heads(data: bytes) -> list[list[bytes]]:
    """The header names of each response head in ``data`` (one per status line)."""
    return [[line.partition(b":")[0] for line in part.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]]
            for part in data.split(b"HTTP/1.")[1:]]


@pytest.mark.parametrize(("name", "request_bytes"), [
    ("keep-alive, pipelined twice",
     b"GET /_ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2),
    ("keep-alive, then HTTP/1.1",
     b"GET /_ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
     b"GET /version HTTP/1.1\r\nHost: docker\r\n\r\n"),
    ("plain, pipelined twice", b"GET /_ping HTTP/1.0\r\n\r\n" * 2),
    ("keep-alive, a HEAD", b"HEAD /_ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
])
def test_http10_keep_alive_as_the_daemon(engine: Engine, name: str, request_bytes: bytes) -> None:
    """HTTP/1.0 clients (``curl -0``, health checkers) see what the daemon does: a
    request asking for keep-alive is answered ``Connection: keep-alive`` and the
    connection carries the next pipelined request; a plain one is answered once
    with no Connection field and closed; status lines say the request's version.
    Same status lines, same header names in each head, same open or closed
    connection, direct and through dockgate."""
    direct, direct_closed = _exchange_until_quiet(engine.daemon_socket, request_bytes)
    gated, gated_closed = _exchange_until_quiet(engine.proxy_socket, request_bytes)
    want = 1 if name.startswith("plain") else request_bytes.count(b" HTTP/1.")
    status_lines = _STATUS_LINE.findall(direct)
    assert len(status_lines) == want, direct
    assert _STATUS_LINE.findall(gated) == status_lines, gated
    assert [sorted(h) for h in _heads(gated)] == [sorted(h) for h in _heads(direct)]
    assert gated_closed == direct_closed == name.startswith("plain")
    if not name.startswith("plain"):
        assert b"\r\nConnection: keep-alive\r\n" in gated


@pytest.mark.allow_refusals
def test_five_thousand_header_fields_get_431(engine: Engine) -> None:
    """A request with 5,000 header fields, well within the 64 KB head limit, is
    answered 431 with Docker's JSON error shape and not forwarded."""
    fields = b"".join(b"X-%d: a\r\n" % i for i in range(5000))
    request = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n" + fields + b"\r\n"
    assert len(request) < 64 * 1024
    head, body = _raw_exchange(engine.proxy_socket, request, to_end=True)
    assert head.startswith(b"HTTP/1.1 431 ")
    message = json.loads(body[body.index(b"{"):body.rindex(b"}") + 1])["message"]
    assert message.startswith("dockgate: ") and "header fields" in message

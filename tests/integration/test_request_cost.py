"""Issue 21 item 5: a request's cost is bounded by its size, whatever its framing.

A JSON body sent as 1-byte chunks is six times its size on the wire and, before
the chunk bound, cost dockgate a per-chunk event each.  The daemon reads such a
body and acts on it; dockgate refuses it early (413, Docker-shaped), and the
daemon is never asked.
"""

from __future__ import annotations

import contextlib
import json
import socket

import pytest
from support import unixhttp
from support.engines import IMAGE, Engine, unique

pytestmark = pytest.mark.engine


def chunked_create(sock_path: str, name: str, size: int) -> tuple[int, bytes]:
    """POST /containers/create?name=NAME with a ``size``-byte JSON body in 1-byte chunks."""
    filler = "x" * (size - 200)
    body = json.dumps({"Image": IMAGE, "Cmd": ["true"], "Labels": {"filler": filler},
                       "HostConfig": {"NetworkMode": "none"}}).encode()
    head = (f"POST /v1.41/containers/create?name={name} HTTP/1.1\r\nHost: docker\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    wire = head + b"".join(b"1\r\n%c\r\n" % c for c in body) + b"0\r\n\r\n"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(120)
    s.connect(sock_path)
    try:
        with contextlib.suppress(OSError):  # refused before the end: the connection closes
            s.sendall(wire)
        answer = b""
        while True:
            try:
                data = s.recv(65536)
            except OSError:
                break
            if not data:
                break
            answer += data
            if b"\r\n\r\n" in answer:
                head_end = answer.index(b"\r\n\r\n")
                lengths = [line for line in answer[:head_end].split(b"\r\n")
                           if line.lower().startswith(b"content-length:")]
                if lengths and len(answer) - head_end - 4 >= int(lengths[0].split(b":")[1]):
                    break
    finally:
        s.close()
    status = int(answer.split(b" ", 2)[1]) if answer else 0
    return status, answer.partition(b"\r\n\r\n")[2]


@pytest.mark.allow_refusals
def test_one_byte_chunks_are_refused_before_the_daemon_sees_them(engine: Engine) -> None:
    """The bare daemon creates a container from a 256 KB body sent as 1-byte
    chunks; through dockgate the same request is refused with 413 and a
    Docker-shaped message, and no container of that name exists."""
    direct = unique("chunks-direct")
    status, _ = chunked_create(engine.daemon_socket, direct, 256 << 10)
    assert status == 201
    assert engine.docker_direct("inspect", direct, check=False).returncode == 0
    proxied = unique("chunks-proxied")
    status, body = chunked_create(engine.proxy_socket, proxied, 256 << 10)
    assert status == 413
    assert json.loads(body)["message"].startswith("dockgate: request body sent in ")
    out = engine.docker_direct("inspect", proxied, check=False)
    assert out.returncode != 0 and "No such object" in out.stderr


@pytest.mark.allow_refusals
def test_too_many_object_members_are_refused_before_the_daemon_sees_them(
    engine: Engine,
) -> None:
    """The bare daemon creates a container with 20001 labels; through dockgate the
    same body is refused with 413 (a member costs far more to check than its
    bytes) and no container of that name exists."""
    labels = {f"k{i}": "v" for i in range(20001)}
    body = json.dumps({"Image": IMAGE, "Cmd": ["true"], "Labels": labels,
                       "HostConfig": {"NetworkMode": "none"}}).encode()
    direct = unique("keys-direct")
    status, _ = unixhttp.request(engine.daemon_socket, "POST",
                                 f"/v1.41/containers/create?name={direct}", body, timeout=120)
    assert status == 201
    proxied = unique("keys-proxied")
    status, answer = unixhttp.request(engine.proxy_socket, "POST",
                                      f"/v1.41/containers/create?name={proxied}", body, timeout=120)
    assert status == 413
    assert json.loads(answer)["message"] == "dockgate: JSON value has more than 20000 object members"
    out = engine.docker_direct("inspect", proxied, check=False)
    assert out.returncode != 0 and "No such object" in out.stderr

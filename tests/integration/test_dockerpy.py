"""docker-py (the Python SDK) through dockgate: create/start/logs/wait, exec,
hijacked sockets with half-close, and events."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import time
from typing import Any

import pytest
from support.engines import IMAGE, Engine

pytestmark = pytest.mark.engine


@pytest.fixture
def client(engine: Engine) -> Any:
    c = engine.client()
    yield c
    c.close()


def raw_socket(obj: Any) -> socket.socket:
    """The socket.socket under what docker-py's socket=True calls return."""
    sock = getattr(obj, "_sock", obj)
    assert isinstance(sock, socket.socket), type(obj)
    return sock


def read_all(sock: socket.socket, timeout: float = 30.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def demux(stream: bytes) -> tuple[bytes, bytes]:
    """Split Docker's multiplexed stream (8-byte frame headers) into stdout, stderr."""
    out: dict[int, list[bytes]] = {1: [], 2: []}
    pos = 0
    while pos < len(stream):
        assert len(stream) - pos >= 8, f"truncated frame header at {pos}"
        kind, size = struct.unpack(">BxxxL", stream[pos : pos + 8])
        assert kind in (1, 2), f"bad stream type {kind} at {pos}"
        out[kind].append(stream[pos + 8 : pos + 8 + size])
        pos += 8 + size
    return b"".join(out[1]), b"".join(out[2])


def test_create_start_wait_logs(engine: Engine, client: Any) -> None:
    """docker-py through dockgate creates, starts and waits for a container (exit code 3), reads
    stdout and stderr logs apart, and removes it."""
    container = client.containers.create(
        IMAGE, ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"], network_mode="none"
    )
    container.start()
    assert container.wait(timeout=60)["StatusCode"] == 3
    assert container.logs(stdout=True, stderr=False) == b"to-out\n"
    assert container.logs(stdout=False, stderr=True) == b"to-err\n"
    container.reload()
    assert container.status == "exited"
    container.remove()


def test_logs_stream_follow(engine: Engine, client: Any) -> None:
    """docker-py follows a running container's logs as a stream until the container exits."""
    container = client.containers.run(
        IMAGE,
        ["sh", "-c", "for i in 1 2 3; do echo n$i; sleep 0.2; done"],
        network_mode="none",
        detach=True,
    )
    lines = list(container.logs(stream=True, follow=True))
    assert b"".join(lines).split() == [b"n1", b"n2", b"n3"]
    assert container.wait(timeout=30)["StatusCode"] == 0


def test_exec_run(engine: Engine, client: Any) -> None:
    """docker-py exec_run returns the exec's exit code and output, and demultiplexes stdout from
    stderr."""
    container = client.containers.run(
        IMAGE, ["sleep", "300"], network_mode="none", init=True, detach=True
    )
    result = container.exec_run(["sh", "-c", "echo e-$((7*6)); exit 2"])
    assert result.exit_code == 2
    assert result.output == b"e-42\n"
    stream = container.exec_run(["sh", "-c", "echo a; echo b >&2"], demux=True)
    assert stream.output == (b"a\n", b"b\n")


def test_exec_socket_stdin_half_close(engine: Engine, client: Any) -> None:
    """On docker-py's raw exec socket, 512 KiB of stdin and its half-close reach the process, its
    stdout and stderr come back, and the exec exits 0."""
    container = client.containers.run(
        IMAGE, ["sleep", "300"], network_mode="none", init=True, detach=True
    )
    api = client.api
    exec_id = api.exec_create(container.id, ["sh", "-c", "sha256sum; echo done >&2"], stdin=True)[
        "Id"
    ]
    sock = raw_socket(api.exec_start(exec_id, socket=True))
    data = os.urandom(512 * 1024)
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out, err = demux(read_all(sock))
    finally:
        sock.close()
    assert out.split()[0].decode() == hashlib.sha256(data).hexdigest()
    assert err == b"done\n"
    deadline = time.monotonic() + 10
    while (info := api.exec_inspect(exec_id))["Running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert info["ExitCode"] == 0


def test_attach_socket_stdin_half_close(engine: Engine, client: Any) -> None:
    """On docker-py's raw attach socket with StdinOnce, 256 KiB of stdin come back unchanged and the
    half-close ends the process's stdin."""
    api = client.api
    config = api.create_container_config(
        IMAGE,
        ["sh", "-c", "cat; echo after-eof >&2"],
        stdin_open=True,
        host_config=api.create_host_config(network_mode="none"),
    )
    config["StdinOnce"] = True  # the daemon closes the process's stdin at our EOF
    container = api.create_container_from_config(config)
    sock = raw_socket(
        api.attach_socket(container, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    )
    data = os.urandom(256 * 1024)
    try:
        api.start(container)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out, err = demux(read_all(sock))
    finally:
        sock.close()
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    assert err == b"after-eof\n"
    assert api.wait(container, timeout=30)["StatusCode"] == 0


def test_events_bounded(engine: Engine, client: Any) -> None:
    """docker-py's bounded events query returns a container's create, start, die and destroy in
    order."""
    since = int(time.time()) - 1
    container = client.containers.run(IMAGE, ["true"], network_mode="none", detach=True)
    container.wait(timeout=30)
    container.remove()
    until = int(time.time()) + 2
    events = client.events(
        since=since, until=until, decode=True, filters={"container": container.id}
    )
    actions = [e["Action"] for e in events]
    assert [a for a in actions if a in ("create", "start", "die", "destroy")] == [
        "create",
        "start",
        "die",
        "destroy",
    ]


def test_low_level_version_and_ping(engine: Engine, client: Any) -> None:
    """docker-py's ping and version answer through dockgate with the engine's version, and the image
    list holds the test image."""
    assert client.ping() is True
    version = client.version()
    assert version["Version"] == engine.version
    # ``in``, not equality: the image may carry other tags that tests run before in the
    # same process (pytest-xdist's order) gave it.
    assert any("dgtest:latest" in i.tags for i in client.images.list())

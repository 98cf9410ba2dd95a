"""Record the gRPC messages of a real buildx build, for the decoder tests' fixtures.

A unix-socket relay between the docker CLI and a daemon copies bytes both ways
and keeps them per connection.  Afterwards each connection upgraded by
``POST /grpc`` or ``POST /session`` is read as HTTP/2 (with ``h2``) in both
directions, and every gRPC message is listed as ``(direction, :path,
message bytes)``.  On ``/grpc`` the CLI is the gRPC client; on ``/session``
the daemon is (it calls the CLI's file sync and secrets services).

Run as a script it starts engine 28.5 (or the one named), builds a small
context with buildx through the relay and writes the messages of interest to
tests/unit/data/buildkit/ (regenerate with
``python3 tests/support/grpccapture.py [20.10|28.5] [LABEL BUILDX-ARGS...]``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events

Message = tuple[str, str, bytes]


class Relay:
    """Listen on ``path``, connect each client to ``target``, record both directions."""

    def __init__(self, path: str, target: str) -> None:
        self.path, self.target = path, target
        self.connections: list[tuple[bytearray, bytearray]] = []
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            up, down = bytearray(), bytearray()
            self.connections.append((up, down))
            for a, b, buf in ((client, upstream, up), (upstream, client, down)):
                threading.Thread(target=_pump, args=(a, b, buf), daemon=True).start()

    def close(self) -> None:
        self.sock.close()


def _pump(src: socket.socket, dst: socket.socket, buf: bytearray) -> None:
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            data = b""
        if not data:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            return
        buf += data
        try:
            dst.sendall(data)
        except OSError:
            return


def _after_upgrade(data: bytes) -> tuple[str, bytes]:
    """The upgraded request's path and the bytes after its HTTP/1.1 head (or after the 101)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return "", b""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    return line, rest


def _paths(data: bytes) -> dict[int, str]:
    """``:path`` of each stream a gRPC client opened in ``data`` (read with h2 as its server)."""
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    )
    conn.initiate_connection()
    paths: dict[int, str] = {}
    try:
        events = conn.receive_data(data)
    except Exception:  # a capture cut mid-frame is still useful
        events = []
    for ev in events:
        if isinstance(ev, h2.events.RequestReceived):
            paths[ev.stream_id] = str(dict(ev.headers).get(":path", ""))
    return paths


def _data(data: bytes) -> dict[int, bytearray]:
    """The DATA payload of each stream in ``data`` (HTTP/2 frames after any preface).

    A plain frame walk: the server's half cannot be fed to h2 without the
    requests it answers, and only DATA payloads (padding removed) are needed.
    """
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    i = len(preface) if data.startswith(preface) else 0
    out: dict[int, bytearray] = {}
    while i + 9 <= len(data):
        size = int.from_bytes(data[i:i + 3], "big")
        kind, flags = data[i + 3], data[i + 4]
        stream = int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF
        payload = data[i + 9:i + 9 + size]
        i += 9 + size
        if kind == 0 and len(payload) == size:
            if flags & 0x8:
                pad = payload[0]
                payload = payload[1:len(payload) - pad]
            out.setdefault(stream, bytearray()).extend(payload)
    return out


def _grpc(body: bytes) -> Iterator[bytes]:
    i = 0
    while i + 5 <= len(body):
        (size,) = struct.unpack(">I", body[i + 1:i + 5])
        if i + 5 + size > len(body):
            return
        yield bytes(body[i + 5:i + 5 + size])
        i += 5 + size


def messages(relay: Relay) -> list[Message]:
    """Every gRPC message of every upgraded connection, as ``(direction, path, bytes)``.

    ``direction`` is ``cli`` (written by the CLI) or ``daemon``.
    """
    out: list[Message] = []
    for up, down in relay.connections:
        line, cli_bytes = _after_upgrade(bytes(up))
        _, daemon_bytes = _after_upgrade(bytes(down))
        if "/grpc" in line:
            client, server = ("cli", cli_bytes), ("daemon", daemon_bytes)
        elif "/session" in line:
            client, server = ("daemon", daemon_bytes), ("cli", cli_bytes)
        else:
            continue
        paths = _paths(client[1])
        for who, raw in (client, server):
            for stream, body in sorted(_data(raw).items()):
                out += [(who, paths.get(stream, ""), m) for m in _grpc(body)]
    return out


DOCKERFILE = """\
FROM dgtest:latest
COPY hello.txt /hello.txt
RUN --mount=type=cache,target=/cache cat /hello.txt > /cache/x
RUN --mount=type=secret,id=tok test -s /run/secrets/tok
"""


def main(engine: str, label: str = "", extra: tuple[str, ...] = ()) -> int:
    """Capture a build on ``engine``; fixtures are named ``<engine>[-<label>]-<kind>-<n>.bin``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support import engines  # noqa: PLC0415

    out_dir = Path(__file__).resolve().parents[1] / "unit/data/buildkit"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dgcap", dir="/tmp") as tmp:
        root = Path(tmp)
        daemon = engines.start_daemon(engine, root / "e")
        try:
            daemon.wait_ready()
            cli = engines.find_cli()
            engines.import_image(cli, daemon, engines.build_rootfs(root / "rootfs.tar"))
            relay = Relay(str(root / "r.sock"), daemon.socket)
            ctx = root / "ctx"
            ctx.mkdir()
            (ctx / "Dockerfile").write_text(DOCKERFILE)
            (ctx / "hello.txt").write_text("hello\n")
            (root / "tok").write_text("s3cret\n")
            env = {**os.environ, "DOCKER_HOST": f"unix://{relay.path}",
                   "DOCKER_CONFIG": str(engines.make_docker_config(root / "cfg"))}
            import subprocess  # noqa: PLC0415

            done = subprocess.run(
                [cli, "buildx", "build", "--progress=plain", "--network=none", "-t", "dgcap:1",
                 "--secret", f"id=tok,src={root / 'tok'}", *extra, str(ctx)],
                env=env, capture_output=True, text=True, timeout=300, check=False,
            )
            print(done.stderr[-3000:])
            relay.close()
            found = messages(relay)
        finally:
            daemon.stop()
    wanted = {
        "/moby.buildkit.v1.Control/Solve": "control_solve",
        "/moby.buildkit.v1.frontend.LLBBridge/Solve": "bridge_solve",
        "/moby.filesync.v1.FileSync/DiffCopy": "filesync",
        "/moby.buildkit.secrets.v1.Secrets/GetSecret": "get_secret",
    }
    counts: dict[str, int] = {}
    for direction, path, msg in found:
        print(direction, path, len(msg))
        name = wanted.get(path)
        # Requests only: the CLI's on /grpc, the daemon's on /session (file sync
        # packets flow from the CLI, as answers).
        if name is None or direction != ("cli" if name != "get_secret" else "daemon"):
            continue
        n = counts.get(name, 0)
        counts[name] = n + 1
        if name == "filesync" and n >= 5:
            continue  # the Dockerfile's transfer is enough
        prefix = f"{engine}-{label}" if label else engine
        (out_dir / f"{prefix}-{name}-{n}.bin").write_bytes(msg)
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    args = sys.argv[1:] or ["28.5"]
    sys.exit(main(args[0], args[1] if len(args) > 1 else "", tuple(args[2:])))

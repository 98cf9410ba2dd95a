"""Operations end to end: docker-socket-proxy compat in front of a real engine, metrics
scraped while real clients work, /readyz following the upstream, and the per-peer
connection limit under a bounded load.

Each test starts its own `dockgate serve` (as tests/support/gate.py does) and
talks to its admin endpoint on a unix socket, so nothing listens on TCP.
"""

from __future__ import annotations

import contextlib
import http.server as httpserver
import os
import re
import shutil
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from support import engines
from support import unixhttp as http
from support.engines import Engine, spawn_logged, terminate
from support.gate import POLICY, RUN_DIR, dockgate_command

from dockgate.service.compat import SECTIONS

pytestmark = pytest.mark.engine


class Gate:
    """A dockgate process of this module, with its proxy and admin sockets."""

    def __init__(self, workdir: Path, args: list[str], env: dict[str, str] | None = None):
        self.workdir = workdir
        self.socket = str(workdir / "g.sock")
        self.admin = str(workdir / "a.sock")
        self.log = workdir / "dockgate.log"
        full_env = {k: v for k, v in os.environ.items() if k not in SECTIONS.values()}
        full_env.update(env or {}, PYTHONUNBUFFERED="1")
        self.process = spawn_logged(
            [*dockgate_command(), "serve", "--admin-listen", f"unix:{self.admin}", *args],
            self.log, full_env, cwd=RUN_DIR,
        )
        deadline = time.monotonic() + 30
        while not (os.path.exists(self.socket) and os.path.exists(self.admin)):
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def get(self, path: str) -> tuple[int, str]:
        status, body = http.request(self.admin, "GET", path, timeout=10)
        return status, body.decode()

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when absent)."""
        _, text = self.get("/metrics")
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            m = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
            if m and m.group(1) == name and (m.group(2) or "") == want:
                return float(m.group(3))
        return 0.0

    def stop(self) -> None:
        terminate(self.process, 15)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short directory (unix socket paths are limited to about 100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="dgops", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- docker-socket-proxy compat, and metrics from real clients --------------------


def test_compat_env_in_front_of_engine(engine28: Engine, workdir: Path) -> None:
    """A compose-style environment (CONTAINERS=1, POST=0) run with --compat-env:
    `docker ps` works, `docker run` and `docker images` are refused by dockgate, and
    /metrics counts each by endpoint, decision and status."""
    gate = Gate(workdir, ["--compat-env"], {
        "CONTAINERS": "1", "POST": "0", "SOCKET_PATH": engine28.daemon_socket,
        "DOCKGATE_LISTEN": f"unix:{workdir}/g.sock",
    })
    try:
        http.wait_ping(gate.socket, time.monotonic() + 30)
        env = engine28._env(gate.socket)
        ps = engine28.run_cli(engine28.cli, ["ps", "-a"], env=env)
        assert "CONTAINER ID" in ps.stdout
        run = engine28.run_cli(engine28.cli, ["run", "--rm", "--network", "none",
                                              "--pull", "never", "dgtest:latest", "true"],
                               env=env, check=False)
        assert run.returncode != 0
        assert "dockgate: denied by policy compat rule compat-sections: endpoint " \
            "container.create is not allowed" in run.stderr
        images = engine28.run_cli(engine28.cli, ["images"], env=env, check=False)
        assert images.returncode != 0
        assert "endpoint image.list is not allowed" in images.stderr
        assert gate.metric("dockgate_requests_total", endpoint="container.list",
                           decision="allow", status="200") >= 1
        assert gate.metric("dockgate_requests_total", endpoint="container.create",
                           decision="deny", status="403") >= 1
        assert gate.metric("dockgate_requests_total", endpoint="image.list",
                           decision="deny", status="403") >= 1
        assert gate.metric("dockgate_decision_seconds_count") >= 3
        assert gate.metric("dockgate_open_connections", listener=f"unix:{workdir}/g.sock") >= 0
        assert gate.get("/readyz") == (200, "ok\n")
    finally:
        gate.stop()


# --- /readyz follows the upstream -------------------------------------------------


class _Ping(httpserver.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # /readyz hangs up after the status line
            self.wfile.write(b"OK")

    def log_message(self, *args: Any) -> None:
        pass


class _Daemon(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A stand-in daemon on a unix socket that answers /_ping."""

    daemon_threads = True

    def get_request(self) -> Any:
        conn, _ = super().get_request()
        return conn, ("local", 0)


class FakeDaemon:
    def __init__(self, path: str) -> None:
        self.path = path
        self.server: _Daemon | None = None

    def start(self) -> None:
        self.server = _Daemon(self.path, _Ping)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        os.unlink(self.path)
        self.server = None


@pytest.fixture
def fake_daemon(workdir: Path) -> Iterator[FakeDaemon]:
    daemon = FakeDaemon(str(workdir / "d.sock"))
    daemon.start()
    yield daemon
    if daemon.server is not None:
        daemon.stop()


def _wait_for(check: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_readyz_follows_upstream(fake_daemon: FakeDaemon, workdir: Path) -> None:
    """/readyz is 200 while the daemon answers /_ping, 503 while it is gone, 200 again
    when it returns; /healthz stays 200 throughout."""
    gate = Gate(workdir, ["--listen", f"unix:{workdir}/g.sock", "--upstream",
                          f"unix:{fake_daemon.path}", "--policy", str(POLICY)])
    try:
        assert gate.get("/healthz") == (200, "ok\n")
        assert gate.get("/readyz")[0] == 200
        fake_daemon.stop()
        assert gate.get("/readyz")[0] == 503
        assert gate.get("/healthz")[0] == 200
        status, _ = http.request(gate.socket, "GET", "/_ping")
        assert status == 502
        assert gate.metric("dockgate_upstream_errors_total",
                           reason="upstream-unavailable") == 1
        fake_daemon.start()
        assert _wait_for(lambda: gate.get("/readyz")[0] == 200)
    finally:
        gate.stop()


# --- the per-peer connection limit under load -------------------------------------


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_connection_limit_per_peer(fake_daemon: FakeDaemon, workdir: Path) -> None:
    """More connections than --max-connections-per-peer from one caller: the excess get
    429 at once, dockgate keeps answering, and its descriptors return to baseline."""
    limit, total = 5, 40
    gate = Gate(workdir, ["--listen", f"unix:{workdir}/g.sock", "--upstream",
                          f"unix:{fake_daemon.path}", "--policy", str(POLICY),
                          "--max-connections-per-peer", str(limit)])
    conns: list[socket.socket] = []
    try:
        assert http.ping(gate.socket)
        listener = f"unix:{workdir}/g.sock"
        # The ping's connection must be gone on dockgate's side too, or it takes one of
        # the caller's places and the fifth connection below is admitted, not refused.
        assert _wait_for(lambda: gate.metric("dockgate_open_connections", listener=listener) == 0)
        baseline = _fds(gate.process.pid)
        for _ in range(total):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(gate.socket)
            conns.append(s)
        refused = 0
        for s in conns[limit:]:
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            refused += data.startswith(b"HTTP/1.1 429")
        assert refused == total - limit
        # The admitted ones still work.
        conns[0].sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
        assert conns[0].recv(4096).startswith(b"HTTP/1.1 200")
        for s in conns:
            s.close()
        conns.clear()
        assert _wait_for(lambda: http.ping(gate.socket))
        # At least: the ping above may itself have met the limit before dockgate saw
        # the closes.
        assert gate.metric("dockgate_errors_total", reason="too-many-connections") >= total - limit
        assert _wait_for(lambda: _fds(gate.process.pid) <= baseline), (
            f"{_fds(gate.process.pid)} descriptors open, {baseline} before"
        )
        assert gate.metric("dockgate_open_connections", listener=listener) == 0
    finally:
        for s in conns:
            s.close()
        gate.stop()


def test_readyz_follows_a_real_daemon_stopping_and_starting(workdir: Path) -> None:
    """/readyz is 200 while a real dockerd runs, 503 once it is stopped, 200 when it is back."""
    root = workdir / "e"
    daemon = engines.start_daemon("20.10", root)
    gate = None
    try:
        daemon.wait_ready()
        gate = Gate(workdir, ["--listen", f"unix:{workdir / 'g.sock'}", "--upstream",
                              f"unix:{daemon.socket}", "--policy", str(POLICY)])
        assert _wait_for(lambda: gate is not None and gate.get("/readyz")[0] == 200)
        daemon.stop()
        assert _wait_for(lambda: gate is not None and gate.get("/readyz")[0] == 503)
        assert gate.get("/healthz")[0] == 200, "dockgate itself stays up"
        daemon = engines.start_daemon("20.10", root)
        daemon.wait_ready()
        assert _wait_for(lambda: gate is not None and gate.get("/readyz")[0] == 200, 30)
    finally:
        if gate is not None:
            gate.stop()
        daemon.stop()
        engines.remove_tree(root)


TECNATIVA_COMPOSE = """
# A compose file written for Tecnativa's docker-socket-proxy (its README's read-only
# example for Traefik), used as it is: only the proxy's environment is read.
services:
  dockerproxy:
    image: tecnativa/docker-socket-proxy
    environment:
      CONTAINERS: 1
      NETWORKS: 1
      SERVICES: 0
      TASKS: 0
      POST: 0
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock:ro
  traefik:
    image: traefik
    environment:
      DOCKER_HOST: tcp://dockerproxy:2375
"""


def test_a_tecnativa_compose_file_works_unchanged_with_compat_env(
    engine28: Engine, workdir: Path
) -> None:
    """The proxy environment of a compose file written for Tecnativa's proxy runs dockgate
    as it is: what a Traefik-style consumer reads works, and writes are refused."""
    import yaml  # noqa: PLC0415

    compose = yaml.safe_load(TECNATIVA_COMPOSE)
    env = {k: str(v) for k, v in compose["services"]["dockerproxy"]["environment"].items()}
    env.update(SOCKET_PATH=engine28.daemon_socket, DOCKGATE_LISTEN=f"unix:{workdir}/g.sock")
    gate = Gate(workdir, ["--compat-env"], env)
    try:
        http.wait_ping(gate.socket, time.monotonic() + 30)
        client = docker.DockerClient(base_url=f"unix://{gate.socket}", version="auto", timeout=30)
        try:
            assert isinstance(client.containers.list(all=True), list)
            assert isinstance(client.networks.list(), list)
            assert client.version()["ApiVersion"]
            events = client.events(since=int(time.time()) - 5, until=int(time.time()), decode=True)
            assert isinstance(list(events), list)
            with pytest.raises(docker.errors.APIError) as refused:
                client.containers.create("dgtest:latest", "true", network_mode="none")
            assert "dockgate: denied by policy compat" in str(refused.value)
            with pytest.raises(docker.errors.APIError):
                client.images.list()
        finally:
            client.close()
    finally:
        gate.stop()

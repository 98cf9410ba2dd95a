"""``twistd -n dockgate`` and ``dockgate serve`` as real processes in front of a fake daemon.

The fake daemon is a few lines of ``http.server`` on a unix socket, run in a
thread of the test process: enough to see a request go through, the socket
mode, SIGHUP handling and a clean SIGTERM, without a Docker engine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import socketserver
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from support.unixhttp import request, wait_ping

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "policies" / "privileged.yaml"


class FakeDaemon(BaseHTTPRequestHandler):
    """Answers GET /_ping (any version prefix) as dockerd does; 404 otherwise."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        ok = self.path.endswith("/_ping")
        body = b"OK" if ok else b'{"message":"page not found"}\n'
        self.send_response(200 if ok else 404)
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads dockgate's logs, not the fake's."""


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@dataclass
class Run:
    """One dockgate process and its files."""

    command: str
    process: subprocess.Popen[bytes]
    socket: Path
    policy: Path
    audit: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def audit_records(self, path: Path | None = None) -> list[dict[str, object]]:
        target = path or self.audit
        return [json.loads(line) for line in target.read_text().splitlines()]

    def wait_for_log(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            assert self.process.poll() is None, self.log_text()
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{self.log_text()}"
            time.sleep(0.05)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short directory (unix socket paths are limited to ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="dgt", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def upstream(workdir: Path) -> Iterator[Path]:
    """The fake daemon's socket."""
    path = workdir / "docker.sock"
    server = UnixHTTPServer(str(path), FakeDaemon)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()


def twistd_command() -> list[str]:
    """twistd in the foreground, with no pid file (it would land in the working directory)."""
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "dockgate"]


def serve_command() -> list[str]:
    return [sys.executable, "-m", "dockgate", "serve"]


def twistd_dockgate_reactor_command() -> list[str]:
    """twistd running dockgate's own reactor (what ``dockgate serve`` installs)."""
    return [*twistd_command()[:-1], "--reactor=dockgate", "dockgate"]


COMMANDS = {"twistd": twistd_command, "twistd-reactor": twistd_dockgate_reactor_command,
            "serve": serve_command}


@pytest.fixture(params=sorted(COMMANDS))
def run(request: pytest.FixtureRequest, workdir: Path, upstream: Path) -> Iterator[Run]:
    """dockgate started by twistd or by dockgate serve, stopped (killed if need be) after."""
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY.read_text())
    sock, audit, log = workdir / "g.sock", workdir / "audit.jsonl", workdir / "dockgate.log"
    argv = [*COMMANDS[request.param](), "--listen", f"unix:{sock}", "--upstream",
            f"unix:path={upstream}", "--policy", str(policy), "--audit-log", str(audit)]
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                   cwd=workdir, start_new_session=True)
    started = Run(request.param, process, sock, policy, audit, log)
    try:
        wait_ping(str(sock), time.monotonic() + 30, alive=lambda: process.poll() is None)
        yield started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_ping_goes_through(run: Run) -> None:
    """GET /_ping reaches the daemon through dockgate and is audited."""
    status, body = request(str(run.socket), "GET", "/v1.41/_ping")
    assert (status, body) == (200, b"OK")
    deadline = time.monotonic() + 5
    def done(r: dict[str, Any]) -> bool:
        return r.get("path") == "/v1.41/_ping" and r.get("stage") == "ResponseComplete"

    while not any(done(r) for r in run.audit_records()):
        assert time.monotonic() < deadline, run.audit.read_text()
        time.sleep(0.05)
    record = next(r for r in run.audit_records() if done(r))
    assert record["status"] == 200
    assert record["decision"] == "allow"


def test_socket_mode_is_0660(run: Run) -> None:
    """The listening socket is 0660 without any mode option: not Twisted's 0666."""
    st = os.stat(run.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660


def test_sighup_keeps_policy_on_error_and_reopens_audit(run: Run) -> None:
    """SIGHUP with a broken policy file keeps the old policy and serving; the audit log is
    reopened, so records after a rotation go to the new file."""
    request(str(run.socket), "GET", "/_ping")
    rotated = run.audit.with_suffix(".1")
    os.rename(run.audit, rotated)
    run.policy.write_text("rules: [unterminated\n")
    run.process.send_signal(signal.SIGHUP)
    run.wait_for_log("keeping policy")
    assert request(str(run.socket), "GET", "/_ping") == (200, b"OK")
    deadline = time.monotonic() + 5
    while not (run.audit.exists() and run.audit_records()):
        assert time.monotonic() < deadline, "no record in the reopened audit log"
        time.sleep(0.05)
    assert all(r["path"] == "/_ping" for r in run.audit_records())
    assert run.audit_records(rotated)


def test_sigterm_stops_cleanly(run: Run) -> None:
    """SIGTERM stops the process cleanly and removes the socket file.

    dockgate serve exits 0; twistd, after its orderly shutdown, re-raises the
    signal that stopped it (so its status is -SIGTERM), as documented for twistd.
    """
    run.process.send_signal(signal.SIGTERM)
    expected = -signal.SIGTERM if run.command.startswith("twistd") else 0
    assert run.process.wait(timeout=15) == expected, run.log_text()
    assert "Main loop terminated" in run.log_text()
    assert not run.socket.exists()


def test_stale_socket_replaced(workdir: Path, upstream: Path) -> None:
    """A socket file left by a dead process does not stop a new dockgate from starting."""
    stale = workdir / "g.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(stale))
    dead.close()
    argv = [*serve_command(), "--listen", f"unix:{stale}", "--upstream", f"unix:{upstream}",
            "--policy", str(POLICY)]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, cwd=workdir)
    try:
        wait_ping(str(stale), time.monotonic() + 30, alive=lambda: process.poll() is None)
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_second_instance_refuses_live_socket(run: Run) -> None:
    """A second dockgate on a socket that is in use exits 1 and leaves the socket alone."""
    argv = [*serve_command(), "--listen", f"unix:{run.socket}", "--upstream",
            f"unix:{run.socket}", "--policy", str(POLICY)]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                            check=False)
    assert result.returncode == 1
    assert b"another process is listening" in result.stderr
    assert request(str(run.socket), "GET", "/_ping") == (200, b"OK")


SYSTEMD_LAUNCHER = """
import os, socket, sys
path, mode, argv = sys.argv[1], int(sys.argv[2], 8), sys.argv[3:]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.bind(path)
os.chmod(path, mode)
sock.listen(16)
os.dup2(sock.fileno(), 3)
os.set_inheritable(3, True)  # dup2 onto itself (the socket may be fd 3) keeps CLOEXEC
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="dockgate")
os.execv(argv[0], argv)
"""
"""Does what systemd does for a socket unit: bind, set SocketMode, pass the socket as
fd 3 with LISTEN_* variables, and exec the service in the same process."""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_systemd_socket_activation(workdir: Path, upstream: Path, command: str) -> None:
    """With --listen systemd:domain=UNIX:name=dockgate, dockgate serves on the inherited
    socket, keeps the unit's 0660 mode, and leaves the socket file to systemd on exit."""
    sock = workdir / "activated.sock"
    argv = [sys.executable, "-c", SYSTEMD_LAUNCHER, str(sock), "660", *COMMANDS[command](),
            "--listen", "systemd:domain=UNIX:name=dockgate", "--upstream", f"unix:{upstream}",
            "--policy", str(POLICY)]
    log = workdir / "activated.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                   cwd=workdir)
    try:
        wait_ping(str(sock), time.monotonic() + 30, alive=lambda: process.poll() is None)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        assert "Main loop terminated" in log.read_text()
        assert stat.S_ISSOCK(os.stat(sock).st_mode)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

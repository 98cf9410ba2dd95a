"""`dockgate serve` as an operator meets it, in front of a real engine: the access
line per request, one-line startup errors with the right exit status, refusal of an
open TCP listener, the allow-all warning, readiness that follows the audit log,
journald missing, the startup line, denials that name every failed rule, and a
SIGTERM while `docker events` streams.

Each test starts its own dockgate (unix sockets only; the TCP listeners tried here
never get a connection, and binding one is refused before it happens)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import unixhttp as http
from support.cli import dockgate
from support.engines import IMAGE, Engine, spawn_logged, terminate
from support.gate import REPO, dockgate_command

pytestmark = pytest.mark.engine


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short directory (unix socket paths are limited to about 100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="dgop", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Serve:
    """A `dockgate serve` of this module, on ``workdir/g.sock`` with an admin socket."""

    def __init__(self, workdir: Path, engine: Engine, *args: str) -> None:
        self.socket = str(workdir / "g.sock")
        self.admin = str(workdir / "a.sock")
        self.log = workdir / "dockgate.log"
        self.process = spawn_logged(
            [*dockgate_command(), "serve", "--listen", f"unix:{self.socket}",
             "--upstream", f"unix:{engine.daemon_socket}", "--admin-listen",
             f"unix:{self.admin}", *args],
            self.log, {**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
        deadline = time.monotonic() + 30
        while "dockgate " not in self.text() or not os.path.exists(self.admin):
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, self.text()
            time.sleep(0.05)
        self.env = {**engine.env, "DOCKER_HOST": f"unix://{self.socket}"}

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/usr/local/bin/docker", *args], env=self.env, text=True,
                              capture_output=True, timeout=timeout, check=False)

    def wait_for(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.text())
            if found:
                return found
            assert time.monotonic() < deadline, f"{pattern!r} not in:\n{self.text()}"
            time.sleep(0.05)

    def stop(self) -> int:
        terminate(self.process, 15)
        return self.process.returncode


def test_each_request_gets_one_access_line_naming_the_caller(engine: Engine,
                                                              workdir: Path) -> None:
    """Without any audit log, every request leaves one access line (method, path,
    caller by user name, decision, rule, status, duration); --access-log off drops them."""
    gate = Serve(workdir, engine)
    try:
        assert gate.docker("version").returncode == 0
        me = pwd.getpwuid(os.getuid()).pw_name
        line = gate.wait_for(r"\[dockgate\.access#info\] GET /v[\d.]+/version .*\n").group()
        assert f"caller={me} " in line and "decision=allow rule=default status=200" in line
        assert re.search(r"duration=\d+\.\dms", line)
        assert len(re.findall(r"GET /v[\d.]+/version", gate.text())) == 1
    finally:
        gate.stop()
    quiet = Serve(workdir / "q", engine, "--access-log", "off") if (workdir / "q").mkdir() \
        is None else None
    assert quiet is not None
    try:
        assert quiet.docker("version").returncode == 0
        time.sleep(0.5)
        assert "dockgate.access" not in quiet.text()
    finally:
        quiet.stop()


@pytest.mark.allow_refusals
def test_a_denial_lists_every_failed_rule(engine: Engine, workdir: Path) -> None:
    """Under restricted, a `docker run` breaking several rules is told all of them at
    once, one line each, and the access line names the rule."""
    gate = Serve(workdir, engine, "--policy", "policies/restricted.yaml")
    try:
        result = gate.docker("run", "--rm", "--network", "none", "--privileged", "--user", "0",
                             "--cap-add", "NET_ADMIN", "-v", "/etc:/host", "dgtest", "true")
        assert result.returncode != 0
        rules = re.findall(r"(?:rule|also rule) ([\w-]+):", result.stderr)
        assert len(set(rules)) >= 3, result.stderr
        assert result.stderr.count("\n") >= 3 and len(result.stderr) < 2500
        gate.wait_for(r"POST /v[\d.]+/containers/create .*decision=deny rule=[\w-]+ status=403")
    finally:
        gate.stop()


def test_startup_errors_are_one_line_with_the_right_status(engine: Engine,
                                                           workdir: Path) -> None:
    """Usage mistakes exit 2, runtime failures 1; each is one line naming the option,
    without a traceback, and nothing is left bound."""
    up = f"unix:{engine.daemon_socket}"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    (workdir / "plain").write_text("not a socket")
    cases = [
        (["--listen", "tcp:99999"], 2, "--listen"),
        (["--listen", "tcp:abc"], 2, "--listen"),
        (["--listen", f"unix:{workdir}/s.sock:group=nosuchgroup"], 2, "nosuchgroup"),
        (["--listen", "tcp:2375:interface=0.0.0.0"], 2, "--insecure-listen"),
        (["--listen", f"tcp:{busy.getsockname()[1]}"], 1, "already in use"),
        (["--listen", f"unix:{workdir}/plain"], 1, "is not a socket"),
        (["--listen", f"unix:{workdir}/j.sock", "--audit-log", f"{workdir}/a.jsonl",
          "--audit-journald", "all"], 1, "--audit-journald"),
        (["--listen", f"unix:{workdir}/j.sock", "--audit-journald", "all"], 2,
         "--audit-journald needs --audit-log"),
    ]
    journald = Path("/run/systemd/journal/socket").exists()
    try:
        for argv, status, words in cases:
            if journald and "--audit-journald" in argv and status == 1:
                continue
            result = dockgate("serve", "--upstream", up, *argv, timeout=30)
            errors = [x for x in result.stderr.splitlines()
                      if "Run 'dockgate serve --help'" not in x and "Main loop" not in x]
            assert result.returncode == status, (argv, result.stderr)
            assert len(errors) == 1 and words in errors[0], (argv, result.stderr)
            assert "Traceback" not in result.stderr
        assert (workdir / "plain").read_text() == "not a socket"
        assert not (workdir / "s.sock").exists() and not (workdir / "j.sock").exists()
    finally:
        busy.close()


def test_startup_line_and_allow_all_warning(engine: Engine, workdir: Path) -> None:
    """The startup line names tenants, the audit policy, the key and the failure mode;
    the allow-all policy without an audit log is warned about, with one it is not."""
    gate = Serve(workdir, engine)
    try:
        line = gate.wait_for(r"dockgate \S+ listening on .*\n").group()
        assert "tenants off" in line and "audit log off" in line
        gate.wait_for(r"#warn\] policy 'privileged' allows every request and there is no "
                      "audit log")
    finally:
        gate.stop()
    key = workdir / "k"
    key.write_text("0123456789abcdef0123")
    (workdir / "b").mkdir()
    audited = Serve(workdir / "b", engine, "--audit-log", str(workdir / "b" / "a.jsonl"),
                    "--audit-key", str(key))
    try:
        line = audited.wait_for(r"dockgate \S+ listening on .*\n").group()
        assert f"signed with {key}" in line and "fail-closed" in line
        assert "audit policy default: metadata" in line
        assert "allows every request" not in audited.text()
    finally:
        audited.stop()


def test_no_fast_io_runs_sessions_on_stock_twisted(engine: Engine, workdir: Path) -> None:
    """With --no-fast-io the start-up line says fast I/O is off, and an attached
    session (1 MiB of stdin through cat, then EOF; four in a row) still passes byte
    for byte and ends with the container's exit code on Twisted's own transports; without
    the option the line says it is on."""
    gate = Serve(workdir, engine, "--no-fast-io")
    try:
        line = gate.wait_for(r"dockgate \S+ listening on .*\n").group()
        assert ", fast I/O off (--no-fast-io)," in line, line
        for _ in range(4):  # stdin's EOF once raced a full daemon socket here
            data = os.urandom(1 << 20)
            out = subprocess.run(
                ["/usr/local/bin/docker", "run", "--rm", "-i", "--network", "none", IMAGE, "sh",
                 "-c", "cat; exit 3"], env=gate.env, input=data, capture_output=True,
                timeout=60, check=False)
            assert out.returncode == 3, out.stderr
            assert hashlib.sha256(out.stdout).digest() == hashlib.sha256(data).digest()
    finally:
        gate.stop()
    (workdir / "on").mkdir()
    default = Serve(workdir / "on", engine)
    try:
        line = default.wait_for(r"dockgate \S+ listening on .*\n").group()
        assert ", fast I/O on," in line, line
    finally:
        default.stop()


def test_readyz_follows_the_audit_log(engine: Engine, workdir: Path) -> None:
    """/readyz is 503 while a fail-closed audit log cannot be written (every request is
    refused then), and the log says fail-closed; 200 again once it could be written,
    without waiting for a request."""
    logdir = workdir / "logs"
    logdir.mkdir()
    gate = Serve(workdir, engine, "--audit-log", str(logdir / "a.jsonl"))
    try:
        assert http.request(gate.admin, "GET", "/readyz", timeout=10)[0] == 200
        os.unlink(logdir / "a.jsonl")
        logdir.chmod(0o500)
        if os.access(logdir, os.W_OK):  # root ignores the mode: make the path a directory
            logdir.chmod(0o700)
            (logdir / "a.jsonl").mkdir()
        assert gate.docker("version").returncode != 0
        status, body = http.request(gate.admin, "GET", "/readyz", timeout=10)
        assert status == 503 and b"audit log not writable" in body
        gate.wait_for(r"fail-closed: audit record .* requests are refused")
        assert "fail-open" not in gate.text()
        assert http.request(gate.admin, "GET", "/readyz", timeout=10)[0] == 503
        logdir.chmod(0o700)
        if (logdir / "a.jsonl").is_dir():
            (logdir / "a.jsonl").rmdir()
        # Ready again with no request in between (a balancer sends none while it is not).
        assert http.request(gate.admin, "GET", "/readyz", timeout=10)[0] == 200
        assert gate.docker("version").returncode == 0
        assert http.request(gate.admin, "GET", "/readyz", timeout=10)[0] == 200
    finally:
        logdir.chmod(0o700)
        gate.stop()


def test_sigterm_during_events_completes_the_record(engine: Engine, workdir: Path) -> None:
    """SIGTERM while `docker events` streams: a clean exit with no traceback, and the
    events exchange gets its ResponseComplete record."""
    audit = workdir / "a.jsonl"
    gate = Serve(workdir, engine, "--audit-log", str(audit))
    events = subprocess.Popen(["/usr/local/bin/docker", "events"], env=gate.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while '"endpoint":"system.events"' not in (audit.read_text() if audit.exists()
                                                    else ""):
            assert time.monotonic() < deadline, gate.text()
            time.sleep(0.05)
        gate.process.send_signal(signal.SIGTERM)
        assert gate.process.wait(20) == 0
    finally:
        events.kill()
        events.wait(10)
        gate.stop()
    assert "Traceback" not in gate.text() and "#critical" not in gate.text(), gate.text()
    records = [json.loads(x) for x in audit.read_text().splitlines()]
    stages = [r["stage"] for r in records if r.get("endpoint") == "system.events"]
    assert stages == ["RequestDecided", "ResponseComplete"], stages


def test_a_logrotate_set_verifies_shows_and_summarises(engine: Engine, workdir: Path) -> None:
    """Rotated as deploy/logrotate does (rename, SIGUSR1, compress all but the newest
    rotated file), the live file, .1 and .2.gz verify as one chain given in any order,
    and show and summary read them all."""
    log = workdir / "audit.jsonl"
    gate = Serve(workdir, engine, "--audit-log", str(log))
    try:
        for rotation in range(3):
            assert gate.docker("version").returncode == 0
            time.sleep(0.3)  # the ResponseComplete record is written at the turn's end
            if rotation == 2:
                break
            one = workdir / "audit.jsonl.1"
            if one.exists():  # delaycompress: the previous .1 becomes .2.gz now
                (workdir / "audit.jsonl.2.gz").write_bytes(gzip.compress(one.read_bytes()))
                one.unlink()
            log.rename(one)
            gate.process.send_signal(signal.SIGUSR1)
            gate.wait_for(r"Audit log reopened" + r"(?:.|\n)*Audit log reopened" * rotation)
    finally:
        gate.stop()
    files = [str(workdir / n) for n in ("audit.jsonl.2.gz", "audit.jsonl", "audit.jsonl.1")]
    result = dockgate("audit", "verify", *files)
    assert result.returncode == 0 and result.stdout.startswith("ok: "), result.stdout
    summary = dockgate("audit", "summary", "--json", *files)
    counts = {json.loads(x)["endpoint"]: json.loads(x)["count"]
              for x in summary.stdout.splitlines()}
    assert counts.get("system.version") == 3, summary.stdout
    shown = dockgate("audit", "show", "--endpoint", "system.version", *files).stdout
    assert len(shown.splitlines()) == 1 + 3

"""The audit log against real clients and engines: records per action and stage, session
recordings that play back what the terminal showed, secrets that never reach the log
directory, and fail-closed refusals when the log cannot be written."""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import gate, unixhttp
from support.engines import IMAGE, Engine, unique
from support.gate import DockgateProcess
from support.terminal import Terminal

pytestmark = pytest.mark.engine

PROMPT = r"/ # "
SESSION_POLICY = """\
rules:
  - id: sessions
    endpoints: [exec.start, container.attach]
    level: request
    session: true
  - id: bodies
    endpoints: ["*"]
    level: request
"""


def records_by_id(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        grouped.setdefault(r["id"], []).append(r)
    return grouped


def wait_records(g: DockgateProcess, start: int, done: Any, timeout: float = 10) -> list[Any]:
    """Audit records after ``start`` once ``done(records)`` holds (the last stage of an
    exchange may be written just after the client saw its response)."""
    deadline = time.monotonic() + timeout
    while True:
        records = g.audit_records(start)
        if done(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def complete(records: list[dict[str, Any]]) -> bool:
    stages = records_by_id(records)
    return bool(stages) and all(
        s[-1]["stage"] in ("ResponseComplete", "SessionEnded") for s in stages.values())


def test_run_records_each_exchange_with_its_stages(
    engine: Engine, dockgate_process: DockgateProcess
) -> None:
    """``docker run -i`` through the session's dockgate: one RequestDecided/ResponseComplete
    pair per plain request (create, start, wait, ...), RequestDecided/SessionStarted/
    SessionEnded for the attach, with the stdin and stdout byte counts and the exit code."""
    name = unique("audrun")
    start = dockgate_process.audit_size()
    data = "x" * 5000
    result = engine.docker("run", "-i", "--network", "none", "--name", name, IMAGE,
                           "sh", "-c", "cat; exit 3", input=data, check=False)
    assert result.returncode == 3 and result.stdout == data
    records = wait_records(dockgate_process, start, complete)
    grouped = records_by_id(records)
    endpoints = [s[0]["endpoint"] for s in grouped.values()]
    for needed in ("container.create", "container.attach", "container.start", "container.wait"):
        assert needed in endpoints, endpoints
    assert endpoints.index("container.create") < endpoints.index("container.start")
    for stages in grouped.values():
        names = [r["stage"] for r in stages]
        if stages[0]["endpoint"] == "container.attach":
            assert names == ["RequestDecided", "SessionStarted", "SessionEnded"], names
            ended = stages[-1]
            assert ended["bytes_in"] >= len(data) and ended["bytes_out"] >= len(data)
            assert ended["exit_code"] == 3
        else:
            assert names == ["RequestDecided", "ResponseComplete"], names
        for r in stages:
            assert r["v"] == 1 and r["decision"] == "allow" and "error" not in r
            assert r["principal"] == pwd.getpwuid(os.getuid()).pw_name and r["tenant"] is None
            assert r["time"].endswith("Z") and r["listener"]
    create = grouped[next(i for i, s in grouped.items() if s[0]["endpoint"] == "container.create")]
    assert create[-1]["status"] == 201 and create[0]["method"] == "POST"
    seqs = [r["seq"] for r in records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_session_log_verifies(engine: Engine, dockgate_process: DockgateProcess) -> None:
    """The session dockgate's whole log, written by real traffic, is an intact chain."""
    engine.docker("version")
    result = subprocess.run(
        [*gate.dockgate_command(), "audit", "verify", str(dockgate_process.audit_log)],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# -- a dockgate of our own, with session recording ------------------------------------


def start_extra(engine: Engine, workdir: Path, *extra: str) -> DockgateProcess:
    """Another ``dockgate serve`` in front of ``engine``'s daemon, with audit options."""
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / "x.sock"
    audit = workdir / "log" / "audit.jsonl"
    audit.parent.mkdir(exist_ok=True)
    log_path = workdir / "dockgate.log"
    argv = [*gate.dockgate_command(), "serve", "--listen", f"unix:{sock}",
            "--upstream", f"unix:{engine.daemon_socket}", "--policy", str(gate.POLICY),
            "--audit-log", str(audit), *extra]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   cwd=gate.RUN_DIR, start_new_session=True)
    g = DockgateProcess(engine=engine.name, process=process, socket=str(sock),
                        upstream=engine.daemon_socket, audit_log=audit, log_path=log_path,
                        argv=argv)
    gate.wait_dockgate(g)
    return g


@pytest.fixture
def recorder(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[DockgateProcess, Path]]:
    if engine.direct:
        pytest.skip("DOCKGATE_TEST_DIRECT=1: no dockgate")
    # Unix socket paths are short: a directory under /tmp, not pytest's deep one.
    base = Path(tmp_path_factory.mktemp("x", numbered=True))
    short = Path(f"/tmp/dga{os.getpid()}{unique('')[-6:]}")
    short.mkdir()
    policy = short / "audit-policy.yaml"
    policy.write_text(SESSION_POLICY)
    key = short / "audit.key"
    key.write_bytes(os.urandom(32).hex().encode())
    g = start_extra(engine, short, "--audit-policy", str(policy), "--audit-key", str(key),
                    "--audit-fsync", "always")
    try:
        yield g, key
    finally:
        g.stop()
        if os.environ.get("DOCKGATE_TEST_KEEP"):
            print(f"\nkept {short}", file=sys.stderr)
        else:
            shutil.rmtree(short, ignore_errors=True)
        del base


def env_for(engine: Engine, g: DockgateProcess) -> dict[str, str]:
    env = dict(engine.env)
    env["DOCKER_HOST"] = f"unix://{g.socket}"
    return env


def dockgate_cli(*args: str, binary: bool = False) -> subprocess.CompletedProcess[Any]:
    return subprocess.run([*gate.dockgate_command(), *args], capture_output=True,
                          text=not binary, timeout=60, check=False)


def test_exec_it_session_plays_back_what_the_terminal_showed(
    engine: Engine, recorder: tuple[DockgateProcess, Path]
) -> None:
    """A recorded exec -it session plays back exactly what the terminal showed (without the cursor
    query unless raw), exports to asciicast with the console size and the resize, and verifies with
    the key."""
    g, key = recorder
    name = unique("recexec")
    engine.docker_direct("run", "-d", "--init", "--network", "none", "--name", name, IMAGE,
                         "sleep", "300")
    with Terminal([engine.cli, "exec", "-it", name, "sh"], env_for(engine, g),
                  rows=30, cols=100) as term:
        term.expect(PROMPT)
        term.send("echo rec-$((6*7)); printf '\\033[1mbold\\033[0m\\n'\r")
        term.expect(r"rec-42")
        resized: list[dict[str, Any]] = []
        for _ in range(10):  # the CLI sometimes misses a SIGWINCH (often with engine 20.10)
            term.resize(40, 120)
            resized = [r for r in wait_records(g, 0, lambda rs: any(
                r["endpoint"] == "exec.resize" and r["stage"] == "ResponseComplete"
                and "w=120" in r["path"] for r in rs), timeout=2)
                if r["endpoint"] == "exec.resize" and r["stage"] == "ResponseComplete"
                and "w=120" in r["path"]]
            if resized:
                break
        assert resized, "the docker CLI never sent the resize"
        term.send("exit 4\r")
        assert term.wait(30) == 4
        shown = term.output
    records = wait_records(g, 0, lambda rs: any(r["stage"] == "SessionEnded" for r in rs))
    ended = next(r for r in records if r["stage"] == "SessionEnded")
    assert ended["endpoint"] == "exec.start" and ended["exit_code"] == 4
    session = ended["session"]
    assert Path(session["file"]).parent == g.audit_log.parent / "sessions"
    played = dockgate_cli("audit", "play", "--speed", "1000", "--raw", session["file"],
                          binary=True)
    assert played.returncode == 0, played.stderr
    assert played.stdout == shown
    # Without --raw, the shell's cursor position query (busybox asks with ESC[6n) is
    # not replayed: the reviewer's terminal would answer it into their own input.
    safe = dockgate_cli("audit", "play", "--speed", "1000", session["file"], binary=True)
    assert safe.stdout == shown.replace(b"\x1b[6n", b"")
    cast = dockgate_cli("audit", "export", "--asciicast", session["file"])
    lines = cast.stdout.splitlines()
    header = json.loads(lines[0])
    # API 1.42+ clients send the console size with exec start; older ones resize
    # right after it starts: either way the cast starts at the terminal's size, and
    # the window resize during the session is an "r" event.
    assert header["version"] == 2
    assert (header["width"], header["height"]) == (100, 30)
    events = [json.loads(x) for x in lines[1:]]
    assert "".join(e[2] for e in events if e[1] == "o").encode() == shown
    # The recording holds the resize the daemon accepted.
    assert 200 <= resized[-1]["status"] < 300, resized[-1]
    assert [e[2] for e in events if e[1] == "r"][-1:] == ["120x40"]
    times = [e[0] for e in events]
    assert times == sorted(times)
    verified = dockgate_cli("audit", "verify", "--key", str(key), "--sessions", str(g.audit_log))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_planted_secrets_never_reach_the_log_directory(
    engine: Engine, recorder: tuple[DockgateProcess, Path]
) -> None:
    """Secrets in Env, registry auth headers and a login body are masked or erased in the audit
    records, and appear in no file of the log directory."""
    g, _ = recorder
    password = "hunter2-" + unique("pw")
    registry_password = "regpw-" + unique("pw")
    auth = base64.urlsafe_b64encode(json.dumps(
        {"username": "u", "password": registry_password}).encode()).decode()
    name = unique("secret")
    engine.run_cli(engine.cli, ["run", "--rm", "--network", "none", "--name", name,
                                "-e", f"DB_PASSWORD={password}", "-e", "PLAIN=visible",
                                IMAGE, "true"], env=env_for(engine, g))
    # A registry credential header on a harmless local request (no registry is contacted).
    conn = unixhttp.UnixHTTPConnection(g.socket, timeout=30)
    try:
        conn.request("POST", f"/v1.41/images/{IMAGE}/tag?repo=dgplanted&tag=x",
                     headers={"X-Registry-Auth": auth, "X-Registry-Config": auth,
                              "Authorization": f"Bearer {registry_password}"})
        assert conn.getresponse().status == 201
    finally:
        conn.close()
    # A /auth body (docker login); the registry address refuses at once.
    status, _ = unixhttp.request(g.socket, "POST", "/v1.41/auth", json.dumps(
        {"username": "u", "password": registry_password,
         "serveraddress": "127.0.0.1:9"}).encode())
    assert status >= 400
    engine.docker_direct("rmi", "dgplanted:x")
    records = wait_records(g, 0, lambda rs: any(r.get("endpoint") == "system.auth"
                                                and r["stage"] == "ResponseComplete"
                                                for r in rs))
    create = next(r for r in records if r.get("endpoint") == "container.create"
                  and r["stage"] == "RequestDecided")
    assert "PLAIN=visible" in create["request"]["body"]["Env"]
    assert any(m.startswith("/request/body/Env/") for m in create["masked"])
    tag = next(r for r in records if r.get("endpoint") == "image.tag"
               and r["stage"] == "RequestDecided")
    assert "/request/headers/x-registry-auth" in tag["erased"]
    for path in g.audit_log.parent.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (password, registry_password, auth):
                assert secret.encode() not in data, (path, secret)


@pytest.mark.allow_refusals
def test_unwritable_log_refuses_and_forwards_nothing(
    engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """When the audit log cannot be written, requests are refused 503 with a Docker-shaped message,
    nothing is created on the daemon, and dockgate stays up and logs why."""
    if engine.direct:
        pytest.skip("DOCKGATE_TEST_DIRECT=1: no dockgate")
    short = Path(f"/tmp/dgu{os.getpid()}{unique('')[-6:]}")
    g = start_extra(engine, short)
    try:
        # The log can no longer be written: the file is gone and a directory holds its
        # name (root ignores chmod, so a read-only directory would not stop it).
        g.audit_log.unlink()
        g.audit_log.mkdir()
        name = unique("nolog")
        status, body = unixhttp.request(
            g.socket, "POST", f"/v1.41/containers/create?name={name}",
            json.dumps({"Image": IMAGE, "Cmd": ["true"],
                        "HostConfig": {"NetworkMode": "none"}}).encode())
        assert status == 503
        assert json.loads(body)["message"] == (
            "dockgate: cannot write the audit log; request refused")
        result = engine.run_cli(engine.cli, ["create", "--network", "none", "--name", name,
                                             IMAGE, "true"], env=env_for(engine, g), check=False)
        assert result.returncode != 0
        listed = engine.docker_direct("ps", "-a", "--filter", f"name={name}", "-q").stdout
        assert listed.strip() == ""
        assert g.alive()
        assert "audit" in g.log_text()
    finally:
        g.stop()
        shutil.rmtree(short, ignore_errors=True)

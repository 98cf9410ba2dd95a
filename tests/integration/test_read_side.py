"""Issue 21, the read side and registries: what a read-only consumer (or a
baseline/restricted client) can make the daemon do or learn, attacked live
against the bare daemon first and then through each shipped profile.

Oracles are the daemon's own actions (a connection arriving at a loopback
listener the test opens) and the exact bytes a client received.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from support import engines as eng
from support import unixhttp
from support.engines import Engine
from support.policygate import (
    PolicyGate,
    policy_audit_guard,
    policy_gates,
)

pytestmark = pytest.mark.engine
_ = (policy_gates, policy_audit_guard)  # fixtures, imported for pytest


@pytest.fixture
def readonly_gates(policy_gates: dict[tuple[str, str], PolicyGate]) -> dict[str, PolicyGate]:
    """``{engine name: the readonly dockgate in front of it}``."""
    return {name: pg for (name, policy), pg in policy_gates.items() if policy == "readonly"}


def profile_gate(
    engine: Engine,
    profile: str,
    readonly_gates: dict[str, PolicyGate],
    policy_gates: dict[tuple[str, str], PolicyGate],
) -> PolicyGate:
    return policy_gates[(engine.name, profile)]


class Listener:
    """A TCP listener on 127.0.0.1 that counts connections and closes each at once."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def wait_for_connection(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connections:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    try:
        yield lst
    finally:
        lst.close()


REGISTRY_REQUESTS = {
    "distribution": ("GET", "/distribution/127.0.0.1:{port}/x/json"),
    "pull": ("POST", "/images/create?fromImage=127.0.0.1:{port}/x&tag=1"),
    "pull-beside-import": ("POST", "/images/create?fromSrc=-&fromImage=127.0.0.1:{port}/x&tag=1"),
    "search": ("GET", "/images/search?term=127.0.0.1:{port}/x"),
    "build-remote": ("POST", "/build?remote=http://127.0.0.1:{port}/context.tar"),
    "import-url": ("POST", "/images/create?fromSrc=http://127.0.0.1:{port}/layer.tar"),
}
"""Requests that make dockerd connect to the registry they name."""

EARLIER_RULES = {
    ("readonly", "pull"): "read-only-endpoints",
    ("readonly", "pull-beside-import"): "read-only-endpoints",
    ("readonly", "search"): "read-only-endpoints",
    ("readonly", "build-remote"): "read-only-endpoints",
    ("readonly", "import-url"): "read-only-endpoints",
    ("restricted", "pull-beside-import"): "no-image-import",
    ("restricted", "build-remote"): "escalation-endpoints",
    ("restricted", "import-url"): "no-image-import",
}
"""Where a rule before ``registries`` refuses the request first."""


@pytest.mark.allow_refusals
@pytest.mark.parametrize("what", sorted(REGISTRY_REQUESTS))
@pytest.mark.parametrize("profile", ["readonly", "baseline", "restricted"])
def test_loopback_registry_is_refused(
    engine: Engine,
    profile: str,
    what: str,
    listener: Listener,
    readonly_gates: dict[str, PolicyGate],
    policy_gates: dict[tuple[str, str], PolicyGate],
) -> None:
    """A registry host of 127.0.0.1:PORT makes the bare daemon connect to that host
    port; through readonly, baseline and restricted the request is refused and
    the listener sees no connection."""
    method, target = REGISTRY_REQUESTS[what]
    target = target.format(port=listener.port)
    unixhttp.request(engine.daemon_socket, method, target, timeout=60)
    assert listener.wait_for_connection(), f"dockerd did not connect for {target} (direct)"
    listener.connections = 0
    pg = profile_gate(engine, profile, readonly_gates, policy_gates)
    status, body = unixhttp.request(pg.socket, method, target, timeout=60)
    assert status == 403, body
    message = json.loads(body)["message"]
    rule = EARLIER_RULES.get((profile, what), "registries")
    assert message.startswith(f"dockgate: denied by policy {profile} rule {rule}: ")
    if rule == "registries":
        assert f" 127.0.0.1:{listener.port} is a loopback address" in message
    assert not listener.wait_for_connection(timeout=1.0)


@pytest.mark.allow_refusals
def test_docker_login_to_loopback_is_refused_under_baseline(
    engine: Engine, listener: Listener, policy_gates: dict[tuple[str, str], PolicyGate]
) -> None:
    """``docker login 127.0.0.1:PORT`` makes the daemon connect (POST /auth) directly;
    through baseline the CLI gets the policy's message and nothing connects."""
    addr = f"127.0.0.1:{listener.port}"
    engine.docker_direct("login", "-u", "u", "--password-stdin", addr, input="p\n", check=False)
    assert listener.wait_for_connection(), "dockerd did not connect for /auth (direct)"
    listener.connections = 0
    pg = policy_gates[(engine.name, "baseline")]
    out = pg.docker("login", "-u", "u", "--password-stdin", addr, input="p\n", check=False)
    assert out.returncode != 0
    assert "registries: serveraddress registry " + addr in out.stderr
    assert not listener.wait_for_connection(timeout=1.0)


@pytest.mark.parametrize("profile", ["readonly", "baseline", "restricted"])
def test_docker_hub_passes_the_registry_rule(
    engine: Engine,
    profile: str,
    readonly_gates: dict[str, PolicyGate],
    policy_gates: dict[tuple[str, str], PolicyGate],
) -> None:
    """The allowlist is not a blanket refusal: a docker.io reference passes the
    policy (the daemon has no network here, so it answers with its own error)."""
    pg = profile_gate(engine, profile, readonly_gates, policy_gates)
    mark = pg.mark()
    status, _ = unixhttp.request(pg.socket, "GET", "/distribution/busybox/json", timeout=60)
    assert status != 403
    assert pg.refusals_since(mark) == []


MARKER = "s3cret-"


@pytest.fixture
def secret_container(engine: Engine) -> Iterator[tuple[str, str]]:
    """(name, secret): a running container whose environment holds the secret."""
    name, secret = eng.unique("envsecret"), eng.unique(MARKER)
    engine.docker_direct("run", "-d", "--network", "none", "--name", name, "-e",
                         f"DB_PASSWORD={secret}", "-e", "PLAIN=visible", eng.IMAGE, "sleep", "120")
    yield name, secret


def test_inspect_through_readonly_never_shows_environment_values(
    engine: Engine, secret_container: tuple[str, str], readonly_gates: dict[str, PolicyGate]
) -> None:
    """`docker inspect` directly prints the container's secret; through readonly the
    CLI's bytes hold no environment value, the JSON keeps its shape (names in
    order, NAME=<redacted>), and docker-py reads the same redacted list."""
    name, secret = secret_container
    direct = engine.docker_direct("inspect", name, binary=True).stdout
    assert secret.encode() in direct
    pg = readonly_gates[engine.name]
    out = pg.docker("inspect", name, binary=True).stdout
    assert secret.encode() not in out
    env = json.loads(out)[0]["Config"]["Env"]
    direct_env = json.loads(direct)[0]["Config"]["Env"]
    assert env == [e.split("=", 1)[0] + "=<redacted>" for e in direct_env]
    assert "DB_PASSWORD=<redacted>" in env and "PLAIN=<redacted>" in env
    client = pg.client()
    try:
        assert client.containers.get(name).attrs["Config"]["Env"] == env
    finally:
        client.close()
    formatted = pg.docker("inspect", "--format", "{{json .Config.Env}}", name).stdout
    assert secret not in formatted and json.loads(formatted) == env


def read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float) -> bytes:
    """What ``proc`` wrote to stdout until ``needle`` appeared (or the timeout)."""
    assert proc.stdout is not None
    got = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while needle not in got and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            data = os.read(fd, 65536)
            if not data:
                break
            got += data
    return got


def test_events_through_readonly_never_show_exec_command_lines(
    engine: Engine, secret_container: tuple[str, str], readonly_gates: dict[str, PolicyGate]
) -> None:
    """An exec's command line is in the daemon's exec_create/exec_start events, as a
    direct `docker events` shows; a `docker events` streaming through readonly
    sees the exec events with the command replaced, and never the secret."""
    name, _ = secret_container
    secret = eng.unique(MARKER)
    pg = readonly_gates[engine.name]
    since = str(int(time.time()) - 1)
    watcher = subprocess.Popen(
        [engine.cli, "events", "--format", "{{json .}}", "--filter", f"container={name}"],
        env=pg.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)  # the stream is open before the exec (the --since replay is checked too)
        engine.docker_direct("exec", name, "sh", "-c", f"echo {secret} > /dev/null")
        streamed = read_until(watcher, b"exec_die", timeout=60)
    finally:
        watcher.terminate()
        watcher.wait(timeout=15)
    assert b"exec_die" in streamed, streamed
    assert secret.encode() not in streamed
    assert b'"Action":"exec_create: \\u003credacted\\u003e"' in streamed or (
        b'"exec_create: <redacted>"' in streamed
    ), streamed
    until = str(int(time.time()) + 1)
    window = ("events", "--since", since, "--until", until, "--filter", f"container={name}")
    direct = engine.docker_direct(*window, binary=True).stdout
    assert secret.encode() in direct, "the daemon's events hold no command line: nothing shown"
    replayed = pg.docker(*window, binary=True).stdout
    assert secret.encode() not in replayed and b"exec_create: <redacted>" in replayed

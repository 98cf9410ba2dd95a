"""Issue 21, the read side and registries: what a read-only consumer (or a
baseline/restricted client) can make the daemon do or learn, attacked live
against the bare daemon first and then through each shipped profile.

Oracles are the daemon's own actions (a connection arriving at a loopback
listener the test opens) and the exact bytes a client received.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import engines as eng
from support import gate, unixhttp
from support.engines import Engine
from support.policygate import (
    PolicyGate,
    policy_audit_guard,
    policy_gates,
    start_policy_gate,
)

pytestmark = pytest.mark.engine
_ = (policy_gates, policy_audit_guard)  # fixtures, imported for pytest


@pytest.fixture(scope="module")
def readonly_gates(engine_set: dict[str, Engine]) -> Iterator[dict[str, PolicyGate]]:
    """A dockgate running policies/readonly.yaml in front of each selected engine."""
    started: dict[str, PolicyGate] = {}
    base = next(iter(engine_set.values())).daemon.root.parent / "ro"
    try:
        for name, engine in engine_set.items():
            workdir = base / name.split(".")[0]
            proc = start_policy_gate(engine, "readonly", workdir)
            started[name] = PolicyGate(engine, "readonly", proc,
                                       eng.make_docker_config(workdir / "cfg"))
        for pg in started.values():
            gate.wait_dockgate(pg.process)
        yield started
    finally:
        for pg in started.values():
            pg.process.stop()


def profile_gate(
    engine: Engine,
    profile: str,
    readonly_gates: dict[str, PolicyGate],
    policy_gates: dict[tuple[str, str], PolicyGate],
) -> PolicyGate:
    if profile == "readonly":
        return readonly_gates[engine.name]
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
    "search": ("GET", "/images/search?term=127.0.0.1:{port}/x"),
}
"""Requests that make dockerd connect to the registry they name.  Pull and
search are not in readonly (its endpoint rule refuses them first)."""


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
    assert message.startswith(f"dockgate: denied by policy {profile} rule ")
    if profile != "readonly" or what == "distribution":
        assert f"registry 127.0.0.1:{listener.port} is a loopback address" in message
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


def test_docker_hub_distribution_inspect_is_allowed_by_readonly(
    engine: Engine, readonly_gates: dict[str, PolicyGate], tmp_path: Path
) -> None:
    """The allowlist is not a blanket refusal: a docker.io reference passes the
    policy (the daemon has no network here, so it answers with its own error)."""
    pg = readonly_gates[engine.name]
    mark = pg.mark()
    status, _ = unixhttp.request(pg.socket, "GET", "/distribution/busybox/json", timeout=60)
    assert status != 403
    assert pg.refusals_since(mark) == []

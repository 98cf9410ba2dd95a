"""Extra dockgate processes running a chosen policy (baseline, restricted,
readonly) in front of a session daemon, for the policy integration tests.

The session's own dockgates run policies/privileged.yaml and are watched by
the autouse audit guard in tests/conftest.py; these are not, so tests check
their audit logs themselves (``PolicyGate.refusals_since``).  The
``profile_gates`` fixture hands out all four shipped profiles, the session's
own gate as privileged.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import docker
import pytest

from support import engines as eng
from support import gate
from support.engines import Engine

K = TypeVar("K")

POLICIES = gate.REPO / "policies"
POLICY_NAMES = ("baseline", "restricted")
"""The profiles that govern what a client may create (the usual test parameter)."""
GATE_POLICIES = (*POLICY_NAMES, "readonly")
"""The profiles ``policy_gates`` starts a dockgate for."""
PROFILES = ("privileged", *GATE_POLICIES)
"""Every shipped profile (policies/*.yaml but the example)."""


def start_policy_gate(engine: Engine, policy: str, workdir: Path) -> gate.DockgateProcess:
    """Start ``dockgate serve --policy policies/<policy>.yaml`` in front of ``engine``'s daemon.

    ``gate.start_dockgate`` with its policy swapped (it reads ``gate.POLICY``
    when called); socket, audit log and log live under ``workdir``.  Does not
    wait: call ``gate.wait_dockgate``.
    """
    if len(str(workdir / "g.sock")) >= 100:
        raise RuntimeError(f"socket path too long for a unix socket: {workdir}")
    with mock.patch.object(gate, "POLICY", POLICIES / f"{policy}.yaml"):
        return gate.start_dockgate(f"{engine.name}/{policy}", engine.daemon_socket, workdir)


@dataclass
class PolicyGate:
    """A policy dockgate in front of one engine, and a way to drive clients through it."""

    engine: Engine
    policy: str
    process: gate.DockgateProcess
    docker_config: Path

    @property
    def socket(self) -> str:
        return self.process.socket

    @property
    def env(self) -> dict[str, str]:
        """Client environment whose DOCKER_HOST is this dockgate.

        Its own DOCKER_CONFIG, so buildx state made here stays out of the
        session's config.
        """
        env = self.engine._env(self.socket)
        env["DOCKER_CONFIG"] = str(self.docker_config)
        return env

    def docker(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run the current docker CLI through this dockgate (keywords as ``Engine.run_cli``)."""
        return self.engine.run_cli(self.engine.cli, args, env=self.env, **kwargs)

    def client(self, timeout: int = 60) -> Any:
        """A docker-py DockerClient through this dockgate."""
        return docker.DockerClient(
            base_url=f"unix://{self.socket}", version="auto", timeout=timeout
        )

    def mark(self) -> int:
        """The audit log's current size: pass it to ``records_since``/``refusals_since``."""
        return self.process.audit_size()

    def records_since(self, mark: int) -> list[dict[str, Any]]:
        """Records of the exchanges that began after ``mark``.

        An exchange's records share its ``id`` and begin with RequestDecided.
        The ResponseComplete of an earlier exchange can still be written after
        the mark (the client may have read the answer and exited first), so
        records of exchanges whose RequestDecided came before ``mark`` are left
        out; lines that do not parse are kept.
        """
        records = self.process.audit_records(mark)
        begun = {r.get("id") for r in records if r.get("stage") == "RequestDecided"}
        return [r for r in records if "unparsable" in r or r.get("id") in begun]

    def refusals_since(self, mark: int) -> list[dict[str, Any]]:
        """Requests this dockgate refused (or answered itself) since ``mark``."""
        return gate.refusals(self.records_since(mark))


def rules_of(record: dict[str, Any]) -> list[str]:
    """The rules an audit record names, deciding one first (``rules`` in v1, else ``rule``)."""
    if "rules" in record:
        return list(record["rules"] or [])
    return [record["rule"]] if record.get("rule") else []


def reasons_of(record: dict[str, Any]) -> list[str]:
    """The reasons an audit record gives (``reasons`` in v1, else ``reason``)."""
    if "reasons" in record:
        return list(record["reasons"] or [])
    return [record["reason"]] if record.get("reason") else []


def start_all(starts: Mapping[K, Callable[[], PolicyGate]]) -> dict[K, PolicyGate]:
    """Start every gate of ``starts`` (key -> a call that starts one without waiting),
    then wait for them all; on any failure the ones already started are stopped."""
    started: dict[K, PolicyGate] = {}
    try:
        for key, start in starts.items():
            started[key] = start()
        for pg in started.values():
            gate.wait_dockgate(pg.process)
    except BaseException:
        stop_all(started)
        raise
    return started


def stop_all(gates: Mapping[Any, PolicyGate]) -> None:
    """Stop every gate of ``gates``."""
    for pg in gates.values():
        pg.process.stop()


def _start_gates(engines: dict[str, Engine], base: Path) -> dict[tuple[str, str], PolicyGate]:
    """One dockgate per (engine, policy in GATE_POLICIES), started together and waited for.

    ``base`` must be short: sockets live at ``base/<major><policy[:3]>/g.sock``.
    """

    def starter(engine: Engine, policy: str) -> Callable[[], PolicyGate]:
        workdir = base / f"{engine.name.split('.')[0]}{policy[:3]}"
        return lambda: PolicyGate(engine, policy, start_policy_gate(engine, policy, workdir),
                                  eng.make_docker_config(workdir / "cfg"))

    return start_all({(name, policy): starter(engine, policy)
                      for name, engine in engines.items() for policy in GATE_POLICIES})


_shared: dict[tuple[str, str], PolicyGate] = {}
_users = 0


@pytest.fixture(scope="session")
def policy_gates(engine_set: dict[str, Engine]) -> Iterator[dict[tuple[str, str], PolicyGate]]:
    """``{(engine name, policy): PolicyGate}`` for every selected engine and GATE_POLICIES.

    Several test modules import this fixture; pytest then holds one session
    fixture per module, so the processes are shared through a use count and
    started once.  It depends on ``engine_set`` so the gates stop before the
    daemons do; their directories live under the session's and go with it.
    """
    global _users
    if not _shared:
        base = next(iter(engine_set.values())).daemon.root.parent / "pg"
        _shared.update(_start_gates(engine_set, base))
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0:
            stop_all(_shared)
            _shared.clear()


@pytest.fixture(autouse=True)
def policy_audit_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """The conftest audit guard for the policy gates (it only watches the session's own).

    Autouse in the modules that import it.  After a test that uses the policy
    gates and is not marked ``allow_refusals``, fail if any of them refused a
    request during it; fail any such test if one has died.  Marked tests check
    their own gate's records (``PolicyGate.refusals_since``).
    """
    if "policy_gates" not in request.fixturenames:
        yield
        return
    gates: dict[tuple[str, str], PolicyGate] = request.getfixturevalue("policy_gates")
    marks = {key: pg.mark() for key, pg in gates.items()}
    yield
    dead = [pg for pg in gates.values() if not pg.process.alive()]
    assert not dead, "policy dockgate exited: " + "; ".join(
        f"{pg.process.engine}: {pg.process.log_text()[-3000:]}" for pg in dead
    )
    if request.node.get_closest_marker("allow_refusals"):
        return
    problems = [
        f"{pg.process.engine}: {record}"
        for key, pg in gates.items()
        for record in pg.refusals_since(marks[key])
    ]
    assert not problems, "a policy dockgate refused requests:\n" + "\n".join(problems)


@pytest.fixture
def profile_gates(
    engine: Engine,
    policy_gates: dict[tuple[str, str], PolicyGate],
    dockgate_process: gate.DockgateProcess,
) -> dict[str, PolicyGate]:
    """``{profile: PolicyGate}`` in front of ``engine`` for every shipped profile (PROFILES).

    privileged is the session's own dockgate (watched by the conftest audit
    guard: tests that expect refusals there are marked ``allow_refusals``).
    """
    gates = {p: policy_gates[(engine.name, p)] for p in GATE_POLICIES}
    return {"privileged": PolicyGate(engine, "privileged", dockgate_process,
                                     engine.docker_config), **gates}


def refused(pg: PolicyGate, mark: int, rule: str, text: str) -> None:
    """Every mutating exchange decided since ``mark`` was refused by ``rule`` (first)
    with a reason naming ``text``; none was forwarded, and there was one."""
    records = pg.records_since(mark)
    ours = {r["id"] for r in records if r["stage"] == "RequestDecided"}
    mutating = [r for r in records if r["id"] in ours and r["method"] not in ("GET", "HEAD")]
    assert mutating, records
    for r in mutating:
        assert r["decision"] == "deny", r
        assert rules_of(r)[:1] == [rule], r
        assert any(text in reason for reason in reasons_of(r)), r


def denied(pg: PolicyGate, args: tuple[str, ...], rule: str, text: str, **kw: Any) -> None:
    """The CLI run with ``args`` through ``pg`` fails with the policy's denial by ``rule``
    (naming ``text``) and the daemon's containers, images, volumes and networks are
    unchanged."""
    before = pg.engine.snapshot()
    mark = pg.mark()
    out = pg.docker(*args, check=False, timeout=60, **kw)
    assert out.returncode != 0, out.stdout
    assert f"dockgate: denied by policy {pg.policy} rule {rule}" in out.stderr, out.stderr
    assert pg.engine.snapshot() == before, "the daemon's state changed"
    refused(pg, mark, rule, text)

"""User and group spellings the daemon reads differently from a naive split.

moby resolves ``User`` and ``GroupAdd`` with ``moby/sys/user`` (engine 28.5;
runc's ``libcontainer/user`` on 20.10, the same code) against the
container's own ``/etc/passwd`` and ``/etc/group``: ``GetExecUser`` splits
``User`` on every ``:`` and keeps the first two parts, reads an empty group
part as no group and an empty user part as uid 0, and looks a group *name* up
in the container's file; ``GetAdditionalGroups`` matches each ``GroupAdd``
entry by name or number in that file before it reads a number.  Each test
first shows on the bare daemon that a spelling restricted's ``non-root-user``
or ``no-root-group`` rule used to pass runs with uid or gid 0, then that
restricted refuses it, on create and on exec, and that the daemon created
nothing.  Last, who an exec runs as is fixed when it is created: starting an
exec another party made on the daemon as root runs it as root, so a start is
judged as the exec's create.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from support import unixhttp
from support.engines import IMAGE, Engine, unique
from support.policygate import PolicyGate, policy_audit_guard, policy_gates, rules_of

pytestmark = pytest.mark.engine
_ = (policy_gates, policy_audit_guard)  # fixtures, imported for pytest

GROUPS_IMAGE = "dgtest-groups:latest"
"""IMAGE with an /etc/group that maps the names ``staff`` and ``2000`` to gid 0, as any
image from a registry may."""
HARDENED = ("--network", "none", "--pull", "never", "--cap-drop", "ALL", "--security-opt",
            "no-new-privileges", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "64")
"""What restricted requires of a container but its user."""


@dataclass(frozen=True)
class Spelling:
    """``flags`` (a ``--user`` and maybe ``--group-add``) on ``image``: the daemon runs
    ``id -u``/``id -G`` as ``runs`` ("uid gids"), or, on the engines ``refused_by_daemon``
    names, refuses it itself; restricted's ``rule`` refuses it."""

    id: str
    flags: tuple[str, ...]
    image: str
    runs: str
    rule: str
    refused_by_daemon: tuple[str, ...] = ()


SPELLINGS = [
    # 20.10 keeps the first two parts (runc's parseLine); 28.5 cuts at the first ':'
    # and fails to find a group named "0:x": the engines disagree, so one spelling only.
    Spelling("third-part", ("--user", "1000:0:x"), IMAGE, "1000 0", "non-root-user",
             refused_by_daemon=("28.5",)),
    Spelling("empty-group", ("--user", "1000:"), IMAGE, "1000 0", "non-root-user"),
    Spelling("empty-user", ("--user", ":1000"), IMAGE, "0 1000", "non-root-user"),
    Spelling("group-name", ("--user", "1000:staff"), GROUPS_IMAGE, "1000 0", "non-root-user"),
    Spelling("group-add-number-named", ("--user", "1000:1000", "--group-add", "2000"),
             GROUPS_IMAGE, "1000 1000 0", "no-root-group"),
]


@pytest.fixture(scope="module")
def groups_image(engine_set: dict[str, Engine]) -> Iterator[None]:
    """GROUPS_IMAGE on every engine, committed directly on the daemon."""
    for engine in engine_set.values():
        base = unique("dgusr-base")
        engine.docker_direct("run", "--name", base, "--network", "none", IMAGE, "sh", "-c",
                             "printf 'staff:x:0:\\n2000:x:0:\\n' > /etc/group")
        engine.docker_direct("commit", base, GROUPS_IMAGE)
        engine.docker_direct("rm", base)
    yield
    for engine in engine_set.values():
        engine.docker_direct("rmi", GROUPS_IMAGE, check=False)


def ids(out: str) -> str:
    """``id -u`` and ``id -G`` output as one line: "uid gid groups..."."""
    return " ".join(out.split())


def refused_by(pg: PolicyGate, mark: int, rule: str) -> bool:
    """Whether every request refused since ``mark`` was refused by ``rule``, and one was."""
    refused = pg.refusals_since(mark)
    return bool(refused) and all(rules_of(r)[:1] == [rule] for r in refused)


@pytest.mark.allow_refusals
@pytest.mark.parametrize("case", SPELLINGS, ids=lambda c: c.id)
def test_user_spelling_with_uid_or_gid_0_is_refused_by_restricted(
    engine: Engine,
    policy_gates: dict[tuple[str, str], PolicyGate],
    groups_image: None,
    case: Spelling,
) -> None:
    """A user or group spelling the daemon resolves to uid 0 or gid 0 (shown live on the bare
    daemon) is refused by restricted at create, and the daemon creates nothing."""
    cmd = (case.image, "sh", "-c", "id -u; id -G")
    bare = engine.docker_direct("run", "--rm", *HARDENED, *case.flags, *cmd, check=False)
    if engine.name in case.refused_by_daemon:
        assert bare.returncode != 0 and "unable to find" in bare.stderr, bare.stdout
    else:
        assert ids(bare.stdout) == case.runs, bare.stderr

    pg = policy_gates[(engine.name, "restricted")]
    before = engine.snapshot()
    mark = pg.mark()
    out = pg.docker("run", "--rm", *HARDENED, *case.flags, *cmd, check=False)
    assert out.returncode != 0, out.stdout
    assert f"denied by policy restricted rule {case.rule}" in out.stderr, out.stderr
    assert refused_by(pg, mark, case.rule)
    assert engine.snapshot() == before, "the daemon's state changed"


@pytest.mark.allow_refusals
def test_exec_with_a_group_name_for_gid_0_is_refused_by_restricted(
    engine: Engine,
    policy_gates: dict[tuple[str, str], PolicyGate],
    groups_image: None,
) -> None:
    """An exec into a container restricted allows, as ``1000:staff`` (gid 0 in that container's
    /etc/group, shown on the bare daemon), is refused by restricted, and no exec is created."""
    name = unique("dgusr")
    engine.docker_direct("run", "-d", "--init", "--name", name, *HARDENED, "--user", "1000:1000",
                         GROUPS_IMAGE, "sleep", "600")
    try:
        bare = engine.docker_direct("exec", "-u", "1000:staff", name, "id", "-g")
        assert bare.stdout.strip() == "0", bare.stderr
        execs = engine.docker_direct("inspect", "--format", "{{len .ExecIDs}}", name).stdout

        pg = policy_gates[(engine.name, "restricted")]
        mark = pg.mark()
        out = pg.docker("exec", "-u", "1000:staff", name, "id", "-g", check=False)
        assert out.returncode != 0, out.stdout
        assert "denied by policy restricted rule non-root-user: User '1000:staff' names its " \
            "group by name" in out.stderr, out.stderr
        assert refused_by(pg, mark, "non-root-user")
        after = engine.docker_direct("inspect", "--format", "{{len .ExecIDs}}", name).stdout
        assert after == execs, "an exec was created"
        ok = pg.docker("exec", "-u", "1000:1000", name, "id", "-g")
        assert ok.stdout.strip() == "1000"
    finally:
        engine.docker_direct("rm", "-f", name, check=False)


def _api(sock: str, method: str, target: str, body: object = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    status, raw = unixhttp.request(sock, method, target, data, timeout=60)
    return status, json.loads(raw) if raw.strip() else None


def _root_exec(engine: Engine, container: str, out: str) -> str:
    """An exec of ``container`` made directly on the daemon (another party's: an admin's, a
    tool's), as root, that writes its uid to ``out``; not started.  Its id."""
    status, made = _api(engine.daemon_socket, "POST", f"/containers/{container}/exec",
                        {"User": "0", "Cmd": ["sh", "-c", f"id -u > {out}"]})
    assert status == 201, made
    return str(made["Id"])


@pytest.mark.allow_refusals
def test_starting_another_partys_root_exec_is_refused_by_restricted(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate],
) -> None:
    """An exec created on the daemon by another party as root, in a container restricted
    allows, runs as root when started (shown by starting one directly); started through
    restricted (its id is in the container's inspect and in /events) it is refused, and
    the daemon says it never ran."""
    name = unique("dgusr")
    engine.docker_direct("run", "-d", "--init", "--name", name, *HARDENED, "--user", "1000:1000",
                         IMAGE, "sleep", "600")
    try:
        sock = engine.daemon_socket
        bare = _root_exec(engine, name, "/tmp/bare")
        status, _ = _api(sock, "POST", f"/exec/{bare}/start", {"Detach": True})
        assert status == 200
        ran = engine.docker_direct("exec", name, "sh", "-c", "sleep 1; cat /tmp/bare")
        assert ran.stdout.strip() == "0", ran.stderr

        pg = policy_gates[(engine.name, "restricted")]
        foreign = _root_exec(engine, name, "/tmp/through")
        mark = pg.mark()
        status, answer = _api(pg.socket, "POST", f"/exec/{foreign}/start", {"Detach": True})
        assert status == 403, answer
        assert "rule non-root-user: User '0' runs as root" in answer["message"], answer
        assert pg.refusals_since(mark), "the refusal is not in the audit log"
        status, info = _api(sock, "GET", f"/exec/{foreign}/json")
        assert status == 200 and info["Pid"] == 0 and info["ExitCode"] is None, info
        assert engine.docker_direct("exec", name, "ls", "/tmp/through", check=False).returncode
    finally:
        engine.docker_direct("rm", "-f", name, check=False)

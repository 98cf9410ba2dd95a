"""Session fixtures: two real Docker daemons, dockgate in front of each, and the
per-test guards (resource cleanup, audit-log refusal check). See tests/README.md.

Environment:
    DOCKGATE_TEST_DIRECT=1     hand out the daemons' own sockets (no dockgate).
    DOCKGATE_TEST_ENGINES=28.5 run against a subset of engines (comma separated).
    DOCKGATE_TEST_KEEP=1       keep the session's temporary directory.
    DOCKGATE_TEST_INSTALLED=1  test the installed wheel (refuses to run if dockgate
                               would be imported from the source tree).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import engines as eng
from support import gate

DIRECT = os.environ.get("DOCKGATE_TEST_DIRECT", "") not in ("", "0")
SELECTED = tuple(
    n.strip()
    for n in os.environ.get("DOCKGATE_TEST_ENGINES", ",".join(eng.ENGINE_NAMES)).split(",")
    if n.strip()
)
ENGINE_FIXTURES = ("engine", "engine20", "engine28", "engine_set", "dockgate_process")

# What the session started; the per-test guard reads it.
STARTED: dict[str, eng.Engine] = {}
GATES: dict[str, gate.DockgateProcess] = {}
_OFFSETS = pytest.StashKey[dict[str, tuple[int, int]]]()


def pytest_configure(config: pytest.Config) -> None:
    if gate.INSTALLED:
        problem = gate.installed_check()
        if problem:
            raise pytest.UsageError(problem)
    config.addinivalue_line(
        "markers",
        "allow_refusals: the test provokes dockgate refusals on purpose; "
        "skip the audit-log refusal check",
    )


@pytest.fixture(scope="session")
def engine_set() -> Iterator[dict[str, eng.Engine]]:
    """All selected engines, started once per session (daemons in parallel)."""
    unknown = set(SELECTED) - set(eng.ENGINE_NAMES)
    if unknown:
        raise eng.SetupError(f"DOCKGATE_TEST_ENGINES names unknown engines: {sorted(unknown)}")
    cli = eng.find_cli()
    base = Path(tempfile.mkdtemp(prefix="dg", dir="/tmp"))
    daemons: dict[str, eng.Daemon] = {}
    try:
        for name in SELECTED:
            daemons[name] = eng.start_daemon(name, base / f"e{name.split('.')[0]}")
        rootfs = eng.build_rootfs(base / "rootfs.tar")
        for daemon in daemons.values():
            daemon.wait_ready()
        with ThreadPoolExecutor(len(daemons)) as pool:
            list(pool.map(lambda d: eng.import_image(cli, d, rootfs), daemons.values()))
        if not DIRECT:
            for name, daemon in daemons.items():
                GATES[name] = gate.start_dockgate(name, daemon.socket, daemon.root / "gate")
            for g in GATES.values():
                gate.wait_dockgate(g)
        for name, daemon in daemons.items():
            STARTED[name] = eng.Engine(
                name=name,
                daemon=daemon,
                proxy_socket=daemon.socket if DIRECT else GATES[name].socket,
                workdir=daemon.root / "work",
                cli=cli,
                docker_config=eng.make_docker_config(daemon.root / "cfg"),
                direct=DIRECT,
            )
            STARTED[name].workdir.mkdir()
        yield dict(STARTED)
    finally:
        for g in GATES.values():
            g.stop()
        for daemon in daemons.values():
            daemon.stop()
        STARTED.clear()
        GATES.clear()
        if os.environ.get("DOCKGATE_TEST_KEEP"):
            print(f"\nkept {base}", file=sys.stderr)
        else:
            for daemon in daemons.values():
                eng.remove_tree(daemon.root)
            eng.remove_tree(base)


def _guarded(engine_set: dict[str, eng.Engine], name: str) -> Iterator[eng.Engine]:
    if name not in engine_set:
        pytest.skip(f"engine {name} not selected (DOCKGATE_TEST_ENGINES)")
    engine = engine_set[name]
    before = engine.snapshot()
    yield engine
    failures = engine.remove_new(before)
    assert not failures, f"could not clean up after the test: {failures}"


@pytest.fixture(params=eng.ENGINE_NAMES, ids=lambda n: f"engine{n}")
def engine(
    request: pytest.FixtureRequest, engine_set: dict[str, eng.Engine]
) -> Iterator[eng.Engine]:
    """Each engine in turn; what the test creates on it is removed afterwards."""
    yield from _guarded(engine_set, request.param)


@pytest.fixture
def engine28(engine_set: dict[str, eng.Engine]) -> Iterator[eng.Engine]:
    """Engine 28.5 only (BuildKit through buildx, compose)."""
    yield from _guarded(engine_set, "28.5")


@pytest.fixture
def engine20(engine_set: dict[str, eng.Engine]) -> Iterator[eng.Engine]:
    """Engine 20.10 only."""
    yield from _guarded(engine_set, "20.10")


@pytest.fixture
def dockgate_process(engine: eng.Engine) -> gate.DockgateProcess:
    """The dockgate process in front of ``engine`` (skipped under DOCKGATE_TEST_DIRECT)."""
    if engine.direct:
        pytest.skip("DOCKGATE_TEST_DIRECT=1: no dockgate process")
    return GATES[engine.name]


@pytest.fixture(autouse=True)
def _audit_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test if dockgate refused any request (or died) while it ran.

    Every request in this suite comes from a real client, so a denial or an
    answer dockgate produced itself (a record with "error") is a defect.
    """
    if not any(f in request.fixturenames for f in ENGINE_FIXTURES):
        yield
        return
    offsets = {n: (g.audit_size(), g.log_size()) for n, g in GATES.items()}
    request.node.stash[_OFFSETS] = offsets
    yield
    dead = [g for g in GATES.values() if not g.alive()]
    assert not dead, "dockgate exited: " + "; ".join(
        f"engine {g.engine}: exit {g.process.returncode}\n{g.log_text()[-4000:]}" for g in dead
    )
    if request.node.get_closest_marker("allow_refusals"):
        return
    problems: list[str] = []
    for name, g in GATES.items():
        start = offsets.get(name, (0, 0))[0]
        for record in gate.refusals(g.audit_records(start)):
            problems.append(f"engine {name}: {record}")
    assert not problems, "dockgate refused requests from real clients:\n" + "\n".join(problems)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    offsets = item.stash.get(_OFFSETS, None)
    if not report.failed or offsets is None:
        return
    for name, g in GATES.items():
        audit_start, log_start = offsets.get(name, (0, 0))
        log = g.log_text(log_start)
        if log:
            report.sections.append((f"dockgate {name} log ({report.when})", log[-8000:]))
        audit = "\n".join(str(r) for r in g.audit_records(audit_start)[-40:])
        if audit:
            report.sections.append((f"dockgate {name} audit ({report.when})", audit))

"""BuildKit builds (buildx's docker driver: ``/grpc`` and ``/session`` upgraded to h2c)
through the baseline and restricted dockgates, both engines, with their gRPC mediated.

* What a user builds every day builds and runs: ``FROM`` a local image
  (``busybox:lab``, tagged here: there is no registry), ``COPY``, ``RUN``,
  ``RUN --mount=type=cache`` and ``--mount=type=secret``; one audit record per
  solve names the local directories and the secret's ID, never its value.
* What the build control refuses is refused with the rule in the CLI's output:
  ``--network host``, ``--allow security.insecure``, ``ADD http://...`` and
  ``ADD <git url>`` (each first shown fetched by the bare daemon from a loopback
  server, whose log is the oracle; through dockgate the server sees nothing),
  and a ``# syntax=`` frontend outside the registry allowlist.
* compose ``build:`` works through baseline.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.engines import IMAGE, Engine, unique
from support.policygate import PolicyGate, policy_audit_guard, policy_gates

pytestmark = pytest.mark.engine
_ = (policy_gates, policy_audit_guard)

BASE = "busybox:lab"
BUILDX = ("buildx", "build", "--progress", "plain", "--pull=false")
SECRET_VALUE = "s3cr3t-" + unique("v")


@pytest.fixture(scope="module", autouse=True)
def base_image(engine_set: dict[str, Engine]) -> Iterator[None]:
    """``busybox:lab`` on every daemon: the test image under a name a Dockerfile would use."""
    for engine in engine_set.values():
        engine.docker_direct("tag", IMAGE, BASE)
    yield
    for engine in engine_set.values():
        engine.docker_direct("rmi", BASE, check=False)


def baseline(engine: Engine, gates: dict[tuple[str, str], PolicyGate]) -> PolicyGate:
    return gates[(engine.name, "baseline")]


def context(engine: Engine, dockerfile: str, **files: str) -> Path:
    ctx = engine.workdir / unique("bk")
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (ctx / name).write_text(text)
    return ctx


def buildx(pg: PolicyGate | Engine, ctx: Path, *args: str, check: bool = True
           ) -> subprocess.CompletedProcess[Any]:
    """``docker buildx build`` of ``ctx`` through a dockgate (a PolicyGate) or direct."""
    argv = (*BUILDX, *args, str(ctx))
    if isinstance(pg, PolicyGate):
        return pg.docker(*argv, check=check, timeout=300)
    return pg.docker_direct(*argv, check=check, timeout=300)


EVERYDAY = f"""\
# a comment
FROM {BASE}
COPY hello.txt /hello.txt
RUN echo "ran $(cat /hello.txt)" > /ran.txt
RUN --mount=type=cache,target=/cache echo cached > /cache/c && cp /cache/c /cached.txt
RUN --mount=type=secret,id=tok cat /run/secrets/tok | wc -c > /secret-len.txt
"""


def solve_records(pg: PolicyGate, mark: int) -> list[dict[str, Any]]:
    return [r for r in pg.process.audit_records(mark) if r.get("stage") == "BuildSolved"]


def test_everyday_build_through_baseline(engine: Engine,
                                         policy_gates: dict[tuple[str, str], PolicyGate]
                                         ) -> None:
    """FROM, COPY, RUN, a cache mount and a secret mount build through baseline and the
    image runs; the audit has a BuildSolved record naming the context directories and
    the secret's ID, and the secret's value appears nowhere in the audit log."""
    pg = baseline(engine, policy_gates)
    ctx = context(engine, EVERYDAY, **{"hello.txt": "hello"})
    secret = engine.workdir / unique("secret")
    secret.write_text(SECRET_VALUE)
    tag = unique("dgbk").lower() + ":lab"
    mark = pg.mark()
    buildx(pg, ctx, "--network", "none", "--load", "--secret", f"id=tok,src={secret}", "-t", tag)
    out = pg.docker("run", "--rm", "--network", "none", tag, "cat", "/ran.txt", "/cached.txt",
                    "/secret-len.txt")
    assert out.stdout.split() == ["ran", "hello", "cached", str(len(SECRET_VALUE))]
    records = solve_records(pg, mark)
    assert records, "no BuildSolved record"
    build = records[0]["build"]
    assert build["decisions"] and all(d["allowed"] for d in build["decisions"])
    assert any("tok" in r["build"]["secrets"] for r in records), records
    assert any({"context", "dockerfile"} <= set(r["build"]["local_dirs"]) for r in records)
    assert SECRET_VALUE not in Path(pg.process.audit_log).read_text()
    pg.docker("rmi", tag)

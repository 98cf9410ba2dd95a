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

import gzip
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.buildhelp import context as context_tar
from support.buildhelp import tagged_base
from support.engines import Engine, unique
from support.grpcsolve import grpc_call
from support.loopback import Loopback, loopback
from support.policygate import PolicyGate, policy_audit_guard, policy_gates

pytestmark = pytest.mark.engine
_ = (policy_gates, policy_audit_guard)

BASE = "busybox:lab"
BUILDX = ("buildx", "build", "--progress", "plain", "--pull=false")
SECRET_VALUE = "s3cr3t-" + unique("v")


@pytest.fixture(scope="module", autouse=True)
def base_image(engine_set: dict[str, Engine]) -> Iterator[None]:
    """``busybox:lab`` on every daemon: the test image under a name a Dockerfile would use."""
    with tagged_base(engine_set, BASE):
        yield


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


@pytest.fixture(scope="module")
def server() -> Iterator[Loopback]:
    with loopback("host-private-" + unique("s")) as srv:
        yield srv


def refused(out: subprocess.CompletedProcess[Any], policy: str, rule: str) -> None:
    """The build failed with dockgate's denial, naming ``rule``, in the CLI's output."""
    assert out.returncode != 0, out.stderr
    assert f"dockgate: denied by policy {policy} rule" in out.stderr, out.stderr
    assert rule in out.stderr, out.stderr


@pytest.mark.allow_refusals
@pytest.mark.parametrize("kind", ["http", "git"])
def test_add_url_fetched_by_the_daemon_is_refused(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], server: Loopback, kind: str,
) -> None:
    """``ADD http://127.0.0.1:PORT/...`` and ``ADD <git url>``: the bare daemon fetches
    them from the host's loopback even for a ``--network none`` build (the server's log);
    through baseline the build is refused with the rule in the CLI's output, before the
    daemon contacts the server."""
    name = unique("add")
    if kind == "http":
        url, needle = server.url(f"/{name}"), f"/{name}"
    else:
        # Engine 20.10's Dockerfile frontend downloads the URL itself (no git
        # sources in ADD yet), 28.5's runs git's fetch: a fetch from the host either way.
        url, needle = server.git_repo(name, {"f.txt": "from git\n"}) + "#main", f"/{name}.git"
    ctx = context(engine, f"FROM {BASE}\nADD {url} /fetched\n")
    buildx(engine, ctx, "--network", "none")
    assert server.saw(needle), server.hits
    server.hits.clear()
    pg = baseline(engine, policy_gates)
    mark = pg.mark()
    out = buildx(pg, ctx, "--network", "none", check=False)
    refused(out, "baseline", "build-fetches")
    assert not server.saw(needle), server.hits
    records = solve_records(pg, mark)
    # A loopback URL also fails registries, which may come first.
    assert any(not r["build"]["allowed"] and r["build"]["rule"] in ("registries", "build-fetches")
               and any("build-fetches" in d["message"] for d in r["build"]["decisions"])
               for r in records), records


ASKS = {
    # (Dockerfile after FROM, buildx options, the rule)
    "network-host": ("RUN --network=host true\n", ("--network", "host"), "namespaces"),
    "insecure": ("RUN --security=insecure true\n", ("--allow", "security.insecure"),
                 "no-privileged"),
}


@pytest.mark.allow_refusals
def test_same_directory_built_again_through_baseline(
        engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]) -> None:
    """One directory built again and again through baseline (buildx twice, then ``docker
    build``) builds each time: engine 20.10's daemon keeps the Dockerfile of the first
    transfer and does not ask for it again, and dockgate judges the bytes it forwarded
    then (each solve's audit record has an allowed Dockerfile decision).  Once the
    Dockerfile gains an ``ADD http://...``, the daemon asks for the changed file and
    the build is refused with the rule in the CLI's output."""
    pg = baseline(engine, policy_gates)
    ctx = context(engine, f"FROM {BASE}\nCOPY a.txt /a.txt\n", **{"a.txt": "again"})
    for argv in (BUILDX, BUILDX, ("build", "--progress", "plain")):
        mark = pg.mark()
        out = pg.docker(*argv, "--network", "none", str(ctx), check=False, timeout=300)
        assert out.returncode == 0, out.stderr
        decisions = [d for r in solve_records(pg, mark) for d in r["build"]["decisions"]
                     if d["what"] == "dockerfile"]
        assert decisions and all(d["allowed"] for d in decisions), decisions
    with (ctx / "Dockerfile").open("a") as f:
        f.write("ADD http://127.0.0.1:9/x /x\n")
    refused(buildx(pg, ctx, "--network", "none", check=False), "baseline", "build-fetches")


@pytest.mark.allow_refusals
def test_dockerfile_kept_from_a_build_dockgate_did_not_see_is_refused(
        engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]) -> None:
    """A directory first built direct (with the same buildx config, so the same shared
    key), then through baseline: engine 20.10's daemon kept the Dockerfile of the direct
    build and does not ask for it, and
    dockgate, which never judged those bytes, refuses the build with that reason; 28.5's
    asks for it again and the build goes through.  Touching the Dockerfile (a new stat)
    makes 20.10 ask for it, and the build goes through."""
    pg = baseline(engine, policy_gates)
    ctx = context(engine, f"FROM {BASE}\nRUN true\n")
    # buildx's shared key is the directory's and its config's: the gate's config, direct.
    direct = {**pg.env, "DOCKER_HOST": f"unix://{engine.daemon_socket}"}
    engine.run_cli(engine.cli, (*BUILDX, "--network", "none", str(ctx)), env=direct,
                   timeout=300)
    out = buildx(pg, ctx, "--network", "none", check=False)
    if engine.name == "20.10":
        assert out.returncode != 0
        assert "dockgate: the daemon did not ask for the Dockerfile 'Dockerfile'" in out.stderr, \
            out.stderr
        os.utime(ctx / "Dockerfile", ns=(1, 1))
        out = buildx(pg, ctx, "--network", "none", check=False)
    assert out.returncode == 0, out.stderr


@pytest.mark.allow_refusals
@pytest.mark.parametrize("kind", sorted(ASKS))
def test_entitlements_are_refused(engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate],
                                  kind: str) -> None:
    """``--network host`` and ``--allow security.insecure`` (with the RUN steps that use
    them) are refused through baseline with the rule in the CLI's output."""
    steps, options, rule = ASKS[kind]
    ctx = context(engine, f"FROM {BASE}\n{steps}")
    out = buildx(baseline(engine, policy_gates), ctx, *options, check=False)
    refused(out, "baseline", rule)


@pytest.mark.allow_refusals
def test_syntax_frontend_outside_the_allowlist_is_refused(
        engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], server: Loopback) -> None:
    """A ``# syntax=`` frontend image from a registry baseline does not list (the host's
    loopback): the bare daemon contacts that registry (the server counts the
    connection); through baseline the build is refused with the rule in the CLI's
    output and the daemon contacts nothing."""
    port = server.server_address[1]
    ctx = context(engine, f"# syntax=127.0.0.1:{port}/frontend:1\nFROM {BASE}\n")
    before = server.connections
    assert buildx(engine, ctx, "--network", "none", check=False).returncode != 0
    assert server.connections > before
    before = server.connections
    out = buildx(baseline(engine, policy_gates), ctx, "--network", "none", check=False)
    refused(out, "baseline", "registries")
    assert server.connections == before


def test_compose_build_through_baseline(engine: Engine,
                                        policy_gates: dict[tuple[str, str], PolicyGate]) -> None:
    """``docker compose build`` of a service with ``build:`` goes through baseline (BuildKit,
    mediated) and the image it names runs."""
    pg = baseline(engine, policy_gates)
    ctx = context(engine, f"FROM {BASE}\nCOPY hello.txt /hello.txt\n", **{"hello.txt": "composed"})
    project = unique("dgc").lower()
    image = f"{project}-web:lab"
    (ctx / "compose.yaml").write_text(
        f"services:\n  web:\n    image: {image}\n    build:\n      context: .\n"
        "      network: none\n")
    pg.docker("compose", "-p", project, "build", cwd=ctx, timeout=300)
    out = pg.docker("run", "--rm", "--network", "none", image, "cat", "/hello.txt")
    assert out.stdout == "composed"
    pg.docker("rmi", image)


@pytest.mark.allow_refusals
def test_undecodable_solve_is_refused(engine: Engine,
                                      policy_gates: dict[tuple[str, str], PolicyGate]) -> None:
    """A Control/Solve whose message dockgate cannot decode ends with dockgate's error
    (PERMISSION_DENIED), never passed on: the daemon itself answers it with its own."""
    junk = b"\x0a\xff\xff\xff"  # field 1, a length running past the end
    direct = grpc_call(engine.daemon_socket, "/moby.buildkit.v1.Control/Solve", junk)
    assert direct.get("grpc-status") not in (None, "0", "7"), direct
    through = grpc_call(baseline(engine, policy_gates).socket,
                        "/moby.buildkit.v1.Control/Solve", junk)
    assert through["grpc-status"] == "7", through
    assert through["grpc-message"].startswith("dockgate: cannot decode")


@pytest.mark.allow_refusals
def test_restricted_refuses_builds_with_its_reason(
        engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]) -> None:
    """restricted denies image.build (its RUN steps run as root, outside its rules): a
    BuildKit build through it is refused with that rule in the CLI's output (not a
    registry error from a fallback), and no image is made."""
    pg = policy_gates[(engine.name, "restricted")]
    tag = unique("dgr").lower() + ":lab"
    ctx = context(engine, f"FROM {BASE}\nRUN true\n")
    out = buildx(pg, ctx, "--network", "none", "--load", "-t", tag, check=False)
    refused(out, "restricted", "escalation-endpoints")
    assert engine.docker_direct("image", "inspect", tag, check=False).returncode != 0


@pytest.mark.allow_refusals
def test_dockerfile_too_large_to_hold_is_refused(
        engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]) -> None:
    """A Dockerfile larger than dockgate holds while judging it (the CLI sends no more
    than the daemon's flow-control window before the daemon reads some) ends the build
    with dockgate's reason instead of leaving it hanging."""
    ctx = context(engine, f"FROM {BASE}\n" + ("# " + "x" * 97 + "\n") * 1000 + "RUN true\n")
    out = buildx(baseline(engine, policy_gates), ctx, "--network", "none", check=False)
    assert out.returncode != 0
    assert "dockgate: a Dockerfile larger than 48 KiB" in out.stderr, out.stderr


def stdin_build(pg: PolicyGate | Engine, files: dict[str, str], *args: str
                ) -> subprocess.CompletedProcess[Any]:
    """``docker buildx build -`` with a gzip-compressed tar of ``files`` on stdin (the
    context is uploaded through the session)."""
    body = gzip.compress(context_tar(files))
    argv = (*BUILDX, "--network", "none", *args, "-")
    if isinstance(pg, PolicyGate):
        return pg.engine.run_cli(pg.engine.cli, argv, env=pg.env, input=body, check=False,
                                 timeout=300)
    return pg.run_cli(pg.cli, argv, env=pg.direct_env, input=body, check=False, timeout=300)


@pytest.mark.allow_refusals
def test_stdin_context_dockerfile_is_judged(
        engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], server: Loopback) -> None:
    """``docker build - < context.tar.gz``: the frontend reads the Dockerfile out of the
    uploaded tar.  An ordinary one builds through baseline; an ``ADD <url>`` in it is
    fetched by the bare daemon but refused through dockgate with the rule in the CLI's
    output, before any fetch."""
    pg = baseline(engine, policy_gates)
    tag = unique("dgstdin").lower() + ":lab"
    out = stdin_build(pg, {"Dockerfile": f"FROM {BASE}\nCOPY a.txt /a.txt\n", "a.txt": "up"},
                      "--load", "-t", tag)
    assert out.returncode == 0, out.stderr
    assert pg.docker("run", "--rm", "--network", "none", tag, "cat", "/a.txt").stdout == "up"
    pg.docker("rmi", tag)
    name = unique("stdin")
    files = {"Dockerfile": f"FROM {BASE}\nADD {server.url('/' + name)} /x\n"}
    assert stdin_build(engine, files).returncode == 0
    assert server.saw(name)
    server.hits.clear()
    refused(stdin_build(pg, files), "baseline", "build-fetches")
    assert not server.saw(name)

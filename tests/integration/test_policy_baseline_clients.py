"""Real clients through a dockgate running policies/baseline.yaml: what baseline
allows must keep working, and that dockgate must refuse nothing.

A representative subset of the privileged-profile client suite (docker CLI 28
and docker-py).  Every test here fails if the baseline dockgate refused any
request while it ran (``policygate.check_refusals``), buildx builds included:
BuildKit's /grpc and /session are mediated, so an ordinary build passes.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from typing import Any

import pytest
from support.engines import IMAGE, Engine, unique
from support.policygate import PolicyGate, policy_audit_guard, policy_gates

pytestmark = pytest.mark.engine
_ = (policy_gates, policy_audit_guard)  # fixtures, imported for pytest

RUN = ("run", "--network", "none", "--pull", "never")
SERVER_VERSION = {"20.10": "20.10.", "28.5": "28.5."}


@pytest.fixture
def baseline(engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]) -> PolicyGate:
    return policy_gates[(engine.name, "baseline")]


@pytest.fixture
def baseline28(engine28: Engine, policy_gates: dict[tuple[str, str], PolicyGate]) -> PolicyGate:
    return policy_gates[(engine28.name, "baseline")]


def test_version_info_ps_images(engine: Engine, baseline: PolicyGate) -> None:
    """Read-only CLI commands work under the baseline policy and are audited."""
    mark = baseline.mark()
    version = baseline.docker("version", "--format", "{{.Server.Version}}").stdout
    assert version.startswith(SERVER_VERSION[engine.name])
    info = baseline.docker("info", "--format", "{{.Driver}}").stdout
    assert info.strip() == "vfs"
    baseline.docker("ps", "-a")
    assert (
        "dgtest:latest" in baseline.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    )
    assert len({r["id"] for r in baseline.records_since(mark)}) >= 4


def test_container_lifecycle(engine: Engine, baseline: PolicyGate) -> None:
    """run --rm, run -i with stdin, a detached container with exec, logs and cp both ways."""
    out = baseline.docker(*RUN, "--rm", IMAGE, "sh", "-c", "echo hello-$((40+2))")
    assert out.stdout == "hello-42\n"
    data = os.urandom(256 << 10)
    piped = baseline.docker(*RUN, "--rm", "-i", IMAGE, "sha256sum", input=data)
    assert piped.stdout.split()[0] == hashlib.sha256(data).hexdigest()

    name = unique("dgpol-life")
    baseline.docker(*RUN, "-d", "--init", "--name", name, IMAGE, "sh", "-c",
                    "echo started; exec sleep 300")  # fmt: skip
    assert baseline.docker("exec", name, "echo", "from-exec").stdout == "from-exec\n"
    assert baseline.docker("exec", "-i", name, "cat", input="stdin-ok").stdout == "stdin-ok"
    assert baseline.docker("logs", name).stdout == "started\n"
    src = engine.workdir / f"{name}.in"
    src.write_bytes(data)
    # Copying into a container is a warn rule under baseline: allowed.
    baseline.docker("cp", str(src), f"{name}:/tmp/in.bin")
    inside = baseline.docker("exec", name, "sha256sum", "/tmp/in.bin").stdout.split()[0]
    assert inside == hashlib.sha256(data).hexdigest()
    stream = baseline.docker("cp", f"{name}:/tmp/in.bin", "-", binary=True).stdout
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        member = tar.extractfile("in.bin")
        assert member is not None
        assert member.read() == data
    baseline.docker("rm", "-f", name)


def test_volume_and_network(engine: Engine, baseline: PolicyGate) -> None:
    """Creating, using, listing and removing a volume and an internal network work under the
    baseline policy."""
    vol = unique("dgpol-vol")
    baseline.docker("volume", "create", "--label", "dgpol=1", vol)
    listed = baseline.docker("volume", "ls", "--filter", "label=dgpol=1", "--format", "{{.Name}}")
    assert vol in listed.stdout.split()
    out = baseline.docker(*RUN, "--rm", "-v", f"{vol}:/data", IMAGE, "sh", "-c",
                          "echo kept > /data/f && cat /data/f")  # fmt: skip
    assert out.stdout == "kept\n"
    baseline.docker("volume", "rm", vol)

    net = unique("dgpol-net")
    baseline.docker("network", "create", "--internal", net)  # a subnet the daemon picks
    names = baseline.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert net in names
    baseline.docker("network", "rm", net)


def test_classic_build(engine: Engine, baseline: PolicyGate) -> None:
    """The classic builder (POST /build with the context as its body) works under baseline."""
    token = unique("dgpol-build")
    ctx = engine.workdir / token
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {IMAGE}\nRUN echo built-{token} > /built\n")
    tag = f"dgpolbuilt:{token}"
    baseline.docker("build", "--network", "none", "-t", tag, str(ctx),
                    extra_env={"DOCKER_BUILDKIT": "0"}, timeout=180)  # fmt: skip
    out = baseline.docker(*RUN, "--rm", tag, "cat", "/built")
    assert out.stdout == f"built-{token}\n"


def test_buildx_build(engine28: Engine, baseline28: PolicyGate) -> None:
    """``docker buildx build`` (BuildKit, the CLI's default builder) builds through
    baseline with nothing refused, and the image runs."""
    token = unique("dgpol-bx")
    ctx = engine28.workdir / token
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {IMAGE}\nRUN echo built-{token} > /built\n")
    tag = f"dgpolbx:{token}"
    baseline28.docker(
        "buildx", "build", "--progress", "plain", "--pull=false", "--network", "none", "--load",
        "-t", tag, str(ctx), timeout=180,
    )  # fmt: skip
    out = baseline28.docker(*RUN, "--rm", tag, "cat", "/built")
    assert out.stdout == f"built-{token}\n"


# One service writing to a named volume; the volume is what compose creates
# besides the container (network_mode none: no project network).
COMPOSE = """\
services:
  app:
    image: dgtest
    pull_policy: never
    network_mode: none
    init: true
    volumes: ["state:/state"]
    command: ["sh", "-c", "echo app-$$((6*7)) | tee /state/out; exec sleep 300"]
volumes:
  state: {}
"""


def test_compose_up_logs_down(engine28: Engine, baseline28: PolicyGate) -> None:
    """docker compose up, logs and down with a named volume work under the baseline policy and leave
    nothing behind."""
    project = unique("dgpolproj")
    workdir = engine28.workdir / project
    workdir.mkdir()
    (workdir / "compose.yaml").write_text(COMPOSE)

    def compose(*args: str) -> str:
        out = baseline28.docker("compose", "-p", project, *args, cwd=workdir, timeout=180)
        return str(out.stdout)

    compose("up", "-d", "--wait")
    logs = compose("logs", "--no-color")
    assert "app-42" in logs
    volumes = baseline28.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert f"{project}_state" in volumes
    compose("down", "--volumes", "--timeout", "1")
    left = baseline28.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}")
    assert left.stdout.strip() == ""
    assert f"{project}_state" not in baseline28.docker("volume", "ls", "-q").stdout.split()


def test_dockerpy_create_start_logs_exec(engine: Engine, baseline: PolicyGate) -> None:
    """docker-py create, start, exec, logs and run work under the baseline policy."""
    client: Any = baseline.client()
    try:
        container = client.containers.create(
            IMAGE, ["sh", "-c", "echo to-out; exec sleep 300"], network_mode="none", init=True
        )
        try:
            container.start()
            result = container.exec_run(["sh", "-c", "echo exec-$((6*7))"])
            assert (result.exit_code, result.output) == (0, b"exec-42\n")
            assert container.logs(stdout=True, stderr=False) == b"to-out\n"
        finally:
            container.remove(force=True)
        out = client.containers.run(IMAGE, ["echo", "ran"], network_mode="none", remove=True)
        assert out == b"ran\n"
    finally:
        client.close()

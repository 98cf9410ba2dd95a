"""The container image (deploy/Dockerfile) and both compose files in deploy/,
built and run on engine 28.5 without a registry.

The base is made the distribution's way: scripts/debian-base.sh bootstraps a
Debian bookworm root filesystem with debootstrap (cached as a tarball,
``DOCKGATE_BASE_TAR``, default /opt/dockgate-base/bookworm.tar) and
``docker import`` makes it an image.  The wheels are prepared outside
(tests/support/packaging.py) and the unchanged Dockerfile builds with
``--build-arg BASE=…`` and ``--network none``.  The image then runs with the
engine's socket mounted, and the docker CLI talks to the daemon through it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import packaging
from support.engines import Engine, unique
from support.unixhttp import wait_ping

pytestmark = pytest.mark.engine

BASE_TAR = Path(os.environ.get("DOCKGATE_BASE_TAR", "/opt/dockgate-base/bookworm.tar"))
BASE_IMAGE = "dockgate-base:bookworm"
IMAGE = "dockgate-test:latest"
DEPLOY = packaging.REPO / "deploy"


@pytest.fixture(scope="module")
def image(engine_set: dict[str, Engine]) -> Iterator[str]:
    """The image built from deploy/Dockerfile on a debootstrapped base, through
    dockgate with the docker CLI (BuildKit); removed after the module."""
    if "28.5" not in engine_set:
        pytest.skip("engine 28.5 not selected (DOCKGATE_TEST_ENGINES)")
    engine = engine_set["28.5"]
    subprocess.run(["bash", str(packaging.REPO / "scripts" / "debian-base.sh"), str(BASE_TAR)],
                   check=True, timeout=1200, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="dgctx", dir="/tmp") as tmp:
        context = Path(tmp)
        packaging.wheels_to_install(context / "build")
        (context / "dist").mkdir()
        shutil.move(context / "build" / "wheels", context / "dist" / "wheels")
        shutil.copy(packaging.REPO / ".dockerignore", context)
        try:
            engine.docker_direct("import", str(BASE_TAR), BASE_IMAGE, timeout=600)
            engine.docker("build", "--network", "none", "-f", str(DEPLOY / "Dockerfile"),
                          "--build-arg", f"BASE={BASE_IMAGE}", "-t", IMAGE, str(context),
                          timeout=900)
            yield IMAGE
        finally:
            engine.docker_direct("rmi", "-f", IMAGE, BASE_IMAGE, check=False)
            engine.docker_direct("builder", "prune", "-af", check=False, timeout=300)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A host directory mounted as the container's /run/dockgate, where its
    (unprivileged) dockgate creates the socket the test connects to."""
    path = Path(tempfile.mkdtemp(prefix="dgc", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def through(engine: Engine, sock: Path, *args: str, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The docker CLI talking to the daemon through the containerised dockgate."""
    return engine.docker(*args, check=check, timeout=timeout,
                         extra_env={"DOCKER_HOST": f"unix://{sock}"})


def wait_socket(sock: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not sock.exists():
        assert time.monotonic() < deadline, f"{sock} did not appear"
        time.sleep(0.1)
    wait_ping(str(sock), deadline)


def test_image_runs_unprivileged_read_only_and_proxies(
    engine28: Engine, image: str, socket_dir: Path
) -> None:
    """The image runs as the non-root user ``dockgate`` on a read-only root
    filesystem with no capabilities (as deploy/compose.yaml runs it), with the
    request path compiled (the wheel built here matches its Python), and the
    docker CLI works through it: version, and a container run to completion,
    each audited on the container's standard output."""
    engine = engine28
    gid = os.stat(engine.daemon_socket).st_gid
    name = unique("dgimg")
    engine.docker("run", "-d", "--name", name, "--network", "none", "--read-only",
                  "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
                  "--group-add", str(gid), "-v", f"{engine.daemon_socket}:/var/run/docker.sock",
                  "-v", f"{socket_dir}:/run/dockgate", image)
    sock = socket_dir / "dockgate.sock"
    wait_socket(sock)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o660

    version = through(engine, sock, "version", "--format", "{{.Server.Version}}")
    assert version.stdout.strip() == engine.version
    ran = through(engine, sock, "run", "--rm", "--network", "none", "dgtest",
                  "echo", "through-the-image")
    assert ran.stdout.strip() == "through-the-image"

    info = json.loads(engine.docker("inspect", name).stdout)[0]
    assert info["Config"]["User"] == "dockgate"
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    uid = engine.docker("exec", name, "id", "-u").stdout.strip()
    assert uid != "0"
    # The wheel built on this machine is the compiled one (unless DOCKGATE_PURE), and
    # the image's Python runs it.
    where = engine.docker("exec", name, "python", "-c",
                          "import dockgate.proxy.protocol as p; print(p.__file__)")
    suffix = ".py" if packaging.pure_build() else ".so"
    assert where.stdout.strip().endswith(suffix), where.stdout
    write = engine.docker("exec", name, "touch", "/etc/dockgate/x", check=False)
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr

    logs = engine.docker("logs", name).stdout
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    paths = {r["path"].split("/", 2)[-1] for r in records if r.get("decision") == "allow"}
    assert {"version", "containers/create"} <= paths, paths
    engine.docker("rm", "-f", name)


COMPOSE_OVERRIDE = """\
# The test's changes to {file}: the image built above, the test engine's
# socket, no network at all, and no service that would need a registry.
services:
  dockgate:
    image: {image}
    pull_policy: never
    network_mode: none
{networks}    volumes:
      - {daemon}:/var/run/docker.sock
{extra_volume}  {other}:
    profiles: [never]
"""


def compose(engine: Engine, project: str, file: str, workdir: Path, *args: str,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``docker compose`` on deploy/``file`` with the test's override, through dockgate."""
    return engine.docker("compose", "-p", project, "-f", str(DEPLOY / file),
                         "-f", str(workdir / "override.yaml"), *args, cwd=workdir,
                         timeout=timeout,
                         extra_env={"DOCKER_GID": str(os.stat(engine.daemon_socket).st_gid)})


def compose_up(engine: Engine, file: str, override: str) -> tuple[str, Path]:
    """``docker compose up -d --wait`` of deploy/``file`` with ``override``;
    returns the project name and its working directory."""
    project = unique("dgdeploy")
    workdir = engine.workdir / project
    workdir.mkdir()
    (workdir / "override.yaml").write_text(override)
    compose(engine, project, file, workdir, "up", "-d", "--wait")
    networks = engine.docker_direct("network", "ls", "-q", "--filter",
                                    f"label=com.docker.compose.project={project}")
    assert networks.stdout.strip() == "", "the override must leave no network to create"
    return project, workdir


def test_compose_yaml_serves_the_socket(engine28: Engine, image: str, socket_dir: Path) -> None:
    """deploy/compose.yaml comes up with the image; dockgate's socket (in the
    shared volume, here a host directory) answers the docker CLI, and the
    service runs unprivileged on a read-only root filesystem."""
    engine = engine28
    override = COMPOSE_OVERRIDE.format(
        file="compose.yaml", image=image, networks="", daemon=engine.daemon_socket,
        extra_volume=f"      - {socket_dir}:/run/dockgate\n", other="client")
    project, workdir = compose_up(engine, "compose.yaml", override)
    try:
        sock = socket_dir / "dockgate.sock"
        wait_socket(sock)
        version = through(engine, sock, "version", "--format", "{{.Server.Version}}")
        assert version.stdout.strip() == engine.version
        (cid,) = compose(engine, project, "compose.yaml", workdir, "ps", "-q",
                         "dockgate").stdout.split()
        info = json.loads(engine.docker("inspect", cid).stdout)[0]
        assert info["Config"]["User"] == "dockgate"
        assert info["HostConfig"]["ReadonlyRootfs"] is True
        assert info["HostConfig"]["CapDrop"] == ["ALL"]
    finally:
        compose(engine, project, "compose.yaml", workdir, "down", "--volumes")


PROBE = """\
import http.client, json, socket, time
deadline = time.monotonic() + 60
while True:  # compose up --wait returns once the container runs, maybe before dockgate listens
    try:
        socket.create_connection(("127.0.0.1", 2375), timeout=5).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
def ask(method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", 2375, timeout=30)
    c.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, r.read().decode()
print(json.dumps([ask("GET", "/v1.41/containers/json"),
                  ask("POST", "/v1.41/containers/create", '{"Image": "dgtest"}')]))
"""


def test_compose_traefik_yaml_serves_read_only_tcp(engine28: Engine, image: str) -> None:
    """deploy/compose.traefik.yaml comes up with the image; its TCP listener
    (asked from inside the container's own network namespace, as Traefik
    would on the private network) answers a listing and refuses a create
    under the readonly profile it names (/etc/dockgate/policies/readonly.yaml)."""
    engine = engine28
    override = COMPOSE_OVERRIDE.format(
        file="compose.traefik.yaml", image=image, networks="    networks: !reset []\n",
        daemon=engine.daemon_socket, extra_volume="", other="traefik")
    project, workdir = compose_up(engine, "compose.traefik.yaml", override)
    try:
        probe = compose(engine, project, "compose.traefik.yaml", workdir, "exec", "-T",
                        "dockgate", "python3", "-c", PROBE)
        (listed, created) = json.loads(probe.stdout)
        assert listed[0] == 200
        assert isinstance(json.loads(listed[1]), list)
        assert created[0] == 403
        assert json.loads(created[1])["message"].startswith("dockgate: ")
    finally:
        compose(engine, project, "compose.traefik.yaml", workdir, "down", "--volumes")

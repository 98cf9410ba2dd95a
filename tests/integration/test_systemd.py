"""deploy/dockgate.service and deploy/dockgate.socket: ``systemd-analyze
verify`` accepts them, and dockgate runs socket-activated as they describe.

systemd-socket-activate plays the socket unit: it binds the unit's
ListenStream, passes it as the descriptor named by FileDescriptorName and
starts the unit's ExecStart on the first connection.  The ExecStart is the
shipped one with the paths that belong to a real host (the binary, the
daemon's socket, /etc, /var/log, /run) pointed into the test's directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import gate
from support.engines import Engine, terminate

pytestmark = pytest.mark.engine

DEPLOY = gate.REPO / "deploy"
SHIPPED_BINARY = "/usr/local/bin/dockgate"


def unit_settings(path: Path) -> dict[str, str]:
    """``Section.Key`` -> value of a unit file (continuation lines joined)."""
    settings: dict[str, str] = {}
    section, pending = "", ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        else:
            key, _, value = line.partition("=")
            settings[f"{section}.{key.strip()}"] = value.strip()
    return settings


def dockgate_binary() -> list[str]:
    """The dockgate under test as an absolute command (the installed console
    script, or this interpreter with ``-m dockgate`` on the editable path)."""
    command = gate.dockgate_command()
    return command if gate.INSTALLED else [sys.executable, "-m", "dockgate"]


def moved_path(word: str, moved: dict[str, str]) -> str:
    """``word`` with each host path of ``moved`` replaced by the test's."""
    for host, test in moved.items():
        word = word.replace(host, test)
    return word


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dgsd", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def verify(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "dockgate.socket", "dockgate.service"],
                          check=False, capture_output=True, text=True, cwd=directory,
                          timeout=60)


def test_shipped_units_verify(workdir: Path) -> None:
    """The units pass ``systemd-analyze verify`` with ExecStart pointing at an
    installed dockgate; as shipped, the only complaint allowed is that
    /usr/local/bin/dockgate (where ``pip install .`` as root puts it) is
    missing on this machine."""
    service = (DEPLOY / "dockgate.service").read_text()
    assert f"ExecStart={SHIPPED_BINARY} serve" in service
    shutil.copy(DEPLOY / "dockgate.socket", workdir)
    (workdir / "dockgate.service").write_text(service)
    shipped = verify(workdir)
    if os.access(SHIPPED_BINARY, os.X_OK):
        assert shipped.returncode == 0, shipped.stderr
    else:
        complaints = [line for line in shipped.stderr.splitlines() if line.strip()]
        assert complaints == [f"dockgate.service: Command {SHIPPED_BINARY} is not executable: "
                              "No such file or directory"], shipped.stderr
    binary = " ".join(dockgate_binary())
    (workdir / "dockgate.service").write_text(service.replace(SHIPPED_BINARY, binary))
    installed = verify(workdir)
    assert installed.returncode == 0, installed.stderr
    assert installed.stderr.strip() == "", installed.stderr


def test_socket_activation_as_the_units_describe(engine: Engine, workdir: Path) -> None:
    """The socket unit's ListenStream and FileDescriptorName, and the service's
    ExecStart (``--listen systemd:domain=UNIX:name=dockgate``), started by
    systemd-socket-activate on the first connection: ``docker version`` goes
    through to the engine, and dockgate leaves the socket file to systemd."""
    socket_unit = unit_settings(DEPLOY / "dockgate.socket")
    service_unit = unit_settings(DEPLOY / "dockgate.service")
    assert socket_unit["Socket.ListenStream"] == "/run/dockgate.sock"
    sock = workdir / "dockgate.sock"
    policy = workdir / "policy.yaml"
    shutil.copy(gate.POLICY, policy)
    moved = {
        "/run/dockgate.sock": str(sock),
        "unix:/run/docker.sock": f"unix:{engine.daemon_socket}",
        "/etc/dockgate/policy.yaml": str(policy),
        "/var/log/dockgate/": f"{workdir}/",
        "/run/dockgate/": f"{workdir}/",
    }
    exec_start = service_unit["Service.ExecStart"].split()
    assert exec_start[0] == SHIPPED_BINARY
    argv = [moved_path(word, moved) for word in exec_start[1:]]
    assert "systemd:domain=UNIX:name=dockgate" in argv
    activate = ["systemd-socket-activate", "--listen", str(sock),
                f"--fdname={socket_unit['Socket.FileDescriptorName']}",
                "-E", "PYTHONUNBUFFERED=1", *dockgate_binary(), *argv]
    log = workdir / "dockgate.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(activate, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                   cwd=gate.RUN_DIR, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        # The first connection starts dockgate, which then answers it.
        version = engine.docker("version", "--format", "{{.Server.Version}}", timeout=60,
                                extra_env={"DOCKER_HOST": f"unix://{sock}"})
        assert version.stdout.strip() == engine.version, log.read_text()
        assert "/version" in (workdir / "audit.jsonl").read_text()
    finally:
        terminate(process, 15)
    assert sock.exists(), "dockgate removed the socket systemd created"

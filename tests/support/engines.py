"""Real Docker daemons for the integration tests, and the ``Engine`` handle tests use.

Two engines: "20.10" (the distribution's dockerd, API 1.41, which starts its own
containerd) and "28.5" (Debian sid's dockerd, containerd 2.1, unpacked by
scripts/install-engines.sh under $DOCKGATE_SID_ROOT, run with
$DOCKGATE_SID_ROOT/bin first on its PATH). Each daemon gets a private socket,
data root and exec root under one short temporary directory, vfs storage,
no networking of its own and a loopback-only address pool (127.32.0.0/12).
Containers run with ``--network none`` only.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tarfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from support import unixhttp as http

SID_ROOT = Path(os.environ.get("DOCKGATE_SID_ROOT", "/opt/dockgate-sid"))
ENGINE_NAMES = ("20.10", "28.5")
PR_SET_PDEATHSIG = 1
IMAGE = "dgtest:latest"
CLI20 = "/usr/bin/docker"
BUSYBOX = "/bin/busybox"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DAEMON_FLAGS = (
    "--storage-driver=vfs",
    "--bridge=none",
    "--iptables=false",
    "--ip6tables=false",
    "--ip-forward=false",
    "--ip-masq=false",
    "--userland-proxy=false",
    # Networks created without a subnet (compose's, and any through baseline, whose
    # `networks.subnets: []` leaves the choice to the daemon) land on loopback-only
    # ranges, like the 127.x subnets the tests pick; 127.32-47 is kept for the pool.
    "--default-address-pool=base=127.32.0.0/12,size=24",
)


class SetupError(RuntimeError):
    """The test machine lacks something scripts/install-engines.sh provides."""


class DockerError(AssertionError):
    """A docker command that was expected to succeed did not."""


def _cli_version(path: str) -> int:
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except OSError:
        return 0
    # "Docker version 28.2.2, build e6534b4"
    try:
        return int(out.split("version", 1)[1].strip().split(".", 1)[0])
    except (IndexError, ValueError):
        return 0


def find_cli() -> str:
    """The current docker CLI (>= 23): $DOCKGATE_TEST_CLI, the machine's, or sid's."""
    candidates = [
        os.environ.get("DOCKGATE_TEST_CLI", ""),
        "/usr/local/bin/docker",
        str(SID_ROOT / "root/usr/bin/docker"),
    ]
    for path in candidates:
        if path and os.access(path, os.X_OK) and _cli_version(path) >= 23:
            return path
    raise SetupError("no docker CLI >= 23 found; run scripts/install-engines.sh")


def plugins_dir() -> Path:
    return SID_ROOT / "root/usr/libexec/docker/cli-plugins"


def daemon_argv_env(name: str, root: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start engine ``name`` under ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    if name == "20.10":
        dockerd = "/usr/sbin/dockerd"
        env["PATH"] = SYSTEM_PATH
    elif name == "28.5":
        dockerd = str(SID_ROOT / "bin/dockerd")
        env["PATH"] = f"{SID_ROOT / 'bin'}:{SYSTEM_PATH}"
    else:
        raise ValueError(f"unknown engine {name!r}")
    if not os.access(dockerd, os.X_OK):
        raise SetupError(f"{dockerd} missing; run scripts/install-engines.sh")
    argv = [
        dockerd,
        f"--host=unix://{root / 'd.sock'}",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'x'}",
        f"--pidfile={root / 'd.pid'}",
        *DAEMON_FLAGS,
    ]
    return argv, env


@dataclass
class Daemon:
    """A dockerd process started by the test session."""

    name: str
    root: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    version: str  # as `dockerd --version` prints it, e.g. "28.5.2+dfsg4"

    @property
    def socket(self) -> str:
        return str(self.root / "d.sock")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 90.0) -> None:
        try:
            http.wait_ping(
                self.socket, time.monotonic() + timeout, alive=lambda: self.process.poll() is None
            )
        except (RuntimeError, TimeoutError) as exc:
            raise SetupError(
                f"engine {self.name}: {exc}\n--- dockerd log ---\n{self.log_tail()}"
            ) from exc

    def stop(self, timeout: float = 30.0) -> None:
        terminate(self.process, timeout)


def terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def die_with_parent() -> None:
    """preexec_fn: SIGTERM the child when the test process dies (a killed run leaks nothing)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn_logged(
    argv: list[str], log_path: Path, env: dict[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a server process of the tests: output appended to ``log_path``, its own
    session, and killed with the test process (``die_with_parent``)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (started before any thread)
        )


def start_daemon(name: str, root: Path) -> Daemon:
    """Start engine ``name`` under ``root`` (a short path) without waiting for it."""
    root.mkdir(parents=True, exist_ok=True)
    argv, env = daemon_argv_env(name, root)
    if len(str(root / "d.sock")) >= 100:
        raise SetupError(f"socket path too long for a unix socket: {root}")
    log_path = root / "dockerd.log"
    printed = subprocess.run(
        [argv[0], "--version"], capture_output=True, text=True, env=env, timeout=30, check=True
    ).stdout  # "Docker version 28.5.2+dfsg4, build 3ef3c07"
    version = printed.split("version", 1)[1].split(",", 1)[0].strip()
    if not version.startswith(name + "."):
        raise SetupError(f"engine {name}: {argv[0]} is version {version}")
    process = spawn_logged(argv, log_path, env)
    return Daemon(name=name, root=root, process=process, log_path=log_path, version=version)


def build_rootfs(path: Path) -> Path:
    """Write the test image's rootfs tar: static busybox and a link per applet."""
    if not os.access(BUSYBOX, os.X_OK):
        raise SetupError(f"{BUSYBOX} missing; run scripts/install-engines.sh")
    applets = subprocess.run(
        [BUSYBOX, "--list"], capture_output=True, text=True, check=True, timeout=20
    ).stdout.split()
    with tarfile.open(path, "w") as tar:
        for directory in ("bin", "tmp", "etc", "root", "proc", "sys", "dev"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox" or "/" in applet:
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            info.mode = 0o777
            tar.addfile(info)
    return path


def import_image(cli: str, daemon: Daemon, rootfs: Path) -> None:
    """Import the rootfs as dgtest:latest into ``daemon`` (directly, not through dockgate)."""
    result = subprocess.run(
        [cli, "-H", f"unix://{daemon.socket}", "import", "-c", "ENV PATH=/bin", str(rootfs), IMAGE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise SetupError(f"engine {daemon.name}: docker import failed: {result.stderr}")


def unique(prefix: str = "dg") -> str:
    """A fresh resource name: ``prefix-<8 hex digits>``."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Engine:
    """One engine as the tests see it.

    ``proxy_socket`` is dockgate's listening socket in front of the daemon, or
    the daemon's own socket when DOCKGATE_TEST_DIRECT=1.
    """

    name: str
    daemon: Daemon
    proxy_socket: str
    workdir: Path
    cli: str
    docker_config: Path
    direct: bool = False
    cli20: str = CLI20
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def daemon_socket(self) -> str:
        return self.daemon.socket

    @property
    def version(self) -> str:
        """The daemon's exact version (what /version reports as Version)."""
        return self.daemon.version

    def _env(self, socket_path: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "BUILDX_"))}
        env.update(
            DOCKER_HOST=f"unix://{socket_path}",
            DOCKER_CONFIG=str(self.docker_config),
            DOCKER_CLI_HINTS="false",
            BUILDX_NO_DEFAULT_ATTESTATIONS="1",
            COMPOSE_PROGRESS="plain",
            PATH=os.environ.get("PATH", SYSTEM_PATH),
        )
        env.update(self.extra_env)
        return env

    @property
    def env(self) -> dict[str, str]:
        """Environment for client subprocesses that talk through dockgate."""
        return self._env(self.proxy_socket)

    @property
    def direct_env(self) -> dict[str, str]:
        """Environment for client subprocesses that talk to the daemon directly."""
        return self._env(self.daemon_socket)

    def run_cli(
        self,
        cli: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        input: bytes | str | None = None,
        timeout: float = 120.0,
        check: bool = True,
        cwd: str | Path | None = None,
        binary: bool = False,
        extra_env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[Any]:
        full_env = dict(env)
        if extra_env:
            full_env.update(extra_env)
        data = input.encode() if isinstance(input, str) else input
        result = subprocess.run(
            [cli, *args],
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True,
            env=full_env,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
        if not binary:
            result = subprocess.CompletedProcess(
                result.args,
                result.returncode,
                result.stdout.decode(errors="replace"),
                result.stderr.decode(errors="replace"),
            )
        if check and result.returncode != 0:
            err = result.stderr
            if isinstance(err, bytes):
                err = err.decode(errors="replace")
            raise DockerError(
                f"engine {self.name}: `{' '.join([cli, *args])}` exited {result.returncode}\n"
                f"stderr: {err[-3000:]}"
            )
        return result

    def docker(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run the current docker CLI through dockgate (see run_cli for keywords)."""
        return self.run_cli(self.cli, args, env=self.env, **kwargs)

    def docker_direct(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run the current docker CLI against the daemon's own socket."""
        return self.run_cli(self.cli, args, env=self.direct_env, **kwargs)

    def docker20(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run the 20.10 CLI (/usr/bin/docker) through dockgate."""
        return self.run_cli(self.cli20, args, env=self.env, **kwargs)

    def client(self, timeout: int = 60) -> Any:
        """A docker-py DockerClient through dockgate."""
        return docker.DockerClient(
            base_url=f"unix://{self.proxy_socket}", version="auto", timeout=timeout
        )

    def direct_client(self, timeout: int = 60) -> Any:
        """A docker-py DockerClient on the daemon's own socket."""
        return docker.DockerClient(
            base_url=f"unix://{self.daemon_socket}", version="auto", timeout=timeout
        )

    # Bookkeeping on the daemon's own socket, so it never goes through dockgate.

    def snapshot(self) -> dict[str, set[str]]:
        """Names/ids of the daemon's containers, images, volumes and networks."""
        sock = self.daemon_socket
        return {
            "containers": {c["Id"] for c in http.get_json(sock, "/containers/json?all=1")},
            "images": {i["Id"] for i in http.get_json(sock, "/images/json?all=1")},
            "volumes": {v["Name"] for v in http.get_json(sock, "/volumes")["Volumes"] or []},
            "networks": {n["Id"] for n in http.get_json(sock, "/networks")},
        }

    def remove_new(self, before: Mapping[str, set[str]]) -> list[str]:
        """Remove what appeared since ``before``; returns what could not be removed."""
        now = self.snapshot()
        sock = self.daemon_socket
        failures: list[str] = []
        plan = [
            ("containers", "/containers/{}?force=1&v=1"),
            ("volumes", "/volumes/{}?force=1"),
            ("networks", "/networks/{}"),
            ("images", "/images/{}?force=1"),
        ]
        for kind, target in plan:
            for ident in sorted(now[kind] - before[kind]):
                status, body = http.request(sock, "DELETE", target.format(ident), timeout=60)
                if status not in (200, 204, 404, 409) or (status == 409 and kind != "images"):
                    failures.append(f"{kind} {ident}: {status} {body[:200]!r}")
        return failures


def make_docker_config(path: Path) -> Path:
    """A DOCKER_CONFIG directory whose cli-plugins/ holds buildx and compose."""
    plugins = path / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    for plugin in ("docker-buildx", "docker-compose"):
        source = plugins_dir() / plugin
        if not os.access(source, os.X_OK):
            raise SetupError(f"{source} missing; run scripts/install-engines.sh")
        link = plugins / plugin
        if not link.exists():
            link.symlink_to(source)
    (path / "config.json").write_text("{}\n")
    return path


def remove_tree(path: Path) -> None:
    """Remove a daemon's directory, unmounting anything the daemon left mounted."""
    mounts: list[str] = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                mountpoint = line.split()[1]
                if mountpoint.startswith(str(path) + "/"):
                    mounts.append(mountpoint)
    except OSError:
        pass
    for mountpoint in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False, timeout=20)
    shutil.rmtree(path, ignore_errors=True)

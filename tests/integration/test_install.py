"""dockgate as a user installs it: the wheel, in a fresh virtual environment.

The sdist and the wheel are built from a clean copy of the tracked tree
(tests/support/packaging.py), the wheel is installed with its dependencies
into a new venv without the system's site-packages (from a wheelhouse, no
index), and every command is run from that venv with a working directory
outside the repository, so nothing of the source tree can stand in for a
file the wheel lacks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import packaging
from support.engines import Engine, spawn_logged, terminate
from support.unixhttp import wait_ping


@dataclass
class Installed:
    """The built distributions and the venv the wheel is installed in."""

    sdist: Path
    wheel: Path
    bin: Path
    scratch: Path

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a venv command from a directory outside the repository."""
        return subprocess.run([str(self.bin / argv[0]), *argv[1:]], check=False,
                              capture_output=True, text=True, timeout=timeout,
                              cwd=self.scratch, env=_clean_env())

    def spawn(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        """Start a venv command (a server) in the background, output to ``log``."""
        return spawn_logged([str(self.bin / argv[0]), *argv[1:]], log, _clean_env(),
                            cwd=self.scratch)


def _clean_env() -> dict[str, str]:
    """The environment without PYTHONPATH, which could put the source tree first."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    """Build sdist and wheel from a clean copy; install the wheel into a fresh
    venv from a directory of wheels (packaging.wheels_to_install)."""
    with tempfile.TemporaryDirectory(prefix="dgi", dir="/tmp") as tmp:
        base = Path(tmp)
        wheel = packaging.wheels_to_install(base)
        (sdist,) = (base / "dist").glob("*.tar.gz")
        bin_dir = packaging.make_venv(base / "venv", str(wheel), base / "wheels")
        scratch = base / "run"
        scratch.mkdir()
        yield Installed(sdist, wheel, bin_dir, scratch)


def test_wheel_holds_every_tracked_module_profile_and_schema(installed: Installed) -> None:
    """The wheel (built from the sdist) contains every tracked file under
    dockgate/, the shipped profiles as dockgate/policies/, the schemas and the
    twistd plugin; a subpackage left out of the build is named here."""
    names = packaging.wheel_names(installed.wheel)
    assert packaging.missing_from_wheel(packaging.tracked_files(), names) == []
    assert "dockgate/tenancy/__init__.py" in names
    assert "dockgate/policies/privileged.yaml" in names
    assert "dockgate/admission/schemas/v1.41.json" in names
    assert "twisted/plugins/dockgate_plugin.py" in names


def test_the_wheel_is_compiled_for_this_python(installed: Installed) -> None:
    """The wheel users install carries the request path compiled (setup.py's list, each
    module with its extension module beside its source) and is tagged for this
    interpreter and platform; built with DOCKGATE_PURE=1, it is pure Python throughout."""
    names = packaging.wheel_names(installed.wheel)
    modules = packaging.compiled_modules()
    assert "dockgate.proxy.protocol" in modules and "dockgate.audit.sink" in modules
    if packaging.pure_build():
        assert installed.wheel.name.endswith("-py3-none-any.whl"), installed.wheel.name
        assert [n for n in names if n.endswith(".so")] == []
        return
    assert packaging.uncompiled_in_wheel(modules, names) == []
    assert any(n.startswith("dockgate__mypyc.") and n.endswith(".so") for n in names), names
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert f"-{tag}-{tag}-linux_" in installed.wheel.name, installed.wheel.name


def test_the_installed_request_path_runs_compiled(installed: Installed) -> None:
    """In the venv, every module setup.py compiles is imported from its extension
    module (what the benchmarks measured; from source in a DOCKGATE_PURE=1 build),
    and a module it does not list from source."""
    modules = packaging.compiled_modules()
    where = installed.run("python", "-c", (
        "import importlib, sys\n"
        "for name in sys.argv[1:]: print(importlib.import_module(name).__file__)"),
        *modules, "dockgate.proxy.lifecycle")
    assert where.returncode == 0, where.stderr
    files = where.stdout.split()
    assert len(files) == len(modules) + 1
    suffix = ".py" if packaging.pure_build() else ".so"
    assert [f for f in files[:-1] if not f.endswith(suffix)] == []
    assert files[-1].endswith("/dockgate/proxy/lifecycle.py")


def test_version_and_import_come_from_the_venv(installed: Installed) -> None:
    """``dockgate --version`` works, and ``dockgate`` imports from the venv's
    site-packages, not from the source tree."""
    version = installed.run("dockgate", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("dockgate "), version.stdout
    where = installed.run("python", "-c", "import dockgate; print(dockgate.__file__)")
    location = Path(where.stdout.strip())
    assert installed.bin.parent in location.parents, location
    assert not location.resolve().is_relative_to(packaging.REPO / "dockgate"), location


def test_policy_check_and_test_on_every_shipped_profile(installed: Installed) -> None:
    """Every profile installed under dockgate/policies/ passes ``dockgate policy
    check``, and its test cases pass ``dockgate policy test``."""
    where = installed.run("python", "-c",
                          "import dockgate, pathlib; print(pathlib.Path(dockgate.__file__).parent)")
    policies = Path(where.stdout.strip()) / "policies"
    profiles = sorted(policies.glob("*.yaml"))
    assert {p.stem for p in profiles} >= {"privileged", "baseline", "restricted", "readonly"}
    check = installed.run("dockgate", "policy", "check", *map(str, profiles))
    assert check.returncode == 0, check.stdout + check.stderr
    cases = sorted((policies / "tests").glob("*.yaml"))
    assert cases
    tested = installed.run("dockgate", "policy", "test", *map(str, cases))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_api_routes(installed: Installed) -> None:
    """``dockgate api routes`` prints the route table."""
    routes = installed.run("dockgate", "api", "routes")
    assert routes.returncode == 0, routes.stderr
    assert "container.create" in routes.stdout


def test_twistd_lists_the_plugin_and_the_reactor(installed: Installed) -> None:
    """The installed twistd finds the ``dockgate`` subcommand and reactor."""
    plugins = installed.run("twistd", "--help")
    assert plugins.returncode == 0, plugins.stderr
    assert any(line.split()[:1] == ["dockgate"] for line in plugins.stdout.splitlines())
    reactors = installed.run("twistd", "--help-reactors")
    assert any(line.split()[:1] == ["dockgate"] for line in reactors.stdout.splitlines())


COMMANDS = {
    # The default policy: the privileged profile installed with the package
    # (unless /etc/dockgate/policy.yaml exists on this machine).
    "serve": ["dockgate", "serve"],
    "twistd": ["twistd", "-n", "--pidfile=", "--reactor=dockgate", "dockgate"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_installed_dockgate_proxies_docker_version(
    installed: Installed, engine: Engine, command: str
) -> None:
    """``dockgate serve`` and ``twistd -n --reactor=dockgate dockgate`` from the
    venv proxy a real ``docker version`` to the engine, and audit it."""
    work = Path(tempfile.mkdtemp(prefix="dgw", dir=installed.scratch))
    sock, audit, log = work / "g.sock", work / "audit.jsonl", work / "dockgate.log"
    argv = [*COMMANDS[command], "--listen", f"unix:{sock}",
            "--upstream", f"unix:{engine.daemon_socket}", "--audit-log", str(audit)]
    process = installed.spawn(argv, log)
    try:
        wait_ping(str(sock), time.monotonic() + 30, alive=lambda: process.poll() is None)
        result = engine.docker("version", "--format", "{{.Server.Version}}",
                               extra_env={"DOCKER_HOST": f"unix://{sock}"})
        assert result.stdout.strip() == engine.version
        records = [json.loads(line) for line in audit.read_text().splitlines()]
        assert any(r["path"].endswith("/version") and r["decision"] == "allow"
                   for r in records), records
    except BaseException:
        print(log.read_text(errors="replace"))
        raise
    finally:
        terminate(process, 15)

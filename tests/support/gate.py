"""The dockgate process the session starts in front of each daemon, and its audit log."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dockgate
from support import unixhttp as http
from support.engines import spawn_logged, terminate

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "policies" / "privileged.yaml"
# DOCKGATE_TEST_INSTALLED=1 (scripts/test.sh): the suite tests the wheel
# installed in the venv pytest runs from, so dockgate runs as that venv's
# console script from a directory outside the repository (a working directory
# of REPO would put the source tree first on ``python -m dockgate``'s path).
INSTALLED = os.environ.get("DOCKGATE_TEST_INSTALLED", "") not in ("", "0")
RUN_DIR = Path(tempfile.gettempdir()) if INSTALLED else REPO


def dockgate_command() -> list[str]:
    """How to run dockgate: the installed console script under
    DOCKGATE_TEST_INSTALLED, else ``python -m dockgate`` from the source tree
    (either way the pid is dockgate's own interpreter, not a wrapper's)."""
    if INSTALLED:
        return [str(Path(sys.executable).parent / "dockgate")]
    if (REPO / "dockgate" / "__main__.py").exists():
        return [sys.executable, "-m", "dockgate"]
    exe = shutil.which("dockgate")
    return [exe] if exe else [sys.executable, "-m", "dockgate"]


def import_location(cwd: Path = RUN_DIR) -> Path:
    """Where ``dockgate`` is imported from by a Python process started as the
    suite starts dockgate (this interpreter, this environment, ``cwd``)."""
    out = subprocess.run([sys.executable, "-c", "import dockgate; print(dockgate.__file__)"],
                         check=True, capture_output=True, text=True, cwd=cwd, timeout=60)
    return Path(out.stdout.strip()).resolve()


def installed_check() -> str | None:
    """Under DOCKGATE_TEST_INSTALLED, why the suite would not test the installed
    wheel (dockgate imported from the source tree, here or in the processes
    the suite starts), or None."""
    for where, location in (("pytest", Path(dockgate.__file__).resolve()),
                            ("dockgate processes", import_location())):
        if location.is_relative_to(REPO / "dockgate"):
            return (f"DOCKGATE_TEST_INSTALLED=1 but {where} would import dockgate from the source "
                    f"tree ({location}); run pytest with the venv's pytest, without "
                    f"PYTHONPATH (scripts/test.sh does)")
    if not Path(dockgate_command()[0]).exists():
        return f"DOCKGATE_TEST_INSTALLED=1 but {dockgate_command()[0]} does not exist"
    return None


@dataclass
class DockgateProcess:
    """A running ``dockgate serve`` (what the ``dockgate_process`` fixture hands out)."""

    engine: str
    process: subprocess.Popen[bytes]
    socket: str
    upstream: str
    audit_log: Path
    log_path: Path
    argv: list[str]
    admin: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_size(self) -> int:
        return _size(self.log_path)

    def audit_size(self) -> int:
        return _size(self.audit_log)

    def log_text(self, start: int = 0) -> str:
        return _read(self.log_path, start).decode(errors="replace")

    def audit_records(self, start: int = 0) -> list[dict[str, Any]]:
        """Audit records written after byte offset ``start``.

        A line that is not a JSON object is returned as ``{"unparsable": line}``.
        Only whole lines count: dockgate writes a reactor turn's records in one
        ``write(2)``, which a reader may see half done, so a line cut by ``start``
        (taken mid-write) or not yet ended by its newline is left for a later read.
        """
        records: list[dict[str, Any]] = []
        data = _read(self.audit_log, max(start - 1, 0))
        if start > 0:
            data = data[data.find(b"\n") + 1:] if data[:1] != b"\n" else data[1:]
        data = data[:data.rfind(b"\n") + 1]
        for line in data.decode(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            records.append(record if isinstance(record, dict) else {"unparsable": line})
        return records

    def stop(self, timeout: float = 15.0) -> None:
        terminate(self.process, timeout)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read(path: Path, start: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return f.read()
    except OSError:
        return b""


def refusals(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of requests dockgate refused or answered itself (or could not log properly)."""
    return [r for r in records if "unparsable" in r or r.get("decision") == "deny" or "error" in r]


def start_dockgate(engine: str, upstream: str, workdir: Path) -> DockgateProcess:
    """Start ``dockgate serve`` in front of ``upstream`` without waiting for it."""
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / "g.sock"
    audit = workdir / "audit.jsonl"
    log_path = workdir / "dockgate.log"
    argv = [
        *dockgate_command(),
        "serve",
        "--listen",
        f"unix:{sock}",
        "--upstream",
        f"unix:{upstream}",
        "--policy",
        str(POLICY),
        "--audit-log",
        str(audit),
        "--admin-listen",
        f"unix:{workdir / 'a.sock'}",
    ]
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    process = spawn_logged(argv, log_path, env, cwd=RUN_DIR)
    return DockgateProcess(
        engine=engine,
        process=process,
        socket=str(sock),
        upstream=upstream,
        audit_log=audit,
        log_path=log_path,
        argv=argv,
        admin=str(workdir / "a.sock"),
    )


def wait_dockgate(gate: DockgateProcess, timeout: float = 30.0) -> None:
    """Wait until the socket exists and GET /_ping answers through it."""
    deadline = time.monotonic() + timeout
    try:
        while not os.path.exists(gate.socket):
            if not gate.alive():
                raise RuntimeError(f"dockgate exited with {gate.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{gate.socket} did not appear")
            time.sleep(0.05)
        http.wait_ping(gate.socket, deadline, alive=gate.alive)
    except (RuntimeError, TimeoutError) as exc:
        gate.stop()
        raise RuntimeError(
            f"dockgate for engine {gate.engine} did not come up: {exc}\n"
            f"argv: {' '.join(gate.argv)}\n--- dockgate log ---\n{gate.log_text()[-6000:]}"
        ) from exc

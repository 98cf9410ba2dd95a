"""Every shell example in README.md and docs/ that is marked runnable runs as written,
against the test engines.

Convention: a fenced ```sh block whose previous non-blank line is `<!-- runnable -->`.
Each block runs under `bash -euo pipefail` from the repository root, with `dockgate` on
PATH (this tree), `docker` the current CLI, DOCKER_HOST set to the session's dockgate
in front of the engine, LOG set to a copy of that dockgate's audit log, and TMPDIR a
private directory. Runnable examples read the repository and write only under
$TMPDIR; examples that change the host (install, useradd, /etc) are not marked.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from support.engines import Engine
from support.gate import REPO, DockgateProcess, dockgate_command

pytestmark = pytest.mark.engine

MARKER = "<!-- runnable -->"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def runnable_blocks(path: Path) -> list[tuple[int, str]]:
    """(line, code) of each ```sh block in ``path`` marked runnable."""
    lines = path.read_text().splitlines()
    blocks: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        start = next(j for j in range(i + 1, len(lines)) if lines[j].strip())
        assert lines[start].strip() == "```sh", f"{path}:{i + 1}: {MARKER} must precede ```sh"
        end = next(j for j in range(start + 1, len(lines)) if lines[j].strip() == "```")
        blocks.append((start + 1, "\n".join(lines[start + 1:end]) + "\n"))
    return blocks


EXAMPLES = [(page, line, code) for page in PAGES for line, code in runnable_blocks(page)]


def test_the_docs_mark_examples_runnable() -> None:
    """The convention is in use across the docs (a typo in the marker would silently
    leave every example untested)."""
    pages = {page.name for page, _, _ in EXAMPLES}
    assert len(EXAMPLES) >= 6 and len(pages) >= 4, pages
    for page in PAGES:
        text = page.read_text()
        assert text.count("runnable -->") == text.count(MARKER), page


@pytest.mark.allow_refusals
@pytest.mark.parametrize(("page", "line", "code"), EXAMPLES,
                         ids=[f"{p.name}:{n}" for p, n, _ in EXAMPLES])
def test_runnable_example(page: Path, line: int, code: str, engine: Engine,
                          dockgate_process: DockgateProcess, tmp_path: Path) -> None:
    """The example at ``page:line`` exits 0 as written."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "dockgate"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(dockgate_command()) + ' "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    os.symlink(engine.cli, bin_dir / "docker")
    log = tmp_path / "audit.jsonl"
    shutil.copyfile(dockgate_process.audit_log, log)
    env = {**engine.env, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "PYTHONPATH": str(REPO), "LOG": str(log), "TMPDIR": str(tmp_path),
           "DOCKER_HOST": f"unix://{dockgate_process.socket}"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, (
        f"{page.relative_to(REPO)}:{line} failed ({result.returncode}):\n{code}\n"
        f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-2000:]}")
    assert not re.search(r"Traceback \(most recent call last\)", result.stderr), result.stderr

"""Sampling dockgate with py-spy while a figure is measured, and summing the samples.

``Profiler`` runs ``py-spy record --format raw`` against dockgate's pid for
the dockgate side of a figure; ``summary`` reads the collapsed stacks and
returns the functions with the most samples of their own (self) and with
the most samples anywhere on the stack (inclusive).  Line numbers are
dropped so that one function is one row.

    python benchmarks/_profile.py FILE.txt   # print the summary of a recorded profile
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_LINE = re.compile(r"\s*\((.*?)(?::\d+)?\)$")


def _function(frame: str) -> str:
    """``name (path:line)`` → ``name (path)`` (py-spy already shortens the path)."""
    match = _LINE.search(frame)
    return frame if match is None else f"{frame[:match.start()]} ({match.group(1)})"


IDLE = "EPollReactor.doPoll (twisted/internet/epollreactor.py)"
"""A sample whose innermost frame is the reactor's poll is dockgate waiting in epoll_wait."""


_ENTRY = ("<module> ", "main ", "serve ", "run_service ")
"""dockgate's entry frames, on every stack: left out of its inclusive list."""


def _package(function: str) -> str:
    path = function.rpartition("(")[2].rstrip(")")
    if path.startswith("dockgate/"):
        return path
    return path.split("/", 1)[0] if "/" in path else "stdlib (top level)"


def summary(path: Path, top: int = 12) -> dict[str, Any]:
    """Where dockgate's busy samples went: top functions (self, inclusive) and packages.

    Idle samples (waiting in epoll) are counted apart; the shares are of the
    busy samples, in percent.
    """
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    mine: Counter[str] = Counter()
    busy = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_function(f) for f in stack.split(";")]  # outermost first
        if not frames or frames[-1] == IDLE:
            idle += n
            continue
        busy += n
        own[frames[-1]] += n
        packages[_package(frames[-1])] += n
        for name in set(frames):
            anywhere[name] += n
            if "(dockgate/" in name and not name.startswith(_ENTRY):
                mine[name] += n

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / busy, 1)) for name, n in counter.most_common(top)]

    return {
        "busy_share": round(100 * busy / max(1, busy + idle), 1),
        "self": share(own) if busy else [],
        "packages": share(packages) if busy else [],
        "dockgate_inclusive": share(mine) if busy else [],
    }


class Profiler:
    """``with Profiler(pid, out):`` records dockgate while the block runs (if py-spy exists)."""

    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        spy = shutil.which("py-spy")
        if spy is None:
            return self
        self.process = subprocess.Popen(
            [spy, "record", "--pid", str(self.pid), "--format", "raw", "--rate", str(self.rate),
             "--nonblocking", "--output", str(self.out)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def format_summary(result: dict[str, Any]) -> str:
    lines = [f"  busy {result['busy_share']}% of the samples; shares below are of busy samples"]
    for kind in ("self", "packages", "dockgate_inclusive"):
        lines.append(f"  {kind}:")
        lines += [f"    {pct:5.1f}%  {name}" for name, pct in result.get(kind, [])]
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(arg)
        print(format_summary(summary(Path(arg))))

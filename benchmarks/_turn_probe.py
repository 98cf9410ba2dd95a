"""Run ``dockgate serve`` with each reactor iteration's CPU time recorded.

    python benchmarks/_turn_probe.py OUTFILE serve [serve options...]

An iteration's work is what the reactor thread does between two ``epoll``
waits (ready descriptors, timers, end-of-turn hooks); a request arriving
meanwhile waits for the rest of it.  Its thread CPU time
(``time.thread_time``) is that wait without the machine's share (time the
thread was runnable but another process had the CPU), which on a busy shared
machine is most of a latency figure.  On exit (``dockgate serve`` stops on
SIGTERM) the iterations are written to OUTFILE as JSON lines of
``[monotonic end, cpu seconds]``, for ``bench_chunks.py`` to pick the loaded
window's.  Benchmark-only: dockgate itself is unchanged.
"""

from __future__ import annotations

import atexit
import json
import sys
import time
from typing import Any

from dockgate.cli.main import main
from dockgate.fastio import reactor as fastio_reactor


class _TimedPoller:
    """Wraps the epoll object: notes CPU time when a wait starts and ends."""

    def __init__(self, poller: Any, out: list[tuple[float, float]]) -> None:
        self._poller = poller
        self._out = out
        self._since = time.thread_time()

    def poll(self, *args: Any) -> Any:
        now = time.thread_time()
        self._out.append((time.monotonic(), now - self._since))
        try:
            return self._poller.poll(*args)
        finally:
            self._since = time.thread_time()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._poller, name)


def run(path: str, argv: list[str]) -> int:
    iterations: list[tuple[float, float]] = []
    install = fastio_reactor.install

    def timed_install() -> Any:
        reactor = install()
        reactor._poller = _TimedPoller(reactor._poller, iterations)
        return reactor

    def dump() -> None:
        with open(path, "w") as f:
            for end, cpu in iterations:
                f.write(json.dumps([round(end, 6), round(cpu, 7)]) + "\n")

    fastio_reactor.install = timed_install
    atexit.register(dump)
    return main(argv)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2:]))

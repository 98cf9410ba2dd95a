"""Instructions per exchange, counted by valgrind: a figure a busy machine cannot blur.

``bench_exchange.py`` reports CPU time, which still moves by 5-10 % when other
processes share the cores (caches, frequency).  This runs the same exchanges
(the same protocol, transports and sinks, via ``bench_exchange.connection``
and ``exchanges``) under ``valgrind --tool=callgrind`` and counts the
instructions of ``-n`` exchanges after 200 warm-up ones, between two
``os.getppid()`` calls that callgrind dumps its counters before
(``--dump-before=getppid``), so start-up and warm-up are left out.  The counts
repeat to within a fraction of a percent; compare a change by running this in
the tree before and after it:

    python benchmarks/icount_exchange.py [-n 1000] [--tree DIR]

It needs valgrind (``apt-get install valgrind``) and takes about a minute per
case on 2 cores (callgrind runs Python ~50 times slower).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CASES = ("ping-null", "ping-served", "list-null", "list-served")
"""GET /_ping or /containers/json, without an audit log or as ``dockgate serve``
runs by default (audit and access logs), as in ``bench_exchange.py``."""


def _inner(case: str, n: int) -> None:
    """The counted run (under callgrind): warm up, mark, ``n`` exchanges, mark."""
    import bench_exchange as bench  # noqa: PLC0415 (from the tree named on the command line)

    from dockgate.audit.sink import JsonLinesAudit, NullAudit  # noqa: PLC0415
    from dockgate.service.metrics import MetricsAudit  # noqa: PLC0415
    from dockgate.service.oplog import AccessLog  # noqa: PLC0415

    request, replies = (bench.PING, [bench.PING_OK]) if case.startswith("ping") else \
        (bench.LIST, bench.LIST_OK)
    audit: Any = NullAudit()
    if case.endswith("served"):
        sink = JsonLinesAudit(str(Path(tempfile.mkdtemp()) / "audit.jsonl"), fsync="interval")
        audit = MetricsAudit(sink, None, AccessLog(open(os.devnull, "w")))  # noqa: SIM115
    proto, later = bench.connection(audit)
    bench.exchanges(proto, later, request, replies, 200)
    os.getppid()  # callgrind dumps here: start-up and warm-up
    bench.exchanges(proto, later, request, replies, n)
    os.getppid()  # and here: the n exchanges


def _count(tree: Path, case: str, n: int) -> float:
    """Instructions per exchange for ``case``, with dockgate from ``tree``."""
    # The tree's own copy of this script: bench_exchange puts the tree it is in
    # first on sys.path, so this tree's copy would count this tree's dockgate.
    script = tree / "benchmarks" / "icount_exchange.py"
    if not script.is_file():
        raise SystemExit(f"--tree {tree}: no benchmarks/icount_exchange.py there")
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, PYTHONPATH=f"{tree}:{tree / 'benchmarks'}", PYTHONHASHSEED="0")
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--dump-before=getppid",
             f"--callgrind-out-file={out}/cg", sys.executable, str(script),
             "--inner", case, "-n", str(n)],
            env=env, check=True, capture_output=True,
        )
        # cg.1: up to the first mark, cg.2: between the marks, cg: the rest.
        for line in (Path(out) / "cg.2").read_text().splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1]) / n
    raise RuntimeError("callgrind wrote no summary")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the dockgate checkout to count (default: this one)")
    parser.add_argument("--inner", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        _inner(args.inner, args.n)
        return 0
    for case in CASES:
        print(f"{case}: {_count(args.tree.resolve(), case, args.n) / 1000:.1f} k instructions "
              "per exchange", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

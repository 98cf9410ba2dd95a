"""Instructions per request of ``dockgate serve`` itself, counted by valgrind under load.

``icount_exchange.py`` counts one exchange through the protocol with stand-in
transports: it leaves out what only a real server does (the reactor's loop,
Twisted's socket transports and the reads of their state by ``fastio``).
This starts a private engine 28.5 and a compiled dockgate from ``--tree``
under ``valgrind --tool=callgrind``, drives it with ``_load.py`` (8
keep-alive clients, as ``run.py``), zeroes the counters once the load runs,
dumps them ``--window`` seconds later and divides by the requests begun in
between (calls of ``ProxyServerProtocol._begin``, so the tree must be
compiled: ``setup.py build_ext --inplace``).  It also prints how many
attributes of Twisted's transports ``fastio.sockio`` read per request.

    python benchmarks/icount_serve.py [--tree DIR] [--mode ping|json] [--window 20]
                                      [--containers N] [--keep DIR]

``--containers N`` creates N bare containers first (json mode's list: 1 is
about 1 KB with a Content-Length, 6 about 4 KB, chunked, as ``run.py``'s two
small sizes); ``--keep DIR`` copies the callgrind dump there to read further.

How many requests share a reactor turn (and so an audit write) depends on
timing, so the count moves by about 2 % from run to run; compare trees
over several runs each.  Callgrind overstates OpenSSL's SHA-256 (it hides
the CPU's SHA extensions from the program): about 40 k of each request's
instructions are the audit chain's two hashes, which cost about 2 µs
natively.  Needs root (the engine), valgrind, and about two minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from _fixtures import create_container  # noqa: E402
from support import engines  # noqa: E402

BEGIN = "CPyDef_protocol___ProxyServerProtocol____begin"
"""The compiled function each request runs once."""


def per_request(dump: Path) -> tuple[int, float, dict[str, float]]:
    """Requests begun, instructions per request and sockio's attribute reads per
    request (by function) in an uncompressed callgrind dump."""
    total = begun = 0
    fn = callee = ""
    pending: int | None = None
    reads: Counter[str] = Counter()
    for line in dump.read_text().splitlines():
        if line.startswith("summary:"):
            total = int(line.split()[1])
        elif line.startswith("fn="):
            fn = line[3:]
        elif line.startswith("cfn="):
            callee = line[4:]
        elif line.startswith("calls="):
            pending = int(line[6:].split()[0])
        elif pending is not None and line[:1].isdigit():
            if callee.endswith(BEGIN):
                begun += pending
            elif "PyObject_GetAttr" in callee and "sockio___" in fn:
                reads[fn.rsplit("___", 1)[-1]] += pending
            pending = None
    if not begun:
        raise SystemExit(f"no calls of {BEGIN}: is the tree compiled "
                         "(setup.py build_ext --inplace)?")
    return begun, total / begun, {name: n / begun for name, n in sorted(reads.items())}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", type=Path, default=HERE.parent)
    parser.add_argument("--mode", choices=("ping", "json"), default="ping")
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--containers", type=int, default=0)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    tree = args.tree.resolve()
    root = Path(tempfile.mkdtemp(prefix="dgi-", dir="/tmp"))
    daemon = engines.start_daemon("28.5", root / "e")
    gate = load = None
    try:
        daemon.wait_ready()
        engines.import_image(engines.find_cli(), daemon, engines.build_rootfs(root / "rootfs.tar"))
        for _ in range(args.containers):
            create_container(daemon.socket, engines.IMAGE, ["true"])
        sock = root / "g.sock"
        env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
        gate = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--compress-strings=no", "--compress-pos=no",
             f"--callgrind-out-file={root}/cg", sys.executable, "-m", "dockgate", "serve",
             "--listen", f"unix:{sock}:mode=666", "--upstream", f"unix:{daemon.socket}",
             "--policy", str(tree / "policies" / "privileged.yaml"),
             "--audit-log", str(root / "audit.jsonl")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=root)
        deadline = time.monotonic() + 120
        while not sock.exists():
            if time.monotonic() > deadline or gate.poll() is not None:
                raise SystemExit("dockgate did not start under valgrind")
            time.sleep(0.2)
        load = subprocess.Popen(
            [sys.executable, str(HERE / "_load.py"), "--socket", str(sock), "--mode", args.mode,
             "--seconds", str(args.window + 20), "--warmup", "0"],
            stdout=subprocess.DEVNULL)
        time.sleep(8)  # the reactor warm, the memos filled
        subprocess.run(["callgrind_control", "-z", str(gate.pid)], check=True, capture_output=True)
        time.sleep(args.window)
        subprocess.run(["callgrind_control", "-d", str(gate.pid)], check=True, capture_output=True)
        dumps = sorted(root.glob("cg.*"), key=lambda p: p.stat().st_mtime)
        begun, instructions, reads = per_request(dumps[-1])
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(dumps[-1], args.keep / f"callgrind.{args.mode}.{begun}")
        print(f"{args.mode}: {begun} requests, {instructions / 1000:.1f} k instructions per "
              f"request; sockio's reads of transport attributes per request: "
              f"{sum(reads.values()):.1f} "
              + ", ".join(f"{name} {n:.1f}" for name, n in reads.items()))
        return 0
    finally:
        for process in (load, gate):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(30)
        daemon.stop()
        engines.remove_tree(root)


if __name__ == "__main__":
    raise SystemExit(main())

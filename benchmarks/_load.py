"""Closed-loop load generator, run as its own process by run.py.

N threads, each with its own persistent keep-alive connection, send raw
requests back to back for a fixed time and count the responses that
complete inside the measured window (after a short warm-up).  Prints one
JSON object on standard output.

    python benchmarks/_load.py --socket PATH --mode ping|json|cycle \
        [--clients 8] [--seconds 5] [--warmup 0.5]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from _wire import Conn, request_bytes  # run as a script: its folder is on sys.path

CREATE_BODY = json.dumps({
    "Image": "dgtest:latest",
    "Cmd": ["sh", "-c", "echo hello"],
    "Env": ["BENCH=1", "LANG=C.UTF-8"],
    "Labels": {"dockgate.bench": "cycle"},
    "WorkingDir": "/tmp",
    "AttachStdout": True,
    "AttachStderr": True,
    "HostConfig": {"NetworkMode": "none", "Memory": 67108864, "PidsLimit": 64},
}).encode()


def _simple(conn: Conn, raw: bytes) -> bool:
    conn.sock.sendall(raw)
    status, head = conn.read_head()
    conn.read_body(head, status)
    return 200 <= status < 300


def _cycle(conn: Conn, _raw: bytes) -> bool:
    status, body = conn.request("POST", "/containers/create", CREATE_BODY)
    if status != 201:
        return False
    ident = json.loads(body)["Id"]
    status, _ = conn.request("DELETE", f"/containers/{ident}?force=1")
    return status == 204


MODES = {
    "ping": (_simple, request_bytes("GET", "/_ping")),
    "json": (_simple, request_bytes("GET", "/containers/json?all=1")),
    "cycle": (_cycle, b""),
}


def run(
    socket_path: str, mode: str, clients: int, seconds: float, warmup: float
) -> dict[str, object]:
    step, raw = MODES[mode]
    conns = [Conn(socket_path) for _ in range(clients)]
    counts = [0] * clients
    errors = [0] * clients
    failures: list[str] = []
    barrier = threading.Barrier(clients + 1)
    window: list[float] = []

    def worker(i: int) -> None:
        conn = conns[i]
        barrier.wait()
        start, end = window
        try:
            while time.monotonic() < end:
                ok = step(conn, raw)
                # Count what completes inside the window, however long it took.
                if start <= time.monotonic() <= end:
                    if ok:
                        counts[i] += 1
                    else:
                        errors[i] += 1
        except Exception as exc:  # report, don't hang the run
            failures.append(f"client {i}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    window.extend([t0 + warmup, t0 + warmup + seconds])
    barrier.wait()
    for t in threads:
        t.join(seconds + warmup + 120)
    for conn in conns:
        conn.close()
    done = sum(counts)
    return {
        "mode": mode,
        "clients": clients,
        "seconds": seconds,
        "requests": done,
        "errors": sum(errors),
        "failures": failures[:5],
        "rate": done / seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--mode", choices=sorted(MODES), required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args()
    result = run(args.socket, args.mode, args.clients, args.seconds, args.warmup)
    print(json.dumps(result))
    return 0 if not result["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())

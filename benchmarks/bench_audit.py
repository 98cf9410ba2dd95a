"""Benchmark: what auditing adds to a container create+delete exchange, per level.

Measures in-process the cost of ``record()`` for the four events of a
create+delete cycle (RequestDecided and ResponseComplete of each) at
``metadata`` and ``request`` level, against a null sink, and compares it with
the measured cost of a create+delete cycle through dockgate (the
``create+delete`` figure of benchmarks/run.py: 9 cycles/s over 8 clients,
i.e. ~110 ms of wall time per cycle per client; ``--cycle-ms`` overrides).
Also measures session recording throughput (``session_data`` per 32 KiB
chunk).  Targets: metadata < 5 %, request < 10 % of a cycle.

    python benchmarks/bench_audit.py [--fsync never|interval|always] [--cycle-ms MS]

Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_admission import BODY

from dockgate.admission.admit import ApiContext, admit_body, admit_head
from dockgate.audit.rules import AuditPolicy, AuditRule, Choice
from dockgate.audit.sink import JsonLinesAudit, NullAudit
from dockgate.model import AuditEvent, Decision, Peer

PEER = Peer("unix:/run/dockgate.sock", "unix", "unix:pid=1", pid=1, uid=1000, gid=1000)
ALLOW = Decision("allow", "baseline", None, "allowed by policy baseline")
CTX = ApiContext(daemon_version="1.51")
TARGETS = {"metadata": 5.0, "request": 10.0}


def cycle_events() -> list[AuditEvent]:
    """The four events of one create+delete cycle, with a ~3 KB create body."""
    create = admit_head("POST", b"/v1.51/containers/create?name=web", [
        (b"content-type", b"application/json")], CTX)
    create = admit_body(create, json.dumps(BODY).encode(), CTX)
    delete = admit_head("DELETE", b"/v1.51/containers/web?force=1", [], CTX)
    events = []
    for i, request in enumerate((create, delete)):
        for stage in ("RequestDecided", "ResponseComplete"):
            events.append(AuditEvent(stage=stage, id=f"bench{i}", time=time.time(),  # type: ignore[arg-type]
                                     listener=PEER.listener, peer=PEER, method=request.method,
                                     raw_target=request.target, request=request, decision=ALLOW,
                                     status=201 if stage == "ResponseComplete" else None))
    return events


def per_cycle_us(sink: JsonLinesAudit | NullAudit, events: list[AuditEvent], n: int) -> float:
    """Median microseconds that ``record`` takes for one cycle's events."""
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            for e in events:
                sink.record(e)
        rounds.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(rounds)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fsync", default="interval", choices=("never", "interval", "always"))
    parser.add_argument("--cycle-ms", type=float, default=1000 / 9 * 1.0)
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    events = cycle_events()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        base = per_cycle_us(NullAudit(), events, args.n)
        print(f"null sink: {base:.1f} us per create+delete cycle (4 events)")
        for level in ("metadata", "request"):
            policy = AuditPolicy(rules=(AuditRule("all", ("*",), None, Choice(level)),))  # type: ignore[arg-type]
            sink = JsonLinesAudit(f"{tmp}/{level}.jsonl", policy=policy, fsync=args.fsync)
            cost = per_cycle_us(sink, events, args.n) - base
            sink.close()
            share = cost / (args.cycle_ms * 1000) * 100
            ok = share < TARGETS[level]
            failed |= not ok
            print(f"{level:>8}: {cost:.1f} us per cycle = {share:.3f} % of a {args.cycle_ms:.1f} "
                  f"ms create+delete cycle (target < {TARGETS[level]} %) "
                  f"{'PASS' if ok else 'FAIL'}  [fsync {args.fsync}]")
        policy = AuditPolicy(rules=(AuditRule("s", ("exec.start",), None,
                                              Choice("metadata", session=True)),))
        sink = JsonLinesAudit(f"{tmp}/s.jsonl", policy=policy, sessions_dir=tmp)
        start = admit_head("POST", b"/v1.51/exec/abc/start",
                           [(b"content-type", b"application/json")], CTX)
        sink.record(AuditEvent(stage="RequestDecided", id="sess", time=time.time(),
                               listener=PEER.listener, peer=PEER, method="POST",
                               raw_target=start.target, request=start, decision=ALLOW))
        chunk = b"x" * 32768
        total = 64 * 1024 * 1024
        t0 = time.perf_counter()
        for _ in range(total // len(chunk)):
            sink.session_data("sess", "out", chunk)
        elapsed = time.perf_counter() - t0
        sink.close()
        print(f"session recording: {total / elapsed / 1e6:.0f} MB/s in 32 KiB chunks "
              f"({elapsed / (total // len(chunk)) * 1e6:.1f} us per chunk)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

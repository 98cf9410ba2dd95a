"""Benchmark: /_ping latency for one client while others send costly requests.

Issue 21 measured a 1 MB JSON body sent as 1-byte chunks (6 MB on the wire)
costing dockgate 3 s of CPU, and four such clients stalling everyone else
(a /_ping took 591 ms).  Chunks beyond ``http1.server.FREE_CHUNKS`` must now
average ``MIN_CHUNK_AVERAGE`` bytes, so such a client is refused (413) after
a few thousand chunks, and the chunks of one read are one body event.  The
other bounds of issue 21 item 5 get the same load with ``--attack``: bodies of
20001 object members (413 from the member scan, before decoding), 5000 levels
of nesting (400), heads of 300 header fields (431), and ``large``: a valid
1 MB create of 19990 labels, just under every bound, which dockgate admits
(a step per reactor turn, ``dockgate.proxy.turns``) and forwards.

No daemon is needed: the request side is what is measured, so a small
stand-in daemon on a unix socket, in a process of its own, answers every
request with 200 (reading the body first).  dockgate runs in front of it as
``python -m dockgate serve`` with policies/privileged.yaml and no audit log.

    python benchmarks/bench_chunks.py [--attackers 4] [--seconds 5]
        [--attack chunks|members|nesting|headers|entries|large|all] [--nice 19]

Prints, per attack, /_ping p50/p99/max with no load and under the attack, the
ratio of the two p99s, the attack requests dockgate answered (refused, or
for ``large`` passed on), dockgate's CPU seconds per attack request (and its
admission workers', ``--admission-workers``), and how long dockgate was
runnable but waiting for a CPU during the loaded window (the machine's share
of the latency).  At the end, per attack, the CPU time of the reactor's
iterations in the loaded window (``_turn_probe``): how long a request
arriving in one waits for dockgate's own work, whatever else the machine runs.
``--attack entries`` sends a create of 20,000 binds (0.6 MB): each entry is
read by the policy, so before the schemas capped such lists (512 entries) its
decision held the event loop for 0.1-0.2 s.
Options after ``--`` go to ``dockgate serve`` (``-- --admission-workers 0``).

``--tenant POLICY`` runs every client as a tenant (the tenants file's
``default``, under POLICY): each create is stamped with the owner label, and
the stand-in daemon answers the inspections tenancy and the policy make (the
image ``x``; the container ``web``, owned by the tenant).  ``--attack joined``
is ``large`` whose ``HostConfig.NetworkMode`` is ``container:web``: tenancy
pins it to web's id, and a policy that follows joins judges web and pins it
again; ``--attack confined`` is ``large`` with what policies/restricted.yaml
asks for (a user, limits, no capabilities), where that policy sets a daemon
default.  The first answer dockgate gives to a large body is printed: it must be
the stand-in's ``200 OK`` (passed on), not a refusal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fixtures import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
OK = (b"HTTP/1.1 200 OK\r\nApi-Version: 1.51\r\nContent-Type: text/plain\r\n"
      b"Content-Length: 2\r\n\r\nOK")


IMAGE = {"Id": "sha256:" + "1" * 64, "RepoTags": ["x:latest"],
         "Config": {"User": "1000", "Labels": None}}
JOINED = {"Id": "2" * 64, "Name": "/web", "Config": {"Image": "x", "User": "1000",
                                                      "Labels": {"io.dockgate.owner": "bench"}},
          "HostConfig": {"NetworkMode": "bridge"}, "Mounts": []}
INSPECTED = {b"/images/x/json": IMAGE, b"/containers/web/json": JOINED,
             b"/containers/" + JOINED["Id"].encode() + b"/json": JOINED}
"""What the stand-in daemon answers to the inspections a tenant's create makes."""


def _answer(head: bytes, body: bytes = b"") -> bytes:
    """200 OK, or for an inspection of ``INSPECTED`` its JSON (version prefix ignored).

    The OK to a JSON body says in ``X-Seen`` what of tenancy's rewrites the body
    carries (the owner label, the network mode), for the warm-up to print."""
    target = re.sub(rb"^/v[0-9.]+/", b"/", head.split(b" ", 2)[1].split(b"?")[0])
    found = INSPECTED.get(target) if head.startswith(b"GET ") else None
    if found is None and body.startswith(b"{"):
        mode = re.search(rb'"NetworkMode":"([^"]*)"', body)
        seen = b"owner=%s mode=%s" % (b"yes" if b'"io.dockgate.owner":"bench"' in body else b"no",
                                     mode.group(1) if mode else b"-")
        return OK.replace(b"\r\n\r\n", b"\r\nX-Seen: " + seen + b"\r\n\r\n")
    if found is None:
        return OK
    body = json.dumps(found).encode()
    return (b"HTTP/1.1 200 OK\r\nApi-Version: 1.51\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def _daemon_conn(conn: socket.socket) -> None:
    """Answer each request (``_answer``) once its head (and any body) has arrived."""
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            lower = head.lower()
            if b"transfer-encoding: chunked" in lower:
                while not buf.endswith(b"0\r\n\r\n"):
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = b""
            elif b"content-length:" in lower:
                n = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
                while len(buf) < n:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:n], buf[n:]
                conn.sendall(_answer(head, body))
                continue
            conn.sendall(_answer(head))
    except OSError:
        return
    finally:
        conn.close()


def stand_in_daemon(path: str) -> socket.socket:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=_daemon_conn, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv


def _daemon_process(path: str, ready: Any) -> None:
    """The stand-in daemon in a process of its own: its threads reading 1 MB bodies
    would otherwise hold the GIL of the thread timing the pings."""
    stand_in_daemon(path)
    ready.set()
    threading.Event().wait()


def connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def pings(path: str, seconds: float) -> list[float]:
    """Latencies of /_ping back to back on one keep-alive connection (1 ms apart)."""
    out: list[float] = []
    s = connect(path)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        s.sendall(PING)
        got = b""
        while not got.endswith(b"OK"):
            data = s.recv(4096)
            if not data:
                raise RuntimeError("dockgate closed the ping connection")
            got += data
        out.append(time.perf_counter() - t0)
        time.sleep(0.001)
    s.close()
    return out


HEAD = (b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\n"
        b"Content-Type: application/json\r\n")


def _with_length(body: bytes, extra: bytes = b"") -> bytes:
    return HEAD + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body


def attack_wire(kind: str) -> bytes:
    """The bytes one attack request sends."""
    if kind == "chunks":
        body = b'{"Image":"x","Labels":{"a":"' + b"b" * ((1 << 20) - 30) + b'"}}'
        return (HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
                + b"".join(b"1\r\n%c\r\n" % c for c in body) + b"0\r\n\r\n")
    if kind == "members":
        labels = ",".join(f'"k{i}":"v"' for i in range(20001)).encode()
        return _with_length(b'{"Image":"x","Labels":{' + labels + b"}}")
    if kind == "nesting":
        return _with_length(b'{"Image":"x","Deep":' + b"[" * 5000 + b"]" * 5000 + b"}")
    if kind == "headers":
        return _with_length(b'{"Image":"x"}', b"".join(b"X-F%d: v\r\n" % i for i in range(300)))
    if kind == "entries":
        binds = ",".join(f'"/srv/d{i:05}:/mnt/{i:05}:ro"' for i in range(20000)).encode()
        return _with_length(b'{"Image":"x","HostConfig":{"Binds":[' + binds + b"]}}")
    if kind in LARGE:
        pad = "v" * 38
        key = "k\u00e9" if kind == "oddkeys" else "k"  # not ASCII: the slower fold
        labels = ",".join(f'"{key}{i:05}":"{pad}"' for i in range(19990)).encode()
        return _with_length(b'{"Image":"x","Labels":{' + labels + b"}" + LARGE[kind] + b"}")
    raise ValueError(kind)


LARGE = {
    "large": b"",
    "oddkeys": b"",
    "joined": b',"HostConfig":{"NetworkMode":"container:web"}',
    "confined": b',"User":"1000:1000","HostConfig":{"CapDrop":["ALL"],"Memory":67108864,'
                b'"NanoCpus":500000000,"PidsLimit":100,"SecurityOpt":["no-new-privileges"]}',
}
"""The valid 1 MB creates: 19990 labels (``oddkeys``: keys with a non-ASCII letter,
which a tenant's check folds as Unicode), and what else the body holds (``joined``:
another container's network; ``confined``: what policies/restricted.yaml asks for)."""
ATTACKS = ("chunks", "members", "nesting", "headers", "entries", *LARGE)


def run_delay(pid: int) -> float:
    """Seconds process ``pid``'s threads have spent runnable but waiting for a CPU
    (``/proc/PID/schedstat``, second field, summed over its tasks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[1])
    return total / 1e9


def attacker(path: str, stop: Any, answered: Any, kind: str, nice: int) -> None:
    """Send ``kind`` attack requests, again and again, reading each answer.

    Runs in a process of its own, so that the clients' work does not hold the
    GIL of the thread timing the pings; ``nice`` lowers its CPU priority, which
    tells the attackers' own CPU use apart from dockgate's work for them.
    """
    os.nice(nice)
    wire = attack_wire(kind)
    while not stop.is_set():
        s = connect(path)
        s.settimeout(30)
        try:
            for i in range(0, len(wire), 65536):
                if stop.is_set():
                    break
                s.sendall(wire[i:i + 65536])
        except OSError:
            pass  # refused and closed mid-body: the expected outcome
        try:
            if s.recv(4096):
                with answered.get_lock():
                    answered.value += 1
        except OSError:
            pass
        s.close()


def p99(lat: list[float]) -> float:
    lat = sorted(lat)
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def summary(name: str, lat: list[float]) -> str:
    return (f"{name:<32} n={len(lat):<6} p50={statistics.median(lat) * 1e3:7.2f} ms  "
            f"p99={p99(lat) * 1e3:7.2f} ms  max={max(lat) * 1e3:7.2f} ms")


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (dockgate's admission workers)."""
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(c) for c in f.read().split()]
    return found


def children_cpu(pid: int) -> dict[int, float]:
    out = {}
    for child in children(pid):
        with contextlib.suppress(OSError):  # ended meanwhile
            out[child] = cpu_seconds(child)
    return out


def measure(gate_sock: str, gate_pid: int, kind: str, attackers: int, seconds: float, *,
            nice: int = 0) -> tuple[float, float]:
    """Quiet pings, then pings while ``attackers`` processes send ``kind`` requests;
    returns the loaded window (monotonic start and end)."""
    quiet = pings(gate_sock, seconds)
    stop, answered = multiprocessing.Event(), multiprocessing.Value("i", 0)
    procs = [multiprocessing.Process(target=attacker,
                                     args=(gate_sock, stop, answered, kind, nice),
                                     daemon=True) for _ in range(attackers)]
    cpu0, wait0 = cpu_seconds(gate_pid), run_delay(gate_pid)
    kids0 = children_cpu(gate_pid)
    for proc in procs:
        proc.start()
    window = time.monotonic()
    loaded = pings(gate_sock, seconds)
    window_end = time.monotonic()
    stop.set()
    for proc in procs:
        proc.join(timeout=60)
    cpu, wait = cpu_seconds(gate_pid) - cpu0, run_delay(gate_pid) - wait0
    kids = sum(c - kids0.get(pid, 0.0) for pid, c in children_cpu(gate_pid).items())
    print(summary(f"/_ping, quiet ({kind})", quiet))
    print(summary(f"/_ping, {attackers} {kind} attackers", loaded))
    n = answered.value
    per = f"{cpu / n:.4f} s" if n else "n/a"
    workers = f", its workers {kids / n:.4f} s" if n and kids else ""
    print(f"  p99 loaded/quiet {p99(loaded) / p99(quiet):.1f}x; attack requests answered: {n}; "
          f"dockgate CPU {cpu:.2f} s ({per} per attack request{workers}), runnable but "
          f"waiting for a CPU {wait:.2f} s")
    return window, window_end


def reactor_turns(path: str, windows: dict[str, tuple[float, float]]) -> None:
    """Per attack: the CPU time of the reactor's iterations in the loaded window
    (``_turn_probe``): what a request arriving in one waits for, without the
    machine's share."""
    with open(path) as f:
        iterations = [json.loads(line) for line in f if line.strip()]
    for kind, (start, end) in windows.items():
        cpu = sorted(c for t, c in iterations if start <= t <= end)
        if not cpu:
            continue
        print(f"reactor iterations under {kind}: n={len(cpu)} "
              f"p50={statistics.median(cpu) * 1e3:.2f} ms p99={p99(cpu) * 1e3:.2f} ms "
              f"p99.9={cpu[int(len(cpu) * 0.999)] * 1e3:.2f} ms max={cpu[-1] * 1e3:.2f} ms "
              "(CPU time)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--attackers", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--attack", choices=(*ATTACKS, "all"), default="chunks")
    ap.add_argument("--nice", type=int, default=0,
                    help="run the attackers at this niceness (19: they get only spare CPU)")
    ap.add_argument("--tenant", metavar="POLICY",
                    help="every client is a tenant under this policy file (see above)")
    ap.add_argument("serve", nargs="*", metavar="SERVE-OPTION",
                    help="more options for dockgate serve, after -- "
                         "(e.g. -- --admission-workers 0)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dgchunks-") as tmp:
        daemon_sock, gate_sock = os.path.join(tmp, "d.sock"), os.path.join(tmp, "g.sock")
        ready = multiprocessing.Event()
        daemon = multiprocessing.Process(target=_daemon_process, args=(daemon_sock, ready),
                                         daemon=True)
        daemon.start()
        if not ready.wait(30):
            raise RuntimeError("the stand-in daemon did not start")
        probe = os.path.join(tmp, "turns.jsonl")
        tenancy: list[str] = []
        if args.tenant:
            tenants = os.path.join(tmp, "tenants.yaml")
            with open(tenants, "w") as f:
                f.write(f"default: bench\ntenants:\n  - name: bench\n"
                        f"    policy: {Path(args.tenant).resolve()}\n")
            tenancy = ["--tenants", tenants]
        gate = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve().parent / "_turn_probe.py"), probe,
             "serve", "--listen", f"unix:{gate_sock}", "--upstream", f"unix:{daemon_sock}",
             "--policy", str(ROOT / "policies/privileged.yaml"), *tenancy, *args.serve],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(gate_sock):
                if time.monotonic() > deadline or gate.poll() is not None:
                    raise RuntimeError("dockgate did not start")
                time.sleep(0.05)
            pings(gate_sock, 0.5)  # warm up
            # One large body first: an admission worker (started by it) is then
            # running before anything is timed.
            warm = connect(gate_sock)
            warm.sendall(attack_wire(args.attack if args.attack in LARGE else "large"))
            answer = warm.recv(4096).split(b"\r\n\r\n")[0].decode().split("\r\n")
            seen = [h for h in answer if h.lower().startswith("x-seen")]
            print("a large body's answer:", answer[0], *seen,
                  "(tenant, policy " + args.tenant + ")" if args.tenant else "")
            warm.close()
            time.sleep(1)
            windows = {}
            for kind in ATTACKS if args.attack == "all" else (args.attack,):
                windows[kind] = measure(gate_sock, gate.pid, kind, args.attackers, args.seconds,
                                        nice=args.nice)
        finally:
            gate.terminate()
            gate.wait(timeout=15)
        if os.path.exists(probe):
            reactor_turns(probe, windows)
            daemon.terminate()
            daemon.join(timeout=15)
    return 0


if __name__ == "__main__":
    sys.exit(main())

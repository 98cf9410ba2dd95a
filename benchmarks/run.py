"""dockgate's benchmark: the same workloads direct to the daemon and through dockgate.

    python benchmarks/run.py [--seconds 5] [--quick] [--keep]

Starts a private Docker engine (28.5 by default, vfs, no networking) and
``dockgate serve`` in front of it, then measures each figure on the
daemon's own socket and on dockgate's, one after the other in the same
run, and prints each figure with its ratio (dockgate / direct) and, where
there is one, PASS or FAIL against its target.  The results also go to
benchmarks/results/<UTC time>.json.  See benchmarks/README.md.

The load generator runs as a separate process (benchmarks/_load.py), so
the client never shares dockgate's interpreter; the streaming figures are
read by this process, which is otherwise idle.  The benchmarks/bench_*.py
micro-benchmarks (admission, policy, audit, ...), when present, run as
subprocesses and their output is included.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests")]

from _fixtures import (  # noqa: E402
    RssSampler,
    append_blob,
    cpu_seconds,
    create_container,
    remove_containers,
    rss_kib,
    write_image_archive,
)
from _peers import NAMES as PEER_NAMES  # noqa: E402
from _peers import start_peers  # noqa: E402
from _profile import Profiler, format_summary, summary  # noqa: E402
from _wire import Conn, HttpError, call  # noqa: E402
from support import engines, unixhttp  # noqa: E402

MB = 1_000_000
IMAGE = engines.IMAGE
BIG_IMAGE = "dgbench-export:latest"
LOAD_IMAGE = "dgbench-load:latest"
CPU_UNITS = {"req": (1e6, "µs/req"), "cycle": (1e3, "ms/cycle"), "MB": (1e3, "ms/MB"),
             "exec": (1e3, "ms/exec")}
"""How CPU time per unit is shown: (seconds → shown unit, its label)."""
ROUNDS = 2
"""Direct and dockgate alternate this many times for each throughput figure."""
RATE_ROUNDS = 4
"""Rounds for the request rates, the create+delete cycles and attach, the figures
most moved by scheduling and background load (the page cache writing back the
vfs layers in bursts of seconds) on a small machine."""
RATIO_TARGET = 0.9
PEER_ROUNDS = 2
"""Rounds (ABBA) of the peer comparison: every side once per round and figure."""
LIST_TARGETS = (1_000, 4_000, 40_000, 200_000)
"""containers/json body sizes compared with the peers (bytes, at least).  Both
engines send a list under 2 KB with a Content-Length (Go's net/http buffers that
much before it chunks) and larger ones chunked."""
LIST_LABELS = {f"dockgate.bench.label{i}": "x" * 150 for i in range(8)}
"""Labels of the containers added for the larger lists (about 1.4 KB each in the list)."""
RSS_IDLE_MAX = 80 * MB
RSS_SESSIONS_MAX = 200 * MB
RSS_FLAT_MAX = 16 * MB
""""Flat" during a 1 GiB image load: the peak may exceed idle by at most this."""


@dataclass
class Figure:
    name: str
    unit: str
    direct: float | None
    dockgate: float
    target: str = ""
    passed: bool | None = None
    higher_is_better: bool = True
    cpu_unit: str = ""
    cpu_dockgate: float | None = None
    """dockgate's CPU time per unit of work on the dockgate side."""
    cpu_dockerd: float | None = None
    """The daemon's CPU time per unit of work on the direct side, for scale."""

    @property
    def ratio(self) -> float | None:
        if self.direct is None or self.direct == 0:
            return None
        return self.dockgate / self.direct


@dataclass
class Sizes:
    seconds: float
    clients: int
    containers: int
    export_bytes: int
    attach_bytes: int
    load_bytes: int
    sessions: int
    execs: int


FULL = Sizes(5.0, 8, 32, 500 * MB, 1000 * MB, 1 << 30, 200, 200)
QUICK = Sizes(2.0, 8, 32, 20 * MB, 50 * MB, 64 << 20, 20, 20)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Bench:
    """One benchmark run: the engine, dockgate, and the figures measured so far."""

    def __init__(self, sizes: Sizes, work: Path, stack: ExitStack) -> None:
        self.sizes = sizes
        self.work = work
        self.stack = stack
        self.figures: list[Figure] = []
        self.extra: dict[str, Any] = {}
        self.cli = engines.find_cli()
        self.daemon = engines.start_daemon("28.5", work / "e")
        stack.callback(self._stop_daemon)
        self.daemon.wait_ready()
        self.dsock = self.daemon.socket
        self.psock = str(work / "g.sock")
        self.audit = work / "audit.jsonl"
        self.gate: subprocess.Popen[bytes] | None = None
        self.further: dict[str, tuple[str, int]] = {}
        """The further sides (floors, dockgate without audit): socket and process id."""
        self.containers: set[str] = set()
        self.profile_dir: Path | None = None
        self.cpu: dict[str, dict[str, float]] = {}

    # --- processes -------------------------------------------------------

    def _stop_daemon(self) -> None:
        try:
            if self.containers:
                log(f"removing {len(self.containers)} containers")
                remove_containers(self.dsock, self.containers)
        finally:
            self.daemon.stop()

    def _serve(self, sock: str, audit: Path | None, log_name: str,
               upstream: str | None = None) -> subprocess.Popen[bytes]:
        """Start ``dockgate serve`` on ``sock`` (the audit log off when ``audit`` is None)
        in front of ``upstream`` (the benchmark's engine 28.5 by default)."""
        argv = [
            sys.executable, "-m", "dockgate", "serve",
            "--listen", f"unix:{sock}",
            "--upstream", f"unix:{upstream or self.dsock}",
            "--policy", str(ROOT / "policies/privileged.yaml"),
        ]
        if audit is not None:
            argv += ["--audit-log", str(audit)]
        log_file = open(self.work / log_name, "ab")  # noqa: SIM115 (closed by the stack)
        self.stack.callback(log_file.close)
        gate = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
        )
        self.stack.callback(engines.terminate, gate, 15)
        unixhttp.wait_ping(sock, time.monotonic() + 30, alive=lambda: gate.poll() is None)
        return gate

    def start_gate(self) -> int:
        self.gate = self._serve(self.psock, self.audit, "dockgate.log")
        return self.gate.pid

    def start_floors(self) -> None:
        """Start the bare Twisted byte pump (_floor.py), the thin relay (_relay.py)
        and a second dockgate with the audit log off (the "quiet" side)."""
        for side, script in (("floor", "_floor.py"), ("relay", "_relay.py")):
            sock = str(self.work / f"{side}.sock")
            process = subprocess.Popen(
                [sys.executable, str(HERE / script), sock, self.dsock],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.stack.callback(engines.terminate, process, 15)
            unixhttp.wait_ping(sock, time.monotonic() + 30,
                               alive=lambda p=process: p.poll() is None)
            self.further[side] = sock, process.pid
        quiet = str(self.work / "quiet.sock")
        self.further["quiet"] = quiet, self._serve(quiet, None, "dockgate-quiet.log").pid

    @property
    def pid(self) -> int:
        assert self.gate is not None
        return self.gate.pid

    def both(
        self, label: str, rounds: int = 1, floors: tuple[str, ...] = ()
    ) -> Iterator[tuple[str, str]]:
        """The two sides (and the floors asked for), ``rounds`` times, in ABBA order.

        Alternating spreads background load over both sides alike, and
        reversing the order every other round (direct first, then dockgate
        first) cancels a steady drift, such as a daemon that slows down as
        its disk fills with writeback: with direct always first, every
        round's drift counted against dockgate.  The first dockgate round is
        profiled when asked (--profile).
        """
        for round_ in range(rounds):
            sides = ["direct", *floors, "dockgate"]
            for side in reversed(sides) if round_ % 2 else sides:
                if side == "direct":
                    with self.cpu_of(label, "direct", self.daemon.process.pid):
                        yield "direct", self.dsock
                elif side != "dockgate":
                    sock, pid = self.further[side]
                    with self.cpu_of(label, side, pid):
                        yield side, sock
                elif self.profile_dir is None or round_:
                    with self.cpu_of(label, "dockgate", self.pid):
                        yield "dockgate", self.psock
                else:
                    out = self.profile_dir / f"{label}.txt"
                    with Profiler(self.pid, out), self.cpu_of(label, "dockgate", self.pid):
                        yield "dockgate", self.psock
                    if out.exists():
                        self.extra.setdefault("profiles", {})[label] = summary(out)

    def side_rounds(
        self, label: str, mode: str, sides: dict[str, tuple[str, int]], rounds: int = PEER_ROUNDS
    ) -> Tally:
        """``_load.py`` in ``mode`` on every side, ``rounds`` times in ABBA order, with
        each side's process CPU (sides: name -> socket and process id)."""
        tally = Tally()
        seconds = self.sizes.seconds / ROUNDS
        names = list(sides)
        for round_ in range(rounds):
            for side in reversed(names) if round_ % 2 else names:
                sock, pid = sides[side]
                with self.cpu_of(label, side, pid):
                    result = self.run_load(side, sock, mode, seconds)
                tally.add(side, result["requests"], result["seconds"])
        return tally

    @contextmanager
    def cpu_of(self, label: str, side: str, pid: int) -> Iterator[None]:
        """Add the CPU time ``pid`` uses during the block to ``self.cpu[label][side]``."""
        before = cpu_seconds(pid)
        yield
        spent = self.cpu.setdefault(label, {})
        spent[side] = spent.get(side, 0.0) + cpu_seconds(pid) - before

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        ratio = f" ratio {figure.ratio:.2f}" if figure.ratio is not None else ""
        direct = f"direct {figure.direct:.1f}, " if figure.direct is not None else ""
        log(f"{figure.name}: {direct}dockgate {figure.dockgate:.1f} {figure.unit}{ratio}")

    def ratio_figure(
        self, name: str, unit: str, tally: Tally, *, gated: bool, label: str, cpu_unit: str
    ) -> None:
        """Add a direct-vs-dockgate figure, with the CPU each side's server spent per unit."""
        values = tally.rates()
        figure = Figure(name, unit, values["direct"], values["dockgate"])
        if gated:
            figure.target = f">= {RATIO_TARGET}x direct"
            figure.passed = (figure.ratio or 0) >= RATIO_TARGET
        figure.cpu_unit = CPU_UNITS[cpu_unit][1]
        figure.cpu_dockgate = self.cpu_per_unit(label, "dockgate", tally, cpu_unit)
        figure.cpu_dockerd = self.cpu_per_unit(label, "direct", tally, cpu_unit)
        self.add(figure)

    def cpu_per_unit(self, label: str, side: str, tally: Tally, cpu_unit: str) -> float | None:
        """The CPU ``side``'s process spent per unit of its work in ``label``, if measured."""
        spent = self.cpu.get(label, {})
        amount = tally.amount.get(side, 0) / tally.unit
        if side not in spent or not amount:
            return None
        return spent[side] * CPU_UNITS[cpu_unit][0] / amount

    def floor_figures(
        self, name: str, unit: str, tally: Tally, *, label: str, cpu_unit: str
    ) -> None:
        """The same workload through the further sides that ran, with each one's own CPU.

        The floors are what a proxy reaches at the least; dockgate with its
        audit log off shows what the audit log's records cost in the same rounds.
        """
        values = tally.rates()
        for side, what in (("quiet", "dockgate with the audit log off"),
                           ("floor", "a bare Twisted byte pump (floor)"),
                           ("relay", "a thin kernel-splice relay (floor)")):
            if side in values:
                figure = Figure(f"{name} through {what}", unit, values["direct"], values[side])
                figure.cpu_dockgate = self.cpu_per_unit(label, side, tally, cpu_unit)
                if figure.cpu_dockgate is not None:
                    figure.cpu_unit = CPU_UNITS[cpu_unit][1]
                self.add(figure)

    # --- setup -----------------------------------------------------------

    def docker(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(
            [self.cli, "-H", f"unix://{self.dsock}", *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout.strip()

    def prepare_images(self) -> None:
        rootfs = engines.build_rootfs(self.work / "rootfs.tar")
        self.docker("import", "-c", "ENV PATH=/bin", str(rootfs), IMAGE)
        log(f"writing a {self.sizes.export_bytes / MB:.0f} MB rootfs for the export image")
        append_blob(rootfs, "data/blob", self.sizes.export_bytes)
        self.docker("import", "-c", "ENV PATH=/bin", str(rootfs), BIG_IMAGE)
        rootfs.unlink()
        log(f"writing a {self.sizes.load_bytes / MB:.0f} MB image archive for images/load")
        write_image_archive(self.work / "load.tar", self.sizes.load_bytes, LOAD_IMAGE)

    def create(self, image: str, cmd: list[str], **extra: object) -> str:
        ident = create_container(self.dsock, image, cmd, **extra)
        self.containers.add(ident)
        return ident

    def remove(self, idents: list[str]) -> None:
        remove_containers(self.dsock, idents)
        self.containers.difference_update(idents)

    # --- figures ---------------------------------------------------------

    def rss_idle(self) -> int:
        time.sleep(1.0)
        idle = rss_kib(self.pid) * 1024
        self.add(Figure("RSS idle", "MB", None, idle / MB, "<= 80 MB", idle <= RSS_IDLE_MAX, False))
        return idle

    def image_load(self, idle: int) -> None:
        archive = self.work / "load.tar"
        size = archive.stat().st_size
        tally = Tally(MB)
        peak = 0
        for side, sock in self.both("images-load"):
            with ExitStack() as sampling:
                if side == "dockgate":
                    sampler = sampling.enter_context(RssSampler(self.pid, 0.1))
                start = time.monotonic()
                post_file(sock, "/images/load?quiet=1", archive)
                tally.add(side, size, time.monotonic() - start)
            call(self.dsock, "DELETE", f"/images/{LOAD_IMAGE}?force=1")
        peak = sampler.peak * 1024
        growth = max(0, peak - idle)
        self.ratio_figure(f"POST /images/load ({size / (1 << 30):.3g} GiB)", "MB/s", tally,
                          gated=False, label="images-load", cpu_unit="MB")
        self.add(Figure("RSS peak - idle during images/load", "MB", None, growth / MB,
                        f"flat (<= {RSS_FLAT_MAX // MB} MB)", growth <= RSS_FLAT_MAX, False))
        self.extra["rss_during_load"] = {"idle": idle, "peak": peak,
                                         "samples": len(sampler.samples)}

    def load(self, mode: str, rounds: int = RATE_ROUNDS, floors: tuple[str, ...] = ()) -> Tally:
        tally = Tally()
        seconds = self.sizes.seconds / ROUNDS
        if mode == "cycle":
            # Unmeasured: the first seconds of creating and deleting
            # containers run on a quiet disk, at up to three times the
            # steady rate (vfs copies each rootfs, and writeback catches up
            # only later); whichever side came first would be flattered.
            self.run_load("warm-up", self.dsock, mode, seconds)
        for side, sock in self.both(mode, rounds, floors):
            result = self.run_load(side, sock, mode, seconds)
            tally.add(side, result["requests"], result["seconds"])
            self.extra.setdefault("load", {}).setdefault(f"{mode}/{side}", []).append(result)
        return tally

    def run_load(self, side: str, sock: str, mode: str, seconds: float) -> dict[str, Any]:
        """One window of ``_load.py`` against ``sock``; its JSON result."""
        out = subprocess.run(
            [sys.executable, str(HERE / "_load.py"), "--socket", sock, "--mode", mode,
             "--clients", str(self.sizes.clients), "--seconds", str(seconds)],
            capture_output=True, text=True, timeout=seconds + 180, check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"load {mode} on {side}: {out.stdout}{out.stderr}")
        result: dict[str, Any] = json.loads(out.stdout)
        if result["errors"]:
            raise RuntimeError(f"load {mode} on {side}: {result['errors']} errors")
        return result

    def request_rates(self) -> None:
        for _ in range(self.sizes.containers):
            self.create(IMAGE, ["true"], Labels={"dockgate.bench": "list"})
        n = self.sizes.clients
        ping = self.load("ping", RATE_ROUNDS, floors=("quiet", "floor", "relay"))
        self.ratio_figure(f"GET /_ping, {n} clients", "req/s", ping, gated=False,
                          label="ping", cpu_unit="req")
        self.floor_figures("GET /_ping", "req/s", ping, label="ping", cpu_unit="req")
        listing = self.load("json", RATE_ROUNDS, floors=("quiet", "floor", "relay"))
        self.ratio_figure(
            f"GET /containers/json?all=1 ({self.sizes.containers} ctrs), {n} clients",
            "req/s", listing, gated=True, label="json", cpu_unit="req",
        )
        self.floor_figures("GET /containers/json", "req/s", listing, label="json",
                           cpu_unit="req")
        self.ratio_figure(f"create+delete cycle, {n} clients", "cycles/s",
                          self.load("cycle", RATE_ROUNDS), gated=True, label="cycle",
                          cpu_unit="cycle")

    def peers(self) -> None:
        """/_ping and containers/json at three sizes, on both engines: direct,
        through dockgate (audit log on) and through each peer, in the same rounds."""
        notes: list[str] = []
        rows: list[dict[str, Any]] = []
        for name in ("28.5", "20.10"):
            rows += self.peer_engine(name, notes)
        self.extra["peers"] = {"rows": rows, "notes": notes}

    def peer_engine(self, name: str, notes: list[str]) -> list[dict[str, Any]]:
        tag = name.replace(".", "")
        if name == "28.5":
            daemon = self.daemon
            if self.containers:  # the request rates' list: the sizes start from none
                self.remove(list(self.containers))
        else:
            log(f"starting engine {name} for the peer comparison")
            daemon = engines.start_daemon(name, self.work / f"e{tag}")
            created: set[str] = set()

            def stop(daemon: engines.Daemon = daemon) -> None:
                try:
                    remove_containers(daemon.socket, created)
                finally:
                    daemon.stop()

            self.stack.callback(stop)
            daemon.wait_ready()
            engines.import_image(self.cli, daemon, engines.build_rootfs(self.work / "rootfs20.tar"))
        dsock = daemon.socket
        gsock = str(self.work / f"g{tag}.sock")
        gate = self._serve(gsock, self.work / f"audit{tag}.jsonl", f"dockgate{tag}.log", dsock)
        peers = start_peers(
            self.work / f"p{tag}", dsock,
            lambda sock, deadline, alive: unixhttp.wait_ping(sock, deadline, alive=alive),
            lambda process: engines.terminate(process, 15), notes)
        for peer in peers:
            self.stack.callback(engines.terminate, peer.process, 15)
        sides = {"direct": (dsock, daemon.process.pid), "dockgate": (gsock, gate.pid),
                 **{p.side: (p.sock, p.process.pid) for p in peers}}
        rows = [self.peer_row(f"GET /_ping ({name})", f"ping-{tag}",
                              self.side_rounds(f"ping-{tag}", "ping", sides), "", "")]
        idents: list[str] = []
        for target in LIST_TARGETS:
            size, framing = self.grow_list(dsock, idents, target)
            if name != "28.5":
                created.update(idents)
            label = f"json{target // 1000}k-{tag}"
            log(f"engine {name}: containers/json of {size:,} bytes ({len(idents)} containers, "
                f"{framing})")
            rows.append(self.peer_row(
                f"GET /containers/json?all=1 ({name}, {len(idents)} ctrs)", label,
                self.side_rounds(label, "json", sides), f"{size / 1000:.0f} KB", framing))
        remove_containers(dsock, idents)
        if name == "28.5":
            self.containers.difference_update(idents)
        for peer in peers:
            engines.terminate(peer.process, 15)
        engines.terminate(gate, 15)
        return rows

    def grow_list(self, dsock: str, idents: list[str], target: int) -> tuple[int, str]:
        """Create containers (the first ones bare, later ones with LIST_LABELS) until
        ``GET /containers/json?all=1`` answers at least ``target`` bytes; return its
        size and framing (chunked or Content-Length)."""
        labels = {} if target <= LIST_TARGETS[1] else LIST_LABELS
        while True:
            size, framing = list_size(dsock)
            if size >= target:
                return size, framing
            each = 700 + sum(len(k) + len(v) + 6 for k, v in labels.items())
            missing = max(1, min(64, (target - size) // each + 1))

            def one(_: int) -> str:
                return create_container(dsock, IMAGE, ["true"], Labels=labels)

            with ThreadPoolExecutor(4) as pool:
                made = list(pool.map(one, range(missing)))
            idents += made
            if dsock == self.dsock:
                self.containers.update(made)

    def peer_row(self, name: str, label: str, tally: Tally, size: str, framing: str
                 ) -> dict[str, Any]:
        """One row of the peer table: each side's rate, its ratio to direct, its CPU."""
        rates = tally.rates()
        direct = rates["direct"]
        row: dict[str, Any] = {"figure": name, "size": size, "framing": framing,
                               "loadavg": loadavg(), "direct": direct, "sides": {}}
        for side, rate in rates.items():
            row["sides"][side] = {"rate": rate, "ratio": rate / direct,
                                  "cpu_us": self.cpu_per_unit(label, side, tally, "req")}
        log(f"{name}: " + ", ".join(f"{side} {v['ratio']:.2f}x"
                                    for side, v in row["sides"].items()))
        return row

    def export(self) -> None:
        ident = self.create(BIG_IMAGE, ["true"])
        tally = Tally(MB)
        export_rate(self.dsock, ident)  # warm the page cache: both sides read it warm
        for side, sock in self.both("export", ROUNDS):
            tally.add(side, *export_rate(sock, ident))
        self.remove([ident])
        self.extra["export"] = tally.raw()
        self.ratio_figure(f"GET /containers/{{id}}/export ({self.sizes.export_bytes // MB} MB)",
                          "MB/s", tally, gated=True, label="export", cpu_unit="MB")

    def attach(self) -> None:
        tally = Tally(MB)
        n = self.sizes.attach_bytes
        # No Twisted pump here: it would copy through user space, which no
        # one would do (dockgate splices in the kernel); the relay splices too.
        for side, sock in self.both("attach", RATE_ROUNDS, floors=("relay",)):
            # dd's 1 MB writes and no log driver: with head's 4 KiB writes or
            # the json-file driver the daemon itself manages only 20-60 MB/s.
            ident = self.create(
                IMAGE, ["dd", "if=/dev/zero", f"bs={MB}", f"count={n // MB}"], AttachStdout=True,
                HostConfig={"NetworkMode": "none", "LogConfig": {"Type": "none"}},
            )
            with Conn(sock, timeout=300) as conn:
                conn.hijack("POST", f"/containers/{ident}/attach?stream=1&stdout=1")
                call(self.dsock, "POST", f"/containers/{ident}/start")
                first = conn.buf or conn.sock.recv(1 << 20)
                start = time.monotonic()
                conn.buf = b""
                size = conn.drain()
                tally.add(side, size, time.monotonic() - start)
            if size + len(first) < n:
                raise RuntimeError(f"attach on {side}: {size + len(first)} bytes of {n}")
            self.remove([ident])
        self.extra["attach"] = tally.raw()
        self.ratio_figure(f"attach stdout ({n // MB} MB)", "MB/s", tally, gated=True,
                          label="attach", cpu_unit="MB")
        self.floor_figures("attach stdout", "MB/s", tally, label="attach", cpu_unit="MB")

    def exec_latency(self) -> None:
        ident = self.create(IMAGE, ["sleep", "3600"])
        call(self.dsock, "POST", f"/containers/{ident}/start")
        spec = {"AttachStdout": True, "AttachStderr": True, "Cmd": ["echo", "hi"]}
        p50: dict[str, float] = {}
        p99: dict[str, float] = {}
        for side, sock in self.both("exec"):
            times = []
            for _ in range(self.sizes.execs):
                start = time.monotonic()
                exec_id = call(sock, "POST", f"/containers/{ident}/exec", spec)["Id"]
                with Conn(sock) as conn:
                    conn.hijack("POST", f"/exec/{exec_id}/start", b'{"Detach":false,"Tty":false}')
                    got = conn.drain()
                times.append((time.monotonic() - start) * 1000)
                if got < 3:
                    raise RuntimeError(f"exec on {side}: {got} bytes of output")
            cuts = statistics.quantiles(times, n=100)
            p50[side], p99[side] = cuts[49], cuts[98]
        self.remove([ident])
        n = self.sizes.execs
        for name, values in ((f"exec echo p50 (N={n})", p50), (f"exec echo p99 (N={n})", p99)):
            figure = Figure(name, "ms", values["direct"], values["dockgate"],
                            higher_is_better=False)
            if name.startswith("exec echo p50"):
                spent = self.cpu.get("exec", {})
                figure.cpu_unit = "ms/exec"
                figure.cpu_dockgate = spent.get("dockgate", 0) * 1e3 / n
                figure.cpu_dockerd = spent.get("direct", 0) * 1e3 / n
            self.add(figure)

    def sessions(self) -> None:
        n = self.sizes.sessions
        log(f"starting {n} containers for the attach sessions")

        def start_one(_: int) -> str:
            ident = create_container(self.dsock, IMAGE, ["sleep", "3600"], AttachStdout=True)
            self.containers.add(ident)
            call(self.dsock, "POST", f"/containers/{ident}/start")
            return ident

        with ThreadPoolExecutor(4) as pool:
            idents = list(pool.map(start_one, range(n)))
        before = rss_kib(self.pid) * 1024
        conns = []
        try:
            for ident in idents:
                conn = Conn(self.psock)
                conns.append(conn)
                conn.hijack("POST", f"/containers/{ident}/attach?stream=1&stdout=1&stderr=1")
            with RssSampler(self.pid, 0.1) as sampler:
                time.sleep(2.0)
            rss = sampler.peak * 1024
        finally:
            for conn in conns:
                conn.close()
        self.extra["sessions"] = {"rss_before": before, "rss_with_sessions": rss,
                                  "open": len(conns)}
        self.add(Figure(f"RSS with {n} attach sessions", "MB", None, rss / MB,
                        "<= 200 MB", rss <= RSS_SESSIONS_MAX, False))
        log("removing the session containers")
        self.remove(idents)

    def extra_benches(self) -> None:
        for path in sorted(HERE.glob("bench_*.py")):
            name = path.name
            log(f"running {name}")
            out = subprocess.run([sys.executable, str(path)], cwd=ROOT, capture_output=True,
                                 text=True, timeout=300, check=False)
            self.extra.setdefault("micro", {})[name] = {
                "returncode": out.returncode, "stdout": out.stdout, "stderr": out.stderr[-2000:],
            }


class Tally:
    """Amounts and seconds per side, over several rounds."""

    def __init__(self, unit: float = 1) -> None:
        self.unit = unit
        self.amount: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def add(self, side: str, amount: float, seconds: float) -> None:
        self.amount[side] = self.amount.get(side, 0) + amount
        self.seconds[side] = self.seconds.get(side, 0) + seconds

    def rates(self) -> dict[str, float]:
        return {side: self.amount[side] / self.unit / self.seconds[side] for side in self.amount}

    def raw(self) -> dict[str, Any]:
        return {"amount": self.amount, "seconds": self.seconds}


def export_rate(sock: str, ident: str) -> tuple[int, float]:
    """Export a container and read the tar to its end; returns (bytes, seconds)."""
    with Conn(sock) as conn:
        start = time.monotonic()
        conn.sock.sendall(b"GET /containers/%s/export HTTP/1.1\r\nHost: docker\r\n\r\n"
                          % ident.encode())
        status, head = conn.read_head()
        if status != 200:
            raise HttpError(f"export on {sock}: {status}")
        size = conn.discard_body(head)
        return size, time.monotonic() - start


def post_file(sock: str, target: str, path: Path) -> None:
    """POST a file as the request body (streamed), and read the whole response."""
    size = path.stat().st_size
    with Conn(sock, timeout=600) as conn, open(path, "rb") as f:
        conn.sock.sendall(
            f"POST {target} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-tar\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
        )
        conn.sock.sendfile(f)
        status, head = conn.read_head()
        body = conn.read_body(head, status)
    if status != 200 or b"errorDetail" in body:
        raise HttpError(f"POST {target}: {status} {body[-300:]!r}")


def list_size(sock: str) -> tuple[int, str]:
    """The size of ``GET /containers/json?all=1``'s body and how it was framed."""
    with Conn(sock) as conn:
        conn.sock.sendall(b"GET /containers/json?all=1 HTTP/1.1\r\nHost: docker\r\n\r\n")
        status, head = conn.read_head()
        framing = "chunked" if "chunked" in head.get("transfer-encoding", "") else "Content-Length"
        body = conn.read_body(head, status)
    return len(body), framing


def peer_table(rows: list[dict[str, Any]]) -> str:
    """The peer comparison as a Markdown table: ratios to direct, and dockgate's
    standing against the best Go peer and HAProxy."""
    sides = ["dockgate", *PEER_NAMES]
    head = ["figure", "body", "direct", *(PEER_NAMES.get(s, s) for s in sides),
            "dockgate / best Go peer", "dockgate - HAProxy", "CPU µs/req: dockgate (peers)",
            "load"]
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        got = row["sides"]
        ratios = [f"{got[s]['ratio']:.2f}x" if s in got else "-" for s in sides]
        go = [got[s]["rate"] for s in ("socketproxy", "cetusguard") if s in got]
        versus_go = f"{got['dockgate']['rate'] / max(go):.2f}" if go else "-"
        versus_ha = (f"{got['dockgate']['ratio'] - got['haproxy']['ratio']:+.2f}"
                     if "haproxy" in got else "-")
        cpu = [got[s]["cpu_us"] for s in sides if s in got]
        cpu_text = (f"{cpu[0]:.0f} (" + ", ".join(f"{c:.0f}" for c in cpu[1:] if c) + ")"
                    if cpu and cpu[0] else "-")
        body = f"{row['size']} {row['framing']}".strip() or "-"
        out.append(f"| {row['figure']} | {body} | {row['direct']:,.0f} req/s | "
                   + " | ".join(ratios) + f" | {versus_go} | {versus_ha} | {cpu_text} | "
                   f"{row['loadavg']} |")
    return "\n".join(out)


def machine(daemon_sock: str) -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    version = call(daemon_sock, "GET", "/version")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, check=False).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "engine": f"{version['Version']} (API {version['ApiVersion']})",
        "kernel": platform.release(),
        "git": head,
        "loadavg_start": loadavg(),
    }


def loadavg() -> str:
    """The 1-minute load average: above nproc, other work competed for the CPUs."""
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def table(figures: list[Figure]) -> str:
    """The figures as a Markdown table."""
    rows = ["| figure | direct | dockgate | ratio | target | result | CPU: dockgate (dockerd) |",
            "| --- | ---: | ---: | ---: | --- | --- | ---: |"]
    for f in figures:
        direct = f"{f.direct:,.1f} {f.unit}" if f.direct is not None else "-"
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        result = {True: "PASS", False: "FAIL", None: "-"}[f.passed]
        cpu = "-"
        if f.cpu_dockgate is not None:
            cpu = _num(f.cpu_dockgate)
            if f.cpu_dockerd is not None:
                cpu += f" ({_num(f.cpu_dockerd)})"
            cpu += f" {f.cpu_unit}"
        rows.append(f"| {f.name} | {direct} | {f.dockgate:,.1f} {f.unit} | {ratio} | "
                    f"{f.target or '-'} | {result} | {cpu} |")
    return "\n".join(rows)


@contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    # Short, so the sockets' paths stay far below the 108-byte limit.
    path = Path(tempfile.mkdtemp(prefix="dgb-", dir="/tmp"))
    try:
        yield path
    finally:
        if keep:
            log(f"kept {path}")
        else:
            engines.remove_tree(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--seconds", type=float, help="measuring time per request-rate figure")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--profile", action="store_true",
                        help="sample dockgate with py-spy during each dockgate-side measurement "
                        "(slows it a little) and print the hot spots")
    parser.add_argument("--only", default="", help="comma-separated subset: load,rates,peers,"
                        "export,attach,exec,sessions,micro")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.seconds:
        sizes.seconds = args.seconds
    need = (sizes.export_bytes * 4 + sizes.load_bytes * 3) + (2 << 30)
    free = shutil.disk_usage("/tmp").free
    if free < need:
        print(f"need about {need / MB:.0f} MB free under /tmp, have {free / MB:.0f}",
              file=sys.stderr)
        return 2
    steps: dict[str, Callable[[Bench], None]] = {
        "rates": Bench.request_rates,
        "peers": Bench.peers,
        "export": Bench.export,
        "attach": Bench.attach,
        "exec": Bench.exec_latency,
        "sessions": Bench.sessions,
        "micro": Bench.extra_benches,
    }
    only = set(filter(None, args.only.split(",")))
    began = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with workdir(args.keep) as work, ExitStack() as stack:
        log(f"starting engine 28.5 under {work}")
        bench = Bench(sizes, work, stack)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        out_dir = HERE / "results"
        if args.profile:
            bench.profile_dir = out_dir / f"profile-{stamp}"
            bench.profile_dir.mkdir(parents=True, exist_ok=True)
        info = machine(bench.dsock)
        bench.prepare_images()
        bench.start_gate()
        bench.start_floors()
        idle = bench.rss_idle()
        if not only or "load" in only:
            bench.image_load(idle)
        for name, step in steps.items():
            if not only or name in only:
                log(f"-- {name}")
                step(bench)
        info["seconds"] = round(time.monotonic() - began, 1)
        info["loadavg_end"] = loadavg()
        results = {"machine": info, "sizes": asdict(sizes),
                   "figures": [{**asdict(f), "ratio": f.ratio} for f in bench.figures],
                   "extra": bench.extra}
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"{stamp}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(" · ".join(f"{k}: {v}" for k, v in info.items()))
    print()
    print(table(bench.figures))
    if "peers" in bench.extra:
        print("\nThe peers, in the same rounds (ratios to direct):\n")
        print(peer_table(bench.extra["peers"]["rows"]))
        for note in bench.extra["peers"]["notes"]:
            print(f"note: {note}")
    for name, micro in bench.extra.get("micro", {}).items():
        print(f"\n{name} (exit {micro['returncode']}):\n{micro['stdout'].rstrip()}")
    for label, profile in bench.extra.get("profiles", {}).items():
        print(f"\nprofile of dockgate during {label}:\n{format_summary(profile)}")
    busy = max(float(info["loadavg_start"]), float(info["loadavg_end"]))
    if busy > (os.cpu_count() or 1) * 0.75:
        print(f"\nwarning: load average {busy} on {os.cpu_count()} CPUs: other work competed "
              "with this run; ratios are unreliable (compare the CPU column instead)")
    failed = [f.name for f in bench.figures if f.passed is False]
    print(f"\n{len(failed)} target(s) failed{': ' + '; '.join(failed) if failed else ''}")
    print(f"results: {out.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

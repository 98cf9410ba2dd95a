"""Other Docker socket proxies, run beside dockgate in the same rounds (run.py).

The peers are located, never built or fetched here: the benchmark runs each
one that is present and skips the others with a note.

* HAProxy (``haproxy`` on PATH, e.g. Debian's package), configured here the
  way docker-socket-proxy (Tecnativa) documents its behaviour: HTTP mode with
  keep-alive, a request log line per request, an allow rule per API section
  matched on the path (with or without the ``/vX.Y`` prefix), everything else
  denied with 403.  The configuration is written by ``haproxy_config`` below.
* wollomatic/socket-proxy and hectorm/cetusguard (Go): prebuilt binaries named
  ``socket-proxy`` and ``cetusguard`` in ``$DOCKGATE_BENCH_PEERS`` (default
  ``/opt/dockgate-peers``).  Build them from their public sources with a Go
  toolchain (``GOTOOLCHAIN=local GOPROXY=off go build ./cmd/socket-proxy``,
  ``go build ./cmd/cetusguard``; neither has module dependencies).  Each is
  run with its defaults but for its sockets (unix, loopback only) and an
  allow-list for the GETs measured.

Every peer listens on a unix socket in the run's work directory and talks to
the engine's own socket.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PEERS_DIR = Path(os.environ.get("DOCKGATE_BENCH_PEERS", "/opt/dockgate-peers"))

ALLOWED_PATHS = r"^(/v[0-9.]+)?/(_ping|containers/json|version|info)$"
"""The GETs the benchmark sends (and what clients read on connecting)."""

NAMES = {
    "haproxy": "HAProxy (docker-socket-proxy's rules)",
    "socketproxy": "wollomatic socket-proxy (Go)",
    "cetusguard": "cetusguard (Go)",
}


def haproxy_config(listen: str, daemon: str) -> str:
    """An HAProxy configuration with docker-socket-proxy's documented behaviour:
    GET allowed on the enabled sections (here ping, version, info, containers
    list), every other request denied with 403, keep-alive on both sides,
    HTTP request logging (to stdout here, discarded as a container's would be
    collected), generous timeouts for streams."""
    return f"""global
    log stdout format raw local0 info
    maxconn 4000

defaults
    mode http
    log global
    option httplog
    option dontlognull
    timeout connect 10s
    timeout client 10m
    timeout server 10m
    timeout http-request 10s

frontend docker
    bind unix@{listen} mode 600
    http-request deny deny_status 403 unless METH_GET
    http-request allow if {{ path,url_dec -m reg -i {ALLOWED_PATHS} }}
    http-request deny deny_status 403
    default_backend dockerd

backend dockerd
    server dockerd unix@{daemon}
"""


@dataclass
class Peer:
    side: str
    sock: str
    process: subprocess.Popen[bytes]


def _commands(work: Path, daemon: str) -> dict[str, tuple[list[str], Callable[[], None]] | str]:
    """For each peer: its command line and a setup step, or why it is absent."""
    out: dict[str, tuple[list[str], Callable[[], None]] | str] = {}
    haproxy = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None)
    cfg = work / "haproxy.cfg"
    if haproxy:
        sock = str(work / "haproxy.sock")
        out["haproxy"] = ([haproxy, "-db", "-f", str(cfg)],
                          lambda: cfg.write_text(haproxy_config(sock, daemon)))
    else:
        out["haproxy"] = "haproxy not installed (apt-get install haproxy)"
    binary = PEERS_DIR / "socket-proxy"
    if os.access(binary, os.X_OK):
        out["socketproxy"] = ([
            str(binary), f"-socketpath={daemon}",
            f"-proxysocketendpoint={work / 'socketproxy.sock'}",
            f"-allowGET={ALLOWED_PATHS}", "-allowHEAD=^(/v[0-9.]+)?/_ping$",
        ], lambda: None)
    else:
        out["socketproxy"] = f"{binary} not built (see benchmarks/_peers.py)"
    binary = PEERS_DIR / "cetusguard"
    if os.access(binary, os.X_OK):
        out["cetusguard"] = ([
            str(binary), f"-backend-addr=unix://{daemon}",
            f"-frontend-addr=unix://{work / 'cetusguard.sock'}",
            "-rules=GET %API_PREFIX_CONTAINERS%/json",
        ], lambda: None)
    else:
        out["cetusguard"] = f"{binary} not built (see benchmarks/_peers.py)"
    return out


def start_peers(
    work: Path, daemon: str, wait_ping: Callable[[str, float, Callable[[], bool]], None],
    terminate: Callable[[subprocess.Popen[bytes]], None], notes: list[str],
) -> list[Peer]:
    """Start every peer that is present, in front of ``daemon``; note the others.

    ``wait_ping(sock, deadline, alive)`` waits for a peer to answer /_ping;
    ``terminate`` is registered by the caller for each process it gets back
    (the processes are returned even when they fail to come up, so the caller
    can stop them).
    """
    work.mkdir(parents=True, exist_ok=True)
    peers = []
    for side, plan in _commands(work, daemon).items():
        if isinstance(plan, str):
            notes.append(f"{NAMES[side]}: skipped, {plan}")
            continue
        argv, setup = plan
        setup()
        sock = str(work / f"{side}.sock")
        log = open(work / f"{side}.log", "ab")  # noqa: SIM115 (closed below)
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       cwd=work)
        finally:
            log.close()
        try:
            wait_ping(sock, time.monotonic() + 30, lambda p=process: p.poll() is None)
        except (RuntimeError, TimeoutError, OSError) as exc:
            terminate(process)
            tail = (work / f"{side}.log").read_text(errors="replace")[-500:]
            notes.append(f"{NAMES[side]}: skipped, did not answer /_ping ({exc}): {tail}")
            continue
        peers.append(Peer(side, sock, process))
    return peers

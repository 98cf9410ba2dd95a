"""Benchmark: dockgate's own CPU per exchange, without sockets or a daemon.

Drives the real ``ProxyServerProtocol`` in process, the way the reactor would:
request bytes in from the client, the daemon's response bytes in from the
upstream connection, over in-memory transports.  What this measures is the
Python work dockgate adds per request (parsing, admission, decision, audit
record, response framing), apart from the system calls and the event loop
that ``run.py`` measures with the real thing.  Run it before and after a
change to the request path: its figures are steady on a busy machine.

    python benchmarks/bench_exchange.py [-n 20000] [--profile]

Prints microseconds per exchange for GET /_ping and for GET /containers/json
(a 20 KB chunked response), with the null audit sink, with the audit log
at metadata level, and with the audit log and the access log's line as
``dockgate serve`` runs by default.  The figures are CPU time of this process.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport

from dockgate.audit.sink import JsonLinesAudit, NullAudit
from dockgate.policy import load_policy
from dockgate.proxy.protocol import ProxyServerFactory
from dockgate.proxy.settings import ProxySettings
from dockgate.service.metrics import MetricsAudit
from dockgate.service.oplog import AccessLog

ROOT = Path(__file__).resolve().parent.parent
PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: Docker-Client/28.5.2 (linux)\r\n\r\n"
PING_OK = (
    b"HTTP/1.1 200 OK\r\nApi-Version: 1.51\r\nBuilder-Version: 2\r\n"
    b"Cache-Control: no-cache, no-store, must-revalidate\r\nContent-Length: 2\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nDocker-Experimental: false\r\nOstype: linux\r\n"
    b"Pragma: no-cache\r\nServer: Docker/28.5.2 (linux)\r\nDate: Thu, 26 Nov 2026 22:00:00 GMT\r\n"
    b"\r\nOK"
)
LIST = (
    b"GET /v1.51/containers/json?all=1 HTTP/1.1\r\nHost: docker\r\n"
    b"User-Agent: Docker-Client/28.5.2 (linux)\r\n\r\n"
)
_BODY = b"[" + b",".join([b'{"Id":"%064d","Names":["/c%d"],"State":"created"}' % (i, i)
                          for i in range(230)]) + b"]\n"
LIST_OK_HEAD = (
    b"HTTP/1.1 200 OK\r\nApi-Version: 1.51\r\nContent-Type: application/json\r\n"
    b"Docker-Experimental: false\r\nOstype: linux\r\nServer: Docker/28.5.2 (linux)\r\n"
    b"Date: Thu, 26 Nov 2026 22:00:00 GMT\r\nTransfer-Encoding: chunked\r\n\r\n"
)
"""The daemon's answer arrives as three reads, as measured on a real one."""
LIST_OK = [LIST_OK_HEAD + b"%x\r\n" % len(_BODY) + _BODY[:4000], _BODY[4000:], b"\r\n0\r\n\r\n"]


class _Endpoint:
    """Hands out upstream connections on in-memory transports."""

    def connect(self, factory: Any) -> Any:
        proto = factory.buildProtocol(None)
        proto.makeConnection(StringTransport())
        return succeed(proto)


def turn_end(later: list[Any]) -> None:
    """Run what was deferred to the end of this reactor turn."""
    while later:
        calls = later[:]
        later.clear()
        for call in calls:
            call()


def connection(audit: Any) -> tuple[Any, list[Any]]:
    """A protocol on one keep-alive connection with ``audit``, and the list of
    what its sinks defer to the end of a reactor turn."""
    policy = load_policy(str(ROOT / "policies/privileged.yaml"))
    settings = ProxySettings(upstream=_Endpoint(), policy=lambda: policy,  # type: ignore[arg-type]
                             audit=audit)
    factory = ProxyServerFactory(settings, "unix:/run/dockgate.sock", MemoryReactorClock())
    proto = factory.buildProtocol(None)
    proto.makeConnection(StringTransport())
    # As in the service (tap's AuditUpkeep): records held during a reactor
    # turn are written at its end; here the request and the response each
    # stand for a turn.
    later: list[Any] = []
    for sink in (audit, getattr(audit, "inner", None), getattr(audit, "access", None)):
        if isinstance(sink, JsonLinesAudit | AccessLog):
            sink.defer = later.append
    return proto, later


def exchanges(proto: Any, later: list[Any], request: bytes, replies: list[bytes], n: int) -> None:
    """``n`` exchanges on ``proto``'s connection, one request and its answer at a time."""
    client = proto.transport
    for _ in range(n):
        proto.dataReceived(request)
        turn_end(later)  # the decision's record is written, the request forwarded
        upstream = proto.exchange.upstream
        for reply in replies:
            upstream.dataReceived(reply)
        turn_end(later)
        upstream.transport.clear()
        client.clear()


def per_exchange_us(audit: Any, request: bytes, replies: list[bytes], n: int) -> float:
    """Median-of-3 microseconds of this process's CPU per exchange on one keep-alive
    connection (CPU, not wall time: steady while other processes share the machine)."""
    proto, later = connection(audit)
    rounds = []
    for _ in range(3):
        start = time.process_time()
        exchanges(proto, later, request, replies, n)
        rounds.append((time.process_time() - start) / n * 1e6)
    return sorted(rounds)[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--profile", action="store_true", help="cProfile the audited ping")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("GET /_ping", PING, [PING_OK]), ("GET /containers/json", LIST, LIST_OK)]
        for label, request, replies in cases:
            null = per_exchange_us(NullAudit(), request, replies, args.n)
            sink = JsonLinesAudit(str(Path(tmp) / "audit.jsonl"), fsync="interval")
            audited = per_exchange_us(sink, request, replies, args.n)
            sink.close()
            # As ``dockgate serve`` runs by default: the access log's line too.
            with open(os.devnull, "w") as devnull:
                sink = JsonLinesAudit(str(Path(tmp) / "served.jsonl"), fsync="interval")
                served = per_exchange_us(MetricsAudit(sink, None, AccessLog(devnull)), request,
                                         replies, args.n)
                sink.close()
            print(f"{label}: {null:.1f} us per exchange without audit, "
                  f"{audited:.1f} us with the audit log (metadata), "
                  f"{served:.1f} us with the audit and access logs (as serve runs)")
        if args.profile:
            sink = JsonLinesAudit(str(Path(tmp) / "profile.jsonl"))
            profile = cProfile.Profile()
            profile.runcall(per_exchange_us, sink, PING, [PING_OK], args.n // 4)
            pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

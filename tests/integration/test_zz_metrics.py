"""The metrics of the session's dockgates agree with their audit logs.

Named to run after the rest of the client suite, so the counters it checks were
moved by every real client the suite drove (it also drives one run itself, so it
holds when run alone).
"""

from __future__ import annotations

import re
import time

import pytest
from support import unixhttp as http
from support.engines import IMAGE, Engine
from support.gate import DockgateProcess

pytestmark = pytest.mark.engine

_SAMPLE = re.compile(r"(\w+)(?:\{(.*)\})? (\S+)")


def samples(admin: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric ``name`` with its labels."""
    status, body = http.request(admin, "GET", "/metrics", timeout=10)
    assert status == 200
    out = []
    for line in body.decode().splitlines():
        m = _SAMPLE.fullmatch(line)
        if m and m.group(1) == name:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            out.append((labels, float(m.group(3))))
    return out


def test_metrics_agree_with_the_audit_log(engine: Engine, dockgate_process: DockgateProcess) -> None:
    """Every finished exchange in the audit log is counted once in /metrics, by endpoint."""
    engine.docker("run", "--rm", "--network", "none", IMAGE, "echo", "counted")
    admin = dockgate_process.admin
    deadline = time.monotonic() + 10
    while True:
        records = [
            r
            for r in dockgate_process.audit_records()
            if r.get("stage") in ("ResponseComplete", "SessionEnded")
        ]
        counted = samples(admin, "dockgate_requests_total")
        total = sum(v for _, v in counted)
        if total == len(records) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert total == len(records), (total, len(records))
    by_endpoint: dict[str, float] = {}
    for labels, value in counted:
        by_endpoint[labels["endpoint"]] = by_endpoint.get(labels["endpoint"], 0) + value
    expected: dict[str, int] = {}
    for r in records:
        expected[r.get("endpoint") or "none"] = expected.get(r.get("endpoint") or "none", 0) + 1
    assert by_endpoint == expected
    assert by_endpoint.get("container.create", 0) >= 1
    sessions = dict((lbl["endpoint"], v) for lbl, v in samples(admin, "dockgate_sessions_total"))
    assert sessions.get("container.attach", 0) >= 1
    spliced = dict((lbl["direction"], v) for lbl, v in samples(admin, "dockgate_spliced_bytes_total"))
    assert spliced.get("out", 0) > 0
    upstream = samples(admin, "dockgate_upstream_seconds_count")
    assert sum(v for _, v in upstream) > 0

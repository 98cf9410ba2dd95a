"""The suite's audit guard is not vacuous: real clients' requests reach the audit
log as allowed, and a refusal is recognised as one."""

from __future__ import annotations

import json
import time

import pytest
from support import gate, unixhttp
from support.engines import Engine
from support.gate import DockgateProcess

pytestmark = pytest.mark.engine


def test_cli_requests_are_audited_as_allowed(
    engine: Engine, dockgate_process: DockgateProcess
) -> None:
    """CLI requests through the suite's dockgate are audited as allowed records with time, peer,
    method, path, status and duration."""
    start = dockgate_process.audit_size()
    engine.docker("version")
    engine.docker("ps", "-a")
    deadline = time.monotonic() + 5
    while True:  # the record of the last request may land just after the response
        records = dockgate_process.audit_records(start)
        paths = [(r.get("method"), r.get("path", "").split("?")[0]) for r in records]
        if any(p.endswith("/containers/json") for _, p in paths) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert ("GET", "/_ping") in paths or ("HEAD", "/_ping") in paths, paths
    assert any(p.endswith("/version") for _, p in paths), paths
    assert any(p.endswith("/containers/json") for _, p in paths), paths
    for record in records:
        assert record["decision"] == "allow", record
        for key in ("time", "peer", "method", "path", "status", "duration"):
            assert key in record, (key, record)
    assert gate.refusals(records) == []


@pytest.mark.allow_refusals
def test_refusal_is_recognised(engine: Engine, dockgate_process: DockgateProcess) -> None:
    """A refused request is answered 400 with a dockgate message and is recognised as one refusal in
    the audit log (the suite's refusal guard can fail)."""
    start = dockgate_process.audit_size()
    status, body = unixhttp.request(
        dockgate_process.socket,
        "POST",
        "/v1.41/containers/create",
        body=json.dumps({"Image": 5}).encode(),
    )
    assert status == 400
    assert json.loads(body)["message"].startswith("dockgate:")
    refused = gate.refusals(dockgate_process.audit_records(start))
    # One request, recorded at each of its stages.
    assert len({r["id"] for r in refused}) == 1
    assert refused[0]["path"] == "/v1.41/containers/create"

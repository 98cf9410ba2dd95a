"""Metrics from audit events (MetricsAudit), and the admin resources."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock

from dockgate.audit.sink import NullAudit
from dockgate.model import AuditEvent, CanonicalRequest, Decision, Operation
from dockgate.service import tap
from dockgate.service.admin import parse_admin_listener
from dockgate.service.listeners import UnixListenerSpec
from dockgate.service.metrics import Metrics, MetricsAudit

PING = CanonicalRequest("GET", Operation("system.ping", "GET", "/_ping"), "/_ping")
ATTACH = CanonicalRequest(
    "POST", Operation("container.attach", "POST", "/containers/{id}/attach", hijack=True),
    "/containers/x/attach",
)


def event(stage: Any, request: CanonicalRequest | None = PING, **kw: Any) -> AuditEvent:
    kw.setdefault("decision", Decision("allow", "p"))
    return AuditEvent(stage=stage, id="e", time=0.0, listener="l", peer=None, method="GET",
                      raw_target="/_ping", request=request, **kw)


def value(metrics: Metrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


class Failing:
    """An inner sink whose every write fails (not a ``NullAudit`` subclass: the compiled
    class cannot be subclassed, setup.py)."""

    def record(self, event: AuditEvent) -> None:
        raise OSError("disk full")


def test_exchange_counted_once_with_latencies() -> None:
    """RequestDecided feeds the decision histogram; ResponseComplete counts the request
    by endpoint, decision and status and feeds the exchange histogram."""
    m = Metrics()
    sink = MetricsAudit(NullAudit(), m)
    sink.record(event("RequestDecided", duration=0.002))
    sink.record(event("ResponseComplete", status=200, duration=0.01))
    assert value(m, "dockgate_requests_total", endpoint="system.ping", decision="allow",
                 status="200") == 1
    assert value(m, "dockgate_decision_seconds_count") == 1
    assert value(m, "dockgate_exchange_seconds_count", endpoint="system.ping") == 1


def test_refusals_errors_and_upstream_errors() -> None:
    """Error reason codes are counted; upstream ones also as upstream errors; a 429
    for an unparsed request is counted under endpoint none."""
    m = Metrics()
    sink = MetricsAudit(NullAudit(), m)
    deny = Decision("deny", "p", "too-many-connections")
    sink.record(event("ResponseComplete", request=None, decision=deny, status=429,
                      error="too-many-connections"))
    sink.record(event("ResponseComplete", status=502, error="upstream-unavailable"))
    assert value(m, "dockgate_requests_total", endpoint="none", decision="deny",
                 status="429") == 1
    assert value(m, "dockgate_errors_total", reason="too-many-connections") == 1
    assert value(m, "dockgate_upstream_errors_total", reason="upstream-unavailable") == 1
    assert value(m, "dockgate_upstream_errors_total", reason="too-many-connections") == 0


def test_sessions_and_spliced_bytes() -> None:
    """SessionStarted opens a session, SessionEnded closes it and adds its bytes."""
    m = Metrics()
    sink = MetricsAudit(NullAudit(), m)
    sink.record(event("SessionStarted", request=ATTACH, status=101))
    assert value(m, "dockgate_sessions_open") == 1
    sink.record(event("SessionEnded", request=ATTACH, status=101, bytes_in=5, bytes_out=7))
    assert value(m, "dockgate_sessions_open") == 0
    assert value(m, "dockgate_spliced_bytes_total", direction="in") == 5
    assert value(m, "dockgate_spliced_bytes_total", direction="out") == 7
    assert value(m, "dockgate_sessions_total", endpoint="container.attach") == 1


def test_audit_failure_counted_and_reraised() -> None:
    """A failing inner sink still raises (fail closed) and is counted."""
    m = Metrics()
    sink = MetricsAudit(Failing(), m)
    with pytest.raises(OSError):
        sink.record(event("RequestDecided"))
    assert value(m, "dockgate_audit_write_failures_total") == 1


def test_open_connections_read_from_factories() -> None:
    """Open connections are the factories' own counts, read at scrape time."""

    class Factory:
        open_connections = 3

    m = Metrics()
    m.add_listener("unix:/a", Factory())
    assert value(m, "dockgate_open_connections", listener="unix:/a") == 3
    assert b"dockgate_open_connections" in m.exposition()


def test_delegates_upkeep() -> None:
    """tick, reopen, close, recording and session_data reach the inner sink."""
    calls: list[str] = []

    class Inner:  # every call MetricsAudit passes on (a compiled NullAudit takes no subclass)
        def tick(self) -> None:
            calls.append("tick")

        def reopen(self) -> None:
            calls.append("reopen")

        def close(self) -> None:
            calls.append("close")

        def session_data(self, event_id: str, direction: str, data: bytes) -> None:
            calls.append("data")

        def recording(self, event_id: str) -> bool:
            return event_id == "e"

    sink = MetricsAudit(Inner(), Metrics())
    sink.tick()
    sink.reopen()
    sink.session_data("e", "in", b"x")
    sink.close()
    assert calls == ["tick", "reopen", "data", "close"]
    assert sink.recording("e") is True and sink.recording("f") is False


@pytest.mark.parametrize("text", ["tcp:9323", "tcp:9323:interface=127.0.0.2",
                                  "tcp6:9323", "unix:/run/dg-admin.sock"])
def test_admin_listener_local(text: str) -> None:
    """Loopback TCP and unix sockets are accepted (unix at mode 0660 by default)."""
    spec = parse_admin_listener(text)
    if isinstance(spec, UnixListenerSpec):
        assert spec.mode == 0o660


@pytest.mark.parametrize("text", ["tcp:9323:interface=0.0.0.0", "tcp:9323:interface=::",
                                  "tls:9323:cert=a:key=b:ca=c"])
def test_admin_listener_not_on_network(text: str) -> None:
    """The admin endpoint never listens on a network interface."""
    with pytest.raises(ValueError):
        parse_admin_listener(text)


def test_make_service_with_admin(tmp_path: Any) -> None:
    """--admin-listen adds the admin site and wraps the audit sink; reloads are counted."""
    options = tap.Options()
    options.parseOptions(["--listen", f"unix:{tmp_path}/a.sock", "--admin-listen", "tcp:9323"])
    root = tap.makeService(options, MemoryReactorClock())
    names = [c.name for c in root]
    assert "admin:tcp:9323" in names
    proxy = next(c for c in root if c.name == f"unix:{tmp_path}/a.sock")
    assert isinstance(proxy.factory.settings.audit, MetricsAudit)
    metrics = proxy.factory.settings.audit.metrics
    hangup = next(c for c in root if isinstance(c, tap.ReloadOnHangup))
    hangup._reload()
    assert value(metrics, "dockgate_policy_reloads_total", result="ok") == 1

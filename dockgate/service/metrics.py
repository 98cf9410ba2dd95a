"""Prometheus metrics, fed by the audit events the protocol already emits.

Every exchange passes through the audit sink exactly once per stage, with the
endpoint, decision, status, durations and byte counts the metrics need.  So
the metrics are an ``AuditSink`` wrapper (``MetricsAudit``) around the real
sink rather than counters sprinkled through the protocol: the protocol stays
unchanged, and what is counted is by construction what is audited.

The durations are named for what they measure: ``RequestDecided``'s duration
is the time from the start of the request to its decision (parsing,
validation, policy, audit record); ``upstream_seconds`` the time from
forwarding to the daemon's response head; ``ResponseComplete``'s duration the
whole exchange.

Each ``Metrics`` has its own registry, so several proxies (tests) in one
process do not share counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dockgate.model import AuditEvent, record_now

if TYPE_CHECKING:
    from dockgate.service.oplog import AccessLog

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsAudit"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

UPSTREAM_ERRORS = frozenset({"upstream-unavailable", "upstream-timeout"})
"""Error reason codes that mean the daemon failed us, not the client."""

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            10.0, 30.0, 60.0, 300.0)


class _Connections(Collector):
    """Open client connections per listener, read from the factories when scraped.

    Read at scrape time instead of counted on the side, because the factory's
    own count is the one the 429 limit is enforced against.
    """

    def __init__(self, factories: Callable[[], Iterable[tuple[str, Any]]]) -> None:
        self._factories = factories

    def collect(self) -> Iterator[Metric]:
        """One sample per listener."""
        family = GaugeMetricFamily(
            "dockgate_open_connections", "Client connections open now, per listener.",
            labels=["listener"],
        )
        for name, factory in self._factories():
            family.add_metric([name], float(getattr(factory, "open_connections", 0)))
        yield family


class Metrics:
    """dockgate's metrics and the registry they are exposed from."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._factories: list[tuple[str, Any]] = []
        r = self.registry
        self.requests = Counter(
            "dockgate_requests", "Finished exchanges, by endpoint id, decision and status.",
            ["endpoint", "decision", "status"], registry=r,
        )
        self.decision_seconds = Histogram(
            "dockgate_decision_seconds",
            "Seconds from the start of a request to its decision (parse, validate, policy, "
            "audit record).", buckets=_BUCKETS, registry=r,
        )
        self.exchange_seconds = Histogram(
            "dockgate_exchange_seconds",
            "Seconds from the start of a request to the end of its response, upstream "
            "included (hijacked sessions excluded).", ["endpoint"], buckets=_BUCKETS,
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "dockgate_upstream_seconds",
            "Seconds from forwarding a request to the daemon's response head.",
            ["endpoint"], buckets=_BUCKETS, registry=r,
        )
        self.sessions_open = Gauge(
            "dockgate_sessions_open", "Hijacked sessions (attach, exec) open now.", registry=r,
        )
        self.sessions = Counter(
            "dockgate_sessions", "Hijacked sessions started, by endpoint id.", ["endpoint"],
            registry=r,
        )
        self.spliced_bytes = Counter(
            "dockgate_spliced_bytes",
            "Bytes carried by hijacked sessions once they ended; direction in is from the "
            "client.", ["direction"], registry=r,
        )
        self.errors = Counter(
            "dockgate_errors",
            "Exchanges dockgate answered itself or cut short, by reason code "
            "(too-many-connections is a 429).", ["reason"], registry=r,
        )
        self.upstream_errors = Counter(
            "dockgate_upstream_errors",
            "Exchanges that failed because the daemon could not be reached or did not answer "
            "in time.", ["reason"], registry=r,
        )
        self.audit_failures = Counter(
            "dockgate_audit_write_failures", "Audit events the audit sink failed to record.",
            registry=r,
        )
        self.policy_reloads = Counter(
            "dockgate_policy_reloads", "Policy reloads (SIGHUP), by result (ok or failed).",
            ["result"], registry=r,
        )
        self.registry.register(_Connections(lambda: list(self._factories)))

    def add_listener(self, name: str, factory: Any) -> None:
        """Report ``factory.open_connections`` as the open connections of ``name``."""
        self._factories.append((name, factory))

    def observe(self, event: AuditEvent) -> None:
        """Update the metrics for one audit event."""
        endpoint = event.request.endpoint.id if event.request is not None else "none"
        if event.stage == "RequestDecided":
            self.decision_seconds.observe(event.duration)
            return
        if event.stage == "SessionStarted":
            self.sessions_open.inc()
            self.sessions.labels(endpoint).inc()
            return
        decision = event.decision.verdict if event.decision is not None else "none"
        status = str(event.status) if event.status is not None else "none"
        self.requests.labels(endpoint, decision, status).inc()
        if event.stage == "SessionEnded":
            self.sessions_open.dec()
            self.spliced_bytes.labels("in").inc(event.bytes_in)
            self.spliced_bytes.labels("out").inc(event.bytes_out)
        else:
            self.exchange_seconds.labels(endpoint).observe(event.duration)
            if event.upstream_seconds is not None:
                self.upstream_seconds.labels(endpoint).observe(event.upstream_seconds)
        if event.error:
            self.errors.labels(event.error).inc()
            if event.error in UPSTREAM_ERRORS:
                self.upstream_errors.labels(event.error).inc()

    def reloaded(self, ok: bool) -> None:
        """Count one policy reload."""
        self.policy_reloads.labels("ok" if ok else "failed").inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


class MetricsAudit:
    """An audit sink that updates ``metrics`` and hands everything on to ``inner``.

    Metrics are updated whether or not ``inner`` could record the event: a
    request refused because the audit log failed still happened.  A failure
    of ``inner`` is counted and re-raised, so fail-closed behaviour is kept.
    """

    def __init__(self, inner: Any, metrics: Metrics | None,
                 access: Callable[[AuditEvent], None] | None = None) -> None:
        self.inner = inner
        self._inner_then: Callable[[AuditEvent, Callable[[bool], None]], None] | None = \
            getattr(inner, "record_then", None)
        """``inner.record_then``, looked up once (``record_then`` runs for every request)."""
        self.metrics = metrics
        self.access = access
        """Also sees every event, after the inner sink (the access log, ``oplog.AccessLog``)."""
        # Imported here: the module itself stays free of Twisted (the core fence).
        from dockgate.service.oplog import AccessLog  # noqa: PLC0415

        self._log: AccessLog | None = access if isinstance(access, AccessLog) else None
        """``access`` when it is the access log: a call the compiled module makes directly."""
        self._access: Callable[[AuditEvent], None] | None = \
            None if self._log is not None else getattr(access, "record", access)
        """Any other ``access``, as a bound method when it has one (cheaper to call)."""

    def record(self, event: AuditEvent) -> None:
        """Count ``event``, then record it with the inner sink."""
        metrics = self.metrics
        try:
            self.inner.record(event)
        except Exception:
            if metrics is not None:
                metrics.audit_failures.inc()
            raise
        finally:
            self._observed(event)

    def record_then(self, event: AuditEvent, then: Callable[[bool], None]) -> None:
        """``record`` for a decision whose request waits for it (see
        ``JsonLinesAudit.record_then``): counted now, ``then(written)`` when the
        inner sink has written it.  Never raises."""
        inner = self._inner_then
        if inner is None:
            record_now(self.record, event, then)
            return
        metrics = self.metrics
        try:
            inner(event, then if metrics is None else self._counting(then))
        finally:
            self._observed(event)

    def _observed(self, event: AuditEvent) -> None:
        """After the inner sink, whatever it did: count ``event`` and pass it to the
        access log (the access log directly, a call the compiled module makes itself)."""
        if self.metrics is not None:
            self.metrics.observe(event)
        if self._log is not None:
            self._log.record(event)
        elif self._access is not None:
            self._access(event)

    def _counting(self, then: Callable[[bool], None]) -> Callable[[bool], None]:
        """``then``, counting an audit failure first when the record was not written."""
        metrics = self.metrics
        assert metrics is not None

        def done(written: bool) -> None:
            if not written:
                metrics.audit_failures.inc()
            then(written)

        return done

    def session_data(self, event_id: str, direction: str, data: bytes) -> None:
        """Pass session bytes on; a failure to record them is an audit failure."""
        try:
            self.inner.session_data(event_id, direction, data)
        except Exception:
            if self.metrics is not None:
                self.metrics.audit_failures.inc()
            raise

    def recording(self, event_id: str) -> bool:
        """Whether the inner sink records this session."""
        return bool(self.inner.recording(event_id))

    def write(self, record: Any) -> None:
        """Pass a prebuilt record on."""
        self.inner.write(record)

    def tick(self) -> None:
        """Pass periodic upkeep on."""
        self.inner.tick()

    def reopen(self) -> None:
        """Pass reopen (SIGHUP, SIGUSR1) on."""
        self.inner.reopen()

    def close(self) -> None:
        """Pass close on."""
        self.inner.close()

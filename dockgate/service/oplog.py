"""Operational logging: where dockgate's own messages go when it runs as ``dockgate serve``.

Operational logs (started, listening, reloaded, upstream unreachable) are a
separate stream from the audit log: they go through ``twisted.logger`` to
standard error, as text for people or JSON Lines for collectors.  Under
``twistd``, twistd's own log options decide instead; this module is not used.

The JSON form is written by a small observer here rather than Twisted's
``jsonFileLogObserver``, whose records carry every internal ``log_*`` key
(and, by default, RFC 7464 separators): collectors get five stable fields.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, Literal, TextIO

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
    globalLogBeginner,
    textFileLogObserver,
)
from zope.interface import implementer

from dockgate.audit.schema import principal_of
from dockgate.model import AuditEvent, whole_micros

__all__ = [
    "FINAL_STAGES", "LOG_FORMATS", "AccessLog", "json_lines_observer", "millis", "start_logging",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("text", "json")


def millis(seconds: float) -> str:
    """``seconds`` in milliseconds to one decimal, halves rounded up (``0.00125`` is
    ``1.3``): the access line's duration.  Integer arithmetic on the whole
    microseconds (a duration is rounded to them already) rather than a float
    format, which costs more than the rest of the line; a value outside a day,
    negative or not finite is formatted as it is."""
    if not 0.0 <= seconds < 86400.0:
        return f"{seconds * 1000:.1f}"
    tenths = (whole_micros(seconds) + 50) // 100
    return f"{tenths // 10}.{tenths % 10}"


@implementer(ILogObserver)
class _JsonLines:
    """Writes each event as one JSON object per line (``json_lines_observer``).

    A class declaring its interface rather than a function marked with
    ``directlyProvides``: a compiled module's functions (``setup.py``) take
    no attributes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: LogEvent) -> None:
        record: dict[str, object] = {
            "time": datetime.fromtimestamp(event.get("log_time", 0.0), UTC).isoformat(),
            "level": getattr(event.get("log_level"), "name", None),
            "namespace": event.get("log_namespace"),
            "message": formatEvent(event),
        }
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        self.stream.write(json.dumps(record, ensure_ascii=True, default=str) + "\n")
        self.stream.flush()


def json_lines_observer(stream: TextIO) -> ILogObserver:
    """Return an observer writing each event as one JSON object per line.

    Fields: ``time`` (ISO 8601, UTC), ``level``, ``namespace``, ``message``
    (the formatted text) and, for logged failures, ``traceback``.
    """
    return ILogObserver(_JsonLines(stream))


_PER_CONNECTION_NOISE: Final = frozenset({
    "Starting factory {factory!r}", "Stopping factory {factory!r}"})
"""Twisted logs these at info for every outgoing connection's one-shot factory;
at dockgate's volume they would drown everything else."""


@implementer(ILogFilterPredicate)
class _DropFactoryChatter:
    """Drops Twisted's per-factory start/stop lines below debug level."""

    def __call__(self, event: LogEvent) -> object:
        if event.get("log_format") in _PER_CONNECTION_NOISE:
            return PredicateResult.no
        return PredicateResult.maybe


def start_logging(
    stream: TextIO, log_format: LogFormat = "text", level: LogLevel = LogLevel.info
) -> None:
    """Send ``twisted.logger`` events at ``level`` and above to ``stream``.

    Standard output and error are not redirected into the log, so a crash
    before the reactor runs still prints a plain traceback.
    """
    observer = (
        ILogObserver(textFileLogObserver(stream))
        if log_format == "text"
        else json_lines_observer(stream)
    )
    predicates = [ILogFilterPredicate(LogLevelFilterPredicate(level))]
    if level > LogLevel.debug:
        predicates.append(ILogFilterPredicate(_DropFactoryChatter()))
    filtered = ILogObserver(FilteringLogObserver(observer, predicates))
    globalLogBeginner.beginLoggingTo([filtered], redirectStandardIO=False)


FINAL_STAGES: Final = frozenset({"ResponseComplete", "SessionEnded"})
"""The stage that ends each exchange: one access line per request, written then."""

_PATH_LIMIT: Final = 200
_access_log = Logger(namespace="dockgate.access")


def caller_of(event: AuditEvent) -> str:
    """The caller as the access log names it: the principal (``bob``), else the address."""
    peer = event.peer
    return (principal_of(peer) or peer.address) if peer is not None else "-"


class AccessLog:
    """One line per finished request on the operational log: who did what, and how it ended.

    Written from the audit event of the exchange's last stage, which the proxy
    builds anyway, so a request costs one string format and a list append;
    the lines of a reactor turn are written together (``defer``), as the
    audit log writes its held records.  The path is shown without its query,
    which may hold secrets (``buildargs``, a URL with a password); the audit
    log keeps the query, masked.

    Under ``dockgate serve`` lines go straight to the operational log's
    stream in its format (``text`` or ``json``); with no stream (``twistd``)
    they go through ``twisted.logger`` to whatever twistd logs to.
    """

    def __init__(self, stream: TextIO | None = None, log_format: LogFormat = "text") -> None:
        self.stream = stream
        self.json = log_format == "json"
        self.defer: Callable[[Callable[[], None]], object] | None = None
        self._pending: list[str] = []
        self._second = -1
        self._stamp = self._utc = ""

    def record(self, event: AuditEvent) -> None:
        """Log ``event`` if it ends its exchange (also the instance's ``__call__``;
        a bound method is the cheaper of the two to call, see ``MetricsAudit``)."""
        if event.stage not in FINAL_STAGES:
            return
        known = event.known  # a request seen before (``proxy.fastpath``): its fixed part
        if known is not None and known.request is event.request \
                and known.decision is event.decision:
            fixed = known.access
            if fixed is None:
                fixed = known.access = self._prefix(event)
        else:
            fixed = self._prefix(event)
        prefix, caller, verdict, rule = fixed
        outcome = (f"status={event.status if event.status is not None else '-'} "
                   f"duration={millis(event.duration)}ms")
        if self.stream is None:
            _access_log.info("{message}", message=prefix + outcome)
            return
        if self.json:
            line = self._json_line(event, prefix + outcome, caller, verdict, rule)
        else:  # the usual line: one format, around the second's time stamp
            now = event.time  # the exchange's end, a moment ago
            if int(now) != self._second:
                self._new_second(now)
            line = f"{self._stamp} [dockgate.access#info] {prefix}{outcome}\n"
        self._pending.append(line)
        if len(self._pending) == 1:
            if self.defer is None:
                self.flush()
            else:
                self.defer(self.flush)

    def __call__(self, event: AuditEvent) -> None:
        """``record`` (an alias assigned in the class body does not compile, ``setup.py``)."""
        self.record(event)

    @staticmethod
    def _prefix(event: AuditEvent) -> tuple[str, str, str, str]:
        """The line up to its status, and the caller, verdict and rule in it.

        A function of the request, decision, peer, method and tenant alone:
        ``__call__`` keeps it in a repeated request's fast-path entry
        (``proxy.fastpath``), so such a request's line is one format.
        """
        request, decision = event.request, event.decision
        path = request.path if request is not None else event.raw_target.partition("?")[0]
        if request is not None and request.version:
            path = f"/v{request.version}{path}"
        if len(path) > _PATH_LIMIT or not path.isprintable():
            path = path[:_PATH_LIMIT].encode("unicode_escape").decode("ascii")
        caller = caller_of(event)
        verdict = decision.verdict if decision is not None else "-"
        rule = (decision.rule or "default") if decision is not None else "-"
        tenant = f" tenant={event.tenant}" if event.tenant else ""
        return (f"{event.method} {path} caller={caller}{tenant} decision={verdict} rule={rule} ",
                caller, verdict, rule)

    def _new_second(self, now: float) -> None:
        """Format the time stamps of ``now``'s second (formatting a time costs more
        than the rest of a line, and lines mostly come many to a second)."""
        self._second = int(now)
        self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now))
        self._utc = datetime.fromtimestamp(self._second, UTC).isoformat()

    def _json_line(self, event: AuditEvent, message: str, caller: str, verdict: str,
                   rule: str) -> str:
        now = event.time
        if int(now) != self._second:
            self._new_second(now)
        return json.dumps({
            "time": self._utc, "level": "info",
            "namespace": "dockgate.access", "message": message, "method": event.method,
            "path": message.split(" ", 2)[1], "caller": caller, "tenant": event.tenant,
            "decision": verdict, "rule": rule, "status": event.status,
            "duration": event.duration,
        }, ensure_ascii=True) + "\n"

    def flush(self) -> None:
        """Write the lines held so far."""
        lines, self._pending = self._pending, []
        if lines and self.stream is not None:
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except (OSError, ValueError):
                pass  # standard error is gone; the audit log is the record

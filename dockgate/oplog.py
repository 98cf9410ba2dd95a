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
from datetime import UTC, datetime
from typing import Literal, TextIO

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
    globalLogBeginner,
    textFileLogObserver,
)
from zope.interface import directlyProvides

__all__ = ["LOG_FORMATS", "json_lines_observer", "start_logging"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")


def json_lines_observer(stream: TextIO) -> ILogObserver:
    """Return an observer writing each event as one JSON object per line.

    Fields: ``time`` (ISO 8601, UTC), ``level``, ``namespace``, ``message``
    (the formatted text) and, for logged failures, ``traceback``.
    """

    def observe(event: LogEvent) -> None:
        record: dict[str, object] = {
            "time": datetime.fromtimestamp(event.get("log_time", 0.0), UTC).isoformat(),
            "level": getattr(event.get("log_level"), "name", None),
            "namespace": event.get("log_namespace"),
            "message": formatEvent(event),
        }
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        stream.write(json.dumps(record, ensure_ascii=True, default=str) + "\n")
        stream.flush()

    directlyProvides(observe, ILogObserver)
    return ILogObserver(observe)


_PER_CONNECTION_NOISE = frozenset({"Starting factory {factory!r}", "Stopping factory {factory!r}"})
"""Twisted logs these at info for every outgoing connection's one-shot factory;
at dockgate's volume they would drown everything else."""


def _drop_factory_chatter(event: LogEvent) -> object:
    """Drop Twisted's per-factory start/stop lines below debug level."""
    if event.get("log_format") in _PER_CONNECTION_NOISE:
        return PredicateResult.no
    return PredicateResult.maybe


directlyProvides(_drop_factory_chatter, ILogFilterPredicate)


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
        predicates.append(ILogFilterPredicate(_drop_factory_chatter))
    filtered = ILogObserver(FilteringLogObserver(observer, predicates))
    globalLogBeginner.beginLoggingTo([filtered], redirectStandardIO=False)

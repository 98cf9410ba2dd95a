"""Audit sinks: the chained JSON Lines audit log, and the sink used when there is none.

``JsonLinesAudit`` is what the protocol's ``AuditSink`` calls.  For each
event it asks the audit policy for a level, builds the versioned record
(``audit.schema``), appends it to the chained file (``audit.writer``) and
manages session recordings (``audit.session``).  It is synchronous on
purpose: the protocol emits ``RequestDecided`` before forwarding an allowed
request and before sending a refusal, and this call returns only once the
line is in the kernel (and on disk, under ``fsync always``), so nothing is
forwarded that is not on record.

Failure modes:

* ``fail-closed`` (the default): ``record`` raises when the record cannot be
  written, so the protocol refuses the request (503) and forwards nothing;
  ``session_data`` raises too, which ends a session whose bytes cannot be
  recorded (Teleport's ``strict``);
* ``fail-open``: the failure is logged (at most every few seconds, with a
  count) and the request carries on unrecorded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from twisted.logger import Logger

from dockgate.audit.rules import AuditPolicy, Choice, load_audit_policy
from dockgate.audit.schema import build_record, encode_plain, encode_record, plain_members
from dockgate.audit.session import FORMAT, SessionWriter, terminal_size
from dockgate.audit.writer import ChainedLog
from dockgate.model import AuditEvent, CanonicalRequest, record_now
from dockgate.policy.source import PolicyError

__all__ = ["FailureMode", "JsonLinesAudit", "NullAudit", "encode_record"]

log: Final = Logger()

FailureMode = Literal["closed", "open"]
_REPORT_EVERY: Final = 10.0
_SESSION_TARGETS: Final = {"container.attach": "container",
                           "container.attach.ws": "container", "exec.start": "exec"}
"""What a recorded session's ``{id}`` (its header's ``container``) names: resizes of
the same thing apply to it."""
_RESIZES: Final = {"container.resize": "container", "exec.resize": "exec"}


class JsonLinesAudit:
    """The audit log: policy, record building, the chained file and session recordings.

    Args:
        path: the log file, ``-`` for standard output.
        policy: the audit policy (levels, sessions, redaction patterns).
        policy_path: where ``policy`` came from; re-read on ``reopen`` (SIGHUP).
        sessions_dir: where session recordings go (needed only when a rule
            records sessions).
        failure: ``closed`` or ``open`` (see the module docstring).
        log_options: passed to ``ChainedLog`` (fsync, rotation, key, copies).
    """

    def __init__(
        self,
        path: str,
        *,
        policy: AuditPolicy | None = None,
        policy_path: str | None = None,
        sessions_dir: str | None = None,
        failure: FailureMode = "closed",
        **log_options: Any,
    ) -> None:
        self.path = path
        self.policy = policy or AuditPolicy()
        self.policy_path = policy_path
        self.sessions_dir = sessions_dir
        self.failure = failure
        self.log = ChainedLog(path, on_copy_error=self._copy_failed, **log_options)
        self._sessions: dict[str, SessionWriter] = {}
        self._failures = 0
        self._reported = 0.0
        self.failing: str | None = None
        """Why the last record could not be written, or None once one was (readiness)."""
        self._defer: Callable[[Callable[[], None]], object] | None = None
        self._flush_due = False
        self._waiting: list[Callable[[bool], None]] = []
        """The requests decided in this reactor turn, waiting for their records' write."""

    @property
    def defer(self) -> Callable[[Callable[[], None]], object] | None:
        """Set by the service: runs a function once the current reactor turn is done.

        With it, ``ResponseComplete`` records (nothing waits on them) are
        written together, once per turn or with the next decision record,
        instead of one ``write(2)`` each, and the file is checked for
        deletion once per turn (``ChainedLog.per_turn``).
        """
        return self._defer

    @defer.setter
    def defer(self, value: Callable[[Callable[[], None]], object] | None) -> None:
        self._defer = value
        self.log.per_turn = value is not None

    # -- AuditSink ----------------------------------------------------------

    def record(self, event: AuditEvent) -> None:
        """Record ``event`` at the level its rule chooses; raise (fail closed) if it cannot."""
        try:
            self._record(event)
        except Exception as e:
            self.failing = str(e) or type(e).__name__
            self._failed(f"audit record ({event.stage} {event.id})", e)
            if self.failure == "closed":
                raise
        else:
            self.failing = None

    def record_then(self, event: AuditEvent, then: Callable[[bool], None]) -> None:
        """Record a decision whose request waits for it; ``then(True)`` once it is written.

        ``then(False)`` when it cannot be written and the log fails closed
        (the request is refused).  Under the service (``defer``) the record
        is chained now and written at the end of the reactor turn with the
        turn's other records, in one ``write(2)`` for every request decided
        in that turn, and ``then`` is called after that write; else it is
        written now.  Never raises.
        """
        if self._defer is None:
            record_now(self.record, event, then)
            return
        try:
            self._record(event, hold=True)
        except Exception as e:
            self.failing = str(e) or type(e).__name__
            self._failed(f"audit record ({event.stage} {event.id})", e)
            then(self.failure == "open")
            return
        self._waiting.append(then)
        if not self._flush_due:  # a record at level none schedules nothing itself
            self._flush_due = True
            self._defer(self._flush)

    def _record(self, event: AuditEvent, hold: bool = False) -> None:
        hold = hold or event.stage == "ResponseComplete"  # nothing waits on those
        known = event.known  # a request seen before (``proxy.fastpath``)
        if known is not None and known.request is event.request \
                and known.decision is event.decision:
            slot = known.audit.get(event.stage)
            if slot is None or slot[0] is not self.policy:  # new, or a reloaded audit policy
                slot = known.audit[event.stage] = self._slot(event)
            members = slot[2]
            if members is not None:
                # Neither a session nor a resize, at a level that writes: only what
                # varies from one record of the request to the next is formatted.
                record = encode_plain(event, members)
                if record is not None:
                    if self._defer is None:
                        self.log.append(record)
                        return
                    if not self._flush_due:  # ``_write``, inline: twice per request
                        self._flush_due = True
                        self._defer(self._flush)
                    self.log.append(record, hold=hold)
                    return
        self._record_in_full(event, hold)

    def _slot(self, event: AuditEvent) -> tuple[AuditPolicy, Choice, str | None]:
        """What a known request's records at ``event``'s stage share: the audit policy
        they follow, its choice, and the encoded fixed members (None: the full path,
        for a level that writes nothing and for resizes, which touch recordings)."""
        policy = self.policy
        request, decision = event.request, event.decision
        assert request is not None and decision is not None
        choice = policy.choose(request.endpoint.id, decision.verdict)
        members = None
        if choice.level != "none" and request.endpoint.id not in _RESIZES:
            members = plain_members(event, choice.level, policy.redactor)
        return policy, choice, members

    def _record_in_full(self, event: AuditEvent, hold: bool) -> None:
        request, decision = event.request, event.decision
        policy = self.policy
        choice = policy.choose(
            request.endpoint.id if request else None, decision.verdict if decision else None
        )
        extra: dict[str, Any] | None = None
        if event.stage == "RequestDecided":
            if choice.session and request is not None and request.endpoint.hijack and (
                decision is not None and decision.allowed
            ):
                extra = {"session": self._open_session(event)}
        elif event.stage == "SessionStarted":
            writer = self._sessions.get(event.id)
            if writer is not None:
                extra = {"session": {"file": writer.path, "format": FORMAT}}
        else:
            writer = self._sessions.pop(event.id, None)
            if request is not None and request.endpoint.id in _RESIZES and (
                isinstance(event.status, int) and 200 <= event.status < 300
            ):
                self._resized(request)
            if writer is not None:
                if event.stage == "SessionEnded":
                    extra = {"session": writer.close()}
                else:  # the exchange ended without becoming a session
                    writer.discard()
        if choice.level == "none":
            return
        self._write(build_record(event, choice.level, policy.redactor, extra), hold)

    def _write(self, record: dict[str, Any] | str, hold: bool) -> None:
        """Append ``record``: now, or (``hold``, under ``defer``) with the turn's write."""
        defer = self._defer
        if defer is None:
            self.log.append(record)
            return
        if not self._flush_due:
            self._flush_due = True
            defer(self._flush)
        self.log.append(record, hold=hold)

    def _flush(self) -> None:
        """The reactor turn is over: write the records held during it, then let the
        requests decided during it go (or refuse them if their records were lost)."""
        self._flush_due = False
        waiting, self._waiting = self._waiting, []
        try:
            self.log.end_turn()
        except Exception as e:
            self.failing = str(e) or type(e).__name__
            self._failed(f"audit record (RequestDecided of {len(waiting)} request(s))"
                         if waiting else "audit records (ResponseComplete)", e)
            written = self.failure == "open"
        else:
            written = True
            if waiting:
                self.failing = None
        for then in waiting:
            try:
                then(written)
            except Exception:  # one request's failure must not hold up the others
                log.failure("forwarding a request after its audit record failed")

    def _open_session(self, event: AuditEvent) -> dict[str, Any]:
        if self.sessions_dir is None:
            raise OSError("session recording is on but no session directory is configured")
        request = event.request
        assert request is not None
        body = request.body if isinstance(request.body, dict) else {}
        header = {
            "v": 1,
            "request_id": event.id,
            "start": event.time,
            "endpoint": request.endpoint.id,
            "target": request.target,
            "container": request.params.get("id"),
            "tty": body.get("Tty") if isinstance(body.get("Tty"), bool) else None,
            "console_size": body.get("ConsoleSize"),
        }
        path = os.path.join(self.sessions_dir, f"{event.id}.dgrec")
        self._sessions[event.id] = SessionWriter(path, header)
        return {"file": path, "format": FORMAT}

    def _resized(self, request: CanonicalRequest) -> None:
        """A resize the daemon accepted: record it in the sessions of what it named.

        Matched by the exact id string of the path, as clients use the same
        reference (id or name) for attaching and resizing.
        """
        kind, ident = _RESIZES[request.endpoint.id], request.params.get("id")
        query = dict(request.query)
        size = terminal_size(f"{query.get('w', '')}x{query.get('h', '')}".encode())
        if size is None or ident is None:
            return
        for writer in self._sessions.values():
            header = writer.header
            endpoint = header.get("endpoint")
            if header.get("container") != ident or _SESSION_TARGETS.get(str(endpoint)) != kind:
                continue
            try:
                writer.resize(*size)
            except Exception as e:  # the next chunk meets the same error and decides
                self._failed(f"session recording {writer.path} (resize)", e)

    def recording(self, event_id: str) -> bool:
        """Whether the session of ``event_id`` is being recorded."""
        return event_id in self._sessions

    def session_data(self, event_id: str, direction: str, data: bytes) -> None:
        """Append spliced bytes to the session's recording, if it is being recorded."""
        writer = self._sessions.get(event_id)
        if writer is None:
            return
        try:
            writer.chunk(direction, data)
        except Exception as e:
            if self.failure == "closed":
                raise
            self._sessions.pop(event_id, None)
            self._failed(f"session recording {writer.path} (recording stopped)", e)

    # -- compatibility and upkeep ------------------------------------------

    def write(self, record: Mapping[str, Any]) -> None:
        """Append an already built record (chain fields are added)."""
        self.log.append(dict(record))

    def tick(self) -> None:
        """Periodic upkeep (fsync under ``interval``, timed checkpoints and rotation)."""
        try:
            self.log.tick()
        except Exception as e:
            self._failed("audit log upkeep", e)

    def reopen(self) -> None:
        """SIGHUP/SIGUSR1: re-read the audit policy (keeping the old one if invalid), reopen."""
        if self.policy_path is not None:
            try:
                self.policy = load_audit_policy(self.policy_path)
            except (PolicyError, OSError) as e:
                log.error("Audit policy reload from {path} failed; keeping the old one:\n{why}",
                          path=self.policy_path, why=str(e))
        self.log.reopen()

    def close(self) -> None:
        """Close open recordings, seal and close the log."""
        for writer in self._sessions.values():
            writer.close()
        self._sessions.clear()
        self.log.close()

    def recheck(self) -> str | None:
        """Why the log still cannot be written, or None; clears ``failing`` when it could be.

        For readiness: a proxy taken out of rotation while its log failed gets
        no requests that could show the log works again, so the file is
        probed instead (opened for appending, or its directory when the file
        is gone, and its filesystem has room).  Nothing is written.
        """
        if self.failing is None or self.path == "-":
            return self.failing
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            directory = os.path.dirname(os.path.abspath(self.path))
            if not os.access(directory, os.W_OK | os.X_OK):
                return self.failing
            fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return self.failing
        try:
            if os.fstatvfs(fd).f_bavail == 0:
                return self.failing
        finally:
            os.close(fd)
        self.failing = None
        return None

    def _failed(self, what: str, error: Exception) -> None:
        self._failures += 1
        now = time.monotonic()
        if now - self._reported >= _REPORT_EVERY:
            self._reported = now
            log.error("{mode}: {what} could not be written ({error}); {count} audit "
                      "failure(s) so far; {consequence}",
                      mode=f"fail-{self.failure}", what=what, error=str(error),
                      count=self._failures,
                      consequence="requests are refused with 503 until it can be written"
                      if self.failure == "closed" else "traffic continues unrecorded")

    def _copy_failed(self, error: Exception) -> None:
        self._failed("audit copy (syslog/journald)", error)


class NullAudit:
    """The sink when no audit log is configured: records are dropped."""

    def write(self, record: Mapping[str, Any]) -> None:
        """Drop ``record``."""

    def record(self, event: AuditEvent) -> None:
        """Drop ``event``."""

    def recording(self, event_id: str) -> bool:
        """Nothing is recorded."""
        return False

    def session_data(self, event_id: str, direction: str, data: bytes) -> None:
        """Drop session bytes."""

    def tick(self) -> None:
        """Nothing to maintain."""

    def reopen(self) -> None:
        """Nothing to reopen."""

    def close(self) -> None:
        """Nothing to close."""

"""Audit sinks: the JSON Lines file writer and the sink used when there is no audit log.

The protocol builds one record (a flat mapping) per request; a sink only
serialises and stores it.  The file format is the contract with whatever
reads it (a SIEM, ``jq``, ``audit replay``), so it is kept deliberately
boring:

* one JSON object per line, UTF-8, ASCII-only (``ensure_ascii``), so a
  hostile path, header or reason cannot add a line, a record or a terminal
  escape: newlines, control characters and U+2028/2029 all become ``\\u``
  escapes;
* each record reaches the file in a single ``write(2)`` on a descriptor
  opened with ``O_APPEND``, so records from concurrent writers (a second
  dockgate, a restart) never interleave within a line and nothing is lost
  to a buffer if the process dies;
* values that JSON cannot carry (NaN, infinities, arbitrary objects) are
  an error, not a silently altered record.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from dockgate.model import AuditEvent

__all__ = ["JsonLinesAudit", "NullAudit", "encode_record", "flat_record"]

_FILE_MODE = 0o640
"""Audit records name callers and what they did; not for every local user."""


def _to_json(value: object) -> object:
    """Serialise the few non-JSON types records may hold without losing information.

    Bytes (a raw path or header the protocol could not decode) keep every byte
    through Latin-1; anything else is refused so that a record never carries a
    ``repr`` nobody can parse back.
    """
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"audit record value of type {type(value).__name__} is not serialisable")


def encode_record(record: Mapping[str, Any]) -> bytes:
    """Return ``record`` as one JSON Lines record: ASCII JSON and a final newline.

    Raises:
        TypeError, ValueError: the record holds a value JSON cannot represent.
    """
    text = json.dumps(
        record, ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=_to_json
    )
    return text.encode("ascii") + b"\n"


def flat_record(event: AuditEvent) -> dict[str, Any]:
    """The flat, metadata-level record of one audit event."""
    request = event.request
    decision = event.decision
    peer = event.peer
    record: dict[str, Any] = {
        "time": event.time,
        "stage": event.stage,
        "id": event.id,
        "listener": event.listener,
        "peer": peer.address if peer else None,
        "uid": peer.uid if peer else None,
        "method": event.method,
        "path": request.target if request else event.raw_target,
        "endpoint": request.endpoint.id if request else None,
        "status": event.status,
        "decision": decision.verdict if decision else None,
        "policy": decision.policy if decision else None,
        "rule": decision.rule if decision else None,
        "reason": decision.reason if decision else None,
        "duration": event.duration,
        "bytes_in": event.bytes_in,
        "bytes_out": event.bytes_out,
    }
    if event.error:
        record["error"] = event.error
    if event.exit_code is not None:
        record["exit_code"] = event.exit_code
    return record


class JsonLinesAudit:
    """Appends audit records to a file, one JSON object per line.

    ``path`` ``-`` means standard output (for containers whose logs are
    collected from it); ``reopen`` is then a no-op.

    Invariant: every record written is complete on disk (in the kernel's
    page cache) when ``write`` returns, and occupies exactly one line.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = self._open()

    def _open(self) -> int:
        if self.path == "-":
            return sys.stdout.fileno()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        return os.open(self.path, flags, _FILE_MODE)

    def write(self, record: Mapping[str, Any]) -> None:
        """Append ``record``; raise if it cannot be serialised or written in full."""
        line = encode_record(record)
        written = os.write(self._fd, line)
        if written != len(line):
            # A short write on a regular file means a full disk; say so rather
            # than leave a torn record behind a "successful" call.
            raise OSError(f"audit log {self.path}: short write ({written} of {len(line)} bytes)")

    def record(self, event: AuditEvent) -> None:
        """Append the flat record of ``event``."""
        self.write(flat_record(event))

    def session_data(self, event_id: str, direction: str, data: bytes) -> None:
        """Session bytes are not recorded by this writer."""

    def reopen(self) -> None:
        """Start writing to whatever file is now at ``path`` (after logrotate moved ours).

        The new file is opened before the old descriptor is closed, so a
        failure leaves the writer on the old file rather than on none.
        """
        if self.path == "-":
            return
        fd = self._open()
        old, self._fd = self._fd, fd
        os.close(old)

    def close(self) -> None:
        """Release the file."""
        if self.path != "-" and self._fd >= 0:
            os.close(self._fd)
        self._fd = -1


class NullAudit:
    """The sink when no audit log is configured: records are dropped."""

    def write(self, record: Mapping[str, Any]) -> None:
        """Drop ``record``."""

    def record(self, event: AuditEvent) -> None:
        """Drop ``event``."""

    def session_data(self, event_id: str, direction: str, data: bytes) -> None:
        """Drop session bytes."""

    def reopen(self) -> None:
        """Nothing to reopen."""

    def close(self) -> None:
        """Nothing to close."""

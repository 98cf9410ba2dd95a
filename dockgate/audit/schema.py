"""The audit record schema (version 1): one ``AuditEvent`` in, one JSON-ready mapping out.

Pure: no I/O, no clock.  The record layout is the contract with everything
that reads the log (``dockgate audit``, a SIEM, ``jq``); docs/audit.md
documents it field by field and ``SCHEMA_VERSION`` changes whenever a field
changes meaning.  The chain fields (``v``, ``seq``, ``prev``) are added by the
writer, which alone knows the previous line.

Bounded by construction: every free-text field is clipped to ``MAX_TEXT``
characters and a request body larger than ``MAX_BODY`` bytes (encoded) is
replaced by its size and digest, so one hostile request cannot make a record
that a line-oriented reader chokes on.  Escaping of newlines and control
characters is the encoder's job (``encode_record``), so no value can end a
line or start another record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any, Final, Literal

from dockgate.audit.redact import TEXT_LIMIT, Redactor, clip, recorded_target
from dockgate.model import AuditEvent, Peer, whole_micros

__all__ = [
    "MAX_BODY",
    "MAX_TEXT",
    "SCHEMA_VERSION",
    "Level",
    "build_record",
    "clip",
    "encode_plain",
    "encode_record",
    "iso_time",
    "plain_members",
    "seconds_text",
]

SCHEMA_VERSION: Final = 1
MAX_TEXT: Final = TEXT_LIMIT
"""Longest free-text value (path, reason, header) kept whole, in characters."""
MAX_BODY: Final = 64 * 1024
"""Largest canonical body (encoded JSON bytes) kept in a ``request``-level record."""

Level = Literal["none", "metadata", "request"]
LEVELS: Final[tuple[Level, ...]] = ("none", "metadata", "request")


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

    ASCII-only output turns newlines, control characters and U+2028/2029 into
    ``\\u`` escapes, so a value can neither add a line nor put a terminal
    escape in front of someone running ``tail``.

    Raises:
        TypeError, ValueError: the record holds a value JSON cannot represent.
    """
    return _ENCODER.encode(record).encode("ascii") + b"\n"


_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=_to_json
)
"""Built once: ``json.dumps`` with options builds a new encoder for every record."""

_second: Final[list[Any]] = [None, ""]
"""The whole second ``iso_time`` formatted last, and its text up to the fraction's
dot (one record after another mostly falls in the same second, and ``strftime``
is the costly part)."""


def iso_time(seconds: float) -> str:
    """Unix time as ISO 8601 UTC with microseconds (``2026-01-02T03:04:05.678901Z``)."""
    whole = int(seconds // 1)
    micros = whole_micros(seconds - whole)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    if _second[0] != whole:
        stamp = dt.datetime.fromtimestamp(whole, dt.UTC)
        _second[:] = [whole, stamp.strftime("%Y-%m-%dT%H:%M:%S.")]
    # The six digits as str(1000000 + micros) ends: cheaper than a format spec.
    return f"{_second[1]}{str(1_000_000 + micros)[1:]}Z"


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("latin-1")
    return clip(str(value))


def _peer(peer: Peer | None) -> dict[str, Any] | None:
    if peer is None:
        return None
    return {
        "transport": peer.transport,
        "address": _text(peer.address),
        "uid": peer.uid,
        "gid": peer.gid,
        "pid": peer.pid,
    }


def principal_of(peer: Peer | None) -> str | None:
    """Who acted, as one filterable string.

    The certificate's CN when the connection had one; else the user name of
    the unix uid the kernel vouched for (``uid:N`` when it has no name);
    else nothing (a plain TCP caller has no identity, only an address).
    One naming across transports: the user ``bob`` and the certificate
    ``CN=bob`` are both ``bob``, as a tenants file names them.
    """
    if peer is None:
        return None
    if peer.principal:
        return _text(peer.principal)
    if peer.uid is not None:
        return _text(peer.user) if peer.user else f"uid:{peer.uid}"
    return None


def _body(event: AuditEvent, redactor: Redactor, masked: list[str],
          erased: list[str]) -> Any:
    request = event.request
    assert request is not None
    body = redactor.body(request.endpoint.id, request.body, ("request", "body"), masked, erased)
    if body is None:
        return None
    encoded = encode_record(body)
    if len(encoded) <= MAX_BODY:
        return body
    return {
        "dockgate_truncated": True,
        "size": len(encoded),
        "sha256": hashlib.sha256(encoded).hexdigest(),
    }


def _bounded(value: Any) -> Any:
    """A JSON-ready copy of a ``build`` member with every text clipped (see ``MAX_TEXT``)."""
    if isinstance(value, Mapping):
        return {clip(str(k)): _bounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_bounded(v) for v in items]
    if isinstance(value, str):
        return clip(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return clip(str(value))


def build_record(
    event: AuditEvent,
    level: Level,
    redactor: Redactor,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of ``event`` at ``level`` (``metadata`` or ``request``).

    ``extra`` adds writer-side members (the session file reference).  The
    ``error`` key is present only when dockgate answered or ended the
    exchange itself, so readers can treat its presence as "not a normal
    outcome".
    """
    request = event.request
    decision = event.decision
    masked: list[str] = []
    erased: list[str] = []
    if request is not None:
        query = redactor.query(request.query, masked)
        path = recorded_target(request.version, request.path, query)
    else:
        path = _text(event.raw_target) or ""
    record: dict[str, Any] = {
        "id": event.id,
        "record_id": f"{event.id}/{event.stage}",
        "stage": event.stage,
        "time": iso_time(event.time),
        "level": level,
        "principal": principal_of(event.peer),
        "tenant": _text(event.tenant) if event.tenant else None,
        "peer": _peer(event.peer),
        "listener": _text(event.listener),
        "method": _text(event.method),
        "path": path if request is not None else clip(path),
        "endpoint": request.endpoint.id if request else None,
        "api_version": request.version if request else None,
        "decision": decision.verdict if decision else None,
        "policy": _text(decision.policy) if decision else None,
        "rules": [_text(decision.rule)] if decision and decision.rule else [],
        "reasons": [_text(decision.reason)] if decision and decision.reason else [],
        "status": event.status,
        "duration": event.duration,
        "bytes_in": event.bytes_in,
        "bytes_out": event.bytes_out,
    }
    if decision is not None and decision.warnings:
        record["warnings"] = [_text(w) for w in decision.warnings]
    if decision is not None and decision.sets:
        record["set"] = [_text(s) for s in decision.sets]
    if event.error:
        record["error"] = _text(event.error)
    if event.exit_code is not None:
        record["exit_code"] = event.exit_code
    if event.build is not None:
        record["build"] = _bounded(event.build)
    if level == "request" and request is not None and event.stage == "RequestDecided":
        headers = redactor.headers(request.headers, ("request", "headers"), erased)
        record["request"] = {
            "headers": {k: clip(v) for k, v in headers.items()},
            "body": _body(event, redactor, masked, erased),
        }
    if masked:
        record["masked"] = masked
    if erased:
        record["erased"] = erased
    if extra:
        record.update(extra)
    return record



_LEAD: Final = ("id", "record_id", "stage", "time")
_MIDDLE: Final = (
    "level", "principal", "tenant", "peer", "listener", "method", "path", "endpoint",
    "api_version", "decision", "policy", "rules", "reasons",
)
_TAIL: Final = ("status", "duration", "bytes_in", "bytes_out")
_PLAIN: Final = (*_LEAD, *_MIDDLE, *_TAIL)
"""The members, in order, of a record with nothing unusual in it."""


def plain_members(event: AuditEvent, level: Level, redactor: Redactor) -> str | None:
    """The encoded members from ``level`` to ``reasons`` of ``event``'s record, if it is
    a plain one; else None (the record takes ``build_record``).

    Most records differ from the previous record of the same request only in
    id, time, status, duration and byte counts: the rest (who, where, which
    endpoint, what was decided and why) is a function of the request, the
    decision, the peer, the listener, the method, the tenant and the redactor.
    The audit sink keeps this part in the request's fast-path entry
    (``proxy.fastpath``), so each further record costs one string formatting
    (``encode_plain``).  The bytes are exactly ``encode_record``'s for the same
    record (tested).  None for what makes every record of the request unusual:
    no request, decision or peer, a body, a record with members beyond the
    plain ones (warnings, a policy's ``set``, masked values, the ``request``
    level's headers and body).
    """
    request = event.request
    if (
        request is None
        or event.decision is None
        or event.peer is None
        or request.body is not None
        or not event.stage.isidentifier()
    ):
        return None
    record = build_record(event, level, redactor)
    if tuple(record) != _PLAIN:
        return None
    encoded = _ENCODER.encode({name: record[name] for name in _MIDDLE})
    return encoded[1:-1]


def seconds_text(seconds: float) -> str:
    """``repr(seconds)``, as JSON writes a float, from integers when ``seconds`` is a
    whole number of microseconds above 0 and below 10**9 (durations are rounded to
    microseconds): the shortest text that reads back as that float is then its
    digits without trailing zeros (in repr's exponent form below 0.0001), and a
    float's own repr costs more than the rest of a record.  Anything else is the
    float's repr."""
    if 0.0 < seconds < 1e9:
        micros = whole_micros(seconds)
        if micros / 1e6 == seconds:
            if micros >= 100:
                fraction = str(1_000_000 + micros % 1_000_000)[1:].rstrip("0") or "0"
                return f"{micros // 1_000_000}.{fraction}"
            if micros >= 10:
                tenth = micros % 10
                return f"{micros // 10}.{tenth}e-05" if tenth else f"{micros // 10}e-05"
            return f"{micros}e-06"
    return float.__repr__(seconds)


def encode_plain(event: AuditEvent, members: str) -> str | None:
    """``event``'s record encoded (no braces, no newline) around ``members``
    (``plain_members`` of the same request, decision, peer and redactor), or None
    when this record has something unusual (an error, an exit code, build facts,
    a value that is not a plain number) and takes the general path.

    Text, not bytes: the audit log puts the chain members in front of it and
    encodes the line once (``ChainedLog.append``).  ASCII whenever ``event.stage``
    is (the members and the id are escaped to ASCII)."""
    duration, status, bytes_in, bytes_out = (
        event.duration, event.status, event.bytes_in, event.bytes_out)
    if (
        event.error
        or event.exit_code is not None
        or event.build is not None
        or type(duration) is not float
        or duration - duration != 0.0  # not finite (inf - inf and nan are nan)
        or (status is not None and type(status) is not int)
        or type(bytes_in) is not int
        or type(bytes_out) is not int
    ):
        return None
    ident = encode_basestring_ascii(event.id)
    stage = event.stage
    # Exact ints format without a format spec (str's fast path); a float's repr
    # is what the JSON encoder writes.
    return (
        f'"id":{ident},"record_id":{ident[:-1]}/{stage}","stage":"{stage}",'
        f'"time":"{iso_time(event.time)}",{members},"status":'
        f'{"null" if status is None else status},'
        f'"duration":{seconds_text(duration)},"bytes_in":{bytes_in},'
        f'"bytes_out":{bytes_out}'
    )

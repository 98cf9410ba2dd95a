"""Reviewing audit logs: filters, summaries and policy replay over parsed records.

Pure functions over record dicts (the CLI reads the files).  Replay rebuilds
the canonical request from what the record holds: at ``request`` level the
canonical body is there (with secrets masked), at ``metadata`` level only the
method, path and query are, so a policy that inspects bodies is re-run
without them; every replayed result says which of the two it was.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from dockgate.model import CanonicalRequest, Peer
from dockgate.policy.decision import Policy, decide

__all__ = [
    "Filter",
    "Replayed",
    "parse_time",
    "printable",
    "reconstruct",
    "replay",
    "summarise",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""The control characters of ASCII text (``printable``'s other branch escapes the rest)."""
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def printable(value: object) -> str:
    """``value`` as text safe for a terminal: control characters become escapes.

    Records keep hostile strings intact (JSON escapes them); this is the
    other half, so that ``audit show`` cannot be used to send terminal
    escape sequences to the reviewer.
    """
    text = "-" if value is None else str(value)
    if not text.isascii():
        # Beyond ASCII, every invisible or reordering character is escaped too:
        # bidi controls (U+202E would turn the rest of a row around), zero
        # widths, separators, surrogates, private and unassigned code points.
        return "".join(_escape(ch) if unicodedata.category(ch) in _HIDDEN else ch
                       for ch in text)
    return _CONTROL.sub(lambda m: _escape(m.group()), text)


_HIDDEN: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories ``printable`` escapes: controls, format characters
(bidi, zero width), surrogates, private use, unassigned, line and paragraph
separators."""


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 256:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def parse_time(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """An ISO 8601 time (``2026-01-02``, ``2026-01-02T03:04:05Z``) or an age (``90m``, ``2d``).

    Times without a zone are UTC, as every record's are.
    """
    match = _RELATIVE.match(text.strip())
    if match:
        base = now or dt.datetime.now(dt.UTC)
        return base - dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def record_time(record: dict[str, Any]) -> dt.datetime | None:
    """The record's time, or None if it has none that parses."""
    value = record.get("time")
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class Filter:
    """What ``audit show`` and ``audit summary`` keep; None means "any"."""

    tenant: str | None = None
    principal: str | None = None
    uid: int | None = None
    decision: str | None = None
    endpoint: str | None = None
    stage: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    text: str | None = None
    checkpoints: bool = False

    def keep(self, record: dict[str, Any], line: str = "") -> bool:
        """Whether ``record`` (whose raw line is ``line``) passes every condition."""
        if record.get("stage") == "Checkpoint" and not self.checkpoints:
            return False
        checks = (
            self.tenant is None or record.get("tenant") == self.tenant,
            self.principal is None or fnmatch.fnmatchcase(str(record.get("principal")),
                                                          self.principal),
            self.uid is None or (record.get("peer") or {}).get("uid") == self.uid,
            self.decision is None or record.get("decision") == self.decision,
            self.endpoint is None or fnmatch.fnmatchcase(str(record.get("endpoint")),
                                                         self.endpoint),
            self.stage is None or record.get("stage") == self.stage,
            self.text is None or self.text in line or self.text in json.dumps(record),
        )
        if not all(checks):
            return False
        if self.since is None and self.until is None:
            return True
        when = record_time(record)
        if when is None:
            return False
        return (self.since is None or when >= self.since) and (
            self.until is None or when <= self.until)


def summarise(records: Iterable[dict[str, Any]]) -> list[tuple[str, str, str, int]]:
    """Requests counted by (tenant, decision, endpoint), most frequent first.

    Counts ``RequestDecided`` records only, so each request counts once
    whatever stages follow it.
    """
    counts: Counter[tuple[str, str, str]] = Counter()
    for r in records:
        if r.get("stage") == "RequestDecided":
            counts[(str(r.get("tenant") or "-"), str(r.get("decision")),
                    str(r.get("endpoint") or "-"))] += 1
    return [(*key, n) for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def reconstruct(record: dict[str, Any]) -> tuple[CanonicalRequest, Peer, str]:
    """The canonical request and peer a ``RequestDecided`` record describes, and its basis.

    The basis is ``request`` (the recorded canonical body was used),
    ``metadata`` (method, path and query only, and the request had no body,
    so nothing is missing) or ``unknown`` (the request had a JSON body that
    was not recorded: a decision without it would be a guess).

    Raises:
        ValueError: the record cannot be re-admitted (no endpoint, or a body
            that the current admission refuses).
    """
    from dockgate.admission.admit import ApiContext, admit_body, admit_head  # noqa: PLC0415
    from dockgate.errors import DockgateError  # noqa: PLC0415

    if not record.get("endpoint"):
        raise ValueError("refused before routing; there is no request to re-decide")
    version = record.get("api_version")
    ctx = ApiContext(daemon_version=version) if isinstance(version, str) else ApiContext()
    method = str(record.get("method"))
    target = str(record.get("path")).encode("latin-1")
    body = (record.get("request") or {}).get("body")
    headers = [(b"content-type", b"application/json")] if body is not None else []
    try:
        request = admit_head(method, target, headers, ctx)
        basis = "metadata"
        if body is None and request.endpoint.body == "json" and record.get("bytes_in") != 0:
            basis = "unknown"
        elif body is not None and request.endpoint.body == "json":
            if isinstance(body, dict) and body.get("dockgate_truncated"):
                raise ValueError("the recorded body was too large and was not kept")
            request = admit_body(request, json.dumps(body).encode(), ctx)
            basis = "request"
    except DockgateError as e:
        raise ValueError(f"not admissible now: {e.message}") from None
    raw_peer = record.get("peer") or {}
    principal = record.get("principal")
    peer = Peer(
        listener=str(record.get("listener")),
        transport=raw_peer.get("transport", "unix"),
        address=str(raw_peer.get("address")),
        pid=raw_peer.get("pid"),
        uid=raw_peer.get("uid"),
        gid=raw_peer.get("gid"),
        principal=principal if isinstance(principal, str)
        and raw_peer.get("transport") == "tls" else None,
        user=principal if isinstance(principal, str) and raw_peer.get("transport") == "unix"
        and not principal.startswith("uid:") else None,
    )
    return request, peer, basis


@dataclass(frozen=True)
class Replayed:
    """One request re-decided: what was decided then, what would be now, and on what basis.

    ``after`` is ``unknown`` when the record lacks what the decision needs
    (the body, at metadata level): replay says so rather than guessing.
    """

    record: dict[str, Any]
    before: str
    after: str
    basis: str
    rule: str | None
    reason: str

    @property
    def change(self) -> str | None:
        """``allowed->denied``, ``denied->allowed``, or None when the outcome holds."""
        was, now = self.before != "deny", self.after != "deny"
        if was == now or self.after == "unknown":
            return None
        return "allowed->denied" if was else "denied->allowed"


def _policy_decided(record: dict[str, Any]) -> bool:
    """Whether the recorded outcome came from the policy (not from admission or I/O)."""
    if record.get("stage") != "RequestDecided":
        return False
    if record.get("decision") == "deny":
        return record.get("error") == "policy"
    return "error" not in record or record.get("error") is None


def replay(records: Iterable[dict[str, Any]], policy: Policy) -> Iterator[Replayed | str]:
    """Re-decide every policy-decided request; yield results, or a note for a skipped one."""
    for record in records:
        if not _policy_decided(record):
            continue
        try:
            request, peer, basis = reconstruct(record)
        except ValueError as e:
            yield f"{record.get('id')}: skipped: {e}"
            continue
        if basis == "unknown":
            yield Replayed(record, str(record.get("decision")), "unknown", basis, None,
                           "the request body was not recorded (audit level metadata)")
            continue
        decision = decide(policy, request, peer)
        yield Replayed(record, str(record.get("decision")), decision.verdict, basis,
                       decision.rule, decision.reason)

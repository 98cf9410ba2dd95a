"""The memories on the request path (``memo``): a repeated head, admission,
decision and audit record give exactly what the full path gives, refusals are
never remembered, and memory stays bounded."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support.doubles import AllowAll

from dockgate.admission.admit import ApiContext, admit_head, admit_head_memo
from dockgate.audit.redact import Redactor
from dockgate.audit.rules import AuditPolicy
from dockgate.audit.schema import RecordTemplates, build_record, encode_record
from dockgate.audit.writer import ChainedLog
from dockgate.errors import BadRequest, NotFound
from dockgate.http1 import server as http1_server
from dockgate.http1.server import Request, RequestReader
from dockgate.memo import IdentityMemo, Memo
from dockgate.model import AuditEvent, CanonicalRequest, Decision, Peer
from dockgate.policy.decision import decide_memo

PEER = Peer("unix:/run/g.sock", "unix", "unix:pid=42", pid=42, uid=1000, gid=1000)
TCP = Peer("tcp:2375", "tcp", "127.0.0.1:5000")
ALLOW = Decision("allow", "privileged", None, "privileged profile allows all")
DENY = Decision("deny", "restricted", "no-privileged", "HostConfig.Privileged is \u201ctrue\u201d")
CTX = ApiContext(daemon_version="1.51")
LIST = b"GET /v1.51/containers/json?all=1 HTTP/1.1\r\nHost: d\r\nUser-Agent: cli\r\n\r\n"


def test_memo_is_bounded() -> None:
    """A Memo never holds more than its size and keeps the newest entries."""
    memo: Memo[int, int] = Memo(3)
    for i in range(10):
        memo.put(i, i * i)
    assert len(memo) <= 3 and memo.get(9) == 81 and memo.get(0) is None


def test_identity_memo_needs_the_same_object() -> None:
    """An IdentityMemo answers only for the very object stored (an equal one misses) and forgets
    everything when full."""
    memo: IdentityMemo[list[int], str] = IdentityMemo(2)
    a, b = [1], [1]
    memo.put(a, "a")
    assert memo.get(a) == "a" and memo.get(b) is None
    memo.put(b, "b")
    memo.put([2], "c")  # full: forgets everything before
    assert len(memo) == 1 and memo.get(a) is None


def read_head(data: bytes) -> Request:
    reader = RequestReader(max_head=65536)
    reader.feed(data)
    event = reader.next_event()
    assert isinstance(event, Request)
    return event


def test_repeated_head_is_parsed_once() -> None:
    """A request head seen again is answered with the same parsed object, with the right size and
    headers."""
    first, again = read_head(LIST), read_head(LIST)
    assert first is again and first.size == len(LIST)
    assert first.headers == ((b"host", b"d"), (b"user-agent", b"cli"))


def test_refused_head_is_refused_every_time() -> None:
    """A refused request head is refused again on a fresh reader: refusals are not remembered as
    good heads."""
    bad = b"GET /_ping HTTP/1.1\r\nHost: d\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
    for _ in range(2):
        reader = RequestReader(max_head=65536)
        reader.feed(bad)
        with pytest.raises(BadRequest):
            reader.next_event()


def test_large_heads_are_not_remembered() -> None:
    """Heads above the size cap are parsed afresh each time and never stored."""
    big = b"GET /_ping HTTP/1.1\r\nHost: d\r\nX-Pad: " + b"a" * 4096 + b"\r\n\r\n"
    assert read_head(big) is not read_head(big)
    assert http1_server._HEADS.get(big) is None


def test_admission_is_remembered_per_context() -> None:
    """Admission of a small head is remembered per API context and equals a fresh admission; a large
    head is admitted afresh and not marked small."""
    head = read_head(LIST)
    args = ("GET", head.target, head.headers)
    first = admit_head_memo(*args, CTX, head.size)
    assert admit_head_memo(*args, CTX, head.size) is first
    assert first == admit_head("GET", head.target, head.headers, CTX)
    assert first.small
    other = admit_head_memo(*args, ApiContext(daemon_version="1.41"), head.size)
    assert other is not first
    # Too large to remember: admitted afresh each time, equal all the same,
    # and not small, so nothing downstream remembers it either.
    big = admit_head_memo(*args, CTX, 1 << 20)
    assert big is not first and big == first and not big.small


def test_admission_refusals_are_not_remembered() -> None:
    """An admission refusal is raised again each time rather than remembered."""
    for _ in range(2):
        with pytest.raises(NotFound):
            admit_head_memo("GET", b"/nope", ((b"host", b"d"),), CTX, 30)


def test_decision_is_remembered_per_policy_object() -> None:
    """A decision is remembered per policy object, so a reloaded policy (a new object) decides
    again."""
    request = admit_head_memo("GET", b"/_ping", ((b"host", b"d"),), CTX, 30)
    policy = AllowAll()
    first = decide_memo(policy, request, PEER)
    assert decide_memo(policy, request, PEER) is first and first.allowed
    # A reloaded policy is another object: decided again.
    assert decide_memo(AllowAll(), request, PEER) is not first


def canonical(target: bytes) -> CanonicalRequest:
    """A request as admission remembers it (``small``)."""
    return replace(admit_head("GET", target, ((b"host", b"d"),), CTX), small=True)


def event(request: CanonicalRequest | None, **changes: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "stage": "ResponseComplete", "id": "0123abcd", "time": 1767225600.25,
        "listener": PEER.listener, "peer": PEER, "method": "GET",
        "raw_target": "/x", "request": request, "decision": ALLOW, "status": 200,
        "duration": 0.001234, "bytes_in": 0, "bytes_out": 31337,
    }
    fields.update(changes)
    return AuditEvent(**fields)


PLAIN = [
    {},
    {"stage": "RequestDecided", "status": None, "duration": 0.0, "bytes_out": 0},
    {"peer": TCP, "listener": TCP.listener},
    {"tenant": "team-a", "status": 404, "duration": 12.5},
    {"decision": DENY, "status": 403, "method": "DELETE"},
    {"time": 1767225600.9999996, "duration": 1e-06},
    {"duration": 123456.123456, "bytes_in": 10**12},
]


ODD_PEER = Peer("tcp:[::1]:2375 \u2028\"quoted\"", "tls", "[::1]:5000\n\x1b[31m",
                principal="CN=b\u00f6b\\admin", uid=0, gid=None, pid=None)
ODD = [
    {"peer": ODD_PEER, "listener": ODD_PEER.listener, "method": "M\u00c9TH\"OD\t"},
    {"tenant": "t\u00e9am \"a\"\r\n\x00", "decision": Decision(
        "deny", "p\u00f6licy\\", "r\u2029ule", "why \"not\"\n\x7f")},
    {"id": "\u00e9v\"ent\\/\x01", "status": -1, "duration": 5e-324, "bytes_in": -3},
    {"stage": "RequestDecided", "status": None, "duration": 1e300, "time": 0.0000004},
    {"time": 4102444799.9999999, "bytes_out": 2**70},
]


@pytest.mark.parametrize("changes", PLAIN + ODD)
def test_template_encodes_exactly_as_the_general_path(changes: dict[str, Any]) -> None:
    """Byte for byte what encode_record gives, the first time and when reused."""
    templates = RecordTemplates()
    redactor = Redactor()
    request = canonical(b"/v1.51/containers/json?all=1&filters=%7B%22label%22%3A%5B%5D%7D")
    changes = dict(changes)
    first = changes.pop("id", "0123abcd")
    for ident in (first, "4567ef01", first):
        ev = event(request, id=ident, **changes)
        got = templates.encode(ev, "metadata", redactor)
        want = encode_record(build_record(ev, "metadata", redactor))
        assert got is not None
        assert b"{" + got + b"}\n" == want


@pytest.mark.parametrize("changes", [
    {"error": "client disconnected"},
    {"exit_code": 0},
    {"request": None},
    {"decision": None},
    {"decision": Decision("warn", "p", "r", "why", warnings=("careful",))},
    {"duration": float("nan")},
    {"request": admit_head("GET", b"/_ping", ((b"host", b"d"),), CTX)},  # not small
])
def test_template_leaves_unusual_records_to_the_general_path(changes: dict[str, Any]) -> None:
    """Records with an error, exit code, no request or decision, warnings, a NaN duration or a
    request that is not small are not encoded by the template fast path."""
    changes = dict(changes)
    ev = event(changes.pop("request", canonical(b"/_ping")), **changes)
    assert RecordTemplates().encode(ev, "metadata", Redactor()) is None


def test_template_is_not_used_for_request_level_decisions() -> None:
    """Request-level records (with bodies) are never encoded by the template."""
    ev = event(canonical(b"/_ping"), stage="RequestDecided")
    assert RecordTemplates().encode(ev, "request", Redactor()) is None


def test_template_follows_a_new_redactor() -> None:
    """The audit policy's redactor is part of what the template depends on."""
    templates = RecordTemplates()
    ev = event(canonical(b"/_ping"))
    assert templates.encode(ev, "metadata", Redactor()) is not None
    assert templates.encode(ev, "metadata", AuditPolicy().redactor) is not None
    assert len(templates._memo) == 2


def test_chained_log_writes_encoded_members_as_it_writes_mappings(tmp_path: Path) -> None:
    """An encoded record chains and reads back exactly like its mapping."""
    ev = event(canonical(b"/_ping"))
    record = build_record(ev, "metadata", Redactor())
    fragment = RecordTemplates().encode(ev, "metadata", Redactor())
    assert fragment is not None
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path, body in ((a, record), (b, fragment)):
        log = ChainedLog(str(path), fsync="never")
        log.append(dict(record))
        log.append(body)
        log.close()
    assert a.read_bytes() == b.read_bytes()
    second = json.loads(b.read_bytes().splitlines()[1])
    assert second["seq"] == 2 and second["prev"] and second["bytes_out"] == 31337


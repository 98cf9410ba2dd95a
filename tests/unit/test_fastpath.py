"""The listener's fast path (``proxy.fastpath``): a request head seen before from
the same caller reuses the whole admission result; anything in its key that
changes, a body, or a decision resting on the daemon's state or the tenants
takes the full path; a policy reload forgets; the audit records and access log
lines of a reused result are the full path's, byte for byte but for id, time
and duration."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.doubles import AllowAll
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport

from dockgate.admission.admit import ApiContext, admit_head
from dockgate.admission.routes import ENDPOINTS
from dockgate.audit.redact import Redactor
from dockgate.audit.schema import (
    build_record,
    encode_plain,
    encode_record,
    plain_members,
    seconds_text,
)
from dockgate.audit.sink import JsonLinesAudit
from dockgate.audit.writer import ChainedLog
from dockgate.http1.server import Request, RequestReader
from dockgate.model import AuditEvent, CanonicalRequest, Decision, Peer
from dockgate.policy import DaemonFacts
from dockgate.policy.rules import compile_policy
from dockgate.policy.source import parse_yaml
from dockgate.proxy import protocol
from dockgate.proxy.fastpath import HEAD_LIMIT, FastPath
from dockgate.proxy.protocol import ProxyServerFactory
from dockgate.proxy.settings import ProxySettings
from dockgate.service.metrics import MetricsAudit
from dockgate.service.oplog import AccessLog
from dockgate.tenancy import TenantMap

PEER = Peer("unix:/run/g.sock", "unix", "unix:pid=42", pid=42, uid=1000, gid=1000)
TCP = Peer("tcp:2375", "tcp", "127.0.0.1:5000")
ALLOW = Decision("allow", "privileged", None, "privileged profile allows all")
DENY = Decision("deny", "restricted", "no-privileged", "HostConfig.Privileged is \u201ctrue\u201d")
CTX = ApiContext(daemon_version="1.51")
PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: Docker-Client/28.5.2 (linux)\r\n\r\n"
PING_OK = (b"HTTP/1.1 200 OK\r\nApi-Version: 1.51\r\nContent-Length: 2\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\nOK")
NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\nApi-Version: 1.51\r\nContent-Length: 29\r\n"
             b"Content-Type: application/json\r\n\r\n" + b'{"message":"no such object"}\n')


# -- the pure core ---------------------------------------------------------------------


def parsed(head: bytes) -> tuple[Request, bool, bool]:
    reader = RequestReader(max_head=65536)
    reader.feed(head)
    assert isinstance(reader.next_event(), Request) and reader.parsed is not None
    return reader.parsed


def admitted(head: bytes, ctx: ApiContext = CTX) -> CanonicalRequest:
    request = parsed(head)[0]
    return admit_head(request.method.decode(), request.target, request.headers, ctx)


def remember(fast: FastPath, head: bytes, *, peer: Peer = PEER, policy: object = None,
             api: object = CTX, decision: Decision = ALLOW) -> Any:
    return fast.remember(fast.lookup(peer), head, parsed(head), policy=policy, api=api,
                         request=admitted(head), decision=decision, redactions=[])


POLICY = AllowAll()


def test_a_remembered_head_is_found_for_its_caller_only() -> None:
    """The entry is found by the same caller and the very same bytes; another caller or
    one byte more misses."""
    fast = FastPath()
    known = remember(fast, PING, policy=POLICY)
    assert known is not None
    assert fast.lookup(PEER)(PING) is known
    assert fast.lookup(replace(PEER, pid=43))(PING) is None
    assert fast.lookup(PEER)(PING.replace(b"(linux)", b"(linux) ")) is None
    assert fast.current(known, POLICY, CTX, tenancy=False) is known


@pytest.mark.parametrize("change", ["policy", "api"])
def test_another_generation_forgets_everything(change: str) -> None:
    """A reloaded policy or a new ApiContext (the daemon's version) is another generation:
    the entry is not used, and every entry is forgotten."""
    fast = FastPath()
    known = remember(fast, PING, policy=POLICY)
    other = remember(fast, PING.replace(b"_ping", b"version"), policy=POLICY)
    assert other is not None and len(fast) == 2
    policy = AllowAll() if change == "policy" else POLICY
    api = replace(CTX, daemon_version="1.44") if change == "api" else CTX
    assert fast.current(known, policy, api, tenancy=False) is None
    assert len(fast) == 0 and fast.lookup(PEER)(PING) is None


def test_tenancy_turns_the_fast_path_off() -> None:
    """With a tenants map in force, no entry is used (scoping needs the daemon)."""
    fast = FastPath()
    known = remember(fast, PING, policy=POLICY)
    assert fast.current(known, POLICY, CTX, tenancy=True) is None


@pytest.mark.parametrize(("head", "why"), [
    (b"POST /containers/create HTTP/1.1\r\nHost: d\r\n\r\n", "a JSON endpoint"),
    (b"POST /containers/c/attach?stream=1 HTTP/1.1\r\nHost: d\r\n\r\n", "a hijack"),
    (b"POST /containers/c/restart HTTP/1.1\r\nHost: d\r\n\r\n", "waits for bindings"),
    (b"POST /containers/c/stop HTTP/1.1\r\nHost: d\r\nContent-Length: 2\r\n\r\n", "a body"),
    (b"POST /containers/c/stop HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n",
     "a chunked body"),
    (b"GET /_ping HTTP/1.1\r\nHost: d\r\nX-Pad: " + b"x" * HEAD_LIMIT + b"\r\n\r\n",
     "a large head"),
])
def test_requests_that_must_take_the_full_path_are_not_kept(head: bytes, why: str) -> None:
    """Bodies, hijacks, requests held behind a create's verification and large heads are
    never kept (fail closed: they take the full path every time)."""
    fast = FastPath(never={"container.restart"})
    assert remember(fast, head, policy=POLICY) is None, why
    assert len(fast) == 0


def test_a_failing_policy_is_not_kept() -> None:
    """A policy's internal error (a deny) is decided again next time, not remembered."""
    fast = FastPath()
    failed = Decision("deny", "p", "internal-error", "policy error")
    assert remember(fast, PING, policy=POLICY, decision=failed) is None


def test_the_fast_path_is_bounded() -> None:
    """No more than ``limit`` entries, and no more than ``callers`` caller numbers."""
    fast = FastPath(limit=3, callers=2)
    for i in range(10):
        head = PING.replace(b"28.5.2", b"%d" % i)
        remember(fast, head, peer=replace(PEER, pid=i), policy=POLICY)
        assert len(fast) <= 3 and len(fast._callers) <= 2
    # Caller numbers are never reused: a forgotten caller comes back as another.
    assert fast.caller(replace(PEER, pid=0)) not in {fast.caller(replace(PEER, pid=9))}


def test_a_connection_keeps_its_number_when_callers_are_forgotten() -> None:
    """A long-lived connection finds what it remembered even after many other callers
    made the fast path forget its caller numbers (a TCP listener: a caller per port)."""
    fast = FastPath(callers=2)
    finder = fast.lookup(PEER)
    for i in range(5):
        fast.caller(replace(PEER, pid=100 + i))
    known = fast.remember(finder, PING, parsed(PING), policy=POLICY, api=CTX,
                          request=admitted(PING), decision=ALLOW, redactions=[])
    assert known is not None and finder(PING) is known


# -- the audit record's fixed part -------------------------------------------------------


def event(request: CanonicalRequest | None, **changes: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "stage": "ResponseComplete", "id": "0123abcd", "time": 1767225600.25,
        "listener": PEER.listener, "peer": PEER, "method": "GET",
        "raw_target": "/x", "request": request, "decision": ALLOW, "status": 200,
        "duration": 0.001234, "bytes_in": 0, "bytes_out": 31337,
    }
    fields.update(changes)
    return AuditEvent(**fields)


def canonical(target: bytes) -> CanonicalRequest:
    return admit_head("GET", target, ((b"host", b"d"),), CTX)


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


@settings(max_examples=3000, deadline=None)
@given(st.one_of(
    st.floats(),
    st.floats(min_value=0.0, max_value=2e9).map(lambda x: round(x, 6)),
    st.integers(min_value=0, max_value=2 * 10**15).map(lambda n: n / 1e6),
    st.integers(min_value=0, max_value=200).map(lambda n: n / 1e6),
))
def test_seconds_are_written_as_the_floats_repr(seconds: float) -> None:
    """The duration's text in a plain record (made from integers for whole microseconds)
    is ``repr`` of the float, as the JSON encoder writes it, for every float."""
    assert seconds_text(seconds) == repr(seconds)


@pytest.mark.parametrize("changes", PLAIN + ODD)
def test_plain_records_encode_exactly_as_the_general_path(changes: dict[str, Any]) -> None:
    """``encode_plain`` around ``plain_members`` gives byte for byte what encode_record gives,
    for the record the members were made from and for others of the same request."""
    redactor = Redactor()
    request = canonical(b"/v1.51/containers/json?all=1&filters=%7B%22label%22%3A%5B%5D%7D")
    changes = dict(changes)
    first = changes.pop("id", "0123abcd")
    members = plain_members(event(request, id=first, **changes), "metadata", redactor)
    assert members is not None
    for ident in (first, "4567ef01"):
        ev = event(request, id=ident, **changes)
        got = encode_plain(ev, members)
        assert got is not None
        assert ("{" + got + "}\n").encode("ascii") == encode_record(
            build_record(ev, "metadata", redactor))


@pytest.mark.parametrize("changes", [
    {"request": None},
    {"decision": None},
    {"decision": Decision("warn", "p", "r", "why", warnings=("careful",))},
])
def test_unusual_requests_have_no_plain_members(changes: dict[str, Any]) -> None:
    """No request, no decision, or warnings: every record takes the general path."""
    changes = dict(changes)
    ev = event(changes.pop("request", canonical(b"/_ping")), **changes)
    assert plain_members(ev, "metadata", Redactor()) is None


@pytest.mark.parametrize("changes", [
    {"error": "client disconnected"}, {"exit_code": 0}, {"duration": float("nan")},
])
def test_unusual_records_take_the_general_path(changes: dict[str, Any]) -> None:
    """A record with an error, an exit code or a NaN duration is not encoded around members."""
    members = plain_members(event(canonical(b"/_ping")), "metadata", Redactor())
    assert members is not None
    assert encode_plain(event(canonical(b"/_ping"), **changes), members) is None


def test_request_level_decisions_have_no_plain_members() -> None:
    """Request-level records (with headers and bodies) are never encoded around members."""
    ev = event(canonical(b"/_ping"), stage="RequestDecided")
    assert plain_members(ev, "request", Redactor()) is None


def test_chained_log_writes_encoded_members_as_it_writes_mappings(tmp_path: Path) -> None:
    """An encoded record chains and reads back exactly like its mapping."""
    ev = event(canonical(b"/_ping"))
    record = build_record(ev, "metadata", Redactor())
    members = plain_members(ev, "metadata", Redactor())
    assert members is not None
    fragment = encode_plain(ev, members)
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


# -- through the protocol ----------------------------------------------------------------


class _Endpoint:
    def __init__(self) -> None:
        self.connections: list[Any] = []

    def connect(self, factory: Any) -> Any:
        proto = factory.buildProtocol(None)
        proto.makeConnection(StringTransport())
        self.connections.append(proto)
        return succeed(proto)


class _Counting:
    """Counts the full path's admissions (its parses: ``Listener.parses``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.admissions = 0
        admit = protocol.admit_head

        def counted_admit(*args: Any) -> Any:
            self.admissions += 1
            return admit(*args)

        # The protocol calls admission (not compiled, setup.py) through its module's globals.
        monkeypatch.setattr(protocol, "admit_head", counted_admit)


class _Policy:
    """A policy that counts its decisions and may depend on the daemon's facts."""

    name = "counting"

    def __init__(self, verdict: str = "allow", daemon: bool = False) -> None:
        self.verdict = verdict
        self.daemon = daemon
        self.decisions = 0

    def decide(self, request: CanonicalRequest, peer: Peer, context: Any = None) -> Decision:
        self.decisions += 1
        return Decision(self.verdict, self.name, None if self.verdict == "allow" else "no",
                        "because")

    def wants_daemon_facts(self, request: CanonicalRequest, peer: Peer) -> bool:
        return self.daemon


class Listener:
    """One listener (factory) with the real audit log and access log, and its clients."""

    def __init__(self, tmp: Path, policy: Any = None, *, fast: bool = True,
                 name: str = "audit") -> None:
        self.policy = policy or _Policy()
        self.tenants: TenantMap | None = None
        self.audit_path = tmp / f"{name}.jsonl"
        self.sink = JsonLinesAudit(str(self.audit_path), fsync="never")
        self.access: list[str] = []
        access = AccessLog(self)  # type: ignore[arg-type]
        settings = ProxySettings(
            upstream=_Endpoint(),  # type: ignore[arg-type]
            policy=lambda: self.policy, audit=MetricsAudit(self.sink, None, access),
            tenants=lambda: self.tenants)
        self.factory = ProxyServerFactory(settings, "unix:/run/dockgate.sock",
                                          MemoryReactorClock())
        if not fast:  # a fast path that keeps no endpoint's requests
            self.factory.fast = FastPath(never=ENDPOINTS)
        self.clients: list[tuple[Any, StringTransport]] = []
        self.parses = 0
        """Heads parsed: those the reader's lookup did not know (``RequestReader._head``)."""

    def write(self, text: str) -> int:  # the access log's stream
        self.access.append(text)
        return len(text)

    def flush(self) -> None:
        """The access log's stream flushes."""

    def connect(self, host: str = "10.0.0.1") -> int:
        client = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        proto = self.factory.buildProtocol(None)
        proto.makeConnection(client)
        self.clients.append((proto, client))
        return len(self.clients) - 1

    def exchange(self, request: bytes = PING, reply: bytes = PING_OK, client: int = 0) -> bytes:
        """Send ``request``, answer it with ``reply`` if it was forwarded; the client's bytes."""
        proto, transport = self.clients[client]
        transport.clear()
        proto.dataReceived(request)
        self.parses += proto.reader.known is None
        x = proto.exchange
        if x is not None and x.upstream is not None:
            x.upstream.dataReceived(reply)
        return transport.value()

    def records(self) -> list[bytes]:
        return self.audit_path.read_bytes().splitlines()


def test_a_head_seen_twice_takes_the_fast_path(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The second identical head from the same caller is neither parsed, admitted nor
    decided again, and is forwarded and answered exactly as the first."""
    counting = _Counting(monkeypatch)
    listener = Listener(tmp_path)
    listener.connect()
    first = listener.exchange()
    second = listener.exchange()
    assert first == second and first.startswith(b"HTTP/1.1 200 OK") and first.endswith(b"OK")
    assert (listener.parses, counting.admissions, listener.policy.decisions) == (1, 1, 1)
    upstream = listener.factory.pool.take_idle()
    assert upstream is not None
    sent = upstream.transport.value()  # type: ignore[attr-defined]
    assert sent.count(b"GET /_ping HTTP/1.1\r\n") == 2
    assert sent[:len(sent) // 2] == sent[len(sent) // 2:]
    # Another connection of the same caller shares it.
    listener.connect()
    assert listener.exchange(client=1) == first
    assert (listener.parses, listener.policy.decisions) == (1, 1)


@pytest.mark.parametrize("change", ["head", "caller", "policy", "daemon version"])
def test_any_change_in_the_key_takes_the_full_path(
        change: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another byte in the head, another caller, a reloaded policy or a new daemon version
    each make the next request parsed (head, caller) and decided again."""
    counting = _Counting(monkeypatch)
    listener = Listener(tmp_path)
    listener.connect()
    listener.exchange()
    request, client = PING, 0
    if change == "head":
        request = PING.replace(b"User-Agent", b"user-agent")
    elif change == "caller":
        client = listener.connect("10.0.0.2")
    elif change == "policy":
        listener.policy = _Policy(verdict="deny")
    else:
        listener.factory.note_daemon_version("1.44")
    answer = listener.exchange(request, client=client)
    assert listener.policy.decisions == (1 if change == "policy" else 2)
    assert counting.admissions == 2
    assert listener.parses == (2 if change in ("head", "caller") else 1)
    if change == "policy":  # the reloaded policy's verdict, not the remembered one
        assert answer.startswith(b"HTTP/1.1 403 ")


def test_a_policy_reload_forgets_what_was_decided(tmp_path: Path) -> None:
    """After a reload the old generation's entries are gone, and the new policy's decision
    is the one kept and reused."""
    listener = Listener(tmp_path)
    listener.connect()
    listener.exchange()
    assert len(listener.factory.fast) == 1
    listener.policy = _Policy(verdict="deny")
    assert listener.exchange().startswith(b"HTTP/1.1 403 ")
    assert listener.exchange().startswith(b"HTTP/1.1 403 ")
    assert listener.policy.decisions == 1 and len(listener.factory.fast) == 1


def test_tenancy_switched_on_takes_the_full_path(tmp_path: Path) -> None:
    """A head remembered while no tenants file was in force is not reused once one is:
    the caller, who maps to no tenant, is refused."""
    listener = Listener(tmp_path)
    listener.connect()
    assert listener.exchange().startswith(b"HTTP/1.1 200 ")
    listener.tenants = TenantMap([])
    answer = listener.exchange()
    assert answer.startswith(b"HTTP/1.1 403 ") and b"no tenant" in answer


def test_a_request_with_a_body_never_takes_it(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON request is admitted and decided again every time, however often it repeats."""
    counting = _Counting(monkeypatch)
    listener = Listener(tmp_path)
    listener.connect()
    body = b'{"Image":"alpine"}'
    create = (b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json"
              b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    created = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2"
               b"\r\n\r\n{}")
    for _ in range(2):
        assert listener.exchange(create, created).startswith(b"HTTP/1.1 201 ")
    assert (counting.admissions, listener.policy.decisions) == (2, 2)
    assert len(listener.factory.fast) == 0


def test_a_decision_on_the_daemons_state_never_takes_it(tmp_path: Path) -> None:
    """A policy that decides with the daemon's facts is asked every time."""
    listener = Listener(tmp_path, _Policy(daemon=True))
    listener.factory.daemon_facts = DaemonFacts()
    listener.connect()
    for _ in range(2):
        assert listener.exchange().startswith(b"HTTP/1.1 200 ")
    assert listener.policy.decisions == 2 and len(listener.factory.fast) == 0


def test_redaction_rules_are_reused_with_the_decision(tmp_path: Path) -> None:
    """An inspect under a redact rule is redacted the second time too."""
    text = "name: ro\nrules:\n  - id: r\n    redact: {env: true}\n"
    listener = Listener(tmp_path, compile_policy(parse_yaml(text, "ro.yaml")))
    listener.connect()
    body = b'{"Id":"c","Config":{"Env":["PASSWORD=hunter2"]}}'
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d"
              b"\r\n\r\n%s" % (len(body), body))
    inspect = b"GET /containers/c/json HTTP/1.1\r\nHost: d\r\n\r\n"
    for _ in range(2):
        got = listener.exchange(inspect, answer)
        assert got.startswith(b"HTTP/1.1 200 ") and b"hunter2" not in got
    assert len(listener.factory.fast) == 1


_VARYING = re.compile(rb'"(id|record_id|time|duration|prev)":("[^"]*"|null|[0-9.e+-]+)')
_ACCESS_VARYING = re.compile(r"^\S+ |duration=\S+")


def _exchanges(listener: Listener) -> None:
    listener.connect()
    denied = b"GET /containers/json HTTP/1.1\r\nHost: d\r\n\r\n"
    missing = b"GET /v1.51/images/nope/json HTTP/1.1\r\nHost: d\r\n\r\n"
    for _ in range(3):
        listener.exchange()
        listener.exchange(missing, NOT_FOUND)
        listener.exchange(denied)


class _DenyLists(_Policy):
    def decide(self, request: CanonicalRequest, peer: Peer, context: Any = None) -> Decision:
        if request.endpoint.id == "container.list":
            return Decision("deny", self.name, "no-lists", "lists are not for you")
        return super().decide(request, peer, context)


def test_audit_records_are_the_full_paths_byte_for_byte(tmp_path: Path) -> None:
    """The same exchanges with and without the fast path write the same audit lines and
    access log lines, byte for byte apart from ids, times and durations (and the chain
    link that hashes them)."""
    fast = Listener(tmp_path, _DenyLists(), name="fast")
    full = Listener(tmp_path, _DenyLists(), fast=False, name="full")
    for listener in (fast, full):
        _exchanges(listener)
    assert len(fast.factory.fast) == 3 and len(full.factory.fast) == 0
    got = [_VARYING.sub(rb'"\1":_', line) for line in fast.records()]
    want = [_VARYING.sub(rb'"\1":_', line) for line in full.records()]
    assert len(got) == 18 and got == want
    assert [_ACCESS_VARYING.sub("_", line) for line in fast.access] == \
        [_ACCESS_VARYING.sub("_", line) for line in full.access]
    assert len(fast.access) == 9


class _Recording:
    """A session recording of container ``c`` (as the sink keeps them) noting its resizes."""

    def __init__(self) -> None:
        self.header = {"container": "c", "endpoint": "container.attach"}
        self.sizes: list[tuple[int, int]] = []

    def resize(self, cols: int, rows: int) -> None:
        self.sizes.append((cols, rows))


def test_a_known_resize_still_reaches_the_session_recordings(tmp_path: Path) -> None:
    """A resize taken from the fast path is still applied to the recordings of what it
    names (its records take the sink's full path, which does that)."""
    listener = Listener(tmp_path)
    recording = _Recording()
    listener.sink._sessions["attach"] = recording  # type: ignore[assignment]
    listener.connect()
    resize = b"POST /containers/c/resize?h=10&w=20 HTTP/1.1\r\nHost: d\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    for _ in range(2):
        assert listener.exchange(resize, ok).startswith(b"HTTP/1.1 200 ")
    assert len(listener.factory.fast) == 1 and recording.sizes == [(20, 10), (20, 10)]

"""In-memory tests of the proxy protocol: exact bytes in, exact bytes out.

A real client is replaced by a StringTransport fed raw bytes; the daemon by an
UpstreamConnection on a StringTransport that the test answers by hand.  Time is
a MemoryReactorClock, so timeouts are tested without waiting.  Real sockets and
real daemons are the integration suite's job; these tests pin the protocol's
decisions, including faults a real daemon cannot be made to show.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from support.cli import REPO
from support.doubles import AllowAll, flat_record
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from dockgate.admission.admit import HEAVY_BODY, ApiContext
from dockgate.model import AuditEvent, CanonicalRequest, Decision, Peer
from dockgate.policy import load_policy
from dockgate.policy.rules import compile_policy
from dockgate.policy.source import parse_yaml
from dockgate.proxy import lifecycle, protocol
from dockgate.proxy.lifecycle import State
from dockgate.proxy.protocol import ProxyServerFactory, ProxyServerProtocol
from dockgate.proxy.settings import ProxySettings
from dockgate.proxy.upstream import UpstreamConnection
from dockgate.tenancy import OWNER_LABEL, Tenant, TenantMap


class HalfCloseTransport(StringTransport):
    """A StringTransport that records half-closes (sockets support them; StringTransport doesn't)."""

    write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True


class _Endpoint:
    """A client endpoint whose connections are StringTransports the test drives."""

    def __init__(self) -> None:
        self.connections: list[UpstreamConnection] = []
        self.refuse = False
        self.pending: Deferred[Any] | None = None

    def connect(self, factory: Any) -> Deferred[Any]:
        if self.refuse:
            return fail(ConnectionRefusedError("no daemon"))
        proto = factory.buildProtocol(None)
        proto.makeConnection(HalfCloseTransport())
        self.connections.append(proto)
        return succeed(proto)


class _Audit:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.session: list[tuple[str, bytes]] = []
        self.events: list[AuditEvent] = []
        self.fail = False

    def record(self, event: AuditEvent) -> None:
        if self.fail:
            raise OSError("disk full")
        self.records.append(flat_record(event))
        self.events.append(event)

    def session_data(self, event_id: str, direction: str, data: bytes) -> None:
        self.session.append((direction, data))


class _DenyPrivileged:
    name = "test"

    def decide(self, request: CanonicalRequest, peer: Peer) -> Decision:
        body = request.body or {}
        if (body.get("HostConfig") or {}).get("Privileged"):
            return Decision(
                "deny",
                "test",
                "no-privileged",
                "denied by policy test rule no-privileged: HostConfig.Privileged must not be true",
            )
        return Decision("allow", "test")


class Harness:
    """A proxy protocol wired to a fake upstream endpoint and a memory clock."""

    def __init__(self, policy: Any = None, **settings: Any) -> None:
        self.clock = MemoryReactorClock()
        self.endpoint = _Endpoint()
        self.audit = _Audit()
        pol = policy or AllowAll()
        self.policy = pol
        self.settings = ProxySettings(
            upstream=self.endpoint,  # type: ignore[arg-type]
            policy=lambda: pol,
            audit=self.audit,
            **settings,
        )
        self.factory = ProxyServerFactory(self.settings, "test", self.clock)
        self.client = HalfCloseTransport()
        self.proto: ProxyServerProtocol = self.factory.buildProtocol(None)
        self.proto.makeConnection(self.client)

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    @property
    def upstream(self) -> UpstreamConnection:
        return self.endpoint.connections[-1]

    def upstream_sent(self) -> bytes:
        if not self.endpoint.connections:
            return b""
        return b"".join(c.transport.value() for c in self.endpoint.connections)  # type: ignore[union-attr]

    def reply(self, data: bytes) -> None:
        self.upstream.dataReceived(data)

    def received(self) -> bytes:
        return self.client.value()


def _status_and_json(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body)


PING_OK = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nOK"


def test_forwards_a_clean_head_of_its_own() -> None:
    """The daemon gets a head dockgate serialised: fixed Host, no hop-by-hop or Connection-named headers."""
    h = Harness()
    h.send(
        b"GET /_ping HTTP/1.1\r\nHost: evil\r\nConnection: keep-alive, X-Drop\r\n"
        b"X-Drop: 1\r\nKeep-Alive: 5\r\nUser-Agent: t\r\n\r\n"
    )
    sent = h.upstream_sent()
    assert sent.startswith(b"GET /_ping HTTP/1.1\r\n")
    assert b"host: docker\r\n" in sent
    assert (
        b"evil" not in sent and b"x-drop" not in sent.lower() and b"keep-alive" not in sent.lower()
    )
    assert b"user-agent: t\r\n" in sent
    h.reply(PING_OK)
    assert h.received().startswith(b"HTTP/1.1 200 OK\r\n")
    assert h.received().endswith(b"\r\n\r\nOK")
    assert h.audit.records[-1]["status"] == 200


def test_pipelined_requests_are_answered_in_order_one_at_a_time() -> None:
    """Two requests in one segment: the second is forwarded only after the first completes."""
    h = Harness()
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\nGET /version HTTP/1.1\r\nHost: d\r\n\r\n")
    assert h.upstream_sent().count(b"HTTP/1.1\r\n") == 1
    h.reply(PING_OK)
    assert h.upstream_sent().count(b"HTTP/1.1\r\n") == 2
    assert b"GET /version" in h.upstream_sent()
    assert len(h.endpoint.connections) == 1, "the kept-alive upstream connection is reused"
    h.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    assert h.received().count(b"HTTP/1.1 200 OK") == 2


def test_conflicting_framing_is_refused_and_nothing_forwarded() -> None:
    """Content-Length with Transfer-Encoding gets a Docker-shaped 400 and no upstream connection."""
    h = Harness()
    h.send(
        b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    status, body = _status_and_json(h.received())
    assert status == 400
    assert body["message"].startswith("dockgate: ") and "Transfer-Encoding" in body["message"]
    assert h.endpoint.connections == []
    assert h.client.disconnecting


def test_head_too_large_is_431() -> None:
    """A head over the cap is answered 431 before it is complete."""
    h = Harness(max_head_size=1024)
    h.send(b"GET /_ping HTTP/1.1\r\nX-Big: " + b"a" * 2000)
    status, body = _status_and_json(h.received())
    assert status == 431
    assert "larger than 1024 bytes" in body["message"]
    assert h.endpoint.connections == []


def test_daemon_unreachable_is_502() -> None:
    """No daemon behind the socket: 502 with a JSON message."""
    h = Harness()
    h.endpoint.refuse = True
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    status, body = _status_and_json(h.received())
    assert status == 502
    assert "cannot reach the Docker daemon" in body["message"]


def test_daemon_silent_is_504_and_the_upstream_is_aborted() -> None:
    """No response head within the timeout: 504, and the daemon connection is dropped."""
    h = Harness(response_timeout=5.0)
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    h.clock.advance(4.9)
    assert h.received() == b""
    h.clock.advance(0.2)
    status, _ = _status_and_json(h.received())
    assert status == 504
    assert h.upstream.transport.disconnecting or h.upstream.transport.disconnected  # type: ignore[union-attr]


def test_long_streams_are_not_cut_once_the_head_arrived() -> None:
    """After the response head, no proxy timer runs: /events may stay open for hours."""
    h = Harness(response_timeout=5.0)
    h.send(b"GET /events HTTP/1.1\r\nHost: d\r\n\r\n")
    h.reply(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    h.clock.advance(3600)
    h.reply(b"5\r\nhello\r\n")
    assert h.received().endswith(b"hello\r\n")
    assert not h.client.disconnecting


def test_daemon_disconnect_mid_response_aborts_the_client() -> None:
    """A truncated response is never passed off as complete: the client connection is aborted."""
    h = Harness()
    h.send(b"GET /containers/json HTTP/1.1\r\nHost: d\r\n\r\n")
    h.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[{")
    h.upstream.connectionLost(Failure(ConnectionDone()))
    assert h.received().endswith(b"[{")
    assert h.proto.state is State.CLOSED
    assert h.audit.records[-1]["error"] == "daemon disconnected mid-response"


def test_client_disconnect_mid_request_aborts_the_upstream() -> None:
    """A client that goes away mid-upload takes its upstream request with it."""
    h = Harness()
    h.send(
        b"POST /images/load HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-tar\r\nContent-Length: 1000\r\n\r\nabc"
    )
    assert h.upstream_sent().endswith(b"abc")
    h.proto.connectionLost(Failure(ConnectionDone()))
    assert h.upstream.transport.disconnecting or h.upstream.transport.disconnected  # type: ignore[union-attr]
    assert h.factory.pool._idle == []


def test_upgrade_on_a_non_hijack_route_is_dropped() -> None:
    """Only hijack routes may switch protocols; elsewhere Upgrade is dropped and HTTP continues."""
    h = Harness()
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    assert b"upgrade" not in h.upstream_sent().lower()
    h.reply(PING_OK)
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    assert h.upstream_sent().count(b"GET /_ping") == 2


def test_attach_101_splices_both_ways_with_early_bytes_and_half_close() -> None:
    """After a 101, bytes flow raw both ways, including bytes sent before the switch, and EOF travels."""
    h = Harness()
    target = b"/v1.41/containers/abc/attach?stream=1&stdin=1&stdout=1"
    h.send(
        b"POST "
        + target
        + b" HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\nEARLY"
    )
    sent = h.upstream_sent()
    assert b"upgrade: tcp" in sent.lower() and b"connection: upgrade" in sent.lower()
    h.reply(
        b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nOUT1"
    )
    got = h.received()
    assert got.startswith(b"HTTP/1.1 101 UPGRADED\r\n") and got.endswith(b"\r\n\r\nOUT1")
    assert h.upstream_sent().endswith(b"EARLY")
    h.send(b"MORE")
    assert h.upstream_sent().endswith(b"EARLYMORE")
    h.proto.readConnectionLost()
    up = h.upstream.transport
    assert up.write_closed and not up.disconnecting  # type: ignore[union-attr]
    h.reply(b"AFTER-EOF")
    assert h.received().endswith(b"OUT1AFTER-EOF")
    h.upstream.readConnectionLost()
    assert h.client.write_closed
    assert h.client.disconnecting and up.disconnecting  # type: ignore[union-attr]
    lookup = h.endpoint.connections[-1]
    assert lookup.transport.value().startswith(b"GET /containers/abc/json ")  # type: ignore[union-attr]
    state = b'{"State":{"Running":false,"ExitCode":3}}'
    lookup.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(state), state))
    assert h.audit.records[-1]["stage"] == "SessionEnded"
    assert h.audit.records[-1]["exit_code"] == 3
    assert [r["stage"] for r in h.audit.records] == [
        "RequestDecided",
        "SessionStarted",
        "SessionEnded",
    ]
    assert b"".join(d for k, d in h.audit.session if k == "in") == b"EARLYMORE"
    assert b"".join(d for k, d in h.audit.session if k == "out") == b"OUT1AFTER-EOF"
    assert h.audit.records[-1]["bytes_in"] == len(b"EARLYMORE")


def test_legacy_raw_stream_200_on_hijack_route_splices() -> None:
    """The daemon's legacy hijack (200 raw-stream, no framing) is spliced, not chunk-framed."""
    h = Harness()
    h.send(
        b"POST /containers/abc/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n"
    )
    h.reply(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\nRAW")
    got = h.received()
    assert got.endswith(b"\r\n\r\nRAW")
    assert b"chunked" not in got.lower()
    assert h.proto.splice is not None


def test_json_body_over_cap_is_413_without_forwarding() -> None:
    """A JSON body over the cap is refused before any of it goes upstream."""
    h = Harness(api=ApiContext(daemon_version="1.41", max_json_body=100))
    h.send(
        b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
    )
    status, _ = _status_and_json(h.received())
    assert status == 413
    assert h.endpoint.connections == []


def test_policy_denial_is_403_with_the_reason_and_keeps_the_connection() -> None:
    """A denied create gets 403 with the policy's sentence; nothing reaches the daemon; keep-alive continues."""
    h = Harness(policy=_DenyPrivileged())
    body = json.dumps({"Image": "dgtest", "HostConfig": {"Privileged": True}}).encode()
    h.send(
        b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    status, msg = _status_and_json(h.received())
    assert status == 403
    assert (
        msg["message"]
        == "dockgate: denied by policy test rule no-privileged: HostConfig.Privileged must not be true"
    )
    assert h.endpoint.connections == []
    assert not h.client.disconnecting
    assert h.audit.records[-1]["decision"] == "deny"


def test_slow_client_pauses_the_daemon_side() -> None:
    """When the client's socket is full, dockgate stops reading from the daemon (back-pressure)."""
    h = Harness()
    h.send(b"GET /containers/abc/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: d\r\n\r\n")
    h.reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    h.proto.pauseProducing()
    # The pause is lazy (gate.ReadGate): it takes effect when the daemon next sends.
    h.reply(b"5\r\nhello\r\n")
    assert h.received().endswith(b"hello\r\n")
    assert h.upstream.transport.producerState == "paused"  # type: ignore[union-attr]
    h.proto.resumeProducing()
    assert h.upstream.transport.producerState == "producing"  # type: ignore[union-attr]


class _Warn:
    name = "w"

    def decide(self, request: CanonicalRequest, peer: Peer) -> Decision:
        return Decision(
            "warn",
            "w",
            "limits",
            "allowed",
            ("dockgate: policy w rule limits: set a memory limit",),
        )


def _create(body: dict[str, Any]) -> bytes:
    raw = json.dumps(body).encode()
    return (
        b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(raw), raw)
    )


def test_warn_decisions_reach_the_client_in_warnings() -> None:
    """A warn-mode finding is added to the create response's Warnings, with a correct length."""
    h = Harness(policy=_Warn())
    h.send(_create({"Image": "dgtest"}))
    reply = b'{"Id":"abc","Warnings":["daemon says"]}'
    h.reply(
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(reply), reply)
    )
    head, _, body = h.received().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201")
    assert b"content-length: %d" % len(body) in head.lower()
    assert json.loads(body)["Warnings"] == [
        "daemon says",
        "dockgate: policy w rule limits: set a memory limit",
    ]


class _NeedsUser:
    name = "u"

    def __init__(self) -> None:
        self.contexts: list[Any] = []

    def wants_default_user(self, request: CanonicalRequest, peer: Peer) -> bool:
        return True

    def decide(self, request: CanonicalRequest, peer: Peer, context: Any = None) -> Decision:
        self.contexts.append(context)
        if context is None or context.default_user in (None, "", "root", "0"):
            return Decision(
                "deny", "u", "non-root", "denied by policy u rule non-root: User must not be root"
            )
        return Decision("allow", "u")


def test_the_image_default_user_is_looked_up_before_deciding() -> None:
    """When the policy needs the image's user, dockgate asks the daemon first, then decides."""
    policy = _NeedsUser()
    h = Harness(policy=policy)
    h.send(_create({"Image": "docker.io/library/dgtest:latest"}))
    lookup = h.endpoint.connections[0]
    assert lookup.transport.value().startswith(  # type: ignore[union-attr]
        b"GET /images/docker.io/library/dgtest:latest/json HTTP/1.1\r\n"
    )
    assert len(h.endpoint.connections) == 1, "nothing of the create was forwarded yet"
    info = b'{"Id":"%s","Config":{"User":"1000"}}' % _IMG
    lookup.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(info), info))
    assert policy.contexts[-1].default_user == "1000"
    assert b"POST /containers/create" in h.upstream_sent()


_IMG = b"sha256:" + b"b" * 64
_CID = b"c" * 64


def _json_reply(conn: Any, status: bytes, value: bytes) -> None:
    conn.dataReceived(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (status, len(value), value))


def _side(h: Harness) -> Any:
    """The connection of dockgate's own side requests (treq keeps one alive and reuses it)."""
    return [c for c in h.endpoint.connections if not isinstance(c, UpstreamConnection)][-1]


def _created_from(image: bytes) -> Harness:
    """A create decided on image _IMG's user, answered 201, verified against ``image``."""
    h = Harness(policy=_NeedsUser())
    h.send(_create({"Image": "app:1"}))
    _json_reply(h.endpoint.connections[0], b"200 OK",
                b'{"Id":"%s","Config":{"User":"1000"}}' % _IMG)
    _json_reply(h.upstream, b"201 Created", b'{"Id":"%s","Warnings":[]}' % _CID)
    assert h.received() == b"", "the create's answer is held until verified"
    verify = _side(h)
    assert b"GET /containers/%s/json" % _CID in h.upstream_sent()
    _json_reply(verify, b"200 OK", b'{"Id":"%s","Image":"%s"}' % (_CID, image))
    return h


def test_a_start_waits_while_a_create_is_being_verified() -> None:
    """Between a create and its verification no container can be started (it could be
    the unverified one, started by a name the client chose): a start on another
    connection is forwarded only once the verification has ended."""
    h = Harness(policy=_NeedsUser())
    h.send(_create({"Image": "app:1"}))
    _json_reply(h.endpoint.connections[0], b"200 OK",
                b'{"Id":"%s","Config":{"User":"1000"}}' % _IMG)
    _json_reply(h.upstream, b"201 Created", b'{"Id":"%s","Warnings":[]}' % _CID)
    verify = _side(h)
    other = h.factory.buildProtocol(None)
    other_client = HalfCloseTransport()
    other.makeConnection(other_client)
    other.dataReceived(b"POST /containers/web/start HTTP/1.1\r\nHost: d\r\n\r\n")
    assert other_client.value() == b"", "the start was decided during the verification"
    assert len(h.policy.contexts) == 1  # the create's decision only
    _json_reply(verify, b"200 OK", b'{"Id":"%s","Image":"%s"}' % (_CID, _IMG))
    assert len(h.policy.contexts) == 2, "the start is decided once the verification ended"
    assert other_client.value().startswith(b"HTTP/1.1 ")


class _NeedsUserStarts(_NeedsUser):
    """``_NeedsUser``, allowing starts."""

    def decide(self, request: CanonicalRequest, peer: Peer, context: Any = None) -> Decision:
        if request.endpoint.id == "container.start":
            return Decision("allow", "u")
        return super().decide(request, peer, context)


def test_a_start_whose_record_is_being_written_waits_for_a_verification_begun_meanwhile() -> (
        None):
    """A start decided before a create's verification began, whose record is written at the
    turn's end, is not forwarded while that verification runs: it goes once it ended."""
    h = Harness(policy=_NeedsUserStarts())
    h.send(_create({"Image": "app:1"}))
    _json_reply(h.endpoint.connections[0], b"200 OK",
                b'{"Id":"%s","Config":{"User":"1000"}}' % _IMG)
    turn = _TurnAudit()
    h.factory.record_then = turn.record_then
    other = h.factory.buildProtocol(None)
    other.makeConnection(HalfCloseTransport())
    other.dataReceived(b"POST /containers/web/start HTTP/1.1\r\nHost: d\r\n\r\n")
    assert turn.waiting, "decided, waiting for its record"
    _json_reply(h.upstream, b"201 Created", b'{"Id":"%s","Warnings":[]}' % _CID)
    verify = _side(h)
    turn.end_turn(True)
    assert b"/containers/web/start" not in h.upstream_sent()
    _json_reply(verify, b"200 OK", b'{"Id":"%s","Image":"%s"}' % (_CID, _IMG))
    assert b"POST /containers/web/start" in h.upstream_sent()


def test_a_create_from_the_checked_image_is_answered() -> None:
    """The new container runs the image whose user was checked: the client gets the 201."""
    h = _created_from(_IMG)
    status, body = _status_and_json(h.received())
    assert status == 201 and body["Id"] == _CID.decode()
    assert b"DELETE" not in h.upstream_sent()


def test_a_create_from_a_swapped_tag_is_removed_and_refused() -> None:
    """The tag moved between the check and the create: dockgate removes the container
    and answers 403, naming both images."""
    h = _created_from(b"sha256:" + b"d" * 64)
    assert b"DELETE /containers/%s?force=1&v=1" % _CID in h.upstream_sent()
    _side(h).dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    status, body = _status_and_json(h.received())
    assert status == 403
    assert body["message"].startswith("dockgate: image app:1 changed while the request was checked")


def test_an_unknown_default_user_counts_as_root() -> None:
    """If the lookup fails, the policy sees no user and a non-root rule denies."""
    policy = _NeedsUser()
    h = Harness(policy=policy)
    h.send(_create({"Image": "nosuch"}))
    h.endpoint.connections[0].dataReceived(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}")
    status, msg = _status_and_json(h.received())
    assert status == 403 and "non-root" in msg["message"]
    assert b"POST /containers/create" not in h.upstream_sent()


def test_api_versions_are_clamped_and_the_daemon_version_learned() -> None:
    """Clients never see an API version dockgate has no schemas for; dockgate adopts the daemon's."""
    h = Harness()
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    h.reply(b"HTTP/1.1 200 OK\r\nApi-Version: 1.99\r\nContent-Length: 2\r\n\r\nOK")
    assert b"api-version: 1.51\r\n" in h.received().lower()
    h.send(b"GET /version HTTP/1.1\r\nHost: d\r\n\r\n")
    body = json.dumps({"ApiVersion": "1.99", "MinAPIVersion": "1.12", "Version": "99"}).encode()
    h.reply(
        b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    got = json.loads(h.received().rpartition(b"\r\n\r\n")[2])
    assert got["ApiVersion"] == "1.51" and got["MinAPIVersion"] == "1.18" and got["Version"] == "99"
    assert h.factory.api.daemon_version == "1.41"


def test_slowloris_head_is_cut_with_408() -> None:
    """A head that trickles in never gets more than head_timeout in total."""
    h = Harness(head_timeout=10.0, idle_timeout=300.0)
    h.send(b"GET /_ping HTTP/1.1\r\n")
    for _ in range(9):
        h.clock.advance(1.0)
        h.send(b"X-A: b\r\n")
    h.clock.advance(1.1)
    status, body = _status_and_json(h.received())
    assert status == 408 and "in time" in body["message"]
    assert h.endpoint.connections == []


def test_idle_keep_alive_connections_are_closed_quietly() -> None:
    """An idle connection is closed after idle_timeout, without a response."""
    h = Harness(idle_timeout=60.0)
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    h.reply(PING_OK)
    h.clock.advance(59)
    assert not h.client.disconnecting
    h.clock.advance(2)
    assert h.client.disconnecting
    assert h.received().count(b"HTTP/1.1") == 1


def test_connections_over_the_per_peer_cap_get_429() -> None:
    """Beyond the per-caller cap a new connection gets a JSON 429 and is closed."""
    h = Harness(max_connections_per_peer=2)
    second = h.factory.buildProtocol(None)
    second.makeConnection(HalfCloseTransport())
    third_transport = HalfCloseTransport()
    third = h.factory.buildProtocol(None)
    third.makeConnection(third_transport)
    status, body = _status_and_json(third_transport.value())
    assert status == 429 and "too many connections" in body["message"]
    assert third_transport.disconnecting and not h.client.disconnecting
    third.connectionLost(Failure(ConnectionDone()))
    assert h.factory.open_connections == 2


def test_unwritable_audit_refuses_instead_of_forwarding() -> None:
    """Fail closed: when the allow cannot be recorded, nothing is forwarded and the client gets 503."""
    h = Harness()
    h.audit.fail = True
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    status, body = _status_and_json(h.received())
    assert status == 503 and "audit log" in body["message"]
    assert h.endpoint.connections == []


def test_stages_are_recorded_before_forwarding_and_at_completion() -> None:
    """An allowed request is on record before it is forwarded; completion adds the status."""
    h = Harness()
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    assert [r["stage"] for r in h.audit.records] == ["RequestDecided"]
    assert h.audit.records[0]["decision"] == "allow"
    h.clock.advance(0)
    h.reply(PING_OK)
    assert [r["stage"] for r in h.audit.records] == ["RequestDecided", "ResponseComplete"]
    assert h.audit.records[-1]["status"] == 200
    assert h.audit.events[0].upstream_seconds is None, "not forwarded yet when decided"
    assert h.audit.events[-1].upstream_seconds is not None


class _TurnAudit(_Audit):
    """An audit sink that writes decisions at the end of the turn (as ``JsonLinesAudit`` does
    under the service): ``record_then`` calls back only when the test says the turn ended."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Any] = []

    def record_then(self, event: AuditEvent, then: Any) -> None:
        self.record(event)
        self.waiting.append(then)

    def end_turn(self, written: bool) -> None:
        waiting, self.waiting = self.waiting, []
        for then in waiting:
            then(written)


@pytest.mark.parametrize("written", [True, False])
def test_a_request_waits_for_its_decision_to_be_written(written: bool) -> None:
    """With a sink that writes a turn's decisions together, the request is forwarded only once its
    decision is written; a decision that could not be written is refused with 503 and never
    forwarded, and the connection serves the next request."""
    h = Harness()
    turn = _TurnAudit()
    h.factory.record_then = turn.record_then
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    assert [r["stage"] for r in turn.records] == ["RequestDecided"]
    assert h.upstream_sent() == b"" and h.received() == b""
    turn.end_turn(written)
    if not written:
        status, body = _status_and_json(h.received())
        assert status == 503 and "audit log" in body["message"]
        assert h.upstream_sent() == b""
        assert not h.client.disconnecting
        return
    assert h.upstream_sent().startswith(b"GET /_ping HTTP/1.1\r\n")
    h.reply(PING_OK)
    assert h.received().endswith(b"OK")


class _DenyLoad:
    name = "noload"

    def decide(self, request: CanonicalRequest, peer: Peer) -> Decision:
        if request.endpoint.id == "image.load":
            return Decision("deny", "noload", "no-load", "denied by policy noload rule no-load: image.load is not allowed")
        return Decision("allow", "noload")


def test_a_refused_upload_is_drained_so_the_client_reads_the_refusal() -> None:
    """A denied streamed upload is read and dropped (never forwarded); the connection stays usable."""
    h = Harness(policy=_DenyLoad())
    h.send(b"POST /images/load HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-tar\r\nContent-Length: 10\r\n\r\n01234")
    status, body = _status_and_json(h.received())
    assert status == 403 and "no-load" in body["message"]
    assert not h.client.disconnecting
    h.send(b"56789")
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    assert h.upstream_sent().startswith(b"GET /_ping")
    assert b"01234" not in h.upstream_sent() and b"56789" not in h.upstream_sent()


def test_a_refusal_after_asking_the_daemon_takes_the_pipelined_request() -> None:
    """A request refused once the daemon answered dockgate's own question (baseline
    looks an attach's container up first: missing) is answered, and the request
    pipelined behind it, already buffered, is read and forwarded then; the refused
    one never is."""
    h = Harness(policy=load_policy(str(REPO / "policies" / "baseline.yaml")))
    h.send(b"POST /containers/c1/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: d\r\n"
           b"Upgrade: tcp\r\nConnection: Upgrade\r\n\r\nGET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    lookup = h.endpoint.connections[0]
    assert lookup.transport.value().startswith(b"GET /containers/c1/json ")  # type: ignore[union-attr]
    _json_reply(lookup, b"404 Not Found", b'{"message":"No such container: c1"}')
    status, body = _status_and_json(h.received())
    assert status == 404 and body["message"] == "dockgate: No such container: c1"
    assert h.upstream_sent().endswith(b"GET /_ping HTTP/1.1\r\nhost: docker\r\n\r\n")
    assert b"attach" not in h.upstream_sent().split(b"GET /containers/c1/json", 1)[1]


def test_a_refused_upload_that_never_ends_is_cut() -> None:
    """Draining is bounded in time: a client that keeps the body open is disconnected."""
    h = Harness(policy=_DenyLoad())
    h.send(b"POST /images/load HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-tar\r\nContent-Length: 1000000\r\n\r\nabc")
    assert not h.client.disconnecting
    h.clock.advance(61)
    assert h.client.disconnecting


def test_a_refused_json_body_keeps_the_connection_in_step() -> None:
    """A JSON body refused after it was read whole is answered at once; the next request follows."""
    h = Harness()
    body = b'{"Image":"dgtest","image":"x"}'
    h.send(
        b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    status, msg = _status_and_json(h.received())
    assert status == 400 and "case-insensitively" in msg["message"]
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    assert h.upstream_sent().startswith(b"GET /_ping")
    assert b"dgtest" not in h.upstream_sent()


def test_large_heads_leave_no_trace_in_any_memory() -> None:
    """A client sending large, distinct heads cannot fill the fast path: only heads of up
    to ``fastpath.HEAD_LIMIT`` bytes are kept."""
    h = Harness()
    for i in range(3):
        pad = b"x" * 3000 + b"%d" % i
        h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\nX-Pad: " + pad + b"\r\n\r\n")
        h.reply(PING_OK)
    assert h.received().count(b"HTTP/1.1 200 OK") == 3
    assert len(h.factory.fast) == 0
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    assert len(h.factory.fast) == 1  # the control: a small head is kept


# -- tenants: side requests that never end, and event streams --------------------------

TEAM = Tenant(name="team-a")


def tenant_harness(**settings: Any) -> Harness:
    tenants = TenantMap([], default=TEAM)
    return Harness(tenants=lambda: tenants, **settings)


def answer(h: Harness, conn: int, body: Any, status: str = "200 OK") -> None:
    data = json.dumps(body).encode()
    h.endpoint.connections[conn].dataReceived(
        b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (status.encode(), len(data), data))


def sent(h: Harness, conn: int) -> bytes:
    return h.endpoint.connections[conn].transport.value()  # type: ignore[no-any-return,union-attr]


def test_an_ownership_check_the_daemon_never_answers_is_a_504() -> None:
    """When the daemon never answers dockgate's own ownership inspect, the client gets a 504 after
    the response timeout and nothing is forwarded."""
    h = tenant_harness(response_timeout=5.0)
    h.send(b"GET /v1.41/volumes/data HTTP/1.1\r\nHost: d\r\n\r\n")
    assert sent(h, 0).startswith(b"GET /v1.41/volumes/data HTTP/1.1")  # dockgate's own inspect
    h.clock.advance(5.1)
    status, body = _status_and_json(h.received())
    assert status == 504 and "did not answer in time" in body["message"]
    assert len(h.endpoint.connections) == 1  # nothing was forwarded


def event(kind: str, action: str, ident: str, owner: str | None = None) -> bytes:
    attrs = {OWNER_LABEL: owner} if owner else {}
    return json.dumps({"Type": kind, "Action": action, "time": 2000,
                       "Actor": {"ID": ident, "Attributes": attrs}}).encode() + b"\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_a_tenants_event_stream_waits_for_the_owner_of_a_volume_in_order() -> None:
    """A tenant's event stream holds events behind a volume whose owner is being asked, keeps their
    order, hides other tenants' events, and its end waits for the last answer."""
    h = tenant_harness()
    h.send(b"GET /v1.41/events HTTP/1.1\r\nHost: d\r\n\r\n")
    assert b"filters" not in sent(h, 0).split(b"\r\n")[0]  # no label filter for /events
    h.endpoint.connections[0].dataReceived(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")
    # dockgate asks for the tenant's volumes and networks (one at a time).
    assert sent(h, 1).startswith(b"GET /volumes?filters=")
    h.endpoint.connections[0].dataReceived(chunk(
        event("container", "start", "c1", "team-a") + event("volume", "create", "v1")
        + event("container", "start", "c2", "team-b") + event("container", "die", "c1",
                                                               "team-a")))
    answer(h, 1, {"Volumes": [{"Name": "old", "Labels": {OWNER_LABEL: "team-a"},
                               "CreatedAt": "1970-01-01T00:00:00Z"}]})
    answer(h, 1, [])  # networks, on the same (released) connection
    shown_so_far = h.received().partition(b"\r\n\r\n")[2]
    assert b'"start"' in shown_so_far and b'"die"' not in shown_so_far  # held behind v1
    assert b"GET /volumes/v1 " in sent(h, 1)
    answer(h, 1, {"Name": "v1", "Labels": {OWNER_LABEL: "team-a"},
                  "CreatedAt": "1970-01-01T00:10:00Z"})
    body = h.received().partition(b"\r\n\r\n")[2]
    lines = b"".join(x for x in body.split(b"\r\n") if x.startswith(b"{")).splitlines()
    shown = [json.loads(x) for x in lines]
    assert [(e["Type"], e["Action"], e["Actor"]["ID"]) for e in shown] == [
        ("container", "start", "c1"), ("volume", "create", "v1"), ("container", "die", "c1")]
    # The daemon ends the stream while a question is out: the end waits for it.
    h.endpoint.connections[0].dataReceived(chunk(event("network", "create", "n1")) + b"0\r\n\r\n")
    assert not h.received().endswith(b"0\r\n\r\n")
    answer(h, 1, {"Id": "n1", "Labels": {OWNER_LABEL: "team-b"}})
    assert h.received().endswith(b"0\r\n\r\n") and b'"n1"' not in h.received()


def test_an_unchanged_chunked_body_is_relayed_byte_for_byte_with_the_daemons_names() -> None:
    """A chunked body the client also gets chunked passes on exactly as the daemon
    framed it (its chunk sizes, not re-chunked), after a head whose header names keep
    the daemon's spelling; the connection then serves the next request."""
    h = Harness()
    h.send(b"GET /v1.41/containers/json HTTP/1.1\r\nHost: d\r\n\r\n")
    body = b"3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n"
    h.reply(b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + body[:7])
    h.reply(body[7:])
    head, _, rest = h.received().partition(b"\r\n\r\n")
    assert rest == body
    assert b"\r\nApi-Version: 1.41\r\n" in head and b"\r\nContent-Type: " in head
    assert b"\r\nTransfer-Encoding: chunked" in head
    h.client.clear()
    h.send(b"GET /v1.41/_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    h.reply(PING_OK)
    assert h.received().endswith(b"\r\n\r\nOK")


def test_a_chunked_body_to_an_http10_client_is_still_reframed() -> None:
    """An HTTP/1.0 client cannot take chunks: the body is taken apart and sent
    close-delimited, as before (no relay)."""
    h = Harness()
    h.send(b"GET /v1.41/containers/json HTTP/1.0\r\n\r\n")
    h.reply(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n")
    assert h.received().endswith(b"\r\n\r\n[1,2]")

def _redacting() -> Harness:
    text = "name: ro\nrules:\n  - id: r\n    redact: {env: true, exec_commands: true}\n"
    return Harness(policy=compile_policy(parse_yaml(text, "ro.yaml")))


def test_inspect_answers_are_redacted_and_reframed() -> None:
    """Under a redact rule the client gets Config.Env without values, with a
    Content-Length that matches the rewritten body."""
    h = _redacting()
    h.send(b"GET /containers/web/json HTTP/1.1\r\nHost: d\r\n\r\n")
    _json_reply(h.upstream, b"200 OK",
                b'{"Id":"x","Config":{"Env":["PATH=/bin","DB_PASSWORD=hunter2"]}}')
    head, _, body = h.received().partition(b"\r\n\r\n")
    assert b"hunter2" not in body
    assert json.loads(body)["Config"]["Env"] == ["PATH=<redacted>", "DB_PASSWORD=<redacted>"]
    assert b"content-length: %d\r\n" % len(body) in head.lower() + b"\r\n"


def test_an_inspect_answer_that_cannot_be_redacted_is_not_passed_on() -> None:
    """Not JSON: nothing of it reaches the client, the connection is aborted."""
    h = _redacting()
    h.send(b"GET /containers/web/json HTTP/1.1\r\nHost: d\r\n\r\n")
    h.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\nDB_PASSWORD=hunt")
    assert b"hunt" not in h.received()
    assert h.client.disconnecting or h.client.disconnected


def test_event_streams_are_redacted_as_they_stream() -> None:
    """Each event line is sent as soon as it is complete, exec command lines removed,
    whatever the daemon's chunks split."""
    h = _redacting()
    h.send(b"GET /events HTTP/1.1\r\nHost: d\r\n\r\n")
    h.reply(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    line = b'{"status":"exec_create: sh -c pw","Action":"exec_create: sh -c pw","Type":"container"}\n'
    first, second = line[:30], line[30:]
    h.reply(b"%x\r\n%s\r\n" % (len(first), first))
    assert b"exec_create" not in h.received()
    h.reply(b"%x\r\n%s\r\n" % (len(second), second))
    got = h.received()
    assert b"sh -c pw" not in got
    assert b'"Action":"exec_create: <redacted>"' in got
    start = b'{"status":"start","Type":"container"}\n'
    h.reply(b"%x\r\n%s\r\n" % (len(start), start))
    assert h.received().endswith(start + b"\r\n")


class _PeekAtCompletion(_Audit):
    """Records, when each ResponseComplete is recorded, what the client's socket holds."""

    def __init__(self, client: Any) -> None:
        super().__init__()
        self.client = client
        self.at_completion: list[bytes] = []

    def record(self, event: AuditEvent) -> None:
        super().record(event)
        if event.stage == "ResponseComplete":
            try:
                self.at_completion.append(
                    self.client.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT))
            except BlockingIOError:
                self.at_completion.append(b"")


def test_the_response_reaches_the_client_before_its_completion_is_recorded() -> None:
    """A finished response is sent on the client's socket (write-through, as
    ``dockgate serve`` runs) before the exchange's ResponseComplete record and
    the rest of its bookkeeping, not at the end of the daemon's read: the
    client can send its next request meanwhile.  The record is the same."""
    from dockgate.fastio.reactor import DockgateReactor  # noqa: PLC0415 (a reactor of its own)

    reactor = DockgateReactor()
    client, server = socket.socketpair()
    try:
        endpoint = _Endpoint()
        audit = _PeekAtCompletion(client)
        policy = AllowAll()
        settings = ProxySettings(upstream=endpoint, policy=lambda: policy,  # type: ignore[arg-type]
                                 audit=audit)
        factory = ProxyServerFactory(settings, "test", reactor)
        reactor.adoptStreamConnection(server.fileno(), socket.AF_UNIX, factory)
        client.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        for _ in range(10):
            if endpoint.connections:
                break
            reactor.doPoll(1.0)
        answer = (b"HTTP/1.1 200 OK\r\nApi-Version: 1.51\r\nContent-Length: 2\r\n"
                  b"Content-Type: text/plain; charset=utf-8\r\n\r\nOK")
        endpoint.connections[-1].dataReceived(answer)
        assert [r["stage"] for r in audit.records] == ["RequestDecided", "ResponseComplete"]
        assert audit.records[-1]["status"] == 200
        assert audit.at_completion[0].startswith(b"HTTP/1.1 200 OK\r\n")
        assert audit.at_completion[0].endswith(b"\r\n\r\nOK")
    finally:
        reactor.removeAll()
        reactor._poller.close()
        client.close()
        server.close()


def _large_create(labels: int, *, twice: bool = False) -> bytes:
    """A container create over ``HEAVY_BODY`` bytes, framed; ``twice`` repeats a key."""
    members = {f"k{i:05}": "v" * 20 for i in range(labels)}
    body = json.dumps({"Image": "dgtest", "Labels": members}).encode()
    if twice:
        body = body[:-1] + b',"image":"x"}'
    assert len(body) > HEAVY_BODY
    return (b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def _take_turns(h: Harness) -> None:
    """Let the clock run until no admission step is left."""
    while h.factory.turns.pending:
        h.clock.advance(1)


def test_a_large_body_is_admitted_between_turns_and_forwarded_canonical() -> None:
    """A JSON body over HEAVY_BODY is not decoded in the turn that read it: another
    client's request read in that turn is forwarded first; on the following turns the
    body is admitted and forwarded in canonical form."""
    h = Harness()
    h.send(_large_create(1000))
    assert h.upstream_sent() == b"" and h.factory.turns.pending == 1
    other = h.factory.buildProtocol(None)
    other.makeConnection(HalfCloseTransport())
    other.dataReceived(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    assert h.upstream_sent().startswith(b"GET /_ping")
    _take_turns(h)
    sent = h.upstream_sent()
    assert b"POST /containers/create" in sent and b'"Image":"dgtest","Labels":{"k00000"' in sent
    assert h.factory.turns.pending == 0


@pytest.mark.parametrize(("twice", "labels", "status", "needle"), [
    (True, 1000, 400, "case-insensitively"),
    (False, 20001, 413, "more than 20000 object members"),
])
def test_a_large_body_is_refused_as_an_inline_one_and_the_connection_stays_in_step(
    twice: bool, labels: int, status: int, needle: str,
) -> None:
    """A large body refused in its turns gets the status and message an inline body
    gets, nothing goes upstream, and the next request on the connection follows."""
    h = Harness()
    h.send(_large_create(labels, twice=twice))
    _take_turns(h)
    got, msg = _status_and_json(h.received())
    assert got == status and needle in msg["message"]
    assert h.upstream_sent() == b""
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    assert h.upstream_sent().startswith(b"GET /_ping")


def test_a_client_gone_before_its_large_body_is_admitted_costs_no_more_turns() -> None:
    """A client that disconnects while its large body waits for its turns has its
    admission cancelled: nothing is decoded or forwarded for it."""
    h = Harness()
    h.send(_large_create(1000))
    h.proto.connectionLost(Failure(ConnectionDone()))
    h.clock.advance(0)
    assert h.upstream_sent() == b"" and h.factory.turns.pending == 0


def test_a_request_pipelined_behind_a_large_body_follows_it_in_order() -> None:
    """A request sent in the same segment as a large body waits in the reader while
    the body is admitted in turns, and is forwarded after the body's answer."""
    h = Harness()
    h.send(_large_create(1000) + b"GET /version HTTP/1.1\r\nHost: d\r\n\r\n")
    _take_turns(h)
    assert b"POST /containers/create" in h.upstream_sent()
    assert b"GET /version" not in h.upstream_sent()
    h.reply(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
    h.clock.advance(0)
    assert b"GET /version" in h.upstream_sent()
    h.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    assert h.received().count(b"HTTP/1.1 20") == 2


# -- the exchange's states, played through the real protocol (``lifecycle``) --

_LOAD = b"POST /images/load HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-tar\r\n"


def _completions(h: Harness) -> list[str]:
    """The ids of the ResponseComplete records, in order."""
    return [r["id"] for r in h.audit.records if r["stage"] == "ResponseComplete"]


def _timers(h: Harness) -> list[Any]:
    """Pending reactor timers other than the connection's own head and answer deadlines."""
    own = {h.proto._head_deadline._fire, h.proto._answer_deadline._fire}
    return [c for c in h.clock.getDelayedCalls() if c.func not in own]


def test_playbook_pipelined_gets_walk_the_states_in_turn() -> None:
    """Two pipelined GETs: the first waits in AWAITING while the second waits in the
    reader; the answer finishes the first (IDLE) and the second is forwarded at once."""
    h = Harness()
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\nGET /version HTTP/1.1\r\nHost: d\r\n\r\n")
    assert h.proto.state is State.AWAITING
    h.reply(PING_OK)
    assert h.proto.state is State.AWAITING and h.upstream_sent().count(b"GET /") == 2
    h.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    assert h.proto.state is State.IDLE
    assert len(_completions(h)) == 2 and len(set(_completions(h))) == 2


def test_playbook_100_continue_is_sent_while_the_json_body_is_buffered() -> None:
    """``Expect: 100-continue`` on a JSON body: dockgate (not the daemon) says
    continue on entering BUFFERING; the body is then admitted whole."""
    h = Harness()
    body = b'{"Image":"dgtest"}'
    h.send(b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
           b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    assert h.proto.state is State.BUFFERING
    assert h.received() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert h.upstream_sent() == b""
    h.send(body)
    assert h.proto.state is State.AWAITING
    assert h.upstream_sent().endswith(body)


def test_playbook_a_refused_upload_drains_then_finishes_without_a_timer_left() -> None:
    """Refused at its head: DRAINING until the body ends, then IDLE; the drain
    deadline is cancelled with the exchange and one completion is recorded."""
    h = Harness(policy=_DenyLoad())
    h.send(_LOAD + b"Content-Length: 10\r\n\r\n01234")
    assert h.proto.state is State.DRAINING and len(_timers(h)) == 1
    h.send(b"56789")
    assert h.proto.state is State.IDLE
    assert _timers(h) == []
    assert [r["stage"] for r in h.audit.records] == ["RequestDecided", "ResponseComplete"]


def test_playbook_a_drain_past_its_byte_bound_closes_once() -> None:
    """A refused upload longer than the drain allows is cut: CLOSED, its timer
    cancelled, one completion record."""
    h = Harness(policy=_DenyLoad())
    h.send(_LOAD + b"Content-Length: %d\r\n\r\n" % (2 << 30))
    assert h.proto.state is State.DRAINING
    h.proto.exchange.bytes_in = protocol._DRAIN_BYTES  # type: ignore[union-attr]
    h.send(b"x")
    assert h.proto.state is State.CLOSED and h.client.disconnecting
    assert _timers(h) == []
    h.proto.connectionLost(Failure(ConnectionDone()))
    assert len(_completions(h)) == 1


def test_playbook_client_eof_mid_head_is_answered_400_with_one_record() -> None:
    """The client half-closes in the middle of a head: it is answered 400 (as
    the daemon answers) with one refusal record, and the connection closes;
    nothing goes upstream."""
    h = Harness()
    h.send(b"GET /_ping HTTP/1.1\r\nHo")
    h.proto.readConnectionLost()
    assert h.proto.state is State.CLOSED and h.client.disconnecting
    assert h.received().startswith(b"HTTP/1.1 400 ")
    assert b"dockgate: " in h.received()
    assert h.endpoint.connections == []  # no daemon connection was even made
    h.proto.connectionLost(Failure(ConnectionDone()))
    assert len(_completions(h)) == 1


def test_playbook_client_eof_between_requests_just_closes() -> None:
    """A half-close with nothing buffered (between requests) closes quietly."""
    h = Harness()
    h.proto.readConnectionLost()
    assert h.proto.state is State.CLOSED and h.received() == b""


def test_playbook_client_eof_mid_body_aborts_the_upload_with_one_record() -> None:
    """The client half-closes mid-upload: the truncated body is refused (400),
    the upstream request aborted, the connection CLOSED, one completion."""
    h = Harness()
    h.send(_LOAD + b"Content-Length: 1000\r\n\r\nabc")
    assert h.proto.state is State.SENDING
    h.proto.readConnectionLost()
    assert h.proto.state is State.CLOSED
    assert h.received().startswith(b"HTTP/1.1 400 ")
    assert h.upstream.transport.disconnecting  # type: ignore[union-attr]
    h.proto.connectionLost(Failure(ConnectionDone()))
    assert len(_completions(h)) == 1


def test_playbook_the_daemon_lost_before_its_answer_is_a_502_and_the_connection_goes_on() -> None:
    """The daemon drops the connection before its head: a 502 (REFUSE), then
    IDLE for the next request; after its head it would be an abort instead."""
    h = Harness()
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    h.upstream.connectionLost(Failure(ConnectionDone()))
    assert h.received().startswith(b"HTTP/1.1 502 ")
    assert h.proto.state is State.IDLE and not h.client.disconnecting
    assert len(_completions(h)) == 1


def test_playbook_a_hijack_is_spliced_and_ends_with_one_session_record() -> None:
    """A 101 makes the connection SPLICED; the splice closing it makes it CLOSED;
    the session's last record is written once, after its exit code."""
    h = Harness()
    h.send(b"POST /containers/abc/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: d\r\n"
           b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n")
    h.reply(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    assert h.proto.state is State.SPLICED and h.proto.exchange is not None
    h.proto.readConnectionLost()
    h.upstream.readConnectionLost()
    assert h.proto.state is State.CLOSED and h.proto.exchange is None
    h.proto.connectionLost(Failure(ConnectionDone()))
    state = b'{"State":{"Running":false,"ExitCode":0}}'
    h.endpoint.connections[-1].dataReceived(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(state), state))
    assert [r["stage"] for r in h.audit.records].count("SessionEnded") == 1


def test_playbook_http10_is_answered_then_closed() -> None:
    """An HTTP/1.0 request takes the same states; FINISH is followed by CLOSED."""
    h = Harness()
    h.send(b"GET /_ping HTTP/1.0\r\n\r\n")
    assert h.proto.state is State.AWAITING
    h.reply(PING_OK)
    assert h.received().startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"\r\nConnection:" not in h.received()  # as Go answers HTTP/1.0
    assert h.proto.state is State.CLOSED and h.client.disconnecting
    assert len(_completions(h)) == 1


def test_http10_keep_alive_pipelined_requests_are_each_answered() -> None:
    """Two pipelined HTTP/1.0 requests asking for keep-alive are answered in turn
    on one connection, each ``Connection: keep-alive``, and the connection stays
    open, as the daemon does."""
    h = Harness()
    h.send(b"GET /_ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
    h.reply(PING_OK)
    h.reply(PING_OK)
    got = h.received()
    assert got.count(b"HTTP/1.0 200 OK\r\n") == 2
    assert got.count(b"\r\nConnection: keep-alive\r\n") == 2
    assert h.proto.state is State.IDLE and not h.client.disconnecting
    assert len(_completions(h)) == 2


@pytest.fixture
def forward_all_taken_out() -> Iterator[None]:
    """``lifecycle.NEXT`` without the move CONNECTING --FORWARD_ALL--> (in place: the
    compiled protocol holds the table itself), put back afterwards."""
    row = lifecycle.NEXT[State.CONNECTING]
    saved = row[lifecycle.FORWARD_ALL]
    row[lifecycle.FORWARD_ALL] = None
    try:
        yield
    finally:
        row[lifecycle.FORWARD_ALL] = saved


@pytest.mark.usefixtures("forward_all_taken_out")
def test_an_illegal_move_is_a_500_and_a_closed_connection_never_a_hang() -> None:
    """A bug that asks the table for a move it lacks (here: forwarding a request
    whole is taken out of the table) is answered 500 while nothing was sent,
    the daemon's connection is aborted and the exchange recorded once."""
    h = Harness()
    h.send(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    status, body = _status_and_json(h.received())
    assert status == 500 and body["message"] == "dockgate: internal error handling the request"
    assert h.proto.state is State.CLOSED and h.client.disconnecting
    assert h.upstream.transport.disconnecting  # type: ignore[union-attr]
    assert [r["stage"] for r in h.audit.records] == ["RequestDecided", "ResponseComplete"]
    assert h.audit.records[-1]["status"] == 500

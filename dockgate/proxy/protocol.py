"""The client side of the proxy: one protocol instance per accepted connection.

Theory of operation
-------------------
Each client connection has a ``http1.server.RequestReader``.  Requests are
handled strictly one at a time: the reader reports ``PAUSED`` after a request
until its exchange has finished and ``next_cycle`` was called, and reading
from the client is paused meanwhile, so nothing is buffered without bound.

For every request head:

1. ``wire.check_request_head`` checks the raw head bytes for framing that two
   parsers could read differently, and the reader parses it strictly;
2. ``admission.admit_head`` routes and canonicalises it;
3. for JSON endpoints the body is buffered (under a cap) and
   ``admission.admit_body`` canonicalises it;
4. ``decision.decide`` returns allow or deny — the single decision point;
5. only then is an upstream connection taken from the pool and a head that
   dockgate serialised itself sent, followed by the canonical body, or by the
   client's body streamed with back-pressure.

A head seen before from the same caller, without a body and decided on the
request and caller alone, skips steps 1 to 4 and the serialisation: the
listener's ``fastpath.FastPath`` has the whole result (``_begin``).

The response is read by ``http1.ResponseReader`` and its head written anew
for the client by ``http1.server.ResponseWriter`` (framing headers derived by
dockgate, the daemon's other header names spelled as it spelled them).  A body
that reaches the client in the daemon's own framing (chunked to an HTTP/1.1
client, or the same Content-Length) and is not rewritten is relayed as it
came: the reader scans its framing strictly on every read and the bytes go on
whole (``ResponseReader.relay``), so relaying costs a scan per read, not a
slice and a new chunk per chunk; any other body is taken apart and framed
anew.  On a route that may hijack, a 101 (or the
daemon's legacy raw-stream 200 without framing) turns both connections into a
byte-for-byte splice with half-close (``splice.Splice``); such connections
never carry another HTTP request and never return to the pool.

Back-pressure: this protocol is the push producer registered on the client
transport (a full client socket pauses reading from the daemon), and each
``UpstreamConnection`` is the producer on its own transport (a full daemon
socket pauses reading from the client).  ``gate.ReadGate`` combines the
reasons a side may be paused.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from http import HTTPStatus
from typing import Any, ClassVar, Final, NamedTuple, cast
from urllib.parse import quote

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IHandshakeListener,
    ILoggingContext,
    IProtocol,
    IPushProducer,
)
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import classImplements

from dockgate.admission.admit import HEAVY_BODY, admit_body, admit_body_steps, admit_head
from dockgate.admission.versions import clamp_api_version, clamp_version_body, is_known_version
from dockgate.buildctx import ContextError, DockerfileFacts
from dockgate.buildctx.hold import HeldContext, classic_context
from dockgate.buildkit.connection import build_judge, mediated_splice
from dockgate.errors import (
    AuditUnavailable,
    BadRequest,
    BodyTooLarge,
    DockgateError,
    Forbidden,
    RequestTimeout,
    TooManyConnections,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from dockgate.fastio import sockio, writethrough
from dockgate.http1 import wire
from dockgate.http1.client import Framing, Head, ProtocolError, request_head
from dockgate.http1.server import PAUSED, Body, End, Request, RequestReader, ResponseWriter
from dockgate.memo import SMALL, IdentityMemo
from dockgate.model import AuditEvent, AuditStage, CanonicalRequest, Decision, Peer, whole_micros
from dockgate.policy import DaemonFacts, DecisionContext, load_policy, redact
from dockgate.policy.buildcontrol import wants_dockerfile
from dockgate.policy.decision import Policy, decide
from dockgate.policy.joincheck import (
    check_base_triggers,
    check_build_images,
    check_joins,
    check_tenant_build,
    needs_joins,
)
from dockgate.proxy import binding, lifecycle
from dockgate.proxy.daemon_client import Answer, DaemonClient
from dockgate.proxy.deadline import Deadline
from dockgate.proxy.fastpath import FastPath, Finder, Known
from dockgate.proxy.gate import NativeProtocol, ReadGate
from dockgate.proxy.lifecycle import Event, IllegalTransition, State
from dockgate.proxy.peer import peer_of, principal_from_certificate
from dockgate.proxy.settings import ProxySettings
from dockgate.proxy.splice import Splice
from dockgate.proxy.turns import Job, Turns
from dockgate.proxy.upstream import UpstreamConnection, UpstreamPool
from dockgate.proxy.workers import Offloaded
from dockgate.tenancy import Tenant, filter_list, needs_usage, with_tenant_sets
from dockgate.tenancy.event_scope import EventScope
from dockgate.tenancy.holds import HOLDS, Claim
from dockgate.tenancy.missing import NamesBack, StandIn, forwarded
from dockgate.tenancy.scoping import check_quota, owned_objects, owns_object, scope_request

# proxy.lifecycle's states, events and sets, as this module's own constants: the
# compiled module reads a Final of its own from a C static, an imported name from
# its globals dict (some twenty lookups an exchange).
ALLOW: Final = lifecycle.ALLOW
ANSWERING: Final = lifecycle.ANSWERING
AWAITING: Final = lifecycle.AWAITING
BODY_END: Final = lifecycle.BODY_END
BUFFER: Final = lifecycle.BUFFER
BUFFERING: Final = lifecycle.BUFFERING
CLOSE: Final = lifecycle.CLOSE
CLOSED: Final = lifecycle.CLOSED
DOCKERFILE: Final = lifecycle.DOCKERFILE
DRAINING: Final = lifecycle.DRAINING
FINISH: Final = lifecycle.FINISH
FORWARD_ALL: Final = lifecycle.FORWARD_ALL
FORWARD_STREAM: Final = lifecycle.FORWARD_STREAM
HEAD: Final = lifecycle.HEAD
HEARD: Final = lifecycle.HEARD
HOLD: Final = lifecycle.HOLD
IDLE: Final = lifecycle.IDLE
REFUSE: Final = lifecycle.REFUSE
RESPONSE: Final = lifecycle.RESPONSE
SENDING: Final = lifecycle.SENDING
SPLICE: Final = lifecycle.SPLICE
UNANSWERED: Final = lifecycle.UNANSWERED
VERIFIED: Final = lifecycle.VERIFIED
VERIFY: Final = lifecycle.VERIFY
WAITING: Final = lifecycle.WAITING

_NEXT: Final = lifecycle.NEXT
"""The table ``_go`` steps through (rows changed in place by a test: the same object)."""

# The clocks an exchange reads (four times each), bound once: the compiled module
# calls a Final of its own without looking the name up.
_wall: Final = time.time
_clock: Final = time.monotonic


def _micros(seconds: float) -> float:
    """``seconds`` (not negative) to the nearest microsecond, halves up
    (``model.whole_micros``)."""
    return whole_micros(seconds) / 1e6


_HIJACK_UPGRADES: Final = frozenset({b"tcp", b"h2c", b"websocket"})
"""Upgrade protocols the daemon speaks on hijack routes; any other is dropped."""


_DRAIN_BYTES: Final = 1 << 30
_DRAIN_SECONDS: Final = 60.0
"""How much of a refused request's body is read and dropped before closing."""

_MAX_HELD: Final = 64 << 20
"""Largest response body dockgate holds to rewrite or filter."""
_EVENTS_BACKLOG: Final = 4 << 20
"""Most of a tenant's event stream held while the daemon says who owns a volume or
network (thousands of events); a stream that would need more is ended."""

_TENANT_LISTS: Final = {
    "container.list": "container",
    "image.list": "image",
    "network.list": "network",
    "volume.list": "volume",
}
"""List endpoints whose responses are filtered to the tenant's objects."""


def _list_filter(kind: str, tenant: Tenant) -> Callable[[Any], Any]:
    """The transform that keeps only ``tenant``'s objects in a list response."""

    def keep_own(value: Any) -> Any:
        if kind == "volume" and isinstance(value, dict):
            value["Volumes"] = filter_list(kind, value.get("Volumes") or [], tenant)
            return value
        return filter_list(kind, value if isinstance(value, list) else [], tenant)

    return keep_own


def _same(value: Any) -> Any:
    return value


_WARNABLE: Final = frozenset({
    "container.create", "container.update", "service.create", "service.update"})
"""Endpoints whose JSON response has a ``Warnings`` list the docker CLI prints."""


_ID_PREFIX: Final = os.urandom(8).hex()
_ID_COUNTER: Final = itertools.count(1)


def _new_id() -> str:
    """A fresh exchange id: 32 hex digits like a UUID, without a system call each.

    A random prefix per process and a counter: unique within the process and,
    by the prefix, across restarts; ``uuid4`` reads the kernel's random source
    on every call, which showed up on the per-request path.
    """
    return _ID_PREFIX + next(_ID_COUNTER).to_bytes(8, "big").hex()


def _exit_code_source(x: Exchange) -> str | None:
    """Where the daemon reports how a hijacked session's process ended, if it does."""
    request = x.request
    if request is None or "id" not in request.params:
        return None
    ident = quote(request.params["id"], safe="")
    if request.endpoint.id == "exec.start":
        return f"/exec/{ident}/json"
    if request.endpoint.id == "container.attach":
        return f"/containers/{ident}/json"
    return None


def _wants_daemon(policy: Policy, x: Exchange, proto: ProxyServerProtocol) -> bool:
    """Whether ``policy`` decides ``x`` from the daemon's ``/info`` facts."""
    wants = getattr(policy, "wants_daemon_facts", None)
    assert x.request is not None and proto.peer is not None
    return wants is not None and bool(wants(x.request, proto.peer))


def _caller(peer: Peer) -> str:
    """A caller's identity in words, for refusals."""
    if peer.principal:
        return f"certificate {peer.principal}"
    if peer.user or peer.uid is not None:
        return f"user {peer.user or peer.uid}"
    return peer.address


def _peer_key(peer: Peer) -> str:
    """The caller a per-peer connection cap counts against."""
    if peer.principal:
        return f"principal:{peer.principal}"
    if peer.uid is not None:
        return f"uid:{peer.uid}"
    return "host:" + peer.address.rpartition(":")[0]


def _phrase(status: int) -> bytes:
    """The standard reason phrase for ``status``."""
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Error"


class ResponseFacts(NamedTuple):
    """What an exchange needs from the daemon's response head (``_response_facts``)."""

    headers: tuple[tuple[bytes, bytes], ...]
    """The daemon's headers as it spelled them, its ``Api-Version`` clamped to
    what dockgate knows."""
    forwarded: tuple[tuple[bytes, bytes], ...]
    """The end-to-end headers for the client, and the daemon's Content-Length,
    in the daemon's order and spelling."""
    framed: bool
    """Whether the head gave a Content-Length or a Transfer-Encoding."""
    json: bool
    """Whether the body is labelled ``application/json``."""
    api_version: str | None
    """The daemon's ``Api-Version``, as sent."""


_HEAD_READ_TRIES: Final = 400
"""How many half milliseconds a hijacked session's first daemon bytes wait at
most for the client to read the head before them (``_daemon_bytes_after_head``)."""
_FACTS: Final[IdentityMemo[Head, ResponseFacts]] = IdentityMemo(256)
"""Facts of the daemon's response heads, by the parsed head ``http1.client`` shares
between repetitions of the same bytes (outside ``fastpath``'s reach: see there)."""


def _response_facts(head: Head) -> ResponseFacts:
    """The facts of ``head``, worked out once per parsed head (``http1`` shares
    the object between repetitions of the same bytes, see ``memo``)."""
    found = _FACTS.get(head)
    if found is not None:
        return found
    headers: list[tuple[bytes, bytes]] = []
    api_version = None
    size = 0
    for (name, value), (sent, _) in zip(head.headers, head.spelled or head.headers, strict=True):
        size += len(name) + len(value)
        if name == b"api-version":
            api_version = value.decode("ascii", "replace")
            headers.append((sent, clamp_api_version(api_version).encode("ascii")))
        else:
            headers.append((sent, value))
    names = {n for n, _ in head.headers}
    forwarded = tuple(wire.end_to_end(headers, keep_length=True))
    content_type = dict(head.headers).get(b"content-type", b"")
    facts = ResponseFacts(
        tuple(headers),
        forwarded,
        b"content-length" in names or b"transfer-encoding" in names,
        content_type.startswith(b"application/json"),
        api_version,
    )
    if size <= SMALL:  # larger heads are not shared by ``http1`` either
        _FACTS.put(head, facts)
    return facts


@dataclass(init=False)
class Exchange:
    """What one request/response exchange on a client connection holds and knows.

    Where it stands is not here but in its connection's ``state``
    (``proxy.lifecycle``); what it holds (the upstream connection, the drain
    timer, the quota lock, the event scope) is released in one place,
    ``ProxyServerProtocol._teardown``.

    Its ``__init__`` is written out rather than generated: mypyc compiles a
    method written in the class, while a dataclass's generated ``__init__``
    stays interpreted (setting 36 attributes, one exchange per request).
    """

    id: str
    method: str
    raw_target: str
    started: float
    has_body: bool
    chunked: bool
    length: int | None
    upgrade: bytes | None
    request: CanonicalRequest | None
    decision: Decision | None
    upstream: UpstreamConnection | None
    body: bytearray
    status: int | None
    bytes_in: int
    bytes_out: int
    timer: IDelayedCall | None
    """A refused request's drain deadline."""
    error: str | None
    held: tuple[int, bytes, tuple[tuple[bytes, bytes], ...]] | None
    held_body: bytearray
    transform: Callable[[Any], Any] | None
    must_filter: bool
    stages: set[str]
    exit_code: int | None
    tenant: Tenant | None
    forwarded: float | None
    upstream_seconds: float | None
    quota_lock: DeferredLock | None
    events: EventScope | None
    """A tenant's /events stream, filtered line by line (``event_scope``)."""
    redactions: list[redact.Redaction]
    """The policy's ``redact`` rules for this request's answer (``redact``)."""
    redactor: redact.EventRedactor | NamesBack | None
    """Rewrites an /events stream line by line (``redact.EventRedactor``), or an answer
    that names stand-ins (``missing.NamesBack``)."""
    stand_ins: list[StandIn]
    claims: list[Claim]
    """Image names this exchange holds (``tenancy.holds``), released with it."""
    """Stand-ins the forwarded request names instead of the caller's names (``scoping``)."""
    bound_image: str | None
    """The image id a create's decision read; the created container must run it
    (``binding.verify_created``)."""
    context: HeldContext | None
    """A classic build's context, held until its Dockerfile is read (``buildctx.hold``)."""
    build_judge: Any
    """What an upgraded BuildKit connection is mediated with; None splices it blind
    (``buildkit.connection``)."""
    known: Known | None
    """The fast path's entry this exchange took or made (``fastpath``)."""

    def __init__(
        self, *, id: str, method: str, raw_target: str, started: float, has_body: bool,
        chunked: bool, length: int | None, upgrade: bytes | None
    ) -> None:
        self.id = id
        self.method = method
        self.raw_target = raw_target
        self.started = started
        self.has_body = has_body
        self.chunked = chunked
        self.length = length
        self.upgrade = upgrade
        self.request = None
        self.decision = None
        self.upstream = None
        self.body = bytearray()
        self.status = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.timer = None
        self.error = None
        self.held = None
        self.held_body = bytearray()
        self.transform = None
        self.must_filter = False
        self.stages = set()
        self.exit_code = None
        self.tenant = None
        self.forwarded = None
        self.upstream_seconds = None
        self.quota_lock = None
        self.events = None
        self.redactions = []
        self.redactor = None
        self.stand_ins = []
        self.claims = []
        self.bound_image = None
        self.context = None
        self.build_judge = None
        self.known = None


class ProxyServerFactory(ServerFactory):
    """Builds a ``ProxyServerProtocol`` per accepted connection on one listener."""

    log = Logger()

    def __init__(self, settings: ProxySettings, listener: str, reactor: Any) -> None:
        self.settings = settings
        self.listener = listener
        self.reactor = reactor
        self.pool = UpstreamPool(
            settings.upstream,
            reactor,
            size=settings.pool_size,
            connect_timeout=settings.connect_timeout,
        )
        self.daemon = DaemonClient(reactor, settings.upstream,
                                   answer_timeout=settings.response_timeout)
        """dockgate's own questions to the daemon (side requests)."""
        self.open_connections = 0
        self.per_peer: dict[str, int] = {}
        self.api = settings.api
        # What every exchange reads of ``settings``, as this native class's own
        # attributes (``ProxySettings`` is interpreted: each read a lookup).
        self.policy = settings.policy
        self.tenants = settings.tenants
        self.head_timeout = settings.head_timeout
        self.idle_timeout = settings.idle_timeout
        self.response_timeout = settings.response_timeout
        self.turns = Turns(reactor)
        """Large bodies' admission, a step per reactor turn (see ``turns``)."""
        self._quota_locks: dict[str, DeferredLock] = {}
        self._policies: dict[str, tuple[int, Policy]] = {}
        self.daemon_facts: DaemonFacts | None = None  # GET /info, read once when a policy asks
        self.fast = FastPath(never=binding.STARTS)
        """Requests seen before on this listener, with their whole admission result."""
        self.connections: set[ProxyServerProtocol] = set()
        """Open client connections, so a shutdown can complete their records."""
        self.record_then: Callable[[AuditEvent, Callable[[bool], None]], None] | None = getattr(
            settings.audit, "record_then", None)
        """The audit sink's way to record a decision and call back once it is written
        (see ``audit.JsonLinesAudit.record_then``), if it has one; else decisions are
        recorded with ``record``, which returns once they are written."""

    def shut_down(self) -> None:
        """dockgate is stopping: end every open exchange now, with its last record.

        Called before the audit log closes; a stream that never ends by itself
        (``docker events``, ``logs -f``) would otherwise lose its
        ``ResponseComplete`` when the reactor drops the connection later.
        """
        for connection in list(self.connections):
            connection.shut_down()

    def quota_lock(self, tenant: str) -> DeferredLock:
        """The lock that serialises a tenant's quota-checked requests."""
        return self._quota_locks.setdefault(tenant, DeferredLock())

    def policy_at(self, path: str) -> Policy:
        """A tenant's own policy, re-read when its file changes.

        An invalid file keeps the policy that was last loaded from it; with
        none loaded yet, the error refuses the request (fail closed).
        """
        try:
            stamp = os.stat(path).st_mtime_ns
        except OSError:
            stamp = -1
        cached = self._policies.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            policy = load_policy(path)
        except Exception as e:
            if cached is not None:
                self.log.warn("policy {path} invalid, keeping the old one: {e}", path=path, e=e)
                return cached[1]
            raise Forbidden(f"tenant policy {path} cannot be loaded", reason="policy") from e
        self._policies[path] = (stamp, policy)
        return policy

    def connection_opened(self, key: str) -> tuple[int, int]:
        """Count a new connection; return the totals overall and for its peer."""
        self.open_connections += 1
        self.per_peer[key] = self.per_peer.get(key, 0) + 1
        return self.open_connections, self.per_peer[key]

    def connection_closed(self, key: str) -> None:
        """Uncount a connection."""
        self.open_connections -= 1
        left = self.per_peer.get(key, 1) - 1
        if left > 0:
            self.per_peer[key] = left
        else:
            self.per_peer.pop(key, None)

    def note_daemon_version(self, version: str) -> None:
        """Use the daemon's own API version for requests that name none.

        Unversioned requests are read by the daemon at its own version, so
        they are validated against that version's schema too.
        """
        if version != self.api.daemon_version and is_known_version(version):
            self.api = replace(self.api, daemon_version=version)

    def buildProtocol(self, addr: Any) -> ProxyServerProtocol:  # type: ignore[override]
        """A fresh protocol for each connection (an ``IProtocol`` provider; Twisted's
        stubs want a ``Protocol`` subclass, which it is not, see the class)."""
        return ProxyServerProtocol(self)

    def startFactory(self) -> None:
        """Ask the daemon for its API version once, before clients do."""
        self.daemon.ask("GET", "/version").addCallback(self._learn_version)

    def _learn_version(self, answer: Answer) -> None:
        value = answer.value
        if isinstance(value, dict) and isinstance(value.get("ApiVersion"), str):
            self.note_daemon_version(value["ApiVersion"])

    def stopFactory(self) -> None:
        """Close pooled upstream connections, and the side requests', when the listener
        stops."""
        self.pool.close_idle()
        self.daemon.close()


class ProxyServerProtocol(NativeProtocol):
    """One client connection: parse, decide, forward, one request at a time.

    An ``IProtocol`` provider without Twisted's ``Protocol`` base, so that it
    compiles to a native class (``gate.NativeProtocol``).
    """

    log: ClassVar[Logger] = Logger()

    def __init__(self, factory: ProxyServerFactory) -> None:
        super().__init__()
        self.factory = factory
        self.settings = factory.settings
        self.reactor = factory.reactor
        self.reader = RequestReader(self.settings.max_head_size)
        self.writer = ResponseWriter()
        self._http10 = False
        self.peer: Peer | None = None
        self.gate: ReadGate | None = None
        self.exchange: Exchange | None = None
        self.splice: Splice | None = None
        self._early: list[bytes | None] | None = None
        """While a session's head waits to be read: the daemon's bytes meanwhile
        (None: its end), passed on in order once it was (``_daemon_bytes_after_head``)."""
        self._batch: list[bytes | memoryview] | None = None
        """What is written to the client while ``_batch_depth`` is above 0: the events
        of one read of the daemon's socket (head, body, end), sent in one write when
        the read is done (``upstream_batch``), or sooner when a response ends or the
        connection is closed or handed over (``_flush_client``)."""
        self._batch_depth = 0
        self.state = IDLE
        """Where the connection's exchange stands; moved only by ``_go`` (``lifecycle``)."""
        self._head_deadline = Deadline(self.reactor, self._head_timed_out)
        self._answer_deadline = Deadline(self.reactor, self._response_timeout)
        self._peer_key = ""
        self._finder: Finder | None = None
        """This connection's lookup on the listener's fast path (``fastpath``)."""
        self._admitting: Job | Offloaded | None = None

    # -- Twisted interfaces -------------------------------------------------

    def connectionMade(self) -> None:
        """Fix the peer's identity and register for write back-pressure."""
        assert self.transport is not None
        writethrough.enable(self.transport)
        self.peer = peer_of(self.transport, self.factory.listener)
        self._peer_key = _peer_key(self.peer)
        self.reader.lookup = self._finder = self.factory.fast.lookup(self.peer)
        self.gate = ReadGate(self.transport)  # type: ignore[arg-type]
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]
        self.factory.connections.add(self)
        overall, mine = self.factory.connection_opened(self._peer_key)
        if overall > self.settings.max_connections:
            self._refuse_connection(TooManyConnections("too many connections to dockgate"))
        elif mine > self.settings.max_connections_per_peer:
            self._refuse_connection(
                TooManyConnections(f"too many connections from {self.peer.address}")
            )
        else:
            self._arm_head_timer()

    def handshakeCompleted(self) -> None:
        """TLS listeners: the caller is the verified client certificate's subject."""
        get = getattr(self.transport, "getPeerCertificate", None)
        cert = get() if get is not None else None
        if cert is not None and self.peer is not None:
            cn, sans = principal_from_certificate(cert.to_cryptography())
            self.peer = replace(self.peer, transport="tls", principal=cn or None, sans=sans)
            self.reader.lookup = self._finder = self.factory.fast.lookup(self.peer)  # a new caller

    def dataReceived(self, data: bytes) -> None:
        """Scan and parse HTTP, or pass bytes straight on once spliced."""
        if self.gate is not None:
            self.gate.arrived()
        if self.splice is not None:
            self.splice.from_client(data)
            return
        state = self.state
        if state is CLOSED:
            return
        if state is IDLE and not self.reader.buffered and self._head_deadline.pending:
            # The first byte of a head: from now on the whole head must
            # arrive within head_timeout, however slowly it trickles.
            self._arm_head_timer(self.factory.head_timeout)
        self.reader.feed(data)
        self._pump()

    def readConnectionLost(self) -> None:
        """The client closed its sending side."""
        self.reader.eof()  # the reader keeps the fact (``closed``) for ``_finish``
        if self.splice is not None:
            self.splice.client_read_closed()
            return
        if self.state is CLOSED:
            return
        if self.exchange is None:
            if self.reader.buffered:
                # In the middle of a head that can now never complete: the
                # reader says so and it is answered 400, as the daemon answers.
                self._pump()
            self._close()  # (nothing more once the answer closed it)
            return
        # An exchange is in flight: let it finish (the reader reports a
        # truncated request body as an error), then _finish closes the connection.
        self._pump()

    def writeConnectionLost(self) -> None:
        """Our half-close reached the client (spliced connections)."""
        if self.splice is not None:
            self.splice.client_write_closed()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Abort whatever the client left behind: nothing stays half-open."""
        self.factory.connections.discard(self)
        self.factory.connection_closed(self._peer_key)
        self._head_deadline.cancel()
        self._answer_deadline.cancel()
        self._go(CLOSE)
        if self._admitting is not None:
            self._admitting.cancel()
        if self.splice is not None:
            self.splice.client_lost()
            return
        x = self.exchange
        if x is not None:
            if x.error is None and not (self.reader.done and x.status is not None):
                x.error = "client disconnected"
            self._teardown(x)

    def pauseProducing(self) -> None:
        """The client reads slowly: stop reading from the daemon."""
        self._client_full(True)

    def resumeProducing(self) -> None:
        """The client caught up."""
        self._client_full(False)

    def _client_full(self, full: bool) -> None:
        """Pause or resume the daemon side: through the splice once there is one.

        A splice owns its upstream connection (and, in the kernel, pauses
        nothing itself), so the exchange's reference must not be used then.
        """
        if self.splice is not None:
            self.splice.pause_upstream(full)
            return
        x = self.exchange
        if x is not None and x.upstream is not None:
            if full:
                x.upstream.pause_reading("client-full")
            else:
                x.upstream.resume_reading("client-full")

    def stopProducing(self) -> None:
        """The transport is going away; connectionLost follows."""

    # -- request side -------------------------------------------------------

    def _arm_head_timer(self, seconds: float | None = None) -> None:
        """Bound the wait for the next head: idle_timeout, or head_timeout once it began."""
        self._head_deadline.set(self.factory.idle_timeout if seconds is None else seconds)

    def _head_timed_out(self) -> None:
        if self.state is not IDLE:
            return
        if self.reader.buffered:
            self._refuse_connection(RequestTimeout("request head not received in time"))
        else:
            self._close()

    def _pump(self) -> None:
        """Take request events while the current exchange can accept them."""
        try:
            while self.state not in WAITING:
                try:
                    event = self.reader.next_event()
                except DockgateError as e:
                    self._refuse_connection(e)
                    return
                if event is None:
                    return
                if event is PAUSED:
                    # A pipelined request (or legacy-hijack stdin) waits in the reader.
                    assert self.gate is not None
                    self.gate.hold("pipelined")
                    return
                if isinstance(event, Request):
                    self._head_deadline.clear()
                    self._begin(event)
                elif isinstance(event, Body):
                    self._client_data(event.data)
                elif isinstance(event, End):
                    self._client_end()
        except IllegalTransition as e:
            self._broken(e)

    def _begin(self, event: Request) -> None:
        """A request head arrived: admit it, then buffer, or decide and forward."""
        self._go(HEAD)
        headers = event.headers
        self._http10 = event.http10
        length, chunked = event.length, event.chunked
        upgrade = None
        for name, value in headers:
            if name == b"upgrade":
                upgrade = value.strip().lower()
        method = event.method.decode("ascii", "replace")
        x = Exchange(
            id=_new_id(),
            method=method,
            raw_target=event.target.decode("ascii", "backslashreplace"),
            started=_clock(),
            has_body=chunked or bool(length),
            chunked=chunked,
            length=length,
            upgrade=upgrade,
        )
        self.exchange = x
        # The reader's ``known`` is what this listener's fast path found for the head.
        seen = cast("Known | None", self.reader.known)
        factory = self.factory
        tenants = factory.tenants
        known = factory.fast.current(seen, factory.policy(), factory.api,
                                     tenants is not None and tenants() is not None)
        if known is not None:  # seen before: decided, serialised and recorded as then
            x.known, x.request, x.decision = known, known.request, known.decision
            x.redactions = known.redactions
            self._forward_decided(x)
            return
        try:
            request = admit_head(method, event.target, headers, self.factory.api)
        except DockgateError as e:
            self._refuse(x, e)
            return
        x.request = request
        kind = request.endpoint.body
        if kind == "json":
            if length is not None and length > self.settings.api.max_json_body:
                self._refuse(x, BodyTooLarge(self._too_large()))
                return
            self._go(BUFFER)
            self._continue_if_expected()
            return
        if kind == "none" and x.has_body:
            self._refuse(x, BadRequest(f"{request.endpoint.id} takes no request body"))
            return
        self._decide_and_forward(x)

    def _continue_if_expected(self) -> None:
        """Send ``100 Continue`` when the client waits for it (only once allowed to send)."""
        if self.reader.expects_continue:
            self.reader.expects_continue = False
            self._send_client(self.writer.informational(100))

    def _too_large(self) -> str:
        return f"JSON request body exceeds {self.settings.api.max_json_body} bytes"

    def _client_data(self, data: bytes) -> None:
        x = self.exchange
        if x is None:
            return
        x.bytes_in += len(data)
        state = self.state
        if state is DRAINING:
            if x.bytes_in > _DRAIN_BYTES:
                self._drain_expired(x)
            return
        if state is BUFFERING:
            x.body += data
            if len(x.body) > self.settings.api.max_json_body:
                self._refuse(x, BodyTooLarge(self._too_large()))
            return
        if x.context is not None and not self._context_data(x, data):
            return
        if x.upstream is not None:
            x.upstream.send_data(data)

    def _client_end(self) -> None:
        x = self.exchange
        if x is None:
            return
        state = self.state
        if state is DRAINING:
            self._finish(x)
            return
        if state is BUFFERING:
            self._go(BODY_END)  # all of it is here, whatever we decide
            assert x.request is not None
            body, x.body = bytes(x.body), bytearray()
            if len(body) > HEAVY_BODY:
                self._admit_large(x, body)
                return
            try:
                x.request = admit_body(x.request, body, self.factory.api)
            except DockgateError as e:
                self._refuse(x, e)
                return
            self._decide_and_forward(x)
            return
        if x.context is not None:
            try:
                x.context.end()
            except ContextError as e:
                self._refuse(x, BadRequest(str(e)))
                return
            if x.context.pending:
                self._context_ready(x)
                return
        self._go(BODY_END)
        if state is AWAITING:
            return  # a body-less request's end, read after it went up whole
        # SENDING or RESPONDING_EARLY: the body's end goes up too.
        assert x.upstream is not None
        x.upstream.send_end()
        if state is SENDING:  # now AWAITING: bound the wait for the answer
            self._answer_deadline.set(self.factory.response_timeout)

    def _admit_large(self, x: Exchange, body: bytes) -> None:
        """Admit a large body in a worker process (``workers``), or else a step per
        reactor turn between other requests (``turns``); then decide and forward
        it in a turn of its own."""
        assert x.request is not None and self.gate is not None
        self.gate.hold("prepare")  # DECIDING: no HTTP event is taken meanwhile

        def admitted(request: CanonicalRequest) -> None:
            self._admitting = None
            if self.state is CLOSED or self.exchange is not x:
                return
            self._release_gate("prepare")
            x.request = request
            self._decide_and_forward(x)

        def refused(error: BaseException) -> None:
            self._admitting = None
            self._prepare_failed(Failure(error), x)  # type: ignore[no-untyped-call]

        turns, workers = self.factory.turns, self.settings.workers
        if workers is not None:
            self._admitting = workers.submit(x.request, body, self.factory.api, turns=turns,
                                             key=self._peer_key, done=admitted, failed=refused)
            if self._admitting is not None:
                return
        steps = admit_body_steps(x.request, body, self.factory.api)
        self._admitting = turns.submit(self._peer_key, steps, admitted, refused)

    def _context_data(self, x: Exchange, data: bytes) -> bool:
        """Feed a held build context; True when ``data`` may be forwarded now."""
        held = x.context
        assert held is not None
        try:
            held.take(data)
        except (ContextError, OverflowError) as e:
            self._refuse(x, BadRequest(str(e)))
            return False
        if not held.pending:
            return True
        if held.ready:
            self._context_ready(x)
        return False

    def _context_ready(self, x: Exchange) -> None:
        """The held context's Dockerfile is known: decide with it (checking its images)."""
        self._go(DOCKERFILE)
        held = x.context
        assert held is not None
        facts = held.facts()
        context = replace(held.context or DecisionContext(), dockerfile=facts)
        assert x.request is not None and self.peer is not None
        bases = bool(facts.bases) and wants_dockerfile(held.policy, x.request, self.peer)
        if (x.tenant is None or x.tenant.admin) and not bases:
            self._decide_with(x, held.policy, context)
            return
        assert self.gate is not None
        self.gate.hold("prepare")
        d = Deferred.fromCoroutine(self._build_images(x, facts, held.policy, context))
        d.addCallbacks(self._prepared, self._prepare_failed, callbackArgs=(x,), errbackArgs=(x,))
        d.addErrback(self._unexpected)

    async def _build_images(
        self, x: Exchange, facts: Any, policy: Policy, context: DecisionContext
    ) -> tuple[Policy, DecisionContext | None]:
        assert x.request is not None and self.peer is not None
        if x.tenant is not None and not x.tenant.admin:
            await check_build_images(facts, x.tenant, self._fetch, x.request.version,
                                     x.claims)
        if wants_dockerfile(policy, x.request, self.peer):
            pulls = any(k == "pull" and v not in ("", "0") for k, v in x.request.query)
            await check_base_triggers(facts, self._fetch, x.request.version, pulls)
        return policy, context

    @staticmethod
    def _unread_dockerfile(
        request: CanonicalRequest, context: DecisionContext | None
    ) -> DecisionContext | None:
        """For a decision before a classic build's Dockerfile is read: an empty one.

        Such a decision says whether anything *but* the Dockerfile refuses.
        """
        if not classic_context(request):
            return context
        return replace(context or DecisionContext(), dockerfile=DockerfileFacts())

    def _hold_context(self, x: Exchange, policy: Policy, context: DecisionContext | None) -> bool:
        """Start holding a classic build's context when its decision needs the Dockerfile."""
        request = x.request
        assert request is not None and self.peer is not None
        if x.context is not None or request.endpoint.id != "image.build":
            return False
        tenant_refs = x.tenant is not None and not x.tenant.admin
        if tenant_refs and not classic_context(request):
            # BuildKit reads the Dockerfile through its session, a remote context is
            # fetched by the daemon: either way its image references cannot be checked.
            self._refuse(x, Forbidden("a tenant's build must send its context (classic "
                                      "builder): dockgate checks the images its Dockerfile "
                                      "names", reason="policy"))
            return True
        if not classic_context(request) or not x.has_body:
            return False
        if not (tenant_refs or wants_dockerfile(policy, request, self.peer)):
            return False
        unread = self._unread_dockerfile(request, context)
        if not decide(policy, request, self.peer, unread).allowed:
            return False  # refused whatever the Dockerfile says: no need to read it
        try:
            x.context = HeldContext(request, policy, context)
        except ContextError as e:
            self._refuse(x, BadRequest(str(e)))
            return True
        self._go(HOLD)
        self._continue_if_expected()
        self.reactor.callLater(0, self._pump)
        return True

    def _decide_and_forward(self, x: Exchange) -> None:
        """Scope the request to its tenant, look up facts, decide, then forward.

        The preparation may need the daemon's answers (ownership, quotas, the
        image's user); reading from the client stays paused meanwhile.  With
        no tenants and no lookups it completes at once.
        """
        assert x.request is not None
        if x.request.endpoint.id in binding.STARTS and binding.PENDING.count:
            ref = x.request.params.get("id", "")
            if binding.PENDING.holds(ref):
                # A container being verified must not run before the verdict.
                assert self.gate is not None
                self.gate.hold("prepare")
                binding.PENDING.wait(ref).addCallback(lambda _: self._after_bindings(x)) \
                    .addErrback(self._unexpected)
                return
        factory = self.factory
        tenants = factory.tenants
        if tenants is None or tenants() is None:
            # The common case needs no daemon lookups: decide at once,
            # without a coroutine and Deferred per request.
            try:
                policy = factory.policy()
                assert x.request is not None
                daemon = _wants_daemon(policy, x, self)
                quick = self._default_user_target(policy, x) is None and (
                    factory.daemon_facts is not None or not daemon
                ) and not needs_joins(policy, x.request)
            except Exception:
                quick = False  # the full path reports the error
            if quick:
                # As ``_daemon_context(policy, x, None)``, without asking the policy again.
                context = DecisionContext(daemon=factory.daemon_facts) if daemon else None
                self._decide_with(x, policy, context, quick=context is None)
                return
        assert self.gate is not None
        self.gate.hold("prepare")
        d = Deferred.fromCoroutine(self._prepare(x))
        d.addCallbacks(self._prepared, self._prepare_failed, callbackArgs=(x,), errbackArgs=(x,))
        d.addErrback(self._unexpected)

    def _after_bindings(self, x: Exchange) -> None:
        """No create is being verified any more: carry on with ``x`` (a start)."""
        if self.exchange is not x or self.state is CLOSED:
            return
        self._release_gate("prepare")
        self._decide_and_forward(x)  # waits again if another began meanwhile

    async def _prepare(self, x: Exchange) -> tuple[Policy, DecisionContext | None]:
        factory = self.factory
        policy = factory.policy()
        tenants = factory.tenants() if factory.tenants is not None else None
        assert x.request is not None and self.peer is not None
        if tenants is not None:
            peer = self.peer
            tenant = tenants.resolve(peer, peer.user, peer.groups, peer.principal, peer.sans)
            if tenant is None:
                raise Forbidden(f"no tenant for {_caller(peer)}", reason="no-tenant")
            x.tenant = tenant
            x.request, target = await scope_request(x.request, tenant, self._fetch,
                                                    self._replay, x.stand_ins,
                                                    claims=x.claims)
            x.request = await check_tenant_build(x.request, tenant, self._fetch)
            if needs_usage(tenant, x.request.endpoint.id):
                # One quota-checked request at a time per tenant, until the
                # daemon answered it, so two cannot both pass the same check.
                lock = self.factory.quota_lock(tenant.name)
                await lock.acquire()
                x.quota_lock = lock
                await check_quota(x.request, tenant, target, self._fetch)
            if tenant.policy_path:
                policy = self.factory.policy_at(tenant.policy_path)
        context = None
        lookup = self._default_user_target(policy, x)
        if lookup is not None:
            _, value = await self._fetch("GET", lookup, None)
            user = None
            if isinstance(value, dict) and isinstance(value.get("Config"), dict):
                found = value["Config"].get("User")
                user = found if isinstance(found, str) else ""
            context = DecisionContext(default_user=user)
            # Bind the decision to what it read (``binding``).
            if x.request.endpoint.id == "exec.create":
                x.request = binding.bind_exec(x.request, value)
            else:
                x.bound_image = binding.checked_image(value)
                if x.bound_image is None:
                    context = DecisionContext(default_user=None)  # unknown: root
        if _wants_daemon(policy, x, self) and self.factory.daemon_facts is None:
            _, info = await self._fetch("GET", "/info", None)
            self.factory.daemon_facts = DaemonFacts.from_info(info)
        context = self._daemon_context(policy, x, context)
        if needs_joins(policy, x.request) and decide(
            policy, x.request, self.peer, self._unread_dockerfile(x.request, context)
        ).allowed:
            # Only a request allowed on its own needs its joins followed (a
            # denied one keeps its own reason, and costs no lookups).
            x.request = await check_joins(x.request, policy, self.peer, self._fetch)
        return policy, context

    def _daemon_context(
        self, policy: Policy, x: Exchange, context: DecisionContext | None
    ) -> DecisionContext | None:
        """``context`` plus the daemon's facts, when the policy's decision depends on them."""
        if not _wants_daemon(policy, x, self):
            return context
        user = context.default_user if context is not None else None
        return DecisionContext(default_user=user, daemon=self.factory.daemon_facts)

    async def _fetch(self, method: str, target: str, body: Any) -> tuple[int, Any]:
        """A side request to the daemon (see scoping.Fetch)."""
        answer = await self.factory.daemon.ask(method, target, body=body)
        return answer.status, answer.value

    async def _replay(self, method: str, target: str, body: bytes | None,
                      headers: tuple[tuple[str, str], ...]) -> tuple[int, bytes, bytes]:
        """A side request whose answer is copied to the client (see scoping.Replay)."""
        answer = await self.factory.daemon.ask(method, target, payload=body, headers=headers)
        return answer.status, answer.content_type, answer.raw

    def _prepared(self, result: tuple[Policy, DecisionContext | None], x: Exchange) -> None:
        if self.exchange is not x or self.state is CLOSED:
            self._release(x)  # a quota lock taken after the exchange ended
            return
        self._release_gate("prepare")
        policy, context = result
        self._decide_with(x, policy, context)

    def _prepare_failed(self, failure: Failure, x: Exchange) -> None:
        if self.exchange is not x or self.state is CLOSED:
            self._release(x)  # a quota lock taken after the exchange ended
            return
        self._release_gate("prepare")
        error = failure.value
        if not isinstance(error, DockgateError):
            self.log.failure("preparing a request failed", failure)
            error = DockgateError("internal error while checking the request", status=500)
        self._refuse(x, error)

    def _release_quota(self, x: Exchange) -> None:
        lock, x.quota_lock = x.quota_lock, None
        if lock is not None:
            lock.release()

    def _default_user_target(self, policy: Policy, x: Exchange) -> str | None:
        """Where to read the user an empty ``User`` falls back to, if the policy needs it."""
        wants = getattr(policy, "wants_default_user", None)
        request = x.request
        assert request is not None and self.peer is not None
        if wants is None or not wants(request, self.peer):
            return None
        if request.endpoint.id == "container.create" and isinstance(request.body, dict):
            image = request.body.get("Image")
            if isinstance(image, str) and image:
                return f"/images/{quote(image, safe='/:@')}/json"
        if request.endpoint.id == "exec.create" and "id" in request.params:
            return f"/containers/{quote(request.params['id'], safe='')}/json"
        return None

    def _decide_with(self, x: Exchange, policy: Policy, context: DecisionContext | None,
                     quick: bool = False) -> None:
        """Decide ``x``, then refuse or forward it; ``quick``: decided on the request and
        caller alone (no tenants, no daemon state), so the fast path may keep it."""
        assert x.request is not None and self.peer is not None
        if self._hold_context(x, policy, context):
            return
        x.decision = decide(policy, x.request, self.peer, context)
        if x.decision.allowed:
            if x.decision.request is not None:
                x.request = x.decision.request  # the policy set a daemon default (audited)
            x.decision = with_tenant_sets(x.decision, x.request, x.tenant)
            if x.stand_ins:
                x.request = forwarded(x.request, x.stand_ins)  # decided as the caller wrote it
            if x.request.endpoint.id in redact.ENDPOINTS:
                x.redactions = redact.rules_for(policy, x.request, self.peer)
            x.build_judge = build_judge(policy, context, self.peer, x.tenant,
                                        x.request.endpoint.id)
        reader = self.reader
        if quick and self._finder is not None and reader.parsed is not None \
                and x.build_judge is None:
            x.known = self.factory.fast.remember(
                self._finder, reader.head, reader.parsed, policy=policy, api=self.factory.api,
                request=x.request, decision=x.decision, redactions=x.redactions)
        self._forward_decided(x)

    def _forward_decided(self, x: Exchange) -> None:
        """``x`` is decided: refuse it, or record the decision and then forward it."""
        assert x.decision is not None
        if not x.decision.allowed:
            self._refuse(x, Forbidden(x.decision.reason, reason="policy"))
            return
        self._go(ALLOW)
        assert self.gate is not None
        self.gate.hold("upstream")
        record_then = self.factory.record_then
        if record_then is None:
            self._recorded(x, self._emit(x, "RequestDecided"))
            return
        # The sink writes the decision records of a reactor turn together and
        # calls back once they are in the kernel: forwarding waits for that.
        if "RequestDecided" not in x.stages:
            x.stages.add("RequestDecided")
            try:
                record_then(self._event(x, "RequestDecided"), partial(self._recorded_later, x))
            except Exception:  # the sink's contract is to call back, never to raise
                self.log.failure("audit write failed at {stage}", stage="RequestDecided")
                self._abort()
        else:
            self._recorded(x, True)

    def _recorded_later(self, x: Exchange, written: bool) -> None:
        """``_recorded``, called back by the audit sink: outside the protocol's own
        entry points, so an illegal move is answered here."""
        try:
            self._recorded(x, written)
        except IllegalTransition as e:
            self._broken(e)

    def _recorded(self, x: Exchange, written: bool) -> None:
        """The decision of ``x`` is on record (``written``), or could not be: forward or refuse."""
        if self.exchange is not x or self.state is CLOSED:
            return
        if not written:
            # Fail closed: what cannot be recorded is not forwarded.
            self._release_gate("upstream")
            x.decision = None
            self._refuse(x, AuditUnavailable("cannot write the audit log; request refused"))
            return
        assert x.request is not None
        if x.request.endpoint.id in binding.STARTS and binding.PENDING.holds(
                x.request.params.get("id", "")):
            # A create's verification began while the record was written: a
            # start still waits for its verdict, as when deciding.
            binding.PENDING.wait(x.request.params.get("id", "")).addCallback(
                lambda _: self._recorded(x, True)).addErrback(self._unexpected)
            return
        idle = self.factory.pool.take_idle()
        if idle is not None:
            self._upstream_ready(idle, x)
            return
        d = self.factory.pool.acquire()
        d.addCallbacks(self._upstream_ready, self._upstream_failed, callbackArgs=(x,),
                       errbackArgs=(x,))
        d.addErrback(self._unexpected)

    def _unexpected(self, failure: Failure) -> None:
        """A bug on a deferred path: log it and drop the connection rather than hang it."""
        if isinstance(failure.value, IllegalTransition):
            self._broken(failure.value)
            return
        self.log.failure("internal error handling a request", failure)
        self._abort()

    def _broken(self, error: IllegalTransition) -> None:
        """A move the exchange's table does not allow: a bug, never the client's doing.

        Answered with a 500 while the client was sent nothing yet, else the
        connection is aborted; either way it ends, and with it the exchange's
        resources and record (``_teardown``): it never hangs.
        """
        self.log.error("internal error: {error}", error=error)
        x = self.exchange
        if x is not None and x.error is None:
            x.error = f"internal error: {error}"
        if self.state in UNANSWERED and self.transport is not None:
            self._refuse_connection(DockgateError("internal error handling the request",
                                                  status=500, reason="internal-error"))
        else:
            self._abort()

    def _upstream_failed(self, reason: Failure, x: Exchange) -> None:
        if self.exchange is not x or self.state is CLOSED:
            return
        self.log.warn("upstream connect failed: {reason}", reason=reason.getErrorMessage())
        self._release_gate("upstream")
        self._refuse(
            x, UpstreamUnavailable(f"cannot reach the Docker daemon: {reason.getErrorMessage()}")
        )

    def _upstream_ready(self, conn: UpstreamConnection, x: Exchange) -> None:
        if self.exchange is not x or self.state is CLOSED:
            self.factory.pool.release(conn)
            return
        x.upstream = conn
        conn.delegate = self
        request = x.request
        assert request is not None
        kind = request.endpoint.body
        body = request.body_bytes if kind == "json" else None
        stream = None
        if kind == "stream":
            stream = "chunked" if x.chunked else "length"
        x.forwarded = _clock()
        try:
            conn.send(request.method, self._forward_head(x, request), body, stream=stream)
        except ValueError as e:
            self._refuse(x, BadRequest(f"cannot forward request: {e}"))
            return
        except ProtocolError as e:  # a pooled connection not ready: never reuse it
            self.log.warn("upstream connection not ready for a request: {e}", e=e)
            self._refuse(x, UpstreamUnavailable("cannot forward the request to the daemon"))
            return
        if x.context is not None:
            conn.send_data(x.context.release())
            if self.reader.done:
                stream = None
                conn.send_end()
        if stream is None:
            self._go(FORWARD_ALL)
            self._answer_deadline.set(self.factory.response_timeout)
        else:
            self._go(FORWARD_STREAM)
        if kind == "stream":
            self._continue_if_expected()
        self._release_gate("upstream")
        self._pump()

    def _forward_head(self, x: Exchange, request: CanonicalRequest) -> bytes:
        """The head dockgate sends upstream for ``x``: its own serialisation, with a
        fixed Host, the admitted end-to-end headers and its own framing.

        A request on the fast path has a head that depends on its entry alone,
        so it is serialised once per entry (``fastpath``).

        Raises:
            ValueError: a header would not survive serialisation (see ``http1``).
        """
        known = x.known
        if known is not None and known.head is not None:
            return known.head
        kind = request.endpoint.body
        upgrade = request.endpoint.hijack and x.upgrade in _HIJACK_UPGRADES
        headers: list[tuple[bytes, bytes]] = [(b"host", b"docker")]
        headers += [(n.encode("latin-1"), v.encode("latin-1")) for n, v in request.headers]
        if upgrade:
            assert x.upgrade is not None
            headers += [(b"connection", b"Upgrade"), (b"upgrade", x.upgrade)]
        if kind == "json":
            body = request.body_bytes
            if body is not None or request.method in ("POST", "PUT"):
                headers.append((b"content-length", b"%d" % len(body or b"")))
        elif kind == "stream" and x.chunked:
            headers.append((b"transfer-encoding", b"chunked"))
        elif kind == "stream" and x.length is not None:
            headers.append((b"content-length", b"%d" % x.length))
        elif request.method in ("POST", "PUT"):
            headers.append((b"content-length", b"0"))
        head = request_head(request.method, request.target.encode("ascii"), headers)
        if known is not None:
            known.head = head
        return head

    def _response_timeout(self) -> None:
        """The daemon did not answer in time (the deadline runs only in ``AWAITING``)."""
        x = self.exchange
        if x is None or self.state is not AWAITING:
            return
        try:
            self._refuse(x, UpstreamTimeout("the Docker daemon did not answer in time"))
        except IllegalTransition as e:
            self._broken(e)

    # -- response side (UpstreamDelegate) -----------------------------------

    def upstream_event(self, event: object) -> None:
        """An ``http1`` event from the daemon for the current exchange."""
        x = self.exchange
        if x is None:
            return
        if type(event) is Framing:
            x.bytes_out += event.size
            self._send_client(event.data)
            return
        if isinstance(event, Body):
            x.bytes_out += len(event.data)
            if x.redactor is not None:
                try:
                    data = x.redactor.feed(event.data)
                except ValueError as e:
                    x.error = str(e)
                    self._abort()
                    return
                if not data:
                    return
                event = Body(data)
            if x.held is not None:
                x.held_body += event.data
                if len(x.held_body) > _MAX_HELD:
                    x.error = "response too large to rewrite"
                    self._abort()
                return
            if x.events is not None:
                if not x.events.feed(event.data):
                    x.error = "too many events waiting to be scoped"
                    self._abort()
                return
            self._send_client(*self.writer.data(event.data))
            return
        try:  # the head and the end move the exchange on; a move it lacks ends it
            if isinstance(event, End):
                self._response_end(x)
            elif isinstance(event, Head):
                self._response_head_arrived(x, event)
        except IllegalTransition as e:
            self._broken(e)

    def _response_end(self, x: Exchange) -> None:
        """The daemon's answer ended: pass on what was held back, then finish."""
        if x.redactor is not None:
            rest = x.redactor.finish()
            if rest and x.events is not None:
                x.events.feed(rest)
            elif rest:
                self._send_client(*self.writer.data(rest))
        if x.held is not None and x.bound_image is not None:
            self._verify_binding(x)
            return
        if x.held is not None:
            self._send_held(x)
        if x.events is not None:
            # The last lines may still wait for the daemon's answers.
            x.events.finish(lambda: self._end_response(x))
            return
        self._end_response(x)

    def _response_head_arrived(self, x: Exchange, event: Head) -> None:
        """The daemon's response head: splice, or answer the client (see ``lifecycle``)."""
        if x.forwarded:
            x.upstream_seconds = _micros(_clock() - x.forwarded)
        if event.status < 200:
            if event.status == 101:
                self._splice(x, event.status, event.reason, event.spelled or event.headers,
                             upgrade=True)
            return
        self._answer_deadline.clear()
        facts = _response_facts(event)
        assert x.request is not None
        if x.request.endpoint.hijack and event.status == 200 and not facts.framed:
            self._splice(x, 200, event.reason, event.spelled or event.headers, upgrade=False)
            return
        self._go(RESPONSE)
        x.status = event.status
        self._release_quota(x)
        if facts.api_version is not None:
            self.factory.note_daemon_version(facts.api_version)
        tenant = x.tenant
        if tenant is not None and not tenant.admin and x.request.endpoint.id == "system.events":
            self._scope_events(x, tenant)
        transform = self._response_transform(x, event.status, facts.json)
        forwarded = facts.forwarded
        if x.redactions and 200 <= event.status < 300:
            transform, forwarded = self._redaction(x, transform, facts)
        if x.stand_ins and x.redactor is None:
            x.redactor = NamesBack(x.stand_ins)  # the caller's names, not the stand-ins
            forwarded = tuple((n, v) for n, v in forwarded if n.lower() != b"content-length")
        if transform is None and x.bound_image is not None and event.status == 201:
            transform = _same  # held until ``_verify_binding`` has checked it
        elif x.bound_image is not None and event.status != 201:
            x.bound_image = None  # nothing was created
        if transform is not None:
            x.held = (event.status, event.reason, facts.headers)
            x.transform = transform
            return
        self._send_client(self._response_head(x, event.status, event.reason, forwarded))
        # A body the client gets in the daemon's own framing is passed on as it
        # comes, its framing scanned but not taken apart (``ResponseReader.relay``);
        # never one that is filtered or redacted as it streams.
        conn = x.upstream
        if conn is not None and x.events is None and x.redactor is None \
                and self.writer.relays(conn.reader.framing, conn.reader.body_left):
            conn.reader.relay()

    def _redaction(
        self, x: Exchange, transform: Callable[[Any], Any] | None, facts: ResponseFacts
    ) -> tuple[Callable[[Any], Any] | None, tuple[tuple[bytes, bytes], ...]]:
        """Add the policy's ``redact`` rules to how this answer is rewritten.

        /events streams through an ``EventRedactor`` (its rewritten lines
        change the length, so no Content-Length is passed on); a JSON answer
        is held and rewritten whole, after any other rewrite.
        """
        assert x.request is not None
        eid = x.request.endpoint.id
        if eid == "system.events":
            if any(r.exec_commands for r in x.redactions):
                x.redactor = redact.EventRedactor(x.redactions)
                kept = tuple((n, v) for n, v in facts.forwarded if n.lower() != b"content-length")
                return transform, kept
            return transform, facts.forwarded
        extra = redact.transform(x.redactions, eid)  # whatever its Content-Type says
        if extra is None:
            return transform, facts.forwarded
        x.must_filter = True  # an answer that cannot be read is not passed on
        if transform is None:
            return extra, facts.forwarded
        first = transform
        return (lambda value: extra(first(value))), facts.forwarded

    def _send_held(self, x: Exchange) -> None:
        """Send a held JSON response, rewritten by the exchange's transform.

        A response that must be filtered (a tenant's list) but cannot be read
        is not passed on: the connection is aborted instead (fail closed).
        """
        assert x.held is not None and x.transform is not None
        status, reason, headers = x.held
        body = bytes(x.held_body)
        try:
            value = json.loads(body)
        except ValueError:
            value = None
        if value is not None:
            body = json.dumps(x.transform(value)).encode() + b"\n"
        elif x.must_filter:
            x.error = "unreadable response to filter"
            self._abort()
            return
        out = [*wire.end_to_end(headers), (b"Content-Length", b"%d" % len(body))]
        x.held = None
        self._send_client(self._response_head(x, status, reason, out), *self.writer.data(body))

    def _verify_binding(self, x: Exchange) -> None:
        """The create's answer is held: check the new container runs the checked image."""
        self._go(VERIFY)
        assert x.request is not None and x.bound_image is not None
        body = x.request.body
        image = str(body.get("Image")) if isinstance(body, dict) else "?"
        key = binding.created(bytes(x.held_body), x.request.query)
        binding.PENDING.begin(*key)
        d = Deferred.fromCoroutine(
            binding.verify_created(key[0], image, x.bound_image, x.request.version, self._fetch)
        )
        d.addBoth(self._binding_verified, x, key)
        d.addErrback(self._unexpected)

    def _binding_verified(
        self, refusal: str | Failure | None, x: Exchange, key: tuple[str, str]
    ) -> None:
        binding.PENDING.end(*key)
        if isinstance(refusal, Failure):
            self.log.failure("verifying a create failed", refusal)
            refusal = "cannot verify the new container's image"
        if self.exchange is not x or self.state is CLOSED:
            return
        if refusal is None:
            self._go(VERIFIED)
            self._send_held(x)
            self._end_response(x)
            return
        x.held, x.bound_image = None, None
        self._release(x, reuse=True)  # its answer was read to the end: reusable
        self._refuse(x, Forbidden(refusal, reason="image-changed"))

    def _response_transform(
        self, x: Exchange, status: int, json_body: bool
    ) -> Callable[[Any], Any] | None:
        """How to rewrite this response's JSON body, if it must be rewritten.

        Three cases: warn-mode findings go into ``Warnings``; ``/version``
        reports API versions clamped to those dockgate knows, so negotiating
        clients (docker-py reads the body) settle on one it can check; and a
        tenant's list shows only its own objects (a second line of defence
        behind the label filter dockgate added to the query).
        """
        if not 200 <= status < 300 or not json_body or x.request is None:
            return None
        endpoint = x.request.endpoint.id
        tenant = x.tenant
        if tenant is not None and not tenant.admin and endpoint in _TENANT_LISTS:
            x.must_filter = True
            return _list_filter(_TENANT_LISTS[endpoint], tenant)
        decision = x.decision
        if endpoint in _WARNABLE and decision is not None and decision.warnings:
            warnings = decision.warnings

            def add_warnings(value: Any) -> Any:
                if isinstance(value, dict):
                    found = value.get("Warnings")
                    value["Warnings"] = [*(found if isinstance(found, list) else []), *warnings]
                return value

            return add_warnings
        if endpoint == "system.version":
            return lambda value: clamp_version_body(value) if isinstance(value, dict) else value
        return None

    def _end_response(self, x: Exchange) -> None:
        """Close the client's response and finish the exchange, if it is still current."""
        if self.exchange is not x or self.state is CLOSED:
            return
        end = self.writer.end()
        if end:  # (a relayed body's own last chunk was passed on with it)
            self._send_client(end)
        # The response is whole: it leaves now, not after the exchange's
        # bookkeeping (its ResponseComplete record, the next cycle), so the
        # client can send its next request while dockgate does that work.
        self._flush_client()
        self._finish(x)

    def _scope_events(self, x: Exchange, tenant: Tenant) -> None:
        """Filter this tenant's event stream, asking the daemon about volumes and networks."""

        def emit(data: bytes) -> None:
            if self.exchange is x and self.state is not CLOSED:
                self._send_client(*self.writer.data(data))

        def resolve(key: tuple[str, str], done: Callable[[int | None], None]) -> None:
            d = Deferred.fromCoroutine(owns_object(key, tenant, self._fetch))
            d.addErrback(lambda _: None)  # no answer: not the tenant's
            d.addCallback(done)
            d.addErrback(self._unexpected)

        scope = EventScope(tenant, resolve, emit, _EVENTS_BACKLOG)
        x.events = scope
        d = Deferred.fromCoroutine(owned_objects(tenant, self._fetch))
        d.addErrback(lambda _: [])
        d.addCallback(scope.started)
        d.addErrback(self._unexpected)

    def upstream_raw(self, data: bytes) -> None:
        """Raw daemon bytes: only spliced connections produce these."""
        if self._early is not None:
            self._early.append(data)
        elif self.splice is not None:
            self.splice.from_upstream(data)

    def upstream_read_closed(self) -> None:
        """The daemon half-closed a spliced connection."""
        if self._early is not None:
            self._early.append(None)
        elif self.splice is not None:
            self.splice.upstream_read_closed()

    def upstream_lost(self, reason: Failure) -> None:
        """The daemon went away mid-exchange: 502 before the head, abort after it."""
        if self.splice is not None:
            self.splice.upstream_lost()
            return
        x = self.exchange
        if x is None or self.state is CLOSED:
            return
        x.upstream = None  # gone: nothing to release
        if self.state in HEARD:
            x.error = "daemon disconnected mid-response"
            self._abort()
            return
        try:
            self._refuse(
                x,
                UpstreamUnavailable(
                    f"the Docker daemon closed the connection: {reason.getErrorMessage()}"
                ),
            )
        except IllegalTransition as e:
            self._broken(e)

    def upstream_batch(self, begin: bool) -> None:
        """Hold what one read from the daemon makes us write, and send it in one go.

        Held here, in a list of this native class, rather than in the
        transport's own queue: each write held there read and wrote half a
        dozen of Twisted's attributes."""
        if begin:
            self._batch_depth += 1
        else:
            self._batch_depth -= 1
            if self._batch_depth <= 0:
                self._batch_depth = 0
                self._flush_client()

    def _flush_client(self) -> None:
        """Write what the batch holds now, in one write."""
        batch = self._batch
        if batch is not None:
            self._batch = None
            if self.transport is not None:
                sockio.write_parts(self.transport, batch)

    def upstream_paused(self, paused: bool) -> None:
        """The daemon's socket is full (True) or drained (False)."""
        if paused:
            assert self.gate is not None
            self.gate.hold("upstream-full")
        else:
            self._release_gate("upstream-full")

    # -- endings ------------------------------------------------------------

    def _finish(self, x: Exchange) -> None:
        """The response is complete: recycle the upstream, start the next cycle."""
        self._go(FINISH)
        self._teardown(x, reuse=True)
        reader, writer = self.reader, self.writer
        if not (reader.done and writer.done and reader.keep_alive and writer.keep_alive):
            self._close()
            return
        reader.next_cycle()
        writer.next_cycle()
        self._arm_head_timer(self.factory.head_timeout if reader.buffered else None)
        self._release_gate("pipelined")
        if reader.closed and not reader.buffered:
            self._close()
            return
        self._pump()

    def _splice(
        self,
        x: Exchange,
        status: int,
        reason: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        *,
        upgrade: bool,
    ) -> None:
        """Hand both connections over to a byte-for-byte splice."""
        conn = x.upstream
        assert conn is not None and self.transport is not None
        self._go(SPLICE)
        self._answer_deadline.clear()
        x.status = status
        out = wire.upgrade_headers(headers, x.upgrade or b"tcp") if upgrade else \
            wire.end_to_end(headers)
        from_daemon = conn.go_raw()
        from_client, client_closed = self.reader.trailing(), self.reader.closed
        self._flush_client()
        self.transport.write(wire.serialise_response_head(status, reason, out))
        # The head leaves in its own send, as dockerd writes it (the frames
        # follow in later writes): clients that read the head through a
        # buffered reader and then read the socket itself (docker-py's
        # attach(stream=False)) lose whatever arrived with the head.
        self._emit(x, "SessionStarted")
        audit = self.settings.audit
        recording = getattr(audit, "recording", None)
        record = None
        if recording is None or recording(x.id):
            record = lambda direction, data: audit.session_data(x.id, direction, data)  # noqa: E731
        on_done = lambda s: self._splice_done(x, s)  # noqa: E731
        self.splice = mediated_splice(self, conn, x, on_done, record, fetch=self._fetch,
                                      on_client_closing=self._splice_closing) or \
            Splice(self, conn, on_done=on_done, record=record,
                   on_client_closing=self._splice_closing)
        self._release_gate("pipelined")
        self._release_gate("upstream")
        if from_client:
            self.splice.from_client(from_client)
        if client_closed:
            self.splice.client_read_closed()
        # The daemon's first bytes (those that came in the same read as its
        # head, and any after) go on once the client has read the head:
        # nothing else from the daemon is read meanwhile.
        conn.pause_reading("head-unread")
        self._early = [from_daemon] if from_daemon else []
        self._daemon_bytes_after_head(self.splice, conn, _HEAD_READ_TRIES)

    def _daemon_bytes_after_head(self, splice: Splice, conn: UpstreamConnection, tries: int
                                 ) -> None:
        """Pass the daemon's early bytes on and the session to the kernel once the client's socket
        holds no unread bytes (the head), polling every half millisecond for at
        most ``_HEAD_READ_TRIES`` tries.

        Clients may read the head through a buffered reader and then the socket
        itself (docker-py's ``attach(stream=False)``): what arrives with the head
        is lost to them.  Direct, that happens only when the daemon's first frame
        follows its head before the client read it; a proxy adds its own delay
        between the two, so dockgate waits for the read instead of adding to the
        race.
        """
        if self.splice is not splice or self.transport is None:
            self._early = None
            return
        if tries > 0 and writethrough.unread(self.transport):
            self.reactor.callLater(0.0005, self._daemon_bytes_after_head, splice, conn,
                                   tries - 1)
            return
        early, self._early = self._early or [], None
        for data in early:
            if data is None:
                splice.upstream_read_closed()
            else:
                splice.from_upstream(data)
        if self.splice is not splice:
            return
        conn.resume_reading("head-unread")
        # The splice may move the socket into the kernel: nothing may stay held.
        self._flush_client()
        splice.offload(self.reactor)

    def _splice_closing(self) -> None:
        """The splice is closing or aborting the client's transport: handle nothing more."""
        self._go(CLOSE)

    def _splice_done(self, x: Exchange, splice: Splice) -> None:
        x.bytes_in += splice.bytes_in
        x.bytes_out += splice.bytes_out
        x.upstream = None  # the splice's, and closed with it
        target = _exit_code_source(x)
        if target is None:
            self._teardown(x, record="SessionEnded")
            return
        # The stream does not carry the exit code; the daemon's record does,
        # so the session's last record waits for its answer.
        self._teardown(x, record=None)
        d = self.factory.daemon.ask("GET", target)
        d.addCallback(self._session_exit_code, x)

    def _session_exit_code(self, answer: Answer, x: Exchange) -> None:
        value = answer.value
        if isinstance(value, dict):
            state = value.get("State") if isinstance(value.get("State"), dict) else value
            assert isinstance(state, dict)
            code = state.get("ExitCode")
            if isinstance(code, int) and not state.get("Running"):
                x.exit_code = code
        self._emit(x, "SessionEnded")

    def _refuse(self, x: Exchange, error: DockgateError) -> None:
        """Answer ``error`` ourselves; nothing of this request goes upstream."""
        answering = self.state in ANSWERING
        if not answering:
            self._go(REFUSE)
        self._release(x)
        x.status = error.status
        x.error = error.reason
        if x.decision is None:
            x.decision = Decision("deny", self._policy_name(), error.reason, error.message)
        # A refusal is on record before it is sent (a failure here still
        # refuses: there is nothing to fail open to).
        self._emit(x, "RequestDecided")
        if answering:  # the daemon's answer is under way: it cannot be replaced
            self._abort()
            return
        body = error.body()
        headers = [(b"content-type", error.content_type), (b"content-length", b"%d" % len(body))]
        try:
            parts = [self._response_head(x, error.status, _phrase(error.status), headers)]
            if x.method != "HEAD":  # a HEAD response has a length but no body
                parts += self.writer.data(body)
            parts.append(self.writer.end())
        except ValueError:
            self._abort()
            return
        self._send_client(*parts)
        self._release_gate("upstream")
        if self.reader.done:
            self._finish(x)
        else:
            # Read and drop the rest of the request (nothing of it is
            # forwarded): a client still uploading, such as `docker cp` or
            # `docker load`, would otherwise hit a broken pipe and report
            # that instead of the refusal.  Bounded in bytes and time; past
            # either, the connection is closed.
            x.body = bytearray()
            if x.has_body:
                x.timer = self.reactor.callLater(_DRAIN_SECONDS, self._drain_expired, x)
            # A refusal after dockgate asked the daemon comes outside ``_pump``: the
            # request's end (and a request pipelined behind it) may be buffered
            # already, and no new byte may come to take them.
            self._pump()

    def _drain_expired(self, x: Exchange) -> None:
        """A refused request's rest was not read within the bounds: close."""
        if self.exchange is x and self.state is not CLOSED:
            self._teardown(x)
            self._close()

    def _refuse_connection(self, error: DockgateError) -> None:
        """A head we cannot even parse: answer and close the connection."""
        body = error.body()
        assert self.transport is not None
        head = wire.serialise_response_head(
            error.status,
            _phrase(error.status),
            [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
                (b"connection", b"close"),
            ],
        )
        x = self.exchange or Exchange(
            id=_new_id(),
            method="?",
            raw_target="?",
            started=_clock(),
            has_body=False,
            chunked=False,
            length=None,
            upgrade=None,
        )
        x.status = error.status
        x.error = error.reason
        x.decision = Decision("deny", self._policy_name(), error.reason, error.message)
        self._emit(x, "RequestDecided")
        self._flush_client()
        self.transport.write(head + body)
        self._teardown(x)
        self._close()

    def _policy_name(self) -> str:
        try:
            return self.factory.policy().name
        except Exception:
            return "?"

    def _response_head(
        self, x: Exchange, status: int, reason: bytes, headers: Sequence[tuple[bytes, bytes]]
    ) -> bytes:
        """The response head for ``x``, framed for this client (see ``ResponseWriter``)."""
        return self.writer.head(
            status,
            reason,
            headers,
            method=x.method,
            http10=self._http10,
            keep_alive=self.reader.keep_alive,
        )

    def _send_client(self, *parts: bytes | memoryview) -> None:
        """Write bytes to the client, in one write, or add them to the batch."""
        assert self.transport is not None
        if parts:
            if self._batch_depth:
                batch = self._batch
                if batch is None:
                    self._batch = list(parts)
                else:
                    batch.extend(parts)
            else:
                sockio.write_parts(self.transport, parts)

    def _release_gate(self, reason: str) -> None:
        if self.gate is not None:
            self.gate.release(reason)

    def _close(self) -> None:
        """Close gracefully after what was written is flushed."""
        if self.transport is not None and self.state is not CLOSED:
            self._go(CLOSE)
            self._flush_client()
            self.transport.unregisterProducer()  # type: ignore[attr-defined]
            self.transport.loseConnection()

    def shut_down(self) -> None:
        """dockgate is stopping: record how the open exchange ended, then drop the connection."""
        self.factory.connections.discard(self)
        if self.splice is not None:
            self.splice.client_lost()
        x = self.exchange
        if x is not None and x.error is None and not (self.reader.done and x.status is not None):
            x.error = "dockgate shut down"
        self._abort()

    def _abort(self) -> None:
        """Drop the connection at once (a response cannot be completed)."""
        x = self.exchange
        if x is not None:
            self._teardown(x)
        self._batch = None  # dropped, as an abort drops what the transport holds
        if self.transport is not None:
            self._go(CLOSE)
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # -- the exchange's state and its one teardown ----------------------------

    def _go(self, event: Event) -> State:
        """Move the connection's exchange on by ``event`` (``lifecycle.TRANSITIONS``).

        Raises:
            IllegalTransition: a move the table does not have (a bug); the
                entry points answer it with ``_broken``.
        """
        # lifecycle.advance written out: an interpreted call six times an exchange.
        state = self.state
        nxt = _NEXT[state][event]
        if nxt is None:
            raise IllegalTransition(state, event)
        self.state = nxt
        return nxt

    def _teardown(
        self, x: Exchange, *, reuse: bool = False, record: AuditStage | None = "ResponseComplete"
    ) -> None:
        """End ``x``, whichever way it ended: every path out of an exchange comes here.

        Releases what it holds (``_release``), detaches it from the connection
        and writes its one completion record (``ResponseComplete``, or a
        session's ``SessionEnded``; once, whatever calls this again).  With
        ``record=None`` the caller writes it later (a session's exit code is
        asked first).  The connection's own state is the caller's to move.
        """
        self._release(x, reuse=reuse)
        if self.exchange is x:
            self.exchange = None
        if record is not None:
            self._emit(x, record)

    def _release(self, x: Exchange, *, reuse: bool = False) -> None:
        """Let go of what ``x`` holds: the answer and drain deadlines, the tenant's
        quota lock, the event scope, and its upstream connection (back to the
        pool when ``reuse`` and its answer was read whole, else aborted).

        Safe to call again: what was released is forgotten.
        """
        if self.exchange is x:  # the connection's deadline, not a later exchange's
            self._answer_deadline.clear()
        timer, x.timer = x.timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self._release_quota(x)
        for claim in x.claims:
            HOLDS.release(claim)
        if x.events is not None:
            x.events.stop()
        upstream, x.upstream = x.upstream, None
        if upstream is not None:
            if reuse:
                upstream.resume_reading("client-full")
                self.factory.pool.release(upstream)
            else:
                upstream.abort()

    def _emit(self, x: Exchange, stage: AuditStage) -> bool:
        """Send one audit event for this exchange (once per stage).

        Returns False if the sink could not record it.
        """
        if stage in x.stages:
            return True
        x.stages.add(stage)
        try:
            self.settings.audit.record(self._event(x, stage))
        except OSError:
            return False  # the sink logged it (once per interval, fail-closed)
        except Exception:
            self.log.failure("audit write failed at {stage}", stage=stage)
            return False
        return True

    def _event(self, x: Exchange, stage: AuditStage) -> AuditEvent:
        """The audit event of ``x`` at ``stage``, as things stand now."""
        return AuditEvent(
            stage=stage,
            id=x.id,
            time=_wall(),
            listener=self.factory.listener,
            peer=self.peer,
            method=x.method,
            raw_target=x.raw_target,
            request=x.request,
            decision=x.decision,
            status=x.status,
            duration=_micros(_clock() - x.started),
            bytes_in=x.bytes_in,
            bytes_out=x.bytes_out,
            error=x.error,
            exit_code=x.exit_code,
            tenant=x.tenant.name if x.tenant is not None else None,
            upstream_seconds=x.upstream_seconds,
            known=x.known,
        )


# Declared after the class rather than with ``@implementer``: mypyc (``setup.py``)
# cannot compile closures in the methods of a decorated class.
classImplements(ProxyServerProtocol, IProtocol, ILoggingContext, IHalfCloseableProtocol,
                IPushProducer, IHandshakeListener)

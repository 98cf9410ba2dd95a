"""Value types shared by the pure core and the I/O layer.

These are the seams between parsing (``admission``), deciding (``decision``
and ``policy``), recording (``audit``) and forwarding (``protocol``).  They are
frozen so that what was decided is exactly what is forwarded: nothing can
change a request between the decision and the bytes sent upstream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal
from urllib.parse import quote, urlencode

from dockgate.admission.jsonstrict import Spans, dumps, reencode

BodyKind = Literal["none", "json", "stream"]
"""How an endpoint's request body is handled.

``none``: the endpoint takes no body; a body is refused.
``json``: the body is buffered (under a cap), decoded strictly, validated and
re-serialised; the decision sees it.
``stream``: the body (a tar, an image) streams through unbuffered; the decision
sees only the head and query.
"""

Transport = Literal["unix", "tcp", "tls"]


def whole_micros(seconds: float) -> int:
    """``seconds`` (not negative) in whole microseconds, halves up.

    The one rounding rule for the durations and time stamps dockgate writes (the
    audit record, the access line, an exchange's timings): ``round`` would take
    halves to even and, with digits, formats the float, which costs more than the
    rest of a record.
    """
    return int(seconds * 1e6 + 0.5)


def _rebuilt(value: Any) -> tuple[type, tuple[Any, ...]]:
    """How pickle rebuilds a frozen value: its class called with its fields, in order.

    Compiled (setup.py), a frozen dataclass restores pickled state by assigning
    its fields, which it refuses; every field here is an argument of ``__init__``.
    """
    return type(value), tuple(getattr(value, f.name) for f in fields(value))


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of the Engine API, as the route table knows it.

    Attributes:
        id: stable dotted name used by policies and audit (``container.create``).
        method: HTTP method in upper case.
        template: path template without version prefix (``/containers/{id}/attach``).
        body: how the request body is handled.
        hijack: the daemon may take over the connection (101 or raw-stream 200).
        since: first API version with this operation.
        until: last API version with it, or None while it still exists.
    """

    id: str
    method: str
    template: str
    body: BodyKind = "none"
    hijack: bool = False
    since: str = "1.18"
    until: str | None = None

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return _rebuilt(self)


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end of a client connection, fixed when it is accepted.

    Attributes:
        user, groups: the unix user and groups of ``uid`` (unix listeners).
        principal, sans: the client certificate's CN and subject alternative
            names (TLS listeners), set once the handshake completed.
    """

    listener: str
    transport: Transport
    address: str
    pid: int | None = None
    uid: int | None = None
    gid: int | None = None
    principal: str | None = None
    user: str | None = None
    groups: tuple[str, ...] = ()
    sans: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return _rebuilt(self)


@dataclass(frozen=True, slots=True)
class CanonicalRequest:
    """A request in the one form that is decided and forwarded.

    Attributes:
        method: upper-case method.
        endpoint: the route it matched.
        path: canonical path without the version prefix.
        version: API version named in the ``/vX.Y`` prefix, or None.
        params: path parameters by template name.
        query: canonical query pairs, in the order they are forwarded.
        headers: end-to-end request headers to forward (lower-case names),
            without framing and hop-by-hop headers.
        body: the decoded JSON body for ``json`` endpoints, else None.
        body_bytes: the canonical serialisation of ``body`` that is forwarded.
        body_members: for an object body over ``admit.HEAVY_BODY`` as
            admitted (and as ``with_body`` changed it since),
            ``(body, body_bytes, spans)``: where each top-level member
            lies in the bytes, so that ``with_body`` re-encodes only what a
            change replaced (a 1 MB body costs 6-10 ms to encode whole on the
            reactor thread; a small one less than keeping spans would).  Valid
            only while ``body`` and ``body_bytes`` are those objects (checked).
    """

    method: str
    endpoint: Operation
    path: str
    version: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None
    body_bytes: bytes | None = None
    body_members: tuple[Any, bytes, Spans] | None = field(default=None, compare=False,
                                                          repr=False)

    def with_body(self, body: Any, known: Mapping[str, bytes] | None = None
                  ) -> CanonicalRequest:
        """This request with ``body``, made from ``self.body`` by replacing members
        (never by changing one in place), and its canonical bytes.

        With spans (a heavy body), only the replaced members are encoded, and the
        result keeps spans of its own, so a chain of changes (tenancy's owner label,
        its pins, a policy's ``set``, the joins' pins) each encodes only what it
        replaced.  ``known``: the canonical encoding of some replaced members'
        values (``dumps(body[key])``), which the caller made more cheaply.
        """
        spans = self._spans()
        if spans is not None and self.body_bytes is not None and isinstance(body, dict):
            encoded, spans = reencode(self.body, self.body_bytes, spans, body, known)
            return replace(self, body=body, body_bytes=encoded,
                           body_members=(body, encoded, spans))
        return replace(self, body=body, body_bytes=dumps(body), body_members=None)

    def member_bytes(self, key: str) -> bytes | None:
        """The canonical encoding of the body's top-level member ``key``'s value, cut
        from the forwarded bytes, when its spans are valid (a heavy body), else None."""
        spans = self._spans()
        span = spans.get(key) if spans is not None else None
        if span is None or self.body_bytes is None:
            return None
        return self.body_bytes[span[0] + len(dumps(key)) + 1:span[1]]

    def _spans(self) -> Spans | None:
        """The member spans of ``body_bytes``, while ``body_members`` was made for this
        very ``body`` and ``body_bytes`` (a change of either leaves them stale)."""
        members = self.body_members
        if members is None or members[0] is not self.body or members[1] is not self.body_bytes:
            return None
        return members[2]

    @property
    def target(self) -> str:
        """The request target forwarded upstream: version prefix, path, query."""
        prefix = f"/v{self.version}" if self.version else ""
        q = urlencode(self.query, quote_via=quote, safe="") if self.query else ""
        return prefix + self.path + ("?" + q if q else "")

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return _rebuilt(self)


def copy_along(body: Any, path: Sequence[str | int]) -> tuple[Any, Any]:
    """``body`` with each object and array on ``path`` copied (shallowly), for a change
    at its end: ``(the new body, the copy of the value at path)``.

    Everything off the path stays the very same object, which is what
    ``CanonicalRequest.with_body`` needs to copy those members' bytes instead of
    encoding them again, and what keeps the decoded body that was decided from
    ever being changed in place (its spans would no longer be its bytes).

    Raises:
        KeyError, IndexError: a key or index on ``path`` is not there.
        TypeError: a value on ``path`` (``body`` too) is neither object nor array.
    """
    top = _shallow(body)
    node = top
    for step in path:
        child = _shallow(node[step])
        node[step] = child
        node = child
    return top, node


def _shallow(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    raise TypeError(f"{type(value).__name__} is neither a JSON object nor an array")


Verdict = Literal["allow", "deny", "warn"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of the single decision point for one request.

    Attributes:
        verdict: ``allow``, ``deny``, or ``warn`` (allowed, with warnings).
        policy: the name of the policy that decided.
        rule: the rule id that decided, or None for the policy default.
        reason: a human sentence; for a denial it is sent to the client.
        warnings: messages for ``warn``-mode rules, returned to the client
            where the endpoint has a ``Warnings`` field.
        sets: what the policy set in the request (``set`` actions, e.g. a
            daemon default made explicit), one sentence each; recorded.
        request: the request to forward when the policy set something in
            it (its body re-serialised), else None: forward the one decided.
    """

    verdict: Verdict
    policy: str
    rule: str | None = None
    reason: str = ""
    warnings: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    request: CanonicalRequest | None = field(default=None, compare=False)

    @property
    def allowed(self) -> bool:
        """Whether the request may be forwarded."""
        return self.verdict != "deny"

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return _rebuilt(self)


AuditStage = Literal["RequestDecided", "ResponseComplete", "SessionStarted", "SessionEnded",
                     "BuildSolved"]
"""When an audit event is emitted, as Kubernetes names its audit stages.

``RequestDecided`` is written before anything is forwarded (or before a
refusal is sent); ``ResponseComplete`` when the exchange ends, however it
ends; a hijacked exchange has ``SessionStarted`` and ``SessionEnded`` instead.
A mediated BuildKit connection (``/grpc``) adds one ``BuildSolved`` per solve
(``dockgate.buildkit.connection``), with the ``build`` member.
"""


@dataclass(slots=True, init=False)
class AuditEvent:
    """Everything the I/O layer knows about an exchange at one stage.

    The audit sink turns it into its record format; keeping the canonical
    request and the decision whole lets the sink choose what to record
    (metadata only, or the canonical body) and what to redact.
    ``upstream_seconds`` is the time from forwarding the request (its head
    sent to the daemon) to the daemon's response head, once known.

    Not frozen, unlike the other records here: two are built per exchange,
    and a frozen dataclass sets each of its 17 fields through
    ``object.__setattr__``, which made construction three times as slow.
    Nothing changes an event once built; nothing keys a memory by one.
    """

    stage: AuditStage
    id: str
    time: float
    listener: str
    peer: Peer | None
    method: str
    raw_target: str
    request: CanonicalRequest | None = None
    decision: Decision | None = None
    status: int | None = None
    duration: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    error: str | None = None
    exit_code: int | None = None
    tenant: str | None = None
    upstream_seconds: float | None = None
    build: Mapping[str, Any] | None = None
    """A ``BuildSolved`` event's facts: the solve's decisions and its session's metadata."""
    known: Any = None
    """The listener's fast-path entry of a request seen before (``proxy.fastpath.Known``):
    the audit sink and the access log keep what they derive from the request, its
    decision and its caller in it, and only format what changes per record."""

    def __init__(self, *, stage: AuditStage, id: str, time: float, listener: str,
                 peer: Peer | None, method: str, raw_target: str,
                 request: CanonicalRequest | None = None, decision: Decision | None = None,
                 status: int | None = None, duration: float = 0.0, bytes_in: int = 0,
                 bytes_out: int = 0, error: str | None = None, exit_code: int | None = None,
                 tenant: str | None = None, upstream_seconds: float | None = None,
                 build: Mapping[str, Any] | None = None, known: Any = None) -> None:
        # Written out, not generated: mypyc compiles a method written in the class,
        # and two events are built per request.
        self.stage = stage
        self.id = id
        self.time = time
        self.listener = listener
        self.peer = peer
        self.method = method
        self.raw_target = raw_target
        self.request = request
        self.decision = decision
        self.status = status
        self.duration = duration
        self.bytes_in = bytes_in
        self.bytes_out = bytes_out
        self.error = error
        self.exit_code = exit_code
        self.tenant = tenant
        self.upstream_seconds = upstream_seconds
        self.build = build
        self.known = known


def record_now(
    record: Callable[[AuditEvent], None], event: AuditEvent, then: Callable[[bool], None]
) -> None:
    """An audit sink's ``record_then`` (record a decision, then call back whether it was
    written) for a sink whose ``record`` returns once the record is written, or raises."""
    try:
        record(event)
    except Exception:
        then(False)
        return
    then(True)

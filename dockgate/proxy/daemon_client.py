"""dockgate's own questions to the daemon (ownership, quotas, event owners, exit
codes, its API version), asked with treq over the daemon's own endpoint.

These side requests are off the hot path, so they use the libraries the design
chose (treq on a ``twisted.web.client.Agent``) instead of the proxy's
hand-tuned ``upstream`` pool: the Agent is given the very endpoint the proxy
connects to, so unix, tcp and tls upstreams all work, and it keeps its own
keep-alive connections, which ``close`` drops at shutdown.

What stays dockgate's: every failure is an ``Answer`` with no value, which
the policy reads as "unknown" (the strict reading).  An answer that has not
come whole within ``answer_timeout`` is ``TIMED_OUT`` and its connection is
dropped (a request waiting on an ownership check, a tenant's quota lock and a
tenant's event stream must not wait forever on a daemon, or a volume plugin,
that never answers); a body over ``limit`` is not read further.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from hyperlink import EncodedURL
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IResponse
from zope.interface import implementer

from dockgate.errors import TIMED_OUT

log = Logger()

LIMIT = 4 << 20
"""The largest answer read (4 MiB): inspects and filtered lists are far smaller."""

_OWN_HEADERS = frozenset({"host", "user-agent", "content-type", "content-length"})
"""Headers a side request sets itself; a replayed request's copies are dropped."""


@dataclass(frozen=True)
class Answer:
    """What the daemon answered to one side request.

    Attributes:
        status: the HTTP status; 0 when there was no usable answer (not
            reached, gone mid-answer, over the limit), ``TIMED_OUT`` when
            none came in time.
        content_type: the answer's Content-Type (empty after a failure).
        raw: the body as received, any status (empty after a failure).
        value: the decoded JSON of a 2xx answer, else None.
    """

    status: int
    content_type: bytes = b""
    raw: bytes = b""
    value: Any = None


_FAILED = Answer(0)

_SENT_AS_IT_IS = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*(?<!\?)").fullmatch
"""Targets that treq (hyperlink) sends byte for byte: URI characters only, and no
empty query (a trailing ``?`` is dropped).  Anything else is checked by letting
hyperlink convert it, which costs ~30 us per side request."""


def _sent_as_it_is(target: str) -> bool:
    """Whether treq would put exactly ``target`` on the request line."""
    if _SENT_AS_IT_IS(target) is not None:
        return True
    if "#" in target:  # the Agent leaves a fragment off the request line
        return False
    url = "http://docker" + target
    return bool(EncodedURL.from_text(url).to_uri().to_text() == url)


@implementer(IAgentEndpointFactory)
class _DaemonEndpoint:
    """Every URL is the daemon: the Agent connects where the proxy does."""

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint

    def endpointForURI(self, uri: object) -> IStreamClientEndpoint:
        """The daemon's endpoint, whatever the (placeholder) host."""
        return self._endpoint


class _TooLarge(Exception):
    """The answer is longer than the client's limit."""


class _CappedBody(Protocol):
    """Reads an answer's body up to a limit, and drops the connection past it
    or when cancelled (``treq.collect``'s Deferred cannot be cancelled, so an
    answer that stalls mid-body would hold its connection forever)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self.done: Deferred[bytes] = Deferred(lambda _: self._drop())

    def dataReceived(self, data: bytes) -> None:
        """Keep ``data``, unless the answer grew past the limit."""
        if self.done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._drop()
            self.done.errback(_TooLarge())
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The body ended whole, or the answer failed."""
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):  # type: ignore[no-untyped-call]
            self.done.callback(b"".join(self._parts))
        else:
            self.done.errback(reason)

    def _drop(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]  # closes the connection


class DaemonClient:
    """Asks the daemon behind ``endpoint`` questions of dockgate's own."""

    def __init__(
        self,
        reactor: IReactorTime,
        endpoint: IStreamClientEndpoint,
        *,
        answer_timeout: float | None,
        limit: int = LIMIT,
    ) -> None:
        self._reactor = reactor
        self._timeout = answer_timeout
        self._limit = limit
        self._pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]
        self._pool.maxPersistentPerHost = 4  # questions of concurrent requests, kept alive
        self._agent = Agent.usingEndpointFactory(  # type: ignore[no-untyped-call]
            reactor, _DaemonEndpoint(endpoint), pool=self._pool)
        self._http = HTTPClient(self._agent)
        """One treq client for every question (it wraps the Agent once, not per call)."""
        self._asking: set[Deferred[Any]] = set()
        self._cooperator = Cooperator(scheduler=lambda step: reactor.callLater(0, step))
        """Writes request bodies on this client's reactor (not the global one)."""

    def ask(
        self,
        method: str,
        target: str,
        *,
        body: object = None,
        payload: bytes | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Deferred[Answer]:
        """Send ``method target`` (with ``body`` as JSON, or ``payload`` as it
        is, and the caller's ``headers`` less those set here); the Deferred
        fires with the ``Answer`` and never fails."""
        if body is not None:
            payload = json.dumps(body).encode()
        sent = Headers({b"host": [b"docker"], b"user-agent": [b"dockgate"]})
        for name, value in headers:
            if name.lower() not in _OWN_HEADERS:
                sent.addRawHeader(name.encode("latin-1"), value.encode("latin-1"))
        if payload is not None:
            sent.setRawHeaders(b"content-type", [b"application/json"])
        result: Deferred[Answer] = Deferred()
        try:
            if not _sent_as_it_is(target):
                # treq would send another target than the one dockgate built and checked.
                raise ValueError("the target is not sent as it is")
            step: Deferred[Any] = self._http.request(
                method, "http://docker" + target, headers=sent,
                data=None if payload is None else FileBodyProducer(  # type: ignore[no-untyped-call]
                    BytesIO(payload), cooperator=self._cooperator),
                allow_redirects=False, unbuffered=True)
        except (ValueError, UnicodeError) as e:
            log.warn("side request {target} not sent: {e}", target=target, e=e)
            result.callback(_FAILED)
            return result
        timer = None
        if self._timeout is not None:
            def timed_out() -> None:
                log.warn("side request {target}: no answer from the daemon in {seconds} s",
                         target=target, seconds=self._timeout)
                result.callback(Answer(TIMED_OUT))
                step.cancel()  # drops the connection, connecting, waiting or reading

            timer = self._reactor.callLater(self._timeout, timed_out)

        def read(response: IResponse) -> Deferred[Answer]:
            reader = _CappedBody(self._limit)
            response.deliverBody(reader)  # type: ignore[no-untyped-call]
            status = response.code
            content_type = (response.headers.getRawHeaders(b"content-type") or [b""])[-1]
            return reader.done.addCallback(lambda raw: _answer(raw, status, content_type))

        def done(outcome: object) -> None:
            self._asking.discard(step)
            if timer is not None and timer.active():
                timer.cancel()
            if not result.called:
                result.callback(outcome if isinstance(outcome, Answer) else _FAILED)

        self._asking.add(step)
        step.addCallback(read).addBoth(done)
        return result

    def close(self) -> Deferred[Any]:
        """Stop every question in flight and close the kept-alive connections."""
        for d in list(self._asking):
            d.cancel()
        closed: Deferred[Any] = self._pool.closeCachedConnections()  # type: ignore[no-untyped-call]
        return closed


def _answer(raw: bytes, status: int, content_type: bytes) -> Answer:
    """The ``Answer`` for a whole body: decoded only for 2xx."""
    value = None
    if 200 <= status < 300:
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
    return Answer(status, content_type, raw, value)

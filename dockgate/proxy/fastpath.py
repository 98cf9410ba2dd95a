"""One fast path per listener: a request seen before is admitted, decided,
serialised and recorded as it was the first time, without doing any of it again.

Clients repeat themselves: the CLI, compose and every tool that polls the
daemon (Traefik, Portainer, monitoring agents) send the same few heads over
and over, byte for byte.  For a request without a body whose decision rests
on nothing but the request and its caller, everything dockgate works out
before forwarding is a pure function of a few inputs, so the first result is
the result of every repetition.  ``FastPath`` keeps that whole result
(``Known``) under one key and the protocol reuses it.

The key
-------
``(caller, head)`` within one generation ``(policy, api)``:

* ``head``: the raw request head, every byte of it up to and including the
  blank line.  Everything the client says without a body is in it: method,
  target, every header (so ``Upgrade``, ``Expect``, ``Connection``, framing),
  the HTTP version.  The parse (``http1.server``), admission
  (``admission.admit_head``), the forwarded head dockgate serialises, and the
  decision's view of the request are functions of these bytes.
* ``caller``: a number per ``Peer`` (``caller``), the whole caller identity:
  listener, transport, address, pid, uid, gid, user, groups, certificate
  principal and names.  Policies decide on the peer, and the audit record and
  the access log line name it; a peer changed by a TLS handshake is another
  caller.  The listener is also fixed by the factory that owns the fast path.
* ``policy``: the policy object in force (``ProxySettings.policy()``).  A
  reload (SIGHUP, a changed file) makes another object; an entry of another
  generation is never used, and the first such lookup forgets every entry.
* ``api``: the ``ApiContext`` admission ran with (the daemon's version for
  unversioned requests, the JSON body cap); a new daemon version is a new
  object, handled as a reload.

Why it is complete: an admitted, decided request without a body is, in
dockgate, ``decide(policy, admit_head(parse(head), api), peer)`` followed by
its serialisation; nothing else is read on that path *unless* the decision
needs the daemon's state or the tenants' map, and those requests never take
the fast path (below).  Policies are pure functions of request and peer (all
of dockgate's are; a rule reading the clock or outside state would have to be
left to the full path).  What the audit sink and the access log derive from an
entry depends in addition on their own configuration (the audit policy's
level and redactor); they keep that dependency themselves: each slot names the
audit policy object it was made under and is rebuilt when that changes.

Who may take it (fail closed: anything else takes the full path)
-----------------------------------------------------------------
``remember`` keeps only requests that have no body (``Operation.body ==
"none"``, no Content-Length or chunked body), do not hijack, are not held
behind a create's verification (``never``: ``binding.STARTS``), were decided
without a ``DecisionContext`` (the protocol calls ``remember`` only from its
quick path: no tenants map, no daemon facts, no default user, no joins), and
whose decision was not the ``internal-error`` of a failing policy.  Heads
larger than ``HEAD_LIMIT`` bytes are never kept.  A hit is used only when
tenancy is still off and the generation still matches (``current``).

An entry holds: the parse (``Request``, keep-alive, expects-continue), the
admitted and decided request as forwarded, the decision, the policy's
redaction rules for the answer, the forwarded head (filled on first use), and
two slots its consumers fill: the audit record's encoded members
(``audit.schema.plain_members``, per stage, with only id, time, status,
duration and byte counts left to format) and the access log line's fixed part.

Bounded: at most ``limit`` entries (all forgotten when full, as a client
sending endless distinct heads costs a cleared dictionary now and then, never
memory) and at most ``callers`` caller numbers.  It lives in the reactor thread.

What it does not replace (``memo``): the daemon's response heads
(``http1.client``), the facts the protocol reads from them
(``proxy.protocol._response_facts``) and the client response heads built from
them (``http1.server.ResponseWriter``) are keyed by the daemon's bytes, which
carry its ``Date`` and differ per second; no request key can name them.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Final

from dockgate.http1.server import Request
from dockgate.model import CanonicalRequest, Decision, Peer

__all__ = ["HEAD_LIMIT", "FastPath", "Finder", "Known"]

HEAD_LIMIT: Final = 2048
"""The largest raw head, in bytes, an entry is kept for: with ``FastPath``'s
limit, the heads held come to two megabytes at most."""


@dataclass(slots=True, eq=False)
class Known:
    """Everything a request head seen before leads to (see the module docstring)."""

    parsed: tuple[Request, bool, bool]
    """The parsed head, whether it keeps the connection alive, whether it expects 100."""
    policy: Any  # not ``object``: mypyc's dataclasses (``setup.py``) cannot name it
    """The policy object it was decided under (the generation)."""
    api: Any
    """The ``ApiContext`` it was admitted with (the generation)."""
    request: CanonicalRequest
    """The request as decided and forwarded."""
    decision: Decision
    redactions: list[Any]
    """The policy's ``redact`` rules for the answer (``policy.redact.rules_for``)."""
    head: bytes | None = None
    """The head dockgate sends upstream, once serialised (allowed requests)."""
    audit: dict[str, tuple[object, Any, str | None]] = field(default_factory=dict)
    """Per stage: (audit policy, level, encoded members or None), filled by the audit sink."""
    access: tuple[Any, ...] | None = None
    """The access log line's fixed part, filled by ``service.oplog.AccessLog``."""


class Finder:
    """One connection's lookup: its caller number and the listener's entries.

    The number is fixed for the connection (a TLS handshake that names the
    caller takes a new ``Finder``), so a caller number forgotten meanwhile
    (``FastPath.caller``) costs sharing with later connections, never the
    connection its entries.
    """

    __slots__ = ("_known", "caller")

    def __init__(self, caller: int, known: dict[tuple[int, bytes], Known]) -> None:
        self.caller = caller
        self._known = known

    def __call__(self, head: bytes) -> Known | None:
        """The entry of ``head`` from this caller, or None."""
        return self._known.get((self.caller, head))


class FastPath:
    """The known requests of one listener, by ``(caller, head)`` (see the module docstring)."""

    def __init__(self, *, never: Collection[str] = (), limit: int = 1024,
                 callers: int = 4096) -> None:
        self.never = frozenset(never)
        """Endpoint ids whose forwarding waits on state (``binding.STARTS``)."""
        self.limit = limit
        self.callers_limit = callers
        self._known: dict[tuple[int, bytes], Known] = {}
        self._callers: dict[Peer, int] = {}
        self._numbers = itertools.count(1)

    def __len__(self) -> int:
        return len(self._known)

    def caller(self, peer: Peer) -> int:
        """The number of ``peer`` (the same for every connection of one caller).

        Numbers are never reused: forgetting them when there are too many only
        costs the connections of forgotten callers their sharing.
        """
        number = self._callers.get(peer)
        if number is None:
            if len(self._callers) >= self.callers_limit:
                self._callers.clear()
            number = self._callers[peer] = next(self._numbers)
        return number

    def lookup(self, peer: Peer) -> Finder:
        """How a reader of ``peer``'s connection finds what its heads are known as
        (``RequestReader.lookup``); the connection remembers under the same number."""
        return Finder(self.caller(peer), self._known)

    def current(self, known: Known | None, policy: object, api: object,
                tenancy: bool) -> Known | None:
        """``known`` if it may be used now: same generation, tenancy off; else None.

        An entry of an older generation means a reload: every entry is forgotten.
        """
        if known is None or tenancy:
            return None
        if known.policy is policy and known.api is api:
            return known
        self._known.clear()
        return None

    def remember(self, finder: Finder, head: bytes, parsed: tuple[Request, bool, bool], *,
                 policy: object, api: object, request: CanonicalRequest, decision: Decision,
                 redactions: list[Any]) -> Known | None:
        """Keep the result of a request decided on the quick path, if it may be reused.

        Returns the entry (the protocol fills its forwarded head), or None when
        the request must take the full path every time (see the module docstring).
        """
        endpoint = request.endpoint
        event = parsed[0]
        if (
            len(head) > HEAD_LIMIT
            or endpoint.body != "none"
            or endpoint.hijack
            or endpoint.id in self.never
            or event.length or event.chunked
            or request.body is not None
            or decision.rule == "internal-error"
        ):
            return None
        if len(self._known) >= self.limit:
            self._known.clear()
        known = Known(parsed, policy, api, request, decision, redactions)
        self._known[(finder.caller, head)] = known
        return known

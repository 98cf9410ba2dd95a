"""The single decision point: every request passes ``decide`` before any byte
of it is forwarded.

Keeping one function here (rather than checks scattered through the I/O code)
is what lets the audit log say, for every request, exactly what was decided
and why, and lets ``policy explain`` and ``audit replay`` re-run a decision
offline.
"""

from __future__ import annotations

from typing import Protocol

from dockgate.memo import Memo
from dockgate.model import CanonicalRequest, Decision, Peer


class Policy(Protocol):
    """Anything that can decide a canonical request for a peer."""

    @property
    def name(self) -> str:
        """The policy's name, as shown in denials and audit records."""
        ...

    def decide(self, request: CanonicalRequest, peer: Peer) -> Decision:
        """Return the decision for ``request`` sent by ``peer``."""
        ...



def decide(
    policy: Policy, request: CanonicalRequest, peer: Peer, context: object | None = None
) -> Decision:
    """Ask ``policy`` for a decision, failing closed if the policy itself fails.

    A bug in a policy must never turn into an allow, so any exception becomes a
    denial that names it.  ``context`` carries facts the I/O layer looked up
    for the policy (see ``dockgate.policy.DecisionContext``); it is passed only
    when there is one, so simple policies need not accept it.
    """
    try:
        if context is not None:
            return policy.decide(request, peer, context)  # type: ignore[call-arg]
        return policy.decide(request, peer)
    except Exception as e:
        return Decision("deny", policy.name, "internal-error", f"policy error: {e!r}")


_DECIDED: Memo[tuple[int, int, Peer], tuple[Policy, CanonicalRequest, Decision]] = Memo(1024)


def decide_memo(policy: Policy, request: CanonicalRequest, peer: Peer) -> Decision:
    """``decide`` without context, remembered by the identity of policy and request.

    Policies are pure functions of the request and the peer, and a repeated
    head is admitted as the very same ``CanonicalRequest`` (``admission``),
    so its decision is the same object too (see ``memo``).  A reloaded policy
    is another object, so nothing decided under the old one is reused.
    Callers use it for ``small`` body-less requests only (which bounds what
    the memory holds), and only for policies that are pure functions of
    request and peer (all of dockgate's are): a rule that looked at the
    clock or at outside state would have to be decided with ``decide``.
    """
    key = (id(policy), id(request), peer)
    found = _DECIDED.get(key)
    if found is not None and found[0] is policy and found[1] is request:
        return found[2]
    decision = decide(policy, request, peer)
    _DECIDED.put(key, (policy, request, decision))
    return decision

"""The single decision point: every request passes ``decide`` before any byte
of it is forwarded.

Keeping one function here (rather than checks scattered through the I/O code)
is what lets the audit log say, for every request, exactly what was decided
and why, and lets ``policy explain`` and ``audit replay`` re-run a decision
offline.
"""

from __future__ import annotations

from typing import Protocol

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

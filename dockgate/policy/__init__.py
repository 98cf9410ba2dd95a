"""The policy engine: YAML policies compiled into a pure ``decide``.

Public API (used by the serve command and ``dockgate policy``):

- ``load_policy(path)``: read, validate and compile a policy file.
- ``PolicyError``: an invalid file; its message names ``file:line: field: why``.
- ``PolicyHolder(path)``: the policy in force, swapped atomically on ``reload()``.
- ``DecisionContext``: optional facts from the I/O layer (the default user,
  the daemon's ``/info`` facts as ``DaemonFacts``).

The core is pure: no reactor, and no I/O during a decision except that
``host_paths`` ``lstat``s the components of a bind source below an allowed
root (``hostpaths``: dockgate runs on the daemon's host), and the opt-in
``resolve_symlinks`` reads the resolved path.
"""

from __future__ import annotations

from dockgate.policy.controls import DaemonFacts, DecisionContext, Finding
from dockgate.policy.denial import RuleFinding
from dockgate.policy.rules import CompiledPolicy, Evaluation, load_policy
from dockgate.policy.source import PolicyError


class PolicyHolder:
    """Holds the policy in force so a reload (SIGHUP) can swap it without a restart.

    A reload that fails keeps the old policy: an operator's typo must never
    leave the proxy without a policy, nor with a half-read one.
    """

    def __init__(self, path: str):
        self.path = path
        self._current = load_policy(path)

    @property
    def current(self) -> CompiledPolicy:
        """The policy in force."""
        return self._current

    def reload(self) -> None:
        """Re-read the file; on PolicyError keep the old policy and re-raise."""
        self._current = load_policy(self.path)


__all__ = [
    "CompiledPolicy",
    "DaemonFacts",
    "DecisionContext",
    "Evaluation",
    "Finding",
    "PolicyError",
    "PolicyHolder",
    "RuleFinding",
    "load_policy",
]

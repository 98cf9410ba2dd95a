"""A denial's reasons: each failed rule's finding, and the one message they make.

Apart from ``rules`` because the build control (``buildcontrol``), which
``rules`` registers, words its denials the same way: with these here, the
policy package imports in one direction only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dockgate.policy.controls import Finding


@dataclass(frozen=True, slots=True)
class RuleFinding:
    """A finding attributed to the rule (and its mode) that produced it."""

    rule: str
    mode: str
    finding: Finding

    @property
    def text(self) -> str:
        """``rule R: field why`` (for audit and warn summaries)."""
        return f"rule {self.rule}: {self.finding.text}"


DENIAL_LINES = 8
"""Failed rules listed in a denial, one line each; the rest are counted."""
DENIAL_CHARS = 2000
"""Longest denial message (the docker CLI prints it whole)."""


def denial_reason(policy: str, enforced: Sequence[RuleFinding]) -> str:
    """Every failed rule of a denial, one line each, within a bounded length.

    The first line keeps the one-rule form (``denied by policy P rule R:
    why``); each further finding is a line ``also rule R: why``, so a caller
    fixes everything in one round instead of one rule per attempt.
    """
    first = enforced[0]
    lines = [f"denied by policy {policy} rule {first.rule}: {first.finding.text}"]
    size = len(lines[0])
    shown = 1
    for rf in enforced[1:]:
        line = f"also rule {rf.rule}: {rf.finding.text}"
        if line in lines or shown >= DENIAL_LINES or size + len(line) > DENIAL_CHARS:
            continue
        lines.append(line)
        size += len(line) + 1
        shown += 1
    rest = len({(rf.rule, rf.finding.text) for rf in enforced}) - shown
    if rest > 0:
        lines.append(f"and {rest} more (dockgate policy explain lists them all)")
    return "\n".join(lines)

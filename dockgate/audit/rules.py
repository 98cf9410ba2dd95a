"""The audit policy: which requests are recorded, at what level, and which sessions are kept.

Modelled on the Kubernetes audit policy: an ordered list of rules, the first
rule that matches an exchange decides its level, and a default applies when
none matches.  Unlike Kubernetes, the default is ``metadata`` (not ``None``):
a proxy installed for auditing should record everything unless told not to.

A rule matches on endpoint ids (shell globs over ``container.create``-style
ids) and, optionally, on the decision, so a policy can say "ping at level
none, except when it was denied".  Files are YAML, read with the policy
engine's reader, so every problem is reported as ``file:line: field: why``.
A glob that matches no endpoint dockgate knows is an error: a misspelt id
would otherwise silently record nothing, or everything.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from dockgate.audit.redact import DEFAULT_ENV_PATTERNS, Redactor
from dockgate.audit.schema import LEVELS, Level
from dockgate.policy.source import Document, PolicyError, read_yaml, schema_problems

__all__ = ["AuditPolicy", "AuditRule", "Choice", "load_audit_policy", "parse_audit_policy"]

_VERDICTS = ("allow", "deny", "warn")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "version": {"enum": [1]},
        "default": {"enum": list(LEVELS)},
        "redact": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"env": {"type": "array", "items": {"type": "string", "minLength": 1}}},
        },
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["level"],
                "properties": {
                    "id": {"type": "string"},
                    "endpoints": {
                        "type": "array", "minItems": 1,
                        "items": {"type": "string", "minLength": 1},
                    },
                    "decisions": {
                        "type": "array", "minItems": 1, "items": {"enum": list(_VERDICTS)},
                    },
                    "level": {"enum": list(LEVELS)},
                    "session": {"type": "boolean"},
                },
            },
        },
    },
}


@dataclass(frozen=True, slots=True)
class Choice:
    """What to record for one exchange."""

    level: Level
    session: bool = False
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRule:
    """One compiled rule: globs over endpoint ids, optional verdicts, the outcome."""

    id: str
    endpoints: tuple[str, ...]
    decisions: frozenset[str] | None
    choice: Choice

    def matches(self, endpoint: str | None, verdict: str | None) -> bool:
        """Whether this rule applies to an exchange on ``endpoint`` decided ``verdict``.

        An exchange refused before routing has no endpoint id; it matches
        only rules whose globs include ``*``.
        """
        if self.decisions is not None and verdict not in self.decisions:
            return False
        name = endpoint or ""
        return any(fnmatch.fnmatchcase(name, glob) for glob in self.endpoints)


@dataclass(frozen=True, slots=True)
class AuditPolicy:
    """Ordered rules, first match wins; ``default`` when none matches."""

    rules: tuple[AuditRule, ...] = ()
    default: Level = "metadata"
    redactor: Redactor = field(default_factory=Redactor)
    source: str = "(built-in)"

    def choose(self, endpoint: str | None, verdict: str | None) -> Choice:
        """The level (and session recording) for an exchange: the first rule that matches.

        A request seen before keeps its choice with its fast-path entry
        (``audit.sink``), so this runs on the full path only.
        """
        for rule in self.rules:
            if rule.matches(endpoint, verdict):
                return rule.choice
        return Choice(self.default)


def _known_endpoints() -> tuple[str, ...]:
    from dockgate.admission.routes import ROUTES  # noqa: PLC0415 (only needed to check globs)

    return tuple(r.endpoint.id for r in ROUTES)


def parse_audit_policy(doc: Document, known: Sequence[str] | None = None) -> AuditPolicy:
    """Compile a parsed audit policy document; PolicyError lists every problem."""
    data = doc.data if doc.data is not None else {}
    problems = schema_problems(Document(doc.file, data, doc.lines), SCHEMA)
    if problems:
        raise PolicyError(problems)
    ids = tuple(known) if known is not None else _known_endpoints()
    rules: list[AuditRule] = []
    for i, raw in enumerate(data.get("rules", ())):
        globs = tuple(raw.get("endpoints", ("*",)))
        for j, glob in enumerate(globs):
            if not any(fnmatch.fnmatchcase(e, glob) for e in ids):
                problems.append(doc.problem(("rules", i, "endpoints", j),
                                            f"{glob!r} matches no endpoint id "
                                            "(see 'dockgate api routes')"))
        level = cast(Level, raw["level"])
        if raw.get("session") and level == "none":
            problems.append(doc.problem(("rules", i, "session"),
                                        "a session cannot be recorded at level none"))
        verdicts = raw.get("decisions")
        rule_id = str(raw.get("id", f"rules[{i}]"))
        rules.append(AuditRule(
            id=rule_id,
            endpoints=globs,
            decisions=frozenset(verdicts) if verdicts else None,
            choice=Choice(level, bool(raw.get("session", False)), rule_id),
        ))
    if problems:
        raise PolicyError(problems)
    patterns = tuple(data.get("redact", {}).get("env", DEFAULT_ENV_PATTERNS))
    return AuditPolicy(
        rules=tuple(rules),
        default=cast(Level, data.get("default", "metadata")),
        redactor=Redactor(patterns),
        source=doc.file,
    )


def load_audit_policy(path: str) -> AuditPolicy:
    """Read and compile the audit policy at ``path``; PolicyError names ``file:line``."""
    return parse_audit_policy(read_yaml(path))

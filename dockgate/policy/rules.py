"""A loaded policy: ordered rules, each one control with a mode, and how they combine.

Combination: every applicable rule is evaluated (so audit and warn findings
are never hidden by an earlier match); the first ``enforce`` finding in file
order decides a denial; otherwise ``warn`` findings make the verdict ``warn``;
``audit`` findings never change the verdict but are recorded.  Evaluating
everything rather than stopping at the first match costs little (facts are
extracted once) and is what lets ``policy explain`` show the whole trail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dockgate.model import CanonicalRequest, Decision, Peer
from dockgate.policy import hostpaths, root_actions, spelling
from dockgate.policy.buildcontrol import build
from dockgate.policy.controls import BUILDERS as BASE_BUILDERS
from dockgate.policy.controls import Check, DecisionContext, Finding, OptionError, endpoint_globs
from dockgate.policy.denial import RuleFinding, denial_reason
from dockgate.policy.facts import extract
from dockgate.policy.schema import CONTROLS, POLICY_SCHEMA
from dockgate.policy.source import Document, PolicyError, read_yaml, schema_problems

_NO_CONTEXT = DecisionContext()

BUILDERS = {**BASE_BUILDERS, "build": build, **root_actions.BUILDERS}
"""Every control (name as in the policy file) → its builder."""

IMPLICIT_PLAIN_NAMES = "plain-plugin-names"
"""The rule every policy gets unless it has a ``plugin_names`` rule of its own:
driver names with path syntax reach host sockets (root_actions.plain_name)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One rule's part in a decision, for ``policy explain``."""

    rule: str
    mode: str
    control: str
    outcome: str
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The decision plus every finding, and (when asked for) the trail of rules."""

    decision: Decision
    findings: tuple[RuleFinding, ...]
    trail: tuple[Step, ...] = ()

    @property
    def audit(self) -> tuple[RuleFinding, ...]:
        """Findings of audit-mode rules: the audit log records these."""
        return tuple(f for f in self.findings if f.mode == "audit")


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule."""

    id: str
    mode: str
    control: str
    check: Check
    scope: tuple[Any, ...] | None = None
    exempt: Mapping[str, Any] | None = None

    def applies_to(self, endpoint_id: str) -> bool:
        """Whether the rule's ``applies_to`` scope covers ``endpoint_id``."""
        return self.scope is None or any(p.match(endpoint_id) for p in self.scope)

    def exempts(self, peer: Peer) -> bool:
        """Whether ``peer`` is exempt (any listed uid, gid, principal or listener matches)."""
        ex = self.exempt
        if not ex:
            return False
        if peer.uid is not None and peer.uid in ex.get("uids", ()):
            return True
        if peer.gid is not None and peer.gid in ex.get("gids", ()):
            return True
        if peer.principal is not None and any(p.match(peer.principal) for p in ex["principals"]):
            return True
        return any(p.match(peer.listener) for p in ex["listeners"])


@dataclass
class CompiledPolicy:
    """A policy ready to decide; satisfies ``dockgate.policy.decision.Policy``."""

    name: str
    rules: Sequence[Rule]
    source: str = ""
    description: str = ""
    warnings: tuple[str, ...] = ()
    """Problems that ``serve`` refuses but ``policy check`` only shows (``hostpaths``)."""
    checks_bodies: bool = field(init=False)

    def __post_init__(self) -> None:
        self.checks_bodies = any(
            r.control != "endpoints" and r.id != IMPLICIT_PLAIN_NAMES for r in self.rules
        )

    def wants_default_user(self, request: CanonicalRequest, peer: Peer) -> bool:
        """Whether the decision depends on ``DecisionContext.default_user``.

        True when a ``user`` rule applies to this endpoint and peer and the
        request leaves some ``User`` empty.  The I/O layer can call this first
        and only then look up the image's (or container's) configured user,
        so ordinary requests cost no extra daemon round trip.
        """
        eid = request.endpoint.id
        if not any(
            r.control == "user" and r.applies_to(eid) and not r.exempts(peer) for r in self.rules
        ):
            return False
        return any(not v for _, v in extract(request).users)

    def wants_daemon_facts(self, request: CanonicalRequest, peer: Peer) -> bool:
        """Whether the decision depends on ``DecisionContext.daemon`` (``GET /info``).

        Only a ``daemon_defaults`` rule on a create at an old API version
        needs it; the I/O layer reads ``/info`` once and keeps it.
        """
        eid = request.endpoint.id
        return root_actions.needs_daemon_facts(request) and any(
            r.control == "daemon_defaults" and r.applies_to(eid) and not r.exempts(peer)
            for r in self.rules
        )

    def decide(
        self, request: CanonicalRequest, peer: Peer, context: DecisionContext | None = None
    ) -> Decision:
        """The decision for ``request`` from ``peer`` (see ``evaluate``)."""
        return self.evaluate(request, peer, context).decision

    def evaluate(
        self,
        request: CanonicalRequest,
        peer: Peer,
        context: DecisionContext | None = None,
        *,
        trail: bool = False,
    ) -> Evaluation:
        """Run every applicable rule; return the decision and all findings.

        ``context`` supplies what the pure core cannot know (the image's
        default user).  ``trail`` records each rule's outcome for ``explain``.
        """
        ctx = context or _NO_CONTEXT
        facts = extract(request)
        eid = request.endpoint.id
        found: list[RuleFinding] = []
        applied: list[RuleFinding] = []
        steps: list[Step] = []
        if facts.invalid and self.checks_bodies:
            f = facts.invalid[0]
            found.append(RuleFinding("invalid-body", "enforce", Finding(f[0], f[1])))
        for rule in self.rules:
            if not rule.applies_to(eid):
                if trail:
                    steps.append(Step(rule.id, rule.mode, rule.control, "not applicable"))
                continue
            if rule.exempts(peer):
                if trail:
                    steps.append(Step(rule.id, rule.mode, rule.control, "peer exempt"))
                continue
            got = rule.check(facts, request, ctx)
            for hit in got:
                if hit.sets is not None and rule.mode == "enforce":
                    applied.append(RuleFinding(rule.id, rule.mode, hit))
                else:
                    found.append(RuleFinding(rule.id, rule.mode, hit))
            if trail:
                steps.append(
                    Step(
                        rule.id,
                        rule.mode,
                        rule.control,
                        f"{len(got)} finding(s)" if got else "pass",
                        tuple(got),
                    )
                )
        decision = self._combine(found)
        if applied and decision.allowed:
            decision = _apply(decision, request, applied)
        return Evaluation(decision, tuple(found), tuple(steps))

    def _combine(self, found: list[RuleFinding]) -> Decision:
        if not found:
            return Decision("allow", self.name, None, f"allowed by policy {self.name}")
        enforced = [rf for rf in found if rf.mode == "enforce"]
        if enforced:
            return Decision("deny", self.name, enforced[0].rule,
                            denial_reason(self.name, enforced))
        warns = [rf for rf in found if rf.mode == "warn"]
        audits = [rf for rf in found if rf.mode == "audit"]
        reason = f"allowed by policy {self.name}"
        if warns:
            reason += "; warn: " + "; ".join(rf.text for rf in warns)
        if audits:
            reason += "; audit: " + "; ".join(rf.text for rf in audits)
        if warns:
            warnings = tuple(
                f"dockgate: policy {self.name} rule {rf.rule}: {rf.finding.text}" for rf in warns
            )
            return Decision("warn", self.name, warns[0].rule, reason, warnings)
        return Decision("allow", self.name, None, reason)


def _apply(decision: Decision, request: CanonicalRequest, applied: list[RuleFinding]) -> Decision:
    """The decision with the policy's ``set`` actions applied to a copy of the request body.

    Only the objects on each set path are copied; the forwarded bytes are the
    canonical serialisation of the new body, as for any admitted body (only the
    top-level members a set replaced are encoded again: ``with_body``).
    """
    body: dict[str, Any] = dict(request.body)
    for rf in applied:
        assert rf.finding.sets is not None
        path, value = rf.finding.sets
        node = body
        for key in path[:-1]:
            child = node.get(key)
            node[key] = dict(child) if isinstance(child, Mapping) else {}
            node = node[key]
        node[path[-1]] = value
    sets = tuple(f"rule {rf.rule}: {rf.finding.text}" for rf in applied)
    return replace(
        decision,
        reason=decision.reason + "; set: " + "; ".join(sets),
        sets=sets,
        request=request.with_body(body),
    )


def compile_policy(doc: Document) -> CompiledPolicy:
    """Validate ``doc`` (schema, then semantics) and build the policy.

    Raises PolicyError listing every problem, each located by file and line.
    """
    problems = schema_problems(doc, POLICY_SCHEMA)
    schema_ok = not problems
    data = doc.data
    raw_rules = data.get("rules") if isinstance(data, dict) else None
    rules: list[Rule] = []
    roots: list[str] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(raw_rules if isinstance(raw_rules, list) else ()):
        path = ("rules", i)
        if not isinstance(r, dict):
            continue
        rid = r.get("id")
        if isinstance(rid, str) and rid in seen:
            problems.append(
                doc.problem((*path, "id"), f"duplicate rule id {rid!r} (first at rule {seen[rid]})")
            )
        if isinstance(rid, str):
            seen.setdefault(rid, i)
        controls = [k for k in r if k in CONTROLS]
        if len(controls) != 1:
            problems.append(
                doc.problem(
                    path,
                    "a rule needs exactly one control, found "
                    + (", ".join(controls) or "none")
                    + f" (controls: {', '.join(CONTROLS)})",
                )
            )
            continue
        if not schema_ok:
            continue
        control = controls[0]
        cfg = r[control] or {}
        try:
            check = BUILDERS[control](cfg)
            scope = endpoint_globs(r, "applies_to") if "applies_to" in r else None
        except OptionError as e:
            where = (*path, control, *e.where) if e.where[0] != "applies_to" else (*path, *e.where)
            problems.append(doc.problem(where, str(e)))
            continue
        except (ValueError, KeyError) as e:
            problems.append(doc.problem((*path, control), str(e)))
            continue
        if isinstance(check, hostpaths.HostPathCheck) and not check.accept_writable_roots:
            problems_ = hostpaths.root_problems(check.allow)
            roots += [doc.problem((*path, control), p) for p in problems_]
        exempt = None
        if "exempt" in r:
            ex = r["exempt"]
            exempt = {
                "uids": tuple(ex.get("uids", ())),
                "gids": tuple(ex.get("gids", ())),
                "principals": tuple(spelling.name_pattern(g) for g in ex.get("principals", ())),
                "listeners": tuple(spelling.name_pattern(g) for g in ex.get("listeners", ())),
            }
        rules.append(Rule(r["id"], r.get("mode", "enforce"), control, check, scope, exempt))
    if problems:
        problems.sort(key=_line_of)
        raise PolicyError(problems)
    if not any(r.control == "plugin_names" for r in rules):
        # First: it is the floor under every policy, and its reason (a path,
        # not a name) says more than a driver allowlist's would.
        rules.insert(0, Rule(IMPLICIT_PLAIN_NAMES, "enforce", "plugin_names",
                             root_actions.plugin_names({})))
    return CompiledPolicy(
        data["name"], rules, doc.file, data.get("description", ""), tuple(roots)
    )


def _line_of(problem: str) -> int:
    """Sort key: the line number in ``file:line: ...`` (file names may contain colons)."""
    head = problem.split(": ", 1)[0]
    tail = head.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def load_policy(path: str, *, strict: bool = True) -> CompiledPolicy:
    """Read, validate and compile the policy file at ``path``; PolicyError if it is invalid.

    With ``strict`` (what ``serve`` uses) the policy's ``warnings`` (allowed
    host-path roots that others can change) are errors too; ``policy
    check`` loads with ``strict=False`` and prints them.
    """
    policy = compile_policy(read_yaml(path))
    if strict and policy.warnings:
        raise PolicyError(list(policy.warnings))
    return policy

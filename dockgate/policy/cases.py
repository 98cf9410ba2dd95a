"""Policy test files: requests with the decision each must get.

A policy is security-critical configuration; like code it needs tests that
run in CI, in the spirit of ``opa test`` and ``kyverno test``.  A test file
names the policy (relative to itself) and a list of cases::

    policy: ../baseline.yaml
    cases:
      - name: privileged container is denied
        request:
          endpoint: container.create
          body: {HostConfig: {Privileged: true}}
        peer: {uid: 1000}                 # optional
        context: {default_user: "1000"}   # optional: what the I/O layer would supply
                                          # (also dockerfile: "FROM ..." for a build)
        expect: {verdict: deny, rule: no-privileged, reason_contains: Privileged}

``expect`` may hold ``verdict`` (required), ``rule`` (the deciding rule),
``reason`` or ``reason_contains``, ``warnings_contain``, ``audit.rules`` (the
exact set of audit-mode rules that fired), ``fired`` (rules that must have
found something, whichever rule decided) and ``sets_contain`` (what the
policy's ``set`` actions must have set).  ``context.daemon`` is a ``GET /info``
answer (``DaemonFacts.from_info``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dockgate.buildctx import parse as parse_dockerfile
from dockgate.model import CanonicalRequest, Operation, Peer
from dockgate.policy.controls import DaemonFacts, DecisionContext
from dockgate.policy.rules import load_policy
from dockgate.policy.source import PolicyError, read_yaml, schema_problems

_str_list = {"type": "array", "items": {"type": "string"}}

REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["endpoint"],
    "properties": {
        "endpoint": {"type": "string"},
        "method": {"type": "string"},
        "path": {"type": "string"},
        "version": {"type": ["string", "null"]},
        "params": {"type": "object", "additionalProperties": {"type": "string"}},
        "query": {
            "oneOf": [
                {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "integer", "boolean"]},
                },
                {"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 2}},
            ]
        },
        "body": {},
        "peer": {"type": "object"},
    },
}

CASES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["policy", "cases"],
    "properties": {
        "policy": {"type": "string"},
        "cases": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "request", "expect"],
                "properties": {
                    "name": {"type": "string"},
                    "request": REQUEST_SCHEMA,
                    "peer": {"type": "object"},
                    "context": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "default_user": {"type": ["string", "null"]},
                            "daemon": {"type": "object"},
                            "dockerfile": {"type": "string"},
                        },
                    },
                    "expect": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["verdict"],
                        "properties": {
                            "verdict": {"enum": ["allow", "deny", "warn"]},
                            "rule": {"type": ["string", "null"]},
                            "reason": {"type": "string"},
                            "reason_contains": {"type": "string"},
                            "warnings_contain": _str_list,
                            "audit_rules": _str_list,
                            "fired": _str_list,
                            "sets_contain": _str_list,
                        },
                    },
                },
            },
        },
    },
}

_PEER_FIELDS = {"listener", "transport", "address", "pid", "uid", "gid", "principal"}


def peer_from(spec: Mapping[str, Any] | None) -> Peer:
    """A Peer from a test case (defaults: a local unix-socket client)."""
    spec = dict(spec or {})
    unknown = set(spec) - _PEER_FIELDS
    if unknown:
        raise ValueError(f"unknown peer field(s) {', '.join(sorted(unknown))}")
    return Peer(
        spec.pop("listener", "default"),
        spec.pop("transport", "unix"),
        spec.pop("address", "test"),
        **spec,
    )


def request_from(spec: Mapping[str, Any]) -> CanonicalRequest:
    """A CanonicalRequest from a test case or an ``explain`` request file."""
    eid = spec["endpoint"]
    method = str(spec.get("method", "POST")).upper()
    path = str(spec.get("path", "/" + eid.replace(".", "/")))
    q = spec.get("query") or ()
    query = tuple(
        (str(k), str(v).lower() if isinstance(v, bool) else str(v))
        for k, v in (q.items() if isinstance(q, Mapping) else q)
    )
    body = spec.get("body")
    endpoint = Operation(eid, method, path, "json" if body is not None else "none")
    return CanonicalRequest(
        method,
        endpoint,
        path,
        spec.get("version"),
        dict(spec.get("params") or {}),
        query,
        body=body,
    )


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one case."""

    name: str
    where: str
    passed: bool
    detail: str = ""


def _compare(expect: Mapping[str, Any], ev: Any) -> list[str]:
    d = ev.decision
    wrong: list[str] = []
    if d.verdict != expect["verdict"]:
        wrong.append(f"verdict {d.verdict}, expected {expect['verdict']}")
    if "rule" in expect and d.rule != expect["rule"]:
        wrong.append(f"rule {d.rule}, expected {expect['rule']}")
    if "reason" in expect and d.reason != expect["reason"]:
        wrong.append(f"reason {d.reason!r}, expected {expect['reason']!r}")
    if "reason_contains" in expect and expect["reason_contains"] not in d.reason:
        wrong.append(f"reason {d.reason!r} lacks {expect['reason_contains']!r}")
    for w in expect.get("sets_contain", ()):
        if not any(w in x for x in d.sets):
            wrong.append(f"nothing set contains {w!r} (set: {list(d.sets)})")
    for w in expect.get("warnings_contain", ()):
        if not any(w in x for x in d.warnings):
            wrong.append(f"no warning contains {w!r} (warnings: {list(d.warnings)})")
    fired = {f.rule for f in ev.findings}
    for r in expect.get("fired", ()):
        if r not in fired:
            wrong.append(f"rule {r} did not fire (fired: {sorted(fired)})")
    if "audit_rules" in expect:
        got = sorted({f.rule for f in ev.audit})
        if got != sorted(set(expect["audit_rules"])):
            wrong.append(f"audit rules {got}, expected {sorted(set(expect['audit_rules']))}")
    return wrong


def _context(spec: Mapping[str, Any] | None) -> DecisionContext | None:
    if spec is None:
        return None
    daemon = DaemonFacts.from_info(spec["daemon"]) if "daemon" in spec else None
    # A build's Dockerfile, as read out of its context.
    dockerfile = parse_dockerfile(spec["dockerfile"]) if "dockerfile" in spec else None
    return DecisionContext(
        default_user=spec.get("default_user"), daemon=daemon, dockerfile=dockerfile
    )


def run_cases(path: str) -> list[CaseResult]:
    """Run every case in the test file ``path``.

    Raises PolicyError if the file, or the policy it names, is invalid.
    """
    doc = read_yaml(path)
    problems = schema_problems(doc, CASES_SCHEMA)
    if problems:
        raise PolicyError(problems)
    policy = load_policy(os.path.join(os.path.dirname(path), doc.data["policy"]))
    results: list[CaseResult] = []
    for i, case in enumerate(doc.data["cases"]):
        where = f"{path}:{doc.line(('cases', i))}"
        try:
            req = request_from(case["request"])
            peer = peer_from(case.get("peer") or case["request"].get("peer"))
        except (ValueError, TypeError) as e:
            results.append(CaseResult(case["name"], where, False, f"bad case: {e}"))
            continue
        ctx = _context(case.get("context"))
        ev = policy.evaluate(req, peer, ctx)
        wrong = _compare(case["expect"], ev)
        results.append(CaseResult(case["name"], where, not wrong, "; ".join(wrong)))
    return results

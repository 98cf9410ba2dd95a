"""``dockgate policy check|test|explain``: the operator's tools for policy files.

``check`` validates files and reports every problem (not just the first) with
``file:line``, so a CI job can gate policy changes.  ``test`` runs a YAML file
of request/expected-decision cases, like ``opa test``.  ``explain`` shows the
decision for one request and the trail of rules that led to it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from dockgate.policy.cases import peer_from, request_from, run_cases
from dockgate.policy.rules import load_policy
from dockgate.policy.source import PolicyError


def _check(files: list[str], out: TextIO) -> int:
    bad = 0
    for path in files:
        try:
            policy = load_policy(path, strict=False)
        except PolicyError as e:
            bad += 1
            for p in e.problems:
                print(p, file=out)
            continue
        for w in policy.warnings:
            print(f"WARNING: {w} (dockgate serve refuses this policy)", file=out)
        print(f"{path}: ok (policy {policy.name}, {len(policy.rules)} rules)", file=out)
    return 1 if bad else 0


def _test(files: list[str], verbose: bool, out: TextIO) -> int:
    failed = 0
    for path in files:
        try:
            results = run_cases(path)
        except PolicyError as e:
            failed += 1
            for p in e.problems:
                print(p, file=out)
            continue
        for r in results:
            if not r.passed or verbose:
                print(
                    ("PASS" if r.passed else "FAIL")
                    + f": {r.where} {r.name}"
                    + ("" if r.passed else f"\n  {r.detail}"),
                    file=out,
                )
        n_fail = sum(1 for r in results if not r.passed)
        failed += n_fail
        print(
            f"{path}: PASS: {len(results) - n_fail}/{len(results)}"
            + (f", FAIL: {n_fail}" if n_fail else ""),
            file=out,
        )
    return 1 if failed else 0


def _explain(policy_path: str, request_path: str, out: TextIO) -> int:
    try:
        policy = load_policy(policy_path)
    except PolicyError as e:
        for p in e.problems:
            print(p, file=out)
        return 2
    try:
        if request_path == "-":
            spec = json.load(sys.stdin)
        else:
            with open(request_path, encoding="utf-8") as f:
                spec = json.load(f)
        # A test case's shape ({"request": {...}, "peer": {...}}) or the request
        # mapping itself with an optional "peer" member: both are accepted.
        wrapped = isinstance(spec.get("request"), dict)
        request = request_from(spec["request"] if wrapped else spec)
        peer = peer_from(spec.get("peer"))
    except (OSError, ValueError, TypeError, KeyError) as e:
        print(f"{request_path}: cannot read request: {e}", file=out)
        return 2
    ev = policy.evaluate(request, peer, trail=True)
    d = ev.decision
    print(f"decision: {d.verdict}" + (f" (rule {d.rule})" if d.rule else ""), file=out)
    print("reason: " + d.reason.replace("\n", "\n        "), file=out)
    for w in d.warnings:
        print(f"warning: {w}", file=out)
    print(f"trail (policy {policy.name}, endpoint {request.endpoint.id}):", file=out)
    for s in ev.trail:
        print(f"  {s.rule} [{s.mode}, {s.control}]: {s.outcome}", file=out)
        for finding in s.findings:
            print(f"      {finding.text}", file=out)
    return 0 if d.allowed else 1


def main(argv: list[str], out: TextIO | None = None) -> int:
    """Run ``dockgate policy ARGV``; returns the exit status."""
    out = out or sys.stdout
    ap = argparse.ArgumentParser(prog="dockgate policy",
                                 description="Check, test and explain dockgate policies "
                                 "(docs/policy.md).")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="validate policy files")
    c.add_argument("files", nargs="+")
    t = sub.add_parser("test", help="run policy test cases")
    t.add_argument("files", nargs="+")
    t.add_argument("-v", "--verbose", action="store_true", help="show passing cases too")
    e = sub.add_parser("explain", help="show the decision for one request and why",
                       description="Show the decision for one request, every rule's "
                       "outcome and findings. Exit 0 if allowed, 1 if denied, 2 if the "
                       "policy or the request cannot be read.")
    e.add_argument("--policy", required=True, help="the policy file (YAML)")
    e.add_argument("request", help="JSON file ('-' for standard input): a test case's "
                   '{"request": {...}, "peer": {...}}, or the request mapping itself '
                   '({"endpoint": ..., "body": ...}, with an optional "peer")')
    args = ap.parse_args(argv)
    if args.command == "check":
        return _check(args.files, out)
    if args.command == "test":
        return _test(args.files, args.verbose, out)
    return _explain(args.policy, args.request, out)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

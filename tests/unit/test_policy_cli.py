"""``dockgate policy check|test|explain`` and the shipped profile test files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from dockgate.cli.policy import main
from dockgate.policy import load_policy
from dockgate.policy.cases import peer_from, request_from, run_cases
from dockgate.policy.source import read_yaml

ROOT = Path(__file__).resolve().parents[2]
PROFILE_TESTS = sorted((ROOT / "policies" / "tests").glob("*.yaml"))


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    rc = main(list(argv), out)
    return rc, out.getvalue()


@pytest.mark.parametrize("path", PROFILE_TESTS, ids=lambda p: p.name)
def test_shipped_profile_cases_pass(path: Path) -> None:
    """Every case in the shipped profiles' test files passes."""
    results = run_cases(str(path))
    assert results
    failed = [f"{r.where} {r.name}: {r.detail}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)


def test_every_profile_has_a_test_file() -> None:
    """Every shipped profile (but the example) has a test file."""
    profiles = {p.name for p in (ROOT / "policies").glob("*.yaml")} - {"example.yaml"}
    assert profiles <= {p.name for p in PROFILE_TESTS}


def test_every_enforce_rule_of_every_profile_is_exercised() -> None:
    """Every rule of every shipped profile (but redact rules) is exercised by at least one case."""
    for path in PROFILE_TESTS:
        doc = read_yaml(str(path))
        policy = load_policy(str(path.parent / doc.data["policy"]))
        fired: set[str] = set()
        for case in doc.data["cases"]:
            ev = policy.evaluate(request_from(case["request"]), peer_from(case.get("peer")))
            fired |= {f.rule for f in ev.findings}
        # redact rules shape answers and never find anything in a request
        missing = {r.id for r in policy.rules if r.control != "redact"} - fired
        assert not missing, f"{path.name}: rules never exercised: {sorted(missing)}"


def test_check_ok_and_problems(tmp_path: Path) -> None:
    """policy check says ok for a good file and exits 1 naming file, line and field for a bad one,
    still reporting the good ones."""
    rc, out = run("check", str(ROOT / "policies" / "baseline.yaml"))
    assert rc == 0 and "ok" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nrules:\n  - id: x\n    privileged: {allow: yes please}\n")
    rc, out = run("check", str(bad), str(ROOT / "policies" / "restricted.yaml"))
    assert rc == 1
    assert f"{bad}:4: rules[0].privileged.allow:" in out
    assert "restricted.yaml: ok" in out


def test_test_reports_failures_with_location(tmp_path: Path) -> None:
    """policy test reports each failing case with its file and line, what was decided against what
    was expected, and a pass/fail count."""
    cases = tmp_path / "t.yaml"
    cases.write_text(
        f"policy: {ROOT / 'policies' / 'baseline.yaml'}\ncases:\n"
        "  - name: wrong expectation\n"
        "    request: {endpoint: container.create, body: {HostConfig: {Privileged: true}}}\n"
        "    expect: {verdict: allow}\n"
        "  - name: right\n"
        "    request: {endpoint: plugin.pull}\n"
        "    expect: {verdict: deny, rule: escalation-endpoints}\n"
    )
    rc, out = run("test", "-v", str(cases))
    assert rc == 1
    assert f"FAIL: {cases}:3 wrong expectation" in out
    assert "verdict deny, expected allow" in out
    assert f"PASS: {cases}:6 right" in out
    assert "PASS: 1/2, FAIL: 1" in out


def test_test_rejects_malformed_case_files(tmp_path: Path) -> None:
    """policy test refuses a malformed case file, naming it."""
    cases = tmp_path / "t.yaml"
    cases.write_text("policy: x.yaml\ncases:\n  - name: n\n    expect: {verdict: maybe}\n")
    rc, out = run("test", str(cases))
    assert rc == 1 and f"{cases}:" in out


def test_explain_prints_decision_and_trail(tmp_path: Path) -> None:
    """policy explain prints the decision, the reason, and each rule's outcome with its findings,
    exiting 1 for a denial."""
    request = tmp_path / "req.json"
    request.write_text(json.dumps({
        "endpoint": "container.create",
        "body": {"Image": "busybox", "HostConfig": {"Privileged": True, "CapAdd": ["SYS_ADMIN"]}},
        "peer": {"uid": 1000},
    }))
    rc, out = run("explain", "--policy", str(ROOT / "policies" / "baseline.yaml"), str(request))
    assert rc == 1
    assert out.startswith("decision: deny (rule no-privileged)\n")
    assert "reason: denied by policy baseline rule no-privileged: HostConfig.Privileged" in out
    assert "  capabilities [enforce, capabilities]: 1 finding(s)" in out
    assert "HostConfig.CapAdd[0] adds CAP_SYS_ADMIN" in out
    assert "  escalation-endpoints [enforce, endpoints]: pass" in out

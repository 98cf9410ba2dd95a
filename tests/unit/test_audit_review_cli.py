"""The audit review commands as an operator runs them (``python -m dockgate audit ...``):
rotated sets as logrotate leaves them, copied logs with their recordings, replay that
says what it cannot re-decide, the deny table, safe session playback, redaction of
credentials that hide in URLs and token names."""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from support.auditlog import canonical, event
from support.cli import REPO, dockgate

from dockgate.audit.redact import MASK, Redactor
from dockgate.audit.rules import load_audit_policy
from dockgate.audit.schema import build_record
from dockgate.audit.sink import JsonLinesAudit
from dockgate.model import Decision


def logrotated_set(tmp_path: Path, n: int = 40) -> list[Path]:
    """A chained log rotated as deploy/logrotate does it (compress + delaycompress):
    ``audit.jsonl`` live, ``.1`` plain, ``.2.gz`` and older compressed."""
    log = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(str(log), rotate_size=2500)
    for i in range(n):
        sink.record(event(canonical("GET", "/_ping"), id=f"r{i}"))
    sink.close()
    stamped = sorted(tmp_path.glob("audit.jsonl.*"))
    assert len(stamped) >= 3
    files = [log]
    for age, path in enumerate(reversed(stamped), 1):
        target = tmp_path / f"audit.jsonl.{age}"
        path.rename(target)
        if age >= 2:
            with gzip.open(f"{target}.gz", "wb") as z:
                z.write(target.read_bytes())
            target.unlink()
            target = Path(f"{target}.gz")
        files.append(target)
    return files


def test_verify_show_and_summary_read_a_logrotate_set_in_any_order(tmp_path: Path) -> None:
    """verify checks one chain across plain and gzip files given in any order;
    show and summary read the .gz files too."""
    files = logrotated_set(tmp_path)
    assert any(f.suffix == ".gz" for f in files)
    shuffled = [str(f) for f in files]
    random.Random(4).shuffle(shuffled)  # noqa: S311 (an order, not a secret)
    result = dockgate("audit", "verify", *shuffled)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: 40 records, chain intact")
    shown = dockgate("audit", "show", "--json", *shuffled)
    assert [json.loads(x)["id"] for x in shown.stdout.splitlines()] == [f"r{i}" for i in
                                                                        range(40)]
    summary = dockgate("audit", "summary", "--json", *shuffled)
    assert json.loads(summary.stdout)["count"] == 40


def test_verify_finds_an_edit_inside_a_compressed_file(tmp_path: Path) -> None:
    """An edited record inside a .gz file is found and named by file and line."""
    files = logrotated_set(tmp_path)
    oldest = max((f for f in files if f.suffix == ".gz"), key=lambda f: f.name)
    lines = gzip.decompress(oldest.read_bytes()).splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"GET"', b'"PUT"')
    oldest.write_bytes(gzip.compress(b"".join(lines)))
    result = dockgate("audit", "verify", *map(str, files))
    assert result.returncode == 1
    assert f"{oldest}:2: edited" in result.stdout and "ok:" not in result.stdout


def recorded_session(where: Path) -> Path:
    """A log in ``where`` with one recorded exec session in ``where/sessions``."""
    (where / "sessions").mkdir(parents=True)
    policy = where / "p.yaml"
    policy.write_text("rules:\n  - {endpoints: [exec.start], level: metadata, session: true}\n")
    log = where / "audit.jsonl"
    sink = JsonLinesAudit(str(log), policy=load_audit_policy(str(policy)),
                          sessions_dir=str(where / "sessions"))
    start = canonical("POST", "/v1.51/exec/abc/start", {"Tty": True})
    sink.record(event(start))
    sink.record(event(start, stage="SessionStarted", status=101))
    sink.session_data("r1", "out", b"hello\r\n")
    sink.record(event(start, stage="SessionEnded", status=101, exit_code=0))
    sink.close()
    return log


def test_verify_sessions_checks_the_copy_not_the_original(tmp_path: Path) -> None:
    """A copied log is checked against the recordings next to it: an altered copy fails
    although the original is intact, without any ``ok:`` line; an intact copy passes
    after the original is gone."""
    recorded_session(tmp_path / "live")
    shutil.copytree(tmp_path / "live", tmp_path / "copy")
    (recording,) = (tmp_path / "copy" / "sessions").iterdir()
    recording.write_bytes(recording.read_bytes() + b"x")
    result = dockgate("audit", "verify", "--sessions", str(tmp_path / "copy" / "audit.jsonl"))
    assert result.returncode == 1
    assert f"{recording}: altered" in result.stdout and "ok:" not in result.stdout
    shutil.rmtree(tmp_path / "copy")
    shutil.copytree(tmp_path / "live", tmp_path / "copy")
    shutil.rmtree(tmp_path / "live")
    result = dockgate("audit", "verify", "--sessions", str(tmp_path / "copy" / "audit.jsonl"))
    assert result.returncode == 0, result.stdout
    assert "1 session recording(s) match" in result.stdout
    moved = tmp_path / "elsewhere"
    (tmp_path / "copy" / "sessions").rename(moved)
    result = dockgate("audit", "verify", "--sessions", str(tmp_path / "copy" / "audit.jsonl"))
    assert result.returncode == 1 and "missing" in result.stdout and "--sessions-dir" in \
        result.stdout
    assert dockgate("audit", "verify", "--sessions", "--sessions-dir", str(moved),
                    str(tmp_path / "copy" / "audit.jsonl")).returncode == 0


PRIVILEGED = {"Image": "dgtest", "HostConfig": {"Privileged": True}}
DENIED = Decision("deny", "baseline", "no-privileged", "privileged containers are not allowed")


def test_replay_marks_metadata_records_with_a_body_unknown(tmp_path: Path) -> None:
    """A denial recorded at metadata level (no body) is not reported as denied->allowed
    under a policy that still denies it: it is "unknown", with how to get full fidelity.
    The same request recorded at level request is re-decided, and stays denied."""
    log = tmp_path / "audit.jsonl"
    policy = tmp_path / "audit-policy.yaml"
    policy.write_text("rules:\n  - {endpoints: [container.create], decisions: [deny], "
                      "level: request}\n")
    request = canonical("POST", "/v1.51/containers/create", PRIVILEGED)
    for sink, rid in ((JsonLinesAudit(str(log)), "meta"),
                      (JsonLinesAudit(str(log), policy=load_audit_policy(str(policy))), "full")):
        sink.record(event(request, decision=DENIED, error="policy", status=403, bytes_in=60,
                          id=rid))
        sink.close()
    result = dockgate("audit", "replay", "--policy", "policies/baseline.yaml", str(log))
    assert result.returncode == 0, result.stderr
    assert "denied->allowed" not in result.stdout
    assert result.stdout.startswith("unknown")
    assert "1 request(s) unknown" in result.stdout and "level request" in result.stdout
    rows = dockgate("audit", "replay", "--all", "--json", "--policy", "policies/baseline.yaml",
                    str(log)).stdout.splitlines()
    by_id = {json.loads(r)["id"]: json.loads(r) for r in rows}
    assert by_id["meta"]["change"] == "unknown" and by_id["meta"]["after"] == "unknown"
    assert by_id["full"]["change"] is None and by_id["full"]["after"] == "deny"


def test_show_deny_is_one_aligned_row_per_request_with_rule_reason_tenant(
        tmp_path: Path) -> None:
    """``show --decision deny``: one row per request (not one per stage), with tenant,
    rule and reason, every column starting where its header starts."""
    log = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(str(log))
    request = canonical("POST", "/v1.51/containers/create", PRIVILEGED)
    for stage in ("RequestDecided", "ResponseComplete"):
        sink.record(event(request, stage=stage, decision=DENIED, error="policy", status=403,
                          tenant="team-a"))
    sink.record(event(canonical("GET", "/_ping"), id="p"))
    sink.record(event(canonical("GET", "/_ping"), id="p", stage="ResponseComplete", status=200))
    sink.close()
    out = dockgate("audit", "show", "--decision", "deny", str(log)).stdout.splitlines()
    assert len(out) == 2, out
    header, row = out
    for name, value in (("TENANT", "team-a"), ("RULE", "no-privileged"),
                        ("REASON", "privileged containers are not allowed"),
                        ("STATUS", "403"), ("ENDPOINT", "container.create")):
        assert row.index(value) == header.index(name), (name, header, row)
    everything = dockgate("audit", "show", str(log)).stdout.splitlines()
    assert len(everything) == 3
    assert "200" in everything[2]
    staged = dockgate("audit", "show", "--stage", "ResponseComplete", str(log)).stdout
    assert len(staged.splitlines()) == 3 and "STAGE" in staged


def test_show_escapes_bidi_and_invisible_characters(tmp_path: Path) -> None:
    """A denial whose reason quotes the caller's text with U+202E (right-to-left
    override, which reorders the rest of a terminal row), a zero-width space or a
    private-use character: ``audit show`` prints them as escapes, as it prints
    control characters, and leaves other non-ASCII text as it is (attack round of
    session 16: bidi controls reached the reviewer's terminal)."""
    log = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(str(log))
    reason = "host path /etc/\u202eabc\u200b\ue000 is not allowed (caf\u00e9)"
    sink.record(event(canonical("POST", "/v1.51/containers/create", PRIVILEGED), status=403,
                      decision=Decision("deny", "baseline", "no-host-paths", reason),
                      error="policy"))
    sink.close()
    out = dockgate("audit", "show", str(log)).stdout
    assert "/etc/\\u202eabc\\u200b\\ue000 is not allowed (caf\u00e9)" in out, out
    assert not {"\u202e", "\u200b", "\ue000"} & set(out)


def dgrec(tty_output: bytes) -> bytes:
    """A one-frame TTY recording of ``tty_output``."""
    header = b'DGREC2 {"id": "x", "tty": true}\n'
    return header + struct.pack(">cQI", b"o", 0, len(tty_output)) + tty_output


HOSTILE = (b"\x1b[31mred\x1b[0m \x1b]52;c;ZXZpbA==\x07\x1b]0;pwned\x1b\\"
           b"\x1bP+q544e\x1b\\\x1b[6n\x1b[2Jdone\r\n")


def test_play_drops_terminal_control_sequences_unless_raw(tmp_path: Path) -> None:
    """``audit play`` keeps colour and cursor sequences but drops OSC clipboard and title
    writes, DCS queries and sequences the terminal would answer; ``--raw`` keeps them."""
    path = tmp_path / "s.dgrec"
    path.write_bytes(dgrec(HOSTILE))
    played = dockgate("audit", "play", str(path), binary=True)
    assert played.returncode == 0
    assert played.stdout == b"\x1b[31mred\x1b[0m \x1b[2Jdone\r\n"
    assert b"--raw" in played.stderr
    raw = dockgate("audit", "play", "--raw", str(path), binary=True)
    assert raw.stdout == HOSTILE


def test_credentials_in_urls_and_token_names_are_masked() -> None:
    """At request level, a URL's password (DATABASE_URL, a git remote in a query) and
    values under common token names (GITHUB_PAT) are masked, and listed in ``masked``."""
    body = {"Image": "dgtest", "Env": ["DATABASE_URL=postgres://app:pw0rd@db:5432/app",
                                       "GITHUB_PAT=ghp_abc", "NPM_TOKEN=npm_x", "PLAIN=ok"],
            "Cmd": ["git", "clone", "https://x:tok3n@git.example/r.git"]}
    record = build_record(event(canonical("POST", "/v1.51/containers/create", body)),
                          "request", Redactor())
    text = json.dumps(record)
    for secret in ("pw0rd", "ghp_abc", "npm_x", "tok3n"):
        assert secret not in text
    assert f"postgres://app:{MASK}@db:5432/app" in text and "PLAIN=ok" in text
    assert "/request/body/Cmd/2" in record["masked"]
    build = canonical("POST", "/v1.51/build?remote=https%3A%2F%2Fu%3As3cr3t%40git.example%2Fr")
    record = build_record(event(build), "metadata", Redactor())
    assert "s3cr3t" not in record["path"] and "/query/remote" in record["masked"]


def test_show_stage_checkpoint_lists_checkpoints(tmp_path: Path) -> None:
    """`show --stage Checkpoint` lists the signed checkpoints (other filters hide them)."""
    from dockgate.audit.chain import HmacKey  # noqa: PLC0415

    log = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(str(log), signer=HmacKey(b"k" * 16), checkpoint_every=2)
    for i in range(4):
        sink.record(event(canonical("GET", "/_ping"), id=f"r{i}"))
    sink.close()
    shown = dockgate("audit", "show", "--stage", "Checkpoint", "--json", str(log)).stdout
    stages = {json.loads(x)["stage"] for x in shown.splitlines()}
    assert stages == {"Checkpoint"}
    assert "Checkpoint" not in dockgate("audit", "show", str(log)).stdout


def test_policy_explain_takes_the_case_shape_from_stdin() -> None:
    """`policy explain` reads `{"request": ..., "peer": ...}` (the shape of a test case)
    as well as the bare request, from a file or `-`, and prints every failed rule."""
    case = {"request": {"endpoint": "container.create", "body": {"Image": "busybox"}},
            "peer": {"uid": 1000}}
    result = dockgate("policy", "explain", "--policy", "policies/restricted.yaml", "-",
                      input=json.dumps(case))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "rule capabilities" in result.stdout and "also rule resource-limits" in \
        result.stdout
    bare = dockgate("policy", "explain", "--policy", "policies/baseline.yaml", "-",
                    input=json.dumps({"endpoint": "system.ping", "method": "GET"}))
    assert bare.returncode == 0 and "decision: allow" in bare.stdout, bare.stdout


def test_broken_pipe_is_quiet() -> None:
    """`dockgate ... | head` ends quietly: no BrokenPipeError traceback when the reader
    has gone before the output is written."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dockgate", "api", "routes"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone
    assert process.wait(60) == 0
    assert process.stderr.read() == b""

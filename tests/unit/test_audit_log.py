"""The audit log v1: records per level, redaction, the audit policy, the sink's failure modes,
session recordings and the review commands (with tmp files, no engine)."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from support.auditlog import CTX, canonical, event
from twisted.python.usage import UsageError

from dockgate.admission.admit import admit_head
from dockgate.audit import writer as audit_writer
from dockgate.audit.redact import MASK, Redactor
from dockgate.audit.rules import AuditPolicy, load_audit_policy
from dockgate.audit.schema import build_record, encode_record
from dockgate.audit.session import asciicast, demux, read_recording, terminal_output
from dockgate.audit.sink import JsonLinesAudit
from dockgate.cli import audit as audit_cli
from dockgate.model import Decision
from dockgate.policy.source import PolicyError

CREATE = {"Image": "dgtest", "Env": ["PATH=/bin", "DB_PASSWORD=hunter2", "api_key=k3y"],
          "Cmd": ["cat"], "Labels": {"UnlockKey": "s3cret", "team": "a"}}


# -- records -------------------------------------------------------------------


def test_metadata_record_fields() -> None:
    """The documented v1 fields, with ISO UTC time, principal from the uid, no body."""
    record = build_record(event(canonical("POST", "/v1.41/containers/create?name=web", CREATE)),
                          "metadata", Redactor())
    assert record["time"] == "2026-01-01T00:00:00.250000Z"
    assert record["id"] == "r1" and record["record_id"] == "r1/RequestDecided"
    assert record["principal"] == "uid:1000" and record["tenant"] is None
    assert record["peer"] == {"transport": "unix", "address": "unix:pid=42", "uid": 1000,
                              "gid": 1000, "pid": 42}
    assert record["endpoint"] == "container.create" and record["api_version"] == "1.41"
    assert record["path"] == "/v1.41/containers/create?name=web"
    assert record["decision"] == "allow" and record["reasons"] == ["privileged profile allows all"]
    assert record["rules"] == []
    assert "request" not in record and "error" not in record
    assert "hunter2" not in json.dumps(record)


def test_request_level_masks_env_and_secret_members() -> None:
    """Env values with secret names and secret-named members are masked, and listed."""
    request = canonical("POST", "/v1.41/containers/create", CREATE,
                        headers=((b"x-registry-auth", b"c2VjcmV0"), (b"user-agent", b"cli")))
    record = build_record(event(request), "request", Redactor())
    body = record["request"]["body"]
    assert body["Env"] == ["PATH=/bin", f"DB_PASSWORD={MASK}", f"api_key={MASK}"]
    assert body["Labels"] == {"UnlockKey": MASK, "team": "a"}
    assert record["masked"] == ["/request/body/Env/1", "/request/body/Env/2",
                                "/request/body/Labels/UnlockKey"]
    assert record["erased"] == ["/request/headers/x-registry-auth"]
    assert record["request"]["headers"]["user-agent"] == "cli"
    text = encode_record(record)
    assert b"hunter2" not in text and b"k3y" not in text and b"c2VjcmV0" not in text
    assert request.body["Env"][1] == "DB_PASSWORD=hunter2", "the forwarded body is untouched"


def test_auth_body_and_credential_headers_never_recorded() -> None:
    """An /auth body and the Authorization and X-Registry-Config headers are erased from a request-
    level record, listed as erased, and their secrets appear nowhere in the line."""
    request = canonical("POST", "/v1.41/auth",
                        {"username": "u", "password": "hunter2", "serveraddress": "r"},
                        headers=((b"authorization", b"Basic eDp5"),
                                 (b"x-registry-config", b"e30=")))
    record = build_record(event(request), "request", Redactor())
    assert record["request"]["body"] is None
    assert "/request/body" in record["erased"]
    assert "/request/headers/authorization" in record["erased"]
    assert b"hunter2" not in encode_record(record) and b"eDp5" not in encode_record(record)


def test_build_args_masked_even_at_metadata_level() -> None:
    """Build args whose names look secret are masked in the recorded path even at metadata level,
    and the masked pointer is listed; other args stay readable."""
    from urllib.parse import quote  # noqa: PLC0415

    args = quote(json.dumps({"GITHUB_TOKEN": "ghp_x", "VERSION": "1"}), safe="")
    request = admit_head("POST", b"/v1.41/build?buildargs=" + args.encode(), [], CTX)
    record = build_record(event(request), "metadata", Redactor())
    assert "ghp_x" not in record["path"] and "VERSION" in record["path"]
    assert record["masked"] == ["/query/buildargs/GITHUB_TOKEN"]


def test_custom_patterns_replace_defaults() -> None:
    """Custom secret-name patterns replace the defaults: only matching Env entries are masked."""
    request = canonical("POST", "/v1.41/containers/create",
                        {"Image": "x", "Env": ["PIN=1234", "DB_PASSWORD=p"]})
    record = build_record(event(request), "request", Redactor(("PIN",)))
    assert record["request"]["body"]["Env"] == [f"PIN={MASK}", "DB_PASSWORD=p"]


@pytest.mark.parametrize("hostile", ["/x\n{\"decision\":\"deny\"}", "/\x1b]0;pwn\x07",
                                     "/" + "a" * 100_000])
def test_hostile_target_cannot_break_or_bloat_a_record(hostile: str) -> None:
    """A request target with newlines, escape sequences or 100 kB stays one printable-ASCII line
    under 10 kB, truncated when too long."""
    record = build_record(event(None, decision=Decision("deny", "p", "bad-request", hostile),
                                raw_target=hostile, error="bad-request"), "metadata", Redactor())
    line = encode_record(record)
    assert line.count(b"\n") == 1 and all(0x20 <= b < 0x7F for b in line[:-1])
    assert len(line) < 10_000
    if len(hostile) > 10_000:
        assert "truncated" in json.loads(line)["path"]


def test_a_long_query_value_leaves_every_parameter_in_the_record() -> None:
    """A target over 2048 characters keeps every query parameter: each long value
    is clipped on its own, so a 2,100-character ``changes`` (sorted first) cannot
    push ``fromSrc``, ``repo`` and ``tag`` out of an import's record (attack round
    of session 16); a short target is recorded whole."""
    long = "ENV A=" + "x" * 2100
    request = canonical("POST", "/v1.41/images/create?changes=" + long.replace(" ", "%20")
                        .replace("=", "%3D") + "&fromSrc=-&repo=dgtest&tag=latest", None)
    path = build_record(event(request), "metadata", Redactor())["path"]
    assert path.endswith("&fromSrc=-&repo=dgtest&tag=latest"), path[-120:]
    assert "truncated" in path and len(path) < 1000
    short = canonical("POST", "/v1.41/images/create?fromSrc=-&repo=dgtest&tag=latest", None)
    assert build_record(event(short), "metadata", Redactor())["path"] == (
        "/v1.41/images/create?fromSrc=-&repo=dgtest&tag=latest")


def test_huge_body_is_summarised() -> None:
    """A body over 64 KiB is recorded as a truncation summary with its size, not in full."""
    request = canonical("POST", "/v1.41/containers/create",
                        {"Image": "x", "Labels": {f"l{i}": "v" * 200 for i in range(600)}})
    body = build_record(event(request), "request", Redactor())["request"]["body"]
    assert body["dockgate_truncated"] is True and body["size"] > 64 * 1024


# -- audit policy --------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_policy_first_match_and_decisions(tmp_path: Path) -> None:
    """The audit policy's first matching rule (by endpoint and decision) sets the level and session
    recording; unmatched endpoints get metadata; redact patterns apply."""
    policy = load_audit_policy(write(tmp_path, "a.yaml", """
rules:
  - endpoints: [system.ping]
    decisions: [deny]
    level: request
  - endpoints: [system.ping, system.events]
    level: none
  - endpoints: [exec.start, container.attach*]
    level: request
    session: true
redact: {env: ["*PIN*"]}
"""))
    assert policy.choose("system.ping", "allow").level == "none"
    assert policy.choose("system.ping", "deny").level == "request"
    assert policy.choose("exec.start", "allow").session
    assert policy.choose("container.create", "allow").level == "metadata"
    assert policy.redactor.secret_name("my_pin") and not policy.redactor.secret_name("TOKEN")


@pytest.mark.parametrize(("text", "expected"), [
    ("rules:\n  - endpoints: [contaner.*]\n    level: request\n", ":2: rules[0].endpoints[0]"),
    ("rules:\n  - level: verbose\n", ":2: rules[0].level"),
    ("default: metadata\nrules:\n  - level: none\n    session: true\n", ":4: rules[0].session"),
    ("rules:\n  - level: none\n    colour: red\n", ":2: rules[0]: unknown field(s) colour"),
    ("rules: [\n", ":2: (yaml)"),
])
def test_policy_errors_name_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    """Audit policy mistakes (unknown endpoint glob, level, session without request level, unknown
    field, bad YAML) name the file, line and field."""
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(PolicyError) as caught:
        load_audit_policy(path)
    assert f"{path}{expected}" in str(caught.value)


# -- the sink ------------------------------------------------------------------


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_bytes().splitlines()]


def test_sink_levels_none_and_request(tmp_path: Path) -> None:
    """Level none writes nothing; level request records the body once (on RequestDecided, not
    ResponseComplete), and the chain starts at seq 1 with no prev."""
    policy = load_audit_policy(write(tmp_path, "p.yaml", """
rules:
  - {endpoints: [system.ping], level: none}
  - {endpoints: [container.create], level: request}
"""))
    log = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(str(log), policy=policy)
    sink.record(event(canonical("GET", "/_ping")))
    sink.record(event(canonical("POST", "/v1.41/containers/create", CREATE), id="c"))
    sink.record(event(canonical("POST", "/v1.41/containers/create", CREATE), id="c",
                      stage="ResponseComplete", status=201))
    sink.close()
    records = lines(log)
    assert [(r["stage"], r["level"]) for r in records] == [
        ("RequestDecided", "request"), ("ResponseComplete", "request")]
    assert "request" in records[0] and "request" not in records[1], "the body once per request"
    assert [r["seq"] for r in records] == [1, 2] and records[0]["prev"] is None


def test_fail_closed_raises_and_fail_open_does_not(tmp_path: Path) -> None:
    """A path that can no longer be written (file deleted, a directory now in its place)
    makes record() raise in fail-closed mode; fail-open carries on."""
    for failure in ("closed", "open"):
        log = tmp_path / f"{failure}.jsonl"
        sink = JsonLinesAudit(str(log), failure=failure)  # type: ignore[arg-type]
        sink.record(event(canonical("GET", "/_ping")))
        log.unlink()
        log.mkdir()
        if failure == "closed":
            with pytest.raises(OSError):
                sink.record(event(canonical("GET", "/_ping")))
        else:
            sink.record(event(canonical("GET", "/_ping")))
        sink.close()


def test_full_disk_fails_closed() -> None:
    """A write that fails (a full disk) raises to the caller, so the protocol refuses rather than
    forwarding unrecorded."""
    sink = JsonLinesAudit("/dev/full")
    with pytest.raises(OSError):
        sink.record(event(canonical("GET", "/_ping")))
    sink.close()


def test_deleted_file_is_recreated(tmp_path: Path) -> None:
    """Records are never written into a deleted file; the chain carries on in the new one."""
    log = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(str(log))
    sink.record(event(canonical("GET", "/_ping")))
    os.rename(log, tmp_path / "old.jsonl")
    os.link(tmp_path / "old.jsonl", tmp_path / "keep.jsonl")
    (tmp_path / "old.jsonl").unlink()
    (tmp_path / "keep.jsonl").unlink()
    sink.record(event(canonical("GET", "/_ping"), id="r2"))
    sink.close()
    assert [r["id"] for r in lines(log)] == ["r2"]
    assert lines(log)[0]["seq"] == 2


def turned_sink(tmp_path: Path, **options: Any) -> tuple[Path, JsonLinesAudit, list[Any]]:
    """An audit log as the service runs it: its turn-end functions land in the returned list."""
    log = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(str(log), **options)
    turn_end: list[Any] = []
    sink.defer = turn_end.append
    return log, sink, turn_end


def test_deleted_file_is_noticed_by_the_next_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With turn ends (the service), the file is checked for deletion once per reactor turn,
    not per record: a file deleted between turns is recreated by the next turn's first record,
    and the chain carries on in the new file."""
    log, sink, turn_end = turned_sink(tmp_path)
    checks: list[int] = []
    real_fstat = audit_writer.os.fstat

    def counting(fd: int) -> os.stat_result:
        checks.append(fd)
        return real_fstat(fd)

    monkeypatch.setattr(audit_writer.os, "fstat", counting)
    ping = canonical("GET", "/_ping")
    for ident in ("a", "b", "c"):
        sink.record(event(ping, id=ident))
        sink.record(event(ping, "ResponseComplete", id=ident))
    assert len(checks) == 1 and len(turn_end) == 1
    turn_end.pop()()
    assert len(checks) == 1  # the turn's end writes the held records unchecked again
    log.unlink()
    sink.record(event(ping, id="d"))  # the next turn
    turn_end.pop()()
    sink.close()
    assert [r["id"] for r in lines(log)] == ["d"]
    assert lines(log)[0]["seq"] == 7


def test_held_records_go_with_the_next_write_or_the_turn_end(tmp_path: Path) -> None:
    """ResponseComplete waits for the reactor turn's end (or the next decision's write);
    the chain order is the order of the events, and the file verifies."""
    log = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(str(log))
    turn_end: list[Any] = []
    sink.defer = turn_end.append
    ping = canonical("GET", "/_ping")
    sink.record(event(ping, id="a"))
    sink.record(event(ping, "ResponseComplete", id="a"))
    assert [r["record_id"] for r in lines(log)] == ["a/RequestDecided"]
    sink.record(event(ping, id="b"))  # takes the held record along, in order
    assert [r["record_id"] for r in lines(log)] == [
        "a/RequestDecided", "a/ResponseComplete", "b/RequestDecided"]
    sink.record(event(ping, "ResponseComplete", id="b"))
    assert len(turn_end) == 1  # one flush per turn, however many are held
    turn_end[0]()
    assert [r["seq"] for r in lines(log)] == [1, 2, 3, 4]
    sink.record(event(ping, "ResponseComplete", id="c"))
    sink.close()  # closing writes what is held
    assert [r["record_id"] for r in lines(log)][-1] == "c/ResponseComplete"
    assert run("verify", str(log))[0] == 0


def test_the_decisions_of_a_turn_are_written_together_before_their_requests_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the service, every decision of a reactor turn (and the turn's held records) goes in
    one write(2) at the turn's end, and only after it do the decided requests go on: nothing is
    forwarded before its record is in the file."""
    log, sink, turn_end = turned_sink(tmp_path)
    writes: list[bytes] = []
    real_write = audit_writer.os.write

    def counting(fd: int, data: bytes) -> int:
        writes.append(data)
        return real_write(fd, data)

    monkeypatch.setattr(audit_writer.os, "write", counting)
    ping = canonical("GET", "/_ping")
    gone: list[tuple[str, bool, int]] = []
    sink.record(event(ping, "ResponseComplete", id="a"))
    for ident in ("b", "c", "d"):
        sink.record_then(event(ping, id=ident),
                         lambda ok, i=ident: gone.append((i, ok, len(lines(log)))))
    assert gone == [] and writes == [] and len(turn_end) == 1
    turn_end.pop()()
    assert len(writes) == 1
    assert gone == [("b", True, 4), ("c", True, 4), ("d", True, 4)]
    assert [r["record_id"] for r in lines(log)] == [
        "a/ResponseComplete", "b/RequestDecided", "c/RequestDecided", "d/RequestDecided"]
    sink.close()
    assert run("verify", str(log))[0] == 0


@pytest.mark.parametrize("failure", ["closed", "open"])
def test_decisions_whose_records_were_lost_do_not_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """A failed write loses the turn's held decisions (the chain rewinds): fail-closed, each waiting
    request is told so (and is refused), also when the loss came with another record's write
    earlier in the turn; fail-open lets them go.  The chain stays intact either way."""
    log, sink, turn_end = turned_sink(tmp_path, failure=failure)
    ping = canonical("GET", "/_ping")
    real_write = audit_writer.os.write
    gone: list[tuple[str, bool]] = []

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    # At the turn's end.
    sink.record_then(event(ping, id="a"), lambda ok: gone.append(("a", ok)))
    monkeypatch.setattr(audit_writer.os, "write", full)
    turn_end.pop()()
    # Earlier in the turn, with a record that is written at once (a refusal's).
    sink.record_then(event(ping, id="b"), lambda ok: gone.append(("b", ok)))
    refused = event(ping, id="c", decision=Decision("deny", "p", "r", "no"))
    if failure == "closed":
        with pytest.raises(OSError):
            sink.record(refused)
    else:
        sink.record(refused)
    monkeypatch.setattr(audit_writer.os, "write", real_write)
    turn_end.pop()()
    assert gone == [("a", failure == "open"), ("b", failure == "open")]
    sink.record_then(event(ping, id="d"), lambda ok: gone.append(("d", ok)))
    turn_end.pop()()
    assert gone[-1] == ("d", True)
    sink.close()
    assert [r["id"] for r in lines(log)] == ["d"] and lines(log)[0]["seq"] == 1
    assert run("verify", str(log))[0] == 0


def test_without_turn_ends_a_decision_is_written_before_record_then_returns(
    tmp_path: Path,
) -> None:
    """Without the service's turn ends (twistd on another reactor, tests), ``record_then`` writes
    the decision at once and calls back before it returns."""
    log = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(str(log))
    gone: list[int] = []
    sink.record_then(event(canonical("GET", "/_ping")), lambda ok: gone.append(len(lines(log))))
    assert gone == [1]
    sink.close()


def test_short_write_of_several_records_keeps_the_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that stops inside the second of three lines: the first stays in the
    chain, the torn bytes become the last line, and the next record links to them."""
    log = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(str(log))
    sink.defer = lambda flush: None
    ping = canonical("GET", "/_ping")
    sink.record(event(ping, "ResponseComplete", id="a"))
    sink.record(event(ping, "ResponseComplete", id="b"))
    real_write = os.write

    def short(fd: int, data: bytes) -> int:
        first = data.index(b"\n") + 1
        return real_write(fd, data[: first + 10])

    monkeypatch.setattr(audit_writer.os, "write", short)
    with pytest.raises(OSError):
        sink.record(event(ping, id="c"))
    monkeypatch.setattr(audit_writer.os, "write", real_write)
    sink.record(event(ping, id="d"))
    sink.close()
    text = log.read_bytes().split(b"\n")
    first, torn, last = json.loads(text[0]), text[1], json.loads(text[2])
    assert first["record_id"] == "a/ResponseComplete" and len(torn) == 10
    assert last["record_id"] == "d/RequestDecided" and last["seq"] == 2
    assert last["prev"] == audit_writer.line_hash(torn)


def _torn_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three records, a fourth cut short after 20 bytes (a full disk), then five more."""
    log = tmp_path / "audit.jsonl"
    chained = audit_writer.ChainedLog(str(log), fsync="never")
    for i in range(3):
        chained.append({"stage": "RequestDecided", "id": f"a{i}", "decision": "deny"})
    real_write = os.write
    monkeypatch.setattr(audit_writer.os, "write", lambda fd, data: real_write(fd, bytes(data)[:20]))
    with pytest.raises(OSError):
        chained.append({"stage": "RequestDecided", "id": "torn", "decision": "deny"})
    monkeypatch.setattr(audit_writer.os, "write", real_write)
    for i in range(5):
        chained.append({"stage": "RequestDecided", "id": f"b{i}", "decision": "deny"})
    chained.close()
    return log


def test_verify_goes_on_past_a_torn_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A torn line (a write cut short) is reported as torn and verification goes on
    through its bytes: the untouched log is ``incomplete`` (exit 1, no other
    finding), and a record edited after the torn line is still found at its own
    line, as is one removed (attack round of session 16: verify used to stop at the
    torn line, so later tampering gave the same report)."""
    log = _torn_log(tmp_path, monkeypatch)
    status, clean = run("verify", str(log))
    assert status == 1 and ":4: torn:" in clean and "incomplete: 8 records, 1 torn" in clean
    assert "edited" not in clean and "deleted" not in clean
    lines_ = log.read_bytes().splitlines(keepends=True)
    assert b'"id":"b3"' in lines_[7]
    edited = [*lines_[:7], lines_[7].replace(b'"deny"', b'"allow"'), *lines_[8:]]
    log.write_bytes(b"".join(edited))
    status, out = run("verify", str(log))
    assert status == 1 and ":8: edited:" in out, out
    log.write_bytes(b"".join(lines_[:6] + lines_[7:]))
    status, out = run("verify", str(log))
    assert status == 1 and ":7: deleted:" in out, out


def test_a_record_replaced_by_a_torn_looking_line_is_edited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole record replaced by bytes that are not a record breaks the next link:
    verify reports that line as edited, not merely torn."""
    log = _torn_log(tmp_path, monkeypatch)
    lines_ = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join([*lines_[:1], b'{"seq": 2, "junk\n', *lines_[2:]]))
    status, out = run("verify", str(log))
    assert status == 1 and ":2: edited:" in out, out


def test_restart_after_a_torn_last_line_keeps_counting(tmp_path: Path) -> None:
    """dockgate stopped mid-write leaves a torn last line: the restarted writer
    gives the next record the seq after the last whole record (the torn one's, as
    while running) and chains it to the torn bytes, so verify finds the log whole
    but for the torn line (it used to start again at seq 1)."""
    log = tmp_path / "audit.jsonl"
    chained = audit_writer.ChainedLog(str(log), fsync="never")
    for i in range(3):
        chained.append({"stage": "RequestDecided", "id": f"a{i}"})
    chained.close()
    log.write_bytes(log.read_bytes()[:-20])
    chained = audit_writer.ChainedLog(str(log), fsync="never")
    chained.append({"stage": "RequestDecided", "id": "b"})
    chained.close()
    last = json.loads(log.read_bytes().splitlines()[-1])
    assert last["seq"] == 3 and last["id"] == "b"
    status, out = run("verify", str(log))
    assert status == 1 and ":3: torn:" in out and "incomplete: 3 records" in out, out


def test_restart_continues_the_chain(tmp_path: Path) -> None:
    """Reopening the log after a restart continues the hash chain and sequence, and verify accepts
    it."""
    log = tmp_path / "audit.jsonl"
    for i in range(2):
        sink = JsonLinesAudit(str(log))
        sink.record(event(canonical("GET", "/_ping"), id=f"r{i}"))
        sink.close()
    assert [r["seq"] for r in lines(log)] == [1, 2]
    assert run("verify", str(log))[0] == 0


def recording_sink(tmp_path: Path, endpoints: str) -> tuple[JsonLinesAudit, Path]:
    """An audit log at ``tmp_path`` recording the sessions of ``endpoints``."""
    policy = load_audit_policy(write(tmp_path, "p.yaml",
                                     f"rules:\n  - {{endpoints: [{endpoints}], level: metadata, "
                                     "session: true}\n"))
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    log = tmp_path / "audit.jsonl"
    return JsonLinesAudit(str(log), policy=policy, sessions_dir=str(sessions)), log


def test_session_recording_round_trip(tmp_path: Path) -> None:
    """A recorded exec session keeps every chunk in order with its direction, splits no UTF-8
    wrongly on playback, reports counts and console size, and verify --sessions detects a modified
    recording."""
    sink, log = recording_sink(tmp_path, "exec.start")
    start = canonical("POST", "/v1.51/exec/abc/start", {"Tty": True, "ConsoleSize": [30, 100]})
    sink.record(event(start))
    sink.record(event(start, stage="SessionStarted", status=101))
    chunks = [("in", b"ls\r"), ("out", b"ls\r\n"), ("out", b"bin  \xe2\x82"), ("out", b"\xac\r\n")]
    for direction, data in chunks:
        sink.session_data("r1", direction, data)
    sink.session_data("other", "out", b"ignored")
    sink.record(event(start, stage="SessionEnded", status=101, exit_code=0, bytes_in=3,
                      bytes_out=13))
    sink.close()
    records = lines(log)
    assert records[0]["session"]["file"] == records[2]["session"]["file"]
    ended = records[2]["session"]
    assert (ended["bytes_in"], ended["bytes_out"], ended["chunks"]) == (3, 14, 4)
    recording = read_recording(Path(ended["file"]).read_bytes())
    assert recording.complete and recording.header["tty"] is True
    assert [(f.direction, f.data) for f in recording.frames] == [
        (d[0], b) for d, b in chunks]
    assert b"".join(d for _, d in terminal_output(recording)) == b"ls\r\nbin  \xe2\x82\xac\r\n"
    cast = list(asciicast(recording))
    assert json.loads(cast[0])["width"] == 100
    assert "".join(json.loads(x)[2] for x in cast[1:]) == "ls\r\nbin  \u20ac\r\n"
    assert run("verify", "--sessions", str(log))[0] == 0
    Path(ended["file"]).write_bytes(Path(ended["file"]).read_bytes() + b"x")
    assert run("verify", "--sessions", str(log))[0] == 1


def test_resizes_reach_the_sessions_they_name(tmp_path: Path) -> None:
    """A resize the daemon accepted is recorded in the sessions of what its path names;
    the asciicast starts at the first size and shows the later ones as resizes."""
    sink, log = recording_sink(tmp_path, "exec.start, container.attach")
    start = canonical("POST", "/v1.41/exec/abc/start", {"Tty": True})
    attach = canonical("POST", "/v1.41/containers/abc/attach?stream=1")
    for ident, request in (("s1", start), ("s2", attach)):
        sink.record(event(request, id=ident))
        sink.record(event(request, stage="SessionStarted", status=101, id=ident))

    def resize(target: str, status: int, ident: str) -> None:
        request = canonical("POST", target)
        sink.record(event(request, id=ident))
        sink.record(event(request, stage="ResponseComplete", status=status, id=ident))

    resize("/v1.41/exec/abc/resize?h=30&w=100", 201, "z1")
    sink.session_data("s1", "out", b"$ ")
    resize("/v1.41/exec/abc/resize?h=40&w=120", 201, "z2")
    resize("/v1.41/exec/abc/resize?h=50&w=150", 404, "z3")  # refused by the daemon
    resize("/v1.41/exec/other/resize?h=10&w=10", 201, "z4")  # another exec
    resize("/v1.41/exec/abc/resize?h=0&w=10", 201, "z5")  # no usable size
    resize("/v1.41/containers/abc/resize?h=20&w=60", 200, "z6")  # the container, not the exec
    for ident, request in (("s1", start), ("s2", attach)):
        sink.record(event(request, stage="SessionEnded", status=101, id=ident))
    sink.close()
    ended = {r["id"]: r["session"] for r in lines(log) if r["stage"] == "SessionEnded"}
    exec_rec = read_recording(Path(ended["s1"]["file"]).read_bytes())
    attach_rec = read_recording(Path(ended["s2"]["file"]).read_bytes())
    assert exec_rec.complete and ended["s1"]["format"] == "dgrec/2"
    assert [(f.direction, f.data) for f in exec_rec.frames] == [
        ("r", b"100x30"), ("o", b"$ "), ("r", b"120x40")]
    assert [(f.direction, f.data) for f in attach_rec.frames] == [("r", b"60x20")]
    assert ended["s1"]["chunks"] == 1
    cast = [json.loads(x) for x in asciicast(exec_rec)]
    assert (cast[0]["width"], cast[0]["height"]) == (100, 30)
    assert [e[1:] for e in cast[1:]] == [["o", "$ "], ["r", "120x40"]]
    assert run("verify", "--sessions", str(log))[0] == 0


def test_dgrec1_recordings_still_read() -> None:
    """Recordings in the older DGREC1 format still read and play back, with a default width of 80.
    """
    data = (b'DGREC1 {"request_id":"x","tty":true}\n'
            + struct.pack(">cQI", b"o", 5, 2) + b"hi")
    recording = read_recording(data)
    assert recording.complete and recording.output() == b"hi"
    assert [json.loads(x)[1:] for x in list(asciicast(recording))[1:]] == [["o", "hi"]]
    assert json.loads(next(asciicast(recording)))["width"] == 80


def test_session_not_started_is_discarded(tmp_path: Path) -> None:
    """A session that never started (the attach was answered 404) leaves no recording file."""
    policy = load_audit_policy(write(tmp_path, "p.yaml",
                                     "rules:\n  - {endpoints: [container.attach], level: "
                                     "metadata, session: true}\n"))
    sink = JsonLinesAudit(str(tmp_path / "a.jsonl"), policy=policy, sessions_dir=str(tmp_path))
    attach = canonical("POST", "/v1.41/containers/abc/attach?stream=1")
    sink.record(event(attach))
    sink.record(event(attach, stage="ResponseComplete", status=404))
    sink.close()
    assert not list(tmp_path.glob("*.dgrec"))


def test_demux_and_multiplexed_playback() -> None:
    """Multiplexed stdout/stderr frames are split by stream, and plain TTY text is recognised as not
    multiplexed."""
    stream = b"\x01\0\0\0\0\0\0\x03out\x02\0\0\0\0\0\0\x03err"
    assert demux(stream) == [(1, b"out"), (2, b"err")]
    assert demux(b"plain tty text") is None


# -- review commands -----------------------------------------------------------


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = audit_cli.main(list(argv), out)
    return status, out.getvalue()


def sample_log(tmp_path: Path) -> Path:
    log = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(str(log))
    sink.record(event(canonical("GET", "/_ping"), id="p"))
    sink.record(event(canonical("POST", "/v1.41/containers/create?name=x", {"Image": "i"}),
                      id="c"))
    sink.record(event(canonical("POST", "/v1.41/containers/create?name=y", {"Image": "i"}),
                      id="d", decision=Decision("deny", "baseline", "no-privileged", "nope"),
                      error="policy", status=403))
    sink.close()
    return log


def test_show_filters_and_escapes(tmp_path: Path) -> None:
    """audit show filters by decision, endpoint, time, uid and text, prints JSON on request, and
    never prints control characters from a hostile target."""
    log = sample_log(tmp_path)
    status, out = run("show", str(log), "--decision", "deny")
    assert status == 0 and out.count("\n") == 2 and "name=y" in out
    status, out = run("show", str(log), "--endpoint", "system.*", "--json")
    assert [json.loads(x)["id"] for x in out.splitlines()] == ["p"]
    assert run("show", str(log), "--since", "2030-01-01")[1].count("\n") == 1
    assert run("show", str(log), "--uid", "1000", "--text", "name=x")[1].count("\n") == 2
    sink = JsonLinesAudit(str(log))
    sink.record(event(None, raw_target="/\x1b[2J", error="bad-request",
                      decision=Decision("deny", "p", "bad-request", "x")))
    sink.close()
    assert "\x1b" not in run("show", str(log))[1]


def test_summary_counts(tmp_path: Path) -> None:
    """audit summary counts records per decision and endpoint."""
    log = sample_log(tmp_path)
    _, out = run("summary", str(log), "--json")
    rows = [json.loads(x) for x in out.splitlines()]
    assert {(r["decision"], r["endpoint"], r["count"]) for r in rows} == {
        ("allow", "system.ping", 1), ("allow", "container.create", 1),
        ("deny", "container.create", 1)}


def test_replay_lists_changes(tmp_path: Path) -> None:
    """audit replay against another policy lists each request whose decision would change, in both
    directions."""
    log = sample_log(tmp_path)
    policy = write(tmp_path, "deny-ping.yaml",
                   "name: no-ping\nrules:\n  - id: no-ping\n    endpoints: {deny: [system.ping]}\n")
    _, out = run("replay", "--policy", policy, "--json", str(log))
    changes = {json.loads(x)["id"]: json.loads(x)["change"] for x in out.splitlines()}
    assert changes == {"p": "allowed->denied", "d": "denied->allowed"}


# -- verify ----------------------------------------------------------------------


def chained(tmp_path: Path, n: int = 12, key: bytes | None = None, rotate: int | None = None
            ) -> list[Path]:
    """A log of ``n`` records, rotated by size when asked; files in chain order."""
    from dockgate.audit.chain import HmacKey  # noqa: PLC0415

    log = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(str(log), rotate_size=rotate, signer=HmacKey(key) if key else None,
                          checkpoint_every=5)
    for i in range(n):
        sink.record(event(canonical("GET", "/_ping"), id=f"r{i}"))
    sink.close()
    rotated = sorted(tmp_path.glob("audit.jsonl.*"))
    return [*rotated, log]


def file_lines(files: list[Path]) -> list[tuple[Path, list[bytes]]]:
    return [(f, f.read_bytes().splitlines(keepends=True)) for f in files]


def save(parts: list[tuple[Path, list[bytes]]]) -> None:
    for f, content in parts:
        f.write_bytes(b"".join(content))


def test_verify_intact_across_rotation(tmp_path: Path) -> None:
    """verify accepts an intact chain spread over rotated files given in any order and counts its
    records."""
    files = chained(tmp_path, rotate=1500)
    assert len(files) >= 3
    status, out = run("verify", *map(str, reversed(files)))
    assert status == 0, out
    assert "12 records" in out


TAMPER = ["edit", "delete", "insert", "reorder", "delete-first-of-file", "edit-seq"]


@pytest.mark.parametrize("how", TAMPER)
@pytest.mark.parametrize("where", ["first-file", "middle", "last-file"])
def test_verify_detects_tampering(tmp_path: Path, how: str, where: str) -> None:
    """verify fails and names the file for an edited, renumbered, deleted, inserted or reordered
    record, in the first, a middle or the last rotated file."""
    files = chained(tmp_path, rotate=1500)
    parts = file_lines(files)
    index = {"first-file": 0, "middle": len(parts) // 2, "last-file": len(parts) - 1}[where]
    f, content = parts[index]
    assert len(content) >= 2
    if how == "edit":
        content[0] = content[0].replace(b'"status":null', b'"status":200')
    elif how == "edit-seq":
        record = json.loads(content[0])
        record["seq"] += 100
        content[0] = encode_record(record)
    elif how in ("delete", "delete-first-of-file"):
        del content[len(content) // 2 if how == "delete" else 0]
    elif how == "insert":
        content.insert(1, content[0])
    elif how == "reorder":
        content[0], content[1] = content[1], content[0]
    save(parts)
    status, out = run("verify", *map(str, files))
    assert status == 1, out
    assert str(f) in out, out


def test_verify_names_the_deleted_range(tmp_path: Path) -> None:
    """verify names the line and the sequence range of deleted records."""
    files = chained(tmp_path)
    content = files[0].read_bytes().splitlines(keepends=True)
    del content[3:5]
    files[0].write_bytes(b"".join(content))
    status, out = run("verify", str(files[0]))
    assert status == 1 and f"{files[0]}:4: deleted: records seq 4..5" in out


def test_checkpoints_catch_a_recomputed_chain(tmp_path: Path) -> None:
    """Someone who edits a record and recomputes every later hash defeats the chain,
    but not the signed checkpoints."""
    from dockgate.audit.chain import line_hash  # noqa: PLC0415

    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    files = chained(tmp_path, key=b"0123456789abcdef0123456789abcdef")
    assert run("verify", "--key", str(key), str(files[0]))[0] == 0
    content = files[0].read_bytes().splitlines(keepends=True)
    records = [json.loads(x) for x in content]
    records[1]["method"] = "POST"
    out_lines: list[bytes] = []
    prev = None
    for r in records:
        r["prev"] = prev
        line = encode_record(r)
        out_lines.append(line)
        prev = line_hash(line)
    files[0].write_bytes(b"".join(out_lines))
    assert run("verify", str(files[0]))[0] == 0, "without the key only the chain is checked"
    status, out = run("verify", "--key", str(key), str(files[0]))
    assert status == 1 and "bad-checkpoint" in out


def test_ed25519_checkpoints(tmp_path: Path) -> None:
    """With an Ed25519 key the log ends with a signed checkpoint that verifies with the public key
    and fails with another key."""
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    from dockgate.audit.keys import load_key  # noqa: PLC0415

    private = ed25519.Ed25519PrivateKey.generate()
    priv_path = tmp_path / "k.pem"
    priv_path.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    pub_path = tmp_path / "k.pub"
    pub_path.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    log = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(str(log), signer=load_key(str(priv_path)))
    sink.record(event(canonical("GET", "/_ping")))
    sink.close()
    assert lines(log)[-1]["checkpoint"]["alg"] == "ed25519"
    assert run("verify", "--key", str(pub_path), str(log))[0] == 0
    other = tmp_path / "other.key"
    other.write_bytes(b"x" * 32)
    assert run("verify", "--key", str(other), str(log))[0] == 1


def test_default_policy_is_metadata_everywhere() -> None:
    """Without an audit policy every request, allowed or refused, is recorded at metadata level."""
    assert AuditPolicy().choose("container.create", "allow").level == "metadata"
    assert AuditPolicy().choose(None, "deny").level == "metadata"


# -- serve options ---------------------------------------------------------------


def serve_options(*argv: str) -> Any:
    from dockgate.service import tap  # noqa: PLC0415

    options = tap.Options()
    options.parseOptions(list(argv))  # type: ignore[no-untyped-call]
    return options


@pytest.mark.parametrize("argv", [
    ("--audit-fsync", "sometimes"), ("--audit-failure", "maybe"),
    ("--audit-checkpoint-every", "0"), ("--audit-policy", "/nonexistent.yaml"),
])
def test_bad_audit_options_are_usage_errors(argv: tuple[str, ...]) -> None:
    """Bad audit option values (fsync, failure mode, checkpoint interval, missing policy file) are
    usage errors."""
    from twisted.python import usage  # noqa: PLC0415

    with pytest.raises(usage.UsageError):
        serve_options("--audit-log", "/tmp/x.jsonl", *argv)


def test_serve_builds_the_configured_sink(tmp_path: Path) -> None:
    """The audit options build a sink with the configured failure mode, fsync, signer, rotation and
    sessions directory, and the service reopens on SIGUSR1 and runs upkeep; audit options without
    --audit-log are usage errors."""
    from twisted.internet.task import Clock  # noqa: PLC0415

    from dockgate.audit.config import build_audit  # noqa: PLC0415
    from dockgate.service import tap  # noqa: PLC0415

    policy = write(tmp_path, "p.yaml", "rules:\n  - {endpoints: [exec.start], level: request, "
                                       "session: true}\n")
    key = tmp_path / "k"
    key.write_bytes(b"k" * 32)
    options = serve_options("--audit-log", str(tmp_path / "a.jsonl"), "--audit-policy", policy,
                            "--audit-key", str(key), "--audit-failure", "open",
                            "--audit-fsync", "always", "--audit-rotate-size", "4096")
    sink = build_audit(options)
    assert isinstance(sink, JsonLinesAudit)
    assert sink.failure == "open" and sink.log.fsync == "always" and sink.log.signer is not None
    assert sink.log.rotate_size == 4096 and (tmp_path / "sessions").is_dir()
    sink.close()
    root = tap.makeService(options, Clock())
    assert sum(isinstance(c, tap.ReopenOnUsr1) for c in root) == 1
    assert sum(isinstance(c, tap.AuditUpkeep) for c in root) == 1
    # Audit options without a log are a usage error (exit 2), caught before building.
    with pytest.raises(UsageError, match="--audit-policy needs --audit-log"):
        serve_options("--audit-policy", policy)
    with pytest.raises(UsageError, match="--audit-journald needs --audit-log"):
        serve_options("--audit-journald", "all")

"""The JSON Lines audit writer: one record per line whatever the values hold."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from dockgate.audit.sink import JsonLinesAudit, NullAudit, encode_record


def record(**changes: Any) -> dict[str, Any]:
    """A record with the keys the protocol writes."""
    base: dict[str, Any] = {
        "time": "2026-01-01T00:00:00.000000Z",
        "peer": {"transport": "unix", "uid": 1000},
        "method": "GET",
        "path": "/v1.41/_ping",
        "endpoint": "system.ping",
        "status": 200,
        "decision": "allow",
        "reason": "privileged profile allows all",
        "duration": 0.0012,
        "bytes_in": 0,
        "bytes_out": 2,
    }
    base.update(changes)
    return base


def read_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize(
    "hostile",
    [
        "/x\n{\"decision\":\"allow\"}",
        "/x\r\n",
        "/x\u2028\u2029",
        "/x\x1b[31m\x00",
        "/caf\u00e9/\U0001f600",
        "/x\"}\n{\"",
        "/x\ud800",
    ],
)
def test_hostile_value_stays_in_its_record(hostile: str) -> None:
    """Newlines, quotes, control and non-ASCII characters in a value are escaped:
    the record is one ASCII line that decodes back to exactly the same value."""
    line = encode_record(record(path=hostile, reason=hostile))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert b"\r" not in line
    assert all(0x20 <= b < 0x7F for b in line[:-1])
    decoded = json.loads(line)
    assert decoded["path"] == hostile
    assert decoded == record(path=hostile, reason=hostile)


def test_hostile_key_is_escaped() -> None:
    """Keys are escaped like values."""
    line = encode_record({"a\nb": 1})
    assert line.count(b"\n") == 1
    assert json.loads(line) == {"a\nb": 1}


def test_bytes_keep_every_byte() -> None:
    """A bytes value (an undecodable raw path) is written as Latin-1 text, byte for byte."""
    raw = bytes(range(256))
    decoded = json.loads(encode_record(record(path=raw)))
    assert decoded["path"].encode("latin-1") == raw


@pytest.mark.parametrize("bad", [math.nan, math.inf, object()])
def test_unrepresentable_values_raise(bad: object) -> None:
    """NaN, infinity and arbitrary objects are refused, not written as invalid JSON or repr."""
    with pytest.raises((TypeError, ValueError)):
        encode_record(record(duration=bad))


def test_writer_appends_one_line_per_record(tmp_path: Path) -> None:
    """Each write appends one line after whatever the file held, and is on disk at once."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"earlier":true}\n')
    audit = JsonLinesAudit(str(path))
    audit.write(record(status=200))
    assert len(read_lines(path)) == 2
    audit.write(record(status=403, path="/a\nb"))
    lines = read_lines(path)
    assert [json.loads(x).get("status") for x in lines] == [None, 200, 403]
    audit.close()


def test_new_file_is_not_world_readable(tmp_path: Path) -> None:
    """A new audit log is created 0640 (or tighter, by umask)."""
    path = tmp_path / "audit.jsonl"
    JsonLinesAudit(str(path)).close()
    assert stat.S_IMODE(path.stat().st_mode) & 0o137 == 0


def test_reopen_follows_rotation(tmp_path: Path) -> None:
    """After the file is renamed (logrotate), reopen() sends new records to a new file
    at the path; the rotated file keeps the old ones."""
    path = tmp_path / "audit.jsonl"
    audit = JsonLinesAudit(str(path))
    audit.write(record(status=1))
    rotated = tmp_path / "audit.jsonl.1"
    os.rename(path, rotated)
    audit.write(record(status=2))
    audit.reopen()
    audit.write(record(status=3))
    assert [json.loads(x)["status"] for x in read_lines(rotated)] == [1, 2]
    assert [json.loads(x)["status"] for x in read_lines(path)] == [3]
    audit.close()


def test_failed_reopen_keeps_old_file(tmp_path: Path) -> None:
    """If the path cannot be opened again, the writer stays on its old file."""
    directory = tmp_path / "logs"
    directory.mkdir()
    path = directory / "audit.jsonl"
    audit = JsonLinesAudit(str(path))
    moved = tmp_path / "moved"
    os.rename(directory, moved)
    with pytest.raises(OSError):
        audit.reopen()
    audit.write(record(status=7))
    assert json.loads(read_lines(moved / "audit.jsonl")[0])["status"] == 7
    audit.close()


def test_dash_writes_to_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    """'-' writes records to standard output; reopen is a no-op."""
    audit = JsonLinesAudit("-")
    audit.write(record(status=204))
    audit.reopen()
    audit.close()
    out = capfd.readouterr().out
    assert json.loads(out)["status"] == 204


def test_null_audit_accepts_everything() -> None:
    """The null sink drops records and has the writer's reopen and close."""
    sink = NullAudit()
    sink.write(record())
    sink.reopen()
    sink.close()

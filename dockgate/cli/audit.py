"""``dockgate audit verify|show|summary|replay|play|export|check``: reviewing what was recorded.

Read-only tools over audit logs and session recordings.  ``verify`` exits 1
at the first broken link (naming file and line), so it can gate a log
shipment; the others print for people, or JSON lines for other tools.
Everything printed from a record goes through ``printable`` so that a
hostile value cannot drive the reviewer's terminal.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from dockgate.audit.chain import verify_lines
from dockgate.audit.review import Filter, Replayed, parse_time, printable, replay, summarise
from dockgate.audit.session import TerminalFilter, asciicast, read_recording, terminal_output
from dockgate.policy.source import PolicyError

__all__ = ["main"]


_GZIP_MAGIC = b"\x1f\x8b"


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of ``path`` with their 1-based numbers, gzip or plain.

    Compression is recognised by its magic bytes, not the name, because
    logrotate's ``compress`` + ``delaycompress`` leaves a set in which only
    some rotated files are ``.gz`` and a renamed copy may have lost its suffix.
    """
    with open(path, "rb") as raw_file:
        compressed = raw_file.read(2) == _GZIP_MAGIC
        raw_file.seek(0)
        f = gzip.GzipFile(fileobj=raw_file, mode="rb") if compressed else raw_file
        try:
            for number, raw in enumerate(f, 1):
                if raw.strip():
                    yield number, raw
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: cannot read the compressed file: {e}") from None


_STAMPED = re.compile(r"\.(\d{8}T\d{6}Z)(?:\.(\d+))?$")
_NUMBERED = re.compile(r"\.(\d+)$")
_DATEEXT = re.compile(r"-(\d{8,10})$")
_COMPRESSED = re.compile(r"\.gz$")


def _rotation_key(path: str) -> tuple[int, str, int]:
    """Rotated files first, oldest first; the live file (no rotation suffix) last.

    Ordering by name, not by content, so that an edited record cannot move
    its file elsewhere in the chain.  dockgate's own suffix is a UTC stamp
    (``.20260102T030405Z[.N]``); logrotate's numbered suffix counts backwards
    (``.2`` is older than ``.1``), and its ``dateext`` suffix (``-20260102``)
    counts forwards.  A ``.gz`` ending (logrotate's ``compress``) is not part
    of the rotation suffix.
    """
    path = _COMPRESSED.sub("", path)
    stamped = _STAMPED.search(path)
    if stamped:
        return (0, path[:stamped.start()] + stamped.group(1), int(stamped.group(2) or 0))
    numbered = _NUMBERED.search(path)
    if numbered:
        return (1, path[:numbered.start()], -int(numbered.group(1)))
    dated = _DATEEXT.search(path)
    if dated:
        return (0, path[:dated.start()] + dated.group(1), 0)
    return (2, path, 0)


def chain_order(paths: Sequence[str]) -> list[str]:
    """Files in chain order, so that ``audit.jsonl*`` works as the shell expands it."""
    return sorted(paths, key=_rotation_key)


def _records_from(paths: Sequence[str]) -> Iterator[tuple[dict[str, Any], str, str]]:
    """Every record of ``paths`` in chain order: (record, its line, its file)."""
    for path in chain_order(paths):
        for _, raw in _lines(path):
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record, raw.decode("ascii", "replace"), path


def _records(paths: Sequence[str]) -> Iterator[tuple[dict[str, Any], str]]:
    for record, line, _ in _records_from(paths):
        yield record, line


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    """Check the chain, then (with ``--sessions``) the recordings; ``ok:`` only if all pass."""
    verifier = None
    if args.key:
        from dockgate.audit.keys import load_key  # noqa: PLC0415

        verifier = load_key(args.key)
    files = chain_order(args.files)
    stream = ((path, n, raw) for path in files for n, raw in _lines(path))
    status = 0
    summary = None
    torn = False
    for finding in verify_lines(stream, verifier, partial=args.partial):
        if finding.kind == "summary":
            summary = finding.message
            continue
        print(finding, file=out)
        if finding.fatal:
            status = 1
        torn = torn or finding.kind == "torn"
    checked = ""
    if status == 0 and args.sessions:
        status, count = _verify_sessions(files, args.sessions_dir, out)
        checked = f", {count} session recording(s) match"
    if status == 0 and summary is not None:
        # A torn line is a record lost (a write cut short), not an edit: the
        # rest is checked, and the exit status still says the log is not whole.
        word = "incomplete" if torn else "ok"
        print(f"{word}: {summary}{checked} ({len(files)} file(s))", file=out)
        status = 1 if torn else 0
    return status


def session_file(recorded: object, log_path: str, sessions_dir: str | None) -> str:
    """Where the recording a record names is, for a log read at ``log_path``.

    The record holds the path the writer used, which is absolute and may be
    on another host, or the original of a copy being checked.  The recording
    is looked for by its name in ``sessions_dir`` when given, else in
    ``sessions/`` next to the log (where dockgate puts them by default), so
    that a copied log is checked against the copied recordings and never
    silently against the originals.
    """
    name = os.path.basename(str(recorded))
    if sessions_dir is not None:
        return os.path.join(sessions_dir, name)
    return os.path.join(os.path.dirname(os.path.abspath(log_path)), "sessions", name)


def _verify_sessions(paths: Sequence[str], sessions_dir: str | None,
                     out: TextIO) -> tuple[int, int]:
    """Compare every ended session's recording with its recorded sha256: (status, checked)."""
    import hashlib  # noqa: PLC0415

    bad = good = 0
    for record, _, path in _records_from(paths):
        session = record.get("session")
        if record.get("stage") != "SessionEnded" or not isinstance(session, dict):
            continue
        where = session_file(session.get("file"), path, sessions_dir)
        try:
            with open(where, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:
            print(f"{printable(where)}: missing: {e.strerror} (recorded as "
                  f"{printable(session.get('file'))}; give --sessions-dir DIR if the "
                  "recordings are elsewhere)", file=out)
            bad += 1
            continue
        if digest != session.get("sha256"):
            print(f"{printable(where)}: altered (sha256 differs from the record)", file=out)
            bad += 1
        else:
            good += 1
    return (1 if bad else 0), good


def _filter(args: argparse.Namespace) -> Filter:
    return Filter(
        tenant=getattr(args, "tenant", None),
        principal=getattr(args, "principal", None),
        uid=getattr(args, "uid", None),
        decision=getattr(args, "decision", None),
        endpoint=getattr(args, "endpoint", None),
        stage=getattr(args, "stage", None),
        checkpoints=getattr(args, "stage", None) == "Checkpoint",
        since=parse_time(args.since) if args.since else None,
        until=parse_time(args.until) if args.until else None,
        text=getattr(args, "text", None),
    )


_COLUMNS: tuple[tuple[str, int], ...] = (
    ("time", 27), ("principal", 14), ("tenant", 10), ("decision", 8), ("status", 6),
    ("method", 6), ("endpoint", 22), ("rule", 22), ("path", 50), ("reason", 0),
)
"""The table's columns and their widths; the last one takes what is left (0)."""
_STAGE_COLUMN = ("stage", 16)
_FINAL_STAGES = frozenset({"ResponseComplete", "SessionEnded"})
_PENDING_LIMIT = 10000
"""Requests held back waiting for their last stage, before the oldest is printed as is."""


def _cell(value: object, width: int) -> str:
    text = printable(value)
    if width and len(text) > width:
        text = text[:width - 1] + "~"
    return text.ljust(width) if width else text[:200]


def _row(record: dict[str, Any], columns: Sequence[tuple[str, int]]) -> str:
    values = dict(record)
    rules = record.get("rules")
    values["rule"] = ",".join(map(str, rules)) if isinstance(rules, list) and rules else None
    reasons = record.get("reasons")
    # A denial lists each failed rule on a line of its own; a row keeps them on one.
    values["reason"] = ("; ".join(map(str, reasons)).replace("\n", " | ")
                        if isinstance(reasons, list) else None)
    return "  ".join(_cell(values.get(name), width) for name, width in columns).rstrip()


def _requests(rows: Iterator[tuple[dict[str, Any], str]]) -> Iterator[dict[str, Any]]:
    """One merged record per request, in order of arrival.

    The decision stage says who, what and why; the last stage says how it
    ended (status, duration).  A request is printed once its last stage is
    read, or when too many are waiting (a log cut mid-exchange).
    """
    pending: dict[str, dict[str, Any]] = {}
    done: set[str] = set()
    order: deque[str] = deque()
    for record, _ in rows:
        key = str(record.get("id"))
        merged = pending.get(key)
        if merged is None:
            pending[key] = merged = dict(record)
            order.append(key)
        else:
            for name in ("status", "duration", "bytes_in", "bytes_out", "error"):
                if record.get(name) is not None:
                    merged[name] = record[name]
        if record.get("stage") in _FINAL_STAGES:
            done.add(key)
        while order and (order[0] in done or len(order) > _PENDING_LIMIT):
            head = order.popleft()
            done.discard(head)
            yield pending.pop(head)
    for key in order:
        yield pending.pop(key)


def _show(args: argparse.Namespace, out: TextIO) -> int:
    """Matching records as a table (one row per request) or their lines (``--json``).

    Given ``--stage``, each matching record is a row of its own, with a
    stage column.
    """
    keep = _filter(args)
    matching = ((r, line) for r, line in _records(args.files) if keep.keep(r, line))
    columns = _COLUMNS if args.stage is None else (_COLUMNS[0], _STAGE_COLUMN, *_COLUMNS[1:])
    shown = 0
    if args.json:
        for _, line in matching:
            out.write(line if line.endswith("\n") else line + "\n")
            shown += 1
            if args.limit and shown >= args.limit:
                break
        return 0
    print("  ".join(name.upper().ljust(width) for name, width in columns).rstrip(), file=out)
    records = (r for r, _ in matching) if args.stage is not None else _requests(matching)
    for record in records:
        print(_row(record, columns), file=out)
        shown += 1
        if args.limit and shown >= args.limit:
            break
    return 0


def _summary(args: argparse.Namespace, out: TextIO) -> int:
    keep = _filter(args)
    rows = summarise(r for r, line in _records(args.files) if keep.keep(r, line))
    if args.json:
        for tenant, decision, endpoint, n in rows:
            print(json.dumps({"tenant": None if tenant == "-" else tenant, "decision": decision,
                              "endpoint": endpoint, "count": n}), file=out)
        return 0
    print(f"{'COUNT':>7}  {'TENANT':<16} {'DECISION':<8} ENDPOINT", file=out)
    for tenant, decision, endpoint, n in rows:
        print(f"{n:>7}  {printable(tenant):<16} {printable(decision):<8} {printable(endpoint)}",
              file=out)
    return 0


def _replay(args: argparse.Namespace, out: TextIO) -> int:
    from dockgate.policy import load_policy  # noqa: PLC0415

    policy = load_policy(args.policy)
    changed = total = metadata_only = 0
    unknown: dict[str, int] = {}
    for item in replay((r for r, _ in _records(args.files)), policy):
        if isinstance(item, str):
            if args.verbose:
                print(printable(item), file=out)
            continue
        total += 1
        metadata_only += item.basis == "metadata"
        if item.after == "unknown":
            endpoint = str(item.record.get("endpoint"))
            unknown[endpoint] = unknown.get(endpoint, 0) + 1
        if item.change is None and item.after != "unknown" and not args.all:
            continue
        changed += item.change is not None
        _print_replayed(item, args.json, out)
    notes = sys.stderr if args.json else out
    decided = total - sum(unknown.values())
    print(f"{decided} request(s) re-decided under {printable(policy.name)}: {changed} would "
          f"change; {metadata_only} of them on method, path and query alone (they had no "
          "body)", file=notes)
    if unknown:
        print(f"{sum(unknown.values())} request(s) unknown: recorded at audit level metadata "
              "without their body, so they cannot be re-decided ("
              + ", ".join(f"{printable(k)} {n}" for k, n in sorted(unknown.items()))
              + "). For full fidelity, record these endpoints at level request in the audit "
              "policy (--audit-policy, docs/audit.md).", file=notes)
    return 0


def _print_replayed(item: Replayed, as_json: bool, out: TextIO) -> None:
    r = item.record
    if as_json:
        print(json.dumps({"id": r.get("id"), "time": r.get("time"), "endpoint": r.get("endpoint"),
                          "path": r.get("path"), "principal": r.get("principal"),
                          "before": item.before, "after": item.after,
                          "change": "unknown" if item.after == "unknown" else item.change,
                          "rule": item.rule, "reason": item.reason, "basis": item.basis}),
              file=out)
        return
    label = "unknown" if item.after == "unknown" else item.change or "same"
    now = ("cannot be re-decided" if item.after == "unknown"
           else f"{item.after} by {printable(item.rule or 'default')}")
    print(f"{printable(label):<16} {printable(r.get('time'))}  "
          f"{printable(r.get('principal'))}  {printable(r.get('method'))} "
          f"{printable(r.get('path'))[:100]}  [{item.basis}]\n"
          f"{'':<16} was: {printable(item.before)}; now: {now}: "
          f"{printable(item.reason.replace(chr(10), ' | '))}", file=out)


def _load_session(path: str) -> Any:
    with open(path, "rb") as f:
        return read_recording(f.read())


def _play(args: argparse.Namespace, out: TextIO) -> int:
    recording = _load_session(args.session)
    sink = getattr(out, "buffer", None)
    last = 0.0
    safe = None if args.raw else TerminalFilter()
    for at, recorded in terminal_output(recording):
        data = recorded if safe is None else safe.feed(recorded)
        delay = (at - last) / args.speed
        if args.idle_limit is not None:
            delay = min(delay, args.idle_limit)
        if delay > 0:
            time.sleep(delay)
        last = at
        if sink is not None:
            sink.write(data)
            sink.flush()
        else:
            out.write(data.decode("utf-8", "replace"))
            out.flush()
    if not recording.complete:
        print("\r\n[dockgate: the recording ends inside a frame]", file=sys.stderr)
    if safe is not None and safe.dropped:
        print(f"\r\n[dockgate: {safe.dropped} terminal control sequence(s) not replayed "
              "(titles, clipboard, queries); --raw replays every byte]", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace, out: TextIO) -> int:
    recording = _load_session(args.session)
    target = open(args.output, "w", encoding="utf-8") if args.output else out  # noqa: SIM115
    try:
        for line in asciicast(recording, include_input=args.input):
            target.write(line + "\n")
    finally:
        if target is not out:
            target.close()
    return 0


def _check(args: argparse.Namespace, out: TextIO) -> int:
    from dockgate.audit.rules import load_audit_policy  # noqa: PLC0415

    bad = 0
    for path in args.files:
        try:
            policy = load_audit_policy(path)
        except PolicyError as e:
            bad += 1
            for p in e.problems:
                print(p, file=out)
            continue
        print(f"{path}: ok ({len(policy.rules)} rules, default {policy.default})", file=out)
    return 1 if bad else 0


def _filters(p: argparse.ArgumentParser, full: bool = True) -> None:
    p.add_argument("files", nargs="+", metavar="LOG",
                   help="audit log files: the live one and rotated ones, plain or .gz, in "
                   "any order")
    p.add_argument("--since", help="ISO 8601 time or an age such as 90m, 2h, 7d")
    p.add_argument("--until", help="ISO 8601 time or an age")
    p.add_argument("--tenant", help="tenant name")
    p.add_argument("--decision", choices=("allow", "deny", "warn"))
    p.add_argument("--endpoint", help="endpoint id glob (container.*)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    if full:
        p.add_argument("--principal", help="principal glob: a user name or certificate CN "
                       "(bob, team-*), uid:N for a uid without a name")
        p.add_argument("--uid", type=int, help="peer uid")
        p.add_argument("--stage", choices=("RequestDecided", "ResponseComplete",
                                           "SessionStarted", "SessionEnded", "Checkpoint"))
        p.add_argument("--text", help="substring anywhere in the record (case-sensitive; "
                       "bodies are recorded at audit level request only)")
        p.add_argument("--limit", type=int, default=0, help="stop after N records")


def build_parser() -> argparse.ArgumentParser:
    """``dockgate audit``'s parser."""
    parser = argparse.ArgumentParser(prog="dockgate audit",
                                     description="Verify, search and replay audit logs.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("verify", help="check the hash chain and signed checkpoints")
    p.add_argument("files", nargs="+", metavar="LOG",
                   help="audit log files: the live one and rotated ones, plain or .gz, in "
                   "any order (they are checked as one chain, oldest first)")
    p.add_argument("--key", help="HMAC key file or Ed25519 key (PEM, public is enough)")
    p.add_argument("--partial", action="store_true",
                   help="the oldest files were removed (retention): accept a chain that "
                   "does not start at record 1")
    p.add_argument("--sessions", action="store_true",
                   help="also check that recorded sessions match their recorded sha256")
    p.add_argument("--sessions-dir", metavar="DIR",
                   help="where the session recordings are (default: sessions/ next to "
                   "each log file)")
    p.set_defaults(run=_verify)
    p = sub.add_parser("show", help="list records, filtered")
    _filters(p)
    p.set_defaults(run=_show)
    p = sub.add_parser("summary", help="count requests by tenant, decision and endpoint")
    _filters(p, full=False)
    p.set_defaults(run=_summary)
    p = sub.add_parser("replay", help="re-decide recorded requests under another policy")
    p.add_argument("--policy", required=True, help="the policy file to try")
    p.add_argument("files", nargs="+", metavar="LOG",
                   help="audit log files, rotated and .gz ones too")
    p.add_argument("--all", action="store_true", help="list unchanged requests too")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per request (the summary goes to standard error)")
    p.add_argument("-v", "--verbose", action="store_true", help="say which records were skipped")
    p.set_defaults(run=_replay)
    p = sub.add_parser("play", help="replay a recorded session in the terminal")
    p.add_argument("session", help="a .dgrec session file")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed factor (2 = twice)")
    p.add_argument("--idle-limit", type=float, default=None,
                   help="cap pauses at this many seconds")
    p.add_argument("--raw", action="store_true",
                   help="write every recorded byte, including terminal control sequences "
                   "other than cursor and colour (titles, clipboard, queries), which are "
                   "dropped by default")
    p.set_defaults(run=_play)
    p = sub.add_parser("export", help="convert a session recording")
    p.add_argument("--asciicast", action="store_true", required=True,
                   help="write asciicast v2 (the only format so far)")
    p.add_argument("session", help="a .dgrec session file")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    p.add_argument("--input", action="store_true", help="include keyboard input events")
    p.set_defaults(run=_export)
    p = sub.add_parser("check", help="validate audit policy files")
    p.add_argument("files", nargs="+", metavar="POLICY")
    p.set_defaults(run=_check)
    return parser


def main(argv: Sequence[str], out: TextIO | None = None) -> int:
    """Run ``dockgate audit``; returns the exit status (1 for findings, 2 for usage)."""
    args = build_parser().parse_args(list(argv))
    if getattr(args, "speed", 1.0) <= 0:
        print("dockgate audit play: --speed must be positive", file=sys.stderr)
        return 2
    try:
        return int(args.run(args, out or sys.stdout))
    except BrokenPipeError:
        raise  # dockgate's main stops quietly
    except (OSError, ValueError, PolicyError) as e:
        where = getattr(e, "filename", None)
        print(f"dockgate audit {args.command}: {where + ': ' if where else ''}"
              f"{getattr(e, 'strerror', None) or e}", file=sys.stderr)
        return 1


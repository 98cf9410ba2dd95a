"""``dockgate audit verify|show|summary|replay|play|export|check``: reviewing what was recorded.

Read-only tools over audit logs and session recordings.  ``verify`` exits 1
at the first broken link (naming file and line), so it can gate a log
shipment; the others print for people, or JSON lines for other tools.
Everything printed from a record goes through ``printable`` so that a
hostile value cannot drive the reviewer's terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from dockgate.audit_chain import verify_lines
from dockgate.audit_review import Filter, Replayed, parse_time, printable, replay, summarise
from dockgate.audit_session import asciicast, read_recording, terminal_output
from dockgate.policy.source import PolicyError

__all__ = ["main"]


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if raw.strip():
                yield number, raw


_STAMPED = re.compile(r"\.(\d{8}T\d{6}Z)(?:\.(\d+))?$")
_NUMBERED = re.compile(r"\.(\d+)$")


def _rotation_key(path: str) -> tuple[int, str, int]:
    """Rotated files first, oldest first; the live file (no rotation suffix) last.

    Ordering by name, not by content, so that an edited record cannot move
    its file elsewhere in the chain.  dockgate's own suffix is a UTC stamp
    (``.20260102T030405Z[.N]``); logrotate's numbered suffix counts backwards
    (``.2`` is older than ``.1``).
    """
    stamped = _STAMPED.search(path)
    if stamped:
        return (0, path[:stamped.start()] + stamped.group(1), int(stamped.group(2) or 0))
    numbered = _NUMBERED.search(path)
    if numbered:
        return (1, path[:numbered.start()], -int(numbered.group(1)))
    return (2, path, 0)


def chain_order(paths: Sequence[str]) -> list[str]:
    """Files in chain order, so that ``audit.jsonl*`` works as the shell expands it."""
    return sorted(paths, key=_rotation_key)


def _records(paths: Sequence[str]) -> Iterator[tuple[dict[str, Any], str]]:
    for path in chain_order(paths):
        for _, raw in _lines(path):
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record, raw.decode("ascii", "replace")


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    verifier = None
    if args.key:
        from dockgate.audit_keys import load_key  # noqa: PLC0415

        verifier = load_key(args.key)
    files = chain_order(args.files)
    stream = ((path, n, raw) for path in files for n, raw in _lines(path))
    status = 0
    for finding in verify_lines(stream, verifier, partial=args.partial):
        print(finding if finding.kind != "summary" else f"ok: {finding.message} "
              f"({len(files)} file(s))", file=out)
        if finding.fatal:
            status = 1
    if status == 0 and args.sessions:
        status = _verify_sessions(args.files, out)
    return status


def _verify_sessions(paths: Sequence[str], out: TextIO) -> int:
    import hashlib  # noqa: PLC0415

    bad = 0
    for record, _ in _records(paths):
        session = record.get("session")
        if record.get("stage") != "SessionEnded" or not isinstance(session, dict):
            continue
        try:
            with open(str(session.get("file")), "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:
            print(f"{printable(session.get('file'))}: missing: {e.strerror}", file=out)
            bad += 1
            continue
        if digest != session.get("sha256"):
            print(f"{printable(session.get('file'))}: altered (sha256 differs from the record)",
                  file=out)
            bad += 1
    return 1 if bad else 0


def _filter(args: argparse.Namespace) -> Filter:
    return Filter(
        tenant=getattr(args, "tenant", None),
        principal=getattr(args, "principal", None),
        uid=getattr(args, "uid", None),
        decision=getattr(args, "decision", None),
        endpoint=getattr(args, "endpoint", None),
        stage=getattr(args, "stage", None),
        since=parse_time(args.since) if args.since else None,
        until=parse_time(args.until) if args.until else None,
        text=getattr(args, "text", None),
    )


_COLUMNS = ("time", "stage", "principal", "decision", "status", "method", "endpoint", "path")


def _show(args: argparse.Namespace, out: TextIO) -> int:
    keep = _filter(args)
    shown = 0
    if not args.json:
        print("  ".join(c.upper() for c in _COLUMNS), file=out)
    for record, line in _records(args.files):
        if not keep.keep(record, line):
            continue
        if args.json:
            out.write(line if line.endswith("\n") else line + "\n")
        else:
            cells = [printable(record.get(c)) for c in _COLUMNS]
            cells[-1] = cells[-1][:120]
            print("  ".join(cells), file=out)
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
    for item in replay((r for r, _ in _records(args.files)), policy):
        if isinstance(item, str):
            if args.verbose:
                print(printable(item), file=out)
            continue
        total += 1
        metadata_only += item.basis == "metadata"
        if item.change is None and not args.all:
            continue
        changed += item.change is not None
        _print_replayed(item, args.json, out)
    print(f"{total} request(s) re-decided under {printable(policy.name)}: {changed} would change"
          f"; {metadata_only} re-decided on method, path and query only (recorded at metadata "
          "level, no body)", file=sys.stderr if args.json else out)
    return 0


def _print_replayed(item: Replayed, as_json: bool, out: TextIO) -> None:
    r = item.record
    if as_json:
        print(json.dumps({"id": r.get("id"), "time": r.get("time"), "endpoint": r.get("endpoint"),
                          "path": r.get("path"), "principal": r.get("principal"),
                          "before": item.before, "after": item.after, "change": item.change,
                          "rule": item.rule, "reason": item.reason, "basis": item.basis}),
              file=out)
        return
    print(f"{printable(item.change or 'same'):<16} {printable(r.get('time'))}  "
          f"{printable(r.get('principal'))}  {printable(r.get('method'))} "
          f"{printable(r.get('path'))[:100]}  [{item.basis}]\n"
          f"{'':<16} now: {item.after} by {printable(item.rule or 'default')}: "
          f"{printable(item.reason)}", file=out)


def _load_session(path: str) -> Any:
    with open(path, "rb") as f:
        return read_recording(f.read())


def _play(args: argparse.Namespace, out: TextIO) -> int:
    recording = _load_session(args.session)
    sink = getattr(out, "buffer", None)
    last = 0.0
    for at, data in terminal_output(recording):
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
    from dockgate.audit_rules import load_audit_policy  # noqa: PLC0415

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
    p.add_argument("files", nargs="+", metavar="LOG", help="audit log files (rotated ones too)")
    p.add_argument("--since", help="ISO 8601 time or an age such as 90m, 2h, 7d")
    p.add_argument("--until", help="ISO 8601 time or an age")
    p.add_argument("--tenant")
    p.add_argument("--decision", choices=("allow", "deny", "warn"))
    p.add_argument("--endpoint", help="endpoint id glob (container.*)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    if full:
        p.add_argument("--principal", help="principal glob (uid:1000, a certificate name)")
        p.add_argument("--uid", type=int, help="peer uid")
        p.add_argument("--stage", choices=("RequestDecided", "ResponseComplete",
                                           "SessionStarted", "SessionEnded", "Checkpoint"))
        p.add_argument("--text", help="substring anywhere in the record")
        p.add_argument("--limit", type=int, default=0, help="stop after N records")


def build_parser() -> argparse.ArgumentParser:
    """``dockgate audit``'s parser."""
    parser = argparse.ArgumentParser(prog="dockgate audit",
                                     description="Verify, search and replay audit logs.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("verify", help="check the hash chain and signed checkpoints")
    p.add_argument("files", nargs="+", metavar="LOG")
    p.add_argument("--key", help="HMAC key file or Ed25519 key (PEM, public is enough)")
    p.add_argument("--partial", action="store_true",
                   help="the oldest files were removed (retention): accept a chain that "
                   "does not start at record 1")
    p.add_argument("--sessions", action="store_true",
                   help="also check that recorded sessions match their recorded sha256")
    p.set_defaults(run=_verify)
    p = sub.add_parser("show", help="list records, filtered")
    _filters(p)
    p.set_defaults(run=_show)
    p = sub.add_parser("summary", help="count requests by tenant, decision and endpoint")
    _filters(p, full=False)
    p.set_defaults(run=_summary)
    p = sub.add_parser("replay", help="re-decide recorded requests under another policy")
    p.add_argument("--policy", required=True, help="the policy file to try")
    p.add_argument("files", nargs="+", metavar="LOG")
    p.add_argument("--all", action="store_true", help="list unchanged requests too")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="say which records were skipped")
    p.set_defaults(run=_replay)
    p = sub.add_parser("play", help="replay a recorded session in the terminal")
    p.add_argument("session", help="a .dgrec session file")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed factor (2 = twice)")
    p.add_argument("--idle-limit", type=float, default=None,
                   help="cap pauses at this many seconds")
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
    except (OSError, ValueError, PolicyError) as e:
        where = getattr(e, "filename", None)
        print(f"dockgate audit {args.command}: {where + ': ' if where else ''}"
              f"{getattr(e, 'strerror', None) or e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0

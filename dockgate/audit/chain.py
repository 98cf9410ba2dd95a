"""Tamper evidence: the hash chain over audit lines, signed checkpoints, and their verification.

Every record carries ``seq`` (a counter that never restarts while the chain
continues) and ``prev``, the SHA-256 of the previous line's bytes (without
its newline).  Changing, removing, inserting or moving any line therefore
breaks the link from the line after it, and ``seq`` tells which of those
happened.  A chain alone can be recomputed by whoever edits the file, so the
writer also appends *checkpoint* records whose signature (HMAC-SHA256, or
Ed25519) covers their own ``seq`` and ``prev``: with the key kept off the
host (Ed25519) or out of the attacker's reach, everything up to the last
checkpoint is pinned.  This is CloudTrail's digest idea applied inline, as
journald's sealing does, so that rotation cannot separate records from
their seals.

Pure: verification works on ``(file, line number, bytes)`` triples.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Protocol

__all__ = [
    "CHECKPOINT_STAGE",
    "ChainFinding",
    "Signer",
    "Verifier",
    "checkpoint_message",
    "line_hash",
    "verify_lines",
]

CHECKPOINT_STAGE: Final = "Checkpoint"


def line_hash(line: bytes) -> str:
    """SHA-256 (hex) of one log line, without its line terminator."""
    return hashlib.sha256(line.rstrip(b"\r\n")).hexdigest()


def checkpoint_message(seq: int, prev: str | None, time: str) -> bytes:
    """The bytes a checkpoint signs: its place in the chain and its time.

    ``prev`` commits to every earlier line, so signing it seals them all.
    """
    return f"dockgate-audit-checkpoint/1\n{seq}\n{prev or '-'}\n{time}\n".encode("ascii")


class Signer(Protocol):
    """Signs checkpoint messages (``audit.keys`` provides HMAC and Ed25519)."""

    alg: str
    key_id: str

    def sign(self, message: bytes) -> str:
        """Hex signature of ``message``."""
        ...


class Verifier(Protocol):
    """Checks checkpoint signatures."""

    alg: str
    key_id: str

    def verify(self, message: bytes, signature: str) -> bool:
        """Whether ``signature`` is this key's signature of ``message``."""
        ...


class HmacKey:
    """HMAC-SHA256 with a shared secret: signs and verifies."""

    alg = "hmac-sha256"

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("an HMAC audit key must be at least 16 bytes")
        self._secret = secret
        # The id names the key without revealing it (a MAC of a constant).
        self.key_id = hmac.new(secret, b"dockgate-audit-key-id", "sha256").hexdigest()[:16]

    def sign(self, message: bytes) -> str:
        """Hex HMAC of ``message``."""
        return hmac.new(self._secret, message, "sha256").hexdigest()

    def verify(self, message: bytes, signature: str) -> bool:
        """Constant-time comparison with the expected HMAC."""
        return hmac.compare_digest(self.sign(message), signature)


@dataclass(frozen=True, slots=True)
class ChainFinding:
    """One verification problem (or note), located by file and 1-based line."""

    file: str
    line: int
    kind: str
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind}: {self.message}"


@dataclass(slots=True)
class _State:
    prev_hash: str | None = None
    prev_seq: int | None = None
    prev_where: tuple[str, int] | None = None
    records: int = 0
    checkpoints: int = 0
    last_checkpoint: tuple[str, int] | None = None
    torn: int = 0
    torn_where: tuple[str, int] | None = None
    """The line just checked, if it was not a whole record."""


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def verify_lines(
    lines: Iterable[tuple[str, int, bytes]],
    verifier: Verifier | None = None,
    *,
    partial: bool = False,
) -> Iterator[ChainFinding]:
    """Check the chain over ``lines`` (in chain order across files); yield findings.

    Every fatal finding after the first may be a consequence of it, so
    callers usually report the first and stop.  Non-fatal findings are
    notes (a chain that starts from scratch, checkpoints left unchecked for
    want of a key).  The summary at the end is a non-fatal ``summary``.

    A chain must start at record 1 (``seq`` 1, no ``prev``): otherwise its
    first records were removed, which the chain alone cannot tell from old
    files deleted on purpose; ``partial`` accepts that, as a note.
    """
    st = _State()
    where: tuple[str, int] = ("-", 0)
    unchecked = 0
    for file, number, raw in lines:
        where = (file, number)
        record = _parse(raw)
        if record is None:
            # A write cut short (a full disk, or dockgate stopped mid-write):
            # the writer chains the next record to these bytes and gives it the
            # seq the torn one had, so the chain goes on through them.  An edit
            # that leaves no record here breaks the next link instead.
            st.torn += 1
            yield ChainFinding(file, number, "torn",
                          "not a whole record (a write cut short, or an edit); the chain "
                          "is checked on through its bytes", fatal=False)
            st.prev_hash = line_hash(raw)
            st.prev_where = st.torn_where = where
            continue
        torn_before, st.torn_where = st.torn_where, None
        seq, prev = record.get("seq"), record.get("prev")
        if not isinstance(seq, int) or (prev is not None and not isinstance(prev, str)):
            yield ChainFinding(file, number, "edited", "record has no valid seq/prev chain fields")
            return
        if st.prev_hash is None and st.records == 0:
            if prev is not None or seq != 1:
                yield ChainFinding(file, number, "note" if partial else "head-missing",
                              f"the chain starts at seq {seq}: records before it are not in "
                              "the files given (removed, or older files not given; "
                              "--partial accepts that)", fatal=not partial)
                if not partial:
                    return
        elif prev is None:
            yield ChainFinding(file, number, "restarted",
                          f"the chain starts over at seq {seq} after seq {st.prev_seq}: "
                          "earlier records may have been removed, or the log was replaced")
            return
        elif prev != st.prev_hash:
            if torn_before is not None:
                yield ChainFinding(torn_before[0], torn_before[1], "edited",
                              f"record seq {seq} at {file}:{number} does not chain to this "
                              "line, which is not a whole record: a record was altered or "
                              "replaced here")
            else:
                yield _broken(st, file, number, seq)
            return
        elif st.prev_seq is not None and seq != st.prev_seq + 1:
            yield ChainFinding(file, number, "edited", f"seq {seq} follows seq {st.prev_seq} "
                          "although the hashes link (the seq field was altered)")
            return
        elif st.prev_seq is None and seq != 1 and not partial:
            # Only torn lines before it: the first record proper must be seq 1.
            yield ChainFinding(file, number, "head-missing",
                          f"the chain starts at seq {seq} after a torn line: records before "
                          "it are not in the files given (--partial accepts that)")
            return
        if record.get("stage") == CHECKPOINT_STAGE:
            problem = _check_signature(record, verifier)
            if problem is None:
                st.checkpoints += 1
                st.last_checkpoint = where
            elif problem == "unchecked":
                unchecked += 1
            else:
                yield ChainFinding(file, number, "bad-checkpoint", problem)
                return
        st.prev_hash = line_hash(raw)
        st.prev_seq = seq
        st.prev_where = where
        st.records += 1
    if unchecked:
        yield ChainFinding(where[0], where[1], "note", f"{unchecked} checkpoint(s) not verified: "
                      "no key given (--key)", fatal=False)
    sealed = (f"; signed up to {st.last_checkpoint[0]}:{st.last_checkpoint[1]}"
              if st.last_checkpoint else "; no verified checkpoint")
    torn = f", {st.torn} torn line(s)" if st.torn else ""
    yield ChainFinding(where[0], where[1], "summary",
                  f"{st.records} records{torn}, chain intact{sealed}", fatal=False)


def _broken(st: _State, file: str, number: int, seq: int) -> ChainFinding:
    """Name what a broken link most likely is, from the sequence numbers around it."""
    assert st.prev_seq is not None and st.prev_where is not None
    before = f"{st.prev_where[0]}:{st.prev_where[1]}"
    if seq == st.prev_seq + 1:
        return ChainFinding(st.prev_where[0], st.prev_where[1], "edited",
                       f"record seq {st.prev_seq} was altered: its hash is not the one "
                       f"record seq {seq} at {file}:{number} chained to")
    if seq > st.prev_seq + 1:
        return ChainFinding(file, number, "deleted",
                       f"records seq {st.prev_seq + 1}..{seq - 1} are missing between "
                       f"{before} and here")
    return ChainFinding(file, number, "inserted-or-reordered",
                   f"record seq {seq} does not follow seq {st.prev_seq} at {before}: "
                   "a record was inserted here or records were moved")


def _check_signature(record: dict[str, Any], verifier: Verifier | None) -> str | None:
    """None if the checkpoint is good, ``"unchecked"`` without a key, else the problem."""
    info = record.get("checkpoint")
    if not isinstance(info, dict) or not isinstance(info.get("sig"), str):
        return "checkpoint without a signature"
    if verifier is None:
        return "unchecked"
    if info.get("alg") != verifier.alg or info.get("key") != verifier.key_id:
        return (f"checkpoint signed with {info.get('alg')} key {info.get('key')}, "
                f"not the given {verifier.alg} key {verifier.key_id}")
    message = checkpoint_message(record["seq"], record.get("prev"), str(record.get("time")))
    if not verifier.verify(message, info["sig"]):
        return "checkpoint signature does not match (the checkpoint or the chain was rewritten)"
    return None

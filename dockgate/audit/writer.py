"""The audit file: chained appends, fsync policy, rotation, reopen, checkpoints, copies.

Invariants:

* a record is in the kernel (one ``write(2)`` on an ``O_APPEND`` descriptor)
  when ``append`` returns, and on disk too under ``fsync="always"`` (unless
  the caller asked to ``hold`` it: then it goes with the next write);
* under ``fsync="interval"`` the file is fsynced at most every
  ``fsync_interval`` seconds, in a worker thread when the service provides
  one (``sync_in_background``): an fsync waits for the disk, which on a host
  busy writing image layers can take far longer than a request, and the
  event loop must not stop for it.  A failed background fsync is raised by
  the next ``append``, so fail-closed refuses that request;
  ``append`` raises if either fails, and then the chain state is unchanged,
  so the next record still links to the last line that really is there;
* the chain survives everything the writer does itself (rotation by size or
  age, ``reopen`` after logrotate, a restart on the same file): the first
  record of a new file links to the last record of the old one;
* with a signing key, the writer seals the chain with a checkpoint every
  ``checkpoint_every`` records or ``checkpoint_interval`` seconds, before
  each rotation and on close, so a file is never left with unsealed records
  by the writer itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from hashlib import sha256
from typing import Any, Final, Literal, Protocol

from dockgate.audit.chain import CHECKPOINT_STAGE, Signer, checkpoint_message, line_hash
from dockgate.audit.schema import SCHEMA_VERSION, encode_record, iso_time

__all__ = ["FSYNC_POLICIES", "ChainedLog", "Copy", "FsyncPolicy", "SyncRunner", "last_line"]

FsyncPolicy = Literal["always", "interval", "never"]
FSYNC_POLICIES: Final[tuple[FsyncPolicy, ...]] = ("always", "interval", "never")
FILE_MODE: Final = 0o640
"""Audit records name callers and what they did; not for every local user."""
_TAIL_CHUNK: Final = 64 * 1024
_CHAIN_LEAD: Final = f'{{"v":{SCHEMA_VERSION},"seq":'
"""How every line starts: ``encode_record``'s bytes for the first chain members."""


SyncRunner = Callable[[Callable[[], None], Callable[[BaseException | None], None]], None]
"""Runs a job in a worker thread, then ``done(error or None)`` on the caller's thread."""

_SHA256: Final = sha256()
"""An empty SHA-256 state: a copy of it starts each record's hash, which skips
OpenSSL's per-hash set-up (1.75 against 1.35 µs for a 600-byte record)."""


def _hash_of(data: bytes) -> str:
    """SHA-256 of ``data``, in hex (``sha256(data).hexdigest()``)."""
    state = _SHA256.copy()
    state.update(data)
    return state.hexdigest()


class Copy(Protocol):
    """A secondary destination for each line (syslog, journald); best effort."""

    def send(self, line: bytes, checkpoint: bool) -> None:
        """Deliver one encoded line."""
        ...


def last_line(fd: int, size: int | None = None) -> bytes | None:
    """The last line of the file open at ``fd`` (without reading the whole file), or None;
    with ``size``, of its first ``size`` bytes.

    A final line without its newline (a torn write) is returned as it is.
    """
    if size is None:
        size = os.fstat(fd).st_size
    if size == 0:
        return None
    end = size
    tail = b""
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        tail = chunk + tail
        body = tail[:-1] if tail.endswith(b"\n") else tail
        cut = body.rfind(b"\n")
        if cut >= 0:
            return body[cut + 1:]
        end = start
    return tail[:-1] if tail.endswith(b"\n") else tail


_RESUME_LINES: Final = 64
"""How many lines back from the end a restart looks for the last whole record."""


def _seq_of(line: bytes) -> int | None:
    """The ``seq`` of a record line, or None if the line is not a whole record."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    seq = record.get("seq") if isinstance(record, dict) else None
    return seq if isinstance(seq, int) else None


class ChainedLog:
    """Appends chained JSON lines to ``path`` (``-``: standard output, no rotation)."""

    def __init__(
        self,
        path: str,
        *,
        fsync: FsyncPolicy = "interval",
        fsync_interval: float = 1.0,
        rotate_size: int | None = None,
        rotate_interval: float | None = None,
        signer: Signer | None = None,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
        copies: Sequence[Copy] = (),
        clock: Callable[[], float] = time.time,
        on_copy_error: Callable[[Exception], None] | None = None,
        sync_in_background: SyncRunner | None = None,
    ) -> None:
        self.path = path
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.rotate_size = rotate_size
        self.rotate_interval = rotate_interval
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.copies = tuple(copies)
        self.clock = clock
        self._on_copy_error = on_copy_error
        self.sync_in_background = sync_in_background
        self._syncing = False
        self._sync_error: BaseException | None = None
        self.seq = 0
        self.prev: str | None = None
        self._torn = False
        self._dirty = False
        self._last_sync = clock()
        self._since_checkpoint = 0
        self._last_checkpoint = clock()
        self._fd = -1
        self._held: list[tuple[bytes, int, str | None, bool]] = []
        """Chained lines not yet written: (line, seq, prev before it, checkpoint?)."""
        self._per_turn = False
        self._followed = False
        self._lost = False
        """Whether a write failed since the last ``end_turn`` (held records were dropped)."""
        self._size = 0
        self._is_file = False
        self._opened_at = clock()
        self._fd = self._open()
        self._resume()

    @property
    def per_turn(self) -> bool:
        """Whether the caller calls ``end_turn`` at the end of each reactor turn.

        Then the file is checked for deletion (``_follow``, an ``fstat``) once
        per turn, before its first write, instead of before every record.
        """
        return self._per_turn

    @per_turn.setter
    def per_turn(self, value: bool) -> None:
        self._per_turn = value
        self._followed = False

    # -- files -------------------------------------------------------------

    @property
    def regular(self) -> bool:
        """Whether the log is a named file (not standard output): reopen and rotation apply."""
        return self.path != "-"

    def _open(self) -> int:
        if not self.regular:
            self._is_file = False
            return sys.stdout.fileno()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, FILE_MODE)
        info = os.fstat(fd)
        self._size = info.st_size
        self._is_file = stat.S_ISREG(info.st_mode)
        self._opened_at = self.clock()
        return fd

    def _follow(self) -> None:
        """Reopen if our file was deleted (its link count is zero).

        Records written to a deleted file reach no reader, so they are not
        "written" in any useful sense: a new file is created at ``path``, and
        if that is impossible (a read-only or replaced directory) the error
        fails the request closed.  A *renamed* file (logrotate) is still
        followed until ``reopen``, as logrotate's ``postrotate`` expects.
        """
        if self._is_file and os.fstat(self._fd).st_nlink == 0:
            self.reopen()

    def _tail(self) -> tuple[bytes | None, bool]:
        """The file's last line, and whether the file ends with a newline."""
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            line = last_line(fd)
            size = os.fstat(fd).st_size
            ends_clean = size == 0 or os.pread(fd, 1, size - 1) == b"\n"
        finally:
            os.close(fd)
        return line, ends_clean

    def _resume(self) -> None:
        """Continue the chain of a file that already has records (a restart)."""
        if not self._is_file or self.prev is not None:
            return
        line, ends_clean = self._tail()
        if line is None:
            return
        self.prev = line_hash(line)
        self._torn = not ends_clean
        seq = _seq_of(line)
        self.seq = seq if seq is not None else self._last_seq()

    def _last_seq(self) -> int:
        """The seq of the file's last whole record (0 if none), for a file whose
        last line is torn: the next record's seq follows it (a write cut short
        keeps no seq, as while running, and the verifier checks the chain through
        its bytes)."""
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            end = os.fstat(fd).st_size
            for _ in range(_RESUME_LINES):
                line = last_line(fd, end)
                if line is None:
                    return 0
                seq = _seq_of(line)
                if seq is not None:
                    return seq
                ends_with_newline = os.pread(fd, 1, end - 1) == b"\n"
                end -= len(line) + (1 if ends_with_newline else 0)
        finally:
            os.close(fd)
        return 0

    def reopen(self) -> None:
        """Write to whatever file is now at ``path`` (after logrotate moved ours).

        The new file is opened before the old descriptor is closed, so a
        failure leaves the writer on the old file rather than on none.  The
        chain carries on from the last record written.
        """
        if not self.regular:
            return
        old_size, old_opened = self._size, self._opened_at
        try:
            fd = self._open()
        except OSError:
            self._size, self._opened_at = old_size, old_opened
            raise
        self._sync_quietly(self._fd)
        old, self._fd = self._fd, fd
        os.close(old)
        self._torn = False
        if self._size and self._is_file:
            # Someone else's file (or ours, restored): chain on from its end
            # only if it holds more than what we wrote; else keep our head.
            line, _ = self._tail()
            if line is not None and line_hash(line) != self.prev:
                self.prev = None
                self._resume()

    def close(self) -> None:
        """Seal (when keyed), flush to disk and release the file."""
        if self._fd < 0:
            return
        try:
            with contextlib.suppress(OSError):
                self.flush()
            if self.signer is not None and self._since_checkpoint:
                self.checkpoint()
            if self.fsync != "never":
                self._sync_quietly(self._fd)
        finally:
            if self.regular:
                os.close(self._fd)
            self._fd = -1

    # -- writing -----------------------------------------------------------

    def append(self, body: dict[str, Any] | str, *, hold: bool = False) -> None:
        """Chain, encode and append one record; raise if it is not fully written.

        ``body`` is the record's members, as a mapping or already encoded as
        ASCII text (``encode_record``'s output without its braces and newline,
        see ``audit.schema.encode_plain``); the chain members lead either way.

        With ``hold``, the record is chained now but written with the next
        record that is not held, or by ``flush`` (the service flushes at the
        end of each reactor turn).  Only records that nothing waits on are
        held (an exchange's ``ResponseComplete``): a held record is not in
        the kernel when this returns, and a record that must be (the
        decision, before the request is forwarded) takes the held ones with
        it in its one ``write(2)``.
        """
        if self._sync_error is not None:
            self._raise_sync_error()
        if not (hold or self._followed):
            self._follow()
            self._followed = self._per_turn
        if (self.rotate_size is not None or self.rotate_interval is not None) \
                and self._size and self._rotation_due(0):
            self.rotate()
        self._append(body, hold=hold)
        self._since_checkpoint += 1
        if self.signer is not None and (
            self._since_checkpoint >= self.checkpoint_every
            or self.clock() - self._last_checkpoint >= self.checkpoint_interval
        ):
            self.checkpoint()

    def flush(self) -> None:
        """Write the held records now; raise if they cannot all be written."""
        if self._held:
            if not self._followed and self._is_file and os.fstat(self._fd).st_nlink == 0:
                self.reopen()  # ``_follow``, inline: this runs once per reactor turn
            self._write_held()

    def end_turn(self) -> None:
        """The reactor turn is over: write the held records (see ``per_turn``).

        Raises if any record held since the last ``end_turn`` is not in the
        file: this write failed, or an earlier one that took held records
        along did (callers waiting for those records must not go on).

        Under ``per_turn`` the deletion check covers a turn, not a record: a
        file deleted while the turn runs is noticed by the next turn's first
        write (as a deletion between the check and the ``write(2)`` always was).
        """
        try:
            self.flush()
        finally:
            self._followed = False
            lost, self._lost = self._lost, False
        if lost:
            raise OSError(f"audit log {self.path}: records of this turn could not be written")

    def _append(
        self, body: dict[str, Any] | str, checkpoint: bool = False, hold: bool = False
    ) -> None:
        if self._fd < 0:
            raise OSError(f"audit log {self.path} is closed")
        seq = self.seq + 1
        prev = self.prev
        if type(body) is str:
            # The same bytes encode_record gives for the merged mapping.
            record_bytes = (f'{_CHAIN_LEAD}{seq},"prev":"{prev}",{body}}}' if prev is not None
                            else f'{_CHAIN_LEAD}{seq},"prev":null,{body}}}').encode("ascii")
            # line_hash of the line, without copying it to strip its newline.
            digest = _hash_of(record_bytes)
            line = record_bytes + b"\n"
        else:
            assert isinstance(body, dict)
            record = {"v": SCHEMA_VERSION, "seq": seq, "prev": prev, **body}
            line = encode_record(record)
            digest = line_hash(line)
        self._held.append((line, seq, prev, checkpoint))
        self.seq = seq
        self.prev = digest
        if not hold:
            self._write_held()

    def _write_held(self) -> None:
        """Write every held line in one ``write(2)``; on failure, rewind the chain.

        After a failure the chain state is that of the last line really in
        the file, so the next record links to it: nothing written is lost
        from the chain, and what was not written is not claimed.
        """
        held, self._held = self._held, []
        if not held:
            return
        lead = b"\n" if self._torn else b""
        data = lead + (held[0][0] if len(held) == 1 else b"".join([entry[0] for entry in held]))
        try:
            written = os.write(self._fd, data)
        except OSError:
            self.seq, self.prev = held[0][1] - 1, held[0][2]
            self._lost = True
            raise
        if written != len(data):
            self._lost = True
            self._short_write(held, lead, data, written)
        self._torn = False
        self._size += written
        self._dirty = True
        if self.fsync == "always":
            self.sync()
        elif self.fsync == "interval" and self.clock() - self._last_sync >= self.fsync_interval:
            self._sync_interval()
        if self.copies:
            self._copy(held)

    def _short_write(
        self, held: list[tuple[bytes, int, str | None, bool]], lead: bytes, data: bytes,
        written: int,
    ) -> None:
        """A short write on a regular file means a full disk.

        The torn bytes are now the file's last line: chain to them, after a
        newline, so the damage is visible to verify rather than merged into
        the next record.  Lines written whole before them stay in the chain.
        """
        self._size += written
        offset = len(lead)
        for i, (line, seq, prev, _) in enumerate(held):
            if written < offset + len(line):
                if self.copies:
                    self._copy(held[:i])
                if written <= offset:
                    # Nothing of this line reached the file.
                    self._torn = self._torn if i == 0 and written < len(lead) else False
                    self.seq, self.prev = seq - 1, prev
                else:
                    self._torn = True
                    self.seq, self.prev = seq - 1, line_hash(data[offset:written])
                break
            offset += len(line)
        raise OSError(f"audit log {self.path}: short write ({written} of {len(data)} bytes)")

    def _copy(self, held: list[tuple[bytes, int, str | None, bool]]) -> None:
        for line, _, _, checkpoint in held:
            for copy in self.copies:
                try:
                    copy.send(line, checkpoint)
                except Exception as e:  # a copy is best effort; the file is the record
                    if self._on_copy_error is not None:
                        self._on_copy_error(e)

    def sync(self) -> None:
        """fsync the file (regular files only); raise if the disk refuses."""
        if self._is_file and self._fd >= 0 and self._dirty:
            os.fsync(self._fd)
        self._dirty = False
        self._last_sync = self.clock()

    def _sync_interval(self) -> None:
        """The periodic fsync: in a worker thread when there is one, else here."""
        if self.sync_in_background is None:
            self.sync()
            return
        if self._syncing or not self._dirty or not self._is_file or self._fd < 0:
            return
        # A descriptor of its own: the log may rotate or close meanwhile.
        fd = os.dup(self._fd)
        self._dirty = False
        self._last_sync = self.clock()
        self._syncing = True

        def job() -> None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        self.sync_in_background(job, self._synced)

    def _synced(self, error: BaseException | None) -> None:
        self._syncing = False
        if error is not None:
            self._dirty = True
            self._sync_error = error

    def _raise_sync_error(self) -> None:
        if self._sync_error is not None:
            error, self._sync_error = self._sync_error, None
            raise OSError(f"audit log {self.path}: fsync failed: {error}") from error

    def _sync_quietly(self, fd: int) -> None:
        if self._is_file and fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(fd)

    def checkpoint(self) -> None:
        """Append a signed checkpoint sealing every record so far."""
        if self.signer is None:
            return
        when = iso_time(self.clock())
        seq = self.seq + 1
        signature = self.signer.sign(checkpoint_message(seq, self.prev, when))
        self._append({
            "id": f"checkpoint-{seq}",
            "record_id": f"checkpoint-{seq}/{CHECKPOINT_STAGE}",
            "stage": CHECKPOINT_STAGE,
            "time": when,
            "checkpoint": {"alg": self.signer.alg, "key": self.signer.key_id, "sig": signature},
        }, checkpoint=True)
        self._since_checkpoint = 0
        self._last_checkpoint = self.clock()

    def tick(self) -> None:
        """Periodic upkeep: held records, fsync under ``interval``, checkpoints, rotation."""
        if self._fd < 0:
            return
        self.flush()
        if self.fsync == "interval" and self._dirty:
            self._sync_interval()
        if (self.signer is not None and self._since_checkpoint
                and self.clock() - self._last_checkpoint >= self.checkpoint_interval):
            self.checkpoint()
        if self._size and self._rotation_due(0):
            self.rotate()

    # -- rotation ----------------------------------------------------------

    def _rotation_due(self, incoming: int) -> bool:
        if not self._is_file or self._size == 0:
            return False
        if self.rotate_size is not None and self._size + incoming >= self.rotate_size:
            return True
        return (self.rotate_interval is not None
                and self.clock() - self._opened_at >= self.rotate_interval)

    def rotated_name(self) -> str:
        """Where the current file goes on rotation: ``PATH.YYYYmmddTHHMMSSZ[.N]``."""
        stamp = dt.datetime.fromtimestamp(self.clock(), dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"{self.path}.{stamp}"
        n = 0
        while os.path.lexists(name if n == 0 else f"{name}.{n}"):
            n += 1
        return name if n == 0 else f"{name}.{n}"

    def rotate(self) -> str | None:
        """Seal and move the current file aside, start a new one; return the old name.

        The new file's first record chains to the old file's last, so
        ``dockgate audit verify`` can check the files as one chain.
        """
        if not self._is_file:
            return None
        if self.signer is not None and self._since_checkpoint:
            self.checkpoint()
        self._sync_quietly(self._fd)
        target = self.rotated_name()
        os.rename(self.path, target)
        try:
            fd = self._open()
        except OSError:
            # Put the file back so the writer never writes to a moved file unknowingly.
            os.rename(target, self.path)
            raise
        old, self._fd = self._fd, fd
        os.close(old)
        _sync_directory(os.path.dirname(os.path.abspath(self.path)))
        return target


def _sync_directory(path: str) -> None:
    """Make a rename durable (best effort: some filesystems refuse directory fsync)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


"""Session recordings: the bytes of a hijacked exchange, both ways, with their timing.

File format ``dgrec/2`` (one file per session, named by the request id):

* a header line: ``DGREC2 `` then a JSON object (request id, start time,
  endpoint, whether a TTY was asked for, the console size) and ``\\n``;
* then one frame per spliced chunk: a 13-byte big-endian head, kind
  (``i`` from the client, ``o`` from the daemon, ``r`` a terminal resize),
  microseconds since the session started (u64), length (u32), then the
  chunk's bytes unchanged (for ``r``: ``COLSxROWS`` in ASCII).

``dgrec/1`` (header ``DGREC1 ``) is the same without ``r`` frames, and is
still read.  Resizes are separate API calls (``/containers/{id}/resize``,
``/exec/{id}/resize``) that the audit sink applies to the session they name,
so a replay knows the terminal's size when output was written for it.

Binary frames, not JSON: session bytes are arbitrary (a ``cat`` of a binary,
multiplexed stdout/stderr), and asciicast's UTF-8 strings cannot hold them
losslessly (the asciicast v2 export is therefore lossy by design).  Writing
is buffered and never fsynced per chunk: the splice must not wait for the
disk, and the audit record at the end of the session carries the file's
SHA-256 so a recording altered afterwards is detected.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

__all__ = [
    "FORMAT",
    "Frame",
    "Recording",
    "SessionWriter",
    "TerminalFilter",
    "asciicast",
    "demux",
    "read_recording",
    "terminal_output",
    "terminal_size",
]

FORMAT = "dgrec/2"
MAGIC = b"DGREC2 "
_READABLE = (b"DGREC1 ", MAGIC)
_KINDS = (b"i", b"o", b"r")
_HEAD = struct.Struct(">cQI")
_BUFFER = 256 * 1024


class SessionWriter:
    """Appends frames to one recording; cheap per chunk (a buffered write and a hash update)."""

    def __init__(self, path: str, header: dict[str, Any]) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o640)
        self.path = path
        self.header = header
        self._file: IO[bytes] = os.fdopen(fd, "wb", buffering=_BUFFER)
        self._hash = hashlib.sha256()
        self._start = time.monotonic()
        self.chunks = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self._write(MAGIC + json.dumps(header, ensure_ascii=True, sort_keys=True).encode() + b"\n")

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)

    def chunk(self, direction: str, data: bytes) -> None:
        """Record one chunk spliced in ``direction`` (``in`` or ``out``) now."""
        micros = int((time.monotonic() - self._start) * 1_000_000)
        tag = b"i" if direction == "in" else b"o"
        self._write(_HEAD.pack(tag, micros, len(data)))
        self._write(data)
        self.chunks += 1
        if tag == b"i":
            self.bytes_in += len(data)
        else:
            self.bytes_out += len(data)

    def resize(self, cols: int, rows: int) -> None:
        """Record that the session's terminal now has ``cols`` x ``rows`` characters."""
        micros = int((time.monotonic() - self._start) * 1_000_000)
        size = b"%dx%d" % (cols, rows)
        self._write(_HEAD.pack(b"r", micros, len(size)))
        self._write(size)

    def close(self) -> dict[str, Any]:
        """Flush and close; return what the audit record says about the recording."""
        if not self._file.closed:
            self._file.close()
        return {
            "file": self.path,
            "format": FORMAT,
            "sha256": self._hash.hexdigest(),
            "chunks": self.chunks,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }

    def discard(self) -> None:
        """Close and remove a recording of an exchange that never became a session."""
        if not self._file.closed:
            self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


@dataclass(frozen=True, slots=True)
class Frame:
    """One recorded frame: ``i``/``o`` (bytes in, out) or ``r`` (resize), seconds since start."""

    direction: str
    at: float
    data: bytes


@dataclass(frozen=True, slots=True)
class Recording:
    """A parsed recording; ``complete`` is False when the file ends inside a frame."""

    header: dict[str, Any]
    frames: tuple[Frame, ...]
    complete: bool

    def output(self) -> bytes:
        """Everything the daemon sent, concatenated."""
        return b"".join(f.data for f in self.frames if f.direction == "o")


def read_recording(data: bytes) -> Recording:
    """Parse a ``dgrec/2`` (or ``dgrec/1``) file; ValueError if it is not one."""
    if not data.startswith(_READABLE):
        raise ValueError("not a dockgate session recording (no DGREC1 header)")
    end = data.find(b"\n")
    if end < 0:
        raise ValueError("session recording header is truncated")
    header = json.loads(data[len(MAGIC):end])
    if not isinstance(header, dict):
        raise ValueError("session recording header is not an object")
    frames: list[Frame] = []
    pos = end + 1
    complete = True
    while pos < len(data):
        if pos + _HEAD.size > len(data):
            complete = False
            break
        tag, micros, length = _HEAD.unpack_from(data, pos)
        pos += _HEAD.size
        if tag not in _KINDS or pos + length > len(data):
            complete = False
            break
        frames.append(Frame(tag.decode(), micros / 1_000_000, data[pos:pos + length]))
        pos += length
    return Recording(header, tuple(frames), complete)


def demux(stream: bytes) -> list[tuple[int, bytes]] | None:
    """Split a multiplexed attach stream into (stream type, payload); None if it is not one.

    Non-TTY attach and exec streams carry 8-byte headers (type 0-3, three zero
    bytes, big-endian length); TTY streams are raw.  A stream that parses
    exactly into such frames is taken as multiplexed.
    """
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(stream):
        if pos + 8 > len(stream):
            return None
        kind, pad, size = stream[pos], stream[pos + 1:pos + 4], int.from_bytes(
            stream[pos + 4:pos + 8], "big")
        if kind > 3 or pad != b"\0\0\0" or pos + 8 + size > len(stream):
            return None
        out.append((kind, stream[pos + 8:pos + 8 + size]))
        pos += 8 + size
    return out


def _is_tty(recording: Recording) -> bool:
    tty = recording.header.get("tty")
    if isinstance(tty, bool):
        return tty
    output = recording.output()
    return not output or demux(output) is None


def terminal_output(recording: Recording) -> Iterator[tuple[float, bytes]]:
    """What a terminal showed, as (seconds since start, bytes), in order.

    For a multiplexed session the frame headers are removed and stdout and
    stderr interleave as they arrived; a TTY session's output is the bytes
    as they are.
    """
    if _is_tty(recording):
        for frame in recording.frames:
            if frame.direction == "o" and frame.data:
                yield frame.at, frame.data
        return
    pending = b""
    for frame in recording.frames:
        if frame.direction != "o":
            continue
        pending += frame.data
        text = b""
        while len(pending) >= 8:
            size = int.from_bytes(pending[4:8], "big")
            if len(pending) < 8 + size:
                break
            if pending[0] in (1, 2):
                text += pending[8:8 + size]
            pending = pending[8 + size:]
        if text:
            yield frame.at, text


def terminal_size(data: bytes) -> tuple[int, int] | None:
    """(columns, rows) from an ``r`` frame's ``COLSxROWS``; None if it is not one."""
    cols, sep, rows = data.partition(b"x")
    if not (sep and cols.isdigit() and rows.isdigit() and 0 < len(cols) <= 5 and
            0 < len(rows) <= 5):
        return None
    size = int(cols), int(rows)
    return size if all(0 < x <= 0xFFFF for x in size) else None


def asciicast(recording: Recording, include_input: bool = False) -> Iterator[str]:
    """The recording as asciicast v2 lines (header, then ``[time, code, text]`` events).

    Bytes are decoded as UTF-8 incrementally (a character split across
    chunks stays whole); undecodable bytes become U+FFFD, which is the loss
    the format imposes.
    """
    resizes = [(f.at, size) for f in recording.frames
               if f.direction == "r" and (size := terminal_size(f.data)) is not None]
    console = recording.header.get("console_size")
    if isinstance(console, list) and len(console) == 2 and all(
            isinstance(x, int) and x > 0 for x in console):
        height, width = console
    elif resizes:
        # Before API 1.42 exec start carries no ConsoleSize: clients size the
        # terminal with a resize right after the session starts.
        (_, (width, height)), resizes = resizes[0], resizes[1:]
    else:
        height, width = 24, 80
    header: dict[str, Any] = {
        "version": 2,
        "width": width,
        "height": height,
        "timestamp": int(recording.header.get("start", 0)),
        "title": f"dockgate session {recording.header.get('request_id', '?')}",
    }
    yield json.dumps(header)
    decoder_out = codecs.getincrementaldecoder("utf-8")("replace")
    decoder_in = codecs.getincrementaldecoder("utf-8")("replace")
    events: list[tuple[float, str, str]] = []
    for at, data in terminal_output(recording):
        events.append((at, "o", decoder_out.decode(data)))
    if include_input:
        for frame in recording.frames:
            if frame.direction == "i":
                events.append((frame.at, "i", decoder_in.decode(frame.data)))
    events.extend((at, "r", f"{cols}x{rows}") for at, (cols, rows) in resizes)
    events.sort(key=lambda e: e[0])
    for at, code, text in events:
        if text:
            yield json.dumps([round(at, 6), code, text])


_CSI_ALLOWED = frozenset("ABCDEFGHJKLMPSTXZdefghlmrsu@`")
"""CSI finals that move the cursor, edit the screen, set modes or colours.  Left out:
the ones that make the terminal answer into the reviewer's input (``n``, ``c``,
``x``), window operations (``t``: title stack, resize, report) and the rest."""
_ESC_ALLOWED = frozenset("78DEM=>")
_ESC_STRING = frozenset("]P_^X")
"""OSC, DCS, APC, PM, SOS: strings up to BEL or ST (title, clipboard, hyperlinks,
terminal queries), never replayed."""
_CSI_LIMIT = 64


class TerminalFilter:
    """Passes what a terminal needs to replay a session, and drops what could act on it.

    A recording is the bytes a container wrote, and replaying them writes them
    to the reviewer's terminal.  Printable text, tab, newline, carriage return,
    backspace, cursor and colour sequences pass; OSC/DCS/APC/PM/SOS strings
    (clipboard writes, window titles, queries), sequences that make the
    terminal answer, other escapes and C0/C1 controls are dropped.  Stateful,
    so a sequence split across frames is handled as a whole; UTF-8 is decoded
    incrementally for the same reason.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._state = "text"
        self._pending = ""
        self.dropped = 0

    def feed(self, data: bytes) -> bytes:
        """The safe part of ``data``, as UTF-8."""
        out: list[str] = []
        for ch in self._decoder.decode(data):
            self._step(ch, out)
        return "".join(out).encode("utf-8")

    def _step(self, ch: str, out: list[str]) -> None:
        state = self._state
        code = ord(ch)
        if state == "text":
            if ch == "\x1b":
                self._state, self._pending = "esc", ch
            elif (code >= 0x20 and not 0x7f <= code <= 0x9f) or ch in "\t\n\r\b":
                out.append(ch)
            else:
                self.dropped += 1
        elif state == "esc":
            self._escape(ch, out)
        elif state == "csi":
            self._pending += ch
            if 0x40 <= code <= 0x7e:
                if ch in _CSI_ALLOWED and not any(0x20 <= ord(c) <= 0x2f for c in self._pending):
                    out.append(self._pending)
                else:
                    self.dropped += 1
                self._state = "text"
            elif not 0x20 <= code <= 0x3f or len(self._pending) > _CSI_LIMIT:
                self.dropped += 1
                self._state = "text"
        elif state == "charset":
            out.append(self._pending + ch)
            self._state = "text"
        elif state == "string":
            if ch == "\x07":
                self._state = "text"
            elif ch == "\x1b":
                self._state = "string-esc"
        else:  # string-esc: ESC \ ends the string
            self._state = "text" if ch == "\\" else "string"

    def _escape(self, ch: str, out: list[str]) -> None:
        self._pending += ch
        if ch == "[":
            self._state = "csi"
        elif ch in "()":
            self._state = "charset"
        elif ch in _ESC_STRING:
            self.dropped += 1
            self._state = "string"
        else:
            if ch in _ESC_ALLOWED:
                out.append(self._pending)
            else:
                self.dropped += 1
            self._state = "text"

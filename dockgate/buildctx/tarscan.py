"""Reading a classic build context (a tar, maybe compressed) as dockerd will unpack it.

The classic builder (``POST /build`` without ``version=2``) receives the
context as the request body, unpacks it completely (moby ``archive.Untar``
via ``DecompressStream``) and only then reads the Dockerfile out of the
unpacked tree.  dockgate must judge the very Dockerfile the daemon will read,
so this scanner reads the stream with the daemon's rules, incrementally and
without holding the context:

* compression is chosen by magic bytes like moby's ``DetectCompression``:
  gzip (``1f 8b 08``), bzip2 (``BZh``), xz (``fd 37 7a 58 5a 00``), else a
  plain tar.  zstd (28.x only) and its skippable frames are refused: Python
  cannot read them, and a format one side reads and the other does not is a
  way round the check.  Concatenated gzip, bzip2 and xz streams are read on,
  as Go's readers and the ``xz``/``unpigz`` tools do;
* tar headers are read like Go's ``archive/tar``: checksum (signed or
  unsigned), octal or base-256 numbers, the ustar prefix, PAX ``path``,
  ``linkpath`` and ``size`` records, GNU long names (``L``/``K``); global PAX
  headers are ignored (moby skips them); sparse files are refused; the archive
  ends at a zero block or at the end of the stream, and nothing after that is
  read by the daemon either.

The scanner reports each entry (cleaned name, type, link target) and the
content of the entries it was asked to keep, bounded by ``keep_limit``.  It
never decides anything: ``dockgate.buildctx.context`` does.
"""

from __future__ import annotations

import bz2
import lzma
import posixpath
import zlib
from dataclasses import dataclass
from typing import Any

BLOCK = 512


class ContextError(ValueError):
    """The context cannot be read the way the daemon would read it (refuse the build)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One tar entry as the daemon will unpack it.

    Attributes:
        name: the cleaned path relative to the context root (no leading ``/``
            or ``./``, no trailing ``/``); "" for the root itself.
        kind: ``file``, ``dir``, ``symlink``, ``hardlink`` or ``other``
            (devices, fifos: the daemon creates them, they hold no content).
        link: the link target for symlinks and hard links.
        content: the entry's bytes when they were asked for, else None.
    """

    name: str
    kind: str
    link: str = ""
    content: bytes | None = None


def clean_name(raw: str) -> str:
    """A tar member name as a path relative to the root, like moby's unpacking.

    moby cleans the name (Go ``filepath.Clean``), joins it under the root (so
    ``/etc/x`` lands at ``etc/x``) and refuses one that still leaves the root.

    Raises:
        ContextError: the name leaves the root (``..``); the daemon refuses it
            too (a "breakout"), and dockgate refuses before reading further.
    """
    name = posixpath.normpath(raw) if raw else "."
    if name.startswith("/"):
        name = name.lstrip("/") or "."
    if name == ".." or name.startswith("../"):
        raise ContextError(f"tar entry {raw!r} leaves the context")
    return "" if name == "." else name


class _Decompressor:
    """Incremental decompression of concatenated streams of one format."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._d: Any = self._new()
        self._fresh = True

    def _new(self) -> Any:
        if self.kind == "gzip":
            return zlib.decompressobj(wbits=31)
        if self.kind == "bzip2":
            return bz2.BZ2Decompressor()
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        while data:
            try:
                out += self._d.decompress(data)
            except (zlib.error, OSError, EOFError, lzma.LZMAError) as e:
                raise ContextError(f"the {self.kind} context is corrupt: {e}") from None
            self._fresh = False
            if not self._eof():
                return bytes(out)
            data = self._d.unused_data
            self._d = self._new()
            self._fresh = True
        return bytes(out)

    def _eof(self) -> bool:
        return bool(self._d.eof)


def _magic(head: bytes) -> str | None:
    """The compression moby's ``DetectCompression`` sees, None when undecidable yet."""
    if head.startswith(b"\x1f\x8b\x08"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd") or (
        len(head) >= 4 and (int.from_bytes(head[:4], "little") & 0xFFFFFFF0) == 0x184D2A50
    ):
        raise ContextError("zstd-compressed contexts are not supported by dockgate")
    if len(head) < 6 and any(
        m.startswith(head) for m in (b"\x1f\x8b\x08", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")
    ):
        return None
    return "tar"


def _number(field: bytes, what: str) -> int:
    """A numeric header field as Go reads it: base-256 or octal (spaces/NULs trimmed)."""
    if field and field[0] & 0x80:
        if field[0] & 0x40:
            raise ContextError(f"tar header has a negative {what}")
        value = field[0] & 0x7F
        for b in field[1:]:
            value = (value << 8) | b
        return value
    text = field.replace(b"\x00", b" ").strip(b" ")
    if not text:
        return 0
    try:
        return int(text.decode("ascii"), 8)
    except ValueError:
        raise ContextError(f"tar header has an invalid {what}") from None


def _string(field: bytes) -> str:
    end = field.find(b"\x00")
    raw = field if end < 0 else field[:end]
    return raw.decode("utf-8", "surrogateescape")


def _checksum_ok(block: bytes) -> bool:
    stored = _number(block[148:156], "checksum")
    blanked = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(blanked)
    signed = sum(b - 256 if b > 127 else b for b in blanked)
    return stored in (unsigned, signed)


def _pax_records(data: bytes) -> dict[str, str]:
    """PAX extended header records (``"%d %s=%s\\n"``), strictly."""
    out: dict[str, str] = {}
    rest = data
    while rest:
        if rest.strip(b"\x00") == b"":
            break
        sp = rest.find(b" ")
        if sp <= 0:
            raise ContextError("tar PAX header is malformed")
        try:
            n = int(rest[:sp].decode("ascii"), 10)
        except ValueError:
            raise ContextError("tar PAX header is malformed") from None
        if n <= sp + 1 or n > len(rest) or rest[n - 1 : n] != b"\n":
            raise ContextError("tar PAX header is malformed")
        record = rest[sp + 1 : n - 1]
        key, eq, value = record.partition(b"=")
        if not eq:
            raise ContextError("tar PAX header is malformed")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        rest = rest[n:]
    return out


_KINDS = {b"0": "file", b"\x00": "file", b"5": "dir", b"2": "symlink",
          b"1": "hardlink", b"3": "other", b"4": "other", b"6": "other", b"7": "other"}


class TarScanner:
    """Feed the raw body with ``feed``; read finished entries from ``entries``.

    Args:
        keep: predicate on a cleaned name: keep that entry's content.
        keep_limit: most bytes of content kept per entry (ContextError above).
    """

    def __init__(self, keep: Any, keep_limit: int) -> None:
        self._keep = keep
        self._keep_limit = keep_limit
        self._head = b""
        self._dec: _Decompressor | None = None
        self._plain = False
        self._buf = bytearray()
        self.entries: list[Entry] = []
        self.ended = False
        # state of the entry being read
        self._need = 0  # content bytes still to read of the current member
        self._pad = 0
        self._member: tuple[str, Any] | None = None  # (purpose, info)
        self._content: bytearray | None = None
        self._pax: dict[str, str] = {}
        self._long_name: str | None = None
        self._long_link: str | None = None
        self._zero_seen = False

    def feed(self, data: bytes) -> None:
        """Read ``data`` (the next bytes of the raw body)."""
        if self.ended or not data:
            return
        if self._dec is None and not self._plain:
            self._head += data
            kind = _magic(self._head[:6])
            if kind is None:
                return
            data, self._head = self._head, b""
            if kind == "tar":
                self._plain = True
            else:
                self._dec = _Decompressor(kind)
        if self._dec is not None:
            data = self._dec.feed(data)
        self._buf += data
        self._parse()

    def finish(self) -> None:
        """The body ended: whatever the tar holds now is all there is.

        Raises:
            ContextError: the stream ends inside an entry or a compressed stream.
        """
        if self.ended:
            return
        if self._head:
            self._plain = True
            self._buf += self._head
            self._head = b""
            self._parse()
        if self._done():
            return
        if self._buf or self._need or self._pad or self._member is not None:
            raise ContextError("the build context ends inside a tar entry")
        if self._dec is not None and not self._dec._fresh:
            raise ContextError(f"the build context ends inside its {self._dec.kind} stream")
        self.ended = True

    def _done(self) -> bool:
        return self.ended

    def _parse(self) -> None:
        buf = self._buf
        pos = 0
        while not self.ended:
            if self._member is not None:
                take = min(self._need, len(buf) - pos)
                if self._content is not None and take:
                    self._content += buf[pos : pos + take]
                pos += take
                self._need -= take
                if self._need:
                    break
                skip = min(self._pad, len(buf) - pos)
                pos += skip
                self._pad -= skip
                if self._pad:
                    break
                self._end_member()
                continue
            if len(buf) - pos < BLOCK:
                break
            block = bytes(buf[pos : pos + BLOCK])
            pos += BLOCK
            if block == bytes(BLOCK):
                # Go's reader: one zero block, then a second (or the end of
                # the stream) ends the archive; anything else is an error.
                if self._zero_seen:
                    self.ended = True
                    break
                self._zero_seen = True
                continue
            if self._zero_seen:
                raise ContextError("tar has a zero block followed by data")
            self._header(block)
        del buf[:pos]

    def _header(self, block: bytes) -> None:
        if not _checksum_ok(block):
            raise ContextError("tar header checksum does not match")
        magic = block[257:265]
        name = _string(block[0:100])
        if magic == b"ustar\x0000":
            prefix = _string(block[345:500])
            if prefix:
                name = prefix + "/" + name
        elif magic not in (b"ustar  \x00", bytes(8)):
            raise ContextError("tar header has an unknown format")
        typeflag = block[156:157]
        size = _number(block[124:136], "size")
        link = _string(block[157:257])
        if typeflag in (b"x", b"g", b"L", b"K"):
            if size > 1 << 20:
                raise ContextError("tar extended header is too large")
            self._begin_member(("meta", typeflag), size, keep=True)
            return
        if typeflag == b"S" or any(k.startswith("GNU.sparse") for k in self._pax):
            raise ContextError("sparse tar entries are not supported by dockgate")
        kind = _KINDS.get(typeflag)
        if kind is None:
            raise ContextError(f"tar entry type {typeflag!r} is not supported by dockgate")
        if self._long_name is not None:
            name = self._long_name
        if self._long_link is not None:
            link = self._long_link
        if "path" in self._pax:
            name = self._pax["path"]
        if "linkpath" in self._pax:
            link = self._pax["linkpath"]
        if "size" in self._pax:
            try:
                size = int(self._pax["size"], 10)
            except ValueError:
                raise ContextError("tar PAX size is invalid") from None
        self._pax, self._long_name, self._long_link = {}, None, None
        if kind != "file" and typeflag != b"7":
            size = 0  # Go's reader: header-only types carry no content
        cleaned = clean_name(name)
        keep = kind == "file" and bool(self._keep(cleaned))
        self._begin_member(("entry", (cleaned, kind, link)), size, keep=keep)

    def _begin_member(self, member: tuple[str, Any], size: int, keep: bool) -> None:
        if keep and size > self._keep_limit:
            raise ContextError(f"tar entry is larger than {self._keep_limit} bytes")
        self._member = member
        self._need = size
        self._pad = (-size) % BLOCK
        self._content = bytearray() if keep else None

    def _end_member(self) -> None:
        assert self._member is not None
        purpose, info = self._member
        content = bytes(self._content) if self._content is not None else None
        self._member, self._content = None, None
        if purpose == "meta":
            data = content or b""
            if info == b"x":
                self._pax = _pax_records(data)
            elif info == b"L":
                self._long_name = _string(data)
            elif info == b"K":
                self._long_link = _string(data)
            return  # "g": global headers are ignored by moby
        name, kind, link = info
        self.entries.append(Entry(name, kind, link, content))

"""Chunk-size lines for the HTTP/1.1 readers' property tests, and the grammar they
are judged by.

Both readers (the daemon's responses, the clients' requests) share one chunk
framing step (``http1.client.Framed``), which reads the usual line byte by byte
and hands every other to a regular expression; the tests check the two agree
with RFC 9112's grammar as dockgate accepts it.
"""

from __future__ import annotations

import re
from typing import Final

from hypothesis import strategies as st

GRAMMAR: Final = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*|;[^\r\n]*)")
"""A chunk-size line as dockgate accepts it: 1 to 16 hex digits, then blanks or
a ``;`` extension, no blank between the digits and ``;`` (Go's reading; the
reference the readers must agree with)."""

_TAIL: Final = b"0aF;; \tgG\r="
"""What may follow a line's digits: more digits, blanks, extensions, stray bytes."""


@st.composite
def size_lines(draw: st.DrawFn) -> bytes:
    """A chunk-size line without its CRLF: leading zeros (up to 18, past the
    16-digit limit), a size in either case, and a short tail from ``_TAIL``."""
    zeros = draw(st.integers(0, 18))
    size = draw(st.integers(0, 40))
    digits = (draw(st.sampled_from(["%x", "%X"])) % size).encode()
    tail = bytes(_TAIL[x % len(_TAIL)] for x in draw(st.binary(max_size=3)))
    return b"0" * zeros + digits + tail


def accepted_size(line: bytes) -> int | None:
    """The size ``line`` gives under ``GRAMMAR``, or None where the grammar refuses it."""
    match = GRAMMAR.fullmatch(line)
    return int(match.group(1), 16) if match is not None else None

"""Strict JSON decoding and canonical re-serialisation, with Go's
``encoding/json`` reading rules in mind.

The daemon decodes request bodies with Go's ``encoding/json`` into structs.
Differences between how Go and Python read the same bytes are where a policy
could be bypassed, so this module refuses every input on which they could
disagree:

* invalid UTF-8 and lone surrogate escapes (Go silently turns both into
  U+FFFD, Python keeps a surrogate);
* ``NaN``/``Infinity`` (not JSON; Python accepts them);
* trailing data after the value (Go's ``json.Decoder`` stops after the first
  value and ignores the rest);
* a byte-order mark;
* duplicate keys (Go's last-wins, but case-insensitively for struct fields,
  see ``canonicalise`` in ``validation``).

Cost is bounded by size and shape: nesting deeper than the interpreter's
recursion limit (about a thousand levels; Docker's bodies nest fewer than
ten) is refused as "nested too deeply", and a value with more than
``MAX_KEYS`` object members is refused (413) as soon as the decoder reaches
the member past the limit: every member costs a ``Pairs`` entry here and a
schema lookup later, several times what the same bytes cost as a string.

Objects are decoded as ``Pairs`` (a list of key/value tuples) so that no
duplicate is lost before the schema walker sees it.  ``dumps`` emits the one
canonical serialisation: sorted keys, no whitespace, ASCII only.
"""

from __future__ import annotations

import json
import re
from typing import Any

from dockgate.errors import BadRequest, BodyTooLarge


class Pairs(list[tuple[str, Any]]):
    """A decoded JSON object before its keys are resolved, in document order."""

    __slots__ = ()


MAX_KEYS = 20000
"""Most object members one JSON value may have, over all its objects."""

_members = [0]
"""Members decoded so far by the current ``loads`` (the reactor decodes one at a time)."""


def _pairs_hook(pairs: list[tuple[str, Any]]) -> Pairs:
    _members[0] += len(pairs)
    if _members[0] > MAX_KEYS:
        raise BodyTooLarge(f"JSON value has more than {MAX_KEYS} object members")
    return Pairs(pairs)


def _reject_constant(name: str) -> Any:
    raise BadRequest(f"JSON body contains {name}, which is not JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BadRequest(f"JSON number {text[:20]} is out of range (Go refuses it)")
    return value


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_hook, parse_constant=_reject_constant,
                            parse_float=_parse_float)

_SURROGATE = re.compile("[\ud800-\udfff]")
_WS = " \t\n\r"


def decode_text(data: bytes, what: str = "JSON body") -> str:
    """Bytes to text, refusing invalid UTF-8 and a BOM."""
    if data.startswith(b"\xef\xbb\xbf"):
        raise BadRequest(f"{what} starts with a byte-order mark")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"{what} is not valid UTF-8 (byte {e.start})") from None


def loads(data: bytes | str, what: str = "JSON body") -> Any:
    """Decode exactly one JSON value; objects come back as ``Pairs``."""
    text = decode_text(data, what) if isinstance(data, bytes) else data
    start = len(text) - len(text.lstrip(_WS))
    _members[0] = 0
    try:
        value, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as e:
        raise BadRequest(f"{what} is not valid JSON: {e.msg} at offset {e.pos}") from None
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply") from None
    except ValueError as e:
        # e.g. an integer literal beyond Python's digit limit
        raise BadRequest(f"{what} is not acceptable JSON: {e}") from None
    if text[end:].strip(_WS):
        raise BadRequest(f"{what} has data after the JSON value (offset {end}); the daemon "
                         "would ignore it")
    if "\\u" in text and _has_surrogate(value):
        raise BadRequest(f"{what} contains a lone UTF-16 surrogate escape")
    return value


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, list):
        # Pairs is a list of (key, value) tuples; plain lists hold values.
        return any(_has_surrogate(v) for v in value)
    if isinstance(value, tuple):
        return any(_has_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    return False


def plain(value: Any, what: str = "JSON body") -> Any:
    """Turn ``Pairs`` into dicts, refusing any duplicate key (for schema-less values)."""
    if isinstance(value, Pairs):
        out: dict[str, Any] = {}
        for k, v in value:
            if k in out:
                raise BadRequest(f"{what}: duplicate key {k!r}")
            out[k] = plain(v, what)
        return out
    if isinstance(value, list):
        return [plain(v, what) for v in value]
    return value


def dumps(value: Any) -> bytes:
    """The canonical serialisation: sorted keys, compact, ASCII-safe."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True,
                      allow_nan=False).encode("ascii")


_FOLD = str.maketrans({"\u017f": "s", "\u212a": "k"})


def go_fold(key: str) -> str:
    """The case-folded form Go's ``encoding/json`` compares struct field names in.

    Go folds with Unicode simple folding, under which only U+017F (long s) and
    U+212A (Kelvin sign) fold onto ASCII letters; every other non-ASCII letter
    can never match an ASCII field name.
    """
    if key.isascii():
        return key.lower()
    return key.translate(_FOLD).lower() if _FOLD_CHARS.intersection(key) else key


_FOLD_CHARS = frozenset("\u017f\u212a")

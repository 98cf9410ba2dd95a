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
``MAX_KEYS`` object members is refused (413) before it is decoded at all:
every member costs a ``Pairs`` entry here, a schema lookup and a re-encoding
later, several times what the same bytes cost as a string, so a body of
members is the costliest a client can send per byte.  The count comes from a
scan at C speed (``str.count``, ``str.split``; see ``members``), a fraction of
what decoding costs, so a client sending too many members never gets the
decode it asks for.  (A body over the limit that is also invalid in another
way is therefore refused 413, where the decoder might have met the other fault
first; refused either way.)  Lone surrogate escapes are likewise found in the
text (``_lone_surrogate``), not by walking the decoded value.

Objects are decoded as ``Pairs`` (a list of key/value tuples) so that no
duplicate is lost before the schema walker sees it.  ``dumps`` emits the one
canonical serialisation: sorted keys, no whitespace, ASCII only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from dockgate.errors import BadRequest, BodyTooLarge


class Pairs(list[tuple[str, Any]]):
    """A decoded JSON object before its keys are resolved, in document order."""

    __slots__ = ()


MAX_KEYS = 20000
"""Most object members one JSON value may have, over all its objects.

Real bodies are far below it: a container create with every field set has a
few hundred members, and one with hundreds of labels (compose, Traefik) a
few thousand at most.  The limit is there for cost, not meaning: decoding,
walking and re-encoding cost up to about 0.8 microseconds per member (the
1 MB create of 19990 labels in ``benchmarks/bench_chunks.py`` takes 16 ms),
and without it the 1 MB body cap would allow more than 100000 members
(``{"a":0},`` repeated), about a tenth of a second on the reactor thread.
At 20000 the member-dense worst case is the same order as the largest valid
bodies.  Refusing early costs the same at any limit (``members`` scans the
whole text once), so a lower limit would buy no time and could refuse a real
client.
"""


def members(text: str) -> int:
    """The object members of ``text``, exact when ``text`` is one JSON value.

    Every member has exactly one ``:`` outside string literals, and nothing
    else outside a string has one.  So the string literals' contents are
    dropped and the ``:`` left are counted: escaped backslashes are removed
    first (left to right, as the decoder pairs them; in valid JSON a run of
    backslashes always starts an escape), then escaped quotes, and what lies
    between the remaining quotes, every other piece of ``split('"')``, is
    inside strings.  Text that is not valid JSON may be miscounted, but such
    text is refused anyway: whatever this returns for it, it is never accepted.
    """
    if "\\" in text:
        text = text.replace("\\\\", "").replace('\\"', "")
    return "".join(text.split('"')[::2]).count(":")


def _reject_constant(name: str) -> Any:
    raise BadRequest(f"JSON body contains {name}, which is not JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BadRequest(f"JSON number {text[:20]} is out of range (Go refuses it)")
    return value


_DECODER = json.JSONDecoder(object_pairs_hook=Pairs, parse_constant=_reject_constant,
                            parse_float=_parse_float)

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""A ``\\u`` escape of a UTF-16 surrogate, high (D800-DBFF) or low (DC00-DFFF)."""

_SURROGATE_PAIR = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")
"""A high surrogate escape directly followed by a low one: the decoder joins them."""

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
    # ``count`` is an upper bound (strings can only inflate it) at a
    # fraction of the exact count's cost, which only bodies above it pay.
    if text.count(":") > MAX_KEYS and members(text) > MAX_KEYS:
        raise BodyTooLarge(f"JSON value has more than {MAX_KEYS} object members")
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
    if "\\u" in text and _lone_surrogate(text):
        raise BadRequest(f"{what} contains a lone UTF-16 surrogate escape")
    return value


def _lone_surrogate(text: str) -> bool:
    """Whether valid JSON ``text`` has a surrogate escape the decoder leaves alone.

    Python's decoder joins a high surrogate escape directly followed by a low
    one into one character and keeps every other surrogate escape as a lone
    surrogate (Go would read U+FFFD).  As in ``members``, escaped backslashes
    go first so that every backslash left starts an escape (replaced, not
    removed: ``\\ud83d\\\\\\ude00`` holds two lone surrogates, which must not
    become adjacent); the joined pairs go next (left to right, as the decoder
    reads them); any surrogate escape still there is a lone one.  At C speed:
    walking a large decoded value in Python cost more than decoding it.
    """
    if _SURROGATE_ESCAPE.search(text) is None:
        return False
    text = _SURROGATE_PAIR.sub("", text.replace("\\\\", "__"))
    return _SURROGATE_ESCAPE.search(text) is not None


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
    return _ENCODER.encode(value).encode("ascii")


_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), sort_keys=True,
                            allow_nan=False)
"""``json.dumps`` with these options, without building an encoder per call."""


Spans = dict[str, tuple[int, int]]
"""Where each top-level member (``"key":value``) of a canonical object lies in its bytes."""


def dumps_spans(value: Any) -> tuple[bytes, Spans | None]:
    """``dumps(value)``, and for an object where each top-level member lies in it.

    The same bytes (``dumps`` of an object with sorted keys is its members'
    encodings, sorted by key, joined by commas in braces), at about the same
    cost; the spans let ``reencode`` copy the members a later change left alone.
    """
    if not isinstance(value, dict):
        return dumps(value), None
    keys = sorted(value)
    parts = [dumps(key) + b":" + dumps(value[key]) for key in keys]
    spans: Spans = {}
    at = 1
    for key, part in zip(keys, parts, strict=True):
        spans[key] = (at, at + len(part))
        at += len(part) + 1
    return b"{" + b",".join(parts) + b"}", spans


def reencode(old: dict[str, Any], encoded: bytes, spans: Spans, new: dict[str, Any],
             known: Mapping[str, bytes] | None = None) -> tuple[bytes, Spans]:
    """``dumps(new)`` and its member spans, where ``new`` is ``old`` (canonically
    ``encoded``, members at ``spans``) with some top-level members replaced: a
    member that is still the same object is copied from ``encoded``, one whose
    value's encoding the caller has (``known``: ``dumps(new[key])``, e.g. made by
    ``with_string_member``) is taken from there, the others are encoded.

    Relies on what every admitted body already relies on (its bytes are
    forwarded as they are): a decoded body is never changed in place, only
    copied along the path that changes (``policy.rules``' ``set``).  The spans
    returned let the next change of the new body do the same.
    """
    parts: list[bytes | memoryview] = []
    out: Spans = {}
    at = 1
    view = memoryview(encoded)  # kept members are copied once, by the join
    for key in sorted(new):
        span = spans.get(key)
        part: bytes | memoryview
        if span is not None and key in old and new[key] is old[key]:
            part = view[span[0]:span[1]]
        elif known is not None and key in known:
            part = dumps(key) + b":" + known[key]
        else:
            part = dumps(key) + b":" + dumps(new[key])
        parts.append(part)
        out[key] = (at, at + len(part))
        at += len(part) + 1
    return b"{" + b",".join(parts) + b"}", out


def with_string_member(encoded: bytes, obj: Mapping[str, Any], key: str, value: str
                       ) -> bytes | None:
    """``dumps({**obj, key: value})`` from ``encoded`` (``dumps(obj)``), by inserting
    the one member where it sorts, for an object whose values are all strings and
    which has no ``key`` (a label map getting the owner label); None otherwise.

    Costs a pass over the keys and a search of the bytes (about 1 ms for 20000
    labels) instead of an encoding of all of them (5 ms).  Where it goes is found
    by searching ``encoded`` for the member that follows it, ``,"next":``: with
    every value a string, an unescaped ``"`` is always a string's delimiter and
    a ``,`` outside a string always separates members, so that sequence cannot
    occur inside a key or a value (the ``"`` after a ``,`` that ends a string is
    that string's closing quote, which only ``:``, ``,`` or ``}`` follows).
    """
    if key in obj or not set(map(type, obj.values())) <= {str}:
        return None
    member = dumps(key) + b":" + dumps(value)
    following = min(filter(key.__lt__, obj), default=None)  # the next key, in C
    if following is None:
        return b"{" + member + b"}" if not obj else encoded[:-1] + b"," + member + b"}"
    needle = dumps(following) + b":"
    at = 0 if encoded.startswith(b"{" + needle) else encoded.find(b"," + needle)
    if at < 0:
        return None  # not the encoding of obj: the caller encodes whole
    view = memoryview(encoded)
    return b"".join((view[:at + 1], member, b",", view[at + 1:]))


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


def go_field(doc: Any, name: str) -> Any:
    """The member Go's encoding/json gives the struct field ``name`` (lower case) of an
    already decoded object: keys match case-insensitively and the last one wins (None
    when ``doc`` is not an object or has no such member)."""
    found = None
    if isinstance(doc, dict):
        for key, value in doc.items():
            if str(key).lower() == name:
                found = value
    return found

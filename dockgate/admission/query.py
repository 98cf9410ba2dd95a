"""Query-string parsing and canonicalisation with the daemon's reading rules.

The daemon parses the query with Go's ``url.ParseQuery`` (via ``r.ParseForm``):
pairs split on ``&`` only (a ``;`` is an error since Go 1.17), empty pieces are
skipped, ``+`` means a space, a key without ``=`` has the value "", and a
malformed escape is an error (moby's ``httputils.ParseForm`` answers 400).
Handlers then read a scalar with ``r.Form.Get`` (the *first* value) while a
Python reader might take the last, so a repeated scalar parameter is refused;
only parameters the API defines as arrays may repeat, and the few a real
client repeats though the daemon reads one value (spec ``"repeat": "first"``:
build's ``dockerfile`` from docker-py) keep the first value alone, so the
forwarded query holds exactly what was checked and what the daemon reads.

Percent-escaped bytes in a value are data: a value may hold ``%0A`` (docker-py
sends a Dockerfile's text in one), decoded here as the daemon decodes it and
re-escaped when forwarded.  Raw control characters in the target itself are
refused earlier (``target.parse_target``), as are control characters in a
parameter name (no parameter has one).

Values are canonicalised so that policies compare one spelling:

* booleans: moby's ``httputils.BoolValue`` reads ``"", 0, no, false, none``
  (any case, trimmed) as false and anything else as true, while handlers using
  ``strconv.ParseBool`` accept ``1, t, T, TRUE, true, True, 0, f, ...``.  The
  spellings on which both agree become ``1``/``0``; ``t``/``f`` and anything
  else (read differently by the two) are refused.
* integers: Go's ``strconv`` accepts a sign and leading zeros; the canonical
  form is the plain decimal.  "" stays "" (handlers treat it as absent).
* JSON-valued parameters (``filters``, build's ``buildargs``, ``labels``...)
  are decoded strictly and re-serialised canonically; ``filters`` must be an
  object mapping each filter name either to a list of strings (the legacy
  form) or to an object of string to boolean (what ``filters.ToJSON`` sends);
  both become the object form with ``true`` values, which every daemon reads.
* Unknown parameters are refused: the daemon ignores keys it does not read,
  but its handlers may be newer than the schema.

The canonical query is sorted by key; repeated array values keep their order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dockgate.admission.jsonstrict import Pairs, dumps, loads
from dockgate.admission.target import percent_decode
from dockgate.admission.validation import any_value
from dockgate.errors import BadRequest

_FALSE = frozenset({"", "0", "no", "false", "none"})
_TRUE = frozenset({"1", "true", "yes"})


def parse_query(raw: str) -> dict[str, list[str]]:
    """Parse like Go's ``url.ParseQuery``, refusing what it refuses; order kept."""
    out: dict[str, list[str]] = {}
    if not raw:
        return out
    for piece in raw.split("&"):
        if not piece:
            continue
        if ";" in piece:
            raise BadRequest("query contains ';', which the daemon refuses as a separator")
        rk, _, rv = piece.partition("=")
        key = percent_decode(rk, "query", plus_is_space=True)
        value = percent_decode(rv, "query", plus_is_space=True)
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
            raise BadRequest("query parameter name contains control characters")
        out.setdefault(key, []).append(value)
    return out


GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) \
    + "\u2028\u2029\u202f\u205f\u3000"
"""What Go's ``strings.TrimSpace`` trims (``unicode.IsSpace``).  Python's
``str.strip()`` also trims U+001C..U+001F, which Go keeps."""


def bool_value(value: str) -> bool:
    """A parameter as moby's ``httputils.BoolValue`` reads it (for parameters kept as
    strings, such as build's ``pull``, whose value is forwarded as written): trimmed
    as Go trims (``"\x1ffalse"`` is true to the daemon), then lower-cased (Go and
    Python lower-case differently only where the result holds ``i`` or ``k``, which
    no false spelling has)."""
    return value.strip(GO_SPACE).lower() not in _FALSE


def canonical_bool(name: str, value: str) -> str:
    """``1`` or ``0`` for a boolean spelled the same way by BoolValue and ParseBool."""
    v = value.strip().lower()
    if v in _TRUE:
        return "1"
    if v in _FALSE:
        return "0"
    raise BadRequest(f"query parameter {name!r}: {value!r} is not a boolean the daemon "
                     "reads unambiguously (use 1/0, true/false or yes/no)")


def canonical_int(name: str, value: str) -> str:
    """Plain decimal for a Go ``strconv`` integer; "" is kept."""
    if value == "":
        return ""
    body = value[1:] if value[:1] in "+-" else value
    if not body.isascii() or not body.isdigit():
        raise BadRequest(f"query parameter {name!r}: {value!r} is not an integer")
    n = int(value)
    if not -(1 << 63) <= n < (1 << 63):
        raise BadRequest(f"query parameter {name!r}: {value!r} is out of range")
    return str(n)


def canonical_filters(name: str, value: str) -> str:
    """Canonical ``filters`` JSON (object form, ``true`` values, sorted)."""
    if value == "":
        return ""
    decoded = loads(value, f"query parameter {name!r}")
    if not isinstance(decoded, Pairs):
        raise BadRequest(f"query parameter {name!r} must be a JSON object")
    out: dict[str, dict[str, bool]] = {}
    forms = {type(terms) for _, terms in decoded}
    if len(forms) > 1:
        # moby filters.FromJSON tries the object form, then the legacy list
        # form, for the whole value: a mixture is an error there.
        raise BadRequest(f"query parameter {name!r} mixes the list and object filter forms")
    for key, terms in decoded:
        if key in out:
            raise BadRequest(f"query parameter {name!r}: duplicate filter {key!r}")
        if isinstance(terms, Pairs):
            seen: dict[str, bool] = {}
            for term, flag in terms:
                if not isinstance(flag, bool):
                    raise BadRequest(f"query parameter {name!r}: filter {key!r} must map "
                                     "strings to booleans")
                if term in seen:
                    raise BadRequest(f"query parameter {name!r}: duplicate term {term!r}")
                seen[term] = True
            out[key] = seen
        elif isinstance(terms, list):
            if not all(isinstance(t, str) for t in terms):
                raise BadRequest(f"query parameter {name!r}: filter {key!r} must list strings")
            out[key] = dict.fromkeys(terms, True)
        else:
            raise BadRequest(f"query parameter {name!r}: filter {key!r} must be a list of "
                             "strings or an object of booleans")
    return dumps(out).decode("ascii")


def canonical_json(name: str, value: str, walker: Any = None) -> str:
    """Strictly decoded, canonically re-serialised JSON parameter value."""
    if value == "":
        return ""
    decoded = loads(value, f"query parameter {name!r}")
    walk = walker or any_value
    return dumps(walk(decoded, (None, f"query parameter {name!r}"))).decode("ascii")


def canonical_query(
    raw: str, spec: Mapping[str, Mapping[str, Any]] | None, walkers: Mapping[str, Any] | None = None
) -> tuple[tuple[str, str], ...]:
    """Canonical (key, value) pairs for ``raw`` checked against ``spec``.

    ``spec`` maps parameter names to ``{"type": ...}`` with type one of
    ``boolean``, ``integer``, ``string``, ``array`` (repeatable strings),
    ``json`` or ``filters``.  None means the endpoint takes no parameters.
    """
    parsed = parse_query(raw)
    spec = spec or {}
    out: list[tuple[str, str]] = []
    for key in sorted(parsed):
        values = parsed[key]
        p = spec.get(key)
        if p is None:
            raise BadRequest(f"unknown query parameter {key!r} for this endpoint")
        kind = p.get("type", "string")
        if kind == "array":
            item = p.get("items", "string")
            walk = (walkers or {}).get(key)
            for v in values:
                out.append((key, canonical_json(key, v, walk) if item == "json" else v))
            continue
        if len(values) > 1 and p.get("repeat") != "first":
            raise BadRequest(f"query parameter {key!r} is repeated; the daemon reads only "
                             "the first value")
        v = values[0]
        if kind == "boolean":
            v = canonical_bool(key, v)
        elif kind == "integer":
            v = canonical_int(key, v)
        elif kind == "filters":
            v = canonical_filters(key, v)
        elif kind == "json":
            v = canonical_json(key, v, (walkers or {}).get(key))
        out.append((key, v))
    return tuple(out)

"""Schema-driven canonicalisation of decoded JSON: Go's struct decoding rules,
applied to dockgate's own JSON schemas (``dockgate/admission/schemas``).

For each object with declared ``properties`` (a Go struct in the daemon), keys
are resolved the way ``encoding/json`` resolves them: an exact match first,
then a case-insensitive one (Go's folding).  Two keys resolving to one field
would be last-wins in Go and are refused; keys resolving to no field are
refused too (fail closed: the daemon's struct may be newer than the schema and
honour a key no policy has heard of).  The canonical value uses the schema's
spelling for every key, so a policy reading ``HostConfig.Privileged`` sees the
field the daemon acts on.

Scalars are checked against the Go type: integers must be integer literals
within the Go type's range (Go refuses ``1.0`` or ``1e3`` for an ``int64``),
booleans must be booleans, strings strings.  ``null`` is accepted for every
field because Go accepts it everywhere (it leaves the zero value).

The schema dialect is a small subset of JSON Schema: ``type`` (string or list),
``properties``, ``additionalProperties`` (boolean or schema; when
``properties`` exist, absent means false), ``items``, ``format`` (Go integer
widths: int8..int64, uint8..uint64), ``$ref`` to ``#/$defs/<name>``, and
``maxItems`` / ``maxProperties``: the lists and maps the policy reads entry
by entry are capped (``tools/gen_schemas.py`` ``ENTRY_LIMIT``), so that the
decision's cost, which runs on the event loop, is bounded by that cap and
not by the 1 MB body (20,000 binds cost 0.2 s to decide); more entries are a
413 while the body is admitted, before any policy reads it.
Everything else (``description``, ``enum``, ``x-*``) is ignored at request
time: value constraints are the daemon's and the policy's business, and the
spec's enums are not always what real clients send.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dockgate.admission.jsonstrict import Pairs, go_fold
from dockgate.errors import BadRequest, BodyTooLarge

Loc = tuple["Loc", str | int] | None
"""Where a value sits, as a linked list built only by reference (cheap); it is
rendered into ``HostConfig.Binds[0]`` only when an error is reported."""

Walker = Callable[[Any, Loc], Any]

_INT_RANGES: dict[str, tuple[int, int]] = {
    **{f"int{b}": (-(1 << (b - 1)), (1 << (b - 1)) - 1) for b in (8, 16, 32, 64)},
    **{f"uint{b}": (0, (1 << b) - 1) for b in (8, 16, 32, 64)},
}
"""Value ranges of the Go integer kinds named by a schema's ``format``."""


def _over(loc: Loc, limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"{where(loc)} has more than {limit} entries: dockgate reads at most "
                        f"{limit} there (the policy checks each one)")


def where(loc: Loc) -> str:
    """Render a location for an error message (``body`` for the root)."""
    parts: list[str | int] = []
    while loc is not None:
        loc, key = loc
        parts.append(key)
    if not parts:
        return "body"
    out = ""
    for key in reversed(parts):
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else key
    return out


_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
    (Pairs, "object"), (list, "array"),
)


def _type_name(value: Any) -> str:
    """The JSON type name of a decoded value, for error messages."""
    return next((name for kind, name in _TYPE_NAMES if isinstance(value, kind)), "null")


def any_value(value: Any, loc: Loc) -> Any:
    """A schema-less value: objects become dicts, duplicate keys are refused."""
    if type(value) is Pairs:
        out: dict[str, Any] = {}
        for k, v in value:
            if k in out:
                raise BadRequest(f"{where(loc)}: duplicate key {k!r}")
            out[k] = any_value(v, (loc, k))
        return out
    if type(value) is list:
        return [any_value(v, (loc, i)) for i, v in enumerate(value)]
    return value


class SchemaSet:
    """The compiled walkers of one schema document (one API snapshot).

    Compilation is lazy and cached per ``$defs`` name, so recursive
    definitions work and each definition is compiled once per process.
    """

    def __init__(self, defs: Mapping[str, Any]):
        self._defs = defs
        self._compiled: dict[str, Walker] = {}

    def compile(self, schema: Mapping[str, Any] | bool) -> Walker:
        """A walker that canonicalises a decoded value against ``schema``."""
        if schema is True or schema == {}:
            return any_value
        if schema is False:
            def refuse(value: Any, loc: Loc) -> Any:
                raise BadRequest(f"{where(loc)}: no value is allowed here")
            return refuse
        assert isinstance(schema, Mapping)
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self._ref(ref)
        types = schema.get("type")
        if isinstance(types, str):
            types = [types]
        if types is None:
            if "properties" in schema or "additionalProperties" in schema:
                types = ["object"]
            elif "items" in schema:
                types = ["array"]
            else:
                return any_value
        return self._typed(schema, frozenset(types))

    def _typed(self, schema: Mapping[str, Any], kinds: frozenset[str]) -> Walker:
        obj = self._object(schema) if "object" in kinds else None
        arr = self._array(schema) if "array" in kinds else None
        fmt = schema.get("format")
        lo, hi = _INT_RANGES.get(fmt if isinstance(fmt, str) else "", _INT_RANGES["int64"])
        want = " or ".join(sorted(kinds))
        str_ok, bool_ok = "string" in kinds, "boolean" in kinds
        int_ok, num_ok = "integer" in kinds, "number" in kinds

        def mismatch(value: Any, loc: Loc) -> Any:
            if type(value) is float and int_ok:
                raise BadRequest(f"{where(loc)}: expected an integer literal, got a number "
                                 "with a fraction or exponent (the daemon refuses it)")
            raise BadRequest(f"{where(loc)}: expected {want}, got {_type_name(value)}")

        def walk(value: Any, loc: Loc) -> Any:
            t = type(value)
            if t is str:
                if str_ok:
                    return value
            elif value is None:
                return None
            elif t is bool:
                if bool_ok:
                    return value
            elif t is int:
                if int_ok:
                    if not lo <= value <= hi:
                        raise BadRequest(f"{where(loc)}: {value} does not fit the "
                                         f"daemon's {fmt or 'int64'} field")
                    return value
                if num_ok:
                    return value
            elif t is Pairs:
                if obj is not None:
                    return obj(value, loc)
            elif t is list:
                if arr is not None:
                    return arr(value, loc)
            elif t is float and num_ok:
                return value
            return mismatch(value, loc)

        return walk

    def _ref(self, ref: str) -> Walker:
        name = ref.rsplit("/", 1)[-1]
        cached = self._compiled.get(name)
        if cached is not None:
            return cached
        slot: list[Walker] = []

        def late(value: Any, loc: Loc) -> Any:
            return slot[0](value, loc)

        self._compiled[name] = late
        target = self._defs.get(name)
        if target is None:
            raise KeyError(f"schema $ref to unknown definition {name!r}")
        walker = self.compile(target)
        slot.append(walker)
        self._compiled[name] = walker
        return walker

    def _array(self, schema: Mapping[str, Any]) -> Walker:
        items = self.compile(schema.get("items", True))
        limit = schema.get("maxItems")

        def walk(value: list[Any], loc: Loc) -> Any:
            if limit is not None and len(value) > limit:
                raise _over(loc, limit)
            return [items(v, (loc, i)) for i, v in enumerate(value)]

        return walk

    def _object(self, schema: Mapping[str, Any]) -> Walker:
        props: dict[str, Walker] = {
            name: self.compile(sub) for name, sub in schema.get("properties", {}).items()
        }
        folded: dict[str, str] = {go_fold(name): name for name in props}
        extra_schema = schema.get("additionalProperties", not props)
        extra = None if extra_schema is False else self.compile(extra_schema)
        limit = schema.get("maxProperties")

        def walk(value: Pairs, loc: Loc) -> Any:
            if limit is not None and len(value) > limit:
                raise _over(loc, limit)
            out: dict[str, Any] = {}
            spelled: dict[str, str] = {}
            for key, item in value:
                sub = props.get(key)
                if sub is not None:
                    name = key
                elif props and (cand := folded.get(go_fold(key))) is not None:
                    name = cand
                    sub = props[name]
                elif extra is not None:
                    name, sub = key, extra
                    if not props:
                        if key in out:
                            raise BadRequest(f"{where(loc)}: duplicate key {key!r}")
                        out[key] = extra(item, (loc, key))
                        continue
                else:
                    raise BadRequest(f"{where(loc)}: unknown field {key!r}")
                if name in out:
                    raise BadRequest(
                        f"{where(loc)}: keys {spelled[name]!r} and {key!r} both set field "
                        f"{name!r} (the daemon matches keys case-insensitively, last wins)")
                spelled[name] = key
                out[name] = sub(item, (loc, name))
            return out

        return walk

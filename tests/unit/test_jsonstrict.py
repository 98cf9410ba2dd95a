"""Strict JSON decoding and Go-rules canonicalisation of bodies."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockgate.admission import jsonstrict
from dockgate.admission.admit import HEAVY_BODY, ApiContext, admit_body, admit_head
from dockgate.admission.jsonstrict import MAX_KEYS, Pairs, dumps, go_fold, loads, members, plain
from dockgate.admission.validation import SchemaSet
from dockgate.errors import BadRequest, DockgateError

CTX = ApiContext("1.51")
JSON_CT = [(b"content-type", b"application/json")]


def create(body: bytes, version: str = "1.51") -> Any:
    head = admit_head("POST", f"/v{version}/containers/create".encode(), JSON_CT, CTX)
    return admit_body(head, body, CTX).body


@pytest.mark.parametrize(("data", "needle"), [
    (b'{"a":1} {"b":2}', "after the JSON value"),
    (b'{"a":1}x', "after the JSON value"),
    (b'\xef\xbb\xbf{"a":1}', "byte-order mark"),
    (b'{"a":"\xff"}', "UTF-8"),
    (b'{"a":"\\ud800"}', "surrogate"),
    (b'{"a":NaN}', "NaN"),
    (b'{"a":Infinity}', "Infinity"),
    (b'{"a":', "not valid JSON"),
    (b"[" * 100000, "nested too deeply"),
    (b"[1e400]", "out of range"),
    (b"[" + b"9" * 5000 + b"]", "not acceptable JSON"),
])
def test_loads_refusals(data: bytes, needle: str) -> None:
    """The strict decoder refuses trailing data, a BOM, invalid UTF-8, lone surrogates, NaN and
    Infinity, truncated JSON, deep nesting, out-of-range floats and huge numbers, each with a
    message naming the problem."""
    with pytest.raises(BadRequest) as exc:
        loads(data)
    assert needle in exc.value.message


def test_loads_keeps_duplicates_for_the_walker() -> None:
    """Duplicate keys are kept in order for the schema walker, and turning them into a plain dict is
    refused as a duplicate."""
    v = loads(b'{"a":1,"a":2}')
    assert isinstance(v, Pairs)
    assert list(v) == [("a", 1), ("a", 2)]
    with pytest.raises(BadRequest, match="duplicate"):
        plain(v)


def test_surrogate_pair_is_fine() -> None:
    """A valid escaped surrogate pair decodes to its single character."""
    assert loads(b'"\\ud83d\\ude00"') == "\U0001F600"


def test_go_fold() -> None:
    """go_fold folds keys as Go's case-insensitive JSON matching does, including the long s and the
    Kelvin sign, but not the dotted capital I."""
    assert go_fold("Privileged") == "privileged"
    assert go_fold("Bind\u017f") == "binds"  # long s folds to s in Go
    assert go_fold("\u212aernelMemory") == "kernelmemory"  # Kelvin sign
    assert go_fold("\u0130mage") != "image"  # dotted I does not fold to ASCII


def test_keys_canonicalised_to_schema_spelling() -> None:
    """Keys in any case are rewritten to the schema's spelling, as the daemon would match them."""
    body = create(b'{"image":"alpine","hostconfig":{"privileged":true,"BINDS":["/:/h"]}}')
    assert body == {"Image": "alpine", "HostConfig": {"Privileged": True, "Binds": ["/:/h"]}}


@pytest.mark.parametrize("data", [
    b'{"Image":"a","image":"b"}',
    b'{"Image":"a","Image":"b"}',
    b'{"HostConfig":{"Privileged":false,"privileged":true}}',
    b'{"HostConfig":{"Binds":[],"Bind\xc5\xbf":["/:/h"]}}',
    b'{"HostConfig":{},"hostConfig":{"Privileged":true}}',
])
def test_two_keys_for_one_field_refused(data: bytes) -> None:
    """Two keys that the daemon would read as one field (case or Unicode-fold variants, or exact
    duplicates) are refused."""
    with pytest.raises(BadRequest, match="both set field"):
        create(data)


@pytest.mark.parametrize(("body", "want"), [
    # No HostConfig: engine 20.10 used the top-level fields as the host config.
    ({"Image": "a", "Privileged": True}, {"Image": "a", "HostConfig": {"Privileged": True}}),
    ({"Image": "a", "privileged": True, "BINDS": ["/:/h"], "Runtime": "runc"},
     {"Image": "a", "HostConfig": {"Privileged": True, "Binds": ["/:/h"], "Runtime": "runc"}}),
    ({"Image": "a", "HostConfig": None, "CapAdd": ["ALL"]},
     {"Image": "a", "HostConfig": {"CapAdd": ["ALL"]}}),
    # HostConfig present: only five fields merge where it leaves them zero.
    ({"HostConfig": {"Memory": 0}, "Memory": 5, "CpuShares": 2, "Privileged": True},
     {"HostConfig": {"Memory": 5, "CpuShares": 2}}),
    ({"HostConfig": {"Memory": 7}, "Memory": 5}, {"HostConfig": {"Memory": 7}}),
    # Cpuset fills an empty CpusetCpus, and only when there is a host config.
    ({"HostConfig": {}, "Cpuset": "0-1"}, {"HostConfig": {"CpusetCpus": "0-1"}}),
    ({"HostConfig": {"CpusetCpus": "3"}, "Cpuset": "0-1"}, {"HostConfig": {"CpusetCpus": "3"}}),
    ({"Image": "a", "Cpuset": "0-1"}, {"Image": "a"}),
    ({"Image": "a", "Privileged": True, "Cpuset": "1"},
     {"Image": "a", "HostConfig": {"Privileged": True, "CpusetCpus": "1"}}),
])
def test_top_level_host_config_fields_lifted_like_engine_20_10(
    body: dict[str, Any], want: dict[str, Any]
) -> None:
    """moby runconfig ContainerConfigWrapper (engines up to 24) embedded
    *HostConfig; a policy reading HostConfig must see those fields there."""
    for version in ("1.41", "1.51"):
        got = create(json.dumps(body).encode(), version)
        assert got == want
        assert create(dumps(got), version) == got


def test_labels_map_keys_are_exact() -> None:
    """Keys of free-form maps such as Labels are kept exactly (a and A are distinct), but exact
    duplicates are refused."""
    body = create(b'{"Labels":{"a":"1","A":"2"}}')
    assert body == {"Labels": {"a": "1", "A": "2"}}
    with pytest.raises(BadRequest, match="duplicate"):
        create(b'{"Labels":{"a":"1","a":"2"}}')


@pytest.mark.parametrize("data", [
    b'{"StopTimeout":1.0}',
    b'{"StopTimeout":1e3}',
    b'{"HostConfig":{"Memory":9223372036854775808}}',
    b'{"HostConfig":{"Privileged":"true"}}',
    b'{"Image":1}',
    b'{"Env":"A=1"}',
    b'{"HostConfig":{"ConsoleSize":[1,-1]}}',
    # legacy top-level HostConfig fields: ambiguous spellings, wrong types
    b'{"Privileged":true,"privileged":false}',
    b'{"Cpuset":"1","cpuset":"2","HostConfig":{}}',
    b'{"Privileged":"yes"}',
    b'{"Cpuset":1,"HostConfig":{}}',
])
def test_ambiguous_or_mistyped_bodies_refused(data: bytes) -> None:
    """Values the daemon would read differently or reject (floats for integers, int64 overflow,
    strings for booleans, wrong types, negative sizes, ambiguous legacy top-level HostConfig fields)
    are refused."""
    with pytest.raises(BadRequest):
        create(data)


def test_null_is_accepted_like_go() -> None:
    """null is accepted for any field, as Go's decoder accepts it."""
    assert create(b'{"Image":null,"HostConfig":null}') == {"Image": None, "HostConfig": None}


def test_strslice_accepts_string() -> None:
    """Cmd and Entrypoint accept a string or a list, as Docker's strslice does."""
    assert create(b'{"Cmd":"echo hi","Entrypoint":["sh"]}') == {"Cmd": "echo hi",
                                                                 "Entrypoint": ["sh"]}


def test_canonical_serialisation_is_ascii_and_sorted() -> None:
    """The forwarded body is canonical: keys sorted, compact, non-ASCII escaped."""
    head = admit_head("POST", b"/v1.51/containers/create", JSON_CT, CTX)
    req = admit_body(head, '{"Labels":{"z":"\u00e9"},"Image":"a"}'.encode(), CTX)
    assert req.body_bytes == b'{"Image":"a","Labels":{"z":"\\u00e9"}}'


@pytest.mark.parametrize("ct", [b"text/plain", b"application/jsonx", b"application/json+x",
                                b"text/json"])
def test_json_body_refuses_other_content_types(ct: bytes) -> None:
    """A JSON endpoint refuses a body sent with another media type, including lookalikes of
    application/json."""
    head = admit_head("POST", b"/v1.51/containers/create", [(b"content-type", ct)], CTX)
    with pytest.raises(BadRequest, match="Content-Type"):
        admit_body(head, b'{"Image":"a"}', CTX)


def test_empty_body_labelled_text_plain_is_fine() -> None:
    """The moby client (CLI 20.10 and 28) sends Content-Type: text/plain on every
    bodiless POST."""
    head = admit_head("POST", b"/v1.41/containers/abc/start", [(b"content-type",
                                                                b"text/plain")], CTX)
    assert admit_body(head, b"", CTX).body_bytes is None


@pytest.mark.parametrize("ct", [b"application/json", b"Application/JSON; charset=utf-8",
                                b"application/json;charset=UTF-8"])
def test_json_media_type_parsed(ct: bytes) -> None:
    """application/json is recognised in any case and with a charset parameter."""
    head = admit_head("POST", b"/v1.51/containers/create", [(b"content-type", ct)], CTX)
    assert admit_body(head, b'{"Image":"a"}', CTX).body == {"Image": "a"}


def test_body_without_content_type_refused() -> None:
    """A body on a JSON endpoint without a Content-Type is refused."""
    head = admit_head("POST", b"/v1.51/containers/create", [], CTX)
    with pytest.raises(BadRequest, match="Content-Type"):
        admit_body(head, b'{"Image":"a"}', CTX)


def test_create_requires_body() -> None:
    """A container create without a body is refused with a message saying it requires one."""
    head = admit_head("POST", b"/v1.51/containers/create", JSON_CT, CTX)
    with pytest.raises(BadRequest, match="requires a JSON body"):
        admit_body(head, b"", CTX)


# Property tests over a small struct schema with nested structs and maps.
_SCHEMA = SchemaSet({
    "Inner": {"type": "object", "properties": {"Name": {"type": "string"},
                                               "Count": {"type": "integer"}}},
})
_WALK = _SCHEMA.compile({"type": "object", "properties": {
    "Image": {"type": "string"},
    "HostConfig": {"$ref": "#/$defs/Inner"},
    "Labels": {"type": "object", "additionalProperties": {"type": "string"}},
}})
_FIELDS = {"image": "Image", "hostconfig": "HostConfig", "labels": "Labels"}


def _spellings(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda flags: "".join(c.upper() if f else c.lower()
                              for c, f in zip(name, flags, strict=True)))


_inner = st.lists(st.tuples(st.one_of(_spellings("name"), _spellings("count"), st.text(max_size=3)),
                            st.one_of(st.text(max_size=3), st.integers(-5, 5))), max_size=3)
_outer = st.lists(st.tuples(
    st.one_of(_spellings("image"), _spellings("hostconfig"), _spellings("labels"),
              st.text(max_size=4)),
    st.one_of(st.text(max_size=3), _inner.map(Pairs),
              st.lists(st.tuples(st.text(max_size=2), st.text(max_size=2)), max_size=2)
              .map(Pairs))),
    max_size=4)


@given(_outer.map(Pairs))
def test_walker_reads_like_go(value: Pairs) -> None:
    """Whatever the walker accepts, Go would decode to the same struct: each
    field is set by exactly one key (so last-wins cannot change it), and the
    canonical output, decoded again, is a fixed point."""
    try:
        out = _WALK(value, None)
    except BadRequest:
        return
    folded = [go_fold(k) for k, _ in value if go_fold(k) in _FIELDS]
    assert len(folded) == len(set(folded))
    assert set(out) == {_FIELDS[f] for f in folded}
    assert _WALK(loads(dumps(out)), None) == out


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c,
                                                                        max_size=3),
                    max_leaves=10))
def test_dumps_loads_round_trip(value: Any) -> None:
    """Property: canonical serialisation and strict decoding round-trip any JSON value."""
    assert plain(loads(dumps(value))) == value


_HOST_FIELDS = ["Privileged", "Binds", "Memory", "CpuShares", "CapAdd", "PidMode", "Runtime",
                "VolumeDriver", "CpusetCpus", "Cpuset"]
_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "Privileged": st.booleans(), "Binds": st.lists(st.text(max_size=3), max_size=2),
    "Memory": st.integers(0, 9), "CpuShares": st.integers(0, 9),
    "CapAdd": st.lists(st.text(max_size=3), max_size=2), "PidMode": st.text(max_size=3),
    "Runtime": st.text(max_size=3), "VolumeDriver": st.text(max_size=3),
    "CpusetCpus": st.text(max_size=3), "Cpuset": st.text(max_size=3),
}


@given(st.dictionaries(st.sampled_from(_HOST_FIELDS), st.just(None), max_size=5),
       st.booleans(), st.data())
def test_lifted_bodies_leave_nothing_at_top_level(
    fields: dict[str, None], with_hc: bool, data: st.DataObject
) -> None:
    """Property: legacy top-level HostConfig fields in any spelling are lifted into HostConfig, none
    remain at top level, and the result is stable when decoded again."""
    body: dict[str, Any] = {"Image": "a"}
    for name in fields:
        body[data.draw(_spellings(name))] = data.draw(_VALUES[name])
    if with_hc:
        body["HostConfig"] = {"Memory": data.draw(st.integers(0, 2))}
    got = create(json.dumps(body).encode())
    host = {go_fold(f) for f in _HOST_FIELDS}
    assert not [k for k in got if go_fold(k) in host]
    assert create(dumps(got)) == got


def test_object_members_are_bounded() -> None:
    """A value with more than MAX_KEYS members over all its objects is refused (413),
    however it spreads them; each loads counts afresh."""
    flat = b"{" + b",".join(b'"k%d":1' % i for i in range(MAX_KEYS + 1)) + b"}"
    spread = b"[" + b",".join([b'{"a":1,"b":2}'] * (MAX_KEYS // 2 + 1)) + b"]"
    for body in (flat, spread):
        with pytest.raises(DockgateError) as caught:
            loads(body)
        assert caught.value.status == 413
    at_limit = b"{" + b",".join(b'"k%d":1' % i for i in range(MAX_KEYS)) + b"}"
    for _ in range(2):  # the count starts afresh with each value
        assert len(loads(at_limit)) == MAX_KEYS


_TRICKY = st.text(alphabet=':,{}[]"\\ab\u00e9\ud83d', max_size=8)
"""Strings full of what the member scan must not take for structure."""

_NESTED = st.recursive(
    st.none() | st.integers() | _TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TRICKY, inner, max_size=4),
    max_leaves=20,
)


def _count(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_count(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count(v) for v in value)
    return 0


@given(_NESTED, st.booleans())
def test_member_scan_is_exact(value: Any, ascii_only: bool) -> None:
    """Property: ``members`` counts exactly the object members of a JSON text, whatever
    its strings hold (``:`` ``,`` ``{`` ``[`` quotes and backslashes, escaped or not)."""
    assert members(json.dumps(value, ensure_ascii=ascii_only)) == _count(value)


def _labels(n: int, value: str) -> bytes:
    return json.dumps({"Labels": {f"k{i}": value for i in range(n)}}).encode()


def test_member_limit_is_exact_when_strings_inflate_the_cheap_bound() -> None:
    """A body just under the member limit passes even when its strings hold more
    ``:`` (escaped quotes and backslashes around them) than the limit, and one member
    more is refused (413) with the same message."""
    value = 'a:\\":{[,\\'
    under = _labels(MAX_KEYS - 1, value)
    assert under.count(b":") > 2 * MAX_KEYS
    assert len(plain(loads(under))["Labels"]) == MAX_KEYS - 1
    with pytest.raises(DockgateError) as caught:
        loads(_labels(MAX_KEYS, value))
    assert (caught.value.status, str(caught.value)) == (
        413, f"JSON value has more than {MAX_KEYS} object members")


def test_too_many_members_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A body over the member limit is refused by the scan, without being decoded: the
    decoder is not touched (a client asking for an over-limit decode never gets it)."""
    monkeypatch.setattr(jsonstrict, "_DECODER", None)
    with pytest.raises(DockgateError) as caught:
        loads(b"[" + b",".join([b'{"a":1}'] * (MAX_KEYS + 1)) + b"]", "query parameter 'x'")
    assert caught.value.status == 413


@pytest.mark.parametrize(("text", "lone"), [
    ('"\\ud800"', True),
    ('"\\udc00"', True),
    ('"\\uD83D\\uDE00"', False),
    ('"\\ud83d\\ude00\\ude00"', True),
    ('"\\ud800\\ud800\\udc00"', True),
    ('"\\\\ud800"', False),
    ('"\\\\\\ud800"', True),
    ('"\\u0041\\\\uD800x"', False),
    ('"\\ud83d\\\\\\ude00"', True),
    ('{"\\ud800":1}', True),
])
def test_lone_surrogates_found_in_the_text(text: str, lone: bool) -> None:
    """Lone surrogate escapes (in keys too) are refused and joined pairs pass, escaped
    backslashes before a ``u`` being no escape, as Python's decoder reads them."""
    if lone:
        with pytest.raises(BadRequest, match="surrogate"):
            loads(text)
    else:
        loads(text)


_ESCAPES = ("\\ud83d", "\\ude00", "\\uDBFF", "\\uDC00", "\\\\", "\\u0041", "a", '\\"')


def test_surrogate_check_agrees_with_the_decoder() -> None:
    """Exhaustively over strings of up to four of these escapes (joined pairs, lone
    halves, escaped backslashes and quotes between them): a string is refused
    exactly when Python's decoder would leave a surrogate in it."""
    for n in range(1, 5):
        for parts in itertools.product(_ESCAPES, repeat=n):
            text = '"' + "".join(parts) + '"'
            decoded = json.loads(text)
            if any(0xD800 <= ord(c) <= 0xDFFF for c in decoded):
                with pytest.raises(BadRequest, match="surrogate"):
                    loads(text)
            else:
                assert loads(text) == decoded, text


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                               max_size=3),
    max_leaves=12,
)


@given(old=st.dictionaries(st.text(max_size=6), _values, max_size=8),
       changes=st.dictionaries(st.text(max_size=6), _values | st.none(), max_size=4),
       drop=st.sets(st.text(max_size=6), max_size=2))
def test_reencode_is_dumps_of_the_new_body(old: dict[str, Any], changes: dict[str, Any],
                                           drop: set[str]) -> None:
    """``dumps_spans`` gives ``dumps``'s bytes, each span holding its member; and a
    body made from an admitted one by replacing, adding and dropping top-level
    members (the rest the same objects) is re-encoded by ``reencode`` and by
    ``CanonicalRequest.with_body`` to exactly ``dumps`` of it, with spans that
    are its members' (so the next change can use them)."""
    encoded, spans = jsonstrict.dumps_spans(old)
    assert encoded == dumps(old)
    assert spans is not None
    for key, (start, end) in spans.items():
        assert encoded[start:end] == dumps(key) + b":" + dumps(old[key])
    new = {k: v for k, v in old.items() if k not in drop}
    new.update(changes)
    again, new_spans = jsonstrict.reencode(old, encoded, spans, new)
    assert again == dumps(new)
    assert new_spans == jsonstrict.dumps_spans(new)[1]
    head = admit_head("POST", b"/v1.51/networks/create", JSON_CT, CTX)
    admitted = replace(head, body=old, body_bytes=encoded, body_members=(old, encoded, spans))
    changed = admitted.with_body(new)
    assert changed.body_bytes == dumps(new)
    assert changed.body_members == (new, changed.body_bytes, new_spans)


def test_with_body_ignores_spans_of_other_bytes() -> None:
    """Spans kept on a request whose body or bytes were replaced since (a copy made
    with ``dataclasses.replace``) are not used: the new body is encoded whole."""
    old = {"A": {"x": 1}, "B": [1, 2]}
    encoded, spans = jsonstrict.dumps_spans(old)
    head = admit_head("POST", b"/v1.51/networks/create", JSON_CT, CTX)
    admitted = replace(head, body=old, body_bytes=encoded, body_members=(old, encoded, spans))
    other = {"A": {"x": 2}, "B": old["B"]}
    stale = replace(admitted, body=other, body_bytes=b'{"A":{"x":2},"B":[1,2]}')
    new = dict(other, C=3)
    assert stale.with_body(new).body_bytes == dumps(new)
    moved = replace(admitted, body_bytes=b" " + encoded)  # bytes no longer the spanned ones
    assert moved.with_body(dict(old)).body_bytes == dumps(old)


def test_large_admitted_bodies_carry_their_member_spans() -> None:
    """``admit_body`` of an object body over HEAVY_BODY keeps where each top-level
    member lies in the forwarded bytes; a small body keeps none (encoding it whole
    again costs less than keeping them)."""
    head = admit_head("POST", b"/v1.51/containers/create", JSON_CT, CTX)
    filler = "b" * HEAVY_BODY
    admitted = admit_body(head, b'{"Image":"x","Labels":{"a":"%s"}}' % filler.encode(), CTX)
    assert admitted.body_members is not None
    value, encoded, spans = admitted.body_members
    assert value is admitted.body and encoded is admitted.body_bytes
    assert {k: encoded[a:b] for k, (a, b) in spans.items()} == {
        "Image": b'"Image":"x"', "Labels": b'"Labels":{"a":"%s"}' % filler.encode()}
    assert admit_body(head, b'{"Image":"x"}', CTX).body_members is None

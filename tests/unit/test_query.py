"""Query parsing with Go's rules and canonical values."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockgate.admission.admit import ApiContext, admit_head
from dockgate.admission.query import (
    bool_value,
    canonical_bool,
    canonical_filters,
    canonical_int,
    canonical_query,
    parse_query,
)
from dockgate.admission.schemas import load_snapshot
from dockgate.errors import BadRequest

SPEC = {
    "all": {"type": "boolean"},
    "limit": {"type": "integer"},
    "name": {"type": "string"},
    "t": {"type": "array"},
    "filters": {"type": "filters"},
    "buildargs": {"type": "json"},
}


def test_parse_like_go() -> None:
    """Query strings are split as Go's url.ParseQuery does: empty pairs skipped, bare keys empty,
    plus as space, repeats kept in order."""
    assert parse_query("a=1&&b&c=x+y%21&a=2") == {"a": ["1", "2"], "b": [""], "c": ["x y!"]}


@pytest.mark.parametrize("raw", ["a=1;b=2", "a=%zz", "a=%ff", "%0a=1"])
def test_parse_refusals(raw: str) -> None:
    """Semicolons, invalid or non-UTF-8 percent escapes and control characters in a key are refused.
    """
    with pytest.raises(BadRequest):
        parse_query(raw)


@pytest.mark.parametrize(("value", "out"), [
    ("1", "1"), ("true", "1"), ("True", "1"), ("YES", "1"), (" 1 ", "1"),
    ("0", "0"), ("false", "0"), ("False", "0"), ("no", "0"), ("none", "0"), ("", "0"),
])
def test_bool_spellings(value: str, out: str) -> None:
    """Boolean query values in every spelling the daemon accepts become 1 or 0."""
    assert canonical_bool("all", value) == out


@pytest.mark.parametrize(("value", "read"), [
    ("false", False), (" no\t", False), ("\u00a0none\u3000", False), ("", False),
    ("\x1ffalse", True), ("false\x1c", True), ("\x1e0", True), ("1", True), ("x", True),
])
def test_bool_value_trims_as_go_does(value: str, read: bool) -> None:
    """A parameter kept as written (build's ``pull``) is read as moby's BoolValue reads
    it: Go's TrimSpace keeps U+001C..U+001F, which Python's strip() drops, so
    ``pull=%1Ffalse`` makes the daemon pull."""
    assert bool_value(value) is read


@pytest.mark.parametrize("value", ["t", "f", "on", "off", "2", "banana"])
def test_ambiguous_bools_refused(value: str) -> None:
    """moby's BoolValue and strconv.ParseBool read these differently (or not at all)."""
    with pytest.raises(BadRequest):
        canonical_bool("all", value)


def test_ints() -> None:
    """Integers are canonicalised (sign and leading zeros); floats, hex, exponents, int64 overflow
    and non-ASCII digits are refused."""
    assert canonical_int("t", "+007") == "7"
    assert canonical_int("t", "-1") == "-1"
    assert canonical_int("t", "") == ""
    for bad in ("1.0", "0x10", "1e3", "9223372036854775808", "\u0661"):
        with pytest.raises(BadRequest):
            canonical_int("t", bad)


def test_filters_both_forms_become_one() -> None:
    """The legacy list form and the map form of filters canonicalise to the same sorted map form."""
    legacy = canonical_filters("filters", '{"label":["a=b","c"]}')
    modern = canonical_filters("filters", '{"label":{"c":true,"a=b":true}}')
    assert legacy == modern == '{"label":{"a=b":true,"c":true}}'


@pytest.mark.parametrize("value", [
    "[]", '{"label":"a"}', '{"label":[1]}', '{"label":{"a":1}}', '{"a":[],"a":[]}',
    '{"label":{"x":true,"x":true}}', "{", '{"a":[]} x', '{"a":["x"],"b":{"y":true}}',
])
def test_filters_refused(value: str) -> None:
    """filters that are not an object of string lists or true-maps, have duplicate keys, are
    truncated or trailed, or mix forms are refused."""
    with pytest.raises(BadRequest):
        canonical_filters("filters", value)


def test_repeat_of_scalar_refused_but_array_allowed() -> None:
    """A repeated scalar parameter is refused while an array parameter may repeat."""
    with pytest.raises(BadRequest, match="repeated"):
        canonical_query("name=a&name=b", SPEC)
    assert canonical_query("t=a&t=b", SPEC) == (("t", "a"), ("t", "b"))


def test_unknown_parameter_refused() -> None:
    """A parameter the endpoint does not take is refused, and names are case-sensitive as in Go."""
    with pytest.raises(BadRequest, match="unknown query parameter"):
        canonical_query("privileged=1", SPEC)
    with pytest.raises(BadRequest, match="unknown query parameter"):
        canonical_query("All=1", SPEC)  # Go's form keys are case-sensitive


def test_canonical_query_sorted_and_normalised() -> None:
    """The canonical query is sorted by name with booleans, integers and JSON values normalised."""
    out = canonical_query("name=x&all=True&limit=010&buildargs=%7B%22A%22%3A+%221%22%7D", SPEC)
    assert out == (("all", "1"), ("buildargs", '{"A":"1"}'), ("limit", "10"), ("name", "x"))


_values = st.text(max_size=10)


@given(st.dictionaries(st.sampled_from(sorted(SPEC)), _values, max_size=4))
def test_canonical_query_is_a_fixed_point(params: dict[str, str]) -> None:
    """Property: canonicalising an already canonical query changes nothing."""
    raw = urlencode(params, quote_via=quote, safe="")
    try:
        first = canonical_query(raw, SPEC)
    except BadRequest:
        return
    again = canonical_query(urlencode(first, quote_via=quote, safe=""), SPEC)
    assert again == first


@given(st.dictionaries(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=3),
                       max_size=3))
def test_filters_canonical_is_fixed_point(value: dict[str, list[str]]) -> None:
    """Property: canonical filters are a fixed point of canonicalisation."""
    text = json.dumps(value)
    first = canonical_filters("filters", text)
    assert canonical_filters("filters", first) == first


def test_json_parameters_resolve_keys_like_go() -> None:
    """ocispec.Platform has lower-case json tags; Go matches them case-insensitively."""
    ctx = ApiContext()
    req = admit_head("GET", b"/v1.51/images/a/json?platform=%7B%22OS%22%3A%22linux%22%7D", [],
                     ctx)
    assert req.query == (("platform", '{"os":"linux"}'),)
    with pytest.raises(BadRequest, match="both set field"):
        admit_head("GET", b"/v1.51/images/a/json?platform=%7B%22OS%22%3A%22linux%22%2C%22os"
                          b"%22%3A%22windows%22%7D", [], ctx)
    with pytest.raises(BadRequest, match="expected"):
        admit_head("POST", b"/v1.51/build?labels=%7B%22a%22%3A1%7D", [], ctx)


_SNAP = load_snapshot("1.51")
_ENDPOINTS = sorted(i for i in _SNAP.raw() if _SNAP.query_spec(i))


@given(st.sampled_from(_ENDPOINTS), st.data())
def test_real_specs_canonical_query_is_a_fixed_point(endpoint: str, data: st.DataObject) -> None:
    """For every endpoint's real parameter spec, canonical output parses to itself."""
    spec = _SNAP.query_spec(endpoint) or {}
    walkers = _SNAP.query_walkers(endpoint)
    names = data.draw(st.lists(st.sampled_from(sorted(spec)), max_size=4))
    pairs = [(n, data.draw(st.one_of(st.text(max_size=6), st.sampled_from(
        ["1", "0", "true", "False", "-3", "+07", "{}", '{"a":["b"]}', "[]", "null"]))))
        for n in names]
    raw = urlencode(pairs, quote_via=quote, safe="")
    try:
        first = canonical_query(raw, spec, walkers)
    except BadRequest:
        return
    assert canonical_query(urlencode(first, quote_via=quote, safe=""), spec, walkers) == first


def test_percent_escaped_control_bytes_in_values_are_data() -> None:
    """A value may hold %0A (docker-py sends a Dockerfile's text in one): it is
    decoded as Go's QueryUnescape decodes it, not refused."""
    assert parse_query("dockerfile=FROM%20x%0ARUN%09true%0D%0A") == {
        "dockerfile": ["FROM x\nRUN\ttrue\r\n"]}


def test_build_dockerfile_repeated_by_docker_py_forwards_the_first_value() -> None:
    """docker-py's out-of-context Dockerfile arrives as dockerfile=<name>&dockerfile=<text>;
    the daemon reads the first value (r.FormValue), so the canonical request holds that
    one alone and the forwarded target decodes to exactly it."""
    req = admit_head("POST", b"/v1.51/build?t=x&dockerfile=.dockerfile.ab12"
                     b"&dockerfile=FROM%20scratch%0ACOPY%20a%20%2F%0A", [],
                     ApiContext("1.51"))
    assert dict(req.query)["dockerfile"] == ".dockerfile.ab12"
    assert [k for k, _ in req.query].count("dockerfile") == 1
    assert req.target == "/v1.51/build?dockerfile=.dockerfile.ab12&t=x"


def test_a_value_with_a_newline_is_forwarded_escaped() -> None:
    """The canonical form holds the decoded newline and the forwarded target escapes it
    again, so the daemon decodes exactly the value the policy saw."""
    req = admit_head("POST", b"/v1.51/build?dockerfile=a%0Ab", [], ApiContext("1.51"))
    assert dict(req.query)["dockerfile"] == "a\nb"
    assert req.target == "/v1.51/build?dockerfile=a%0Ab"
    with pytest.raises(BadRequest):  # a raw control character in the target stays refused
        admit_head("POST", b"/v1.51/build?dockerfile=a\nb", [], ApiContext("1.51"))

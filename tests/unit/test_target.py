"""Request-target canonicalisation: one reading or a 400 naming the ambiguity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockgate.admission.target import escape_path, parse_target, percent_decode
from dockgate.errors import BadRequest


@pytest.mark.parametrize(("raw", "version", "path", "query"), [
    (b"/_ping", None, "/_ping", ""),
    (b"/v1.41/_ping", "1.41", "/_ping", ""),
    (b"/v1.51/containers/json?all=1", "1.51", "/containers/json", "all=1"),
    (b"/v1.41", "1.41", "/", ""),
    (b"/v1.51/images/a%20b/json", "1.51", "/images/a b/json", ""),
    (b"/v1.51/images/%61lpine/json", "1.51", "/images/alpine/json", ""),
    (b"/v1.51/images/caf%C3%A9/json", "1.51", "/images/caf\u00e9/json", ""),
    (b"/vx/_ping", None, "/vx/_ping", ""),
    (b"/v1.41x/_ping", None, "/v1.41x/_ping", ""),
    (b"/containers/json?", None, "/containers/json", ""),
])
def test_accepted(raw: bytes, version: str | None, path: str, query: str) -> None:
    """Origin-form targets split into API version, decoded path and raw query; a version prefix only
    counts in its exact form."""
    t = parse_target(raw)
    assert (t.version, t.path, t.raw_query) == (version, path, query)


@pytest.mark.parametrize(("raw", "needle"), [
    (b"http://docker/v1.41/_ping", "origin-form"),
    (b"*", "asterisk"),
    (b"/v1.41/_ping#frag", "'#'"),
    (b"/v1.41/containers/../images/json", "'..'"),
    (b"/v1.41/containers/./json", "'.'"),
    (b"/v1.41/containers/%2e%2e/images/json", "'..'"),
    (b"/v1.41//containers/json", "'//'"),
    (b"//v1.41/containers/json", "'//'"),
    (b"/v1.41/containers/a%2Fb/json", "%2F"),
    (b"/v1.41/containers/a%2fb/json", "%2F"),
    (b"/v1.41/images/a%zz/json", "malformed"),
    (b"/v1.41/images/a%ff/json", "UTF-8"),
    (b"/v1.41/images/a%00/json", "control"),
    (b"/v1.41/images/a\\b/json", "escaped"),
    (b"/v1.41/images/a%5Cb/json", "backslash"),
    (b"/v1.41/images/a b/json", "escaped"),
    (b"/v1.41/images/\xc3\xa9/json", "non-ASCII"),
    (b"/v1.041/_ping", "version"),
    (b"/v01.41/_ping", "version"),
    (b"/v1.41.0/_ping", "version"),
    (b"/v1/_ping", "version"),
    (b"/v./_ping", "version"),
    (b"/v1.41/_ping?a=\x01", "control"),
])
def test_refused(raw: bytes, needle: str) -> None:
    """Targets the daemon could read differently (absolute or asterisk form, fragments, dot segments
    raw or encoded, double slashes, encoded slashes or backslashes, bad escapes, control or non-
    ASCII bytes, non-canonical versions) are refused with a message naming the problem."""
    with pytest.raises(BadRequest) as exc:
        parse_target(raw)
    assert needle in exc.value.message


def test_escape_path_matches_go() -> None:
    """escape_path keeps the characters Go's path encoding keeps and escapes the rest, as UTF-8."""
    # Go's shouldEscape(encodePath) keeps $&+,/:;=@ and unreserved characters.
    assert escape_path("/images/a:b@sha256:x/json") == "/images/a:b@sha256:x/json"
    assert escape_path("/a b!*'()\u00e9") == "/a%20b%21%2A%27%28%29%C3%A9"


def test_percent_decode_plus() -> None:
    """Plus decodes to a space in query values only, not in paths."""
    assert percent_decode("a+b%20c", "q", plus_is_space=True) == "a b c"
    assert percent_decode("a+b", "path") == "a+b"


_segment = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF,
                           exclude_characters="/%\\#?\x7f"),
    min_size=1, max_size=12,
).filter(lambda s: s not in (".", ".."))


@given(st.lists(_segment, min_size=1, max_size=5))
def test_canonical_path_is_a_fixed_point(segments: list[str]) -> None:
    """Escaping a decoded path and parsing it again yields the same path; the
    escaped form is what is forwarded, so the daemon decodes what was decided."""
    path = "/" + "/".join(segments)
    escaped = escape_path(path)
    try:
        parsed = parse_target(escaped.encode("ascii"))
    except BadRequest as e:
        # Only an ill-spelled version prefix may be refused.
        assert "version" in e.message
        return
    if parsed.version is None:
        assert parsed.path == path
        assert escape_path(parsed.path) == escaped
    else:
        assert escaped == f"/v{parsed.version}" + (
            "" if parsed.path == "/" else escape_path(parsed.path))


@given(st.binary(max_size=40))
def test_arbitrary_targets_either_parse_or_bad_request(raw: bytes) -> None:
    """Property: any target either is refused with 400 or parses to a path with no ambiguous
    segments that re-encodes to itself."""
    try:
        t = parse_target(b"/" + raw)
    except BadRequest:
        return
    # What parses has no ambiguous pieces left.
    assert "//" not in t.path
    assert all(s not in (".", "..") for s in t.path.split("/"))
    again = parse_target(((f"/v{t.version}" if t.version else "") + escape_path(t.path)
                          + ("?" + t.raw_query if t.raw_query else "")).encode())
    assert (again.version, again.path) == (t.version, t.path)

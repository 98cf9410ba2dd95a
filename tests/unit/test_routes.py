"""Routing decisions: 404 / 403 / 405 / version checks / header hygiene."""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockgate.admission.admit import ApiContext, admit_head, is_json_media_type
from dockgate.admission.routes import ENDPOINTS, ROUTES, match
from dockgate.admission.versions import MAX_API_VERSION
from dockgate.errors import BadRequest, DockgateError, Forbidden, MethodNotAllowed, NotFound
from dockgate.model import Operation

CTX = ApiContext("1.51")


def refuse(method: str, target: bytes, headers: list[tuple[bytes, bytes]] | None = None
           ) -> DockgateError:
    with pytest.raises(DockgateError) as exc:
        admit_head(method, target, headers or [], CTX)
    return exc.value


def test_ids_unique_and_dotted() -> None:
    """Every route has a unique, lowercase, dotted endpoint id (what policies and audit records
    name)."""
    ids = [r.endpoint.id for r in ROUTES]
    assert len(ids) == len(set(ids))
    assert all(i == i.lower() and "." in i for i in ids)


def test_hijack_endpoints() -> None:
    """Exactly the attach, exec start and BuildKit session endpoints are hijacked (spliced byte for
    byte)."""
    hijack = {r.endpoint.id for r in ROUTES if r.endpoint.hijack}
    assert hijack == {"container.attach", "container.attach.ws", "exec.start",
                      "build.session", "build.grpc"}


@pytest.mark.parametrize(("ident", "kind"), [
    ("image.build", "stream"), ("image.load", "stream"), ("image.create", "stream"),
    ("container.archive.put", "stream"), ("plugin.create", "stream"),
    ("container.create", "json"), ("exec.start", "json"), ("system.ping", "none"),
])
def test_body_kinds(ident: str, kind: str) -> None:
    """Each endpoint declares its body kind: streamed (build, load, pull, archive put, plugin
    create), JSON, or none."""
    assert ENDPOINTS[ident].body == kind


def test_image_names_may_contain_slashes_but_container_ids_not() -> None:
    """Image names may contain slashes and a registry port; a container path that the daemon would
    route by a greedy name pattern is refused rather than guessed."""
    m = match("GET", "/images/registry:5000/a/b:c/json")
    assert m.route is not None
    assert m.params == {"name": "registry:5000/a/b:c"}
    # The daemon would route this (to DELETE /containers/{name:.*}); dockgate does not guess.
    assert isinstance(refuse("DELETE", b"/v1.51/containers/c/checkpoints/x"), Forbidden)


def test_container_delete_takes_a_link_name_with_a_slash_like_the_daemon() -> None:
    """moby routes DELETE /containers/{name:.*}: a legacy link is removed by its
    <parent>/<alias> name; the other container operations keep one segment."""
    m = match("DELETE", "/containers/c2/mylink")
    assert m.route is not None and m.route.endpoint.id == "container.delete"
    assert m.params == {"id": "c2/mylink"}
    req = admit_head("DELETE", b"/v1.51/containers/c2/mylink?link=1", [], CTX)
    assert req.target == "/v1.51/containers/c2/mylink?link=1"
    assert isinstance(refuse("POST", b"/v1.51/containers/c2/mylink/start"), Forbidden)


def test_unknown_path_is_404() -> None:
    """A path no route matches, and a bare version prefix, are answered 404."""
    err = refuse("GET", b"/v1.51/nothing/here")
    assert isinstance(err, NotFound)
    assert isinstance(refuse("GET", b"/v1.51"), NotFound)


def test_wrong_method_is_405_with_allowed_list() -> None:
    """A known path with a method it does not take is 405 naming the allowed methods (HEAD only
    where the daemon allows it, unknown methods too)."""
    err = refuse("PUT", b"/v1.51/_ping")
    assert isinstance(err, MethodNotAllowed)
    assert "GET" in err.message and "HEAD" in err.message
    assert isinstance(refuse("HEAD", b"/v1.51/containers/json"), MethodNotAllowed)
    assert isinstance(refuse("PATCH", b"/v1.51/containers/json"), MethodNotAllowed)
    assert isinstance(refuse("BREW", b"/v1.51/containers/json"), MethodNotAllowed)


@pytest.mark.parametrize(("method", "target"), [
    ("OPTIONS", b"/v1.51/containers/json"),  # the daemon's CORS preflight route
    ("GET", b"/debug/pprof/heap"),
    ("GET", b"/v1.51/debug/vars"),
    ("GET", b"/v1.51/containers/abc/checkpoints"),
    ("POST", b"/v1.51/containers/abc/checkpoints"),
    ("DELETE", b"/v1.51/containers/abc/checkpoints/cp1"),
])
def test_daemon_routes_dockgate_does_not_support_are_403(method: str, target: bytes) -> None:
    """Routes the daemon serves but dockgate does not (CORS preflight, debug, checkpoints) are
    refused 403, not passed through."""
    assert isinstance(refuse(method, target), Forbidden)


@pytest.mark.parametrize("version", ["1.17", "1.12", "1.52", "1.56", "2.0", "9.99"])
def test_unknown_version_is_403_naming_it(version: str) -> None:
    """An API version below 1.18 or above the newest known is refused 403 with the version in the
    message."""
    err = refuse("GET", f"/v{version}/_ping".encode())
    assert isinstance(err, Forbidden)
    assert version in err.message


def test_version_range_of_endpoint() -> None:
    """An endpoint outside its API version range is 404 (volume update before 1.42, container copy
    after 1.23) and accepted within it."""
    assert isinstance(refuse("PUT", b"/v1.41/volumes/x", [(b"content-type",
                                                            b"application/json")]), NotFound)
    admit_head("PUT", b"/v1.51/volumes/x", [], CTX)
    assert isinstance(refuse("POST", b"/v1.24/containers/x/copy"), NotFound)
    admit_head("POST", b"/v1.23/containers/x/copy", [], CTX)


def test_no_prefix_uses_daemon_version() -> None:
    """A request without a version prefix is validated at the daemon's version (clamped to the
    newest known) and keeps its target unprefixed."""
    req = admit_head("GET", b"/containers/json?all=1", [], ApiContext("1.41"))
    assert req.version is None
    assert req.target == "/containers/json?all=1"
    # A daemon newer than dockgate: its default version is validated as MAX.
    admit_head("GET", b"/_ping", [], ApiContext("1.60"))


def test_trailing_slash_and_networks_alias() -> None:
    """A trailing slash is refused, except /networks/ which the daemon serves as the network list
    and is forwarded as /networks."""
    assert isinstance(refuse("GET", b"/v1.51/containers/json/"), BadRequest)
    req = admit_head("GET", b"/v1.51/networks/", [], CTX)
    assert req.endpoint.id == "network.list"
    assert req.target == "/v1.51/networks"


def test_hop_by_hop_and_connection_named_headers_dropped() -> None:
    """Hop-by-hop headers, headers named in Connection, Expect and Content-Length are dropped from
    the canonical headers; end-to-end headers are kept."""
    headers = [
        (b"host", b"docker"), (b"connection", b"Upgrade, X-Secret"), (b"upgrade", b"tcp"),
        (b"x-secret", b"1"), (b"keep-alive", b"5"), (b"te", b"trailers"),
        (b"proxy-authorization", b"Basic x"), (b"content-length", b"0"), (b"expect", b"100"),
        (b"x-registry-auth", b"abc"), (b"user-agent", b"Docker-Client/28"),
    ]
    req = admit_head("POST", b"/v1.51/containers/abc/attach?stream=1", headers, CTX)
    assert req.headers == (("x-registry-auth", "abc"), ("user-agent", "Docker-Client/28"))


def test_canonical_target_reencodes_path() -> None:
    """A percent-encoded path is decoded into its parameters and re-encoded canonically, with
    booleans in the query normalised."""
    req = admit_head("DELETE", b"/v1.51/images/%61lpine%3Alatest?force=true", [], CTX)
    assert req.params == {"name": "alpine:latest"}
    assert req.target == "/v1.51/images/alpine:latest?force=1"


def test_repeated_scalar_query_refused() -> None:
    """A scalar query parameter given twice is refused as repeated (the daemon would read one of
    them)."""
    err = refuse("GET", b"/v1.51/containers/json?all=0&all=1")
    assert isinstance(err, BadRequest)
    assert "repeated" in err.message


def test_media_type() -> None:
    """The JSON media type is recognised case-insensitively with parameters, and malformed or other
    types are not."""
    assert is_json_media_type("application/json")
    assert is_json_media_type("APPLICATION/JSON ; charset=utf-8")
    assert not is_json_media_type("application/json; charset")
    assert not is_json_media_type("text/json")


def test_max_version_constant() -> None:
    """The newest API version dockgate knows is 1.51."""
    assert MAX_API_VERSION == "1.51"


_seg = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x17F,
                                      exclude_characters="/"), min_size=1, max_size=8)
_templates = st.sampled_from([r.endpoint for r in ROUTES])


@given(_templates, st.lists(_seg, min_size=1, max_size=3),
       st.sampled_from(["", "1.24", "1.41", "1.44", "1.51"]),
       st.dictionaries(st.sampled_from(["all", "force", "filters", "t", "name", "tail"]),
                       st.text(max_size=6), max_size=3))
def test_admitted_targets_are_fixed_points(
    ep: Operation, names: list[str], version: str, params: dict[str, str]
) -> None:
    """Whatever admission accepts, its forwarded target is admitted again as
    the same request: the daemon reads what the decision saw."""
    path = ep.template
    for i, name in enumerate(re.findall(r"\{[a-z]+\}", ep.template)):
        path = path.replace(name, quote("/".join(names) if i == 0 and "images" in path
                                        else names[0], safe="/"), 1)
    target = (f"/v{version}" if version else "") + path
    if params:
        target += "?" + urlencode(params, quote_via=quote, safe="")
    try:
        req = admit_head(ep.method, target.encode(), [], CTX)
    except DockgateError:
        return
    again = admit_head(ep.method, req.target.encode(), [], CTX)
    assert again == req


@pytest.mark.parametrize("ct", [
    b"application/x-www-form-urlencoded",
    b"Application/X-WWW-Form-Urlencoded; charset=utf-8",
    b"multipart/form-data; boundary=B",
    b" Multipart/Form-Data ;boundary=B",
    # Go lower-cases U+0130 (UTF-8 C4 B0) to "i" and trims U+00A0 (C2 A0): both
    # are the form type to mime.ParseMediaType.
    b"appl\xc4\xb0cation/x-www-form-urlencoded",
    b"application/x-www-form-urlencoded\xc2\xa0",
    b"\xe2\x80\x83multipart/form-data; boundary=B",
    b"application/x-tar\x80",
])
def test_form_encoded_bodies_refused(ct: bytes) -> None:
    """Go's net/http would (or, for bytes outside printable ASCII, could) read the
    streamed body into r.Form beside the query that was decided: urlencoded through
    ParseForm, multipart through FormValue (moby's build handler), Unicode spellings
    through mime.ParseMediaType's Unicode lower-casing and trimming; all refused."""
    err = refuse("POST", b"/v1.51/build?t=app", [(b"content-type", ct)])
    assert isinstance(err, BadRequest)
    assert "read the body as query parameters" in err.message


@pytest.mark.parametrize("ct", [b"application/x-tar", b"application/json; charset=utf-8",
                                b"text/plain", b"application/octet-stream\t"])
def test_plain_content_types_pass(ct: bytes) -> None:
    """The media types clients send with a streamed or JSON body are kept as sent."""
    req = admit_head("POST", b"/v1.51/build?t=app", [(b"content-type", ct)], CTX)
    assert ("content-type", ct.decode()) in req.headers

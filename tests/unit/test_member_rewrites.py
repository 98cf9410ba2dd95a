"""Rewrites of a heavy body by its members: tenancy's owner label and pins, and the joins' pins.

A body over ``admit.HEAVY_BODY`` keeps where each top-level member lies in its
canonical bytes (``CanonicalRequest.body_members``), so that these rewrites
copy only the objects on their path and encode only the members they replace
(the owner label is spliced into the label map's bytes).  What is forwarded
must be byte for byte what encoding the whole new body gives, whatever shape
the client's body has, and the body that was decided must never change.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockgate.admission import jsonstrict
from dockgate.admission.admit import HEAVY_BODY, ApiContext, admit_body, admit_head
from dockgate.admission.jsonstrict import dumps, dumps_spans
from dockgate.errors import DockgateError
from dockgate.model import CanonicalRequest, copy_along
from dockgate.policy import joins, spelling
from dockgate.tenancy import OWNER_LABEL, Tenant, is_reserved_label, object_refs, pin, stamp

CTX = ApiContext()
A = Tenant("team-a")
FULL = "f" * 64
JSON_CT = [(b"content-type", b"application/json")]
FILLER = [f"X{i:05}=" + "v" * 40 for i in range(HEAVY_BODY // 40)]
"""An ``Env`` that makes a create body heavy without touching what is rewritten."""


def admitted(target: str, body: Any) -> CanonicalRequest:
    """``body`` admitted as a client's request (heavy ones keep their member spans)."""
    head = admit_head("POST", target.encode(), JSON_CT, CTX)
    return admit_body(head, json.dumps(body).encode(), CTX)


def spanned(target: str, body: dict[str, Any]) -> CanonicalRequest:
    """``body`` as a heavy body would be admitted (spans kept), without the schema, so
    that shapes the schema would refuse reach the rewrites too."""
    head = admit_head("POST", target.encode(), JSON_CT, CTX)
    encoded, spans = dumps_spans(body)
    assert spans is not None
    return replace(head, body=body, body_bytes=encoded, body_members=(body, encoded, spans))


def whole(request: CanonicalRequest) -> CanonicalRequest:
    """The same request without spans: every rewrite of it encodes the whole body."""
    return replace(request, body_members=None)


def outcome(rewrite: Any, request: CanonicalRequest) -> Any:
    """What ``rewrite(request)`` gives: its body and bytes (checked canonical, spans
    true), or the refusal it raises."""
    try:
        out = rewrite(request)
    except DockgateError as e:
        return type(e).__name__, e.message, e.status
    assert out.body_bytes == dumps(out.body)
    if out.body_members is not None:
        value, encoded, spans = out.body_members
        assert value is out.body and encoded is out.body_bytes
        assert spans == dumps_spans(out.body)[1]
    return out.body, out.body_bytes


def same_both_ways(rewrite: Any, request: CanonicalRequest) -> Any:
    """``rewrite`` by members and by a whole encoding give the same bytes (or refusal),
    and the request's own body is left as it was."""
    before = copy.deepcopy(request.body)
    by_members = outcome(rewrite, request)
    assert by_members == outcome(rewrite, whole(request))
    assert request.body == before
    assert request.body_bytes == dumps(before)
    return by_members


def stamped(request: CanonicalRequest) -> CanonicalRequest:
    return stamp(request, A)


_LABELS: list[Any] = [
    "absent", None, {}, {"a": "b"}, {"z": "1", "a": "2", "io.dockerx": "3"},
    {f"k{i:05}": "v" * 40 for i in range(HEAVY_BODY // 40)},  # the heavy member itself
    {"\u00e9t\u00e9": "\u00e7a", 'q"uote': 'v","io.dockgate.owner":"x', "back\\": "\\"},
    {"j": 1}, {"j": {"nested": "x"}}, ["not", "an", "object"], "text", 3,
]
_HOST: list[Any] = [
    "absent", None, {}, "bridge", {"NetworkMode": "container:web", "Binds": FILLER[:50]},
    {"Mounts": [{"Type": "volume", "Source": "v", "VolumeOptions": {"Labels": {"a": "b"}}}]},
]


@pytest.mark.parametrize("labels", _LABELS, ids=repr)
@pytest.mark.parametrize("host", _HOST, ids=repr)
def test_stamping_by_members_is_encoding_whole(labels: Any, host: Any) -> None:
    """A heavy create stamped with the owner label forwards exactly the bytes (or gets
    exactly the refusal) that stamping and encoding the whole body gives, whether its
    Labels and HostConfig are absent, null, empty, objects or not objects; the body
    that was decided is not changed."""
    body: dict[str, Any] = {"Image": "x", "Env": FILLER}
    if labels != "absent":
        body["Labels"] = labels
    if host != "absent":
        body["HostConfig"] = host
    got = same_both_ways(stamped, spanned("/v1.41/containers/create", body))
    if isinstance(labels, dict):
        assert got[0]["Labels"] == {**labels, OWNER_LABEL: "team-a"}


@pytest.mark.parametrize("target,body", [
    ("/v1.41/volumes/create", {"Name": "v", "DriverOpts": {"o": "x" * HEAVY_BODY}}),
    ("/v1.41/networks/create", {"Name": "n", "Labels": {"a": "x" * HEAVY_BODY}}),
    ("/v1.43/networks/create", {"Name": "n", "Options": {"a": "x" * HEAVY_BODY}}),
    ("/v1.41/commit?container=c", {"Env": FILLER, "Labels": {"b": "c"}}),
    ("/v1.41/services/create", {"Name": "s", "Labels": {"x": "y" * HEAVY_BODY},
                                "TaskTemplate": {"ContainerSpec": {"Image": "i",
                                                                   "Labels": {"l": "m"}}}}),
])
def test_admitted_heavy_bodies_stamp_as_encoded_whole(target: str, body: Any) -> None:
    """Heavy volume, network (one that gets CheckDuplicate too), commit and service
    bodies as admission gives them: stamped by members, they forward what stamping
    and encoding whole gives, and the service's task labels get the owner too."""
    request = admitted(target, body)
    assert request.body_members is not None
    got = same_both_ways(stamped, request)
    assert got[0]["Labels"][OWNER_LABEL] == "team-a"
    if "services" in target:
        assert got[0]["TaskTemplate"]["ContainerSpec"]["Labels"] == {"l": "m",
                                                                      OWNER_LABEL: "team-a"}


def create_with_joins() -> CanonicalRequest:
    return admitted("/v1.41/containers/create", {
        "Image": "x", "Env": FILLER, "Labels": {"app": "web"},
        "HostConfig": {"NetworkMode": "container:web", "VolumesFrom": ["data:ro"],
                       "Links": ["/db"], "Binds": ["vol:/v"]},
        "NetworkingConfig": {"EndpointsConfig": {"front": {"Links": ["cache:c"]}}},
    })


def test_a_tenant_create_pinned_by_members_is_encoded_whole() -> None:
    """Stamping, then pinning every container and network the create names (tenancy),
    then pinning what it joins (``joins.pin``), one after the other as a tenant's
    create goes: each step's bytes are those of encoding its whole body, the
    earlier requests' bodies are unchanged, and the spans stay true to the end."""
    def chain(request: CanonicalRequest) -> CanonicalRequest:
        request = stamp(request, A)
        for ref in object_refs(request):
            request = pin(request, ref, FULL if ref.kind == "container" else "n" * 64)
        for jref in joins.join_refs(request):
            request = joins.pin(request, jref, "e" * 64)
        return request

    request = create_with_joins()
    body, _ = same_both_ways(chain, request)
    host = body["HostConfig"]
    assert host["NetworkMode"] == "container:" + "e" * 64
    assert host["VolumesFrom"] == ["e" * 64 + ":ro"]
    assert body["NetworkingConfig"]["EndpointsConfig"] == {"n" * 64: {"Links": ["e" * 64 + ":c"]}}
    assert body["Env"] is request.body["Env"]  # untouched members are shared, not copied
    assert chain(request).body_members is not None


def test_copy_along_copies_only_its_path() -> None:
    """``copy_along`` copies the objects and arrays on the path, shares everything off
    it, and refuses a path through a missing key or a scalar."""
    body = {"A": {"B": [{"C": "x"}, {"D": "y"}], "E": {"F": 1}}, "G": [1]}
    new, node = copy_along(body, ("A", "B", 0))
    node["C"] = "z"
    assert body["A"]["B"][0] == {"C": "x"}
    assert new["A"]["B"][0] == {"C": "z"}
    assert new["A"]["E"] is body["A"]["E"] and new["G"] is body["G"]
    assert new["A"]["B"][1] is body["A"]["B"][1]
    with pytest.raises(KeyError):
        copy_along(body, ("Z",))
    with pytest.raises(TypeError):
        copy_along(body, ("A", "E", "F", "x"))


_TEXT = st.lists(st.sampled_from(
    ['a', 'z', 'i', 'o', '.', 'd', ',', '"', ':', '\\', '{', '}', ' ', '\n', '\x00',
     '\u00e9', '\ud7ff', '\U0001f600', 'io.dockgate.', 'k', 'J', '","', '":"']),
    max_size=6).map("".join)


@settings(max_examples=300, deadline=None)
@given(labels=st.dictionaries(_TEXT, _TEXT, max_size=12), key=_TEXT, value=_TEXT)
def test_a_member_spliced_into_a_map_of_strings_is_its_encoding(
        labels: dict[str, str], key: str, value: str) -> None:
    """``with_string_member`` gives ``dumps`` of the map with the member added, for keys
    and values full of quotes, commas, colons, backslashes and non-ASCII text (they
    cannot fool its search for where the member goes), and declines (None) a map
    that has the key already or a value that is not a string."""
    encoded = dumps(labels)
    got = jsonstrict.with_string_member(encoded, labels, key, value)
    if key in labels:
        assert got is None
    else:
        assert got == dumps({**labels, key: value})
    assert jsonstrict.with_string_member(dumps({**labels, "n": 1}), {**labels, "n": 1},
                                         key + "\U0001f600", value) is None


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(labels=st.one_of(st.just("absent"), st.dictionaries(_TEXT, _TEXT, max_size=10), _JSON),
       host=st.one_of(st.just("absent"), _JSON,
                      st.fixed_dictionaries({"NetworkMode": st.just("container:web")},
                                            optional={"Links": st.just(["db:d"])})),
       rest=st.dictionaries(_TEXT, _JSON, max_size=4))
def test_stamp_and_pin_by_members_are_encoding_whole(labels: Any, host: Any,
                                                     rest: dict[str, Any]) -> None:
    """For any shape of create body (Labels and HostConfig absent, null, scalars, arrays,
    objects of strings or not; other members anything): stamping and then pinning
    its container references by members forwards the bytes, or gets the refusal,
    that doing so with whole encodings gives; the admitted body is never changed."""
    body: dict[str, Any] = {k: v for k, v in rest.items() if k not in ("Labels", "HostConfig")}
    body["Image"] = "x"
    if labels != "absent":
        body["Labels"] = labels
    if host != "absent":
        body["HostConfig"] = host

    def chain(request: CanonicalRequest) -> CanonicalRequest:
        request = stamp(request, A)
        for ref in object_refs(request):
            if ref.kind == "container":
                request = pin(request, ref, FULL)
        for jref in joins.join_refs(request):
            request = joins.pin(request, jref, FULL)
        return request

    same_both_ways(chain, spanned("/v1.41/containers/create", body))


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(st.one_of(_TEXT, st.sampled_from(
    ["io.dockgate.owner", "IO.Dockgate.x", " io.dockgate.a", "io.dock gate.b", "io.dockgatex",
     "\uff49o.dockgate.c", "io.\u200bdockgate.d", "xio.dockgate.", "io.docker.e"])), max_size=6))
def test_label_keys_checked_at_once_are_checked_as_one_by_one(keys: list[str]) -> None:
    """A label map is refused exactly when one of its keys spells a dockgate label
    (``is_reserved_label``), whether its keys are checked all at once (printable
    ASCII without spaces) or one by one (any other)."""
    labels = dict.fromkeys(keys, "v")
    reserved = any(is_reserved_label(k) for k in labels)
    got = outcome(stamped, spanned("/v1.41/containers/create", {"Image": "x", "Labels": labels}))
    assert (got[0] == "Forbidden") == reserved


@settings(max_examples=300, deadline=None)
@given(binds=st.lists(st.lists(st.sampled_from(["/", "srv", "vol", ":", "ro", "rw", "", "a,b"]),
                               max_size=6).map("".join), max_size=6))
def test_binds_from_host_paths_name_no_volume(binds: list[str]) -> None:
    """The volumes a create's ``Binds`` name are those ``spelling.parse_bind`` reads as
    named volumes, although binds from a host path (``/...``) are skipped unparsed."""
    def named(bind: str) -> bool:
        try:
            parsed = spelling.parse_bind(bind)
        except ValueError:
            return False
        return bool(parsed.source) and not parsed.is_host_path

    request = spanned("/v1.41/containers/create", {"Image": "x", "HostConfig": {"Binds": binds}})
    found = [(ref.ref, ref.path) for ref in object_refs(request) if ref.kind == "volume"]
    assert found == [(spelling.parse_bind(b).source, ("HostConfig", "Binds", i))
                     for i, b in enumerate(binds) if named(b)]

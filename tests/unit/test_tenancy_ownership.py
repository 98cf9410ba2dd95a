"""Ownership: stamping, list scoping, object references, pinning, access, responses."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockgate.admission import ApiContext, admit_body, admit_head
from dockgate.errors import BadRequest, Forbidden
from dockgate.model import CanonicalRequest
from dockgate.tenancy import (
    OWNER_LABEL,
    ObjectRef,
    Tenant,
    admin_only,
    event_visible,
    exec_container,
    filter_list,
    full_id,
    inspect_target,
    is_reserved_label,
    labelless_event_object,
    may_access,
    not_yours,
    object_refs,
    owner_of,
    pin,
    scope_list,
    stamp,
)

CTX = ApiContext()
A = Tenant("team-a")
B = Tenant("team-b")
ADMIN = Tenant("ops", admin=True)
FULL = "f" * 64


def req(method: str, target: str, body: Any = None, content_type: bool = True) -> CanonicalRequest:
    headers = [(b"content-type", b"application/json")] if content_type else []
    r = admit_head(method, target.encode(), headers, CTX)
    if body is not None:
        r = admit_body(r, json.dumps(body).encode(), CTX)
    return r


def consistent(r: CanonicalRequest) -> None:
    """body_bytes is the canonical serialisation of body, and the request re-admits to itself."""
    if r.body is None:
        assert r.body_bytes is None
        return
    assert r.body_bytes is not None
    assert json.loads(r.body_bytes) == r.body
    again = admit_body(admit_head(r.method, r.target.encode(),
                                  [(n.encode(), v.encode()) for n, v in r.headers], CTX),
                       r.body_bytes, CTX)
    assert again.body == r.body and again.body_bytes == r.body_bytes
    assert again.query == r.query and again.path == r.path


# -- stamp ------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/v1.41/containers/create", "/v1.51/volumes/create",
                                    "/v1.41/networks/create", "/v1.41/secrets/create",
                                    "/v1.41/configs/create"])
def test_stamp_sets_labels(target: str) -> None:
    """Creating a container, volume, network, secret or config adds the tenant's owner label beside
    the client's labels, and the body stays consistent with its bytes."""
    body: dict[str, Any] = {"Labels": {"app": "web"}}
    if "containers" in target:
        body["Image"] = "busybox"
    if "networks" in target or "secrets" in target or "configs" in target:
        body["Name"] = "n"
    r = stamp(req("POST", target, body), A)
    assert r.body["Labels"] == {"app": "web", OWNER_LABEL: "team-a"}
    consistent(r)


def test_stamp_without_labels_and_admin() -> None:
    """A create without Labels gets a Labels object holding only the owner label; an admin tenant is
    stamped with its own name too."""
    r = stamp(req("POST", "/v1.41/containers/create", {"Image": "busybox"}), ADMIN)
    assert r.body["Labels"] == {OWNER_LABEL: "ops"}
    consistent(r)


def test_stamp_volume_without_body_adds_content_type() -> None:
    """A volume create sent without a body gets a JSON body with the owner label and a JSON Content-
    Type header."""
    r = stamp(req("POST", "/v1.41/volumes/create", None, content_type=False), A)
    assert r.body == {"Labels": {OWNER_LABEL: "team-a"}}
    assert ("content-type", "application/json") in r.headers
    consistent(r)


@pytest.mark.parametrize("key", [OWNER_LABEL, "IO.DOCKGATE.OWNER", " io.dockgate.owner ",
                                 "io.dockgate.other", "Io.Dockgate.Owner\t",
                                 "io.dockgate.owner\u200b", "\uff49o.dockgate.owner"])
def test_stamp_refuses_spoofed_owner(key: str) -> None:
    """A client label that is the owner label or any lookalike (case, padding, other io.dockgate
    keys, zero-width or fullwidth characters) is refused as reserved."""
    with pytest.raises(Forbidden, match="reserved"):
        stamp(req("POST", "/v1.41/containers/create",
                  {"Image": "busybox", "Labels": {key: "team-b"}}), A)


@settings(max_examples=100, deadline=None)
@given(flips=st.lists(st.booleans(), min_size=len(OWNER_LABEL), max_size=len(OWNER_LABEL)),
       pre=st.sampled_from(["", " ", "\t", "\n", "\u00a0", "\u200b", "\u3000"]),
       post=st.sampled_from(["", " ", "\t", "\ufeff", "\u2003"]),
       where=st.sampled_from(["container", "volume", "network", "build", "service"]))
def test_no_case_variant_of_the_owner_label_gets_through(
    flips: list[bool], pre: str, post: str, where: str
) -> None:
    """Property: no case flip or Unicode padding of the owner label passes stamping on containers,
    volumes, networks, services or builds."""
    key = pre + "".join(c.upper() if f else c for c, f in zip(OWNER_LABEL, flips, strict=True)) \
        + post
    labels = {key: "team-b"}
    if where == "container":
        r = req("POST", "/v1.41/containers/create", {"Image": "x", "Labels": labels})
    elif where == "volume":
        r = req("POST", "/v1.41/volumes/create", {"Labels": labels})
    elif where == "network":
        r = req("POST", "/v1.41/networks/create", {"Name": "n", "Labels": labels})
    elif where == "service":
        r = req("POST", "/v1.41/services/create",
                {"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "x", "Labels": labels}}})
    else:
        r = req("POST", "/v1.41/build?labels=" + quote(json.dumps(labels)))
    assert is_reserved_label(key)
    with pytest.raises(Forbidden):
        stamp(r, A)


def test_stamp_build_labels_query() -> None:
    """A build's labels query gains the owner label (merged with the client's, canonical JSON),
    keeps the query sorted, and is added when absent."""
    r = stamp(req("POST", "/v1.41/build?t=x&labels=" + quote('{"a":"b"}') + "&q=1"), A)
    assert dict(r.query)["labels"] == json.dumps({"a": "b", OWNER_LABEL: "team-a"},
                                                 separators=(",", ":"), sort_keys=True)
    assert [k for k, _ in r.query] == sorted(k for k, _ in r.query)
    r = stamp(req("POST", "/v1.41/build"), A)
    assert dict(r.query)["labels"] == '{"io.dockgate.owner":"team-a"}'
    assert "labels=%7B%22io.dockgate.owner%22%3A%22team-a%22%7D" in r.target


def test_stamp_commit() -> None:
    """A commit gets the owner label in its config body (created if absent), and a LABEL instruction
    in changes, in any case or under ONBUILD, is refused."""
    r = stamp(req("POST", "/v1.41/commit?container=web&repo=me/img", {"Cmd": ["sh"]}), A)
    assert r.body == {"Cmd": ["sh"], "Labels": {OWNER_LABEL: "team-a"}}
    consistent(r)
    r = stamp(req("POST", "/v1.41/commit?container=web", None, content_type=False), A)
    assert r.body == {"Labels": {OWNER_LABEL: "team-a"}}
    for change in ["LABEL io.dockgate.owner=team-b", "label a=b", "ONBUILD LABEL x=y",
                   "  Label x=y", "onbuild   label x=y"]:
        with pytest.raises(Forbidden, match="LABEL"):
            stamp(req("POST", "/v1.41/commit?container=web&changes=" + quote(change),
                      {"Cmd": ["sh"]}), A)
    # other changes are fine
    stamp(req("POST", "/v1.41/commit?container=web&changes=" + quote("ENV A=1"), {}), A)


def test_stamp_import_appends_label() -> None:
    """An image import appends a LABEL change with the owner, refuses client LABEL changes, and a
    pull (the shared cache) is left unstamped."""
    r = stamp(req("POST", "/v1.41/images/create?fromSrc=-&repo=me/x&changes=" + quote("ENV A=1")),
              A)
    assert [v for k, v in r.query if k == "changes"] == ["ENV A=1", f"LABEL {OWNER_LABEL}=team-a"]
    # a pull is not stamped: pulled images are the shared cache
    pull = req("POST", "/v1.41/images/create?fromImage=busybox&tag=latest")
    assert stamp(pull, A) is pull
    with pytest.raises(Forbidden):
        stamp(req("POST", "/v1.41/images/create?fromSrc=-&changes=" + quote("LABEL a=b")), A)


def test_stamp_service() -> None:
    """A service create is stamped both on the service and on its task's container spec."""
    r = stamp(req("POST", "/v1.41/services/create",
                  {"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "x"}}}), A)
    assert r.body["Labels"] == {OWNER_LABEL: "team-a"}
    assert r.body["TaskTemplate"]["ContainerSpec"]["Labels"] == {OWNER_LABEL: "team-a"}


def test_stamp_leaves_others_alone() -> None:
    """A request that creates nothing is returned unchanged (the same object)."""
    r = req("POST", "/v1.41/containers/abc/start")
    assert stamp(r, A) is r


# -- scope_list -------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/v1.41/containers/json?all=1", "/v1.41/volumes",
                                    "/v1.41/networks", "/v1.41/images/json",
                                    "/v1.41/containers/prune", "/v1.41/volumes/prune",
                                    "/v1.41/networks/prune", "/v1.41/images/prune"])
def test_scope_list_adds_owner_filter(target: str) -> None:
    """Lists and prunes of containers, volumes, networks and images get a label filter for the
    tenant's owner, in a form admission accepts as canonical."""
    method = "POST" if target.endswith("prune") else "GET"
    r = scope_list(req(method, target), A)
    assert json.loads(dict(r.query)["filters"]) == {"label": {f"{OWNER_LABEL}=team-a": True}}
    # the result is a request admission accepts as canonical
    again = admit_head(method, r.target.encode(), [], CTX)
    assert again.query == r.query


def test_scope_list_leaves_events_to_the_line_filter() -> None:
    """A label filter would make the daemon drop the tenant's own volume and network
    events (they carry no labels): /events is filtered line by line instead."""
    f = quote(json.dumps({"type": ["volume"]}))
    r = req("GET", "/v1.41/events?filters=" + f)
    assert scope_list(r, A) is r


def test_scope_list_merges_client_filters() -> None:
    """The owner filter is merged into the client's own filters; a client naming another tenant's
    owner label gets both labels, so nothing matches."""
    f = quote(json.dumps({"label": ["app=web"], "status": ["running"]}))
    r = scope_list(req("GET", "/v1.41/containers/json?filters=" + f), A)
    assert json.loads(dict(r.query)["filters"]) == {
        "label": {"app=web": True, f"{OWNER_LABEL}=team-a": True},
        "status": {"running": True},
    }
    # a client asking for another tenant's objects gets the intersection: nothing
    f = quote(json.dumps({"label": [f"{OWNER_LABEL}=team-b"]}))
    r = scope_list(req("GET", "/v1.41/containers/json?filters=" + f), A)
    assert set(json.loads(dict(r.query)["filters"])["label"]) == {
        f"{OWNER_LABEL}=team-b", f"{OWNER_LABEL}=team-a"}


def test_scope_list_admin_and_other_endpoints_unchanged() -> None:
    """Lists by an admin tenant, and endpoints that are not scoped lists, are left unchanged."""
    r = req("GET", "/v1.41/containers/json")
    assert scope_list(r, ADMIN) is r
    r = req("GET", "/v1.41/info")
    assert scope_list(r, A) is r


def test_scope_list_unmergeable() -> None:
    """A filters value that is not a JSON object cannot be merged with the owner filter and is
    refused with 400."""
    r = replace(req("GET", "/v1.41/containers/json"), query=(("filters", "[1]"),))
    with pytest.raises(BadRequest):
        scope_list(r, A)


def test_admin_only() -> None:
    """Host-wide, swarm, plugin and image-load endpoints are admin-only; container, build and event
    endpoints are not."""
    for ep in ("system.df", "build.prune", "service.create", "plugin.pull", "swarm.init",
               "secret.list", "image.load"):
        assert admin_only(ep)
    for ep in ("container.create", "container.list", "image.build", "system.events"):
        assert not admin_only(ep)


# -- object_refs --------------------------------------------------------------------


def refs_of(r: CanonicalRequest) -> list[tuple[str, str, str, str, str]]:
    return [(x.kind, x.ref, x.where, x.key, x.access) for x in object_refs(r)]


@pytest.mark.parametrize(("method", "target", "expect"), [
    ("GET", "/v1.41/containers/web/json", [("container", "web", "path", "id", "write")]),
    ("POST", "/v1.41/containers/web/exec", [("container", "web", "path", "id", "write")]),
    ("POST", "/v1.41/exec/abc/resize?h=1&w=1", [("exec", "abc", "path", "id", "write")]),
    ("DELETE", "/v1.41/volumes/data", [("volume", "data", "path", "name", "write")]),
    ("GET", "/v1.41/networks/front", [("network", "front", "path", "id", "write")]),
    ("GET", "/v1.41/images/docker.io/library/alpine:3/json",
     [("image", "docker.io/library/alpine:3", "path", "name", "read")]),
    ("DELETE", "/v1.41/images/me/x", [("image", "me/x", "path", "name", "write")]),
    ("POST", "/v1.41/images/me/x/tag?repo=alpine&tag=latest",
     [("image", "me/x", "path", "name", "read"), ("image", "alpine:latest", "query", "repo",
                                                  "write")]),
    ("POST", "/v1.41/commit?container=web&repo=me/img&tag=1",
     [("container", "web", "query", "container", "write"),
      ("image", "me/img:1", "query", "repo", "write")]),
    ("POST", "/v1.41/build?t=me/a&t=me/b:2&cachefrom=" + quote('["me/c"]'),
     [("image", "me/a", "query", "t[0]", "write"), ("image", "me/b:2", "query", "t[1]", "write"),
      ("image", "me/c", "query", "cachefrom[0]", "read")]),
    ("GET", "/v1.41/info", []),
    ("GET", "/v1.41/containers/json", []),
])
def test_refs_in_paths_and_queries(method: str, target: str, expect: list[Any]) -> None:
    """Object references are found in paths and queries (ids, names, tag repos, commit containers,
    build tags and cache-from), with their kind, place and whether they read or write."""
    assert refs_of(req(method, target)) == expect


def test_refs_in_container_create() -> None:
    """Every reference in a container create body (image, volumes-from, namespace modes, links,
    volume mounts and binds, endpoint links and network keys) is found with its field path; host
    paths and anonymous volumes are not."""
    r = req("POST", "/v1.41/containers/create", {
        "Image": "busybox",
        "HostConfig": {
            "VolumesFrom": ["data:ro", "other"],
            "NetworkMode": "container:net1",
            "PidMode": "container:pid1",
            "IpcMode": "container:ipc1",
            "Links": ["db:database", "/cache"],
            "Mounts": [{"Type": "volume", "Source": "vol1", "Target": "/a"},
                       {"Type": "bind", "Source": "/etc", "Target": "/b"},
                       {"Type": "volume", "Target": "/anon"}],
            "Binds": ["vol2:/c:ro", "/host:/d", "/anon2"],
        },
        "NetworkingConfig": {"EndpointsConfig": {"front": {"Links": ["x:y"]},
                                                 "bridge": {}}},
    })
    assert refs_of(r) == [
        ("image", "busybox", "body", "Image", "read"),
        ("container", "data", "body", "HostConfig.VolumesFrom[0]", "write"),
        ("container", "other", "body", "HostConfig.VolumesFrom[1]", "write"),
        ("container", "net1", "body", "HostConfig.NetworkMode", "write"),
        ("container", "pid1", "body", "HostConfig.PidMode", "write"),
        ("container", "ipc1", "body", "HostConfig.IpcMode", "write"),
        ("container", "db", "body", "HostConfig.Links[0]", "write"),
        ("container", "/cache", "body", "HostConfig.Links[1]", "write"),
        ("volume", "vol1", "body", "HostConfig.Mounts[0].Source", "write"),
        ("volume", "vol2", "body", "HostConfig.Binds[0]", "write"),
        ("container", "x", "body", "NetworkingConfig.EndpointsConfig.front.Links[0]", "write"),
        ("network", "front", "body", "NetworkingConfig.EndpointsConfig.front (key)", "write"),
    ]


def test_refs_network_mode_names_a_network() -> None:
    """A NetworkMode naming a user network is a network reference, while the built-in modes (bridge,
    host, none, default, empty) are not."""
    r = req("POST", "/v1.41/containers/create",
            {"Image": "x", "HostConfig": {"NetworkMode": "backend"}})
    assert ("network", "backend", "body", "HostConfig.NetworkMode", "write") in refs_of(r)
    for mode in ("bridge", "host", "none", "default", ""):
        r = req("POST", "/v1.41/containers/create",
                {"Image": "x", "HostConfig": {"NetworkMode": mode}})
        assert [k for k, *_ in refs_of(r)] == ["image"]


def test_refs_network_connect() -> None:
    """Connecting to a network references the network, the container and its links."""
    r = req("POST", "/v1.41/networks/front/connect",
            {"Container": "web", "EndpointConfig": {"Links": ["db:d"]}})
    assert refs_of(r) == [("network", "front", "path", "id", "write"),
                          ("container", "web", "body", "Container", "write"),
                          ("container", "db", "body", "EndpointConfig.Links[0]", "write")]


_NAME = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,20}", fullmatch=True)
_FIELDS = ["VolumesFrom", "NetworkMode", "PidMode", "IpcMode", "Links", "Mounts", "Binds",
           "Endpoints", "EndpointLinks"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_FIELDS), _NAME), min_size=1, max_size=8))
def test_every_body_reference_is_found_and_pinned(entries: list[tuple[str, str]]) -> None:
    """Property: in random create bodies every container, volume and network reference is found, and
    pinning them all to full ids leaves none of the old names."""
    host: dict[str, Any] = {}
    endpoints: dict[str, Any] = {}
    for field, name in entries:
        if field in ("NetworkMode", "PidMode", "IpcMode"):
            host[field] = f"container:{name}"
        elif field == "VolumesFrom":
            host.setdefault(field, []).append(f"{name}:ro")
        elif field == "Links":
            host.setdefault(field, []).append(f"{name}:alias")
        elif field == "Mounts":
            host.setdefault(field, []).append({"Type": "volume", "Source": name, "Target": "/m"})
        elif field == "Binds":
            host.setdefault(field, []).append(f"{name}:/b")
        elif field == "Endpoints":
            endpoints.setdefault(name, {})
        else:
            endpoints.setdefault("net0", {}).setdefault("Links", []).append(name)
    expected: set[tuple[str, str]] = set()
    for field in ("NetworkMode", "PidMode", "IpcMode"):
        if field in host:
            expected.add(("container", host[field].split(":", 1)[1]))
    expected |= {("container", v.split(":")[0]) for v in host.get("VolumesFrom", ())}
    expected |= {("container", v.split(":")[0]) for v in host.get("Links", ())}
    expected |= {("volume", m["Source"]) for m in host.get("Mounts", ())}
    expected |= {("volume", b.split(":")[0]) for b in host.get("Binds", ())}
    for net, opts in endpoints.items():
        if net.lower() not in ("bridge", "host", "none", "default", "nat"):
            expected.add(("network", net))
        expected |= {("container", link) for link in opts.get("Links", ())}
    body: dict[str, Any] = {"Image": "img", "HostConfig": host}
    if endpoints:
        body["NetworkingConfig"] = {"EndpointsConfig": endpoints}
    r = req("POST", "/v1.41/containers/create", body)
    found = object_refs(r)
    assert {(x.kind, x.ref) for x in found if x.kind != "image"} == expected
    # pinning every container/network reference leaves none of the old names
    def full(ref: ObjectRef) -> str:
        return hashlib.sha256(f"{ref.kind}/{ref.ref}".encode()).hexdigest()

    pinned = r
    for ref in found:
        pinned = pin(pinned, ref, full(ref))
    consistent(pinned)
    ids = {full(x) for x in found}
    for ref in object_refs(pinned):
        assert ref.kind not in ("container", "network") or ref.ref in ids


# -- inspect, owners, access ------------------------------------------------------


def test_inspect_target() -> None:
    """Each object kind is inspected at the daemon's own path, escaped; a reference that could
    change the path (slash, dot-dot, empty, newline) is refused."""
    def t(kind: Any, ref: str, version: str | None = "1.41") -> str:
        return inspect_target(ObjectRef(kind, ref, "path", "id"), version)

    assert t("container", "web") == "/v1.41/containers/web/json"
    assert t("container", "/web") == "/v1.41/containers/web/json"
    assert t("exec", "e1", None) == "/exec/e1/json"
    assert t("volume", "data") == "/v1.41/volumes/data"
    assert t("network", "front") == "/v1.41/networks/front"
    assert t("image", "docker.io/library/alpine:3") == \
        "/v1.41/images/docker.io/library/alpine:3/json"
    assert t("container", "a b?") == "/v1.41/containers/a%20b%3F/json"
    for kind, bad in [("container", "a/b"), ("volume", "../x"), ("network", ""),
                      ("container", "/"), ("image", "a/../b"), ("image", "a//b"),
                      ("container", "a\nb")]:
        with pytest.raises(BadRequest):
            t(kind, bad)


def test_owner_and_id() -> None:
    """owner_of and full_id read the owner label and the full id from each kind's inspect answer; an
    answer without an id and an exec without a container are errors."""
    container = {"Id": FULL, "Config": {"Labels": {OWNER_LABEL: "team-a"}}}
    assert owner_of("container", container) == "team-a"
    assert full_id("container", container) == FULL
    assert owner_of("image", {"Id": "sha256:x", "Config": {"Labels": None}}) is None
    assert owner_of("volume", {"Name": "v", "Labels": {OWNER_LABEL: "team-b"}}) == "team-b"
    assert full_id("volume", {"Name": "v"}) == "v"
    assert owner_of("network", {"Id": "n", "Labels": {}}) is None
    assert full_id("exec", {"ID": "e"}) == "e"
    assert owner_of("service", {"ID": "s", "Spec": {"Labels": {OWNER_LABEL: "t"}}}) == "t"
    with pytest.raises(ValueError):
        full_id("container", {})
    follow = exec_container({"ID": "e", "ContainerID": FULL})
    assert (follow.kind, follow.ref) == ("container", FULL)
    with pytest.raises(ValueError):
        exec_container({"ID": "e"})


def test_may_access() -> None:
    """A tenant may use its own objects; unowned images only for reading; an admin tenant
    everything."""
    assert may_access(A, "team-a")
    assert not may_access(A, "team-b")
    assert not may_access(A, None)
    assert may_access(ADMIN, None) and may_access(ADMIN, "team-b")
    read = ObjectRef("image", "alpine", "path", "name", "read")
    write = ObjectRef("image", "alpine", "path", "name", "write")
    assert may_access(A, None, read)
    assert not may_access(A, None, write)
    assert not may_access(A, "team-b", read)
    assert not may_access(A, None, ObjectRef("container", "x", "path", "id", "read"))


# -- pin ----------------------------------------------------------------------------


def test_pin_path() -> None:
    """Pinning rewrites a path reference to the full id (target and params) and a body reference in
    place, keeping the body consistent."""
    r = req("POST", "/v1.41/containers/web/kill?signal=KILL")
    (ref,) = object_refs(r)
    p = pin(r, ref, FULL)
    assert p.target == f"/v1.41/containers/{FULL}/kill?signal=KILL"
    assert p.params == {"id": FULL}
    r = req("POST", "/v1.41/networks/front/connect", {"Container": "web"})
    net, ctr = object_refs(r)
    p = pin(pin(r, net, "n" * 64), ctr, FULL)
    assert p.path == f"/networks/{'n' * 64}/connect"
    assert p.body == {"Container": FULL}
    consistent(p)


def test_pin_body_forms() -> None:
    """Pinning rewrites volumes-from (keeping :ro), container: network modes and links (keeping
    aliases), but not the image."""
    r = req("POST", "/v1.41/containers/create", {
        "Image": "x",
        "HostConfig": {"VolumesFrom": ["data:ro", "d2"], "NetworkMode": "container:n",
                       "Links": ["db:database", "/cache"]},
    })
    p = r
    for ref in object_refs(r):
        p = pin(p, ref, FULL)
    hc = p.body["HostConfig"]
    assert hc["VolumesFrom"] == [f"{FULL}:ro", FULL]
    assert hc["NetworkMode"] == f"container:{FULL}"
    assert hc["Links"] == [f"{FULL}:database", f"{FULL}:cache"]
    assert p.body["Image"] == "x"  # images are not pinned
    consistent(p)


def test_pin_endpoints_key_and_query() -> None:
    """Pinning a network rewrites NetworkMode and the EndpointsConfig key, and a commit's container
    query is pinned too."""
    r = req("POST", "/v1.41/containers/create", {
        "Image": "x", "HostConfig": {"NetworkMode": "front"},
        "NetworkingConfig": {"EndpointsConfig": {"front": {"Aliases": ["a"]}}},
    })
    p = r
    for ref in object_refs(r):
        p = pin(p, ref, "n" * 64)
    assert p.body["HostConfig"]["NetworkMode"] == "n" * 64
    assert p.body["NetworkingConfig"]["EndpointsConfig"] == {"n" * 64: {"Aliases": ["a"]}}
    r = req("POST", "/v1.41/commit?container=web&repo=x")
    p = pin(r, object_refs(r)[0], FULL)
    assert dict(p.query)["container"] == FULL


def test_pin_volumes_and_images_unchanged() -> None:
    """Volumes (named by name) and images are not rewritten by pinning: the request is returned as
    is."""
    r = req("DELETE", "/v1.41/volumes/data")
    assert pin(r, object_refs(r)[0], "data") is r
    r = req("DELETE", "/v1.41/images/alpine:3")
    assert pin(r, object_refs(r)[0], "sha256:" + "a" * 64) is r


def test_pin_foreign_ref() -> None:
    """Pinning a reference that is not in the request is an error, not a silent no-op."""
    r = req("POST", "/v1.41/containers/web/kill")
    with pytest.raises(ValueError):
        pin(r, ObjectRef("container", "x", "path", "name", "write", ("name",)), FULL)
    with pytest.raises(ValueError):
        pin(r, ObjectRef("container", "x", "body", "Container", "write", ("Container",)), FULL)


# -- responses ----------------------------------------------------------------------


def test_event_visible() -> None:
    """An event is visible to a tenant only when its actor carries the tenant's owner label (or, for
    label-less volumes and networks, the daemon named the tenant's object); daemon events and old-
    format events are not; an admin sees all."""
    mine = {"Type": "container", "Action": "start",
            "Actor": {"ID": "c1", "Attributes": {OWNER_LABEL: "team-a", "name": "web"}}}
    theirs = {"Type": "container", "Action": "start",
              "Actor": {"ID": "c2", "Attributes": {OWNER_LABEL: "team-b"}}}
    volume = {"Type": "volume", "Action": "create", "Actor": {"ID": "data", "Attributes": {}}}
    labelled = {"Type": "network", "Action": "create",
                "Actor": {"ID": "n1", "Attributes": {OWNER_LABEL: "team-a"}}}
    daemon = {"Type": "daemon", "Action": "reload",
              "Actor": {"ID": "d", "Attributes": {OWNER_LABEL: "team-a"}}}
    assert event_visible(mine, A)
    assert not event_visible(theirs, A)
    assert not event_visible(volume, A)
    assert event_visible(volume, A, {("volume", "data")})
    assert not event_visible(volume, A, {("network", "data")})  # the kind is part of the key
    assert not event_visible(labelled, A)  # only the daemon's answer counts for networks
    assert not event_visible(daemon, A)
    assert all(event_visible(e, ADMIN) for e in (mine, theirs, volume, daemon))
    assert not event_visible({"status": "x"}, A)
    assert not event_visible({"status": "start", "id": "c9"}, A)  # old format: no labels
    assert labelless_event_object(volume) == ("volume", "data")
    assert labelless_event_object(mine) is None
    assert labelless_event_object({"Type": "network", "Actor": {"ID": ""}}) is None


def test_filter_list() -> None:
    """Filtering a list keeps only items labelled with the tenant's owner (dropping junk items); an
    admin gets the list unchanged."""
    items = [{"Id": "1", "Labels": {OWNER_LABEL: "team-a"}}, {"Id": "2", "Labels": None},
             {"Id": "3", "Labels": {OWNER_LABEL: "team-b"}}, "junk"]
    assert [i["Id"] for i in filter_list("container", items, A)] == ["1"]
    assert filter_list("container", items, ADMIN) == items


def test_not_yours() -> None:
    """Using another tenant's object is a 403 not-owner refusal naming the object, the field and the
    tenant."""
    e = not_yours(ObjectRef("container", "web", "body", "HostConfig.VolumesFrom[0]"), A)
    assert e.status == 403 and e.reason == "not-owner"
    assert e.message == ("container 'web' (HostConfig.VolumesFrom[0]) belongs to another "
                         "tenant than team-a")

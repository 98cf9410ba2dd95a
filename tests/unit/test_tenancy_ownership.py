"""Ownership: stamping, list scoping, object references, pinning, access, responses."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockgate.admission.admit import ApiContext, admit_body, admit_head
from dockgate.errors import BadRequest, Forbidden
from dockgate.model import CanonicalRequest, Decision
from dockgate.tenancy import (
    OWNER_LABEL,
    ObjectRef,
    Tenant,
    admin_only,
    build_cache_sets,
    cache_mount_refusal,
    event_visible,
    exec_container,
    filter_list,
    full_id,
    inspect_target,
    is_reserved_label,
    labelless_event_object,
    may_access,
    object_refs,
    owner_of,
    pin,
    scope_list,
    stamp,
    with_tenant_sets,
)
from dockgate.tenancy.ownership import _SEP, _reserved_key

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
    """Creating a container, volume, network, secret or config adds the tenant's owner label
    beside the client's own labels, and the body stays canonical."""
    body: dict[str, Any] = {"Labels": {"app": "web"}}
    if "containers" in target:
        body["Image"] = "busybox"
    if "networks" in target or "secrets" in target or "configs" in target:
        body["Name"] = "n"
    r = stamp(req("POST", target, body), A)
    assert r.body["Labels"] == {"app": "web", OWNER_LABEL: "team-a"}
    consistent(r)


def test_stamp_without_labels_and_admin() -> None:
    """A create without Labels gets a Labels map holding only the owner label; an admin is stamped
    too, with its own name."""
    r = stamp(req("POST", "/v1.41/containers/create", {"Image": "busybox"}), ADMIN)
    assert r.body["Labels"] == {OWNER_LABEL: "ops"}
    consistent(r)


def test_stamp_volume_without_body_adds_content_type() -> None:
    """A volume create with no body gets a JSON body holding only the owner label, and a
    Content-Type header to go with it."""
    r = stamp(req("POST", "/v1.41/volumes/create", None, content_type=False), A)
    assert r.body == {"Labels": {OWNER_LABEL: "team-a"}}
    assert ("content-type", "application/json") in r.headers
    consistent(r)


@pytest.mark.parametrize("key", [OWNER_LABEL, "IO.DOCKGATE.OWNER", " io.dockgate.owner ",
                                 "io.dockgate.other", "Io.Dockgate.Owner\t",
                                 "io.dockgate.owner\u200b", "\uff49o.dockgate.owner"])
def test_stamp_refuses_spoofed_owner(key: str) -> None:
    """A create whose Labels hold a key in the reserved io.dockgate namespace, in any case, padded
    or look-alike spelling, is refused as Forbidden ("reserved")."""
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
    """Any case mix of the owner label, with leading or trailing white or invisible space, is
    reserved and refused on container, volume, network, service and build creates."""
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
    """A build's labels query gets the owner label merged in as sorted compact JSON (added when
    absent), and the query stays in sorted order."""
    r = stamp(req("POST", "/v1.41/build?t=x&labels=" + quote('{"a":"b"}') + "&q=1"), A)
    assert dict(r.query)["labels"] == json.dumps({"a": "b", OWNER_LABEL: "team-a"},
                                                 separators=(",", ":"), sort_keys=True)
    assert [k for k, _ in r.query] == sorted(k for k, _ in r.query)
    r = stamp(req("POST", "/v1.41/build"), A)
    assert dict(r.query)["labels"] == '{"io.dockgate.owner":"team-a"}'
    assert "labels=%7B%22io.dockgate.owner%22%3A%22team-a%22%7D" in r.target


def test_stamp_build_forces_nocache_while_build_caches_are_private() -> None:
    """A tenant's classic build gets ``nocache=1`` over the client's ``nocache=0`` (the
    classic builder then probes no image for a step's cache, ``cachefrom`` ones
    included), and the decision's audited ``sets`` say so; with ``build_cache: shared``,
    for an admin, and for any other request, nothing is set."""
    for query in ("", "?nocache=0", "?nocache=1&t=x"):
        r = stamp(req("POST", "/v1.41/build" + query), A)
        assert [v for k, v in r.query if k == "nocache"] == ["1"]
        assert [k for k, _ in r.query] == sorted(k for k, _ in r.query)
        decided = with_tenant_sets(Decision("allow", "p", sets=("rule r: x",)), r, A)
        assert decided.sets[0] == "rule r: x" and "nocache=1" in decided.sets[1]
        assert decided.sets[1:] == build_cache_sets(r, A)
    shared = Tenant("team-a", build_cache="shared")
    for tenant in (shared, ADMIN):
        r = stamp(req("POST", "/v1.41/build?nocache=0"), tenant)
        assert [v for k, v in r.query if k == "nocache"] == ["0"]
        assert build_cache_sets(r, tenant) == ()
    plain = Decision("allow", "p")
    create = req("POST", "/v1.41/containers/create", {"Image": "x"})
    assert with_tenant_sets(plain, create, A) is plain
    assert with_tenant_sets(plain, stamp(req("POST", "/v1.41/build"), A), None) is plain


def test_cache_mounts_are_refused_while_build_caches_are_private() -> None:
    """A cache mount (``(where, id)``) is refused for a tenant whose build caches are
    private, naming where it is and the tenants-file option; allowed with
    ``build_cache: shared`` and for admins; no mount, no refusal."""
    why = cache_mount_refusal(A, [("Dockerfile line 2 RUN --mount type=cache", "go")])
    assert why is not None and why.startswith("Dockerfile line 2 RUN --mount type=cache: ")
    assert "'go'" in why and "build_cache" in why
    assert cache_mount_refusal(A, []) is None
    for tenant in (Tenant("team-a", build_cache="shared"), ADMIN):
        assert cache_mount_refusal(tenant, [("x", "go")]) is None


def test_stamp_commit() -> None:
    """A commit gets the owner label in its body (one is made if absent); a LABEL change, in any
    case or under ONBUILD, is refused, other changes pass."""
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


@pytest.mark.parametrize("changes", [
    ["CMD sh\nLABEL io.dockgate.owner=team-b"],
    ["LA\\", "BEL io.dockgate.owner=team-b"],
    ["ONBUILD LA`  ", "BEL x=y"],
    ["ENV A=1\r"],
])
def test_stamp_changes_are_one_line_each(changes: list[str]) -> None:
    """The daemon joins ``changes`` with newlines into one Dockerfile: a change with a line
    break, or ending in an escape character (continuing into the next change, or into the
    LABEL an import gets appended), could hide a LABEL instruction and is refused, for a
    commit and an import alike."""
    query = "".join("&changes=" + quote(c) for c in changes)
    for target, body in (("/v1.41/commit?container=web" + query, {}),
                         ("/v1.41/images/create?fromSrc=-" + query, None)):
        with pytest.raises(Forbidden, match="a change must be one line"):
            stamp(req("POST", target, body), A)


def test_stamp_refuses_owner_labels_of_mounted_volumes() -> None:
    """A volume mount's ``VolumeOptions.Labels`` label the volume the daemon creates for it
    (an anonymous one): a dockgate label there, in any spelling, is refused; other labels
    pass."""
    def create(labels: dict[str, str]) -> CanonicalRequest:
        return req("POST", "/v1.41/containers/create", {"Image": "x", "HostConfig": {"Mounts": [
            {"Type": "tmpfs", "Target": "/t"},
            {"Type": "volume", "Target": "/x", "VolumeOptions": {"Labels": labels}}]}})
    for key in (OWNER_LABEL, "IO.Dockgate.Owner", "io.dockgate.other"):
        with pytest.raises(Forbidden, match=r"HostConfig.Mounts\[1\].VolumeOptions.Labels"):
            stamp(create({key: "team-b"}), A)
    r = stamp(create({"app": "web"}), A)
    assert r.body["HostConfig"]["Mounts"][1]["VolumeOptions"]["Labels"] == {"app": "web"}


def test_stamp_import_appends_label() -> None:
    """An import (fromSrc) gets a LABEL owner change appended after the client's changes and
    refuses a client LABEL; a pull (fromImage) is left unstamped."""
    r = stamp(req("POST", "/v1.41/images/create?fromSrc=-&repo=me/x&changes=" + quote("ENV A=1")),
              A)
    assert [v for k, v in r.query if k == "changes"] == ["ENV A=1", f"LABEL {OWNER_LABEL}=team-a"]
    # a pull is not stamped: pulled images are the shared cache
    pull = req("POST", "/v1.41/images/create?fromImage=busybox&tag=latest")
    assert stamp(pull, A) is pull
    with pytest.raises(Forbidden):
        stamp(req("POST", "/v1.41/images/create?fromSrc=-&changes=" + quote("LABEL a=b")), A)


def test_stamp_service() -> None:
    """A service create is stamped twice: on the service's Labels and on its task template's
    ContainerSpec Labels."""
    r = stamp(req("POST", "/v1.41/services/create",
                  {"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "x"}}}), A)
    assert r.body["Labels"] == {OWNER_LABEL: "team-a"}
    assert r.body["TaskTemplate"]["ContainerSpec"]["Labels"] == {OWNER_LABEL: "team-a"}


def test_stamp_leaves_others_alone() -> None:
    """A request that creates nothing (a container start) is returned unchanged, as the same
    object."""
    r = req("POST", "/v1.41/containers/abc/start")
    assert stamp(r, A) is r


# -- scope_list -------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/v1.41/containers/json?all=1", "/v1.41/volumes",
                                    "/v1.41/networks", "/v1.41/images/json",
                                    "/v1.41/containers/prune", "/v1.41/volumes/prune",
                                    "/v1.41/networks/prune", "/v1.41/images/prune"])
def test_scope_list_adds_owner_filter(target: str) -> None:
    """Listing or pruning containers, volumes, networks or images gets a label filter on the
    tenant's owner label, in a query admission accepts as canonical."""
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
    """The client's filters are kept and the owner label is added to its label filter; asking for
    another tenant's label yields both labels, so nothing matches."""
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
    """An admin's list, and a tenant's request to an endpoint that lists no owned objects
    (/info), are returned unchanged."""
    r = req("GET", "/v1.41/containers/json")
    assert scope_list(r, ADMIN) is r
    r = req("GET", "/v1.41/info")
    assert scope_list(r, A) is r


def test_scope_list_unmergeable() -> None:
    """A filters query that is not a JSON object (here a list) cannot take the owner filter and
    is refused as BadRequest."""
    r = replace(req("GET", "/v1.41/containers/json"), query=(("filters", "[1]"),))
    with pytest.raises(BadRequest):
        scope_list(r, A)


def test_admin_only() -> None:
    """Endpoints that reach beyond one tenant (system df, build prune, services, plugins, swarm,
    secrets, image load) are admin-only; container and image work is not."""
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
    """Each path or query names its objects with kind, name, place, key and access (image reads
    vs writes); endpoints naming no object yield none."""
    assert refs_of(req(method, target)) == expect


def test_refs_in_container_create() -> None:
    """A container create's body names its image, the containers, volumes and networks it uses
    (bind mounts, anonymous volumes and built-in networks are not objects)."""
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
    """A plain NetworkMode names a network the container joins; bridge, host, none, default and
    an empty mode name nothing, leaving only the image."""
    r = req("POST", "/v1.41/containers/create",
            {"Image": "x", "HostConfig": {"NetworkMode": "backend"}})
    assert ("network", "backend", "body", "HostConfig.NetworkMode", "write") in refs_of(r)
    for mode in ("bridge", "host", "none", "default", ""):
        r = req("POST", "/v1.41/containers/create",
                {"Image": "x", "HostConfig": {"NetworkMode": mode}})
        assert [k for k, *_ in refs_of(r)] == ["image"]


def test_refs_network_connect() -> None:
    """A network connect names the network in its path, the container in its body and the
    containers its endpoint links to, all for writing."""
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
    """Every container, volume and network a generated create body names is found, and after
    pinning each to its full id no container or network name is left."""
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
        if net not in ("bridge", "host", "none", "default"):
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
    """Each object kind's inspect path is built with the API version and escaped name; a name
    that would change the path (slash, dot-dot, empty, newline) is a BadRequest."""
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
    """Owner and full id are read from where each kind keeps them (Config, top-level or Spec
    labels); an exec leads to its container; a missing id is a ValueError."""
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
    """A tenant may touch only what it owns; an admin anything; an unowned image may be read
    but not written; an unowned container not even read."""
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
    """Pinning replaces a path name with the full id in target, params and path, and a body
    reference in the body, leaving the query and canonical form intact."""
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
    """Pinning a create body keeps each field's form around the full id (:ro suffix,
    container: prefix, link alias; a bare /name link keeps name as alias); images stay."""
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
    """Pinning a network renames both NetworkMode and its EndpointsConfig key; pinning a commit's
    container rewrites the container query value."""
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
    """Volumes (named by name) and images are not pinned: the request is returned unchanged, as
    the same object."""
    r = req("DELETE", "/v1.41/volumes/data")
    assert pin(r, object_refs(r)[0], "data") is r
    r = req("DELETE", "/v1.41/images/alpine:3")
    assert pin(r, object_refs(r)[0], "sha256:" + "a" * 64) is r


def test_pin_foreign_ref() -> None:
    """Pinning a reference the request does not hold (a wrong key in path or body) is a
    ValueError, not a silent no-op."""
    r = req("POST", "/v1.41/containers/web/kill")
    with pytest.raises(ValueError):
        pin(r, ObjectRef("container", "x", "path", "name", "write", ("name",)), FULL)
    with pytest.raises(ValueError):
        pin(r, ObjectRef("container", "x", "body", "Container", "write", ("Container",)), FULL)


# -- responses ----------------------------------------------------------------------


def test_event_visible() -> None:
    """A tenant sees events of its own labelled containers and of label-less objects it is known
    to own (kind and id); never others', the daemon's or old-format ones; an admin sees all."""
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
    """A list answer is cut to the tenant's own labelled items (unlabelled, others' and malformed
    items dropped); an admin gets the list unchanged."""
    items = [{"Id": "1", "Labels": {OWNER_LABEL: "team-a"}}, {"Id": "2", "Labels": None},
             {"Id": "3", "Labels": {OWNER_LABEL: "team-b"}}, "junk"]
    assert [i["Id"] for i in filter_list("container", items, A)] == ["1"]
    assert filter_list("container", items, ADMIN) == items


def test_every_character_the_label_fold_drops_lies_in_the_planes_scanned_at_import() -> None:
    """The characters ``_fold`` drops (whitespace, Cc, Cf) all lie in planes 0, 1 and 14,
    the only ones ``ownership._reserved_pattern`` scans; a Unicode version that adds
    one elsewhere fails here instead of letting a label through."""
    outside = [c for c in (*range(0x20000, 0xE0000), *range(0xE1000, 0x110000))
               if chr(c).isspace() or unicodedata.category(chr(c)) in ("Cf", "Cc")]
    assert outside == []


_KEY_PARTS = st.sampled_from(
    ["io.dockgate.", "IO.", "Dock", "gate.", "i", "o", ".", "d", "x", " ", "\t", "\n", "\x00",
     "\u200b", "\ufeff", "\u00ad", "\u2003", "\U000e0001", "\uff49", "\uff4f", "\u2024",
     "\u0130", "\u0307", "\u00e9", "e\u0301", "\u1100", "\u1161", "\U0001d422", "\ue000",
     "\U0001f600", "\u0345", "\u03a3"])


_BETWEEN = st.sampled_from(["", "", "", " ", "\u200b", "\ufeff", "\u00ad", "\t", "\x1f",
                            "\U000e0020", "\u2028", "\u0301", "x"])


@st.composite
def _spelled(draw: st.DrawFn) -> str:
    """``io.dockgate.`` in some case, with characters between its letters (most of
    which the fold drops) and something after it."""
    out = [draw(_BETWEEN)]
    for ch in "io.dockgate.":
        out.append(ch.upper() if draw(st.booleans()) else ch)
        out.append(draw(_BETWEEN))
    return "".join(out) + draw(st.sampled_from(["", "owner", "\u00e9"]))


@settings(max_examples=500, deadline=None)
@given(keys=st.lists(st.one_of(st.lists(_KEY_PARTS, max_size=6).map("".join), _spelled()),
                     max_size=6))
def test_label_keys_checked_at_once_find_what_one_by_one_finds(keys: list[str]) -> None:
    """All keys checked at once (``ownership._reserved_key``) find a reserved key exactly
    when one of them is reserved (``is_reserved_label``) and name the first such key;
    a key holding U+E000 (the join character) counts as several keys, so a label
    spelled after it is found too (stricter, on a character no label needs)."""
    pieces = [piece for key in keys for piece in key.split(_SEP)]
    owners = [key for key in keys for piece in key.split(_SEP) if is_reserved_label(piece)]
    got = _reserved_key(keys)
    assert (got is not None) == any(is_reserved_label(p) for p in pieces)
    if got is not None:
        assert got == owners[0]
    if not any(_SEP in key for key in keys):
        assert (got is not None) == any(is_reserved_label(k) for k in keys)


@pytest.mark.parametrize("mode", ["Bridge", " bridge", "HOST", "nat", "Default", "Container:c1"])
def test_builtin_network_lookalikes_name_networks(mode: str) -> None:
    """The daemon compares network modes exactly (``IsBridge`` is ``== "bridge"``), so a
    builtin's other spelling, and ``nat`` on Linux, is a user-defined network's name (one
    another tenant may have created): a network reference, in NetworkMode and as an
    endpoint key alike."""
    body = {"Image": "img", "HostConfig": {"NetworkMode": mode},
            "NetworkingConfig": {"EndpointsConfig": {mode: {}}}}
    found = object_refs(req("POST", "/v1.41/containers/create", body))
    assert [x.key for x in found if x.kind == "network" and x.ref == mode] == [
        "HostConfig.NetworkMode", "NetworkingConfig.EndpointsConfig." + mode + " (key)"]

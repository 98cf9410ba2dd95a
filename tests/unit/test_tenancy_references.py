"""Every reference to another object is followed: the reference table is complete.

Walks the request schemas of every API snapshot dockgate routes (as the policy's
field classification does) and requires each field that looks like it names another
object to be classified in ``ownership.REFERENCES`` or ``ownership.NOT_REFERENCES``;
then requires ``object_refs`` to find every listed reference in a sample request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

import pytest

from dockgate.admission.admit import ApiContext, admit_body, admit_head
from dockgate.admission.routes import ENDPOINTS
from dockgate.admission.versions import SNAPSHOTS
from dockgate.model import CanonicalRequest
from dockgate.tenancy import object_refs
from dockgate.tenancy.ownership import _PATH_KINDS, NOT_REFERENCES, REFERENCES, admin_only

CANDIDATE = re.compile(
    r"(?i)container|image|volume|network|mode$|^links$|^source$|^from|^name$|^names$|repo"
    r"|^tag$|^t$|cachefrom|plugin|secret|config(name|id)$|^target$|^remote$|^parent$|endpoints")
"""Field names that may name another object (deliberately broad: false hits are listed
in NOT_REFERENCES with the reason)."""


def _walk(node: Any, defs: Mapping[str, Any], path: str, seen: tuple[str, ...] = ()
          ) -> Iterator[str]:
    if not isinstance(node, Mapping):
        return
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            yield from _walk(defs[name], defs, path, (*seen, name))
        return
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key, ()):
            yield from _walk(sub, defs, path, seen)
    for name, sub in (node.get("properties") or {}).items():
        field = f"{path}.{name}" if path else name
        yield field
        yield from _walk(sub, defs, field, seen)
    if isinstance(node.get("items"), Mapping):
        yield from _walk(node["items"], defs, path + "[]", seen)
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping) and path:
        yield path + "{} key"  # the keys of a mapping may be names too
        yield from _walk(extra, defs, path + "{}", seen)


def _fields() -> set[str]:
    """``"<endpoint> <field>"`` for every body and query field of every snapshot."""
    out = set()
    for snapshot in SNAPSHOTS:
        doc = json.loads(resources.files("dockgate.admission.schemas").joinpath(f"v{snapshot}.json")
                         .read_text("utf-8"))
        for endpoint, spec in doc["endpoints"].items():
            for field in _walk(spec.get("body"), doc["$defs"], ""):
                out.add(f"{endpoint} {field}")
            for key in spec.get("query") or ():
                out.add(f"{endpoint} ?{key}")
    return out


def _last(field: str) -> str:
    return re.split(r"[.?]", field.removesuffix(" key").replace("[]", "").replace("{}", ""))[-1]


def test_every_field_that_may_name_an_object_is_classified() -> None:
    """A schema field that looks like a reference must be followed or say why not."""
    unclassified = sorted(
        f for f in _fields()
        if not admin_only(f.split(" ", 1)[0]) and CANDIDATE.search(_last(f.split(" ", 1)[1]))
        and f not in REFERENCES and f not in NOT_REFERENCES)
    assert not unclassified, "classify these in ownership.REFERENCES or NOT_REFERENCES"


def test_the_tables_name_only_fields_that_exist() -> None:
    """The reference tables name only fields and path parameters that exist in the schemas, and no
    field is both a reference and not one."""
    fields = _fields()
    paths = {f"{ep.id} {{{name}}}" for ep in ENDPOINTS.values()
             for name in re.findall(r"\{(\w+)\}", ep.template)}
    stale = sorted(k for k in (*REFERENCES, *NOT_REFERENCES) if k not in fields | paths)
    assert not stale
    assert not set(REFERENCES) & set(NOT_REFERENCES)


def test_every_path_parameter_names_an_object_of_a_known_kind() -> None:
    """Path parameters are references by their first segment (or the endpoint is admin-only)."""
    unknown = sorted(
        f"{ep.id} {{{name}}}" for ep in ENDPOINTS.values()
        for name in re.findall(r"\{(\w+)\}", ep.template)
        if not admin_only(ep.id) and ep.template.split("/", 2)[1] not in _PATH_KINDS
        and f"{ep.id} {{{name}}}" not in NOT_REFERENCES)
    assert not unknown


CTX = ApiContext()
C = {"Image": "img", "HostConfig": {}}
SAMPLES: dict[str, tuple[str, str, Any, str]] = {
    # table key → (method, target, body, the ObjectRef.key object_refs must report)
    "container.create Image": ("POST", "/v1.51/containers/create", C, "Image"),
    "container.create HostConfig.VolumesFrom": (
        "POST", "/v1.51/containers/create", {**C, "HostConfig": {"VolumesFrom": ["x:ro"]}},
        "HostConfig.VolumesFrom[0]"),
    "container.create HostConfig.NetworkMode": (
        "POST", "/v1.51/containers/create", {**C, "HostConfig": {"NetworkMode": "container:x"}},
        "HostConfig.NetworkMode"),
    "container.create HostConfig.PidMode": (
        "POST", "/v1.51/containers/create", {**C, "HostConfig": {"PidMode": "container:x"}},
        "HostConfig.PidMode"),
    "container.create HostConfig.IpcMode": (
        "POST", "/v1.51/containers/create", {**C, "HostConfig": {"IpcMode": "container:x"}},
        "HostConfig.IpcMode"),
    "container.create HostConfig.Links": (
        "POST", "/v1.51/containers/create", {**C, "HostConfig": {"Links": ["x:a"]}},
        "HostConfig.Links[0]"),
    "container.create HostConfig.Binds": (
        "POST", "/v1.51/containers/create", {**C, "HostConfig": {"Binds": ["v:/d"]}},
        "HostConfig.Binds[0]"),
    "container.create HostConfig.Mounts[].Source": (
        "POST", "/v1.51/containers/create",
        {**C, "HostConfig": {"Mounts": [{"Type": "image", "Source": "x", "Target": "/m"}]}},
        "HostConfig.Mounts[0].Source"),
    "container.create NetworkingConfig.EndpointsConfig{} key": (
        "POST", "/v1.51/containers/create",
        {**C, "NetworkingConfig": {"EndpointsConfig": {"n": {}}}},
        "NetworkingConfig.EndpointsConfig.n (key)"),
    "container.create NetworkingConfig.EndpointsConfig{}.Links": (
        "POST", "/v1.51/containers/create",
        {**C, "NetworkingConfig": {"EndpointsConfig": {"n": {"Links": ["x:a"]}}}},
        "NetworkingConfig.EndpointsConfig.n.Links[0]"),
    "container.create NetworkingConfig.EndpointsConfig{}.NetworkID": (
        "POST", "/v1.51/containers/create",
        {**C, "NetworkingConfig": {"EndpointsConfig": {"n": {"NetworkID": "m"}}}},
        "NetworkingConfig.EndpointsConfig.n.NetworkID"),
    "network.connect Container": (
        "POST", "/v1.51/networks/n/connect", {"Container": "x"}, "Container"),
    "network.connect EndpointConfig.Links": (
        "POST", "/v1.51/networks/n/connect", {"Container": "c",
                                              "EndpointConfig": {"Links": ["x:a"]}},
        "EndpointConfig.Links[0]"),
    "network.connect EndpointConfig.NetworkID": (
        "POST", "/v1.51/networks/n/connect", {"Container": "c",
                                              "EndpointConfig": {"NetworkID": "m"}},
        "EndpointConfig.NetworkID"),
    "network.disconnect Container": (
        "POST", "/v1.51/networks/n/disconnect", {"Container": "x"}, "Container"),
    "network.create ConfigFrom.Network": (
        "POST", "/v1.51/networks/create", {"Name": "n", "ConfigFrom": {"Network": "x"}},
        "ConfigFrom.Network"),
    "volume.create ClusterVolumeSpec.AccessMode.Secrets[].Secret": (
        "POST", "/v1.51/volumes/create",
        {"Name": "v", "ClusterVolumeSpec": {"AccessMode": {"Secrets": [{"Key": "k",
                                                                         "Secret": "s"}]}}},
        "ClusterVolumeSpec.AccessMode.Secrets[0].Secret"),
    "volume.update Spec.AccessMode.Secrets[].Secret": (
        "PUT", "/v1.51/volumes/v?version=1",
        {"Spec": {"AccessMode": {"Secrets": [{"Key": "k", "Secret": "s"}]}}},
        "Spec.AccessMode.Secrets[0].Secret"),
    "image.commit ?container": ("POST", "/v1.51/commit?container=x", {}, "container"),
    "image.commit ?repo": ("POST", "/v1.51/commit?container=c&repo=r&tag=t", {}, "repo"),
    "image.tag ?repo": ("POST", "/v1.51/images/i/tag?repo=r&tag=t", None, "repo"),
    "image.create ?fromImage": ("POST", "/v1.51/images/create?fromImage=x&tag=1", None,
                                "fromImage"),
    "image.create ?repo": ("POST", "/v1.51/images/create?fromSrc=-&repo=r&tag=1", None, "repo"),
    "image.push ?tag": ("POST", "/v1.51/images/r/push?tag=t", None, "name"),
    "image.get_all ?names": ("GET", "/v1.51/images/get?names=x&names=y", None, "names[1]"),
    "image.build ?t": ("POST", "/v1.51/build?t=x", None, "t[0]"),
    "image.build ?cachefrom": ("POST", '/v1.51/build?cachefrom=["x"]', None, "cachefrom[0]"),
}
COMPANIONS = {"image.commit ?tag": "image.commit ?repo", "image.tag ?tag": "image.tag ?repo",
              "image.create ?tag": "image.create ?fromImage"}
"""Fields checked as part of another (the tag of a name)."""
BUILD_CONTEXT = {"image.build ?networkmode"}
"""Build-context references: followed by the build-context checks (another change)."""


def _request(method: str, target: str, body: Any) -> CanonicalRequest:
    r = admit_head(method, target.encode(), [(b"content-type", b"application/json")], CTX)
    return admit_body(r, json.dumps(body).encode(), CTX) if body is not None else r


def test_every_sample_covers_a_listed_reference() -> None:
    """Every listed reference has a sample, a companion or is a build-context field, and nothing
    else has one."""
    assert set(SAMPLES) | set(COMPANIONS) | BUILD_CONTEXT == set(REFERENCES)


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_object_refs_finds_each_listed_reference(key: str) -> None:
    """``object_refs`` reports the reference a sample request makes at that field."""
    method, target, body, where = SAMPLES[key]
    refs = object_refs(_request(method, target, body))
    assert where in [r.key for r in refs], refs


def test_tag_companions_are_part_of_the_name() -> None:
    """A tag given beside a repository is part of the referenced name, on tag and on push."""
    refs = object_refs(_request("POST", "/v1.51/images/i/tag?repo=r&tag=t", None))
    assert [r.ref for r in refs if r.key == "repo"] == ["r:t"]
    refs = object_refs(_request("POST", "/v1.51/images/r/push?tag=t", None))
    assert [r.ref for r in refs] == ["r:t"]

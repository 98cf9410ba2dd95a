"""Generate dockgate/admission/schemas/v<snapshot>.json from the reference OpenAPI specs.

Usage: python tools/gen_schemas.py [/path/to/reference-dir]

Reads the Engine API specs as data (engine-api-v1.41.yaml, engine-api-v1.51.yaml)
and writes one schema document per snapshot: for every route-table endpoint its
query parameters (name -> kind) and JSON body schema, plus the referenced
definitions reduced to the keywords dockgate's walker uses.  The 1.51 document
is merged with 1.41's (fields and parameters later specs dropped still arrive
from older clients).  OVERRIDES record where the specs differ from what real
clients send or the daemon reads; each cites its source.  The output is
committed; rerun after editing this file or the specs, then review the diff.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dockgate.admission.routes import ROUTES
from dockgate.model import Operation

SNAPSHOTS = ("1.41", "1.51")
OUT = Path(__file__).resolve().parent.parent / "dockgate" / "admission" / "schemas"
_KEEP_FORMATS = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}

# Go types of JSON-valued query parameters, so their keys are resolved (and
# duplicates refused) the way encoding/json reads them.
# ocispec.Platform (image-spec specs-go/v1): lower-case json tags.
_PLATFORM = {"type": "object", "properties": {
    "architecture": {"type": "string"}, "os": {"type": "string"},
    "os.version": {"type": "string"}, "os.features": {"type": "array",
                                                      "items": {"type": "string"}},
    "variant": {"type": "string"}}}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# moby build router: buildargs map[string]*string, labels map[string]string,
# cachefrom []string, ulimits []*units.Ulimit, outputs []ImageBuildOutput.
_BUILD_JSON = {
    "buildargs": {"type": "json", "schema": {"type": "object", "additionalProperties": {
        "type": ["string", "null"]}}},
    "labels": {"type": "json", "schema": _STRING_MAP},
    "cachefrom": {"type": "json", "schema": {"type": "array", "items": {"type": "string"}}},
    "ulimits": {"type": "json", "schema": {"type": "array", "items": {
        "type": "object", "properties": {"Name": {"type": "string"},
                                         "Hard": {"type": "integer", "format": "int64"},
                                         "Soft": {"type": "integer", "format": "int64"}}}}},
    "outputs": {"type": "json", "schema": {"type": "array", "items": {
        "type": "object", "properties": {"Type": {"type": "string"}, "Attrs": _STRING_MAP}}}},
}

# Query parameter kinds that differ from the specs' declared types.
QUERY_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    # moby postBuild reads r.Form["t"], ["extrahosts"], ["securityopt"]; the client
    # (imageBuildOptionsToQuery) sends one value per tag/host/option.
    "image.build": {
        "t": {"type": "array"},
        "extrahosts": {"type": "array"},
        "securityopt": {"type": "array"},
        **_BUILD_JSON,
        # Sent by the docker client (imageBuildOptionsToQuery) for BuildKit builds.
        "session": {"type": "string"},
        "buildid": {"type": "string"},
        "version": {"type": "string"},
        "remote": {"type": "string"},
        "isolation": {"type": "string"},
        "squash": {"type": "boolean"},
        "networkmode": {"type": "string"},
        "cgroupparent": {"type": "string"},
        "cpusetmems": {"type": "string"},
        # docker-py sends a Dockerfile from outside the context as two values,
        # its name in the context and its text (requests encodes the tuple
        # (name, text) as a repeated parameter); moby postBuild reads the first
        # (r.FormValue), so dockgate forwards that one alone.
        "dockerfile": {"type": "string", "repeat": "first"},
    },
    # client ContainerCommit adds one "changes" value per change; moby reads r.Form["changes"].
    "image.commit": {"changes": {"type": "array"}},
    # API 1.48+: several platforms for save/load (moby reads r.Form["platform"]).
    "image.get": {"platform": {"type": "array", "items": "json", "schema": _PLATFORM}},
    "image.get_all": {"platform": {"type": "array", "items": "json", "schema": _PLATFORM}},
    "image.load": {"platform": {"type": "array", "items": "json", "schema": _PLATFORM}},
    "image.inspect": {"platform": {"type": "json", "schema": _PLATFORM}},
    "image.history": {"platform": {"type": "json", "schema": _PLATFORM}},
    "image.push": {"platform": {"type": "json", "schema": _PLATFORM}},
    # moby build router postCancel reads "id"; not in the specs.
    "build.cancel": {"id": {"type": "string"}},
    # The specs say integer, but the docker CLI sends timetypes.GetTimestamp values
    # ("1700000000.000000000") and moby parses them with timetypes.ParseTimestamps.
    "container.logs": {"since": {"type": "string"}, "until": {"type": "string"}},
    "service.logs": {"since": {"type": "string"}},
    "task.logs": {"since": {"type": "string"}},
    # docker-py 7 (docker/api/container.py containers()) always sends trunc_cmd and
    # may send since/before; moby getContainersJSON still reads since/before.
    "container.list": {"trunc_cmd": {"type": "boolean"}, "since": {"type": "string"},
                       "before": {"type": "string"}},
    # docker-py 7 (docker/api/image.py images()) always sends only_ids (ignored), and
    # "filter" for API <= 1.24 (moby getImagesJSON read it until the 1.13 deprecation).
    "image.list": {"only_ids": {"type": "boolean"}, "filter": {"type": "string"}},
    # docker-py 7 (docker/api/image.py tag()) always sends force (moby ignores it
    # since tag forcing was removed in API 1.24).
    "image.tag": {"force": {"type": "boolean"}},
}

# Body properties real clients send that the specs lack, by endpoint.
BODY_OVERRIDES: dict[str, dict[str, Any]] = {
    # moby api/types ExecConfig/ExecOptions has Detach; the docker CLI sends it.
    # docker-py 7 (exec_create) sends Container, which older ExecConfig types had.
    "exec.create": {"Detach": {"type": "boolean"}, "Container": {"type": "string"}},
    # moby api/types/swarm InitRequest has AutoLockManagers and Availability; the
    # docker CLI (cli/command/swarm/init.go) always sends both.
    "swarm.init": {"AutoLockManagers": {"type": "boolean"},
                   "Availability": {"type": "string", "enum": ["active", "pause", "drain"]}},
    # ... and JoinRequest has Availability (cli/command/swarm/join.go sends it).
    "swarm.join": {"Availability": {"type": "string", "enum": ["active", "pause", "drain"]}},
}

# Fields the daemon's Go types decode in more shapes than the spec says.
DEF_OVERRIDES: dict[str, dict[str, Any]] = {
    # docker CLI 28 (cli/command/network/connect.go) sends EndpointSettings.GwPriority
    # (moby api/types/network, an int) and DNSNames even when it talks API 1.41 to
    # engine 20.10, which ignores both.
    "EndpointSettings": {"GwPriority": {"type": "integer", "format": "int64"},
                         "DNSNames": {"type": "array", "items": {"type": "string"}}},
    # moby api/types/registry AuthConfig also has auth, identitytoken and registrytoken
    # (json tags in lower case); the docker CLI sends identitytoken after a token login.
    "AuthConfig": {"auth": {"type": "string"}, "identitytoken": {"type": "string"},
                   "registrytoken": {"type": "string"}},
    # strslice.StrSlice (moby api/types/strslice) unmarshals a string or an array.
    "ContainerConfig": {"Cmd": {"type": ["array", "string"], "items": {"type": "string"}},
                        "Entrypoint": {"type": ["array", "string"], "items": {"type": "string"}},
                        "Shell": {"type": ["array", "string"], "items": {"type": "string"}}},
}

# The lists and maps the policy, the tenancy checks and the join checks read entry by
# entry (dockgate/policy/facts.py, tenancy/ownership.py, policy/joins.py).  Each entry
# costs the decision 3-10 µs on the event loop, and a 1 MB body holds 20,000 binds or
# 50,000 CapAdd entries (0.2-0.4 s); capped, the worst body costs a few ms.  Real
# clients send tens: the cap is far above any (a 413 names the field and the cap).
ENTRY_LIMIT = 512
LIMITED_ARRAYS: dict[str, tuple[str, ...]] = {
    "HostConfig": ("Binds", "Mounts", "VolumesFrom", "Links", "CapAdd", "CapDrop",
                   "Capabilities", "Devices", "DeviceRequests", "DeviceCgroupRules",
                   "SecurityOpt", "MaskedPaths", "ReadonlyPaths", "GroupAdd", "Ulimits",
                   "ExtraHosts", "Dns", "DnsOptions", "DnsSearch"),
    "Resources": ("Devices", "DeviceRequests", "DeviceCgroupRules", "Ulimits"),
    "TaskSpec": ("Networks",),
    "EndpointSpec": ("Ports",),
    # Each endpoint's links are container inspections (policy/joins.py).
    "EndpointSettings": ("Links",),
}
LIMITED_MAPS: dict[str, tuple[str, ...]] = {
    "HostConfig": ("Tmpfs", "Sysctls", "StorageOpt"),
    # Each endpoint is a network mode the policy reads and a network inspection.
    "NetworkingConfig": ("EndpointsConfig",),
}
# A path's "*" is any member of a map (``additionalProperties``).
LIMITED_NESTED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PortMap", ()),  # HostConfig.PortBindings: the policy reads each binding
    ("PortMap", ("*",)),
    ("Mount", ("TmpfsOptions", "Options")),
    ("TaskSpec", ("ContainerSpec", "Groups")),
    ("TaskSpec", ("ContainerSpec", "Mounts")),
    ("TaskSpec", ("ContainerSpec", "CapabilityAdd")),
    ("TaskSpec", ("ContainerSpec", "CapabilityDrop")),
    ("TaskSpec", ("ContainerSpec", "Sysctls")),
)


def limit_entries(defs: dict[str, Any]) -> None:
    """Set ``maxItems``/``maxProperties`` (``ENTRY_LIMIT``) on the fields named above."""
    def cap(node: dict[str, Any]) -> None:
        kinds = node.get("type")
        kinds = [kinds] if isinstance(kinds, str) else kinds or []
        if "array" in kinds:
            node["maxItems"] = ENTRY_LIMIT
        if "object" in kinds:
            node["maxProperties"] = ENTRY_LIMIT
        if not {"array", "object"} & set(kinds):
            raise KeyError(f"nothing to cap: {node}")

    for table in (LIMITED_ARRAYS, LIMITED_MAPS):
        for name, fields in table.items():
            props = defs.get(name, {}).get("properties", {})
            for field in fields:
                if field in props:
                    cap(props[field])
    for name, path in LIMITED_NESTED:
        node = defs.get(name)
        for key in path:
            node = None if node is None else node.get("additionalProperties") if key == "*" \
                else node.get("properties", {}).get(key)
        if node is not None:
            cap(node)


# Endpoints the specs lack but the route table has (see routes.py for sources).
EXTRA_ENDPOINTS: dict[str, dict[str, Any]] = {
    "build.cancel": {"query": {}},
    "build.grpc": {"query": {}},
}
LEGACY_1_41: dict[str, dict[str, Any]] = {
    # Removed endpoint, served by older daemons below API 1.24 (moby postContainersCopy,
    # types.CopyConfig); docs: docker-remote-api-v1.18.md "Copy files or folders".
    "container.copy": {"query": {}, "body_required": True,
                       "body": {"type": "object",
                                "properties": {"Resource": {"type": "string"}}}},
}

# Bodies the daemon refuses when empty (moby decodes them unconditionally).
BODY_REQUIRED = {"container.create", "exec.create", "network.create", "service.create",
                 "secret.create", "config.create", "swarm.init", "swarm.join",
                 "swarm.unlock", "network.connect", "network.disconnect"}


_PARAM = re.compile(r"\{[A-Za-z]+\*?\}")


def endpoint_for(method: str, template: str) -> Operation | None:
    """The route table's operation for a method and a path as the specs spell it
    (parameter names aside: the specs say ``{id}`` where the table says ``{name*}``)."""
    norm = _PARAM.sub("{}", template)
    for r in ROUTES:
        if r.endpoint.method == method and _PARAM.sub("{}", r.endpoint.template) == norm:
            return r.endpoint
    return None


def convert(schema: Any) -> Any:
    """Reduce an OpenAPI 2 schema to dockgate's subset."""
    if not isinstance(schema, dict):
        return True
    if "$ref" in schema:
        return {"$ref": "#/$defs/" + schema["$ref"].rsplit("/", 1)[-1]}
    if "allOf" in schema:
        return {"allOf": [convert(s) for s in schema["allOf"]]}
    out: dict[str, Any] = {}
    if "type" in schema:
        out["type"] = schema["type"]
    fmt = schema.get("format")
    if fmt in _KEEP_FORMATS:
        out["format"] = fmt
    if "properties" in schema:
        out["properties"] = {k: convert(v) for k, v in schema["properties"].items()}
        if "ConsoleSize" in out["properties"]:
            # Go type [2]uint (moby api/types/container HostConfig.ConsoleSize,
            # ExecOptions.ConsoleSize, ExecStartOptions.ConsoleSize): no negatives.
            out["properties"]["ConsoleSize"] = {
                "type": "array", "items": {"type": "integer", "format": "uint64"}}
    if "additionalProperties" in schema:
        ap = schema["additionalProperties"]
        out["additionalProperties"] = ap if isinstance(ap, bool) else convert(ap)
    elif out.get("type") == "object" and "properties" not in out:
        out["additionalProperties"] = True
    if "items" in schema:
        out["items"] = convert(schema["items"])
    if not out:
        return True
    return out


def flatten(schema: Any, defs: dict[str, Any]) -> Any:
    """Merge allOf members (resolving $refs) into one object schema, recursively."""
    if isinstance(schema, dict) and "allOf" in schema and len(schema["allOf"]) == 1:
        return flatten(schema["allOf"][0], defs)
    if isinstance(schema, dict) and "allOf" in schema:
        merged: dict[str, Any] = {"type": "object", "properties": {}}
        for member in schema["allOf"]:
            part = flatten(member, defs)
            if isinstance(part, dict) and "$ref" in part:
                part = flatten(defs[part["$ref"].rsplit("/", 1)[-1]], defs)
            if isinstance(part, dict):
                merged["properties"].update(part.get("properties", {}))
        return merged
    if isinstance(schema, dict):
        return {k: (flatten(v, defs) if k in ("items", "additionalProperties") else
                    {n: flatten(s, defs) for n, s in v.items()} if k == "properties" else v)
                for k, v in schema.items()}
    return schema


def merge(old: Any, new: Any) -> Any:
    """``new`` with the properties ``old`` had and ``new`` lacks, recursively."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return new
    out = dict(new)
    if "properties" in old and "properties" in new:
        props = dict(new["properties"])
        for k, v in old["properties"].items():
            props[k] = merge(v, props[k]) if k in props else v
        out["properties"] = props
    for key in ("items", "additionalProperties"):
        if key in old and key in new:
            out[key] = merge(old[key], new[key])
    return out


def query_kind(prm: dict[str, Any]) -> dict[str, Any]:
    """The query spec entry for an OpenAPI parameter."""
    if prm["name"] == "filters":
        return {"type": "filters"}
    t = prm.get("type", "string")
    if t == "array":
        return {"type": "array"}
    if t in ("boolean", "integer"):
        return {"type": t}
    return {"type": "string"}


def build(spec: dict[str, Any]) -> dict[str, Any]:
    """One snapshot document."""
    defs = {name: convert(s) for name, s in spec.get("definitions", {}).items()}
    defs = {name: flatten(s, defs) for name, s in defs.items()}
    for name, fields in DEF_OVERRIDES.items():
        if name in defs:
            defs[name]["properties"].update(copy.deepcopy(fields))
    limit_entries(defs)
    endpoints: dict[str, Any] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "delete", "head"):
                continue
            ep = endpoint_for(method.upper(), path)
            if ep is None:
                print(f"warning: no route for {method.upper()} {path}", file=sys.stderr)
                continue
            entry: dict[str, Any] = {"query": {}}
            for prm in op.get("parameters", []):
                if prm["in"] == "query":
                    entry["query"][prm["name"]] = query_kind(prm)
                elif prm["in"] == "body" and ep.body == "json":
                    entry["body"] = flatten(convert(prm["schema"]), defs)
                    if ep.id in BODY_OVERRIDES:
                        entry["body"]["properties"].update(copy.deepcopy(BODY_OVERRIDES[ep.id]))
            entry["query"].update(copy.deepcopy(QUERY_OVERRIDES.get(ep.id, {})))
            if ep.id in BODY_REQUIRED:
                entry["body_required"] = True
            endpoints[ep.id] = entry
    for ident, extra in EXTRA_ENDPOINTS.items():
        endpoints.setdefault(ident, copy.deepcopy(extra))
        endpoints[ident]["query"].update(copy.deepcopy(QUERY_OVERRIDES.get(ident, {})))
    return {"endpoints": endpoints, "$defs": defs}


def main(argv: list[str]) -> int:
    ref = Path(argv[0]) if argv else Path("/work/shared/reference")
    previous: dict[str, Any] | None = None
    for snap in SNAPSHOTS:
        spec = yaml.safe_load((ref / f"engine-api-v{snap}.yaml").read_text())
        doc = build(spec)
        if previous is not None:
            for name, old in previous["$defs"].items():
                doc["$defs"][name] = merge(old, doc["$defs"][name]) if name in doc["$defs"] \
                    else old
            for ident, old in previous["endpoints"].items():
                new = doc["endpoints"].setdefault(ident, copy.deepcopy(old))
                new["query"] = {**old.get("query", {}), **new.get("query", {})}
                if "body" in old and "body" in new:
                    new["body"] = merge(old["body"], new["body"])
        else:
            doc["endpoints"].update(copy.deepcopy(LEGACY_1_41))
        document = {"version": snap, **doc}
        missing = [r.endpoint.id for r in ROUTES if r.endpoint.id not in doc["endpoints"]]
        if missing:
            print(f"v{snap}: endpoints without schema: {missing}", file=sys.stderr)
        (OUT / f"v{snap}.json").write_text(
            json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        previous = doc
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

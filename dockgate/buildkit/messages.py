"""Protobuf classes for the BuildKit messages dockgate reads, built from descriptors written here.

No ``protoc`` and no generated code: each message is listed below with the
field numbers and types of BuildKit's published ``.proto`` files (facts of the
wire format, read from moby/buildkit ``api/services/control/control.proto``,
``frontend/gateway/pb/gateway.proto``, ``solver/pb/ops.proto``,
``sourcepolicy/pb/policy.proto``, ``session/secrets/secrets.proto`` and
tonistiigi/fsutil ``types/wire.proto``, ``types/stat.proto``).  The
descriptors go into a private ``DescriptorPool`` so they can never clash with
another library's registration of the same names.

A sub-message dockgate does not inspect (a platform, a source map, a progress
group, resource limits) is declared as ``bytes``: the wire format of a
message field and a bytes field is the same, so it parses, stays known, and
costs no definition.

**Closed and open messages.**  Protobuf keeps fields a reader does not know.
The daemon's reader may know a field dockgate does not (a newer BuildKit), and
where such a field could change what the daemon does as root (a new op kind,
a new exec option, a new solve option) dockgate cannot judge the message: those
messages are *closed* (``CLOSED``) and every field BuildKit has ever defined
for them is declared, so an unknown field, or an enum number outside the
declared values, is a reason to refuse (``unknowns``).  Messages that only
narrow or describe (a selector of a source policy, a file stat, a secret
request, the exec stream's envelope) are *open*: their unknown fields are
ignored.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
    "bool": _F.TYPE_BOOL,
    "int64": _F.TYPE_INT64,
    "int32": _F.TYPE_INT32,
    "uint32": _F.TYPE_UINT32,
    "uint64": _F.TYPE_UINT64,
}

# A field: (name, number, type), type one of:
#   a scalar above, "*T" repeated T, ".pkg.Msg" a message, "enum .pkg.E" an enum,
#   "map<K,V>" a map (V a scalar or ".pkg.Msg"), "oneof:NAME T" a member of oneof NAME.
# A file: (name, package, dependencies, enums, messages); messages are
# (name, closed, fields).
_Field = tuple[str, int, str]
_Msg = tuple[str, bool, list[_Field]]
_Enum = tuple[str, list[tuple[str, int]]]
_File = tuple[str, str, list[str], list[_Enum], list[_Msg]]

_OPS: _File = (
    "dockgate/buildkit/ops.proto",
    "pb",
    [],
    [
        ("NetMode", [("UNSET", 0), ("HOST", 1), ("NONE", 2)]),
        ("SecurityMode", [("SANDBOX", 0), ("INSECURE", 1)]),
        ("MountType", [("BIND", 0), ("SECRET", 1), ("SSH", 2), ("CACHE", 3), ("TMPFS", 4)]),
        ("MountContentCache", [("DEFAULT", 0), ("ON", 1), ("OFF", 2)]),
        ("CacheSharingOpt", [("SHARED", 0), ("PRIVATE", 1), ("LOCKED", 2)]),
    ],
    [
        ("Definition", True, [
            ("def", 1, "*bytes"), ("metadata", 2, "map<string,bytes>"), ("Source", 3, "bytes"),
        ]),
        ("Op", True, [
            ("inputs", 1, "*.pb.Input"),
            ("exec", 2, "oneof:op .pb.ExecOp"), ("source", 3, "oneof:op .pb.SourceOp"),
            ("file", 4, "oneof:op .pb.FileOp"), ("build", 5, "oneof:op bytes"),
            ("merge", 6, "oneof:op bytes"), ("diff", 7, "oneof:op bytes"),
            ("passthrough", 8, "oneof:op bytes"),
            ("platform", 10, "bytes"), ("constraints", 11, "bytes"),
        ]),
        ("Input", True, [("digest", 1, "string"), ("index", 2, "int64")]),
        ("ExecOp", True, [
            ("meta", 1, ".pb.Meta"), ("mounts", 2, "*.pb.Mount"),
            ("network", 3, "enum .pb.NetMode"), ("security", 4, "enum .pb.SecurityMode"),
            ("secretenv", 5, "*bytes"), ("cdiDevices", 6, "*.pb.CDIDevice"),
        ]),
        ("Meta", True, [
            ("args", 1, "*string"), ("env", 2, "*string"), ("cwd", 3, "string"),
            ("user", 4, "string"), ("proxy_env", 5, "bytes"), ("extraHosts", 6, "*bytes"),
            ("hostname", 7, "string"), ("ulimit", 9, "*.pb.Ulimit"),
            ("cgroupParent", 10, "string"), ("removeMountStubsRecursive", 11, "bool"),
            ("validExitCodes", 12, "*int32"),
        ]),
        ("Ulimit", True, [("Name", 1, "string"), ("Soft", 2, "int64"), ("Hard", 3, "int64")]),
        ("CDIDevice", True, [("name", 1, "string"), ("optional", 2, "bool")]),
        ("Mount", True, [
            ("input", 1, "int64"), ("selector", 2, "string"), ("dest", 3, "string"),
            ("output", 4, "int64"), ("readonly", 5, "bool"),
            ("mountType", 6, "enum .pb.MountType"), ("TmpfsOpt", 19, "bytes"),
            ("cacheOpt", 20, ".pb.CacheOpt"), ("secretOpt", 21, ".pb.SecretOpt"),
            ("SSHOpt", 22, ".pb.SSHOpt"), ("resultID", 23, "string"),
            ("contentCache", 24, "enum .pb.MountContentCache"),
        ]),
        ("CacheOpt", True, [("ID", 1, "string"), ("sharing", 2, "enum .pb.CacheSharingOpt")]),
        ("SecretOpt", False, [("ID", 1, "string")]),
        ("SSHOpt", False, [("ID", 1, "string")]),
        ("SourceOp", True, [("identifier", 1, "string"), ("attrs", 2, "map<string,string>")]),
        ("FileOp", True, [("actions", 2, "*.pb.FileAction")]),
        ("FileAction", True, [
            ("input", 1, "int64"), ("secondaryInput", 2, "int64"), ("output", 3, "int64"),
            ("copy", 4, "oneof:action bytes"), ("mkfile", 5, "oneof:action bytes"),
            ("mkdir", 6, "oneof:action bytes"), ("rm", 7, "oneof:action bytes"),
            ("symlink", 8, "oneof:action bytes"),
        ]),
        # Read only where a file op writes a Dockerfile the frontend reads (a frontend
        # input): solve.written_files.
        ("FileActionMkFile", True, [
            ("path", 1, "string"), ("mode", 2, "int32"), ("data", 3, "bytes"),
            ("owner", 4, "bytes"), ("timestamp", 5, "int64"),
        ]),
        ("FileActionMkDir", True, [
            ("path", 1, "string"), ("mode", 2, "int32"), ("makeParents", 3, "bool"),
            ("owner", 4, "bytes"), ("timestamp", 5, "int64"),
        ]),
        # A definition's ``metadata`` values: read only to mark an op to ignore the
        # cache (``solve.tenant_solve``); open, its other fields go on as they came.
        ("OpMetadata", False, [("ignore_cache", 1, "bool")]),
    ],
)

_POLICY: _File = (
    "dockgate/buildkit/policy.proto",
    "moby.buildkit.v1.sourcepolicy",
    [],
    [("PolicyAction", [("ALLOW", 0), ("DENY", 1), ("CONVERT", 2)])],
    [
        ("Policy", True, [
            ("version", 1, "int64"), ("rules", 2, "*.moby.buildkit.v1.sourcepolicy.Rule"),
        ]),
        ("Rule", True, [
            ("action", 1, "enum .moby.buildkit.v1.sourcepolicy.PolicyAction"),
            ("selector", 2, "bytes"),
            ("updates", 3, ".moby.buildkit.v1.sourcepolicy.Update"),
        ]),
        ("Update", True, [("identifier", 1, "string"), ("attrs", 2, "map<string,string>")]),
    ],
)

_CONTROL: _File = (
    "dockgate/buildkit/control.proto",
    "moby.buildkit.v1",
    [_OPS[0], _POLICY[0]],
    [],
    [
        ("SolveRequest", True, [
            ("Ref", 1, "string"), ("Definition", 2, ".pb.Definition"),
            ("ExporterDeprecated", 3, "string"),
            ("ExporterAttrsDeprecated", 4, "map<string,string>"),
            ("Session", 5, "string"), ("Frontend", 6, "string"),
            ("FrontendAttrs", 7, "map<string,string>"),
            ("Cache", 8, ".moby.buildkit.v1.CacheOptions"),
            ("Entitlements", 9, "*string"),
            ("FrontendInputs", 10, "map<string,.pb.Definition>"),
            ("Internal", 11, "bool"),
            ("SourcePolicy", 12, ".moby.buildkit.v1.sourcepolicy.Policy"),
            ("Exporters", 13, "*.moby.buildkit.v1.Exporter"),
            ("EnableSessionExporter", 14, "bool"), ("SourcePolicySession", 15, "string"),
            ("CompatibilityVersion", 16, "int64"), ("ProxyNetwork", 17, "bool"),
        ]),
        ("CacheOptions", True, [
            ("ExportRefDeprecated", 1, "string"), ("ImportRefsDeprecated", 2, "*string"),
            ("ExportAttrsDeprecated", 3, "map<string,string>"),
            ("Exports", 4, "*.moby.buildkit.v1.CacheOptionsEntry"),
            ("Imports", 5, "*.moby.buildkit.v1.CacheOptionsEntry"),
        ]),
        ("CacheOptionsEntry", True, [("Type", 1, "string"), ("Attrs", 2, "map<string,string>")]),
        ("Exporter", True, [("Type", 1, "string"), ("Attrs", 2, "map<string,string>")]),
    ],
)

_GATEWAY: _File = (
    "dockgate/buildkit/gateway.proto",
    "moby.buildkit.v1.frontend",
    [_OPS[0], _POLICY[0]],
    [],
    [
        ("SolveRequest", True, [
            ("Definition", 1, ".pb.Definition"), ("Frontend", 2, "string"),
            ("FrontendOpt", 3, "map<string,string>"),
            # 4 was ImportCacheRefsDeprecated until BuildKit v0.11; older daemons read it.
            ("ImportCacheRefsDeprecated", 4, "*string"),
            ("allowResultReturn", 5, "bool"), ("allowResultArrayRef", 6, "bool"),
            ("Final", 10, "bool"), ("ExporterAttr", 11, "bytes"),
            ("CacheImports", 12, "*.moby.buildkit.v1.frontend.CacheOptionsEntry"),
            ("FrontendInputs", 13, "map<string,.pb.Definition>"),
            ("Evaluate", 14, "bool"),
            ("SourcePolicies", 15, "*.moby.buildkit.v1.sourcepolicy.Policy"),
        ]),
        ("CacheOptionsEntry", True, [("Type", 1, "string"), ("Attrs", 2, "map<string,string>")]),
        ("ResolveImageConfigRequest", True, [
            ("Ref", 1, "string"), ("Platform", 2, "bytes"), ("ResolveMode", 3, "string"),
            ("LogName", 4, "string"), ("ResolverType", 5, "int32"), ("SessionID", 6, "string"),
            ("StoreID", 7, "string"),
            ("SourcePolicies", 8, "*.moby.buildkit.v1.sourcepolicy.Policy"),
        ]),
        ("ResolveSourceMetaRequest", True, [
            ("Source", 1, ".pb.SourceOp"), ("Platform", 2, "bytes"), ("LogName", 3, "string"),
            ("ResolveMode", 4, "string"), ("Git", 5, "bytes"), ("Image", 6, "bytes"),
            ("HTTP", 7, "bytes"),
            ("SourcePolicies", 8, "*.moby.buildkit.v1.sourcepolicy.Policy"),
        ]),
        ("NewContainerRequest", True, [
            ("ContainerID", 1, "string"), ("Mounts", 2, "*.pb.Mount"),
            ("Network", 3, "enum .pb.NetMode"), ("platform", 4, "bytes"),
            ("constraints", 5, "bytes"), ("extraHosts", 6, "*bytes"), ("hostname", 7, "string"),
        ]),
        # Read for the image config a client-side build returns (open: only the
        # metadata is read; the refs were solved, and judged, before).
        ("ReturnRequest", False, [
            ("result", 1, ".moby.buildkit.v1.frontend.Result"), ("error", 2, "bytes"),
        ]),
        ("Result", False, [
            ("refDeprecated", 1, "oneof:result string"),
            ("refsDeprecated", 2, "oneof:result bytes"),
            ("ref", 3, "oneof:result bytes"), ("refs", 4, "oneof:result bytes"),
            ("metadata", 10, "map<string,bytes>"), ("attestations", 12, "*bytes"),
        ]),
        ("ExecMessage", False, [
            ("ProcessID", 1, "string"),
            ("Init", 2, "oneof:Input .moby.buildkit.v1.frontend.InitMessage"),
        ]),
        ("InitMessage", True, [
            ("ContainerID", 1, "string"), ("Meta", 2, ".pb.Meta"), ("Fds", 3, "*uint32"),
            ("Tty", 4, "bool"), ("Security", 5, "enum .pb.SecurityMode"),
            ("secretenv", 6, "*bytes"),
        ]),
    ],
)

_FSUTIL: _File = (
    "dockgate/buildkit/fsutil.proto",
    "fsutil.types",
    [],
    [("PacketType", [("PACKET_STAT", 0), ("PACKET_REQ", 1), ("PACKET_DATA", 2),
                     ("PACKET_FIN", 3), ("PACKET_ERR", 4)])],
    [
        ("Packet", True, [
            ("type", 1, "enum .fsutil.types.PacketType"), ("stat", 2, ".fsutil.types.Stat"),
            ("ID", 3, "uint32"), ("data", 4, "bytes"),
        ]),
        ("Stat", False, [
            ("path", 1, "string"), ("mode", 2, "uint32"), ("uid", 3, "uint32"),
            ("gid", 4, "uint32"), ("size", 5, "int64"), ("modTime", 6, "int64"),
            ("linkname", 7, "string"), ("devmajor", 8, "int64"), ("devminor", 9, "int64"),
            ("xattrs", 10, "map<string,bytes>"),
        ]),
    ],
)

_SECRETS: _File = (
    "dockgate/buildkit/secrets.proto",
    "moby.buildkit.secrets.v1",
    [],
    [],
    [("GetSecretRequest", False, [("ID", 1, "string"), ("annotations", 2, "map<string,string>")])],
)

_FILES = (_OPS, _POLICY, _CONTROL, _GATEWAY, _FSUTIL, _SECRETS)


def _field(msg: descriptor_pb2.DescriptorProto, name: str, number: int, kind: str) -> None:
    """Add one field (and, for a map, its entry type; for a oneof member, its oneof)."""
    f = msg.field.add(name=name, number=number, label=_F.LABEL_OPTIONAL)
    if kind.startswith("oneof:"):
        group, _, kind = kind[len("oneof:"):].partition(" ")
        names = [o.name for o in msg.oneof_decl]
        if group not in names:
            msg.oneof_decl.add(name=group)
            names.append(group)
        f.oneof_index = names.index(group)
    if kind.startswith("map<"):
        key, value = kind[4:-1].split(",")
        entry = msg.nested_type.add(name=name[0].upper() + name[1:] + "Entry")
        entry.options.map_entry = True
        _field(entry, "key", 1, key)
        _field(entry, "value", 2, value)
        f.label = _F.LABEL_REPEATED
        f.type = _F.TYPE_MESSAGE
        f.type_name = f".{msg.name}.{entry.name}"  # fixed up with the package below
        return
    if kind.startswith("*"):
        f.label = _F.LABEL_REPEATED
        kind = kind[1:]
    if kind.startswith("enum "):
        f.type = _F.TYPE_ENUM
        f.type_name = kind[5:]
    elif kind.startswith("."):
        f.type = _F.TYPE_MESSAGE
        f.type_name = kind
    else:
        f.type = _SCALARS[kind]


def _file(spec: _File) -> descriptor_pb2.FileDescriptorProto:
    name, package, deps, enums, messages = spec
    fd = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3")
    fd.dependency.extend(deps)
    for ename, values in enums:
        e = fd.enum_type.add(name=ename)
        for vname, number in values:
            e.value.add(name=f"{ename.upper()}_{vname}", number=number)
    for mname, _closed, fields in messages:
        m = fd.message_type.add(name=mname)
        for fname, number, kind in fields:
            _field(m, fname, number, kind)
        for f in m.field:
            if f.type_name.startswith(f".{mname}.") and f.type_name.endswith("Entry"):
                f.type_name = f".{package}{f.type_name}"
    return fd


_POOL = descriptor_pool.DescriptorPool()
for _spec in _FILES:
    _POOL.Add(_file(_spec))

CLOSED = frozenset(
    f"{spec[1]}.{name}" for spec in _FILES for name, closed, _ in spec[4] if closed
)
"""Full names of the messages in which an unknown field (or enum number) is refused."""


def message_class(full_name: str) -> type[Message]:
    """The class of ``full_name`` (``"pb.Op"``, ``"moby.buildkit.v1.SolveRequest"``)."""
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))


def parse(full_name: str, payload: bytes) -> Any:
    """Parse ``payload`` as ``full_name``.

    Raises:
        DecodeError: the bytes are not that message (truncated, a wrong wire
            type, invalid UTF-8 in a string, ...).
    """
    msg = message_class(full_name)()
    msg.ParseFromString(payload)
    return msg


def unknowns(msg: Message, where: str = "") -> list[str]:
    """Paths of the unknown fields and undeclared enum numbers in closed messages, recursively.

    Open messages are not searched for unknown fields, but their declared
    message fields are walked (a closed message may sit below an open one).
    """
    desc: Any = msg.DESCRIPTOR
    out: list[str] = []
    here = where or desc.name
    if desc.full_name in CLOSED:
        unknown: Any = UnknownFieldSet(msg)
        out.extend(f"{here}.#{u.field_number}" for u in unknown)
    for fd, value in msg.ListFields():
        path = f"{here}.{fd.name}"
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            vfd = fd.message_type.fields_by_name["value"]
            if vfd.message_type is not None:
                for key, item in value.items():
                    out.extend(unknowns(item, f"{path}[{key!r}]"))
            continue
        items = value if fd.is_repeated else [value]
        for i, item in enumerate(items):
            at = f"{path}[{i}]" if fd.is_repeated else path
            if fd.message_type is not None:
                out.extend(unknowns(item, at))
            elif (
                fd.enum_type is not None
                and desc.full_name in CLOSED
                and item not in fd.enum_type.values_by_number
            ):
                out.append(f"{at}={item}")
    return out


__all__ = ["CLOSED", "DecodeError", "message_class", "parse", "unknowns"]

"""BuildKit's gRPC messages decoded as the daemon reads them (dockgate.buildkit.solve).

The messages are built with dockgate's own classes (dockgate.buildkit.messages),
serialized, and decoded back; unknown fields are appended as raw wire bytes,
as a newer client would send them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from dockgate.buildkit import messages
from dockgate.buildkit.solve import (
    Undecodable,
    decode_bridge_solve,
    decode_control_solve,
    decode_exec_init,
    decode_filesync_packet,
    decode_new_container,
    decode_resolve_image_config,
    decode_resolve_source_meta,
    decode_secret_request,
)


def new(name: str, **fields: Any) -> Any:
    """A message of dockgate's class ``name`` with ``fields`` set."""
    return messages.message_class(name)(**fields)


def source_op(identifier: str, **attrs: str) -> bytes:
    op = new("pb.Op")
    op.source.identifier = identifier
    op.source.attrs.update(attrs)
    return bytes(op.SerializeToString())


def digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def exec_op(inputs: list[bytes], *, network: int = 0, security: int = 0) -> Any:
    op = new("pb.Op")
    for raw in inputs:
        op.inputs.add(digest=digest(raw), index=0)
    op.exec.meta.args.extend(["/bin/sh", "-c", "make"])
    op.exec.network = network
    op.exec.security = security
    return op


def definition(target: Any, ops: list[bytes]) -> None:
    getattr(target, "def").extend(ops)


# A varint field number 100 (tag 0xa0 0x06), as a newer client might add.
UNKNOWN = b"\xa0\x06\x01"


def test_control_solve_frontend_attrs_entitlements_exporters() -> None:
    """A buildx Control/Solve: frontend, its options, entitlements, exporters and caches."""
    req = new("moby.buildkit.v1.SolveRequest", Ref="r1", Session="s1", Frontend="dockerfile.v0")
    req.FrontendAttrs.update({"target": "app", "build-arg:X": "1"})
    req.Entitlements.extend(["network.host", "security.insecure"])
    req.Exporters.add(Type="moby", Attrs={"name": "x:latest", "push": "true"})
    req.Cache.Imports.add(Type="registry", Attrs={"ref": "ghcr.io/a/cache"})
    req.Cache.ImportRefsDeprecated.append("quay.io/b/cache")
    req.Cache.ExportRefDeprecated = "ghcr.io/a/out"
    ask = decode_control_solve(req.SerializeToString())
    assert (ask.via, ask.ref, ask.session, ask.frontend) == ("control", "r1", "s1", "dockerfile.v0")
    assert dict(ask.frontend_attrs) == {"target": "app", "build-arg:X": "1"}
    assert ask.entitlements == ("network.host", "security.insecure")
    assert ask.exporters == ("moby",)
    assert dict(ask.exporter_attrs[0]) == {"name": "x:latest", "push": "true"}
    assert ask.cache_imports == (
        ("registry", {"ref": "ghcr.io/a/cache"}),
        ("registry", {"ref": "quay.io/b/cache"}),
    )
    assert ask.cache_exports == (("registry", {"ref": "ghcr.io/a/out"}),)
    assert ask.ops == ()


def test_control_solve_deprecated_exporter_is_used_when_exporters_is_empty() -> None:
    """ExporterDeprecated and its attrs count as an exporter, as BuildKit appends them."""
    req = new("moby.buildkit.v1.SolveRequest", ExporterDeprecated="image")
    req.ExporterAttrsDeprecated["push"] = "true"
    ask = decode_control_solve(req.SerializeToString())
    assert ask.exporters == ("image",)
    assert dict(ask.exporter_attrs[0]) == {"push": "true"}


def test_definition_ops_sources_exec_and_mounts() -> None:
    """Ops are decoded by digest; a mount names the source op of its input."""
    image = source_op("docker-image://docker.io/library/busybox:latest")
    local = source_op("local://context", **{"local.session": "s1"})
    ex = exec_op([image, local], network=1, security=1)
    ex.exec.meta.cgroupParent = "/evil"
    ex.exec.meta.ulimit.add(Name="memlock", Soft=1, Hard=1)
    ex.exec.cdiDevices.add(name="vendor.com/gpu=0")
    ex.exec.mounts.add(input=0, dest="/", output=0)
    ex.exec.mounts.add(input=1, dest="/src", selector="sub", readonly=True, output=-1)
    ex.exec.mounts.add(input=-1, dest="/cache", mountType=3, output=-1).cacheOpt.ID = "go"
    ex.exec.mounts.add(input=-1, dest="/run/secrets/t", mountType=1).secretOpt.ID = "tok"
    ex.exec.mounts.add(input=-1, dest="/ssh", mountType=2).SSHOpt.ID = "default"
    ex.exec.mounts.add(input=-1, dest="/tmp", mountType=4)
    raw_ex = ex.SerializeToString()
    term = new("pb.Op")
    term.inputs.add(digest=digest(raw_ex))
    req = new("moby.buildkit.v1.SolveRequest")
    definition(req.Definition, [image, local, raw_ex, term.SerializeToString()])
    ops = decode_control_solve(req.SerializeToString()).ops
    assert [o.kind for o in ops] == ["source", "source", "exec", "none"]
    assert ops[0].identifier == "docker-image://docker.io/library/busybox:latest"
    assert ops[0].digest == digest(image)
    assert dict(ops[1].attrs) == {"local.session": "s1"}
    e = ops[2]
    assert (e.network, e.security, e.cgroup_parent) == ("host", "insecure", "/evil")
    assert (e.ulimits, e.devices, e.args) == (("memlock",), ("vendor.com/gpu=0",),
                                               ("/bin/sh", "-c", "make"))
    assert e.inputs == (digest(image), digest(local))
    m = e.mounts
    assert [x.type for x in m] == ["bind", "bind", "cache", "secret", "ssh", "tmpfs"]
    assert m[0].source == "docker-image://docker.io/library/busybox:latest"
    assert (m[1].source, m[1].selector, m[1].readonly) == ("local://context", "sub", True)
    assert (m[2].cache_id, m[3].secret_id, m[4].ssh_id) == ("go", "tok", "default")
    assert m[2].source == "" and m[2].input == -1
    assert ops[3].inputs == (digest(raw_ex),)


def test_frontend_inputs_ops_are_part_of_the_solve() -> None:
    """Named contexts given as definitions (FrontendInputs) are decoded too."""
    req = new("moby.buildkit.v1.SolveRequest", Frontend="dockerfile.v0")
    definition(req.FrontendInputs["context"], [source_op("git://github.com/x/y.git")])
    ask = decode_control_solve(req.SerializeToString())
    assert ask.frontend_inputs == ("context",)
    assert [o.identifier for o in ask.ops] == ["git://github.com/x/y.git"]


def test_source_policy_conversions_are_reported() -> None:
    """A client's source policy: CONVERT and DENY rules are listed, ALLOW ones are not."""
    req = new("moby.buildkit.v1.SolveRequest")
    req.SourcePolicy.version = 1
    req.SourcePolicy.rules.add(action=0)
    conv = req.SourcePolicy.rules.add(action=2)
    conv.updates.identifier = "git://evil.example/x"
    req.SourcePolicy.rules.add(action=1)
    assert decode_control_solve(req.SerializeToString()).source_policy == (
        "convert git://evil.example/x",
        "deny",
    )


def test_bridge_solve() -> None:
    """A gateway LLBBridge/Solve: frontend options, definition, cache imports."""
    req = new("moby.buildkit.v1.frontend.SolveRequest", Frontend="dockerfile.v0")
    req.FrontendOpt["force-network-mode"] = "host"
    req.ImportCacheRefsDeprecated.append("ghcr.io/old/cache")
    definition(req.Definition, [source_op("https://example.com/f.tgz")])
    ask = decode_bridge_solve(req.SerializeToString(), "b1")
    assert (ask.via, ask.ref, ask.frontend) == ("bridge", "b1", "dockerfile.v0")
    assert dict(ask.frontend_attrs) == {"force-network-mode": "host"}
    assert ask.cache_imports == (("registry", {"ref": "ghcr.io/old/cache"}),)
    assert ask.ops[0].identifier == "https://example.com/f.tgz"


def test_new_container_and_exec_init() -> None:
    """NewContainer gives the network; an ExecProcess Init the security mode."""
    nc = new("moby.buildkit.v1.frontend.NewContainerRequest", ContainerID="c1", Network=1)
    nc.Mounts.add(dest="/", resultID="res1")
    ask = decode_new_container(nc.SerializeToString(), "b1")
    assert (ask.buildid, ask.container_id, ask.network) == ("b1", "c1", "host")
    assert ask.mounts[0].result_id == "res1"
    msg = new("moby.buildkit.v1.frontend.ExecMessage", ProcessID="p")
    msg.Init.ContainerID = "c1"
    msg.Init.Security = 1
    msg.Init.Meta.args.append("sh")
    init = decode_exec_init(msg.SerializeToString(), "b1")
    assert init is not None
    assert (init.container_id, init.security, init.args) == ("c1", "insecure", ("sh",))
    # A stdin chunk (field 3, FdMessage) is not a process start.
    assert decode_exec_init(b"\x0a\x01p\x1a\x00", "b1") is None


def test_filesync_packet_and_secret_request() -> None:
    """A file sync packet's stat and data; a secret request's ID (never a value)."""
    p = new("fsutil.types.Packet", type=0, ID=3)
    p.stat.path = "Dockerfile"
    p.stat.mode = 0o644
    p.stat.size = 12
    got = decode_filesync_packet(p.SerializeToString())
    assert (got.kind, got.id, got.path, got.mode, got.size) == ("stat", 3, "Dockerfile", 0o644, 12)
    data = decode_filesync_packet(new("fsutil.types.Packet", type=2, ID=3, data=b"FROM x").
                                  SerializeToString())
    assert (data.kind, data.data) == ("data", b"FROM x")
    # Stat is open: an unknown field there is ignored.
    stat = new("fsutil.types.Stat", path="a").SerializeToString() + UNKNOWN
    assert decode_filesync_packet(b"\x12" + bytes([len(stat)]) + stat).path == "a"
    req = new("moby.buildkit.secrets.v1.GetSecretRequest", ID="tok")
    req.annotations["x"] = "y"
    assert decode_secret_request(req.SerializeToString()) == "tok"


def _in_definition(raw_op: bytes) -> bytes:
    req = new("moby.buildkit.v1.SolveRequest")
    definition(req.Definition, [raw_op])
    return bytes(req.SerializeToString())


def _exec_with_meta_unknown() -> bytes:
    op = exec_op([])
    meta = op.exec.meta.SerializeToString() + b"\xf8\x06\x01"  # field 111 in Meta
    op.exec.ClearField("meta")
    raw = op.SerializeToString() + b"\x12" + bytes([len(meta) + 2]) + b"\x0a" + bytes(
        [len(meta)]
    ) + meta
    return _in_definition(raw)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: new("moby.buildkit.v1.SolveRequest").SerializeToString() + UNKNOWN,
                     id="solve-request"),
        pytest.param(lambda: _in_definition(source_op("local://x") + UNKNOWN), id="op"),
        pytest.param(lambda: _in_definition(exec_op([], security=7).SerializeToString()),
                     id="security-enum"),
        pytest.param(lambda: _in_definition(exec_op([], network=9).SerializeToString()),
                     id="network-enum"),
        pytest.param(_exec_with_meta_unknown, id="meta"),
        pytest.param(lambda: _in_definition(b"\xff\xff"), id="garbage-op"),
        pytest.param(lambda: b"\x0a\x05ab", id="truncated"),
        pytest.param(lambda: b"\x0a\x02\xff\xfe", id="bad-utf8"),
    ],
)
def test_undecodable_and_unknown_fields_are_refused(build: Any) -> None:
    """Unknown fields (or enum numbers) of closed messages and broken bytes raise Undecodable."""
    with pytest.raises(Undecodable):
        decode_control_solve(build())


def test_unknown_fields_in_other_closed_messages() -> None:
    """Bridge solves, containers, exec inits and file sync packets are closed too."""
    with pytest.raises(Undecodable):
        decode_bridge_solve(UNKNOWN, "b")
    with pytest.raises(Undecodable):
        decode_new_container(UNKNOWN, "b")
    with pytest.raises(Undecodable):
        decode_filesync_packet(b"\x08\x09")  # packet type 9
    init = new("moby.buildkit.v1.frontend.InitMessage", ContainerID="c").SerializeToString()
    with pytest.raises(Undecodable):
        decode_exec_init(b"\x12" + bytes([len(init) + 3]) + init + UNKNOWN, "b")
    # The secret request is open: an unknown field is ignored.
    assert decode_secret_request(b"\x0a\x01a" + UNKNOWN) == "a"


def test_resolve_requests_are_sources() -> None:
    """ResolveImageConfig and ResolveSourceMeta make the daemon contact a source: one op each."""
    req = new("moby.buildkit.v1.frontend.ResolveImageConfigRequest", Ref="ghcr.io/a/b:1")
    ask = decode_resolve_image_config(req.SerializeToString(), "b1")
    assert [o.identifier for o in ask.ops] == ["docker-image://ghcr.io/a/b:1"]
    oci = new("moby.buildkit.v1.frontend.ResolveImageConfigRequest", Ref="x@sha256:00",
              ResolverType=1, SessionID="s1", StoreID="st")
    op = decode_resolve_image_config(oci.SerializeToString(), "b1").ops[0]
    assert (op.identifier, op.attrs["oci.session"]) == ("oci-layout://x@sha256:00", "s1")
    meta = new("moby.buildkit.v1.frontend.ResolveSourceMetaRequest")
    meta.Source.identifier = "git://github.com/a/b.git"
    meta.Source.attrs["git.fullurl"] = "https://github.com/a/b.git"
    ask = decode_resolve_source_meta(meta.SerializeToString(), "b1")
    assert (ask.ref, ask.ops[0].identifier) == ("b1", "git://github.com/a/b.git")
    with pytest.raises(Undecodable):
        decode_resolve_source_meta(meta.SerializeToString() + UNKNOWN, "b1")

"""What a BuildKit solve asks for, decoded from its gRPC messages (pure).

Each decoder takes one gRPC message body (without the 5-byte gRPC prefix)
and returns a frozen dataclass the ``build`` control judges
(``dockgate.policy.buildcontrol``).  A body that does not parse, or that
carries a field dockgate does not know in a message where such a field could
change what the daemon does as root (``messages.CLOSED``), raises
``Undecodable``: the mediator ends the call with that error, it never passes
the message on unjudged.

An LLB ``Definition`` is a list of serialized ``pb.Op``; each is decoded on
its own and named by its digest (``sha256:`` of its bytes, as BuildKit names
it), so a mount's input can be followed to the source op it reads.  A
Dockerfile build through the ``dockerfile.v0`` frontend carries no
definition: the frontend runs inside the daemon, so its facts are the
frontend options here and the Dockerfile itself (``judge_dockerfile``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dockgate.buildkit import messages


class Undecodable(ValueError):
    """A message dockgate cannot decode (or that carries a field it does not know
    where an unknown field could change what the daemon does as root): the
    mediator ends the call with an error instead of passing it on."""


@dataclass(frozen=True, slots=True)
class LlbMount:
    """One mount of an exec op.

    Attributes:
        type: ``bind``, ``cache``, ``secret``, ``ssh`` or ``tmpfs``.
        dest: the path inside the step's container.
        input: index of the op input mounted (-1: none, scratch).
        source: the source identifier of that input when it is a source op
            (``docker-image://...``, ``local://context``, ``git://...``), "" otherwise.
        selector: the path inside the input.
        readonly: the mount is read-only.
        cache_id / secret_id / ssh_id: the id of a cache, secret or ssh mount.
        result_id: a gateway container's mount of an earlier result.
    """

    type: str
    dest: str
    input: int = -1
    source: str = ""
    selector: str = ""
    readonly: bool = False
    cache_id: str = ""
    secret_id: str = ""
    ssh_id: str = ""
    result_id: str = ""


@dataclass(frozen=True, slots=True)
class LlbOp:
    """One op of an LLB definition.

    Attributes:
        digest: ``sha256:...`` of the serialized op (how other ops name it).
        kind: ``source``, ``exec``, ``file``, ``build``, ``merge``, ``diff`` or ``none``
            (the terminal op that only names the result).
        inputs: digests of the ops this one reads.
        identifier: a source op's identifier (``docker-image://busybox:latest``).
        attrs: a source op's attributes.
        network: an exec op's network mode: ``sandbox``, ``host`` or ``none``.
        security: an exec op's security mode: ``sandbox`` or ``insecure``.
        mounts: an exec op's mounts.
        args: an exec op's command line (for the audit record).
        cgroup_parent: an exec op's cgroup parent ("" is the daemon's).
        ulimits: names of an exec op's rlimits.
        devices: names of the CDI devices an exec op asks for.
        origin: "" for the solve's own definition, else the name of the
            frontend input (named context) the op came from.
    """

    digest: str
    kind: str
    inputs: tuple[str, ...] = ()
    identifier: str = ""
    attrs: Mapping[str, str] = field(default_factory=dict)
    network: str = ""
    security: str = ""
    mounts: tuple[LlbMount, ...] = ()
    args: tuple[str, ...] = ()
    cgroup_parent: str = ""
    ulimits: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    origin: str = ""


@dataclass(frozen=True, slots=True)
class SolveAsk:
    """What one Solve asks the daemon to do.

    Attributes:
        via: ``control`` (``/moby.buildkit.v1.Control/Solve``, the client's
            build) or ``bridge`` (``/moby.buildkit.v1.frontend.LLBBridge/Solve``,
            a frontend's sub-solve).
        ref: the solve's ref (control) or the build id (bridge).
        session: the session the daemon pulls the context and secrets from.
        frontend: ``dockerfile.v0``, ``gateway.v0`` or "" (a raw LLB definition).
        frontend_attrs: the frontend's options (``FrontendAttrs`` / ``FrontendOpt``).
        entitlements: ``network.host``, ``security.insecure``, ... as asked.
        ops: the LLB definition's ops (empty for a frontend solve).
        exporters: exporter types (``image``, ``moby``, ``local``, ``tar``, ...).
        exporter_attrs: each exporter's attributes, parallel to ``exporters``.
        frontend_inputs: names of the frontend's input definitions (named
            contexts); their ops are part of ``ops``.
        cache_imports / cache_exports: ``(type, attrs)`` of each cache source
            and destination (a ``registry`` one is a pull or a push).
        source_policy: the rules of a client-sent source policy that are not
            ``ALLOW``, as ``deny`` / ``convert <identifier>``: a conversion
            rewrites a source after dockgate has judged it.
        dockerfile_input: None without a frontend input named ``dockerfile``;
            else the files it writes, ``(path, bytes)``, when it is a file op
            on scratch that only makes files and directories (what buildx
            sends for an inline Dockerfile), ``()`` when it is anything else.
            The dockerfile frontend reads its Dockerfile from that input
            instead of the session (moby/buildkit ``frontend/dockerui``).
    """

    via: Literal["control", "bridge"]
    ref: str = ""
    session: str = ""
    frontend: str = ""
    frontend_attrs: Mapping[str, str] = field(default_factory=dict)
    entitlements: tuple[str, ...] = ()
    ops: tuple[LlbOp, ...] = ()
    exporters: tuple[str, ...] = ()
    exporter_attrs: tuple[Mapping[str, str], ...] = ()
    frontend_inputs: tuple[str, ...] = ()
    cache_imports: tuple[tuple[str, Mapping[str, str]], ...] = ()
    cache_exports: tuple[tuple[str, Mapping[str, str]], ...] = ()
    source_policy: tuple[str, ...] = ()
    dockerfile_input: tuple[tuple[str, bytes], ...] | None = None


@dataclass(frozen=True, slots=True)
class ContainerAsk:
    """A gateway ``NewContainer`` (or the ``ExecProcess`` ``Init`` that starts a
    process in it): a container the client starts inside the build.

    Attributes:
        buildid: the build it belongs to.
        container_id: the id the frontend chose.
        network: ``sandbox``, ``host`` or ``none``.
        security: ``sandbox`` or ``insecure`` (set by an ExecProcess ``Init``).
        mounts: its mounts (``result_id`` names the result mounted).
        cgroup_parent, ulimits, args: an ``Init``'s process settings.
    """

    buildid: str
    container_id: str = ""
    network: str = ""
    security: str = ""
    mounts: tuple[LlbMount, ...] = ()
    cgroup_parent: str = ""
    ulimits: tuple[str, ...] = ()
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Packet:
    """One fsutil packet on the session's file sync stream.

    Attributes:
        kind: ``stat``, ``req``, ``data``, ``fin`` or ``err``.
        id: the file id the packet is about.
        path: a ``stat`` packet's path ("" otherwise).
        mode: a ``stat`` packet's mode bits (Go ``os.FileMode``).
        size: a ``stat`` packet's size.
        linkname: a ``stat`` packet's symlink target.
        data: a ``data`` packet's bytes (or an ``err`` packet's message).
        uid, gid: a ``stat`` packet's owner.
        mod_time: a ``stat`` packet's modification time (Unix nanoseconds).
    """

    kind: str
    id: int = 0
    path: str = ""
    mode: int = 0
    size: int = 0
    linkname: str = ""
    data: bytes = b""
    uid: int = 0
    gid: int = 0
    mod_time: int = 0



_NET = {0: "sandbox", 1: "host", 2: "none"}
_SECURITY = {0: "sandbox", 1: "insecure"}
_MOUNT = {0: "bind", 1: "secret", 2: "ssh", 3: "cache", 4: "tmpfs"}
_PACKET = {0: "stat", 1: "req", 2: "data", 3: "fin", 4: "err"}
_ACTION = {1: "deny", 2: "convert"}


def _parse(full_name: str, payload: bytes, what: str) -> Any:
    """Parse ``payload`` and refuse unknown fields of closed messages (Undecodable)."""
    try:
        msg = messages.parse(full_name, bytes(payload))
    except messages.DecodeError as e:
        raise Undecodable(f"{what} is not a valid {full_name} message: {e}") from None
    unknown = messages.unknowns(msg)
    if unknown:
        raise Undecodable(
            f"{what} carries fields dockgate does not know ({', '.join(unknown[:4])}),"
            " which could change what the daemon does"
        )
    return msg


def _op(raw: bytes, index: int, where: str) -> tuple[str, Any]:
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    return digest, _parse("pb.Op", raw, f"{where} op {index}")


def _mount(m: Any, source_of: Mapping[int, str]) -> LlbMount:
    kind = _MOUNT[m.mountType]
    return LlbMount(
        type=kind,
        dest=m.dest,
        input=m.input,
        source=source_of.get(m.input, ""),
        selector=m.selector,
        readonly=m.readonly,
        cache_id=m.cacheOpt.ID if kind == "cache" else "",
        secret_id=m.secretOpt.ID if kind == "secret" else "",
        ssh_id=m.SSHOpt.ID if kind == "ssh" else "",
        result_id=m.resultID,
    )


def decode_definition(
    definition: Any, where: str = "definition", origin: str = ""
) -> tuple[LlbOp, ...]:
    """The ops of a parsed ``pb.Definition``, each with its digest and facts."""
    parsed = [_op(raw, i, where) for i, raw in enumerate(getattr(definition, "def"))]
    identifiers = {d: op.source.identifier for d, op in parsed if op.WhichOneof("op") == "source"}
    out: list[LlbOp] = []
    for digest, op in parsed:
        kind = op.WhichOneof("op") or "none"
        inputs = tuple(i.digest for i in op.inputs)
        if kind == "source":
            out.append(LlbOp(digest, kind, inputs, identifier=op.source.identifier,
                             attrs=dict(op.source.attrs), origin=origin))
        elif kind == "exec":
            ex = op.exec
            source_of = {n: identifiers.get(d, "") for n, d in enumerate(inputs)}
            out.append(LlbOp(
                digest, kind, inputs,
                network=_NET[ex.network],
                security=_SECURITY[ex.security],
                mounts=tuple(_mount(m, source_of) for m in ex.mounts),
                args=tuple(ex.meta.args),
                cgroup_parent=ex.meta.cgroupParent,
                ulimits=tuple(u.Name for u in ex.meta.ulimit),
                devices=tuple(d.name for d in ex.cdiDevices),
                origin=origin,
            ))
        else:
            out.append(LlbOp(digest, kind, inputs, origin=origin))
    return tuple(out)


def _cache(entries: Any) -> tuple[tuple[str, Mapping[str, str]], ...]:
    return tuple((e.Type, dict(e.Attrs)) for e in entries)


def _policies(policies: Any) -> tuple[str, ...]:
    """Each rule of the source policies that is not ALLOW, as ``action identifier``."""
    out: list[str] = []
    for policy in policies:
        for rule in policy.rules:
            if rule.action in _ACTION:
                out.append(f"{_ACTION[rule.action]} {rule.updates.identifier}".rstrip())
    return tuple(out)


DOCKERFILE_INPUT = "dockerfile"
"""The frontend input the dockerfile frontend reads its Dockerfile from, when there is one."""


def written_files(definition: Any, where: str) -> tuple[tuple[str, bytes], ...]:
    """The files a definition writes when it is one file op on scratch that only makes
    files and directories (``llb.Scratch().File(llb.Mkfile(...))``): ``(path, data)``
    each; ``()`` for any other definition (its files are not known before it runs)."""
    raw = list(getattr(definition, "def"))
    if len(raw) != 2:
        return ()
    fileop = _op(raw[0], 0, where)[1]
    terminal = _op(raw[1], 1, where)[1]
    digest = "sha256:" + hashlib.sha256(raw[0]).hexdigest()
    if (fileop.WhichOneof("op") != "file" or fileop.inputs or terminal.WhichOneof("op")
            or [(i.digest, i.index) for i in terminal.inputs] != [(digest, 0)]):
        return ()
    out: list[tuple[str, bytes]] = []
    for n, action in enumerate(fileop.file.actions):
        kind = action.WhichOneof("action")
        if kind not in ("mkfile", "mkdir") or action.secondaryInput != -1 \
                or not -1 <= action.input < n:
            return ()
        if kind == "mkfile":
            mk = _parse("pb.FileActionMkFile", action.mkfile, f"{where} mkfile")
            out.append((mk.path, bytes(mk.data)))
        else:
            _parse("pb.FileActionMkDir", action.mkdir, f"{where} mkdir")
    return tuple(out)


def _inputs(inputs: Any, where: str) -> tuple[tuple[str, ...], tuple[LlbOp, ...],
                                              tuple[tuple[str, bytes], ...] | None]:
    """Names, ops and the ``dockerfile`` input's files (``SolveAsk.dockerfile_input``)."""
    names = tuple(sorted(inputs))
    ops: list[LlbOp] = []
    for name in names:
        ops.extend(decode_definition(inputs[name], f"{where} input {name!r}", name))
    dockerfile = written_files(inputs[DOCKERFILE_INPUT], f"{where} input 'dockerfile'") \
        if DOCKERFILE_INPUT in inputs else None
    return names, tuple(ops), dockerfile


def decode_control_solve(payload: bytes) -> SolveAsk:
    """``/moby.buildkit.v1.Control/Solve`` request body → SolveAsk (Undecodable if not)."""
    req = _parse("moby.buildkit.v1.SolveRequest", payload, "Control/Solve")
    exporters = [(e.Type, dict(e.Attrs)) for e in req.Exporters]
    if not exporters and req.ExporterDeprecated:
        # BuildKit appends the deprecated pair when Exporters is empty.
        exporters.append((req.ExporterDeprecated, dict(req.ExporterAttrsDeprecated)))
    cache = req.Cache
    imports = list(_cache(cache.Imports))
    imports += [("registry", {"ref": r}) for r in cache.ImportRefsDeprecated]
    exports = list(_cache(cache.Exports))
    if cache.ExportRefDeprecated:
        ref = cache.ExportRefDeprecated
        exports.append(("registry", {**cache.ExportAttrsDeprecated, "ref": ref}))
    names, input_ops, dockerfile = _inputs(req.FrontendInputs, "Control/Solve")
    policy = [req.SourcePolicy] if req.HasField("SourcePolicy") else []
    return SolveAsk(
        via="control",
        ref=req.Ref,
        session=req.Session,
        frontend=req.Frontend,
        frontend_attrs=dict(req.FrontendAttrs),
        entitlements=tuple(req.Entitlements),
        ops=decode_definition(req.Definition, "Control/Solve") + input_ops,
        exporters=tuple(t for t, _ in exporters),
        exporter_attrs=tuple(a for _, a in exporters),
        frontend_inputs=names,
        cache_imports=tuple(imports),
        cache_exports=tuple(exports),
        source_policy=_policies(policy),
        dockerfile_input=dockerfile,
    )


_ATTRS = {
    "control": ("moby.buildkit.v1.SolveRequest", "FrontendAttrs", "Control/Solve"),
    "bridge": ("moby.buildkit.v1.frontend.SolveRequest", "FrontendOpt", "LLBBridge/Solve"),
}


NO_CACHE_ATTR = "no-cache"
"""The frontend option that makes the dockerfile frontend mark every step of the stages
it names (an empty value: of all stages) to ignore the cache (moby/buildkit
``frontend/dockerui/config.go``, ``dockerfile2llb``: ``llb.IgnoreCache`` on each
``RUN``, ``COPY`` and ``ADD``).  A step that ignores the cache queries no cache record,
the daemon's own or one a ``--cache-from`` import brings (``solver/edge.go``), and runs."""


def _ignore_cache(definition: Any, where: str) -> int:
    """Mark every op of ``definition`` to ignore the cache (its ``OpMetadata``, keyed by
    the op's digest, which the mark does not change); the number of ops marked."""
    ops = list(getattr(definition, "def"))
    for n, raw in enumerate(ops):
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        meta = _parse("pb.OpMetadata", definition.metadata.get(digest, b""),
                      f"{where} op {n} metadata")
        meta.ignore_cache = True
        definition.metadata[digest] = meta.SerializeToString(deterministic=True)
    return len(ops)


def tenant_solve(payload: bytes, via: Literal["control", "bridge"],
                 attrs: Mapping[str, str], ignore_cache: bool) -> tuple[bytes, int]:
    """A Control or LLBBridge Solve request body with the frontend options ``attrs`` set
    (replacing the client's) and, with ``ignore_cache``, every op of its LLB definition
    and of its frontend inputs marked to ignore the cache; re-encoded, with the number
    of ops marked (Undecodable as the decoders).

    The request was parsed with unknown fields refused, so the new encoding carries
    exactly the fields dockgate judged; it is serialized deterministically (map
    entries sorted), which protobuf readers take as the same message.
    """
    full_name, field_name, what = _ATTRS[via]
    req = _parse(full_name, payload, what)
    options = getattr(req, field_name)
    for key, value in attrs.items():
        options[key] = value
    marked = 0
    if ignore_cache:
        marked = _ignore_cache(req.Definition, what)
        for name in sorted(req.FrontendInputs):
            marked += _ignore_cache(req.FrontendInputs[name], f"{what} input {name!r}")
    return bytes(req.SerializeToString(deterministic=True)), marked


def decode_bridge_solve(payload: bytes, buildid: str) -> SolveAsk:
    """``/moby.buildkit.v1.frontend.LLBBridge/Solve`` request body → SolveAsk."""
    req = _parse("moby.buildkit.v1.frontend.SolveRequest", payload, "LLBBridge/Solve")
    imports = list(_cache(req.CacheImports))
    imports += [("registry", {"ref": r}) for r in req.ImportCacheRefsDeprecated]
    names, input_ops, dockerfile = _inputs(req.FrontendInputs, "LLBBridge/Solve")
    return SolveAsk(
        via="bridge",
        ref=buildid,
        frontend=req.Frontend,
        frontend_attrs=dict(req.FrontendOpt),
        ops=decode_definition(req.Definition, "LLBBridge/Solve") + input_ops,
        frontend_inputs=names,
        cache_imports=tuple(imports),
        source_policy=_policies(req.SourcePolicies),
        dockerfile_input=dockerfile,
    )


def decode_resolve_image_config(payload: bytes, buildid: str) -> SolveAsk:
    """``LLBBridge/ResolveImageConfig``: the daemon reads an image's config (a registry
    contact, or the client's OCI store through the session) → a SolveAsk with that one
    source, judged like any solve."""
    req = _parse("moby.buildkit.v1.frontend.ResolveImageConfigRequest", payload,
                 "ResolveImageConfig")
    if req.ResolverType == 1:  # the OCI layout store on the client's session
        op = LlbOp("", "source", identifier=f"oci-layout://{req.Ref}",
                   attrs={"oci.session": req.SessionID, "oci.store": req.StoreID})
    else:
        op = LlbOp("", "source", identifier=f"docker-image://{req.Ref}")
    return SolveAsk(via="bridge", ref=buildid, ops=(op,),
                    source_policy=_policies(req.SourcePolicies))


def decode_resolve_source_meta(payload: bytes, buildid: str) -> SolveAsk:
    """``LLBBridge/ResolveSourceMeta``: the daemon resolves a source (an image, a git
    remote's commit, an http checksum) → a SolveAsk with that source op."""
    req = _parse("moby.buildkit.v1.frontend.ResolveSourceMetaRequest", payload,
                 "ResolveSourceMeta")
    op = LlbOp("", "source", identifier=req.Source.identifier, attrs=dict(req.Source.attrs))
    return SolveAsk(via="bridge", ref=buildid, ops=(op,),
                    source_policy=_policies(req.SourcePolicies))


def decode_new_container(payload: bytes, buildid: str) -> ContainerAsk:
    """``/moby.buildkit.v1.frontend.LLBBridge/NewContainer`` request body → ContainerAsk.

    Its mounts name results (``resultID``) of the build's earlier solves,
    which were judged when they were solved; the network mode is judged here.
    """
    req = _parse("moby.buildkit.v1.frontend.NewContainerRequest", payload, "NewContainer")
    return ContainerAsk(
        buildid=buildid,
        container_id=req.ContainerID,
        network=_NET[req.Network],
        mounts=tuple(_mount(m, {}) for m in req.Mounts),
    )


def decode_exec_init(payload: bytes, buildid: str) -> ContainerAsk | None:
    """One ``LLBBridge/ExecProcess`` client message → the process it starts, or None.

    Only an ``Init`` message starts a process (in a container made by
    ``NewContainer``), with its own security mode and cgroup parent; stdin
    data, resizes and signals return None and are relayed as they are.
    """
    msg = _parse("moby.buildkit.v1.frontend.ExecMessage", payload, "ExecProcess")
    if msg.WhichOneof("Input") != "Init":
        return None
    init = msg.Init
    return ContainerAsk(
        buildid=buildid,
        container_id=init.ContainerID,
        security=_SECURITY[init.Security],
        cgroup_parent=init.Meta.cgroupParent,
        ulimits=tuple(u.Name for u in init.Meta.ulimit),
        args=tuple(init.Meta.args),
    )


def decode_filesync_packet(payload: bytes) -> Packet:
    """One fsutil ``types.Packet`` of the session's file sync → Packet."""
    p = _parse("fsutil.types.Packet", payload, "file sync packet")
    kind = _PACKET[p.type]
    st = p.stat
    return Packet(
        kind=kind,
        id=p.ID,
        path=st.path,
        mode=st.mode,
        size=st.size,
        linkname=st.linkname,
        data=p.data,
        uid=st.uid,
        gid=st.gid,
        mod_time=st.modTime,
    )


def decode_secret_request(payload: bytes) -> str:
    """``/moby.buildkit.secrets.v1.Secrets/GetSecret`` request → the secret's ID."""
    req = _parse("moby.buildkit.secrets.v1.GetSecretRequest", payload, "GetSecret")
    return str(req.ID)


def decode_return_metadata(payload: bytes) -> Mapping[str, bytes]:
    """``LLBBridge/Return`` request → its result's metadata (the image config the
    exporter writes is there, under ``containerimage.config`` keys)."""
    req = _parse("moby.buildkit.v1.frontend.ReturnRequest", payload, "Return")
    return {str(k): bytes(v) for k, v in req.result.metadata.items()}


def return_has_result(payload: bytes) -> bool:
    """Whether an ``LLBBridge/Return`` request hands the exporter a result (a ref or refs),
    not only an error."""
    req = _parse("moby.buildkit.v1.frontend.ReturnRequest", payload, "Return")
    return req.result.WhichOneof("result") is not None

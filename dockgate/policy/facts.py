"""What a request asks of the host, pulled out of each endpoint's body shape.

The same danger arrives in several shapes: a host bind is a ``Binds`` string,
a ``Mounts`` entry, a local-driver volume with ``o=bind``, a ``volume.create``
with ``DriverOpts``, or a service's ``ContainerSpec.Mounts``.  Controls must
not each know every shape (one forgotten shape is a bypass), so this module
reduces every endpoint to one ``Facts`` value and the controls only read that.

Each fact carries the field it came from (``HostConfig.Binds[0]``) because
denials must name it.  The extractor is defensive: the admission layer has
already canonicalised keys, but a missing ``HostConfig`` or a ``null`` is
treated as empty, and a value of the wrong type becomes an ``invalid`` fact
that controls deny rather than skip.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dockgate.model import CanonicalRequest
from dockgate.policy import spelling


@dataclass(slots=True)
class MountFact:
    """One mount of any shape.

    Attributes:
        field: where it came from.
        kind: ``bind``, ``volume``, ``tmpfs``, ``image``, ``npipe``, ``cluster``
            or ``invalid`` (unparseable; always denied by mount controls).
        host_path: the cleaned host path this exposes, or None.
        source: volume name / image reference / raw source.
        read_only: mounted read-only.
        propagation: bind propagation (``rshared`` …) or "".
        driver: volume driver, or None.
        driver_options: volume driver options, or None.
        error: why it is invalid.
    """

    field: str
    kind: str
    host_path: str | None = None
    source: str | None = None
    read_only: bool = False
    propagation: str = ""
    driver: str | None = None
    driver_options: Mapping[str, str] | None = None
    error: str | None = None


@dataclass(slots=True)
class Facts:
    """Everything the controls look at, with the field each value came from.

    Lists hold ``(field, value)`` pairs.  ``update`` marks a partial update
    (``container.update``), where an absent field means "unchanged".
    ``workload`` is set (to the field that holds its security options) when the
    request defines a new container or task, so requirements such as "must
    drop ALL" or "must set a memory limit" apply; partial updates and exec
    leave it None.
    """

    update: bool = False
    privileged: list[tuple[str, Any]] = field(default_factory=list)
    mounts: list[MountFact] = field(default_factory=list)
    volumes_from: list[tuple[str, Any]] = field(default_factory=list)
    volume_drivers: list[tuple[str, str]] = field(default_factory=list)
    cap_add: list[tuple[str, Any]] = field(default_factory=list)
    cap_drop: list[tuple[str, list[Any]]] = field(default_factory=list)
    namespaces: list[tuple[str, str, Any]] = field(default_factory=list)
    devices: list[tuple[str, Any]] = field(default_factory=list)
    device_requests: list[tuple[str, Any]] = field(default_factory=list)
    cgroup_rules: list[tuple[str, Any]] = field(default_factory=list)
    security: list[tuple[str, spelling.SecurityOption]] = field(default_factory=list)
    workload: str | None = None
    system_paths: list[tuple[str, Any]] = field(default_factory=list)
    sysctls: list[tuple[str, Any]] = field(default_factory=list)
    cgroup_parent: list[tuple[str, Any]] = field(default_factory=list)
    group_add: list[tuple[str, Any]] = field(default_factory=list)
    runtimes: list[tuple[str, Any]] = field(default_factory=list)
    oom_kill_disable: list[tuple[str, Any]] = field(default_factory=list)
    ports: list[tuple[str, Any, Any]] = field(default_factory=list)
    publish_all: list[tuple[str, Any]] = field(default_factory=list)
    users: list[tuple[str, Any]] = field(default_factory=list)
    images: list[tuple[str, Any]] = field(default_factory=list)
    image_import: list[str] = field(default_factory=list)
    resources: dict[str, tuple[str, Any]] = field(default_factory=dict)
    resource_scope: str | None = None
    invalid: list[tuple[str, str]] = field(default_factory=list)
    log_configs: list[tuple[str, Any, Any]] = field(default_factory=list)
    tmpfs: list[tuple[str, list[str]]] = field(default_factory=list)
    ulimits: list[tuple[str, Any]] = field(default_factory=list)
    oom_score_adj: list[tuple[str, Any]] = field(default_factory=list)
    plugin_names: list[tuple[str, Any]] = field(default_factory=list)
    network: NetworkFact | None = None


@dataclass(slots=True)
class NetworkFact:
    """What ``POST /networks/create`` asks of the host (``None`` members were not sent)."""

    driver: Any = None
    ipam_driver: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)
    ipam_options: Mapping[str, Any] = field(default_factory=dict)
    internal: Any = None
    ingress: Any = None
    config_from: Any = None
    scope: Any = None
    enable_ipv6: Any = None
    config_only: Any = None
    ipam_config: Any = None


def _map(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _list(facts: Facts, where: str, v: Any) -> list[Any]:
    """A JSON array, [] for null/absent; any other type is recorded as invalid."""
    if v is None:
        return []
    if isinstance(v, list):
        return v
    facts.invalid.append((where, "must be an array"))
    return []


_NAMESPACE_FIELDS = ("PidMode", "IpcMode", "NetworkMode", "UTSMode", "UsernsMode", "CgroupnsMode")
_RESOURCE_FIELDS = ("Memory", "MemorySwap", "NanoCpus", "CpuQuota", "CpuPeriod", "PidsLimit")


def _local_volume(m: MountFact) -> None:
    """A local-driver volume with a ``device`` option is a host mount in disguise.

    ``type=none,o=bind,device=/x`` binds ``/x``; ``type=ext4,device=/dev/sda1``
    mounts a host block device.  Both are host paths.  (An NFS ``device`` such
    as ``:/export`` is not absolute and is left alone.)
    """
    opts = m.driver_options or {}
    device = opts.get("device")
    if (m.driver in (None, "", "local")) and isinstance(device, str) and device.startswith("/"):
        m.host_path = spelling.host_path(device)
        o = str(opts.get("o", "")).split(",")
        if any(x == "ro" for x in o):
            m.read_only = True


def _mount(facts: Facts, where: str, m: Any) -> None:
    if not isinstance(m, Mapping):
        facts.mounts.append(MountFact(where, "invalid", error="must be an object"))
        return
    kind = str(m.get("Type") or "")
    src = m.get("Source")
    fact = MountFact(
        where,
        kind,
        source=src if isinstance(src, str) else None,
        read_only=m.get("ReadOnly") is True,
    )
    if kind == "bind":
        if not isinstance(src, str) or not src.startswith("/"):
            fact.kind, fact.error = "invalid", "bind Source must be an absolute path"
        else:
            fact.host_path = spelling.host_path(src)
        fact.propagation = str(_map(m.get("BindOptions")).get("Propagation") or "")
    elif kind == "volume":
        dc = _map(_map(m.get("VolumeOptions")).get("DriverConfig"))
        name = dc.get("Name")
        fact.driver = name if isinstance(name, str) else None
        opts = dc.get("Options")
        if isinstance(opts, Mapping):
            fact.driver_options = {str(k): str(v) for k, v in opts.items()}
        _local_volume(fact)
        if fact.driver:
            facts.volume_drivers.append((where + ".VolumeOptions.DriverConfig.Name", fact.driver))
    elif kind == "image":
        if isinstance(src, str):
            facts.images.append((where + ".Source", src))
    elif kind == "tmpfs":
        words: list[str] = []
        for opt in _list(facts, where + ".TmpfsOptions.Options",
                         _map(m.get("TmpfsOptions")).get("Options")):
            parts = [str(x) for x in opt] if isinstance(opt, list) else [str(opt)]
            words.append("=".join(parts))
        facts.tmpfs.append((where + ".TmpfsOptions.Options", words))
    elif kind not in ("npipe", "cluster"):
        fact.kind, fact.error = "invalid", f"unknown mount Type {kind!r}"
    facts.mounts.append(fact)


def _host_config(facts: Facts, hc: Mapping[str, Any], p: str) -> None:
    """Read a HostConfig-shaped mapping (create's HostConfig, update's body, old start)."""
    if "Privileged" in hc:
        facts.privileged.append((p + "Privileged", hc.get("Privileged")))
    driver = hc.get("VolumeDriver")
    if isinstance(driver, str) and driver:
        facts.volume_drivers.append((p + "VolumeDriver", driver))
    for i, raw in enumerate(_list(facts, p + "Binds", hc.get("Binds"))):
        where = f"{p}Binds[{i}]"
        if not isinstance(raw, str):
            facts.mounts.append(MountFact(where, "invalid", error="must be a string"))
            continue
        try:
            b = spelling.parse_bind(raw)
        except ValueError as e:
            facts.mounts.append(MountFact(where, "invalid", source=raw, error=str(e)))
            continue
        if b.is_host_path:
            facts.mounts.append(
                MountFact(
                    where,
                    "bind",
                    spelling.host_path(b.source),
                    b.source,
                    b.read_only,
                    b.propagation,
                )
            )
        else:
            facts.mounts.append(
                MountFact(
                    where,
                    "volume",
                    None,
                    b.source or None,
                    b.read_only,
                    driver=driver if isinstance(driver, str) else None,
                )
            )
    for i, m in enumerate(_list(facts, p + "Mounts", hc.get("Mounts"))):
        _mount(facts, f"{p}Mounts[{i}]", m)
    for i, v in enumerate(_list(facts, p + "VolumesFrom", hc.get("VolumesFrom"))):
        facts.volumes_from.append((f"{p}VolumesFrom[{i}]", v))
    for i, c in enumerate(_list(facts, p + "CapAdd", hc.get("CapAdd"))):
        facts.cap_add.append((f"{p}CapAdd[{i}]", c))
    for i, c in enumerate(_list(facts, p + "Capabilities", hc.get("Capabilities"))):
        facts.cap_add.append((f"{p}Capabilities[{i}]", c))
    if facts.workload is not None:
        facts.cap_drop.append((p + "CapDrop", _list(facts, p + "CapDrop", hc.get("CapDrop"))))
    for name in _NAMESPACE_FIELDS:
        v = hc.get(name)
        if v not in (None, ""):
            facts.namespaces.append((p + name, name, v))
    for i, d in enumerate(_list(facts, p + "Devices", hc.get("Devices"))):
        facts.devices.append(
            (f"{p}Devices[{i}]", _map(d).get("PathOnHost") if isinstance(d, Mapping) else d)
        )
    for i, d in enumerate(_list(facts, p + "DeviceRequests", hc.get("DeviceRequests"))):
        facts.device_requests.append((f"{p}DeviceRequests[{i}]", d))
    for i, d in enumerate(_list(facts, p + "DeviceCgroupRules", hc.get("DeviceCgroupRules"))):
        facts.cgroup_rules.append((f"{p}DeviceCgroupRules[{i}]", d))
    for i, s in enumerate(_list(facts, p + "SecurityOpt", hc.get("SecurityOpt"))):
        facts.security.append((f"{p}SecurityOpt[{i}]", spelling.security_option(s)))
    for name in ("MaskedPaths", "ReadonlyPaths"):
        if hc.get(name) is not None:
            facts.system_paths.append((p + name, hc.get(name)))
    sysctls = hc.get("Sysctls")
    if isinstance(sysctls, Mapping):
        facts.sysctls.extend((f"{p}Sysctls", k) for k in sysctls)
    elif sysctls is not None:
        facts.invalid.append((p + "Sysctls", "must be an object"))
    if hc.get("CgroupParent") not in (None, ""):
        facts.cgroup_parent.append((p + "CgroupParent", hc.get("CgroupParent")))
    for i, g in enumerate(_list(facts, p + "GroupAdd", hc.get("GroupAdd"))):
        facts.group_add.append((f"{p}GroupAdd[{i}]", g))
    if hc.get("Runtime") not in (None, ""):
        facts.runtimes.append((p + "Runtime", hc.get("Runtime")))
    if "OomKillDisable" in hc:
        facts.oom_kill_disable.append((p + "OomKillDisable", hc.get("OomKillDisable")))
    if hc.get("OomScoreAdj") is not None:
        facts.oom_score_adj.append((p + "OomScoreAdj", hc.get("OomScoreAdj")))
    for i, u in enumerate(_list(facts, p + "Ulimits", hc.get("Ulimits"))):
        facts.ulimits.append((f"{p}Ulimits[{i}]", _map(u).get("Name")))
    log = hc.get("LogConfig")
    if isinstance(log, Mapping):
        facts.log_configs.append((p + "LogConfig", log.get("Type"), log.get("Config")))
    elif log is not None:
        facts.invalid.append((p + "LogConfig", "must be an object"))
    tmpfs = hc.get("Tmpfs")
    if isinstance(tmpfs, Mapping):
        for target, opts in tmpfs.items():
            words = opts.split(",") if isinstance(opts, str) and opts else []
            facts.tmpfs.append((f"{p}Tmpfs[{target}]", words))
    elif tmpfs is not None:
        facts.invalid.append((p + "Tmpfs", "must be an object"))
    pb = hc.get("PortBindings")
    if isinstance(pb, Mapping):
        for port, bindings in pb.items():
            for i, b in enumerate(_list(facts, f"{p}PortBindings[{port}]", bindings)):
                bm = _map(b)
                facts.ports.append(
                    (f"{p}PortBindings[{port}][{i}]", bm.get("HostIp"), bm.get("HostPort"))
                )
    elif pb is not None:
        facts.invalid.append((p + "PortBindings", "must be an object"))
    if "PublishAllPorts" in hc:
        facts.publish_all.append((p + "PublishAllPorts", hc.get("PublishAllPorts")))
    for name in _RESOURCE_FIELDS:
        if name in hc:
            facts.resources[name] = (p + name, hc.get(name))
    facts.resource_scope = p


def _container_create(facts: Facts, req: CanonicalRequest) -> None:
    body = _map(req.body)
    facts.workload = "HostConfig.SecurityOpt"
    _host_config(facts, _map(body.get("HostConfig")), "HostConfig.")
    facts.users.append(("User", body.get("User")))
    if body.get("Image") is not None:
        facts.images.append(("Image", body.get("Image")))
    nets = _map(_map(body.get("NetworkingConfig")).get("EndpointsConfig"))
    for name in nets:
        facts.namespaces.append((f"NetworkingConfig.EndpointsConfig[{name}]", "NetworkMode", name))


def _container_update(facts: Facts, req: CanonicalRequest) -> None:
    facts.update = True
    _host_config(facts, _map(req.body), "")


def _container_start(facts: Facts, req: CanonicalRequest) -> None:
    """API < 1.24 accepted a HostConfig on start: the same controls must see it."""
    if isinstance(req.body, Mapping) and req.body:
        _host_config(facts, req.body, "")


def _exec_create(facts: Facts, req: CanonicalRequest) -> None:
    body = _map(req.body)
    if "Privileged" in body:
        facts.privileged.append(("Privileged", body.get("Privileged")))
    facts.users.append(("User", body.get("User")))


def _volume_create(facts: Facts, req: CanonicalRequest) -> None:
    body = _map(req.body)
    driver = body.get("Driver")
    opts = body.get("DriverOpts")
    fact = MountFact(
        "DriverOpts",
        "volume",
        driver=driver if isinstance(driver, str) else None,
        source=body.get("Name") if isinstance(body.get("Name"), str) else None,
    )
    if isinstance(opts, Mapping) and opts:
        fact.driver_options = {str(k): str(v) for k, v in opts.items()}
    _local_volume(fact)
    facts.mounts.append(fact)
    if isinstance(driver, str) and driver:
        facts.volume_drivers.append(("Driver", driver))


def _query(req: CanonicalRequest, name: str) -> list[str]:
    return [v for k, v in req.query if k == name]


def _image_create(facts: Facts, req: CanonicalRequest) -> None:
    tags = _query(req, "tag")
    for v in _query(req, "fromImage"):
        ref = v
        if tags and tags[-1]:
            ref = f"{v}@{tags[-1]}" if ":" in tags[-1] else f"{v}:{tags[-1]}"
        facts.images.append(("query.fromImage", ref))
    if _query(req, "fromSrc"):
        facts.image_import.append("query.fromSrc")


def _image_build(facts: Facts, req: CanonicalRequest) -> None:
    """Build runs RUN steps in containers: its network mode is a namespace choice.

    The base images are inside the streamed context and are not visible here.
    """
    for v in _query(req, "networkmode"):
        if v:
            facts.namespaces.append(("query.networkmode", "NetworkMode", v))
    for v in _query(req, "cgroupparent"):
        if v:
            facts.cgroup_parent.append(("query.cgroupparent", v))
    for v in _query(req, "ulimits"):
        try:
            limits = json.loads(v) if v else []
        except ValueError:
            limits = None
        if not isinstance(limits, list):
            facts.invalid.append(("query.ulimits", "must be a JSON array"))
            continue
        for i, u in enumerate(limits):
            facts.ulimits.append((f"query.ulimits[{i}]", _map(u).get("Name")))


def _network_create(facts: Facts, req: CanonicalRequest) -> None:
    """A network's driver, IPAM driver and options: dockerd creates host interfaces from them."""
    body = _map(req.body)
    ipam = _map(body.get("IPAM"))
    opts, ipam_opts = body.get("Options"), ipam.get("Options")
    facts.network = NetworkFact(
        driver=body.get("Driver"),
        ipam_driver=ipam.get("Driver"),
        options=opts if isinstance(opts, Mapping) else {},
        ipam_options=ipam_opts if isinstance(ipam_opts, Mapping) else {},
        internal=body.get("Internal"),
        ingress=body.get("Ingress"),
        config_from=_map(body.get("ConfigFrom")).get("Network"),
        scope=body.get("Scope"),
        enable_ipv6=body.get("EnableIPv6"),
        config_only=body.get("ConfigOnly"),
        ipam_config=ipam.get("Config"),
    )
    for where, name in (("Driver", body.get("Driver")), ("IPAM.Driver", ipam.get("Driver"))):
        if name not in (None, ""):
            facts.plugin_names.append((where, name))


def _network_connect(facts: Facts, req: CanonicalRequest) -> None:
    """The network joined is a network mode, as an EndpointsConfig key is on create:
    ``host`` is the host's network namespace (the daemons refuse it themselves; the
    policy does not rely on that)."""
    facts.namespaces.append(("path.id", "NetworkMode", req.params.get("id", "")))


def _secret_create(facts: Facts, req: CanonicalRequest) -> None:
    """Secret and config drivers and template drivers are plugins looked up by name."""
    body = _map(req.body)
    for member in ("Driver", "Templating"):
        name = _map(body.get(member)).get("Name")
        if name not in (None, ""):
            facts.plugin_names.append((f"{member}.Name", name))


def _service(facts: Facts, req: CanonicalRequest) -> None:
    body = _map(req.body)
    tt = _map(body.get("TaskTemplate"))
    p = "TaskTemplate.ContainerSpec."
    cs = _map(tt.get("ContainerSpec"))
    facts.workload = p + "Privileges.NoNewPrivileges"
    if tt.get("PluginSpec") is not None:
        facts.privileged.append(("TaskTemplate.PluginSpec", True))
    if cs.get("Image") is not None:
        facts.images.append((p + "Image", cs.get("Image")))
    facts.users.append((p + "User", cs.get("User")))
    for i, g in enumerate(_list(facts, p + "Groups", cs.get("Groups"))):
        facts.group_add.append((f"{p}Groups[{i}]", g))
    for i, m in enumerate(_list(facts, p + "Mounts", cs.get("Mounts"))):
        _mount(facts, f"{p}Mounts[{i}]", m)
    for i, c in enumerate(_list(facts, p + "CapabilityAdd", cs.get("CapabilityAdd"))):
        facts.cap_add.append((f"{p}CapabilityAdd[{i}]", c))
    facts.cap_drop.append(
        (p + "CapabilityDrop", _list(facts, p + "CapabilityDrop", cs.get("CapabilityDrop")))
    )
    sysctls = cs.get("Sysctls")
    if isinstance(sysctls, Mapping):
        facts.sysctls.extend((p + "Sysctls", k) for k in sysctls)
    priv = _map(cs.get("Privileges"))
    sec = _map(priv.get("Seccomp"))
    mode = str(sec.get("Mode") or "").lower()
    if mode == "unconfined":
        facts.security.append(
            (p + "Privileges.Seccomp.Mode", spelling.SecurityOption("seccomp", "unconfined"))
        )
    elif mode == "custom":
        facts.security.append(
            (p + "Privileges.Seccomp.Profile", spelling.SecurityOption("seccomp", "custom"))
        )
    if str(_map(priv.get("AppArmor")).get("Mode") or "").lower() == "disabled":
        facts.security.append(
            (p + "Privileges.AppArmor.Mode", spelling.SecurityOption("apparmor", "unconfined"))
        )
    se = _map(priv.get("SELinuxContext"))
    if se.get("Disable") is True:
        facts.security.append(
            (p + "Privileges.SELinuxContext.Disable", spelling.SecurityOption("label", "disable"))
        )
    for k in ("User", "Role", "Type"):
        if se.get(k):
            facts.security.append(
                (
                    f"{p}Privileges.SELinuxContext.{k}",
                    spelling.SecurityOption("label", f"{k.lower()}:{se.get(k)}"),
                )
            )
    if priv.get("NoNewPrivileges") is True:
        facts.security.append(
            (p + "Privileges.NoNewPrivileges", spelling.SecurityOption("no-new-privileges", "true"))
        )
    log_name = _map(tt.get("LogDriver")).get("Name")
    if log_name not in (None, ""):
        facts.plugin_names.append(("TaskTemplate.LogDriver.Name", log_name))
    for i, n in enumerate(_list(facts, "TaskTemplate.Networks", tt.get("Networks"))):
        target = _map(n).get("Target")
        if target is not None:
            facts.namespaces.append((f"TaskTemplate.Networks[{i}].Target", "NetworkMode", target))
    ports = _list(facts, "EndpointSpec.Ports", _map(body.get("EndpointSpec")).get("Ports"))
    for i, port in enumerate(ports):
        pm = _map(port)
        published = pm.get("PublishedPort")
        if published not in (None, 0):
            facts.ports.append((f"EndpointSpec.Ports[{i}].PublishedPort", None, published))
    limits = _map(_map(tt.get("Resources")).get("Limits"))
    rs = "TaskTemplate.Resources.Limits."
    for ours, theirs in (
        ("Memory", "MemoryBytes"),
        ("NanoCpus", "NanoCPUs"),
        ("PidsLimit", "Pids"),
    ):
        if theirs in limits:
            facts.resources[ours] = (rs + theirs, limits.get(theirs))
    facts.resource_scope = rs


EXTRACTORS: dict[str, Callable[[Facts, CanonicalRequest], None]] = {
    "container.create": _container_create,
    "container.update": _container_update,
    "container.start": _container_start,
    "exec.create": _exec_create,
    "volume.create": _volume_create,
    "image.create": _image_create,
    "image.build": _image_build,
    "service.create": _service,
    "service.update": _service,
    "network.create": _network_create,
    "network.connect": _network_connect,
    "secret.create": _secret_create,
    "secret.update": _secret_create,
    "config.create": _secret_create,
    "config.update": _secret_create,
}
"""Endpoint id → extractor.  Endpoints not listed carry nothing a control reads
from the body; they are governed by the ``endpoints`` control."""


def extract(req: CanonicalRequest) -> Facts:
    """The facts of ``req`` (empty for endpoints whose body carries no host access)."""
    facts = Facts()
    fn = EXTRACTORS.get(req.endpoint.id)
    if fn is not None:
        fn(facts, req)
    return facts

"""The closed world of request fields: every field the daemon reads, classified once.

For every operation that changes state, each JSON body field and each query
parameter the daemon reads is one of:

- ``inert``: the daemon acts on it only inside the container or in its own
  bookkeeping (a command line, a label, a restart policy, a CPU share);
- a control name (``host_paths``, ``log_drivers``...): the field can reach
  the host and the named control of the policy decides it;
- ``host``: the field reaches the host (dockerd mounts, connects, fetches or
  joins something for the client) and no finer control exists, so a policy
  that closes the world refuses it unless it is empty (``null``, ``""``,
  ``0``, ``false``, ``[]``, ``{}``: what a client sends when it means "not set").

A classification covers its whole subtree: ``HostConfig.LogConfig`` governed
by ``log_drivers`` covers ``LogConfig.Type`` and every ``LogConfig.Config``
key.  Paths use ``.`` between object members, ``[]`` for array items and
``{}`` for the values of a map (``HostConfig.Sysctls{}``).  Query parameters
are ``?name``.

Why one table: a control reads only the fields its author thought of, so a
field no control reads is silently forwarded, and the next API version adds
more.  ``tests/unit/test_policy_fields.py`` walks the schema of every
state-changing operation in every snapshot dockgate routes (v1.18 to v1.41
share ``v1.41.json``; v1.42 to v1.51 ``v1.51.json``) and fails on any field
or parameter this table does not classify, and on any control name the
policy schema does not know.  The ``fields`` control then refuses, at request
time, any field present in a body or query that the table does not classify
(``unclassified: deny``) and any non-empty ``host`` field (``host_level:
deny``), naming it.

Sources: the moby sources at v28.5.2 and v20.10.27 (api/types/container,
daemon/oci_linux.go, daemon/logger, libnetwork, volume/local, builder), read
for what dockerd does with each field as root.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dockgate.policy import spelling

INERT = "inert"
HOST = "host"

# -- shared definitions ------------------------------------------------------------

_RESOURCES: dict[str, str] = {
    # Blkio device throttles: dockerd stat()s each Path on the host at start
    # (an existence oracle through the error), so they are host-level.
    "BlkioDeviceReadBps": HOST,
    "BlkioDeviceReadIOps": HOST,
    "BlkioDeviceWriteBps": HOST,
    "BlkioDeviceWriteIOps": HOST,
    "BlkioWeightDevice": HOST,
    "BlkioWeight": INERT,
    "CgroupParent": "cgroup_parent",
    "CpuCount": INERT,  # Windows only
    "CpuPercent": INERT,  # Windows only
    "CpuPeriod": "resources",
    "CpuQuota": "resources",
    # Real-time scheduling budget: cgroup v1 cpu.rt_* files written in every
    # ancestor cgroup (host-wide CPU starvation).
    "CpuRealtimePeriod": HOST,
    "CpuRealtimeRuntime": HOST,
    "CpuShares": INERT,
    "CpusetCpus": INERT,
    "CpusetMems": INERT,
    "DeviceCgroupRules": "devices",
    "DeviceRequests": "devices",
    "Devices": "devices",
    "IOMaximumBandwidth": INERT,  # Windows only
    "IOMaximumIOps": INERT,  # Windows only
    "Init": INERT,  # the daemon's own init binary, bind-mounted read-only
    "KernelMemory": INERT,
    "KernelMemoryTCP": INERT,
    "Memory": "resources",
    "MemoryReservation": INERT,
    "MemorySwap": "resources",
    "MemorySwappiness": INERT,
    "NanoCpus": "resources",
    "OomKillDisable": "oom_kill_disable",
    "PidsLimit": "resources",
    "Ulimits": "ulimits",
}
"""``container.Resources``: read by create (inside HostConfig) and by update."""

_ENDPOINT: dict[str, str] = {
    "Aliases": INERT,
    "DNSNames": INERT,
    # Passed as generic options to the network driver (remote drivers see
    # them all); endpoint sysctls are written by dockerd itself.
    "DriverOpts": HOST,
    "EndpointID": INERT,
    "Gateway": INERT,
    "GlobalIPv6Address": INERT,
    "GlobalIPv6PrefixLen": INERT,
    "GwPriority": INERT,
    "IPAMConfig": INERT,  # addresses are checked against the network's subnets
    "IPAddress": INERT,
    "IPPrefixLen": INERT,
    "IPv6Gateway": INERT,
    # Legacy links inject the linked container's Env and add firewall
    # exceptions; i14b's join control takes this over.
    "Links": HOST,
    "MacAddress": INERT,
    "NetworkID": INERT,
}
"""``network.EndpointSettings``: create's EndpointsConfig values and connect's EndpointConfig."""

_HOST_CONFIG: dict[str, str] = {
    **_RESOURCES,
    "Annotations": HOST,  # copied into the OCI spec; meaning depends on the runtime
    "AutoRemove": INERT,
    "Binds": "host_paths",
    "CapAdd": "capabilities",
    "CapDrop": "capabilities",
    "Capabilities": "capabilities",  # API 1.40 only
    "Cgroup": HOST,  # declared, no consumer found: refuse what we cannot explain
    "CgroupnsMode": "namespaces",
    "ConsoleSize": INERT,
    "ContainerIDFile": INERT,  # the CLI's business, unused by the daemon
    # Written into the container's resolv.conf / hosts; client-supplied DNS
    # servers are dialled from the container's network namespace.
    "Dns": INERT,
    "DnsOptions": INERT,
    "DnsSearch": INERT,
    "ExtraHosts": INERT,
    "GroupAdd": "group_add",
    "IpcMode": "namespaces",
    "Isolation": INERT,  # Windows only; Linux refuses anything but default
    "Links": HOST,
    "LogConfig": "log_drivers",
    "MaskedPaths": "system_paths",
    "Mounts": "host_paths",
    "Mounts[].Type": "mount_types",
    "Mounts[].VolumeOptions.DriverConfig": "volume_options",
    "Mounts[].VolumeOptions.Labels": INERT,
    "Mounts[].VolumeOptions.NoCopy": INERT,
    # A subpath is mounted only from inside the volume (image), but engine 28.5
    # first resolves it with the host's symlinks as root (safepath's
    # filepath.EvalSymlinks) and answers differently for a target that exists
    # ("escapes the base directory") and one that does not ("lstat /x: no such
    # file"): a symlink the client put in a volume or image probes any host
    # path, other tenants' volumes and container roots too (the Blkio paths'
    # existence oracle).  dockgate cannot see the volume's links when the
    # daemon does (a container may swap them), so the field is host-level.
    "Mounts[].VolumeOptions.Subpath": HOST,
    "Mounts[].TmpfsOptions": "tmpfs",
    "Mounts[].ImageOptions": "images",
    "Mounts[].ImageOptions.Subpath": HOST,
    "Mounts[].Consistency": INERT,
    "NetworkMode": "namespaces",
    "OomScoreAdj": "oom_score_adj",
    "PidMode": "namespaces",
    "PortBindings": "ports",
    "Privileged": "privileged",
    "PublishAllPorts": "ports",
    "ReadonlyPaths": "system_paths",
    "ReadonlyRootfs": INERT,
    "RestartPolicy": INERT,
    "Runtime": "runtimes",
    "SecurityOpt": "security_options",
    "ShmSize": INERT,
    "StorageOpt": HOST,  # graphdriver quota options
    "Sysctls": "sysctls",
    "Tmpfs": "tmpfs",
    "UTSMode": "namespaces",
    "UsernsMode": "namespaces",
    "VolumeDriver": "volume_drivers",
    "VolumesFrom": "volumes_from",
}
"""``container.HostConfig``."""

_CONTAINER_CONFIG: dict[str, str] = {
    "ArgsEscaped": INERT,
    "AttachStderr": INERT,
    "AttachStdin": INERT,
    "AttachStdout": INERT,
    "Cmd": INERT,
    "Domainname": INERT,
    "Entrypoint": INERT,
    "Env": INERT,
    "ExposedPorts": INERT,  # published only through PortBindings/PublishAllPorts
    "Healthcheck": INERT,
    "Hostname": INERT,
    "Image": "images",
    "Labels": INERT,
    "MacAddress": INERT,
    "NetworkDisabled": INERT,
    "OnBuild": INERT,
    "OpenStdin": INERT,
    "Shell": INERT,
    "StdinOnce": INERT,
    "StopSignal": INERT,
    "StopTimeout": INERT,
    "Tty": INERT,
    "User": "user",
    # Anonymous volumes, created with HostConfig.VolumeDriver (governed there).
    "Volumes": INERT,
    "WorkingDir": INERT,
}
"""``container.Config``: create's top level and commit's body."""

_CLUSTER_VOLUME = HOST
"""Swarm cluster (CSI) volumes: plugins on every node."""


_SERVICE: dict[str, str] = {
    "Name": INERT,
    "Labels": INERT,
    "Mode": INERT,
    "UpdateConfig": INERT,
    "RollbackConfig": INERT,
    "Networks": "namespaces",
    "EndpointSpec": "ports",
    # Task templates are containers on every node, with mounts, log drivers,
    # plugins and privileges; only some of it is read by controls.
    "TaskTemplate": HOST,
}
"""``swarm.ServiceSpec``."""

_CONFIG: dict[str, str] = {
    "Data": INERT,
    "Labels": INERT,
    "Name": INERT,
    "Templating": HOST,  # a template driver (plugin) renders the data
}
"""``swarm.ConfigSpec``."""

_SECRET: dict[str, str] = {**_CONFIG, "Driver": HOST}
"""``swarm.SecretSpec``: a config plus an external secret-provider plugin."""


def _under(prefix: str, table: Mapping[str, str]) -> dict[str, str]:
    return {f"{prefix}{k}": v for k, v in table.items()}


FIELDS: dict[str, dict[str, str]] = {
    "container.create": {
        **_CONTAINER_CONFIG,
        **_under("HostConfig.", _HOST_CONFIG),
        "NetworkingConfig.EndpointsConfig": "namespaces",
        **_under("NetworkingConfig.EndpointsConfig{}.", _ENDPOINT),
        "?name": INERT,
        "?platform": INERT,
    },
    "container.update": {**_RESOURCES, "RestartPolicy": INERT},
    "container.start": {"?detachKeys": INERT, "?checkpoint": HOST, "?checkpoint-dir": HOST},
    "container.stop": {"?t": INERT, "?signal": INERT},
    # A read (see CHECKED_READS): the daemon runs ps on the host, as root, with
    # these options; spelling.ps_args_builtin says which are harmless.
    "container.top": {"?ps_args": HOST},
    "container.restart": {"?t": INERT, "?signal": INERT},
    "container.kill": {"?signal": INERT},
    "container.wait": {"?condition": INERT},
    "container.rename": {"?name": INERT},
    "container.resize": {"?h": INERT, "?w": INERT},
    "container.delete": {"?force": INERT, "?link": INERT, "?v": INERT},
    "container.prune": {"?filters": INERT},
    "container.pause": {},
    "container.unpause": {},
    "container.attach": {
        "?detachKeys": INERT,
        "?logs": INERT,
        "?stderr": INERT,
        "?stdin": INERT,
        "?stdout": INERT,
        "?stream": INERT,
    },
    "container.copy": {"Resource": INERT},
    # docker cp into a container: mounts the container's binds and volumes on
    # the host; governed as an endpoint.
    "container.archive.put": {
        "?path": "endpoints",
        "?copyUIDGID": "endpoints",
        "?noOverwriteDirNonDir": "endpoints",
    },
    "exec.create": {
        "AttachStderr": INERT,
        "AttachStdin": INERT,
        "AttachStdout": INERT,
        "Cmd": INERT,
        "ConsoleSize": INERT,
        "Container": INERT,
        "Detach": INERT,
        "DetachKeys": INERT,
        "Env": INERT,
        "Privileged": "privileged",
        "Tty": INERT,
        "User": "user",
        "WorkingDir": INERT,
    },
    "exec.start": {"ConsoleSize": INERT, "Detach": INERT, "Tty": INERT},
    "exec.resize": {"?h": INERT, "?w": INERT},
    "image.build": {
        "?buildargs": INERT,
        "?buildid": INERT,
        # Pulls through the daemon's registry configuration (registries: i21).
        "?cachefrom": "images",
        "?cgroupparent": "cgroup_parent",
        "?cpuperiod": INERT,
        "?cpuquota": INERT,
        "?cpusetcpus": INERT,
        "?cpusetmems": INERT,
        "?cpushares": INERT,
        "?dockerfile": INERT,
        "?extrahosts": INERT,
        "?forcerm": INERT,
        "?isolation": INERT,
        "?labels": INERT,
        "?memory": INERT,
        "?memswap": INERT,
        "?networkmode": "namespaces",
        "?nocache": INERT,
        # BuildKit exporters: an image exporter with push=true pushes anywhere.
        "?outputs": HOST,
        "?platform": INERT,
        "?pull": INERT,
        "?q": INERT,
        # dockerd fetches (http GET or git) the context from the host network.
        "?remote": "build",
        "?rm": INERT,
        "?securityopt": HOST,  # refused by Linux daemons anyway
        "?session": INERT,
        "?shmsize": INERT,
        "?squash": INERT,
        "?t": INERT,
        "?target": INERT,
        "?ulimits": "ulimits",
        "?version": INERT,
    },
    "build.prune": {
        "?all": INERT,
        "?filters": INERT,
        "?keep-storage": INERT,
        "?max-used-space": INERT,
        "?min-free-space": INERT,
        "?reserved-space": INERT,
    },
    "build.cancel": {"?id": INERT},
    "build.session": {},
    "build.grpc": {},
    "image.commit": {
        **_CONTAINER_CONFIG,
        "?author": INERT,
        "?changes": INERT,  # config instructions only (CMD, ENV, USER, VOLUME...)
        "?comment": INERT,
        "?container": INERT,
        "?pause": INERT,
        "?repo": INERT,
        "?tag": INERT,
    },
    "image.create": {
        "?changes": INERT,
        "?fromImage": "images",
        "?fromSrc": "images",  # a URL dockerd fetches: images.allow_import
        "?message": INERT,
        "?platform": INERT,
        "?repo": INERT,
        "?tag": "images",
    },
    "image.load": {"?platform": INERT, "?quiet": INERT},
    "image.push": {"?platform": INERT, "?tag": INERT},
    "image.tag": {"?force": INERT, "?repo": INERT, "?tag": INERT},
    "image.delete": {"?force": INERT, "?noprune": INERT, "?platforms": INERT},
    "image.prune": {"?filters": INERT},
    "network.create": {
        "Attachable": INERT,
        "CheckDuplicate": INERT,
        "ConfigFrom": "networks",
        "ConfigOnly": INERT,  # stores options only; they are checked like any other
        "Driver": "networks",
        "EnableIPv4": INERT,
        "EnableIPv6": "networks",
        "IPAM": "networks",
        "Ingress": "networks",
        "Internal": "networks",
        "Labels": INERT,
        "Name": INERT,
        "Options": "networks",
        "Scope": "networks",
    },
    "network.connect": {"Container": INERT, **_under("EndpointConfig.", _ENDPOINT)},
    "network.disconnect": {"Container": INERT, "Force": INERT},
    "network.delete": {},
    "network.prune": {"?filters": INERT},
    "volume.create": {
        "ClusterVolumeSpec": _CLUSTER_VOLUME,
        "Driver": "volume_drivers",
        "DriverOpts": "volume_options",
        "Labels": INERT,
        "Name": INERT,
    },
    "volume.update": {"Spec": _CLUSTER_VOLUME, "?version": INERT},
    "volume.delete": {"?force": INERT},
    "volume.prune": {"?filters": INERT},
    # Plugins run with host privileges; every parameter that installs,
    # configures or enables one is host-level.
    "plugin.pull": {"[]": HOST, "?name": HOST, "?remote": HOST},
    "plugin.upgrade": {"[]": HOST, "?remote": HOST},
    "plugin.create": {"?name": HOST},
    "plugin.set": {"[]": HOST},
    "plugin.enable": {"?timeout": INERT},
    "plugin.disable": {"?force": INERT},
    "plugin.delete": {"?force": INERT},
    "plugin.push": {},
    # Swarm: joining or creating a cluster hands this node to its managers.
    "swarm.init": {"": HOST},
    "swarm.join": {"": HOST},
    "swarm.update": {
        "": HOST,
        "?rotateManagerToken": INERT,
        "?rotateManagerUnlockKey": INERT,
        "?rotateWorkerToken": INERT,
        "?version": INERT,
    },
    "swarm.leave": {"?force": INERT},
    "swarm.unlock": {"UnlockKey": INERT},
    "node.update": {"": HOST, "?version": INERT},
    "node.delete": {"?force": INERT},
    "service.create": _SERVICE,
    "service.update": {
        **_SERVICE,
        "?registryAuthFrom": INERT,
        "?rollback": INERT,
        "?version": INERT,
    },
    "service.delete": {},
    "secret.create": _SECRET,
    "secret.update": {**_SECRET, "?version": INERT},
    "secret.delete": {},
    "config.create": _CONFIG,
    "config.update": {**_CONFIG, "?version": INERT},
    "config.delete": {},
    # dockerd logs in to the named registry from the host (registries: i21).
    "system.auth": {
        "auth": INERT,
        "email": INERT,
        "identitytoken": INERT,
        "password": INERT,
        "registrytoken": INERT,
        "serveraddress": "registries",  # dockerd logs in to it: the registry allowlist
        "username": INERT,
    },
}
"""Endpoint id → path → classification, for every state-changing operation.

The ``""`` path classifies a whole body."""

WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})
"""Operations with these methods change state and must be fully classified."""

CHECKED_READS = frozenset({"container.top"})
"""Reads whose parameters make the daemon act on the host, classified like writes."""

HARMLESS: dict[tuple[str, str], tuple[Callable[[str], bool], str]] = {
    ("container.top", "?ps_args"): (
        spelling.ps_args_builtin,
        "ps options other than process selection and ps's built-in formats; the daemon runs "
        "ps on the host over every process and would show other processes' command lines and "
        "environments"),
}
"""Host-level fields with spellings that stay harmless: (endpoint, path) -> (the
spellings that pass, what the others do, for the refusal)."""


def harmless(endpoint_id: str, unit: Present) -> bool:
    """Whether a non-empty host-level ``unit`` is one of its field's harmless spellings."""
    entry = HARMLESS.get((endpoint_id, unit.path))
    return entry is not None and isinstance(unit.value, str) and entry[0](unit.value)


def host_level_reason(endpoint_id: str, unit: Present) -> str:
    """Why a host-level ``unit`` is refused."""
    entry = HARMLESS.get((endpoint_id, unit.path))
    why = "makes the daemon act on the host (host-level field)"
    return f"{why}: {entry[1]}" if entry is not None else why


# -- the compiled tree ---------------------------------------------------------------


@dataclass(slots=True)
class Node:
    """One position in a body: its classification (covering everything below) or children."""

    kind: str | None = None
    members: dict[str, Node] = field(default_factory=dict)
    items: Node | None = None
    values: Node | None = None


_STEP = re.compile(r"[^.\[\]{}]+|\[\]|\{\}")


def _split(path: str) -> list[str]:
    """``HostConfig.Mounts[].Type`` → ``["HostConfig", "Mounts", "[]", "Type"]``."""
    return _STEP.findall(path)


def _compile(table: Mapping[str, str]) -> tuple[Node, dict[str, str]]:
    root = Node()
    query: dict[str, str] = {}
    for path, kind in table.items():
        if path.startswith("?"):
            query[path[1:]] = kind
            continue
        node = root
        for step in _split(path) if path else []:
            if step == "[]":
                node.items = node.items or Node()
                node = node.items
            elif step == "{}":
                node.values = node.values or Node()
                node = node.values
            else:
                node = node.members.setdefault(step, Node())
        node.kind = kind
    return root, query


_TREES: dict[str, tuple[Node, dict[str, str]]] = {eid: _compile(t) for eid, t in FIELDS.items()}


def _step(node: Node, step: str) -> Node | None:
    if step == "[]":
        return node.items
    if step == "{}":
        return node.values
    return node.members.get(step)


def _follow(node: Node, path: str) -> Node | None:
    """The node at ``path`` below ``node``, or None if the table does not go that deep."""
    for step in _split(path):
        found = _step(node, step)
        if found is None:
            return None
        node = found
    return node


def classify(endpoint_id: str, path: str) -> str | None:
    """The classification of ``path`` (``?name`` for a query parameter), or None.

    The nearest classified ancestor decides (a classification covers its subtree).
    """
    tree = _TREES.get(endpoint_id)
    if tree is None:
        return None
    root, query = tree
    if path.startswith("?"):
        return query.get(path[1:])
    node = root
    found = root.kind
    for step in _split(path):
        below = _step(node, step)
        if below is None:
            break
        node = below
        found = node.kind or found
    return found


def empty(value: Any) -> bool:
    """Whether a value means "not set" to the daemon (Go's zero values, and null)."""
    return value is None or value is False or value in (0, "", [], {})


@dataclass(frozen=True, slots=True)
class Present:
    """A field present in a request: where, how it is classified (None: unclassified)."""

    field: str
    kind: str | None
    value: Any
    path: str = ""


Loc = tuple["Loc", str | int] | None
"""A concrete position, as a linked list built by reference (rendered only when reported)."""


def _render(loc: Loc) -> str:
    parts: list[str | int] = []
    while loc is not None:
        loc, key = loc
        parts.append(key)
    out = ""
    for key in reversed(parts):
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out or "body"


def _walk(
    node: Node, value: Any, loc: Loc, path: str, inherited: str | None, *,
    out: list[Present], everything: bool,
) -> None:
    """Report the classified units of ``value`` (``everything``) or only the ones a closed
    policy refuses: unclassified ones and non-empty host-level ones."""
    kind = node.kind or inherited
    if value is None and loc is not None:
        return  # null is the zero value: the daemon reads nothing
    if not (node.members or node.items is not None or node.values is not None):
        if everything or kind is None or (kind == HOST and not empty(value)):
            out.append(Present(_render(loc), kind, value, path))
        return
    if type(value) is dict and (node.members or node.values is not None):
        values, members = node.values, node.members
        for k, v in value.items():
            child = values if values is not None else members.get(k)
            if child is None:
                if everything or kind is None or (kind == HOST and not empty(v)):
                    out.append(Present(_render((loc, k)), kind, v, f"{path}.{k}" if path else k))
            elif v is not None:
                sub = path + "{}" if values is not None else (f"{path}.{k}" if path else k)
                _walk(child, v, (loc, k), sub, kind, out=out, everything=everything)
    elif type(value) is list and node.items is not None:
        for i, v in enumerate(value):
            _walk(node.items, v, (loc, i), path + "[]", kind, out=out, everything=everything)
    elif everything or kind is None or (kind == HOST and not empty(value)):
        out.append(Present(_render(loc), kind, value, path))


def present(
    endpoint_id: str, body: Any, query: tuple[tuple[str, str], ...], *, everything: bool = True
) -> list[Present]:
    """Every classified unit present in a request's body and query, with its class.

    Fields under a classified node without refinements are reported once, at
    that node.  An endpoint missing from the table has everything unclassified
    (a new state-changing route must be added here before a closed policy
    lets it through).  With ``everything`` false only the units a closed
    policy refuses are reported (unclassified, and non-empty host-level).
    """
    tree = _TREES.get(endpoint_id)
    out: list[Present] = []
    if tree is None:
        if body is not None:
            out.append(Present("body", None, body))
        out.extend(Present(f"query.{k}", None, v, f"?{k}") for k, v in query)
        return out
    root, qtable = tree
    if body is not None:
        _walk(root, body, None, "", None, out=out, everything=everything)
    for k, v in query:
        kind = qtable.get(k)
        if everything or kind is None or (kind == HOST and not empty(v)):
            out.append(Present(f"query.{k}", kind, v, f"?{k}"))
    return out


def known_path(path: str) -> bool:
    """Whether some endpoint's table has ``path`` itself (``?name`` for a parameter)."""
    for root, query in _TREES.values():
        if path.startswith("?"):
            if path[1:] in query:
                return True
            continue
        if path and _follow(root, path) is not None:
            return True
    return False

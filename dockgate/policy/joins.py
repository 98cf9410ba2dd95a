"""Objects a request joins: ``container:X`` modes, ``VolumesFrom``, links, build ``networkmode``.

Joining X gives the caller what X has: its network, PID or IPC namespace
(``host`` ones included, when X was created with them), its mounts (host
binds included), its environment (links inject it).  A string check of
``container:X`` cannot see any of that, so X must itself pass the caller's
policy: the I/O layer inspects X (``GET /containers/X/json``), turns X's
configuration back into the create request that would make X
(``as_create``), and decides that under the same policy and peer.  A request
that names no other container needs no lookup (``join_refs`` is empty).

The forwarded request is pinned to X's full id (``pin``), so the daemon
joins the container that was checked, not one renamed into its place.

At ``POST /containers/{id}/start`` (and ``restart``) the container itself is
judged the same way, because the daemon acts on its stored configuration at
start: binds are resolved then (see ``hostpaths``), and a join target may
have changed since create.  Entering a container (``ENTERS``: exec, attach,
``docker cp``) is judged by the container too: it gives the caller what the
container has (its host binds, its namespaces), whoever made it.
``UTSMode``/``UsernsMode`` take no ``container:`` value (the daemon refuses
one), so they name nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from dockgate.admission.jsonstrict import dumps
from dockgate.model import CanonicalRequest, Operation, copy_along

JOIN_MODES = ("NetworkMode", "PidMode", "IpcMode")
STARTS = frozenset({"container.start", "container.restart"})
ENTERS = frozenset({"exec.create", "container.attach", "container.attach.ws",
                    "container.archive", "container.archive.head", "container.archive.put",
                    "container.copy"})
"""Requests that enter the container named in their path (run in it, read or write its files)."""
JUDGES_PATH = STARTS | ENTERS
"""Requests whose path's container is itself judged under the caller's policy."""


def sets_restart(request: CanonicalRequest) -> bool:
    """Whether ``request`` is a ``container.update`` that gives the container a restart
    policy (any ``RestartPolicy.Name`` but ``""`` and ``no``).

    The daemon then starts the container by itself: when it exits, and for
    ``always`` at the daemon's next start even after a ``docker stop``.  So such
    an update starts the container as surely as a start does, later, and is
    judged as one (a container made behind dockgate's back with a host path,
    stopped, would otherwise run again after a reboot for whoever may update it).
    """
    if request.endpoint.id != "container.update" or not isinstance(request.body, Mapping):
        return False
    policy = request.body.get("RestartPolicy")
    name = policy.get("Name") if isinstance(policy, Mapping) else None
    return name not in (None, "", "no")


def judges_path(request: CanonicalRequest) -> bool:
    """Whether the container in ``request``'s path is judged under the caller's policy:
    starts, entries, and updates that set a restart policy (``sets_restart``)."""
    return request.endpoint.id in JUDGES_PATH or sets_restart(request)


def starts(request: CanonicalRequest) -> bool:
    """Whether ``request`` makes the container run and connect its networks: a start,
    a restart, or an update that sets a restart policy."""
    return request.endpoint.id in STARTS or sets_restart(request)
MAX_DEPTH = 8
"""Longest chain of joins followed (X joins Y joins Z ...); longer is refused."""


@dataclass(frozen=True, slots=True)
class JoinRef:
    """One container a request joins.

    Attributes:
        field: where it is named, for messages (``HostConfig.PidMode``).
        ref: the container as written (name, id or prefix).
        path: the machine path of the value, for ``pin``: body keys and
            indexes, or ``("query", name)``.
        kind: ``mode`` (a ``container:X`` value), ``volumes_from`` (``X[:ro]``)
            or ``link`` (``X[:alias]``).
    """

    field: str
    ref: str
    path: tuple[str | int, ...]
    kind: str


def container_mode(value: Any) -> str | None:
    """The container of a ``container:X`` value (prefix case-insensitive), else None."""
    if not isinstance(value, str):
        return None
    head, sep, rest = value.partition(":")
    return rest if sep and head.strip().lower() == "container" else None


def _host_config_refs(hc: Mapping[str, Any], base: tuple[str | int, ...]) -> list[JoinRef]:
    refs: list[JoinRef] = []
    p = ".".join(str(b) for b in base)
    p = p + "." if p else ""
    for name in JOIN_MODES:
        target = container_mode(hc.get(name))
        if target is not None:
            refs.append(JoinRef(p + name, target, (*base, name), "mode"))
    for i, spec in enumerate(hc.get("VolumesFrom") or ()):
        if isinstance(spec, str):
            refs.append(JoinRef(f"{p}VolumesFrom[{i}]", spec.split(":", 1)[0],
                                (*base, "VolumesFrom", i), "volumes_from"))
    for i, link in enumerate(hc.get("Links") or ()):
        if isinstance(link, str):
            refs.append(JoinRef(f"{p}Links[{i}]", link.split(":", 1)[0].lstrip("/"),
                                (*base, "Links", i), "link"))
    return refs


def join_refs(request: CanonicalRequest) -> list[JoinRef]:
    """The containers ``request`` joins (none for most requests: no lookup then)."""
    ep = request.endpoint.id
    if ep == "container.create" and isinstance(request.body, Mapping):
        body = request.body
        refs: list[JoinRef] = []
        hc = body.get("HostConfig")
        if isinstance(hc, Mapping):
            refs += _host_config_refs(hc, ("HostConfig",))
        net = body.get("NetworkingConfig")
        eps = net.get("EndpointsConfig") if isinstance(net, Mapping) else None
        for name, cfg in (eps.items() if isinstance(eps, Mapping) else ()):
            for i, link in enumerate((cfg or {}).get("Links") or () if isinstance(cfg, Mapping)
                                     else ()):
                if isinstance(link, str):
                    refs.append(JoinRef(f"NetworkingConfig.EndpointsConfig[{name}].Links[{i}]",
                                        link.split(":", 1)[0].lstrip("/"),
                                        ("NetworkingConfig", "EndpointsConfig", name, "Links", i),
                                        "link"))
        return refs
    if ep == "network.connect" and isinstance(request.body, Mapping):
        cfg = request.body.get("EndpointConfig")
        links = cfg.get("Links") if isinstance(cfg, Mapping) else None
        return [JoinRef(f"EndpointConfig.Links[{i}]", link.split(":", 1)[0].lstrip("/"),
                        ("EndpointConfig", "Links", i), "link")
                for i, link in enumerate(links or ()) if isinstance(link, str)]
    if ep == "container.start" and isinstance(request.body, Mapping) and request.body:
        return _host_config_refs(request.body, ())  # API < 1.24: HostConfig on start
    if ep == "image.build":
        for k, v in request.query:
            target = container_mode(v) if k == "networkmode" else None
            if target is not None:
                return [JoinRef("query.networkmode", target, ("query", "networkmode"), "mode")]
    return []


def stored_refs(inspect: Mapping[str, Any]) -> list[JoinRef]:
    """The containers an inspected container joins (its HostConfig as the daemon stored it)."""
    hc = inspect.get("HostConfig")
    return _host_config_refs(hc, ("HostConfig",)) if isinstance(hc, Mapping) else []


_CREATE = Operation("container.create", "POST", "/containers/create", "json")


def as_create(inspect: Mapping[str, Any], version: str | None,
              user: str | None = None) -> CanonicalRequest:
    """The create request that would make the inspected container, to decide under a policy.

    Its HostConfig as stored (binds, mounts, modes, capabilities ...), its
    image and user, and the bind mounts it actually has (``Mounts`` of type
    ``bind``, which include those inherited through ``VolumesFrom``).
    ``user``, when given, stands in for the container's own user: an exec
    with a ``User`` runs as that user, not the container's.
    """
    stored = inspect.get("HostConfig")
    hc = {k: v for k, v in stored.items() if _set(k, v)} if isinstance(stored, Mapping) else {}
    config = inspect.get("Config") if isinstance(inspect.get("Config"), Mapping) else {}
    assert isinstance(config, Mapping)
    inherited = [
        {"Type": "bind", "Source": m.get("Source"), "Target": m.get("Destination"),
         "ReadOnly": not m.get("RW", False)}
        for m in inspect.get("Mounts") or ()
        if isinstance(m, Mapping) and m.get("Type") == "bind"
    ]
    if inherited:
        hc["Mounts"] = list(hc.get("Mounts") or ()) + inherited
    body: dict[str, Any] = {"HostConfig": hc}
    if isinstance(config.get("Image"), str):
        body["Image"] = config["Image"]
    if user is None and isinstance(config.get("User"), str):
        user = config["User"]
    if user is not None:
        body["User"] = user
    return CanonicalRequest("POST", _CREATE, "/containers/create", version, body=body,
                            body_bytes=dumps(body))


def _set(key: str, value: Any) -> bool:
    """Whether a stored HostConfig value is one a client sets (not the daemon's filling).

    Zero values are what a create without the field gets.  ``MaskedPaths``
    and ``ReadonlyPaths`` stay even when empty (``[]`` unmasks).
    ``CgroupnsMode`` may be the daemon's default filled in (``host`` on cgroup
    v1 hosts); that default is governed where containers are created, and a
    join does not enter the cgroup namespace, so only ``private`` is kept: it
    tells ``daemon_defaults`` that the namespace is settled, which it cannot
    otherwise know for a start or join at API < 1.41 (every such request was
    refused).
    """
    if key in ("MaskedPaths", "ReadonlyPaths"):
        return value is not None
    if key == "CgroupnsMode":
        return bool(value == "private")
    return value not in (None, "", 0, False, [], {})


def pin(request: CanonicalRequest, ref: JoinRef, full: str) -> CanonicalRequest:
    """``request`` with ``ref`` naming ``full`` (the id that was checked)."""
    if ref.path[0] == "query":
        key = str(ref.path[1])
        query = tuple((k, f"container:{full}" if k == key else v) for k, v in request.query)
        return replace(request, query=query)
    # Only the objects on the path are copied, and only the members they are in
    # encoded again (``with_body``): the rest of a 1 MB body is kept as it is.
    body, node = copy_along(request.body, ref.path[:-1])
    last = ref.path[-1]
    value = node[last]
    if ref.kind == "mode":
        node[last] = value.partition(":")[0] + ":" + full
    elif ref.kind == "volumes_from":
        _, sep, mode = value.partition(":")
        node[last] = full + sep + mode
    else:
        name, sep, alias = value.partition(":")
        node[last] = f"{full}:{alias if sep else name.lstrip('/')}"
    return request.with_body(body)

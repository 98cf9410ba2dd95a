"""Following the containers a request joins, with the daemon's answers (see ``policy.joins``).

Like ``scoping``, this walks the steps that need the daemon (inspections)
with a ``fetch`` function the I/O layer supplies, so it is tested with a
scripted daemon.  For each container a request joins: inspect it, decide its
own configuration under the caller's policy, follow what *it* joins (a chain
``container:X`` → ``container:Y`` ends in Y's namespace), and pin the request
to the full id that was checked.  At start the container itself is judged,
and so it is when a request enters it (exec, attach, ``docker cp``).

A tenant's build context names images too (``FROM``, ``COPY --from``...):
``check_build_images`` checks each as a read of that image, with the tenancy
rules (pulled, unowned images are shared; another tenant's image is refused
exactly as a missing one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from dockgate.admission.jsonstrict import dumps
from dockgate.admission.query import bool_value
from dockgate.buildctx import DockerfileFacts
from dockgate.buildctx.dockerfile import triggers
from dockgate.errors import BadRequest, DockgateError, Forbidden, NotFound, UpstreamUnavailable
from dockgate.model import CanonicalRequest, Operation, Peer
from dockgate.policy.controls import DecisionContext
from dockgate.policy.decision import decide
from dockgate.policy.joins import (
    MAX_DEPTH,
    as_create,
    join_refs,
    judges_path,
    pin,
    starts,
    stored_refs,
)
from dockgate.tenancy import PULLED_BASES, Tenant, inspect_target, may_access, owner_of
from dockgate.tenancy.holds import HOLDS, Claim, NameHolds, write_pending_message
from dockgate.tenancy.ownership import (
    BUILTIN_NETWORKS,
    ObjectRef,
    bind_network_ids,
    image_shared,
    names_network,
    object_refs,
    query_values,
)
from dockgate.tenancy.ownership import pin as pin_path
from dockgate.tenancy.scoping import start_networks

Fetch = Callable[[str, str, Any], Awaitable[tuple[int, Any]]]


EXEC_START = "exec.start"
"""Starting an exec: it runs what its create asked, in its container, whoever created it."""
_EXEC_CREATE = Operation("exec.create", "POST", "/containers/{id}/exec", "json")


def needs_joins(policy: Any, request: CanonicalRequest) -> bool:
    """Whether deciding ``request`` needs inspections of containers (none for most requests).

    Only for policies that read bodies (the privileged profile does not), and
    only when the request names a container it joins, or starts or enters one,
    or starts an exec.
    """
    if not getattr(policy, "checks_bodies", False):
        return False
    eid = request.endpoint.id
    return (judges_path(request) or eid == EXEC_START or bool(join_refs(request))
            or bool(_attached_refs(request)))


def _attached_refs(request: CanonicalRequest) -> list[ObjectRef]:
    """The named volumes a request's body mounts (``-v NAME:/p``, ``--mount src=NAME``),
    and the user-defined networks it attaches a container to (``--network NAME``,
    ``EndpointsConfig`` keys, ``network connect``'s network)."""
    eid = request.endpoint.id
    if eid == "network.connect":
        return [r for r in object_refs(request) if r.kind == "network" and r.where == "path"]
    if eid == "image.build":
        # The classic builder's RUN containers take ``networkmode`` as their
        # NetworkMode, a user-defined network's name included.
        return [ObjectRef("network", mode, "query", "query.networkmode", "write",
                          ("query", "networkmode"))
                for mode in query_values(request, "networkmode")
                if names_network(mode)]
    if eid != "container.create":
        return []
    return [r for r in object_refs(request)
            if r.kind in ("volume", "network") and r.where == "body"]


_NETWORK_FIELDS = ("Driver", "Scope", "Internal", "Ingress", "EnableIPv6", "ConfigOnly",
                   "ConfigFrom", "Options")


def _volume_as_create(name: str, info: Mapping[str, Any]) -> dict[str, Any]:
    """The ``volume.create`` body that would make the inspected volume ``info``."""
    options = info.get("Options")
    return {"Name": name, "Driver": info.get("Driver") or "local",
            "DriverOpts": dict(options) if isinstance(options, Mapping) else {}}


def _network_as_create(name: str, info: Mapping[str, Any]) -> dict[str, Any]:
    """The ``network.create`` body that would make the inspected network ``info``, its
    addresses aside (they were checked, or allocated, when it was made, and joining does
    not route them anew)."""
    body: dict[str, Any] = {"Name": str(info.get("Name") or name)}
    body.update((k, info[k]) for k in _NETWORK_FIELDS if info.get(k) not in (None, "", {}))
    ipam = info.get("IPAM")
    if isinstance(ipam, Mapping):
        body["IPAM"] = {k: ipam[k] for k in ("Driver", "Options") if ipam.get(k)}
    return body


_AS_CREATE: Mapping[str, tuple[str, Operation,
                               Callable[[str, Mapping[str, Any]], dict[str, Any]]]] = {
    "volume": ("/volumes/", Operation("volume.create", "POST", "/volumes/create", "json"),
               _volume_as_create),
    "network": ("/networks/", Operation("network.create", "POST", "/networks/create", "json"),
                _network_as_create),
}


async def _check_attached(kind: str, name: str, what: str, *, policy: Any, peer: Peer,
                          fetch: Fetch, version: str | None) -> str | None:
    """A named volume or network a container uses must pass ``policy`` as the create that
    would make it, when it exists (a missing one the daemon makes from the judged request,
    or refuses).  Returns the full id of a network judged (None for a volume, whose name
    is its identity, or for nothing found).

    Both are made once and used by name ever after, and what they were made as
    acts on the host whenever a container uses them: a local volume made directly
    on the daemon (by an admin, a tool, before dockgate) with ``o=bind,device=/etc``
    is the host's ``/etc`` in every container that mounts it; joining a macvlan
    network made with ``parent=eth0`` puts the container on the host's link, and
    with ``macvlan_mode=passthru`` makes the host's NIC promiscuous and gives it
    the container's MAC address.  So the daemon's record (``GET /volumes/NAME``,
    ``GET /networks/NAME``) is decided as the create that would make it, under the
    caller's policy.  The built-in networks' names are governed as network modes
    (``namespaces``); one named by its id is judged here as what it is (the host
    network's driver ``host`` is not an allowed network driver).
    """
    if not name:
        return None  # names nothing: the daemon refuses it
    # Any other name is asked for, path-escaped: the daemon makes networks named with a
    # '/' or a control character (28.5: ``a/b``, ``e<TAB>f``), attaches containers to
    # them by that name, and answers ``GET /networks/a%2Fb``.
    base, operation, as_create = _AS_CREATE[kind]
    prefix = f"/v{version}" if version else ""
    status, info = await fetch("GET", f"{prefix}{base}{quote(name, safe='')}", None)
    if status == 404:
        return None
    if status != 200 or not isinstance(info, Mapping):
        raise UpstreamUnavailable(f"{what}: cannot inspect {kind} {name!r} ({status})")
    body = as_create(name, info)
    created = CanonicalRequest("POST", operation, operation.template, version, body=body,
                               body_bytes=dumps(body))
    decision = decide(policy, created, peer)
    if not decision.allowed:
        raise Forbidden(f"{what}: {kind} {name!r} does not pass the policy: {decision.reason}",
                        reason="policy")
    ident = info.get("Id")
    return ident if kind == "network" and isinstance(ident, str) and ident else None


def _pin_network(request: CanonicalRequest, ref: ObjectRef, full: str) -> CanonicalRequest:
    """``request`` naming the network ``ref`` names by ``full``, the id that was judged: the
    daemon resolves a name again when it acts (exact name, then id prefix), so a network
    removed meanwhile would leave its name to another network's id."""
    if ref.path[:1] == ("query",):
        return replace(request, query=tuple((k, full if k == "networkmode" else v)
                                            for k, v in request.query))
    try:
        return pin_path(request, ref, full)
    except ValueError as e:
        raise BadRequest(f"{ref.key}: {e}") from None


async def _inspect(fetch: Fetch, ref: str, version: str | None, field: str) -> Mapping[str, Any]:
    name = ref.lstrip("/")
    if not name or "/" in name or any(ord(c) < 0x20 for c in name):
        raise NotFound(f"No such container: {ref}", reason="no-such-object")
    prefix = f"/v{version}" if version else ""
    status, info = await fetch("GET", f"{prefix}/containers/{quote(name, safe='')}/json", None)
    if status == 404:
        raise NotFound(f"No such container: {ref}", reason="no-such-object")
    if status != 200 or not isinstance(info, Mapping) or not isinstance(info.get("Id"), str):
        raise UpstreamUnavailable(f"{field}: cannot inspect container {ref!r} ({status})")
    return info


async def _judge(
    info: Mapping[str, Any],
    what: str,
    *,
    policy: Any,
    peer: Peer,
    fetch: Fetch,
    version: str | None,
    seen: set[str],
    user: str | None = None,
    networks: list[str] | None = None,
) -> None:
    """``info`` (an inspected container) and everything it joins must pass ``policy``.

    ``user``, when given, is judged in place of the container's own user (see
    ``as_create``); what the container joins is judged as it is.  ``networks``,
    when given, are the full ids of the user-defined networks judged in place of
    those ``info`` lists (a start's: what it will connect).
    """
    cid = str(info.get("Id"))
    if cid in seen:
        return
    if len(seen) >= MAX_DEPTH:
        raise Forbidden(f"{what}: joins more than {MAX_DEPTH} containers in a chain",
                        reason="policy")
    seen.add(cid)
    decision = decide(policy, as_create(info, version, user), peer)
    if not decision.allowed:
        raise Forbidden(f"{what} does not pass the policy: {decision.reason}", reason="policy")
    for mount in info.get("Mounts") or ():
        if isinstance(mount, Mapping) and mount.get("Type") == "volume" \
                and isinstance(mount.get("Name"), str):
            await _check_attached("volume", mount["Name"], what, policy=policy, peer=peer,
                                  fetch=fetch, version=version)
    if networks is None:
        settings = info.get("NetworkSettings")
        listed = settings.get("Networks") if isinstance(settings, Mapping) else None
        networks = []
        for net, endpoint in (listed.items() if isinstance(listed, Mapping) else ()):
            if str(net) in BUILTIN_NETWORKS:
                continue
            ident = endpoint.get("NetworkID") if isinstance(endpoint, Mapping) else None
            networks.append(ident if isinstance(ident, str) and ident else str(net))
    for net in networks:
        await _check_attached("network", net, what, policy=policy, peer=peer, fetch=fetch,
                              version=version)
    for ref in stored_refs(info):
        nxt = await _inspect(fetch, ref.ref, version, ref.field)
        await _judge(nxt, f"{what}, which joins container {ref.ref!r} ({ref.field}),",
                     policy=policy, peer=peer, fetch=fetch, version=version, seen=seen)


MAX_LOOKUPS = 128
"""Distinct daemon lookups one request's join check may make.  Each list it follows
is capped at 512 entries (the schemas), but they nest (every endpoint's ``Links``,
every joined container's volumes and networks), and each lookup is a request the
daemon serves: a client must not make one create cost thousands of them."""


class _Lookups:
    """The daemon lookups of one join check: a target asked twice gets the first
    answer (a volume named by several binds, a container joined twice, is judged on
    one reading), and more than ``MAX_LOOKUPS`` distinct ones refuse the request."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._answers: dict[str, tuple[int, Any]] = {}

    async def __call__(self, method: str, target: str, body: Any) -> tuple[int, Any]:
        if method != "GET" or body is not None:
            return await self._fetch(method, target, body)
        answer = self._answers.get(target)
        if answer is None:
            if len(self._answers) >= MAX_LOOKUPS:
                raise BadRequest(f"the request refers to more than {MAX_LOOKUPS} volumes, "
                                 "networks and containers (with those they join) for "
                                 "dockgate to check")
            answer = self._answers[target] = await self._fetch(method, target, body)
        return answer


async def check_joins(
    request: CanonicalRequest, policy: Any, peer: Peer, fetch: Fetch
) -> CanonicalRequest:
    """Judge every container ``request`` joins (and the one it starts or enters); pin them.

    An exec that sets ``User`` runs as that user, so the container is judged
    with it in place of its own; without one (and for attach, whose process
    is the container's, and ``docker cp``, which the daemon does as root
    whatever the container's user) the container's user stands.

    Raises:
        Forbidden: a joined (or started, or entered) container does not pass ``policy``.
        NotFound: a joined container does not exist.
        UpstreamUnavailable: the daemon did not answer an inspection.
        BadRequest: more than ``MAX_LOOKUPS`` objects to look up.
    """
    version = request.version
    fetch = _Lookups(fetch)
    if request.endpoint.id == EXEC_START and "id" in request.params:
        return await _check_exec_start(request, policy, peer, fetch)
    if judges_path(request) and "id" in request.params:
        cid = request.params["id"]
        info = await _inspect(fetch, cid, version, "path")
        started = None
        if starts(request):
            # What the start will connect, each by the full id judged; an endpoint
            # the daemon would look up by a name that can be read as another
            # network is refused (``start_networks``).
            started = [str(n["Id"]) for *_, n in await start_networks(info, fetch, version)]
        await _judge(info, f"container {cid!r}", policy=policy, peer=peer, fetch=fetch,
                     version=version, seen=set(), user=_exec_user(request), networks=started)
        # Act on the container that was judged, not one renamed into its name since.
        path_ref = ObjectRef("container", cid, "path", "id", "write", ("id",))
        request = pin_path(request, path_ref, str(info["Id"]))
    for vref in _attached_refs(request):
        network = await _check_attached(vref.kind, vref.ref, vref.key, policy=policy,
                                        peer=peer, fetch=fetch, version=version)
        if network is not None:
            request = _pin_network(request, vref, network)
    request = bind_network_ids(request)
    for ref in join_refs(request):
        info = await _inspect(fetch, ref.ref, version, ref.field)
        await _judge(info, f"{ref.field}: container {ref.ref!r}", policy=policy, peer=peer,
                     fetch=fetch, version=version, seen=set())
        request = pin(request, ref, str(info["Id"]))
    return request


async def _check_exec_start(
    request: CanonicalRequest, policy: Any, peer: Peer, fetch: Fetch
) -> CanonicalRequest:
    """Judge the exec ``request`` starts as the exec create that made it would be judged.

    Exec ids are not secrets (a container's inspect lists them, ``/events``
    carries them), and an exec made on the daemon by another party (an admin,
    a tool, a client under another policy) was never judged under this
    caller's policy: starting it runs its command as its user, with its
    ``Privileged``, in its container.  So the daemon's record of the exec
    (``GET /exec/{id}/json``: container, user, privileged, command) is decided
    as an ``exec.create`` under the caller's policy, the container judged
    with the exec's user standing in for its own, and the start is pinned to
    the exec's full id.

    Raises:
        Forbidden: the exec, or the container it runs in, does not pass ``policy``.
        NotFound: no such exec.
        UpstreamUnavailable: the daemon did not answer an inspection.
    """
    ref = request.params["id"]
    name = ref.strip()
    prefix = f"/v{request.version}" if request.version else ""
    if not name or "/" in name or any(ord(c) < 0x20 for c in name):
        raise NotFound(f"No such exec instance: {ref}", reason="no-such-object")
    status, info = await fetch("GET", f"{prefix}/exec/{quote(name, safe='')}/json", None)
    if status == 404:
        raise NotFound(f"No such exec instance: {ref}", reason="no-such-object")
    process = info.get("ProcessConfig") if isinstance(info, Mapping) else None
    if (status != 200 or not isinstance(info, Mapping) or not isinstance(info.get("ID"), str)
            or not isinstance(info.get("ContainerID"), str) or not isinstance(process, Mapping)):
        raise UpstreamUnavailable(f"path: cannot inspect exec {ref!r} ({status})")
    container = await _inspect(fetch, info["ContainerID"], request.version, "path")
    user = process.get("user") if isinstance(process.get("user"), str) else ""
    args = process.get("arguments")
    body = {"User": user, "Privileged": process.get("privileged") is True,
            "Cmd": [process.get("entrypoint"), *(args if isinstance(args, list) else ())]}
    cid = str(container["Id"])
    created = CanonicalRequest("POST", _EXEC_CREATE, f"/containers/{cid}/exec", request.version,
                               params={"id": cid}, body=body, body_bytes=dumps(body))
    config = container.get("Config")
    default = config.get("User") if isinstance(config, Mapping) else None
    context = DecisionContext(default_user=default if isinstance(default, str) else "")
    decision = decide(policy, created, peer, context)
    what = f"exec {ref!r}"
    if not decision.allowed:
        raise Forbidden(f"{what} does not pass the policy: {decision.reason}", reason="policy")
    await _judge(container, f"{what} runs in container {cid[:12]!r}, which", policy=policy,
                 peer=peer, fetch=fetch, version=request.version, seen=set(), user=user or None)
    exec_ref = ObjectRef("exec", ref, "path", "id", "write", ("id",))
    return pin_path(request, exec_ref, str(info["ID"]))


def _exec_user(request: CanonicalRequest) -> str | None:
    """The ``User`` an exec create sets (None when it sets none: the container's stands)."""
    body = request.body
    if request.endpoint.id != "exec.create" or not isinstance(body, Mapping):
        return None
    user = body.get("User")
    return user if isinstance(user, str) and user else None


async def check_tenant_build(
    request: CanonicalRequest, tenant: Tenant, fetch: Fetch
) -> CanonicalRequest:
    """A tenant's build that joins ``container:X`` (``networkmode``) must join its own X,
    one whose RUN steps join a user-defined network (``networkmode=NET``) its own NET,
    and may not pull its base images (their ``ONBUILD`` triggers, read from the daemon's
    copy before the build, would be the registry's: ``PULLED_BASES``).

    The RUN steps would otherwise read what another tenant's container serves
    on its loopback, or reach another tenant's containers on their internal
    network.  X is pinned to its full id, like every checked reference.
    Another tenant's X or NET gets the very refusal a missing one gets (the
    daemon itself would build and fail only at the first RUN step, so no answer
    before the build can be the daemon's).
    """
    if tenant.admin or request.endpoint.id != "image.build":
        return request
    if any(k == "pull" and bool_value(v) for k, v in request.query):
        raise Forbidden(PULLED_BASES, reason="tenant-pull")
    for ref in join_refs(request):
        info = await _inspect(fetch, ref.ref, request.version, ref.field)
        checked = ObjectRef("container", ref.ref, "query", ref.field)
        if not may_access(tenant, owner_of("container", info), checked):
            raise NotFound(f"No such container: {ref.ref}", reason="not-owner")
        request = pin(request, ref, str(info["Id"]))
    for net in _attached_refs(request):
        status, found = await fetch("GET", inspect_target(net, request.version), None)
        if status != 200 or not isinstance(found, Mapping) or \
                not may_access(tenant, owner_of("network", found), net):
            raise NotFound(f"network {net.ref} not found", reason="not-owner")
        # Each RUN step's container names it again, later: the id that was checked.
        request = _pin_network(request, net, str(found.get("Id") or net.ref))
    return request


async def check_build_images(
    facts: DockerfileFacts, tenant: Tenant, fetch: Fetch, version: str | None,
    claims: list[Claim] | None = None, *, holds: NameHolds = HOLDS,
) -> None:
    """Each image a tenant's Dockerfile names must be on the daemon, and one the tenant
    may read.

    The daemon would pull a missing one during the build, so the answer for a
    missing image is a registry's, after the build began; none that dockgate
    could give for another tenant's image (which the daemon has) would look
    the same.  So a tenant's build may name only images that are present
    (pulled first, through dockgate's checks of a pull), and a missing image
    and another tenant's get the same refusal, naming only the reference.
    The images the ``ONBUILD`` triggers of its base images name are checked
    alike (a trigger is an instruction of this build, kept in the base's config).

    The base names are claimed in ``holds`` before they are read (the claim added
    to ``claims``, which the I/O layer releases when the build's answer ends): the
    daemon resolves them only once the whole context has arrived, and a name
    retagged meanwhile would bring triggers nobody read.  A base name that a
    forwarded write is writing at that moment is refused (409).
    """
    if claims is not None:
        claim = holds.claim("base", [name for _, name in facts.bases], tenant.name)
        if isinstance(claim, str):
            raise DockgateError(write_pending_message(claim), status=409, reason="base-held")
        claims.append(claim)
    bases = set(facts.bases)
    triggered = DockerfileFacts()
    for where, name in facts.images:
        info = await _readable_image(fetch, tenant, version, where, name)
        if (where, name) in bases:
            base_triggers(name, info, triggered)
    for where, name in triggered.images:
        await _readable_image(fetch, tenant, version, where, name)


def base_triggers(name: str, info: Mapping[str, Any], facts: DockerfileFacts) -> None:
    """Add the ``ONBUILD`` triggers of the image ``name`` (its inspection ``info``) to
    ``facts``.  They run as instructions of every build ``FROM`` that image (a
    ``COPY --from``, an ``ADD <url>``, a cache mount among them)."""
    config = info.get("Config")
    onbuild = config.get("OnBuild") if isinstance(config, Mapping) else None
    if isinstance(onbuild, list) and onbuild:
        triggers(name, [str(t) for t in onbuild], facts)


async def _readable_image(fetch: Fetch, tenant: Tenant, version: str | None, where: str,
                          name: str) -> Mapping[str, Any]:
    """The inspection of image ``name`` a tenant's Dockerfile names at ``where``, if it is
    on the daemon and the tenant may read it; else NotFound, alike for both."""
    ref = ObjectRef("image", name, "body", f"Dockerfile {where}", "read")
    status, info = await fetch("GET", inspect_target(ref, version), None)
    if status not in (200, 404) or (status == 200 and not isinstance(info, Mapping)):
        raise UpstreamUnavailable(f"cannot check image {name!r} ({status})")
    reason = "no-such-object"
    if isinstance(info, Mapping) and status == 200:
        shared = image_shared(tenant, info)
        if may_access(tenant, owner_of("image", info), ref, shared):
            return info
        reason = "not-owner"
    raise NotFound(f"Dockerfile {where}: no such image: {name} (a tenant's build may "
                   "name only images on the daemon: pull it first)", reason=reason)


async def check_base_triggers(
    facts: DockerfileFacts, fetch: Fetch, version: str | None, pulls: bool
) -> None:
    """Add the ``ONBUILD`` triggers of the build's base images to ``facts``.

    An image's triggers run in every build ``FROM`` it (``ADD <url>`` included),
    so the base images are inspected.  A base the daemon would pull during the
    build (missing, or ``pull`` asked) has triggers dockgate cannot read:
    that is a problem (refused) rather than a guess.
    """
    for where, name in facts.bases:
        if pulls:
            facts.problems.append((where, f"image {name!r} is pulled during the build (pull=1), "
                                          "so its ONBUILD triggers cannot be checked"))
            continue
        ref = ObjectRef("image", name, "body", f"Dockerfile {where}", "read")
        status, info = await fetch("GET", inspect_target(ref, version), None)
        if status == 404:
            facts.problems.append((where, f"image {name!r} is not on the daemon (pull it "
                                          "first): its ONBUILD triggers cannot be checked"))
            continue
        if status != 200 or not isinstance(info, Mapping):
            raise UpstreamUnavailable(f"cannot check image {name!r} ({status})")
        base_triggers(name, info, facts)

"""Scoping a request to its tenant before it is decided: the steps that need
the daemon's answers.

The tenancy core (``dockgate.tenancy``) is pure: it says which objects a
request names and how to stamp, scope and pin it.  Ownership, though, can only
be checked against the daemon's own records (labels on the object as it exists
now), so this module walks those steps with a ``fetch`` function the I/O layer
supplies.  Keeping the walk here, apart from the protocol, lets it be tested
with a scripted fetch and keeps the order of the checks in one place:

stamp and scope → for each named object: inspect, check the owner, pin the
request to the full id that was checked → at a start, the networks it will
connect (``start_networks``: a start cannot be pinned, so an endpoint the
daemon would look up by a name another network can answer is refused) → quota.

Pinning matters: the daemon resolves names and id prefixes again when it acts,
so the forwarded request must name the exact object that was checked, or a
name reused in between would be acted on unchecked.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

from dockgate.errors import (
    TIMED_OUT,
    DockgateError,
    Forbidden,
    NotFound,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from dockgate.model import CanonicalRequest
from dockgate.policy.joins import starts
from dockgate.tenancy import (
    OWNER_LABEL,
    Tenant,
    admin_only,
    exec_container,
    full_id,
    inspect_target,
    may_access,
    needs_inspect,
    needs_usage,
    object_refs,
    owner_of,
    pin,
    quota_check,
    scope_list,
    stamp,
    usage_from_list,
)
from dockgate.tenancy.holds import (
    HOLDS,
    PRUNE_WHILE_BUILDING,
    Claim,
    NameHolds,
    base_held_message,
)
from dockgate.tenancy.missing import (
    STAND_IN_PREFIX,
    MissingAnswer,
    StandIn,
    body_answer,
    image_words,
    name_in_use,
    pull_stand_in,
    replayable,
    stand_in,
)
from dockgate.tenancy.ownership import (
    BUILTIN_NETWORKS,
    ObjectRef,
    bind_network_ids,
    image_shared,
    substitute,
)

Fetch = Callable[[str, str, Any], Awaitable[tuple[int, Any]]]
"""``fetch(method, target, json_body)`` → (status, decoded JSON or None)."""


def _owned_by(tenant: Tenant) -> str:
    """The quoted ``filters`` value that lists only ``tenant``'s objects."""
    return quote(json.dumps({"label": {f"{OWNER_LABEL}={tenant.name}": True}}))


def _unanswered(status: int, what: str) -> DockgateError:
    """The refusal for a side request the daemon did not answer usefully."""
    if status == TIMED_OUT:
        return UpstreamTimeout(f"{what}: the Docker daemon did not answer in time")
    if status == 0:
        return UpstreamUnavailable(f"{what}: the Docker daemon could not be reached")
    return UpstreamUnavailable(f"{what}: the daemon answered {status}")


Replay = Callable[[str, str, bytes | None, tuple[tuple[str, str], ...]],
                 Awaitable[tuple[int, bytes, bytes]]]
"""``replay(method, target, body, headers)`` → (status, content type, raw body): a side
request whose answer is given back to the client as it is (``missing``)."""

_NAMES_WRITTEN = frozenset({"t", "repo", "fromImage"})
"""Image references (by query key) that name what a build, commit, tag, import or pull
writes."""
_CREATED_IF_MISSING = _NAMES_WRITTEN | {"cachefrom"}
"""Image references (by query key) whose absence the daemon does not refuse: a
name that a build, commit, tag, import or pull writes, and the build's cache
sources (a missing one is ignored)."""


async def scope_request(
    request: CanonicalRequest, tenant: Tenant, fetch: Fetch, replay: Replay | None = None,
    stand_ins: list[StandIn] | None = None, *, claims: list[Claim] | None = None,
    holds: NameHolds = HOLDS,
) -> tuple[CanonicalRequest, Mapping[str, Any] | None]:
    """Stamp, scope, check and pin ``request`` for ``tenant``.

    Returns the request to decide and forward, and the inspection of the
    container the request acts on (for quota checks of start and update).

    A reference to an object that does not exist, or that the tenant may not
    use, is answered as the daemon answers for a missing object
    (``missing``); ``replay`` sends the side requests that learn that answer.
    A pull of a name the tenant may not use gets a stand-in tag, added to
    ``stand_ins`` (the request is returned as the caller wrote it, for the
    decision): the I/O layer forwards it with the stand-in
    (``missing.forwarded``) and puts the caller's tag back into the daemon's
    answer (``missing.NamesBack``).  Without ``stand_ins`` such a pull is
    refused as a name in use.

    The image names a tenant's request writes (tag, commit, build ``t``, import,
    pull) or removes (an image delete: its name, and every name of the image)
    are claimed as writes in ``holds`` and the claim added to ``claims``, which the
    I/O layer releases when the exchange ends; a name that a running build holds
    as its base is refused (``tenancy.holds``).

    Raises:
        MissingAnswer: a named object is missing or not the tenant's.
        Forbidden: an admin-only endpoint, a spoofed owner label, or a shared
            image's name the request would write.
        DockgateError: (409) a name the request would write that the tenant
            may not use (``missing.name_in_use``), or that a running build holds.
        UpstreamUnavailable: the daemon could not answer an inspection.
    """
    endpoint = request.endpoint.id
    if admin_only(endpoint) and not tenant.admin:
        if request.method == "GET" and request.params and replay is not None:
            # Clients probe these (``docker inspect NAME`` tries every type).
            refs = object_refs(request)
            if refs:
                raise await _as_missing(request, [(refs[0], "admin-only")], fetch, replay)
        raise Forbidden(f"{endpoint} is for administrators only", reason="admin-only")
    if endpoint == "image.push" and not tenant.admin and not _query_value(request, "tag"):
        raise Forbidden("pushing every tag of a repository is for administrators only; "
                        "push NAME:TAG", reason="admin-only")
    if endpoint == "image.prune" and not tenant.admin and holds.building(tenant.name):
        raise DockgateError(PRUNE_WHILE_BUILDING, status=409, reason="base-held")
    request = scope_list(stamp(request, tenant), tenant)
    if endpoint == "volume.create" and not tenant.admin:
        await _volume_name_free(request, tenant, fetch)
    asked = request  # as the caller named things: what a replay names (see _as_missing)
    target: Mapping[str, Any] | None = None
    new_volumes: list[str] = []
    hidden: list[tuple[ObjectRef, str]] = []
    writes: list[str] = []
    for ref in object_refs(request):
        if ref.kind in _SWARM_KINDS and not tenant.admin:
            raise Forbidden(f"{ref.key}: {ref.kind}s are for administrators only",
                            reason="admin-only")
        if ref.kind == "image" and ref.key.split("[")[0] in _NAMES_WRITTEN:
            writes.append(ref.ref)
        status, info = await fetch("GET", inspect_target(ref, request.version), None)
        if endpoint == "image.delete" and ref.where == "path":
            tags = info.get("RepoTags") if status == 200 and isinstance(info, dict) else None
            writes.extend([ref.ref, *(t for t in tags or () if isinstance(t, str))])
        if status in (400, 404) and ref.kind == "image" and ref.key.split("[")[0] \
                in _CREATED_IF_MISSING:
            continue  # names nothing yet, or nothing the daemon can parse: it answers
        if status == 400 and ref.kind == "image":
            continue  # a reference the daemon cannot parse names nothing: it refuses itself
        if status == 404 and ref.kind == "volume" and ref.where == "body":
            # A container that mounts a missing named volume makes the daemon
            # create it; create it first, owned, once every other reference
            # has passed.  Anywhere else (inspect, remove) a missing volume is
            # simply not found.
            new_volumes.append(ref.ref)
            continue
        if status == 404:
            hidden.append((ref, "no-such-object"))
            continue
        if status != 200 or not isinstance(info, dict):
            raise _unanswered(status, f"cannot check {ref.kind} {ref.ref}")
        checked, kind = info, ref.kind
        if ref.kind == "exec":
            owner_ref = exec_container(info)
            status, checked = await fetch("GET", inspect_target(owner_ref, request.version), None)
            if status != 200 or not isinstance(checked, dict):
                hidden.append((ref, "no-such-object"))
                continue
            kind = "container"
        shared = ref.kind != "image" or image_shared(tenant, info)
        owner = owner_of(kind, checked)
        if not may_access(tenant, owner, ref, shared):
            if ref.key.startswith("cachefrom["):
                # The daemon ignores a cache source it does not have: so it shall
                # for this one, named by a stand-in.
                request = substitute(request, ref, stand_in(ref, secrets.token_hex(16)).value)
                continue
            plain = ref.kind == "image" and owner is None and shared
            if (plain or _name_taken(ref)) and hidden:
                break  # the daemon stops at the missing object named before this one
            if plain:
                # The tenant may read it, so nothing is hidden by saying so.
                raise Forbidden(f"image {ref.ref!r} is a shared image: only administrators "
                                "may remove it or write its name", reason="shared-image")
            if ref.key == "fromImage" and stand_ins is not None:
                # A missing name is asked of the registry: so is this one, for a tag
                # nobody has, and the answer says the caller's tag again.
                stand_ins.append(pull_stand_in(request, secrets.token_hex(16))[1])
                writes.remove(ref.ref)  # it writes the stand-in: holds say nothing
                continue
            if _name_taken(ref):
                raise name_in_use(ref)
            hidden.append((ref, "not-owner"))
            continue
        request = pin(request, ref, full_id(ref.kind, info))
        if target is None and ref.kind == "container" and ref.where == "path":
            target = info
    if hidden:
        # Every reference was checked first: the answer must not depend on
        # whether some other object the request names exists.
        raise await _as_missing(asked, hidden, fetch, replay)
    if writes and claims is not None and not tenant.admin:
        claim = holds.claim("write", writes)
        if isinstance(claim, str):
            raise DockgateError(base_held_message(claim), status=409, reason="base-held")
        claims.append(claim)
    for name in dict.fromkeys(new_volumes):
        await _create_owned_volume(request, name, tenant, fetch)
    if starts(request) and target is not None and not tenant.admin:
        for name, bound, network in await start_networks(target, fetch, request.version):
            if not may_access(tenant, owner_of("network", network)):
                # Answered as if that network did not exist.
                raise _absent(str(target.get("Id") or "")[:12], name, bound, "not-owner")
    return bind_network_ids(request), target


class StaleEndpoint(DockgateError):
    """A start refused because one of the container's endpoints names its network in a
    way the daemon would resolve again when it starts it (``start_networks``)."""

    status = 409


def _stale(container: str, name: str, why: str, reason: str = "stale-network"
           ) -> StaleEndpoint:
    return StaleEndpoint(
        f"container {container}: its endpoint on network {name!r} {why}: a start would "
        f"connect whichever network that then resolves to (full id, exact name, then id "
        f"prefix). Remove the container and create it again (dockgate binds each "
        f"endpoint of a create to the network it checked)",
        reason=reason)


def _absent(container: str, name: str, bound: str, reason: str = "stale-network"
            ) -> StaleEndpoint:
    """The refusal of a start whose endpoint on ``name`` (``bound`` to that id, when
    not empty) names no network."""
    if bound:
        return _stale(container, name, f"is bound to network {bound[:12]}, which is gone (the "
                      "daemon would look its id up as a name)", reason)
    return _stale(container, name, "is kept by name only, and no network is named so now",
                  reason)


async def start_networks(info: Mapping[str, Any], fetch: Fetch, version: str | None
                         ) -> list[tuple[str, str, Mapping[str, Any]]]:
    """The user-defined networks a start of the inspected container ``info`` connects:
    (the name its endpoint is kept under, the ``NetworkID`` it is bound to or "", the
    network as inspected by its full id).

    A start connects each endpoint by its ``NetworkID`` when that is set (the
    daemon sets it when it connects one, and dockgate binds it at create), else
    by the name the endpoint is kept under, resolved as the start runs
    (``FindNetwork``: full id, exact name, then a unique id prefix).  So a
    container created before dockgate bound ``NetworkID``, or on the daemon
    directly, connects by a name that a network removed between the check and
    the start (or at any time before) leaves to another network: the name's
    own network gone, the start joins the network whose id the name begins.
    An endpoint is therefore accepted only when what it names is one network
    under every reading the daemon could make of it: its ``NetworkID`` that
    network's full id, or (none set) exactly one network that the name is the
    full id or the exact name of, and no other network named so or whose id
    begins with it.

    Raises:
        StaleEndpoint: (409) an endpoint whose ``NetworkID`` names no network
            (the daemon would look it up as a name), or whose name resolves to
            none, or could resolve to another network.
        UpstreamUnavailable: the daemon did not answer a lookup.
    """
    settings = info.get("NetworkSettings")
    networks = settings.get("Networks") if isinstance(settings, Mapping) else None
    if not isinstance(networks, Mapping):
        return []
    container = str(info.get("Id") or "")[:12]
    prefix = f"/v{version}" if version else ""
    listing: list[Any] | None = None
    found: list[tuple[str, str, Mapping[str, Any]]] = []
    for key, endpoint in networks.items():
        name = str(key)
        if name in BUILTIN_NETWORKS:
            continue  # connected by name, whatever its NetworkID (``getNetworkID``)
        bound = endpoint.get("NetworkID") if isinstance(endpoint, Mapping) else None
        bound = bound if isinstance(bound, str) else ""
        ident = bound
        if not ident:
            if listing is None:
                status, answer = await fetch("GET", f"{prefix}/networks", None)
                if status != 200 or not isinstance(answer, list):
                    raise _unanswered(status, "cannot list networks")
                listing = answer
            ident = _only_reading(container, name, listing)
        status, network = await fetch("GET", f"{prefix}/networks/{quote(ident, safe='')}", None)
        if status == 404 or (status == 200 and isinstance(network, Mapping)
                             and network.get("Id") != ident):
            raise _absent(container, name, bound)
        if status != 200 or not isinstance(network, Mapping):
            raise _unanswered(status, f"cannot inspect network {ident[:12]}")
        found.append((name, bound, network))
    return found


def _only_reading(container: str, name: str, listing: list[Any]) -> str:
    """The full id of the one network ``name`` can be read as among the ``listing``
    (``GET /networks``): its full id or exact name, no other's name or id prefix."""
    matches = {str(n.get("Id")): n for n in listing if isinstance(n, Mapping) and (
        n.get("Id") == name or n.get("Name") == name
        or str(n.get("Id") or "").startswith(name))}
    if not matches:
        raise _absent(container, name, "")
    if len(matches) > 1:
        named = sum(n.get("Name") == name for n in matches.values())
        raise _stale(container, name, "is kept by name only, and several networks are "
                     "named so" if named > 1 else "is kept by name only, and that name is "
                     "also the start of another network's id")
    ident, only = next(iter(matches.items()))
    if name not in (ident, only.get("Name")):
        raise _stale(container, name, "is kept by name only, and no network is named "
                     "so (it is the start of a network's id)")
    return ident


_SWARM_KINDS = frozenset({"service", "node", "task", "secret", "config"})


def _query_value(request: CanonicalRequest, key: str) -> str:
    return next((v for k, v in request.query if k == key), "")


def _name_taken(ref: ObjectRef) -> bool:
    """References where the daemon has no answer for a missing object to give instead:
    it would create the object (a named volume it mounts, an image name a build,
    commit, tag or pull writes), so a refusal cannot look like absence."""
    if ref.kind == "volume":
        return ref.where == "body"
    return ref.kind == "image" and ref.key.split("[")[0] in _CREATED_IF_MISSING


async def _as_missing(request: CanonicalRequest, hidden: list[tuple[ObjectRef, str]],
                      fetch: Fetch, replay: Replay | None) -> DockgateError:
    """The daemon's answer for ``request`` had the ``hidden`` references (missing, or not
    the tenant's; with the audit reason of the first) named nothing (see ``missing``).

    When each can be replayed (``replayable``), the request is replayed with a
    stand-in for every one of them, so that the daemon's answer cannot depend on
    which of them exist.  Otherwise the first is answered from
    ``missing.body_answer``.  Without a replay function (unit tests of the
    walk), or when no stand-in can be made safe, a plain refusal.
    """
    ref, reason = hidden[0]
    fallback = NotFound(f"no such {ref.kind}: {ref.ref}", reason=reason)
    if replay is None:
        return fallback
    stands = [stand_in(r, secrets.token_hex(16)) for r, _ in hidden]
    for (other, _), stand in zip(hidden, stands, strict=True):
        if other.kind == "image" and STAND_IN_PREFIX not in stand.shown:
            # An id-shaped stand-in could be some image's id prefix: make sure it is not.
            status, _ = await fetch("GET", inspect_target(replace(other, ref=stand.value),
                                                          request.version), None)
            if status != 404:
                return fallback
    endpoint = request.endpoint.id
    if all(replayable(endpoint, other) for other, _ in hidden):
        replayed = request
        for (other, _), stand in zip(hidden, stands, strict=True):
            value = stand.value
            if endpoint == "image.push" and other.where == "path":
                value = value.removesuffix(":" + _query_value(request, "tag"))  # in the query
            replayed = substitute(replayed, other, value)
        status, content_type, raw = await replay(
            replayed.method, replayed.target, replayed.body_bytes, replayed.headers)
        if status < 200 or (status == TIMED_OUT and not raw):
            return _unanswered(status, f"cannot check {ref.kind} {ref.ref}")
        # Whatever the daemon answered, it answered for objects that do not
        # exist (a 2xx too: ``volume rm -f`` of a missing volume, a push's stream).
        return MissingAnswer.from_replay(status, content_type, raw, ref, stands=stands,
                                         reason=reason)
    words = None
    if ref.kind == "image":
        status, _, raw = await replay(
            "GET", inspect_target(replace(ref, ref=stands[0].value), request.version), None, ())
        words = image_words(raw, stands[0]) if status == 404 else None
        if words is None:
            return fallback
    answer = body_answer(ref, words)
    answer.reason = reason
    return answer


async def _volume_name_free(request: CanonicalRequest, tenant: Tenant, fetch: Fetch) -> None:
    """Refuse to create a volume whose name another tenant (or nobody) holds.

    The daemon answers a create of an existing name with the existing volume
    (labels, mount point and all), so it would show the tenant someone else's
    volume.  It has no "name in use" answer for volumes to give instead.
    """
    name = request.body.get("Name") if isinstance(request.body, Mapping) else None
    if not isinstance(name, str) or not name:
        return  # the daemon picks a fresh name
    status, info = await fetch("GET", inspect_target(
        ObjectRef("volume", name, "body", "Name"), request.version), None)
    if status == 404:
        return
    if status != 200 or not isinstance(info, dict):
        raise _unanswered(status, f"cannot check volume {name}")
    if owner_of("volume", info) != tenant.name:
        raise name_in_use(ObjectRef("volume", name, "body", "Name"))


async def _create_owned_volume(
    request: CanonicalRequest, name: str, tenant: Tenant, fetch: Fetch
) -> Mapping[str, Any]:
    """Create a volume the request names but that does not exist yet, owned by the tenant.

    The daemon would create it implicitly, unlabelled, so it would belong to
    nobody the tenant can reach; creating it first, stamped, keeps the
    tenant's own volume reachable and everyone else's out.
    """
    prefix = f"/v{request.version}" if request.version else ""
    body = {"Name": name, "Labels": {OWNER_LABEL: tenant.name}}
    status, info = await fetch("POST", prefix + "/volumes/create", body)
    if status not in (200, 201) or not isinstance(info, dict):
        raise _unanswered(status, f"cannot create volume {name}")
    if info.get("Labels", {}).get(OWNER_LABEL) != tenant.name:
        # It appeared in between, created by someone else.
        raise name_in_use(ObjectRef("volume", name, "body", "Name"))
    return info


async def check_quota(
    request: CanonicalRequest,
    tenant: Tenant,
    target: Mapping[str, Any] | None,
    fetch: Fetch,
) -> None:
    """Refuse a request that would take ``tenant`` over a quota.

    Raises:
        Forbidden: over a quota (the message names it).
        UpstreamUnavailable: usage could not be measured (fail closed).
    """
    if not needs_usage(tenant, request.endpoint.id):
        return
    status, items = await fetch("GET", f"/containers/json?all=1&filters={_owned_by(tenant)}",
                                None)
    if status != 200 or not isinstance(items, list):
        raise _unanswered(status, f"cannot measure the quota of {tenant.name}")
    inspections: dict[str, Mapping[str, Any]] | None = None
    if needs_inspect(tenant):
        inspections = {}
        for item in items:
            ident = str(item.get("Id", "")) if isinstance(item, dict) else ""
            if not ident:
                continue
            status, info = await fetch("GET", f"/containers/{quote(ident, safe='')}/json", None)
            if status == 200 and isinstance(info, dict):
                inspections[ident] = info
    message = quota_check(tenant, request, usage_from_list(items, inspections), target)
    if message:
        raise Forbidden(message, reason="quota")


_OWNED_LISTS = (("volume", "/volumes"), ("network", "/networks"))


def _since(kind: str, info: Mapping[str, Any]) -> int | None:
    """When an owned object was created, for ``event_scope`` (0: ids are never reused).

    A volume's name may have been someone else's before, so its events count
    only from its creation second; None if that cannot be read (not shown).
    """
    if kind == "network":
        return 0
    created = info.get("CreatedAt")
    if not isinstance(created, str):
        return None
    try:
        return int(datetime.fromisoformat(created).timestamp())
    except ValueError:
        return None


async def owned_objects(tenant: Tenant, fetch: Fetch) -> list[tuple[tuple[str, str], int]]:
    """The tenant's volumes (by name) and networks (by id) as the daemon lists them now,
    each with the second it was created (see ``_since``).

    A tenant's event stream starts from these, so that the ``destroy`` of an
    object that existed before the stream, which can no longer be looked up,
    is still shown.  A list the daemon does not answer contributes nothing
    (those events stay hidden: fail closed).
    """
    owned: list[tuple[tuple[str, str], int]] = []
    for kind, path in _OWNED_LISTS:
        status, value = await fetch("GET", f"{path}?filters={_owned_by(tenant)}", None)
        if status != 200:
            continue
        items = value.get("Volumes") if kind == "volume" and isinstance(value, dict) else value
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, dict) or owner_of(kind, item) != tenant.name:
                continue
            ident = item.get("Name" if kind == "volume" else "Id")
            since = _since(kind, item)
            if isinstance(ident, str) and ident and since is not None:
                owned.append(((kind, ident), since))
    return owned


async def owns_object(key: tuple[str, str], tenant: Tenant, fetch: Fetch) -> int | None:
    """Since when the volume or network an event names is the tenant's, as the daemon
    says now; None if it is not (gone, unreachable, unlabelled, someone else's)."""
    kind, ident = key
    path = "/volumes/" if kind == "volume" else "/networks/"
    status, info = await fetch("GET", path + quote(ident, safe=""), None)
    if status != 200 or not isinstance(info, dict) or owner_of(kind, info) != tenant.name:
        return None
    return _since(kind, info)

"""Ownership: stamping the objects a tenant creates, scoping what it lists, and
naming every object a request touches so the I/O layer can check its owner.

Everything here is pure: functions over ``CanonicalRequest`` that return new
requests (``dataclasses.replace``) with ``body``, ``body_bytes`` and ``query``
kept consistent (bodies by ``CanonicalRequest.with_body``: the canonical
serialisation admission uses, encoding again only the top-level members a
change replaced; the objects on the changed path are copied, never changed in
place).

How the daemon resolves the names this module hands out (moby):

* containers (``daemon.GetContainer``): the full id, then the exact name
  (a leading ``/`` is optional), then a unique id prefix (truncindex); an
  ambiguous prefix is an error.  ``pin`` therefore rewrites a checked
  reference to the full id, so a name reused or a prefix that becomes
  ambiguous between the check and the action cannot redirect the request.
* exec instances: the exact id only.  An exec belongs to its container's owner.
* networks (``FindNetwork``): full id, exact name, then id prefix; pinned to
  the full id like containers.
* volumes: the exact name, which is the volume's identity; nothing to pin.
* images: id, digest or ``name:tag``.  Image references are *not* pinned:
  rewriting ``alpine:3`` to ``sha256:…`` would change what delete, tag and
  create mean (untag versus delete, the container's recorded image).

Label filters: ``filters.Args.MatchKVList`` requires *every* ``label`` term to
match, and every filter key narrows the result, so adding
``label=io.dockgate.owner=<tenant>`` to a client's filters can only narrow what
the client asked for (moby ``api/types/filters/parse.go``; events use the same
``MatchKVList`` on ``Actor.Attributes``, ``daemon/events/filter.go``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any, Literal

from dockgate.admission.jsonstrict import dumps, go_field, with_string_member
from dockgate.admission.target import escape_path
from dockgate.admission.versions import compare_versions
from dockgate.errors import BadRequest, Forbidden
from dockgate.model import CanonicalRequest, Decision, copy_along
from dockgate.policy import spelling
from dockgate.tenancy.tenants import Tenant

OWNER_LABEL = "io.dockgate.owner"
"""The label that records which tenant owns an object."""

RESERVED_PREFIX = "io.dockgate."
"""Label keys in this namespace are dockgate's; clients may not set any of them."""

Kind = Literal["container", "exec", "volume", "network", "image", "plugin",
               "service", "node", "task", "secret", "config"]
Where = Literal["path", "body", "query"]
Access = Literal["read", "write"]

BUILTIN_NETWORKS = frozenset({"", "default", "bridge", "host", "none"})
"""Network modes that name no user-defined network, compared exactly as the daemon
compares them (``NetworkMode.IsBridge`` is ``== "bridge"``): ``Bridge``, `` bridge``
and, on Linux, ``nat`` are the names of networks a tenant can create."""


def names_network(mode: str) -> bool:
    """Whether a NetworkMode value (or a network's name) names a user-defined network to
    the daemon: neither a builtin nor ``container:<ref>``, both spelled exactly."""
    return mode not in BUILTIN_NETWORKS and not mode.startswith("container:")

# -- reserved labels ------------------------------------------------------------


def _fold(key: str) -> str:
    """A label key as a human would read it: NFKC, case-folded, without
    whitespace or invisible format characters."""
    text = unicodedata.normalize("NFKC", key).casefold()
    return "".join(ch for ch in text
                   if not ch.isspace() and unicodedata.category(ch) not in ("Cf", "Cc"))


def is_reserved_label(key: str) -> bool:
    """Whether ``key`` spells (in any case, spacing or compatibility form) a dockgate label."""
    return _fold(key).startswith(RESERVED_PREFIX)


def _check_labels(labels: Any, where: str) -> Mapping[str, Any]:
    """``labels`` (an empty map for None), once no key spells a dockgate label.

    The keys are checked all at once, as one string, not one ``_fold`` each (1 µs
    a key: 20 ms for the 20000 labels of a 1 MB create, on the reactor thread)."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise BadRequest(f"{where} must be an object")
    keys: list[str] = list(labels)  # a JSON object's keys
    hit = _reserved_key(keys)
    if hit is not None:
        raise Forbidden(f"{where}: label {hit!r} is reserved for dockgate "
                        f"({OWNER_LABEL} is set from the caller's tenant)",
                        reason="reserved-label")
    return labels


_SEP = "\ue000"
"""Joins the keys checked at once: a private-use character, which NFKC and case
folding leave alone and never produce, which composes with nothing (so each key
normalises in the joined string as it does alone), and which is neither space,
control nor format (so the fold keeps it)."""


def _reserved_pattern() -> re.Pattern[str]:
    """A key's start (``_SEP``) and then ``RESERVED_PREFIX`` with any of the
    characters ``_fold`` drops (whitespace, Cc, Cf) before and between its
    letters, over keys NFKC-normalised and case-folded.  The dropped characters
    all lie in planes 0, 1 and 14 (test_tenancy_ownership checks every code
    point), so only those are scanned at import (about 30 ms), and they form a
    class of a few ranges: the search tries a match only at each key's start."""
    dropped = [c for span in (range(0x20000), range(0xE0000, 0xE1000)) for c in span
               if chr(c).isspace() or unicodedata.category(chr(c)) in ("Cf", "Cc")]
    ranges: list[list[int]] = []
    for c in dropped:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    invisible = "[" + "".join(re.escape(chr(lo)) + ("" if lo == hi else "-" + re.escape(chr(hi)))
                              for lo, hi in ranges) + "]*"
    return re.compile(re.escape(_SEP) + invisible
                      + invisible.join(re.escape(ch) for ch in RESERVED_PREFIX))


_RESERVED = _reserved_pattern()


def _reserved_key(keys: Sequence[str]) -> str | None:
    """A key of ``keys`` that spells a dockgate label, or None.

    Printable ASCII without a space folds to its ``lower()``; any other string
    is folded as ``_fold`` folds a key, but all keys at once (NFKC and case
    folding are one pass each over the joined string, and ``_RESERVED`` skips
    the characters ``_fold`` drops).  A key holding ``_SEP`` is read as several keys, so a dockgate
    label spelled after a ``_SEP`` inside a key is refused too (stricter than
    ``is_reserved_label``, on a character no label needs).
    """
    plain = "".join(keys)
    if plain.isascii() and plain.isprintable() and " " not in plain:
        sep = "\n"  # in no such key
        folded = (sep + sep.join(keys)).lower()
        at = folded.find(sep + RESERVED_PREFIX)
    else:
        sep = _SEP
        folded = unicodedata.normalize("NFKC", sep + sep.join(keys)).casefold()
        hit = _RESERVED.search(folded)
        at = -1 if hit is None else hit.start()
    if at < 0:
        return None
    segment = folded.count(sep, 0, at)  # the hit starts the segment-th piece
    for key in keys:
        segment -= key.count(sep) + 1
        if segment < 0:
            return key
    raise AssertionError("unreachable: a segment past the last key")


_IMAGE_EXPORTERS = frozenset({"image", "moby"})


def writes_image(exporters: Iterable[str]) -> bool:
    """Whether a BuildKit solve's exporters write an image on the daemon."""
    return not _IMAGE_EXPORTERS.isdisjoint(exporters)


OWNER_ATTR = f"label:{OWNER_LABEL}"
"""The frontend option dockgate sets on a tenant's BuildKit solve that writes an image:
the dockerfile frontend applies ``label:<key>=<value>`` options to the image config
after the Dockerfile's ``LABEL`` instructions, so the image is the tenant's whatever
the Dockerfile says."""


def buildkit_label_refusal(attrs: Mapping[str, str], tenant: str) -> str | None:
    """Why a tenant's BuildKit solve may not label its image as it asks, or None.

    ``label:io.dockgate.owner`` itself is not refused: dockgate sets it to the
    tenant (``OWNER_ATTR``) on a solve that writes an image, over whatever the
    client sent, as it does for ``docker build``'s ``labels``.  Any other dockgate
    label, in any spelling, is refused.
    """
    for key in attrs:
        if key.startswith("label:") and key != OWNER_ATTR and \
                is_reserved_label(key[len("label:"):]):
            return (f"dockgate: label {key[len('label:'):]!r} is reserved for dockgate "
                    f"({OWNER_LABEL} is set from the caller's tenant: {tenant})")
    return None


_IMAGE_CONFIG_KEY = "containerimage.config"


def returned_config_refusal(metadata: Mapping[str, bytes], tenant: str,
                            image: bool = False) -> str | None:
    """Why a tenant's client-side build may not return this result, or None.

    The exporter writes the image config the client returns (``LLBBridge/Return``
    metadata, ``containerimage.config`` and its per-platform keys), labels and
    all: a dockgate label other than the tenant's own owner label would forge
    the image's ownership.  When the build writes an image (``image``), each
    config must carry the owner label (dockgate set it on the frontend's solve;
    a client that built its config otherwise would make an image no tenant
    owns), and a result without any config is refused (the exporter would write an
    image with no labels at all).  A config dockgate cannot read is refused.
    """
    if image and not any(key.startswith(_IMAGE_CONFIG_KEY) for key in metadata):
        return (f"dockgate: a tenant's build that writes an image must return its image "
                f"config (it carries {OWNER_LABEL}); build the image with a frontend")
    for key, raw in metadata.items():
        if not key.startswith(_IMAGE_CONFIG_KEY):
            continue
        try:
            doc = json.loads(raw)
        except ValueError:
            return f"dockgate: the returned image config {key!r} is not JSON dockgate reads"
        labels = go_field(go_field(doc, "config"), "labels") or {}
        if not isinstance(labels, Mapping):
            return f"dockgate: the returned image config {key!r} has labels dockgate cannot read"
        for name, value in labels.items():
            if is_reserved_label(str(name)) and not (name == OWNER_LABEL and value == tenant):
                return (f"dockgate: label {name!r} of the returned image config is reserved "
                        f"for dockgate ({OWNER_LABEL} is the tenant's: {tenant})")
        if image and labels.get(OWNER_LABEL) != tenant:
            return (f"dockgate: the image config {key!r} a tenant's build returns lacks "
                    f"{OWNER_LABEL}={tenant} (dockgate sets it through the frontend's "
                    f"{OWNER_ATTR} option; build the image with a frontend that applies it)")
    return None


_CONTINUATIONS = ("\\", "`")
"""The escape characters a Dockerfile line can end with to continue on the next line
(``\\``, or `````` after an ``# escape=`` directive)."""


def _check_changes(changes: Iterable[str], where: str) -> None:
    """Refuse Dockerfile ``LABEL`` instructions (also under ``ONBUILD``) in commit/import
    ``changes``: with ``ENV`` substitution and quoting their keys cannot be read reliably.

    The daemon joins the changes with newlines and parses them as one Dockerfile
    (moby ``BuildFromConfig``), so a change that holds a line break, or ends with an
    escape character and so continues into the next change (``LA\\`` then ``BEL
    io.dockgate.owner=x``; or into the ``LABEL`` dockgate appends to an import, which
    would then be a value of the client's ``ENV`` and the image nobody's), is refused
    too: each change must be exactly one instruction for its first word to tell which.
    """
    for change in changes:
        if "\n" in change or "\r" in change or change.rstrip().endswith(_CONTINUATIONS):
            raise Forbidden(f"{where}: a change must be one line, without a line break or a "
                            "trailing escape character (\\ or `): the daemon joins the "
                            "changes into one Dockerfile", reason="reserved-label")
        words = change.replace("\\", " ").split()
        lower = [w.lower() for w in words[:2]]
        if lower[:1] == ["label"] or lower == ["onbuild", "label"]:
            raise Forbidden(f"{where}: LABEL instructions are not allowed in changes "
                            "(labels are set by dockgate)", reason="reserved-label")


def _check_mount_labels(holder: Any, where: str) -> None:
    """Refuse dockgate labels in the ``VolumeOptions.Labels`` of volume mounts.

    The daemon creates the volume of a mount that names none (an anonymous volume;
    a named one that is missing dockgate creates for the tenant first) with those
    labels: ``io.dockgate.owner=<another tenant>`` would hand that tenant a volume the
    creator's container keeps mounted, to read what the other tenant puts there.
    """
    mounts = holder.get("Mounts") if isinstance(holder, Mapping) else None
    for i, mount in enumerate(mounts if isinstance(mounts, list) else ()):
        options = mount.get("VolumeOptions") if isinstance(mount, Mapping) else None
        if isinstance(options, Mapping):
            _check_labels(options.get("Labels"), f"{where}[{i}].VolumeOptions.Labels")


# -- rewriting helpers ------------------------------------------------------------


def _with_body(request: CanonicalRequest, body: Any,
               known: Mapping[str, bytes] | None = None) -> CanonicalRequest:
    """``request.with_body(body, known)`` (only the members ``body`` replaced are encoded
    again), with a JSON content type when the request had none (a bodiless volume
    create that gets its owner label)."""
    headers = request.headers
    if not any(name == "content-type" for name, _ in headers):
        headers = (*headers, ("content-type", "application/json"))
    return replace(request.with_body(body, known), headers=headers)


def with_query(request: CanonicalRequest, key: str, values: list[str]) -> CanonicalRequest:
    """Replace every ``key`` pair with ``values``, keeping the query sorted by key."""
    kept = [(k, v) for k, v in request.query if k != key]
    kept.extend((key, v) for v in values)
    kept.sort(key=lambda kv: kv[0])  # stable: repeated values keep their order
    return replace(request, query=tuple(kept))


def query_values(request: CanonicalRequest, key: str) -> list[str]:
    """Every value of ``key`` in the request's query, in order."""
    return [v for k, v in request.query if k == key]


# -- stamp ----------------------------------------------------------------------

_LABELLED_BODIES = frozenset({
    "container.create", "volume.create", "network.create", "secret.create", "config.create",
    "image.commit",
})


def _member(value: Any, key: str) -> Any:
    """``value[key]`` of an object, else None."""
    return value.get(key) if isinstance(value, Mapping) else None


def _owner_labels(request: CanonicalRequest, body: dict[str, Any], tenant: Tenant
                  ) -> dict[str, bytes] | None:
    """Set ``body["Labels"]`` to the client's labels and the owner label (refusing a
    dockgate label of the client's); returns the new labels' encoding when it could
    be made from the request's bytes (``jsonstrict.with_string_member``), for
    ``with_body``.  A 1 MB body of labels is then not encoded again."""
    labels = body.get("Labels")
    checked = _check_labels(labels, "Labels")
    body["Labels"] = {**checked, OWNER_LABEL: tenant.name}
    encoded = request.member_bytes("Labels")
    if encoded is None or not isinstance(labels, dict):
        return None
    spliced = with_string_member(encoded, labels, OWNER_LABEL, tenant.name)
    return {"Labels": spliced} if spliced is not None else None


def stamp(request: CanonicalRequest, tenant: Tenant) -> CanonicalRequest:
    """Set the owner label on the object the request creates; refuse client-set dockgate labels.

    Covers container, volume, network, secret and config create (``Labels``),
    service create (``Labels`` and the task ``ContainerSpec.Labels``), image
    build (the ``labels`` query parameter, which overrides Dockerfile
    ``LABEL``s; and ``nocache=1`` while build caches are private:
    ``build_cache_sets``), commit (body ``Labels``, which win over the container's; no
    ``LABEL`` in ``changes``) and import (``image.create`` with ``fromSrc``:
    a ``LABEL`` change is appended).  A container's (or service's) volume mounts may
    not carry dockgate labels for the volumes they create.  Other requests are
    returned unchanged.

    Raises:
        Forbidden: the client set a label in the ``io.dockgate.`` namespace.
    """
    ep = request.endpoint.id
    owner = {OWNER_LABEL: tenant.name}
    if ep in _LABELLED_BODIES or ep == "service.create":
        if request.body is not None and not isinstance(request.body, dict):
            raise BadRequest(f"{ep} body must be a JSON object")
        # Members are replaced, never changed in place (``CanonicalRequest.with_body``).
        body = dict(request.body) if request.body is not None else {}
        known = _owner_labels(request, body, tenant)
        if ep == "service.create":
            template = _member(body, "TaskTemplate")
            spec = _member(template, "ContainerSpec")
            if isinstance(template, dict) and isinstance(spec, dict):
                body, spec = copy_along(body, ("TaskTemplate", "ContainerSpec"))
                spec["Labels"] = {
                    **_check_labels(spec.get("Labels"), "TaskTemplate.ContainerSpec.Labels"),
                    **owner,
                }
        if ep == "image.commit":
            _check_changes(query_values(request, "changes"), "changes")
        if ep == "container.create":
            _check_mount_labels(body.get("HostConfig"), "HostConfig.Mounts")
        if ep == "service.create":
            _check_mount_labels(_member(_member(body, "TaskTemplate"), "ContainerSpec"),
                                "TaskTemplate.ContainerSpec.Mounts")
        if ep == "network.create" and request.version is not None \
                and compare_versions(request.version, "1.44") < 0:
            # Before API 1.44 the daemon makes a second network of a taken name
            # unless asked not to; a tenant gets the daemon's "already exists".
            body["CheckDuplicate"] = True
        return _with_body(request, body, known)
    if ep == "image.build":
        raw = query_values(request, "labels")
        labels = json.loads(raw[0]) if raw and raw[0] else {}
        labels = {**_check_labels(labels, "labels"), **owner}
        request = with_query(request, "labels", [dumps(labels).decode("ascii")])
        if tenant.private_build_cache:
            request = with_query(request, "nocache", ["1"])
        return request
    if ep == "image.create":
        changes = query_values(request, "changes")
        _check_changes(changes, "changes")
        if any(k == "fromSrc" for k, _ in request.query):
            return with_query(request, "changes", [*changes, f"LABEL {OWNER_LABEL}={tenant.name}"])
    return request


PULLED_BASES = ("a tenant's build may not pull its base images (--pull): the ONBUILD "
                "triggers of an image pulled during the build cannot be checked; pull them "
                "first (docker pull) and build without --pull")
"""Why a tenant's build that pulls its bases is refused (either builder): a trigger is an
instruction of the build (``COPY --from`` another tenant's image), kept in the base's
config, which dockgate reads from the daemon before the build."""


def build_cache_sets(request: CanonicalRequest, tenant: Tenant | None) -> tuple[str, ...]:
    """What ``stamp`` set in a tenant's classic build to keep it from the shared build
    cache, one sentence each for the audit record's ``set`` (empty for anything else).

    The classic builder finds a step's cache among every image on the host (and the
    ``cachefrom`` images); with ``nocache`` it probes none (moby
    ``builder/dockerfile/imageprobe.go``: a no-op prober), so a tenant's steps all
    run, and none comes out with another tenant's result.
    """
    if tenant is None or not tenant.private_build_cache or request.endpoint.id != "image.build":
        return ()
    return ("tenant: nocache=1 (build caches are private to each tenant: build_cache)",)


def cache_mount_refusal(tenant: Tenant, mounts: Iterable[Sequence[str]]) -> str | None:
    """Why a tenant's build may not mount a cache directory (``(where, id)`` pairs), or None.

    BuildKit keeps a cache mount's directory by its id for every build on the daemon
    (``RUN --mount=type=cache,id=X``: whoever names X gets what the last build left
    there), whatever ``no-cache`` says; so while build caches are private to each
    tenant, a tenant's build mounts none.
    """
    if not tenant.private_build_cache:
        return None
    for where, cache_id in mounts:
        return (f"{where}: the cache {cache_id!r} is shared with every build on the daemon, "
                "and build caches are private to each tenant here (build_cache: private "
                "in the tenants file)")
    return None


def with_tenant_sets(decision: Decision, request: CanonicalRequest, tenant: Tenant | None
                     ) -> Decision:
    """``decision`` with what tenancy set in ``request`` added to its ``sets`` (audited)."""
    sets = build_cache_sets(request, tenant)
    return replace(decision, sets=decision.sets + sets) if sets else decision


# -- scope_list -----------------------------------------------------------------

SCOPED_ENDPOINTS = frozenset({
    "container.list", "volume.list", "network.list", "image.list",
    "container.prune", "volume.prune", "network.prune", "image.prune",
})
"""Endpoints whose ``filters`` get the tenant's owner label (prunes too: they
accept label filters, and unscoped they would remove other tenants' objects).

Not ``/events``: volume and network events carry no labels, so a label filter
would make the daemon drop a tenant's own; dockgate filters every event line
of a tenant's stream itself instead (``event_scope``)."""

ADMIN_ONLY = frozenset({
    "system.df", "build.prune", "image.load",
})
"""Endpoints that expose or change every tenant's objects and cannot be scoped."""

_ADMIN_ONLY_PREFIXES = ("swarm.", "node.", "service.", "task.", "secret.", "config.", "plugin.")


def admin_only(endpoint_id: str) -> bool:
    """Whether only admin tenants may call ``endpoint_id`` (unscopable: swarm, plugins, df...)."""
    return endpoint_id in ADMIN_ONLY or endpoint_id.startswith(_ADMIN_ONLY_PREFIXES)


def scope_list(request: CanonicalRequest, tenant: Tenant) -> CanonicalRequest:
    """Add ``label=io.dockgate.owner=<tenant>`` to the ``filters`` of a list or
    prune request (merged with the client's; the daemon ANDs label terms).
    Admins and other endpoints are returned unchanged.

    Raises:
        BadRequest: the client's ``filters`` is not a canonical filters object.
    """
    if tenant.admin or request.endpoint.id not in SCOPED_ENDPOINTS:
        return request
    raw = query_values(request, "filters")
    filters: dict[str, dict[str, bool]] = {}
    if raw and raw[0]:
        try:
            decoded = json.loads(raw[0])
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict) or not all(
            isinstance(v, dict) and all(isinstance(b, bool) for b in v.values())
            for v in decoded.values()
        ):
            raise BadRequest("query parameter 'filters' cannot be combined with the tenant filter")
        filters = decoded
    labels = dict(filters.get("label", {}))
    labels[f"{OWNER_LABEL}={tenant.name}"] = True
    filters["label"] = labels
    return with_query(request, "filters", [dumps(filters).decode("ascii")])


# -- object references ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One object a request names.

    Attributes:
        kind: ``container``, ``exec``, ``volume``, ``network``, ``image``,
            ``plugin``, or a swarm kind (``service``, ``node``, ...).
        ref: the reference as the client wrote it (name, id or prefix).
        where: ``path``, ``body`` or ``query``.
        key: where exactly, for messages: the path parameter name, a dotted
            body path (``HostConfig.VolumesFrom[0]``) or the query key.
        access: ``read`` or ``write``; only images distinguish them (unowned
            images, the shared pull cache, are readable by every tenant).
        path: the machine form of ``key`` used by ``pin``.
    """

    kind: Kind
    ref: str
    where: Where
    key: str
    access: Access = "write"
    path: tuple[str | int, ...] = ()


REFERENCES: Mapping[str, str] = {
    # endpoint field (walker syntax: ``?q`` a query key, ``[]`` list items, ``{}``
    # mapping values, ``{} key`` the keys) → what it names and how it is checked.
    "container.create Image": "image (read)",
    "container.create HostConfig.VolumesFrom": "container",
    "container.create HostConfig.NetworkMode": "container (container:X) or network",
    "container.create HostConfig.PidMode": "container (container:X)",
    "container.create HostConfig.IpcMode": "container (container:X)",
    "container.create HostConfig.Links": "container",
    "container.create HostConfig.Binds": "volume (a named source)",
    "container.create HostConfig.Mounts[].Source":
        "volume (Type volume or cluster), image (Type image, API 1.48+, read)",
    "container.create NetworkingConfig.EndpointsConfig{} key": "network",
    "container.create NetworkingConfig.EndpointsConfig{}.Links": "container",
    "container.create NetworkingConfig.EndpointsConfig{}.NetworkID": "network",
    "network.connect Container": "container",
    "network.connect EndpointConfig.Links": "container",
    "network.connect EndpointConfig.NetworkID": "network",
    "network.disconnect Container": "container",
    "network.create ConfigFrom.Network": "network (read)",
    "volume.create ClusterVolumeSpec.AccessMode.Secrets[].Secret": "secret (admins only)",
    "volume.update Spec.AccessMode.Secrets[].Secret": "secret (admins only)",
    "image.commit ?container": "container",
    "image.commit ?repo": "image name written (with ?tag)",
    "image.commit ?tag": "image name written (with ?repo)",
    "image.tag ?repo": "image name written (with ?tag)",
    "image.tag ?tag": "image name written (with ?repo)",
    "image.create ?fromImage": "image name a pull writes (with ?tag; shared or own)",
    "image.create ?repo": "image name an import writes (with ?tag)",
    "image.create ?tag": "part of ?fromImage or ?repo",
    "image.push ?tag": "image (read): the path's repository with this tag",
    "image.get_all ?names": "image (read), each",
    "image.build ?t": "image name written, each",
    "image.build ?cachefrom": "image (read), each",
    "image.build ?networkmode": "container (container:X): build-context references",
}
"""Every field of a request body or query that names another object, as the
schemas of every routed API version have them (tests/unit/test_tenancy_references.py
walks the schemas and requires each candidate to be here or in
``NOT_REFERENCES``).  Path parameters are references by their first path
segment (``_PATH_KINDS``); endpoints that are admin-only as a whole
(``admin_only``) are not listed."""

NOT_REFERENCES: Mapping[str, str] = {
    "distribution.inspect {name}": "a registry's image, asked of the registry, not a local one",
    "container.create ?name": "the new container's name (a taken one: the daemon's 409)",
    "container.rename ?name": "the new name (a taken one: the daemon's 409)",
    "container.restart ?t": "a timeout",
    "container.stop ?t": "a timeout",
    "container.create HostConfig.CgroupnsMode": "host or private, names nothing",
    "container.create HostConfig.UTSMode": "host only, names nothing",
    "container.create HostConfig.UsernsMode": "host only, names nothing",
    "container.create HostConfig.ContainerIDFile": "read by the client only",
    "container.create HostConfig.Devices[].PathInContainer": "a path",
    "container.update Devices[].PathInContainer": "a path",
    "container.create HostConfig.Mounts[].Target": "a path in the container",
    "container.create HostConfig.Mounts[].ImageOptions": "options of an image mount",
    "container.create HostConfig.Mounts[].TmpfsOptions.Mode": "a file mode",
    "container.create HostConfig.Mounts[].VolumeOptions": "options of a volume mount",
    "container.create HostConfig.Mounts[].VolumeOptions.DriverConfig.Name":
        "a volume driver (a plugin: the policy's business)",
    "container.create HostConfig.VolumeDriver": "a volume driver (the policy's business)",
    "container.create HostConfig.RestartPolicy.Name": "a policy name",
    "container.update RestartPolicy.Name": "a policy name",
    "container.create HostConfig.Ulimits[].Name": "a limit name",
    "container.update Ulimits[].Name": "a limit name",
    "container.create NetworkDisabled": "a flag",
    "container.create NetworkingConfig": "holds EndpointsConfig",
    "container.create Volumes": "anonymous volumes (created for the container, stamped)",
    "container.create Volumes{} key": "the paths of anonymous volumes",
    "container.create NetworkingConfig.EndpointsConfig": "holds the endpoints (keyed by network)",
    "image.commit Volumes{} key": "the paths of the image config's anonymous volumes",
    "image.commit Image": "the config's informational Image field (the daemon ignores it)",
    "image.commit NetworkDisabled": "a flag",
    "image.commit Volumes": "anonymous volumes of the image config",
    "exec.create Container": "ignored by the daemon (the path names the container)",
    "image.build ?remote": "a URL or Git address: the build-context references",
    "image.build ?target": "a build stage",
    "image.create ?fromSrc": "a URL or '-' (the body)",
    "network.create Name": "the new network's name (a taken one: the daemon's 409)",
    "volume.create Name": "the new volume's name (a taken one: refused, see scoping)",
    "volume.create ClusterVolumeSpec": "holds AccessMode",
    "volume.create ClusterVolumeSpec.AccessMode": "holds Secrets",
    "volume.create ClusterVolumeSpec.AccessMode.MountVolume": "mount options",
    "volume.create ClusterVolumeSpec.AccessMode.Secrets": "holds Secret",
    "volume.update Spec.AccessMode": "holds Secrets",
    "volume.update Spec.AccessMode.MountVolume": "mount options",
    "volume.update Spec.AccessMode.Secrets": "holds Secret",
}
"""Fields whose names look like references but name no other existing object."""


_PATH_KINDS: dict[str, Kind] = {
    "containers": "container", "exec": "exec", "volumes": "volume", "networks": "network",
    "images": "image", "plugins": "plugin", "services": "service", "nodes": "node",
    "tasks": "task", "secrets": "secret", "configs": "config",
}

_IMAGE_READS = frozenset({"image.inspect", "image.history", "image.get", "image.push",
                          "image.tag"})


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + p)
    return out


def _body_ref(refs: list[ObjectRef], kind: Kind, ref: str, path: tuple[str | int, ...],
              access: Access = "write") -> None:
    if ref:
        refs.append(ObjectRef(kind, ref, "body", _dotted(path), access, path))


_MOUNTED_KINDS: dict[str, Kind] = {"volume": "volume", "cluster": "volume", "image": "image"}
"""``HostConfig.Mounts`` types whose ``Source`` names an object."""

IMAGE_MOUNTS_SINCE = "1.48"
"""The first API version whose ``Mounts`` may be of ``Type: image``: below it the
daemon refuses the mount (on any engine), so the source names nothing."""


def _container_mode(value: Any) -> str | None:
    """The container named by a ``container:<ref>`` mode (prefix read case-insensitively)."""
    if not isinstance(value, str):
        return None
    head, sep, rest = value.partition(":")
    return rest if sep and head.strip().lower() == "container" else None


def _link_name(link: str) -> str:
    return link.split(":", 1)[0]


def _container_create_refs(body: Mapping[str, Any], refs: list[ObjectRef],
                           version: str | None) -> None:
    image = body.get("Image")
    if isinstance(image, str):
        _body_ref(refs, "image", image, ("Image",), "read")
    host = body.get("HostConfig")
    if isinstance(host, Mapping):
        for i, spec in enumerate(host.get("VolumesFrom") or ()):
            if isinstance(spec, str):
                _body_ref(refs, "container", spec.split(":", 1)[0],
                          ("HostConfig", "VolumesFrom", i))
        for field in ("NetworkMode", "PidMode", "IpcMode"):
            value = host.get(field)
            target = _container_mode(value)
            if target is not None:
                _body_ref(refs, "container", target, ("HostConfig", field))
            if field == "NetworkMode" and isinstance(value, str) and names_network(value):
                # Also beside a container ref read case-insensitively (``Container:X``,
                # a network's name to the daemon).
                _body_ref(refs, "network", value, ("HostConfig", field))
        for i, link in enumerate(host.get("Links") or ()):
            if isinstance(link, str):
                _body_ref(refs, "container", _link_name(link), ("HostConfig", "Links", i))
        for i, mount in enumerate(host.get("Mounts") or ()):
            mount_type = str(mount.get("Type", "")).lower() if isinstance(mount, Mapping) else ""
            source = mount.get("Source") if isinstance(mount, Mapping) else None
            if mount_type == "image" and version is not None \
                    and compare_versions(version, IMAGE_MOUNTS_SINCE) < 0:
                continue  # the daemon refuses the mount type itself at this version
            if isinstance(source, str) and mount_type in _MOUNTED_KINDS:
                _body_ref(refs, _MOUNTED_KINDS[mount_type], source,
                          ("HostConfig", "Mounts", i, "Source"),
                          "read" if mount_type == "image" else "write")
        for i, bind in enumerate(host.get("Binds") or ()):
            if not isinstance(bind, str) or bind.startswith("/"):
                # A bind from a host path names no volume: parse_bind would say so
                # (or refuse it), at 2.7 µs a bind: 53 ms for 20000 of them.
                continue
            try:
                parsed = spelling.parse_bind(bind)
            except ValueError:
                continue  # the daemon refuses it; nothing is named
            if parsed.source and not parsed.is_host_path:
                _body_ref(refs, "volume", parsed.source, ("HostConfig", "Binds", i))
    net = body.get("NetworkingConfig")
    endpoints = net.get("EndpointsConfig") if isinstance(net, Mapping) else None
    if isinstance(endpoints, Mapping):
        _endpoints_refs(endpoints, ("NetworkingConfig", "EndpointsConfig"), refs)


def _endpoint_settings_refs(settings: Mapping[str, Any], base: tuple[str | int, ...],
                            refs: list[ObjectRef]) -> None:
    """The containers an endpoint's ``Links`` name and the network its ``NetworkID`` names."""
    for i, link in enumerate(settings.get("Links") or ()):
        if isinstance(link, str):
            _body_ref(refs, "container", _link_name(link), (*base, "Links", i))
    network_id = settings.get("NetworkID")
    if isinstance(network_id, str):
        _body_ref(refs, "network", network_id, (*base, "NetworkID"))


def _cluster_secret_refs(body: Mapping[str, Any], refs: list[ObjectRef]) -> None:
    """Secrets a cluster volume's access mode names (``volume create``/``update``)."""
    spec = body.get("ClusterVolumeSpec") or body.get("Spec")
    mode = spec.get("AccessMode") if isinstance(spec, Mapping) else None
    secrets = mode.get("Secrets") if isinstance(mode, Mapping) else None
    base = ("ClusterVolumeSpec" if "ClusterVolumeSpec" in body else "Spec", "AccessMode",
            "Secrets")
    for i, item in enumerate(secrets if isinstance(secrets, list) else ()):
        secret = item.get("Secret") if isinstance(item, Mapping) else None
        if isinstance(secret, str):
            _body_ref(refs, "secret", secret, (*base, i, "Secret"))


def _endpoints_refs(endpoints: Mapping[str, Any], base: tuple[str | int, ...],
                    refs: list[ObjectRef]) -> None:
    # The network (a mapping key) comes after the references inside its value,
    # so that pinning in order renames the key last.
    for name, settings in endpoints.items():
        if isinstance(settings, Mapping):
            _endpoint_settings_refs(settings, (*base, name), refs)
        if name not in BUILTIN_NETWORKS:
            refs.append(ObjectRef("network", name, "body", _dotted((*base, name)) + " (key)",
                                  "write", (*base, name, "")))


def _image_name(repo: str, tag: str) -> str:
    return f"{repo}:{tag}" if tag else repo


def object_refs(request: CanonicalRequest) -> list[ObjectRef]:
    """Every object ``request`` names, in a stable order (path, body, query).

    The I/O layer checks each one (``inspect_target``, ``owner_of``,
    ``may_access``) and pins it (``pin``) before deciding.  Pin in the order
    returned: a network named by an ``EndpointsConfig`` key comes after the
    references inside that key's value, since pinning it renames the key.
    """
    ep = request.endpoint.id
    refs: list[ObjectRef] = []
    first = request.endpoint.template.split("/", 2)[1]
    kind = _PATH_KINDS.get(first)
    for name, value in request.params.items():
        if kind is None:
            break
        if ep == "exec.create":
            refs.append(ObjectRef("container", value, "path", name, "write", (name,)))
        elif ep == "image.push" and query_values(request, "tag"):
            # The path names a repository; the tag says which of its images is pushed.
            tag = query_values(request, "tag")[0]
            refs.append(ObjectRef("image", _image_name(value, tag), "path", name, "read",
                                  (name,)))
        else:
            access: Access = "read" if ep in _IMAGE_READS else "write"
            refs.append(ObjectRef(kind, value, "path", name, access, (name,)))
    body = request.body if isinstance(request.body, Mapping) else None
    if body is not None:
        if ep == "container.create":
            _container_create_refs(body, refs, request.version)
        elif ep in ("network.connect", "network.disconnect"):
            container = body.get("Container")
            if isinstance(container, str):
                _body_ref(refs, "container", container, ("Container",))
            cfg = body.get("EndpointConfig")
            if isinstance(cfg, Mapping):
                _endpoint_settings_refs(cfg, ("EndpointConfig",), refs)
        elif ep == "network.create":
            source = body.get("ConfigFrom")
            network = source.get("Network") if isinstance(source, Mapping) else None
            if isinstance(network, str):
                _body_ref(refs, "network", network, ("ConfigFrom", "Network"), "read")
        elif ep in ("volume.create", "volume.update"):
            _cluster_secret_refs(body, refs)
    q = dict(request.query)
    if ep == "image.commit":
        if q.get("container"):
            refs.append(ObjectRef("container", q["container"], "query", "container", "write",
                                  ("container",)))
        if q.get("repo"):
            refs.append(ObjectRef("image", _image_name(q["repo"], q.get("tag", "")), "query",
                                  "repo", "write", ("repo",)))
    elif ep == "image.tag" and q.get("repo"):
        refs.append(ObjectRef("image", _image_name(q["repo"], q.get("tag", "")), "query",
                              "repo", "write", ("repo",)))
    elif ep == "image.get_all":
        for i, name in enumerate(query_values(request, "names")):
            refs.append(ObjectRef("image", name, "query", f"names[{i}]", "read", ("names", i)))
    elif ep == "image.create":
        # A pull writes its name: it may replace a shared image's name, never
        # another tenant's (read access: unowned is fine, foreign is not).
        source = q.get("fromImage")
        if source:
            tag = q.get("tag", "")
            name = source if not tag or "@" in source else _image_name(source, tag)
            refs.append(ObjectRef("image", name, "query", "fromImage", "read", ("fromImage",)))
        elif q.get("repo"):
            refs.append(ObjectRef("image", _image_name(q["repo"], q.get("tag", "")), "query",
                                  "repo", "write", ("repo",)))
    elif ep == "image.build":
        for i, tag in enumerate(query_values(request, "t")):
            refs.append(ObjectRef("image", tag, "query", f"t[{i}]", "write", ("t", i)))
        for raw in query_values(request, "cachefrom"):
            names = json.loads(raw) if raw else []
            for i, name in enumerate(names if isinstance(names, list) else ()):
                if isinstance(name, str):
                    refs.append(ObjectRef("image", name, "query", f"cachefrom[{i}]", "read",
                                          ("cachefrom", i)))
    return refs


# -- inspecting -----------------------------------------------------------------

_INSPECT: dict[str, str] = {
    "container": "/containers/{}/json", "exec": "/exec/{}/json", "volume": "/volumes/{}",
    "network": "/networks/{}", "image": "/images/{}/json", "plugin": "/plugins/{}/json",
    "service": "/services/{}", "node": "/nodes/{}", "task": "/tasks/{}",
    "secret": "/secrets/{}", "config": "/configs/{}",
}

_SLASHED = frozenset({"image", "plugin"})


def inspect_target(ref: ObjectRef, version: str | None = None) -> str:
    """The request target that inspects ``ref`` (``GET``), with ``/vX.Y`` when given.

    Raises:
        BadRequest: a reference that cannot name such an object (empty, or a
            ``/`` in a container, volume or network name), so it can never
            make the inspection hit another endpoint.
    """
    name = ref.ref
    if ref.kind == "container" and name.startswith("/"):
        name = name[1:]  # the daemon reads "/web" and "web" alike
    bad = not name or name in (".", "..") or any(ord(c) < 0x20 for c in name)
    if ref.kind not in _SLASHED and "/" in name:
        bad = True
    if ref.kind in _SLASHED and any(p in ("", ".", "..") for p in name.split("/")):
        bad = True
    if bad:
        raise BadRequest(f"{ref.key}: {ref.ref!r} is not a valid {ref.kind} reference")
    prefix = f"/v{version}" if version else ""
    return prefix + escape_path(_INSPECT[ref.kind].format(name))


def _labels_of(kind: str, data: Mapping[str, Any]) -> Any:
    if kind in ("container", "image"):
        return (data.get("Config") or {}).get("Labels")
    if kind in ("volume", "network"):
        return data.get("Labels")
    if kind in ("service", "node", "secret", "config"):
        return (data.get("Spec") or {}).get("Labels")
    return None


def owner_of(kind: str, inspect_json: Mapping[str, Any]) -> str | None:
    """The owner label of an inspected object, or None when it has none.

    Exec instances have no labels: check their container (``exec_container``).
    """
    labels = _labels_of(kind, inspect_json)
    if not isinstance(labels, Mapping):
        return None
    owner = labels.get(OWNER_LABEL)
    return owner if isinstance(owner, str) else None


def full_id(kind: str, inspect_json: Mapping[str, Any]) -> str:
    """The identity the daemon resolves without ambiguity (full id; a volume's name).

    Raises:
        ValueError: the inspection carries no id.
    """
    if kind == "volume":
        value = inspect_json.get("Name")
    elif kind in ("exec", "service", "node", "task", "secret", "config"):
        value = inspect_json.get("ID")
    else:
        value = inspect_json.get("Id")
    if not isinstance(value, str) or not value:
        raise ValueError(f"{kind} inspection has no id")
    return value


def exec_container(inspect_json: Mapping[str, Any]) -> ObjectRef:
    """The container an exec instance belongs to, as a reference to check next."""
    cid = inspect_json.get("ContainerID")
    if not isinstance(cid, str) or not cid:
        raise ValueError("exec inspection has no ContainerID")
    return ObjectRef("container", cid, "path", "id (exec's container)", "write")


def may_access(tenant: Tenant, owner: str | None, ref: ObjectRef | None = None,
               shared: bool = True) -> bool:
    """Whether ``tenant`` may act on an object owned by ``owner``.

    Admins may act on everything; others only on their own objects.  An
    unowned object (None) is for admins only, except that any tenant may
    *read* an unowned image that is ``shared`` (pulled images are the host's
    shared cache, see ``image_shared``); pass ``ref`` to get that exception.
    """
    if tenant.admin or owner == tenant.name:
        return True
    return owner is None and ref is not None and ref.kind == "image" \
        and ref.access == "read" and shared


def image_shared(tenant: Tenant, inspect_json: Mapping[str, Any]) -> bool:
    """Whether an unowned image is shared with ``tenant`` (the tenants file's
    ``shared_images`` patterns match one of its names; all are without patterns)."""
    if tenant.shared_images is None:
        return True
    tags = inspect_json.get("RepoTags")
    return any(isinstance(tag, str) and fnmatchcase(tag, pattern)
               for tag in (tags if isinstance(tags, list) else ())
               for pattern in tenant.shared_images)


# -- pin ------------------------------------------------------------------------

_PINNED = frozenset({"container", "exec", "network"})


def _render_path(request: CanonicalRequest, params: Mapping[str, str]) -> str:
    path = request.endpoint.template
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    return escape_path(path)


def pin(request: CanonicalRequest, ref: ObjectRef, full: str) -> CanonicalRequest:
    """Rewrite ``request`` so the object ``ref`` names is named by ``full`` (its full id).

    Containers, exec instances and networks are pinned; volume names are
    already identities, and image references are kept as written (see the
    module docstring), so those come back unchanged.

    Raises:
        ValueError: ``ref`` is not one of ``object_refs(request)``.
    """
    if ref.kind not in _PINNED:
        return request
    return substitute(request, ref, full)


_NETWORK_ID = re.compile(r"[0-9a-f]{64}")


def bind_network_ids(request: CanonicalRequest) -> CanonicalRequest:
    """A container create whose networks were pinned to their full ids (``pin``), with
    each endpoint's ``NetworkID`` set to that id (an endpoint added for a ``NetworkMode``
    network that has none), so that every start connects the network that was checked.

    The daemon keeps a create's endpoints under the network's *name*, with the
    client's ``NetworkID`` (empty unless given), and a start connects each by its
    ``NetworkID`` when set, else by that name (``FindNetwork``: id, exact name, then
    id prefix).  So a checked network removed before a start left its name to be
    read as a prefix of another network's id: a tenant's container on its own
    network named like the start of another tenant's network id joined that
    network at start (20.10), and a start raced with the removal joined, under
    baseline, a network the policy refuses (both engines).  Other requests are
    returned unchanged.
    """
    body = request.body
    if request.endpoint.id != "container.create" or not isinstance(body, dict):
        return request
    host = body.get("HostConfig")
    mode = host.get("NetworkMode") if isinstance(host, Mapping) else None
    net = body.get("NetworkingConfig")
    net = net if isinstance(net, Mapping) else {}
    endpoints = net.get("EndpointsConfig")
    endpoints = endpoints if isinstance(endpoints, Mapping) else {}
    bound = dict(endpoints)
    for key, settings in endpoints.items():
        if _NETWORK_ID.fullmatch(key) and (settings is None or isinstance(settings, Mapping)) \
                and not (settings or {}).get("NetworkID"):
            bound[key] = {**(settings or {}), "NetworkID": key}
    if isinstance(mode, str) and _NETWORK_ID.fullmatch(mode) and mode not in bound:
        bound[mode] = {"NetworkID": mode}
    if bound == endpoints:
        return request
    return _with_body(request, {**body, "NetworkingConfig": {**net, "EndpointsConfig": bound}})


def substitute(request: CanonicalRequest, ref: ObjectRef, value: str) -> CanonicalRequest:
    """``request`` with the reference ``ref`` replaced by ``value``, for any kind.

    ``pin`` uses it for full ids; ``scoping`` for a stand-in that names
    nothing (``missing.stand_in``), to learn the daemon's answer for a
    missing object.

    Raises:
        ValueError: ``ref`` is not one of ``object_refs(request)``.
    """
    full = value
    if ref.where == "path":
        name = str(ref.path[0]) if ref.path else ref.key
        if name not in request.params:
            raise ValueError(f"{ref.key} is not a path parameter of this request")
        params = {**request.params, name: full}
        return replace(request, params=params, path=_render_path(request, params))
    if ref.where == "query":
        key = str(ref.path[0])
        values = query_values(request, key)
        if not values:
            raise ValueError(f"query has no {key}")
        if key == "cachefrom" and len(ref.path) == 2 and isinstance(ref.path[1], int):
            names = json.loads(values[0]) if values[0] else []
            if not isinstance(names, list) or ref.path[1] >= len(names):
                raise ValueError("cachefrom has no such entry")
            names[ref.path[1]] = full  # one JSON-encoded list, not repeated parameters
            return with_query(request, key, [dumps(names).decode("ascii")])
        if len(ref.path) == 2 and isinstance(ref.path[1], int) and ref.path[1] < len(values):
            values[ref.path[1]] = full  # one of a repeated parameter (images/get names)
            return with_query(request, key, values)
        return with_query(request, key, [full])
    return _with_body(request, _pin_body(request.body, ref, full))


def _pin_body(body: Any, ref: ObjectRef, full: str) -> Any:
    """``body`` with ``ref`` naming ``full``: a copy of the objects and arrays on its
    path only (``copy_along``), the rest shared with ``body``, which is not changed."""
    *parents, last = ref.path
    try:
        if last == "":
            # A mapping key (an EndpointsConfig network name): rename the key.
            *holder_path, old = parents
            body, holder = copy_along(body, holder_path)
            if not isinstance(holder, dict) or old not in holder:
                raise KeyError(old)
            if full != old:
                if full in holder:
                    raise ValueError(f"{ref.key}: {full!r} is named twice")
                holder[full] = holder.pop(old)
            return body
        body, node = copy_along(body, parents)
        value = node[last]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"{ref.key} is not in the body") from None
    if not isinstance(value, str):
        raise ValueError(f"{ref.key} is not a string")
    node[last] = _replace_ref(value, ref, full)
    return body


def _replace_ref(value: str, ref: ObjectRef, full: str) -> str:
    field = ref.path[-2] if len(ref.path) >= 2 and isinstance(ref.path[-1], int) else ref.path[-1]
    if field in ("NetworkMode", "PidMode", "IpcMode") and ref.kind == "container":
        head, _, _ = value.partition(":")
        return f"{head}:{full}"
    if field == "VolumesFrom":
        _, sep, mode = value.partition(":")
        return full + sep + mode
    if field == "Links":
        name, sep, alias = value.partition(":")
        return f"{full}:{alias if sep else name.lstrip('/')}"
    return full


# -- responses ------------------------------------------------------------------

_HIDDEN_EVENT_TYPES = frozenset({"daemon", "node", "service", "secret", "config", "plugin"})


def labelless_event_object(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(kind, id)`` of a volume or network event, or None for any other event.

    Volume and network events carry no labels (moby logs only a driver, a
    name or a container with them), so only the daemon, asked about the
    object, can tell whose they are (``event_scope``).
    """
    kind = event.get("Type")
    if kind not in ("volume", "network"):
        return None
    actor = event.get("Actor")
    ident = actor.get("ID") if isinstance(actor, Mapping) else None
    return (kind, ident) if isinstance(ident, str) and ident else None


def event_visible(
    event: Mapping[str, Any], tenant: Tenant, owned: Container[tuple[str, str]] = frozenset()
) -> bool:
    """Whether an ``/events`` message may be shown to ``tenant``.

    Visible when its actor carries the tenant's owner label (container, exec
    and image events copy the object's labels into ``Actor.Attributes``), or,
    for a volume or network event, when ``(kind, id)`` is in ``owned``.  The
    kind is part of the key: a volume named like another tenant's network id
    names a different object.  Daemon and swarm events are for admins only,
    and so is anything unrecognised.
    """
    if tenant.admin:
        return True
    if event.get("Type") in _HIDDEN_EVENT_TYPES:
        return False
    key = labelless_event_object(event)
    if key is not None:
        return key in owned
    actor = event.get("Actor")
    actor = actor if isinstance(actor, Mapping) else {}
    attrs = actor.get("Attributes")
    return isinstance(attrs, Mapping) and attrs.get(OWNER_LABEL) == tenant.name


def filter_list(kind: str, items: Iterable[Any], tenant: Tenant) -> list[Any]:
    """The items of a list response that ``tenant`` may see (its own; all for admins).

    ``kind`` is ``container``, ``image``, ``network`` or ``volume``; items are
    the list elements (for volumes, the elements of ``Volumes``), whose
    ``Labels`` carry the owner.
    """
    items = list(items)
    if tenant.admin:
        return items
    out = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        labels = item.get("Labels")
        if isinstance(labels, Mapping) and labels.get(OWNER_LABEL) == tenant.name:
            out.append(item)
    return out

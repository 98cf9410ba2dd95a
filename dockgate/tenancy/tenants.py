"""Tenants: who a caller is, and which tenant (policy, quotas, ownership) that makes them.

A tenants file is separate from the policies (``--tenants FILE``): a policy
says *what* may be done, a tenant says *whose* objects a caller works on and
which policy applies to them.  Each tenant names its policy file, so two teams
on one host can run under different profiles.

Format (every problem is reported as ``file:line: field: why``, with the same
YAML reader as policies: duplicate keys and unknown fields are refused)::

    default: guests              # optional: tenant for callers that match nothing
    shared_images: ["busybox:*", "registry.example.com/base/*"]  # optional, see below
    build_cache: private         # optional: private (the default) or shared, see below
    tenants:
      - name: team-a             # becomes the io.dockgate.owner label value
        policy: baseline.yaml    # relative to this file; optional
        admin: false             # admins bypass ownership checks
        quotas: {max_containers: 20, max_running: 5, max_memory: 8g, max_cpus: 4}
        principals:
          users: [alice]         # unix user names (the peer's uid, via pwd)
          uids: [1001]
          groups: [team-a]       # unix group names (primary and supplementary)
          gids: [2001]
          cert_cn: [alice]       # TLS client certificate subject CN
          cert_san: ["email:alice@example.com", "DNS:ci.example.com", "URI:spiffe://x/y"]

Resolution: an identity match (user, uid, certificate CN or SAN) beats a
group match (group, gid); a caller matched by more than one tenant at the
winning level is refused (an ambiguous file must never pick a tenant by
accident).  A caller matching nothing gets the ``default`` tenant, or none
(the I/O layer answers 403).  The same user, uid, CN or SAN listed under two
tenants is refused at load time.

``shared_images``: which unowned images (pulled, or present before dockgate)
every tenant may use.  Without it, all of them; with it, only those with a
name (``RepoTags``, as ``docker images`` shows them: ``busybox:latest``) that
matches one of the glob patterns.  Other unowned images are for admins only, and a tenant gets
the daemon's answer for a missing image.

``build_cache``: whether tenants' builds use the daemon's build caches, which are
daemon-wide (BuildKit's step cache and ``RUN --mount=type=cache`` directories, the
classic builder's layer cache: a step's cached result is found by whoever builds
the same step).  ``private`` (the default): a tenant's build reads no cached step
(dockgate sets BuildKit's ``no-cache`` and the classic builder's ``nocache``) and
may not mount a cache directory.  ``shared``: builds use the caches as the daemon
has them, across tenants.  It is one setting for the host, not per tenant: a build
that skips the cache still writes its results there, so one tenant reading the
cache would read every tenant's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dockgate.errors import Forbidden
from dockgate.model import Peer
from dockgate.policy import spelling
from dockgate.policy.schema import _size
from dockgate.policy.source import (
    Document,
    PolicyError,
    read_yaml,
    schema_problems,
)

TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
"""Tenant names: label-value safe, no ``=`` or ``,`` (they go into ``label=k=v`` filters)."""

BUILD_CACHE_MODES = ("private", "shared")
"""Values of the tenants file's ``build_cache`` (the first is the default)."""

_names: dict[str, Any] = {"type": "array", "items": {"type": "string", "minLength": 1}}
_ids: dict[str, Any] = {"type": "array", "items": {"type": "integer", "minimum": 0}}


def _obj(required: Sequence[str] = (), **props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": props,
            "required": list(required)}


_count: dict[str, Any] = {"type": "integer", "minimum": 0}

TENANTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "dockgate tenants",
    **_obj(
        ["tenants"],
        default={"type": "string"},
        shared_images={"type": "array", "items": {"type": "string", "minLength": 1}},
        build_cache={"enum": list(BUILD_CACHE_MODES)},
        tenants={
            "type": "array",
            "items": _obj(
                ["name"],
                name={"type": "string", "pattern": TENANT_NAME.pattern},
                description={"type": "string"},
                policy={"type": "string", "minLength": 1},
                admin={"type": "boolean"},
                build_cache={"enum": list(BUILD_CACHE_MODES)},  # refused: see _compile
                quotas=_obj(
                    max_containers=_count,
                    max_running=_count,
                    max_memory=_size,
                    max_cpus={"type": "number", "exclusiveMinimum": 0},
                    max_nano_cpus=_count,
                ),
                principals=_obj(
                    users=_names, uids=_ids, groups=_names, gids=_ids,
                    cert_cn=_names, cert_san={
                        "type": "array",
                        "items": {"type": "string", "pattern": r"^(DNS|email|URI):.+$"},
                    },
                ),
            ),
        },
    ),
}


@dataclass(frozen=True, slots=True)
class Quotas:
    """Per-tenant limits; None means unlimited.

    Attributes:
        max_containers: containers that may exist (any state).
        max_running: containers that may run at once.
        max_memory: sum of ``HostConfig.Memory`` over running containers, in
            bytes; every container must then set a memory limit.
        max_nano_cpus: sum of CPU limits (``NanoCpus``, or
            ``CpuQuota/CpuPeriod``) over running containers, in 1e-9 CPUs;
            every container must then set a CPU limit.
    """

    max_containers: int | None = None
    max_running: int | None = None
    max_memory: int | None = None
    max_nano_cpus: int | None = None


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant: the owner label value, admin bit, policy and quotas."""

    name: str
    admin: bool = False
    policy_path: str | None = None
    quotas: Quotas = field(default_factory=Quotas)
    shared_images: tuple[str, ...] | None = None
    """Glob patterns of the unowned images the tenant may use; None: all of them."""
    build_cache: str = BUILD_CACHE_MODES[0]
    """The tenants file's ``build_cache``: ``private`` (the tenant's builds read no cached
    step and mount no cache directory) or ``shared`` (the daemon's caches, as they are)."""

    @property
    def private_build_cache(self) -> bool:
        """Whether this tenant's builds are kept from the daemon's shared build caches
        (never for admins, who see every tenant's objects anyway)."""
        return not self.admin and self.build_cache != "shared"


@dataclass(frozen=True, slots=True)
class _Principals:
    users: frozenset[str] = frozenset()
    uids: frozenset[int] = frozenset()
    groups: frozenset[str] = frozenset()
    gids: frozenset[int] = frozenset()
    cert_cn: frozenset[str] = frozenset()
    cert_san: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Caller:
    peer: Peer
    user: str | None
    groups: tuple[str, ...]
    principal: str | None
    sans: tuple[str, ...]


def _strength(p: _Principals, c: _Caller) -> int:
    """2 for an identity match, 1 for a group match, 0 for none."""
    unix = c.peer.transport == "unix"
    uid, gid = c.peer.uid, c.peer.gid
    if unix and ((c.user is not None and c.user in p.users) or (uid is not None and uid in p.uids)):
        return 2
    if c.principal is not None and c.principal in p.cert_cn:
        return 2
    if any(s in p.cert_san for s in c.sans):
        return 2
    if unix and (any(g in p.groups for g in c.groups) or (gid is not None and gid in p.gids)):
        return 1
    return 0


class TenantMap:
    """Principals to tenants, as loaded from a tenants file."""

    def __init__(
        self,
        tenants: Sequence[tuple[Tenant, _Principals]],
        default: Tenant | None = None,
        path: str = "<memory>",
    ) -> None:
        self._entries = tuple(tenants)
        self.default = default
        self.path = path

    @property
    def tenants(self) -> tuple[Tenant, ...]:
        """Every tenant, in file order."""
        return tuple(t for t, _ in self._entries)

    def get(self, name: str) -> Tenant | None:
        """The tenant called ``name``."""
        return next((t for t, _ in self._entries if t.name == name), None)

    @classmethod
    def load(cls, path: str) -> TenantMap:
        """Read and validate a tenants file; PolicyError (``file:line: field: why``) if invalid."""
        doc = read_yaml(path)
        problems = schema_problems(doc, TENANTS_SCHEMA)
        if problems:
            raise PolicyError(problems)
        return cls._compile(doc)

    @classmethod
    def _compile(cls, doc: Document) -> TenantMap:
        problems: list[str] = []
        base = os.path.dirname(os.path.abspath(doc.file))
        entries: list[tuple[Tenant, _Principals]] = []
        seen_names: dict[str, int] = {}
        claimed: dict[tuple[str, object], str] = {}
        for i, raw in enumerate(doc.data.get("tenants", ())):
            name = raw["name"]
            if name in seen_names:
                problems.append(doc.problem(("tenants", i, "name"),
                                            f"tenant {name!r} is already defined"))
            seen_names[name] = i
            quotas, qerr = _quotas(raw.get("quotas", {}))
            if qerr:
                problems.append(doc.problem(("tenants", i, "quotas"), qerr))
            policy = raw.get("policy")
            if policy is not None:
                policy = os.path.normpath(os.path.join(base, policy))
                if not os.path.isfile(policy):
                    problems.append(doc.problem(("tenants", i, "policy"),
                                                f"no such policy file {policy}"))
            pr = raw.get("principals", {})
            principals = _Principals(**{k: frozenset(v) for k, v in pr.items()})
            for kind in ("users", "uids", "cert_cn", "cert_san"):
                for j, value in enumerate(pr.get(kind, ())):
                    other = claimed.setdefault((kind, value), name)
                    if other != name:
                        problems.append(doc.problem(
                            ("tenants", i, "principals", kind, j),
                            f"{value!r} is already a principal of tenant {other!r}"))
            if "build_cache" in raw:
                problems.append(doc.problem(
                    ("tenants", i, "build_cache"),
                    "is one setting for the whole host (a build that skips the cache still "
                    "writes to it): move build_cache to the top level of the file"))
            shared = doc.data.get("shared_images")
            entries.append((Tenant(name, bool(raw.get("admin", False)), policy, quotas,
                                   tuple(shared) if shared is not None else None,
                                   doc.data.get("build_cache", BUILD_CACHE_MODES[0])),
                            principals))
        default: Tenant | None = None
        if "default" in doc.data:
            default = next((t for t, _ in entries if t.name == doc.data["default"]), None)
            if default is None:
                problems.append(doc.problem(("default",),
                                            f"no tenant is called {doc.data['default']!r}"))
            elif default.admin:
                problems.append(doc.problem(("default",),
                                            "the default tenant must not be an admin"))
        if problems:
            raise PolicyError(problems)
        return cls(entries, default, doc.file)

    def resolve(
        self,
        peer: Peer,
        user: str | None = None,
        groups: Iterable[str] = (),
        principal: str | None = None,
        sans: Iterable[str] = (),
    ) -> Tenant | None:
        """The caller's tenant, the default tenant, or None (answer 403).

        ``user``/``groups`` come from ``dockgate.proxy.peer.describe_unix_peer`` (unix
        peers), ``principal``/``sans`` from ``principal_from_certificate`` (TLS
        peers).  Unix identities only count on unix peers, so a TCP or TLS
        peer's absent uid never matches.

        Raises:
            Forbidden: the caller matches more than one tenant equally well.
        """
        caller = _Caller(peer, user, tuple(groups), principal, tuple(sans))
        best, found = 0, []
        for tenant, p in self._entries:
            s = _strength(p, caller)
            if s > best:
                best, found = s, [tenant]
            elif s == best and s > 0:
                found.append(tenant)
        if len(found) > 1:
            names = ", ".join(t.name for t in found)
            raise Forbidden(f"caller matches several tenants ({names}); fix the tenants file",
                            reason="ambiguous-tenant")
        if found:
            return found[0]
        return self.default


def _quotas(raw: Mapping[str, Any]) -> tuple[Quotas, str | None]:
    nano = raw.get("max_nano_cpus")
    if "max_cpus" in raw:
        if nano is not None:
            return Quotas(), "give max_cpus or max_nano_cpus, not both"
        nano = round(raw["max_cpus"] * 1e9)
    try:
        memory = spelling.size(raw["max_memory"]) if "max_memory" in raw else None
    except ValueError as e:
        return Quotas(), str(e)
    return Quotas(raw.get("max_containers"), raw.get("max_running"), memory, nano), None

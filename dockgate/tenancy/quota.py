"""Quotas: how many containers a tenant may have and run, and how much memory and CPU.

Pure: the I/O layer gathers the tenant's usage (``usage_from_list`` over
``GET /containers/json?all=1&filters={"label":{"io.dockgate.owner=<t>":true}}``
plus, when memory or CPU quotas are set, ``GET /containers/<id>/json`` of each
running container) and the target container's inspection, then asks
``quota_check``.  Checks happen at ``container.create`` (count, and the new
container's own limits), ``container.start`` and ``container.restart`` (running
count and the sums), and ``container.update`` (the sums with the new limits).

Memory and CPU quotas are sums over *running* containers (paused and
restarting count as running: they hold their memory).  With a memory (CPU)
quota set, every container must carry a memory (CPU) limit, since an
unlimited container would make the sum meaningless.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dockgate.model import CanonicalRequest
from dockgate.policy.spelling import cpu_limit
from dockgate.tenancy.tenants import Tenant

ACTIVE_STATES = frozenset({"running", "paused", "restarting"})

QUOTA_ENDPOINTS = frozenset({"container.create", "container.start", "container.restart",
                             "container.update"})


@dataclass(frozen=True, slots=True)
class Usage:
    """A tenant's current use; None where it was not measured (then the check fails closed)."""

    containers: int
    running: int
    memory: int | None = None
    nano_cpus: int | None = None


def needs_usage(tenant: Tenant, endpoint_id: str) -> bool:
    """Whether ``quota_check`` needs usage for this request (a quota applies to it)."""
    q = tenant.quotas
    if endpoint_id not in QUOTA_ENDPOINTS:
        return False
    return any(v is not None for v in (q.max_containers, q.max_running, q.max_memory,
                                       q.max_nano_cpus))


def needs_inspect(tenant: Tenant) -> bool:
    """Whether usage must include per-container inspections (memory or CPU quotas)."""
    return tenant.quotas.max_memory is not None or tenant.quotas.max_nano_cpus is not None


def memory_of(host_config: Mapping[str, Any] | None) -> int:
    """``HostConfig.Memory`` in bytes (0 when unlimited)."""
    value = (host_config or {}).get("Memory") or 0
    return value if isinstance(value, int) and value > 0 else 0


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def nano_cpus_of(host_config: Mapping[str, Any] | None) -> int:
    """The CPU limit in 1e-9 CPUs that the daemon gives the container's cgroup
    (``spelling.cpu_limit``: ``NanoCpus``, overridden by a non-zero ``CpuQuota``
    and ``CpuPeriod``; a negative ``CpuQuota`` is unlimited); 0 when unlimited."""
    hc = host_config or {}
    limit = cpu_limit(_int(hc.get("NanoCpus")), _int(hc.get("CpuQuota")),
                      _int(hc.get("CpuPeriod")))
    return int(limit) if limit is not None else 0


def _active(item: Mapping[str, Any]) -> bool:
    state = item.get("State")
    if isinstance(state, Mapping):  # an inspection
        return bool(state.get("Running") or state.get("Paused") or state.get("Restarting"))
    return state in ACTIVE_STATES


def usage_from_list(
    items: Sequence[Mapping[str, Any]],
    inspections: Mapping[str, Mapping[str, Any]] | None = None,
) -> Usage:
    """Usage from the tenant's container list (``all=1``), and, for memory/CPU,
    the inspections of its running containers keyed by full id.

    Without ``inspections`` memory and CPU are unknown (None).  A running
    container missing from ``inspections`` also makes them unknown.
    """
    active = [i for i in items if _active(i)]
    memory: int | None = None
    nano: int | None = None
    if inspections is not None:
        memory = nano = 0
        for item in active:
            data = inspections.get(str(item.get("Id", "")))
            if data is None:
                memory = nano = None
                break
            hc = data.get("HostConfig")
            assert memory is not None and nano is not None
            memory += memory_of(hc)
            nano += nano_cpus_of(hc)
    return Usage(len(items), len(active), memory, nano)


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.3g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.3g} MiB"


def _cpus(n: int) -> str:
    return f"{n / 1e9:g} CPUs"


@dataclass(frozen=True, slots=True)
class _Resource:
    what: str      # "memory", "CPU"
    flag: str      # the docker CLI option that sets the limit
    show: Callable[[int], str]


_MEMORY = _Resource("memory", "--memory", _gib)
_CPU = _Resource("CPU", "--cpus", _cpus)


def _fits(who: str, res: _Resource, limit: int | None, used: int | None, *, requested: int,
          released: int) -> str | None:
    """Whether ``requested`` fits in ``limit`` next to ``used`` (minus ``released``)."""
    if limit is None:
        return None
    if requested <= 0:
        return f"{who} has a {res.what} quota, so containers need a {res.what} limit ({res.flag})"
    if used is None:
        return f"{who}: {res.what} usage could not be measured"
    if used - released + requested > limit:
        return (f"{who} may use at most {res.show(limit)} of {res.what} in running containers "
                f"({res.show(used - released)} in use, {res.show(requested)} requested)")
    return None


def _limits(tenant: Tenant, usage: Usage, memory: int, nano: int, *, released_memory: int = 0,
            released_nano: int = 0) -> str | None:
    q = tenant.quotas
    who = f"quota: tenant {tenant.name}"
    return (_fits(who, _MEMORY, q.max_memory, usage.memory, requested=memory,
                  released=released_memory)
            or _fits(who, _CPU, q.max_nano_cpus, usage.nano_cpus, requested=nano,
                     released=released_nano))


def quota_check(
    tenant: Tenant,
    request: CanonicalRequest,
    usage: Usage,
    target: Mapping[str, Any] | None = None,
) -> str | None:
    """A refusal message if ``request`` would take ``tenant`` over a quota, else None.

    Args:
        tenant: the caller's tenant.
        request: the (stamped, pinned) request.
        usage: the tenant's usage before the request.
        target: for start, restart and update, the inspection of the container
            (``GET /containers/<id>/json``); the check fails closed without it.
    """
    q = tenant.quotas
    ep = request.endpoint.id
    who = f"quota: tenant {tenant.name}"
    body = request.body if isinstance(request.body, Mapping) else {}
    if ep == "container.create":
        if q.max_containers is not None and usage.containers + 1 > q.max_containers:
            return f"{who} may have at most {q.max_containers} containers"
        new_hc = body.get("HostConfig")
        new: Mapping[str, Any] = new_hc if isinstance(new_hc, Mapping) else {}
        # Creating does not run anything: only the container's own limits must fit.
        alone = Usage(0, 0, 0, 0)
        return _limits(tenant, alone, memory_of(new), nano_cpus_of(new))
    if ep not in ("container.start", "container.restart", "container.update"):
        return None
    if not needs_usage(tenant, ep):
        return None
    if target is None:
        return f"{who}: the container could not be inspected for the quota check"
    raw_hc = target.get("HostConfig")
    hc: Mapping[str, Any] = raw_hc if isinstance(raw_hc, Mapping) else {}
    running = _active(target)
    if ep in ("container.start", "container.restart"):
        if running:
            return None  # already counted
        if q.max_running is not None and usage.running + 1 > q.max_running:
            return f"{who} may run at most {q.max_running} containers"
        return _limits(tenant, usage, memory_of(hc), nano_cpus_of(hc))
    # container.update: the new limits replace the old (0 or absent means unchanged).
    # The daemon writes the request's CpuQuota into a running container's cgroup as
    # sent and keeps a negative one beside a stored NanoCpus (it refuses only a
    # positive one there): the merged record reads as unlimited then, as the cgroup is.
    merged = dict(hc)
    for key in ("Memory", "NanoCpus", "CpuQuota", "CpuPeriod"):
        value = body.get(key)
        if isinstance(value, int) and value != 0:
            merged[key] = value
    if running:
        return _limits(tenant, usage, memory_of(merged), nano_cpus_of(merged),
                       released_memory=memory_of(hc), released_nano=nano_cpus_of(hc))
    return _limits(tenant, Usage(0, 0, 0, 0), memory_of(merged), nano_cpus_of(merged))

"""Quotas: usage from the container list, and the checks at create, start and update."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dockgate.admission.admit import ApiContext, admit_body, admit_head
from dockgate.model import CanonicalRequest
from dockgate.tenancy import Quotas, Tenant, Usage, needs_inspect, needs_usage, quota_check
from dockgate.tenancy import usage_from_list as usage_of

GIB = 1 << 30
T = Tenant("teamA", quotas=Quotas(max_containers=3, max_running=2, max_memory=2 * GIB,
                                  max_nano_cpus=2_000_000_000))
FREE = Tenant("free")


def req(method: str, target: str, body: Any = None) -> CanonicalRequest:
    ctx = ApiContext()
    r = admit_head(method, target.encode(), [(b"content-type", b"application/json")], ctx)
    return r if body is None else admit_body(r, json.dumps(body).encode(), ctx)


def create(memory: int = GIB, cpus: int = 1_000_000_000, **extra: Any) -> CanonicalRequest:
    hc = {"Memory": memory, "NanoCpus": cpus, **extra}
    return req("POST", "/v1.41/containers/create", {"Image": "x", "HostConfig": hc})


def inspected(running: bool, memory: int = GIB, cpus: int = 1_000_000_000) -> dict[str, Any]:
    return {"Id": "c", "State": {"Running": running, "Paused": False, "Restarting": False},
            "HostConfig": {"Memory": memory, "NanoCpus": cpus}}


def test_usage_from_list() -> None:
    """Usage counts all and running (or paused) containers from a list, and sums memory and CPU
    limits only when every running container was inspected."""
    items = [{"Id": "1", "State": "running"}, {"Id": "2", "State": "exited"},
             {"Id": "3", "State": "paused"}, {"Id": "4", "State": "created"}]
    assert usage_of(items) == Usage(4, 2, None, None)
    inspections = {"1": {"HostConfig": {"Memory": GIB, "NanoCpus": 500_000_000}},
                   "3": {"HostConfig": {"Memory": GIB, "CpuQuota": 50_000, "CpuPeriod": 100_000}}}
    assert usage_of(items, inspections) == Usage(4, 2, 2 * GIB, 1_000_000_000)
    assert usage_of(items, {"1": inspections["1"]}) == Usage(4, 2, None, None)


def test_needs() -> None:
    """Usage is measured only for create and start-like requests of a tenant with quotas, and
    inspected only when limits are capped."""
    assert needs_usage(T, "container.create") and needs_usage(T, "container.start")
    assert not needs_usage(T, "container.list")
    assert not needs_usage(FREE, "container.create")
    assert needs_inspect(T) and not needs_inspect(FREE)


def test_create_count() -> None:
    """A create beyond the container count quota is refused with a message naming the tenant and the
    limit."""
    assert quota_check(T, create(), Usage(2, 0, 0, 0)) is None
    assert quota_check(T, create(), Usage(3, 0, 0, 0)) == \
        "quota: tenant teamA may have at most 3 containers"


def test_create_limits_required_and_bounded() -> None:
    """With resource quotas a create needs a memory and a CPU limit (CpuQuota/CpuPeriod counts)
    within the caps; a tenant without quotas is not checked."""
    assert "need a memory limit" in (quota_check(T, create(memory=0), Usage(0, 0, 0, 0)) or "")
    assert "need a CPU limit" in (quota_check(T, create(cpus=0), Usage(0, 0, 0, 0)) or "")
    assert "at most 2 GiB" in (quota_check(T, create(memory=3 * GIB), Usage(0, 0, 0, 0)) or "")
    # CpuQuota/CpuPeriod count as a CPU limit
    r = create(cpus=0, CpuQuota=100_000, CpuPeriod=100_000)
    assert quota_check(T, r, Usage(0, 0, 0, 0)) is None
    assert quota_check(FREE, create(memory=0, cpus=0), Usage(99, 99)) is None


def test_start() -> None:
    """A start beyond the running count, memory or CPU quota is refused; restarting a running
    container changes nothing; without the inspection or measured usage the start fails closed."""
    start = req("POST", "/v1.41/containers/c/start")
    assert quota_check(T, start, Usage(2, 1, GIB, 1_000_000_000), inspected(False)) is None
    assert quota_check(T, start, Usage(2, 2, 0, 0), inspected(False)) == \
        "quota: tenant teamA may run at most 2 containers"
    msg = quota_check(T, start, Usage(2, 1, int(1.5 * GIB), 0), inspected(False))
    assert msg is not None and "memory" in msg
    msg = quota_check(T, start, Usage(2, 1, 0, 1_500_000_000), inspected(False))
    assert msg is not None and "2 CPUs" in msg
    # already running: restart changes nothing
    restart = req("POST", "/v1.41/containers/c/restart")
    assert quota_check(T, restart, Usage(2, 2, 2 * GIB, 2_000_000_000), inspected(True)) is None
    # fails closed without the inspection or the measured usage
    assert quota_check(T, start, Usage(0, 0, 0, 0)) is not None
    assert "could not be measured" in (quota_check(T, start, Usage(1, 0), inspected(False)) or "")


def test_update() -> None:
    """Raising a running container's limits is checked against the tenant's running total minus its
    own share; a stopped container only needs its own limit to fit."""
    up = req("POST", "/v1.41/containers/c/update", {"Memory": 2 * GIB})
    # running, 1 GiB of the 1.5 GiB in use is this container's: 0.5 + 2 > 2
    assert quota_check(T, up, Usage(2, 2, int(1.5 * GIB), 2_000_000_000), inspected(True))
    # stopped: only its own limit must fit
    assert quota_check(T, up, Usage(2, 2, 2 * GIB, 2_000_000_000), inspected(False)) is None
    same = req("POST", "/v1.41/containers/c/update", {"Memory": GIB})
    assert quota_check(T, same, Usage(2, 2, 2 * GIB, 2_000_000_000), inspected(True)) is None


def test_negative_cpu_quota_is_unlimited() -> None:
    """A negative CpuQuota is no CPU limit whatever NanoCpus says (the daemon accepts the pair and
    the quota wins in the cgroup): a create with it, a start of a container stored with it and an
    update that sends it (the daemon writes it into the running cgroup and keeps the stored
    NanoCpus) are refused under a CPU quota."""
    need = "need a CPU limit"
    assert need in (quota_check(T, create(CpuQuota=-1), Usage(0, 0, 0, 0)) or "")
    stored = inspected(False)
    stored["HostConfig"]["CpuQuota"] = -1
    start = req("POST", "/v1.41/containers/c/start")
    assert need in (quota_check(T, start, Usage(1, 0, 0, 0), stored) or "")
    up = req("POST", "/v1.41/containers/c/update", {"CpuQuota": -1})
    assert need in (quota_check(T, up, Usage(1, 1, GIB, 1_000_000_000), inspected(True)) or "")
    assert need in (quota_check(T, up, Usage(1, 0, 0, 0), inspected(False)) or "")
    # a shorter period under a stored quota raises the limit: measured as the cgroup has it
    quota_hc = {"Memory": GIB, "CpuQuota": 50_000, "CpuPeriod": 100_000}
    running = {**inspected(True), "HostConfig": quota_hc}
    shorter = req("POST", "/v1.41/containers/c/update", {"CpuPeriod": 1000})
    msg = quota_check(T, shorter, Usage(1, 1, GIB, 500_000_000), running)
    assert msg is not None and "50 CPUs requested" in msg


@pytest.mark.parametrize("target", ["/v1.41/containers/c/stop", "/v1.41/containers/json"])
def test_other_endpoints(target: str) -> None:
    """Endpoints that neither create nor start containers are never refused by quotas."""
    method = "GET" if target.endswith("json") else "POST"
    assert quota_check(T, req(method, target), Usage(99, 99, 0, 0)) is None

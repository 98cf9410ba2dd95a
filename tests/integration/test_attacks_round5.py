"""Round 5 of the red team: what the daemon does with a field the policy read
differently, each attack shown live on the bare daemon first (its cgroups and its
answers are the oracle), then through dockgate.

* **A negative ``CpuQuota`` is no CPU limit** (both engines).  The daemon refuses
  ``NanoCpus`` beside a *positive* ``CpuQuota`` only, and builds the cgroup from
  ``NanoCpus`` and then any non-zero ``CpuQuota`` over it
  (``getCPUResources``), so ``{"NanoCpus": 5e8, "CpuQuota": -1}`` runs with
  ``cfs_quota_us`` -1 while its inspect shows half a CPU; an update with
  ``CpuQuota: -1`` reaches a running container's cgroup as sent, and the stored
  ``NanoCpus`` stays.  Restricted's required CPU limit and a tenant's
  ``max_cpus`` read ``NanoCpus`` and were bypassed both ways; through dockgate
  both are refused.
* **A volume or image subpath probes host paths** (engine 28.5, API 1.45 and
  1.48).  The daemon resolves ``VolumeOptions.Subpath`` and
  ``ImageOptions.Subpath`` with the host's symlinks as root before it checks that
  the result stays inside the volume, and its answer differs for a target that
  exists (400, ``escapes the base directory``) and one that does not (404,
  ``lstat /root/nonexistent: no such file or directory``): a symlink the client
  put in its own volume or image tells it whether any host path exists, another
  tenant's volume files included.  Through baseline and restricted the field is
  host-level (closed world).

* **``docker top`` reads any host process** (both engines).  The daemon runs
  ``ps`` on the host with the client's ``ps_args`` over every process, then keeps
  the rows whose PID column holds a pid of the container, finding the column by
  the header's words: four header words over the one-word LABEL column make it
  read the fourth word of any host process's row (``-p PID``, with its
  environment: ``e``) as the pid and quote it in its error.  Through baseline
  and restricted only ps's own selections and built-in formats pass.

* **An update that sets a restart policy starts a container later** (both
  engines).  A container made on the daemon with a host path, which baseline
  refuses to start, is started by the daemon itself once an update gave it
  ``RestartPolicy: always``: when it exits, and at the daemon's next start even
  after a ``docker stop`` (shown by hand on 28.5: the container ran again after
  dockerd restarted).  Through dockgate such an update is judged as a start.

What held (session 13): a ``HostConfig`` on ``POST /v1.23/containers/{id}/start``
(20.10 applies it; dockgate refuses any start body over 7 bytes, chunked too);
creates at API 1.24-1.40 (``CgroupnsMode`` and ``IpcMode`` defaults);
``SecurityOpt`` spellings (``seccomp:unconfined``, ``seccomp=Unconfined``,
``systempaths=unconfined``, ``label:disable``, ``apparmor:unconfined``); empty
``MaskedPaths``/``ReadonlyPaths``; ``PidMode``/``IpcMode`` with case and spaces;
``Annotations``, ``Runtime``, ``CgroupParent``, ``DeviceCgroupRules``; an exec's
``privileged`` in any case or twice; ``fromSrc`` URLs in thirteen spellings of a
loopback host (none reached the listener); a tmpfs or volume mounted over
``/proc``, ``/proc/sys`` or ``/sys/fs/cgroup`` (runc refuses, or it shadows only the
container's own view).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import unixhttp
from support.engines import IMAGE, Engine, unique
from support.policygate import PolicyGate, policy_audit_guard, policy_gates
from support.tenantgate import TENANTS, TenantGate, tenant_gates

pytestmark = [pytest.mark.engine, pytest.mark.allow_refusals]
_ = (policy_gates, policy_audit_guard, tenant_gates)

call = unixhttp.call

HARDENED = {"NetworkMode": "none", "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"],
            "Memory": 64 << 20, "PidsLimit": 64}
"""A HostConfig restricted accepts once it has a CPU limit."""


def cfs_quota(engine: Engine, cid: str) -> int | None:
    """The CFS quota of the running container's cgroup as the kernel has it (microseconds per
    period), None when unlimited (cgroup v1 ``cpu.cfs_quota_us`` -1, v2 ``cpu.max`` ``max``)."""
    status, info = call(engine.daemon_socket, "GET", f"/containers/{cid}/json")
    assert status == 200 and info["State"]["Running"], info
    lines = Path(f"/proc/{info['State']['Pid']}/cgroup").read_text().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
                f = Path(f"/sys/fs/cgroup/{mount}{path}/cpu.cfs_quota_us")
                if f.exists():
                    value = int(f.read_text())
                    return None if value < 0 else value
    path = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
    quota = Path(f"/sys/fs/cgroup{path}/cpu.max").read_text().split()[0]
    return None if quota == "max" else int(quota)


def run(sock: str, hc: dict[str, Any], user: str = "1000:1000") -> tuple[int, Any]:
    """Create (and, when that succeeds, start) a sleeping container through ``sock``."""
    status, made = call(sock, "POST", f"/containers/create?name={unique('cpu')}",
                        {"Image": IMAGE, "User": user, "Cmd": ["sleep", "120"],
                         "HostConfig": hc})
    if status != 201:
        return status, made
    status, answer = call(sock, "POST", f"/containers/{made['Id']}/start")
    assert status == 204, answer
    return status, made["Id"]


def test_restricted_cpu_limit_cannot_be_removed_by_a_negative_quota(
        engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]) -> None:
    """On the bare daemon a container with NanoCpus and CpuQuota -1 runs without a CPU limit,
    and an update with CpuQuota -1 lifts a running container's limit while its inspect still
    shows NanoCpus; through restricted (which requires a CPU limit) both are refused and the
    container keeps its limit."""
    pg = policy_gates[(engine.name, "restricted")]
    direct = engine.daemon_socket
    status, cid = run(direct, {**HARDENED, "NanoCpus": 500_000_000, "CpuQuota": -1})
    assert status == 204
    assert cfs_quota(engine, cid) is None, "the bare daemon ran it unlimited"
    status, cid = run(direct, {**HARDENED, "NanoCpus": 500_000_000})
    assert cfs_quota(engine, cid) == 50_000
    status, answer = call(direct, "POST", f"/containers/{cid}/update", {"CpuQuota": -1})
    assert status == 200, answer
    assert cfs_quota(engine, cid) is None, "the bare daemon's update lifted the limit"
    assert call(direct, "GET", f"/containers/{cid}/json")[1]["HostConfig"]["NanoCpus"] \
        == 500_000_000

    status, answer = run(pg.socket, {**HARDENED, "NanoCpus": 500_000_000, "CpuQuota": -1})
    assert status == 403, answer
    assert answer["message"] == ("dockgate: denied by policy restricted rule resource-limits: "
                                 "HostConfig.CpuQuota -1 removes the CPU limit (a negative "
                                 "quota is unlimited, whatever NanoCpus says)"), answer
    status, cid = run(pg.socket, {**HARDENED, "NanoCpus": 500_000_000})
    assert status == 204, cid
    status, answer = call(pg.socket, "POST", f"/containers/{cid}/update", {"CpuQuota": -1})
    assert status == 403, answer
    assert answer["message"] == ("dockgate: denied by policy restricted rule resource-limits: "
                                 "CpuQuota -1 removes the CPU limit"), answer
    assert cfs_quota(engine, cid) == 50_000
    status, answer = call(pg.socket, "POST", f"/containers/{cid}/update",
                          {"NanoCpus": 250_000_000, "CpuQuota": 0, "CpuPeriod": 0})
    assert status == 200, answer
    assert cfs_quota(engine, cid) == 25_000


@pytest.fixture
def cpu_quota_tenants(engine: Engine, tenant_gates: dict[str, TenantGate]
                      ) -> Iterator[TenantGate]:
    """The tenant gate with teamb's quotas extended by ``max_cpus: 1`` (reloaded back after)."""
    tg = tenant_gates[engine.name]
    with_cpus = TENANTS.replace("max_running: 1}", "max_running: 1, max_cpus: 1}")
    assert with_cpus != TENANTS
    tg.reload(with_cpus)
    try:
        yield tg
    finally:
        tg.reload(TENANTS)


def test_tenant_cpu_quota_cannot_be_escaped_by_a_negative_quota(
        engine: Engine, cpu_quota_tenants: TenantGate) -> None:
    """A tenant with a one-CPU quota cannot run a container without a CPU limit through a
    negative CpuQuota beside NanoCpus, at create or by an update of its running container (the
    daemon's cgroup would be unlimited while the quota counts the NanoCpus); a lower limit by
    NanoCpus is still updated."""
    bob = cpu_quota_tenants.caller("bob-tls")
    body = {"Image": IMAGE, "Cmd": ["sleep", "120"],
            "HostConfig": {"NetworkMode": "none", "NanoCpus": 1_000_000_000, "CpuQuota": -1}}
    status, answer = bob.request("POST", f"/containers/create?name={unique('q')}", body)
    assert status == 403, answer
    assert answer["message"] == ("dockgate: quota: tenant teamb has a CPU quota, so containers "
                                 "need a CPU limit (--cpus)"), answer

    body["HostConfig"]["CpuQuota"] = 0
    status, made = bob.request("POST", f"/containers/create?name={unique('q')}", body)
    assert status == 201, made
    cid = made["Id"]
    try:
        status, answer = bob.request("POST", f"/containers/{cid}/start")
        assert status == 204, answer
        assert cfs_quota(engine, cid) == 100_000
        status, answer = bob.request("POST", f"/containers/{cid}/update", {"CpuQuota": -1})
        assert status == 403, answer
        assert "containers need a CPU limit" in answer["message"], answer
        assert cfs_quota(engine, cid) == 100_000
        status, answer = bob.request("POST", f"/containers/{cid}/update",
                                     {"NanoCpus": 500_000_000})
        assert status == 200, answer
        assert cfs_quota(engine, cid) == 50_000
    finally:
        call(engine.daemon_socket, "DELETE", f"/containers/{cid}?force=1")


# -- restart policies ---------------------------------------------------------------------


def _made_on_the_daemon(engine: Engine, cmd: list[str]) -> str:
    """A container made and started on the daemon directly, with the host's /etc bound in
    (baseline refuses to start it), running ``cmd`` with no restart policy."""
    status, made = call(engine.daemon_socket, "POST", f"/containers/create?name={unique('adm')}",
                        {"Image": IMAGE, "Cmd": cmd,
                         "HostConfig": {"NetworkMode": "none", "Binds": ["/etc:/hostetc:ro"]}})
    assert status == 201, made
    assert call(engine.daemon_socket, "POST", f"/containers/{made['Id']}/start")[0] == 204
    return str(made["Id"])


def _restarts(engine: Engine, cid: str) -> tuple[int, str]:
    status, info = call(engine.daemon_socket, "GET", f"/containers/{cid}/json")
    assert status == 200, info
    return int(info["RestartCount"]), str(info["HostConfig"]["RestartPolicy"]["Name"])


def test_an_update_cannot_make_the_daemon_restart_a_refused_container(
        engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]) -> None:
    """On the bare daemon an update that sets ``RestartPolicy: always`` on a container with a
    host bind makes the daemon start it again when it exits (and, seen by hand, at the
    daemon's next start after a stop), which baseline refuses to do with a start; through
    baseline such an update is refused as that start is, and the stored policy stays ``no``,
    while a container baseline made gets its restart policy."""
    always = {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}
    cid = _made_on_the_daemon(engine, ["sh", "-c", "sleep 1"])
    try:
        status, answer = call(engine.daemon_socket, "POST", f"/containers/{cid}/update", always)
        assert status == 200, answer
        deadline = time.monotonic() + 60
        while _restarts(engine, cid)[0] == 0:
            assert time.monotonic() < deadline, "the bare daemon did not restart it"
            time.sleep(0.2)
    finally:
        call(engine.daemon_socket, "DELETE", f"/containers/{cid}?force=1")

    pg = policy_gates[(engine.name, "baseline")]
    cid = _made_on_the_daemon(engine, ["sleep", "120"])
    try:
        status, answer = call(pg.socket, "POST", f"/containers/{cid}/update", always)
        assert status == 403, answer
        assert answer["message"].startswith(
            f"dockgate: container '{cid}' does not pass the policy: denied by policy baseline "
            "rule no-host-paths: HostConfig.Binds[0] host path /etc"), answer
        assert _restarts(engine, cid) in ((0, "no"), (0, ""))  # 20.10 keeps "" for none
        status, answer = call(pg.socket, "POST", f"/containers/{cid}/update", {"Memory": 1 << 28,
                                                                              "MemorySwap": -1})
        assert status == 200, answer
    finally:
        call(engine.daemon_socket, "DELETE", f"/containers/{cid}?force=1")
    status, made = call(pg.socket, "POST", f"/containers/create?name={unique('own')}",
                        {"Image": IMAGE, "Cmd": ["sleep", "120"],
                         "HostConfig": {"NetworkMode": "none", "Memory": 64 << 20,
                                        "PidsLimit": 64}})
    assert status == 201, made
    pg.docker("update", "--restart", "always", made["Id"])
    assert _restarts(engine, made["Id"]) == (0, "always")


# -- docker top ----------------------------------------------------------------------------

LEAK_ARGS = "-o label=A\fB\fC\fD -o pid -o args e -p {pid}"
"""Four header words over the one-word LABEL column: the daemon reads a row's fourth word
(of ``/bin/sleep 120 DG_SECRET=...``) as its pid and quotes it in its error."""


@pytest.fixture
def host_secret() -> Iterator[tuple[int, str]]:
    """A host process (not in any container) whose environment holds a secret: (pid, secret)."""
    secret = unique("hunter2")
    proc = subprocess.Popen(["/bin/sleep", "120"], env={"DG_SECRET": secret},
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield proc.pid, secret
    finally:
        proc.kill()
        proc.wait(10)


def test_top_cannot_read_host_processes(
        engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate],
        host_secret: tuple[int, str]) -> None:
    """On the bare daemon ``docker top`` with ps options that shift the header over the PID
    column answers with the environment of any host process (the daemon runs ps on the host over
    every process); through baseline and restricted such options are refused as host-level, and
    ``docker top C aux`` and ``-ef`` still list the container's processes."""
    pid, secret = host_secret
    status, cid = run(engine.daemon_socket, {**HARDENED, "NanoCpus": 500_000_000})
    assert status == 204
    target = f"/containers/{cid}/top?" + urllib.parse.urlencode(
        {"ps_args": LEAK_ARGS.format(pid=pid)})
    status, answer = call(engine.daemon_socket, "GET", target)
    assert status == 500 and f"Unexpected pid 'DG_SECRET={secret}'" in answer["message"], answer

    for policy in ("baseline", "restricted"):
        pg = policy_gates[(engine.name, policy)]
        status, answer = call(pg.socket, "GET", target)
        assert status == 403, answer
        assert answer["message"] == (
            f"dockgate: denied by policy {policy} rule closed-world: query.ps_args makes the "
            "daemon act on the host (host-level field): ps options other than process selection "
            "and ps's built-in formats; the daemon runs ps on the host over every process and "
            "would show other processes' command lines and environments"), answer
        for words in (("aux",), ("-ef",)):
            out = pg.docker("top", cid, *words, timeout=60).stdout
            assert "sleep 120" in out and secret not in out, out


# -- subpaths (engine 28.5) ----------------------------------------------------------------


def _links_tar() -> bytes:
    """A layer of two absolute symlinks: to a host file that exists and to one that does not."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, target in (("yes", "/etc/hostname"), ("no", "/etc/dg-no-such-file")):
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def _probe(sock: str, mount: dict[str, Any], version: str) -> tuple[int, Any]:
    """Create a container (one restricted accepts but for ``mount``) with ``mount`` through
    ``sock`` and start it there; (status, answer) of the create when it fails, else of the
    start."""
    status, made = call(sock, "POST", f"/{version}/containers/create",
                        {"Image": IMAGE, "User": "1000:1000", "Cmd": ["true"],
                         "HostConfig": {**HARDENED, "NanoCpus": 500_000_000,
                                        "Mounts": [mount]}})
    if status != 201:
        return status, made
    return call(sock, "POST", f"/{version}/containers/{made['Id']}/start")


@pytest.mark.parametrize("kind", ["volume", "image"])
def test_a_subpath_cannot_probe_host_paths(
        kind: str, engine28: Engine, policy_gates: dict[tuple[str, str], PolicyGate]) -> None:
    """On engine 28.5 a volume (image) subpath that is a symlink in the client's own volume
    (image) gets one answer when its host target exists and another when it does not; through
    baseline (and restricted for volumes) a subpath is refused as a host-level field."""
    engine = engine28
    direct = engine.daemon_socket
    if kind == "volume":
        vol = unique("subpath")
        status, made = call(direct, "POST", "/containers/create",
                            {"Image": IMAGE, "Cmd": ["sh", "-c", "ln -s /etc/hostname /v/yes && "
                                                     "ln -s /etc/dg-no-such-file /v/no"],
                             "HostConfig": {"NetworkMode": "none",
                                            "Mounts": [{"Type": "volume", "Source": vol,
                                                        "Target": "/v"}]}})
        assert status == 201, made
        assert call(direct, "POST", f"/containers/{made['Id']}/start")[0] == 204
        status, done = call(direct, "POST", f"/containers/{made['Id']}/wait")
        assert status == 200 and done["StatusCode"] == 0, done

        def mount(sub: str) -> dict[str, Any]:
            return {"Type": "volume", "Source": vol, "Target": "/x",
                    "VolumeOptions": {"Subpath": sub}}
        version, field = "v1.45", "VolumeOptions"
    else:
        repo = unique("links")
        status, raw = unixhttp.request(direct, "POST", f"/images/create?fromSrc=-&repo={repo}",
                                       _links_tar(), content_type="application/x-tar")
        assert status == 200, raw

        def mount(sub: str) -> dict[str, Any]:
            return {"Type": "image", "Source": repo, "Target": "/x",
                    "ImageOptions": {"Subpath": sub}}
        version, field = "v1.48", "ImageOptions"

    status, answer = _probe(direct, mount("yes"), version)
    assert status == 400 and "escapes the base directory" in answer["message"], answer
    status, answer = _probe(direct, mount("no"), version)
    assert status == 404, answer
    assert "lstat /etc/dg-no-such-file: no such file or directory" in answer["message"], answer

    policies = ("baseline", "restricted") if kind == "volume" else ("baseline",)
    for policy in policies:
        pg = policy_gates[(engine.name, policy)]
        for sub in ("yes", "no"):
            status, answer = _probe(pg.socket, mount(sub), version)
            assert status == 403, answer
            assert answer["message"] == (
                f"dockgate: denied by policy {policy} rule closed-world: "
                f"HostConfig.Mounts[0].{field}.Subpath makes the daemon act on the host "
                "(host-level field)"), answer

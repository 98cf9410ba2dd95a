"""Attacks on what dockerd does as root for a client, against both engines through
policies/baseline.yaml and policies/restricted.yaml.

Each test first shows the attack live on the bare daemon (its own socket, no
dockgate): dockerd mounts the host's procfs or a host directory named by a
relative path into a volume, runs a container under a seccomp profile that
allows everything, connects to a unix socket on the host for a log driver,
creates a host network interface of the client's choosing, shields a container
from the OOM killer, and puts a container in the host's cgroup namespace by
default.  Then the same requests go through each policy dockgate, and the
daemon's state is the oracle: nothing created, mounted, connected or joined.
Containers only with ``--network none``, never privileged; networks only
``--internal`` on 127.x subnets; traffic only to unix sockets.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import unixhttp
from support.buildhelp import build, context
from support.engines import IMAGE, Engine, unique
from support.plugins import FakePlugin
from support.policygate import (
    POLICY_NAMES,
    PolicyGate,
    denied,
    policy_audit_guard,
    policy_gates,
)

from dockgate.policy import seccomp as seccomp_check

pytestmark = [pytest.mark.engine, pytest.mark.allow_refusals]
_ = (policy_gates, policy_audit_guard)  # fixtures, imported for pytest

RUN = ("run", "--rm", "--network", "none", "--pull", "never")
HARDENED = ("--user", "1000:1000", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--memory", "64m", "--cpus", "0.5", "--pids-limit", "64")


@pytest.fixture(params=POLICY_NAMES)
def pg(
    request: pytest.FixtureRequest, engine: Engine,
    policy_gates: dict[tuple[str, str], PolicyGate],
) -> PolicyGate:
    """The policy dockgate (baseline, then restricted) in front of ``engine``."""
    return policy_gates[(engine.name, request.param)]


def run_as(pg: PolicyGate, *flags: str) -> tuple[str, ...]:
    """``docker run`` flags the policy otherwise allows, plus ``flags``, before the image."""
    extra = HARDENED if pg.policy == "restricted" else ()
    return (*RUN, *extra, *flags)


# -- mounts dockerd performs: local volume driver options -------------------------------


def daemon_cwd(engine: Engine) -> str:
    """Where a relative ``device`` is resolved: dockerd's working directory."""
    return os.readlink(f"/proc/{engine.daemon.process.pid}/cwd")


def test_local_volume_options_mount_host_filesystems(engine: Engine, pg: PolicyGate) -> None:
    """type=proc mounts the host's procfs, o=bind with a relative device binds a host
    directory; inline Mounts options do the same.  All refused by the policy."""
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    secret_dir = engine.workdir / unique("hostdir")
    secret_dir.mkdir()
    (secret_dir / "secret").write_text("host-secret\n")
    relative = os.path.relpath(secret_dir, daemon_cwd(engine))
    assert not relative.startswith("/")

    # Live on the bare daemon.
    proc_vol, bind_vol = unique("dgra-proc"), unique("dgra-bind")
    engine.docker_direct("volume", "create", "--opt", "type=proc", "--opt", "device=proc",
                         proc_vol)
    seen = engine.docker_direct(*RUN, "-v", f"{proc_vol}:/p", IMAGE,
                                "cat", "/p/sys/kernel/core_pattern").stdout
    assert seen == core_pattern, "the container read the host's procfs through the volume"
    engine.docker_direct("volume", "create", "--opt", "type=none", "--opt", "o=bind",
                         "--opt", f"device={relative}", bind_vol)
    seen = engine.docker_direct(*RUN, "-v", f"{bind_vol}:/v", IMAGE, "cat", "/v/secret").stdout
    assert seen == "host-secret\n", "the container read a host directory through the volume"

    # Refused through dockgate.
    why = "local volume type {!r} is not allowed (dockerd mounts it as root)"
    denied(pg, ("volume", "create", "--opt", "type=proc", "--opt", "device=proc",
                unique("dgra-p")), "volume-options", "DriverOpts " + why.format("proc"))
    denied(pg, ("volume", "create", "--opt", "type=none", "--opt", "o=bind",
                "--opt", f"device={relative}", unique("dgra-b")),
           "volume-options", "DriverOpts " + why.format("none"))
    denied(pg, (*run_as(pg, "--mount", "type=volume,dst=/p,volume-opt=type=proc,"
                                       "volume-opt=device=proc"), IMAGE, "true"),
           "volume-options", "HostConfig.Mounts[0] " + why.format("proc"))
    denied(pg, ("volume", "create", "--opt", "type=overlay", "--opt", "device=overlay",
                "--opt", f"o=lowerdir={secret_dir}", unique("dgra-o")),
           "volume-options", "DriverOpts " + why.format("overlay"))


# -- security profiles -------------------------------------------------------------------


UNSHARE = ("unshare", "-U", "true")
"""Refused by the default seccomp profile (unshare(CLONE_NEWUSER) without CAP_SYS_ADMIN)."""


def profile_unconfines(engine: Engine, pg: PolicyGate, text: str, why: str) -> None:
    """The seccomp profile ``text`` lets the bare daemon's container make a call the
    default profile refuses; through ``pg`` it is refused with ``why`` (baseline) or as a
    custom profile (restricted)."""
    profile = engine.workdir / unique("seccomp.json")
    profile.write_text(text)
    default = engine.docker_direct(*RUN, IMAGE, *UNSHARE, check=False)
    assert default.returncode != 0, "the default profile refuses unshare(CLONE_NEWUSER)"
    engine.docker_direct(*RUN, "--security-opt", f"seccomp={profile}", IMAGE, *UNSHARE)

    if pg.policy == "restricted":
        why = "sets a custom seccomp profile"
    denied(pg, (*run_as(pg, "--security-opt", f"seccomp={profile}"), IMAGE, *UNSHARE),
           "security-options", f"HostConfig.SecurityOpt[{seccomp_index(pg)}] {why}")


def seccomp_index(pg: PolicyGate) -> int:
    """Where the CLI puts ``--security-opt seccomp=`` (after restricted's no-new-privileges)."""
    return 1 if pg.policy == "restricted" else 0


def test_permissive_seccomp_profile(engine: Engine, pg: PolicyGate) -> None:
    """A custom profile with defaultAction SCMP_ACT_ALLOW lets a container call what the
    default profile refuses (unshare of a user namespace); the policy refuses it."""
    profile_unconfines(engine, pg, json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}),
                       "sets a seccomp profile that has defaultAction 'SCMP_ACT_ALLOW'")
    denied(pg, (*run_as(pg, "--security-opt", "seccomp=unconfined"), IMAGE, *UNSHARE),
           "security-options",
           f"HostConfig.SecurityOpt[{seccomp_index(pg)}] disables seccomp (unconfined)")


def test_seccomp_profile_key_in_another_case(engine: Engine, pg: PolicyGate) -> None:
    """The daemon reads a seccomp profile with Go's encoding/json: ``DefaultAction`` after
    ``defaultAction`` sets the same field, last wins, so a profile that reads as refusing
    everything to an exact-key reader runs the container with every syscall allowed.  The
    policy reads keys as the daemon does and refuses the profile."""
    profile_unconfines(
        engine, pg, '{"defaultAction":"SCMP_ACT_ERRNO","DefaultAction":"SCMP_ACT_ALLOW"}',
        "sets a seccomp profile that spells the key 'defaultAction' as 'DefaultAction'")


def test_seccomp_rule_named_by_name_beside_empty_names(engine: Engine, pg: PolicyGate) -> None:
    """moby appends a rule's ``name`` to an empty ``names``: ``{"names": [], "name":
    "unshare", "action": "SCMP_ACT_ALLOW"}`` allows unshare, which a reader of ``names``
    alone takes for a rule naming nothing.  The policy reads the rule as the daemon does."""
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": sorted(seccomp_check.UNCONDITIONAL), "action": "SCMP_ACT_ALLOW"},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
         "includes": {"arches": ["amd64", "x32"]}},
        {"names": [], "name": "unshare", "action": "SCMP_ACT_ALLOW"}]}
    profile_unconfines(engine, pg, json.dumps(profile),
                       "sets a seccomp profile that syscalls[2] allows unshare")


# -- connections dockerd makes: log drivers ------------------------------------------------


@pytest.fixture
def log_socket(engine: Engine) -> Iterator[tuple[str, socket.socket]]:
    """A unix datagram socket on the host, standing in for /dev/log or another daemon's."""
    path = str(engine.workdir / f"{unique('log')[:20]}.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    try:
        yield path, sock
    finally:
        sock.close()
        os.unlink(path)


def test_log_driver_connects_to_a_host_socket(
    engine: Engine, pg: PolicyGate, log_socket: tuple[str, socket.socket]
) -> None:
    """syslog with a unixgram address makes dockerd, as root, write the container's output
    to any unix socket on the host; the policy refuses the driver and stray options."""
    path, sock = log_socket
    engine.docker_direct(*RUN, "--log-driver", "syslog", "--log-opt",
                         f"syslog-address=unixgram://{path}", IMAGE, "echo", "via-dockerd")
    assert b"via-dockerd" in sock.recv(65536), "dockerd wrote to the host socket"

    denied(pg, (*run_as(pg, "--log-driver", "syslog", "--log-opt",
                        f"syslog-address=unixgram://{path}"), IMAGE, "echo", "via-dockgate"),
           "log-drivers", "HostConfig.LogConfig.Type log driver 'syslog' is not allowed")
    denied(pg, (*run_as(pg, "--log-driver", "gelf", "--log-opt",
                        "gelf-address=udp://127.0.0.1:12201"), IMAGE, "true"),
           "log-drivers", "HostConfig.LogConfig.Type log driver 'gelf' is not allowed")
    denied(pg, (*run_as(pg, "--log-driver", f"../../../..{path[:-5]}"), IMAGE, "true"),
           "plain-plugin-names", "is a path, not a plugin name")
    sock.settimeout(0)
    with pytest.raises(BlockingIOError):
        sock.recv(65536)  # nothing was forwarded, so nothing was written


# -- host interfaces dockerd creates: networks -----------------------------------------------


def test_network_options_create_host_interfaces(engine: Engine, pg: PolicyGate) -> None:
    """A bridge name option makes dockerd create (or adopt) a host interface of that
    name; the policy refuses it, and driver names that are paths."""
    ifname = "dgra" + os.urandom(3).hex()
    net = unique("dgra-net")
    engine.docker_direct("network", "create", "--internal", "--subnet", "127.74.1.0/24",
                         "-o", f"com.docker.network.bridge.name={ifname}", net)
    assert Path(f"/sys/class/net/{ifname}").exists(), "dockerd created the host interface"
    engine.docker_direct("network", "rm", net)
    assert not Path(f"/sys/class/net/{ifname}").exists()

    denied(pg, ("network", "create", "--internal", "--subnet", "127.74.1.0/24", "-o",
                f"com.docker.network.bridge.name={ifname}", unique("dgra-net")),
           "networks", "Options[com.docker.network.bridge.name] is a network option")
    assert not Path(f"/sys/class/net/{ifname}").exists()
    denied(pg, ("network", "create", "-d", "ipvlan", "-o", "parent=lo", unique("dgra-net")),
           "networks", "Driver network driver 'ipvlan' is not allowed")
    denied(pg, ("network", "create", "--internal", "--ipam-driver", "../../run/x",
                unique("dgra-net")),
           "plain-plugin-names", "IPAM.Driver driver name '../../run/x' is a path")


# -- resource escapes -----------------------------------------------------------------------


def test_negative_oom_score_adj(engine: Engine, pg: PolicyGate) -> None:
    """OomScoreAdj -500 is accepted by the daemon and written by runc as root at start (the
    host's OOM killer then prefers host processes; this sandbox's runc may lack the right
    to start it, so the daemon's stored config is the oracle).  The policy refuses it (and
    a raised memlock limit)."""
    name = unique("dgra-oom")
    engine.docker_direct("create", "--network", "none", "--name", name, "--oom-score-adj",
                         "-500", IMAGE, "true")
    out = engine.docker_direct("inspect", "--format", "{{.HostConfig.OomScoreAdj}}", name)
    assert out.stdout == "-500\n"
    denied(pg, (*run_as(pg, "--oom-score-adj", "-500"), IMAGE, "true"), "oom-score",
           "HostConfig.OomScoreAdj -500 is below 0")
    denied(pg, (*run_as(pg, "--ulimit", "memlock=-1:-1"), IMAGE, "true"), "ulimits",
           "HostConfig.Ulimits[0] ulimit 'memlock' is not allowed")


# -- daemon defaults made explicit -------------------------------------------------------------


def cgroupns_of(engine: Engine, name: str) -> str:
    out = engine.docker_direct("inspect", "--format", "{{.HostConfig.CgroupnsMode}}", name)
    return str(out.stdout.strip())


def test_cgroup_namespace_default_is_set_private(engine: Engine, pg: PolicyGate) -> None:
    """On a cgroup v1 host an ordinary create lands in the host's cgroup namespace (the
    daemon's default); through the policy dockgate sets CgroupnsMode private in the
    forwarded body and records it, and denies what it cannot set (API 1.40).  A container
    so made starts at API 1.40 too (its stored private mode settles the namespace)."""
    info = json.loads(engine.docker_direct("info", "--format", "{{json .}}").stdout)
    direct = unique("dgra-ns")
    engine.docker_direct("create", "--network", "none", "--name", direct, IMAGE, "true")
    if info.get("CgroupVersion") == "1":
        assert cgroupns_of(engine, direct) == "host", "the daemon's default is the host's"
    old = unique("dgra-ns")
    engine.docker_direct("create", "--network", "none", "--name", old, IMAGE, "true",
                         extra_env={"DOCKER_API_VERSION": "1.40"})
    if info.get("CgroupVersion") == "1":
        assert cgroupns_of(engine, old) == "host"

    mine = unique("dgra-ns")
    mark = pg.mark()
    pg.docker("create", *run_as(pg)[2:], "--name", mine, IMAGE, "true")
    assert cgroupns_of(engine, mine) == "private"
    decided = [r for r in pg.records_since(mark)
               if r["stage"] == "RequestDecided" and r["endpoint"] == "container.create"]
    assert len(decided) == 1 and decided[0]["decision"] in ("allow", "warn"), decided
    assert any("HostConfig.CgroupnsMode set to 'private'" in s
               for s in decided[0].get("set", ())), decided
    pg.docker("start", mine, extra_env={"DOCKER_API_VERSION": "1.40"})
    denied(pg, ("create", *run_as(pg)[2:], IMAGE, "true"), "daemon-defaults",
           "HostConfig.CgroupnsMode is empty", extra_env={"DOCKER_API_VERSION": "1.40"})


CGROUPNS_PROBE = "FROM dgtest:latest\nRUN readlink /proc/self/ns/cgroup\n"


@pytest.mark.xfail(strict=True, reason=(
    "limit: a build's RUN steps take the daemon's default cgroup namespace (the host's on "
    "cgroup v1) and neither /build nor a BuildKit solve can ask for another; only refusing "
    "builds on such daemons would close it (docs/policy.md, limits)"))
def test_build_steps_take_the_hosts_cgroup_namespace(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]
) -> None:
    """On a cgroup v1 host a classic build's RUN step runs in the host's cgroup namespace
    (the daemon's default, which daemon-defaults makes explicit only for container
    create).  Through baseline (restricted refuses builds) the build must be refused or
    its step must run in a namespace of its own."""
    pg = policy_gates[(engine.name, "baseline")]
    ours = os.readlink("/proc/self/ns/cgroup")
    status, out = build(engine.daemon_socket, context({"Dockerfile": CGROUPNS_PROBE}),
                        rm="1", nocache="1")
    assert status == 200 and "Successfully built" in out, out
    if ours not in out:
        pytest.skip("the daemon's default cgroup namespace is private here (cgroup v2)")

    status, out = build(pg.socket, context({"Dockerfile": CGROUPNS_PROBE}), rm="1",
                        nocache="1")
    assert status == 403 or ("Successfully built" in out and ours not in out), out


def test_entering_a_container_with_a_host_bind(engine: Engine, pg: PolicyGate) -> None:
    """A container made directly on the daemon with a host directory bound in (an
    operator's, say) lends that directory to any client that enters it: an exec as
    another user, ``docker cp`` out of it (the daemon copies as root), an attach.  Through
    the policy each is refused, naming the container and the policy's reason: the client
    would get what creating such a container gives, which the policy refuses it."""
    secret_dir = engine.workdir / unique("lent")
    secret_dir.mkdir(mode=0o755)
    secret = secret_dir / "secret"
    secret.write_text("host-secret\n")
    secret.chmod(0o644)
    lender = unique("dgra-lender")
    engine.docker_direct("run", "-d", "--init", "--network", "none", "--pull", "never",
                         "--name", lender, "-v", f"{secret_dir}:/lent:ro", IMAGE, "sleep", "600")
    read = ("exec", "-u", "1000:1000", lender, "cat", "/lent/secret")
    copy = ("cp", f"{lender}:/lent/secret", "-")
    assert engine.docker_direct(*read).stdout == "host-secret\n"
    assert "host-secret" in engine.docker_direct(*copy).stdout

    why = f"container {lender!r} does not pass the policy: denied by policy {pg.policy} rule"
    for args in (read, copy):
        out = pg.docker(*args, check=False, timeout=60)
        assert out.returncode != 0 and "host-secret" not in out.stdout, out.stdout
        assert f"dockgate: {why}" in out.stderr, out.stderr
    status, body = unixhttp.request(
        pg.socket, "POST", f"/containers/{lender}/attach?stream=0&logs=1&stdout=1",
        headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    assert status == 403 and why in json.loads(body)["message"], body


# -- plugin names that are paths ---------------------------------------------------------------


def test_driver_name_with_dots_reaches_a_host_socket(engine: Engine, pg: PolicyGate) -> None:
    """dockerd's legacy plugin discovery joins a driver name into its spec directory, so
    ``../../../<volume mountpoint>/p`` reads a ``p.spec`` a container wrote into a volume
    and dockerd, as root, speaks the plugin protocol to the socket it names.  Refused
    through every policy (the implicit plain-plugin-names rule), privileged included."""
    vol = unique("dgra-spec")
    engine.docker_direct("volume", "create", vol)
    mountpoint = engine.docker_direct("volume", "inspect", "--format", "{{.Mountpoint}}",
                                      vol).stdout.strip()
    plugin = FakePlugin(str(engine.workdir / f"{unique('plug')[:20]}.sock"))
    try:
        engine.docker_direct(*RUN, "-v", f"{vol}:/d", IMAGE, "sh", "-c",
                             f"echo unix://{plugin.path} > /d/p.spec")
        name = "../../.." + mountpoint + "/p"
        out = engine.docker_direct("volume", "create", "--driver", name, unique("dgra-v"),
                                   check=False, timeout=90)
        assert out.returncode != 0  # the fake plugin implements nothing
        assert plugin.activated, (
            "dockerd spoke the plugin protocol to the host socket", out.stderr)
        seen = len(plugin.requests)

        why = f"Driver driver name {name!r} is a path, not a plugin name"
        denied(pg, ("volume", "create", "--driver", name, unique("dgra-v")),
               "plain-plugin-names", why)
        # The session's own dockgate runs the privileged profile: refused there too.
        before = engine.snapshot()
        out = engine.docker("volume", "create", "--driver", name, unique("dgra-v"), check=False)
        assert "denied by policy privileged rule plain-plugin-names" in out.stderr, out.stderr
        assert engine.snapshot() == before
        assert len(plugin.requests) == seen, "dockerd was never asked to look the name up"
    finally:
        plugin.close()



def log_since(engine: Engine, start: int) -> bytes:
    """What the daemon logged after byte ``start`` of its log."""
    with open(engine.daemon.log_path, "rb") as log:
        log.seek(start)
        return log.read()


def test_allowed_driver_name_with_a_final_newline(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]
) -> None:
    """``local\\n`` is not the builtin local driver to the daemon but a plugin it looks up
    (legacy discovery in its plugin directories, retried for 15 s; its log says so at the
    first miss); the policies' allowlist of ``local`` must not take it (Python's ``$``
    matched before the newline)."""
    start = engine.daemon.log_path.stat().st_size
    conn = unixhttp.UnixHTTPConnection(engine.daemon_socket, timeout=2)
    try:
        conn.request("POST", "/volumes/create",
                     body=json.dumps({"Name": unique("dgra-nl"), "Driver": "local\n"}),
                     headers={"Content-Type": "application/json"})
        conn.getresponse().read()  # refused once the retries end: not waited for
    except TimeoutError:
        pass
    finally:
        conn.close()
    looked_up = rb"Unable to locate plugin: local\n"
    deadline = time.monotonic() + 30
    while looked_up not in log_since(engine, start):
        assert time.monotonic() < deadline, "the daemon never looked the plugin up"
        time.sleep(0.2)

    for policy in POLICY_NAMES:
        denied(policy_gates[(engine.name, policy)],
               ("volume", "create", "--driver", "local\n", unique("dgra-nl")),
               "volume-drivers", "Driver volume driver 'local\\n' is not allowed")

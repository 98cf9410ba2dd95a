"""Every control of policies/baseline.yaml and policies/restricted.yaml, with the
real docker CLI against each real daemon through a dockgate running that policy.

For each control the dangerous variant must exit non-zero with the policy's
message verbatim in stderr and leave the daemon untouched (nothing created or
changed, nothing mutating forwarded), and the safe variant must be allowed and
work end to end without any refusal in that dockgate's audit log.

The expected messages are written out here rather than computed with the
policy engine, so that a change in wording shows up as a failing test.
Privileged containers cannot start on these machines: only their denial is
checked.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import engines as eng
from support import policygate
from support.engines import IMAGE, Engine, unique
from support.policygate import PolicyGate, policy_audit_guard, policy_gates, reasons_of, rules_of

from dockgate.policy import load_policy
from dockgate.policy import seccomp as seccomp_check

pytestmark = pytest.mark.engine
_ = (policy_gates, policy_audit_guard)  # fixtures, imported for pytest

BASE = ("run", "--rm", "--network", "none", "--pull", "never")
LIMITS = ("--memory", "64m", "--cpus", "0.5", "--pids-limit", "64")
HARDENED = ("--cap-drop", "ALL", "--security-opt", "no-new-privileges", *LIMITS)
# What restricted needs for a container to be allowed (the user is a separate flag
# so the default-user case can leave it out; a later --user overrides it).
RESTRICTED = (*BASE, "--user", "1000:1000", *HARDENED)
USER_IMAGE = "dgtest-user:latest"
ROOT_SLEEPER = "dgpol-root"
USER_SLEEPER = "dgpol-user"
DENIED = "dockgate: denied by policy {policy} rule {rule}: {text}"
ID_USER = "uid=1000 gid=1000 groups=1000"
PATHS_NOT_MASKED = (
    "HostConfig.MaskedPaths must keep the default paths (missing /proc/asound, /proc/acpi, "
    "/proc/kcore, /proc/keys, /proc/latency_stats, /proc/timer_list, /proc/timer_stats, "
    "/proc/sched_debug, /proc/scsi, /sys/firmware)"
)


@dataclass(frozen=True)
class Denial:
    """A dangerous request: ``args`` for the CLI, and the rule and ``field why`` it must hit.

    ``{root}``/``{user}`` name sleepers running as root / 1000:1000, ``{file}``
    a small file on the host, ``{vol}`` a fresh volume name.
    """

    id: str
    policy: str
    args: tuple[str, ...]
    rule: str
    text: str
    upload: bool = False
    env: tuple[tuple[str, str], ...] = ()


# Finding: dockgate answers 403 and closes before it has read a streamed request
# body (cp into a container, load, import), so the CLI, still writing, may get
# EPIPE and print "write: broken pipe" instead of the denial.  Those cases retry
# (each attempt is checked as denied and harmless) until the message shows.
UPLOAD_ATTEMPTS = 6


@dataclass(frozen=True)
class Allowed:
    """A safe variant: it must succeed and print ``expect`` (exactly, or as a prefix)."""

    id: str
    policy: str
    args: tuple[str, ...]
    expect: str
    covers: tuple[str, ...]
    prefix: bool = False


LOOPBACK_REGISTRY = (
    "query.fromImage registry 127.0.0.1:1 is a loopback address; it is allowed only when "
    "the policy's registries list names it exactly"
)


def run(*flags: str) -> tuple[str, ...]:
    """``docker run`` under baseline: the flags, the test image, a no-op."""
    return (*BASE, *flags, IMAGE, "true")


def rrun(*flags: str) -> tuple[str, ...]:
    """``docker run`` under restricted: hardened, non-root, plus the flags."""
    return (*RESTRICTED, *flags, IMAGE, "true")


def host(path: str) -> str:
    return f"host path {path} is not in the allowed host paths"


def caps(what: str, index: int = 0) -> str:
    return f"HostConfig.CapAdd[{index}] adds {what}, which is not in the allowed capabilities"


def endpoint(eid: str) -> str:
    return f"endpoint {eid} is not allowed"


def local_type(kind: str) -> str:
    return f"local volume type {kind!r} is not allowed (dockerd mounts it as root)"


def root_actions(policy: str, mk: Callable[..., tuple[str, ...]], sec: int) -> list[Denial]:
    """What dockerd does as root for a client: the same attacks under both profiles
    (``mk`` builds a ``docker run`` the profile otherwise allows; ``sec`` is the index
    the first extra SecurityOpt gets)."""
    host_level = "makes the daemon act on the host (host-level field)"
    return [
        Denial("volume-proc", policy,
               ("volume", "create", "--opt", "type=proc", "--opt", "device=proc", "{vol}"),
               "volume-options", "DriverOpts " + local_type("proc")),
        Denial("volume-relative-bind", policy,
               ("volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt",
                "device=../../../../etc", "{vol}"),
               "volume-options", "DriverOpts " + local_type("none")),
        Denial("mount-volume-sysfs", policy,
               mk("--mount", "type=volume,dst=/v,volume-opt=type=sysfs,volume-opt=device=sysfs"),
               "volume-options", "HostConfig.Mounts[0] " + local_type("sysfs")),
        Denial("tmpfs-suid", policy, mk("--tmpfs", "/t:suid"), "tmpfs-options",
               "HostConfig.Tmpfs[/t] tmpfs option 'suid' is not allowed"),
        Denial("tmpfs-rshared", policy, mk("--tmpfs", "/t:rw,rshared"), "tmpfs-options",
               "HostConfig.Tmpfs[/t] tmpfs option 'rshared' is not allowed"),
        Denial("log-syslog-socket", policy,
               mk("--log-driver", "syslog", "--log-opt", "syslog-address=unix:///dev/log"),
               "log-drivers", "HostConfig.LogConfig.Type log driver 'syslog' is not allowed"),
        Denial("log-option-address", policy,
               mk("--log-opt", "fluentd-address=tcp://127.0.0.1:24224"), "log-drivers",
               "HostConfig.LogConfig.Config[fluentd-address] log option 'fluentd-address' is "
               "not allowed for driver '(default)'"),
        Denial("log-driver-path", policy, mk("--log-driver", "../../../run/x"),
               "plain-plugin-names",
               "HostConfig.LogConfig.Type driver name '../../../run/x' is a path, not a plugin name"),
        Denial("volume-driver-path", policy, ("volume", "create", "--driver", "../../x", "{vol}"),
               "plain-plugin-names", "Driver driver name '../../x' is a path, not a plugin name"),
        Denial("network-driver-path", policy,
               ("network", "create", "--internal", "-d", "../../run/x", "{vol}"),
               "plain-plugin-names", "Driver driver name '../../run/x' is a path, not a plugin name"),
        Denial("network-host-bridge", policy,
               ("network", "create", "--internal", "--subnet", "127.71.1.0/24",
                "-o", "com.docker.network.bridge.name=dgpolbr0", "{vol}"),
               "networks", "Options[com.docker.network.bridge.name] is a network option that is "
                           "not allowed"),
        Denial("network-macvlan", policy,
               ("network", "create", "-d", "macvlan", "-o", "parent=lo", "{vol}"),
               "networks", "Driver network driver 'macvlan' is not allowed"),
        Denial("oom-score-negative", policy, mk("--oom-score-adj", "-500"), "oom-score",
               "HostConfig.OomScoreAdj -500 is below 0 (the host's processes would be killed "
               "first)"),
        Denial("ulimit-memlock", policy, mk("--ulimit", "memlock=-1:-1"), "ulimits",
               "HostConfig.Ulimits[0] ulimit 'memlock' is not allowed"),
        Denial("cpu-rt-runtime", policy, mk("--cpu-rt-runtime", "950000"), "closed-world",
               "HostConfig.CpuRealtimeRuntime " + host_level),
        Denial("storage-opt", policy, mk("--storage-opt", "size=1G"), "closed-world",
               "HostConfig.StorageOpt " + host_level),
        Denial("cgroupns-default-old-api", policy, mk(), "daemon-defaults",
               "HostConfig.CgroupnsMode is empty, which means the host's cgroup namespace at "
               "API 1.40 on this daemon (use API 1.41 or later)",
               env=(("DOCKER_API_VERSION", "1.40"),)),
        Denial("apparmor-other-profile", policy,
               mk("--security-opt", "apparmor=lxc-container-default-with-nesting"),
               "security-options", f"HostConfig.SecurityOpt[{sec}] AppArmor profile "
                                   "'lxc-container-default-with-nesting' is not allowed"),
    ]


HOSTNS = "'host' shares the host's namespace"
OTHERNS = "'container:{root}' joins another container's namespace"
BIND_ETC = ("--driver", "local", "--opt", "type=none", "--opt", "o=bind", "--opt", "device=/etc")

B = "baseline"
R = "restricted"
DENIALS = [
    # -- privileged: run, create, exec ------------------------------------------
    Denial("privileged-run", B, run("--privileged"), "no-privileged",
           "HostConfig.Privileged must not be true"),
    Denial("privileged-create", B, ("create", "--network", "none", "--privileged", IMAGE),
           "no-privileged", "HostConfig.Privileged must not be true"),
    Denial("privileged-exec", B, ("exec", "--privileged", "{root}", "true"), "no-privileged",
           "Privileged must not be true"),
    # -- host paths in every shape and spelling -------------------------------------
    Denial("bind", B, run("-v", "/etc:/x"), "no-host-paths", "HostConfig.Binds[0] " + host("/etc")),
    Denial("bind-dotdot", B, run("-v", "/tmp/../etc:/x"), "no-host-paths",
           "HostConfig.Binds[0] " + host("/etc")),
    Denial("bind-double-slash", B, run("-v", "//etc:/x"), "no-host-paths",
           "HostConfig.Binds[0] " + host("/etc")),
    Denial("bind-trailing-slash-ro", B, run("-v", "/etc/:/x:ro"), "no-host-paths",
           "HostConfig.Binds[0] " + host("/etc")),
    Denial("bind-root", B, ("create", "--network", "none", "-v", "/:/host", IMAGE),
           "no-host-paths", "HostConfig.Binds[0] " + host("/")),
    Denial("bind-docker-socket", B, run("-v", "/var/run/docker.sock:/s"), "no-host-paths",
           "HostConfig.Binds[0] " + host("/var/run/docker.sock")),
    Denial("mount-bind", B, run("--mount", "type=bind,src=/etc,dst=/x,readonly"),
           "no-host-paths", "HostConfig.Mounts[0] " + host("/etc")),
    Denial("mount-local-volume-o-bind", B,
           run("--mount", "type=volume,dst=/v,volume-driver=local,volume-opt=type=none,"
                          "volume-opt=o=bind,volume-opt=device=/etc"),
           "no-host-paths", "HostConfig.Mounts[0] " + host("/etc")),
    Denial("volume-create-o-bind", B, ("volume", "create", *BIND_ETC, "{vol}"), "no-host-paths",
           "DriverOpts " + host("/etc")),
    Denial("volume-create-o-bind-spelling", B,
           ("volume", "create", "--opt", "type=none", "--opt", "o=bind",
            "--opt", "device=/tmp/../root//", "{vol}"),
           "no-host-paths", "DriverOpts " + host("/root")),
    Denial("volume-create-block-device", B,
           ("volume", "create", "--opt", "type=ext4", "--opt", "device=/dev/sda1", "{vol}"),
           "no-host-paths", "DriverOpts " + host("/dev/sda1")),
    Denial("volumes-from", B, run("--volumes-from", "{root}"), "no-volumes-from",
           "HostConfig.VolumesFrom[0] '{root}' must not be used: it inherits another "
           "container's mounts"),
    # -- volume drivers -----------------------------------------------------------
    Denial("volume-create-driver", B, ("volume", "create", "--driver", "rexray", "{vol}"),
           "volume-drivers", "Driver volume driver 'rexray' is not allowed"),
    Denial("run-volume-driver", B, run("--volume-driver", "rexray", "-v", "{vol}:/d"),
           "volume-drivers", "HostConfig.VolumeDriver volume driver 'rexray' is not allowed"),
    Denial("mount-volume-driver", B,
           run("--mount", "type=volume,src={vol},dst=/d,volume-driver=rexray"), "volume-drivers",
           "HostConfig.Mounts[0].VolumeOptions.DriverConfig.Name volume driver 'rexray' is not "
           "allowed"),
    # -- capabilities in every spelling ---------------------------------------------
    Denial("cap-all", B, run("--cap-add", "ALL"), "capabilities", caps("every capability")),
    Denial("cap-all-lower", B, ("create", "--network", "none", "--cap-add", "all", IMAGE),
           "capabilities", caps("every capability")),
    Denial("cap-sys-admin", B, run("--cap-add", "SYS_ADMIN"), "capabilities",
           caps("CAP_SYS_ADMIN")),
    Denial("cap-sys-admin-lower", B, run("--cap-add", "cap_sys_admin"), "capabilities",
           caps("CAP_SYS_ADMIN")),
    Denial("cap-sys-admin-prefixed", B, run("--cap-add", "CAP_SYS_ADMIN"), "capabilities",
           caps("CAP_SYS_ADMIN")),
    Denial("cap-second", B, run("--cap-add", "CHOWN", "--cap-add", "sys_admin"), "capabilities",
           caps("CAP_SYS_ADMIN", 1)),
    Denial("cap-net-raw", B, run("--cap-add", "NET_RAW"), "capabilities", caps("CAP_NET_RAW")),
    # -- host namespaces ----------------------------------------------------------
    Denial("net-host", B, ("run", "--rm", "--network", "host", IMAGE, "true"),
           "no-host-namespaces", "HostConfig.NetworkMode " + HOSTNS),
    Denial("net-ns-path", B, ("run", "--rm", "--network", "ns:/proc/1/ns/net", IMAGE, "true"),
           "no-host-namespaces",
           "HostConfig.NetworkMode 'ns:/proc/1/ns/net' names a namespace path"),
    Denial("pid-host", B, run("--pid", "host"), "no-host-namespaces",
           "HostConfig.PidMode " + HOSTNS),
    Denial("ipc-host", B, run("--ipc", "host"), "no-host-namespaces",
           "HostConfig.IpcMode " + HOSTNS),
    Denial("uts-host", B, run("--uts", "host"), "no-host-namespaces",
           "HostConfig.UTSMode " + HOSTNS),
    Denial("userns-host", B, run("--userns", "host"), "no-host-namespaces",
           "HostConfig.UsernsMode " + HOSTNS),
    Denial("cgroupns-host", B, run("--cgroupns", "host"), "no-host-namespaces",
           "HostConfig.CgroupnsMode " + HOSTNS),
    # -- devices ------------------------------------------------------------------
    Denial("device", B, run("--device", "/dev/null:/dev/xnull"), "no-devices",
           "HostConfig.Devices[0] device /dev/null is not allowed"),
    Denial("device-disk", B, run("--device", "/dev/sda"), "no-devices",
           "HostConfig.Devices[0] device /dev/sda is not allowed"),
    Denial("gpus", B, run("--gpus", "all"), "no-devices",
           "HostConfig.DeviceRequests[0] device requests are not allowed"),
    Denial("device-cgroup-rule", B, run("--device-cgroup-rule", "a *:* rwm"), "no-devices",
           "HostConfig.DeviceCgroupRules[0] device cgroup rule 'a *:* rwm' is not allowed"),
    # -- security options, both syntaxes --------------------------------------------
    Denial("seccomp-unconfined", B, run("--security-opt", "seccomp=unconfined"),
           "security-options", "HostConfig.SecurityOpt[0] disables seccomp (unconfined)"),
    Denial("seccomp-unconfined-colon", B, run("--security-opt", "seccomp:unconfined"),
           "security-options", "HostConfig.SecurityOpt[0] disables seccomp (unconfined)"),
    Denial("apparmor-unconfined", B, run("--security-opt", "apparmor=unconfined"),
           "security-options", "HostConfig.SecurityOpt[0] disables AppArmor (unconfined)"),
    Denial("apparmor-unconfined-colon", B, run("--security-opt", "apparmor:unconfined"),
           "security-options", "HostConfig.SecurityOpt[0] disables AppArmor (unconfined)"),
    Denial("label-disable", B, run("--security-opt", "label=disable"), "security-options",
           "HostConfig.SecurityOpt[0] disables SELinux labelling"),
    Denial("label-disable-colon", B, run("--security-opt", "label:disable"), "security-options",
           "HostConfig.SecurityOpt[0] disables SELinux labelling"),
    Denial("label-user", B, run("--security-opt", "label=user:u"), "security-options",
           "HostConfig.SecurityOpt[0] sets the SELinux user"),
    Denial("label-type-spc", B, run("--security-opt", "label=type:spc_t"), "security-options",
           "HostConfig.SecurityOpt[0] SELinux type 'spc_t' is not allowed"),
    Denial("writable-cgroups", B, run("--security-opt", "writable-cgroups=true"),
           "security-options", "HostConfig.SecurityOpt[0] makes the cgroup filesystem writable"),
    Denial("systempaths-unconfined", B, run("--security-opt", "systempaths=unconfined"),
           "no-unmasked-paths", PATHS_NOT_MASKED),
    # -- sysctls, cgroup parent, runtime, OOM killer, ports ----------------------------
    Denial("sysctl-kernel", B, run("--sysctl", "kernel.msgmax=65536"), "safe-sysctls",
           "HostConfig.Sysctls sets kernel.msgmax, which is not in the allowed sysctls"),
    Denial("sysctl-net", B, run("--sysctl", "net.ipv4.ip_forward=1"), "safe-sysctls",
           "HostConfig.Sysctls sets net.ipv4.ip_forward, which is not in the allowed sysctls"),
    Denial("cgroup-parent", B, run("--cgroup-parent", "/evil"), "no-cgroup-parent",
           "HostConfig.CgroupParent cgroup parent '/evil' is not allowed"),
    Denial("runtime", B, run("--runtime", "runsc"), "runtimes",
           "HostConfig.Runtime runtime 'runsc' is not allowed"),
    Denial("oom-kill-disable", B, run("--oom-kill-disable"), "no-oom-kill-disable",
           "HostConfig.OomKillDisable must not be true"),
    Denial("port-80", B, run("-p", "80:80"), "unprivileged-host-ports",
           "HostConfig.PortBindings[80/tcp][0] host port 80 is not in the allowed ranges"),
    Denial("port-22-loopback", B, run("-p", "127.0.0.1:22:22"), "unprivileged-host-ports",
           "HostConfig.PortBindings[22/tcp][0] host port 22 is not in the allowed ranges"),
    # -- escalation endpoints -------------------------------------------------------
    Denial("plugin-ls", B, ("plugin", "ls"), "escalation-endpoints", endpoint("plugin.list")),
    Denial("plugin-install", B, ("plugin", "install", "--grant-all-permissions", "vieux/sshfs"),
           "escalation-endpoints", endpoint("plugin.privileges")),
    Denial("swarm-join-token", B, ("swarm", "join-token", "worker"), "escalation-endpoints",
           endpoint("swarm.inspect")),
    Denial("swarm-leave", B, ("swarm", "leave", "--force"), "escalation-endpoints",
           endpoint("swarm.leave")),
    Denial("secret-ls", B, ("secret", "ls"), "escalation-endpoints", endpoint("secret.list")),
    Denial("secret-create", B, ("secret", "create", "{vol}", "{file}"), "escalation-endpoints",
           endpoint("secret.create")),
    Denial("config-create", B, ("config", "create", "{vol}", "{file}"), "escalation-endpoints",
           endpoint("config.create")),
    Denial("service-create", B,
           ("service", "create", "--no-resolve-image", "--name", "{vol}", IMAGE, "true"),
           "escalation-endpoints", endpoint("service.create")),
    Denial("node-ls", B, ("node", "ls"), "escalation-endpoints", endpoint("node.list")),
    # == restricted: everything above still applies; the hardened flags are set so
    # only the one dangerous flag is wrong =============================================
    Denial("privileged-run", R, rrun("--privileged"), "no-privileged",
           "HostConfig.Privileged must not be true"),
    Denial("privileged-exec", R, ("exec", "-u", "1000", "--privileged", "{user}", "true"),
           "no-privileged", "Privileged must not be true"),
    Denial("bind", R, rrun("-v", "/etc/:/x:ro"), "no-host-paths",
           "HostConfig.Binds[0] " + host("/etc")),
    Denial("volume-create-o-bind", R, ("volume", "create", *BIND_ETC, "{vol}"), "no-host-paths",
           "DriverOpts " + host("/etc")),
    Denial("mount-image", R, rrun("--mount", f"type=image,src={IMAGE},dst=/i"), "volume-types",
           "HostConfig.Mounts[0] mount type image is not allowed"),
    Denial("volume-create-options", R,
           ("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "{vol}"),
           "volume-options", "DriverOpts " + local_type("tmpfs")),
    Denial("volume-create-size", R, ("volume", "create", "--opt", "size=1G", "{vol}"),
           "volume-drivers", "DriverOpts volume driver options are not allowed"),
    Denial("mount-volume-options", R,
           rrun("--mount", "type=volume,dst=/v,volume-opt=type=tmpfs,volume-opt=device=tmpfs"),
           "volume-options", "HostConfig.Mounts[0] " + local_type("tmpfs")),
    Denial("volumes-from", R, rrun("--volumes-from", "{user}"), "no-volumes-from",
           "HostConfig.VolumesFrom[0] '{user}' must not be used: it inherits another "
           "container's mounts"),
    Denial("cap-chown", R, rrun("--cap-add", "CHOWN"), "capabilities", caps("CAP_CHOWN")),
    Denial("cap-all", R, rrun("--cap-add", "all"), "capabilities", caps("every capability")),
    Denial("no-cap-drop", R,
           (*BASE, "--user", "1000:1000", "--security-opt", "no-new-privileges", *LIMITS,
            IMAGE, "true"),
           "capabilities", "HostConfig.CapDrop must drop ALL"),
    Denial("pid-host", R, rrun("--pid", "host"), "no-shared-namespaces",
           "HostConfig.PidMode " + HOSTNS),
    Denial("ipc-container", R, rrun("--ipc", "container:{root}"), "no-shared-namespaces",
           "HostConfig.IpcMode " + OTHERNS),
    Denial("net-container", R,
           ("run", "--rm", "--network", "container:{root}", "--user", "1000:1000", *HARDENED,
            IMAGE, "true"),
           "no-shared-namespaces", "HostConfig.NetworkMode " + OTHERNS),
    Denial("device", R, rrun("--device", "/dev/null"), "no-devices",
           "HostConfig.Devices[0] device /dev/null is not allowed"),
    Denial("seccomp-unconfined", R, rrun("--security-opt", "seccomp=unconfined"),
           "security-options", "HostConfig.SecurityOpt[1] disables seccomp (unconfined)"),
    Denial("seccomp-custom", R, rrun("--security-opt", "seccomp={seccomp}"), "security-options",
           "HostConfig.SecurityOpt[1] sets a custom seccomp profile"),
    Denial("no-new-privileges-missing", R,
           (*BASE, "--user", "1000:1000", "--cap-drop", "ALL", *LIMITS, IMAGE, "true"),
           "security-options", "HostConfig.SecurityOpt must include no-new-privileges"),
    Denial("no-new-privileges-false", R, rrun("--security-opt", "no-new-privileges=false"),
           "security-options", "HostConfig.SecurityOpt[1] must not turn no-new-privileges off"),
    Denial("systempaths-unconfined", R, rrun("--security-opt", "systempaths=unconfined"),
           "no-unmasked-paths", PATHS_NOT_MASKED),
    Denial("sysctl", R, rrun("--sysctl", "kernel.msgmax=65536"), "safe-sysctls",
           "HostConfig.Sysctls sets kernel.msgmax, which is not in the allowed sysctls"),
    Denial("cgroup-parent", R, rrun("--cgroup-parent", "/evil"), "no-cgroup-parent",
           "HostConfig.CgroupParent cgroup parent '/evil' is not allowed"),
    Denial("group-add-0", R, rrun("--group-add", "0"), "no-root-group",
           "HostConfig.GroupAdd[0] '0' adds the root group"),
    Denial("group-add-root", R, rrun("--group-add", "root"), "no-root-group",
           "HostConfig.GroupAdd[0] 'root' adds the root group"),
    Denial("runtime", R, rrun("--runtime", "runsc"), "runtimes",
           "HostConfig.Runtime runtime 'runsc' is not allowed"),
    Denial("oom-kill-disable", R, rrun("--oom-kill-disable"), "no-oom-kill-disable",
           "HostConfig.OomKillDisable must not be true"),
    Denial("publish-all", R, rrun("-P"), "host-ports",
           "HostConfig.PublishAllPorts must not be true"),
    Denial("port-80", R, rrun("-p", "80:80"), "host-ports",
           "HostConfig.PortBindings[80/tcp][0] host port 80 is not in the allowed ranges"),
    # -- the user, in every root spelling; empty means the image's (root here) ------
    Denial("user-empty", R, (*BASE, *HARDENED, IMAGE, "true"), "non-root-user",
           "User is empty and the default user is root"),
    Denial("user-0", R, rrun("--user", "0"), "non-root-user", "User '0' runs as root"),
    Denial("user-00", R, rrun("--user", "00"), "non-root-user", "User '00' runs as root"),
    Denial("user-plus-0", R, rrun("--user", "+0"), "non-root-user", "User '+0' runs as root"),
    Denial("user-root", R, rrun("--user", "root"), "non-root-user", "User 'root' runs as root"),
    Denial("user-0-0", R, rrun("--user", "0:0"), "non-root-user", "User '0:0' runs as root"),
    Denial("user-root-group", R, rrun("--user", "1000:0"), "non-root-user",
           "User '1000:0' runs with the root group"),
    Denial("user-root-group-name", R, rrun("--user", "1000:root"), "non-root-user",
           "User '1000:root' runs with the root group"),
    Denial("user-name", R, rrun("--user", "nobody"), "non-root-user",
           "User 'nobody' must be a numeric non-root uid"),
    Denial("exec-user-0", R, ("exec", "-u", "0", "{user}", "id"), "non-root-user",
           "User '0' runs as root"),
    Denial("exec-user-root", R, ("exec", "-u", "root", "{user}", "id"), "non-root-user",
           "User 'root' runs as root"),
    Denial("exec-default-root", R, ("exec", "{root}", "id"), "non-root-user",
           "User is empty and the default user is root"),
    # A uid with no group gets gid 0 when the image has no passwd entry for it.
    Denial("numeric-user-without-group", R, rrun("--user", "1000"), "non-root-user",
           "User '1000' names no group, so it may run with the root group"),
    # -- limits: required on create, and not removable by update ---------------------
    Denial("no-memory", R,
           (*BASE, "--user", "1000:1000", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--cpus", "0.5", "--pids-limit", "64", IMAGE, "true"),
           "resource-limits", "HostConfig.Memory must set a memory limit"),
    Denial("no-cpus", R,
           (*BASE, "--user", "1000:1000", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--memory", "64m", "--pids-limit", "64", IMAGE, "true"),
           "resource-limits", "HostConfig.NanoCpus must set a CPU limit (NanoCpus or CpuQuota)"),
    Denial("no-pids", R,
           (*BASE, "--user", "1000:1000", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--memory", "64m", "--cpus", "0.5", IMAGE, "true"),
           "resource-limits", "HostConfig.PidsLimit must set a pids limit"),
    Denial("update-pids-unlimited", R, ("update", "--pids-limit", "-1", "{user}"),
           "resource-limits", "PidsLimit must set a pids limit"),
    # (`docker update --pids-limit 0` sends no change at all, so it is no case.)
    # -- endpoints restricted adds, and image import -----------------------------------
    Denial("cp-into", R, ("cp", "{file}", "{user}:/tmp/"), "escalation-endpoints",
           endpoint("container.archive.put"), upload=True),
    Denial("commit", R, ("commit", "{user}", "dgpol-commit:x"), "escalation-endpoints",
           endpoint("image.commit")),
    Denial("load", R, ("load", "-i", "{file}"), "escalation-endpoints", endpoint("image.load"),
           upload=True),
    Denial("plugin-ls", R, ("plugin", "ls"), "escalation-endpoints", endpoint("plugin.list")),
    Denial("import", R, ("import", "{file}", "dgpol-import:x"), "no-image-import",
           "query.fromSrc imports an image the allowlist cannot check", upload=True),
    # -- registries: the daemon would connect to a host loopback port ------------------
    Denial("pull-loopback", B, ("pull", "127.0.0.1:1/x"), "registries", LOOPBACK_REGISTRY),
    Denial("pull-loopback-r", R, ("pull", "127.0.0.1:1/x"), "registries", LOOPBACK_REGISTRY),
    Denial("seccomp-permissive", B, run("--security-opt", "seccomp={seccomp}"),
           "security-options", "HostConfig.SecurityOpt[0] sets a seccomp profile that has "
           "defaultAction 'SCMP_ACT_ALLOW', which does not refuse unlisted syscalls"),
    *root_actions(B, run, 0),
    *root_actions(R, rrun, 1),
]  # fmt: skip

def safe_root_actions(
    policy: str, runner: tuple[str, ...], volume: tuple[str, ...]
) -> list[Allowed]:
    """The safe side of each root-action control, under ``policy``."""
    run_args = (*runner[:-1], "--tmpfs", "/t:rw,noexec,nosuid,size=1m", "--log-driver",
                "json-file", "--log-opt", "max-size=1m", "--oom-score-adj", "500", "--ulimit",
                "nofile=512:512", runner[-1], "sh", "-c", "cat /proc/self/oom_score_adj; ulimit -n")
    return [
        Allowed("root-actions-safe", policy, run_args, "500\n512\n",
                ("tmpfs-options", "log-drivers", "oom-score", "ulimits", "closed-world",
                 "plain-plugin-names")),
        Allowed("network-internal", policy,
                ("network", "create", "--internal", "-o",
                 "com.docker.network.driver.mtu=1400", "{vol}"), "", ("networks",), prefix=True),
        Allowed("volume-options-safe", policy, volume, "{vol}\n", ("volume-options",)),
    ]


ALLOWED = [
    # -- baseline -------------------------------------------------------------------
    Allowed("plain", B, (*BASE, IMAGE, "echo", "ok"), "ok\n",
            ("no-privileged", "no-devices", "no-cgroup-parent", "no-volumes-from")),
    Allowed("volumes", B,
            (*BASE, "--volume-driver", "local", "-v", "{vol}:/data", "--mount", "type=tmpfs,dst=/t",
             "--tmpfs", "/u", IMAGE, "sh", "-c",
             "echo kept > /data/f && cat /data/f && grep -c ' /[tu] ' /proc/mounts"),
            "kept\n2\n", ("no-host-paths", "volume-drivers")),
    Allowed("capabilities", B,
            (*BASE, "--cap-drop", "ALL", "--cap-add", "CHOWN", "--cap-add", "cap_fowner", IMAGE,
             "grep", "CapEff", "/proc/self/status"),
            "CapEff:\t0000000000000009\n", ("capabilities",)),
    Allowed("security-options", B,
            (*BASE, "--security-opt", "no-new-privileges", "--security-opt",
             "seccomp={seccomp_strict}",
             IMAGE, "grep", "NoNewPrivs", "/proc/self/status"),
            "NoNewPrivs:\t1\n", ("security-options",)),
    Allowed("system-paths-stay-masked", B,
            (*BASE, IMAGE, "sh", "-c",
             "grep -c ' /proc/keys ' /proc/mounts; "
             "grep ' /proc/sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1"),
            "1\nro\n", ("no-unmasked-paths",)),
    Allowed("safe-sysctls", B,
            (*BASE, "--sysctl", "net.ipv4.ip_unprivileged_port_start=80", "--sysctl",
             "kernel.shm_rmid_forced=1", IMAGE, "cat",
             "/proc/sys/net/ipv4/ip_unprivileged_port_start", "/proc/sys/kernel/shm_rmid_forced"),
            "80\n1\n", ("safe-sysctls",)),
    Allowed("runtime-oom", B,
            (*BASE, "--runtime", "runc", "--oom-kill-disable=false", IMAGE, "echo", "ok"), "ok\n",
            ("runtimes", "no-oom-kill-disable")),
    Allowed("unprivileged-port", B,
            (*BASE, "-p", "127.0.0.1:18080:80", "-p", "8443", IMAGE, "echo", "ok"), "ok\n",
            ("unprivileged-host-ports",)),
    Allowed("swarm-state-through-info", B, ("info", "--format", "{{.Swarm.LocalNodeState}}"),
            "inactive\n", ("escalation-endpoints",)),
    Allowed("exec", B, ("exec", "{root}", "echo", "ok"), "ok\n", ("no-privileged",)),
    *safe_root_actions(B, (*BASE, IMAGE),
                       ("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
                        "--opt", "o=size=1m,uid=1000", "{vol}")),
    Allowed("exec-as-root-is-audited-only", B, ("exec", "-u", "0", "{root}", "id", "-u"), "0\n",
            ()),
    # -- restricted -----------------------------------------------------------------
    Allowed("hardened", R,
            (*RESTRICTED, IMAGE, "sh", "-c",
             "id; grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status"),
            f"{ID_USER}\nCapBnd:\t0000000000000000\nNoNewPrivs:\t1\n",
            ("no-privileged", "no-host-paths", "no-volumes-from", "capabilities",
             "no-shared-namespaces", "no-devices", "security-options", "no-unmasked-paths",
             "no-cgroup-parent", "no-root-group", "runtimes", "no-oom-kill-disable",
             "non-root-user", "resource-limits")),
    Allowed("hardened-extras", R,
            (*RESTRICTED, "--cap-add", "NET_BIND_SERVICE", "--mount",
             "type=tmpfs,dst=/t", "-v", "{vol}:/data", "--sysctl", "kernel.shm_rmid_forced=1",
             "-p", "127.0.0.1:18081:80", "--runtime", "runc", IMAGE, "sh", "-c",
             "id; grep CapBnd /proc/self/status; cat /proc/sys/kernel/shm_rmid_forced"),
            "uid=1000 gid=1000 groups=1000\nCapBnd:\t0000000000000400\n1\n",
            ("capabilities", "no-root-group", "volume-types", "volume-drivers", "host-ports",
             "safe-sysctls", "runtimes")),
    Allowed("default-user-from-image", R, (*BASE, *HARDENED, USER_IMAGE, "id"), f"{ID_USER}\n",
            ("non-root-user",)),
    Allowed("exec-default-user", R, ("exec", "{user}", "id"), f"{ID_USER}\n", ("non-root-user",)),
    Allowed("exec-as-user-in-root-container", R, ("exec", "-u", "1000:1000", "{root}", "id"),
            f"{ID_USER}\n", ("non-root-user",)),
    Allowed("update-within-limits", R,
            ("update", "--pids-limit", "80", "--memory", "96m", "--memory-swap", "192m",
             "--cpus", "0.4", "{user}"),
            "{user}\n", ("resource-limits",), prefix=True),
    Allowed("cp-out", R, ("cp", "{user}:/bin/busybox", "{out}"), "", ("escalation-endpoints",),
            prefix=True),
    *safe_root_actions(R, (*RESTRICTED, IMAGE), ("volume", "create", "{vol}")),
    Allowed("image-ls", R, ("image", "ls", "--format", "{{.Repository}}", "dgtest"), "dgtest\n",
            ("no-image-import", "escalation-endpoints")),
]  # fmt: skip


def fill(text: str, values: dict[str, str]) -> str:
    """Put the per-engine names into a case's text (only known ``{name}`` fields)."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


@pytest.fixture(scope="module")
def targets(engine_set: dict[str, Engine]) -> Iterator[dict[str, dict[str, str]]]:
    """Per engine, made directly on the daemon (not through any dockgate) once per module:
    a sleeper running as root, one running as 1000:1000, an image whose USER is
    1000:1000, and a small file for commands that need one.

    The sleepers are hardened as restricted requires (which baseline's rules are part
    of), all but the root one's user: exec, attach and cp are judged by the container
    they enter, so a case that enters one pins what its own flags do, and
    ``exec-as-user-in-root-container`` that an exec's non-root user stands in for a
    root container's own."""
    made: dict[str, dict[str, str]] = {}
    try:
        for name, engine in engine_set.items():
            sleep = ("run", "-d", "--init", "--network", "none", "--pull", "never", *HARDENED)
            root = f"{ROOT_SLEEPER}-{name}"
            user = f"{USER_SLEEPER}-{name}"
            engine.docker_direct(*sleep, "--name", root, IMAGE, "sleep", "600")
            engine.docker_direct(
                *sleep, "--name", user, "--user", "1000:1000", IMAGE, "sleep", "600"
            )
            base = unique("dgpol-base")
            engine.docker_direct("create", "--network", "none", "--name", base, IMAGE, "true")
            engine.docker_direct("commit", "--change", "USER 1000:1000", base, USER_IMAGE)
            engine.docker_direct("rm", base)
            seccomp = engine.workdir / "policy-seccomp.json"
            seccomp.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
            strict = engine.workdir / "policy-seccomp-strict.json"
            strict.write_text(json.dumps(STRICT_SECCOMP))
            made[name] = {"root": root, "user": user, "seccomp": str(seccomp), "file": str(seccomp),
                          "seccomp_strict": str(strict)}
        yield made
    finally:
        for name in made:
            engine = engine_set[name]
            engine.docker_direct(
                "rm", "-f", f"{ROOT_SLEEPER}-{name}", f"{USER_SLEEPER}-{name}", check=False
            )
            engine.docker_direct("rmi", USER_IMAGE, check=False)


STRICT_SECCOMP = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "syscalls": [
        {"names": sorted(seccomp_check.UNCONDITIONAL), "action": "SCMP_ACT_ALLOW"},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
         "includes": {"arches": ["amd64", "x32"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"},
    ],
}
"""A profile stricter than the default (its unconditional calls, no clone or socket)."""


def values_for(engine: Engine, targets: dict[str, dict[str, str]]) -> dict[str, str]:
    out = engine.workdir / unique("cp-out")
    return {**targets[engine.name], "vol": unique("dgpol"), "out": str(out)}


def target_state(engine: Engine, args: tuple[str, ...], values: dict[str, str]) -> Any:
    """What a denied request must not change: the daemon's objects and the sleepers' configs."""
    names = [values[k] for k in ("root", "user") if any("{" + k + "}" in a for a in args)]
    configs = {}
    for name in names:
        out = engine.docker_direct("inspect", "--format", "{{json .HostConfig}}", name).stdout
        configs[name] = json.loads(out)
    return engine.snapshot(), configs


def denial_id(case: Denial) -> str:
    return f"{case.policy}-{case.id}"


@pytest.mark.allow_refusals
@pytest.mark.parametrize("case", DENIALS, ids=denial_id)
def test_dangerous_variant_is_denied(
    engine: Engine,
    policy_gates: dict[tuple[str, str], PolicyGate],
    targets: dict[str, dict[str, str]],
    case: Denial,
) -> None:
    """Each dangerous CLI variant is refused by its profile's rule, with the denial in the daemon's
    error shape and in the audit log, no mutating request reaches the daemon, and the daemon's state
    is unchanged."""
    pg = policy_gates[(engine.name, case.policy)]
    values = values_for(engine, targets)
    args = tuple(fill(a, values) for a in case.args)
    expected = DENIED.format(policy=case.policy, rule=case.rule, text=fill(case.text, values))
    before = target_state(engine, case.args, values)

    for _attempt in range(UPLOAD_ATTEMPTS if case.upload else 1):
        mark = pg.mark()
        out = pg.docker(*args, check=False, timeout=60, extra_env=dict(case.env))

        assert out.returncode != 0, out.stdout
        assert target_state(engine, case.args, values) == before, "the daemon's state changed"
        # Only exchanges decided since the mark: the previous test's refusal may
        # finish (its ResponseComplete record) after this test took its mark.
        records = pg.records_since(mark)
        ours = {r["id"] for r in records if r["stage"] == "RequestDecided"}
        records = [r for r in records if r["id"] in ours]
        refused = [r for r in pg.refusals_since(mark) if r["id"] in ours]
        assert refused, records
        reason = expected.removeprefix("dockgate: ")
        assert all(
            r["decision"] == "deny" and rules_of(r)[:1] == [case.rule]
            # the deciding rule's finding is the first line; other failed rules follow
            and reason in [x.split("\n", 1)[0] for x in reasons_of(r)]
            for r in refused
        ), [(r["id"], r["stage"], rules_of(r), reasons_of(r)) for r in refused]
        forwarded = [r for r in records if r not in refused and r["method"] not in ("GET", "HEAD")]
        assert not forwarded, f"mutating requests reached the daemon: {forwarded}"
        if not (case.upload and "broken pipe" in out.stderr):
            break
    wait_for_endings(pg, mark)
    lines = [line.removeprefix("docker: ") for line in out.stderr.splitlines()]
    assert f"Error response from daemon: {expected}" in lines, out.stderr


def wait_for_endings(pg: PolicyGate, mark: int, timeout: float = 15.0) -> None:
    """Wait until every exchange begun since ``mark`` has its ResponseComplete record.

    A refused exchange's last record can reach the log a moment after the CLI
    exits (seen once with `docker pull`); the next test's audit guard must not
    see it as its own.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = pg.records_since(mark)
        begun = {r["id"] for r in records if r.get("stage") == "RequestDecided"}
        ended = {r["id"] for r in records if r.get("stage") == "ResponseComplete"}
        if begun <= ended:
            return
        time.sleep(0.05)


@pytest.mark.parametrize("case", ALLOWED, ids=denial_id)
def test_safe_variant_is_allowed_and_works(
    engine: Engine,
    policy_gates: dict[tuple[str, str], PolicyGate],
    targets: dict[str, dict[str, str]],
    case: Allowed,
) -> None:
    """The safe variant of each case is allowed by the profile, produces the expected output, and
    goes through the policy dockgate without refusals."""
    pg = policy_gates[(engine.name, case.policy)]
    values = values_for(engine, targets)
    mark = pg.mark()

    out = pg.docker(*(fill(a, values) for a in case.args), timeout=120)

    expect = fill(case.expect, values)
    if case.prefix:
        assert out.stdout.startswith(expect), out.stdout
    else:
        assert out.stdout == expect, out.stderr
    assert not pg.refusals_since(mark)
    assert pg.records_since(mark), "the request did not go through the policy dockgate"
    if case.id == "cp-out":
        copied = Path(values["out"])
        assert copied.stat().st_size == os.stat(eng.BUSYBOX).st_size
        copied.unlink()


def test_private_namespaces_are_not_the_hosts(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]
) -> None:
    """Baseline's no-host-namespaces: explicit private modes work and really are private."""
    pg = policy_gates[(engine.name, B)]
    kinds = ("pid", "ipc", "uts", "net", "cgroup")
    script = "; ".join(f"readlink /proc/self/ns/{k}" for k in kinds)
    out = pg.docker(
        *BASE, "--ipc", "private", "--cgroupns", "private", IMAGE, "sh", "-c", script
    ).stdout.split()
    assert len(out) == len(kinds), out
    for kind, inside in zip(kinds, out, strict=True):
        assert inside.startswith(f"{kind}:["), inside
        assert inside != os.readlink(f"/proc/self/ns/{kind}"), f"{kind} namespace is the host's"


def test_joining_another_container_only_warns_under_baseline(
    engine: Engine,
    policy_gates: dict[tuple[str, str], PolicyGate],
    targets: dict[str, dict[str, str]],
) -> None:
    """shared-namespaces is a warn rule: allowed, with the warning shown by the CLI."""
    pg = policy_gates[(engine.name, B)]
    root = targets[engine.name]["root"]
    mark = pg.mark()
    # Its sleep is visible: the pid namespace really is shared.
    out = pg.docker(*BASE, "--pid", f"container:{root}", IMAGE, "pidof", "sleep")
    assert out.stdout.strip().isdigit(), out.stdout
    # The join is pinned to the full id of the container dockgate judged
    # (dockgate.policy.joins), and the warning names what was forwarded.
    full = engine.docker_direct("inspect", "--format", "{{.Id}}", root).stdout.strip()
    warning = (
        f"dockgate: policy baseline rule shared-namespaces: HostConfig.PidMode "
        f"'container:{full}' joins another container's namespace"
    )
    assert f"WARNING: {warning}" in out.stderr.splitlines(), out.stderr
    creates = [r for r in pg.records_since(mark) if r["endpoint"] == "container.create"]
    assert len({r["id"] for r in creates}) == 1, creates  # one request (maybe several stages)
    assert {r["decision"] for r in creates} == {"warn"}, creates
    assert all(rules_of(r)[:1] == ["shared-namespaces"] for r in creates), creates


def test_local_volume_without_a_host_device_is_allowed_under_baseline(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]
) -> None:
    """The safe side of the o=bind/device= denial: a local tmpfs volume."""
    pg = policy_gates[(engine.name, B)]
    vol = unique("dgpol-tmpfs")
    pg.docker(
        "volume", "create", "--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
        "--opt", "o=size=1m", vol,
    )  # fmt: skip
    script = "echo kept > /d/f && cat /d/f && grep ' /d ' /proc/mounts | cut -d' ' -f3"
    out = pg.docker(*BASE, "-v", f"{vol}:/d", IMAGE, "sh", "-c", script)
    assert out.stdout == "kept\ntmpfs\n"
    pg.docker("volume", "rm", vol)


def test_update_keeps_limits_under_restricted(
    engine: Engine,
    policy_gates: dict[tuple[str, str], PolicyGate],
    targets: dict[str, dict[str, str]],
) -> None:
    """An update that sets every limit is allowed, and the daemon applied it."""
    pg = policy_gates[(engine.name, R)]
    user = targets[engine.name]["user"]
    pg.docker("update", "--pids-limit", "90", "--memory", "80m", "--memory-swap", "160m", user)
    got = engine.docker_direct(
        "inspect", "--format", "{{.HostConfig.PidsLimit}} {{.HostConfig.Memory}}", user
    ).stdout.split()
    assert got == ["90", str(80 << 20)]


@pytest.mark.allow_refusals
def test_update_of_cpu_alone_is_allowed_under_restricted(
    engine: Engine,
    policy_gates: dict[tuple[str, str], PolicyGate],
    targets: dict[str, dict[str, str]],
) -> None:
    """Under restricted, an update that only changes the CPU limit is allowed and succeeds."""
    pg = policy_gates[(engine.name, R)]
    user = targets[engine.name]["user"]
    mark = pg.mark()
    out = pg.docker("update", "--cpus", "0.25", user, check=False)
    assert pg.refusals_since(mark) == []
    assert out.returncode == 0, out.stderr


@pytest.mark.allow_refusals
def test_swarm_init_is_denied_by_policy(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]
) -> None:
    """docker swarm init is refused by baseline's escalation-endpoints rule."""
    pg = policy_gates[(engine.name, B)]
    out = pg.docker("swarm", "init", "--listen-addr", "127.0.0.1:2377", check=False)
    assert out.returncode != 0
    expected = DENIED.format(policy=B, rule="escalation-endpoints", text=endpoint("swarm.init"))
    assert expected in out.stderr


SPECIAL_COVERS = {
    (B, "daemon-defaults"),  # test_policy_root_actions.py: cgroup namespace set / denied
    (R, "daemon-defaults"),
    (B, "no-host-namespaces"),  # test_private_namespaces_are_not_the_hosts
    (B, "shared-namespaces"),  # test_joining_another_container_only_warns_under_baseline
    # test_read_side.py: test_docker_hub_passes_the_registry_rule (these daemons have
    # no network, so no registry request can succeed end to end)
    (B, "registries"),
    (R, "registries"),
    (B, "build-fetches"),  # tests/integration/test_attacks_build.py
    (R, "build-fetches"),  # tests/integration/test_attacks_build.py
}


# Rules whose denial needs more than a CLI command line (a build context, a server).
SPECIAL_DENIALS = {
    (B, "build-fetches"),  # tests/integration/test_attacks_build.py
    (R, "build-fetches"),  # there too (restricted refuses image.build before it)
}


@pytest.mark.parametrize("policy", [B, R])
def test_every_enforced_rule_has_a_denial_and_a_safe_variant(policy: str) -> None:
    """No rule of the shipped profiles is left without a real-client case on either side."""
    compiled = load_policy(str(policygate.POLICIES / f"{policy}.yaml"))
    enforced = {r.id for r in compiled.rules if r.mode == "enforce"}
    denied = {c.rule for c in DENIALS if c.policy == policy}
    denied |= {rule for p, rule in SPECIAL_DENIALS if p == policy}
    allowed = {rule for c in ALLOWED if c.policy == policy for rule in c.covers}
    allowed |= {rule for p, rule in SPECIAL_COVERS if p == policy}
    assert enforced - denied == set(), "enforced rules without a denial case"
    assert enforced - allowed == set(), "enforced rules without a safe case"
    assert denied - enforced == set(), "denial cases naming rules that do not enforce"
    ids = [c.id for c in DENIALS if c.policy == policy] + [
        c.id for c in ALLOWED if c.policy == policy
    ]
    assert len(ids) == len(set(ids)), "duplicate case ids"

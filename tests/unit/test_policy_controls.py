"""Every control, on every endpoint shape that can carry what it governs."""

from __future__ import annotations

from typing import Any

import pytest

from dockgate.model import CanonicalRequest, Decision, Operation, Peer
from dockgate.policy import DecisionContext
from dockgate.policy import spelling as user_spelling
from dockgate.policy.controls import DEFAULT_MASKED, DEFAULT_READONLY
from dockgate.policy.decision import decide as gate
from dockgate.policy.rules import CompiledPolicy, compile_policy
from dockgate.policy.source import parse_yaml

PEER = Peer("main", "unix", "@", uid=1000, gid=1000)


def rule(control: str, mode: str = "enforce", extra: str = "") -> CompiledPolicy:
    text = f"name: t\nrules:\n  - id: r\n    mode: {mode}\n    {control}\n{extra}"
    return compile_policy(parse_yaml(text, "t.yaml"))


def req(eid: str, body: Any = None, query: tuple[tuple[str, str], ...] = ()) -> CanonicalRequest:
    ep = Operation(eid, "POST", "/x", "json" if body is not None else "none")
    return CanonicalRequest("POST", ep, "/x", query=query, body=body)


def create(**hc: Any) -> CanonicalRequest:
    return req("container.create", {"Image": "busybox", "HostConfig": hc})


def decide(p: CompiledPolicy, r: CanonicalRequest, ctx: DecisionContext | None = None) -> Decision:
    return p.decide(r, PEER, ctx)


def denied(p: CompiledPolicy, r: CanonicalRequest) -> bool:
    return decide(p, r).verdict == "deny"


# -- decisions and modes -------------------------------------------------------------


def test_denial_reason_is_exact() -> None:
    """A denial names the policy, the rule and the finding in one exact sentence, and the rule id is
    recorded on the decision."""
    d = decide(rule("privileged: {allow: false}"), create(Privileged=True))
    assert d.verdict == "deny"
    assert d.rule == "r"
    assert d.reason == "denied by policy t rule r: HostConfig.Privileged must not be true"


def test_warn_mode_allows_with_warning() -> None:
    """A rule in warn mode allows the request and carries the finding as a dockgate warning (shown
    to the client) naming the policy and rule."""
    d = decide(rule("privileged: {}", mode="warn"), create(Privileged=True))
    assert d.verdict == "warn" and d.allowed
    assert d.rule == "r"
    assert d.warnings == ("dockgate: policy t rule r: HostConfig.Privileged must not be true",)


def test_audit_mode_allows_and_records() -> None:
    """A rule in audit mode allows the request without a client-visible warning; the finding appears
    only in the reason and in the evaluation's audit list."""
    p = rule("privileged: {}", mode="audit")
    d = decide(p, create(Privileged=True))
    assert d.verdict == "allow" and d.warnings == ()
    assert "audit: rule r: HostConfig.Privileged must not be true" in d.reason
    ev = p.evaluate(create(Privileged=True), PEER)
    assert [f.rule for f in ev.audit] == ["r"]


def test_enforce_wins_and_first_enforce_rule_decides() -> None:
    """With warn and enforce rules both matching, the first enforcing rule decides the denial, and
    the trail lists every rule evaluated in order."""
    text = (
        "name: t\nrules:\n  - id: w\n    mode: warn\n    privileged: {}\n"
        "  - id: a\n    privileged: {}\n  - id: b\n    volumes_from: {}\n"
    )
    p = compile_policy(parse_yaml(text, "t.yaml"))
    d = decide(p, create(Privileged=True, VolumesFrom=["x"]))
    assert (d.verdict, d.rule) == ("deny", "a")
    ev = p.evaluate(create(Privileged=True, VolumesFrom=["x"]), PEER, trail=True)
    assert [s.rule for s in ev.trail] == ["plain-plugin-names", "w", "a", "b"]


def test_endpoint_scope_and_exemption() -> None:
    """applies_to limits a rule to matching endpoints and exempt lets the named callers (uid 0 here)
    through."""
    p = rule("privileged: {}", extra="    applies_to: [exec.*]\n    exempt: {uids: [0]}\n")
    assert not denied(p, create(Privileged=True))
    assert denied(p, req("exec.create", {"Privileged": True}))
    assert p.decide(req("exec.create", {"Privileged": True}), Peer("m", "unix", "@", uid=0)).allowed


def test_policy_failure_fails_closed() -> None:
    """A policy that raises while deciding makes the decision point deny the request (fail closed).
    """
    class Broken:
        name = "broken"

        def decide(self, request: CanonicalRequest, peer: Peer) -> Decision:
            raise RuntimeError("boom")

    assert gate(Broken(), create(), PEER).verdict == "deny"


# -- endpoints -----------------------------------------------------------------------


def test_endpoints_deny_and_allow_globs() -> None:
    """The endpoints control denies endpoints matching its deny globs with an exact reason, and with
    an allow list denies every endpoint outside it."""
    p = rule("endpoints: {deny: ['plugin.*', 'swarm.*']}")
    d = decide(p, req("plugin.pull", []))
    assert d.reason == "denied by policy t rule r: endpoint plugin.pull is not allowed"
    assert denied(p, req("swarm.init", {}))
    assert not denied(p, req("system.ping"))
    only = rule("endpoints: {allow: ['system.*', 'container.list']}")
    assert not denied(only, req("system.ping"))
    assert denied(only, req("container.create", {}))


# -- privileged ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("r", "field"),
    [
        (create(Privileged=True), "HostConfig.Privileged"),
        (req("exec.create", {"Privileged": True, "Cmd": ["sh"]}), "Privileged"),
        (req("container.update", {"Privileged": True}), "Privileged"),
        (req("container.start", {"Privileged": True}), "Privileged"),
        (req("service.create", {"TaskTemplate": {"PluginSpec": {}}}), "TaskTemplate.PluginSpec"),
        (create(Privileged=1), "HostConfig.Privileged"),
    ],
)
def test_privileged(r: CanonicalRequest, field: str) -> None:
    """The privileged control denies a true Privileged (or a swarm PluginSpec, or a truthy non-
    boolean) on every endpoint that carries it, naming the field."""
    d = decide(rule("privileged: {}"), r)
    assert d.verdict == "deny" and f": {field} must not be true" in d.reason


def test_privileged_false_and_missing_hostconfig() -> None:
    """A false Privileged, a missing or null HostConfig and an empty body are not privileged and
    pass."""
    p = rule("privileged: {}")
    assert not denied(p, create(Privileged=False))
    assert not denied(p, req("container.create", {"Image": "x"}))
    assert not denied(p, req("container.create", {"Image": "x", "HostConfig": None}))
    assert not denied(p, req("container.create", None))


# -- host paths and mounts --------------------------------------------------------------

HOSTS = "host_paths: {allow: ['/srv/data', '/home/*/src'], deny: ['/srv/data/secret']}"


@pytest.mark.parametrize(
    "hc",
    [
        {"Binds": ["/etc:/x"]},
        {"Binds": ["/srv/data/../../etc:/x"]},
        {"Binds": ["//etc:/x:ro"]},
        {"Binds": ["/srv/data/secret/:/x"]},
        {"Binds": ["/srv/data//secret:/x"]},
        {"Binds": ["/home/a/b/src:/x"]},
        {"Mounts": [{"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/s"}]},
        {"Mounts": [{"Type": "bind", "Source": "relative", "Target": "/s"}]},
        {"Mounts": [{"Type": "volume", "Source": "v", "Target": "/v", "VolumeOptions": {
            "DriverConfig": {"Name": "local", "Options": {"type": "none", "o": "bind",
                                                         "device": "/etc"}}}}]},
        {"Mounts": [{"Type": "volume", "Target": "/v", "VolumeOptions": {
            "DriverConfig": {"Options": {"type": "ext4", "device": "/dev/sda1"}}}}]},
        {"Mounts": [{"Type": "weird", "Target": "/v"}]},
        {"Binds": ["/srv/data:/x:bogus"]},
        {"Binds": ["a:b:c:d"]},
        {"Binds": [":/x"]},
    ],
)
def test_host_paths_denied(hc: dict[str, Any]) -> None:
    """host_paths refuses binds and mounts outside the allowed roots, including dot-dot and double-
    slash escapes, relative sources, bind-like local volume options, block devices, unknown mount
    types and malformed bind strings."""
    assert denied(rule(HOSTS), create(**hc))


@pytest.mark.parametrize(
    "hc",
    [
        {"Binds": ["/srv/data:/x"]},
        {"Binds": ["/srv/data/sub/:/x:ro,z"]},
        {"Binds": ["/home/alice/src:/x"]},
        {"Binds": ["named:/x", "/anon"]},
        {"Mounts": [{"Type": "volume", "Source": "v", "Target": "/v"}]},
        {"Mounts": [{"Type": "tmpfs", "Target": "/t"}]},
        {"Mounts": [{"Type": "volume", "Target": "/v", "VolumeOptions": {"DriverConfig": {
            "Options": {"type": "nfs", "o": "addr=10.0.0.1", "device": ":/export"}}}}]},
    ],
)
def test_host_paths_allowed(hc: dict[str, Any]) -> None:
    """host_paths lets through binds under an allowed root (with options), named and anonymous
    volumes, tmpfs, and network volume options that name no host path."""
    assert not denied(rule(HOSTS), create(**hc))


def test_host_paths_on_volume_create_and_services() -> None:
    """host_paths also governs volume create driver options and service bind mounts (create and
    update), while a plain named volume passes."""
    p = rule("host_paths: {allow: []}")
    assert denied(p, req("volume.create", {"Driver": "local", "DriverOpts": {
        "type": "none", "o": "bind", "device": "/"}}))
    assert not denied(p, req("volume.create", {"Name": "v"}))
    svc = {"TaskTemplate": {"ContainerSpec": {"Image": "x", "Mounts": [
        {"Type": "bind", "Source": "/", "Target": "/h"}]}}}
    assert denied(p, req("service.create", svc))
    assert denied(p, req("service.update", svc))


def test_host_paths_read_only_and_propagation() -> None:
    """With read_only a bind must be mounted read-only (ro, rro, ro-non-recursive or ReadOnly);
    shared bind propagation is refused even without read_only."""
    p = rule("host_paths: {allow: ['/srv'], read_only: true}")
    assert denied(p, create(Binds=["/srv/a:/a"]))
    assert denied(p, create(Binds=["/srv/a:/a:rw"]))
    assert not denied(p, create(Binds=["/srv/a:/a:ro"]))
    assert not denied(p, create(Binds=["/srv/a:/a:rro"]))
    assert not denied(p, create(Binds=["/srv/a:/a:ro-non-recursive"]))
    assert not denied(p, create(Mounts=[{"Type": "bind", "Source": "/srv", "Target": "/a",
                                         "ReadOnly": True}]))
    shared = rule("host_paths: {allow: ['/srv']}")
    assert denied(shared, create(Binds=["/srv:/a:rshared"]))
    assert denied(shared, create(Mounts=[{"Type": "bind", "Source": "/srv", "Target": "/a",
                                          "BindOptions": {"Propagation": "shared"}}]))
    assert not denied(shared, create(Binds=["/srv:/a:rslave"]))


def test_host_paths_resolve_symlinks(tmp_path: Any) -> None:
    """A symlink under an allowed root that points outside it is refused, whether resolve_symlinks
    is on or not; the allowed root itself passes."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "root").symlink_to("/")
    p = rule(f"host_paths: {{allow: ['{allowed}'], resolve_symlinks: true}}")
    assert denied(p, create(Binds=[f"{allowed}/root:/x"]))
    assert not denied(p, create(Binds=[f"{allowed}:/x"]))
    # A symlink below an allowed root is refused whether or not it is resolved
    # (dockgate.policy.hostpaths): its target can change before the daemon mounts it.
    lax = rule(f"host_paths: {{allow: ['{allowed}']}}")
    assert denied(lax, create(Binds=[f"{allowed}/root:/x"]))


def test_mount_types() -> None:
    """mount_types refuses bind strings, image mounts and bind-like local volumes when only volume
    and tmpfs are allowed, and lets named volumes and tmpfs through."""
    p = rule("mount_types: {allow: [volume, tmpfs]}")
    assert denied(p, create(Binds=["/a:/b"]))
    assert denied(p, create(Mounts=[{"Type": "image", "Source": "x", "Target": "/i"}]))
    assert denied(p, create(Mounts=[{"Type": "volume", "Target": "/v", "VolumeOptions": {
        "DriverConfig": {"Options": {"o": "bind", "device": "/etc"}}}}]))
    assert not denied(p, create(Binds=["v:/b"], Mounts=[{"Type": "tmpfs", "Target": "/t"}]))


def test_volume_drivers_and_options() -> None:
    """volume_drivers refuses drivers outside the allow list (in VolumeDriver, volume create and
    mount DriverConfig) and, when driver options are off, any DriverOpts."""
    p = rule("volume_drivers: {allow: [local], allow_driver_options: false}")
    assert denied(p, create(VolumeDriver="evil", Binds=["v:/v"]))
    assert denied(p, req("volume.create", {"Driver": "evil"}))
    assert denied(p, req("volume.create", {"DriverOpts": {"type": "tmpfs"}}))
    assert denied(p, create(Mounts=[{"Type": "volume", "Target": "/v", "VolumeOptions": {
        "DriverConfig": {"Name": "rexray"}}}]))
    assert not denied(p, req("volume.create", {"Name": "v", "Driver": "local"}))


def test_volumes_from() -> None:
    """volumes_from denies a container that mounts another's volumes and allows an empty
    VolumesFrom."""
    p = rule("volumes_from: {}")
    assert denied(p, create(VolumesFrom=["other:ro"]))
    assert not denied(p, create(VolumesFrom=[]))


# -- capabilities ----------------------------------------------------------------------

CAPS = "capabilities: {add: [CHOWN, NET_BIND_SERVICE], drop: [ALL]}"


@pytest.mark.parametrize("cap", ["SYS_ADMIN", "sys_admin", "CAP_SYS_ADMIN", "cap_sys_admin",
                                 "Cap_Sys_Admin", "ALL", "all", "NET_RAW", " CHOWN"])
def test_capabilities_denied(cap: str) -> None:
    """Capabilities outside the allow list are refused in every spelling (case, CAP_ prefix, ALL, a
    leading space)."""
    assert denied(rule(CAPS), create(CapAdd=[cap], CapDrop=["ALL"]))


@pytest.mark.parametrize("cap", ["chown", "CAP_CHOWN", "net_bind_service", "cap_net_bind_service"])
def test_capabilities_allowed(cap: str) -> None:
    """Allowed capabilities pass in any case and with or without the CAP_ prefix."""
    assert not denied(rule(CAPS), create(CapAdd=[cap], CapDrop=["all"]))


def test_capability_drop_required() -> None:
    """A required drop must be present (ALL covers it, case-insensitively); update bodies are not
    asked for it, and service CapabilityAdd and the legacy Capabilities list are checked too."""
    p = rule(CAPS)
    assert denied(p, create())
    assert denied(p, create(CapDrop=["NET_RAW"]))
    assert not denied(p, create(CapDrop=["cap_net_raw", "All"]))
    assert not denied(p, req("container.update", {"Memory": 1}))
    svc = {"TaskTemplate": {"ContainerSpec": {"CapabilityAdd": ["CAP_SYS_ADMIN"],
                                              "CapabilityDrop": ["ALL"]}}}
    assert denied(p, req("service.create", svc))
    assert denied(rule("capabilities: {add: []}"), create(Capabilities=["CAP_SYS_MODULE"]))


# -- namespaces ------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["PidMode", "IpcMode", "NetworkMode", "UTSMode", "UsernsMode",
                                   "CgroupnsMode"])
@pytest.mark.parametrize("value", ["host", "HOST", " host", "container:abc", "ns:/proc/1/ns/net",
                                   "/proc/1/ns/pid"])
def test_namespaces_denied(field: str, value: str) -> None:
    """Host and other-container namespaces are refused in each namespace field, whatever the case,
    padding or path spelling of the value."""
    assert denied(rule("namespaces: {}"), create(**{field: value}))


@pytest.mark.parametrize("value", ["", "private", "bridge", "none", "shareable", "mynet"])
def test_namespaces_allowed(value: str) -> None:
    """Private namespace modes (empty, private, bridge, none, shareable, a network name) pass."""
    p = rule("namespaces: {}")
    assert not denied(p, create(NetworkMode=value, IpcMode=value, PidMode=value))


def test_namespaces_other_shapes() -> None:
    """Host networking is caught in NetworkingConfig, a build's networkmode query and a service's
    networks; fields limits the control, and allow_container admits container: modes."""
    p = rule("namespaces: {}")
    assert denied(p, req("container.create", {"NetworkingConfig": {"EndpointsConfig": {
        "host": {}}}}))
    assert denied(p, req("image.build", None, (("networkmode", "host"),)))
    assert denied(p, req("service.create", {"TaskTemplate": {"Networks": [{"Target": "host"}]}}))
    fields = rule("namespaces: {allow_container: true, fields: [PidMode]}")
    assert not denied(fields, create(PidMode="container:x", NetworkMode="host"))
    assert denied(fields, create(PidMode="host"))


# -- devices ---------------------------------------------------------------------------


def test_devices() -> None:
    """devices refuses host devices outside the allow list (also through dot-dot), device requests
    and cgroup rules unless allowed, on create and update."""
    p = rule("devices: {allow: ['/dev/fuse']}")
    assert denied(p, create(Devices=[{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/x"}]))
    assert denied(p, create(Devices=[{"PathOnHost": "/dev/../dev/sda"}]))
    assert not denied(p, create(Devices=[{"PathOnHost": "/dev/fuse"}]))
    assert denied(p, create(DeviceRequests=[{"Driver": "nvidia", "Count": -1}]))
    assert denied(p, create(DeviceCgroupRules=["a *:* rwm"]))
    assert denied(p, req("container.update", {"Devices": [{"PathOnHost": "/dev/mem"}]}))
    assert denied(p, req("container.update", {"DeviceCgroupRules": ["c 1:1 rwm"]}))
    ok = rule("devices: {allow_requests: true, allow_cgroup_rules: true}")
    assert not denied(ok, create(DeviceRequests=[{}], DeviceCgroupRules=["c 1:3 mr"]))


# -- security options ------------------------------------------------------------------


@pytest.mark.parametrize(
    "opt",
    [
        "seccomp=unconfined", "seccomp:unconfined", "seccomp=Unconfined",
        "apparmor=unconfined", "apparmor:unconfined",
        "label=disable", "label:disable", "disable",
        "label=user:root", "label:role:sysadm_r", "label=type:spc_t",
        "writable-cgroups=true", "writable-cgroups:1",
        "bogus=1", "unknown", "no-new-privileges=maybe",
    ],
)
def test_security_options_denied(opt: str) -> None:
    """Security options that weaken confinement (unconfined seccomp or AppArmor, disabled or foreign
    SELinux labels, writable cgroups) and unknown or malformed options are refused in both separator
    spellings."""
    p = rule("security_options: {label_types: [container_t]}")
    assert denied(p, create(SecurityOpt=[opt]))


@pytest.mark.parametrize(
    "opt",
    ["seccomp=builtin", 'seccomp={"defaultAction":"SCMP_ACT_ERRNO"}', "apparmor=docker-default",
     "label=type:container_t", "label=level:s0:c100,c200", "no-new-privileges",
     "no-new-privileges=true", "no-new-privileges:false", "writable-cgroups=false"],
)
def test_security_options_allowed(opt: str) -> None:
    """Confining security options (builtin or custom seccomp, docker-default AppArmor, allowed label
    types and levels, no-new-privileges in its spellings) pass."""
    p = rule("security_options: {label_types: [container_t]}")
    assert not denied(p, create(SecurityOpt=[opt]))


def test_no_new_privileges_required() -> None:
    """require_no_new_privileges needs a single true no-new-privileges (any true spelling) on
    containers and services, not on exec, and custom seccomp can be refused."""
    p = rule("security_options: {require_no_new_privileges: true, allow_custom_seccomp: false}")
    assert denied(p, create())
    assert denied(p, create(SecurityOpt=["no-new-privileges=true", "no-new-privileges=false"]))
    assert denied(p, create(SecurityOpt=["no-new-privileges", 'seccomp={"x":1}']))
    for spelling in ("no-new-privileges", "no-new-privileges=true", "no-new-privileges:1",
                     "no-new-privileges=True"):
        assert not denied(p, create(SecurityOpt=[spelling]))
    assert not denied(p, req("exec.create", {"Cmd": ["sh"]}))
    svc = {"TaskTemplate": {"ContainerSpec": {"Privileges": {"NoNewPrivileges": True}}}}
    assert not denied(p, req("service.create", svc))
    assert denied(p, req("service.create", {"TaskTemplate": {"ContainerSpec": {}}}))


def test_service_privileges() -> None:
    """Service Privileges that unconfine seccomp, disable AppArmor or SELinux, or set an SELinux
    user are refused on service update."""
    p = rule("security_options: {}")
    for priv in ({"Seccomp": {"Mode": "unconfined"}}, {"AppArmor": {"Mode": "disabled"}},
                 {"SELinuxContext": {"Disable": True}}, {"SELinuxContext": {"User": "root"}}):
        body = {"TaskTemplate": {"ContainerSpec": {"Privileges": priv}}}
        assert denied(p, req("service.update", body)), priv


def test_system_paths() -> None:
    """system_paths refuses emptied or shortened masked and read-only path lists and
    systempaths=unconfined, while the defaults (or more) and a null list pass."""
    p = rule("system_paths: {}")
    assert denied(p, create(MaskedPaths=[]))
    assert denied(p, create(ReadonlyPaths=[]))
    assert denied(p, create(MaskedPaths=["/proc/kcore"]))
    assert denied(p, create(SecurityOpt=["systempaths=unconfined"]))
    assert not denied(p, create(MaskedPaths=[*DEFAULT_MASKED, "/proc/extra"],
                                ReadonlyPaths=list(DEFAULT_READONLY)))
    assert not denied(p, create(MaskedPaths=None))


# -- sysctls, cgroups, groups, runtimes, oom ------------------------------------------------


def test_sysctls() -> None:
    """sysctls allows only listed names and globs, in dot or slash spelling, on containers and
    services."""
    p = rule("sysctls: {allow: [net.ipv4.ping_group_range, 'net.ipv4.tcp_keepalive_*']}")
    assert denied(p, create(Sysctls={"kernel.core_pattern": "|/x"}))
    assert denied(p, create(Sysctls={"net/ipv4/ip_forward": "1"}))
    assert not denied(p, create(Sysctls={"net/ipv4/ping_group_range": "0 1"}))
    assert not denied(p, create(Sysctls={"net.ipv4.tcp_keepalive_time": "5"}))
    svc = {"TaskTemplate": {"ContainerSpec": {"Sysctls": {"kernel.modprobe": "/x"}}}}
    assert denied(p, req("service.create", svc))


def test_cgroup_parent_group_add_runtime_oom() -> None:
    """cgroup_parent, group_add (root group in any spelling), runtimes and oom_kill_disable each
    refuse what they govern and pass what they allow, on create and update."""
    assert denied(rule("cgroup_parent: {}"), create(CgroupParent="/"))
    assert denied(rule("cgroup_parent: {}"), req("container.update", {"CgroupParent": "x"}))
    assert not denied(rule("cgroup_parent: {allow: ['tenant-*']}"), create(CgroupParent="tenant-a"))
    g = rule("group_add: {allow_root: false}")
    for root in ("0", "00", "root", "+0"):
        assert denied(g, create(GroupAdd=[root])), root
    # The daemon matches each entry by name first in the container's /etc/group
    # (a group named 1000 may be gid 0): without allow_root, no entry passes.
    for other in ("audio", "1000"):
        assert denied(g, create(GroupAdd=[other])), other
    assert not denied(g, create())
    assert not denied(rule("group_add: {allow_root: true}"), create(GroupAdd=["audio", "1000"]))
    assert denied(rule("group_add: {allow: [audio], allow_root: true}"), create(GroupAdd=["docker"]))
    rt = rule("runtimes: {allow: [runc]}")
    assert denied(rt, create(Runtime="nvidia"))
    assert not denied(rt, create(Runtime="runc"))
    assert not denied(rt, create())
    oom = rule("oom_kill_disable: {}")
    assert denied(oom, create(OomKillDisable=True))
    assert denied(oom, req("container.update", {"OomKillDisable": True}))
    assert not denied(oom, create(OomKillDisable=False))


# -- ports -----------------------------------------------------------------------------


def test_ports() -> None:
    """ports limits published host ports to the allowed ranges and host IPs, refuses ephemeral, non-
    numeric and publish-all bindings, and checks service published ports."""
    p = rule("ports: {host_ports: ['8000-8999'], host_ips: ['127.0.0.1'], allow_ephemeral: false}")

    def bind(ip: str, port: Any) -> CanonicalRequest:
        return create(PortBindings={"80/tcp": [{"HostIp": ip, "HostPort": port}]})

    assert not denied(p, bind("127.0.0.1", "8080"))
    assert not denied(p, bind("127.0.0.1", "8000-8010"))
    assert denied(p, bind("127.0.0.1", "80"))
    assert denied(p, bind("127.0.0.1", "8990-9001"))
    assert denied(p, bind("", "8080"))
    assert denied(p, bind("0.0.0.0", "8080"))  # noqa: S104
    assert denied(p, bind("127.0.0.1", ""))
    assert denied(p, bind("127.0.0.1", "http"))
    assert denied(p, create(PublishAllPorts=True))
    svc = {"EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 22}]}}
    assert denied(rule("ports: {host_ports: ['1024-65535']}"), req("service.create", svc))


# -- user ------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["root", "0", "00", "000", "+0", "-0", "0:0", "root:0",
                                  "0:1000", "root:root", ":1000", ":", "0:1000:x"])
def test_root_users_denied(user: str) -> None:
    """With non_root, root in every spelling (name, zeros, signed zero, with a group, an empty user
    part, which the daemon's lookup leaves at uid 0) is refused on container create, exec and
    services."""
    p = rule("user: {non_root: true}")
    assert denied(p, req("container.create", {"User": user}))
    assert denied(p, req("exec.create", {"User": user, "Cmd": ["sh"]}))
    svc = {"TaskTemplate": {"ContainerSpec": {"User": user}}}
    assert denied(p, req("service.create", svc))


def test_empty_user_uses_default_user_hook() -> None:
    """An empty or missing User is judged by the default user the I/O layer supplies; unknown counts
    as root."""
    p = rule("user: {non_root: true}")
    empty = req("container.create", {"Image": "x", "User": ""})
    assert denied(p, empty)
    assert denied(p, req("container.create", {"Image": "x"}))
    assert decide(p, empty, DecisionContext(default_user="1000")).allowed
    assert not decide(p, empty, DecisionContext(default_user="0")).allowed
    assert not decide(p, empty, DecisionContext(default_user="")).allowed


def test_wants_default_user() -> None:
    """The policy asks for the image's default user only when a user rule applies and the request
    leaves User empty."""
    p = rule("user: {non_root: true}")
    assert p.wants_default_user(req("container.create", {"Image": "x"}), PEER)
    assert p.wants_default_user(req("exec.create", {"User": ""}), PEER)
    assert not p.wants_default_user(req("container.create", {"User": "1000"}), PEER)
    assert not p.wants_default_user(req("volume.create", {}), PEER)
    assert not rule("privileged: {}").wants_default_user(req("container.create", {}), PEER)


def test_user_numeric_and_group() -> None:
    """require_numeric and allow_root_group refuse names, padded values, the root group and non-
    string users; without them names pass."""
    p = rule("user: {non_root: true, require_numeric: true, allow_root_group: false}")
    assert not denied(p, req("container.create", {"User": "1000:1000"}))
    assert denied(p, req("container.create", {"User": "nobody"}))
    assert denied(p, req("container.create", {"User": " 1000"}))
    assert denied(p, req("container.create", {"User": "1000:0"}))
    assert denied(p, req("container.create", {"User": "1000:root"}))
    assert denied(p, req("container.create", {"User": 1000}))
    names = rule("user: {non_root: true}")
    assert not denied(names, req("container.create", {"User": "nobody"}))


@pytest.mark.parametrize("user", [
    "1000:0:x",      # the daemon keeps the first two parts: group 0
    "1000:1000:x",   # the same split, spelt so no part is root
    "1000:",         # an empty group is none: the passwd entry's, or gid 0
    "1000:staff",    # a group name: the container's /etc/group may say gid 0
    "1000:1000\n",   # not a number to the daemon, so a failed name lookup
    "1000:01000", "01000:1000", "+1000:1000", "1000:+1000",
    "1000: 1000", "1000 :1000", "1000:2147483648", "4294967296:1000",
])
def test_restricted_user_has_one_canonical_spelling(user: str) -> None:
    """Under require_numeric and allow_root_group: false (restricted) a user is written uid:gid in
    plain decimal within the daemon's id range; every other spelling, which the daemon splits or
    looks up differently (third parts, empty or named groups, padding, signs), is refused, on create
    and exec and as the image's default user."""
    p = rule("user: {non_root: true, require_numeric: true, allow_root_group: false}")
    assert denied(p, req("container.create", {"User": user}))
    assert denied(p, req("exec.create", {"User": user, "Cmd": ["sh"]}))
    empty = req("container.create", {"Image": "x", "User": ""})
    assert not decide(p, empty, DecisionContext(default_user=user)).allowed
    assert not denied(p, req("container.create", {"User": "1000:1000"}))
    assert not denied(p, req("exec.create", {"User": "2000:3000", "Cmd": ["sh"]}))
    assert not denied(p, req("container.create", {"User": "2147483647:2147483647"}))


def test_user_spec_splits_as_the_daemon_does() -> None:
    """user_spec keeps the first two ':'-parts (moby/sys/user parseLine), reads an empty group part
    as none, and an empty user part as root (the lookup's default, uid 0)."""
    assert user_spelling.user_spec("1000:0:x") == user_spelling.UserSpec("1000", "0")
    assert user_spelling.user_spec("1000:0:x").root_group  # type: ignore[union-attr]
    assert user_spelling.user_spec("1000:") == user_spelling.UserSpec("1000", None)
    assert user_spelling.user_spec(":1000").is_root  # type: ignore[union-attr]
    assert user_spelling.user_spec("0\n").uid is None  # type: ignore[union-attr]
    assert user_spelling.user_spec("") is None


# -- images ----------------------------------------------------------------------------


def test_images() -> None:
    """images matches normalised references against allow and deny patterns (Docker Hub spellings,
    tags, case), on create, pull, import, image mounts and services."""
    p = rule("images: {allow: [busybox, 'ghcr.io/acme/*'], deny: ['ghcr.io/acme/bad']}")
    for ok in ("busybox", "busybox:1.36", "library/busybox", "docker.io/library/busybox:latest",
               "index.docker.io/library/busybox", "ghcr.io/acme/app:1"):
        assert not denied(p, req("container.create", {"Image": ok})), ok
    for bad in ("alpine", "evil/busybox", "ghcr.io/acme/bad", "ghcr.io/other/app", "BUSYBOX",
                "registry.example/busybox"):
        assert denied(p, req("container.create", {"Image": bad})), bad
    assert denied(p, req("image.create", None, (("fromImage", "alpine"), ("tag", "3"))))
    assert not denied(p, req("image.create", None, (("fromImage", "busybox"), ("tag", "1"))))
    imp = (("fromSrc", "http://x/y.tar"), ("repo", "busybox"))
    assert denied(p, req("image.create", None, imp))
    assert denied(p, create(Mounts=[{"Type": "image", "Source": "alpine", "Target": "/i"}]))
    svc = {"TaskTemplate": {"ContainerSpec": {"Image": "alpine"}}}
    assert denied(p, req("service.create", svc))
    tags = rule("images: {allow: ['busybox:1.36']}")
    assert not denied(tags, req("container.create", {"Image": "busybox:1.36"}))
    assert denied(tags, req("container.create", {"Image": "busybox:latest"}))


# -- resources -------------------------------------------------------------------------


def test_resources_required() -> None:
    """resources.require needs memory, CPU (NanoCpus or CpuQuota) and a positive pids limit on
    create and services; update is checked only for what it sets."""
    p = rule("resources: {require: [memory, cpu, pids]}")
    assert denied(p, create())
    assert denied(p, create(Memory=1 << 28, PidsLimit=100))
    assert not denied(p, create(Memory=1 << 28, NanoCpus=10**9, PidsLimit=100))
    assert not denied(p, create(Memory=1 << 28, CpuQuota=50000, PidsLimit=100))
    assert denied(p, create(Memory=1 << 28, NanoCpus=10**9, PidsLimit=-1))
    assert not denied(p, req("container.update", {"Memory": 1 << 28}))
    assert denied(p, req("container.update", {"PidsLimit": -1}))
    assert not denied(p, req("container.update", {"CpuQuota": 0, "CpuPeriod": 0, "NanoCpus": 0}))
    assert not denied(p, req("container.update", {"CpuQuota": 50000}))


def test_resources_negative_cpu_quota() -> None:
    """A negative CpuQuota is no CPU limit, on create even beside NanoCpus (the daemon accepts
    the pair and the quota wins in the cgroup) and on update (it reaches the running cgroup as
    sent): both are refused when a CPU limit is required or capped."""
    for cfg in ("{require: [cpu]}", "{max: {cpus: 2}}"):
        p = rule(f"resources: {cfg}")
        reason = decide(p, create(Memory=1 << 28, NanoCpus=10**9, CpuQuota=-1)).reason
        assert "HostConfig.CpuQuota -1 removes the CPU limit" in reason, reason
        assert denied(p, create(Memory=1 << 28, CpuQuota=-1))
        assert denied(p, create(Memory=1 << 28, CpuPeriod=100000, CpuQuota=-5))
        reason = decide(p, req("container.update", {"CpuQuota": -1})).reason
        assert "CpuQuota -1 removes the CPU limit" in reason, reason
        assert denied(p, req("container.update", {"CpuQuota": -1, "NanoCpus": 10**9}))
    assert not denied(rule("resources: {require: [memory]}"),
                      req("container.update", {"CpuQuota": -1}))


def test_resources_cpu_maximum_on_update() -> None:
    """Under a CPU maximum an update's CpuQuota and CpuPeriod are judged together: one without
    the other is refused (the daemon keeps the stored other one, so a shorter period alone raises
    the limit), both together or NanoCpus are measured against the maximum."""
    p = rule("resources: {max: {cpus: 2}}")
    assert denied(p, req("container.update", {"CpuPeriod": 1000}))
    assert denied(p, req("container.update", {"CpuQuota": 50000, "CpuPeriod": 0}))
    assert not denied(p, req("container.update", {"CpuQuota": 100000, "CpuPeriod": 100000}))
    assert denied(p, req("container.update", {"CpuQuota": 300000, "CpuPeriod": 100000}))
    assert not denied(p, req("container.update", {"NanoCpus": 2 * 10**9}))
    assert denied(p, req("container.update", {"NanoCpus": 3 * 10**9}))
    limits = {"MemoryBytes": 1 << 28, "NanoCPUs": 10**9, "Pids": 10}
    svc = {"TaskTemplate": {"ContainerSpec": {}, "Resources": {"Limits": limits}}}
    assert not denied(p, req("service.create", svc))
    assert denied(p, req("service.create", {"TaskTemplate": {"ContainerSpec": {}}}))


def test_resources_ceilings() -> None:
    """resources.max caps memory, swap (unlimited refused), CPUs (from NanoCpus or quota/period) and
    pids; a ceiling also requires the limit, and a non-numeric update is refused."""
    p = rule("resources: {max: {memory: 512m, memory_swap: 1g, cpus: 2, pids: 500}}")
    ok = {"Memory": 1 << 29, "NanoCpus": 2 * 10**9, "PidsLimit": 500}
    assert not denied(p, create(**ok))
    assert denied(p, create(**{**ok, "Memory": (1 << 29) + 1}))
    assert denied(p, create(**{**ok, "MemorySwap": -1}))
    assert denied(p, create(**{**ok, "MemorySwap": 2 << 30}))
    assert denied(p, create(**{**ok, "NanoCpus": 3 * 10**9}))
    assert denied(p, create(**{**ok, "NanoCpus": 0, "CpuQuota": 300000, "CpuPeriod": 100000}))
    assert denied(p, create(**{**ok, "PidsLimit": 501}))
    assert denied(p, create(Memory=1 << 29))
    assert denied(p, req("container.update", {"Memory": 1 << 30}))
    assert denied(p, req("container.update", {"Memory": "lots"}))
    assert not denied(p, req("container.update", {"CpuShares": 5}))


def test_invalid_body_types_fail_closed() -> None:
    """A body field of the wrong type makes a rule that reads it deny (fail closed), while a rule
    that does not read it is unaffected."""
    p = rule("privileged: {}")
    assert denied(p, create(Binds="/etc:/etc"))
    assert not denied(rule("endpoints: {deny: []}"), create(Binds="/etc:/etc"))

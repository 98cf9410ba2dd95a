"""Controls over dockerd's root actions, the closed world of fields, and the
``set`` action (daemon defaults made explicit) in the pure core."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dockgate.model import CanonicalRequest, Operation, Peer
from dockgate.policy import DaemonFacts, DecisionContext, PolicyError, load_policy
from dockgate.policy import seccomp as sc
from dockgate.policy.rules import CompiledPolicy, compile_policy
from dockgate.policy.source import parse_yaml

PEER = Peer("main", "unix", "@", uid=1000, gid=1000)
BASELINE = load_policy("policies/baseline.yaml")


def policy(rules: str) -> CompiledPolicy:
    return compile_policy(parse_yaml("name: t\nrules:\n" + rules, "t.yaml"))


def req(eid: str, body: Any, version: str | None = "1.47",
        query: tuple[tuple[str, str], ...] = ()) -> CanonicalRequest:
    return CanonicalRequest("POST", Operation(eid, "POST", "/x", "json"), "/x", version, {},
                            query, body=body)


def test_closed_world_names_unclassified_and_host_level_fields() -> None:
    """An unknown key (one a newer daemon might honour) and a non-empty host-level field
    are denied with the field named; empty host-level values pass."""
    p = policy("  - id: w\n    fields: {}\n")
    d = p.decide(req("container.create", {"Image": "x", "HostConfig": {"Frobnicate": 1}}), PEER)
    assert d.reason == ("denied by policy t rule w: HostConfig.Frobnicate is not classified "
                        "by dockgate (unclassified fields are denied)")
    d = p.decide(req("container.create", {"HostConfig": {"CpuRealtimeRuntime": 950000}}), PEER)
    assert "HostConfig.CpuRealtimeRuntime makes the daemon act on the host" in d.reason
    ok = {"HostConfig": {"Annotations": {}, "Cgroup": "", "CpuRealtimeRuntime": 0}}
    assert p.decide(req("container.create", ok), PEER).allowed
    d = p.decide(req("image.build", None, query=(("outputs", "type=image,push=true"),)), PEER)
    assert "query.outputs makes the daemon act on the host" in d.reason


def test_closed_world_allow_lists_host_level_fields_by_path() -> None:
    """``allow`` lets named host-level fields through and nothing else."""
    p = policy("  - id: w\n    fields: {allow: [HostConfig.Annotations]}\n")
    assert p.decide(req("container.create", {"HostConfig": {"Annotations": {"a": "b"}}}),
                    PEER).allowed
    assert not p.decide(req("container.create", {"HostConfig": {"StorageOpt": {"size": "1G"}}}),
                        PEER).allowed


def top(ps_args: str | None) -> CanonicalRequest:
    query = (("ps_args", ps_args),) if ps_args is not None else ()
    return CanonicalRequest("GET", Operation("container.top", "GET", "/containers/{id}/top",
                                             "none"), "/containers/c/top", "1.47", {"id": "c"},
                            query)


@pytest.mark.parametrize("ps_args", [
    None, "", "aux", "-ef", "-eLf", "-ef e", "aux e", "axjf", "-elf", "-eF", "auxww", "-eH"])
def test_closed_world_lets_top_pick_ps_builtin_formats(ps_args: str | None) -> None:
    """``docker top`` with no options or with ps's own selections and built-in formats (what
    ``docker top C aux`` and ``docker top C -ef`` send) passes baseline."""
    assert BASELINE.decide(top(ps_args), PEER).allowed


@pytest.mark.parametrize("ps_args", [
    "-o label=A\fB\fC\fD -o pid -o args e -p 1", "-oargs,label,label,pid e", "-opid=PID",
    "-o pid,args", "aux h", "-ef --no-headers", "-p 1", "aux --sort=-pid", "-eZ", "auxZ",
    "aux  -ef", "-aux", "-ef\t", "o pid", "O pid", "-C sleep"])
def test_closed_world_refuses_other_ps_options_for_top(ps_args: str) -> None:
    """A ``ps_args`` with a custom format, no header, a label column, a selection that takes a
    value, or a spelling ps and the daemon split differently is refused by baseline, naming the
    field: the daemon runs ps on the host over every process and would show other processes'
    command lines and environments.  privileged forwards it."""
    d = BASELINE.decide(top(ps_args), PEER)
    assert not d.allowed
    assert d.reason.startswith("denied by policy baseline rule closed-world: query.ps_args makes "
                               "the daemon act on the host (host-level field): ps options"), d.reason
    assert load_policy("policies/privileged.yaml").decide(top(ps_args), PEER).allowed


def test_closed_world_allow_takes_ps_args_back() -> None:
    """``fields.allow: ["?ps_args"]`` lets any ``docker top`` options through."""
    p = policy('  - id: w\n    fields: {allow: ["?ps_args"]}\n')
    assert p.decide(top("-o pid,args e"), PEER).allowed
    assert not policy("  - id: w\n    fields: {}\n").decide(top("-o pid,args e"), PEER).allowed


@pytest.mark.parametrize("opts", [
    {"type": "proc", "device": "proc"},
    {"type": "none", "o": "bind", "device": "etc"},
    {"type": "overlay", "device": "overlay", "o": "lowerdir=/etc,upperdir=/u,workdir=/w"},
    {"type": "tmpfs", "device": "/dev/sda1"},
    {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,suid"},
    {"type": "tmpfs", "device": "tmpfs", "o": "remount,bind"},
    {"type": "nfs", "o": "addr=127.0.0.1", "device": ":/x"},
    {"device": "proc"},
    {"mountopts": "x"},
])
def test_baseline_local_volume_options_only_allow_tmpfs(opts: dict[str, str]) -> None:
    """Every local-driver option set that mounts anything but a plain tmpfs is denied."""
    d = BASELINE.decide(req("volume.create", {"Name": "v", "DriverOpts": opts}), PEER)
    assert not d.allowed and d.rule in ("volume-options", "no-host-paths")


def test_baseline_local_tmpfs_volume_is_allowed() -> None:
    """type=tmpfs with size/mode/uid options cannot reach the host."""
    body = {"Name": "v", "Driver": "local",
            "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=64m,mode=1770,uid=1000"}}
    assert BASELINE.decide(req("volume.create", body), PEER).allowed


PERMISSIVE = [
    {"defaultAction": "SCMP_ACT_ALLOW"},
    {"defaultAction": "SCMP_ACT_LOG"},
    {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["unshare"],
                                                      "action": "SCMP_ACT_ALLOW"}]},
    {"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/x.sock"},
    {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"],
                                                      "action": "SCMP_ACT_NOTIFY"}]},
    {"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]},
    {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["clone"],
                                                      "action": "SCMP_ACT_ALLOW"}]},
    {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "mount",
                                                      "action": "SCMP_ACT_TRACE"}]},
    # moby appends ``name`` to an empty ``names``.
    {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [], "name": "unshare",
                                                      "action": "SCMP_ACT_ALLOW"}]},
]


@pytest.mark.parametrize("profile", PERMISSIVE)
def test_seccomp_profiles_weaker_than_the_default_are_found(profile: dict[str, Any]) -> None:
    """Each of these lets a syscall through that the default profile refuses."""
    assert sc.weaker_than_default(json.dumps(profile)) is not None


def test_seccomp_stricter_profiles_pass() -> None:
    """Fewer syscalls, or the default's own conditional rules verbatim, are accepted."""
    strict = {"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [
        {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}
    assert sc.weaker_than_default(json.dumps(strict)) is None
    d = BASELINE.decide(req("container.create", {"HostConfig": {
        "SecurityOpt": ["seccomp=" + json.dumps(strict)]}}), PEER)
    assert d.rule != "security-options"


SPELLED = [
    ('{"defaultAction":"SCMP_ACT_ERRNO","DefaultAction":"SCMP_ACT_ALLOW"}',
     "spells the key 'defaultAction' as 'DefaultAction'"),
    ('{"defaultAction":"SCMP_ACT_ERRNO","ListenerPath":"/run/x.sock"}',
     "spells the key 'listenerPath' as 'ListenerPath'"),
    ('{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"NAMES":["unshare"],'
     '"action":"SCMP_ACT_ALLOW"}]}', "spells the key 'names' as 'NAMES'"),
    ('{"defaultAction":"SCMP_ACT_ERRNO","\u017fyscalls":[{"names":["unshare"],'
     '"action":"SCMP_ACT_ALLOW"}]}', "spells the key 'syscalls' as '\u017fyscalls'"),
    ('{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],'
     '"action":"SCMP_ACT_ALLOW","action":"SCMP_ACT_ALLOW"}]}', "has the key 'action' twice"),
]


@pytest.mark.parametrize(("text", "why"), SPELLED)
def test_seccomp_keys_are_read_as_the_daemon_reads_them(text: str, why: str) -> None:
    """The daemon decodes the profile with Go's encoding/json (keys in any case, the last
    of several wins), so a key spelled other than its field, or a field set twice, would
    make the check judge another profile than runc installs: refused."""
    found = sc.weaker_than_default(text)
    assert found is not None and found.startswith(why), found
    d = BASELINE.decide(req("container.create", {"HostConfig": {
        "SecurityOpt": ["seccomp=" + text]}}), PEER)
    assert d.rule == "security-options" and why in d.reason, d


def test_seccomp_keys_that_name_no_field_are_ignored() -> None:
    """Keys that name no field of the profile are ignored by the daemon, and by the check."""
    text = '{"defaultAction":"SCMP_ACT_ERRNO","note":"mine","syscalls":[{"names":["read"],' \
        '"action":"SCMP_ACT_ALLOW","why":"io"}]}'
    assert sc.weaker_than_default(text) is None


def test_seccomp_digest_allowlist() -> None:
    """An operator can allow one exact profile by its SHA-256."""
    text = json.dumps(PERMISSIVE[0])
    p = policy("  - id: s\n    security_options: {seccomp_strict: true, seccomp_profiles: ["
               f"'{sc.digest(text)}']}}\n")
    assert p.decide(req("container.create", {"HostConfig": {"SecurityOpt": [
        "seccomp=" + text]}}), PEER).allowed
    assert not p.decide(req("container.create", {"HostConfig": {"SecurityOpt": [
        "seccomp=" + json.dumps(PERMISSIVE[1])]}}), PEER).allowed


def test_set_action_rewrites_the_forwarded_body_and_says_so() -> None:
    """On API 1.47 an empty CgroupnsMode is set to private in a copy of the body (IpcMode
    is left to the daemon's configured default); the decision carries the new request
    (canonical bytes) and what was set."""
    body = {"Image": "x", "HostConfig": {"Memory": 10, "CgroupnsMode": ""}}
    r = req("container.create", body)
    d = BASELINE.decide(r, PEER)
    assert d.allowed and d.request is not None
    assert json.loads(d.request.body_bytes or b"")["HostConfig"]["CgroupnsMode"] == "private"
    assert "IpcMode" not in d.request.body["HostConfig"]
    assert body["HostConfig"]["CgroupnsMode"] == ""  # the admitted request is untouched
    assert any("CgroupnsMode set to 'private'" in s for s in d.sets)
    assert "; set: rule daemon-defaults: HostConfig.CgroupnsMode" in d.reason


def test_set_action_leaves_an_explicit_private_mode_alone() -> None:
    """Nothing is set (and nothing re-serialised) when the client already chose."""
    r = req("container.create", {"HostConfig": {"CgroupnsMode": "private", "IpcMode": "private"}})
    d = BASELINE.decide(r, PEER)
    assert d.request is None and d.sets == ()


def test_ipc_mode_is_set_below_api_1_40() -> None:
    """Below API 1.40 an empty IpcMode is 'shareable' (a host tmpfs): dockgate sets it."""
    v2 = DaemonFacts.from_info({"CgroupVersion": "2", "SecurityOptions": ["name=cgroupns"]})
    r = req("container.create", {"Image": "x"}, version="1.39")
    d = BASELINE.decide(r, PEER, DecisionContext(daemon=v2))
    assert d.request is not None and d.request.body["HostConfig"] == {"IpcMode": "private"}
    assert d.sets == ("rule daemon-defaults: HostConfig.IpcMode set to 'private' (empty is "
                      "'shareable', a host tmpfs, before API 1.40)",)


def test_old_api_needs_the_daemons_facts() -> None:
    """Below API 1.41 dockgate cannot set the mode: it asks the daemon's facts and allows
    only a cgroup v2 daemon whose default is private."""
    r = req("container.create", {"Image": "x"}, version="1.40")
    assert BASELINE.wants_daemon_facts(r, PEER)
    assert not BASELINE.wants_daemon_facts(req("container.create", {}), PEER)
    v1 = DaemonFacts.from_info({"CgroupVersion": "1", "SecurityOptions": ["name=cgroupns"]})
    v2 = DaemonFacts.from_info({"CgroupVersion": "2", "SecurityOptions": ["name=cgroupns"]})
    assert BASELINE.decide(r, PEER, DecisionContext(daemon=v1)).rule == "daemon-defaults"
    assert BASELINE.decide(r, PEER, DecisionContext(daemon=v2)).rule != "daemon-defaults"


def test_plain_plugin_names_even_under_privileged() -> None:
    """Driver names with / \\ or .. are refused by every shipped policy unless listed."""
    priv = load_policy("policies/privileged.yaml")
    for eid, body in [("volume.create", {"Driver": "a/../../b"}),
                      ("network.create", {"Driver": "..\\x"}),
                      ("network.create", {"IPAM": {"Driver": "../../run/x"}}),
                      ("container.create", {"HostConfig": {"LogConfig": {"Type": "../s"}}}),
                      ("container.create", {"HostConfig": {"VolumeDriver": "/run/p"}})]:
        assert priv.decide(req(eid, body), PEER).rule == "plain-plugin-names", (eid, body)
    listed = policy("  - id: n\n    plugin_names: {allow: [vieux/sshfs]}\n")
    assert listed.decide(req("volume.create", {"Driver": "vieux/sshfs"}), PEER).allowed


# -- networks: internal made explicit ----------------------------------------------------------

RESTRICTED = load_policy("policies/restricted.yaml")
INTERNAL_SET = ("rule networks: Internal set to true (a network that is not internal routes its "
                "containers through the host, and dockerd writes NAT rules for its subnet)",)


@pytest.mark.parametrize("body", [
    {"Name": "n", "Driver": "bridge", "Internal": False},  # what every Go client sends
    {"Name": "n", "CheckDuplicate": True},  # docker-py, older clients: absent
    {"Name": "n", "Internal": None},
    {"Name": "n", "ConfigFrom": None, "ConfigOnly": False},
])
def test_baseline_and_restricted_make_every_network_internal(body: dict[str, Any]) -> None:
    """A network create that is not internal (false, null or absent: Go clients always send
    false) is allowed with ``Internal: true`` in the forwarded body, and the decision says
    it was set (the audit record's ``set``); the admitted request is untouched."""
    for profile in (BASELINE, RESTRICTED):
        d = profile.decide(req("network.create", body), PEER)
        assert d.allowed and d.request is not None, d.reason
        assert json.loads(d.request.body_bytes or b"")["Internal"] is True
        assert {k: v for k, v in d.request.body.items() if k != "Internal"} == {
            k: v for k, v in body.items() if k != "Internal"}
        assert d.sets == INTERNAL_SET
        assert "Internal" not in body or body["Internal"] is not True


def test_internal_set_leaves_internal_and_config_only_networks_alone() -> None:
    """Nothing is set when the client asked for an internal network, nor on a config-only
    network (it creates no interface, and the daemons refuse Internal on it)."""
    for body in ({"Name": "n", "Internal": True},
                 {"Name": "n", "ConfigOnly": True, "Options": {"com.docker.network.driver.mtu":
                                                               "1400"}},
                 {"Name": "n", "ConfigOnly": True, "Internal": False}):
        d = BASELINE.decide(req("network.create", body), PEER)
        assert d.allowed and d.request is None and d.sets == (), (body, d.reason)


def test_internal_option_allow_require_set() -> None:
    """``allow`` forwards the client's choice, ``require`` refuses a network that is not
    internal (naming the field), ``set`` sets it; a refused create sets nothing."""
    body = {"Name": "n", "Internal": False}
    allow = policy("  - id: n\n    networks: {internal: allow}\n").decide(
        req("network.create", body), PEER)
    assert allow.allowed and allow.request is None
    required = policy("  - id: n\n    networks: {internal: require}\n").decide(
        req("network.create", body), PEER)
    assert required.reason == "denied by policy t rule n: Internal must be true"
    assert policy("  - id: n\n    networks: {internal: require}\n").decide(
        req("network.create", {"Internal": True}), PEER).allowed
    refused = BASELINE.decide(req("network.create", {"Driver": "macvlan", "Internal": False}),
                              PEER)
    assert not refused.allowed and refused.request is None and refused.sets == ()
    warned = policy("  - id: n\n    mode: warn\n    networks: {internal: set}\n").decide(
        req("network.create", body), PEER)
    assert warned.verdict == "warn" and warned.request is None, warned


def test_privileged_leaves_networks_as_asked() -> None:
    """privileged has no networks rule: a routed network is forwarded as asked."""
    priv = load_policy("policies/privileged.yaml")
    d = priv.decide(req("network.create", {"Name": "n", "Internal": False}), PEER)
    assert d.allowed and d.request is None and d.sets == ()


@pytest.mark.parametrize(("option", "expect"), [
    ("internal: sett", "p.yaml:4: rules[0].networks.internal: 'sett' is not one of allow, "
                       "require, set"),
    ("internal: true", "p.yaml:4: rules[0].networks.internal: True is not one of"),
    ("require_internal: true", "p.yaml:4: rules[0].networks: "),
])
def test_internal_option_typos_fail_with_file_and_line(option: str, expect: str) -> None:
    """A misspelt ``internal`` value, or the old ``require_internal`` option, is refused
    at load, located by file and line."""
    with pytest.raises(PolicyError) as e:
        compile_policy(parse_yaml(f"name: t\nrules:\n  - id: a\n    networks: {{{option}}}\n",
                                  "p.yaml"))
    assert expect in str(e.value)


def test_network_connect_to_the_host_network_is_a_host_namespace() -> None:
    """``network connect host C`` is the host's network namespace, refused by baseline and
    restricted like ``--network host`` (the daemons refuse it too; the policy does not rely
    on that); a named network passes."""
    connect = Operation("network.connect", "POST", "/networks/{id}/connect", "json")
    host = CanonicalRequest("POST", connect, "/networks/host/connect", "1.47", {"id": "host"},
                            (), body={"Container": "c"})
    for profile in (BASELINE, RESTRICTED):
        d = profile.decide(host, PEER)
        assert d.reason.startswith(f"denied by policy {profile.name} rule no-")
        assert "path.id 'host' shares the host's namespace" in d.reason
        named = CanonicalRequest("POST", connect, "/networks/n1/connect", "1.47", {"id": "n1"},
                                 (), body={"Container": "c"})
        assert profile.decide(named, PEER).allowed


def ipam(*configs: dict[str, Any]) -> dict[str, Any]:
    return {"Name": "n", "Internal": True, "IPAM": {"Driver": "default", "Config": list(configs)}}


def test_baseline_leaves_the_subnet_to_the_daemon() -> None:
    """Under baseline and restricted (``subnets: []``) every address a client picks in
    IPAM.Config is refused, named; no IPAM.Config (or empty entries) lets the daemon pick."""
    body = ipam({"Subnet": "192.168.1.0/24", "IPRange": "192.168.1.0/25",
                 "Gateway": "192.168.1.1", "AuxiliaryAddresses": {"r": "192.168.1.2"}})
    for profile in (BASELINE, RESTRICTED):
        d = profile.decide(req("network.create", body), PEER)
        assert d.reason.splitlines() == [
            f"denied by policy {profile.name} rule networks: IPAM.Config[0].Subnet "
            "192.168.1.0/24 is not in the allowed subnets (the host's routes to it would go "
            "into the network; leave the subnet out and the daemon picks a free one)",
            *(f"also rule networks: IPAM.Config[0].{f} is not in the allowed subnets (the "
              "host's routes to it would go into the network; leave the subnet out and the "
              "daemon picks a free one)"
              for f in ("IPRange 192.168.1.0/25", "Gateway 192.168.1.1",
                        "AuxiliaryAddresses[r] 192.168.1.2"))]
        for ok in ({"Name": "n"}, ipam(), ipam({}), ipam({"Subnet": ""})):
            assert profile.decide(req("network.create", ok), PEER).allowed, ok


def test_subnets_option_allows_only_listed_ranges() -> None:
    """``subnets`` admits addresses inside a listed network of the same family and refuses
    others, wider ones and non-addresses; without the option anything goes."""
    p = policy("  - id: n\n    networks: {subnets: [10.200.0.0/16, 'fd00:dead::/32']}\n")

    def allowed(*configs: dict[str, Any]) -> bool:
        return p.decide(req("network.create", ipam(*configs)), PEER).allowed

    assert allowed({"Subnet": "10.200.3.0/24", "Gateway": "10.200.3.1",
                    "AuxiliaryAddresses": {"a": "10.200.3.9"}})
    assert allowed({"Subnet": "fd00:dead:1::/64"})
    assert not allowed({"Subnet": "10.0.0.0/8"})  # contains the range, is not inside it
    assert not allowed({"Subnet": "10.200.3.0/24", "Gateway": "10.201.0.1"})
    assert not allowed({"Subnet": "::ffff:10.200.3.0/120"})
    assert not allowed({"Subnet": "10.200.3.0/24", "Gateway": "10.200.3.1/24"})
    for bad in ("10.200.003.0/24", "nonsense", 7):
        d = p.decide(req("network.create", ipam({"Subnet": bad})), PEER)
        assert d.reason.endswith(f"IPAM.Config[0].Subnet {bad!r} is not an IP network"), d.reason
    assert not p.decide(req("network.create", {"IPAM": {"Config": {"Subnet": "x"}}}),
                        PEER).allowed
    anything = policy("  - id: n\n    networks: {}\n")
    assert anything.decide(req("network.create", ipam({"Subnet": "10.0.0.0/8"})), PEER).allowed


@pytest.mark.parametrize(("entry", "expect"), [
    ("10.200.0.1/16", "rules[0].networks.subnets[0]: '10.200.0.1/16' is not a network "
                      "address (write '10.200.0.0/16')"),
    ("10.200.0.0/33", "rules[0].networks.subnets[0]: '10.200.0.0/33' is not a network in CIDR"),
])
def test_subnets_option_typos_fail_with_file_and_line(entry: str, expect: str) -> None:
    """A host address or a bad prefix in ``subnets`` is refused at load, with file:line."""
    with pytest.raises(PolicyError) as e:
        compile_policy(parse_yaml(f"name: t\nrules:\n  - id: a\n    networks: "
                                  f"{{subnets: ['{entry}']}}\n", "p.yaml"))
    assert f"p.yaml:4: {expect}" in str(e.value)


NEWLINE_NAMES = [
    ("volume.create", {"Driver": "local\n"}, "volume-drivers"),
    ("network.create", {"Driver": "bridge\n", "Internal": True}, "networks"),
    ("network.create", {"Internal": True, "IPAM": {"Driver": "default\n"}}, "networks"),
    ("container.create", {"HostConfig": {"Runtime": "runc\n"}}, "runtimes"),
    ("container.create", {"HostConfig": {"Sysctls": {"kernel.shm_rmid_forced\n": "1"}}},
     "safe-sysctls"),
    ("container.create", {"HostConfig": {"SecurityOpt": ["apparmor=docker-default\n"]}},
     "security-options"),
]


@pytest.mark.parametrize(("eid", "body", "rule"), NEWLINE_NAMES)
def test_allowed_names_do_not_take_a_final_newline(eid: str, body: Any, rule: str) -> None:
    """A name on an allowlist followed by a newline is another name to the daemon (a
    volume or network driver ``local\\n`` is a plugin it looks up; a runtime, sysctl or
    profile that does not exist): refused, though Python's ``$`` matches before it."""
    d = BASELINE.decide(req(eid, body), PEER)
    assert not d.allowed and d.rule == rule, d



def test_allowed_host_path_takes_no_final_newline() -> None:
    """``/srv/data\\n`` is a sibling of an allowed ``/srv/data`` (the daemon creates it at
    start): refused, while a path below the allowed one is allowed."""
    p = policy("  - id: h\n    host_paths: {allow: [/srv/data], accept_writable_roots: true}\n")
    ok = p.decide(req("container.create", {"HostConfig": {"Binds": ["/srv/data/x:/d"]}}), PEER)
    assert ok.allowed, ok
    d = p.decide(req("container.create", {"HostConfig": {"Binds": ["/srv/data\n:/d"]}}), PEER)
    assert not d.allowed and d.rule == "h", d

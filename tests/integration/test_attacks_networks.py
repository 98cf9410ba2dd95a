"""Issue 21 item 1, live: network options that take or change a host interface, and
driver names that are paths, against both engines and every shipped profile.

Each attack first runs against the bare daemon, with the host as the oracle:
a host interface the test creates (a veth pair and a bridge enslaving one end,
in the host's namespace, all links down and carrying no traffic; this kernel
has no dummy, VLAN or ipvlan links) is taken into a container (macvlan
``parent=``: the container's ``eth0`` is a child of the host's interface),
taken over and rewritten (``macvlan_mode=passthru``: the host interface is put
in promiscuous mode and given the container's MAC address), or adopted and
readdressed (``com.docker.network.bridge.name`` naming the host's bridge: dockerd
brings it up and puts the network's gateway address on it).  For driver
names, a unix socket the test serves is the oracle: dockerd, as root, speaks
the plugin protocol to it for a network driver, IPAM driver, log driver or
volume driver named ``../../..<path>``.

Then the same requests go through each profile: privileged forwards the
interface attacks (it allows every request the route table accepts, as
docs/policy.md says, so the interface changes just as directly) and refuses
only the driver names (the implicit ``plain-plugin-names`` floor); baseline and
restricted refuse both (``networks``, ``plain-plugin-names``), readonly refuses
every write.  A refused request leaves the interface exactly as it was and the
socket never called.

Last, addressing and routing: a subnet the client picks takes the host's own
route to that range (the test gives a host interface an address, and the
host's main routing table is the oracle), refused by baseline and restricted
(``networks.subnets: []``: the daemon picks, from the test daemons' loopback
pool); a plain ``docker network create`` (and compose's project network) is not
internal on the bare daemon, and baseline and restricted make it internal
(``networks.internal: set``), which the daemon's own inspect shows.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import unixhttp
from support.buildhelp import build, context
from support.engines import IMAGE, Engine, unique
from support.plugins import FakePlugin
from support.policygate import (
    POLICY_NAMES,
    PROFILES,
    PolicyGate,
    denied,
    policy_audit_guard,
    policy_gates,
    profile_gates,
)

pytestmark = [pytest.mark.engine, pytest.mark.allow_refusals]
_ = (policy_gates, policy_audit_guard, profile_gates)  # fixtures, imported for pytest

SYS_NET = Path("/sys/class/net")
IFF_PROMISC = 0x100
HARDENED = ("--user", "1000:1000", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--memory", "64m", "--cpus", "0.5", "--pids-limit", "64")
READONLY = ("read-only-endpoints", "endpoint {} is not allowed")


# -- host interfaces -------------------------------------------------------------------------


@dataclass(frozen=True)
class HostLinks:
    """A veth pair ``nic``/``peer`` and a bridge ``bridge`` enslaving ``peer``, on the host."""

    nic: str
    peer: str
    bridge: str


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True,
                          timeout=30).stdout


@pytest.fixture
def host_links() -> Iterator[Callable[[], HostLinks]]:
    """Makes fresh ``HostLinks`` (one set per attack attempt); all removed afterwards."""
    made: list[HostLinks] = []

    def make() -> HostLinks:
        stem = "dg" + os.urandom(3).hex()
        links = HostLinks(stem + "n", stem + "p", stem + "b")
        made.append(links)
        ip("link", "add", links.nic, "type", "veth", "peer", "name", links.peer)
        ip("link", "add", links.bridge, "type", "bridge")
        ip("link", "set", links.peer, "master", links.bridge)
        return links

    try:
        yield make
    finally:
        for links in made:
            for name in (links.bridge, links.nic):  # the peer goes with its veth
                if (SYS_NET / name).exists():
                    subprocess.run(["ip", "link", "del", name], check=False,
                                   capture_output=True, timeout=30)


def link_state(name: str) -> dict[str, Any]:
    """What a client could have changed about host interface ``name``: its MAC address,
    flags (up, promiscuous), IPv4 addresses, master and bridge ports."""
    sysdir = SYS_NET / name
    info = json.loads(ip("-j", "addr", "show", "dev", name))[0]
    return {
        "address": (sysdir / "address").read_text().strip(),
        "flags": int((sysdir / "flags").read_text(), 16),
        "ipv4": sorted(f"{a['local']}/{a['prefixlen']}" for a in info.get("addr_info", ())
                       if a.get("family") == "inet"),
        "master": os.path.basename(os.readlink(sysdir / "master"))
        if (sysdir / "master").exists() else None,
        "ports": sorted(os.listdir(sysdir / "brif")) if (sysdir / "brif").exists() else None,
    }


def subnet() -> str:
    """A loopback-range /24 for an internal network (no route leaves the host)."""
    second, third = os.urandom(2)
    return f"127.{100 + second % 150}.{third}.0/24"


def container_eth0(engine: Engine, name: str) -> tuple[int, str]:
    """(ifindex of the link ``eth0`` of container ``name`` hangs off, its MAC address)."""
    out = engine.docker_direct("exec", name, "cat", "/sys/class/net/eth0/iflink",
                               "/sys/class/net/eth0/address").stdout.split()
    return int(out[0]), out[1]


Docker = Callable[..., subprocess.CompletedProcess[Any]]


@dataclass(frozen=True)
class InterfaceAttack:
    """A network create (and, with ``container``, a container joining it) aimed at
    ``HostLinks``; ``shown`` asserts on the host that it took effect."""

    id: str
    options: Callable[[HostLinks], tuple[str, ...]]
    container: bool
    shown: Callable[[Engine, HostLinks, dict[str, Any], str], None]
    rule: str
    text: str

    def create_args(self, links: HostLinks, net: str) -> tuple[str, ...]:
        return ("network", "create", "--internal", "--subnet", subnet(),
                *self.options(links), net)

    def run(self, engine: Engine, docker: Docker, links: HostLinks) -> None:
        """Perform the attack with ``docker`` (direct or through a gate) and check it worked."""
        before = link_state(links.nic if self.container else links.bridge)
        net, ctr = unique("dgif-net"), unique("dgif-c")
        docker(*self.create_args(links, net), timeout=60)
        if self.container:
            docker("run", "-d", "--pull", "never", "--name", ctr, "--network", net, IMAGE,
                   "sleep", "300", timeout=60)
        self.shown(engine, links, before, ctr)


def shown_in_container(engine: Engine, links: HostLinks, before: dict[str, Any], ctr: str) -> None:
    """The container's eth0 is a child of the host's interface (it sits on the host's link)."""
    iflink, _ = container_eth0(engine, ctr)
    assert iflink == int((SYS_NET / links.nic / "ifindex").read_text()), (
        "the container's eth0 hangs off the host interface")


def shown_taken_over(engine: Engine, links: HostLinks, before: dict[str, Any], ctr: str) -> None:
    """passthru: the host interface is promiscuous and carries the container's MAC address."""
    shown_in_container(engine, links, before, ctr)
    _, mac = container_eth0(engine, ctr)
    after = link_state(links.nic)
    assert not before["flags"] & IFF_PROMISC and after["flags"] & IFF_PROMISC
    assert after["address"] == mac != before["address"], (before, after, mac)


def shown_adopted(engine: Engine, links: HostLinks, before: dict[str, Any], ctr: str) -> None:
    """The host's own bridge is up and carries the network's gateway address."""
    after = link_state(links.bridge)
    assert before["ipv4"] == [] and len(after["ipv4"]) == 1, (before, after)
    assert after["ipv4"][0].startswith("127.") and after["flags"] & 1, after  # IFF_UP


MACVLAN = "Driver network driver 'macvlan' is not allowed"
INTERFACE_ATTACKS = [
    InterfaceAttack("macvlan-parent", lambda ln: ("-d", "macvlan", "-o", f"parent={ln.nic}"),
                    True, shown_in_container, "networks", MACVLAN),
    InterfaceAttack("macvlan-passthru",
                    lambda ln: ("-d", "macvlan", "-o", f"parent={ln.nic}",
                                "-o", "macvlan_mode=passthru"),
                    True, shown_taken_over, "networks", MACVLAN),
    InterfaceAttack("bridge-name-existing",
                    lambda ln: ("-o", f"com.docker.network.bridge.name={ln.bridge}"),
                    False, shown_adopted, "networks",
                    "Options[com.docker.network.bridge.name] is a network option"),
]


@pytest.mark.parametrize("attack", INTERFACE_ATTACKS, ids=lambda a: a.id)
def test_network_create_takes_a_host_interface(
    engine: Engine,
    attack: InterfaceAttack,
    host_links: Callable[[], HostLinks],
    profile_gates: dict[str, PolicyGate],
) -> None:
    """Live on the bare daemon (and, as documented, through privileged): the network
    takes, rewrites or adopts a host interface.  baseline, restricted and readonly
    refuse the network create and every host interface stays exactly as it was."""
    objects = engine.snapshot()
    try:
        attack.run(engine, engine.docker_direct, host_links())
        for profile in PROFILES:
            pg, links = profile_gates[profile], host_links()
            if profile == "privileged":
                attack.run(engine, pg.docker, links)
                continue
            before = {name: link_state(name) for name in (links.nic, links.peer, links.bridge)}
            rule, text = ((READONLY[0], READONLY[1].format("network.create"))
                          if profile == "readonly" else (attack.rule, attack.text))
            denied(pg, attack.create_args(links, unique("dgif-net")), rule, text)
            assert {name: link_state(name) for name in before} == before, profile
    finally:  # containers and networks go before the host links they hang off
        assert engine.remove_new(objects) == []


# -- driver names that are paths ----------------------------------------------------------------


@dataclass(frozen=True)
class PluginField:
    """A request field dockerd resolves as a plugin name, and how to fill it with ``name``."""

    id: str
    args: Callable[[str, str], tuple[str, ...]]  # (name, profile) -> CLI args
    field: str


def create_with_log_driver(name: str, profile: str) -> tuple[str, ...]:
    hardened = HARDENED if profile == "restricted" else ()
    return ("create", "--network", "none", "--pull", "never", *hardened, "--log-driver", name,
            IMAGE, "true")


PLUGIN_FIELDS = [
    PluginField("network-driver",
                lambda n, _: ("network", "create", "--internal", "-d", n, unique("dgpn")), "Driver"),
    PluginField("ipam-driver",
                lambda n, _: ("network", "create", "--internal", "--ipam-driver", n,
                              unique("dgpn")), "IPAM.Driver"),
    PluginField("log-driver", create_with_log_driver,
                "HostConfig.LogConfig.Type"),
    PluginField("volume-driver",
                lambda n, _: ("volume", "create", "--driver", n, unique("dgpn")), "Driver"),
]


@pytest.fixture
def fake_plugins(engine: Engine) -> Iterator[Callable[[], FakePlugin]]:
    """Makes fresh fake plugin sockets under the engine's work directory (a daemon
    activates a plugin name once, so every attempt gets its own); closed afterwards."""
    made: list[FakePlugin] = []

    def make() -> FakePlugin:
        made.append(FakePlugin(str(engine.workdir / f"{unique('pl')}.sock")))
        return made[-1]

    try:
        yield make
    finally:
        for plugin in made:
            plugin.close()


@pytest.mark.parametrize("field", PLUGIN_FIELDS, ids=lambda f: f.id)
def test_driver_name_that_is_a_path_reaches_a_host_socket(
    engine: Engine,
    field: PluginField,
    fake_plugins: Callable[[], FakePlugin],
    profile_gates: dict[str, PolicyGate],
) -> None:
    """Live on the bare daemon: a driver named ``../../..<socket path>`` makes dockerd
    activate the plugin at that host socket.  Every profile refuses it by the
    plain-plugin-names floor, checked before any other rule (privileged too;
    readonly would refuse the write anyway) and the socket is never called."""
    plugin = fake_plugins()
    out = engine.docker_direct(*field.args(plugin.name, "direct"), check=False, timeout=90)
    assert out.returncode != 0 and "does not implement" in out.stderr, out.stderr
    assert plugin.activated, "dockerd spoke the plugin protocol to the host socket"
    for profile in PROFILES:
        pg, plugin = profile_gates[profile], fake_plugins()
        why = f"{field.field} driver name {plugin.name!r} is a path, not a plugin name"
        denied(pg, field.args(plugin.name, profile), "plain-plugin-names", why)
        assert not plugin.requests, f"{profile}: the daemon looked the name up"


SPELLINGS = {
    "lower-case": (b"", 403),
    "duplicate-key": (b'"Options": {}, ', 400),
}
"""How the options reach Go (keys matched regardless of case; of two spellings of
one key the last wins), the bytes before ``options``, and dockgate's status."""


def spelled_create(links: HostLinks, before_options: bytes) -> bytes:
    """A network create adopting ``links.bridge``, every key in lower case."""
    return (b'{"name": "%s", "internal": true, "ipam": {"config": [{"subnet": "%s"}]}, '
            b'%s"options": {"com.docker.network.bridge.name": "%s"}}'
            % (unique("dgif-net").encode(), subnet().encode(), before_options,
               links.bridge.encode()))


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_network_options_in_other_spellings_are_refused(
    engine: Engine,
    spelling: str,
    host_links: Callable[[], HostLinks],
    profile_gates: dict[str, PolicyGate],
) -> None:
    """Lower-case keys, or a duplicate ``options`` after an empty ``Options``, adopt the
    host's bridge on the bare daemon (it gains the gateway address); through
    baseline, restricted and readonly the same bytes are refused (the policy's
    403, or 400 for keys two parsers could read differently) and the bridge is
    untouched."""
    prefix, expected = SPELLINGS[spelling]
    objects = engine.snapshot()
    try:
        links = host_links()
        before = link_state(links.bridge)
        status, body = unixhttp.request(engine.daemon_socket, "POST", "/v1.41/networks/create",
                                        spelled_create(links, prefix), timeout=60)
        assert status == 201, body
        shown_adopted(engine, links, before, "")
        for profile in PROFILES[1:]:
            links = host_links()
            before = link_state(links.bridge)
            status, body = unixhttp.request(profile_gates[profile].socket, "POST",
                                            "/v1.41/networks/create",
                                            spelled_create(links, prefix), timeout=60)
            assert status == expected, (profile, body)
            message = json.loads(body)["message"]
            if expected == 403:
                rule = "read-only-endpoints" if profile == "readonly" else "networks"
                assert message.startswith(f"dockgate: denied by policy {profile} rule {rule}"), (
                    message)
            assert link_state(links.bridge) == before, profile
    finally:
        assert engine.remove_new(objects) == []


# -- subnets the client picks --------------------------------------------------------------------


def main_route_dev(addr: str) -> str:
    """The device of the host's most specific main-table route to ``addr``."""
    best: tuple[int, str] = (-1, "")
    for route in json.loads(ip("-j", "route", "show", "table", "main")):
        dst = "0.0.0.0/0" if route["dst"] == "default" else route["dst"]
        net = ipaddress.ip_network(dst if "/" in dst else dst + "/32")
        if ipaddress.ip_address(addr) in net and net.prefixlen > best[0]:
            best = (net.prefixlen, route["dev"])
    return best[1]


def test_network_subnet_takes_the_hosts_route(
    engine: Engine, host_links: Callable[[], HostLinks], profile_gates: dict[str, PolicyGate]
) -> None:
    """Live on the bare daemon (and through privileged, as documented): a bridge network on
    a subnet inside a range the host routes to one of its interfaces takes that route
    (the host's traffic to the range goes into the network's bridge; the daemon does
    not check).  baseline and restricted refuse the subnet (the daemon picks one),
    readonly refuses the write, and the host's route stays where it was."""
    objects = engine.snapshot()
    try:
        for profile in ("direct", *PROFILES):
            links = host_links()
            second, third = os.urandom(2)
            prefix = f"127.{100 + second % 150}.{third}"
            ip("addr", "add", f"{prefix}.1/24", "dev", links.nic)
            ip("link", "set", links.nic, "up")  # its peer stays down: no carrier, no traffic
            target, taken = f"{prefix}.77", f"{prefix}.64/26"
            assert main_route_dev(target) == links.nic
            args = ("network", "create", "--internal", "--subnet", taken, unique("dgnet-rt"))
            if profile in ("direct", "privileged"):
                docker = engine.docker_direct if profile == "direct" else profile_gates[
                    profile].docker
                net = docker(*args, timeout=60).stdout.strip()
                assert main_route_dev(target) == "br-" + net[:12], profile
                engine.docker_direct("network", "rm", net)
            else:
                pg = profile_gates[profile]
                rule, text = ((READONLY[0], READONLY[1].format("network.create"))
                              if profile == "readonly" else
                              ("networks", f"IPAM.Config[0].Subnet {taken} is not in the "
                                           "allowed subnets"))
                denied(pg, args, rule, text)
            assert main_route_dev(target) == links.nic, profile
    finally:
        assert engine.remove_new(objects) == []


# -- networks that are not internal ----------------------------------------------------------------


def internal_of(engine: Engine, net: str) -> bool:
    """What the daemon itself says of network ``net``: is it internal?"""
    out = engine.docker_direct("network", "inspect", "--format", "{{json .Internal}}", net)
    return bool(json.loads(out.stdout))


def routed_through_host(engine: Engine, pg: PolicyGate | None, net: str) -> str:
    """Start a container on ``net`` (directly, or through ``pg``) and say how the daemon
    routed it: ``"gateway"`` when it gave the container a route through the host's end of
    the bridge (on a 127.x network the kernel refuses that route, so the start fails
    saying so), else the container's routing table."""
    docker = engine.docker_direct if pg is None else pg.docker
    hardened = HARDENED if pg is not None and pg.policy == "restricted" else ()
    out = docker("run", "--rm", "--pull", "never", "--network", net, *hardened, IMAGE,
                 "ip", "route", check=False, timeout=60)
    if out.returncode != 0:
        assert "gateway" in out.stderr, out.stderr
        return "gateway"
    return str(out.stdout)


def decided_sets(pg: PolicyGate, mark: int, endpoint: str) -> list[list[str]]:
    """The ``set`` member of each RequestDecided record for ``endpoint`` since ``mark``."""
    return [list(r.get("set", ())) for r in pg.records_since(mark)
            if r.get("stage") == "RequestDecided" and r.get("endpoint") == endpoint]


INTERNAL_SET = "rule networks: Internal set to true"


def test_network_that_is_not_internal_is_made_internal(
    engine: Engine, profile_gates: dict[str, PolicyGate]
) -> None:
    """Live on the bare daemon (and through privileged, which forwards it as asked): a plain
    ``docker network create`` (Go sends ``"Internal": false``) makes a routed network;
    on 28.5 a container on it is given a route through the host (the start fails on
    this 127.x network for that very route).  Through baseline and restricted the same
    command succeeds, the daemon reports the network internal, its containers get no
    route off the network (28.5), and the audit record's ``set`` names the rule.
    On 20.10 a container on any 127.x bridge network fails to start (that libnetwork
    routes internal networks' containers through the gateway too, relying on the
    firewall rules these daemons run without), so the daemon's own inspect is the oracle
    there."""
    objects = engine.snapshot()
    newer = engine.name != "20.10"
    try:
        for profile in ("direct", "privileged"):
            net = unique("dgnet-routed")
            docker = engine.docker_direct if profile == "direct" else profile_gates[profile].docker
            docker("network", "create", net, timeout=60)
            assert internal_of(engine, net) is False, profile
            if newer:
                assert routed_through_host(engine, None, net) == "gateway", profile
        for profile in POLICY_NAMES:
            pg, net = profile_gates[profile], unique("dgnet-made")
            mark = pg.mark()
            pg.docker("network", "create", net, timeout=60)
            assert internal_of(engine, net) is True, profile
            assert decided_sets(pg, mark, "network.create") == [
                [f"{INTERNAL_SET} (a network that is not internal routes its containers "
                 "through the host, and dockerd writes NAT rules for its subnet)"]], profile
            assert pg.refusals_since(mark) == []
            if newer:
                routes = routed_through_host(engine, pg, net)
                assert "default" not in routes and "dev eth0" in routes, (profile, routes)
    finally:
        assert engine.remove_new(objects) == []


COMPOSE_TWO = """\
services:
  web:
    image: dgtest
    pull_policy: never
    init: true
    command: ["sleep", "300"]
  client:
    image: dgtest
    pull_policy: never
    init: true
    depends_on: [web]
    command: ["sh", "-c", "until nslookup web > /tmp/found; do sleep 0.2; done;
                           grep -A1 'Name:.*web' /tmp/found; exec sleep 300"]
"""


def test_compose_project_network_is_internal_under_baseline(
    engine: Engine, profile_gates: dict[str, PolicyGate]
) -> None:
    """``docker compose`` of a two-service project on its default network works under
    baseline (nothing refused), and the project network it made is internal, as the
    daemon reports, and is kept by a second ``up``; on 28.5 the project runs and ``client`` finds ``web`` by name
    through the daemon's resolver.  On 20.10 the project is created, not started (no
    container starts on a 127.x bridge network there, see above)."""
    pg = profile_gates["baseline"]
    project = unique("dgnetproj")
    workdir = engine.workdir / project
    workdir.mkdir()
    (workdir / "compose.yaml").write_text(COMPOSE_TWO)
    objects = engine.snapshot()
    mark = pg.mark()

    def compose(*args: str) -> str:
        return str(pg.docker("compose", "-p", project, *args, cwd=workdir, timeout=180).stdout)

    try:
        up = ("up", "-d", "--wait") if engine.name != "20.10" else ("create",)
        compose(*up)
        assert internal_of(engine, f"{project}_default") is True
        network = engine.docker_direct("network", "inspect", "-f", "{{.Id}}",
                                       f"{project}_default").stdout
        compose(*up)  # again: compose takes the network as its own (it is not recreated)
        assert engine.docker_direct("network", "inspect", "-f", "{{.Id}}",
                                    f"{project}_default").stdout == network
        if engine.name != "20.10":
            web = engine.docker_direct(
                "inspect", "--format",
                f"{{{{(index .NetworkSettings.Networks \"{project}_default\").IPAddress}}}}",
                f"{project}-web-1").stdout.strip()
            logs = ""
            for _ in range(100):
                logs = compose("logs", "--no-color", "client")
                if web in logs:
                    break
                time.sleep(0.2)
            assert web and web in logs, (web, logs)
        compose("down", "--timeout", "1")
        assert pg.refusals_since(mark) == []
        assert [INTERNAL_SET in " ".join(s) for s in decided_sets(pg, mark, "network.create")] \
            == [True]
    finally:
        assert engine.remove_new(objects) == []


HOST_NAMESPACE_RULE = {"baseline": "no-host-namespaces", "restricted": "no-shared-namespaces"}


def test_network_connect_to_the_host_network_is_refused_by_the_policy(
    engine: Engine, profile_gates: dict[str, PolicyGate]
) -> None:
    """``docker network connect host C`` asks for the host's network namespace: the daemons
    refuse it themselves (both engines), and baseline and restricted refuse it first, by
    name, as they refuse ``--network host``; the container stays on no network."""
    objects = engine.snapshot()
    try:
        ctr = unique("dgnet-c")
        engine.docker_direct("create", "--network", "none", "--name", ctr, IMAGE, "true")
        out = engine.docker_direct("network", "connect", "host", ctr, check=False)
        assert out.returncode != 0 and "host network" in out.stderr, out.stderr
        for profile in POLICY_NAMES:
            denied(profile_gates[profile], ("network", "connect", "host", ctr),
                   HOST_NAMESPACE_RULE[profile], "path.id 'host' shares the host's namespace")
        networks = engine.docker_direct("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                        ctr).stdout
        assert list(json.loads(networks)) == ["none"], networks
    finally:
        assert engine.remove_new(objects) == []


def test_joining_a_host_interface_network_made_on_the_daemon_is_refused(
    engine: Engine, host_links: Callable[[], HostLinks], profile_gates: dict[str, PolicyGate],
) -> None:
    """A passthru macvlan network someone made directly on the daemon takes the host's
    interface over when a container joins it (shown on the bare daemon: promiscuous, the
    container's MAC address), and so does a classic build's RUN step on it
    (``networkmode=NET``).  Through baseline and restricted, a container that joins such
    a network (``--network NET``, ``network connect NET C``) is refused as the network's own
    create would be, and so is baseline's build (restricted refuses every build), and the
    host interface stays exactly as it was."""
    objects = engine.snapshot()
    try:
        passthru = ("-d", "macvlan", "-o", "macvlan_mode=passthru", "--internal", "--subnet")
        bare, links = unique("dgif-net"), host_links()
        engine.docker_direct("network", "create", *passthru, subnet(), "-o",
                             f"parent={links.nic}", bare)
        before = link_state(links.nic)
        ctr = unique("dgif-c")
        engine.docker_direct("run", "-d", "--pull", "never", "--name", ctr, "--network", bare,
                             IMAGE, "sleep", "300")
        shown_taken_over(engine, links, before, ctr)
        engine.docker_direct("rm", "-f", ctr)
        # The RUN step's eth0 hangs off the host's interface (its iflink is the NIC's index).
        dockerfile = {"Dockerfile": f"FROM {IMAGE}\nRUN echo iflink=$(cat /sys/class/net/eth0/iflink)\n"}
        status, answer = build(engine.daemon_socket, context(dockerfile), networkmode=bare)
        ifindex = (SYS_NET / links.nic / "ifindex").read_text().strip()
        assert status == 200 and f"iflink={ifindex}\\n" in answer, answer

        net, links = unique("dgif-net"), host_links()
        engine.docker_direct("network", "create", *passthru, subnet(), "-o",
                             f"parent={links.nic}", net)
        plain = unique("dgif-c")
        engine.docker_direct("create", "--network", "none", "--name", plain, IMAGE, "true")
        before = link_state(links.nic)
        for profile in POLICY_NAMES:
            pg = profile_gates[profile]
            flags = HARDENED if profile == "restricted" else ()
            for args in (("run", "-d", "--pull", "never", *flags, "--network", net, IMAGE,
                          "sleep", "300"), ("network", "connect", net, plain)):
                out = pg.docker(*args, check=False, timeout=60)
                assert out.returncode != 0, out.stdout
                assert f"network {net!r} does not pass the policy: denied by policy {profile} " \
                    f"rule networks: Driver network driver 'macvlan' is not allowed" \
                    in out.stderr, out.stderr
            assert link_state(links.nic) == before, profile
        status, answer = build(profile_gates["baseline"].socket, context(dockerfile),
                               networkmode=net)
        assert status == 403 and f"network {net!r} does not pass the policy" in answer, answer
        assert link_state(links.nic) == before
        networks = engine.docker_direct("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                        plain).stdout
        assert list(json.loads(networks)) == ["none"], networks
    finally:
        assert engine.remove_new(objects) == []

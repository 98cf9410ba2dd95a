"""A network checked by name must stay the network the daemon connects, at create and
at every start: the daemon resolves a network name again when it acts (full id, exact
name, then a unique id prefix), so a checked network removed in between leaves its
name to be read as the start of another network's id.

The daemon keeps a create's endpoints under the network's name with the client's
``NetworkID`` (empty unless the client gives one), and a start connects each by its
``NetworkID`` when set, else by that name.  Each attack runs first on the bare daemon,
whose inspect of the container is the oracle (the endpoint's ``NetworkID`` after the
start), then through dockgate:

* tenants (both engines): tenant A names its own network after the first 12
  characters of tenant B's network id, creates a container on it, removes the
  network and starts the container.  20.10 connects the container to B's network
  (28.5 checks a ``NetworkMode`` that tenancy pinned to the full id, but not the
  bare daemon's name); through dockgate the create binds the endpoint to the id
  that was checked (``NetworkID``), and the start finds no network.
* baseline (both engines): a network made on the daemon that baseline refuses
  (``com.docker.network.bridge.name``; internal, a loopback subnet), and the
  client's own network named after its id's start.  The client's container on
  that name passes at create; its start, raced with the removal of the client's
  network while dockgate looks up the container's other networks, connected the
  refused network on both engines before dockgate bound the endpoints.

Containers made before dockgate bound endpoints (or on the daemon directly: the
CLI's ``create --network`` and ``network connect`` leave ``NetworkID`` empty) are
started by their stored names: the same attacks, and (tenants) a name the other
tenant takes over after the removal, join the other network on the bare daemon, and
through dockgate their starts are refused (``tenancy.scoping.start_networks``),
while ordinary ones start as they do on the bare daemon.

The containers run ``true`` on internal networks with loopback subnets; 20.10
cannot start containers on such a network here (its gateway route), but the
daemon records the network it connected first, which is what is asked.

What held (session 12, red team): the member-level rewrite of a tenant's create
(``with_string_member`` splice, ``copy_along``, ``member_bytes``) against escaped,
duplicate-case and non-string ``Labels``; the all-at-once reserved-label check
against combining marks after the join character; the 512-entry caps (every list
the policy reads is capped on its own; the daemon merges none into another);
``_Lookups``' deduplication (two targets that differ are different names to the
daemon too; ``/name`` and ``name`` only for containers, which the daemon reads
alike); restricted's ``User`` (``+0``, ``00``, ``2147483648``); volumes (a name
is the volume: no prefix fallback).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import unixhttp
from support.engines import IMAGE, Engine, unique
from support.policygate import PolicyGate, policy_audit_guard, policy_gates
from support.tenantgate import Caller, TenantGate, tenant_gates

pytestmark = [pytest.mark.engine, pytest.mark.allow_refusals]
_ = (policy_gates, policy_audit_guard, tenant_gates)

PADDING = 40
"""Networks of the container looked up after the raced one: they hold the start's
check open long enough for the removal to land before the start is forwarded."""


call = unixhttp.call


def network_ids(engine: Engine, container: str) -> dict[str, str]:
    """The daemon's record of ``container``'s endpoints: network name -> NetworkID."""
    status, info = call(engine.daemon_socket, "GET", f"/containers/{container}/json")
    assert status == 200, info
    return {k: v.get("NetworkID") or "" for k, v in info["NetworkSettings"]["Networks"].items()}


def network_id(engine: Engine, name: str) -> str:
    status, info = call(engine.daemon_socket, "GET", f"/networks/{name}")
    assert status == 200, info
    return str(info["Id"])


def refused_network(engine: Engine, octet: int) -> str:
    """A network made on the daemon that baseline refuses (it names its bridge
    interface): internal, on 127.40.OCTET.0/24 (OCTET + 1 on 28.5).  Returns its id."""
    status, made = call(engine.daemon_socket, "POST", "/networks/create", {
        "Name": unique("refused"), "Internal": True,
        "IPAM": {"Config": [{"Subnet": f"127.40.{octet + (engine.name == '28.5')}.0/24"}]},
        "Options": {"com.docker.network.bridge.name": unique("dgr")[:15]}})
    assert status == 201, made
    return str(made["Id"])


@pytest.fixture
def tenant_pair(engine: Engine, tenant_gates: dict[str, TenantGate]
                ) -> Iterator[tuple[Engine, Caller, Caller]]:
    tg = tenant_gates[engine.name]
    yield engine, tg.caller("alice-tls"), tg.caller("bob-tls")


def _tenant_attack(create: Any, remove: Any, start: Any, engine: Engine, victim: str) -> str:
    """A's network named after ``victim``'s id's start; a container on it; the network
    removed; the container started.  Returns the container's id."""
    prefix = victim[:12]
    status, made = create("POST", "/networks/create", {"Name": prefix, "Internal": True})
    assert status == 201, made
    status, made = create("POST", f"/containers/create?name={unique('netname')}",
                          {"Image": IMAGE, "Cmd": ["true"],
                           "HostConfig": {"NetworkMode": prefix}})
    assert status == 201, made
    cid = str(made["Id"])
    status, answer = remove("DELETE", f"/networks/{prefix}")
    assert status == 204, answer
    start("POST", f"/containers/{cid}/start")
    return cid


def test_tenant_start_cannot_join_another_tenants_network_by_its_id_prefix(
        tenant_pair: tuple[Engine, Caller, Caller]) -> None:
    """A tenant's container created on its own network, whose name is the start of
    another tenant's network id, and started after that network is removed, joins the
    other tenant's network on the bare daemon (20.10; 28.5 by the unpinned name) and
    no network through dockgate (the endpoint is bound to the checked id)."""
    engine, alice, bob = tenant_pair
    status, made = bob.request("POST", "/networks/create",
                               {"Name": unique("bobnet"), "Internal": True})
    assert status == 201, made
    victim = str(made["Id"])

    def direct(method: str, target: str, body: Any = None) -> tuple[int, Any]:
        return call(engine.daemon_socket, method, target, body)

    cid = _tenant_attack(direct, direct, direct, engine, victim)
    assert victim in network_ids(engine, cid).values(), "the bare daemon's start joined B's network"

    cid = _tenant_attack(alice.request, alice.request, alice.request, engine, victim)
    ids = network_ids(engine, cid)
    assert victim not in ids.values(), ids
    status, info = call(engine.daemon_socket, "GET", f"/containers/{cid}/json")
    assert info["State"]["Running"] is False and info["State"]["StartedAt"].startswith("0001"), \
        info["State"]


def _race_start(engine: Engine, sock: str, evil: str) -> dict[str, str]:
    """Through ``sock`` (the daemon's: removed before the start): the client's own network named after ``evil``'s id's start, a
    container on it and on PADDING other networks, started while the own network is
    removed.  Returns the container's endpoints as the daemon recorded them."""
    prefix = evil[:12]
    status, made = call(sock, "POST", "/networks/create", {"Name": prefix})
    assert status == 201, made
    direct = sock == engine.daemon_socket  # nothing checks: removed first, no padding
    pads = [] if direct else [unique("pad") for _ in range(PADDING)]
    for pad in pads:
        assert call(sock, "POST", "/networks/create", {"Name": "zz" + pad})[0] == 201
    v44 = engine.name == "28.5"
    endpoints: dict[str, Any] = {prefix: {}}
    if v44:
        endpoints.update({"zz" + pad: {} for pad in pads})
    status, made = call(sock, "POST", ("/v1.44" if v44 else "") + "/containers/create",
                        {"Image": IMAGE, "Cmd": ["true"],
                         "HostConfig": {"NetworkMode": prefix, "Memory": 64 << 20,
                                        "PidsLimit": 64},
                         "NetworkingConfig": {"EndpointsConfig": endpoints}})
    assert status == 201, made
    cid = str(made["Id"])
    if not v44:  # 20.10 takes one endpoint at create
        for pad in pads:
            status, answer = call(sock, "POST", f"/networks/zz{pad}/connect", {"Container": cid})
            assert status == 200, answer
    if direct:
        assert call(sock, "DELETE", f"/networks/{prefix}")[0] == 204
        call(sock, "POST", f"/containers/{cid}/start")
        return network_ids(engine, cid)
    thread = threading.Thread(target=call, args=(sock, "POST", f"/containers/{cid}/start"))
    thread.start()
    time.sleep(0.05)
    call(sock, "DELETE", f"/networks/{prefix}")  # refused once the start connected it
    thread.join(120)
    assert not thread.is_alive()
    return network_ids(engine, cid)


def test_baseline_start_raced_with_a_removal_cannot_join_a_refused_network(
        engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]) -> None:
    """A container on the client's network named after the start of a refused network's
    id, started while that network is removed, is connected to the refused network on
    the bare daemon and, through baseline, never (its endpoint bound to the checked id)."""
    pg = policy_gates[(engine.name, "baseline")]
    evil = refused_network(engine, 40)
    status, answer = call(pg.socket, "POST", "/containers/create",
                          {"Image": IMAGE, "Cmd": ["true"],
                           "HostConfig": {"NetworkMode": evil[:12], "Memory": 64 << 20,
                                          "PidsLimit": 64}})
    assert status == 403 and "does not pass the policy" in answer["message"], answer

    assert evil in _race_start(engine, engine.daemon_socket, evil).values()
    for _ in range(3):
        ids = _race_start(engine, pg.socket, evil)
        assert evil not in ids.values(), ids


# -- containers whose endpoints were never bound (made before, or behind dockgate's back) --


def _unbound(engine: Engine, network: str, labels: dict[str, str] | None = None) -> str:
    """A container created on the daemon directly with ``--network NETWORK`` (as the docker
    CLI sends it: ``NetworkMode`` and an ``EndpointsConfig`` entry, no ``NetworkID``), as
    every container made before dockgate bound endpoints was.  Returns its id."""
    status, made = call(engine.daemon_socket, "POST", "/containers/create", {
        "Image": IMAGE, "Cmd": ["true"], "Labels": labels or {},
        "HostConfig": {"NetworkMode": network, "Memory": 64 << 20, "PidsLimit": 64},
        "NetworkingConfig": {"EndpointsConfig": {network: {}}}})
    assert status == 201, made
    cid = str(made["Id"])
    assert network_ids(engine, cid) == {network: ""}, "the daemon bound no NetworkID"
    return cid


def never_started(engine: Engine, cid: str) -> bool:
    status, info = call(engine.daemon_socket, "GET", f"/containers/{cid}/json")
    assert status == 200, info
    return info["State"]["Running"] is False and info["State"]["StartedAt"].startswith("0001")


def test_baseline_start_of_an_unbound_endpoint_named_like_a_refused_networks_id(
        engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]) -> None:
    """A container made on the daemon (no ``NetworkID``) on the client's network named
    after the start of a refused network's id joins the refused network when started
    after its own network is removed, on the bare daemon; through baseline its start is
    refused (409, naming the network and the fix) both after the removal and before it
    (the name is also the start of another network's id, so a removal raced with the
    start would join it), and the daemon neither starts it nor connects the network.
    A disconnect by the stored name cannot drop the endpoint (the daemon reads the name
    as the other network), so recreating the container is the fix named."""
    pg = policy_gates[(engine.name, "baseline")]
    evil = refused_network(engine, 42)
    prefix = evil[:12]

    def own_network() -> None:
        status, made = call(engine.daemon_socket, "POST", "/networks/create",
                            {"Name": prefix, "Internal": True})
        assert status == 201, made

    own_network()
    bare = _unbound(engine, prefix)
    assert call(engine.daemon_socket, "DELETE", f"/networks/{prefix}")[0] == 204
    call(engine.daemon_socket, "POST", f"/containers/{bare}/start")
    assert evil in network_ids(engine, bare).values(), "the bare daemon's start joined it"

    own_network()
    cid = _unbound(engine, prefix)
    status, answer = call(pg.socket, "POST", f"/containers/{cid}/start")
    assert status == 409, answer
    assert f"endpoint on network '{prefix}' is kept by name only, and that name is also the " \
           "start of another network's id" in answer["message"], answer
    assert "Remove the container and create it again" in answer["message"], answer
    assert call(engine.daemon_socket, "DELETE", f"/networks/{prefix}")[0] == 204
    for _ in ("start", "restart"):
        status, answer = call(pg.socket, "POST", f"/containers/{cid}/{_}")
        assert status == 409 and "no network is named so (it is the start of a network's id)" \
            in answer["message"], answer
    assert network_ids(engine, cid) == {prefix: ""} and never_started(engine, cid)
    # Nor can the endpoint be dropped by its name: the daemon reads it as the other
    # network, which the container is not on (so the refusal says: recreate it).
    status, answer = call(pg.socket, "POST", f"/networks/{prefix}/disconnect", {"Container": cid})
    assert status == 500 and "is not connected to the network refused-" in answer["message"]
    assert network_ids(engine, cid) == {prefix: ""}


def test_tenant_start_of_an_unbound_endpoint_joins_only_the_tenants_networks(
        tenant_pair: tuple[Engine, Caller, Caller]) -> None:
    """A tenant's container whose endpoint was never bound (made before dockgate bound
    them: here on the daemon directly, with the tenant's owner label) connects at start
    whatever network its name then names.  On the bare daemon it joins another tenant's
    network both ways: the tenant's own network named after the start of that network's
    id removed (the id prefix), and removed then made again by the other tenant under the
    same name (no race at all).  Through the tenant gate the first start is refused
    (409), and the second as one whose network is gone (409, the same words), and the daemon
    neither starts the container nor connects the other tenant's network."""
    engine, alice, bob = tenant_pair
    owned = {"io.dockgate.owner": alice.tenant}
    status, made = bob.request("POST", "/networks/create",
                               {"Name": unique("bobnet"), "Internal": True})
    assert status == 201, made
    victim = str(made["Id"])
    prefix, reused = victim[:12], unique("app") + "_default"

    def alice_network(name: str) -> None:
        status, made = alice.request("POST", "/networks/create", {"Name": name, "Internal": True})
        assert status == 201, made

    def attack(start: Any) -> tuple[str, str, str]:
        alice_network(prefix)
        alice_network(reused)
        by_prefix, by_name = _unbound(engine, prefix, owned), _unbound(engine, reused, owned)
        for name in (prefix, reused):
            status, answer = alice.request("DELETE", f"/networks/{name}")
            assert status == 204, answer
        status, made = bob.request("POST", "/networks/create",
                                   {"Name": reused, "Internal": True})
        assert status == 201, made
        taken = str(made["Id"])
        start(by_prefix)
        start(by_name)
        return by_prefix, by_name, taken

    def direct(cid: str) -> None:
        call(engine.daemon_socket, "POST", f"/containers/{cid}/start")

    by_prefix, by_name, taken = attack(direct)
    assert victim in network_ids(engine, by_prefix).values(), "joined B's by the id prefix"
    assert taken in network_ids(engine, by_name).values(), "joined B's by its name"
    assert call(engine.daemon_socket, "DELETE", f"/containers/{by_name}?force=1")[0] == 204
    assert call(engine.daemon_socket, "DELETE", f"/networks/{taken}")[0] == 204

    answers: list[tuple[int, Any]] = []
    by_prefix, by_name, taken = attack(
        lambda cid: answers.append(alice.request("POST", f"/containers/{cid}/start")))
    (status, stale), (missing_status, missing) = answers
    assert status == 409 and "no network is named so (it is the start of a network's id)" \
        in stale["message"], stale
    assert missing_status == 409 and f"network '{reused}' is kept by name only, and no network " \
        "is named so now" in missing["message"], missing
    for cid, name in ((by_prefix, prefix), (by_name, reused)):
        assert network_ids(engine, cid) == {name: ""} and never_started(engine, cid)


@pytest.mark.parametrize("cli", ["docker", "docker20"])
def test_an_ordinary_container_made_before_endpoints_were_bound_starts_through_dockgate(
        engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], cli: str) -> None:
    """Containers the docker CLI (28 and 20.10) created on the daemon, unbound, with
    ``--network NAME`` of an ordinary network (and a second one connected while they were
    stopped) start through baseline as their twins start on the bare daemon (28.5: 204,
    both networks connected by id; 20.10 cannot start containers on a network here and
    answers its own 500 for both): each name is one network's exact name and no id's
    start, so dockgate forwards the start."""
    pg = policy_gates[(engine.name, "baseline")]
    names = [unique("plain"), unique("plain")]
    for name in names:
        status, made = call(engine.daemon_socket, "POST", "/networks/create",
                            {"Name": name, "Internal": True})
        assert status == 201, made
    binary = engine.cli if cli == "docker" else engine.cli20

    def run(*args: str) -> str:
        return str(engine.run_cli(binary, args, env=engine.direct_env).stdout).strip()

    answers = []
    for sock in (engine.daemon_socket, pg.socket):
        cid = run("create", "--network", names[0], "--memory", "64m", IMAGE, "true")
        run("network", "connect", names[1], cid)
        stored = network_ids(engine, cid)
        assert stored == dict.fromkeys(names, ""), stored
        status, answer = call(sock, "POST", f"/containers/{cid}/start")
        answers.append(status)
        if status == 204:
            wanted = {name: network_id(engine, name) for name in names}
            assert network_ids(engine, cid) == wanted and not never_started(engine, cid)
        else:
            assert not str(answer["message"]).startswith("dockgate"), answer
    assert answers[0] == answers[1] == (204 if engine.name == "28.5" else 500), answers


COMPOSE = """\
services:
  app:
    image: dgtest
    pull_policy: never
    command: ["true"]
    networks: [back]
networks:
  back:
    internal: true
"""


def test_a_compose_project_created_before_endpoints_were_bound_starts_through_dockgate(
        engine28: Engine, policy_gates: dict[tuple[str, str], PolicyGate]) -> None:
    """A compose project created on the daemon directly (``docker compose create``: its
    endpoint is kept by the network's name, no ``NetworkID``) starts through baseline
    (``docker compose start``) as its twin starts on the bare daemon, and the start
    connects the project's network by its id (28.5)."""
    engine = engine28
    pg = policy_gates[(engine.name, "baseline")]
    for sock in (engine.daemon_socket, pg.socket):
        project = unique("proj")
        workdir = engine.workdir / project
        workdir.mkdir()
        (workdir / "compose.yaml").write_text(COMPOSE)
        engine.run_cli(engine.cli, ("compose", "-p", project, "create"),
                       env=engine.direct_env, cwd=workdir)
        [cid] = engine.run_cli(engine.cli, (
            "ps", "-aq", "--no-trunc", "--filter", f"label=com.docker.compose.project={project}"),
            env=engine.direct_env).stdout.split()
        network = f"{project}_back"
        assert network_ids(engine, cid) == {network: ""}
        engine.run_cli(engine.cli, ("compose", "-p", project, "start"),
                       env={**engine.direct_env, "DOCKER_HOST": f"unix://{sock}"}, cwd=workdir)
        assert network_ids(engine, cid) == {network: network_id(engine, network)}
        assert not never_started(engine, cid)

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
    status, made = call(engine.daemon_socket, "POST", "/networks/create", {
        "Name": unique("refused"), "Internal": True,
        "IPAM": {"Config": [{"Subnet": f"127.40.{40 + (engine.name == '28.5')}.0/24"}]},
        "Options": {"com.docker.network.bridge.name": unique("dgr")[:15]}})
    assert status == 201, made
    evil = str(made["Id"])
    status, answer = call(pg.socket, "POST", "/containers/create",
                          {"Image": IMAGE, "Cmd": ["true"],
                           "HostConfig": {"NetworkMode": evil[:12], "Memory": 64 << 20,
                                          "PidsLimit": 64}})
    assert status == 403 and "does not pass the policy" in answer["message"], answer

    assert evil in _race_start(engine, engine.daemon_socket, evil).values()
    for _ in range(3):
        ids = _race_start(engine, pg.socket, evil)
        assert evil not in ids.values(), ids

"""Tenancy end to end: real unix users and real client certificates, the real
docker CLI 28, both real daemons, one ``dockgate serve --tenants`` in front of
each (tests/support/tenantgate.py).

For each engine and each pair of principals (unix users dgalice/dgbob; TLS
certificates alice-cert/bob-cert), tenant A (``teama``) owns a container, a
volume, a network, a committed image and exec instances.  Every reference
tenant B (``teamb``) makes to them gets, byte for byte apart from the name,
what B gets for a missing object through dockgate and what the daemon itself
says for a missing object; A's objects stay unchanged as the daemon reports
them, and nothing that names them is forwarded.  Lists and events show each
tenant only its own objects, and the admin (root over unix) everything.
Quotas, label spoofing, name squatting, stdin half-close over TLS and a
name-reuse race are covered too.
"""

from __future__ import annotations

import json
import pwd
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import docker.errors
import pytest
from support import engines as eng
from support import unixhttp as http
from support.buildhelp import context, readable_dir
from support.engines import IMAGE, Engine
from support.tenantgate import QUOTA_CONTAINERS, QUOTA_RUNNING, Caller, TenantGate, tenant_gates

pytestmark = [pytest.mark.engine, pytest.mark.allow_refusals]
_ = tenant_gates  # fixture, imported for pytest

PAIRS = ("unix", "tls")
NONE = ("--network", "none")
DG_MESSAGE = re.compile(r"(?m)(^|Error response from daemon: )dockgate: ")


@dataclass
class World:
    """Tenant A's objects on one engine, and the principals of one pair."""

    engine: Engine
    tg: TenantGate
    pair: str
    a: Caller
    b: Caller
    admin: Caller
    container: str
    cid: str
    volume: str
    network: str
    net_id: str
    image: str
    image_id: str

    def daemon(self, target: str) -> Any:
        return http.get_json(self.engine.daemon_socket, target)

    def names(self) -> tuple[str, ...]:
        """Every way A's objects are named in a request path."""
        return (self.container, self.cid, self.volume, self.network, self.net_id,
                self.image, self.image_id.removeprefix("sha256:"))


def a_state(w: World) -> dict[str, Any]:
    """A's objects as the daemon reports them, plus what exists on the daemon at all."""
    c = w.daemon(f"/containers/{w.cid}/json")
    state = c["State"]
    v = w.daemon(f"/volumes/{w.volume}")
    n = w.daemon(f"/networks/{w.net_id}")
    i = w.daemon(f"/images/{w.image_id}/json")
    return {
        "execs": c.get("ExecIDs") or [],
        "container": (c["Id"], c["Name"], state["Status"], state["Pid"], state["StartedAt"],
                      c["RestartCount"], c["HostConfig"].get("CpuShares"),
                      c["HostConfig"].get("Memory"), c["Config"]["Labels"],
                      sorted(c["NetworkSettings"]["Networks"] or {})),
        "volume": (v["Name"], v["Labels"], v.get("Options")),
        "network": (n["Id"], n["Name"], n["Labels"], n.get("Containers") or {}),
        "image": (i["Id"], sorted(i.get("RepoTags") or [])),
        "daemon": w.engine.snapshot(),
    }


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Equal states; exec instances may only have gone (the daemon collects finished ones)."""
    assert set(after["execs"]) <= set(before["execs"]), "an exec instance appeared"
    assert {k: v for k, v in after.items() if k != "execs"} \
        == {k: v for k, v in before.items() if k != "execs"}


def forwarded_for(w: World, mark: int, caller: Caller) -> list[dict[str, Any]]:
    """Audit records of requests ``caller`` made since ``mark`` that were forwarded and
    name one of A's objects in their path."""
    who = principal(caller)
    out = []
    for r in w.tg.records_since(mark):
        if r.get("principal") != who or r.get("decision") != "allow":
            continue
        if any(name in str(r.get("path", "")) for name in w.names()):
            out.append(r)
    return out


def denials_for(w: World, mark: int, caller: Caller) -> list[dict[str, Any]]:
    who = principal(caller)
    return [r for r in w.tg.records_since(mark)
            if r.get("principal") == who and r.get("decision") == "deny"
            and r.get("stage") == "RequestDecided"]


def principal(caller: Caller) -> str:
    """The ``principal`` dockgate's audit records give ``caller``."""
    if caller.kind == "tls":
        return caller.cert
    pwd.getpwnam(caller.user)  # a named user: the principal is the name, as over TLS
    return caller.user


def assert_denied(result: Any, expect: str) -> None:
    assert result.returncode != 0, f"allowed: {result.args}\nstdout: {result.stdout[-500:]}"
    assert DG_MESSAGE.search(result.stderr), result.stderr
    assert expect in result.stderr, result.stderr


# -- the world: A's objects per engine and pair ---------------------------------------


@pytest.fixture(scope="module", params=[(e, p) for e in eng.ENGINE_NAMES for p in PAIRS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def world(request: pytest.FixtureRequest, engine_set: dict[str, Engine],
          tenant_gates: dict[str, TenantGate]) -> Iterator[World]:
    name, pair = request.param
    if name not in engine_set:
        pytest.skip(f"engine {name} not selected (DOCKGATE_TEST_ENGINES)")
    engine, tg = engine_set[name], tenant_gates[name]
    before = engine.snapshot()
    a, b = tg.caller(f"alice-{pair}"), tg.caller(f"bob-{pair}")
    tag = uuid.uuid4().hex[:8]
    subnet = f"127.{200 + eng.ENGINE_NAMES.index(name)}.{PAIRS.index(pair) + 10}.0/24"
    try:
        container, volume, network = f"a-c-{tag}", f"a-v-{tag}", f"a-n-{tag}"
        image = f"a-img-{tag}:latest"
        cid = a.docker("run", "-d", *NONE, "--name", container, IMAGE, "sleep", "300"
                       ).stdout.strip()
        a.docker("volume", "create", volume)
        net_id = a.docker("network", "create", "--internal", "--subnet", subnet, network
                          ).stdout.strip()
        image_id = a.docker("commit", "--pause=false", container, image).stdout.strip()
        yield World(engine, tg, pair, a, b, tg.caller("admin"), container, cid, volume,
                    network, net_id, image, image_id)
    finally:
        failures = engine.remove_new(before)
        assert not failures, f"could not clean up A's objects: {failures}"


@pytest.fixture
def w(world: World) -> Iterator[World]:
    """The world, with whatever a test creates removed afterwards (via the daemon)."""
    before = world.engine.snapshot()
    yield world
    assert world.tg.process.alive(), world.tg.process.log_text()[-3000:]
    failures = world.engine.remove_new(before)
    assert not failures, f"could not clean up: {failures}"


# -- B reaches for A's objects: every answer is the daemon's answer for a missing one ------

RUN = ("run", "--rm", *NONE)
# (id, B's arguments): {x} is the object reached for (A's, or a missing one of the same
# kind, shaped alike); {bc} is a container of B's own, {tag} a fresh suffix.
CROSS: list[tuple[str, str, tuple[str, ...]]] = [
    ("inspect", "container", ("inspect", "{x}")),
    ("container-inspect", "container", ("container", "inspect", "{x}")),
    ("logs", "container", ("logs", "{x}")),
    ("logs-follow", "container", ("logs", "-f", "{x}")),
    ("exec", "container", ("exec", "{x}", "true")),
    ("exec-detached", "container", ("exec", "-d", "{x}", "touch", "/tmp/b")),
    ("attach", "container", ("attach", "--no-stdin", "{x}")),
    ("stop", "container", ("stop", "-t", "1", "{x}")),
    ("kill", "container", ("kill", "{x}")),
    ("restart", "container", ("restart", "-t", "1", "{x}")),
    ("pause", "container", ("pause", "{x}")),
    ("top", "container", ("top", "{x}")),
    ("rm", "container", ("rm", "-f", "{x}")),
    ("rename", "container", ("rename", "{x}", "b-stolen-{tag}")),
    ("cp-out", "container", ("cp", "{x}:/etc/hostname", "-")),
    ("cp-in", "container", ("cp", "/etc/hostname", "{x}:/tmp/x")),
    ("commit", "container", ("commit", "{x}", "b-stolen-{tag}")),
    ("export", "container", ("export", "{x}")),
    ("update", "container", ("update", "--cpu-shares", "512", "{x}")),
    ("wait", "container", ("wait", "{x}")),
    ("port", "container", ("port", "{x}")),
    ("run-volumes-from", "container", (*RUN, "--volumes-from", "{x}", IMAGE, "true")),
    ("run-pid", "container", (*RUN[:2], "--pid", "container:{x}", *NONE, IMAGE, "true")),
    ("run-ipc", "container", (*RUN, "--ipc", "container:{x}", IMAGE, "true")),
    ("network-connect-container", "container", ("network", "connect", "{bn}", "{x}")),
    ("volume-inspect", "volume", ("volume", "inspect", "{x}")),
    ("volume-rm", "volume", ("volume", "rm", "-f", "{x}")),
    ("inspect-volume", "volume", ("inspect", "{x}")),
    ("network-inspect", "network", ("network", "inspect", "{x}")),
    ("network-rm", "network", ("network", "rm", "{x}")),
    ("network-disconnect", "network", ("network", "disconnect", "{x}", "{bc}")),
    ("inspect-network", "network", ("inspect", "{x}")),
    ("image-inspect", "image", ("image", "inspect", "{x}")),
    ("inspect-image", "image", ("inspect", "{x}")),
    ("history", "image", ("history", "{x}")),
    ("rmi", "image", ("rmi", "-f", "{x}")),
    ("tag", "image", ("tag", "{x}", "b-stolen-{tag}:x")),
    ("save", "image", ("save", "{x}")),
    ("push", "image", ("push", "{x}")),
    ("run-image", "image", (*RUN, "--pull", "never", "{x}", "true")),
    # The CLI reads "No such image" at create and pulls: the pull is forwarded with a
    # stand-in tag, so the registry is asked about a tag it does not have.
    ("run-image-pull", "image", (*RUN, "{x}", "true")),
    ("pull", "image", ("pull", "{x}")),
    ("create-image", "image", ("create", "--pull", "never", *NONE, "{x}", "true")),
    ("run-mount-image", "image", (*RUN, "--mount", "type=image,src={x},dst=/m", IMAGE, "true")),
    ("plugin-inspect", "plugin", ("plugin", "inspect", "{x}")),
    ("service-inspect", "service", ("service", "inspect", "{x}")),
]
DEVIATIONS = {
    # The daemon creates the container and looks the target up only at start; dockgate
    # refuses a missing and a foreign target alike at create, in the daemon's words.
    "run-network-container": ("container", (*RUN[:2], "--network", "container:{x}", IMAGE,
                                            "true")),
    "run-network": ("network", (*RUN[:2], "--network", "{x}", IMAGE, "true")),
    # Links of a user network's endpoint: engine 20.10 looks them up at start.
    "run-link": ("container", (*RUN[:2], "--network", "{bn}", "--link", "{x}:al", IMAGE,
                               "true")),
    # A created container is connected to a missing network without a lookup (at start).
    "network-connect": ("network", ("network", "connect", "{x}", "{bc}")),
    # The owner label dockgate sets makes the daemon refuse a network that takes its
    # configuration from another before it looks that one up ("user specified
    # configurations are not supported ..."): the same for a foreign and a missing one.
    "network-create-config-from": ("network", ("network", "create", "--config-from", "{x}",
                                               "b-cf-{tag}")),
    "network-connect-link": ("container", ("network", "connect", "--link", "{x}:al", "{bn}",
                                           "{bc}")),
}


def _name_of(w: World, kind: str) -> str:
    return {"container": w.container, "volume": w.volume, "network": w.network,
            "image": w.image, "plugin": w.container, "service": w.container}[kind]


def _missing_like(kind: str, tag: str) -> str:
    """A name of ``kind`` that names nothing, shaped like A's (images keep ``:latest``)."""
    return f"m-{kind[0]}-{tag}" + (":latest" if kind == "image" else "")


def _direct(w: World, args: list[str], cli: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    """The same CLI, run as root against the daemon's own socket, in B's environment."""
    argv = ["env", "-i", f"PATH={w.engine.direct_env['PATH']}",
            f"DOCKER_CONFIG={w.tg.docker_config}", "DOCKER_CLI_HINTS=false",
            "HOME=/nonexistent", f"DOCKER_HOST=unix://{w.engine.daemon_socket}",
            cli or w.engine.cli, *args]
    r = subprocess.run(argv, capture_output=True, timeout=60, check=False, cwd="/",
                       stdin=subprocess.DEVNULL)
    return subprocess.CompletedProcess(argv, r.returncode, r.stdout.decode(errors="replace"),
                                       r.stderr.decode(errors="replace"))


def _said(result: subprocess.CompletedProcess[str], name: str) -> tuple[int, str, str]:
    """What the CLI did, with the name reached for written NAME (and its bare form)."""
    bare = name.removesuffix(":latest")

    def norm(text: str) -> str:
        return text.replace(name, "NAME").replace(bare, "NAME")

    return result.returncode, norm(result.stdout), norm(result.stderr)


def _b_setup(w: World, args: tuple[str, ...], extra: dict[str, str]) -> None:
    if any("{bc}" in a for a in args):
        extra["bc"] = f"b-own-{extra['tag']}"
        w.b.docker("create", *NONE, "--name", extra["bc"], IMAGE, "true")
    if any("{bn}" in a for a in args):
        extra["bn"] = f"b-net-{extra['tag']}"
        w.b.docker("network", "create", "--internal", "--subnet", _other_subnet(w),
                   extra["bn"])


def _three_ways(w: World, kind: str, args: tuple[str, ...], cli: str | None = None
                ) -> dict[str, tuple[int, str, str]]:
    """B on A's object, B on a missing one, and the bare daemon on a missing one."""
    extra = {"tag": uuid.uuid4().hex[:8], "bc": "", "bn": ""}
    _b_setup(w, args, extra)
    theirs_name, missing = _name_of(w, kind), _missing_like(kind, extra["tag"])
    out = {}
    for key, caller, name in (("foreign", w.b, theirs_name), ("missing", w.b, missing),
                              ("direct", None, missing)):
        argv = [a.format(x=name, **extra) for a in args]
        since = time.time()
        result = caller.docker(*argv, check=False, timeout=60, cli=cli) if caller \
            else _direct(w, argv, cli)
        if key == "foreign":
            # The daemon's own record of B's attempt: nothing was created, started, joined,
            # executed, tagged or removed (dockgate's replays name only stand-ins).
            events = _events(w.engine, since, time.time())
            assert not events, events
        out[key] = _said(result, name)
    return out


def _events(engine: Engine, since: float, until: float) -> list[dict[str, Any]]:
    """Every event the daemon logged between ``since`` and ``until`` (by its nanosecond
    time stamps; the daemon logs an action's events before it answers)."""
    status, body = http.request(engine.daemon_socket, "GET",
                                f"/events?since={since - 1:.6f}&until={time.time():.6f}",
                                timeout=30)
    assert status == 200
    events = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    return [e for e in events if since * 1e9 <= e.get("timeNano", 0) <= until * 1e9]


LIVE = frozenset({"inspect", "container-inspect", "logs", "exec", "top", "port", "cp-out",
                  "export", "run-volumes-from", "run-pid", "volume-inspect",
                  "inspect-volume", "network-inspect", "inspect-network", "image-inspect",
                  "inspect-image", "history", "save", "run-mount-image", "create-image"})
"""Cases that only read or join A's objects: run directly against A's object, they succeed
on the daemon (so the refusal through dockgate is what stops them)."""

PULLS = frozenset({"pull", "run-image-pull"})
"""Cases whose pull is forwarded, with a stand-in tag in place of the caller's tag (the
daemon asks the registry, as for a missing name): allowed, not refused."""

NO_REFERENCE_ON = {("run-mount-image", "20.10")}
"""Cases where nothing is named on that engine: API 1.41 has no image mounts, and the
daemon refuses the mount type itself (dockgate forwards it, not a reference)."""


@pytest.mark.parametrize("case,kind,args", CROSS, ids=[i for i, _, _ in CROSS])
def test_foreign_answers_like_missing(w: World, case: str, kind: str,
                                      args: tuple[str, ...]) -> None:
    """B reaching for A's object by any reference gets, byte for byte apart from the name,
    the answer the daemon gives for a missing object of that kind (the daemon itself is the
    oracle), the CLI takes the same path, and A's objects are untouched."""
    before = a_state(w)
    mark = w.tg.mark()
    said = _three_ways(w, kind, args)
    assert said["foreign"] == said["missing"] == said["direct"], said
    assert "dockgate" not in said["foreign"][2]
    after = a_state(w)
    after["daemon"] = before["daemon"]  # B's own objects may exist; A's are compared
    assert_unchanged(before, after)
    if kind not in ("plugin", "service") and case != "pull" and (case, w.engine.name) not in NO_REFERENCE_ON:
        assert denials_for(w, mark, w.b), "no refusal recorded in the audit log"
    if case not in PULLS:
        assert not forwarded_for(w, mark, w.b)
    else:
        assert not [r for r in forwarded_for(w, mark, w.b)
                    if r.get("endpoint") != "image.create"], "only the pull, with a stand-in"
    if case in LIVE and (case, w.engine.name) not in NO_REFERENCE_ON:
        # The attack is live on the bare daemon: the same command reaches A's object.
        extra = {"tag": uuid.uuid4().hex[:8], "bc": "", "bn": ""}
        argv = [a.format(x=_name_of(w, kind), **extra) for a in args]
        reached = _direct(w, argv)
        assert reached.returncode == 0, reached.stderr


CLI20_CASES = ("inspect", "stop", "exec", "logs", "cp-out", "run-volumes-from", "run-pid",
               "volume-inspect", "inspect-volume", "network-inspect", "image-inspect",
               "inspect-image", "rmi", "tag", "save", "plugin-inspect", "pull",
               "run-image-pull")


@pytest.mark.parametrize("case", CLI20_CASES)
def test_foreign_answers_like_missing_cli20(w: World, case: str) -> None:
    """The docker CLI 20.10 takes the same path too (it probes and phrases differently)."""
    if w.pair != "unix":
        pytest.skip("one pair is enough for the second CLI")
    _, kind, args = next(c for c in CROSS if c[0] == case)
    said = _three_ways(w, kind, args, eng.CLI20)
    assert said["foreign"] == said["missing"] == said["direct"], said
    assert "dockgate" not in said["foreign"][2]


@pytest.mark.parametrize("case", sorted(DEVIATIONS))
def test_foreign_answers_like_missing_at_create(w: World, case: str) -> None:
    """References the daemon resolves only at start: dockgate refuses them at create, a
    foreign object exactly like a missing one, in the daemon's words for a missing one."""
    kind, args = DEVIATIONS[case]
    if case == "run-link" and w.engine.name == "20.10":
        args = ("create", *args[2:])  # the daemon would start it: compare the create
    before = a_state(w)
    said = _three_ways(w, kind, args)
    assert said["foreign"][0] != 0 and said["foreign"] == said["missing"], said
    assert "dockgate" not in said["foreign"][2]
    after = a_state(w)
    after["daemon"] = before["daemon"]
    assert_unchanged(before, after)


EXEC_CALLS = (("GET", "/exec/{x}/json", None), ("POST", "/exec/{x}/start", {"Detach": True}),
              ("POST", "/exec/{x}/resize?h=10&w=10", None))


def test_foreign_exec_answers_like_missing(w: World) -> None:
    """An exec instance of A's container, reached for by id over the API: B gets the raw
    answer (status, content type, body) the daemon gives for a missing exec id, and the
    exec never runs."""
    if w.pair != "tls":
        pytest.skip("raw API requests are made over TLS")
    status, created = w.a.request("POST", f"/containers/{w.cid}/exec",
                                  {"Cmd": ["touch", "/tmp/by-b"]})
    assert status == 201, created
    theirs, missing = created["Id"], uuid.uuid4().hex + uuid.uuid4().hex
    for method, path, body in EXEC_CALLS:
        got = {}
        for key, name in (("foreign", theirs), ("missing", missing)):
            st, ctype, raw = w.b.request_raw(method, path.format(x=name), body)
            got[key] = (st, ctype, raw.replace(name.encode(), b"NAME"))
        data = json.dumps(body).encode() if body is not None else None
        st, raw = http.request(w.engine.daemon_socket, method, path.format(x=missing), data)
        assert got["foreign"] == got["missing"], got
        assert (got["foreign"][0], got["foreign"][2]) == (st, raw.replace(missing.encode(),
                                                                          b"NAME")), got
    info = w.daemon(f"/exec/{theirs}/json")
    assert not info["Running"] and info["Pid"] == 0, "B's start ran A's exec"


RAW_CONTAINER_CALLS = (("POST", "/containers/{x}/attach?stream=1&stdout=1", None),
                       ("HEAD", "/containers/{x}/archive?path=/etc", None),
                       ("GET", "/containers/{x}/stats?stream=0", None),
                       ("POST", "/containers/{x}/resize?h=10&w=10", None),
                       ("POST", "/containers/{x}/kill?signal=BOGUS", None))


def test_foreign_container_raw_answers_like_missing(w: World) -> None:
    """Raw API calls whose answers the CLI never shows (attach's raw-stream 404, HEAD's empty
    body, a bad signal): status, content type and body as for a missing container."""
    if w.pair != "tls":
        pytest.skip("raw API requests are made over TLS")
    missing = f"m-c-{uuid.uuid4().hex[:8]}"
    before = a_state(w)
    for method, path, body in RAW_CONTAINER_CALLS:
        got = {}
        for key, name in (("foreign", w.container), ("missing", missing)):
            st, ctype, raw = w.b.request_raw(method, path.format(x=name), body)
            got[key] = (st, ctype, raw.replace(name.encode(), b"NAME"))
        st, raw = http.request(w.engine.daemon_socket, method, path.format(x=missing))
        assert got["foreign"] == got["missing"], got
        assert (got["foreign"][0], got["foreign"][2]) == (st, raw.replace(missing.encode(),
                                                                          b"NAME")), got
    assert_unchanged(before, a_state(w))


def test_foreign_network_id_answers_like_missing(w: World) -> None:
    """``NetworkID`` inside an endpoint (container create, network connect), named only over
    the API: A's network id gets the answer a missing network id gets, status, content type
    and body apart from the id, and nothing is created or connected."""
    if w.pair != "tls":
        pytest.skip("raw API requests are made over TLS")
    tag = uuid.uuid4().hex[:8]
    extra = {"tag": tag, "bc": "", "bn": ""}
    _b_setup(w, ("{bc}", "{bn}"), extra)
    missing = uuid.uuid4().hex + uuid.uuid4().hex
    before = a_state(w)
    calls = (("POST", "/containers/create", lambda x: {
                 "Image": IMAGE, "Cmd": ["true"],
                 "NetworkingConfig": {"EndpointsConfig": {extra["bn"]: {"NetworkID": x}}}}),
             ("POST", f"/networks/{extra['bn']}/connect",
              lambda x: {"Container": extra["bc"], "EndpointConfig": {"NetworkID": x}}))
    for method, path, body in calls:
        got = {}
        for key, name in (("foreign", w.net_id), ("missing", missing)):
            st, ctype, raw = w.b.request_raw(method, path, body(name))
            got[key] = (st, ctype, raw.replace(name.encode(), b"NAME"))
        assert got["foreign"] == got["missing"], got
        assert got["foreign"][0] >= 400 and b"dockgate" not in got["foreign"][2], got
    assert_unchanged(before, a_state(w))  # no container made, A's network joined by none
    networks = w.daemon(f"/containers/{extra['bc']}/json")["NetworkSettings"]["Networks"]
    assert set(networks or {}) <= {"none"}, networks


def test_docker_py_takes_the_missing_path(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-py: getting A's container, volume, network or image, and running or pulling
    A's image (docker-py pulls after "No such image"), raises the very exception (class,
    status, explanation apart from the name) it raises for a missing one, through dockgate
    and on the daemon's own socket."""
    if w.pair != "tls":
        pytest.skip("docker-py clients are made for TLS principals")
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)  # requests would prefer it to the test's CA
    b, direct = w.b.client(), w.engine.direct_client()
    tag = uuid.uuid4().hex[:8]
    calls = {"get": lambda c, kind, name: getattr(c, f"{kind}s").get(name),
             "run": lambda c, kind, name: c.containers.run(name, "true", network_mode="none",
                                                            remove=True),
             "pull": lambda c, kind, name: c.images.pull(name)}
    try:
        for call, kind, theirs_name in (("get", "container", w.container),
                                        ("get", "volume", w.volume),
                                        ("get", "network", w.network),
                                        ("get", "image", w.image), ("run", "image", w.image),
                                        ("pull", "image", w.image)):
            missing = _missing_like(kind, tag)
            said = []
            for client, name in ((b, theirs_name), (b, missing), (direct, missing)):
                with pytest.raises(docker.errors.APIError) as caught:
                    calls[call](client, kind, name)
                e = caught.value
                bare = name.removesuffix(":latest")
                said.append((type(e).__name__, e.status_code,
                             str(e.explanation).replace(name, "NAME").replace(bare, "NAME")))
            assert said[0] == said[1] == said[2], (call, kind, said)
            assert call != "get" or said[0][0] in ("NotFound", "ImageNotFound")
        # A name A holds: the 409 any daemon conflict gives (APIError, status 409).
        for create in (lambda: b.volumes.create(w.volume),
                       lambda: b.images.get(IMAGE).tag(w.image)):
            with pytest.raises(docker.errors.APIError) as caught:
                create()
            assert caught.value.status_code == 409
            assert "is already in use" in str(caught.value.explanation)
    finally:
        b.close()
        direct.close()


def test_id_prefixes_answer_like_missing(w: World) -> None:
    """A's container by full id or id prefix, as a path and as a namespace reference:
    the daemon's "No such container" with the prefix as written."""
    for ref in (w.cid[:12], w.cid[:5], w.cid):
        for args in (("container", "inspect", ref), ("stop", "-t", "1", ref),
                     ("exec", ref, "true"),
                     (*RUN[:2], "--pid", f"container:{ref}", *NONE, IMAGE, "true")):
            result = w.b.docker(*args, check=False)
            assert result.returncode != 0
            assert f"No such container: {ref}" in result.stderr, result.stderr
            assert "dockgate" not in result.stderr


def test_shared_image_is_used_not_changed(w: World) -> None:
    """The shared test image (imported before dockgate, unowned): B may run and inspect it,
    and is told in plain words that removing it or overwriting its name is for admins."""
    before = w.engine.snapshot()
    w.b.docker(*RUN, IMAGE, "true")
    w.b.docker("image", "inspect", IMAGE)
    for args in (("rmi", IMAGE), ("tag", IMAGE, IMAGE)):
        # (the CLI sends the tag's target fully qualified: docker.io/library/dgtest)
        assert_denied(w.b.docker(*args, check=False), f"{IMAGE}' is a shared image")
    assert w.engine.snapshot() == before


class FakeRegistry:
    """A registry on 127.0.0.1 that has no manifests: ``GET /v2/`` answers 200 and every
    manifest 404 ``MANIFEST_UNKNOWN`` with a message naming the tag asked for, which the
    daemon's pull error repeats.
    ``asked`` lists the manifest paths requested."""

    def __init__(self) -> None:
        asked: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, body: bool) -> None:
                if self.path.rstrip("/") == "/v2":
                    status, data = 200, b"{}"
                else:
                    asked.append(self.path)
                    # Like some registries, the message names what was asked for.
                    ref = self.path.rpartition("/manifests/")[2]
                    status, data = 404, json.dumps({"errors": [{
                        "code": "MANIFEST_UNKNOWN",
                        "message": f"manifest unknown: {ref}"}]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

        self.asked = asked
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("how", ["pull", "run"])
def test_pull_of_a_held_name_asks_the_registry(w: World, how: str) -> None:
    """B pulls (or runs, so the CLI pulls) a name A's image holds, on a registry that
    answers: the daemon asks the registry about a tag it does not have, and B reads, byte
    for byte apart from the name, what it reads for a name nobody holds, and what the bare
    daemon says for it.  A's name still names A's image."""
    if w.pair != "unix":
        pytest.skip("one pair is enough")
    registry = FakeRegistry()
    tag = uuid.uuid4().hex[:8]
    held = f"127.0.0.1:{registry.port}/a-reg-{tag}:v1"
    missing = f"127.0.0.1:{registry.port}/m-reg-{tag}:v1"
    try:
        w.a.docker("tag", w.image, held)
        args = ("pull", "{x}") if how == "pull" else (*RUN, "{x}", "true")
        said = {}
        for key, caller, name in (("foreign", w.b, held), ("missing", w.b, missing),
                                  ("direct", None, missing)):
            argv = [a.format(x=name) for a in args]
            result = caller.docker(*argv, check=False, timeout=60) if caller \
                else _direct(w, argv)
            said[key] = _said(result, name)
            if key == "foreign":
                assert registry.asked and ":v1" not in registry.asked[-1], registry.asked
                assert "v1" in said[key][2], said  # the caller's tag, put back
        assert said["foreign"] == said["missing"] == said["direct"], said
        assert said["foreign"][0] != 0 and "dockgate" not in said["foreign"][2]
        assert w.daemon(f"/images/{quote(held, safe='')}/json")["Id"] == w.image_id
    finally:
        registry.close()
        w.admin.docker("rmi", held, check=False)


def test_names_held_by_another_tenant(w: World) -> None:
    """Name squatting: B cannot create a container or network under a name A holds and gets
    the daemon's own "name in use" answer (the same as root gets on the daemon's socket);
    a volume name A holds is refused (the daemon would hand B A's volume)."""
    before = a_state(w)
    for args in (("create", *NONE, "--name", w.container, IMAGE, "true"),
                 ("network", "create", "--internal", "--subnet", _other_subnet(w), w.network)):
        through = w.b.docker(*args, check=False)
        direct = _direct(w, list(args))
        assert through.returncode != 0, through.stdout
        assert (through.returncode, through.stdout, through.stderr) \
            == (direct.returncode, direct.stdout, direct.stderr)
        assert "dockgate" not in through.stderr
    for cli, args in ((None, ("volume", "create", w.volume)),
                      (eng.CLI20, ("volume", "create", w.volume)),
                      (None, (*RUN, "-v", f"{w.volume}:/data", IMAGE, "true")),
                      (eng.CLI20, (*RUN, "-v", f"{w.volume}:/data", IMAGE, "true")),
                      (None, (*RUN, "--mount", f"type=volume,src={w.volume},dst=/data", IMAGE,
                              "true"))):
        result = w.b.docker(*args, check=False, cli=cli)
        assert result.returncode != 0 and w.volume not in result.stdout
        assert f"dockgate: volume name '{w.volume}' is already in use" in result.stderr, \
            result.stderr
        assert "tenant" not in result.stderr
    assert_unchanged(before, a_state(w))


EMPTY_TAR = bytes(1024)


def test_image_names_held_by_another_tenant(w: World) -> None:
    """Tag, commit, build and import would move a name off A's image: the daemon has no
    "name in use" answer for image names (it moves them), so B gets dockgate's 409 that
    says the name is taken, not whose it is, and A's name still names A's image."""
    before = a_state(w)
    tag = uuid.uuid4().hex[:8]
    bc = w.b.docker("create", *NONE, "--name", f"b-own-{tag}", IMAGE, "true").stdout.strip()
    tar = context({"Dockerfile": f"FROM {IMAGE}\nLABEL b=1\n"})
    attempts = {
        "tag": w.b.docker("tag", IMAGE, w.image, check=False),
        "commit": w.b.docker("commit", bc, w.image, check=False),
        "build": w.b.classic("build", "-t", w.image, "-", input=tar),
        "import": w.b.docker("import", "-", w.image, input=EMPTY_TAR, check=False),
        "tag-cli20": w.b.docker("tag", IMAGE, w.image, check=False, cli=eng.CLI20),
        "commit-cli20": w.b.docker("commit", bc, w.image, check=False, cli=eng.CLI20),
    }
    for what, result in attempts.items():
        assert result.returncode != 0, (what, result.stdout)
        assert re.search(r"dockgate: image name '(docker\.io/library/)?"
                         + re.escape(w.image) + "' is already in use", result.stderr), \
            (what, result.stderr)
        assert "tenant" not in result.stderr, (what, result.stderr)
    after = a_state(w)
    assert after["daemon"]["images"] == before["daemon"]["images"], "an image was made"
    after["daemon"] = before["daemon"]  # B's own container exists
    assert_unchanged(before, after)


def test_owner_still_acts_on_its_objects(w: World) -> None:
    """A itself: inspect, exec, logs, volume and network inspect are allowed."""
    assert w.a.docker("container", "inspect", "-f", "{{.Id}}", w.container).stdout.strip() \
        == w.cid
    w.a.docker("exec", "-d", w.container, "touch", "/tmp/by-a")
    w.a.docker("logs", w.container)
    w.a.docker("volume", "inspect", w.volume)
    w.a.docker("network", "inspect", w.network)
    w.a.docker("image", "inspect", w.image)
    # The admin too (over unix).
    deadline = time.monotonic() + 10
    while w.admin.docker("exec", w.container, "test", "-f", "/tmp/by-a", check=False).returncode:
        assert time.monotonic() < deadline, "A's detached exec did not run"
        time.sleep(0.1)
    assert w.admin.docker("exec", w.container, "echo", "hello").stdout == "hello\n"


SPOOFS = ["io.dockgate.owner", "IO.DOCKGATE.OWNER", "Io.Dockgate.Owner", "io.dockgate.OWNER",
          "io.dockgate.other", "\uff49\uff4f.dockgate.owner", "io.dock\u200bgate.owner"]


@pytest.mark.parametrize("key", SPOOFS, ids=range(len(SPOOFS)))
def test_label_spoof_refused(w: World, key: str) -> None:
    """A tenant cannot set the owner label or a lookalike on containers, volumes or networks through
    the real CLI: each is refused as reserved and the daemon's objects are unchanged."""
    before = w.engine.snapshot()
    label = f"{key}=teama"
    for args in ((*RUN, "--label", label, IMAGE, "true"),
                 ("create", *NONE, "--label", label, IMAGE, "true"),
                 ("volume", "create", "--label", label, f"b-v-{uuid.uuid4().hex[:8]}"),
                 ("network", "create", "--internal", "--label", label,
                  f"b-n-{uuid.uuid4().hex[:8]}")):
        result = w.b.docker(*args, check=False)
        assert_denied(result, f"label {key!r} is reserved for dockgate")
    assert w.engine.snapshot() == before


def _ids(out: str) -> set[str]:
    return {line.strip() for line in out.splitlines() if line.strip()}


def test_lists_show_own_objects_only(w: World) -> None:
    """docker ps, volume ls, network ls and images show each tenant only its own objects (an admin
    sees all), and a client's own filters can only narrow that."""
    tag = uuid.uuid4().hex[:8]
    bc = w.b.docker("create", *NONE, "--name", f"b-c-{tag}", IMAGE, "true").stdout.strip()
    w.b.docker("volume", "create", f"b-v-{tag}")
    callers = {"a": w.a, "b": w.b, "admin": w.admin}
    ps = {k: _ids(c.docker("ps", "-a", "--no-trunc", "-q").stdout) for k, c in callers.items()}
    assert w.cid in ps["a"] and bc not in ps["a"]
    assert ps["b"] == {bc}
    assert {w.cid, bc} <= ps["admin"]
    vols = {k: _ids(c.docker("volume", "ls", "-q").stdout) for k, c in callers.items()}
    assert w.volume in vols["a"] and f"b-v-{tag}" not in vols["a"]
    assert vols["b"] == {f"b-v-{tag}"}
    assert {w.volume, f"b-v-{tag}"} <= vols["admin"]
    nets = {k: _ids(c.docker("network", "ls", "--no-trunc", "-q").stdout)
            for k, c in callers.items()}
    assert w.net_id in nets["a"] and "none" not in nets["a"]
    assert nets["b"] == set()
    assert w.net_id in nets["admin"]
    imgs = {k: _ids(c.docker("images", "--no-trunc", "-q").stdout) for k, c in callers.items()}
    assert w.image_id in imgs["a"]
    assert imgs["b"] == set()  # dgtest is unowned: the shared cache is not listed
    assert w.image_id in imgs["admin"]
    # Filters of the client's own still work and can only narrow.
    narrowed = w.b.docker("ps", "-a", "-q", "--no-trunc", "--filter", f"name={w.container}")
    assert narrowed.stdout.strip() == ""


def _other_subnet(w: World) -> str:
    """A loopback subnet of B's own, apart from the world's network."""
    return (f"127.{200 + eng.ENGINE_NAMES.index(w.engine.name)}."
            f"{PAIRS.index(w.pair) + 20}.0/24")


def test_events_show_own_objects_only(w: World) -> None:
    """docker events shows each tenant only events of its own objects (label-less volumes and
    networks by asking the daemon); an admin sees everyone's."""
    since = w.daemon("/info")["SystemTime"]
    tag = uuid.uuid4().hex[:8]
    ac = w.a.docker("run", "-d", *NONE, "--name", f"a-e-{tag}", IMAGE, "true").stdout.strip()
    bc = w.b.docker("run", "-d", *NONE, "--name", f"b-e-{tag}", IMAGE, "true").stdout.strip()
    bv = f"b-ev-{tag}"
    w.b.docker("volume", "create", bv)
    bn = w.b.docker("network", "create", "--internal", "--subnet", _other_subnet(w),
                    f"b-en-{tag}").stdout.strip()
    time.sleep(0.5)
    until = str(time.time())
    own = {"a": {w.volume, w.net_id}, "b": {bv, bn}}
    seen = {}
    for key, caller in (("a", w.a), ("b", w.b), ("admin", w.admin)):
        out = caller.docker("events", "--since", since, "--until", until,
                            "--format", "{{json .}}", timeout=30).stdout
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        seen[key] = {e.get("Actor", {}).get("ID") for e in events}
        if key != "admin":
            tenant = caller.tenant
            for e in events:
                actor = e.get("Actor", {})
                if e.get("Type") in ("volume", "network"):
                    # No labels on these: dockgate asked the daemon whose they are.
                    assert actor.get("ID") in own[key], f"{key} saw {e}"
                    continue
                owner = actor.get("Attributes", {}).get("io.dockgate.owner")
                assert owner == tenant, f"{key} saw an event of {owner}: {e}"
    assert ac in seen["a"] and bc not in seen["a"]
    assert bc in seen["b"] and ac not in seen["b"]
    assert {bv, bn} <= seen["b"] and not {bv, bn} & seen["a"]
    assert {ac, bc, bv, bn} <= seen["admin"]


def test_live_events_follow_own_volumes_from_create_to_destroy(w: World) -> None:
    """While the stream is open: B sees its volume created and destroyed (the destroy is
    known from the create), and nothing of A's, which came first in the stream."""
    tag = uuid.uuid4().hex[:8]
    mine, theirs = f"b-lv-{tag}", f"a-lv-{tag}"
    since = time.time()
    watcher = subprocess.Popen(
        w.b.argv(("events", "--since", f"{since:.3f}", "--filter", "type=volume",
                  "--format", "{{json .}}")),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/",
        text=True)
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(iter(watcher.stdout.readline, "")),  # type: ignore[union-attr]
        daemon=True)
    reader.start()
    try:
        for caller, name in ((w.a, theirs), (w.b, mine)):
            caller.docker("volume", "create", name)
            time.sleep(0.5)  # an object gone before dockgate could ask stays hidden
            caller.docker("volume", "rm", name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                mine in x and "destroy" in x for x in lines):
            time.sleep(0.1)
    finally:
        watcher.terminate()
        watcher.wait(10)
    events = [json.loads(x) for x in lines if x.strip()]
    actions = [(e["Actor"]["ID"], e["Action"]) for e in events]
    assert (mine, "create") in actions and (mine, "destroy") in actions, actions
    assert not [a for a in actions if a[0] != mine], actions


# -- streams over each transport ----------------------------------------------------------

def test_tls_handshake_with_alpn(w: World) -> None:
    """A client that offers ALPN http/1.1 (Go's hijack dialer, docker-py, curl) must get a
    TLS session (dockgate need not select a protocol)."""
    if w.pair != "tls":
        pytest.skip("TLS only")
    for alpn in (None, ["http/1.1"]):
        ctx = w.a.tls_context(alpn)
        with socket.create_connection(("127.0.0.1", w.tg.port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: dockgate\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := tls.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"OK"), reply


def test_run_stdin_eof_reaches_process(request: pytest.FixtureRequest, w: World) -> None:
    """For each tenant, docker run -i delivers stdin and its EOF to the process, whose output after
    EOF arrives."""
    for caller in (w.a, w.b):
        result = caller.docker("run", "-i", "--rm", *NONE, IMAGE, "sh", "-c", "cat; echo after-eof",
                               input="hi\n", timeout=60)
        assert result.stdout == "hi\nafter-eof\n", result.stderr


def test_exec_stdin_eof_reaches_process(request: pytest.FixtureRequest, w: World) -> None:
    """docker exec -i by the owning tenant delivers stdin and its EOF to the process."""
    result = w.a.docker("exec", "-i", w.container, "sh", "-c", "cat; echo after-eof",
                        input="hi\n", timeout=60)
    assert result.stdout == "hi\nafter-eof\n", result.stderr


def test_logs_follow_own_container(w: World) -> None:
    """docker logs -f follows the owner's container to its end, while another tenant is told the
    container does not exist, in the daemon's words."""
    name = f"a-l-{uuid.uuid4().hex[:8]}"
    w.a.docker("run", "-d", *NONE, "--name", name, IMAGE, "sh", "-c",
               "echo one; sleep 2; echo two")
    result = w.a.docker("logs", "-f", name, timeout=60)
    assert result.stdout == "one\ntwo\n", result.stderr
    result = w.b.docker("logs", "-f", name, check=False, timeout=30)
    assert result.returncode != 0
    assert f"Error response from daemon: No such container: {name}" in result.stderr


# -- quotas -----------------------------------------------------------------------------


def test_quotas(w: World) -> None:
    """Container and running-container quotas refuse creates, runs and starts beyond them without
    changing the daemon, do not count other tenants, and free up as containers stop or go."""
    b, tag = w.b, uuid.uuid4().hex[:8]
    assert b.docker("ps", "-aq").stdout.strip() == "", "teamb must start with no containers"
    b.docker("run", "-d", *NONE, "--name", f"b-q1-{tag}", IMAGE, "sleep", "300")
    b.docker("create", *NONE, "--name", f"b-q2-{tag}", IMAGE, "sleep", "300")
    before = w.engine.snapshot()
    result = b.docker("create", *NONE, "--name", f"b-q3-{tag}", IMAGE, "true", check=False)
    assert_denied(result, f"dockgate: quota: tenant teamb may have at most "
                          f"{QUOTA_CONTAINERS} containers")
    result = b.docker("run", "-d", *NONE, IMAGE, "true", check=False)
    assert_denied(result, "dockgate: quota: tenant teamb may have at most")
    result = b.docker("start", f"b-q2-{tag}", check=False)
    assert_denied(result, f"dockgate: quota: tenant teamb may run at most {QUOTA_RUNNING} "
                          "containers")
    assert w.engine.snapshot() == before
    state = w.daemon(f"/containers/b-q2-{tag}/json")["State"]
    assert state["Status"] == "created"
    # A is not limited by B's quota, and B's quota does not count A's containers.
    w.a.docker("create", *NONE, "--name", f"a-q-{tag}", IMAGE, "true")
    # Freeing up: stop one, then the other starts; remove one, then another can be created.
    b.docker("stop", "-t", "1", f"b-q1-{tag}")
    b.docker("start", f"b-q2-{tag}")
    b.docker("rm", f"b-q1-{tag}")
    b.docker("create", *NONE, "--name", f"b-q3-{tag}", IMAGE, "sleep", "300")
    result = b.docker("start", f"b-q3-{tag}", check=False)
    assert_denied(result, "dockgate: quota: tenant teamb may run at most")
    b.docker("rm", "-f", f"b-q2-{tag}")
    b.docker("start", f"b-q3-{tag}")


# -- the audit log names the tenant ------------------------------------------------------


def test_audit_records_name_the_tenant(w: World) -> None:
    """Each RequestDecided audit record names the tenant the caller mapped to."""
    mark = w.tg.mark()
    w.a.docker("ps")
    w.b.docker("inspect", w.container, check=False)
    records = [r for r in w.tg.records_since(mark) if r.get("stage") == "RequestDecided"]
    by_a = [r for r in records if r.get("principal") == principal(w.a)]
    by_b = [r for r in records if r.get("principal") == principal(w.b)]
    assert by_a and by_b
    assert {r.get("tenant") for r in by_a} == {"teama"}
    assert {r.get("tenant") for r in by_b} == {"teamb"}


# -- references to objects that do not exist ----------------------------------------------

def test_inspect_missing_volume_creates_nothing(w: World) -> None:
    """Inspecting or removing a volume that does not exist fails and creates no volume as a side
    effect."""
    before = w.engine.snapshot()
    missing = f"b-missing-{uuid.uuid4().hex[:8]}"
    results = [w.b.docker("volume", "inspect", missing, check=False),
               w.b.docker("inspect", missing, check=False),
               w.b.docker("volume", "rm", missing, check=False)]
    created = w.engine.snapshot()["volumes"] - before["volumes"]
    assert not created, f"a volume was created: {created}"
    assert all(r.returncode != 0 for r in results), [r.stdout for r in results]


def test_run_with_new_named_volume_owns_it(w: World) -> None:
    """``-v NEW:/data`` creates the volume for the caller's tenant (the other cannot use it)."""
    name = f"b-new-{uuid.uuid4().hex[:8]}"
    w.b.docker(*RUN, "-v", f"{name}:/data", IMAGE, "true")
    assert w.daemon(f"/volumes/{name}")["Labels"] == {"io.dockgate.owner": w.b.tenant}
    assert_denied(w.a.docker(*RUN, "-v", f"{name}:/data", IMAGE, "true", check=False),
                  f"dockgate: volume name '{name}' is already in use")


# -- a name reused while another tenant reaches for it -------------------------------


RACE_ROUNDS = 20


def _daemon_events(engine: Engine, since: float, until: float) -> list[dict[str, Any]]:
    status, body = http.request(
        engine.daemon_socket, "GET",
        f"/events?since={since:.6f}&until={until:.6f}&filters="
        + quote(json.dumps({"type": ["container"]})), timeout=30)
    assert status == 200
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


@pytest.mark.parametrize("engine_name", eng.ENGINE_NAMES)
def test_name_reuse_race(engine_set: dict[str, Engine], tenant_gates: dict[str, TenantGate],
                         engine_name: str) -> None:
    """A removes and recreates one name in a loop; B's inspect, stop and exec of that name
    never succeed, and the daemon never stops, kills (other than A's rm -f) or execs in any
    of A's containers."""
    if engine_name not in engine_set:
        pytest.skip(f"engine {engine_name} not selected")
    engine, tg = engine_set[engine_name], tenant_gates[engine_name]
    before = engine.snapshot()
    name = f"a-race-{uuid.uuid4().hex[:8]}"
    alice = tg.caller("alice-tls")
    bob = tg.caller("bob-unix")
    ids: list[str] = []
    stop = threading.Event()
    attempts: list[tuple[str, Any]] = []

    def run_as_alice() -> None:
        status, body = alice.request("POST", f"/containers/create?name={name}", {
            "Image": IMAGE, "Cmd": ["sleep", "300"], "HostConfig": {"NetworkMode": "none"}})
        assert status == 201, body
        ids.append(body["Id"])
        status, body = alice.request("POST", f"/containers/{body['Id']}/start")
        assert status == 204, body

    def reach() -> None:
        # ``container inspect``: a bare ``docker inspect`` of a missing name goes on to
        # volume inspect, which meets test_inspect_missing_volume_creates_nothing's bug.
        verbs = (("container", "inspect", name), ("stop", "-t", "1", name),
                 ("exec", name, "true"))
        i = 0
        while not stop.is_set():
            args = verbs[i % len(verbs)]
            attempts.append((" ".join(args), bob.docker(*args, check=False, timeout=30)))
            i += 1

    since = time.time() - 1
    mark = tg.mark()
    try:
        run_as_alice()
        thread = threading.Thread(target=reach)
        thread.start()
        try:
            for _ in range(RACE_ROUNDS):
                status, body = alice.request("DELETE", f"/containers/{name}?force=1")
                assert status == 204, body
                run_as_alice()
        finally:
            stop.set()
            thread.join(60)
        until = time.time() + 1
        time.sleep(1.2)
        assert len(attempts) >= 10, f"only {len(attempts)} attempts by B"
        succeeded = [(a, r.stdout, r.stderr) for a, r in attempts if r.returncode == 0]
        assert not succeeded
        for what, r in attempts:
            assert "dockgate: " in r.stderr or "No such" in r.stderr, (what, r.stderr)
        # The daemon's own record: nothing but A's lifecycle on A's containers.
        events = _daemon_events(engine, since, until)
        mine = set(ids)
        bad = [e for e in events
               if e.get("Actor", {}).get("ID") in mine
               and (e.get("Action", "").startswith(("exec_", "stop", "pause", "rename"))
                    or (e.get("Action") == "kill"
                        and e["Actor"].get("Attributes", {}).get("signal") != "9"))]
        assert not bad, bad
        audit_b = [r for r in tg.records_since(mark) if r.get("principal") == principal(bob)
                   and r.get("decision") == "allow"
                   and any(n in str(r.get("path", "")) for n in (name, *ids))]
        assert not audit_b, audit_b
    finally:
        failures = engine.remove_new(before)
        assert not failures


# -- compose, two tenants ------------------------------------------------------------------

OWN_PROJECT = """\
services:
  app:
    image: {image}
    pull_policy: never
    network_mode: none
    init: true
    volumes: ["data:/data"]
    command: ["sh", "-c", "echo compose-says-$$((6*7)) > /data/state; cat /data/state; exec sleep 300"]
volumes:
  data: {{}}
"""

EXTERNAL = {
    # (kind of A's object, compose file naming it @X@); B's project, A's object as external.
    "volume": ("volume", """\
services:
  app: {image: @IMAGE@, pull_policy: never, network_mode: none, command: ["true"],
        volumes: ["ext:/data"]}
volumes:
  ext: {external: true, name: "@X@"}
"""),
    "network": ("network", """\
services:
  app: {image: @IMAGE@, pull_policy: never, networks: [ext], command: ["true"]}
networks:
  ext: {external: true, name: "@X@"}
"""),
    "image": ("image", """\
services:
  app: {image: "@X@", pull_policy: never, network_mode: none, command: ["true"]}
"""),
    "image-pulled": ("image", """\
services:
  app: {image: "@X@", network_mode: none, command: ["true"]}
"""),
}


def _project_dir(text: str) -> Path:
    """A compose file in a directory every test user can read."""
    return readable_dir({"compose.yaml": text})


def test_compose_own_project_up_down(w: World) -> None:
    """B's own compose project: up (its volume created for B), ps, logs, down --volumes,
    all through dockgate; B's objects carry B's owner label, A's are untouched."""
    if w.pair != "unix":
        pytest.skip("one pair is enough for compose")
    before = a_state(w)
    project = f"bproj{uuid.uuid4().hex[:8]}"
    d = _project_dir(OWN_PROJECT.format(image=IMAGE))
    compose = ("compose", "-p", project, "-f", str(d / "compose.yaml"))
    w.b.docker(*compose, "up", "-d", "--wait", timeout=180)
    rows = [json.loads(line) for line in
            w.b.docker(*compose, "ps", "--format", "json").stdout.splitlines() if line]
    assert [(r["Service"], r["State"]) for r in rows] == [("app", "running")], rows
    assert "compose-says-42" in w.b.docker(*compose, "logs", "--no-color").stdout
    volume = w.daemon(f"/volumes/{project}_data")
    assert volume["Labels"]["io.dockgate.owner"] == w.b.tenant
    w.b.docker(*compose, "down", "--volumes", timeout=180)
    assert w.b.docker("ps", "-aq").stdout.strip() == ""
    assert project + "_data" not in w.b.docker("volume", "ls", "-q").stdout
    after = a_state(w)
    assert_unchanged(before, after)


def test_compose_same_project_name_is_per_tenant(w: World) -> None:
    """A's project P is up; B's ``compose -p P ps`` lists nothing and B's ``compose -p P down
    --volumes`` removes nothing of A's (compose finds a project's objects by label, in lists
    dockgate scopes to the caller); A's own down removes it all."""
    if w.pair != "unix":
        pytest.skip("one pair is enough for compose")
    project = f"proj{uuid.uuid4().hex[:8]}"
    d = _project_dir(OWN_PROJECT.format(image=IMAGE))
    compose = ("compose", "-p", project, "-f", str(d / "compose.yaml"))
    w.a.docker(*compose, "up", "-d", "--wait", timeout=180)
    a_ids = w.a.docker(*compose, "ps", "-q").stdout.split()
    assert len(a_ids) == 1
    assert w.b.docker(*compose, "ps", "-q").stdout.strip() == ""
    w.b.docker(*compose, "down", "--volumes", timeout=180, check=False)
    assert w.daemon(f"/containers/{a_ids[0]}/json")["State"]["Running"]
    assert w.daemon(f"/volumes/{project}_data")["Labels"]["io.dockgate.owner"] == w.a.tenant
    w.a.docker(*compose, "down", "--volumes", timeout=180)
    assert project + "_data" not in w.a.docker("volume", "ls", "-q").stdout


@pytest.mark.parametrize("case", sorted(EXTERNAL))
def test_compose_external_foreign_like_missing(w: World, case: str) -> None:
    """B's project naming A's volume, network or image as external (or as its image): compose
    fails exactly as for a missing one, byte for byte apart from the name, through dockgate
    and on the daemon's own socket; nothing of A's is used."""
    if w.pair != "unix":
        pytest.skip("one pair is enough for compose")
    kind, text = EXTERNAL[case]
    before = a_state(w)
    project = f"bext{uuid.uuid4().hex[:8]}"
    missing = _missing_like(kind, uuid.uuid4().hex[:8])
    said = {}
    for key, caller, name in (("foreign", w.b, _name_of(w, kind)), ("missing", w.b, missing),
                              ("direct", None, missing)):
        d = _project_dir(text.replace("@IMAGE@", IMAGE).replace("@X@", name))
        argv = ["compose", "-p", project, "-f", str(d / "compose.yaml"), "up", "-d"]
        result = caller.docker(*argv, check=False, timeout=180) if caller else _direct(w, argv)
        said[key] = _said(result, name)
        remove = ["compose", "-p", project, "-f", str(d / "compose.yaml"), "down"]
        _direct(w, remove)
    assert said["foreign"][0] != 0, said
    assert said["foreign"] == said["missing"] == said["direct"], said
    assert "dockgate" not in said["foreign"][2]
    after = a_state(w)
    after["daemon"] = before["daemon"]
    assert_unchanged(before, after)

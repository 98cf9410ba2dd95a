"""Tenancy end to end: real unix users and real client certificates, the real
docker CLI 28, both real daemons, one ``dockgate serve --tenants`` in front of
each (tests/support/tenantgate.py).

For each engine and each pair of principals (unix users dgalice/dgbob; TLS
certificates alice-cert/bob-cert), tenant A (``teama``) owns a container, a
volume, a network and a committed image.  Every action tenant B (``teamb``)
takes on them must exit non-zero with dockgate's message, leave A's objects
unchanged as the daemon itself reports them, and forward nothing that names
them.  Lists and events show each tenant only its own objects, and the admin
(root over unix) everything.  Quotas, label spoofing, stdin half-close over
TLS and a name-reuse race are covered too.
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
from typing import Any
from urllib.parse import quote

import pytest
from support import engines as eng
from support import unixhttp as http
from support.engines import IMAGE, Engine
from support.tenantgate import QUOTA_CONTAINERS, QUOTA_RUNNING, Caller, TenantGate, tenant_gates

pytestmark = [pytest.mark.engine, pytest.mark.allow_refusals]
_ = tenant_gates  # fixture, imported for pytest

PAIRS = ("unix", "tls")
NONE = ("--network", "none")
DG_MESSAGE = re.compile(r"(?m)(^|Error response from daemon: )dockgate: ")


def theirs(kind: str, ref: str, where: str = "path", tenant: str = "teamb") -> str:
    """dockgate's refusal for another tenant's object."""
    return f"dockgate: {kind} '{ref}' ({where}) belongs to another tenant than {tenant}"


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


# -- B acts on A's objects --------------------------------------------------------------

RUN = ("run", "--rm", *NONE)
# (id, B's arguments, expected refusal); {c} A's container, {v} volume, {n} network,
# {i} image, {bc} a container of B's own.
CROSS = [
    ("inspect", ("inspect", "{c}"), theirs("container", "{c}")),
    ("container-inspect", ("container", "inspect", "{c}"), theirs("container", "{c}")),
    ("logs", ("logs", "{c}"), theirs("container", "{c}")),
    ("exec", ("exec", "{c}", "true"), theirs("container", "{c}")),
    ("exec-detached", ("exec", "-d", "{c}", "touch", "/tmp/b"), theirs("container", "{c}")),
    ("attach", ("attach", "--no-stdin", "{c}"), theirs("container", "{c}")),
    ("stop", ("stop", "-t", "1", "{c}"), theirs("container", "{c}")),
    ("kill", ("kill", "{c}"), theirs("container", "{c}")),
    ("restart", ("restart", "-t", "1", "{c}"), theirs("container", "{c}")),
    ("pause", ("pause", "{c}"), theirs("container", "{c}")),
    ("top", ("top", "{c}"), theirs("container", "{c}")),
    ("rm", ("rm", "-f", "{c}"), theirs("container", "{c}")),
    ("rename", ("rename", "{c}", "b-stolen-{tag}"), theirs("container", "{c}")),
    ("cp-out", ("cp", "{c}:/etc/hostname", "-"), theirs("container", "{c}")),
    ("cp-in", ("cp", "/etc/hostname", "{c}:/tmp/x"), theirs("container", "{c}")),
    ("commit", ("commit", "{c}", "b-stolen-{tag}"), theirs("container", "{c}", "container")),
    ("export", ("export", "{c}"), theirs("container", "{c}")),
    ("update", ("update", "--cpu-shares", "512", "{c}"), theirs("container", "{c}")),
    ("network-connect-container", ("network", "connect", "{n}", "{c}"),
     theirs("network", "{n}")),
    ("network-connect-own", ("network", "connect", "{n}", "{bc}"), theirs("network", "{n}")),
    ("network-inspect", ("network", "inspect", "{n}"), theirs("network", "{n}")),
    ("network-rm", ("network", "rm", "{n}"), theirs("network", "{n}")),
    ("volume-inspect", ("volume", "inspect", "{v}"), theirs("volume", "{v}")),
    ("volume-rm", ("volume", "rm", "-f", "{v}"), theirs("volume", "{v}")),
    ("run-volumes-from", (*RUN, "--volumes-from", "{c}", IMAGE, "true"),
     theirs("container", "{c}", "HostConfig.VolumesFrom[0]")),
    ("run-pid", (*RUN[:2], "--pid", "container:{c}", *NONE, IMAGE, "true"),
     theirs("container", "{c}", "HostConfig.PidMode")),
    ("run-network", (*RUN[:2], "--network", "container:{c}", IMAGE, "true"),
     theirs("container", "{c}", "HostConfig.NetworkMode")),
    ("run-ipc", (*RUN, "--ipc", "container:{c}", IMAGE, "true"),
     theirs("container", "{c}", "HostConfig.IpcMode")),
    ("run-volume", (*RUN, "-v", "{v}:/data", IMAGE, "true"),
     theirs("volume", "{v}", "HostConfig.Binds[0]")),
    ("run-mount", (*RUN, "--mount", "type=volume,src={v},dst=/data", IMAGE, "true"),
     theirs("volume", "{v}", "HostConfig.Mounts[0].Source")),
    ("run-image", (*RUN, "{i}", "true"), theirs("image", "{i}", "Image")),
    ("image-inspect", ("image", "inspect", "{i}"), theirs("image", "{i}")),
    ("rmi", ("rmi", "-f", "{i}"), theirs("image", "{i}")),
    ("tag", ("tag", "{i}", "b-stolen-{tag}:x"), theirs("image", "{i}")),
]


def fill(text: str, w: World, extra: dict[str, str]) -> str:
    return text.format(c=w.container, v=w.volume, n=w.network, i=w.image, **extra)


@pytest.mark.parametrize("args,expect", [(a, e) for _, a, e in CROSS],
                         ids=[i for i, _, _ in CROSS])
def test_cross_tenant_action_denied(w: World, args: tuple[str, ...], expect: str) -> None:
    extra = {"tag": uuid.uuid4().hex[:8], "bc": ""}
    if "{bc}" in " ".join(args):
        extra["bc"] = f"b-own-{extra['tag']}"
        w.b.docker("create", *NONE, "--name", extra["bc"], IMAGE, "true")
    argv = [fill(a, w, extra) for a in args]
    before = a_state(w)
    mark = w.tg.mark()
    result = w.b.docker(*argv, check=False, timeout=30)
    assert_denied(result, fill(expect, w, extra))
    after = a_state(w)
    if extra["bc"]:
        # B's own container is allowed to exist; nothing else may appear.
        after["daemon"]["containers"] = before["daemon"]["containers"] = set()
    assert_unchanged(before, after)
    assert denials_for(w, mark, w.b), "no refusal recorded in the audit log"
    assert not forwarded_for(w, mark, w.b)


def test_id_prefix_and_full_id_denied_the_same(w: World) -> None:
    for ref in (w.cid[:12], w.cid[:5], w.cid):
        before = a_state(w)
        for verb in (("container", "inspect"), ("stop", "-t", "1"), ("exec",)):
            tail = ("true",) if verb == ("exec",) else ()
            result = w.b.docker(*verb, ref, *tail, check=False)
            assert_denied(result, theirs("container", ref))
        assert_unchanged(before, a_state(w))
    # As a --volumes-from / namespace target too.
    result = w.b.docker(*RUN[:2], "--pid", f"container:{w.cid[:12]}", *NONE, IMAGE, "true",
                        check=False)
    assert_denied(result, theirs("container", w.cid[:12], "HostConfig.PidMode"))


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
    for caller in (w.a, w.b):
        result = caller.docker("run", "-i", "--rm", *NONE, IMAGE, "sh", "-c", "cat; echo after-eof",
                               input="hi\n", timeout=60)
        assert result.stdout == "hi\nafter-eof\n", result.stderr


def test_exec_stdin_eof_reaches_process(request: pytest.FixtureRequest, w: World) -> None:
    result = w.a.docker("exec", "-i", w.container, "sh", "-c", "cat; echo after-eof",
                        input="hi\n", timeout=60)
    assert result.stdout == "hi\nafter-eof\n", result.stderr


def test_logs_follow_own_container(w: World) -> None:
    name = f"a-l-{uuid.uuid4().hex[:8]}"
    w.a.docker("run", "-d", *NONE, "--name", name, IMAGE, "sh", "-c",
               "echo one; sleep 2; echo two")
    result = w.a.docker("logs", "-f", name, timeout=60)
    assert result.stdout == "one\ntwo\n", result.stderr
    assert_denied(w.b.docker("logs", "-f", name, check=False, timeout=30),
                  theirs("container", name))


# -- quotas -----------------------------------------------------------------------------


def test_quotas(w: World) -> None:
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
                  theirs("volume", name, "HostConfig.Binds[0]", w.a.tenant))


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

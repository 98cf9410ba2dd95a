"""Issue 21, the read side and registries: what a read-only consumer (or a
baseline/restricted client) can make the daemon do or learn, attacked live
against the bare daemon first and then through each shipped profile.

Oracles are the daemon's own actions (a connection arriving at a loopback
listener the test opens) and the exact bytes a client received.
"""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from support import engines as eng
from support import unixhttp
from support.buildhelp import context
from support.engines import IMAGE, Engine
from support.policygate import (
    PROFILES,
    PolicyGate,
    policy_audit_guard,
    policy_gates,
    profile_gates,
)

pytestmark = pytest.mark.engine
_ = (policy_gates, policy_audit_guard, profile_gates)  # fixtures, imported for pytest


class Listener:
    """A TCP listener on ``address`` that counts connections and closes each at once."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.host = f"[{address}]:{self.port}" if family == socket.AF_INET6 else (
            f"{address}:{self.port}")
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def wait_for_connection(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connections:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    try:
        yield lst
    finally:
        lst.close()


REGISTRY_REQUESTS = {
    "distribution": ("GET", "/distribution/{host}/x/json"),
    "pull": ("POST", "/images/create?fromImage={host}/x&tag=1"),
    "pull-beside-import": ("POST", "/images/create?fromSrc=-&fromImage={host}/x&tag=1"),
    "push": ("POST", "/images/{host}/x/push?tag=1"),
    "search": ("GET", "/images/search?term={host}/x"),
    "build-from": ("POST", "/build?networkmode=none"),
    "build-remote": ("POST", "/build?remote=http://{host}/context.tar"),
    "import-url": ("POST", "/images/create?fromSrc=http://{host}/layer.tar"),
}
"""Requests that make dockerd connect to the registry (or URL) they name."""

EARLIER_RULES = {
    ("baseline", "build-from"): "build-fetches",
    ("readonly", "pull"): "read-only-endpoints",
    ("readonly", "pull-beside-import"): "read-only-endpoints",
    ("readonly", "push"): "read-only-endpoints",
    ("readonly", "search"): "read-only-endpoints",
    ("readonly", "build-from"): "read-only-endpoints",
    ("readonly", "build-remote"): "read-only-endpoints",
    ("readonly", "import-url"): "read-only-endpoints",
    ("restricted", "pull-beside-import"): "no-image-import",
    ("restricted", "build-from"): "escalation-endpoints",
    ("restricted", "build-remote"): "escalation-endpoints",
    ("restricted", "import-url"): "no-image-import",
}
"""Where a rule before ``registries`` refuses the request first."""


def registry_request(engine: Engine, what: str, host: str) -> tuple[str, str, dict[str, Any]]:
    """(method, target, keywords for ``unixhttp.request``) of request ``what`` naming
    registry ``host``; a push first tags the test image into that registry on the daemon."""
    method, target = REGISTRY_REQUESTS[what]
    body: dict[str, Any] = {}
    if what == "push":  # 20.10 wants credentials, even empty ones
        engine.docker_direct("tag", IMAGE, f"{host}/x:1")
        body = {"headers": {"X-Registry-Auth": base64.urlsafe_b64encode(b"{}").decode()}}
    if what == "build-from":
        body = {"body": context({"Dockerfile": f"FROM {host}/x:1\n"}),
                "content_type": "application/x-tar"}
    return method, target.format(host=quote(host, safe=":")), body  # [v6] as the CLI sends it


def refused_without_connecting(
    engine: Engine, what: str, listener: Listener, profile_gates: dict[str, PolicyGate],
    kind: str,
) -> None:
    """Request ``what`` naming the listener makes the bare daemon connect; privileged
    (no registries rule) lets it connect too; every other profile answers 403 naming
    the rule (``registries``: the host is ``kind`` … address) and nothing connects."""
    method, target, body = registry_request(engine, what, listener.host)
    try:
        unixhttp.request(engine.daemon_socket, method, target, timeout=60, **body)
        assert listener.wait_for_connection(), f"dockerd did not connect for {target} (direct)"
        listener.connections = 0
        status, answer = unixhttp.request(profile_gates["privileged"].socket, method, target,
                                          timeout=60, **body)
        assert status != 403, answer
        assert listener.wait_for_connection(), f"privileged: no connection for {target}"
        listener.connections = 0
        for profile in PROFILES[1:]:
            status, answer = unixhttp.request(profile_gates[profile].socket, method, target,
                                              timeout=60, **body)
            assert status == 403, (profile, answer)
            message = json.loads(answer)["message"]
            rule = EARLIER_RULES.get((profile, what), "registries")
            assert message.startswith(f"dockgate: denied by policy {profile} rule {rule}: ")
            if rule == "registries":
                assert f" {listener.host} is {kind}" in message and "address" in message, message
        assert not listener.wait_for_connection(timeout=1.0), "the daemon connected"
    finally:
        if what == "push":  # the tag registry_request made (later tests list the image's tags)
            engine.docker_direct("rmi", f"{listener.host}/x:1", check=False)


@pytest.mark.allow_refusals
@pytest.mark.parametrize("what", sorted(REGISTRY_REQUESTS))
def test_loopback_registry_is_refused(
    engine: Engine, what: str, listener: Listener, profile_gates: dict[str, PolicyGate]
) -> None:
    """A registry host of 127.0.0.1:PORT (a pull, push, search, distribution inspect,
    a Dockerfile's FROM, a build's remote, an import URL) makes the bare daemon
    connect to that host port; through readonly, baseline and restricted the
    request is refused and the listener sees no connection.  privileged has no
    registries rule: the daemon connects through it as it does directly
    (docs/policy.md)."""
    refused_without_connecting(engine, what, listener, profile_gates, "a loopback address")


def host_addresses() -> list[tuple[str, str]]:
    """(kind, address) of the global addresses of this host's default-route interface:
    its IPv4 address and a private IPv6 (ULA) one, where it has them."""

    def ip(*args: str) -> Any:
        return json.loads(subprocess.run(["ip", "-j", *args], check=True, capture_output=True,
                                         text=True, timeout=30).stdout)

    devs = {r["dev"] for r in ip("route", "show", "default") if "dev" in r}
    addrs = [a["local"] for dev in sorted(devs)
             for link in ip("addr", "show", "dev", dev, "scope", "global")
             for a in link.get("addr_info", ()) if "local" in a]
    v4 = [a for a in addrs if "." in a][:1]
    ula = [a for a in addrs if a.lower().startswith(("fc", "fd"))][:1]
    return [("ipv4", a) for a in v4] + [("ipv6-private", a) for a in ula]


@pytest.mark.allow_refusals
@pytest.mark.parametrize(("kind", "address"), host_addresses())
@pytest.mark.parametrize("what", ["distribution", "pull"])
def test_host_address_registry_is_refused(
    engine: Engine, what: str, kind: str, address: str, profile_gates: dict[str, PolicyGate]
) -> None:
    """Not only loopback: a registry at one of this host's own addresses (an IPv4 one,
    a private IPv6 one) is reached by the bare daemon, and refused by readonly,
    baseline and restricted without a connection (20.10 rejects IPv6 literals in
    references itself, so only 28.5 shows that one live)."""
    if ":" in address and engine.name == "20.10":
        pytest.skip("engine 20.10 rejects an IPv6 registry literal itself")
    lst = Listener(address)
    try:
        refused_without_connecting(engine, what, lst, profile_gates, "a")
    finally:
        lst.close()


@pytest.mark.allow_refusals
def test_docker_login_to_loopback_is_refused_under_baseline(
    engine: Engine, listener: Listener, policy_gates: dict[tuple[str, str], PolicyGate]
) -> None:
    """``docker login 127.0.0.1:PORT`` makes the daemon connect (POST /auth) directly;
    through baseline the CLI gets the policy's message and nothing connects."""
    addr = f"127.0.0.1:{listener.port}"
    engine.docker_direct("login", "-u", "u", "--password-stdin", addr, input="p\n", check=False)
    assert listener.wait_for_connection(), "dockerd did not connect for /auth (direct)"
    listener.connections = 0
    pg = policy_gates[(engine.name, "baseline")]
    out = pg.docker("login", "-u", "u", "--password-stdin", addr, input="p\n", check=False)
    assert out.returncode != 0
    assert "registries: serveraddress registry " + addr in out.stderr
    assert not listener.wait_for_connection(timeout=1.0)


def test_docker_hub_passes_the_registry_rule(
    engine: Engine, profile_gates: dict[str, PolicyGate]
) -> None:
    """The allowlist is not a blanket refusal: a docker.io reference passes every
    profile (the daemon has no network here, so it answers with its own error)."""
    for pg in profile_gates.values():
        mark = pg.mark()
        status, _ = unixhttp.request(pg.socket, "GET", "/distribution/busybox/json", timeout=60)
        assert status != 403, pg.policy
        assert pg.refusals_since(mark) == [], pg.policy


MARKER = "s3cret-"


RESTRICTED_RUN = ("--user", "1000:1000", "--cap-drop", "ALL", "--security-opt",
                  "no-new-privileges", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "64")
"""``docker run`` flags that make a container pass policies/restricted.yaml."""


@pytest.fixture
def secret_container(engine: Engine) -> Iterator[tuple[str, str]]:
    """(name, secret): a running container whose environment holds the secret, which
    it also prints to its log and writes to /tmp/secret.  It passes restricted (a
    non-root user, hardened), as ``docker cp`` out of it is judged by it too."""
    name, secret = eng.unique("envsecret"), eng.unique(MARKER)
    engine.docker_direct("run", "-d", "--network", "none", "--name", name, *RESTRICTED_RUN,
                         "-e", f"DB_PASSWORD={secret}", "-e", "PLAIN=visible", eng.IMAGE,
                         "sh", "-c", "echo $DB_PASSWORD | tee /tmp/secret; exec sleep 120")
    yield name, secret


def redacted_env(answer: object) -> object:
    """``answer`` (an inspect answer) as readonly must show it: every ``Config.Env`` and
    ``ContainerConfig.Env`` value replaced, nothing else changed."""
    copy = json.loads(json.dumps(answer))
    for item in copy if isinstance(copy, list) else [copy]:
        for part in ("Config", "ContainerConfig"):
            env = (item.get(part) or {}).get("Env")
            if isinstance(env, list):
                item[part]["Env"] = [e.split("=", 1)[0] + "=<redacted>" for e in env]
    return copy


def test_inspect_shows_environment_values_as_each_profile_says(
    engine: Engine, secret_container: tuple[str, str], profile_gates: dict[str, PolicyGate]
) -> None:
    """`docker inspect` of a container and of an image committed from it prints the
    secret directly (the image's Config.Env, and ContainerConfig.Env on 20.10).
    privileged, baseline and restricted answer exactly as the daemon does; through
    readonly the CLI's bytes hold no environment value and the answer is the
    daemon's with each value replaced (names in order, NAME=<redacted>), which
    docker-py and ``--format`` read alike."""
    name, secret = secret_container
    image = f"envsecret:{eng.unique('t')}"
    engine.docker_direct("commit", "--change", f"ENV TOKEN={secret}", name, image)
    for target in (name, image):
        direct = engine.docker_direct("inspect", target, binary=True).stdout
        assert secret.encode() in direct, target
        for profile, pg in profile_gates.items():
            out = pg.docker("inspect", target, binary=True).stdout
            if profile != "readonly":
                assert json.loads(out) == json.loads(direct), (profile, target)
                continue
            assert secret.encode() not in out, target
            assert json.loads(out) == redacted_env(json.loads(direct)), target
    pg = profile_gates["readonly"]
    env = json.loads(pg.docker("inspect", name).stdout)[0]["Config"]["Env"]
    assert "DB_PASSWORD=<redacted>" in env and "PLAIN=<redacted>" in env
    client = pg.client()
    try:
        assert client.containers.get(name).attrs["Config"]["Env"] == env
        assert secret not in json.dumps(client.images.get(image).attrs)
    finally:
        client.close()
    formatted = pg.docker("inspect", "--format", "{{json .Config.Env}}", name).stdout
    assert secret not in formatted and json.loads(formatted) == env


READONLY_DENIED = {
    "logs": "/containers/{id}/logs?stdout=1&stderr=1",
    "top": "/containers/{id}/top",
    "export": "/containers/{id}/export",
    "archive": "/containers/{id}/archive?path=/tmp/secret",
    "changes": "/containers/{id}/changes",
    "image-save": "/images/get?names={image}",
    "exec-inspect": "/exec/{exec}/json",
}
"""GETs that carry a container's output, processes or files, an image's config, or an
exec's command line: what readonly refuses although they are reads."""


@pytest.mark.allow_refusals
def test_readonly_refuses_the_reads_that_carry_data(
    engine: Engine, secret_container: tuple[str, str], profile_gates: dict[str, PolicyGate]
) -> None:
    """Directly, the container's logs, export and archive (its /tmp/secret file), image
    save (the committed ENV) and exec inspect (the exec's command line) carry the
    secret, ``top`` the container's command line and ``changes`` (docker diff) its
    file names; privileged, baseline and
    restricted pass them as answered (docs/policy.md), readonly answers each with
    403 and not a byte of it."""
    name, secret = secret_container
    cid = engine.docker_direct("inspect", "--format", "{{.Id}}", name).stdout.strip()
    image = f"envsecret:{eng.unique('t')}"
    engine.docker_direct("commit", "--change", f"ENV TOKEN={secret}", name, image)
    status, made = unixhttp.request(engine.daemon_socket, "POST", f"/containers/{cid}/exec",
                                    json.dumps({"Cmd": ["echo", secret]}).encode())
    assert status == 201, made
    values = {"id": cid, "image": image, "exec": json.loads(made)["Id"]}
    for what, target in READONLY_DENIED.items():
        path = target.format(**values)
        needle = {"top": b"sleep 120", "changes": b'"/tmp/secret"'}.get(what, secret.encode())
        status, body = unixhttp.request(engine.daemon_socket, "GET", path, timeout=60)
        assert status == 200 and needle in body, (what, status, body[:300])
        for profile, pg in profile_gates.items():
            status, body = unixhttp.request(pg.socket, "GET", path, timeout=60)
            if profile != "readonly":
                assert status == 200 and needle in body, (profile, what, status)
                continue
            assert status == 403 and needle not in body and secret.encode() not in body, what
            assert json.loads(body)["message"].startswith(
                "dockgate: denied by policy readonly rule read-only-endpoints: "), body


def read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float) -> bytes:
    """What ``proc`` wrote to stdout until ``needle`` appeared (or the timeout)."""
    assert proc.stdout is not None
    got = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while needle not in got and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            data = os.read(fd, 65536)
            if not data:
                break
            got += data
    return got


def redacted_event(line: bytes) -> object:
    """An event line as readonly must pass it: the exec command line in ``Action``
    and ``status`` replaced, everything else as the daemon wrote it."""
    event = json.loads(line)
    for key in ("Action", "status"):
        value = event.get(key)
        if isinstance(value, str) and value.startswith(("exec_create: ", "exec_start: ")):
            event[key] = value.split(":", 1)[0] + ": <redacted>"
    return event


@pytest.mark.allow_refusals
def test_events_through_readonly_never_show_exec_command_lines(
    engine: Engine, secret_container: tuple[str, str], profile_gates: dict[str, PolicyGate]
) -> None:
    """An exec's command line is in the daemon's exec_create/exec_start events, as a
    direct `docker events` shows; a `docker events` streaming through readonly
    sees the exec events with the command replaced, and never the secret.  Over
    the same window, privileged, baseline and restricted pass the daemon's event
    bytes exactly; readonly passes every other line byte for byte and the exec
    lines with only the command replaced."""
    name, _ = secret_container
    secret = eng.unique(MARKER)
    pg = profile_gates["readonly"]
    since = str(int(time.time()) - 1)
    watcher = subprocess.Popen(
        [engine.cli, "events", "--format", "{{json .}}", "--filter", f"container={name}"],
        env=pg.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)  # the stream is open before the exec (the --since replay is checked too)
        engine.docker_direct("exec", name, "sh", "-c", f"echo {secret} > /dev/null")
        streamed = read_until(watcher, b"exec_die", timeout=60)
    finally:
        watcher.terminate()
        watcher.wait(timeout=15)
    assert b"exec_die" in streamed, streamed
    assert secret.encode() not in streamed
    assert b'"Action":"exec_create: \\u003credacted\\u003e"' in streamed or (
        b'"exec_create: <redacted>"' in streamed
    ), streamed
    until = str(int(time.time()) + 1)
    window = ("events", "--since", since, "--until", until, "--filter", f"container={name}")
    direct = engine.docker_direct(*window, binary=True).stdout
    assert secret.encode() in direct, "the daemon's events hold no command line: nothing shown"
    replayed = pg.docker(*window, binary=True).stdout
    assert secret.encode() not in replayed and b"exec_create: <redacted>" in replayed

    filters = quote(json.dumps({"container": [name]}))
    target = f"/events?since={since}&until={until}&filters={filters}"
    status, raw = unixhttp.request(engine.daemon_socket, "GET", target, timeout=60)
    lines = raw.splitlines(keepends=True)
    assert status == 200 and secret.encode() in raw and len(lines) > 3, raw
    for profile, gate in profile_gates.items():
        status, got = unixhttp.request(gate.socket, "GET", target, timeout=60)
        assert status == 200, (profile, got)
        if profile != "readonly":
            assert got == raw, profile
            continue
        got_lines = got.splitlines(keepends=True)
        assert len(got_lines) == len(lines) and secret.encode() not in got
        for mine, theirs in zip(got_lines, lines, strict=True):
            if b"exec_create: " in theirs or b"exec_start: " in theirs:
                assert json.loads(mine) == redacted_event(theirs), mine
            else:
                assert mine == theirs

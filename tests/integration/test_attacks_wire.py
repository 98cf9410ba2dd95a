"""Wire-level differentials: bytes the daemon reads differently from dockgate.

The daemon is Go's net/http under moby's handlers.  ``mime.ParseMediaType``
lower-cases and trims a Content-Type with Unicode rules on its UTF-8 text, so
``appl\u0130cation/x-www-form-urlencoded`` (U+0130 lower-cases to ``i``) and a
form type followed by U+00A0 are forms to it, and moby's ``ParseForm`` reads the
streamed body of ``POST /images/create`` into ``r.Form`` *ahead of* the query:
the body's ``fromSrc`` is the import URL the daemon fetches, not the query's
``-`` that the decision saw.  The bare daemon fetches from a loopback HTTP
server (a request the ``registries`` rule of baseline refuses in the query);
through every shipped profile the request is refused 400 before the daemon
sees it: the server is never asked and no image of that name exists.

The daemon compares network modes exactly (``NetworkMode.IsBridge`` is
``== "bridge"``): ``Bridge``, `` bridge`` and, on Linux, ``nat`` are names of
networks anyone may create.  A tenant's create naming one joins the network of
that name, another tenant's included, so through a tenant gate it is judged as
the network reference it is (refused like a missing network).

moby's ``BoolValue`` trims with Go's ``strings.TrimSpace``, which keeps
U+001C..U+001F: ``pull=%1Ffalse`` makes the daemon pull a build's base image,
so a tenant's build (which may not pull, see ``PULLED_BASES``) spelled so is
refused like ``pull=1``.

Two regression probes: a create body whose second ``Binds`` key is spelled
with U+017F (Go's case folding makes it the same field, last one wins: the
bare daemon mounts the host's root; the policy gates refuse the duplicate), and a privileged create pipelined behind an attach that baseline
refuses after asking the daemon (the container is missing): it is read as a
request of its own and judged (403), never spliced or forwarded.
"""

from __future__ import annotations

import io
import json
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.client import HTTPSConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
from support import unixhttp as http
from support.engines import IMAGE, Engine, unique
from support.policygate import (
    PROFILES,
    PolicyGate,
    policy_audit_guard,
    policy_gates,
    profile_gates,
)
from support.tenantgate import Caller, TenantGate, tenant_gates
from support.unixhttp import exchange

pytestmark = [pytest.mark.engine, pytest.mark.allow_refusals]
_ = (policy_gates, policy_audit_guard, profile_gates, tenant_gates)  # fixtures for pytest


class LoopbackServer(ThreadingHTTPServer):
    """An HTTP server on the host's loopback serving an empty tar at any path; it
    records the paths it was asked for (what the daemon fetched)."""

    asked: list[str]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, LoopbackServer)
        self.server.asked.append(self.path)
        buf = io.BytesIO()
        tarfile.open(fileobj=buf, mode="w").close()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Content-Length", str(len(buf.getvalue())))
        self.end_headers()
        self.wfile.write(buf.getvalue())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    """A loopback HTTP server the daemon (running on the host) can fetch from."""
    server = LoopbackServer(("127.0.0.1", 0), _Handler)
    server.asked = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# Go's reading of each is application/x-www-form-urlencoded.
FORM_LOOKALIKES = {
    "dotted-capital-i": b"appl\xc4\xb0cation/x-www-form-urlencoded",
    "trailing-nbsp": b"application/x-www-form-urlencoded\xc2\xa0",
}


def _import(repo: str, content_type: bytes, form: bytes) -> bytes:
    """An import of an uploaded tar (``fromSrc=-``) under a harmless name, whose body
    is form data."""
    return (f"POST /v1.41/images/create?fromSrc=-&repo={repo}-decided&tag=1 HTTP/1.1\r\n"
            "Host: docker\r\nConnection: close\r\n".encode()
            + b"Content-Type: " + content_type + b"\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(form) + form)


def _has_image(engine: Engine, ref: str) -> bool:
    out = engine.docker_direct("image", "inspect", ref, check=False)
    assert out.returncode == 0 or "No such image" in out.stderr, out.stderr
    return out.returncode == 0


@pytest.mark.parametrize("content_type", list(FORM_LOOKALIKES.values()),
                         ids=list(FORM_LOOKALIKES))
def test_unicode_form_content_type_cannot_replace_the_import_url(
    engine: Engine, profile_gates: dict[str, PolicyGate], loopback: LoopbackServer,
    content_type: bytes,
) -> None:
    """The bare daemon reads the body's ``fromSrc`` (a loopback URL) over the query's
    ``-`` and imports from it; through every profile the Content-Type is refused 400
    (Docker-shaped), the loopback server is never asked and no image exists."""
    port = loopback.server_address[1]

    def form(repo: str) -> bytes:
        return f"fromSrc=http://127.0.0.1:{port}/{repo}.tar&repo={repo}&tag=1".encode()

    direct = unique("wire-direct")
    status, body = exchange(engine.daemon_socket, _import(direct, content_type, form(direct)))
    assert status == 200, body
    assert loopback.asked == [f"/{direct}.tar"]
    assert _has_image(engine, f"{direct}:1")
    assert not _has_image(engine, f"{direct}-decided:1")
    engine.docker_direct("image", "rm", f"{direct}:1")
    for profile in PROFILES:
        proxied = unique("wire-proxied")
        status, body = exchange(profile_gates[profile].socket,
                                _import(proxied, content_type, form(proxied)))
        assert status == 400, (profile, body)
        assert json.loads(body)["message"].startswith("dockgate: Content-Type "), body
        assert "read the body as query parameters" in json.loads(body)["message"]
        assert not _has_image(engine, f"{proxied}:1"), profile
        assert not _has_image(engine, f"{proxied}-decided:1"), profile
    assert loopback.asked == [f"/{direct}.tar"]


def _start(engine: Engine, name: str) -> tuple[int, object]:
    status, answer = http.request(engine.daemon_socket, "POST", f"/containers/{name}/start")
    return status, json.loads(answer) if answer else None


@pytest.mark.parametrize("mode", ["Bridge", " bridge", "nat"])
def test_builtin_network_lookalike_is_another_tenants_network(
    engine: Engine, tenant_gates: dict[str, TenantGate], mode: str
) -> None:
    """The bare daemon reads NetworkMode ``mode`` as the name of a network, not a
    builtin: a container created with it does not start ("network <mode> not found")
    while no such network exists, and (28.5; 20.10 cannot start containers on a
    network in this sandbox) starts on the network tenant A then creates through the
    tenant gate.  Tenant B's create naming it is refused as for a missing network, in
    the daemon's words, and nothing of B's exists."""
    tg = tenant_gates[engine.name]
    a, b = tg.caller("alice-tls"), tg.caller("bob-tls")
    direct, proxied = unique("wire-net-direct"), unique("wire-net-b")
    missing = {"message": f"network {mode} not found"}
    body = {"Image": IMAGE, "Cmd": ["sleep", "30"], "HostConfig": {"NetworkMode": mode}}
    try:
        status, _ = http.request(engine.daemon_socket, "POST", f"/containers/create?name={direct}",
                                 json.dumps(body).encode())
        assert status == 201
        status, said = _start(engine, direct)
        assert status == 404 and isinstance(said, dict), said
        assert said["message"].endswith(missing["message"]), said  # 28.5 says more first
        status, made = a.request("POST", "/v1.41/networks/create", {"Name": mode,
                                                                     "Internal": True})
        assert status == 201, made
        if engine.name != "20.10":
            assert _start(engine, direct) == (204, None)
            info = http.get_json(engine.daemon_socket, f"/containers/{direct}/json")
            assert info["NetworkSettings"]["Networks"][mode]["NetworkID"] == made["Id"]
        said = b.request("POST", f"/v1.41/containers/create?name={proxied}", body)
        assert said == (404, missing)
        status, _ = http.request(engine.daemon_socket, "GET", f"/containers/{proxied}/json")
        assert status == 404
    finally:
        for target in (f"/containers/{direct}?force=1", f"/containers/{proxied}?force=1",
                       f"/networks/{quote(mode)}"):
            http.request(engine.daemon_socket, "DELETE", target)


def _context_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dockerfile = f"FROM {IMAGE}\nLABEL wire=pull\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    return buf.getvalue()


def _tls_build(caller: Caller, query: str, context: bytes) -> tuple[int, bytes]:
    """A classic build by ``caller`` over the tenant gate's TLS port."""
    conn = HTTPSConnection("127.0.0.1", caller.gate.port, timeout=120,
                                       context=caller.tls_context())
    try:
        conn.request("POST", f"/v1.41/build?{query}", body=context,
                     headers={"Content-Type": "application/x-tar"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_tenant_build_pull_spelled_with_a_control_byte_is_refused(
    engine: Engine, tenant_gates: dict[str, TenantGate]
) -> None:
    """The bare daemon asks the registry for the base image with ``pull=%1Ffalse``
    (not with ``pull=false``); through the tenant gate that build is refused as a
    pulling build (403, the tenant's no-pull reason) and no image is tagged."""
    context = _context_tar()
    direct = unique("wire-pull")
    for value, pulls in (("false", False), ("%1Ffalse", True)):
        status, out = exchange(engine.daemon_socket, (
            f"POST /v1.41/build?t={direct}&pull={value} HTTP/1.1\r\nHost: docker\r\n"
            "Content-Type: application/x-tar\r\nConnection: close\r\n"
            f"Content-Length: {len(context)}\r\n\r\n").encode() + context)
        assert status == 200
        assert (b"registry-1.docker.io" in out) is pulls, out[-500:]
    engine.docker_direct("image", "rm", direct, check=False)
    tag = unique("wire-pull-b")
    status, said = _tls_build(tenant_gates[engine.name].caller("bob-tls"),
                              f"t={tag}&pull=%1Ffalse", context)
    assert status == 403, said
    assert "may not pull its base images" in json.loads(said)["message"]
    assert not _has_image(engine, tag)


LONG_S_BINDS = ('{"Image":"%s","Cmd":["true"],"HostConfig":{"NetworkMode":"none",'
                '"Binds":[],"Bind\u017f":["/:/host"]}}')


def _create(name: str, body: bytes, *fields: str) -> bytes:
    lines = [f"POST /v1.41/containers/create?name={name} HTTP/1.1", "Host: docker",
             "Content-Type: application/json", f"Content-Length: {len(body)}", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_a_go_folded_duplicate_key_is_refused(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]
) -> None:
    """``Bind\u017f`` is ``Binds`` to Go's decoder (last wins): the bare daemon creates a
    container with the host's root mounted from a body whose ``Binds`` is empty;
    baseline and restricted refuse the duplicate (400) and no container exists."""
    body = (LONG_S_BINDS % IMAGE).encode()
    direct = unique("wire-fold")
    status, answer = exchange(engine.daemon_socket, _create(direct, body, "Connection: close"))
    assert status == 201, answer
    config = http.host_config(engine.daemon_socket, direct)
    assert config is not None and config["Binds"] == ["/:/host"], config
    for policy in ("baseline", "restricted"):
        proxied = unique("wire-fold")
        status, answer = exchange(policy_gates[(engine.name, policy)].socket,
                                  _create(proxied, body, "Connection: close"))
        assert status == 400, (policy, answer)
        assert "both set field 'Binds'" in json.loads(answer)["message"]
        assert http.host_config(engine.daemon_socket, proxied) is None


def test_a_create_pipelined_behind_a_refused_attach_is_judged(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]
) -> None:
    """An attach (with Upgrade) to a missing container, and a privileged create pipelined
    behind it: the bare daemon answers 404 and reads nothing more; baseline answers
    the attach 404 (after asking the daemon) and then the create 403, and no container
    exists."""
    missing = unique("wire-missing")
    privileged = json.dumps({"Image": IMAGE, "Cmd": ["true"],
                             "HostConfig": {"Privileged": True, "NetworkMode": "none"}}).encode()

    def wire(name: str) -> bytes:
        return (f"POST /v1.41/containers/{missing}/attach?stream=1&stdout=1 HTTP/1.1\r\n"
                "Host: docker\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n\r\n").encode() \
            + _create(name, privileged, "Connection: close")

    direct = unique("wire-pipe")
    status, _ = exchange(engine.daemon_socket, wire(direct))
    assert status == 404
    assert http.host_config(engine.daemon_socket, direct) is None
    proxied = unique("wire-pipe")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(policy_gates[(engine.name, "baseline")].socket)
    answer = b""
    try:
        sock.sendall(wire(proxied))
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        sock.close()
    assert [line.split(b" ")[1] for line in answer.split(b"\n")
            if line.startswith(b"HTTP/1.1 ")] == [b"404", b"403"], answer
    assert b"no-privileged" in answer
    assert http.host_config(engine.daemon_socket, proxied) is None

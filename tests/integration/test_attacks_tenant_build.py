"""A tenant's classic build cannot read another tenant's image or join its container.

Two tenants on one daemon (tests/support/tenantgate.py), both engines, unix and
TLS principals.  Tenant B commits a secret into an image of its own and runs a
container serving the secret on its loopback.  Tenant A's builds name them:
``FROM``, ``COPY --from``, a ``FROM $ARG`` whose value is B's image, and
``networkmode=container:<B's>``.  Sent to the daemon directly each build gets
B's secret (oracle: the built image's content); through dockgate each is
refused, exactly as the same build naming a missing image or container, and
no image is made.  A's builds from its own image and from the
shared test image still work.
"""

from __future__ import annotations

import io
import json
import socket
import ssl
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import engines as eng
from support.buildhelp import image_file, readable_dir
from support.engines import IMAGE, Engine
from support.tenantgate import Caller, TenantGate, shared_build_cache, tenant_gates

pytestmark = [pytest.mark.engine, pytest.mark.allow_refusals]
_ = tenant_gates

SECRET = "b-secret-" + uuid.uuid4().hex[:8]
NONE = ("--network", "none")


@dataclass
class Tenants:
    engine: Engine
    a: Caller
    b: Caller
    b_image: str
    b_web: str
    a_image: str


@pytest.fixture(scope="module", params=[(e, p) for e in eng.ENGINE_NAMES for p in ("unix", "tls")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def two(request: pytest.FixtureRequest, engine_set: dict[str, Engine],
        tenant_gates: dict[str, TenantGate]) -> Iterator[Tenants]:
    name, pair = request.param
    if name not in engine_set:
        pytest.skip(f"engine {name} not selected (DOCKGATE_TEST_ENGINES)")
    engine, tg = engine_set[name], tenant_gates[name]
    before = engine.snapshot()
    a, b = tg.caller(f"alice-{pair}"), tg.caller(f"bob-{pair}")
    tag = uuid.uuid4().hex[:8]
    try:
        src, web = f"b-src-{tag}", f"b-web-{tag}"
        b.docker("run", *NONE, "--name", src, IMAGE, "sh", "-c", f"echo {SECRET} > /secret")
        b_image = f"b-img-{tag}:latest"
        b.docker("commit", src, b_image)
        b.docker("rm", src)
        b.docker("run", "-d", *NONE, "--name", web, IMAGE, "sh", "-c",
                 f"mkdir /w && echo {SECRET} > /w/s && httpd -f -p 127.0.0.1:8080 -h /w")
        a.docker("run", *NONE, "--name", src, IMAGE, "sh", "-c", "echo mine > /mine")
        a_image = f"a-img-{tag}:latest"
        a.docker("commit", src, a_image)
        a.docker("rm", src)
        yield Tenants(engine, a, b, b_image, web, a_image)
    finally:
        failures = engine.remove_new(before)
        assert not failures, failures


def _context(dockerfile: str) -> Path:
    """A context directory every test user can read (the CLI runs as the principal)."""
    return readable_dir({"Dockerfile": dockerfile})


def classic(caller: Caller, *args: str) -> subprocess.CompletedProcess[str]:
    """``DOCKER_BUILDKIT=0 docker build ARGS`` as ``caller``."""
    return caller.classic("build", *args)


def _direct(engine: Engine, ctx: Path, tag: str, *extra: str) -> None:
    engine.docker_direct("build", *NONE, *extra, "-t", tag, str(ctx),
                         extra_env={"DOCKER_BUILDKIT": "0"}, timeout=180)


DOCKERFILES = {
    "from": ("FROM {b}\n", "/secret", "Dockerfile line 1 FROM"),
    "copy-from": ("FROM " + IMAGE + "\nCOPY --from={b} /secret /secret\n", "/secret",
                  "Dockerfile line 2 COPY --from"),
    "from-arg": ("ARG BASE={b}\nFROM $BASE\n", "/secret", "Dockerfile line 2 FROM"),
}
"""Dockerfiles that read B's image on the daemon's classic builder (the oracle)."""

NOT_CLASSIC = {
    "run-mount-from": ("FROM " + IMAGE + "\nRUN --mount=from={b},target=/m cat /m/secret\n",
                       "Dockerfile line 2 RUN --mount from"),
    "syntax": ("# syntax={b}\nFROM " + IMAGE + "\n", "Dockerfile line 1 # syntax"),
}
"""References the classic builder itself refuses or ignores (BuildKit reads them): still
checked, so a tenant's Dockerfile names no other tenant's image anywhere."""


def _refusal(two: Tenants, text: str, name: str, tag: str) -> tuple[int, str]:
    """A's classic build of ``text`` naming ``name``: exit status and error, name as NAME."""
    out = classic(two.a, *NONE, "-t", tag, str(_context(text.format(b=name))))
    return out.returncode, out.stderr.replace(name, "NAME")


def _missing(two: Tenants) -> str:
    return f"b-missing-{uuid.uuid4().hex[:8]}:latest"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_build_from_another_tenants_image_is_refused(two: Tenants, kind: str) -> None:
    """A's Dockerfile naming B's image: the daemon builds it with B's secret inside;
    through dockgate the build is refused exactly as one naming a missing image (which a
    tenant's build may not name: the daemon would pull it), and A gets no image."""
    text, path, where = DOCKERFILES[kind]
    ctx = _context(text.format(b=two.b_image))
    tag = f"a-built-{uuid.uuid4().hex[:8]}"
    _direct(two.engine, ctx, tag + ":direct")
    assert image_file(two.engine, tag + ":direct", path) == SECRET + "\n"
    foreign = _refusal(two, text, two.b_image, tag + ":gate")
    assert foreign[0] != 0
    assert f"dockgate: {where}: no such image: NAME (a tenant's build may name only images " \
        "on the daemon: pull it first)" in foreign[1], foreign
    assert foreign == _refusal(two, text, _missing(two), tag + ":gate")
    assert image_file(two.engine, tag + ":gate", path) is None


@pytest.mark.parametrize("kind", sorted(NOT_CLASSIC))
def test_build_references_beyond_classic_are_checked(two: Tenants, kind: str) -> None:
    """``RUN --mount=from=`` and ``# syntax=`` naming B's image: refused as for a missing
    image."""
    text, where = NOT_CLASSIC[kind]
    tag = f"a-nc-{uuid.uuid4().hex[:8]}:gate"
    foreign = _refusal(two, text, two.b_image, tag)
    assert foreign[0] != 0 and f"dockgate: {where}: no such image: NAME" in foreign[1], foreign
    assert foreign == _refusal(two, text, _missing(two), tag)


def test_build_in_another_tenants_container_network_is_refused(two: Tenants) -> None:
    """``networkmode=container:<B's container>``: the RUN step reads B's loopback service
    when sent to the daemon; through dockgate A gets what it gets for a missing container."""
    ctx = _context(f"FROM {IMAGE}\nRUN wget -q -O /got http://127.0.0.1:8080/s\n")
    tag = f"a-net-{uuid.uuid4().hex[:8]}"
    two.engine.docker_direct("build", "--network", f"container:{two.b_web}", "--no-cache",
                             "-t", tag + ":direct", str(ctx),
                             extra_env={"DOCKER_BUILDKIT": "0"}, timeout=180)
    assert image_file(two.engine, tag + ":direct", "/got") == SECRET + "\n"
    said = []
    for name in (two.b_web, f"b-missing-{uuid.uuid4().hex[:8]}"):
        out = classic(two.a, "--network", f"container:{name}", "--no-cache", "-t",
                      tag + ":gate", str(ctx))
        said.append((out.returncode, out.stderr.replace(name, "NAME")))
    assert said[0][0] != 0 and "dockgate: No such container: NAME" in said[0][1], said
    assert said[0] == said[1]
    assert image_file(two.engine, tag + ":gate", "/got") is None


def test_build_on_another_tenants_network_is_refused(two: Tenants) -> None:
    """``networkmode=<B's network>``: the classic builder's RUN step joins B's internal
    network (its address is in B's subnet, beside B's containers) when sent to the daemon;
    through dockgate A gets what it gets for a missing network, and A's build on its own
    network works."""
    tag = uuid.uuid4().hex[:8]
    b_net, a_net = f"b-bnet-{tag}", f"a-bnet-{tag}"
    two.b.docker("network", "create", "--internal", b_net)
    two.a.docker("network", "create", "--internal", a_net)
    subnet = two.engine.docker_direct("network", "inspect", "-f",
                                      "{{(index .IPAM.Config 0).Subnet}}", b_net).stdout.strip()
    prefix = subnet.rsplit(".", 1)[0] + "."
    ctx = _context(f"FROM {IMAGE}\nRUN ip -4 -o addr show eth0 > /got\n")
    # Engine 20.10 cannot start a container on a bridge network from the test daemons'
    # loopback address pool ("failed to set gateway"): the oracle is 28.5's.
    runs = two.engine.name != "20.10"
    if runs:
        two.engine.docker_direct("build", "--network", b_net, "--no-cache", "-t",
                                 f"a-bnet-out-{tag}:direct", str(ctx),
                                 extra_env={"DOCKER_BUILDKIT": "0"}, timeout=180)
        assert f"inet {prefix}" in (image_file(two.engine, f"a-bnet-out-{tag}:direct", "/got")
                                    or ""), subnet
    said = []
    for name in (b_net, f"b-missing-{tag}"):
        out = classic(two.a, "--network", name, "--no-cache", "-t", f"a-bnet-out-{tag}:gate",
                      str(ctx))
        said.append((out.returncode, out.stderr.replace(name, "NAME")))
    assert said[0][0] != 0 and "dockgate: network NAME not found" in said[0][1], said
    assert said[0] == said[1]
    assert image_file(two.engine, f"a-bnet-out-{tag}:gate", "/got") is None
    own = classic(two.a, "--network", a_net, "--no-cache", "-t", f"a-bnet-out-{tag}:own",
                  str(ctx))
    assert own.returncode == 0 or not runs, own.stderr
    assert "dockgate" not in own.stderr, own.stderr


def test_build_from_own_and_shared_images_works(two: Tenants) -> None:
    """A builds FROM its own image, copying from the shared test image, as before."""
    ctx = _context(f"FROM {two.a_image}\nCOPY --from={IMAGE} /bin/busybox /bb\n")
    tag = f"a-own-{uuid.uuid4().hex[:8]}:x"
    out = classic(two.a, *NONE, "-t", tag, str(ctx))
    assert out.returncode == 0, out.stderr
    assert image_file(two.engine, tag, "/mine") == "mine\n"
    labels = json.loads(two.engine.docker_direct("image", "inspect", tag).stdout)[0]
    assert labels["Config"]["Labels"]["io.dockgate.owner"] == "teama"


def test_cache_from_another_tenants_image_is_ignored(two: Tenants) -> None:
    """``--cache-from <B's image>``: on the daemon A's build reuses B's layer ("Using cache",
    which tells A what B built); through dockgate the source is replaced by a stand-in that
    names nothing, so A's build runs its step as with a missing cache source.  (With the
    tenants file's ``build_cache: shared``: while private, ``nocache=1`` alone would.)"""
    text = f"FROM {IMAGE}\nRUN echo {SECRET}-cached > /c\n"
    ctx = _context(text)
    b_cache = f"b-cache-{uuid.uuid4().hex[:8]}:latest"
    out = two.b.classic("build", *NONE, "-t", b_cache, str(ctx))
    assert out.returncode == 0, out.stderr
    tag = f"a-cf-{uuid.uuid4().hex[:8]}"
    direct = two.engine.docker_direct("build", *NONE, "--cache-from", b_cache, "-t",
                                      tag + ":direct", str(ctx),
                                      extra_env={"DOCKER_BUILDKIT": "0"}, timeout=180)
    assert "Using cache" in direct.stdout, direct.stdout
    ran = []
    with shared_build_cache(two.a.gate):
        for name in (b_cache, f"b-missing-{uuid.uuid4().hex[:8]}:latest"):
            out = classic(two.a, *NONE, "--cache-from", name, "-t", tag + ":gate", str(ctx))
            assert out.returncode == 0, out.stderr
            ran.append("Using cache" in out.stdout)
    assert ran == [False, False]


def buildx(caller: Caller, *args: str) -> subprocess.CompletedProcess[str]:
    """``docker buildx build ARGS`` as ``caller`` (BuildKit: /grpc and /session, mediated)."""
    return caller.docker("buildx", "build", "--progress", "plain", "--pull=false", *NONE, *args,
                         check=False, timeout=300)


def test_buildkit_from_another_tenants_image_is_refused(two: Tenants) -> None:
    """With BuildKit (buildx), A's ``FROM`` B's image is refused like an image that does
    not exist, naming the rule, and A gets no image; ``FROM`` its own image builds.
    (The bare daemon builds it with B's secret inside: the classic test above.)"""
    if two.a.kind != "tls":
        pytest.skip("buildx keeps state in DOCKER_CONFIG, which only root can write here")
    tag = f"a-bk-{uuid.uuid4().hex[:8]}"
    out = buildx(two.a, "--load", "-t", tag + ":gate", str(_context(f"FROM {two.b_image}\n")))
    assert out.returncode != 0
    assert "rule tenant-images: no such image" in out.stderr, out.stderr
    assert "teamb" not in out.stderr
    assert image_file(two.engine, tag + ":gate", "/secret") is None
    out = buildx(two.a, "--load", "-t", tag + ":own",
                 str(_context(f"FROM {two.a_image}\nRUN cat /mine\n")))
    assert out.returncode == 0, out.stderr
    assert image_file(two.engine, tag + ":own", "/mine") == "mine\n"


def test_buildkit_named_context_triggers_are_checked(two: Tenants) -> None:
    """A named context (``--build-context dgtest=docker-image://X``) stands in for ``FROM
    dgtest`` and the frontend runs X's ONBUILD triggers: with X an image of A's whose
    trigger copies from B's image, the bare daemon builds A an image holding B's secret;
    through dockgate the build is refused exactly as when the trigger names a missing
    image, and A gets no image.  (Engine 28.5: 20.10's builtin frontend has no named
    contexts.)"""
    if two.a.kind != "tls" or two.engine.name == "20.10":
        pytest.skip("buildx as root (TLS), on the engine whose frontend has named contexts")
    tag = uuid.uuid4().hex[:8]
    ctx = _context(f"FROM {IMAGE}\nRUN true\n")
    said = []
    for name in (two.b_image, f"b-missing-{tag}:latest"):
        trig = f"a-trig-{uuid.uuid4().hex[:8]}:latest"
        src = f"a-trig-src-{tag}"
        two.a.docker("run", *NONE, "--name", src, IMAGE, "true")
        two.a.docker("commit", "-c", f"ONBUILD COPY --from={name} /secret /stolen", src, trig)
        two.a.docker("rm", src)
        if name == two.b_image:
            two.engine.docker_direct("buildx", "build", "--progress", "plain", "--pull=false",
                                     *NONE, "--build-context", f"{IMAGE}=docker-image://{trig}",
                                     "--load", "-t", f"a-nc-{tag}:direct", str(ctx),
                                     timeout=300)
            assert image_file(two.engine, f"a-nc-{tag}:direct", "/stolen") == SECRET + "\n"
        out = buildx(two.a, "--build-context", f"{IMAGE}=docker-image://{trig}", "--load",
                     "-t", f"a-nc-{tag}:gate", str(ctx))
        said.append((out.returncode, out.stderr.replace(name, "NAME")))
        assert image_file(two.engine, f"a-nc-{tag}:gate", "/stolen") is None
    assert said[0][0] != 0 and "rule tenant-images: no such image: NAME" in said[0][1], said
    assert said[0][1].count("no such image") == said[1][1].count("no such image")
    assert "teamb" not in said[0][1]


def test_base_trigger_over_several_lines_is_checked(two: Tenants) -> None:
    """A commit's ``OnBuild`` is kept verbatim, and the daemon parses each trigger as a
    Dockerfile of its own: ``COPY \\`` then ``--from=<B's image>`` on the next line is one
    instruction.  With such a trigger in an image of A's, the bare daemon builds A an
    image holding B's secret from ``FROM`` that image; through dockgate the build is
    refused exactly as when the trigger names a missing image, and A gets no image."""
    if two.a.kind != "tls":
        pytest.skip("the commit's OnBuild is sent as a raw request (TLS callers)")
    tag = uuid.uuid4().hex[:8]
    src = f"a-ml-src-{tag}"
    two.a.docker("run", *NONE, "--name", src, IMAGE, "true")
    said = []
    for name in (two.b_image, f"b-missing-{tag}:latest"):
        base = f"a-ml-{uuid.uuid4().hex[:8]}"
        status, answer = two.a.request(
            "POST", f"/commit?container={src}&repo={base}&tag=latest",
            {"OnBuild": [f"COPY \\\n--from={name} /secret /stolen"]})
        assert status == 201, answer
        ctx = _context(f"FROM {base}\nRUN true\n")
        if name == two.b_image:
            _direct(two.engine, ctx, f"{base}-out:direct")
            assert image_file(two.engine, f"{base}-out:direct", "/stolen") == SECRET + "\n"
        out = classic(two.a, *NONE, "-t", f"{base}-out:gate", str(ctx))
        said.append((out.returncode, out.stderr.replace(name, "NAME").replace(base, "BASE")))
        assert image_file(two.engine, f"{base}-out:gate", "/stolen") is None
    assert said[0][0] != 0, said
    assert "dockgate: Dockerfile image BASE ONBUILD[0] line 1 COPY --from: no such " \
        "image: NAME" in said[0][1], said
    assert said[0] == said[1]


def _held_back_build(tag: str, dockerfile: str) -> tuple[bytes, bytes, bytes]:
    """A classic build of ``dockerfile`` as three pieces: the request head, the start of
    its context (the whole Dockerfile entry), and the rest (held back by the caller)."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in (("Dockerfile", dockerfile.encode()), ("pad", b"x" * 4096)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    body = data.getvalue()
    head = (f"POST /build?t={tag}&networkmode=none HTTP/1.1\r\nHost: docker\r\n"
            "Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n").encode()
    return head, body[:1536], body[1536:]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def _finish(sock: socket.socket, rest: bytes) -> str:
    """Send the rest of the context and read the build's whole answer."""
    sock.sendall(_chunk(rest) + b"0\r\n\r\n")
    sock.settimeout(180)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    return answer.decode(errors="replace")


def test_base_retagged_while_the_context_is_held_back_is_refused(two: Tenants) -> None:
    """The daemon resolves ``FROM`` only once the whole context has arrived.  A checked
    base of A's, retagged by A to an image of its own whose ONBUILD trigger copies from B's
    image while A holds back the rest of the context: on the bare daemon A's build gets B's
    secret; through dockgate the retag is refused while the build runs (its base name is
    held), the build runs from the image that was checked, and the retag works once the
    build has ended."""
    if two.a.kind != "tls":
        pytest.skip("a raw TLS connection holds the context back")
    tag = uuid.uuid4().hex[:8]
    base, trig = f"a-held-{tag}:latest", f"a-held-trig-{tag}:latest"
    src = f"a-held-src-{tag}"
    two.a.docker("tag", two.a_image, base)
    two.a.docker("run", *NONE, "--name", src, IMAGE, "true")
    two.a.docker("commit", "-c", f"ONBUILD COPY --from={two.b_image} /secret /stolen", src,
                 trig)
    head, start, rest = _held_back_build(f"a-held-out-{tag}:direct",
                                         f"FROM {base}\nRUN true\n")
    direct = socket.socket(socket.AF_UNIX)
    direct.connect(two.engine.daemon_socket)
    direct.sendall(head + _chunk(start))
    two.engine.docker_direct("tag", trig, base)
    assert "Successfully tagged" in _finish(direct, rest)
    assert image_file(two.engine, f"a-held-out-{tag}:direct", "/stolen") == SECRET + "\n"
    two.a.docker("tag", two.a_image, base)

    tg = two.a.gate
    mark = tg.mark()
    head, start, rest = _held_back_build(f"a-held-out-{tag}:gate",
                                         f"FROM {base}\nRUN true\n")
    gated = two.a.tls_context().wrap_socket(
        socket.create_connection(("127.0.0.1", tg.port), timeout=60),
        server_hostname="127.0.0.1")
    assert isinstance(gated, ssl.SSLSocket)
    gated.sendall(head + _chunk(start))
    deadline = time.monotonic() + 60
    while not any(r.get("stage") == "RequestDecided" and r.get("endpoint") == "image.build"
                  for r in tg.records_since(mark)):
        assert time.monotonic() < deadline, "dockgate did not decide the build"
        time.sleep(0.1)
    out = two.a.docker("tag", trig, base, check=False)
    assert out.returncode != 0
    assert "Error response from daemon: dockgate: image name " in out.stderr
    assert "is in use by a running build" in out.stderr, out.stderr
    assert "Successfully tagged" in _finish(gated, rest)
    assert image_file(two.engine, f"a-held-out-{tag}:gate", "/stolen") == ""  # no file
    assert image_file(two.engine, f"a-held-out-{tag}:gate", "/mine") == "mine\n"
    two.a.docker("tag", trig, base)


def _during(caller: Caller, args: tuple[str, ...], probe: Callable[[], str | None],
            then: Callable[[], None] = lambda: None) -> tuple[str | None, int, str]:
    """Run ``docker ARGS`` as ``caller`` in the background and ``probe`` every 0.2 s (for
    at most 60 s) until it returns something while the command runs; then ``then``, and
    wait for the command.  Returns what ``probe`` returned (None: nothing), the exit
    status and the command's stderr."""
    proc = subprocess.Popen(caller.argv(args), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    try:
        found = None
        deadline = time.monotonic() + 60
        while found is None and proc.poll() is None and time.monotonic() < deadline:
            found = probe()
            time.sleep(0.2)
        if found is not None:
            then()
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return found, proc.returncode, err.decode(errors="replace")


def test_buildkit_base_is_held_while_the_build_runs(two: Tenants) -> None:
    """A tenant's BuildKit build holds its base names as a classic build does: the frontend
    resolves each ``FROM`` after dockgate read the base's triggers, so a retag of the base
    (to an image whose ONBUILD trigger copies B's image) is refused from the check until
    the build's connections end, the build runs from the image that was checked, and the
    retag works afterwards."""
    if two.a.kind != "tls":
        pytest.skip("buildx keeps state in DOCKER_CONFIG, which only root can write here")
    tag = uuid.uuid4().hex[:8]
    base, trig, out_tag = f"a-bkh-{tag}:latest", f"a-bkh-trig-{tag}:latest", f"a-bkh-out-{tag}"
    src = f"a-bkh-src-{tag}"
    two.a.docker("tag", two.a_image, base)
    two.a.docker("run", *NONE, "--name", src, IMAGE, "true")
    two.a.docker("commit", "-c", f"ONBUILD COPY --from={two.b_image} /secret /stolen", src,
                 trig)
    ctx = _context(f"FROM {base}\nRUN sleep 6\n")

    def retag() -> str | None:
        # Retagging the base to the image it already names changes nothing; once it
        # is refused, the build holds the name.
        same = two.a.docker("tag", two.a_image, base, check=False)
        return same.stderr if same.returncode != 0 else None

    def swap() -> None:
        out = two.a.docker("tag", trig, base, check=False)
        assert out.returncode != 0 and "is in use by a running build" in out.stderr, out.stderr

    refused, status, err = _during(two.a, ("buildx", "build", "--progress", "plain",
                                           "--pull=false", *NONE, "--load", "-t", out_tag,
                                           str(ctx)), retag, swap)
    assert refused is not None, "no retag was refused while the build ran"
    assert "is in use by a running build that starts from it" in refused, refused
    assert status == 0, err[-3000:]
    assert image_file(two.engine, out_tag + ":latest", "/mine") == "mine\n"
    assert image_file(two.engine, out_tag + ":latest", "/stolen") == ""  # no file
    two.a.docker("tag", trig, base)


def _bake_file(tag: str, *, dependent: bool) -> Path:
    """A bake file: target ``a`` (a slow step) exports ``ta-TAG``; with ``dependent``,
    target ``b`` is ``FROM ta-TAG``, declared as depending on ``a`` (``contexts``:
    ``target:a``, which only engines with named contexts build)."""
    targets: dict[str, dict[str, object]] = {"a": {
        "context": str(_context(f"FROM {IMAGE}\nRUN sleep 4 && echo a-{tag} > /a\n")),
        "tags": [f"ta-{tag}"], "output": ["type=docker"], "network": "none"}}
    if dependent:
        targets["b"] = {"context": str(_context(f"FROM ta-{tag}\nRUN cat /a > /b\n")),
                        "tags": [f"tb-{tag}"], "output": ["type=docker"], "network": "none",
                        "contexts": {f"ta-{tag}": "target:a"}}
    bake = {"group": {"default": {"targets": sorted(targets)}}, "target": targets}
    return readable_dir({"docker-bake.json": json.dumps(bake)}) / "docker-bake.json"


def test_buildkit_solve_holds_its_exports_and_bases_for_the_solve_only(two: Tenants) -> None:
    """A tenant's BuildKit solve holds the names it exports as writes while it runs: a
    classic build ``FROM`` such a name meanwhile is refused (409, being written), not
    read mid-export.  The holds last for that solve only: on the engine with named
    contexts a ``buildx bake`` target ``FROM`` the tag of a target it declares it
    depends on (``target:``) builds from what that target wrote, on the first run (the
    name did not exist) and the second (it did), as on the bare daemon; and once the
    bake is over nothing is held (a retag of every name and a build from each work)."""
    if two.a.kind != "tls":
        pytest.skip("buildx keeps state in DOCKER_CONFIG, which only root can write here")
    dependent = two.engine.name != "20.10"  # its BuildKit has no named contexts
    tag = uuid.uuid4().hex[:8]
    if dependent:
        direct = two.engine.docker_direct(
            "buildx", "bake", "--allow", "fs=*", "--progress", "plain", "-f",
            str(_bake_file(f"d{tag}", dependent=True)), check=False, timeout=300)
        assert direct.returncode == 0, direct.stderr[-3000:]

    def classic_from() -> str | None:
        out = classic(two.a, *NONE, str(_context(f"FROM ta-{tag}\n")))
        return out.stderr if "is being written by another request" in out.stderr else None

    for run in range(2 if dependent else 1):
        refused, status, err = _during(two.a, ("buildx", "bake", "--progress", "plain", "-f",
                                               str(_bake_file(tag, dependent=dependent))),
                                       classic_from)
        assert status == 0, err[-3000:]
        assert refused, f"run {run}: no build from the exported name was refused"
        assert f"image name 'ta-{tag}' is being written by another request" in refused
    names = [f"ta-{tag}"] + ([f"tb-{tag}"] if dependent else [])
    if dependent:
        assert image_file(two.engine, f"tb-{tag}", "/b") == f"a-{tag}\n"
    for name in names:
        assert classic(two.a, *NONE, "-t", f"{name}-after",
                       str(_context(f"FROM {name}\n"))).returncode == 0
        two.a.docker("tag", two.a_image, name)


def test_compose_service_from_another_services_image_builds(two: Tenants) -> None:
    """``docker compose build`` of a service ``FROM`` the image another service builds,
    declared (``additional_contexts: NAME: service:a``), builds through dockgate as on
    the bare daemon: the two solves share one connection, and neither's holds outlast
    it (engines with named contexts)."""
    if two.a.kind != "tls" or two.engine.name == "20.10":
        pytest.skip("compose keeps state in DOCKER_CONFIG (TLS only); 20.10 has no named "
                    "contexts")
    for run in ("direct", "gated"):
        tag = uuid.uuid4().hex[:8]
        b = {"context": str(_context(f"FROM ta-{tag}\nRUN cat /a > /b\n")), "network": "none",
             "additional_contexts": {f"ta-{tag}": "service:a"}}
        a = {"context": str(_context(f"FROM {IMAGE}\nRUN echo a-{tag} > /a\n")),
             "network": "none"}
        doc = {"services": {"a": {"build": a, "image": f"ta-{tag}"},
                            "b": {"build": b, "image": f"tb-{tag}"}}}
        args = ("compose", "-f", str(readable_dir({"compose.json": json.dumps(doc)}) /
                                     "compose.json"), "-p", f"p{tag}", "build")
        out = two.a.docker(*args, check=False, timeout=300) if run == "gated" else \
            two.engine.docker_direct(*args, check=False, timeout=300)
        assert out.returncode == 0, f"{run}: {out.stderr[-3000:]}"
        assert image_file(two.engine, f"tb-{tag}", "/b") == f"a-{tag}\n"
    two.a.docker("tag", two.a_image, f"ta-{tag}")  # nothing holds the name any more

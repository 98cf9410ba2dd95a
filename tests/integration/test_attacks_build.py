"""Attacks through ``POST /build`` (classic builder), against both engines, through the
baseline and restricted dockgates, each first shown live on the bare daemon.

* ``ADD <url>``: dockerd downloads the URL itself from the host's network, even
  for a ``networkmode=none`` build; a loopback HTTP server on the host stands
  in for the host's private services (oracle: the server's hit log and the
  built image's content).  dockgate reads the Dockerfile out of the streamed
  context (plain, gzip, bzip2, xz; continuation lines, ARG, JSON form).
* ``remote=<url>``: dockerd fetches the whole context (oracle: the server).
* ``cgroupparent``: RUN steps placed in a host cgroup of the caller's choice
  (oracle: the RUN step's own /proc/self/cgroup, baked into the image).
* ``networkmode=container:X``: RUN steps join X's network namespace and read
  what X serves on its loopback; X runs with the host's PID namespace, so it
  does not pass the policy itself (oracle: the image's content).

The classic builder is driven by raw ``POST /build`` (the body is exactly the
tar written here) and by the docker CLI with ``DOCKER_BUILDKIT=0``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.buildhelp import build, context, image_file
from support.engines import IMAGE, Engine, unique
from support.loopback import Loopback
from support.loopback import loopback as serve_loopback
from support.policygate import PolicyGate, policy_audit_guard, policy_gates

pytestmark = pytest.mark.engine
_ = (policy_gates, policy_audit_guard)

POLICIES = ("baseline", "restricted")
RESTRICTED_BUILD = (
    "dockgate: denied by policy restricted rule escalation-endpoints: "
    "endpoint image.build is not allowed"
)
SECRET = "host-private-" + unique("s")


@pytest.fixture(scope="module")
def loopback() -> Iterator[Loopback]:
    """An HTTP server on the host's 127.0.0.1: ``.url(path)``, ``.hits``, ``.routes``."""
    with serve_loopback(SECRET) as server:
        yield server


def denied(status: int, text: str, policy: str, what: str) -> None:
    """Refused, with the build-fetches rule among the failed rules the denial lists
    (one line each; an earlier rule, such as registries for a loopback remote
    context, may come first), naming ``what``; restricted refuses every build
    first (escalation-endpoints)."""
    assert status == 403, text
    message = json.loads(text)["message"]
    lines = message.split("\n")
    if policy == "restricted":
        assert lines[0] == RESTRICTED_BUILD, message
        return
    assert lines[0].startswith(f"dockgate: denied by policy {policy} rule "), message
    assert any(
        line.startswith((f"dockgate: denied by policy {policy} rule build-fetches: ",
                         "also rule build-fetches: ")) and what in line
        for line in lines
    ), message


COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "tar": lambda b: b,
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
}

ADD_FORMS = {
    "plain": "ADD {url} /fetched\n",
    "continued": "ADD \\\n   # a comment inside the continuation\n   {url} \\\n  /fetched\n",
    "json": 'ADD ["{url}", "/fetched"]\n',
    "arg": "ARG SRC={url}\nADD $SRC /fetched\n",
    "escape": "ADD `\n  {url} /fetched\n",
}


@pytest.mark.allow_refusals
@pytest.mark.parametrize("form", sorted(ADD_FORMS))
@pytest.mark.parametrize("policy", POLICIES)
def test_add_url_is_fetched_by_the_daemon_and_refused(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], loopback: Any,
    policy: str, form: str,
) -> None:
    """A classic Dockerfile's ``ADD <url>`` (in several spellings and compressions) is
    downloaded by dockerd from the host's loopback under networkmode=none when sent
    to the daemon; through dockgate it is refused and nothing is fetched or built."""
    pg = policy_gates[(engine.name, policy)]
    path = "/" + unique("add")
    head = "# escape=`\n" if form == "escape" else ""
    dockerfile = head + f"FROM {IMAGE}\n" + ADD_FORMS[form].format(url=loopback.url(path))
    body = context({"Dockerfile": dockerfile})
    tag = unique("dgadd").lower() + ":direct"

    status, text = build(engine.daemon_socket, body, t=tag)
    assert status == 200, text
    assert image_file(engine, tag, "/fetched") == SECRET, text
    assert loopback.hits.count(path) == 1

    for name, squeeze in COMPRESS.items():
        tag = unique("dgadd").lower() + f":{name}"
        status, text = build(pg.socket, squeeze(body), t=tag)
        denied(status, text, policy, "is fetched by the daemon")
        assert image_file(engine, tag, "/fetched") is None
    assert loopback.hits.count(path) == 1, "dockerd fetched the URL through dockgate"


@pytest.mark.allow_refusals
@pytest.mark.parametrize("policy", POLICIES)
def test_add_url_with_the_cli_is_refused(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], loopback: Any, policy: str
) -> None:
    """``DOCKER_BUILDKIT=0 docker build`` of a Dockerfile with ``ADD <url>``: the daemon
    fetches it when asked directly; through dockgate the CLI shows the refusal."""
    pg = policy_gates[(engine.name, policy)]
    path = "/" + unique("cli")
    ctx = engine.workdir / unique("addctx")
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {IMAGE}\nADD {loopback.url(path)} /fetched\n")
    env = {"DOCKER_BUILDKIT": "0"}
    tag = unique("dgaddcli").lower()
    engine.docker_direct("build", "--network", "none", "-t", tag + ":direct", str(ctx),
                         extra_env=env, timeout=180)
    assert image_file(engine, tag + ":direct", "/fetched") == SECRET
    out = pg.docker("build", "--network", "none", "-t", tag + ":gate", str(ctx),
                    extra_env=env, timeout=180, check=False)
    assert out.returncode != 0
    if policy == "restricted":
        assert RESTRICTED_BUILD in out.stderr, out.stderr
    else:
        assert "denied by policy baseline rule build-fetches: Dockerfile line 2 ADD" in out.stderr
    assert image_file(engine, tag + ":gate", "/fetched") is None
    assert loopback.hits.count(path) == 1


@pytest.mark.allow_refusals
@pytest.mark.parametrize("policy", POLICIES)
def test_remote_context_is_fetched_by_the_daemon_and_refused(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], loopback: Any, policy: str
) -> None:
    """``remote=<url>``: dockerd downloads the context itself; through dockgate refused."""
    pg = policy_gates[(engine.name, policy)]
    path = "/" + unique("ctx") + ".tar"
    loopback.routes[path] = context({"Dockerfile": f"FROM {IMAGE}\nRUN echo remote > /r\n"})
    tag = unique("dgremote").lower()
    status, text = build(engine.daemon_socket, b"", remote=loopback.url(path), t=tag + ":d")
    assert status == 200, text
    assert image_file(engine, tag + ":d", "/r") == "remote\n"
    assert loopback.hits.count(path) == 1

    status, text = build(pg.socket, b"", remote=loopback.url(path), t=tag + ":g")
    denied(status, text, policy, "query.remote")
    assert image_file(engine, tag + ":g", "/r") is None
    assert loopback.hits.count(path) == 1


@pytest.mark.allow_refusals
@pytest.mark.parametrize("policy", POLICIES)
def test_cgroup_parent_of_build_is_refused(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], policy: str
) -> None:
    """``cgroupparent``: the RUN step runs under the cgroup the caller names (seen in its
    own /proc/self/cgroup); through dockgate refused."""
    pg = policy_gates[(engine.name, policy)]
    parent = unique("dgescape")
    body = context({"Dockerfile": f"FROM {IMAGE}\nRUN cat /proc/self/cgroup > /cg\n"})
    tag = unique("dgcg").lower()
    status, text = build(engine.daemon_socket, body, cgroupparent=parent, t=tag + ":d")
    assert status == 200, text
    assert parent in (image_file(engine, tag + ":d", "/cg") or ""), text

    status, text = build(pg.socket, body, cgroupparent=parent, t=tag + ":g")
    denied(status, text, policy, f"query.cgroupparent cgroup parent {parent!r} is not allowed")
    assert image_file(engine, tag + ":g", "/cg") is None


@pytest.mark.allow_refusals
@pytest.mark.parametrize("policy", POLICIES)
def test_a_later_entry_cannot_replace_the_checked_dockerfile(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], loopback: Any, policy: str
) -> None:
    """A tar with a harmless Dockerfile and, after it, a second ``Dockerfile`` entry with
    ``ADD <url>``: the daemon builds the last one (it fetched the URL); through dockgate
    the build is refused and nothing is fetched or built."""
    pg = policy_gates[(engine.name, policy)]
    path = "/" + unique("swap")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for text in (f"FROM {IMAGE}\n", f"FROM {IMAGE}\nADD {loopback.url(path)} /fetched\n"):
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))
    tag = unique("dgswap").lower()
    status, text = build(engine.daemon_socket, buf.getvalue(), t=tag + ":d")
    assert status == 200, text
    assert image_file(engine, tag + ":d", "/fetched") == SECRET
    status, text = build(pg.socket, buf.getvalue(), t=tag + ":g")
    if policy == "restricted":
        denied(status, text, policy, "")
    else:
        assert status == 400, text
        assert "would replace the Dockerfile" in json.loads(text)["message"]
    assert image_file(engine, tag + ":g", "/fetched") is None
    assert loopback.hits.count(path) == 1


def test_ordinary_classic_build_still_works(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]
) -> None:
    """Under baseline, a classic build with a large context (the Dockerfile among many files, gzip) and
    local ADD/COPY is forwarded byte for byte and builds."""
    pg = policy_gates[(engine.name, "baseline")]
    files = {f"A{i:03}/blob": "x" * 50000 for i in range(40)}
    files["Dockerfile"] = (f"FROM {IMAGE} AS base\nCOPY A000/blob /a\nFROM base\n"
                           "COPY --from=base /a /b\nADD A001/blob /c\nRUN wc -c /b > /n\n")
    tag = unique("dgok").lower() + ":g"
    status, text = build(pg.socket, gzip.compress(context(files)), t=tag)
    assert status == 200, text
    assert image_file(engine, tag, "/n") == "50000 /b\n", text


@pytest.mark.allow_refusals
@pytest.mark.parametrize("policy", POLICIES)
def test_base_image_onbuild_add_url_is_refused(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], loopback: Any, policy: str
) -> None:
    """An image committed with an ``ONBUILD ADD <url>`` trigger: a build ``FROM`` it makes
    dockerd fetch the URL (a Dockerfile with no ADD at all); through dockgate the base
    image's triggers are read and the build is refused.  A base image the daemon does not
    have (it would pull it, triggers unseen) is refused too."""
    pg = policy_gates[(engine.name, policy)]
    path = "/" + unique("onbuild")
    base = unique("dgonbuild").lower() + ":base"
    src = unique("dgonbuild-src")
    engine.docker_direct("create", "--network", "none", "--name", src, IMAGE, "true")
    engine.docker_direct("commit", "--change", f"ONBUILD ADD {loopback.url(path)} /fetched",
                         src, base)
    engine.docker_direct("rm", src)
    body = context({"Dockerfile": f"FROM {base}\nRUN true\n"})
    tag = unique("dgonb").lower()
    status, text = build(engine.daemon_socket, body, t=tag + ":d")
    assert status == 200, text
    assert image_file(engine, tag + ":d", "/fetched") == SECRET
    assert loopback.hits.count(path) == 1

    status, text = build(pg.socket, body, t=tag + ":g")
    denied(status, text, policy, f"image {base} ONBUILD[0] ADD source {loopback.url(path)}")
    assert image_file(engine, tag + ":g", "/fetched") is None
    assert loopback.hits.count(path) == 1
    missing = context({"Dockerfile": "FROM dgtest-never-pulled:latest\n"})
    status, text = build(pg.socket, missing, t=tag + ":m")
    denied(status, text, policy, "is not on the daemon (pull it first)")


@pytest.mark.allow_refusals
def test_a_late_replacement_cuts_the_forwarded_context(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], loopback: Any
) -> None:
    """The replacing ``Dockerfile`` entry comes after 8 MiB of other files, so dockgate has
    already decided and is streaming the context to the daemon when it sees it: the
    forwarding is cut before the daemon has the whole context, and the daemon builds
    nothing and fetches nothing (the same tar sent directly fetches and builds)."""
    pg = policy_gates[(engine.name, "baseline")]
    path = "/" + unique("late")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        entries = [("Dockerfile", f"FROM {IMAGE}\n".encode()), ("filler", b"\0" * (8 << 20)),
                   ("Dockerfile", f"FROM {IMAGE}\nADD {loopback.url(path)} /fetched\n".encode())]
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    body = buf.getvalue()
    tag = unique("dglate").lower()
    status, text = build(engine.daemon_socket, body, t=tag + ":d")
    assert status == 200, text
    assert image_file(engine, tag + ":d", "/fetched") == SECRET
    mark = pg.mark()
    try:
        status, text = build(pg.socket, body, t=tag + ":g")
    except (ConnectionError, OSError):
        status, text = 0, ""  # cut while the client was still sending
    if status:
        assert status == 400, text
        assert "would replace the Dockerfile" in json.loads(text)["message"]
    forwarded = [r for r in pg.records_since(mark) if r["endpoint"] == "image.build"]
    assert any(r.get("decision") == "allow" for r in forwarded), forwarded  # it was streaming
    assert image_file(engine, tag + ":g", "/fetched") is None
    assert loopback.hits.count(path) == 1

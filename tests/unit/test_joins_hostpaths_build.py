"""The pure cores of joins, host-path walks, build contexts and the build control."""

from __future__ import annotations

import asyncio
import bz2
import gzip
import io
import lzma
import os
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from dockgate.buildctx import ContextCheck, ContextError, parse
from dockgate.buildctx.dockerfile import DockerfileFacts, triggers
from dockgate.buildctx.tarscan import TarScanner
from dockgate.errors import BadRequest, DockgateError, Forbidden, NotFound
from dockgate.model import CanonicalRequest, Operation, Peer
from dockgate.policy import DecisionContext, PolicyError, load_policy
from dockgate.policy import joins as J
from dockgate.policy.hostpaths import literal_root, root_problem, symlink_below
from dockgate.policy.joincheck import MAX_LOOKUPS, check_joins, needs_joins
from dockgate.policy.rules import CompiledPolicy, compile_policy
from dockgate.policy.source import parse_yaml

PEER = Peer("main", "unix", "@", uid=1000, gid=1000)
ROOT = Path(__file__).resolve().parents[2]
BASELINE = load_policy(str(ROOT / "policies" / "baseline.yaml"))


def policy(text: str) -> CompiledPolicy:
    return compile_policy(parse_yaml(f"name: t\nrules:\n{text}", "t.yaml"))


def req(eid: str, body: Any = None, query: tuple[tuple[str, str], ...] = (),
        params: dict[str, str] | None = None) -> CanonicalRequest:
    ep = Operation(eid, "POST", "/x", "json" if body is not None else "none")
    return CanonicalRequest("POST", ep, "/x", params=params or {}, query=query, body=body)


def tar(entries: list[tuple[str, bytes | str, str]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                t.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
                t.addfile(info)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                raw = data if isinstance(data, bytes) else data.encode()
                info.size = len(raw)
                t.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def read(body: bytes, dockerfile: str = "", step: int = 29) -> bytes | None:
    c = ContextCheck(dockerfile)
    for i in range(0, len(body), step):
        c.feed(body[i : i + step])
    c.finish()
    return c.dockerfile


# -- build contexts -------------------------------------------------------------------


@pytest.mark.parametrize("squeeze", [lambda b: b, gzip.compress, bz2.compress, lzma.compress,
                                     lambda b: gzip.compress(b[:600]) + gzip.compress(b[600:]),
                                     lambda b: bz2.compress(b[:600]) + bz2.compress(b[600:])])
def test_context_dockerfile_in_every_compression(squeeze: Any) -> None:
    """The Dockerfile is found in a plain, gzip, bzip2, xz or concatenated-stream context,
    fed in small pieces, with long (PAX / GNU) names before it."""
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        body = tar([("d/" + "n" * 90 + "/f", "x" * 700, "f"), ("Dockerfile", "FROM a\n", "f"),
                    ("z", "1", "f")], fmt)
        assert read(squeeze(body)) == b"FROM a\n"


def test_context_dockerfile_rules() -> None:
    """The daemon's rules: the dockerfile parameter (cleaned, absolute = in context), the
    lowercase fallback only for the default name, and refusals for what could differ."""
    body = tar([("sub/Df", "FROM s\n", "f")])
    assert read(body, "sub/Df") == b"FROM s\n"
    assert read(body, "/sub/./Df") == b"FROM s\n"
    assert read(tar([("dockerfile", "FROM l\n", "f")])) == b"FROM l\n"
    with pytest.raises(ContextError, match="Cannot locate"):
        read(tar([("dockerfile", "FROM l\n", "f")]), "Dockerfile.x")
    with pytest.raises(ContextError, match="leaves the context"):
        ContextCheck("../Dockerfile")
    refusals = [
        [("Dockerfile", "FROM a\n", "f"), ("Dockerfile", "FROM b\n", "f")],  # replaced later
        [("Dockerfile", "other", "sym")],  # a link
        [("other", "FROM x\n", "f"), ("Dockerfile", "other", "hard")],
        [("s", ".", "sym"), ("s/Dockerfile", "FROM b\n", "f")],  # below a symlink
        [("Dockerfile", "FROM a\n", "f"), ("Dockerfile/x", "1", "f")],
        [("../x", "1", "f")],
    ]
    for entries in refusals:
        with pytest.raises(ContextError):
            read(tar(entries))


def test_context_stops_at_the_end_of_the_archive() -> None:
    """What follows the tar's end (two zero blocks) is not read, as by the daemon; a zero
    block followed by data, a bad checksum and a truncated entry are refused."""
    body = tar([("Dockerfile", "FROM a\n", "f")])
    assert read(body + b"garbage" * 100) == b"FROM a\n"
    bad = bytearray(body)
    bad[0] ^= 1
    with pytest.raises(ContextError, match="checksum"):
        read(bytes(bad))
    with pytest.raises(ContextError):
        read(body[:700])
    s = TarScanner(lambda n: False, 10)
    with pytest.raises(ContextError, match="zstd"):
        s.feed(b"\x28\xb5\x2f\xfd" + bytes(20))


def test_dockerfile_facts() -> None:
    """Images and URL sources, through continuations, comments, the escape directive,
    JSON form, heredocs, ONBUILD, stage names, ARG defaults and build args."""
    facts = parse(
        "# syntax=tenant/front:1\n# escape=`\nARG BASE=dgtest\nARG OTHER\n"
        "FROM ${BASE} AS build\nRUN --mount=type=bind,from=cache/img,target=/c true\n"
        "COPY --from=build /a /b\nCOPY --from=0 /a /b\nCOPY --from=img/two /a /b\n"
        "ADD `\n  # note\n  http://h/x /y\nADD [\"https://h/j\", \"/j\"]\n"
        "ONBUILD ADD git@h:r.git /r\nRUN <<EOF\nADD http://in-heredoc/ /z\nEOF\n"
        "FROM build\nFROM scratch\nFROM ${OTHER:-fallback}\n",
        {"BASE": "override"},
    )
    assert [i for _, i in facts.images] == [
        "tenant/front:1", "override", "cache/img", "img/two", "fallback"]
    assert [u for _, u in facts.urls] == [
        "http://h/x", "https://h/j", "git@h:r.git", "http://in-heredoc/"]
    assert facts.problems == []
    unknown = parse("ARG X\nFROM $X\nFROM ${Y:?no}\nADD $U /u\n", {"X": None})
    assert len(unknown.problems) == 2
    assert unknown.urls == [("line 4 ADD", "$U (cannot be determined)")]


def _build(query: tuple[tuple[str, str], ...], dockerfile: str | None) -> str:
    ctx = DecisionContext(dockerfile=parse(dockerfile) if dockerfile is not None else None)
    ep = Operation("image.build", "POST", "/build", "stream")
    return BASELINE.decide(CanonicalRequest("POST", ep, "/build", query=query), PEER, ctx).reason


def test_build_control_under_baseline() -> None:
    """Baseline refuses remote contexts, ADD <url>, cgroupparent, an unread Dockerfile and
    BuildKit's unseen one; an ordinary classic build is allowed."""
    assert _build((), "FROM a\nCOPY x /x\n") == "allowed by policy baseline"
    assert "query.remote" in _build((("remote", "http://127.0.0.1/c.tar"),), None)
    assert "source http://h/ is fetched" in _build((), "FROM a\nADD http://h/ /x\n")
    assert "query.cgroupparent" in _build((("cgroupparent", "x"),), "FROM a\n")
    assert "was not read" in _build((), None)
    assert "query.version" in _build((("version", "2"),), None)
    assert "query.remote" not in _build((("remote", "client-session"), ("version", "2")), None)


# -- host paths -----------------------------------------------------------------------


def test_symlink_below_an_allowed_root(tmp_path: Path) -> None:
    """Any symlink strictly below the root is refused; missing components end the walk;
    symlinks at or above the root are the operator's."""
    root = tmp_path / "allowed"
    (root / "d").mkdir(parents=True)
    (root / "esc").symlink_to("/")
    (root / "d" / "in").symlink_to(root / "d")
    assert literal_root("/srv/data/**") == "/srv/data"
    assert literal_root("/home/*/p") == "/home"
    assert symlink_below(f"{root}/esc", [str(root)]) is not None
    assert symlink_below(f"{root}/esc/etc", [str(root)]) is not None
    assert symlink_below(f"{root}/d/in", [str(root)]) is not None
    assert symlink_below(f"{root}/d", [str(root)]) is None
    assert symlink_below(f"{root}/missing/x", [str(root)]) is None
    link = tmp_path / "link"
    link.symlink_to(root)
    assert symlink_below(f"{link}/d", [str(link)]) is None


def test_roots_others_can_change(tmp_path: Path) -> None:
    """A root (or ancestor) owned by someone else or writable by others is a problem; a
    sticky ancestor with a root-owned child is not; serve's load refuses, check warns."""
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o755)
    assert root_problem(str(safe)) is None  # /tmp is sticky, pytest's dirs are root's
    open_ = tmp_path / "open"
    open_.mkdir()
    open_.chmod(0o777)
    assert "writable by others" in (root_problem(str(open_ / "below")) or "")
    os.chown(safe, 1000, 1000)
    assert "owned by uid 1000" in (root_problem(str(safe)) or "")
    text = f"name: t\nrules:\n  - id: h\n    host_paths: {{allow: ['{open_}']}}\n"
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match="allowed host path root"):
        load_policy(str(path))
    assert load_policy(str(path), strict=False).warnings
    path.write_text(text.replace("]}", "], accept_writable_roots: true}"))
    assert not load_policy(str(path)).warnings


# -- joins ----------------------------------------------------------------------------


def test_join_refs_and_pin() -> None:
    """container: modes, VolumesFrom and links are joins; pinning names the full id."""
    body = {"HostConfig": {"NetworkMode": "Container:web", "PidMode": "container:db",
                           "IpcMode": "private", "VolumesFrom": ["data:ro"], "Links": ["/x:y"]},
            "NetworkingConfig": {"EndpointsConfig": {"n": {"Links": ["z"]}}}}
    r = req("container.create", body)
    refs = J.join_refs(r)
    assert [(x.field, x.ref) for x in refs] == [
        ("HostConfig.NetworkMode", "web"), ("HostConfig.PidMode", "db"),
        ("HostConfig.VolumesFrom[0]", "data"), ("HostConfig.Links[0]", "x"),
        ("NetworkingConfig.EndpointsConfig[n].Links[0]", "z")]
    for ref in refs:
        r = J.pin(r, ref, "f" * 64)
    hc = r.body["HostConfig"]
    assert hc["NetworkMode"] == "Container:" + "f" * 64
    assert hc["VolumesFrom"] == ["f" * 64 + ":ro"]
    assert hc["Links"] == ["f" * 64 + ":y"]
    assert r.body["NetworkingConfig"]["EndpointsConfig"]["n"]["Links"] == ["f" * 64 + ":z"]
    b = req("image.build", None, (("networkmode", "container:web"),))
    assert J.pin(b, J.join_refs(b)[0], "abc").query == (("networkmode", "container:abc"),)
    assert J.join_refs(req("container.create", {"HostConfig": {"NetworkMode": "none"}})) == []
    c = req("network.connect", {"Container": "me", "EndpointConfig": {"Links": ["web:w"]}})
    assert J.pin(c, J.join_refs(c)[0], "e" * 64).body["EndpointConfig"]["Links"] == ["e" * 64 + ":w"]
    assert not needs_joins(BASELINE, req("container.create", {"Image": "x"}))
    assert needs_joins(BASELINE, req("container.start", None, params={"id": "x"}))


def _daemon(containers: dict[str, dict[str, Any]]) -> Any:
    asked: list[str] = []

    async def fetch(method: str, target: str, body: Any) -> tuple[int, Any]:
        asked.append(target)
        name = target.split("/containers/", 1)[1].split("/", maxsplit=1)[0]
        for c in containers.values():
            if name in (c["Id"], c["Name"]):
                return 200, c
        return 404, None

    fetch.asked = asked  # type: ignore[attr-defined]
    return fetch


def _ctr(cid: str, **hc: Any) -> dict[str, Any]:
    return {"Id": cid * 64, "Name": cid, "Config": {"Image": "dgtest", "User": ""},
            "HostConfig": {"NetworkMode": "none", "CgroupnsMode": "host", "Privileged": False,
                           **hc}, "Mounts": []}


def test_check_joins_judges_the_target_and_its_chain() -> None:
    """X with host PID fails baseline, so joining X (or Y, which joins X) is refused; a
    plain X passes and the request is pinned; a missing X is not found."""
    fetch = _daemon({"x": _ctr("x", PidMode="host"), "y": _ctr("y", PidMode="container:" + "x" * 64),
                     "ok": _ctr("o")})
    run = asyncio.run

    def create(mode: str) -> CanonicalRequest:
        return req("container.create", {"Image": "dgtest", "HostConfig": {"PidMode": mode}})

    with pytest.raises(Forbidden, match="PidMode 'host' shares the host's namespace"):
        run(check_joins(create("container:x"), BASELINE, PEER, fetch))
    with pytest.raises(Forbidden, match="which joins container"):
        run(check_joins(create("container:y"), BASELINE, PEER, fetch))
    pinned = run(check_joins(create("container:o"), BASELINE, PEER, fetch))
    assert pinned.body["HostConfig"]["PidMode"] == "container:" + "o" * 64
    with pytest.raises(NotFound):
        run(check_joins(create("container:nope"), BASELINE, PEER, fetch))
    with pytest.raises(Forbidden, match="container 'x' does not pass"):
        run(check_joins(req("container.start", None, params={"id": "x"}), BASELINE, PEER, fetch))
    start = Operation("container.start", "POST", "/containers/{id}/start")
    started = run(check_joins(CanonicalRequest("POST", start, "/containers/o/start",
                                               params={"id": "o"}), BASELINE, PEER, fetch))
    assert started.path == f"/containers/{'o' * 64}/start"
    bind = _ctr("b")
    bind["HostConfig"]["Binds"] = ["/etc:/e"]
    with pytest.raises(Forbidden, match="host path /etc"):
        run(check_joins(req("container.start", None, params={"id": "b"}), BASELINE, PEER,
                        _daemon({"b": bind})))


def test_start_at_an_old_api_version_keeps_the_stored_cgroup_namespace() -> None:
    """A container started (or joined) at API < 1.41 is judged as the create that made it;
    its stored CgroupnsMode ``private`` settles the namespace there (dockgate cannot set it
    at that version), while the daemon's ``host`` default stays out of a join's judgement."""
    start = replace(req("container.start", None, params={"id": "c"}), version="1.40")
    fetch = _daemon({"c": _ctr("c", CgroupnsMode="private"), "h": _ctr("h")})
    asyncio.run(check_joins(start, BASELINE, PEER, fetch))
    assert "CgroupnsMode" not in J.as_create(_ctr("h"), "1.47").body["HostConfig"]
    assert J.as_create(_ctr("c", CgroupnsMode="private"), "1.40").body["HostConfig"][
        "CgroupnsMode"] == "private"


def test_base_image_triggers_are_read() -> None:
    """A FROM image's ONBUILD triggers count as the build's own instructions; a base that
    is missing, or pulled during the build, cannot be checked (a problem)."""
    from dockgate.policy.joincheck import check_base_triggers  # noqa: PLC0415

    async def fetch(method: str, target: str, body: Any) -> tuple[int, Any]:
        if "trig" in target:
            return 200, {"Config": {"OnBuild": ["ADD http://h/x /x", "COPY --from=other / /"]}}
        return 404, None

    facts = parse("FROM trig:1 AS a\nFROM a\nFROM missing:1\n")
    assert [b for _, b in facts.bases] == ["trig:1", "missing:1"]
    asyncio.run(check_base_triggers(facts, fetch, None, pulls=False))
    assert facts.urls == [("image trig:1 ONBUILD[0] ADD", "http://h/x")]
    assert ("image trig:1 ONBUILD[1] COPY --from", "other") in facts.images
    assert [w for w, _ in facts.problems] == ["line 3 FROM"]
    pulled = parse("FROM trig:1\n")
    asyncio.run(check_base_triggers(pulled, fetch, None, pulls=True))
    assert "pulled during the build" in pulled.problems[0][1]


@pytest.mark.parametrize("trigger", [
    "COPY \\\n--from=b-img /secret /stolen",
    "# a comment\nCOPY --from=b-img /secret /stolen",
    "# escape=`\nCOPY `\n  --from=b-img /secret /stolen",
    "\nCOPY --from=b-img /secret /stolen",
])
def test_trigger_over_several_lines_is_read_as_the_daemon_reads_it(trigger: str) -> None:
    """The daemon parses each trigger as a Dockerfile of its own: one instruction that a
    commit's ``OnBuild`` spread over several lines (a continuation, a comment, an escape
    directive, a blank line first) still names its image."""
    facts = DockerfileFacts()
    triggers("trig:1", [trigger], facts)
    assert [ref for _, ref in facts.images] == ["b-img"], facts
    assert facts.images[0][0].startswith("image trig:1 ONBUILD[0] line ")


def test_policy_check_warns_and_serve_refuses(tmp_path: Path) -> None:
    """`dockgate policy check` prints a WARNING for a root others can write (exit 0)."""
    from dockgate.cli.policy import main  # noqa: PLC0415

    open_ = tmp_path / "open"
    open_.mkdir()
    open_.chmod(0o777)
    path = tmp_path / "p.yaml"
    path.write_text(f"name: t\nrules:\n  - id: h\n    host_paths: {{allow: ['{open_}']}}\n")
    out = io.StringIO()
    assert main(["check", str(path)], out) == 0
    assert f"WARNING: {path}:4: rules[0].host_paths: allowed host path root {open_}: " \
        f"{open_} is writable by others" in out.getvalue()


def test_serve_refuses_a_root_others_can_write(tmp_path: Path) -> None:
    """`dockgate serve` does not start with such a policy: exit 1, one line naming the
    field and the fix, nothing bound."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    open_ = tmp_path / "open"
    open_.mkdir()
    open_.chmod(0o777)
    path = tmp_path / "p.yaml"
    path.write_text(f"name: t\nrules:\n  - id: h\n    host_paths: {{allow: ['{open_}']}}\n")
    sock = tmp_path / "g.sock"
    run = subprocess.run(
        [sys.executable, "-m", "dockgate", "serve", "--policy", str(path), "--listen",
         f"unix:{sock}", "--upstream", f"unix:{tmp_path / 'none.sock'}"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 1, run.stderr
    assert "accept_writable_roots: true" in run.stderr
    assert not sock.exists()


ENTERING = ("exec.create", "container.attach", "container.attach.ws", "container.archive",
            "container.archive.head", "container.archive.put", "container.copy")
RESTRICTED = load_policy(str(ROOT / "policies" / "restricted.yaml"))
PRIVILEGED = load_policy(str(ROOT / "policies" / "privileged.yaml"))


def _hardened(cid: str, user: str) -> dict[str, Any]:
    """An inspected container that passes restricted but for its ``user``."""
    c = _ctr(cid, CapDrop=["ALL"], SecurityOpt=["no-new-privileges"], Memory=64 << 20,
             NanoCpus=500_000_000, PidsLimit=64, CgroupnsMode="private", IpcMode="private")
    c["Config"]["User"] = user
    return c


def _enter(eid: str, cid: str, body: Any = None) -> CanonicalRequest:
    op = Operation(eid, "POST", "/containers/{id}/x", "json" if body is not None else "none")
    return CanonicalRequest("POST", op, f"/containers/{cid}/x", params={"id": cid}, body=body)


@pytest.mark.parametrize("eid", ENTERING)
def test_entering_a_container_judges_it(eid: str) -> None:
    """exec, attach and docker cp need the container they enter inspected under a policy
    that reads bodies (privileged makes no lookup); one with a host bind is refused naming
    it, a plain one is entered by its full id."""
    assert needs_joins(BASELINE, _enter(eid, "x"))
    assert not needs_joins(PRIVILEGED, _enter(eid, "x"))
    bind = _ctr("b")
    bind["HostConfig"]["Binds"] = ["/etc:/e:ro"]
    bind["Mounts"] = [{"Type": "bind", "Source": "/etc", "Destination": "/e", "RW": False}]
    fetch = _daemon({"b": bind, "o": _ctr("o")})
    body = {"Cmd": ["id"]} if eid == "exec.create" else None
    with pytest.raises(Forbidden, match=r"container 'b' does not pass the policy: .*host path /etc"):
        asyncio.run(check_joins(_enter(eid, "b", body), BASELINE, PEER, fetch))
    entered = asyncio.run(check_joins(_enter(eid, "o", body), BASELINE, PEER, fetch))
    assert entered.path == f"/containers/{'o' * 64}/x" and entered.params["id"] == "o" * 64


@pytest.mark.parametrize("name", ["always", "unless-stopped", "on-failure"])
def test_an_update_that_sets_a_restart_policy_judges_the_container(name: str) -> None:
    """An update giving the container a restart policy makes the daemon start it by itself
    (``always`` at its next start, even after a stop), so it is judged as a start: one with a
    host bind is refused, a plain one is updated by its full id; updates of limits, or to
    ``no``, make no lookup."""
    def update(cid: str, body: Any) -> CanonicalRequest:
        op = Operation("container.update", "POST", "/containers/{id}/update", "json")
        return CanonicalRequest("POST", op, f"/containers/{cid}/update", params={"id": cid},
                                body=body)

    restart = {"RestartPolicy": {"Name": name, "MaximumRetryCount": 0}}
    assert J.sets_restart(update("x", restart)) and needs_joins(BASELINE, update("x", restart))
    assert not needs_joins(PRIVILEGED, update("x", restart))
    for body in ({"Memory": 1 << 28}, {"RestartPolicy": {"Name": "no"}},
                 {"RestartPolicy": {"Name": ""}}, {"RestartPolicy": None}):
        assert not needs_joins(BASELINE, update("x", body)), body
    bind = _ctr("b")
    bind["HostConfig"]["Binds"] = ["/etc:/e:ro"]
    fetch = _daemon({"b": bind, "o": _ctr("o")})
    with pytest.raises(Forbidden, match=r"container 'b' does not pass the policy: .*host path /etc"):
        asyncio.run(check_joins(update("b", restart), BASELINE, PEER, fetch))
    updated = asyncio.run(check_joins(update("o", restart), BASELINE, PEER, fetch))
    assert updated.path == f"/containers/{'o' * 64}/update"


def test_an_exec_user_stands_in_for_the_containers() -> None:
    """An exec that sets User runs as it: a root container that otherwise passes
    restricted is entered as 1000:1000, and a non-root container is judged as root when
    the exec asks for root.  Without an exec User the container's own stands, and attach
    and cp (the daemon copies as root) judge the container as it is."""
    fetch = _daemon({"r": _hardened("r", ""), "u": _hardened("u", "1000:1000")})
    run = asyncio.run
    run(check_joins(_enter("exec.create", "r", {"Cmd": ["id"], "User": "1000:1000"}),
                    RESTRICTED, PEER, fetch))
    run(check_joins(_enter("exec.create", "u", {"Cmd": ["id"]}), RESTRICTED, PEER, fetch))
    run(check_joins(_enter("container.archive", "u"), RESTRICTED, PEER, fetch))
    for entering in (_enter("exec.create", "r", {"Cmd": ["id"], "User": ""}),
                     _enter("exec.create", "u", {"Cmd": ["id"], "User": "0"}),
                     _enter("container.archive", "r"), _enter("container.attach", "r")):
        with pytest.raises(Forbidden, match="rule non-root-user"):
            run(check_joins(entering, RESTRICTED, PEER, fetch))


def _execs(execs: dict[str, dict[str, Any]], containers: dict[str, dict[str, Any]]) -> Any:
    """A daemon that answers exec inspections from ``execs`` and container ones as ``_daemon``."""
    inspect_container = _daemon(containers)

    async def fetch(method: str, target: str, body: Any) -> tuple[int, Any]:
        if target.startswith("/exec/"):
            name = target.split("/")[2]
            return (200, execs[name]) if name in execs else (404, None)
        return await inspect_container(method, target, body)

    return fetch


def _exec(eid: str, cid: str, user: str, privileged: bool = False) -> dict[str, Any]:
    return {"ID": eid * 64, "ContainerID": cid * 64, "Running": False, "ExitCode": None,
            "ProcessConfig": {"user": user, "privileged": privileged, "entrypoint": "id",
                              "arguments": ["-u"], "tty": False}}


def _start(eid: str) -> CanonicalRequest:
    op = Operation("exec.start", "POST", "/exec/{id}/start", "json")
    return CanonicalRequest("POST", op, f"/exec/{eid}/start", params={"id": eid},
                            body={"Detach": True})


def test_starting_an_exec_judges_it_as_its_create() -> None:
    """An exec start is judged as the exec create the daemon recorded (another party may have
    made it): its user, in place of the container's, and its Privileged under the caller's
    policy; the container it runs in as for entering it; the start is pinned to the exec's
    full id, and an exec the daemon does not know is not found."""
    assert needs_joins(RESTRICTED, _start("x"))
    assert not needs_joins(PRIVILEGED, _start("x"))
    fetch = _execs({"r": _exec("r", "u", "0"), "p": _exec("p", "u", "1000:1000", True),
                    "d": _exec("d", "u", ""), "e": _exec("e", "r", ""),
                    "o": _exec("o", "r", "1000:1000"), "b": _exec("b", "b", "1000:1000")},
                   {"r": _hardened("r", ""), "u": _hardened("u", "1000:1000"),
                    "b": _hardened("b", "1000:1000") | {"Mounts": [
                        {"Type": "bind", "Source": "/etc", "Destination": "/e", "RW": False}]}})
    run = asyncio.run
    with pytest.raises(Forbidden, match=r"exec 'r' does not pass .* User '0' runs as root"):
        run(check_joins(_start("r"), RESTRICTED, PEER, fetch))
    with pytest.raises(Forbidden, match="rule no-privileged: Privileged"):
        run(check_joins(_start("p"), RESTRICTED, PEER, fetch))
    with pytest.raises(Forbidden, match="rule non-root-user: User is empty and the default user is root"):
        run(check_joins(_start("e"), RESTRICTED, PEER, fetch))
    with pytest.raises(Forbidden, match="host path /etc"):
        run(check_joins(_start("b"), RESTRICTED, PEER, fetch))
    with pytest.raises(NotFound, match="No such exec instance: nope"):
        run(check_joins(_start("nope"), RESTRICTED, PEER, fetch))
    for ok in ("d", "o"):
        started = run(check_joins(_start(ok), RESTRICTED, PEER, fetch))
        assert started.path == f"/exec/{ok * 64}/start" and started.params["id"] == ok * 64


def _volumes(volumes: dict[str, dict[str, Any]], containers: dict[str, dict[str, Any]],
             networks: dict[str, dict[str, Any]] | None = None) -> Any:
    """A daemon that answers volume and network inspections from ``volumes`` and
    ``networks`` and container ones as ``_daemon``; ``fetch.asked`` lists what was asked."""
    inspect_container = _daemon(containers)
    asked: list[str] = []
    tables = {"volumes": volumes, "networks": networks or {}}

    async def fetch(method: str, target: str, body: Any) -> tuple[int, Any]:
        asked.append(target)
        kind, _, rest = target.lstrip("/").partition("/")
        if kind in tables:
            name = rest.split("/")[0]
            return (200, tables[kind][name]) if name in tables[kind] else (404, None)
        return await inspect_container(method, target, body)

    fetch.asked = asked  # type: ignore[attr-defined]
    return fetch


def test_a_named_volume_is_judged_as_its_create() -> None:
    """A named volume a create mounts (a bind's source, a volume mount's Source) that already
    exists is judged as the volume create that would make it: one made on the daemon as a bind
    of a host directory is refused, a plain or tmpfs one and a missing one (the daemon makes
    it from the judged request) pass; a started or entered container's volume mounts alike."""
    etc = {"Name": "etc", "Driver": "local", "Options": {"type": "none", "o": "bind",
                                                        "device": "/etc"}}
    plain = {"Name": "plain", "Driver": "local", "Options": None}
    tmp = {"Name": "tmp", "Driver": "local", "Options": {"type": "tmpfs", "device": "tmpfs",
                                                        "o": "size=1m"}}
    holder = _ctr("h")
    holder["Mounts"] = [{"Type": "volume", "Name": "etc", "Source": "/var/lib/docker/volumes/etc",
                         "Destination": "/h", "RW": True}]
    fetch = _volumes({"etc": etc, "plain": plain, "tmp": tmp}, {"h": holder})
    run = asyncio.run

    def create(**hc: Any) -> CanonicalRequest:
        return req("container.create", {"Image": "dgtest", "HostConfig": hc})

    for bad in (create(Binds=["etc:/h"]),
                create(Mounts=[{"Type": "volume", "Source": "etc", "Target": "/h"}])):
        assert needs_joins(BASELINE, bad)
        with pytest.raises(Forbidden, match=r"volume 'etc' does not pass the policy: .*/etc"):
            run(check_joins(bad, BASELINE, PEER, fetch))
    for ok in (create(Binds=["plain:/p", "tmp:/t", "new:/n"]),
               create(Mounts=[{"Type": "volume", "Source": "new", "Target": "/n"}])):
        run(check_joins(ok, BASELINE, PEER, fetch))
    assert not needs_joins(BASELINE, create(Binds=["/tmp:/t"]))
    assert not needs_joins(PRIVILEGED, create(Binds=["etc:/h"]))
    for entering in (req("container.start", None, params={"id": "h"}), _enter("exec.create", "h",
                                                                            {"Cmd": ["id"]})):
        with pytest.raises(Forbidden, match="volume 'etc' does not pass the policy"):
            run(check_joins(entering, BASELINE, PEER, fetch))


def test_a_joined_network_is_judged_as_its_create() -> None:
    """A user-defined network a container joins (``--network NAME``, an ``EndpointsConfig``
    key, ``network connect``) that exists is judged as the network create that would make
    it, addresses aside: a macvlan on a host interface is refused, a bridge network (routed
    or not: ``internal`` is set at create) passes, a missing one is left to the daemon; a
    started container's networks alike, by their ids, and a classic build's networkmode."""
    mac = {"Name": "lan", "Id": "l" * 64, "Driver": "macvlan", "Scope": "local",
           "Internal": True, "Options": {"parent": "eth0", "macvlan_mode": "passthru"},
           "IPAM": {"Driver": "default", "Options": None,
                    "Config": [{"Subnet": "10.9.0.0/24"}]}}
    routed = {"Name": "web", "Id": "w" * 64, "Driver": "bridge", "Scope": "local",
              "Internal": False, "Options": {}, "IPAM": {"Driver": "default", "Options": {},
                                                         "Config": [{"Subnet": "172.30.0.0/16"}]}}
    holder = _ctr("h")
    holder["NetworkSettings"] = {"Networks": {"lan": {"NetworkID": "l" * 64}}}
    fetch = _volumes({}, {"h": holder}, {"lan": mac, "l" * 64: mac, "web": routed})
    run = asyncio.run
    for bad in (req("container.create", {"Image": "x", "HostConfig": {"NetworkMode": "lan"}}),
                req("container.create", {"Image": "x", "NetworkingConfig": {
                    "EndpointsConfig": {"lan": {}}}}),
                CanonicalRequest("POST", Operation("network.connect", "POST",
                                                   "/networks/{id}/connect", "json"),
                                 "/networks/lan/connect", params={"id": "lan"},
                                 body={"Container": "c"}),
                req("container.start", None, params={"id": "h"})):
        assert needs_joins(BASELINE, bad)
        with pytest.raises(Forbidden, match=r"network '(lan|l{64})' does not pass the policy: "
                                            r".*network driver 'macvlan' is not allowed"):
            run(check_joins(bad, BASELINE, PEER, fetch))
    for ok in (req("container.create", {"Image": "x", "HostConfig": {"NetworkMode": "web"}}),
               req("container.create", {"Image": "x", "HostConfig": {"NetworkMode": "new"}})):
        run(check_joins(ok, BASELINE, PEER, fetch))
    assert not needs_joins(BASELINE, req("container.create", {
        "Image": "x", "HostConfig": {"NetworkMode": "bridge"}}))
    # A classic build's RUN steps join the network its networkmode names.
    with pytest.raises(Forbidden, match=r"query\.networkmode: network 'lan' does not pass"):
        run(check_joins(req("image.build", None, (("networkmode", "lan"),)), BASELINE, PEER,
                        fetch))
    for mode in ("default", "none", "host"):
        assert not needs_joins(BASELINE, req("image.build", None, (("networkmode", mode),)))


def test_a_joined_network_named_with_a_slash_or_a_control_is_judged_too() -> None:
    """Network names are not validated by the daemon (28.5 makes ``a/b`` and ``e<TAB>f``,
    attaches a container created with ``--network a/b`` to it, and answers
    ``GET /networks/a%2Fb``): a macvlan on a host interface with such a name is inspected,
    path-escaped, and refused like any other, not let through unjudged."""
    mac = {"Id": "m" * 64, "Driver": "macvlan", "Scope": "local", "Internal": True,
           "Options": {"parent": "eth0", "macvlan_mode": "passthru"}}
    names = ("lan/x", "lan\tx", "lan%2Fx")
    asked: list[str] = []

    async def fetch(method: str, target: str, body: Any) -> tuple[int, Any]:
        asked.append(target)
        prefix, _, name = target.partition("/networks/")
        name = unquote(name)
        return (200, {**mac, "Name": name}) if not prefix and name in names else (404, None)

    for name in names:
        for bad in (req("container.create", {"Image": "x", "HostConfig": {"NetworkMode": name}}),
                    req("container.create", {"Image": "x", "NetworkingConfig": {
                        "EndpointsConfig": {name: {}}}})):
            assert needs_joins(BASELINE, bad)
            with pytest.raises(Forbidden, match=r"does not pass the policy: .*network driver "
                                                r"'macvlan' is not allowed"):
                asyncio.run(check_joins(bad, BASELINE, PEER, fetch))
    assert f"/networks/{quote('lan/x', safe='')}" in asked


def test_a_join_check_asks_each_target_once_and_at_most_max_lookups() -> None:
    """A volume named by many binds is looked up once; a create naming more distinct
    volumes than ``MAX_LOOKUPS`` is refused (400) after that many lookups, not after one
    per name; one at the limit is checked whole."""
    asked: list[str] = []

    async def fetch(method: str, target: str, body: Any) -> tuple[int, Any]:
        asked.append(target)
        name = unquote(target.rpartition("/volumes/")[2])
        return 200, {"Name": name, "Driver": "local", "Options": None, "Labels": None}

    def create(binds: list[str]) -> CanonicalRequest:
        return req("container.create", {"Image": "x", "HostConfig": {"Binds": binds}})

    asyncio.run(check_joins(create([f"same:/m{i}" for i in range(500)]), BASELINE, PEER, fetch))
    assert len(asked) == 1
    asked.clear()
    asyncio.run(check_joins(create([f"v{i}:/m{i}" for i in range(MAX_LOOKUPS)]), BASELINE, PEER,
                            fetch))
    assert len(asked) == MAX_LOOKUPS
    asked.clear()
    with pytest.raises(BadRequest, match=f"more than {MAX_LOOKUPS} volumes, networks"):
        asyncio.run(check_joins(create([f"v{i}:/m{i}" for i in range(MAX_LOOKUPS + 1)]),
                                BASELINE, PEER, fetch))
    assert len(asked) == MAX_LOOKUPS


def _network_daemon(networks: list[dict[str, Any]], container: dict[str, Any]) -> Any:
    """A daemon that resolves network lookups as ``GET /networks/{id}`` does (full id,
    exact name, then unique id prefix), lists ``networks``, and inspects ``container``."""
    async def fetch(method: str, target: str, body: Any) -> tuple[int, Any]:
        if target == "/networks":
            return 200, networks
        if target.startswith("/networks/"):
            ref = unquote(target.removeprefix("/networks/"))
            for found in ([n for n in networks if n["Id"] == ref],
                          [n for n in networks if n["Name"] == ref],
                          [n for n in networks if n["Id"].startswith(ref)]):
                if len(found) == 1:
                    return 200, found[0]
            return 404, None
        return (200, container) if container["Name"] in target or container["Id"] in target \
            else (404, None)

    return fetch


def test_a_start_refuses_an_endpoint_kept_by_a_name_another_network_can_answer() -> None:
    """A start connects an endpoint without ``NetworkID`` by its stored name (full id,
    exact name, then id prefix, when the start runs): it is refused (409, naming the
    network and the fix) when the name is the start of another network's id, names no
    network exactly, or several; and when a set ``NetworkID`` names a network that is
    gone (or is another network's name).  An endpoint whose name is exactly one network's
    name and no id's start, or whose ``NetworkID`` is a network's id, starts, and that
    network, by its full id, is what is judged."""
    own = {"Name": "abc123def456", "Id": "9" * 64, "Driver": "bridge", "Scope": "local"}
    other = {"Name": "other", "Id": "abc123def456" + "0" * 52, "Driver": "bridge",
             "Scope": "local", "Options": {"com.docker.network.bridge.name": "evil0"}}
    web = {"Name": "web", "Id": "7" * 64, "Driver": "bridge", "Scope": "local"}
    run = asyncio.run
    start = req("container.start", None, params={"id": "h"})

    def holder(**endpoints: Any) -> dict[str, Any]:
        ctr = _ctr("h")
        ctr["NetworkSettings"] = {"Networks": {"bridge": {"NetworkID": ""}, **endpoints}}
        return ctr

    refused = (
        ([own, other, web], holder(abc123def456={}),
         "by name only, and that name is also the start of another network's id"),
        ([other, web], holder(abc123def456={"NetworkID": ""}),
         r"no network is named so \(it is the start"),
        ([own, web], holder(gone={}), "no network is named so now"),
        ([own, web, {**web, "Id": "6" * 64}], holder(web={}), "several networks are named so"),
        ([own, web], holder(web={"NetworkID": "5" * 64}),
         r"is bound to network 5{12}, which is gone"),
        ([own, {**web, "Name": "5" * 64}], holder(web={"NetworkID": "5" * 64}), "is gone"),
    )
    for networks, ctr, why in refused:
        with pytest.raises(DockgateError, match=f"network '[a-z0-9]+' .*{why}.*Remove the "
                                                "container and create it again") as caught:
            run(check_joins(start, BASELINE, PEER, _network_daemon(networks, ctr)))
        assert caught.value.status == 409
    for networks, ctr in (([own, web], holder(web={})), ([own, web], holder(abc123def456={})),
                          ([own, web], holder(web={"NetworkID": "7" * 64})),
                          ([own, web], holder(**{"7" * 64: {}}))):
        run(check_joins(start, BASELINE, PEER, _network_daemon(networks, ctr)))
    # What is judged is the network the endpoint reads as: a refused one, by its id.
    with pytest.raises(Forbidden, match=r"network 'abc123def4560{52}' does not pass the policy"):
        run(check_joins(start, BASELINE, PEER, _network_daemon(
            [other, web], holder(abc123def456={"NetworkID": other["Id"]}))))

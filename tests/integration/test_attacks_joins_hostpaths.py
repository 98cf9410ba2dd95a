"""Attacks through the containers a request joins and through host paths that move,
against both engines, through dockgates running baseline and restricted (for host
paths, those profiles with one allowed root), each first shown live on the bare daemon.

The oracles are the kernel's and the daemon's: namespace identities
(``/proc/self/ns/pid`` in the container against the host's, as the tests see it),
what a container read from the host, whether a container was created or ever
started, what a build baked into its image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from support import engines as eng
from support import gate, policygate
from support.buildhelp import build, context, image_file
from support.engines import IMAGE, Engine, unique
from support.policygate import PolicyGate, policy_audit_guard, policy_gates

pytestmark = pytest.mark.engine
_ = (policy_gates, policy_audit_guard)

POLICIES = ("baseline", "restricted")
NONE = ("--network", "none", "--pull", "never")
RESTRICTED = ("--user", "1000:1000", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
              "--memory", "64m", "--cpus", "0.5", "--pids-limit", "64")
HOST_PID = os.readlink("/proc/self/ns/pid")  # the daemon runs in the test's namespace
SECRET = "host-only-" + unique("s")


def flags(policy: str) -> tuple[str, ...]:
    """What a container needs under ``policy`` to be allowed (apart from the tested field)."""
    return (*NONE, *RESTRICTED) if policy == "restricted" else NONE


def inspect(engine: Engine, name: str) -> Any:
    return json.loads(engine.docker_direct("inspect", name).stdout)[0]


def never_started(engine: Engine, name: str) -> bool:
    state = inspect(engine, name)["State"]
    return not state["Running"] and state["StartedAt"].startswith("0001-01-01")


# -- joins ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostpid(engine_set: dict[str, Engine]) -> Iterator[dict[str, dict[str, str]]]:
    """Per engine, made directly on the daemon: ``x`` runs in the host's PID namespace and
    serves a secret on its own loopback (network none); ``y`` joins x's PID namespace."""
    made: dict[str, dict[str, str]] = {}
    try:
        for name, engine in engine_set.items():
            x, y = unique("dgjoin-x"), unique("dgjoin-y")
            made[name] = {"x": x, "y": y}
            engine.docker_direct(
                "run", "-d", *NONE, "--pid", "host", "--name", x, IMAGE, "sh", "-c",
                f"mkdir -p /w && echo {SECRET} > /w/s && httpd -f -p 127.0.0.1:8080 -h /w",
            )  # fmt: skip
            engine.docker_direct("run", "-d", *NONE, "--pid", f"container:{x}", "--name", y,
                                 IMAGE, "sleep", "600")
        yield made
    finally:
        for name, pair in made.items():
            engine_set[name].docker_direct("rm", "-f", pair["x"], pair["y"], check=False)


@pytest.mark.allow_refusals
@pytest.mark.parametrize("policy", POLICIES)
def test_joining_a_container_in_the_host_pid_namespace_is_refused(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate],
    hostpid: dict[str, dict[str, str]], policy: str,
) -> None:
    """``--pid container:X`` where X runs with ``--pid host`` puts the caller in the host's
    PID namespace (and so does joining Y, which joins X); through dockgate both are
    refused, X being judged under the caller's policy, and nothing is created."""
    pg = policy_gates[(engine.name, policy)]
    x, y = hostpid[engine.name]["x"], hostpid[engine.name]["y"]
    for target in (x, y):
        out = engine.docker_direct("run", "--rm", *NONE, "--pid", f"container:{target}", IMAGE,
                                   "readlink", "/proc/self/ns/pid")
        assert out.stdout.strip() == HOST_PID
    before = engine.snapshot()
    for target, why in ((x, "PidMode 'host' shares the host's namespace"),
                        (y, "which joins container")):
        out = pg.docker("run", "--rm", *flags(policy), "--pid", f"container:{target}", IMAGE,
                        "readlink", "/proc/self/ns/pid", check=False)
        assert out.returncode != 0
        assert HOST_PID not in out.stdout
        if policy == "baseline":
            assert f"dockgate: HostConfig.PidMode: container {target!r}" in out.stderr
            assert "does not pass the policy: denied by policy baseline rule no-host-namespaces: "\
                "HostConfig.PidMode 'host' shares the host's namespace" in out.stderr, out.stderr
            assert why in out.stderr, out.stderr
        else:
            assert "rule no-shared-namespaces" in out.stderr, out.stderr
    assert engine.snapshot()["containers"] == before["containers"]


@pytest.mark.allow_refusals
@pytest.mark.parametrize("policy", POLICIES)
def test_build_in_another_containers_network_is_refused(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate],
    hostpid: dict[str, dict[str, str]], policy: str,
) -> None:
    """``POST /build?networkmode=container:X``: the RUN step reads what X serves on its
    loopback (baked into the image) when sent to the daemon; through dockgate X is judged
    (it runs in the host's PID namespace) and the build is refused, no image made."""
    pg = policy_gates[(engine.name, policy)]
    x = hostpid[engine.name]["x"]
    body = context({"Dockerfile": f"FROM {IMAGE}\n"
                    "RUN wget -q -O /got http://127.0.0.1:8080/s\n"})
    tag = unique("dgjoinb").lower()
    status, text = build(engine.daemon_socket, body, networkmode=f"container:{x}", t=tag + ":d")
    assert status == 200, text
    assert image_file(engine, tag + ":d", "/got") == SECRET + "\n"
    status, text = build(pg.socket, body, networkmode=f"container:{x}", t=tag + ":g")
    assert status == 403, text
    message = json.loads(text)["message"]
    if policy == "baseline":
        assert message.startswith(f"dockgate: query.networkmode: container {x!r} does not pass"), \
            message
    else:
        assert "rule escalation-endpoints: endpoint image.build" in message, message
    assert image_file(engine, tag + ":g", "/got") is None


@pytest.mark.allow_refusals
@pytest.mark.parametrize("policy", POLICIES)
def test_start_judges_the_container_as_stored(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate], policy: str
) -> None:
    """A container created behind dockgate's back with ``--pid host``: started on the daemon
    it runs in the host's PID namespace; ``docker start`` through dockgate is refused and
    the container never starts."""
    pg = policy_gates[(engine.name, policy)]
    live, kept = unique("dgstart-live"), unique("dgstart-kept")
    for name in (live, kept):
        engine.docker_direct("create", *flags(policy), "--pid", "host", "--name", name, IMAGE,
                             "readlink", "/proc/self/ns/pid")
    out = engine.docker_direct("start", "-a", live)
    assert out.stdout.strip() == HOST_PID
    out = pg.docker("start", kept, check=False)
    assert out.returncode != 0
    assert f"container {kept!r} does not pass the policy" in out.stderr, out.stderr
    assert "PidMode 'host' shares the host's namespace" in out.stderr, out.stderr
    assert never_started(engine, kept)


def test_joining_an_ordinary_container_still_works(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]
) -> None:
    """Under baseline a sidecar joining an ordinary container of the caller's still runs
    in that container's PID namespace (and the join is pinned to its full id)."""
    pg = policy_gates[(engine.name, "baseline")]
    main = unique("dgjoin-main")
    pg.docker("run", "-d", *NONE, "--name", main, IMAGE, "sleep", "600")
    pid = inspect(engine, main)["State"]["Pid"]
    out = pg.docker("run", "--rm", *NONE, "--pid", f"container:{main}", IMAGE,
                    "readlink", "/proc/self/ns/pid")
    assert out.stdout.strip() == os.readlink(f"/proc/{pid}/ns/pid") != HOST_PID
    pg.docker("rm", "-f", main)


# -- host paths -----------------------------------------------------------------------


def _root(engine: Engine) -> Path:
    return engine.workdir / "hp-root"


@pytest.fixture(scope="module")
def hp_gates(engine_set: dict[str, Engine]) -> Iterator[dict[tuple[str, str], PolicyGate]]:
    """Per engine, dockgates running baseline and restricted with one allowed host root
    (restricted also allowing bind mounts) and VolumesFrom allowed."""
    base = next(iter(engine_set.values())).daemon.root.parent / "hp"

    def starter(engine: Engine, policy: str) -> Callable[[], PolicyGate]:
        root = _root(engine)
        root.mkdir(mode=0o755, exist_ok=True)
        text = (policygate.POLICIES / f"{policy}.yaml").read_text()
        text = text.replace("host_paths: {allow: []}", f"host_paths: {{allow: ['{root}']}}")
        text = text.replace("mount_types: {allow: [volume, tmpfs]}",
                            "mount_types: {allow: [bind, volume, tmpfs]}")
        text = text.replace("volumes_from: {allow: false}", "volumes_from: {allow: true}")
        workdir = base / f"{engine.name.split('.')[0]}{policy[0]}"
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "policy.yaml"
        path.write_text(text)

        def start() -> PolicyGate:
            with mock.patch.object(gate, "POLICY", path):
                proc = gate.start_dockgate(f"{engine.name}/{policy}-hp", engine.daemon_socket,
                                           workdir)
            return PolicyGate(engine, policy, proc, eng.make_docker_config(workdir / "cfg"))

        return start

    started = policygate.start_all({(name, policy): starter(engine, policy)
                                    for name, engine in engine_set.items()
                                    for policy in POLICIES})
    try:
        yield started
    finally:
        policygate.stop_all(started)


def _shared(engine: Engine) -> tuple[Path, Path]:
    """A fresh directory below the allowed root (writable by the test's uid 1000 too), and
    a host file outside the root holding the secret."""
    shared = _root(engine) / unique("sh")
    shared.mkdir()
    shared.chmod(0o777)
    marker = engine.workdir / unique("outside")
    marker.write_text(SECRET)
    marker.chmod(0o644)
    return shared, marker


SYMLINK = "is a symbolic link below the allowed root"


@pytest.mark.allow_refusals
@pytest.mark.parametrize("policy", POLICIES)
def test_planted_symlink_below_an_allowed_root_is_refused(
    engine: Engine, hp_gates: dict[tuple[str, str], PolicyGate], policy: str
) -> None:
    """A container with an allowed bind plants ``esc -> /``; the next container binding
    ``<root>/.../esc`` reads the host's files on the bare daemon; through dockgate every
    spelling (Binds, Mounts, a path through the link) is refused and nothing is created."""
    pg = hp_gates[(engine.name, policy)]
    shared, marker = _shared(engine)
    pg.docker("run", "--rm", *flags(policy), "-v", f"{shared}:/s", IMAGE,
              "ln", "-s", "/", "/s/esc")
    out = engine.docker_direct("run", "--rm", *NONE, "-v", f"{shared}/esc:/x:ro", IMAGE,
                               "cat", f"/x{marker}")
    assert out.stdout == SECRET
    before = engine.snapshot()
    for spec in (("-v", f"{shared}/esc:/x:ro"),
                 ("--mount", f"type=bind,src={shared}/esc,dst=/x,readonly"),
                 ("-v", f"{shared}/esc{marker.parent}:/x:ro")):
        out = pg.docker("run", "--rm", *flags(policy), *spec, IMAGE, "cat", f"/x{marker}",
                        check=False)
        assert out.returncode != 0
        assert SECRET not in out.stdout
        assert SYMLINK in out.stderr, out.stderr
    assert engine.snapshot()["containers"] == before["containers"]
    out = pg.docker("run", "--rm", *flags(policy), "-v", f"{shared}:/s:ro", IMAGE, "ls", "/s")
    assert out.stdout.split() == ["esc"]


@pytest.mark.allow_refusals
@pytest.mark.parametrize("policy", POLICIES)
def test_directory_swapped_for_a_symlink_before_start_is_refused(
    engine: Engine, hp_gates: dict[tuple[str, str], PolicyGate], policy: str
) -> None:
    """Create with a plain (empty) directory (allowed), swap it for ``-> /`` from another
    container, then start: the bare daemon mounts the host's root at start (the container
    lists it); through dockgate the start is refused and the container never runs (with
    ``-a`` the attach before it is already refused: entering the container judges it too,
    and the CLI shows only the failed upgrade)."""
    pg = hp_gates[(engine.name, policy)]
    shared, _ = _shared(engine)
    names = []
    for _ in range(2):
        d = shared / unique("d")
        d.mkdir()
        name = unique("dgswap")
        pg.docker("create", *flags(policy), "--name", name, "-v", f"{d}:/x:ro", IMAGE,
                  "ls", "/x")
        pg.docker("run", "--rm", *flags(policy), "-v", f"{shared}:/s", IMAGE, "sh", "-c",
                  f"rmdir /s/{d.name} && ln -s / /s/{d.name}")
        names.append(name)
    live, kept = names
    # The directory was empty: what the container lists is the host's root.
    host_root = {n for n in os.listdir("/") if not n.startswith(".")}
    assert set(engine.docker_direct("start", "-a", live).stdout.split()) == host_root
    attached = pg.docker("start", "-a", kept, check=False)
    assert attached.returncode != 0 and "proc" not in attached.stdout.split()
    out = pg.docker("start", kept, check=False)
    assert out.returncode != 0
    assert SYMLINK in out.stderr, out.stderr
    assert never_started(engine, kept)


@pytest.mark.allow_refusals
@pytest.mark.parametrize("policy", POLICIES)
def test_volumes_from_a_container_with_host_binds_is_refused(
    engine: Engine, hp_gates: dict[tuple[str, str], PolicyGate], policy: str
) -> None:
    """With VolumesFrom allowed, ``--volumes-from X`` copies X's mounts: X made behind
    dockgate's back with a bind of a host directory outside the allowed root gives the
    caller that directory on the bare daemon; through dockgate X is judged (its bind is
    not an allowed host path) and nothing is created.  A donor with only an allowed bind
    still works."""
    pg = hp_gates[(engine.name, policy)]
    shared, marker = _shared(engine)
    donor, good = unique("dgdonor"), unique("dgdonor-ok")
    engine.docker_direct("create", *NONE, "--name", donor, "-v", f"{marker.parent}:/host:ro",
                         IMAGE, "true")
    out = engine.docker_direct("run", "--rm", *NONE, "--volumes-from", donor, IMAGE,
                               "cat", f"/host/{marker.name}")
    assert out.stdout == SECRET
    before = engine.snapshot()
    out = pg.docker("run", "--rm", *flags(policy), "--volumes-from", donor, IMAGE,
                    "cat", f"/host/{marker.name}", check=False)
    assert out.returncode != 0
    assert SECRET not in out.stdout
    assert f"HostConfig.VolumesFrom[0]: container {donor!r} does not pass the policy" \
        in out.stderr, out.stderr
    assert f"host path {marker.parent} is not in the allowed host paths" in out.stderr
    assert engine.snapshot()["containers"] == before["containers"]
    (shared / "f").write_text("allowed\n")
    (shared / "f").chmod(0o644)
    pg.docker("create", *flags(policy), "--name", good, "-v", f"{shared}:/s:ro", IMAGE, "true")
    out = pg.docker("run", "--rm", *flags(policy), "--volumes-from", good, IMAGE, "cat", "/s/f")
    assert out.stdout == "allowed\n"


# -- named volumes made behind dockgate's back ------------------------------------------


@pytest.mark.allow_refusals
def test_a_named_volume_bound_to_a_host_directory_is_refused(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate],
) -> None:
    """A volume someone made directly on the daemon as a bind of a host directory
    (``-o type=none -o o=bind -o device=DIR``) is that directory, writable, in every
    container that names it (shown on the bare daemon).  Through baseline and restricted,
    a create that mounts it by name (``-v``, ``--mount``) is refused as the volume's own
    create would be, and so is the start of a container made with it on the daemon."""
    host = engine.workdir / unique("hostdir")
    host.mkdir()
    (host / "secret").write_text(SECRET)
    vol = unique("hostvol")
    engine.docker_direct("volume", "create", "-o", "type=none", "-o", "o=bind",
                         "-o", f"device={host}", vol)
    holder = unique("volholder")
    try:
        bare = engine.docker_direct("run", "--rm", *NONE, "-v", f"{vol}:/h", IMAGE, "sh", "-c",
                                    "cat /h/secret; echo planted > /h/planted")
        assert bare.stdout == SECRET and (host / "planted").exists()
        before = engine.snapshot()
        for policy in POLICIES:
            pg = policy_gates[(engine.name, policy)]
            for mount in (("-v", f"{vol}:/h"), ("--mount", f"type=volume,src={vol},dst=/h")):
                out = pg.docker("run", "--rm", *flags(policy), *mount, IMAGE, "cat", "/h/secret",
                                check=False)
                assert out.returncode != 0 and SECRET not in out.stdout
                assert f"volume {vol!r} does not pass the policy: denied by policy {policy}" \
                    in out.stderr, out.stderr
        assert engine.snapshot()["containers"] == before["containers"]
        engine.docker_direct("create", "--name", holder, *NONE, "-v", f"{vol}:/h", IMAGE, "true")
        out = policy_gates[(engine.name, "baseline")].docker("start", holder, check=False)
        assert out.returncode != 0 and f"volume {vol!r} does not pass" in out.stderr, out.stderr
        assert never_started(engine, holder)
    finally:
        engine.docker_direct("rm", "-f", holder, check=False)
        engine.docker_direct("volume", "rm", vol, check=False)

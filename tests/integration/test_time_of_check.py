"""Issue 21 item 4: decisions bind to what was checked (time of check, time of use).

Under restricted an empty ``User`` means the image's user, which dockgate reads
from the daemon before it decides.  A concurrent ``POST /images/{name}/tag``
can move the tag onto a root-user image between that read and the create.
Under baseline a ``container:X`` join is judged by X's own settings, read from
the daemon; a concurrent rename can put another container under the name.
These tests race tag swaps and renames against creates and execs, many times
within a bound, and ask the daemon what was created.

The other profiles make no decision on the daemon's state: privileged decides
nothing, readonly refuses every create and exec, and baseline's image-user rule
only audits (tenants' ownership checks are raced in test_tenants.py).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest
from support import unixhttp
from support.engines import IMAGE, Engine, unique
from support.policygate import PolicyGate, policy_audit_guard, policy_gates

pytestmark = pytest.mark.engine
_ = (policy_gates, policy_audit_guard)  # fixtures, imported for pytest

HOST_CONFIG = {
    "NetworkMode": "none",
    "CapDrop": ["ALL"],
    "SecurityOpt": ["no-new-privileges"],
    "Memory": 64 << 20,
    "NanoCpus": 500_000_000,
    "PidsLimit": 64,
}
ROUNDS = 30
SECONDS = 60.0


call = unixhttp.call


def nonroot_image(engine: Engine, name: str) -> str:
    """Commit ``IMAGE`` with ``USER 1000:1000`` as ``name`` on the daemon; its id."""
    sock = engine.daemon_socket
    status, made = call(sock, "POST", "/containers/create", {"Image": IMAGE, "Cmd": ["true"],
                                                            "HostConfig": {"NetworkMode": "none"}})
    assert status == 201, made
    assert isinstance(made, dict)
    repo, tag = name.split(":")
    changes = quote('USER 1000:1000')
    status, committed = call(sock, "POST", f"/commit?container={made['Id']}&repo={repo}&tag={tag}"
                             f"&changes={changes}")
    assert status == 201, committed
    call(sock, "DELETE", f"/containers/{made['Id']}?force=1")
    return image_id(engine, name)


def image_id(engine: Engine, name: str) -> str:
    status, info = call(engine.daemon_socket, "GET", f"/images/{name}/json")
    assert status == 200 and isinstance(info, dict), info
    return str(info["Id"])


def race_directly(attempt: Callable[[], str | None], outcomes: set[str], rounds: int) -> set[str]:
    """Call ``attempt`` (one request straight to the daemon, while a race runs; it returns
    the object the request landed on, or None) up to ``rounds`` times, until every
    one of ``outcomes`` was seen or SECONDS passed; what was seen."""
    seen: set[str] = set()
    deadline = time.monotonic() + SECONDS
    for _ in range(rounds):
        landed = attempt()
        if landed:
            seen.add(landed)
        if seen >= outcomes or time.monotonic() > deadline:
            break
    return seen


class Swapper:
    """Moves ``repo:tag`` between two images on the daemon, as fast as it can."""

    def __init__(self, engine: Engine, ref: str, ids: tuple[str, str]) -> None:
        self.sock, self.ids = engine.daemon_socket, ids
        self.repo, self.tag = ref.split(":")
        self.stop = threading.Event()
        self.swaps = 0
        self.jitter = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for ident in self.ids:
                call(self.sock, "POST", f"/images/{ident}/tag?repo={self.repo}&tag={self.tag}")
                self.swaps += 1
                # A random pause keeps the swaps out of step with dockgate's own
                # check-to-create gap, which would otherwise (under load) line up
                # with the swap period and make every checked create lose.
                time.sleep(random.random() * self.jitter)  # noqa: S311 (timing, not secrets)

    def __enter__(self) -> Swapper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


@pytest.fixture
def images(engine: Engine) -> Iterator[tuple[str, str, str]]:
    """(``race:<unique>`` reference, root image id, non-root image id)."""
    tag = unique("t")
    ref = f"race:{tag}"
    nonroot = nonroot_image(engine, f"racenr:{tag}")
    root = image_id(engine, IMAGE)
    call(engine.daemon_socket, "POST", f"/images/{nonroot}/tag?repo=race&tag={tag}")
    yield ref, root, nonroot


def create_body(ref: str) -> dict[str, object]:
    return {"Image": ref, "Cmd": ["true"], "HostConfig": HOST_CONFIG}


@pytest.mark.allow_refusals
def test_tag_swap_never_wins_a_create_under_restricted(
    engine: Engine,
    images: tuple[str, str, str],
    policy_gates: dict[tuple[str, str], PolicyGate],
) -> None:
    """While a tag moves between a root and a non-root image, creates of that tag
    directly make containers from both images (the race is live at the daemon);
    through restricted, every container the daemon holds afterwards runs the
    non-root image: creates that raced were refused (and any container the
    race made was removed), and once the tag rests on the non-root image the
    same create succeeds."""
    ref, root, nonroot = images
    prefix = unique("race")

    def create_directly() -> str:
        status, made = call(engine.daemon_socket, "POST", f"/containers/create?name={prefix}-d"
                            f"{os.urandom(4).hex()}", create_body(ref))
        assert status == 201 and isinstance(made, dict), made
        _, info = call(engine.daemon_socket, "GET", f"/containers/{made['Id']}/json")
        assert isinstance(info, dict)
        return str(info["Image"])

    with Swapper(engine, ref, (root, nonroot)):
        seen = race_directly(create_directly, {root, nonroot}, ROUNDS)
    assert root in seen, "the tag swap never won directly: the test shows nothing"

    pg = policy_gates[(engine.name, "restricted")]
    statuses: list[int] = []
    with Swapper(engine, ref, (root, nonroot)) as swapper:
        swapper.jitter = 0.01
        deadline = time.monotonic() + SECONDS
        for i in range(ROUNDS):
            status, answer = call(pg.socket, "POST", f"/v1.41/containers/create?name={prefix}-g{i}",
                                  create_body(ref))
            assert status in (201, 403), answer
            statuses.append(status)
            if time.monotonic() > deadline:
                break
    assert swapper.swaps > len(statuses)
    _, listed = call(engine.daemon_socket, "GET",
                     "/containers/json?all=1&filters=" + quote(json.dumps({"name": [prefix + "-g"]})))
    assert isinstance(listed, list)
    created = [str(c["Id"]) for c in listed]
    assert len(created) == statuses.count(201)
    for ident in created:
        _, info = call(engine.daemon_socket, "GET", f"/containers/{ident}/json")
        assert isinstance(info, dict)
        assert info["Image"] == nonroot, f"container {ident[:12]} runs the root-user image"
    assert 403 in statuses, "no create raced the swap: the test shows nothing"
    # Whether a create wins during the race depends on timing (a loaded machine can
    # lose every one, which is safe); once the tag rests on the non-root image, the
    # same create must go through: the refusals above were the race's, not blanket.
    call(engine.daemon_socket, "POST", f"/images/{nonroot}/tag?repo={ref.split(':')[0]}"
         f"&tag={ref.split(':')[1]}")
    status, made = call(pg.socket, "POST", f"/v1.41/containers/create?name={prefix}-settled",
                        create_body(ref))
    assert status == 201 and isinstance(made, dict), made
    _, info = call(engine.daemon_socket, "GET", f"/containers/{made['Id']}/json")
    assert isinstance(info, dict) and info["Image"] == nonroot


class Renamer:
    """Moves the name ``name`` between two containers on the daemon, as fast as it can."""

    def __init__(self, engine: Engine, name: str, ids: tuple[str, str]) -> None:
        self.sock, self.name, self.ids = engine.daemon_socket, name, ids
        self.stop = threading.Event()
        self.renames = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        holder = 0  # ids[0] holds the name at the start
        while not self.stop.is_set():
            other = 1 - holder
            aside = f"{self.name}-{holder}"
            call(self.sock, "POST", f"/containers/{self.ids[holder]}/rename?name={aside}")
            call(self.sock, "POST", f"/containers/{self.ids[other]}/rename?name={self.name}")
            holder = other
            self.renames += 1

    def __enter__(self) -> Renamer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def sleeper(engine: Engine, image: str, name: str, **host_config: str) -> str:
    """Start a container ``name`` of ``image`` sleeping (``HOST_CONFIG``, plus
    ``host_config``) directly on the daemon; its id.  Hardened as restricted requires
    but for the image's user, since an exec is judged by the container it enters too."""
    status, made = call(engine.daemon_socket, "POST", f"/containers/create?name={name}",
                        {"Image": image, "Cmd": ["sleep", "300"],
                         "HostConfig": {**HOST_CONFIG, **host_config}})
    assert status == 201 and isinstance(made, dict), made
    status, _ = call(engine.daemon_socket, "POST", f"/containers/{made['Id']}/start")
    assert status == 204
    return str(made["Id"])


def exec_container(sock: str, target: str) -> tuple[int, str | None]:
    """Create an exec of ``id`` in container ``target`` (empty User); the container it landed in."""
    status, made = call(sock, "POST", f"/v1.41/containers/{target}/exec",
                        {"Cmd": ["id", "-u"], "AttachStdout": True})
    if status != 201 or not isinstance(made, dict):
        return status, None
    _, info = call(sock, "GET", f"/exec/{made['Id']}/json")
    return status, str(info["ContainerID"]) if isinstance(info, dict) else None


@pytest.mark.allow_refusals
def test_rename_never_wins_an_exec_under_restricted(
    engine: Engine,
    images: tuple[str, str, str],
    policy_gates: dict[tuple[str, str], PolicyGate],
) -> None:
    """While a name moves between a non-root and a root container, execs created on
    that name directly land in both (the race is live at the daemon); through
    restricted, every exec the daemon created is in the non-root container."""
    _, _, nonroot_image = images
    name = unique("xrace")
    user = sleeper(engine, nonroot_image, name)
    root = sleeper(engine, IMAGE, name + "-r")
    with Renamer(engine, name, (user, root)):
        seen = race_directly(lambda: exec_container(engine.daemon_socket, name)[1], {user, root},
                             ROUNDS * 2)
    assert root in seen, "the rename never won directly: the test shows nothing"

    pg = policy_gates[(engine.name, "restricted")]
    created: list[str] = []
    statuses: list[int] = []
    with Renamer(engine, name, (user, root)) as renamer:
        deadline = time.monotonic() + SECONDS
        for _ in range(ROUNDS):
            status, made = call(pg.socket, "POST", f"/v1.41/containers/{name}/exec",
                                {"Cmd": ["id", "-u"], "AttachStdout": True})
            statuses.append(status)
            if status == 201 and isinstance(made, dict):
                created.append(str(made["Id"]))
            if time.monotonic() > deadline:
                break
    assert renamer.renames > 0 and created, statuses
    for ident in created:
        _, info = call(engine.daemon_socket, "GET", f"/exec/{ident}/json")
        assert isinstance(info, dict)
        assert info["ContainerID"] == user, f"exec {ident[:12]} landed in the root container"


def join_body(name: str) -> dict[str, object]:
    return {"Image": IMAGE, "Cmd": ["true"],
            "HostConfig": {"NetworkMode": "none", "PidMode": f"container:{name}"}}


def joined(engine: Engine, ident: str) -> str:
    """The container id a created container's PidMode names (the daemon stores the id)."""
    _, info = call(engine.daemon_socket, "GET", f"/containers/{ident}/json")
    assert isinstance(info, dict)
    mode = str(info["HostConfig"]["PidMode"])
    assert mode.startswith("container:"), mode
    return mode.split(":", 1)[1]


@pytest.mark.allow_refusals
def test_rename_never_wins_a_join_under_baseline(
    engine: Engine, policy_gates: dict[tuple[str, str], PolicyGate]
) -> None:
    """While a name moves between an ordinary container and one in the host's PID
    namespace, ``PidMode: container:NAME`` creates directly join both (the race is
    live at the daemon); through baseline, every container the daemon created
    joins the ordinary one: the name is judged and pinned to the id that was
    checked, and creates that saw the host-PID container were refused."""
    name = unique("jrace")
    ordinary = sleeper(engine, IMAGE, name)
    hostpid = sleeper(engine, IMAGE, name + "-h", PidMode="host")

    def join_directly() -> str | None:
        status, made = call(engine.daemon_socket, "POST", "/v1.41/containers/create",
                            join_body(name))
        return joined(engine, str(made["Id"])) if status == 201 and isinstance(made, dict) else None

    with Renamer(engine, name, (ordinary, hostpid)):
        seen = race_directly(join_directly, {ordinary, hostpid}, ROUNDS * 2)
    assert hostpid in seen, "the rename never won directly: the test shows nothing"

    pg = policy_gates[(engine.name, "baseline")]
    created: list[str] = []
    statuses: list[int] = []
    with Renamer(engine, name, (ordinary, hostpid)) as renamer:
        deadline = time.monotonic() + SECONDS
        # ROUNDS creates, and on until both outcomes were seen (the renames can stall).
        while time.monotonic() < deadline and (
            len(statuses) < ROUNDS or not {201, 403} <= set(statuses)
        ):
            status, made = call(pg.socket, "POST", "/v1.41/containers/create", join_body(name))
            assert status in (201, 403, 404), made
            statuses.append(status)
            if status == 201 and isinstance(made, dict):
                created.append(str(made["Id"]))
    assert renamer.renames > 0 and created, statuses
    assert 403 in statuses, "no create saw the host-PID container: the test shows nothing"
    for ident in created:
        assert joined(engine, ident) == ordinary, f"{ident[:12]} joined the host-PID container"

"""A tenant cannot label what it makes as another tenant's, or as nobody's, by the back doors.

Two tenants on one daemon (tests/support/tenantgate.py), both engines, unix
principals.  Ownership is the ``io.dockgate.owner`` label, so a request that
lets a tenant choose that label on an object it creates hands the object to
another tenant (it shows up in B's lists, B's builds and runs take it as B's,
and A's container can keep it mounted to read what B puts there) or to nobody
(an unowned image is a shared image, which no tenant may remove).  Each attack
is first sent to the bare daemon, whose state is the oracle (the labels of the
image or volume it made); through dockgate it is refused with a Docker-shaped
answer and the daemon makes nothing.

* ``docker commit -c``: the daemon joins the changes with newlines and parses
  them as one Dockerfile (moby ``BuildFromConfig``), so a LABEL can hide after a
  line break inside one change or be split over two (``LA\\`` + ``BEL ...``).
* ``docker import -c``: dockgate appends ``LABEL io.dockgate.owner=<tenant>``
  to the changes; a client change ending in ``\\`` swallows it (``ENV x=\\``), and
  the image is nobody's.
* ``--mount type=volume,volume-label=io.dockgate.owner=<B>``: the daemon
  creates the anonymous volume with the mount's labels.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from support import engines as eng
from support.engines import IMAGE, Engine
from support.tenantgate import Caller, TenantGate, tenant_gates

pytestmark = [pytest.mark.engine, pytest.mark.allow_refusals]
_ = tenant_gates

NONE = ("--network", "none")


@dataclass
class Tenants:
    """Tenant A (the attacker) and B on one engine; ``a_src``: a stopped container of A's
    (for commits)."""

    engine: Engine
    a_src: str
    a: Caller
    b: Caller


@pytest.fixture(scope="module", params=eng.ENGINE_NAMES)
def two(request: pytest.FixtureRequest, engine_set: dict[str, Engine],
        tenant_gates: dict[str, TenantGate]) -> Iterator[Tenants]:
    name = request.param
    if name not in engine_set:
        pytest.skip(f"engine {name} not selected (DOCKGATE_TEST_ENGINES)")
    engine, tg = engine_set[name], tenant_gates[name]
    before = engine.snapshot()
    a, b = tg.caller("alice-unix"), tg.caller("bob-unix")
    try:
        src = eng.unique("a-src")
        a.docker("run", *NONE, "--name", src, IMAGE, "true")
        yield Tenants(engine, src, a, b)
    finally:
        failures = engine.remove_new(before)
        assert not failures, failures


def _labels(engine: Engine, kind: str, name: str) -> dict[str, str] | None:
    """The labels of the daemon's image or volume ``name`` (None if there is none)."""
    out = engine.docker_direct(kind, "inspect", name, check=False)
    if out.returncode != 0:
        return None
    doc: dict[str, Any] = json.loads(out.stdout)[0]
    labels = (doc.get("Config") or {}).get("Labels") if kind == "image" else doc.get("Labels")
    return labels or {}


def _refused(out: Any, text: str) -> None:
    """A refusal as the docker CLI shows a daemon error, with dockgate's reason."""
    assert out.returncode != 0, out.stdout
    assert f"Error response from daemon: dockgate: {text}" in out.stderr, out.stderr


def _change_args(changes: tuple[str, ...]) -> list[str]:
    return [arg for change in changes for arg in ("-c", change)]


SPLIT_LABELS = {
    "line-break": ('CMD ["sh"]\nLABEL io.dockgate.owner=teamb',),
    "continued": ("LA\\", "BEL io.dockgate.owner=teamb"),
}
"""Commit changes that the daemon reads as ``LABEL io.dockgate.owner=teamb``."""


@pytest.mark.parametrize("kind", sorted(SPLIT_LABELS))
def test_commit_changes_cannot_hide_an_owner_label(two: Tenants, kind: str) -> None:
    """A LABEL hidden in commit changes (after a line break, or split over two changes by a
    continuation): the bare daemon labels A's committed image as B's; through dockgate the
    commit is refused and no image is made."""
    changes = _change_args(SPLIT_LABELS[kind])
    direct = eng.unique("forged") + ":direct"
    two.engine.docker_direct("commit", *changes, two.a_src, direct)
    assert _labels(two.engine, "image", direct) == {"io.dockgate.owner": "teamb"}
    gated = eng.unique("forged") + ":gate"
    _refused(two.a.docker("commit", *changes, two.a_src, gated, check=False),
             "changes: a change must be one line")
    assert _labels(two.engine, "image", gated) is None
    assert gated.split(":")[0] not in two.b.docker("images").stdout


def _layer() -> bytes:
    """A one-file tar to import."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    return data.getvalue()


def test_import_change_cannot_swallow_the_owner_label(two: Tenants) -> None:
    """``docker import -c 'ENV x=\\'``: followed by the owner LABEL dockgate appends, the bare
    daemon reads the label as the ENV's value and makes an image nobody owns (a shared
    image); through dockgate the import is refused and no image is made."""
    changes = ["-c", "ENV x=\\"]
    direct = eng.unique("unowned") + ":direct"
    two.engine.docker_direct("import", *changes, "-c", "LABEL io.dockgate.owner=teama", "-",
                             direct, input=_layer())
    assert _labels(two.engine, "image", direct) == {}
    gated = eng.unique("unowned") + ":gate"
    _refused(two.a.docker("import", *changes, "-", gated, input=_layer(), check=False),
             "changes: a change must be one line")
    assert _labels(two.engine, "image", gated) is None


def _owner(engine: Engine, volume: str) -> str | None:
    return (_labels(engine, "volume", volume) or {}).get("io.dockgate.owner")


def _volumes(engine: Engine) -> set[str]:
    return set(engine.docker_direct("volume", "ls", "-q").stdout.split())


def test_volume_mount_cannot_label_its_volume_as_another_tenants(two: Tenants) -> None:
    """``--mount type=volume,volume-label=io.dockgate.owner=teamb``: the bare daemon creates
    the anonymous volume as B's (B lists it, A's container holds it); through dockgate
    the create is refused and no volume or container is made."""
    mount = "type=volume,dst=/x,volume-label=io.dockgate.owner=teamb"
    before = _volumes(two.engine)
    two.engine.docker_direct("create", *NONE, "--mount", mount, IMAGE, "true")
    made = _volumes(two.engine) - before
    assert [_owner(two.engine, v) for v in made] == ["teamb"]
    assert made <= set(two.b.docker("volume", "ls", "-q").stdout.split())
    before = _volumes(two.engine)
    name = eng.unique("a-mnt")
    _refused(two.a.docker("create", *NONE, "--name", name, "--mount", mount, IMAGE, "true",
                          check=False),
             "HostConfig.Mounts[0].VolumeOptions.Labels: label 'io.dockgate.owner' is reserved")
    assert _volumes(two.engine) == before
    assert two.engine.docker_direct("inspect", name, check=False).returncode != 0
    own = two.a.docker("create", *NONE, "--mount", "type=volume,dst=/x,volume-label=app=web",
                       IMAGE, "true").stdout.strip()
    made = _volumes(two.engine) - before
    assert own and [(_labels(two.engine, "volume", v) or {}).get("app") for v in made] == ["web"]

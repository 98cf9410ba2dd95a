"""binding: decisions bind to the objects they read (a pure core and a scripted daemon)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from dockgate.model import CanonicalRequest, Operation
from dockgate.proxy.binding import Pending, bind_exec, checked_image, created, verify_created

FULL = "a" * 64
IMG = "sha256:" + "b" * 64
OTHER = "sha256:" + "c" * 64


def exec_request(ref: str) -> CanonicalRequest:
    ep = Operation("exec.create", "POST", "/containers/{id}/exec", "json")
    return CanonicalRequest("POST", ep, f"/containers/{ref}/exec", "1.41", {"id": ref},
                            body={"Cmd": ["id"]})


def test_exec_is_pinned_to_the_container_that_was_read() -> None:
    """The forwarded exec names the full id the decision read, not the name."""
    pinned = bind_exec(exec_request("web"), {"Id": FULL, "Config": {"User": "1000"}})
    assert pinned.params["id"] == FULL
    assert pinned.path == f"/containers/{FULL}/exec"
    assert pinned.target == f"/v1.41/containers/{FULL}/exec"


def test_exec_without_an_id_is_left_for_the_decision() -> None:
    """No id in the answer (a 404): unchanged; the user is then unknown and refused."""
    req = exec_request("web")
    assert bind_exec(req, {"message": "No such container"}) is req


def test_checked_image_is_the_inspected_id() -> None:
    """The checked image is the Id from the daemon's inspect answer, or None for an error answer."""
    assert checked_image({"Id": IMG}) == IMG
    assert checked_image({"message": "no such image"}) is None


class Daemon:
    """A scripted fetch: the container's image, and a record of what was asked."""

    def __init__(self, image: str | None, status: int = 200) -> None:
        self.image, self.status = image, status
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, method: str, target: str, body: Any) -> tuple[int, Any]:
        self.calls.append((method, target))
        if method == "GET":
            return self.status, {"Id": FULL, "Image": self.image}
        return 204, None


def run(daemon: Daemon, answer: bytes = json.dumps({"Id": FULL}).encode()) -> str | None:
    return asyncio.run(verify_created(created(answer, ())[0], "app:1", IMG, "1.41", daemon))


def test_created_from_the_checked_image_passes() -> None:
    """A container whose Image is the checked id is kept; nothing is removed."""
    daemon = Daemon(IMG)
    assert run(daemon) is None
    assert daemon.calls == [("GET", f"/v1.41/containers/{FULL}/json")]


def test_created_from_another_image_is_removed_and_refused() -> None:
    """The tag moved in between: the container is removed and the create refused."""
    daemon = Daemon(OTHER)
    why = run(daemon)
    assert why is not None and why.startswith("image app:1 changed while the request was checked")
    assert ("DELETE", f"/v1.41/containers/{FULL}?force=1&v=1") in daemon.calls


def test_unverifiable_is_a_mismatch() -> None:
    """An inspection the daemon does not answer counts as a mismatch (fail closed)."""
    daemon = Daemon(IMG, status=500)
    assert run(daemon) is not None
    assert daemon.calls[-1][0] == "DELETE"
    assert run(Daemon(IMG), b"not json") is not None


def test_starts_wait_for_pending_verifications_of_what_they_may_name() -> None:
    """A start waits while a pending verification holds the container it may name: an id
    prefix, the create's name (with or without ``/``), or, while a container whose name
    the daemon chose is pending, any name that is not hexadecimal; it goes on when that
    verification (not another) ends.  Starts naming something else go on at once."""
    p = Pending()
    fired: list[str] = []
    p.wait("web").addCallback(lambda _: fired.append("idle"))
    p.begin(FULL, "web")
    for ref in (FULL[:12], FULL[:1], "web", "/web"):
        assert p.holds(ref), ref
    for ref in ("redis", "0" * 12 if not FULL.startswith("0") else "f" * 12, ""):
        assert not p.holds(ref), ref
    p.wait("/web").addCallback(lambda _: fired.append("web"))
    p.wait("redis").addCallback(lambda _: fired.append("redis"))
    other = "f" * 64 if not FULL.startswith("f") else "e" * 64
    p.begin(other, "")
    assert p.holds("quirky_turing") and p.holds("redis") and not p.holds("abc123")
    p.wait("quirky_turing").addCallback(lambda _: fired.append("generated"))
    p.end(FULL, "web")
    assert fired == ["idle", "redis"]  # "web" might still be the unnamed one's name
    p.end(other, "")
    assert fired == ["idle", "redis", "web", "generated"] and p.count == 0


def test_the_created_container_is_named_by_its_answer_and_query() -> None:
    """``created`` reads the id from the create's answer and the name from its query
    ("" for either when absent or unreadable)."""
    assert created(json.dumps({"Id": FULL}).encode(), (("name", "web"),)) == (FULL, "web")
    assert created(b"not json", ()) == ("", "")


def test_a_failed_question_still_removes_the_container() -> None:
    """If asking the daemon fails outright, the unverified container is removed anyway."""

    class Failing(Daemon):
        async def __call__(self, method: str, target: str, body: Any) -> tuple[int, Any]:
            self.calls.append((method, target))
            if method == "GET":
                raise ConnectionError("daemon gone")
            return 204, None

    daemon = Failing(IMG)
    with pytest.raises(ConnectionError):
        run(daemon)
    assert daemon.calls[-1] == ("DELETE", f"/v1.41/containers/{FULL}?force=1&v=1")

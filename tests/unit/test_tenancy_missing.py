"""A foreign object answered as a missing one: stand-ins, the replayed answer, the table
for body references, and the scoping walk with a scripted daemon."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from dockgate.admission.admit import ApiContext, admit_body, admit_head
from dockgate.buildctx import DockerfileFacts
from dockgate.buildctx.dockerfile import parse
from dockgate.errors import DockgateError, Forbidden, NotFound
from dockgate.model import CanonicalRequest
from dockgate.policy.joincheck import check_build_images, check_tenant_build
from dockgate.tenancy import OWNER_LABEL, ObjectRef, Tenant, TenantMap
from dockgate.tenancy.holds import Claim, NameHolds, name_key
from dockgate.tenancy.missing import (
    STAND_IN_PREFIX,
    MissingAnswer,
    NamesBack,
    StandIn,
    body_answer,
    forwarded,
    image_words,
    pull_stand_in,
    replayable,
    stand_in,
)
from dockgate.tenancy.scoping import scope_request

CTX = ApiContext()
A = Tenant("team-a")
ADMIN = Tenant("ops", admin=True)
HEXT = "0123456789abcdef0123456789abcdef"


def req(method: str, target: str, body: Any = None) -> CanonicalRequest:
    r = admit_head(method, target.encode(), [(b"content-type", b"application/json")], CTX)
    return admit_body(r, json.dumps(body).encode(), CTX) if body is not None else r


# -- stand-ins ------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "ref", "value", "original"), [
    ("container", "web", STAND_IN_PREFIX + HEXT, "web"),
    ("volume", "data", STAND_IN_PREFIX + HEXT, "data"),
    ("image", "web", STAND_IN_PREFIX + HEXT, "web"),
    ("image", "web:v1", f"{STAND_IN_PREFIX}{HEXT}:v1", "web"),
    ("image", "docker.io/library/web:v1", f"docker.io/library/{STAND_IN_PREFIX}{HEXT}:v1",
     "web"),
    ("image", "localhost:5000/a/web", f"localhost:5000/a/{STAND_IN_PREFIX}{HEXT}", "web"),
    ("image", "web@sha256:" + "a" * 64, f"{STAND_IN_PREFIX}{HEXT}@sha256:" + "a" * 64, "web"),
    ("image", "sha256:" + "b" * 64, "sha256:" + (HEXT * 2), "b" * 64),
    ("image", "bbbbbbbbbbbb", HEXT[:12], "bbbbbbbbbbbb"),
])
def test_stand_in_keeps_the_shape_the_daemon_parses(kind: str, ref: str, value: str,
                                                    original: str) -> None:
    """Only the part the daemon echoes changes: an image keeps registry, path, tag, digest."""
    stand = stand_in(ObjectRef(kind, ref, "path", "name"), HEXT)  # type: ignore[arg-type]
    assert (stand.value, stand.original) == (value, original)
    assert stand.shown in stand.value
    if kind != "image":
        assert not re.fullmatch(r"[0-9a-f]+", stand.value), "never an id prefix"


def test_replayed_answer_puts_the_name_back_byte_for_byte() -> None:
    """A daemon answer replayed for a stand-in name gets the client's name back exactly (JSON-
    escaped in JSON, raw in a raw stream), keeps status and content type, and never mentions
    dockgate."""
    ref = ObjectRef("container", 'we<b"', "path", "id")
    stand = stand_in(ref, HEXT)
    raw = b'{"message":"No such container: ' + stand.value.encode() + b'"}\n'
    answer = MissingAnswer.from_replay(404, b"application/json", raw, ref, stands=[stand],
                                       reason="not-owner")
    assert answer.status == 404 and answer.reason == "not-owner"
    assert answer.body() == b'{"message":"No such container: we\\u003cb\\""}\n'
    assert b"dockgate" not in answer.body()
    text = MissingAnswer.from_replay(404, b"application/vnd.docker.raw-stream",
                                     f"No such container: {stand.value}\r\n".encode(), ref,
                                     stands=[stand], reason="not-owner")
    assert text.body() == b'No such container: we<b"\r\n'
    assert text.content_type == b"application/vnd.docker.raw-stream"


@pytest.mark.parametrize(("field", "kind", "status", "message"), [
    (("HostConfig", "VolumesFrom", 0), "container", 400, "No such container: X"),
    (("HostConfig", "PidMode"), "container", 400, "No such container: X"),
    (("HostConfig", "IpcMode"), "container", 400, "No such container: X"),
    (("HostConfig", "Links", 0), "container", 400,
     "could not get container for X: No such container: X"),
    (("HostConfig", "NetworkMode"), "container", 404, "No such container: X"),
    (("HostConfig", "NetworkMode"), "network", 404, "network X not found"),
    (("Image",), "image", 404, "No such image: X:latest"),
])
def test_body_answers_read_from_the_daemons(field: tuple[str | int, ...], kind: str,
                                            status: int, message: str) -> None:
    """For a body reference to another tenant's object, dockgate answers with the status and message
    the daemon gives for a missing object of that kind and field."""
    ref = ObjectRef(kind, "X", "body", "k", "write", field)  # type: ignore[arg-type]
    answer = body_answer(ref, "X:latest" if kind == "image" else None)
    assert answer.status == status
    assert answer.body() == json.dumps({"message": message}, separators=(",", ":")).encode() \
        + b"\n"


def test_image_words_from_either_engine() -> None:
    """The image name is recovered from either engine generation's missing-image message, and an
    unrelated message yields nothing."""
    stand = stand_in(ObjectRef("image", "web", "body", "Image"), HEXT)
    old = json.dumps({"message": f"no such image: {stand.value}: No such image: "
                                 f"{stand.value}:latest"}).encode()
    new = json.dumps({"message": f"No such image: {stand.value}:latest"}).encode()
    assert image_words(old, stand) == image_words(new, stand) == "web:latest"
    assert image_words(b'{"message":"boom"}', stand) is None


def test_replayable() -> None:
    """Only requests whose missing-object answer the daemon can give without side effects are
    replayed with a stand-in (not network connect by path, image commit's repo, or create bodies).
    """
    path = ObjectRef("container", "x", "path", "id")
    assert replayable("container.stop", path)
    assert not replayable("network.connect", ObjectRef("network", "n", "path", "id"))
    assert replayable("network.connect", ObjectRef("container", "c", "body", "Container"))
    assert replayable("image.commit", ObjectRef("container", "c", "query", "container"))
    assert not replayable("image.commit", ObjectRef("image", "r", "query", "repo"))
    assert replayable("network.create", ObjectRef("network", "n", "body", "ConfigFrom.Network"))
    assert not replayable("container.create",
                          ObjectRef("container", "c", "body", "HostConfig.VolumesFrom[0]"))


# -- the walk, with a scripted daemon ---------------------------------------------------


class Daemon:
    """Inspections by path; the replay answers ``No such container: <name in the path>``."""

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects
        self.fetched: list[str] = []
        self.replayed: list[tuple[str, str, bytes | None]] = []

    async def fetch(self, method: str, target: str, body: Any) -> tuple[int, Any]:
        self.fetched.append(target)
        path = unquote(target.split("?", 1)[0])
        return (200, self.objects[path]) if path in self.objects else (404, None)

    async def replay(self, method: str, target: str, body: bytes | None,
                     headers: tuple[tuple[str, str], ...]) -> tuple[int, bytes, bytes]:
        self.replayed.append((method, target, body))
        name = unquote(target).split("/")[3]
        return 404, b"application/json", json.dumps(
            {"message": f"No such container: {name}"}, separators=(",", ":")).encode() + b"\n"


def container(owner: str | None, ident: str = "c" * 64) -> dict[str, Any]:
    labels = {OWNER_LABEL: owner} if owner else {}
    return {"Id": ident, "Config": {"Labels": labels}}


def run(request: CanonicalRequest, tenant: Tenant, daemon: Daemon) -> Any:
    return asyncio.run(scope_request(request, tenant, daemon.fetch, daemon.replay))


@pytest.mark.parametrize("owner", ["team-b", None, "missing"])
def test_foreign_unowned_and_missing_get_the_same_answer(owner: str) -> None:
    """Another tenant's, nobody's and a missing container: the daemon's 404 for a missing
    one, with the caller's name, from a replay that names only the stand-in."""
    objects = {} if owner == "missing" else {"/v1.51/containers/web/json": container(owner)}
    daemon = Daemon(objects)
    with pytest.raises(MissingAnswer) as caught:
        run(req("POST", "/v1.51/containers/web/stop"), A, daemon)
    assert caught.value.status == 404
    assert caught.value.body() == b'{"message":"No such container: web"}\n'
    [(method, target, _)] = daemon.replayed
    assert method == "POST" and f"/containers/{STAND_IN_PREFIX}" in target
    assert "web" not in target


def test_own_object_is_pinned_and_never_replayed() -> None:
    """A reference to the tenant's own object is pinned to its full id and never replayed."""
    daemon = Daemon({"/v1.51/containers/web/json": container("team-a")})
    request, target = run(req("POST", "/v1.51/containers/web/stop"), A, daemon)
    assert request.path == f"/containers/{'c' * 64}/stop" and target is not None
    assert daemon.replayed == []


def test_no_side_request_for_a_request_that_names_nothing() -> None:
    """Requests that name no existing object cause no side request to the daemon."""
    daemon = Daemon({})
    stands: list[StandIn] = []
    for request in (req("GET", "/v1.51/containers/json"), req("GET", "/v1.51/version"),
                    req("GET", "/v1.51/images/json"), req("POST", "/v1.51/volumes/create", {}),
                    req("POST", "/v1.51/networks/create", {"Name": "n"}),
                    req("POST", "/v1.51/images/create?fromSrc=-"),
                    req("POST", "/v1.51/build?networkmode=none")):
        asyncio.run(scope_request(request, A, daemon.fetch, daemon.replay, stands))
    assert daemon.fetched == [] and daemon.replayed == [] and stands == []


def test_body_reference_answered_from_the_table_without_replay() -> None:
    """Another tenant's container named in a create body is answered from the table of daemon
    messages (400 No such container), without replaying anything."""
    daemon = Daemon({"/v1.51/containers/web/json": container("team-b"),
                     "/v1.51/images/dgtest:latest/json": {"Id": "sha256:1",
                                                          "Config": {"Labels": None}}})
    body = {"Image": "dgtest:latest", "HostConfig": {"VolumesFrom": ["web:ro"]}}
    with pytest.raises(MissingAnswer) as caught:
        run(req("POST", "/v1.51/containers/create", body), A, daemon)
    assert (caught.value.status, caught.value.body()) == (
        400, b'{"message":"No such container: web"}\n')
    assert daemon.replayed == []


def test_admin_only_inspection_is_answered_as_missing() -> None:
    """``docker inspect NAME`` probes plugins: a tenant gets the daemon's answer for a
    missing plugin even where one exists; an admin gets the plugin."""
    daemon = Daemon({"/v1.51/plugins/web/json": {"Id": "p" * 64}})
    with pytest.raises(MissingAnswer):
        run(req("GET", "/v1.51/plugins/web/json"), A, daemon)
    assert STAND_IN_PREFIX in daemon.replayed[0][1]
    with pytest.raises(Forbidden):
        run(req("GET", "/v1.51/plugins"), A, daemon)
    run(req("GET", "/v1.51/plugins/web/json"), ADMIN, daemon)


def test_volume_name_held_by_another_tenant_is_not_handed_out() -> None:
    """Creating a volume whose name another tenant holds is a 409 that does not reveal the owner;
    the owner itself may create it again."""
    daemon = Daemon({"/v1.51/volumes/data": {"Name": "data", "Labels": {OWNER_LABEL: "team-b"}}})
    with pytest.raises(DockgateError) as caught:
        run(req("POST", "/v1.51/volumes/create", {"Name": "data"}), A, daemon)
    assert caught.value.status == 409 and "team-b" not in caught.value.message
    daemon.objects["/v1.51/volumes/data"]["Labels"] = {OWNER_LABEL: "team-a"}
    run(req("POST", "/v1.51/volumes/create", {"Name": "data"}), A, daemon)


def test_push_of_every_tag_is_for_admins() -> None:
    """Pushing a repository without a tag (every tag) is refused for a non-admin tenant."""
    with pytest.raises(Forbidden):
        run(req("POST", "/v1.51/images/web/push"), A, Daemon({}))


def test_shared_images_patterns(tmp_path: Path) -> None:
    """Without ``shared_images`` every unowned image is shared; with it, only those with a
    matching name, and a tenant gets the answer for a missing image for the others."""
    path = tmp_path / "tenants.yaml"
    path.write_text('shared_images: ["dgtest:*"]\ntenants:\n  - name: team-a\n')
    tenants = TenantMap.load(str(path))
    tenant = tenants.tenants[0]
    assert tenant.shared_images == ("dgtest:*",)
    images = {"/v1.51/images/dgtest:latest/json": {"Id": "sha256:1", "RepoTags":
                                                   ["dgtest:latest"], "Config": {}},
              "/v1.51/images/other:latest/json": {"Id": "sha256:2", "RepoTags":
                                                  ["other:latest"], "Config": {}}}
    daemon = Daemon(images)
    run(req("GET", "/v1.51/images/dgtest:latest/json"), tenant, daemon)
    run(req("GET", "/v1.51/images/other:latest/json"), A, daemon)  # no patterns: shared
    with pytest.raises(MissingAnswer):
        run(req("GET", "/v1.51/images/other:latest/json"), tenant, daemon)


@pytest.mark.parametrize(("version", "asked"), [("1.41", True), ("1.43", True), ("1.44", None),
                                                ("1.51", None)])
def test_network_create_asks_for_the_daemons_name_in_use_answer(version: str,
                                                                asked: bool | None) -> None:
    """Before API 1.44 the daemon makes a second network of a taken name unless
    ``CheckDuplicate`` is set; dockgate sets it for tenants so the daemon answers 409."""
    request, _ = run(req("POST", f"/v{version}/networks/create", {"Name": "n"}), A, Daemon({}))
    assert request.body.get("CheckDuplicate") is asked


def test_foreign_cache_source_is_replaced_by_a_stand_in() -> None:
    """The daemon ignores a build cache source it does not have; another tenant's image as
    a cache source is replaced by a stand-in, so it is ignored the same way."""
    image = {"Id": "sha256:1", "RepoTags": ["b:1"], "Config": {"Labels": {OWNER_LABEL: "b"}}}
    daemon = Daemon({"/v1.51/images/b:1/json": image})
    request, _ = run(req("POST", '/v1.51/build?cachefrom=["b:1","c:2"]'), A, daemon)
    names = json.loads(dict(request.query)["cachefrom"])
    assert names[0].startswith(STAND_IN_PREFIX) and names[0].endswith(":1")
    assert names[1] == "c:2"
    assert daemon.replayed == []


def test_missing_volume_is_created_only_once_every_reference_passed() -> None:
    """``-v new:/data --network B's``: refused, and no volume was created for it."""
    daemon = Daemon({"/v1.51/networks/theirs": {"Id": "n" * 64, "Labels": {OWNER_LABEL: "b"}},
                     "/v1.51/images/dgtest:latest/json": {"Id": "sha256:1", "Config": {}}})
    created: list[str] = []

    async def fetch(method: str, target: str, body: Any) -> tuple[int, Any]:
        if method == "POST":
            created.append(body["Name"])
            return 201, {"Name": body["Name"], "Labels": body["Labels"]}
        return await daemon.fetch(method, target, body)

    body = {"Image": "dgtest:latest", "HostConfig": {"Binds": ["new:/data"]},
            "NetworkingConfig": {"EndpointsConfig": {"theirs": {}}}}
    with pytest.raises(MissingAnswer):
        asyncio.run(scope_request(req("POST", "/v1.51/containers/create", body), A, fetch,
                                  daemon.replay))
    assert created == []
    body["NetworkingConfig"] = {}
    asyncio.run(scope_request(req("POST", "/v1.51/containers/create", body), A, fetch,
                              daemon.replay))
    assert created == ["new"]


def test_shared_image_is_not_hidden_from_a_tenant_that_may_run_it() -> None:
    """A tenant may run a shared image, so removing or overwriting its name is refused in
    plain words (not as a missing image)."""
    daemon = Daemon({"/v1.51/images/busybox/json": {"Id": "sha256:1", "RepoTags":
                                                    ["busybox:latest"], "Config": {}}})
    run(req("GET", "/v1.51/images/busybox/json"), A, daemon)
    with pytest.raises(Forbidden, match="shared image"):
        run(req("DELETE", "/v1.51/images/busybox"), A, daemon)
    assert daemon.replayed == []


def test_every_reference_is_checked_before_answering() -> None:
    """``network disconnect THEIRS OTHER``: the replay names a stand-in for both the network
    and the container, so the answer cannot tell whether the other container exists."""
    daemon = Daemon({"/v1.51/networks/theirs": {"Id": "n" * 64, "Labels": {OWNER_LABEL: "b"}},
                     "/v1.51/containers/other/json": container("team-c")})
    with pytest.raises(MissingAnswer) as caught:
        run(req("POST", "/v1.51/networks/theirs/disconnect", {"Container": "other"}), A, daemon)
    [(_, target, body)] = daemon.replayed
    assert "theirs" not in target and body is not None and b"other" not in body
    assert caught.value.reason == "not-owner"
    daemon.objects["/v1.51/containers/other/json"] = container("team-a")
    daemon.replayed.clear()
    with pytest.raises(MissingAnswer):
        run(req("POST", "/v1.51/networks/theirs/disconnect", {"Container": "other"}), A, daemon)
    [(_, _, body)] = daemon.replayed
    assert body is not None and json.loads(body)["Container"] == "other", "own: as named"


# -- names a request writes ----------------------------------------------------------------

THEIR_IMAGE = {"Id": "sha256:1", "RepoTags": ["b-img:latest"],
               "Config": {"Labels": {OWNER_LABEL: "team-b"}}}


@pytest.mark.parametrize("target", [
    "/v1.51/images/dgtest/tag?repo=b-img&tag=latest",
    "/v1.51/commit?container=mine&repo=b-img&tag=latest",
    "/v1.51/build?t=b-img:latest",
    "/v1.51/images/create?fromSrc=-&repo=b-img&tag=latest",
])
def test_image_name_another_tenant_holds_is_in_use(target: str) -> None:
    """Tag, commit, build and import would move the name off the other tenant's image: a
    409 that says the name is taken, not whose it is (the same for an unowned image that
    is not shared with the tenant)."""
    narrow = Tenant("team-a", shared_images=("dgtest:*",))
    unowned = {**THEIR_IMAGE, "Config": {"Labels": {}}}
    for image, tenant in ((THEIR_IMAGE, A), (unowned, narrow)):
        daemon = Daemon({"/v1.51/images/b-img:latest/json": image,
                         "/v1.51/images/dgtest/json": {"Id": "sha256:2", "Config": {},
                                                       "RepoTags": ["dgtest:latest"]},
                         "/v1.51/containers/mine/json": container("team-a")})
        with pytest.raises(DockgateError) as caught:
            run(req("POST", target), tenant, daemon)
        assert (caught.value.status, caught.value.reason) == (409, "name-in-use")
        assert caught.value.message == "image name 'b-img:latest' is already in use"
        assert daemon.replayed == []


@pytest.mark.parametrize(("query", "asked", "original"), [
    ("fromImage=docker.io%2Flibrary%2Fb-img&tag=latest",
     {"fromImage": "docker.io/library/b-img", "tag": STAND_IN_PREFIX + HEXT}, "latest"),
    ("fromImage=b-img%3Alatest", {"fromImage": f"b-img:{STAND_IN_PREFIX}{HEXT}"}, "latest"),
    ("fromImage=localhost%3A5000%2Fb-img", {"fromImage": "localhost:5000/b-img",
                                            "tag": STAND_IN_PREFIX + HEXT}, "latest"),
    ("fromImage=b-img%40sha256%3A" + "a" * 64,
     {"fromImage": "b-img@sha256:" + (HEXT * 2)}, "a" * 64),
    ("fromImage=b-img&tag=sha256%3A" + "a" * 64,
     {"fromImage": "b-img", "tag": "sha256:" + (HEXT * 2)}, "a" * 64),
])
def test_pull_stand_in_keeps_the_repository(query: str, asked: dict[str, str],
                                            original: str) -> None:
    """A pull asks the same registry about the same repository, for a tag (or digest) that
    names nothing; the daemon's answer says the stand-in, which reads as ``original``."""
    request, stand = pull_stand_in(req("POST", f"/v1.51/images/create?{query}"), HEXT)
    assert dict(request.query) == asked
    assert (stand.original, stand.shown in stand.value) == (original, True)


def test_pull_of_a_name_another_tenant_holds_is_forwarded_with_a_stand_in() -> None:
    """A pull of a name another tenant holds is decided as written, then forwarded with a stand-in
    tag; without a stand-in to read the name back, it is refused with 409."""
    daemon = Daemon({"/v1.51/images/docker.io/library/b-img:latest/json": THEIR_IMAGE})
    stands: list[StandIn] = []
    request, _ = asyncio.run(scope_request(
        req("POST", "/v1.51/images/create?fromImage=docker.io%2Flibrary%2Fb-img&tag=latest"),
        A, daemon.fetch, daemon.replay, stands))
    [stand] = stands
    assert dict(request.query)["tag"] == "latest", "decided as the caller wrote it"
    assert stand.original == "latest"
    assert dict(forwarded(request, stands).query)["tag"] == stand.value
    with pytest.raises(DockgateError) as caught:  # without a way to put the name back
        run(req("POST", "/v1.51/images/create?fromImage=b-img&tag=latest"), A,
            Daemon({"/v1.51/images/b-img:latest/json": THEIR_IMAGE}))
    assert caught.value.status == 409


def test_names_back_across_chunks() -> None:
    """Every stand-in reads as the caller's name, wherever the answer's chunks split it."""
    stand = StandIn(STAND_IN_PREFIX + HEXT, STAND_IN_PREFIX + HEXT, "latest")
    answer = (b'{"status":"Pulling from library/b-img","id":"' + stand.value.encode()
              + b'"}\r\n{"error":"manifest for b-img:' + stand.value.encode()
              + b' not found"}\r\n')
    want = answer.replace(stand.value.encode(), b"latest")
    for size in (1, 3, 7, len(stand.value), 64, len(answer)):
        back = NamesBack([stand])
        out = b"".join(back.feed(answer[i:i + size]) for i in range(0, len(answer), size))
        assert out + back.finish() == want, size


# -- a tenant's build ----------------------------------------------------------------------


@pytest.mark.parametrize("image", [THEIR_IMAGE, None])
def test_build_image_foreign_or_missing_same_refusal(image: dict[str, Any] | None) -> None:
    """A Dockerfile naming another tenant's image and one naming a missing image get the
    same refusal (the daemon would pull a missing one): only the reference is named."""
    objects = {"/v1.51/images/b-img/json": image} if image else {}
    facts = DockerfileFacts(images=[("line 2 COPY --from", "b-img")])
    with pytest.raises(NotFound) as caught:
        asyncio.run(check_build_images(facts, A, Daemon(objects).fetch, "1.51"))
    assert caught.value.message == (
        "Dockerfile line 2 COPY --from: no such image: b-img (a tenant's build may name only "
        "images on the daemon: pull it first)")
    assert caught.value.reason == ("not-owner" if image else "no-such-object")


def test_build_image_shared_and_own_pass() -> None:
    """A Dockerfile naming the tenant's own image and a shared (unlabelled) image passes; the
    shared one is refused once the tenant's shared_images patterns do not cover it."""
    own = {**THEIR_IMAGE, "Config": {"Labels": {OWNER_LABEL: "team-a"}}}
    shared = {"Id": "sha256:3", "RepoTags": ["dgtest:latest"], "Config": {}}
    facts = DockerfileFacts(images=[("line 1 FROM", "mine"), ("line 2 FROM", "dgtest")])
    daemon = Daemon({"/v1.51/images/mine/json": own, "/v1.51/images/dgtest/json": shared})
    asyncio.run(check_build_images(facts, A, daemon.fetch, "1.51"))
    with pytest.raises(NotFound):  # not among the tenant's shared images
        asyncio.run(check_build_images(facts, Tenant("team-a", shared_images=("busybox:*",)),
                                       daemon.fetch, "1.51"))


@pytest.mark.parametrize("owner", ["team-b", None, "missing"])
def test_build_networkmode_foreign_or_missing_same_refusal(owner: str) -> None:
    """A build's networkmode=container:NAME naming another tenant's, an unowned or a missing
    container gets the same refusal: "No such container: NAME"."""
    objects = {} if owner == "missing" else {"/v1.51/containers/web/json": container(owner)}
    with pytest.raises(NotFound) as caught:
        asyncio.run(check_tenant_build(req("POST", "/v1.51/build?networkmode=container:web"),
                                       A, Daemon(objects).fetch))
    assert caught.value.message == "No such container: web"


def test_build_base_triggers_name_images_checked_alike() -> None:
    """The ``ONBUILD`` triggers of a tenant's base image (its own, read from the daemon's
    inspection) run in the build: a ``COPY --from`` another tenant's image there gets the
    refusal a missing image gets, naming the trigger; one naming a shared image passes."""
    own = {"Id": "sha256:1", "Config": {"Labels": {OWNER_LABEL: "team-a"},
                                         "OnBuild": ["COPY --from=b-img /secret /secret"]}}
    shared = {"Id": "sha256:3", "RepoTags": ["dgtest:latest"], "Config": {}}
    facts = DockerfileFacts(images=[("line 1 FROM", "mine")], bases=[("line 1 FROM", "mine")])
    daemon = Daemon({"/v1.51/images/mine/json": own, "/v1.51/images/b-img/json": THEIR_IMAGE,
                     "/v1.51/images/dgtest/json": shared})
    with pytest.raises(NotFound) as caught:
        asyncio.run(check_build_images(facts, A, daemon.fetch, "1.51"))
    assert caught.value.message.startswith(
        "Dockerfile image mine ONBUILD[0] COPY --from: no such image: b-img (")
    own["Config"]["OnBuild"] = ["COPY --from=dgtest /etc/hostname /x"]
    asyncio.run(check_build_images(facts, A, daemon.fetch, "1.51"))


@pytest.mark.parametrize(("pull", "refused"), [("1", True), ("true", True), ("0", False),
                                               ("false", False), ("", False)])
def test_build_that_pulls_its_bases_is_refused(pull: str, refused: bool) -> None:
    """A tenant's classic build with ``pull`` (as the daemon reads the boolean) is refused:
    the triggers of a base pulled during the build cannot be read first; an admin's is
    not."""
    request = req("POST", f"/v1.51/build?pull={pull}")
    if refused:
        with pytest.raises(Forbidden, match="may not pull its base images"):
            asyncio.run(check_tenant_build(request, A, Daemon({}).fetch))
    else:
        asyncio.run(check_tenant_build(request, A, Daemon({}).fetch))
    asyncio.run(check_tenant_build(request, Tenant("ops", admin=True), Daemon({}).fetch))


# -- held image names (tenancy.holds) ------------------------------------------------


def test_names_are_keyed_as_the_daemon_resolves_them() -> None:
    """``busybox``, ``busybox:latest`` and ``docker.io/library/busybox`` are one name; a
    digest or an id names no rewritable name."""
    assert name_key("busybox") == name_key("docker.io/library/busybox:latest") \
        == "docker.io/library/busybox:latest"
    assert name_key("me/web:1") == "docker.io/me/web:1"
    assert name_key("busybox@sha256:" + "a" * 64) is None
    assert name_key("Bad Name") is None


def test_bases_and_writes_exclude_each_other_until_released() -> None:
    """A base hold refuses a write of the same name and the other way round; holds of one
    kind share a name; a release (once, however often called) lets the other kind in."""
    holds = NameHolds()
    base = holds.claim("base", ["a-base"])
    assert isinstance(base, Claim)
    assert isinstance(holds.claim("base", ["a-base:latest"]), Claim)
    assert holds.claim("write", ["x", "docker.io/library/a-base"]) == \
        "docker.io/library/a-base"
    assert holds.conflict("write", ["a-base:other"]) is None
    holds.release(base)
    holds.release(base)
    assert holds.conflict("write", ["a-base"]) == "a-base"  # the second base hold
    write = holds.claim("write", ["b"])
    assert isinstance(write, Claim) and holds.claim("base", ["b"]) == "b"
    holds.release(write)
    assert isinstance(holds.claim("base", ["b"]), Claim)


def _image(owner: str, *tags: str) -> dict[str, Any]:
    return {"Id": "sha256:" + "1" * 64, "RepoTags": list(tags),
            "Config": {"Labels": {OWNER_LABEL: owner}}}


@pytest.mark.parametrize("request_", [
    req("POST", "/v1.51/images/a-trig/tag?repo=a-base&tag=latest"),
    req("POST", "/v1.51/commit?container=c&repo=a-base"),
    req("POST", "/v1.51/build?t=docker.io/library/a-base:latest&networkmode=none"),
    req("DELETE", "/v1.51/images/a-base"),
    req("DELETE", "/v1.51/images/sha256:" + "1" * 64),
], ids=["tag", "commit", "build", "delete", "delete-by-id"])
def test_tenant_writes_of_a_held_base_name_are_refused(request_: Any) -> None:
    """While a build holds ``a-base``, a tenant's request that would write or remove that
    name (also removing by id an image that carries it) is refused with 409; once it is
    released the request passes and claims the name as a write, until released."""
    holds = NameHolds()
    image = _image("team-a", "a-base:latest")
    daemon = Daemon({f"/v1.51/images/{n}/json": image
                     for n in ("a-trig", "a-base", "sha256:" + "1" * 64)} |
                    {"/v1.51/containers/c/json": container("team-a")})
    base = holds.claim("base", ["a-base"])
    assert isinstance(base, Claim)
    claims: list[Claim] = []
    with pytest.raises(DockgateError) as caught:
        asyncio.run(scope_request(request_, A, daemon.fetch, daemon.replay, claims=claims,
                                  holds=holds))
    assert caught.value.status == 409 and "running build" in caught.value.message
    assert claims == []
    holds.release(base)
    asyncio.run(scope_request(request_, A, daemon.fetch, daemon.replay, claims=claims,
                              holds=holds))
    assert [c.kind for c in claims] == ["write"]
    assert holds.claim("base", ["a-base"]) == "a-base"
    holds.release(claims[0])
    # an admin's writes are not held back
    assert isinstance(holds.claim("base", ["a-base"]), Claim)
    asyncio.run(scope_request(request_, ADMIN, daemon.fetch, daemon.replay, claims=[],
                              holds=holds))


def test_build_claims_its_bases_before_reading_them() -> None:
    """A tenant's classic build claims its base names (not stage names) before it inspects
    them; a base name being written at that moment refuses the build (409)."""
    holds = NameHolds()
    daemon = Daemon({"/images/a-base/json": _image("team-a", "a-base:latest")})
    facts = parse("FROM a-base AS s\nFROM s\n")
    claims: list[Claim] = []
    asyncio.run(check_build_images(facts, A, daemon.fetch, None, claims, holds=holds))
    assert [c.keys for c in claims] == [("docker.io/library/a-base:latest",)]
    assert holds.conflict("write", ["a-base"]) == "a-base"
    holds.release(claims[0])
    write = holds.claim("write", ["a-base"])
    assert isinstance(write, Claim)
    with pytest.raises(DockgateError) as caught:
        asyncio.run(check_build_images(facts, A, daemon.fetch, None, [], holds=holds))
    assert caught.value.status == 409 and "being written" in caught.value.message


def test_pull_of_another_tenants_held_name_says_nothing_of_the_hold() -> None:
    """A pull of a name another tenant's running build holds goes on with a stand-in tag
    (it writes nothing of that name), as when no build holds it: no 409 tells A of B's
    build."""
    holds = NameHolds()
    assert isinstance(holds.claim("base", ["b-img:latest"]), Claim)
    daemon = Daemon({"/v1.51/images/b-img:latest/json": _image("team-b", "b-img:latest")})
    stands: list[Any] = []
    claims: list[Claim] = []
    asyncio.run(scope_request(req("POST", "/v1.51/images/create?fromImage=b-img&tag=latest"),
                              A, daemon.fetch, daemon.replay, stands, claims=claims,
                              holds=holds))
    assert len(stands) == 1 and claims == []


def test_image_prune_waits_for_the_tenants_own_builds() -> None:
    """``docker image prune -a`` could remove a base a running build of the tenant was
    checked with (the daemon would pull that name then): refused (409) while a build of
    that tenant holds bases; another tenant's build does not hold it back, nor does an
    admin's prune wait."""
    holds = NameHolds()
    daemon = Daemon({})
    prune = req("POST", "/v1.51/images/prune")
    claim = holds.claim("base", ["a-base"], "team-a")
    assert isinstance(claim, Claim) and holds.building("team-a")
    with pytest.raises(DockgateError) as caught:
        asyncio.run(scope_request(prune, A, daemon.fetch, daemon.replay, holds=holds))
    assert caught.value.status == 409 and "cannot be pruned" in caught.value.message
    asyncio.run(scope_request(prune, Tenant("team-b"), daemon.fetch, daemon.replay,
                              holds=holds))
    asyncio.run(scope_request(prune, ADMIN, daemon.fetch, daemon.replay, holds=holds))
    holds.release(claim)
    assert not holds.building("team-a")
    asyncio.run(scope_request(prune, A, daemon.fetch, daemon.replay, holds=holds))


@pytest.mark.parametrize("owner", ["team-b", None])
def test_a_tenants_start_connects_only_its_own_networks(owner: str | None) -> None:
    """A tenant's own container whose endpoint names (by ``NetworkID``, or by its exact
    name) a network that is another tenant's or nobody's is not started: it gets the
    refusal (409) of a start whose endpoint names no network; one kept by a name that is
    only the start of another network's id is refused (409) whoever owns that network;
    on its own network, by id or name, it starts."""
    net_id, own_id = "e" * 64, "d" * 64
    labels = {OWNER_LABEL: owner} if owner else {}
    theirs = {"Name": "shared", "Id": net_id, "Labels": labels}
    ours = {"Name": "ed" + "0" * 10, "Id": own_id, "Labels": {OWNER_LABEL: "team-a"}}

    def started(**endpoints: Any) -> Daemon:
        ctr = container("team-a")
        ctr["NetworkSettings"] = {"Networks": endpoints}
        return Daemon({"/v1.51/containers/web/json": ctr, "/v1.51/networks": [theirs, ours],
                       f"/v1.51/networks/{net_id}": theirs, f"/v1.51/networks/{own_id}": ours})

    for refused, why in ((started(shared={"NetworkID": net_id}), "is bound to network e{12}, "
                          r"which is gone \(the daemon would look its id up as a name\)"),
                         (started(shared={}), "is kept by name only, and no network is named "
                          "so now")):
        with pytest.raises(DockgateError) as caught:
            run(req("POST", "/v1.51/containers/web/start"), A, refused)
        assert caught.value.status == 409
        assert re.fullmatch(f"container c{{12}}: its endpoint on network 'shared' {why}: .*",
                            caught.value.message)
    with pytest.raises(DockgateError, match=r"no network is named so \(it is the start") as stale:
        run(req("POST", "/v1.51/containers/web/restart"), A, started(e={}))
    assert stale.value.status == 409
    for ok in (started(bridge={}, **{"ed" + "0" * 10: {}}), started(x={"NetworkID": own_id})):
        request, _ = run(req("POST", "/v1.51/containers/web/start"), A, ok)
        assert request.path == f"/containers/{'c' * 64}/start"
    run(req("POST", "/v1.51/containers/web/start"), ADMIN, started(shared={}))

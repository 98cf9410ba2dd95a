"""Unit tests for dockgate.buildkit.mediation: which calls are mediated, how a session's
Dockerfile is collected from fsutil packets, and how builds and sessions are bound to
their caller (judges replaced by recorders: the policy's side is tested elsewhere)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import wrappers_pb2
from support.grpcsolve import files_definition, solve_request

from dockgate.buildkit import mediation
from dockgate.buildkit.connection import build_judge
from dockgate.buildkit.h2relay import Plan
from dockgate.buildkit.messages import message_class
from dockgate.buildkit.solve import decode_bridge_solve, decode_control_solve
from dockgate.model import Peer
from dockgate.policy import load_policy
from dockgate.policy.buildcontrol import BuildVerdict
from dockgate.tenancy import Tenant

BASELINE = load_policy(str(Path(__file__).resolve().parents[2] / "policies" / "baseline.yaml"))
PRIVILEGED = load_policy(str(Path(__file__).resolve().parents[2] / "policies" /
                                "privileged.yaml"))

_DIR = 1 << 31


def packet(kind: int, *, path: str = "", mode: int = 0o644, ident: int = 0,
           data: bytes = b"", size: int = 0, mtime: int = 0, uid: int = 0) -> bytes:
    p: Any = message_class("fsutil.types.Packet")()
    p.type = kind
    if kind == 0 and path:
        p.stat.path = path
        p.stat.mode = mode
        p.stat.size = size
        p.stat.modTime = mtime
        p.stat.uid = uid
    p.ID = ident
    p.data = data
    return bytes(p.SerializeToString())


STAT, DATA, FIN = 0, 2, 3


class Handle:
    def __init__(self) -> None:
        self.failed: list[tuple[int, str]] = []
        self.woken: list[str] = []

    def fail(self, stream: int, message: str) -> None:
        self.failed.append((stream, message))

    def wake(self, ref: str) -> None:
        self.woken.append(ref)


@pytest.fixture
def judged(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Dockerfiles judged (allowed unless they contain DENY)."""
    seen: list[bytes] = []

    def judge_dockerfile(policy: Any, ask: Any, dockerfile: bytes, ctx: Any = None,
                         *, peer: Any = None) -> BuildVerdict:
        seen.append(dockerfile)
        return BuildVerdict(b"DENY" not in dockerfile, "dockgate: denied by policy p rule r: x")

    monkeypatch.setattr(mediation, "judge_dockerfile", judge_dockerfile)
    return seen


def session(builds: mediation.Builds, *, key: str = "", name: str = "sess",
            owner: str = "alice") -> mediation.SessionHooks:
    judge = mediation.Judge(policy=None, peer=None, owner=owner)
    assert builds.session_opened(name, owner, "ctx", key) is None
    return mediation.SessionHooks(judge, builds, name, lambda s, m: None)


def test_dockerfile_dir_is_held_until_each_dockerfile_is_judged(judged: list[bytes]) -> None:
    """Stats pass; file data of the dockerfile directory is held from its first packet
    until the Dockerfile is whole and judged; a .dockerignore is not a Dockerfile."""
    builds = mediation.Builds()
    hooks = session(builds)
    plan = hooks.opened(3, [(":path", mediation.DIFFCOPY), ("dir-name", "dockerfile")])
    assert plan == Plan(frozenset({"client", "daemon"}))
    assert builds.sessions["sess"].dirs == ["dockerfile"]
    assert not hooks.message(3, "client", packet(STAT, path="Dockerfile"))
    assert not hooks.message(3, "client", packet(STAT, path="Dockerfile.dockerignore"))
    assert not hooks.message(3, "client", packet(STAT, path="sub", mode=_DIR | 0o755))
    assert not hooks.message(3, "client", packet(STAT))
    assert hooks.message(3, "client", packet(DATA, ident=0, data=b"FROM a\n"))
    assert hooks.message(3, "client", packet(DATA, ident=0, data=b"RUN x\n"))
    assert not judged
    assert hooks.message(3, "client", packet(DATA, ident=0))
    assert judged == [b"FROM a\nRUN x\n"]
    assert [p.verdict.allowed for p in hooks.pending] == [True]
    assert hooks.decided(3)
    assert not hooks.message(3, "client", packet(DATA, ident=1, data=b"*.tmp\n"))
    assert judged == [b"FROM a\nRUN x\n"]


def test_dockerfile_larger_than_dockgate_holds(judged: list[bytes]) -> None:
    """More Dockerfile bytes than fit the flow-control window are refused, not hung."""
    hooks = session(mediation.Builds())
    hooks.opened(3, [(":path", mediation.DIFFCOPY), ("dir-name", "dockerfile")])
    hooks.message(3, "client", packet(STAT, path="Dockerfile"))
    for _ in range(2):
        hooks.message(3, "client", packet(DATA, ident=0, data=b"#" * 32768))
    assert [p.verdict.message for p in hooks.pending] == [
        "dockgate: a Dockerfile larger than 48 KiB is more than dockgate can hold while it "
        "judges it (HTTP/2 flow control); the build is refused"]


def test_two_dockerfiles_release_after_both_verdicts(judged: list[bytes]) -> None:
    """With two candidate files, the transfer goes on only once both verdicts are in."""
    hooks = session(mediation.Builds())
    hooks.opened(3, [(":path", mediation.DIFFCOPY), ("dir-name", "dockerfile")])
    for name in ("Dockerfile", "other.Dockerfile", ""):
        hooks.message(3, "client", packet(STAT, path=name))
    for ident in (0, 1):
        hooks.message(3, "client", packet(DATA, ident=ident, data=b"FROM a\n"))
        assert hooks.message(3, "client", packet(DATA, ident=ident))
    assert len(hooks.pending) == 2
    assert not hooks.decided(3)
    assert hooks.decided(3)


def test_other_dirs_and_unknown_session_calls(judged: list[bytes]) -> None:
    """The context directory is relayed (its name audited); a secret request is read for
    its ID; TarStream and unknown calls are refused."""
    builds = mediation.Builds()
    hooks = session(builds)
    assert hooks.opened(5, [(":path", mediation.DIFFCOPY), ("dir-name", "context")]) is None
    assert isinstance(hooks.opened(7, [(":path", "/moby.filesync.v1.FileSync/TarStream")]), str)
    assert hooks.opened(9, [(":path", mediation.GET_SECRET)]) == Plan(frozenset({"daemon"}))
    request: Any = message_class("moby.buildkit.secrets.v1.GetSecretRequest")()
    request.ID = "tok"
    assert not hooks.message(9, "daemon", bytes(request.SerializeToString()))
    assert builds.sessions["sess"].dirs == ["context"]
    assert builds.sessions["sess"].secrets == ["tok"]


def test_undecodable_packet_refuses(judged: list[bytes]) -> None:
    """A packet dockgate cannot decode on the Dockerfile transfer refuses it."""
    hooks = session(mediation.Builds())
    hooks.opened(3, [(":path", mediation.DIFFCOPY), ("dir-name", "dockerfile")])
    assert hooks.message(3, "client", b"\xff\xff\xff")
    assert [p.verdict.allowed for p in hooks.pending] == [False]


def test_sessions_and_builds_belong_to_their_caller() -> None:
    """A session, build or shared key named by another caller is refused (the daemon
    would read that caller's files for it, or start from what it transferred)."""
    builds = mediation.Builds()
    assert builds.session_opened("s1", "alice", "") is None
    assert builds.session_opened("s1", "bob", "") is not None
    record, why = builds.solve("ref1", "s1", "bob")
    assert record is None and "another caller" in why
    record, why = builds.solve("ref1", "s1", "alice")
    assert record is not None and not why
    assert builds.build_of("ref1", "bob") is None
    assert builds.for_session("s1") == [record]
    waiter = Handle()
    builds.wait("ref2", waiter)
    assert builds.solve("ref2", "s1", "alice")[0] is not None
    assert waiter.woken == ["ref2"]
    assert builds.session_opened("s2", "alice", "", "key") is None
    assert builds.session_opened("s3", "bob", "", "key") is not None


def test_grpc_calls() -> None:
    """Solve calls are mediated, status and gateway reads relayed, a tunnelled session
    and unknown calls refused."""
    hooks = mediation.GrpcHooks(mediation.Judge(None, None, owner="a"), mediation.Builds(),
                                Handle())
    assert hooks.opened(1, [(":path", mediation.CONTROL_SOLVE)]) == Plan(frozenset({"client"}))
    assert hooks.opened(3, [(":path", mediation.CONTROL + "Status")]) is None
    assert isinstance(hooks.opened(5, [(":path", mediation.CONTROL + "Session")]), str)
    assert isinstance(hooks.opened(7, [(":path", "/x.y/Z")]), str)


def test_dockerfile_not_asked_for_is_refused(judged: list[bytes]) -> None:
    """A transfer that ends without the daemon asking for a Dockerfile it was offered
    (it kept a copy from an earlier build under the same shared key) is refused."""
    hooks = session(mediation.Builds())
    hooks.opened(3, [(":path", mediation.DIFFCOPY), ("dir-name", "dockerfile")])
    hooks.message(3, "client", packet(STAT, path="Dockerfile"))
    hooks.message(3, "client", packet(STAT))
    assert hooks.message(3, "client", packet(FIN))
    assert not judged
    assert "did not ask for the Dockerfile 'Dockerfile'" in hooks.pending[0].verdict.message


def transfer(hooks: mediation.SessionHooks, stream: int, data: bytes | None, *,
             mtime: int = 7, uid: int = 0, mode: int = 0o644) -> bool:
    """One ``dockerfile`` DiffCopy offering a Dockerfile of ``len(data)`` bytes; the daemon
    asks for it (``data``) or not (None: the daemon's FIN follows the stats). Whether the
    last packet was held."""
    hooks.opened(stream, [(":path", mediation.DIFFCOPY), ("dir-name", "dockerfile")])
    size = len(data or b"FROM a\n")
    hooks.message(stream, "client", packet(STAT, path="Dockerfile", size=size, mtime=mtime,
                                           uid=uid, mode=mode))
    hooks.message(stream, "client", packet(STAT))
    if data is not None:
        hooks.message(stream, "client", packet(DATA, ident=0, data=data))
        return hooks.message(stream, "client", packet(DATA, ident=0))
    return hooks.message(stream, "daemon", packet(FIN))


def test_kept_dockerfile_is_judged_again_from_memory(judged: list[bytes]) -> None:
    """A Dockerfile judged and forwarded in one transfer is remembered; a later transfer
    of the same caller and shared key whose daemon does not ask for it (same stat) has
    the remembered bytes judged again, the daemon's FIN held until that verdict (the CLI
    ends the call once it has it); a changed stat,
    another shared key, another caller or a session without a shared key is refused."""
    builds = mediation.Builds()
    hooks = session(builds, key="k1")
    assert transfer(hooks, 1, b"FROM a\n")
    assert judged == [b"FROM a\n"] and hooks.decided(1)
    hooks.pending.clear()
    assert transfer(hooks, 3, None)
    assert judged == [b"FROM a\n"] * 2
    assert [p.verdict.allowed for p in hooks.pending] == [True]
    assert hooks.decided(3)
    hooks.pending.clear()
    # The group and other mode bits alone are the same file to some daemons (20.10).
    assert transfer(hooks, 5, None, mode=0o600)
    assert [p.verdict.allowed for p in hooks.pending] == [True]
    refused = [
        (hooks, {"mtime": 8}), (hooks, {"uid": 1}),
        (session(builds, key="k2", name="s2"), {}),
        # Another caller's hooks on this session's shared key (never opened so
        # through Builds, which binds a key to its first caller).
        (mediation.SessionHooks(mediation.Judge(None, None, owner="bob"), builds, "sess",
                                lambda s, m: None), {}),
        (session(builds, name="s4"), {}),
    ]
    for n, (other, changed) in enumerate(refused):
        other.pending.clear()
        assert transfer(other, 11 + 2 * n, None, **changed)
        assert [p.verdict.message for p in other.pending] == [
            "dockgate: the daemon did not ask for the Dockerfile 'Dockerfile' (it kept one "
            "from an earlier build that dockgate did not judge, or no longer remembers); "
            "the build is refused"], changed
    assert len(judged) == 3


def test_kept_dockerfile_memory_is_bounded_and_keeps_every_content(
        judged: list[bytes]) -> None:
    """Every distinct content forwarded under one stat class is judged when the daemon
    skips it (whichever it kept); more than PER_CLASS contents, or an entry the bounded
    memory let go (least recently used first), is unknown."""
    kept = mediation.KeptDockerfiles(limit=2)
    key: Any = ("alice", "k", ("dockerfile",), "Dockerfile", (1, 2, 3, 0, 0))
    for n in range(kept.PER_CLASS):
        kept.remember(key, b"FROM %d\n" % n)
        kept.remember(key, b"FROM 0\n")
    assert len(kept.recall(key)) == kept.PER_CLASS
    kept.remember(key, b"FROM x\n")
    assert kept.recall(key) == ()
    def at(n: int) -> Any:
        return (*key[:4], (n,))

    kept.remember(at(1), b"FROM a\n")
    kept.remember(at(2), b"FROM b\n")
    kept.recall(at(1))
    kept.remember(at(3), b"FROM c\n")
    assert kept.recall(at(2)) == ()
    assert kept.recall(at(1)) == (b"FROM a\n",)


def test_blind_only_where_nothing_is_judged() -> None:
    """privileged splices BuildKit blind (kernel splice, as fast as direct); baseline,
    and any policy for a tenant that is not an admin, mediates."""
    policies = Path(__file__).resolve().parents[2] / "policies"
    privileged = load_policy(str(policies / "privileged.yaml"))
    baseline = load_policy(str(policies / "baseline.yaml"))
    peer = Peer(listener="l", transport="unix", address="", uid=0, user="root")
    for endpoint in ("build.grpc", "build.session"):
        assert build_judge(privileged, None, peer, None, endpoint) is None
        assert build_judge(privileged, None, peer, Tenant("ops", admin=True), endpoint) is None
        judge = build_judge(privileged, None, peer, Tenant("teama"), endpoint)
        assert judge is not None and judge.owner == "teama"
        judge = build_judge(baseline, None, peer, None, endpoint)
        assert judge is not None and judge.owner == "root"
    assert build_judge(baseline, None, peer, None, "container.attach") is None


def test_refused_session_refuses_every_call() -> None:
    """A session another caller holds serves nothing: each call the daemon makes on it
    is answered with the reason (which the build's error then shows)."""
    hooks = session(mediation.Builds())
    hooks.refusal = "dockgate: the session's shared key belongs to another caller"
    assert hooks.opened(1, [(":path", mediation.DIFFCOPY), ("dir-name", "context")]) == \
        hooks.refusal


def chunk(data: bytes) -> bytes:
    msg: Any = wrappers_pb2.BytesValue(value=data)
    return bytes(msg.SerializeToString())


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_uploaded_context_dockerfile_is_judged(judged: list[bytes]) -> None:
    """A ``docker build -`` upload flows on; its Dockerfile is judged once read out of the
    tar (a refused one holds the stream for refusal), and an upload that ends without
    a Dockerfile dockgate could read is refused at its end."""
    hooks = session(mediation.Builds())
    assert hooks.opened(5, [(":path", mediation.UPLOAD)]) == Plan(frozenset({"client"}))
    body = tar_of({"a.txt": b"x" * 3000, "Dockerfile": b"FROM a\n"})
    assert not any(hooks.message(5, "client", chunk(body[i:i + 1000]))
                   for i in range(0, len(body), 1000))
    assert judged == [b"FROM a\n"] and hooks.ending(5, "client") is None
    hooks.opened(7, [(":path", mediation.UPLOAD)])
    assert hooks.message(7, "client", chunk(tar_of({"Dockerfile": b"DENY\n"})))
    assert [p.verdict.allowed for p in hooks.pending] == [False]
    hooks.opened(9, [(":path", mediation.UPLOAD)])
    assert not hooks.message(9, "client", chunk(tar_of({"other": b"x"})))
    assert "Cannot locate specified Dockerfile" in (hooks.ending(9, "client") or "")


def test_a_solve_naming_another_callers_session_anywhere_is_refused() -> None:
    """Not only the solve's own session: a ``local-sessionid:*`` option or a source's
    ``local.session`` naming a session another caller opened is refused (the daemon
    would read that caller's files); the caller's own sessions pass."""
    builds = mediation.Builds()
    assert builds.session_opened("bobs", "bob", "") is None
    assert builds.session_opened("alices", "alice", "") is None
    policy = load_policy(str(Path(__file__).resolve().parents[2] / "policies" /
                                 "baseline.yaml"))
    hooks = mediation.GrpcHooks(mediation.Judge(policy, None, owner="alice"), builds, Handle())
    for n, session in enumerate(("bobs", "alices")):
        hooks.opened(1 + 2 * n, [(":path", mediation.CONTROL_SOLVE)])
        hooks.message(1 + 2 * n, "client", solve_request(
            f"r{n}", attrs={"local-sessionid:context": session}))
    refused, allowed = hooks.pending
    assert not refused.verdict.allowed
    assert "local-sessionid:context names a session of another caller" in \
        refused.verdict.message
    assert allowed.verdict.allowed, allowed.verdict.message


def test_gateway_calls_for_another_callers_running_build_are_refused() -> None:
    """A gateway call (``ReadFile`` of a result, ``Solve``...) names its build in the
    ``buildkit-controlapi-buildid`` header: another caller's running build is refused,
    the caller's own and builds dockgate does not know (yet) are not."""
    builds = mediation.Builds()
    assert builds.solve("bobs-ref", "", "bob")[0] is not None
    assert builds.solve("alices-ref", "", "alice")[0] is not None
    hooks = mediation.GrpcHooks(mediation.Judge(None, None, owner="alice"), builds, Handle())
    read = mediation.BRIDGE + "ReadFile"
    refused = hooks.opened(1, [(":path", read), (mediation.BUILDID, "bobs-ref")])
    assert isinstance(refused, str) and "belongs to another caller" in refused
    assert hooks.opened(3, [(":path", read), (mediation.BUILDID, "alices-ref")]) is None
    assert hooks.opened(5, [(":path", read), (mediation.BUILDID, "later")]) is None


def test_tenants_image_solves_get_the_owner_label() -> None:
    """A tenant's Control Solve that writes an image is held whole and released rewritten
    with ``label:io.dockgate.owner=<tenant>`` (over a forged value), noted as a ``set`` in
    the audit facts; so is a frontend sub-solve of that build.  A solve that writes no
    image, and an admin's, go on unchanged; a tenant's raw LLB image build (no frontend,
    so no image config to carry the label) is refused.  (Build caches shared here:
    ``test_private_build_cache_rewrites_and_refusals`` has what private ones add.)"""
    builds = mediation.Builds()
    judge = mediation.Judge(BASELINE, None, owner="teama",
                            tenant=Tenant("teama", build_cache="shared"))
    hooks = mediation.GrpcHooks(judge, builds, Handle())
    assert hooks.opened(1, [(":path", mediation.CONTROL_SOLVE)]) == Plan(
        frozenset({"client"}), whole=frozenset({"client"}))
    forged = solve_request("r1", attrs={"label:io.dockgate.owner": "teamb"},
                           exporter=("moby", {"name": "a:1"}))
    hooks.message(1, "client", forged)
    hooks.opened(3, [(":path", mediation.CONTROL_SOLVE)])
    hooks.message(3, "client", solve_request("r2", exporter=("local", {})))
    image, local = hooks.pending
    assert image.verdict.allowed and image.rewrite is not None
    held, new = image.rewrite
    assert held == forged
    assert decode_control_solve(new).frontend_attrs["label:io.dockgate.owner"] == "teama"
    assert local.verdict.allowed and local.rewrite is None
    bridge = message_class("moby.buildkit.v1.frontend.SolveRequest")()
    bridge.Frontend = "dockerfile.v0"
    hooks.opened(5, [(":path", mediation.BRIDGE + "Solve"), (mediation.BUILDID, "r1")])
    hooks.message(5, "client", bridge.SerializeToString())
    sub = hooks.pending[-1]
    assert sub.rewrite is not None and decode_bridge_solve(sub.rewrite[1], "r1").frontend_attrs \
        == {"label:io.dockgate.owner": "teama"}
    facts = mediation.audit_facts(builds.solves["r1"], None)
    assert facts["set"] == ["control: label:io.dockgate.owner=teama",
                            "bridge: label:io.dockgate.owner=teama"]
    raw = message_class("moby.buildkit.v1.SolveRequest")()
    raw.Ref = "r4"
    raw.Definition.CopyFrom(files_definition({"f": "x"}))
    raw.ExporterDeprecated = "moby"
    hooks.opened(7, [(":path", mediation.CONTROL_SOLVE)])
    hooks.message(7, "client", raw.SerializeToString())
    assert "needs a frontend" in hooks.pending[-1].verdict.message
    admin = mediation.GrpcHooks(mediation.Judge(BASELINE, None, owner="ops"), builds, Handle())
    assert admin.opened(1, [(":path", mediation.CONTROL_SOLVE)]) == Plan(frozenset({"client"}))
    admin.message(1, "client", solve_request("r3", exporter=("moby", {"name": "b:1"})))
    assert admin.pending[-1].rewrite is None


def _cache_mount() -> Any:
    """A ``pb.Mount`` of the cache directory ``go`` at ``/c``."""
    mount = message_class("pb.Mount")()
    mount.mountType, mount.dest, mount.input = 3, "/c", -1
    mount.cacheOpt.ID = "go"
    return mount


def test_private_build_cache_rewrites_and_refusals() -> None:
    """While a tenant's build cache is private: every solve with a frontend goes on with
    ``no-cache`` set to "" (every stage; the client's ``no-cache=stage`` replaced), beside
    the owner label where an image is written; a raw sub-solve's LLB goes on with every op
    marked ``ignore_cache``; each is a ``set`` in the audit facts.  A cache mount is
    refused by rule ``tenant-build-cache``, in an LLB exec op, a gateway container and a
    Dockerfile the session sends, naming where; a Dockerfile without one passes."""
    builds = mediation.Builds()
    judge = mediation.Judge(BASELINE, None, owner="teama", tenant=Tenant("teama"))
    hooks = mediation.GrpcHooks(judge, builds, Handle())
    hooks.opened(1, [(":path", mediation.CONTROL_SOLVE)])
    hooks.message(1, "client", solve_request("r1", attrs={"no-cache": "build"},
                                             exporter=("moby", {"name": "a:1"})))
    hooks.opened(3, [(":path", mediation.CONTROL_SOLVE)])
    hooks.message(3, "client", solve_request("r2", exporter=("local", {})))
    for p in hooks.pending:
        assert p.verdict.allowed and p.rewrite is not None
        assert decode_control_solve(p.rewrite[1]).frontend_attrs["no-cache"] == ""
    raw = message_class("moby.buildkit.v1.frontend.SolveRequest")()
    raw.Definition.CopyFrom(files_definition({"f": "x"}))
    hooks.opened(5, [(":path", mediation.BRIDGE + "Solve"), (mediation.BUILDID, "r1")])
    hooks.message(5, "client", raw.SerializeToString())
    sub = hooks.pending[-1]
    assert sub.verdict.allowed and sub.rewrite is not None
    marked = message_class("moby.buildkit.v1.frontend.SolveRequest").FromString(sub.rewrite[1])
    meta = message_class("pb.OpMetadata")
    assert [meta.FromString(v).ignore_cache for v in marked.Definition.metadata.values()] == \
        [True, True]
    assert mediation.audit_facts(builds.solves["r1"], None)["set"] == [
        "control: label:io.dockgate.owner=teama", "control: no-cache=",
        "bridge: ignore_cache on 2 LLB ops"]
    run = message_class("pb.Op")()
    run.exec.meta.args.append("true")
    run.exec.mounts.append(_cache_mount())
    cached = message_class("moby.buildkit.v1.frontend.SolveRequest")()
    getattr(cached.Definition, "def").append(run.SerializeToString())
    container = message_class("moby.buildkit.v1.frontend.NewContainerRequest")()
    container.Mounts.append(_cache_mount())
    for n, (path, body) in enumerate([("Solve", cached), ("NewContainer", container)]):
        hooks.opened(7 + 2 * n, [(":path", mediation.BRIDGE + path), (mediation.BUILDID, "r1")])
        hooks.message(7 + 2 * n, "client", body.SerializeToString())
        verdict = hooks.pending[-1].verdict
        assert not verdict.allowed and verdict.rule == "tenant-build-cache", verdict
        assert "rule tenant-build-cache: " in verdict.message and "'go'" in verdict.message
    files = mediation.SessionHooks(judge, builds, "sess", lambda s, m: None)
    transfer(files, 1, b"FROM a\nRUN --mount=type=cache,id=go,target=/c true\n")
    transfer(files, 3, b"FROM a\nRUN true\n")
    refused, allowed = files.pending
    assert not refused.verdict.allowed and refused.verdict.message.startswith(
        "dockgate: denied by policy baseline rule tenant-build-cache: Dockerfile line 2 RUN "
        "--mount type=cache: the cache 'go' is shared")
    assert allowed.verdict.allowed


def test_kept_dockerfile_is_judged_with_this_builds_arguments(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The remembered bytes are judged afresh: a kept Dockerfile allowed with the first
    build's arguments but not with this one's is refused (the daemon's FIN is held, then
    the transfer refused), and the daemon's requests before its FIN are not held."""
    verdicts = [True, False]

    def judge_dockerfile(policy: Any, ask: Any, dockerfile: bytes, ctx: Any = None,
                         *, peer: Any = None) -> BuildVerdict:
        return BuildVerdict(verdicts.pop(0), "dockgate: denied by policy p rule r: x")

    monkeypatch.setattr(mediation, "judge_dockerfile", judge_dockerfile)
    hooks = session(mediation.Builds(), key="k1")
    assert transfer(hooks, 1, b"FROM $BASE\n")
    hooks.pending.clear()
    hooks.opened(3, [(":path", mediation.DIFFCOPY), ("dir-name", "dockerfile")])
    hooks.message(3, "client", packet(STAT, path="Dockerfile", size=11, mtime=7))
    hooks.message(3, "client", packet(STAT))
    assert not hooks.message(3, "daemon", packet(1, ident=5))
    assert hooks.message(3, "daemon", packet(FIN))
    assert [(p.stream, p.verdict.allowed) for p in hooks.pending] == [(3, False)]
    assert not verdicts


def test_tenants_solve_that_pulls_its_bases_is_refused() -> None:
    """A tenant's solve with ``image-resolve-mode=pull`` (``buildx build --pull``) is refused
    (the base images' ONBUILD triggers would be the registry's, unread); ``local`` passes,
    and an admin's pull is not refused."""
    hooks = mediation.GrpcHooks(mediation.Judge(BASELINE, None, owner="teama",
                                                tenant=Tenant("teama")), mediation.Builds(),
                                Handle())
    for stream, mode in ((1, "pull"), (3, "local")):
        hooks.opened(stream, [(":path", mediation.CONTROL_SOLVE)])
        hooks.message(stream, "client", solve_request(f"r{stream}",
                                                      attrs={"image-resolve-mode": mode}))
    pulled, local = hooks.pending
    assert not pulled.verdict.allowed and pulled.verdict.rule == "tenant-images"
    assert "may not pull its base images" in pulled.verdict.message
    assert local.verdict.allowed
    admin = mediation.GrpcHooks(mediation.Judge(BASELINE, None, owner="ops"), mediation.Builds(),
                                Handle())
    admin.opened(1, [(":path", mediation.CONTROL_SOLVE)])
    admin.message(1, "client", solve_request("r9", attrs={"image-resolve-mode": "pull"}))
    assert admin.pending[-1].verdict.allowed


def test_tenants_solve_with_unread_triggers_is_refused_under_any_policy() -> None:
    """A tenant's solve with a named context whose image config dockgate cannot read
    (``oci-layout://``: its ONBUILD triggers would run unread) is refused even under a
    policy that allows it (privileged), naming the context; an admin's is not."""
    attrs = {"context:base": "oci-layout://store@sha256:" + "0" * 64}
    for owner, tenant, allowed in (("teama", Tenant("teama"), False), ("ops", None, True)):
        hooks = mediation.GrpcHooks(mediation.Judge(PRIVILEGED, None, owner=owner,
                                                    tenant=tenant), mediation.Builds(),
                                    Handle())
        hooks.opened(1, [(":path", mediation.CONTROL_SOLVE)])
        hooks.message(1, "client", solve_request("r1", attrs=attrs))
        verdict = hooks.pending[-1].verdict
        assert verdict.allowed is allowed, verdict.message
        if not allowed:
            assert verdict.rule == "tenant-images"
            assert "context:base" in verdict.message and "unchecked" in verdict.message

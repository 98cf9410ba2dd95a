"""How long a BuildKit solve holds image names (``tenancy.holds`` through ``mediation.Builds``).

A tenant's solve holds its base names and its exported names from its check until
its ``Control/Solve`` call ends: the relay's end of that stream (both halves, a
RST_STREAM, a refusal) or the end of the connection, whichever is first.  Every
claim is released exactly once, and nothing stays held once the builds are over.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import h2.config
import h2.connection
from support.grpcsolve import solve_request
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock

from dockgate.buildkit import mediation
from dockgate.buildkit.connection import BUILDS, HOLD_WAIT, MediatedSplice, claim_waiting
from dockgate.buildkit.facts import familiar_name
from dockgate.buildkit.grpcwire import frame_message
from dockgate.buildkit.h2relay import H2Relay
from dockgate.buildkit.solve import SolveAsk
from dockgate.policy import load_policy
from dockgate.policy.buildcontrol import judge_dockerfile
from dockgate.tenancy import Tenant
from dockgate.tenancy.holds import HOLDS, Claim, NameHolds

EMPTY = {"base": (), "write": ()}
PRIVILEGED = load_policy(str(Path(__file__).resolve().parents[2] / "policies" /
                                "privileged.yaml"))


class Handle:
    def fail(self, stream: int, message: str) -> None:
        raise AssertionError("no solve is failed here")

    def wake(self, ref: str) -> None:
        pass


def _grpc(builds: mediation.Builds) -> mediation.GrpcHooks:
    judge = mediation.Judge(None, None, owner="teama", tenant=Tenant("teama"))
    return mediation.GrpcHooks(judge, builds, Handle())


def _claim(holds: NameHolds, kind: str, names: list[str], group: str = "") -> Claim:
    got = holds.claim("base" if kind == "base" else "write", names, "teama", group)
    assert isinstance(got, Claim), got
    return got


def test_holds_of_one_solve_do_not_conflict_and_releases_wake_waiters() -> None:
    """A solve ``FROM app`` that exports ``app`` holds both ways at once (its frontend
    resolves the base before its exporter writes); another solve's base hold on a name
    being exported conflicts, and so does an ungrouped (classic) one.  A waiter is told
    of the next release once."""
    holds = NameHolds()
    write = _claim(holds, "write", ["app"], group="r1")
    own = _claim(holds, "base", ["app:latest"], group="r1")
    assert holds.claim("base", ["docker.io/library/app"], "teama", "r2") == \
        "docker.io/library/app"
    assert holds.claim("base", ["app"], "teama") == "app"
    woken: list[int] = []
    holds.when_released(lambda: woken.append(1))
    cancel = holds.when_released(lambda: woken.append(2))
    cancel()
    holds.release(write)
    holds.release(write)
    assert woken == [1]
    assert holds.held() == {"base": ("docker.io/library/app:latest",), "write": ()}
    assert isinstance(holds.claim("base", ["app"], "teama", "r2"), Claim)
    holds.release(own)
    assert holds.claim("write", ["app"], "teama", "r1") == "app"  # r2's base is held


def test_solve_holds_end_with_its_control_solve_or_the_connection() -> None:
    """Claims tied to a build are released when its Control Solve stream closes (and not
    before: a gateway call of that build ending changes nothing), when the connection
    carrying it ends, or at once when the build is already over; a claim shared by two
    builds of one session lasts until the last of them ends."""
    holds = NameHolds()
    builds = mediation.Builds(holds)
    hooks = _grpc(builds)
    for stream, ref in ((1, "r1"), (3, "r2"), (5, "r3")):
        hooks.opened(stream, [(":path", mediation.CONTROL_SOLVE)])
        hooks.message(stream, "client", solve_request(ref, exporter=("moby", {"name": ref})))
    assert all(p.verdict.allowed for p in hooks.pending)
    first = _claim(holds, "write", ["r1"], group="r1")
    shared = _claim(holds, "base", ["base"])
    last = _claim(holds, "base", ["other"], group="r3")
    assert builds.hold(["r1"], first) and builds.hold(["r1", "r2"], shared)
    assert builds.hold(["r3"], last)
    hooks.opened(7, [(":path", mediation.BRIDGE + "Solve"), (mediation.BUILDID, "r1")])
    hooks.closed(7)
    assert not first.released
    hooks.closed(1)
    assert first.released and not shared.released
    hooks.closed(3)
    assert shared.released and not last.released
    late = _claim(holds, "base", ["late"])
    assert not builds.hold(["r1"], late) and late.released
    hooks.connection_lost()
    assert last.released and holds.held() == EMPTY and not builds.solves


def _frames(conn: h2.connection.H2Connection) -> bytes:
    return conn.data_to_send()


def test_relay_stream_ends_release_the_solves_holds() -> None:
    """Driven by real HTTP/2 frames through ``H2Relay``: a Control Solve's holds last
    while its call is open and end with the daemon's answer (END_STREAM both ways), with
    the client's RST_STREAM, or with dockgate's own refusal of the stream."""
    holds = NameHolds()
    builds = mediation.Builds(holds)
    hooks = _grpc(builds)
    relay = H2Relay("client", hooks)
    cli = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    srv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    cli.initiate_connection()
    srv.initiate_connection()

    def exchange() -> None:
        for _ in range(4):
            relay.receive("client", _frames(cli))
            relay.receive("daemon", _frames(srv))
            srv.receive_data(relay.take("daemon"))
            cli.receive_data(relay.take("client"))

    claims: dict[int, Claim] = {}
    for ref in ("answered", "reset", "refused"):
        sid = cli.get_next_available_stream_id()
        cli.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":authority", "d"),
                               (":path", mediation.CONTROL_SOLVE)])
        cli.send_data(sid, frame_message(solve_request(ref, exporter=("moby", {"name": ref}))),
                      end_stream=True)
        exchange()
        claims[sid] = _claim(holds, "write", [ref], group=ref)
        assert builds.hold([ref], claims[sid])
        for pending in hooks.pending:
            relay.release(pending.stream, None)
        hooks.pending.clear()
        exchange()
    answered, reset, refused = claims
    assert not any(c.released for c in claims.values())
    srv.send_headers(answered, [(":status", "200"), ("content-type", "application/grpc")])
    srv.send_data(answered, frame_message(b""))
    srv.send_headers(answered, [("grpc-status", "0")], end_stream=True)
    exchange()
    assert claims[answered].released and not claims[reset].released
    cli.reset_stream(reset)
    exchange()
    assert claims[reset].released and not claims[refused].released
    relay.refuse(refused, "dockgate: no")
    assert holds.held() == EMPTY and not builds.solves


def _ask(frontend: str = "dockerfile.v0", **attrs: str) -> SolveAsk:
    return SolveAsk("bridge", "r1", frontend=frontend, frontend_attrs=attrs)


def test_images_a_named_context_stands_in_for_are_told_apart() -> None:
    """A Dockerfile image the daemon's dockerfile frontend takes from a named context
    (``context:`` + its familiar name less ``:latest``: ``buildx bake`` ``contexts``,
    ``target:`` dependencies) is marked ``named``: FROM, COPY --from and RUN --mount
    from alike.  Not where another frontend may run (``# syntax=``, BUILDKIT_SYNTAX,
    ``cmdline``, a gateway frontend), not for a platform-only context, and not for an
    image the Dockerfile also names under ONBUILD."""
    df = (b"FROM ta\nCOPY --from=docker.io/library/tb:latest /a /a\n"
          b"RUN --mount=from=localhost:5000/x/y:1,target=/m true\nFROM tc\nFROM td\n"
          b"ONBUILD COPY --from=td /d /d\n")
    attrs = {"context:ta": "input:ta", "context:tb": "input:tb",
             "context:localhost:5000/x/y:1": "input:y", "context:tc::linux/amd64": "input:tc",
             "context:td": "input:td"}
    verdict = judge_dockerfile(PRIVILEGED, _ask(**attrs), df)
    assert verdict.named == ("ta", "docker.io/library/tb:latest", "localhost:5000/x/y:1")
    assert set(verdict.named) <= set(verdict.image_refs) and "ta" in verdict.bases
    for ask in (_ask("gateway.v0", **attrs), _ask(**attrs, cmdline="img"),
                _ask(**attrs, **{"build-arg:BUILDKIT_SYNTAX": "img"}), None):
        assert judge_dockerfile(PRIVILEGED, ask, df).named == ()
    assert judge_dockerfile(PRIVILEGED, _ask(**attrs), b"# syntax=img\n" + df).named == ()
    assert [familiar_name(r) for r in ("busybox:latest", "docker.io/library/a/b", "x@sha256:"
                                       + "a" * 64, "Bad Name")] == \
        ["busybox", "library/a/b", "x@sha256:" + "a" * 64, ""]


def test_a_solve_waits_for_the_other_kinds_release_then_claims_or_gives_up() -> None:
    """A solve whose name another solve holds the other way waits: it claims once that
    hold is released (tried on the reactor's next turn, not inside the release), and
    gives the conflict after ``HOLD_WAIT`` seconds, or at once once its connection is
    gone; nothing stays held by the one that gave up."""
    holds, clock = NameHolds(), Clock()
    export = _claim(holds, "write", ["ta"], group="a")
    waiting = ensureDeferred(claim_waiting(holds, clock, "base", ("ta",), owner="teama",
                                           group="b", alive=lambda: True))
    clock.advance(HOLD_WAIT / 2)
    assert not waiting.called
    holds.release(export)
    assert not waiting.called  # not from inside the release
    clock.advance(0)
    got = waiting.result
    assert isinstance(got, Claim) and got.group == "b"
    late = ensureDeferred(claim_waiting(holds, clock, "write", ("ta",), owner="teama",
                                           group="c", alive=lambda: True))
    clock.advance(HOLD_WAIT)
    assert late.result == "ta"
    alive = [True]
    gone = ensureDeferred(claim_waiting(holds, clock, "write", ("ta",), owner="teama",
                                           group="c", alive=lambda: alive[0]))
    alive[0] = False
    unrelated = _claim(holds, "base", ["other"])
    holds.release(unrelated)
    clock.advance(0)
    assert gone.result == "ta"
    holds.release(got)
    assert holds.held() == EMPTY and not clock.getDelayedCalls()


def test_a_check_waiting_for_a_name_gives_up_when_its_connection_ends() -> None:
    """A BuildKit connection's check that waits for a name another solve holds the other
    way gives the conflict on the reactor's next turn once that connection ends (what it
    claimed before the wait is then released with it), even when the end releases
    nothing; it does not keep waiting, and holding, until ``HOLD_WAIT``."""
    clock = Clock()
    other = _claim(HOLDS, "write", ["waitedfor"], group="other-solve")
    request = SimpleNamespace(endpoint=SimpleNamespace(id="build.grpc"), headers=())
    ended: list[object] = []
    splice = MediatedSplice(
        SimpleNamespace(reactor=clock), SimpleNamespace(), ended.append, None,  # type: ignore[arg-type]
        x=SimpleNamespace(request=request),  # type: ignore[arg-type]
        judge=mediation.Judge(None, None, owner="teama", tenant=Tenant("teama")),
        fetch=None,  # type: ignore[arg-type]
        on_client_closing=lambda: None)
    try:
        waiting = ensureDeferred(splice._claim("base", ("waitedfor",), "teama", "this-solve",
                                               ""))
        clock.advance(1)
        assert not waiting.called
        splice._done()
        assert ended == [splice]
        clock.advance(0)
        assert waiting.called and waiting.result == "waitedfor"
        assert not clock.getDelayedCalls()
    finally:
        HOLDS.release(other)
    assert HOLDS.held() == EMPTY


def test_a_check_waiting_for_a_name_gives_up_when_its_solve_ends() -> None:
    """A check that waits for a name on behalf of a Control Solve that had begun gives the
    conflict on the next turn once that solve ends (its answer, a reset), although its
    connection stays open and nothing it waits for was released: the wait does not
    outlive its build."""
    clock = Clock()
    other = _claim(HOLDS, "write", ["waitedfor2"], group="other-solve")
    request = SimpleNamespace(endpoint=SimpleNamespace(id="build.grpc"), headers=())
    splice = MediatedSplice(
        SimpleNamespace(reactor=clock), SimpleNamespace(), lambda _: None, None,  # type: ignore[arg-type]
        x=SimpleNamespace(request=request),  # type: ignore[arg-type]
        judge=mediation.Judge(None, None, owner="teama", tenant=Tenant("teama")),
        fetch=None,  # type: ignore[arg-type]
        on_client_closing=lambda: None)
    record, why = BUILDS.solve("ref-ending", "", "teama")
    assert record is not None and why == ""
    try:
        waiting = ensureDeferred(splice._claim("base", ("waitedfor2",), "teama", "ref-ending",
                                               "ref-ending"))
        clock.advance(1)
        assert not waiting.called
        BUILDS.finished("ref-ending")
        clock.advance(0)
        assert waiting.called and waiting.result == "waitedfor2"
        assert not clock.getDelayedCalls()
    finally:
        BUILDS.finished("ref-ending")
        HOLDS.release(other)
        splice._done()
    assert HOLDS.held() == EMPTY

"""BuildKit's upgraded connections through dockgate: spliced blind, or mediated (I/O).

``protocol`` hands a ``/grpc`` or ``/session`` connection that switched to h2c
here (``mediated_splice``).  Where the caller's policy judges nothing a build
could ask for (``privileged``: no rule but endpoint lists) and no tenant's
images need checking, the connection stays a plain ``Splice``, which the
kernel moves (``kernelsplice``): as fast as direct.  Otherwise a
``MediatedSplice`` runs it through ``h2relay.H2Relay`` with the hooks of
``mediation``, settles what they held (at once, or after a tenant's image
ownership check with the daemon), and writes one audit record per solve.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from dockgate.admission.versions import compare_versions, parse_version
from dockgate.audit.schema import principal_of
from dockgate.buildctx import DockerfileFacts
from dockgate.buildkit.h2relay import H2Relay, RelayError, Side
from dockgate.buildkit.mediation import (
    Builds,
    GrpcHooks,
    Judge,
    Pending,
    SessionHooks,
    private_cache_verdict,
    tenant_denial,
)
from dockgate.model import AuditEvent, Peer
from dockgate.policy.buildcontrol import BuildVerdict, judge_dockerfile
from dockgate.policy.controls import DecisionContext
from dockgate.policy.joincheck import base_triggers
from dockgate.proxy.splice import Splice
from dockgate.tenancy import Tenant, inspect_target, may_access, owner_of
from dockgate.tenancy.holds import (
    HOLDS,
    Claim,
    Kind,
    NameHolds,
    base_held_message,
    write_pending_message,
)
from dockgate.tenancy.ownership import ObjectRef

if TYPE_CHECKING:
    from dockgate.proxy.protocol import Exchange, ProxyServerProtocol
    from dockgate.proxy.upstream import UpstreamConnection

log = Logger()

ENDPOINTS = frozenset({"build.grpc", "build.session"})
BUILDS = Builds()
"""Solves and sessions of the one daemon dockgate fronts (its session manager is
daemon-wide too)."""

Fetch = Callable[[str, str, Any], Awaitable[tuple[int, Any]]]

NAMED_CONTEXTS_API = "1.42"
"""The API version of the first engine (23.0) whose BuildKit (0.11) has named contexts."""
HOLD_WAIT = 120.0
"""Seconds a tenant's solve waits for a name another solve holds the other way (its
export, or its base) before it is refused (``MediatedSplice._claim``)."""

SESSION_ID = "x-docker-expose-session-uuid"
SESSION_NAME = "x-docker-expose-session-name"
SESSION_KEY = "x-docker-expose-session-sharedkey"


def build_judge(policy: Any, context: DecisionContext | None, peer: Peer | None,
                tenant: Tenant | None, endpoint_id: str) -> Judge | None:
    """What a BuildKit connection is judged with, or None when it may be spliced blind."""
    if endpoint_id not in ENDPOINTS:
        return None
    tenant_checks = tenant is not None and not tenant.admin
    if not tenant_checks and not getattr(policy, "checks_bodies", True):
        return None
    owner = tenant.name if tenant is not None else (principal_of(peer) or "")
    return Judge(policy, peer, context, owner=owner, tenant=tenant if tenant_checks else None)


def mediated_splice(protocol: ProxyServerProtocol, upstream: UpstreamConnection, x: Exchange,
                    on_done: Callable[[Splice], None], record: Callable[[str, bytes], None] | None,
                    *, fetch: Fetch, on_client_closing: Callable[[], None]) -> Splice | None:
    """The splice for an upgraded BuildKit connection that must be mediated, else None."""
    judge = x.build_judge
    if not isinstance(judge, Judge) or x.request is None:
        return None
    return MediatedSplice(protocol, upstream, on_done, record, x=x, judge=judge, fetch=fetch,
                          on_client_closing=on_client_closing)


def _no_such_image(name: str) -> str:
    """What a tenant's build is told of an image it may not read, as of a missing one."""
    return (f"no such image: {name} (a tenant's build may name only images on the daemon: "
            "pull it first)")


async def claim_waiting(holds: NameHolds, reactor: Any, kind: Kind, names: tuple[str, ...], *,
                        owner: str, group: str, alive: Callable[[], bool]) -> Claim | str:
    """``holds.claim``; a name held the other way is waited for (each release is a new
    try) for at most ``HOLD_WAIT`` seconds while ``alive()``, then given as the conflict.

    Solves of one ``buildx bake`` or ``compose build`` run at once: one whose
    ``FROM`` names what another exports waits for that export to end (and builds
    from the image it wrote), an export of a name another solve starts from waits
    for that solve, and a cycle ends in a refusal."""
    deadline = reactor.seconds() + HOLD_WAIT
    while True:
        got = holds.claim(kind, names, owner, group)
        left = deadline - reactor.seconds()
        if not isinstance(got, str) or left <= 0 or not alive():
            return got
        released: Deferred[None] = Deferred()
        timer = reactor.callLater(left, _fire, released)
        # Tried again later, not from inside the release (a relay's frame may be
        # being taken apart there).
        cancel = holds.when_released(partial(reactor.callLater, 0, _fire, released))
        try:
            await released
        finally:
            cancel()
            if timer.active():
                timer.cancel()


def _without(names: tuple[str, ...], drop: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for n in names if n not in drop)


def _fire(d: Deferred[None]) -> None:
    if not d.called:
        d.callback(None)


def fail_solves(session: str, message: str) -> None:
    """End every open solve call of ``session``'s builds with ``message``."""
    for solve in BUILDS.for_session(session):
        for handle, stream in list(solve.open):
            handle.fail(stream, message)


class MediatedSplice(Splice):
    """A ``Splice`` whose bytes go through an ``H2Relay`` (never the kernel)."""

    def __init__(self, client: ProxyServerProtocol, upstream: UpstreamConnection,
                 on_done: Callable[[Splice], None], record: Callable[[str, bytes], None] | None,
                 *, x: Exchange, judge: Judge, fetch: Fetch,
                 on_client_closing: Callable[[], None]) -> None:
        super().__init__(client, upstream, on_done, record, on_client_closing=on_client_closing)
        self._proto = client
        assert x.request is not None
        self._x = x
        self._judge = judge
        self._fetch = fetch
        self._reactor = client.reactor
        self._solves = 0
        self._claims: list[Claim] = []
        self._named: bool | None = None
        self.session = ""
        hooks: GrpcHooks | SessionHooks
        if x.request.endpoint.id == "build.grpc":
            hooks = GrpcHooks(judge, BUILDS, self)
            hooks.on_closed = self._solve_done
            self.relay = H2Relay("client", hooks)
        else:
            headers = dict(x.request.headers)
            self.session = headers.get(SESSION_ID, "")
            why = BUILDS.session_opened(self.session, judge.owner, headers.get(SESSION_NAME, ""),
                                        headers.get(SESSION_KEY, ""))
            hooks = SessionHooks(judge, BUILDS, self.session, fail_solves)
            hooks.refusal = why
            self.relay = H2Relay("daemon", hooks)
        self.hooks = hooks

    # -- bytes ------------------------------------------------------------------

    def offload(self, reactor: Any) -> None:
        """Mediated connections stay in user space: every frame is read."""

    def from_client(self, data: bytes) -> None:
        if self._client_eof:
            return
        self.bytes_in += len(data)
        if self._recorded("in", data):
            self._feed("client", data)

    def from_upstream(self, data: bytes) -> None:
        self.bytes_out += len(data)
        if self._recorded("out", data):
            self._feed("daemon", data)

    def _feed(self, side: Side, data: bytes) -> None:
        if self._on_done is None:
            return
        self._guarded(lambda: self.relay.receive(side, data))

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run ``step``, settle what it left held and write what is due; a failure ends
        the connection."""
        try:
            step()
            self._settle()
        except RelayError as e:
            log.warn("BuildKit connection ended: {why}", why=str(e))
            self._abort_both()
            return
        except Exception:
            # A bug in judging must not leave a stream half-decided: end the build.
            log.failure("BuildKit mediation failed; ending the connection")
            self._abort_both()
            return
        self._flush()

    def _flush(self) -> None:
        out = self.relay.take("daemon")
        if out:
            self._upstream.write_raw(out)
        out = self.relay.take("client")
        transport = self._client.transport
        if out and transport is not None:
            transport.write(out)

    # -- decisions ----------------------------------------------------------------

    def _settle(self) -> None:
        pending = self.hooks.pending
        while pending:
            p = pending.pop(0)
            verdict = p.verdict
            tenant = self._judge.tenant
            if verdict.allowed and (verdict.bases or (tenant is not None and (
                    verdict.image_refs or verdict.image_names))):
                d = ensureDeferred(self._with_daemon(tenant, verdict, p))
                d.addCallback(self._checked, p)
                d.addErrback(self._check_failed, p)
                continue
            self._decided(p, verdict)

    def _decided(self, p: Pending, verdict: BuildVerdict) -> None:
        if not verdict.allowed:
            self.relay.refuse(p.stream, verdict.message)
            if p.kind == "dockerfile":
                fail_solves(p.session, verdict.message)
            return
        if isinstance(self.hooks, SessionHooks) and p.kind == "dockerfile" and \
                not self.hooks.decided(p.stream):
            return  # another Dockerfile of this transfer still waits for its verdict
        self.relay.release(p.stream, ("client", *p.rewrite) if p.rewrite else None)

    async def _with_daemon(self, tenant: Tenant | None, verdict: BuildVerdict, p: Pending
                           ) -> BuildVerdict:
        """``verdict`` judged further with what the daemon has: a tenant's images (each it
        reads its own or shared, and on the daemon; each name it writes free or its
        own), and the ``ONBUILD`` triggers of the base images.

        A tenant's base names and exported names are held (``tenancy.holds``) from
        before they are read until the build ends (``_hold``)."""
        infos: dict[str, Mapping[str, Any]] = {}
        claims: list[Claim] = []
        if verdict.named and await self._named_contexts():
            # Taken from the solve's named contexts (judged with it), not the daemon's
            # images: a bake target FROM a target it depends on (``target:``) reads
            # nothing of the daemon's, so nothing is checked or held for it.
            verdict = replace(verdict, image_refs=_without(verdict.image_refs, verdict.named),
                              bases=_without(verdict.bases, verdict.named))
        allowed = False
        try:
            if tenant is not None:
                group = BUILDS.group(p.ref, p.session)
                # What the exporters write is held as a write, so that no build starts
                # from it mid-export; the bases as a classic build's are
                # (joincheck.check_build_images): the frontend resolves each FROM after
                # this check, so its names are held against a retag.
                held: tuple[tuple[Kind, tuple[str, ...], Callable[[str], str]], ...] = (
                    ("write", verdict.image_names, base_held_message),
                    ("base", verdict.bases, write_pending_message))
                for kind, names, refusal in held:
                    if not names:
                        continue
                    got = await self._claim(kind, names, tenant.name, group, p.ref)
                    if isinstance(got, str):
                        return tenant_denial(self._judge, "tenant-images", refusal(got),
                                             verdict.facts)
                    claims.append(got)
                # A foreign image is said as one that does not exist: the answer tells
                # nothing about whose it is.
                why = await self._tenant_images(tenant, verdict, infos)
                if why is not None:
                    verdict = tenant_denial(self._judge, "tenant-images", why, verdict.facts)
            if verdict.allowed:
                verdict = await self._base_triggers(tenant, verdict, infos)
            allowed = verdict.allowed
            return verdict
        finally:
            # Kept only for an allowed build; released on a refusal or a failed check.
            for claim in claims:
                self._hold(claim, p, allowed)

    async def _named_contexts(self) -> bool:
        """Whether the daemon's BuildKit resolves a Dockerfile's images through named
        contexts (API 1.42, engine 23, on; engine 20.10's ignores them): asked once."""
        if self._named is None:
            status, info = await self._fetch("GET", "/version", None)
            version = info.get("ApiVersion") if status == 200 and isinstance(info, Mapping) \
                else None
            self._named = isinstance(version, str) and parse_version(version) is not None and \
                compare_versions(version, NAMED_CONTEXTS_API) >= 0
        return self._named

    async def _claim(self, kind: Kind, names: tuple[str, ...], owner: str, group: str,
                     ref: str) -> Claim | str:
        """``claim_waiting`` while this connection is open and, if build ``ref``'s
        Control Solve had begun, until it ends (a wait must not outlive its build)."""
        running = bool(ref) and ref in BUILDS.solves

        def alive() -> bool:
            return self._on_done is not None and (not running or ref in BUILDS.solves)

        return await claim_waiting(HOLDS, self._reactor, kind, names, owner=owner, group=group,
                                   alive=alive)

    def _hold(self, claim: Claim, p: Pending, allowed: bool) -> None:
        """Keep ``claim`` until the build ``p`` is for ends (its Control Solve; for a
        Dockerfile, each build of its session), or release it now: refused, or that
        build or this connection is over already.  A session serving no build holds
        it until the session's connection ends."""
        if not allowed or self._on_done is None:
            HOLDS.release(claim)
        elif p.ref:
            BUILDS.hold((p.ref,), claim)
        elif p.session and BUILDS.for_session(p.session):
            BUILDS.hold([r.ref for r in BUILDS.for_session(p.session)], claim)
        else:
            self._claims.append(claim)

    async def _tenant_images(self, tenant: Tenant, verdict: BuildVerdict,
                             infos: dict[str, Mapping[str, Any]]) -> str | None:
        """The refusal for the first image the build reads and may not, or writes under
        a name another holds (None: all are fine); ``infos`` gets the inspections."""
        foreign = await self._foreign_image(tenant, verdict.image_refs, infos)
        if foreign is not None:
            return _no_such_image(foreign)
        for name in verdict.image_names:
            ref = ObjectRef("image", name, "body", "exporter name", "write")
            status, info = await self._fetch("GET", inspect_target(ref, None), None)
            if status == 404:
                continue
            if status != 200 or not isinstance(info, Mapping) or \
                    owner_of("image", info) != tenant.name:
                # As ``docker build -t`` of a name another holds (or shared): the
                # answer says only that the name is taken.
                return f"image name {name!r} is already in use"
        return None

    async def _base_triggers(self, tenant: Tenant | None, verdict: BuildVerdict,
                             infos: dict[str, Mapping[str, Any]]) -> BuildVerdict:
        """``verdict``, or the refusal of the ``ONBUILD`` triggers of its base images.

        The dockerfile frontend runs a base image's triggers as instructions of this
        build (``COPY --from`` another image, ``ADD <url>``, a cache mount): they are
        judged as a Dockerfile of their own, and a tenant's images they name are
        checked as the build's.  A base the daemon does not have has no triggers to
        read (a tenant's such build was refused above; see docs/policy.md).
        """
        facts = DockerfileFacts()
        for name in verdict.bases:
            info = infos.get(name)
            if info is None:
                ref = ObjectRef("image", name, "body", "build base", "read")
                status, found = await self._fetch("GET", inspect_target(ref, None), None)
                info = found if status == 200 and isinstance(found, Mapping) else {}
            base_triggers(name, info, facts)
        if facts == DockerfileFacts():
            return verdict
        j = self._judge
        judged = private_cache_verdict(j, judge_dockerfile(j.policy, None, facts, j.context,
                                                           peer=j.peer))
        if not judged.allowed:
            return judged
        if tenant is not None:
            foreign = await self._foreign_image(tenant, judged.image_refs, {})
            if foreign is not None:
                return tenant_denial(j, "tenant-images", _no_such_image(foreign),
                                     verdict.facts)
        return verdict

    async def _foreign_image(self, tenant: Tenant, names: tuple[str, ...],
                             infos: dict[str, Mapping[str, Any]]) -> str | None:
        """The first image of ``names`` the tenant may not read or that is not on the
        daemon (None: all are fine); ``infos`` gets the inspections of the others.

        A missing image is refused like another tenant's, as for the classic
        builder: the daemon would pull it in the middle of the build and answer
        with a registry's error, which no answer for another tenant's image
        (which the daemon has) could look like.
        """
        for name in names:
            ref = ObjectRef("image", name, "body", "build source", "read")
            status, info = await self._fetch("GET", inspect_target(ref, None), None)
            if status != 200 or not isinstance(info, Mapping) or \
                    not may_access(tenant, owner_of("image", info), ref):
                return name
            infos[name] = info
        return None

    def _checked(self, verdict: BuildVerdict, p: Pending) -> None:
        self._decided(p, verdict)
        self._flush()

    def _check_failed(self, failure: Failure, p: Pending) -> None:
        log.failure("checking a build's images failed", failure)
        self._decided(p, BuildVerdict(False, "dockgate: cannot check the build's images"))
        self._flush()

    def fail(self, stream: int, message: str) -> None:
        """``mediation.Handle``: end one of this connection's solve calls from elsewhere."""
        self.relay.refuse(stream, message)
        self._flush()

    def wake(self, ref: str) -> None:
        """``mediation.Handle``: the Control Solve of ``ref`` came in."""
        self._reactor.callLater(0, self._woken, ref)

    def _woken(self, ref: str) -> None:
        hooks = self.hooks
        if self._on_done is not None and isinstance(hooks, GrpcHooks):
            self._guarded(lambda: hooks.retry(ref))

    # -- audit ----------------------------------------------------------------

    def _solve_done(self, facts: dict[str, Any]) -> None:
        """One record per solve: what was decided, and what its session served."""
        self._solves += 1
        x = self._x
        client = self._proto
        event = AuditEvent(
            stage="BuildSolved", id=f"{x.id}.{self._solves}", time=time.time(),
            listener=client.factory.listener, peer=client.peer, method=x.method,
            raw_target=x.raw_target, request=x.request, decision=x.decision,
            tenant=x.tenant.name if x.tenant is not None else None,
            build=facts,
        )
        try:
            client.settings.audit.record(event)
        except Exception:
            # Fail closed: a build that cannot be recorded does not go on.
            log.failure("audit write failed for a BuildKit solve")
            self._abort_both()

    def _done(self) -> None:
        if isinstance(self.hooks, GrpcHooks):
            self.hooks.connection_lost()
        if self.session:
            BUILDS.session_closed(self.session)
        for claim in self._claims:
            HOLDS.release(claim)
        self._claims.clear()
        super()._done()
        # A check of this connection waiting for a name held the other way gives up
        # now, releasing what it claimed before (``claim_waiting``): not at its
        # deadline, up to HOLD_WAIT seconds after the connection ended.
        HOLDS.wake()

"""What dockgate does with each gRPC call on BuildKit's two connections (pure).

``H2Relay`` moves frames; the ``Hooks`` here decide, per call:

``/grpc`` (the CLI calls the daemon)
    ``Control/Solve``, ``LLBBridge/Solve`` and ``LLBBridge/NewContainer``
    are mediated: the request message is held until it is whole, decoded
    (``solve``) and judged (``policy.buildcontrol``).  The read-only and
    bookkeeping calls a build makes (status, workers, history, the gateway's
    file reads...) are relayed; ``Return`` is read for tenants (the image
    config it hands the exporter).  Anything else, ``Control/Session`` (a
    session tunnelled through ``/grpc``, which dockgate would not see) among
    them, is refused.
``/session`` (the daemon calls the CLI)
    ``FileSync/DiffCopy`` of the ``dockerfile`` directory is mediated: the
    file data the CLI sends is held until each Dockerfile in it is whole and
    judged with the solve that named this session (one the daemon kept from an
    earlier transfer and does not ask for again is judged from what dockgate
    remembers of that transfer: ``KeptDockerfiles``); a denial refuses the
    transfer and fails that solve on ``/grpc`` with the denial, so the CLI
    prints it.  ``Secrets/GetSecret`` requests are read for the audit record
    (the ID, never the value).  ``Upload/Pull`` (a context piped to ``docker
    build -``, a tar the frontend reads its Dockerfile from) is read as the
    classic builder's context is (``buildctx.ContextCheck``): it flows on, and
    the end of the upload waits until that Dockerfile was found and judged.
    Other directories, exporter output, auth and SSH forwarding are relayed;
    ``TarStream`` and anything else is refused.

For a tenant, the Control ``Solve`` and ``LLBBridge/Solve`` are held whole
(``Plan.whole``): a solve whose exporters write an image, and each frontend
sub-solve of that build, go on re-encoded with the frontend option
``label:io.dockgate.owner=<tenant>`` (``Pending.rewrite``; the relay keeps
HTTP/2 framing and flow control right), so the image is the tenant's whatever
the client, the Dockerfile or its own ``--label`` said.

A solve and its session meet in ``Builds`` (one per listener factory): the
Control ``Solve`` names its session and its ``ref``, the gateway's calls carry
that ``ref`` as ``buildid``, and the ``/session`` connection names its session
in its upgrade request.  A session is bound to the principal that opened it:
a solve naming another caller's session is refused (the daemon would read
that caller's files for it), and so is a session's shared key (the daemon's
cache of what earlier transfers under that key wrote).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from google.protobuf import wrappers_pb2
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from dockgate.buildctx import ContextError
from dockgate.buildctx.context import ContextCheck
from dockgate.buildkit.facts import DOCKERFILE_DIR
from dockgate.buildkit.grpcwire import Unreadable
from dockgate.buildkit.h2relay import Plan, Side
from dockgate.buildkit.solve import (
    NO_CACHE_ATTR,
    ContainerAsk,
    Packet,
    SolveAsk,
    Undecodable,
    decode_bridge_solve,
    decode_control_solve,
    decode_exec_init,
    decode_filesync_packet,
    decode_new_container,
    decode_resolve_image_config,
    decode_resolve_source_meta,
    decode_return_metadata,
    decode_secret_request,
    return_has_result,
    tenant_solve,
)
from dockgate.model import Peer
from dockgate.policy.buildcontrol import (
    BuildVerdict,
    judge_container,
    judge_dockerfile,
    judge_solve,
)
from dockgate.policy.controls import DecisionContext
from dockgate.tenancy import (
    OWNER_ATTR,
    PULLED_BASES,
    Tenant,
    buildkit_label_refusal,
    cache_mount_refusal,
    returned_config_refusal,
    writes_image,
)
from dockgate.tenancy.holds import HOLDS, Claim, NameHolds

CONTROL = "/moby.buildkit.v1.Control/"
BRIDGE = "/moby.buildkit.v1.frontend.LLBBridge/"
CONTROL_SOLVE = CONTROL + "Solve"
BUILDID = "buildkit-controlapi-buildid"
"""The metadata naming the build (the Control Solve's ``ref``) a gateway call is for."""

JUDGED: Mapping[str, Literal["control", "bridge", "image-config", "source-meta", "container",
                              "exec", "return"]] = {
    CONTROL_SOLVE: "control",
    BRIDGE + "Solve": "bridge",
    BRIDGE + "ResolveImageConfig": "image-config",
    BRIDGE + "ResolveSourceMeta": "source-meta",
    BRIDGE + "NewContainer": "container",
    BRIDGE + "Return": "return",
    BRIDGE + "ExecProcess": "exec",
}
"""The calls on ``/grpc`` whose request is held and judged (the two resolvers make
the daemon contact a registry or a remote, so they are judged as a solve of that
one source; ``ExecProcess``: each
``Init`` message, which starts a process with its own security mode; its stdin,
resizes and signals pass)."""

GRPC_RELAYED = frozenset({
    CONTROL + name for name in (
        "Status", "ListWorkers", "DiskUsage", "Info", "ListenBuildHistory",
        "UpdateBuildHistory",
    )
} | {
    BRIDGE + name for name in (
        "ReadFile", "ReadDir", "StatFile", "Ping",
        "Inputs", "Evaluate", "Warn", "ReleaseContainer",
    )
} | {
    "/grpc.health.v1.Health/Check",
    "/containerd.services.content.v1.Content/Info",
    "/containerd.services.content.v1.Content/Read",
})
"""Calls on ``/grpc`` that read state or report on a build already judged.

The content store's ``Info`` and ``Read`` give blobs by digest (compose reads a
build's provenance record)."""

NOT_FOR_TENANTS = frozenset({
    CONTROL + "ListenBuildHistory", CONTROL + "UpdateBuildHistory", CONTROL + "DiskUsage",
    "/containerd.services.content.v1.Content/Info",
    "/containerd.services.content.v1.Content/Read",
})
"""Relayed calls that are daemon-wide, refused to tenants: the build history (every
tenant's build records: build args, labels, logs with RUN output; deleting them), the
build cache's records (each step's command line), and the content store by digest (the
history's logs and provenance, other builds' blobs)."""

DIFFCOPY = "/moby.filesync.v1.FileSync/DiffCopy"
GET_SECRET = "/moby.buildkit.secrets.v1.Secrets/GetSecret"  # noqa: S105 (a method name)
SESSION_RELAYED = frozenset({
    "/moby.filesync.v1.FileSend/DiffCopy",
    "/moby.filesync.v1.Auth/Credentials",
    "/moby.filesync.v1.Auth/FetchToken",
    "/moby.filesync.v1.Auth/GetTokenAuthority",
    "/moby.filesync.v1.Auth/VerifyTokenAuthority",
    "/moby.sshforward.v1.SSH/CheckAgent",
    "/moby.sshforward.v1.SSH/ForwardAgent",
    "/grpc.health.v1.Health/Check",
})
"""Calls the daemon makes on ``/session`` that dockgate relays: exporter output to
the client, registry credentials the client offers, SSH agent forwarding."""

UPLOAD = "/moby.upload.v1.Upload/Pull"
MAX_DOCKERFILE = 48 << 10
"""Most Dockerfile bytes held on one transfer.  The CLI sends only as far as the
daemon's flow-control window lets it (64 KiB at least, the gRPC and fsutil
framing included), and the daemon opens the window only as it reads what
dockgate passes on: a larger Dockerfile is refused with that reason rather than
left hanging."""
_GO_MODE_TYPE = (1 << 31) | (1 << 27) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)
"""Go's ``os.ModeType``: fsutil's stat modes are Go file modes."""


def _header(headers: list[tuple[str, str]], name: str) -> str:
    return next((v for k, v in headers if k == name), "")


def _values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k == name]


@dataclass(frozen=True)
class Judge:
    """What a verdict is judged with: the caller's policy, context and identity."""

    policy: Any
    peer: Peer | None
    context: DecisionContext | None = None
    owner: str = ""
    """Who the caller is (tenant name, else principal): sessions and builds are bound to it."""
    tenant: Tenant | None = None
    """The caller's tenant (None: no tenants, or an admin): then each image a verdict
    names is checked for ownership before the stream is released."""


@dataclass
class Pending:
    """A held stream waiting for the I/O layer: release it, or refuse it with the
    verdict's message (after the tenant's image check when ``verdict.image_refs``)."""

    stream: int
    verdict: BuildVerdict
    ref: str = ""
    session: str = ""
    kind: str = ""
    rewrite: tuple[bytes, bytes] | None = None
    """``(held, new)``: on release the request message ``held`` goes on as ``new``."""


@dataclass
class SessionInfo:
    """What a session served, for the audit record (names only, never contents)."""

    owner: str
    name: str = ""
    shared_key: str = ""
    """Its ``X-Docker-Expose-Session-Sharedkey`` (the daemon keeps transfers under it)."""
    dirs: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    connected: bool = True
    """Its ``/session`` connection is open (forgotten once it is closed and no solve
    names it)."""


class Handle(Protocol):
    """A mediated connection's side of ``Builds``: how a solve is failed from elsewhere."""

    def fail(self, stream: int, message: str) -> None: ...

    def wake(self, ref: str) -> None:
        """The Control Solve of ``ref`` came in (on any connection): judge what waited
        for it (later, outside the frame being read)."""


@dataclass
class SolveRecord:
    """One build (a Control ``Solve`` and everything under its ``ref``), for the audit."""

    ref: str
    session: str
    owner: str
    decisions: list[dict[str, Any]] = field(default_factory=list)
    open: list[tuple[Handle, int]] = field(default_factory=list)
    frontend_ask: SolveAsk | None = None
    writes_image: bool = False
    """Its Control Solve's exporters write an image on the daemon."""
    claims: list[Claim] = field(default_factory=list)
    """Image names it holds (``tenancy.holds``): released when its Control Solve ends."""


class Builds:
    """Solves and sessions across connections (see the module docstring)."""

    def __init__(self, holds: NameHolds = HOLDS) -> None:
        self.holds = holds
        self.sessions: dict[str, SessionInfo] = {}
        self.solves: dict[str, SolveRecord] = {}
        self.shared_keys: dict[str, str] = {}
        self.kept = KeptDockerfiles()
        self._waiting: dict[str, list[Handle]] = {}

    def session_opened(self, session: str, owner: str, name: str, shared_key: str = ""
                       ) -> str | None:
        """A ``/session`` connection: None, or why it is refused.

        The daemon keeps what a session's transfers wrote under its shared key and
        starts the next transfer with that key from it (files whose stat the CLI
        repeats are not sent again): a key is bound to the first caller using it.
        """
        known = self.sessions.get(session)
        if known is not None and known.owner != owner:
            return f"dockgate: session {session!r} belongs to another caller"
        if shared_key:
            holder = self.shared_keys.setdefault(shared_key, owner)
            if holder != owner:
                return "dockgate: the session's shared key belongs to another caller"
        info = self.sessions[session] = known or SessionInfo(owner, name)
        info.shared_key = shared_key
        info.connected = True
        return None

    def foreign_session(self, named: Any, owner: str) -> str | None:
        """Where the first of ``named`` (``(where, session id)`` pairs: the solve's session,
        ``local-sessionid:*`` options, ``local.session``/``oci.session`` of sources)
        names a session another caller opened, or None."""
        for where, session in named:
            info = self.sessions.get(session)
            if info is not None and info.owner != owner:
                return str(where)
        return None

    def session_closed(self, session: str) -> None:
        info = self.sessions.get(session)
        if info is not None:
            info.connected = False
            self._forget(session)

    def _forget(self, session: str) -> None:
        info = self.sessions.get(session)
        if info is not None and not info.connected and not self.for_session(session):
            del self.sessions[session]

    def solve(self, ref: str, session: str, owner: str) -> tuple[SolveRecord | None, str]:
        """The build ``ref`` (created by a Control Solve); "" or why it is refused."""
        info = self.sessions.get(session) if session else None
        if info is not None and info.owner != owner:
            return None, f"dockgate: session {session!r} belongs to another caller"
        record = self.solves.get(ref)
        if record is None:
            record = self.solves[ref] = SolveRecord(ref, session, owner)
            for handle in self._waiting.pop(ref, []):
                handle.wake(ref)
        elif record.owner != owner:
            return None, f"dockgate: build {ref!r} belongs to another caller"
        return record, ""

    def wait(self, ref: str, handle: Handle) -> None:
        """Wake ``handle`` when the Control Solve of ``ref`` comes in."""
        waiting = self._waiting.setdefault(ref, [])
        if handle not in waiting:
            waiting.append(handle)

    def build_of(self, ref: str, owner: str) -> SolveRecord | None:
        record = self.solves.get(ref)
        return record if record is not None and record.owner == owner else None

    def for_session(self, session: str) -> list[SolveRecord]:
        return [r for r in self.solves.values() if r.session == session and session]

    def hold(self, refs: Iterable[str], claim: Claim) -> bool:
        """Tie ``claim`` to the running builds ``refs`` (released when the last of them
        ends); False, and the claim released, when none of them runs any more."""
        records = [r for r in map(self.solves.get, dict.fromkeys(refs)) if r is not None]
        for record in records:
            record.claims.append(claim)
        if not records:
            self.holds.release(claim)
        return bool(records)

    def finished(self, ref: str) -> SolveRecord | None:
        """The Control Solve of ``ref`` ended: its record, taken out, and the holds no
        other running build shares released."""
        record = self.solves.pop(ref, None)
        if record is not None:
            self._forget(record.session)
            for claim in record.claims:
                if not any(claim in r.claims for r in self.solves.values()):
                    self.holds.release(claim)
            record.claims.clear()
            self.holds.wake()  # a check of this build still waiting gives up now
        return record

    def group(self, ref: str, session: str) -> str:
        """The hold group of what a verdict for build ``ref`` (or, without one, for the
        only build of ``session``) claims: that build ("": none, no exemption)."""
        if ref:
            return ref
        records = self.for_session(session)
        return records[0].ref if len(records) == 1 else ""


def audit_facts(record: SolveRecord, session: SessionInfo | None) -> dict[str, Any]:
    """The audit record's ``build`` member for one solve: ``allowed`` and ``rule`` sum
    up its decisions (the first refusal's rule)."""
    refused = [d for d in record.decisions if not d["allowed"]]
    sets = [f"{d['what']}: {s}" for d in record.decisions for s in d.get("set", ())]
    return {
        "ref": record.ref,
        "session": record.session,
        "allowed": not refused,
        "rule": refused[0]["rule"] if refused else "",
        "decisions": record.decisions,
        "local_dirs": sorted(set(session.dirs)) if session else [],
        "secrets": sorted(set(session.secrets)) if session else [],
        "set": sets,
    }


def _decision(kind: str, verdict: BuildVerdict, sets: tuple[str, ...] = ()) -> dict[str, Any]:
    decision = {"what": kind, "allowed": verdict.allowed, "rule": verdict.rule,
                "message": verdict.message, "facts": dict(verdict.facts)}
    if sets:
        decision["set"] = list(sets)
    return decision


def _refusal(message: str) -> BuildVerdict:
    return BuildVerdict(False, message, rule="")


def tenant_denial(judge: Judge, rule: str, why: str, facts: Mapping[str, Any]) -> BuildVerdict:
    """A tenancy refusal worded as the policy's own (``rule`` names what refused)."""
    policy = getattr(judge.policy, "name", "")
    return BuildVerdict(False, f"dockgate: denied by policy {policy} rule {rule}: {why}",
                        rule=rule, facts=facts)


def private_cache_verdict(judge: Judge, verdict: BuildVerdict) -> BuildVerdict:
    """``verdict``, or a refusal when it allows a tenant whose build caches are private a
    cache mount (``tenancy.cache_mount_refusal``)."""
    if judge.tenant is None or not verdict.allowed:
        return verdict
    why = cache_mount_refusal(judge.tenant, verdict.facts.get("cache_mounts", ()))
    return verdict if why is None else tenant_denial(judge, "tenant-build-cache", why,
                                                     verdict.facts)


_BRIDGE_DECODERS: Mapping[str, Callable[[bytes, str], SolveAsk]] = {
    "bridge": decode_bridge_solve,
    "image-config": decode_resolve_image_config,
    "source-meta": decode_resolve_source_meta,
}


class _NoFrontend(Exception):
    """A tenant's image build without a frontend (the message is the refusal)."""


class GrpcHooks:
    """``Hooks`` of a ``/grpc`` connection (the CLI is the HTTP/2 client)."""

    def __init__(self, judge: Judge, builds: Builds, handle: Handle) -> None:
        self.judge = judge
        self.builds = builds
        self.handle = handle
        self.pending: list[Pending] = []
        self._calls: dict[int, tuple[str, str]] = {}
        self._seen: set[int] = set()
        self._solves: dict[int, str] = {}
        """Control Solve streams → their build's ref (the audit record is written at the end)."""
        self._early: dict[str, list[tuple[int, str, bytes]]] = {}
        """Gateway calls that came before their build's Control Solve (the client makes
        both at once, maybe on two connections), judged once it is in."""
        self.on_closed: Callable[[dict[str, Any]], None] | None = None
        """Called with the audit facts of each Control Solve that ends."""

    @property
    def owner(self) -> str:
        return self.judge.owner

    def opened(self, stream: int, headers: list[tuple[str, str]]) -> Plan | str | None:
        path = _header(headers, ":path")
        buildid = _header(headers, BUILDID)
        running = self.builds.solves.get(buildid) if buildid else None
        if running is not None and running.owner != self.owner:
            # A gateway call reads (ReadFile, ReadDir, Evaluate...) or acts on the
            # build it names: another caller's running build is not this caller's.
            return f"dockgate: build {buildid!r} belongs to another caller"
        kind = JUDGED.get(path)
        if kind is not None:
            self._calls[stream] = (kind, _header(headers, BUILDID))
            if kind in ("control", "bridge") and self.judge.tenant is not None:
                # Held whole: its owner label may be set (``_owner_label``).
                return Plan(frozenset({"client"}), whole=frozenset({"client"}))
            return Plan(frozenset({"client"}))
        if path in NOT_FOR_TENANTS and self.judge.tenant is not None:
            return (f"dockgate: BuildKit call {path} is daemon-wide (every tenant's builds) "
                    "and not served to tenants")
        if path in GRPC_RELAYED:
            return None
        return f"dockgate: BuildKit call {path} is not mediated by dockgate"

    def message(self, stream: int, side: Side, payload: bytes) -> bool:
        kind, buildid = self._calls[stream]
        if kind == "exec":
            return self._exec(stream, buildid, payload)
        if stream in self._seen:
            self.pending.append(Pending(stream, _refusal(
                "dockgate: a second request message on a unary BuildKit call")))
            return True
        self._seen.add(stream)
        # A Return comes after its build began, and also after it failed and ended
        # (buildx returns the error): it never waits for a Control Solve.
        if kind not in ("control", "return") and \
                self.builds.build_of(buildid, self.owner) is None:
            self._early.setdefault(buildid, []).append((stream, kind, payload))
            self.builds.wait(buildid, self.handle)
            return True
        self._judge_message(stream, kind, buildid, payload)
        return True

    def _exec(self, stream: int, buildid: str, payload: bytes) -> bool:
        """An ExecProcess message: an ``Init`` is judged like a container (held), the
        rest of the process's input passes."""
        try:
            ask = decode_exec_init(payload, buildid)
        except Undecodable as e:
            self.pending.append(Pending(stream, _refusal(
                f"dockgate: cannot decode an ExecProcess message ({e}); the build is refused")))
            return True
        if ask is None:
            return False
        verdict = judge_container(self.judge.policy, ask, self.judge.context, peer=self.judge.peer)
        self._note(buildid, "exec", verdict, None)
        self.pending.append(Pending(stream, verdict, ref=buildid, kind="exec"))
        return True

    def _judge_message(self, stream: int, kind: str, buildid: str, payload: bytes) -> None:
        try:
            self.pending.append(self._judge(stream, kind, buildid, payload))
        except Undecodable as e:
            self.pending.append(Pending(stream, _refusal(
                f"dockgate: cannot decode the {kind} request ({e}); the build is refused")))
            return
        if kind == "control":
            self.retry(self._solves.get(stream, ""))

    def retry(self, ref: str) -> None:
        """Judge the gateway calls that waited for the Control Solve of ``ref``."""
        for stream, kind, payload in self._early.pop(ref, []) if ref else []:
            self._judge_message(stream, kind, ref, payload)

    def _judge(self, stream: int, kind: str, buildid: str, payload: bytes) -> Pending:
        j = self.judge
        if kind == "return":
            # The result a client-side build hands the exporter: its image config's
            # labels, for tenants (the refs in it were solved, and judged, before).
            why = None
            if j.tenant is not None:
                build = self.builds.build_of(buildid, self.owner)
                image = build is not None and build.writes_image and return_has_result(payload)
                why = returned_config_refusal(decode_return_metadata(payload), j.tenant.name,
                                              image=image)
            verdict = _refusal(why) if why else BuildVerdict(True, "allowed")
            self._note(buildid, "return", verdict, None)
            return Pending(stream, verdict, ref=buildid, kind=kind)
        if kind == "container":
            ask_c: ContainerAsk = decode_new_container(payload, buildid)
            verdict = private_cache_verdict(j, judge_container(j.policy, ask_c, j.context,
                                                               peer=j.peer))
            self._note(buildid, "container", verdict, None)
            return Pending(stream, verdict, ref=buildid, kind=kind)
        if kind == "control":
            ask = decode_control_solve(payload)
            record, why = self.builds.solve(ask.ref, ask.session, self.owner)
        else:
            ask = _BRIDGE_DECODERS[kind](payload, buildid)
            record = self.builds.build_of(buildid, self.owner)
            why = "" if record is not None else \
                f"dockgate: gateway call for unknown build {buildid!r}"
            if record is not None:
                ask = replace(ask, session=record.session)
        if record is None:
            return Pending(stream, _refusal(why), kind=kind)
        verdict = judge_solve(j.policy, ask, j.context, peer=j.peer)
        foreign = self.builds.foreign_session(verdict.facts.get("sessions", ()), self.owner)
        if foreign is not None:
            verdict = _refusal(f"dockgate: {foreign} names a session of another caller "
                               "(the daemon would read that caller's files)")
        rewrite: tuple[bytes, bytes] | None = None
        sets: tuple[str, ...] = ()
        verdict = private_cache_verdict(j, verdict)
        if verdict.allowed and j.tenant is not None and \
                ask.frontend_attrs.get("image-resolve-mode") == "pull":
            verdict = tenant_denial(j, "tenant-images", PULLED_BASES, verdict.facts)
        if verdict.allowed and j.tenant is not None and verdict.facts.get("unread_triggers"):
            where, why = verdict.facts["unread_triggers"][0]
            verdict = tenant_denial(j, "tenant-images", f"{where}: {why} (its ONBUILD "
                                    "triggers would run in this build unchecked)", verdict.facts)
        if verdict.allowed and j.tenant is not None:
            label = buildkit_label_refusal(ask.frontend_attrs, j.tenant.name)
            if label is not None:
                verdict = BuildVerdict(False, label, rule="tenant-images", facts=verdict.facts)
            else:
                try:
                    rewrite, sets = self._tenant_rewrite(record, ask, payload, j.tenant)
                except _NoFrontend as e:
                    verdict = BuildVerdict(False, str(e), rule="tenant-images",
                                           facts=verdict.facts)
        if ask.frontend:
            record.frontend_ask = ask
        record.open.append((self.handle, stream))
        if kind == "control":
            self._solves[stream] = record.ref
        record.decisions.append(_decision(kind, verdict, sets))
        return Pending(stream, verdict, ref=record.ref, session=record.session, kind=kind,
                       rewrite=rewrite)

    @staticmethod
    def _tenant_rewrite(record: SolveRecord, ask: SolveAsk, payload: bytes, tenant: Tenant
                        ) -> tuple[tuple[bytes, bytes] | None, tuple[str, ...]]:
        """``(payload, rewritten)`` when the tenant's solve must go on changed, and what
        was set (for the audit record).

        The owner label: a Control Solve whose exporters write an image gets it among
        its frontend options; so does each frontend sub-solve of that build (buildx and
        compose run the dockerfile frontend through the gateway with the same options,
        and return the image config it made, labels and all: ``LLBBridge/Return``).

        The shared build cache, while the tenant's is private: every solve with a
        frontend gets ``no-cache`` (empty: every stage), and every op of an LLB
        definition it carries (a raw solve, the frontend's inputs) is marked to ignore
        the cache, so no step is answered from a cached result, whoever's it is
        (``solve.NO_CACHE_ATTR``).  A client's own value of either option is replaced.
        """
        if ask.via == "control":
            record.writes_image = writes_image(ask.exporters)
            if record.writes_image and not ask.frontend and ask.ops:
                raise _NoFrontend(
                    "dockgate: a tenant's build that writes an image needs a frontend (a raw "
                    "LLB definition has no image config to carry the owner label); the build "
                    "is refused")
        attrs: dict[str, str] = {}
        if record.writes_image and (ask.via == "control" or ask.frontend):
            attrs[OWNER_ATTR] = tenant.name
        private = tenant.private_build_cache
        if private and ask.frontend:
            attrs[NO_CACHE_ATTR] = ""
        if not attrs and not (private and ask.ops):
            return None, ()
        new, marked = tenant_solve(payload, ask.via, attrs, private)
        sets = [f"{key}={value}" for key, value in attrs.items()]
        if marked:
            sets.append(f"ignore_cache on {marked} LLB ops")
        return (payload, new), tuple(sets)

    def _note(self, ref: str, kind: str, verdict: BuildVerdict, record: SolveRecord | None
              ) -> None:
        record = record or self.builds.build_of(ref, self.owner)
        if record is not None:
            record.decisions.append(_decision(kind, verdict))

    def unreadable(self, stream: int, side: Side, error: Unreadable) -> str:
        return f"dockgate: cannot read a BuildKit message ({error}); the build is refused"

    def ending(self, stream: int, side: Side) -> str | None:
        return None

    def connection_lost(self) -> None:
        """The connection ended: each Control Solve still open on it ends with it (its
        record written, its holds released)."""
        while self._solves:
            self.closed(next(iter(self._solves)))

    def closed(self, stream: int) -> None:
        call = self._calls.pop(stream, None)
        self._seen.discard(stream)
        if call is not None:
            waiting = self._early.get(call[1], [])
            waiting[:] = [w for w in waiting if w[0] != stream]
        for solve in self.builds.solves.values():
            solve.open = [(h, s) for h, s in solve.open
                          if not (h is self.handle and s == stream)]
        ref = self._solves.pop(stream, None)
        record = self.builds.solves.get(ref) if ref is not None else None
        if record is None:
            return
        facts = audit_facts(record, self.builds.sessions.get(record.session))
        self.builds.finished(record.ref)
        if self.on_closed is not None:
            self.on_closed(facts)


class _Refused(Undecodable):
    """A Dockerfile transfer dockgate cannot judge (the message is the refusal)."""


KeptKey = tuple[str, str, tuple[str, ...], str, tuple[int, ...]]
"""(caller, session shared key, ``dir-name`` values, path, ``stat_class``)."""


def stat_class(p: Packet) -> tuple[int, ...]:
    """The fields of a file's fsutil stat by which the daemon tells a kept copy is current.

    fsutil's receiver skips a regular file whose size, modification time, mode,
    owner (and link target, device numbers: never a regular file's) equal its kept
    copy's.  Some daemons (BuildKit 0.8, engine 20.10) widen the owner's mode bits
    to group and others before they compare, so two stats that differ only there
    are one file to them: the group and other bits are left out here, so a class
    is never finer than the daemon's comparison.
    """
    return (p.size, p.mod_time, p.mode & ~0o077, p.uid, p.gid)


class KeptDockerfiles:
    """The Dockerfile bytes dockgate judged and forwarded, per what the daemon keeps them by.

    The daemon keeps what a ``dockerfile`` transfer wrote under a key made of the
    local source's name (the ``dir-name`` of the DiffCopy), the frontend's
    ``SharedKeyHint`` (not on the wire: dockgate does not see it) and the
    session's shared key (the ``/session`` upgrade header; nothing in the DiffCopy
    call names it); on the next build under that key it asks only for the files
    whose stat changed.  A Dockerfile it does not ask for is the copy it kept, and
    that copy is bytes an earlier transfer forwarded: through this dockgate
    (bound to one caller, ``Builds.session_opened``) only after they were judged
    and allowed.  So the bytes remembered here for the same caller, shared key,
    directory, path and ``stat_class`` include the daemon's copy, and judging
    each of them with this build's arguments judges what the daemon will use.
    Several distinct contents under one class (the same stat written twice, or
    kept under two hints) are all judged; more than ``PER_CLASS`` of them, and
    the class is unknown (refused).

    Not covered, and refused as before: a copy the daemon kept from a transfer
    that did not pass through this dockgate (direct to the daemon, another
    dockgate, or one forgotten here: bounded, least recently used first; a
    restart forgets all), and any transfer of a session without a shared key
    (the daemon's key is then the same for every caller).
    """

    LIMIT = 512
    PER_CLASS = 4

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._kept: OrderedDict[KeptKey, tuple[bytes, ...]] = OrderedDict()

    def remember(self, key: KeptKey, dockerfile: bytes) -> None:
        """``dockerfile`` was judged and allowed: it goes to the daemon, which may keep it."""
        known = self._kept.pop(key, None)
        if known is None:
            known = (dockerfile,)
        elif known and dockerfile not in known:
            known = (*known, dockerfile) if len(known) < self.PER_CLASS else ()
        self._kept[key] = known
        while len(self._kept) > self.limit:
            self._kept.popitem(last=False)

    def recall(self, key: KeptKey) -> tuple[bytes, ...]:
        """Each content the daemon's copy for ``key`` may be (none: unknown)."""
        known = self._kept.get(key)
        if known is None:
            return ()
        self._kept.move_to_end(key)
        return known


class _Dockerfiles:
    """The Dockerfiles of one ``dockerfile`` DiffCopy, from the CLI's fsutil packets.

    Every regular file of that directory except ``*.dockerignore`` is judged as a
    Dockerfile (the frontend reads only the one its ``filename`` names, so a
    file judged for nothing costs nothing, and one missed would pass unread).
    None of a Dockerfile's bytes reach the daemon before its verdict: the
    daemon keeps what a transfer wrote for the next build of the same shared
    key, so not even a refused file's first bytes may land there.  For the same
    reason, when the daemon is done asking (its FIN: it has written every file
    it asked for) without having asked for every Dockerfile it was offered, it
    builds from the copy it kept: that copy is judged again with this build's
    arguments from what dockgate remembers of the transfer that left it
    (``KeptDockerfiles``), and the daemon's FIN waits for the verdicts (the CLI
    answers it with its own FIN and ends the call, which a held stream could not
    take); a copy dockgate has no memory of is refused.  A CLI's FIN that finds
    a Dockerfile not asked for is refused too.
    """

    def __init__(self, kept: Callable[[str, tuple[int, ...]], tuple[bytes, ...]]) -> None:
        self.index = 0
        self.kept = kept
        """What dockgate remembers of a kept Dockerfile: (path, ``stat_class``) → contents."""
        self.files: dict[int, tuple[str, tuple[int, ...]]] = {}
        self.open: dict[int, bytearray] = {}
        self.held = 0

    def packet(self, side: Side, payload: bytes
               ) -> tuple[bool, list[tuple[str, tuple[int, ...], bytes]]]:
        """(hold from this packet on, the Dockerfiles to judge now: path, ``stat_class``,
        bytes): one this packet ends, or at the daemon's FIN each kept copy it will use."""
        p = decode_filesync_packet(payload)
        if side == "daemon":
            # Its requests (the CLI's data for them is read as it comes), and its FIN.
            if p.kind == "fin" and self.files:
                return True, self._kept_copies()
            return False, []
        if p.kind == "fin" and self.files:
            raise _Refused(self._not_asked(sorted(self.files.values())[0][0]))
        if p.kind == "stat":
            if p.path and p.mode & _GO_MODE_TYPE == 0 and \
                    not os.path.basename(p.path).endswith(".dockerignore"):
                self.files[self.index] = (p.path, stat_class(p))
            self.index += 1
            return bool(self.open), []
        if p.kind != "data" or p.id not in self.files:
            return bool(self.open), []
        buf = self.open.setdefault(p.id, bytearray())
        if p.data:
            buf += p.data
            self.held += len(p.data)
            if self.held > MAX_DOCKERFILE:
                raise _Refused(f"dockgate: a Dockerfile larger than {MAX_DOCKERFILE >> 10} KiB "
                                "is more than dockgate can hold while it judges it (HTTP/2 "
                                "flow control); the build is refused")
            return True, []
        del self.open[p.id]
        if not self.open:
            self.held = 0
        path, stat = self.files.pop(p.id)
        return True, [(path, stat, bytes(buf))]

    def _kept_copies(self) -> list[tuple[str, tuple[int, ...], bytes]]:
        """The Dockerfiles the daemon did not ask for, as remembered (or refused)."""
        copies: list[tuple[str, tuple[int, ...], bytes]] = []
        for path, stat in sorted(self.files.values()):
            known = self.kept(path, stat)
            if not known:
                raise _Refused(self._not_asked(path))
            copies.extend((path, (), data) for data in known)
        self.files.clear()
        return copies

    @staticmethod
    def _not_asked(path: str) -> str:
        return (f"dockgate: the daemon did not ask for the Dockerfile {path!r} (it kept one "
                "from an earlier build that dockgate did not judge, or no longer remembers); "
                "the build is refused")


def _bytes_message(payload: bytes) -> bytes:
    """An upload chunk: BuildKit's ``BytesMessage`` (field 1, bytes), which has the wire
    form of protobuf's well-known ``BytesValue``."""
    try:
        msg = wrappers_pb2.BytesValue.FromString(payload)
    except DecodeError as e:
        raise Undecodable(f"an upload chunk is not a BytesMessage: {e}") from None
    if len(UnknownFieldSet(msg)):
        raise Undecodable("an upload chunk carries fields dockgate does not know")
    return bytes(msg.value)


class _Upload:
    """The context a ``docker build -`` uploads: its Dockerfile, read as it streams."""

    def __init__(self, filename: str) -> None:
        self.check = ContextCheck(filename)
        self.judged = False


class SessionHooks:
    """``Hooks`` of a ``/session`` connection (the daemon is the HTTP/2 client)."""

    def __init__(self, judge: Judge, builds: Builds, session: str, fail_solves: Callable[
            [str, str], None]) -> None:
        self.judge = judge
        self.builds = builds
        self.session = session
        self.pending: list[Pending] = []
        self._fail_solves = fail_solves
        self._files: dict[int, _Dockerfiles] = {}
        self._dirs: dict[int, tuple[str, ...]] = {}
        self._uploads: dict[int, _Upload] = {}
        self._secret_streams: set[int] = set()
        self._judging: dict[int, int] = {}
        """Dockerfiles per stream whose verdict the I/O layer has not applied yet."""
        self.refusal: str | None = None
        """Why this session may not serve (another caller's): every call is refused
        with it, so the build fails with the reason."""

    def opened(self, stream: int, headers: list[tuple[str, str]]) -> Plan | str | None:
        if self.refusal is not None:
            return self.refusal
        path = _header(headers, ":path")
        info = self.builds.sessions.get(self.session)
        if path == DIFFCOPY:
            names = _values(headers, "dir-name")
            if info is not None:
                info.dirs.extend(names)
            if DOCKERFILE_DIR in names:
                self._files[stream] = _Dockerfiles(
                    lambda path, stat: self._kept(names, path, stat, None))
                self._dirs[stream] = tuple(names)
                return Plan(frozenset({"client", "daemon"}))
            return None
        if path == GET_SECRET:
            self._secret_streams.add(stream)
            return Plan(frozenset({"daemon"}))
        if path == UPLOAD:
            return self._upload(stream)
        if path in SESSION_RELAYED:
            return None
        return f"dockgate: session call {path} is not mediated by dockgate"

    def message(self, stream: int, side: Side, payload: bytes) -> bool:
        try:
            if stream in self._secret_streams:
                info = self.builds.sessions.get(self.session)
                secret = decode_secret_request(payload)
                if info is not None:
                    info.secrets.append(secret)
                return False
            upload = self._uploads.get(stream)
            if upload is not None:
                return self._upload_chunk(stream, upload, _bytes_message(payload))
            files = self._files.get(stream)
            if files is None:
                return False
            hold, done = files.packet(side, payload)
        except _Refused as e:
            self._refuse(stream, str(e))
            return True
        except Undecodable as e:
            self._refuse(stream, f"dockgate: cannot decode a session message ({e}); "
                                 "the build is refused")
            return True
        for path, stat, dockerfile in done:
            if self._judge_dockerfile(stream, dockerfile).allowed and stat:
                # On to the daemon, which may keep it (a kept copy has no ``stat``).
                self._kept(self._dirs[stream], path, stat, dockerfile)
        return hold

    def _kept(self, dirs: Any, path: str, stat: tuple[int, ...], dockerfile: bytes | None
              ) -> tuple[bytes, ...]:
        """Remember an allowed ``dockerfile`` the daemon may keep, or (None) recall what it
        may have kept: only for a session with a shared key (``KeptDockerfiles``)."""
        info = self.builds.sessions.get(self.session)
        if info is None or not info.shared_key:
            return ()
        key: KeptKey = (self.judge.owner, info.shared_key, tuple(dirs), path, stat)
        if dockerfile is None:
            return self.builds.kept.recall(key)
        self.builds.kept.remember(key, dockerfile)
        return ()

    def _frontend_ask(self) -> SolveAsk | None:
        asks = [r.frontend_ask for r in self.builds.for_session(self.session)
                if r.frontend_ask is not None]
        return asks[-1] if asks else None

    def _verdict(self, dockerfile: bytes) -> BuildVerdict:
        """The Dockerfile judged with the solve this session serves (noted for its audit)."""
        j = self.judge
        verdict = private_cache_verdict(j, judge_dockerfile(
            j.policy, self._frontend_ask(), dockerfile, j.context, peer=j.peer))
        for record in self.builds.for_session(self.session):
            record.decisions.append(_decision("dockerfile", verdict))
        return verdict

    def _judge_dockerfile(self, stream: int, dockerfile: bytes) -> BuildVerdict:
        verdict = self._verdict(dockerfile)
        self._judging[stream] = self._judging.get(stream, 0) + 1
        self.pending.append(Pending(stream, verdict, session=self.session, kind="dockerfile"))
        return verdict

    def _upload(self, stream: int) -> Plan | str:
        if self.judge.tenant is not None:
            # Its images would be checked with the daemon while the upload ends.
            return "dockgate: a tenant's build context from standard input is not mediated"
        ask = self._frontend_ask()
        filename = ask.frontend_attrs.get("filename", "") if ask is not None else ""
        try:
            self._uploads[stream] = _Upload(filename)
        except ContextError as e:
            return f"dockgate: {e}; the build is refused"
        return Plan(frozenset({"client"}))

    def _upload_chunk(self, stream: int, upload: _Upload, data: bytes) -> bool:
        """Read a chunk of the uploaded context; judge its Dockerfile once it is whole.
        A refusal holds the stream until the I/O layer refuses it."""
        try:
            upload.check.feed(data)
        except ContextError as e:
            self._refuse(stream, f"dockgate: {e}; the build is refused")
            return True
        why = self._judge_upload(upload)
        if why is not None:
            self._refuse(stream, why)
            return True
        return False

    def _judge_upload(self, upload: _Upload) -> str | None:
        """The refusal for the upload's Dockerfile once it is known and refused, else None."""
        if upload.judged or upload.check.dockerfile is None:
            return None
        upload.judged = True
        verdict = self._verdict(upload.check.dockerfile)
        return None if verdict.allowed else verdict.message

    def ending(self, stream: int, side: Side) -> str | None:
        """The end of an upload goes on only once its Dockerfile was found and allowed."""
        upload = self._uploads.get(stream)
        if upload is None or upload.judged:
            return None
        try:
            upload.check.finish()
        except ContextError as e:
            why: str | None = f"dockgate: {e}; the build is refused"
        else:
            why = self._judge_upload(upload)
        if why is not None:
            self._fail_solves(self.session, why)
        return why

    def _refuse(self, stream: int, message: str) -> None:
        self.pending.append(Pending(stream, _refusal(message), session=self.session,
                                    kind="dockerfile"))

    def unreadable(self, stream: int, side: Side, error: Unreadable) -> str:
        message = f"dockgate: cannot read a session message ({error}); the build is refused"
        self._fail_solves(self.session, message)
        return message

    def decided(self, stream: int) -> bool:
        """One Dockerfile verdict of ``stream`` was applied (allowed); whether what the
        stream held may go on (no verdict outstanding, no Dockerfile half arrived)."""
        left = self._judging.get(stream, 0) - 1
        if left > 0:
            self._judging[stream] = left
            return False
        self._judging.pop(stream, None)
        files = self._files.get(stream)
        return files is None or not files.open

    def closed(self, stream: int) -> None:
        self._files.pop(stream, None)
        self._dirs.pop(stream, None)
        self._uploads.pop(stream, None)
        self._judging.pop(stream, None)
        self._secret_streams.discard(stream)

"""The ``build`` control: what a build makes dockerd fetch, and how its RUN steps run.

One control for both builders.  The classic builder's ``POST /build`` is
judged through the request path as below; BuildKit's solves, Dockerfile and
build containers (read off ``/grpc`` and ``/session`` by ``dockgate.buildkit``)
are judged by ``judge_solve``, ``judge_dockerfile`` and ``judge_container`` at
the end of this module, as the ``image.build`` they are.

Every query parameter of a build is read here (the query schema refuses any
parameter the API does not define), and the classic builder's Dockerfile is
read out of the streamed context by the I/O layer (``dockgate.buildctx``) and
handed in as ``DecisionContext.dockerfile``:

==================  =====================================================
``remote``          a context dockerd fetches itself (git, http): a fetch
                    (``allow_remote_context``); BuildKit's ``client-session``
                    is not a fetch
``ADD <url>``       dockerd downloads it from the host's network, even under
                    ``networkmode=none`` (``allow_url_sources``)
``cgroupparent``    where RUN containers sit in the host's cgroups
                    (``allow_cgroup_parent``; empty is the default)
``securityopt``     refused on Linux by the daemon; refused here when set
``networkmode``     ``host``/paths by the ``namespaces`` control;
                    ``container:X`` joins X, which must pass the policy
                    (``dockgate.policy.joins``)
``version=2``       BuildKit reads the Dockerfile through its session:
                    without ``remote=client-session`` refused when URL
                    sources are not allowed
others              ``dockerfile``, ``t``, ``extrahosts``, ``q``, ``nocache``,
                    ``cachefrom``, ``pull``, ``rm``, ``forcerm``, memory and
                    CPU limits, ``buildargs``, ``shmsize``, ``squash``,
                    ``labels``, ``platform``, ``target``, ``outputs``,
                    ``ulimits``, ``isolation``, ``buildid``, ``session``:
                    image metadata or limits of the RUN containers, inert
                    for the host
==================  =====================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dockgate.buildctx.dockerfile import DockerfileFacts
from dockgate.buildkit.facts import BuildKitFacts, container_facts, dockerfile_facts, solve_facts
from dockgate.buildkit.solve import ContainerAsk, SolveAsk
from dockgate.model import CanonicalRequest, Operation, Peer
from dockgate.policy import spelling
from dockgate.policy.controls import Check, DecisionContext, Finding, _image_pattern
from dockgate.policy.denial import RuleFinding, denial_reason
from dockgate.policy.facts import Facts, extract
from dockgate.policy.registries import RegistryAllowlist

BUILD_ENDPOINT = "image.build"


def _query(req: CanonicalRequest, name: str) -> list[str]:
    return [v for k, v in req.query if k == name]


def buildkit(req: CanonicalRequest) -> bool:
    """Whether the request selects BuildKit (``version=2``)."""
    return any(v.strip() == "2" for v in _query(req, "version"))


def remote(req: CanonicalRequest) -> str:
    """The ``remote`` parameter ("" when absent)."""
    values = _query(req, "remote")
    return values[0] if values else ""


def buildargs(req: CanonicalRequest) -> dict[str, str | None]:
    """The ``buildargs`` JSON object (already validated and canonical)."""
    out: dict[str, str | None] = {}
    for raw in _query(req, "buildargs"):
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            continue
        if isinstance(value, Mapping):
            out.update({str(k): v if isinstance(v, str) else None for k, v in value.items()})
    return out


def build(cfg: Mapping[str, Any]) -> Check:
    """Fetches and host placement of a build (see the module docstring)."""
    remote_ok = bool(cfg.get("allow_remote_context", False))
    urls_ok = bool(cfg.get("allow_url_sources", False))
    cgroup_ok = bool(cfg.get("allow_cgroup_parent", False))
    frontends = [_image_pattern(g) for g in cfg.get("frontends", ())]

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        if req.endpoint.id != BUILD_ENDPOINT:
            return []
        out: list[Finding] = []
        where = remote(req)
        if where and not remote_ok and not (buildkit(req) and where == "client-session"):
            out.append(Finding("query.remote", f"{where!r} makes the daemon fetch the context"))
        if not cgroup_ok:
            out.extend(
                Finding("query.cgroupparent", f"cgroup parent {v!r} is not allowed")
                for v in _query(req, "cgroupparent")
                if v
            )
        out.extend(
            Finding("query.securityopt", f"{v!r} is not allowed")
            for v in _query(req, "securityopt")
            if v not in ("", "[]", "null")
        )
        if not urls_ok and not where:
            if buildkit(req):
                out.append(
                    Finding("query.version", "2 (BuildKit) reads a Dockerfile dockgate cannot see")
                )
            else:
                df = ctx.dockerfile
                if df is None:
                    out.append(Finding("Dockerfile", "was not read (dockgate cannot check it)"))
                else:
                    out.extend(
                        Finding(f"Dockerfile {w}", f"source {u} is fetched by the daemon")
                        for w, u in df.urls
                    )
                    out.extend(Finding(f"Dockerfile {w}", why) for w, why in df.problems)
        return out

    def judge_buildkit(bk: BuildKitFacts) -> list[Finding]:
        out = [Finding(w, why) for w, why in bk.refusals]
        if not remote_ok:
            out.extend(
                Finding(w, f"{u!r} makes the daemon fetch the context") for w, u in bk.remote
            )
        if not urls_ok:
            out.extend(Finding(w, f"source {u} is fetched by the daemon") for w, u in bk.urls)
            out.extend(Finding(w, f"{what} is contacted by the daemon") for w, what in bk.services)
        if not cgroup_ok:
            out.extend(
                Finding(w, f"cgroup parent {v!r} is not allowed") for w, v in bk.cgroup_parents
            )
        for w, raw in bk.frontends:
            try:
                ref = spelling.image_ref(raw)
            except ValueError as e:
                out.append(Finding(w, f"frontend image {raw!r} is invalid: {e}"))
                continue
            if not any(p.match(ref.full if tagged else ref.name) for p, tagged in frontends):
                out.append(Finding(w, f"frontend image {ref.full} is not in build.frontends"))
        return out

    return _BuildCheck(check, not urls_ok, judge_buildkit)


class _BuildCheck:
    """The build check, marked with whether it reads the Dockerfile (``wants_dockerfile``),
    with the part that judges BuildKit's facts (``buildkit``)."""

    def __init__(
        self,
        check: Check,
        reads_dockerfile: bool,
        buildkit: Callable[[BuildKitFacts], list[Finding]],
    ) -> None:
        self._check = check
        self.reads_dockerfile = reads_dockerfile
        self.buildkit = buildkit

    def __call__(self, facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        return self._check(facts, req, ctx)


def wants_dockerfile(policy: Any, request: CanonicalRequest, peer: Peer) -> bool:
    """Whether deciding ``request`` needs the Dockerfile out of its context.

    True for a classic build from a streamed context when a ``build`` rule
    that applies (not exempt) forbids URL sources.  The I/O layer then reads
    the context up to the Dockerfile before deciding.
    """
    if request.endpoint.id != BUILD_ENDPOINT or buildkit(request) or remote(request):
        return False
    for rule in getattr(policy, "rules", ()):
        if rule.control != "build" or not rule.applies_to(request.endpoint.id):
            continue
        if rule.exempts(peer):
            continue
        if getattr(rule.check, "reads_dockerfile", False):
            return True
    return False




# -- BuildKit -------------------------------------------------------------------
#
# A BuildKit build is judged as the build it is: an ``image.build`` under the
# same rules (``applies_to``, exemptions, modes) as the classic builder's, with
# BuildKit's facts put where the classic request's would be (a host network
# into the namespaces facts, an insecure step into the privileged facts, its
# images into the images facts), plus the registries and build checks below.


@dataclass(frozen=True, slots=True)
class BuildVerdict:
    """The policy's answer to one BuildKit message (a solve, a Dockerfile, a container).

    Attributes:
        allowed: whether the message may reach the daemon.
        message: on a denial the full ``dockgate: denied by policy P rule R: ...``
            text (``denial.denial_reason``), which the wire layer sends as the
            gRPC status message so the CLI prints it; on an allow, ``allowed by
            policy P`` (plus warn/audit notes).
        rule: the deciding rule ("" when allowed).
        facts: what was decided on, for the audit record (JSON-able; secrets by
            id only).
        image_refs: images the build reads (sources, ``# syntax=`` frontends,
            mounts from images), which the I/O layer checks for tenant ownership.
        warnings: warn-mode findings, ready to show (``dockgate: policy P rule R: ...``).
        image_names: image names the build writes on the daemon (exporter ``name``),
            which the I/O layer checks for tenants: free, or the tenant's own.
        bases: a Dockerfile's base images, whose ``ONBUILD`` triggers the I/O layer
            reads from the daemon and judges as part of the build.
        named: images of ``image_refs`` (and ``bases``) named only where the daemon's
            dockerfile frontend takes them from a named context of the solve, if its
            BuildKit has named contexts (``facts.BuildKitFacts.named``).
    """

    allowed: bool
    message: str
    rule: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)
    image_refs: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    image_names: tuple[str, ...] = ()
    bases: tuple[str, ...] = ()
    named: tuple[str, ...] = ()


_BUILD = Operation(BUILD_ENDPOINT, "POST", "/build", "stream")
_AS_BUILD = CanonicalRequest("POST", _BUILD, "/build")
_NO_PEER = Peer("", "unix", "")


def _classic_facts(bk: BuildKitFacts) -> Facts:
    """The facts of an empty ``POST /build``, with BuildKit's put where a classic build's go."""
    facts = extract(_AS_BUILD)
    facts.namespaces.extend((w, "NetworkMode", "host") for w, _ in bk.network_host)
    facts.privileged.extend((f"{w} (a privileged build step)", True) for w, _ in bk.insecure)
    facts.cgroup_parent.extend(bk.cgroup_parents)
    facts.ulimits.extend(bk.ulimits)
    facts.device_requests.extend(bk.devices)
    facts.images.extend(bk.images + bk.frontends)
    return facts


def _registry_findings(allowlist: RegistryAllowlist, bk: BuildKitFacts) -> list[Finding]:
    refs = [(w, "ref", r) for w, r in bk.images + bk.frontends + bk.registries + bk.pushes]
    refs += [(w, "url", u) for w, u in bk.remote + bk.urls]
    return [
        Finding(w, why) for w, kind, value in refs
        if (why := allowlist.ref_refusal(kind, value)) is not None
    ]


def judge_facts(
    policy: Any, bk: BuildKitFacts, ctx: DecisionContext | None = None, peer: Peer | None = None
) -> BuildVerdict:
    """Judge BuildKit facts under every rule of ``policy`` that applies to ``image.build``.

    Rules that exempt ``peer`` are skipped (without a peer none is).  The
    deciding rule is the first enforce rule with a finding, as for any request.
    """
    facts = _classic_facts(bk)
    context = replace(ctx or DecisionContext(), dockerfile=DockerfileFacts())
    found: list[RuleFinding] = []
    for rule in getattr(policy, "rules", ()):
        if not rule.applies_to(BUILD_ENDPOINT) or rule.exempts(peer or _NO_PEER):
            continue
        got = list(rule.check(facts, _AS_BUILD, context))
        allowlist = getattr(rule.check, "allowlist", None)
        if isinstance(allowlist, RegistryAllowlist):
            got += _registry_findings(allowlist, bk)
        if isinstance(rule.check, _BuildCheck):
            got += rule.check.buildkit(bk)
        found.extend(RuleFinding(rule.id, rule.mode, f) for f in got)
    name = getattr(policy, "name", "?")
    record = bk.record()
    refs = bk.image_refs()
    names = tuple(dict.fromkeys(n for _, n in bk.names))
    enforced = [rf for rf in found if rf.mode == "enforce"]
    if enforced:
        return BuildVerdict(False, "dockgate: " + denial_reason(name, enforced),
                            enforced[0].rule, record, refs)
    message = f"allowed by policy {name}"
    notes = [rf for rf in found if rf.mode in ("warn", "audit")]
    if notes:
        message += "; " + "; ".join(f"{rf.mode}: {rf.text}" for rf in notes)
    warnings = tuple(
        f"dockgate: policy {name} rule {rf.rule}: {rf.finding.text}"
        for rf in found if rf.mode == "warn"
    )
    bases = tuple(dict.fromkeys(n for _, n in bk.bases))
    named_pairs = set(bk.named)
    elsewhere = {n for p in bk.images if p not in named_pairs for n in p[1:]} | \
        {n for _, n in bk.frontends + bk.cache_images}
    named = tuple(dict.fromkeys(n for _, n in bk.named if n not in elsewhere))
    return BuildVerdict(True, message, "", record, refs, warnings, names, bases, named)


def judge_solve(
    policy: Any, ask: SolveAsk, ctx: DecisionContext | None = None, *, peer: Peer | None = None
) -> BuildVerdict:
    """Judge a Control or LLBBridge Solve: entitlements, frontend and its options,
    the LLB's sources and steps, exporters and caches."""
    return judge_facts(policy, solve_facts(ask), ctx, peer)


def judge_dockerfile(
    policy: Any,
    ask: SolveAsk | None,
    dockerfile: bytes | DockerfileFacts,
    ctx: DecisionContext | None = None,
    *,
    peer: Peer | None = None,
    buildargs: Mapping[str, str | None] | None = None,
) -> BuildVerdict:
    """Judge the Dockerfile the frontend reads through the session.

    ``dockerfile`` is its bytes, or facts already parsed (with the ``ONBUILD``
    triggers of its base images added by ``joincheck.check_base_triggers``).
    The solve's build args (``build-arg:*``) resolve ``FROM`` variables;
    without a solve (a ``POST /build?version=2``) pass that request's
    ``buildargs(request)``.
    """
    bk, _ = dockerfile_facts(dockerfile, ask, buildargs)
    return judge_facts(policy, bk, ctx, peer)


def judge_container(
    policy: Any, ask: ContainerAsk, ctx: DecisionContext | None = None, *, peer: Peer | None = None
) -> BuildVerdict:
    """Judge a gateway NewContainer (its network) or an ExecProcess Init (its security)."""
    return judge_facts(policy, container_facts(ask), ctx, peer)

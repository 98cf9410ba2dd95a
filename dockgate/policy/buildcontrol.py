"""The ``build`` control: what ``POST /build`` makes dockerd fetch, and how its RUN steps run.

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
``version=2``       BuildKit reads the Dockerfile through its session,
                    where dockgate cannot see it: refused when URL sources
                    are not allowed
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dockgate.buildkit.solve import ContainerAsk, SolveAsk
from dockgate.model import CanonicalRequest, Peer
from dockgate.policy.controls import Check, DecisionContext, Finding
from dockgate.policy.facts import Facts

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

    return _BuildCheck(check, not urls_ok)


class _BuildCheck:
    """The build check, marked with whether it reads the Dockerfile (``wants_dockerfile``)."""

    def __init__(self, check: Check, reads_dockerfile: bool) -> None:
        self._check = check
        self.reads_dockerfile = reads_dockerfile

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


@dataclass(frozen=True, slots=True)
class BuildVerdict:
    """The policy's answer to one BuildKit message (a solve, a Dockerfile, a container).

    Attributes:
        allowed: whether the message may reach the daemon.
        message: on a denial the full ``dockgate: denied by policy P rule R: ...``
            text (``rules.denial_reason``), which the wire layer sends as the
            gRPC status message so the CLI prints it; on an allow, ``allowed by
            policy P`` (plus warn/audit notes).
        rule: the deciding rule ("" when allowed).
        facts: what was decided on, for the audit record (JSON-able).
        image_refs: images the build reads (sources, ``# syntax=`` frontends,
            mounts from images), which the I/O layer checks for tenant ownership.
    """

    allowed: bool
    message: str
    rule: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)
    image_refs: tuple[str, ...] = ()


def judge_solve(
    policy: Any, ask: SolveAsk, ctx: DecisionContext | None = None, *, peer: Peer | None = None
) -> BuildVerdict:
    """Judge a Control or LLBBridge Solve under ``policy`` (rules exempting ``peer`` skipped)."""
    raise NotImplementedError


def judge_dockerfile(
    policy: Any,
    ask: SolveAsk | None,
    dockerfile: bytes,
    ctx: DecisionContext | None = None,
    *,
    peer: Peer | None = None,
) -> BuildVerdict:
    """Judge the Dockerfile the dockerfile frontend read through the session."""
    raise NotImplementedError


def judge_container(
    policy: Any, ask: ContainerAsk, ctx: DecisionContext | None = None, *, peer: Peer | None = None
) -> BuildVerdict:
    """Judge a gateway NewContainer."""
    raise NotImplementedError

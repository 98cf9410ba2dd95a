"""What a BuildKit build asks the daemon to do as root: from a solve, a Dockerfile, a container.

The ``build`` control (``dockgate.policy.buildcontrol``) judges these facts
with the same controls as the classic builder's: an image the daemon pulls
goes to the registries (and images) rules, a host network to namespaces, an
insecure step to privileged, a fetch to ``allow_url_sources`` /
``allow_remote_context``.  Reading them is kept apart from judging them so
that the audit record shows exactly what was decided.

Closed worlds: every frontend option the dockerfile frontend reads
(moby/buildkit ``frontend/dockerui``, ``frontend/dockerfile/builder``, and
what buildx sends) is classified below; an option, a source scheme, an
exporter, a cache backend, an entitlement or an op kind dockgate does not
know is a refusal, since the daemon could act on it where dockgate cannot
see.  Each fact carries ``where`` it came from, so the denial names it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dockgate.admission.jsonstrict import go_field
from dockgate.buildctx.dockerfile import DockerfileFacts, parse, triggers
from dockgate.buildkit.solve import DOCKERFILE_INPUT, ContainerAsk, LlbMount, LlbOp, SolveAsk

DOCKERFILE_DIR = "dockerfile"
"""The session directory the dockerfile frontend reads its Dockerfile from (the one
``buildkit.mediation`` reads), unless ``dockerfilekey`` names another."""

Pair = tuple[str, str]


@dataclass
class BuildKitFacts:
    """Each list holds ``(where, value)``; ``where`` names the option, op or line."""

    network_host: list[Pair] = field(default_factory=list)
    insecure: list[Pair] = field(default_factory=list)
    cgroup_parents: list[Pair] = field(default_factory=list)
    ulimits: list[Pair] = field(default_factory=list)
    devices: list[Pair] = field(default_factory=list)
    remote: list[Pair] = field(default_factory=list)
    """The build context fetched by the daemon (git or http): ``allow_remote_context``."""
    urls: list[Pair] = field(default_factory=list)
    """Other git and http sources the daemon fetches: ``allow_url_sources``."""
    services: list[Pair] = field(default_factory=list)
    """Cache backends the daemon contacts (gha, s3, azblob): ``allow_url_sources``."""
    images: list[Pair] = field(default_factory=list)
    """Images the daemon pulls or reads (sources, named contexts, Dockerfile)."""
    bases: list[Pair] = field(default_factory=list)
    """The Dockerfile's ``FROM`` images and ``docker-image://`` named contexts (among
    ``images``), whose ``ONBUILD`` triggers run in this build: the I/O layer reads them
    (``joincheck.base_triggers``)."""
    named: list[Pair] = field(default_factory=list)
    """Dockerfile images (among ``images``) that the daemon's own dockerfile frontend takes
    from a named context of the solve (``context:NAME``, ``_named_context_images``)
    instead of the daemon's images, where its BuildKit has named contexts (0.10, engine
    23, API 1.42 on): the I/O layer, which knows the daemon, then neither checks nor holds
    them (the context itself is judged with the solve)."""
    unread_triggers: list[Pair] = field(default_factory=list)
    """Named contexts whose image config (``ONBUILD`` triggers included) dockgate cannot
    read: an ``oci-layout://`` store on the client's session, an input's metadata that
    does not decode.  Refused (also among ``refusals``; a tenant's build whatever its
    policy)."""
    frontends: list[Pair] = field(default_factory=list)
    """Frontend images the daemon runs (``# syntax=``, ``source``, BUILDKIT_SYNTAX)."""
    registries: list[Pair] = field(default_factory=list)
    """Registry references the daemon contacts that are not images it reads (cache)."""
    cache_images: list[Pair] = field(default_factory=list)
    """Cache sources of type ``registry`` (among ``registries``): the daemon also reads
    the inline cache of a local image of that name (moby's ``localinlinecache``)."""
    pushes: list[Pair] = field(default_factory=list)
    """Names the daemon pushes to (image exporter ``push=true``, registry cache export)."""
    names: list[Pair] = field(default_factory=list)
    """Image names an ``image``/``moby`` exporter writes on the daemon (for tenants: free
    or the tenant's own, as ``docker build -t``)."""
    refusals: list[Pair] = field(default_factory=list)
    """``(where, why)``: what dockgate does not know or cannot check."""
    sessions: list[Pair] = field(default_factory=list)
    """Session ids the build reads local files or stores from (the I/O layer binds them)."""
    locals: list[Pair] = field(default_factory=list)
    secrets: list[Pair] = field(default_factory=list)
    ssh: list[Pair] = field(default_factory=list)
    cache_mounts: list[Pair] = field(default_factory=list)
    """Cache mounts (``RUN --mount=type=cache``, an LLB or gateway container mount of type
    cache), by id: the daemon shares each id with every build on it."""

    def extend(self, other: BuildKitFacts) -> None:
        """Add every fact of ``other`` to these."""
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))

    def image_refs(self) -> tuple[str, ...]:
        """The images the build reads, each once, in order (for tenant ownership)."""
        seen: dict[str, None] = {}
        for _, ref in self.images + self.frontends + self.cache_images:
            seen.setdefault(ref, None)
        return tuple(seen)

    def record(self) -> dict[str, Any]:
        """The facts as JSON for the audit record: non-empty lists only, secrets by name."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value:
                out[name] = [list(p) for p in value]
        return out


# -- frontend options -----------------------------------------------------------

_INERT_KEYS = frozenset({
    "target", "no-cache", "platform", "multi-platform", "image-resolve-mode", "add-hosts",
    "hostname", "shm-size", "filename", "contextsubdir", "frontend.caps",
    "requestid", "memory", "memswap", "cpushares", "cpuperiod", "cpuquota", "cpusetcpus",
    "cpusetmems", "cmdline", "contextkey",
})
"""Build-target selection, image metadata and limits of the build's own containers."""
_INERT_PREFIXES = ("label:", "vcs:", "sharedkey:", "build-arg:")
_INPUT_METADATA = "input-metadata:"
_IMAGE_CONFIG = "containerimage.config"
_SYNTAX_ARG = "build-arg:BUILDKIT_SYNTAX"
_NETWORK_MODES = {"": None, "default": None, "sandbox": None, "none": None, "host": "host"}
_LOCAL_VALUE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _csv(value: str) -> list[str] | None:
    """Comma-separated words; None when quotes make the split ambiguous."""
    if '"' in value or "'" in value:
        return None
    return [w.strip() for w in value.split(",") if w.strip()]


_SESSION_UPLOAD = re.compile(r"http://buildkit-session/[A-Za-z0-9]+")
"""What buildx sends for a context read from stdin (``docker buildx build - < ctx.tar``):
BuildKit's http source reads a URL whose host is ``buildkit-session`` from the
build's own session (moby/buildkit ``source/http/transport.go``), not the network."""


def _is_remote(value: str) -> bool:
    """Whether a context value is something the daemon fetches rather than a local name
    or the client's own upload."""
    if _SESSION_UPLOAD.fullmatch(value):
        return False
    return bool(value) and not set(value) <= _LOCAL_VALUE


_ATTEST_PREFIXES = ("attest:", "build-arg:BUILDKIT_ATTEST_")
_SBOM_GENERATOR = "docker/buildkit-syft-scanner:stable-1"
"""The frontend's default SBOM scanner image (``frontend/attestations``)."""


def _attestation(facts: BuildKitFacts, where: str, kind: str, value: str) -> None:
    """An attestation the frontend adds: provenance is metadata; an SBOM runs a scanner image."""
    if kind == "provenance":
        return
    if kind != "sbom":
        facts.refusals.append((where, f"attestation {kind!r} is not known to dockgate"))
        return
    words = _csv(value)
    if words is None:
        facts.refusals.append((where, "has quotes dockgate does not read"))
        return
    generator = _SBOM_GENERATOR
    for w in words:
        name, _, v = w.partition("=")
        if name == "generator":
            generator = v
    facts.images.append((where + " (SBOM scanner)", generator))


def _frontend_image(facts: BuildKitFacts, where: str, cmdline: str) -> None:
    ref = cmdline.strip().split(" ", 1)[0]
    if ref:
        facts.frontends.append((where, ref))
    else:
        facts.refusals.append((where, "names no frontend image"))


def _named_context(facts: BuildKitFacts, where: str, value: str) -> None:
    """A ``context:NAME`` value, read by scheme as the dockerfile frontend reads it."""
    scheme, sep, rest = value.partition(":")
    if scheme.startswith("git@"):
        scheme = "git"
    if not sep:
        facts.refusals.append((where, f"{value!r} is not a context dockgate can read"))
    elif scheme == "docker-image":
        ref = rest.removeprefix("//")
        if ref != "scratch":
            # It stands in for a FROM: the frontend runs the image's ONBUILD triggers.
            facts.images.append((where, ref))
            facts.bases.append((where, ref))
    elif scheme in ("git", "http", "https"):
        facts.urls.append((where, value))
    elif scheme == "local":
        facts.locals.append((where, rest))
    elif scheme == "oci-layout":
        # The frontend reads the image config, ONBUILD triggers and all, from the
        # client's store on the session, which dockgate does not read.
        _unread_triggers(facts, where, f"{value!r} is an image whose config (ONBUILD "
                                       "triggers) comes from the client's store, unread")
    elif scheme == "input":
        pass  # a frontend input: its ops are judged, its image config by input-metadata
    else:
        facts.refusals.append((where, f"context {value!r} is not a kind dockgate knows"))


def _unread_triggers(facts: BuildKitFacts, where: str, why: str) -> None:
    facts.unread_triggers.append((where, why))
    facts.refusals.append((where, why))


def _input_metadata(facts: BuildKitFacts, where: str, value: str) -> None:
    """``input-metadata:NAME``: the exporter metadata of a frontend input, whose
    ``containerimage.config`` the frontend takes as the image config of the named
    context ``input:NAME`` (moby/buildkit ``frontend/dockerui``), and whose ``ONBUILD``
    triggers it then runs as instructions of this build: they are read here as a
    Dockerfile's (a config that does not decode as Go decodes it is refused)."""
    try:
        doc = json.loads(value)
        raw = doc.get(_IMAGE_CONFIG) if isinstance(doc, dict) else None
        config = json.loads(base64.b64decode(raw, validate=True)) \
            if isinstance(raw, str) else None
    except (ValueError, binascii.Error):
        _unread_triggers(facts, where, "is input metadata dockgate cannot read")
        return
    onbuild = go_field(go_field(config, "config"), "onbuild")
    if not onbuild:
        return
    if not isinstance(onbuild, list) or not all(isinstance(t, str) for t in onbuild):
        _unread_triggers(facts, where, "has ONBUILD triggers dockgate cannot read")
        return
    df = DockerfileFacts()
    triggers(where, onbuild, df)
    facts.extend(dockerfile_facts(df)[0])


def _cache(facts: BuildKitFacts, where: str, entries: Iterable[tuple[str, Mapping[str, str]]],
           *, export: bool) -> None:
    for i, (kind, attrs) in enumerate(entries):
        at = f"{where}[{i}] type={kind}"
        if kind == "registry":
            ref = attrs.get("ref", "")
            (facts.pushes if export else facts.registries).append((at, ref))
            if not export:
                facts.cache_images.append((at, ref))
        elif kind in ("inline", "local"):
            pass  # in the image, or the client's own store through the session
        elif kind in ("gha", "s3", "azblob"):
            facts.services.append((at, f"cache backend {kind}"))
        else:
            facts.refusals.append((at, f"cache type {kind!r} is not known to dockgate"))


def _cache_imports_json(facts: BuildKitFacts, where: str, raw: str) -> None:
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        facts.refusals.append((where, "is not a JSON array of cache entries"))
        return
    entries = []
    for v in value:
        attrs = v.get("Attrs") or {}
        if not isinstance(v.get("Type"), str) or not isinstance(attrs, Mapping):
            facts.refusals.append((where, "has a cache entry dockgate cannot read"))
            return
        entries.append((v["Type"], {str(k): str(x) for k, x in attrs.items()}))
    _cache(facts, where, entries, export=False)


def frontend_options(facts: BuildKitFacts, attrs: Mapping[str, str], frontend: str) -> None:
    """Classify every frontend option (``FrontendAttrs`` / ``FrontendOpt``)."""
    context_key = attrs.get("contextkey", "context")
    for key, value in sorted(attrs.items()):
        where = f"frontend option {key}"
        base = key.split("::", 1)[0]  # "context:NAME::linux/amd64" names a platform's context
        if key == _SYNTAX_ARG:
            _frontend_image(facts, where, value)
        elif key.startswith(_ATTEST_PREFIXES):
            kind = key.split(":", 1)[1].removeprefix("BUILDKIT_ATTEST_").lower()
            _attestation(facts, where, kind, value)
        elif key in _INERT_KEYS or base.startswith(_INERT_PREFIXES):
            pass
        elif key == "dockerfilekey":
            if value != DOCKERFILE_DIR:
                # The frontend would read the Dockerfile from the local directory
                # ``value`` of the session, whose transfers dockgate does not read.
                facts.refusals.append((where, f"reads the Dockerfile from {value!r}, not from "
                                              f"the {DOCKERFILE_DIR!r} directory dockgate reads"))
        elif key == "local-sessionid" or base.startswith("local-sessionid:"):
            facts.sessions.append((where, value))
        elif key == "force-network-mode":
            if value.lower() not in _NETWORK_MODES:
                facts.refusals.append((where, f"network mode {value!r} is not known to dockgate"))
            elif _NETWORK_MODES[value.lower()]:
                facts.network_host.append((where, value))
        elif key == "cgroup-parent":
            if value:
                facts.cgroup_parents.append((where, value))
        elif key in ("ulimit", "cache-from"):
            words = _csv(value)
            if words is None:
                facts.refusals.append((where, "has quotes dockgate does not read"))
            elif key == "ulimit":
                facts.ulimits.extend((where, w.partition("=")[0]) for w in words)
            else:
                facts.registries.extend((where, w) for w in words)
                facts.cache_images.extend((where, w) for w in words)
        elif key == "source":
            _frontend_image(facts, where, value)
        elif key == "cache-imports":
            _cache_imports_json(facts, where, value)
        elif base.startswith("context:"):
            _named_context(facts, where, value)
        elif key.startswith(_INPUT_METADATA):
            _input_metadata(facts, where, value)
        elif key == "context" or base.startswith("input:"):
            if _is_remote(value):
                facts.remote.append((where, value))
        elif key == context_key:
            pass  # read below
        else:
            facts.refusals.append((where, "is not a frontend option dockgate knows"))
    if context_key != "context":
        value = attrs.get(context_key, "")
        if _is_remote(value):
            facts.remote.append((f"frontend option {context_key} (contextkey)", value))
    if frontend not in ("", "dockerfile.v0", "gateway.v0"):
        facts.refusals.append(("frontend", f"{frontend!r} is not a frontend dockgate knows"))
    if frontend == "gateway.v0" and "source" not in attrs:
        facts.refusals.append(("frontend", "gateway.v0 names no frontend image (source)"))


# -- LLB ------------------------------------------------------------------------

_IMAGE_SCHEMES = ("docker-image", "docker-image+blob")
_FETCH_SCHEMES = ("git", "http", "https")
_SESSION_ATTRS = ("local.session", "oci.session")


def _source(facts: BuildKitFacts, op: LlbOp, where: str) -> None:
    scheme, sep, rest = op.identifier.partition("://")
    for attr in _SESSION_ATTRS:
        if op.attrs.get(attr):
            facts.sessions.append((f"{where} {attr}", op.attrs[attr]))
    if not sep:
        facts.refusals.append((where, f"source {op.identifier!r} is not a kind dockgate knows"))
    elif scheme in _IMAGE_SCHEMES:
        facts.images.append((where, rest))
    elif _SESSION_UPLOAD.fullmatch(op.identifier):
        facts.locals.append((where, op.identifier))
    elif scheme in _FETCH_SCHEMES:
        url = op.attrs.get("git.fullurl", "") if scheme == "git" else ""
        target = facts.remote if op.origin in ("context", "dockerfile") else facts.urls
        target.append((where, op.identifier))
        if url and url != op.identifier:
            target.append((where + " git.fullurl", url))
    elif scheme == "local":
        facts.locals.append((where, rest))
    elif scheme in ("oci-layout", "oci-layout+blob"):
        pass  # the client's content store, through the session
    else:
        facts.refusals.append((where, f"source scheme {scheme!r} is not known to dockgate"))


def _process(facts: BuildKitFacts, where: str, *, network: str, security: str,
             cgroup_parent: str, ulimits: Iterable[str], devices: Iterable[str] = ()) -> None:
    if network == "host":
        facts.network_host.append((where, "network host"))
    if security == "insecure":
        facts.insecure.append((where, "security insecure"))
    if cgroup_parent:
        facts.cgroup_parents.append((where, cgroup_parent))
    facts.ulimits.extend((where, u) for u in ulimits)
    facts.devices.extend((where, d) for d in devices)


def _mounts(facts: BuildKitFacts, where: str, mounts: Iterable[LlbMount]) -> None:
    """The secrets, SSH agents and cache directories an exec op or a container mounts."""
    for m in mounts:
        if m.secret_id:
            facts.secrets.append((where, m.secret_id))
        if m.ssh_id:
            facts.ssh.append((where, m.ssh_id))
        if m.type == "cache":
            # An empty id means the target (moby/buildkit ``solver/llbsolver/vertex.go``).
            facts.cache_mounts.append((where, m.cache_id or m.dest))


def llb_ops(facts: BuildKitFacts, ops: Iterable[LlbOp], where: str) -> None:
    """Sources, exec steps and op kinds of an LLB definition."""
    for i, op in enumerate(ops):
        at = f"{where} op {i} ({op.kind})" if not op.origin else \
            f"{where} input {op.origin} op {i} ({op.kind})"
        if op.kind == "source":
            _source(facts, op, at)
        elif op.kind == "exec":
            _process(facts, at, network=op.network, security=op.security,
                     cgroup_parent=op.cgroup_parent, ulimits=op.ulimits, devices=op.devices)
            _mounts(facts, at, op.mounts)
        elif op.kind in ("build", "passthrough"):
            facts.refusals.append((at, f"a {op.kind} op names work dockgate cannot inspect"))


# -- the whole solve ------------------------------------------------------------

def _dockerfile_input(facts: BuildKitFacts, ask: SolveAsk) -> None:
    """The Dockerfile of a frontend input named ``dockerfile`` (read by the frontend
    instead of the session's): judged like the session's when the input only writes
    files (each file but ``*.dockerignore``, as on the session), else refused."""
    if ask.dockerfile_input is None:
        return
    where = f"frontend input {DOCKERFILE_INPUT}"
    judged = [(p, d) for p, d in ask.dockerfile_input if not p.endswith(".dockerignore")]
    if not judged:
        facts.refusals.append((where, "is not a Dockerfile dockgate can read (only files "
                                      "written by a file op on scratch are)"))
    for path, data in judged:
        df, _ = dockerfile_facts(data, ask)
        for name in facts.__dataclass_fields__:
            getattr(facts, name).extend(
                (f"{where} {path.lstrip('/')} {w.removeprefix('Dockerfile ')}", v)
                for w, v in getattr(df, name))


_GO_FALSE = frozenset({"", "0", "f", "F", "false", "FALSE", "False"})
"""What Go's ``strconv.ParseBool`` reads as false (any other value is true or an error)."""
_EXPORTERS = frozenset({"image", "moby", "local", "tar", "oci", "docker", "cacheonly"})
_ENTITLEMENTS = {"network.host": "network_host", "security.insecure": "insecure"}


def solve_facts(ask: SolveAsk) -> BuildKitFacts:
    """Everything a Control or LLBBridge Solve asks for."""
    facts = BuildKitFacts()
    for e in ask.entitlements:
        name = e.partition("=")[0]
        if name in _ENTITLEMENTS:
            getattr(facts, _ENTITLEMENTS[name]).append((f"entitlement {e}", e))
        elif name == "device":
            facts.devices.append((f"entitlement {e}", e.partition("=")[2]))
        else:
            facts.refusals.append((f"entitlement {e}", "is not an entitlement dockgate knows"))
    if ask.session:
        facts.sessions.append(("session", ask.session))
    frontend_options(facts, ask.frontend_attrs, ask.frontend)
    llb_ops(facts, ask.ops, "LLB")
    _dockerfile_input(facts, ask)
    for i, (kind, attrs) in enumerate(zip(ask.exporters, ask.exporter_attrs, strict=False)):
        where = f"exporter {i} ({kind})"
        if kind not in _EXPORTERS:
            facts.refusals.append((where, "is not an exporter dockgate knows"))
        elif kind in ("image", "moby"):
            names = _csv(attrs.get("name", ""))
            if names is None:
                facts.refusals.append((where, "names images dockgate cannot read"))
            if "*" in (names or ()):
                # The name would come from the build's result ("image.name"), which
                # dockgate does not read.
                facts.refusals.append((where, "name '*' is taken from the build's result, "
                                              "which dockgate does not read"))
            facts.names.extend((where, n) for n in names or ())
            if attrs.get("push", "") not in _GO_FALSE:
                # Go's strconv.ParseBool: "t", "T", "TRUE", "True" push too.
                facts.pushes.extend((where, n) for n in names or ())
    _cache(facts, "cache import", ask.cache_imports, export=False)
    _cache(facts, "cache export", ask.cache_exports, export=True)
    facts.refusals.extend(
        ("source policy", f"rule {r!r} rewrites sources after dockgate judged them")
        for r in ask.source_policy
        if r.startswith("convert")
    )
    return facts


def dockerfile_facts(
    dockerfile: bytes | DockerfileFacts,
    ask: SolveAsk | None = None,
    buildargs: Mapping[str, str | None] | None = None,
) -> tuple[BuildKitFacts, DockerfileFacts]:
    """The Dockerfile's facts, read with the solve's build args (``build-arg:*``), or
    ``buildargs`` (a ``POST /build?version=2``'s, whose Dockerfile also comes
    through the session).

    Returns the BuildKit facts (images, ``# syntax=`` frontends, ``ADD``
    URLs, BuildKit's RUN flags, and each value dockgate could not determine
    as a refusal) and the parsed ``DockerfileFacts`` (for the I/O layer's
    image checks: bases and their ``ONBUILD`` triggers).
    """
    if isinstance(dockerfile, DockerfileFacts):
        df = dockerfile
    else:
        attrs = ask.frontend_attrs if ask is not None else {}
        args: dict[str, str | None] = {
            k[len("build-arg:"):]: v for k, v in attrs.items() if k.startswith("build-arg:")
        }
        args.update(buildargs or {})
        df = parse(dockerfile, args)
    facts = BuildKitFacts()
    frontends = {ref for _, ref in df.frontends}
    facts.frontends.extend((f"Dockerfile {w}", ref) for w, ref in df.frontends)
    facts.images.extend(
        (f"Dockerfile {w}", ref) for w, ref in df.images if ref not in frontends
    )
    facts.bases.extend((f"Dockerfile {w}", ref) for w, ref in df.bases)
    facts.network_host.extend((f"Dockerfile {w}", v) for w, v in df.networks if v == "host")
    facts.insecure.extend((f"Dockerfile {w}", v) for w, v in df.security if v == "insecure")
    facts.devices.extend((f"Dockerfile {w}", v) for w, v in df.devices)
    facts.cache_mounts.extend((f"Dockerfile {w}", v) for w, v in df.caches)
    facts.urls.extend((f"Dockerfile {w}", u) for w, u in df.urls)
    facts.refusals.extend((f"Dockerfile {w}", why) for w, why in df.problems)
    facts.named.extend((f"Dockerfile {w}", ref) for w, ref in _named_context_images(df, ask))
    return facts, df


def _named_context_images(df: DockerfileFacts, ask: SolveAsk | None) -> list[Pair]:
    """The images of ``df`` that the dockerfile frontend built into the daemon resolves
    through a named context of ``ask`` (moby/buildkit ``frontend/dockerui``
    ``NamedContext``: ``context:`` + the reference's familiar form without
    ``:latest``; ``buildx bake``'s ``contexts``, ``target:`` dependencies among them).

    None where another frontend may run (``# syntax=``, ``BUILDKIT_SYNTAX``, a
    ``cmdline`` option), for an image also named under ``ONBUILD`` (a trigger of later
    builds), and for a platform-qualified context only (``context:NAME::PLATFORM`` is
    used only for its platform)."""
    attrs = ask.frontend_attrs if ask is not None else {}
    if ask is None or ask.frontend != "dockerfile.v0" or df.frontends or \
            "cmdline" in attrs or "build-arg:BUILDKIT_SYNTAX" in attrs:
        return []
    nested = {ref for where, ref in df.images if "(ONBUILD)" in where}
    return [(where, ref) for where, ref in df.images
            if ref not in nested and (key := familiar_name(ref)) and f"context:{key}" in attrs]


def familiar_name(ref: str) -> str:
    """``ref`` as the dockerfile frontend names its named context (``FamiliarString``
    less a ``:latest`` suffix); "" for a reference that does not parse."""
    from dockgate.policy.spelling import image_ref  # noqa: PLC0415 (policy imports this)

    try:
        parsed = image_ref(ref)
    except ValueError:
        return ""
    name = parsed.name
    if name.startswith("docker.io/"):
        name = name[len("docker.io/"):]
        if name.startswith("library/") and name.count("/") == 1:
            name = name[len("library/"):]
    text = name + (f":{parsed.tag}" if parsed.tag else "") + (parsed.digest or "")
    return text.removesuffix(":latest")


def container_facts(ask: ContainerAsk) -> BuildKitFacts:
    """A gateway container (NewContainer) or a process started in it (ExecProcess Init)."""
    facts = BuildKitFacts()
    where = f"container {ask.container_id}"
    _process(facts, where, network=ask.network,
             security=ask.security, cgroup_parent=ask.cgroup_parent, ulimits=ask.ulimits)
    _mounts(facts, where, ask.mounts)
    return facts

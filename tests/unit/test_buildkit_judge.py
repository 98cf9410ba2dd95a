"""The build control judging BuildKit: solves, Dockerfiles and gateway containers.

Each refusal the shipped profiles make, each case they allow, and the options
of the one ``build`` control (shared with the classic builder) applied to
BuildKit's facts.  Real captured buildx messages (tests/unit/data/buildkit,
recorded by tests/support/grpccapture.py against both engines) are judged too.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from dockgate.buildkit.facts import solve_facts
from dockgate.buildkit.messages import message_class
from dockgate.buildkit.solve import (
    ContainerAsk,
    LlbMount,
    LlbOp,
    SolveAsk,
    decode_bridge_solve,
    decode_control_solve,
    decode_filesync_packet,
    decode_resolve_image_config,
)
from dockgate.model import Peer
from dockgate.policy import load_policy
from dockgate.policy.buildcontrol import judge_container, judge_dockerfile, judge_solve
from dockgate.policy.rules import CompiledPolicy, compile_policy
from dockgate.policy.source import parse_yaml

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data" / "buildkit"
BASELINE = load_policy(str(ROOT / "policies" / "baseline.yaml"))
RESTRICTED = load_policy(str(ROOT / "policies" / "restricted.yaml"))
PRIVILEGED = load_policy(str(ROOT / "policies" / "privileged.yaml"))
PEER = Peer("main", "unix", "@", uid=1000, gid=1000)
SECRET_ID = "tok"  # noqa: S105 - the id of a secret mount, not a value

# What buildx sends for `docker buildx build --network none -t x .` (captured).
BUILDX_ATTRS = {"filename": "Dockerfile", "force-network-mode": "none",
                "image-resolve-mode": "local"}


def policy(text: str) -> CompiledPolicy:
    return compile_policy(parse_yaml(f"name: t\nrules:\n{text}", "t.yaml"))


def solve(**kw: Any) -> SolveAsk:
    kw.setdefault("frontend", "dockerfile.v0")
    attrs = dict(BUILDX_ATTRS)
    attrs.update(kw.pop("attrs", {}))
    return SolveAsk("bridge", frontend_attrs=attrs, **kw)


def source(identifier: str, origin: str = "", **attrs: str) -> LlbOp:
    return LlbOp("sha256:" + identifier, "source", identifier=identifier, attrs=attrs,
                 origin=origin)


GOOD_DOCKERFILE = b"""\
# syntax=docker/dockerfile:1
FROM busybox:lab AS build
COPY . /src
RUN --mount=type=cache,target=/root/.cache make
RUN --mount=type=secret,id=tok cat /run/secrets/tok
RUN --mount=type=bind,from=build,source=/src,target=/x true
FROM scratch
COPY --from=build /src/out /out
"""


# -- allowed ---------------------------------------------------------------------


@pytest.mark.parametrize("pol", [BASELINE, PRIVILEGED], ids=["baseline", "privileged"])
def test_ordinary_build_is_allowed(pol: CompiledPolicy) -> None:
    """A plain buildx build (captured attrs) and an ordinary Dockerfile pass baseline."""
    verdict = judge_solve(pol, solve(), peer=PEER)
    assert verdict.allowed, verdict.message
    assert verdict.message == f"allowed by policy {pol.name}"
    df = judge_dockerfile(pol, solve(), GOOD_DOCKERFILE, peer=PEER)
    assert df.allowed, df.message
    assert df.image_refs == ("busybox:lab", "docker/dockerfile:1")


def test_harmless_frontend_options_are_allowed() -> None:
    """no-cache, target, build args, labels, platform, add-hosts, limits: image metadata."""
    attrs = {"no-cache": "", "target": "app", "build-arg:HTTP_PROXY": "x", "label:a": "b",
             "platform": "linux/amd64,linux/arm64", "add-hosts": "h=1.2.3.4",
             "shm-size": "67108864", "ulimit": "nofile=1024:1024", "multi-platform": "true",
             "frontend.caps": "moby.buildkit.frontend.contexts+forward",
             "attest:provenance": "mode=min", "vcs:source": "x", "hostname": "h",
             "context:base": "docker-image://busybox:lab", "context:src": "local:src",
             "force-network-mode": "default", "memory": "1000000"}
    verdict = judge_solve(BASELINE, solve(attrs=attrs), peer=PEER)
    assert verdict.allowed, verdict.message
    assert verdict.image_refs == ("busybox:lab",)
    sbom = judge_solve(BASELINE, solve(attrs={"attest:sbom": ""}), peer=PEER)
    assert sbom.allowed and sbom.image_refs == ("docker/buildkit-syft-scanner:stable-1",)


def test_named_image_contexts_are_bases() -> None:
    """A ``docker-image://`` named context stands in for a ``FROM``: the frontend runs its
    image's ONBUILD triggers, so it is among the bases whose triggers the I/O layer
    reads (as well as an image the build reads)."""
    verdict = judge_solve(PRIVILEGED, solve(attrs={"context:dgtest": "docker-image://a-trig",
                                                   "context:s": "docker-image://scratch"}),
                          peer=PEER)
    assert verdict.allowed and verdict.bases == ("a-trig",) and verdict.image_refs == ("a-trig",)


def _metadata(config: Any) -> str:
    raw = json.dumps(config).encode()
    return json.dumps({"containerimage.config": base64.b64encode(raw).decode()})


def test_input_metadata_triggers_are_read() -> None:
    """The image config of an ``input:`` named context comes in ``input-metadata:NAME``: its
    ONBUILD triggers (keys read as Go reads them) are judged as the build's Dockerfile
    lines; metadata dockgate cannot decode is refused, also for a tenant whatever its
    policy (``unread_triggers``)."""
    config = {"config": {"OnBuild": ["COPY --from=b-img /secret /stolen",
                                     "RUN --network=host true"]}}
    attrs = {"context:base": "input:base", "input-metadata:base": _metadata(config)}
    verdict = judge_solve(BASELINE, solve(attrs=attrs), peer=PEER)
    assert not verdict.allowed and "RUN --network" in verdict.message, verdict.message
    loose = judge_solve(PRIVILEGED, solve(attrs=attrs), peer=PEER)
    assert loose.allowed and loose.image_refs == ("b-img",)
    plain = {"input-metadata:base": _metadata({"Config": {"Env": ["A=1"]}})}
    assert judge_solve(BASELINE, solve(attrs=plain), peer=PEER).allowed
    for bad in ("{", json.dumps({"containerimage.config": "!!"}),
                _metadata({"config": {"onbuild": "RUN x"}})):
        verdict = judge_solve(PRIVILEGED, solve(attrs={"input-metadata:x": bad}), peer=PEER)
        assert verdict.allowed and verdict.facts["unread_triggers"], bad
        assert not judge_solve(BASELINE, solve(attrs={"input-metadata:x": bad}),
                               peer=PEER).allowed


def test_oci_layout_contexts_are_unread_triggers() -> None:
    """An ``oci-layout://`` named context's image config (its ONBUILD triggers) is read
    from the client's store, which dockgate does not read: refused under baseline, and
    marked for the tenant check under any policy."""
    attrs = {"context:base": "oci-layout://store@sha256:" + "0" * 64}
    assert not judge_solve(BASELINE, solve(attrs=attrs), peer=PEER).allowed
    verdict = judge_solve(PRIVILEGED, solve(attrs=attrs), peer=PEER)
    assert verdict.allowed and verdict.facts["unread_triggers"]


def test_llb_with_image_local_and_mounts_is_allowed() -> None:
    """Raw LLB: an image source, the session's local context, cache/secret/ssh mounts."""
    ex = LlbOp("sha256:e", "exec", network="sandbox", security="sandbox", mounts=(
        LlbMount("bind", "/", 0, "docker-image://docker.io/library/busybox:lab"),
        LlbMount("cache", "/c", cache_id="c"), LlbMount("secret", "/s", secret_id=SECRET_ID),
        LlbMount("ssh", "/ssh", ssh_id="default")))
    ask = SolveAsk("control", session="s1", ops=(
        source("docker-image://docker.io/library/busybox:lab"),
        source("local://context", **{"local.session": "s1"}), ex))
    verdict = judge_solve(BASELINE, ask, peer=PEER)
    assert verdict.allowed, verdict.message
    assert verdict.facts["secrets"] == [["LLB op 2 (exec)", "tok"]]
    assert verdict.facts["sessions"] == [["session", "s1"], ["LLB op 1 (source) local.session",
                                                           "s1"]]


def test_stdin_context_is_the_clients_upload() -> None:
    """`docker buildx build - < ctx.tar`: the context URL is read from the client's session."""
    upload = "http://buildkit-session/0123abcd"
    assert judge_solve(BASELINE, solve(attrs={"context": upload}), peer=PEER).allowed
    assert judge_solve(BASELINE, SolveAsk("control", ops=(source(upload),)), peer=PEER).allowed
    for spoof in ("http://buildkit-session@evil.example/x", "http://buildkit-session.evil/x",
                  "http://buildkit-session/x?y", "https://buildkit-session:80/x"):
        assert not judge_solve(BASELINE, solve(attrs={"context": spoof}), peer=PEER).allowed


# -- refused ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ask", "rule", "text"),
    [
        (solve(entitlements=("network.host",), attrs={"force-network-mode": "host"}),
         "no-host-namespaces", "entitlement network.host 'host' shares the host's namespace"),
        (solve(entitlements=("security.insecure",)),
         "no-privileged", "entitlement security.insecure (a privileged build step) must not"),
        (solve(attrs={"cgroup-parent": "/system.slice"}),
         "no-cgroup-parent", "frontend option cgroup-parent"),
        (solve(attrs={"context": "https://github.com/moby/moby.git"}),
         "build-fetches", "'https://github.com/moby/moby.git' makes the daemon fetch the context"),
        (solve(attrs={"context:x": "git@github.com:a/b.git"}),
         "build-fetches", "source git@github.com:a/b.git is fetched by the daemon"),
        (solve(attrs={"context:x": "docker-image://127.0.0.1:5000/x"}),
         "registries", "registry 127.0.0.1:5000 is a loopback address"),
        (solve(attrs={"build-arg:BUILDKIT_SYNTAX": "evil/frontend:1"}),
         "build-fetches",
         "frontend image docker.io/evil/frontend:1 is not in build.frontends"),
        (solve(frontend="gateway.v0", attrs={"source": "evil/frontend"}),
         "build-fetches", "frontend image docker.io/evil/frontend is not in build.frontends"),
        (solve(attrs={"attest:sbom": "generator=10.0.0.9/scanner"}),
         "registries", "frontend option attest:sbom (SBOM scanner) registry 10.0.0.9"),
        (solve(attrs={"build-arg:BUILDKIT_ATTEST_SBOM": "generator=10.0.0.9/scanner"}),
         "registries", "BUILDKIT_ATTEST_SBOM (SBOM scanner) registry 10.0.0.9"),
        (solve(attrs={"attest:frob": ""}),
         "build-fetches", "attestation 'frob' is not known"),
        (solve(attrs={"cache-from": "127.0.0.1:5000/c"}),
         "registries", "frontend option cache-from registry 127.0.0.1:5000 is a loopback"),
        (solve(attrs={"cache-from": '"a,b"'}),
         "build-fetches", "frontend option cache-from has quotes dockgate does not read"),
        (solve(attrs={"frobnicate": "1"}),
         "build-fetches", "frontend option frobnicate is not a frontend option dockgate knows"),
        (solve(attrs={"force-network-mode": "bridge2"}),
         "build-fetches", "network mode 'bridge2' is not known"),
        (solve(entitlements=("device=nvidia.com/gpu",)),
         "no-devices", "device requests are not allowed"),
        (solve(entitlements=("frobnicate",)),
         "build-fetches", "entitlement frobnicate is not an entitlement dockgate knows"),
        (SolveAsk("control", ops=(source("git://github.com/a/b.git", **{
            "git.fullurl": "https://github.com/a/b.git"}),)),
         "build-fetches", "source git://github.com/a/b.git is fetched by the daemon"),
        (SolveAsk("control", ops=(source("https://127.0.0.1:8080/x.tgz"),)),
         "registries", "URL host 127.0.0.1:8080 is a loopback address"),
        (SolveAsk("control", ops=(source("git://github.com/a/b.git", origin="context"),)),
         "build-fetches", "makes the daemon fetch the context"),
        (SolveAsk("control", ops=(source("frob://x"),)),
         "build-fetches", "source scheme 'frob' is not known"),
        (SolveAsk("control", ops=(LlbOp("sha256:b", "build"),)),
         "build-fetches", "a build op names work dockgate cannot inspect"),
        (SolveAsk("control", ops=(LlbOp("sha256:e", "exec", network="host"),)),
         "no-host-namespaces", "LLB op 0 (exec) 'host' shares the host's namespace"),
        (SolveAsk("control", ops=(LlbOp("sha256:e", "exec", security="insecure"),)),
         "no-privileged", "LLB op 0 (exec) (a privileged build step) must not be true"),
        (SolveAsk("control", ops=(LlbOp("sha256:e", "exec", cgroup_parent="/x"),)),
         "no-cgroup-parent", "cgroup parent '/x' is not allowed"),
        (SolveAsk("control", ops=(LlbOp("sha256:e", "exec", ulimits=("memlock",)),)),
         "ulimits", "ulimit 'memlock' is not allowed"),
        (SolveAsk("control", ops=(LlbOp("sha256:e", "exec", devices=("vendor.com/gpu=0",)),)),
         "no-devices", "device requests are not allowed"),
        (SolveAsk("control", exporters=("image",), exporter_attrs=(
            {"name": "127.0.0.1:5000/x:1", "push": "true"},)),
         "registries", "exporter 0 (image) registry 127.0.0.1:5000 is a loopback address"),
        (SolveAsk("control", exporters=("frob",), exporter_attrs=({},)),
         "build-fetches", "exporter 0 (frob) is not an exporter dockgate knows"),
        (SolveAsk("control", cache_imports=(("gha", {"url": "https://x"}),)),
         "build-fetches", "cache backend gha is contacted by the daemon"),
        (SolveAsk("control", cache_exports=(("registry", {"ref": "localhost:5000/c"}),)),
         "registries", "registry localhost:5000 is localhost"),
        (SolveAsk("control", source_policy=("convert git://evil/x",)),
         "build-fetches", "rewrites sources after dockgate judged them"),
    ],
)
def test_baseline_refusals(ask: SolveAsk, rule: str, text: str) -> None:
    """Each BuildKit fact baseline refuses, with the rule and the fact's place in the text."""
    verdict = judge_solve(BASELINE, ask, peer=PEER)
    assert not verdict.allowed
    assert verdict.message.startswith("dockgate: denied by policy baseline rule ")
    lines = verdict.message.split("\n")
    hit = [line for line in lines if f"rule {rule}: " in line and text in line]
    assert hit, verdict.message


def test_privileged_profile_allows_what_baseline_refuses() -> None:
    """privileged has no build rule: host network and insecure entitlements pass."""
    ask = solve(entitlements=("network.host", "security.insecure"),
                attrs={"force-network-mode": "host", "frobnicate": "1"})
    assert judge_solve(PRIVILEGED, ask, peer=PEER).allowed


def test_restricted_refuses_every_buildkit_build() -> None:
    """restricted denies image.build: a BuildKit solve is that build, so it is refused too."""
    verdict = judge_solve(RESTRICTED, solve(), peer=PEER)
    assert not verdict.allowed
    assert verdict.rule == "escalation-endpoints"
    assert verdict.message == (
        "dockgate: denied by policy restricted rule escalation-endpoints: "
        "endpoint image.build is not allowed")


# -- the Dockerfile ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "rule", "text"),
    [
        (b"FROM busybox:lab\nADD https://127.0.0.1:8080/f /f\n", "build-fetches",
         "Dockerfile line 2 ADD source https://127.0.0.1:8080/f is fetched by the daemon"),
        (b"FROM busybox:lab\nADD git@github.com:a/b.git /f\n", "build-fetches",
         "source git@github.com:a/b.git is fetched"),
        (b"FROM busybox:lab\nADD github.com/a/b.git /f\n", "build-fetches",
         "source github.com/a/b.git is fetched"),
        (b"FROM busybox:lab\nADD --keep-git-dir git://host/x.git /f\n", "build-fetches",
         "source git://host/x.git is fetched"),
        (b"# syntax=evil/df:1\nFROM busybox:lab\n", "build-fetches",
         "frontend image docker.io/evil/df:1 is not in build.frontends"),
        (b"\xef\xbb\xbf#!/bin/x\n#syntax = evil/df\nFROM busybox:lab\n", "build-fetches",
         "frontend image docker.io/evil/df is not in build.frontends"),
        (b"// syntax=evil/df\nFROM busybox:lab\n", "build-fetches", "docker.io/evil/df is not"),
        (b'{"syntax": "evil/df"}', "build-fetches", "docker.io/evil/df is not"),
        (b"FROM busybox:lab\nRUN --network=host true\n", "no-host-namespaces",
         "Dockerfile line 2 RUN --network 'host' shares the host's namespace"),
        (b"FROM busybox:lab\nRUN --security=insecure true\n", "no-privileged",
         "Dockerfile line 2 RUN --security (a privileged build step) must not be true"),
        (b"FROM busybox:lab\nRUN --network=bridge true\n", "build-fetches",
         "RUN --network=bridge is not a value dockgate knows"),
        (b"FROM busybox:lab\nRUN --device=vendor.com/gpu=0 true\n", "no-devices",
         "device requests are not allowed"),
        (b"FROM 127.0.0.1:5000/x\n", "registries", "registry 127.0.0.1:5000 is a loopback"),
        (b"FROM busybox:lab\nRUN --mount=type=bind,from=10.0.0.1/img,target=/x true\n",
         "registries", "registry 10.0.0.1 is a private address"),
        (b"FROM busybox:lab\nRUN --mount=type=cache,from=\"a,b\",target=/x true\n",
         "build-fetches", "has quotes dockgate does not read"),
        (b"ARG IMG\nFROM $IMG\n", "build-fetches", "image '$IMG' is empty"),
    ],
)
def test_dockerfile_refusals(dockerfile: bytes, rule: str, text: str) -> None:
    """What a Dockerfile read off the session asks for, refused under baseline."""
    verdict = judge_dockerfile(BASELINE, solve(), dockerfile, peer=PEER)
    assert not verdict.allowed, dockerfile
    assert any(f"rule {rule}: " in line and text in line
               for line in verdict.message.split("\n")), verdict.message


def test_dockerfile_build_args_resolve_from() -> None:
    """FROM variables are resolved with the solve's build-arg:* options."""
    ask = solve(attrs={"build-arg:IMG": "127.0.0.1:5000/x"})
    verdict = judge_dockerfile(BASELINE, ask, b"ARG IMG=busybox:lab\nFROM $IMG\n", peer=PEER)
    assert not verdict.allowed
    assert "127.0.0.1:5000" in verdict.message
    ok = judge_dockerfile(BASELINE, solve(), b"ARG IMG=busybox:lab\nFROM $IMG\n", peer=PEER)
    assert ok.allowed and ok.image_refs == ("busybox:lab",)


def test_dockerfile_of_a_classic_buildkit_request_uses_its_buildargs() -> None:
    """POST /build?version=2 has no solve: its buildargs resolve FROM variables."""
    verdict = judge_dockerfile(BASELINE, None, b"ARG IMG=busybox:lab\nFROM $IMG\n",
                               peer=PEER, buildargs={"IMG": "10.1.2.3/x"})
    assert not verdict.allowed and "10.1.2.3" in verdict.message


def test_dockerfile_platform_variable_is_harmless() -> None:
    """FROM --platform=$BUILDPLATFORM only picks a variant of the named image."""
    df = b"FROM --platform=$BUILDPLATFORM busybox:lab AS b\nFROM b\n"
    assert judge_dockerfile(BASELINE, solve(), df, peer=PEER).allowed


def test_resolve_requests_are_judged_as_sources() -> None:
    """A ResolveImageConfig of a loopback registry is refused like a FROM of it."""
    req = message_class("moby.buildkit.v1.frontend.ResolveImageConfigRequest")(
        Ref="127.0.0.1:5000/x:1")
    verdict = judge_solve(BASELINE, decode_resolve_image_config(req.SerializeToString(), "b"),
                          peer=PEER)
    assert not verdict.allowed and verdict.rule == "registries"
    assert verdict.image_refs == ("127.0.0.1:5000/x:1",)


# -- containers ----------------------------------------------------------------------


def test_gateway_containers() -> None:
    """A gateway container with the host network, a process started insecure: refused."""
    host = judge_container(BASELINE, ContainerAsk("b", "c1", network="host"), peer=PEER)
    assert not host.allowed and host.rule == "no-host-namespaces"
    insecure = judge_container(BASELINE, ContainerAsk("b", "c1", security="insecure"), peer=PEER)
    assert not insecure.allowed and insecure.rule == "no-privileged"
    plain = judge_container(BASELINE, ContainerAsk("b", "c1", network="sandbox"), peer=PEER)
    assert plain.allowed


# -- options, modes, exemptions --------------------------------------------------------


def test_build_options_allow_fetches_and_frontends() -> None:
    """allow_url_sources / allow_remote_context / frontends open what baseline refuses."""
    pol = policy("""\
  - id: b
    build: {allow_url_sources: true, allow_remote_context: true, allow_cgroup_parent: true,
            frontends: ["ghcr.io/acme/*"]}
""")
    ask = solve(attrs={"context": "https://github.com/a/b.git", "cgroup-parent": "/x",
                       "context:y": "git://github.com/a/c.git",
                       "build-arg:BUILDKIT_SYNTAX": "ghcr.io/acme/df:2"})
    assert judge_solve(pol, ask, peer=PEER).allowed
    refused = judge_solve(pol, solve(attrs={"source": "docker/dockerfile"},
                                     frontend="gateway.v0"), peer=PEER)
    assert "frontend image docker.io/docker/dockerfile is not in build.frontends" in \
        refused.message


def test_warn_mode_and_exemptions() -> None:
    """Rules keep their mode (warn allows with a warning) and their exemptions."""
    pol = policy("""\
  - id: ns
    mode: warn
    namespaces: {allow_host: false}
  - id: priv
    privileged: {allow: false}
    exempt: {uids: [0]}
""")
    warned = judge_solve(pol, solve(entitlements=("network.host",)), peer=PEER)
    assert warned.allowed
    assert warned.warnings == (
        "dockgate: policy t rule ns: entitlement network.host 'host' shares the host's namespace",)
    insecure = solve(entitlements=("security.insecure",))
    assert not judge_solve(pol, insecure, peer=PEER).allowed
    assert judge_solve(pol, insecure, peer=Peer("main", "unix", "@", uid=0)).allowed
    # Without a peer no rule exempts.
    assert not judge_solve(pol, insecure).allowed


def test_images_control_governs_buildkit_images() -> None:
    """An images rule sees BuildKit's images as it sees a create's Image."""
    pol = policy("""\
  - id: imgs
    images: {allow: ["docker.io/library/*"]}
""")
    assert judge_solve(pol, solve(attrs={"context:x": "docker-image://busybox"}), peer=PEER).allowed
    verdict = judge_solve(pol, solve(attrs={"context:x": "docker-image://ghcr.io/a/b"}),
                          peer=PEER)
    assert not verdict.allowed and "image ghcr.io/a/b is not allowed" in verdict.message


def test_facts_record_never_holds_secret_values() -> None:
    """The audit facts list secret ids and sessions, nothing else of a secret."""
    ask = SolveAsk("control", session="s", ops=(
        LlbOp("sha256:e", "exec", mounts=(LlbMount("secret", "/s", secret_id=SECRET_ID),)),))
    record = solve_facts(ask).record()
    assert record == {"secrets": [["LLB op 0 (exec)", "tok"]], "sessions": [["session", "s"]]}


# -- captured from real buildx builds ---------------------------------------------------


@pytest.mark.parametrize("engine", ["20.10", "28.5", "28.5-rich"])
def test_captured_buildx_build_is_allowed_under_baseline(engine: str) -> None:
    """buildx's real Control and LLBBridge solves and its Dockerfile pass baseline.

    The rich capture adds build args, labels, no-cache, platform, add-host,
    shm-size, ulimit and a named image context.
    """
    asks = [decode_control_solve(p.read_bytes())
            for p in sorted(DATA.glob(f"{engine}-control_solve-*.bin"))]
    asks += [decode_bridge_solve(p.read_bytes(), "b")
             for p in sorted(DATA.glob(f"{engine}-bridge_solve-*.bin"))]
    assert len(asks) == 3
    assert asks[1].exporters == ("moby",)
    assert dict(asks[2].frontend_attrs)["force-network-mode"] == "none"
    for ask in asks:
        verdict = judge_solve(BASELINE, ask, peer=PEER)
        assert verdict.allowed, verdict.message
    packets = [decode_filesync_packet(p.read_bytes())
               for p in sorted(DATA.glob(f"{engine}-filesync-*.bin"))]
    assert packets[0].kind == "stat" and packets[0].path == "Dockerfile"
    dockerfile = b"".join(p.data for p in packets if p.kind == "data")
    assert dockerfile.startswith(b"FROM dgtest:latest\n")
    verdict = judge_dockerfile(BASELINE, asks[2], dockerfile, peer=PEER)
    assert verdict.allowed and verdict.image_refs == ("dgtest:latest",)

"""Where the dockerfile frontend reads its Dockerfile from, besides the session; what a
BuildKit solve writes (image names, pushes, a tenant's owner label and no-cache).

dockgate judges the Dockerfile the CLI sends in the session's ``dockerfile``
directory.  A ``dockerfilekey`` option names another directory (not read: refused);
a frontend input named ``dockerfile`` replaces the directory (read when it only
writes files, as an inline Dockerfile does, and judged as the session's would be;
refused otherwise).  Messages are built as a raw client sends them
(``support.grpcsolve``) and decoded by dockgate's own decoder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from support.grpcsolve import files_definition, solve_request

from dockgate.buildkit.messages import message_class
from dockgate.buildkit.solve import (
    Undecodable,
    decode_bridge_solve,
    decode_control_solve,
    decode_return_metadata,
    tenant_solve,
)
from dockgate.policy import load_policy
from dockgate.policy.buildcontrol import judge_solve
from dockgate.tenancy import buildkit_label_refusal, returned_config_refusal

ROOT = Path(__file__).resolve().parents[2]
BASELINE = load_policy(str(ROOT / "policies" / "baseline.yaml"))


def _judge(dockerfile_input: object | None = None, **attrs: str) -> tuple[bool, str, tuple[str, ...]]:
    inputs = {"dockerfile": dockerfile_input} if dockerfile_input is not None else {}
    ask = decode_control_solve(solve_request("r", attrs=attrs, inputs=inputs))
    v = judge_solve(BASELINE, ask)
    return v.allowed, v.message, v.image_refs


def test_dockerfilekey_other_than_the_read_directory_is_refused() -> None:
    """``dockerfilekey=context`` makes the frontend read the Dockerfile from the context
    directory, which dockgate relays unread: refused; naming the ``dockerfile``
    directory itself changes nothing and is allowed."""
    allowed, message, _ = _judge(dockerfilekey="context")
    assert not allowed
    assert "frontend option dockerfilekey" in message and "'context'" in message
    assert _judge(dockerfilekey="dockerfile")[0]


def test_inline_dockerfile_input_is_judged_like_the_sessions() -> None:
    """A ``dockerfile`` input that writes the Dockerfile: its ``ADD <url>`` is refused by
    build-fetches, its ``FROM`` images are the verdict's image refs (for tenant
    ownership), and a harmless one is allowed."""
    fetch = files_definition({"Dockerfile": "FROM busybox\nADD http://10.0.0.1/x /x\n"})
    allowed, message, _ = _judge(fetch)
    assert not allowed
    assert "build-fetches" in message and "frontend input dockerfile" in message
    allowed, message, refs = _judge(files_definition({"/Dockerfile": "FROM busybox:lab\n"}))
    assert allowed, message
    assert refs == ("busybox:lab",)


def test_every_written_file_is_judged_but_dockerignore() -> None:
    """The frontend picks the file its ``filename`` names: every file the input writes is
    judged (a refused one anywhere refuses), ``*.dockerignore`` files are not Dockerfiles."""
    files = {"Dockerfile": "FROM busybox\n", "other": "FROM busybox\nADD http://10.0.0.1/x /x\n",
             "Dockerfile.dockerignore": "ADD http://10.0.0.1/x\n"}
    assert not _judge(files_definition(files))[0]
    del files["other"]
    assert _judge(files_definition(files))[0]


def test_dockerfile_input_dockgate_cannot_read_is_refused() -> None:
    """A ``dockerfile`` input built from an image (or anything but files written on
    scratch) holds a Dockerfile dockgate could only see by running it: refused."""
    op_class = message_class("pb.Op")
    src = op_class()
    src.source.identifier = "docker-image://docker.io/library/busybox:latest"
    definition = message_class("pb.Definition")()
    getattr(definition, "def").append(src.SerializeToString())
    allowed, message, _ = _judge(definition)
    assert not allowed
    assert "frontend input dockerfile" in message and "not a Dockerfile dockgate can read" in message


def test_tenant_build_labels() -> None:
    """A tenant's solve may name ``label:io.dockgate.owner`` (dockgate sets it over the
    client's value, whatever that was); any other dockgate label, in any spelling, is
    refused; a solve without dockgate labels passes."""
    assert buildkit_label_refusal({}, "teama") is None
    for value in ("teama", "teamb"):
        assert buildkit_label_refusal({"label:io.dockgate.owner": value}, "teama") is None
    for attrs in ({"label:IO.Dockgate.Owner": "b"}, {"label:io.dockgate.other": "x"}):
        why = buildkit_label_refusal(attrs, "teama")
        assert why is not None and "reserved for dockgate" in why, attrs


def test_owner_label_is_set_in_the_reencoded_solve() -> None:
    """``tenant_solve`` sets the frontend option on a Control and an LLBBridge
    Solve, replacing the client's value, and keeps every other field as decoded."""
    req = solve_request("r", attrs={"label:io.dockgate.owner": "teamb", "target": "t"},
                        exporter=("moby", {"name": "x:1"}))
    new, marked = tenant_solve(req, "control", {"label:io.dockgate.owner": "teama"}, False)
    ask, before = decode_control_solve(new), decode_control_solve(req)
    assert ask.frontend_attrs == {"label:io.dockgate.owner": "teama", "target": "t"}
    assert (ask.exporters, ask.exporter_attrs, ask.ref, ask.frontend) == \
        (before.exporters, before.exporter_attrs, before.ref, before.frontend)
    assert marked == 0
    bridge = message_class("moby.buildkit.v1.frontend.SolveRequest")()
    bridge.Frontend = "dockerfile.v0"
    bridge.FrontendOpt["label:a"] = "b"
    new, _ = tenant_solve(bridge.SerializeToString(), "bridge",
                          {"label:io.dockgate.owner": "teama"}, False)
    assert decode_bridge_solve(new, "id").frontend_attrs == {
        "label:a": "b", "label:io.dockgate.owner": "teama"}
    with pytest.raises(Undecodable):
        tenant_solve(b"\xff\xff", "control", {"k": "v"}, False)


def _metadata(definition: Any) -> dict[str, Any]:
    """Each op's ``OpMetadata`` of a definition, by the op's digest."""
    meta = message_class("pb.OpMetadata")
    return {k: meta.FromString(v) for k, v in definition.metadata.items()}


def test_no_cache_is_forced_and_every_op_ignores_the_cache() -> None:
    """A private-cache tenant's solve: ``no-cache`` is set to "" (every stage) over the
    client's own value (``no-cache=stage`` would leave the other stages cached), and
    every op of the definition and of each frontend input gets ``ignore_cache`` in its
    metadata, keyed by the op's unchanged digest, the op bytes and the metadata's other
    fields kept; a raw bridge solve's definition alike."""
    ctx = files_definition({"a": "x"})
    digests = [f"sha256:{hashlib.sha256(raw).hexdigest()}" for raw in getattr(ctx, "def")]
    kept = message_class("pb.OpMetadata")()
    kept.ignore_cache = False
    # A field dockgate does not declare (``caps``, 5) goes on as it came.
    ctx.metadata[digests[0]] = kept.SerializeToString() + b"\x2a\x04\x0a\x00\x10\x01"
    req = solve_request("r", attrs={"no-cache": "build", "target": "t"}, inputs={"context": ctx})
    new, marked = tenant_solve(req, "control", {"no-cache": ""}, True)
    assert marked == len(digests) == 2
    ask = decode_control_solve(new)
    assert ask.frontend_attrs == {"no-cache": "", "target": "t"}
    parsed = message_class("moby.buildkit.v1.SolveRequest").FromString(new)
    got = parsed.FrontendInputs["context"]
    assert list(getattr(got, "def")) == list(getattr(ctx, "def"))
    assert sorted(_metadata(got)) == sorted(digests)
    assert all(m.ignore_cache for m in _metadata(got).values())
    assert got.metadata[digests[0]].endswith(b"\x2a\x04\x0a\x00\x10\x01")
    bridge = message_class("moby.buildkit.v1.frontend.SolveRequest")()
    bridge.Definition.CopyFrom(files_definition({"b": "y"}))
    new, marked = tenant_solve(bridge.SerializeToString(), "bridge", {}, True)
    got = message_class("moby.buildkit.v1.frontend.SolveRequest").FromString(new).Definition
    assert marked == 2 and all(m.ignore_cache for m in _metadata(got).values())
    assert decode_bridge_solve(new, "id").frontend_attrs == {}


def test_exporter_names_and_pushes() -> None:
    """Every name an image exporter writes is in the verdict's ``image_names`` (checked for
    tenants); ``push`` is read as Go's ParseBool reads it, so ``push=t`` pushes."""
    req = solve_request("r", exporter=("image", {"name": "a:1,b:2", "push": "T"}))
    v = judge_solve(BASELINE, decode_control_solve(req))
    assert v.image_names == ("a:1", "b:2")
    assert "pushes" in v.facts and [n for _, n in v.facts["pushes"]] == ["a:1", "b:2"]


def _return(metadata: dict[str, bytes]) -> bytes:
    req = message_class("moby.buildkit.v1.frontend.ReturnRequest")()
    for key, value in metadata.items():
        req.result.metadata[key] = value
    return req.SerializeToString()


def test_returned_image_config_labels_of_a_tenant() -> None:
    """The image config a client-side build returns is what the exporter writes: its
    dockgate labels are read as Go reads the JSON (keys of the struct fields in any
    case, the last one winning) and only the tenant's own owner label passes; when the
    build writes an image, the config must carry it."""
    def why(config: str) -> str | None:
        meta = decode_return_metadata(_return({"containerimage.config/linux/amd64":
                                               config.encode(), "other": b"\xff"}))
        return returned_config_refusal(meta, "teama")

    assert why('{"config": {"Labels": {"io.dockgate.owner": "teama", "x": "y"}}}') is None
    assert why('{"config": {}}') is None
    for forged in ('{"config": {"Labels": {"io.dockgate.owner": "teamb"}}}',
                   '{"config": {"Labels": {"io.dockgate.owner": "teama"}}, '
                   '"CONFIG": {"labels": {"io.dockgate.owner": "teamb"}}}',
                   '{"config": {"Labels": {"IO.DOCKGATE.owner": "teama"}}}'):
        assert "reserved for dockgate" in (why(forged) or ""), forged
    def image(config: str) -> str | None:
        meta = decode_return_metadata(_return({"containerimage.config": config.encode()}))
        return returned_config_refusal(meta, "teama", image=True)

    assert image('{"config": {"Labels": {"io.dockgate.owner": "teama"}}}') is None
    assert "lacks io.dockgate.owner=teama" in (image('{"config": {}}') or "")
    assert "must return its image config" in (returned_config_refusal({}, "teama", True) or "")
    assert "not JSON" in (why("{nope") or "")


def test_exporter_name_from_the_result_is_refused() -> None:
    """``name=*`` makes the image exporter take its name from the result's metadata
    (``image.name``, set by the client's Return), which dockgate does not read."""
    req = solve_request("r", exporter=("image", {"name": "*", "push": "true"}))
    v = judge_solve(BASELINE, decode_control_solve(req))
    assert not v.allowed and "name '*'" in v.message

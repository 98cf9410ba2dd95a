"""Where the dockerfile frontend reads its Dockerfile from, besides the session; what a
BuildKit solve writes (image names, pushes, a tenant's owner label).

dockgate judges the Dockerfile the CLI sends in the session's ``dockerfile``
directory.  A ``dockerfilekey`` option names another directory (not read: refused);
a frontend input named ``dockerfile`` replaces the directory (read when it only
writes files, as an inline Dockerfile does, and judged as the session's would be;
refused otherwise).  Messages are built as a raw client sends them
(``support.grpcsolve``) and decoded by dockgate's own decoder.
"""

from __future__ import annotations

from pathlib import Path

from support.grpcsolve import files_definition, solve_request

from dockgate.buildkit.messages import message_class
from dockgate.buildkit.solve import decode_control_solve, decode_return_metadata
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
    """A tenant's solve that writes an image must carry its own owner label (dockgate
    cannot add it); any other dockgate label, in any spelling, is refused; a solve that
    writes no image needs none."""
    own = {"label:io.dockgate.owner": "teama"}
    assert buildkit_label_refusal(own, ("moby",), "teama") is None
    assert buildkit_label_refusal({}, ("local",), "teama") is None
    missing = buildkit_label_refusal({}, ("moby",), "teama")
    assert missing is not None and "--label io.dockgate.owner=teama" in missing
    for attrs in ({"label:io.dockgate.owner": "teamb"}, {**own, "label:IO.Dockgate.Owner": "b"},
                  {**own, "label:io.dockgate.other": "x"}):
        why = buildkit_label_refusal(attrs, (), "teama")
        assert why is not None and "reserved for dockgate" in why, attrs


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
    case, the last one winning) and only the tenant's own owner label passes."""
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
    assert "not JSON" in (why("{nope") or "")


def test_exporter_name_from_the_result_is_refused() -> None:
    """``name=*`` makes the image exporter take its name from the result's metadata
    (``image.name``, set by the client's Return), which dockgate does not read."""
    req = solve_request("r", exporter=("image", {"name": "*", "push": "true"}))
    v = judge_solve(BASELINE, decode_control_solve(req))
    assert not v.allowed and "name '*'" in v.message

"""Where the dockerfile frontend reads its Dockerfile from, besides the session.

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
from dockgate.buildkit.solve import decode_control_solve
from dockgate.policy import load_policy
from dockgate.policy.buildcontrol import judge_solve

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

"""docker build: BuildKit through buildx (its docker driver uses /session and /grpc)
and the classic builder, from the local dgtest image (no registry)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.engines import IMAGE, Engine, unique

pytestmark = pytest.mark.engine

DOCKERFILE = """\
FROM dgtest
ARG TOKEN
RUN echo "built-$TOKEN" > /built.txt
COPY hello.txt /hello.txt
COPY sub/ /sub/
"""


def make_context(engine: Engine, token: str) -> Path:
    ctx = engine.workdir / f"ctx-{token}"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "hello.txt").write_text(f"hello {token}\n")
    (ctx / "sub" / "data.bin").write_bytes(bytes(range(256)) * 400)
    return ctx


def check_image(engine: Engine, tag: str, token: str) -> None:
    out = engine.docker(
        "run", "--rm", "--network", "none", "--pull", "never", tag,
        "sh", "-c", "cat /built.txt /hello.txt; wc -c < /sub/data.bin",
    )  # fmt: skip
    assert out.stdout.split("\n") == [f"built-{token}", f"hello {token}", "102400", ""]


BUILDERS = {
    # BuildKit through the buildx plugin's docker driver: /session and /grpc.
    "buildx": (["buildx", "build", "--progress", "plain", "--pull=false", "--load"], {}),
    # Plain ``docker build`` goes through the buildx plugin (BuildKit) on CLI 28.
    "build": (["build", "--progress", "plain"], {}),
    # The classic builder: the context as a tar body of POST /build.
    "classic": (["build"], {"DOCKER_BUILDKIT": "0"}),
}


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_build(engine: Engine, builder: str) -> None:
    """Each builder (classic, BuildKit, buildx) builds and tags an image through dockgate, and the
    image holds what the build wrote."""
    args, env = BUILDERS[builder]
    token = unique(builder)
    tag = f"dgbuilt:{token}"
    ctx = make_context(engine, token)
    build_args = ["--network", "none", "--build-arg", f"TOKEN={token}", "-t", tag, str(ctx)]
    out = engine.docker(*args, *build_args, timeout=300, extra_env=env)
    if builder == "classic":
        assert f"Successfully tagged {tag}" in out.stdout
    else:
        assert f"naming to docker.io/library/{tag}" in out.stderr
    check_image(engine, tag, token)


def test_build_failure_reports_step(engine: Engine) -> None:
    """A failing build step's exit code reaches buildx's output."""
    ctx = engine.workdir / unique("bad")
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {IMAGE}\nRUN echo failing-step && exit 13\n")
    out = engine.docker(
        "buildx", "build", "--progress", "plain", "--network", "none", str(ctx),
        check=False, timeout=300,
    )  # fmt: skip
    assert out.returncode != 0
    assert "exit code: 13" in out.stderr

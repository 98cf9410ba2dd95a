"""The 20.10 docker CLI (/usr/bin/docker, API 1.41) through dockgate: run and exec."""

from __future__ import annotations

import hashlib
import os

import pytest
from support.engines import IMAGE, Engine, unique

pytestmark = pytest.mark.engine


def test_cli20_version_negotiates(engine: Engine) -> None:
    """The 20.10 CLI negotiates its API version through dockgate and reports the engine's server
    version."""
    out = engine.docker20("version", "--format", "{{.Client.Version}} {{.Server.Version}}")
    client, server = out.stdout.split()
    assert client.startswith("20.10.")
    assert server == engine.version


def test_cli20_run(engine: Engine) -> None:
    """docker run with the 20.10 CLI prints the container's output and passes its exit code."""
    out = engine.docker20(
        "run", "--rm", "--network", "none", IMAGE, "sh", "-c", "echo v20-$((5*5))"
    )
    assert out.stdout == "v20-25\n"
    failed = engine.docker20("run", "--rm", "--network", "none", IMAGE, "false", check=False)
    assert failed.returncode == 1


def test_cli20_run_i_stdin(engine: Engine) -> None:
    """docker run -i with the 20.10 CLI carries 1 MiB of stdin through cat unchanged."""
    data = os.urandom(1 << 20)
    out = engine.docker20(
        "run", "--rm", "-i", "--network", "none", IMAGE, "cat", input=data, binary=True
    )
    assert hashlib.sha256(out.stdout).digest() == hashlib.sha256(data).digest()


def test_cli20_exec_i(engine: Engine) -> None:
    """docker exec with the 20.10 CLI delivers stdin and keeps stdout, stderr and the exit code
    apart."""
    name = unique("exec20")
    engine.docker20(
        "run", "-d", "--init", "--network", "none", "--name", name, IMAGE, "sleep", "300"
    )
    data = os.urandom(200_000)
    out = engine.docker20("exec", "-i", name, "sha256sum", input=data)
    assert out.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    plain = engine.docker20("exec", name, "sh", "-c", "echo x; echo y >&2; exit 4", check=False)
    assert (plain.returncode, plain.stdout, plain.stderr) == (4, "x\n", "y\n")

"""The current docker CLI through dockgate, against each engine."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest
from support.engines import IMAGE, Engine, unique

pytestmark = pytest.mark.engine

RUN = ("run", "--network", "none", "--pull", "never")


def sleeper(engine: Engine, name: str, *extra: str) -> str:
    """Start a detached container that sleeps (with an init, so it stops at once)."""
    out = engine.docker(*RUN, "-d", "--init", "--name", name, *extra, IMAGE, "sleep", "300")
    return str(out.stdout.strip())


def test_version(engine: Engine) -> None:
    """docker version through dockgate reports the engine's own server version and a client version.
    """
    out = engine.docker("version", "--format", "{{json .}}").stdout
    info = json.loads(out)
    assert info["Server"]["Version"] == engine.version
    assert info["Client"]["Version"]


def test_info(engine: Engine) -> None:
    """docker info through dockgate reports the engine's version, the vfs driver and its images."""
    out = engine.docker("info", "--format", "{{.ServerVersion}} {{.Driver}} {{.Images}}").stdout
    version, driver, images = out.split()
    assert version == engine.version
    assert driver == "vfs"
    assert int(images) >= 1


def test_ps_all_lists_stopped_container(engine: Engine) -> None:
    """docker ps -a lists a created container with its status, and plain ps leaves it out."""
    name = unique("ps")
    engine.docker("create", "--network", "none", "--name", name, IMAGE, "true")
    names = engine.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.splitlines()
    assert f"{name} Created" in names
    running = engine.docker("ps", "--format", "{{.Names}}").stdout.split()
    assert name not in running


def test_images(engine: Engine) -> None:
    """docker images lists the test image by repository and tag."""
    out = engine.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "dgtest:latest" in out


def test_run_rm_output_and_exit_code(engine: Engine) -> None:
    """docker run --rm prints the container's output, passes its exit code and stderr through, and
    removes it afterwards."""
    name = unique("run")
    out = engine.docker(*RUN, "--rm", "--name", name, IMAGE, "sh", "-c", "echo hello-$((40+2))")
    assert out.stdout == "hello-42\n"
    failed = engine.docker(*RUN, "--rm", IMAGE, "sh", "-c", "echo oops >&2; exit 3", check=False)
    assert failed.returncode == 3
    assert "oops" in failed.stderr
    gone = engine.docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}}")
    assert gone.stdout.strip() == ""


def test_run_i_pipes_1mb_through_cat(engine: Engine) -> None:
    """docker run -i carries 1 MiB of stdin through cat and back unchanged (the hijacked attach
    stream)."""
    data = os.urandom(1 << 20)
    out = engine.docker(*RUN, "--rm", "-i", IMAGE, "cat", input=data, binary=True, timeout=120)
    assert len(out.stdout) == len(data)
    assert hashlib.sha256(out.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


def test_exec_i_stdin_reaches_process_and_eof(engine: Engine) -> None:
    """docker exec -i delivers 1 MiB of stdin and its EOF to the process, returns its output byte
    for byte, and passes the exec's exit code."""
    name = unique("exec")
    sleeper(engine, name)
    data = os.urandom(1 << 20)
    out = engine.docker("exec", "-i", name, "sha256sum", input=data)
    assert out.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    echoed = engine.docker("exec", "-i", name, "cat", input=data, binary=True)
    assert echoed.stdout == data
    status = engine.docker("exec", name, "sh", "-c", "exit 7", check=False)
    assert status.returncode == 7


def test_top_stats_wait_rm_f(engine: Engine) -> None:
    """docker top, stats, rm -f and wait work through dockgate: the process list, a stats sample for
    the right container, removal, and the exit code from wait."""
    name = unique("life")
    cid = sleeper(engine, name)
    top = engine.docker("top", name).stdout
    assert "sleep 300" in top
    stats = engine.docker(
        "stats", "--no-stream", "--format", "{{.Name}} {{.ID}} {{.PIDs}}", name, timeout=60
    ).stdout.split()
    assert stats[0] == name
    assert cid.startswith(stats[1])
    assert int(stats[2]) >= 1
    engine.docker("rm", "-f", name)
    left = engine.docker("ps", "-a", "--filter", f"id={cid}", "--format", "{{.ID}}").stdout
    assert left.strip() == ""
    inspect = engine.docker("inspect", cid, check=False)
    assert inspect.returncode != 0

    waiter = unique("wait")
    engine.docker(*RUN, "-d", "--name", waiter, IMAGE, "sh", "-c", "sleep 1; exit 42")
    assert engine.docker("wait", waiter, timeout=60).stdout.strip() == "42"


def test_cp_both_ways(engine: Engine) -> None:
    """docker cp copies a file into and out of a container unchanged, and to stdout as a tar stream.
    """
    name = unique("cp")
    sleeper(engine, name)
    src = engine.workdir / f"{name}.bin"
    data = os.urandom(300_000)
    src.write_bytes(data)
    engine.docker("cp", str(src), f"{name}:/tmp/in.bin")
    inside = engine.docker("exec", name, "sha256sum", "/tmp/in.bin").stdout.split()[0]
    assert inside == hashlib.sha256(data).hexdigest()
    engine.docker("exec", name, "sh", "-c", "echo made-inside > /tmp/out.txt")
    dst = engine.workdir / f"{name}.out"
    engine.docker("cp", f"{name}:/tmp/out.txt", str(dst))
    assert dst.read_text() == "made-inside\n"
    # To stdout as a tar stream.
    stream = engine.docker("cp", f"{name}:/tmp/in.bin", "-", binary=True).stdout
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        member = tar.extractfile("in.bin")
        assert member is not None
        assert member.read() == data


def test_export_holds_container_files(engine: Engine) -> None:
    """docker export writes the container's filesystem, to a file and to stdout identically."""
    name = unique("export")
    engine.docker(*RUN, "--name", name, IMAGE, "sh", "-c", f"echo {name} > /marker")
    target = engine.workdir / f"{name}.tar"
    engine.docker("export", "-o", str(target), name, timeout=120)
    with tarfile.open(target) as tar:
        names = set(tar.getnames())
        assert "bin/busybox" in names
        marker = tar.extractfile("marker")
        assert marker is not None
        assert marker.read() == f"{name}\n".encode()
    streamed = engine.docker("export", name, binary=True).stdout
    assert hashlib.sha256(streamed).digest() == hashlib.sha256(target.read_bytes()).digest()


def test_commit_save_rmi_load(engine: Engine) -> None:
    """commit, save, rmi and load round-trip an image through dockgate: the reloaded image runs and
    holds the committed file."""
    name = unique("save")
    tag = f"dgsave:{name}"
    engine.docker(*RUN, "--name", name, IMAGE, "sh", "-c", f"echo {name} > /saved")
    engine.docker("commit", name, tag)
    archive = engine.workdir / f"{name}.tar"
    engine.docker("save", "-o", str(archive), tag, timeout=120)
    with tarfile.open(archive) as tar:
        assert "manifest.json" in tar.getnames()
    engine.docker("rm", name)
    engine.docker("rmi", tag)
    assert engine.docker("image", "inspect", tag, check=False).returncode != 0
    loaded = engine.docker("load", input=archive.read_bytes(), timeout=120).stdout
    assert f"Loaded image: {tag}" in loaded
    out = engine.docker(*RUN, "--rm", tag, "cat", "/saved").stdout
    assert out == f"{name}\n"

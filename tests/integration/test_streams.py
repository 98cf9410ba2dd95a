"""Long-lived and hijacked streams with the CLI: attach (no tty), logs -f, events."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from support.engines import IMAGE, Engine, unique

pytestmark = pytest.mark.engine

ECHO_LOOP = 'while read l; do [ "$l" = quit ] && exit 7; echo "echo:$l"; done'


def read_line(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> bytes:
    """One line of ``proc``'s stdout, or fail after ``timeout``."""
    assert proc.stdout is not None
    result: list[bytes] = []

    def reader() -> None:
        assert proc.stdout is not None
        result.append(proc.stdout.readline())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    assert result, f"no line within {timeout}s"
    return result[0]


def test_attach_stdin_stdout_until_container_exits(engine: Engine) -> None:
    """docker attach carries lines of stdin to a running container and its echoes back, and returns
    the container's exit code when it exits."""
    name = unique("attach")
    engine.docker(
        "run", "-d", "-i", "--network", "none", "--name", name, IMAGE, "sh", "-c", ECHO_LOOP
    )
    proc = subprocess.Popen(
        [engine.cli, "attach", name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=engine.env,
    )
    try:
        assert proc.stdin is not None
        for word in ("alpha", "beta"):
            proc.stdin.write(word.encode() + b"\n")
            proc.stdin.flush()
            assert read_line(proc) == f"echo:{word}\n".encode()
        proc.stdin.write(b"quit\n")
        proc.stdin.flush()
        assert proc.wait(30) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert engine.docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip() == "7"


def test_logs_follow_until_exit(engine: Engine) -> None:
    """docker logs -f delivers stdout and stderr as written, stays open while the container is
    quiet, and ends by itself when the container exits."""
    name = unique("logs")
    script = (
        "for i in 1 2 3; do echo line$i; echo err$i >&2; done; "
        "while [ ! -e /tmp/go ]; do sleep 0.1; done; echo line4; echo err4 >&2"
    )
    engine.docker("run", "-d", "--network", "none", "--name", name, IMAGE, "sh", "-c", script)
    proc = subprocess.Popen(
        [engine.cli, "logs", "-f", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=engine.env,
    )
    try:
        for i in (1, 2, 3):
            assert read_line(proc) == f"line{i}\n".encode()
        time.sleep(1)  # the follow stream stays open while the container is quiet
        assert proc.poll() is None
        engine.docker("exec", name, "touch", "/tmp/go")
        assert read_line(proc) == b"line4\n"
        assert proc.wait(30) == 0  # -f ends by itself when the container exits
        assert proc.stderr is not None
        assert proc.stderr.read().split() == [b"err1", b"err2", b"err3", b"err4"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    tail = engine.docker("logs", "--tail", "2", name)
    assert sorted(tail.stdout.split() + tail.stderr.split()) == ["err4", "line4"]


def test_events_since_until(engine: Engine) -> None:
    """A bounded docker events query returns a container's create, start, die and destroy, in order.
    """
    since = time.time()
    name = unique("events")
    cid = engine.docker("create", "--network", "none", "--name", name, IMAGE, "true").stdout.strip()
    engine.docker("start", "-a", name)
    engine.docker("rm", name)
    until = time.time() + 1
    out = engine.docker(
        "events",
        "--since",
        f"{since - 1:.3f}",
        "--until",
        f"{until:.3f}",
        "--filter",
        f"container={cid}",
        "--format",
        "{{.Action}}",
        timeout=30,
    )
    actions = [a.split(":")[0] for a in out.stdout.split()]
    for expected in ("create", "start", "die", "destroy"):
        assert expected in actions, actions
    assert actions.index("create") < actions.index("start") < actions.index("destroy")


def test_events_stream_stays_open_and_delivers_live(engine: Engine) -> None:
    """An unbounded docker events stream stays open while idle and delivers create and destroy as
    they happen."""
    name = unique("live")
    proc = subprocess.Popen(
        [engine.cli, "events", "--since", f"{time.time() - 1:.3f}", "--filter", "type=container",
         "--filter", f"container={name}", "--format", "{{.Action}} {{.Actor.Attributes.name}}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=engine.env,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # the stream is open and idle before anything happens
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        engine.docker("create", "--network", "none", "--name", name, IMAGE, "true")
        assert read_line(proc) == f"create {name}\n".encode()
        engine.docker("rm", name)
        assert read_line(proc) == f"destroy {name}\n".encode()
    finally:
        proc.terminate()
        proc.wait(10)


def test_stats_stream(engine: Engine) -> None:
    """docker stats keeps streaming samples (at least three rows) through dockgate."""
    name = unique("stats")
    engine.docker("run", "-d", "--init", "--network", "none", "--name", name, IMAGE, "sleep", "300")
    proc = subprocess.Popen(
        [engine.cli, "stats", "--format", "row {{.Name}} {{.PIDs}}", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=engine.env,
    )
    rows = 0
    try:
        deadline = time.monotonic() + 30
        while rows < 3 and time.monotonic() < deadline:
            line = read_line(proc, timeout=max(deadline - time.monotonic(), 0.1))
            rows += line.count(f"row {name} ".encode())
    finally:
        proc.kill()  # the stats CLI ignores SIGTERM
        proc.wait(10)
    assert rows >= 3  # the stream keeps sending samples (one a second)

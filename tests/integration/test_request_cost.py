"""Issue 21 item 5: a request's cost is bounded by its size, whatever its framing.

A JSON body sent as 1-byte chunks is six times its size on the wire and, before
the chunk bound, cost dockgate a per-chunk event each; thousands of header
fields, thousands of object members or thousands of nesting levels cost far
more to parse and check than their bytes.  The bare daemon reads each such
request and creates the container; through every shipped profile dockgate
refuses it early (413, 431 or 400, Docker-shaped), and the daemon is never
asked: no container of that name exists.  (``/_ping`` latency under such a
load is measured in benchmarks/bench_chunks.py, not here.)

A large body under every bound is admitted in an admission worker process
(``--admission-workers``, default 1): the container gets every label, and a
worker killed while it holds a body fails that request closed (500, nothing
created) and is replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import gate
from support.engines import IMAGE, Engine, unique
from support.policygate import (
    PROFILES,
    PolicyGate,
    policy_audit_guard,
    policy_gates,
    profile_gates,
)
from support.unixhttp import exchange

pytestmark = [pytest.mark.engine, pytest.mark.allow_refusals]
_ = (policy_gates, policy_audit_guard, profile_gates)  # fixtures, imported for pytest

CREATE = {"Image": IMAGE, "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}}


def head(name: str, *fields: str) -> bytes:
    lines = [f"POST /v1.41/containers/create?name={name} HTTP/1.1", "Host: docker",
             "Content-Type: application/json", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def with_length(name: str, body: bytes, *fields: str) -> bytes:
    return head(name, f"Content-Length: {len(body)}", *fields) + body


def one_byte_chunks(name: str) -> bytes:
    """A 256 KB create body sent as 1-byte chunks (1.5 MB on the wire)."""
    body = json.dumps({**CREATE, "Labels": {"filler": "x" * (256 << 10)}}).encode()
    return (head(name, "Transfer-Encoding: chunked")
            + b"".join(b"1\r\n%c\r\n" % c for c in body) + b"0\r\n\r\n")


def many_members(name: str) -> bytes:
    """A create with 20001 labels (a member costs far more to check than its bytes)."""
    body = json.dumps({**CREATE, "Labels": {f"k{i}": "v" for i in range(20001)}}).encode()
    return with_length(name, body)


def many_headers(name: str) -> bytes:
    """A create whose head has 300 header fields (20.10 takes any number, 28.5 up to
    about 500)."""
    body = json.dumps(CREATE).encode()
    return with_length(name, body, *(f"X-F{i}: v" for i in range(300)))


def deep_nesting(name: str) -> bytes:
    """A create with an unknown member nested 5000 arrays deep (Go's decoder allows
    10000 levels and skips unknown members)."""
    deep = b"[" * 5000 + b"]" * 5000
    body = json.dumps(CREATE).encode()[:-1] + b', "Deep": ' + deep + b"}"
    return with_length(name, body)


def many_binds(name: str) -> bytes:
    """A create with 513 binds, one over the cap on a list the policy reads entry by
    entry (uncapped, 20000 binds held the event loop 0.1-0.2 s while decided)."""
    host = {**CREATE.get("HostConfig", {}), "Binds": [f"/tmp:/m{i}:ro" for i in range(513)]}
    return with_length(name, json.dumps({**CREATE, "HostConfig": host}).encode())


@dataclass(frozen=True)
class CostlyRequest:
    id: str
    wire: Callable[[str], bytes]
    status: int
    message: str


COSTLY = [
    CostlyRequest("one-byte-chunks", one_byte_chunks, 413, "dockgate: request body sent in "),
    CostlyRequest("many-members", many_members, 413,
                  "dockgate: JSON value has more than 20000 object members"),
    CostlyRequest("many-binds", many_binds, 413,
                  "dockgate: HostConfig.Binds has more than 512 entries"),
    CostlyRequest("many-headers", many_headers, 431, "dockgate: request has 303 header fields"),
    CostlyRequest("deep-nesting", deep_nesting, 400, "dockgate: JSON body is nested too deeply"),
]


def exists(engine: Engine, name: str) -> bool:
    out = engine.docker_direct("inspect", name, check=False)
    assert out.returncode == 0 or "No such object" in out.stderr, out.stderr
    return out.returncode == 0


@pytest.mark.parametrize("costly", COSTLY, ids=lambda c: c.id)
def test_costly_request_is_refused_before_the_daemon_sees_it(
    engine: Engine, costly: CostlyRequest, profile_gates: dict[str, PolicyGate]
) -> None:
    """The bare daemon creates a container from the request; through each shipped
    profile it is refused with the bound's status and a Docker-shaped message,
    and no container of that name exists."""
    direct = unique("cost-direct")
    status, body = exchange(engine.daemon_socket, costly.wire(direct))
    assert status == 201, body
    assert exists(engine, direct)
    for profile in PROFILES:
        proxied = unique("cost-proxied")
        status, body = exchange(profile_gates[profile].socket, costly.wire(proxied))
        assert status == costly.status, (profile, status, body)
        assert json.loads(body)["message"].startswith(costly.message), (profile, body)
        assert not exists(engine, proxied), profile


def test_a_large_body_under_every_bound_is_created_with_every_label(
    engine: Engine, profile_gates: dict[str, PolicyGate]
) -> None:
    """A create of exactly 20000 object members (19995 labels; about 600 KB) whose
    label values hold ``:`` ``,`` ``{`` ``[`` and escaped quotes and backslashes, so that
    the cheap member bound is over the limit and the exact scan decides, is admitted
    in steps between turns and forwarded: the daemon has the container with every
    label, values intact."""
    value = 'a:b,{c}[d]"e\\f:'
    # 20000 members: the labels, Image, Cmd, HostConfig, HostConfig.NetworkMode, Labels
    labels = {f"k{i:05}": value for i in range(20000 - 5)}
    body = json.dumps({**CREATE, "Labels": labels}).encode()
    assert body.count(b":") > 20000 and len(body) < 1 << 20
    name = unique("cost-large")
    status, answer = exchange(profile_gates["privileged"].socket, with_length(name, body))
    assert status == 201, answer
    out = engine.docker_direct("inspect", "--format", "{{json .Config.Labels}}", name)
    assert json.loads(out.stdout) == labels


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(c) for c in f.read().split()]
    return found


def _until(what: str, check: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _has_unread_job(worker: int) -> bool:
    """Whether the worker's socket holds bytes it has not read: a job sent."""
    out = subprocess.run(["ss", "-xpn"], capture_output=True, text=True, check=True).stdout
    return any(f",pid={worker}," in line and int(line.split()[2]) > 0
               for line in out.splitlines())


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to see a job sent")
def test_a_worker_admits_large_bodies_and_a_killed_one_fails_its_body_closed(
    engine: Engine,
) -> None:
    """Through a dockgate of its own: a 1 MB create (19990 labels) is answered 201
    with every label while the first admission worker starts; once the worker is
    ready, another is admitted by it, labels intact.  Then the worker is stopped,
    a third create is sent to it (its socket holds the job) and the worker is
    killed: the client gets a Docker-shaped 500 and the daemon has no such
    container.  A replacement starts and the next create is admitted again."""
    labels = {f"k{i:05}": "v" * 38 for i in range(19990)}
    body = json.dumps({**CREATE, "Labels": labels}).encode()
    assert 1 << 19 < len(body) < 1 << 20
    workdir = Path(tempfile.mkdtemp(prefix="dgw", dir="/tmp"))
    proc = gate.start_dockgate(f"{engine.name}/workers", engine.daemon_socket, workdir)
    try:
        gate.wait_dockgate(proc)

        def create(name: str) -> tuple[int, bytes]:
            return exchange(proc.socket, with_length(name, body))

        def has_labels(name: str) -> bool:
            out = engine.docker_direct("inspect", "--format", "{{json .Config.Labels}}", name)
            return bool(json.loads(out.stdout) == labels)

        first = unique("cost-worker")
        assert create(first)[0] == 201 and has_labels(first)
        _until("the admission worker", lambda: proc.log_text().count("Admission worker") == 1)
        [worker] = _children(proc.pid)
        second = unique("cost-worker")
        assert create(second)[0] == 201 and has_labels(second)

        os.kill(worker, signal.SIGSTOP)
        lost = unique("cost-worker-lost")
        answers: list[tuple[int, bytes]] = []
        sender = threading.Thread(target=lambda: answers.append(create(lost)))
        sender.start()
        _until("the job on the worker's socket", lambda: _has_unread_job(worker))
        os.kill(worker, signal.SIGKILL)
        sender.join(120)
        [(status, answer)] = answers
        assert status == 500, answer
        assert json.loads(answer)["message"].startswith(
            "dockgate: the worker checking this request "), answer
        assert not exists(engine, lost)

        _until("a replacement worker", lambda: proc.log_text().count("Admission worker") == 2)
        third = unique("cost-worker")
        assert create(third)[0] == 201 and has_labels(third)
        assert worker not in _children(proc.pid)
    finally:
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)

"""The reactor's side of the admission workers (``proxy.workers``), driven by a
fake reactor: lazy start, inline until a worker is ready, one job per worker,
outcomes loaded in a step of ``turns``, and fail closed when a worker dies or
hangs (500, nothing admitted), with the waiting jobs admitted inline."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from twisted.python.failure import Failure

from dockgate.admission import offload
from dockgate.admission.admit import ApiContext, admit_body, admit_head
from dockgate.errors import DockgateError
from dockgate.model import CanonicalRequest
from dockgate.proxy import workers as workers_module
from dockgate.proxy.turns import Turns
from dockgate.proxy.workers import JOB_DEADLINE, AdmissionWorkers

CTX = ApiContext("1.51")
CREATE = admit_head("POST", b"/v1.51/containers/create",
                    [(b"content-type", b"application/json")], CTX)
BODY = b'{"Image":"x","Labels":{"a":"' + b"b" * 20000 + b'"}}'


class Process:
    def __init__(self, pid: int) -> None:
        self.pid: int | None = pid
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def writeSequence(self, parts: list[bytes]) -> None:
        self.written.append(b"".join(parts))

    def loseConnection(self) -> None:
        self.closed = True


class Reactor:
    """Spawns nothing: records processes and sockets; timers run when told."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[..., object], tuple[Any, ...]]] = []
        self.spawned: list[tuple[Any, Process]] = []
        self.sockets: list[Any] = []

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, f: Callable[..., object], *args: Any) -> Any:
        entry = (self.now + delay, f, args)
        self.timers.append(entry)
        timers = self.timers

        class Call:
            def active(self) -> bool:
                return entry in timers

            def cancel(self) -> None:
                timers.remove(entry)

        return Call()

    def run(self, until: float) -> None:
        """Run every timer due by ``until``, in order of time."""
        while True:
            due = sorted((t for t in self.timers if t[0] <= until), key=lambda t: t[0])
            if not due:
                self.now = until
                return
            entry = due[0]
            self.timers.remove(entry)
            self.now = max(self.now, entry[0])
            entry[1](*entry[2])

    def spawnProcess(self, protocol: Any, exe: str, args: list[str], env: Any,
                     childFDs: Any) -> Process:
        assert args[1:3] == ["-m", "dockgate.admission.offload"]
        process = Process(100 + len(self.spawned))
        self.spawned.append((protocol, process))
        return process

    def adoptStreamConnection(self, fd: int, family: Any, factory: Any) -> None:
        protocol = factory.buildProtocol(None)
        protocol.transport = Transport()
        self.sockets.append(protocol)


def frame(result: tuple[Any, ...]) -> bytes:
    return offload._frame(result)


class Outcomes:
    def __init__(self) -> None:
        self.done: list[CanonicalRequest] = []
        self.failed: list[BaseException] = []

    def submit(self, pool: AdmissionWorkers, turns: Turns, body: bytes = BODY,
               key: str = "peer") -> Any:
        return pool.submit(CREATE, body, CTX, turns=turns, key=key, done=self.done.append,
                           failed=self.failed.append)


def ready_pool(reactor: Reactor, size: int = 1) -> tuple[AdmissionWorkers, Turns]:
    pool, turns = AdmissionWorkers(reactor, size), Turns(reactor)
    assert Outcomes().submit(pool, turns) is None  # none ready: admit it inline
    assert len(reactor.spawned) == size  # started by that first large body
    for worker in reactor.sockets:
        worker.dataReceived(frame((0, offload.READY)))
    assert pool.ready
    return pool, turns


def answer(worker: Any, job: bytes | None = None) -> None:
    """Run the job the worker was sent (the worker's own code) and feed back its
    result in small pieces, as a socket delivers it."""
    sent = job if job is not None else worker.transport.written[-1]
    result = offload.run_job(sent[offload.FRAME.size:])
    for i in range(0, len(result), 1000):
        worker.dataReceived(result[i:i + 1000])


def test_no_worker_until_a_large_body_then_inline_until_one_is_ready() -> None:
    """Nothing is spawned before the first submit; that submit is answered None (the
    caller admits inline) and starts the workers, ``size`` of them, each once."""
    reactor = Reactor()
    pool, turns = AdmissionWorkers(reactor, 2), Turns(reactor)
    assert reactor.spawned == []
    outcomes = Outcomes()
    assert outcomes.submit(pool, turns) is None
    assert outcomes.submit(pool, turns) is None
    assert len(reactor.spawned) == 2
    reactor.sockets[0].dataReceived(frame((0, offload.READY)))
    assert outcomes.submit(pool, turns) is not None


def test_a_job_is_answered_by_a_worker_and_loaded_in_a_step_of_turns() -> None:
    """The body goes to the worker in one frame; its result, arriving in pieces, is
    loaded in a timer turn (not in the read), and ``done`` gets the request that
    ``admit_body`` gives inline; a second job waits until the first is answered."""
    reactor = Reactor()
    pool, turns = ready_pool(reactor)
    worker = reactor.sockets[0]
    outcomes = Outcomes()
    first, second = outcomes.submit(pool, turns), outcomes.submit(pool, turns)
    assert first is not None and second is not None
    assert len(worker.transport.written) == 1  # one job at a time per worker
    answer(worker)
    assert outcomes.done == []  # loaded in a turn of its own
    assert len(worker.transport.written) == 2  # the next job went out at once
    reactor.run(reactor.now + 1)
    expected = admit_body(CREATE, BODY, CTX)
    assert [(r.body, r.body_bytes) for r in outcomes.done] == [
        (expected.body, expected.body_bytes)]
    assert outcomes.failed == []


def test_a_refusal_comes_back_as_the_inline_refusal() -> None:
    """A body the worker refuses fails the job with the error class, status and
    message the inline path raises."""
    reactor = Reactor()
    pool, turns = ready_pool(reactor)
    outcomes = Outcomes()
    bad = b'{"Image":"x","Image":"y","Cmd":["' + b"c" * 20000 + b'"]}'
    outcomes.submit(pool, turns, bad)
    answer(reactor.sockets[0])
    reactor.run(reactor.now + 1)
    with pytest.raises(DockgateError) as inline:
        admit_body(CREATE, bad, CTX)
    [error] = outcomes.failed
    assert (type(error), error.message) == (type(inline.value), inline.value.message)  # type: ignore[attr-defined]


def test_a_worker_that_dies_mid_job_fails_it_closed_and_is_replaced() -> None:
    """The worker's process ends with a job under way: the job fails with a 500
    Docker-shaped refusal (nothing admitted), a replacement is spawned, and the
    job that was waiting behind it is admitted inline, not failed."""
    reactor = Reactor()
    pool, turns = ready_pool(reactor)
    outcomes = Outcomes()
    outcomes.submit(pool, turns)
    outcomes.submit(pool, turns)
    exit_protocol, _ = reactor.spawned[0]
    exit_protocol.processEnded(Failure(RuntimeError("killed")))
    [error] = outcomes.failed
    assert isinstance(error, DockgateError) and error.status == 500
    assert json.loads(error.body())["message"].startswith("dockgate: the worker checking ")
    assert outcomes.done == []
    assert len(reactor.spawned) == 2  # the replacement
    assert reactor.sockets[0].transport.closed
    reactor.run(reactor.now + 1)  # the waiting job, inline a step per turn
    assert len(outcomes.done) == 1 and len(outcomes.failed) == 1
    reactor.sockets[1].dataReceived(frame((0, offload.READY)))
    assert pool.ready and outcomes.submit(pool, turns) is not None


def test_a_worker_that_hangs_is_killed_and_its_job_fails_closed() -> None:
    """A job not answered within JOB_DEADLINE: the worker is killed (SIGKILL), the
    job fails with 500, and an answer arriving after that is ignored."""
    reactor = Reactor()
    pool, turns = ready_pool(reactor)
    outcomes = Outcomes()
    outcomes.submit(pool, turns)
    worker = reactor.sockets[0]
    job = worker.transport.written[-1]
    reactor.run(reactor.now + JOB_DEADLINE / 2)
    assert outcomes.failed == []
    reactor.run(reactor.now + JOB_DEADLINE)
    [error] = outcomes.failed
    assert isinstance(error, DockgateError) and error.status == 500
    assert reactor.spawned[0][1].signals == ["KILL"]
    answer(worker, job)
    reactor.run(reactor.now + 1)
    assert outcomes.done == []


def test_a_cancelled_job_calls_nothing() -> None:
    """A job whose connection went away: queued, it is never sent; under way, its
    outcome is dropped; neither calls back."""
    reactor = Reactor()
    pool, turns = ready_pool(reactor)
    outcomes = Outcomes()
    under_way, queued = outcomes.submit(pool, turns), outcomes.submit(pool, turns)
    queued.cancel()
    under_way.cancel()
    worker = reactor.sockets[0]
    answer(worker)
    reactor.run(reactor.now + 1)
    assert len(worker.transport.written) == 1
    assert outcomes.done == [] and outcomes.failed == []


def test_a_worker_that_fails_to_start_is_retried_only_after_a_pause() -> None:
    """A worker whose process ends before it said it is ready is not respawned for
    every large body (those are admitted inline), only after RESTART_PAUSE."""
    reactor = Reactor()
    pool, turns = AdmissionWorkers(reactor, 1), Turns(reactor)
    outcomes = Outcomes()
    outcomes.submit(pool, turns)
    reactor.spawned[0][0].processEnded(Failure(RuntimeError("no python")))
    assert outcomes.submit(pool, turns) is None
    assert len(reactor.spawned) == 1
    reactor.now += workers_module.RESTART_PAUSE
    assert outcomes.submit(pool, turns) is None
    assert len(reactor.spawned) == 2


def test_stop_kills_every_worker() -> None:
    """On stop every worker process is killed and its socket closed; nothing starts
    after that."""
    reactor = Reactor()
    pool, turns = ready_pool(reactor, 2)
    pool.stop()
    assert [p.signals for _, p in reactor.spawned] == [["KILL"], ["KILL"]]
    assert all(w.transport.closed for w in reactor.sockets)
    assert Outcomes().submit(pool, turns) is None
    assert len(reactor.spawned) == 2


def test_waiting_jobs_are_taken_round_robin_by_peer() -> None:
    """Jobs waiting for the worker are sent peer by peer in turn: peer b's one body
    waits for one of peer a's queued bodies, not for all of them."""
    reactor = Reactor()
    pool, turns = ready_pool(reactor)
    outcomes = Outcomes()
    for name in ("a1", "a2", "a3"):
        outcomes.submit(pool, turns, BODY.replace(b'"x"', b'"%s"' % name.encode()), key="a")
    outcomes.submit(pool, turns, BODY.replace(b'"x"', b'"b1"'), key="b")
    worker = reactor.sockets[0]
    sent = []
    while len(sent) < 4:
        job = worker.transport.written[-1]
        sent.append(pickle.loads(job[offload.FRAME.size:])[3][9:13])  # noqa: S301 (our own)
        answer(worker, job)
    assert sent == [b'"a1"', b'"a2"', b'"b1"', b'"a3"']

"""Worker processes that admit large JSON bodies off the reactor thread.

With ``--admission-workers N`` (N > 0), a JSON body over ``admit.HEAVY_BODY``
is admitted in one of N worker processes (``admission.offload``: the same
``admit_body``, in another interpreter) instead of a step per reactor turn.
The reactor only writes the body to a socket, reads the outcome back and
loads it (``pickle.loads`` of the decoded value, 2.5 ms for the 1 MB create
of ``benchmarks/bench_chunks.py``, in a step of ``proxy.turns`` like the
decision after it), where admitting it inline costs 15 to 25 ms in three
steps of 4 to 10 ms.  Smaller bodies stay inline: a round trip to another
process costs more than their admission.

The reactor reads the workers' sockets itself, with no thread in between:
in an executor's management thread, unpickling a result would hold the GIL
and be a wait for the reactor all the same.

Workers start lazily, when the first large body arrives (an idle dockgate
keeps no worker), as ``python -m dockgate.admission.offload FD`` through
``spawnProcess`` (``posix_spawn``: the reactor's process is never forked),
each with one end of a socket pair.  Until one has loaded and said so, large
bodies are admitted on the reactor as before (``proxy.turns``), so the first
one does not wait for an interpreter to start.

Each worker takes one job at a time; the others wait here, taken
round-robin by peer.  Fail
closed: a worker that exits, closes its socket or takes longer than
``JOB_DEADLINE`` with a job (it is killed) fails that job with a 500 and
nothing of it is forwarded; a replacement is started at once, and jobs that
were waiting are admitted on the reactor meanwhile.  A
connection that goes away cancels its job: a queued one is dropped, one under
way is left to finish and its outcome ignored (killing the worker would cost
a new interpreter, far more than the job).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IProcessTransport
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from dockgate.admission.admit import ApiContext, admit_body_steps
from dockgate.admission.offload import FAILED, FRAME, READY, job_frame, outcome_steps, read_result
from dockgate.errors import DockgateError
from dockgate.model import CanonicalRequest
from dockgate.proxy.turns import ByPeer, Turns

DEFAULT_WORKERS = 1
"""``--admission-workers`` when not given: one process, started with the first large body."""

MAX_WORKERS = 64
"""The most ``--admission-workers`` takes (each is an interpreter of about 30 MB)."""

JOB_DEADLINE = 10.0
"""Seconds a worker may take over one job before it is killed (the job gets
500).  A 1 MB body takes 20 to 40 ms; this is for a worker that hangs."""

RESTART_PAUSE = 5.0
"""Seconds after a worker failed to start before another is started (meanwhile
large bodies are admitted on the reactor)."""

_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])
"""Where this ``dockgate`` package is imported from, for the workers to import the same."""

log = Logger()


class Offloaded:
    """One body's admission in a worker: queued, under way, or being loaded."""

    __slots__ = ("_pool", "body", "cancelled", "ctx", "done", "failed", "key", "loading",
                 "request", "turns")

    def __init__(self, pool: AdmissionWorkers, request: CanonicalRequest, body: bytes,
                 ctx: ApiContext, *, turns: Turns, key: str,
                 done: Callable[[CanonicalRequest], object],
                 failed: Callable[[BaseException], object]) -> None:
        self._pool = pool
        self.request, self.body, self.ctx = request, body, ctx
        self.turns, self.key = turns, key
        self.done, self.failed = done, failed
        self.cancelled = False
        self.loading: Any = None
        """The ``turns`` job that loads the outcome, once it arrived."""

    def cancel(self) -> None:
        """Call nothing any more (the connection that wanted it is gone)."""
        self.cancelled = True
        self.body = b""
        self._pool.forget(self)
        if self.loading is not None:
            self.loading.cancel()

    def inline(self) -> None:
        """No worker is left to take it: admit it on the reactor, a step per turn."""
        body, self.body = self.body, b""
        self.loading = self.turns.submit(self.key, admit_body_steps(self.request, body, self.ctx),
                                         self.done, self.failed)

    def arrived(self, payload: bytes) -> None:
        """The worker's outcome: load it in a step of ``turns``, then call back."""
        if not self.cancelled:
            self.loading = self.turns.submit(self.key, self._load(payload), self.done,
                                             self.failed)

    def _load(self, payload: bytes) -> Generator[None, None, CanonicalRequest]:
        """Loads the outcome a piece per step of ``turns`` (the first in a turn of its own)."""
        yield from ()
        result = read_result(payload)
        if result[1] == FAILED:
            log.error("The admission worker failed on a request: {why}", why=result[2:])
        return (yield from outcome_steps(self.request, result))


class _Worker(Protocol):
    """The reactor's end of one worker's socket, and the worker process."""

    def __init__(self, pool: AdmissionWorkers) -> None:
        self.pool = pool
        self.process: IProcessTransport | None = None
        self.ready = False
        self.gone = False
        self.job: Offloaded | None = None
        self.deadline: IDelayedCall | None = None
        self._pieces: list[bytes] = []
        self._have = 0
        self._need: int | None = None
        """The length of the frame being read, once its head is in."""

    def dataReceived(self, data: bytes) -> None:
        """Collect result frames; each complete one goes to the pool.

        The pieces of a frame are kept as they came and joined once (a result
        is up to twice the body, read 64 KB at a time).
        """
        self._pieces.append(data)
        self._have += len(data)
        while self._have >= FRAME.size:
            if self._need is None:
                head = b"".join(self._pieces)
                self._need = FRAME.size + FRAME.unpack_from(head)[0]
                self._pieces = [head]
            if self._have < self._need:
                return
            whole = b"".join(self._pieces)
            payload, rest = whole[FRAME.size:self._need], whole[self._need:]
            self._pieces, self._have, self._need = [rest], len(rest), None
            self.pool.result(self, payload)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The socket closed: the worker is gone (or going)."""
        self.pool.lost(self, "closed its socket")


class _Exit(ProcessProtocol):
    """Hears a worker process end."""

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker

    def processEnded(self, reason: Failure) -> None:
        """The process ended: its job, if any, fails."""
        self.worker.pool.lost(self.worker, f"exited ({reason.value})")


class _One(Factory):
    def __init__(self, protocol: Protocol) -> None:
        self.protocol_instance = protocol

    def buildProtocol(self, addr: Any) -> Protocol:
        return self.protocol_instance


class AdmissionWorkers:
    """Up to ``size`` worker processes and the jobs waiting for them."""

    def __init__(self, reactor: Any, size: int) -> None:
        self._reactor = reactor
        self.size = size
        self.workers: list[_Worker] = []
        self._queue: ByPeer[Offloaded] = ByPeer()
        self._next_id = 1
        self._retry_at = 0.0
        self._stopped = False

    @property
    def ready(self) -> bool:
        """Whether some worker has started and takes jobs."""
        return any(w.ready for w in self.workers)

    def submit(self, request: CanonicalRequest, body: bytes, ctx: ApiContext, *, turns: Turns,
               key: str, done: Callable[[CanonicalRequest], object],
               failed: Callable[[BaseException], object]) -> Offloaded | None:
        """Queue ``body``'s admission; None when no worker is ready yet (admit it
        inline then), in which case workers are being started."""
        self._start()
        if not self.ready:
            return None
        job = Offloaded(self, request, body, ctx, turns=turns, key=key, done=done, failed=failed)
        self._queue.append(key, job)
        self._dispatch()
        return job

    def forget(self, job: Offloaded) -> None:
        """Drop a cancelled job that is still queued."""
        self._queue.remove(job.key, job)  # if still waiting

    def stop(self) -> None:
        """Stop every worker (dockgate is stopping); queued jobs are dropped."""
        self._stopped = True
        self._queue.clear()
        for worker in list(self.workers):
            self.lost(worker, "was stopped")

    # -- workers ----------------------------------------------------------

    def _start(self) -> None:
        if self._stopped or len(self.workers) >= self.size:
            return
        if self._reactor.seconds() < self._retry_at:
            return
        while len(self.workers) < self.size:
            worker = _Worker(self)
            try:
                self._spawn(worker)
            except OSError as e:
                log.error("Could not start an admission worker: {why}", why=str(e))
                self._retry_at = self._reactor.seconds() + RESTART_PAUSE
                return
            self.workers.append(worker)

    def _spawn(self, worker: _Worker) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            path = os.environ.get("PYTHONPATH")
            env = dict(os.environ, PYTHONPATH=_SOURCE_ROOT + (os.pathsep + path if path else ""))
            fd = theirs.fileno()
            worker.process = self._reactor.spawnProcess(
                _Exit(worker), sys.executable,
                [sys.executable, "-m", "dockgate.admission.offload", str(fd)],
                env=env, childFDs={2: 2, fd: fd})
            self._reactor.adoptStreamConnection(mine.fileno(), socket.AF_UNIX, _One(worker))
        finally:
            mine.close()
            theirs.close()

    def _kill(self, worker: _Worker) -> None:
        process = worker.process
        if process is not None and process.pid is not None:
            with contextlib.suppress(OSError, ProcessExitedAlready):  # else already gone
                process.signalProcess("KILL")
        transport = worker.transport
        if transport is not None:
            transport.loseConnection()

    def lost(self, worker: _Worker, why: str) -> None:
        """A worker's socket closed or its process ended: fail its job, drop it."""
        if worker.gone:
            return
        worker.gone = True
        if worker in self.workers:
            self.workers.remove(worker)
        if not worker.ready:
            self._retry_at = self._reactor.seconds() + RESTART_PAUSE
        worker.ready = False
        self._kill(worker)  # both ends: a closed socket's process, an ended process's socket
        if worker.deadline is not None and worker.deadline.active():
            worker.deadline.cancel()
        job, worker.job = worker.job, None
        if job is not None and not job.cancelled:
            if not self._stopped:
                log.error("An admission worker {why} while checking a request; it is "
                          "refused (500) and the worker replaced", why=why)
            job.failed(DockgateError(f"the worker checking this request {why}; nothing "
                                     "was forwarded", status=500, reason="worker-lost"))
        if self._stopped:
            return
        self._start()  # a replacement, ready for the next large body
        if not self.ready:
            # Jobs waiting for a worker do not wait for a new interpreter.
            while self._queue:
                self._queue.popleft().inline()
        self._dispatch()

    def _hung(self, worker: _Worker) -> None:
        worker.deadline = None
        if not worker.gone:
            self.lost(worker, f"took over {JOB_DEADLINE:g} s")

    # -- jobs -------------------------------------------------------------

    def result(self, worker: _Worker, payload: bytes) -> None:
        """A frame from ``worker``: it is ready, or its job's outcome arrived."""
        if not worker.ready:
            if read_result(payload)[1:] != (READY,):
                self.lost(worker, "did not start")
                return
            worker.ready = True  # it has loaded everything and takes jobs
            assert worker.process is not None
            log.info("Admission worker {pid} ready", pid=worker.process.pid)
            self._dispatch()
            return
        if worker.deadline is not None and worker.deadline.active():
            worker.deadline.cancel()
        worker.deadline = None
        job, worker.job = worker.job, None
        if job is not None:
            job.arrived(payload)
        self._dispatch()

    def _dispatch(self) -> None:
        for worker in self.workers:
            if not self._queue:
                return
            if worker.ready and worker.job is None and not worker.gone:
                job = self._queue.popleft()
                worker.job = job
                body, job.body = job.body, b""
                assert worker.transport is not None
                worker.transport.writeSequence(job_frame(self._next_id, job.request, body,
                                                         job.ctx))
                self._next_id += 1
                worker.deadline = self._reactor.callLater(JOB_DEADLINE, self._hung, worker)


__all__ = ["DEFAULT_WORKERS", "JOB_DEADLINE", "MAX_WORKERS", "AdmissionWorkers", "Offloaded"]

"""Costly request work, one step per reactor turn, taken in turn by peer.

The reactor is one thread.  A JSON body near the 1 MB cap costs 15 to 25 ms
to decode, check against its schema and re-encode; done inline when its last
byte arrives, the bodies completed in one turn are handled back to back, and
every other client's request waits for all of them (with four clients
sending 1 MB bodies, a ``/_ping`` waited 66 ms at p99 behind such a queue).

Here such work is a generator whose steps are its costly parts
(``admission.admit.admit_body_steps``: decode, schema walk, encode), and
what follows it (the decision and forwarding) is one more step.  Steps run
in the reactor's timer phase, one step of one job at a time, jobs taken
round-robin by peer, and after a step that took ``d`` seconds the next one
waits ``d`` (``callLater(d)``): such work gets at most half of the reactor's
time while there is any, and between two steps the reactor has as long as
the last step took to handle every other descriptor.  A request that needs
no such work therefore waits for at most the one step running when it
arrives: the daemon's answer to it (well under a millisecond for a
``/_ping``) arrives in the free time after that step, not behind the next.
Running steps back to back (``callLater(0)``) instead put a step between a
request and its answer, about two steps of wait per request.  The price is
on the large bodies themselves: one takes about twice its CPU time to be
forwarded when others compete, and a peer sending them on many connections
gets its share of steps, not the reactor.  The cost of one step stays
bounded by the body cap; the cost of the whole load is not lowered, only
spread.

With admission workers (``proxy.workers``, the default) the costly steps
run in another process, and what is left here is small: loading a worker's
outcome, a piece of at most ``admission.offload.PIECE`` objects per step
(0.3 to 0.6 ms), then the decision and forwarding.  The scheduler still
earns its place: it keeps those pieces from running back to back (2.5 to 3
ms for a 1 MB body in one go), it gives the decision of a large body a turn
of its own (a policy's ``set`` re-encodes the body: 6 ms for 1 MB under
``baseline``), and it is how bodies are admitted with
``--admission-workers 0`` and while the first worker starts.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

from twisted.internet.interfaces import IDelayedCall

T = TypeVar("T")


class ByPeer(Generic[T]):
    """Items queued per peer key, served round-robin by key: a peer that queues
    many items gets one turn in each round, and another peer's item waits for
    one of them at most, not for all.  ``Turns`` keeps its jobs here (a job
    stays at its peer's head for as many turns as it has steps), and so do the
    admission workers (``proxy.workers``) their waiting jobs."""

    __slots__ = ("_order", "_queues")

    def __init__(self) -> None:
        self._queues: dict[str, deque[T]] = {}
        self._order: deque[str] = deque()

    def __bool__(self) -> bool:
        return bool(self._order)

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def append(self, key: str, item: T) -> None:
        """Queue ``item`` behind ``key``'s others; a new key joins the round last."""
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            self._order.append(key)
        queue.append(item)

    def head(self) -> T:
        """The item whose turn it is (the first of the next peer's); IndexError if none."""
        return self._queues[self._order[0]][0]

    def advance(self, *, done: bool) -> None:
        """End the current turn: drop the head item if ``done``, and move its peer
        to the end of the round (out of it, if it has nothing left)."""
        key = self._order.popleft()
        queue = self._queues[key]
        if done:
            queue.popleft()
        if queue:
            self._order.append(key)
        else:
            del self._queues[key]

    def popleft(self) -> T:
        """Take the item whose turn it is."""
        item = self.head()
        self.advance(done=True)
        return item

    def remove(self, key: str, item: T) -> None:
        """Drop ``item`` if it waits behind ``key``."""
        queue = self._queues.get(key)
        if queue is None or item not in queue:
            return
        queue.remove(item)
        if not queue:
            del self._queues[key]
            self._order.remove(key)

    def clear(self) -> None:
        """Drop everything."""
        self._queues.clear()
        self._order.clear()


class Job:
    """One costly piece of work: its remaining steps and what to call at the end."""

    __slots__ = ("_done", "_failed", "_result", "_steps", "over")

    _PENDING: Any = object()

    def __init__(self, steps: Generator[None, None, Any], done: Callable[[Any], object],
                 failed: Callable[[BaseException], object]) -> None:
        self._steps = steps
        self._done = done
        self._failed = failed
        self._result: Any = Job._PENDING
        self.over = False

    def cancel(self) -> None:
        """Run no more steps and call nothing (the connection that wanted it is gone)."""
        if not self.over:
            self.over = True
            self._steps.close()

    def step(self) -> None:
        """Run the next step; the job is ``over`` once its callback was called."""
        if self._result is not Job._PENDING:
            self.over = True  # first: a callback that raises is not called again
            result, self._result = self._result, None  # kept no longer than needed
            self._done(result)
            return
        try:
            next(self._steps)
        except StopIteration as end:
            self._result = end.value  # handed over in a turn of its own
        except Exception as e:  # a refusal, or a defect the callback reports
            self.over = True
            self._failed(e)


class Turns:
    """Runs submitted jobs one step per reactor turn, round-robin by peer key."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._jobs: ByPeer[Job] = ByPeer()
        self._call: IDelayedCall | None = None
        self._not_before = 0.0
        """Reactor time before which no step runs: the gap after the last step,
        kept even when the queues ran empty in between."""

    def submit(self, key: str, steps: Generator[None, None, Any], done: Callable[[Any], object],
               failed: Callable[[BaseException], object]) -> Job:
        """Queue ``steps`` for peer ``key``; ``done(result)`` or ``failed(error)`` at the end."""
        job = Job(steps, done, failed)
        self._jobs.append(key, job)
        if self._call is None:
            self._schedule()
        return job

    def _schedule(self) -> None:
        wait = max(0.0, self._not_before - self._reactor.seconds())
        self._call = self._reactor.callLater(wait, self._turn)

    @property
    def pending(self) -> int:
        """Jobs queued (cancelled ones included until their turn comes)."""
        return len(self._jobs)

    def _turn(self) -> None:
        """Run one step of the job at the head of the next peer's queue."""
        self._call = None
        took = 0.0
        try:
            while self._jobs:
                job = self._jobs.head()
                ran = not job.over
                started = time.perf_counter()
                try:
                    if ran:
                        job.step()
                finally:  # a callback that raised still leaves the queues in order
                    took = time.perf_counter() - started
                    self._jobs.advance(done=job.over)
                if ran:
                    return  # one step per turn; a cancelled job took no time
        finally:
            self._not_before = self._reactor.seconds() + took
            if self._jobs and self._call is None:
                self._schedule()

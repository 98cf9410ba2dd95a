"""The turn scheduler of large bodies' admission (``proxy.turns``): one step
per reactor turn, peers in turn, callbacks in a turn of their own."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

from dockgate.errors import BadRequest
from dockgate.proxy.turns import ByPeer, Turns


class TurnReactor:
    """Timers as the reactor runs them: calls made in a turn run in a later one
    (all due by then, whatever their delay); the delays asked for are kept."""

    def __init__(self) -> None:
        self.calls: list[Callable[[], object]] = []
        self.delays: list[float] = []

    def seconds(self) -> float:
        return 0.0  # time stands still: every wait asked for is the whole gap

    def callLater(self, delay: float, f: Callable[[], object]) -> object:
        self.delays.append(delay)
        self.calls.append(f)
        return object()

    def turn(self) -> None:
        calls, self.calls = self.calls, []
        for f in calls:
            f()


def job(log: list[str], name: str, steps: int, *, fail: bool = False
        ) -> Generator[None, None, str]:
    try:
        for i in range(steps):
            log.append(f"{name}{i}")
            if i < steps - 1:
                yield
        if fail:
            raise BadRequest(f"{name} refused")
        return name
    finally:
        log.append(f"{name} closed")


def test_one_step_per_turn_peers_in_turn_and_results_in_a_turn_of_their_own() -> None:
    """Each turn runs one step; peers alternate whatever number of jobs each
    queued (a's two jobs, b's one); a job's result is handed over one turn after
    its last step; no turn is asked for once everything is done."""
    reactor = TurnReactor()
    turns = Turns(reactor)
    log: list[str] = []
    done: list[str] = []
    turns.submit("a", job(log, "A", 2), done.append, pytest.fail)
    turns.submit("a", job(log, "C", 1), done.append, pytest.fail)
    turns.submit("b", job(log, "B", 2), done.append, pytest.fail)
    assert log == [] and len(reactor.calls) == 1  # nothing runs inline
    per_turn = []
    while reactor.calls:
        before = (len(log), len(done))
        reactor.turn()
        per_turn.append((log[before[0]:], done[before[1]:]))
    assert per_turn == [
        (["A0"], []), (["B0"], []), (["A1", "A closed"], []), (["B1", "B closed"], []),
        ([], ["A"]), ([], ["B"]), (["C0", "C closed"], []), ([], ["C"]),
    ]
    assert turns.pending == 0


def test_the_next_step_waits_as_long_as_the_last_one_took(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a step of d seconds the next is asked for d later, even when it is
    submitted after the queues ran empty, so costly work gets at most half the
    reactor's time and other requests run in the gap."""
    reactor = TurnReactor()
    turns = Turns(reactor)
    clock = iter([10.0, 10.004, 20.0, 20.25])
    monkeypatch.setattr("dockgate.proxy.turns.time.perf_counter", lambda: next(clock))
    turns.submit("a", job([], "A", 2), lambda _: None, pytest.fail)
    reactor.turn()
    reactor.turn()
    assert reactor.delays == [0, pytest.approx(0.004), pytest.approx(0.25)]
    clock = iter([30.0, 30.002])
    reactor.turn()  # the result: A is over and nothing is queued
    assert turns.pending == 0 and len(reactor.delays) == 3
    turns.submit("b", job([], "B", 1), lambda _: None, pytest.fail)
    assert reactor.delays[-1] == pytest.approx(0.002), "the gap holds across an empty queue"


def test_a_refusal_reaches_the_failure_callback_and_the_rest_goes_on() -> None:
    """A step that raises ends its job through ``failed`` with the exception; other
    jobs keep their turns."""
    reactor = TurnReactor()
    turns = Turns(reactor)
    log: list[str] = []
    done: list[str] = []
    failed: list[BaseException] = []
    turns.submit("a", job(log, "A", 2, fail=True), done.append, failed.append)
    turns.submit("b", job(log, "B", 1), done.append, failed.append)
    while reactor.calls:
        reactor.turn()
    assert [str(e) for e in failed] == ["A refused"] and done == ["B"]


def test_a_cancelled_job_runs_no_more_steps_and_calls_nothing() -> None:
    """Cancelling (the client went away) closes the job's steps at once; it takes no
    turn and neither callback is called, while the other peer's job completes."""
    reactor = TurnReactor()
    turns = Turns(reactor)
    log: list[str] = []
    called: list[Any] = []
    cancelled = turns.submit("a", job(log, "A", 3), called.append, called.append)
    turns.submit("b", job(log, "B", 2), called.append, called.append)
    reactor.turn()
    cancelled.cancel()
    assert log == ["A0", "A closed"]
    reactor.turn()
    assert log[-1] == "B0"
    while reactor.calls:
        reactor.turn()
    assert called == ["B"] and "A1" not in log


def test_a_callback_that_raises_does_not_stall_the_others() -> None:
    """A defect in one job's callback propagates (the reactor logs it) but the job
    is over and every other job still runs to its end."""
    reactor = TurnReactor()
    turns = Turns(reactor)
    log: list[str] = []
    done: list[str] = []

    def broken(result: str) -> None:
        raise RuntimeError(result)

    turns.submit("a", job(log, "A", 1), broken, pytest.fail)
    turns.submit("b", job(log, "B", 1), done.append, pytest.fail)
    raised = 0
    while reactor.calls:
        try:
            reactor.turn()
        except RuntimeError:
            raised += 1
    assert raised == 1 and done == ["B"] and turns.pending == 0


def test_by_peer_serves_keys_round_robin_and_items_in_order() -> None:
    """ByPeer hands out one item per key per round, each key's items in the order
    they came, and a key rejoins the round last when it queues again."""
    queue: ByPeer[str] = ByPeer()
    for key, item in [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("c", "c1")]:
        queue.append(key, item)
    assert len(queue) == 5
    taken = [queue.popleft() for _ in range(3)]
    queue.append("b", "b2")
    while queue:
        taken.append(queue.popleft())
    assert taken == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert len(queue) == 0
    with pytest.raises(IndexError):
        queue.head()


def test_by_peer_keeps_an_unfinished_head_for_its_peers_next_turn() -> None:
    """advance(done=False) leaves the head item at its peer's front and moves the
    peer to the end of the round (a job with more steps), done=True drops it."""
    queue: ByPeer[str] = ByPeer()
    queue.append("a", "a1")
    queue.append("a", "a2")
    queue.append("b", "b1")
    assert queue.head() == "a1"
    queue.advance(done=False)
    assert queue.head() == "b1"
    queue.advance(done=True)
    assert queue.head() == "a1"
    queue.advance(done=True)
    assert queue.head() == "a2"
    assert len(queue) == 1


def test_by_peer_remove_drops_only_that_item_and_an_emptied_key() -> None:
    """remove() drops a waiting item (and its key from the round once empty);
    removing an item that is not there changes nothing."""
    queue: ByPeer[str] = ByPeer()
    queue.append("a", "a1")
    queue.append("b", "b1")
    queue.append("b", "b2")
    queue.remove("a", "a1")
    queue.remove("a", "zz")
    queue.remove("b", "zz")
    queue.remove("c", "c1")
    assert [queue.popleft() for _ in range(len(queue))] == ["b1", "b2"]
    queue.append("a", "a1")
    queue.clear()
    assert not queue and len(queue) == 0

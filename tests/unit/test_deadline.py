"""Deadline: one reactor timer per timeout, moved without being re-created."""

from __future__ import annotations

from twisted.internet.task import Clock

from dockgate.proxy.deadline import Deadline


def make() -> tuple[Clock, Deadline, list[float]]:
    clock = Clock()
    fired: list[float] = []
    return clock, Deadline(clock, lambda: fired.append(clock.seconds())), fired


def test_fires_once_at_the_deadline() -> None:
    """A deadline fires once, at its time, and not again."""
    clock, deadline, fired = make()
    deadline.set(10)
    clock.advance(9.9)
    assert fired == []
    clock.advance(0.1)
    assert fired == [10]
    clock.advance(100)
    assert fired == [10] and not deadline.pending


def test_moving_later_keeps_one_timer_and_fires_at_the_new_time() -> None:
    """Moving a deadline later keeps a single timer, which re-arms and fires at the new time."""
    clock, deadline, fired = make()
    deadline.set(10)
    clock.advance(5)
    deadline.set(10)  # now due at 15
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(5)
    assert fired == []  # the timer fired at 10 and re-armed
    clock.advance(5)
    assert fired == [15]


def test_moving_sooner_resets_the_timer() -> None:
    """Moving a deadline sooner replaces the timer so it fires at the sooner time."""
    clock, deadline, fired = make()
    deadline.set(300)
    deadline.set(30)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(30)
    assert fired == [30]


def test_clear_and_cancel() -> None:
    """clear and cancel both stop a pending deadline from firing and leave no timer behind."""
    clock, deadline, fired = make()
    deadline.set(10)
    deadline.clear()
    clock.advance(20)
    assert fired == [] and clock.getDelayedCalls() == []
    deadline.set(10)
    deadline.cancel()
    assert clock.getDelayedCalls() == []
    clock.advance(20)
    assert fired == []

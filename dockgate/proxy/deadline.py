"""A timeout that moves without cancelling and re-arming a reactor timer.

Every request moves a connection's timeouts several times: the wait for the
next head (idle, then head_timeout from its first byte), and the wait for
the daemon's answer.  Cancelling one ``callLater`` and creating another each
time costs the reactor's timer heap work on every request.  A ``Deadline``
keeps at most one timer: moving the deadline later costs nothing (when the
timer fires early it re-arms for what is left), moving it sooner resets the
timer in place, and clearing it only forgets the deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Deadline:
    """Calls ``expired`` once the deadline set last passes, unless cleared before."""

    def __init__(self, reactor: Any, expired: Callable[[], None]) -> None:
        self._reactor = reactor
        self._expired = expired
        self._at: float | None = None
        self._call: Any = None
        self._fires_at = 0.0
        """When ``_call`` fires (kept here: asking the timer costs two calls per ``set``)."""

    @property
    def pending(self) -> bool:
        """Whether a deadline is set."""
        return self._at is not None

    def set(self, seconds: float) -> None:
        """Expire ``seconds`` from now (replacing any deadline set before)."""
        at = self._at = self._reactor.seconds() + seconds
        call = self._call
        if call is None:  # only this object cancels its timer, and forgets it then
            self._call = self._reactor.callLater(seconds, self._fire)
            self._fires_at = at
        elif self._fires_at > at:
            call.reset(seconds)
            self._fires_at = at

    def clear(self) -> None:
        """Forget the deadline (the timer, if armed, fires and does nothing)."""
        self._at = None

    def cancel(self) -> None:
        """Forget the deadline and drop the timer (the connection is closing)."""
        self._at = None
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _fire(self) -> None:
        self._call = None
        at = self._at
        if at is None:
            return
        left = at - self._reactor.seconds()
        if left > 0:
            self._call = self._reactor.callLater(left, self._fire)
            self._fires_at = at
            return
        self._at = None
        self._expired()

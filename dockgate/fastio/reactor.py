"""The reactor ``dockgate serve`` runs: Twisted's epoll reactor, one layer thinner.

Twisted's epoll reactor hands every ready descriptor to ``_doReadOrWrite``
through ``log.callWithLogger``, which copies a legacy logging context (a
dictionary) and pushes and pops it around each call, so that a message
logged inside names the connection's ``logPrefix``.  dockgate logs through
``twisted.logger`` with its own fields and never reads that context, and on
its busiest path (a proxied request is two or three ready descriptors) the
context was a measurable part of the event loop's cost.  This reactor calls
``_doReadOrWrite`` directly; everything else (how reads, writes, errors and
disconnections are handled, timers, threads, signals) is Twisted's own.

A descriptor that is only readable (the event of nearly every wake-up) is
read directly, as ``_doReadOrWrite`` would read it, without its checks for
hang-ups and writability or its ``fileno()`` call (a closed selectable is
no longer in ``_selectables``, which is looked up first); a write-through
socket (``writethrough``) is read by the compiled ``sockio.read`` that its
``doRead`` would call, without that interpreted frame.

An exception escaping ``_doReadOrWrite`` (a protocol's ``connectionLost``
that raises) is logged here, as ``callWithLogger`` would, instead of ending
the iteration.

Its main loop asks Twisted's ``runUntilCurrent`` and ``timeout`` (interpreted,
about 2 µs per iteration together) only when they have something to do: a
call from a thread, a timer added, cancelled in numbers, or due, or the
reactor stopping.  Otherwise the poll's timeout is the first timer's delay,
which is what ``timeout`` would compute.

It also offers ``at_turn_end``: run a function once the ready descriptors of
this iteration were handled (a function asked for outside an iteration, in a
timer or a thread's callback, runs after the next poll, which then does not
wait).  The audit log writes the records of a turn that way, in one
``write(2)``: the decisions of the requests read in the turn (which are
forwarded after that write) and the records nothing waits on; on another
reactor ``callLater(0, …)`` does the same at the cost of a timer per turn.

``dockgate serve`` installs it; with twistd, choose it with
``twistd --reactor=dockgate …`` (``twisted/plugins/dockgate_plugin.py``).
"""

from __future__ import annotations

import errno
import select
from collections.abc import Callable
from typing import Any

from twisted.internet import epollreactor
from twisted.internet.main import installReactor
from twisted.logger import Logger

from dockgate.fastio.sockio import FAST, read

__all__ = ["DockgateReactor", "install"]

log = Logger()

_READABLE = select.EPOLLIN
"""An event that is input alone: no hang-up, error or writability with it."""

_LONGEST = 2147483
"""The longest poll timeout in seconds (``epoll_wait``'s milliseconds in a C int),
as Twisted's ``timeout`` caps it."""

_CANCELLED_SWEEP = 50
"""Above this many cancelled timers Twisted's ``runUntilCurrent`` may sweep them out."""


class DockgateReactor(epollreactor.EPollReactor):
    """``EPollReactor`` dispatching ready descriptors without a logging context."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._turn_end: list[Callable[[], object]] = []

    def at_turn_end(self, function: Callable[[], object]) -> None:
        """Call ``function`` after the descriptors ready in this iteration were handled."""
        self._turn_end.append(function)

    def doPoll(self, timeout: float | None) -> None:
        """Wait for ready descriptors (at most ``timeout`` seconds) and handle them."""
        if self._turn_end:
            # Asked for outside a turn (a timer, a thread's callback): those
            # functions run after this poll, which must not wait for them.
            timeout = 0
        elif timeout is None:
            timeout = -1  # Wait indefinitely.
        try:
            ready = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle = self._doReadOrWrite
        for fd, event in ready:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                if event == _READABLE:
                    # The common event, handled as ``_doReadOrWrite`` would
                    # without its checks for the others: read; what ``doRead``
                    # returns or raises disconnects the selectable.
                    try:
                        if type(selectable) in FAST:  # a write-through socket
                            why, in_read = read(selectable), True
                        else:
                            why, in_read = selectable.doRead(), True
                    except Exception as e:
                        log.failure("unhandled error reading {selectable!r}",
                                    selectable=selectable)
                        why, in_read = e, False
                    if why:
                        self._disconnectSelectable(  # type: ignore[no-untyped-call]
                            selectable, why, in_read)
                    continue
                handle(selectable, fd, event)  # type: ignore[no-untyped-call]
            except Exception:
                log.failure("unhandled error on {selectable!r}", selectable=selectable)
        if self._turn_end:
            functions, self._turn_end = self._turn_end, []
            for function in functions:
                try:
                    function()
                except Exception:
                    log.failure("unhandled error at the end of a reactor turn")

    def mainLoop(self) -> None:
        """Twisted's main loop (``ReactorBase.mainLoop``): iterations until the
        reactor stops, an exception escaping one logged as Twisted logs it."""
        while self._started:
            try:
                self._iterate()
            except BaseException:  # as Twisted's loop: log anything and go on
                log.failure("Unexpected error in main loop")
        log.info("Main loop terminated.")

    def _iterate(self) -> None:
        """Iterations as ``mainLoop``'s: run what is due, then poll until the next
        timer; ``runUntilCurrent`` and ``timeout`` only when there is work for them."""
        seconds = self.seconds
        while self._started:
            pending = self._pendingTimedCalls
            if (self.threadCallQueue or self._newTimedCalls or self._justStopped
                    or self._cancellations > _CANCELLED_SWEEP):
                self.runUntilCurrent()
                timeout: float | None = self.timeout()
            elif pending:
                delay = pending[0].time - seconds()
                if delay <= 0:
                    self.runUntilCurrent()
                    timeout = self.timeout()
                else:
                    timeout = min(delay, _LONGEST)
            else:
                timeout = None
            self.doPoll(timeout if self.running else 0)

    def doIteration(self, timeout: float | None) -> None:
        """What Twisted's main loop calls: ``doPoll`` (as ``EPollReactor``'s alias,
        written as a method because an alias in the class body does not compile,
        ``setup.py``)."""
        self.doPoll(timeout)


def install() -> Any:
    """Install ``DockgateReactor`` as the global reactor and return it."""
    reactor = DockgateReactor()
    installReactor(reactor)  # type: ignore[no-untyped-call]
    return reactor

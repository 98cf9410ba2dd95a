"""A tenant's ``/events`` stream, filtered line by line and in order.

Container, exec and image events carry their object's labels, so whether a
tenant may see one is decided from the line itself (``event_visible``).
Volume and network events carry no labels: the owner of the volume or network
they name has to be asked of the daemon.  This class keeps the stream in the
daemon's order while such a question is out: every line after it waits, and
nothing is passed on that was not decided.

What is known about an object is kept for the stream's lifetime: the
tenant's volumes and networks as they were when the stream started (so a
``destroy`` of one, which can no longer be looked up, is still shown), and
every answer since.  A ``create`` event asks again (a name may have been
reused by someone else); a ``destroy`` forgets the object after deciding.
An object that cannot be looked up is not the tenant's (fail closed).

An answer is about the object as it exists now, and a volume's name can have
belonged to someone else before (events replayed with ``since``): so an owned
object is known with the second it was created, and events older than that
are not shown.  Network ids are never reused; their "since" is 0.

The I/O layer supplies ``resolve`` (ask the daemon, then call back with the
answer) and ``emit`` (send decided lines to the client); this module does no
I/O of its own.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable

from dockgate.tenancy import Tenant, event_visible, labelless_event_object

__all__ = ["EventScope", "ObjectKey", "Since"]

ObjectKey = tuple[str, str]
"""(``volume`` or ``network``, the name or id an event's actor carries)."""

Since = int | None
"""When an object became the tenant's (Unix seconds), or None: not the tenant's."""

Resolve = Callable[[ObjectKey, Callable[[Since], None]], None]


class _Waiting:
    """One line waiting for its decision."""

    __slots__ = ("asked", "event", "line")

    def __init__(self, line: bytes, event: dict[str, object]) -> None:
        self.line = line
        self.event = event
        self.asked = False
        """The daemon was asked about this line's object already."""


class EventScope:
    """Filters one tenant's event stream, asking the daemon about unlabelled objects.

    Args:
        tenant: whose stream this is (not an admin: admins see everything).
        resolve: ``resolve(key, done)`` asks whether the tenant owns ``key``
            and calls ``done(since)`` later (any failure: None).
        emit: sends decided lines (each with its newline) to the client.
        limit: the most bytes that may wait for answers (or form one line);
            beyond it ``feed`` returns False and the caller ends the stream.
    """

    def __init__(
        self, tenant: Tenant, resolve: Resolve, emit: Callable[[bytes], None], limit: int
    ) -> None:
        self._tenant = tenant
        self._resolve = resolve
        self._emit = emit
        self._limit = limit
        self._known: dict[ObjectKey, Since] = {}
        self._partial = bytearray()
        self._queue: deque[_Waiting] = deque()
        self._queued = 0
        self._asked: ObjectKey | None = None
        self._starting = True
        self._then: Callable[[], None] | None = None
        self.stopped = False

    # -- the stream ----------------------------------------------------------

    def started(self, owned: Iterable[tuple[ObjectKey, int]]) -> None:
        """The tenant's volumes and networks (with their creation second) when the
        stream started; lines may flow."""
        for key, since in owned:
            self._known[key] = since
        self._starting = False
        self._drain()

    def feed(self, data: bytes) -> bool:
        """Take bytes of the daemon's stream; False if too much is waiting."""
        if self.stopped:
            return True
        self._partial += data
        *lines, rest = bytes(self._partial).split(b"\n")
        self._partial = bytearray(rest)
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not an event: nothing to show
            if isinstance(event, dict):
                self._queue.append(_Waiting(line + b"\n", event))
                self._queued += len(line) + 1
        if self._queued + len(self._partial) > self._limit:
            return False
        self._drain()
        return True

    def finish(self, then: Callable[[], None]) -> None:
        """The daemon ended the stream: call ``then`` once every line was decided."""
        self._then = then
        self._drain()

    def stop(self) -> None:
        """The exchange is gone: emit nothing more, answer nothing."""
        self.stopped = True
        self._queue.clear()
        self._then = None

    # -- deciding ------------------------------------------------------------

    def _drain(self) -> None:
        out: list[bytes] = []
        while self._queue and not self.stopped and not self._starting and self._asked is None:
            item = self._queue[0]
            line, event = item.line, item.event
            key = labelless_event_object(event)
            if key is not None and not item.asked and (
                    key not in self._known or event.get("Action") == "create"):
                item.asked = True
                self._asked = key
                if out:
                    self._emit(b"".join(out))
                    out = []
                self._resolve(key, self._answered)
                return
            self._queue.popleft()
            self._queued -= len(line)
            if key is None:
                visible = event_visible(event, self._tenant)
            else:
                since = self._known.get(key)
                at = event.get("time")
                visible = since is not None and (
                    since == 0 or (type(at) is int and at >= since))
                if event.get("Action") == "destroy":
                    self._known.pop(key, None)
            if visible:
                out.append(line)
        if out:
            self._emit(b"".join(out))
        if (not self._queue and self._asked is None and not self._starting
                and self._then is not None and not self.stopped):
            then, self._then = self._then, None
            then()

    def _answered(self, since: Since) -> None:
        key = self._asked
        if self.stopped or key is None:
            return
        self._known[key] = since
        self._asked = None
        self._drain()

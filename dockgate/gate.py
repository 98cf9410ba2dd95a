"""Pausing a transport's reading for several independent reasons at once.

A client connection may have to stop reading because its request is being
decided, because the daemon's socket is full, or because h11 already holds a
pipelined request; the upstream connection because the client reads slowly.
Each reason comes and goes on its own, and reading resumes only when none is
left.  Calling ``pauseProducing`` / ``resumeProducing`` directly from each
place would let one reason's resume undo another's pause.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer


class ReadGate:
    """Holds a transport's reading paused while any reason is held."""

    def __init__(self, transport: IPushProducer) -> None:
        self._transport = transport
        self._reasons: set[str] = set()

    def hold(self, reason: str) -> None:
        """Pause reading for ``reason`` (idempotent per reason)."""
        if not self._reasons:
            self._transport.pauseProducing()
        self._reasons.add(reason)

    def release(self, reason: str) -> None:
        """Drop ``reason``; resume reading if it was the last one."""
        if reason in self._reasons:
            self._reasons.discard(reason)
            if not self._reasons:
                self._transport.resumeProducing()

    @property
    def held(self) -> frozenset[str]:
        """The reasons currently holding reading paused."""
        return frozenset(self._reasons)

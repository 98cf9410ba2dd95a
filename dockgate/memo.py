"""Bounded memories of the daemon's repeated response heads.

The request side of a repeated exchange is the listener's fast path
(``proxy.fastpath``): one entry per (caller, request head) holds everything
dockgate works out before forwarding.  What it cannot hold is keyed by the
daemon's answer, not by the request: the daemon's response heads carry its
``Date`` and change once a second, so no request key names them.  Three
memories remain for those, each a pure function of the daemon's bytes:
``http1.client._HEADS`` (a response head parsed, with its framing),
``proxy.protocol._FACTS`` (what the protocol reads from a parsed head), and
``http1.server._PLANS`` (the client's response head built from them).  A
result is only remembered after the full work produced it, errors never are,
and what is remembered is immutable.

Both kinds are bounded in entries, and callers only remember results for
heads up to ``SMALL`` bytes, so a daemon (or a client making it answer)
with endless distinct heads costs a cleared dictionary now and then, never
memory.  They live in the reactor thread.
"""

from __future__ import annotations

from typing import Final, Generic, TypeVar

__all__ = ["SMALL", "IdentityMemo", "Memo"]

SMALL: Final = 2048
"""The largest response head, in bytes, whose results are remembered: with the
memories' entry limits, they hold about a megabyte at most."""

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """Values by hashable key, at most ``limit`` of them (all forgotten when full)."""

    __slots__ = ("_data", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._data: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        """The value remembered for ``key``, or None."""
        return self._data.get(key)

    def put(self, key: K, value: V) -> None:
        """Remember ``value`` for ``key``."""
        if len(self._data) >= self.limit:
            self._data.clear()
        self._data[key] = value

    def __len__(self) -> int:
        return len(self._data)


class IdentityMemo(Generic[K, V]):
    """Values by the identity of an (immutable, possibly unhashable) object.

    The object is kept alongside its value, so its ``id`` cannot be reused by
    another object while the entry exists.
    """

    __slots__ = ("_data", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._data: dict[int, tuple[K, V]] = {}

    def get(self, obj: K) -> V | None:
        """The value remembered for this very object, or None."""
        entry = self._data.get(id(obj))
        if entry is None or entry[0] is not obj:
            return None
        return entry[1]

    def put(self, obj: K, value: V) -> None:
        """Remember ``value`` for ``obj``."""
        if len(self._data) >= self.limit:
            self._data.clear()
        self._data[id(obj)] = (obj, value)

    def __len__(self) -> int:
        return len(self._data)

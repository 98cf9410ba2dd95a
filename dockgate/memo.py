"""Bounded memories for the results of pure functions on the request path.

Clients repeat themselves: the CLI, compose and every tool that polls the
daemon (Traefik, Portainer, monitoring) send the same few heads over and
over, byte for byte.  Parsing, admitting and deciding such a head is a pure
function of its bytes (and of the configuration objects passed with them), so
the result of the first time is the result of every time.  Remembering it
takes the per-request work of the common case from tens of microseconds to a
dictionary lookup, without any change to what is accepted or refused: a
result is only ever remembered after the full check produced it, errors are
never remembered, and what is remembered is immutable.

Both memories are bounded in entries, and callers only remember results for
small keys, so a client sending endless distinct requests costs a cleared
dictionary now and then, never memory.  They live in the reactor thread.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["SMALL", "IdentityMemo", "Memo"]

SMALL = 2048
"""The largest head, in bytes, whose results are remembered anywhere on the
request path: with the memories' entry limits, they hold about a megabyte
at most."""

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

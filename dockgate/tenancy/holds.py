"""Image names a running tenant build will resolve, held against being rewritten meanwhile.

A classic build's base images are checked when dockgate reads the Dockerfile
(their owner, and the ``ONBUILD`` triggers they carry, which run as
instructions of the build), but the daemon resolves each ``FROM`` name only
when it starts building, after the whole context has arrived: a client that
holds back the rest of its context can retag the checked name meanwhile, to
an image of its own whose triggers were never read (``COPY --from=<another
tenant's image>``).  So from the check until the build's answer ends, the
names of its bases are *held*: a tenant's request that would write one of
them (tag, commit, build ``t``, import, pull, or remove it or an image that
carries it, or prune the tenant's images) is refused, and a build whose base
name is being written at that moment (the write forwarded, its answer not yet
in) is refused too, so that a write the daemon has not applied yet cannot land
after the check.  A BuildKit solve's bases are held the same way (its frontend
resolves each ``FROM`` after the check), from the check until that solve's
``Control/Solve`` call ends, and so are the names its exporters write, as writes
(``buildkit.connection``).  Holds of one *group* (one BuildKit solve) do not
conflict with each other: a solve's frontend resolves its bases before its
exporter writes, so a build ``FROM app`` that exports ``app`` is no race.

Names are compared as the daemon resolves them (``busybox`` is
``docker.io/library/busybox:latest``); a reference with a digest, or one
that is no name (an image id), cannot be rewritten and is not held.  The
holds live in one process-wide table (``HOLDS``), shared by every listener in
front of the one daemon, like ``buildkit.connection.BUILDS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from dockgate.policy.spelling import image_ref

Kind = Literal["base", "write"]


def name_key(ref: str) -> str | None:
    """The name ``ref`` writes or resolves, as one key (None: a digest, an id, or no name)."""
    try:
        parsed = image_ref(ref)
    except ValueError:
        return None
    if parsed.digest is not None:
        return None
    return f"{parsed.name}:{parsed.tag or 'latest'}"


@dataclass
class Claim:
    """What one exchange holds: names of one kind, released together."""

    kind: Kind
    keys: tuple[str, ...]
    owner: str = ""
    """The tenant whose build holds base names (``building``)."""
    group: str = ""
    """Claims of one group do not conflict with each other ("": none)."""
    released: bool = field(default=False)


class NameHolds:
    """Counts of the holds on each name, by kind: base names of running builds, and
    names that forwarded writes have not finished writing."""

    def __init__(self) -> None:
        self._held: dict[Kind, dict[str, dict[str, int]]] = {"base": {}, "write": {}}
        """kind -> name key -> group -> count."""
        self._builds: dict[str, int] = {}
        self._waiting: list[Callable[[], None]] = []

    def building(self, owner: str) -> bool:
        """Whether a build of tenant ``owner`` holds base names now."""
        return self._builds.get(owner, 0) > 0

    def conflict(self, kind: Kind, names: Iterable[str], group: str = "") -> str | None:
        """The first of ``names`` that a hold of the other kind holds (outside ``group``),
        or None."""
        other = self._held["write" if kind == "base" else "base"]
        for name in names:
            key = name_key(name)
            holders = other.get(key) if key is not None else None
            if holders and (not group or any(g != group for g in holders)):
                return name
        return None

    def claim(self, kind: Kind, names: Iterable[str], owner: str = "", group: str = ""
              ) -> Claim | str:
        """Hold ``names`` as ``kind`` (a base hold for tenant ``owner``'s build); or the
        first name held by the other kind (outside ``group``), holding nothing."""
        names = list(names)
        found = self.conflict(kind, names, group)
        if found is not None:
            return found
        keys = tuple(dict.fromkeys(k for k in map(name_key, names) if k is not None))
        table = self._held[kind]
        for key in keys:
            holders = table.setdefault(key, {})
            holders[group] = holders.get(group, 0) + 1
        if kind == "base":
            self._builds[owner] = self._builds.get(owner, 0) + 1
        return Claim(kind, keys, owner, group)

    def held(self) -> dict[Kind, tuple[str, ...]]:
        """The names held now, by kind (for tests and operators: empty when idle)."""
        return {kind: tuple(sorted(table)) for kind, table in self._held.items()}

    def when_released(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` once, at the next release of any claim; returns what cancels
        that (a claim refused for a conflict may be tried again then)."""
        self._waiting.append(callback)

        def cancel() -> None:
            if callback in self._waiting:
                self._waiting.remove(callback)
        return cancel

    def release(self, claim: Claim) -> None:
        """Let go of ``claim`` (once; again is a no-op)."""
        if claim.released:
            return
        claim.released = True
        table = self._held[claim.kind]
        for key in claim.keys:
            holders = table.get(key, {})
            _uncount(holders, claim.group)
            if not holders:
                table.pop(key, None)
        if claim.kind == "base":
            _uncount(self._builds, claim.owner)
        self.wake()

    def wake(self) -> None:
        """Call (once) what ``when_released`` registered, as a release does: for a
        waiter whose own situation changed without a release (its connection ended,
        so it gives up at once rather than at its deadline)."""
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            callback()


def _uncount(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


HOLDS = NameHolds()
"""The holds of this process (one daemon behind every listener)."""


def base_held_message(name: str) -> str:
    """The refusal of a write of ``name`` while a running build holds it as its base."""
    return (f"image name {name!r} is in use by a running build that starts from it; "
            "write it when that build has ended")


PRUNE_WHILE_BUILDING = ("images cannot be pruned while a build of this tenant runs: it "
                        "could remove a base image the build was checked with, which the "
                        "daemon would then pull; prune when the build has ended")
"""Why a tenant's image prune waits for its own running builds."""


def write_pending_message(name: str) -> str:
    """The refusal of a build whose base name ``name`` is being written at that moment."""
    return (f"image name {name!r} is being written by another request; build from it "
            "when that request has ended")

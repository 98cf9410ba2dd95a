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
after the check.  A BuildKit build's bases are held the same way (its frontend
resolves each ``FROM`` after the check), from the check until the connection
that named them ends (``buildkit.connection``).

Names are compared as the daemon resolves them (``busybox`` is
``docker.io/library/busybox:latest``); a reference with a digest, or one
that is no name (an image id), cannot be rewritten and is not held.  The
holds live in one process-wide table (``HOLDS``), shared by every listener in
front of the one daemon, like ``buildkit.connection.BUILDS``.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    released: bool = field(default=False)


class NameHolds:
    """Counts of the holds on each name, by kind: base names of running builds, and
    names that forwarded writes have not finished writing."""

    def __init__(self) -> None:
        self._held: dict[Kind, dict[str, int]] = {"base": {}, "write": {}}
        self._builds: dict[str, int] = {}

    def building(self, owner: str) -> bool:
        """Whether a build of tenant ``owner`` holds base names now."""
        return self._builds.get(owner, 0) > 0

    def conflict(self, kind: Kind, names: Iterable[str]) -> str | None:
        """The first of ``names`` that a hold of the other kind holds, or None."""
        other = self._held["write" if kind == "base" else "base"]
        for name in names:
            key = name_key(name)
            if key is not None and other.get(key):
                return name
        return None

    def claim(self, kind: Kind, names: Iterable[str], owner: str = "") -> Claim | str:
        """Hold ``names`` as ``kind`` (a base hold for tenant ``owner``'s build); or the
        first name held by the other kind, holding nothing."""
        names = list(names)
        found = self.conflict(kind, names)
        if found is not None:
            return found
        keys = tuple(dict.fromkeys(k for k in map(name_key, names) if k is not None))
        table = self._held[kind]
        for key in keys:
            table[key] = table.get(key, 0) + 1
        if kind == "base":
            self._builds[owner] = self._builds.get(owner, 0) + 1
        return Claim(kind, keys, owner)

    def release(self, claim: Claim) -> None:
        """Let go of ``claim`` (once; again is a no-op)."""
        if claim.released:
            return
        claim.released = True
        table = self._held[claim.kind]
        for key in claim.keys:
            left = table.get(key, 0) - 1
            if left > 0:
                table[key] = left
            else:
                table.pop(key, None)
        if claim.kind == "base":
            left = self._builds.get(claim.owner, 0) - 1
            if left > 0:
                self._builds[claim.owner] = left
            else:
                self._builds.pop(claim.owner, None)


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

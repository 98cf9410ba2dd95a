"""Host paths that hold: no symlink below an allowed root, and roots only root can change.

dockgate runs on the daemon's host, next to it, so it sees the paths the
daemon will mount.  A string check of a bind source is not enough: the
daemon resolves the path when it mounts it, at *start* (runc's bind mount,
``MkdirAll`` of missing directories, both following symlinks), and a
container that can write under an allowed root can plant ``esc -> /`` there
for the next container to bind ``<root>/esc``.  So:

**Below an allowed root, no symlinks.**  The *root* of an ``allow`` pattern is
its literal part (``/srv/data`` for ``/srv/data/**``; ``/srv`` for
``/srv/*/x``).  For a bind source under a root, dockgate ``lstat``s every
component strictly below the root, from the root down, and refuses the
request when one of them is a symbolic link (whatever it points at: a
target that is fine now can be swapped later).  A component that does not
exist ends the walk (the daemon creates missing directories at start, and
the check runs again then).  Symlinks at or above the root are the
operator's own layout and are followed (``resolve_symlinks: true`` also
re-checks the resolved path against the patterns).

**Again at start.**  ``POST /containers/{id}/start`` and ``restart`` inspect
the container and judge its stored binds and mounts the same way
(``dockgate.policy.joins``), since a component may have been swapped for a
symlink between create and start.  (A window remains between that check and
the daemon's mount; the rule about roots below is what keeps it closed to
anyone but root.)

**Roots only root can change.**  At policy load, every root and each of its
ancestors (as written and as resolved) must be owned by root and not
writable by group (unless the group is root's) or others; an ancestor that
is writable by others but sticky (``/tmp``) is accepted when the next
component on the path is owned by root, since nobody else can rename or
remove it.  For a root that does not exist, its deepest existing ancestor is
held to the root's standard.  Otherwise a host user could create or swap
components below the root between dockgate's check and the daemon's mount.
``dockgate policy check`` prints such a root as a warning; ``serve`` (and a
reload) refuses the policy unless the rule says ``accept_writable_roots:
true``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence
from typing import Any

_GLOB = frozenset("*?[")


def literal_root(pattern: str) -> str:
    """The literal part of a cleaned host-path pattern: the segments before any glob."""
    segs = [s for s in pattern.split("/") if s]
    out: list[str] = []
    for s in segs:
        if _GLOB & set(s):
            break
        out.append(s)
    return "/" + "/".join(out)


def _under(path: str, root: str) -> bool:
    return root in ("/", path) or path.startswith(root + "/")


def symlink_below(path: str, roots: Iterable[str]) -> str | None:
    """The first component of ``path`` below its (shortest) root that is a symlink, else None.

    ``path`` is a cleaned absolute path that an ``allow`` pattern matched;
    ``roots`` the literal roots of the patterns that matched it.
    """
    mine = [r for r in roots if _under(path, r)]
    if not mine:
        return None
    root = min(mine, key=len)
    rest = path[len(root):].strip("/")
    current = root.rstrip("/")
    for seg in rest.split("/") if rest else ():
        current = f"{current}/{seg}"
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return None
        except OSError as e:
            return f"{current} cannot be checked ({e.strerror})"
        if stat.S_ISLNK(st.st_mode):
            return f"{current} is a symbolic link below the allowed root {root}"
        if not stat.S_ISDIR(st.st_mode):
            return None
    return None


def _writers(st: os.stat_result) -> str | None:
    if st.st_uid != 0:
        return f"owned by uid {st.st_uid}"
    if st.st_mode & stat.S_IWGRP and st.st_gid != 0:
        return f"writable by group {st.st_gid}"
    if st.st_mode & stat.S_IWOTH:
        return "writable by others"
    return None


def _chain(path: str) -> list[str]:
    segs = [s for s in path.split("/") if s]
    return ["/"] + ["/" + "/".join(segs[: i + 1]) for i in range(len(segs))]


def root_problem(root: str) -> str | None:
    """Why ``root`` (or an ancestor) can be changed by someone other than root, else None."""
    for spelling in dict.fromkeys((root, os.path.realpath(root))):
        chain = _chain(spelling)
        existing: list[tuple[str, os.stat_result]] = []
        for p in chain:
            try:
                existing.append((p, os.lstat(p)))
            except FileNotFoundError:
                break
            except OSError as e:
                return f"{p} cannot be checked ({e.strerror})"
        for i, (p, st) in enumerate(existing):
            why = _writers(st)
            if why is None:
                continue
            last = i == len(existing) - 1
            if not last and st.st_mode & stat.S_ISVTX and existing[i + 1][1].st_uid == 0:
                continue  # sticky: others cannot rename or remove root's entry below
            if stat.S_ISLNK(st.st_mode) and not last:
                continue  # a link's own bits mean nothing; its directory was checked
            return f"{p} is {why}"
    return None


def root_problems(patterns: Sequence[str]) -> list[str]:
    """One line per allowed root that someone other than root can change."""
    out = []
    for root in dict.fromkeys(literal_root(p) for p in patterns):
        why = root_problem(root)
        if why is not None:
            out.append(f"allowed host path root {root}: {why}; a host user could swap a path "
                       "below it for a symlink between dockgate's check and the daemon's mount "
                       "(make it root's, or set accept_writable_roots: true)")
    return out


class HostPathCheck:
    """The ``host_paths`` check, carrying its allowed patterns for the load-time root check."""

    def __init__(self, check: Callable[..., Any], allow: tuple[str, ...], accept: bool) -> None:
        self._check = check
        self.allow = allow
        self.accept_writable_roots = accept

    def __call__(self, *args: Any) -> Any:
        return self._check(*args)

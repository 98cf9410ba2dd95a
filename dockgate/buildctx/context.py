"""Which Dockerfile a classic build will read, and whether the rest of the context changes it.

The daemon unpacks the whole context, then opens ``dockerfile`` (default
``Dockerfile``, falling back to ``dockerfile`` only for the default name;
moby ``builder/remotecontext/detect.go``) inside it, following symlinks
within the context.  Later tar entries overwrite earlier ones, and an entry
written below a symlink lands wherever the symlink points.  So, fail closed:

* the Dockerfile must be a regular file entry, not a link;
* no entry may lie below a symlink entry (``docker build`` never sends one);
* after the Dockerfile was read, no entry may name it, an ancestor of it, a
  path below it, or the other default name: such an entry would replace what
  was checked.  Before the decision that refuses the build; after it (the
  context still streaming) it ends the forwarding before the daemon has the
  whole context, so the daemon builds nothing.

``ContextCheck`` is pure: the I/O layer feeds it the raw body and asks
``ready``/``dockerfile``; ``feed`` raises ``ContextError`` for a refusal.
"""

from __future__ import annotations

from dockgate.buildctx.tarscan import ContextError, Entry, TarScanner, clean_name

DEFAULT = "Dockerfile"
DOCKERFILE_LIMIT = 1 << 20
"""Largest Dockerfile dockgate reads (the daemon reads any size; a larger one is refused)."""


def _ancestors(name: str) -> set[str]:
    out = set()
    while "/" in name:
        name = name.rsplit("/", 1)[0]
        out.add(name)
    return out


class ContextCheck:
    """Reads a build context body; says when the Dockerfile is known.

    Args:
        dockerfile: the build's ``dockerfile`` query value ("" when absent).
    """

    def __init__(self, dockerfile: str) -> None:
        raw = dockerfile or DEFAULT
        name = clean_name(raw)
        if not name:
            raise ContextError(f"dockerfile {dockerfile!r} names no file")
        self.names = [name] + (["dockerfile"] if raw == DEFAULT else [])
        self._watch = set(self.names)
        for n in self.names:
            self._watch |= _ancestors(n)
        self._scanner = TarScanner(lambda n: n in self.names, DOCKERFILE_LIMIT)
        self._symlinks: set[str] = set()
        self._found: dict[str, bytes] = {}
        self.chosen: str | None = None
        self.dockerfile: bytes | None = None
        self.ended = False

    @property
    def ready(self) -> bool:
        """The Dockerfile the daemon will read is known (``dockerfile`` holds it)."""
        return self.dockerfile is not None

    def feed(self, data: bytes) -> None:
        """The next bytes of the body.

        Raises:
            ContextError: the context cannot be checked, or (once ``ready``)
                an entry would change the Dockerfile that was checked.
        """
        self._scanner.feed(data)
        self._take()

    def finish(self) -> None:
        """The body ended (raises ContextError like ``feed``; also when no Dockerfile)."""
        self._scanner.finish()
        self._take()
        self.ended = True
        if self.dockerfile is None:
            for n in self.names:
                if n in self._found:
                    self.chosen, self.dockerfile = n, self._found[n]
                    return
            raise ContextError(f"Cannot locate specified Dockerfile: {self.names[0]}")

    def _take(self) -> None:
        entries, self._scanner.entries = self._scanner.entries, []
        for e in entries:
            self._entry(e)
        if self._scanner.ended and self.dockerfile is None:
            for n in self.names:
                if n in self._found:
                    self.chosen, self.dockerfile = n, self._found[n]
                    break

    def _entry(self, e: Entry) -> None:
        parents = _ancestors(e.name)
        if parents & self._symlinks:
            raise ContextError(f"tar entry {e.name!r} lies below a symlink in the context")
        if e.kind == "symlink":
            self._symlinks.add(e.name)
        touches = (
            e.name in self._watch
            or any(e.name.startswith(n + "/") for n in self.names)
        )
        if not touches:
            return
        if self.dockerfile is not None or e.name in self._found:
            raise ContextError(
                f"tar entry {e.name!r} would replace the Dockerfile dockgate checked"
            )
        if e.name in self.names:
            if e.kind != "file" or e.content is None:
                raise ContextError(f"the Dockerfile {e.name!r} must be a regular file")
            self._found[e.name] = e.content
            if e.name == self.names[0]:
                self.chosen, self.dockerfile = e.name, e.content
        elif any(e.name.startswith(n + "/") for n in self.names) or e.kind != "dir":
            raise ContextError(f"tar entry {e.name!r} would change the Dockerfile's path")


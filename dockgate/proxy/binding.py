"""Decisions bind to what was checked (issue 21, time of check and time of use).

Some decisions rest on the daemon's state, read just before the request is
forwarded: under a ``user`` rule, an empty ``User`` means the image's user
(``GET /images/{Image}/json``) or, for exec, the container's.  The daemon
resolves the name again when it acts, so a concurrent change in between
(``POST /images/{name}/tag`` moving a tag onto a root-user image, or a rename
putting another container under the name) would be acted on unchecked.

* exec: the container the decision read is named by its full id in the
  forwarded request (``bind_exec``); clients never see that path.
* container create: naming the image id would change what clients see
  (the daemon records ``Config.Image`` as given, and ``docker ps`` shows an
  id instead of the name), so the create is forwarded as the client wrote
  it and verified after the fact: the created container's ``Image`` must be
  the image id that was checked, or it is removed and the request refused
  (``verify_created``).  Until that verification ends, a start that could
  name the new container waits (``PENDING``), so the unverified container
  cannot be started by someone who guesses or lists its name in between.

Tenancy pins the objects it checks for ownership itself (``scoping``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred

from dockgate.model import CanonicalRequest
from dockgate.tenancy.ownership import ObjectRef, pin

Fetch = Callable[[str, str, Any], Awaitable[tuple[int, Any]]]
"""``fetch(method, target, json_body)`` → (status, decoded JSON or None), as in ``scoping``."""

STARTS = frozenset({"container.start", "container.restart", "container.unpause",
                    "container.rename"})
"""Endpoints that make a created container run (or rename it, so that a start by the
new name would not be seen to be of it): they wait for pending verifications of the
container they name."""


def checked_image(inspected: Any) -> str | None:
    """The image id an image inspection answered (what the decision read), or None."""
    if isinstance(inspected, Mapping):
        ident = inspected.get("Id")
        if isinstance(ident, str) and ident.startswith("sha256:"):
            return ident
    return None


def bind_exec(request: CanonicalRequest, inspected: Any) -> CanonicalRequest:
    """``request`` (exec create) naming the container ``inspected`` describes by its full id.

    Unchanged when the inspection carries no id (the decision then treats the
    user as unknown, which is root, and refuses).
    """
    ident = inspected.get("Id") if isinstance(inspected, Mapping) else None
    if not isinstance(ident, str) or len(ident) != 64 or "id" not in request.params:
        return request
    ref = ObjectRef("container", request.params["id"], "path", "id", "write", ("id",))
    return pin(request, ref, ident)


def created(body: bytes, query: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """The new container's id (from the create's answer ``body``; "" if it has none)
    and the name the create asked for (its ``name`` query; "" when the daemon picks)."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    ident = answer.get("Id") if isinstance(answer, dict) else None
    name = next((v for k, v in query if k == "name"), "")
    return (ident if isinstance(ident, str) else ""), name


async def verify_created(
    ident: str, image: str, checked: str, version: str | None, fetch: Fetch
) -> str | None:
    """Check that the container ``ident`` a create answered (``created``; "" when the
    answer named none) runs image ``checked``.

    Returns None when it does; otherwise removes the container (forcibly,
    with its anonymous volumes) and returns the refusal for the client.
    Anything that cannot be verified counts as a mismatch (fail closed).
    """
    if not ident:
        return f"cannot verify which image the new container of {image} runs"
    prefix = f"/v{version}" if version else ""
    target = prefix + "/containers/" + quote(ident, safe="")
    found: Any = None
    try:
        status, info = await fetch("GET", target + "/json", None)
        found = info.get("Image") if status == 200 and isinstance(info, dict) else None
    finally:
        if found != checked:  # also when the question itself failed
            await fetch("DELETE", target + "?force=1&v=1", None)
    if found == checked:
        return None
    return (
        f"image {image} changed while the request was checked (checked {checked[:19]}, "
        f"created from {str(found)[:19]}); the container was removed"
    )


_HEX = frozenset("0123456789abcdef")


class Pending:
    """Creates being verified, process-wide, each by the new container's id and the
    name the create gave it ("" when the daemon chose one).

    A start (or rename) waits while a pending container could be the one it names.
    The daemon resolves ``{id}`` as a full id, then a name, then an id prefix, so
    a reference may name a pending container when it is a prefix of its id, its
    name, or, for a container whose name the daemon chose (unknown here until it
    is inspected), any reference that is not hexadecimal: such names never are.
    Other starts go on at once, so a verification that hangs delays only starts
    that might be of its container, not every start on the daemon.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, str]] = []
        self._waiters: list[tuple[str, Deferred[None]]] = []

    @property
    def count(self) -> int:
        """How many verifications are under way."""
        return len(self._pending)

    def begin(self, ident: str, name: str) -> None:
        """A verification of the container ``ident`` (created as ``name``) starts."""
        self._pending.append((ident, name.removeprefix("/")))

    def end(self, ident: str, name: str) -> None:
        """That verification ended; starts it held (and no other) go on."""
        self._pending.remove((ident, name.removeprefix("/")))
        waiting, self._waiters = self._waiters, []
        for ref, d in waiting:
            if self.holds(ref):
                self._waiters.append((ref, d))
            else:
                d.callback(None)

    def holds(self, ref: str) -> bool:
        """Whether a start of ``ref`` might start a container still being verified."""
        ref = ref.removeprefix("/")
        hexadecimal = bool(ref) and set(ref) <= _HEX
        return any(
            (hexadecimal and ident.startswith(ref)) or ref == name
            or (not name and not hexadecimal)
            for ident, name in self._pending
        )

    def wait(self, ref: str) -> Deferred[None]:
        """Fires once no pending verification holds ``ref`` (at once if none does)."""
        d: Deferred[None] = Deferred()
        if self.holds(ref):
            self._waiters.append((ref, d))
        else:
            d.callback(None)
        return d


PENDING = Pending()

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
  (``verify_created``).  Until that verification ends, starting any
  container waits (``PENDING``), so the unverified container cannot be
  started by someone who guesses or lists its name in between.

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

STARTS = frozenset({"container.start", "container.restart", "container.unpause"})
"""Endpoints that make a created container run: they wait for pending verifications."""


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


async def verify_created(
    body: bytes, image: str, checked: str, version: str | None, fetch: Fetch
) -> str | None:
    """Check that the container a create answered runs image ``checked``.

    Returns None when it does; otherwise removes the container (forcibly,
    with its anonymous volumes) and returns the refusal for the client.
    Anything that cannot be verified counts as a mismatch (fail closed).
    """
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    ident = answer.get("Id") if isinstance(answer, dict) else None
    if not isinstance(ident, str) or not ident:
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


class Pending:
    """Creates being verified, process-wide; starts wait until there are none."""

    def __init__(self) -> None:
        self.count = 0
        self._waiters: list[Deferred[None]] = []

    def begin(self) -> None:
        self.count += 1

    def end(self) -> None:
        self.count -= 1
        if self.count == 0:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(None)

    def wait(self) -> Deferred[None]:
        """Fires once no verification is pending (at once if none is)."""
        d: Deferred[None] = Deferred()
        if self.count == 0:
            d.callback(None)
        else:
            self._waiters.append(d)
        return d


PENDING = Pending()

"""Holding a classic build's context until its Dockerfile is read, then forwarding it all.

A ``POST /build`` body streams; its Dockerfile sits somewhere in the tar.
When the decision needs the Dockerfile (a ``build`` rule that forbids URL
sources, or a tenant whose image references must be checked), the I/O layer
keeps the body here, feeds it to ``buildctx.ContextCheck`` and decides only
once the Dockerfile is known.  Then the held bytes are forwarded exactly as
received, followed by the rest of the stream, which is still fed to the check
so that a later tar entry cannot replace the Dockerfile that was judged (the
forwarding is then cut before the daemon has the whole context).

At most ``HOLD_LIMIT`` bytes are held: a context whose Dockerfile comes later
than that is refused (``docker build`` sends entries in name order, so
``Dockerfile`` comes early unless many upper-case or dot names precede it, or
``-f`` names a file outside the context, which the CLI appends at the end).
"""

from __future__ import annotations

from typing import Any

from dockgate.buildctx import ContextCheck, DockerfileFacts, parse
from dockgate.model import CanonicalRequest
from dockgate.policy.buildcontrol import buildargs, buildkit, remote

HOLD_LIMIT = 64 << 20


def classic_context(request: CanonicalRequest) -> bool:
    """A classic build whose body is the context (not BuildKit, not a remote context)."""
    return request.endpoint.id == "image.build" and not buildkit(request) and not remote(request)


class HeldContext:
    """A build body held until its Dockerfile is known (see the module docstring).

    Attributes:
        pending: still holding (no decision yet).
        held: the bytes received so far while pending.
        policy, context: what the decision is to be made with, once ready.
    """

    def __init__(self, request: CanonicalRequest, policy: Any, context: Any) -> None:
        values = [v for k, v in request.query if k == "dockerfile"]
        self.check = ContextCheck(values[0] if values else "")
        self.args = buildargs(request)
        self.pending = True
        self.held = bytearray()
        self.policy = policy
        self.context = context

    def take(self, data: bytes) -> None:
        """The next body bytes; raises ContextError, or OverflowError past ``HOLD_LIMIT``."""
        if self.pending:
            self.held += data
            if len(self.held) > HOLD_LIMIT and not self.check.ready:
                raise OverflowError(
                    f"the build context's Dockerfile is not within its first {HOLD_LIMIT} bytes"
                )
        self.check.feed(data)

    def end(self) -> None:
        """The body ended (raises ContextError)."""
        self.check.finish()

    @property
    def ready(self) -> bool:
        """The Dockerfile is known."""
        return self.check.ready

    def facts(self) -> DockerfileFacts:
        """The Dockerfile's facts (call once ``ready``)."""
        assert self.check.dockerfile is not None
        return parse(self.check.dockerfile, self.args)

    def release(self) -> bytes:
        """The held bytes, to forward; holding ends."""
        data, self.held = bytes(self.held), bytearray()
        self.pending = False
        return data

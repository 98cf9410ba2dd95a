"""Errors that dockgate answers itself, in the shape the docker CLI prints.

The docker CLI and the SDKs show the ``message`` member of a JSON error body
verbatim, so every refusal carries one, prefixed with ``dockgate:`` so that a
user can tell dockgate's word from the daemon's.
"""

from __future__ import annotations

import json

TIMED_OUT = 504
"""``daemon_client.Answer.status`` when the daemon did not answer in time
(dockgate's own gateway timeout; the daemon itself never answers 504).  Here,
not in ``daemon_client``, so that the pure core (``scoping``) can read it without
loading the Twisted client."""


class DockgateError(Exception):
    """A request that dockgate answers itself instead of forwarding.

    Attributes:
        status: the HTTP status sent to the client.
        message: the human text, without the ``dockgate:`` prefix.
        reason: a short stable code for the audit log and metrics.
    """

    status: int = 400
    reason: str = "bad-request"
    content_type: bytes = b"application/json"

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if reason is not None:
            self.reason = reason

    def body(self) -> bytes:
        """The Docker-shaped JSON body for this error."""
        return error_body(self.message)


class BadRequest(DockgateError):
    """Malformed or ambiguous HTTP: the daemon could read it differently."""

    status = 400
    reason = "bad-request"


class HeadTooLarge(DockgateError):
    """The request head exceeds the configured limit."""

    status = 431
    reason = "head-too-large"


class BodyTooLarge(DockgateError):
    """A body that must be inspected is larger than the cap."""

    status = 413
    reason = "body-too-large"


class Forbidden(DockgateError):
    """Refused: an unknown endpoint, version, or a policy denial."""

    status = 403
    reason = "forbidden"


class NotFound(DockgateError):
    """A path the daemon would not route either."""

    status = 404
    reason = "not-found"


class MethodNotAllowed(DockgateError):
    """A known path with a method the API does not define for it."""

    status = 405
    reason = "method-not-allowed"


class RequestTimeout(DockgateError):
    """The client did not send a whole request head in time (slowloris)."""

    status = 408
    reason = "request-timeout"


class TooManyConnections(DockgateError):
    """Over the connection cap, overall or for this caller."""

    status = 429
    reason = "too-many-connections"


class AuditUnavailable(DockgateError):
    """The audit record could not be written, so the request is not forwarded."""

    status = 503
    reason = "audit-unavailable"


class UpstreamUnavailable(DockgateError):
    """The daemon could not be reached."""

    status = 502
    reason = "upstream-unavailable"


class UpstreamTimeout(DockgateError):
    """The daemon did not answer with a response head in time."""

    status = 504
    reason = "upstream-timeout"


def error_body(message: str) -> bytes:
    """Serialise ``{"message": "dockgate: <message>"}`` as the daemon does (with a newline)."""
    return json.dumps({"message": f"dockgate: {message}"}).encode() + b"\n"

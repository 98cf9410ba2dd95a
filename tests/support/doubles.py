"""Stand-ins the unit tests use in place of a real policy or lookup.

They lived in the package once; nothing in dockgate uses them, so they live
with the tests.
"""

from __future__ import annotations

import re
from typing import Any

from dockgate.admission.routes import ROUTES
from dockgate.audit.redact import Redactor
from dockgate.audit.schema import build_record
from dockgate.model import AuditEvent, CanonicalRequest, Decision, Operation, Peer

_PARAM = re.compile(r"\{[^}]*\}")


class AllowAll:
    """The privileged profile: everything the route table accepts is allowed."""

    name = "privileged"

    def decide(self, request: CanonicalRequest, peer: Peer) -> Decision:
        """Allow, naming the profile."""
        return Decision("allow", self.name, None, "privileged profile allows all")


def flat_record(event: AuditEvent) -> dict[str, Any]:
    """The metadata-level record of one event, without chain fields."""
    return build_record(event, "metadata", Redactor())


def endpoint_for(method: str, template: str) -> Operation | None:
    """The endpoint for a method and template as the OpenAPI snapshots spell it
    (parameter names differ between the snapshots and the route table)."""
    norm = _PARAM.sub("{}", template)
    for r in ROUTES:
        if r.endpoint.method == method and _PARAM.sub("{}", r.endpoint.template) == norm:
            return r.endpoint
    return None

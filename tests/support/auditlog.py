"""Audit events as the proxy makes them, for tests that write logs with the real writer."""

from __future__ import annotations

import json
from typing import Any

from dockgate.admission.admit import ApiContext, admit_body, admit_head
from dockgate.model import AuditEvent, CanonicalRequest, Decision, Peer

PEER = Peer("unix:/run/g.sock", "unix", "unix:pid=42", pid=42, uid=1000, gid=1000)
ALLOW = Decision("allow", "privileged", None, "privileged profile allows all")
CTX = ApiContext(daemon_version="1.41")


def canonical(method: str, target: str, body: Any = None,
              headers: tuple[tuple[bytes, bytes], ...] = ()) -> CanonicalRequest:
    """A request as admission makes it (with a JSON body when given)."""
    hdrs = list(headers)
    if body is not None:
        hdrs.append((b"content-type", b"application/json"))
    request = admit_head(method, target.encode(), hdrs, CTX)
    if body is not None:
        request = admit_body(request, json.dumps(body).encode(), CTX)
    return request


def event(request: CanonicalRequest | None, stage: str = "RequestDecided",
          decision: Decision | None = ALLOW, **changes: Any) -> AuditEvent:
    """An audit event of ``request`` at ``stage``; keyword arguments override fields."""
    fields: dict[str, Any] = {
        "stage": stage, "id": changes.pop("id", "r1"), "time": 1767225600.25,
        "listener": PEER.listener, "peer": PEER, "method": request.method if request else "GET",
        "raw_target": request.target if request else "/x", "request": request,
        "decision": decision,
    }
    fields.update(changes)
    return AuditEvent(**fields)

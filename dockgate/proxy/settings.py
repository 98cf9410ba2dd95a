"""The settings one listener's connections share.

``tap`` and ``cli`` build a ``ProxySettings`` from the command line or config
file and give it to one ``protocol.ProxyServerFactory`` per listener.  This
module does not import ``protocol`` (which imports it), so the two form no
cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet.interfaces import IStreamClientEndpoint

from dockgate.admission.admit import ApiContext
from dockgate.model import AuditEvent
from dockgate.policy.decision import Policy
from dockgate.proxy.workers import AdmissionWorkers
from dockgate.tenancy import TenantMap


class AuditSink(Protocol):
    """Where audit events go (the audit log writer, or a list in tests)."""

    def record(self, event: AuditEvent) -> None:
        """Record one event; raise if it cannot be recorded.

        A failure at the ``RequestDecided`` stage makes the protocol refuse
        the request (fail closed) instead of forwarding it unrecorded.
        """
        ...

    def session_data(self, event_id: str, direction: str, data: bytes) -> None:
        """Bytes of a hijacked session: ``in`` from the client, ``out`` from the daemon."""
        ...

    # A sink may also have ``record_then(event, then)``: record a decision and
    # call ``then(written)`` once it is written (maybe later in the reactor
    # turn); the protocol then forwards the request only from ``then``.  See
    # ``audit.JsonLinesAudit.record_then``.


@dataclass(frozen=True)
class ProxySettings:
    """What every connection of a listener shares.

    Attributes:
        upstream: endpoint of the daemon's socket.
        policy: returns the policy in force now (so SIGHUP reloads apply to new requests).
        audit: the audit sink.
        api: API context for admission (daemon version, JSON body cap).
        connect_timeout: seconds to connect to the daemon before answering 502.
        response_timeout: seconds to wait for the daemon's response head before 504,
            and for the whole answer to each of dockgate's own side requests
            (``daemon_client.DaemonClient``'s ``answer_timeout``).
        max_head_size: request head cap in bytes (431 above).
        pool_size: idle keep-alive upstream connections kept.
        head_timeout: seconds a client may take to send a whole request head
            once it started one (slowloris); 408 after.
        idle_timeout: seconds an idle keep-alive client connection is kept.
            Spliced sessions and streaming responses are never cut.
        max_connections: client connections open at once on a listener; 429 above.
        max_connections_per_peer: the same, per caller (unix uid, certificate
            principal, or remote host).
        tenants: returns the tenant map in force, if tenancy is configured
            (then every caller must map to a tenant).
        workers: the processes that admit large JSON bodies off the reactor
            thread (``workers``), shared by every listener; None admits them
            on the reactor, a step per turn (``turns``).
    """

    upstream: IStreamClientEndpoint
    policy: Callable[[], Policy]
    audit: AuditSink
    api: ApiContext = field(default_factory=ApiContext)
    connect_timeout: float = 10.0
    response_timeout: float = 300.0
    max_head_size: int = 64 * 1024
    pool_size: int = 16
    head_timeout: float = 30.0
    idle_timeout: float = 300.0
    max_connections: int = 4096
    max_connections_per_peer: int = 512
    tenants: Callable[[], TenantMap | None] | None = None
    workers: AdmissionWorkers | None = None


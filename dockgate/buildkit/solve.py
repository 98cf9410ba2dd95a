"""What a BuildKit solve asks for, decoded from its gRPC messages (pure).

Stub: the signatures i16w codes against; bodies follow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal


class Undecodable(ValueError):
    """A message dockgate cannot decode (or that carries a field it does not know
    where an unknown field could change what the daemon does as root): the
    mediator ends the call with an error instead of passing it on."""


@dataclass(frozen=True, slots=True)
class LlbMount:
    """One mount of an exec op.

    Attributes:
        type: ``bind``, ``cache``, ``secret``, ``ssh`` or ``tmpfs``.
        dest: the path inside the step's container.
        input: index of the op input mounted (-1: none, scratch).
        source: the source identifier of that input when it is a source op
            (``docker-image://...``, ``local://context``, ``git://...``), "" otherwise.
        selector: the path inside the input.
        readonly: the mount is read-only.
        cache_id / secret_id / ssh_id: the id of a cache, secret or ssh mount.
    """

    type: str
    dest: str
    input: int = -1
    source: str = ""
    selector: str = ""
    readonly: bool = False
    cache_id: str = ""
    secret_id: str = ""
    ssh_id: str = ""


@dataclass(frozen=True, slots=True)
class LlbOp:
    """One op of an LLB definition.

    Attributes:
        digest: ``sha256:...`` of the serialized op (how other ops name it).
        kind: ``source``, ``exec``, ``file``, ``build``, ``merge``, ``diff`` or ``none``
            (the terminal op that only names the result).
        inputs: digests of the ops this one reads.
        identifier: a source op's identifier (``docker-image://busybox:latest``).
        attrs: a source op's attributes.
        network: an exec op's network mode: ``sandbox``, ``host`` or ``none``.
        security: an exec op's security mode: ``sandbox`` or ``insecure``.
        mounts: an exec op's mounts.
        args: an exec op's command line (for the audit record).
    """

    digest: str
    kind: str
    inputs: tuple[str, ...] = ()
    identifier: str = ""
    attrs: Mapping[str, str] = field(default_factory=dict)
    network: str = ""
    security: str = ""
    mounts: tuple[LlbMount, ...] = ()
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SolveAsk:
    """What one Solve asks the daemon to do.

    Attributes:
        via: ``control`` (``/moby.buildkit.v1.Control/Solve``, the client's
            build) or ``bridge`` (``/moby.buildkit.v1.frontend.LLBBridge/Solve``,
            a frontend's sub-solve).
        ref: the solve's ref (control) or the build id (bridge).
        session: the session the daemon pulls the context and secrets from.
        frontend: ``dockerfile.v0``, ``gateway.v0`` or "" (a raw LLB definition).
        frontend_attrs: the frontend's options (``FrontendAttrs`` / ``FrontendOpt``).
        entitlements: ``network.host``, ``security.insecure``, ... as asked.
        ops: the LLB definition's ops (empty for a frontend solve).
        exporters: exporter types (``image``, ``moby``, ``local``, ``tar``, ...).
        exporter_attrs: each exporter's attributes, parallel to ``exporters``.
        frontend_inputs: names of the frontend's input definitions (named contexts).
    """

    via: Literal["control", "bridge"]
    ref: str = ""
    session: str = ""
    frontend: str = ""
    frontend_attrs: Mapping[str, str] = field(default_factory=dict)
    entitlements: tuple[str, ...] = ()
    ops: tuple[LlbOp, ...] = ()
    exporters: tuple[str, ...] = ()
    exporter_attrs: tuple[Mapping[str, str], ...] = ()
    frontend_inputs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ContainerAsk:
    """A gateway ``NewContainer``: a container the frontend starts inside the build.

    Attributes:
        buildid: the build it belongs to.
        container_id: the id the frontend chose.
        network: ``sandbox``, ``host`` or ``none``.
        security: ``sandbox`` or ``insecure``.
        mounts: its mounts (``source`` names the result ref or "").
    """

    buildid: str
    container_id: str = ""
    network: str = ""
    security: str = ""
    mounts: tuple[LlbMount, ...] = ()


@dataclass(frozen=True, slots=True)
class Packet:
    """One fsutil packet on the session's file sync stream.

    Attributes:
        kind: ``stat``, ``req``, ``data``, ``fin`` or ``err``.
        id: the file id the packet is about.
        path: a ``stat`` packet's path ("" otherwise).
        mode: a ``stat`` packet's mode bits (Go ``os.FileMode``).
        size: a ``stat`` packet's size.
        linkname: a ``stat`` packet's symlink target.
        data: a ``data`` packet's bytes (or an ``err`` packet's message).
    """

    kind: str
    id: int = 0
    path: str = ""
    mode: int = 0
    size: int = 0
    linkname: str = ""
    data: bytes = b""


def decode_control_solve(payload: bytes) -> SolveAsk:
    """``/moby.buildkit.v1.Control/Solve`` request body → SolveAsk (Undecodable if not)."""
    raise NotImplementedError


def decode_bridge_solve(payload: bytes, buildid: str) -> SolveAsk:
    """``/moby.buildkit.v1.frontend.LLBBridge/Solve`` request body → SolveAsk."""
    raise NotImplementedError


def decode_new_container(payload: bytes, buildid: str) -> ContainerAsk:
    """``/moby.buildkit.v1.frontend.LLBBridge/NewContainer`` request body → ContainerAsk."""
    raise NotImplementedError


def decode_filesync_packet(payload: bytes) -> Packet:
    """One fsutil ``types.Packet`` of the session's file sync → Packet."""
    raise NotImplementedError


def decode_secret_request(payload: bytes) -> str:
    """``/moby.buildkit.secrets.v1.Secrets/GetSecret`` request → the secret's ID."""
    raise NotImplementedError

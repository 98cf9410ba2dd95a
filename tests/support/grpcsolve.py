"""A raw BuildKit client for attack tests: one gRPC call over ``POST /grpc`` upgraded to h2c.

buildx never sends some of what a Control ``Solve`` may carry (frontend inputs,
arbitrary frontend options), so the attacks that use them build the request here
from dockgate's own protobuf descriptors (``dockgate.buildkit.messages``) and send it
as buildx dials the daemon: over a unix socket or, for a tenant's TLS principal,
over TLS.  The answer is the call's headers and trailers (``grpc-status``,
``grpc-message``), by name.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import struct
import urllib.parse
from collections.abc import Mapping
from typing import Any

import h2.config
import h2.connection
import h2.events

from dockgate.buildkit import messages

GRPC_CONTROL_SOLVE = "/moby.buildkit.v1.Control/Solve"


def _mkfile(path: str, data: bytes) -> bytes:
    """A ``pb.FileActionMkFile`` (path 1, mode 2, data 3), encoded by hand: dockgate's
    descriptors keep file actions as bytes, since it does not read them."""
    def field(number: int, wire: int, value: bytes) -> bytes:
        return bytes([number << 3 | wire]) + _varint(len(value)) + value
    return (field(1, 2, path.encode()) + bytes([2 << 3]) + _varint(0o644)
            + field(3, 2, data))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def files_definition(files: Mapping[str, str]) -> Any:
    """A ``pb.Definition`` of a scratch filesystem holding ``files`` (``path -> text``):
    one file op of ``mkfile`` actions, then the terminal op naming it."""
    op_class = messages.message_class("pb.Op")
    fileop = op_class()
    for i, (path, text) in enumerate(files.items()):
        action = fileop.file.actions.add()
        # scratch, then the previous action's result (numbered after the op's inputs: none)
        action.input = -1 if i == 0 else i - 1
        action.secondaryInput = -1
        action.output = 0 if i == len(files) - 1 else -1
        action.mkfile = _mkfile(path, text.encode())
    raw = fileop.SerializeToString()
    terminal = op_class()
    ref = terminal.inputs.add()
    ref.digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    ref.index = 0
    definition = messages.message_class("pb.Definition")()
    ops = [raw, terminal.SerializeToString()]
    getattr(definition, "def").extend(ops)
    for op in ops:  # BuildKit takes a definition without metadata for none at all
        definition.metadata["sha256:" + hashlib.sha256(op).hexdigest()] = b""
    return definition


def solve_request(ref: str, *, frontend: str = "dockerfile.v0",
                  attrs: Mapping[str, str] | None = None,
                  inputs: Mapping[str, Any] | None = None,
                  exporter: tuple[str, Mapping[str, str]] | None = None) -> bytes:
    """A Control ``SolveRequest`` (no session) as bytes."""
    req = messages.message_class("moby.buildkit.v1.SolveRequest")()
    req.Ref = ref
    req.Frontend = frontend
    req.FrontendAttrs.update(attrs or {})
    for name, definition in (inputs or {}).items():
        req.FrontendInputs[name].CopyFrom(definition)
    if exporter is not None:  # the deprecated pair: engine 20.10's BuildKit reads only it
        req.ExporterDeprecated = exporter[0]
        req.ExporterAttrsDeprecated.update(exporter[1])
    return req.SerializeToString()


def connect_unix(path: str) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    return conn


def connect_tls(port: int, context: ssl.SSLContext) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port))
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def grpc_call(conn: socket.socket | str, path: str, message: bytes,
              timeout: float = 120) -> dict[str, str]:
    """One gRPC call over a raw ``POST /grpc`` upgraded to h2c (as buildx dials it) on
    ``conn`` (a connected socket, or a unix socket path): the response's headers and
    trailers by name, ``grpc-message`` percent-decoded."""
    if isinstance(conn, str):
        conn = connect_unix(conn)
    conn.settimeout(timeout)
    try:
        conn.sendall(b"POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
                     b"Upgrade: h2c\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            byte = conn.recv(1)
            assert byte, f"connection closed during the upgrade: {head!r}"
            head += byte
        assert head.startswith(b"HTTP/1.1 101"), head
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        h2c.initiate_connection()
        h2c.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", path),
                             (":authority", "docker"), ("content-type", "application/grpc"),
                             ("te", "trailers")])
        h2c.send_data(1, struct.pack(">BI", 0, len(message)) + message, end_stream=True)
        conn.sendall(h2c.data_to_send())
        got: dict[str, str] = {}
        while True:
            data = conn.recv(65536)
            assert data, f"connection closed before the call ended: {got}"
            for event in h2c.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    got.update((k.decode(), v.decode()) for k, v in event.headers)
                if isinstance(event, h2.events.DataReceived):
                    h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    if "grpc-message" in got:
                        got["grpc-message"] = urllib.parse.unquote(got["grpc-message"])
                    return got
            conn.sendall(h2c.data_to_send())
    finally:
        conn.close()

"""gRPC's length-prefixed messages inside an HTTP/2 stream's DATA (pure).

A gRPC message on the wire is one flag byte (1 = compressed with the stream's
``grpc-encoding``), a 4-byte big-endian length and that many bytes of
protobuf.  Messages are not aligned with DATA frames: one frame may carry the
end of one message and the start of the next, and a message may span frames.
``MessageReader`` reassembles them from the DATA payloads fed to it, in order.

dockgate only decodes uncompressed messages: BuildKit's clients and dockerd do
not compress, and a compressed message on a mediated stream is one dockgate
cannot read, which ends that stream (fail closed, ``Unreadable``).
"""

from __future__ import annotations

import struct

PREFIX = 5
"""Flag byte and 4-byte length in front of every gRPC message."""
MAX_MESSAGE = 64 << 20
"""Largest message dockgate holds for judgement (BuildKit's own limit is larger
than gRPC's 4 MiB default; a solve's LLB of a big build stays well under this)."""


class Unreadable(ValueError):
    """A gRPC message dockgate cannot take apart (compressed, too large, cut short)."""


class MessageReader:
    """Collects whole gRPC messages from a stream's DATA, one direction."""

    __slots__ = ("_buf", "_limit")

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[bytes]:
        """The messages ``data`` completes (payloads without their prefix)."""
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= PREFIX:
            flag, size = struct.unpack_from(">BI", self._buf)
            if flag != 0:
                raise Unreadable("a compressed gRPC message (dockgate reads uncompressed ones)"
                                 if flag == 1 else f"a gRPC message with flag byte {flag}")
            if size > self._limit:
                raise Unreadable(f"a gRPC message of {size} bytes (the limit is {self._limit})")
            if len(self._buf) < PREFIX + size:
                break
            out.append(bytes(self._buf[PREFIX:PREFIX + size]))
            del self._buf[:PREFIX + size]
        return out

    @property
    def partial(self) -> bool:
        """Whether part of a message is still waiting for the rest."""
        return bool(self._buf)

    def end(self) -> None:
        """The direction ended: a message cut short is an error."""
        if self._buf:
            raise Unreadable(f"the stream ended inside a gRPC message ({len(self._buf)} bytes)")


def frame_message(payload: bytes) -> bytes:
    """One uncompressed gRPC message as it goes on the wire."""
    return struct.pack(">BI", 0, len(payload)) + payload

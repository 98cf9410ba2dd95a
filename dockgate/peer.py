"""Who is calling: the peer of an accepted connection, fixed once at accept time.

Over a unix socket the kernel tells us the caller's pid, uid and gid
(SO_PEERCRED); that is the only identity a local Docker client brings, and it
cannot be spoofed by anything the client sends.
"""

from __future__ import annotations

import socket
import struct

from twisted.internet.interfaces import ITransport

from dockgate.model import Peer


def peer_of(transport: ITransport, listener: str) -> Peer:
    """Describe the peer of ``transport`` accepted on ``listener``."""
    address = transport.getPeer()
    kind = type(address).__name__
    if kind == "UNIXAddress":
        pid = uid = gid = None
        handle = getattr(transport, "getHandle", None)
        if handle is not None:
            try:
                raw = handle().getsockopt(
                    socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
                )
                pid, uid, gid = struct.unpack("3i", raw)
            except OSError:
                pass
        return Peer(listener, "unix", f"unix:pid={pid}", pid=pid, uid=uid, gid=gid)
    host = getattr(address, "host", "?")
    port = getattr(address, "port", 0)
    secure = getattr(transport, "getPeerCertificate", None) is not None
    return Peer(listener, "tls" if secure else "tcp", f"{host}:{port}")

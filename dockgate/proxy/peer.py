"""Who is calling: the peer of an accepted connection, fixed once at accept time.

Over a unix socket the kernel tells us the caller's pid, uid and gid
(SO_PEERCRED); that is the only identity a local Docker client brings, and it
cannot be spoofed by anything the client sends.  ``describe_unix_peer`` turns
the uid and gid into names for tenant matching.

Over TLS the identity is the client certificate the listener verified
against its CA; ``principal_from_certificate`` reads its subject CN and its
DNS, email and URI subject alternative names.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import struct

from cryptography import x509
from cryptography.x509.oid import NameOID
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
        user, groups = describe_unix_peer(uid, gid)
        return Peer(
            listener, "unix", f"unix:pid={pid}", pid=pid, uid=uid, gid=gid, user=user, groups=groups
        )
    host = getattr(address, "host", "?")
    port = getattr(address, "port", 0)
    secure = getattr(transport, "getPeerCertificate", None) is not None
    return Peer(listener, "tls" if secure else "tcp", f"{host}:{port}")


def describe_unix_peer(uid: int | None, gid: int | None) -> tuple[str | None, tuple[str, ...]]:
    """The user name of ``uid`` and the names of its groups (``gid`` and supplementary).

    Supplementary groups come from the group database (``os.getgrouplist``),
    as ``login``/``newgrp`` would set them, not from the peer process itself.
    Ids without a name are left out; a uid without a passwd entry has no
    supplementary groups.  These are NSS lookups (possibly LDAP): call them
    once per connection, not per request.
    """
    user: str | None = None
    gids: list[int] = [] if gid is None else [gid]
    if uid is not None:
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            entry = None
        if entry is not None:
            user = entry.pw_name
            with contextlib.suppress(OSError):
                gids += os.getgrouplist(user, gid if gid is not None else entry.pw_gid)
    names: list[str] = []
    for g in gids:
        try:
            name = grp.getgrgid(g).gr_name
        except KeyError:
            continue
        if name not in names:
            names.append(name)
    return user, tuple(names)


def principal_from_certificate(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    """The subject CN ("" if none) and SANs (``DNS:…``, ``email:…``, ``URI:…``) of ``cert``.

    The SAN type prefix keeps an email address from ever matching a DNS name
    of the same spelling.  Several CNs (unusual) are joined with ``,``, so a
    certificate cannot present one of two CNs of its choosing.
    """
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    cn = ",".join(v if isinstance(v, str) else v.decode("utf-8", "replace") for v in cns)
    sans: list[str] = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return cn, ()
    for prefix, kind in (("DNS", x509.DNSName), ("email", x509.RFC822Name),
                         ("URI", x509.UniformResourceIdentifier)):
        sans.extend(f"{prefix}:{value}" for value in ext.get_values_for_type(kind))
    return cn, tuple(sans)

"""Caller identity: unix user and group names, and TLS certificate principals."""

from __future__ import annotations

import datetime
import grp
import os
import pwd
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dockgate.proxy import peer
from dockgate.proxy.peer import describe_unix_peer, principal_from_certificate


def cert(cn: str | None, sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dockgate tests")]
    if cn is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name(attrs))
               .issuer_name(x509.Name(attrs)).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_principal_cn_and_sans() -> None:
    """A certificate's principal is its common name with its DNS, email and URI SANs, typed; IP SANs
    are not identities."""
    c = cert("alice", [x509.DNSName("ci.example.com"), x509.RFC822Name("alice@example.com"),
                       x509.UniformResourceIdentifier("spiffe://example.com/alice"),
                       x509.IPAddress(__import__("ipaddress").ip_address("10.0.0.1"))])
    assert principal_from_certificate(c) == ("alice", (
        "DNS:ci.example.com", "email:alice@example.com", "URI:spiffe://example.com/alice"))


def test_principal_without_cn_or_sans() -> None:
    """A certificate without a common name or SANs gives an empty principal; one with only a CN
    gives just that."""
    assert principal_from_certificate(cert(None)) == ("", ())
    assert principal_from_certificate(cert("bob")) == ("bob", ())


def test_describe_current_user() -> None:
    """The current uid and gid are described by the system's user and group names, the connection's
    group first, without duplicates."""
    uid, gid = os.getuid(), os.getgid()
    user, groups = describe_unix_peer(uid, gid)
    assert user == pwd.getpwuid(uid).pw_name
    assert groups[0] == grp.getgrgid(gid).gr_name
    expected = {grp.getgrgid(g).gr_name for g in os.getgrouplist(user, gid)}
    assert set(groups) == expected | {groups[0]}
    assert len(groups) == len(set(groups))


class FakePwd:
    def __init__(self, users: dict[int, tuple[str, int]]):
        self.users = users

    def getpwuid(self, uid: int) -> Any:
        if uid not in self.users:
            raise KeyError(uid)
        name, gid = self.users[uid]
        return type("E", (), {"pw_name": name, "pw_gid": gid})()


class FakeGrp:
    def __init__(self, groups: dict[int, str]):
        self.groups = groups

    def getgrgid(self, gid: int) -> Any:
        if gid not in self.groups:
            raise KeyError(gid)
        return type("G", (), {"gr_name": self.groups[gid]})()


@pytest.fixture
def fake_db(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer, "pwd", FakePwd({1000: ("alice", 1000)}))
    monkeypatch.setattr(peer, "grp", FakeGrp({1000: "alice", 2000: "team-a", 3000: "docker"}))
    monkeypatch.setattr(peer.os, "getgrouplist",
                        lambda name, gid: [gid, 2000, 4000] if name == "alice" else [gid])


@pytest.mark.usefixtures("fake_db")
def test_describe_supplementary_groups() -> None:
    """A user's supplementary groups are included, with the connection's gid (after newgrp) first.
    """
    assert describe_unix_peer(1000, 1000) == ("alice", ("alice", "team-a"))
    # the connection's gid (e.g. after newgrp) comes first
    assert describe_unix_peer(1000, 3000) == ("alice", ("docker", "team-a"))


@pytest.mark.usefixtures("fake_db")
def test_describe_unknown_ids() -> None:
    """Ids without a name give no user name and only the groups that resolve; no credentials give
    nothing."""
    assert describe_unix_peer(4242, 2000) == (None, ("team-a",))
    assert describe_unix_peer(4242, 9999) == (None, ())
    assert describe_unix_peer(None, None) == (None, ())

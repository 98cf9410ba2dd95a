"""TLS listeners: parsing, mutual-TLS options, and handshakes against generated certificates."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto
from twisted.internet.testing import MemoryReactorClock

from dockgate.proxy.peer import principal_from_certificate
from dockgate.service.listeners import (
    CannotListen,
    TLSListenerSpec,
    listener_endpoint,
    parse_listener,
    tls_options,
)
from dockgate.service.tlshalfclose import HalfCloseTLSEndpoint

Key = ec.EllipticCurvePrivateKey


@dataclass
class Issued:
    cert: x509.Certificate
    key: Key


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(cn: str, issuer: Issued | None, *, ca: bool = False, server: bool = False,
          sans: list[x509.GeneralName] | None = None) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(_name(cn))
         .issuer_name(issuer.cert.subject if issuer else _name(cn))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(b.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key: Key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class PKI:
    ca: Issued
    server: Issued
    alice: Issued
    bob: Issued
    rogue: Issued
    spec: TLSListenerSpec


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca = issue("dockgate test CA", None, ca=True)
    server = issue("dockgate.example", ca, server=True, sans=[x509.DNSName("localhost")])
    alice = issue("alice", ca, sans=[x509.RFC822Name("alice@example.com")])
    bob = issue("bob", ca, sans=[x509.DNSName("ci.example.com")])
    rogue_ca = issue("rogue CA", None, ca=True)
    rogue = issue("alice", rogue_ca)
    (d / "ca.pem").write_bytes(pem(ca.cert))
    (d / "server.pem").write_bytes(pem(server.cert))
    (d / "server.key").write_bytes(pem_key(server.key))
    spec = parse_listener(f"tls:2376:cert={d}/server.pem:key={d}/server.key:ca={d}/ca.pem")
    assert isinstance(spec, TLSListenerSpec)
    return PKI(ca, server, alice, bob, rogue, spec)


# -- parsing --------------------------------------------------------------------------


def test_parse_defaults_to_loopback() -> None:
    """A tls: listener binds loopback unless an interface is named, and takes its port, files and
    backlog positionally or by name (an IPv6 interface escaped)."""
    spec = parse_listener("tls:2376:cert=/p/s.pem:key=/p/s.key:ca=/p/ca.pem")
    assert spec == TLSListenerSpec(2376, "127.0.0.1", "/p/s.pem", "/p/s.key", "/p/ca.pem")
    spec = parse_listener("tls:port=2376:interface=10.1.2.3:cert=a:key=b:ca=c:backlog=5")
    assert spec == TLSListenerSpec(2376, "10.1.2.3", "a", "b", "c", 5)
    spec = parse_listener(r"tls:2376:interface=\:\:1:cert=a:key=b:ca=c")
    assert isinstance(spec, TLSListenerSpec) and spec.interface == "::1"


@pytest.mark.parametrize(("text", "why"), [
    ("tls:2376:key=b:ca=c", "needs cert=FILE"),
    ("tls:2376:cert=a:ca=c", "needs key=FILE"),
    ("tls:2376:cert=a:key=b", "needs ca=FILE"),
    ("tls:2376:cert=a:key=b:ca=", "needs ca=FILE"),
    ("tls:cert=a:key=b:ca=c", "exactly one port"),
    ("tls:0:cert=a:key=b:ca=c", "between 1 and 65535"),
    ("tls:x:cert=a:key=b:ca=c", "not a number"),
    ("tls:2376:cert=a:key=b:ca=c:verify=0", "unknown option(s) verify"),
    ("tls:2376:2377:cert=a:key=b:ca=c", "exactly one port"),
])
def test_parse_rejects(text: str, why: str) -> None:
    """A tls: listener without cert, key or ca, with no, several or a bad port, or with an unknown
    option is refused with a message naming the problem."""
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
        parse_listener(text)


# -- options and endpoint ----------------------------------------------------------------


def test_endpoint(pki: PKI) -> None:
    """A TLS spec builds a half-close TLS endpoint on the given interface and port."""
    endpoint = listener_endpoint(MemoryReactorClock(), pki.spec)  # type: ignore[no-untyped-call]
    assert isinstance(endpoint, HalfCloseTLSEndpoint)
    assert endpoint._tcp._interface == "127.0.0.1" and endpoint._tcp._port == 2376


def test_options_refuse_bad_files(pki: PKI, tmp_path: Path) -> None:
    """A key that does not match the certificate, a missing certificate, and junk CA or key files
    are refused before listening."""
    other = issue("other", pki.ca, server=True)
    (tmp_path / "other.key").write_bytes(pem_key(other.key))
    (tmp_path / "junk.pem").write_bytes(b"not a certificate")
    s = pki.spec
    cases = [
        TLSListenerSpec(1, "::1", s.cert, str(tmp_path / "other.key"), s.ca),
        TLSListenerSpec(1, "::1", str(tmp_path / "missing.pem"), s.key, s.ca),
        TLSListenerSpec(1, "::1", s.cert, s.key, str(tmp_path / "junk.pem")),
        TLSListenerSpec(1, "::1", s.cert, str(tmp_path / "junk.pem"), s.ca),
    ]
    for spec in cases:
        with pytest.raises(CannotListen):
            tls_options(spec)


def _client(pki: PKI, who: Issued | None, *, max_version: int | None = None) -> SSL.Connection:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.get_cert_store().add_cert(crypto.X509.from_cryptography(pki.ca.cert))  # type: ignore[union-attr]
    ctx.set_verify(SSL.VERIFY_PEER, lambda *a: bool(a[-1]))
    if max_version is not None:
        ctx.set_max_proto_version(max_version)
        ctx.set_min_proto_version(max_version)
        ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    if who is not None:
        ctx.use_certificate(crypto.X509.from_cryptography(who.cert))
        ctx.use_privatekey(crypto.PKey.from_cryptography_key(who.key))
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    return conn


def handshake(pki: PKI, who: Issued | None, **kw: Any) -> SSL.Connection:
    """Run a TLS handshake in memory; return the server side, or raise SSL.Error."""
    server = SSL.Connection(tls_options(pki.spec).getContext(), None)
    server.set_accept_state()
    client = _client(pki, who, **kw)
    done = {"c": False, "s": False}
    for _ in range(50):
        for side, name, other in ((client, "c", server), (server, "s", client)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except SSL.WantReadError:
                    pass
            try:
                data = side.bio_read(65536)
            except SSL.WantReadError:
                data = b""
            if data:
                other.bio_write(data)
        if all(done.values()):
            # TLS 1.3: the server sees a bad client certificate only after its first read
            client.send(b"ping")
            server.bio_write(client.bio_read(65536))
            assert server.recv(4) == b"ping"
            return server
    raise AssertionError("handshake did not finish")


def test_client_certificate_is_the_principal(pki: PKI) -> None:
    """After a real handshake with a client certificate, its subject and SANs are the caller's
    principal, over TLS 1.2 or newer."""
    server = handshake(pki, pki.alice)
    cert = server.get_peer_certificate()
    assert cert is not None
    assert principal_from_certificate(cert.to_cryptography()) == (
        "alice", ("email:alice@example.com",))
    server = handshake(pki, pki.bob)
    assert principal_from_certificate(server.get_peer_certificate().to_cryptography()) == (  # type: ignore[union-attr]
        "bob", ("DNS:ci.example.com",))
    assert server.get_protocol_version_name() in ("TLSv1.2", "TLSv1.3")


def test_client_without_certificate_is_refused(pki: PKI) -> None:
    """A client without a certificate fails the handshake."""
    with pytest.raises(SSL.Error):
        handshake(pki, None)


def test_client_from_another_ca_is_refused(pki: PKI) -> None:
    """A client certificate from another CA fails the handshake."""
    with pytest.raises(SSL.Error):
        handshake(pki, pki.rogue)


def test_old_tls_is_refused(pki: PKI) -> None:
    """A client limited to TLS 1.1 fails the handshake."""
    with pytest.raises(SSL.Error):
        handshake(pki, pki.alice, max_version=SSL.TLS1_1_VERSION)

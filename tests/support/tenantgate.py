"""A tenant dockgate in front of each session daemon, and its callers.

``dockgate serve --tenants FILE --policy policies/privileged.yaml`` listens on
a unix socket (mode 666, in a directory made for it, so that the test's own
unix users can connect) and on a TLS port on 127.0.0.1 that requires client
certificates from a CA the test generates.

Principals (see ``TENANTS``):

* unix user ``dgalice`` and certificate CN ``alice-cert`` → tenant ``teama``;
* unix user ``dgbob`` and certificate CN ``bob-cert`` → tenant ``teamb``
  (quotas: 2 containers, 1 running);
* root over unix → the admin tenant ``ops``.

The users are created with ``useradd --system --no-create-home`` if missing
and are in no docker group; they are left on the machine.  ``Caller.docker``
runs the current docker CLI as one principal: with ``runuser`` for the unix
users, with ``--tlsverify`` and the principal's certificate for TLS.

The session's audit guard (tests/conftest.py) does not watch these gates: the
tests read ``TenantGate.records_since`` themselves.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from support import gate
from support.engines import Engine, make_docker_config, spawn_logged

USERS = {"dgalice": "teama", "dgbob": "teamb"}
CERTS = {"alice-cert": "teama", "bob-cert": "teamb"}
ADMIN = "ops"
QUOTA_CONTAINERS = 2
QUOTA_RUNNING = 1

TENANTS = f"""\
tenants:
  - name: teama
    principals:
      users: [dgalice]
      cert_cn: [alice-cert]
  - name: teamb
    quotas: {{max_containers: {QUOTA_CONTAINERS}, max_running: {QUOTA_RUNNING}}}
    principals:
      users: [dgbob]
      cert_cn: [bob-cert]
  - name: {ADMIN}
    admin: true
    principals:
      users: [root]
"""


# -- unix users -----------------------------------------------------------------


def ensure_users() -> None:
    """Create the test's system users if they do not exist (never in a docker group)."""
    for user in USERS:
        try:
            pwd.getpwnam(user)
            continue
        except KeyError:
            pass
        made = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
            check=False, capture_output=True, text=True, timeout=30,
        )
        # Exit 9: another test worker (pytest-xdist) created it in the meantime.
        if made.returncode not in (0, 9):
            raise RuntimeError(f"useradd {user} failed: {made.stderr.strip()}")
    for user in USERS:
        groups = subprocess.run(["id", "-nG", user], capture_output=True, text=True,
                                check=True, timeout=10).stdout.split()
        if "docker" in groups:
            raise RuntimeError(f"user {user} is in the docker group; the test needs it not to be")


# -- certificates -----------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost, and one client certificate per
    entry of ``CERTS``.  Returns paths keyed ``ca``, ``server``, ``server.key``, ``<cn>``,
    ``<cn>.key``.  Keys are mode 0600 (the CLI runs as root over TLS)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("dockgate test CA")).issuer_name(_name("dockgate test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.pem"}
    _write_cert(paths["ca"], ca)

    def issue(cn: str, sans: list[x509.GeneralName], usage: x509.ObjectIdentifier) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        label = "server" if usage == ExtendedKeyUsageOID.SERVER_AUTH else cn
        paths[label] = directory / f"{label}.pem"
        paths[f"{label}.key"] = directory / f"{label}.key"
        _write_cert(paths[label], cert)
        _write_key(paths[f"{label}.key"], key)

    issue("localhost", [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.DNSName("localhost")], ExtendedKeyUsageOID.SERVER_AUTH)
    for cn in CERTS:
        issue(cn, [], ExtendedKeyUsageOID.CLIENT_AUTH)
    return paths


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the gate and its callers ---------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """One principal talking to a tenant gate with the docker CLI.

    ``kind`` is ``unix`` (run as ``user`` through the unix socket, root for the
    admin) or ``tls`` (the client certificate ``cert``).
    """

    gate: TenantGate
    label: str
    tenant: str
    kind: str
    user: str = "root"
    cert: str = ""

    def argv(self, args: tuple[str, ...], cli: str | None = None) -> list[str]:
        """The command line that runs ``docker ARGS`` as this principal (``cli``: another
        docker CLI binary than the engine's current one)."""
        g = self.gate
        binary = cli or g.engine.cli
        env = [f"DOCKER_CONFIG={g.docker_config}", "DOCKER_CLI_HINTS=false", "HOME=/nonexistent"]
        if self.kind == "unix":
            env.append(f"DOCKER_HOST=unix://{g.socket}")
            command = [binary, *args]
        else:
            env.append(f"DOCKER_HOST=tcp://127.0.0.1:{g.port}")
            command = [binary, "--tlsverify", "--tlscacert", str(g.pki["ca"]),
                       "--tlscert", str(g.pki[self.cert]),
                       "--tlskey", str(g.pki[f"{self.cert}.key"]), *args]
        prefix = ["runuser", "-u", self.user, "--"] if self.user != "root" else []
        return [*prefix, "env", "-i", f"PATH={os.environ.get('PATH', '/usr/bin:/bin')}",
                *env, *command]

    def docker(self, *args: str, input: str | bytes | None = None, timeout: float = 60,
               check: bool = True, cli: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` as this principal; with ``check`` a non-zero exit raises."""
        data = input.encode() if isinstance(input, str) else input
        result = subprocess.run(
            self.argv(args, cli), input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True, timeout=timeout, check=False, cwd="/",
        )
        out = subprocess.CompletedProcess(
            result.args, result.returncode,
            result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise AssertionError(
                f"{self.label} on engine {self.gate.engine.name}: docker {' '.join(args)} "
                f"exited {out.returncode}\nstderr: {out.stderr[-2000:]}")
        return out

    def classic(self, *args: str, input: bytes | None = None, timeout: float = 180
                ) -> subprocess.CompletedProcess[str]:
        """``DOCKER_BUILDKIT=0 docker ARGS`` as this principal: builds use the classic builder."""
        argv = self.argv(args)
        argv.insert(argv.index("-i") + 1, "DOCKER_BUILDKIT=0")
        r = subprocess.run(argv, input=input, stdin=None if input is not None else
                           subprocess.DEVNULL, capture_output=True, timeout=timeout,
                           check=False, cwd="/")
        return subprocess.CompletedProcess(argv, r.returncode, r.stdout.decode(errors="replace"),
                                           r.stderr.decode(errors="replace"))

    def client(self, timeout: int = 60) -> Any:
        """A docker-py client for a TLS principal.

        docker-py (urllib3) offers ALPN ``http/1.1``, which dockgate's TLS
        listener currently fails (see tests/integration/test_tenants.py).
        """
        if self.kind != "tls":
            raise ValueError("docker-py clients are only made for TLS principals")
        g = self.gate
        tls = docker.tls.TLSConfig(
            client_cert=(str(g.pki[self.cert]), str(g.pki[f"{self.cert}.key"])),
            ca_cert=str(g.pki["ca"]), verify=True)
        return docker.DockerClient(base_url=f"https://127.0.0.1:{g.port}", tls=tls,
                                   version="auto", timeout=timeout)

    def tls_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        """A client TLS context with this principal's certificate (ALPN only if given)."""
        g = self.gate
        ctx = ssl.create_default_context(cafile=str(g.pki["ca"]))
        ctx.load_cert_chain(str(g.pki[self.cert]), str(g.pki[f"{self.cert}.key"]))
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def request_raw(self, method: str, target: str, body: Any = None,
                    timeout: float = 30) -> tuple[int, str, bytes]:
        """One API request over TLS (no ALPN); returns (status, content type, raw body)."""
        if self.kind != "tls":
            raise ValueError("raw requests are only made for TLS principals")
        conn = http.client.HTTPSConnection("127.0.0.1", self.gate.port, timeout=timeout,
                                           context=self.tls_context())
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, target, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("content-type") or "", resp.read()
        finally:
            conn.close()

    def request(self, method: str, target: str, body: Any = None,
                timeout: float = 30) -> tuple[int, Any]:
        """One API request over TLS (no ALPN); returns (status, decoded JSON or text)."""
        resp_status, _, raw = self.request_raw(method, target, body, timeout)
        try:
            return resp_status, json.loads(raw) if raw else None
        except ValueError:
            return resp_status, raw.decode(errors="replace")


@dataclass
class TenantGate:
    """A tenant dockgate in front of one engine."""

    engine: Engine
    process: gate.DockgateProcess
    directory: Path
    port: int
    pki: dict[str, Path]
    docker_config: Path

    @property
    def socket(self) -> str:
        return self.process.socket

    def caller(self, label: str) -> Caller:
        """``alice``/``bob`` over ``unix``/``tls`` (``"alice-unix"``, ``"bob-tls"``) or ``admin``."""
        if label == "admin":
            return Caller(self, label, ADMIN, "unix")
        who, kind = label.split("-")
        if kind == "unix":
            user = f"dg{who}"
            return Caller(self, label, USERS[user], "unix", user=user)
        cert = f"{who}-cert"
        return Caller(self, label, CERTS[cert], "tls", cert=cert)

    def mark(self) -> int:
        return self.process.audit_size()

    def reload(self, tenants: str, timeout: float = 30.0) -> None:
        """Make ``tenants`` the gate's tenants file and reload it (SIGHUP), until dockgate's
        log says it did."""
        start = self.process.log_size()
        (self.directory / "tenants.yaml").write_text(tenants)
        os.kill(self.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while "Tenants reloaded" not in self.process.log_text(start):
            if time.monotonic() > deadline or not self.process.alive():
                raise RuntimeError(f"{self.process.engine} did not reload its tenants file:\n"
                                   f"{self.process.log_text(start)[-2000:]}")
            time.sleep(0.1)

    def records_since(self, mark: int) -> list[dict[str, Any]]:
        return self.process.audit_records(mark)


@contextmanager
def shared_build_cache(tg: TenantGate) -> Iterator[None]:
    """The tenant gate with ``build_cache: shared`` (its tenants file reloaded), private
    again afterwards."""
    tg.reload("build_cache: shared\n" + TENANTS)
    try:
        yield
    finally:
        tg.reload(TENANTS)


def start_tenant_gate(engine: Engine, base: Path) -> TenantGate:
    """Start the tenant dockgate for ``engine`` under ``base`` (does not wait)."""
    directory = base / engine.name.split(".")[0]
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    pki = make_pki(directory / "tls")
    (directory / "tls").chmod(0o755)
    config = make_docker_config(directory / "cfg")  # with buildx and compose
    config.chmod(0o755)
    (config / "cli-plugins").chmod(0o755)
    (config / "config.json").chmod(0o644)
    tenants = directory / "tenants.yaml"
    tenants.write_text(TENANTS)
    sock = directory / "t.sock"
    if len(str(sock)) >= 100:
        raise RuntimeError(f"socket path too long for a unix socket: {sock}")
    port = free_port()
    audit = directory / "audit.jsonl"
    log_path = directory / "dockgate.log"
    argv = [
        *gate.dockgate_command(), "serve",
        "--listen", f"unix:{sock}:mode=666",
        "--listen", f"tls:{port}:interface=127.0.0.1:cert={pki['server']}"
                    f":key={pki['server.key']}:ca={pki['ca']}",
        "--upstream", f"unix:{engine.daemon_socket}",
        "--policy", str(gate.POLICY),
        "--tenants", str(tenants),
        "--audit-log", str(audit),
    ]
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    process = spawn_logged(argv, log_path, env, cwd=gate.RUN_DIR)
    proc = gate.DockgateProcess(
        engine=f"{engine.name}/tenants", process=process, socket=str(sock),
        upstream=engine.daemon_socket, audit_log=audit, log_path=log_path, argv=argv)
    return TenantGate(engine, proc, directory, port, pki, config)


def wait_tls(tg: TenantGate, timeout: float = 30.0) -> None:
    """Wait until the TLS listener answers ``docker version`` for alice's certificate."""
    deadline = time.monotonic() + timeout
    alice = tg.caller("alice-tls")
    while True:
        result = alice.docker("version", "--format", "{{.Server.Version}}", check=False)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline or not tg.process.alive():
            raise RuntimeError(f"TLS listener of {tg.process.engine} not ready: {result.stderr}"
                               f"\n--- dockgate log ---\n{tg.process.log_text()[-4000:]}")
        time.sleep(0.2)


def start_all(engine_set: Mapping[str, Engine]) -> dict[str, TenantGate]:
    """One tenant gate per engine, started together and waited for (stopped on failure)."""
    ensure_users()
    base = Path(tempfile.mkdtemp(prefix="dgt", dir="/tmp"))
    base.chmod(0o755)
    started: dict[str, TenantGate] = {}
    try:
        for name, engine in engine_set.items():
            started[name] = start_tenant_gate(engine, base)
        for tg in started.values():
            gate.wait_dockgate(tg.process)
            wait_tls(tg)
    except BaseException:
        stop_all(started, base)
        raise
    return started


def stop_all(gates: Mapping[str, TenantGate], base: Path | None = None) -> None:
    """Stop the gates and remove their directory (kept under DOCKGATE_TEST_KEEP)."""
    bases = {tg.directory.parent for tg in gates.values()} | ({base} if base else set())
    for tg in gates.values():
        tg.process.stop()
    if not os.environ.get("DOCKGATE_TEST_KEEP"):
        for b in bases:
            shutil.rmtree(b, ignore_errors=True)


@pytest.fixture(scope="session")
def tenant_gates(engine_set: Mapping[str, Engine]) -> Iterator[dict[str, TenantGate]]:
    """``{engine name: TenantGate}`` for every selected engine.

    Import it into one test module only (a fixture imported into several modules
    is instantiated once per module).  It depends on ``engine_set``, so the gates
    stop before the daemons do.
    """
    gates = start_all(engine_set)
    try:
        yield gates
    finally:
        stop_all(gates)

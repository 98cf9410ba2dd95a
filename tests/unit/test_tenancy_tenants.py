"""Tenants file: loading, file:line errors, and resolving callers to tenants."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockgate.errors import Forbidden
from dockgate.model import Peer
from dockgate.policy import PolicyError
from dockgate.tenancy import Quotas, Tenant, TenantMap

GOOD = """\
default: guests
tenants:
  - name: team-a
    policy: base.yaml
    quotas: {max_containers: 3, max_running: 2, max_memory: 1g, max_cpus: 1.5}
    principals:
      users: [alice]
      groups: [team-a]
      cert_cn: [alice-cert]
  - name: team-b
    principals:
      uids: [2002]
      groups: [team-b]
      gids: [3003]
      cert_san: ["email:bob@example.com", "DNS:ci.example.com"]
  - name: ops
    admin: true
    principals: {users: [root], groups: [wheel]}
  - name: guests
"""


def unix(uid: int | None = 1000, gid: int | None = 1000) -> Peer:
    return Peer("main", "unix", "unix:pid=1", pid=1, uid=uid, gid=gid)


def tls() -> Peer:
    return Peer("tls", "tls", "10.0.0.1:5555")


@pytest.fixture
def tenants(tmp_path: Path) -> TenantMap:
    (tmp_path / "base.yaml").write_text("name: base\nrules: []\n")
    path = tmp_path / "tenants.yaml"
    path.write_text(GOOD)
    return TenantMap.load(str(path))


def test_load(tenants: TenantMap, tmp_path: Path) -> None:
    """A tenants file loads each tenant with its policy path and quotas, the admin flag and the
    default tenant, in file order."""
    a = tenants.get("team-a")
    assert a == Tenant("team-a", False, str(tmp_path / "base.yaml"),
                       Quotas(3, 2, 1 << 30, 1_500_000_000))
    assert tenants.get("ops") is not None and tenants.get("ops").admin  # type: ignore[union-attr]
    assert tenants.default is not None and tenants.default.name == "guests"
    assert [t.name for t in tenants.tenants] == ["team-a", "team-b", "ops", "guests"]


def test_resolve_unix(tenants: TenantMap) -> None:
    """A unix caller maps to a tenant by user name, uid, gid or group name, and to the default
    tenant when nothing matches."""
    assert tenants.resolve(unix(), "alice", ("alice",)).name == "team-a"  # type: ignore[union-attr]
    assert tenants.resolve(unix(2002), None, ()).name == "team-b"  # type: ignore[union-attr]
    assert tenants.resolve(unix(5, 3003), None, ()).name == "team-b"  # type: ignore[union-attr]
    assert tenants.resolve(unix(7), "carol", ("team-a",)).name == "team-a"  # type: ignore[union-attr]
    # nothing matches: the default tenant
    assert tenants.resolve(unix(7), "carol", ("carol",)).name == "guests"  # type: ignore[union-attr]


def test_identity_beats_group(tenants: TenantMap) -> None:
    """A user-level principal beats a group-level one when both name tenants."""
    # alice is in team-b's group, but her user name names team-a
    assert tenants.resolve(unix(), "alice", ("team-b",)).name == "team-a"  # type: ignore[union-attr]


def test_two_groups_are_ambiguous(tenants: TenantMap) -> None:
    """A caller whose groups name two tenants is refused, naming both."""
    with pytest.raises(Forbidden, match="team-a, team-b"):
        tenants.resolve(unix(7), "carol", ("team-a", "team-b"))


def test_resolve_tls(tenants: TenantMap) -> None:
    """A TLS caller maps by certificate principal or typed SAN; a SAN of another type with the same
    text does not match."""
    assert tenants.resolve(tls(), principal="alice-cert").name == "team-a"  # type: ignore[union-attr]
    assert tenants.resolve(tls(), principal="x", sans=("DNS:ci.example.com",)).name == "team-b"  # type: ignore[union-attr]
    # a SAN is matched with its type: an email spelled like a DNS name is not it
    assert tenants.resolve(tls(), principal="x", sans=("email:ci.example.com",)).name == "guests"  # type: ignore[union-attr]


def test_unix_identities_do_not_count_over_tls(tenants: TenantMap) -> None:
    """Over TLS, unix uids, gids and names do not select a tenant."""
    peer = Peer("tls", "tls", "x", uid=2002, gid=3003)
    assert tenants.resolve(peer, "alice", ("team-a",)).name == "guests"  # type: ignore[union-attr]


def test_no_default_means_none(tmp_path: Path) -> None:
    """Without a default tenant an unmatched caller maps to no tenant (and is refused upstream)."""
    path = tmp_path / "t.yaml"
    path.write_text("tenants:\n  - name: a\n    principals: {users: [alice]}\n")
    tenants = TenantMap.load(str(path))
    assert tenants.resolve(unix(), "bob", ()) is None


@pytest.mark.parametrize(("text", "line", "why"), [
    ("tenants:\n  - name: a\n    principals: {userz: [x]}\n", 3, "unknown field(s) userz"),
    ("tenants:\n  - name: a\n  - name: a\n", 3, "already defined"),
    ("tenants:\n  - name: 'a=b'\n", 2, "does not match"),
    ("tenants:\n  - name: a\n    policy: nope.yaml\n", 3, "no such policy file"),
    ("default: z\ntenants:\n  - name: a\n", 1, "no tenant is called 'z'"),
    ("default: a\ntenants:\n  - name: a\n    admin: true\n", 1, "must not be an admin"),
    ("tenants:\n  - name: a\n    principals: {users: [x]}\n"
     "  - name: b\n    principals:\n      users: [x]\n", 6, "already a principal of tenant 'a'"),
    ("tenants:\n  - name: a\n    quotas: {max_cpus: 1, max_nano_cpus: 5}\n", 3, "not both"),
    ("tenants:\n  - name: a\n    quotas: {max_memory: lots}\n", 3, "max_memory"),
    ("tenants:\n  - name: a\n    principals: {cert_san: ['IP:1.2.3.4']}\n", 3, "does not match"),
    ("tenants:\n  - name: a\n    name: b\n", 3, "duplicate key"),
    ("tenants: [\n", 2, "(yaml)"),
    ("build_cache: public\ntenants:\n  - name: a\n", 1,
     "build_cache: 'public' is not one of private, shared"),
    ("tenants:\n  - name: a\n    build_cache: shared\n", 3,
     "build_cache: is one setting for the whole host"),
])
def test_errors_have_file_and_line(tmp_path: Path, text: str, line: int, why: str) -> None:
    """Tenants file mistakes (unknown fields, duplicate or bad names, missing policy, bad default, a
    principal claimed twice, conflicting or bad quotas, bad SANs, duplicate keys, bad YAML, a
    ``build_cache`` that is not private or shared, or given per tenant) name the file and line."""
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as e:
        TenantMap.load(str(path))
    assert any(p.startswith(f"{path}:{line}:") and why in p for p in e.value.problems), \
        e.value.problems


def test_build_cache_is_private_unless_the_file_shares_it(tmp_path: Path) -> None:
    """Without ``build_cache`` every tenant's build cache is private (admins' never is);
    ``build_cache: shared`` (top level: one setting for the host) shares it for all."""
    path = tmp_path / "t.yaml"
    body = "tenants:\n  - name: a\n  - name: ops\n    admin: true\n"
    path.write_text(body)
    a, ops = TenantMap.load(str(path)).tenants
    assert a.build_cache == "private" and a.private_build_cache
    assert not ops.private_build_cache
    path.write_text("build_cache: shared\n" + body)
    assert not any(t.private_build_cache for t in TenantMap.load(str(path)).tenants)
    path.write_text("build_cache: private\n" + body)
    assert TenantMap.load(str(path)).tenants[0].private_build_cache


def test_unreadable_file(tmp_path: Path) -> None:
    """A missing tenants file is a PolicyError saying it cannot be read."""
    with pytest.raises(PolicyError, match="cannot read"):
        TenantMap.load(str(tmp_path / "missing.yaml"))

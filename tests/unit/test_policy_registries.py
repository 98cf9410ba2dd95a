"""The ``registries`` control: which hosts a request makes the daemon contact."""

from __future__ import annotations

from typing import Any

import pytest

from dockgate.model import CanonicalRequest, Operation, Peer
from dockgate.policy import load_policy
from dockgate.policy.registries import (
    RegistryAllowlist,
    auth_registry,
    local_kind,
    registry_allowed,
    registry_of,
    search_registry,
    url_host,
)
from dockgate.policy.rules import CompiledPolicy, compile_policy
from dockgate.policy.source import parse_yaml

PEER = Peer("main", "unix", "@", uid=1000, gid=1000)


def policy(allow: str = "") -> CompiledPolicy:
    opts = f"{{allow: {allow}}}" if allow else "{}"
    text = f"name: t\nrules:\n  - id: r\n    registries: {opts}\n"
    return compile_policy(parse_yaml(text, "t.yaml"))


def req(
    eid: str,
    params: dict[str, str] | None = None,
    query: tuple[tuple[str, str], ...] = (),
    body: Any = None,
) -> CanonicalRequest:
    ep = Operation(eid, "POST", "/x", "json" if body is not None else "none")
    return CanonicalRequest("POST", ep, "/x", params=params or {}, query=query, body=body)


@pytest.mark.parametrize(
    ("ref", "registry"),
    [
        ("busybox", "docker.io"),
        ("library/busybox:1", "docker.io"),
        ("index.docker.io/x/y", "docker.io"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000"),
        ("localhost/x", "localhost"),
        ("LocalHost.:1/x", "localhost.:1"),  # refused below: not a host the grammar accepts
        ("UPPER", None),
        ("Example.COM/x", "example.com"),
        ("foo:5000", "docker.io"),  # a single component with a port is a tag
        ("foo/bar:5000", "docker.io"),
    ],
)
def test_registry_is_read_as_the_daemon_reads_a_reference(ref: str, registry: str | None) -> None:
    """The first component is a registry only with '.', ':' or 'localhost' (ParseNormalizedNamed)."""
    if registry is None:
        with pytest.raises(ValueError):
            registry_of(ref)
    else:
        assert registry_of(ref) == registry


def test_search_and_auth_registries() -> None:
    """Search splits its term like splitReposSearchTerm; /auth strips scheme and path."""
    assert search_registry("nginx") == "docker.io"
    assert search_registry("127.0.0.1:9/x") == "127.0.0.1:9"
    assert search_registry("localhost/x") == "localhost"
    assert auth_registry("https://index.docker.io/v1/") == "docker.io"
    assert auth_registry("") == "docker.io"
    assert auth_registry("http://10.1.2.3:5000/v2/") == "10.1.2.3:5000"


@pytest.mark.parametrize(
    "host",
    ["localhost", "a.localhost", "127.0.0.1", "127.1", "0x7f.0.0.1", "2130706433", "10.0.0.1",
     "192.168.1.1", "172.16.0.1", "169.254.169.254", "::1", "fe80::1", "fd00::1", "0.0.0.0",  # noqa: S104
     "100.64.0.1", "8.8.8.8"],
)
def test_addresses_in_any_spelling_are_local(host: str) -> None:
    """Anything a resolver could read as an address is not a DNS name (cannot be pinned)."""
    assert local_kind(host) is not None


def test_names_are_not_local() -> None:
    """Ordinary names are names; dockgate does not resolve them."""
    assert local_kind("ghcr.io") is None
    assert local_kind("registry.example.com") is None


@pytest.mark.parametrize(
    ("registry", "allowed"),
    [
        ("docker.io", True),
        ("ghcr.io", True),
        ("eu.gcr.io", True),
        ("127.0.0.1:5000", True),  # listed exactly
        ("127.0.0.1:5001", False),
        ("127.0.0.1", False),
        ("localhost:5000", False),
        ("[::1]:5000", False),
        ("10.0.0.7", False),
        ("169.254.169.254", False),
        ("evil.example.com", False),
        ("evil.gcr.io.example.com", False),
        ("bad_host", False),
        ("localhost.:1", False),
    ],
)
def test_allowlist(registry: str, allowed: bool) -> None:
    """Exact entries admit anything; globs admit names only, never an address."""
    a = RegistryAllowlist({"allow": ["docker.io", "ghcr.io", "*.gcr.io", "127.0.0.1:5000"]})
    assert (a.refusal(registry) is None) is allowed


def test_a_bare_glob_still_refuses_addresses() -> None:
    """``*`` admits every name but no address or localhost."""
    a = RegistryAllowlist({"allow": ["*"]})
    assert a.refusal("quay.io") is None
    for local in ("127.0.0.1:1", "localhost", "x.localhost:5", "[::1]:1", "10.1.1.1"):
        assert a.refusal(local) is not None


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (req("distribution.inspect", {"name": "127.0.0.1:9/x"}), "path.name"),
        (req("image.create", query=(("fromImage", "127.0.0.1:9/x"), ("tag", "1"))),
         "query.fromImage"),
        (req("image.push", {"name": "localhost:9/x"}), "path.name"),
        (req("plugin.pull", query=(("remote", "127.0.0.1:9/p"),)), "query.remote"),
        (req("plugin.privileges", query=(("remote", "127.0.0.1:9/p"),)), "query.remote"),
        (req("plugin.upgrade", {"name": "p"}, (("remote", "127.0.0.1:9/p"),)), "query.remote"),
        (req("plugin.push", {"name": "127.0.0.1:9/p"}), "path.name"),
        (req("image.search", query=(("term", "127.0.0.1:9/x"),)), "query.term"),
        (req("system.auth", body={"serveraddress": "http://127.0.0.1:9/"}), "serveraddress"),
        (req("image.build", query=(("cachefrom", '["127.0.0.1:9/c"]'),)), "query.cachefrom"),
        (req("service.create", body={"TaskTemplate": {"ContainerSpec": {"Image": "10.0.0.1/x"}}}),
         "TaskTemplate.ContainerSpec.Image"),
        (req("image.build", query=(("remote", "http://127.0.0.1:9/ctx.tar"),)), "query.remote"),
        (req("image.build", query=(("remote", "git@10.0.0.1:x.git"),)), "query.remote"),
        (req("image.create", query=(("fromSrc", "http://169.254.169.254/latest"),)),
         "query.fromSrc"),
        (req("image.create", query=(("fromSrc", "127.0.0.1:9/x"),)), "query.fromSrc"),
    ],
)
def test_every_endpoint_that_contacts_a_registry_is_checked(
    request_: CanonicalRequest, field: str
) -> None:
    """Each request shape that makes dockerd connect names its registry, and it is refused."""
    d = policy().decide(request_, PEER)
    assert d.verdict == "deny"
    url = field == "query.fromSrc" or (request_.endpoint.id, field) == ("image.build",
                                                                       "query.remote")
    noun = "URL host" if url else "registry"
    assert d.reason.startswith(f"denied by policy t rule r: {field} {noun} ")


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1:5/x", "127.0.0.1:5"),
        ("https://github.com/a/b.git#main", "github.com"),
        ("git@github.com:a/b.git", "github.com"),
        ("github.com/a/b", "github.com"),
        ("git://10.0.0.1/x", "10.0.0.1"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000"),  # fromSrc without a scheme: http:// + it
        ("http://u:p@127.0.0.1/", "127.0.0.1"),
    ],
)
def test_url_hosts_are_read_as_the_daemon_reads_them(url: str, host: str) -> None:
    """Build ``remote`` and ``fromSrc`` URLs name the host the daemon fetches from."""
    assert url_host(url) == host


@pytest.mark.parametrize("url", ["http://evil.com\\@127.0.0.1/", "http://127.0.0.1%2f@x/",
                                 "ht tp://x/", "http:///x"])
def test_ambiguous_urls_are_refused(url: str) -> None:
    """An authority parsers could split differently is refused, not guessed at."""
    with pytest.raises(ValueError):
        url_host(url)
    assert RegistryAllowlist({"allow": ["*"]}).ref_refusal("url", url) is not None


def test_client_session_and_tar_builds_name_no_host() -> None:
    """remote=client-session (BuildKit through the CLI) and no remote fetch nothing."""
    for query in ((("remote", "client-session"),), (("remote", ""),), ()):
        assert policy().decide(req("image.build", query=query), PEER).allowed


def test_from_image_beside_from_src_is_still_a_pull() -> None:
    """The daemon pulls whenever fromImage is set (postImagesCreate tests it first), so
    a fromSrc beside it does not hide the registry; an import alone names none."""
    r = req("image.create", query=(("fromSrc", "-"), ("fromImage", "127.0.0.1:9/x")))
    assert policy().decide(r, PEER).verdict == "deny"
    assert policy().decide(req("image.create", query=(("fromSrc", "-"),)), PEER).allowed


def test_default_allows_docker_hub_only() -> None:
    """Without ``allow`` the rule admits docker.io."""
    assert policy().decide(req("image.create", query=(("fromImage", "busybox"),)), PEER).allowed
    assert not policy().decide(req("image.create", query=(("fromImage", "ghcr.io/a/b"),)),
                               PEER).allowed


def test_registry_allowed_hook() -> None:
    """The hook for a Dockerfile's FROM answers with the policy's enforcing rules."""
    p = policy("[docker.io]")
    assert registry_allowed(p, "busybox") is None
    why = registry_allowed(p, "127.0.0.1:5000/base")
    assert why is not None and "loopback" in why
    assert registry_allowed(load_policy("policies/privileged.yaml"), "127.0.0.1:1/x") is None


@pytest.mark.parametrize("name", ["readonly", "baseline", "restricted"])
def test_shipped_profiles_refuse_loopback_registries(name: str) -> None:
    """readonly, baseline and restricted refuse a loopback registry for distribution inspect."""
    p = load_policy(f"policies/{name}.yaml")
    r = req("distribution.inspect", {"name": "127.0.0.1:5000/x"})
    assert not p.decide(r, PEER).allowed
    assert p.decide(req("distribution.inspect", {"name": "busybox"}), PEER).allowed


def test_registry_allowed_hook_honours_exemptions() -> None:
    """With a peer, rules that exempt it are skipped, as in decisions."""
    text = "name: t\nrules:\n  - id: r\n    exempt: {uids: [0]}\n    registries: {}\n"
    p = compile_policy(parse_yaml(text, "t.yaml"))
    root = Peer("main", "unix", "@", uid=0, gid=0)
    assert registry_allowed(p, "127.0.0.1:1/x", peer=root) is None
    assert registry_allowed(p, "127.0.0.1:1/x", peer=PEER) is not None
    assert registry_allowed(p, "127.0.0.1:1/x") is not None

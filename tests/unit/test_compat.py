"""docker-socket-proxy variables as a dockgate policy (`import-env`, `serve --compat-env`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockgate.policy import load_policy
from dockgate.service import compat, tap


def allowed(**env: str) -> set[str]:
    return set(compat.allowed_endpoints(env))


def test_defaults_ping_events_version() -> None:
    """With nothing set, only the images' defaults: ping, events, version."""
    assert allowed() == {"system.ping", "system.ping.head", "system.events", "system.version"}


def test_containers_read_only_without_post() -> None:
    """CONTAINERS=1 POST=0 opens the GET endpoints under /containers, not attach or create."""
    got = allowed(CONTAINERS="1")
    assert {"container.list", "container.inspect", "container.logs"} <= got
    assert not {"container.create", "container.start", "container.attach.ws",
                "exec.create", "image.list"} & got


def test_post_opens_writes_but_exec_needs_exec() -> None:
    """POST=1 opens the section's writes; exec create is EXEC's, not CONTAINERS'."""
    got = allowed(CONTAINERS="1", POST="1")
    assert {"container.create", "container.delete", "container.attach"} <= got
    assert "exec.create" not in got
    assert {"exec.create", "exec.start"} <= allowed(CONTAINERS="1", POST="1", EXEC="1")


def test_carve_outs_work_without_post() -> None:
    """ALLOW_RESTARTS and ALLOW_START allow their endpoints without POST=1, and a false value does
    not."""
    assert allowed(ALLOW_RESTARTS="1") >= {"container.restart", "container.stop",
                                           "container.kill"}
    assert "container.start" in allowed(ALLOW_START="true")
    assert "container.start" not in allowed(ALLOW_START="0")


def test_ping_can_be_turned_off() -> None:
    """PING=0 removes the ping endpoint from the generated policy."""
    assert "system.ping" not in allowed(PING="0")


def test_generated_policy_loads(tmp_path: Path) -> None:
    """The printed policy is a valid dockgate policy allowing exactly those endpoints."""
    path = tmp_path / "p.yaml"
    path.write_text(compat.policy_yaml({"IMAGES": "1", "LOG_LEVEL": "info"}))
    assert load_policy(str(path)).name == "compat"
    text = path.read_text()
    assert "LOG_LEVEL" in text
    assert "- image.list" in text


def test_main_prints_policy(monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """dockgate import-env prints the generated policy with the endpoints the variables allow."""
    monkeypatch.setenv("NETWORKS", "1")
    assert compat.main([]) == 0
    assert "- network.list" in capsys.readouterr().out


def test_listen_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """0.0.0.0 only inside a container; DOCKGATE_LISTEN wins."""
    monkeypatch.setattr(compat, "in_container", lambda: False)
    assert compat.default_listen({}) == "tcp:2375"
    monkeypatch.setattr(compat, "in_container", lambda: True)
    assert compat.default_listen({}) == "tcp:2375:interface=0.0.0.0"
    assert compat.default_listen({"DOCKGATE_LISTEN": "unix:/s"}) == "unix:/s"


def test_serve_compat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """--compat-env: generated policy, compat listener, SOCKET_PATH as upstream."""
    monkeypatch.setattr(compat, "in_container", lambda: False)
    monkeypatch.setenv("CONTAINERS", "1")
    monkeypatch.setenv("SOCKET_PATH", "/run/d.sock")
    monkeypatch.delenv("DOCKGATE_LISTEN", raising=False)
    options = tap.Options()
    options.parseOptions(["--compat-env"])
    assert [n for n, _ in options.listeners] == ["tcp:2375"]
    assert options.upstream is not None and options.upstream.address == "/run/d.sock"
    policy = load_policy(options["policy"])
    assert policy.name == "compat"
    Path(options["policy"]).unlink()

"""The config file: schema and file:line errors, option mapping and precedence,
`dockgate config check`, and every example config in the repository and docs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python import usage

from dockgate.policy import PolicyError
from dockgate.service import config, tap
from dockgate.service.listeners import UnixListenerSpec, UpstreamSpec

REPO = Path(__file__).resolve().parents[2]
PRIVILEGED = REPO / "policies" / "privileged.yaml"
MARK = "# dockgate config"
"""First line of every example config: how the test below finds them in docs and deploy/."""


def examples() -> list[tuple[str, str]]:
    """(name, text) of every example config: files under deploy/ and ```yaml blocks
    in the docs and README whose first line is the mark."""
    found: list[tuple[str, str]] = []
    for path in sorted((REPO / "deploy").glob("*.yaml")):
        text = path.read_text()
        if text.startswith(MARK):
            found.append((str(path.relative_to(REPO)), text))
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)):
            if block.startswith(MARK):
                found.append((f"{doc.relative_to(REPO)}#{i}", block))
    return found


def write(tmp_path: Path, text: str, name: str = "dockgate.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_there_are_examples() -> None:
    """The deploy/ config and the docs' configs are found (the check below is not vacuous)."""
    names = [n for n, _ in examples()]
    assert "deploy/dockgate.yaml" in names
    assert any(n.startswith("docs/") for n in names)


@pytest.mark.parametrize(("name", "text"), examples(), ids=[n for n, _ in examples()])
def test_example_configs_check(name: str, text: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """`dockgate config check --syntax-only` accepts every example (the files they name
    live on the target host, so only the config itself is checked)."""
    path = write(tmp_path, text)
    assert config.main(["check", "--syntax-only", path]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        ("listeners:\n  - tcp:2375\nlimits:\n  max_conections: 3\n", 3,
         "limits: unknown field(s) max_conections"),
        ("upstream: unix:/x\nlisteners:\n  - ssl:443\n", 3, "listeners[0]:"),
        ("admin: tcp:9323:interface=0.0.0.0\n", 1, "admin: admin endpoint"),
        ("audit:\n  fsync: sometimes\n", 2, "audit.fsync:"),
        ("policy: a.yaml\npolicy: b.yaml\n", 2, "policy: duplicate key"),
        ("listeners:\n  - {unix: /s, mode: 0660}\n", 2, "listeners[0]"),
        ("limits:\n  head_timeout: 0\n", 2, "limits.head_timeout"),
        ("upstream: [1\n", 2, "(yaml)"),
    ],
)
def test_bad_configs_fail_with_file_and_line(text: str, line: int, why: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Each problem names the file and line; `config check` exits 1."""
    path = write(tmp_path, text)
    assert config.main(["check", "--syntax-only", path]) == 1
    err = capsys.readouterr().err
    assert f"{path}:{line}: {why}" in err, err


def test_check_loads_named_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --syntax-only the policy a config names must exist and load."""
    (tmp_path / "policy.yaml").write_text("name: p\nrules: [{id: x, nonsense: 1}]\n")
    path = write(tmp_path, "policy: policy.yaml\n")
    assert config.main(["check", path]) == 1
    assert f"{tmp_path}/policy.yaml:2:" in capsys.readouterr().err
    (tmp_path / "policy.yaml").write_text("name: p\nrules: []\n")
    assert config.main(["check", path]) == 0


def test_mapping_listeners_and_relative_paths(tmp_path: Path) -> None:
    """Listener mappings become --listen strings; relative paths are the config's."""
    cfg = config.load_config(write(tmp_path, (
        "listeners:\n  - {unix: /run/a b:c.sock, mode: '600', group: docker}\n"
        "  - {tcp: 2375}\n  - {tls: 2376, cert: s.pem, key: s.key, ca: ca.pem}\n"
        "policy: p.yaml\naudit: {log: audit.jsonl, fsync: always}\n"
        "limits: {max_connections_per_peer: 7}\n"
    )))
    assert cfg.listeners[0] == "unix:/run/a b\\:c.sock:mode=600:group=docker"
    assert cfg.listeners[1] == "tcp:2375"
    assert f"cert={tmp_path}/s.pem" in cfg.listeners[2]
    assert cfg.options["policy"] == f"{tmp_path}/p.yaml"
    assert cfg.options["audit-log"] == f"{tmp_path}/audit.jsonl"
    assert cfg.options["audit-fsync"] == "always"
    assert cfg.options["max-connections-per-peer"] == 7


def test_serve_options_from_config_and_command_line_wins(tmp_path: Path) -> None:
    """--config supplies the settings; options on the command line override them."""
    path = write(tmp_path, (
        f"listeners: [unix:{tmp_path}/c.sock]\nupstream: tcp:docker:2375\n"
        f"policy: {PRIVILEGED}\nlimits: {{max_connections_per_peer: 7, head_timeout: 5}}\n"
    ))
    options = tap.Options()
    options.parseOptions(["--config", path, "--head-timeout", "9"])
    assert options.listeners == [(f"unix:{tmp_path}/c.sock",
                                  UnixListenerSpec(f"{tmp_path}/c.sock"))]
    assert options.upstream == UpstreamSpec("tcp", "docker", 2375)
    fields = dict(options.settings_fields())
    assert fields["max_connections_per_peer"] == 7
    assert fields["head_timeout"] == 9.0
    options = tap.Options()
    options.parseOptions([f"--config={path}", "--listen", "tcp:1234"])
    assert [n for n, _ in options.listeners] == ["tcp:1234"]


def test_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    """A config file with an unknown setting is a usage error naming the file, line and setting."""
    path = write(tmp_path, "limits: {nope: 1}\n")
    with pytest.raises(usage.UsageError, match=r"dockgate\.yaml:1: limits"):
        tap.Options().parseOptions(["--config", path])


def test_sighup_follows_config_policy(tmp_path: Path) -> None:
    """SIGHUP re-reads the config: a new policy path applies; a new listener is only logged."""
    (tmp_path / "a.yaml").write_text("name: a\nrules: []\n")
    (tmp_path / "b.yaml").write_text("name: b\nrules: []\n")
    path = write(tmp_path, f"listeners: [unix:{tmp_path}/c.sock]\npolicy: a.yaml\n")
    options = tap.Options()
    options.parseOptions(["--config", path])
    root = tap.makeService(options, MemoryReactorClock())
    proxy = next(c for c in root if c.name == f"unix:{tmp_path}/c.sock")
    assert proxy.factory.settings.policy().name == "a"
    write(tmp_path, f"listeners: [unix:{tmp_path}/d.sock]\npolicy: b.yaml\n")
    events = EventLoggingObserver()
    globalLogPublisher.addObserver(events)
    try:
        next(c for c in root if isinstance(c, tap.ReloadOnHangup))._reload()
    finally:
        globalLogPublisher.removeObserver(events)
    assert proxy.factory.settings.policy().name == "b"
    said: list[Any] = [str(formatEvent(e)) for e in events]
    assert any("listeners changed; restart" in s for s in said), said


def test_invalid_config_on_sighup_keeps_settings(tmp_path: Path) -> None:
    """A config file broken before SIGHUP is not applied: the settings in force are kept."""
    (tmp_path / "a.yaml").write_text("name: a\nrules: []\n")
    path = write(tmp_path, f"listeners: [unix:{tmp_path}/c.sock]\npolicy: a.yaml\n")
    options = tap.Options()
    options.parseOptions(["--config", path])
    root = tap.makeService(options, MemoryReactorClock())
    write(tmp_path, "policy: [\n")
    next(c for c in root if isinstance(c, tap.ReloadOnHangup))._reload()
    assert options["policy"] == f"{tmp_path}/a.yaml"


def test_load_error_type(tmp_path: Path) -> None:
    """load_config raises PolicyError for an invalid file."""
    with pytest.raises(PolicyError):
        config.load_config(write(tmp_path, "bogus: 1\n"))

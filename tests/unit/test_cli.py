"""The dockgate command: dispatch, serve's options and its run loop."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.python import usage

from dockgate import __version__
from dockgate.cli import main as cli
from dockgate.fastio import reactor as fastio_reactor
from dockgate.service import oplog, tap


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """'dockgate version' prints the version and succeeds."""
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out == f"dockgate {__version__}\n"


def test_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a command, the help goes to stderr and the status is 2."""
    assert cli.main([]) == 2
    assert "serve" in capsys.readouterr().err


def test_unknown_command() -> None:
    """An unknown command is an argparse usage error."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2


@pytest.mark.parametrize(("command", "module"), [("api", "dockgate.cli.routes"),
                                                 ("policy", "dockgate.cli.policy")])
def test_delegation(monkeypatch: pytest.MonkeyPatch, command: str, module: str) -> None:
    """api and policy hand every following argument, options included, to their module's
    main and return its status."""
    seen: list[list[str]] = []
    fake = types.ModuleType(module)

    def main(argv: list[str]) -> int:
        seen.append(argv)
        return 3

    fake.main = main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module, fake)
    assert cli.main([command, "check", "--verbose", "-h", "x.yaml"]) == 3
    assert seen == [["check", "--verbose", "-h", "x.yaml"]]


def test_delegate_missing_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command whose module is absent says so and exits 2 instead of a traceback."""
    monkeypatch.setitem(sys.modules, "dockgate.cli.routes", None)
    assert cli.main(["api", "list"]) == 2
    assert "not available" in capsys.readouterr().err


def test_serve_help_lists_shared_and_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    """serve --help shows tap's options and serve's own --log-format."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "Usage: dockgate serve" in out
    for option in ("--listen", "--upstream", "--policy", "--audit-log", "--connect-timeout",
                   "--response-timeout", "--max-json-body", "--max-head-size", "--log-format"):
        assert option in out


def test_serve_options_extend_tap_options() -> None:
    """ServeOptions is tap.Options plus --log-format (one definition of each option)."""
    options = cli.ServeOptions()
    options.parseOptions(["--log-format", "json", "--listen", "tcp:1"])  # type: ignore[no-untyped-call]
    assert options["log-format"] == "json"
    assert options.listeners[0][0] == "tcp:1"
    assert isinstance(options, tap.Options)
    with pytest.raises(usage.UsageError):
        cli.ServeOptions().parseOptions(["--log-format", "xml"])  # type: ignore[no-untyped-call]


def test_serve_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad option is reported in one line, with status 2, before anything starts."""
    assert cli.main(["serve", "--listen", "ssl:443"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dockgate serve: --listen:")


def test_serve_invalid_policy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid policy file stops serve with the policy's own message and status 1."""
    monkeypatch.setattr(oplog, "start_logging", lambda *a, **k: None)
    # A reactor of its own, not installed: another test in this process (under
    # pytest-xdist, in any order) may have installed Twisted's global one.
    monkeypatch.setattr(fastio_reactor, "install", fastio_reactor.DockgateReactor)
    policy = tmp_path / "bad.yaml"
    policy.write_text("rules: 12\n")
    status = cli.main(["serve", "--listen", f"unix:{tmp_path}/g.sock", "--policy", str(policy)])
    assert status == 1
    assert str(policy) in capsys.readouterr().err


class FakeReactor:
    """Runs callWhenRunning callables, then the before-shutdown triggers, on run()."""

    def __init__(self) -> None:
        self.when_running: list[Callable[[], Any]] = []
        self.before_shutdown: list[Callable[[], Any]] = []
        self.stopped = False

    def callWhenRunning(self, f: Callable[[], Any]) -> None:
        self.when_running.append(f)

    def addSystemEventTrigger(self, phase: str, event: str, f: Callable[[], Any]) -> None:
        assert (phase, event) == ("before", "shutdown")
        self.before_shutdown.append(f)

    def stop(self) -> None:
        self.stopped = True

    def run(self) -> None:
        for f in self.when_running:
            f()
        for f in self.before_shutdown:
            f()


class FakeRoot:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.fail = fail
        self.running = False

    def privilegedStartService(self) -> None:
        self.calls.append("bind")
        if self.fail:
            raise OSError("cannot bind")

    def startService(self) -> None:
        self.calls.append("start")
        self.running = True

    def stopService(self) -> None:
        self.calls.append("stop")
        self.running = False


def test_run_service_clean() -> None:
    """The service is bound and started once the reactor runs and stopped at shutdown."""
    root, reactor = FakeRoot(), FakeReactor()
    assert cli.run_service(root, reactor) == 0
    assert root.calls == ["bind", "start", "stop"]
    assert not reactor.stopped


def test_run_service_start_failure() -> None:
    """A service that cannot start stops the reactor and makes the exit status 1."""
    root, reactor = FakeRoot(fail=True), FakeReactor()
    assert cli.run_service(root, reactor) == 1
    assert root.calls == ["bind"]
    assert reactor.stopped

"""tap.Options, makeService, SIGHUP reloads and the twistd plugin."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceMaker
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.plugin import getPlugins
from twisted.python import usage

from dockgate.audit.sink import JsonLinesAudit, NullAudit
from dockgate.fastio import kernelsplice, writethrough
from dockgate.policy import PolicyHolder
from dockgate.proxy.settings import ProxySettings
from dockgate.service import tap
from dockgate.service.listeners import CannotListen, UnixListener, UnixListenerSpec, UpstreamSpec

REPO = Path(__file__).resolve().parents[2]
PRIVILEGED = REPO / "policies" / "privileged.yaml"


def parse(*argv: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(argv))  # type: ignore[no-untyped-call]
    return options


@pytest.fixture
def logged() -> Iterator[EventLoggingObserver]:
    """Every log event emitted during the test."""
    events = EventLoggingObserver()
    globalLogPublisher.addObserver(events)
    yield events
    globalLogPublisher.removeObserver(events)


def said(events: EventLoggingObserver, text: str) -> bool:
    """Whether some logged event's message contains ``text``."""
    return any(text in str(formatEvent(e)) for e in events)


# --- Options ---------------------------------------------------------------------


def test_defaults() -> None:
    """With no options: listen on /var/run/dockgate.sock (0660), forward to docker.sock,
    use the bundled privileged policy, no audit log, ProxySettings' own defaults."""
    options = parse()
    assert options.listeners == [(tap.DEFAULT_LISTEN, UnixListenerSpec("/var/run/dockgate.sock"))]
    assert options.upstream == UpstreamSpec("unix", "/var/run/docker.sock")
    assert options["policy"] == str(tap.default_policy_path())
    assert options["audit-log"] is None
    fields = dict(options.settings_fields())
    defaults = ProxySettings(upstream=None, policy=None, audit=None)  # type: ignore[arg-type]
    for name in ("connect_timeout", "response_timeout", "max_head_size", "pool_size", "api"):
        assert fields[name] == getattr(defaults, name), name


def test_bundled_policy_found() -> None:
    """The default policy is the privileged profile shipped inside the package
    (dockgate/policies, installed from policies/; unless /etc has one)."""
    if not Path("/etc/dockgate/policy.yaml").exists():
        found = tap.default_policy_path()
        assert found == Path(tap.__file__).parents[1] / "policies" / "privileged.yaml"
        assert found.read_bytes() == PRIVILEGED.read_bytes()


def test_listen_repeats_in_order() -> None:
    """--listen may be given several times; order is kept and the default is dropped."""
    options = parse("--listen", "unix:/a.sock:mode=600", "-l", "tcp:2375")
    assert [name for name, _ in options.listeners] == ["unix:/a.sock:mode=600", "tcp:2375"]


def test_numbers_and_files() -> None:
    """Timeouts, caps, the policy and the audit log are read from the command line."""
    options = parse(
        "--upstream", "tcp:docker:2375", "--policy", str(PRIVILEGED), "--audit-log", "/x.jsonl",
        "--connect-timeout", "2.5", "--response-timeout", "60", "--max-json-body", "1000",
        "--max-head-size", "4096", "--pool-size", "0",
    )
    fields = dict(options.settings_fields())
    assert options.upstream == UpstreamSpec("tcp", "docker", 2375)
    assert options["audit-log"] == "/x.jsonl"
    assert fields["connect_timeout"] == 2.5
    assert fields["response_timeout"] == 60.0
    assert fields["max_head_size"] == 4096
    assert fields["pool_size"] == 0
    assert fields["api"].max_json_body == 1000


@pytest.mark.parametrize(
    "argv",
    [
        ["--listen", "ssl:443"],
        ["--listen", "unix:/s:mode=999"],
        ["--upstream", "tcp:nohost"],
        ["--connect-timeout", "0"],
        ["--response-timeout", "-1"],
        ["--max-json-body", "big"],
        ["--pool-size", "-1"],
        ["--policy", "/nonexistent/policy.yaml"],
        ["unexpected-argument"],
    ],
)
def test_usage_errors(argv: list[str]) -> None:
    """Bad endpoints, non-positive numbers and a missing policy are usage errors."""
    with pytest.raises(usage.UsageError):
        parse(*argv)


def test_no_default_policy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without --policy and with no policy on the search path, parsing fails and says where
    it looked."""
    monkeypatch.setattr(tap, "POLICY_SEARCH_PATH", (tmp_path / "none.yaml",))
    with pytest.raises(usage.UsageError, match=r"none\.yaml"):
        parse()


# --- makeService -------------------------------------------------------------------


def test_make_service(tmp_path: Path) -> None:
    """One endpoint service per listener, named after it and failing loudly, plus the
    SIGHUP service; all listeners share the settings built from the options."""
    audit = tmp_path / "audit.jsonl"
    options = parse("--listen", f"unix:{tmp_path}/a.sock", "--listen", "tcp:2375",
                    "--audit-log", str(audit), "--connect-timeout", "3")
    root = tap.makeService(options, MemoryReactorClock())  # type: ignore[no-untyped-call]
    children = list(root)
    listeners = [c for c in children if isinstance(c, StreamServerEndpointService)]
    assert [c.name for c in listeners] == [f"unix:{tmp_path}/a.sock", "tcp:2375"]
    assert isinstance(listeners[0].endpoint, UnixListener)
    assert all(c._raiseSynchronously for c in listeners)
    assert sum(isinstance(c, tap.ReloadOnHangup) for c in children) == 1
    settings = listeners[0].factory.settings
    assert listeners[1].factory.settings is settings
    assert listeners[1].factory.listener == "tcp:2375"
    assert settings.connect_timeout == 3.0
    assert isinstance(tap._inner(settings.audit), JsonLinesAudit)
    assert audit.exists()
    assert settings.policy().name == "privileged"


def test_make_service_without_audit_log() -> None:
    """Without --audit-log, records go to the null sink."""
    root = tap.makeService(parse(), MemoryReactorClock())  # type: ignore[no-untyped-call]
    [listener] = [c for c in root if isinstance(c, StreamServerEndpointService)]
    assert isinstance(tap._inner(listener.factory.settings.audit), NullAudit)


def test_fast_io_follows_the_option_and_is_in_the_startup_line() -> None:
    """makeService turns fast I/O on by default (where the probes pass, as on
    the Twisted the suite runs on) and off with --no-fast-io; the start-up
    line says which."""
    saved = writethrough.ENABLED, kernelsplice.ENABLED
    try:
        root = tap.makeService(parse(), MemoryReactorClock())  # type: ignore[no-untyped-call]
        assert writethrough.ENABLED and kernelsplice.ENABLED
        assert root.summary.endswith(", fast I/O on")
        root = tap.makeService(parse("--no-fast-io"), MemoryReactorClock())  # type: ignore[no-untyped-call]
        assert not writethrough.ENABLED and not kernelsplice.ENABLED
        assert root.summary.endswith(", fast I/O off (--no-fast-io)")
    finally:
        writethrough.ENABLED, kernelsplice.ENABLED = saved


class _Child:
    """A stand-in child service recording what was done to it."""

    def __init__(self, calls: list[str], name: str, fail: bool = False) -> None:
        self.calls, self.name, self.fail = calls, name, fail

    def privilegedStartService(self) -> None:
        self.calls.append(f"bind {self.name}")
        if self.fail:
            raise OSError("address in use")

    def stopService(self) -> None:
        self.calls.append(f"stop {self.name}")


def test_failed_bind_unbinds_the_others() -> None:
    """If one listener fails to bind, those already bound are stopped and the error raised."""
    calls: list[str] = []
    root = tap.ProxyService("test")
    root.services = [_Child(calls, "a"), _Child(calls, "b"), _Child(calls, "c", fail=True)]
    with pytest.raises(CannotListen, match=r"^--listen c: address in use$"):
        root.privilegedStartService()
    assert calls == ["bind a", "bind b", "bind c", "stop b", "stop a"]


# --- SIGHUP ----------------------------------------------------------------------------


class _ThreadCalls:
    """Collects callFromThread calls instead of running them."""

    def __init__(self) -> None:
        self.queued: list[Callable[[], None]] = []

    def callFromThread(self, f: Callable[[], None]) -> None:
        self.queued.append(f)


def test_sighup_schedules_reload_while_running() -> None:
    """While running, SIGHUP queues the reload for the reactor thread; stopping restores
    the previous SIGHUP handler."""
    reloads: list[bool] = []
    reactor = _ThreadCalls()
    service = tap.ReloadOnHangup(lambda: reloads.append(True), reactor)
    previous = signal.getsignal(signal.SIGHUP)
    service.startService()
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        assert reloads == []
        [queued] = reactor.queued
        queued()
        assert reloads == [True]
    finally:
        service.stopService()
    assert signal.getsignal(signal.SIGHUP) == previous


class _Reopenable:
    """An audit log that counts its reopens and may fail them (a stand-in of its own:
    the compiled ``NullAudit`` cannot be subclassed, setup.py)."""

    def __init__(self, error: OSError | None = None) -> None:
        self.reopened = 0
        self.error = error

    def reopen(self) -> None:
        self.reopened += 1
        if self.error is not None:
            raise self.error


def test_reload_keeps_old_policy_on_error(tmp_path: Path, logged: EventLoggingObserver) -> None:
    """A policy that no longer loads leaves the old one in force, says why, and the audit
    log is reopened all the same."""
    path = tmp_path / "policy.yaml"
    path.write_text(PRIVILEGED.read_text())
    holder = PolicyHolder(str(path))
    before = holder.current
    path.write_text("version: [not, valid\n")
    audit = _Reopenable()
    tap.reload_everything(holder, audit)
    assert holder.current is before
    assert audit.reopened == 1
    assert said(logged, "failed; keeping policy 'privileged'")


def test_reload_swaps_policy(tmp_path: Path, logged: EventLoggingObserver) -> None:
    """A valid file is loaded on reload."""
    path = tmp_path / "policy.yaml"
    path.write_text(PRIVILEGED.read_text())
    holder = PolicyHolder(str(path))
    before = holder.current
    tap.reload_everything(holder, _Reopenable())
    assert holder.current is not before
    assert said(logged, "reloaded")


def test_reload_survives_audit_reopen_failure(logged: EventLoggingObserver) -> None:
    """An audit log that cannot be reopened is logged, not raised."""
    holder = PolicyHolder(str(PRIVILEGED))
    tap.reload_everything(holder, _Reopenable(PermissionError("denied")))
    assert said(logged, "Could not reopen the audit log")


# --- plugin ------------------------------------------------------------------------------


def test_plugin_discovered() -> None:
    """twisted.plugin finds the dockgate service maker, which points at dockgate.service.tap."""
    makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
    maker: Any = makers["dockgate"]
    assert maker.options is tap.Options
    assert maker.makeService is tap.makeService
    assert maker.module == "dockgate.service.tap"


def test_startup_warnings(tmp_path: Path) -> None:
    """A daemon socket that is not there, and an allow-all policy with no audit log, are
    warned about at startup; with an audit log and an existing socket, neither is."""
    missing = f"unix:{tmp_path}/nothing.sock"
    root = tap.makeService(parse("--upstream", missing), MemoryReactorClock())  # type: ignore[no-untyped-call]
    warnings = " ".join(root.warnings)
    assert f"--upstream {missing}: there is no socket" in warnings
    assert "allows every request and there is no audit log" in warnings
    (tmp_path / "d.sock").touch()
    root = tap.makeService(parse("--upstream", f"unix:{tmp_path}/d.sock", "--audit-log",  # type: ignore[no-untyped-call]
                                 str(tmp_path / "a.jsonl")), MemoryReactorClock())
    assert root.warnings == []


def test_admission_workers_option_builds_a_shared_pool_lazily() -> None:
    """--admission-workers N (default 1) gives every listener the same pool of N,
    with no process started by makeService; 0 gives none (bodies admitted on the
    reactor); a negative or huge number is a one-line usage error naming the option
    and what it takes; the config file's ``limits.admission_workers`` sets it."""
    reactor = MemoryReactorClock()
    root = tap.makeService(parse("--listen", "tcp:2375", "--listen", "tcp:2376"),  # type: ignore[no-untyped-call]
                           reactor)
    listeners = [c for c in root if isinstance(c, StreamServerEndpointService)]
    pool = listeners[0].factory.settings.workers
    assert pool is not None and pool.size == 1 and pool.workers == []
    assert listeners[1].factory.settings.workers is pool
    assert sum(isinstance(c, tap.StopWorkers) for c in root) == 1
    root = tap.makeService(parse("--admission-workers", "0"), reactor)  # type: ignore[no-untyped-call]
    [listener] = [c for c in root if isinstance(c, StreamServerEndpointService)]
    assert listener.factory.settings.workers is None
    assert not any(isinstance(c, tap.StopWorkers) for c in root)
    for bad in ("-1", "65"):
        with pytest.raises(usage.UsageError) as exc:
            parse("--admission-workers", bad)
        assert str(exc.value).startswith("--admission-workers must be 0 ")
        assert "\n" not in str(exc.value)
    with pytest.raises(usage.UsageError):
        parse("--admission-workers", "two")


def test_admission_workers_from_the_config_file(tmp_path: Path) -> None:
    """``limits: {admission_workers: 3}`` in the config file is --admission-workers 3;
    a negative count there is refused with the file, line and field."""
    path = tmp_path / "dockgate.yaml"
    path.write_text(f"policy: {PRIVILEGED}\nlimits: {{admission_workers: 3}}\n")
    options = parse("--config", str(path))
    assert options["admission-workers"] == 3
    path.write_text(f"policy: {PRIVILEGED}\nlimits: {{admission_workers: -1}}\n")
    with pytest.raises(usage.UsageError, match=r"dockgate\.yaml:2: limits\.admission_workers"):
        parse("--config", str(path))

"""The dockgate service: command-line options and ``makeService``, shared by
``twistd dockgate`` (through the plugin in ``twisted/plugins``) and
``dockgate serve``.

One ``Options`` class defines every option once; ``makeService`` turns parsed
options into a ``MultiService`` holding one ``StreamServerEndpointService``
per ``--listen`` and a small service that reloads the policy and reopens the
audit log on SIGHUP.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.logger import Logger
from twisted.python import usage

from dockgate import __version__, audit_config
from dockgate.admission import ApiContext
from dockgate.audit import JsonLinesAudit, NullAudit
from dockgate.listeners import (
    ListenerSpec,
    UpstreamSpec,
    listener_endpoint,
    parse_listener,
    parse_upstream,
    upstream_endpoint,
)
from dockgate.policy import PolicyError, PolicyHolder
from dockgate.server import ProxySettings, build_proxy_factory
from dockgate.tenancy import TenantMap

__all__ = ["DEFAULT_LISTEN", "DEFAULT_UPSTREAM", "Options", "ReloadOnHangup", "makeService"]

log = Logger()

DEFAULT_LISTEN = "unix:/var/run/dockgate.sock"
DEFAULT_UPSTREAM = "unix:/var/run/docker.sock"
POLICY_SEARCH_PATH: tuple[Path, ...] = (
    Path("/etc/dockgate/policy.yaml"),
    Path(__file__).parent / "policies" / "privileged.yaml",
    Path(__file__).parent.parent / "policies" / "privileged.yaml",
)
"""Where the policy is looked for when ``--policy`` is not given, first match wins:
the administrator's file, a policy shipped inside the package, and the one in
a source checkout."""


def _default(cls: type[Any], name: str) -> Any:
    """The dataclass default of ``cls.name``, so the defaults live in one place."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def coerce(text: str) -> float:
        value = kind(text)
        if not value > 0:
            raise ValueError(f"{text} is not a positive number")
        return value

    coerce.coerceDoc = "Must be positive."  # type: ignore[attr-defined]
    return coerce


def default_policy_path() -> Path | None:
    """The first existing file of L{POLICY_SEARCH_PATH}, or None."""
    return next((p for p in POLICY_SEARCH_PATH if p.is_file()), None)


class Options(usage.Options):
    """Options of ``twistd dockgate`` and ``dockgate serve``.

    After parsing, ``listeners`` and ``upstream`` hold the parsed endpoint
    specs and ``["policy"]`` the policy path; a bad endpoint string or a
    missing policy file is a usage error, reported before anything binds.
    """

    synopsis = "[options]"
    longdesc = (
        "Run dockgate, the Docker Engine API proxy that parses, decides and audits every "
        "request and forwards the allowed ones to the daemon. "
        "Listeners: unix:/path or unix:path=/path, with options mode=660 (the default; "
        "octal), group=NAME, backlog=N, lockfile=0|1; tcp:PORT or tcp6:PORT, bound to "
        "loopback unless interface=ADDR is given; systemd:domain=UNIX:name=NAME for socket "
        "activation. SIGHUP reloads the policy and reopens the audit log."
    )
    optParameters: ClassVar[list[list[Any]]] = [
        ["upstream", "u", DEFAULT_UPSTREAM,
         "The Docker daemon: unix:/path, unix:path=/path or tcp:host:port."],
        ["policy", "p", None,
         "Policy file (YAML), reloaded on SIGHUP. "
         "Default: /etc/dockgate/policy.yaml if it exists, else the bundled privileged.yaml."],
        ["audit-log", "a", None,
         "Append JSON Lines audit records to this file ('-' for standard output). "
         "Reopened on SIGHUP and SIGUSR1. Default: no audit log."],
        *audit_config.OPTIONS,
        ["connect-timeout", None, _default(ProxySettings, "connect_timeout"),
         "Seconds to connect to the daemon before answering 502.", _positive(float)],
        ["response-timeout", None, _default(ProxySettings, "response_timeout"),
         "Seconds to wait for the daemon's response head before answering 504.",
         _positive(float)],
        ["max-json-body", None, _default(ApiContext, "max_json_body"),
         "Largest JSON request body inspected, in bytes (413 above).", _positive(int)],
        ["max-head-size", None, _default(ProxySettings, "max_head_size"),
         "Largest request head, in bytes (431 above).", _positive(int)],
        ["pool-size", None, _default(ProxySettings, "pool_size"),
         "Idle keep-alive connections to the daemon kept for reuse.", int],
        ["tenants", None, None,
         "Tenants file (YAML): callers map to tenants, each with its own objects, policy "
         "and quotas; reloaded on SIGHUP. Default: no tenancy (one shared view)."],
        ["head-timeout", None, _default(ProxySettings, "head_timeout"),
         "Seconds a client may take to send a request head once begun (408 after).",
         _positive(float)],
        ["idle-timeout", None, _default(ProxySettings, "idle_timeout"),
         "Seconds an idle keep-alive client connection is kept open.", _positive(float)],
        ["max-connections", None, _default(ProxySettings, "max_connections"),
         "Client connections open at once per listener (429 above).", _positive(int)],
        ["max-connections-per-peer", None, _default(ProxySettings, "max_connections_per_peer"),
         "Client connections open at once per caller (429 above).", _positive(int)],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.listeners: list[tuple[str, ListenerSpec]] = []
        self.upstream: UpstreamSpec | None = None

    def opt_listen(self, description: str) -> None:
        """Endpoint to listen on; repeatable. Default: unix:/var/run/dockgate.sock"""
        try:
            self.listeners.append((description, parse_listener(description)))
        except ValueError as e:
            raise usage.UsageError(f"--listen: {e}") from None

    opt_l = opt_listen

    def postOptions(self) -> None:
        """Apply the defaults that depend on other options, and validate."""
        if not self.listeners:
            self.opt_listen(DEFAULT_LISTEN)
        try:
            self.upstream = parse_upstream(self["upstream"])
        except ValueError as e:
            raise usage.UsageError(f"--upstream: {e}") from None
        if self["pool-size"] < 0:
            raise usage.UsageError("--pool-size must not be negative")
        audit_problems = audit_config.check_options(self)
        if audit_problems:
            raise usage.UsageError("; ".join(audit_problems))
        if self["policy"] is None:
            found = default_policy_path()
            if found is None:
                raise usage.UsageError(
                    "no policy file found at " + ", ".join(map(str, POLICY_SEARCH_PATH))
                    + "; give one with --policy"
                )
            self["policy"] = str(found)
        elif not Path(self["policy"]).is_file():
            raise usage.UsageError(f"--policy: {self['policy']} is not a file")
        if self["tenants"] is not None and not Path(self["tenants"]).is_file():
            raise usage.UsageError(f"--tenants: {self['tenants']} is not a file")

    def settings_fields(self) -> Iterator[tuple[str, Any]]:
        """The ``ProxySettings`` fields set from options, as (field, value)."""
        yield "connect_timeout", float(self["connect-timeout"])
        yield "response_timeout", float(self["response-timeout"])
        yield "max_head_size", int(self["max-head-size"])
        yield "pool_size", int(self["pool-size"])
        yield "head_timeout", float(self["head-timeout"])
        yield "idle_timeout", float(self["idle-timeout"])
        yield "max_connections", int(self["max-connections"])
        yield "max_connections_per_peer", int(self["max-connections-per-peer"])
        yield "api", ApiContext(max_json_body=int(self["max-json-body"]))


class OnSignal(Service):
    """Runs ``reload`` in the reactor thread whenever the process gets ``signum``.

    Only while running: the previous disposition is restored on stop,
    so a stopped service leaves no handler behind (tests start and stop many).
    The handler itself only schedules the work, because a signal can arrive
    in the middle of anything, including an audit write.
    """

    signum: int = signal.SIGHUP

    def __init__(self, reload: Callable[[], None], reactor: Any) -> None:
        self._reload = reload
        self._reactor = reactor
        self._previous: Any = None

    def startService(self) -> None:
        """Install the signal handler."""
        super().startService()  # type: ignore[no-untyped-call]
        self._previous = signal.signal(self.signum, self._on_hangup)

    def stopService(self) -> None:
        """Restore the previous handler."""
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None
        super().stopService()  # type: ignore[no-untyped-call]

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self._reload)


class ReloadOnHangup(OnSignal):
    """SIGHUP: reload the policy and reopen the audit log (see ``reload_everything``)."""

    signum = signal.SIGHUP


class ReopenOnUsr1(OnSignal):
    """SIGUSR1 reopens the audit log only (logrotate's usual signal for log files),
    without the policy reload SIGHUP also does."""

    signum = signal.SIGUSR1


class AuditUpkeep(Service):
    """Calls the audit sink's ``tick`` every second: fsync under ``--audit-fsync
    interval`` and timed checkpoints and rotation happen even when no request comes."""

    def __init__(self, audit: JsonLinesAudit | NullAudit, reactor: Any) -> None:
        self._audit = audit
        self._reactor = reactor
        self._call: Any = None

    def startService(self) -> None:
        """Start ticking."""
        super().startService()  # type: ignore[no-untyped-call]
        self._call = self._reactor.callLater(1.0, self._tick)

    def stopService(self) -> None:
        """Stop ticking and close the audit log (sealing it when keyed)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        try:
            self._audit.close()
        except OSError:
            log.failure("Could not close the audit log cleanly")
        super().stopService()  # type: ignore[no-untyped-call]

    def _tick(self) -> None:
        self._audit.tick()
        self._call = self._reactor.callLater(1.0, self._tick)


class ProxyService(MultiService):
    """All of dockgate's listeners, started together.

    If one listener cannot bind, the ones already bound are stopped again
    before the error propagates, so a failed start leaves no half-running
    proxy (and no socket file) behind.
    """

    def __init__(self, summary: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.summary = summary

    def startService(self) -> None:
        """Start every child and say what is running."""
        super().startService()  # type: ignore[no-untyped-call]
        log.info("dockgate {version} {summary}", version=__version__, summary=self.summary)

    def privilegedStartService(self) -> None:
        """Bind every listener, or none."""
        bound: list[Any] = []
        try:
            for child in self:
                child.privilegedStartService()
                bound.append(child)
        except BaseException:
            for child in reversed(bound):
                child.stopService()
            raise


class TenantHolder:
    """The tenant map in force, swapped whole on reload (an invalid file keeps the old one)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.current: TenantMap | None = TenantMap.load(path)

    def reload(self) -> None:
        """Re-read the file; on error keep the map in force and re-raise."""
        self.current = TenantMap.load(self.path)


def reload_everything(
    holder: PolicyHolder,
    audit: JsonLinesAudit | NullAudit,
    tenants: TenantHolder | None = None,
) -> None:
    """What SIGHUP does: reload the policy and tenants, and reopen the audit log.

    A policy that fails to load leaves the one in force untouched; a log that
    cannot be reopened leaves the writer on the old file.  Either way the
    reason is logged and the proxy keeps serving.
    """
    try:
        holder.reload()
    except (PolicyError, OSError) as e:
        log.error("Policy reload from {path} failed; keeping policy {name!r} in force:\n{why}",
                  path=holder.path, name=holder.current.name, why=str(e))
    except Exception:
        log.failure("Policy reload from {path} failed; keeping policy {name!r} in force",
                    path=holder.path, name=holder.current.name)
    else:
        log.info("Policy {name!r} reloaded from {path}", name=holder.current.name,
                 path=holder.path)
    if tenants is not None:
        try:
            tenants.reload()
        except (PolicyError, OSError) as e:
            log.error("Tenants reload from {path} failed; keeping the old map:\n{why}",
                      path=tenants.path, why=str(e))
        else:
            log.info("Tenants reloaded from {path}", path=tenants.path)
    try:
        audit.reopen()
    except OSError:
        log.failure("Could not reopen the audit log; still writing to the old file")


def _reopen_audit(audit: JsonLinesAudit | NullAudit) -> None:
    """What SIGUSR1 does: reopen the audit log, keeping the old file on failure."""
    try:
        audit.reopen()
    except OSError:
        log.failure("Could not reopen the audit log; still writing to the old file")
    else:
        log.info("Audit log reopened")


def makeService(options: Options, reactor: Any = None) -> MultiService:
    """Build the dockgate service from parsed options (see L{IServiceMaker.makeService}).

    Args:
        options: parsed L{Options}.
        reactor: the reactor to use; the global one when None (tests pass a fake).
    """
    if reactor is None:
        # Imported here: importing the reactor installs it, and twistd must be
        # free to install the one chosen with --reactor first.
        from twisted.internet import reactor as global_reactor  # noqa: PLC0415

        reactor = global_reactor
    assert options.upstream is not None, "parseOptions() was not called"
    holder = PolicyHolder(options["policy"])
    tenants = TenantHolder(options["tenants"]) if options["tenants"] else None
    audit = audit_config.build_audit(options)
    fields = dict(options.settings_fields())
    settings = ProxySettings(
        upstream=upstream_endpoint(reactor, options.upstream, fields["connect_timeout"]),
        policy=lambda: holder.current,
        audit=audit,
        tenants=(lambda: tenants.current) if tenants is not None else None,
        **fields,
    )
    root = ProxyService(
        f"listening on {', '.join(name for name, _ in options.listeners)}, "
        f"forwarding to {options['upstream']}, policy {holder.current.name!r} "
        f"from {options['policy']}, audit log {options['audit-log'] or 'off'}"
    )
    for name, spec in options.listeners:
        listener = StreamServerEndpointService(  # type: ignore[no-untyped-call]
            listener_endpoint(reactor, spec), build_proxy_factory(settings, name, reactor)
        )
        # Fail the start when a listener cannot bind, instead of logging and
        # running without it (what strports.service also asks for).
        listener._raiseSynchronously = True
        listener.setName(name)  # type: ignore[no-untyped-call]
        root.addService(listener)  # type: ignore[no-untyped-call]
    hangup = ReloadOnHangup(lambda: reload_everything(holder, audit, tenants), reactor)
    root.addService(hangup)  # type: ignore[no-untyped-call]
    root.addService(ReopenOnUsr1(lambda: _reopen_audit(audit), reactor))  # type: ignore[no-untyped-call]
    if options["audit-log"]:
        root.addService(AuditUpkeep(audit, reactor))  # type: ignore[no-untyped-call]
    return root

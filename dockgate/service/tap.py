"""The dockgate service: command-line options and ``makeService``, shared by
``twistd dockgate`` (through the plugin in ``twisted/plugins``) and
``dockgate serve``.

One ``Options`` class defines every option once; ``makeService`` turns parsed
options into a ``MultiService`` holding one ``StreamServerEndpointService``
per ``--listen`` and a small service that reloads the policy and reopens the
audit log on SIGHUP.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import gc
import grp
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar, TextIO

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet import threads
from twisted.logger import Logger
from twisted.python import usage

from dockgate import __version__, fastio
from dockgate.admission.admit import ApiContext
from dockgate.audit import config as audit_config
from dockgate.audit.sink import JsonLinesAudit, NullAudit
from dockgate.policy import PolicyError, PolicyHolder
from dockgate.policy.rules import IMPLICIT_PLAIN_NAMES
from dockgate.proxy.protocol import ProxyServerFactory
from dockgate.proxy.settings import ProxySettings
from dockgate.proxy.workers import DEFAULT_WORKERS, MAX_WORKERS, AdmissionWorkers
from dockgate.service import compat
from dockgate.service.admin import READY_TIMEOUT, admin_site, parse_admin_listener
from dockgate.service.config import Config, load_config
from dockgate.service.listeners import (
    OPEN_TCP,
    CannotListen,
    DelegatedListenerSpec,
    ListenerSpec,
    UnixListenerSpec,
    UpstreamSpec,
    describe_bind_error,
    listener_endpoint,
    parse_listener,
    parse_upstream,
    plain_tcp_loopback,
    upstream_endpoint,
)
from dockgate.service.metrics import Metrics, MetricsAudit
from dockgate.service.oplog import AccessLog, LogFormat
from dockgate.tenancy import TenantMap

__all__ = ["DEFAULT_LISTEN", "DEFAULT_UPSTREAM", "Options", "ReloadOnHangup", "makeService"]

log = Logger()

AuditLog = JsonLinesAudit | NullAudit | MetricsAudit
"""The audit sinks ``makeService`` builds (the metrics wrapper when --admin-listen is set)."""

DEFAULT_LISTEN = "unix:/var/run/dockgate.sock"
DEFAULT_UPSTREAM = "unix:/var/run/docker.sock"
POLICY_SEARCH_PATH: tuple[Path, ...] = (
    Path("/etc/dockgate/policy.yaml"),
    Path(__file__).parents[1] / "policies" / "privileged.yaml",
    Path(__file__).parents[2] / "policies" / "privileged.yaml",
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
        "loopback unless interface=ADDR is given (another interface needs --insecure-listen); "
        "tls:PORT:cert=FILE:key=FILE:ca=FILE for mutual TLS (client certificates required, "
        "loopback unless interface=ADDR is given); systemd:domain=UNIX:name=NAME for socket "
        "activation. SIGHUP reloads the policy and reopens the audit log. "
        "Each finished request is logged on standard error (--access-log off to stop)."
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
         "Seconds to wait for the daemon's response head before answering 504, and "
         "for each of dockgate's own questions to it (ownership, quotas).",
         _positive(float)],
        ["max-json-body", None, _default(ApiContext, "max_json_body"),
         "Largest JSON request body inspected, in bytes (413 above).", _positive(int)],
        ["admission-workers", None, DEFAULT_WORKERS,
         "Worker processes that check JSON bodies over 16 KB off the event loop (started "
         "with the first such body); 0 checks them in the event loop, a step at a time.",
         int],
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
        ["config", None, None,
         "Config file (YAML) with the settings of these options; options given on the "
         "command line win. Re-read on SIGHUP for policy, tenants and audit policy."],
        ["admin-listen", None, None,
         "Admin endpoint for /metrics, /healthz and /readyz: unix:/path, or tcp:PORT on "
         "loopback. Default: off."],
        ["access-log", None, "on",
         "One line per finished request on the operational log (method, path, caller, "
         "decision, rule, status, duration): on|off."],
    ]
    optFlags: ClassVar[list[list[Any]]] = [
        ["compat-env", None,
         "Run from docker-socket-proxy variables (CONTAINERS=1, POST=0, ...): the policy is "
         "generated from them, and dockgate listens on DOCKGATE_LISTEN, else tcp:2375 "
         "(every interface inside a container, loopback on a host)."],
        ["insecure-listen", None,
         "Allow a plain tcp:/tcp6: listener on an interface other than loopback. Anyone who "
         "can reach it drives the Docker daemon unauthenticated; prefer tls: or a unix socket."],
        ["no-fast-io", None,
         "Use Twisted's stock socket transports: no write-through sends and no splice(2) "
         "for attach/exec sessions (slower; to rule them out when chasing a problem). "
         "Without it they are on where a start-up probe finds Twisted as expected."],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.listeners: list[tuple[str, ListenerSpec]] = []
        self.upstream: UpstreamSpec | None = None
        self.admin: ListenerSpec | None = None
        self.config: Config | None = None
        self.from_config: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.access_stream: tuple[TextIO | None, LogFormat] = (None, "text")
        """Where ``dockgate serve`` writes access lines (None: through twisted.logger)."""
        """Things the operator should hear about at startup (logged once running)."""
        self._compat_listener: str | None = None

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Read ``--config`` first, so its values are defaults the command line overrides."""
        args = list(options) if options is not None else sys.argv[1:]
        path = _config_argument(args)
        if path is not None:
            try:
                self.config = load_config(path)
            except PolicyError as e:
                raise usage.UsageError(f"--config:\n{e}") from None
            for name, value in self.config.options.items():
                if name in self:
                    self[name] = value
                    self.from_config[name] = value
        super().parseOptions(args)  # type: ignore[no-untyped-call]

    def opt_listen(self, description: str) -> None:
        """Endpoint to listen on; repeatable: unix:/path[:mode=660][:group=NAME],
        tcp:PORT (loopback), tls:PORT:cert=FILE:key=FILE:ca=FILE, or
        systemd:domain=UNIX:name=NAME. Default: unix:/var/run/dockgate.sock"""
        try:
            self.listeners.append((description, parse_listener(description)))
        except ValueError as e:
            raise usage.UsageError(f"--listen: {e}") from None

    opt_l = opt_listen

    def postOptions(self) -> None:
        """Apply the defaults that depend on other options, and validate."""
        if self["compat-env"]:
            self._apply_compat_env()
        if not self.listeners and self.config is not None:
            for text in self.config.listeners:
                self.opt_listen(text)
        if not self.listeners:
            self.opt_listen(DEFAULT_LISTEN)
        if self["admin-listen"]:
            try:
                self.admin = parse_admin_listener(self["admin-listen"])
            except ValueError as e:
                raise usage.UsageError(f"--admin-listen: {e}") from None
        try:
            self.upstream = parse_upstream(self["upstream"])
        except ValueError as e:
            raise usage.UsageError(f"--upstream: {e}") from None
        if self["pool-size"] < 0:
            raise usage.UsageError("--pool-size must not be negative")
        if not 0 <= self["admission-workers"] <= MAX_WORKERS:
            raise usage.UsageError(
                f"--admission-workers must be 0 (check large bodies in the event loop) to "
                f"{MAX_WORKERS}; {self['admission-workers']} is not")
        if self["access-log"] not in ("on", "off"):
            raise usage.UsageError("--access-log must be on or off")
        for name, spec in self.listeners:
            self._check_listener(name, spec)
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

    def _apply_compat_env(self) -> None:
        """``--compat-env``: a policy, listener and upstream from docker-socket-proxy's variables.

        The generated policy is written to a file so SIGHUP can re-read it as
        it re-reads any policy; an explicit ``--policy`` still wins.
        """
        env = os.environ
        if self["policy"] is None:
            self["policy"] = _write_compat_policy(compat.policy_yaml(env))
        if not self.listeners:
            self._compat_listener = compat.default_listen(env)
            self.opt_listen(self._compat_listener)
        self.warnings.extend(f"--compat-env: {w}" for w in compat.unknown_variables(env))
        if self["upstream"] == DEFAULT_UPSTREAM and env.get("SOCKET_PATH"):
            self["upstream"] = f"unix:{env['SOCKET_PATH']}"

    def _check_listener(self, name: str, spec: ListenerSpec) -> None:
        """Refuse what cannot work or should not run unasked, before anything is bound.

        A unix socket's group must exist.  A plain TCP listener off loopback
        is an unauthenticated Docker API for the network; it needs
        ``--insecure-listen`` (the docker-socket-proxy default inside a
        container, chosen by ``--compat-env`` itself, is allowed with a warning).
        """
        if isinstance(spec, UnixListenerSpec) and spec.group and not spec.group.isdigit():
            try:
                grp.getgrnam(spec.group)
            except KeyError:
                raise usage.UsageError(
                    f"--listen {name}: no such group {spec.group!r}; create it or name "
                    "an existing group (or its number)") from None
        if not isinstance(spec, DelegatedListenerSpec) or plain_tcp_loopback(spec) is not False:
            return
        if self["insecure-listen"]:
            self.warnings.append(f"--listen {name}: plain TCP off loopback (--insecure-listen): "
                                 "anyone who can reach it controls the Docker daemon")
        elif name == self._compat_listener:
            self.warnings.append(f"--compat-env listens on {name}, as docker-socket-proxy "
                                 "did: keep that port on a private network")
        else:
            raise usage.UsageError(
                f"--listen {name}: {OPEN_TCP}, or add --insecure-listen if that is what you mean")

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


def _config_argument(args: list[str]) -> str | None:
    """The value of ``--config`` in ``args`` (last one wins), read before full parsing."""
    found: str | None = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--config" and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith("--config="):
            found = arg.split("=", 1)[1]
    return found


def _write_compat_policy(text: str) -> str:
    """Write the ``--compat-env`` policy to a private temporary file and return its path."""
    fd, path = tempfile.mkstemp(prefix="dockgate-compat-", suffix=".yaml")
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)
    # Removed when the process exits; the policy stays loaded in memory.
    atexit.register(_remove_quietly, path)
    return path


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


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

    def __init__(self, audit: AuditLog, reactor: Any) -> None:
        self._audit = audit
        self._reactor = reactor
        self._call: Any = None

    def startService(self) -> None:
        """Start ticking, and let the log write records nothing waits on once per turn."""
        super().startService()  # type: ignore[no-untyped-call]
        inner = _inner(self._audit)
        if isinstance(inner, JsonLinesAudit):
            at_turn_end = getattr(self._reactor, "at_turn_end", None)
            if at_turn_end is not None:  # dockgate.fastio.reactor: no timer per turn
                inner.defer = at_turn_end
            else:
                inner.defer = lambda flush: self._reactor.callLater(0, flush)
            inner.log.sync_in_background = self._in_thread
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

    def _in_thread(
        self, job: Callable[[], None], done: Callable[[BaseException | None], None]
    ) -> None:
        """Run the audit log's periodic fsync in the reactor's thread pool."""
        result = threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), job)
        result.addCallbacks(lambda _: done(None), lambda failure: done(failure.value))


def startup_summary(options: Options, holder: PolicyHolder) -> str:
    """The startup line: what listens, where it forwards, and what decides and records."""
    audit = options["audit-log"]
    if audit:
        key = f"signed with {options['audit-key']}" if options["audit-key"] else "unsigned"
        rules = options["audit-policy"] or "default: metadata"
        audit_text = (f"audit log {audit} (audit policy {rules}, {key}, "
                      f"fail-{options['audit-failure']})")
    else:
        audit_text = "audit log off"
    return (f"listening on {', '.join(name for name, _ in options.listeners)}, "
            f"forwarding to {options['upstream']}, policy {holder.current.name!r} "
            f"from {options['policy']}, tenants {options['tenants'] or 'off'}, {audit_text}, "
            f"access log {options['access-log']}")


def allows_everything(holder: PolicyHolder) -> bool:
    """Whether the policy in force has no rule but the implicit floor (the privileged
    profile: only driver names that are paths are refused)."""
    return all(r.id == IMPLICIT_PLAIN_NAMES for r in holder.current.rules)


def not_ready(audit: AuditLog) -> list[str]:
    """Why requests cannot be served now, besides the daemon (which /readyz pings).

    A policy is always loaded (startup fails without one, and a failed reload
    keeps the one in force), so only the audit log is asked.
    A fail-closed audit log whose last record could not be written refuses
    every request, so the proxy is not ready until a record is written again.
    """
    problems = []
    inner = _inner(audit)
    failing = inner.recheck() if isinstance(inner, JsonLinesAudit) else None
    if failing and inner.failure == "closed":
        problems.append(f"audit log not writable (fail-closed): {failing}")
    return problems


class EndExchanges(Service):
    """On stop, ends the exchanges still open on every listener, recording each one."""

    def __init__(self, factories: list[Any]) -> None:
        self._factories = factories

    def stopService(self) -> None:
        """Complete and drop every open client connection."""
        for factory in self._factories:
            factory.shut_down()
        super().stopService()  # type: ignore[no-untyped-call]


class StopWorkers(Service):
    """On stop, ends the admission worker processes (``proxy.workers``)."""

    def __init__(self, workers: AdmissionWorkers) -> None:
        self._workers = workers

    def stopService(self) -> None:
        """Kill the workers; exchanges are ended before (``EndExchanges``)."""
        self._workers.stop()
        super().stopService()  # type: ignore[no-untyped-call]


class TurnEnd(Service):
    """Lets the access log write its lines once per reactor turn while the service runs."""

    def __init__(self, access: AccessLog, reactor: Any) -> None:
        self._access = access
        self._reactor = reactor

    def startService(self) -> None:
        """Hand the access log the reactor's end-of-turn hook (or a zero-delay call)."""
        super().startService()  # type: ignore[no-untyped-call]
        at_turn_end = getattr(self._reactor, "at_turn_end", None)
        self._access.defer = at_turn_end or (lambda flush: self._reactor.callLater(0, flush))

    def stopService(self) -> None:
        """Write what is held, and write directly from now on."""
        self._access.defer = None
        self._access.flush()
        super().stopService()  # type: ignore[no-untyped-call]


class ProxyService(MultiService):
    """All of dockgate's listeners, started together.

    If one listener cannot bind, the ones already bound are stopped again
    before the error propagates, so a failed start leaves no half-running
    proxy (and no socket file) behind.
    """

    def __init__(self, summary: str, warnings: list[str] | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.summary = summary
        self.warnings = list(warnings or ())

    def startService(self) -> None:
        """Start every child and say what is running.

        What is loaded by now (route table, compiled schemas, policies) lives
        as long as the process: ``gc.freeze`` keeps the cyclic collector from
        scanning those objects again on every full collection.
        """
        super().startService()  # type: ignore[no-untyped-call]
        gc.collect()
        gc.freeze()
        log.info("dockgate {version} {summary}", version=__version__, summary=self.summary)
        for warning in self.warnings:
            log.warn("{warning}", warning=warning)

    def privilegedStartService(self) -> None:
        """Bind every listener, or none.

        Raises:
            CannotListen: naming the option and the listener that failed, in one line.
        """
        bound: list[Any] = []
        child = None
        try:
            for child in self:
                child.privilegedStartService()
                bound.append(child)
        except Exception as e:
            for started in reversed(bound):
                started.stopService()
            name = getattr(child, "name", None) or "?"
            option = ("--admin-listen " + name.removeprefix("admin:")
                      if name.startswith("admin:") else f"--listen {name}")
            raise CannotListen(f"{option}: {describe_bind_error(e)}") from e


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
    audit: AuditLog,
    tenants: TenantHolder | None = None,
    metrics: Metrics | None = None,
) -> None:
    """What SIGHUP does: reload the policy and tenants, and reopen the audit log.

    A policy that fails to load leaves the one in force untouched; a log that
    cannot be reopened leaves the writer on the old file.  Either way the
    reason is logged and the proxy keeps serving.  With ``metrics``, the
    policy reload is counted as ok or failed.
    """
    ok = False
    try:
        holder.reload()
    except (PolicyError, OSError) as e:
        log.error("Policy reload from {path} failed; keeping policy {name!r} in force:\n{why}",
                  path=holder.path, name=holder.current.name, why=str(e))
    except Exception:
        log.failure("Policy reload from {path} failed; keeping policy {name!r} in force",
                    path=holder.path, name=holder.current.name)
    else:
        ok = True
        log.info("Policy {name!r} reloaded from {path}", name=holder.current.name,
                 path=holder.path)
    if metrics is not None:
        metrics.reloaded(ok)
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


def _inner(audit: AuditLog) -> Any:
    return audit.inner if isinstance(audit, MetricsAudit) else audit


def reread_config(
    options: Options, holder: PolicyHolder, audit: AuditLog, tenants: TenantHolder | None
) -> None:
    """On SIGHUP, read the config file again and point the reloads at changed paths.

    Only settings that came from the config (not overridden on the command
    line) follow the file.  A changed policy, tenants or audit policy path
    applies with this reload; any other change is logged as needing a
    restart.  An invalid file changes nothing.
    """
    if options.config is None:
        return
    try:
        fresh = load_config(options.config.path)
    except PolicyError as e:
        log.error("Config reload from {path} failed; keeping the settings in force:\n{why}",
                  path=options.config.path, why=str(e))
        return
    old = options.config
    for name in sorted(set(old.options) | set(fresh.options)):
        before, after = old.options.get(name), fresh.options.get(name)
        if before == after or options.from_config.get(name, before) != options[name]:
            continue
        if name == "policy" and after is not None:
            holder.path = after
        elif name == "tenants" and tenants is not None and after is not None:
            tenants.path = after
        elif name == "audit-policy" and isinstance(_inner(audit), JsonLinesAudit):
            _inner(audit).policy_path = after
        else:
            log.warn("Config {path}: {name} changed; restart dockgate to apply it",
                     path=old.path, name=name)
            continue
        options[name] = after
        options.from_config[name] = after
        log.info("Config {path}: {name} is now {value}", path=old.path, name=name, value=after)
    if fresh.listeners != old.listeners:
        log.warn("Config {path}: listeners changed; restart dockgate to apply them",
                 path=old.path)
    fresh.listeners = old.listeners
    options.config = fresh


def _reopen_audit(audit: AuditLog) -> None:
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
    metrics = Metrics() if options.admin is not None else None
    audit: AuditLog = audit_config.build_audit(options)
    access = AccessLog(*options.access_stream) if options["access-log"] == "on" else None
    if metrics is not None or access is not None:
        audit = MetricsAudit(audit, metrics, access)
    fields = dict(options.settings_fields())
    workers = (AdmissionWorkers(reactor, options["admission-workers"])
               if options["admission-workers"] else None)
    settings = ProxySettings(
        workers=workers,
        upstream=upstream_endpoint(reactor, options.upstream, fields["connect_timeout"]),
        policy=lambda: holder.current,
        audit=audit,
        tenants=(lambda: tenants.current) if tenants is not None else None,
        **fields,
    )
    if options.upstream.kind == "unix" and not os.path.exists(options.upstream.address):
        options.warnings.append(
            f"--upstream {options['upstream']}: there is no socket at "
            f"{options.upstream.address} (yet); requests are answered 502 until the daemon "
            "listens there")
    if allows_everything(holder) and not options["audit-log"]:
        options.warnings.append(
            f"policy {holder.current.name!r} allows every request and there is no audit log: "
            "nothing limits or records what callers do; consider --policy "
            "policies/baseline.yaml and --audit-log FILE")
    fast_io = fastio.configure(not options["no-fast-io"])
    root = ProxyService(f"{startup_summary(options, holder)}, {fast_io}", options.warnings)
    if access is not None:
        root.addService(TurnEnd(access, reactor))  # type: ignore[no-untyped-call]
    factories = []
    for name, spec in options.listeners:
        factory = ProxyServerFactory(settings, name, reactor)
        factories.append(factory)
        if metrics is not None:
            metrics.add_listener(name, factory)
        listener = StreamServerEndpointService(  # type: ignore[no-untyped-call]
            listener_endpoint(reactor, spec), factory
        )
        # Fail the start when a listener cannot bind, instead of logging and
        # running without it (what strports.service also asks for).
        listener._raiseSynchronously = True
        listener.setName(name)  # type: ignore[no-untyped-call]
        root.addService(listener)  # type: ignore[no-untyped-call]
    if metrics is not None and options.admin is not None:
        ping = upstream_endpoint(reactor, options.upstream, min(READY_TIMEOUT, 2.0))
        admin = StreamServerEndpointService(  # type: ignore[no-untyped-call]
            listener_endpoint(reactor, options.admin),
            admin_site(metrics, ping, reactor, lambda: not_ready(audit)),
        )
        admin._raiseSynchronously = True
        admin.setName("admin:" + options["admin-listen"])  # type: ignore[no-untyped-call]
        root.addService(admin)  # type: ignore[no-untyped-call]
        root.summary += f", admin on {options['admin-listen']}"

    def hangup_reload() -> None:
        reread_config(options, holder, audit, tenants)
        reload_everything(holder, audit, tenants, metrics)

    hangup = ReloadOnHangup(hangup_reload, reactor)
    root.addService(hangup)  # type: ignore[no-untyped-call]
    root.addService(ReopenOnUsr1(lambda: _reopen_audit(audit), reactor))  # type: ignore[no-untyped-call]
    if options["audit-log"]:
        root.addService(AuditUpkeep(audit, reactor))  # type: ignore[no-untyped-call]
    if workers is not None:  # stopped after the exchanges end (their jobs cancelled)
        root.addService(StopWorkers(workers))  # type: ignore[no-untyped-call]
    # Added last, so stopped first: open exchanges are recorded before the log closes.
    root.addService(EndExchanges(factories))  # type: ignore[no-untyped-call]
    return root

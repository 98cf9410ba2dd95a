"""Controls over what dockerd does as root for a client.

dockerd runs in the host's namespaces, so some request values make *it*
act on the host: mount(2) with the client's volume options, connect to the
address a log driver names, speak the plugin protocol to whatever a driver
name resolves to, create host interfaces for a network, raise the OOM
priority of host processes.  Each such dimension is a control here, with a
safe default, and each denial names the field (see docs/policy.md, "What the
daemon does as root for a client").

The closed world of fields (``fields``) catches what no control reads:
every field the daemon reads is classified in ``dockgate.policy.fields``,
and this control refuses unclassified fields and non-empty host-level ones.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dockgate.admission.versions import compare_versions
from dockgate.model import CanonicalRequest
from dockgate.policy import fields as field_table
from dockgate.policy import spelling
from dockgate.policy.controls import Check, DecisionContext, Finding, OptionError
from dockgate.policy.facts import Facts, NetworkFact


def _names(globs: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(spelling.name_pattern(g) for g in globs)


def _any(patterns: Iterable[re.Pattern[str]], value: str) -> bool:
    return any(p.match(value) for p in patterns)


# -- the closed world ------------------------------------------------------------------


def closed_world(cfg: Mapping[str, Any]) -> Check:
    """Unclassified fields and non-empty host-level fields of write operations (and of the
    reads in ``fields.CHECKED_READS``), but a host-level field's harmless spellings."""
    deny_unclassified = cfg.get("unclassified", "deny") == "deny"
    deny_host = cfg.get("host_level", "deny") == "deny"
    allow = frozenset(cfg.get("allow", ()))
    for path in allow:
        if not field_table.known_path(path):
            raise ValueError(f"allow: {path!r} is not a classified field path "
                             "(see dockgate/policy/fields.py)")

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        eid = req.endpoint.id
        if (req.endpoint.method not in field_table.WRITE_METHODS
                and eid not in field_table.CHECKED_READS):
            return []
        out: list[Finding] = []
        for p in field_table.present(eid, req.body, req.query, everything=False):
            if p.kind is None:
                if deny_unclassified:
                    out.append(Finding(p.field, "is not classified by dockgate "
                                                "(unclassified fields are denied)"))
            elif (p.kind == field_table.HOST and deny_host and p.path not in allow
                  and not field_table.empty(p.value) and not field_table.harmless(eid, p)):
                out.append(Finding(p.field, field_table.host_level_reason(eid, p)))
        return out

    return check


# -- plugin names ----------------------------------------------------------------------

_PATHLIKE = re.compile(r"[/\\]|\.\.")


def plain_name(name: str) -> bool:
    """A driver name the daemon cannot resolve to a file: no ``/``, ``\\`` or ``..``.

    dockerd's legacy plugin discovery joins the name into
    ``/run/docker/plugins/<name>.sock`` and ``/etc/docker/plugins/<name>.spec``
    without checking it, so a name with path syntax selects any socket or
    spec file on the host.
    """
    return not _PATHLIKE.search(name)


def _plugin_name_facts(facts: Facts) -> Iterable[tuple[str, Any]]:
    yield from facts.volume_drivers
    yield from facts.plugin_names
    for f, kind, _ in facts.log_configs:
        if kind not in (None, ""):
            yield f + ".Type", kind


def plugin_names(cfg: Mapping[str, Any]) -> Check:
    """Driver names with path syntax are refused unless listed exactly (every policy has this)."""
    allow = frozenset(cfg.get("allow", ()))

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        return [
            Finding(f, f"driver name {name!r} is a path, not a plugin name")
            for f, name in _plugin_name_facts(facts)
            if not (isinstance(name, str) and (plain_name(name) or name in allow))
        ]

    return check


# -- volume driver options ---------------------------------------------------------------

_LOCAL = (None, "", "local")
_LOCAL_KEYS = frozenset({"type", "device", "o", "size"})
TMPFS_SAFE = (
    "size=*", "mode=*", "uid=*", "gid=*", "nr_inodes=*", "nr_blocks=*",
    "ro", "rw", "exec", "noexec", "nosuid", "nodev", "atime", "noatime", "relatime",
    "norelatime", "strictatime", "nostrictatime", "diratime", "nodiratime", "private",
    "rprivate",
)
"""tmpfs options that cannot reach the host: sizes, ownership, and flags that
only narrow (``suid``/``dev`` and propagation words other than private are
left out; so are ``mpol`` and anything unknown)."""


def volume_options(cfg: Mapping[str, Any]) -> Check:
    """Local-driver mount options (dockerd runs mount(2) with them) and other drivers' options.

    ``local_types``: the ``type`` values the local driver may mount; for
    ``tmpfs`` the ``device`` must be ``tmpfs`` and ``o`` may hold only
    ``TMPFS_SAFE`` words.  A type listed other than tmpfs is accepted with
    any options (the operator chose it; ``host_paths`` still judges an
    absolute ``device``).  ``size`` alone is an XFS quota, always allowed.
    ``drivers``: other volume drivers that may receive options.
    """
    types = frozenset(cfg.get("local_types", ()))
    drivers = _names(cfg.get("drivers", ()))
    tmpfs_ok = _names(TMPFS_SAFE)

    def local(opts: Mapping[str, str]) -> str | None:
        extra = sorted(set(opts) - _LOCAL_KEYS)
        if extra:
            return f"local volume option {extra[0]!r} is not one the daemon accepts"
        kind = opts.get("type", "")
        if not kind and not opts.get("device") and not opts.get("o"):
            return None
        if kind not in types:
            return f"local volume type {kind!r} is not allowed (dockerd mounts it as root)"
        if kind != "tmpfs":
            return None
        if opts.get("device", "tmpfs") != "tmpfs":
            return f"tmpfs device {opts.get('device')!r} must be 'tmpfs'"
        bad = [w for w in opts.get("o", "").split(",") if w and not _any(tmpfs_ok, w)]
        return f"tmpfs option {bad[0]!r} is not allowed" if bad else None

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        for m in facts.mounts:
            if not m.driver_options:
                continue
            if m.driver in _LOCAL:
                why = local(m.driver_options)
            elif not _any(drivers, str(m.driver)):
                why = f"options for volume driver {m.driver!r} are not allowed"
            else:
                why = None
            if why is not None:
                out.append(Finding(m.field, why))
        return out

    return check


def tmpfs(cfg: Mapping[str, Any]) -> Check:
    """tmpfs mount options (HostConfig.Tmpfs, Mounts TmpfsOptions) within an allowlist."""
    allowed = _names(cfg.get("options", TMPFS_SAFE))

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        return [
            Finding(f, f"tmpfs option {w!r} is not allowed")
            for f, words in facts.tmpfs
            for w in words
            if w and not _any(allowed, w)
        ]

    return check


# -- log drivers ---------------------------------------------------------------------------

_COMMON = ("mode", "max-buffer-size", "tag", "labels", "labels-regex", "env", "env-regex")
LOG_DRIVERS: dict[str, tuple[str, ...]] = {
    "json-file": (*_COMMON, "max-size", "max-file", "compress"),
    "local": ("mode", "max-buffer-size", "max-size", "max-file", "compress"),
    "none": ("mode", "max-buffer-size"),
    "journald": _COMMON,
    "syslog": (*_COMMON, "syslog-address", "syslog-facility", "syslog-format",
               "syslog-tls-ca-cert", "syslog-tls-cert", "syslog-tls-key",
               "syslog-tls-skip-verify"),
    "gelf": (*_COMMON, "gelf-address", "gelf-compression-type", "gelf-compression-level",
             "gelf-tcp-max-reconnect", "gelf-tcp-reconnect-delay"),
    "fluentd": (*_COMMON, "fluentd-address", "fluentd-async", "fluentd-async-connect",
                "fluentd-async-reconnect-interval", "fluentd-buffer-limit",
                "fluentd-max-retries", "fluentd-request-ack", "fluentd-retry-wait",
                "fluentd-sub-second-precision", "fluentd-write-timeout"),
    "splunk": (*_COMMON, "splunk-url", "splunk-token", "splunk-source", "splunk-sourcetype",
               "splunk-index", "splunk-capath", "splunk-caname", "splunk-insecureskipverify",
               "splunk-format", "splunk-verify-connection", "splunk-gzip", "splunk-gzip-level",
               "splunk-index-acknowledgment"),
    "awslogs": ("mode", "max-buffer-size", "tag", "awslogs-region", "awslogs-endpoint",
                "awslogs-group", "awslogs-stream", "awslogs-create-group",
                "awslogs-create-stream", "awslogs-datetime-format",
                "awslogs-multiline-pattern", "awslogs-credentials-endpoint",
                "awslogs-force-flush-interval-seconds", "awslogs-max-buffered-events",
                "awslogs-format"),
    "gcplogs": (*_COMMON, "gcp-project", "gcp-log-cmd", "gcp-meta-name", "gcp-meta-zone",
                "gcp-meta-id"),
}
"""The built-in log drivers and the options each reads (moby daemon/logger/*).

Drivers past ``json-file``, ``local``, ``none`` write where the client says
(journald fields that impersonate host services) or make dockerd connect to
an address, read TLS files or use the host's cloud identity."""


def log_drivers(cfg: Mapping[str, Any]) -> Check:
    """Log drivers by allowlist, each with only the options it is known to read.

    ``allow`` names built-in drivers (an unknown name is a policy error, so a
    typo cannot allow nothing silently); ``plugins`` names installed logging
    plugins, whose options are not checked.  An empty Type is the daemon's
    configured default driver.
    """
    allow = list(cfg.get("allow", ("json-file", "local", "none")))
    unknown = [d for d in allow if d not in LOG_DRIVERS]
    if unknown:
        raise ValueError(f"allow: unknown log driver {unknown[0]!r} "
                         f"(built-in: {', '.join(LOG_DRIVERS)}; list plugins under plugins)")
    plugins = frozenset(cfg.get("plugins", ()))
    options = {d: frozenset(LOG_DRIVERS[d]) for d in allow}

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        for f, kind, conf in facts.log_configs:
            name = kind if isinstance(kind, str) else ""
            if conf is not None and not isinstance(conf, Mapping):
                out.append(Finding(f + ".Config", "must be an object"))
                continue
            if name in plugins:
                continue
            if name and name not in options:
                out.append(Finding(f + ".Type", f"log driver {name!r} is not allowed"))
                continue
            keys = options.get(name, frozenset(_COMMON))
            for key in sorted(conf or {}):
                if key not in keys:
                    out.append(Finding(f"{f}.Config[{key}]",
                                       f"log option {key!r} is not allowed for driver "
                                       f"{name or '(default)'!r}"))
        return out

    return check


# -- networks ------------------------------------------------------------------------------

NETWORK_OPTIONS_SAFE = (
    "com.docker.network.driver.mtu",
    "com.docker.network.container_iface_prefix",
    "com.docker.network.bridge.enable_icc",
    "com.docker.network.enable_ipv4",
)
"""Network options that do not name or reconfigure host interfaces."""


def _truthy(v: Any) -> bool:
    return v is not None and v is not False and v != ""


INTERNAL_SET = (
    "set to true (a network that is not internal routes its containers through the "
    "host, and dockerd writes NAT rules for its subnet)"
)


def _internal(mode: str) -> Callable[[NetworkFact], Finding | None]:
    """The ``internal`` option: ``allow`` any, ``require`` true, or ``set`` it true.

    ``set`` makes the default explicit (like ``daemon_defaults``): Go clients
    send ``"Internal": false`` whether or not the user asked for it (compose's
    project network, ``docker network create``), so "not asked" and "asked for
    a routed network" cannot be told apart, and refusing would break them.  A
    config-only network is left alone: it creates no interface, and the daemons
    refuse ``Internal`` on it.
    """

    def finding(n: NetworkFact) -> Finding | None:
        if n.internal is True or n.config_only is True or mode == "allow":
            return None
        if mode == "require":
            return Finding("Internal", "must be true")
        return Finding("Internal", INTERNAL_SET, (("Internal",), True))

    return finding


IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


def _allowed_subnets(cfg: Mapping[str, Any]) -> tuple[IPNet, ...] | None:
    """The ``subnets`` option as networks (None: not given, any address goes)."""
    if "subnets" not in cfg:
        return None
    out = []
    for i, raw in enumerate(cfg["subnets"]):
        try:
            net = ipaddress.ip_network(raw, strict=False)
        except ValueError:
            raise OptionError(("subnets", i), f"{raw!r} is not a network in CIDR notation "
                                              "(like 10.200.0.0/16)") from None
        if str(net) != raw:
            raise OptionError(("subnets", i), f"{raw!r} is not a network address "
                                              f"(write {str(net)!r})")
        out.append(net)
    return tuple(out)


_IPAM_NETS = ("Subnet", "IPRange")
_IPAM_ADDRS = ("Gateway",)


def _ipam_addresses(config: Any) -> Iterable[tuple[str, Any, bool]]:
    """(field, value, is a network) for every address a client chose in ``IPAM.Config``."""
    if config is None:
        return
    if not isinstance(config, list):
        yield "IPAM.Config", config, True
        return
    for i, entry in enumerate(config):
        where = f"IPAM.Config[{i}]"
        if not isinstance(entry, Mapping):
            yield where, entry, True
            continue
        for key in (*_IPAM_NETS, *_IPAM_ADDRS):
            if entry.get(key) not in (None, ""):
                yield f"{where}.{key}", entry[key], key in _IPAM_NETS
        aux = entry.get("AuxiliaryAddresses")
        if isinstance(aux, Mapping):
            for name, addr in aux.items():
                yield f"{where}.AuxiliaryAddresses[{name}]", addr, False
        elif aux not in (None, ""):
            yield f"{where}.AuxiliaryAddresses", aux, False


def _subnets(allowed: tuple[IPNet, ...] | None) -> Callable[[NetworkFact], list[Finding]]:
    """The ``subnets`` option: every subnet, range, gateway and auxiliary address a client
    chose lies in a listed network.

    dockerd puts a client-chosen subnet on the host as it is: the bridge's route
    to it is more specific than (or as specific as) the host's own, so the
    host's traffic to that range, its LAN, DNS server or metadata service
    included, goes into the network instead.  The daemon's own allocation (no
    ``IPAM.Config``) skips ranges the host routes; ``[]`` leaves every choice to it.
    """

    def findings(n: NetworkFact) -> list[Finding]:
        if allowed is None:
            return []
        out = []
        for where, raw, is_net in _ipam_addresses(n.ipam_config):
            try:
                net = ipaddress.ip_network(raw, strict=False) if isinstance(raw, str) else None
            except ValueError:
                net = None
            if net is None or (not is_net and "/" in str(raw)):
                what = "network" if is_net else "address"
                out.append(Finding(where, f"{raw!r} is not an IP {what}"))
            elif not any(net.version == a.version and net.subnet_of(a)  # type: ignore[arg-type]
                         for a in allowed):
                out.append(Finding(where, f"{raw} is not in the allowed subnets (the host's "
                                          "routes to it would go into the network; leave the "
                                          "subnet out and the daemon picks a free one)"))
        return out

    return findings


def networks(cfg: Mapping[str, Any]) -> Check:
    """POST /networks/create: drivers, IPAM drivers and option keys by allowlist.

    dockerd creates (or adopts) host bridges, VLAN sub-interfaces and
    macvlan/ipvlan children from these, writes host firewall rules and
    sysctls, and sets the host-side gateway address.  ``options`` and
    ``ipam_options`` are globs over option keys; ``bridge.name`` (reusing a
    host bridge), ``parent`` (a host NIC), ``host_binding_ipv4``,
    ``gateway_mode_*`` and the like are host-level and stay out of the
    defaults.  ``internal`` (``allow``, ``require``, ``set``): see ``_internal``;
    ``subnets`` (CIDR networks): see ``_subnets``.
    """
    drivers = _names(cfg.get("drivers", ("bridge",)))
    ipam = _names(cfg.get("ipam_drivers", ("default",)))
    opts = _names(cfg.get("options", NETWORK_OPTIONS_SAFE))
    ipam_opts = _names(cfg.get("ipam_options", ()))
    internal = _internal(str(cfg.get("internal", "allow")))
    subnets = _subnets(_allowed_subnets(cfg))
    ingress_ok = bool(cfg.get("allow_ingress", False))
    config_from_ok = bool(cfg.get("allow_config_from", False))
    ipv6_ok = bool(cfg.get("allow_ipv6", True))
    scopes = frozenset(cfg.get("scopes", ("", "local")))

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        n = facts.network
        if n is None:
            return []
        out: list[Finding] = []
        driver = n.driver if isinstance(n.driver, str) and n.driver else "bridge"
        if not _any(drivers, driver):
            out.append(Finding("Driver", f"network driver {driver!r} is not allowed"))
        ipam_driver = n.ipam_driver if isinstance(n.ipam_driver, str) and n.ipam_driver else (
            "default")
        if not _any(ipam, ipam_driver):
            out.append(Finding("IPAM.Driver", f"IPAM driver {ipam_driver!r} is not allowed"))
        out.extend(Finding(f"Options[{k}]", "is a network option that is not allowed")
                   for k in n.options if not _any(opts, str(k)))
        out.extend(Finding(f"IPAM.Options[{k}]", "is an IPAM option that is not allowed")
                   for k in n.ipam_options if not _any(ipam_opts, str(k)))
        out.extend(subnets(n))
        if (made_internal := internal(n)) is not None:
            out.append(made_internal)
        if _truthy(n.ingress) and not ingress_ok:
            out.append(Finding("Ingress", "must not be true"))
        if _truthy(n.config_from) and not config_from_ok:
            out.append(Finding("ConfigFrom", "copies another network's options, which are "
                                             "not checked here"))
        if n.enable_ipv6 is True and not ipv6_ok:
            out.append(Finding("EnableIPv6", "must not be true"))
        scope = n.scope if isinstance(n.scope, str) else ""
        if scope not in scopes:
            out.append(Finding("Scope", f"scope {scope!r} is not allowed"))
        return out

    return check


# -- resource escapes ------------------------------------------------------------------------


def oom_score_adj(cfg: Mapping[str, Any]) -> Check:
    """OomScoreAdj at least ``min`` (default 0): below 0 the host's OOM killer picks host
    processes before the container."""
    low = int(cfg.get("min", 0))

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        for f, v in facts.oom_score_adj:
            if isinstance(v, bool) or not isinstance(v, int):
                out.append(Finding(f, "must be an integer"))
            elif v < low:
                out.append(Finding(f, f"{v} is below {low} (the host's processes would be "
                                      "killed first)"))
        return out

    return check


ULIMITS = frozenset({
    "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
    "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
})
"""The rlimit names the daemon accepts (go-units)."""


def ulimits(cfg: Mapping[str, Any]) -> Check:
    """Ulimit names within an allowlist: runc sets them as root, hard limits included."""
    allow = frozenset(cfg.get("allow", ()))
    unknown = sorted(allow - ULIMITS)
    if unknown:
        raise ValueError(f"allow: unknown ulimit {unknown[0]!r} "
                         f"(known: {', '.join(sorted(ULIMITS))})")

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        return [Finding(f, f"ulimit {name!r} is not allowed")
                for f, name in facts.ulimits if name not in allow]

    return check


BUILDERS: dict[str, Callable[[Mapping[str, Any]], Check]] = {
    "fields": closed_world,
    "plugin_names": plugin_names,
    "volume_options": volume_options,
    "tmpfs": tmpfs,
    "log_drivers": log_drivers,
    "networks": networks,
    "oom_score_adj": oom_score_adj,
    "ulimits": ulimits,
}


# -- daemon defaults made explicit -------------------------------------------------------------

_IPC_SINCE = "1.40"
"""From API 1.40 an empty IpcMode is the daemon's configured default (private unless
the operator chose otherwise); below, the router makes it ``shareable``."""

_CGROUPNS_SINCE = "1.41"
"""CgroupnsMode is read from API 1.41 on; below it the daemons force ``host`` on
cgroup v1 hosts when it is empty (moby postContainersCreate)."""


def _older(version: str | None, than: str) -> bool:
    """Whether the request's API version is older than ``than`` (no prefix: the daemon's
    own, at least 1.41 for every engine dockgate supports)."""
    return version is not None and compare_versions(version, than) < 0


def needs_daemon_facts(req: CanonicalRequest) -> bool:
    """Whether ``daemon_defaults`` needs ``/info`` to decide ``req``: a create at an API
    version where dockgate cannot set the cgroup namespace itself."""
    if req.endpoint.id != "container.create" or not _older(req.version, _CGROUPNS_SINCE):
        return False
    hc = req.body.get("HostConfig") if isinstance(req.body, Mapping) else None
    return not (isinstance(hc, Mapping) and hc.get("CgroupnsMode"))


def daemon_defaults(cfg: Mapping[str, Any]) -> Check:
    """Fields whose omission leaves a host-level daemon default: set the safe value, or deny.

    ``cgroupns: private``: an empty ``HostConfig.CgroupnsMode`` means the
    daemon's default, which is ``host`` on cgroup v1 hosts (and forced to
    ``host`` on v1 for API < 1.41).  On API ≥ 1.41 dockgate sets ``private``
    in the forwarded body; below, it allows the create only when ``/info``
    shows cgroup v2 with a private default, and denies otherwise.
    ``ipc: private``: an empty ``HostConfig.IpcMode`` is ``shareable`` for
    API < 1.40 (dockerd mounts a tmpfs on the host for it); there dockgate
    sets ``private``.  Each set is recorded in the audit record (``set``).
    """
    cgroupns = cfg.get("cgroupns")
    ipc = cfg.get("ipc")

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        if req.endpoint.id != "container.create" or not isinstance(req.body, Mapping):
            return []
        hc = req.body.get("HostConfig")
        hc = hc if isinstance(hc, Mapping) else {}
        out: list[Finding] = []
        if cgroupns == "private" and not hc.get("CgroupnsMode"):
            where = "HostConfig.CgroupnsMode"
            if not _older(req.version, _CGROUPNS_SINCE):
                out.append(Finding(where, "set to 'private' (the daemon's default may be the "
                                          "host's cgroup namespace)",
                                   (("HostConfig", "CgroupnsMode"), "private")))
            elif ctx.daemon is None:
                out.append(Finding(where, "is empty and the daemon's default is unknown"))
            elif not (ctx.daemon.cgroup_version == "2" and ctx.daemon.cgroupns_private):
                out.append(Finding(where, f"is empty, which means the host's cgroup namespace "
                                          f"at API {req.version} on this daemon (use API 1.41 "
                                          "or later)"))
        if ipc == "private" and not hc.get("IpcMode") and _older(req.version, _IPC_SINCE):
            out.append(Finding("HostConfig.IpcMode", "set to 'private' (empty is 'shareable', "
                                                     "a host tmpfs, before API 1.40)",
                               (("HostConfig", "IpcMode"), "private")))
        return out

    return check


BUILDERS["daemon_defaults"] = daemon_defaults

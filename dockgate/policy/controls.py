"""The controls: each turns its options into a check over ``Facts``.

A control is compiled once, when the policy is loaded (patterns become
regexes, sizes become integers), so a decision costs only the comparisons.
Every check returns findings naming the field and why, in the words a client
will see after ``denied by policy P rule R:``.

Controls fail closed: a value they cannot classify (a mount that does not
parse, a non-boolean ``Privileged``, a malformed port) is a finding, because the
daemon might read it in a way we did not foresee.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dockgate.admission.routes import ENDPOINTS
from dockgate.buildctx.dockerfile import DockerfileFacts
from dockgate.model import CanonicalRequest
from dockgate.policy import hostpaths, redact, seccomp, spelling
from dockgate.policy.facts import Facts
from dockgate.policy.registries import RegistryAllowlist


@dataclass(frozen=True, slots=True)
class Finding:
    """One violation; ``field`` and ``why`` read as one sentence.

    For example ``HostConfig.Privileged`` + ``must not be true``.
    """

    field: str
    why: str
    sets: tuple[tuple[str, ...], Any] | None = None

    @property
    def text(self) -> str:
        """The sentence shown to users."""
        return f"{self.field} {self.why}"


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """Facts the pure core cannot know and the I/O layer may supply.

    Attributes:
        default_user: the user a process runs as when the request's ``User``
            is empty: the image's ``Config.User`` for a create, the container's
            ``Config.User`` for an exec.  None means unknown, which the
            ``user`` control treats as root.
        daemon: what the daemon said of itself in ``GET /info`` (read once),
            or None when not looked up.
        dockerfile: the classic build's Dockerfile, read out of the streamed
            context (``dockgate.buildctx``); None when it was not read.
    """

    default_user: str | None = None
    daemon: DaemonFacts | None = None
    dockerfile: DockerfileFacts | None = None


@dataclass(frozen=True, slots=True)
class DaemonFacts:
    """The daemon's own defaults that decide what an omitted field means.

    Attributes:
        cgroup_version: ``"1"`` or ``"2"`` (``/info`` CgroupVersion; absent
            before API 1.40, taken as ``"1"``).
        cgroupns_private: the daemon's default cgroup namespace mode is
            private (``/info`` SecurityOptions lists ``name=cgroupns``).
        security_options: ``/info`` SecurityOptions as sent.
        runtimes: the names of the configured runtimes.
    """

    cgroup_version: str = "1"
    cgroupns_private: bool = False
    security_options: tuple[str, ...] = ()
    runtimes: tuple[str, ...] = ()

    @classmethod
    def from_info(cls, info: object) -> DaemonFacts:
        """Read the facts out of a ``GET /info`` answer; anything missing is the unsafe case."""
        data = info if isinstance(info, Mapping) else {}
        opts = data.get("SecurityOptions")
        sec = tuple(str(o) for o in opts) if isinstance(opts, list) else ()
        runtimes = data.get("Runtimes")
        return cls(
            cgroup_version=str(data.get("CgroupVersion") or "1"),
            cgroupns_private=any(o == "name=cgroupns" for o in sec),
            security_options=sec,
            runtimes=tuple(runtimes) if isinstance(runtimes, Mapping) else (),
        )


Check = Callable[[Facts, CanonicalRequest, DecisionContext], list[Finding]]


class OptionError(ValueError):
    """A control option that cannot mean what its author wanted (a typo): ``where`` is
    its path below the control (``("allow", 2)``), so the error names its line."""

    def __init__(self, where: tuple[str | int, ...], why: str):
        super().__init__(why)
        self.where = where


def endpoint_globs(cfg: Mapping[str, Any], key: str) -> tuple[re.Pattern[str], ...]:
    """``cfg[key]`` as endpoint-id patterns; a glob that matches no routed endpoint is an
    error (``exec.crate`` would otherwise deny nothing, silently)."""
    out = []
    for i, glob in enumerate(cfg.get(key, ())):
        pattern = spelling.name_pattern(glob)
        if not any(pattern.match(eid) for eid in ENDPOINTS):
            raise OptionError((key, i), f"{glob!r} matches no endpoint id "
                                        "(`dockgate api` lists them)")
        out.append(pattern)
    return tuple(out)


def _path_globs(cfg: Mapping[str, Any], key: str) -> tuple[re.Pattern[str], ...]:
    """``cfg[key]`` as host-path patterns; relative or non-normalised paths are errors."""
    out = []
    for i, glob in enumerate(cfg.get(key, ())):
        if not glob.startswith("/"):
            raise OptionError((key, i), f"{glob!r} is not an absolute path")
        clean = spelling.host_path(glob)
        if clean != glob:
            raise OptionError((key, i), f"{glob!r} is not a normalised path (write {clean!r})")
        out.append(spelling.path_pattern(glob))
    return tuple(out)


def _capability_names(cfg: Mapping[str, Any], key: str) -> list[str]:
    out = []
    for i, raw in enumerate(cfg.get(key, ())):
        cap = spelling.capability(raw)
        if cap != spelling.ALL_CAPS and cap not in spelling.KNOWN_CAPS:
            raise OptionError((key, i), f"{raw!r} is not a Linux capability")
        out.append(cap)
    return out


def _any(patterns: Iterable[re.Pattern[str]], value: str) -> bool:
    return any(p.match(value) for p in patterns)


def _names(globs: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(spelling.name_pattern(g) for g in globs)


def _is_true(v: Any) -> bool:
    """JSON ``true``; any other non-false, non-null value counts too (fail closed)."""
    return v is not None and v is not False


# -- endpoints ------------------------------------------------------------------


def endpoints(cfg: Mapping[str, Any]) -> Check:
    """Allow or deny endpoint ids by glob; ``deny`` wins over ``allow``."""
    allow = endpoint_globs(cfg, "allow") if "allow" in cfg else None
    deny = endpoint_globs(cfg, "deny")

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        eid = req.endpoint.id
        if _any(deny, eid) or (allow is not None and not _any(allow, eid)):
            return [Finding(f"endpoint {eid}", "is not allowed")]
        return []

    return check


# -- privileged, volumes_from, oom_kill_disable -----------------------------------


def _forbidden(
    doc: str, pick: Callable[[Facts], list[tuple[str, Any]]], why: Callable[[Any], str | None]
) -> Callable[[Mapping[str, Any]], Check]:
    """A control with one option, ``allow`` (default false), over one kind of fact."""

    def build(cfg: Mapping[str, Any]) -> Check:
        if cfg.get("allow", False):
            return lambda facts, req, ctx: []

        def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
            return [Finding(f, w) for f, v in pick(facts) if (w := why(v)) is not None]

        return check

    build.__doc__ = doc
    return build


def _true(v: Any) -> str | None:
    return "must not be true" if _is_true(v) else None


privileged = _forbidden(
    "Privileged containers, exec sessions and plugin-runtime tasks.",
    lambda facts: facts.privileged,
    _true,
)
volumes_from = _forbidden(
    "VolumesFrom inherits another container's mounts, which no path check can see.",
    lambda facts: facts.volumes_from,
    lambda v: f"{v!r} must not be used: it inherits another container's mounts",
)
oom_kill_disable = _forbidden(
    "OomKillDisable lets a container exhaust host memory without being killed.",
    lambda facts: facts.oom_kill_disable,
    _true,
)


# -- mounts ---------------------------------------------------------------------

_SHARED = {"shared", "rshared"}


def host_paths(cfg: Mapping[str, Any]) -> Check:
    """Every mount that reaches a host path: allowlist, denylist, read-only, propagation."""
    allow = _path_globs(cfg, "allow")
    roots = tuple(hostpaths.literal_root(spelling.host_path(g)) for g in cfg.get("allow", ()))
    deny = _path_globs(cfg, "deny")
    read_only = bool(cfg.get("read_only", False))
    resolve = bool(cfg.get("resolve_symlinks", False))
    shared_ok = bool(cfg.get("allow_shared_propagation", False))

    def verdict(path: str) -> str | None:
        if _any(deny, path):
            return f"host path {path} is denied"
        if not _any(allow, path):
            return f"host path {path} is not in the allowed host paths"
        # The daemon follows symlinks when it mounts: none below an allowed root.
        return hostpaths.symlink_below(
            path, (r for p, r in zip(allow, roots, strict=True) if p.match(path))
        )

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        for m in facts.mounts:
            if m.kind == "invalid":
                out.append(Finding(m.field, f"is invalid: {m.error}"))
                continue
            if m.host_path is None:
                continue
            why = verdict(m.host_path)
            if why is None and resolve:
                real = os.path.realpath(m.host_path)
                if real != m.host_path:
                    why = verdict(real)
                    if why is not None:
                        why = f"resolves to {why}"
            if why is not None:
                out.append(Finding(m.field, why))
            elif read_only and not m.read_only:
                out.append(Finding(m.field, f"host path {m.host_path} must be mounted read-only"))
            elif m.propagation in _SHARED and not shared_ok:
                out.append(Finding(m.field, f"propagation {m.propagation} is not allowed"))
        return out

    return hostpaths.HostPathCheck(
        check, tuple(cfg.get("allow", ())), bool(cfg.get("accept_writable_roots", False))
    )


def mount_types(cfg: Mapping[str, Any]) -> Check:
    """Which kinds of mount may be used; a volume backed by a host path counts as ``bind``."""
    allowed = set(cfg.get("allow", ()))

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        for m in facts.mounts:
            kind = "bind" if m.host_path is not None else m.kind
            if kind == "invalid":
                out.append(Finding(m.field, f"is invalid: {m.error}"))
            elif kind not in allowed:
                out.append(Finding(m.field, f"mount type {kind} is not allowed"))
        return out

    return check


def volume_drivers(cfg: Mapping[str, Any]) -> Check:
    """Volume drivers are plugins that run on the host; driver options can mount anything."""
    allow = _names(cfg.get("allow", ("local",)))
    opts_ok = bool(cfg.get("allow_driver_options", True))

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out = [
            Finding(f, f"volume driver {d!r} is not allowed")
            for f, d in facts.volume_drivers
            if not _any(allow, d)
        ]
        if not opts_ok:
            out.extend(
                Finding(m.field, "volume driver options are not allowed")
                for m in facts.mounts
                if m.driver_options
            )
        return out

    return check


# -- capabilities ---------------------------------------------------------------


def capabilities(cfg: Mapping[str, Any]) -> Check:
    """CapAdd within an allowlist, CapDrop including required drops (names normalised)."""
    add = set(_capability_names(cfg, "add"))
    drop = _capability_names(cfg, "drop")

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        for f, raw in facts.cap_add:
            c = spelling.capability(raw)
            if c not in add:
                what = "every capability" if c == spelling.ALL_CAPS else c
                out.append(Finding(f, f"adds {what}, which is not in the allowed capabilities"))
        for f, dropped in facts.cap_drop:
            have = {spelling.capability(c) for c in dropped}
            if spelling.ALL_CAPS in have:
                continue
            missing = [c for c in drop if c not in have]
            if missing:
                out.append(Finding(f, f"must drop {', '.join(missing)}"))
        return out

    return check


# -- namespaces -----------------------------------------------------------------

_ALL_NAMESPACES = ("PidMode", "IpcMode", "NetworkMode", "UTSMode", "UsernsMode", "CgroupnsMode")


def namespaces(cfg: Mapping[str, Any]) -> Check:
    """Host namespaces, joining another container's, and namespace paths."""
    fields = set(cfg.get("fields", _ALL_NAMESPACES))
    ok = {
        "host": cfg.get("allow_host", False),
        "container": cfg.get("allow_container", False),
        "path": cfg.get("allow_path", False),
        "private": True,
    }
    say = {
        "host": "shares the host's namespace",
        "container": "joins another container's namespace",
        "path": "names a namespace path",
    }

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        for f, name, v in facts.namespaces:
            if name not in fields:
                continue
            kind = spelling.namespace_kind(v)
            if not ok[kind]:
                out.append(Finding(f, f"{v!r} {say[kind]}"))
        return out

    return check


# -- devices --------------------------------------------------------------------


def devices(cfg: Mapping[str, Any]) -> Check:
    """Host devices, GPU-style device requests and raw device cgroup rules."""
    allow = _path_globs(cfg, "allow")
    requests_ok = bool(cfg.get("allow_requests", False))
    rules_ok = bool(cfg.get("allow_cgroup_rules", False))

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        for f, raw in facts.devices:
            path = raw.split(":", 1)[0] if isinstance(raw, str) else raw
            if not isinstance(path, str) or not path.startswith("/"):
                out.append(Finding(f, f"device {path!r} is invalid"))
            elif not _any(allow, spelling.host_path(path)):
                out.append(Finding(f, f"device {spelling.host_path(path)} is not allowed"))
        if not requests_ok:
            out.extend(
                Finding(f, "device requests are not allowed") for f, _ in facts.device_requests
            )
        if not rules_ok:
            out.extend(
                Finding(f, f"device cgroup rule {r!r} is not allowed")
                for f, r in facts.cgroup_rules
            )
        return out

    return check


# -- security options -----------------------------------------------------------


def security_options(cfg: Mapping[str, Any]) -> Check:
    """seccomp, AppArmor, SELinux labels, writable cgroups, no-new-privileges, in either syntax."""
    unconfined_seccomp = cfg.get("allow_unconfined_seccomp", False)
    custom_seccomp = cfg.get("allow_custom_seccomp", True)
    unconfined_apparmor = cfg.get("allow_unconfined_apparmor", False)
    apparmor = _names(cfg["apparmor_profiles"]) if "apparmor_profiles" in cfg else None
    label_disable = cfg.get("allow_label_disable", False)
    label_user_role = cfg.get("allow_label_user_role", False)
    label_types = _names(cfg["label_types"]) if "label_types" in cfg else None
    writable_cgroups = cfg.get("allow_writable_cgroups", False)
    need_nnp = cfg.get("require_no_new_privileges", False)
    strict = cfg.get("seccomp_strict", False)
    digests = frozenset(cfg.get("seccomp_profiles", ()))

    def one(opt: spelling.SecurityOption) -> str | None:
        key, value = opt.key, opt.value
        low = value.strip().lower()
        if key == "invalid":
            return f"{value!r} is not a security option the daemon accepts"
        if key == "seccomp":
            if low == "unconfined":
                return None if unconfined_seccomp else "disables seccomp (unconfined)"
            if low not in ("", "builtin"):
                if not custom_seccomp:
                    return "sets a custom seccomp profile"
                if strict and seccomp.digest(value) not in digests:
                    why = seccomp.weaker_than_default(value)
                    if why is not None:
                        return f"sets a seccomp profile that {why}"
        elif key == "apparmor":
            if low == "unconfined":
                return None if unconfined_apparmor else "disables AppArmor (unconfined)"
            if apparmor is not None and not _any(apparmor, value):
                return f"AppArmor profile {value!r} is not allowed"
        elif key == "label":
            kind, _, rest = value.partition(":")
            if low == "disable":
                return None if label_disable else "disables SELinux labelling"
            if kind in ("user", "role") and not label_user_role:
                return f"sets the SELinux {kind}"
            if kind == "type" and label_types is not None and not _any(label_types, rest):
                return f"SELinux type {rest!r} is not allowed"
        elif key == "writable-cgroups":
            if value == "true" and not writable_cgroups:
                return "makes the cgroup filesystem writable"
        elif key == "no-new-privileges" and value == "false" and need_nnp:
            return "must not turn no-new-privileges off"
        return None

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        nnp = False
        for f, opt in facts.security:
            why = one(opt)
            if why is not None:
                out.append(Finding(f, why))
            if opt.key == "no-new-privileges":
                nnp = opt.value == "true"
        if need_nnp and facts.workload is not None and not nnp:
            out.append(Finding(facts.workload, "must include no-new-privileges"))
        return out

    return check


DEFAULT_MASKED = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)
DEFAULT_READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def system_paths(cfg: Mapping[str, Any]) -> Check:
    """MaskedPaths/ReadonlyPaths may add to the daemon's defaults but not remove any.

    ``null`` means "the daemon's defaults"; an explicit list replaces them, so
    ``[]`` unmasks ``/proc/kcore`` and friends (the CLI's
    ``systempaths=unconfined``).
    """
    if cfg.get("allow_unmasked", False):
        return lambda facts, req, ctx: []
    required = {"MaskedPaths": DEFAULT_MASKED, "ReadonlyPaths": DEFAULT_READONLY}

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        for f, v in facts.system_paths:
            if not isinstance(v, list):
                out.append(Finding(f, "must be an array"))
                continue
            have = {spelling.host_path(x) for x in v if isinstance(x, str)}
            missing = [p for p in required[f.rsplit(".", 1)[-1]] if p not in have]
            if missing:
                out.append(
                    Finding(f, f"must keep the default paths (missing {', '.join(missing)})")
                )
        out.extend(
            Finding(f, "unmasks the system paths")
            for f, opt in facts.security
            if opt.key == "systempaths" and opt.value.strip().lower() == "unconfined"
        )
        return out

    return check


# -- small allowlists -------------------------------------------------------------


def sysctls(cfg: Mapping[str, Any]) -> Check:
    """Sysctl names within an allowlist; ``net/ipv4/x`` is the same as ``net.ipv4.x`` to runc."""
    allow = _names(cfg.get("allow", ()))

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        for f, key in facts.sysctls:
            name = str(key).replace("/", ".")
            if not _any(allow, name):
                out.append(Finding(f, f"sets {name}, which is not in the allowed sysctls"))
        return out

    return check


def _allowlist(
    what: str, pick: Callable[[Facts], list[tuple[str, Any]]]
) -> Callable[[Mapping[str, Any]], Check]:
    def build(cfg: Mapping[str, Any]) -> Check:
        allow = _names(cfg.get("allow", ()))

        def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
            return [
                Finding(f, f"{what} {v!r} is not allowed")
                for f, v in pick(facts)
                if not (isinstance(v, str) and _any(allow, v))
            ]

        return check

    build.__doc__ = f"{what} within an allowlist of globs."
    return build


cgroup_parent = _allowlist("cgroup parent", lambda facts: facts.cgroup_parent)
runtimes = _allowlist("runtime", lambda facts: facts.runtimes)


def group_add(cfg: Mapping[str, Any]) -> Check:
    """Supplementary groups: never root unless allowed; an allowlist.

    The daemon looks each entry up in the container's ``/etc/group`` by name
    *or* number first (``GetAdditionalGroups``: a group named ``2000`` with gid
    0 matches ``2000``) and reads it as a number only when nothing matches.
    That file is the image's, and the container's own writes to it count at
    the next start or exec, so without ``allow_root`` no entry is safe: every
    one is refused, the root spellings (``0``, ``00``, ``root``) by name.
    """
    allow = _names(cfg.get("allow", ("*",)))
    root_ok = cfg.get("allow_root", False)

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        for f, g in facts.group_add:
            s = str(g)
            if not root_ok and spelling.UserSpec("x", s).root_group:
                out.append(Finding(f, f"{s!r} adds the root group"))
            elif not root_ok:
                out.append(Finding(f, f"{s!r} is looked up by name in the container's "
                                      "/etc/group first, which may map it to the root group"))
            elif not _any(allow, s):
                out.append(Finding(f, f"group {s!r} is not allowed"))
        return out

    return check


# -- ports ----------------------------------------------------------------------


def ports(cfg: Mapping[str, Any]) -> Check:
    """Published host ports within allowed ranges and on allowed host addresses."""
    ranges = [spelling.port_range(r) for r in cfg.get("host_ports", ("0-65535",))]
    ips = _names(cfg["host_ips"]) if "host_ips" in cfg else None
    ephemeral_ok = cfg.get("allow_ephemeral", True)
    publish_all_ok = cfg.get("allow_publish_all", False)

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        for f, ip, port in facts.ports:
            addr = ip if isinstance(ip, str) and ip.strip() else "0.0.0.0"  # noqa: S104
            if ips is not None and not _any(ips, addr.strip()):
                out.append(Finding(f, f"host address {addr} is not allowed"))
                continue
            if port in (None, "", 0, "0"):
                if not ephemeral_ok:
                    out.append(Finding(f, "an ephemeral host port is not allowed"))
                continue
            try:
                lo, hi = spelling.port_range(port)
            except ValueError:
                out.append(Finding(f, f"host port {port!r} is invalid"))
                continue
            if not any(a <= lo and hi <= b for a, b in ranges):
                out.append(Finding(f, f"host port {port} is not in the allowed ranges"))
        if not publish_all_ok:
            out.extend(Finding(f, "must not be true") for f, v in facts.publish_all if _is_true(v))
        return out

    return check


# -- user -----------------------------------------------------------------------


def user(cfg: Mapping[str, Any]) -> Check:
    """Processes must not run as root, in any spelling; an empty user is the default user.

    With no ``DecisionContext.default_user`` the default is unknown and is
    taken to be root: most images run as root, and guessing otherwise would
    let ``User: ""`` through.
    """
    non_root = cfg.get("non_root", True)
    numeric = cfg.get("require_numeric", False)
    root_group_ok = cfg.get("allow_root_group", True)

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        for f, raw in facts.users:
            if raw is not None and not isinstance(raw, str):
                out.append(Finding(f, "must be a string"))
                continue
            text = raw or ""
            spec = spelling.user_spec(raw)
            shown = repr(text)
            if spec is None:
                text = ctx.default_user or ""
                spec = spelling.user_spec(ctx.default_user)
                if spec is None:
                    if non_root or numeric:
                        known = ctx.default_user is not None
                        out.append(
                            Finding(
                                f,
                                "is empty and the default user is "
                                + ("root" if known else "unknown (taken as root)"),
                            )
                        )
                    continue
                shown = f"{shown} (default {ctx.default_user!r})"
            if non_root and spec.is_root:
                out.append(Finding(f, f"{shown} runs as root"))
            elif numeric and (spec.uid is None or spec.uid < 0):
                out.append(Finding(f, f"{shown} must be a numeric non-root uid"))
            elif not root_group_ok and spec.root_group:
                out.append(Finding(f, f"{shown} runs with the root group"))
            elif not root_group_ok and spec.group is not None and spec.gid is None:
                # A group name is looked up in the container's /etc/group, which
                # the image (and the container itself) writes: any name may be gid 0.
                out.append(Finding(f, f"{shown} names its group by name, which the "
                                      "container's /etc/group may map to the root group"))
            elif numeric and not spec.canonical:
                out.append(Finding(f, f"{shown} must be written uid:gid in plain decimal "
                                      "(the daemon reads other spellings differently)"))
            elif numeric and spelling.user_has_extra_parts(text):
                out.append(Finding(f, f"{shown} must be written uid:gid (engines read what "
                                      "follows a second ':' differently, and an empty group "
                                      "as none)"))
            elif not root_group_ok and spec.group is None and not spec.is_root:
                # The daemon takes the group from the image's /etc/passwd, and
                # falls back to gid 0 when the user is not listed there.
                out.append(
                    Finding(f, f"{shown} names no group, so it may run with the root group")
                )
        return out

    return check


# -- images ---------------------------------------------------------------------


def _image_pattern(glob: str) -> tuple[re.Pattern[str], bool]:
    """Normalise a pattern like a reference; the bool says whether it names a tag or digest."""
    with_tag = "@" in glob or ":" in glob.rsplit("/", 1)[-1]
    if "*" not in glob:
        try:
            ref = spelling.image_ref(glob)
            return spelling.name_pattern(ref.full if with_tag else ref.name), with_tag
        except ValueError:
            pass
    first = glob.split("/", 1)[0]
    if "/" not in glob or not ("." in first or ":" in first or first == "localhost"):
        glob = "docker.io/" + glob
    return spelling.name_pattern(glob), with_tag


def images(cfg: Mapping[str, Any]) -> Check:
    """Images by registry/repository pattern.

    References are normalised first (``busybox`` is ``docker.io/library/busybox``)
    so that one image cannot pass under a spelling the pattern did not foresee.
    """
    allow = [_image_pattern(g) for g in cfg["allow"]] if "allow" in cfg else None
    deny = [_image_pattern(g) for g in cfg.get("deny", ())]
    import_ok = cfg.get("allow_import", False)

    def hits(pats: list[tuple[re.Pattern[str], bool]], ref: spelling.ImageRef) -> bool:
        return any(p.match(ref.full if t else ref.name) for p, t in pats)

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        out: list[Finding] = []
        for f, raw in facts.images:
            try:
                ref = spelling.image_ref(str(raw))
            except ValueError as e:
                out.append(Finding(f, f"image {raw!r} is invalid: {e}"))
                continue
            if hits(deny, ref) or (allow is not None and not hits(allow, ref)):
                out.append(Finding(f, f"image {ref.full} is not allowed"))
        if not import_ok:
            out.extend(
                Finding(f, "imports an image the allowlist cannot check")
                for f in facts.image_import
            )
        return out

    return check


# -- resources ------------------------------------------------------------------


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def resources(cfg: Mapping[str, Any]) -> Check:
    """Required limits and ceilings for memory, swap, CPU and pids.

    A ceiling implies a requirement on create: no limit means unlimited, which
    is above any ceiling.  The CPU limit is the one the daemon writes into the
    cgroup (``spelling.cpu_limit``: a negative ``CpuQuota`` beside ``NanoCpus``
    is no limit).  On a partial update only the fields sent are checked, and a
    value that removes a limit (``-1``, a negative ``CpuQuota``, or ``0`` for
    pids) is refused; under a CPU maximum ``CpuQuota`` and ``CpuPeriod`` are
    updated together, since the daemon keeps the stored other one.
    """
    required = set(cfg.get("require", ()))
    mx = cfg.get("max", {})
    max_mem = spelling.size(mx["memory"]) if "memory" in mx else None
    max_swap = spelling.size(mx["memory_swap"]) if "memory_swap" in mx else None
    max_cpu = float(mx["cpus"]) * 1e9 if "cpus" in mx else None
    max_pids = mx.get("pids")

    def check(facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        if facts.resource_scope is None:
            return []
        out: list[Finding] = []
        res = facts.resources
        scope = facts.resource_scope
        creating = facts.workload is not None

        def get(name: str) -> tuple[str, float | None, bool]:
            f, v = res.get(name, (scope + name, None))
            n = _num(v)
            if v is not None and n is None:
                out.append(Finding(f, "must be a number"))
            return f, n, name in res

        f_mem, mem, _ = get("Memory")
        if (creating and ("memory" in required or max_mem is not None)) and not (mem and mem > 0):
            out.append(Finding(f_mem, "must set a memory limit"))
        elif max_mem is not None and mem and mem > max_mem:
            out.append(Finding(f_mem, f"{int(mem)} exceeds the maximum {max_mem}"))
        f_swap, swap, has_swap = get("MemorySwap")
        if max_swap is not None:
            if has_swap and swap == -1:
                out.append(Finding(f_swap, "must not be unlimited (-1)"))
            elif swap and swap > max_swap:
                out.append(Finding(f_swap, f"{int(swap)} exceeds the maximum {max_swap}"))
            elif creating and not swap and mem and 2 * mem > max_swap:
                out.append(
                    Finding(f_swap, f"defaults to twice Memory, above the maximum {max_swap}")
                )
        f_nano, nano, _ = get("NanoCpus")
        f_quota, quota, _ = get("CpuQuota")
        _, period, _ = get("CpuPeriod")
        need_cpu = "cpu" in required or max_cpu is not None
        cpu: float | None = None
        if creating:
            cpu = spelling.cpu_limit(nano, quota, period)
            if need_cpu and cpu is None:
                out.append(Finding(f_quota, f"{int(quota)} removes the CPU limit (a negative "
                                            "quota is unlimited, whatever NanoCpus says)")
                           if quota is not None and quota < 0 else
                           Finding(f_nano, "must set a CPU limit (NanoCpus or CpuQuota)"))
        # An update reaches the running cgroup as sent (0: unchanged), and the
        # daemon keeps a negative CpuQuota beside a stored NanoCpus.
        elif need_cpu and quota is not None and quota < 0:
            out.append(Finding(f_quota, f"{int(quota)} removes the CPU limit"))
        elif nano is not None and nano > 0:
            cpu = nano
        elif quota and period and quota > 0 and period > 0:
            cpu = quota / period * 1e9
        elif max_cpu is not None and ((quota or 0) > 0 or (period or 0) > 0):
            out.append(Finding(f_quota, "CpuQuota and CpuPeriod must be updated together "
                                        "under a CPU maximum (the daemon keeps the stored "
                                        "other one)"))
        if max_cpu is not None and cpu is not None and cpu > max_cpu:
            out.append(
                Finding(f_nano, f"CPU limit {cpu / 1e9:g} exceeds the maximum {max_cpu / 1e9:g}")
            )
        f_pids, pids, has_pids = get("PidsLimit")
        need_pids = "pids" in required or max_pids is not None
        # On update, an absent or null PidsLimit leaves the limit unchanged
        # (the CLI sends null on every `docker update`); 0 or -1 removes it.
        changing = has_pids and pids is not None
        if need_pids and (creating or changing) and not (pids and pids > 0):
            out.append(Finding(f_pids, "must set a pids limit"))
        elif max_pids is not None and pids and pids > max_pids:
            out.append(Finding(f_pids, f"{int(pids)} exceeds the maximum {max_pids}"))
        return out

    return check


# -- registries -----------------------------------------------------------------


class RegistriesControl:
    """Registry hosts the daemon may be made to contact (``policy.registries``).

    A callable object rather than a closure so that ``registries.registry_allowed``
    can find the compiled allowlist on the rule (for a Dockerfile's ``FROM``).
    """

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.allowlist = RegistryAllowlist(cfg)

    def __call__(self, facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        return [Finding(f, why) for f, why in self.allowlist.refusals(req)]


# -- redact ---------------------------------------------------------------------


class RedactControl:
    """What the answers to a request may show (``dockgate.policy.redact``); never a finding.

    The rule's compiled ``redaction`` is read by the response path
    (``redact.rules_for``), with the rule's ``applies_to`` and ``exempt``.
    """

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        # The module, not the class, is imported: ``redact`` reads
        # ``policy.spelling``, so importing ``redact`` first would find
        # ``Redaction`` not yet defined here.
        self.redaction = redact.Redaction(cfg)

    def __call__(self, facts: Facts, req: CanonicalRequest, ctx: DecisionContext) -> list[Finding]:
        return []


BUILDERS: dict[str, Callable[[Mapping[str, Any]], Check]] = {
    "endpoints": endpoints,
    "privileged": privileged,
    "host_paths": host_paths,
    "mount_types": mount_types,
    "volume_drivers": volume_drivers,
    "volumes_from": volumes_from,
    "capabilities": capabilities,
    "namespaces": namespaces,
    "devices": devices,
    "security_options": security_options,
    "system_paths": system_paths,
    "sysctls": sysctls,
    "cgroup_parent": cgroup_parent,
    "group_add": group_add,
    "runtimes": runtimes,
    "oom_kill_disable": oom_kill_disable,
    "ports": ports,
    "user": user,
    "images": images,
    "resources": resources,
    "registries": RegistriesControl,
    "redact": RedactControl,
}
"""Control name (as in the policy file) → builder, for the controls defined here;
``buildcontrol.build`` and ``root_actions.BUILDERS`` have the rest (``rules.BUILDERS``
joins them: both import this module, so it cannot import them).  Together they list
every key of ``schema.CONTROLS``."""

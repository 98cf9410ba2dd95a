"""The daemon's spellings, reduced to one meaning each.

A policy that compares raw strings is bypassed by the next spelling the daemon
also accepts (``cap_sys_admin`` for ``SYS_ADMIN``, ``/etc/../`` for ``/``,
``00`` for root, ``seccomp:unconfined`` for ``seccomp=unconfined``).  Every
function here mirrors how dockerd (moby) reads a value, and where the daemon
would reject a value we say so, so that the policy fails closed on values we
cannot classify rather than guessing in the permissive direction.

Facts mirrored (moby ``volume/mounts/linux_parser.go``, ``oci/caps/utils.go``,
``daemon/daemon_unix.go`` ``parseSecurityOpt``, ``moby/sys/user``,
``distribution/reference``, ``daemon/oci_linux.go`` ``getCPUResources``,
``daemon/top_unix.go``) are noted next to each function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# -- capabilities ---------------------------------------------------------------

ALL_CAPS = "ALL"

KNOWN_CAPS = frozenset(
    "CAP_" + c
    for c in """
CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE
NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO
SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME
SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG
WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE
""".split()  # noqa: SIM905 - a word list
)
"""The Linux capabilities (capability.h up to CAP_CHECKPOINT_RESTORE, kernel 5.9)."""


def capability(name: object) -> str:
    """Normalise a CapAdd/CapDrop entry as ``NormalizeLegacyCapabilities`` does.

    Upper-case, ``ALL`` kept as the magic value, otherwise ``CAP_`` prefixed.
    The daemon does not trim whitespace, so neither do we (a padded name is an
    unknown capability the daemon rejects; the allowlist rejects it too).
    """
    c = str(name).upper()
    if c == ALL_CAPS:
        return c
    return c if c.startswith("CAP_") else "CAP_" + c


# -- users ----------------------------------------------------------------------

_GO_INT = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True, slots=True)
class UserSpec:
    """A ``user[:group]`` string, split the way ``moby/sys/user`` splits it.

    ``GetExecUser`` splits on every ``:`` and keeps the first two parts
    (``parseLine``), so ``1000:0:x`` is user ``1000``, group ``0``; an empty
    group part (``1000:``) is no group at all, and an empty user part
    (``:1000``) is the lookup's default, uid 0.
    """

    user: str
    group: str | None

    @property
    def uid(self) -> int | None:
        """The numeric uid when the user part is a Go-``Atoi`` integer (``+0``, ``00``)."""
        return _go_atoi(self.user)

    @property
    def gid(self) -> int | None:
        """The numeric gid, as for ``uid``."""
        return None if self.group is None else _go_atoi(self.group)

    @property
    def is_root(self) -> bool:
        """Whether this names uid 0: ``root``, ``0``, ``00``, ``+0``, ``-0``, or an empty
        user part (``:1000``: the daemon's lookup starts from uid 0 and keeps it)."""
        return self.user in ("root", "") or self.uid == 0

    @property
    def root_group(self) -> bool:
        """Whether the group part names gid 0."""
        return self.group is not None and (self.group == "root" or self.gid == 0)

    @property
    def canonical(self) -> bool:
        """Whether the user part, and the group part when there is one, are plain decimal
        ids within the daemon's range (``1000:1000``): read alike by every reader, and
        looked up by number only (never by name in the container's files)."""
        return _plain_id(self.user) and (self.group is None or _plain_id(self.group))


def _go_atoi(s: str) -> int | None:
    # ``$`` would also match before a final newline, which Atoi refuses.
    return int(s) if _GO_INT.fullmatch(s) else None


_PLAIN_ID = re.compile(r"0|[1-9][0-9]{0,9}")
_MAX_ID = (1 << 31) - 1  # moby/sys/user maxID


def _plain_id(s: str) -> bool:
    return _PLAIN_ID.fullmatch(s) is not None and int(s) <= _MAX_ID


def user_spec(raw: object) -> UserSpec | None:
    """Split a User value; ``None`` for the empty user (the image/container default)."""
    if raw is None:
        return None
    s = str(raw)
    if s == "":
        return None
    parts = s.split(":")
    group = parts[1] if len(parts) > 1 and parts[1] != "" else None
    return UserSpec(parts[0], group)


def user_has_extra_parts(raw: str) -> bool:
    """Whether a User value has parts the daemon ignores (``1000:1000:x``) or an empty
    group part (``1000:``): spellings only a canonical form rules out."""
    parts = raw.split(":")
    return len(parts) > 2 or (len(parts) == 2 and parts[1] == "")


# -- host paths -----------------------------------------------------------------


def host_path(raw: str) -> str:
    """Clean an absolute host path as Go's ``path.Clean`` does (``..``, ``//``, trailing ``/``).

    Python's ``posixpath.normpath`` keeps a leading ``//`` (POSIX allows it to
    mean something else); Linux and the daemon do not, so we collapse it.
    """
    parts: list[str] = []
    for seg in raw.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts:
                parts.pop()
            continue
        parts.append(seg)
    return "/" + "/".join(parts)


def _glob_segment(seg: str) -> str:
    out = ""
    for ch in seg:
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        else:
            out += re.escape(ch)
    return out


def path_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a host-path glob: ``*`` within one segment, ``**`` across segments.

    A pattern covers the paths below it too (``/srv/data`` allows
    ``/srv/data/x``), because a bind of a directory exposes everything in it:
    allowing the directory but not its children would be meaningless.
    Patterns end in ``\\Z``, not ``$`` (which also matches before a final
    newline: ``/srv/data`` would allow ``/srv/data\\n``, another directory).
    """
    cleaned = host_path(pattern)
    if cleaned == "/":
        return re.compile(r"^/.*\Z")
    segs = cleaned.strip("/").split("/")
    body = "/".join(".*" if s == "**" else _glob_segment(s) for s in segs)
    return re.compile("^/" + body + "(/.*)?\\Z")


def name_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a simple glob for names (endpoint ids, sysctls, images): ``*`` matches anything
    but a line break.

    The end is ``\\Z``: ``$`` also matches before a final newline, and the daemon
    reads ``local\\n`` as a plugin's name, not as the builtin ``local`` driver.
    """
    return re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "\\Z")


# -- Binds ----------------------------------------------------------------------

_RW = {"rw", "ro", "rro"}
_LABEL = {"z", "Z"}
_PROPAGATION = {"shared", "rshared", "slave", "rslave", "private", "rprivate"}
_CONSISTENCY = {"consistent", "cached", "delegated"}


def _valid_mode(mode: str) -> bool:
    """``linuxValidMountMode``: each comma-separated option at most once per class."""
    if mode == "":
        return True
    counts = {"rw": 0, "label": 0, "prop": 0, "copy": 0, "cons": 0}
    for o in mode.split(","):
        if o in _RW or o.startswith("ro-"):
            counts["rw"] += 1
        elif o in _LABEL:
            counts["label"] += 1
        elif o in _PROPAGATION:
            counts["prop"] += 1
        elif o == "nocopy":
            counts["copy"] += 1
        elif o in _CONSISTENCY:
            counts["cons"] += 1
        else:
            return False
    return all(v <= 1 for v in counts.values())


@dataclass(frozen=True, slots=True)
class Bind:
    """One ``HostConfig.Binds`` entry as the daemon reads it."""

    source: str
    target: str
    mode: str
    is_host_path: bool
    read_only: bool
    propagation: str


def parse_bind(raw: str) -> Bind:
    """Parse ``src:dst[:opts]`` as moby's linux parser does; ValueError if it would reject it.

    ``SplitN(raw, ":", 4)``: one part is an anonymous volume, two parts are
    source and target (unless the second is a valid mode), three add the mode,
    four is invalid.  A source is a host path when ``path.IsAbs`` (starts with
    ``/``), else a named volume.  Read-only when an option is ``ro``, ``rro``
    or ``ro-*``.
    """
    arr = raw.split(":", 3)
    if arr[0] == "":
        raise ValueError("invalid volume specification")
    source, mode = "", ""
    if len(arr) == 1:
        target = arr[0]
    elif len(arr) == 2:
        if _valid_mode(arr[1]):
            raise ValueError("invalid volume specification")
        source, target = arr
    elif len(arr) == 3:
        source, target, mode = arr
    else:
        raise ValueError("invalid volume specification")
    if not _valid_mode(mode):
        raise ValueError(f"invalid mode {mode!r}")
    opts = mode.split(",") if mode else []
    ro = any(o in ("ro", "rro") or o.startswith("ro-") for o in opts)
    prop = next((o for o in opts if o in _PROPAGATION), "")
    return Bind(source, target, mode, source.startswith("/"), ro, prop)


# -- namespace modes ------------------------------------------------------------


def namespace_kind(raw: object) -> str:
    """Classify a *Mode value: ``host``, ``container``, ``path`` or ``private``.

    The daemon compares exactly (``host``, ``container:<id>``); we classify
    case- and space-insensitively so that a near-spelling the daemon might
    read as a network *name* is still treated as the dangerous form (at worst a
    harmless spelling is refused).  ``ns:<path>`` and absolute paths are the
    namespace-path forms other engines (and old docker) accept.
    """
    s = str(raw).strip().lower()
    if s == "host":
        return "host"
    if s.startswith("container:") or s == "container":
        return "container"
    if s.startswith(("ns:", "/")):
        return "path"
    return "private"


# -- security options -----------------------------------------------------------

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


@dataclass(frozen=True, slots=True)
class SecurityOption:
    """One SecurityOpt entry: ``key`` and ``value`` after the daemon's split.

    ``key`` is ``label``, ``apparmor``, ``seccomp``, ``no-new-privileges``,
    ``writable-cgroups``, ``systempaths`` or ``invalid`` (the daemon would refuse it).
    """

    key: str
    value: str


def security_option(raw: object) -> SecurityOption:
    """Split as ``parseSecurityOpt``: ``=`` first, else the deprecated ``:``.

    ``no-new-privileges`` alone means true; ``disable`` alone is ``label=disable``.
    ``systempaths=unconfined`` is a CLI-only spelling (it empties MaskedPaths),
    recognised so a policy can name it even though the daemon refuses it.
    """
    s = str(raw)
    if s == "no-new-privileges":
        return SecurityOption("no-new-privileges", "true")
    if s == "disable":
        return SecurityOption("label", "disable")
    if "=" in s:
        key, _, value = s.partition("=")
    elif ":" in s:
        key, _, value = s.partition(":")
    else:
        return SecurityOption("invalid", s)
    if key in ("label", "apparmor", "seccomp", "systempaths"):
        return SecurityOption(key, value)
    if key in ("no-new-privileges", "writable-cgroups"):
        if value in _TRUE:
            return SecurityOption(key, "true")
        if value in _FALSE:
            return SecurityOption(key, "false")
    return SecurityOption("invalid", s)


# -- images ---------------------------------------------------------------------

_DIGEST = re.compile(r"@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A normalised image reference: ``docker.io/library/busybox`` plus tag/digest."""

    name: str
    tag: str | None
    digest: str | None

    @property
    def full(self) -> str:
        """``name[:tag][@digest]``."""
        return self.name + (f":{self.tag}" if self.tag else "") + (self.digest or "")


def image_ref(raw: str) -> ImageRef:
    """Normalise as ``distribution/reference.ParseNormalizedNamed``; ValueError if invalid.

    A first component with ``.`` or ``:`` or equal to ``localhost`` is a
    registry; otherwise the registry is ``docker.io`` and a single-component
    name is under ``library/``.  ``index.docker.io`` is ``docker.io``.
    """
    s = raw
    digest = None
    m = _DIGEST.search(s)
    if m:
        digest, s = m.group(0), s[: m.start()]
    tag = None
    slash = s.rfind("/")
    colon = s.rfind(":")
    if colon > slash:
        s, tag = s[:colon], s[colon + 1 :]
        if not _TAG.match(tag):
            raise ValueError(f"invalid tag {tag!r}")
    if not s:
        raise ValueError("empty image name")
    first, sep, rest = s.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first.lower(), rest
    else:
        domain, path = "docker.io", s
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    if not _REPO.match(path):
        raise ValueError(f"invalid repository name {path!r}")
    return ImageRef(f"{domain}/{path}", tag, digest)


# -- sizes ----------------------------------------------------------------------

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(?:[iI]?[bB]?)?\s*$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def size(raw: int | str) -> int:
    """Bytes from ``512m``/``1g``/``1GiB``/an integer, binary units as the docker CLI uses."""
    if isinstance(raw, int):
        return raw
    m = _SIZE.match(raw)
    if not m:
        raise ValueError(f"invalid size {raw!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


# -- docker top ---------------------------------------------------------------------

_PS_UNIX = frozenset("AeadNfFljycLTmHw")
"""``-X`` letters that select processes or pick a built-in format whose columns
before PID are one word each (no ``o``/``O`` formats, ``p``/``u``/``C``/``t``...
selections, ``M``/``Z`` labels, which may hold a space)."""
_PS_BSD = frozenset("auxjlsvXmHefwcSnrTg")
"""BSD letters alike (no ``o``/``O``/``k`` formats and sorts, ``h`` for no header,
``p``/``t``/``U`` selections, ``Z`` labels)."""


def ps_args_builtin(raw: str) -> bool:
    """Whether ``GET /containers/{id}/top``'s ``ps_args`` only selects processes
    and picks one of ps's built-in formats, with its header.

    The daemon runs ``ps`` on the host, as root, with these words (split on
    single spaces, moby ``daemon/top_unix.go``) over every process on the host,
    then keeps the rows whose PID column holds one of the container's pids,
    finding that column by the header's words.  A custom format (``-o`` and
    the like), no header (``h``, ``--no-headers``), or a column of several
    words before PID makes it read another column of a row as the pid, and its
    answer for a row of any host process (``Unexpected pid 'SECRET=...'``, or
    the row itself) shows that process's command line and environment (the
    ``e`` modifier).  Only words of the letters above pass, each ``-X...`` or
    ``X...`` alone: what ``docker top C aux`` and ``docker top C -ef`` send.
    """
    words = raw.split(" ")
    for word in words:
        letters, allowed = (word[1:], _PS_UNIX) if word.startswith("-") else (word, _PS_BSD)
        if not letters or not set(letters) <= allowed:
            return False
    return True


# -- CPU limits -------------------------------------------------------------------

CFS_PERIOD = 100_000
"""The CFS period in microseconds the daemon uses with NanoCpus (and the kernel's default)."""


def cpu_limit(nano: float | None, quota: float | None, period: float | None) -> float | None:
    """The CPU limit, in 1e-9 CPUs, that a container's cgroup gets from these
    resources when it starts; None when it gets none.

    As moby's ``getCPUResources`` (``daemon/oci_linux.go``, both engines) builds
    the OCI spec: a positive ``NanoCpus`` gives a quota over a 100 ms period,
    then a non-zero ``CpuPeriod`` replaces the period and a non-zero
    ``CpuQuota`` the quota.  A negative quota is no limit (the kernel reads any
    negative ``cfs_quota_us`` as -1), whatever ``NanoCpus`` says: the daemon
    refuses ``NanoCpus`` beside a *positive* ``CpuQuota`` only, so
    ``{"NanoCpus": 1e9, "CpuQuota": -1}`` is accepted and runs unlimited.
    A ``None`` argument is an absent field.
    """
    p = float(CFS_PERIOD)
    q: float | None = None
    if nano is not None and nano > 0:
        q = nano * CFS_PERIOD / 1e9
    if period:
        p = period
    if quota:
        q = quota
    if q is None or q <= 0 or p <= 0:
        return None
    return q / p * 1e9


def port_range(raw: int | str) -> tuple[int, int]:
    """``8080`` or ``8000-8010`` as an inclusive range; ValueError when malformed."""
    s = str(raw).strip()
    lo, sep, hi = s.partition("-")
    a = int(lo)
    b = int(hi) if sep else a
    if not 0 <= a <= b <= 65535:
        raise ValueError(f"invalid port range {raw!r}")
    return a, b

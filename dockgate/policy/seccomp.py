"""Is a custom seccomp profile at least as strict as the daemon's default?

``SecurityOpt: ["seccomp=<json>"]`` carries a whole profile (the CLI reads the
file and sends its content), and runc installs it as written: a profile whose
``defaultAction`` is ``SCMP_ACT_ALLOW`` is an unconfined container under
another name.  dockgate parses the profile and accepts it only when this
check proves it allows nothing the default profile (moby
``profiles/seccomp/default.json``, the same in engines 20.10 and 28.5 for
what is listed here) would refuse:

1. ``defaultAction`` refuses: ``SCMP_ACT_ERRNO``, ``SCMP_ACT_KILL``,
   ``SCMP_ACT_KILL_PROCESS``, ``SCMP_ACT_KILL_THREAD`` or ``SCMP_ACT_TRAP``
   (``ALLOW``, ``LOG``, ``TRACE``, ``NOTIFY`` let the call run or hand it to
   someone else);
2. no ``listenerPath`` and no ``SCMP_ACT_NOTIFY`` anywhere: runc would
   connect, as root, to a unix socket on the host and hand it the
   container's syscalls;
3. no filter ``flags`` except ``SECCOMP_FILTER_FLAG_TSYNC`` and
   ``SECCOMP_FILTER_FLAG_LOG`` (``SPEC_ALLOW`` turns a CPU mitigation off);
4. every rule whose action does not refuse (``ALLOW``, ``LOG``, ``TRACE``...)
   either names only syscalls the default allows unconditionally
   (``UNCONDITIONAL``), or names a subset of one of the default's
   conditional rules with exactly that rule's ``args``, ``includes`` and
   ``excludes`` (so a copy of the default with calls removed passes).
   Rules that refuse are always fine: they only narrow.

The profile is read as the daemon reads it (moby ``seccomp.LoadProfile``:
Go's ``encoding/json``, which matches keys to fields case-insensitively and
lets the last of several matching keys win): a key spelled other than the
field it sets (``DefaultAction``, ``ListenerPath``), or two keys setting one
field, is refused, since reading the exact spelling here would judge a
different profile than runc installs.  Go ignores keys that name no field,
and so does this check.

Anything else is refused; an operator who needs such a profile lists its
SHA-256 (``security_options.seccomp_profiles``).  The check is sound but
not complete: it may refuse a profile that is in fact stricter (say, one
that allows ``clone`` under tighter ``args``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dockgate.admission.jsonstrict import Pairs, go_fold, loads, plain
from dockgate.errors import BadRequest, BodyTooLarge

REFUSING = frozenset(
    {"SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
     "SCMP_ACT_TRAP"}
)
_FLAGS_OK = frozenset({"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"})

UNCONDITIONAL = frozenset(
    """
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup
dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2
epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat
faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown
fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr
fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex
futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32
geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid
getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32
getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid
gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64
ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register io_uring_setup ipc
kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat
lstat64 madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat
mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget
msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat
_newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc
pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink
readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr
rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask
sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat
sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate
truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat utimensat_time64 utimes
vfork vmsplice wait4 waitid waitpid write writev
""".split()  # noqa: SIM905 - a word list reads better than 349 quoted strings
)
"""Syscalls the default profile allows with no condition (its first rule)."""


def _rule(names: str, args: Any = None, includes: Any = None, excludes: Any = None) -> tuple[
    frozenset[str], str, str, str
]:
    return (frozenset(names.split()), _canon(args), _canon(includes), _canon(excludes))


def _canon(v: Any) -> str:
    """A canonical text of a rule part; absent, null, [] and {} are all "nothing"."""
    return "" if not v else json.dumps(v, sort_keys=True, separators=(",", ":"))


def _arg(index: int, value: int, op: str) -> list[dict[str, Any]]:
    return [{"index": index, "value": value, "op": op}]


_SYS_ADMIN = {"caps": ["CAP_SYS_ADMIN"]}
CONDITIONAL: tuple[tuple[frozenset[str], str, str, str], ...] = (
    _rule("process_vm_readv process_vm_writev ptrace", includes={"minKernel": "4.8"}),
    _rule("socket", args=_arg(0, 40, "SCMP_CMP_NE")),
    *(_rule("personality", args=_arg(0, v, "SCMP_CMP_EQ"))
      for v in (0, 8, 131072, 131080, 4294967295)),
    _rule("sync_file_range2 swapcontext", includes={"arches": ["ppc64le"]}),
    _rule("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
          includes={"arches": ["arm", "arm64"]}),
    _rule("arch_prctl", includes={"arches": ["amd64", "x32"]}),
    _rule("modify_ldt", includes={"arches": ["amd64", "x32", "x86"]}),
    _rule("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
          includes={"arches": ["s390", "s390x"]}),
    _rule("riscv_flush_icache", includes={"arches": ["riscv64"]}),
    _rule("open_by_handle_at", includes={"caps": ["CAP_DAC_READ_SEARCH"]}),
    _rule("bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount "
          "mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname "
          "sethostname setns syslog umount umount2 unshare", includes=_SYS_ADMIN),
    _rule("clone", args=_arg(0, 2114060288, "SCMP_CMP_MASKED_EQ"),
          excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}),
    _rule("clone", args=_arg(1, 2114060288, "SCMP_CMP_MASKED_EQ"),
          includes={"arches": ["s390", "s390x"]}, excludes=_SYS_ADMIN),
    _rule("reboot", includes={"caps": ["CAP_SYS_BOOT"]}),
    _rule("chroot", includes={"caps": ["CAP_SYS_CHROOT"]}),
    _rule("delete_module init_module finit_module", includes={"caps": ["CAP_SYS_MODULE"]}),
    _rule("acct", includes={"caps": ["CAP_SYS_PACCT"]}),
    _rule("kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
          includes={"caps": ["CAP_SYS_PTRACE"]}),
    _rule("iopl ioperm", includes={"caps": ["CAP_SYS_RAWIO"]}),
    _rule("settimeofday stime clock_settime clock_settime64", includes={"caps": ["CAP_SYS_TIME"]}),
    _rule("vhangup", includes={"caps": ["CAP_SYS_TTY_CONFIG"]}),
    _rule("get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
          includes={"caps": ["CAP_SYS_NICE"]}),
    _rule("syslog", includes={"caps": ["CAP_SYSLOG"]}),
    _rule("bpf", includes={"caps": ["CAP_BPF"]}),
    _rule("perf_event_open", includes={"caps": ["CAP_PERFMON"]}),
)
"""The default profile's allowing rules that carry a condition."""


FIELDS = frozenset(
    """
defaultAction defaultErrnoRet architectures archMap flags listenerPath listenerMetadata syscalls
architecture subArchitectures names name action errnoRet args comment includes excludes caps
arches minKernel index value valueTwo op
""".split()  # noqa: SIM905 - a word list
)
"""The JSON names of the fields of moby's ``seccomp.Seccomp`` and of every struct below it
(``Architecture``, ``Syscall``, ``Filter``, the runtime-spec ``LinuxSeccompArg``)."""

_FOLDED = {go_fold(f): f for f in FIELDS}


def _spelling(value: Any) -> str | None:
    """Why Go would read ``value``'s keys differently from their exact spelling, or None."""
    if not isinstance(value, list):
        return None
    if not isinstance(value, Pairs):  # an array (Pairs, an object, is a list too)
        return next((why for why in map(_spelling, value) if why is not None), None)
    seen: dict[str, str] = {}
    for key, member in value:
        folded = go_fold(key)
        field = _FOLDED.get(folded)
        if field is not None and key != field:
            return f"spells the key {field!r} as {key!r} (the daemon matches keys in any case)"
        if folded in seen:
            return f"has the key {key!r} twice (the daemon reads only the last)"
        seen[folded] = key
        why = _spelling(member)
        if why is not None:
            return why
    return None


def digest(text: str) -> str:
    """``sha256:<hex>`` of a profile as sent (the text after ``seccomp=``)."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _names(rule: dict[str, Any]) -> list[str] | None:
    """The calls a rule names, as moby's ``setupSeccomp`` reads them: a non-empty ``name``
    is appended to an *empty* ``names`` (and refused beside a non-empty one), so
    ``{"names": [], "name": "unshare"}`` names ``unshare``.  None: no list to judge."""
    names, name = rule.get("names"), rule.get("name")
    if name is not None and name != "":
        return [name] if isinstance(name, str) and not names else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    return names


def weaker_than_default(text: str) -> str | None:
    """Why the profile ``text`` may allow more than the default, or None if it cannot."""
    try:
        decoded = loads(text, "seccomp profile")
    except (BadRequest, BodyTooLarge):
        return "is not a JSON seccomp profile"
    if not isinstance(decoded, Pairs):
        return "is not a JSON seccomp profile"
    spelled = _spelling(decoded)
    if spelled is not None:
        return spelled
    profile = plain(decoded)
    default = profile.get("defaultAction")
    if default not in REFUSING:
        return f"has defaultAction {default!r}, which does not refuse unlisted syscalls"
    if profile.get("listenerPath") or profile.get("listenerMetadata"):
        return "names a listenerPath (runc would connect to a socket on the host)"
    flags = profile.get("flags") or []
    if not isinstance(flags, list) or any(f not in _FLAGS_OK for f in flags):
        return f"sets filter flags {flags!r}"
    rules = profile.get("syscalls") or []
    if not isinstance(rules, list):
        return "has a syscalls member that is not a list"
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            return f"has a syscalls[{i}] that is not an object"
        action = rule.get("action")
        if action in REFUSING:
            continue
        if action == "SCMP_ACT_NOTIFY":
            return f"syscalls[{i}] hands syscalls to a notify listener"
        names = _names(rule)
        if names is None:
            return f"syscalls[{i}] has no list of names"
        extra = sorted(set(names) - UNCONDITIONAL)
        if not extra:
            continue
        key = (_canon(rule.get("args")), _canon(rule.get("includes")), _canon(rule.get("excludes")))
        if any(set(names) <= n and key == (a, inc, exc) for n, a, inc, exc in CONDITIONAL):
            continue
        return (f"syscalls[{i}] allows {', '.join(extra[:5])}"
                f"{' …' if len(extra) > 5 else ''}, which the default profile refuses "
                "(or allows only under other conditions)")
    return None

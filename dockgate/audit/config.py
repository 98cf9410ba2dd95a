"""Serve options for the audit log, and the sink they build.

Kept apart from ``tap`` so that ``tap`` only declares options and wires
services; everything audit-specific (validating the choices, loading the
audit policy and key, choosing the session directory, syslog and journald
copies) lives here.
"""

from __future__ import annotations

import os
import socket
import syslog
from typing import Any

from dockgate.audit.keys import load_key
from dockgate.audit.rules import AuditPolicy, load_audit_policy
from dockgate.audit.sink import JsonLinesAudit, NullAudit
from dockgate.audit.writer import FSYNC_POLICIES, Copy
from dockgate.policy.source import PolicyError

__all__ = ["OPTIONS", "JournaldCopy", "SyslogCopy", "build_audit", "check_options"]

COPY_CHOICES = ("off", "all", "checkpoints")

OPTIONS: list[list[Any]] = [
    ["audit-policy", None, None,
     "Audit policy file (YAML): per-endpoint levels none|metadata|request and session "
     "recording. Default: metadata for every request."],
    ["audit-sessions", None, None,
     "Directory for session recordings. Default: 'sessions' next to the audit log."],
    ["audit-fsync", None, "interval", "When to fsync the audit log: always|interval|never."],
    ["audit-fsync-interval", None, 1.0, "Seconds between fsyncs under --audit-fsync interval.",
     float],
    ["audit-failure", None, "closed",
     "closed: refuse requests whose audit record cannot be written (default); "
     "open: log the failure and carry on."],
    ["audit-key", None, None,
     "Key for signed checkpoints: an HMAC-SHA256 secret file, or an Ed25519 private key (PEM)."],
    ["audit-checkpoint-every", None, 1000, "Records between signed checkpoints.", int],
    ["audit-checkpoint-interval", None, 60.0, "Seconds between signed checkpoints.", float],
    ["audit-rotate-size", None, 0, "Rotate the audit log at this many bytes (0: never).", int],
    ["audit-rotate-interval", None, 0.0, "Rotate the audit log after this many seconds "
     "(0: never).", float],
    ["audit-syslog", None, "off", "Copy records to syslog (LOG_AUTHPRIV): off|all|checkpoints."],
    ["audit-journald", None, "off", "Copy records to journald: off|all|checkpoints."],
]
"""``usage.Options`` parameters, appended to ``tap.Options.optParameters``."""


def check_options(options: Any) -> list[str]:
    """Problems with the audit options (as usage errors), empty if they are fine."""
    problems: list[str] = []
    choices: dict[str, tuple[str, ...]] = {
        "audit-fsync": FSYNC_POLICIES,
        "audit-failure": ("closed", "open"),
        "audit-syslog": COPY_CHOICES,
        "audit-journald": COPY_CHOICES,
    }
    for name, allowed in choices.items():
        if options[name] not in allowed:
            problems.append(f"--{name} must be one of {', '.join(allowed)}")
    for name in ("audit-fsync-interval", "audit-checkpoint-interval"):
        if not options[name] > 0:
            problems.append(f"--{name} must be positive")
    for name in ("audit-checkpoint-every", "audit-rotate-size", "audit-rotate-interval"):
        if options[name] < 0 or (name == "audit-checkpoint-every" and options[name] == 0):
            problems.append(f"--{name} must not be {'negative' if options[name] < 0 else 0}")
    for name in ("audit-policy", "audit-key"):
        if options[name] is not None and not os.path.isfile(options[name]):
            problems.append(f"--{name}: {options[name]} is not a file")
    if not options["audit-log"]:
        needing = [f"--{name}" for name in ("audit-policy", "audit-key") if options[name]]
        needing += [f"--{name}" for name in ("audit-syslog", "audit-journald")
                    if options[name] != "off"]
        if needing:
            problems.append(f"{' and '.join(needing)} {'needs' if len(needing) == 1 else 'need'}"
                            " --audit-log FILE (they apply to the audit log's records)")
    return problems


class SyslogCopy:
    """Copies lines to syslog; long records are cut by most syslog daemons, so
    ``checkpoints`` (short, and what an off-host copy most needs) is the usual choice."""

    def __init__(self, only_checkpoints: bool) -> None:
        self.only_checkpoints = only_checkpoints
        syslog.openlog("dockgate-audit", syslog.LOG_PID, syslog.LOG_AUTHPRIV)

    def send(self, line: bytes, checkpoint: bool) -> None:
        """Log one line at LOG_INFO."""
        if checkpoint or not self.only_checkpoints:
            syslog.syslog(syslog.LOG_INFO, line.rstrip(b"\n").decode("ascii"))


class JournaldCopy:
    """Copies lines to journald over its native datagram protocol (no library needed).

    Records are ASCII JSON without newlines, so the simple ``FIELD=value``
    form of the protocol carries them unchanged.
    """

    SOCKET = "/run/systemd/journal/socket"

    def __init__(self, only_checkpoints: bool, path: str = SOCKET) -> None:
        self.only_checkpoints = only_checkpoints
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.connect(path)
        except OSError as e:
            self._sock.close()
            raise OSError(f"--audit-journald: no journald socket at {path} ({e.strerror}); "
                          "run under systemd-journald, or use --audit-journald off") from None

    def send(self, line: bytes, checkpoint: bool) -> None:
        """Send one entry; raises OSError if journald is not there."""
        if checkpoint or not self.only_checkpoints:
            entry = (b"MESSAGE=" + line.rstrip(b"\n") + b"\nSYSLOG_IDENTIFIER=dockgate-audit\n"
                     b"PRIORITY=6\nDOCKGATE_AUDIT=" + (b"checkpoint" if checkpoint else b"record")
                     + b"\n")
            self._sock.send(entry)


def build_audit(options: Any) -> JsonLinesAudit | NullAudit:
    """The audit sink the options ask for.

    Raises:
        PolicyError: the audit policy or the key does not load.
        OSError: the log or the session directory cannot be opened.
    """
    path = options["audit-log"]
    if not path:
        if options["audit-policy"] or options["audit-key"]:
            raise PolicyError(["--audit-policy and --audit-key need --audit-log"])
        return NullAudit()
    policy = load_audit_policy(options["audit-policy"]) if options["audit-policy"] else None
    signer = None
    if options["audit-key"]:
        try:
            signer = load_key(options["audit-key"])
        except ValueError as e:
            raise PolicyError([f"--audit-key: {e}"]) from None
    sessions = options["audit-sessions"]
    if sessions is None and path != "-":
        sessions = os.path.join(os.path.dirname(os.path.abspath(path)), "sessions")
    if sessions is not None and policy is not None and any(r.choice.session for r in policy.rules):
        os.makedirs(sessions, mode=0o750, exist_ok=True)
    copies: list[Copy] = []
    if options["audit-syslog"] != "off":
        copies.append(SyslogCopy(options["audit-syslog"] == "checkpoints"))
    if options["audit-journald"] != "off":
        copies.append(JournaldCopy(options["audit-journald"] == "checkpoints"))
    return JsonLinesAudit(
        path,
        policy=policy or AuditPolicy(),
        policy_path=options["audit-policy"],
        sessions_dir=sessions,
        failure=options["audit-failure"],
        fsync=options["audit-fsync"],
        fsync_interval=float(options["audit-fsync-interval"]),
        rotate_size=int(options["audit-rotate-size"]) or None,
        rotate_interval=float(options["audit-rotate-interval"]) or None,
        signer=signer,
        checkpoint_every=int(options["audit-checkpoint-every"]),
        checkpoint_interval=float(options["audit-checkpoint-interval"]),
        copies=copies,
    )

"""The fence around the pure core: parsing, routing, validation, policy,
tenancy decisions and audit records import neither Twisted nor pyOpenSSL.

The core is meant to be usable (and tested) without a reactor; nothing in
the language stops a module from importing Twisted for one constant, so this
test does.  Every module of the package is named below, either as core or as
I/O with the reason, so a new module has to be placed on one side.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import dockgate

CORE = (
    "dockgate",
    "dockgate.admission",
    "dockgate.audit_chain",
    "dockgate.audit_cli",
    "dockgate.audit_keys",
    "dockgate.audit_redact",
    "dockgate.audit_review",
    "dockgate.audit_rules",
    "dockgate.audit_schema",
    "dockgate.audit_session",
    "dockgate.audit_writer",
    "dockgate.buildctx",
    "dockgate.buildkit",
    "dockgate.buildkit.facts",
    "dockgate.buildkit.grpcwire",
    "dockgate.buildkit.h2relay",
    "dockgate.buildkit.mediation",
    "dockgate.buildkit.messages",
    "dockgate.buildkit.solve",
    "dockgate.buildctx.context",
    "dockgate.buildctx.dockerfile",
    "dockgate.buildctx.tarscan",
    "dockgate.buildgate",
    "dockgate.compat",
    "dockgate.config",
    "dockgate.deadline",
    "dockgate.decision",
    "dockgate.errors",
    "dockgate.event_scope",
    "dockgate.http1",
    "dockgate.http1_server",
    "dockgate.joincheck",
    "dockgate.jsonstrict",
    "dockgate.listener_spec",
    "dockgate.memo",
    "dockgate.metrics",
    "dockgate.model",
    "dockgate.policy",
    "dockgate.policy.buildcontrol",
    "dockgate.policy.cases",
    "dockgate.policy.cli",
    "dockgate.policy.controls",
    "dockgate.policy.facts",
    "dockgate.policy.fields",
    "dockgate.policy.hostpaths",
    "dockgate.policy.joins",
    "dockgate.policy.registries",
    "dockgate.policy.root_actions",
    "dockgate.policy.rules",
    "dockgate.policy.schema",
    "dockgate.policy.seccomp",
    "dockgate.policy.source",
    "dockgate.policy.spelling",
    "dockgate.query",
    "dockgate.redact",
    "dockgate.routes",
    "dockgate.routes_cli",
    "dockgate.schemas",
    "dockgate.scoping",
    "dockgate.target",
    "dockgate.tenancy",
    "dockgate.tenancy.missing",
    "dockgate.tenancy.ownership",
    "dockgate.tenancy.quota",
    "dockgate.tenancy.tenants",
    "dockgate.validation",
    "dockgate.versions",
    "dockgate.wire",
)
"""Modules that must load without Twisted or pyOpenSSL."""

IO = {
    "dockgate.buildkit.connection": "the Twisted glue of the mediated BuildKit splice",
    "dockgate.__main__": "runs the command line (cli)",
    "dockgate.admin": "the admin HTTP site (twisted.web)",
    "dockgate.audit": "the audit sink, which logs its failures through twisted.logger",
    "dockgate.audit_config": "builds the audit sink (audit)",
    "dockgate.binding": "asks the daemon through Deferreds",
    "dockgate.cli": "starts the reactor",
    "dockgate.gate": "pauses and resumes Twisted transports",
    "dockgate.kernelsplice": "reactor readers and writers for splice(2)",
    "dockgate.listeners": "builds Twisted endpoints and TLS contexts",
    "dockgate.oplog": "the operations log is twisted.logger's",
    "dockgate.peer": "reads the caller from a Twisted transport",
    "dockgate.protocol": "the client-facing Twisted protocol",
    "dockgate.reactor": "installs the reactor",
    "dockgate.server": "settings holding Twisted endpoints",
    "dockgate.splice": "joins two Twisted transports",
    "dockgate.tap": "the twistd service",
    "dockgate.tlshalfclose": "a TLS endpoint wrapper (pyOpenSSL)",
    "dockgate.upstream": "the daemon-facing Twisted protocol",
    "dockgate.writethrough": "subclasses Twisted's socket transports",
    "dockgate.fastio": "probes Twisted's transport internals",
}
"""Modules that are Twisted I/O by design, and why."""

_SRC_ROOT = str(Path(dockgate.__file__).resolve().parent.parent)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this same dockgate."""
    env = dict(os.environ, PYTHONPATH=_SRC_ROOT)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def _all_modules() -> set[str]:
    found = {"dockgate"}
    for info in pkgutil.walk_packages(dockgate.__path__, "dockgate."):
        found.add(info.name)
    return found


def test_every_module_is_placed_core_or_io() -> None:
    """Each module of the package is listed as core or as I/O (with its reason),
    and nothing is listed that does not exist, so the fence covers new modules."""
    listed = set(CORE) | set(IO)
    assert not set(CORE) & set(IO)
    assert sorted(_all_modules() - listed) == [], "place these in CORE or IO"
    assert sorted(listed - _all_modules()) == [], "these are listed but gone"


def test_core_modules_load_neither_twisted_nor_openssl() -> None:
    """Importing every core module in a fresh interpreter leaves ``twisted`` and
    ``OpenSSL`` out of ``sys.modules``; an I/O module imported as a control
    does load Twisted, so the check can fail."""
    probe = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "print(' '.join(sorted(m for m in ('twisted', 'OpenSSL') if m in sys.modules)))\n"
    )
    core = _python(probe.replace("sys.argv[1:]", repr(CORE)))
    assert core.returncode == 0, core.stderr
    assert core.stdout.strip() == "", f"the core loaded {core.stdout.strip()}"
    control = _python(probe.replace("sys.argv[1:]", repr(("dockgate.listeners",))))
    assert control.stdout.strip() == "OpenSSL twisted", control.stderr


def test_each_core_module_imports_first() -> None:
    """Each core module imports on its own in a fresh interpreter: no import
    cycle that only works when another module happens to be imported first."""
    env = dict(os.environ, PYTHONPATH=_SRC_ROOT)
    procs = {
        name: subprocess.Popen([sys.executable, "-c", f"import {name}"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for name in CORE
    }
    failed = {}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        if proc.returncode:
            failed[name] = err.strip().splitlines()[-1:]
    assert failed == {}

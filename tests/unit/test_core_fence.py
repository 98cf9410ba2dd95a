"""The fence around the pure core: parsing, routing, validation, policy,
tenancy decisions and audit records import neither Twisted nor pyOpenSSL.

The core is meant to be usable (and tested) without a reactor; nothing in
the language stops a module from importing Twisted for one constant, so this
test does.  Every module of the package is named below, either as core or as
I/O with the reason, so a new module has to be placed on one side; the README's architecture table
names every module on the same side, so the table cannot fall behind the tree.
"""

from __future__ import annotations

import ast
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import dockgate

CORE = (
    "dockgate",
    "dockgate.admission",
    "dockgate.admission.admit",
    "dockgate.admission.jsonstrict",
    "dockgate.admission.offload",
    "dockgate.admission.query",
    "dockgate.admission.routes",
    "dockgate.admission.schemas",
    "dockgate.admission.target",
    "dockgate.admission.validation",
    "dockgate.admission.versions",
    "dockgate.audit",
    "dockgate.audit.chain",
    "dockgate.audit.keys",
    "dockgate.audit.redact",
    "dockgate.audit.review",
    "dockgate.audit.rules",
    "dockgate.audit.schema",
    "dockgate.audit.session",
    "dockgate.audit.writer",
    "dockgate.buildctx",
    "dockgate.buildctx.context",
    "dockgate.buildctx.dockerfile",
    "dockgate.buildctx.hold",
    "dockgate.buildctx.tarscan",
    "dockgate.buildkit",
    "dockgate.buildkit.facts",
    "dockgate.buildkit.grpcwire",
    "dockgate.buildkit.h2relay",
    "dockgate.buildkit.mediation",
    "dockgate.buildkit.messages",
    "dockgate.buildkit.solve",
    "dockgate.cli",
    "dockgate.cli.audit",
    "dockgate.cli.policy",
    "dockgate.cli.routes",
    "dockgate.errors",
    "dockgate.http1",
    "dockgate.http1.client",
    "dockgate.http1.server",
    "dockgate.http1.wire",
    "dockgate.memo",
    "dockgate.model",
    "dockgate.policy",
    "dockgate.policy.buildcontrol",
    "dockgate.policy.cases",
    "dockgate.policy.controls",
    "dockgate.policy.denial",
    "dockgate.policy.decision",
    "dockgate.policy.facts",
    "dockgate.policy.fields",
    "dockgate.policy.hostpaths",
    "dockgate.policy.joincheck",
    "dockgate.policy.joins",
    "dockgate.policy.redact",
    "dockgate.policy.registries",
    "dockgate.policy.root_actions",
    "dockgate.policy.rules",
    "dockgate.policy.schema",
    "dockgate.policy.seccomp",
    "dockgate.policy.source",
    "dockgate.policy.spelling",
    "dockgate.proxy",
    "dockgate.proxy.deadline",
    "dockgate.proxy.fastpath",
    "dockgate.proxy.lifecycle",
    "dockgate.service",
    "dockgate.service.compat",
    "dockgate.service.config",
    "dockgate.service.listener_spec",
    "dockgate.service.metrics",
    "dockgate.tenancy",
    "dockgate.tenancy.event_scope",
    "dockgate.tenancy.holds",
    "dockgate.tenancy.missing",
    "dockgate.tenancy.ownership",
    "dockgate.tenancy.quota",
    "dockgate.tenancy.scoping",
    "dockgate.tenancy.tenants",
)
"""Modules that must load without Twisted or pyOpenSSL."""

IO = {
    "dockgate.buildkit.connection": "the Twisted glue of the mediated BuildKit splice",
    "dockgate.__main__": "runs the command line (cli)",
    "dockgate.service.admin": "the admin HTTP site (twisted.web)",
    "dockgate.audit.sink": "the audit sink, which logs its failures through twisted.logger",
    "dockgate.audit.config": "builds the audit sink (audit)",
    "dockgate.proxy.binding": "asks the daemon through Deferreds",
    "dockgate.proxy.daemon_client": "asks the daemon with treq (twisted.web.client)",
    "dockgate.cli.main": "starts the reactor",
    "dockgate.proxy.gate": "pauses and resumes Twisted transports",
    "dockgate.fastio.kernelsplice": "reactor readers and writers for splice(2)",
    "dockgate.service.listeners": "builds Twisted endpoints and TLS contexts",
    "dockgate.service.oplog": "the operations log is twisted.logger's",
    "dockgate.proxy.peer": "reads the caller from a Twisted transport",
    "dockgate.proxy.protocol": "the client-facing Twisted protocol",
    "dockgate.fastio.reactor": "installs the reactor",
    "dockgate.proxy.settings": "settings holding Twisted endpoints",
    "dockgate.proxy.splice": "joins two Twisted transports",
    "dockgate.proxy.turns": "runs costly work a step per reactor turn (callLater)",
    "dockgate.service.tap": "the twistd service",
    "dockgate.service.tlshalfclose": "a TLS endpoint wrapper (pyOpenSSL)",
    "dockgate.proxy.upstream": "the daemon-facing Twisted protocol",
    "dockgate.proxy.workers": "spawns the admission workers and reads their sockets (reactor)",
    "dockgate.fastio.writethrough": "subclasses Twisted's socket transports",
    "dockgate.fastio.sockio": "reads and writes Twisted's socket transports",
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
    control = _python(probe.replace("sys.argv[1:]", repr(("dockgate.service.listeners",))))
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


def _module_file(name: str) -> Path:
    base = Path(_SRC_ROOT) / name.replace(".", "/")
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _imports(name: str, modules: set[str]) -> set[str]:
    """The dockgate modules ``name`` imports anywhere (functions included, so a deferred
    import cannot hide a cycle), except for type checking only; ``from pkg import sub``
    counts as importing ``pkg.sub``, and a package's own ``__init__`` is not an edge for
    its submodules (Python runs it first, whichever is imported)."""
    tree = ast.parse(_module_file(name).read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test)
                   for stmt in node.body for n in ast.walk(stmt)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found & modules
            if m != name and not (name.startswith(m + ".") and _module_file(m).name == "__init__.py")}


def test_the_package_has_no_import_cycle() -> None:
    """The graph of dockgate's own imports (deferred ones included) has no cycle; the
    check finds the one ``policy.controls`` once hid in a function (a control whose
    module imported ``controls`` back)."""
    modules = _all_modules()
    graph = {m: _imports(m, modules) for m in modules}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append([*path[path.index(n):], n] if n in path else [m, n])
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m, [m])
    assert cycles == []


_README = Path(__file__).resolve().parents[2] / "README.md"


def _rows() -> dict[str, str]:
    section = _README.read_text().split("## Architecture\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for path, side in re.findall(r"^\| `([^`]+)` \| (core|I/O) \|", section, re.M):
        name = "dockgate." + path.rstrip("/").removesuffix(".py").replace("/", ".")
        rows[name.removesuffix(".__init__")] = side
    return rows


def test_readme_table_has_one_row_per_module_on_its_side() -> None:
    """Each module (package ``__init__`` files that only document their package
    aside) has a row, no row names a module that is gone, and the side agrees
    with the fence's lists."""
    rows = _rows()
    documented_only = {m for m in _all_modules()
                       if m != "dockgate" and m.count(".") == 1 and m not in rows
                       and (Path(__file__).resolve().parents[2] / m.replace(".", "/")).is_dir()}
    assert sorted(_all_modules() - {"dockgate"} - documented_only - set(rows)) == []
    assert sorted(set(rows) - _all_modules()) == []
    wrong = {m: side for m, side in rows.items() if (side == "I/O") != (m in IO)}
    assert wrong == {}

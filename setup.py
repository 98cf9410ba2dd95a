"""dockgate's build: the modules every request runs through, compiled with mypyc.

Everything else about the package is in pyproject.toml; this file only adds
the compiled modules.  A request that reaches the daemon runs through some 25
Python frames and 70 calls in these modules (HTTP/1 parsing and framing, the
exchange, the fast path, the audit record and its chain, the access line, the
reactor's dispatch); compiled, the interpreter's cost per operation, which is
most of dockgate's CPU per small request, mostly goes (benchmarks/README.md,
"mypyc (session 10)").  The wheel then holds each listed module twice: its
source, and the extension module Python imports instead.

    python -m build                   # compiled: needs a C compiler and Python's headers
    DOCKGATE_PURE=1 python -m build   # pure Python: any interpreter, any platform

The build says which it made (on standard error), and a compiled build that
cannot compile fails: it never falls back to pure Python by itself.
tests/integration/test_install.py checks that the installed wheel's modules
listed here are the compiled ones.

What mypyc needs of these modules (and keeps them to): ``mypy --strict``
clean; no method aliases in class bodies (``__call__ = record``); no
attributes set on functions (``directlyProvides``), no methods assigned on
instances (``self.record = ...``); no ``@implementer`` on a class whose methods
hold closures (``classImplements`` after it instead); a frozen dataclass that
is pickled needs a ``__reduce__`` (``model._rebuilt``); a compiled class cannot
be subclassed by interpreted code, and its module's globals are bound at
compile time, so tests replace collaborators, not module globals.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

COMPILED = (
    "dockgate/model.py",
    "dockgate/memo.py",
    "dockgate/http1/wire.py",
    "dockgate/http1/client.py",
    "dockgate/http1/server.py",
    "dockgate/proxy/deadline.py",
    "dockgate/proxy/gate.py",
    "dockgate/proxy/fastpath.py",
    "dockgate/proxy/upstream.py",
    "dockgate/proxy/protocol.py",
    "dockgate/audit/chain.py",
    "dockgate/audit/schema.py",
    "dockgate/audit/writer.py",
    "dockgate/audit/sink.py",
    "dockgate/service/oplog.py",
    "dockgate/service/metrics.py",
    "dockgate/fastio/reactor.py",
    "dockgate/fastio/sockio.py",
)
"""The modules compiled, as paths (tests/integration/test_install.py reads this)."""

PURE = "DOCKGATE_PURE"

BUILDS = frozenset({"bdist_wheel", "build", "build_ext", "install", "develop", "editable_wheel"})
"""The setup.py commands that build modules.  setuptools runs this file for every
step of a build (metadata, sdist, wheel); only these compile, the others take
no minute of mypyc's type check and say nothing."""


def _say(message: str) -> None:
    print(f"dockgate build: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    if not BUILDS.intersection((sys.argv if argv is None else argv)[1:]):
        setup()
        return
    if os.environ.get(PURE, "") not in ("", "0"):
        _say(f"pure Python ({PURE} is set): no module is compiled")
        setup()
        return
    try:
        from mypyc.build import mypycify  # noqa: PLC0415 (not needed for a pure build)
    except ImportError as e:  # only outside build isolation: pyproject.toml requires mypy
        raise SystemExit(
            f"dockgate build: mypyc is not installed ({e}); install mypy, or set {PURE}=1 "
            "for a pure-Python build") from None
    _say(f"compiling {len(COMPILED)} modules with mypyc (set {PURE}=1 for pure Python)")
    setup(ext_modules=mypycify(list(COMPILED), group_name="dockgate", opt_level="3"))


if __name__ == "__main__":
    main()

"""The ``dockgate`` command: ``serve``, ``api``, ``policy``, ``audit``, ``config``,
``import-env`` and ``version``.

The top level only picks the subcommand; each subcommand parses its own
arguments.  ``serve`` uses the same ``usage.Options`` as ``twistd dockgate``
(so the two cannot drift apart) and runs ``tap.makeService`` under the
reactor.  ``api``, ``policy`` and ``audit`` are other modules' ``main``,
imported only when those commands are used.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from twisted.logger import Logger
from twisted.python import usage

from dockgate import __version__
from dockgate.policy import PolicyError
from dockgate.service import oplog, tap
from dockgate.service.listeners import CannotListen

__all__ = ["ServeOptions", "main", "run_service", "serve"]

log = Logger()

_DELEGATES = {
    "api": "dockgate.cli.routes",
    "audit": "dockgate.cli.audit",
    "policy": "dockgate.cli.policy",
    "config": "dockgate.service.config",
    "import-env": "dockgate.service.compat",
}

_COMMANDS = """\
commands:
  serve     run the proxy (dockgate serve --help for its options)
  api       list the Engine API operations dockgate routes
  policy    check, test and explain policies
  audit     verify, show, summarise and replay audit logs; play and export sessions
  config    check config files (dockgate config check FILE)
  import-env  print the policy equivalent to docker-socket-proxy's variables
  version   print dockgate's version
"""


class ServeOptions(tap.Options):
    """``tap.Options`` plus what only makes sense outside twistd (which has its own logging)."""

    synopsis = "Usage: dockgate serve [options]"
    optParameters: ClassVar[list[list[Any]]] = [
        ["log-format", None, "text",
         "Operational log format on standard error: " + " or ".join(oplog.LOG_FORMATS) + "."],
    ]

    def opt_version(self) -> None:
        """Display dockgate's version and exit."""
        print(f"dockgate {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        """Validate the log format, then the shared options."""
        if self["log-format"] not in oplog.LOG_FORMATS:
            raise usage.UsageError(
                f"--log-format must be one of {', '.join(oplog.LOG_FORMATS)}"
            )
        super().postOptions()


def run_service(root: Any, reactor: Any) -> int:
    """Start ``root`` once the reactor runs, stop it on shutdown, and run the reactor.

    The reactor's own SIGINT and SIGTERM handlers stop it; the ``before
    shutdown`` trigger then stops the service, which closes the listeners
    (removing their socket files) before the process exits.

    Returns:
        0 after a clean shutdown, 1 if the service could not start.
    """
    failed: list[bool] = []

    def start() -> None:
        try:
            root.privilegedStartService()
            root.startService()
        except CannotListen as e:  # an operator's mistake: one line, no traceback
            log.error("dockgate could not start: {why}", why=str(e))
            failed.append(True)
            reactor.stop()
        except Exception:
            log.failure("dockgate could not start")
            failed.append(True)
            reactor.stop()

    def stop() -> Any:
        return root.stopService() if root.running else None

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
    return 1 if failed else 0


def serve(argv: Sequence[str]) -> int:
    """``dockgate serve``: parse options, set up logging and run the proxy."""
    options = ServeOptions()
    try:
        options.parseOptions(list(argv))
    except usage.UsageError as e:
        print(f"dockgate serve: {e}", file=sys.stderr)
        print("Run 'dockgate serve --help' for the options.", file=sys.stderr)
        return 2
    oplog.start_logging(sys.stderr, options["log-format"])
    options.access_stream = (sys.stderr, options["log-format"])
    # Imported only now so that nothing installs a reactor before it is needed.
    from dockgate.fastio.reactor import install  # noqa: PLC0415

    reactor = install()

    try:
        root = tap.makeService(options, reactor)
    except (PolicyError, OSError, CannotListen) as e:
        print(f"dockgate serve: {e}", file=sys.stderr)
        return 1
    except Exception:
        log.failure("dockgate could not be set up")
        return 1
    return run_service(root, reactor)


def _delegate(command: str) -> Callable[[Sequence[str]], int]:
    """Return a runner that imports ``command``'s module lazily and calls its ``main(argv)``."""
    module_name = _DELEGATES[command]

    def run(argv: Sequence[str]) -> int:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is None or not module_name.startswith(e.name):
                raise
            print(f"dockgate {command}: not available in this build ({module_name} is missing)",
                  file=sys.stderr)
            return 2
        result = module.main(list(argv))
        return int(result or 0)

    return run


def version(argv: Sequence[str]) -> int:
    """``dockgate version``: print the version."""
    print(f"dockgate {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: a command and everything after it, untouched."""
    parser = argparse.ArgumentParser(
        prog="dockgate",
        description="A protocol-level reverse proxy for the Docker Engine API.",
        epilog=_COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dockgate {__version__}")
    parser.add_argument("command", nargs="?",
                        choices=["serve", "api", "audit", "policy", "config", "import-env",
                                 "version"], metavar="command")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's own arguments")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dockgate`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    commands: dict[str, Callable[[Sequence[str]], int]] = {
        "serve": serve,
        "version": version,
        "api": _delegate("api"),
        "policy": _delegate("policy"),
        "audit": _delegate("audit"),
        "config": _delegate("config"),
        "import-env": _delegate("import-env"),
    }
    try:
        status = commands[args.command](args.args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader went away (``dockgate ... | head``): stop quietly, and keep
        # the interpreter's final flush of stdout from raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0

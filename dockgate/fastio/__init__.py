"""Switching dockgate's fast I/O on or off, once, at start-up.

Two devices make the proxy cheaper per exchange and per megabyte:
``writethrough`` (plain ``recv``/``send``, sending at once when nothing is
queued) and ``kernelsplice`` (hijacked sessions moved with ``splice(2)``).
Both read Twisted's private transport state, which no Twisted release
promises to keep, so each module probes that state when imported and stays
off where it is not as expected; ``--no-fast-io`` turns both off whatever the
probe found (to rule them out when chasing a problem).  Either way the proxy
then runs on Twisted's stock transports, which behave the same, only slower.

``configure`` is called once by ``tap.makeService``; its answer goes in the
start-up line, so the operator reads once which way it went and why.
"""

from __future__ import annotations

import twisted
from dockgate.fastio import kernelsplice, writethrough

__all__ = ["configure"]


def configure(enabled: bool) -> str:
    """Turn fast I/O on where the probes passed (``enabled``) or off; describe the outcome.

    Returns the phrase for the start-up line: ``fast I/O on``, ``fast I/O
    off (--no-fast-io)``, or, when a probe failed, which device is off and why.
    """
    writethrough.ENABLED = enabled and writethrough.PROBLEM is None
    kernelsplice.ENABLED = enabled and kernelsplice.PROBLEM is None
    if not enabled:
        return "fast I/O off (--no-fast-io)"
    off = [f"{name} off ({problem})" for name, problem in (
        ("write-through", writethrough.PROBLEM), ("kernel splice", kernelsplice.PROBLEM))
        if problem is not None]
    if not off:
        return "fast I/O on"
    return (f"fast I/O on Twisted {twisted.__version__}: {'; '.join(off)}, "
            "stock Twisted transports instead")

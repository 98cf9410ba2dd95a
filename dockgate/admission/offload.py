"""A large JSON body's admission in a worker process: what crosses, both ways.

Admitting a body near the 1 MB cap costs 15 to 25 ms of CPU (strict decode,
schema walk, canonical encode; see ``admit.HEAVY_BODY``).  None of the three
steps can be cut smaller without per-member Python, and on the reactor
thread each is a wait for every other client.  So such a body is admitted
by ``admit_body`` itself in a worker process (``proxy.workers`` runs them),
and only the outcome comes back: the function is the same, so the outcome
is the one the inline path gives, refusal for refusal and byte for byte.

What crosses must be cheap to take in on the reactor thread.  Decoding the
canonical bytes again would cost about as much as the strict decode it
replaces (a plain ``json.loads`` of the bench's 1 MB create: 3.6 ms against
5.5 ms for the strict one), whereas ``pickle.loads`` of the decoded value
costs 2.5 ms; so the worker sends the value pickled next to the canonical
bytes it forwards.  The value is needed whole: the policy, tenancy and the
audit record read any part of it.

Nothing from the worker is trusted to name code: results are read with an
unpickler that refuses every global (a JSON value is dicts, lists, strings,
numbers, booleans and None, none of which needs one), and a refusal comes
back as the name of a ``dockgate.errors`` class with its message, status and
reason, rebuilt here.  The worker is started by the reactor's process as
``python -m dockgate.admission.offload FD`` (a fresh interpreter: the reactor
is never forked) and talks on the inherited socket ``FD``; jobs and results
are frames of a 4-byte big-endian length and a pickle.
"""

from __future__ import annotations

import io
import pickle
import socket
import struct
import sys
from dataclasses import replace
from typing import Any, NoReturn

from dockgate import errors
from dockgate.admission.admit import ApiContext, admit_body
from dockgate.errors import DockgateError
from dockgate.model import CanonicalRequest

FRAME = struct.Struct("!I")
"""A frame's head: the length of the pickle after it."""

ADMITTED, REFUSED, FAILED, READY = "admitted", "refused", "failed", "ready"
"""Result kinds: canonical bytes and value; a refusal; a defect in the
worker (answered 500, as a defect inline would be); the worker has loaded
everything and takes jobs (job id 0)."""


def job_frame(job_id: int, request: CanonicalRequest, body: bytes, ctx: ApiContext) -> list[bytes]:
    """A job as the pieces of one frame, to be written in sequence."""
    payload = pickle.dumps((job_id, request, ctx, body), protocol=5)
    return [FRAME.pack(len(payload)), payload]


def run_job(payload: bytes) -> bytes:
    """Admit the body of one job frame's pickle; returns the result frame.

    Runs in the worker.  Everything ``admit_body`` raises is an answer: a
    ``DockgateError`` the refusal the client gets, anything else a defect.
    """
    job_id, request, ctx, body = pickle.loads(payload)  # noqa: S301 (dockgate's own frame)
    result: tuple[Any, ...]
    try:
        admitted = admit_body(request, body, ctx)
    except DockgateError as e:
        result = (job_id, REFUSED, type(e).__name__, e.message, e.status, e.reason)
    except Exception as e:  # a defect, reported, never a crash of the worker
        result = (job_id, FAILED, f"{type(e).__name__}: {e}")
    else:
        result = (job_id, ADMITTED, admitted.body, admitted.body_bytes)
    return _frame(result)


def _frame(result: tuple[Any, ...]) -> bytes:
    payload = pickle.dumps(result, protocol=5)
    return FRAME.pack(len(payload)) + payload


class _DataOnly(pickle.Unpickler):
    """Loads plain data; any class or function named in the stream is refused."""

    def find_class(self, module: str, name: str) -> NoReturn:
        raise pickle.UnpicklingError(f"a worker's result names {module}.{name}")


def read_result(payload: bytes) -> tuple[Any, ...]:
    """A result frame's pickle, as the tuple the worker sent (plain data only)."""
    result = _DataOnly(io.BytesIO(payload)).load()
    if not isinstance(result, tuple) or len(result) < 2 or not isinstance(result[0], int):
        raise pickle.UnpicklingError("a worker's result is not a (job id, kind, ...) tuple")
    return result


def outcome(request: CanonicalRequest, result: tuple[Any, ...]) -> CanonicalRequest:
    """What ``admit_body(request, ...)`` returned or raised, from the worker's result.

    A refusal is rebuilt as the ``dockgate.errors`` class it named; a defect in
    the worker is the 500 a defect inline gets.
    """
    kind = result[1]
    if kind == ADMITTED:
        _, _, value, encoded = result
        return replace(request, body=value, body_bytes=encoded)
    if kind == REFUSED:
        _, _, name, message, status, reason = result
        cls = getattr(errors, name, None)
        if not (isinstance(cls, type) and issubclass(cls, DockgateError)):
            cls = DockgateError
        raise cls(message, status=status, reason=reason)
    raise DockgateError("internal error while checking the request", status=500)


def serve(sock: socket.socket) -> None:
    """The worker's loop: say it is ready, then answer each job frame in turn.

    Returns when the reactor's end closes (dockgate stopped or dropped it).
    """
    reader = sock.makefile("rb")
    sock.sendall(_frame((0, READY)))
    while True:
        head = reader.read(FRAME.size)
        if len(head) < FRAME.size:
            return
        (length,) = FRAME.unpack(head)
        payload = reader.read(length)
        if len(payload) < length:
            return
        sock.sendall(run_job(payload))


def main(argv: list[str]) -> int:
    """``python -m dockgate.admission.offload FD``: serve jobs on inherited socket FD."""
    sock = socket.socket(fileno=int(argv[0]))
    try:
        serve(sock)
    except (BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass  # dockgate went away or is stopping
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

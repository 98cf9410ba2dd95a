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
audit record read any part of it.  And 2.5 ms in one piece would still be a
wait for every other client, so the value is cut into pieces of at most
``PIECE`` objects (``pieces``), loaded a piece per step of ``proxy.turns``
(0.3 to 0.6 ms each, 3 ms in all for that body).

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

import contextlib
import io
import itertools
import os
import pickle
import socket
import struct
import sys
from collections.abc import Generator
from dataclasses import replace
from typing import Any, NoReturn

from dockgate import errors
from dockgate.admission.admit import ApiContext, admit_body, run_steps
from dockgate.errors import DockgateError
from dockgate.model import CanonicalRequest

FRAME = struct.Struct("!I")
"""A frame's head: the length of the pickle after it."""

NICENESS = 10
"""How much lower the worker's CPU priority is than dockgate's: where CPUs are
scarce, the reactor thread (every other client's requests) goes first and the
large body waits (measured in ``benchmarks/bench_chunks.py``, session 10:
``/_ping`` p99 under four clients sending 1 MB creates 5-7 ms against 7-9 ms
at equal priority, on 2 busy CPUs)."""

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
        spans = admitted.body_members[2] if admitted.body_members is not None else None
        result = (job_id, ADMITTED, pieces(admitted.body), admitted.body_bytes, spans)
    except DockgateError as e:
        result = (job_id, REFUSED, type(e).__name__, e.message, e.status, e.reason)
    except Exception as e:  # a defect, reported, never a crash of the worker
        result = (job_id, FAILED, f"{type(e).__name__}: {e}")
    return _frame(result)


def _frame(result: tuple[Any, ...]) -> bytes:
    payload = pickle.dumps(result, protocol=5)
    return FRAME.pack(len(payload)) + payload


class _DataOnly(pickle.Unpickler):
    """Loads plain data; any class or function named in the stream is refused."""

    def find_class(self, module: str, name: str) -> NoReturn:
        raise pickle.UnpicklingError(f"a worker's result names {module}.{name}")


def _load(data: bytes) -> Any:
    return _DataOnly(io.BytesIO(data)).load()


def read_result(payload: bytes) -> tuple[Any, ...]:
    """A result frame's pickle, as the tuple the worker sent (plain data only;
    an admitted value still in ``pieces``, see ``outcome``)."""
    result = _load(payload)
    if not isinstance(result, tuple) or len(result) < 2 or not isinstance(result[0], int):
        raise pickle.UnpicklingError("a worker's result is not a (job id, kind, ...) tuple")
    return result


def outcome(request: CanonicalRequest, result: tuple[Any, ...]) -> CanonicalRequest:
    """What ``admit_body(request, ...)`` returned or raised, from the worker's result.

    ``outcome_steps`` run to the end at once.
    """
    return run_steps(outcome_steps(request, result))


def outcome_steps(
    request: CanonicalRequest, result: tuple[Any, ...]
) -> Generator[None, None, CanonicalRequest]:
    """``outcome`` as a generator that pauses between the pieces of the value.

    A refusal is rebuilt as the ``dockgate.errors`` class it named; a defect in
    the worker is the 500 a defect inline gets.
    """
    kind = result[1]
    if kind == ADMITTED:
        _, _, pieces, encoded, spans = result
        value = yield from load_pieces(pieces)
        members = (value, encoded, spans) if spans is not None else None
        return replace(request, body=value, body_bytes=encoded, body_members=members)
    if kind == REFUSED:
        _, _, name, message, status, reason = result
        cls = getattr(errors, name, None)
        if not (isinstance(cls, type) and issubclass(cls, DockgateError)):
            cls = DockgateError
        raise cls(message, status=status, reason=reason)
    raise DockgateError("internal error while checking the request", status=500)


PIECE = 4096
"""Most objects (containers, keys and scalars) in one piece of a value: about
0.25 ms to load (``pickle.loads`` takes about 60 ns per object)."""

_Path = tuple[str | int, ...]


def pieces(value: Any) -> list[bytes]:
    """``value`` pickled as pieces of at most about ``PIECE`` objects each.

    The first piece is the value with every container of more than ``PIECE``
    objects in all left empty; each other piece holds fills, (path, part of a
    container's members), that ``load_pieces`` adds to the container at that
    path in order.  A fill's path always names a container that an earlier
    piece made (fills are ordered by depth), so the value comes back whole and
    in its order whatever the shape: one large ``Labels`` map, or a list of many
    small objects.
    """
    fills: list[tuple[_Path, Any, int]] = []
    # A value as deep as admission lets through (about a thousand levels) takes
    # a few frames a level here: only the worker calls this, single-threaded.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 8 * limit))
    try:
        root, _ = _cut(value, (), fills)
        first = pickle.dumps(root, protocol=5)
    finally:
        sys.setrecursionlimit(limit)
    fills.sort(key=lambda fill: len(fill[0]))  # stable: a container's fills stay in order
    out = [first]
    batch: list[tuple[_Path, Any]] = []
    size = 0
    for path, part, count in fills:
        if batch and size + count > PIECE:
            out.append(pickle.dumps(batch, protocol=5))
            batch, size = [], 0
        batch.append((path, part))
        size += count
    if batch:
        out.append(pickle.dumps(batch, protocol=5))
    return out


def _cut(value: Any, path: _Path, fills: list[tuple[_Path, Any, int]]) -> tuple[Any, int]:
    """``value`` with its large containers emptied (their members queued in
    ``fills`` in parts of at most ``PIECE`` objects), and the objects it holds."""
    if isinstance(value, dict):
        if _flat(value.values()):  # the common large case (labels, env): no walk
            return _cut_flat(value, path, fills)
        members = [((key, item), n + 1) for key, (item, n) in
                   ((key, _cut(item, (*path, key), fills)) for key, item in value.items())]
        make: Any = dict
    elif isinstance(value, list):
        if _flat(value):
            return _cut_flat(value, path, fills)
        members = [_cut(item, (*path, i), fills) for i, item in enumerate(value)]
        make = list
    else:
        return value, 1
    count = 1 + sum(n for _, n in members)
    if count <= PIECE:
        return make(member for member, _ in members), count
    part: list[Any] = []
    size = 0
    for member, n in members:
        if part and size + n > PIECE:
            fills.append((path, make(part), size))
            part, size = [], 0
        part.append(member)
        size += n
    if part:
        fills.append((path, make(part), size))
    return make(), 1


def _flat(items: Any) -> bool:
    """Whether none of ``items`` is a container (a set of their types, at C speed)."""
    kinds = set(map(type, items))
    return dict not in kinds and list not in kinds


def _cut_flat(value: dict[str, Any] | list[Any], path: _Path,
              fills: list[tuple[_Path, Any, int]]) -> tuple[Any, int]:
    """``_cut`` of a map or list of scalars only: parts sliced at C speed."""
    make: Any = type(value)
    per = 2 if isinstance(value, dict) else 1  # objects a member: key and value, or value
    items = iter(value.items() if isinstance(value, dict) else value)
    count = 1 + per * len(value)
    if count <= PIECE:
        return value, count
    while part := make(itertools.islice(items, PIECE // per)):
        fills.append((path, part, per * len(part)))
    return make(), 1


def load_pieces(parts: list[bytes]) -> Generator[None, None, Any]:
    """The value ``pieces`` cut, loaded a piece per step (plain data only)."""
    root = _load(parts[0])
    for part in parts[1:]:
        yield
        for path, members in _load(part):
            target = root
            for key in path:
                target = target[key]
            if isinstance(target, dict):
                target.update(members)
            else:
                target.extend(members)
    return root


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
    with contextlib.suppress(OSError):  # a sandbox that refuses it: equal priority
        os.nice(NICENESS)
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

"""A large body's admission in a worker (``admission.offload``) gives what the
inline path gives: the same refusal (class, status, message, reason) or the
same canonical bytes and value, for valid bodies and for every kind of bad one;
and the reactor's end reads nothing from a worker but plain data."""

from __future__ import annotations

import functools
import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockgate.admission import offload
from dockgate.admission.admit import ApiContext, admit_body, admit_head
from dockgate.errors import DockgateError
from dockgate.model import CanonicalRequest

CTX = ApiContext("1.51")
SRC = str(Path(__file__).resolve().parents[2])


def head(target: str, content_type: bytes = b"application/json") -> CanonicalRequest:
    return admit_head("POST", target.encode(), [(b"content-type", content_type)], CTX)


CREATE = head("/v1.51/containers/create")


def inline(request: CanonicalRequest, body: bytes) -> Any:
    """``admit_body``'s outcome: ("ok", value, bytes, member spans) or the refusal's fields."""
    try:
        admitted = admit_body(request, body, CTX)
    except DockgateError as e:
        return (type(e), e.status, e.message, e.reason)
    return ("ok", admitted.body, admitted.body_bytes, _spans(admitted))


def _spans(request: CanonicalRequest) -> Any:
    members = request.body_members
    if members is None:
        return None
    assert members[0] is request.body and members[1] is request.body_bytes
    return members[2]


def offloaded(request: CanonicalRequest, body: bytes) -> Any:
    """The same through a job frame, ``run_job`` (the worker's part) and ``outcome``."""
    frame = b"".join(offload.job_frame(7, request, body, CTX))
    result = offload.run_job(frame[offload.FRAME.size:])
    (length,) = offload.FRAME.unpack_from(result)
    assert length == len(result) - offload.FRAME.size
    read = offload.read_result(result[offload.FRAME.size:])
    assert read[0] == 7
    try:
        admitted = offload.outcome(request, read)
    except DockgateError as e:
        return (type(e), e.status, e.message, e.reason)
    return ("ok", admitted.body, admitted.body_bytes, _spans(admitted))


def labels(n: int, value: str = "v" * 38) -> bytes:
    pairs = ",".join(f'"k{i:05}":{json.dumps(value)}' for i in range(n))
    return b'{"Image":"x","Labels":{' + pairs.encode() + b"}}"


BODIES = {
    "valid 1 MB create": labels(19990),
    "legacy top-level HostConfig fields": b'{"Image":"x","Memory":5,"Privileged":true,'
                                          b'"Cpuset":"0","Labels":{"a":"' + b"b" * 20000 + b'"}}',
    "duplicate keys": b'{"Image":"x","Labels":{"a":"1","a":"2"},"Cmd":["' + b"c" * 20000 + b'"]}',
    "case-folded duplicate fields": b'{"Image":"x","image":"y","Cmd":["' + b"c" * 20000 + b'"]}',
    "too deep": b'{"Image":"x","Deep":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "too many members": labels(20001, "v"),
    "lone surrogate": b'{"Image":"x","Labels":{"a":"\\ud800","b":"' + b"c" * 20000 + b'"}}',
    "invalid UTF-8": b'{"Image":"x","Labels":{"a":"\xff' + b"c" * 20000 + b'"}}',
    "byte-order mark": b"\xef\xbb\xbf" + labels(1000),
    "trailing data": labels(1000) + b" {}",
    "unknown field": b'{"Image":"x","Bogus":"' + b"c" * 20000 + b'"}',
    "wrong type": b'{"Image":["x"],"Cmd":["' + b"c" * 20000 + b'"]}',
    "NaN": b'{"Image":"x","Labels":{"a":NaN},"Cmd":["' + b"c" * 20000 + b'"]}',
    "whitespace only": b" " * 20000,
}


@pytest.mark.parametrize("name", list(BODIES))
def test_offloaded_admission_is_the_inline_one(name: str) -> None:
    """Each body (valid, legacy fields lifted, duplicate keys, too deep, too many
    members, lone surrogate, invalid UTF-8, BOM, trailing data, unknown field,
    wrong type, NaN, blank) is admitted with the same canonical bytes and value,
    or refused with the same class, status, message and reason, through a worker's
    job and result as by ``admit_body`` (with the same top-level member spans)."""
    body = BODIES[name]
    assert offloaded(CREATE, body) == inline(CREATE, body)


def test_the_cases_cover_both_outcomes() -> None:
    """The table above holds admitted bodies and refusals of several statuses
    (so the comparison is not between two identical failures only)."""
    outcomes = [inline(CREATE, body)[0:2] for body in BODIES.values()]
    assert ("ok",) in {o[:1] for o in outcomes}
    assert {o[1] for o in outcomes if o[0] != "ok"} == {400, 413}


def test_a_wrong_media_type_and_a_bodiless_endpoint_refuse_alike() -> None:
    """What is checked before the decoding (media type, an endpoint without a body
    schema) is refused alike as well."""
    body = labels(1000)
    for request in (head("/v1.51/containers/create", b"text/plain"),
                    head("/v1.51/containers/abc/start")):
        refused = inline(request, body)
        assert refused[0] != "ok" and refused[1] == 400
        assert offloaded(request, body) == refused


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                               max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(labels=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=20),
       extra=st.dictionaries(st.sampled_from(["Cmd", "Env", "Memory", "Bogus", "labels",
                                              "HostConfig", "Healthcheck", "Volumes"]),
                             _json, max_size=3),
       noise=st.sampled_from([b"", b"\xff", b"\\udc00", b'","Labels', b"\\\\ud800"]))
def test_property_offloaded_equals_inline(labels: dict[str, str], extra: dict[str, Any],
                                          noise: bytes) -> None:
    """For generated creates (labels, and members of any JSON shape under known,
    lower-cased and unknown names) with bytes spliced into a string (invalid UTF-8,
    a lone surrogate escape, a quote that makes a duplicate member, an escaped
    backslash), the worker's outcome equals the inline one."""
    body = json.dumps({"Image": "x", "Labels": labels, **extra}).encode()
    at = body.index(b'"x"') + 2
    body = body[:at] + noise + body[at:]
    assert offloaded(CREATE, body) == inline(CREATE, body)


def test_results_naming_code_are_not_loaded() -> None:
    """A result that names any class or function (here ``os.system``) is refused by
    the reactor's reader before anything is called; plain data loads."""
    evil = pickle.dumps((1, offload.ADMITTED, os.system, b"{}"))
    with pytest.raises(pickle.UnpicklingError, match=r"(posix|os)\.system"):
        offload.read_result(evil)
    with pytest.raises(pickle.UnpicklingError):
        offload.read_result(pickle.dumps(["not", "a", "tuple"]))
    assert offload.read_result(pickle.dumps((1, "admitted", {"a": [1.5]}, b"x"))) == (
        1, "admitted", {"a": [1.5]}, b"x")


def test_a_refusal_names_only_dockgate_errors() -> None:
    """A refusal naming something other than a ``dockgate.errors`` class becomes a
    plain DockgateError with the same status and message, never that other thing."""
    with pytest.raises(DockgateError) as exc:
        offload.outcome(CREATE, (1, offload.REFUSED, "PolicyError", "no", 400, "x"))
    assert type(exc.value) is DockgateError and exc.value.status == 400
    with pytest.raises(DockgateError) as exc:
        offload.outcome(CREATE, (1, offload.FAILED, "ZeroDivisionError: x"))
    assert exc.value.status == 500


def test_the_worker_process_serves_jobs_until_its_socket_closes() -> None:
    """``python -m dockgate.admission.offload FD`` says it is ready, answers job
    frames in order on the inherited socket with what ``run_job`` gives, and
    exits 0 when the other end closes."""
    mine, theirs = socket.socketpair()
    proc = subprocess.Popen([sys.executable, "-m", "dockgate.admission.offload",
                             str(theirs.fileno())], pass_fds=[theirs.fileno()],
                            env=dict(os.environ, PYTHONPATH=SRC))
    theirs.close()
    reader = mine.makefile("rb")

    def frame() -> tuple[Any, ...]:
        (length,) = offload.FRAME.unpack(reader.read(offload.FRAME.size))
        return offload.read_result(reader.read(length))

    try:
        assert frame() == (0, offload.READY)
        for i, name in enumerate(["valid 1 MB create", "duplicate keys"], 1):
            mine.sendall(b"".join(offload.job_frame(i, CREATE, BODIES[name], CTX)))
        valid, duplicate = frame(), frame()
        assert valid[:2] == (1, offload.ADMITTED)
        assert offload.outcome(CREATE, valid).body_bytes == inline(CREATE, BODIES[
            "valid 1 MB create"])[2]
        assert duplicate[:2] == (2, offload.REFUSED)
        mine.shutdown(socket.SHUT_WR)
        assert proc.wait(timeout=60) == 0
    finally:
        reader.close()
        mine.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _objects(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(1 + _objects(v) for v in value.values())
    if isinstance(value, list | tuple):
        return 1 + sum(_objects(v) for v in value)
    return 1


def _whole(parts: list[bytes]) -> tuple[Any, int]:
    steps, count = offload.load_pieces(parts), 0
    while True:
        try:
            next(steps)
            count += 1
        except StopIteration as done:
            return done.value, count


SHAPES = {
    "one large map": {"Image": "x", "Labels": {f"k{i}": "v" for i in range(20000)}},
    "one large list of strings": {"Env": [f"V{i}=x" for i in range(10000)], "Cmd": ["a"]},
    "a list of many small objects": {"Mounts": [{"Type": "bind", "Source": f"/s{i}",
                                                 "Target": f"/t{i}"} for i in range(3000)]},
    "large inside large": {"A": {f"k{i}": {f"j{j}": [j] for j in range(3000)} if i == 5
                                 else i for i in range(5000)}},
    "deep and small": {"a": [[[[{"b": None}]]]], "c": 1.5},
    "a scalar": "just a string",
    "as deep as admission lets through": {"A": functools.reduce(lambda v, _: [v], range(990),
                                                                 [])},
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_pieces_bring_back_the_value_in_order_a_bounded_piece_per_step(name: str) -> None:
    """A value cut into pieces loads back equal, with every map's keys in their
    order; each piece holds at most about PIECE objects, and a value over PIECE is
    loaded in several steps (one per piece after the first).  A value nested about
    as deep as admission lets through (990 levels) is cut and loaded as well."""
    value = SHAPES[name]
    limit = sys.getrecursionlimit()
    parts = offload.pieces(value)
    assert sys.getrecursionlimit() == limit  # raised only while cutting
    loaded, steps = _whole(parts)
    sys.setrecursionlimit(10 * limit)  # for this test's own walks of the deep value
    try:
        assert loaded == value
        assert json.dumps(loaded) == json.dumps(value)  # same key order throughout
        assert steps == len(parts) - 1
        for part in parts:
            assert _objects(pickle.loads(part)) <= 3 * offload.PIECE  # noqa: S301 (our own)
        assert (len(parts) > 1) == (_objects(value) > offload.PIECE)
    finally:
        sys.setrecursionlimit(limit)


def test_a_defect_in_the_worker_is_reported_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever fails in the worker after the admission (here cutting the value)
    becomes a FAILED result, which the reactor answers 500; the worker goes on."""
    def broken(value: Any) -> list[bytes]:
        raise ZeroDivisionError("cut")

    monkeypatch.setattr(offload, "pieces", broken)
    frame = b"".join(offload.job_frame(3, CREATE, BODIES["valid 1 MB create"], CTX))
    result = offload.read_result(offload.run_job(frame[offload.FRAME.size:])[4:])
    assert result == (3, offload.FAILED, "ZeroDivisionError: cut")
    with pytest.raises(DockgateError) as exc:
        offload.outcome(CREATE, result)
    assert exc.value.status == 500

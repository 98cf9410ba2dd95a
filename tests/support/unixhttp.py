"""A minimal HTTP/1.1 client over a unix socket, for readiness checks and
bookkeeping that must not depend on the code under test or on docker-py."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Callable
from typing import Any


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` connection to a unix socket path."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request(
    path: str, method: str, target: str, body: bytes | None = None, timeout: float = 30.0,
    content_type: str = "application/json", headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request on a fresh connection (a body is sent as ``content_type``, with any
    further ``headers``); returns (status, body)."""
    conn = UnixHTTPConnection(path, timeout=timeout)
    try:
        headers = {**({"Content-Type": content_type} if body is not None else {}),
                   **(headers or {})}
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def call(path: str, method: str, target: str, body: Any = None,
         timeout: float = 60.0) -> tuple[int, Any]:
    """One request with ``body`` sent as JSON; returns (status, the answer decoded as JSON,
    or its bytes when it is not JSON; None when empty)."""
    data = json.dumps(body).encode() if body is not None else None
    status, raw = request(path, method, target, data, timeout=timeout)
    try:
        return status, json.loads(raw) if raw.strip() else None
    except ValueError:
        return status, raw


def get_json(path: str, target: str, timeout: float = 30.0) -> Any:
    """GET ``target`` and decode its JSON body; raise on a non-2xx status."""
    status, body = request(path, "GET", target, timeout=timeout)
    if not 200 <= status < 300:
        raise RuntimeError(f"GET {target} on {path}: {status} {body[:300]!r}")
    return json.loads(body)


def ping(path: str, timeout: float = 2.0) -> bool:
    """True when GET /_ping on the socket answers 200 OK."""
    try:
        status, body = request(path, "GET", "/_ping", timeout=timeout)
    except OSError:
        return False
    return status == 200 and body.strip() == b"OK"


def wait_ping(path: str, deadline: float, alive: Any = None) -> None:
    """Poll /_ping until it answers or ``deadline`` (time.monotonic) passes.

    ``alive`` is an optional callable; when it returns False the wait stops
    early (the server process died).
    """
    while time.monotonic() < deadline:
        if ping(path):
            return
        if alive is not None and not alive():
            raise RuntimeError(f"the server for {path} exited before answering /_ping")
        time.sleep(0.1)
    raise TimeoutError(f"no answer to GET /_ping on {path}")


def exchange(sock_path: str, wire: bytes) -> tuple[int, bytes]:
    """Send ``wire`` on a fresh connection; the answer's status and body (the
    connection may be closed before all of ``wire`` is sent)."""
    answer = talk(sock_path, wire, 120, until=_whole_answer)
    status = int(answer.split(b" ", 2)[1]) if answer else 0
    return status, answer.partition(b"\r\n\r\n")[2]


def _whole_answer(answer: bytes) -> bool:
    """Whether ``answer`` holds a head and the whole Content-Length body it declares."""
    head_end = answer.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    lengths = [line for line in answer[:head_end].split(b"\r\n")
               if line.lower().startswith(b"content-length:")]
    return bool(lengths) and len(answer) - head_end - 4 >= int(lengths[0].split(b":")[1])


def talk(sock_path: str, wire: bytes, timeout: float = 30.0,
         until: Callable[[bytes], bool] | None = None) -> bytes:
    """Send ``wire`` on a fresh connection; everything answered until the peer
    closes, ``until(answer)`` holds or ``timeout`` passes between reads (the
    connection may be closed before all of ``wire`` is sent)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    answer = b""
    try:
        with contextlib.suppress(OSError):  # refused before the end: the connection closes
            s.sendall(wire)
        while True:
            try:
                data = s.recv(65536)
            except OSError:
                break
            if not data:
                break
            answer += data
            if until is not None and until(answer):
                break
    finally:
        s.close()
    return answer


def host_config(sock_path: str, name: str) -> dict[str, object] | None:
    """Container ``name``'s HostConfig as the daemon at ``sock_path`` has it; None
    if it does not exist."""
    status, body = request(sock_path, "GET", f"/containers/{name}/json")
    return dict(json.loads(body)["HostConfig"]) if status == 200 else None

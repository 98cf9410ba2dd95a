"""Raw HTTP/1.1 over a unix socket, as the benchmarks need it.

Deliberately small and allocation-light: the load generator must cost as
little CPU as possible, and the streaming figures must not be limited by
the client.  Only what Docker's API uses is understood: Content-Length and
chunked bodies, bodies delimited by the connection's close, and upgraded
(hijacked) connections.
"""

from __future__ import annotations

import json
import socket
from typing import Any

CHUNK = 1 << 20
"""Bytes asked of recv() at once when draining a stream."""


class HttpError(RuntimeError):
    """The peer answered something the benchmark did not expect."""


def request_bytes(
    method: str, target: str, body: bytes | None = None, headers: tuple[str, ...] = ()
) -> bytes:
    """One serialised request; a body is sent as JSON with a Content-Length."""
    lines = [f"{method} {target} HTTP/1.1", "Host: docker"]
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class Conn:
    """One persistent connection: send requests, read heads and bodies."""

    def __init__(self, path: str, timeout: float | None = 120.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise HttpError("connection closed mid-response")
        self.buf += data

    def read_head(self) -> tuple[int, dict[str, str]]:
        """Read a response head; returns (status, headers with lower-case names)."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            self._fill()
        head = self.buf[:end].decode("latin-1").split("\r\n")
        self.buf = self.buf[end + 4:]
        status = int(head[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def read_body(self, headers: dict[str, str], status: int = 200) -> bytes:
        """Read the body the head announced (none, Content-Length, chunked or to EOF)."""
        if status in (204, 304) or status < 200:
            return b""
        length = headers.get("content-length")
        if length is not None:
            n = int(length)
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
            return body
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        parts = [self.buf]
        self.buf = b""
        while data := self.sock.recv(CHUNK):
            parts.append(data)
        return b"".join(parts)

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            while (eol := self.buf.find(b"\r\n")) < 0:
                self._fill()
            size = int(self.buf[:eol].split(b";", 1)[0], 16)
            self.buf = self.buf[eol + 2:]
            while len(self.buf) < size + 2:
                self._fill()
            if size == 0:
                # No trailers from Docker: the chunk's CRLF ends the body.
                self.buf = self.buf[2:]
                return b"".join(parts)
            parts.append(self.buf[:size])
            self.buf = self.buf[size + 2:]

    def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: tuple[str, ...] = (),
    ) -> tuple[int, bytes]:
        """Send one request and read its whole response; returns (status, body)."""
        self.sock.sendall(request_bytes(method, target, body, headers))
        status, head = self.read_head()
        return status, self.read_body(head, status)

    def hijack(self, method: str, target: str, body: bytes | None = None) -> int:
        """Send an upgrading request and read the 101 head; the socket is then raw.

        Returns the number of stream bytes already buffered (left in ``buf``).
        """
        self.sock.sendall(
            request_bytes(method, target, body, ("Connection: Upgrade", "Upgrade: tcp"))
        )
        status, head = self.read_head()
        if status not in (101, 200):
            raise HttpError(f"{method} {target}: {status} {self.read_body(head, status)[:300]!r}")
        return len(self.buf)

    def skip(self, n: int) -> int:
        """Read and discard exactly ``n`` bytes (buffered first); returns ``n``."""
        take = min(n, len(self.buf))
        self.buf = self.buf[take:]
        left = n - take
        if left:
            view = memoryview(bytearray(min(left, CHUNK)))
            while left:
                got = self.sock.recv_into(view, min(left, len(view)))
                if not got:
                    raise HttpError("connection closed mid-body")
                left -= got
        return n

    def discard_body(self, headers: dict[str, str]) -> int:
        """Read the announced body without keeping it; returns its payload size."""
        length = headers.get("content-length")
        if length is not None:
            return self.skip(int(length))
        if "chunked" not in headers.get("transfer-encoding", "").lower():
            return self.drain()
        total = 0
        while True:
            while (eol := self.buf.find(b"\r\n")) < 0:
                self._fill()
            size = int(self.buf[:eol].split(b";", 1)[0], 16)
            self.buf = self.buf[eol + 2:]
            self.skip(size + 2)  # the payload and its CRLF (the last one ends the body)
            if size == 0:
                return total
            total += size

    def drain(self) -> int:
        """Read the raw socket to EOF; returns the bytes read, including ``buf``."""
        total = len(self.buf)
        self.buf = b""
        view = memoryview(bytearray(CHUNK))
        recv_into = self.sock.recv_into
        while n := recv_into(view):
            total += n
        return total


def call(path: str, method: str, target: str, payload: Any = None, ok: tuple[int, ...] = ()) -> Any:
    """One request on a fresh connection; JSON in and out; raise unless the status is ok."""
    body = None if payload is None else json.dumps(payload).encode()
    with Conn(path) as conn:
        status, data = conn.request(method, target, body)
    if not (200 <= status < 300 or status in ok):
        raise HttpError(f"{method} {target}: {status} {data[:300]!r}")
    return json.loads(data) if data.strip() and data.lstrip()[:1] in (b"{", b"[") else data

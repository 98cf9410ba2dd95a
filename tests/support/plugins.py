"""A stand-in for a legacy (v1) Docker plugin: a unix socket the test serves.

dockerd's legacy plugin discovery joins a driver name into its plugin
directories without checking it (``/run/docker/plugins/<name>.sock``, spec
files under ``/etc/docker/plugins``), so a name with ``..`` reaches any socket
on the host.  Whether dockerd connected to a ``FakePlugin`` is the oracle of
the plugin-name attack tests.
"""

from __future__ import annotations

import os
import socket
import threading

SOCKETS_DIR = "/run/docker/plugins"
"""Where both engines look for ``<name>.sock`` first (pkg/plugins discovery)."""


class FakePlugin:
    """A unix socket that answers the plugin protocol's activation, recording who called.

    It implements nothing, so the daemon gives up right after ``/Plugin.Activate``.
    """

    def __init__(self, path: str):
        self.path = path
        self.requests: list[bytes] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(8)
        self.server.settimeout(0.5)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def name(self) -> str:
        """The driver name that makes dockerd find this socket: ``../../..<path>`` without
        ``.sock`` (joined onto SOCKETS_DIR)."""
        assert self.path.endswith(".sock") and self.path.startswith("/")
        up = "/".join(".." for _ in SOCKETS_DIR.strip("/").split("/"))
        return up + self.path[: -len(".sock")]

    @property
    def activated(self) -> bool:
        """Whether a daemon has spoken the plugin protocol to this socket."""
        return any(b"POST /Plugin.Activate" in r for r in self.requests)

    def _serve(self) -> None:
        body = b'{"Implements":[]}'
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    self.requests.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker."
                                 b"plugins.v1+json\r\nContent-Length: %d\r\nConnection: close"
                                 b"\r\n\r\n%s" % (len(body), body))
                except OSError:
                    pass

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)
        self.server.close()
        os.unlink(self.path)

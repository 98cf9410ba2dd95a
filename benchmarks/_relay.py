"""The thin relay: the least work any proxy can do between a client and the daemon.

    python benchmarks/_relay.py LISTEN_PATH DAEMON_PATH

Each accepted connection gets its own connection to the daemon and two
threads, one per direction, that move bytes socket -> pipe -> socket with
blocking ``splice(2)``: no event loop, no parsing, and almost no Python per
message (the bytes never enter user space).  run.py measures the request
rates and attach through it next to dockgate and the Twisted byte pump
(``_floor.py``), so the table shows the cost of the extra hop alone (the
kernel's copies and the wake-ups of a third process) apart from the cost of
an event loop in Python.  Not a product: it checks nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import sys
import threading

_PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_MOVE = getattr(os, "SPLICE_F_MOVE", 1)


def _direction(src: socket.socket, dst: socket.socket, done: threading.Barrier) -> None:
    """Move ``src``'s bytes to ``dst`` until EOF, then pass the EOF on (half-close)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, _F_SETPIPE_SZ, _PIPE_SIZE)
    try:
        while n := os.splice(src.fileno(), w, _PIPE_SIZE, flags=_MOVE):
            while n:
                n -= os.splice(r, dst.fileno(), n, flags=_MOVE)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        # One side failed: end both directions (the other thread's blocking
        # splice returns once its source is shut down).
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
    finally:
        os.close(r)
        os.close(w)
        with contextlib.suppress(threading.BrokenBarrierError):
            done.wait()


def _serve(client: socket.socket, daemon_path: str) -> None:
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        daemon.connect(daemon_path)
    except OSError:
        client.close()
        daemon.close()
        return

    def close_both() -> None:
        client.close()
        daemon.close()

    done = threading.Barrier(2, action=close_both)
    for src, dst in ((client, daemon), (daemon, client)):
        threading.Thread(target=_direction, args=(src, dst, done), daemon=True).start()


def main() -> int:
    listen, daemon_path = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(listen)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(listen)
    server.listen(256)
    while True:
        client, _ = server.accept()
        _serve(client, daemon_path)


if __name__ == "__main__":
    sys.exit(main())

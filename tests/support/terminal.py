"""Drive a command under a real pseudo-terminal: send keys, wait for output."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence


class Terminal:
    """A process whose stdin, stdout and stderr are the slave side of a new pty."""

    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str], rows: int = 24, cols: int = 80
    ) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        try:
            self.process = subprocess.Popen(
                list(argv),
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=dict(env),
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self.argv = list(argv)
        self.master = master
        self.output = b""
        self._pos = 0
        self._eof = False

    def resize(self, rows: int, cols: int) -> None:
        """Resize the terminal as a window resize does.

        The process runs in its own session without a controlling terminal,
        so the kernel does not signal it: SIGWINCH is sent here.
        """
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.process.send_signal(signal.SIGWINCH)

    def send(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        while raw:
            n = os.write(self.master, raw)
            raw = raw[n:]

    def _read_some(self, timeout: float) -> bool:
        """Read what is available within ``timeout``; False at EOF."""
        if self._eof:
            return False
        ready, _, _ = select.select([self.master], [], [], max(timeout, 0))
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            chunk = b""
        if not chunk:
            self._eof = True
            return False
        self.output += chunk
        return True

    def expect(self, pattern: bytes | str, timeout: float = 30.0) -> re.Match[bytes]:
        """Wait for ``pattern`` (a regex) in output not yet consumed by an earlier expect."""
        regex = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.output, self._pos)
            if match:
                self._pos = match.end()
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._eof:
                raise AssertionError(
                    f"{regex.pattern!r} not seen from {' '.join(self.argv)} "
                    f"(eof={self._eof}); output tail: {self.output[-1500:]!r}"
                )
            self._read_some(min(remaining, 0.5))

    def wait(self, timeout: float = 30.0) -> int:
        """Read output until the process exits; return its exit status."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{' '.join(self.argv)} still running after {timeout}s; "
                    f"output tail: {self.output[-1500:]!r}"
                )
            if not self._read_some(0.1):
                time.sleep(0.05)
        drain_until = time.monotonic() + 1.0
        while not self._eof and time.monotonic() < drain_until:
            self._read_some(0.05)
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        with contextlib.suppress(OSError):
            os.close(self.master)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

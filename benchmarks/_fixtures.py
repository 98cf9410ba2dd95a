"""What the benchmarks run against: a private engine, its images and big tarballs.

The engine itself (start, readiness, the busybox test image, removal of its
directory) comes from the integration tests' support package, so that the
benchmark and the tests run the daemon the same way.  What only the
benchmark needs lives here: tarballs with large, incompressible files
(written in one streaming pass, never held in memory) and the process
bookkeeping around dockgate.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tarfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from _wire import call

BLOCK = 1 << 20
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


class Blob(io.RawIOBase):
    """``size`` bytes of incompressible data, made block by block on demand.

    Each 1 MiB block is one random block with its index written over its
    first bytes, so no two blocks are equal and nothing compresses.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0
        self._base = os.urandom(BLOCK)
        self._index = -1
        self._block = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        left = self.size - self.pos
        n = left if n is None or n < 0 else min(n, left)
        out = bytearray()
        while len(out) < n:
            index, offset = divmod(self.pos, BLOCK)
            if index != self._index:
                self._index = index
                self._block = index.to_bytes(8, "big") + self._base[8:]
            take = min(n - len(out), BLOCK - offset)
            out += self._block[offset:offset + take]
            self.pos += take
        return bytes(out)


class Chain(io.RawIOBase):
    """Readers one after the other, hashing (sha256) what passes through."""

    def __init__(self, parts: Iterable[io.RawIOBase | io.BytesIO]) -> None:
        self.parts = list(parts)
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` bytes, short only at the end (tarfile wants full reads)."""
        out = bytearray()
        while self.parts and (n is None or n < 0 or len(out) < n):
            want = -1 if n is None or n < 0 else n - len(out)
            data = self.parts[0].read(want)
            if not data:
                self.parts.pop(0)
            out += data
        self.sha.update(out)
        return bytes(out)


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(time.time())
    return info


def _file(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = int(time.time())
    return info


def append_blob(tar_path: Path, name: str, size: int) -> None:
    """Append ``name`` (``size`` incompressible bytes) to an uncompressed tar."""
    with tarfile.open(tar_path, "a") as tar:
        tar.addfile(_dir(os.path.dirname(name)))
        tar.addfile(_file(name, size), Blob(size))


def write_image_archive(path: Path, size: int, ref: str) -> Path:
    """Write a ``docker save``-format archive: one layer holding ``size`` random-ish bytes.

    The layer tar is streamed into the archive as it is made, and hashed on
    the way for the image config's diff id, so the archive is written once.
    """
    headers = _dir("data").tobuf(tarfile.GNU_FORMAT) + _file("data/blob", size).tobuf(
        tarfile.GNU_FORMAT
    )
    padding = -size % tarfile.BLOCKSIZE
    trailer = b"\0" * (padding + 2 * tarfile.BLOCKSIZE)
    layer_size = len(headers) + size + len(trailer)
    layer = Chain([io.BytesIO(headers), Blob(size), io.BytesIO(trailer)])
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_dir("layer"))
        tar.addfile(_file("layer/layer.tar", layer_size), layer)
        config = json.dumps({
            "architecture": _ARCH,
            "os": "linux",
            "config": {"Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + layer.sha.hexdigest()]},
            "history": [{"created_by": "dockgate benchmark"}],
        }).encode()
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        manifest = json.dumps(
            [{"Config": config_name, "RepoTags": [ref], "Layers": ["layer/layer.tar"]}]
        ).encode()
        for name, data in ((config_name, config), ("manifest.json", manifest)):
            tar.addfile(_file(name, len(data)), io.BytesIO(data))
    return path


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A field of /proc/PID/status in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_kib(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(rss_kib(self.pid))

    @property
    def peak(self) -> int:
        return max(self.samples)


def create_container(sock: str, image: str, cmd: list[str], **extra: object) -> str:
    """Create a container (network none) on ``sock``; returns its id."""
    spec = {"Image": image, "Cmd": cmd, "HostConfig": {"NetworkMode": "none"}}
    spec.update(extra)
    return str(call(sock, "POST", "/containers/create", spec)["Id"])


def remove_containers(sock: str, ids: Iterable[str]) -> None:
    """Force-remove containers, several at a time."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    def remove(ident: str) -> None:
        call(sock, "DELETE", f"/containers/{ident}?force=1&v=1", ok=(404, 409))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(remove, list(ids)))

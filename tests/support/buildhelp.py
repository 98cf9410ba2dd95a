"""Raw classic builds for the attack tests: a tar context, ``POST /build``, an image's file."""

from __future__ import annotations

import atexit
import io
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

from support import unixhttp
from support.engines import IMAGE, Engine

_MADE: list[Path] = []
"""The directories ``readable_dir`` made: removed when the test run ends (a CLI
run as another user may still read one until its test ends)."""


@atexit.register
def _remove_made() -> None:
    for d in _MADE:
        shutil.rmtree(d, ignore_errors=True)


def readable_dir(files: dict[str, str]) -> Path:
    """A fresh directory holding ``files`` (name → text) that every test user can read:
    a CLI run as a test principal (another unix user) reads it."""
    d = Path(tempfile.mkdtemp(prefix="dgfiles-"))
    _MADE.append(d)
    d.chmod(0o755)
    for name, text in files.items():
        (d / name).write_text(text)
        (d / name).chmod(0o644)
    return d


def context(files: dict[str, str]) -> bytes:
    """A tar of ``files`` (name → text), as a build context."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(sock: str, body: bytes, **query: str) -> tuple[int, str]:
    """Raw classic ``POST /build`` (networkmode none unless given); (status, answer text)."""
    target = "/build?" + urlencode({"networkmode": "none", **query}, quote_via=quote)
    conn = unixhttp.UnixHTTPConnection(sock, timeout=120)
    try:
        conn.request("POST", target, body=body, headers={"Content-Type": "application/x-tar"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def image_file(engine: Engine, tag: str, path: str) -> str | None:
    """The content of ``path`` in image ``tag`` (direct on the daemon), None if no such image."""
    if engine.docker_direct("image", "inspect", tag, check=False).returncode:
        return None
    out = engine.docker_direct("run", "--rm", "--network", "none", "--pull", "never", tag,
                               "cat", path, check=False)
    return out.stdout


@contextmanager
def tagged_base(engine_set: Mapping[str, Engine], tag: str) -> Iterator[None]:
    """The test image also tagged ``tag`` on every daemon (a name a Dockerfile would use:
    there is no registry), untagged afterwards."""
    for engine in engine_set.values():
        engine.docker_direct("tag", IMAGE, tag)
    try:
        yield
    finally:
        for engine in engine_set.values():
            engine.docker_direct("rmi", tag, check=False)

"""A web server on the host's 127.0.0.1 standing in for the host's private services.

Builds that make the daemon fetch (``ADD http://...``, ``ADD <git url>``) are
shown live against the bare daemon with this server's request log as the
oracle, then shown refused through dockgate with the log unchanged.

``Loopback.url(path)`` is a URL for ``path``; every GET is logged in ``hits``;
``connections`` counts every connection (TLS included); ``routes`` maps a path to the bytes served (others get ``secret``).  A git
repository made by ``git_repo`` is served under ``/<name>.git`` over git's
"dumb" HTTP protocol (plain files, so the same log shows git's fetches).
"""

from __future__ import annotations

import http.server
import socketserver
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Loopback

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        body = self.server.body(self.path)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Loopback(http.server.ThreadingHTTPServer):
    """The server (see the module docstring)."""

    def __init__(self, secret: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.secret = secret.encode()
        self.hits: list[str] = []
        self.routes: dict[str, bytes] = {}
        self.repos: dict[str, Path] = {}
        self.connections = 0
        """Every connection accepted, HTTP or not (a registry client speaks TLS first)."""

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1
        return True

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def body(self, path: str) -> bytes | None:
        clean = path.split("?", 1)[0]
        for name, root in self.repos.items():
            prefix = f"/{name}.git/"
            if clean.startswith(prefix):
                file = (root / clean[len(prefix):]).resolve()
                if root.resolve() in file.parents and file.is_file():
                    return file.read_bytes()
                return None
        return self.routes.get(clean, self.secret)

    def git_repo(self, name: str, files: dict[str, str]) -> str:
        """A bare repository ``name`` holding ``files`` on branch main; its URL."""
        work = Path(tempfile.mkdtemp(prefix="dglb-"))
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
        subprocess.run([*git, "init", "-q", str(work / "w")], check=True)
        for rel, text in files.items():
            (work / "w" / rel).write_text(text)
        subprocess.run([*git, "-C", str(work / "w"), "add", "-A"], check=True)
        subprocess.run([*git, "-C", str(work / "w"), "commit", "-qm", "c"], check=True)
        subprocess.run(["git", "clone", "-q", "--bare", str(work / "w"), str(work / "b.git")],
                       check=True)
        subprocess.run(["git", "-C", str(work / "b.git"), "update-server-info"], check=True)
        self.repos[name] = work / "b.git"
        return self.url(f"/{name}.git")

    def saw(self, needle: str) -> bool:
        return any(needle in hit for hit in self.hits)


_S = TypeVar("_S", bound=socketserver.BaseServer)


@contextmanager
def serving(server: _S) -> Iterator[_S]:
    """``server`` (a socketserver) serving on a thread until the block ends."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def loopback(secret: str) -> Iterator[Loopback]:
    """A running ``Loopback`` (stopped on exit)."""
    with serving(Loopback(secret)) as server:
        yield server

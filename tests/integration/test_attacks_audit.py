"""Attacks on the audit log (session 16's round, the daemon as the oracle): records
that hid what the daemon did.

* **A long query value pushed the target of a write out of the record** (both
  engines).  ``path`` is the canonical target with its query sorted by key, and
  the whole of it was clipped at 2048 characters.  A parameter that sorts first
  and takes any text (``image.create``'s ``changes``, ``image.commit``'s
  ``author``) pushed every later one past the cut: an import that writes
  ``REPO:TAG`` from the request body, or a commit of container ``C`` to
  ``REPO:TAG``, was on record as ``.../images/create?changes=ENV%20A%3Dxxx...
  [dockgate: truncated N chars]``; which image was written (or overwritten: a
  shared ``dgtest:latest`` works the same), and from what, is nowhere in the
  log.  The daemon is the oracle: the image existed under the name the record
  did not show.

Now each query value of a long target is clipped on its own
(``audit.redact.recorded_target``), so every parameter stays in the record.
The torn-line and terminal findings of the same round are unit tests
(``tests/unit/test_audit_log.py``, ``tests/unit/test_audit_review_cli.py``).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import pytest
from support import unixhttp as http
from support.buildhelp import context
from support.engines import IMAGE, Engine, unique
from support.gate import DockgateProcess

LONG = "ENV A=" + "x" * 2100


def _decided(g: DockgateProcess, start: int, endpoint: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        found = [r for r in g.audit_records(start)
                 if r.get("endpoint") == endpoint and r.get("stage") == "RequestDecided"]
        if found or time.monotonic() > deadline:
            assert found, f"no RequestDecided record of {endpoint}"
            return found[-1]
        time.sleep(0.05)


@pytest.mark.engine
def test_an_imports_record_names_its_image_behind_a_long_changes(
    engine: Engine, dockgate_process: DockgateProcess
) -> None:
    """An import with a ``changes`` value over 2048 characters: the daemon writes the
    image ``REPO:TAG`` named in the query; the RequestDecided record's path must still
    name ``fromSrc``, ``repo`` and ``tag`` (each value may be clipped, not the keys after
    a long one)."""
    repo = unique("audhide")
    start = dockgate_process.audit_size()
    target = (f"/v1.41/images/create?changes={quote(LONG, safe='')}"
              f"&fromSrc=-&repo={repo}&tag=t1")
    status, body = http.request(engine.proxy_socket, "POST", target, context({"hello": "hi"}),
                                content_type="application/x-tar")
    assert status == 200, body
    # The daemon wrote REPO:t1, with the long change applied.
    status, image = http.call(engine.daemon_socket, "GET", f"/images/{repo}:t1/json")
    try:
        assert status == 200, image
        assert f"A={'x' * 2100}" in image["Config"]["Env"]
        record = _decided(dockgate_process, start, "image.create")
        assert record["decision"] == "allow"
        path = record["path"]
        assert f"repo={repo}" in path and "tag=t1" in path and "fromSrc=-" in path, path[-80:]
    finally:
        http.call(engine.daemon_socket, "DELETE", f"/images/{repo}:t1?force=1")


@pytest.mark.engine
def test_a_commits_record_names_its_image_behind_a_long_author(
    engine: Engine, dockgate_process: DockgateProcess
) -> None:
    """A commit with an ``author`` over 2048 characters: the daemon commits container C
    to ``REPO:TAG``; the record's path must still name ``container``, ``repo`` and
    ``tag``."""
    name, repo = unique("audcommit"), unique("audhide")
    status, made = http.call(engine.daemon_socket, "POST",
                             f"/containers/create?name={name}",
                             {"Image": IMAGE, "Cmd": ["true"], "HostConfig":
                              {"NetworkMode": "none"}})
    assert status == 201, made
    try:
        start = dockgate_process.audit_size()
        target = (f"/v1.41/commit?author={quote('a' * 2100, safe='')}"
                  f"&container={name}&repo={repo}&tag=t1")
        status, body = http.call(engine.proxy_socket, "POST", target)
        assert status == 201, body
        status, image = http.call(engine.daemon_socket, "GET", f"/images/{repo}:t1/json")
        assert status == 200, image
        assert image["Author"] == "a" * 2100
        path = _decided(dockgate_process, start, "image.commit")["path"]
        assert f"container={name}" in path and f"repo={repo}" in path and "tag=t1" in path, \
            path[-80:]
    finally:
        http.call(engine.daemon_socket, "DELETE", f"/images/{repo}:t1?force=1")
        http.call(engine.daemon_socket, "DELETE", f"/containers/{name}?force=1")

"""docker compose (v2 plugin) up -d / ps / logs / down on engine 28.5."""

from __future__ import annotations

import json

import pytest
from support.engines import Engine, unique

pytestmark = pytest.mark.engine

COMPOSE = """\
services:
  web:
    image: dgtest
    pull_policy: never
    network_mode: none
    init: true
    command: ["sh", "-c", "echo web-says-$$((6*7)); exec sleep 300"]
  worker:
    image: dgtest
    pull_policy: never
    network_mode: none
    init: true
    volumes: ["shared:/data"]
    command: ["sh", "-c", "echo worker-ready > /data/state; cat /data/state; exec sleep 300"]
volumes:
  shared: {}
"""


def test_compose_up_ps_logs_down(engine28: Engine) -> None:
    """docker compose up, ps, logs and down work through dockgate and leave no containers or volumes
    behind."""
    engine = engine28
    project = unique("proj")
    workdir = engine.workdir / project
    workdir.mkdir()
    (workdir / "compose.yaml").write_text(COMPOSE)

    def compose(*args: str, timeout: float = 120) -> str:
        out = engine.docker("compose", "-p", project, *args, cwd=workdir, timeout=timeout)
        return str(out.stdout)

    compose("up", "-d", "--wait")
    rows = [json.loads(line) for line in compose("ps", "--format", "json").splitlines() if line]
    assert sorted(r["Service"] for r in rows) == ["web", "worker"]
    assert all(r["State"] == "running" for r in rows), rows
    logs = compose("logs", "--no-color")
    assert "web-says-42" in logs
    assert "worker-ready" in logs
    compose("down", "--volumes", timeout=180)
    remaining = engine.docker(
        "ps", "-a", "--filter", f"label=com.docker.compose.project={project}", "--format", "{{.ID}}"
    )
    assert remaining.stdout.strip() == ""
    volumes = engine.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert f"{project}_shared" not in volumes

"""``dockgate api routes`` output."""

from __future__ import annotations

import json

import pytest

from dockgate.admission.routes import ROUTES
from dockgate.cli.routes import main


def test_routes_json(capsys: pytest.CaptureFixture[str]) -> None:
    """dockgate api routes --json lists every route with method, path, body kind, schema presence,
    query parameters, hijack flag and version range."""
    assert main(["routes", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(ROUTES)
    by_id = {r["id"]: r for r in rows}
    create = by_id["container.create"]
    assert create["method"] == "POST"
    assert create["path"] == "/containers/create"
    assert create["body"] == "json"
    assert create["body_schema"] is True
    assert create["query_schema"] is True
    assert "name" in create["query_params"]
    assert by_id["exec.start"]["hijack"] is True
    assert by_id["image.load"]["body"] == "stream"
    assert by_id["volume.update"]["versions"] == "1.42-1.51"


def test_routes_table(capsys: pytest.CaptureFixture[str]) -> None:
    """dockgate api routes prints a header and one row per route, marking hijacked ones."""
    assert main(["routes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["ID", "METHOD", "PATH"]
    assert len(lines) == len(ROUTES) + 1
    assert any(line.startswith("build.session") and " yes " in line for line in lines)


def test_usage_error() -> None:
    """An unknown subcommand exits with a usage error."""
    with pytest.raises(SystemExit):
        main(["nope"])

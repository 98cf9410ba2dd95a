"""Every operation in the reference specs has a route and a schema.

Reads /work/shared/reference (or $DOCKGATE_REFERENCE) as data: the v1.18
Markdown and the v1.41/v1.51 OpenAPI documents.  v1.56-dev is checked only
for the operations it adds, which must be listed in ``NOT_YET``.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from importlib import resources
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from support.doubles import endpoint_for

from dockgate.admission.routes import ENDPOINTS, ROUTES
from dockgate.admission.schemas import load_snapshot
from dockgate.admission.versions import SNAPSHOTS, compare_versions

REF = Path(os.environ.get("DOCKGATE_REFERENCE", "/work/shared/reference"))
pytestmark = pytest.mark.skipif(not REF.is_dir(), reason="reference specs not available")

NOT_YET = {("GET", "/images/{name}/attestations")}
"""Operations of engine-api-v1.56-dev.yaml beyond MAX_API_VERSION."""


@cache
def openapi_ops(version: str) -> list[tuple[str, str]]:
    doc = yaml.safe_load((REF / f"engine-api-v{version}.yaml").read_text())
    return [(m.upper(), p) for p, item in doc["paths"].items() for m in item
            if m in ("get", "post", "put", "delete", "head")]


def markdown_ops() -> list[tuple[str, str]]:
    text = (REF / "docker-remote-api-v1.18.md").read_text()
    ops = []
    for m in re.finditer(r"^`(GET|POST|PUT|DELETE|HEAD) (/[^`]*)`$", text, re.M):
        path = re.sub(r"\([^)]*\)", "{x}", m.group(2)).split("?")[0]
        ops.append((m.group(1), path))
    return sorted(set(ops))


def test_markdown_has_43_endpoints() -> None:
    """The API 1.18 reference lists 43 endpoints (so the routing check below reads the whole
    document)."""
    assert len(markdown_ops()) == 43


@pytest.mark.parametrize(("method", "path"), markdown_ops())
def test_v1_18_endpoints_are_routed(method: str, path: str) -> None:
    """Every endpoint of the API 1.18 reference is routed, available since 1.18, and has a schema in
    the oldest snapshot."""
    ep = endpoint_for(method, path)
    assert ep is not None, f"no route for {method} {path}"
    assert compare_versions(ep.since, "1.18") <= 0
    schemas = load_snapshot(SNAPSHOTS[0])
    assert schemas.has_endpoint(ep.id), f"no v{SNAPSHOTS[0]} schema for {ep.id}"


@pytest.mark.parametrize("version", SNAPSHOTS)
def test_openapi_endpoints_have_route_and_schema(version: str) -> None:
    """Every operation of each OpenAPI snapshot has a route and a schema, and a body schema when its
    body is JSON."""
    schemas = load_snapshot(version)
    missing = []
    for method, path in openapi_ops(version):
        ep = endpoint_for(method, path)
        if ep is None:
            missing.append(f"route {method} {path}")
            continue
        if not schemas.has_endpoint(ep.id):
            missing.append(f"schema {ep.id}")
        elif ep.body == "json" and schemas.body_walker(ep.id) is None and ep.id not in (
            "container.start", "image.push"
        ):
            missing.append(f"body schema {ep.id}")
    assert not missing


def test_every_route_has_a_schema_where_it_exists() -> None:
    """Every route has a schema in every snapshot within its version range."""
    for route in ROUTES:
        ep = route.endpoint
        for snap in SNAPSHOTS:
            if compare_versions(snap, ep.since) < 0:
                continue
            if ep.until is not None and compare_versions(snap, ep.until) > 0:
                continue
            assert load_snapshot(snap).has_endpoint(ep.id), (snap, ep.id)


def test_dev_spec_additions_are_known() -> None:
    """The operations the development spec adds beyond 1.51 are exactly the known list of not-yet-
    supported ones."""
    newest = set(openapi_ops("1.51"))
    dev = set(openapi_ops("1.56-dev"))
    added = {(m, re.sub(r"\{[^}]*\}", "{name}", p)) for m, p in dev - newest}
    assert added == NOT_YET


def test_snapshot_count_matches() -> None:
    """The snapshots hold 106 and 107 operations, and every route is one endpoint."""
    assert len(openapi_ops("1.41")) == 106
    assert len(openapi_ops("1.51")) == 107
    assert len(ENDPOINTS) == len(ROUTES)


def test_every_snapshot_schema_compiles() -> None:
    """Every snapshot's query and body schemas compile into walkers (a broken
    schema fails here, not on the first request that needs it)."""
    count = 0
    for snap in SNAPSHOTS:
        schemas = load_snapshot(snap)
        for endpoint_id in schemas.raw():
            count += len(schemas.query_walkers(endpoint_id))
            count += schemas.body_walker(endpoint_id) is not None
    assert count > 50


@pytest.mark.parametrize("version", SNAPSHOTS)
def test_body_schemas_are_valid_json_schema(version: str) -> None:
    """The stored documents are a JSON Schema subset; a standard validator accepts them."""
    doc = json.loads(resources.files("dockgate.admission.schemas").joinpath(f"v{version}.json")
                     .read_text("utf-8"))
    bodies = {i: e["body"] for i, e in doc["endpoints"].items() if "body" in e}
    Draft202012Validator.check_schema({"$defs": doc["$defs"], "properties": bodies})

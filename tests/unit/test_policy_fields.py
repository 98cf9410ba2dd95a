"""The closed world of fields: every body field and query parameter of every
state-changing operation, in every schema snapshot dockgate routes, has a
classification in ``dockgate.policy.fields`` (inert, host-level, or a control
the policy schema knows).

v1.18 to v1.41 are validated against ``v1.41.json`` and v1.42 to v1.51 against
``v1.51.json`` (``dockgate.admission.versions.snapshot_for``), so walking both snapshots
covers every version dockgate accepts.  A new snapshot (or a regenerated one
with new fields) fails here until each new field is classified.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from dockgate.admission.routes import ENDPOINTS
from dockgate.admission.schemas import load_snapshot
from dockgate.admission.versions import SNAPSHOTS, snapshot_for
from dockgate.policy import fields
from dockgate.policy.schema import CONTROLS


def _paths(defs: Mapping[str, Any], schema: Any, prefix: str, seen: frozenset[str]) -> Iterator[str]:
    """Every field path below ``schema`` (``.`` members, ``[]`` items, ``{}`` map values)."""
    if not isinstance(schema, Mapping):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name not in seen:
            yield from _paths(defs, defs[name], prefix, seen | {name})
        return
    props = schema.get("properties") or {}
    for key, sub in props.items():
        path = f"{prefix}.{key}" if prefix else key
        yield path
        yield from _paths(defs, sub, path, seen)
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping) and not props:
        yield prefix + "{}"
        yield from _paths(defs, extra, prefix + "{}", seen)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield prefix + "[]"
        yield from _paths(defs, items, prefix + "[]", seen)


def _write_operations() -> list[tuple[str, str]]:
    out = []
    for snap in SNAPSHOTS:
        raw = load_snapshot(snap).raw()
        out += [(snap, eid) for eid in sorted(raw)
                if eid in ENDPOINTS and ENDPOINTS[eid].method in fields.WRITE_METHODS]
    return out


def _structural(endpoint_id: str, path: str) -> bool:
    """Whether ``path`` is an object or array whose parts are classified one by one
    (so it needs no classification of its own)."""
    tree = fields._TREES.get(endpoint_id)
    node = fields._follow(tree[0], path) if tree else None
    return node is not None and node.kind is None and bool(
        node.members or node.items is not None or node.values is not None)


def _classes(snap: str, eid: str) -> list[tuple[str, str | None]]:
    doc = load_snapshot(snap)
    entry = doc.raw()[eid]
    defs = doc._defs
    found = [(p, fields.classify(eid, p))
             for p in sorted(set(_paths(defs, entry.get("body"), "", frozenset())))]
    found += [(f"?{q}", fields.classify(eid, f"?{q}")) for q in sorted(entry.get("query") or {})]
    return found


def test_snapshots_cover_v1_18_to_v1_51() -> None:
    """The snapshots walked here are the ones that validate v1.18 and v1.51."""
    assert snapshot_for("1.18") in SNAPSHOTS and snapshot_for("1.51") in SNAPSHOTS
    assert len(_write_operations()) > 100


@pytest.mark.parametrize(("snap", "eid"), _write_operations())
def test_every_field_is_classified(snap: str, eid: str) -> None:
    """Each field and query parameter of a write operation has a known classification."""
    assert eid in fields.FIELDS, f"{eid} (v{snap}) is missing from fields.FIELDS"
    unclassified = [p for p, c in _classes(snap, eid)
                    if c is None and not _structural(eid, p)]
    assert not unclassified, f"{eid} v{snap}: unclassified {unclassified}"
    unknown = [(p, c) for p, c in _classes(snap, eid)
               if c is not None and c not in (fields.INERT, fields.HOST) and c not in CONTROLS]
    assert not unknown, f"{eid} v{snap}: classified by controls the policy lacks: {unknown}"


def test_every_write_route_is_in_the_table() -> None:
    """Every routed POST/PUT/DELETE, even one without body or query, has an entry."""
    missing = [e.id for e in ENDPOINTS.values()
               if e.method in fields.WRITE_METHODS and e.id not in fields.FIELDS]
    assert not missing


def test_table_names_only_real_fields() -> None:
    """No stale entries: every classified path exists in some snapshot (typos fail)."""
    real: dict[str, set[str]] = {}
    for snap in SNAPSHOTS:
        doc = load_snapshot(snap)
        for eid, entry in doc.raw().items():
            s = real.setdefault(eid, set())
            s.update(_paths(doc._defs, entry.get("body"), "", frozenset()))
            s.update(f"?{q}" for q in entry.get("query") or {})
    extra = {"container.start": {"?checkpoint", "?checkpoint-dir"},
             "container.create": {"HostConfig.Capabilities"}}
    stale = [(eid, p) for eid, table in fields.FIELDS.items() for p in table
             if p not in ("", "[]") and p not in real.get(eid, set())
             and p not in extra.get(eid, set())]
    assert not stale


def test_present_reports_unclassified_and_host_fields() -> None:
    """A walk over a body names each unit once with its class; unknown keys are None."""
    body = {"Image": "x", "Bogus": 1,
            "HostConfig": {"OomScoreAdj": -5, "Annotations": {"a": "b"},
                           "Mounts": [{"Type": "volume", "Source": "v",
                                       "VolumeOptions": {"DriverConfig": {"Name": "local"}}}]}}
    got = {p.field: p.kind for p in fields.present("container.create", body, (("name", "c"),))}
    assert got == {
        "Image": "images", "Bogus": None, "HostConfig.OomScoreAdj": "oom_score_adj",
        "HostConfig.Annotations": "host", "HostConfig.Mounts[0].Type": "mount_types",
        "HostConfig.Mounts[0].Source": "host_paths",
        "HostConfig.Mounts[0].VolumeOptions.DriverConfig": "volume_options",
        "query.name": "inert",
    }


def test_mount_subpaths_are_host_level() -> None:
    """A volume or image mount's ``Subpath`` is host-level (engine 28.5 resolves it with the
    host's symlinks first, an existence oracle), while the rest of those options keeps its class."""
    mounts = [{"Type": "volume", "Source": "v", "Target": "/x",
               "VolumeOptions": {"Subpath": "a", "NoCopy": True}},
              {"Type": "image", "Source": "i", "Target": "/y", "ImageOptions": {"Subpath": "b"}}]
    refused = fields.present("container.create", {"HostConfig": {"Mounts": mounts}}, (),
                             everything=False)
    assert [(p.field, p.kind) for p in refused] == [
        ("HostConfig.Mounts[0].VolumeOptions.Subpath", "host"),
        ("HostConfig.Mounts[1].ImageOptions.Subpath", "host")]
    assert fields.classify("container.create", "HostConfig.Mounts[].ImageOptions") == "images"
    empty = [{**mounts[0], "VolumeOptions": {"Subpath": ""}}]
    assert fields.present("container.create", {"HostConfig": {"Mounts": empty}}, (),
                          everything=False) == []


def test_checked_reads_are_routed_reads_in_the_table() -> None:
    """Each read the closed world also judges is a routed GET with an entry, and each harmless
    spelling belongs to a host-level field of the table."""
    for eid in fields.CHECKED_READS:
        assert ENDPOINTS[eid].method == "GET" and eid in fields.FIELDS
    for eid, path in fields.HARMLESS:
        assert fields.classify(eid, path) == fields.HOST, (eid, path)

"""``dockgate api routes [--json]``: list the operations dockgate knows.

Policy authors need the endpoint ids and what dockgate can see of each
(query and body schemas, whether the body streams past unseen, whether the
connection is hijacked); printing the route table answers that without reading
source.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dockgate.admission.routes import ROUTES
from dockgate.admission.schemas import load_snapshot
from dockgate.admission.versions import MAX_API_VERSION, SNAPSHOTS, compare_versions


def describe() -> list[dict[str, Any]]:
    """One record per endpoint, in route-table order."""
    snaps = {s: load_snapshot(s) for s in SNAPSHOTS}
    rows: list[dict[str, Any]] = []
    for route in ROUTES:
        ep = route.endpoint
        present = [s for s in SNAPSHOTS
                   if compare_versions(s, ep.since) >= 0
                   and (ep.until is None or compare_versions(s, ep.until) <= 0)]
        latest = snaps[present[-1]] if present else snaps[SNAPSHOTS[0]]
        query = latest.query_spec(ep.id)
        rows.append({
            "id": ep.id,
            "method": ep.method,
            "path": ep.template,
            "since": ep.since,
            "until": ep.until,
            "versions": f"{ep.since}-{ep.until or MAX_API_VERSION}",
            "body": ep.body,
            "hijack": ep.hijack,
            "query_schema": query is not None,
            "query_params": sorted(query or {}),
            "body_schema": ep.body == "json" and latest.body_walker(ep.id) is not None,
        })
    return rows


def main(argv: list[str]) -> int:
    """Entry point for ``dockgate api ...``; ``argv`` excludes ``dockgate api``."""
    parser = argparse.ArgumentParser(prog="dockgate api")
    sub = parser.add_subparsers(dest="command", required=True)
    routes = sub.add_parser("routes", help="list the Engine API operations dockgate routes")
    routes.add_argument("--json", action="store_true", help="one JSON document")
    args = parser.parse_args(argv)
    if args.command != "routes":  # pragma: no cover - argparse rejects others
        return 2
    rows = describe()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    header = ("ID", "METHOD", "PATH", "VERSIONS", "BODY", "HIJACK", "QUERY", "BODY-SCHEMA")
    table = [header] + [
        (r["id"], r["method"], r["path"], r["versions"], r["body"],
         "yes" if r["hijack"] else "-", "yes" if r["query_schema"] else "-",
         "yes" if r["body_schema"] else "-")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                         + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

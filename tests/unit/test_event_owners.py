"""Who owns the volumes and networks a tenant's event stream names (scripted daemon)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import unquote

from dockgate.tenancy import OWNER_LABEL, Tenant
from dockgate.tenancy.scoping import owned_objects, owns_object

A = Tenant(name="team-a")
MINE = {OWNER_LABEL: "team-a"}


def daemon(answers: dict[str, tuple[int, Any]]) -> tuple[list[str], Any]:
    asked: list[str] = []

    async def fetch(method: str, target: str, body: Any) -> tuple[int, Any]:
        asked.append(unquote(target))
        return answers.get(target.split("?", maxsplit=1)[0], (0, None))

    return asked, fetch


def test_owned_objects_lists_the_tenants_volumes_and_networks_with_their_age() -> None:
    """owned_objects asks the daemon for the tenant's volumes and networks by label filter, re-
    checks each label (the filter is not trusted), and dates each by its creation time (0 when it
    cannot be read)."""
    asked, fetch = daemon({
        "/volumes": (200, {"Volumes": [
            {"Name": "data", "Labels": MINE, "CreatedAt": "2026-11-27T04:05:06Z"},
            {"Name": "odd", "Labels": MINE, "CreatedAt": "yesterday"},  # cannot be placed
            {"Name": "spoof", "Labels": {OWNER_LABEL: "team-b"}},  # the filter is not trusted
        ]}),
        "/networks": (200, [{"Id": "n1" * 32, "Labels": MINE}, {"Id": "n2", "Labels": None}]),
    })
    owned = asyncio.run(owned_objects(A, fetch))
    assert owned == [(("volume", "data"), 1795752306), (("network", "n1" * 32), 0)]
    label = json.dumps({"label": {f"{OWNER_LABEL}=team-a": True}})
    assert asked == [f"/volumes?filters={label}", f"/networks?filters={label}"]


def test_a_daemon_that_does_not_answer_owns_nothing_for_the_tenant() -> None:
    """When the daemon fails to answer, the tenant owns nothing (fail closed)."""
    _, fetch = daemon({"/volumes": (500, None)})
    assert asyncio.run(owned_objects(A, fetch)) == []
    assert asyncio.run(owns_object(("volume", "data"), A, fetch)) is None


def test_owns_object_asks_about_exactly_the_object_named() -> None:
    """owns_object inspects exactly the named object (escaped) and says whether the tenant owns it,
    with its age."""
    asked, fetch = daemon({
        "/volumes/a%2Fb": (200, {"Name": "a/b", "Labels": MINE,
                                 "CreatedAt": "2026-11-27T04:05:06+00:00"}),
        "/networks/n1": (200, {"Id": "n1", "Labels": MINE}),
        "/networks/n2": (200, {"Id": "n2", "Labels": {OWNER_LABEL: "team-b"}}),
    })
    assert asyncio.run(owns_object(("volume", "a/b"), A, fetch)) == 1795752306
    assert asyncio.run(owns_object(("network", "n1"), A, fetch)) == 0
    assert asyncio.run(owns_object(("network", "n2"), A, fetch)) is None
    assert asyncio.run(owns_object(("volume", "gone"), A, fetch)) is None
    assert asked[:3] == ["/volumes/a/b", "/networks/n1", "/networks/n2"]

"""Engine API versions: which ones dockgate knows, how they compare, and how
the daemon's advertised version is clamped so clients negotiate a known one.

Why clamp: clients (docker CLI, compose, buildx, docker-py with
``version="auto"``) read ``Api-Version`` from ``/_ping`` or ``ApiVersion``
from ``/version`` and then speak ``min(their own, the daemon's)``.  If a newer
daemon advertises a version dockgate has no schemas for, every request would be
refused as an unknown version; clamping makes clients pick ``MAX_API_VERSION``
instead, which the daemon still serves (it accepts every version between its
minimum and its own).

Comparison mirrors moby's ``api/types/versions.compare``: dot-separated
integers, a missing part counts as 0.  Only the canonical spelling
``<major>.<minor>`` without leading zeros is accepted in a request, because the
daemon's comparison would read ``1.041`` or ``1.41.0`` as ``1.41`` while a
naive string comparison in a policy would not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

MIN_API_VERSION = "1.18"
"""Oldest API version dockgate routes (the oldest reference snapshot)."""

MAX_API_VERSION = "1.51"
"""Newest API version dockgate has schemas for (engine 28.x)."""

SNAPSHOTS: tuple[str, ...] = ("1.41", "1.51")
"""API versions of the OpenAPI snapshots that dockgate's schemas are generated from."""

_CANONICAL = re.compile(r"(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})")


def parse_version(text: str) -> tuple[int, int] | None:
    """``"1.41"`` -> ``(1, 41)``; None unless ``text`` is a canonical ``X.Y`` spelling."""
    m = _CANONICAL.fullmatch(text)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2))


@lru_cache(maxsize=256)
def version_key(text: str) -> tuple[int, ...]:
    """A sort key with the daemon's comparison rules (non-numeric parts count as 0)."""
    parts = []
    for p in text.split("."):
        parts.append(int(p) if p.isdigit() else 0)
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


@lru_cache(maxsize=256)
def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, equal to, or newer than ``b`` (moby's rules)."""
    ka, kb = version_key(a), version_key(b)
    n = max(len(ka), len(kb))
    pa, pb = ka + (0,) * (n - len(ka)), kb + (0,) * (n - len(kb))
    return (pa > pb) - (pa < pb)


@lru_cache(maxsize=256)
def is_known_version(text: str) -> bool:
    """Whether ``text`` is a canonical version within [MIN_API_VERSION, MAX_API_VERSION]."""
    if parse_version(text) is None:
        return False
    return (compare_versions(text, MIN_API_VERSION) >= 0
            and compare_versions(text, MAX_API_VERSION) <= 0)


@lru_cache(maxsize=256)
def snapshot_for(version: str) -> str:
    """The schema snapshot that validates requests made at ``version``.

    A version between two snapshots uses the newer one: fields are added to the
    API far more often than removed, and the daemon's Go structs (which decode
    every version's requests) are a superset too, so the newer snapshot never
    rejects what an older client legitimately sends.  1.18 to 1.41 therefore use
    the 1.41 snapshot, 1.42 to 1.51 the 1.51 one.
    """
    for snap in SNAPSHOTS:
        if compare_versions(version, snap) <= 0:
            return snap
    return SNAPSHOTS[-1]


@lru_cache(maxsize=256)
def clamp_api_version(daemon_value: str) -> str:
    """The ``Api-Version`` header value to pass to clients for the daemon's value.

    Newer than MAX_API_VERSION (or unparseable) becomes MAX_API_VERSION, so that
    negotiating clients never pick a version dockgate would refuse; anything
    else passes through unchanged.
    """
    value = daemon_value.strip()
    if parse_version(value) is None or compare_versions(value, MAX_API_VERSION) > 0:
        return MAX_API_VERSION
    return value


def clamp_min_api_version(daemon_value: str) -> str:
    """The ``MinAPIVersion`` to pass on: never below MIN_API_VERSION, never above MAX."""
    value = daemon_value.strip()
    if parse_version(value) is None:
        return MIN_API_VERSION
    if compare_versions(value, MIN_API_VERSION) < 0:
        return MIN_API_VERSION
    if compare_versions(value, MAX_API_VERSION) > 0:
        return MAX_API_VERSION
    return value


def clamp_version_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a decoded ``GET /version`` body with ``ApiVersion`` and
    ``MinAPIVersion`` clamped, including those of the ``Components`` entries'
    ``Details`` (the ``Engine`` component repeats them).

    Clients such as docker-py read ``ApiVersion`` from this body to negotiate.
    """
    out = dict(body)
    if isinstance(out.get("ApiVersion"), str):
        out["ApiVersion"] = clamp_api_version(out["ApiVersion"])
    if isinstance(out.get("MinAPIVersion"), str):
        out["MinAPIVersion"] = clamp_min_api_version(out["MinAPIVersion"])
    comps = out.get("Components")
    if isinstance(comps, list):
        new_comps: list[Any] = []
        for comp in comps:
            if isinstance(comp, dict) and isinstance(comp.get("Details"), dict):
                details = dict(comp["Details"])
                if isinstance(details.get("ApiVersion"), str):
                    details["ApiVersion"] = clamp_api_version(details["ApiVersion"])
                if isinstance(details.get("MinAPIVersion"), str):
                    details["MinAPIVersion"] = clamp_min_api_version(details["MinAPIVersion"])
                new_comps.append({**comp, "Details": details})
                continue
            new_comps.append(comp)
        out["Components"] = new_comps
    return out

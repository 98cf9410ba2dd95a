"""versions.py: comparison with moby's rules, snapshot mapping, clamping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockgate.admission.versions import (
    MAX_API_VERSION,
    MIN_API_VERSION,
    clamp_api_version,
    clamp_min_api_version,
    clamp_version_body,
    compare_versions,
    is_known_version,
    parse_version,
    snapshot_for,
)


@pytest.mark.parametrize(("a", "b", "want"), [
    ("1.41", "1.41", 0), ("1.41.0", "1.41", 0), ("1.041", "1.41", 0), ("1.9", "1.10", -1),
    ("1.51", "1.41", 1), ("2", "1.99", 1), ("x", "0", 0),
])
def test_compare_like_moby(a: str, b: str, want: int) -> None:
    """Versions compare as moby's versions.Compare does: numerically per part, missing parts as
    zero, junk as zero."""
    assert compare_versions(a, b) == want


def test_parse_only_canonical() -> None:
    """Only canonical major.minor versions parse; leading zeros, a third part, missing parts and
    padding do not."""
    assert parse_version("1.41") == (1, 41)
    for bad in ("1.041", "01.41", "1.41.0", "1", "", "1.", ".1", " 1.41"):
        assert parse_version(bad) is None


def test_known_range() -> None:
    """The known range runs from MIN_API_VERSION to MAX_API_VERSION; 1.17 and 1.52 are outside it.
    """
    assert is_known_version(MIN_API_VERSION)
    assert is_known_version(MAX_API_VERSION)
    assert not is_known_version("1.17")
    assert not is_known_version("1.52")


@pytest.mark.parametrize(("version", "snap"), [
    ("1.18", "1.41"), ("1.24", "1.41"), ("1.41", "1.41"), ("1.42", "1.51"), ("1.51", "1.51"),
])
def test_snapshot_mapping(version: str, snap: str) -> None:
    """Each API version validates against the right schema snapshot (1.41 up to 1.41, 1.51 above).
    """
    assert snapshot_for(version) == snap


@pytest.mark.parametrize(("daemon", "out"), [
    ("1.41", "1.41"), ("1.51", "1.51"), ("1.52", MAX_API_VERSION), ("1.56", MAX_API_VERSION),
    ("garbage", MAX_API_VERSION), (" 1.45 ", "1.45"),
])
def test_clamp_api_version(daemon: str, out: str) -> None:
    """The daemon's version is clamped to the newest known; a garbled one counts as the newest,
    padding is trimmed."""
    assert clamp_api_version(daemon) == out


def test_clamp_min() -> None:
    """The daemon's minimum version is clamped into the known range."""
    assert clamp_min_api_version("1.12") == MIN_API_VERSION
    assert clamp_min_api_version("1.24") == "1.24"
    assert clamp_min_api_version("1.60") == MAX_API_VERSION


def test_clamp_version_body() -> None:
    """A /version answer has its API versions clamped (top level and Engine component) without
    touching other components or the input."""
    body = {"Version": "29.0.0", "ApiVersion": "1.52", "MinAPIVersion": "1.24",
            "Components": [{"Name": "Engine", "Version": "29.0.0",
                            "Details": {"ApiVersion": "1.52", "MinAPIVersion": "1.24"}},
                           {"Name": "containerd", "Details": {"GitCommit": "x"}}]}
    out = clamp_version_body(body)
    assert out["ApiVersion"] == MAX_API_VERSION
    assert out["MinAPIVersion"] == "1.24"
    assert out["Components"][0]["Details"]["ApiVersion"] == MAX_API_VERSION
    assert out["Components"][1] == body["Components"][1]
    assert body["ApiVersion"] == "1.52"  # input untouched


@given(st.integers(1, 3), st.integers(0, 99))
def test_clamped_value_is_always_known(major: int, minor: int) -> None:
    """Property: a clamped version is never above the newest known."""
    out = clamp_api_version(f"{major}.{minor}")
    assert compare_versions(out, MAX_API_VERSION) <= 0

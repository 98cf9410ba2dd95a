"""The wheel-contents check of tests/support/packaging.py (used by
tests/integration/test_install.py and scripts/test.sh): what the tracked tree
says must ship, and that a gap is named."""

from __future__ import annotations

from support import packaging

TRACKED = [
    "README.md",
    "dockgate/__init__.py",
    "dockgate/cli/main.py",
    "dockgate/policies",  # the symlink to policies/
    "dockgate/admission/schemas/__init__.py",
    "dockgate/admission/schemas/v1.41.json",
    "dockgate/tenancy/__init__.py",
    "dockgate/tenancy/quota.py",
    "policies/privileged.yaml",
    "policies/tests/privileged.yaml",
    "tests/unit/test_cli.py",
    "twisted/plugins/dockgate_plugin.py",
]
COMPLETE_WHEEL = [
    "dockgate/__init__.py",
    "dockgate/cli/main.py",
    "dockgate/admission/schemas/__init__.py",
    "dockgate/admission/schemas/v1.41.json",
    "dockgate/tenancy/__init__.py",
    "dockgate/tenancy/quota.py",
    "dockgate/policies/privileged.yaml",
    "dockgate/policies/tests/privileged.yaml",
    "twisted/plugins/dockgate_plugin.py",
    "dockgate-0.1.0.dist-info/RECORD",
]


def test_a_complete_wheel_lacks_nothing() -> None:
    """Modules, schemas, profiles (at dockgate/policies/) and the plugin, all
    present: nothing is reported; README and tests are not expected."""
    assert packaging.missing_from_wheel(TRACKED, COMPLETE_WHEEL) == []


def test_a_subpackage_left_out_is_named() -> None:
    """A wheel built from a package list without dockgate.tenancy (the bug of
    issue 17) is reported file by file."""
    wheel = [n for n in COMPLETE_WHEEL if not n.startswith("dockgate/tenancy/")]
    assert packaging.missing_from_wheel(TRACKED, wheel) == [
        "dockgate/tenancy/__init__.py",
        "dockgate/tenancy/quota.py",
    ]


def test_profiles_schemas_and_plugin_are_required() -> None:
    """The profiles are expected where they install, not where they live in the
    tree; schemas and the twistd plugin are expected too."""
    assert packaging.missing_from_wheel(TRACKED, ["dockgate/__init__.py", "dockgate/cli/main.py"]) == [
        "dockgate/admission/schemas/__init__.py",
        "dockgate/admission/schemas/v1.41.json",
        "dockgate/policies/privileged.yaml",
        "dockgate/policies/tests/privileged.yaml",
        "dockgate/tenancy/__init__.py",
        "dockgate/tenancy/quota.py",
        "twisted/plugins/dockgate_plugin.py",
    ]


def test_the_tracked_tree_expects_every_module_under_dockgate() -> None:
    """On the real tree: every tracked .py under dockgate/ and every profile is
    expected in the wheel (so a new subpackage is covered without a list)."""
    tracked = packaging.tracked_files()
    expected = packaging.expected_in_wheel(tracked)
    modules = {p for p in tracked if p.startswith("dockgate/") and p.endswith(".py")}
    assert modules <= expected
    assert "dockgate/tenancy/__init__.py" in expected
    assert {f"dockgate/{p}" for p in tracked if p.startswith("policies/")} <= expected

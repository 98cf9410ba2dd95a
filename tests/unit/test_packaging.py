"""The wheel-contents check of tests/support/packaging.py (used by
tests/integration/test_install.py and scripts/test.sh): what the tracked tree
says must ship, and that a gap is named."""

from __future__ import annotations

import runpy
import sys
import types
from typing import Any

import pytest
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


class _Build:
    """setup.py's ``main`` with ``setup`` and mypyc's ``mypycify`` recorded, not run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, mypyc: bool = True) -> None:
        self.setups: list[dict[str, Any]] = []
        """The keyword arguments of each ``setup`` call."""
        self.compiled: list[list[str]] = []
        self.main = runpy.run_path(str(packaging.REPO / "setup.py"), run_name="setup")["main"]
        monkeypatch.setitem(self.main.__globals__, "setup", lambda **kw: self.setups.append(kw))
        build = types.ModuleType("mypyc.build")
        build.mypycify = self.mypycify  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "mypyc", types.ModuleType("mypyc"))
        monkeypatch.setitem(sys.modules, "mypyc.build", build if mypyc else None)

    def mypycify(self, paths: list[str], **options: Any) -> list[str]:
        self.compiled.append(paths)
        return ["extensions"]


def test_the_build_compiles_the_listed_modules(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """By default setup.py hands its list to mypyc and says so; every listed module is a
    tracked module of the package."""
    monkeypatch.delenv("DOCKGATE_PURE", raising=False)
    build = _Build(monkeypatch)
    build.main(["setup.py", "bdist_wheel", "--dist-dir", "dist"])
    (paths,) = build.compiled
    assert "dockgate/proxy/protocol.py" in paths
    assert set(paths) <= set(packaging.tracked_files())
    assert build.setups == [{"ext_modules": ["extensions"]}]
    assert f"compiling {len(paths)} modules with mypyc" in capsys.readouterr().err


def test_a_pure_build_compiles_nothing_and_says_so(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """DOCKGATE_PURE=1 builds pure Python, and the build says it did."""
    monkeypatch.setenv("DOCKGATE_PURE", "1")
    build = _Build(monkeypatch)
    build.main(["setup.py", "bdist_wheel"])
    assert build.compiled == [] and build.setups == [{}]
    assert "pure Python (DOCKGATE_PURE is set)" in capsys.readouterr().err


def test_without_mypyc_the_build_fails_rather_than_build_pure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiled build that cannot import mypyc stops with the fix, never falls back."""
    monkeypatch.delenv("DOCKGATE_PURE", raising=False)
    build = _Build(monkeypatch, mypyc=False)
    with pytest.raises(SystemExit) as stopped:
        build.main(["setup.py", "build_ext", "--inplace"])
    assert "mypyc is not installed" in str(stopped.value)
    assert "DOCKGATE_PURE=1" in str(stopped.value)
    assert build.setups == []


def test_metadata_and_sdist_steps_compile_nothing(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The steps of a build that make no modules (metadata, the sdist) run no mypyc and
    say nothing; the wheel step is the one that compiles."""
    monkeypatch.delenv("DOCKGATE_PURE", raising=False)
    build = _Build(monkeypatch)
    for step in ("egg_info", "dist_info", "sdist"):
        build.main(["setup.py", step, "--output-dir", "x"])
    assert build.compiled == [] and build.setups == [{}, {}, {}]
    assert capsys.readouterr().err == ""


def test_a_wheel_without_an_extension_module_is_named() -> None:
    """The compiled-wheel check wants each listed module's extension module, whatever
    its platform suffix."""
    names = ["dockgate/proxy/protocol.cpython-311-x86_64-linux-gnu.so",
             "dockgate/proxy/protocol.py", "dockgate/audit/sink.py"]
    assert packaging.uncompiled_in_wheel(["dockgate.proxy.protocol", "dockgate.audit.sink"],
                                         names) == ["dockgate.audit.sink"]


def _repo(tmp_path: Any) -> Any:
    """A git work tree with one tracked module (what ``tracked_files`` lists)."""
    import subprocess  # noqa: PLC0415

    repo = tmp_path / "repo"
    (repo / "dockgate").mkdir(parents=True)
    (repo / "dockgate" / "__init__.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def _fake_build(outdir: Any, repo: Any) -> tuple[Any, Any]:
    """Stands in for ``python -m build``: an sdist and a wheel holding the tree's module."""
    sdist = outdir / "dockgate-0.1.0.tar.gz"
    wheel = outdir / "dockgate-0.1.0-py3-none-any.whl"
    for path in (sdist, wheel):
        path.write_bytes((repo / "dockgate" / "__init__.py").read_bytes())
    return sdist, wheel


@pytest.fixture
def counted_builds(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The output directories ``packaging.build`` really built into (``_fake_build``
    stands in for ``python -m build``), in order; no build of an earlier test or of
    the environment (``DOCKGATE_BUILT``, ``DOCKGATE_PURE``) is known."""
    made: list[Any] = []

    def counting_build(outdir: Any, repo: Any) -> tuple[Any, Any]:
        made.append(outdir)
        return _fake_build(outdir, repo)

    monkeypatch.setattr(packaging, "_build", counting_build)
    monkeypatch.setattr(packaging, "_last_built", [])
    monkeypatch.delenv("DOCKGATE_BUILT", raising=False)
    monkeypatch.delenv("DOCKGATE_PURE", raising=False)
    return made


def test_a_build_of_the_same_tree_is_copied_not_made_again(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, counted_builds: list[Any]
) -> None:
    """``build`` copies the sdist and wheel of ``DOCKGATE_BUILT`` when its stamp is the
    tree's digest now; after any tracked file changes, or the build kind does, it
    builds again (a stale wheel is never taken for the tree)."""
    repo = _repo(tmp_path)
    made = counted_builds
    first = tmp_path / "dist"
    packaging.build(first, repo)
    assert made == [first]
    monkeypatch.setenv("DOCKGATE_BUILT", str(first))
    monkeypatch.setattr(packaging, "_last_built", [])

    sdist, wheel = packaging.build(tmp_path / "again", repo)
    assert made == [first]  # copied
    assert wheel.parent == tmp_path / "again" and wheel.read_bytes() == b"x = 1\n"
    assert sdist.name == "dockgate-0.1.0.tar.gz"

    (repo / "dockgate" / "__init__.py").write_text("x = 2\n")
    _, wheel = packaging.build(tmp_path / "changed", repo)
    assert made == [first, tmp_path / "changed"]
    assert wheel.read_bytes() == b"x = 2\n"

    monkeypatch.setenv("DOCKGATE_BUILT", str(tmp_path / "changed"))
    monkeypatch.setenv("DOCKGATE_PURE", "1")
    packaging.build(tmp_path / "pure", repo)
    assert made[-1] == tmp_path / "pure"


def test_the_process_reuses_its_own_last_build_while_it_exists(
    tmp_path: Any, counted_builds: list[Any]
) -> None:
    """Without ``DOCKGATE_BUILT`` the second build of one tree in a process copies the
    first; once the first's directory is gone (a test's temporary one), it builds."""
    import shutil  # noqa: PLC0415

    repo = _repo(tmp_path)
    made = counted_builds
    packaging.build(tmp_path / "a", repo)
    packaging.build(tmp_path / "b", repo)
    assert made == [tmp_path / "a"]
    shutil.rmtree(tmp_path / "a")
    shutil.rmtree(tmp_path / "b")
    packaging.build(tmp_path / "c", repo)
    assert made == [tmp_path / "a", tmp_path / "c"]

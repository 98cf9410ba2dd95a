"""dockgate as users install it: built from a clean copy of the tracked tree,
installed from its wheel into a fresh virtual environment.

Used by tests/integration/test_install.py, and run by scripts/test.sh to build
the wheel the suite is tested against::

    python tests/support/packaging.py build OUTDIR       # sdist and wheel (compiled, or
                                                         # pure with DOCKGATE_PURE=1)
    python tests/support/packaging.py wheelhouse WHEEL[EXTRAS] DIR

The copy holds only what ``git ls-files`` lists (tracked, plus new files not
ignored), so a file that exists only in one developer's checkout (a stray
``build/``, an untracked module) cannot hide a packaging gap.  The wheel is
built from the sdist, as ``python -m build`` does, so the sdist is checked
too.

A build is stamped with a digest of the tree it was made from (every tracked
file's path and bytes, and whether it is pure Python): ``build`` takes the
sdist and wheel of the directory ``DOCKGATE_BUILT`` names (scripts/test.sh
sets it to the ``dist`` it built at the start of the run), or of its own last
build in this process, when that stamp is the tree's now, instead of compiling
the same tree again (about 90 s each for the install and image tests).
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The package source and what is installed inside it from elsewhere: the
# profiles live at the top level (policies/) and install as dockgate/policies;
# the twistd plugin is a file in Twisted's namespace package.
PACKAGE = "dockgate/"
SHIPPED_ELSEWHERE = {"policies/": "dockgate/policies/", "twisted/plugins/": "twisted/plugins/"}


def tracked_files(repo: Path = REPO) -> list[str]:
    """The files a fresh clone would have once the work in progress is
    committed: tracked ones still present, and new ones that are not ignored."""
    out = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True,
    ).stdout.decode()
    return sorted({p for p in out.split("\0") if p and os.path.lexists(repo / p)})


def expected_in_wheel(tracked: Iterable[str]) -> set[str]:
    """What the wheel must contain: every tracked file under dockgate/, the
    shipped profiles and the twistd plugin, at their installed paths.

    ``dockgate/policies`` itself is a symlink to policies/ (one tracked
    entry, not a directory); its files count under policies/.
    """
    expected: set[str] = set()
    for path in tracked:
        if path == PACKAGE + "policies" or path.endswith((".pyc", "/")):
            continue
        if path.startswith(PACKAGE):
            expected.add(path)
        for source, installed in SHIPPED_ELSEWHERE.items():
            if path.startswith(source):
                expected.add(installed + path[len(source):])
    return expected


def missing_from_wheel(tracked: Iterable[str], wheel_names: Iterable[str]) -> list[str]:
    """The installed paths the tracked tree says must ship and the wheel lacks."""
    return sorted(expected_in_wheel(tracked) - set(wheel_names))


def pure_build() -> bool:
    """Whether builds are asked for pure Python (``DOCKGATE_PURE``, as setup.py reads it)."""
    return os.environ.get("DOCKGATE_PURE", "") not in ("", "0")


def compiled_modules(repo: Path = REPO) -> list[str]:
    """The modules setup.py compiles with mypyc (its ``COMPILED``), as dotted names;
    read from the file, not imported (importing it would build)."""
    tree = ast.parse((repo / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [
                "COMPILED"]:
            paths = ast.literal_eval(node.value)
            return [path.removesuffix(".py").replace("/", ".") for path in paths]
    raise ValueError("setup.py has no COMPILED")


def uncompiled_in_wheel(modules: Iterable[str], wheel_names: Iterable[str]) -> list[str]:
    """The ``modules`` the wheel holds no extension module for (``a/b.cpython-311-….so``)."""
    names = set(wheel_names)
    return sorted(m for m in modules if not any(
        re.fullmatch(re.escape(m.replace(".", "/")) + r"\.[^./]+(\.[^./]+)*\.so", n)
        for n in names))


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def clean_copy(dest: Path, repo: Path = REPO) -> Path:
    """Copy the tracked tree (symlinks as symlinks) to ``dest``."""
    for rel in tracked_files(repo):
        src, dst = repo / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)
    return dest


STAMP = "build.stamp"
"""The file, beside a built sdist and wheel, holding ``tree_stamp`` of their tree."""

_last_built: list[Path] = []
"""The output directory of this process's last ``build``."""


def tree_stamp(repo: Path = REPO) -> str:
    """A digest of what a build of ``repo`` is made from: each tracked file's path
    and content (a symlink's target), whether the build is pure Python, and the
    Python that builds it (a compiled wheel is for one interpreter)."""
    digest = hashlib.sha256(b"pure" if pure_build() else b"compiled")
    digest.update(f"\0{sys.executable}\0{sys.version}".encode())
    for rel in tracked_files(repo):
        path = repo / rel
        data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
        digest.update(b"\0%d\0%s\0" % (len(data), rel.encode()))
        digest.update(data)
    return digest.hexdigest()


def _built(directory: Path, stamp: str) -> tuple[Path, Path] | None:
    """The sdist and wheel in ``directory`` if they are a build of the tree ``stamp``."""
    try:
        if (directory / STAMP).read_text().strip() != stamp:
            return None
    except OSError:
        return None
    sdists = list(directory.glob("dockgate-*.tar.gz"))
    wheels = list(directory.glob("dockgate-*.whl"))
    return (sdists[0], wheels[0]) if len(sdists) == len(wheels) == 1 else None


def build(outdir: Path, repo: Path = REPO) -> tuple[Path, Path]:
    """Build the sdist from a clean copy and the wheel from that sdist into
    ``outdir``; return (sdist, wheel).  A build of the same tree already made
    (``DOCKGATE_BUILT``, or this process's last) is copied instead."""
    outdir = outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    stamp = tree_stamp(repo)
    earlier = [Path(os.environ["DOCKGATE_BUILT"])] if os.environ.get("DOCKGATE_BUILT") else []
    for directory in (*earlier, *_last_built):
        found = _built(directory.resolve(), stamp)
        if found is not None and directory.resolve() != outdir:
            copies = tuple(Path(shutil.copy2(path, outdir)) for path in found)
            (outdir / STAMP).write_text(stamp + "\n")
            return copies[0], copies[1]
    sdist, wheel = _build(outdir, repo)
    (outdir / STAMP).write_text(stamp + "\n")
    _last_built[:] = [outdir]
    return sdist, wheel


def _build(outdir: Path, repo: Path) -> tuple[Path, Path]:
    with tempfile.TemporaryDirectory(prefix="dgbuild") as tmp:
        src = clean_copy(Path(tmp) / "src", repo)
        built = subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(outdir), str(src)],
            check=False, capture_output=True, text=True, cwd=tmp,
        )
        if built.returncode:
            raise RuntimeError(f"python -m build failed:\n{built.stdout}{built.stderr}")
        # setup.py says whether it compiled or built pure Python: pass that on.
        for line in (built.stdout + built.stderr).splitlines():
            if line.startswith("dockgate build: "):
                print(line, file=sys.stderr)
    (sdist,) = outdir.glob("dockgate-*.tar.gz")
    (wheel,) = outdir.glob("dockgate-*.whl")
    return sdist, wheel


def wheelhouse(requirement: str, dest: Path) -> Path:
    """``pip wheel`` a requirement and its dependencies into ``dest``, so venvs
    (and the container image) install from it with ``--no-index``."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                    "--wheel-dir", str(dest), requirement], check=True)
    return dest


def wheels_to_install(dest: Path) -> Path:
    """Build the sdist and wheel into ``dest/dist`` and gather the wheel with
    its runtime dependencies in ``dest/wheels``, what a venv or the container
    image installs from with ``--no-index``; return the wheel.

    The dependencies come from ``DOCKGATE_WHEELHOUSE`` (scripts/test.sh fills
    it), else from the index pip is configured with.
    """
    _sdist, wheel = build(dest / "dist")
    house = os.environ.get("DOCKGATE_WHEELHOUSE")
    offline = ["--no-index", "--find-links", house] if house else []
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                    *offline, "--wheel-dir", str(dest / "wheels"), str(wheel)], check=True)
    return wheel


def make_venv(path: Path, requirement: str, wheels: Path) -> Path:
    """A fresh venv at ``path`` (no system site-packages) with ``requirement``
    installed from ``wheels`` only; return its bin directory."""
    subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(path)],
                   check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(path / "bin" / "python"),
                    "install", "-q", "--disable-pip-version-check", "--no-index",
                    "--find-links", str(wheels), requirement], check=True)
    return path / "bin"


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "build":
        _sdist, wheel = build(Path(argv[1]))
        missing = missing_from_wheel(tracked_files(), wheel_names(wheel))
        if missing:
            print(f"{wheel.name} lacks tracked files: {', '.join(missing)}", file=sys.stderr)
            return 1
        uncompiled = [] if pure_build() else \
            uncompiled_in_wheel(compiled_modules(), wheel_names(wheel))
        if uncompiled:
            print(f"{wheel.name} lacks the compiled {', '.join(uncompiled)}", file=sys.stderr)
            return 1
        print(wheel)
        return 0
    if len(argv) == 3 and argv[0] == "wheelhouse":
        wheelhouse(argv[1], Path(argv[2]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

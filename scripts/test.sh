#!/usr/bin/env bash
# The test command: installs what the tests need (on a fresh Debian bookworm
# machine too), builds dockgate's wheel, installs it into a fresh venv, then
# runs ruff and mypy --strict on the source and pytest against the installed
# wheel, whose request path is compiled with mypyc (setup.py; a C compiler and
# Python's headers, which scripts/install-engines.sh installs). Exits non-zero
# when any of them fails. Extra arguments go to pytest, e.g.
#   scripts/test.sh tests/unit -x
# Environment:
#   DOCKGATE_SKIP_INSTALL=1   skip apt and refreshing the wheelhouse (a quick
#                             re-run; the wheel is still rebuilt and installed).
#   DOCKGATE_TEST_EDITABLE=1  the fast local path: test the source tree through
#                             an editable install into $PYTHON, no wheel (pure
#                             Python: DOCKGATE_PURE=1).
#   DOCKGATE_PURE=1           build and test the pure-Python wheel instead.
#   DOCKGATE_TEST_VENV=DIR    the venv the wheel is tested in (default .venv-test,
#                             recreated each run).
#   DOCKGATE_WHEELHOUSE=DIR   dependency wheels (default dist/wheels): the venv,
#                             the install test and the container image install
#                             from it with --no-index.
#   DOCKGATE_TEST_DIRECT=1    run the client suite against the daemons directly.
#   DOCKGATE_TEST_WORKERS=N   pytest workers (pytest-xdist, whole files each; each
#                             worker starts its own two engines). Default 3: the
#                             suite mostly waits on the daemons (builds, container
#                             starts), so three workers keep 2 cores busy. 0 runs
#                             in one process.
#   PYTHON=python3.11         the interpreter to build with and test on.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python
EDITABLE=${DOCKGATE_TEST_EDITABLE:-}
[ "$EDITABLE" = 0 ] && EDITABLE=
VENV=${DOCKGATE_TEST_VENV:-$PWD/.venv-test}
export DOCKGATE_WHEELHOUSE=${DOCKGATE_WHEELHOUSE:-$PWD/dist/wheels}
section() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
die() { echo "$*" >&2; exit 1; }
started=$(date +%s)
quiet=(-q --disable-pip-version-check)

if [ -z "${DOCKGATE_SKIP_INSTALL:-}" ]; then
  section "install: engines, clients, busybox, debootstrap, systemd, python3-venv"
  if [ "$(id -u)" -eq 0 ]; then
    PYTHON=$PYTHON bash scripts/install-engines.sh || die "scripts/install-engines.sh failed"
  else
    sudo -n env PYTHON="$PYTHON" bash scripts/install-engines.sh || die "scripts/install-engines.sh needs root"
  fi
fi

if [ -n "$EDITABLE" ]; then
  # The source tree is what runs: pure Python (setup.py would otherwise compile
  # the request path in place, and the extension modules would shadow edits).
  export DOCKGATE_PURE=1
  if [ -z "${DOCKGATE_SKIP_INSTALL:-}" ]; then
    section "install: editable package and test dependencies into $PYTHON"
    # compat mode puts the checkout on sys.path, where twistd looks for
    # twisted/plugins/dockgate_plugin.py (setuptools' default editable
    # finder does not).
    "$PYTHON" -m pip install "${quiet[@]}" -e '.[test]' \
      --config-settings editable_mode=compat || die "pip install failed"
  fi
  PY=$PYTHON
  PYTEST=("$PYTHON" -m pytest)
else
  section "build: sdist and wheel from the tracked tree; venv $VENV"
  # The venv builds the wheel too, so the system's Python needs no packages
  # (Debian's is externally managed): only its venv module.
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || die "$PYTHON -m venv failed (on Debian: apt-get install python3-venv)"
  PY=$VENV/bin/python
  if [ -z "${DOCKGATE_SKIP_INSTALL:-}" ] || ! ls "$DOCKGATE_WHEELHOUSE"/build-*.whl >/dev/null 2>&1; then
    "$PY" -m pip install "${quiet[@]}" build || die "pip install build failed"
  else
    "$PY" -m pip install "${quiet[@]}" --no-index --find-links "$DOCKGATE_WHEELHOUSE" build \
      || die "pip install build (from $DOCKGATE_WHEELHOUSE) failed"
  fi
  rm -f dist/dockgate-*
  # Also checks that the wheel holds every tracked module and profile.
  wheel=$("$PY" tests/support/packaging.py build dist) || die "building the wheel failed"
  echo "built $wheel"
  # The install and image tests take this build (stamped with the tree's digest)
  # instead of compiling the same tree again.
  export DOCKGATE_BUILT=$PWD/dist
  if [ -z "${DOCKGATE_SKIP_INSTALL:-}" ] || [ ! -d "$DOCKGATE_WHEELHOUSE" ]; then
    section "install: dependency wheels into $DOCKGATE_WHEELHOUSE"
    "$PY" tests/support/packaging.py wheelhouse "$wheel[test]" "$DOCKGATE_WHEELHOUSE" \
      || die "pip wheel failed"
    rm -f "$DOCKGATE_WHEELHOUSE"/dockgate-*.whl  # only dependencies live there
  fi
  section "install: the wheel and its test extras into $VENV"
  "$PY" -m pip install "${quiet[@]}" --no-index --find-links "$DOCKGATE_WHEELHOUSE" \
    "$wheel[test]" || die "installing $wheel failed"
  # The suite imports and runs the installed dockgate: nothing may put the
  # source tree first (tests/conftest.py refuses to run if it is).
  export DOCKGATE_TEST_INSTALLED=1
  unset PYTHONPATH
  # pytest's console script, not `python -m pytest`, which would put the
  # working directory (the checkout) on sys.path.
  PYTEST=("$VENV/bin/pytest")
fi
[ -z "${DOCKGATE_SKIP_INSTALL:-}" ] && echo "install took $(( $(date +%s) - started ))s"

failed=()
section "ruff check"
"$PY" -m ruff check . || failed+=(ruff)

section "mypy --strict dockgate"
"$PY" -m mypy --strict dockgate || failed+=(mypy)

section "pytest"
# importlib mode: test files in different folders may share a basename
# (tests/unit/test_x.py and tests/integration/test_x.py); tests/conftest.py
# puts tests/ on sys.path for the support package.
workers=${DOCKGATE_TEST_WORKERS:-3}
parallel=()
[ "$workers" != 0 ] && parallel=(-n "$workers" --dist loadfile)
"${PYTEST[@]}" --import-mode=importlib -ra --durations=15 "${parallel[@]}" "$@"
rc=$?
case $rc in
  0) ;;
  5) echo "pytest collected no tests (exit 5)" >&2 ;;
  *) failed+=("pytest (exit $rc)") ;;
esac

section "unit tests on the newest Twisted"
# writethrough.py and kernelsplice.py lean on Twisted's private transport
# state, and pyproject.toml bounds Twisted below the next major: this step
# tells, before users do, whether the newest release on the package index
# still passes tests/unit (the probes, the socketpair tests of both devices
# and everything else that runs on a reactor). A second, small venv; skipped
# with a note when the index has nothing newer than what was tested above.
newest=$("$PY" -m pip index versions twisted 2>/dev/null | sed -n 's/^twisted (\(.*\))$/\1/p')
tested=$("$PY" -c 'import twisted; print(twisted.__version__)')
if [ -z "$newest" ]; then
  echo "skipped: the package index did not list Twisted"
elif [ "$newest" = "$tested" ]; then
  echo "skipped: the newest Twisted on the index ($newest) is the one tested above"
else
  NEWEST_VENV=$VENV-twisted-newest
  rm -rf "$NEWEST_VENV"
  "$PYTHON" -m venv "$NEWEST_VENV" || die "$PYTHON -m venv failed"
  # dockgate and its test extras as above, then Twisted itself past the pin
  # (pip notes the conflict with dockgate's bound and installs it anyway).
  if [ -n "$EDITABLE" ]; then
    "$NEWEST_VENV/bin/python" -m pip install "${quiet[@]}" '.[test]'
  else
    "$NEWEST_VENV/bin/python" -m pip install "${quiet[@]}" --find-links "$DOCKGATE_WHEELHOUSE" \
      "$wheel[test]"
  fi && "$NEWEST_VENV/bin/python" -m pip install "${quiet[@]}" "twisted==$newest" \
    || failed+=("installing Twisted $newest")
  echo "Twisted $newest (tested above: $tested)"
  env -u PYTHONPATH DOCKGATE_TEST_INSTALLED=1 "$NEWEST_VENV/bin/pytest" --import-mode=importlib \
    -q tests/unit || failed+=("tests/unit on Twisted $newest")
fi

section "done in $(( $(date +%s) - started ))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "all checks passed"

#!/usr/bin/env bash
# The test command: installs what the tests need (on a fresh Debian bookworm
# machine too), then runs ruff, mypy --strict and pytest. Exits non-zero when
# any of them fails. Extra arguments go to pytest, e.g.
#   scripts/test.sh tests/unit -x
# Environment:
#   DOCKGATE_SKIP_INSTALL=1   skip the apt/pip step (for a quick re-run).
#   DOCKGATE_TEST_DIRECT=1    run the client suite against the daemons directly.
#   PYTHON=python3.11         the interpreter to install into and test with.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python
section() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
started=$(date +%s)

if [ -z "${DOCKGATE_SKIP_INSTALL:-}" ]; then
  section "install: engines, clients, busybox"
  if [ "$(id -u)" -eq 0 ]; then
    bash scripts/install-engines.sh || { echo "scripts/install-engines.sh failed" >&2; exit 1; }
  else
    sudo -n bash scripts/install-engines.sh || { echo "scripts/install-engines.sh needs root" >&2; exit 1; }
  fi
  section "install: python package and test dependencies"
  "$PYTHON" -m pip install -q --disable-pip-version-check -e '.[test]' \
    --config-settings editable_mode=compat || { echo "pip install failed" >&2; exit 1; }
  echo "install took $(( $(date +%s) - started ))s"
fi

failed=()
section "ruff check"
"$PYTHON" -m ruff check . || failed+=(ruff)

section "mypy --strict dockgate"
"$PYTHON" -m mypy --strict dockgate || failed+=(mypy)

section "pytest"
# importlib mode: test files in different folders may share a basename
# (tests/unit/test_x.py and tests/integration/test_x.py); tests/conftest.py
# puts tests/ on sys.path for the support package.
"$PYTHON" -m pytest --import-mode=importlib -ra --durations=15 "$@"
rc=$?
case $rc in
  0) ;;
  5) echo "pytest collected no tests (exit 5)" >&2 ;;
  *) failed+=("pytest (exit $rc)") ;;
esac

section "done in $(( $(date +%s) - started ))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "all checks passed"

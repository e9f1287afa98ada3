#!/usr/bin/env bash
# The whole test suite, with its set-up: the Python reference implementation
# for the crypto cross-check and a running local PostgreSQL. Under CI=true a
# missing dependency fails the run instead of skipping tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# psec: the reference implementation the PIN-block cross-check compares with;
# cryptography: what scripts/pin-tool.py (run by the README walkthrough) uses.
for module in psec cryptography; do
    if ! python3 -c "import $module" 2>/dev/null; then
        echo "== installing $module"
        python3 -m pip install --quiet --disable-pip-version-check "$module" || {
            echo "warning: could not install $module; its tests will skip (or fail under CI)" >&2
        }
    fi
done

if [ -x scripts/ensure-postgres.sh ]; then
    if ! scripts/ensure-postgres.sh; then
        if [ -n "${CI:-}" ]; then
            echo "error: PostgreSQL is required under CI" >&2
            exit 1
        fi
        echo "warning: PostgreSQL is not available; its tests will skip" >&2
    fi
fi

cargo test --workspace "$@"

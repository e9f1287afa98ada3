#!/usr/bin/env bash
# The whole test suite, with its set-up: the Python reference implementation
# for the crypto cross-check and a running local PostgreSQL. Under CI=true a
# missing dependency fails the run instead of skipping tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import psec" 2>/dev/null; then
    echo "== installing psec (reference implementation for the PIN-block cross-check)"
    python3 -m pip install --quiet --disable-pip-version-check psec || {
        echo "warning: could not install psec; the cross-check will skip (or fail under CI)" >&2
    }
fi

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

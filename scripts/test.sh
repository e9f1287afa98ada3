#!/usr/bin/env bash
# The whole test suite, with its set-up: the Python reference implementation
# for the crypto cross-check and a running local PostgreSQL. Under CI=true a
# missing dependency fails the run instead of skipping tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# psec: the reference implementation the PIN-block cross-check compares with;
# cryptography: what scripts/pin-tool.py (run by the README walkthrough) uses;
# openapi-spec-validator: the independent check of /openapi.json (OpenAPI 3.1).
for pair in psec:psec cryptography:cryptography openapi_spec_validator:openapi-spec-validator; do
    module="${pair%%:*}"
    package="${pair#*:}"
    if ! python3 -c "import $module" 2>/dev/null; then
        echo "== installing $package"
        python3 -m pip install --quiet --disable-pip-version-check "$package" || {
            echo "warning: could not install $package; its tests will skip (or fail under CI)" >&2
        }
    fi
done

# The browser test (tests/browser/console_browser.py): Debian's Chromium,
# driven headless through Playwright's Python package (no browser download).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium"
    if [ "$(id -u)" = 0 ]; then APT=apt-get; else APT="sudo apt-get"; fi
    { $APT update -qq && $APT install -y -qq chromium chromium-driver; } >/dev/null 2>&1 ||
        echo "warning: could not install chromium; the browser test will skip (or fail under CI)" >&2
fi
if ! python3 -c "import playwright" 2>/dev/null; then
    echo "== installing playwright"
    python3 -m pip install --quiet --disable-pip-version-check playwright || {
        echo "warning: could not install playwright; the browser test will skip (or fail under CI)" >&2
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

# The README's commands as a user types them: the server started with the
# first set-up command, the walkthrough and docs/dialects.md's example run
# verbatim against it (a release build on the first run). Skipped when
# arguments narrow the run to some tests.
if [ $# -eq 0 ]; then
    python3 scripts/check-docs.py
    # The console and the PIN widget in a real browser (fails under CI when
    # Chromium or Playwright is missing; UPDATE_SCREENSHOTS=1 refreshes
    # docs/screenshots/).
    python3 tests/browser/console_browser.py
fi

#!/usr/bin/env bash
# Makes sure the local PostgreSQL cluster the tests use accepts connections,
# starting it if needed. Idempotent: does nothing when it already runs.
#
#   scripts/ensure-postgres.sh        # then: cargo test -p cardcore-store-postgres
#
# Host and port: PGHOST/PGPORT, default 127.0.0.1:5432 (the default of
# CARDCORE_TEST_POSTGRES_URL). Waits up to ENSURE_POSTGRES_TIMEOUT seconds (30).
set -euo pipefail

host="${PGHOST:-127.0.0.1}"
port="${PGPORT:-5432}"
timeout="${ENSURE_POSTGRES_TIMEOUT:-30}"

ready() { pg_isready -q -h "$host" -p "$port" -t 2; }

if ! command -v pg_isready >/dev/null; then
    echo "ensure-postgres: pg_isready not found; install PostgreSQL (Debian: apt-get install postgresql)" >&2
    exit 1
fi

# The tests' database (trust auth, user postgres, as on our machines).
ensure_database() {
    local db="${ENSURE_POSTGRES_DB:-test}"
    if command -v psql >/dev/null \
        && ! psql -h "$host" -p "$port" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" 2>/dev/null | grep -q 1; then
        createdb -h "$host" -p "$port" -U postgres "$db" 2>/dev/null \
            && echo "ensure-postgres: created database $db" >&2 || true
    fi
}

if ready; then
    ensure_database
    exit 0
fi

if ! command -v pg_ctlcluster >/dev/null || [ ! -d /etc/postgresql ]; then
    echo "ensure-postgres: nothing accepts connections on $host:$port and no Debian cluster to start" >&2
    echo "ensure-postgres: (Debian: apt-get install postgresql; or set PGHOST/PGPORT to a running server)" >&2
    exit 1
fi

# The newest installed major version, e.g. 15.
version="$(ls /etc/postgresql | sort -V | tail -n 1)"
echo "ensure-postgres: starting cluster $version/main" >&2
# Fails harmlessly when the cluster is already starting; the wait decides.
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true

deadline=$((SECONDS + timeout))
until ready; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "ensure-postgres: PostgreSQL $version/main did not accept connections on $host:$port within ${timeout}s" >&2
        echo "ensure-postgres: see /var/log/postgresql/postgresql-$version-main.log" >&2
        exit 1
    fi
    sleep 0.5
done
ensure_database
echo "ensure-postgres: PostgreSQL accepts connections on $host:$port" >&2

#!/usr/bin/env bash
# cardcore's load harness: builds in release mode, then for each backend
# starts cardcore on a fresh database, seeds N cards, measures the ceilings
# (GET /healthz for reads, a bare durable commit for writes) and every
# scenario, and prints a markdown table. See docs/BENCHMARKS.md, "Load harness".
#
#   bench/run.sh [--cards N] [--duration S] [--connections C]
#                [--backend sqlite|postgres|both] [--warmup S] [--threads T]
#                [--scenarios "healthz verify ..."] [--pg-url URL] [--out DIR]
#                [--keep] [--no-build] [--soak-duration S]
#                [--purge-rows N] [--purge-batch B]
#
# `authorize` and `authorize-pin` send POST /v1/authorizations (12.50 at a
# grocery, a fresh network_reference each; the second with the card's PIN as
# a format-4 block under the zone key `cardcore seed` made) to cards whose
# limits and spending controls the seed set. Only APPROVED answers count in
# req/s; declines are shown beside the errors, by reason:
#   bench/run.sh --backend both --scenarios "authorize authorize-pin"
#
# The scenario `soak` (not in the default list: it takes 10 minutes) keeps
# a mixed load on the server for --soak-duration seconds (default 600): the
# scenarios verify, verify-wrong, pin-set, lock-unlock, m2p-validate and
# p100-pin in turn, 20 s each, nobody scraping /metrics, while the server's
# RSS and anonymous memory are sampled every 30 s. The curve goes to
# soak-BACKEND.md beside the table:
#   bench/run.sh --backend sqlite --scenarios soak
#
# The scenario `purge` (not in the default list) measures the writer while
# retention deletes: it adds --purge-rows rows past their retention period
# (default 1,000,000: 40 % events already delivered, as many succeeded
# deliveries, 20 % audit entries), runs lock-unlock without the job, then
# again while the server's retention job purges them in batches of
# --purge-batch (default 500), and prints how long the purge took:
#   bench/run.sh --backend sqlite --scenarios purge
#
# Load goes to 127.0.0.1 only. PostgreSQL: a fresh database on --pg-url
# (default postgres://postgres@127.0.0.1:5432), dropped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

CARDS=10000
DURATION=20
CONNECTIONS=64
BACKEND=both
WARMUP=2
THREADS=1
PIN=4821
SCENARIOS="healthz verify verify-burst verify-wrong pin-set lock-unlock p100-pin m2p-validate authorize authorize-pin"
PG_URL=${CARDCORE_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
OUT=""
KEEP=0
BUILD=1
SOAK_DURATION=600
PURGE_ROWS=1000000
PURGE_BATCH=500
SOAK_MIX="verify verify-wrong pin-set lock-unlock m2p-validate p100-pin"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "bench/run.sh: $*" >&2; exit 2; }
int() { [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -ge "${3:-1}" ] || die "$1 must be an integer >= ${3:-1}, got '$2'"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --cards) CARDS=${2:-}; int --cards "$CARDS"; shift 2 ;;
        --duration) DURATION=${2:-}; int --duration "$DURATION"; shift 2 ;;
        --connections) CONNECTIONS=${2:-}; int --connections "$CONNECTIONS"; shift 2 ;;
        --warmup) WARMUP=${2:-}; int --warmup "$WARMUP" 0; shift 2 ;;
        --threads) THREADS=${2:-}; int --threads "$THREADS"; shift 2 ;;
        --backend) BACKEND=${2:-}; shift 2
            case "$BACKEND" in sqlite|postgres|both) ;; *) die "--backend must be sqlite, postgres or both" ;; esac ;;
        --scenarios) SCENARIOS=${2:-}; shift 2 ;;
        --pg-url) PG_URL=${2%/}; shift 2 ;;
        --out) OUT=${2:-}; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --soak-duration) SOAK_DURATION=${2:-}; int --soak-duration "$SOAK_DURATION" 30; shift 2 ;;
        --purge-rows) PURGE_ROWS=${2:-}; int --purge-rows "$PURGE_ROWS" 10; shift 2 ;;
        --purge-batch) PURGE_BATCH=${2:-}; int --purge-batch "$PURGE_BATCH"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[ "$CARDS" -ge "$CONNECTIONS" ] || die "--cards must be at least --connections (each connection owns cards in the pair scenarios)"

# psql: no NOTICE chatter ("database ... does not exist, skipping").
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

TARGET_DIR=${CARGO_TARGET_DIR:-target}
CARDCORE=$TARGET_DIR/release/cardcore
LOAD=$TARGET_DIR/release/cardcore-load
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$TARGET_DIR/bench/$STAMP}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cardcore-bench.XXXXXX")
SERVER_PID=""
PG_DBS=()

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$KEEP" = 1 ]; then
        echo "kept: $WORK ${PG_DBS[*]:-}"
    else
        for db in "${PG_DBS[@]:-}"; do
            [ -n "$db" ] && psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
        done
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s  %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

if [ "$BUILD" = 1 ]; then
    log "building (release): cardcore, cardcore-load"
    cargo build --release -q -p cardcore -p cardcore-loadgen
fi
[ -x "$CARDCORE" ] && [ -x "$LOAD" ] || die "missing $CARDCORE or $LOAD (build them, or drop --no-build)"

# The machine and the exact command, beside the results.
{
    echo "date: $STAMP"
    echo "command: bench/run.sh --cards $CARDS --duration $DURATION --connections $CONNECTIONS --backend $BACKEND --warmup $WARMUP --threads $THREADS --scenarios \"$SCENARIOS\" --soak-duration $SOAK_DURATION --purge-rows $PURGE_ROWS --purge-batch $PURGE_BATCH"
    echo "cpus: $(nproc) ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel: $(uname -sr)"
    echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"

# One master key for every database of the run (kept in the work dir, 0600).
KEY=$WORK/master.key
(umask 077 && "$CARDCORE" master-key generate > "$KEY")

# Starts `cardcore serve` on a free port (more flags after the log file;
# no background retention unless they ask); sets SERVER_PID and ADDR.
start_server() {
    local url=$1 logfile=$2
    shift 2
    ADDR=""
    CARDCORE_RETENTION_INTERVAL_SECONDS=0 "$CARDCORE" serve --listen 127.0.0.1:0 --database "$url" \
        --master-key-file "$KEY" --rate-limit-per-second 0 --card-pin-calls-per-minute 0 "$@" >"$logfile" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID" 2>/dev/null || true
            SERVER_PID=""
            return 1
        fi
        ADDR=$(sed -n 's#.*cardcore listening on http://\([0-9.]*:[0-9]*\).*#\1#p' "$logfile" | head -1)
        [ -n "$ADDR" ] && return 0
        sleep 0.1
    done
    return 1
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

find_pgbench() {
    command -v pgbench 2>/dev/null && return 0
    ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -1
}

# The bare durable-commit baseline of PostgreSQL: pgbench, one-row update,
# the same number of clients as cardcore gets connections.
pg_baseline() {
    local results=$1
    local db="cardcore_bench_commit_$$" pgbench
    pgbench=$(find_pgbench)
    if [ -z "$pgbench" ]; then
        log "PostgreSQL baseline skipped: pgbench not found (apt-get install postgresql-client)"
        return 0
    fi
    PG_DBS+=("$db")
    psql "$PG_URL/postgres" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    psql "$PG_URL/$db" -v ON_ERROR_STOP=1 -q >/dev/null <<SQL
CREATE TABLE commit_baseline (id integer PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
INSERT INTO commit_baseline (id) SELECT generate_series(1, $CARDS);
VACUUM ANALYZE commit_baseline;
SQL
    printf '\\set id random(1, %d)\nUPDATE commit_baseline SET n = n + 1 WHERE id = :id;\n' "$CARDS" >"$WORK/commit.sql"
    mkdir -p "$WORK/pgbench"
    if [ "$WARMUP" -gt 0 ]; then
        "$pgbench" -n -c "$CONNECTIONS" -j 2 -T "$WARMUP" -f "$WORK/commit.sql" "$PG_URL/$db" >/dev/null 2>&1 || true
    fi
    (cd "$WORK/pgbench" && "$pgbench" -n -c "$CONNECTIONS" -j 2 -T "$DURATION" -f "$WORK/commit.sql" \
        --log --log-prefix="$WORK/pgbench/commit" "$PG_URL/$db") >"$WORK/pgbench.out" 2>&1 || {
        log "pgbench failed:"; tail -5 "$WORK/pgbench.out" >&2; return 0; }
    "$LOAD" pgbench-summary --stdout "$WORK/pgbench.out" --log-prefix "$WORK/pgbench/commit" \
        --clients "$CONNECTIONS" --duration "$DURATION" --backend postgres --out "$results" >/dev/null
    rm -rf "$WORK/pgbench"
}

# One line of the server's memory: seconds since start, VmRSS and RssAnon
# in KiB (from /proc/PID/status).
memory_sample() {
    awk -v t="$1" '/^VmRSS:/ {rss = $2} /^RssAnon:/ {anon = $2} END {printf "%d,%d,%d\n", t, rss, anon}' \
        "/proc/$SERVER_PID/status"
}

# The soak: the mixed load for SOAK_DURATION seconds, memory every 30 s.
run_soak() {
    local backend=$1 csv=$2 results="$OUT/$backend-soak.jsonl" curve="$WORK/$backend-soak.csv"
    local start now s sampler
    : >"$results"
    echo "seconds,rss_kib,anon_kib" >"$curve"
    start=$(date +%s)
    memory_sample 0 >>"$curve"
    (
        while sleep 30; do
            kill -0 "$SERVER_PID" 2>/dev/null || exit 0
            memory_sample $(($(date +%s) - start)) >>"$curve"
        done
    ) &
    sampler=$!
    log "$backend: soak for $SOAK_DURATION s ($SOAK_MIX in turn, 20 s each, no /metrics scrape)"
    while now=$(date +%s); [ $((now - start)) -lt "$SOAK_DURATION" ]; do
        for s in $SOAK_MIX; do
            [ $(($(date +%s) - start)) -lt "$SOAK_DURATION" ] || break
            "$LOAD" run --url "http://$ADDR" --scenario "$s" --seed "$csv" --connections "$CONNECTIONS" \
                --duration 20 --warmup 0 --threads "$THREADS" --server-pid "$SERVER_PID" \
                --backend "$backend" --out "$results" >/dev/null 2>"$WORK/last.err" ||
                { log "$backend: soak $s failed:"; sed 's/^/    /' "$WORK/last.err" >&2; }
            kill -0 "$SERVER_PID" 2>/dev/null || die "cardcore died during the soak on $backend"
        done
    done
    memory_sample $(($(date +%s) - start)) >>"$curve"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    cp "$curve" "$OUT/soak-$backend.csv"
    {
        echo "#### $backend soak: $SOAK_DURATION s, $CONNECTIONS connections, $CARDS cards, no /metrics scrape"
        echo
        if command -v jq >/dev/null; then
            echo "requests: $(jq -s 'map(.requests // 0) | add' "$results"), errors: $(jq -s 'map(.errors // 0) | add' "$results")"
            echo
        fi
        echo "| seconds | RSS MiB | anonymous MiB |"
        echo "|---:|---:|---:|"
        tail -n +2 "$curve" | awk -F, '{printf "| %d | %.1f | %.1f |\n", $1, $2 / 1024, $3 / 1024}'
    } >"$OUT/soak-$backend.md"
    cat "$OUT/soak-$backend.md" >&2
}

# SQL on the backend's database: sqlite3 or psql, from standard input.
sql() {
    local backend=$1 url=$2
    if [ "$backend" = sqlite ]; then
        sqlite3 -bail "${url#sqlite://}"
    else
        psql "$url" -v ON_ERROR_STOP=1 -qAt
    fi
}

# Adds PURGE_ROWS rows past their retention period, with the server
# stopped: 40 % events 200 days old (fanned out: the cursor moves past
# them), a succeeded delivery of each to a deleted endpoint, 20 % audit
# entries 500 days old.
fill_old_rows() {
    local backend=$1 url=$2 events=$((PURGE_ROWS * 2 / 5)) audit
    audit=$((PURGE_ROWS - 2 * events))
    if [ "$backend" = sqlite ]; then
        sql sqlite "$url" <<SQL
PRAGMA synchronous = OFF;
BEGIN;
INSERT OR IGNORE INTO webhook_endpoints (id, tenant_id, url, secret_sealed, secret_key_version, created_at, deleted_at)
    SELECT '00000000-0000-4000-8000-00000000beef', id, 'https://example.invalid/hook', x'00', 1,
           '2026-01-01T00:00:00.000000Z', '2026-01-02T00:00:00.000000Z' FROM tenants LIMIT 1;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $events)
INSERT INTO events (id, tenant_id, type, data, created_at)
    SELECT printf('00000000-0000-4000-8001-%012d', i), (SELECT id FROM tenants LIMIT 1), 'card.limits_updated', '{}',
           strftime('%Y-%m-%dT%H:%M:%S.000000Z', 'now', '-200 days') FROM n;
INSERT INTO webhook_deliveries (id, tenant_id, event_id, endpoint_id, state, attempts, created_at)
    SELECT printf('00000000-0000-4000-8002-%012d', seq), tenant_id, id, '00000000-0000-4000-8000-00000000beef',
           'succeeded', 1, created_at FROM events WHERE id LIKE '00000000-0000-4000-8001-%';
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $audit)
INSERT INTO audit_log (id, tenant_id, type, actor, created_at)
    SELECT printf('00000000-0000-4000-8003-%012d', i), (SELECT id FROM tenants LIMIT 1), 'card.lock',
           '{"type":"system","api_key_id":null,"channel":"system"}', strftime('%Y-%m-%dT%H:%M:%S.000000Z', 'now', '-500 days') FROM n;
UPDATE webhook_cursor SET seq = (SELECT MAX(seq) FROM events);
COMMIT;
SQL
    else
        sql postgres "$url" <<SQL
BEGIN;
INSERT INTO webhook_endpoints (id, tenant_id, url, secret_sealed, secret_key_version, created_at, deleted_at)
    SELECT '00000000-0000-4000-8000-00000000beef', id, 'https://example.invalid/hook', '\\x00', 1,
           now() - interval '300 days', now() - interval '299 days' FROM tenants LIMIT 1 ON CONFLICT DO NOTHING;
INSERT INTO events (id, tenant_id, type, data, created_at)
    SELECT gen_random_uuid(), (SELECT id FROM tenants LIMIT 1), 'card.limits_updated', '{}', now() - interval '200 days'
    FROM generate_series(1, $events);
INSERT INTO webhook_deliveries (id, tenant_id, event_id, endpoint_id, state, attempts, created_at)
    SELECT gen_random_uuid(), tenant_id, id, '00000000-0000-4000-8000-00000000beef', 'succeeded', 1, created_at
    FROM events WHERE created_at < now() - interval '199 days';
INSERT INTO audit_log (id, tenant_id, type, actor, created_at)
    SELECT gen_random_uuid(), (SELECT id FROM tenants LIMIT 1), 'card.lock', '{"type":"system","api_key_id":null,"channel":"system"}',
           now() - interval '500 days' FROM generate_series(1, $audit);
UPDATE webhook_cursor SET (tx_id, seq) = (SELECT tx_id, seq FROM events ORDER BY tx_id DESC, seq DESC LIMIT 1);
COMMIT;
VACUUM ANALYZE;
SQL
    fi
}

# Rows still past their period (what the purge has left): older than 150
# days (the filled rows are 200 and 500 days old).
old_rows() {
    local cut="now() - interval '150 days'"
    [ "$1" = sqlite ] && cut="strftime('%Y-%m-%dT%H:%M:%S.000000Z', 'now', '-150 days')"
    sql "$1" "$2" <<SQL
SELECT (SELECT COUNT(*) FROM events WHERE created_at < $cut)
     + (SELECT COUNT(*) FROM webhook_deliveries WHERE created_at < $cut)
     + (SELECT COUNT(*) FROM audit_log WHERE created_at < $cut);
SQL
}

# lock-unlock before and during a retention purge of PURGE_ROWS rows.
run_purge() {
    local backend=$1 url=$2 csv=$3 logfile=$4 results="$OUT/$1.jsonl" started left took
    stop_server
    log "$backend: adding $PURGE_ROWS rows past their retention period"
    fill_old_rows "$backend" "$url"
    log "$backend: $(old_rows "$backend" "$url") old rows; lock-unlock without the retention job"
    start_server "$url" "$logfile" || die "cardcore serve did not start on $backend"
    "$LOAD" run --url "http://$ADDR" --scenario lock-unlock --seed "$csv" --connections "$CONNECTIONS" \
        --duration "$DURATION" --warmup "$WARMUP" --threads "$THREADS" --server-pid "$SERVER_PID" \
        --backend "$backend, no purge" --out "$results" >"$WORK/last.json"
    stop_server
    log "$backend: lock-unlock while the retention job purges (batches of $PURGE_BATCH)"
    start_server "$url" "$logfile" --retention-interval-seconds 1 --retention-batch-size "$PURGE_BATCH" ||
        die "cardcore serve did not start on $backend"
    started=$(date +%s.%N)
    "$LOAD" run --url "http://$ADDR" --scenario lock-unlock --seed "$csv" --connections "$CONNECTIONS" \
        --duration "$DURATION" --warmup "$WARMUP" --threads "$THREADS" --server-pid "$SERVER_PID" \
        --backend "$backend, purging $PURGE_ROWS rows" --out "$results" >"$WORK/last.json"
    left=$(old_rows "$backend" "$url")
    [ "$left" -gt 0 ] || log "$backend: WARNING: the purge ended before the measurement did; raise --purge-rows"
    log "$backend: $left old rows left when the measurement ended; waiting for the purge to finish"
    while [ "$(old_rows "$backend" "$url")" -gt 0 ]; do sleep 1; done
    took=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.0f", e - s }')
    {
        echo "$backend: purge of $PURGE_ROWS rows in batches of $PURGE_BATCH under load took about $took s (from the job's start, polled each second);"
        echo "    the job's log: $(grep -o 'batches=[0-9]* batch_p50_ms=[0-9.]* batch_p99_ms=[0-9.]* batch_max_ms=[0-9.]*' "$logfile" | tail -1) (a batch's time includes its wait for the database)"
    } | tee -a "$OUT/purge.txt" >&2
    # The same purge with no load: how long one batch holds the database.
    stop_server
    fill_old_rows "$backend" "$url"
    "$CARDCORE" retention --database "$url" --retention-batch-size "$PURGE_BATCH" >"$WORK/retention.out"
    echo "$backend: the same purge by \`cardcore retention\`, no load: $(grep -o '[0-9]* delete transactions.*' "$WORK/retention.out")" \
        | tee -a "$OUT/purge.txt" >&2
    start_server "$url" "$logfile" || die "cardcore serve did not start on $backend"
}

run_backend() {
    local backend=$1
    local url results="$OUT/$backend.jsonl" csv="$WORK/$backend-cards.csv"
    local logfile="$WORK/$backend-server.log" jobs=1
    : >"$results"
    case "$backend" in
        sqlite)
            mkdir -p "$WORK/sqlite"
            url="sqlite://$WORK/sqlite/cardcore.db"
            ;;
        postgres)
            local db="cardcore_bench_$$"
            # Seeding is round-trip bound on PostgreSQL: overlap transactions.
            jobs=4
            if ! psql "$PG_URL/postgres" -v ON_ERROR_STOP=1 -qc "SELECT 1" >/dev/null 2>&1; then
                log "PostgreSQL skipped: cannot connect to $PG_URL"
                rm -f "$results"
                return 0
            fi
            PG_DBS+=("$db")
            psql "$PG_URL/postgres" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
            url="$PG_URL/$db"
            ;;
    esac

    log "$backend: starting cardcore serve"
    if ! start_server "$url" "$logfile"; then
        if [ "$backend" = postgres ]; then
            log "PostgreSQL skipped: \`cardcore serve --database postgres://...\` did not start. Its last words:"
            tail -5 "$logfile" | sed 's/^/    /' >&2
            rm -f "$results"
            return 0
        fi
        tail -20 "$logfile" >&2
        die "cardcore serve did not start on $backend"
    fi
    log "$backend: cardcore (pid $SERVER_PID) on http://$ADDR; seeding $CARDS cards"
    "$CARDCORE" seed --tenant-name "bench-$backend-$STAMP" --cards "$CARDS" --pin "$PIN" --out "$csv" \
        --database "$url" --master-key-file "$KEY" --jobs "$jobs" >"$WORK/$backend-seed.out"
    log "$(cat "$WORK/$backend-seed.out")"
    if [ "$backend" = postgres ]; then
        # Measure the cards, not the bulk load's aftermath: autovacuum and
        # the checkpoint it triggers would otherwise run during the first
        # scenarios (seen: healthz -34 % after a million-card seed).
        log "postgres: VACUUM ANALYZE and CHECKPOINT after seeding"
        psql "$url" -v ON_ERROR_STOP=1 -qc "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null 2>&1 ||
            log "postgres: VACUUM/CHECKPOINT failed (not superuser?); measuring anyway"
    fi

    log "$backend: durable-commit baseline (${DURATION} s)"
    if [ "$backend" = sqlite ]; then
        "$LOAD" sqlite-commit --dir "$WORK/sqlite-commit" --duration "$DURATION" --warmup "$WARMUP" \
            --backend sqlite --out "$results" >/dev/null
    else
        pg_baseline "$results"
    fi

    local s
    for s in $SCENARIOS; do
        if [ "$s" = soak ]; then
            run_soak "$backend" "$csv"
            continue
        fi
        if [ "$s" = purge ]; then
            run_purge "$backend" "$url" "$csv" "$logfile"
            continue
        fi
        log "$backend: $s (${WARMUP} s warm-up + ${DURATION} s, $CONNECTIONS connections)"
        if ! "$LOAD" run --url "http://$ADDR" --scenario "$s" --seed "$csv" --connections "$CONNECTIONS" \
            --duration "$DURATION" --warmup "$WARMUP" --threads "$THREADS" --server-pid "$SERVER_PID" \
            --backend "$backend" --out "$results" >"$WORK/last.json" 2>"$WORK/last.err"; then
            log "$backend: $s failed:"
            sed 's/^/    /' "$WORK/last.err" >&2
        fi
        if command -v jq >/dev/null && [ -s "$WORK/last.json" ]; then
            log "    $(jq -r 'if .available then "\(.throughput_rps) req/s, p50 \(.p50_ms) ms, p99 \(.p99_ms) ms, errors \(.errors), server CPU \(.server_cpu_pct // "?") %" else "not available: \(.reason)" end' "$WORK/last.json")"
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            tail -20 "$logfile" >&2
            die "cardcore died during $s on $backend"
        fi
    done
    stop_server
}

case "$BACKEND" in
    both) BACKENDS="sqlite postgres" ;;
    *) BACKENDS=$BACKEND ;;
esac
for b in $BACKENDS; do
    run_backend "$b"
done

RESULT_FILES=()
for b in $BACKENDS; do
    [ -s "$OUT/$b.jsonl" ] && RESULT_FILES+=("$OUT/$b.jsonl")
done
[ "${#RESULT_FILES[@]}" -gt 0 ] || die "no backend ran"
"$LOAD" table "${RESULT_FILES[@]}" >"$OUT/table.md"
echo
cat "$OUT/machine.txt"
echo
cat "$OUT/table.md"
[ -e "$OUT/purge.txt" ] && { echo; cat "$OUT/purge.txt"; }
for f in "$OUT"/soak-*.md; do
    [ -e "$f" ] && { echo; cat "$f"; }
done
echo "results: $OUT (JSON lines per backend, table.md, machine.txt)"

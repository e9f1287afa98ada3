#!/usr/bin/env bash
# The portfolio-import benchmark (docs/BENCHMARKS.md): N cards with PINs
# (a third each ISO-4, ISO-0 and Visa PVV) imported into a fresh SQLite
# database by the release binary, then every PIN verified through the
# service. The generated file stays in the temporary directory (it holds
# PANs): it is never committed.
#
#   bench/import.sh [N]        (default 100000)
set -euo pipefail
N=${1:-100000}
cd "$(dirname "$0")/.."
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p cardcore --bin cardcore --example import_bench
BIN=target/release/cardcore
TOOL=target/release/examples/import_bench
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
DB="sqlite://$DIR/cardcore.db"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

TENANT=$("$BIN" tenant create --name import-bench --json --database "$DB" | json tenant_id)
AES=$("$BIN" tenant zone-key --tenant "$TENANT" --algorithm aes --json --database "$DB")
TDES=$("$BIN" tenant zone-key --tenant "$TENANT" --algorithm tdes --json --database "$DB")
PVK_HEX=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
umask 077
printf '%s' "$PVK_HEX" > "$DIR/pvk.hex"
PVK_ID=$("$BIN" tenant zone-key --tenant "$TENANT" --algorithm pvk --key-file "$DIR/pvk.hex" --json --database "$DB" | json key_id)

"$TOOL" gen --count "$N" \
  --aes-key-id "$(echo "$AES" | json key_id)" --aes-key "$(echo "$AES" | json key_hex)" \
  --tdes-key-id "$(echo "$TDES" | json key_id)" --tdes-key "$(echo "$TDES" | json key_hex)" \
  --pvk-key-id "$PVK_ID" --pvk "$PVK_HEX" > "$DIR/cards.jsonl"
echo "file: $N lines, $(du -h "$DIR/cards.jsonl" | cut -f1)"

echo "import:"
# A failed line is reported, and the run goes on to the re-run and the check.
/usr/bin/time -f "  wall %e s, user %U s, sys %S s, max RSS %M KiB" \
  "$BIN" import --tenant "$TENANT" --file "$DIR/cards.jsonl" --database "$DB" || echo "  (exit $?)"
echo "re-run (nothing changes):"
"$BIN" import --tenant "$TENANT" --file "$DIR/cards.jsonl" --database "$DB" || echo "  (exit $?)"
echo "database: $(du -h "$DIR/cardcore.db" | cut -f1)"
echo "round trip:"
"$TOOL" check --tenant "$TENANT" --count "$N" --database "$DB"

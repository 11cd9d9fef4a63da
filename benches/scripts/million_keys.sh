#!/usr/bin/env bash
# Lists that scale (issue 13, D5): a project of 1,000,000 keys in a SQLite file, then
#  - the example server's key list, first and a far page (`limit=100`), timed with curl;
#  - the CLI's full listing of the project, its time and peak memory (GNU time).
# Loopback only. Usage: benches/scripts/million_keys.sh [N]   (N keys, default 1000000)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}
cargo build --release -q -p keyward-cli -p keyward-examples --bin keyward --bin keyward-server
DIR=$(mktemp -d)
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$DIR"' EXIT
DB="sqlite:$DIR/keys.db"
export KEYWARD_INSECURE_FAST_HASH=1
ADMIN=$(./target/release/keyward --db "$DB" issue --project big --env dev --scope admin 2>/dev/null)
python3 - "$DIR/keys.db" "$N" <<'PY'
import sqlite3, sys, random, string
db, n = sys.argv[1], int(sys.argv[2])
alphabet = string.digits + string.ascii_uppercase + string.ascii_lowercase
phc = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$X34BrkThJYMu+rIISZMN1uQlJp94vR8NMk4ILKRmdLY"
conn = sqlite3.connect(db)
rows = ((''.join(random.choices(alphabet, k=12)), 'kw', 'big', ('dev', 'prd')[i % 2], 'read',
         'filler', None, 1_800_000_000_000 + i, None, None, None, phc, None, '{}', None)
        for i in range(n))
conn.executemany("INSERT OR IGNORE INTO keyward_keys (id, prefix, project, environment, scopes, "
                 "name, metadata, created_at, expires_at, revoked_at, last_used_at, secret_hash, "
                 "rotated_from, limits, rotated_to) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
conn.commit()
print(f"{conn.execute('SELECT count(*) FROM keyward_keys').fetchone()[0]} keys")
PY
./target/release/keyward-server --db "$DB" --addr 127.0.0.1:0 --env dev > "$DIR/out" 2>/dev/null &
SERVER=$!
for _ in $(seq 1 100); do grep -q listening "$DIR/out" 2>/dev/null && break; sleep 0.1; done
BASE=$(sed -n 's/^listening on //p' "$DIR/out")
page() { curl -s -o "$DIR/page" -D "$DIR/head" -w '%{time_total}' -H "Authorization: Bearer $ADMIN" "$BASE$1"; }
echo "first page (limit=100): $(page '/api/v1/me/api-keys/?limit=100') s, $(wc -c < "$DIR/page") bytes"
# A cursor deep into the project: the 400,000th dev key's position.
AFTER="$((1800000000000 + 800000)).zzzzzzzzzzzz"
echo "deep page (limit=100, after ${AFTER}): $(page "/api/v1/me/api-keys/?limit=100&after=$AFTER") s, $(wc -c < "$DIR/page") bytes"
echo "largest page (limit=1000): $(page '/api/v1/me/api-keys/?limit=1000') s, $(wc -c < "$DIR/page") bytes"
/usr/bin/time -f 'CLI list --project big --json: %e s, peak RSS %M KiB' \
  ./target/release/keyward --db "$DB" list --project big --json > "$DIR/all.json"
echo "listed $(grep -c '"id"' "$DIR/all.json") keys"

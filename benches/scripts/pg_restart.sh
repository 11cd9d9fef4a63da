#!/usr/bin/env bash
# The verify cache through a PostgreSQL restart (issue 13, D4): 200 keys cached by the example
# server, the database restarted, then one wave of 200 concurrent requests (one per key).
# Default (OWASP) hashing, so a key verified cold again would cost ~30 ms of Argon2 on a pool
# of one worker per core: the wave's time tells. Needs root and pg_createcluster: it makes a
# throw-away cluster on a free port and drops it afterwards. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-200}
cargo build --release -q -p keyward-cli -p keyward-examples --bin keyward --bin keyward-server
VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
NAME="kw_restart_$$"
DIR=$(mktemp -d)
cleanup() {
  kill "${SERVER:-0}" 2>/dev/null || true
  pg_dropcluster --stop "$VERSION" "$NAME" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT
pg_createcluster "$VERSION" "$NAME" -p "$PORT" --start -- --auth=trust >/dev/null
DB="postgres://postgres@127.0.0.1:$PORT/postgres"
for i in $(seq 1 "$N"); do
  ./target/release/keyward --db "$DB" issue --project web --env dev --scope read 2>/dev/null >> "$DIR/keys"
done
./target/release/keyward-server --db "$DB" --addr 127.0.0.1:0 --env dev > "$DIR/out" 2>"$DIR/log" &
SERVER=$!
for _ in $(seq 1 100); do grep -q listening "$DIR/out" 2>/dev/null && break; sleep 0.1; done
BASE=$(sed -n 's/^listening on //p' "$DIR/out")
wave() {
  local start end codes
  start=$(date +%s.%N)
  codes=$(xargs -P "$N" -I{} curl -s -o /dev/null -w '%{http_code} %{time_total}\n' \
    -H "Authorization: Bearer {}" "$BASE/api/v1/me/api-keys/ping/" < "$DIR/keys")
  end=$(date +%s.%N)
  echo "$1: $(echo "$codes" | awk '{print $1}' | sort | uniq -c | tr -s ' \n' ' ')in $(echo "$end - $start" | bc) s; median $(echo "$codes" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') s"
}
wave "first use (cold: Argon2 each)"
wave "cached"
pg_ctlcluster "$VERSION" "$NAME" restart
sleep 1
wave "first wave after the restart"
sleep 10
wave "10 s later"
echo "server log lines: $(wc -l < "$DIR/log")"

#!/usr/bin/env bash
# Fuzzes the example server's admin API from its own OpenAPI document with schemathesis
# (`pip install schemathesis`): every operation, with schema-valid and schema-invalid data and
# stateful sequences (create, then read, change, rotate, revoke what was created), signed in
# with an admin key. Fails on a 5xx, an answer the document does not describe, a valid
# request refused or an invalid one accepted. Usage: examples/scripts/fuzz_openapi.sh [EXAMPLES]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
examples="${1:-200}"
work="$(mktemp -d)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cd "$root"
cargo build -q -p keyward-examples --bin keyward-server -p keyward-cli
target="${CARGO_TARGET_DIR:-$root/target}/debug"
export KEYWARD_INSECURE_FAST_HASH=1 # test-only hash parameters: the fuzzer issues many keys
db="sqlite:$work/keys.db"
admin=$("$target/keyward" --db "$db" issue --project web-app --env dev --scope admin --name fuzz)
"$target/keyward-server" --db "$db" --addr "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
kill -0 $server || { cat "$work/server.log"; exit 1; }
schemathesis run "http://127.0.0.1:$port/api/v1/openapi.json" \
  -H "Authorization: Bearer $admin" --checks all --max-examples "$examples"

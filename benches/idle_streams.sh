#!/usr/bin/env bash
# What idle event streams cost: benches/idle_streams.sh [STREAMS] [IDLE_SECONDS] [postgres://URL]
# Builds the release binary, starts `snapreg serve` (SQLite in a temp dir),
# or two replicas on a fresh database of the PostgreSQL server at URL, seeds
# one project, and runs benches/idle_streams.py: the streams are opened on
# the first replica; on PostgreSQL the change goes through the second.
set -euo pipefail
cd "$(dirname "$0")/.."
streams=${1:-500}
idle=${2:-60}
postgres=${3:-}
ulimit -n 8192
cargo build --release --quiet
data=$(mktemp -d)
token="bench-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
port=18767
export SNAPREG_ADMIN_TOKEN="$token" SNAPREG_DATA_DIR="$data" RUST_LOG=warn
if [ -n "$postgres" ]; then
  db="snapreg_streams_$$"
  psql "$postgres" -q -c "CREATE DATABASE $db"
  export DATABASE_URL="${postgres%/*}/$db"
fi
target/release/snapreg serve --bind "127.0.0.1:$port" >"$data/serve.log" 2>&1 &
server=$!
other=
change_at=()
if [ -n "$postgres" ]; then
  target/release/snapreg serve --bind "127.0.0.1:$((port + 1))" >"$data/other.log" 2>&1 &
  other=$!
  change_at=(--change-at "http://127.0.0.1:$((port + 1))")
fi
cleanup() {
  kill "$server" $other 2>/dev/null || true; wait "$server" $other 2>/dev/null || true
  [ -n "$postgres" ] && psql "$postgres" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
  rm -rf "$data"
}
trap cleanup EXIT
for p in $port $((port + 1)); do
  [ "$p" = "$port" ] || [ -n "$other" ] || continue
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$p/healthz" >/dev/null && break; sleep 0.1; done
done
auth=(-H "Authorization: Bearer $token" -H "Content-Type: application/json")
curl -sf "${auth[@]}" -d '{"slug":"web","name":"Web"}' "http://127.0.0.1:$port/v1/projects" >/dev/null
curl -sf "${auth[@]}" -d '{"slug":"debian","name":"Debian"}' "http://127.0.0.1:$port/v1/projects/web/plans" >/dev/null
backend=SQLite
[ -z "$postgres" ] || backend="PostgreSQL, two replicas"
echo "backend: $backend, $streams streams, $idle s idle"
python3 benches/idle_streams.py --url "http://127.0.0.1:$port" --token "$token" --pid "$server" \
  --streams "$streams" --idle "$idle" "${change_at[@]}"

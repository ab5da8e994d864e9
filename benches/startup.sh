#!/usr/bin/env bash
# Start to ready and idle memory of `snapreg serve` on SQLite (issue 16:
# under 200 ms, under 30 MiB): a release build, started on an empty data
# dir (migrations run) and again on the database it left; ready is the
# first `200` from /readyz; memory is VmRSS three seconds later.
#
#   benches/startup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
dir=$(mktemp -d)
pid=
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
port=18181
for run in "empty data dir" "existing database"; do
  started=$(date +%s%N)
  SNAPREG_ADMIN_TOKEN=startup-bench-token-0123456789 target/release/snapreg serve \
    --bind "127.0.0.1:$port" --data-dir "$dir" >/dev/null 2>&1 &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.002; done
  ready=$(date +%s%N)
  sleep 3
  rss=$(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")
  echo "$run: ready in $(( (ready - started) / 1000000 )) ms; idle RSS $rss MiB"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done

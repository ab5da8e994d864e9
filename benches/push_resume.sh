#!/usr/bin/env bash
# What an interrupted push costs to resume: `snapreg push` of a 1 GiB
# artifact to a release `snapreg serve` on SQLite, once uninterrupted, then
# killed (SIGKILL) after half and after 90 % of it was acknowledged and run
# again. For each rerun: its time, the bytes the server received during it
# (only what it lacked), and the time `sha256sum` takes over the
# acknowledged prefix (the rerun reads and hashes that prefix locally; it
# does not send it).
#
#   benches/push_resume.sh [size in MiB, default 1024] [chunk size, default 16MiB]
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${1:-1024}
CHUNK=${2:-16MiB}
PORT=${SNAPREG_BENCH_PORT:-18798}
cargo build --release --locked -q
bin=$PWD/target/release/snapreg
work=$(mktemp -d)
server=
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
file="$work/rootfs.tar.xz"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$file"
size=$(stat -c %s "$file")
cat "$file" >/dev/null
sync

TOKEN="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export SNAPREG_URL="http://127.0.0.1:$PORT" SNAPREG_TOKEN=$TOKEN
api() { curl -sf -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
received() { api "$SNAPREG_URL/metrics" | awk -F' ' '/artifact_bytes_total\{direction="in"\}/ { printf "%.0f", $2 }'; }

SNAPREG_ADMIN_TOKEN=$TOKEN RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$PORT" --data-dir "$work/data" &
server=$!
for _ in $(seq 1 100); do api "$SNAPREG_URL/healthz" >/dev/null && break; sleep 0.1; done
api -X POST "$SNAPREG_URL/v1/projects" -d '{"slug":"bench"}' >/dev/null
api -X POST "$SNAPREG_URL/v1/projects/bench/plans" -d '{"slug":"debian"}' >/dev/null
new_image() { "$bin" image bench debian --snapshot "$("$bin" create-snapshot bench)"; }

printf '\nartifact: %d MiB, chunks of %s, machine: %s cores\n\n' "$SIZE_MIB" "$CHUNK" "$(nproc)"
printf '| run | seconds | MiB sent by the run | sha256sum of the acknowledged prefix, seconds |\n|---|---|---|---|\n'
image=$(new_image)
start=$(now)
"$bin" push "$image" "$file" --chunk-size "$CHUNK" --no-reuse >/dev/null 2>&1
printf '| uninterrupted | %s | %d | - |\n' "$(since "$start")" "$((size / 1048576))"

for percent in 50 90; do
  image=$(new_image)
  "$bin" push "$image" "$file" --chunk-size "$CHUNK" --no-reuse >/dev/null 2>&1 &
  client=$!
  # Kill it once the server acknowledged $percent % (the state file names the session).
  offset=0
  while [ "$offset" -lt $((size * percent / 100)) ]; do
    upload=$(grep -o '"upload":"[^"]*"' "$file.snapreg-push" 2>/dev/null | cut -d'"' -f4 || true)
    [ -n "$upload" ] && offset=$(api "$SNAPREG_URL$upload" | grep -o '"offset":[0-9]*' | cut -d: -f2)
    sleep 0.02
  done
  kill -9 "$client"
  wait "$client" 2>/dev/null || true
  offset=$(api "$SNAPREG_URL$upload" | grep -o '"offset":[0-9]*' | cut -d: -f2)
  before=$(received)
  start=$(now)
  "$bin" push "$image" "$file" --chunk-size "$CHUNK" --no-reuse 2>"$work/rerun.log" >/dev/null
  took=$(since "$start")
  grep resuming "$work/rerun.log" >&2 || true
  sent=$(($(received) - before))
  start=$(now)
  head -c "$offset" "$file" | sha256sum >/dev/null
  printf '| killed after %d MiB (%d%%), rerun | %s | %d (%d bytes; %d lacking) | %s |\n' \
    "$((offset / 1048576))" "$percent" "$took" "$((sent / 1048576))" "$sent" "$((size - offset))" "$(since "$start")"
done

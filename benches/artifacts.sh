#!/usr/bin/env bash
# Artifact throughput: uploads and downloads a 1 GiB artifact over real HTTP
# (curl against a release `snapreg serve` on SQLite) and compares with the
# ceiling measured in the same run: `sha256sum` over the same file.
#
#   benches/artifacts.sh [size in MiB, default 1024]
#
# Prints MB/s (10^6 bytes per second) and the server's peak resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${1:-1024}
PORT=${SNAPREG_BENCH_PORT:-18799}
cargo build --release --locked -q
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
file="$work/rootfs.tar.xz"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$file"
bytes=$(stat -c %s "$file")
sync # the test file's own writeback must not land on the upload's fsync

mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
seconds() { local start end; start=$(date +%s.%N); "$@" >/dev/null; end=$(date +%s.%N); awk -v a="$start" -v b="$end" 'BEGIN { print b - a }'; }

cat "$file" >/dev/null # warm the page cache, as the upload will find it
# The ceiling: the fastest of three sha256sum runs over the cached file.
sha_s=$(for _ in 1 2 3; do seconds sha256sum "$file"; done | sort -g | head -n 1)
digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"

TOKEN="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SNAPREG_ADMIN_TOKEN="$TOKEN" SNAPREG_DATA_DIR="$work/data" RUST_LOG=warn target/release/snapreg serve --bind "127.0.0.1:$PORT" &
server=$!
B="http://127.0.0.1:$PORT"
# Every request sends the admin token.
curl() { command curl -H "Authorization: Bearer $TOKEN" "$@"; }
for _ in $(seq 1 50); do curl -sf "$B/healthz" >/dev/null && break; sleep 0.1; done
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$server/status"; }
hwm() { awk '/^VmHWM/ { print $2 }' "/proc/$server/status"; }
json='content-type: application/json'
id() { grep -o '"id":"[^"]*"' | head -n 1 | cut -d'"' -f4; }
curl -sf -X POST "$B/v1/projects" -H "$json" -d '{"slug":"bench"}' >/dev/null
curl -sf -X POST "$B/v1/projects/bench/plans" -H "$json" -d '{"slug":"debian"}' >/dev/null
new_image() {
  local snap
  snap=$(curl -sf -X POST "$B/v1/projects/bench/snapshots" -H "$json" -d '{}' | id)
  curl -sf "$B/v1/projects/bench/plans/debian/image?snapshot=$snap" | id
}
rss_before=$(rss)

image=$(new_image)
sync
up_s=$(seconds curl -sf -X PUT -H 'Content-Type: application/x-xz' -T "$file" "$B/v1/images/$image/artifact?digest=$digest")
down_s=$(seconds curl -sf -o /dev/null "$B/v1/images/$image/artifact")

# Resumable: the same bytes in 64 MiB chunks, then the commit.
image2=$(new_image)
chunk=$((64 * 1024 * 1024))
split -b "$chunk" -d "$file" "$work/chunk."
chunked() {
  local upload offset=0 part size
  upload=$(curl -sf -X POST "$B/v1/images/$image2/uploads" | id)
  for part in "$work"/chunk.*; do
    size=$(stat -c %s "$part")
    curl -sf -X PATCH -H "Content-Range: bytes $offset-$((offset + size - 1))/*" -T "$part" "$B/v1/uploads/$upload" >/dev/null
    offset=$((offset + size))
  done
  curl -sf -X PUT "$B/v1/uploads/$upload?digest=$digest" >/dev/null
}
sync
chunk_s=$(seconds chunked)
peak=$(hwm)

printf '\nartifact: %d MiB (%d bytes), machine: %s cores\n\n' "$SIZE_MIB" "$bytes" "$(nproc)"
printf '| what | seconds | MB/s | vs sha256sum |\n|---|---|---|---|\n'
ceiling=$(mbps "$sha_s")
row() { local r; r=$(mbps "$2"); printf '| %s | %.2f | %s | %s%% |\n' "$1" "$2" "$r" "$(awk -v r="$r" -v c="$ceiling" 'BEGIN { printf "%.0f", 100 * r / c }')"; }
row "sha256sum (ceiling)" "$sha_s"
row "upload, one PUT" "$up_s"
row "upload, 64 MiB chunks + commit" "$chunk_s"
row "download" "$down_s"
printf '\nserver resident memory: %d MiB before, peak %d MiB during the run\n' "$((rss_before / 1024))" "$((peak / 1024))"

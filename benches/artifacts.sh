#!/usr/bin/env bash
# Artifact throughput: uploads and downloads a 1 GiB artifact over real HTTP
# (curl against a release `snapreg serve` on SQLite) and compares with the
# ceiling measured in the same run: `sha256sum` over the same file.
#
#   benches/artifacts.sh [size in MiB, default 1024] [store…]
#
# Each store is `dir` (the default folder store) or an `s3://bucket` URL
# (with SNAPREG_S3_ENDPOINT and AWS_* set); several are measured in one run
# on the same file. Prints MB/s (10^6 bytes per second) and the server's
# peak resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${1:-1024}
shift || true
STORES=("${@:-dir}")
PORT=${SNAPREG_BENCH_PORT:-18799}
cargo build --release --locked -q
work=$(mktemp -d)
server=
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
B="http://127.0.0.1:$PORT"
# Every request sends the admin token.
curl() { command curl -H "Authorization: Bearer $TOKEN" "$@"; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$server/status"; }
hwm() { awk '/^VmHWM/ { print $2 }' "/proc/$server/status"; }
json='content-type: application/json'
id() { grep -o '"id":"[^"]*"' | head -n 1 | cut -d'"' -f4; }
chunk=$((64 * 1024 * 1024))
split -b "$chunk" -d "$file" "$work/chunk."

# `snapreg serve` with the artifact store $1 ("dir": a folder) and the data dir $2.
start() {
  local settings=(SNAPREG_ADMIN_TOKEN="$TOKEN" SNAPREG_DATA_DIR="$2" RUST_LOG=warn)
  [ "$1" = dir ] || settings+=(SNAPREG_BLOB_STORE="$1")
  env "${settings[@]}" target/release/snapreg serve --bind "127.0.0.1:$PORT" &
  server=$!
  for _ in $(seq 1 100); do curl -sf "$B/healthz" >/dev/null && return; sleep 0.1; done
  echo "snapreg did not start"; exit 1
}
stop() { kill "$server"; wait "$server" || true; }
new_image() {
  local snap
  snap=$(curl -sf -X POST "$B/v1/projects/bench/snapshots" -H "$json" -d '{}' | id)
  curl -sf "$B/v1/projects/bench/plans/debian/image?snapshot=$snap" | id
}
send_chunks() { # image → upload id, every chunk sent
  local upload offset=0 part size
  upload=$(curl -sf -X POST "$B/v1/images/$1/uploads" | id)
  for part in "$work"/chunk.*; do
    size=$(stat -c %s "$part")
    curl -sf -X PATCH -H "Content-Range: bytes $offset-$((offset + size - 1))/*" -T "$part" "$B/v1/uploads/$upload" >/dev/null
    offset=$((offset + size))
  done
  echo "$upload"
}
commit() { curl -sf -X PUT "$B/v1/uploads/$1?digest=$digest" >/dev/null; }

printf '\nartifact: %d MiB (%d bytes), machine: %s cores\n\n' "$SIZE_MIB" "$bytes" "$(nproc)"
printf '| store | what | seconds | MB/s | vs sha256sum |\n|---|---|---|---|---|\n'
ceiling=$(mbps "$sha_s")
row() { local r; r=$(mbps "$3"); printf '| %s | %s | %.2f | %s | %s%% |\n' "$1" "$2" "$3" "$r" "$(awk -v r="$r" -v c="$ceiling" 'BEGIN { printf "%.0f", 100 * r / c }')"; }
row - "sha256sum (ceiling)" "$sha_s"
memory=()
for store in "${STORES[@]}"; do
  location=$store
  [ "$store" = dir ] || location="$store/bench-$RANDOM$RANDOM"
  data="$work/data-$RANDOM$RANDOM"
  start "$location" "$data"
  curl -sf -X POST "$B/v1/projects" -H "$json" -d '{"slug":"bench"}' >/dev/null
  curl -sf -X POST "$B/v1/projects/bench/plans" -H "$json" -d '{"slug":"debian"}' >/dev/null
  rss_before=$(rss)
  image=$(new_image)
  sync
  up_s=$(seconds curl -sf -X PUT -H 'Content-Type: application/x-xz' -T "$file" "$B/v1/images/$image/artifact?digest=$digest")
  down_s=$(seconds curl -sf -o /dev/null "$B/v1/images/$image/artifact")
  # Resumable: the same bytes in 64 MiB chunks, then the commit.
  image2=$(new_image)
  sync
  chunk_s=$(seconds eval 'commit "$(send_chunks "$image2")"')
  peak=$(hwm)
  # A commit on a process that did not receive the chunks (another replica,
  # or this one restarted) reads them back and hashes them.
  image3=$(new_image)
  upload=$(send_chunks "$image3")
  stop
  start "$location" "$data"
  rehash_s=$(seconds commit "$upload")
  stop
  row "$store" "upload, one PUT" "$up_s"
  row "$store" "upload, 64 MiB chunks + commit" "$chunk_s"
  row "$store" "commit alone, chunks received by another process (re-hash)" "$rehash_s"
  row "$store" "download" "$down_s"
  memory+=("$store: $((rss_before / 1024)) MiB before, peak $((peak / 1024)) MiB")
done
printf '\nserver resident memory during the one-PUT, chunked and download runs: %s\n' "${memory[*]}"

#!/usr/bin/env bash
# Issue 16's table, measured from outside with wrk (Debian's package,
# installed here if missing): the scheduler's reads, a conditional read
# answered 304, and builders' heartbeats, beside the ceiling measured in the
# same run: a bare actix-web + diesel + r2d2 route reading one row by
# primary key from the same database (built into the load benchmark).
#
#   benches/scheduler.sh [postgres://URL]      # SQLite without a URL
#
# 40 projects × 4 plans × 10 active snapshots (the last current), plus
# pending snapshots for the heartbeats and status changes; `wrk -t2 -c64 -d10s` per row; the
# ceiling runs before and after the others and the higher counts. The
# heartbeats are also compared with the raw write rate: the same heartbeat
# transaction run by the benchmark on one thread, without HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."
URL=${1:-}
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
work=$(mktemp -d)
server=
trap 'kill -9 "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
export SCHEDULER_DIR=$work SCHEDULER_SCRIPTS=$PWD/benches/wrk
args=(--serve "$work" --projects 40 --snapshots 10)
[ -n "$URL" ] && args+=(--postgres "$URL")
# The benchmark's own binary, so that killing it stops the server.
bin=$(cargo bench --locked --bench load --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p')
"$bin" "${args[@]}" >/dev/null 2>"$work/serve.log" &
server=$!
for _ in $(seq 1 600); do [ -s "$work/ports" ] && break; sleep 0.5; done
[ -s "$work/ports" ] || { cat "$work/serve.log"; exit 1; }
read -r service bare <"$work/ports"
read -r raw_rate raw_p99 _ <"$work/raw_heartbeat"
token=bench-admin-token-0123456789abcdef
for p in $(seq 0 39); do
  etag=$(curl -sI -H "Authorization: Bearer $token" "http://127.0.0.1:$service/v1/projects/p$p/current" \
    | tr -d '\r' | awk -F': ' 'tolower($1) == "etag" { print $2 }')
  echo "p$p $etag"
done >"$work/etags"

# wrk's p99 in milliseconds and its rate, from `wrk --latency`.
run() { # port script
  wrk -t2 -c64 -d10s --latency -s "$SCHEDULER_SCRIPTS/$2" "http://127.0.0.1:$1" >"$work/out"
  local rate p99 errors
  rate=$(awk '/^Requests\/sec:/ { print $2 }' "$work/out")
  p99=$(awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 }; print v }' "$work/out")
  errors=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$work/out")
  echo "$rate $p99 ${errors:-0}"
}
first=$(run "$bare" bare.lua)
current=$(run "$service" current.lua)
image=$(run "$service" image.lua)
image_fresh=$(run "$service" image_fresh.lua)
current_fresh=$(run "$service" current_fresh.lua)
cond=$(run "$service" current_304.lua)
second=$(run "$bare" bare.lua)
heartbeat=$(run "$service" heartbeat.lua)
patch=$(run "$service" patch.lua)
ceiling=$(printf '%s\n%s\n' "$first" "$second" | sort -g -r | head -n 1)
c_rate=${ceiling%% *}
rest=${ceiling#* }
c_p99=${rest%% *}
backend=SQLite
[ -n "$URL" ] && backend=PostgreSQL
printf '\n%s, wrk -t2 -c64 -d10s, %s cores\n\n' "$backend" "$(nproc)"
printf '| path | requests/s | p99 ms | non-2xx/3xx | vs ceiling rate | vs ceiling p99 |\n|---|---|---|---|---|---|\n'
row() { # label "rate p99 errors"
  set -- "$1" $2
  awk -v l="$1" -v r="$2" -v p="$3" -v e="$4" -v cr="$c_rate" -v cp="$c_p99" \
    'BEGIN { printf "| %s | %.0f | %.2f | %s | %.0f%% | %.1f× |\n", l, r, p, e, 100 * r / cr, p / cp }'
}
row "bare single-row read (ceiling)" "$ceiling"
row "GET …/plans/{plan}/image" "$image"
row "GET …/current" "$current"
row "GET …/plans/{plan}/image, no-cache (from the database)" "$image_fresh"
row "GET …/current, no-cache (from the database)" "$current_fresh"
row "GET …/current, If-None-Match → 304" "$cond"
row "POST …/heartbeat" "$heartbeat"
row "PATCH /v1/images/{id} (status change)" "$patch"
printf '\nThe heartbeat row beside the same transaction without HTTP, one thread (the raw write rate):\n\n'
printf '| path | requests/s | p99 ms | vs raw rate |\n|---|---|---|---|\n'
awk -v r="$raw_rate" -v p="$raw_p99" 'BEGIN { printf "| heartbeat transaction, one thread, no HTTP | %.0f | %.2f | 100%% |\n", r, p }'
set -- $heartbeat
awk -v h="$1" -v p="$2" -v r="$raw_rate" 'BEGIN { printf "| POST …/heartbeat, 64 connections | %.0f | %.2f | %.0f%% |\n", h, p, 100 * h / r }'

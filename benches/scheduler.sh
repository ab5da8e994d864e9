#!/usr/bin/env bash
# Issue 16's table, measured from outside with wrk (Debian's package,
# installed here if missing): the scheduler's reads, a conditional read
# answered 304, and builders' writes, beside the ceiling measured in the
# same run: a bare actix-web + diesel + r2d2 route reading one row by
# primary key from the same database (built into the load benchmark).
#
#   benches/scheduler.sh [postgres://URL]      # SQLite without a URL
#
# 40 projects × 4 plans × 10 active snapshots (the last current), plus
# pending snapshots for the heartbeats and status changes; `wrk -t2 -c64
# -d10s` per row; the ceiling runs before and after the others and the
# higher counts. The writes (heartbeats, image status changes, snapshot
# creation) are also compared with their raw write rate: the same registry
# transaction run by the benchmark one after another on one thread, without
# HTTP; and each write row counts the checkpoint passes that held the
# writers during it (SQLite), so that a run that never paid for one shows.
set -euo pipefail
# A failing wrk or curl inside $(…) stops the script too.
shopt -s inherit_errexit
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
token=bench-admin-token-0123456789abcdef
for p in $(seq 0 39); do
  etag=$(curl -sI -H "Authorization: Bearer $token" "http://127.0.0.1:$service/v1/projects/p$p/current" \
    | tr -d '\r' | awk -F': ' 'tolower($1) == "etag" { print $2 }')
  echo "p$p $etag"
done >"$work/etags"

# ms from one of wrk's latency figures (2.5ms, 830.00us, 1.2s).
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 }; print v }'; }
# The rate, p99 ms, non-2xx/3xx count and p50 ms of a wrk --latency run.
run() { # port script
  wrk -t2 -c64 -d10s --latency -s "$SCHEDULER_SCRIPTS/$2" "http://127.0.0.1:$1" >"$work/out"
  local rate p99 p50 errors
  rate=$(awk '/^Requests\/sec:/ { print $2 }' "$work/out")
  p99=$(ms "$(awk '$1 == "99%" { print $2 }' "$work/out")")
  p50=$(ms "$(awk '$1 == "50%" { print $2 }' "$work/out")")
  errors=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$work/out")
  echo "$rate $p99 ${errors:-0} $p50"
}
first=$(run "$bare" bare.lua)
current=$(run "$service" current.lua)
image=$(run "$service" image.lua)
image_fresh=$(run "$service" image_fresh.lua)
current_fresh=$(run "$service" current_fresh.lua)
cond=$(run "$service" current_304.lua)
second=$(run "$bare" bare.lua)
# The held checkpoint passes (SQLite) so far: their count and total ms.
held() {
  curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$service/metrics" | awk '
    $1 == "snapreg_sqlite_held_checkpoint_seconds_count" { n = $2 }
    $1 == "snapreg_sqlite_held_checkpoint_seconds_sum" { s = $2 }
    END { printf "%d %.0f\n", n, s * 1000 }'
}
# A write row: run's figures, then the held passes during it.
write_run() { # script
  local before after
  before=$(held)
  set -- "$(run "$service" "$1")"
  after=$(held)
  echo "$1 $(awk -v b="$before" -v a="$after" 'BEGIN { split(b, x, " "); split(a, y, " "); print y[1] - x[1], y[2] - x[2] }')"
}
heartbeat=$(write_run heartbeat.lua)
patch=$(write_run patch.lua)
snapshot=$(write_run snapshot.lua)
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
printf '\nThe writes at 64 connections beside the same transactions without HTTP, one after another on one thread (the raw write rate; target: p99 ≤ 25 ms, ≥ 50 %% of raw):\n\n'
printf '| write | raw tx/s | raw p99 ms | requests/s | p50 ms | p99 ms | non-2xx/3xx | vs raw rate | held checkpoints (ms in all) |\n|---|---|---|---|---|---|---|---|---|\n'
write_row() { # label raw-name "rate p99 errors p50 held held-ms"
  local raw
  raw=$(awk -v n="$2" '$1 == n { print $2, $3 }' "$work/raw_writes")
  set -- "$1" $raw $3
  awk -v l="$1" -v rr="$2" -v rp="$3" -v r="$4" -v p="$5" -v e="$6" -v m="$7" -v h="$8" -v hm="$9" \
    -v b="$backend" 'BEGIN {
      held = b == "SQLite" ? sprintf("%d (%d)", h, hm) : "–"
      vs = rr > 0 ? sprintf("%.0f%%", 100 * r / rr) : "–"
      printf "| %s | %.0f | %.2f | %.0f | %.2f | %.2f | %s | %s | %s |\n", l, rr, rp, r, m, p, e, vs, held }'
}
write_row "POST …/heartbeat" heartbeat "$heartbeat"
write_row "PATCH /v1/images/{id} (status change)" status_change "$patch"
write_row "POST …/snapshots (snapshot creation)" snapshot_creation "$snapshot"
awk '$4 > 0 { printf "\nwarning: %d raw %s transactions failed\n", $4, $1 }' "$work/raw_writes"

#!/usr/bin/env bash
# bench/hub — what `edge-fleet hub serve` costs with a fleet of stores polling it: PostgreSQL,
# the hub (release build, default --step-every-s 10), $STORES stores registered with their own
# Ed25519 report keys, and a rollout of fleet/examples/rollout.json's shape (canary 5 → 50 → 200
# → rest, the last two 20 and 50 stores in flight; soaks shortened to $SOAK_S s so waves open
# within the window) started over them. Then $STORES simulated agents
# (edge-bench-hub-load, bench/handshake): each polls GET /channels/<store>.json every $PERIOD_S s,
# the first polls spread evenly over one period, and posts a signed report whenever its manifest
# names a release it has not reported yet — so waves open as reports arrive (the hub steps on
# each report).
#
# Baseline: the same hub, same database, same rollout, nobody polling, over the same window.
# Figures: CPU time of the hub process (utime + stime, /proc/PID/stat) and of every PostgreSQL
# process (the postmaster, its children, and children that ended in the window), as % of one
# core over the window; the hub's own two PostgreSQL connections separately; request latency
# percentiles as the agents saw them (loopback, plain HTTP). A compressed run (period
# $FAST_PERIOD_S s, a new rollout) shows headroom.
#
# HISTORY_REPORTS=N gives the database N reports from earlier rollouts first (synthetic rows,
# spread over the stores, older than anything measured): the hub keeps every report as evidence,
# so a hub that has run for a while steps over a long history.
#
# Usage: bench/hub/run.sh
#   STORES (500) PERIOD_S (60) WINDOW_S (60: idle and loaded windows) FAST_PERIOD_S (6; 0 = skip)
#   FAST_WINDOW_S (30) SOAK_S (5) HISTORY_REPORTS (0) KEEP=1 (keep the temp dir: logs, database)
# Builds `cargo build --release -p edge-fleet` and the load generator first.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=${CARGO_TARGET_DIR:-$ROOT/target}
STORES=${STORES:-500}
PERIOD_S=${PERIOD_S:-60}
WINDOW_S=${WINDOW_S:-60}
FAST_PERIOD_S=${FAST_PERIOD_S:-6}
FAST_WINDOW_S=${FAST_WINDOW_S:-30}
SOAK_S=${SOAK_S:-5}
HISTORY_REPORTS=${HISTORY_REPORTS:-0}
HZ=$(getconf CLK_TCK)

say() { printf '[hub-bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
  say "FAIL: $*"
  [ -n "${D:-}" ] && [ -f "$D/hub.log" ] && tail -20 "$D/hub.log" >&2
  exit 1
}
pg_bin() {
  local d
  d=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] || die "PostgreSQL not installed (apt-get install postgresql)"
  echo "$d/$1"
}
# PostgreSQL refuses to run as root: as root, run its server tools as the `postgres` user.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
q() { "$(pg_bin psql)" -X -q -t -A -h 127.0.0.1 -p "$PG_PORT" -U bench -d fleet -c "$1"; }
wait_for() { # SECS WHAT CMD...: poll CMD every 0.2 s until it succeeds
  local end=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    [ $SECONDS -lt $end ] || die "timed out waiting for $what"
    sleep 0.2
  done
}

HUB_PID='' LOAD_PID='' D=''
cleanup() {
  local p
  for p in "$LOAD_PID" "$HUB_PID"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  if [ -n "$D" ] && [ -f "$D/pg/data/postmaster.pid" ]; then
    as_pg "$(pg_bin pg_ctl)" -D "$D/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1 || say "pg_ctl stop failed"
  fi
  if [ -n "$D" ]; then
    if [ "${KEEP:-0}" = 1 ]; then say "kept $D"; else rm -rf "$D"; fi
  fi
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

(cd "$ROOT" && cargo build -q --release -p edge-fleet)
(cd "$ROOT" && cargo build -q --release -p edge-bench-handshake --bin edge-bench-hub-load)
FLEET=$T/release/edge-fleet
LOAD=$T/release/edge-bench-hub-load

D=$(mktemp -d /tmp/edge-hub-bench.XXXXXX)
chmod 755 "$D"
mkdir -p "$D/pg"

# 1. PostgreSQL: a throwaway cluster, loopback only, trust auth, no fsync (as examples/fleet).
PG_PORT=$(free_port)
[ "$(id -u)" = 0 ] && chown postgres: "$D/pg"
as_pg "$(pg_bin initdb)" -D "$D/pg/data" -U bench -A trust -E UTF8 --no-sync >"$D/initdb.log" 2>&1 ||
  { cat "$D/initdb.log" >&2; die "initdb"; }
as_pg "$(pg_bin pg_ctl)" -D "$D/pg/data" -l "$D/pg/postgres.log" -w -t 30 \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $D/pg -c fsync=off" start >/dev/null ||
  { cat "$D/pg/postgres.log" >&2; die "PostgreSQL did not start"; }
"$(pg_bin createdb)" -h 127.0.0.1 -p "$PG_PORT" -U bench fleet
PG_PID=$(head -1 "$D/pg/data/postmaster.pid")
DB="postgres://bench@127.0.0.1:$PG_PORT/fleet?sslmode=disable"
say "PostgreSQL $("$(pg_bin postgres)" --version | awk '{print $3}') on :$PG_PORT"

# 2. Keys, stores, a first release everywhere (so every poll gets a manifest, as in a running fleet).
"$LOAD" keys --stores "$STORES" --out "$D/keys"
t0=$SECONDS
while IFS=$'\t' read -r name region key; do
  "$FLEET" hub register --database "$DB" --name "$name" --region "$region" --key "$key" >/dev/null
done <"$D/keys/stores.tsv"
say "$STORES stores registered in $((SECONDS - t0)) s"
if [ "$HISTORY_REPORTS" -gt 0 ]; then
  # Shaped like a real row: a store's signed report on an earlier release (ids 9…), kept whole;
  # version 0, below every manifest this run publishes (the channels start afresh here).
  q "insert into edge_hub.reports (store, received_at, version, release, outcome, reported_at, signed)
     select s.name, now() - make_interval(hours => h.n), 0, lpad('9' || (h.n / $STORES), 64, '0'), 'succeeded',
            to_char(now() - make_interval(hours => h.n), 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
            jsonb_build_object('report', jsonb_build_object('store', s.name, 'channel', s.name, 'version', 0,
              'release', lpad('9' || (h.n / $STORES), 64, '0'), 'outcome', 'succeeded', 'at', '', 'detail', '[]'::jsonb),
              'signature', s.name || ':' || repeat('A', 86) || '==')
     from generate_series(1, $HISTORY_REPORTS) h(n)
     join (select name, row_number() over (order by name) - 1 as i from edge_hub.stores) s on s.i = h.n % $STORES
     order by h.n desc; analyze edge_hub.reports" >/dev/null
  say "$HISTORY_REPORTS earlier reports in the database"
fi

release() { printf '%064d' "$1"; } # release ids: 64 hex digits
spec() { # N: release N over the stores in fleet/examples/rollout.json's partitions, soaks shortened
  python3 - "$ROOT/fleet/examples/rollout.json" "$(release "$1")" "$(release $(($1 - 1)))" "$SOAK_S" >"$D/spec-$1.json" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["release"], spec["previous"] = sys.argv[2], sys.argv[3]
for p in spec["partitions"]:
    if "soak_s" in p:
        p["soak_s"] = int(sys.argv[4])
print(json.dumps(spec))
PY
  "$FLEET" hub start --database "$DB" --spec "$D/spec-$1.json" >/dev/null
}
published() { [ "$(q "select count(*) from edge_hub.channels where release = '$(release "$1")'")" -ge "$2" ]; }
phases() { q "select state->'phases' from edge_hub.rollouts where current"; }

printf '{"release": "%s", "previous": "%s", "on_failure": "halt", "partitions": [{"name": "all"}]}\n' \
  "$(release 1)" "$(release 0)" >"$D/spec-1.json"
"$FLEET" hub start --database "$DB" --spec "$D/spec-1.json" >/dev/null
HUB_PORT=$(free_port)
HUB=http://127.0.0.1:$HUB_PORT
mkdir -p "$D/bundles"
"$FLEET" hub serve --database "$DB" --listen "127.0.0.1:$HUB_PORT" --bundles "$D/bundles" \
  --key "$D/keys/hub-1.sec" --key "$D/keys/hub-2.sec" >"$D/hub.log" 2>&1 &
HUB_PID=$!
wait_for 60 "the hub to publish release 1 to every store" published 1 "$STORES"
"$LOAD" run --hub "$HUB" --keys "$D/keys" --once >"$D/prime.out" || { cat "$D/prime.out" >&2; die "priming"; }
passed() { [ "$(phases)" = '["passed"]' ]; }
wait_for 60 "release 1 to pass" passed
say "release 1 on every store and reported; hub pid $HUB_PID on $HUB"

# CPU clock ticks a process used: utime + stime (+ its reaped children's with a second arg).
ticks() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  s=${s##*) }
  awk -v c="${2:-0}" '{ print $12 + $13 + (c ? $14 + $15 : 0) }' <<<"$s"
}
pg_ticks() { # every PostgreSQL process: postmaster, live children, children reaped so far
  local t c
  t=$(ticks "$PG_PID" 1)
  for c in $(ps -o pid= --ppid "$PG_PID"); do t=$((t + $(ticks "$c"))); done
  echo "$t"
}
HUB_BACKENDS=$(q "select string_agg(pid::text, ' ') from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()")
backend_ticks() {
  local t=0 b
  for b in $HUB_BACKENDS; do t=$((t + $(ticks "$b"))); done
  echo "$t"
}
sample() { echo "$(date +%s.%N) $(ticks "$HUB_PID") $(pg_ticks) $(backend_ticks)"; }

# measure NAME CMD...: CPU of the hub and PostgreSQL while CMD runs -> $D/NAME.cpu
measure() {
  local name=$1 a b
  shift
  a=$(sample)
  "$@" >"$D/$name.out" 2>"$D/$name.err" &
  LOAD_PID=$!
  wait "$LOAD_PID" || { cat "$D/$name.out" "$D/$name.err" >&2; die "$name: $* failed"; }
  LOAD_PID=''
  b=$(sample)
  awk -v hz="$HZ" -v a="$a" -v b="$b" 'BEGIN {
    split(a, x, " "); split(b, y, " "); w = y[1] - x[1]
    h = (y[2] - x[2]) / hz; p = (y[3] - x[3]) / hz; c = (y[4] - x[4]) / hz
    printf "wall_s %.1f\nhub_s %.2f\npg_s %.2f\nbackends_s %.2f\n", w, h, p, c
    printf "hub_pct %.2f\npg_pct %.2f\nbackends_pct %.2f\nboth_pct %.2f\n", 100 * h / w, 100 * p / w, 100 * c / w, 100 * (h + c) / w
  }' >"$D/$name.cpu"
  awk '/^VmRSS/ { printf "hub_rss_mib %.1f\n", $2 / 1024 }' "/proc/$HUB_PID/status" >>"$D/$name.cpu"
  cat "$D/$name.out" >>"$D/$name.cpu"
  say "$name: $(tr '\n' ' ' <"$D/$name.cpu" | cut -c1-200)"
}

# 3. The rollout of release 2; its canary published, nobody polling yet: the idle baseline.
spec 2
wait_for 60 "release 2's canary" published 2 5
measure idle sleep "$WINDOW_S"

# 4. The fleet polling every $PERIOD_S s.
measure load "$LOAD" run --hub "$HUB" --keys "$D/keys" --period-s "$PERIOD_S" --window-s "$WINDOW_S"
echo "handed $(q "select count(*) from edge_hub.channels where release = '$(release 2)'")" >>"$D/load.cpu"
say "release 2 after the window: phases $(phases)"

# 5. Compressed: a new rollout, the fleet polling every $FAST_PERIOD_S s.
if [ "$FAST_PERIOD_S" != 0 ]; then
  spec 3
  wait_for 60 "release 3's canary" published 3 5
  measure fast "$LOAD" run --hub "$HUB" --keys "$D/keys" --period-s "$FAST_PERIOD_S" --window-s "$FAST_WINDOW_S"
  echo "handed $(q "select count(*) from edge_hub.channels where release = '$(release 3)'")" >>"$D/fast.cpu"
  say "release 3 after the window: phases $(phases)"
fi

# 6. The table.
v() { awk -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print "–" }' "$D/$1.cpu" 2>/dev/null || echo –; }
# load / idle; an idle figure under one clock tick is taken as one tick: the ratio is then a floor.
ratio() {
  awk -v a="$(v load "$1")" -v b="$(v idle "$1")" -v t="$(awk -v hz="$HZ" -v w="$(v idle wall_s)" -v k="$1" \
    'BEGIN { print (k ~ /_pct$/ ? 100 / w : 1) / hz }')" 'BEGIN { if (b >= t) printf "%.1f", a / b; else printf "≥ %.0f", a / t }'
}
runs=(idle load)
[ "$FAST_PERIOD_S" != 0 ] && runs+=(fast)
row() { # LABEL KEY [ratio]
  local r line="| $1 |"
  for r in "${runs[@]}"; do line+=" $(v "$r" "$2") |"; done
  if [ -n "${3:-}" ]; then line+=" $(ratio "$2") |"; else line+=" |"; fi
  echo "$line"
}
rate() { awk -v n="$(v "$1" "$2")" -v w="$(v "$1" wall_s)" 'BEGIN { if (n + 0 > 0) printf "%d (%.1f/s)", n, n / w; else print 0 }'; }
lat() { echo "$(v "$1" "$2_p50_ms") / $(v "$1" "$2_p90_ms") / $(v "$1" "$2_p99_ms") / $(v "$1" "$2_max_ms")"; }
echo
echo "$STORES stores, $HISTORY_REPORTS earlier reports in the database; loaded window ${WINDOW_S} s polling every ${PERIOD_S} s; compressed ${FAST_WINDOW_S} s every ${FAST_PERIOD_S} s; $(nproc) cores, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
head="| metric | idle hub (baseline) | $STORES stores / ${PERIOD_S} s | load / idle |"
sep="|---|---:|---:|---:|"
if [ "$FAST_PERIOD_S" != 0 ]; then
  head="| metric | idle hub (baseline) | $STORES stores / ${PERIOD_S} s | $STORES stores / ${FAST_PERIOD_S} s | load / idle |"
  sep="|---|---:|---:|---:|---:|"
fi
echo "$head"
echo "$sep"
row "**hub CPU, % of one core** (goal < 5)" hub_pct ratio
row "hub + its 2 PostgreSQL connections, % of one core" both_pct ratio
row "PostgreSQL CPU, all processes, % of one core" pg_pct ratio
row "hub CPU in the window, s" hub_s ratio
line="| PostgreSQL CPU in the window, s (the hub's connections) |"
for r in "${runs[@]}"; do line+=" $(v "$r" pg_s) ($(v "$r" backends_s)) |"; done
echo "$line |"
row "window, s" wall_s
line="| GET /channels (rate) |"
for r in "${runs[@]}"; do line+=" $(rate "$r" gets) |"; done
echo "$line |"
line="| POST /v1/reports accepted |"
for r in "${runs[@]}"; do line+=" $(v "$r" post_202) |"; done
echo "$line |"
line="| stores handed the rollout's release at the end |"
for r in "${runs[@]}"; do line+=" $(v "$r" handed) |"; done
echo "$line |"
line="| GET latency p50 / p90 / p99 / max, ms |"
for r in "${runs[@]}"; do line+=" $(lat "$r" get) |"; done
echo "$line |"
line="| POST latency p50 / p90 / p99 / max, ms |"
for r in "${runs[@]}"; do line+=" $(lat "$r" post) |"; done
echo "$line |"
line="| poll start late vs schedule, p99 ms |"
for r in "${runs[@]}"; do line+=" $(v "$r" late_p99_ms) |"; done
echo "$line |"
row "hub RSS at the end, MiB" hub_rss_mib
row "load generator's own CPU, s" self_cpu_s

# Nothing left running.
pids="$HUB_PID $PG_PID"
trap - EXIT
cleanup
gone() { ! kill -0 "$1" 2>/dev/null; }
for p in $pids; do
  # (the postmaster removes its pid file, which pg_ctl waits for, just before it exits)
  wait_for 10 "process $p to exit" gone "$p"
done

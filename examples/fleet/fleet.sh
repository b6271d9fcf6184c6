#!/usr/bin/env bash
# examples/fleet/fleet.sh — many edge stores, one Terraform state per store, all in PostgreSQL
# (Terraform's `pg` backend, one workspace per store), converged against an edge lab.
#
#   fleet.sh up                 PostgreSQL on 127.0.0.1 + database, edge lab with $STORES stores,
#                               Ceph initialised per store, terraform init, one workspace per store
#   fleet.sh apply [STORE...]   apply every (or the named) store, $JOBS stores at a time
#   fleet.sh plan  [STORE...]   plan each store; exit 2 if any store has changes
#   fleet.sh lock-demo [STORE]  two runs on one store: the second fails on the lock, a third waits
#   fleet.sh status             stores and their workspaces, lab and database endpoints
#   fleet.sh down               stop the lab and PostgreSQL, delete $FLEET_DIR
#   fleet.sh check              all of it in a temp dir, self-checking, cleans up (exit != 0 = fail)
#
# Environment: FLEET_DIR (/tmp/edge-fleet; `check` uses its own temp dir), STORES (3), NET (150:
# lab addresses 127.NET.S.N), JOBS (2), LOCK_TIMEOUT (60s), FLEET_PG_PORT (a free port), FLEET_TF
# (0: `up` starts PostgreSQL and the lab only), binaries from
# $CARGO_TARGET_DIR/debug or EDGE_PROVIDER_BIN / EDGE_LAB_BIN, EDGE_TERRAFORM (.tools/bin/terraform).
# Builds nothing: `cargo build -p terraform-provider-edge -p edge-lab` first.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
T=${CARGO_TARGET_DIR:-$ROOT/target}
PROVIDER=${EDGE_PROVIDER_BIN:-$T/debug/terraform-provider-edge}
LAB=${EDGE_LAB_BIN:-$T/debug/edge-lab}
TF=${EDGE_TERRAFORM:-$ROOT/.tools/bin/terraform}
STORES=${STORES:-3}
NET=${NET:-150}
JOBS=${JOBS:-2}
LOCK_TIMEOUT=${LOCK_TIMEOUT:-60s}
D=${FLEET_DIR:-/tmp/edge-fleet}

say() { printf '[fleet %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

pg_bin() { # newest installed PostgreSQL's tool
  local d
  d=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] || die "PostgreSQL not installed (apt-get install postgresql)"
  echo "$d/$1"
}
# PostgreSQL refuses to run as root: as root, run its server tools as the `postgres` user.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
gone() { ! kill -0 "$1" 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Poll CMD (with backoff) until it succeeds or SECS pass.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs)) delay=0.05
  until "$@"; do
    [ $SECONDS -lt $end ] || return 1
    sleep "$delay"
    delay=$(awk -v d="$delay" 'BEGIN { d *= 1.5; print (d > 1) ? 1 : d }')
  done
  [ -n "$what" ] && say "$what"
  return 0
}

load() { # the settings `up` recorded
  [ -f "$D/fleet.env" ] || die "no fleet in $D (run: fleet.sh up)"
  # shellcheck source=/dev/null
  . "$D/fleet.env"
}
psql_q() { "$(pg_bin psql)" -X -q -t -A -h 127.0.0.1 -p "$PG_PORT" -U fleet -d fleet -c "$1"; }
stores() { cat "$D/stores.txt"; }

tf() { # terraform in the per-store root (copied under $D, so nothing is written into the repo)
  (cd "$D/tf/store" && TF_CLI_CONFIG_FILE="$D/tf.rc" TF_IN_AUTOMATION=1 PG_CONN_STR="$PG_CONN_STR" \
    "$TF" "$@")
}
store_tf() { # STORE ARGS...: terraform in that store's workspace, with that store's credentials
  local s=$1; shift
  (
    set -a
    # shellcheck source=/dev/null
    . "$D/stores/$s.env"
    set +a
    TF_WORKSPACE=$s tf "$@"
  )
}

cmd_up() {
  for b in "$PROVIDER" "$LAB" "$TF"; do [ -x "$b" ] || die "missing $b (build it first)"; done
  [ -e "$D/fleet.env" ] && die "$D already holds a fleet (fleet.sh down first)"
  mkdir -p "$D"/{log,stores,tf}
  chmod 755 "$D"

  # 1. PostgreSQL: a throwaway cluster under $D, loopback only, trust auth for the local user
  #    `fleet`, no fsync (nothing here must survive a crash).
  local port=${FLEET_PG_PORT:-$(free_port)}
  mkdir -p "$D/pg"
  [ "$(id -u)" = 0 ] && chown postgres: "$D/pg"
  as_pg "$(pg_bin initdb)" -D "$D/pg/data" -U fleet -A trust -E UTF8 --no-sync >"$D/log/initdb.log" 2>&1 \
    || { cat "$D/log/initdb.log" >&2; die "initdb"; }
  as_pg "$(pg_bin pg_ctl)" -D "$D/pg/data" -l "$D/pg/postgres.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $D/pg -c fsync=off -c max_connections=200" start >/dev/null \
    || { cat "$D/pg/postgres.log" >&2; die "PostgreSQL did not start"; }
  "$(pg_bin createdb)" -h 127.0.0.1 -p "$port" -U fleet fleet
  cat >"$D/fleet.env" <<EOF
PG_PORT=$port
PG_CONN_STR=postgres://fleet@127.0.0.1:$port/fleet?sslmode=disable
EOF
  load
  say "PostgreSQL on 127.0.0.1:$port, database fleet"

  # 2. The edge lab: $STORES stores of 3 nodes + PBS each, no Ceph/BMC peers (light).
  "$LAB" up --dir "$D/lab" --stores "$STORES" --net "$NET" >"$D/log/lab-up.log" 2>&1 \
    || { cat "$D/log/lab-up.log" >&2; die "edge-lab up"; }
  say "edge lab up: $STORES stores on 127.$NET.S.N"

  # Per store: the provider's settings (what a real fleet would read from its secret store).
  python3 - "$D/lab/lab.json" "$D/stores" >"$D/stores.txt" <<'PY'
import json, shlex, sys
lab = json.load(open(sys.argv[1]))
for s in lab["stores"]:
    env = {}
    for kind in ("pve", "pbs"):
        for var, field in (("ENDPOINT", "endpoint"), ("API_TOKEN", "api_token"), ("TLS_FINGERPRINT", "tls_fingerprint")):
            env[f"EDGE_{kind.upper()}_{var}"] = s[kind][field]
    env["TF_VAR_datastore"] = s["pbs"]["datastore"]
    with open(f"{sys.argv[2]}/{s['id']}.env", "w") as f:
        f.write("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    print(s["id"])
PY
  # Ceph pools need `pveceph init` and a first monitor (PVE cannot reach Ceph before one exists;
  # edge_proxmox_node does both on real nodes; here, curl), and the monitor's task to finish.
  local s
  for s in $(stores); do
    (
      # shellcheck source=/dev/null
      . "$D/stores/$s.env"
      pve() {
        curl -sS --fail-with-body --cacert "$D/lab/ca.pem" -X "$1" \
          -H "Authorization: PVEAPIToken=$EDGE_PVE_API_TOKEN" "$EDGE_PVE_ENDPOINT/api2/json$2"
      }
      pve POST /nodes/pve1/ceph/init >/dev/null
      upid=$(pve POST /nodes/pve1/ceph/mon/pve1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"])')
      upid_q=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$upid")
      task_ok() { pve GET "/nodes/pve1/tasks/$1/status" | grep -q '"exitstatus":"OK"'; }
      wait_for 30 "" task_ok "$upid_q"
    ) || die "ceph init of $s"
  done

  # 3. Terraform: the provider from the build dir (dev_overrides), backend init once, one
  #    workspace per store. FLEET_TF=0 stops here (examples/fleet-rollout: each store's agent
  #    runs its own Terraform).
  [ "${FLEET_TF:-1}" = 0 ] && return 0
  mkdir -p "$D/plugins"
  ln -sf "$PROVIDER" "$D/plugins/terraform-provider-edge"
  cat >"$D/tf.rc" <<EOF
provider_installation {
  dev_overrides { "edgeform/edge" = "$D/plugins" }
  direct {}
}
EOF
  cp -r "$HERE/store" "$HERE/modules" "$D/tf/"
  tf init -input=false -no-color >"$D/log/init.log" 2>&1 || { cat "$D/log/init.log" >&2; die "terraform init"; }
  for s in $(stores); do
    tf workspace new "$s" >>"$D/log/init.log" 2>&1 || { cat "$D/log/init.log" >&2; die "workspace $s"; }
  done
  tf workspace select default >/dev/null
  say "terraform: pg backend initialised, $(stores | wc -l) workspaces"
}

# Run `store_tf STORE ARGS...` for each store, $JOBS at a time; logs in $D/log/VERB-STORE.log.
# Prints "STORE EXIT" per store; returns non-zero if any exit code is not in OK (e.g. "0" or "0 2").
for_stores() {
  local ok=$1 verb=$2; shift 2
  local list=("$@") s
  [ ${#list[@]} -gt 0 ] || mapfile -t list < <(stores)
  # -lock-timeout: the pg backend takes a database-wide advisory lock (-1, its "workspace
  # creation" lock) for a moment on every lock, whatever the workspace, so two stores locking at
  # the same instant collide ("Cannot lock workspace; already locked for workspace creation").
  # Terraform retries within the timeout; a store held by a long run still fails after it.
  local -a args
  case $verb in
    apply) args=(apply -auto-approve -input=false -no-color "-lock-timeout=$LOCK_TIMEOUT") ;;
    plan) args=(plan -detailed-exitcode -input=false -no-color "-lock-timeout=$LOCK_TIMEOUT") ;;
  esac
  rm -f "$D/log/$verb".rc
  for s in "${list[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    (
      rc=0
      store_tf "$s" "${args[@]}" >"$D/log/$verb-$s.log" 2>&1 || rc=$?
      echo "$s $rc" >>"$D/log/$verb.rc"
    ) &
  done
  wait
  local bad=0 rc
  while read -r s rc; do
    case " $ok " in *" $rc "*) ;; *) bad=1; say "$verb $s exited $rc:"; tail -25 "$D/log/$verb-$s.log" >&2 ;; esac
    echo "$s $rc"
  done < <(sort "$D/log/$verb.rc")
  return $bad
}

cmd_apply() {
  load
  local t0=$SECONDS out s
  out=$(for_stores 0 apply "$@") || die "apply failed"
  while read -r s _; do
    say "$s: $(grep -Eo 'Apply complete! Resources: [^.]*' "$D/log/apply-$s.log")"
  done <<<"$out"
  say "applied in $((SECONDS - t0)) s"
}

cmd_plan() {
  load
  local out rc=0
  out=$(for_stores "0 2" plan "$@") || rc=1
  local s code changed=0
  while read -r s code; do
    case $code in
      0) say "$s: no changes" ;;
      2) say "$s: changes pending"; changed=1 ;;
    esac
  done <<<"$out"
  [ $rc = 0 ] || return 1
  [ $changed = 0 ] || return 2
}

# Two runs on one store. The holder is an apply with a change, waiting at its approval prompt —
# an operator reviewing a plan holds the store's lock all that time. A second apply with
# -lock-timeout=0s must fail on the lock; a plan with -lock-timeout=120s must wait and then see
# the holder's result.
cmd_lock_demo() {
  load
  local s=${1:-$(stores | head -1)}
  local fifo="$D/approve.fifo" hold="$D/log/lock-holder.log" second="$D/log/lock-second.log" third="$D/log/lock-waiter.log"
  rm -f "$fifo"; mkfifo "$fifo"
  exec 3<>"$fifo"
  TF_VAR_gc_schedule=daily store_tf "$s" apply -input=true -no-color <"$fifo" >"$hold" 2>&1 &
  local holder=$!
  wait_for 60 "$s: run 1 (apply, gc_schedule=daily) holds the lock at its approval prompt" \
    grep -qs 'Enter a value' "$hold" || { cat "$hold" >&2; die "holder never reached its prompt"; }
  [ "$(psql_q "select count(*) from pg_locks where locktype = 'advisory' and granted")" -ge 1 ] \
    || die "no advisory lock held in PostgreSQL"

  local rc=0
  store_tf "$s" apply -auto-approve -input=false -no-color -lock-timeout=0s >"$second" 2>&1 || rc=$?
  if [ $rc = 0 ] || ! grep -q 'Error acquiring the state lock' "$second"; then
    cat "$second" >&2; die "run 2 on a locked store did not fail on the lock (exit $rc)"
  fi
  say "$s: run 2 (apply -lock-timeout=0s) refused: $(grep -m1 -o 'Error acquiring the state lock' "$second")"

  store_tf "$s" plan -detailed-exitcode -input=false -no-color -lock-timeout=120s >"$third" 2>&1 &
  local waiter=$!
  # Terraform says "Acquiring state lock" once the lock has been busy for a while: it is waiting.
  wait_for 60 "$s: run 3 (plan -lock-timeout=120s) is waiting for the lock" \
    grep -qs 'Acquiring state lock' "$third" || { cat "$third" >&2; die "run 3 never waited"; }
  kill -0 "$waiter" 2>/dev/null || { cat "$third" >&2; die "run 3 ended while the lock was held"; }

  echo yes >&3
  wait "$holder" || { cat "$hold" >&2; die "run 1 failed"; }
  exec 3>&-; rm -f "$fifo"
  say "$s: run 1 approved and applied: $(grep -Eo 'Apply complete! Resources: [^.]*' "$hold")"
  rc=0; wait "$waiter" || rc=$?
  # Exit 2 (changes) and the diff back from run 1's value: it read the state run 1 wrote.
  if [ $rc != 2 ] || ! grep -q '"daily" -> "sun 04:00"' "$third"; then
    cat "$third" >&2; die "run 3 (exit $rc) did not plan against run 1's state"
  fi
  say "$s: run 3 got the lock after run 1 and planned against its state (gc \"daily\" -> \"sun 04:00\")"
  for_stores 0 apply "$s" >/dev/null || die "restoring $s"
  say "$s: restored"
}

cmd_status() {
  load
  say "database: ${PG_CONN_STR}"
  say "lab: $D/lab (edge-lab status --dir $D/lab)"
  say "workspaces in PostgreSQL: $(psql_q 'select string_agg(name, $$ $$ order by name) from edge_fleet.states' 2>/dev/null || echo none)"
}

cmd_down() {
  [ -d "$D" ] || return 0
  [ -d "$D/lab" ] && { "$LAB" down --dir "$D/lab" >/dev/null 2>&1 || say "edge-lab down failed"; }
  if [ -f "$D/pg/data/postmaster.pid" ]; then
    as_pg "$(pg_bin pg_ctl)" -D "$D/pg/data" -m fast -w -t 30 stop >/dev/null || say "pg_ctl stop failed"
  fi
  rm -rf "$D"
  say "down: lab and PostgreSQL stopped, $D removed"
}

check_cleanup() {
  local p
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done # a lock-demo run left waiting
  cmd_down
}

# The whole story, self-checking, in its own temp dir; cleans up on any exit.
cmd_check() {
  D=$(mktemp -d /tmp/edge-fleet-check.XXXXXX)
  trap 'check_cleanup' EXIT
  trap 'exit 130' INT TERM # run the EXIT trap on Ctrl-C / kill too
  local t0=$SECONDS
  cmd_up
  load
  cmd_apply
  local n
  n=$(psql_q "select count(*) from edge_fleet.states where name like 'store-%' and data::jsonb -> 'resources' != '[]'::jsonb")
  [ "$n" = "$STORES" ] || die "expected $STORES non-empty store states in PostgreSQL, found $n"
  say "PostgreSQL holds $n store states"
  cmd_plan || die "second plan is not empty"
  # Each store's objects are in that store's lab store: 5 pools, its own 2 verify and 2 prune
  # jobs (IDs prefixed with the store), gc on its own datastore.
  python3 - "$D/lab/lab.json" <<'PY' || die "the lab does not hold what the states say"
import json, sys, urllib.request
lab = json.load(open(sys.argv[1]))
req = urllib.request.Request(lab["admin"]["endpoint"] + "/lab/snapshot",
                             headers={"Authorization": "Bearer " + lab["admin"]["token"]})
snap = json.load(urllib.request.urlopen(req))
ids = lambda x: sorted(x) if isinstance(x, dict) else sorted(j["id"] for j in x or [])
bad = []
for st, conf in zip(snap["stores"], lab["stores"]):
    sid, pbs, ds = st["id"], st["pbs"], conf["pbs"]["datastore"]
    got = (len(st["pools"] or []), ids(pbs["verify_jobs"]), ids(pbs["prune_jobs"]), pbs["datastores"][ds].get("gc-schedule"))
    want = (5, [f"{sid}-verify-monthly", f"{sid}-verify-weekly"], [f"{sid}-prune-archive", f"{sid}-prune-daily"], "sun 04:00")
    if got != want:
        bad.append(f"{sid}: {got} != {want}")
print("\n".join(bad) or f"lab: {len(snap['stores'])} stores hold exactly their own pools and jobs", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
  cmd_lock_demo "$(stores | sed -n 2p)"
  cmd_plan || die "plan after the lock demo is not empty"
  local pidfile="$D/lab/edge-lab.pid" pgpid
  pgpid=$(head -1 "$D/pg/data/postmaster.pid")
  local labpid; labpid=$(cat "$pidfile")
  trap - EXIT
  cmd_down
  # (the postmaster removes its pid file just before it exits: give it a moment)
  wait_for 10 "" gone "$pgpid" || die "PostgreSQL ($pgpid) still running"
  wait_for 10 "" gone "$labpid" || die "edge lab ($labpid) still running"
  [ ! -e "$D" ] || die "$D left behind"
  say "check passed in $((SECONDS - t0)) s"
}

case ${1:-} in
  up) cmd_up ;;
  apply) shift; cmd_apply "$@" ;;
  plan) shift; cmd_plan "$@" ;;
  lock-demo) shift; cmd_lock_demo "$@" ;;
  status) cmd_status ;;
  down) cmd_down ;;
  check) cmd_check ;;
  *) sed -n '2,17p' "$0" >&2; exit 64 ;;
esac

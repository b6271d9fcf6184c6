#!/usr/bin/env bash
# bench/check-cycle/run.sh: one store's check cycle — `edge-fleet release verify` of its bundle,
# then `terraform plan -refresh=true` (a no-op plan that reads every resource back) of the
# examples/fleet store root against its lab store — against the same root made of
# `terraform_data` (Terraform's built-in provider: its refresh reads nothing), same run,
# interleaved rounds, medians.
#
# Arms: the edge root; optionally the same root with a second provider build; the edge root
# planned without refresh (a diagnostic: what is left when the provider reads nothing); the
# terraform_data root (the baseline every ratio is against).
#
# Usage: ROUNDS=31 bench/check-cycle/run.sh
# Knobs: SKIP_BUILD=1 (use the binaries as they are), EDGE_PROVIDER_BIN / EDGE_LAB_BIN (default:
#   the release builds), BASE_PROVIDER_BIN (a second provider build, e.g. an older commit's, timed
#   as another arm against the same lab store and state), LAB_LATENCY_MS (the lab answers every
#   API GET that much later), EDGE_FLEET_BIN (default target/release/edge-fleet; the verify
#   figures are left out when it is missing), NET (158), KEEP=1 keeps the work dir.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "${SKIP_BUILD:-}" != 1 ]; then
  (cd "$ROOT" && cargo build --release -p terraform-provider-edge -p edge-lab) >&2
fi
PROVIDER=${EDGE_PROVIDER_BIN:-$T/release/terraform-provider-edge}
LAB=${EDGE_LAB_BIN:-$T/release/edge-lab}
BASE=${BASE_PROVIDER_BIN:-}
FLEET=${EDGE_FLEET_BIN:-$T/release/edge-fleet}
TF=${EDGE_TERRAFORM:-$ROOT/.tools/bin/terraform}
ROUNDS=${ROUNDS:-15}
NET=${NET:-158}
for b in "$PROVIDER" "$LAB" "$TF" ${BASE:+"$BASE"}; do
  [ -x "$b" ] || { echo "missing $b (build it first)" >&2; exit 1; }
done

log() { printf '[bench-check-cycle %s] %s\n' "$(date +%T)" "$*" >&2; }
W=$(mktemp -d /tmp/bench-check-cycle.XXXXXX)
cleanup() {
  [ -f "$W/reattach.pid" ] && kill "$(cat "$W/reattach.pid")" 2>/dev/null
  [ -d "$W/lab" ] && { "$LAB" down --dir "$W/lab" >/dev/null 2>&1 || true; }
  if [ "${KEEP:-}" = 1 ]; then log "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM # run the EXIT trap on Ctrl-C / kill too

# --- the lab store ------------------------------------------------------------------------------
"$LAB" up --dir "$W/lab" --stores 1 --net "$NET" >"$W/lab.up.log" 2>&1 || { cat "$W/lab.up.log" >&2; exit 1; }
python3 - "$W" <<'PY'
import json, shlex, sys
w = sys.argv[1]
lab = json.load(open(f"{w}/lab/lab.json"))
s = lab["stores"][0]
env = {f"EDGE_{p.upper()}_{v}": s[p][f] for p in ("pve", "pbs")
       for v, f in (("ENDPOINT", "endpoint"), ("API_TOKEN", "api_token"), ("TLS_FINGERPRINT", "tls_fingerprint"))}
env["TF_VAR_datastore"] = s["pbs"]["datastore"]
env["TF_WORKSPACE"] = s["id"]
env["LAB_ADMIN"] = lab["admin"]["endpoint"]
env["LAB_ADMIN_TOKEN"] = lab["admin"]["token"]
open(f"{w}/store.env", "w").write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
PY
# shellcheck source=/dev/null
. "$W/store.env"
pve() {
  curl -sS --fail-with-body --cacert "$W/lab/ca.pem" -X "$1" -H "Authorization: PVEAPIToken=$EDGE_PVE_API_TOKEN" \
    "$EDGE_PVE_ENDPOINT/api2/json$2"
}
admin() { # METHOD PATH [CURL ARGS...]
  local m=$1 p=$2; shift 2
  curl -sS --fail-with-body -X "$m" -H "Authorization: Bearer $LAB_ADMIN_TOKEN" -H "Content-Type: application/json" "$@" "$LAB_ADMIN$p"
}
# Pools need `pveceph init` and a first monitor (as examples/fleet/fleet.sh does it).
pve POST /nodes/pve1/ceph/init >/dev/null
upid=$(pve POST /nodes/pve1/ceph/mon/pve1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"])')
q=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$upid")
delay=0.05
for _ in $(seq 60); do
  pve GET "/nodes/pve1/tasks/$q/status" | grep -q '"exitstatus":"OK"' && break
  sleep "$delay"
  delay=$(awk -v d="$delay" 'BEGIN { d *= 1.5; print (d > 1) ? 1 : d }')
done

# --- the two roots ------------------------------------------------------------------------------
# edge: examples/fleet's store root and module, the pg backend block dropped (local state).
mkdir -p "$W/edge" "$W/modules" "$W/floor"
cp -r "$ROOT/examples/fleet/modules/store-services" "$W/modules/"
python3 - "$ROOT/examples/fleet/store/main.tf" "$W/edge/main.tf" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
out, n = re.subn(r'\n  backend "pg" \{[^}]*\}\n', "\n", src)
assert n == 1, "backend block not found"
open(sys.argv[2], "w").write(out)
PY
# floor: the same root shape (variables, one module call of 5 + 2 + 2 + 1 resources with the same
# for_each maps and values, the same outputs) as terraform_data.
cp -r "$ROOT/bench/fleet/floor" "$W/modules/floor"
cat >"$W/floor/main.tf" <<'EOF'
variable "datastore" {
  type = string
}
variable "gc_schedule" {
  type    = string
  default = "sun 04:00"
}
module "services" {
  source    = "../modules/floor"
  store_id  = terraform.workspace == "default" ? "" : terraform.workspace
  datastore = var.datastore
}
output "store_id" { value = terraform.workspace }
output "pool_ids" { value = { for k, p in module.services.pool : k => p.id } }
output "job_ids" { value = concat(values(module.services.verify)[*].id, values(module.services.prune)[*].id, [module.services.gc.id]) }
EOF
cat >>"$W/modules/floor/main.tf" <<'EOF'

output "pool" { value = terraform_data.pool }
output "verify" { value = terraform_data.verify }
output "prune" { value = terraform_data.prune }
output "gc" { value = terraform_data.gc }
EOF

# Provider builds by dev_overrides: one plugin dir and CLI config per build.
rc_for() { # NAME BINARY -> writes $W/NAME.tfrc
  mkdir -p "$W/plugins-$1"
  ln -sf "$2" "$W/plugins-$1/terraform-provider-edge"
  cat >"$W/$1.tfrc" <<EOF
provider_installation {
  dev_overrides { "edgeform/edge" = "$W/plugins-$1" }
  direct {}
}
EOF
}
rc_for edge "$PROVIDER"
[ -n "$BASE" ] && rc_for base "$BASE"
# Counting provider processes and their own CPU: the same binary under /usr/bin/time, which
# notes a line per process as it ends (only in the untimed counting runs).
mkdir -p "$W/plugins-count"
cat >"$W/plugins-count/terraform-provider-edge" <<EOF
#!/bin/sh
exec /usr/bin/time -a -o "$W/starts" -f '%U %S' "\${COUNT_BIN:?}" "\$@"
EOF
chmod +x "$W/plugins-count/terraform-provider-edge"
cat >"$W/count.tfrc" <<EOF
provider_installation {
  dev_overrides { "edgeform/edge" = "$W/plugins-count" }
  direct {}
}
EOF
export TF_IN_AUTOMATION=1
tfin() { # ROOT RC ARGS...
  local r=$1 rc=$2; shift 2
  if [ "$rc" = reattach ]; then
    # The provider already running (--debug): Terraform attaches to it instead of starting one.
    (cd "$W/$r" && TF_CLI_CONFIG_FILE="$W/edge.tfrc" TF_REATTACH_PROVIDERS="$REATTACH" "$TF" "$@")
  else
    (cd "$W/$r" && TF_CLI_CONFIG_FILE="$W/$rc.tfrc" "$TF" "$@")
  fi
}
for r in edge floor; do
  (cd "$W/$r" && TF_WORKSPACE= TF_CLI_CONFIG_FILE="$W/edge.tfrc" "$TF" init -input=false -no-color >"$W/$r.init.log" 2>&1 \
    && TF_WORKSPACE= TF_CLI_CONFIG_FILE="$W/edge.tfrc" "$TF" workspace new "$TF_WORKSPACE" >>"$W/$r.init.log" 2>&1) \
    || { cat "$W/$r.init.log" >&2; exit 1; }
  tfin "$r" edge apply -auto-approve -input=false -no-color >"$W/$r.apply.log" 2>&1 || { tail -30 "$W/$r.apply.log" >&2; exit 1; }
done
log "lab store and both roots applied (untimed)"

# --- bundles (what the store verifies before it plans) -----------------------------------------
have_fleet=0
if [ -x "$FLEET" ]; then
  have_fleet=1
  echo '{"bench": "check-cycle"}' >"$W/image-manifest.json"
  for r in edge floor; do
    mkdir -p "$W/src-$r/modules"
    cp "$W/$r/main.tf" "$W/src-$r/"
    cp -r "$W/modules/$([ $r = edge ] && echo store-services || echo floor)" "$W/src-$r/modules/"
    # release build wants the provider lock file; dev_overrides write none, so a stand-in.
    echo '# provider from dev_overrides (bench)' >"$W/src-$r/.terraform.lock.hcl"
    id=$("$FLEET" release build --name bench --config "$W/src-$r" --provider "$PROVIDER" \
      --image-manifest "$W/image-manifest.json" --out "$W/bundles" 2>"$W/$r.bundle.log") \
      || { cat "$W/$r.bundle.log" >&2; exit 1; }
    echo "$W/bundles/$id" >"$W/$r.bundle"
    "$FLEET" release verify "$(cat "$W/$r.bundle")" >/dev/null 2>&1 || { echo "verify of the $r bundle failed" >&2; exit 1; }
  done
else
  log "no $FLEET: verify rows left out (cargo build --release -p edge-fleet)"
fi

# LAB_LATENCY_MS: every API GET answered that much later (the lab's fault rules), standing in for a
# store's real API, which takes tens of milliseconds per call where the lab takes well under one.
if [ "${LAB_LATENCY_MS:-0}" -gt 0 ]; then
  admin POST /lab/faults "-d" "{\"pattern\": \"^GET \", \"latency_ms\": $LAB_LATENCY_MS}" >/dev/null
  log "lab: +$LAB_LATENCY_MS ms on every API GET"
fi

# --- the arms --------------------------------------------------------------------------------
# NAME ROOT CLI-CONFIG PLAN-FLAGS: what each arm plans. "no reads" is a diagnostic: the same edge
# plan without refresh — what is left when the provider reads nothing (Terraform's plugin
# processes, planning).
arms=("edge|edge|edge|-refresh=true")
# REATTACH=1: one more arm, the same plan against a provider process started once and kept
# (`terraform-provider-edge --debug`, TF_REATTACH_PROVIDERS) — what an agent that checks its store
# every minute could run: no provider process start, no plugin TLS per plan.
if [ "${REATTACH:-0}" = 1 ]; then
  "$PROVIDER" --debug >"$W/reattach.out" 2>"$W/reattach.err" &
  echo $! >"$W/reattach.pid"
  for _ in $(seq 100); do grep -q "TF_REATTACH_PROVIDERS=" "$W/reattach.out" && break; sleep 0.05; done
  REATTACH=$(sed -n "s/.*TF_REATTACH_PROVIDERS='\(.*\)'.*/\1/p" "$W/reattach.out")
  [ -n "$REATTACH" ] || { cat "$W/reattach.out" "$W/reattach.err" >&2; exit 1; }
  arms+=("edge, provider kept running (reattach)|edge|reattach|-refresh=true")
fi
[ -n "$BASE" ] && arms+=("edge, BASE_PROVIDER_BIN|edge|base|-refresh=true")
arms+=("edge, no reads (-refresh=false)|edge|edge|-refresh=false" "terraform_data|floor|edge|-refresh=true")
field() { echo "$1" | cut -d'|' -f"$2"; }
provider_of() { case $1 in edge) echo "$PROVIDER" ;; base) echo "$BASE" ;; esac; }

# --- counting runs (untimed): lab API calls, provider process starts, CPU per plan ------------
plan_args=(-input=false -no-color -detailed-exitcode)
calls_of() { # ROOT RC FLAGS -> lab API calls of one plan
  admin DELETE /lab/calls >/dev/null
  tfin "$1" "$2" plan "$3" "${plan_args[@]}" >"$W/count.plan.log" 2>&1 || { tail -30 "$W/count.plan.log" >&2; exit 1; }
  admin GET /lab/calls >"$W/calls.json"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["total"], json.dumps(d["by_endpoint"], sort_keys=True))' "$W/calls.json"
}
starts_of() { # ROOT RC FLAGS -> "N CPU": provider processes of one plan, their user+sys seconds
  rm -f "$W/starts"; touch "$W/starts"
  if [ "$1" = floor ] || [ "$2" = reattach ]; then echo "0 0"; return; fi # (none started per plan)
  COUNT_BIN=$(provider_of "$2") tfin "$1" count plan "$3" "${plan_args[@]}" >"$W/count.plan.log" 2>&1 \
    || { tail -30 "$W/count.plan.log" >&2; exit 1; }
  awk '{n++; c += $1 + $2} END {printf "%d %.2f", n, c}' "$W/starts"
}
cpu_of() { # ROOT RC FLAGS -> user+sys seconds of one plan (Terraform and the providers it waited for)
  local rc=$2 reattach=
  [ "$rc" = reattach ] && { rc=edge; reattach=$REATTACH; }
  (cd "$W/$1" && TF_CLI_CONFIG_FILE="$W/$rc.tfrc" TF_REATTACH_PROVIDERS=$reattach \
    /usr/bin/time -f '%U %S' -o "$W/cpu" "$TF" plan "$3" "${plan_args[@]}" >/dev/null 2>&1)
  awk '{printf "%.3f", $1 + $2}' "$W/cpu"
}
declare -A CALLS BYEP STARTS CPU
for a in "${arms[@]}"; do
  n=$(field "$a" 1); c=$(calls_of "$(field "$a" 2)" "$(field "$a" 3)" "$(field "$a" 4)")
  CALLS[$n]=${c%% *}; BYEP[$n]=${c#* }
  STARTS[$n]=$(starts_of "$(field "$a" 2)" "$(field "$a" 3)" "$(field "$a" 4)")
  CPU[$n]=$(cpu_of "$(field "$a" 2)" "$(field "$a" 3)" "$(field "$a" 4)")
done

# --- timed rounds ------------------------------------------------------------------------------
now() { date +%s.%N; }
plan_s() { # ROOT RC FLAGS -> seconds of one `terraform plan`; it must be empty
  local t0 t1 rc=0
  t0=$(now)
  tfin "$1" "$2" plan "$3" "${plan_args[@]}" >"$W/plan.log" 2>&1 || rc=$?
  t1=$(now)
  [ $rc = 0 ] || { tail -30 "$W/plan.log" >&2; echo "$1 ($2): plan exited $rc (must be an empty plan)" >&2; exit 1; }
  echo "$t1 - $t0" | bc
}
verify_s() { # ROOT -> seconds of `edge-fleet release verify` of that root's bundle
  local t0 t1
  t0=$(now)
  "$FLEET" release verify "$(cat "$W/$1.bundle")" >/dev/null 2>&1 || { echo "verify $1 failed" >&2; exit 1; }
  t1=$(now)
  echo "$t1 - $t0" | bc
}
declare -A T V
n_arms=${#arms[@]}
for r in $(seq "$ROUNDS"); do
  # The order rotates every round, so a drift in machine load hits every arm alike.
  line="round $r:"
  for i in $(seq 0 $((n_arms - 1))); do
    a=${arms[$(((i + r) % n_arms))]}
    n=$(field "$a" 1)
    [ $have_fleet = 1 ] && V[$n]+="$(verify_s "$(field "$a" 2)") "
    t=$(plan_s "$(field "$a" 2)" "$(field "$a" 3)" "$(field "$a" 4)")
    T[$n]+="$t "
    line+=" $n $t s;"
  done
  log "$line"
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
floor_name="terraform_data"
[ $have_fleet = 1 ] && fvm=$(echo "${V[$floor_name]}" | median)
echo
echo "$(date +%F), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(TF_CLI_CONFIG_FILE="$W/edge.tfrc" "$TF" version | head -1), ROUNDS=$ROUNDS, lab $LAB, LAB_LATENCY_MS=${LAB_LATENCY_MS:-0}"
echo
# Ratios are taken round by round (each arm against the terraform_data plan of the same round),
# then the median: the machine's speed drifts during a run, and a pair shares its moment.
pair_ratios() { # "a1 a2 …" "b1 b2 …" -> median of a_i / b_i
  paste <(echo "$1" | tr ' ' '\n' | grep .) <(echo "$2" | tr ' ' '\n' | grep .) | awk '{print $1 / $2}' | median
}
add() { # "a1 …" "b1 …" -> "a1+b1 …"
  paste <(echo "$1" | tr ' ' '\n' | grep .) <(echo "$2" | tr ' ' '\n' | grep .) | awk '{printf "%s ", $1 + $2}'
}
echo "| one store (10 resources), medians of $ROUNDS interleaved rounds | terraform plan | ratio (per round) | verify + plan | ratio (per round) | lab API calls | provider processes (their CPU) | CPU of one more plan |"
echo "|---|---|---|---|---|---|---|---|"
for a in "${arms[@]}"; do
  n=$(field "$a" 1)
  m=$(echo "${T[$n]}" | median)
  if [ $have_fleet = 1 ]; then
    cyc=$(printf '%.3f s | %.2f' "$(add "${V[$n]}" "${T[$n]}" | median)" \
      "$(pair_ratios "$(add "${V[$n]}" "${T[$n]}")" "$(add "${V[$floor_name]}" "${T[$floor_name]}")")")
  else
    cyc="n/a | "
  fi
  printf '| %s | %.3f s | **%.2f** | %s | %s | %s | %s s |\n' "$n" "$m" "$(pair_ratios "${T[$n]}" "${T[$floor_name]}")" "$cyc" \
    "${CALLS[$n]}" "${STARTS[$n]% *} (${STARTS[$n]#* } s)" "${CPU[$n]}"
done
[ -n "$BASE" ] && printf '\nedge / edge with BASE_PROVIDER_BIN, per round: %.3f\n' "$(pair_ratios "${T[edge]}" "${T["edge, BASE_PROVIDER_BIN"]}")"
echo
[ $have_fleet = 1 ] && echo "verify (edge-fleet release verify of the bundle) alone, median: edge $(echo "${V[edge]}" | median) s, terraform_data $fvm s"
for a in "${arms[@]}"; do
  n=$(field "$a" 1)
  echo "rounds (s), $n: ${T[$n]}"
done
for a in "${arms[@]}"; do
  n=$(field "$a" 1)
  [ "${CALLS[$n]}" != 0 ] && echo "lab calls of one plan, $n: ${BYEP[$n]}"
done
true

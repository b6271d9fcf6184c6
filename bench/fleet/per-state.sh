#!/usr/bin/env bash
# bench/fleet/per-state.sh: the fleet as examples/fleet runs it — one state per store — planned
# store after store: STATES plans of 10 edge resources each (one provider process per plan) against
# STATES plans of 10 terraform_data each, same module shape, interleaved rounds, medians of the
# total. Local state in one workspace per store (the pg backend would add the same cost to both).
#
# Usage: STATES=50 ROUNDS=3 bench/fleet/per-state.sh   (binaries as in bench/fleet/run.sh)
# Knobs: NET (159), JOBS (2, the untimed set-up applies only), KEEP=1 keeps the work dir.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=${CARGO_TARGET_DIR:-$ROOT/target}
PROVIDER=${EDGE_PROVIDER_BIN:-$T/debug/terraform-provider-edge}
LAB=${EDGE_LAB_BIN:-$T/debug/edge-lab}
TF=${EDGE_TERRAFORM:-$ROOT/.tools/bin/terraform}
STATES=${STATES:-50}
ROUNDS=${ROUNDS:-3}
NET=${NET:-159}
JOBS=${JOBS:-2}
for b in "$PROVIDER" "$LAB" "$TF"; do
  [ -x "$b" ] || { echo "missing $b (build it first)" >&2; exit 1; }
done
[ "$STATES" -le 199 ] || { echo "STATES: one lab, at most 199 stores" >&2; exit 1; }

log() { printf '[bench-fleet-per-state %s] %s\n' "$(date +%T)" "$*" >&2; }
W=$(mktemp -d /tmp/bench-fleet-ps.XXXXXX)
cleanup() {
  [ -d "$W/lab" ] && { "$LAB" down --dir "$W/lab" >/dev/null 2>&1 || true; }
  if [ "${KEEP:-}" = 1 ]; then log "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM # run the EXIT trap on Ctrl-C / kill too

"$LAB" up --dir "$W/lab" --stores "$STATES" --net "$NET" >"$W/lab.up.log" 2>&1 || { cat "$W/lab.up.log" >&2; exit 1; }
mkdir -p "$W/edge" "$W/floor" "$W/modules" "$W/env"
cp -r "$ROOT/examples/fleet/modules/store-services" "$W/modules/"
cp -r "$ROOT/bench/fleet/floor" "$W/modules/floor"
# Per store: its credentials (provider settings from the environment, as in examples/fleet).
python3 - "$W" <<'PY'
import json, shlex, sys
w = sys.argv[1]
lab = json.load(open(f"{w}/lab/lab.json"))
for s in lab["stores"]:
    env = {f"EDGE_{p.upper()}_{v}": s[p][f] for p in ("pve", "pbs")
           for v, f in (("ENDPOINT", "endpoint"), ("API_TOKEN", "api_token"), ("TLS_FINGERPRINT", "tls_fingerprint"))}
    env["TF_VAR_datastore"] = s["pbs"]["datastore"]
    open(f"{w}/env/{s['id']}", "w").write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
PY
cat >"$W/edge/main.tf" <<'EOF'
terraform {
  required_providers {
    edge = { source = "edgeform/edge" }
  }
}
provider "edge" {}
variable "datastore" { type = string }
module "store" {
  source    = "../modules/store-services"
  store_id  = terraform.workspace
  datastore = var.datastore
}
EOF
cat >"$W/floor/main.tf" <<'EOF'
variable "datastore" { type = string }
module "store" {
  source    = "../modules/floor"
  store_id  = terraform.workspace
  datastore = var.datastore
}
EOF
mapfile -t STORE_IDS < <(ls "$W/env")
for s in "${STORE_IDS[@]}"; do
  (
    # shellcheck source=/dev/null
    . "$W/env/$s"
    # Pools need `pveceph init` and a first monitor (PVE cannot reach Ceph before one exists).
    pve() {
      curl -sS --fail-with-body --cacert "$W/lab/ca.pem" -X "$1" -H "Authorization: PVEAPIToken=$EDGE_PVE_API_TOKEN" \
        "$EDGE_PVE_ENDPOINT/api2/json$2"
    }
    pve POST /nodes/pve1/ceph/init >/dev/null
    upid=$(pve POST /nodes/pve1/ceph/mon/pve1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"])')
    q=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$upid")
    for _ in $(seq 100); do
      pve GET "/nodes/pve1/tasks/$q/status" | grep -q '"exitstatus":"OK"' && break
      sleep 0.1
    done
  )
done

mkdir -p "$W/plugins"
ln -s "$PROVIDER" "$W/plugins/terraform-provider-edge"
cat >"$W/tf.rc" <<EOF
provider_installation {
  dev_overrides { "edgeform/edge" = "$W/plugins" }
  direct {}
}
EOF
export TF_CLI_CONFIG_FILE="$W/tf.rc" TF_IN_AUTOMATION=1
run() { # ROOT STORE ARGS...: terraform in that root, the store's workspace and credentials
  local r=$1 s=$2; shift 2
  (
    # shellcheck source=/dev/null
    . "$W/env/$s"
    cd "$W/$r" && TF_WORKSPACE=$s "$TF" "$@"
  )
}
t0=$SECONDS
for r in edge floor; do
  (cd "$W/$r" && "$TF" init -input=false -no-color >"$W/$r.init.log" 2>&1) || { cat "$W/$r.init.log" >&2; exit 1; }
  for s in "${STORE_IDS[@]}"; do
    (cd "$W/$r" && "$TF" workspace new "$s" >/dev/null 2>&1) || { echo "workspace $s" >&2; exit 1; }
  done
  for s in "${STORE_IDS[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    run "$r" "$s" apply -auto-approve -input=false -no-color >"$W/$r.apply-$s.log" 2>&1 \
      || { tail -20 "$W/$r.apply-$s.log" >&2; exit 1; } &
  done
  wait
done
log "$STATES stores applied in both roots ($((SECONDS - t0)) s, untimed)"

plan_all() { # ROOT -> seconds for planning every store's state, one after the other
  local r=$1 s t0 rc
  t0=$(date +%s.%N)
  for s in "${STORE_IDS[@]}"; do
    rc=0
    run "$r" "$s" plan -input=false -no-color -detailed-exitcode >"$W/$r.plan.log" 2>&1 || rc=$?
    [ $rc = 0 ] || { tail -20 "$W/$r.plan.log" >&2; echo "$r $s: plan exited $rc" >&2; exit 1; }
  done
  echo "$(date +%s.%N) - $t0" | bc
}
declare -a E F
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then F+=("$(plan_all floor)"); E+=("$(plan_all edge)"); else E+=("$(plan_all edge)"); F+=("$(plan_all floor)"); fi
  log "round $r: edge ${E[-1]} s, terraform_data ${F[-1]} s"
done
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
em=$(printf '%s\n' "${E[@]}" | median); fm=$(printf '%s\n' "${F[@]}" | median)
echo
echo "| $STATES states x 10 resources, planned one after the other (median of $ROUNDS, interleaved) | edge | terraform_data | ratio |"
echo "|---|---|---|---|"
printf '| all %s plans | %.2f s | %.2f s | %.2f |\n' "$STATES" "$em" "$fm" "$(echo "$em / $fm" | bc -l)"
printf '| per state | %.3f s | %.3f s | |\n' "$(echo "$em / $STATES" | bc -l)" "$(echo "$fm / $STATES" | bc -l)"
echo
echo "rounds (s): edge ${E[*]} | terraform_data ${F[*]}"

#!/usr/bin/env bash
# bench/converge: wall time of `terraform apply` converging 3 powered-off lab nodes (Redfish BMC
# via sushy-emulator) into one cluster with Ceph mon/mgr/OSD, with the lab's install time, the
# BMC's power delay (`--bmc-power-delay instant`) and injected latency at zero — i.e. provider
# overhead (plus Terraform's own and the lab's 100 ms BMC watch).
#
# Compares the provider as shipped (exponential backoff polling) with the same provider polling
# at a fixed 1 s interval (EDGE_FIXED_POLL_MS=1000, the way bpg's provider waits), interleaved,
# and reports medians, PVE API calls (the lab's /lab/calls) and Redfish calls (the provider's
# own count, from its log).
#
# Usage: ROUNDS=5 bench/converge/run.sh        (BENCH_LOG_DIR=DIR keeps the provider logs, BENCH_TF_LOG=DEBUG makes them verbose; builds nothing: run `cargo build -p
#        terraform-provider-edge -p edge-lab -p edge-images` first; binaries from
#        $CARGO_TARGET_DIR/debug, or EDGE_PROVIDER_BIN / EDGE_LAB_BIN / EDGE_IMAGE_BIN)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=${CARGO_TARGET_DIR:-$ROOT/target}
PROVIDER=${EDGE_PROVIDER_BIN:-$T/debug/terraform-provider-edge}
LAB=${EDGE_LAB_BIN:-$T/debug/edge-lab}
IMG=${EDGE_IMAGE_BIN:-$T/debug/edge-image}
TF=${EDGE_TERRAFORM:-$ROOT/.tools/bin/terraform}
ROUNDS=${ROUNDS:-5}
NET=${NET:-89}
for b in "$PROVIDER" "$LAB" "$IMG" "$TF"; do
  [ -x "$b" ] || { echo "missing $b (build it first)" >&2; exit 1; }
done

W=$(mktemp -d /tmp/bench-converge.XXXXXX)
cleanup() { "$LAB" down --dir "$W/lab" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT

"$LAB" up --dir "$W/lab" --redfish --bmc-power-delay instant --install-ms 0 --net "$NET" >/dev/null
LJ="$W/lab/lab.json"
j() { python3 -c "import json,sys; d=json.load(open('$LJ')); print(eval(sys.argv[1]))" "$1"; }
ADMIN=$(j 'd["admin"]["endpoint"]'); ATOKEN=$(j 'd["admin"]["token"]')
admin() { curl -sS -X "$1" -H "Authorization: Bearer $ATOKEN" -H 'Content-Type: application/json' ${3:+-d "$3"} "$ADMIN$2"; }

# A throwaway key, a small image in the artifact dir, its signed manifest.
"$IMG" keygen bench-1 --out-secret "$W/k.sec" --out-public "$W/k.pub"
ART=$(j 'd["artifacts"]["dir"]'); mkdir -p "$ART"
head -c 65536 /dev/urandom >"$ART/node.img"
"$IMG" manifest --system /nix/store/8bzm6cq9q3wq0j1d8yq0f2vq3wf7b0a1-nixos-system-edge --file "node.img=$ART/node.img" \
  --version bench --no-closure --key "$W/k.sec" --out "$W/manifest.json" >/dev/null

# Provider from the build dir (dev_overrides: no registry, no init).
mkdir -p "$W/plugins" "$W/tf"
ln -s "$PROVIDER" "$W/plugins/terraform-provider-edge"
cat >"$W/tf.rc" <<EOF
provider_installation {
  dev_overrides { "edgeform/edge" = "$W/plugins" }
  direct {}
}
EOF
export TF_CLI_CONFIG_FILE="$W/tf.rc" TF_IN_AUTOMATION=1
# The nodes come from bare metal: they know no token; the provider talks to them as root@pam.
export EDGE_PVE_ROOT_PASSWORD=$(j 'd["stores"][0]["pve"]["root_password"]')
export EDGE_REDFISH_USERNAME=$(j 'd["redfish"]["username"]') EDGE_REDFISH_PASSWORD=$(j 'd["redfish"]["password"]')
export EDGE_TRUSTED_IMAGE_KEYS=$(cat "$W/k.pub")
export TF_VAR_root_password=$(j 'd["stores"][0]["pve"]["root_password"]')

# Three nodes: pve1 first (the members trust the cluster through its CA, known once it is up),
# then the two members in parallel, their joins one at a time.
python3 - "$LJ" "$W/manifest.json" >"$W/tf/main.tf" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); nodes = d["stores"][0]["nodes"]
url = d["artifacts"]["endpoint"] + "/node.img"
print('terraform {\n  required_providers { edge = { source = "edgeform/edge" } }\n}\nprovider "edge" {}\n'
      'variable "root_password" {\n  type      = string\n  sensitive = true\n}')
for i, n in enumerate(nodes):
    if i == 0:
        cl = 'cluster {\n    name   = "edge"\n    create = true\n  }'
    else:
        cl = 'cluster {\n    join   = edge_proxmox_node.pve1.address\n    ca_pem = edge_proxmox_node.pve1.cluster_ca_pem\n  }'
    print('''
resource "edge_proxmox_node" "%(name)s" {
  name          = "%(name)s"
  address       = "%(address)s"
  root_password = var.root_password
  image {
    url      = "%(url)s"
    manifest = "%(manifest)s"
  }
  bmc { endpoint = "%(bmc)s" }
  dns {
    servers = ["10.0.0.53"]
    search  = "store1.example"
  }
  timezone = "Europe/Berlin"
  %(cl)s
  ceph {
    mon         = true
    mgr         = true
    osd_devices = ["/dev/sdb"]
  }
}''' % dict(name=n["name"], address=n["address"], url=url, manifest=sys.argv[2], bmc=n["bmc"]["endpoint"], cl=cl))
PY

BMCS=$(j '" ".join(n["bmc"]["endpoint"] for n in d["stores"][0]["nodes"])')

run_one() { # mode -> "seconds pve_calls redfish_calls"
  local mode=$1
  admin POST /lab/wipe '{"store":"store-001"}' >/dev/null
  rm -f "$W/tf/terraform.tfstate" "$W/tf/terraform.tfstate.backup"
  # Wait until the wipe's power-off shows in the BMC itself (instant mode: on the first read),
  # so no run starts by waiting for a power-off.
  for _ in $(seq 150); do
    local on=0
    for ep in $BMCS; do
      curl -sS -u "$EDGE_REDFISH_USERNAME:$EDGE_REDFISH_PASSWORD" "$ep" | grep -q '"PowerState": *"Off"' || on=1
    done
    [ $on = 0 ] && break
    sleep 0.2
  done
  admin DELETE /lab/calls >/dev/null
  local log="$W/provider-$mode.log"; rm -f "$log"
  local fixed=""; [ "$mode" = baseline ] && fixed=1000
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$W/tf" && EDGE_FIXED_POLL_MS=$fixed TF_LOG_PROVIDER=${BENCH_TF_LOG:-INFO} TF_LOG_PATH="$log" \
     "$TF" apply -auto-approve -input=false -no-color >"$W/apply-$mode.out" 2>&1) \
     || { cat "$W/apply-$mode.out" >&2; exit 1; }
  t1=$(date +%s.%N)
  [ -n "${BENCH_LOG_DIR:-}" ] && cp "$log" "$BENCH_LOG_DIR/provider-$mode-$(date +%s%N).log"
  local pve redfish
  pve=$(admin GET /lab/calls | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
  redfish=$(grep -o 'redfish_calls=[0-9]*' "$log" | cut -d= -f2 | paste -sd+ | bc)
  # The BMC's share (the slowest node's wait from the power-on call until the BMC reported On):
  # near zero in instant mode, reported so a regression there is visible.
  local bmc_ms
  bmc_ms=$(grep -o 'power_wait_ms=[0-9]*' "$log" | cut -d= -f2 | sort -n | tail -1)
  local wall; wall=$(echo "$t1 - $t0" | bc)
  echo "$wall $pve $redfish ${bmc_ms:-0}"
}

declare -a E B
for r in $(seq "$ROUNDS"); do
  E+=("$(run_one edge)"); B+=("$(run_one baseline)")
  echo "round $r (s, PVE calls, Redfish calls, slowest power-on wait ms): edge ${E[-1]} | fixed 1 s ${B[-1]}" >&2
done
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
col() { for x in "$@"; do echo "$x"; done | awk -v c="$COL" '{print $c}' | median; }
COL=1 ; et=$(col "${E[@]}"); bt=$(col "${B[@]}")
COL=2 ; ep=$(col "${E[@]}"); bp=$(col "${B[@]}")
COL=3 ; er=$(col "${E[@]}"); br=$(col "${B[@]}")
COL=4 ; eo=$(col "${E[@]}"); bo=$(col "${B[@]}")
echo
echo "| metric (median of $ROUNDS, interleaved) | edge (backoff) | fixed 1 s poll | ratio |"
echo "|---|---|---|---|"
printf '| wall time, 3-node converge | %.2f s | %.2f s | %.2f |\n' "$et" "$bt" "$(echo "$bt / $et" | bc -l)"
printf '| PVE API calls | %s | %s | |\n' "$ep" "$bp"
printf '| Redfish calls | %s | %s | |\n' "$er" "$br"
printf '| slowest BMC power-on wait | %s ms | %s ms | |\n' "$eo" "$bo"

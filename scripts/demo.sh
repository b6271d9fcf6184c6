#!/usr/bin/env bash
# make demo: converge store-001 from powered-off bare metal in the edge lab, on this machine.
#   1. build the provider, the lab and edge-image      4. terraform init + apply (timed per phase)
#   2. start the lab: real Ceph + Redfish BMC emulator 5. prove a second plan is empty
#   3. throwaway signing key + a signed test image     6. say how to look around and stop
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
lab_dir="$root/.lab/demo"
work="$lab_dir/terraform"
tf="$root/.tools/bin/terraform"
t_start=$(date +%s)
phase() { printf '\n==> [%3ss] %s\n' "$(( $(date +%s) - t_start ))" "$*"; }

phase "build (provider, lab, edge-image)"
cargo build -q -p terraform-provider-edge -p edge-lab -p edge-images --bins
bin="$root/target/debug"
[ -n "${CARGO_TARGET_DIR:-}" ] && bin="$CARGO_TARGET_DIR/debug"

phase "edge lab: 1 store × 3 nodes, powered off, real Ceph + Redfish BMC emulator"
"$bin/edge-lab" down --dir "$lab_dir" >/dev/null 2>&1 || true
rm -rf "$lab_dir"
mkdir -p "$lab_dir"
"$bin/edge-lab" up --dir "$lab_dir" --net 20 --ceph --redfish --install-ms 1500
lab_json="$lab_dir/lab.json"
j() { python3 -c "import json,sys; d=json.load(open('$lab_json')); print($1)"; }

phase "throwaway signing key and a signed test image"
keys="$lab_dir/keys"
mkdir -p "$keys"
"$bin/edge-image" keygen edge-demo-1 --out-secret "$keys/edge-demo-1.sec" --out-public "$keys/edge-demo-1.pub" >/dev/null
artifacts=$(j "d['artifacts']['dir']")
mkdir -p "$artifacts"
head -c 4194304 /dev/urandom > "$artifacts/edge-node-demo.img"
"$bin/edge-image" manifest --system /nix/store/8bzm6cq9q3wq0j1d8yq0f2vq3wf7b0a1-nixos-system-edge-26.05 \
  --file "edge-node-demo.img=$artifacts/edge-node-demo.img" --version 2026.11-demo --no-closure \
  --key "$keys/edge-demo-1.sec" --out "$artifacts/edge-node-demo.manifest.json" >/dev/null
echo "signed by $(cat "$keys/edge-demo-1.pub")"

phase "terraform init"
mkdir -p "$work" "$lab_dir/mirror/registry.terraform.io/edgeform/edge/0.1.0/linux_amd64"
install -m 0755 "$bin/terraform-provider-edge" \
  "$lab_dir/mirror/registry.terraform.io/edgeform/edge/0.1.0/linux_amd64/terraform-provider-edge_v0.1.0"
cat > "$lab_dir/cli.tfrc" <<CFG
provider_installation {
  filesystem_mirror {
    path    = "$lab_dir/mirror"
    include = ["registry.terraform.io/edgeform/*"]
  }
  direct { exclude = ["registry.terraform.io/edgeform/*"] }
}
CFG
cp examples/store-001/main.tf "$work/main.tf"
sed -i "s|../../modules/store|$root/modules/store|" "$work/main.tf"
python3 - "$lab_json" "$work/terraform.tfvars.json" "$artifacts" <<'PY'
import json, sys
lab, out, art = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
s = lab["stores"][0]
json.dump({
    "nodes": {n["name"]: {"address": n["address"], "bmc_endpoint": n["bmc"]["endpoint"]} for n in s["nodes"]},
    "image": {"url": lab["artifacts"]["endpoint"] + "/edge-node-demo.img",
              "manifest": art + "/edge-node-demo.manifest.json"},
    "root_password": s["pve"]["root_password"],
    "datastore": s["pbs"]["datastore"],
}, open(out, "w"), indent=2)
PY
cat > "$lab_dir/env.sh" <<ENV
export TF_CLI_CONFIG_FILE="$lab_dir/cli.tfrc" CHECKPOINT_DISABLE=1
# PVE: the nodes come from bare metal and know no token; the example logs in as root@pam with
# its root_password and trusts the nodes through the seeds and the cluster's CA.
export EDGE_PBS_ENDPOINT="$(j "d['stores'][0]['pbs']['endpoint']")"
export EDGE_PBS_API_TOKEN="$(j "d['stores'][0]['pbs']['api_token']")"
export EDGE_PBS_TLS_FINGERPRINT="$(j "d['stores'][0]['pbs']['tls_fingerprint']")"
export EDGE_REDFISH_USERNAME="$(j "d['redfish']['username']")"
export EDGE_REDFISH_PASSWORD="$(j "d['redfish']['password']")"
export EDGE_TRUSTED_IMAGE_KEYS="$(cat "$keys/edge-demo-1.pub")"
ENV
# shellcheck source=/dev/null
. "$lab_dir/env.sh"
cd "$work"
"$tf" init -no-color -input=false >/dev/null

phase "terraform apply: verify image → BMC boot → install → configure → cluster → Ceph → pools → jobs"
apply_log="$lab_dir/apply.log"
t_apply=$(date +%s)
"$tf" apply -auto-approve -no-color -input=false | tee "$apply_log" | grep -E "Creation complete|Apply complete|Error" || true
grep -q "Apply complete" "$apply_log" || { echo "apply failed: see $apply_log"; exit 1; }
apply_s=$(( $(date +%s) - t_apply ))

phase "second plan must be empty"
set +e
"$tf" plan -detailed-exitcode -no-color -input=false > "$lab_dir/plan.log"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then echo "plan is not empty (exit $rc): see $lab_dir/plan.log"; exit 1; fi
echo "no changes: the store matches its configuration"

phase "summary"
python3 - "$apply_log" <<'PY'
import re, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.search(r"^(\S+): Creation complete after (\S+)", line.strip())
    if m:
        addr, took = m.groups()
        kind = addr.split(".")[-2] if "[" not in addr.split(".")[-1] else addr.split(".")[-2]
        rows.setdefault(kind, []).append((addr, took))
for kind, items in rows.items():
    print(f"  {kind:<20} {len(items)} converged: " + ", ".join(f"{a.split('.',2)[-1]} ({t})" for a, t in items))
PY
echo "  total apply: ${apply_s}s; total demo: $(( $(date +%s) - t_start ))s"
"$tf" output -no-color

cat <<MSG

Look around:
  cd $work && . $lab_dir/env.sh
  $tf show                      # the converged store
  $tf plan                      # empty; change something in the lab, plan again
  ceph -c $(j "d['ceph']['conf']") osd pool ls detail     # the real Ceph pool
  curl -s -H "Authorization: Bearer $(j "d['admin']['token']")" $(j "d['admin']['endpoint']")/lab/snapshot | python3 -m json.tool | less
Stop the lab:
  $bin/edge-lab down --dir $lab_dir
MSG

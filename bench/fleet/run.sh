#!/usr/bin/env bash
# bench/fleet: `terraform plan` (with refresh, the default) of STORES stores × 10 resources in ONE
# root configuration against edge labs, against the floor of the same number of `terraform_data`
# resources in the same module shape, in the same run, interleaved; medians, ratio, the lab's API
# calls, the RSS of the provider processes (sampled in an extra, untimed plan) and where the CPU
# time goes (Terraform + providers vs the labs, one more plan each).
#
# Layout (one root, the headline "a plan of ≥ 5,000 resources"): the provider config has ONE pve
# and ONE pbs endpoint, so every store gets its own aliased `provider "edge"` block pointing at its
# lab store and its own call of examples/fleet/modules/store-services (5 Ceph pools, 2 verify,
# 2 prune, 1 gc = 10 resources, every one read from the lab on refresh). Terraform starts one
# provider process per provider block. Labs hold at most PER_LAB stores each, on nets NET0, NET0+1, …
# The floor: bench/fleet/floor (same for_each maps and values, 10 terraform_data per module call).
# Terraform's default -parallelism=10 is kept for the timed plans. State: local files, written by
# an untimed apply of each root first.
#
# Usage: STORES=500 ROUNDS=3 bench/fleet/run.sh     (builds nothing: run `cargo build -p
#        terraform-provider-edge -p edge-lab` first; binaries from $CARGO_TARGET_DIR/debug or
#        EDGE_PROVIDER_BIN / EDGE_LAB_BIN; EDGE_TERRAFORM, default .tools/bin/terraform)
# Other knobs: PER_LAB (199), NET0 (151: labs on 127.151-159.S.N), SETUP_PARALLELISM (20, the
# untimed applies only), RSS_INTERVAL (0.1 s), KEEP=1 keeps the work dir.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=${CARGO_TARGET_DIR:-$ROOT/target}
PROVIDER=${EDGE_PROVIDER_BIN:-$T/debug/terraform-provider-edge}
LAB=${EDGE_LAB_BIN:-$T/debug/edge-lab}
TF=${EDGE_TERRAFORM:-$ROOT/.tools/bin/terraform}
STORES=${STORES:-500}
PER_LAB=${PER_LAB:-199}
NET0=${NET0:-151}
ROUNDS=${ROUNDS:-3}
SETUP_PARALLELISM=${SETUP_PARALLELISM:-20}
RSS_INTERVAL=${RSS_INTERVAL:-0.1}
for b in "$PROVIDER" "$LAB" "$TF"; do
  [ -x "$b" ] || { echo "missing $b (build it first)" >&2; exit 1; }
done
[ "$PER_LAB" -le 199 ] || { echo "PER_LAB: the lab takes at most 199 stores" >&2; exit 1; }
NLABS=$(((STORES + PER_LAB - 1) / PER_LAB))
[ $((NET0 + NLABS - 1)) -le 159 ] || { echo "$NLABS labs from net $NET0 leave 151..159" >&2; exit 1; }

# One provider process per store, each with a gRPC socket and pipes to Terraform.
ulimit -n "$(ulimit -Hn)"

log() { printf '[bench-fleet %s] %s\n' "$(date +%T)" "$*" >&2; }
W=$(mktemp -d /tmp/bench-fleet.XXXXXX)
cleanup() {
  local i
  for i in $(seq 0 $((NLABS - 1))); do
    [ -d "$W/lab$i" ] && { "$LAB" down --dir "$W/lab$i" >/dev/null 2>&1 || true; }
  done
  if [ "${KEEP:-}" = 1 ]; then log "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM # run the EXIT trap on Ctrl-C / kill too

# 1. Labs: PER_LAB stores each (3 standalone nodes + PBS per store), no Ceph/BMC peers.
t0=$SECONDS
left=$STORES
for i in $(seq 0 $((NLABS - 1))); do
  n=$((left < PER_LAB ? left : PER_LAB)); left=$((left - n))
  "$LAB" up --dir "$W/lab$i" --stores "$n" --net $((NET0 + i)) >"$W/lab$i.up.log" 2>&1 \
    || { cat "$W/lab$i.up.log" >&2; exit 1; }
done
log "$NLABS labs up, $STORES stores ($((SECONDS - t0)) s)"

# 2. The two roots, generated. Store k (global, 1-based) is store j of lab i.
mkdir -p "$W/edge" "$W/floor" "$W/modules"
cp -r "$ROOT/examples/fleet/modules/store-services" "$W/modules/"
cp -r "$ROOT/bench/fleet/floor" "$W/modules/floor"
python3 - "$W" "$NLABS" <<'PY'
import json, sys
w, nlabs = sys.argv[1], int(sys.argv[2])
head = 'terraform {\n  required_providers {\n    edge = { source = "edgeform/edge" }\n  }\n}\n'
edge, floor, init = [head], [], []
k = 0
for i in range(nlabs):
    lab = json.load(open(f"{w}/lab{i}/lab.json"))
    for s in lab["stores"]:
        k += 1
        a, sid, ds = f"s{k:04d}", f"store-{k:04d}", s["pbs"]["datastore"]
        ep = lambda p: ", ".join(f'{f} = "{s[p][f]}"' for f in ("endpoint", "api_token", "tls_fingerprint"))
        edge.append(f'provider "edge" {{\n  alias = "{a}"\n  pve   = {{ {ep("pve")} }}\n  pbs   = {{ {ep("pbs")} }}\n}}\n'
                    f'module "{a}" {{\n  source    = "../modules/store-services"\n  providers = {{ edge = edge.{a} }}\n'
                    f'  store_id  = "{sid}"\n  datastore = "{ds}"\n}}\n')
        floor.append(f'module "{a}" {{\n  source    = "../modules/floor"\n  store_id  = "{sid}"\n  datastore = "{ds}"\n}}\n')
        init.append(f'{i}\t{s["pve"]["endpoint"]}\t{s["pve"]["api_token"]}\n')
open(f"{w}/edge/main.tf", "w").write("\n".join(edge))
open(f"{w}/floor/main.tf", "w").write("\n".join(floor))
open(f"{w}/stores.tsv", "w").write("".join(init))
PY

# 3. Ceph init on every store's pve1 (pools need it; edge_proxmox_node does it on real nodes).
t0=$SECONDS
# shellcheck disable=SC2016 # expanded by the inner shell
xargs -P 4 -L 1 sh -c 'curl -sS --fail-with-body --cacert "$0/lab$1/ca.pem" -X POST \
    -H "Authorization: PVEAPIToken=$3" -H "Content-Type: application/json" -d "{}" \
    "$2/api2/json/nodes/pve1/ceph/init" >/dev/null' "$W" <"$W/stores.tsv"
log "ceph init on $STORES stores ($((SECONDS - t0)) s)"

# 4. Terraform with the provider from the build dir (dev_overrides); init both roots, then the
#    untimed applies that write the state (and create 10 objects per store in the labs).
mkdir -p "$W/plugins"
ln -s "$PROVIDER" "$W/plugins/terraform-provider-edge"
cat >"$W/tf.rc" <<EOF
provider_installation {
  dev_overrides { "edgeform/edge" = "$W/plugins" }
  direct {}
}
EOF
export TF_CLI_CONFIG_FILE="$W/tf.rc" TF_IN_AUTOMATION=1
tfin() { local d=$1; shift; (cd "$W/$d" && "$TF" "$@"); }
for r in floor edge; do
  tfin "$r" init -input=false -no-color >"$W/$r.init.log" 2>&1 || { cat "$W/$r.init.log" >&2; exit 1; }
  t0=$(date +%s.%N)
  tfin "$r" apply -auto-approve -input=false -no-color -parallelism="$SETUP_PARALLELISM" \
    >"$W/$r.apply.log" 2>&1 || { tail -40 "$W/$r.apply.log" >&2; exit 1; }
  log "$r: $(grep -Eo 'Apply complete! Resources: [0-9]+ added' "$W/$r.apply.log") ($(printf '%.0f' "$(echo "$(date +%s.%N) - $t0" | bc)") s, -parallelism=$SETUP_PARALLELISM, untimed)"
done
NRES=$(tfin edge state list | wc -l)
NFLOOR=$(tfin floor state list | wc -l)
[ "$NRES" = "$NFLOOR" ] || { echo "edge has $NRES resources, floor $NFLOOR" >&2; exit 1; }

admin_all() { # METHOD PATH: the admin call on every lab; prints the sum of "total" for GETs
  local i ep tok sum=0
  for i in $(seq 0 $((NLABS - 1))); do
    ep=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"]["endpoint"])' "$W/lab$i/lab.json")
    tok=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"]["token"])' "$W/lab$i/lab.json")
    if [ "$1" = GET ]; then
      sum=$((sum + $(curl -sS -H "Authorization: Bearer $tok" "$ep$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')))
    else
      curl -sS -X "$1" -H "Authorization: Bearer $tok" "$ep$2" >/dev/null
    fi
  done
  [ "$1" = GET ] && echo "$sum"
  return 0
}

plan_once() { # ROOT TAG -> seconds; the plan must be empty (exit 0), else the bench is void
  local r=$1 tag=$2 t0 t1 rc=0
  t0=$(date +%s.%N)
  tfin "$r" plan -input=false -no-color -detailed-exitcode >"$W/$r.plan-$tag.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  [ $rc = 0 ] || { tail -40 "$W/$r.plan-$tag.log" >&2; echo "$r plan exited $rc (not empty?)" >&2; exit 1; }
  echo "$t1 - $t0" | bc
}

# 5. Timed plans, interleaved (the order flips every round), medians.
log "timing: $NRES resources per plan, $STORES provider blocks, $ROUNDS rounds"
declare -a E F C
for r in $(seq "$ROUNDS"); do
  admin_all DELETE /lab/calls
  if [ $((r % 2)) = 1 ]; then
    F+=("$(plan_once floor "$r")"); E+=("$(plan_once edge "$r")")
  else
    E+=("$(plan_once edge "$r")"); F+=("$(plan_once floor "$r")")
  fi
  C+=("$(admin_all GET /lab/calls)")
  log "round $r: edge ${E[-1]} s (${C[-1]} lab API calls), terraform_data ${F[-1]} s"
done

# 6. One more edge plan, untimed, with the RSS sampler: every provider process (found by its
#    executable) and Terraform itself, every RSS_INTERVAL s. Per process the kernel's VmHWM (its
#    own peak) is kept; the sum is over the processes alive at one sample.
python3 - "$PROVIDER" "$RSS_INTERVAL" "$W/rss.json" "$W/rss.stop" "$TF" <<'PY' &
import json, os, sys, time
prov, interval, out, stop, tf = os.path.realpath(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
hwm, tf_hwm, peak_sum, peak_n, samples, peak_anon = {}, 0, 0, 0, 0, 0
def kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0
while not os.path.exists(stop):
    total, n, anon = 0, 0, 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            if exe == prov:
                rss = kib(pid, "VmRSS:"); total += rss; n += 1; anon += kib(pid, "RssAnon:")
                hwm[pid] = max(hwm.get(pid, 0), kib(pid, "VmHWM:"))
            elif os.path.realpath(tf) in open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\0")[:2]:
                tf_hwm = max(tf_hwm, kib(pid, "VmHWM:"))
        except (OSError, IndexError):
            continue
    peak_sum, peak_n, samples = max(peak_sum, total), max(peak_n, n), samples + 1
    peak_anon = max(peak_anon, anon)
    time.sleep(interval)
json.dump({"processes": len(hwm), "max_single_kib": max(hwm.values(), default=0),
           "peak_sum_kib": peak_sum, "peak_alive": peak_n, "samples": samples, "terraform_kib": tf_hwm, "peak_anon_kib": peak_anon}, open(out, "w"))
PY
SAMPLER=$!
lab_cpu() { # CPU seconds (user+sys) used so far by all labs
  local i pid sum=0
  for i in $(seq 0 $((NLABS - 1))); do
    pid=$(cat "$W/lab$i/edge-lab.pid")
    sum=$((sum + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "scale=2; $sum / $(getconf CLK_TCK)" | bc
}
l0=$(lab_cpu)
t0=$(date +%s.%N)
/usr/bin/time -f '%U %S' -o "$W/edge.cpu" env -C "$W/edge" "$TF" plan -input=false -no-color -detailed-exitcode \
  >"$W/edge.plan-rss.log" 2>&1 || { tail -20 "$W/edge.plan-rss.log" >&2; exit 1; }
RSS_WALL=$(echo "$(date +%s.%N) - $t0" | bc)
l1=$(lab_cpu)
touch "$W/rss.stop"; wait "$SAMPLER"
/usr/bin/time -f '%U %S' -o "$W/floor.cpu" env -C "$W/floor" "$TF" plan -input=false -no-color -detailed-exitcode \
  >"$W/floor.plan-cpu.log" 2>&1 || { tail -20 "$W/floor.plan-cpu.log" >&2; exit 1; }
cpu() { awk '{printf "%.1f", $1 + $2}' "$1"; }
ECPU=$(cpu "$W/edge.cpu"); FCPU=$(cpu "$W/floor.cpu"); LCPU=$(echo "$l1 - $l0" | bc)

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
em=$(printf '%s\n' "${E[@]}" | median); fm=$(printf '%s\n' "${F[@]}" | median)
cm=$(printf '%s\n' "${C[@]}" | median)
read -r procs single psum alive samples tfrss panon < <(python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
print(d["processes"], d["max_single_kib"], d["peak_sum_kib"], d["peak_alive"], d["samples"], d["terraform_kib"], d["peak_anon_kib"])' "$W/rss.json")
mib() { echo "scale=1; $1 / 1024" | bc; }

echo
echo "$STORES stores x 10 = $NRES resources, $NLABS labs, $(nproc) cores, $(uptime | sed 's/.*load average/load average/')"
echo
echo "| metric (median of $ROUNDS, interleaved) | edge ($STORES provider blocks) | terraform_data | ratio |"
echo "|---|---|---|---|"
printf '| terraform plan, %s resources (refresh on) | %.2f s | %.2f s | %.2f |\n' "$NRES" "$em" "$fm" "$(echo "$em / $fm" | bc -l)"
printf '| per resource | %.2f ms | %.2f ms | |\n' "$(echo "$em * 1000 / $NRES" | bc -l)" "$(echo "$fm * 1000 / $NRES" | bc -l)"
printf '| lab API calls per plan | %s | 0 | |\n' "$cm"
echo
echo "Provider RSS during one more edge plan (untimed, ${RSS_WALL%???????} s, sampled every $RSS_INTERVAL s, $samples samples):"
echo
echo "| provider processes seen | most alive at once | peak sum of provider RSS | of it private (RssAnon) | max single provider (VmHWM) | Terraform itself (VmHWM) |"
echo "|---|---|---|---|---|---|"
printf '| %s | %s | %s MiB | %s MiB | %s MiB | %s MiB |\n' "$procs" "$alive" "$(mib "$psum")" "$(mib "$panon")" "$(mib "$single")" "$(mib "$tfrss")"
echo
echo "(RSS counts the pages of the provider binary every process maps from the page cache; RssAnon is"
echo "each process's own memory. The sums are over the processes alive at the same sample.)"
echo
echo "CPU time (user+sys) of one more plan each: edge: Terraform + providers ${ECPU} s, labs ${LCPU} s; terraform_data: ${FCPU} s"
echo
echo "rounds (s): edge ${E[*]} | terraform_data ${F[*]} | lab calls ${C[*]}"

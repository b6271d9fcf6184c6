#!/usr/bin/env bash
# examples/fleet-rollout/rollout.sh — patch waves on a fleet of lab stores: a hub on PostgreSQL,
# a real agent process per store applying signed releases with real Terraform, waves gated on
# the stores' signed reports, a bad release halted and reverted on its canary by itself, seen by
# a real Prometheus scraping the hubs and agents (its alert fires) and on the hub's status page in
# a real browser.
#
#   rollout.sh check    the whole story in a temp dir, self-checking, cleans up (exit != 0 = fail)
#
# Environment: STORES (8), NET (151: lab addresses 127.NET.S.N), binaries from
# $CARGO_TARGET_DIR/debug or EDGE_PROVIDER_BIN / EDGE_LAB_BIN / EDGE_FLEET_BIN / EDGE_IMAGE_BIN, EDGE_TERRAFORM
# (.tools/bin/terraform), KEEP=1 keeps the temp dir (logs, state, the status page's screenshot)
# when it ends. Needs Debian's prometheus and chromium (scripts/install-deps.sh); without them the
# check fails.
# Builds nothing: `cargo build -p terraform-provider-edge -p edge-lab -p edge-fleet -p edge-images` first.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
T=${CARGO_TARGET_DIR:-$ROOT/target}
export EDGE_PROVIDER_BIN=${EDGE_PROVIDER_BIN:-$T/debug/terraform-provider-edge}
export EDGE_LAB_BIN=${EDGE_LAB_BIN:-$T/debug/edge-lab}
export EDGE_TERRAFORM=${EDGE_TERRAFORM:-$ROOT/.tools/bin/terraform}
FLEET=${EDGE_FLEET_BIN:-$T/debug/edge-fleet}
IMAGE=${EDGE_IMAGE_BIN:-$T/debug/edge-image}
TF=$EDGE_TERRAFORM
STORES=${STORES:-8}
NET=${NET:-151}
VERSION=0.1.0
PROMETHEUS=/usr/bin/prometheus
PEERS=$HERE/peers.py

say() { printf '[rollout %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
  say "FAIL: $*"
  [ -n "${D:-}" ] && [ -d "$D/log" ] && for f in "$D"/log/hub-*.log "$D"/log/agent-*.log "$D"/log/prometheus.log; do
    [ -f "$f" ] && { echo "--- $f (end)" >&2; tail -15 "$f" >&2; }
  done
  exit 1
}
# Poll CMD (with backoff) until it succeeds or SECS pass.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs)) delay=0.1
  until "$@"; do
    [ $SECONDS -lt $end ] || return 1
    sleep "$delay"
    delay=$(awk -v d="$delay" 'BEGIN { d *= 1.5; print (d > 1) ? 1 : d }')
  done
  [ -n "$what" ] && say "$what"
  return 0
}
pg_bin() { find /usr/lib/postgresql -maxdepth 3 -path "*/bin/$1" | sort -V | tail -1; }
psql_as() { # ROLE SQL
  "$(pg_bin psql)" -X -q -t -A -h 127.0.0.1 -p "$PG_PORT" -U "$1" -d fleet -c "$2"
}
q() { psql_as fleet "$1"; }
stores() { cat "$D/fleet/stores.txt"; }
keygen() { nix --extra-experimental-features nix-command key generate-secret --key-name "$1" >"$2"; }
pub() { nix --extra-experimental-features nix-command key convert-secret-to-public <"$1"; }

# A release: the store root, the module, a lock file for the provider of the local mirror, and
# the version's tfvars; bundled and content-addressed by edge-fleet.
build_release() { # NAME TFVARS -> prints the release id
  local name=$1 src="$D/src/$1"
  mkdir -p "$src/modules"
  cp "$HERE/store/main.tf" "$src/"
  cp -r "$ROOT/examples/fleet/modules/store-services" "$src/modules/"
  cp "$2" "$src/release.auto.tfvars"
  # The lock file pins the provider's hash as the mirror holds it: every store installs exactly
  # this build.
  (cd "$src" && TF_CLI_CONFIG_FILE="$D/tf.rc" "$TF" init -backend=false -input=false -no-color >"$D/log/init-$name.log" 2>&1) \
    || { cat "$D/log/init-$name.log" >&2; die "terraform init for release $name"; }
  rm -rf "$src/.terraform"
  "$FLEET" release build --name "$name" --config "$src" --provider "$EDGE_PROVIDER_BIN" \
    --image-manifest "$D/image-manifest.json" --out "$D/hub/bundles"
}

start_hub() { # N PORT: instance N of the hub, on PORT
  "$FLEET" hub serve --database "$DB" --listen "127.0.0.1:$2" --bundles "$D/hub/bundles" --images "$D/hub/images" \
    --key "$D/keys/hub-1.sec" --key "$D/keys/hub-2.sec" --step-every-s 1 --manifest-lifetime-s 86400 \
    >>"$D/log/hub-$1.log" 2>&1 &
  echo $! >"$D/hub-$1.pid"
  wait_for 30 "" curl -sf -o /dev/null "http://127.0.0.1:$2/v1/status" || die "hub instance $1 did not come up"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The environment a store's agent runs in: the store's PVE/PBS credentials, its Terraform
# settings, its own PostgreSQL role and state schema.
store_env() { # STORE
  local s=$1
  set -a
  # shellcheck source=/dev/null
  . "$D/fleet/stores/$s.env"
  set +a
  export TF_VAR_store_id=$s TF_CLI_CONFIG_FILE="$D/tf.rc" TF_IN_AUTOMATION=1
  export PG_CONN_STR="postgres://edge_store_${s//-/_}@127.0.0.1:$PG_PORT/fleet?sslmode=disable"
  export PG_SCHEMA_NAME="tfstate_${s//-/_}" PG_SKIP_SCHEMA_CREATION=true PG_SKIP_TABLE_CREATION=true PG_SKIP_INDEX_CREATION=true
}

start_agent() { # STORE
  local s=$1
  (
    store_env "$s"
    # Odd stores talk to hub instance 1, even ones to instance 2: two hubs, one database.
    local n=${s##*-}
    exec "$FLEET" agent run --hub "${HUBS[$((10#$n % 2))]}" --store "$s" --trusted "$(pub "$D/keys/hub-1.sec")" \
      --trusted "$(pub "$D/keys/hub-2.sec")" --threshold 2 --state-dir "$D/agents/$s" \
      --terraform "$TF" --key "$D/keys/$s.sec" --interval-s 2 --health "$D/health/$s.json" \
      --trusted-image-key "$(cat "$D/keys/image.pub")" --serve-images "127.0.0.1:${LAN_PORT[$s]}" \
      --metrics-listen "127.0.0.1:${METRICS_PORT[$s]}"
  ) >>"$D/log/agent-$s.log" 2>&1 &
  echo $! >"$D/agents/$s.pid"
}
stop_agent() { # STORE
  local p; p=$(cat "$D/agents/$1.pid")
  kill "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

# The current rollout's phases, e.g. "canary=passed wave=open rest=waiting".
phases() {
  q "select state from edge_hub.rollouts where current" | python3 -c '
import json, sys
st = json.loads(sys.stdin.read().strip() or "null") or {"phases": []}
names = sys.argv[1].split()
print(" ".join(f"{n}={(p if isinstance(p, str) else next(iter(p))).lower()}" for n, p in zip(names, st["phases"])))' "$1"
}
phases_are() { [ "$(phases "$1")" = "$2" ]; }

spec() { printf '%s\n' "$2" >"$D/specs/$1.json"; } # NAME SPEC-JSON
start() { "$FLEET" hub start --database "$DB" --spec "$D/specs/$1.json" >/dev/null; } # NAME
rollout() { spec "$@"; start "$1"; }

# Prometheus scraping both hub instances and every store's agent each second, with the fleet's
# rules, in $D/prometheus; its URL in PROM.
start_prometheus() { # HUB-PORT...
  local dir=$D/prometheus port hubs="" agents="" p s n
  mkdir -p "$dir"
  # The rules are deploy/prometheus's own with every `for:` cut to 2 s: the real ones (2 min for
  # EdgeRolloutHalted) keep a blip from paging; here the condition holds from the halt to the end
  # and the check should not wait minutes for it. Expressions, labels and annotations are
  # untouched (deploy/prometheus/tests checks the real durations with promtool).
  sed -E 's/^([[:space:]]*)for:[[:space:]].*$/\1for: 2s/' "$ROOT/deploy/prometheus/edge-fleet-rules.yml" >"$dir/rules.yml"
  n=$(grep -c '^[[:space:]]*for:' "$ROOT/deploy/prometheus/edge-fleet-rules.yml")
  if [ "$n" = 0 ] || [ "$(grep -c '^[[:space:]]*for: 2s$' "$dir/rules.yml")" != "$n" ]; then
    die "rewriting the rules' for: durations"
  fi
  for p in "$@"; do hubs+="${hubs:+, }\"127.0.0.1:$p\""; done
  for s in $(stores); do agents+="${agents:+, }\"127.0.0.1:${METRICS_PORT[$s]}\""; done
  cat >"$dir/prometheus.yml" <<YML
global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
rule_files: ["$dir/rules.yml"]
scrape_configs:
  - {job_name: edge-hub, static_configs: [{targets: [$hubs]}]}
  - {job_name: edge-agent, static_configs: [{targets: [$agents]}]}
YML
  port=$(free_port)
  PROM="http://127.0.0.1:$port"
  "$PROMETHEUS" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$port" >>"$D/log/prometheus.log" 2>&1 &
  echo $! >"$D/prometheus.pid"
}
peers() { python3 "$PEERS" "$@"; }
# Poll a peers.py check (with wait_for) until it holds or SECS pass; say what it printed, or
# die with WHY and the check's last reason.
check_peer() { # SECS WHY CHECK ARGS...
  local secs=$1 why=$2
  shift 2
  wait_for "$secs" "" quietly "$@" || { cat "$D/log/peers.err" >&2; die "$why"; }
  [ -s "$D/log/peers.out" ] && say "$(cat "$D/log/peers.out")"
  return 0
}
quietly() { peers "$@" >"$D/log/peers.out" 2>"$D/log/peers.err"; }
# Headless chromium with its profile and HOME in $D/chromium (it writes to both); chromium's
# stdout. Bounded by timeout; whatever of it outlives the run is killed by pid.
browse() { # URL FLAG...
  local url=$1 rc=0
  shift
  mkdir -p "$D/chromium"
  HOME="$D/chromium" XDG_CONFIG_HOME="$D/chromium/.config" XDG_CACHE_HOME="$D/chromium/.cache" \
    timeout --kill-after=5 90 chromium --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$D/chromium/profile" "$@" "$url" 2>>"$D/log/chromium.log" || rc=$?
  kill_browser
  return $rc
}
kill_browser() {
  local p
  for p in $(peers pids-mentioning "$D/chromium/profile"); do kill -KILL "$p" 2>/dev/null || true; done
}

release_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["release"])' "$D/agents/$1/applied.json"; }

cleanup() {
  local p
  for p in "$D"/agents/*.pid "$D"/hub-*.pid "$D"/prometheus.pid; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
  done
  [ -d "$D/chromium" ] && kill_browser
  wait 2>/dev/null || true
  FLEET_DIR="$D/fleet" "$ROOT/examples/fleet/fleet.sh" down >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" = 1 ]; then say "kept $D"; else rm -rf "$D"; fi
}

cmd_check() {
  for b in "$EDGE_PROVIDER_BIN" "$EDGE_LAB_BIN" "$FLEET" "$IMAGE" "$TF"; do [ -x "$b" ] || die "missing $b (build it first)"; done
  # The alert and the status page are checked on the real thing or the check fails: no skipping.
  [ -x "$PROMETHEUS" ] || die "missing $PROMETHEUS (scripts/install-deps.sh installs Debian's prometheus)"
  command -v chromium >/dev/null || die "missing chromium (scripts/install-deps.sh installs Debian's chromium)"
  D=$(mktemp -d /tmp/edge-rollout.XXXXXX)
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  local t0=$SECONDS
  mkdir -p "$D"/{log,keys,hub/bundles,agents,specs,src,mirror}
  chmod 755 "$D"

  # 1. PostgreSQL and a lab of $STORES stores (examples/fleet does both).
  FLEET_TF=0 FLEET_DIR="$D/fleet" STORES=$STORES NET=$NET "$ROOT/examples/fleet/fleet.sh" up 2>"$D/log/fleet-up.log" \
    || { cat "$D/log/fleet-up.log" >&2; die "fleet up"; }
  # shellcheck source=/dev/null
  . "$D/fleet/fleet.env"
  DB="postgres://fleet@127.0.0.1:$PG_PORT/fleet?sslmode=disable"
  say "PostgreSQL on :$PG_PORT and a lab of $STORES stores"

  # 2. The provider in a local mirror (what a store's image carries), keys, the hub.
  local m="$D/mirror/registry.terraform.io/edgeform/edge/$VERSION/linux_amd64"
  mkdir -p "$m" && cp "$EDGE_PROVIDER_BIN" "$m/terraform-provider-edge_v$VERSION"
  cat >"$D/tf.rc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$D/mirror"
    include = ["registry.terraform.io/edgeform/*"]
  }
  direct { exclude = ["registry.terraform.io/edgeform/*"] }
}
EOF
  # The node image every release names: 8 MiB standing in for the 1–2 GB a real one weighs,
  # signed by CI's image key, on the hub at images/<manifest-sha256>/. Each agent fetches it
  # once over the "WAN" and serves it to its store's BMCs from its LAN cache.
  mkdir -p "$D/image"
  head -c 8388608 /dev/urandom >"$D/image/nixos.img"
  "$IMAGE" keygen ci-images --out-secret "$D/keys/image.sec" --out-public "$D/keys/image.pub"
  "$IMAGE" manifest --system /nix/store/6s3zm8dxh4r0ajrwkz0ymf26d6m3wwbn-nixos-system-edge-node \
    --file "nixos.img=$D/image/nixos.img" --version 2026.12.1 --key "$D/keys/image.sec" \
    --out "$D/image-manifest.json" --no-closure
  IMG_SHA=$(sha256sum "$D/image-manifest.json" | cut -d' ' -f1)
  mkdir -p "$D/hub/images/$IMG_SHA"
  cp "$D/image-manifest.json" "$D/hub/images/$IMG_SHA/manifest.json"
  cp "$D/image/nixos.img" "$D/hub/images/$IMG_SHA/nixos.img"
  declare -gA LAN_PORT METRICS_PORT
  keygen hub-1 "$D/keys/hub-1.sec"
  keygen hub-2 "$D/keys/hub-2.sec"
  local p1 p2
  p1=$(free_port) p2=$(free_port)
  HUB="http://127.0.0.1:$p1"
  HUBS=("http://127.0.0.1:$p2" "$HUB")
  # After each apply, and on every cycle after it, each agent checks its store; the verdicts
  # decide the report. These light lab stores are single nodes with a monitor and no OSDs (no
  # quorum or Ceph health to speak of), so the check is the age of the last backup in the
  # store's PBS datastore (limit 26 h): each store gets one, an hour old.
  mkdir -p "$D/health"
  for s in $(stores); do
    local ds; ds=$(. "$D/fleet/stores/$s.env"; echo "$TF_VAR_datastore")
    python3 - "$D/fleet/lab/lab.json" "$s" <<'PY' || die "backup for $s"
import json, sys, time, urllib.request
lab = json.load(open(sys.argv[1]))
body = json.dumps({"store": sys.argv[2], "backup_type": "vm", "backup_id": "100", "backup_time": int(time.time()) - 3600})
req = urllib.request.Request(lab["admin"]["endpoint"] + "/lab/backups", data=body.encode(), method="POST",
                             headers={"Authorization": "Bearer " + lab["admin"]["token"], "Content-Type": "application/json"})
urllib.request.urlopen(req).read()
PY
    printf '{"backup": {"datastore": "%s", "max_age_s": 93600}}\n' "$ds" >"$D/health/$s.json"
  done
  local s i=0
  for s in $(stores); do
    LAN_PORT[$s]=$(free_port) METRICS_PORT[$s]=$(free_port)
    keygen "$s" "$D/keys/$s.sec"
    "$FLEET" hub register --database "$DB" --name "$s" --region "region-$((i % 3 + 1))" --key "$(pub "$D/keys/$s.sec")" >>"$D/log/register.log"
    printf '%s{"name": "%s", "region": "region-%s"}' "$([ $i = 0 ] || echo ,)" "$s" $((i % 3 + 1)) >>"$D/inventory.part"
    i=$((i + 1))
  done
  printf '[%s]\n' "$(cat "$D/inventory.part")" >"$D/inventory.json"
  start_hub 1 "$p1"
  start_hub 2 "$p2"
  say "hub: two instances (${HUBS[*]}) on one database; $(stores | wc -l) stores registered, each with its own PostgreSQL role and state schema"
  start_prometheus "$p1" "$p2"

  # 3. Releases.
  V1=$(build_release v1 "$HERE/releases/v1.tfvars")
  V2=$(build_release v2 "$HERE/releases/v2.tfvars")
  V3=$(build_release v3-bad "$HERE/releases/v3-bad.tfvars")
  say "releases: v1 ${V1:0:12}, v2 ${V2:0:12}, v3-bad ${V3:0:12}"

  # 4. Agents: one process per store, polling every 2 s, their metrics on a port each.
  for s in $(stores); do start_agent "$s"; done
  wait_for 60 "prometheus: $PROM scrapes both hub instances and the $STORES agents every second" \
    curl -sf -o /dev/null "$PROM/-/ready" || { cat "$D/log/prometheus.log" >&2; die "prometheus did not come up"; }

  # 5. v1 everywhere (the baseline).
  rollout v1 "{\"release\": \"$V1\", \"previous\": \"$V1\", \"on_failure\": \"halt\",
    \"partitions\": [{\"name\": \"all\", \"max_failed\": 0}]}"
  wait_for 300 "v1: every store applied and reported" phases_are all all=passed \
    || { "$FLEET" hub status --database "$DB" >&2; die "v1 did not reach every store"; }

  # 6. v2 in waves, one store offline: canary (2 named stores) → wave (3, spread over regions,
  #    at most 2 in flight) → rest. The offline store is pending, not failed: the rest waits.
  spec v2 "{\"release\": \"$V2\", \"previous\": \"$V1\", \"on_failure\": \"halt_and_revert\",
    \"partitions\": [
      {\"name\": \"canary\", \"stores\": [\"store-001\", \"store-002\"], \"soak_s\": 2},
      {\"name\": \"wave\", \"count\": 3, \"soak_s\": 2, \"max_in_flight\": 2},
      {\"name\": \"rest\"}]}"
  # The pick is deterministic (the release and the store names): the offline store is one the
  # spec puts in the rest.
  "$FLEET" rollout plan "$D/specs/v2.json" "$D/inventory.json" | sed 's/^/[rollout] v2 plan: /' >&2
  local off; off=$("$FLEET" rollout plan "$D/specs/v2.json" "$D/inventory.json" | sed -n 's/^rest: .*stores: //p' | awk '{ print $NF }')
  [ -n "$off" ] || die "no store in v2's rest partition"
  stop_agent "$off"
  start v2
  wait_for 300 "v2: canary and wave passed; rest waits for $off (offline)" \
    phases_are "canary wave rest" "canary=passed wave=passed rest=open" || die "v2 did not reach the rest"
  sleep 3 # a few steps with the store offline: the gate must keep waiting, not fail
  phases_are "canary wave rest" "canary=passed wave=passed rest=open" || die "v2's rest moved with $off offline: $(phases 'canary wave rest')"
  "$FLEET" hub status --database "$DB" --history 0 | grep -E '^\s+rest' | grep -q 'no data' \
    || { "$FLEET" hub status --database "$DB" >&2; die "the rest's verdict does not say it lacks data"; }
  say "v2: rest says: $("$FLEET" hub status --database "$DB" --history 0 | grep -E '^\s+rest' | sed 's/^ *//')"
  start_agent "$off"
  wait_for 300 "v2: $off came back, applied and reported; every partition passed" \
    phases_are "canary wave rest" "canary=passed wave=passed rest=passed" || die "v2 did not finish"
  for s in $(stores); do [ "$(release_of "$s")" = "$V2" ] || die "$s runs $(release_of "$s"), not v2"; done
  # Prometheus before anything failed: the alert rule is loaded and evaluated, it has scraped
  # v2's three partitions as passed, and EdgeRolloutHalted is neither pending nor firing.
  check_peer 30 "prometheus has not loaded and evaluated EdgeRolloutHalted" rule "$PROM" EdgeRolloutHalted
  check_peer 30 "prometheus does not see v2's three partitions passed" value "$PROM" \
    "max by (partition) (edge_rollout_partition_phase{rollout=\"${V2:0:12}\",phase=\"passed\"}) == 1" 1 \
    partition=canary partition=wave partition=rest
  check_peer 0 "EdgeRolloutHalted before any failure" not-halted "$PROM" EdgeRolloutHalted

  # The hub takes only a store's own, newest reports: an old one replayed (store-003's v1
  # success) and one edited after signing (v2 turned into a failure) are refused.
  post() { curl -s -o "$D/log/post.out" -w '%{http_code}' -H 'content-type: application/json' --data-binary @"$1" "$HUB/v1/reports"; }
  local code
  code=$(post "$D/agents/store-003/reports/1.json")
  [ "$code" = 403 ] || die "a replayed report got HTTP $code"
  say "hub: replayed report refused: $(cat "$D/log/post.out")"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r["report"]["outcome"]="failed"; json.dump(r, open(sys.argv[2], "w"))' \
    "$D/agents/store-003/reports/2.json" "$D/forged.json"
  code=$(post "$D/forged.json")
  [ "$code" = 403 ] || die "a forged report got HTTP $code"
  say "hub: forged report refused: $(cat "$D/log/post.out")"

  # 7. v3 is bad: it fails on the canary, which halts the rollout and reverts the canary to v2
  #    with a newer manifest; no other store is ever handed v3.
  rollout v3 "{\"release\": \"$V3\", \"previous\": \"$V2\", \"on_failure\": \"halt_and_revert\",
    \"partitions\": [
      {\"name\": \"canary\", \"stores\": [\"store-001\", \"store-002\"], \"soak_s\": 2, \"max_failed\": 0},
      {\"name\": \"wave\", \"count\": 3, \"soak_s\": 2},
      {\"name\": \"rest\"}]}"
  wait_for 300 "v3: failed on the canary, halted and reverted" \
    phases_are "canary wave rest" "canary=reverted wave=waiting rest=waiting" \
    || { "$FLEET" hub status --database "$DB" >&2; die "v3 was not reverted"; }
  wait_for 120 "v3: the canary applied v2 again and reported success" \
    bash -c "for s in store-001 store-002; do python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))[\"release\"] != sys.argv[2])' $D/agents/\$s/applied.json $V2 2>/dev/null || exit 1; done" \
    || die "the canary is not back on v2"
  "$FLEET" hub status --database "$DB" --history 8

  # - Prometheus, from the hubs' and agents' /metrics: EdgeRolloutHalted fires for v3's canary
  #   and nothing else; every target is up; the hubs count all stores on v2 again; the agents
  #   themselves say they run v2; the stores that counted a failed apply are exactly those whose
  #   own signed reports say they failed on v3.
  local failed
  failed=$(peers failed-on "$D/agents" "$V3")
  [ -n "$failed" ] || die "no store's own report says it failed on v3"
  check_peer 60 "EdgeRolloutHalted is not firing for v3's canary" halted "$PROM" EdgeRolloutHalted "${V3:0:12}" canary
  check_peer 30 "prometheus's targets" targets "$PROM" $((STORES + 2))
  # The recording rule over the hubs' edge_store_info: one release, v2, with every store.
  check_peer 30 "the hubs' edge_store_info does not put all $STORES stores on v2" \
    value "$PROM" 'edge:stores:count_by_release' "$STORES" "release=${V2:0:12}"
  # shellcheck disable=SC2046 # one store name per word
  check_peer 30 "the agents' edge_agent_release_info does not name v2 on every store" \
    value "$PROM" "edge_agent_release_info{release=\"${V2:0:12}\"}" 1 $(stores | sed 's/^/store=/')
  # shellcheck disable=SC2046 # one store name per word
  check_peer 30 "failed applies are not counted by exactly the stores that failed on v3 ($failed)" \
    value "$PROM" 'sum by (store) (edge_agent_applies_total{result="failed"}) > 0' any $(printf 'store=%s\n' $failed)

  # - the browser: headless chromium renders the hub's /status page; its DOM shows v3's rollout
  #   halted and reverted at the canary, naming exactly the stores whose own reports failed on v3,
  #   each with the words it signed. The screenshot stays in $D (KEEP=1 keeps it).
  browse "$HUB/status" --dump-dom >"$D/status.html" || die "chromium --dump-dom $HUB/status"
  check_peer 0 "the status page in chromium (its DOM: $D/status.html)" status-dom "$D/status.html" "$V3" canary "$D/agents"
  browse "$HUB/status" --screenshot="$D/status-page.png" --window-size=1280,1600 >/dev/null \
    || die "chromium --screenshot $HUB/status"
  [ "$(head -c 8 "$D/status-page.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || die "$D/status-page.png is not a PNG"
  # A blank 1280×1600 page compresses to a few KiB; this page's text does not.
  [ "$(stat -c %s "$D/status-page.png")" -gt 50000 ] || die "$D/status-page.png is nearly empty: a blank page?"
  say "status page: screenshot $D/status-page.png ($(stat -c %s "$D/status-page.png") bytes)"

  # Evidence from the peers themselves:
  # - PostgreSQL: only the canary ever reported on v3, and each failure says why;
  local others
  others=$(q "select count(*) from edge_hub.reports where release = '$V3' and store not in ('store-001', 'store-002')")
  [ "$others" = 0 ] || die "$others reports on v3 from stores outside the canary"
  q "select store || ': ' || (signed->'report'->'detail'->>1) from edge_hub.reports where release = '$V3' and outcome = 'failed' order by id limit 1" \
    | sed 's/^/[rollout] v3 failure: /' >&2
  [ "$(q "select count(*) from edge_hub.reports where release = '$V3' and outcome = 'failed'")" -ge 1 ] || die "no failure on v3 recorded"
  # - the stores' channels: the canary's manifest names v2 at a higher version than v3's;
  for s in $(stores); do
    [ "$(q "select release from edge_hub.channels where store = '$s'")" = "$V2" ] || die "$s's channel does not name v2"
  done
  # - the lab: every store runs v2's garbage-collection schedule and the scratch pool kept 2 copies.
  python3 - "$D/fleet/lab/lab.json" <<'PY' || die "the lab does not hold v2 on every store"
import json, sys, urllib.request
lab = json.load(open(sys.argv[1]))
req = urllib.request.Request(lab["admin"]["endpoint"] + "/lab/snapshot",
                             headers={"Authorization": "Bearer " + lab["admin"]["token"]})
snap = json.load(urllib.request.urlopen(req))
bad = []
for st, conf in zip(snap["stores"], lab["stores"]):
    gc = st["pbs"]["datastores"][conf["pbs"]["datastore"]].get("gc-schedule")
    size = ((st["pools"] or {}).get("scratch") or {}).get("size")
    if gc != "sun 05:00" or size != 2:
        bad.append(f"{st['id']}: gc {gc!r}, scratch size {size!r}")
print("\n".join(bad) or f"lab: {len(snap['stores'])} stores run v2 (gc 'sun 05:00', scratch size 2)", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
  # - PostgreSQL's grants: a store's role reads and writes its own state, not another's, and not
  #   the hub's tables.
  [ "$(psql_as edge_store_store_001 "select count(*) from tfstate_store_001.states")" -ge 1 ] || die "store-001 has no state of its own"
  psql_as edge_store_store_001 "select count(*) from tfstate_store_002.states" >/dev/null 2>&1 \
    && die "store-001's role can read store-002's state"
  psql_as edge_store_store_001 "select count(*) from edge_hub.reports" >/dev/null 2>&1 \
    && die "store-001's role can read the hub's reports"
  say "PostgreSQL: each store's role reaches its own state only"

  # Two hub instances stepping the same rollout never published twice: each store's channel
  # went up by exactly one per decision about it (v1, v2; the canary also v3 and the revert).
  local want
  for s in $(stores); do
    case $s in store-001 | store-002) want=4 ;; *) want=2 ;; esac
    [ "$(q "select version from edge_hub.channels where store = '$s'")" = "$want" ] \
      || die "$s's channel is at version $(q "select version from edge_hub.channels where store = '$s'"), expected $want"
  done
  say "two hub instances, one database: every store's channel version moved once per decision"
  # Images crossed the WAN once per store: the agents' own count of bytes fetched from the hub
  # for the image, over three releases naming it, is one image (+ its manifest) each. And a
  # store's LAN cache serves exactly the signed bytes (what its BMCs boot).
  local img_bytes wan per
  img_bytes=$(stat -c %s "$D/image/nixos.img")
  for s in $(stores); do
    per=$(grep -ho 'fetched_bytes=[0-9]*' "$D/log/agent-$s.log" | awk -F= '{ n += $2 } END { print n + 0 }')
    [ "$per" -ge "$img_bytes" ] && [ "$per" -lt $((img_bytes + 65536)) ] \
      || die "$s fetched $per image bytes over the WAN, expected one image ($img_bytes)"
    wan=$((${wan:-0} + per))
  done
  say "images: $wan bytes over the WAN for $STORES stores and 3 releases = $STORES × one $img_bytes-byte image (+ manifest)"
  [ "$(curl -sf "http://127.0.0.1:${LAN_PORT[store-001]}/images/$IMG_SHA/nixos.img" | sha256sum | cut -d' ' -f1)" = \
    "$(sha256sum "$D/image/nixos.img" | cut -d' ' -f1)" ] || die "store-001's LAN cache does not serve the signed image"
  say "images: store-001's LAN cache serves the signed image to its BMCs"
  # The reports carry the agents' health checks, as the store saw itself.
  q "select store || ': ' || string_agg((c->>'name') || ' ' || (c->>'verdict') || ' (' || (c->>'observed') || ')', ', ')
     from edge_hub.reports r, jsonb_array_elements(r.signed->'report'->'checks') c
     where r.id = (select max(id) from edge_hub.reports where store = 'store-001') group by store" | sed 's/^/[rollout] health: /' >&2
  [ "$(q "select count(*) from edge_hub.reports where jsonb_array_length(signed->'report'->'checks') > 0")" -ge "$STORES" ] \
    || die "reports without health checks"

  # 8. The night's evidence through the hub: each store's agent collects its record (on a store
  #    a timer runs `agent evidence`), keeps it, signs it with the store's key and posts it; the
  #    hub refuses a record signed with another store's key. The day's audit file is written from
  #    what arrived (inventory: the registered stores; the day's rollout decisions with it).
  for s in $(stores); do
    (store_env "$s"; exec "$FLEET" agent evidence --hub "$HUB" --store "$s" --state-dir "$D/agents/$s" \
      --terraform "$TF" --key "$D/keys/$s.sec" --datastore "$TF_VAR_datastore") >>"$D/log/evidence.log" 2>&1 \
      || { tail -5 "$D/log/evidence.log" >&2; die "evidence of $s"; }
  done
  if (store_env store-002; "$FLEET" agent evidence --hub "$HUB" --store store-001 --state-dir "$D/agents/store-002" \
    --terraform "$TF" --key "$D/keys/store-002.sec") >"$D/log/evidence-forged.log" 2>&1; then
    die "the hub took store-001's evidence signed with store-002's key"
  fi
  grep -q '403 Forbidden: store-001: signature by "store-002"' "$D/log/evidence-forged.log" \
    || grep -q '403 Forbidden: store-001:' "$D/log/evidence-forged.log" \
    || { cat "$D/log/evidence-forged.log" >&2; die "the forged evidence was not refused for its signature"; }
  say "evidence: $STORES records posted; one signed with another store's key refused ($(grep -o '403 Forbidden: [^(]*' "$D/log/evidence-forged.log"))"
  keygen audit-1 "$D/keys/audit.sec"
  local today; today=$(date -u +%F)
  "$FLEET" audit write --database "$DB" --dir "$D/audit/edge" --date "$today" --key "$D/keys/audit.sec" >/dev/null 2>>"$D/log/evidence.log" \
    || { tail -5 "$D/log/evidence.log" >&2; die "audit write from the hub"; }
  "$FLEET" audit verify "$D/audit/edge" --trusted "$(pub "$D/keys/audit.sec")" --until "$today" >"$D/log/verify.log" \
    || { cat "$D/log/verify.log" >&2; die "audit verify"; }
  python3 - "$D/audit/edge/$today.json" "$STORES" <<'PY' || die "the day's file"
import base64, json, sys
day = json.loads(base64.b64decode(json.load(open(sys.argv[1]))["payload"]))["predicate"]
n, want = len(day["stores"]), int(sys.argv[2])
assert n == want and not day["missing"], f"{n} records, missing {day['missing']}"
assert len(day["decisions"]) >= 3, f"{len(day['decisions'])} decisions"
assert all(r["release"] and r["drift"]["plan_sha256"] and not r["drift"]["changes"] for r in day["stores"]), "records"
print(f"[rollout] audit/edge/{day['date']}.json: {n} store records (release, state and drift each), "
      f"{len(day['decisions'])} rollout decisions", file=sys.stderr)
PY

  local pids; pids=$(cat "$D"/agents/*.pid "$D"/hub-*.pid "$D"/prometheus.pid)
  trap - EXIT
  cleanup
  for p in $pids; do kill -0 "$p" 2>/dev/null && die "process $p left running"; done
  [ -z "$(peers pids-mentioning "$D/chromium/profile")" ] || die "chromium left running"
  say "check passed in $((SECONDS - t0)) s"
}

case ${1:-} in
  check) cmd_check ;;
  *) sed -n '2,15p' "$0" >&2; exit 64 ;;
esac

#!/usr/bin/env bash
# bench/rollout — the wave controller's cost: a rollout of the spec in fleet/examples/rollout.json
# (canary 5 → 50 → 200 → rest, the last two handed the release 20 and 50 stores in flight at a
# time) over N seeded simulated stores (0.2 % failing, 1 % offline), one controller evaluation per
# simulated minute until every partition passed and every store was handed the release. Reports
# the time per evaluation (the whole step: reports in, every partition's gate and in-flight
# count, decisions out, plus the simulated stores' own step) for 500 and 5,000 stores: the
# baseline is 500, the ratio says how the step scales. The evaluation count is printed too: with
# `max_in_flight` it grows with the fleet (the offline stores keep their places in flight).
# Release build of edge-fleet.
#
# Usage: ROUNDS=5 bench/rollout/run.sh   (builds `cargo build --release -p edge-fleet` first)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=${ROUNDS:-5}
(cd "$ROOT" && cargo build -q --release -p edge-fleet)
BIN=$T/release/edge-fleet
SPEC=$ROOT/fleet/examples/rollout.json

per_eval() { # STORES -> "µs-per-evaluation evaluations wall-ms"
  "$BIN" rollout simulate "$SPEC" --stores "$1" --seed 7 --fail-rate 0.002 --offline-rate 0.01 |
    sed -nE 's/^([0-9]+) evaluations of [0-9]+ stores in ([0-9.]+) ms \(([0-9.]+) µs each.*/\3 \1 \2/p'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

a=() b=()
for r in $(seq "$ROUNDS"); do
  read -r ua na _ < <(per_eval 500)
  read -r ub nb _ < <(per_eval 5000)
  echo "round $r: 500 stores ${ua} µs/eval ($na evals); 5000 stores ${ub} µs/eval ($nb evals)"
  a+=("$ua") b+=("$ub")
done
ma=$(printf '%s\n' "${a[@]}" | median)
mb=$(printf '%s\n' "${b[@]}" | median)
echo
echo "| metric (median of $ROUNDS) | 500 stores (baseline) | 5,000 stores | ratio |"
echo "|---|---|---|---|"
echo "| one controller step (gates + decisions + simulated stores) | ${ma} µs | ${mb} µs | $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.1f", b / a}') |"

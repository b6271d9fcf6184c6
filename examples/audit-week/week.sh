#!/usr/bin/env bash
# examples/audit-week/week.sh — a week of signed evidence for a fleet in the plain per-store
# Terraform layout (examples/fleet: one pg-backend workspace per store, no agent), then an
# auditor's checks of it, then the tampering those checks must catch.
#
#   week.sh check    all of it in a temp dir, self-checking, cleans up (exit != 0 = fail)
#
# What a week holds (the days are the last seven UTC dates, collected back to back):
#   day 1  each store gets two guests and a nightly backup job to PBS (run once); the weekly
#          restore tests restore every guest's latest backup into a scratch VM without network,
#          start it, ping its guest agent, read its disk and destroy it; on store-003 one guest's
#          OS runs no agent, so its test fails at "agent" — every day's record carries the results
#   day 3  someone changes store-002's garbage-collection schedule in PBS, outside Git: the
#          refresh-only plan in that night's record names the resource and the attribute
#   day 4  store-003's collector is down: the file says so (a stated reason, not a silent gap)
#   day 5  store-002 is re-applied from Git: its drift is gone
#   every  patch drift against releases.json: store-003 runs N-2 and misses a critical release
#          published 35 days ago, so `edge-fleet drift` exits 1
# Then: `edge-fleet audit verify` and an independent verifier (securesystemslib's DSSE,
# intoto_verify.py) pass on the week, and each catches: a payload byte changed after signing, a
# removed day, a day re-signed with an untrusted key, and a store's drift hidden by an insider
# holding the real key (caught by the next day's link).
#
# Environment: STORES (3), NET (152), KEEP=1 keeps the temp dir, binaries from
# $CARGO_TARGET_DIR/debug, EDGE_TERRAFORM (.tools/bin/terraform), EDGE_PYTHON
# (.tools/venv/bin/python, with securesystemslib). Builds nothing:
# `cargo build -p terraform-provider-edge -p edge-lab -p edge-fleet -p edge-images` first.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
T=${CARGO_TARGET_DIR:-$ROOT/target}
export EDGE_PROVIDER_BIN=${EDGE_PROVIDER_BIN:-$T/debug/terraform-provider-edge}
export EDGE_LAB_BIN=${EDGE_LAB_BIN:-$T/debug/edge-lab}
export EDGE_TERRAFORM=${EDGE_TERRAFORM:-$ROOT/.tools/bin/terraform}
FLEET=${EDGE_FLEET_BIN:-$T/debug/edge-fleet}
IMAGE=${EDGE_IMAGE_BIN:-$T/debug/edge-image}
PY=${EDGE_PYTHON:-$ROOT/.tools/venv/bin/python}
STORES=${STORES:-3}
NET=${NET:-152}

say() { printf '[audit-week %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

stores() { cat "$D/fleet/stores.txt"; }
fleet_sh() { FLEET_DIR="$D/fleet" STORES=$STORES NET=$NET "$ROOT/examples/fleet/fleet.sh" "$@"; }
in_store() { # STORE CMD...: CMD with that store's provider settings, backend and workspace
  local s=$1; shift
  (
    set -a
    # shellcheck source=/dev/null
    . "$D/fleet/fleet.env"
    # shellcheck source=/dev/null
    . "$D/fleet/stores/$s.env"
    set +a
    export TF_WORKSPACE=$s TF_CLI_CONFIG_FILE="$D/fleet/tf.rc" TF_IN_AUTOMATION=1
    "$@"
  )
}
pbs() { # STORE METHOD PATH [JSON]: the store's PBS API with its own token
  local s=$1 m=$2 p=$3 body=${4:-}
  in_store "$s" bash -c 'curl -sS --fail-with-body --cacert "$0/fleet/lab/ca.pem" -X "$1" \
    -H "Authorization: PBSAPIToken=$EDGE_PBS_API_TOKEN" -H "Content-Type: application/json" \
    ${3:+--data "$3"} "$EDGE_PBS_ENDPOINT/api2/json$2"' "$D" "$m" "$p" "$body"
}

collect() { # DAY STORE [extra args]
  local day=$1 s=$2; shift 2
  local release=2026.11.2
  [ "$s" = store-003 ] && release=2026.10.1
  local ds; ds=$(. "$D/fleet/stores/$s.env"; echo "$TF_VAR_datastore")
  in_store "$s" "$FLEET" audit collect --store "$s" --dir "$D/fleet/tf/store" --terraform "$EDGE_TERRAFORM" \
    --release "$release" --datastore "$ds" --restore-results "$D/restore/$s.json" \
    --out "$D/records/$day/$s.json" "$@" 2>>"$D/log/collect.log" \
    || { tail -20 "$D/log/collect.log" >&2; die "collect $s on $day"; }
}

write_day() { # DAY [--missing STORE=REASON]
  local day=$1; shift
  "$FLEET" audit write --dir "$D/audit/edge" --date "$day" --key "$D/keys/audit.sec" --records "$D/records/$day" \
    --inventory "$D/fleet/stores.txt" --releases "$D/releases.json" "$@" >/dev/null 2>>"$D/log/write.log" \
    || { tail -5 "$D/log/write.log" >&2; die "audit write $day"; }
}

verify() { "$FLEET" audit verify "$1" --trusted "$(cat "$D/keys/audit.pub")" --until "${DAYS[6]}"; }
third_party() { "$PY" "$HERE/intoto_verify.py" "$1" "$(cat "$D/keys/audit.pub")"; }

# Runs both verifiers on a copy of the week with one tampering; both must fail, ours must say
# WANT (a regular expression) about the day.
expect_caught() { # NAME WANT TAMPER-CMD...
  local name=$1 want=$2; shift 2
  local c="$D/tamper/$name"
  rm -rf "$c" && mkdir -p "$D/tamper" && cp -r "$D/audit/edge" "$c"
  "$@" "$c"
  local out rc=0
  out=$(verify "$c") || rc=$?
  [ $rc = 1 ] || { echo "$out" >&2; die "$name: audit verify exited $rc, not 1"; }
  grep -Eq "$want" <<<"$out" || { echo "$out" >&2; die "$name: audit verify did not say /$want/"; }
  local py rc2=0
  py=$(third_party "$c") || rc2=$?
  [ $rc2 = 1 ] || { echo "$py" >&2; die "$name: the independent verifier exited $rc2, not 1"; }
  say "$name: caught — $(grep -E "$want" <<<"$out" | head -1 | sed 's/^PROBLEM //') | independent: $(head -1 <<<"$py")"
}

cleanup() {
  fleet_sh down >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" = 1 ]; then say "kept $D"; else rm -rf "$D"; fi
}

cmd_check() {
  for b in "$EDGE_PROVIDER_BIN" "$EDGE_LAB_BIN" "$FLEET" "$IMAGE" "$EDGE_TERRAFORM" "$PY"; do
    [ -x "$b" ] || die "missing $b (build it first)"
  done
  "$PY" -c 'import securesystemslib' 2>/dev/null || die "$PY has no securesystemslib (scripts/install-deps.sh installs it)"
  D=$(mktemp -d /tmp/edge-audit-week.XXXXXX)
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  local t0=$SECONDS
  mkdir -p "$D"/{log,keys,records,audit,restore}
  chmod 755 "$D"

  # 1. PostgreSQL, a lab of $STORES stores, one workspace each, applied from Git.
  fleet_sh up 2>"$D/log/up.log" || { cat "$D/log/up.log" >&2; die "fleet up"; }
  fleet_sh apply 2>"$D/log/apply.log" >/dev/null || { cat "$D/log/apply.log" >&2; die "fleet apply"; }
  say "$STORES stores applied (plain layout: one pg workspace each, no agent)"

  "$IMAGE" keygen audit-1 --out-secret "$D/keys/audit.sec" --out-public "$D/keys/audit.pub" >/dev/null
  "$IMAGE" keygen rogue-1 --out-secret "$D/keys/rogue.sec" --out-public "$D/keys/rogue.pub" >/dev/null
  local now; now=$(date -u +%s)
  local d35 d60 d3
  d60=$(date -u -d "@$((now - 60 * 86400))" +%FT%TZ)
  d35=$(date -u -d "@$((now - 35 * 86400))" +%FT%TZ)
  d3=$(date -u -d "@$((now - 3 * 86400))" +%FT%TZ)
  cat >"$D/releases.json" <<EOF
[
  {"name": "2026.10.1", "published": "$d60"},
  {"name": "2026.11.1", "published": "$d35", "critical": true},
  {"name": "2026.11.2", "published": "$d3"}
]
EOF
  DAYS=()
  local i
  for i in 6 5 4 3 2 1 0; do DAYS+=("$(date -u -d "@$((now - i * 86400))" +%F)"); done

  # 2. The week.
  local day s
  for i in 0 1 2 3 4 5 6; do
    day=${DAYS[$i]}
    mkdir -p "$D/records/$day"
    case $i in
      0)
        # The weekly restore tests (a timer on each store): every guest's latest backup.
        for s in $(stores); do
          local agentless=()
          [ "$s" = store-003 ] && agentless=(--agentless 101)
          python3 "$HERE/lab_guests.py" "$D/fleet/lab/lab.json" "$s" "${agentless[@]}" >>"$D/log/guests.log" \
            || die "guests and backups of $s"
          local ds; ds=$(. "$D/fleet/stores/$s.env"; echo "$TF_VAR_datastore")
          rc=0
          in_store "$s" "$FLEET" restore-test --node pve1 --pbs-storage pbs-edge --datastore "$ds" \
            --agent-timeout-s 3 --out "$D/restore/$s.json" >"$D/log/restore-$s.txt" 2>>"$D/log/restore.log" || rc=$?
          sed "s/^/    $s: /" "$D/log/restore-$s.txt" >&2
          case $s:$rc in store-003:1 | store-00[12]:0) ;; *) die "restore-test on $s exited $rc" ;; esac
        done
        ;;
      2)
        local ds; ds=$(. "$D/fleet/stores/store-002.env"; echo "$TF_VAR_datastore")
        pbs store-002 PUT "/config/datastore/$ds" '{"gc-schedule": "daily"}' >/dev/null || die "the change outside Git"
        say "${DAYS[2]}: store-002's gc schedule changed in PBS by hand"
        ;;
      4)
        fleet_sh apply store-002 2>>"$D/log/apply.log" >/dev/null || die "re-apply store-002"
        say "$day: store-002 re-applied from Git"
        ;;
    esac
    local missing=()
    for s in $(stores); do
      if [ $i = 3 ] && [ "$s" = store-003 ]; then
        missing=(--missing "store-003=evidence collector offline (host maintenance)")
        continue
      fi
      collect "$day" "$s"
    done
    write_day "$day" "${missing[@]}"
  done
  say "a week of evidence: $(ls "$D/audit/edge" | tr '\n' ' ')"

  # 3. What an auditor runs.
  local out
  out=$(verify "$D/audit/edge") || { echo "$out" >&2; die "audit verify on the untouched week"; }
  echo "$out" | sed 's/^/    /' >&2
  grep -q "^finding ${DAYS[2]} store-002: changed outside Git: update module.services.edge_pbs_job.gc (schedule)" <<<"$out" \
    || die "the drift of ${DAYS[2]} is not in the evidence"
  grep -q "^finding ${DAYS[3]} store-002: changed outside Git" <<<"$out" || die "store-002's drift should last until the re-apply"
  ! grep -q "^finding ${DAYS[4]} store-002: changed outside Git" <<<"$out" || die "store-002 still drifts after the re-apply"
  grep -q "^finding ${DAYS[3]} store-003: no evidence: evidence collector offline" <<<"$out" || die "day 4's missing store"
  grep -q "store-003: patch SLO: 2 releases behind" <<<"$out" || die "store-003's patch drift"
  grep -q "^finding ${DAYS[0]} store-003: restore test of guest 101 (vm/101/.*) failed at agent: .*QEMU guest agent is not running" <<<"$out" \
    || die "store-003's failed restore test is not in the evidence"
  python3 - "$D/audit/edge/${DAYS[6]}.json" <<'PY' || die "restore results in the last day's file"
import base64, json, sys
day = json.loads(base64.b64decode(json.load(open(sys.argv[1]))["payload"]))["predicate"]
for r in day["stores"]:
    tests = {t["guest"]: t for t in r["restore_tests"]}
    assert sorted(tests) == [100, 101], (r["store"], sorted(tests))
    for g, t in tests.items():
        want = "failed" if (r["store"], g) == ("store-003", 101) else "passed"
        assert t["outcome"]["result"] == want, (r["store"], t)
        assert want == "failed" or (t["rto_s"] > 0 and t["rpo_s"] >= 0), t
    assert [b["group"] for b in r["backups"]] == ["vm/100", "vm/101"], r["backups"]
print(f"[audit-week] {day['date']}: restore tests and backups of {len(day['stores'])} stores in the evidence", file=sys.stderr)
PY
  third_party "$D/audit/edge" >"$D/log/third-party.log" || { cat "$D/log/third-party.log" >&2; die "independent verifier"; }
  say "independent verifier: $(tail -1 "$D/log/third-party.log")"

  local rc=0
  "$FLEET" drift --releases "$D/releases.json" --audit "$D/audit/edge" --trusted "$(cat "$D/keys/audit.pub")" \
    >"$D/log/drift.txt" || rc=$?
  sed 's/^/    /' "$D/log/drift.txt" >&2
  [ $rc = 1 ] || die "edge-fleet drift exited $rc with store-003 on N-2"
  grep -q "^store-003 .*2026.10.1 .* 2 .*BREACH" "$D/log/drift.txt" || die "drift table"

  # 4. Tampering.
  expect_caught edited "^PROBLEM ${DAYS[1]}: signature by \"audit-1\" does not verify" \
    "$PY" "$HERE/tamper.py" edit "${DAYS[1]}.json"
  expect_caught removed "^PROBLEM ${DAYS[3]}: missing" rm_day "${DAYS[3]}.json"
  expect_caught resigned "^PROBLEM ${DAYS[4]}: signed by \[\"rogue-1\"\]" \
    "$PY" "$HERE/tamper.py" resign "${DAYS[4]}.json" "$D/keys/rogue.sec"
  expect_caught hidden-drift "^PROBLEM ${DAYS[2]}: ${DAYS[2]}.json was replaced" \
    "$PY" "$HERE/tamper.py" hide-drift "${DAYS[2]}.json" store-002 "$D/keys/audit.sec"

  say "check passed in $((SECONDS - t0)) s"
}
rm_day() { rm "$2/$1"; } # FILE DIR

case ${1:-} in
  check) cmd_check ;;
  *) sed -n '2,27p' "$0" >&2; exit 2 ;;
esac

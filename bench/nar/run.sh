#!/usr/bin/env bash
# NAR hash (+ sign) of a 1 GiB tree: edge-image vs `nix hash path` vs sha256sum of the same files.
# Runs are interleaved (tool A, B, C, A, B, C, ...) so drift hits every tool alike; warm page
# cache (one untimed warm-up pass); medians of RUNS runs; ratios are "baseline time / our time"
# (>1 means edge-image is faster).
#
# Usage: bench/nar/run.sh            (SIZE_MB=1024 RUNS=5 by default)
#        SIZE_MB=256 RUNS=3 bench/nar/run.sh
set -euo pipefail

SIZE_MB="${SIZE_MB:-1024}"
RUNS="${RUNS:-5}"
SMALL_FILES="${SMALL_FILES:-20000}"   # many small files, 1..12 KiB, in 100 directories
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nsubstituters ='

command -v nix >/dev/null || { echo "nix is not installed (Debian nix-bin)" >&2; exit 1; }
(cd "$repo" && cargo build --release -q -p edge-images --bin edge-image)
EI="$CARGO_TARGET_DIR/release/edge-image"

work="$(mktemp -d "${TMPDIR:-/tmp}/nar-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tree="$work/tree"

# --- the tree: SMALL_FILES small files + one big file, SIZE_MB MiB in total ---
python3 - "$tree" "$SIZE_MB" "$SMALL_FILES" <<'PY'
import os, random, sys
root, size_mb, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(42)
total = size_mb << 20
os.makedirs(root)
blob = os.urandom(16 << 20)          # random bytes, sliced: incompressible, cheap to make
small = 0
for i in range(n):
    d = os.path.join(root, f"d{i % 100:02d}")
    os.makedirs(d, exist_ok=True)
    k = rng.randint(1, 12 * 1024)
    off = rng.randint(0, len(blob) - k)
    p = os.path.join(d, f"f{i:05d}")
    with open(p, "wb") as f:
        f.write(blob[off:off + k])
    if i % 7 == 0:
        os.chmod(p, 0o755)
    small += k
big = total - small
with open(os.path.join(root, "big.img"), "wb") as f:
    left = big
    while left > 0:
        c = min(left, len(blob))
        f.write(blob[:c])
        left -= c
    # vary the big file so it is not 64 copies of one block
    f.seek(0)
    f.write(os.urandom(4096))
print(f"tree: {n} small files ({small >> 20} MiB) + big.img ({big >> 20} MiB)", file=sys.stderr)
PY

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
"$EI" keygen bench-1 --out-secret "$work/sk" --out-public "$work/pk" >/dev/null

declare -A CMD=(
  [edge-image hash]="$EI hash $tree"
  [edge-image hash + sign]="$EI hash --sign-key $work/sk $tree"
  [edge-image hash, 2 threads forced]="EDGE_IMAGE_HASH_THREADS=2 $EI hash $tree"
  [nix hash path]="nix hash path $tree"
  [sha256sum (same files)]="find $tree -type f -print0 | xargs -0 sha256sum"
)
ORDER=("edge-image hash" "edge-image hash + sign" "edge-image hash, 2 threads forced" "nix hash path" "sha256sum (same files)")

# Correctness first: our hash must equal Nix's.
ours="$("$EI" hash --sri "$tree")"
theirs="$(nix hash path "$tree")"
[ "$ours" = "$theirs" ] || { echo "MISMATCH: edge-image $ours vs nix $theirs" >&2; exit 1; }

declare -A T C
for name in "${ORDER[@]}"; do bash -c "${CMD[$name]}" >/dev/null; done   # warm-up
for r in $(seq 1 "$RUNS"); do
  for name in "${ORDER[@]}"; do
    # bash's `time` keyword: wall, user and sys seconds of the command and its children.
    t=$( { TIMEFORMAT='%R %U %S'; time bash -c "${CMD[$name]}" >/dev/null 2>&1; } 2>&1 )
    read -r wall user sys <<<"$t"
    T[$name]+="$wall "
    C[$name]+="$(echo "$user + $sys" | bc -l) "
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
bytes=$(du -sb "$tree" | cut -f1)
m_ours=$(echo "${T[edge-image hash]}" | median)
m_nix=$(echo "${T[nix hash path]}" | median)
m_sum=$(echo "${T[sha256sum (same files)]}" | median)

echo
echo "NAR hash of a ${SIZE_MB} MiB tree ($SMALL_FILES small files + 1 big file), warm cache, median of $RUNS interleaved runs,"
echo "$(nproc) cores (load average before: $load_before), $(nix --version), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
echo "| tool | median wall s | MiB/s | wall runs (s) | median CPU s (user+sys) | nix / tool | sha256sum / tool |"
echo "|---|---:|---:|---|---:|---:|---:|"
for name in "${ORDER[@]}"; do
  m=$(echo "${T[$name]}" | median)
  c=$(echo "${C[$name]}" | median)
  printf '| %s | %.3f | %.0f | %s | %.2f | %.2f× | %.2f× |\n' "$name" "$m" "$(echo "$bytes / 1048576 / $m" | bc -l)" \
    "$(echo "${T[$name]}" | xargs printf '%.2f ' | sed 's/ $//')" "$c" \
    "$(echo "$m_nix / $m" | bc -l)" "$(echo "$m_sum / $m" | bc -l)"
done
echo
c_ours=$(echo "${C[edge-image hash]}" | median)
c_nix=$(echo "${C[nix hash path]}" | median)
c_sum=$(echo "${C[sha256sum (same files)]}" | median)
printf 'wall: edge-image vs nix %.2f×, vs sha256sum %.2f×; CPU time: vs nix %.2f×, vs sha256sum %.2f×  (goal ≥ 1.0× nix, ≥ 0.8× sha256sum; ratio = baseline / edge-image)\n' \
  "$(echo "$m_nix / $m_ours" | bc -l)" "$(echo "$m_sum / $m_ours" | bc -l)" \
  "$(echo "$c_nix / $c_ours" | bc -l)" "$(echo "$c_sum / $c_ours" | bc -l)"

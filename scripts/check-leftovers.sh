#!/usr/bin/env bash
# Usage: check-leftovers.sh RUN_ID — fails when a process of the test run RUN_ID (one whose
# environment has EDGE_TEST_RUN=RUN_ID) still runs, or a test network namespace (edgewg*) exists.
set -uo pipefail
run=${1:?usage: check-leftovers.sh RUN_ID}
left=0
for d in /proc/[0-9]*; do
  pid=${d#/proc/}
  [ "$pid" = "$$" ] && continue
  state=$(awk '{ sub(/.*\) /, ""); print substr($0, 1, 1) }' "$d/stat" 2>/dev/null) || continue
  case "$state" in Z | X | "") continue ;; esac
  if { tr '\0' '\n' <"$d/environ"; } 2>/dev/null | grep -qx "EDGE_TEST_RUN=$run"; then
    echo "leftover process $pid: $({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null)"
    left=1
  fi
done
while read -r ns _; do
  case "$ns" in edgewg*) echo "leftover network namespace $ns"; left=1 ;; esac
done < <(ip netns list 2>/dev/null)
if [ "$left" -eq 0 ]; then
  echo "check-leftovers: the test run left no process and no network namespace behind"
fi
exit "$left"

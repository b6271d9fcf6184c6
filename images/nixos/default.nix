# The edge node: every module of the node image, plus the options the provider fills in.
# Import this (or the flake's `nixosModules.edge-node`) and set `edge.node.*`.
{ ... }:
{
  imports = [
    ./base.nix
    ./hardening.nix
    ./wireguard.nix
    ./ceph.nix
    ./pve.nix
    ./seed.nix
  ];
}

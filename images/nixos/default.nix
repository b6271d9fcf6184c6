# The edge node: every module of the node image, plus the options the provider fills in.
# Import this (or the flake's `nixosModules.edge-node`) and set `edge.node.*`; the store agent
# (`services.edge-agent`, edge-agent.nix) is off unless enabled.
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

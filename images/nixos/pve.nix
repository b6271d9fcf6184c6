# Proxmox VE on NixOS, from the proxmox-nixos flake (its module must be imported; the flake's
# `nixosModules.edge-node` does that and adds its overlay). On in the shipped image: the image
# is the same for every node, so nothing here is per node — the node's name and address arrive
# with its seed at first boot (seed.nix) and the provider does the rest through PVE's API.
{ config, lib, ... }:
let
  cfg = config.edge.node.pve;
in
{
  options.edge.node.pve = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Proxmox VE (API on 8006, pmxcfs, corosync).";
    };
    ipAddress = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = ''
        Address PVE's cluster traffic uses, for a configuration built for one node. Leave null
        for the shared image: the seed's address is written into /etc/hosts at each boot.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    services.proxmox-ve = {
      enable = true;
      # proxmox-nixos maps this address to the build-time host name in /etc/hosts; for the
      # shared image that name is only the pre-seed fallback, so a loopback alias is right.
      ipAddress = if cfg.ipAddress == null then "127.0.1.1" else cfg.ipAddress;
      # The firewall is ours (hardening.nix): only what a node serves is opened, below. (The
      # module's own rules also open 80/111/443, and its Ceph rules read an option that does
      # not exist, `ceph.msd`, which stops evaluation when OSDs are off.)
      openFirewall = false;
    };
    networking.firewall.allowedTCPPorts = [ 8006 ];
    # corosync (knet) between the cluster's nodes.
    networking.firewall.allowedUDPPortRanges = [
      {
        from = 5405;
        to = 5412;
      }
    ];
  };
}

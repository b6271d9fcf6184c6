# Proxmox VE on NixOS, from the proxmox-nixos flake (its module must be imported; the flake's
# `nixosModules.edge-node` does that and adds its overlay).
{ config, lib, ... }:
let
  cfg = config.edge.node.pve;
in
{
  options.edge.node.pve = {
    enable = lib.mkEnableOption "Proxmox VE";
    ipAddress = lib.mkOption {
      type = lib.types.str;
      description = "Address the PVE API (8006) and cluster traffic use.";
    };
  };

  config = lib.mkIf cfg.enable {
    services.proxmox-ve = {
      enable = true;
      ipAddress = cfg.ipAddress;
    };
    networking.firewall.allowedTCPPorts = [ 8006 ];
  };
}

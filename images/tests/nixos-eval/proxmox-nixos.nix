# Stand-in for the proxmox-nixos flake (SaumonNet/proxmox-nixos@c1f79f104930347a0b84abbca0d42884063a8c09,
# the revision flake.lock pins): its `proxmox-ve` module's option declarations and what its
# config does that can fail evaluation, restated from modules/proxmox-ve/default.nix and
# modules/proxmox-ve/ceph.nix; and its overlay's package names.
{ lib }:
let
  inherit (lib) mkOption types;
  daemonOpts = default: {
    enable = lib.mkEnableOption "the daemon";
    daemons = mkOption {
      type = types.listOf types.str;
      inherit default;
    };
  };
  drv = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
    meta.mainProgram = name;
  };
in
{
  overlays.x86_64-linux = _final: _prev: {
    proxmox-ve = drv "proxmox-ve";
    ceph = drv "ceph";
  };

  nixosModules.proxmox-ve =
    { config, pkgs, ... }:
    let
      cfg = config.services.proxmox-ve;
    in
    {
      options.services.proxmox-ve = {
        enable = lib.mkEnableOption "Proxmox VE";
        package = mkOption {
          type = types.package;
          default = pkgs.proxmox-ve;
        };
        # No default: every configuration that enables PVE must give one.
        ipAddress = mkOption { type = types.str; };
        openFirewall = mkOption {
          type = types.bool;
          default = true;
        };
        ceph = {
          enable = lib.mkEnableOption "Ceph global configuration";
          mgr = daemonOpts [ config.networking.hostName ];
          mon = daemonOpts [ config.networking.hostName ];
          osd = daemonOpts [ ];
          mds = daemonOpts [ ];
          rgw = daemonOpts [ ];
        };
      };

      config = lib.mkMerge [
        (lib.mkIf cfg.enable {
          networking.hosts = {
            "127.0.0.2" = lib.mkForce [ ];
            "::1" = lib.mkForce [ ];
            "${cfg.ipAddress}" = [ config.networking.hostName ];
          };
          systemd.tmpfiles.rules = [
            "d /etc/network 0755 root root -"
            "f /etc/network/interfaces 0755 root root -"
          ];
          services.openssh.enable = true;
          environment.systemPackages = [ cfg.package ];
          networking.firewall = lib.mkIf cfg.openFirewall {
            allowedTCPPorts = [
              80
              111
              443
              8006
            ];
            allowedUDPPorts = [ 111 ];
          };
        })
        (lib.mkIf cfg.ceph.enable {
          assertions = [
            {
              assertion = cfg.ceph.enable -> !config.services.ceph.enable;
              message = "Ceph for Proxmox VE is not compatible with the Ceph module for NixOS";
            }
            {
              assertion = cfg.ceph.mon.enable -> cfg.ceph.mon.daemons != [ ];
              message = "have to set id of atleast one MON if you're going to enable Monitor";
            }
            {
              assertion = cfg.ceph.osd.enable -> cfg.ceph.osd.daemons != [ ];
              message = "have to set id of atleast one OSD if you're going to enable OSD";
            }
            {
              assertion = cfg.ceph.mgr.enable -> cfg.ceph.mgr.daemons != [ ];
              message = "have to set id of atleast one MGR if you're going to enable MGR";
            }
          ];
          # As upstream has it: `cfg.msd` (sic) is not an option, so with the firewall opened
          # by this module and OSDs off, evaluation stops here.
          networking.firewall = lib.mkIf cfg.openFirewall {
            allowedTCPPortRanges = lib.optionals (cfg.ceph.osd.enable || cfg.ceph.msd.enable || cfg.ceph.mgr.enable) [
              {
                from = 6800;
                to = 7300;
              }
            ];
          };
        })
      ];
    };
}

# Ceph daemons of the node (mon + mgr + OSDs); pools are managed by the provider.
{ config, lib, ... }:
let
  cfg = config.edge.node.ceph;
in
{
  options.edge.node.ceph = {
    enable = lib.mkEnableOption "Ceph on this node";
    fsid = lib.mkOption {
      type = lib.types.str;
      example = "4b5c8c0a-ff60-454b-a1b4-9747aa737d19";
      description = "Cluster FSID.";
    };
    monInitialMembers = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Host names of the initial monitors.";
    };
    monHosts = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Monitor addresses.";
    };
    publicNetwork = lib.mkOption {
      type = lib.types.str;
      description = "Public (client) network CIDR, usually on the WireGuard mesh.";
    };
    osds = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "OSD ids run on this node.";
    };
  };

  config = lib.mkIf cfg.enable {
    services.ceph = {
      enable = true;
      global = {
        fsid = cfg.fsid;
        monInitialMembers = lib.concatStringsSep "," cfg.monInitialMembers;
        monHost = lib.concatStringsSep "," cfg.monHosts;
        publicNetwork = cfg.publicNetwork;
      };
      mon = {
        enable = true;
        daemons = [ config.edge.node.hostName ];
      };
      mgr = {
        enable = true;
        daemons = [ config.edge.node.hostName ];
      };
      osd = {
        enable = cfg.osds != [ ];
        daemons = cfg.osds;
      };
    };
    # msgr2 + v1 monitors, and the OSD/MGR port range.
    networking.firewall.allowedTCPPorts = [ 3300 6789 ];
    networking.firewall.allowedTCPPortRanges = [
      {
        from = 6800;
        to = 7300;
      }
    ];
  };
}

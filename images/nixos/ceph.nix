# Ceph as Proxmox VE runs it: the packages, the `ceph` user and the daemon units are in the image;
# the cluster itself (fsid, monitors, managers, OSDs) is made at run time through PVE's API
# (`pveceph init`, `mon create`, `osd create`, which the provider calls), so nothing of a store is
# baked in. Daemons created that way are started from template units, and started again at boot
# for every daemon whose keyring exists (a read-only /etc/systemd cannot hold `systemctl enable`).
{ config, lib, pkgs, ... }:
let
  cfg = config.edge.node.ceph;
  ceph = pkgs.ceph;
  daemonTypes = [
    "mon"
    "mgr"
    "osd"
  ];
  unit = type: {
    description = "Ceph ${type} daemon %i";
    after = [
      "network-online.target"
      "time-sync.target"
      "pve-cluster.service"
    ];
    wants = [
      "network-online.target"
      "time-sync.target"
    ];
    partOf = [ "ceph-${type}.target" ];
    # Not yet created by pveceph: nothing to run.
    unitConfig.ConditionPathExists = "/var/lib/ceph/${type}/ceph-%i/keyring";
    serviceConfig = {
      Environment = "CLUSTER=ceph";
      ExecStart = "${ceph}/bin/ceph-${type} -f --cluster ceph --id %i --setuser ceph --setgroup ceph";
      Restart = "on-failure";
      RestartSec = "10s";
      LimitNOFILE = 1048576;
      PrivateTmp = true;
      ProtectHome = true;
    }
    // lib.optionalAttrs (type == "osd") {
      ExecStartPre = "${ceph.lib}/libexec/ceph/ceph-osd-prestart.sh --id %i --cluster ceph";
    };
  };
in
{
  options.edge.node.ceph.enable = lib.mkOption {
    type = lib.types.bool;
    default = true;
    description = "Ceph daemons managed through Proxmox VE (mon, mgr, OSDs made at run time).";
  };

  config = lib.mkIf cfg.enable {
    # proxmox-nixos' Ceph integration (users, /etc/ceph for pveceph); no daemon is declared at
    # build time, so none of its per-daemon units exist.
    services.proxmox-ve.ceph.enable = true;
    environment.systemPackages = [ ceph ];
    systemd.services = lib.listToAttrs (map (t: lib.nameValuePair "ceph-${t}@" (unit t)) daemonTypes) // {
      ceph-daemons = {
        description = "Start the Ceph daemons this node has";
        wantedBy = [ "multi-user.target" ];
        after = [ "pve-cluster.service" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
        };
        path = [ pkgs.systemd ];
        script = ''
          for type in ${lib.concatStringsSep " " daemonTypes}; do
            for dir in /var/lib/ceph/$type/ceph-*; do
              [ -e "$dir/keyring" ] || continue
              systemctl start --no-block "ceph-$type@''${dir##*/ceph-}.service"
            done
          done
        '';
      };
    };
    # msgr2 + v1 monitors, and the OSD/MGR port range.
    networking.firewall.allowedTCPPorts = [
      3300
      6789
    ];
    networking.firewall.allowedTCPPortRanges = [
      {
        from = 6800;
        to = 7300;
      }
    ];
  };
}

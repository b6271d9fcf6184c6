# Hardening: nftables with a deny-by-default policy, conservative kernel settings, no
# interactive authentication besides SSH keys (see base.nix).
{ config, lib, ... }:
let
  cfg = config.edge.node.firewall;
in
{
  options.edge.node.firewall = {
    allowedTCPPorts = lib.mkOption {
      type = lib.types.listOf lib.types.port;
      default = [ ];
      description = "Extra TCP ports to open (SSH and the enabled services open their own).";
    };
    trustedInterfaces = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Interfaces whose traffic is accepted (e.g. the cluster WireGuard interface).";
    };
  };

  config = {
    # The NixOS firewall on the nftables backend: input and forward drop unless allowed.
    networking.nftables.enable = true;
    networking.firewall = {
      enable = true;
      filterForward = true;
      allowPing = true;
      logRefusedConnections = false;
      allowedTCPPorts = cfg.allowedTCPPorts;
      trustedInterfaces = cfg.trustedInterfaces;
    };

    boot.kernel.sysctl = {
      "kernel.kptr_restrict" = 2;
      "kernel.dmesg_restrict" = 1;
      "kernel.unprivileged_bpf_disabled" = 1;
      "net.core.bpf_jit_harden" = 2;
      "net.ipv4.conf.all.rp_filter" = 1;
      "net.ipv4.conf.default.rp_filter" = 1;
      "net.ipv4.conf.all.accept_redirects" = 0;
      "net.ipv4.conf.default.accept_redirects" = 0;
      "net.ipv6.conf.all.accept_redirects" = 0;
      "net.ipv4.conf.all.send_redirects" = 0;
      "net.ipv4.tcp_syncookies" = 1;
    };

    security.sudo.execWheelOnly = true;
    services.openssh.settings.MaxAuthTries = 3;
    # Nothing on the node is interactive-debuggable by default.
    systemd.coredump.extraConfig = "Storage=none";
    documentation.enable = lib.mkDefault false;
  };
}

# Base system of an edge node: identity, admin access by SSH key only, time, Nix settings.
{ config, lib, pkgs, ... }:
let
  cfg = config.edge.node;
in
{
  options.edge.node = {
    hostName = lib.mkOption {
      type = lib.types.str;
      default = "edge-node";
      description = "Host name; the provider sets it per node.";
    };
    sshAuthorizedKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "SSH public keys of the operators (root and the `edge` admin user). There are no passwords.";
    };
    trustedImageKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Nix-format public keys (`name:base64`) the node trusts for store paths and image manifests.";
    };
    timeServers = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ "0.pool.ntp.org" "1.pool.ntp.org" "2.pool.ntp.org" ];
      description = "NTP servers for chrony.";
    };
  };

  config = {
    networking.hostName = cfg.hostName;
    networking.useNetworkd = true;
    systemd.network.enable = true;
    time.timeZone = "UTC";
    i18n.defaultLocale = "C.UTF-8";

    boot.loader.systemd-boot.enable = lib.mkDefault true;
    boot.loader.efi.canTouchEfiVariables = lib.mkDefault false;
    boot.kernelParams = [ "console=ttyS0,115200n8" "console=tty0" ];

    # No passwords in the image: users are declared here only, root and `edge` log in by key. A
    # node's root password hash arrives with its per-node seed (seed.nix), never with the image.
    users.mutableUsers = false;
    users.users.root = {
      hashedPassword = "!";
      openssh.authorizedKeys.keys = cfg.sshAuthorizedKeys;
    };
    users.users.edge = {
      isNormalUser = true;
      extraGroups = [ "wheel" ];
      hashedPassword = "!";
      openssh.authorizedKeys.keys = cfg.sshAuthorizedKeys;
    };
    security.sudo.wheelNeedsPassword = false;

    services.openssh = {
      enable = true;
      openFirewall = true;
      settings = {
        PasswordAuthentication = false;
        KbdInteractiveAuthentication = false;
        PermitRootLogin = "prohibit-password";
        X11Forwarding = false;
      };
    };

    services.timesyncd.enable = false;
    services.chrony = {
      enable = true;
      servers = cfg.timeServers;
    };

    nix.settings = {
      experimental-features = [ "nix-command" "flakes" ];
      require-sigs = true;
      # Added to nixpkgs' default (cache.nixos.org), not replacing it.
      extra-trusted-public-keys = cfg.trustedImageKeys;
    };

    environment.systemPackages = with pkgs; [
      wireguard-tools
      iproute2
      jq
    ];

    system.stateVersion = "25.11";
  };
}

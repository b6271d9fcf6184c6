# WireGuard link of the node to the store's other nodes and the operations network.
{ config, lib, pkgs, ... }:
let
  cfg = config.edge.node.wireguard;
in
{
  options.edge.node.wireguard = {
    enable = lib.mkEnableOption "the edge WireGuard interface";
    interface = lib.mkOption {
      type = lib.types.str;
      default = "wg-edge";
      description = "Interface name.";
    };
    addresses = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "10.99.0.1/24" ];
      description = "Addresses (CIDR) on the interface.";
    };
    listenPort = lib.mkOption {
      type = lib.types.port;
      default = 51820;
      description = "UDP listen port (opened in the firewall).";
    };
    privateKeyFile = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/wireguard/private.key";
      description = "Private key file; made on the node at first boot if missing (edge-wireguard-key.service), never in the Nix store.";
    };
    peers = lib.mkOption {
      type = lib.types.listOf (
        lib.types.submodule {
          options = {
            publicKey = lib.mkOption { type = lib.types.str; };
            allowedIPs = lib.mkOption { type = lib.types.listOf lib.types.str; };
            endpoint = lib.mkOption {
              type = lib.types.nullOr lib.types.str;
              default = null;
            };
            persistentKeepalive = lib.mkOption {
              type = lib.types.nullOr lib.types.int;
              default = 25;
            };
          };
        }
      );
      default = [ ];
      description = "Peers; the provider's edge_wireguard_peer resources manage them at run time too.";
    };
  };

  config = lib.mkIf cfg.enable {
    networking.wireguard.enable = true;
    networking.wireguard.interfaces.${cfg.interface} = {
      ips = cfg.addresses;
      listenPort = cfg.listenPort;
      privateKeyFile = cfg.privateKeyFile;
      peers = map (p: {
        inherit (p) publicKey allowedIPs endpoint persistentKeepalive;
      }) cfg.peers;
    };
    # The key is made on the node at first boot and never leaves it. nixpkgs' own
    # generatePrivateKeyFile is refused by its networkd backend (base.nix uses networkd), so a
    # unit of ours makes the key before either backend reads it.
    systemd.services.edge-wireguard-key = {
      description = "Make the WireGuard private key of ${cfg.interface} if missing";
      wantedBy = [ "multi-user.target" ];
      before = [
        "systemd-networkd.service"
        "wireguard-${cfg.interface}.service"
      ];
      requiredBy = [ "systemd-networkd.service" ];
      unitConfig.ConditionPathExists = "!${cfg.privateKeyFile}";
      serviceConfig = {
        Type = "oneshot";
        UMask = "0077";
      };
      path = [ pkgs.wireguard-tools pkgs.coreutils ];
      script = ''
        mkdir -p "$(dirname ${lib.escapeShellArg cfg.privateKeyFile})"
        wg genkey > ${lib.escapeShellArg cfg.privateKeyFile}.new
        mv ${lib.escapeShellArg cfg.privateKeyFile}.new ${lib.escapeShellArg cfg.privateKeyFile}
      '';
    };
    networking.firewall.allowedUDPPorts = [ cfg.listenPort ];
    edge.node.firewall.trustedInterfaces = [ cfg.interface ];
  };
}

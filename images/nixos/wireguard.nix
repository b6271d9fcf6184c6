# WireGuard link of the node to the store's other nodes and the operations network.
{ config, lib, ... }:
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
      description = "Private key file; generated on first boot if missing, never in the Nix store.";
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
      generatePrivateKeyFile = true;
      peers = map (p: {
        inherit (p) publicKey allowedIPs endpoint persistentKeepalive;
      }) cfg.peers;
    };
    networking.firewall.allowedUDPPorts = [ cfg.listenPort ];
    edge.node.firewall.trustedInterfaces = [ cfg.interface ];
  };
}

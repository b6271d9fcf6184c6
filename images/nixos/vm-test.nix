# NixOS VM test: the node boots, sshd runs with keys only, nftables is active, and the
# WireGuard interface comes up. Called from the flake's `checks` with `pkgs.testers.runNixOSTest`.
{ edgeNodeModule }:
{
  name = "edge-node-boots";
  # The node module adds the proxmox-nixos overlay, so the test's nodes build their own pkgs.
  node.pkgsReadOnly = false;
  nodes.node =
    { ... }:
    {
      imports = [ edgeNodeModule ];
      edge.node = {
        hostName = "edge-test";
        sshAuthorizedKeys = [
          "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEdgeFormTestKeyOnlyForTheVmTestDoNotUse00 test@edgeform"
        ];
        wireguard = {
          enable = true;
          addresses = [ "10.99.0.1/24" ];
        };
      };
      # The test driver's backdoor shell needs no password; nothing else changes.
      virtualisation.memorySize = 1024;
    };
  testScript = ''
    node.wait_for_unit("multi-user.target")
    node.wait_for_unit("sshd.service")
    node.wait_for_open_port(22)
    node.succeed("sshd -T | grep -qx 'passwordauthentication no'")
    node.succeed("sshd -T | grep -qx 'kbdinteractiveauthentication no'")
    node.succeed("nft list ruleset | grep -q 'policy drop'")
    node.wait_until_succeeds("ip link show wg-edge | grep -q 'UP\\|UNKNOWN'")
    node.succeed("wg show wg-edge listen-port | grep -qx 51820")
    node.succeed("ip -4 addr show wg-edge | grep -q 10.99.0.1/24")
    node.succeed("chronyc tracking || systemctl is-active chronyd")
    node.fail("grep -q '^root:[^!*]' /etc/shadow")
  '';
}

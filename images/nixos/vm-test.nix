# NixOS VM test: the node boots, sshd runs with keys only, nftables is active, the WireGuard
# interface comes up with a key made on the node, and Proxmox VE's cluster file system and API
# start. Called from the flake's `checks` with `pkgs.testers.runNixOSTest`. The test driver names
# the machine after its host name (`system.name`): `edge-test` is `edge_test` in the script.
{ edgeNodeModule }:
{
  name = "edge-node-boots";
  # The node module adds the proxmox-nixos overlay, so the test's nodes build their own pkgs.
  node.pkgsReadOnly = false;
  nodes.edge-test =
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
        # The test network's address of the only node (what a seed would give a real node).
        pve.ipAddress = "192.168.1.1";
      };
      # The test driver's backdoor shell needs no password; nothing else changes. PVE and Ceph
      # are in the image, hence the memory.
      virtualisation.memorySize = 2048;
    };
  testScript = ''
    edge_test.wait_for_unit("multi-user.target")
    edge_test.wait_for_unit("sshd.service")
    edge_test.wait_for_open_port(22)
    edge_test.succeed("sshd -T | grep -qx 'passwordauthentication no'")
    edge_test.succeed("sshd -T | grep -qx 'kbdinteractiveauthentication no'")
    edge_test.succeed("nft list ruleset | grep -q 'policy drop'")
    edge_test.wait_until_succeeds("ip link show wg-edge | grep -q 'UP\\|UNKNOWN'")
    edge_test.succeed("wg show wg-edge listen-port | grep -qx 51820")
    edge_test.succeed("ip -4 addr show wg-edge | grep -q 10.99.0.1/24")
    edge_test.succeed("chronyc tracking || systemctl is-active chronyd")
    edge_test.succeed("test -s /var/lib/wireguard/private.key")
    edge_test.wait_for_unit("pve-cluster.service")
    edge_test.wait_for_open_port(8006)
    edge_test.fail("grep -q '^root:[^!*]' /etc/shadow")
  '';
}

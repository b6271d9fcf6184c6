# Stand-in for nixpkgs' NixOS test framework (nixos/lib/testing/*.nix) as far as evaluation
# goes: each node is evaluated like a system, and the Python names the test script may use are
# the ones nixpkgs' driver defines (driver.nix: pythonizeName of each node's `system.name`, plus
# `machine` when there is exactly one node). The real build runs pyflakes over the script, which
# fails on any other machine name; here the names are returned for the check to compare.
{ lib, pkgs }:
test:
let
  t = if lib.isFunction test then test { inherit pkgs lib; } else test;
  nodes = lib.mapAttrs (
    _: node:
    lib.nixosSystem {
      system = "x86_64-linux";
      modules = [
        node
        # nixos/modules/virtualisation/qemu-vm.nix: the test VM brings its own disk.
        {
          fileSystems."/" = lib.mkVMOverride {
            device = "/dev/vda";
            fsType = "ext4";
          };
        }
      ];
    }
  ) t.nodes;
  pythonizeName =
    name:
    let
      head = lib.substring 0 1 name;
      tail = lib.substring 1 (-1) name;
    in
    (if builtins.match "[A-z_]" head == null then "_" else head)
    + lib.stringAsChars (c: if builtins.match "[A-z0-9_]" c == null then "_" else c) tail;
  hostNames = map (n: n.config.system.name) (lib.attrValues nodes);
  machineNames = map pythonizeName (
    hostNames ++ lib.optional (lib.length hostNames == 1 && !lib.elem "machine" hostNames) "machine"
  );
  # Names a script line calls a method on (`name.method(`): the machines it drives.
  used = lib.unique (
    lib.concatMap (
      line:
      let
        m = builtins.match "[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)\\..*" line;
      in
      lib.optional (m != null) (lib.head m)
    ) (lib.splitString "\n" t.testScript)
  );
in
{
  type = "derivation";
  name = "vm-test-run-${t.name}";
  outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" t.testScript)}-vm-test-run-${t.name}";
  passthru = {
    inherit machineNames;
    undefinedNames = lib.filter (n: !lib.elem n machineNames) used;
    nodeToplevels = lib.mapAttrs (_: n: n.config.system.build.toplevel.outPath) nodes;
  };
}

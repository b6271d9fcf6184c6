# Offline evaluation of the flake: its real `outputs` function, called with stand-in inputs —
# nixpkgs = the pinned nixpkgs lib (real module system, real lib.fileset) over the stand-in
# NixOS declarations and packages of this folder, proxmox-nixos = ./proxmox-nixos.nix — and a
# report of what `nix flake check` and the image pipeline depend on. Run by
# images/tests/nixos_eval.rs:
#   nix eval --json -I nixpkgs-lib=<unpacked nixpkgs.lib> -f eval.nix --arg repo <checkout>
# `extraModules` adds modules to every configuration (the test's negative controls).
{
  repo,
  extraModules ? [ ],
}:
let
  lib = import ./lib.nix;
  system = "x86_64-linux";
  nixpkgs = {
    outPath = toString ./stub-nixpkgs;
    # The revision flake.lock pins, as a flake input carries it.
    rev = (builtins.fromJSON (builtins.readFile (repo + "/flake.lock"))).nodes.nixpkgs.locked.rev;
    lib = lib.extend (
      _: _: {
        nixosSystem = args: import ./stub-nixpkgs/nixos/lib/eval-config.nix (args // { modules = args.modules ++ extraModules; });
      }
    );
  };
  flake = (import (repo + "/flake.nix")).outputs {
    self = {
      outPath = repo;
      shortRev = "0000000";
    };
    inherit nixpkgs;
    proxmox-nixos = import ./proxmox-nixos.nix { inherit lib; };
  };

  failed = c: map (a: a.message) (lib.filter (a: !a.assertion) c.config.assertions);
  describe =
    c:
    let
      cfg = c.config;
      f = failed c;
      root = cfg.fileSystems."/" or null;
    in
    {
      failedAssertions = f;
      toplevel = if f == [ ] then cfg.system.build.toplevel.outPath else null;
      systemName = cfg.system.name;
      rootFileSystem = if root == null then null else { inherit (root) device fsType; };
      pve = cfg.services.proxmox-ve.enable;
      pveCeph = cfg.services.proxmox-ve.ceph.enable;
      nixosCeph = cfg.services.ceph.enable;
      trustedPublicKeys = cfg.nix.settings.trusted-public-keys ++ cfg.nix.settings.extra-trusted-public-keys;
      wireguardNetworkd = cfg.networking.wireguard.useNetworkd;
    };
  pkgs = flake.packages.${system};
  withKeys = nixpkgs.lib.nixosSystem {
    inherit system;
    modules = [
      flake.nixosModules.edge-node
      (repo + "/images/nixos/disk.nix")
      { edge.node.trustedImageKeys = [ "edge-ci-1:AAAAC3NzaC1lZDI1NTE5AAAAIEdgeFormTestKeyOnlyAAAA=" ]; }
    ];
  };
in
{
  configurations = lib.mapAttrs (_: describe) flake.nixosConfigurations;
  withTrustedImageKeys = describe withKeys;
  image = {
    toplevel = pkgs.node-image.passthru.toplevel.outPath;
    path = pkgs.node-image.outPath;
  };
  netbootToplevels = map (p: p.passthru.toplevel.outPath) pkgs.node-netboot.paths;
  signImageText = pkgs.sign-image.text or "(the flake has no packages.sign-image)";
  vmTest = {
    inherit (flake.checks.${system}.node-boots.passthru) machineNames undefinedNames;
  };
  rustSrc = toString pkgs.edge-image.src;
}

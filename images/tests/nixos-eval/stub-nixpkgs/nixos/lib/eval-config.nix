# Stand-in for nixpkgs' nixos/lib/eval-config.nix (what `lib.nixosSystem` calls): nixpkgs' real
# module system (`lib.evalModules` of the pinned nixpkgs lib, on the search path as
# <nixpkgs-lib>) over the stand-in declarations of ../../../nixos.nix.
{
  system ? "x86_64-linux",
  modules,
  specialArgs ? { },
  ...
}:
let
  lib = import ../../../lib.nix;
in
lib.evalModules {
  modules = [
    ../../../nixos.nix
    (
      { config, ... }:
      {
        # nixos/modules/misc/nixpkgs.nix: pkgs with the configuration's overlays.
        _module.args.pkgs = import ../.. {
          inherit system;
          overlays = config.nixpkgs.overlays;
        };
        # nixos/lib/utils.nix: only what our modules call, for evaluation.
        _module.args.utils = {
          escapeSystemdExecArgs = lib.concatMapStringsSep " " lib.escapeShellArg;
          escapeSystemdPath = s: lib.replaceStrings [ "/" "-" ] [ "-" "\\x2d" ] (lib.removePrefix "/" s);
        };
      }
    )
  ]
  ++ modules;
  specialArgs = {
    modulesPath = toString ../modules;
  }
  // specialArgs;
}

# Stand-in for nixpkgs' nixos/lib/make-disk-image.nix: the image holds the toplevel of the
# configuration it is given (passthru.toplevel, so the check can compare systems). Nothing is
# built.
{
  lib,
  config,
  name ? "nixos-disk-image",
  ...
}:
let
  toplevel = config.system.build.toplevel;
in
{
  type = "derivation";
  inherit name;
  outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" toplevel.outPath)}-${name}";
  passthru.filePath = "nixos.img";
  passthru.toplevel = toplevel;
}

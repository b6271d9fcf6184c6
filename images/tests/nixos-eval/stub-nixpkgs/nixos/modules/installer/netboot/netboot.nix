# Stand-in for nixpkgs' nixos/modules/installer/netboot/netboot.nix: what it changes in the
# system (a tmpfs root over a squashfs store, so it is another system than the disk image) and
# the three files it builds, each knowing the toplevel it boots.
{ config, lib, ... }:
let
  toplevel = config.system.build.toplevel;
  file = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" toplevel.outPath)}-${name}";
    passthru.toplevel = toplevel;
  };
in
{
  fileSystems."/" = lib.mkImageMediaOverride {
    fsType = "tmpfs";
    options = [ "mode=0755" ];
  };
  fileSystems."/nix/.ro-store" = lib.mkImageMediaOverride {
    fsType = "squashfs";
    device = "../nix-store.squashfs";
  };
  boot.loader.grub.enable = false;
  system.build.netbootRamdisk = file "initrd";
  system.build.kernel = file "linux";
  system.build.netbootIpxeScript = file "netboot.ipxe";
}

# The disk layout of the raw EFI image (the flake's node-image), as nixpkgs' make-disk-image
# writes it: root ext4 labelled "nixos", grown to the disk at first boot, ESP labelled "ESP".
# Part of the configuration that is signed (nixosConfigurations.edge-node), so the system the
# manifest names is the one inside the image. Netboot has its own root (a tmpfs) and does not
# import this.
{ ... }:
{
  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
    autoResize = true;
  };
  fileSystems."/boot" = {
    device = "/dev/disk/by-label/ESP";
    fsType = "vfat";
  };
  boot.growPartition = true;
}

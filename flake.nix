{
  description = "edgeform: Terraform provider for edge stores, and their signed, reproducible NixOS node images";

  inputs = {
    # The nixpkgs proxmox-nixos builds and tests PVE against (its README supports only its own
    # pin): flake.lock pins both to the pair proxmox-nixos' own lock file names. nixos-25.11
    # also brings rustc 1.91, which the locked crates need (>= 1.89).
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    # Proxmox VE packaged for NixOS (module `proxmox-ve`, overlay with the PVE packages).
    proxmox-nixos.url = "github:SaumonNet/proxmox-nixos";
    proxmox-nixos.inputs.nixpkgs-stable.follows = "nixpkgs";
  };

  outputs =
    {
      self,
      nixpkgs,
      proxmox-nixos,
    }:
    let
      system = "x86_64-linux";
      lib = nixpkgs.lib;
      pkgs = import nixpkgs { inherit system; };
      version = "0.1.0";
      # Same commit, same inputs: same store paths and NAR hashes. The revision goes into the
      # image so a dirty tree is visible in the manifest.
      rev = self.shortRev or self.dirtyShortRev or "dirty";

      # Only what Cargo needs, so editing docs or HCL does not rebuild the Rust packages. Cargo
      # loads the whole workspace, so every member Cargo.toml lists is in (read from the file:
      # a new member cannot be forgotten here).
      workspaceMembers = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.members;
      rustSrc = lib.fileset.toSource {
        root = ./.;
        fileset = lib.fileset.unions (
          [
            ./Cargo.toml
            ./Cargo.lock
          ]
          ++ map (m: ./. + "/${m}") workspaceMembers
        );
      };

      rustPackage =
        { pname, crate, description }:
        pkgs.rustPlatform.buildRustPackage {
          inherit pname version;
          src = rustSrc;
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [ "-p" crate ];
          # The test suites need the real peers (nix, ceph, terraform, wireguard-go); they run
          # in `make test`, not in the sandbox.
          doCheck = false;
          nativeBuildInputs = [
            pkgs.protobuf
            pkgs.pkg-config
          ];
          # liblzma for edge-image's xz binary caches (xz2 / lzma-sys).
          buildInputs = [ pkgs.xz ];
          # tonic codegen: use nixpkgs' protoc instead of the vendored binary.
          PROTOC = "${pkgs.protobuf}/bin/protoc";
          meta = {
            inherit description;
            license = lib.licenses.mpl20;
            mainProgram = pname;
          };
        };

      terraform-provider-edge = rustPackage {
        pname = "terraform-provider-edge";
        crate = "terraform-provider-edge";
        description = "Terraform provider for edge stores (Proxmox VE, Ceph, WireGuard, PBS)";
      };

      edge-image = rustPackage {
        pname = "edge-image";
        crate = "edge-images";
        description = "Nix-compatible NAR hashing, signing, binary caches and signed image manifests";
      };

      edge-fleet = rustPackage {
        pname = "edge-fleet";
        crate = "edge-fleet";
        description = "Fleet releases, signed channel manifests, rollouts and the store agent";
      };

      authorizedKeysFile = ./images/authorized_keys;

      edgeNodeModule = {
        imports = [
          ./images/nixos/default.nix
          proxmox-nixos.nixosModules.proxmox-ve
        ];
        nixpkgs.overlays = [ proxmox-nixos.overlays.${system} ];
        system.configurationRevision = rev;
        # The store agent (images/nixos/edge-agent.nix, off by default) runs this flake's build.
        services.edge-agent.package = lib.mkDefault edge-fleet;
      };

      # The node as shipped: keys from images/authorized_keys (one per line) if present.
      nodeConfig = {
        edge.node = {
          sshAuthorizedKeys = lib.optionals (builtins.pathExists authorizedKeysFile) (
            lib.filter (l: l != "" && !(lib.hasPrefix "#" l)) (
              lib.splitString "\n" (builtins.readFile authorizedKeysFile)
            )
          );
          wireguard.enable = true;
        };
      };

      # The system that is signed, described by the SBOM and inside the disk image: one
      # evaluation, used for all three.
      edge-node = lib.nixosSystem {
        inherit system;
        modules = [
          edgeNodeModule
          nodeConfig
          ./images/nixos/disk.nix
        ];
      };

      # Netboot is another system (tmpfs root over a squashfs store): it gets its own manifest.
      edge-node-netboot = lib.nixosSystem {
        inherit system;
        modules = [
          edgeNodeModule
          nodeConfig
          (nixpkgs + "/nixos/modules/installer/netboot/netboot.nix")
        ];
      };

      # make-disk-image over edge-node's own configuration, not `system.build.images.raw-efi`
      # (that extends the configuration with the variant's modules: another toplevel than the
      # one signed).
      node-image = import (nixpkgs + "/nixos/lib/make-disk-image.nix") {
        inherit lib pkgs;
        config = edge-node.config;
        name = "edge-node-image-${version}";
        format = "raw";
        partitionTableType = "efi";
        diskSize = "auto";
        additionalSpace = "2G";
      };

      node-netboot =
        let
          b = edge-node-netboot.config.system.build;
        in
        pkgs.symlinkJoin {
          name = "edge-node-netboot-${version}";
          paths = [
            b.netbootRamdisk
            b.kernel
            b.netbootIpxeScript
          ];
        };

      # `nix run .#sign-image -- SECRET_KEY_FILE [OUT.json]`: write OUT.json, the signed
      # manifest of the disk image (system = edge-node's toplevel, file nixos.img, the closure),
      # its CycloneDX SBOM (OUT.sbom.json) and the SBOM's signed attestation
      # (OUT.sbom.intoto.json); and OUT.netboot.json, the same for the netboot system (bzImage,
      # initrd, netboot.ipxe). The key is read from the file given, never stored in the Nix store.
      sign-image = pkgs.writeShellApplication {
        name = "edge-sign-image";
        runtimeInputs = [ edge-image ];
        text = ''
          key="''${1:?usage: sign-image SECRET_KEY_FILE [OUT.json]}"
          out="''${2:-edge-node-${version}.manifest.json}"
          sign() { # SYSTEM OUT FILE...
            local system=$1 out=$2; shift 2
            local sbom="''${out%.json}.sbom.json" files=()
            for f in "$@"; do files+=(--file "$f"); done
            edge-image sbom "$system" --out "$sbom"
            edge-image manifest --system "$system" --version ${version}-${rev} "''${files[@]}" \
              --meta "git_rev=${rev}" --meta "nixpkgs=${nixpkgs.rev or "unknown"}" \
              --key "$key" --out "$out" --sbom "$sbom"
          }
          sign ${edge-node.config.system.build.toplevel} "$out" \
            "nixos.img=${node-image}/${node-image.passthru.filePath or "nixos.img"}"
          sign ${edge-node-netboot.config.system.build.toplevel} "''${out%.json}.netboot.json" \
            "bzImage=${node-netboot}/bzImage" "initrd=${node-netboot}/initrd" \
            "netboot.ipxe=${node-netboot}/netboot.ipxe"
        '';
      };
    in
    {
      packages.${system} = {
        inherit
          terraform-provider-edge
          edge-image
          edge-fleet
          node-image
          node-netboot
          sign-image
          ;
        default = terraform-provider-edge;
      };

      nixosModules.edge-node = edgeNodeModule;
      nixosModules.default = edgeNodeModule;

      nixosConfigurations = {
        inherit edge-node edge-node-netboot;
      };

      apps.${system} = {
        sign-image = {
          type = "app";
          program = lib.getExe sign-image;
        };
        edge-image = {
          type = "app";
          program = lib.getExe edge-image;
        };
      };

      checks.${system} = {
        node-boots = pkgs.testers.runNixOSTest (import ./images/nixos/vm-test.nix { inherit edgeNodeModule; });
        inherit edge-image edge-fleet terraform-provider-edge;
      };

      devShells.${system}.default = pkgs.mkShell {
        packages = with pkgs; [
          cargo
          rustc
          clippy
          rustfmt
          protobuf
          nix
          xz
          wireguard-tools
          openssh
        ];
        PROTOC = "${pkgs.protobuf}/bin/protoc";
      };

      formatter.${system} = pkgs.nixfmt-rfc-style;
    };
}

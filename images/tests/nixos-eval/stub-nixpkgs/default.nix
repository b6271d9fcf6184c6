# Stand-in for `import nixpkgs { … }`: packages are names with store paths, nothing is built. The
# builders the flake and the modules call keep what the check reads back (a shell
# application's text, a Rust package's source, a NixOS test's machines). Overlays apply as in
# nixpkgs (the proxmox-nixos overlay adds its packages).
{
  system ? "x86_64-linux",
  overlays ? [ ],
  ...
}:
let
  lib = (import ../lib.nix).extend (_: _: { nixosSystem = import ./nixos/lib/eval-config.nix; });
  drv =
    name: extra:
    {
      type = "derivation";
      inherit name system;
      outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
      outputs = [ "out" ];
      meta = { };
    }
    // extra;
  plain = [
    "cargo"
    "clippy"
    "coreutils"
    "gnugrep"
    "iproute2"
    "jq"
    "nix"
    "nixfmt-rfc-style"
    "openssh"
    "openssl"
    "pkg-config"
    "protobuf"
    "rustc"
    "rustfmt"
    "shadow"
    "terraform"
    "util-linux"
    "wireguard-tools"
    "xz"
  ];
  base =
    self:
    lib.genAttrs plain (n: drv n { meta.mainProgram = n; })
    // {
      inherit lib;
      stdenv.hostPlatform.system = system;
      rustPlatform.buildRustPackage =
        args:
        drv "${args.pname}-${args.version}" {
          inherit (args) pname version src;
          meta = args.meta or { };
        };
      writeShellApplication =
        {
          name,
          text,
          runtimeInputs ? [ ],
          ...
        }:
        drv name {
          inherit text runtimeInputs;
          meta.mainProgram = name;
        };
      writeShellScript = name: text: drv name { inherit text; };
      writeText = name: text: drv name { inherit text; };
      symlinkJoin = { name, paths, ... }: drv name { inherit paths; };
      mkShell = args: drv "nix-shell" { inherit (args) packages; };
      formats.json =
        { }:
        {
          type = lib.types.anything;
          generate = name: _value: drv name { };
        };
      testers.runNixOSTest = import ./nixos/lib/testing.nix {
        inherit lib;
        pkgs = self;
      };
    };
in
lib.fix (lib.foldl' (f: o: lib.extends o f) base overlays)

# Stand-in for the NixOS modules of nixpkgs (nixos-25.11, the revision flake.lock pins) that the
# node image's modules touch: the *declarations* of the options they set or read, with nixpkgs'
# types and defaults, and the nixpkgs *assertions* they can trip, restated (not imported: only
# nixpkgs' lib/ is available offline). Everything not declared here is accepted by a freeform
# type, so a new option in our modules does not need a stand-in until it matters.
#
# Each declaration says which nixpkgs file it mirrors (paths under nixos/modules/ at
# NixOS/nixpkgs@1cd347bf3355fce6c64ab37d3967b4a2cb4b878c). What this cannot see — option
# types of undeclared options, assertions of modules not restated here, anything a build
# does — is listed in docs/images.md ("What the offline check cannot see").
{
  config,
  lib,
  options,
  extendModules,
  ...
}:
let
  inherit (lib) mkOption types;
  # Lists that several modules define: nixpkgs concatenates them; `anything` would refuse.
  listOpt = elem: mkOption {
    type = types.listOf elem;
    default = [ ];
  };
  # The toplevel of the stand-in: a store path named like nixpkgs' (nixos-system-NAME-VERSION)
  # whose hash covers what distinguishes one system from another here. Two evaluations with the
  # same modules give the same path, as in nixpkgs; a variant that adds a file system does not.
  fingerprint = builtins.toJSON {
    inherit (config.networking) hostName;
    fileSystems = lib.mapAttrs (_: fs: { inherit (fs) device fsType; }) config.fileSystems;
    kernelParams = config.boot.kernelParams;
    rev = config.system.configurationRevision;
    pve = config.services.proxmox-ve.enable or false;
  };
  hash = builtins.substring 0 32 (builtins.hashString "sha256" fingerprint);
  # nixos/modules/system/activation/top-level.nix: failed assertions abort the toplevel, warnings
  # are printed.
  failedAssertions = map (x: x.message) (lib.filter (x: !x.assertion) config.assertions);
  toplevel =
    if failedAssertions != [ ] then
      throw "\nFailed assertions:\n${lib.concatStringsSep "\n" (map (x: "- ${x}") failedAssertions)}"
    else
      lib.showWarnings config.warnings {
        type = "derivation";
        name = "nixos-system-${config.system.name}-${config.system.nixos.label}";
        outPath = "/nix/store/${hash}-nixos-system-${config.system.name}-${config.system.nixos.label}";
      };

  # What nixos/lib/make-disk-image.nix makes of a configuration (stand-in beside this file).
  imageOf = cfg: variant: import ./stub-nixpkgs/nixos/lib/make-disk-image.nix {
    inherit lib;
    config = cfg;
    name = "nixos-image-${variant}";
  };

  # nixos/modules/config/users-groups.nix, allowsLogin.
  allowsLogin =
    hash:
    hash == ""
    || !(lib.elem hash [
      null
      "!"
      "!!"
      "*"
    ]);

  # nixos/modules/config/users-groups.nix, userOpts (the options the assertions read).
  userOpts =
    { name, ... }:
    {
      freeformType = types.attrsOf types.anything;
      options = {
        name = mkOption {
          type = types.str;
          default = name;
        };
        isNormalUser = mkOption {
          type = types.bool;
          default = false;
        };
        isSystemUser = mkOption {
          type = types.bool;
          default = false;
        };
        uid = mkOption {
          type = types.nullOr types.int;
          default = null;
        };
        group = mkOption {
          type = types.str;
          default = "";
        };
        extraGroups = listOpt types.str;
        hashedPassword = mkOption {
          type = types.nullOr (types.passwdEntry types.str);
          default = null;
        };
        hashedPasswordFile = mkOption {
          type = types.nullOr types.str;
          default = null;
        };
        password = mkOption {
          type = types.nullOr types.str;
          default = null;
        };
        initialPassword = mkOption {
          type = types.nullOr types.str;
          default = null;
        };
        initialHashedPassword = mkOption {
          type = types.nullOr (types.passwdEntry types.str);
          default = null;
        };
        openssh.authorizedKeys.keys = listOpt types.singleLineStr;
        openssh.authorizedKeys.keyFiles = listOpt types.path;
      };
    };

  # nixos/modules/tasks/filesystems.nix, fileSystemOpts.
  fileSystemOpts =
    { name, ... }:
    {
      freeformType = types.attrsOf types.anything;
      options = {
        mountPoint = mkOption {
          type = types.str;
          default = name;
        };
        device = mkOption {
          type = types.nullOr types.nonEmptyStr;
          default = null;
        };
        fsType = mkOption {
          type = types.nonEmptyStr;
          default = "auto";
        };
        options = mkOption {
          type = types.nonEmptyListOf types.nonEmptyStr;
          default = [ "defaults" ];
        };
      };
    };

  # nixos/modules/services/networking/wireguard.nix, interfaceOpts (the options its networkd
  # backend asserts on).
  wgInterfaceOpts = {
    freeformType = types.attrsOf types.anything;
    options = {
      ips = listOpt types.str;
      privateKey = mkOption {
        type = types.nullOr types.str;
        default = null;
      };
      privateKeyFile = mkOption {
        type = types.nullOr types.str;
        default = null;
      };
      generatePrivateKeyFile = mkOption {
        type = types.bool;
        default = false;
      };
      listenPort = mkOption {
        type = types.nullOr types.int;
        default = null;
      };
      preSetup = mkOption {
        type = types.either types.str (types.listOf types.str);
        default = "";
      };
      postSetup = mkOption {
        type = types.either types.str (types.listOf types.str);
        default = "";
      };
      peers = listOpt types.attrs;
    };
  };
in
{
  options = {
    # nixos/modules/misc/assertions.nix
    assertions = listOpt types.unspecified;
    warnings = listOpt types.str;

    # nixos/modules/misc/nixpkgs.nix
    nixpkgs.overlays = listOpt types.unspecified;

    # nixos/modules/system/activation/top-level.nix, nixos/modules/misc/version.nix
    system.name = mkOption {
      type = types.str;
      default = if config.networking.hostName == "" then "unnamed" else config.networking.hostName;
    };
    system.stateVersion = mkOption { type = types.str; };
    system.configurationRevision = mkOption {
      type = types.nullOr types.str;
      default = null;
    };
    system.nixos.label = mkOption {
      type = types.str;
      default = "25.11.stand-in";
    };
    system.build = mkOption {
      type = types.lazyAttrsOf types.unspecified;
      default = { };
    };
    # nixos/modules/image/images.nix
    image.modules = mkOption {
      type = types.attrsOf types.deferredModule;
      default = { };
    };

    # nixos/modules/tasks/network-interfaces.nix
    networking.hostName = mkOption {
      type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
      default = "nixos";
    };
    networking.useNetworkd = mkOption {
      type = types.bool;
      default = false;
    };
    networking.hosts = mkOption {
      type = types.attrsOf (types.listOf types.str);
      default = { };
    };

    # nixos/modules/services/networking/firewall.nix
    networking.firewall = {
      allowedTCPPorts = listOpt types.port;
      allowedUDPPorts = listOpt types.port;
      allowedTCPPortRanges = listOpt (types.attrsOf types.port);
      allowedUDPPortRanges = listOpt (types.attrsOf types.port);
      trustedInterfaces = listOpt types.str;
    };

    # nixos/modules/services/networking/wireguard.nix
    networking.wireguard.enable = mkOption {
      type = types.bool;
      default = config.networking.wireguard.interfaces != { };
    };
    networking.wireguard.useNetworkd = mkOption {
      type = types.bool;
      default = config.networking.useNetworkd;
    };
    networking.wireguard.interfaces = mkOption {
      type = types.attrsOf (types.submodule wgInterfaceOpts);
      default = { };
    };

    # nixos/modules/config/users-groups.nix
    users.mutableUsers = mkOption {
      type = types.bool;
      default = true;
    };
    users.allowNoPasswordLogin = mkOption {
      type = types.bool;
      default = false;
    };
    users.users = mkOption {
      type = types.attrsOf (types.submodule userOpts);
      default = { };
    };

    # nixos/modules/tasks/filesystems.nix
    fileSystems = mkOption {
      type = types.attrsOf (types.submodule fileSystemOpts);
      default = { };
    };
    # nixos/modules/system/boot/kernel.nix, stage-1.nix
    boot.kernelParams = listOpt types.str;
    boot.initrd.enable = mkOption {
      type = types.bool;
      default = !config.boot.isContainer;
    };
    boot.isContainer = mkOption {
      type = types.bool;
      default = false;
    };

    # nixos/modules/config/nix.nix: the default keeps cache.nixos.org trusted; a plain definition
    # replaces it (extra-trusted-public-keys adds).
    nix.settings = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf types.anything;
        options.trusted-public-keys = mkOption {
          type = types.listOf types.str;
          default = [ "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
        };
        options.extra-trusted-public-keys = listOpt types.str;
        options.experimental-features = listOpt types.str;
      };
      default = { };
    };

    environment.systemPackages = listOpt types.unspecified;
    systemd.tmpfiles.rules = listOpt types.str;
    boot.supportedFilesystems = listOpt types.str;
    programs.ssh.extraConfig = mkOption {
      type = types.lines;
      default = "";
    };
    services.openssh.hostKeys = listOpt types.attrs;
    services.ceph.enable = mkOption {
      type = types.bool;
      default = false;
    };
    security.googleOsLogin.enable = mkOption {
      type = types.bool;
      default = false;
    };
  };

  config = {
    # Whatever is not declared above: accepted, attribute sets merged.
    _module.freeformType = types.lazyAttrsOf types.anything;

    assertions =
      # nixos/modules/config/users-groups.nix: the lock-out check.
      [
        {
          assertion =
            !config.users.mutableUsers
            -> !config.users.allowNoPasswordLogin
            -> lib.any lib.id (
              lib.mapAttrsToList (
                name: u:
                (name == "root" || u.group == "wheel" || lib.elem "wheel" u.extraGroups)
                && (
                  allowsLogin u.hashedPassword
                  || u.password != null
                  || u.hashedPasswordFile != null
                  || u.openssh.authorizedKeys.keys != [ ]
                  || u.openssh.authorizedKeys.keyFiles != [ ]
                )
              ) config.users.users
              ++ [ config.security.googleOsLogin.enable ]
            );
          message = ''
            Neither the root account nor any wheel user has a password or SSH authorized key.
            You must set one to prevent being locked out of your system.'';
        }
      ]
      # nixos/modules/tasks/filesystems.nix / system/boot/stage-1.nix: a root file system.
      ++ lib.optional config.boot.initrd.enable {
        assertion = lib.any (fs: fs.mountPoint == "/") (lib.attrValues config.fileSystems);
        message = "The ‘fileSystems’ option does not specify your root file system.";
      }
      # nixos/modules/services/networking/wireguard-networkd.nix: what the networkd backend refuses.
      ++ lib.optionals (config.networking.wireguard.enable && config.networking.wireguard.useNetworkd) (
        lib.concatLists (
          lib.mapAttrsToList (name: i: [
            {
              assertion = i.privateKey == null;
              message = "networking.wireguard.interfaces.${name}.privateKey cannot be used with networkd. Use privateKeyFile instead.";
            }
            {
              assertion = !i.generatePrivateKeyFile;
              message = "networking.wireguard.interfaces.${name}.generatePrivateKeyFile cannot be used with networkd.";
            }
            {
              assertion = i.preSetup == "" && i.postSetup == "";
              message = "networking.wireguard.interfaces.${name}.preSetup/postSetup cannot be used with networkd.";
            }
          ]) config.networking.wireguard.interfaces
        )
      );

    system.build.toplevel = toplevel;

    # nixos/modules/image/images.nix + image/file-options.nix: each image variant is the system
    # *extended* by the variant's module, so its toplevel is another system's.
    system.build.images = lib.mapAttrs (
      _: variant: (extendModules { modules = [ variant ]; }).config.system.build.image
    ) config.image.modules;
    image.modules.raw-efi =
      { config, ... }:
      {
        # nixos/modules/virtualisation/disk-image.nix
        fileSystems."/" = {
          device = "/dev/disk/by-label/nixos";
          fsType = "ext4";
        };
        fileSystems."/boot" = {
          device = "/dev/disk/by-label/ESP";
          fsType = "vfat";
        };
        system.build.image = imageOf config "raw-efi";
      };
  };
}

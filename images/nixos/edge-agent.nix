# The store agent (`edge-fleet agent run`, docs/fleet.md) as a service of the node: it polls the
# hub for its channel's signed manifest, applies the release with the store's own Terraform and
# posts a report signed with the store's key. Outbound only: it never listens. Off by default.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.edge-agent;
  json = pkgs.formats.json { };
  stateDir = "/var/lib/edge-agent";
  # systemd credential id of the report-signing key; ExecStart names it as %d/<id>, %d being
  # $CREDENTIALS_DIRECTORY (a private copy only this unit's processes can read).
  keyCredential = "report-key";
  # A string, not the derivation: older utils.escapeSystemdExecArg accepts no derivations.
  healthFile = "${json.generate "edge-agent-health.json" cfg.health}";

  # Secrets stay out of the Nix store (world-readable, copied into every closure and cache):
  # they are given as absolute path strings, read by systemd when the unit starts.
  isSecretPath =
    p:
    lib.hasPrefix "/" p
    && !(lib.hasPrefix builtins.storeDir p)
    && !(lib.hasPrefix "/nix/store" p)
    && builtins.match ".*[[:space:]%].*" p == null;
  secretPathRule = "an absolute path outside the Nix store (no whitespace or %), read by systemd when the unit starts";

  args = [
    (lib.getExe' cfg.package "edge-fleet")
    "agent"
    "run"
    "--hub"
    cfg.hub
  ]
  ++ lib.optionals (cfg.hubCa != null) [
    "--hub-ca"
    cfg.hubCa
  ]
  ++ [
    "--store"
    cfg.store
    "--channel"
    cfg.channel
  ]
  ++ lib.concatMap (k: [
    "--trusted"
    k
  ]) cfg.trustedKeys
  ++ [
    "--threshold"
    cfg.threshold
    "--state-dir"
    stateDir
    "--terraform"
    (lib.getExe cfg.terraformPackage)
    "--interval-s"
    cfg.interval
  ]
  ++ lib.optionals (cfg.window != null) [
    "--window"
    cfg.window.event
    "--window-minutes"
    cfg.window.minutes
  ]
  ++ lib.optionals (cfg.health != null) [
    "--health"
    healthFile
  ]
  ++ lib.concatMap (k: [
    "--trusted-image-key"
    k
  ]) cfg.trustedImageKeys
  ++ lib.concatMap (f: [
    "--trusted-cosign-key"
    "${f}"
  ]) cfg.trustedCosignKeys
  ++ lib.optionals (cfg.serveImages != null) [
    "--serve-images"
    "${cfg.serveImages.address}:${toString cfg.serveImages.port}"
  ];

  # The nightly evidence record (`edge-fleet agent evidence`, docs/compliance.md) and the weekly
  # restore tests (`edge-fleet restore-test`): one-shot units on timers, run as the agent's user
  # on the agent's state (its Terraform directory, applied release and key).
  restoreResults = "${stateDir}/restore-tests.json";
  evidenceArgs = [
    (lib.getExe' cfg.package "edge-fleet")
    "agent"
    "evidence"
    "--hub"
    cfg.hub
  ]
  ++ lib.optionals (cfg.hubCa != null) [
    "--hub-ca"
    cfg.hubCa
  ]
  ++ [
    "--store"
    cfg.store
    "--state-dir"
    stateDir
    "--terraform"
    (lib.getExe cfg.terraformPackage)
  ]
  ++ lib.optionals (cfg.evidence.datastore != null) [
    "--datastore"
    cfg.evidence.datastore
  ]
  ++ lib.concatMap (i: [
    "--wireguard"
    i
  ]) cfg.evidence.wireguardInterfaces
  ++ lib.optionals cfg.restoreTests.enable [
    "--restore-results"
    restoreResults
  ];
  restoreArgs = [
    (lib.getExe' cfg.package "edge-fleet")
    "restore-test"
    "--node"
    cfg.restoreTests.node
    "--pbs-storage"
    cfg.restoreTests.pbsStorage
    "--datastore"
    cfg.restoreTests.datastore
    "--out"
    restoreResults
  ]
  ++ lib.optionals (cfg.restoreTests.sample != null) [
    "--sample"
    cfg.restoreTests.sample
  ];

  # What every unit of the agent runs under (the service and the two timers' jobs): no root, one
  # writable path, nothing listening unless the image cache is served.
  sandbox = {
    # A transient user per run, the same for all three units (one User= name: systemd gives
    # them one dynamic UID), so each owns the state the others wrote. StateDirectory= keeps
    # /var/lib/edge-agent (the store's Terraform state, the bundle cache, the accepted/applied
    # records, the evidence kept) across runs and is the one writable path under
    # ProtectSystem=strict.
    DynamicUser = true;
    User = "edge-agent";
    StateDirectory = "edge-agent";
    StateDirectoryMode = "0700";
    UMask = "0077";
    LoadCredential = [ "${keyCredential}:${cfg.keyFile}" ];
    EnvironmentFile = lib.optional (cfg.environmentFile != null) cfg.environmentFile;
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    PrivateMounts = true;
    ProtectProc = "invisible";
    ProtectClock = true;
    ProtectHostname = true;
    ProtectKernelLogs = true;
    ProtectKernelModules = true;
    ProtectKernelTunables = true;
    ProtectControlGroups = true;
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    RemoveIPC = true;
    SystemCallArchitectures = "native";
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
    ];
    SystemCallErrorNumber = "EPERM";
    # HTTPS to the hub, PVE and PBS, SSH to nodes (IPv4/6); AF_UNIX for Terraform's provider
    # plugins (a socket in the private /tmp) and the journal; AF_NETLINK for `wg show` and
    # the resolver.
    RestrictAddressFamilies = [
      "AF_INET"
      "AF_INET6"
      "AF_UNIX"
      "AF_NETLINK"
    ];
    # No listening on IP (systemd >= 249; bind() on AF_INET/AF_INET6 only, so Terraform's
    # plugin sockets still work and outgoing connections are not affected). This also refuses
    # the provider's seed server (bootstrap.listen): a root module that (re)installs nodes
    # through their BMCs cannot run from this agent.
    SocketBindDeny = "any";
  };
  # `wg show` reads WireGuard handshakes over generic netlink, which the kernel allows only
  # with CAP_NET_ADMIN: granted (ambient) to a unit that reads them, nothing otherwise. Not
  # root: the agent's power lies in the credentials it holds (PVE/PBS tokens), not in the node;
  # CAP_NET_ADMIN is the one local privilege it needs. Without it, a user namespace of its own
  # (in one, CAP_NET_ADMIN would not reach the host's network namespace).
  netAdmin = needed: {
    AmbientCapabilities = lib.optional needed "CAP_NET_ADMIN";
    CapabilityBoundingSet = if needed then [ "CAP_NET_ADMIN" ] else [ "" ];
    PrivateUsers = !needed;
  };
  environment = {
    # Terraform's CLI config, plugin directories and checkpoint cache under the state.
    HOME = stateDir;
    # No calls to HashiCorp's version-check service.
    CHECKPOINT_DISABLE = "1";
    TF_IN_AUTOMATION = "1";
  };
  # A one-shot job of the agent on a timer (Persistent: a run missed while the node was off
  # happens at the next boot).
  job = description: execStart: onCalendar: extra: {
    services = {
      inherit description;
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      path = [ pkgs.wireguard-tools ];
      inherit environment;
      serviceConfig =
        sandbox
        // extra
        // {
          Type = "oneshot";
          ExecStart = execStart;
        };
    };
    timers = {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = onCalendar;
        Persistent = true;
        RandomizedDelaySec = "15min";
      };
    };
  };
  evidenceJob =
    job "edge store evidence: collect, sign and post the night's record"
      "${utils.escapeSystemdExecArgs evidenceArgs} --key %d/${keyCredential}"
      cfg.evidence.onCalendar
      (netAdmin (cfg.evidence.wireguardInterfaces != [ ]));
  restoreJob =
    job "edge restore tests: each guest's latest backup restored, started, checked, destroyed"
      (utils.escapeSystemdExecArgs restoreArgs)
      cfg.restoreTests.onCalendar
      (netAdmin false);

  tunnel = cfg.tunnelInterface;
  tunnelUnits = lib.optionals (tunnel != null) [
    # networkd backend (nixos-25.05's default with networking.useNetworkd): the link's device unit.
    "sys-subsystem-net-devices-${utils.escapeSystemdPath tunnel}.device"
  ];
in
{
  options.services.edge-agent = {
    enable = lib.mkEnableOption "the edge store agent (`edge-fleet agent run`): pull, verify and apply the store's signed releases, report to the hub";

    package = mkOption {
      type = types.package;
      defaultText = lib.literalMD "the flake's `edge-fleet` package (set by `nixosModules.edge-node`)";
      description = "Package providing `bin/edge-fleet`.";
    };

    hub = mkOption {
      type = types.strMatching "https?://.+";
      example = "https://hub.example.net/fleet";
      description = "Base URL of the hub's tree (`channels/`, `bundles/`, report upload).";
    };

    hubCa = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/etc/edge/hub-ca.pem";
      description = "PEM CA certificate(s) to trust for the hub besides the built-in roots. Public data: may be a Nix path.";
    };

    store = mkOption {
      type = types.str;
      example = "store-001";
      description = "The store's name, as registered at the hub (its reports carry it).";
    };

    channel = mkOption {
      type = types.str;
      default = cfg.store;
      defaultText = lib.literalExpression "config.services.edge-agent.store";
      description = "Channel the store follows (the hub writes one channel per store).";
    };

    trustedKeys = mkOption {
      type = types.listOf types.str;
      example = [
        "hub-1:pVtI2f0xuTtl5zmSvXyJjFQmN4YzKMaE1hxhSVuDRbA="
        "hub-2:2GfE0WgxJLm2B7Vq0mXeS3gqCk7tW1R4rj7qWfVhKXo="
      ];
      description = "Nix-format public keys (`name:base64`) allowed to sign channel manifests. At least one.";
    };

    threshold = mkOption {
      type = types.ints.positive;
      example = 2;
      description = "How many distinct trusted keys must have signed a manifest (at most the number of trusted keys).";
    };

    keyFile = mkOption {
      type = types.str;
      example = "/var/lib/edge-secrets/store-001.sec";
      description = ''
        The store's report-signing key (Nix secret key file, `nix key generate-secret`). A path
        string, not a Nix path: the key must never enter the Nix store. systemd reads it as root
        when the unit starts and hands the agent a private copy (`LoadCredential=`); it can stay
        `root:root 0600`.
      '';
    };

    environmentFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/var/lib/edge-secrets/agent.env";
      description = ''
        `KEY=value` lines for the agent and the Terraform it runs: `EDGE_PVE_ENDPOINT`,
        `EDGE_PVE_API_TOKEN`, `EDGE_PVE_TLS_FINGERPRINT`, `EDGE_PBS_ENDPOINT`,
        `EDGE_PBS_API_TOKEN`, `EDGE_PBS_TLS_FINGERPRINT`, and the store root module's `TF_VAR_*`
        and `PG_CONN_STR`. Same rule as `keyFile`: a path outside the Nix store, read by systemd
        as root (`EnvironmentFile=`).
      '';
    };

    interval = mkOption {
      type = types.ints.positive;
      default = 60;
      description = "Seconds between two polls of the hub.";
    };

    window = mkOption {
      type = types.nullOr (
        types.submodule {
          options = {
            event = mkOption {
              type = types.str;
              example = "mon..fri 22:00";
              description = "When applies may start: a PVE/PBS calendar event, in UTC (`--window`).";
            };
            minutes = mkOption {
              type = types.ints.positive;
              description = "Length of the window in minutes.";
            };
          };
        }
      );
      default = null;
      description = "Maintenance window: a new release is applied only while it is open. `null`: at any time.";
    };

    health = mkOption {
      type = types.nullOr (types.attrsOf json.type);
      default = null;
      description = ''
        Health checks of the store (`--health`), written to a JSON file in the Nix store: no
        secrets here. Setting it also grants the unit `CAP_NET_ADMIN`, which `wg show` needs
        to read the WireGuard handshake ages. `null`: no health checks.
      '';
    };

    trustedImageKeys = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = ''
        Image-signing public keys (`name:base64`, the provider's `trusted_image_keys`). When set,
        the agent fetches each release's node image once into its cache and verifies it before
        it accepts the release (`--trusted-image-key`).
      '';
    };

    trustedCosignKeys = mkOption {
      type = types.listOf types.path;
      default = [ ];
      example = lib.literalExpression "[ ./keys/ci-cosign.pub ]";
      description = ''
        Cosign public keys (PEM, ECDSA P-256: what `cosign generate-key-pair` writes as
        `cosign.pub`) whose `cosign sign-blob` signature of a release's image manifest is accepted
        as well (`--trusted-cosign-key`; docs/images.md). Public keys: the Nix store is fine.
      '';
    };

    serveImages = mkOption {
      type = types.nullOr (
        types.submodule {
          options = {
            address = mkOption {
              type = types.str;
              description = "LAN address the image cache is served on (the store's BMCs fetch virtual media from it).";
            };
            port = mkOption {
              type = types.port;
              default = 8780;
              description = "TCP port of the image cache.";
            };
          };
        }
      );
      default = null;
      description = "Serve the image cache to the store's BMCs over the LAN (`--serve-images`); the only socket the agent listens on. `null`: no listener.";
    };

    terraformPackage = mkOption {
      # Terraform is what the product and its release lock files are made for. nixpkgs marks it
      # unfree (BSL 1.1), so this default is not silent: enabling the agent without allowing it
      # stops evaluation with nixpkgs' "unfree license" error, which names the package and the
      # remedy (`nixpkgs.config.allowUnfreePredicate = p: lib.getName p == "terraform";`).
      # OpenTofu is no drop-in here (other registry host in lock files, binary `tofu`), so it is
      # no fallback; it can still be chosen explicitly (lib.getExe finds its binary).
      type = types.package;
      default = pkgs.terraform;
      defaultText = lib.literalExpression "pkgs.terraform";
      description = ''
        Terraform the agent runs (`--terraform`). `pkgs.terraform` is unfree in nixpkgs (BSL 1.1):
        allow it with `nixpkgs.config.allowUnfreePredicate` (or `allowUnfree`).
      '';
    };

    evidence = {
      enable = lib.mkEnableOption "the nightly evidence record (`edge-fleet agent evidence`): the store's release, state and configuration digests, a refresh-only plan, booted images, certificates, backups, handshakes and restore results, signed with the store's key and posted to the hub";
      onCalendar = mkOption {
        type = types.str;
        default = "*-*-* 01:30:00";
        description = "When (systemd calendar event, the node's time zone); the hub writes the day's audit file after.";
      };
      datastore = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "PBS datastore whose backups the record lists (`--datastore`).";
      };
      wireguardInterfaces = mkOption {
        type = types.listOf types.str;
        default = lib.optional (cfg.tunnelInterface != null) cfg.tunnelInterface;
        defaultText = lib.literalExpression "lib.optional (tunnelInterface != null) tunnelInterface";
        description = "WireGuard interfaces whose handshakes the record lists (`--wireguard`).";
      };
    };

    restoreTests = {
      enable = lib.mkEnableOption "weekly restore tests (`edge-fleet restore-test`): each guest's latest backup restored into a scratch VM without network, started, checked and destroyed; the next evidence records carry the results";
      onCalendar = mkOption {
        type = types.str;
        default = "Sun *-*-* 03:00:00";
        description = "When (systemd calendar event).";
      };
      node = mkOption {
        type = types.str;
        default = config.networking.hostName;
        defaultText = lib.literalExpression "config.networking.hostName";
        description = "The node the scratch VMs run on.";
      };
      pbsStorage = mkOption {
        type = types.str;
        description = "The PVE storage (type pbs) the backup job writes to.";
      };
      datastore = mkOption {
        type = types.str;
        description = "Its PBS datastore.";
      };
      sample = mkOption {
        type = types.nullOr types.ints.positive;
        default = null;
        description = "Test this many guests a week, moving on through all of them (`--sample`); all when null.";
      };
    };

    tunnelInterface = mkOption {
      type = types.nullOr types.str;
      default =
        if config.edge.node.wireguard.enable or false then config.edge.node.wireguard.interface else null;
      defaultText = lib.literalExpression "config.edge.node.wireguard.interface if WireGuard is enabled, else null";
      description = "WireGuard interface the agent starts after (wanted, not required: the agent still runs and reports without it).";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.trustedKeys != [ ];
        message = "services.edge-agent.trustedKeys must name at least one key allowed to sign channel manifests.";
      }
      {
        assertion = lib.all (k: builtins.match "[^:[:space:]]+:[A-Za-z0-9+/]+=*" k != null) cfg.trustedKeys;
        message = "services.edge-agent.trustedKeys: every key must be a Nix-format public key `name:base64`.";
      }
      {
        assertion = cfg.threshold <= lib.length (lib.unique cfg.trustedKeys);
        message = "services.edge-agent.threshold (${toString cfg.threshold}) is more than the ${
          toString (lib.length (lib.unique cfg.trustedKeys))
        } distinct trusted keys: no manifest could ever be accepted.";
      }
      {
        assertion = isSecretPath cfg.keyFile;
        message = "services.edge-agent.keyFile must be ${secretPathRule}: ${cfg.keyFile}";
      }
      {
        assertion = cfg.environmentFile == null || isSecretPath cfg.environmentFile;
        message = "services.edge-agent.environmentFile must be ${secretPathRule}: ${toString cfg.environmentFile}";
      }
    ];

    systemd.services.edge-agent = {
      description = "edge store agent: pull, verify and apply signed releases, report to the hub";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ] ++ tunnelUnits;
      # wireguard-<if>.service: the scripted WireGuard backend (ordering on a unit that does not
      # exist is a no-op).
      after = [
        "network-online.target"
      ]
      ++ tunnelUnits
      ++ lib.optional (tunnel != null) "wireguard-${tunnel}.service";
      # wg for the WireGuard health check.
      path = [ pkgs.wireguard-tools ];
      inherit environment;
      unitConfig.StartLimitIntervalSec = 0;
      serviceConfig =
        sandbox
        // netAdmin (cfg.health != null)
        // {
        Type = "exec";
        ExecStart = "${utils.escapeSystemdExecArgs args} --key %d/${keyCredential}";
        Restart = "on-failure";
        # 5 s, then longer waits up to 5 min (systemd >= 254).
        RestartSec = "5s";
        RestartSteps = 8;
        RestartMaxDelaySec = "5min";
        # The image cache's port on the LAN, when it is served (the sandbox denies any other).
        SocketBindAllow = lib.optional (cfg.serveImages != null) "tcp:${toString cfg.serveImages.port}";
      };
    };

    systemd.services.edge-agent-evidence = lib.mkIf cfg.evidence.enable evidenceJob.services;
    systemd.timers.edge-agent-evidence = lib.mkIf cfg.evidence.enable evidenceJob.timers;
    systemd.services.edge-agent-restore-test = lib.mkIf cfg.restoreTests.enable restoreJob.services;
    systemd.timers.edge-agent-restore-test = lib.mkIf cfg.restoreTests.enable restoreJob.timers;
  };
}

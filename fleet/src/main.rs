//! `edge-fleet`: build release bundles, sign and check channel manifests.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use edge_fleet::agent::{Agent, AgentError, Cycle};
use edge_fleet::channel::{Accepted, Channel, ChannelError, Policy, SignedChannel};
use edge_fleet::db::{self, Db};
use edge_fleet::files;
use edge_fleet::health::HealthConfig;
use edge_fleet::hub::{Hub, RegisteredStore};
use edge_fleet::release::{open_bundle, sha256_file, Release};
use edge_fleet::rollout::{Action, Outcome, Spec, Store};
use edge_fleet::serve;
use edge_fleet::sim::{self, Params};
use edge_fleet::window::MaintenanceWindow;
use edge_images::keys::{PublicKey, SecretKey};

mod cli_audit;

#[derive(Parser)]
#[command(name = "edge-fleet", version, about = "edgeform fleet releases: bundles and signed channel manifests")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Release bundles.
    #[command(subcommand)]
    Release(ReleaseCmd),
    /// Channel manifests.
    #[command(subcommand)]
    Channel(ChannelCmd),
    /// Rollouts.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// The store agent.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// The hub.
    #[command(subcommand)]
    Hub(HubCmd),
    /// Evidence for auditors: per-store records, signed daily files, their verification.
    #[command(subcommand)]
    Audit(cli_audit::AuditCmd),
    /// Patch drift: releases behind and unapplied critical releases per store, against an SLO
    /// (exit 1 when breached).
    Drift(cli_audit::DriftArgs),
    /// Weekly restore tests: each guest's latest PBS backup restored into a scratch VM without
    /// network, started, its guest agent pinged and disk read, then destroyed; RTO and RPO per
    /// guest. Exit 1 if any failed.
    RestoreTest(cli_audit::RestoreTestArgs),
}

#[derive(Subcommand)]
enum HubCmd {
    /// Create the hub's schema in PostgreSQL (idempotent; `serve` does it too).
    Init {
        /// libpq connection string, e.g. postgres://hub@db/fleet
        #[arg(long, env = "EDGE_HUB_DATABASE")]
        database: String,
    },
    /// Register a store (name, region, report key); gives it a role and a Terraform state
    /// schema of its own, and prints the role.
    Register {
        #[arg(long, env = "EDGE_HUB_DATABASE")]
        database: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        region: String,
        /// The store's report-signing public key, `name:base64`.
        #[arg(long)]
        key: String,
    },
    /// Make a rollout spec the current rollout.
    Start {
        #[arg(long, env = "EDGE_HUB_DATABASE")]
        database: String,
        #[arg(long)]
        spec: PathBuf,
    },
    /// Where the current rollout is: per partition its phase, gate and verdict, what halted it,
    /// each store's channel and reports, and the decisions that led there (what the hub's
    /// status page, `GET /status`, shows).
    Status {
        #[arg(long, env = "EDGE_HUB_DATABASE")]
        database: String,
        /// How many past decisions to print.
        #[arg(long, default_value_t = 10)]
        history: i64,
    },
    /// The hub as a service: channels and reports over HTTP, state in PostgreSQL, the current
    /// rollout stepped every --step-every-s and on each report.
    Serve {
        #[arg(long, env = "EDGE_HUB_DATABASE")]
        database: String,
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: std::net::SocketAddr,
        /// Release bundles (<id>/release.json, <id>/files/…).
        #[arg(long)]
        bundles: PathBuf,
        /// Node images (<manifest-sha256>/manifest.json and its files), streamed to the agents.
        #[arg(long)]
        images: Option<PathBuf>,
        /// Signing key (Nix secret key file); repeat up to the stores' threshold.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[arg(long, default_value_t = 7 * 24 * 3600)]
        manifest_lifetime_s: i64,
        #[arg(long, default_value_t = 10)]
        step_every_s: u64,
        /// The release catalogue (JSON list, oldest first: name, id, published, critical) that
        /// /metrics names releases by and counts "releases behind" against.
        #[arg(long)]
        releases: Option<PathBuf>,
        /// How often the stores' agents poll (their --interval-s), exposed for the rule that
        /// calls a store silent.
        #[arg(long, default_value_t = 60)]
        store_poll_interval_s: u64,
    },
    /// One step: read the stores' reports, evaluate the rollout, publish manifests, print where
    /// every partition is and why.
    Step {
        #[arg(long)]
        spec: PathBuf,
        /// Registry: JSON list of {name, region, key}.
        #[arg(long)]
        stores: PathBuf,
        /// The tree served to stores (channels/, bundles/).
        #[arg(long)]
        tree: PathBuf,
        #[arg(long)]
        state: PathBuf,
        /// The stores' latest signed reports, `<store>.json`.
        #[arg(long)]
        reports: PathBuf,
        /// Signing key (Nix secret key file); repeat up to the stores' threshold.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[arg(long, default_value_t = 7 * 24 * 3600)]
        manifest_lifetime_s: i64,
    },
}

#[derive(Subcommand)]
enum AgentCmd {
    /// One cycle: poll the channel, verify, fetch the bundle, apply, write a signed report
    /// (and post it to the hub). Exit 0 applied, up to date or waiting for its window, 1 refused
    /// or failed, 3 expired manifest (an alarm).
    Once(AgentArgs),
    /// The agent as a service: a cycle every --interval-s, reports posted to the hub; refusals
    /// and alarms are logged and the store keeps what it runs.
    Run {
        #[command(flatten)]
        agent: AgentArgs,
        #[arg(long, default_value_t = 60)]
        interval_s: u64,
        /// Serve GET /metrics (Prometheus exposition format) on this address, for the store's
        /// local Prometheus: bind it to the store's LAN or loopback, never to the WAN.
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// The store's nightly evidence (a timer runs it): collect the record from the agent's
    /// working directory and the store's APIs, keep it as STATE/evidence/YYYY-MM-DD.json, sign
    /// it with the store's key and post it to the hub (POST /v1/evidence).
    Evidence(cli_audit::AgentEvidenceArgs),
}

/// Which hub, which store the agent speaks for, and the agent's own state: what every agent
/// command (`once`, `run`, `evidence`) is given.
#[derive(clap::Args)]
struct HubArgs {
    /// Base URL of the hub (channels/, bundles/, v1/reports, v1/evidence).
    #[arg(long)]
    hub: String,
    /// PEM CA to trust for an https hub (besides the system's roots).
    #[arg(long)]
    hub_ca: Option<PathBuf>,
    #[arg(long)]
    store: String,
    /// The agent's state directory (its work/ is where Terraform runs).
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long, default_value = "terraform")]
    terraform: PathBuf,
    /// The store's report-signing key (Nix secret key file).
    #[arg(long)]
    key: PathBuf,
}

#[derive(clap::Args)]
struct AgentArgs {
    #[command(flatten)]
    at: HubArgs,
    /// The channel this store follows (default: the store's name, as the hub publishes).
    #[arg(long)]
    channel: Option<String>,
    #[arg(long = "trusted", required = true)]
    trusted: Vec<String>,
    #[arg(long)]
    threshold: usize,
    /// Maintenance window: a PVE/PBS calendar event (UTC) when applies may start, e.g.
    /// "mon..fri 22:00" …
    #[arg(long, requires = "window_minutes")]
    window: Option<String>,
    /// … and how long each opening lasts.
    #[arg(long, requires = "window")]
    window_minutes: Option<u32>,
    /// Health checks (JSON: quorum, ceph, wireguard, backup, image; see docs/fleet.md), run
    /// after each apply and on every cycle; their verdicts decide the report's outcome.
    #[arg(long)]
    health: Option<PathBuf>,
    /// Trusted image-signing key (`name:base64`, the provider's `trusted_image_keys`); repeat.
    /// With it, each release's node image is fetched once into the store's cache and verified
    /// before the release is accepted.
    #[arg(long = "trusted-image-key")]
    trusted_image_keys: Vec<String>,
    /// Trusted Cosign public key file (PEM, ECDSA P-256, `cosign.pub`); repeat. The release's
    /// image manifest then also passes with a valid Cosign signature (`manifest.json.sig` beside
    /// it on the hub) by one of these.
    #[arg(long = "trusted-cosign-key")]
    trusted_cosign_keys: Vec<PathBuf>,
    /// Serve the image cache to the store's BMCs on this LAN address (agent run only).
    #[arg(long)]
    serve_images: Option<std::net::SocketAddr>,
    /// Don't post reports (they stay in the outbox): a hub that serves files only.
    #[arg(long)]
    no_post: bool,
}

#[derive(Subcommand)]
enum RolloutCmd {
    /// The partitions a spec gives an inventory (JSON list of {name, region}).
    Plan { spec: PathBuf, inventory: PathBuf },
    /// Run a spec against seeded simulated stores and print every decision.
    Simulate {
        spec: PathBuf,
        #[arg(long, default_value_t = 500)]
        stores: usize,
        #[arg(long, default_value_t = 5)]
        regions: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 0.0)]
        fail_rate: f64,
        #[arg(long, default_value_t = 0.0)]
        offline_rate: f64,
        /// Offline stores come back after this many seconds.
        #[arg(long)]
        back_after_s: Option<u64>,
        /// Stores whose apply always fails (a bad release on them).
        #[arg(long = "fail")]
        always_fail: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ReleaseCmd {
    /// Bundle a store's root configuration; prints the release id.
    Build {
        /// A name for people, e.g. 2026.12.1.
        #[arg(long)]
        name: String,
        /// The store's root configuration (with modules and .terraform.lock.hcl).
        #[arg(long)]
        config: PathBuf,
        /// The terraform-provider-edge binary stores must run.
        #[arg(long)]
        provider: PathBuf,
        /// The signed node-image manifest (manifest.json) the store's nodes boot.
        #[arg(long)]
        image_manifest: PathBuf,
        /// Bundles directory; the bundle goes to OUT/<id>/.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a bundle directory (named by its id) against its id.
    Verify { bundle: PathBuf },
}

#[derive(Subcommand)]
enum ChannelCmd {
    /// Write a channel manifest signed by the given keys.
    Sign {
        #[arg(long)]
        channel: String,
        #[arg(long)]
        version: u64,
        /// Release id.
        #[arg(long)]
        release: String,
        /// Expiry, RFC 3339 (e.g. 2026-12-08T00:00:00Z).
        #[arg(long)]
        expires: String,
        /// Secret key file (Nix format); repeat for more signatures.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a signature to a manifest in place.
    Cosign {
        manifest: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a manifest as a store does; with --state, remember it when accepted.
    /// Exit 0 accepted, 1 refused, 3 expired (an alarm: keep the current release).
    Verify {
        manifest: PathBuf,
        /// Trusted public key, `name:base64`; repeat.
        #[arg(long = "trusted", required = true)]
        trusted: Vec<String>,
        #[arg(long)]
        threshold: usize,
        #[arg(long)]
        channel: String,
        /// The store's record of the last accepted manifest (JSON), read and updated.
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Logs to stderr; EDGE_FLEET_LOG filters (default info). Stdout stays for results.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours on a terminal only: logs in files (systemd's journal, a test's log) stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGE_FLEET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn")),
        )
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("edge-fleet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Audit(cmd) => return cli_audit::audit(cmd),
        Cmd::Drift(args) => return cli_audit::drift_cmd(args),
        Cmd::RestoreTest(args) => return cli_audit::restore_test(args),
        Cmd::Release(ReleaseCmd::Build { name, config, provider, image_manifest, out }) => {
            let (provider_sha, _) = sha256_file(&provider)?;
            let (manifest_sha, _) = sha256_file(&image_manifest)?;
            let r = Release::from_dir(&name, &config, &provider_sha.to_hex(), &manifest_sha.to_hex())?;
            let id = r.write_bundle(&config, &out)?;
            println!("{id}");
        }
        Cmd::Release(ReleaseCmd::Verify { bundle }) => {
            let id = bundle.file_name().and_then(|n| n.to_str()).context("the bundle directory is named by its id")?;
            let r = open_bundle(&bundle, id)?;
            println!(
                "release {id} ({}): {} files, provider {}, image manifest {}",
                r.name,
                r.files.len(),
                r.provider_sha256,
                r.image_manifest_sha256
            );
        }
        Cmd::Channel(ChannelCmd::Sign { channel, version, release, expires, keys, out }) => {
            let expires =
                OffsetDateTime::parse(&expires, &Rfc3339).with_context(|| format!("--expires {expires:?}"))?;
            let keys = keys.iter().map(|k| secret(k)).collect::<Result<Vec<_>>>()?;
            let m = Channel::new(&channel, version, &release, expires)?.sign(&keys.iter().collect::<Vec<_>>());
            std::fs::write(&out, m.to_json()).with_context(|| out.display().to_string())?;
        }
        Cmd::Channel(ChannelCmd::Cosign { manifest, key }) => {
            let mut m = SignedChannel::from_json(&read(&manifest)?)?;
            m.add_signature(&secret(&key)?);
            std::fs::write(&manifest, m.to_json()).with_context(|| manifest.display().to_string())?;
        }
        Cmd::Channel(ChannelCmd::Verify { manifest, trusted, threshold, channel, state }) => {
            let policy = Policy { trusted: public_keys(&trusted, "--trusted")?, threshold, channel };
            let last: Option<Accepted> = match &state {
                Some(p) => files::read_json(p)?,
                None => None,
            };
            let m = SignedChannel::from_json(&read(&manifest)?)?;
            match m.verify(&policy, last.as_ref(), OffsetDateTime::now_utc()) {
                Ok(c) => {
                    println!("accepted: channel {} version {} release {}", c.channel, c.version, c.release);
                    if let Some(p) = &state {
                        let a = Accepted { version: c.version, release: c.release.clone() };
                        files::write_json(p, &a)?;
                    }
                }
                Err(e @ ChannelError::Expired { .. }) => {
                    eprintln!("edge-fleet: ALARM: {e}");
                    return Ok(ExitCode::from(3));
                }
                Err(e) => bail!("refused: {e}"),
            }
        }
        Cmd::Agent(AgentCmd::Once(args)) => {
            let agent = agent(&args)?;
            let code = once(&agent)?;
            if !args.no_post {
                let n = agent.deliver()?;
                println!("{n} report(s) delivered to the hub");
            }
            return Ok(code);
        }
        Cmd::Agent(AgentCmd::Evidence(args)) => return cli_audit::agent_evidence(args),
        Cmd::Agent(AgentCmd::Run { agent: args, interval_s, metrics_listen }) => {
            let mut agent = agent(&args)?;
            if let Some(addr) = metrics_listen {
                let m = std::sync::Arc::new(edge_fleet::metrics::AgentMetrics::new(
                    &agent.store,
                    &agent.state_dir,
                    agent.key.public(),
                    agent.health.as_ref().and_then(|h| h.wireguard.clone()),
                ));
                let bound = edge_fleet::metrics::serve_agent(addr, m.clone())
                    .with_context(|| format!("--metrics-listen {addr}"))?;
                tracing::info!(url = %format!("http://{bound}/metrics"), "serving metrics to the store's Prometheus");
                agent.metrics = Some(m);
            }
            // The image cache for the store's BMCs, on the LAN address given (and the metrics
            // above, when asked): nothing else listens.
            let _lan = match args.serve_images {
                Some(addr) => {
                    let h = edge_fleet::images::serve(addr, &agent.state_dir.join("images"))?;
                    tracing::info!(url = %h.url(), "serving the image cache to the store's LAN");
                    Some(h)
                }
                None => None,
            };
            tracing::info!(store = %agent.store, hub = %agent.hub, interval_s, "agent running");
            loop {
                // Each failure is logged and the store keeps what it runs; the next cycle
                // tries again (a hub that is away, a manifest refused, an apply that failed).
                if let Err(e) = once(&agent) {
                    tracing::error!(error = %format!("{e:#}"), "cycle failed");
                }
                if !args.no_post {
                    match agent.deliver() {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(reports = n, "delivered to the hub"),
                        Err(e) => tracing::warn!(error = %e, "reports stay in the outbox"),
                    }
                }
                // The poll interval is the schedule, not a wait for something: up to 10 % of it
                // at random on top, so stores that started together (a power cut, a fleet
                // reboot) do not poll the hub in lockstep.
                let jitter = rand::random::<f64>() * 0.1;
                std::thread::sleep(std::time::Duration::from_secs_f64(interval_s as f64 * (1.0 + jitter)));
            }
        }
        Cmd::Hub(HubCmd::Init { database }) => {
            runtime()?.block_on(async { Db::connect(&database).await?.migrate().await })?;
            println!("hub schema ready");
        }
        Cmd::Hub(HubCmd::Register { database, name, region, key }) => {
            let role = runtime()?.block_on(async {
                let db = Db::connect(&database).await?;
                db.migrate().await?;
                db.register(&RegisteredStore { name: name.clone(), region, key }).await
            })?;
            println!(
                "registered {name}: PostgreSQL role {role}, Terraform state schema tfstate_{}",
                db::store_ident(&name)?
            );
        }
        Cmd::Hub(HubCmd::Start { database, spec }) => {
            let spec: Spec = load(&spec)?;
            runtime()?.block_on(async { Db::connect(&database).await?.start(&spec).await })?;
            println!("rollout of {} started", spec.release);
        }
        Cmd::Hub(HubCmd::Status { database, history }) => {
            // The same value the hub's status page renders (`GET /status`).
            let status = runtime()?.block_on(async { Db::connect(&database).await?.rollout_status(history).await })?;
            let Some(status) = status else { bail!("no rollout has been started") };
            print!("{}", status.to_text());
        }
        Cmd::Hub(HubCmd::Serve {
            database,
            listen,
            bundles,
            images,
            keys,
            manifest_lifetime_s,
            step_every_s,
            releases,
            store_poll_interval_s,
        }) => {
            let catalogue = match &releases {
                Some(p) => edge_fleet::drift::parse_catalogue(&read(p)?).with_context(|| p.display().to_string())?,
                None => Vec::new(),
            };
            let cfg = serve::Config {
                listen,
                database,
                bundles,
                images,
                keys: keys.iter().map(|k| secret(k)).collect::<Result<_>>()?,
                manifest_lifetime: time::Duration::seconds(manifest_lifetime_s),
                step_every: std::time::Duration::from_secs(step_every_s),
                metrics: edge_fleet::metrics::HubOptions {
                    catalogue,
                    poll_interval: std::time::Duration::from_secs(store_poll_interval_s),
                },
            };
            runtime()?.block_on(serve::serve(cfg, |addr| println!("hub listening on http://{addr}")))?;
        }
        Cmd::Hub(HubCmd::Step { spec, stores, tree, state, reports, keys, manifest_lifetime_s }) => {
            let spec: Spec = load(&spec)?;
            let registry: Vec<RegisteredStore> = load(&stores)?;
            let hub = Hub {
                tree,
                state_path: state,
                reports,
                keys: keys.iter().map(|k| secret(k)).collect::<Result<_>>()?,
                manifest_lifetime: time::Duration::seconds(manifest_lifetime_s),
            };
            let step = hub.step(&spec, &registry, OffsetDateTime::now_utc())?;
            for p in &step.published {
                println!("published {} version {} -> {}", p.store, p.version, p.release);
            }
            for why in &step.ignored {
                println!("ignored: {why}");
            }
            for st in &step.decision.status {
                println!("{:<10} {:?}: {}", st.name, st.phase, st.verdict);
            }
        }
        Cmd::Rollout(RolloutCmd::Plan { spec, inventory }) => {
            let spec: Spec = load(&spec)?;
            let stores: Vec<Store> = load(&inventory)?;
            for (p, names) in spec.partitions.iter().zip(spec.assign(&stores)?) {
                println!("{}: {} stores: {}", p.name, names.len(), names.join(" "));
            }
        }
        Cmd::Rollout(RolloutCmd::Simulate {
            spec,
            stores,
            regions,
            seed,
            fail_rate,
            offline_rate,
            back_after_s,
            always_fail,
        }) => {
            let spec: Spec = load(&spec)?;
            let params = Params { seed, fail_rate, offline_rate, back_after_s, always_fail, ..Params::default() };
            let t0 = std::time::Instant::now();
            let r = sim::run(&spec, &sim::inventory(stores, regions), &params)?;
            let took = t0.elapsed();
            for (t, d) in &r.log {
                for a in &d.actions {
                    let Action::Publish { partition, release, stores } = a;
                    let n = stores.len();
                    println!("t={t:>7}s  publish {partition} -> {} ({n} stores)", &release[..12.min(release.len())]);
                }
                for st in &d.status {
                    println!("t={t:>7}s  {:<10} {:?}: {}", st.name, st.phase, st.verdict);
                }
            }
            println!(
                "{} evaluations of {stores} stores in {:.1} ms ({:.1} µs each, simulation included)",
                r.steps,
                took.as_secs_f64() * 1e3,
                took.as_secs_f64() * 1e6 / r.steps.max(1) as f64
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The HTTP client an agent talks to its hub with (`--hub-ca` trusted besides the system's roots).
fn hub_client(hub_ca: Option<&Path>) -> Result<reqwest::blocking::Client> {
    let mut http = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(300));
    if let Some(ca) = hub_ca {
        http = http.add_root_certificate(reqwest::Certificate::from_pem(&read(ca)?).context("--hub-ca")?);
    }
    Ok(http.build()?)
}

fn agent(a: &AgentArgs) -> Result<Agent> {
    let window = match (&a.window, a.window_minutes) {
        (Some(event), Some(minutes)) => Some(MaintenanceWindow::new(event, minutes)?),
        _ => None,
    };
    Ok(Agent {
        hub: a.at.hub.clone(),
        store: a.at.store.clone(),
        policy: Policy {
            trusted: public_keys(&a.trusted, "--trusted")?,
            threshold: a.threshold,
            channel: a.channel.clone().unwrap_or_else(|| a.at.store.clone()),
        },
        state_dir: a.at.state_dir.clone(),
        terraform: a.at.terraform.clone(),
        key: secret(&a.at.key)?,
        http: hub_client(a.at.hub_ca.as_deref())?,
        window,
        health: a.health.as_deref().map(HealthConfig::load).transpose()?,
        image_keys: public_keys(&a.trusted_image_keys, "--trusted-image-key")?,
        image_cosign_keys: a
            .trusted_cosign_keys
            .iter()
            .map(|f| {
                edge_images::cosign::CosignPublicKey::from_file(f)
                    .with_context(|| format!("--trusted-cosign-key {}", f.display()))
            })
            .collect::<Result<_>>()?,
        metrics: None,
    })
}

/// One agent cycle, said on stdout; the exit code `agent once` gives it.
fn once(agent: &Agent) -> Result<ExitCode> {
    let cycle = agent.cycle();
    if let Some(m) = &agent.metrics {
        m.cycle(&cycle);
    }
    match cycle {
        Ok(Cycle::UpToDate { version }) => println!("up to date (manifest version {version})"),
        Ok(Cycle::Deferred { version, opens }) => {
            let opens = opens.and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_else(|| "never".into());
            println!("manifest version {version} verified; waiting for the maintenance window (opens {opens})");
        }
        Ok(Cycle::Ran { report, path }) => {
            println!(
                "{:?}: release {} (version {}); report {}",
                report.outcome,
                report.release,
                report.version,
                path.display()
            );
            if report.outcome != Outcome::Succeeded {
                for l in &report.detail {
                    eprintln!("  {l}");
                }
                return Ok(ExitCode::FAILURE);
            }
        }
        Err(e @ AgentError::Expired(_)) => {
            eprintln!("edge-fleet: {e}");
            return Ok(ExitCode::from(3));
        }
        Err(e) => bail!("{e}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Nix public keys (`name:base64`) given with `flag`; an error names the flag and the key.
fn public_keys(keys: &[String], flag: &str) -> Result<Vec<PublicKey>> {
    keys.iter().map(|k| PublicKey::parse(k).with_context(|| format!("{flag} {k}"))).collect()
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| p.display().to_string())
}

fn load<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T> {
    serde_json::from_slice(&read(p)?).with_context(|| p.display().to_string())
}

fn secret(p: &Path) -> Result<SecretKey> {
    let s = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
    SecretKey::parse(s.trim()).with_context(|| format!("{}: not a Nix secret key", p.display()))
}

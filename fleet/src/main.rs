//! `edge-fleet`: build release bundles, sign and check channel manifests.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use edge_fleet::agent::{Agent, AgentError, Cycle};
use edge_fleet::channel::{Accepted, Channel, ChannelError, Policy, SignedChannel};
use edge_fleet::files;
use edge_fleet::hub::{Hub, RegisteredStore};
use edge_fleet::release::{open_bundle, sha256_file, Release};
use edge_fleet::rollout::{Action, Outcome, Spec, Store};
use edge_fleet::sim::{self, Params};
use edge_images::keys::{PublicKey, SecretKey};

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
}

#[derive(Subcommand)]
enum HubCmd {
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
    /// One cycle: poll the channel, verify, fetch the bundle, apply, write a signed report.
    /// Exit 0 applied or up to date, 1 refused or failed, 3 expired manifest (an alarm).
    Once {
        /// Base URL of the hub's tree (channels/, bundles/).
        #[arg(long)]
        hub: String,
        /// PEM CA to trust for an https hub (besides the system's roots).
        #[arg(long)]
        hub_ca: Option<PathBuf>,
        #[arg(long)]
        store: String,
        #[arg(long)]
        channel: String,
        #[arg(long = "trusted", required = true)]
        trusted: Vec<String>,
        #[arg(long)]
        threshold: usize,
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long, default_value = "terraform")]
        terraform: PathBuf,
        /// The store's report-signing key (Nix secret key file).
        #[arg(long)]
        key: PathBuf,
    },
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
            let trusted = trusted
                .iter()
                .map(|k| PublicKey::parse(k).with_context(|| format!("--trusted {k}")))
                .collect::<Result<_>>()?;
            let policy = Policy { trusted, threshold, channel };
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
        Cmd::Agent(AgentCmd::Once { hub, hub_ca, store, channel, trusted, threshold, state_dir, terraform, key }) => {
            let trusted = trusted
                .iter()
                .map(|k| PublicKey::parse(k).with_context(|| format!("--trusted {k}")))
                .collect::<Result<_>>()?;
            let mut http = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(300));
            if let Some(ca) = &hub_ca {
                http = http.add_root_certificate(reqwest::Certificate::from_pem(&read(ca)?).context("--hub-ca")?);
            }
            let agent = Agent {
                hub,
                store,
                policy: Policy { trusted, threshold, channel },
                state_dir,
                terraform,
                key: secret(&key)?,
                http: http.build()?,
            };
            match agent.cycle() {
                Ok(Cycle::UpToDate { version }) => println!("up to date (manifest version {version})"),
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
            for (store, version, release) in &step.published {
                println!("published {store} version {version} -> {release}");
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
                    let Action::Publish { partition, release } = a;
                    println!("t={t:>7}s  publish {partition} -> {}", &release[..12.min(release.len())]);
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

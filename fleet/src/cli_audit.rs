//! `edge-fleet audit …` and `edge-fleet drift`: evidence for auditors and operators.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use time::{Date, OffsetDateTime};

use edge_fleet::audit::{self, DayInput, Expect};
use edge_fleet::drift::{self, Slo};
use edge_fleet::evidence::{self, rfc3339, Sources, StoreEvidence};
use edge_fleet::health::Apis;

use crate::{hub_client, public_keys, read, runtime, secret};

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Collect one store's evidence record (run on or for the store, e.g. nightly): Terraform
    /// state and configuration digests, a refresh-only plan, booted images, certificates,
    /// backups, WireGuard handshakes, the latest restore tests. Terraform runs in --dir with
    /// this process's environment (backend, TF_WORKSPACE); PVE/PBS credentials are the
    /// provider's (EDGE_PVE_*, EDGE_PBS_*).
    Collect(CollectArgs),
    /// Write the fleet's evidence file for one day (DIR/YYYY-MM-DD.json), linked to the day
    /// before and signed.
    Write(WriteArgs),
    /// Check every evidence file in DIR: signatures, the chain, the records, completeness.
    /// Exits 1 and names the day and store of each problem.
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct CollectArgs {
    #[arg(long)]
    store: String,
    /// Terraform's working directory of the store (initialised).
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value = "terraform")]
    terraform: PathBuf,
    /// The release the store runs (a Git tag or commit in a plain layout)…
    #[arg(long, conflicts_with = "agent_state")]
    release: Option<String>,
    /// …or the agent's state directory, whose applied.json names it.
    #[arg(long)]
    agent_state: Option<PathBuf>,
    #[command(flatten)]
    observe: ObserveArgs,
    /// Where the record goes.
    #[arg(long)]
    out: PathBuf,
}

/// What a record is collected from, besides Terraform's directory.
#[derive(Args)]
pub struct ObserveArgs {
    /// PBS datastore whose backups are listed.
    #[arg(long)]
    datastore: Option<String>,
    /// WireGuard interface whose handshakes are listed (repeatable).
    #[arg(long = "wireguard")]
    wireguard: Vec<String>,
    #[arg(long, default_value = "wg")]
    wg: PathBuf,
    /// The latest restore tests (`edge-fleet restore-test --out`).
    #[arg(long)]
    restore_results: Option<PathBuf>,
}

impl ObserveArgs {
    fn sources(&self, store: &str, terraform: &Path, dir: &Path, release: Option<String>) -> Sources {
        Sources {
            store: store.to_string(),
            terraform: terraform.to_path_buf(),
            dir: dir.to_path_buf(),
            release,
            datastore: self.datastore.clone(),
            wireguard: self.wireguard.clone(),
            wg: self.wg.clone(),
            restore_results: self.restore_results.clone(),
        }
    }
}

#[derive(Args)]
pub struct AgentEvidenceArgs {
    #[command(flatten)]
    at: crate::HubArgs,
    #[command(flatten)]
    observe: ObserveArgs,
}

#[derive(Args)]
pub struct WriteArgs {
    /// The evidence directory (audit/edge).
    #[arg(long)]
    dir: PathBuf,
    /// The day (UTC, YYYY-MM-DD); today by default.
    #[arg(long)]
    date: Option<String>,
    /// Signing key (Nix format; repeatable).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// The day's store records (`audit collect` output, *.json); with --database and without
    /// this, the records the stores' agents posted to the hub for that day.
    #[arg(long, required_unless_present = "database")]
    records: Option<PathBuf>,
    /// The stores that must have evidence, one per line…
    #[arg(long, required_unless_present = "database")]
    inventory: Option<PathBuf>,
    /// …or the hub's database: its registered stores, and the day's rollout decisions.
    #[arg(long, env = "EDGE_HUB_DATABASE")]
    database: Option<String>,
    /// Why a store has no record: STORE=REASON (repeatable).
    #[arg(long = "missing")]
    missing: Vec<String>,
    /// The release catalogue: the day's patch-drift table goes into the file.
    #[arg(long)]
    releases: Option<PathBuf>,
    #[command(flatten)]
    slo: SloArgs,
}

#[derive(Args)]
pub struct VerifyArgs {
    dir: PathBuf,
    /// Trusted signing key (`name:base64`, repeatable).
    #[arg(long = "trusted", required = true)]
    trusted: Vec<String>,
    #[arg(long, default_value_t = 1)]
    threshold: usize,
    /// The chain must start on this day (older files expired).
    #[arg(long)]
    since: Option<String>,
    /// The chain must reach this day (a missing last day is otherwise invisible).
    #[arg(long)]
    until: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SloArgs {
    /// Releases a store may be behind the newest (1: N-2 breaches).
    #[arg(long, default_value_t = 1)]
    max_behind: usize,
    /// Days a critical release may stay unapplied.
    #[arg(long, default_value_t = 30)]
    critical_days: i64,
}

impl SloArgs {
    fn slo(&self) -> Slo {
        Slo { max_behind: self.max_behind, critical_days: self.critical_days }
    }
}

#[derive(Args)]
pub struct RestoreTestArgs {
    #[command(flatten)]
    restore: edge_fleet::restore::RestoreArgs,
    /// Where the results go (JSON), for `audit collect --restore-results`.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct DriftArgs {
    /// The release catalogue (JSON list, oldest first: name, id, published, critical).
    #[arg(long)]
    releases: PathBuf,
    /// Store records (`audit collect` output)…
    #[arg(long, required_unless_present = "audit")]
    records: Option<PathBuf>,
    /// …or the evidence directory: its newest day file (verified with --trusted).
    #[arg(long, requires = "trusted")]
    audit: Option<PathBuf>,
    #[arg(long)]
    trusted: Vec<String>,
    #[command(flatten)]
    slo: SloArgs,
    #[arg(long)]
    json: bool,
}

fn day_arg(s: &str, flag: &str) -> Result<Date> {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .with_context(|| format!("{flag} {s:?}: not YYYY-MM-DD"))
}

/// Every `*.json` record in `dir`.
fn records(dir: &Path) -> Result<Vec<StoreEvidence>> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for p in paths {
        out.push(evidence::load(&p).with_context(|| p.display().to_string())?);
    }
    Ok(out)
}

pub fn audit(cmd: AuditCmd) -> Result<ExitCode> {
    match cmd {
        AuditCmd::Collect(a) => {
            let release = match (&a.release, &a.agent_state) {
                (Some(r), _) => Some(r.clone()),
                (None, Some(dir)) => applied_release(dir)?,
                (None, None) => None,
            };
            let src = a.observe.sources(&a.store, &a.terraform, &a.dir, release);
            let rec = evidence::collect(&src, &Apis::from_process_env())?;
            edge_fleet::files::write_json(&a.out, &rec)?;
            summary(&rec);
        }
        AuditCmd::Write(a) => {
            let date = match &a.date {
                Some(d) => day_arg(d, "--date")?,
                None => OffsetDateTime::now_utc().date(),
            };
            let keys = a.keys.iter().map(|p| secret(p)).collect::<Result<Vec<_>>>()?;
            let recs = match (&a.records, &a.database) {
                (Some(dir), _) => records(dir)?,
                (None, Some(db)) => {
                    runtime()?.block_on(async { edge_fleet::db::Db::connect(db).await?.evidence_on(date).await })?
                }
                (None, None) => bail!("--records or --database holds the day's records"),
            };
            let (inventory, decisions) = match (&a.inventory, &a.database) {
                (Some(p), _) => {
                    let text = String::from_utf8(read(p)?).with_context(|| p.display().to_string())?;
                    let inv = text
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(String::from)
                        .collect();
                    let decisions = match &a.database {
                        Some(db) => runtime()?
                            .block_on(async { edge_fleet::db::Db::connect(db).await?.decisions_on(date).await })?,
                        None => Vec::new(),
                    };
                    (inv, decisions)
                }
                (None, Some(db)) => runtime()?.block_on(async {
                    let db = edge_fleet::db::Db::connect(db).await?;
                    let inv = db.stores().await?.into_iter().map(|s| s.name).collect();
                    Ok::<_, anyhow::Error>((inv, db.decisions_on(date).await?))
                })?,
                (None, None) => bail!("--inventory or --database names the stores that must have evidence"),
            };
            let mut missing_reasons = BTreeMap::new();
            for m in &a.missing {
                let (s, r) = m.split_once('=').with_context(|| format!("--missing {m:?}: STORE=REASON"))?;
                missing_reasons.insert(s.to_string(), r.to_string());
            }
            let patch = match &a.releases {
                Some(p) => {
                    let cat = drift::parse_catalogue(&read(p)?)?;
                    let running: Vec<(String, Option<String>)> =
                        recs.iter().map(|r| (r.store.clone(), r.release.clone())).collect();
                    Some(drift::table(&cat, &running, OffsetDateTime::now_utc(), a.slo.slo()))
                }
                None => None,
            };
            let n = recs.len();
            let input = DayInput { date, inventory, records: recs, missing_reasons, decisions, patch };
            let refs: Vec<&_> = keys.iter().collect();
            let path = audit::write_day(&a.dir, input, &refs, rfc3339(OffsetDateTime::now_utc()))?;
            println!("{}", path.display());
            eprintln!("{date}: {n} store record(s)");
        }
        AuditCmd::Verify(a) => {
            let trusted = public_keys(&a.trusted, "--trusted")?;
            let expect = Expect {
                since: a.since.as_deref().map(|s| day_arg(s, "--since")).transpose()?,
                until: a.until.as_deref().map(|s| day_arg(s, "--until")).transpose()?,
            };
            let v = audit::verify_dir(&a.dir, &trusted, a.threshold, &expect)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{} day(s) {} .. {}, signed by {:?}",
                    v.days,
                    v.first.as_deref().unwrap_or("-"),
                    v.last.as_deref().unwrap_or("-"),
                    v.signed_by
                );
                for p in &v.problems {
                    println!("PROBLEM {p}");
                }
                for f in &v.findings {
                    println!("finding {f}");
                }
                println!("{}", if v.problems.is_empty() { "chain OK" } else { "chain NOT OK" });
            }
            return Ok(if v.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn applied_release(state_dir: &Path) -> Result<Option<String>> {
    let applied: Option<edge_fleet::channel::Accepted> = edge_fleet::files::read_json(&state_dir.join("applied.json"))?;
    Ok(applied.map(|x| x.release))
}

/// One line on stderr about a record just collected.
fn summary(rec: &StoreEvidence) {
    eprintln!(
        "{}: state {} ({} resources, {} sensitive values left out), drift {}, {} unobserved",
        rec.store,
        &rec.state.sha256[..12],
        rec.state.resources,
        rec.state.sensitive_values,
        match &rec.drift.error {
            Some(e) => format!("unknown ({e})"),
            None => format!("{} change(s)", rec.drift.changes.len()),
        },
        rec.unobserved.len()
    );
}

/// `agent evidence`: collect in the agent's working directory, keep, sign, post.
pub fn agent_evidence(a: AgentEvidenceArgs) -> Result<ExitCode> {
    let at = &a.at;
    let key = secret(&at.key)?;
    let src = a.observe.sources(&at.store, &at.terraform, &at.state_dir.join("work"), applied_release(&at.state_dir)?);
    let rec = evidence::collect(&src, &Apis::from_process_env())?;
    summary(&rec);
    let day = rec.collected_at.get(..10).unwrap_or("unknown").to_string();
    let env = evidence::sign_record(&rec, &key);
    let kept = at.state_dir.join("evidence").join(format!("{day}.json"));
    edge_fleet::files::write_atomic(&kept, &env.to_json())?;
    let url = format!("{}/v1/evidence", a.at.hub.trim_end_matches('/'));
    let resp =
        hub_client(a.at.hub_ca.as_deref())?.post(&url).json(&env).send().with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        bail!("POST {url}: {status}: {} (kept in {})", resp.text().unwrap_or_default(), kept.display());
    }
    println!("{}", kept.display());
    Ok(ExitCode::SUCCESS)
}

/// `restore-test`: one line per guest; exit 1 if any test failed.
pub fn restore_test(a: RestoreTestArgs) -> Result<ExitCode> {
    use edge_fleet::restore::RestoreOutcome;
    let tests = runtime()?.block_on(edge_fleet::restore::run_cli(&a.restore))?;
    if let Some(out) = &a.out {
        edge_fleet::files::write_json(out, &tests)?;
    }
    let mut failed = false;
    for t in &tests {
        let what = match &t.outcome {
            RestoreOutcome::Passed => format!("passed: RTO {:.1} s, RPO {} s", t.rto_s.unwrap_or_default(), t.rpo_s),
            RestoreOutcome::NoBackup => "no backup to restore".to_string(),
            RestoreOutcome::Failed { step, reason } => {
                failed = true;
                format!("FAILED at {step}: {reason}")
            }
        };
        println!("{} {}: {what}", t.guest, t.snapshot);
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

pub fn drift_cmd(a: DriftArgs) -> Result<ExitCode> {
    let cat = drift::parse_catalogue(&read(&a.releases)?)?;
    let running: Vec<(String, Option<String>)> = match (&a.records, &a.audit) {
        (Some(dir), _) => records(dir)?.into_iter().map(|r| (r.store, r.release)).collect(),
        (None, Some(dir)) => {
            let trusted = public_keys(&a.trusted, "--trusted")?;
            let day = audit::latest_verified(dir, &trusted)?;
            day.stores
                .into_iter()
                .map(|r| (r.store, r.release))
                .chain(day.missing.into_iter().map(|m| (m.store, None)))
                .collect()
        }
        (None, None) => bail!("--records or --audit"),
    };
    let t = drift::table(&cat, &running, OffsetDateTime::now_utc(), a.slo.slo());
    if a.json {
        println!("{}", serde_json::to_string_pretty(&t)?);
    } else {
        print!("{}", drift::render(&t));
    }
    Ok(if t.breached() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

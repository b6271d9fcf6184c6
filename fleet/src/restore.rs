//! Restore tests: for each guest of a store (all, or a staggered weekly sample), its latest PBS
//! backup is restored into an isolated scratch VM — a new free vmid, `unique` MACs, its network
//! devices removed before it ever starts — which is started and checked (the QEMU guest agent
//! answers a ping; the guest has read from its restored disk), then stopped and destroyed.
//! Each test reports its RPO (now − the snapshot's backup time), its RTO (restore + start +
//! check, in seconds) and its outcome: passed, failed with the step and the reason, or no
//! backup. The scratch VM is destroyed whatever happened; a destroy that fails is reported.
//!
//! Everything goes through the provider's typed clients: no status codes or message texts are
//! read here, and every wait polls with backoff until a deadline.

use std::time::Duration;

use anyhow::Context;
use edge_provider::clients::pbs::{PbsClient, Snapshot};
use edge_provider::clients::poll::{poll_until, Backoff, PollError, Probe};
use edge_provider::clients::pve::{pbs_archive, AgentError, PveClient, RestoreRequest};
use edge_provider::clients::ApiErrorKind;
use edge_provider::provider::ApiConfig;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One guest's restore test.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RestoreTest {
    pub guest: u32,
    pub guest_name: Option<String>,
    /// `backup-type/backup-id/RFC3339` (`vm/100/2026-11-30T02:00:00Z`); empty without a backup.
    pub snapshot: String,
    /// The snapshot's backup time (epoch seconds); 0 without a backup.
    pub backup_time: i64,
    /// When the test started (RFC 3339, UTC).
    pub started_at: String,
    /// Recovery point: seconds from the backup to the test's start; -1 without a backup.
    pub rpo_s: i64,
    /// Recovery time: seconds for restore, start and check; only when all three succeeded.
    pub rto_s: Option<f64>,
    pub outcome: RestoreOutcome,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RestoreOutcome {
    Passed,
    /// `step`: one of the `STEP_*` names.
    Failed {
        step: String,
        reason: String,
    },
    NoBackup,
}

/// Finding a free vmid for the scratch VM.
pub const STEP_ALLOCATE: &str = "allocate";
/// The `qmrestore` task.
pub const STEP_RESTORE: &str = "restore";
/// Removing the network devices of the restored copy.
pub const STEP_ISOLATE: &str = "isolate";
/// The `qmstart` task.
pub const STEP_START: &str = "start";
/// The QEMU guest agent answering a ping.
pub const STEP_AGENT: &str = "agent";
/// The guest having read from its disk.
pub const STEP_DISK: &str = "disk";
/// Stopping the scratch VM.
pub const STEP_STOP: &str = "stop";
/// Destroying the scratch VM.
pub const STEP_DESTROY: &str = "destroy";

/// Which guests a run tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    /// `sample` guests per run, the window moving by `sample` each week (in vmid order,
    /// wrapping): every guest is tested once every ⌈guests / sample⌉ weeks.
    Staggered {
        week_index: u64,
        sample: usize,
    },
}

/// What a run needs to know about the store.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The node the scratch VMs are restored on and run.
    pub node: String,
    /// The nodes whose guests are tested (empty: `node`'s).
    pub guest_nodes: Vec<String>,
    /// The PVE storage (type `pbs`) the backups are read through.
    pub pbs_storage: String,
    /// Its PBS datastore, and namespace (root when `None`).
    pub datastore: String,
    pub namespace: Option<String>,
    /// Scratch VMs take the lowest free vmid from here on.
    pub scratch_vmid_from: u32,
    /// Where the scratch VM's disks go (default: where the backup had them).
    pub target_storage: Option<String>,
    pub selection: Selection,
    /// How long a restore, start, stop or destroy task may take.
    pub task_timeout: Duration,
    /// How long the guest agent may take to answer after the start.
    pub agent_timeout: Duration,
}

impl RestoreOptions {
    pub fn new(node: &str, pbs_storage: &str, datastore: &str) -> RestoreOptions {
        RestoreOptions {
            node: node.to_string(),
            guest_nodes: Vec::new(),
            pbs_storage: pbs_storage.to_string(),
            datastore: datastore.to_string(),
            namespace: None,
            scratch_vmid_from: 9000,
            target_storage: None,
            selection: Selection::All,
            task_timeout: Duration::from_secs(3600),
            agent_timeout: Duration::from_secs(300),
        }
    }
}

/// The guests `selection` picks out of `all` (sorted by vmid).
pub fn select<T: Clone>(all: &[T], selection: &Selection) -> Vec<T> {
    match selection {
        Selection::All => all.to_vec(),
        Selection::Staggered { week_index, sample } => {
            if all.is_empty() || *sample == 0 {
                return Vec::new();
            }
            let n = all.len();
            let start = ((*week_index % n as u64) * (*sample as u64 % n as u64) % n as u64) as usize;
            (0..(*sample).min(n)).map(|i| all[(start + i) % n].clone()).collect()
        }
    }
}

fn rfc3339_now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
}

/// Runs the restore tests of `opts` one guest after the other. Fails as a whole only when
/// the guests or the snapshots cannot be listed.
pub async fn run(
    pve: &PveClient,
    pbs: &PbsClient,
    opts: &RestoreOptions,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<RestoreTest>> {
    let nodes = if opts.guest_nodes.is_empty() { vec![opts.node.clone()] } else { opts.guest_nodes.clone() };
    let mut guests = Vec::new();
    for n in &nodes {
        guests.extend(pve.guests(n).await.with_context(|| format!("listing the guests of {n}"))?);
    }
    guests.sort_by_key(|g| g.vmid);
    guests.dedup_by_key(|g| g.vmid);
    let snapshots = pbs
        .snapshots(&opts.datastore, opts.namespace.as_deref())
        .await
        .with_context(|| format!("listing the snapshots of datastore {}", opts.datastore))?
        .with_context(|| format!("PBS has no datastore {}", opts.datastore))?;
    let mut out = Vec::new();
    for g in select(&guests, &opts.selection) {
        let latest = latest_snapshot(&snapshots, g.vmid);
        let test = match latest {
            None => RestoreTest {
                guest: g.vmid,
                guest_name: g.name.clone(),
                snapshot: String::new(),
                backup_time: 0,
                started_at: rfc3339_now(),
                rpo_s: -1,
                rto_s: None,
                outcome: RestoreOutcome::NoBackup,
            },
            Some(time) => test_one(pve, opts, g.vmid, g.name.clone(), time, stop).await,
        };
        tracing::info!(guest = test.guest, outcome = ?test.outcome, rpo_s = test.rpo_s, rto_s = ?test.rto_s, "restore test");
        out.push(test);
    }
    Ok(out)
}

/// The backup time of the newest finished snapshot of `vm/<vmid>`.
fn latest_snapshot(snapshots: &[Snapshot], vmid: u32) -> Option<i64> {
    let id = vmid.to_string();
    snapshots
        .iter()
        .filter(|s| s.backup_type.as_deref() == Some("vm") && s.backup_id.as_deref() == Some(id.as_str()))
        .filter(|s| s.finished())
        .filter_map(|s| s.backup_time)
        .max()
}

fn failed(step: &str, reason: impl std::fmt::Display) -> RestoreOutcome {
    RestoreOutcome::Failed { step: step.to_string(), reason: reason.to_string() }
}

async fn test_one(
    pve: &PveClient,
    opts: &RestoreOptions,
    vmid: u32,
    name: Option<String>,
    backup_time: i64,
    stop: &CancellationToken,
) -> RestoreTest {
    let started_at = rfc3339_now();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let snapshot = format!("vm/{vmid}/{}", edge_provider::clients::pve::rfc3339_utc(backup_time));
    let mut test = RestoreTest {
        guest: vmid,
        guest_name: name,
        snapshot,
        backup_time,
        started_at,
        rpo_s: now - backup_time,
        rto_s: None,
        outcome: RestoreOutcome::Passed,
    };
    let t0 = std::time::Instant::now();
    let scratch = match pve.next_free_vmid(Some(opts.scratch_vmid_from)).await {
        Ok(id) => id,
        Err(e) => {
            test.outcome = failed(STEP_ALLOCATE, e);
            return test;
        }
    };
    let archive = pbs_archive(&opts.pbs_storage, "vm", &vmid.to_string(), backup_time);
    let outcome = restore_and_check(pve, opts, scratch, &archive, stop).await;
    if outcome.is_ok() {
        test.rto_s = Some(t0.elapsed().as_secs_f64());
    }
    let cleanup = destroy_scratch(pve, opts, scratch, stop).await;
    test.outcome = match (outcome, cleanup) {
        (Ok(()), Ok(())) => RestoreOutcome::Passed,
        (Ok(()), Err((step, reason))) => RestoreOutcome::Failed { step: step.into(), reason },
        (Err((step, reason)), Ok(())) => RestoreOutcome::Failed { step: step.into(), reason },
        (Err((step, reason)), Err((cstep, creason))) => RestoreOutcome::Failed {
            step: step.into(),
            reason: format!("{reason}; then the scratch VM {scratch} was not cleaned up ({cstep}): {creason}"),
        },
    };
    test
}

type StepResult = Result<(), (&'static str, String)>;

/// Restore into `scratch`, cut its network, start it, and check it.
async fn restore_and_check(
    pve: &PveClient,
    opts: &RestoreOptions,
    scratch: u32,
    archive: &str,
    stop: &CancellationToken,
) -> StepResult {
    let node = opts.node.as_str();
    let req = RestoreRequest {
        vmid: scratch,
        archive: archive.to_string(),
        storage: opts.target_storage.clone(),
        unique: Some(true),
        start: Some(false),
    };
    let deadline = Instant::now() + opts.task_timeout;
    pve.restore_guest_and_wait(node, &req, deadline, stop).await.map_err(|e| (STEP_RESTORE, e.to_string()))?;

    let isolate = async {
        let nets = pve.guest_networks(node, scratch).await?;
        pve.remove_guest_network(node, scratch, &nets).await?;
        pve.guest_networks(node, scratch).await
    };
    match isolate.await {
        Ok(left) if left.is_empty() => {}
        Ok(left) => return Err((STEP_ISOLATE, format!("network devices still configured: {}", left.join(", ")))),
        Err(e) => return Err((STEP_ISOLATE, e.to_string())),
    }

    let start = async {
        let upid = pve.start_guest(node, scratch).await?;
        pve.wait_task(&upid, Instant::now() + opts.task_timeout, stop).await
    };
    start.await.map_err(|e| (STEP_START, e.to_string()))?;

    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5)).growth(3, 2);
    let agent_deadline = Instant::now() + opts.agent_timeout;
    let what = format!("the guest agent of VM {scratch}");
    let answered = poll_until(agent_deadline, stop, &what, backoff, || async {
        match pve.agent_ping(node, scratch).await {
            Ok(()) => Probe::Ready(()),
            Err(e @ AgentError::NotRunning { .. }) => Probe::NotYet(e.to_string()),
            Err(e) => Probe::Fail(e),
        }
    })
    .await;
    match answered {
        Ok(()) => {}
        Err(PollError::Timeout { after, last }) => {
            return Err((STEP_AGENT, format!("no answer within {:.0} s: {last}", after.as_secs_f64())))
        }
        Err(PollError::Cancelled) => return Err((STEP_AGENT, "cancelled".into())),
        Err(PollError::Failed(e)) => return Err((STEP_AGENT, e.to_string())),
    }

    match pve.guest_status(node, scratch).await {
        Ok(s) if s.running() && s.diskread.unwrap_or(0) > 0 => Ok(()),
        Ok(s) if !s.running() => Err((STEP_DISK, format!("VM {scratch} is {}", s.status.unwrap_or_default()))),
        Ok(_) => Err((STEP_DISK, format!("VM {scratch} has read nothing from its disks"))),
        Err(e) => Err((STEP_DISK, e.to_string())),
    }
}

/// Stops and destroys the scratch VM if it exists (a failed restore leaves none), then checks
/// that the node's guest list no longer shows it.
async fn destroy_scratch(pve: &PveClient, opts: &RestoreOptions, scratch: u32, stop: &CancellationToken) -> StepResult {
    let node = opts.node.as_str();
    let present = pve.guest(node, scratch).await.map_err(|e| (STEP_DESTROY, e.to_string()))?;
    let Some(entry) = present else { return Ok(()) };
    if entry.running() {
        let stopped = async {
            let upid = pve.stop_guest(node, scratch).await?;
            pve.wait_task(&upid, Instant::now() + opts.task_timeout, stop).await
        };
        match stopped.await {
            Ok(()) => {}
            Err(e) if e.is(ApiErrorKind::NotFound) => return Ok(()),
            Err(e) => return Err((STEP_STOP, e.to_string())),
        }
    }
    let destroyed = async {
        if let Some(upid) = pve.destroy_guest(node, scratch).await? {
            pve.wait_task(&upid, Instant::now() + opts.task_timeout, stop).await?;
        }
        pve.guest(node, scratch).await
    };
    match destroyed.await {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err((STEP_DESTROY, format!("VM {scratch} is still listed after its destroy"))),
        Err(e) => Err((STEP_DESTROY, e.to_string())),
    }
}

/// `edge-fleet restore-test`: where the store's PVE and PBS are and what to test. Endpoints,
/// fingerprints and CAs come from flags or the provider's variables (`EDGE_PVE_ENDPOINT`,
/// `EDGE_PVE_TLS_FINGERPRINT`, `EDGE_PVE_CA_PEM`, `EDGE_PBS_*`); the secrets only from the
/// provider's variables (`EDGE_PVE_API_TOKEN` or `EDGE_PVE_ROOT_PASSWORD`,
/// `EDGE_PBS_API_TOKEN`), as the agent's health checks take them, so no secret shows in a
/// process list.
#[derive(clap::Args, Clone, Debug)]
pub struct RestoreArgs {
    /// PVE API endpoint (`https://10.1.0.11:8006`).
    #[arg(long, env = "EDGE_PVE_ENDPOINT")]
    pub pve_endpoint: Option<String>,
    /// SHA-256 fingerprint of the PVE node's certificate (`AB:CD:…`).
    #[arg(long, env = "EDGE_PVE_TLS_FINGERPRINT")]
    pub pve_tls_fingerprint: Option<String>,
    /// A PEM file with the CA that signs the PVE node's certificate.
    #[arg(long)]
    pub pve_ca_file: Option<std::path::PathBuf>,
    /// PBS API endpoint (`https://10.1.0.20:8007`).
    #[arg(long, env = "EDGE_PBS_ENDPOINT")]
    pub pbs_endpoint: Option<String>,
    #[arg(long, env = "EDGE_PBS_TLS_FINGERPRINT")]
    pub pbs_tls_fingerprint: Option<String>,
    #[arg(long)]
    pub pbs_ca_file: Option<std::path::PathBuf>,
    /// The node the scratch VMs run on.
    #[arg(long)]
    pub node: String,
    /// The nodes whose guests are tested (comma-separated; default: `--node`).
    #[arg(long, value_delimiter = ',')]
    pub guest_nodes: Vec<String>,
    /// The PVE storage (type `pbs`) the backup job writes to.
    #[arg(long)]
    pub pbs_storage: String,
    /// Its PBS datastore.
    #[arg(long)]
    pub datastore: String,
    #[arg(long)]
    pub namespace: Option<String>,
    /// Scratch VMs take the lowest free vmid from here on.
    #[arg(long, default_value_t = 9000)]
    pub scratch_vmid_from: u32,
    /// Where the scratch VMs' disks go (default: where the backup had them).
    #[arg(long)]
    pub target_storage: Option<String>,
    /// Test only this many guests this run, moving on by as many each week.
    #[arg(long)]
    pub sample: Option<usize>,
    /// The week the staggered sample is for (default: ISO weeks since the epoch).
    #[arg(long)]
    pub week_index: Option<u64>,
    #[arg(long, default_value_t = 3600)]
    pub task_timeout_s: u64,
    #[arg(long, default_value_t = 300)]
    pub agent_timeout_s: u64,
}

impl RestoreArgs {
    pub fn options(&self) -> RestoreOptions {
        let selection = match self.sample {
            Some(sample) => Selection::Staggered {
                week_index: self
                    .week_index
                    .unwrap_or_else(|| (OffsetDateTime::now_utc().unix_timestamp() / (7 * 86_400)) as u64),
                sample,
            },
            None => Selection::All,
        };
        RestoreOptions {
            node: self.node.clone(),
            guest_nodes: self.guest_nodes.clone(),
            pbs_storage: self.pbs_storage.clone(),
            datastore: self.datastore.clone(),
            namespace: self.namespace.clone(),
            scratch_vmid_from: self.scratch_vmid_from,
            target_storage: self.target_storage.clone(),
            selection,
            task_timeout: Duration::from_secs(self.task_timeout_s),
            agent_timeout: Duration::from_secs(self.agent_timeout_s),
        }
    }

    /// The PVE and PBS settings: the provider's variables, with the flags' endpoint, pin and
    /// CA over them.
    pub fn apis(&self, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<(ApiConfig, ApiConfig)> {
        let base = crate::health::Apis::from_env(env);
        let merge = |api: Option<ApiConfig>,
                     endpoint: &Option<String>,
                     fp: &Option<String>,
                     ca: &Option<std::path::PathBuf>,
                     what: &str|
         -> anyhow::Result<ApiConfig> {
            let mut a = api.unwrap_or_default();
            if endpoint.is_some() {
                a.endpoint = endpoint.clone();
            }
            if fp.is_some() {
                a.tls_fingerprint = fp.clone();
            }
            if let Some(path) = ca {
                a.ca_pem = Some(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?);
            }
            anyhow::ensure!(
                a.endpoint.is_some(),
                "no {what} endpoint: --{what}-endpoint or EDGE_{}_ENDPOINT",
                what.to_uppercase()
            );
            Ok(a)
        };
        Ok((
            merge(base.pve, &self.pve_endpoint, &self.pve_tls_fingerprint, &self.pve_ca_file, "pve")?,
            merge(base.pbs, &self.pbs_endpoint, &self.pbs_tls_fingerprint, &self.pbs_ca_file, "pbs")?,
        ))
    }
}

/// `edge-fleet restore-test`: the restore tests of one store, without the agent.
pub async fn run_cli(args: &RestoreArgs) -> anyhow::Result<Vec<RestoreTest>> {
    let (pve, pbs) = args.apis(&|k| std::env::var(k).ok())?;
    let pve = PveClient::from_config(&pve).context("PVE client")?;
    let pbs = PbsClient::from_config(&pbs).context("PBS client")?;
    run(&pve, &pbs, &args.options(), &CancellationToken::new()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staggered_samples_cover_every_guest() {
        let all: Vec<u32> = (100..107).collect();
        assert_eq!(select(&all, &Selection::All), all);
        let weeks: Vec<Vec<u32>> =
            (0..4).map(|w| select(&all, &Selection::Staggered { week_index: w, sample: 2 })).collect();
        assert_eq!(weeks[0], [100, 101]);
        assert_eq!(weeks[1], [102, 103]);
        assert_eq!(weeks[3], [106, 100]);
        let seen: std::collections::BTreeSet<u32> = weeks.into_iter().flatten().collect();
        assert_eq!(seen.len(), all.len());
        assert_eq!(select(&all, &Selection::Staggered { week_index: 5, sample: 10 }).len(), 7);
        assert!(select::<u32>(&[], &Selection::Staggered { week_index: 1, sample: 2 }).is_empty());
    }

    #[test]
    fn outcomes_serialise_with_their_result() {
        let t = RestoreTest {
            guest: 100,
            guest_name: Some("web".into()),
            snapshot: "vm/100/2026-11-30T02:00:00Z".into(),
            backup_time: 1_700_000_000,
            started_at: "2026-12-01T08:00:00Z".into(),
            rpo_s: 21_600,
            rto_s: None,
            outcome: failed(STEP_AGENT, "no answer"),
        };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["outcome"], serde_json::json!({"result": "failed", "step": "agent", "reason": "no answer"}));
        assert_eq!(serde_json::to_value(RestoreOutcome::NoBackup).unwrap(), serde_json::json!({"result": "no_backup"}));
        assert_eq!(serde_json::from_value::<RestoreTest>(v).unwrap(), t);
    }
}

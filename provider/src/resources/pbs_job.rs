//! `edge_pbs_job`: one resource for a store's whole backup chain. The kind is chosen by exactly
//! one nested block:
//! - `backup {}` → a PVE vzdump job (`/cluster/backup`) writing to a PBS storage,
//! - `sync {}`, `verify {}`, `prune {}` → PBS `/config/sync|verify|prune`,
//! - `gc {}` → the datastore's `gc-schedule` (`/config/datastore/{name}`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clients::pbs::{JobConfig, JobKind, PbsClient, PbsFeature, PruneJob, SyncJob, VerifyJob};
use crate::clients::pve::{BackupJob, PruneBackups, PveClient, PveFeature};
use crate::clients::version::{Feature, Version};
use crate::clients::{self, ApiErrorKind, ClientError};
use crate::framework::{
    Applied, AttrPath, Attribute, Block, Ctx, Diagnostics, Done, IdentityAttribute, IdentitySchema, ImportRequest,
    NestedBlock, PlanCtx, Resource, Schema, Type, Value,
};
use crate::path;
use crate::resources::calendar;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    pub storage: Option<String>,
    pub node: Option<String>,
    pub mode: Option<String>,
    pub compress: Option<String>,
    pub prune_backups: Option<BTreeMap<String, i64>>,
    pub notes_template: Option<String>,
    pub vmids: Option<Vec<i64>>,
    pub all: Option<bool>,
    pub pool: Option<String>,
    pub exclude: Option<Vec<i64>>,
    pub repeat_missed: Option<bool>,
    pub notification_mode: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    pub store: Option<String>,
    pub ns: Option<String>,
    pub remote: Option<String>,
    pub remote_store: Option<String>,
    pub remote_ns: Option<String>,
    pub sync_direction: Option<String>,
    pub remove_vanished: Option<bool>,
    pub group_filter: Option<Vec<String>>,
    pub transfer_last: Option<i64>,
    pub rate_in: Option<String>,
    pub rate_out: Option<String>,
    pub burst_in: Option<String>,
    pub burst_out: Option<String>,
    pub max_depth: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    pub store: Option<String>,
    pub ns: Option<String>,
    pub ignore_verified: Option<bool>,
    pub outdated_after: Option<i64>,
    pub max_depth: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Prune {
    pub store: Option<String>,
    pub ns: Option<String>,
    pub keep_last: Option<i64>,
    pub keep_hourly: Option<i64>,
    pub keep_daily: Option<i64>,
    pub keep_weekly: Option<i64>,
    pub keep_monthly: Option<i64>,
    pub keep_yearly: Option<i64>,
    pub max_depth: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gc {
    pub store: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub id: Option<String>,
    pub kind: Option<String>,
    pub schedule: Option<String>,
    pub comment: Option<String>,
    pub disable: Option<bool>,
    pub backup: Option<Backup>,
    pub sync: Option<Sync>,
    pub verify: Option<Verify>,
    pub prune: Option<Prune>,
    pub gc: Option<Gc>,
    pub pve: Option<super::PveApi>,
}

const KINDS: [&str; 5] = ["backup", "sync", "verify", "prune", "gc"];
const PRUNE_KEYS: [&str; 7] =
    ["keep_all", "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"];

impl State {
    /// The kinds whose block is present.
    fn kinds(&self) -> Vec<&'static str> {
        let present = [
            self.backup.is_some(),
            self.sync.is_some(),
            self.verify.is_some(),
            self.prune.is_some(),
            self.gc.is_some(),
        ];
        KINDS.iter().zip(present).filter(|(_, p)| *p).map(|(k, _)| *k).collect()
    }
    fn kind(&self) -> Option<&'static str> {
        match self.kinds().as_slice() {
            [one] => Some(one),
            _ => self.kind.as_deref().and_then(|k| KINDS.iter().find(|x| **x == k).copied()),
        }
    }
}

pub struct PbsJob;

#[async_trait]
impl Resource for PbsJob {
    type State = State;

    fn type_name(&self) -> &'static str {
        "edge_pbs_job"
    }

    fn schema(&self) -> Schema {
        let s = |n: &str, d: &str| Attribute::optional(n, Type::String).describe(d);
        let num = |n: &str, d: &str| Attribute::optional(n, Type::Number).describe(d);
        let b = |n: &str, d: &str| Attribute::optional(n, Type::Bool).describe(d);
        let store = Attribute::required("store", Type::String).describe("PBS datastore.");
        let ns = s("ns", "Namespace inside the datastore (`a/b`, at most 8 levels).");
        let max_depth = num("max_depth", "How many namespace levels below `ns` to include (0..7).");
        let mut prune = Block::new("A PBS prune job (`/config/prune`).").attr(store.clone()).attr(ns.clone());
        for k in &PRUNE_KEYS[1..] {
            prune = prune.attr(num(k, &format!("Keep this many {} backups (1 or more).", &k[5..])));
        }
        prune = prune.attr(max_depth.clone());
        Schema::new(
            0,
            Block::new("A backup-chain job of a store: the PVE vzdump job that writes to PBS, or a PBS sync, verify, prune or garbage-collection schedule. Exactly one of the blocks `backup`, `sync`, `verify`, `prune`, `gc` chooses the kind.")
                .attr(Attribute::required("id", Type::String).replace().describe("Job ID (for `gc`: the datastore name). Changing it replaces the job."))
                .attr(Attribute::computed("kind", Type::String).describe("`backup`, `sync`, `verify`, `prune` or `gc`, from the block used."))
                .attr(Attribute::required("schedule", Type::String).describe("Calendar event, e.g. `daily`, `mon..fri 02:00`, `*-*-* 02:30`, `sat *-1..7 15:00`."))
                .attr(s("comment", "Free text (not for `gc`)."))
                .attr(Attribute::optional("disable", Type::Bool).default(Value::Bool(false)).describe("Keep the job but do not run it (`backup` and `prune` only; PBS has no switch for the others)."))
                .attr(super::pve_api_attribute("a `backup` job"))
                .block(NestedBlock::single("backup", Block::new("A PVE backup job (`/cluster/backup`) writing to a storage, normally of type `pbs`.")
                    .attr(Attribute::required("storage", Type::String).describe("PVE storage ID to back up to."))
                    .attr(s("node", "Only back up guests on this node."))
                    .attr(s("mode", "`snapshot`, `suspend` or `stop`."))
                    .attr(s("compress", "`0`, `1`, `gzip`, `lzo` or `zstd` (PBS storages compress themselves)."))
                    .attr(Attribute::optional("prune_backups", Type::map(Type::Number)).describe("Retention, keys `keep_last`, `keep_hourly`, `keep_daily`, `keep_weekly`, `keep_monthly`, `keep_yearly`, `keep_all`."))
                    .attr(s("notes_template", "Notes for each backup, e.g. `{{guestname}}`."))
                    .attr(Attribute::optional("vmids", Type::list(Type::Number)).describe("Guests to back up (exactly one of `vmids`, `all`, `pool`)."))
                    .attr(b("all", "Back up all guests."))
                    .attr(s("pool", "Back up the guests of this PVE pool."))
                    .attr(Attribute::optional("exclude", Type::list(Type::Number)).describe("Guests to leave out (with `all` or `pool`)."))
                    .attr(b("repeat_missed", "Run a missed schedule as soon as possible."))
                    .attr(s("notification_mode", "`auto`, `legacy-sendmail` or `notification-system`."))))
                .block(NestedBlock::single("sync", Block::new("A PBS sync job (`/config/sync`): pull from or push to a remote, or between local datastores when `remote` is left out.")
                    .attr(store.clone()).attr(ns.clone())
                    .attr(s("remote", "Remote (`/config/remote`); leave out for a local sync."))
                    .attr(Attribute::required("remote_store", Type::String).describe("Datastore on the remote (or the local source)."))
                    .attr(s("remote_ns", "Namespace on the remote."))
                    .attr(s("sync_direction", "`pull` (default) or `push` (PBS 3.3 or later, with `remote`)."))
                    .attr(b("remove_vanished", "Delete local groups/snapshots that vanished on the source."))
                    .attr(Attribute::optional("group_filter", Type::list(Type::String)).describe("Filters like `type:vm`, `group:vm/100`, `regex:…`, optionally prefixed `exclude:`."))
                    .attr(num("transfer_last", "Only the newest N snapshots of each group (1 or more)."))
                    .attr(s("rate_in", "Inbound rate limit, e.g. `10MiB`.")).attr(s("rate_out", "Outbound rate limit."))
                    .attr(s("burst_in", "Inbound burst.")).attr(s("burst_out", "Outbound burst."))
                    .attr(max_depth.clone())))
                .block(NestedBlock::single("verify", Block::new("A PBS verification job (`/config/verify`).")
                    .attr(store.clone()).attr(ns)
                    .attr(b("ignore_verified", "Skip snapshots verified recently (see `outdated_after`)."))
                    .attr(num("outdated_after", "Days after which a verification is stale (0 or more)."))
                    .attr(max_depth)))
                .block(NestedBlock::single("prune", prune))
                .block(NestedBlock::single("gc", Block::new("The datastore's garbage-collection schedule. `id` names the datastore.")
                    .attr(Attribute::optional_computed("store", Type::String).describe("The datastore; defaults to `id` and must equal it.")))),
        )
    }

    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(IdentitySchema {
            version: 0,
            attributes: vec![
                IdentityAttribute {
                    name: "kind".into(),
                    description: "backup, sync, verify, prune or gc.".into(),
                    required_for_import: true,
                },
                IdentityAttribute {
                    name: "id".into(),
                    description: "Job ID (gc: datastore).".into(),
                    required_for_import: true,
                },
            ],
        })
    }

    fn identity(&self, s: &State) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([("kind".to_string(), s.kind()?.to_string()), ("id".to_string(), s.id.clone()?)]))
    }

    fn validate(&self, c: &State, d: &mut Diagnostics) {
        validate_job(c, d);
    }

    async fn modify_plan(&self, ctx: &Ctx, plan: &mut PlanCtx<State>) -> Result<(), Diagnostics> {
        let Some(kind) = plan.config.kind() else { return Ok(()) };
        plan.set("kind", &kind)?;
        if kind == "sync" {
            refuse_at_plan(ctx, &plan.config).await?;
        }
        if kind == "backup" {
            refuse_backup_at_plan(ctx, &plan.config).await?;
        }
        if let Some(prior) = plan.prior.clone() {
            if prior.kind() != Some(kind) {
                plan.require_replace(AttrPath::root(kind));
            }
            // A gc schedule belongs to its datastore: another datastore is another object.
            if kind == "gc" {
                let planned = plan.planned()?;
                let before = prior.gc.as_ref().and_then(|g| g.store.clone());
                let after = planned.gc.as_ref().and_then(|g| g.store.clone());
                if after.is_some() && before != after {
                    plan.require_replace(path!["gc", "store"]);
                }
            }
        }
        Ok(())
    }

    async fn create(&self, ctx: &Ctx, planned: State, _config: &State) -> Applied<State> {
        Ok(self.create_job(ctx, planned).await?)
    }

    async fn read(&self, ctx: &Ctx, state: State) -> Result<Done<Option<State>>, Diagnostics> {
        self.read_job(ctx, state).await.map(Done::from)
    }

    async fn update(&self, ctx: &Ctx, prior: State, planned: State, _config: &State) -> Applied<State> {
        Ok(self.update_job(ctx, prior, planned).await?.into())
    }

    async fn delete(&self, ctx: &Ctx, prior: State) -> Result<Done<()>, Diagnostics> {
        self.delete_job(ctx, prior).await.map(Done::from)
    }

    async fn import(&self, _ctx: &Ctx, req: ImportRequest) -> Result<Done<State>, Diagnostics> {
        import_job(req).map(Done::from)
    }
}

impl PbsJob {
    async fn create_job(&self, ctx: &Ctx, planned: State) -> Result<Done<State>, Diagnostics> {
        let mut s = planned;
        let kind = s.kind().ok_or_else(no_kind)?;
        let id = s.id.clone().ok_or_else(|| Diagnostics::at(path!["id"], "Missing id", "id must be known at apply"))?;
        s.kind = Some(kind.to_string());
        match kind {
            "backup" => {
                let pve = pve(ctx, &s)?;
                check_pve_release(&pve, &s).await?;
                if pve
                    .backup_job(&id)
                    .await
                    .map_err(|e| api_diag("Cannot read PVE backup jobs", "backup", e))?
                    .is_some()
                {
                    return self.adopt_or_refuse(ctx, s, kind, &id).await;
                }
                let job = backup_to_api(&s);
                match pve.backup_job_create(&job).await {
                    // A repeat after a 5xx whose first attempt went through (it was absent above).
                    Ok(()) | Err(ClientError::Api { kind: ApiErrorKind::AlreadyExists, .. }) => {}
                    Err(e) => return Err(api_diag("Cannot create the PVE backup job", "backup", e)),
                }
            }
            "gc" => {
                let pbs = pbs(ctx)?;
                let store = gc_store(&s);
                let ds = pbs.datastore(&store).await.map_err(|e| api_diag("Cannot read the datastore", "gc", e))?;
                if ds.is_none() {
                    return Err(Diagnostics::at(
                        path!["gc", "store"],
                        "No such datastore",
                        format!("PBS has no datastore {store:?}"),
                    ));
                }
                pbs.set_gc_schedule(&store, s.schedule.as_deref())
                    .await
                    .map_err(|e| api_diag("Cannot set the gc schedule", "gc", e))?;
                s.gc = Some(Gc { store: Some(store) });
            }
            _ => {
                let pbs = pbs(ctx)?;
                check_release(&pbs, &s).await?;
                let body = pbs_body(&s);
                if pbs.job_exists(body.kind(), &id).await.map_err(|e| api_diag("Cannot read PBS jobs", kind, e))? {
                    return self.adopt_or_refuse(ctx, s, kind, &id).await;
                }
                match pbs.job_create(&body).await {
                    // A repeat after a 5xx whose first attempt went through (it was absent above).
                    Ok(()) | Err(ClientError::Api { kind: ApiErrorKind::AlreadyExists, .. }) => {}
                    Err(e) => return Err(api_diag(&format!("Cannot create the PBS {kind} job"), kind, e)),
                }
            }
        }
        Ok(s.into())
    }

    async fn read_job(&self, ctx: &Ctx, state: State) -> Result<Option<State>, Diagnostics> {
        let kind = state.kind().ok_or_else(no_kind)?;
        let id = state.id.clone().unwrap_or_default();
        let mut s = state;
        s.kind = Some(kind.to_string());
        match kind {
            "backup" => {
                let Some(job) = pve(ctx, &s)?
                    .backup_job(&id)
                    .await
                    .map_err(|e| api_diag("Cannot read PVE backup jobs", "backup", e))?
                else {
                    return Ok(None);
                };
                backup_from_api(&mut s, job);
            }
            "gc" => {
                let store = gc_store(&s);
                let Some(ds) =
                    pbs(ctx)?.datastore(&store).await.map_err(|e| api_diag("Cannot read the datastore", "gc", e))?
                else {
                    return Ok(None);
                };
                let Some(sched) = ds.gc_schedule else { return Ok(None) };
                s.schedule = Some(sched);
                s.gc = Some(Gc { store: Some(store) });
                s.disable = Some(false);
            }
            "sync" => {
                let Some(j) = pbs(ctx)?
                    .job::<SyncJob>(&id)
                    .await
                    .map_err(|e| api_diag("Cannot read the PBS sync job", kind, e))?
                else {
                    return Ok(None);
                };
                s.schedule = j.schedule;
                s.comment = j.comment;
                s.disable = Some(false);
                // PBS shows a direction only when one was set; a job without one pulls (and
                // before 3.3 every job does), so a configured `pull` stays as it was.
                let was_pull = s.sync.as_ref().and_then(|b| b.sync_direction.clone()).filter(|d| d == "pull");
                s.sync = Some(Sync {
                    store: j.store,
                    ns: j.ns,
                    remote: j.remote,
                    remote_store: j.remote_store,
                    remote_ns: j.remote_ns,
                    sync_direction: j.sync_direction.or(was_pull),
                    remove_vanished: j.remove_vanished,
                    group_filter: j.group_filter,
                    transfer_last: j.transfer_last,
                    rate_in: j.rate_in,
                    rate_out: j.rate_out,
                    burst_in: j.burst_in,
                    burst_out: j.burst_out,
                    max_depth: j.max_depth,
                });
            }
            "verify" => {
                let Some(j) = pbs(ctx)?
                    .job::<VerifyJob>(&id)
                    .await
                    .map_err(|e| api_diag("Cannot read the PBS verify job", kind, e))?
                else {
                    return Ok(None);
                };
                s.schedule = j.schedule;
                s.comment = j.comment;
                s.disable = Some(false);
                s.verify = Some(Verify {
                    store: j.store,
                    ns: j.ns,
                    ignore_verified: j.ignore_verified,
                    outdated_after: j.outdated_after,
                    max_depth: j.max_depth,
                });
            }
            _ => {
                let Some(j) = pbs(ctx)?
                    .job::<PruneJob>(&id)
                    .await
                    .map_err(|e| api_diag("Cannot read the PBS prune job", kind, e))?
                else {
                    return Ok(None);
                };
                s.schedule = j.schedule;
                s.comment = j.comment;
                s.disable = Some(j.disable.unwrap_or(false));
                s.prune = Some(Prune {
                    store: j.store,
                    ns: j.ns,
                    keep_last: j.keep_last,
                    keep_hourly: j.keep_hourly,
                    keep_daily: j.keep_daily,
                    keep_weekly: j.keep_weekly,
                    keep_monthly: j.keep_monthly,
                    keep_yearly: j.keep_yearly,
                    max_depth: j.max_depth,
                });
            }
        }
        Ok(Some(s))
    }

    async fn update_job(&self, ctx: &Ctx, prior: State, planned: State) -> Result<State, Diagnostics> {
        let kind = planned.kind().ok_or_else(no_kind)?;
        let id = planned.id.clone().unwrap_or_default();
        let mut s = planned;
        s.kind = Some(kind.to_string());
        match kind {
            "backup" => {
                let new = backup_to_api(&s);
                let delete = backup_to_api(&prior).removed_in(&new);
                let pve = pve(ctx, &s)?;
                check_pve_release(&pve, &s).await?;
                pve.backup_job_update(&id, &new, &delete)
                    .await
                    .map_err(|e| api_diag("Cannot update the PVE backup job", "backup", e))?;
            }
            "gc" => {
                let store = gc_store(&s);
                pbs(ctx)?
                    .set_gc_schedule(&store, s.schedule.as_deref())
                    .await
                    .map_err(|e| api_diag("Cannot set the gc schedule", "gc", e))?;
                s.gc = Some(Gc { store: Some(store) });
            }
            _ => {
                let pbs = pbs(ctx)?;
                check_release(&pbs, &s).await?;
                let new = pbs_body(&s);
                let delete = pbs_body(&prior).removed_in(&new);
                pbs.job_update(&id, &new, &delete)
                    .await
                    .map_err(|e| api_diag(&format!("Cannot update the PBS {kind} job"), kind, e))?;
            }
        }
        Ok(s)
    }

    async fn delete_job(&self, ctx: &Ctx, prior: State) -> Result<(), Diagnostics> {
        let kind = prior.kind().ok_or_else(no_kind)?;
        let id = prior.id.clone().unwrap_or_default();
        match kind {
            "backup" => {
                // Gone already (deleted by hand, or a repeat after a 5xx) counts as deleted.
                pve(ctx, &prior)?
                    .backup_job_delete(&id)
                    .await
                    .map_err(|e| api_diag("Cannot delete the PVE backup job", "backup", e))?;
            }
            "gc" => {
                let pbs = pbs(ctx)?;
                let store = gc_store(&prior);
                if pbs.datastore(&store).await.map_err(|e| api_diag("Cannot read the datastore", "gc", e))?.is_some() {
                    pbs.set_gc_schedule(&store, None)
                        .await
                        .map_err(|e| api_diag("Cannot remove the gc schedule", "gc", e))?;
                }
            }
            _ => pbs(ctx)?
                .job_delete(job_kind(kind), &id)
                .await
                .map_err(|e| api_diag(&format!("Cannot delete the PBS {kind} job"), kind, e))?,
        }
        Ok(())
    }
}

fn import_job(req: ImportRequest) -> Result<State, Diagnostics> {
    let (kind, id) = match req {
        ImportRequest::Id(s) => s.split_once('/').map(|(k, i)| (k.to_string(), i.to_string())).ok_or_else(|| {
            Diagnostics::error(
                "Invalid import ID",
                format!("{s:?}: expected KIND/ID, e.g. sync/offsite (kinds: {})", KINDS.join(", ")),
            )
        })?,
        ImportRequest::Identity(m) => {
            let get = |k: &str| {
                m.get(k)
                    .cloned()
                    .ok_or_else(|| Diagnostics::error("Incomplete identity", format!("identity.{k} is required")))
            };
            (get("kind")?, get("id")?)
        }
    };
    if id.is_empty() {
        return Err(Diagnostics::error("Invalid import ID", "the job ID after KIND/ is empty"));
    }
    let mut s = State { id: Some(id.clone()), kind: Some(kind.clone()), disable: Some(false), ..Default::default() };
    match kind.as_str() {
        "backup" => s.backup = Some(Backup::default()),
        "sync" => s.sync = Some(Sync::default()),
        "verify" => s.verify = Some(Verify::default()),
        "prune" => s.prune = Some(Prune::default()),
        "gc" => s.gc = Some(Gc { store: Some(id) }),
        other => {
            return Err(Diagnostics::error(
                "Invalid import ID",
                format!("unknown kind {other:?}: use one of {}", KINDS.join(", ")),
            ))
        }
    }
    Ok(s)
}

fn no_kind() -> Diagnostics {
    Diagnostics::at(
        path!["backup"],
        "No job kind",
        "exactly one of the blocks backup, sync, verify, prune, gc must be set",
    )
}

/// What the PBS release lacks, refused with the attribute and the release that brought it:
/// push sync (`sync_direction = "push"`) came with PBS 3.3.0. `pull` works everywhere (before
/// 3.3 it is what every sync job does; the client leaves it out there).
async fn check_release(pbs: &PbsClient, s: &State) -> Result<(), Diagnostics> {
    if s.sync.as_ref().and_then(|b| b.sync_direction.as_deref()) != Some("push") {
        return Ok(());
    }
    let found = pbs.version().await.map_err(|e| api_diag("Cannot read the PBS version", "sync", e))?;
    let push = PbsFeature::SyncDirection;
    if push.available_in(found) {
        return Ok(());
    }
    Err(Diagnostics::at(
        path!["sync", "sync_direction"],
        "Push sync needs a newer PBS",
        format!(
            "sync_direction = \"push\" needs PBS {} or later; this PBS is {found}, whose sync jobs only pull. \
             To copy this datastore off site, drop this job and create a pull sync job on the remote PBS that \
             reads from this one (see the edge_pbs_job docs, \"Proxmox versions\").",
            push.since()
        ),
    ))
}

/// [`check_release`] at plan time, where it can run: the PBS endpoint is configured and
/// answers, and `sync_direction` is known. Otherwise create and update check it before they
/// change anything.
async fn refuse_at_plan(ctx: &Ctx, config: &State) -> Result<(), Diagnostics> {
    let configured = ctx.clients.pbs.as_ref().is_some_and(|c| c.endpoint.is_some());
    if !configured || config.sync.as_ref().and_then(|b| b.sync_direction.as_deref()) != Some("push") {
        return Ok(());
    }
    let Ok(pbs) = pbs(ctx) else { return Ok(()) };
    match pbs.version().await {
        Ok(_) => check_release(&pbs, config).await,
        // Not reachable yet (it may come up in the same apply): apply checks again.
        Err(e) => {
            tracing::debug!(error = %e, "PBS version not readable at plan time; checking at apply");
            Ok(())
        }
    }
}

/// What the PVE release lacks: backup jobs' `notification_mode` came with pve-manager 8.1.0
/// (commit 38035bdf); an older PVE refuses the parameter.
async fn check_pve_release(pve: &PveClient, s: &State) -> Result<(), Diagnostics> {
    if s.backup.as_ref().and_then(|b| b.notification_mode.as_deref()).is_none() {
        return Ok(());
    }
    let found = pve.version().await.map_err(|e| api_diag("Cannot read the PVE version", "backup", e))?;
    refuse_older_pve(PveFeature::BackupNotificationMode, found)
}

fn refuse_older_pve(f: PveFeature, found: Version) -> Result<(), Diagnostics> {
    if f.available_in(found) {
        return Ok(());
    }
    Err(Diagnostics::at(
        path!["backup", "notification_mode"],
        "notification_mode needs a newer PVE",
        format!(
            "notification_mode needs Proxmox VE {} or later; this node runs {found}. Leave it out: the job then \
             notifies as the PVE release does by default.",
            f.since()
        ),
    ))
}

/// [`check_pve_release`] at plan time where the PVE endpoint is configured and answers;
/// otherwise create and update check it before they change anything.
async fn refuse_backup_at_plan(ctx: &Ctx, config: &State) -> Result<(), Diagnostics> {
    let configured = ctx.clients.pve.as_ref().is_some_and(|c| c.endpoint.is_some())
        || config.pve.as_ref().is_some_and(|p| p.endpoint.is_some());
    if !configured || config.backup.as_ref().and_then(|b| b.notification_mode.as_deref()).is_none() {
        return Ok(());
    }
    let Ok(pve) = pve(ctx, config) else { return Ok(()) };
    match pve.version().await {
        Ok(found) => refuse_older_pve(PveFeature::BackupNotificationMode, found),
        Err(e) => {
            tracing::debug!(error = %e, "PVE version not readable at plan time; checking at apply");
            Ok(())
        }
    }
}

impl PbsJob {
    /// A job with this id is already there. If it is exactly the planned job, it is what an
    /// interrupted apply created before its state was saved (Terraform killed mid-run): adopt it,
    /// so the re-run converges with nothing duplicated. Anything else is somebody else's job.
    async fn adopt_or_refuse(
        &self,
        ctx: &Ctx,
        planned: State,
        kind: &str,
        id: &str,
    ) -> Result<Done<State>, Diagnostics> {
        let live = self.read_job(ctx, planned.clone()).await?;
        let same =
            live.as_ref().map(serde_json::to_value).transpose().ok().flatten() == serde_json::to_value(&planned).ok();
        if same {
            tracing::info!(kind, id, "job exists exactly as planned (an interrupted apply created it): adopting it");
            let mut w = Diagnostics::new();
            w.warn_at(
                path!["id"],
                "Adopted an existing job",
                format!("A {kind} job {id:?} was already there exactly as configured (what an interrupted apply leaves behind): it is managed now instead of created."),
            );
            return Ok(Done::with_warnings(planned, w));
        }
        Err(exists(kind, id))
    }
}

fn exists(kind: &str, id: &str) -> Diagnostics {
    Diagnostics::at(
        path!["id"],
        "Job already exists",
        format!("A {kind} job {id:?} already exists with other settings. To manage it, import it: terraform import <address> {kind}/{id}"),
    )
}

fn gc_store(s: &State) -> String {
    s.gc.as_ref().and_then(|g| g.store.clone()).or_else(|| s.id.clone()).unwrap_or_default()
}

fn job_kind(kind: &str) -> JobKind {
    match kind {
        "sync" => JobKind::Sync,
        "verify" => JobKind::Verify,
        _ => JobKind::Prune,
    }
}

fn pve(ctx: &Ctx, s: &State) -> Result<std::sync::Arc<PveClient>, Diagnostics> {
    super::pve_client(ctx, s.pve.as_ref(), "a backup job")
}

fn pbs(ctx: &Ctx) -> Result<std::sync::Arc<PbsClient>, Diagnostics> {
    let cfg = ctx.clients.pbs.as_ref().ok_or_else(|| {
        Diagnostics::error("PBS API not configured", "PBS jobs need the provider's pbs block or EDGE_PBS_* variables.")
    })?;
    clients::pbs(cfg).map_err(|e| Diagnostics::error("Cannot set up the PBS client", e.to_string()))
}

/// The PBS job the state describes (its kind from the block used).
fn pbs_body(s: &State) -> JobConfig {
    let id = s.id.clone();
    match s.kind() {
        Some("sync") => {
            let b = s.sync.clone().unwrap_or_default();
            JobConfig::Sync(SyncJob {
                id,
                store: b.store,
                ns: b.ns,
                remote: b.remote,
                remote_store: b.remote_store,
                remote_ns: b.remote_ns,
                sync_direction: b.sync_direction,
                remove_vanished: b.remove_vanished,
                group_filter: b.group_filter,
                transfer_last: b.transfer_last,
                rate_in: b.rate_in,
                rate_out: b.rate_out,
                burst_in: b.burst_in,
                burst_out: b.burst_out,
                max_depth: b.max_depth,
                schedule: s.schedule.clone(),
                comment: s.comment.clone(),
            })
        }
        Some("verify") => {
            let b = s.verify.clone().unwrap_or_default();
            JobConfig::Verify(VerifyJob {
                id,
                store: b.store,
                ns: b.ns,
                ignore_verified: b.ignore_verified,
                outdated_after: b.outdated_after,
                max_depth: b.max_depth,
                schedule: s.schedule.clone(),
                comment: s.comment.clone(),
            })
        }
        _ => {
            let b = s.prune.clone().unwrap_or_default();
            JobConfig::Prune(PruneJob {
                id,
                store: b.store,
                ns: b.ns,
                keep_last: b.keep_last,
                keep_hourly: b.keep_hourly,
                keep_daily: b.keep_daily,
                keep_weekly: b.keep_weekly,
                keep_monthly: b.keep_monthly,
                keep_yearly: b.keep_yearly,
                max_depth: b.max_depth,
                // Only sent when set: PBS's default is "enabled".
                disable: s.disable.filter(|d| *d),
                schedule: s.schedule.clone(),
                comment: s.comment.clone(),
            })
        }
    }
}

fn join_ids(v: &Option<Vec<i64>>) -> Option<String> {
    v.as_ref().filter(|v| !v.is_empty()).map(|v| v.iter().map(i64::to_string).collect::<Vec<_>>().join(","))
}

fn split_ids(s: Option<String>) -> Option<Vec<i64>> {
    s.map(|s| {
        s.split(|c: char| c == ',' || c == ';' || c.is_whitespace()).filter_map(|x| x.trim().parse().ok()).collect()
    })
}

fn backup_to_api(s: &State) -> BackupJob {
    let b = s.backup.clone().unwrap_or_default();
    BackupJob {
        id: s.id.clone(),
        schedule: s.schedule.clone(),
        storage: b.storage,
        node: b.node,
        mode: b.mode,
        compress: b.compress,
        prune_backups: b
            .prune_backups
            .as_ref()
            .filter(|m| !m.is_empty())
            .map(|m| PruneBackups(m.iter().map(|(k, v)| (k.replace('_', "-"), *v)).collect())),
        notes_template: b.notes_template,
        vmid: join_ids(&b.vmids),
        all: b.all,
        pool: b.pool,
        exclude: join_ids(&b.exclude),
        enabled: Some(s.disable != Some(true)),
        repeat_missed: b.repeat_missed,
        notification_mode: b.notification_mode,
        comment: s.comment.clone(),
    }
}

fn backup_from_api(s: &mut State, j: BackupJob) {
    s.schedule = j.schedule;
    s.comment = j.comment;
    s.disable = Some(j.enabled == Some(false));
    s.backup = Some(Backup {
        storage: j.storage,
        node: j.node,
        mode: j.mode,
        compress: j.compress,
        prune_backups: j.prune_backups.map(|p| p.0.into_iter().map(|(k, v)| (k.replace('-', "_"), v)).collect()),
        notes_template: j.notes_template,
        vmids: split_ids(j.vmid),
        all: j.all,
        pool: j.pool,
        exclude: split_ids(j.exclude),
        repeat_missed: j.repeat_missed,
        notification_mode: j.notification_mode,
    });
}

fn api_diag(summary: &str, block: &str, e: ClientError) -> Diagnostics {
    let mut d = Diagnostics::new();
    if let Some(errs) = e.param_errors() {
        for (param, msg) in errs {
            let attr = param.replace('-', "_");
            let p = match attr.as_str() {
                "id" | "schedule" | "comment" | "disable" => AttrPath::root(&attr),
                "vmid" => path![block, "vmids"],
                "enabled" => AttrPath::root("disable"),
                _ => path![block, attr.as_str()],
            };
            d.error_at(p, summary, format!("rejected {param}: {msg}"));
        }
    } else {
        d.push_error(summary, e.to_string());
    }
    d
}

// --- validation ------------------------------------------------------------------------------

fn is_pbs_id(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
        && s.len() <= 32
}

fn is_ns(s: &str) -> bool {
    s.is_empty() || (s.split('/').count() <= 8 && s.split('/').all(is_pbs_id) && s.len() <= 256)
}

fn is_pve_id(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic())
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-'))
        && s.len() >= 2
        && s.len() <= 64
}

fn is_storage_id(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic())
        && s.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
        && s.chars().last().is_some_and(|l| l.is_ascii_alphanumeric())
}

fn is_rate(s: &str) -> bool {
    let t = s.trim();
    let num_end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    if num_end == 0 || t[..num_end].parse::<f64>().is_err() {
        return false;
    }
    let unit = t[num_end..].trim();
    let unit = unit.strip_suffix("/s").unwrap_or(unit);
    ["", "B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB", "K", "M", "G", "T"].contains(&unit)
}

fn is_group_filter(s: &str) -> bool {
    let f = s.strip_prefix("exclude:").or_else(|| s.strip_prefix("include:")).unwrap_or(s);
    if let Some(t) = f.strip_prefix("type:") {
        return matches!(t, "vm" | "ct" | "host");
    }
    if let Some(g) = f.strip_prefix("group:") {
        return g.split_once('/').is_some_and(|(t, id)| matches!(t, "vm" | "ct" | "host") && !id.is_empty());
    }
    f.strip_prefix("regex:").is_some_and(|r| !r.is_empty())
}

fn validate_job(c: &State, d: &mut Diagnostics) {
    let kinds = c.kinds();
    if kinds.len() > 1 {
        // Point at the second block's main attribute (Terraform shows that line).
        let attr = if kinds[1] == "backup" { "storage" } else { "store" };
        d.error_at(
            path![kinds[1], attr],
            "More than one job kind",
            format!("blocks {} are set; a job has exactly one of backup, sync, verify, prune, gc", kinds.join(" and ")),
        );
    }
    if let Some(s) = &c.schedule {
        if let Err(e) = calendar::check(s) {
            d.error_at(path!["schedule"], "Invalid schedule", e);
        }
    }
    if let Some(cm) = &c.comment {
        let max = if c.backup.is_some() { 512 } else { 128 };
        if cm.len() > max || cm.chars().any(char::is_control) {
            d.error_at(path!["comment"], "Invalid comment", format!("at most {max} characters on one line"));
        }
    }
    let kind = kinds.first().copied();
    if let Some(id) = &c.id {
        let ok = if kind == Some("backup") { is_pve_id(id) } else { is_pbs_id(id) };
        if !ok {
            d.error_at(
                path!["id"],
                "Invalid job ID",
                format!("{id:?}: use letters, digits, '_', '-' (and '.' for PBS), starting with a letter (PVE) or letter/digit (PBS); PBS allows at most 32 characters"),
            );
        }
    }
    if c.disable == Some(true) && matches!(kind, Some("sync" | "verify" | "gc")) {
        d.error_at(
            path!["disable"],
            "Cannot disable this kind",
            format!("PBS {} jobs have no disable switch; remove the job instead", kind.unwrap_or("")),
        );
    }
    let range = |d: &mut Diagnostics, p: AttrPath, v: Option<i64>, lo: i64, hi: i64| {
        if let Some(v) = v {
            if v < lo || v > hi {
                d.error_at(p.clone(), "Value out of range", format!("{p} = {v}: must be between {lo} and {hi}"));
            }
        }
    };
    let store_check = |d: &mut Diagnostics, p: AttrPath, v: &Option<String>| {
        if let Some(v) = v {
            if !is_pbs_id(v) {
                d.error_at(
                    p,
                    "Invalid datastore name",
                    format!("{v:?}: letters, digits, '_', '.', '-', at most 32 characters"),
                );
            }
        }
    };
    let ns_check = |d: &mut Diagnostics, p: AttrPath, v: &Option<String>| {
        if let Some(v) = v {
            if !is_ns(v) {
                d.error_at(p, "Invalid namespace", format!("{v:?}: names separated by '/', at most 8 levels"));
            }
        }
    };
    if let Some(b) = &c.backup {
        if let Some(st) = &b.storage {
            if !is_storage_id(st) {
                d.error_at(path!["backup", "storage"], "Invalid storage ID", format!("{st:?} is not a PVE storage ID"));
            }
        }
        if let Some(n) = &b.node {
            if let Err(e) = crate::provider::check_node_name(n) {
                d.error_at(path!["backup", "node"], "Invalid node name", e);
            }
        }
        one_of(d, path!["backup", "mode"], &b.mode, &["snapshot", "suspend", "stop"]);
        one_of(d, path!["backup", "compress"], &b.compress, &["0", "1", "gzip", "lzo", "zstd"]);
        one_of(
            d,
            path!["backup", "notification_mode"],
            &b.notification_mode,
            &["auto", "legacy-sendmail", "notification-system"],
        );
        let sel = [b.vmids.as_ref().is_some_and(|v| !v.is_empty()), b.all == Some(true), b.pool.is_some()];
        let n = sel.iter().filter(|x| **x).count();
        if n != 1 {
            d.error_at(
                path!["backup", "vmids"],
                "Choose what to back up",
                "set exactly one of vmids, all = true, pool",
            );
        }
        for (list, name) in [(&b.vmids, "vmids"), (&b.exclude, "exclude")] {
            for (i, id) in list.iter().flatten().enumerate() {
                if !(100..=999_999_999).contains(id) {
                    d.error_at(
                        path!["backup", name, i],
                        "Invalid VM ID",
                        format!("{id}: guest IDs run from 100 to 999999999"),
                    );
                }
            }
        }
        if b.exclude.is_some() && b.all != Some(true) && b.pool.is_none() {
            d.error_at(
                path!["backup", "exclude"],
                "exclude needs all or pool",
                "exclude only applies with all = true or pool",
            );
        }
        if let Some(m) = &b.prune_backups {
            for (k, v) in m {
                let p = AttrPath::root("backup").attr("prune_backups").key(k);
                if !PRUNE_KEYS.contains(&k.as_str()) {
                    d.error_at(p, "Unknown retention key", format!("{k:?}: use one of {}", PRUNE_KEYS.join(", ")));
                } else if k == "keep_all" && !(0..=1).contains(v) || k != "keep_all" && *v < 1 {
                    d.error_at(
                        p,
                        "Value out of range",
                        format!("{k} = {v}: keep_* must be 1 or more (keep_all 0 or 1)"),
                    );
                }
            }
        }
        if let Some(t) = &b.notes_template {
            if t.len() > 1024 {
                d.error_at(path!["backup", "notes_template"], "Too long", "at most 1024 characters");
            }
        }
    }
    if let Some(s) = &c.sync {
        store_check(d, path!["sync", "store"], &s.store);
        store_check(d, path!["sync", "remote_store"], &s.remote_store);
        store_check(d, path!["sync", "remote"], &s.remote);
        ns_check(d, path!["sync", "ns"], &s.ns);
        ns_check(d, path!["sync", "remote_ns"], &s.remote_ns);
        one_of(d, path!["sync", "sync_direction"], &s.sync_direction, &["pull", "push"]);
        if s.sync_direction.as_deref() == Some("push") && s.remote.is_none() {
            d.error_at(path!["sync", "remote"], "push needs a remote", "a push sync job sends to a remote: set remote");
        }
        if s.remote.is_none() && s.store.is_some() && s.store == s.remote_store && s.ns == s.remote_ns {
            d.error_at(
                path!["sync", "remote_store"],
                "Sync onto itself",
                "a local sync needs a different source datastore or namespace",
            );
        }
        range(d, path!["sync", "transfer_last"], s.transfer_last, 1, i64::MAX);
        for (name, v) in
            [("rate_in", &s.rate_in), ("rate_out", &s.rate_out), ("burst_in", &s.burst_in), ("burst_out", &s.burst_out)]
        {
            if let Some(v) = v {
                if !is_rate(v) {
                    d.error_at(
                        path!["sync", name],
                        "Invalid rate",
                        format!("{v:?}: use a number with an optional unit, e.g. \"10MiB\""),
                    );
                }
            }
        }
        for (i, f) in s.group_filter.iter().flatten().enumerate() {
            if !is_group_filter(f) {
                d.error_at(
                    path!["sync", "group_filter", i],
                    "Invalid group filter",
                    format!("{f:?}: use type:vm|ct|host, group:TYPE/ID or regex:RE, optionally prefixed exclude:"),
                );
            }
        }
    }
    if let Some(v) = &c.verify {
        store_check(d, path!["verify", "store"], &v.store);
        ns_check(d, path!["verify", "ns"], &v.ns);
        range(d, path!["verify", "outdated_after"], v.outdated_after, 0, i64::MAX);
        range(d, path!["verify", "max_depth"], v.max_depth, 0, 7);
    }
    if let Some(p) = &c.prune {
        store_check(d, path!["prune", "store"], &p.store);
        ns_check(d, path!["prune", "ns"], &p.ns);
        for (name, v) in [
            ("keep_last", p.keep_last),
            ("keep_hourly", p.keep_hourly),
            ("keep_daily", p.keep_daily),
            ("keep_weekly", p.keep_weekly),
            ("keep_monthly", p.keep_monthly),
            ("keep_yearly", p.keep_yearly),
        ] {
            range(d, path!["prune", name], v, 1, i64::MAX);
        }
        range(d, path!["prune", "max_depth"], p.max_depth, 0, 7);
    }
    if let Some(g) = &c.gc {
        store_check(d, path!["gc", "store"], &g.store);
        if let (Some(st), Some(id)) = (&g.store, &c.id) {
            if st != id {
                d.error_at(
                    path!["gc", "store"],
                    "gc store must equal id",
                    format!("a gc job's id names its datastore: id = {id:?} but store = {st:?}"),
                );
            }
        }
        if c.comment.is_some() {
            d.error_at(
                path!["comment"],
                "No comment for gc",
                "a gc schedule is a datastore setting and has no comment",
            );
        }
    }
}

fn one_of(d: &mut Diagnostics, p: AttrPath, v: &Option<String>, allowed: &[&str]) {
    if let Some(v) = v {
        if !allowed.contains(&v.as_str()) {
            d.error_at(p.clone(), "Invalid value", format!("{p} = {v:?}: must be one of {}", allowed.join(", ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_round_trip() {
        let s = State {
            id: Some("nightly".into()),
            schedule: Some("daily".into()),
            disable: Some(true),
            backup: Some(Backup {
                storage: Some("pbs".into()),
                vmids: Some(vec![100, 101]),
                prune_backups: Some(BTreeMap::from([("keep_daily".to_string(), 7), ("keep_last".to_string(), 3)])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let api = backup_to_api(&s);
        assert_eq!(api.vmid.as_deref(), Some("100,101"));
        assert_eq!(
            api.prune_backups.as_ref().map(PruneBackups::to_property_string).as_deref(),
            Some("keep-daily=7,keep-last=3")
        );
        assert_eq!(api.enabled, Some(false));
        let mut back = State { id: s.id.clone(), ..Default::default() };
        backup_from_api(&mut back, api);
        assert_eq!(back.backup, s.backup);
        assert_eq!(back.disable, Some(true));
    }

    #[test]
    fn removed_keys_are_deleted() {
        let mut s = State {
            id: Some("s".into()),
            schedule: Some("daily".into()),
            comment: Some("x".into()),
            sync: Some(Sync { store: Some("a".into()), remote_store: Some("b".into()), ..Default::default() }),
            ..Default::default()
        };
        let old = pbs_body(&s);
        s.comment = None;
        assert_eq!(old.kind(), JobKind::Sync);
        assert_eq!(old.removed_in(&pbs_body(&s)), vec!["comment".to_string()]);
    }

    #[test]
    fn filters_and_rates() {
        assert!(is_group_filter("type:vm"));
        assert!(is_group_filter("exclude:group:ct/101"));
        assert!(!is_group_filter("type:lxc"));
        assert!(is_rate("10MiB"));
        assert!(is_rate("1.5 GB/s"));
        assert!(!is_rate("fast"));
    }
}

#[cfg(test)]
mod release_gates {
    use super::*;

    /// `notification_mode` on a PVE before 8.1 is refused with its attribute path and the
    /// release it needs; 8.1 and later (every lab profile) accept it.
    #[test]
    fn notification_mode_needs_pve_8_1() {
        let d = refuse_older_pve(PveFeature::BackupNotificationMode, Version::new(8, 0, 4)).unwrap_err();
        let msg = format!("{d:?}");
        assert!(msg.contains("notification_mode") && msg.contains("8.1.0"), "{msg}");
        assert_eq!(d.0[0].path.as_ref().map(|p| p.to_string()).as_deref(), Some("backup.notification_mode"));
        assert!(refuse_older_pve(PveFeature::BackupNotificationMode, Version::new(8, 1, 0)).is_ok());
        assert!(refuse_older_pve(PveFeature::BackupNotificationMode, Version::new(9, 1, 17)).is_ok());
    }
}

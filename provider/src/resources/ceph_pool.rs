//! `edge_ceph_pool`: a Ceph pool of a Proxmox VE cluster, through PVE's
//! `/nodes/{node}/ceph/pool` API (the cluster's real Ceph does the work).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::clients::pve::{PoolCreate, PoolDelete, PoolListEntry, PoolUpdate, PveClient};
use crate::clients::{ApiErrorKind, ClientError};
use crate::framework::{
    Applied, AttrPath, Attribute, Block, Ctx, Diagnostics, Done, Failed, IdentityAttribute, IdentitySchema,
    ImportRequest, NestedBlock, Op, PlanCtx, Resource, Schema, Timeouts, Type, Value,
};
use crate::path;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ErasureCoding {
    pub k: Option<i64>,
    pub m: Option<i64>,
    pub device_class: Option<String>,
    pub failure_domain: Option<String>,
    pub profile: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub id: Option<i64>,
    pub node: Option<String>,
    pub name: Option<String>,
    pub size: Option<i64>,
    pub min_size: Option<i64>,
    pub pg_num: Option<i64>,
    pub pg_num_min: Option<i64>,
    pub pg_autoscale_mode: Option<String>,
    pub application: Option<String>,
    pub crush_rule: Option<String>,
    pub erasure_coding: Option<ErasureCoding>,
    pub target_size: Option<String>,
    pub target_size_ratio: Option<f64>,
    pub add_storages: Option<bool>,
    pub ceph_fsid: Option<String>,
    pub force_destroy: Option<bool>,
    pub pve: Option<super::PveApi>,
    pub timeouts: Option<Timeouts>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub pg_num_final: Option<i64>,
    pub bytes_used: Option<i64>,
    pub percent_used: Option<f64>,
}

pub struct CephPool;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

#[async_trait]
impl Resource for CephPool {
    type State = State;

    fn type_name(&self) -> &'static str {
        "edge_ceph_pool"
    }

    fn schema(&self) -> Schema {
        let n = |name: &str, d: &str| Attribute::optional_computed(name, Type::Number).describe(d);
        let s = |name: &str, d: &str| Attribute::optional_computed(name, Type::String).describe(d);
        Schema::new(
            0,
            Block::new("A Ceph pool of a Proxmox VE cluster (PVE `/nodes/{node}/ceph/pool`). Changes PVE can make in place are updates; `name`, `erasure_coding` and another `application` (Ceph allows only one through PVE) replace the pool.")
                .attr(Attribute::computed("id", Type::Number).describe("Ceph's pool number."))
                .attr(Attribute::required("node", Type::String).describe("The PVE node whose API manages the pool (any node of the cluster)."))
                .attr(Attribute::required("name", Type::String).replace().describe("Pool name (no `:`, `/` or whitespace). Changing it replaces the pool."))
                .attr(n("size", "Replicas per object, 2..7 (PVE default 3; Ceph refuses 1 through PVE). With `erasure_coding`: the metadata pool's."))
                .attr(n("min_size", "Replicas needed for I/O, 1..7 and at most `size` (PVE default 2). With `erasure_coding`: the metadata pool's."))
                .attr(n("pg_num", "Placement groups, 1..32768 (PVE default 128); a power of two is best. With `pg_autoscale_mode = \"on\"` Ceph may change it: see `pg_num_final`."))
                .attr(n("pg_num_min", "Lower bound for the autoscaler, at most 32768."))
                .attr(s("pg_autoscale_mode", "`on`, `off` or `warn` (PVE default `warn`)."))
                .attr(s("application", "`rbd`, `cephfs` or `rgw` (PVE default `rbd`). Ceph enables only one through PVE: another one replaces the pool."))
                .attr(s("crush_rule", "CRUSH rule name (default `replicated_rule`). With `erasure_coding`: the metadata pool's (the data pool has a rule of its own)."))
                .attr(s("target_size", "Expected size for the autoscaler, e.g. `100G` (number with optional K, M, G, T)."))
                .attr(n("target_size_ratio", "Expected share of the cluster for the autoscaler (0 or more)."))
                .attr(Attribute::optional("add_storages", Type::Bool).describe("At create only: also add PVE storages for the pool. Destroy then removes them too."))
                .attr(Attribute::optional("ceph_fsid", Type::String).describe("The Ceph cluster (fsid) the pool belongs to; wire it to `edge_proxmox_node.<first>.ceph_fsid`. Apply refuses a cluster with another fsid. When the node is being brought back from power-off or rebuilt, the fsid is unknown in the plan, so the pool is checked again at apply and created again if the rebuilt cluster lacks it (the disaster-recovery path)."))
                .attr(Attribute::optional("force_destroy", Type::Bool).default(Value::Bool(false)).describe("Allow destroying a pool that still holds data. Set it and apply before the destroy."))
                .attr(super::pve_api_attribute("the pool"))
                .attr(Attribute::computed("type", Type::String).describe("`replicated` or `erasure`."))
                .attr(Attribute::computed("pg_num_final", Type::Number).describe("The pg_num Ceph works towards (differs from `pg_num` while the autoscaler acts)."))
                .attr(Attribute::computed("bytes_used", Type::Number).describe("Bytes stored, as of the last refresh."))
                .attr(Attribute::computed("percent_used", Type::Number).describe("Share of the raw capacity used (0..1), as of the last refresh."))
                .block(
                    NestedBlock::single(
                        "erasure_coding",
                        Block::new("Make an erasure-coded pool (PVE creates `<name>-data` and `<name>-metadata`). Replaces the pool when changed.")
                            .attr(Attribute::required("k", Type::Number).describe("Data chunks (2 or more)."))
                            .attr(Attribute::required("m", Type::Number).describe("Coding chunks (1 or more)."))
                            .attr(Attribute::optional("device_class", Type::String).describe("CRUSH device class, e.g. `ssd`."))
                            .attr(Attribute::optional("failure_domain", Type::String).describe("CRUSH failure domain, default `host`."))
                            .attr(Attribute::optional("profile", Type::String).describe("An existing erasure-code profile to use.")),
                    )
                    .replace(),
                )
                .block(NestedBlock::timeouts(&["create", "update", "delete"])),
        )
    }

    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(IdentitySchema {
            version: 0,
            attributes: vec![
                IdentityAttribute {
                    name: "node".into(),
                    description: "PVE node whose API manages the pool.".into(),
                    required_for_import: true,
                },
                IdentityAttribute { name: "name".into(), description: "Pool name.".into(), required_for_import: true },
            ],
        })
    }

    fn identity(&self, s: &State) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([("node".to_string(), s.node.clone()?), ("name".to_string(), s.name.clone()?)]))
    }

    fn validate(&self, c: &State, d: &mut Diagnostics) {
        validate_pool(c, d);
    }

    async fn modify_plan(&self, _ctx: &Ctx, plan: &mut PlanCtx<State>) -> Result<(), Diagnostics> {
        // Usage figures move on their own: when anything is applied they are unknown until read.
        if let Some(prior) = plan.prior.clone() {
            let planned = plan.planned()?;
            // Ceph enables an application only on a pool that has none (a second one needs
            // `--yes-i-really-mean-it`, which PVE never sends): another application means
            // another pool.
            let had = prior.application.as_deref().filter(|a| !a.is_empty());
            if had.is_some() && planned.application.is_some() && planned.application.as_deref() != had {
                plan.require_replace(AttrPath::root("application"));
            }
            if changed(&prior, &planned) {
                for a in ["bytes_used", "percent_used", "pg_num_final"] {
                    plan.set_unknown(a)?;
                }
            }
            // Another (or a not yet known) cluster: the pool may be created again at apply, with
            // a new pool number.
            if plan.is_unknown_in_config("ceph_fsid") || planned.ceph_fsid != prior.ceph_fsid {
                for a in ["id", "bytes_used", "percent_used", "pg_num_final"] {
                    plan.set_unknown(a)?;
                }
            }
        }
        Ok(())
    }

    async fn create(&self, ctx: &Ctx, planned: State, _config: &State) -> Applied<State> {
        let pve = client(ctx, &planned)?;
        let deadline = Instant::now() + Timeouts::get(&planned.timeouts, Op::Create, DEFAULT_TIMEOUT);
        let node = req(&planned.node, "node")?;
        let name = req(&planned.name, "name")?;
        check_fsid(&pve, &node, &planned.ceph_fsid).await?;
        if find(&pve, &node, &name, planned.erasure_coding.is_some()).await?.is_some() {
            // An empty pool exactly as planned is what an interrupted apply created before its
            // state was saved (Terraform killed mid-run): adopt it. Anything else is not ours.
            if let Some(live) = read_pool(&pve, planned.clone()).await? {
                if !changed(&planned_or(&planned, &live), &live) && live.bytes_used.unwrap_or(0) == 0 {
                    tracing::info!(pool = %name, "empty pool exists exactly as planned (an interrupted apply created it): adopting it");
                    let mut w = Diagnostics::new();
                    w.warn_at(
                        AttrPath::root("name"),
                        "Adopted an existing pool",
                        format!("Ceph already had an empty pool {name:?} exactly as configured (what an interrupted apply leaves behind): it is managed now instead of created."),
                    );
                    return Ok(Done::with_warnings(fill_unknowns(planned, live), w));
                }
            }
            return Err(Failed::from(Diagnostics::at(
                AttrPath::root("name"),
                "Pool already exists",
                format!("Ceph already has a pool {name:?} with other settings or data. To manage it, import it: terraform import <address> {node}/{name}"),
            )));
        }
        create_and_read(ctx, &pve, &node, &name, planned, deadline).await
    }

    async fn read(&self, ctx: &Ctx, state: State) -> Result<Done<Option<State>>, Diagnostics> {
        let pve = client(ctx, &state)?;
        let node = req(&state.node, "node")?;
        // A dark store (cluster powered off, tunnel down) must not block plans: keep the last
        // known pool and warn. Drift on a cluster nobody can reach cannot be seen anyway, and a
        // rebuilt cluster is caught through `ceph_fsid` (unknown in the plan → checked at apply).
        let fsid = match &state.ceph_fsid {
            Some(_) => match cluster_fsid(&pve, &node).await {
                Ok(f) => Some(f),
                Err(e) if e.is_unreachable() => return Ok(Done::with_warnings(Some(state), unreachable(&e))),
                Err(e) => return Err(api_diag("Cannot read the Ceph cluster", e)),
            },
            None => None,
        };
        match read_pool_raw(&pve, state.clone(), Listing::SharedByRefresh).await {
            Ok(Some(mut st)) => {
                if fsid.is_some() {
                    st.ceph_fsid = fsid;
                }
                Ok(Some(st).into())
            }
            Ok(None) => Ok(None.into()),
            Err(e) if e.is_unreachable() => Ok(Done::with_warnings(Some(state), unreachable(&e))),
            Err(e) => Err(api_diag("Cannot read the Ceph pool", e)),
        }
    }

    async fn update(&self, ctx: &Ctx, prior: State, planned: State, _config: &State) -> Applied<State> {
        let pve = client(ctx, &planned)?;
        let deadline = Instant::now() + Timeouts::get(&planned.timeouts, Op::Update, DEFAULT_TIMEOUT);
        let node = req(&planned.node, "node")?;
        let name = req(&planned.name, "name")?;
        check_fsid(&pve, &node, &planned.ceph_fsid).await?;
        if find(&pve, &node, &name, planned.erasure_coding.is_some()).await?.is_none() {
            // The cluster lost the pool while this update was planned (a rebuilt store: the
            // plan showed ceph_fsid unknown). Create it again as declared.
            tracing::warn!(pool = %name, "pool missing on the cluster: creating it again");
            let mut done = create_and_read(ctx, &pve, &node, &name, planned, deadline).await?;
            done.warnings.warn_at(
                AttrPath::root("name"),
                "Pool created again",
                format!("Pool {name:?} was missing on the cluster (a rebuilt store), so it was created again, empty, as configured."),
            );
            return Ok(done);
        }
        let ec = planned.erasure_coding.is_some();
        let diff = |a: &Option<i64>, b: &Option<i64>| if b.is_some() && a != b { *b } else { None };
        let diff_s = |a: &Option<String>, b: &Option<String>| if b.is_some() && a != b { b.clone() } else { None };
        let upd = PoolUpdate {
            size: diff(&prior.size, &planned.size),
            min_size: diff(&prior.min_size, &planned.min_size),
            pg_num: diff(&prior.pg_num, &planned.pg_num),
            pg_num_min: diff(&prior.pg_num_min, &planned.pg_num_min),
            pg_autoscale_mode: diff_s(&prior.pg_autoscale_mode, &planned.pg_autoscale_mode),
            application: diff_s(&prior.application, &planned.application),
            crush_rule: diff_s(&prior.crush_rule, &planned.crush_rule),
            target_size: diff_s(&prior.target_size, &planned.target_size),
            target_size_ratio: if planned.target_size_ratio.is_some()
                && prior.target_size_ratio != planned.target_size_ratio
            {
                planned.target_size_ratio
            } else {
                None
            },
        };
        for (pool, part) in split_update(&name, ec, upd) {
            set_pool(ctx, &pve, &node, &pool, &part, deadline).await?;
        }
        // PVE applies `size` first and Ceph then resets min_size to min(2, size); PVE compares
        // the rest with what it read before, so a min_size equal to the old one is skipped
        // (`PVE/Ceph/Tools.pm` `set_pool`): read back and set min_size once more if needed.
        if let Some(want) = planned.min_size {
            let meta = settings_pool(&name, ec, Setting::Replication);
            let have = pve.pool_status(&node, &meta).await.map_err(|e| api_diag("Cannot read the Ceph pool", e))?;
            if have.and_then(|h| h.min_size).is_some_and(|h| h != want) {
                tracing::info!(pool = %meta, min_size = want, "Ceph reset min_size with the size change: setting it again");
                let fix = PoolUpdate { min_size: Some(want), ..Default::default() };
                set_pool(ctx, &pve, &node, &meta, &fix, deadline).await?;
            }
        }
        // Values planned unknown (usage figures after a change) come from a fresh read; known
        // ones must stay exactly as planned.
        let fresh = read_pool(&pve, planned.clone()).await?.unwrap_or_else(|| planned.clone());
        Ok(State {
            id: planned.id.or(fresh.id),
            kind: planned.kind.clone().or(fresh.kind),
            pg_num_final: planned.pg_num_final.or(fresh.pg_num_final),
            bytes_used: planned.bytes_used.or(fresh.bytes_used),
            percent_used: planned.percent_used.or(fresh.percent_used),
            ..planned
        }
        .into())
    }

    async fn delete(&self, ctx: &Ctx, prior: State) -> Result<Done<()>, Diagnostics> {
        let pve = client(ctx, &prior)?;
        let deadline = Instant::now() + Timeouts::get(&prior.timeouts, Op::Delete, DEFAULT_TIMEOUT);
        let node = req(&prior.node, "node")?;
        let name = req(&prior.name, "name")?;
        let ec = prior.erasure_coding.is_some();
        let pools = pool_names(&name, ec);
        let listed = pve.pools(&node).await.map_err(|e| api_diag("Cannot list Ceph pools", e))?;
        let present: Vec<&PoolListEntry> =
            listed.iter().filter(|e| e.pool_name.as_deref().is_some_and(|n| pools.iter().any(|p| p == n))).collect();
        if present.is_empty() {
            return Ok(().into()); // already gone
        }
        // The usage figures of the pool list are each pool's own on every PVE release (the
        // verbose pool status reports another pool's before 9.1.12). PVE itself does not
        // protect data: its `force` only concerns VM images in PVE storages on the pool.
        let used: i64 = present.iter().map(|e| e.bytes_used.unwrap_or(0)).sum();
        let force = prior.force_destroy == Some(true);
        if used > 0 && !force {
            return Err(Diagnostics::at(
                AttrPath::root("force_destroy"),
                "Pool holds data",
                format!(
                    "Pool {name:?} still holds {} ({used} bytes). Destroying it would delete that data for good, so the provider \
                     refuses (PVE would not: it only checks for VM disks in its storages). Move the data away, or set \
                     force_destroy = true, apply, and destroy again.",
                    human_bytes(used)
                ),
            ));
        }
        let q = PoolDelete {
            force: force.then_some(1),
            remove_storages: (prior.add_storages == Some(true) || ec).then_some(1),
            remove_ecprofile: ec.then_some(1),
        };
        // An erasure-coded pool: the data pool first (it carries the profile), then the metadata.
        for p in pools {
            // A pool that is gone already counts as deleted (the client checks the pool list).
            pve.pool_destroy(&node, &p, &q, deadline, &ctx.stop).await.map_err(|e| match e {
                ClientError::Api { .. } => api_diag("Cannot delete the Ceph pool", e),
                e => task_diag("delete", &name, e),
            })?;
        }
        Ok(().into())
    }

    async fn import(&self, _ctx: &Ctx, req: ImportRequest) -> Result<Done<State>, Diagnostics> {
        let (node, name) = match req {
            ImportRequest::Id(id) => {
                let (n, p) = id.split_once('/').filter(|(n, p)| !n.is_empty() && !p.is_empty()).ok_or_else(|| {
                    Diagnostics::error("Invalid import ID", format!("{id:?}: expected NODE/POOL, e.g. pve1/rbd"))
                })?;
                (n.to_string(), p.to_string())
            }
            ImportRequest::Identity(m) => {
                let get = |k: &str| {
                    m.get(k)
                        .cloned()
                        .ok_or_else(|| Diagnostics::error("Incomplete identity", format!("identity.{k} is required")))
                };
                (get("node")?, get("name")?)
            }
        };
        Ok(State { node: Some(node), name: Some(name), force_destroy: Some(false), ..Default::default() }.into())
    }
}

/// Creates the pool and returns the planned state with what was unknown read back.
async fn create_and_read(
    ctx: &Ctx,
    pve: &PveClient,
    node: &str,
    name: &str,
    planned: State,
    deadline: Instant,
) -> Applied<State> {
    let created = create_pool(ctx, pve, node, name, &planned, deadline).await;
    let fresh = read_pool(pve, planned.clone()).await?;
    match (created, fresh) {
        (Ok(()), Some(fresh)) => Ok(fill_unknowns(planned, fresh).into()),
        (Ok(()), None) => Err(Diagnostics::error(
            "Pool missing after create",
            format!("PVE reported success but pool {name:?} is not listed"),
        )
        .into()),
        // PVE's create is not atomic: it makes the pool, then applies each setting, and a
        // setting that fails leaves the pool behind. If it is what was asked after all (the
        // failure was elsewhere, e.g. the storage), it is ours; otherwise say what is there.
        (Err(d), Some(live)) => {
            let differs = differences(&planned_or(&planned, &live), &live);
            if differs.is_empty() && live.bytes_used.unwrap_or(0) == 0 {
                tracing::warn!(pool = %name, "create task failed, but the pool is there as planned: adopting it");
                let mut w = Diagnostics::new();
                w.warn(
                    "Pool created, but PVE reported a failure",
                    format!(
                        "PVE's create task failed, yet pool {name:?} is there exactly as configured, so it is managed now. PVE said: {}",
                        d.0.iter().map(|x| format!("{}: {}", x.summary, x.detail)).collect::<Vec<_>>().join("; ")
                    ),
                );
                return Ok(Done::with_warnings(fill_unknowns(planned, live), w));
            }
            // The pool is recorded as it is (Terraform marks it tainted): the next apply
            // replaces it, `terraform destroy` removes it; it is never left unmanaged.
            let mut d = d;
            d.push_error(
                "The failed create left the pool behind",
                format!(
                    "Pool {name:?} exists now, differing from the configuration in: {}. It is in the state as tainted: \
                     the next apply deletes it (it is empty) and creates it as configured; `terraform untaint` keeps it \
                     and changes it to the configuration instead.",
                    differs.join(", ")
                ),
            );
            Err(Failed::with_partial(live, d))
        }
        (Err(d), None) => Err(d.into()),
    }
}

/// `POST /nodes/{node}/ceph/pool` with the planned settings, waiting for PVE's task.
async fn create_pool(
    ctx: &Ctx,
    pve: &PveClient,
    node: &str,
    name: &str,
    planned: &State,
    deadline: Instant,
) -> Result<(), Diagnostics> {
    let body = PoolCreate {
        name: name.to_string(),
        size: planned.size,
        min_size: planned.min_size,
        pg_num: planned.pg_num,
        pg_num_min: planned.pg_num_min,
        pg_autoscale_mode: planned.pg_autoscale_mode.clone(),
        application: planned.application.clone(),
        crush_rule: planned.crush_rule.clone(),
        erasure_coding: planned.erasure_coding.as_ref().map(ec_string),
        target_size: planned.target_size.clone(),
        target_size_ratio: planned.target_size_ratio,
        add_storages: planned.add_storages,
    };
    match pve.pool_create(node, &body).await {
        Ok(upid) => pve.wait_maybe(upid, deadline, &ctx.stop).await.map_err(|e| task_diag("create", name, e)),
        // A repeat after a 5xx whose first attempt went through: the pool was absent before.
        Err(e) if e.is(ApiErrorKind::AlreadyExists) => Ok(()),
        Err(e) => Err(api_diag("Cannot create the Ceph pool", e)),
    }
}

/// Which Ceph pool holds a setting. A replicated pool holds all of them. An erasure-coded
/// "pool" is two (PVE's `createpool`): `<name>-data` with the profile's size, min_size and a
/// CRUSH rule of its own (a later `set` ignores size and crush_rule there), and
/// `<name>-metadata`, replicated, which takes the configured size, min_size and crush_rule.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setting {
    Replication,
    Placement,
}

fn settings_pool(name: &str, ec: bool, s: Setting) -> String {
    match (ec, s) {
        (false, _) => name.to_string(),
        (true, Setting::Replication) => format!("{name}-metadata"),
        (true, Setting::Placement) => format!("{name}-data"),
    }
}

/// The Ceph pools behind the resource, in the order they are destroyed.
fn pool_names(name: &str, ec: bool) -> Vec<String> {
    if ec {
        vec![format!("{name}-data"), format!("{name}-metadata")]
    } else {
        vec![name.to_string()]
    }
}

/// One update per Ceph pool that holds a changed setting (application and autoscaling go to
/// both pools of an erasure-coded one, as PVE's create set them).
fn split_update(name: &str, ec: bool, u: PoolUpdate) -> Vec<(String, PoolUpdate)> {
    if !ec {
        return if u.is_empty() { vec![] } else { vec![(name.to_string(), u)] };
    }
    let replication = PoolUpdate {
        size: u.size,
        min_size: u.min_size,
        crush_rule: u.crush_rule.clone(),
        application: u.application.clone(),
        pg_autoscale_mode: u.pg_autoscale_mode.clone(),
        ..Default::default()
    };
    let placement = PoolUpdate {
        pg_num: u.pg_num,
        pg_num_min: u.pg_num_min,
        target_size: u.target_size,
        target_size_ratio: u.target_size_ratio,
        application: u.application,
        pg_autoscale_mode: u.pg_autoscale_mode,
        ..Default::default()
    };
    [
        (settings_pool(name, ec, Setting::Replication), replication),
        (settings_pool(name, ec, Setting::Placement), placement),
    ]
    .into_iter()
    .filter(|(_, u)| !u.is_empty())
    .collect()
}

/// One `PUT …/pool/{name}` — PVE's `set_pool` applies `size` first, then the rest by name — and
/// its task.
async fn set_pool(
    ctx: &Ctx,
    pve: &PveClient,
    node: &str,
    pool: &str,
    u: &PoolUpdate,
    deadline: Instant,
) -> Result<(), Diagnostics> {
    let upid = pve.pool_update(node, pool, u).await.map_err(|e| api_diag("Cannot update the Ceph pool", e))?;
    pve.wait_maybe(upid, deadline, &ctx.stop).await.map_err(|e| task_diag("update", pool, e))
}

/// The planned settings, with what the plan leaves to PVE's defaults (unset) taken from `live`,
/// so that only settings the configuration names are compared.
fn planned_or(planned: &State, live: &State) -> State {
    State {
        size: planned.size.or(live.size),
        min_size: planned.min_size.or(live.min_size),
        pg_num: planned.pg_num.or(live.pg_num),
        pg_num_min: planned.pg_num_min.or(live.pg_num_min),
        pg_autoscale_mode: planned.pg_autoscale_mode.clone().or(live.pg_autoscale_mode.clone()),
        application: planned.application.clone().or(live.application.clone()),
        crush_rule: planned.crush_rule.clone().or(live.crush_rule.clone()),
        target_size: planned.target_size.clone().or(live.target_size.clone()),
        target_size_ratio: planned.target_size_ratio.or(live.target_size_ratio),
        ..planned.clone()
    }
}

fn changed(prior: &State, planned: &State) -> bool {
    !differences(prior, planned).is_empty()
}

/// The settings that differ, by attribute name.
fn differences(a: &State, b: &State) -> Vec<&'static str> {
    let mut d = Vec::new();
    let mut check = |name: &'static str, differ: bool| {
        if differ {
            d.push(name);
        }
    };
    check("size", a.size != b.size);
    check("min_size", a.min_size != b.min_size);
    check("pg_num", a.pg_num != b.pg_num);
    check("pg_num_min", a.pg_num_min != b.pg_num_min);
    check("pg_autoscale_mode", a.pg_autoscale_mode != b.pg_autoscale_mode);
    check("application", a.application != b.application);
    check("crush_rule", a.crush_rule != b.crush_rule);
    check("target_size", a.target_size != b.target_size);
    check("target_size_ratio", a.target_size_ratio != b.target_size_ratio);
    d
}

fn client(ctx: &Ctx, st: &State) -> Result<std::sync::Arc<PveClient>, Diagnostics> {
    super::pve_client(ctx, st.pve.as_ref(), "edge_ceph_pool")
}

fn req(v: &Option<String>, attr: &str) -> Result<String, Diagnostics> {
    v.clone()
        .ok_or_else(|| Diagnostics::at(AttrPath::root(attr), "Missing value", format!("{attr} must be known at apply")))
}

/// The pool's list entry, or `None` when Ceph has no such pool (the list answers 200 either
/// way; the status endpoint would answer a missing pool with a 500).
async fn find(pve: &PveClient, node: &str, name: &str, ec: bool) -> Result<Option<PoolListEntry>, Diagnostics> {
    find_raw(pve, node, name, ec).await.map_err(|e| api_diag("Cannot list Ceph pools", e))
}

async fn find_raw(pve: &PveClient, node: &str, name: &str, ec: bool) -> Result<Option<PoolListEntry>, ClientError> {
    pve.pool(node, &settings_pool(name, ec, Setting::Placement)).await
}

/// The fsid of the Ceph cluster behind `node` (`/nodes/{node}/ceph/status`).
async fn cluster_fsid(pve: &PveClient, node: &str) -> Result<String, ClientError> {
    Ok(pve.ceph_status(node).await?.fsid.unwrap_or_default())
}

/// Apply only touches the cluster the configuration names.
async fn check_fsid(pve: &PveClient, node: &str, want: &Option<String>) -> Result<(), Diagnostics> {
    let Some(want) = want else { return Ok(()) };
    let have = cluster_fsid(pve, node).await.map_err(|e| api_diag("Cannot read the Ceph cluster", e))?;
    if !have.eq_ignore_ascii_case(want) {
        return Err(Diagnostics::at(
            AttrPath::root("ceph_fsid"),
            "Another Ceph cluster",
            format!(
                "Node {node:?} belongs to Ceph cluster {have}, the configuration names {want}. Nothing was changed."
            ),
        ));
    }
    Ok(())
}

/// Refresh of a pool whose cluster does not answer: a warning only, so the framework keeps the
/// last known state (its rule for a read that returns diagnostics without an error).
fn unreachable(e: &ClientError) -> Diagnostics {
    let mut d = Diagnostics::new();
    d.warn_at(
        AttrPath::root("node"),
        "Ceph cluster unreachable: pool not refreshed",
        format!("{e}. Kept the last known state; drift on this pool shows once the cluster answers again."),
    );
    d
}

/// Refreshes `state` from PVE; `None` when the pool is gone.
async fn read_pool(pve: &PveClient, state: State) -> Result<Option<State>, Diagnostics> {
    read_pool_raw(pve, state, Listing::Fresh).await.map_err(|e| api_diag("Cannot read the Ceph pool", e))
}

/// Where a read takes the node's pool list from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listing {
    /// Its own `GET …/ceph/pool`: create, update and delete decide on what is there now.
    Fresh,
    /// The list the pool refreshes of this run share (one call per node instead of one per
    /// pool); the client drops it when it writes anything.
    SharedByRefresh,
}

/// [`read_pool`] with the client's error, so that callers can tell an unreachable cluster apart.
async fn read_pool_raw(pve: &PveClient, mut state: State, listing: Listing) -> Result<Option<State>, ClientError> {
    let node = state.node.clone().unwrap_or_default();
    let name = state.name.clone().unwrap_or_default();
    let list = || async {
        match listing {
            Listing::Fresh => pve.pools(&node).await.map(std::sync::Arc::new),
            Listing::SharedByRefresh => pve.pools_for_refresh(&node).await,
        }
    };
    let statuses = |ec: bool| {
        let (place, repl) =
            (settings_pool(&name, ec, Setting::Placement), settings_pool(&name, ec, Setting::Replication));
        let node = &node;
        async move {
            let (place, repl) = tokio::join!(pve.pool_status(node, &place), async {
                if ec {
                    pve.pool_status(node, &repl).await
                } else {
                    Ok(None)
                }
            });
            Ok::<_, ClientError>((place?, repl?))
        }
    };
    // Whether the pool is erasure-coded is known from the state except on import by the base
    // name, where only the list tells. When it is known, the statuses are asked for while the
    // list is read: one round trip on a refresh instead of two. The list still decides: a pool
    // it does not show is gone, and its status call is dropped unanswered (PVE answers a
    // missing pool's status with a 500, which the client would retry for seconds).
    let known_ec = (state.erasure_coding.is_some() || state.id.is_some()).then_some(state.erasure_coding.is_some());
    let (listed, early) = match known_ec {
        Some(ec) => {
            let (listing, status) = (list(), statuses(ec));
            tokio::pin!(listing, status);
            let mut early = None;
            let listed = loop {
                tokio::select! {
                    l = &mut listing => break l?,
                    st = &mut status, if early.is_none() => early = Some(st),
                }
            };
            let in_list =
                listed.iter().any(|e| e.pool_name.as_deref() == Some(&settings_pool(&name, ec, Setting::Placement)));
            let early = match early {
                Some(st) => Some(st),
                None if in_list => Some(status.await),
                None => None,
            };
            (listed, early)
        }
        None => (list().await?, None),
    };
    let entry = |n: &str| listed.iter().find(|e| e.pool_name.as_deref() == Some(n)).cloned();
    let mut ec = state.erasure_coding.is_some();
    if !ec && state.id.is_none() && entry(&name).is_none() && entry(&format!("{name}-data")).is_some() {
        // Import of an erasure-coded pool by its base name.
        ec = true;
    }
    let place_name = settings_pool(&name, ec, Setting::Placement);
    let Some(place) = entry(&place_name) else { return Ok(None) };
    let (st, repl) = match early {
        Some(st) => st?,
        None => statuses(ec).await?,
    };
    let Some(st) = st else { return Ok(None) };
    let repl = if ec { repl.unwrap_or_else(|| st.clone()) } else { st.clone() };
    state.id = st.id.or(place.pool);
    state.size = repl.size.or(state.size);
    state.min_size = repl.min_size.or(state.min_size);
    state.crush_rule = repl.crush_rule.clone().or(state.crush_rule);
    state.pg_autoscale_mode = st.pg_autoscale_mode.clone().or(state.pg_autoscale_mode);
    // With the autoscaler on, Ceph moves pg_num itself: keep the declared starting value and
    // report the live one in pg_num_final, so autoscaling is not drift.
    let live_pg = st.pg_num;
    if !(state.pg_autoscale_mode.as_deref() == Some("on") && state.pg_num.is_some()) {
        state.pg_num = live_pg.or(state.pg_num);
    }
    state.pg_num_final = place.pg_num_final.or(live_pg);
    state.pg_num_min = st.pg_num_min.or(state.pg_num_min);
    // PVE's pool status has no `application`: the verbose `application_list` (or the pool
    // list's `application_metadata`) tells. Several (added with the ceph CLI) read as a list.
    let apps = if st.applications().is_empty() { place.applications() } else { st.applications() };
    state.application = if apps.is_empty() { None } else { Some(apps.join(",")) };
    state.target_size = match (st.target_size.clone(), state.target_size.take()) {
        // Keep the user's spelling ("1G") when it means the bytes Ceph reports.
        (Some(remote), Some(mine)) if size_bytes(&remote) == size_bytes(&mine) => Some(mine),
        (Some(remote), _) if size_bytes(&remote) == Some(0) => None,
        (remote, _) => remote,
    };
    state.target_size_ratio = match st.target_size_ratio {
        Some(r) if r > 0.0 => Some(r),
        // Ceph reports an unset ratio as absent or 0: a declared 0 is the same thing.
        _ => state.target_size_ratio.filter(|r| *r == 0.0),
    };
    state.kind = Some(place.kind.clone().unwrap_or_else(|| if ec { "erasure".into() } else { "replicated".into() }));
    // Usage from the pool list: its figures are each pool's own on every release.
    let pools = pool_names(&name, ec);
    let mine: Vec<PoolListEntry> = pools.iter().filter_map(|p| entry(p)).collect();
    state.bytes_used = Some(mine.iter().map(|e| e.bytes_used.unwrap_or(0)).sum());
    state.percent_used = Some(mine.iter().map(|e| e.percent_used.unwrap_or(0.0)).fold(0.0, f64::max));
    if state.force_destroy.is_none() {
        state.force_destroy = Some(false);
    }
    Ok(Some(state))
}

/// Planned values stay as planned; what was unknown comes from the fresh read.
fn fill_unknowns(planned: State, fresh: State) -> State {
    State {
        id: fresh.id,
        size: planned.size.or(fresh.size),
        min_size: planned.min_size.or(fresh.min_size),
        pg_num: planned.pg_num.or(fresh.pg_num),
        pg_num_min: planned.pg_num_min.or(fresh.pg_num_min),
        pg_autoscale_mode: planned.pg_autoscale_mode.clone().or(fresh.pg_autoscale_mode),
        application: planned.application.clone().or(fresh.application),
        crush_rule: planned.crush_rule.clone().or(fresh.crush_rule),
        target_size: planned.target_size.clone().or(fresh.target_size),
        target_size_ratio: planned.target_size_ratio.or(fresh.target_size_ratio),
        kind: fresh.kind,
        pg_num_final: fresh.pg_num_final,
        bytes_used: fresh.bytes_used,
        percent_used: fresh.percent_used,
        ..planned
    }
}

fn ec_string(ec: &ErasureCoding) -> String {
    let mut s = format!("k={},m={}", ec.k.unwrap_or(2), ec.m.unwrap_or(1));
    if let Some(v) = &ec.device_class {
        s.push_str(&format!(",device-class={v}"));
    }
    if let Some(v) = &ec.failure_domain {
        s.push_str(&format!(",failure-domain={v}"));
    }
    if let Some(v) = &ec.profile {
        s.push_str(&format!(",profile={v}"));
    }
    s
}

/// `100G` → bytes (PVE's target_size pattern `^(\d+(\.\d+)?)([KMGT])?$`).
pub fn size_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') || num.matches('.').count() > 1 {
        return None;
    }
    if num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    num.parse::<f64>().ok().map(|f| (f * mult as f64) as u64)
}

fn human_bytes(n: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// Offline checks mirroring PVE's parameter schema, with attribute paths.
pub fn validate_pool(c: &State, d: &mut Diagnostics) {
    if let Some(n) = &c.name {
        if n.is_empty() || n.chars().any(|ch| ch == ':' || ch == '/' || ch.is_whitespace()) {
            d.error_at(
                path!["name"],
                "Invalid pool name",
                format!("{n:?}: a pool name must be non-empty and hold no ':', '/' or whitespace"),
            );
        }
    }
    if let Some(n) = &c.node {
        if let Err(e) = crate::provider::check_node_name(n) {
            d.error_at(path!["node"], "Invalid node name", e);
        }
    }
    let range = |d: &mut Diagnostics, attr: &str, v: Option<i64>, lo: i64, hi: i64| {
        if let Some(v) = v {
            if v < lo || v > hi {
                d.error_at(
                    AttrPath::root(attr),
                    "Value out of range",
                    format!("{attr} = {v}: must be between {lo} and {hi}"),
                );
            }
        }
    };
    range(d, "size", c.size, 1, 7);
    range(d, "min_size", c.min_size, 1, 7);
    range(d, "pg_num", c.pg_num, 1, 32768);
    if let Some(v) = c.pg_num_min {
        if v > 32768 {
            d.error_at(path!["pg_num_min"], "Value out of range", format!("pg_num_min = {v}: must be at most 32768"));
        }
    }
    if let (Some(size), Some(min)) = (c.size, c.min_size) {
        if min > size {
            d.error_at(
                path!["min_size"],
                "min_size larger than size",
                format!("min_size = {min} but size = {size}: a pool cannot need more replicas for I/O than it keeps"),
            );
        }
    }
    if let Some(pg) = c.pg_num {
        if (1..=32768).contains(&pg) && !(pg as u64).is_power_of_two() {
            d.warn_at(
                path!["pg_num"],
                "pg_num is not a power of two",
                format!(
                    "pg_num = {pg}: Ceph balances data best with a power of two, e.g. {}",
                    (pg as u64).next_power_of_two()
                ),
            );
        }
    }
    if let (Some(pg), Some(min)) = (c.pg_num, c.pg_num_min) {
        if min > pg {
            d.error_at(
                path!["pg_num_min"],
                "pg_num_min larger than pg_num",
                format!("pg_num_min = {min} but pg_num = {pg}"),
            );
        }
    }
    enum_check(d, "pg_autoscale_mode", &c.pg_autoscale_mode, &["on", "off", "warn"]);
    enum_check(d, "application", &c.application, &["rbd", "cephfs", "rgw"]);
    if let Some(r) = &c.crush_rule {
        if r.is_empty() || r.chars().any(char::is_whitespace) {
            d.error_at(path!["crush_rule"], "Invalid CRUSH rule", format!("{r:?} is not a CRUSH rule name"));
        }
    }
    if let Some(t) = &c.target_size {
        if size_bytes(t).is_none() {
            d.error_at(
                path!["target_size"],
                "Invalid target_size",
                format!("{t:?}: use a number with an optional unit K, M, G or T, e.g. \"100G\""),
            );
        }
    }
    if let Some(r) = c.target_size_ratio {
        if r < 0.0 || !r.is_finite() {
            d.error_at(
                path!["target_size_ratio"],
                "Value out of range",
                format!("target_size_ratio = {r}: must be 0 or more"),
            );
        }
    }
    if let Some(ec) = &c.erasure_coding {
        if let Some(k) = ec.k {
            if k < 2 {
                d.error_at(
                    path!["erasure_coding", "k"],
                    "Value out of range",
                    format!("k = {k}: erasure coding needs at least 2 data chunks"),
                );
            }
        }
        if let Some(m) = ec.m {
            if m < 1 {
                d.error_at(
                    path!["erasure_coding", "m"],
                    "Value out of range",
                    format!("m = {m}: erasure coding needs at least 1 coding chunk"),
                );
            }
        }
        for (attr, v) in
            [("device_class", &ec.device_class), ("failure_domain", &ec.failure_domain), ("profile", &ec.profile)]
        {
            if let Some(v) = v {
                if v.is_empty() || v.chars().any(|ch| ch.is_whitespace() || ch == ',' || ch == '=') {
                    d.error_at(
                        path!["erasure_coding", attr],
                        "Invalid value",
                        format!("{v:?} must be one word (no spaces, ',' or '=')"),
                    );
                }
            }
        }
        // With erasure coding, size, min_size and crush_rule are the metadata pool's (PVE's
        // createpool): the data pool's come from the profile (k + m).
    }
    if c.size == Some(1) {
        d.error_at(
            path!["size"],
            "size 1 is refused by Ceph through PVE",
            "Ceph sets a pool to a single replica only with --yes-i-really-mean-it, which PVE never sends: the \
             setting would fail at apply (`Could not set: size`). Use 2 or more.",
        );
    }
    Timeouts::validate(&c.timeouts, d);
}

fn enum_check(d: &mut Diagnostics, attr: &str, v: &Option<String>, allowed: &[&str]) {
    if let Some(v) = v {
        if !allowed.contains(&v.as_str()) {
            d.error_at(
                AttrPath::root(attr),
                "Invalid value",
                format!("{attr} = {v:?}: must be one of {}", allowed.join(", ")),
            );
        }
    }
}

/// An API error as a diagnostic; parameter errors point at the attribute they belong to.
fn api_diag(summary: &str, e: ClientError) -> Diagnostics {
    let mut d = Diagnostics::new();
    if let Some(errs) = e.param_errors() {
        for (param, msg) in errs {
            let attr = param.replace('-', "_");
            d.error_at(AttrPath::root(&attr), summary, format!("PVE rejected {param}: {msg}"));
        }
    } else {
        d.push_error(summary, e.to_string());
    }
    d
}

fn task_diag(op: &str, name: &str, e: ClientError) -> Diagnostics {
    match &e {
        ClientError::TaskFailed { upid, exitstatus, log } => Diagnostics::error(
            format!("Ceph pool {op} failed"),
            format!(
                "Pool {name:?}: the PVE task {upid} ended with: {exitstatus}\nLast lines of its log:\n  {}",
                log.join("\n  ")
            ),
        ),
        _ => Diagnostics::error(format!("Ceph pool {op} did not finish"), format!("Pool {name:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(d: &Diagnostics) -> Vec<String> {
        d.0.iter().filter_map(|x| x.path.as_ref().map(|p| p.to_string())).collect()
    }

    #[test]
    fn validation_names_paths() {
        let s = State {
            name: Some("a b".into()),
            size: Some(1),
            min_size: Some(3),
            pg_num: Some(100),
            target_size: Some("10X".into()),
            erasure_coding: Some(ErasureCoding { k: Some(1), m: Some(0), ..Default::default() }),
            ..Default::default()
        };
        let mut d = Diagnostics::new();
        validate_pool(&s, &mut d);
        let p = paths(&d);
        for want in ["name", "min_size", "pg_num", "target_size", "erasure_coding.k", "erasure_coding.m", "size"] {
            assert!(p.contains(&want.to_string()), "{want} missing in {p:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size_bytes("1G"), Some(1 << 30));
        assert_eq!(size_bytes("1.5K"), Some(1536));
        assert_eq!(size_bytes("1024"), Some(1024));
        assert_eq!(size_bytes("G"), None);
        assert_eq!(size_bytes("1.G"), None);
        assert_eq!(size_bytes("1g"), None);
        assert_eq!(
            ec_string(&ErasureCoding {
                k: Some(2),
                m: Some(1),
                device_class: Some("ssd".into()),
                ..Default::default()
            }),
            "k=2,m=1,device-class=ssd"
        );
    }
}

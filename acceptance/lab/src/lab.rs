//! The running lab: shared state, schemas, tasks, faults, call counters and the attached
//! real peers (behind small traits so the emulator works with or without them).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::schema::{Product, Schema};
use crate::state::{now_ms, now_s, LabState};

/// Where pools really live when `--ceph` is on. The state file stays the model of PVE's view;
/// the backend sends the mon commands PVE sends (`PVE/Ceph/Tools.pm`: `create_pool`,
/// `set_pool`) to a real Ceph cluster, so Ceph's own rules (min_size reset on a size change, one
/// application per pool, the PG limit) come from Ceph itself, and reports what Ceph has.
pub trait PoolBackend: Send + Sync {
    /// `osd pool create NAME PG [erasure PROFILE]`; a pool of that name and type existing already
    /// is success, as in Ceph.
    fn create(&self, name: &str, pg_num: i64, ec_profile: Option<&str>) -> Result<(), String>;
    /// `osd pool set NAME KEY VALUE`, exactly as PVE sends it (no override flags).
    fn set(&self, name: &str, key: &str, value: &str) -> Result<(), String>;
    /// `osd pool application enable NAME APP` without `--yes-i-really-mean-it`, as PVE sends it.
    fn application_enable(&self, name: &str, app: &str) -> Result<(), String>;
    /// What an admin does by hand (drift): `osd pool set` with `--yes-i-really-mean-it` (size 1),
    /// and changing a pool's application (the old ones disabled, the new one enabled).
    fn set_by_hand(&self, name: &str, key: &str, value: &str) -> Result<(), String>;
    fn application_replace(&self, name: &str, app: &str) -> Result<(), String>;
    fn ec_profile_set(&self, name: &str, p: &crate::state::EcProfile) -> Result<(), String>;
    fn ec_profile_rm(&self, name: &str) -> Result<(), String>;
    fn remove(&self, name: &str) -> Result<(), String>;
    fn list(&self) -> Result<Vec<RealPool>, String>;
    fn stop(&self) {}
    fn conf(&self) -> Option<String> {
        None
    }
    /// `osd set|unset FLAG`, as PVE's `PUT /cluster/ceph/flags/{flag}` sends it.
    fn osd_flag(&self, _flag: &str, _set: bool) -> Result<(), String> {
        Err("this Ceph backend has no OSD flags".into())
    }
    /// The OSD map's flags (`osd dump`'s `flags`, split at commas).
    fn osd_flags(&self) -> Result<Vec<String>, String> {
        Err("this Ceph backend has no OSD flags".into())
    }
}

/// One pool as real Ceph reports it (`osd pool ls detail`, `osd crush rule dump`, `df`).
#[derive(Debug, Clone, Default)]
pub struct RealPool {
    pub name: String,
    pub id: i64,
    pub size: i64,
    pub min_size: i64,
    pub pg_num: i64,
    pub pg_num_min: Option<i64>,
    pub crush_rule: String,
    pub pg_autoscale_mode: String,
    pub target_size_bytes: Option<i64>,
    pub target_size_ratio: Option<f64>,
    pub applications: Vec<String>,
    pub ec_profile: Option<String>,
    pub bytes_used: i64,
    pub percent_used: f64,
}

/// A node's BMC as seen through Redfish.
#[derive(Debug, Clone, Default)]
pub struct BmcSystem {
    pub power_on: bool,
    pub boot_override_target: Option<String>,
    pub media_inserted: bool,
    pub media_image: Option<String>,
    /// What the second (removable) virtual medium holds: a node's seed.
    pub seed_media: Option<String>,
}

pub trait Bmc: Send + Sync {
    fn system(&self, uuid: &str) -> Result<BmcSystem, String>;
    fn set_power(&self, uuid: &str, on: bool) -> Result<(), String>;
    /// Ejects every virtual medium (the installer CD and the seed).
    fn eject(&self, uuid: &str) -> Result<(), String>;
    fn endpoint(&self) -> String;
    fn credentials(&self) -> (String, String);
    fn stop(&self) {}
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub upid: String,
    pub product: Product,
    pub store: String,
    pub node: String,
    pub wtype: String,
    pub id: String,
    pub user: String,
    pub pid: u64,
    pub pstart: u64,
    pub starttime: u64,
    pub endtime: Option<u64>,
    pub exitstatus: Option<String>,
    pub log: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRule {
    pub pattern: String,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub error_rate: f64,
    #[serde(default)]
    pub fail_tasks: f64,
    #[serde(default)]
    pub drop_rate: f64,
    /// PBS tasks started by matching requests run this much longer (to catch one running).
    #[serde(default)]
    pub task_ms: u64,
    #[serde(default)]
    pub seed: u64,
}

pub struct ActiveFault {
    pub rule: FaultRule,
    re: regex::Regex,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
}

/// What the fault rules decided for the tasks one request starts.
#[derive(Debug, Default, Clone, Copy)]
pub struct TaskFaults {
    /// The task fails (`command failed: injected fault`).
    pub fail: bool,
    /// The task's work takes this much longer.
    pub delay: std::time::Duration,
}

/// A task to start: whose it is and what it does (the UPID's fields).
#[derive(Debug, Clone, Copy)]
pub struct NewTask<'a> {
    pub product: Product,
    pub store: &'a str,
    pub node: &'a str,
    pub wtype: &'a str,
    pub wid: &'a str,
    /// The auth id that started it.
    pub user: &'a str,
}

/// What the fault rules decided for one request.
#[derive(Debug, Default, Clone, Copy)]
pub struct FaultDecision {
    pub latency_ms: u64,
    pub error: bool,
    pub fail_tasks: bool,
    pub drop: bool,
}

pub struct Lab {
    pub dir: PathBuf,
    /// The releases the lab answers as (fixed for the life of the lab).
    pub profiles: crate::profile::Profiles,
    state: Mutex<LabState>,
    pub pve_schema: Option<Schema>,
    pub pbs_schema: Option<Schema>,
    pub tasks: Mutex<BTreeMap<String, Task>>,
    pub faults: Mutex<Vec<Arc<ActiveFault>>>,
    pub calls: Mutex<BTreeMap<String, u64>>,
    pub pools: Option<Box<dyn PoolBackend>>,
    pub bmc: Option<Box<dyn Bmc>>,
    pub admin_endpoint: Mutex<String>,
    pub artifacts_endpoint: Mutex<String>,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Lab {
    pub fn new(
        dir: PathBuf,
        state: LabState,
        pve_schema: Option<Schema>,
        pbs_schema: Option<Schema>,
        pools: Option<Box<dyn PoolBackend>>,
        bmc: Option<Box<dyn Bmc>>,
    ) -> Lab {
        Lab {
            dir,
            profiles: state.options.profiles,
            state: Mutex::new(state),
            pve_schema,
            pbs_schema,
            tasks: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Vec::new()),
            calls: Mutex::new(BTreeMap::new()),
            pools,
            bmc,
            admin_endpoint: Mutex::new(String::new()),
            artifacts_endpoint: Mutex::new(String::new()),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, LabState> {
        lock(&self.state)
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Persist after a change; failures are logged (the in-memory state stays authoritative).
    pub fn save(&self, st: &LabState) {
        if let Err(e) = st.save(&self.state_path()) {
            tracing::error!(error = %e, "saving lab state");
        }
    }

    pub fn schema(&self, p: Product) -> Option<&Schema> {
        match p {
            Product::Pve => self.pve_schema.as_ref(),
            Product::Pbs => self.pbs_schema.as_ref(),
        }
    }

    pub fn count_call(&self, key: String) {
        *lock(&self.calls).entry(key).or_insert(0) += 1;
    }

    pub fn set_faults(&self, rules: Vec<FaultRule>) -> Result<(), String> {
        let mut out = Vec::new();
        for r in rules {
            let re = regex::Regex::new(&r.pattern).map_err(|e| format!("bad pattern '{}': {e}", r.pattern))?;
            let rng = rand_chacha::ChaCha8Rng::seed_from_u64(r.seed);
            out.push(Arc::new(ActiveFault { rule: r, re, rng: Mutex::new(rng) }));
        }
        *lock(&self.faults) = out;
        Ok(())
    }

    pub fn fault_rules(&self) -> Vec<FaultRule> {
        lock(&self.faults).iter().map(|f| f.rule.clone()).collect()
    }

    /// Deterministic per rule: each rule draws from its own seeded generator.
    pub fn decide_faults(&self, method_path: &str) -> FaultDecision {
        let mut d = FaultDecision::default();
        for f in lock(&self.faults).iter() {
            if !f.re.is_match(method_path) {
                continue;
            }
            let mut rng = lock(&f.rng);
            d.latency_ms += f.rule.latency_ms;
            if f.rule.drop_rate > 0.0 && rng.gen::<f64>() < f.rule.drop_rate {
                d.drop = true;
            }
            if f.rule.error_rate > 0.0 && rng.gen::<f64>() < f.rule.error_rate {
                d.error = true;
            }
            if f.rule.fail_tasks > 0.0 && rng.gen::<f64>() < f.rule.fail_tasks {
                d.fail_tasks = true;
            }
        }
        d
    }

    /// How much longer tasks started by this request run: the sum of the matching rules'
    /// `task_ms` (no randomness involved).
    pub fn task_delay(&self, method_path: &str) -> std::time::Duration {
        let ms = lock(&self.faults).iter().filter(|f| f.re.is_match(method_path)).map(|f| f.rule.task_ms).sum();
        std::time::Duration::from_millis(ms)
    }

    /// Registers a task and runs `op` in the background, like a PVE/PBS worker fork.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_task<F>(
        self: &Arc<Self>,
        product: Product,
        store: &str,
        node: &str,
        wtype: &str,
        wid: &str,
        user: &str,
        fail: bool,
        op: F,
    ) -> String
    where
        F: FnOnce(&Arc<Lab>) -> Result<Vec<String>, String> + Send + 'static,
    {
        self.spawn_task_logged(product, store, node, wtype, wid, user, fail, move |lab, log| {
            log.extend(op(lab)?);
            Ok(())
        })
    }

    /// [`spawn_task`](Self::spawn_task) for work that logs as it goes: what it logged stays in
    /// the task log when it fails (PVE's workers print each step before the error ends them).
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_task_logged<F>(
        self: &Arc<Self>,
        product: Product,
        store: &str,
        node: &str,
        wtype: &str,
        wid: &str,
        user: &str,
        fail: bool,
        op: F,
    ) -> String
    where
        F: FnOnce(&Arc<Lab>, &mut Vec<String>) -> Result<(), String> + Send + 'static,
    {
        let faults = TaskFaults { fail, delay: std::time::Duration::ZERO };
        self.spawn_task_with(faults, NewTask { product, store, node, wtype, wid, user }, op)
    }

    /// [`Lab::spawn_task_logged`] with the fault rules' whole say over the task: it fails, or it
    /// runs `delay` longer before its work is done.
    pub fn spawn_task_with<F>(self: &Arc<Self>, faults: TaskFaults, task: NewTask<'_>, op: F) -> String
    where
        F: FnOnce(&Arc<Lab>, &mut Vec<String>) -> Result<(), String> + Send + 'static,
    {
        let TaskFaults { fail, delay } = faults;
        let NewTask { product, store, node, wtype, wid, user } = task;
        let (pid, pstart) = {
            let mut st = self.state();
            let n = st.next_id();
            let pstart = st
                .store(store)
                .and_then(|s| s.node(node).map(|n| n.pstart))
                .or_else(|| st.store(store).map(|s| s.pbs.pstart))
                .unwrap_or(1);
            (10_000 + n, pstart)
        };
        let start = now_s();
        let user_field = user.to_string();
        let upid = match product {
            Product::Pve => {
                format!("UPID:{node}:{pid:08X}:{pstart:08X}:{start:08X}:{wtype}:{wid}:{user_field}:")
            }
            Product::Pbs => crate::pbs::Upid {
                node: node.to_string(),
                pid,
                pstart,
                task_id: pid & 0xffff,
                starttime: start,
                worker_type: wtype.to_string(),
                worker_id: (!wid.is_empty()).then(|| wid.to_string()),
                auth_id: user_field,
            }
            .to_string(),
        };
        let task = Task {
            upid: upid.clone(),
            product,
            store: store.to_string(),
            node: node.to_string(),
            wtype: wtype.to_string(),
            id: wid.to_string(),
            user: user.to_string(),
            pid,
            pstart,
            starttime: start,
            endtime: None,
            exitstatus: None,
            log: vec![format!("starting task {upid}")],
        };
        lock(&self.tasks).insert(upid.clone(), task);
        let lab = Arc::clone(self);
        let id = upid.clone();
        tokio::spawn(async move {
            // Like a forked worker: the caller gets the UPID before the work is done.
            tokio::time::sleep(std::time::Duration::from_millis(60) + delay).await;
            let lab2 = Arc::clone(&lab);
            let (res, lines) = if fail {
                (Err("command failed: injected fault".to_string()), Vec::new())
            } else {
                match tokio::task::spawn_blocking(move || {
                    let mut log = Vec::new();
                    (op(&lab2, &mut log), log)
                })
                .await
                {
                    Ok(r) => r,
                    Err(e) => (Err(format!("worker panicked: {e}")), Vec::new()),
                }
            };
            let mut tasks = lock(&lab.tasks);
            if let Some(t) = tasks.get_mut(&id) {
                t.log.extend(lines);
                match res {
                    Ok(()) => {
                        t.log.push("TASK OK".into());
                        t.exitstatus = Some("OK".into());
                    }
                    Err(e) => {
                        // PVE's fork_worker: one trailing newline trimmed, the others become
                        // spaces in the exit status (pve-common RESTEnvironment.pm).
                        let e = e.strip_suffix('\n').unwrap_or(&e).replace('\n', " ");
                        t.log.push(format!("TASK ERROR: {e}"));
                        t.exitstatus = Some(e);
                    }
                }
                t.endtime = Some(now_s());
            }
        });
        upid
    }

    pub fn task_counts(&self) -> Value {
        let tasks = lock(&self.tasks);
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        let (mut running, mut ok, mut failed) = (0, 0, 0);
        for t in tasks.values() {
            *by_type.entry(t.wtype.clone()).or_insert(0) += 1;
            match &t.exitstatus {
                None => running += 1,
                Some(s) if s == "OK" => ok += 1,
                Some(_) => failed += 1,
            }
        }
        json!({"total": tasks.len(), "running": running, "ok": ok, "failed": failed, "by_type": by_type})
    }

    pub fn now_ms(&self) -> u64 {
        now_ms()
    }
}

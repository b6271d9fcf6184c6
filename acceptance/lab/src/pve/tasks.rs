//! Task endpoints (`/nodes/{node}/tasks[/{upid}[/status|/log]]`) of PVE: the context a request
//! runs in ([`TaskScope`]) says which tasks it may see. PBS shows its tasks its own way
//! (`crate::pbs::tasks`).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use regex::Regex;

use serde_json::{json, Value};

use super::Cx;
use crate::api::{p_bool, p_int, p_str, ApiErr, ApiResult};
use crate::lab::{lock, Lab, Task};
use crate::routes::Params;
use crate::schema::Product;
use crate::state::now_s;

/// Which tasks a `/nodes/{node}/tasks` request may see, and whose API shows them.
pub(crate) trait TaskScope {
    const PRODUCT: Product;
    fn owns(&self, t: &Task) -> bool;
}

impl TaskScope for Cx {
    const PRODUCT: Product = Product::Pve;
    fn owns(&self, t: &Task) -> bool {
        t.store == self.store && t.node == self.node
    }
}

/// The `upid` path parameter.
fn upid(p: &Params) -> Result<String, ApiErr> {
    p_str(p, "upid").ok_or_else(|| ApiErr::new(501, "not implemented"))
}

/// The log file of a PVE task (pve-common `PVE::UPID::decode`, 8.x `PVE::Tools::upid_decode`):
/// under the directory named by the last hex digit of the start time; None when the UPID does
/// not parse.
fn pve_log_file(u: &str) -> Option<String> {
    static UPID: OnceLock<Regex> = OnceLock::new();
    let re = crate::formats::re(
        &UPID,
        r"^UPID:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?:[0-9A-Fa-f]{8}:[0-9A-Fa-f]{8,9}:([0-9A-Fa-f]{8}):[^:\s/]+:[^:\s/]*:[^:\s/]+:$",
    );
    let start = re.captures(u)?.get(1)?.as_str();
    Some(format!("/var/log/pve/tasks/{}/{u}", &start[7..]))
}

/// The task `u` names, if the scope may see it. PVE answers a UPID it cannot parse, or one
/// whose log is not on this node, with a parameter error (pve-manager `PVE/API2/Tasks.pm`
/// `read_task_status`).
fn find<'a, S: TaskScope>(tasks: &'a BTreeMap<String, Task>, scope: &S, u: &str) -> Result<&'a Task, ApiErr> {
    let pve = S::PRODUCT == Product::Pve;
    let parses = if pve { pve_log_file(u).is_some() } else { u.starts_with("UPID:") };
    if !parses {
        return Err(if pve {
            ApiErr::param("upid", "unable to parse worker upid")
        } else {
            ApiErr::die(format!("unable to parse worker upid '{u}'"))
        });
    }
    tasks.get(u).filter(|t| t.product == S::PRODUCT && scope.owns(t)).ok_or_else(|| {
        if pve {
            ApiErr::param("upid", "no such task")
        } else {
            ApiErr::die("no such task")
        }
    })
}

fn status_json(t: &Task) -> Value {
    let mut o = json!({
        "upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart, "starttime": t.starttime,
        "type": t.wtype, "id": t.id, "user": t.user.split('!').next().unwrap_or(&t.user),
        "status": if t.exitstatus.is_some() { "stopped" } else { "running" },
    });
    if t.user.contains('!') {
        o["tokenid"] = json!(t.user.split('!').nth(1));
    }
    if let Some(e) = &t.exitstatus {
        o["exitstatus"] = json!(e);
    }
    o
}

pub(crate) fn list<S: TaskScope>(lab: &Arc<Lab>, scope: &S, p: &Params) -> ApiResult {
    let tasks = lock(&lab.tasks);
    let limit = p_int(p, "limit").unwrap_or(50).max(0) as usize;
    let start = p_int(p, "start").unwrap_or(0).max(0) as usize;
    let typefilter = p_str(p, "typefilter");
    let only_running = p_str(p, "source").as_deref() == Some("active") || p_bool(p, "running").unwrap_or(false);
    let errors_only = p_bool(p, "errors").unwrap_or(false);
    let mut list: Vec<&Task> = tasks
        .values()
        .filter(|t| t.product == S::PRODUCT && scope.owns(t))
        .filter(|t| typefilter.as_ref().is_none_or(|f| &t.wtype == f))
        .filter(|t| !only_running || t.exitstatus.is_none())
        .filter(|t| !errors_only || t.exitstatus.as_deref().is_some_and(|e| e != "OK"))
        .collect();
    list.sort_by(|a, b| b.starttime.cmp(&a.starttime).then(b.pid.cmp(&a.pid)));
    let out: Vec<Value> = list
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|t| {
            let mut o = json!({"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart, "starttime": t.starttime, "user": t.user.split('!').next().unwrap_or(&t.user), "type": t.wtype, "id": t.id});
            if let Some(e) = &t.exitstatus {
                o["status"] = json!(e);
            }
            if let Some(e) = t.endtime {
                o["endtime"] = json!(e);
            }
            o
        })
        .collect();
    Ok(Value::Array(out))
}

/// A task's index: its subdirectories.
pub(crate) fn index<S: TaskScope>(lab: &Arc<Lab>, scope: &S, p: &Params) -> ApiResult {
    let u = upid(p)?;
    find(&lock(&lab.tasks), scope, &u)?;
    Ok(json!([{"name": "log"}, {"name": "status"}]))
}

pub(crate) fn status<S: TaskScope>(lab: &Arc<Lab>, scope: &S, p: &Params) -> ApiResult {
    let u = upid(p)?;
    Ok(status_json(find(&lock(&lab.tasks), scope, &u)?))
}

pub(crate) fn log<S: TaskScope>(lab: &Arc<Lab>, scope: &S, p: &Params) -> ApiResult {
    let u = upid(p)?;
    let tasks = lock(&lab.tasks);
    let found = find(&tasks, scope, &u);
    // `read_task_log`: `download` streams the file, so paging is refused and a missing file is
    // the open's error (the lab answers a download of an existing log like a read).
    let file = if S::PRODUCT == Product::Pve { pve_log_file(&u) } else { None };
    if let (Some(file), true) = (&file, p_bool(p, "download").unwrap_or(false)) {
        if p.contains_key("start") || p.contains_key("limit") {
            return Err(ApiErr::die("'download' cannot be used together with 'start' or 'limit' parameters"));
        }
        if found.is_err() {
            return Err(ApiErr::die(format!("Could not open file '{file}' - No such file or directory")));
        }
    }
    let t = match found {
        Ok(t) => t,
        // PVE's log reader has no existence check: the missing file is the log's one line.
        Err(_) if file.is_some() => {
            return Ok(json!([{"n": 1, "t": "unable to open file - No such file or directory"}]));
        }
        Err(e) => return Err(e),
    };
    let start = p_int(p, "start").unwrap_or(0).max(0) as usize;
    let limit = p_int(p, "limit").unwrap_or(50).max(0) as usize;
    Ok(Value::Array(
        t.log.iter().enumerate().skip(start).take(limit).map(|(i, l)| json!({"n": i + 1, "t": l})).collect(),
    ))
}

/// Stops a running task (it ends "interrupted by signal"); a finished one stays as it is.
pub(crate) fn stop<S: TaskScope>(lab: &Arc<Lab>, scope: &S, p: &Params) -> ApiResult {
    let u = upid(p)?;
    let tasks = lock(&lab.tasks);
    find(&tasks, scope, &u)?;
    drop(tasks);
    let mut tasks = lock(&lab.tasks);
    if let Some(t) = tasks.get_mut(&u) {
        if t.exitstatus.is_none() {
            t.exitstatus = Some("interrupted by signal".into());
            t.endtime = Some(now_s());
            t.log.push("TASK ERROR: interrupted by signal".into());
        }
    }
    Ok(Value::Null)
}

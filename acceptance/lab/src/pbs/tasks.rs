//! PBS worker tasks: the UPID (proxmox-schema `upid.rs`) and the task endpoints
//! (`/nodes/{node}/tasks[/{upid}[/status|/log]]`, proxmox-backup `src/api2/node/tasks.rs`).
//! The lab keeps one task table for PVE and PBS (`Lab::tasks`); these handlers show a store's
//! PBS tasks the way PBS does, and answer for UPIDs PBS never ran the way PBS does too (it
//! reads the task's log file, and a missing file is not a missing task).

use std::fmt;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::PbsCx;
use crate::api::{p_bool, p_int, p_str, ApiErr, ApiResult};
use crate::http::Resp;
use crate::lab::{lock, Lab, Task};
use crate::routes::Params;
use crate::schema::Product;
use crate::state::now_s;

/// `UPID:node:PID:PSTART:TASK_ID:STARTTIME:TYPE:ID:AUTHID:` — proxmox-schema `upid.rs`
/// (`UPID`, its `Display`, `escape_id`): hex in upper case, the worker id escaped like a
/// systemd unit name.
#[derive(Debug, Clone, PartialEq)]
pub struct Upid {
    pub node: String,
    pub pid: u64,
    pub pstart: u64,
    pub task_id: u64,
    pub starttime: u64,
    pub worker_type: String,
    /// Unescaped; `None` when empty.
    pub worker_id: Option<String>,
    pub auth_id: String,
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wid = self.worker_id.as_deref().map(escape_id).unwrap_or_default();
        write!(
            f,
            "UPID:{}:{:08X}:{:08X}:{:08X}:{:08X}:{}:{wid}:{}:",
            self.node, self.pid, self.pstart, self.task_id, self.starttime, self.worker_type, self.auth_id
        )
    }
}

impl Upid {
    /// A UPID the schema's pattern accepted (the request was validated before).
    pub fn parse(s: &str) -> Option<Upid> {
        let f: Vec<&str> = s.split(':').collect();
        let [upid, node, pid, pstart, task_id, starttime, wtype, wid, auth, end] = f.as_slice() else { return None };
        if *upid != "UPID" || !end.is_empty() {
            return None;
        }
        let hex = |h: &str| u64::from_str_radix(h, 16).ok();
        Some(Upid {
            node: node.to_string(),
            pid: hex(pid)?,
            pstart: hex(pstart)?,
            task_id: hex(task_id)?,
            starttime: hex(starttime)?,
            worker_type: wtype.to_string(),
            worker_id: (!wid.is_empty()).then(|| unescape_id(wid)),
            auth_id: auth.to_string(),
        })
    }
}

/// systemd's unit-name escaping as PBS applies it to worker ids: `/` becomes `-`; every byte
/// but `_ . 0-9 a-z A-Z` (and a leading `.`) becomes `\xNN` in lower-case hex.
pub fn escape_id(id: &str) -> String {
    let mut out = String::new();
    for (i, b) in id.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b'_' | b'.' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

fn unescape_id(s: &str) -> String {
    let mut bytes = Vec::new();
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        match (b, tail) {
            (b'\\', [b'x', h, l, more @ ..]) => {
                match u8::from_str_radix(&format!("{}{}", *h as char, *l as char), 16) {
                    Ok(v) => {
                        bytes.push(v);
                        rest = more;
                        continue;
                    }
                    Err(_) => bytes.push(b),
                }
            }
            (b'-', _) => bytes.push(b'/'),
            _ => bytes.push(b),
        }
        rest = tail;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The `upid` path parameter, parsed.
fn upid_of(p: &Params) -> Result<(String, Upid), ApiErr> {
    let s = p_str(p, "upid").unwrap_or_default();
    let u = Upid::parse(&s).ok_or_else(|| ApiErr::new(400, format!("unable to parse UPID '{s}'")))?;
    Ok((s, u))
}

/// The store's PBS task with this UPID, if the lab ran it.
fn known<'a>(tasks: &'a std::collections::BTreeMap<String, Task>, cx: &PbsCx, upid: &str) -> Option<&'a Task> {
    tasks.get(upid).filter(|t| t.product == Product::Pbs && t.store == cx.store)
}

/// `GET …/tasks/{upid}`: the directory index; PBS lists it for any well-formed UPID.
pub fn index(_: &Arc<Lab>, _: &PbsCx, p: &Params) -> ApiResult {
    upid_of(p)?;
    Ok(json!([{"subdir": "log"}, {"subdir": "status"}]))
}

/// `GET …/status`: what the UPID says, plus running/stopped. A task PBS has no log file for
/// is not running, and its state reads as `unknown` (`get_task_status`, `upid_read_status`).
pub fn status(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let (s, u) = upid_of(p)?;
    let (user, token) = match u.auth_id.split_once('!') {
        Some((user, tok)) => (user.to_string(), Some(tok.to_string())),
        None => (u.auth_id.clone(), None),
    };
    let mut o = json!({
        "upid": s, "node": u.node, "pid": u.pid, "pstart": u.pstart, "starttime": u.starttime,
        "type": u.worker_type, "id": u.worker_id, "user": user,
    });
    if let Some(t) = token {
        o["tokenid"] = json!(t);
    }
    let tasks = lock(&lab.tasks);
    match known(&tasks, cx, &s).map(|t| t.exitstatus.clone()) {
        Some(None) => o["status"] = json!("running"),
        Some(Some(exit)) => {
            o["status"] = json!("stopped");
            o["exitstatus"] = json!(exit);
        }
        None => {
            o["status"] = json!("stopped");
            o["exitstatus"] = json!("unknown");
        }
    }
    Ok(o)
}

/// `GET …/log`: built by hand, not by the formatter (`read_task_log`): the lines with their
/// time prefix, numbered from 1, `start` is the first line number wanted (0 and 1 both mean
/// the first), `limit` 0 means all; `total` counts the file's lines. No log file → the
/// open fails with the OS error.
pub fn log(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> Result<Resp, ApiErr> {
    let (s, _) = upid_of(p)?;
    let tasks = lock(&lab.tasks);
    let t = known(&tasks, cx, &s).ok_or_else(|| ApiErr::new(400, "No such file or directory (os error 2)"))?;
    let start = p_int(p, "start").unwrap_or(0).max(1) as usize;
    let limit = match p_int(p, "limit").unwrap_or(50) {
        0 => usize::MAX,
        n => n.max(0) as usize,
    };
    let last = t.log.len();
    let lines: Vec<Value> = t
        .log
        .iter()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(n, _)| *n >= start)
        .take(limit)
        .map(|(n, line)| {
            // The lab keeps no time per line: the last line of a finished task is its end.
            let at = if n == last { t.endtime.unwrap_or(t.starttime) } else { t.starttime };
            json!({"n": n, "t": format!("{}: {line}", rfc3339(at))})
        })
        .collect();
    let mut body = json!({"data": lines, "total": last, "success": 1});
    if p_bool(p, "test-status").unwrap_or(false) {
        body["active"] = json!(t.exitstatus.is_none());
    }
    let mut r = Resp::json(200, &body);
    r.content_type = "application/json";
    Ok(r)
}

/// `DELETE …/{upid}`: a fire-and-forget abort, 200 also for tasks that are not running or
/// never existed (`stop_task`).
pub fn stop(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let (s, _) = upid_of(p)?;
    let mut tasks = lock(&lab.tasks);
    if let Some(t) = tasks.get_mut(&s).filter(|t| t.product == Product::Pbs && t.store == cx.store) {
        if t.exitstatus.is_none() {
            t.exitstatus = Some("interrupted by signal".into());
            t.endtime = Some(now_s());
            t.log.push("TASK ERROR: interrupted by signal".into());
        }
    }
    Ok(Value::Null)
}

/// `GET /nodes/{node}/tasks`: newest first, snake_case fields, `node` always `localhost`,
/// `user` the full auth id, `worker_id` null when empty; `total` beside `data` is the count
/// plus `start`, plus one when the page came back full (`list_tasks`, `into_task_list_item`).
pub fn list(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> super::AttrsResult {
    let tasks = lock(&lab.tasks);
    let start = p_int(p, "start").unwrap_or(0).max(0) as usize;
    let limit = p_int(p, "limit").unwrap_or(50).max(0) as usize;
    let typefilter = p_str(p, "typefilter");
    let store = p_str(p, "store");
    let running = p_bool(p, "running").unwrap_or(false);
    let errors = p_bool(p, "errors").unwrap_or(false);
    let mut mine: Vec<&Task> = tasks
        .values()
        .filter(|t| t.product == Product::Pbs && t.store == cx.store)
        .filter(|t| typefilter.as_ref().is_none_or(|f| t.wtype.contains(f.as_str())))
        .filter(|t| store.as_ref().is_none_or(|s| t.id == *s))
        .filter(|t| !running || t.exitstatus.is_none())
        .filter(|t| !errors || t.exitstatus.as_deref().is_some_and(|e| e != "OK"))
        .collect();
    mine.sort_by(|a, b| b.starttime.cmp(&a.starttime).then(b.pid.cmp(&a.pid)));
    let page: Vec<Value> = mine
        .into_iter()
        .skip(start)
        .take(if limit == 0 { usize::MAX } else { limit })
        .map(|t| {
            let mut o = json!({
                "upid": t.upid, "node": "localhost", "pid": t.pid, "pstart": t.pstart, "starttime": t.starttime,
                "worker_type": t.wtype, "worker_id": (!t.id.is_empty()).then_some(&t.id), "user": t.user,
            });
            if let (Some(end), Some(exit)) = (t.endtime, &t.exitstatus) {
                o["endtime"] = json!(end);
                o["status"] = json!(exit);
            }
            o
        })
        .collect();
    let full = limit != 0 && page.len() == limit;
    let total = page.len() + start + usize::from(full);
    let mut attrs = Map::new();
    attrs.insert("total".into(), json!(total));
    Ok((Value::Array(page), attrs))
}

/// `2024-06-05T12:34:56+00:00` for a Unix time (the lab runs in UTC).
pub fn rfc3339(t: u64) -> String {
    let at = i64::try_from(t).ok().and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok());
    let at = at.unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_are_escaped_like_systemd_units() {
        assert_eq!(escape_id("store1"), "store1");
        assert_eq!(escape_id("edge-ds"), "edge\\x2dds");
        assert_eq!(escape_id("remote:store:ns/a"), "remote\\x3astore\\x3ans-a");
        assert_eq!(escape_id(".hidden"), "\\x2ehidden");
        assert_eq!(unescape_id("edge\\x2dds"), "edge-ds");
    }

    #[test]
    fn upids_print_and_parse() {
        let u = Upid {
            node: "elsa".into(),
            pid: 0x4F37,
            pstart: 0x39E469,
            task_id: 0,
            starttime: 0x5CA78B83,
            worker_type: "garbage_collection".into(),
            worker_id: None,
            auth_id: "root@pam".into(),
        };
        let s = u.to_string();
        assert_eq!(s, "UPID:elsa:00004F37:0039E469:00000000:5CA78B83:garbage_collection::root@pam:");
        assert_eq!(Upid::parse(&s), Some(u));
    }

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(rfc3339(1_717_590_896), "2024-06-05T12:34:56+00:00");
    }
}

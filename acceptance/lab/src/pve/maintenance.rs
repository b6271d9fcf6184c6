//! Node maintenance: Ceph's OSD flags (`/cluster/ceph/flags[/{flag}]`, pve-manager
//! `PVE/API2/Cluster/Ceph.pm` `get_all_flags`, `get_flag`, `update_flag`) and a node reboot
//! (`POST /nodes/{node}/status command=reboot`, `PVE/API2/Nodes.pm` `node_cmd`).
//!
//! With real Ceph (`--ceph`) the flags are the real cluster's: PVE sends `osd set|unset FLAG`
//! as a mon command and reads them back from `osd dump`, and so does the lab. Without it they
//! live in the store's model.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{check_ceph, check_rados, mutate, store_mut, Cx};
use crate::api::{p_bool, p_str, ApiErr, ApiResult};
use crate::lab::Lab;
use crate::routes::Params;

/// The flags PVE offers (`PVE::Ceph::Tools::get_possible_osd_flags`), with its descriptions.
const FLAGS: &[(&str, &str)] = &[
    ("nobackfill", "Backfilling of PGs is suspended."),
    ("nodeep-scrub", "Deep Scrubbing is disabled."),
    ("nodown", "OSD failure reports are being ignored, such that the monitors will not mark OSDs down."),
    ("noin", "OSDs that were previously marked out will not be marked back in when they start."),
    ("noout", "OSDs will not automatically be marked out after the configured interval."),
    ("norebalance", "Rebalancing of PGs is suspended."),
    ("norecover", "Recovery of PGs is suspended."),
    ("noscrub", "Scrubbing is disabled."),
    ("notieragent", "Cache tiering activity is suspended."),
    ("noup", "OSDs are not allowed to start."),
    ("pause", "Pauses read and writes."),
];

/// The OSD map flags Ceph's health raises `OSDMAP_FLAGS` for (ceph `src/osd/OSDMap.cc`
/// `OSDMap::check_health`); the map's other flags (`sortbitwise`, `recovery_deletes`, …) are
/// normal.
const HEALTH_FLAGS: &[&str] = &[
    "nobackfill",
    "nodeep-scrub",
    "nodown",
    "noin",
    "noout",
    "norebalance",
    "norecover",
    "noscrub",
    "nosnaptrim",
    "notieragent",
    "noup",
    "pauserd",
    "pausewr",
];

/// After the API call `reboot` waits this long before it reboots (`(sleep 2;/sbin/reboot)&`).
pub const REBOOT_AFTER_MS: u64 = 2000;
/// How long a reboot has the node down in the lab (real hardware: minutes).
pub const REBOOT_DOWN_MS: u64 = 3000;

/// `pause` sets both `pauserd` and `pausewr`; PVE reads it back as `pauserd`
/// (`get_real_flag_name`).
fn real_names(flag: &str) -> Vec<&str> {
    if flag == "pause" {
        vec!["pauserd", "pausewr"]
    } else {
        vec![flag]
    }
}

/// The OSD map's flags as `osd dump` shows them: the real cluster's, or the model's.
pub(super) fn osd_flags(lab: &Lab, store: &str) -> Result<Vec<String>, ApiErr> {
    match &lab.pools {
        Some(backend) => backend.osd_flags().map_err(|e| ApiErr::die(format!("mon_command failed - {e}"))),
        None => {
            let st = lab.state();
            let s = st.store(store).ok_or_else(|| ApiErr::die("store vanished"))?;
            Ok(s.ceph_flags.iter().cloned().collect())
        }
    }
}

/// The `OSDMAP_FLAGS` health check for `flags`, worded as Ceph does: the raised flags joined
/// with commas (in name order), `flag(s) set`.
pub(super) fn flags_check(flags: &[String]) -> Option<Value> {
    let mut raised: Vec<&str> = flags.iter().map(String::as_str).filter(|f| HEALTH_FLAGS.contains(f)).collect();
    raised.sort_unstable();
    if raised.is_empty() {
        return None;
    }
    Some(json!({
        "severity": "HEALTH_WARN",
        "summary": {"message": format!("{} flag(s) set", raised.join(",")), "count": raised.len()},
        "detail": [], "muted": false,
    }))
}

fn check(lab: &Lab, cx: &Cx) -> Result<(), ApiErr> {
    let st = lab.state();
    check_ceph(&st, cx)?;
    check_rados(&st, cx)
}

/// `GET /cluster/ceph/flags`: every flag PVE knows, set or not.
pub(super) fn list(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    check(lab, cx)?;
    let set = osd_flags(lab, &cx.store)?;
    let out: Vec<Value> = FLAGS
        .iter()
        .map(|(name, description)| {
            let on = real_names(name).first().is_some_and(|r| set.iter().any(|s| s == r));
            json!({"name": name, "description": description, "value": i64::from(on)})
        })
        .collect();
    Ok(Value::Array(out))
}

/// `GET /cluster/ceph/flags/{flag}`: 1 or 0.
pub(super) fn get(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    check(lab, cx)?;
    let flag = p_str(p, "flag").unwrap_or_default();
    let set = osd_flags(lab, &cx.store)?;
    let on = real_names(&flag).first().is_some_and(|r| set.iter().any(|s| s == r));
    Ok(json!(i64::from(on)))
}

/// `PUT /cluster/ceph/flags/{flag}` (`value`): one mon command, synchronous, `null`. Setting
/// a flag that is set already is no error (Ceph answers `noout is set` either way).
pub(super) fn update(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    check(lab, cx)?;
    let flag = p_str(p, "flag").unwrap_or_default();
    let on = p_bool(p, "value").unwrap_or(false);
    match &lab.pools {
        Some(backend) => {
            backend.osd_flag(&flag, on).map_err(|e| ApiErr::die(format!("mon_command failed - {e}")))?;
        }
        None => mutate(lab, |st| {
            let s = store_mut(st, &cx.store)?;
            for f in real_names(&flag) {
                if on {
                    s.ceph_flags.insert(f.to_string());
                } else {
                    s.ceph_flags.remove(f);
                }
            }
            Ok(())
        })?,
    }
    Ok(Value::Null)
}

/// `command=reboot`: PVE starts `(sleep 2;/sbin/reboot)&` and answers `null` at once, so the
/// node goes on answering for two seconds, then is gone (its API, its cluster membership, its
/// Ceph daemons) for the reboot, and comes back with a new boot time.
pub(super) fn reboot(lab: &Arc<Lab>, cx: &Cx) -> ApiResult {
    let now = lab.now_ms();
    mutate(lab, |st| {
        let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
        // A reboot asked while one is under way replaces it (the machine reboots once more).
        n.reboot.down_at_ms = Some(now + REBOOT_AFTER_MS);
        n.reboot.up_at_ms = Some(now + REBOOT_AFTER_MS + REBOOT_DOWN_MS);
        n.reboot.count += 1;
        tracing::info!(node = %cx.node, count = n.reboot.count, "reboot asked");
        Ok(Value::Null)
    })
}

/// What the admin API reports of a node's reboots.
pub fn reboot_summary(n: &crate::state::NodeState, now_ms: u64) -> Value {
    let mut o = Map::new();
    o.insert("count".into(), json!(n.reboot.count));
    o.insert("rebooting".into(), json!(n.rebooting(now_ms)));
    o.insert("booted_at".into(), json!(n.booted_at(now_ms)));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_check_words_like_ceph() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(flags_check(&f(&["sortbitwise", "recovery_deletes", "purged_snapdirs"])).is_none());
        let c = flags_check(&f(&["sortbitwise", "noout"])).expect("check");
        assert_eq!(c["summary"]["message"], "noout flag(s) set");
        let c = flags_check(&f(&["noscrub", "noout"])).expect("check");
        assert_eq!(c["summary"]["message"], "noout,noscrub flag(s) set");
        assert_eq!(c["summary"]["count"], 2);
    }
}

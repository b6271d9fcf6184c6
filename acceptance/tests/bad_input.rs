//! Bad input, table-driven: each case is one resource with one mistake. `terraform validate
//! -json` must report an error (or, where noted, a warning) whose source snippet is the line of
//! the offending attribute, i.e. the diagnostic carries the attribute path, and whose text says
//! what is wrong. No lab needed: validation is offline.

use edge_acceptance::{Tf, Value};

struct Case {
    /// Resource type and body (one attribute per line).
    ty: &'static str,
    body: &'static str,
    /// Text the highlighted source line must contain (the attribute, or its block when the
    /// attribute is missing from the configuration).
    line: &'static str,
    /// Text the summary or detail must contain.
    says: &'static str,
}

const fn c(ty: &'static str, body: &'static str, line: &'static str, says: &'static str) -> Case {
    Case { ty, body, line, says }
}

const POOL: &str = "edge_ceph_pool";
const JOB: &str = "edge_pbs_job";

const CASES: &[Case] = &[
    // edge_ceph_pool
    c(POOL, "node = \"pve1\"\nname = \"bad/name\"", "name = \"bad/name\"", "no ':', '/' or whitespace"),
    c(POOL, "node = \"pve1\"\nname = \"has space\"", "name = \"has space\"", "whitespace"),
    c(POOL, "node = \"-pve1\"\nname = \"p\"", "node = \"-pve1\"", "not a PVE node name"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nsize = 0", "size = 0", "between 1 and 7"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nsize = 8", "size = 8", "between 1 and 7"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nmin_size = 9", "min_size = 9", "between 1 and 7"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nsize = 2\nmin_size = 3", "min_size = 3", "min_size = 3 but size = 2"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\npg_num = 0", "pg_num = 0", "between 1 and 32768"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\npg_num = 40000", "pg_num = 40000", "between 1 and 32768"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\npg_num_min = 40000", "pg_num_min = 40000", "at most 32768"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\npg_num = 32\npg_num_min = 64", "pg_num_min = 64", "larger than pg_num"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\npg_autoscale_mode = \"maybe\"", "pg_autoscale_mode", "on, off, warn"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\napplication = \"nfs\"", "application = \"nfs\"", "rbd, cephfs, rgw"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\ntarget_size = \"10X\"", "target_size = \"10X\"", "K, M, G or T"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\ntarget_size_ratio = -1", "target_size_ratio = -1", "0 or more"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\ncrush_rule = \"a b\"", "crush_rule = \"a b\"", "not a CRUSH rule"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nerasure_coding {\nk = 1\nm = 1\n}", "k = 1", "at least 2 data chunks"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nerasure_coding {\nk = 2\nm = 0\n}", "m = 0", "at least 1 coding chunk"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nerasure_coding {\nk = 2\nm = 1\ndevice_class = \"a b\"\n}", "device_class", "one word"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nsize = 1", "size = 1", "yes-i-really-mean-it"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\ntimeouts {\ncreate = \"5 minutes\"\n}", "create = \"5 minutes\"", "not a duration"),
    // edge_pbs_job
    c(JOB, "id = \"j\"\nschedule = \"mon..fry 02:00\"\nprune {\nstore = \"s\"\n}", "schedule", "\"fry\" is not a weekday"),
    c(JOB, "id = \"j\"\nschedule = \"*-*-* 25:00\"\nprune {\nstore = \"s\"\n}", "schedule", "hour 25"),
    c(JOB, "id = \"j\"\nschedule = \"daily 02:00\"\nprune {\nstore = \"s\"\n}", "schedule", "stands alone"),
    c(JOB, "id = \"j\"\nschedule = \"sat *-1..7..9 15:00\"\nprune {\nstore = \"s\"\n}", "schedule", "two ends"),
    c(JOB, "id = \"bad id!\"\nschedule = \"daily\"\nsync {\nstore = \"a\"\nremote_store = \"b\"\n}", "id = \"bad id!\"", "Invalid job ID"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nverify {\nstore = \"v\"\n}\nprune {\nstore = \"s\"\n}", "store = \"s\"", "exactly one of"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"1bad\"\nall = true\n}", "storage = \"1bad\"", "storage ID"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"pbs\"\nall = true\nmode = \"fast\"\n}", "mode = \"fast\"", "snapshot, suspend, stop"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"pbs\"\nall = true\ncompress = \"xz\"\n}", "compress = \"xz\"", "gzip"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"pbs\"\nvmids = [100, 5]\n}", "vmids = [100, 5]", "from 100"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"pbs\"\n}", "backup {", "exactly one of vmids"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"pbs\"\nall = true\nprune_backups = { keep_forever = 1 }\n}", "keep_forever", "Unknown retention key"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"pbs\"\nvmids = [100]\nexclude = [101]\n}", "exclude = [101]", "all = true or pool"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"pbs\"\nall = true\nnotification_mode = \"email\"\n}", "notification_mode", "notification-system"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nsync {\nstore = \"a\"\nremote_store = \"b\"\nsync_direction = \"both\"\n}", "sync_direction", "pull, push"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nsync {\nstore = \"a\"\nremote_store = \"b\"\ngroup_filter = [\"type:lxc\"]\n}", "group_filter", "type:vm|ct|host"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nsync {\nstore = \"a\"\nremote_store = \"b\"\nrate_in = \"fast\"\n}", "rate_in = \"fast\"", "10MiB"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nsync {\nstore = \"a\"\nremote_store = \"b\"\ntransfer_last = 0\n}", "transfer_last = 0", "between 1"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nsync {\nstore = \"a\"\nremote_store = \"a\"\n}", "remote_store = \"a\"", "different source"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nsync {\nstore = \"a\"\nremote_store = \"b\"\nremote_ns = \"x//y\"\n}", "remote_ns", "at most 8 levels"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\ndisable = true\nsync {\nstore = \"a\"\nremote_store = \"b\"\n}", "disable = true", "no disable switch"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nverify {\nstore = \"bad store\"\n}", "store = \"bad store\"", "Invalid datastore name"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nverify {\nstore = \"s\"\nmax_depth = 9\n}", "max_depth = 9", "between 0 and 7"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nverify {\nstore = \"s\"\noutdated_after = -1\n}", "outdated_after = -1", "between 0"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nprune {\nstore = \"s\"\nkeep_last = 0\n}", "keep_last = 0", "between 1"),
    c(JOB, "id = \"s1\"\nschedule = \"daily\"\ngc {\nstore = \"s2\"\n}", "store = \"s2\"", "must equal id"),
    c(JOB, "id = \"s1\"\nschedule = \"daily\"\ncomment = \"x\"\ngc {}", "comment = \"x\"", "no comment"),
];

fn config() -> String {
    let mut hcl = String::from(
        "terraform {\n  required_providers { edge = { source = \"edgeform/edge\" } }\n}\nprovider \"edge\" {}\n",
    );
    for (i, case) in CASES.iter().enumerate() {
        hcl.push_str(&format!("\nresource \"{}\" \"c{i}\" {{\n{}\n}}\n", case.ty, case.body));
    }
    // A warning, not an error: pg_num that is not a power of two.
    hcl.push_str("\nresource \"edge_ceph_pool\" \"warn\" {\nnode = \"pve1\"\nname = \"p\"\npg_num = 100\n}\n");
    hcl
}

#[test]
fn every_bad_input_names_its_attribute() {
    assert!(CASES.len() >= 30, "at least 30 cases");
    let tf = Tf::new(&config());
    tf.init();
    let r = tf.run(&["validate", "-json", "-no-color"]);
    let out: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("validate -json: {e}\n{}", r.output()));
    let diags = out["diagnostics"].as_array().cloned().unwrap_or_default();
    let of = |name: &str| -> Vec<&Value> {
        let ctx = format!("\"{name}\"");
        diags.iter().filter(|d| d["snippet"]["context"].as_str().is_some_and(|c| c.ends_with(&ctx))).collect()
    };
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let name = format!("c{i}");
        let mine = of(&name);
        let hit = mine.iter().any(|d| {
            let text = format!("{} {}", d["summary"].as_str().unwrap_or(""), d["detail"].as_str().unwrap_or(""));
            d["severity"] == "error"
                && d["snippet"]["code"].as_str().is_some_and(|code| code.contains(case.line))
                && text.contains(case.says)
        });
        if !hit {
            failures.push(format!(
                "case {i} ({} {:?}): want line ~{:?} saying {:?}, got {mine:#?}",
                case.ty, case.body, case.line, case.says
            ));
        }
    }
    let warn = of("warn");
    assert!(
        warn.iter().any(|d| d["severity"] == "warning"
            && d["snippet"]["code"].as_str().is_some_and(|c| c.contains("pg_num = 100"))
            && d["detail"].as_str().is_some_and(|t| t.contains("power of two"))),
        "pg_num warning: {warn:#?}"
    );
    assert!(!warn.iter().any(|d| d["severity"] == "error"), "a pg_num warning must not be an error: {warn:#?}");
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

//! Nightly evidence files: `audit/edge/YYYY-MM-DD.json`, one per day for the fleet.
//!
//! Each file is a DSSE envelope (signed with the same Nix-format Ed25519 keys as releases)
//! around an in-toto Statement v1 whose predicate ([`Day`]) holds every store's evidence record
//! of that day ([`crate::evidence`]), the stores expected (the inventory) and why any is
//! missing, the day's rollout decisions and the patch-drift table. Subjects: each store's
//! record by digest, and the previous day's file by the SHA-256 of its bytes — so the files
//! form a chain, and [`verify_dir`] says exactly which day (and store) is wrong when a file is
//! edited, replaced, re-signed with another key, removed, or a store left out. Write-once
//! storage (object lock, WORM) is the deployment's job; the chain and the signatures make any
//! change detectable, also by third-party tools (`securesystemslib`'s DSSE verifier).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use edge_images::dsse::{DsseError, Envelope, Statement, Subject};
use edge_images::hash::Sha256Hash;
use edge_images::keys::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use time::{Date, Duration};

use crate::drift::Table;
use crate::evidence::{record_digest, StoreEvidence};
use crate::restore::RestoreOutcome;

pub const PREDICATE_TYPE: &str = "https://edgeform.dev/attestations/audit-day/v1";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0} exists: evidence files are written once (a day is never rewritten)")]
    Exists(PathBuf),
    #[error("{date}: the chain would skip {missing}: write those days first (each may say why evidence is missing)")]
    Gap { date: String, missing: String },
    #[error("{date}: {latest} is newer: days are written in order")]
    Order { date: String, latest: String },
    #[error("{0}")]
    Invalid(String),
}

/// The previous day's file, by name and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Missing {
    pub store: String,
    pub reason: String,
}

/// The predicate of a day's Statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Day {
    /// `YYYY-MM-DD` (UTC), the file's name.
    pub date: String,
    pub previous: Option<Link>,
    pub written_at: String,
    /// Every store that should have evidence this day.
    pub inventory: Vec<String>,
    pub stores: Vec<StoreEvidence>,
    /// Inventory stores without a record, each with the reason.
    pub missing: Vec<Missing>,
    /// Rollout decisions taken this day (the hub's record), oldest first.
    pub decisions: Vec<serde_json::Value>,
    /// Patch drift as of this day, when a release catalogue was given.
    pub patch: Option<Table>,
}

pub fn file_name(date: Date) -> String {
    format!("{date}.json")
}

fn parse_date(s: &str) -> Option<Date> {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

/// The day files in `dir` by date (other files are ignored), and names that look like day
/// files but are not valid dates.
fn day_files(dir: &Path) -> Result<BTreeMap<Date, PathBuf>, AuditError> {
    let mut out = BTreeMap::new();
    let rd = std::fs::read_dir(dir).map_err(|e| AuditError::Io(dir.to_path_buf(), e))?;
    for e in rd {
        let e = e.map_err(|e| AuditError::Io(dir.to_path_buf(), e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(d) = name.strip_suffix(".json").and_then(parse_date) {
            out.insert(d, e.path());
        }
    }
    Ok(out)
}

fn sha256_of(path: &Path) -> Result<String, AuditError> {
    let (h, _) = edge_images::hash::sha256_file(path).map_err(|e| AuditError::Io(path.to_path_buf(), e))?;
    Ok(h.to_hex())
}

/// What goes into one day's file.
pub struct DayInput {
    pub date: Date,
    pub inventory: Vec<String>,
    pub records: Vec<StoreEvidence>,
    /// Reasons for stores without a record (others get "no evidence was collected").
    pub missing_reasons: BTreeMap<String, String>,
    pub decisions: Vec<serde_json::Value>,
    pub patch: Option<Table>,
}

/// Writes `dir/YYYY-MM-DD.json`, linked to the previous day's file, signed with `keys`.
/// Refuses to rewrite a day, to write out of order, or to skip a day.
pub fn write_day(dir: &Path, input: DayInput, keys: &[&SecretKey], written_at: String) -> Result<PathBuf, AuditError> {
    std::fs::create_dir_all(dir).map_err(|e| AuditError::Io(dir.to_path_buf(), e))?;
    let path = dir.join(file_name(input.date));
    if path.exists() {
        return Err(AuditError::Exists(path));
    }
    let files = day_files(dir)?;
    let previous = match files.last_key_value() {
        None => None,
        Some((d, _)) if *d > input.date => {
            return Err(AuditError::Order { date: input.date.to_string(), latest: d.to_string() })
        }
        Some((d, p)) => {
            if *d != input.date - Duration::days(1) {
                return Err(AuditError::Gap {
                    date: input.date.to_string(),
                    missing: format!("{} to {}", *d + Duration::days(1), input.date - Duration::days(1)),
                });
            }
            Some(Link { file: file_name(*d), sha256: sha256_of(p)? })
        }
    };
    let inventory: BTreeSet<String> = input.inventory.into_iter().collect();
    let mut stores = input.records;
    stores.sort_by(|a, b| a.store.cmp(&b.store));
    for w in stores.windows(2) {
        if w[0].store == w[1].store {
            return Err(AuditError::Invalid(format!("two records for {}", w[0].store)));
        }
    }
    if let Some(s) = stores.iter().find(|s| !inventory.contains(&s.store)) {
        return Err(AuditError::Invalid(format!("{} has a record but is not in the inventory", s.store)));
    }
    let have: BTreeSet<&str> = stores.iter().map(|s| s.store.as_str()).collect();
    let missing = inventory
        .iter()
        .filter(|s| !have.contains(s.as_str()))
        .map(|s| Missing {
            store: s.clone(),
            reason: input.missing_reasons.get(s).cloned().unwrap_or_else(|| "no evidence was collected".into()),
        })
        .collect();
    let mut subject: Vec<Subject> =
        stores.iter().map(|s| Subject::sha256(&format!("store/{}", s.store), &record_digest(s))).collect();
    if let Some(l) = &previous {
        subject.push(Subject::sha256(&format!("audit/edge/{}", l.file), &l.sha256));
    }
    if subject.is_empty() {
        // in-toto requires a subject: a day with no records is about its inventory.
        let inv = serde_json::to_vec(&inventory).unwrap_or_default();
        subject.push(Subject::sha256("inventory", &Sha256Hash::digest(&inv).to_hex()));
    }
    let day = Day {
        date: input.date.to_string(),
        previous,
        written_at,
        inventory: inventory.into_iter().collect(),
        stores,
        missing,
        decisions: input.decisions,
        patch: input.patch,
    };
    let predicate = serde_json::to_value(&day).map_err(|e| AuditError::Invalid(e.to_string()))?;
    let env = Statement::new(subject, PREDICATE_TYPE, predicate).sign(keys);
    crate::files::write_atomic(&path, &env.to_json()).map_err(|e| AuditError::Invalid(e.to_string()))?;
    Ok(path)
}

/// One thing wrong, located: the day (file) and, where it is about one, the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub date: String,
    pub store: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.store {
            Some(s) => write!(f, "{} {}: {}", self.date, s, self.message),
            None => write!(f, "{}: {}", self.date, self.message),
        }
    }
}

/// What a verified chain says, day by day (for people: drift found, restore results).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    pub first: Option<String>,
    pub last: Option<String>,
    pub days: usize,
    pub signed_by: BTreeSet<String>,
    pub problems: Vec<Problem>,
    /// Findings in valid evidence: drift outside Git, failed restore tests, patch SLO breaches,
    /// stores without evidence.
    pub findings: Vec<Problem>,
}

/// Options of [`verify_dir`].
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The chain must start on this day (older files were removed after their retention): its
    /// first file may link to a file that is no longer there.
    pub since: Option<Date>,
    /// The chain must reach this day: a missing last day is otherwise invisible.
    pub until: Option<Date>,
}

/// Checks every day file in `dir`: signature by `threshold` trusted keys, in-toto Statement of
/// the audit predicate, the date, the link to the previous day (name and hash of its bytes),
/// the subjects against the records, and that every inventory store has a record or a stated
/// reason. Never stops at the first problem: all of them are listed with their day and store.
pub fn verify_dir(
    dir: &Path,
    trusted: &[PublicKey],
    threshold: usize,
    expect: &Expect,
) -> Result<Verification, AuditError> {
    let files = day_files(dir)?;
    let mut v = Verification { days: files.len(), ..Default::default() };
    let problem = |v: &mut Verification, date: &Date, store: Option<&str>, message: String| {
        v.problems.push(Problem { date: date.to_string(), store: store.map(str::to_string), message })
    };
    let (Some(first), Some(last)) = (files.keys().next().copied(), files.keys().next_back().copied()) else {
        return Err(AuditError::Invalid(format!("{}: no evidence files (YYYY-MM-DD.json)", dir.display())));
    };
    v.first = Some(first.to_string());
    v.last = Some(last.to_string());
    if let Some(since) = expect.since {
        if first > since {
            let mut d = since;
            while d < first {
                problem(&mut v, &d, None, format!("missing: no {} (the chain starts at {first})", file_name(d)));
                d += Duration::days(1);
            }
        }
    }
    if let Some(until) = expect.until {
        let mut d = last + Duration::days(1);
        while d <= until {
            problem(&mut v, &d, None, format!("missing: no {} (the chain ends at {last})", file_name(d)));
            d += Duration::days(1);
        }
    }
    // Days between the first and the last that have no file.
    let mut d = first;
    while d <= last {
        if !files.contains_key(&d) {
            problem(&mut v, &d, None, format!("missing: {} was removed or never written", file_name(d)));
        }
        d += Duration::days(1);
    }
    for (date, path) in &files {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                problem(&mut v, date, None, format!("cannot read {}: {e}", path.display()));
                continue;
            }
        };
        let env = match Envelope::from_json(&bytes) {
            Ok(e) => e,
            Err(e) => {
                problem(&mut v, date, None, e.to_string());
                continue;
            }
        };
        // The signature first; a refused file is still read (unverified) so the rest of what
        // it claims can be checked and located.
        let statement = match Statement::verify(&env, trusted, threshold, Some(PREDICATE_TYPE)) {
            Ok((st, by)) => {
                v.signed_by.extend(by);
                Some(st)
            }
            Err(e) => {
                let msg = match &e {
                    DsseError::BadSignature(k) => {
                        format!("signature by {k:?} does not verify: the file was changed after it was signed")
                    }
                    DsseError::UnknownKey(ks) => {
                        format!("signed by {ks:?}, none of them a trusted key: re-signed or forged")
                    }
                    other => other.to_string(),
                };
                problem(&mut v, date, None, msg);
                env.payload_unverified().ok().and_then(|p| Statement::parse(&p).ok())
            }
        };
        let Some(st) = statement else { continue };
        let day: Day = match serde_json::from_value(st.predicate.clone()) {
            Ok(d) => d,
            Err(e) => {
                problem(&mut v, date, None, format!("predicate is not an audit day: {e}"));
                continue;
            }
        };
        if day.date != date.to_string() {
            problem(&mut v, date, None, format!("the file says it is the evidence of {}", day.date));
        }
        check_link(&mut v, &files, *date, &day, first, expect.since);
        check_subjects(&mut v, date, &st, &day);
        check_stores(&mut v, date, &day);
    }
    Ok(v)
}

/// The newest day in `dir` whose file verifies (signature and predicate); what `drift` reads.
pub fn latest_verified(dir: &Path, trusted: &[PublicKey]) -> Result<Day, AuditError> {
    let files = day_files(dir)?;
    let (date, path) =
        files.last_key_value().ok_or_else(|| AuditError::Invalid(format!("{}: no evidence files", dir.display())))?;
    let bytes = std::fs::read(path).map_err(|e| AuditError::Io(path.clone(), e))?;
    let fail = |e: String| AuditError::Invalid(format!("{date}: {e}"));
    let env = Envelope::from_json(&bytes).map_err(|e| fail(e.to_string()))?;
    let (st, _) = Statement::verify(&env, trusted, 1, Some(PREDICATE_TYPE)).map_err(|e| fail(e.to_string()))?;
    serde_json::from_value(st.predicate).map_err(|e| fail(e.to_string()))
}

fn check_link(
    v: &mut Verification,
    files: &BTreeMap<Date, PathBuf>,
    date: Date,
    day: &Day,
    first: Date,
    since: Option<Date>,
) {
    let prev = date - Duration::days(1);
    let mut problem = |m: String| v.problems.push(Problem { date: date.to_string(), store: None, message: m });
    match &day.previous {
        None if date == first && since.is_none_or(|s| s >= date) => {}
        None => problem(format!("links to no previous day, but {} should precede it", file_name(prev))),
        Some(l) if l.file != file_name(prev) => {
            problem(format!("links to {}, not to the day before ({})", l.file, file_name(prev)))
        }
        Some(l) => match files.get(&prev) {
            // A missing day inside the chain, or before `since`, is reported as that day.
            // Before the first file without `since`, nothing else would say it.
            None if date == first && since.is_none() => problem(format!(
                "links to {}, which is not here: the days before are missing (if they expired, say so with --since {date})",
                l.file
            )),
            None => {}
            Some(p) => match sha256_of(p) {
                Ok(h) if h == l.sha256 => {}
                Ok(h) => v.problems.push(Problem {
                    date: prev.to_string(),
                    store: None,
                    message: format!(
                        "{} was replaced: {} recorded sha256 {}, the file now has {}",
                        l.file,
                        file_name(date),
                        &l.sha256,
                        h
                    ),
                }),
                Err(e) => problem(e.to_string()),
            },
        },
    }
}

fn check_subjects(v: &mut Verification, date: &Date, st: &Statement, day: &Day) {
    let subjects: BTreeMap<&str, Option<&String>> =
        st.subject.iter().map(|s| (s.name.as_str(), s.digest.get("sha256"))).collect();
    for rec in &day.stores {
        let name = format!("store/{}", rec.store);
        let want = record_digest(rec);
        match subjects.get(name.as_str()) {
            Some(Some(h)) if **h == want => {}
            Some(_) => v.problems.push(Problem {
                date: date.to_string(),
                store: Some(rec.store.clone()),
                message: "the record does not match its signed subject digest".into(),
            }),
            None => v.problems.push(Problem {
                date: date.to_string(),
                store: Some(rec.store.clone()),
                message: "the record is not a subject of the statement".into(),
            }),
        }
    }
    if let Some(l) = &day.previous {
        let name = format!("audit/edge/{}", l.file);
        if subjects.get(name.as_str()).copied().flatten() != Some(&l.sha256) {
            v.problems.push(Problem {
                date: date.to_string(),
                store: None,
                message: "the link to the previous day is not a subject of the statement".into(),
            });
        }
    }
}

fn check_stores(v: &mut Verification, date: &Date, day: &Day) {
    let mut locate = |store: &str, message: String, finding: bool| {
        let p = Problem { date: date.to_string(), store: Some(store.to_string()), message };
        if finding {
            v.findings.push(p)
        } else {
            v.problems.push(p)
        }
    };
    let inventory: BTreeSet<&str> = day.inventory.iter().map(String::as_str).collect();
    let recorded: BTreeSet<&str> = day.stores.iter().map(|s| s.store.as_str()).collect();
    let missing: BTreeMap<&str, &str> = day.missing.iter().map(|m| (m.store.as_str(), m.reason.as_str())).collect();
    for s in &inventory {
        match (recorded.contains(s), missing.get(s)) {
            (true, _) => {}
            (false, Some(reason)) => locate(s, format!("no evidence: {reason}"), true),
            (false, None) => {
                locate(s, "in the inventory but neither recorded nor stated missing: hidden".into(), false)
            }
        }
    }
    for rec in &day.stores {
        if !inventory.contains(rec.store.as_str()) {
            locate(&rec.store, "recorded but not in the inventory".into(), false);
        }
        match &rec.drift.error {
            Some(e) => locate(&rec.store, format!("drift unknown: the refresh-only plan failed: {e}"), true),
            None if rec.drift.plan_sha256.is_none() => {
                locate(&rec.store, "drift result names no plan: not checked".into(), false)
            }
            None => {
                for c in &rec.drift.changes {
                    locate(
                        &rec.store,
                        format!(
                            "changed outside Git: {} {} ({})",
                            c.actions.join("+"),
                            c.address,
                            c.attributes.join(", ")
                        ),
                        true,
                    );
                }
            }
        }
        for t in &rec.restore_tests {
            match &t.outcome {
                RestoreOutcome::Passed => {}
                RestoreOutcome::NoBackup => {
                    locate(&rec.store, format!("restore test: guest {} has no backup", t.guest), true)
                }
                RestoreOutcome::Failed { step, reason } => locate(
                    &rec.store,
                    format!("restore test of guest {} ({}) failed at {step}: {reason}", t.guest, t.snapshot),
                    true,
                ),
            }
        }
    }
    for r in day.patch.iter().flat_map(|t| &t.rows).filter(|r| !r.breaches.is_empty()) {
        locate(&r.store, format!("patch SLO: {}", r.breaches.join("; ")), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{Drift, StateDigest};

    fn record(store: &str) -> StoreEvidence {
        StoreEvidence {
            store: store.into(),
            collected_at: "2026-11-24T02:00:00Z".into(),
            release: Some("2026.11.1".into()),
            configuration_sha256: "11".repeat(32),
            state: StateDigest { sha256: "22".repeat(32), resources: 3, sensitive_values: 0 },
            drift: Drift { checked_at: "t".into(), plan_sha256: Some("33".repeat(32)), changes: vec![], error: None },
            images: vec![],
            backups: vec![],
            restore_tests: vec![],
            restore_tested_at: None,
            certificates: vec![],
            wireguard: vec![],
            unobserved: vec![],
        }
    }

    fn week(dir: &Path, key: &SecretKey) {
        let start = Date::from_calendar_date(2026, time::Month::November, 24).unwrap();
        for i in 0..7 {
            let input = DayInput {
                date: start + Duration::days(i),
                inventory: vec!["s1".into(), "s2".into()],
                records: vec![record("s1"), record("s2")],
                missing_reasons: BTreeMap::new(),
                decisions: vec![],
                patch: None,
            };
            write_day(dir, input, &[key], "2026-11-30T00:00:00Z".into()).unwrap();
        }
    }

    fn problems(dir: &Path, key: &SecretKey) -> Vec<String> {
        verify_dir(dir, &[key.public()], 1, &Expect::default())
            .unwrap()
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn a_clean_week_verifies_and_each_tampering_is_located() {
        let t = tempfile::tempdir().unwrap();
        let key = SecretKey::generate("audit-1").unwrap();
        week(t.path(), &key);
        assert_eq!(problems(t.path(), &key), Vec::<String>::new());

        // Written once, in order, without gaps.
        let again = DayInput {
            date: Date::from_calendar_date(2026, time::Month::November, 26).unwrap(),
            inventory: vec![],
            records: vec![],
            missing_reasons: BTreeMap::new(),
            decisions: vec![],
            patch: None,
        };
        assert!(matches!(write_day(t.path(), again, &[&key], "t".into()), Err(AuditError::Exists(_))));

        // A removed day in the middle.
        let d = tempfile::tempdir().unwrap();
        week(d.path(), &key);
        std::fs::remove_file(d.path().join("2026-11-27.json")).unwrap();
        assert_eq!(problems(d.path(), &key), vec!["2026-11-27: missing: 2026-11-27.json was removed or never written"]);

        // A store left out of a re-signed day: the signature and the inventory both speak.
        let h = tempfile::tempdir().unwrap();
        week(h.path(), &key);
        let p = h.path().join("2026-11-28.json");
        let env = Envelope::from_json(&std::fs::read(&p).unwrap()).unwrap();
        let mut st = Statement::parse(&env.payload_unverified().unwrap()).unwrap();
        st.predicate["stores"].as_array_mut().unwrap().retain(|s| s["store"] != "s2");
        let forger = SecretKey::generate("audit-1").unwrap();
        std::fs::write(&p, st.sign(&[&forger]).to_json()).unwrap();
        let got = problems(h.path(), &key);
        assert!(got.iter().any(|p| p.starts_with("2026-11-28: signature by \"audit-1\" does not verify")), "{got:?}");
        assert!(got.iter().any(|p| p.starts_with("2026-11-28 s2: in the inventory but neither recorded")), "{got:?}");
        assert!(got.iter().any(|p| p.starts_with("2026-11-28: 2026-11-28.json was replaced")), "{got:?}");

        // The first days removed: the new first file still links to its predecessor.
        let f = tempfile::tempdir().unwrap();
        week(f.path(), &key);
        std::fs::remove_file(f.path().join("2026-11-24.json")).unwrap();
        assert_eq!(
            problems(f.path(), &key),
            vec!["2026-11-25: links to 2026-11-24.json, which is not here: the days before are missing (if they expired, say so with --since 2026-11-25)"]
        );
        let since =
            Expect { since: Some(Date::from_calendar_date(2026, time::Month::November, 25).unwrap()), until: None };
        assert!(verify_dir(f.path(), &[key.public()], 1, &since).unwrap().problems.is_empty());

        // The missing last day is visible only against --until.
        let u = tempfile::tempdir().unwrap();
        week(u.path(), &key);
        std::fs::remove_file(u.path().join("2026-11-30.json")).unwrap();
        assert!(problems(u.path(), &key).is_empty());
        let until =
            Expect { until: Some(Date::from_calendar_date(2026, time::Month::November, 30).unwrap()), since: None };
        let v = verify_dir(u.path(), &[key.public()], 1, &until).unwrap();
        assert_eq!(v.problems.len(), 1);
        assert!(v.problems[0].to_string().starts_with("2026-11-30: missing"));
    }
}

//! The current rollout as people read it: one value, [`RolloutStatus`], read from the hub's
//! database in one place ([`crate::db::Db::rollout_status`]) and rendered two ways — as text by
//! `edge-fleet hub status` ([`RolloutStatus::to_text`]) and as an HTML page by the hub
//! (`GET /status`, [`page`]). The two show the same facts because they are the same value.
//!
//! What it holds: the spec (release, previous, what a failure does); per partition its phase,
//! when it opened, passed or halted, and its gate's inputs (reports counted against the number
//! that must report, failures against the budget, stores in flight against the limit, soak left)
//! with the verdict of the last step; per store its partition, the release its channel names, its
//! latest report and its latest report on the rollout's release (after a revert the two differ);
//! what halted the rollout, if it halted (the partition over its budget, the verdict of that step,
//! the stores that failed and what they said); the last decisions, each with the verdicts of the
//! partitions it changed — its reasons — and what it published.
//!
//! The page is server-rendered HTML with a small inline stylesheet and no script: it reloads
//! itself every [`REFRESH_S`] seconds, and its Content-Security-Policy forbids scripts outright.
//! Every value is escaped by the templates ([`maud`]): a report's detail is Terraform's output and
//! partition names and regions are free text, and none of it may become markup. Elements carry
//! stable ids and `data-` attributes (`#halt`, `#partitions tr[data-partition][data-phase]`,
//! `#stores tr[data-store][data-outcome]`, `#decisions li[data-at]`) for tests and scripts;
//! classes are only for the stylesheet.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use time::OffsetDateTime;

use crate::db::Db;
use crate::hub::{self, RegisteredStore};
use crate::rollout::{Action, Decision, OnFailure, Outcome, PartitionStatus, Phase, Spec, SpecError, State};

/// The page reloads itself this often (seconds); the hub steps every 10 s by default.
pub const REFRESH_S: u32 = 10;
/// Decisions the page shows.
pub const PAGE_HISTORY: i64 = 20;

/// A store's signed report, as the hub keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportView {
    pub release: String,
    pub outcome: Outcome,
    /// When the store says it reported (RFC 3339, as signed).
    pub at: String,
    /// The end of Terraform's output and the health checks' words, as the store signed them.
    pub detail: Vec<String>,
}

/// One store of the rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreView {
    pub name: String,
    pub region: String,
    pub partition: String,
    /// Handed the rollout's release: a manifest naming it was published for the store.
    pub handed: bool,
    /// The store's channel: the last manifest version published and the release it names.
    pub channel: Option<(u64, String)>,
    /// The store's latest report, whatever its release.
    pub last: Option<ReportView>,
    /// The store's latest report on the rollout's release (after a revert, `last` is about the
    /// previous release and this one still says why the store failed).
    pub on_release: Option<ReportView>,
}

/// One partition: the last step's status with the spec's side of the gate.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionView {
    /// As of the last step: phase, counts, in flight, verdict.
    pub status: PartitionStatus,
    pub max_failed: usize,
    /// Stores that must have reported succeeded or failed: ⌈`min_reported` × stores⌉.
    pub need: usize,
    pub soak_s: u64,
    /// While soaking: seconds until the gate has held for `soak_s`.
    pub soak_left_s: Option<u64>,
    /// When a recorded decision first had the partition open, passed, halted or reverted.
    pub opened: Option<OffsetDateTime>,
    pub passed: Option<OffsetDateTime>,
    pub halted: Option<OffsetDateTime>,
}

/// What stopped the rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Halt {
    /// The step that halted it (`None`: not among the recorded decisions).
    pub at: Option<OffsetDateTime>,
    /// The stores handed the release went back to the previous one.
    pub reverted: bool,
    /// The partitions over their failure budget, with their verdict at that step: the reason.
    pub partitions: Vec<(String, String)>,
    /// The stores whose latest report on the release is a failure, with what they said.
    pub stores: Vec<(String, Vec<String>)>,
}

/// A recorded decision.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionView {
    pub at: OffsetDateTime,
    pub status: Vec<PartitionStatus>,
    /// Indices into `status` of the partitions whose phase or counts this decision changed: their
    /// verdicts are the decision's reasons.
    pub changed: Vec<usize>,
    pub actions: Vec<Action>,
}

/// The current rollout, everything `hub status` prints and `/status` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutStatus {
    pub spec: Spec,
    pub started_at: OffsetDateTime,
    /// When this was read (the clock of `soak_left_s`).
    pub as_of: OffsetDateTime,
    pub partitions: Vec<PartitionView>,
    pub stores: Vec<StoreView>,
    pub halt: Option<Halt>,
    /// Newest first.
    pub decisions: Vec<DecisionView>,
}

/// What the database holds about the current rollout, as [`crate::db::Db::rollout_status`]
/// reads it; [`RolloutStatus::assemble`] makes the view from it.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub state: Option<State>,
    /// Every partition's status as of the last step (empty before the first step).
    pub status: Vec<PartitionStatus>,
    pub registry: Vec<RegisteredStore>,
    /// Per store: last manifest version published and its release.
    pub channels: BTreeMap<String, (u64, String)>,
    /// Per store: its latest report, and its latest report on the rollout's release.
    pub last: BTreeMap<String, ReportView>,
    pub on_release: BTreeMap<String, ReportView>,
    /// Per partition and phase name ([`phase_name`]): the first recorded decision with it.
    pub phase_since: BTreeMap<(String, String), OffsetDateTime>,
    /// The first recorded decision with a halted or reverted partition.
    pub halted: Option<(OffsetDateTime, Vec<PartitionStatus>)>,
    /// Recorded decisions, newest first.
    pub history: Vec<(OffsetDateTime, Decision)>,
}

/// `waiting`, `open`, `soaking`, `passed`, `halted`, `reverted`: the phase as the spec and the
/// database spell it.
pub fn phase_name(p: &Phase) -> &'static str {
    match p {
        Phase::Waiting => "waiting",
        Phase::Open { .. } => "open",
        Phase::Soaking { .. } => "soaking",
        Phase::Passed => "passed",
        Phase::Halted => "halted",
        Phase::Reverted => "reverted",
    }
}

fn stopped(p: &Phase) -> bool {
    matches!(p, Phase::Halted | Phase::Reverted)
}

/// What a decision's history row is about: phase and counts (the verdict's text moves every tick
/// while soaking).
fn gist(s: &PartitionStatus) -> (&str, &'static str, usize, usize, usize, usize) {
    (&s.name, phase_name(&s.phase), s.succeeded, s.failed, s.pending, s.handed)
}

impl RolloutStatus {
    /// The view of `spec`'s rollout from what the database holds, at `now`.
    pub fn assemble(
        spec: Spec,
        started_at: OffsetDateTime,
        src: Sources,
        now: OffsetDateTime,
    ) -> Result<Self, SpecError> {
        let assigned = spec.assign(&hub::inventory(&src.registry))?;
        let t = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let since = |name: &str, phases: &[&str]| {
            phases.iter().filter_map(|p| src.phase_since.get(&(name.to_string(), (*p).to_string()))).min().copied()
        };
        let partitions: Vec<PartitionView> = spec
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let stores = assigned[i].len();
                // Before the first step there is no status: the partition waits.
                let status = src.status.iter().find(|s| s.name == p.name).cloned().unwrap_or(PartitionStatus {
                    name: p.name.clone(),
                    stores,
                    succeeded: 0,
                    failed: 0,
                    pending: stores,
                    handed: 0,
                    in_flight: 0,
                    max_in_flight: p.max_in_flight,
                    phase: Phase::Waiting,
                    verdict: "not evaluated yet: the hub has not stepped this rollout".into(),
                });
                let soak_left_s = match status.phase {
                    Phase::Soaking { since } => Some(since.saturating_add(p.soak_s).saturating_sub(t)),
                    _ => None,
                };
                PartitionView {
                    need: (p.min_reported * stores as f64).ceil() as usize,
                    max_failed: p.max_failed,
                    soak_s: p.soak_s,
                    soak_left_s,
                    opened: since(&p.name, &["open", "soaking", "passed", "halted", "reverted"]),
                    passed: since(&p.name, &["passed"]),
                    halted: since(&p.name, &["halted", "reverted"]),
                    status,
                }
            })
            .collect();
        let region: BTreeMap<&str, &str> = src.registry.iter().map(|s| (s.name.as_str(), s.region.as_str())).collect();
        let mut stores = Vec::new();
        for (i, names) in assigned.iter().enumerate() {
            for name in names {
                stores.push(StoreView {
                    name: name.clone(),
                    region: region.get(name.as_str()).map(|r| r.to_string()).unwrap_or_default(),
                    partition: spec.partitions[i].name.clone(),
                    handed: src.state.as_ref().and_then(|s| s.handed.get(i)).is_some_and(|h| h.contains(name)),
                    channel: src.channels.get(name).cloned(),
                    last: src.last.get(name).cloned(),
                    on_release: src.on_release.get(name).cloned(),
                });
            }
        }
        let halt = partitions.iter().any(|p| stopped(&p.status.phase)).then(|| {
            // The reason is the step that halted: after a revert the stores report on the
            // previous release and the partition's counts on the release fall back to zero.
            let at_halt = src.halted.as_ref().map_or(src.status.as_slice(), |(_, s)| s.as_slice());
            let over: Vec<(String, String)> = at_halt
                .iter()
                .filter(|s| spec.partitions.iter().find(|p| p.name == s.name).is_some_and(|p| s.failed > p.max_failed))
                .map(|s| (s.name.clone(), s.verdict.clone()))
                .collect();
            Halt {
                at: src.halted.as_ref().map(|(at, _)| *at),
                reverted: partitions.iter().any(|p| p.status.phase == Phase::Reverted),
                partitions: if over.is_empty() {
                    at_halt.iter().filter(|s| stopped(&s.phase)).map(|s| (s.name.clone(), s.verdict.clone())).collect()
                } else {
                    over
                },
                stores: stores
                    .iter()
                    .filter_map(|s| {
                        let r = s.on_release.as_ref().filter(|r| r.outcome == Outcome::Failed)?;
                        Some((s.name.clone(), r.detail.clone()))
                    })
                    .collect(),
            }
        });
        let decisions = src
            .history
            .iter()
            .enumerate()
            .map(|(i, (at, d))| {
                let older = src.history.get(i + 1).map(|(_, o)| &o.status);
                let changed = d
                    .status
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| match older {
                        Some(o) => !o.iter().any(|x| gist(x) == gist(s)),
                        // The oldest one shown: what it had going.
                        None => s.phase != Phase::Waiting,
                    })
                    .map(|(j, _)| j)
                    .collect();
                DecisionView { at: *at, status: d.status.clone(), changed, actions: d.actions.clone() }
            })
            .collect();
        Ok(Self { spec, started_at, as_of: now, partitions, stores, halt, decisions })
    }

    /// A release id as people tell them apart: its first 12 digits, and which one it is.
    pub fn release_label(&self, id: &str) -> String {
        let short = short(id);
        if id == self.spec.release {
            format!("{short} (this rollout)")
        } else if id == self.spec.previous {
            format!("{short} (previous)")
        } else {
            short.to_string()
        }
    }

    fn on_failure(&self) -> &'static str {
        match (self.spec.on_failure, self.spec.irreversible) {
            (_, true) => "halt (irreversible release: never reverted)",
            (OnFailure::Halt, false) => "halt",
            (OnFailure::HaltAndRevert, false) => "halt and revert to the previous release",
        }
    }

    /// What `edge-fleet hub status` prints.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "rollout of {}", self.spec.release);
        let _ = writeln!(
            o,
            "  previous {}; on failure: {}; started {}; as of {}",
            self.spec.previous,
            self.on_failure(),
            when(self.started_at),
            when(self.as_of)
        );
        if let Some(h) = &self.halt {
            let at = h.at.map(|t| format!(" at {}", when(t))).unwrap_or_default();
            let _ = writeln!(o, "HALTED{}{at}", if h.reverted { " AND REVERTED" } else { "" });
            for (p, verdict) in &h.partitions {
                let _ = writeln!(o, "  partition {p}: {verdict}");
            }
            for (s, detail) in &h.stores {
                let _ = writeln!(o, "  failed store {s}: {}", detail.join(" | "));
            }
        }
        for p in &self.partitions {
            let st = &p.status;
            let _ = writeln!(o, "  {:<10} {:?}: {}", st.name, st.phase, st.verdict);
            let _ = writeln!(o, "      gate: {}; {}", gate(p), times(p).join(", "));
        }
        if !self.stores.is_empty() {
            let _ = writeln!(o, "stores:");
        }
        for s in &self.stores {
            let _ = writeln!(
                o,
                "  {:<12} {:<10} {:<10} {:<8} channel {}; last report {}{}",
                s.name,
                s.partition,
                s.region,
                if s.handed { "handed" } else { "-" },
                s.channel.as_ref().map_or("none".into(), |(v, r)| format!("v{v} {}", self.release_label(r))),
                s.last.as_ref().map_or("none".into(), |r| self.report(r)),
                match (&s.on_release, &s.last) {
                    (Some(r), Some(l)) if r != l => format!("; on this rollout's release: {}", self.report(r)),
                    _ => String::new(),
                }
            );
        }
        if !self.decisions.is_empty() {
            let _ = writeln!(o, "decisions, newest first:");
        }
        for d in &self.decisions {
            let at = when(d.at);
            let what: Vec<String> = d
                .status
                .iter()
                .map(|s| {
                    format!("{} {:?} ({} ok, {} failed, {} pending)", s.name, s.phase, s.succeeded, s.failed, s.pending)
                })
                .collect();
            let _ = writeln!(o, "  {at}  {}", what.join(", "));
            for &i in &d.changed {
                let _ = writeln!(o, "  {at}    {}: {}", d.status[i].name, d.status[i].verdict);
            }
            for a in &d.actions {
                let _ = writeln!(o, "  {at}    {}", describe(a));
            }
        }
        o
    }

    fn report(&self, r: &ReportView) -> String {
        format!("{} on {} at {}", outcome_name(r.outcome), self.release_label(&r.release), r.at)
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Pending => "pending",
    }
}

/// The gate's inputs of a partition, in words.
fn gate(p: &PartitionView) -> String {
    let st = &p.status;
    let mut g = format!(
        "{} of {} reported ({} must), {} failed (budget {}), {} pending",
        st.succeeded + st.failed,
        st.stores,
        p.need,
        st.failed,
        p.max_failed,
        st.pending
    );
    if let Some(m) = st.max_in_flight {
        let _ = write!(g, ", {} in flight (limit {m}), {} of {} handed", st.in_flight, st.handed, st.stores);
    }
    let _ = write!(g, ", soak {} s", p.soak_s);
    if let Some(left) = p.soak_left_s {
        let _ = write!(g, " ({left} s left)");
    }
    g
}

fn times(p: &PartitionView) -> Vec<String> {
    [("opened", p.opened), ("passed", p.passed), ("halted", p.halted)]
        .into_iter()
        .filter_map(|(what, t)| Some(format!("{what} {}", when(t?))))
        .collect()
}

/// A decision's action, in words: a wave of 200 is a count, a canary is names.
pub fn describe(a: &Action) -> String {
    match a {
        Action::Publish { partition, release, stores } => {
            let to = if stores.len() <= 8 { stores.join(" ") } else { format!("{} stores", stores.len()) };
            format!("publish {partition} -> {} to {to}", short(release))
        }
    }
}

/// A release id's first 12 characters. By characters, not bytes: a report's release is the
/// store's word, and a slice inside a UTF-8 sequence would panic.
fn short(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(i, _)| &id[..i])
}

/// UTC, to the second.
fn when(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z")).unwrap_or_default()
}

const CSS: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem;color:#1f2328;background:#fff}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
.meta{color:#59636e;margin:.1rem 0}code,pre{font:12px ui-monospace,monospace}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #d1d9e0;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}td.n{text-align:right;white-space:nowrap}
.phase{display:inline-block;padding:0 .5rem;border-radius:1rem;font-weight:600;font-size:12px;white-space:nowrap}
.phase-waiting{background:#eff2f5;color:#59636e}.phase-open,.phase-soaking{background:#ddf4ff;color:#0969da}
.phase-passed{background:#dafbe1;color:#1a7f37}.phase-halted,.phase-reverted{background:#ffebe9;color:#d1242f}
.outcome-failed{color:#d1242f;font-weight:600}.outcome-succeeded{color:#1a7f37}.outcome-pending{color:#9a6700}
.over{color:#d1242f;font-weight:600}
#halt{border:3px solid #d1242f;background:#ffebe9;padding:.8rem 1.1rem;border-radius:6px;margin:1rem 0}
#halt h2{margin:0 0 .4rem;color:#d1242f;font-size:1.35rem}
#halt ul{margin:.3rem 0 0;padding-left:1.2rem}
pre{margin:.2rem 0 0;white-space:pre-wrap;word-break:break-word}
ol{padding-left:1.2rem}li{margin:.3rem 0}.verdict{max-width:42rem}
";

/// The status page: the current rollout, or a page that says there is none.
pub fn page(status: Option<&RolloutStatus>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(REFRESH_S);
                meta name="viewport" content="width=device-width, initial-scale=1";
                title {
                    @match status {
                        Some(s) => {
                            @if s.halt.is_some() { "HALTED — " }
                            "Rollout " (short(&s.spec.release)) " — edge-fleet hub"
                        }
                        None => { "No rollout — edge-fleet hub" }
                    }
                }
                style { (PreEscaped(CSS)) }
            }
            body {
                @match status {
                    Some(s) => (rollout(s)),
                    None => {
                        h1 { "No rollout" }
                        p id="no-rollout" { "No rollout has been started (edge-fleet hub start --spec …)." }
                    }
                }
            }
        }
    }
}

fn rollout(s: &RolloutStatus) -> Markup {
    html! {
        header id="rollout" data-release=(s.spec.release) data-halted=(s.halt.is_some()) {
            h1 { "Rollout of " code { (s.release_label(&s.spec.release)) } }
            p.meta { "release " code { (s.spec.release) } }
            p.meta { "previous " code { (s.spec.previous) } " · on failure: " (s.on_failure()) }
            p.meta { "started " (when(s.started_at)) " · as of " (when(s.as_of)) " · reloads every " (REFRESH_S) " s" }
        }
        @if let Some(h) = &s.halt {
            section id="halt" role="alert" data-reverted=(h.reverted) {
                h2 {
                    "Rollout halted" @if h.reverted { " and reverted" }
                    @if let Some(at) = h.at { " at " (when(at)) }
                }
                @for (part, verdict) in &h.partitions {
                    p.reason data-partition=(part) { "Partition " strong { (part) } " failed its gate: " (verdict) }
                }
                @if h.stores.is_empty() {
                    p { "No store's latest report on the release is a failure any more." }
                } @else {
                    p { "Failed stores:" }
                    ul {
                        @for (store, detail) in &h.stores {
                            li data-failed-store=(store) {
                                strong { (store) }
                                @if !detail.is_empty() { pre { (detail.join("\n")) } }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Partitions" }
        table id="partitions" {
            thead { tr {
                th { "Partition" } th { "State" } th { "Stores" } th { "Reported / must" } th { "Failed / budget" }
                th { "Pending" } th { "In flight / limit" } th { "Soak" } th { "Opened" } th { "Passed" } th { "Halted" }
                th { "Verdict of the last step" }
            } }
            tbody {
                @for p in &s.partitions {
                    @let st = &p.status;
                    tr data-partition=(st.name) data-phase=(phase_name(&st.phase)) {
                        td { strong { (st.name) } }
                        td { span class={ "phase phase-" (phase_name(&st.phase)) } { (phase_name(&st.phase)) } }
                        td.n { (st.stores) }
                        td.n { (st.succeeded + st.failed) " / " (p.need) }
                        td.n.over[st.failed > p.max_failed] { (st.failed) " / " (p.max_failed) }
                        td.n { (st.pending) }
                        td.n {
                            (st.in_flight) " / "
                            @match st.max_in_flight {
                                Some(m) => { (m) }
                                None => { "no limit" }
                            }
                        }
                        td.n {
                            (p.soak_s) " s"
                            @if let Some(left) = p.soak_left_s { br; (left) " s left" }
                        }
                        td { (p.opened.map(when).unwrap_or_default()) }
                        td { (p.passed.map(when).unwrap_or_default()) }
                        td { (p.halted.map(when).unwrap_or_default()) }
                        td.verdict { (st.verdict) }
                    }
                }
            }
        }
        h2 { "Stores" }
        @if s.stores.is_empty() {
            p id="no-stores" { "No store is registered with the hub (edge-fleet hub register …)." }
        }
        table id="stores" {
            thead { tr {
                th { "Store" } th { "Region" } th { "Partition" } th { "Handed" } th { "Channel names" }
                th { "Last report" } th { "On this rollout's release" }
            } }
            tbody {
                @for st in &s.stores {
                    tr data-store=(st.name) data-partition=(st.partition)
                        data-outcome=(st.on_release.as_ref().map_or("none", |r| outcome_name(r.outcome))) {
                        td { strong { (st.name) } }
                        td { (st.region) }
                        td { (st.partition) }
                        td { @if st.handed { "yes" } @else { "no" } }
                        td data-release=[st.channel.as_ref().map(|(_, r)| r)] {
                            @match &st.channel {
                                Some((v, r)) => { "v" (v) " " code { (s.release_label(r)) } }
                                None => { "nothing published" }
                            }
                        }
                        td { (report_cell(s, st.last.as_ref())) }
                        td { (report_cell(s, st.on_release.as_ref())) }
                    }
                }
            }
        }
        h2 { "Decisions, newest first" }
        @if s.decisions.is_empty() {
            p id="decisions" { "None recorded yet." }
        } @else {
            ol id="decisions" {
                @for d in &s.decisions {
                    li data-at=(d.at.unix_timestamp()) {
                        strong { (when(d.at)) } " — "
                        @for (i, p) in d.status.iter().enumerate() {
                            @if i > 0 { ", " }
                            (p.name) " " span class={ "phase phase-" (phase_name(&p.phase)) } { (phase_name(&p.phase)) }
                        }
                        ul {
                            @for &i in &d.changed {
                                li.reason data-partition=(d.status[i].name) { (d.status[i].name) ": " (d.status[i].verdict) }
                            }
                            @for a in &d.actions { li.action { (describe(a)) } }
                        }
                    }
                }
            }
        }
    }
}

fn report_cell(s: &RolloutStatus, r: Option<&ReportView>) -> Markup {
    html! {
        @match r {
            None => { "none" }
            Some(r) => {
                span class={ "outcome-" (outcome_name(r.outcome)) } { (outcome_name(r.outcome)) }
                " on " code { (s.release_label(&r.release)) } br; span.meta { (r.at) }
                @if r.outcome == Outcome::Failed && !r.detail.is_empty() { pre { (r.detail.join("\n")) } }
            }
        }
    }
}

/// `GET /status`: the page of the current rollout, read fresh from the database.
pub async fn respond(db: &Db) -> Response {
    match db.rollout_status(PAGE_HISTORY).await {
        Ok(s) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                // Nothing on the page runs: should a value ever slip past the escaping, the
                // browser still refuses to run it.
                (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'"),
            ],
            page(s.as_ref()).into_string(),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "status page");
            (StatusCode::INTERNAL_SERVER_ERROR, "the rollout's status could not be read; see the hub's log")
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::Partition;

    const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const EVIL: &str = "<script>alert(1)</script>";

    fn status(name: &str, phase: Phase, failed: usize, verdict: &str) -> PartitionStatus {
        PartitionStatus {
            name: name.into(),
            stores: 1,
            succeeded: 0,
            failed,
            pending: 1 - failed,
            handed: 1,
            in_flight: 0,
            max_in_flight: None,
            phase,
            verdict: verdict.into(),
        }
    }

    /// A rollout halted on a partition, a region and a store's report carrying markup.
    fn halted() -> RolloutStatus {
        let part = |name: &str, store: &str| Partition {
            name: name.into(),
            stores: vec![store.into()],
            count: None,
            soak_s: 0,
            min_reported: 1.0,
            max_failed: 0,
            max_in_flight: None,
        };
        let spec = Spec {
            release: NEW.into(),
            previous: OLD.into(),
            partitions: vec![part(EVIL, "store-001"), part("rest", "store-002")],
            on_failure: OnFailure::Halt,
            irreversible: false,
        };
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let failing = vec![
            status(EVIL, Phase::Halted, 1, &format!("failed: 1 failed (budget 0) {EVIL}")),
            status("rest", Phase::Waiting, 0, "not opened: the rollout stopped"),
        ];
        let report = ReportView {
            release: NEW.into(),
            outcome: Outcome::Failed,
            at: "2027-01-15T08:00:00Z".into(),
            detail: vec![format!("Error: {EVIL} & \"quotes\"")],
        };
        let registry = ["store-001", "store-002"]
            .map(|n| RegisteredStore { name: n.into(), region: EVIL.into(), key: String::new() })
            .to_vec();
        let src = Sources {
            status: failing.clone(),
            registry,
            last: [("store-001".to_string(), report.clone())].into(),
            on_release: [("store-001".to_string(), report)].into(),
            halted: Some((at, failing.clone())),
            history: vec![(at, Decision { state: State::new(&spec), actions: vec![], status: failing })],
            ..Sources::default()
        };
        RolloutStatus::assemble(spec, at, src, at).expect("assemble")
    }

    #[test]
    fn markup_in_names_reasons_and_reports_renders_as_text() {
        let s = halted();
        let html = page(Some(&s)).into_string();
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        // In an attribute too (the partition's data- attribute), and quotes cannot close one.
        assert!(html.contains(r#"data-partition="&lt;script&gt;alert(1)&lt;/script&gt;""#), "{html}");
        assert!(html.contains("&amp; &quot;quotes&quot;"), "{html}");
        // The stylesheet is the only thing not escaped, and it is ours.
        assert_eq!(html.matches("<style>").count(), 1);
    }

    #[test]
    fn a_halt_names_the_partition_its_reason_and_the_failed_store_in_text_and_page() {
        let s = halted();
        let h = s.halt.as_ref().expect("halted");
        assert_eq!(h.partitions.len(), 1);
        assert_eq!(h.stores.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), ["store-001"]);
        let text = s.to_text();
        assert!(text.contains("HALTED at 2027-01-15 08:00:00Z"), "{text}");
        assert!(text.contains("failed store store-001: Error:"), "{text}");
        let html = page(Some(&s)).into_string();
        assert!(html.contains(r#"<section id="halt" role="alert" data-reverted="false">"#), "{html}");
        assert!(html.contains(r#"data-failed-store="store-001""#), "{html}");
        assert!(!html.contains(r#"data-failed-store="store-002""#), "{html}");
    }

    /// A rollout started on a hub with no store registered, before its first step.
    #[test]
    fn an_empty_fleet_renders_its_rollout_with_no_store_and_no_decision() {
        let spec = Spec {
            release: NEW.into(),
            previous: OLD.into(),
            partitions: vec![Partition {
                name: "all".into(),
                stores: vec![],
                count: None,
                soak_s: 60,
                min_reported: 1.0,
                max_failed: 0,
                max_in_flight: None,
            }],
            on_failure: OnFailure::HaltAndRevert,
            irreversible: false,
        };
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let s = RolloutStatus::assemble(spec, at, Sources::default(), at).expect("assemble");
        assert!(s.stores.is_empty() && s.decisions.is_empty() && s.halt.is_none(), "{s:?}");
        let html = page(Some(&s)).into_string();
        assert!(html.contains(r#"data-halted="false""#), "{html}");
        assert!(!html.contains(r#"id="halt""#), "{html}");
        assert!(html.contains(r#"<tr data-partition="all" data-phase="waiting">"#), "{html}");
        assert!(html.contains(r#"id="no-stores""#), "{html}");
        assert!(!html.contains("data-store="), "{html}");
        assert!(html.contains(r#"<p id="decisions">None recorded yet.</p>"#), "{html}");
        assert!(html.contains("not evaluated yet"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        let text = s.to_text();
        assert!(!text.contains("HALTED") && !text.contains("stores:"), "{text}");
    }

    #[test]
    fn release_ids_are_shortened_by_characters() {
        assert_eq!(short(NEW), "222222222222");
        assert_eq!(short("abc"), "abc");
        assert_eq!(short("ééééééééééééé"), "éééééééééééé");
        let s = halted();
        assert_eq!(s.release_label("ü".repeat(20).as_str()), "ü".repeat(12));
    }

    #[test]
    fn without_a_rollout_the_page_says_so() {
        let html = page(None).into_string();
        assert!(html.contains(r#"id="no-rollout""#), "{html}");
        assert!(html.contains("<title>No rollout"), "{html}");
        assert!(!html.contains(r#"id="rollout""#) && !html.contains("<script"), "{html}");
    }
}

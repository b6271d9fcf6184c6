//! The wave controller's decisions: which partition of stores gets a release when, and what
//! happens when a partition's reports say it is bad.
//!
//! A rollout is a spec (kept in Git) over an inventory of stores. Partitions go in order; each
//! opens only after the previous one *passed*: enough of its stores reported (`min_reported`),
//! failures within its budget (`max_failed`), and `soak` elapsed since the gate was first met.
//! Within an open partition, `max_in_flight` bounds how many stores hold the release without a
//! final report for it: more of the partition's stores are handed the release (their channel
//! names it) as others report, in the partition's deterministic order, so a bad release reaches
//! at most that many stores of a big partition before its failures show.
//! Reports are three-valued: `succeeded`, `failed`, and `pending` — and a store that has not
//! reported at all counts as pending. Pending is never a pass and never a failure: a partition
//! short of reports waits and says so ("no data"). Failures over the budget halt the rollout;
//! with `on_failure = halt_and_revert` every store handed the release goes back to the previous
//! release (a newer channel manifest naming it) — unless the release is marked irreversible (a
//! Ceph release bump), which only ever halts.
//!
//! [`evaluate`] is a pure function of the spec, the stores, the state so far, the reports and
//! the clock: the hub calls it on every report or tick, and the simulation drives it with
//! thousands of simulated stores.

use std::collections::{BTreeMap, BTreeSet};

use edge_images::hash::Sha256Hash;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("partitions[{0}]: give either `stores` or `count`, not both or neither")]
    Size(usize),
    #[error("partitions[{index}].stores: {store:?} is not in the inventory")]
    UnknownStore { index: usize, store: String },
    #[error("partitions[{index}].stores: {store:?} is already in partition {other:?}")]
    Twice { index: usize, store: String, other: String },
    #[error("partitions[{0}].min_reported: a share between 0 and 1")]
    Share(usize),
    #[error("partitions: a rollout needs at least one")]
    Empty,
    #[error("partitions[{0}].max_in_flight: at least 1 (leave it out for no limit)")]
    InFlight(usize),
}

/// What to do when a partition's failures exceed its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    Halt,
    HaltAndRevert,
}

/// How many stores a partition takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub name: String,
    /// Explicit stores (a canary the operators chose).
    #[serde(default)]
    pub stores: Vec<String>,
    /// Or a count picked deterministically from the stores left, spread over regions;
    /// `None` with no `stores` = all that are left.
    #[serde(default)]
    pub count: Option<usize>,
    /// Seconds to wait after the gate is met before the next partition opens.
    #[serde(default)]
    pub soak_s: u64,
    /// Share of the partition's stores that must have reported success or failure (0–1).
    #[serde(default = "one")]
    pub min_reported: f64,
    /// Failed stores the partition may have and still pass.
    #[serde(default)]
    pub max_failed: usize,
    /// At most this many of the partition's stores hold the release without a final report for
    /// it; `None`: the whole partition is handed the release when it opens. Per partition, with
    /// no spec-wide default, so that leaving it out always means "no limit" (a default would
    /// need a second spelling for that, and the canary wants all its stores at once).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Release id to roll out, and the one to go back to.
    pub release: String,
    pub previous: String,
    pub partitions: Vec<Partition>,
    pub on_failure: OnFailure,
    /// The release cannot be undone (e.g. it bumps the Ceph release): failures only halt.
    #[serde(default)]
    pub irreversible: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Store {
    pub name: String,
    pub region: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    Pending,
}

/// A store's latest signed report (signature checked before it gets here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub release: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not opened yet.
    Waiting,
    /// Its channel names the release; reports are coming in.
    Open {
        since: u64,
    },
    /// Gate met at `since`; soaking.
    Soaking {
        since: u64,
    },
    Passed,
    /// Failures over budget; stays on the release (halt) …
    Halted,
    /// … or went back to the previous release.
    Reverted,
}

/// The controller's memory between evaluations (kept in the hub's database).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub phases: Vec<Phase>,
    /// Per partition, the stores handed the release so far (a manifest naming it was published
    /// for them): the in-flight count is taken over these, and a revert goes back on exactly
    /// these. Missing in state written before stores were handed one by one; [`evaluate`] then
    /// takes every store of an opened partition as handed, which is what was published.
    #[serde(default)]
    pub handed: Vec<BTreeSet<String>>,
}

/// Something the hub must do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Publish a newer manifest naming `release` for exactly `stores`, all of `partition`:
    /// going forward, its next stores in the partition's order; on a revert, the stores that
    /// were handed the release (by name).
    Publish { partition: String, release: String, stores: Vec<String> },
}

/// Where a partition is and why: the gate's inputs and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionStatus {
    pub name: String,
    pub stores: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub pending: usize,
    /// Stores handed the release so far, and those of them with no final report for it yet
    /// (pending or silent): with `max_in_flight` (`None`: no limit) they say why a partition
    /// moves slowly.
    #[serde(default)]
    pub handed: usize,
    #[serde(default)]
    pub in_flight: usize,
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    pub phase: Phase,
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub state: State,
    pub actions: Vec<Action>,
    pub status: Vec<PartitionStatus>,
}

impl Spec {
    /// The stores of each partition: explicit lists first, then counts picked from the rest in a
    /// deterministic order that is spread over regions (round robin over regions, each region's
    /// stores ordered by a hash of release and name, so each rollout samples differently).
    pub fn assign(&self, stores: &[Store]) -> Result<Vec<Vec<String>>, SpecError> {
        if self.partitions.is_empty() {
            return Err(SpecError::Empty);
        }
        let known: BTreeSet<&str> = stores.iter().map(|s| s.name.as_str()).collect();
        let mut taken: BTreeMap<String, String> = BTreeMap::new();
        let mut out = vec![Vec::new(); self.partitions.len()];
        for (i, p) in self.partitions.iter().enumerate() {
            if !(0.0..=1.0).contains(&p.min_reported) {
                return Err(SpecError::Share(i));
            }
            // 0 would never hand the release to anyone: the partition could never pass.
            if p.max_in_flight == Some(0) {
                return Err(SpecError::InFlight(i));
            }
            if !p.stores.is_empty() && p.count.is_some() {
                return Err(SpecError::Size(i));
            }
            for s in &p.stores {
                if !known.contains(s.as_str()) {
                    return Err(SpecError::UnknownStore { index: i, store: s.clone() });
                }
                if let Some(other) = taken.insert(s.clone(), p.name.clone()) {
                    return Err(SpecError::Twice { index: i, store: s.clone(), other });
                }
                out[i].push(s.clone());
            }
        }
        let mut left = self.spread(stores.iter().filter(|s| !taken.contains_key(&s.name)));
        for (i, p) in self.partitions.iter().enumerate() {
            if !p.stores.is_empty() {
                continue;
            }
            let n = p.count.unwrap_or(left.len()).min(left.len());
            out[i].extend(left.drain(..n));
        }
        Ok(out)
    }

    fn spread<'a>(&self, stores: impl Iterator<Item = &'a Store>) -> Vec<String> {
        let mut by_region: BTreeMap<&str, Vec<(String, &str)>> = BTreeMap::new();
        for s in stores {
            let key = Sha256Hash::digest(format!("{}\n{}", self.release, s.name).as_bytes()).to_hex();
            by_region.entry(&s.region).or_default().push((key, &s.name));
        }
        let mut queues: Vec<_> = by_region
            .into_values()
            .map(|mut v| {
                v.sort();
                v.into_iter().map(|(_, n)| n.to_string()).collect::<std::collections::VecDeque<_>>()
            })
            .collect();
        let mut out = Vec::new();
        while queues.iter().any(|q| !q.is_empty()) {
            for q in &mut queues {
                if let Some(n) = q.pop_front() {
                    out.push(n);
                }
            }
        }
        out
    }
}

impl State {
    pub fn new(spec: &Spec) -> Self {
        let n = spec.partitions.len();
        Self { phases: vec![Phase::Waiting; n], handed: vec![BTreeSet::new(); n] }
    }
}

/// Per partition, the stores handed the release so far. State without `handed` comes from a
/// controller that published whole partitions as they opened: every store of an opened
/// partition was handed the release.
fn handed_so_far(state: &State, assigned: &[Vec<String>]) -> Vec<BTreeSet<String>> {
    (0..assigned.len())
        .map(|i| match state.handed.get(i) {
            Some(h) => h.clone(),
            None if state.phases.get(i).is_some_and(|p| *p != Phase::Waiting) => assigned[i].iter().cloned().collect(),
            None => BTreeSet::new(),
        })
        .collect()
}

/// One step of the controller at time `now` (seconds). `assigned`: [`Spec::assign`]'s result.
pub fn evaluate(
    spec: &Spec,
    assigned: &[Vec<String>],
    state: &State,
    reports: &BTreeMap<String, Report>,
    now: u64,
) -> Decision {
    let mut phases = state.phases.clone();
    let mut handed = handed_so_far(state, assigned);
    let mut actions = Vec::new();
    let mut status = Vec::new();
    // A store's final word on this release, if it gave one.
    let outcome = |s: &str| {
        reports.get(s).filter(|r| r.release == spec.release && r.outcome != Outcome::Pending).map(|r| r.outcome)
    };
    let counts: Vec<(usize, usize)> = assigned
        .iter()
        .map(|stores| {
            stores.iter().fold((0, 0), |(ok, failed), s| match outcome(s) {
                Some(Outcome::Succeeded) => (ok + 1, failed),
                Some(Outcome::Failed) => (ok, failed + 1),
                _ => (ok, failed),
            })
        })
        .collect();
    let stopped = phases.iter().any(|p| matches!(p, Phase::Halted | Phase::Reverted));
    // Known before any partition is looked at, so that the step which halts the rollout neither
    // opens a partition nor hands the release to more stores only to take it back.
    let stopping = stopped
        || spec.partitions.iter().enumerate().any(|(i, p)| {
            matches!(phases[i], Phase::Open { .. } | Phase::Soaking { .. } | Phase::Passed)
                && counts[i].1 > p.max_failed
        });
    let mut previous_passed = true;
    for (i, p) in spec.partitions.iter().enumerate() {
        let stores = &assigned[i];
        let (ok, failed) = counts[i];
        let pending = stores.len() - ok - failed;
        let need = (p.min_reported * stores.len() as f64).ceil() as usize;
        let over_budget = failed > p.max_failed;
        let gate_met = ok + failed >= need && !over_budget;
        // Going forward (opening now, or opened and not stopped, passed ones included: a
        // partition may pass on `min_reported` before its last stores were handed the release):
        // hand the release to the next stores in the partition's order while the in-flight
        // count is under the limit. A store is in flight until it reports succeeded or failed
        // for this release; pending or silent, it keeps its place.
        let mut in_flight = handed[i].iter().filter(|s| outcome(s).is_none()).count();
        let forward = !stopping
            && match phases[i] {
                Phase::Waiting => previous_passed,
                Phase::Open { .. } | Phase::Soaking { .. } | Phase::Passed => true,
                Phase::Halted | Phase::Reverted => false,
            };
        let room = p.max_in_flight.map_or(usize::MAX, |m| m.saturating_sub(in_flight));
        if forward && room > 0 {
            let next: Vec<String> = stores.iter().filter(|s| !handed[i].contains(*s)).take(room).cloned().collect();
            if !next.is_empty() {
                // Normally none of them reported on the release yet; one that did (reports
                // outlive a reassigned inventory) is not in flight.
                in_flight += next.iter().filter(|s| outcome(s).is_none()).count();
                handed[i].extend(next.iter().cloned());
                actions.push(Action::Publish {
                    partition: p.name.clone(),
                    release: spec.release.clone(),
                    stores: next,
                });
            }
        }
        let mut inputs = format!(
            "{ok} succeeded, {failed} failed (budget {}), {pending} pending; {need} of {} must report",
            p.max_failed,
            stores.len()
        );
        if let Some(m) = p.max_in_flight {
            inputs += &format!(
                "; {in_flight} in flight, limit {m}; {} of {} handed the release",
                handed[i].len(),
                stores.len()
            );
        }
        let verdict;
        match phases[i] {
            Phase::Waiting if stopping => verdict = "not opened: the rollout stopped".to_string(),
            Phase::Waiting if previous_passed => {
                phases[i] = Phase::Open { since: now };
                verdict = match p.max_in_flight {
                    Some(_) => format!("opened: {inputs}"),
                    None => "opened".to_string(),
                };
            }
            Phase::Waiting => verdict = "waiting for the previous partition".to_string(),
            // A partition that passed is still watched: a store failing later (its health
            // checks) counts against the budget while the rollout goes on.
            Phase::Open { .. } | Phase::Soaking { .. } | Phase::Passed if over_budget => {
                let revert = spec.on_failure == OnFailure::HaltAndRevert && !spec.irreversible;
                verdict = format!(
                    "failed: {inputs} — {}",
                    if revert {
                        "halted and reverted to the previous release"
                    } else if spec.irreversible {
                        "halted (the release is irreversible: never reverted)"
                    } else {
                        "halted"
                    }
                );
                phases[i] = if revert { Phase::Reverted } else { Phase::Halted };
            }
            Phase::Open { since } if gate_met => {
                phases[i] = Phase::Soaking { since: now };
                verdict = format!("gate met after {} s: {inputs}; soaking {} s", now - since, p.soak_s);
            }
            Phase::Open { since } => {
                verdict = format!("no data yet ({} s open): {inputs}; neither pass nor fail", now - since);
            }
            Phase::Soaking { since } if !gate_met => {
                // A store that flipped to pending again: back to waiting for reports.
                phases[i] = Phase::Open { since };
                verdict = format!("gate lost while soaking: {inputs}");
            }
            Phase::Soaking { since } if now >= since + p.soak_s => {
                phases[i] = Phase::Passed;
                verdict = format!("passed: {inputs}; soaked {} s", now - since);
            }
            Phase::Soaking { since } => verdict = format!("soaking, {} s left: {inputs}", since + p.soak_s - now),
            Phase::Passed => verdict = format!("passed: {inputs}"),
            Phase::Halted => verdict = format!("stopped: {inputs}"),
            // After a revert the stores report on the previous release: say how many are back.
            Phase::Reverted => {
                let on_previous = |o: Outcome| {
                    handed[i]
                        .iter()
                        .filter(|s| reports.get(*s).is_some_and(|r| r.release == spec.previous && r.outcome == o))
                        .count()
                };
                let (back, failing) = (on_previous(Outcome::Succeeded), on_previous(Outcome::Failed));
                verdict = format!(
                    "reverted: {back} of the {} stores handed the release are back on the previous one{}; on the release: {inputs}",
                    handed[i].len(),
                    if failing > 0 { format!(" ({failing} failed to go back)") } else { String::new() }
                );
            }
        }
        previous_passed = phases[i] == Phase::Passed;
        status.push(PartitionStatus {
            name: p.name.clone(),
            stores: stores.len(),
            succeeded: ok,
            failed,
            pending,
            handed: handed[i].len(),
            in_flight,
            max_in_flight: p.max_in_flight,
            phase: phases[i],
            verdict,
        });
    }
    // A revert applies to every partition that got the release, not only the failing one, and
    // within each to exactly the stores handed it: the others never left the previous release.
    // Nothing was handed in this step (`stopping`), so `handed` is what went out before.
    if phases.contains(&Phase::Reverted) {
        for (i, p) in spec.partitions.iter().enumerate() {
            if state.phases[i] != Phase::Reverted && !matches!(phases[i], Phase::Waiting) {
                if phases[i] != Phase::Reverted {
                    phases[i] = Phase::Reverted;
                    status[i].phase = Phase::Reverted;
                    status[i].verdict = format!("reverted with the rollout: {}", status[i].verdict);
                }
                let back: Vec<String> = handed[i].iter().cloned().collect();
                let never = assigned[i].iter().filter(|s| !handed[i].contains(*s)).count();
                status[i].verdict += &format!(
                    "; the previous release goes back to the {} stores that were handed the release{}",
                    back.len(),
                    if never > 0 { format!(" (the other {never} never got it)") } else { String::new() }
                );
                if !back.is_empty() {
                    actions.push(Action::Publish {
                        partition: p.name.clone(),
                        release: spec.previous.clone(),
                        stores: back,
                    });
                }
            }
        }
    }
    Decision { state: State { phases, handed }, actions, status }
}

/// The rollout is over: every partition passed and every store was handed the release (a
/// partition may pass on `min_reported` with a few still to hand), or it stopped.
pub fn finished(state: &State, assigned: &[Vec<String>]) -> bool {
    if state.phases.iter().any(|p| matches!(p, Phase::Halted | Phase::Reverted)) {
        return true;
    }
    state.phases.iter().all(|p| *p == Phase::Passed)
        && assigned.iter().enumerate().all(|(i, stores)| {
            // State without `handed`: whole partitions were published as they opened.
            state.handed.get(i).is_none_or(|h| stores.iter().all(|s| h.contains(s)))
        })
}

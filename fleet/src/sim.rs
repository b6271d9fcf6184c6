//! A seeded simulation of many stores pulling a rollout, to test the controller's logic at fleet
//! scale: time moves in steps of `poll_s`; at each step every online store polls its channel,
//! starts applying a release it does not run yet (reporting pending), and reports succeeded or
//! failed when the apply ends; offline stores do not report until they come back. A store's
//! channel names a release only once a decision published it for that store (`max_in_flight`
//! hands a partition's stores the release a few at a time). The controller evaluates once per
//! step. Deterministic for a seed.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::rollout::{evaluate, finished, Action, Decision, Outcome, Report, Spec, SpecError, State, Store};

#[derive(Debug, Clone)]
pub struct Params {
    pub seed: u64,
    /// Chance that a store's apply of the release fails.
    pub fail_rate: f64,
    /// Chance that a store is offline when the rollout starts.
    pub offline_rate: f64,
    /// Offline stores come back after this many seconds (`None`: never during the run).
    pub back_after_s: Option<u64>,
    pub poll_s: u64,
    /// Apply time range, seconds.
    pub apply_s: (u64, u64),
    /// Stop after this much simulated time.
    pub horizon_s: u64,
    /// Failures only these stores have (e.g. the canary's Proxmox version refuses a setting).
    pub always_fail: Vec<String>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            seed: 1,
            fail_rate: 0.0,
            offline_rate: 0.0,
            back_after_s: None,
            poll_s: 60,
            apply_s: (60, 300),
            horizon_s: 7 * 24 * 3600,
            always_fail: vec![],
        }
    }
}

struct SimStore {
    offline_until: Option<u64>,
    fails: bool,
    /// What its channel names, and when the store will have applied it.
    target: Option<String>,
    applying: Option<(String, u64)>,
}

/// What happened: every decision with its time, and the final one.
pub struct Run {
    /// Each step that published or moved a phase. Their states carry the phases only, not the
    /// stores handed the release so far: those are in the actions, and a copy per step would
    /// make the log grow with the square of the fleet. `last` has the whole state.
    pub log: Vec<(u64, Decision)>,
    pub last: Decision,
    pub reports: BTreeMap<String, Report>,
    /// Every report the stores delivered, in order, with the time of the first evaluation that
    /// saw it: with `log`, what the controller knew at each step.
    pub delivered: Vec<(u64, String, Report)>,
    /// Evaluations made (one per tick).
    pub steps: usize,
}

/// `n` stores named `store-001` … spread over `regions` regions.
pub fn inventory(n: usize, regions: usize) -> Vec<Store> {
    (1..=n).map(|i| Store { name: format!("store-{i:03}"), region: format!("region-{}", i % regions.max(1)) }).collect()
}

pub fn run(spec: &Spec, stores: &[Store], p: &Params) -> Result<Run, SpecError> {
    let mut rng = StdRng::seed_from_u64(p.seed);
    let assigned = spec.assign(stores)?;
    let mut sims: BTreeMap<&str, SimStore> = stores
        .iter()
        .map(|s| {
            let offline = rng.gen_bool(p.offline_rate.clamp(0.0, 1.0));
            let sim = SimStore {
                offline_until: offline.then(|| p.back_after_s.unwrap_or(u64::MAX)),
                fails: p.always_fail.contains(&s.name) || rng.gen_bool(p.fail_rate.clamp(0.0, 1.0)),
                target: None,
                applying: None,
            };
            (s.name.as_str(), sim)
        })
        .collect();
    let mut state = State::new(spec);
    let mut reports: BTreeMap<String, Report> = BTreeMap::new();
    let mut delivered = Vec::new();
    let mut log = Vec::new();
    let mut steps = 0;
    let mut now = 0;
    let tick = p.poll_s.max(1);
    let last = loop {
        steps += 1;
        let mut d = evaluate(spec, &assigned, &state, &reports, now);
        for a in &d.actions {
            let Action::Publish { release, stores, .. } = a;
            for name in stores {
                if let Some(s) = sims.get_mut(name.as_str()) {
                    s.target = Some(release.clone());
                }
            }
        }
        // The handed sets only change with a publish, so phases and actions tell a step that
        // changed something. They stay out of the log (see `Run::log`).
        let changed = !d.actions.is_empty() || d.state.phases != state.phases;
        state = State { phases: d.state.phases.clone(), handed: std::mem::take(&mut d.state.handed) };
        if changed {
            log.push((now, d.clone()));
        }
        if finished(&state, &assigned) && sims.values().all(|s| s.applying.is_none()) || now >= p.horizon_s {
            d.state = state;
            break d;
        }
        now += tick;
        for (name, s) in sims.iter_mut() {
            if s.offline_until.is_some_and(|t| now < t) {
                continue;
            }
            if let Some((release, done)) = s.applying.clone() {
                if now >= done {
                    let failed = s.fails && release == spec.release;
                    let outcome = if failed { Outcome::Failed } else { Outcome::Succeeded };
                    let r = Report { release, outcome };
                    delivered.push((now, name.to_string(), r.clone()));
                    reports.insert(name.to_string(), r);
                    s.applying = None;
                }
                continue;
            }
            if let Some(t) = &s.target {
                let current = reports.get(*name).map(|r| r.release.as_str());
                if current != Some(t.as_str()) {
                    let d = rng.gen_range(p.apply_s.0..=p.apply_s.1.max(p.apply_s.0));
                    let r = Report { release: t.clone(), outcome: Outcome::Pending };
                    delivered.push((now, name.to_string(), r.clone()));
                    reports.insert(name.to_string(), r);
                    s.applying = Some((t.clone(), now + d));
                }
            }
        }
    };
    Ok(Run { log, last, reports, delivered, steps })
}

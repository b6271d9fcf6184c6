//! The wave controller on 500 simulated stores (seeded): a good release through canary → 50 →
//! 200 → rest; a bad one halted and reverted at the canary with nobody else touched; offline
//! stores as "no data" that pauses without failing, then resumes; failure budgets; an
//! irreversible release that only halts; a deterministic, region-spread pick.

use std::collections::{BTreeMap, BTreeSet};

use edge_fleet::rollout::{evaluate, Action, OnFailure, Outcome, Partition, Phase, Report, Spec, SpecError, State};
use edge_fleet::sim::{inventory, run, Params};

const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn partition(name: &str, count: Option<usize>, soak_s: u64, min_reported: f64, max_failed: usize) -> Partition {
    Partition { name: name.into(), stores: vec![], count, soak_s, min_reported, max_failed }
}

fn spec(on_failure: OnFailure) -> Spec {
    let mut canary = partition("canary", None, 3600, 1.0, 0);
    canary.stores = (1..=5).map(|i| format!("store-{i:03}")).collect();
    Spec {
        release: NEW.into(),
        previous: OLD.into(),
        partitions: vec![
            canary,
            partition("wave-50", Some(50), 3600, 0.95, 1),
            partition("wave-200", Some(200), 7200, 0.95, 4),
            partition("rest", None, 0, 0.95, 10),
        ],
        on_failure,
        irreversible: false,
    }
}

fn phases(d: &edge_fleet::rollout::Decision) -> Vec<Phase> {
    d.status.iter().map(|s| s.phase).collect()
}

#[test]
fn a_good_release_goes_through_every_wave_and_offline_stores_stay_pending() {
    let stores = inventory(500, 5);
    let s = spec(OnFailure::HaltAndRevert);
    let p = Params { seed: 7, fail_rate: 0.002, offline_rate: 0.01, ..Params::default() };
    let r = run(&s, &stores, &p).expect("spec");
    assert_eq!(phases(&r.last), vec![Phase::Passed; 4], "{:#?}", r.last.status);
    let sizes: Vec<usize> = r.last.status.iter().map(|s| s.stores).collect();
    assert_eq!(sizes, [5, 50, 200, 245]);
    // Every store got the release; offline ones are pending, never counted as failed.
    let total: (usize, usize, usize) =
        r.last.status.iter().fold((0, 0, 0), |a, s| (a.0 + s.succeeded, a.1 + s.failed, a.2 + s.pending));
    assert_eq!(total.0 + total.1 + total.2, 500);
    assert!(total.2 > 0, "some stores were offline: {total:?}");
    assert!(r.reports.values().all(|rep| rep.release == NEW));
    // Partitions opened in order, each after the previous passed and soaked.
    let opened: Vec<(u64, String)> = r
        .log
        .iter()
        .flat_map(|(t, d)| d.actions.iter().map(move |Action::Publish { partition, .. }| (*t, partition.clone())))
        .collect();
    assert_eq!(opened.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(), ["canary", "wave-50", "wave-200", "rest"]);
    assert!(opened.windows(2).all(|w| w[1].0 >= w[0].0 + 3600), "{opened:?}");
    // Same seed, same run.
    assert_eq!(run(&s, &stores, &p).expect("spec").log.len(), r.log.len());
}

#[test]
fn a_bad_release_halts_and_reverts_at_the_canary_and_nobody_else_sees_it() {
    let stores = inventory(500, 5);
    let s = spec(OnFailure::HaltAndRevert);
    let p = Params { seed: 3, always_fail: vec!["store-002".into()], ..Params::default() };
    let r = run(&s, &stores, &p).expect("spec");
    assert_eq!(phases(&r.last), [Phase::Reverted, Phase::Waiting, Phase::Waiting, Phase::Waiting]);
    let halted = r.log.iter().find(|(_, d)| d.status[0].phase == Phase::Reverted).expect("the step that reverted");
    assert!(halted.1.status[0].verdict.contains("1 failed (budget 0)"), "{}", halted.1.status[0].verdict);
    let touched: BTreeSet<&str> = r.reports.keys().map(String::as_str).collect();
    assert_eq!(
        touched,
        (1..=5).map(|i| format!("store-{i:03}")).collect::<BTreeSet<_>>().iter().map(String::as_str).collect()
    );
    // The canary is back on the previous release (a newer manifest naming it).
    assert!(r.reports.values().all(|rep| rep.release == OLD && rep.outcome == Outcome::Succeeded), "{:?}", r.reports);
    let published: Vec<&Action> = r.log.iter().flat_map(|(_, d)| &d.actions).collect();
    assert_eq!(published.last(), Some(&&Action::Publish { partition: "canary".into(), release: OLD.into() }));

    // Halt only: the canary stays where it is, nothing else opens.
    let r = run(&spec(OnFailure::Halt), &stores, &p).expect("spec");
    assert_eq!(phases(&r.last), [Phase::Halted, Phase::Waiting, Phase::Waiting, Phase::Waiting]);
    // Irreversible: never reverted, whatever the spec asks.
    let mut irr = spec(OnFailure::HaltAndRevert);
    irr.irreversible = true;
    let r = run(&irr, &stores, &p).expect("spec");
    assert_eq!(r.last.status[0].phase, Phase::Halted);
    let halted = r.log.iter().find(|(_, d)| d.status[0].phase == Phase::Halted).expect("the step that halted");
    assert!(halted.1.status[0].verdict.contains("irreversible"), "{}", halted.1.status[0].verdict);
    assert!(r.reports.values().all(|rep| rep.release == NEW), "nothing went back");
}

#[test]
fn no_data_pauses_without_failing_and_the_rollout_resumes_when_stores_come_back() {
    let stores = inventory(500, 5);
    let s = spec(OnFailure::HaltAndRevert);
    // A third of the fleet offline for 2 days: wave gates wait, then pass.
    let p = Params { seed: 11, offline_rate: 0.33, back_after_s: Some(2 * 24 * 3600), ..Params::default() };
    let r = run(&s, &stores, &p).expect("spec");
    assert_eq!(phases(&r.last), vec![Phase::Passed; 4], "{:#?}", r.last.status);
    // The gate of a partition waited for the offline stores (opened → gate met ≥ 2 days).
    let opened_at = |name: &str| {
        r.log
            .iter()
            .find(|(_, d)| d.actions.iter().any(|Action::Publish { partition, .. }| partition == name))
            .map(|(t, _)| *t)
    };
    let met_at =
        |i: usize| r.log.iter().find(|(_, d)| matches!(d.status[i].phase, Phase::Soaking { .. })).map(|(t, _)| *t);
    let waited = (0..4).filter_map(|i| Some(met_at(i)? - opened_at(&s.partitions[i].name)?)).max().unwrap_or(0);
    assert!(waited >= 2 * 24 * 3600 - 3600, "waited {waited} s");
    // Never back: the rollout waits (it neither passes nor fails) until the horizon.
    let p = Params { back_after_s: None, horizon_s: 4 * 24 * 3600, ..p };
    let r = run(&s, &stores, &p).expect("spec");
    assert!(r.last.status.iter().all(|st| st.failed == 0));
    let open = r.last.status.iter().find(|st| matches!(st.phase, Phase::Open { .. })).expect("a partition still open");
    assert!(open.verdict.starts_with("no data yet") && open.pending > 0, "{}", open.verdict);
    assert!(!r.last.status.iter().any(|st| matches!(st.phase, Phase::Halted | Phase::Reverted)));
}

#[test]
fn failures_within_a_partitions_budget_pass_and_beyond_it_halt_that_wave() {
    let stores = inventory(500, 5);
    let s = spec(OnFailure::HaltAndRevert);
    let assigned = s.assign(&stores).expect("assign");
    let mut state = State::new(&s);
    let mut reports = BTreeMap::new();
    let ok = Report { release: NEW.into(), outcome: Outcome::Succeeded };
    let bad = Report { release: NEW.into(), outcome: Outcome::Failed };
    let mut t = 0;
    let step = |state: &mut State, reports: &BTreeMap<String, Report>, t: u64| {
        let d = evaluate(&s, &assigned, state, reports, t);
        *state = d.state.clone();
        d
    };
    step(&mut state, &reports, t);
    for st in &assigned[0] {
        reports.insert(st.clone(), ok.clone());
    }
    t += 60;
    step(&mut state, &reports, t); // soaking
    t += 3600;
    let d = step(&mut state, &reports, t); // passed; wave-50 opens
    assert_eq!(d.actions, [Action::Publish { partition: "wave-50".into(), release: NEW.into() }]);
    // wave-50: one failure (budget 1), 47 succeeded (≥ 95 % reported): passes after its soak.
    for (i, st) in assigned[1].iter().enumerate().take(48) {
        reports.insert(st.clone(), if i == 0 { bad.clone() } else { ok.clone() });
    }
    t += 60;
    let d = step(&mut state, &reports, t);
    assert!(matches!(d.status[1].phase, Phase::Soaking { .. }), "{}", d.status[1].verdict);
    t += 3600;
    let d = step(&mut state, &reports, t);
    assert_eq!(d.status[1].phase, Phase::Passed);
    // wave-200: five failures over a budget of 4 → halted and everything reverted.
    for st in assigned[2].iter().take(5) {
        reports.insert(st.clone(), bad.clone());
    }
    t += 60;
    let d = step(&mut state, &reports, t);
    assert_eq!(phases(&d), [Phase::Reverted, Phase::Reverted, Phase::Reverted, Phase::Waiting]);
    let reverted: Vec<&str> = d
        .actions
        .iter()
        .map(|Action::Publish { partition, release }| {
            assert_eq!(release, OLD);
            partition.as_str()
        })
        .collect();
    assert_eq!(reverted, ["canary", "wave-50", "wave-200"]);
    // The next evaluation publishes nothing more.
    assert!(step(&mut state, &reports, t + 60).actions.is_empty());
}

#[test]
fn the_pick_is_deterministic_spread_over_regions_and_specs_are_checked() {
    let stores = inventory(500, 5);
    let s = spec(OnFailure::Halt);
    let a = s.assign(&stores).expect("assign");
    assert_eq!(a, s.assign(&stores).expect("assign"));
    let region = |n: &str| stores.iter().find(|s| s.name == n).map(|s| s.region.clone()).unwrap_or_default();
    let mut per_region: BTreeMap<String, usize> = BTreeMap::new();
    for n in &a[1] {
        *per_region.entry(region(n)).or_default() += 1;
    }
    assert_eq!(per_region.values().copied().collect::<Vec<_>>(), [10; 5], "wave-50 spread over 5 regions");
    let all: BTreeSet<&String> = a.iter().flatten().collect();
    assert_eq!(all.len(), 500, "every store in exactly one partition");
    // Another release samples differently.
    let mut other = spec(OnFailure::Halt);
    other.release = "3".repeat(64);
    assert_ne!(other.assign(&stores).expect("assign")[1], a[1]);

    let mut bad = spec(OnFailure::Halt);
    bad.partitions[1].stores = vec!["store-001".into()];
    bad.partitions[1].count = None;
    assert!(matches!(bad.assign(&stores), Err(SpecError::Twice { index: 1, .. })));
    bad.partitions[1].stores = vec!["store-999".into()];
    assert!(matches!(bad.assign(&stores), Err(SpecError::UnknownStore { .. })));
    bad.partitions[1].count = Some(3);
    assert_eq!(bad.assign(&stores), Err(SpecError::Size(1)));
}

#[test]
fn a_late_failure_in_a_passed_partition_still_halts_the_rollout() {
    let stores = inventory(500, 5);
    let s = spec(OnFailure::HaltAndRevert);
    let assigned = s.assign(&stores).expect("assign");
    let ok = Report { release: NEW.into(), outcome: Outcome::Succeeded };
    let mut reports: BTreeMap<String, Report> = assigned[0].iter().map(|n| (n.clone(), ok.clone())).collect();
    let mut state = State::new(&s);
    for t in [0, 60, 3660] {
        state = evaluate(&s, &assigned, &state, &reports, t).state;
    }
    assert_eq!(state.phases[0], Phase::Passed);
    assert!(matches!(state.phases[1], Phase::Open { .. }));
    reports.insert(assigned[0][0].clone(), Report { release: NEW.into(), outcome: Outcome::Failed });
    let d = evaluate(&s, &assigned, &state, &reports, 3720);
    assert_eq!(phases(&d)[..2], [Phase::Reverted, Phase::Reverted]);
    assert_eq!(d.actions.len(), 2, "{:?}", d.actions);
}

//! The wave controller on 500 simulated stores (seeded): a good release through canary → 50 →
//! 200 → rest; a bad one halted and reverted at the canary with nobody else touched; offline
//! stores as "no data" that pauses without failing, then resumes; failure budgets; an
//! irreversible release that only halts; a deterministic, region-spread pick; `max_in_flight`
//! bounding the stores that hold the release without a final report, checked against the
//! published store lists and the simulated stores' reports, a revert that takes back only the
//! stores that were handed the release, and state written before stores were handed one by one.

use std::collections::{BTreeMap, BTreeSet};

use edge_fleet::rollout::{evaluate, Action, OnFailure, Outcome, Partition, Phase, Report, Spec, SpecError, State};
use edge_fleet::sim::{inventory, run, Params, Run};

const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn partition(name: &str, count: Option<usize>, soak_s: u64, min_reported: f64, max_failed: usize) -> Partition {
    Partition { name: name.into(), stores: vec![], count, soak_s, min_reported, max_failed, max_in_flight: None }
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
    let canary: Vec<String> = (1..=5).map(|i| format!("store-{i:03}")).collect();
    assert_eq!(
        published.last(),
        Some(&&Action::Publish { partition: "canary".into(), release: OLD.into(), stores: canary })
    );

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
    assert_eq!(
        d.actions,
        [Action::Publish { partition: "wave-50".into(), release: NEW.into(), stores: assigned[1].clone() }]
    );
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
        .map(|Action::Publish { partition, release, stores }| {
            assert_eq!(release, OLD);
            assert_eq!(
                stores.len(),
                s.partitions.iter().position(|p| &p.name == partition).map_or(0, |i| assigned[i].len())
            );
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

/// `spec` with the later waves handed the release a few stores at a time.
fn limited(on_failure: OnFailure) -> Spec {
    let mut s = spec(on_failure);
    s.partitions[1].max_in_flight = Some(10);
    s.partitions[2].max_in_flight = Some(20);
    s.partitions[3].max_in_flight = Some(20);
    s
}

/// The rollout as the decisions' published store lists and the simulated stores' reports tell
/// it, recomputed outside the controller; the in-flight bound is checked after every decision.
/// Between decisions the in-flight count can only go down (nothing is handed, and a store's
/// report on the release only moves from pending to final), so these are the points to check.
struct Replay {
    /// Per partition, the stores handed `NEW`, in the order they were.
    handed: Vec<Vec<String>>,
    /// Per partition, the stores `OLD` was published to again (the revert), and when.
    reverted: Vec<Vec<String>>,
    revert_at: Option<u64>,
    /// Per partition, the most stores in flight after a decision while it was going forward.
    peak: Vec<usize>,
}

fn replay(s: &Spec, r: &Run) -> Replay {
    let n = s.partitions.len();
    let mut out = Replay { handed: vec![vec![]; n], reverted: vec![vec![]; n], revert_at: None, peak: vec![0; n] };
    let mut handed_at: BTreeMap<&str, u64> = BTreeMap::new();
    let mut reports: BTreeMap<&str, &Report> = BTreeMap::new();
    let mut delivered = r.delivered.iter().peekable();
    assert!(!r.log.is_empty() && !r.delivered.is_empty());
    for (t, d) in &r.log {
        // What the controller saw at `t`: the reports delivered up to then. A store only ever
        // reports on NEW after an earlier decision handed it NEW.
        while let Some((at, store, rep)) = delivered.next_if(|(at, _, _)| at <= t) {
            if rep.release == NEW {
                assert!(handed_at.get(store.as_str()).is_some_and(|h| h < at), "{store} ran NEW at {at} unhanded");
            }
            reports.insert(store, rep);
        }
        for a in &d.actions {
            let Action::Publish { partition, release, stores } = a;
            assert!(!stores.is_empty(), "a publish names its stores: {a:?}");
            let i = s.partitions.iter().position(|p| &p.name == partition).expect("a partition of the spec");
            if release == NEW {
                assert!(out.revert_at.is_none(), "t={t}: {partition} handed NEW after the revert");
                for st in stores {
                    assert!(handed_at.insert(st, *t).is_none(), "{st} handed NEW twice");
                }
                out.handed[i].extend(stores.iter().cloned());
            } else {
                assert_eq!(release, OLD);
                out.revert_at.get_or_insert(*t);
                out.reverted[i].extend(stores.iter().cloned());
            }
        }
        for (i, p) in s.partitions.iter().enumerate() {
            let done = |st: &String| {
                reports.get(st.as_str()).is_some_and(|r| r.release == NEW && r.outcome != Outcome::Pending)
            };
            let in_flight = out.handed[i].iter().filter(|st| !done(st)).count();
            let st = &d.status[i];
            assert_eq!((st.handed, st.in_flight), (out.handed[i].len(), in_flight), "t={t} {}: {}", p.name, st.verdict);
            if !matches!(st.phase, Phase::Halted | Phase::Reverted) {
                if let Some(m) = p.max_in_flight {
                    assert!(in_flight <= m, "t={t}: {} has {in_flight} in flight, limit {m}", p.name);
                }
                out.peak[i] = out.peak[i].max(in_flight);
            }
        }
    }
    out
}

#[test]
fn max_in_flight_bounds_each_partition_and_every_store_is_handed_the_release_in_order() {
    let stores = inventory(500, 5);
    let s = limited(OnFailure::HaltAndRevert);
    let assigned = s.assign(&stores).expect("assign");
    // 1 % offline for good: handed the release, they never report and keep their place in flight.
    let p = Params { seed: 7, fail_rate: 0.002, offline_rate: 0.01, ..Params::default() };
    let r = run(&s, &stores, &p).expect("spec");
    assert_eq!(phases(&r.last), vec![Phase::Passed; 4], "{:#?}", r.last.status);
    let rp = replay(&s, &r);
    assert_eq!(rp.handed, assigned, "every store handed the release once, in its partition's order");
    assert_eq!(rp.handed.iter().map(Vec::len).sum::<usize>(), 500);
    assert_eq!(rp.revert_at, None);
    // Each limit was reached and never passed; the canary (no limit) got the release at once.
    assert_eq!(rp.peak, [5, 10, 20, 20]);
    let publishes = |name: &str| {
        r.log.iter().flat_map(|(_, d)| &d.actions).filter(|Action::Publish { partition, .. }| partition == name).count()
    };
    assert_eq!(publishes("canary"), 1);
    assert!(publishes("wave-200") >= 10 && publishes("rest") >= 13, "handed in batches");
    // Silent stores hold their place: what is still in flight at the end is the offline stores.
    let silent = stores.iter().filter(|st| !r.reports.contains_key(&st.name)).count();
    assert!(silent > 0);
    assert_eq!(r.last.status.iter().map(|st| st.in_flight).sum::<usize>(), silent);
    // The status says why a partition is slow.
    assert!(r.log.iter().any(|(_, d)| d.status[2].verdict.contains("20 in flight, limit 20")), "no step at the limit");
    // Same seed, same run.
    assert_eq!(run(&s, &stores, &p).expect("spec").log, r.log);
}

#[test]
fn a_halt_and_revert_takes_back_only_the_stores_that_were_handed_the_release() {
    let stores = inventory(500, 5);
    let s = limited(OnFailure::HaltAndRevert);
    let assigned = s.assign(&stores).expect("assign");
    // The first stores wave-200 hands the release to fail: five, over its budget of 4.
    let p = Params { seed: 5, always_fail: assigned[2][..5].to_vec(), ..Params::default() };
    let r = run(&s, &stores, &p).expect("spec");
    assert_eq!(phases(&r.last), [Phase::Reverted, Phase::Reverted, Phase::Reverted, Phase::Waiting]);
    let rp = replay(&s, &r);
    let at = rp.revert_at.expect("a revert");
    for i in 0..3 {
        let handed: BTreeSet<&String> = rp.handed[i].iter().collect();
        assert!(!handed.is_empty());
        assert_eq!(rp.reverted[i].iter().collect::<BTreeSet<_>>(), handed, "{}", s.partitions[i].name);
        assert_eq!(rp.reverted[i].len(), handed.len(), "each once");
    }
    assert!(rp.handed[3].is_empty() && rp.reverted[3].is_empty(), "rest never opened");
    // wave-200 stopped part way: its other stores never saw NEW, nor a manifest, nor applied.
    let never: Vec<&String> = assigned[2].iter().filter(|st| !rp.handed[2].contains(st)).collect();
    assert!(rp.handed[2].len() >= 20 && !never.is_empty(), "{} handed", rp.handed[2].len());
    for st in never.iter().copied().chain(&assigned[3]) {
        assert_eq!(r.reports.get(st), None, "{st} never ran anything");
    }
    for st in rp.handed.iter().flatten() {
        assert_eq!(r.reports.get(st), Some(&Report { release: OLD.into(), outcome: Outcome::Succeeded }), "{st}");
    }
    // The decision says which stores go back.
    let d = &r.log.iter().find(|(t, _)| *t == at).expect("the reverting decision").1;
    let says = format!(
        "goes back to the {} stores that were handed the release (the other {} never got it)",
        rp.handed[2].len(),
        never.len()
    );
    assert!(d.status[2].verdict.contains(&says), "{}", d.status[2].verdict);
    assert!(
        d.status[0].verdict.ends_with("goes back to the 5 stores that were handed the release"),
        "{}",
        d.status[0].verdict
    );
}

#[test]
fn pending_or_silent_stores_keep_their_place_and_a_halting_step_hands_nothing_more() {
    let stores = inventory(500, 5);
    let mut s = spec(OnFailure::Halt);
    s.partitions[0].max_in_flight = Some(2);
    let assigned = s.assign(&stores).expect("assign");
    let canary = &assigned[0];
    let mut state = State::new(&s);
    let mut reports = BTreeMap::new();
    let mut step = |reports: &BTreeMap<String, Report>, t: u64| {
        let d = evaluate(&s, &assigned, &state, reports, t);
        state = d.state.clone();
        d
    };
    let publish = |stores: &[String]| Action::Publish {
        partition: "canary".into(),
        release: NEW.into(),
        stores: stores.to_vec(),
    };
    let d = step(&reports, 0);
    assert_eq!(d.actions, [publish(&canary[..2])]);
    assert!(d.status[0].verdict.contains("2 in flight, limit 2; 2 of 5 handed the release"), "{}", d.status[0].verdict);
    // Pending on NEW, and a final report on another release: both still in flight.
    reports.insert(canary[0].clone(), Report { release: NEW.into(), outcome: Outcome::Pending });
    reports.insert(canary[1].clone(), Report { release: OLD.into(), outcome: Outcome::Succeeded });
    let d = step(&reports, 60);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!((d.status[0].in_flight, d.status[0].handed), (2, 2));
    reports.insert(canary[0].clone(), Report { release: NEW.into(), outcome: Outcome::Succeeded });
    let d = step(&reports, 120);
    assert_eq!(d.actions, [publish(&canary[2..3])]);
    // A failure over the budget: halted, and the step hands nobody else the release.
    reports.insert(canary[1].clone(), Report { release: NEW.into(), outcome: Outcome::Failed });
    let d = step(&reports, 180);
    assert_eq!(d.status[0].phase, Phase::Halted);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(d.state.handed[0].len(), 3);
}

#[test]
fn a_max_in_flight_of_zero_is_refused_with_its_attribute_path() {
    let stores = inventory(500, 5);
    let mut s = limited(OnFailure::Halt);
    s.partitions[2].max_in_flight = Some(0);
    let e = s.assign(&stores).expect_err("0 refused");
    assert_eq!(e, SpecError::InFlight(2));
    assert!(e.to_string().starts_with("partitions[2].max_in_flight:"), "{e}");
    // As written in a spec file, and through the simulation.
    let mut v: serde_json::Value =
        serde_json::from_str(include_str!("../examples/rollout.json")).expect("the example parses");
    v["partitions"][3]["max_in_flight"] = 0.into();
    let s: Spec = serde_json::from_value(v).expect("a spec");
    match run(&s, &stores, &Params::default()) {
        Err(e) => assert_eq!(e.to_string(), "partitions[3].max_in_flight: at least 1 (leave it out for no limit)"),
        Ok(_) => panic!("simulated a spec with max_in_flight 0"),
    }
    // The example limits its later waves, and runs.
    let s: Spec = serde_json::from_str(include_str!("../examples/rollout.json")).expect("the example parses");
    assert!(s.partitions.iter().skip(1).any(|p| p.max_in_flight.is_some()), "{:?}", s.partitions);
    assert!(s.assign(&stores).is_ok());
}

#[test]
fn state_from_before_max_in_flight_still_takes_back_every_store_it_published() {
    let stores = inventory(500, 5);
    let s = limited(OnFailure::HaltAndRevert);
    let assigned = s.assign(&stores).expect("assign");
    // Phases only: written when an opened partition's stores all got the release at once.
    let state: State = serde_json::from_str(r#"{"phases": ["passed", {"open": {"since": 0}}, "waiting", "waiting"]}"#)
        .expect("old state parses");
    let bad = Report { release: NEW.into(), outcome: Outcome::Failed };
    let reports: BTreeMap<String, Report> = assigned[1].iter().take(2).map(|st| (st.clone(), bad.clone())).collect();
    let d = evaluate(&s, &assigned, &state, &reports, 60);
    assert_eq!(phases(&d), [Phase::Reverted, Phase::Reverted, Phase::Waiting, Phase::Waiting]);
    let back: Vec<(&str, &str, usize)> = d
        .actions
        .iter()
        .map(|Action::Publish { partition, release, stores }| (partition.as_str(), release.as_str(), stores.len()))
        .collect();
    assert_eq!(back, [("canary", OLD, 5), ("wave-50", OLD, 50)]);
    // And the state carries the stores from now on.
    let again: State = serde_json::from_str(&serde_json::to_string(&d.state).expect("json")).expect("parses");
    assert_eq!(again, d.state);
    assert_eq!(again.handed.iter().map(BTreeSet::len).collect::<Vec<_>>(), [5, 50, 0, 0]);
}

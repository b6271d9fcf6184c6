//! Version profiles as a client sees them: what `/version` answers and what each release's
//! schema accepts. Rows PVE-VER, PBS-VER, PBS-V1 of FIDELITY.md.

mod common;

use common::TestLab;

/// One lab per profile pair, on the loopback block `net` one after the other.
fn each_profile(net: u8, f: impl Fn(&TestLab, &str, &str)) {
    for (pve, pbs) in [("8.4", "3.2"), ("9.1", "3.4"), ("9.1", "4.0")] {
        let lab = TestLab::up(net, &["--pve", pve, "--pbs", pbs]);
        f(&lab, pve, pbs);
    }
}

#[test]
fn version_answers_per_profile() {
    each_profile(78, |lab, pve, pbs| {
        let (code, v) = lab.pve(0, "GET", "/version", &[]);
        assert_eq!(code, 200, "{v}");
        let want = if pve == "8.4" { "8.4.18" } else { "9.1.17" };
        assert_eq!(v["data"]["version"], want);
        assert_eq!(v["data"]["release"], pve);
        assert_eq!(v["data"]["repoid"].as_str().map(str::len), Some(16));
        let (code, v) = lab.pbs("GET", "/version", &[]);
        assert_eq!(code, 200, "{v}");
        // PBS: major.minor in `version`, the patch level in `release`.
        assert_eq!(v["data"]["version"], pbs);
        let release = match pbs {
            "3.2" => "4",
            "3.4" => "2",
            _ => "11",
        };
        assert_eq!(v["data"]["release"], release);
        assert_eq!(v["data"]["repoid"].as_str().map(str::len), Some(40));
        let (_, st) = lab.pve(0, "GET", "/nodes/pve1/status", &[]);
        assert!(
            st["data"]["pveversion"].as_str().is_some_and(|p| p.starts_with(&format!("pve-manager/{want}/"))),
            "{st}"
        );
    });
}

/// A parameter the release does not know is refused, not ignored: PBS 3.2.4 answers a sync job
/// with `sync-direction` with 400.
#[test]
fn unknown_parameters_of_older_releases_are_refused() {
    each_profile(79, |lab, _, pbs| {
        let body = [("id", "sync-1"), ("store", "store1"), ("remote-store", "other"), ("sync-direction", "pull")];
        let (code, v) = lab.pbs("POST", "/config/sync", &body);
        if pbs == "3.2" {
            assert_eq!(code, 400, "PBS 3.2 has no sync-direction: {v}");
            assert!(v.to_string().contains("sync-direction"), "the refusal names the parameter: {v}");
        } else {
            assert_eq!(code, 200, "PBS {pbs} knows sync-direction: {v}");
        }
    });
}

//! Provider functions through the real Terraform 1.15: `provider::edge::calendar_next` and
//! `provider::edge::nix_base32` in outputs, applied, read back with `output -json`. No lab: the
//! functions are pure. nix_base32 is checked against the real `nix` (when it is on PATH) fed the
//! hex digests Terraform's own `sha256()`/`sha1()`/… computed; calendar_next against run times
//! worked out by hand from the calendar (weekdays noted). Bad arguments give Terraform's
//! "Invalid value for "<name>" parameter" with our message; Terraform 1.0.3 cannot parse the
//! `provider::` call syntax at all, and that error is pinned too.

use std::process::Command;

use edge_acceptance::{terraform_legacy_bin, Tf, Value};

const HEADER: &str = "terraform {\n  required_providers { edge = { source = \"edgeform/edge\" } }\n}\n";

fn outputs_of(body: &str) -> Value {
    let tf = Tf::new(&format!("{HEADER}{body}"));
    tf.init();
    tf.apply();
    tf.outputs()
}

fn out<'a>(outputs: &'a Value, name: &str) -> &'a str {
    outputs[name]["value"].as_str().unwrap_or_else(|| panic!("output {name} missing or not a string:\n{outputs:#}"))
}

#[test]
fn calendar_next_gives_the_next_run() {
    // (event, from, next run): weekdays by the Gregorian calendar.
    let cases = [
        // Friday 2025-01-03 02:00 exactly: strictly after, so Monday 2025-01-06.
        ("mon..fri 02:00", "2025-01-03T02:00:00Z", "2025-01-06T02:00:00Z"),
        // Tuesday 2025-01-07 01:59:59: the same day's run.
        ("mon..fri 02:00", "2025-01-07T01:59:59Z", "2025-01-07T02:00:00Z"),
        ("*-*-01 00:00", "2025-01-15T10:00:00Z", "2025-02-01T00:00:00Z"),
        // 31 December rolls into the next year.
        ("*-*-01 00:00", "2025-12-31T23:59:59Z", "2026-01-01T00:00:00Z"),
        // Saturday 2025-03-01 15:00 is the first Saturday of March; April 1 is a Tuesday, so
        // the first Saturday of April is the 5th.
        ("sat *-1..7 15:00", "2025-03-01T15:00:00Z", "2025-04-05T15:00:00Z"),
        // The offset counts: 03:30+02:00 is 01:30 UTC, before that day's 02:00.
        ("02:00", "2025-01-03T03:30:00+02:00", "2025-01-03T02:00:00Z"),
        ("*:0/15", "2025-01-03T10:07:12Z", "2025-01-03T10:15:00Z"),
        ("weekly", "2025-01-03T00:00:00Z", "2025-01-06T00:00:00Z"),
        ("mon..fri 02:00 UTC", "2025-01-04T12:00:00Z", "2025-01-06T02:00:00Z"),
    ];
    let mut body = String::new();
    for (i, (event, from, _)) in cases.iter().enumerate() {
        body.push_str(&format!(
            "output \"c{i}\" {{\n  value = provider::edge::calendar_next({event:?}, {from:?})\n}}\n"
        ));
    }
    // At apply time, from `timestamp()` (unknown while planning, so Terraform calls the
    // function only once it is known); Terraform's own `timecmp`/`timeadd` judge the result.
    body.push_str(
        "locals {\n  now   = timestamp()\n  daily = provider::edge::calendar_next(\"daily\", local.now)\n}\n\
         output \"daily\" {\n  value = local.daily\n}\n\
         output \"after_now\" {\n  value = timecmp(local.daily, local.now)\n}\n\
         output \"within_a_day\" {\n  value = timecmp(local.daily, timeadd(local.now, \"24h\"))\n}\n",
    );
    let o = outputs_of(&body);
    for (i, (event, from, want)) in cases.iter().enumerate() {
        assert_eq!(out(&o, &format!("c{i}")), *want, "{event} after {from}");
    }
    let daily = out(&o, "daily");
    assert!(daily.ends_with("T00:00:00Z"), "{daily}");
    assert_eq!(o["after_now"]["value"], 1, "daily {daily} is after now:\n{o:#}");
    assert!(o["within_a_day"]["value"].as_i64().is_some_and(|c| c <= 0), "daily {daily} within 24h:\n{o:#}");
}

/// `nix hash convert` (Nix ≥ 2.19) or `nix hash to-base32` (older), with nix-command enabled.
fn nix32_by_nix(algo: &str, hex: &str) -> Option<String> {
    let run = |args: &[&str]| -> Option<String> {
        let o = Command::new("nix").args(["--extra-experimental-features", "nix-command"]).args(args).output().ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    run(&["hash", "convert", "--hash-algo", algo, "--to", "nix32", hex])
        .or_else(|| run(&["hash", "to-base32", "--type", algo, hex]))
}

#[test]
fn nix_base32_matches_nix() {
    let inputs = [
        ("sha256", "\"\""),
        ("sha256", "\"edgeform\""),
        ("sha1", "\"edgeform\""),
        ("md5", "\"edgeform\""),
        ("sha512", "\"edgeform\""),
    ];
    let mut body = String::new();
    for (i, (algo, s)) in inputs.iter().enumerate() {
        body.push_str(&format!(
            "output \"hex{i}\" {{\n  value = {algo}({s})\n}}\noutput \"n{i}\" {{\n  value = \
             provider::edge::nix_base32({algo}({s}))\n}}\n"
        ));
    }
    // Upper-case digits and a trailing newline (as `file()` of a `sha256sum` output gives).
    body.push_str("output \"upper\" {\n  value = provider::edge::nix_base32(\"${upper(sha256(\"\"))}\\n\")\n}\n");
    let o = outputs_of(&body);

    // Nix's own documentation and test suite print this for sha256 of the empty string.
    let empty = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    assert_eq!(out(&o, "n0"), empty);
    assert_eq!(out(&o, "upper"), empty);
    assert_eq!(out(&o, "n4").len(), 103, "sha512 is 103 nix32 characters");

    let have_nix = Command::new("nix").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have_nix {
        eprintln!("nix is not on PATH: only the published sha256(\"\") vector was checked");
        return;
    }
    for (i, (algo, s)) in inputs.iter().enumerate() {
        let hex = out(&o, &format!("hex{i}"));
        let want = nix32_by_nix(algo, hex).unwrap_or_else(|| panic!("nix could not convert {algo} {hex}"));
        assert_eq!(out(&o, &format!("n{i}")), want, "{algo}({s}) = {hex}");
    }
}

/// One Tf whose main.tf is rewritten per case: each bad call must fail `plan` with Terraform's
/// argument diagnostic and our message.
#[test]
fn bad_arguments_name_the_argument() {
    let cases: [(&str, &[&str]); 7] = [
        (
            r#"provider::edge::calendar_next("mon..fry 02:00", "2025-01-03T02:00:00Z")"#,
            &["Invalid value for \"event\" parameter", "\"fry\" is not a weekday"],
        ),
        (
            r#"provider::edge::calendar_next("*-13-01", "2025-01-03T02:00:00Z")"#,
            &["Invalid value for \"event\" parameter", "month 13"],
        ),
        (
            r#"provider::edge::calendar_next("daily", "yesterday")"#,
            &["Invalid value for \"from\" parameter", "\"yesterday\" is not an RFC 3339 timestamp"],
        ),
        (
            r#"provider::edge::calendar_next("2020-01-01", "2025-01-03T02:00:00Z")"#,
            &["Invalid value for \"event\" parameter", "never runs after 2025-01-03T02:00:00Z"],
        ),
        (
            r#"provider::edge::nix_base32("sha256:e3b0")"#,
            &["Invalid value for \"hex\" parameter", "not a hexadecimal digit", "without an algorithm prefix"],
        ),
        (r#"provider::edge::nix_base32("abc")"#, &["Invalid value for \"hex\" parameter", "3 digits is an odd number"]),
        (r#"provider::edge::nix_base32("")"#, &["Invalid value for \"hex\" parameter", "the digest is empty"]),
    ];
    let tf = Tf::new(HEADER);
    tf.init();
    for (call, wants) in cases {
        tf.write("main.tf", &format!("{HEADER}output \"x\" {{\n  value = {call}\n}}\n"));
        let r = tf.run(&["plan", "-no-color"]);
        let text = r.output();
        assert!(!r.ok(), "{call} should fail:\n{text}");
        // Terraform wraps long messages: compare with runs of blanks as one space.
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for want in wants {
            assert!(flat.contains(want), "{call}: expected {want:?} in:\n{text}");
        }
        assert!(flat.contains("while calling provider::edge::"), "{call}:\n{text}");
        // Terraform points at the call in the configuration.
        assert!(text.contains("on main.tf line 5"), "{call}:\n{text}");
    }
}

/// Terraform before 1.8 has no provider functions: 1.0.3's HCL cannot even parse the
/// `provider::edge::…` call, and says so at `init`, before any provider is involved.
#[test]
fn function_calls_on_terraform_1_0_3() {
    let tf = Tf::with_terraform(
        &format!(
            "{HEADER}output \"next\" {{\n  value = provider::edge::calendar_next(\"daily\", \"2025-01-03T02:00:00Z\")\n}}\n"
        ),
        terraform_legacy_bin(),
    );
    let r = tf.run(&["init", "-no-color"]);
    let out = r.output();
    assert!(!r.ok(), "1.0.3 init should fail:\n{out}");
    assert!(out.contains("Missing newline after argument"), "{out}");
    assert!(out.contains("provider::edge::calendar_next"), "{out}");
}

#![allow(dead_code)] // each test binary uses its own part
//! The one matcher of the bad-input tables (`bad_input*.rs`, `actions_bad_input.rs`): each case
//! is one block (resource, data source, action or aliased provider) with one mistake; real
//! `terraform validate -json` must report an error that
//! - starts inside that case's block (by line range: a provider block's snippet context does not
//!   name its alias, so ranges are the one way that works for every kind),
//! - whose highlighted source contains the offending attribute's line (so the diagnostic carried
//!   the attribute path, or Terraform could not have found that line), and
//! - whose summary or detail says what to do instead.
//!
//! No lab needed: validation is offline.

use std::ops::Range;

use edge_acceptance::{Tf, Value};

pub struct Case {
    /// Resource, data source or action type (for provider cases, unused: `"edge"`).
    pub ty: &'static str,
    /// The block's body (one attribute per line); for actions, the `config` block's body.
    pub body: &'static str,
    /// Text the highlighted source must contain (the attribute's line, or its block's first line
    /// when the attribute is missing from the configuration).
    pub line: &'static str,
    /// Text the summary or detail must contain.
    pub says: &'static str,
}

pub const fn c(ty: &'static str, body: &'static str, line: &'static str, says: &'static str) -> Case {
    Case { ty, body, line, says }
}

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Resource,
    Data,
    Action,
    /// `provider "edge" { alias = "c<i>" … }`, with one resource that uses it: Terraform only
    /// validates provider configurations something uses (checked by `unused_aliases_are_not_validated`
    /// in bad_input_provider.rs).
    Provider,
}

pub const HEADER: &str =
    "terraform {\n  required_providers { edge = { source = \"edgeform/edge\" } }\n}\nprovider \"edge\" {}\n";

impl Kind {
    /// The case's block, and how many of its first lines belong to the case proper (a provider
    /// case's resource that uses it is not where its diagnostics may point).
    fn block(self, ty: &str, i: usize, body: &str) -> (String, usize) {
        let text = match self {
            Kind::Resource => format!("resource \"{ty}\" \"c{i}\" {{\n{body}\n}}\n"),
            Kind::Data => format!("data \"{ty}\" \"c{i}\" {{\n{body}\n}}\n"),
            Kind::Action => format!("action \"{ty}\" \"c{i}\" {{\n  config {{\n{body}\n  }}\n}}\n"),
            Kind::Provider => format!("provider \"edge\" {{\nalias = \"c{i}\"\n{body}\n}}\n"),
        };
        let own = text.lines().count();
        match self {
            Kind::Provider => {
                (format!("{text}resource \"edge_wireguard_key\" \"c{i}\" {{\n  provider = edge.c{i}\n}}\n"), own)
            }
            _ => (text, own),
        }
    }
}

/// The configuration (header, one block per case, then `extra`) and each case's lines (1-based,
/// end exclusive).
pub fn config(kind: Kind, cases: &[Case], extra: &str) -> (String, Vec<Range<usize>>) {
    let mut hcl = String::from(HEADER);
    let mut ranges = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        hcl.push('\n');
        let start = hcl.lines().count() + 1;
        let (block, own) = kind.block(case.ty, i, case.body);
        hcl.push_str(&block);
        ranges.push(start..start + own);
    }
    hcl.push_str(extra);
    (hcl, ranges)
}

/// `terraform validate -json` on `hcl` (Terraform 1.15): its diagnostics.
pub fn validate(hcl: &str) -> Vec<Value> {
    let tf = Tf::new(hcl);
    tf.init();
    let r = tf.run(&["validate", "-json", "-no-color"]);
    let out: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("validate -json: {e}\n{}", r.output()));
    out["diagnostics"].as_array().cloned().unwrap_or_default()
}

/// The diagnostics that start within `lines`.
pub fn within<'a>(diags: &'a [Value], lines: &Range<usize>) -> Vec<&'a Value> {
    diags
        .iter()
        .filter(|d| d["range"]["start"]["line"].as_u64().is_some_and(|l| lines.contains(&(l as usize))))
        .collect()
}

/// Summary and detail together.
pub fn text(d: &Value) -> String {
    format!("{} {}", d["summary"].as_str().unwrap_or(""), d["detail"].as_str().unwrap_or(""))
}

/// Whether `d` is an error on `line` saying `says`.
pub fn is_error_on(d: &Value, line: &str, says: &str) -> bool {
    d["severity"] == "error"
        && d["snippet"]["code"].as_str().is_some_and(|code| code.contains(line))
        && text(d).contains(says)
}

/// Validates the cases (plus `extra`, for a file's own checks) and asserts each one; returns the
/// configuration and all diagnostics for those extra checks.
pub fn check(kind: Kind, cases: &[Case], extra: &str) -> (String, Vec<Value>) {
    assert!(!cases.is_empty(), "no cases");
    let (hcl, ranges) = config(kind, cases, extra);
    let diags = validate(&hcl);
    assert!(!diags.is_empty(), "validate reported nothing for {} cases", cases.len());
    let mut failures = Vec::new();
    for (i, (case, lines)) in cases.iter().zip(&ranges).enumerate() {
        let mine = within(&diags, lines);
        if !mine.iter().any(|d| is_error_on(d, case.line, case.says)) {
            failures.push(format!(
                "case {i} ({kind:?} {} {:?}, lines {lines:?}): want an error on ~{:?} saying {:?}, got {mine:#?}",
                case.ty, case.body, case.line, case.says
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    (hcl, diags)
}

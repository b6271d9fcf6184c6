//! FIDELITY.md is the lab's ledger: one row per behaviour modelled on Proxmox, with its source
//! and the test that pins it. This checks every row names a source and a test that exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Repositories a source may cite (Proxmox's own, Ceph's, and the error catalogue).
const REPOS: &[&str] = &[
    "pve-manager",
    "pve-cluster",
    "pve-common",
    "pve-access-control",
    "pve-http-server",
    "pve-guest-common",
    "pve-storage",
    "pve-docs",
    "qemu-server",
    "proxmox-backup",
    "proxmox-rs",
    "ceph",
    "librados2-perl",
    "Proxmox-OpenAPI",
];

struct Row {
    id: String,
    source: String,
    tests: Vec<String>,
}

fn rows(text: &str) -> Vec<Row> {
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim().strip_prefix('|')?.strip_suffix('|')?.split('|').map(str::trim).collect();
            let id = cells.first()?;
            let is_id = id.contains('-')
                && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
                && id.chars().next().is_some_and(|c| c.is_ascii_uppercase());
            if !is_id || cells.len() != 5 {
                return None;
            }
            let tests = cells[4]
                .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
                .map(|t| t.trim_matches('`'))
                .filter(|t| t.contains("::"))
                .map(str::to_string)
                .collect();
            Some(Row { id: id.to_string(), source: cells[2].to_string(), tests })
        })
        .collect()
}

fn test_dirs() -> [PathBuf; 2] {
    let lab = Path::new(env!("CARGO_MANIFEST_DIR"));
    [lab.join("tests"), lab.join("../tests")]
}

/// `file::function` names a `#[test]` function in one of the test directories.
fn test_exists(name: &str) -> bool {
    let Some((file, func)) = name.split_once("::") else { return false };
    test_dirs().iter().any(|d| {
        let Ok(src) = std::fs::read_to_string(d.join(format!("{file}.rs"))) else { return false };
        let lines: Vec<&str> = src.lines().collect();
        lines.iter().enumerate().any(|(i, l)| {
            l.trim_start().starts_with(&format!("fn {func}("))
                && lines[i.saturating_sub(4)..i].iter().any(|p| p.trim() == "#[test]")
        })
    })
}

#[test]
fn every_ledger_row_cites_a_source_and_a_test_that_exists() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("FIDELITY.md");
    let text = std::fs::read_to_string(&path).expect("FIDELITY.md");
    let rows = rows(&text);
    assert!(rows.len() >= 10, "the ledger has rows ({} found)", rows.len());
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for r in &rows {
        if !seen.insert(r.id.clone()) {
            problems.push(format!("{}: duplicate id", r.id));
        }
        if !REPOS.iter().any(|repo| r.source.contains(repo)) || !r.source.contains('/') {
            problems.push(format!("{}: source names no repository and file: {:?}", r.id, r.source));
        }
        if r.tests.is_empty() {
            problems.push(format!("{}: no test named (file::function)", r.id));
        }
        for t in &r.tests {
            if !test_exists(t) {
                problems.push(format!("{}: test {t} not found", r.id));
            }
        }
    }
    assert!(problems.is_empty(), "FIDELITY.md:\n{}", problems.join("\n"));
    eprintln!(
        "{} ledger rows, {} distinct tests",
        rows.len(),
        rows.iter().flat_map(|r| &r.tests).collect::<BTreeSet<_>>().len()
    );
}

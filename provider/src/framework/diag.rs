//! Diagnostics with attribute paths: the only way errors reach the user.

use std::fmt;

/// One step of an attribute path, as Terraform's `AttributePath.Step`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Attr(String),
    Key(String),
    Index(i64),
}

/// Where in the configuration a diagnostic points.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttrPath(pub Vec<Step>);

impl AttrPath {
    pub fn root(name: &str) -> Self {
        AttrPath(vec![Step::Attr(name.to_string())])
    }
    pub fn attr(mut self, name: &str) -> Self {
        self.0.push(Step::Attr(name.to_string()));
        self
    }
    pub fn index(mut self, i: usize) -> Self {
        self.0.push(Step::Index(i as i64));
        self
    }
    pub fn key(mut self, k: &str) -> Self {
        self.0.push(Step::Key(k.to_string()));
        self
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Step::Attr(a) if i == 0 => write!(f, "{a}")?,
                Step::Attr(a) => write!(f, ".{a}")?,
                Step::Key(k) => write!(f, "[{k:?}]")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Builds a path from a mix of names and indexes: `path!["erasure_coding", "k"]`,
/// `path!["network", 0, "bridge"]`.
#[macro_export]
macro_rules! path {
    ($($step:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut p = $crate::framework::diag::AttrPath::default();
        $( p.0.push($crate::framework::diag::IntoStep::into_step($step)); )*
        p
    }};
}

pub trait IntoStep {
    fn into_step(self) -> Step;
}
impl IntoStep for &str {
    fn into_step(self) -> Step {
        Step::Attr(self.to_string())
    }
}
impl IntoStep for usize {
    fn into_step(self) -> Step {
        Step::Index(self as i64)
    }
}
impl IntoStep for Step {
    fn into_step(self) -> Step {
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub summary: String,
    pub detail: String,
    pub path: Option<AttrPath>,
}

/// A list of diagnostics; resource methods return `Err(Diagnostics)` to fail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut d = Self::new();
        d.push_error(summary, detail);
        d
    }
    pub fn at(path: AttrPath, summary: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut d = Self::new();
        d.error_at(path, summary, detail);
        d
    }
    pub fn push_error(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(Severity::Error, None, summary, detail);
    }
    pub fn error_at(&mut self, path: AttrPath, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(Severity::Error, Some(path), summary, detail);
    }
    pub fn warn_at(&mut self, path: AttrPath, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(Severity::Warning, Some(path), summary, detail);
    }
    pub fn warn(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(Severity::Warning, None, summary, detail);
    }
    fn push(
        &mut self,
        severity: Severity,
        path: Option<AttrPath>,
        summary: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.0.push(Diagnostic { severity, summary: summary.into(), detail: detail.into(), path });
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// `Err(self)` when any error is present, else `Ok(())` (warnings are dropped: use this only
    /// where nothing else would carry them).
    pub fn into_result(self) -> Result<(), Diagnostics> {
        if self.has_errors() {
            Err(self)
        } else {
            Ok(())
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            match &d.path {
                Some(p) => writeln!(f, "{:?}: {} ({p}): {}", d.severity, d.summary, d.detail)?,
                None => writeln!(f, "{:?}: {}: {}", d.severity, d.summary, d.detail)?,
            }
        }
        Ok(())
    }
}

/// Any library error becomes a one-line error diagnostic.
impl<E: std::error::Error> From<E> for Diagnostics {
    fn from(e: E) -> Self {
        Diagnostics::error(e.to_string(), error_chain(&e))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut src = e.source();
    while let Some(s) = src {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

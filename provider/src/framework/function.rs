//! Provider functions (Terraform ≥ 1.8: `provider::edge::<name>(…)`). Pure: no clients, no
//! configuration; the same input gives the same output at validate, plan and apply.

use crate::framework::value::{Type, Value};

#[derive(Clone, Debug)]
pub struct Parameter {
    pub name: &'static str,
    pub ty: Type,
    pub description: &'static str,
    /// Whether `null` may be passed (the function then decides what it means).
    pub allow_null: bool,
}

#[derive(Clone, Debug)]
pub struct Signature {
    pub summary: &'static str,
    pub description: &'static str,
    pub parameters: Vec<Parameter>,
    pub returns: Type,
}

/// A function's failure: the text Terraform shows, and which argument (0-based) it is about.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{text}")]
pub struct FunctionError {
    pub text: String,
    pub argument: Option<usize>,
}

impl FunctionError {
    pub fn at(argument: usize, text: impl Into<String>) -> Self {
        FunctionError { text: text.into(), argument: Some(argument) }
    }
}

pub trait Function: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn signature(&self) -> Signature;
    /// Arguments arrive decoded with the parameter types, never unknown (Terraform does not
    /// call a function whose parameters disallow unknown values with one).
    fn call(&self, args: &[Value]) -> Result<Value, FunctionError>;
}

/// A string argument, with an error naming the argument when it is missing.
pub fn string_arg(args: &[Value], i: usize, name: &str) -> Result<String, FunctionError> {
    args.get(i)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| FunctionError::at(i, format!("{name} must be a string, not null")))
}

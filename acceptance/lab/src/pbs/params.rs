//! How PBS reads a request's parameters and words what it refuses: proxmox-rest-server's
//! `get_request_parameters` (which body is read how) and proxmox-schema's `verify_json` /
//! `parse_parameter_strings` (the checks and their messages). The lab's structural schema
//! carries the same constraints as the API types PBS is built from, so the same request is
//! refused with the same text.
//!
//! Sources: proxmox-rs @ 890d9e58 (rest-server 0.5.2, the PBS 3.2.4 build)
//! `proxmox-rest-server/src/rest.rs` `get_request_parameters`, `parse_query_parameters`;
//! proxmox-rs @ 49b97b6a (proxmox-schema 3.1.1) `proxmox-schema/src/schema.rs`
//! `ParameterError` (Display), `ObjectSchemaType::verify_json`, `ArraySchema::verify_json`,
//! `do_parse_parameter_strings`, `parse_simple_value`, `StringSchema::check_constraints`.

use std::fmt;

use serde_json::{Map, Value};

use crate::http::Req;
use crate::schema::{truthy, Schema};

/// Errors by parameter, in the order PBS found them (`ParameterError`).
#[derive(Debug, Default, PartialEq)]
pub struct ParamErrors(pub Vec<(String, String)>);

impl ParamErrors {
    pub fn one(name: &str, reason: impl Into<String>) -> ParamErrors {
        ParamErrors(vec![(name.to_string(), reason.into())])
    }
}

impl fmt::Display for ParamErrors {
    /// One error on one line, several as a list under a heading (no trailing newline).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [] => Ok(()),
            [(name, reason)] => write!(f, "parameter verification failed - '{name}': {reason}"),
            many => {
                f.write_str("parameter verification failed:")?;
                for (name, reason) in many {
                    write!(f, "\n- '{name}': {reason}")?;
                }
                Ok(())
            }
        }
    }
}

/// Why a request's parameters were refused: a list of parameter errors, or one plain message
/// (a body PBS cannot read, a top-level type error, a bad path parameter in a JSON request).
#[derive(Debug, PartialEq)]
pub enum Refusal {
    Params(ParamErrors),
    Plain(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Params(p) => p.fmt(f),
            Refusal::Plain(m) => f.write_str(m),
        }
    }
}

/// The request's parameters, checked against the method's `parameters` as PBS checks them.
/// `application/json` bodies are JSON (the query string is then ignored; path parameters are
/// parsed and written over the body); a form body, or a body without a content type, is read
/// together with the query string as `key=value` pairs. `max_body` is the release's request
/// body limit. Path parameters the schema does not declare are left to the caller.
pub fn read(
    schema: &Schema,
    method: &Value,
    req: &Req,
    path_params: &[(String, String)],
    max_body: usize,
) -> Result<Map<String, Value>, Refusal> {
    let is_json = match req.headers.get(hyper::header::CONTENT_TYPE) {
        None => false,
        Some(v) => match v.to_str().map(|s| s.split(';').next().unwrap_or_default().trim()) {
            Ok("application/x-www-form-urlencoded") => false,
            Ok("application/json") => true,
            // PBS prints the header value's `to_str()` result with `{:?}`.
            _ => return Err(Refusal::Plain(format!("unsupported content type {:?}", v.to_str()))),
        },
    };
    if req.body.len() >= max_body {
        return Err(Refusal::Plain("Request body too large".into()));
    }
    let text = std::str::from_utf8(&req.body).map_err(|e| Refusal::Plain(format!("Request body not uft8: {e}")))?;
    let p = Params::of(schema, method);
    if is_json {
        let mut v: Value =
            if text.is_empty() { Value::Object(Map::new()) } else { serde_json::from_str(text).map_err(plain)? };
        for (k, raw) in path_params {
            if let (Some(def), Some(o)) = (p.props.get(k), v.as_object_mut()) {
                // A bad path parameter fails before the body is checked, without the name.
                o.insert(k.clone(), p.parse_simple(k, def, raw).map_err(Refusal::Plain)?);
            }
        }
        p.verify_object(&v)?;
        Ok(v.as_object().cloned().unwrap_or_default())
    } else {
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes()).into_owned().collect();
        pairs.extend(form_urlencoded::parse(req.query.as_bytes()).into_owned().filter(|(k, _)| k != "_dc"));
        pairs.extend(path_params.iter().filter(|(k, _)| p.props.contains_key(k)).cloned());
        p.parse_pairs(&pairs).map_err(Refusal::Params)
    }
}

fn plain(e: impl fmt::Display) -> Refusal {
    Refusal::Plain(e.to_string())
}

/// A method's parameter schema.
struct Params<'a> {
    schema: &'a Schema,
    props: Map<String, Value>,
    additional: bool,
}

/// What checking one value found: a message, or errors below it (array items, nested objects).
enum Found {
    Msg(String),
    Nested(ParamErrors),
}

impl<'a> Params<'a> {
    fn of(schema: &'a Schema, method: &Value) -> Params<'a> {
        let pdef = method.get("parameters");
        Params {
            schema,
            props: pdef.and_then(|p| p.get("properties")).and_then(Value::as_object).cloned().unwrap_or_default(),
            additional: pdef.and_then(|p| p.get("additionalProperties")).is_some_and(truthy),
        }
    }

    /// `verify_json` of the whole parameter object: every given key in (sorted) order, then
    /// every required one that is missing or null.
    fn verify_object(&self, v: &Value) -> Result<(), Refusal> {
        let o = match v {
            Value::Object(o) => o,
            Value::Array(_) => return Err(Refusal::Plain("Expected object - got array.".into())),
            _ => return Err(Refusal::Plain("Expected object - got scalar value.".into())),
        };
        let errs = verify_props(self.schema, &self.props, self.additional, o);
        if errs.0.is_empty() {
            Ok(())
        } else {
            Err(Refusal::Params(errs))
        }
    }

    /// `parse_parameter_strings`: pairs in the order sent; array parameters repeat the key;
    /// the required check runs only when nothing else was wrong.
    fn parse_pairs(&self, pairs: &[(String, String)]) -> Result<Map<String, Value>, ParamErrors> {
        let mut out = Map::new();
        let mut errs = Vec::new();
        for (k, raw) in pairs {
            match self.props.get(k) {
                Some(def) if ty(def) == "array" => {
                    let item = def.get("items").cloned().unwrap_or(Value::Null);
                    match self.parse_simple(k, &item, raw) {
                        Ok(v) => {
                            if let Value::Array(a) = out.entry(k.clone()).or_insert_with(|| Value::Array(Vec::new())) {
                                a.push(v);
                            }
                        }
                        Err(m) => errs.push((k.clone(), m)),
                    }
                }
                Some(def) => match self.parse_simple(k, def, raw) {
                    Ok(_) if out.contains_key(k) => errs.push((k.clone(), "duplicate parameter.".into())),
                    Ok(v) => {
                        out.insert(k.clone(), v);
                    }
                    Err(m) => errs.push((k.clone(), m)),
                },
                None if self.additional => {
                    let v = Value::String(raw.clone());
                    match out.get_mut(k) {
                        Some(Value::Array(a)) => a.push(v),
                        Some(old) => *old = Value::Array(vec![old.take(), v]),
                        None => {
                            out.insert(k.clone(), v);
                        }
                    }
                }
                None => errs.push((k.clone(), "schema does not allow additional properties.".into())),
            }
        }
        if errs.is_empty() {
            for (name, def) in &self.props {
                if !optional(def) && !out.contains_key(name) {
                    errs.push((name.clone(), "parameter is missing and it is not optional.".into()));
                }
            }
        }
        if errs.is_empty() {
            Ok(out)
        } else {
            Err(ParamErrors(errs))
        }
    }

    /// `parse_simple_value`: one form value into the property's type.
    fn parse_simple(&self, name: &str, def: &Value, raw: &str) -> Result<Value, String> {
        match ty(def) {
            "boolean" => match raw.to_lowercase().as_str() {
                "1" | "on" | "yes" | "true" => Ok(Value::Bool(true)),
                "0" | "off" | "no" | "false" => Ok(Value::Bool(false)),
                _ => Err("Unable to parse boolean option.".into()),
            },
            // Rust's own integer and float parsing, whose errors PBS passes on as they are.
            "integer" => {
                let n: i64 = raw.parse().map_err(|e: std::num::ParseIntError| e.to_string())?;
                check_range(def, n as f64, &n.to_string())?;
                Ok(Value::from(n))
            }
            "number" => {
                let n: f64 = raw.parse().map_err(|e: std::num::ParseFloatError| e.to_string())?;
                check_range(def, n, &n.to_string())?;
                Ok(serde_json::Number::from_f64(n).map(Value::Number).unwrap_or(Value::Null))
            }
            "array" | "object" => Err("unable to parse complex (sub) objects.".into()),
            _ => {
                check_string(self.schema, name, def, raw)?;
                Ok(Value::String(raw.to_string()))
            }
        }
    }
}

fn ty(def: &Value) -> &str {
    def.get("type").and_then(Value::as_str).unwrap_or("string")
}

fn optional(def: &Value) -> bool {
    def.get("optional").is_some_and(truthy)
}

fn verify_props(schema: &Schema, props: &Map<String, Value>, additional: bool, o: &Map<String, Value>) -> ParamErrors {
    let mut errs = Vec::new();
    for (k, v) in o {
        match props.get(k) {
            Some(def) => match verify_value(schema, k, def, v) {
                Ok(()) => {}
                Err(Found::Msg(m)) => errs.push((k.clone(), m)),
                Err(Found::Nested(inner)) => {
                    errs.extend(inner.0.into_iter().map(|(sub, m)| (format!("{k}/{sub}"), m)));
                }
            },
            None if additional => {}
            None => errs.push((k.clone(), "schema does not allow additional properties".into())),
        }
    }
    for (name, def) in props {
        if !optional(def) && o.get(name).is_none_or(Value::is_null) {
            errs.push((name.clone(), "property is missing and it is not optional".into()));
        }
    }
    ParamErrors(errs)
}

/// `verify_json` of one value of parameter `name` against its property definition.
fn verify_value(schema: &Schema, name: &str, def: &Value, v: &Value) -> Result<(), Found> {
    let msg = |m: &str| Err(Found::Msg(m.to_string()));
    match ty(def) {
        "boolean" if !v.is_boolean() => msg("Expected boolean value."),
        "boolean" => Ok(()),
        "integer" => match v.as_i64() {
            Some(n) => check_range(def, n as f64, &n.to_string()).map_err(Found::Msg),
            None => msg("Expected integer value."),
        },
        "number" => match v.as_f64() {
            Some(n) => check_range(def, n, &n.to_string()).map_err(Found::Msg),
            None => msg("Expected number value."),
        },
        "array" => match v {
            Value::Array(items) => {
                let idef = def.get("items").cloned().unwrap_or(Value::Null);
                // The first bad item ends the check, named by its index.
                for (i, it) in items.iter().enumerate() {
                    match verify_value(schema, name, &idef, it) {
                        Ok(()) => {}
                        Err(Found::Msg(m)) => return Err(Found::Nested(ParamErrors::one(&format!("[{i}]"), m))),
                        Err(Found::Nested(inner)) => {
                            let named = inner.0.into_iter().map(|(k, m)| (format!("[{i}]/{k}"), m)).collect();
                            return Err(Found::Nested(ParamErrors(named)));
                        }
                    }
                }
                Ok(())
            }
            Value::Object(_) => msg("Expected array - got object."),
            _ => msg("Expected array - got scalar value."),
        },
        "object" => match v {
            Value::Object(o) => match def.get("properties").and_then(Value::as_object) {
                Some(props) => {
                    let additional = def.get("additionalProperties").is_some_and(truthy);
                    let errs = verify_props(schema, props, additional, o);
                    if errs.0.is_empty() {
                        Ok(())
                    } else {
                        Err(Found::Nested(errs))
                    }
                }
                None => Ok(()),
            },
            Value::Array(_) => msg("Expected object - got array."),
            _ => msg("Expected object - got scalar value."),
        },
        _ => match v.as_str() {
            Some(s) => check_string(schema, name, def, s).map_err(Found::Msg),
            None => msg("Expected string value."),
        },
    }
}

/// `IntegerSchema`/`NumberSchema::check_constraints`.
fn check_range(def: &Value, n: f64, shown: &str) -> Result<(), String> {
    let bound = |k: &str| def.get(k).and_then(Value::as_f64);
    if let Some(min) = bound("minimum").filter(|m| n < *m) {
        return Err(format!("value must have a minimum value of {} (got {shown})", num(min)));
    }
    if let Some(max) = bound("maximum").filter(|m| n > *m) {
        return Err(format!("value must have a maximum value of {} (got {shown})", num(max)));
    }
    Ok(())
}

fn num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

/// Parameters whose string is a calendar event (`VerifyFn(verify_calendar_event)` in
/// pbs-api-types `jobs.rs` / `datastore.rs`); the structural schema does not say so.
const CALENDAR_EVENTS: [&str; 3] = ["schedule", "gc-schedule", "prune-schedule"];

/// `StringSchema::check_constraints` of parameter `name`: the length, then the one format the
/// property has (an enumeration, a pattern, a property string, or a verify function).
fn check_string(schema: &Schema, name: &str, def: &Value, s: &str) -> Result<(), String> {
    let len = s.chars().count() as u64;
    if let Some(min) = def.get("minLength").and_then(Value::as_u64).filter(|m| len < *m) {
        return Err(format!("value must be at least {min} characters long"));
    }
    if let Some(max) = def.get("maxLength").and_then(Value::as_u64).filter(|m| len > *m) {
        return Err(format!("value may only be {max} characters long"));
    }
    if let Some(en) = def.get("enum").and_then(Value::as_array) {
        if !en.iter().any(|e| e.as_str() == Some(s)) {
            return Err(format!("value '{s}' is not defined in the enumeration."));
        }
        return Ok(());
    }
    if let Some(p) = def.get("pattern").and_then(Value::as_str) {
        if !schema.pattern_matches(p, s) {
            return Err("value does not match the regex pattern".into());
        }
    }
    if let Some(Value::Object(fmt)) = def.get("format") {
        schema.check_property_string(def, fmt, s)?;
    }
    if CALENDAR_EVENTS.contains(&name) {
        crate::formats::check_calendar_event(s).map_err(|_| calendar_error(s))?;
    }
    Ok(())
}

/// proxmox-time's refusal starts `unable to parse calendar event`; the rest is the nom
/// parser's account of where it stopped, which the lab does not reproduce (see FIDELITY.md,
/// PBS known differences).
fn calendar_error(s: &str) -> String {
    format!("unable to parse calendar event - invalid calendar event '{s}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_error_on_one_line_several_as_a_list() {
        let one = ParamErrors::one("id", "job 'x' already exists.");
        assert_eq!(one.to_string(), "parameter verification failed - 'id': job 'x' already exists.");
        let two = ParamErrors(vec![("a".into(), "r1".into()), ("b".into(), "r2".into())]);
        assert_eq!(two.to_string(), "parameter verification failed:\n- 'a': r1\n- 'b': r2");
    }

    #[test]
    fn rust_integer_errors_are_passed_on() {
        assert_eq!("x1".parse::<i64>().map_err(|e| e.to_string()), Err("invalid digit found in string".into()));
    }
}

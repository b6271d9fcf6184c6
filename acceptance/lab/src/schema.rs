//! Proxmox's published API schema, per release: routing by path template, request validation
//! exactly as PVE's JSONSchema.pm reports it, and a checker for responses against `returns`.
//! The lab carries structural copies (no prose) made by `schemagen.rs`, one per profile.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::formats;

/// Which product a schema describes; PVE and PBS differ in pattern syntax and a few messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Product {
    Pve,
    Pbs,
}

impl Product {
    /// File-name prefix of its schemas.
    pub fn prefix(self) -> &'static str {
        match self {
            Product::Pve => "pve",
            Product::Pbs => "pbs",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("no embedded schema {0}")]
    Missing(String),
    #[error("embedded schema {0}: {1}")]
    Embedded(String, String),
}

#[derive(Debug)]
pub struct Endpoint {
    pub path: String,
    segs: Vec<String>,
    pub info: Map<String, Value>,
}

/// Parameter errors keyed by parameter name, as PVE puts them in `errors`.
pub type ParamErrors = BTreeMap<String, String>;

/// Path parameters of a routed request, in template order.
pub type PathParams = Vec<(String, String)>;

#[derive(Debug)]
pub struct Schema {
    pub product: Product,
    pub endpoints: Vec<Endpoint>,
    regex_cache: Mutex<BTreeMap<String, Option<Compiled>>>,
}

#[derive(Debug, Clone)]
enum Compiled {
    Std(regex::Regex),
    Fancy(fancy_regex::Regex),
}

impl Compiled {
    fn is_match(&self, s: &str) -> bool {
        match self {
            Compiled::Std(r) => r.is_match(s),
            Compiled::Fancy(r) => r.is_match(s).unwrap_or(false),
        }
    }
}

/// The structural schemas the lab carries (made by `edge-lab schemas generate`, see
/// `schemagen.rs` and `schemas/PROVENANCE.json`), by file name.
const EMBEDDED: &[(&str, &[u8])] = &[
    ("pve-8.4.json.gz", include_bytes!("../schemas/pve-8.4.json.gz")),
    ("pve-9.1.json.gz", include_bytes!("../schemas/pve-9.1.json.gz")),
    ("pbs-3.2.json.gz", include_bytes!("../schemas/pbs-3.2.json.gz")),
    ("pbs-3.4.json.gz", include_bytes!("../schemas/pbs-3.4.json.gz")),
    ("pbs-4.0.json.gz", include_bytes!("../schemas/pbs-4.0.json.gz")),
];

/// The embedded file of a product at a profile (`pve-9.1.json.gz`).
pub fn embedded_bytes(file: &str) -> Option<&'static [u8]> {
    EMBEDDED.iter().find(|(f, _)| *f == file).map(|(_, b)| *b)
}

impl Schema {
    /// The schema of `product` as the release `profile` (e.g. "8.4", "3.2") publishes it.
    pub fn embedded(product: Product, profile: &str) -> Result<Schema, SchemaError> {
        let file = format!("{}-{profile}.json.gz", product.prefix());
        let bytes = embedded_bytes(&file).ok_or_else(|| SchemaError::Missing(file.clone()))?;
        let tree = crate::schemagen::decompress(bytes).map_err(|e| SchemaError::Embedded(file, e.to_string()))?;
        Ok(Schema::from_tree(product, &tree))
    }

    /// Indexes a schema tree (`[{path, info, children}]`).
    pub fn from_tree(product: Product, root: &Value) -> Schema {
        let mut endpoints = Vec::new();
        fn walk(n: &Value, out: &mut Vec<Endpoint>) {
            if let Some(path) = n.get("path").and_then(Value::as_str) {
                let info = n.get("info").and_then(Value::as_object).cloned().unwrap_or_default();
                out.push(Endpoint {
                    path: path.to_string(),
                    segs: path.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                    info,
                });
            }
            if let Some(ch) = n.get("children").and_then(Value::as_array) {
                for c in ch {
                    walk(c, out);
                }
            }
        }
        if let Some(arr) = root.as_array() {
            for n in arr {
                walk(n, &mut endpoints);
            }
        }
        Schema { product, endpoints, regex_cache: Mutex::new(BTreeMap::new()) }
    }

    /// Finds the endpoint whose template matches `path` (literal segments win over `{param}`s)
    /// and returns the path parameters.
    pub fn route(&self, path: &str) -> Option<(&Endpoint, PathParams)> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut best: Option<(&Endpoint, PathParams, usize)> = None;
        for ep in &self.endpoints {
            if ep.segs.len() != segs.len() {
                continue;
            }
            let mut params = Vec::new();
            let mut literal = 0;
            let mut ok = true;
            for (t, s) in ep.segs.iter().zip(&segs) {
                if t.starts_with('{') && t.ends_with('}') {
                    params.push((t[1..t.len() - 1].to_string(), pct_decode(s)));
                } else if t == s {
                    literal += 1;
                } else {
                    ok = false;
                    break;
                }
            }
            if ok && best.as_ref().is_none_or(|b| literal > b.2) {
                best = Some((ep, params, literal));
            }
        }
        best.map(|(e, p, _)| (e, p))
    }

    pub fn endpoint(&self, template: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.path == template)
    }

    /// All (METHOD, path template) pairs the schema defines.
    pub fn methods(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for e in &self.endpoints {
            for m in e.info.keys() {
                v.push((m.clone(), e.path.clone()));
            }
        }
        v
    }

    /// Validates and normalises request parameters against a method's `parameters`.
    /// Integers and booleans become JSON numbers (booleans as 0/1, like PVE hands them to
    /// handlers); everything else stays a string (arrays stay arrays).
    pub fn validate(&self, method_info: &Value, params: &mut Map<String, Value>) -> Result<(), ParamErrors> {
        let mut errors = ParamErrors::new();
        let pdef = method_info.get("parameters");
        let props = pdef.and_then(|p| p.get("properties")).and_then(Value::as_object);
        let empty = Map::new();
        let props = props.unwrap_or(&empty);
        let additional = pdef.and_then(|p| p.get("additionalProperties")).map(truthy).unwrap_or(false);
        for key in params.keys().cloned().collect::<Vec<_>>() {
            // `link[n]`-style names stand for link0, link1, ...
            let def = props.get(&key).or_else(|| {
                let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
                if base.len() < key.len() {
                    props.get(&format!("{base}[n]"))
                } else {
                    None
                }
            });
            match def {
                None => {
                    if !additional {
                        errors.insert(
                            key.clone(),
                            "property is not defined in schema and the schema does not allow additional properties"
                                .into(),
                        );
                    }
                }
                Some(def) => {
                    let v = params.remove(&key).unwrap_or(Value::Null);
                    match self.check_value(def, v) {
                        Ok(nv) => {
                            params.insert(key, nv);
                        }
                        Err(msg) => {
                            errors.insert(key, msg);
                        }
                    }
                }
            }
        }
        for (name, def) in props {
            if name.ends_with("[n]") {
                continue;
            }
            if !params.contains_key(name)
                && !errors.contains_key(name)
                && !def.get("optional").map(truthy).unwrap_or(false)
            {
                errors.insert(name.clone(), "property is missing and it is not optional".into());
            }
            // `requires`: the other parameter must be present too (pve-common
            // `PVE::JSONSchema::check_object` keys the error by the missing one).
            if params.contains_key(name) {
                if let Some(req) = def.get("requires").and_then(Value::as_str) {
                    if !params.contains_key(req) && !errors.contains_key(req) {
                        errors.insert(req.to_string(), format!("missing property required by '{name}'"));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Checks one value against its property definition; returns the normalised value or
    /// PVE's message.
    pub fn check_value(&self, def: &Value, v: Value) -> Result<Value, String> {
        let ty = def.get("type").and_then(Value::as_str).unwrap_or("string");
        if ty == "array" {
            let items: Vec<Value> = match v {
                Value::Array(a) => a,
                other => vec![other],
            };
            let idef = def.get("items").cloned().unwrap_or(Value::Null);
            let mut out = Vec::new();
            for it in items {
                out.push(if idef.is_null() { it } else { self.check_value(&idef, it)? });
            }
            return Ok(Value::Array(out));
        }
        let s = match &v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let out = match ty {
            "integer" => {
                let n: i64 = parse_int(&s).ok_or_else(|| format!("type check ('integer') failed - got '{s}'"))?;
                if let Some(min) = def.get("minimum").and_then(Value::as_f64) {
                    if (n as f64) < min {
                        return Err(format!("value must have a minimum value of {}", fmt_num(min)));
                    }
                }
                if let Some(max) = def.get("maximum").and_then(Value::as_f64) {
                    if (n as f64) > max {
                        return Err(format!("value must have a maximum value of {}", fmt_num(max)));
                    }
                }
                Value::from(n)
            }
            "number" => {
                let n: f64 = s
                    .trim()
                    .parse()
                    .ok()
                    .filter(|f: &f64| f.is_finite())
                    .ok_or_else(|| format!("type check ('number') failed - got '{s}'"))?;
                if let Some(min) = def.get("minimum").and_then(Value::as_f64) {
                    if n < min {
                        return Err(format!("value must have a minimum value of {}", fmt_num(min)));
                    }
                }
                if let Some(max) = def.get("maximum").and_then(Value::as_f64) {
                    if n > max {
                        return Err(format!("value must have a maximum value of {}", fmt_num(max)));
                    }
                }
                serde_json::Number::from_f64(n).map(Value::Number).unwrap_or(Value::Null)
            }
            "boolean" => match parse_bool(&s) {
                Some(b) => Value::from(b as i64),
                None => return Err(format!("type check ('boolean') failed - got '{s}'")),
            },
            "null" => Value::Null,
            "object" => v.clone(),
            _ => {
                // string (and anything else PVE treats as a string)
                if let Some(max) = def.get("maxLength").and_then(Value::as_u64) {
                    if s.chars().count() as u64 > max {
                        return Err(format!("value may only be {max} characters long"));
                    }
                }
                if let Some(min) = def.get("minLength").and_then(Value::as_u64) {
                    if (s.chars().count() as u64) < min {
                        return Err(format!("value must be at least {min} characters long"));
                    }
                }
                Value::String(s.clone())
            }
        };
        if let Some(en) = def.get("enum").and_then(Value::as_array) {
            let ok = en.iter().any(|e| match e {
                Value::String(es) => *es == s,
                other => *other.to_string() == *s,
            });
            if !ok {
                let list: Vec<String> =
                    en.iter().map(|e| e.as_str().map(str::to_string).unwrap_or_else(|| e.to_string())).collect();
                return Err(format!("value '{s}' does not have a value in the enumeration '{}'", list.join(", ")));
            }
        }
        if let Some(p) = def.get("pattern").and_then(Value::as_str) {
            if !self.pattern_matches(p, &s) {
                return Err("value does not match the regex pattern".into());
            }
        }
        match def.get("format") {
            Some(Value::String(f)) => formats::check_named(f, &s)?,
            Some(Value::Object(obj)) => self.check_property_string(def, obj, &s)?,
            _ => {}
        }
        Ok(out)
    }

    /// Property strings (`k=v,k2=v2`) with a nested format: PVE puts the properties directly in
    /// `format`, PBS wraps them as an object schema with `properties`.
    pub(crate) fn check_property_string(&self, def: &Value, fmt: &Map<String, Value>, s: &str) -> Result<(), String> {
        let (props, default_key) = if let Some(p) = fmt.get("properties").and_then(Value::as_object) {
            (p.clone(), fmt.get("default_key").and_then(Value::as_str).map(str::to_string))
        } else {
            let dk =
                fmt.iter().find(|(_, d)| d.get("default_key").map(truthy).unwrap_or(false)).map(|(k, _)| k.clone());
            (fmt.clone(), dk)
        };
        let _ = def;
        let mut seen = Map::new();
        let mut errs = Vec::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = match part.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), v.to_string()),
                None => match &default_key {
                    Some(dk) => (dk.clone(), part.to_string()),
                    None => {
                        errs.push(format!("value without key, but schema does not define a default key: '{part}'"));
                        continue;
                    }
                },
            };
            // PVE allows `alias` keys; resolve them.
            let key = match props.get(&k).and_then(|d| d.get("alias")).and_then(Value::as_str) {
                Some(a) => a.to_string(),
                None => k.clone(),
            };
            match props.get(&key) {
                None => errs.push(format!(
                    "{k}: property is not defined in schema and the schema does not allow additional properties"
                )),
                Some(d) => {
                    if seen.contains_key(&key) {
                        errs.push(format!("{k}: duplicate key in comma-separated list property"));
                    }
                    match self.check_value(d, Value::String(v)) {
                        Ok(nv) => {
                            seen.insert(key, nv);
                        }
                        Err(m) => errs.push(format!("{k}: {m}")),
                    }
                }
            }
        }
        for (k, d) in &props {
            if !seen.contains_key(k) && !d.get("optional").map(truthy).unwrap_or(false) && d.get("alias").is_none() {
                errs.push(format!("{k}: property is missing and it is not optional"));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!("invalid format - {}\n", errs.join("\n")))
        }
    }

    /// Perl patterns: PVE anchors them (`m/^$pattern$/`) and writes `(?^:…)`; PBS writes
    /// `/…/` with its own anchors.
    pub fn pattern_matches(&self, pattern: &str, s: &str) -> bool {
        let mut cache = match self.regex_cache.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        let compiled =
            cache.entry(pattern.to_string()).or_insert_with(|| compile_pattern(pattern, self.product)).clone();
        drop(cache);
        match compiled {
            Some(c) => c.is_match(s),
            None => true, // a pattern we cannot translate never blocks a request
        }
    }
}

/// Translates a Perl-style pattern into a Rust regex (fancy-regex as a fallback).
pub fn translate_pattern(pattern: &str, product: Product) -> String {
    let mut p = pattern.to_string();
    let slashed = p.len() >= 2 && p.starts_with('/') && p.ends_with('/');
    if slashed {
        p = p[1..p.len() - 1].to_string();
    }
    p = p.replace("(?^i:", "(?i:").replace("(?^:", "(?:");
    if slashed || product == Product::Pbs {
        p
    } else {
        format!("^(?:{p})$")
    }
}

fn compile_pattern(pattern: &str, product: Product) -> Option<Compiled> {
    let t = translate_pattern(pattern, product);
    if let Ok(r) = regex::Regex::new(&t) {
        return Some(Compiled::Std(r));
    }
    match fancy_regex::Regex::new(&t) {
        Ok(r) => Some(Compiled::Fancy(r)),
        Err(e) => {
            tracing::warn!(pattern, error = %e, "schema pattern not translatable; not enforced");
            None
        }
    }
}

pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().map(|f| f != 0.0).unwrap_or(false),
        Value::String(s) => parse_bool(s).unwrap_or(!s.is_empty()),
        Value::Null => false,
        _ => true,
    }
}

/// PVE's boolean coercion: 1|on|yes|true and 0|off|no|false, case-insensitive.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" => Some(false),
        _ => None,
    }
}

fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn fmt_num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

pub fn pct_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Checks a response value against a `returns` schema; returns the list of violations.
pub fn check_returns(schema: &Schema, ret: &Value, v: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    check_ret(schema, ret, v, "data", &mut errs);
    errs
}

#[allow(clippy::collapsible_match)] // one arm per JSON type reads better than guards
fn check_ret(schema: &Schema, def: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    let Some(ty) = def.get("type").and_then(Value::as_str) else {
        return;
    };
    if v.is_null() && (ty == "null" || def.get("optional").map(truthy).unwrap_or(false)) {
        return;
    }
    match ty {
        // PBS describes hand-written handlers (task logs, indexes) as returning `null`.
        "null" if schema.product == Product::Pbs => {}
        "null" => {
            if !v.is_null() {
                errs.push(format!("{at}: expected null, got {v}"));
            }
        }
        "string" => match v.as_str() {
            None => errs.push(format!("{at}: expected string, got {v}")),
            Some(s) => {
                if let Some(en) = def.get("enum").and_then(Value::as_array) {
                    if !en.iter().any(|e| e.as_str() == Some(s)) {
                        errs.push(format!("{at}: '{s}' not in enum"));
                    }
                }
                if let Some(p) = def.get("pattern").and_then(Value::as_str) {
                    if !schema.pattern_matches(p, s) {
                        errs.push(format!("{at}: '{s}' does not match pattern"));
                    }
                }
            }
        },
        "integer" => {
            if !(v.is_i64() || v.is_u64()) {
                errs.push(format!("{at}: expected integer, got {v}"));
            }
        }
        "number" => {
            if !v.is_number() {
                errs.push(format!("{at}: expected number, got {v}"));
            }
        }
        "boolean" => {
            let ok = v.is_boolean() || v.as_i64().is_some_and(|n| n == 0 || n == 1);
            if !ok {
                errs.push(format!("{at}: expected boolean, got {v}"));
            }
        }
        "array" => match v.as_array() {
            None => errs.push(format!("{at}: expected array, got {v}")),
            Some(a) => {
                if let Some(items) = def.get("items") {
                    for (i, it) in a.iter().enumerate() {
                        check_ret(schema, items, it, &format!("{at}[{i}]"), errs);
                    }
                }
            }
        },
        "object" => match v.as_object() {
            None => errs.push(format!("{at}: expected object, got {v}")),
            Some(o) => {
                if let Some(props) = def.get("properties").and_then(Value::as_object) {
                    for (k, pd) in props {
                        match o.get(k) {
                            Some(pv) => check_ret(schema, pd, pv, &format!("{at}.{k}"), errs),
                            None => {
                                if !pd.get("optional").map(truthy).unwrap_or(false) {
                                    errs.push(format!("{at}: required property '{k}' missing"));
                                }
                            }
                        }
                    }
                    let additional = def.get("additionalProperties");
                    if additional.is_some_and(|a| !truthy(a) && !a.is_object()) {
                        for k in o.keys() {
                            if !props.contains_key(k) {
                                errs.push(format!("{at}: property '{k}' not allowed"));
                            }
                        }
                    }
                }
            }
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_perl_patterns() {
        assert_eq!(translate_pattern("(?^:^[^:/\\s]+$)", Product::Pve), "^(?:(?:^[^:/\\s]+$))$");
        assert_eq!(translate_pattern("/^[a-z]+$/", Product::Pbs), "^[a-z]+$");
        let c = compile_pattern("/^(?:[^\\s:/[:cntrl:]]+)@(?:[A-Za-z0-9_][A-Za-z0-9._\\-]*)$/", Product::Pbs);
        assert!(c.as_ref().is_some_and(|c| c.is_match("root@pam")));
    }

    #[test]
    fn coerces_types() {
        assert_eq!(parse_int("+12"), Some(12));
        assert_eq!(parse_int("1.5"), None);
        assert_eq!(parse_bool("Yes"), Some(true));
        assert_eq!(parse_bool("2"), None);
    }
}

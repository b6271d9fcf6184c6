//! Typed config/state: between [`Value`] and the serde structs resources are written with.
//!
//! Goes through `serde_json::Value`: unknown values become `null` (`None` in the struct) and are
//! left out of lists, sets and maps,
//! numbers keep every digit that the struct's field type can hold, and on the way back the
//! schema decides list vs set vs object and fills nested blocks the way Terraform expects them.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::framework::diag::{AttrPath, Diagnostics, Step};
use crate::framework::schema::{Block, Nesting};
use crate::framework::value::{Number, Type, Value};

/// Value → typed struct. Unknowns read as `None`.
pub fn to_typed<T: DeserializeOwned>(v: &Value) -> Result<T, Diagnostics> {
    let json = to_json(v);
    serde_path_to_error::deserialize(&json).map_err(|e| {
        // Terraform's number type has fractions and any size, the structs' integer fields (i64)
        // do not: a failure on a number that is no i64 is the user's value, so it gets its path
        // and what to write instead. Anything else (an unknown field, another type) is a
        // mismatch between schema and struct.
        let path = attr_path(e.path());
        match path.as_ref().and_then(|p| number_at(&json, p)).filter(|n| n.as_i64().is_none()) {
            Some(n) => Diagnostics::at(
                path.unwrap_or_default(),
                "Invalid number",
                format!("{n} does not fit: use a whole number (e.g. 1500) in the range the attribute documents"),
            ),
            None => Diagnostics::error(
                "Provider could not read the resource data",
                format!("{}. This is a bug in the provider.", e.inner()),
            ),
        }
    })
}

/// serde's path of a failed field as an attribute path (`None` for an empty path).
fn attr_path(p: &serde_path_to_error::Path) -> Option<AttrPath> {
    use serde_path_to_error::Segment;
    let mut out = AttrPath::default();
    for seg in p.iter() {
        match seg {
            Segment::Map { key } => out.0.push(Step::Attr(key.clone())),
            Segment::Seq { index } => out.0.push(Step::Index(i64::try_from(*index).ok()?)),
            Segment::Enum { .. } | Segment::Unknown => return None,
        }
    }
    (!out.0.is_empty()).then_some(out)
}

/// The JSON number at `path`, if the value there is one.
fn number_at(json: &serde_json::Value, path: &AttrPath) -> Option<serde_json::Number> {
    let mut v = json;
    for step in &path.0 {
        v = match step {
            Step::Attr(k) | Step::Key(k) => v.get(k)?,
            Step::Index(i) => v.get(usize::try_from(*i).ok()?)?,
        };
    }
    v.as_number().cloned()
}

/// Typed struct → Value of the block's type. A field the schema lacks is an error: dropping it
/// would lose what the provider meant to record.
pub fn from_typed<T: Serialize>(t: &T, block: &Block) -> Result<Value, Diagnostics> {
    let j = serde_json::to_value(t)
        .map_err(|e| Diagnostics::error("Provider could not encode the resource data", e.to_string()))?;
    let mut extra = Vec::new();
    extra_in_block(&j, block, "", &mut extra);
    if !extra.is_empty() {
        return Err(Diagnostics::error(
            "Provider could not encode the resource data",
            format!("the schema has no attribute {}. This is a bug in the provider.", extra.join(", ")),
        ));
    }
    Ok(block_from_json(&j, block))
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Paths of the JSON's object keys that `block` does not declare.
fn extra_in_block(j: &serde_json::Value, block: &Block, path: &str, out: &mut Vec<String>) {
    let Some(o) = j.as_object() else { return };
    for (k, v) in o {
        let p = join(path, k);
        if let Some(a) = block.attribute(k) {
            extra_in_type(v, &a.ty, &p, out);
        } else if let Some(b) = block.nested_block(k) {
            match b.nesting {
                Nesting::Single => extra_in_block(v, &b.block, &p, out),
                Nesting::List => v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .for_each(|(i, item)| extra_in_block(item, &b.block, &format!("{p}[{i}]"), out)),
            }
        } else {
            out.push(p);
        }
    }
}

/// The same for a value of an attribute's type (nested attributes are objects).
fn extra_in_type(j: &serde_json::Value, ty: &Type, path: &str, out: &mut Vec<String>) {
    use serde_json::Value as J;
    match (ty, j) {
        (Type::Object(attrs), J::Object(o)) => {
            for (k, v) in o {
                match attrs.get(k) {
                    Some(t) => extra_in_type(v, t, &join(path, k), out),
                    None => out.push(join(path, k)),
                }
            }
        }
        (Type::List(t) | Type::Set(t), J::Array(a)) => {
            a.iter().enumerate().for_each(|(i, v)| extra_in_type(v, t, &format!("{path}[{i}]"), out))
        }
        (Type::Map(t), J::Object(o)) => o.iter().for_each(|(k, v)| extra_in_type(v, t, &format!("{path}[{k:?}]"), out)),
        _ => {}
    }
}

pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null | Value::Unknown(_) => J::Null,
        Value::String(s) => J::String(s.clone()),
        Value::Bool(b) => J::Bool(*b),
        Value::Number(n) => number_to_json(n),
        // The typed view holds what is known: unknown elements are left out of collections.
        Value::List(items) | Value::Set(items) => {
            J::Array(items.iter().filter(|v| !v.is_unknown()).map(to_json).collect())
        }
        Value::Tuple(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(m) => {
            J::Object(m.iter().filter(|(_, v)| !v.is_unknown()).map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
        Value::Object(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        Value::Dynamic(_, inner) => to_json(inner),
    }
}

fn number_to_json(n: &Number) -> serde_json::Value {
    if let Some(i) = n.as_i64() {
        i.into()
    } else if let Some(u) = n.as_u64() {
        u.into()
    } else {
        n.as_f64().map(serde_json::Value::from).unwrap_or(serde_json::Value::Null)
    }
}

/// JSON → Value of a block's object type: nested blocks of list nesting are never null.
pub fn block_from_json(j: &serde_json::Value, block: &Block) -> Value {
    let obj = j.as_object();
    let get = |k: &str| obj.and_then(|o| o.get(k)).unwrap_or(&serde_json::Value::Null);
    let mut out = std::collections::BTreeMap::new();
    for a in &block.attributes {
        out.insert(a.name.clone(), from_json(get(&a.name), &a.ty));
    }
    for b in &block.blocks {
        let j = get(&b.name);
        let v = match (b.nesting, j) {
            (Nesting::Single, serde_json::Value::Null) => Value::Null,
            (Nesting::Single, j) => block_from_json(j, &b.block),
            (Nesting::List, j) => Value::List(
                j.as_array().map(|a| a.iter().map(|i| block_from_json(i, &b.block)).collect()).unwrap_or_default(),
            ),
        };
        out.insert(b.name.clone(), v);
    }
    Value::Object(out)
}

/// JSON → Value of a type (for attributes).
pub fn from_json(j: &serde_json::Value, ty: &Type) -> Value {
    use serde_json::Value as J;
    match (ty, j) {
        (_, J::Null) => Value::Null,
        (Type::String, J::String(s)) => Value::String(s.clone()),
        (Type::String, J::Number(n)) => Value::String(n.to_string()),
        (Type::String, J::Bool(b)) => Value::String(b.to_string()),
        (Type::Bool, J::Bool(b)) => Value::Bool(*b),
        (Type::Number, J::Number(n)) => Number::parse(&n.to_string()).map(Value::Number).unwrap_or(Value::Null),
        (Type::Number, J::String(s)) => Number::parse(s).map(Value::Number).unwrap_or(Value::Null),
        (Type::List(et), J::Array(a)) => Value::List(a.iter().map(|i| from_json(i, et)).collect()),
        (Type::Set(et), J::Array(a)) => Value::Set(a.iter().map(|i| from_json(i, et)).collect()),
        (Type::Tuple(ts), J::Array(a)) => Value::Tuple(ts.iter().zip(a).map(|(t, i)| from_json(i, t)).collect()),
        (Type::Map(et), J::Object(o)) => Value::Map(o.iter().map(|(k, v)| (k.clone(), from_json(v, et))).collect()),
        (Type::Object(attrs), J::Object(o)) => Value::Object(
            attrs.iter().map(|(k, t)| (k.clone(), o.get(k).map(|v| from_json(v, t)).unwrap_or(Value::Null))).collect(),
        ),
        (Type::Dynamic, j) => {
            let inferred = infer_json_type(j);
            Value::Dynamic(inferred.clone(), Box::new(from_json(j, &inferred)))
        }
        _ => Value::Null,
    }
}

fn infer_json_type(j: &serde_json::Value) -> Type {
    use serde_json::Value as J;
    match j {
        J::Null => Type::Dynamic,
        J::Bool(_) => Type::Bool,
        J::Number(_) => Type::Number,
        J::String(_) => Type::String,
        J::Array(a) => Type::Tuple(a.iter().map(infer_json_type).collect()),
        J::Object(o) => Type::Object(o.iter().map(|(k, v)| (k.clone(), infer_json_type(v))).collect()),
    }
}

#[cfg(test)]
mod number_tests {
    use serde::Deserialize;

    use super::*;

    // Only decoded: the tests are about what decoding says.
    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        n: Option<i64>,
    }

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Typed {
        items: Option<Vec<Item>>,
    }

    /// Decodes `j` as a value whose items have `n` and the `extra` attributes (numbers).
    fn decode(j: serde_json::Value, extra: &[&str]) -> Diagnostics {
        let item = Type::object(std::iter::once("n").chain(extra.iter().copied()).map(|k| (k, Type::Number)));
        let ty = Type::object([("items", Type::list(item))]);
        to_typed::<Typed>(&from_json(&j, &ty)).expect_err("must not decode")
    }

    #[test]
    fn a_number_an_integer_field_cannot_hold_is_the_users_and_has_its_path() {
        for n in [serde_json::json!(1.5), serde_json::json!(1e30)] {
            let d = decode(serde_json::json!({ "items": [{ "n": 1 }, { "n": n }] }), &[]);
            let path = d.0[0].path.clone().map(|p| p.to_string());
            assert_eq!(path.as_deref(), Some("items[1].n"), "{d:?}");
            assert!(d.0[0].detail.contains("use a whole number"), "{d:?}");
        }
    }

    #[test]
    fn an_unknown_field_stays_a_provider_bug_even_on_a_number() {
        let d = decode(serde_json::json!({ "items": [{ "n": 1, "x": 2 }] }), &["x"]);
        assert!(d.0[0].detail.contains("bug in the provider"), "{d:?}");
    }
}

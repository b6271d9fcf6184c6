//! Typed config/state: between [`Value`] and the serde structs resources are written with.
//!
//! Goes through `serde_json::Value`: unknown values become `null` (`None` in the struct) and are
//! left out of lists, sets and maps,
//! numbers keep every digit that the struct's field type can hold, and on the way back the
//! schema decides list vs set vs object and fills nested blocks the way Terraform expects them.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::framework::diag::Diagnostics;
use crate::framework::schema::{Block, Nesting};
use crate::framework::value::{Number, Type, Value};

/// Value → typed struct. Unknowns read as `None`.
pub fn to_typed<T: DeserializeOwned>(v: &Value) -> Result<T, Diagnostics> {
    serde_json::from_value(to_json(v)).map_err(|e| {
        Diagnostics::error("Provider could not read the resource data", format!("{e}. This is a bug in the provider."))
    })
}

/// Typed struct → Value of the block's type.
pub fn from_typed<T: Serialize>(t: &T, block: &Block) -> Result<Value, Diagnostics> {
    let j = serde_json::to_value(t)
        .map_err(|e| Diagnostics::error("Provider could not encode the resource data", e.to_string()))?;
    Ok(block_from_json(&j, block))
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

/// JSON → Value of a block's object type: nested blocks of list/set nesting are never null.
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
            (Nesting::List | Nesting::Set, j) => {
                let items: Vec<Value> =
                    j.as_array().map(|a| a.iter().map(|i| block_from_json(i, &b.block)).collect()).unwrap_or_default();
                if b.nesting == Nesting::List {
                    Value::List(items)
                } else {
                    Value::Set(items)
                }
            }
            (Nesting::Map, j) => Value::Map(
                j.as_object()
                    .map(|o| o.iter().map(|(k, v)| (k.clone(), block_from_json(v, &b.block))).collect())
                    .unwrap_or_default(),
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

//! The schema and the typed struct of every resource, data source, ephemeral resource, list
//! resource and action must describe the same object: a value with every attribute and nested
//! block set goes through the struct and must come back unchanged. A schema attribute the
//! struct lacks fails `to_typed` (`deny_unknown_fields`); a struct field the schema lacks fails
//! `from_typed`; a field of another type comes back different.

use crate::framework::diag::Diagnostics;
use crate::framework::schema::{Block, Nesting, Schema};
use crate::framework::value::{Number, Type, Value};
use crate::framework::verbs::Catalog;

/// A non-null value of `ty`, with every attribute of every object set.
pub fn sample(ty: &Type) -> Value {
    match ty {
        Type::String => Value::str("x"),
        Type::Number => Value::Number(Number::from_i64(1)),
        Type::Bool => Value::Bool(true),
        Type::List(t) => Value::List(vec![sample(t)]),
        Type::Set(t) => Value::Set(vec![sample(t)]),
        Type::Map(t) => Value::Map([("k".to_string(), sample(t))].into()),
        Type::Object(attrs) => Value::Object(attrs.iter().map(|(k, t)| (k.clone(), sample(t))).collect()),
        Type::Tuple(ts) => Value::Tuple(ts.iter().map(sample).collect()),
        Type::Dynamic => Value::Dynamic(Type::String, Box::new(Value::str("x"))),
    }
}

/// A value of the block's type with every attribute and nested block set.
pub fn sample_block(block: &Block) -> Value {
    let mut out: std::collections::BTreeMap<String, Value> =
        block.attributes.iter().map(|a| (a.name.clone(), sample(&a.ty))).collect();
    for b in &block.blocks {
        let one = sample_block(&b.block);
        out.insert(
            b.name.clone(),
            match b.nesting {
                Nesting::Single => one,
                Nesting::List => Value::List(vec![one]),
            },
        );
    }
    Value::Object(out)
}

/// Where two values differ, as paths (`a.b[0]`).
fn differences(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) | (Value::Map(x), Value::Map(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                let null = Value::Null;
                differences(x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), &p, out);
            }
        }
        (Value::List(x), Value::List(y)) | (Value::Set(x), Value::Set(y)) | (Value::Tuple(x), Value::Tuple(y))
            if x.len() == y.len() =>
        {
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                differences(x, y, &format!("{path}[{i}]"), out);
            }
        }
        (x, y) if x.same(y) => {}
        (x, y) => out.push(format!("{path}: {x:?} came back as {y:?}")),
    }
}

/// One schema's round trip: `None` when it holds, else what went wrong.
pub fn check(
    what: &str,
    schema: &Schema,
    round_trip: impl FnOnce(&Value) -> Result<Value, Diagnostics>,
) -> Option<String> {
    let v = sample_block(&schema.block);
    match round_trip(&v) {
        Err(d) => Some(format!("{what}: {}", d.to_string().trim())),
        Ok(back) => {
            let mut diffs = Vec::new();
            differences(&v, &back, "", &mut diffs);
            (!diffs.is_empty()).then(|| format!("{what}: {}", diffs.join("; ")))
        }
    }
}

/// Every schema of the catalog that has a typed struct behind it; the problems found.
pub fn check_catalog(c: &Catalog) -> Vec<String> {
    let mut problems = Vec::new();
    for r in &c.resources {
        problems.extend(check(&format!("resource {}", r.type_name()), r.schema(), |v| r.round_trip(v)));
    }
    for d in &c.data_sources {
        problems.extend(check(&format!("data source {}", d.type_name()), d.schema(), |v| d.round_trip(v)));
    }
    for e in &c.ephemeral_resources {
        problems.extend(check(&format!("ephemeral resource {}", e.type_name()), e.schema(), |v| e.round_trip(v)));
    }
    for l in &c.list_resources {
        problems.extend(check(&format!("list resource {}", l.type_name()), l.schema(), |v| l.round_trip(v)));
    }
    for a in &c.actions {
        problems.extend(check(&format!("action {}", a.type_name()), a.schema(), |v| a.round_trip(v)));
    }
    problems
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::framework::schema::{Attribute, NestedBlock};

    #[test]
    fn every_schema_of_the_catalog_matches_its_struct() {
        let c = crate::catalog::catalog();
        assert!(!c.resources.is_empty());
        let problems = check_catalog(&c);
        assert!(problems.is_empty(), "schema and struct disagree:\n{}", problems.join("\n"));
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        k: Option<i64>,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Typed {
        name: Option<String>,
        inner: Option<Inner>,
    }

    fn schema(extra_attr: Option<Attribute>, inner_ty: Type) -> Schema {
        let mut block = Block::default()
            .attr(Attribute::required("name", Type::String))
            .block(NestedBlock::single("inner", Block::default().attr(Attribute::optional("k", inner_ty))));
        if let Some(a) = extra_attr {
            block = block.attr(a);
        }
        Schema::new(0, block)
    }

    fn trip(s: &Schema) -> Option<String> {
        check("t", s, |v| {
            crate::framework::convert::from_typed(&crate::framework::convert::to_typed::<Typed>(v)?, &s.block)
        })
    }

    #[test]
    fn a_matching_struct_passes() {
        assert_eq!(trip(&schema(None, Type::Number)), None);
    }

    #[test]
    fn an_attribute_the_struct_lacks_is_found() {
        let p = trip(&schema(Some(Attribute::optional("size", Type::Number)), Type::Number)).unwrap_or_default();
        assert!(p.contains("unknown field `size`"), "{p}");
    }

    #[test]
    fn a_field_the_schema_lacks_is_found() {
        let s = Schema::new(0, Block::default().attr(Attribute::required("name", Type::String)));
        let p = trip(&s).unwrap_or_default();
        assert!(p.contains("no attribute inner"), "{p}");
    }

    #[test]
    fn a_field_of_another_type_is_found() {
        let p = trip(&schema(None, Type::Bool)).unwrap_or_default();
        assert!(p.contains("invalid type"), "{p}");
    }
}

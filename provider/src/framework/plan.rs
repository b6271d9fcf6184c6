//! The generic part of PlanResourceChange, driven by the schema: defaults, computed values,
//! write-only attributes, and which changes force a replacement.

use crate::framework::diag::{AttrPath, Step};
use crate::framework::schema::{Block, Nesting};
use crate::framework::value::Value;

/// Plans one object of `block`. `prior` is `None` when the object is being created.
/// Paths of changed force-new attributes are pushed to `replace`.
pub fn plan_block(
    block: &Block,
    prior: Option<&Value>,
    proposed: &Value,
    config: &Value,
    path: &AttrPath,
    replace: &mut Vec<AttrPath>,
    write_only_supported: bool,
) -> Value {
    let mut out = proposed.as_object().cloned().unwrap_or_default();
    for a in &block.attributes {
        let cfg = config.attr(&a.name);
        let prop = proposed.attr(&a.name);
        let planned = if a.write_only && write_only_supported {
            Value::Null
        } else if a.computed && cfg.is_null() {
            match prior {
                // Created: the default, or whatever the remote system decides.
                None => a.default.clone().unwrap_or_else(Value::unknown),
                // Updated: keep the prior value (Terraform's proposal already does).
                Some(_) => match &a.default {
                    Some(d) => d.clone(),
                    None => prop.clone(),
                },
            }
        } else {
            prop.clone()
        };
        if let (Some(prior), true) = (prior, a.requires_replace) {
            let before = prior.attr(&a.name);
            if !planned.is_unknown() && !planned.same(before) || planned.is_unknown() && !cfg.is_null() {
                replace.push(child(path, &a.name));
            }
        }
        out.insert(a.name.clone(), planned);
    }
    for b in &block.blocks {
        let cfg = config.attr(&b.name);
        let prop = proposed.attr(&b.name);
        let prior_b = prior.map(|p| p.attr(&b.name));
        let bpath = child(path, &b.name);
        let planned = match (b.nesting, prop) {
            (Nesting::Single, Value::Object(_)) => {
                // A block added to an existing object plans like a created one.
                let p = prior_b.filter(|p| !p.is_null());
                plan_block(&b.block, p, prop, cfg, &bpath, replace, write_only_supported)
            }
            (Nesting::List, Value::List(items)) => Value::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let p = prior_b.and_then(|p| match p {
                            Value::List(v) => v.get(i),
                            _ => None,
                        });
                        let c = match cfg {
                            Value::List(v) => v.get(i).unwrap_or(&Value::Null),
                            _ => &Value::Null,
                        };
                        let mut ipath = bpath.clone();
                        ipath.0.push(Step::Index(i as i64));
                        plan_block(&b.block, p, item, c, &ipath, replace, write_only_supported)
                    })
                    .collect(),
            ),
            // Null (a single block left out) or unknown: nothing to plan inside.
            (_, other) => other.clone(),
        };
        if let (Some(prior_b), true) = (prior_b, b.requires_replace) {
            let unchanged = planned.same(prior_b) || prior_b.is_null() && is_empty(&planned);
            if !planned.contains_unknown() && !unchanged {
                replace.push(bpath.clone());
            }
        }
        out.insert(b.name.clone(), planned);
    }
    Value::Object(out)
}

fn is_empty(v: &Value) -> bool {
    matches!(v, Value::List(l) | Value::Set(l) if l.is_empty()) || v.is_null()
}

fn child(path: &AttrPath, name: &str) -> AttrPath {
    let mut p = path.clone();
    p.0.push(Step::Attr(name.to_string()));
    p
}

/// Write-only attributes must never reach state: nulls them everywhere in the object.
pub fn strip_write_only(block: &Block, v: &mut Value) {
    let Some(obj) = v.as_object_mut() else { return };
    for a in &block.attributes {
        if a.write_only {
            obj.insert(a.name.clone(), Value::Null);
        }
    }
    for b in &block.blocks {
        if let Some(child) = obj.get_mut(&b.name) {
            match child {
                Value::Object(_) => strip_write_only(&b.block, child),
                Value::List(items) => items.iter_mut().for_each(|i| strip_write_only(&b.block, i)),
                _ => {}
            }
        }
    }
}

/// Marks every computed attribute without configuration unknown (used when replacing: the new
/// object's computed values are not known until it exists).
pub fn unknown_computed(block: &Block, config: &Value, planned: &mut Value) {
    let Some(obj) = planned.as_object_mut() else { return };
    for a in &block.attributes {
        if a.computed && config.attr(&a.name).is_null() && a.default.is_none() {
            obj.insert(a.name.clone(), Value::unknown());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::schema::Attribute;
    use crate::framework::value::Type;

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    fn block() -> Block {
        Block::default()
            .attr(Attribute::required("name", Type::String).replace())
            .attr(Attribute::optional("size", Type::Number))
            .attr(Attribute::computed("id", Type::String))
            .attr(Attribute::optional("mode", Type::String).default(Value::str("on")))
            .attr(Attribute::optional("secret", Type::String).write_only())
    }

    #[test]
    fn create_plans_unknown_computed_and_defaults() {
        let cfg = obj(&[("name", Value::str("a")), ("secret", Value::str("s"))]);
        let mut replace = vec![];
        let p = plan_block(&block(), None, &cfg, &cfg, &AttrPath::default(), &mut replace, true);
        assert!(p.attr("id").is_unknown());
        assert_eq!(p.attr("mode"), &Value::str("on"));
        assert_eq!(p.attr("secret"), &Value::Null);
        assert!(replace.is_empty());
    }

    #[test]
    fn changed_force_new_attribute_is_a_replacement() {
        let prior = obj(&[("name", Value::str("a")), ("id", Value::str("1")), ("mode", Value::str("on"))]);
        let cfg = obj(&[("name", Value::str("b"))]);
        let proposed = obj(&[("name", Value::str("b")), ("id", Value::str("1"))]);
        let mut replace = vec![];
        let p = plan_block(&block(), Some(&prior), &proposed, &cfg, &AttrPath::default(), &mut replace, true);
        assert_eq!(replace, vec![AttrPath::root("name")]);
        assert_eq!(p.attr("id"), &Value::str("1"));
    }
}

//! Conversions between framework types and the generated tfplugin6 messages.

use tfplugin_proto::tfplugin6 as pb;

use crate::framework::diag::{AttrPath, Diagnostic, Diagnostics, Severity, Step};
use crate::framework::function::Signature;
use crate::framework::schema::{Attribute, Block, IdentitySchema, NestedBlock, Nesting, Schema};
use crate::framework::value::{Type, Value};
use crate::plugin::codec::{self, CodecError};

pub fn schema(s: &Schema) -> pb::Schema {
    pb::Schema { version: s.version, block: Some(block(&s.block)) }
}

fn block(b: &Block) -> pb::schema::Block {
    pb::schema::Block {
        version: 0,
        attributes: b.attributes.iter().map(attribute).collect(),
        block_types: b.blocks.iter().map(nested_block).collect(),
        description: b.description.clone(),
        description_kind: pb::StringKind::Markdown as i32,
        deprecated: b.deprecated,
        deprecation_message: String::new(),
    }
}

fn attribute(a: &Attribute) -> pb::schema::Attribute {
    let nested_type = a.nested.as_ref().map(|n| pb::schema::Object {
        attributes: n.attributes.iter().map(attribute).collect(),
        nesting: match n.nesting {
            Nesting::Single => pb::schema::object::NestingMode::Single,
            Nesting::List => pb::schema::object::NestingMode::List,
        } as i32,
        ..Default::default()
    });
    pb::schema::Attribute {
        name: a.name.clone(),
        // A nested attribute's type is given by nested_type alone.
        r#type: if nested_type.is_some() { vec![] } else { a.ty.to_json_bytes() },
        nested_type,
        description: a.description.clone(),
        required: a.required,
        optional: a.optional,
        computed: a.computed,
        sensitive: a.sensitive,
        description_kind: pb::StringKind::Markdown as i32,
        deprecated: a.deprecated,
        write_only: a.write_only,
        deprecation_message: String::new(),
    }
}

fn nested_block(b: &NestedBlock) -> pb::schema::NestedBlock {
    use pb::schema::nested_block::NestingMode as M;
    pb::schema::NestedBlock {
        type_name: b.name.clone(),
        block: Some(block(&b.block)),
        nesting: match b.nesting {
            Nesting::Single => M::Single,
            Nesting::List => M::List,
        } as i32,
        min_items: b.min_items,
        max_items: b.max_items,
    }
}

pub fn identity_schema(s: &IdentitySchema) -> pb::ResourceIdentitySchema {
    pb::ResourceIdentitySchema {
        version: s.version,
        identity_attributes: s
            .attributes
            .iter()
            .map(|a| pb::resource_identity_schema::IdentityAttribute {
                name: a.name.clone(),
                r#type: Type::String.to_json_bytes(),
                required_for_import: a.required_for_import,
                optional_for_import: !a.required_for_import,
                description: a.description.clone(),
            })
            .collect(),
    }
}

pub fn path(p: &AttrPath) -> pb::AttributePath {
    use pb::attribute_path::step::Selector;
    pb::AttributePath {
        steps: p
            .0
            .iter()
            .map(|s| pb::attribute_path::Step {
                selector: Some(match s {
                    Step::Attr(a) => Selector::AttributeName(a.clone()),
                    Step::Key(k) => Selector::ElementKeyString(k.clone()),
                    Step::Index(i) => Selector::ElementKeyInt(*i),
                }),
            })
            .collect(),
    }
}

pub fn diagnostics(d: &Diagnostics) -> Vec<pb::Diagnostic> {
    d.0.iter().map(diagnostic).collect()
}

fn diagnostic(d: &Diagnostic) -> pb::Diagnostic {
    pb::Diagnostic {
        severity: match d.severity {
            Severity::Error => pb::diagnostic::Severity::Error,
            Severity::Warning => pb::diagnostic::Severity::Warning,
        } as i32,
        summary: d.summary.clone(),
        detail: d.detail.clone(),
        attribute: d.path.as_ref().map(path),
    }
}

fn codec_diag(what: &str, e: CodecError) -> Diagnostics {
    Diagnostics::error(
        format!("Could not decode {what}"),
        format!("{e}. This is a bug in Terraform or in the provider."),
    )
}

/// Decodes a DynamicValue (msgpack preferred, JSON accepted). An absent value is null.
pub fn decode(v: Option<&pb::DynamicValue>, ty: &Type, what: &str) -> Result<Value, Diagnostics> {
    let Some(v) = v else { return Ok(Value::Null) };
    if !v.msgpack.is_empty() {
        codec::from_msgpack(&v.msgpack, ty).map_err(|e| codec_diag(what, e))
    } else if !v.json.is_empty() {
        codec::from_json(&v.json, ty).map_err(|e| codec_diag(what, e))
    } else {
        Ok(Value::Null)
    }
}

pub fn encode(v: &Value, ty: &Type) -> Result<pb::DynamicValue, Diagnostics> {
    let msgpack = codec::to_msgpack(v, ty).map_err(|e| {
        Diagnostics::error("Could not encode a value for Terraform", format!("{e}. This is a bug in the provider."))
    })?;
    Ok(pb::DynamicValue { msgpack, json: vec![] })
}

pub fn identity_data(v: Option<Value>, s: Option<&IdentitySchema>) -> Option<pb::ResourceIdentityData> {
    let (v, s) = (v?, s?);
    let dv = encode(&v, &s.value_type()).ok()?;
    Some(pb::ResourceIdentityData { identity_data: Some(dv) })
}

pub fn function(sig: &Signature) -> pb::Function {
    pb::Function {
        parameters: sig
            .parameters
            .iter()
            .map(|p| pb::function::Parameter {
                name: p.name.to_string(),
                r#type: p.ty.to_json_bytes(),
                allow_null_value: p.allow_null,
                allow_unknown_values: false,
                description: p.description.to_string(),
                description_kind: pb::StringKind::Markdown as i32,
            })
            .collect(),
        variadic_parameter: None,
        r#return: Some(pb::function::Return { r#type: sig.returns.to_json_bytes() }),
        summary: sig.summary.to_string(),
        description: sig.description.to_string(),
        description_kind: pb::StringKind::Markdown as i32,
        deprecation_message: String::new(),
    }
}

pub fn timestamp(t: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

//! DynamicValue codec: cty values over msgpack (both ways) and JSON (in only: raw state).
//!
//! Follows cty's encoding: null is `nil`, unknown is extension 0, a refined unknown is
//! extension 12 (its refinement payload is kept as raw bytes), numbers are ints, floats or — for
//! numbers neither can hold exactly — strings, and a `dynamic` value is `[type-json, value]`.
//!
//! Decoding takes bytes from outside the process, so it is bounded whatever they hold: no
//! panic, nesting at most [`MAX_DEPTH`] deep (a `dynamic` value whose type is `dynamic` again
//! would otherwise recurse until the stack overflows), and at most [`VALUES_PER_BYTE`] values per
//! input byte (an empty object expands to all of its type's attributes, so a large object type
//! sent once and many empty objects would otherwise grow quadratically). `provider/tests/wire_fuzz.rs`
//! fuzzes both decoders; provider/README.md says how to run it for longer.

use std::collections::BTreeMap;

use rmp::Marker;

use crate::framework::value::{Number, Refinements, Type, Value};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodecError {
    #[error("value ends early (truncated msgpack)")]
    Truncated,
    #[error("at {path}: expected {expected}, found {found}")]
    Mismatch { path: String, expected: String, found: String },
    #[error("at {path}: {msg}")]
    Invalid { path: String, msg: String },
    #[error("{0} bytes left over after the value")]
    Trailing(usize),
    #[error("at {path}: value nests deeper than {MAX_DEPTH} levels")]
    TooDeep { path: String },
    #[error("value expands to more than {limit} values ({VALUES_PER_BYTE} per input byte), refusing it")]
    TooLarge { limit: usize },
}

/// How deeply a decoded value may nest: every value is one level, each list, set, map, object,
/// tuple or `dynamic` wrapper adds one for what it holds. Schemas nest a handful of levels;
/// serde_json, which parses the types inside `dynamic` values, stops at the same depth.
pub const MAX_DEPTH: usize = 128;

/// Values (counting attributes filled in as null) a decode may produce per input byte, on top
/// of [`VALUE_ALLOWANCE`]. Every value sent takes at least one byte, so only filled attributes
/// go past one per byte: Terraform's msgpack has none, raw state from an older schema a few per
/// object, each object many bytes long. This keeps memory and time linear in the input.
pub const VALUES_PER_BYTE: usize = 2;
pub const VALUE_ALLOWANCE: usize = 4096;

/// go-cty refuses refinement payloads above 1 KiB ("might be an abusive attempt to allocate
/// large amounts of memory"; zclconf/go-cty v1.18.1, cty/msgpack/unknown.go,
/// `unmarshalUnknownValue`); so does this decoder.
pub const MAX_REFINEMENTS: usize = 1024;

/// What one decode has spent: how deep it is now, and how many values it may still produce.
struct Limits {
    depth: usize,
    values: usize,
    limit: usize,
}

impl Limits {
    fn for_input(len: usize) -> Limits {
        let limit = len.saturating_mul(VALUES_PER_BYTE).saturating_add(VALUE_ALLOWANCE);
        Limits { depth: 0, values: limit, limit }
    }
    fn spend(&mut self, n: usize) -> Result<(), CodecError> {
        self.values = self.values.checked_sub(n).ok_or(CodecError::TooLarge { limit: self.limit })?;
        Ok(())
    }
    /// Enters one level (and counts the value about to be produced there).
    fn enter(&mut self, path: &str) -> Result<(), CodecError> {
        self.spend(1)?;
        if self.depth >= MAX_DEPTH {
            return Err(CodecError::TooDeep { path: display_path(path) });
        }
        self.depth += 1;
        Ok(())
    }
    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}

// ---------------------------------------------------------------- msgpack out

pub fn to_msgpack(v: &Value, ty: &Type) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64);
    encode(&mut out, v, ty, &mut String::new())?;
    Ok(out)
}

fn w<T>(r: Result<T, impl std::fmt::Debug>) {
    // Writing into a Vec cannot fail.
    debug_assert!(r.is_ok());
}

fn encode(out: &mut Vec<u8>, v: &Value, ty: &Type, path: &mut String) -> Result<(), CodecError> {
    match (v, ty) {
        (Value::Null, _) => w(rmp::encode::write_nil(out)),
        (Value::Unknown(None), _) => out.extend_from_slice(&[0xd4, 0, 0]),
        (Value::Unknown(Some(Refinements(r))), _) => {
            w(rmp::encode::write_ext_meta(out, r.len() as u32, 12));
            out.extend_from_slice(r);
        }
        (Value::Dynamic(inner_ty, inner), Type::Dynamic) => {
            encode_dynamic(out, inner, inner_ty, path)?;
        }
        (Value::Dynamic(_, inner), _) => encode(out, inner, ty, path)?,
        (_, Type::Dynamic) => {
            let inferred = infer_type(v);
            encode_dynamic(out, v, &inferred, path)?;
        }
        (Value::String(s), Type::String) => w(rmp::encode::write_str(out, s)),
        (Value::Bool(b), Type::Bool) => w(rmp::encode::write_bool(out, *b)),
        (Value::Number(n), Type::Number) => encode_number(out, n),
        (Value::List(items), Type::List(et)) | (Value::Set(items), Type::Set(et)) => {
            w(rmp::encode::write_array_len(out, items.len() as u32));
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                encode(out, item, et, path)?;
                path.truncate(len);
            }
        }
        (Value::Tuple(items), Type::Tuple(ts)) if items.len() == ts.len() => {
            w(rmp::encode::write_array_len(out, items.len() as u32));
            for (item, t) in items.iter().zip(ts) {
                encode(out, item, t, path)?;
            }
        }
        (Value::Map(m), Type::Map(et)) => {
            w(rmp::encode::write_map_len(out, m.len() as u32));
            for (k, item) in m {
                w(rmp::encode::write_str(out, k));
                encode(out, item, et, path)?;
            }
        }
        (Value::Object(m), Type::Object(attrs)) => {
            w(rmp::encode::write_map_len(out, attrs.len() as u32));
            for (k, t) in attrs {
                w(rmp::encode::write_str(out, k));
                let len = path.len();
                path.push('.');
                path.push_str(k);
                encode(out, m.get(k).unwrap_or(&Value::Null), t, path)?;
                path.truncate(len);
            }
        }
        (v, ty) => {
            return Err(CodecError::Mismatch {
                path: display_path(path),
                expected: ty.to_json().to_string(),
                found: kind(v).into(),
            })
        }
    }
    Ok(())
}

fn encode_dynamic(out: &mut Vec<u8>, v: &Value, ty: &Type, path: &mut String) -> Result<(), CodecError> {
    if v.is_null() || v.is_unknown() {
        return encode(out, v, ty, path);
    }
    w(rmp::encode::write_array_len(out, 2));
    w(rmp::encode::write_bin(out, &ty.to_json_bytes()));
    encode(out, v, ty, path)
}

fn encode_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(i) = n.as_i64() {
        w(rmp::encode::write_sint(out, i));
    } else if let Some(u) = n.as_u64() {
        w(rmp::encode::write_uint(out, u));
    } else if let Some(f) = n.as_exact_f64() {
        w(rmp::encode::write_f64(out, f));
    } else {
        w(rmp::encode::write_str(out, n.as_str()));
    }
}

/// The type a value would have if it were written without a schema (for `dynamic`).
pub fn infer_type(v: &Value) -> Type {
    match v {
        Value::Null | Value::Unknown(_) => Type::Dynamic,
        Value::String(_) => Type::String,
        Value::Number(_) => Type::Number,
        Value::Bool(_) => Type::Bool,
        Value::List(items) => Type::list(items.first().map(infer_type).unwrap_or(Type::Dynamic)),
        Value::Set(items) => Type::set(items.first().map(infer_type).unwrap_or(Type::Dynamic)),
        Value::Map(m) => Type::map(m.values().next().map(infer_type).unwrap_or(Type::Dynamic)),
        Value::Object(m) => Type::Object(m.iter().map(|(k, v)| (k.clone(), infer_type(v))).collect()),
        Value::Tuple(items) => Type::Tuple(items.iter().map(infer_type).collect()),
        Value::Dynamic(t, _) => t.clone(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Unknown(_) => "unknown",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::List(_) => "list",
        Value::Set(_) => "set",
        Value::Map(_) => "map",
        Value::Object(_) => "object",
        Value::Tuple(_) => "tuple",
        Value::Dynamic(..) => "dynamic",
    }
}

fn display_path(p: &str) -> String {
    if p.is_empty() {
        "(root)".into()
    } else {
        p.trim_start_matches('.').to_string()
    }
}

// ---------------------------------------------------------------- msgpack in

pub fn from_msgpack(bytes: &[u8], ty: &Type) -> Result<Value, CodecError> {
    let mut r = Reader { buf: bytes, pos: 0, limits: Limits::for_input(bytes.len()) };
    let v = r.value(ty, &mut String::new())?;
    if r.pos != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - r.pos));
    }
    Ok(v)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: Limits,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(CodecError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn be(&mut self, n: usize) -> Result<u64, CodecError> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }
    fn peek(&self) -> Result<Marker, CodecError> {
        self.buf.get(self.pos).map(|b| Marker::from_u8(*b)).ok_or(CodecError::Truncated)
    }

    fn len_for(&mut self, m: Marker) -> Result<Option<usize>, CodecError> {
        Ok(Some(match m {
            Marker::FixStr(n) | Marker::FixArray(n) | Marker::FixMap(n) => n as usize,
            Marker::Str8 | Marker::Bin8 => self.be(1)? as usize,
            Marker::Str16 | Marker::Bin16 | Marker::Array16 | Marker::Map16 => self.be(2)? as usize,
            Marker::Str32 | Marker::Bin32 | Marker::Array32 | Marker::Map32 => self.be(4)? as usize,
            _ => return Ok(None),
        }))
    }

    fn mismatch(&self, path: &str, ty: &Type, m: Marker) -> CodecError {
        CodecError::Mismatch {
            path: display_path(path),
            expected: ty.to_json().to_string(),
            found: format!("msgpack {m:?}"),
        }
    }

    fn bytes_or_str(&mut self, path: &str, ty: &Type) -> Result<&'a [u8], CodecError> {
        let m = Marker::from_u8(self.u8()?);
        match m {
            Marker::FixStr(_)
            | Marker::Str8
            | Marker::Str16
            | Marker::Str32
            | Marker::Bin8
            | Marker::Bin16
            | Marker::Bin32 => {
                let n = self.len_for(m)?.unwrap_or(0);
                self.take(n)
            }
            _ => Err(self.mismatch(path, ty, m)),
        }
    }

    fn string(&mut self, path: &str, ty: &Type) -> Result<String, CodecError> {
        let b = self.bytes_or_str(path, ty)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| CodecError::Invalid { path: display_path(path), msg: "string is not valid UTF-8".into() })
    }

    /// Bytes not read yet: an upper bound on how many values can still follow (each takes one
    /// at least), so a claimed element count never reserves more than the input could fill.
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn value(&mut self, ty: &Type, path: &mut String) -> Result<Value, CodecError> {
        self.limits.enter(path)?;
        let v = self.value_here(ty, path);
        self.limits.leave();
        v
    }

    /// An extension value: cty's unknown. As go-cty (cty/msgpack/unknown.go,
    /// `unmarshalUnknownValue`): a body of at most one byte is a plain unknown whatever the
    /// type code; a longer one must be type 12 (refinements), at most [`MAX_REFINEMENTS`] bytes,
    /// holding a msgpack map. Refinements on a `dynamic` unknown are dropped, as go-cty does.
    fn unknown(&mut self, m: Marker, ty: &Type, path: &str) -> Result<Value, CodecError> {
        let len = match m {
            Marker::FixExt1 => 1,
            Marker::FixExt2 => 2,
            Marker::FixExt4 => 4,
            Marker::FixExt8 => 8,
            Marker::FixExt16 => 16,
            Marker::Ext8 => self.be(1)? as usize,
            Marker::Ext16 => self.be(2)? as usize,
            _ => self.be(4)? as usize,
        };
        let code = self.u8()? as i8;
        let invalid = |msg: String| CodecError::Invalid { path: display_path(path), msg };
        if len > 1 && code != 12 {
            return Err(invalid(format!("unsupported msgpack extension type {code} with {len} bytes")));
        }
        if len > MAX_REFINEMENTS {
            return Err(invalid(format!(
                "refinements of an unknown value take {len} bytes, more than the {MAX_REFINEMENTS} allowed"
            )));
        }
        let payload = self.take(len)?;
        if len <= 1 {
            return Ok(Value::Unknown(None));
        }
        if !matches!(
            payload.first().map(|b| Marker::from_u8(*b)),
            Some(Marker::FixMap(_) | Marker::Map16 | Marker::Map32)
        ) {
            return Err(invalid("refinements of an unknown value are not a msgpack map".into()));
        }
        if matches!(ty, Type::Dynamic) {
            return Ok(Value::Unknown(None));
        }
        Ok(Value::Unknown(Some(Refinements(payload.to_vec()))))
    }

    fn value_here(&mut self, ty: &Type, path: &mut String) -> Result<Value, CodecError> {
        let m = self.peek()?;
        match m {
            Marker::Null => {
                self.pos += 1;
                return Ok(Value::Null);
            }
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => {
                self.pos += 1;
                return self.unknown(m, ty, path);
            }
            _ => {}
        }
        // Each kind in a function of its own: unoptimised builds give a function one stack
        // slot per temporary of every arm, and this recursion must stay shallow per level.
        match ty {
            Type::Dynamic => self.dynamic(path),
            Type::String => Ok(Value::String(self.string(path, ty)?)),
            Type::Bool => match Marker::from_u8(self.u8()?) {
                Marker::True => Ok(Value::Bool(true)),
                Marker::False => Ok(Value::Bool(false)),
                m => Err(self.mismatch(path, ty, m)),
            },
            Type::Number => self.number(path, ty),
            Type::List(et) | Type::Set(et) => self.list(ty, et, path),
            Type::Tuple(ts) => self.tuple(ty, ts, path),
            Type::Map(et) => self.map(ty, et, path),
            Type::Object(attrs) => self.object(ty, attrs, path),
        }
    }

    fn dynamic(&mut self, path: &mut String) -> Result<Value, CodecError> {
        let m = Marker::from_u8(self.u8()?);
        if self.len_for(m)? != Some(2) || !matches!(m, Marker::FixArray(_) | Marker::Array16 | Marker::Array32) {
            return Err(self.mismatch(path, &Type::Dynamic, m));
        }
        let tb = self.bytes_or_str(path, &Type::Dynamic)?;
        let inner_ty =
            Type::from_json_bytes(tb).map_err(|msg| CodecError::Invalid { path: display_path(path), msg })?;
        let v = self.value(&inner_ty, path)?;
        Ok(Value::Dynamic(inner_ty, Box::new(v)))
    }

    fn list(&mut self, ty: &Type, et: &Type, path: &mut String) -> Result<Value, CodecError> {
        let n = self.array_len(path, ty)?;
        let mut items = Vec::with_capacity(n.min(self.remaining()));
        for i in 0..n {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            items.push(self.value(et, path)?);
            path.truncate(len);
        }
        Ok(if matches!(ty, Type::List(_)) { Value::List(items) } else { Value::Set(items) })
    }

    fn tuple(&mut self, ty: &Type, ts: &[Type], path: &mut String) -> Result<Value, CodecError> {
        let n = self.array_len(path, ty)?;
        if n != ts.len() {
            return Err(CodecError::Invalid {
                path: display_path(path),
                msg: format!("tuple has {n} elements, type has {}", ts.len()),
            });
        }
        let mut items = Vec::with_capacity(n);
        for t in ts {
            items.push(self.value(t, path)?);
        }
        Ok(Value::Tuple(items))
    }

    fn map(&mut self, ty: &Type, et: &Type, path: &mut String) -> Result<Value, CodecError> {
        let n = self.map_len(path, ty)?;
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let k = self.string(path, &Type::String)?;
            let len = path.len();
            path.push_str(&format!("[{k:?}]"));
            let v = self.value(et, path)?;
            path.truncate(len);
            out.insert(k, v);
        }
        Ok(Value::Map(out))
    }

    fn object(&mut self, ty: &Type, attrs: &BTreeMap<String, Type>, path: &mut String) -> Result<Value, CodecError> {
        let n = self.map_len(path, ty)?;
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let k = self.string(path, &Type::String)?;
            let Some(at) = attrs.get(&k) else {
                return Err(CodecError::Invalid {
                    path: display_path(path),
                    msg: format!("unexpected attribute {k:?}"),
                });
            };
            let len = path.len();
            path.push('.');
            path.push_str(&k);
            let v = self.value(at, path)?;
            path.truncate(len);
            out.insert(k, v);
        }
        // Attributes the sender left out are null, as in cty (paid for first: they take no
        // input bytes).
        self.limits.spend(attrs.len() - out.len())?;
        Ok(Value::Object(fill_nulls(attrs, out)))
    }

    fn array_len(&mut self, path: &str, ty: &Type) -> Result<usize, CodecError> {
        let m = Marker::from_u8(self.u8()?);
        match m {
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => Ok(self.len_for(m)?.unwrap_or(0)),
            _ => Err(self.mismatch(path, ty, m)),
        }
    }
    fn map_len(&mut self, path: &str, ty: &Type) -> Result<usize, CodecError> {
        let m = Marker::from_u8(self.u8()?);
        match m {
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => Ok(self.len_for(m)?.unwrap_or(0)),
            _ => Err(self.mismatch(path, ty, m)),
        }
    }

    fn number(&mut self, path: &str, ty: &Type) -> Result<Value, CodecError> {
        let m = Marker::from_u8(self.u8()?);
        let n = match m {
            Marker::FixPos(v) => Number::from_u64(u64::from(v)),
            Marker::FixNeg(v) => Number::from_i64(i64::from(v)),
            Marker::U8 => Number::from_u64(self.be(1)?),
            Marker::U16 => Number::from_u64(self.be(2)?),
            Marker::U32 => Number::from_u64(self.be(4)?),
            Marker::U64 => Number::from_u64(self.be(8)?),
            Marker::I8 => Number::from_i64(i64::from(self.be(1)? as u8 as i8)),
            Marker::I16 => Number::from_i64(i64::from(self.be(2)? as u16 as i16)),
            Marker::I32 => Number::from_i64(i64::from(self.be(4)? as u32 as i32)),
            Marker::I64 => Number::from_i64(self.be(8)? as i64),
            Marker::F32 => {
                let bits = self.be(4)? as u32;
                float(f64::from(f32::from_bits(bits)), path)?
            }
            Marker::F64 => {
                let bits = self.be(8)?;
                float(f64::from_bits(bits), path)?
            }
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                let n = self.len_for(m)?.unwrap_or(0);
                let s = std::str::from_utf8(self.take(n)?).unwrap_or("");
                Number::parse(s).ok_or_else(|| CodecError::Invalid {
                    path: display_path(path),
                    msg: format!("{s:?} is not a number"),
                })?
            }
            m => return Err(self.mismatch(path, ty, m)),
        };
        Ok(Value::Number(n))
    }
}

/// An object with every attribute of its type, null where `present` lacks it. Built in key
/// order, which `BTreeMap` turns into one bulk build instead of an insert per attribute.
fn fill_nulls(attrs: &BTreeMap<String, Type>, mut present: BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    if present.len() == attrs.len() {
        return present;
    }
    attrs.keys().map(|k| (k.clone(), present.remove(k).unwrap_or(Value::Null))).collect()
}

fn float(f: f64, path: &str) -> Result<Number, CodecError> {
    Number::from_f64(f).ok_or_else(|| CodecError::Invalid {
        path: display_path(path),
        msg: "NaN and infinity are not numbers in Terraform".into(),
    })
}

// ---------------------------------------------------------------- JSON in

/// Decodes cty JSON (what raw state holds) against `ty`, keeping every digit of numbers.
pub fn from_json(bytes: &[u8], ty: &Type) -> Result<Value, CodecError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| CodecError::Invalid { path: "(root)".into(), msg: "JSON is not UTF-8".into() })?;
    let mut p = json::Parser::new(text);
    let j = p.parse().map_err(|msg| CodecError::Invalid { path: "(root)".into(), msg })?;
    json_value(&j, ty, &mut String::new(), &mut Limits::for_input(bytes.len()))
}

fn json_value(j: &json::J, ty: &Type, path: &mut String, limits: &mut Limits) -> Result<Value, CodecError> {
    limits.enter(path)?;
    let v = json_value_here(j, ty, path, limits);
    limits.leave();
    v
}

fn json_value_here(j: &json::J, ty: &Type, path: &mut String, limits: &mut Limits) -> Result<Value, CodecError> {
    use json::J;
    let mismatch = |path: &str| CodecError::Mismatch {
        path: display_path(path),
        expected: ty.to_json().to_string(),
        found: j.kind().into(),
    };
    // Containers in functions of their own, as for msgpack: unoptimised builds give a function
    // one stack slot per temporary of every arm, and this recursion must stay shallow per level.
    match (ty, j) {
        (_, J::Null) => Ok(Value::Null),
        (Type::Dynamic, J::Obj(fields)) => json_dynamic(fields, path, limits)?.ok_or_else(|| mismatch(path)),
        (Type::String, J::Str(s)) => Ok(Value::String(s.clone())),
        (Type::Number, J::Num(n) | J::Str(n)) => Number::parse(n).map(Value::Number).ok_or_else(|| mismatch(path)),
        (Type::Bool, J::Bool(b)) => Ok(Value::Bool(*b)),
        (Type::List(et) | Type::Set(et), J::Arr(items)) => json_list(ty, et, items, path, limits),
        (Type::Tuple(ts), J::Arr(items)) if ts.len() == items.len() => json_tuple(ts, items, path, limits),
        (Type::Map(et), J::Obj(fields)) => json_map(et, fields, path, limits),
        (Type::Object(attrs), J::Obj(fields)) => json_object(attrs, fields, path, limits),
        _ => Err(mismatch(path)),
    }
}

/// `{"type": …, "value": …}`; `None` when either is missing.
fn json_dynamic(
    fields: &[(String, json::J)],
    path: &mut String,
    limits: &mut Limits,
) -> Result<Option<Value>, CodecError> {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let (Some(t), Some(v)) = (get("type"), get("value")) else {
        return Ok(None);
    };
    let inner_ty =
        Type::from_json(&t.to_serde()).map_err(|msg| CodecError::Invalid { path: display_path(path), msg })?;
    let inner = json_value(v, &inner_ty, path, limits)?;
    Ok(Some(Value::Dynamic(inner_ty, Box::new(inner))))
}

fn json_list(
    ty: &Type,
    et: &Type,
    items: &[json::J],
    path: &mut String,
    limits: &mut Limits,
) -> Result<Value, CodecError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let len = path.len();
        path.push_str(&format!("[{i}]"));
        out.push(json_value(item, et, path, limits)?);
        path.truncate(len);
    }
    Ok(if matches!(ty, Type::List(_)) { Value::List(out) } else { Value::Set(out) })
}

fn json_tuple(ts: &[Type], items: &[json::J], path: &mut String, limits: &mut Limits) -> Result<Value, CodecError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, t) in items.iter().zip(ts) {
        out.push(json_value(i, t, path, limits)?);
    }
    Ok(Value::Tuple(out))
}

fn json_map(
    et: &Type,
    fields: &[(String, json::J)],
    path: &mut String,
    limits: &mut Limits,
) -> Result<Value, CodecError> {
    let mut out = BTreeMap::new();
    for (k, v) in fields {
        out.insert(k.clone(), json_value(v, et, path, limits)?);
    }
    Ok(Value::Map(out))
}

fn json_object(
    attrs: &BTreeMap<String, Type>,
    fields: &[(String, json::J)],
    path: &mut String,
    limits: &mut Limits,
) -> Result<Value, CodecError> {
    let mut out = BTreeMap::new();
    for (k, v) in fields {
        // Raw state may hold attributes an older schema had; upgrades drop them.
        if let Some(at) = attrs.get(k) {
            let len = path.len();
            path.push('.');
            path.push_str(k);
            out.insert(k.clone(), json_value(v, at, path, limits)?);
            path.truncate(len);
        }
    }
    // Attributes left out are null (paid for first: they take no input bytes).
    limits.spend(attrs.len() - out.len())?;
    Ok(Value::Object(fill_nulls(attrs, out)))
}

/// A JSON reader that keeps numbers as text (serde_json would round them through f64).
pub mod json {
    #[derive(Debug, Clone, PartialEq)]
    pub enum J {
        Null,
        Bool(bool),
        Num(String),
        Str(String),
        Arr(Vec<J>),
        Obj(Vec<(String, J)>),
    }

    impl J {
        pub fn kind(&self) -> &'static str {
            match self {
                J::Null => "null",
                J::Bool(_) => "bool",
                J::Num(_) => "number",
                J::Str(_) => "string",
                J::Arr(_) => "array",
                J::Obj(_) => "object",
            }
        }
        /// For small values (types): converts to serde_json (numbers may round).
        pub fn to_serde(&self) -> serde_json::Value {
            match self {
                J::Null => serde_json::Value::Null,
                J::Bool(b) => (*b).into(),
                J::Num(n) => n.parse::<f64>().map(serde_json::Value::from).unwrap_or_default(),
                J::Str(s) => s.clone().into(),
                J::Arr(a) => a.iter().map(J::to_serde).collect(),
                J::Obj(o) => o.iter().map(|(k, v)| (k.clone(), v.to_serde())).collect::<serde_json::Map<_, _>>().into(),
            }
        }
    }

    pub struct Parser<'a> {
        s: &'a [u8],
        i: usize,
        depth: usize,
    }

    impl<'a> Parser<'a> {
        pub fn new(s: &'a str) -> Self {
            Parser { s: s.as_bytes(), i: 0, depth: 0 }
        }
        pub fn parse(&mut self) -> Result<J, String> {
            let v = self.value()?;
            self.ws();
            if self.i != self.s.len() {
                return Err(format!("unexpected data at byte {}", self.i));
            }
            Ok(v)
        }
        fn ws(&mut self) {
            while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            }
        }
        fn lit(&mut self, word: &str, v: J) -> Result<J, String> {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                Ok(v)
            } else {
                Err(format!("invalid literal at byte {}", self.i))
            }
        }
        fn value(&mut self) -> Result<J, String> {
            self.ws();
            let Some(&c) = self.s.get(self.i) else { return Err("unexpected end of JSON".into()) };
            match c {
                b'n' => self.lit("null", J::Null),
                b't' => self.lit("true", J::Bool(true)),
                b'f' => self.lit("false", J::Bool(false)),
                b'"' => Ok(J::Str(self.string()?)),
                b'[' | b'{' => {
                    self.depth += 1;
                    // The decoder's own bound: no deeper JSON can become a value anyway.
                    if self.depth > super::MAX_DEPTH {
                        return Err("JSON nested too deeply".into());
                    }
                    let v = if c == b'[' { self.array() } else { self.object() };
                    self.depth -= 1;
                    v
                }
                b'-' | b'0'..=b'9' => {
                    let start = self.i;
                    while self.i < self.s.len()
                        && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    {
                        self.i += 1;
                    }
                    let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default();
                    Ok(J::Num(t.to_string()))
                }
                _ => Err(format!("unexpected character at byte {}", self.i)),
            }
        }
        fn array(&mut self) -> Result<J, String> {
            self.i += 1;
            let mut out = Vec::new();
            self.ws();
            if self.s.get(self.i) == Some(&b']') {
                self.i += 1;
                return Ok(J::Arr(out));
            }
            loop {
                out.push(self.value()?);
                self.ws();
                match self.s.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b']') => {
                        self.i += 1;
                        return Ok(J::Arr(out));
                    }
                    _ => return Err(format!("expected , or ] at byte {}", self.i)),
                }
            }
        }
        fn object(&mut self) -> Result<J, String> {
            self.i += 1;
            let mut out = Vec::new();
            self.ws();
            if self.s.get(self.i) == Some(&b'}') {
                self.i += 1;
                return Ok(J::Obj(out));
            }
            loop {
                self.ws();
                if self.s.get(self.i) != Some(&b'"') {
                    return Err(format!("expected a key at byte {}", self.i));
                }
                let k = self.string()?;
                self.ws();
                if self.s.get(self.i) != Some(&b':') {
                    return Err(format!("expected : at byte {}", self.i));
                }
                self.i += 1;
                out.push((k, self.value()?));
                self.ws();
                match self.s.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        return Ok(J::Obj(out));
                    }
                    _ => return Err(format!("expected , or }} at byte {}", self.i)),
                }
            }
        }
        fn string(&mut self) -> Result<String, String> {
            // Delegate escapes to serde_json on the exact string token.
            let start = self.i;
            self.i += 1;
            while self.i < self.s.len() {
                match self.s[self.i] {
                    b'\\' => self.i += 2,
                    b'"' => {
                        self.i += 1;
                        let tok = &self.s[start..self.i];
                        return serde_json::from_slice(tok).map_err(|e| e.to_string());
                    }
                    _ => self.i += 1,
                }
            }
            Err("unterminated string".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn unknown_and_refined_unknown_round_trip() {
        let ty = Type::object([("a", Type::String), ("b", Type::Number)]);
        let refined = Value::Unknown(Some(Refinements(vec![0x81, 0x01, 0xc3])));
        let v = obj(&[("a", Value::unknown()), ("b", refined)]);
        let bytes = to_msgpack(&v, &ty).unwrap();
        assert_eq!(from_msgpack(&bytes, &ty).unwrap(), v);
    }

    #[test]
    fn big_numbers_keep_their_digits() {
        let n = Number::parse("123456789012345678901234567890.5").unwrap();
        let bytes = to_msgpack(&Value::Number(n.clone()), &Type::Number).unwrap();
        assert_eq!(from_msgpack(&bytes, &Type::Number).unwrap(), Value::Number(n.clone()));
        let j = from_json(b"123456789012345678901234567890.5", &Type::Number).unwrap();
        assert_eq!(j, Value::Number(n));
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        let ty = Type::object([("a", Type::list(Type::String))]);
        assert_eq!(from_msgpack(&[0x81, 0xa1, b'a', 0x92, 0xa1], &ty), Err(CodecError::Truncated));
        assert!(from_msgpack(&[0xc1], &ty).is_err());
        assert!(from_msgpack(&[0x81, 0xa1, b'z', 0xc0], &ty).is_err());
        assert!(matches!(from_msgpack(&[0xc0, 0xc0], &ty), Err(CodecError::Trailing(1))));
        assert!(from_json(b"{\"a\": [1,", &ty).is_err());
    }

    #[test]
    fn dynamic_values_carry_their_type() {
        let inner = Type::list(Type::Number);
        let v = Value::Dynamic(inner.clone(), Box::new(Value::List(vec![Value::Number(Number::from_i64(1))])));
        let bytes = to_msgpack(&v, &Type::Dynamic).unwrap();
        assert_eq!(from_msgpack(&bytes, &Type::Dynamic).unwrap(), v);
        let j = from_json(br#"{"value":[1],"type":["list","number"]}"#, &Type::Dynamic).unwrap();
        assert_eq!(j, v);
    }

    fn arb_type() -> impl Strategy<Value = Type> {
        let leaf = prop_oneof![Just(Type::String), Just(Type::Number), Just(Type::Bool)];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(Type::list),
                inner.clone().prop_map(Type::set),
                inner.clone().prop_map(Type::map),
                prop::collection::btree_map("[a-z]{1,6}", inner.clone(), 0..4).prop_map(Type::Object),
                prop::collection::vec(inner, 0..3).prop_map(Type::Tuple),
                Just(Type::Dynamic),
            ]
        })
    }

    fn arb_number() -> impl Strategy<Value = Number> {
        prop_oneof![
            any::<i64>().prop_map(Number::from_i64),
            any::<u64>().prop_map(Number::from_u64),
            any::<f64>().prop_filter_map("finite", Number::from_f64),
            "-?[1-9][0-9]{0,40}(\\.[0-9]{0,30}[1-9])?".prop_map(|s| Number::parse(&s).unwrap()),
        ]
    }

    fn arb_value(ty: Type) -> BoxedStrategy<Value> {
        let special = prop_oneof![Just(Value::Null), Just(Value::unknown())];
        let concrete: BoxedStrategy<Value> = match ty {
            Type::String => ".{0,12}".prop_map(Value::String).boxed(),
            Type::Number => arb_number().prop_map(Value::Number).boxed(),
            Type::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            Type::Dynamic => arb_value(Type::String)
                .prop_map(|v| match v {
                    Value::String(_) => Value::Dynamic(Type::String, Box::new(v)),
                    other => other,
                })
                .boxed(),
            Type::List(et) => prop::collection::vec(arb_value(*et), 0..4).prop_map(Value::List).boxed(),
            Type::Set(et) => prop::collection::vec(arb_value(*et), 0..4).prop_map(Value::Set).boxed(),
            Type::Map(et) => {
                prop::collection::btree_map("[a-z]{0,5}", arb_value(*et), 0..4).prop_map(Value::Map).boxed()
            }
            Type::Object(attrs) => {
                let parts: Vec<_> =
                    attrs.into_iter().map(|(k, t)| arb_value(t).prop_map(move |v| (k.clone(), v))).collect();
                parts.prop_map(|kv| Value::Object(kv.into_iter().collect())).boxed()
            }
            Type::Tuple(ts) => {
                let parts: Vec<_> = ts.into_iter().map(arb_value).collect();
                parts.prop_map(Value::Tuple).boxed()
            }
        };
        prop_oneof![1 => special, 6 => concrete].boxed()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn msgpack_round_trips(v in arb_type().prop_flat_map(|t| (Just(t.clone()), arb_value(t)))) {
            let (ty, value) = v;
            let bytes = to_msgpack(&value, &ty).unwrap();
            prop_assert_eq!(from_msgpack(&bytes, &ty).unwrap(), value);
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64), ty in arb_type()) {
            let _ = from_msgpack(&bytes, &ty);
            let _ = from_json(&bytes, &ty);
        }
    }
}

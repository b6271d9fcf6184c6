//! cty's type system as the provider sees it: [`Type`] and [`Value`], independent of any wire
//! encoding (the codecs live in `plugin::codec`).

use std::collections::BTreeMap;
use std::fmt;

/// A cty type. Its JSON form (`"string"`, `["list","string"]`, `["object",{…}]`) is what
/// schemas and `dynamic` values carry on the wire.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Type {
    String,
    Number,
    Bool,
    /// Any type; values carry their concrete type with them.
    Dynamic,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Object(BTreeMap<String, Type>),
    Tuple(Vec<Type>),
}

impl Type {
    pub fn list(t: Type) -> Type {
        Type::List(Box::new(t))
    }
    pub fn set(t: Type) -> Type {
        Type::Set(Box::new(t))
    }
    pub fn map(t: Type) -> Type {
        Type::Map(Box::new(t))
    }
    pub fn object<I: IntoIterator<Item = (S, Type)>, S: Into<String>>(attrs: I) -> Type {
        Type::Object(attrs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The type in cty's JSON notation.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Type::String => J::from("string"),
            Type::Number => J::from("number"),
            Type::Bool => J::from("bool"),
            Type::Dynamic => J::from("dynamic"),
            Type::List(t) => J::Array(vec![J::from("list"), t.to_json()]),
            Type::Set(t) => J::Array(vec![J::from("set"), t.to_json()]),
            Type::Map(t) => J::Array(vec![J::from("map"), t.to_json()]),
            Type::Object(attrs) => J::Array(vec![
                J::from("object"),
                J::Object(attrs.iter().map(|(k, t)| (k.clone(), t.to_json())).collect()),
            ]),
            Type::Tuple(ts) => J::Array(vec![J::from("tuple"), J::Array(ts.iter().map(Type::to_json).collect())]),
        }
    }

    /// Parses cty's JSON type notation. Optional-attribute markers (a third element on
    /// `object`) are accepted and ignored: they only matter for type conversion in Terraform.
    pub fn from_json(j: &serde_json::Value) -> Result<Type, String> {
        use serde_json::Value as J;
        match j {
            J::String(s) => match s.as_str() {
                "string" => Ok(Type::String),
                "number" => Ok(Type::Number),
                "bool" => Ok(Type::Bool),
                "dynamic" => Ok(Type::Dynamic),
                other => Err(format!("unknown primitive type {other:?}")),
            },
            J::Array(parts) if parts.len() >= 2 => {
                let kind = parts[0].as_str().ok_or("type kind must be a string")?;
                match kind {
                    "list" => Ok(Type::list(Type::from_json(&parts[1])?)),
                    "set" => Ok(Type::set(Type::from_json(&parts[1])?)),
                    "map" => Ok(Type::map(Type::from_json(&parts[1])?)),
                    "object" => {
                        let attrs = parts[1].as_object().ok_or("object attributes must be a map")?;
                        let mut out = BTreeMap::new();
                        for (k, v) in attrs {
                            out.insert(k.clone(), Type::from_json(v)?);
                        }
                        Ok(Type::Object(out))
                    }
                    "tuple" => {
                        let elems = parts[1].as_array().ok_or("tuple elements must be a list")?;
                        Ok(Type::Tuple(elems.iter().map(Type::from_json).collect::<Result<_, _>>()?))
                    }
                    other => Err(format!("unknown type kind {other:?}")),
                }
            }
            other => Err(format!("not a type: {other}")),
        }
    }

    /// Parses the type bytes that travel in schemas and `dynamic` values.
    pub fn from_json_bytes(b: &[u8]) -> Result<Type, String> {
        let j: serde_json::Value = serde_json::from_slice(b).map_err(|e| format!("type is not JSON: {e}"))?;
        Type::from_json(&j)
    }

    pub fn to_json_bytes(&self) -> Vec<u8> {
        self.to_json().to_string().into_bytes()
    }
}

/// A number of arbitrary precision, kept as its decimal text so that no digit is lost through
/// `f64`. Always normalised: no leading `+`, no leading zeros, lower-case exponent.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Number(String);

impl Number {
    /// Parses decimal text (JSON number syntax, or what cty writes for big numbers).
    pub fn parse(s: &str) -> Option<Number> {
        let s = s.trim();
        let body = s.strip_prefix('-').unwrap_or(s);
        let (mant, exp) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let (int, frac) = match mant.find('.') {
            Some(i) => (&mant[..i], Some(&mant[i + 1..])),
            None => (mant, None),
        };
        let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || frac.is_some_and(|f| !digits(f)) {
            return None;
        }
        if let Some(e) = exp {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            if !digits(e) {
                return None;
            }
        }
        Some(Number(normalise(s)))
    }

    pub fn from_i64(v: i64) -> Number {
        Number(v.to_string())
    }
    pub fn from_u64(v: u64) -> Number {
        Number(v.to_string())
    }
    /// `None` for NaN and infinities, which cty numbers cannot hold.
    pub fn from_f64(v: f64) -> Option<Number> {
        if !v.is_finite() {
            return None;
        }
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            return Some(Number((v as i64).to_string()));
        }
        Number::parse(&format!("{v}"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn as_i64(&self) -> Option<i64> {
        self.0.parse().ok()
    }
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }
    pub fn as_f64(&self) -> Option<f64> {
        self.0.parse().ok()
    }
    /// `Some` when the f64 prints back to exactly this text, i.e. the float loses nothing.
    pub fn as_exact_f64(&self) -> Option<f64> {
        let f = self.as_f64()?;
        (Number::from_f64(f)? == *self).then_some(f)
    }
}

fn normalise(s: &str) -> String {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (mant, exp) = match lower.find('e') {
        Some(i) => (lower[..i].to_string(), Some(lower[i + 1..].to_string())),
        None => (lower, None),
    };
    let (int, frac) = match mant.find('.') {
        Some(i) => (mant[..i].to_string(), Some(mant[i + 1..].to_string())),
        None => (mant, None),
    };
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let frac = frac.map(|f| f.trim_end_matches('0').to_string()).filter(|f| !f.is_empty());
    let exp = exp.and_then(|e| {
        let neg_e = e.starts_with('-');
        let digits = e.trim_start_matches(['+', '-']).trim_start_matches('0');
        (!digits.is_empty()).then(|| format!("{}{digits}", if neg_e { "-" } else { "" }))
    });
    let mut out = String::new();
    let zero = int == "0" && frac.is_none();
    if neg && !zero {
        out.push('-');
    }
    out.push_str(int);
    if let Some(f) = frac {
        out.push('.');
        out.push_str(&f);
    }
    if let (Some(e), false) = (exp, zero) {
        out.push('e');
        out.push_str(&e);
    }
    out
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What Terraform already knows about a value it cannot know yet (cty refinements,
/// msgpack extension 12). Kept as the raw refinement bytes so they round-trip untouched.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refinements(pub Vec<u8>);

/// A cty value.
#[derive(Clone, Debug, PartialEq, PartialOrd)]
pub enum Value {
    Null,
    /// Not known until apply. `Some` refinements when Terraform sent any (e.g. "not null").
    Unknown(Option<Refinements>),
    String(String),
    Number(Number),
    Bool(bool),
    List(Vec<Value>),
    /// Sets keep the order they arrived in; equality of sets is checked with [`Value::same`].
    Set(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Object(BTreeMap<String, Value>),
    Tuple(Vec<Value>),
    /// A value in a `dynamic` position, with the concrete type it was sent with.
    Dynamic(Type, Box<Value>),
}

impl Value {
    pub fn unknown() -> Value {
        Value::Unknown(None)
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown(_))
    }
    /// True when the value, or anything inside it, is unknown.
    pub fn contains_unknown(&self) -> bool {
        match self {
            Value::Unknown(_) => true,
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => v.iter().any(Value::contains_unknown),
            Value::Map(m) | Value::Object(m) => m.values().any(Value::contains_unknown),
            Value::Dynamic(_, v) => v.contains_unknown(),
            _ => false,
        }
    }
    pub fn str(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_object(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_object_mut(&mut self) -> Option<&mut BTreeMap<String, Value>> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }
    /// Attribute `name` of an object value, `Null` when absent or not an object.
    pub fn attr(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.as_object().and_then(|m| m.get(name)).unwrap_or(&NULL)
    }

    /// Semantic equality: sets compare without regard to order.
    pub fn same(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Set(a), Value::Set(b)) => a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| x.same(y))),
            (Value::List(a), Value::List(b)) | (Value::Tuple(a), Value::Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
            }
            (Value::Map(a), Value::Map(b)) | (Value::Object(a), Value::Object(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| v.same(w)))
            }
            (Value::Dynamic(_, a), b) | (b, Value::Dynamic(_, a)) => a.same(b),
            (a, b) => a == b,
        }
    }

    /// A null value shaped for `ty` (objects get all attributes null) — used for nested
    /// blocks, which Terraform never sends as a bare null.
    pub fn null_object(ty: &Type) -> Value {
        match ty {
            Type::Object(attrs) => Value::Object(attrs.keys().map(|k| (k.clone(), Value::Null)).collect()),
            _ => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_normalise_and_keep_digits() {
        assert_eq!(Number::parse("007").map(|n| n.0), Some("7".into()));
        assert_eq!(Number::parse("-0").map(|n| n.0), Some("0".into()));
        assert_eq!(Number::parse("1.500").map(|n| n.0), Some("1.5".into()));
        assert_eq!(Number::parse("1E+03").map(|n| n.0), Some("1e3".into()));
        let big = "123456789012345678901234567890.000000000000000000001";
        assert_eq!(Number::parse(big).map(|n| n.0), Some(big.into()));
        assert!(Number::parse("1.").is_none());
        assert!(Number::parse("abc").is_none());
        assert!(Number::parse("").is_none());
        assert_eq!(Number::from_f64(0.1).map(|n| n.0), Some("0.1".into()));
        assert_eq!(Number::from_f64(3.0).map(|n| n.0), Some("3".into()));
        assert!(Number::from_f64(f64::NAN).is_none());
    }

    #[test]
    fn type_json_round_trips() {
        let t = Type::object([
            ("a", Type::list(Type::String)),
            ("b", Type::Tuple(vec![Type::Number, Type::Bool])),
            ("c", Type::map(Type::set(Type::Dynamic))),
        ]);
        assert_eq!(Type::from_json_bytes(&t.to_json_bytes()), Ok(t));
        assert!(Type::from_json_bytes(b"[\"frob\",1]").is_err());
    }

    #[test]
    fn sets_compare_without_order() {
        let a = Value::Set(vec![Value::str("x"), Value::str("y")]);
        let b = Value::Set(vec![Value::str("y"), Value::str("x")]);
        assert!(a.same(&b));
        assert_ne!(a, b);
    }
}

//! Fuzzing the DynamicValue decoder (`plugin::wire::decode` → `plugin::codec`), msgpack and JSON:
//! whatever the bytes, it returns (no panic), soon (no hang), from a bounded stack and with a
//! value no larger than `VALUES_PER_BYTE` values per input byte (memory linear in the input).
//!
//! Inputs are valid encodings of random values of random types — unknowns (msgpack extension
//! 0) and refined unknowns (extension 12) among them — then truncated, corrupted, spliced with
//! extension headers or random bytes; plus hand-built hostile inputs: nesting far past
//! `MAX_DEPTH`, `dynamic` in `dynamic`, an object type with many attributes against many empty
//! objects, oversized and malformed refinement payloads.
//!
//! Each decode runs on its own thread with a 1 MiB stack (half of a tokio worker's, where the
//! server decodes) and must finish within [`DEADLINE`]. A short run is part of
//! `cargo test -p terraform-provider-edge`; `PROPTEST_CASES` raises the case count for a long
//! one (provider/README.md, "Fuzzing the wire decoder").

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use edge_provider::framework::value::{Number, Refinements, Type, Value};
use edge_provider::plugin::codec::{self, CodecError, MAX_DEPTH, MAX_REFINEMENTS, VALUES_PER_BYTE, VALUE_ALLOWANCE};
use edge_provider::plugin::wire;
use proptest::prelude::*;
use tfplugin_proto::tfplugin6 as pb;

/// Far longer than any decode of these inputs takes; only a loop that does not end reaches it.
const DEADLINE: Duration = Duration::from_secs(20);
const STACK: usize = 1 << 20;

#[derive(Clone, Copy, Debug)]
enum Enc {
    Msgpack,
    Json,
}

/// Decodes through `wire::decode` (what the server calls) on a thread of its own with a small
/// stack, and checks the bounds. Returns the decode's result for further checks.
fn decode(bytes: &[u8], ty: &Type, enc: Enc) -> Result<Value, String> {
    let dv = match enc {
        Enc::Msgpack => pb::DynamicValue { msgpack: bytes.to_vec(), json: vec![] },
        Enc::Json => pb::DynamicValue { msgpack: vec![], json: bytes.to_vec() },
    };
    let ty2 = ty.clone();
    let (tx, rx) = mpsc::channel();
    let worker = thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let r = wire::decode(Some(&dv), &ty2, "fuzz input").map_err(|d| format!("{d:?}"));
            let _ = tx.send(r.map(|v| (count(&v), v)));
        })
        .expect("spawn decoder thread");
    let got = match rx.recv_timeout(DEADLINE) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("decode ({enc:?}) hung on {} bytes: {bytes:02x?}", bytes.len()),
        // The thread died without answering: it panicked (a stack overflow aborts the process).
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("decode ({enc:?}) panicked on {bytes:02x?}"),
    };
    let _ = worker.join();
    got.map(|(n, v)| {
        let bound = bytes.len() * VALUES_PER_BYTE + VALUE_ALLOWANCE;
        assert!(n <= bound, "{n} values from {} bytes (bound {bound})", bytes.len());
        v
    })
}

/// Values in a value, each nested one counted (what memory grows with).
fn count(v: &Value) -> usize {
    1 + match v {
        Value::List(items) | Value::Set(items) | Value::Tuple(items) => items.iter().map(count).sum(),
        Value::Map(m) | Value::Object(m) => m.values().map(count).sum(),
        Value::Dynamic(_, inner) => count(inner),
        _ => 0,
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300)
}

// ---------------------------------------------------------------- generators

fn arb_type() -> impl Strategy<Value = Type> {
    let leaf = prop_oneof![Just(Type::String), Just(Type::Number), Just(Type::Bool), Just(Type::Dynamic)];
    leaf.prop_recursive(5, 32, 5, |inner| {
        prop_oneof![
            inner.clone().prop_map(Type::list),
            inner.clone().prop_map(Type::set),
            inner.clone().prop_map(Type::map),
            prop::collection::btree_map("[a-z_]{1,8}", inner.clone(), 0..5).prop_map(Type::Object),
            prop::collection::vec(inner, 0..4).prop_map(Type::Tuple),
        ]
    })
}

fn arb_number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from_i64),
        any::<u64>().prop_map(Number::from_u64),
        any::<f64>().prop_filter_map("finite", Number::from_f64),
        "-?[1-9][0-9]{0,40}(\\.[0-9]{0,30}[1-9])?(e-?[1-9][0-9]{0,3})?"
            .prop_filter_map("number", |s| Number::parse(&s)),
    ]
}

/// cty refinements as go-cty writes them: a map of small integer keys (1 = not null,
/// 2 = string prefix, 5/6 = collection length bounds).
fn arb_refinements() -> impl Strategy<Value = Refinements> {
    prop_oneof![
        Just(Refinements(vec![0x81, 0x01, 0xc2])),
        "[a-z]{0,20}".prop_map(|p| {
            let mut b = vec![0x82, 0x01, 0xc2, 0x02];
            rmp::encode::write_str(&mut b, &p).expect("write to Vec");
            Refinements(b)
        }),
        (0u8..100, 100u8..128).prop_map(|(lo, hi)| Refinements(vec![0x82, 0x05, lo, 0x06, hi])),
    ]
}

fn arb_value(ty: Type) -> BoxedStrategy<Value> {
    let plain_unknown = !matches!(ty, Type::Dynamic);
    let special = prop_oneof![
        Just(Value::Null),
        Just(Value::unknown()),
        // Refined unknowns only where cty allows them (never on `dynamic`).
        arb_refinements().prop_map(move |r| if plain_unknown { Value::Unknown(Some(r)) } else { Value::unknown() }),
    ];
    let concrete: BoxedStrategy<Value> = match ty {
        Type::String => ".{0,16}".prop_map(Value::String).boxed(),
        Type::Number => arb_number().prop_map(Value::Number).boxed(),
        Type::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Type::Dynamic => prop_oneof![
            ".{0,8}".prop_map(|s| Value::Dynamic(Type::String, Box::new(Value::String(s)))),
            prop::collection::vec(any::<i32>(), 0..4).prop_map(|v| Value::Dynamic(
                Type::list(Type::Number),
                Box::new(Value::List(v.into_iter().map(|i| Value::Number(Number::from_i64(i.into()))).collect()))
            )),
        ]
        .boxed(),
        Type::List(et) => prop::collection::vec(arb_value(*et), 0..4).prop_map(Value::List).boxed(),
        Type::Set(et) => prop::collection::vec(arb_value(*et), 0..4).prop_map(Value::Set).boxed(),
        Type::Map(et) => prop::collection::btree_map("[a-z]{0,5}", arb_value(*et), 0..4).prop_map(Value::Map).boxed(),
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

fn typed_value() -> impl Strategy<Value = (Type, Value)> {
    arb_type().prop_flat_map(|t| (Just(t.clone()), arb_value(t)))
}

/// cty's JSON form (what raw state holds), written independently of the decoder. Unknowns do
/// not exist in JSON: they are written as null.
fn to_json(v: &Value, ty: &Type) -> serde_json::Value {
    use serde_json::Value as J;
    match (v, ty) {
        (Value::Null | Value::Unknown(_), _) => J::Null,
        (Value::Dynamic(t, inner), _) => serde_json::json!({ "value": to_json(inner, t), "type": t.to_json() }),
        (Value::String(s), _) => J::from(s.clone()),
        // Numbers as strings: JSON numbers would round through f64 here (cty takes both).
        (Value::Number(n), _) => J::from(n.as_str()),
        (Value::Bool(b), _) => J::from(*b),
        (Value::List(items) | Value::Set(items), Type::List(et) | Type::Set(et)) => {
            J::Array(items.iter().map(|i| to_json(i, et)).collect())
        }
        (Value::Tuple(items), Type::Tuple(ts)) => J::Array(items.iter().zip(ts).map(|(i, t)| to_json(i, t)).collect()),
        (Value::Map(m), Type::Map(et)) => J::Object(m.iter().map(|(k, i)| (k.clone(), to_json(i, et))).collect()),
        (Value::Object(m), Type::Object(attrs)) => {
            J::Object(attrs.iter().map(|(k, t)| (k.clone(), to_json(m.get(k).unwrap_or(&Value::Null), t))).collect())
        }
        _ => J::Null,
    }
}

/// Ways to spoil a valid encoding.
#[derive(Clone, Debug)]
enum Mutation {
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Remove(prop::sample::Index, usize),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    // Bytes worth splicing in: extension headers (unknown, refined unknown, odd codes and
    // lengths), container headers claiming huge counts, nil, big lengths.
    let interesting = prop_oneof![
        Just(vec![0xd4, 0x00, 0x00]),
        Just(vec![0xc7, 0x00, 0x00]),
        Just(vec![0xd5, 0x0c, 0x81, 0x01]),
        Just(vec![0xc7, 0x03, 0x0c, 0x81, 0x01, 0xc2]),
        Just(vec![0xc8, 0xff, 0xff, 0x0c]),
        Just(vec![0xc9, 0xff, 0xff, 0xff, 0xff, 0x0c]),
        Just(vec![0xd8, 0x07]),
        Just(vec![0xdd, 0xff, 0xff, 0xff, 0xff]),
        Just(vec![0xdf, 0xff, 0xff, 0xff, 0xff]),
        Just(vec![0xdb, 0xff, 0xff, 0xff, 0xff]),
        Just(vec![0x92, 0xa9]),
        Just(vec![0xc0]),
        Just(b"[[[[[[".to_vec()),
        Just(b"{\"type\":\"dynamic\",\"value\":".to_vec()),
        prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<prop::sample::Index>(), interesting).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<prop::sample::Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn mutate(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        match m {
            Mutation::Truncate(i) => {
                let at = i.index(b.len() + 1);
                b.truncate(at);
            }
            Mutation::Flip(i, x) if !b.is_empty() => {
                let at = i.index(b.len());
                b[at] ^= x | 1;
            }
            Mutation::Insert(i, bytes) => {
                let at = i.index(b.len() + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove(i, n) if !b.is_empty() => {
                let at = i.index(b.len());
                let end = (at + n).min(b.len());
                b.drain(at..end);
            }
            _ => {}
        }
    }
    b
}

proptest! {
    // No failure files: proptest looks for them next to lib.rs, which an integration test has
    // not; a failure prints its minimal input instead.
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Valid encodings decode (the fuzz inputs start from real values, not only noise).
    #[test]
    fn valid_msgpack_decodes((ty, v) in typed_value()) {
        let bytes = codec::to_msgpack(&v, &ty).expect("encode");
        let got = decode(&bytes, &ty, Enc::Msgpack);
        prop_assert!(got.is_ok(), "{:?}", got);
    }

    #[test]
    fn valid_json_decodes((ty, v) in typed_value()) {
        let bytes = to_json(&v, &ty).to_string().into_bytes();
        let got = decode(&bytes, &ty, Enc::Json);
        prop_assert!(got.is_ok(), "{:?}", got);
    }

    #[test]
    fn spoiled_msgpack_is_bounded((ty, v) in typed_value(), muts in prop::collection::vec(arb_mutation(), 1..4)) {
        let bytes = mutate(codec::to_msgpack(&v, &ty).expect("encode"), &muts);
        let _ = decode(&bytes, &ty, Enc::Msgpack);
    }

    #[test]
    fn spoiled_json_is_bounded((ty, v) in typed_value(), muts in prop::collection::vec(arb_mutation(), 1..4)) {
        let bytes = mutate(to_json(&v, &ty).to_string().into_bytes(), &muts);
        let _ = decode(&bytes, &ty, Enc::Json);
    }

    /// Every prefix of a valid msgpack encoding is refused (cty values are not
    /// self-terminating only at the end: a prefix always lacks something).
    #[test]
    fn truncated_msgpack_is_refused((ty, v) in typed_value(), cut in any::<prop::sample::Index>()) {
        let bytes = codec::to_msgpack(&v, &ty).expect("encode");
        // No bytes at all is a null DynamicValue, not a truncated one: one-byte values (null,
        // bools, small numbers) have no prefix to test.
        if bytes.len() < 2 {
            return Ok(());
        }
        let at = 1 + cut.index(bytes.len() - 1);
        let got = decode(&bytes[..at], &ty, Enc::Msgpack);
        prop_assert!(got.is_err(), "{} of {} bytes decoded: {:?}", at, bytes.len(), got);
    }

    /// Noise, against types that include `dynamic` (whose type then comes from the noise).
    #[test]
    fn noise_is_bounded(bytes in prop::collection::vec(any::<u8>(), 0..256), ty in arb_type()) {
        let _ = decode(&bytes, &ty, Enc::Msgpack);
        let _ = decode(&bytes, &ty, Enc::Json);
        let _ = decode(&bytes, &Type::Dynamic, Enc::Msgpack);
    }
}

// ---------------------------------------------------------------- hand-built hostile inputs

fn str_msgpack(s: &str) -> Vec<u8> {
    let mut b = Vec::new();
    rmp::encode::write_str(&mut b, s).expect("write to Vec");
    b
}

fn is_too_deep(r: &Result<Value, String>) -> bool {
    r.as_ref().is_err_and(|e| e.contains(&format!("nests deeper than {MAX_DEPTH} levels")))
}

/// `dynamic` whose type is `dynamic`, a million times: three bytes a level. Without a depth
/// limit this overflows any stack.
#[test]
fn dynamic_in_dynamic_stops_at_the_depth_limit() {
    let level = [vec![0x92], str_msgpack("\"dynamic\"")].concat();
    let mut bytes = level.repeat(1_000_000);
    bytes.push(0xc3);
    assert!(is_too_deep(&decode(&bytes, &Type::Dynamic, Enc::Msgpack)));

    let mut json = "{\"type\":\"dynamic\",\"value\":".repeat(1_000_000);
    json.push_str("true");
    json.push_str(&"}".repeat(1_000_000));
    let r = decode(json.as_bytes(), &Type::Dynamic, Enc::Json);
    assert!(r.as_ref().is_err_and(|e| e.contains("nested too deeply")), "{r:?}");
}

/// Lists of lists as deep as the limit decode; one level more does not. The type comes from
/// the schema here, so only the decoder's own limit stops it.
#[test]
fn list_nesting_up_to_the_limit() {
    let nested = |levels: usize| -> (Type, Vec<u8>, String) {
        let mut ty = Type::Bool;
        for _ in 1..levels {
            ty = Type::list(ty);
        }
        let mut bytes = vec![0x91; levels - 1];
        bytes.push(0xc3);
        let json = format!("{}true{}", "[".repeat(levels - 1), "]".repeat(levels - 1));
        (ty, bytes, json)
    };
    let (ty, bytes, json) = nested(MAX_DEPTH);
    let v = decode(&bytes, &ty, Enc::Msgpack).expect("MAX_DEPTH levels decode");
    assert_eq!(count(&v), MAX_DEPTH);
    assert_eq!(decode(json.as_bytes(), &ty, Enc::Json), Ok(v));

    let (ty, bytes, json) = nested(MAX_DEPTH + 1);
    assert!(is_too_deep(&decode(&bytes, &ty, Enc::Msgpack)));
    assert!(decode(json.as_bytes(), &ty, Enc::Json).is_err());
}

/// A million nested list headers against a shallow type fail at once (a type mismatch), and
/// against `dynamic` with a deep list type at the depth limit.
#[test]
fn deep_headers_without_a_deep_type() {
    let mut bytes = vec![0x91; 1_000_000];
    bytes.push(0xc0);
    assert!(decode(&bytes, &Type::list(Type::String), Enc::Msgpack).is_err());
    let json = "[".repeat(1_000_000);
    assert!(decode(json.as_bytes(), &Type::list(Type::String), Enc::Json).is_err());
}

/// One object type with 20 000 attributes (sent once, in a `dynamic` value) and 300 000 empty
/// objects of it: filled in, 6·10⁹ nulls. Refused instead, quickly.
#[test]
fn empty_objects_of_a_wide_type_are_refused() {
    let attrs: Vec<String> = (0..20_000).map(|i| format!("\"a{i}\":\"bool\"")).collect();
    let ty_json = format!("[\"list\",[\"object\",{{{}}}]]", attrs.join(","));
    let n: u32 = 300_000;
    let mut bytes = vec![0x92];
    bytes.extend(str_msgpack(&ty_json));
    bytes.push(0xdd);
    bytes.extend(n.to_be_bytes());
    bytes.extend(std::iter::repeat_n(0x80, n as usize));
    let r = decode(&bytes, &Type::Dynamic, Enc::Msgpack);
    assert!(r.as_ref().is_err_and(|e| e.contains("per input byte")), "{r:?}");

    let json = format!("{{\"type\":{ty_json},\"value\":[{}]}}", vec!["{}"; n as usize].join(","));
    let r = decode(json.as_bytes(), &Type::Dynamic, Enc::Json);
    assert!(r.as_ref().is_err_and(|e| e.contains("per input byte")), "{r:?}");

    // A few empty objects of a narrow type are fine: that is what raw state from an older
    // schema looks like.
    let ty = Type::list(Type::object((0..50).map(|i| (format!("a{i}"), Type::Bool))));
    let v = decode(b"[{},{},{}]", &ty, Enc::Json).expect("narrow empty objects");
    assert_eq!(count(&v), 1 + 3 * 51);
}

/// Claimed lengths far beyond the input reserve nothing and end in "truncated".
#[test]
fn huge_claimed_lengths_are_truncated() {
    for (ty, bytes) in [
        (Type::list(Type::Bool), vec![0xdd, 0xff, 0xff, 0xff, 0xff, 0xc3]),
        (Type::map(Type::Bool), vec![0xdf, 0xff, 0xff, 0xff, 0xff]),
        (Type::String, vec![0xdb, 0xff, 0xff, 0xff, 0xff, b'a']),
        (Type::String, vec![0xc9, 0xff, 0xff, 0xff, 0xff, 0x0c, 0x81]),
    ] {
        let r = decode(&bytes, &ty, Enc::Msgpack);
        assert!(r.is_err(), "{bytes:02x?} as {ty:?}: {r:?}");
    }
    assert_eq!(
        codec::from_msgpack(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc3], &Type::list(Type::Bool)),
        Err(CodecError::Truncated)
    );
}

/// The unknown-value extensions as go-cty reads them (zclconf/go-cty v1.18.1,
/// cty/msgpack/unknown.go, `unmarshalUnknownValue`).
#[test]
fn unknown_extensions_follow_go_cty() {
    let s = Type::String;
    // A body of zero or one byte is a plain unknown, whatever the extension type.
    for bytes in [vec![0xd4, 0x00, 0x00], vec![0xc7, 0x00, 0x00], vec![0xc7, 0x00, 0x05], vec![0xd4, 0x0c, 0x00]] {
        assert_eq!(decode(&bytes, &s, Enc::Msgpack), Ok(Value::unknown()), "{bytes:02x?}");
    }
    // Longer bodies must be type 12 and hold a map; kept as sent.
    // ext8, 3 bytes, type 12: {1: false} ("not null").
    let refined = vec![0xc7, 0x03, 0x0c, 0x81, 0x01, 0xc2];
    assert_eq!(
        decode(&refined, &s, Enc::Msgpack),
        Ok(Value::Unknown(Some(Refinements(vec![0x81, 0x01, 0xc2])))),
        "{refined:02x?}"
    );
    // On `dynamic`, refinements are dropped (cty.DynamicVal has none).
    assert_eq!(decode(&refined, &Type::Dynamic, Enc::Msgpack), Ok(Value::unknown()));
    // Another type code with a body, a body that is not a map, an oversized body: refused.
    for bytes in [vec![0xd5, 0x07, 0x81, 0x01], vec![0xd5, 0x0c, 0x01, 0x01], {
        let mut b = vec![0xc8];
        b.extend(((MAX_REFINEMENTS + 1) as u16).to_be_bytes());
        b.push(0x0c);
        b.push(0x81);
        b.extend(vec![0x01; MAX_REFINEMENTS]);
        b
    }] {
        assert!(decode(&bytes, &s, Enc::Msgpack).is_err(), "{bytes:02x?}");
    }
    // Exactly the limit is fine.
    let mut b = vec![0xc8];
    b.extend((MAX_REFINEMENTS as u16).to_be_bytes());
    b.push(0x0c);
    b.push(0x81);
    b.push(0x02);
    b.push(0xda);
    b.extend(((MAX_REFINEMENTS - 5) as u16).to_be_bytes());
    b.extend(vec![b'x'; MAX_REFINEMENTS - 5]);
    assert!(matches!(decode(&b, &s, Enc::Msgpack), Ok(Value::Unknown(Some(_)))));
    // Truncated extension headers and bodies.
    for bytes in [vec![0xd4], vec![0xd4, 0x00], vec![0xc7], vec![0xc7, 0x03, 0x0c, 0x81], vec![0xc9, 0x00, 0x00]] {
        assert!(decode(&bytes, &s, Enc::Msgpack).is_err(), "{bytes:02x?}");
    }
}

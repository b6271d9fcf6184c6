//! The byte form every signed edgeform document is signed in (image manifests, release
//! channel manifests): a domain line naming the document type, then the JSON as received, compact,
//! with object keys sorted by their UTF-8 bytes. Signing the document as received (unknown fields
//! included) means nothing can be added unsigned; the domain line means a signature over one
//! kind of document never verifies as another.

use serde_json::Value;

/// `domain` followed by `v` in canonical JSON.
pub fn signed_bytes(domain: &[u8], v: &Value) -> Vec<u8> {
    let mut out = domain.to_vec();
    write(v, &mut out);
    out
}

/// Compact JSON with object keys sorted by their UTF-8 bytes. Done by hand rather than relying
/// on serde_json's map type, whose order changes if any crate in the build enables
/// `preserve_order` (cargo unifies features across a workspace).
pub fn write(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                write(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(x, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sorted_compact_domain_first() {
        let v: Value = serde_json::from_str(r#"{"b": [1, {"z": null, "a": "x"}], "a": true}"#).unwrap();
        let want = [b"d\n".as_slice(), br#"{"a":true,"b":[1,{"a":"x","z":null}]}"#].concat();
        assert_eq!(signed_bytes(b"d\n", &v), want);
    }
}

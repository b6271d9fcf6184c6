//! `provider::edge::nix_base32(hex)`: a hex digest in Nix's base-32 (the alphabet and bit order
//! of store path hashes and `sha256:…` strings in narinfo files), e.g. to compare a hash from
//! `filesha256()` with the one an image manifest or a narinfo carries.
//!
//! The encoding is `edge-images`' (`nixbase32::encode`), the one the provider already verifies
//! image manifests and store paths with, so the two cannot disagree.

use edge_images::nixbase32;

use crate::framework::function::{string_arg, Function, FunctionError, Parameter, Signature};
use crate::framework::value::{Type, Value};

pub struct NixBase32;

const HEX: usize = 0;

impl Function for NixBase32 {
    fn name(&self) -> &'static str {
        "nix_base32"
    }

    fn signature(&self) -> Signature {
        Signature {
            summary: "A hex digest in Nix's base-32",
            description: "Converts a hexadecimal digest (e.g. from `sha256()` or `filesha256()`) to Nix's \
                base-32, as in store paths and `sha256:` hashes: what `nix hash to-base32` (Nix ≥ 2.19: \
                `nix hash convert --to nix32`) prints. A SHA-256 digest (64 hex digits) gives 52 \
                characters. Upper- and lower-case digits are both accepted.",
            parameters: vec![Parameter {
                name: "hex",
                ty: Type::String,
                description: "A digest in hexadecimal, two digits per byte, e.g. `sha256(\"\")`.",
                allow_null: false,
            }],
            returns: Type::String,
        }
    }

    fn call(&self, args: &[Value]) -> Result<Value, FunctionError> {
        let text = string_arg(args, HEX, "hex")?;
        let bytes = decode_hex(&text)?;
        Ok(Value::String(nixbase32::encode(&bytes)))
    }
}

/// Hex to bytes, with errors that point at the offending digit (the `hex` crate's do not say
/// which argument, and "odd length" alone does not tell a user a digit went missing).
fn decode_hex(text: &str) -> Result<Vec<u8>, FunctionError> {
    let digits = text.trim();
    if digits.is_empty() {
        return Err(FunctionError::at(HEX, "the digest is empty: give one in hexadecimal, e.g. sha256(\"\")"));
    }
    if let Some((i, c)) = digits.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        let hint = if digits.contains([':', '-']) { "; give the bare digest, without an algorithm prefix" } else { "" };
        return Err(FunctionError::at(
            HEX,
            format!("{c:?} at position {} is not a hexadecimal digit (0-9, a-f){hint}", i + 1),
        ));
    }
    if digits.len() % 2 == 1 {
        return Err(FunctionError::at(
            HEX,
            format!(
                "{} digits is an odd number: a digest is whole bytes, two hex digits each (SHA-256 has 64)",
                digits.len()
            ),
        ));
    }
    hex::decode(digits).map_err(|e| FunctionError::at(HEX, format!("not hexadecimal: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(hex: &str) -> Result<String, FunctionError> {
        NixBase32.call(&[Value::str(hex)]).map(|v| v.as_str().map(str::to_string).unwrap_or_default())
    }

    #[test]
    fn sha256_of_nothing() {
        // `nix hash to-base32 --type sha256 e3b0…b855` (Nix 2.8) prints this.
        let want = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
        assert_eq!(call("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").as_deref(), Ok(want));
        assert_eq!(call("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855").as_deref(), Ok(want));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = call("").unwrap_err();
        assert_eq!(e.argument, Some(HEX));
        assert!(e.text.contains("empty"), "{}", e.text);
        let e = call("abc").unwrap_err();
        assert!(e.text.contains("3 digits"), "{}", e.text);
        let e = call("sha256:00").unwrap_err();
        assert!(e.text.contains("position 1"), "{}", e.text);
        assert!(e.text.contains("prefix"), "{}", e.text);
    }
}
